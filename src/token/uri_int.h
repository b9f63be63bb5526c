/* RFC 7512 URI matching and formatting for the token layer (p11-kit underneath). */
#ifndef P11S_TOKEN_URI_INT_H
#define P11S_TOKEN_URI_INT_H

#include <p11smime/sys/provider.h>
#include <p11smime/uri.h>

/* Non-zero when the token/slot attributes of `uri` match `slot` (RFC 7512 §2.5). */
int p11s_uri__match_slot(const p11s_uri *uri, const p11s_slot *slot);

/* Non-zero when the object attributes of `uri` (object, id, type) match `obj`. */
int p11s_uri__match_object(const p11s_uri *uri, const p11s_object *obj);

/* Non-zero when the URI names a type other than private (cert, public, ...). */
int p11s_uri__type_is_not_private(const p11s_uri *uri);

/* The URI's pin-value, or NULL. Owned by `uri`. */
const char *p11s_uri__pin_value(const p11s_uri *uri);

/* Format a token URI (token, manufacturer, model, serial) into `buf`. */
int p11s_uri__format_token(const p11s_token_info *info, char *buf, size_t len);

/* Format a private key URI (token attributes plus object, id, type=private). Free with free(). */
int p11s_uri__format_key(const p11s_token_info *info, const p11s_object *obj, char **out);

/* The same with the module-path query attribute when `module_path` is not NULL. */
int p11s_uri__format_key_module(const p11s_token_info *info, const p11s_object *obj,
    const char *module_path, char **out);

#endif

/* p11smime — RFC 7512 PKCS#11 URIs. */
#ifndef P11SMIME_URI_H
#define P11SMIME_URI_H

#include "common.h"

/** A parsed pkcs11: URI (parsing and matching by p11-kit). */
typedef struct p11s_uri p11s_uri;

/**
 * Parse and check a URI. Refused (P11S_ERR_MALFORMED, with the reason): not a pkcs11: URI,
 * a bad percent-encoding, both pin-source and pin-value (RFC 7512 §2.4 SHOULD), a relative
 * module-path (§2.4 SHOULD), a `type` other than public, private, cert, secret-key, data.
 * An unknown path attribute is accepted but matches nothing (§2.5).
 * Free with p11s_uri_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_uri_parse(p11s_uri **out, const char *text);

/** The module-path query attribute, or NULL. */
P11S_EXTERN const char *p11s_uri_module_path(const p11s_uri *uri);
/** The module-name query attribute, or NULL. */
P11S_EXTERN const char *p11s_uri_module_name(const p11s_uri *uri);
/** The pin-source query attribute, or NULL. */
P11S_EXTERN const char *p11s_uri_pin_source(const p11s_uri *uri);
/** Non-zero when the URI carries a pin-value (which the token layer reads into a secret). */
P11S_EXTERN int p11s_uri_has_pin_value(const p11s_uri *uri);
/** Non-zero when the URI has a path attribute p11-kit does not know: it matches nothing. */
P11S_EXTERN int p11s_uri_has_unknown_attribute(const p11s_uri *uri);

/** Free; NULL is accepted. */
P11S_EXTERN void p11s_uri_free(p11s_uri *uri);

#endif

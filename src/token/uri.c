/*
 * RFC 7512 PKCS#11 URIs: parsing, checks the RFC asks for that p11-kit leaves to the
 * application (§2.4), matching (§2.5) and formatting, all with p11-kit's P11KitUri.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "core/error_int.h"
#include "token/uri_int.h"

struct p11s_uri {
	P11KitUri *kit;
	int unknown;
};

/* Path attributes RFC 7512 §2.3 defines; p11-kit also marks others as unrecognized. */
static const char *const known_types[] = { "public", "private", "cert", "secret-key", "data",
	NULL };

/* Find the value of a path attribute in the raw text (only for checks p11-kit does not do). */
static int path_attr(const char *text, const char *name, char *out, size_t outlen)
{
	const char *p = text + strlen("pkcs11:");
	const char *end = strchr(p, '?');
	size_t nl = strlen(name);

	if (end == NULL) {
		end = p + strlen(p);
	}
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *stop = semi ? semi : end;

		if ((size_t)(stop - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vl = (size_t)(stop - p) - nl - 1;

			if (vl >= outlen) {
				vl = outlen - 1;
			}
			memcpy(out, p + nl + 1, vl);
			out[vl] = '\0';
			return 1;
		}
		p = stop + 1;
	}
	return 0;
}

int p11s_uri_parse(p11s_uri **out, const char *text)
{
	p11s_uri *u;
	const char *mp;
	char type[32];
	int r;

	*out = NULL;
	if (text == NULL || strncmp(text, "pkcs11:", 7) != 0) {
		return p11s_error__set(P11S_ERR_MALFORMED, "not a pkcs11: URI: '%s'",
		    text ? text : "");
	}
	if ((u = calloc(1, sizeof(*u))) == NULL || (u->kit = p11_kit_uri_new()) == NULL) {
		free(u);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	r = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, u->kit);
	if (r != P11_KIT_URI_OK) {
		p11s_error__set(P11S_ERR_MALFORMED, "bad PKCS#11 URI '%s': %s", text,
		    p11_kit_uri_message(r));
		goto fail;
	}
	/* §2.4: "pin-source" and "pin-value" together SHOULD be refused. */
	if (p11_kit_uri_get_pin_value(u->kit) != NULL && p11_kit_uri_get_pin_source(u->kit) != NULL) {
		p11s_error__set(P11S_ERR_MALFORMED, "PKCS#11 URI has both pin-source and pin-value");
		goto fail;
	}
	/* §2.4: a relative module-path SHOULD be rejected. */
	mp = p11_kit_uri_get_module_path(u->kit);
	if (mp != NULL && mp[0] != '/') {
		p11s_error__set(P11S_ERR_MALFORMED, "PKCS#11 URI module-path must be absolute: '%s'",
		    mp);
		goto fail;
	}
	/* p11-kit ignores a type it does not know; the RFC allows only these. */
	if (path_attr(text, "type", type, sizeof(type))) {
		int ok = 0;

		for (size_t i = 0; known_types[i] != NULL; i++) {
			ok |= strcmp(type, known_types[i]) == 0;
		}
		if (!ok) {
			p11s_error__set(P11S_ERR_MALFORMED, "PKCS#11 URI: unknown type '%s'", type);
			goto fail;
		}
	}
	/* §2.5: an unknown path attribute makes the URI match nothing. */
	u->unknown = p11_kit_uri_any_unrecognized(u->kit);
	*out = u;
	return P11S_OK;
fail:
	p11_kit_uri_free(u->kit);
	free(u);
	return P11S_ERR_MALFORMED;
}

const char *p11s_uri_module_path(const p11s_uri *uri)
{
	return p11_kit_uri_get_module_path(uri->kit);
}

const char *p11s_uri_module_name(const p11s_uri *uri)
{
	return p11_kit_uri_get_module_name(uri->kit);
}

const char *p11s_uri_pin_source(const p11s_uri *uri)
{
	return p11_kit_uri_get_pin_source(uri->kit);
}

int p11s_uri_has_pin_value(const p11s_uri *uri)
{
	return p11_kit_uri_get_pin_value(uri->kit) != NULL;
}

const char *p11s_uri__pin_value(const p11s_uri *uri)
{
	return p11_kit_uri_get_pin_value(uri->kit);
}

int p11s_uri_has_unknown_attribute(const p11s_uri *uri)
{
	return uri->unknown;
}

void p11s_uri_free(p11s_uri *uri)
{
	if (uri == NULL) {
		return;
	}
	p11_kit_uri_free(uri->kit);
	free(uri);
}

/* Space-pad a string into a fixed PKCS#11 field. */
static void pad(unsigned char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	memset(dst, ' ', len);
	memcpy(dst, src, n < len ? n : len);
}

static void to_ck_token(const p11s_token_info *in, CK_TOKEN_INFO *ti)
{
	memset(ti, 0, sizeof(*ti));
	pad(ti->label, sizeof(ti->label), in->label);
	pad(ti->manufacturerID, sizeof(ti->manufacturerID), in->manufacturer);
	pad(ti->model, sizeof(ti->model), in->model);
	pad(ti->serialNumber, sizeof(ti->serialNumber), in->serial);
}

int p11s_uri__match_slot(const p11s_uri *uri, const p11s_slot *slot)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	CK_SLOT_ID want;

	if (uri->unknown) {
		return 0;
	}
	to_ck_token(&slot->info, &ti);
	memset(&si, 0, sizeof(si));
	pad(si.slotDescription, sizeof(si.slotDescription), slot->info.slot_description);
	pad(si.manufacturerID, sizeof(si.manufacturerID), slot->info.slot_manufacturer);
	if (!p11_kit_uri_match_token_info(uri->kit, &ti) ||
	    !p11_kit_uri_match_slot_info(uri->kit, &si)) {
		return 0;
	}
	/* CK_SLOT_INFO has no slot id, so p11-kit leaves slot-id matching to us. */
	want = p11_kit_uri_get_slot_id(uri->kit);
	if (want != (CK_SLOT_ID)-1 && want != slot->info.slot_id) {
		return 0;
	}
	return 1;
}

int p11s_uri__match_object(const p11s_uri *uri, const p11s_object *obj)
{
	CK_OBJECT_CLASS cls = obj->cls == P11S_OBJ_PRIVATE_KEY ? CKO_PRIVATE_KEY
	    : obj->cls == P11S_OBJ_PUBLIC_KEY                  ? CKO_PUBLIC_KEY
	                                                       : CKO_CERTIFICATE;
	CK_ATTRIBUTE attrs[3] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, obj->label, strlen(obj->label) },
		{ CKA_ID, obj->id.data, obj->id.len },
	};

	if (uri->unknown) {
		return 0;
	}
	return p11_kit_uri_match_attributes(uri->kit, attrs, 3);
}

int p11s_uri__type_is_not_private(const p11s_uri *uri)
{
	CK_ATTRIBUTE_PTR a = p11_kit_uri_get_attribute(uri->kit, CKA_CLASS);

	return a != NULL && a->ulValueLen == sizeof(CK_OBJECT_CLASS) &&
	    *(CK_OBJECT_CLASS *)a->pValue != CKO_PRIVATE_KEY;
}

static int format(P11KitUri *kit, P11KitUriType type, char **out)
{
	int r = p11_kit_uri_format(kit, type, out);

	if (r != P11_KIT_URI_OK) {
		return p11s_error__set(P11S_ERR_GENERIC, "formatting a PKCS#11 URI: %s",
		    p11_kit_uri_message(r));
	}
	return P11S_OK;
}

int p11s_uri__format_token(const p11s_token_info *info, char *buf, size_t len)
{
	P11KitUri *kit = p11_kit_uri_new();
	char *s = NULL;
	int rc;

	if (kit == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	to_ck_token(info, p11_kit_uri_get_token_info(kit));
	if ((rc = format(kit, P11_KIT_URI_FOR_TOKEN, &s)) == P11S_OK) {
		snprintf(buf, len, "%s", s);
	}
	free(s);
	p11_kit_uri_free(kit);
	return rc;
}

int p11s_uri__format_key(const p11s_token_info *info, const p11s_object *obj, char **out)
{
	return p11s_uri__format_key_module(info, obj, NULL, out);
}

int p11s_uri__format_key_module(const p11s_token_info *info, const p11s_object *obj,
    const char *module_path, char **out)
{
	P11KitUri *kit = p11_kit_uri_new();
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a;
	int rc = P11S_OK;

	*out = NULL;
	if (kit == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	to_ck_token(info, p11_kit_uri_get_token_info(kit));
	if (obj->label[0] != '\0') {
		a = (CK_ATTRIBUTE){ CKA_LABEL, obj->label, strlen(obj->label) };
		p11_kit_uri_set_attribute(kit, &a);
	}
	if (obj->id.len > 0) {
		a = (CK_ATTRIBUTE){ CKA_ID, obj->id.data, obj->id.len };
		p11_kit_uri_set_attribute(kit, &a);
	}
	a = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	p11_kit_uri_set_attribute(kit, &a);
	if (module_path != NULL) {
		/* RFC 7512 §2.3 query attribute: which of several modules holds the key. */
		p11_kit_uri_set_module_path(kit, module_path);
	}
	rc = format(kit, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, out);
	p11_kit_uri_free(kit);
	return rc;
}

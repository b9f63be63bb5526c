/*
 * The "pkcs11" backend: the objects of a token (private keys, public keys, certificates) with
 * the attributes sys/provider.h's p11s_object holds, read in one batched C_GetAttributeValue
 * where the token gets templates right and attribute by attribute where it does not.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include <p11-kit/pkcs11.h>

#include <p11smime/secret.h>

#include "core/error_int.h"
#include "pkcs11/ck.h"
#include "pkcs11/pkcs11_int.h"

/* --- objects ---------------------------------------------------------------------------- */

/* Whether a C_GetAttributeValue failure only means "this attribute is not available". */
static int attr_absent(CK_RV rv)
{
	return rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

/*
 * Read one variable-length attribute in two passes (size, then value). Sensitive, invalid or
 * unavailable attributes leave `out` empty and return CKR_OK: each is read on its own, so one
 * such attribute does not hide the others (v2.40 C_GetAttributeValue).
 */
static CK_RV attr_bytes(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, unsigned char **data, size_t *len, int nul)
{
	CK_ATTRIBUTE a = { type, NULL_PTR, 0 };
	unsigned char *buf;
	CK_ULONG size;
	CK_RV rv;

	*data = NULL;
	*len = 0;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (attr_absent(rv) || (rv == CKR_OK && a.ulValueLen == CK_UNAVAILABLE_INFORMATION)) {
		return CKR_OK;
	}
	if (rv != CKR_OK) {
		return rv;
	}
	size = a.ulValueLen;
	if ((buf = malloc(size + 1)) == NULL) {
		return CKR_HOST_MEMORY;
	}
	a.pValue = buf;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > size) {
		free(buf);
		return attr_absent(rv) || rv == CKR_OK ? CKR_OK : rv;
	}
	buf[a.ulValueLen] = '\0'; /* labels are used as strings */
	if (!nul && a.ulValueLen == 0) {
		free(buf);
		return CKR_OK;
	}
	*data = buf;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV attr_ulong(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	CK_RV rv;

	*v = CK_UNAVAILABLE_INFORMATION;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_OK && a.ulValueLen != sizeof(*v)) {
		*v = CK_UNAVAILABLE_INFORMATION;
	}
	return attr_absent(rv) ? CKR_OK : rv;
}

static CK_RV attr_bool(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, int *v)
{
	CK_BBOOL b = CK_FALSE;
	CK_ATTRIBUTE a = { type, &b, sizeof(b) };
	CK_RV rv;

	*v = 0;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_OK && a.ulValueLen == sizeof(b)) {
		*v = b == CK_TRUE;
	}
	return attr_absent(rv) ? CKR_OK : rv;
}

/* Every object matching `tmpl`; FindObjectsFinal is always called, so the session stays clean. */
static CK_RV find_all(struct priv *pv, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
    CK_OBJECT_HANDLE **out, size_t *n)
{
	CK_OBJECT_HANDLE batch[64], *all = NULL, *na;
	CK_ULONG got = 0;
	size_t cnt = 0;
	CK_RV rv, frv;

	*out = NULL;
	*n = 0;
	if ((rv = pv->f->C_FindObjectsInit(h, tmpl, ntmpl)) != CKR_OK) {
		return rv;
	}
	for (;;) {
		rv = pv->f->C_FindObjects(h, batch, sizeof(batch) / sizeof(batch[0]), &got);
		if (rv != CKR_OK || got == 0) {
			break;
		}
		if ((na = realloc(all, (cnt + got) * sizeof(*all))) == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		all = na;
		memcpy(all + cnt, batch, got * sizeof(*all));
		cnt += got;
	}
	frv = pv->f->C_FindObjectsFinal(h);
	if (rv == CKR_OK) {
		rv = frv;
	}
	if (rv != CKR_OK) {
		free(all);
		return rv;
	}
	*out = all;
	*n = cnt;
	return CKR_OK;
}

/*
 * Read the attributes of sys/provider.h's p11s_object for one object, each with its own
 * C_GetAttributeValue calls: the fallback for tokens that get multi-attribute templates wrong
 * (read_object_batch below), and the reference for what every field holds when absent.
 */
static CK_RV read_object_single(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    CK_SLOT_ID slot, p11s_object_class cls, p11s_object *o)
{
	unsigned char *label = NULL;
	size_t label_len;
	CK_ULONG kt;
	int b;
	CK_RV rv;

	memset(o, 0, sizeof(*o));
	o->handle = oh;
	o->slot = slot;
	o->cls = cls;
	if ((rv = attr_bytes(pv, h, oh, CKA_LABEL, &label, &label_len, 1)) != CKR_OK) {
		return rv;
	}
	if (label == NULL && (label = calloc(1, 1)) == NULL) {
		return CKR_HOST_MEMORY;
	}
	o->label = (char *)label;
	if ((rv = attr_bytes(pv, h, oh, CKA_ID, &o->id.data, &o->id.len, 0)) != CKR_OK) {
		return rv;
	}
	if (cls == P11S_OBJ_CERTIFICATE) {
		return attr_bytes(pv, h, oh, CKA_VALUE, &o->value.data, &o->value.len, 0);
	}
	if ((rv = attr_ulong(pv, h, oh, CKA_KEY_TYPE, &kt)) != CKR_OK) {
		return rv;
	}
	switch (kt) {
	case CKK_RSA:
		o->key_type = P11S_KEY_RSA;
		if ((rv = attr_bytes(pv, h, oh, CKA_MODULUS, &o->modulus.data, &o->modulus.len,
		    0)) != CKR_OK) {
			return rv;
		}
		if ((rv = attr_bytes(pv, h, oh, CKA_PUBLIC_EXPONENT, &o->public_exponent.data,
		    &o->public_exponent.len, 0)) != CKR_OK) {
			return rv;
		}
		break;
	case CKK_EC:
	case CKK_EC_EDWARDS:
	case CKK_EC_MONTGOMERY:
		/*
		 * Edwards and Montgomery keys carry the same two attributes as EC keys (PKCS#11 v3.0
		 * §2.3.5-§2.3.8): the curve in CKA_EC_PARAMS, the public key in CKA_EC_POINT.
		 */
		o->key_type = kt == CKK_EC ? P11S_KEY_EC
		    : kt == CKK_EC_EDWARDS ? P11S_KEY_EDDSA
		                           : P11S_KEY_XDH;
		if ((rv = attr_bytes(pv, h, oh, CKA_EC_PARAMS, &o->ec_params.data,
		    &o->ec_params.len, 0)) != CKR_OK) {
			return rv;
		}
		/* Standard on public keys; some tokens also keep it on the private key. */
		if ((rv = attr_bytes(pv, h, oh, CKA_EC_POINT, &o->ec_point.data, &o->ec_point.len,
		    0)) != CKR_OK) {
			return rv;
		}
		break;
	default:
		o->key_type = P11S_KEY_UNKNOWN;
		break;
	}
	if (cls != P11S_OBJ_PRIVATE_KEY) {
		return CKR_OK;
	}
	if ((rv = attr_bool(pv, h, oh, CKA_ALWAYS_AUTHENTICATE, &b)) != CKR_OK) {
		return rv;
	}
	o->always_authenticate = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_SIGN, &b)) != CKR_OK) {
		return rv;
	}
	o->can_sign = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_DECRYPT, &b)) != CKR_OK) {
		return rv;
	}
	o->can_decrypt = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_DERIVE, &b)) != CKR_OK) {
		return rv;
	}
	o->can_derive = b ? 1 : 0;
	return CKR_OK;
}

/*
 * The attributes read_object_batch asks for, and of which object classes. `core` ones exist on
 * every object of those classes (v2.40 §4.4, §4.6.3, §4.7, §4.9: CKA_LABEL and CKA_ID default
 * to empty, CKA_KEY_TYPE, CKA_SIGN, CKA_DECRYPT, CKA_DERIVE and an X.509 certificate's
 * CKA_VALUE are always there): a token that reports one of them unavailable in a template that
 * also holds invalid attributes has mishandled the template, not the attribute.
 */
enum {
	A_LABEL,
	A_ID,
	A_VALUE,
	A_KEY_TYPE,
	A_MODULUS,
	A_PUBLIC_EXPONENT,
	A_EC_PARAMS,
	A_EC_POINT,
	A_ALWAYS_AUTHENTICATE,
	A_SIGN,
	A_DECRYPT,
	A_DERIVE,
	A_COUNT
};

enum { K_BYTES, K_ULONG, K_BOOL };

#define C_PRIV (1u << P11S_OBJ_PRIVATE_KEY)
#define C_PUB (1u << P11S_OBJ_PUBLIC_KEY)
#define C_CERT (1u << P11S_OBJ_CERTIFICATE)

static const struct {
	CK_ATTRIBUTE_TYPE type;
	unsigned char kind;
	unsigned char core;
	unsigned int classes;
} batch_attrs[A_COUNT] = {
	[A_LABEL] = { CKA_LABEL, K_BYTES, 1, C_PRIV | C_PUB | C_CERT },
	[A_ID] = { CKA_ID, K_BYTES, 1, C_PRIV | C_PUB | C_CERT },
	[A_VALUE] = { CKA_VALUE, K_BYTES, 1, C_CERT },
	[A_KEY_TYPE] = { CKA_KEY_TYPE, K_ULONG, 1, C_PRIV | C_PUB },
	[A_MODULUS] = { CKA_MODULUS, K_BYTES, 0, C_PRIV | C_PUB },
	[A_PUBLIC_EXPONENT] = { CKA_PUBLIC_EXPONENT, K_BYTES, 0, C_PRIV | C_PUB },
	[A_EC_PARAMS] = { CKA_EC_PARAMS, K_BYTES, 0, C_PRIV | C_PUB },
	/* Standard on public keys; some tokens also keep it on the private key. */
	[A_EC_POINT] = { CKA_EC_POINT, K_BYTES, 0, C_PRIV | C_PUB },
	/* v2.20 and later: older tokens do not know it. */
	[A_ALWAYS_AUTHENTICATE] = { CKA_ALWAYS_AUTHENTICATE, K_BOOL, 0, C_PRIV },
	[A_SIGN] = { CKA_SIGN, K_BOOL, 1, C_PRIV },
	[A_DECRYPT] = { CKA_DECRYPT, K_BOOL, 1, C_PRIV },
	[A_DERIVE] = { CKA_DERIVE, K_BOOL, 1, C_PRIV },
};

/*
 * Values put in the template before the first call: a token that answers every entry
 * overwrites them (a length, CK_UNAVAILABLE_INFORMATION, a key type, CK_TRUE/CK_FALSE), so
 * finding one afterwards means the token skipped the entry.
 */
#define LEN_UNSET ((CK_ULONG)-2)
#define KEY_TYPE_UNSET ((CK_KEY_TYPE)-2)
#define BOOL_UNSET ((CK_BBOOL)0xa5)

/* Whether attribute `a` of an object of key type `kt` goes into p11s_object. */
static int batch_needed(int a, CK_KEY_TYPE kt)
{
	switch (a) {
	case A_MODULUS:
	case A_PUBLIC_EXPONENT:
		return kt == CKK_RSA;
	case A_EC_PARAMS:
	case A_EC_POINT:
		return kt == CKK_EC || kt == CKK_EC_EDWARDS || kt == CKK_EC_MONTGOMERY;
	default:
		return 1;
	}
}

/* As attr_bool: true only for a one-byte CK_TRUE. */
static unsigned int batch_bool(const CK_ATTRIBUTE *e, CK_BBOOL b)
{
	return e->ulValueLen == sizeof(b) && b == CK_TRUE ? 1 : 0;
}

/*
 * Read every attribute of `o` (handle, slot and class already set) in one template, two
 * calls (PKCS#11 v2.40 base §5.7.5 C_GetAttributeValue): the first learns the lengths of the
 * variable-length attributes (pValue NULL_PTR) and, since the spec treats every entry on its
 * own, already reads the fixed-size ones (CKA_KEY_TYPE, the CK_BBOOLs); the second reads the
 * values of the variable-length attributes that this key type uses. Per the spec, an entry the
 * token does not have (CKR_ATTRIBUTE_TYPE_INVALID) or will not reveal (CKR_ATTRIBUTE_SENSITIVE)
 * comes back as CK_UNAVAILABLE_INFORMATION while the others are answered: it is absent, as in
 * read_object_single. CKR_BUFFER_TOO_SMALL on the second call means an attribute grew between
 * the calls: both are made once more.
 *
 * Anything else (another error, an entry left unanswered, a core attribute reported missing)
 * sets `*fallback`, and the caller reads the object attribute by attribute as before, so a
 * token that mishandles templates costs calls, never results. Returns CKR_OK, or an error that
 * ends the listing (the object is gone, the session is gone, out of memory).
 */
static CK_RV read_object_batch(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    p11s_object *o, int *fallback)
{
	const unsigned int mask = 1u << o->cls;
	CK_ATTRIBUTE t[A_COUNT], v[A_COUNT];
	int at[A_COUNT], va[A_COUNT];
	unsigned char *buf[A_COUNT];
	CK_BBOOL bools[A_COUNT];
	CK_KEY_TYPE kt = KEY_TYPE_UNSET;
	CK_ULONG nt, nv = 0, len;
	CK_RV rv = CKR_OK;

	*fallback = 0;
	memset(buf, 0, sizeof(buf));
	for (int tries = 0;; tries++) {
		nt = 0;
		for (int a = 0; a < A_COUNT; a++) {
			at[a] = -1;
			if (!(batch_attrs[a].classes & mask)) {
				continue;
			}
			at[a] = (int)nt;
			t[nt].type = batch_attrs[a].type;
			switch (batch_attrs[a].kind) {
			case K_ULONG:
				kt = KEY_TYPE_UNSET;
				t[nt].pValue = &kt;
				t[nt].ulValueLen = sizeof(kt);
				break;
			case K_BOOL:
				bools[a] = BOOL_UNSET;
				t[nt].pValue = &bools[a];
				t[nt].ulValueLen = sizeof(bools[a]);
				break;
			default:
				t[nt].pValue = NULL_PTR;
				t[nt].ulValueLen = LEN_UNSET;
				break;
			}
			nt++;
		}
		rv = pv->f->C_GetAttributeValue(h, oh, t, nt);
		if (rv != CKR_OK && !attr_absent(rv)) {
			goto refused;
		}
		for (int a = 0; a < A_COUNT; a++) {
			if (at[a] < 0) {
				continue;
			}
			if (t[at[a]].ulValueLen == CK_UNAVAILABLE_INFORMATION) {
				if (rv != CKR_OK && batch_attrs[a].core) {
					goto fall_back;
				}
				continue;
			}
			if ((batch_attrs[a].kind == K_BYTES && t[at[a]].ulValueLen == LEN_UNSET) ||
			    (batch_attrs[a].kind == K_ULONG && kt == KEY_TYPE_UNSET) ||
			    (batch_attrs[a].kind == K_BOOL && bools[a] == BOOL_UNSET)) {
				goto fall_back;
			}
		}
		/* As attr_ulong: a length other than a CK_ULONG's is no key type. */
		if (at[A_KEY_TYPE] >= 0 && t[at[A_KEY_TYPE]].ulValueLen != sizeof(kt)) {
			kt = CK_UNAVAILABLE_INFORMATION;
		}

		/* Second call: the values this object needs; empty ones need no call. */
		nv = 0;
		for (int a = 0; a < A_COUNT; a++) {
			if (at[a] < 0 || batch_attrs[a].kind != K_BYTES || !batch_needed(a, kt)) {
				continue;
			}
			len = t[at[a]].ulValueLen;
			if (len == CK_UNAVAILABLE_INFORMATION || len == 0) {
				continue;
			}
			if ((buf[a] = malloc(len + 1)) == NULL) {
				rv = CKR_HOST_MEMORY;
				goto out;
			}
			va[nv] = a;
			v[nv].type = batch_attrs[a].type;
			v[nv].pValue = buf[a];
			v[nv].ulValueLen = len;
			nv++;
		}
		if (nv == 0) {
			rv = CKR_OK;
			break;
		}
		rv = pv->f->C_GetAttributeValue(h, oh, v, nv);
		if (rv == CKR_OK) {
			break;
		}
		for (int a = 0; a < A_COUNT; a++) {
			free(buf[a]);
			buf[a] = NULL;
		}
		if (rv != CKR_BUFFER_TOO_SMALL || tries > 0) {
			goto refused;
		}
	}

	/* The same fields, and the same defaults, as read_object_single. */
	for (CK_ULONG i = 0; i < nv; i++) {
		int a = va[i];
		p11s_bytes *dst;

		len = v[i].ulValueLen;
		if (len == CK_UNAVAILABLE_INFORMATION || len > t[at[a]].ulValueLen ||
		    (len == 0 && a != A_LABEL)) {
			continue; /* left in buf[a], freed below: absent */
		}
		buf[a][len] = '\0'; /* labels are used as strings */
		switch (a) {
		case A_LABEL:
			o->label = (char *)buf[a];
			buf[a] = NULL;
			continue;
		case A_ID:
			dst = &o->id;
			break;
		case A_VALUE:
			dst = &o->value;
			break;
		case A_MODULUS:
			dst = &o->modulus;
			break;
		case A_PUBLIC_EXPONENT:
			dst = &o->public_exponent;
			break;
		case A_EC_PARAMS:
			dst = &o->ec_params;
			break;
		default:
			dst = &o->ec_point;
			break;
		}
		dst->data = buf[a];
		dst->len = len;
		buf[a] = NULL;
	}
	if (o->label == NULL && (o->label = calloc(1, 1)) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (o->cls != P11S_OBJ_CERTIFICATE) {
		switch (kt) {
		case CKK_RSA:
			o->key_type = P11S_KEY_RSA;
			break;
		case CKK_EC:
			o->key_type = P11S_KEY_EC;
			break;
		case CKK_EC_EDWARDS:
			o->key_type = P11S_KEY_EDDSA;
			break;
		case CKK_EC_MONTGOMERY:
			o->key_type = P11S_KEY_XDH;
			break;
		default:
			o->key_type = P11S_KEY_UNKNOWN;
			break;
		}
	}
	if (o->cls == P11S_OBJ_PRIVATE_KEY) {
		o->always_authenticate = batch_bool(&t[at[A_ALWAYS_AUTHENTICATE]],
		    bools[A_ALWAYS_AUTHENTICATE]);
		o->can_sign = batch_bool(&t[at[A_SIGN]], bools[A_SIGN]);
		o->can_decrypt = batch_bool(&t[at[A_DECRYPT]], bools[A_DECRYPT]);
		o->can_derive = batch_bool(&t[at[A_DERIVE]], bools[A_DERIVE]);
	}
	rv = CKR_OK;
	goto out;

refused:
	/* Errors about the object or the session, not the template: reading singly would too. */
	if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_HOST_MEMORY || p11s_pkcs11__session_dead(rv)) {
		goto out;
	}
fall_back:
	*fallback = 1;
	rv = CKR_OK;
out:
	for (int a = 0; a < A_COUNT; a++) {
		free(buf[a]);
	}
	return rv;
}

/* Read the attributes of sys/provider.h's p11s_object for one object. */
static CK_RV read_object(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    CK_SLOT_ID slot, p11s_object_class cls, p11s_object *o)
{
	int fallback;
	CK_RV rv;

	memset(o, 0, sizeof(*o));
	o->handle = oh;
	o->slot = slot;
	o->cls = cls;
	rv = read_object_batch(pv, h, oh, o, &fallback);
	if (fallback) {
		p11s_object_clear(o); /* read_object_single starts afresh */
		rv = read_object_single(pv, h, oh, slot, cls, o);
	}
	return rv;
}

int p11s_pkcs11__objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n)
{
	struct priv *pv = p->priv;
	static const struct {
		CK_OBJECT_CLASS ck;
		p11s_object_class cls;
	} classes[] = {
		{ CKO_PRIVATE_KEY, P11S_OBJ_PRIVATE_KEY },
		{ CKO_PUBLIC_KEY, P11S_OBJ_PUBLIC_KEY },
		{ CKO_CERTIFICATE, P11S_OBJ_CERTIFICATE },
	};
	p11s_object *objs = NULL, *nobjs;
	size_t nobj = 0, nh = 0;
	CK_OBJECT_HANDLE *hs = NULL;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int rc;

	if (slot == NULL || out == NULL || n == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: objects: NULL argument");
	}
	*out = NULL;
	*n = 0;
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	if ((rc = p11s_pkcs11__sess_get(pv, slot->handle, &s)) < 0) {
		goto out;
	}
	for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
		CK_OBJECT_CLASS ck = classes[c].ck;
		CK_CERTIFICATE_TYPE ct = CKC_X_509;
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &ck, sizeof(ck) },
			{ CKA_CERTIFICATE_TYPE, &ct, sizeof(ct) },
		};
		CK_ULONG ntmpl = ck == CKO_CERTIFICATE ? 2 : 1;

		free(hs);
		hs = NULL;
		if ((rv = find_all(pv, s.h, tmpl, ntmpl, &hs, &nh)) != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_FindObjects");
			goto out;
		}
		if (nh == 0) {
			continue;
		}
		if ((nobjs = realloc(objs, (nobj + nh) * sizeof(*objs))) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		objs = nobjs;
		for (size_t i = 0; i < nh; i++) {
			rv = read_object(pv, s.h, hs[i], slot->handle, classes[c].cls, &objs[nobj]);
			nobj++; /* counted even when partly read, so that it is freed */
			if (rv == CKR_OBJECT_HANDLE_INVALID) {
				/* Destroyed by another application since C_FindObjects. */
				p11s_object_clear(&objs[--nobj]);
				rv = CKR_OK;
				continue;
			}
			if (rv != CKR_OK) {
				rc = p11s_ck__rv(rv, "C_GetAttributeValue");
				goto out;
			}
		}
	}
	*out = objs;
	*n = nobj;
	objs = NULL;
	nobj = 0;
	rc = P11S_OK;
out:
	p11s_pkcs11__sess_put(pv, &s, rv);
	p11s_pkcs11__leave(pv);
	free(hs);
	p11s_objects_free(objs, nobj);
	return rc;
}


/*
 * The bridge's key management for RSA, EC, Ed25519 and X25519/X448 (RFC 8410). A key is a
 * public key (held as a default-provider EVP_PKEY in the same library context, which answers
 * parameters, export, match and checks) plus, for a token key, the p11s_key reference. OpenSSL
 * imports plain public keys here too: certificate keys (X509_check_private_key) and key
 * agreement peers (kari originator keys, the peer of EVP_PKEY_derive_set_peer()), which it
 * exports from the default provider into the keymgmt of the token key's exchange.
 *
 * OpenSSL 3.0 trap (DESIGN.md decision 1): an export that includes the private key is refused.
 * OpenSSL tries to export a key into the provider of whatever signature, cipher or exchange it
 * fetched first; refusing makes it fall back to ours instead of running a software operation
 * on a key without its private half.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "bridge/bridge_int.h"

static p11s_bkey *bkey_new(void *provctx, int type, const char *alg)
{
	p11s_bkey *k = OPENSSL_zalloc(sizeof(*k));

	if (k != NULL) {
		k->prov = provctx;
		k->type = type;
		k->alg = alg;
	}
	return k;
}

static void *rsa_new(void *provctx)
{
	return bkey_new(provctx, P11S_KEY_RSA, "RSA");
}

static void *ec_new(void *provctx)
{
	return bkey_new(provctx, P11S_KEY_EC, "EC");
}

static void *ed25519_new(void *provctx)
{
	return bkey_new(provctx, P11S_KEY_EDDSA, "ED25519");
}

static void *x25519_new(void *provctx)
{
	return bkey_new(provctx, P11S_KEY_XDH, "X25519");
}

static void *x448_new(void *provctx)
{
	return bkey_new(provctx, P11S_KEY_XDH, "X448");
}

static void km_free(void *keydata)
{
	p11s_bkey *k = keydata;

	if (k == NULL) {
		return;
	}
	EVP_PKEY_free(k->pub);
	OPENSSL_free(k);
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
	p11s_bkey *k = keydata;
	const OSSL_PARAM *p;
	p11s_key *ref = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pub = NULL;
	int pubsel = 0, has_pub = 0, ok = 0;

	if (k == NULL || params == NULL) {
		return 0;
	}
	if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
		if ((p = OSSL_PARAM_locate_const(params, P11S_BRIDGE_PARAM_KEYREF)) != NULL) {
			struct p11s_bridge_keyref r;

			if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size != sizeof(r)) {
				return 0;
			}
			memcpy(&r, p->data, sizeof(r));
			if (r.cookie != p11s_bridge__cookie() || r.key == NULL) {
				return 0;
			}
			ref = r.key;
		}
		/*
		 * A software key pair arriving here (an ECDH peer that is a full key pair) keeps only
		 * its public half: this keymgmt holds no software private keys, and has() says so.
		 */
	}
	/* What the parameters hold, within what the caller selected. */
	if (k->type == P11S_KEY_RSA) {
		if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) &&
		    OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N) != NULL) {
			pubsel = EVP_PKEY_PUBLIC_KEY;
			has_pub = 1;
		}
	} else if (k->type == P11S_KEY_EDDSA || k->type == P11S_KEY_XDH) {
		/* RFC 8410 §3: no domain parameters, the curve is the key type. */
		if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) &&
		    OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY) != NULL) {
			pubsel = EVP_PKEY_PUBLIC_KEY;
			has_pub = 1;
		}
	} else {
		if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) &&
		    (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY) != NULL ||
		        OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY) != NULL)) {
			pubsel = EVP_PKEY_PUBLIC_KEY;
			has_pub = 1;
		} else if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) &&
		    (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME) != NULL ||
		        OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_EC_FIELD_TYPE) != NULL)) {
			pubsel = EVP_PKEY_KEY_PARAMETERS;
		}
	}
	if (pubsel != 0) {
		if ((pctx = EVP_PKEY_CTX_new_from_name(k->prov->libctx, k->alg,
		         P11S_BRIDGE_PUB_PROPQ)) == NULL ||
		    EVP_PKEY_fromdata_init(pctx) <= 0 ||
		    EVP_PKEY_fromdata(pctx, &pub, pubsel, (OSSL_PARAM *)params) <= 0) {
			goto out;
		}
	}
	/* A token key without its public half would be unusable (sizes, checks, CMS). */
	if (ref != NULL && !has_pub && !k->has_pub) {
		goto out;
	}
	if (pub != NULL) {
		EVP_PKEY_free(k->pub);
		k->pub = pub;
		k->has_pub = has_pub;
		pub = NULL;
	}
	if (ref != NULL) {
		k->ref = ref;
	}
	ok = 1;
out:
	EVP_PKEY_free(pub);
	EVP_PKEY_CTX_free(pctx);
	return ok;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
	p11s_bkey *k = keydata;
	int sel;

	if (k == NULL || k->pub == NULL) {
		return 0;
	}
	/* The trap: never pretend a token key's private half can travel (see the header). */
	if (k->ref != NULL && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)) {
		return 0;
	}
	sel = selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS);
	if (!k->has_pub) {
		sel &= ~OSSL_KEYMGMT_SELECT_PUBLIC_KEY;
	}
	if (sel == 0) {
		return 0;
	}
	return EVP_PKEY_export(k->pub, sel, cb, cbarg);
}

static int km_has(const void *keydata, int selection)
{
	const p11s_bkey *k = keydata;
	int ok = 1;

	if (k == NULL) {
		return 0;
	}
	if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
		ok = ok && k->has_pub;
	}
	if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
		ok = ok && k->ref != NULL;
	}
	if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->type == P11S_KEY_EC) {
		ok = ok && k->pub != NULL;
	}
	return ok;
}

static int km_match(const void *keydata1, const void *keydata2, int selection)
{
	const p11s_bkey *a = keydata1, *b = keydata2;

	/* X25519 and X448 share a type but not a curve. */
	if (a == NULL || b == NULL || a->type != b->type || strcmp(a->alg, b->alg) != 0) {
		return 0;
	}
	if (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) {
		/* The token's private half belongs to its public key: comparing those suffices. */
		if (a->has_pub && b->has_pub) {
			return EVP_PKEY_eq(a->pub, b->pub) == 1;
		}
		return a->ref != NULL && a->ref == b->ref;
	}
	if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) && a->type == P11S_KEY_EC) {
		return a->pub != NULL && b->pub != NULL && EVP_PKEY_parameters_eq(a->pub, b->pub) == 1;
	}
	return 1;
}

static int km_validate(const void *keydata, int selection, int checktype)
{
	const p11s_bkey *k = keydata;
	EVP_PKEY_CTX *pctx = NULL;
	int ok = 1;

	if (k == NULL) {
		return 0;
	}
	if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->ref == NULL) {
		return 0;
	}
	if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS)) ==
	    0) {
		return 1;
	}
	if (k->pub == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_pkey(k->prov->libctx, k->pub, P11S_BRIDGE_PUB_PROPQ)) ==
	        NULL) {
		return 0;
	}
	/* A peer's point must be on the curve before the token sees it (invalid-curve attacks). */
	if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
		ok = k->has_pub && (checktype == OSSL_KEYMGMT_VALIDATE_QUICK_CHECK
		                          ? EVP_PKEY_public_check_quick(pctx)
		                          : EVP_PKEY_public_check(pctx)) > 0;
	}
	if (ok && (selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->type == P11S_KEY_EC) {
		ok = (checktype == OSSL_KEYMGMT_VALIDATE_QUICK_CHECK ? EVP_PKEY_param_check_quick(pctx)
		                                                     : EVP_PKEY_param_check(pctx)) > 0;
	}
	EVP_PKEY_CTX_free(pctx);
	return ok;
}

static void *km_dup(const void *keydata, int selection)
{
	const p11s_bkey *k = keydata;
	p11s_bkey *n;

	if (k == NULL || (n = bkey_new(k->prov, k->type, k->alg)) == NULL) {
		return NULL;
	}
	if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && k->has_pub) {
		if ((n->pub = EVP_PKEY_dup(k->pub)) == NULL) {
			goto err;
		}
		n->has_pub = 1;
	} else if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) && k->pub != NULL &&
	    k->type == P11S_KEY_EC) {
		if ((n->pub = EVP_PKEY_new()) == NULL || !EVP_PKEY_copy_parameters(n->pub, k->pub)) {
			goto err;
		}
	}
	if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
		n->ref = k->ref;
	}
	return n;
err:
	km_free(n);
	return NULL;
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
	p11s_bkey *k = keydata;

	if (k == NULL) {
		return 0;
	}
	if (k->pub == NULL) {
		return 1;
	}
	/* bits, security-bits, max-size (DER ECDSA size, as we emit), default digest SHA256. */
	return EVP_PKEY_get_params(k->pub, params);
}

static const OSSL_PARAM rsa_gettable[] = {
	OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM ec_gettable[] = {
	OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM ed25519_gettable[] = {
	OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
	OSSL_PARAM_END,
};

/* As the default provider's X25519 and X448 answer (no digest: nothing is signed). */
static const OSSL_PARAM xdh_gettable[] = {
	OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
	OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM *ed25519_gettable_params(void *provctx)
{
	return ed25519_gettable;
}

static const OSSL_PARAM *xdh_gettable_params(void *provctx)
{
	return xdh_gettable;
}

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
	return rsa_gettable;
}

static const OSSL_PARAM *ec_gettable_params(void *provctx)
{
	return ec_gettable;
}

static const OSSL_PARAM ec_settable[] = {
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM *ec_settable_params(void *provctx)
{
	return ec_settable;
}

/*
 * CMS (cms_ec.c) builds a kari peer by copying our domain parameters into an empty key and
 * then setting the originator's point with EVP_PKEY_set1_encoded_public_key().
 */
static int ec_set_params(void *keydata, const OSSL_PARAM params[])
{
	p11s_bkey *k = keydata;
	const OSSL_PARAM *p;

	if (k == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) == NULL) {
		return 1;
	}
	/* A token key's public half is the token's: replacing it would break every check. */
	if (k->ref != NULL || k->pub == NULL || p->data_type != OSSL_PARAM_OCTET_STRING) {
		return 0;
	}
	if (!EVP_PKEY_set1_encoded_public_key(k->pub, p->data, p->data_size)) {
		return 0;
	}
	k->has_pub = 1;
	return 1;
}

static const OSSL_PARAM rsa_types[] = {
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
	OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
	OSSL_PARAM_octet_string(P11S_BRIDGE_PARAM_KEYREF, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM ec_types[] = {
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
	OSSL_PARAM_octet_string(P11S_BRIDGE_PARAM_KEYREF, NULL, 0),
	OSSL_PARAM_END,
};

/* RFC 8410 keys (Ed25519, X25519, X448): the raw public key (RFC 8032 §5.1.5, RFC 7748 §5). */
static const OSSL_PARAM rfc8410_types[] = {
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
	OSSL_PARAM_octet_string(P11S_BRIDGE_PARAM_KEYREF, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM *rfc8410_import_types(int selection)
{
	return rfc8410_types;
}

static const OSSL_PARAM *rfc8410_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : rfc8410_types;
}

static const OSSL_PARAM *rsa_import_types(int selection)
{
	return rsa_types;
}

static const OSSL_PARAM *ec_import_types(int selection)
{
	return ec_types;
}

/* Only public parts leave (the key reference is not a parameter anyone else understands). */
static const OSSL_PARAM *rsa_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : rsa_types;
}

static const OSSL_PARAM *ec_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : ec_types;
}

static const char *rsa_query_operation_name(int operation_id)
{
	return "RSA";
}

static const char *ec_query_operation_name(int operation_id)
{
	switch (operation_id) {
	case OSSL_OP_SIGNATURE:
		return "ECDSA";
	case OSSL_OP_KEYEXCH:
		return "ECDH";
	default:
		return NULL;
	}
}

/* PureEdDSA (RFC 8032 §5.1): the signature operation has the key type's name. */
static const char *ed25519_query_operation_name(int operation_id)
{
	return operation_id == OSSL_OP_SIGNATURE ? "ED25519" : NULL;
}

/*
 * X25519 and X448 do key agreement only (RFC 8410 §5): the exchange has the key type's name,
 * as in the default provider, and there is no signature (nor cipher) for OpenSSL to look for.
 */
static const char *x25519_query_operation_name(int operation_id)
{
	return operation_id == OSSL_OP_KEYEXCH ? "X25519" : NULL;
}

static const char *x448_query_operation_name(int operation_id)
{
	return operation_id == OSSL_OP_KEYEXCH ? "X448" : NULL;
}

#define FN(f) ((void (*)(void))(f))

const OSSL_DISPATCH p11s_bridge__rsa_keymgmt[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, FN(rsa_new) },
	{ OSSL_FUNC_KEYMGMT_FREE, FN(km_free) },
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, FN(km_get_params) },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, FN(rsa_gettable_params) },
	{ OSSL_FUNC_KEYMGMT_HAS, FN(km_has) },
	{ OSSL_FUNC_KEYMGMT_MATCH, FN(km_match) },
	{ OSSL_FUNC_KEYMGMT_VALIDATE, FN(km_validate) },
	{ OSSL_FUNC_KEYMGMT_IMPORT, FN(km_import) },
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, FN(rsa_import_types) },
	{ OSSL_FUNC_KEYMGMT_EXPORT, FN(km_export) },
	{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, FN(rsa_export_types) },
	{ OSSL_FUNC_KEYMGMT_DUP, FN(km_dup) },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, FN(rsa_query_operation_name) },
	{ 0, NULL },
};

const OSSL_DISPATCH p11s_bridge__ec_keymgmt[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, FN(ec_new) },
	{ OSSL_FUNC_KEYMGMT_FREE, FN(km_free) },
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, FN(km_get_params) },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, FN(ec_gettable_params) },
	{ OSSL_FUNC_KEYMGMT_SET_PARAMS, FN(ec_set_params) },
	{ OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, FN(ec_settable_params) },
	{ OSSL_FUNC_KEYMGMT_HAS, FN(km_has) },
	{ OSSL_FUNC_KEYMGMT_MATCH, FN(km_match) },
	{ OSSL_FUNC_KEYMGMT_VALIDATE, FN(km_validate) },
	{ OSSL_FUNC_KEYMGMT_IMPORT, FN(km_import) },
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, FN(ec_import_types) },
	{ OSSL_FUNC_KEYMGMT_EXPORT, FN(km_export) },
	{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, FN(ec_export_types) },
	{ OSSL_FUNC_KEYMGMT_DUP, FN(km_dup) },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, FN(ec_query_operation_name) },
	{ 0, NULL },
};

const OSSL_DISPATCH p11s_bridge__ed25519_keymgmt[] = {
	{ OSSL_FUNC_KEYMGMT_NEW, FN(ed25519_new) },
	{ OSSL_FUNC_KEYMGMT_FREE, FN(km_free) },
	{ OSSL_FUNC_KEYMGMT_GET_PARAMS, FN(km_get_params) },
	{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, FN(ed25519_gettable_params) },
	{ OSSL_FUNC_KEYMGMT_HAS, FN(km_has) },
	{ OSSL_FUNC_KEYMGMT_MATCH, FN(km_match) },
	{ OSSL_FUNC_KEYMGMT_VALIDATE, FN(km_validate) },
	{ OSSL_FUNC_KEYMGMT_IMPORT, FN(km_import) },
	{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, FN(rfc8410_import_types) },
	{ OSSL_FUNC_KEYMGMT_EXPORT, FN(km_export) },
	{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, FN(rfc8410_export_types) },
	{ OSSL_FUNC_KEYMGMT_DUP, FN(km_dup) },
	{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, FN(ed25519_query_operation_name) },
	{ 0, NULL },
};

/* The X25519 and X448 tables differ in the key type each new key gets and in the exchange. */
#define XDH_KEYMGMT(new_fn, opname_fn)                                                       \
	{                                                                                    \
		{ OSSL_FUNC_KEYMGMT_NEW, FN(new_fn) },                                       \
		{ OSSL_FUNC_KEYMGMT_FREE, FN(km_free) },                                     \
		{ OSSL_FUNC_KEYMGMT_GET_PARAMS, FN(km_get_params) },                         \
		{ OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, FN(xdh_gettable_params) },              \
		{ OSSL_FUNC_KEYMGMT_HAS, FN(km_has) },                                       \
		{ OSSL_FUNC_KEYMGMT_MATCH, FN(km_match) },                                   \
		{ OSSL_FUNC_KEYMGMT_VALIDATE, FN(km_validate) },                             \
		{ OSSL_FUNC_KEYMGMT_IMPORT, FN(km_import) },                                 \
		{ OSSL_FUNC_KEYMGMT_IMPORT_TYPES, FN(rfc8410_import_types) },                \
		{ OSSL_FUNC_KEYMGMT_EXPORT, FN(km_export) },                                 \
		{ OSSL_FUNC_KEYMGMT_EXPORT_TYPES, FN(rfc8410_export_types) },                \
		{ OSSL_FUNC_KEYMGMT_DUP, FN(km_dup) },                                       \
		{ OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, FN(opname_fn) },                   \
		{ 0, NULL },                                                                 \
	}

const OSSL_DISPATCH p11s_bridge__x25519_keymgmt[] =
    XDH_KEYMGMT(x25519_new, x25519_query_operation_name);
const OSSL_DISPATCH p11s_bridge__x448_keymgmt[] = XDH_KEYMGMT(x448_new, x448_query_operation_name);

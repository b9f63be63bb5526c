/*
 * The bridge's ECDH: the token computes Z with CKM_ECDH1_DERIVE (CKD_NULL) from the peer's
 * uncompressed point; the host applies the KDF the caller asks for. CMS kari (cms_ec.c, RFC
 * 5753 §3.1) sets kdf-type X963KDF, the KDF digest, the KEK length and the DER
 * ECC-CMS-SharedInfo as "ukm"; the KEK is then X9.63: KM(i) = H(Z || INT32(i) || SharedInfo)
 * (RFC 8418 §2.1), computed with the default provider's X963KDF in the same library context.
 * Without a KDF the output is Z itself.
 *
 * The bridge's X25519 and X448 (RFC 7748 §6): the same mechanism with a Montgomery key
 * (CKK_EC_MONTGOMERY, PKCS#11 v3.0 §2.3.17), the peer's raw u-coordinate as public data
 * (§2.3.16). As OpenSSL's own X25519/X448 exchange, it takes no KDF and gives the 32 or 56
 * bytes of K; the CMS KDF of RFC 8418 §2 (HKDF or X9.63) is the caller's to run on the host.
 * The two share this file's context, dup, free, token call and error reporting.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/proverr.h>

#include "bridge/bridge_int.h"
#include "core/error_int.h"

typedef struct kexctx {
	p11s_bridge_op op;         /* first: prov, ref, pub = our public key (group, Z length) */
	const char *xdh;           /* "X25519" or "X448" for the XDH exchange, NULL for ECDH */
	size_t xdh_len;            /* XDH: the length of K and of public keys (RFC 7748 §5) */
	unsigned char *peer;       /* peer point 04||X||Y or XDH u-coordinate, copied at set_peer */
	size_t peer_len;
	int x963;                  /* kdf-type X963KDF */
	const p11s_bridge_md *kdf_md;
	size_t kdf_outlen;
	unsigned char *ukm;        /* X9.63 SharedInfo */
	size_t ukm_len;
	int cofactor;              /* -1 = the key's default */
} kexctx;

static void *kex_newctx(void *provctx)
{
	kexctx *c = p11s_bridge__op_new(provctx, sizeof(*c));

	if (c != NULL) {
		c->cofactor = -1;
	}
	return c;
}

static void kex_freectx(void *vctx)
{
	kexctx *c = vctx;

	if (c != NULL) {
		OPENSSL_free(c->peer);
		OPENSSL_free(c->ukm);
	}
	p11s_bridge__op_free(c);
}

static void *kex_dupctx(void *vctx)
{
	const kexctx *c = vctx;
	kexctx *d;

	if ((d = p11s_bridge__op_dup(c, sizeof(*c))) == NULL) {
		return NULL;
	}
	d->ukm = NULL; /* not the original's, should the peer's copy fail */
	if (!p11s_bridge__dup_octets(&d->peer, c->peer, c->peer_len) ||
	    !p11s_bridge__dup_octets(&d->ukm, c->ukm, c->ukm_len)) {
		kex_freectx(d);
		return NULL;
	}
	return d;
}

static int kex_set_ctx_params(void *vctx, const OSSL_PARAM params[]);
static int xdh_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

/* What both inits do: take the token key of `type` and forget the previous operation's KDF. */
static int kex_reset(kexctx *c, void *provkey, int type)
{
	if (!p11s_bridge__op_token_key(c, provkey, type)) {
		return 0;
	}
	c->x963 = 0;
	c->kdf_md = NULL;
	c->kdf_outlen = 0;
	OPENSSL_free(c->ukm);
	c->ukm = NULL;
	c->ukm_len = 0;
	c->cofactor = -1;
	OPENSSL_free(c->peer);
	c->peer = NULL;
	c->peer_len = 0;
	c->xdh = NULL;
	c->xdh_len = 0;
	return 1;
}

static int kex_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	kexctx *c = vctx;

	if (!kex_reset(c, provkey, P11S_KEY_EC)) {
		return 0;
	}
	return kex_set_ctx_params(c, params);
}

/* The raw public key of an X25519/X448 key (RFC 7748 §5), malloc'd in `*out`. */
static int xdh_raw(const EVP_PKEY *pub, unsigned char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (!EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, NULL, 0, len) ||
	    *len == 0 || (*out = OPENSSL_malloc(*len)) == NULL ||
	    !EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, *out, *len, len)) {
		OPENSSL_free(*out);
		*out = NULL;
		return 0;
	}
	return 1;
}

static int xdh_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	kexctx *c = vctx;
	const p11s_bkey *k = provkey;
	unsigned char *own = NULL;

	if (!kex_reset(c, provkey, P11S_KEY_XDH)) {
		return 0;
	}
	/* K is as long as a public key: 32 bytes for X25519, 56 for X448 (RFC 7748 §6). */
	if (!xdh_raw(c->op.pub, &own, &c->xdh_len)) {
		c->xdh_len = 0;
		ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_KEY);
		return 0;
	}
	OPENSSL_free(own);
	c->xdh = k->alg;
	return xdh_set_ctx_params(c, params);
}

static int kex_set_peer(void *vctx, void *provkey)
{
	kexctx *c = vctx;
	p11s_bkey *peer = provkey;
	unsigned char *pt = NULL;
	size_t ptlen = 0;

	if (c == NULL || c->op.pub == NULL || peer == NULL || peer->type != P11S_KEY_EC ||
	    peer->pub == NULL || !peer->has_pub) {
		ERR_raise(ERR_LIB_PROV, PROV_R_NOT_A_PUBLIC_KEY);
		return 0;
	}
	/* Both points on one curve (RFC 5753 §3.1.2: the originator uses the recipient's). */
	if (EVP_PKEY_parameters_eq(c->op.pub, peer->pub) != 1) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISMATCHING_DOMAIN_PARAMETERS);
		return 0;
	}
	/* A copy: CMS frees the peer key right after setting it. */
	if (!p11s_bridge__ec_point(c->op.prov->libctx, peer->pub, &pt, &ptlen)) {
		ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_KEY);
		return 0;
	}
	OPENSSL_free(c->peer);
	c->peer = pt;
	c->peer_len = ptlen;
	return 1;
}

static int xdh_set_peer(void *vctx, void *provkey)
{
	kexctx *c = vctx;
	p11s_bkey *peer = provkey;
	unsigned char *u = NULL;
	size_t ulen = 0;

	if (c == NULL || c->xdh == NULL || peer == NULL || peer->pub == NULL || !peer->has_pub) {
		ERR_raise(ERR_LIB_PROV, PROV_R_NOT_A_PUBLIC_KEY);
		return 0;
	}
	/* RFC 7748 §6: both keys on one curve; X25519 and X448 are different key types. */
	if (peer->type != P11S_KEY_XDH || strcmp(peer->alg, c->xdh) != 0) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_A_PUBLIC_KEY, "p11s: the peer of an %s key "
		    "must be an %s key, not %s", c->xdh, c->xdh, peer->alg);
		return 0;
	}
	/* A copy: the caller may free the peer key right after setting it. */
	if (!xdh_raw(peer->pub, &u, &ulen) || ulen != c->xdh_len) {
		OPENSSL_free(u);
		ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_KEY);
		return 0;
	}
	OPENSSL_free(c->peer);
	c->peer = u;
	c->peer_len = ulen;
	return 1;
}

/*
 * ECDH: Z is the x-coordinate, as long as the field (SEC 1 §3.3.1): half the uncompressed
 * point. XDH: K is as long as a public key (RFC 7748 §6).
 */
static size_t z_len(const kexctx *c)
{
	unsigned char *pt = NULL;
	size_t len = 0, z = 0;

	if (c->xdh != NULL) {
		return c->xdh_len;
	}
	if (p11s_bridge__ec_point(c->op.prov->libctx, c->op.pub, &pt, &len) && len > 1) {
		z = (len - 1) / 2;
	}
	OPENSSL_free(pt);
	return z;
}

/*
 * RFC 7748 §6.1, §6.2: an all-zero K means the peer's key was of small order; the check is
 * made (in constant time, as OpenSSL's own X25519 makes it) and the agreement refused.
 */
static int all_zero(const unsigned char *k, size_t len)
{
	unsigned char acc = 0;

	for (size_t i = 0; i < len; i++) {
		acc |= k[i];
	}
	return acc == 0;
}

static int x963(kexctx *c, unsigned char *out, size_t outlen, const p11s_buf *z)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM p[4], *q = p;
	int ok = 0;

	*q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)c->kdf_md->name, 0);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z->data, z->len);
	if (c->ukm != NULL) {
		*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, c->ukm, c->ukm_len);
	}
	*q = OSSL_PARAM_construct_end();
	if ((kdf = EVP_KDF_fetch(c->op.prov->libctx, OSSL_KDF_NAME_X963KDF, NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL || EVP_KDF_derive(kctx, out, outlen, p) <= 0) {
		goto out;
	}
	ok = 1;
out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok;
}

static int kex_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
	kexctx *c = vctx;
	p11s_mech mech = { P11S_MECH_ECDH1_DERIVE, 0, 0, 0, NULL, 0 };
	p11s_buf *z = NULL;
	size_t zl;
	int rc, ok = 0;

	if (c == NULL || c->op.ref == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if (c->x963 && (c->kdf_md == NULL || c->kdf_outlen == 0)) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_MESSAGE_DIGEST);
		return 0;
	}
	if (secret == NULL) {
		if (c->x963) {
			*secretlen = c->kdf_outlen;
			return 1;
		}
		if ((zl = z_len(c)) == 0) {
			return 0;
		}
		*secretlen = zl;
		return 1;
	}
	if (c->peer == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if ((c->x963 && outlen < c->kdf_outlen) || (c->xdh != NULL && outlen < c->xdh_len)) {
		/* XDH: as OpenSSL's own, K is given whole or not at all. */
		ERR_raise(ERR_LIB_PROV, PROV_R_OUTPUT_BUFFER_TOO_SMALL);
		return 0;
	}
	if ((rc = p11s_token__derive(c->op.ref, c->peer, c->peer_len, &z)) < 0) {
		p11s_bridge__token_failed(rc, &mech, PROV_R_FAILED_DURING_DERIVATION,
		    "token key agreement failed");
		goto out;
	}
	if (c->xdh != NULL) {
		if (z->len != c->xdh_len) {
			p11s_error__set(P11S_ERR_TOKEN,
			    "token returned a %zu-byte %s shared secret (RFC 7748 §6: %zu)", z->len,
			    c->xdh, c->xdh_len);
			p11s_bridge__raise(PROV_R_FAILED_DURING_DERIVATION, "bad shared secret");
			goto out;
		}
		if (all_zero(z->data, z->len)) {
			p11s_error__set(P11S_ERR_MALFORMED,
			    "the peer's %s key is of small order (K is all zero, RFC 7748 §6)", c->xdh);
			p11s_bridge__raise(PROV_R_FAILED_DURING_DERIVATION, "refused shared secret");
			goto out;
		}
		memcpy(secret, z->data, z->len);
		*secretlen = z->len;
	} else if (c->x963) {
		if (!x963(c, secret, c->kdf_outlen, z)) {
			p11s_error__ossl(P11S_ERR_CRYPTO, "X9.63 KDF failed");
			ERR_raise(ERR_LIB_PROV, PROV_R_FAILED_DURING_DERIVATION);
			goto out;
		}
		*secretlen = c->kdf_outlen;
	} else {
		/* As OpenSSL's own ECDH: a shorter buffer gets the leading bytes of Z. */
		zl = z->len < outlen ? z->len : outlen;
		memcpy(secret, z->data, zl);
		*secretlen = zl;
	}
	ok = 1;
out:
	p11s_buf_free(z);
	return ok;
}

static int kex_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	kexctx *c = vctx;
	const OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if (params == NULL) {
		return 1;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE)) !=
	    NULL) {
		int mode;

		if (!OSSL_PARAM_get_int(p, &mode) || mode < -1 || mode > 1) {
			return 0;
		}
		/*
		 * CKD_NULL with CKM_ECDH1_DERIVE is plain ECDH. Cofactor ECDH equals it on curves
		 * with cofactor 1 (the NIST prime curves); elsewhere we cannot honour it.
		 */
		if (mode == 1 && c->op.pub != NULL) {
			BIGNUM *h = NULL;
			int one = EVP_PKEY_get_bn_param(c->op.pub, OSSL_PKEY_PARAM_EC_COFACTOR, &h) &&
			    BN_is_one(h);

			BN_free(h);
			if (!one) {
				ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_SUPPORTED,
				    "p11s: cofactor ECDH on a curve with cofactor > 1");
				return 0;
			}
		}
		c->cofactor = mode;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE)) != NULL) {
		const char *type = NULL;

		if (!OSSL_PARAM_get_utf8_string_ptr(p, &type)) {
			return 0;
		}
		if (type[0] == '\0') {
			c->x963 = 0;
		} else if (OPENSSL_strcasecmp(type, OSSL_KDF_NAME_X963KDF) == 0) {
			c->x963 = 1;
		} else {
			ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_SUPPORTED, "p11s: KDF %s", type);
			return 0;
		}
	}
	if (!p11s_bridge__set_md(c->op.prov->libctx, params, OSSL_EXCHANGE_PARAM_KDF_DIGEST,
	        &c->kdf_md)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_OUTLEN)) != NULL &&
	    !OSSL_PARAM_get_size_t(p, &c->kdf_outlen)) {
		return 0;
	}
	/* Copied: EVP_PKEY_CTX_set0_ecdh_kdf_ukm() frees the caller's buffer after us. */
	return p11s_bridge__set_octets(params, OSSL_EXCHANGE_PARAM_KDF_UKM, &c->ukm, &c->ukm_len);
}

/*
 * XDH has no parameters, as OpenSSL's own X25519/X448 exchange: the KDF of a CMS recipient
 * (RFC 8418 §2) runs on the host over K. A KDF type is refused rather than ignored, so that
 * no caller takes K for a derived key; other parameters are ignored, as a provider does.
 */
static int xdh_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	kexctx *c = vctx;
	const OSSL_PARAM *p;
	const char *type = NULL;

	if (c == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE)) == NULL) {
		return 1;
	}
	if (!OSSL_PARAM_get_utf8_string_ptr(p, &type)) {
		return 0;
	}
	if (type[0] != '\0') {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_SUPPORTED,
		    "p11s: %s takes no KDF (%s); RFC 8418's runs over the shared secret", c->xdh,
		    type);
		return 0;
	}
	return 1;
}

static const OSSL_PARAM xdh_settable[] = {
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
	OSSL_PARAM_END,
};

P11S_BRIDGE_PARAM_TABLE(xdh_settable_ctx_params, xdh_settable)

static int kex_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	kexctx *c = vctx;
	OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE)) != NULL &&
	    !OSSL_PARAM_set_int(p, c->cofactor == 1 ? 1 : 0)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_TYPE)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, c->x963 ? OSSL_KDF_NAME_X963KDF : "")) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_DIGEST)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, c->kdf_md ? c->kdf_md->name : "")) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_OUTLEN)) != NULL &&
	    !OSSL_PARAM_set_size_t(p, c->kdf_outlen)) {
		return 0;
	}
	return p11s_bridge__get_octets(params, OSSL_EXCHANGE_PARAM_KDF_UKM, c->ukm, c->ukm_len);
}

static const OSSL_PARAM kex_settable[] = {
	OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST_PROPS, NULL, 0),
	OSSL_PARAM_size_t(OSSL_EXCHANGE_PARAM_KDF_OUTLEN, NULL),
	OSSL_PARAM_octet_string(OSSL_EXCHANGE_PARAM_KDF_UKM, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM kex_gettable[] = {
	OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST, NULL, 0),
	OSSL_PARAM_size_t(OSSL_EXCHANGE_PARAM_KDF_OUTLEN, NULL),
	OSSL_PARAM_octet_ptr(OSSL_EXCHANGE_PARAM_KDF_UKM, NULL, 0),
	OSSL_PARAM_END,
};

P11S_BRIDGE_PARAM_TABLE(kex_settable_ctx_params, kex_settable)
P11S_BRIDGE_PARAM_TABLE(kex_gettable_ctx_params, kex_gettable)

#define FN P11S_BRIDGE_FN

const OSSL_DISPATCH p11s_bridge__ecdh_keyexch[] = {
	{ OSSL_FUNC_KEYEXCH_NEWCTX, FN(kex_newctx) },
	{ OSSL_FUNC_KEYEXCH_FREECTX, FN(kex_freectx) },
	{ OSSL_FUNC_KEYEXCH_DUPCTX, FN(kex_dupctx) },
	{ OSSL_FUNC_KEYEXCH_INIT, FN(kex_init) },
	{ OSSL_FUNC_KEYEXCH_SET_PEER, FN(kex_set_peer) },
	{ OSSL_FUNC_KEYEXCH_DERIVE, FN(kex_derive) },
	{ OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, FN(kex_set_ctx_params) },
	{ OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, FN(kex_settable_ctx_params) },
	{ OSSL_FUNC_KEYEXCH_GET_CTX_PARAMS, FN(kex_get_ctx_params) },
	{ OSSL_FUNC_KEYEXCH_GETTABLE_CTX_PARAMS, FN(kex_gettable_ctx_params) },
	{ 0, NULL },
};

const OSSL_DISPATCH p11s_bridge__xdh_keyexch[] = {
	{ OSSL_FUNC_KEYEXCH_NEWCTX, FN(kex_newctx) },
	{ OSSL_FUNC_KEYEXCH_FREECTX, FN(kex_freectx) },
	{ OSSL_FUNC_KEYEXCH_DUPCTX, FN(kex_dupctx) },
	{ OSSL_FUNC_KEYEXCH_INIT, FN(xdh_init) },
	{ OSSL_FUNC_KEYEXCH_SET_PEER, FN(xdh_set_peer) },
	{ OSSL_FUNC_KEYEXCH_DERIVE, FN(kex_derive) },
	{ OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, FN(xdh_set_ctx_params) },
	{ OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, FN(xdh_settable_ctx_params) },
	{ 0, NULL },
};

/*
 * The bridge's RSA decryption: PKCS#1 v1.5 (CKM_RSA_PKCS) and OAEP (CKM_RSA_PKCS_OAEP with the
 * OAEP digest, MGF1 digest and label CMS sets from RSAES-OAEP-params, RFC 8017 §A.2.1). The
 * padding is removed on the token, never on the host: raw RSA plus host-side unpadding is a
 * padding-oracle surface (DESIGN.md decision 1).
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/rsa.h>

#include "bridge/bridge_int.h"
#include "core/error_int.h"

typedef struct decctx {
	p11s_bprov *prov;
	p11s_key *ref;
	EVP_PKEY *pub;
	int pad;                       /* RSA_PKCS1_PADDING or RSA_PKCS1_OAEP_PADDING */
	const p11s_bridge_md *oaep_md; /* RFC 8017 §A.2.1 default: SHA-1 */
	const p11s_bridge_md *mgf1_md; /* NULL: same as oaep_md */
	unsigned char *label;
	size_t label_len;
} decctx;

static void *dec_newctx(void *provctx)
{
	decctx *c = OPENSSL_zalloc(sizeof(*c));

	if (c != NULL) {
		c->prov = provctx;
		c->pad = RSA_PKCS1_PADDING;
	}
	return c;
}

static void dec_freectx(void *vctx)
{
	decctx *c = vctx;

	if (c == NULL) {
		return;
	}
	EVP_PKEY_free(c->pub);
	OPENSSL_free(c->label);
	OPENSSL_free(c);
}

static void *dec_dupctx(void *vctx)
{
	const decctx *c = vctx;
	decctx *d;

	if ((d = OPENSSL_memdup(c, sizeof(*c))) == NULL) {
		return NULL;
	}
	d->label = NULL;
	if (d->pub != NULL && !EVP_PKEY_up_ref(d->pub)) {
		d->pub = NULL;
		dec_freectx(d);
		return NULL;
	}
	if (c->label != NULL && (d->label = OPENSSL_memdup(c->label, c->label_len)) == NULL) {
		dec_freectx(d);
		return NULL;
	}
	return d;
}

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int dec_decrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	decctx *c = vctx;
	p11s_bkey *k = provkey;

	if (c == NULL || k == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if (k->type != P11S_KEY_RSA || k->ref == NULL || k->pub == NULL || !k->has_pub) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_A_PRIVATE_KEY,
		    "p11s: the key has no token reference");
		return 0;
	}
	if (!EVP_PKEY_up_ref(k->pub)) {
		return 0;
	}
	EVP_PKEY_free(c->pub);
	c->pub = k->pub;
	c->ref = k->ref;
	c->pad = RSA_PKCS1_PADDING;
	c->oaep_md = c->mgf1_md = NULL;
	OPENSSL_free(c->label);
	c->label = NULL;
	c->label_len = 0;
	return dec_set_ctx_params(c, params);
}

static int dec_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
    const unsigned char *in, size_t inlen)
{
	decctx *c = vctx;
	p11s_mech mech = { 0 };
	p11s_buf *buf = NULL;
	int size, rc, ok = 0;

	if (c == NULL || c->ref == NULL || c->pub == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if ((size = EVP_PKEY_get_size(c->pub)) <= 0) {
		return 0;
	}
	if (out == NULL) {
		/* The plaintext is at most k bytes; the token is not asked for a size. */
		*outlen = (size_t)size;
		return 1;
	}
	if (c->pad == RSA_PKCS1_OAEP_PADDING) {
		const p11s_bridge_md *md = c->oaep_md, *mgf1;

		if (md == NULL && (md = p11s_bridge__md(c->prov->libctx, "SHA1")) == NULL) {
			return 0;
		}
		mgf1 = c->mgf1_md ? c->mgf1_md : md;
		mech.type = P11S_MECH_RSA_PKCS_OAEP;
		mech.hash = md->ck_hash;
		mech.mgf = mgf1->ck_mgf;
		mech.label = c->label;
		mech.label_len = c->label_len;
	} else {
		mech.type = P11S_MECH_RSA_PKCS;
	}
	if ((rc = p11s_token__decrypt(c->ref, &mech, in, inlen, &buf)) < 0) {
		p11s_bridge__token_failed(rc, &mech, PROV_R_FAILED_TO_DECRYPT,
		    "token decryption failed");
		goto out;
	}
	if (buf->len > outsize) {
		ERR_raise(ERR_LIB_PROV, PROV_R_OUTPUT_BUFFER_TOO_SMALL);
		goto out;
	}
	memcpy(out, buf->data, buf->len);
	*outlen = buf->len;
	ok = 1;
out:
	p11s_buf_free(buf);
	return ok;
}

static int md_param(decctx *c, const OSSL_PARAM *p, const p11s_bridge_md **out)
{
	const char *name = NULL;
	const p11s_bridge_md *md;

	if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) ||
	    (md = p11s_bridge__md(c->prov->libctx, name)) == NULL) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_INVALID_DIGEST, "p11s: digest %s",
		    name ? name : "?");
		return 0;
	}
	*out = md;
	return 1;
}

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	decctx *c = vctx;
	const OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if (params == NULL) {
		return 1;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
		int pad;

		if (!p11s_bridge__pad_get(p, &pad)) {
			ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_PADDING_MODE);
			return 0;
		}
		/* Never raw RSA (CKM_RSA_X_509): the token removes the padding. */
		if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_OAEP_PADDING) {
			ERR_raise_data(ERR_LIB_PROV, PROV_R_ILLEGAL_OR_UNSUPPORTED_PADDING_MODE,
			    "p11s: padding mode %d is not offered for token keys", pad);
			return 0;
		}
		c->pad = pad;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL &&
	    !md_param(c, p, &c->oaep_md)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL &&
	    !md_param(c, p, &c->mgf1_md)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL) {
		void *label = NULL;
		size_t len = 0;

		/* Copied: EVP_PKEY_CTX_set0_rsa_oaep_label() frees the caller's buffer after us. */
		if (!OSSL_PARAM_get_octet_string(p, &label, 0, &len)) {
			return 0;
		}
		OPENSSL_free(c->label);
		c->label = len ? label : NULL;
		c->label_len = len;
		if (len == 0) {
			OPENSSL_free(label);
		}
	}
	return 1;
}

static int dec_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	decctx *c = vctx;
	OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL &&
	    !p11s_bridge__pad_set(p, c->pad)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, c->oaep_md ? OBJ_nid2sn(c->oaep_md->nid) : "SHA1")) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL) {
		const p11s_bridge_md *m = c->mgf1_md ? c->mgf1_md : c->oaep_md;

		if (!OSSL_PARAM_set_utf8_string(p, m ? OBJ_nid2sn(m->nid) : "SHA1")) {
			return 0;
		}
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL &&
	    !OSSL_PARAM_set_octet_ptr(p, c->label, c->label_len)) {
		return 0;
	}
	return 1;
}

static const OSSL_PARAM dec_settable[] = {
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
	OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM dec_gettable[] = {
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
	OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM *dec_settable_ctx_params(void *vctx, void *provctx)
{
	return dec_settable;
}

static const OSSL_PARAM *dec_gettable_ctx_params(void *vctx, void *provctx)
{
	return dec_gettable;
}

#define FN(f) ((void (*)(void))(f))

const OSSL_DISPATCH p11s_bridge__rsa_asym_cipher[] = {
	{ OSSL_FUNC_ASYM_CIPHER_NEWCTX, FN(dec_newctx) },
	{ OSSL_FUNC_ASYM_CIPHER_FREECTX, FN(dec_freectx) },
	{ OSSL_FUNC_ASYM_CIPHER_DUPCTX, FN(dec_dupctx) },
	{ OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, FN(dec_decrypt_init) },
	{ OSSL_FUNC_ASYM_CIPHER_DECRYPT, FN(dec_decrypt) },
	{ OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, FN(dec_get_ctx_params) },
	{ OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, FN(dec_gettable_ctx_params) },
	{ OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, FN(dec_set_ctx_params) },
	{ OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, FN(dec_settable_ctx_params) },
	{ 0, NULL },
};

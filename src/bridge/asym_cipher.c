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
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "bridge/bridge_int.h"
#include "core/error_int.h"

typedef struct decctx {
	p11s_bridge_op op;             /* first: prov, ref, pub (common.c) */
	int pad;                       /* RSA_PKCS1_PADDING or RSA_PKCS1_OAEP_PADDING */
	const p11s_bridge_md *oaep_md; /* RFC 8017 §A.2.1 default: SHA-1 */
	const p11s_bridge_md *mgf1_md; /* NULL: same as oaep_md */
	unsigned char *label;
	size_t label_len;
} decctx;

static void *dec_newctx(void *provctx)
{
	decctx *c = p11s_bridge__op_new(provctx, sizeof(*c));

	if (c != NULL) {
		c->pad = RSA_PKCS1_PADDING;
	}
	return c;
}

static void dec_freectx(void *vctx)
{
	decctx *c = vctx;

	if (c != NULL) {
		OPENSSL_free(c->label);
	}
	p11s_bridge__op_free(c);
}

static void *dec_dupctx(void *vctx)
{
	const decctx *c = vctx;
	decctx *d;

	if ((d = p11s_bridge__op_dup(c, sizeof(*c))) == NULL) {
		return NULL;
	}
	if (!p11s_bridge__dup_octets(&d->label, c->label, c->label_len)) {
		dec_freectx(d);
		return NULL;
	}
	return d;
}

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int dec_decrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	decctx *c = vctx;

	if (!p11s_bridge__op_token_key(c, provkey, P11S_KEY_RSA)) {
		return 0;
	}
	c->pad = RSA_PKCS1_PADDING;
	c->oaep_md = c->mgf1_md = NULL;
	OPENSSL_free(c->label);
	c->label = NULL;
	c->label_len = 0;
	return dec_set_ctx_params(c, params);
}

/*
 * Does the token honour an OAEP label (pSourceData, RFC 8017 §7.1.2 step 3a)? PKCS#11 v2.40
 * §2.1.8 passes it as CKZ_DATA_SPECIFIED; a token that accepts the parameter but decrypts as
 * if the label were empty (SoftHSM 2.6.1 does) fails every labelled message like a wrong key.
 * Asked only after a labelled decryption failed: a random value of ours is encrypted on the
 * host with the same hash, MGF and label and decrypted on the token. The answer depends on the
 * token alone, never on the message's data, so telling it apart is no padding oracle (RFC
 * 3218). @return 1 the label works, 0 it does not, -1 unknown (the probe itself failed).
 */
static int label_probe(decctx *c, const p11s_mech *mech, const p11s_bridge_md *md,
    const p11s_bridge_md *mgf1)
{
	EVP_PKEY_CTX *pc = NULL;
	unsigned char val[32], *ct = NULL, *lbl = NULL;
	size_t ctlen = 0;
	p11s_buf *buf = NULL;
	int ret = -1;

	if (RAND_bytes(val, sizeof(val)) != 1 ||
	    (pc = EVP_PKEY_CTX_new_from_pkey(NULL, c->op.pub, "provider=default")) == NULL ||
	    EVP_PKEY_encrypt_init(pc) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(pc, md->name, NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pc, mgf1->name, NULL) <= 0 ||
	    (lbl = OPENSSL_memdup(c->label, c->label_len)) == NULL) {
		goto out;
	}
	if (EVP_PKEY_CTX_set0_rsa_oaep_label(pc, lbl, (int)c->label_len) <= 0) {
		OPENSSL_free(lbl);
		goto out;
	}
	if (EVP_PKEY_encrypt(pc, NULL, &ctlen, val, sizeof(val)) <= 0 ||
	    (ct = OPENSSL_malloc(ctlen)) == NULL ||
	    EVP_PKEY_encrypt(pc, ct, &ctlen, val, sizeof(val)) <= 0) {
		goto out;
	}
	if (p11s_token__decrypt(c->op.ref, mech, ct, ctlen, &buf) < 0) {
		int code = p11s_error_last()->code;

		ret = code == P11S_ERR_DECRYPT || code == P11S_ERR_TOKEN ? 0 : -1;
	} else {
		ret = buf->len == sizeof(val) && CRYPTO_memcmp(buf->data, val, sizeof(val)) == 0;
	}
out:
	OPENSSL_cleanse(val, sizeof(val));
	p11s_buf_free(buf);
	OPENSSL_free(ct);
	EVP_PKEY_CTX_free(pc);
	ERR_clear_error();
	return ret;
}

static int dec_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
    const unsigned char *in, size_t inlen)
{
	decctx *c = vctx;
	p11s_mech mech = { 0 };
	p11s_buf *buf = NULL;
	const p11s_bridge_md *md = NULL, *mgf1 = NULL;
	int size, rc, ok = 0;

	if (!p11s_bridge__op_size(c, &size)) {
		return 0;
	}
	if (out == NULL) {
		/* The plaintext is at most k bytes; the token is not asked for a size. */
		*outlen = (size_t)size;
		return 1;
	}
	if (c->pad == RSA_PKCS1_OAEP_PADDING) {
		md = c->oaep_md;
		if (md == NULL && (md = p11s_bridge__md(c->op.prov->libctx, "SHA1")) == NULL) {
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
	if ((rc = p11s_token__decrypt(c->op.ref, &mech, in, inlen, &buf)) < 0) {
		/*
		 * A data-dependent failure: CKR_ENCRYPTED_DATA_INVALID, or the vague
		 * CKR_GENERAL_ERROR SoftHSM 2.6.1 answers for a bad OAEP block (measured).
		 */
		if ((rc == P11S_ERR_DECRYPT || rc == P11S_ERR_TOKEN) && mech.label_len > 0 &&
		    label_probe(c, &mech, md, mgf1) == 0) {
			/* The token, not the message: exit 3 with the parameters (docs/envelope.md). */
			rc = p11s_error__set(P11S_ERR_MECHANISM, "token ignores the OAEP label: %s "
			    "(hash %s, MGF1 with %s, label of %zu bytes) accepted the label but does "
			    "not decrypt with it (tested with a value of ours)",
			    p11s_mech_name(mech.type), md->name, mgf1->name, mech.label_len);
		}
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

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	decctx *c = vctx;

	if (c == NULL) {
		return 0;
	}
	if (params == NULL) {
		return 1;
	}
	/* Never raw RSA (CKM_RSA_X_509): the token removes the padding. */
	return p11s_bridge__set_pad(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE, RSA_PKCS1_OAEP_PADDING,
	           &c->pad) &&
	    p11s_bridge__set_md(c->op.prov->libctx, params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
	        &c->oaep_md) &&
	    p11s_bridge__set_md(c->op.prov->libctx, params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
	        &c->mgf1_md) &&
	    /* Copied: EVP_PKEY_CTX_set0_rsa_oaep_label() frees the caller's buffer after us. */
	    p11s_bridge__set_octets(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, &c->label,
	        &c->label_len);
}

static int dec_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	decctx *c = vctx;

	if (c == NULL) {
		return 0;
	}
	/* Unset digests answer RFC 8017 §A.2.1's default, SHA-1, as the token will use. */
	return p11s_bridge__get_pad(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE, c->pad) &&
	    p11s_bridge__get_md(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, c->oaep_md, "SHA1") &&
	    p11s_bridge__get_md(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
	        c->mgf1_md ? c->mgf1_md : c->oaep_md, "SHA1") &&
	    p11s_bridge__get_octets(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, c->label,
	        c->label_len);
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

P11S_BRIDGE_PARAM_TABLE(dec_settable_ctx_params, dec_settable)
P11S_BRIDGE_PARAM_TABLE(dec_gettable_ctx_params, dec_gettable)

#define FN P11S_BRIDGE_FN

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

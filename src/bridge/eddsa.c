/*
 * The bridge's Ed25519 signature: PureEdDSA (RFC 8032 §5.1) with CKM_EDDSA and no parameters
 * (PKCS#11 v3.0 §2.3.14), over the whole message. There is no digest step: EdDSA hashes the
 * message itself with SHA-512 inside the token, so only the one-shot EVP_DigestSign() and
 * EVP_DigestVerify() exist here (provider-signature(7): digest_sign and digest_verify, with
 * a NULL or empty digest name; OpenSSL's own Ed25519 offers the same).
 *
 * As for RSA and ECDSA (signature.c), the token's signature is verified with the public key
 * before it is released (DESIGN.md decision 3), and verification is the default provider's.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/proverr.h>

#include "bridge/bridge_int.h"
#include "core/error_int.h"

/* RFC 8032 §5.1.6: R || S, 32 octets each. */
#define ED25519_SIGLEN 64

typedef struct edctx {
	p11s_bridge_op op; /* first: prov, ref, pub (common.c) */
} edctx;

static void *ed_newctx(void *provctx, const char *propq)
{
	return p11s_bridge__op_new(provctx, sizeof(edctx));
}

static void ed_freectx(void *vctx)
{
	p11s_bridge__op_free(vctx);
}

static void *ed_dupctx(void *vctx)
{
	return p11s_bridge__op_dup(vctx, sizeof(edctx));
}

static int ed_init(edctx *c, const char *mdname, void *provkey, int need_private)
{
	const p11s_bkey *k = provkey;

	if (c == NULL || k == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	/* RFC 8410 §6 / RFC 8419 §2.3: PureEdDSA takes the message, never a prehash. */
	if (mdname != NULL && mdname[0] != '\0') {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_INVALID_DIGEST,
		    "p11s: Ed25519 signs the message itself, not a %s digest", mdname);
		return 0;
	}
	if (k->type != P11S_KEY_EDDSA) {
		ERR_raise(ERR_LIB_PROV, PROV_R_OPERATION_NOT_SUPPORTED_FOR_THIS_KEYTYPE);
		return 0;
	}
	if (k->pub == NULL || !k->has_pub) {
		ERR_raise(ERR_LIB_PROV, PROV_R_NOT_A_PUBLIC_KEY);
		return 0;
	}
	if (need_private && k->ref == NULL) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_A_PRIVATE_KEY,
		    "p11s: the key has no token reference");
		return 0;
	}
	return p11s_bridge__op_use_key(c, k);
}

static int ed_sign_init(void *vctx, const char *mdname, void *provkey,
    const OSSL_PARAM params[])
{
	return ed_init(vctx, mdname, provkey, 1);
}

static int ed_verify_init(void *vctx, const char *mdname, void *provkey,
    const OSSL_PARAM params[])
{
	return ed_init(vctx, mdname, provkey, 0);
}

/* The default provider's PureEdDSA verification with the public half: 1 valid, else 0. */
static int verify_host(const edctx *c, const unsigned char *sig, size_t siglen,
    const unsigned char *tbs, size_t tbslen)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok;

	ok = m != NULL &&
	     EVP_DigestVerifyInit_ex(m, NULL, NULL, c->op.prov->libctx, P11S_BRIDGE_PUB_PROPQ,
	         c->op.pub, NULL) == 1 &&
	     EVP_DigestVerify(m, sig, siglen, tbs, tbslen) == 1;
	EVP_MD_CTX_free(m);
	return ok;
}

static int ed_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *tbs, size_t tbslen)
{
	edctx *c = vctx;
	p11s_mech mech = { .type = P11S_MECH_EDDSA };
	p11s_buf *buf = NULL;
	int rc, ok = 0;

	if (c == NULL || c->op.ref == NULL || c->op.pub == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if (sig == NULL) {
		*siglen = ED25519_SIGLEN;
		return 1;
	}
	if (sigsize < ED25519_SIGLEN) {
		ERR_raise(ERR_LIB_PROV, PROV_R_OUTPUT_BUFFER_TOO_SMALL);
		return 0;
	}
	if ((rc = p11s_token__sign(c->op.ref, &mech, tbs, tbslen, &buf)) < 0) {
		p11s_bridge__token_failed(rc, &mech, PROV_R_FAILED_TO_SIGN, "token signature failed");
		goto out;
	}
	if (buf->len != ED25519_SIGLEN) {
		p11s_error__set(P11S_ERR_TOKEN, "token returned a %zu-byte Ed25519 signature "
		                                "(RFC 8032: 64)", buf->len);
		p11s_bridge__raise(PROV_R_FAILED_TO_SIGN, "bad token signature");
		goto out;
	}
	if (!verify_host(c, buf->data, buf->len, tbs, tbslen)) {
		p11s_error__ossl(P11S_ERR_TOKEN, "the signature the token returned (CKM_EDDSA) does "
		                                 "not verify with the key's public key");
		p11s_bridge__raise(PROV_R_FAILED_TO_SIGN, "bad token signature");
		goto out;
	}
	memcpy(sig, buf->data, buf->len);
	*siglen = buf->len;
	ok = 1;
out:
	p11s_buf_free(buf);
	return ok;
}

static int ed_verify(void *vctx, const unsigned char *sig, size_t siglen,
    const unsigned char *tbs, size_t tbslen)
{
	const edctx *c = vctx;

	if (c == NULL || c->op.pub == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	return verify_host(c, sig, siglen, tbs, tbslen);
}

/* RFC 8410 §3: id-Ed25519 with the parameters absent (X.509 and CSRs ask for it). */
static const unsigned char ed25519_algid[] = { 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70 };

static int ed_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	if (vctx == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL &&
	    !OSSL_PARAM_set_octet_string(p, ed25519_algid, sizeof(ed25519_algid))) {
		return 0;
	}
	return 1;
}

static const OSSL_PARAM ed_gettable[] = {
	OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
	OSSL_PARAM_END,
};

P11S_BRIDGE_PARAM_TABLE(ed_gettable_ctx_params, ed_gettable)

#define FN P11S_BRIDGE_FN

const OSSL_DISPATCH p11s_bridge__ed25519_signature[] = {
	{ OSSL_FUNC_SIGNATURE_NEWCTX, FN(ed_newctx) },
	{ OSSL_FUNC_SIGNATURE_FREECTX, FN(ed_freectx) },
	{ OSSL_FUNC_SIGNATURE_DUPCTX, FN(ed_dupctx) },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, FN(ed_sign_init) },
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN, FN(ed_sign) },
	{ OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, FN(ed_verify_init) },
	{ OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, FN(ed_verify) },
	{ OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, FN(ed_get_ctx_params) },
	{ OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, FN(ed_gettable_ctx_params) },
	{ 0, NULL },
};

/*
 * The bridge's signatures: RSA PKCS#1 v1.5 (CKM_RSA_PKCS over a DigestInfo), RSA-PSS
 * (CKM_RSA_PKCS_PSS over the hash with its {hash, MGF1, salt} parameters) and ECDSA (CKM_ECDSA
 * over the hash, r||s re-encoded as DER). Never raw RSA (DESIGN.md decision 1).
 *
 * Both OpenSSL flows are served: EVP_PKEY_sign() over a digest (CMS without signed
 * attributes) and EVP_DigestSign*() (CMS with signed attributes), where OpenSSL 3.0 calls
 * digest_sign_init/update/final and has no fallback when they are missing. Hashing is done on
 * the host with the default provider of the same library context (DESIGN.md decision 3).
 *
 * Every signature the token returns is verified against the public key before it is released
 * (DESIGN.md decision 3; STYLE.md "Secrets"): a faulty token (or a short signature) fails here.
 * Verification itself is delegated to the default provider with the public half, so that
 * CMS_verify() on a structure that still holds the token key works too.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "bridge/bridge_int.h"
#include "core/error_int.h"

/* Largest input we build for the token: a DigestInfo of SHA-512 (19 + 64 bytes). */
#define TBS_MAX 128

typedef struct sigctx {
	p11s_bridge_op op;             /* first: prov, ref, pub (common.c) */
	int type;                      /* P11S_KEY_RSA or P11S_KEY_EC */
	int pad;                       /* RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
	const p11s_bridge_md *md;      /* NULL: sign the input as given */
	const p11s_bridge_md *mgf1;    /* NULL: same as md (RFC 4056 §3: and as CMS expects) */
	int saltlen;                   /* RSA_PSS_SALTLEN_* or a length */
	EVP_MD_CTX *mdctx;             /* digest-sign: the host-side hash */
} sigctx;

static void *sig_newctx(void *provctx, int type)
{
	sigctx *c = p11s_bridge__op_new(provctx, sizeof(*c));

	if (c != NULL) {
		c->type = type;
		c->pad = RSA_PKCS1_PADDING;
		c->saltlen = RSA_PSS_SALTLEN_DIGEST;
	}
	return c;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
	return sig_newctx(provctx, P11S_KEY_RSA);
}

static void *ecdsa_newctx(void *provctx, const char *propq)
{
	return sig_newctx(provctx, P11S_KEY_EC);
}

static void sig_freectx(void *vctx)
{
	sigctx *c = vctx;

	if (c != NULL) {
		EVP_MD_CTX_free(c->mdctx);
	}
	p11s_bridge__op_free(c);
}

static void *sig_dupctx(void *vctx)
{
	const sigctx *c = vctx;
	sigctx *d;

	if ((d = p11s_bridge__op_dup(c, sizeof(*c))) == NULL) {
		return NULL;
	}
	d->mdctx = NULL;
	/* EVP_DigestSignFinal() finalises a duplicate, so the hash state must be copied. */
	if (c->mdctx != NULL &&
	    ((d->mdctx = EVP_MD_CTX_new()) == NULL || !EVP_MD_CTX_copy_ex(d->mdctx, c->mdctx))) {
		sig_freectx(d);
		return NULL;
	}
	return d;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int sig_init(sigctx *c, void *provkey, int need_private, const OSSL_PARAM params[])
{
	p11s_bkey *k = provkey;

	if (c == NULL || k == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
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
	if (k->type != c->type) {
		ERR_raise(ERR_LIB_PROV, PROV_R_OPERATION_NOT_SUPPORTED_FOR_THIS_KEYTYPE);
		return 0;
	}
	if (!p11s_bridge__op_use_key(c, k)) {
		return 0;
	}
	c->pad = RSA_PKCS1_PADDING;
	c->md = c->mgf1 = NULL;
	/* DESIGN.md decision 7: PSS salt = digest length unless asked otherwise. */
	c->saltlen = RSA_PSS_SALTLEN_DIGEST;
	EVP_MD_CTX_free(c->mdctx);
	c->mdctx = NULL;
	return sig_set_ctx_params(c, params);
}

static int sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	return sig_init(vctx, provkey, 1, params);
}

static int sig_verify_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
	return sig_init(vctx, provkey, 0, params);
}

static int set_md(sigctx *c, const char *name)
{
	const p11s_bridge_md *md = p11s_bridge__md(c->op.prov->libctx, name);

	if (md == NULL) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_INVALID_DIGEST, "p11s: digest %s", name);
		return 0;
	}
	/* The digest of a running digest-sign cannot change under it. */
	if (c->mdctx != NULL && c->md != md) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_INVALID_DIGEST,
		    "p11s: digest %s differs from the one being computed", name);
		return 0;
	}
	c->md = md;
	return 1;
}

static int digest_init(sigctx *c, const char *mdname, void *provkey, int need_private,
    const OSSL_PARAM params[])
{
	EVP_MD *md = NULL;
	int ok = 0;

	if (!sig_init(c, provkey, need_private, NULL)) {
		return 0;
	}
	/* The keymgmt's default digest is SHA256 (RFC 8551 §2.1 MUST; DESIGN.md decision 7). */
	if (!set_md(c, mdname != NULL ? mdname : "SHA256")) {
		return 0;
	}
	if ((md = EVP_MD_fetch(c->op.prov->libctx, c->md->name, NULL)) == NULL ||
	    (c->mdctx = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex2(c->mdctx, md, NULL)) {
		goto out;
	}
	ok = sig_set_ctx_params(c, params);
out:
	EVP_MD_free(md);
	return ok;
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
    const OSSL_PARAM params[])
{
	return digest_init(vctx, mdname, provkey, 1, params);
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *provkey,
    const OSSL_PARAM params[])
{
	return digest_init(vctx, mdname, provkey, 0, params);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t len)
{
	sigctx *c = vctx;

	if (c == NULL || c->mdctx == NULL) {
		return 0;
	}
	return EVP_DigestUpdate(c->mdctx, data, len);
}

/* The PSS salt length in bytes for this key and digest (RFC 8017 §9.1.1: emLen - hLen - 2). */
static int pss_salt(const sigctx *c, const p11s_bridge_md *md, size_t *out)
{
	int bits = EVP_PKEY_get_bits(c->op.pub);
	size_t emlen = (size_t)(bits - 1 + 7) / 8, max;

	if (bits <= 0 || emlen < md->size + 2) {
		return 0;
	}
	max = emlen - md->size - 2;
	switch (c->saltlen) {
	case RSA_PSS_SALTLEN_DIGEST:
		*out = md->size;
		break;
	case RSA_PSS_SALTLEN_AUTO: /* == RSA_PSS_SALTLEN_MAX_SIGN: signing takes the maximum */
	case RSA_PSS_SALTLEN_MAX:
		*out = max;
		break;
	default:
		if (c->saltlen < 0) {
			return 0;
		}
		*out = (size_t)c->saltlen;
		break;
	}
	return *out <= max;
}

/* The PSS digest: the one set, or the one the input length names (all lengths differ). */
static const p11s_bridge_md *pss_md(const sigctx *c, size_t tbslen)
{
	static const char *const names[] = { "SHA1", "SHA2-224", "SHA2-256", "SHA2-384",
		"SHA2-512" };

	if (c->md != NULL) {
		return c->md;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const p11s_bridge_md *md = p11s_bridge__md(c->op.prov->libctx, names[i]);

		if (md != NULL && md->size == tbslen) {
			return md;
		}
	}
	return NULL;
}

/* Check the token's signature against the public key before anyone sees it. */
static int verify_host(const sigctx *c, const unsigned char *sig, size_t siglen,
    const unsigned char *tbs, size_t tbslen, const p11s_bridge_md *pssmd, size_t salt)
{
	EVP_PKEY_CTX *v = NULL;
	int ok = 0;

	if ((v = EVP_PKEY_CTX_new_from_pkey(c->op.prov->libctx, c->op.pub, P11S_BRIDGE_PUB_PROPQ)) ==
	        NULL ||
	    EVP_PKEY_verify_init(v) <= 0) {
		goto out;
	}
	if (c->type == P11S_KEY_RSA && c->pad == RSA_PKCS1_PSS_PADDING) {
		const p11s_bridge_md *mgf1 = c->mgf1 ? c->mgf1 : pssmd;
		char saltstr[16];
		OSSL_PARAM p[5];

		snprintf(saltstr, sizeof(saltstr), "%zu", salt);
		p[0] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE,
		    (char *)OSSL_PKEY_RSA_PAD_MODE_PSS, 0);
		p[1] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST,
		    (char *)pssmd->name, 0);
		p[2] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
		    (char *)mgf1->name, 0);
		p[3] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, saltstr, 0);
		p[4] = OSSL_PARAM_construct_end();
		if (EVP_PKEY_CTX_set_params(v, p) <= 0) {
			goto out;
		}
	} else if (c->type == P11S_KEY_RSA && EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING) <= 0) {
		/* PKCS#1 v1.5 without a digest compares the whole DigestInfo we sent. */
		goto out;
	}
	ok = EVP_PKEY_verify(v, sig, siglen, tbs, tbslen) == 1;
out:
	EVP_PKEY_CTX_free(v);
	return ok;
}

/* r||s (nLen bytes each, PKCS#11 v2.40 §2.3.1) to DER ECDSA-Sig-Value (RFC 5480 §2.2). */
static int ecdsa_der(const p11s_buf *rs, unsigned char **der, size_t *derlen)
{
	ECDSA_SIG *s = NULL;
	BIGNUM *r = NULL, *sv = NULL;
	unsigned char *p = NULL;
	int n, ok = 0;
	size_t half = rs->len / 2;

	*der = NULL;
	if (rs->len == 0 || rs->len % 2 != 0) {
		return 0;
	}
	if ((s = ECDSA_SIG_new()) == NULL || (r = BN_bin2bn(rs->data, (int)half, NULL)) == NULL ||
	    (sv = BN_bin2bn(rs->data + half, (int)half, NULL)) == NULL) {
		goto out;
	}
	if (!ECDSA_SIG_set0(s, r, sv)) {
		goto out;
	}
	r = sv = NULL;
	/* i2d writes minimal INTEGERs, with a 0x00 before a high bit (X.690 §8.3). */
	if ((n = i2d_ECDSA_SIG(s, &p)) <= 0) {
		goto out;
	}
	*der = p;
	*derlen = (size_t)n;
	ok = 1;
out:
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(s);
	return ok;
}

static int do_sign(sigctx *c, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *tbs, size_t tbslen)
{
	unsigned char in[TBS_MAX];
	const unsigned char *tosign = tbs;
	size_t inlen = tbslen, salt = 0, outlen;
	const p11s_bridge_md *pssmd = NULL;
	unsigned char *out = NULL;
	p11s_mech mech = { 0 };
	p11s_buf *buf = NULL;
	int size, rc, ok = 0;

	if (!p11s_bridge__op_size(c, &size)) {
		return 0;
	}
	if (sig == NULL) {
		*siglen = (size_t)size;
		return 1;
	}
	if (c->type == P11S_KEY_RSA && c->pad == RSA_PKCS1_PADDING) {
		mech.type = P11S_MECH_RSA_PKCS;
		if (c->md != NULL) {
			/* CKM_RSA_PKCS signs a DigestInfo, not a bare hash (STANDARDS.md §11). */
			if (tbslen != c->md->size) {
				ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_DIGEST_LENGTH);
				return 0;
			}
			memcpy(in, c->md->prefix, c->md->prefix_len);
			memcpy(in + c->md->prefix_len, tbs, tbslen);
			tosign = in;
			inlen = c->md->prefix_len + tbslen;
		} else if (tbslen + RSA_PKCS1_PADDING_SIZE > (size_t)size) {
			/* Without a digest the caller brings its own DigestInfo (or TLS's MD5+SHA1). */
			ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_DIGEST_LENGTH);
			return 0;
		}
	} else if (c->type == P11S_KEY_RSA && c->pad == RSA_PKCS1_PSS_PADDING) {
		const p11s_bridge_md *mgf1;

		if ((pssmd = pss_md(c, tbslen)) == NULL || tbslen != pssmd->size) {
			ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_DIGEST_LENGTH);
			return 0;
		}
		if (!pss_salt(c, pssmd, &salt)) {
			ERR_raise(ERR_LIB_PROV, PROV_R_PSS_SALTLEN_TOO_SMALL);
			return 0;
		}
		mgf1 = c->mgf1 ? c->mgf1 : pssmd;
		mech.type = P11S_MECH_RSA_PKCS_PSS;
		mech.hash = pssmd->ck_hash;
		mech.mgf = mgf1->ck_mgf;
		mech.salt_len = salt;
	} else if (c->type == P11S_KEY_EC) {
		size_t order = ((size_t)EVP_PKEY_get_bits(c->op.pub) + 7) / 8;

		if (c->md != NULL && tbslen != c->md->size) {
			ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_DIGEST_LENGTH);
			return 0;
		}
		/*
		 * ECDSA uses the leftmost bits of the hash (SEC 1 §4.1.3 step 5); giving the token
		 * whole bytes up to the order's length is the same, and some tokens refuse more.
		 */
		if (inlen > order) {
			inlen = order;
		}
		mech.type = P11S_MECH_ECDSA;
	} else {
		ERR_raise(ERR_LIB_PROV, PROV_R_ILLEGAL_OR_UNSUPPORTED_PADDING_MODE);
		return 0;
	}

	if ((rc = p11s_token__sign(c->op.ref, &mech, tosign, inlen, &buf)) < 0) {
		p11s_bridge__token_failed(rc, &mech, PROV_R_FAILED_TO_SIGN, "token signature failed");
		goto out;
	}
	if (c->type == P11S_KEY_RSA) {
		/*
		 * I2OSP (RFC 8017 §4.1): the signature is exactly k bytes. Some tokens drop leading
		 * zero bytes; pad them back. Anything longer is wrong.
		 */
		if (buf->len > (size_t)size) {
			rc = p11s_error__set(P11S_ERR_TOKEN, "token returned a %zu-byte signature for a "
			    "%d-byte key", buf->len, size);
			p11s_bridge__raise(PROV_R_FAILED_TO_SIGN, "bad token signature");
			goto out;
		}
		if ((out = OPENSSL_zalloc((size_t)size)) == NULL) {
			goto out;
		}
		memcpy(out + (size_t)size - buf->len, buf->data, buf->len);
		outlen = (size_t)size;
	} else if (!ecdsa_der(buf, &out, &outlen)) {
		rc = p11s_error__set(P11S_ERR_TOKEN, "token returned a malformed %zu-byte ECDSA "
		    "signature", buf->len);
		p11s_bridge__raise(PROV_R_FAILED_TO_SIGN, "bad token signature");
		goto out;
	}
	if (!verify_host(c, out, outlen, tosign, inlen, pssmd, salt)) {
		rc = p11s_error__ossl(P11S_ERR_TOKEN, "the signature the token returned (%s) does not "
		    "verify with the key's public key", p11s_mech_name(mech.type));
		p11s_bridge__raise(PROV_R_FAILED_TO_SIGN, "bad token signature");
		goto out;
	}
	if (outlen > sigsize) {
		ERR_raise(ERR_LIB_PROV, PROV_R_OUTPUT_BUFFER_TOO_SMALL);
		goto out;
	}
	memcpy(sig, out, outlen);
	*siglen = outlen;
	ok = 1;
out:
	OPENSSL_cleanse(in, sizeof(in));
	OPENSSL_free(out);
	p11s_buf_free(buf);
	return ok;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
    const unsigned char *tbs, size_t tbslen)
{
	return do_sign(vctx, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
	sigctx *c = vctx;
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	int ok;

	if (c == NULL || c->mdctx == NULL) {
		return 0;
	}
	if (sig == NULL) {
		return do_sign(c, NULL, siglen, 0, NULL, 0);
	}
	if (!EVP_DigestFinal_ex(c->mdctx, hash, &hlen)) {
		return 0;
	}
	ok = do_sign(c, sig, siglen, sigsize, hash, hlen);
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok;
}

/*
 * Verification needs no token: the default provider checks with the public half, under the
 * parameters set on this context. OpenSSL routes a verification here when the key given is
 * the token key itself (CMS_verify() on a just-signed structure keeps the signer's key), since
 * the export refusal keeps the key out of the default provider.
 */
static int saltlen_str(int saltlen, char *buf, size_t len);

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
    const unsigned char *tbs, size_t tbslen)
{
	sigctx *c = vctx;
	EVP_PKEY_CTX *v = NULL;
	OSSL_PARAM p[6], *q = p;
	char salt[16];
	int ok = 0;

	if (c == NULL || c->op.pub == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if (c->md != NULL) {
		*q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST,
		    (char *)c->md->name, 0);
	}
	if (c->type == P11S_KEY_RSA) {
		*q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE,
		    (char *)(c->pad == RSA_PKCS1_PSS_PADDING ? OSSL_PKEY_RSA_PAD_MODE_PSS
		                                             : OSSL_PKEY_RSA_PAD_MODE_PKCSV15),
		    0);
		if (c->pad == RSA_PKCS1_PSS_PADDING) {
			if (c->mgf1 != NULL) {
				*q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
				    (char *)c->mgf1->name, 0);
			}
			if (!saltlen_str(c->saltlen, salt, sizeof(salt))) {
				return 0;
			}
			*q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, salt, 0);
		}
	}
	*q = OSSL_PARAM_construct_end();
	if ((v = EVP_PKEY_CTX_new_from_pkey(c->op.prov->libctx, c->op.pub, P11S_BRIDGE_PUB_PROPQ)) !=
	        NULL &&
	    EVP_PKEY_verify_init(v) > 0 && EVP_PKEY_CTX_set_params(v, p) > 0) {
		ok = EVP_PKEY_verify(v, sig, siglen, tbs, tbslen);
	}
	EVP_PKEY_CTX_free(v);
	return ok;
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
	sigctx *c = vctx;
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;

	if (c == NULL || c->mdctx == NULL || !EVP_DigestFinal_ex(c->mdctx, hash, &hlen)) {
		return 0;
	}
	return sig_verify(c, sig, siglen, hash, hlen);
}

/* ---- parameters ---------------------------------------------------------------------- */

/* saltlen as an integer or as "digest" / "max" / "auto" / a decimal string (3.0 trap). */
static int saltlen_get(const OSSL_PARAM *p, int *out)
{
	if (p->data_type == OSSL_PARAM_UTF8_STRING) {
		const char *s = p->data;
		char *end;
		long v;

		if (s == NULL) {
			return 0;
		}
		if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0) {
			*out = RSA_PSS_SALTLEN_DIGEST;
		} else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0) {
			*out = RSA_PSS_SALTLEN_MAX;
		} else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0) {
			*out = RSA_PSS_SALTLEN_AUTO;
		} else {
			v = strtol(s, &end, 10);
			if (*s == '\0' || *end != '\0' || v < RSA_PSS_SALTLEN_MAX || v > 65535) {
				return 0;
			}
			*out = (int)v;
		}
		return 1;
	}
	return OSSL_PARAM_get_int(p, out);
}

static int saltlen_str(int saltlen, char *buf, size_t len)
{
	switch (saltlen) {
	case RSA_PSS_SALTLEN_DIGEST:
		return snprintf(buf, len, "%s", OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) > 0;
	case RSA_PSS_SALTLEN_MAX:
		return snprintf(buf, len, "%s", OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) > 0;
	case RSA_PSS_SALTLEN_AUTO:
		return snprintf(buf, len, "%s", OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) > 0;
	default:
		return saltlen >= 0 && snprintf(buf, len, "%d", saltlen) > 0;
	}
}

static int saltlen_set(OSSL_PARAM *p, int saltlen)
{
	char num[16];

	if (p->data_type != OSSL_PARAM_UTF8_STRING) {
		return OSSL_PARAM_set_int(p, saltlen);
	}
	return saltlen_str(saltlen, num, sizeof(num)) && OSSL_PARAM_set_utf8_string(p, num);
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	sigctx *c = vctx;
	const OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if (params == NULL) {
		return 1;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
		const char *name = NULL;

		if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md(c, name)) {
			return 0;
		}
	}
	if (c->type != P11S_KEY_RSA) {
		return 1;
	}
	/* Never raw RSA or X9.31: only what the token does as a whole mechanism. */
	if (!p11s_bridge__set_pad(params, OSSL_SIGNATURE_PARAM_PAD_MODE, RSA_PKCS1_PSS_PADDING,
	        &c->pad) ||
	    !p11s_bridge__set_md(c->op.prov->libctx, params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
	        &c->mgf1)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
		int v;

		if (!saltlen_get(p, &v)) {
			ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_SALT_LENGTH);
			return 0;
		}
		c->saltlen = v;
	}
	return 1;
}

/* DER AlgorithmIdentifier of the signature: CMS in 3.0 asks for it (PSS fails without). */
static int algorithm_id(const sigctx *c, unsigned char **der, int *derlen)
{
	X509_ALGOR *alg = NULL, *mgfhash = NULL;
	RSA_PSS_PARAMS *pss = NULL;
	ASN1_STRING *os = NULL, *mgfos = NULL;
	int snid, ok = 0;

	*der = NULL;
	if (c->md == NULL || (alg = X509_ALGOR_new()) == NULL) {
		goto out;
	}
	if (c->type == P11S_KEY_EC) {
		/* RFC 5758 §3.2: ecdsa-with-SHA* with absent parameters. */
		if (!OBJ_find_sigid_by_algs(&snid, c->md->nid, NID_X9_62_id_ecPublicKey) ||
		    !X509_ALGOR_set0(alg, OBJ_nid2obj(snid), V_ASN1_UNDEF, NULL)) {
			goto out;
		}
	} else if (c->pad == RSA_PKCS1_PADDING) {
		/* RFC 4055 §5: sha*WithRSAEncryption with NULL parameters. */
		if (!OBJ_find_sigid_by_algs(&snid, c->md->nid, NID_rsaEncryption) ||
		    !X509_ALGOR_set0(alg, OBJ_nid2obj(snid), V_ASN1_NULL, NULL)) {
			goto out;
		}
	} else {
		/* RFC 4055 §3.1 RSASSA-PSS-params; DER omits fields equal to their DEFAULT. */
		const p11s_bridge_md *mgf1 = c->mgf1 ? c->mgf1 : c->md;
		size_t salt;

		if (!pss_salt(c, c->md, &salt) || (pss = RSA_PSS_PARAMS_new()) == NULL) {
			goto out;
		}
		if (c->md->nid != NID_sha1) {
			if ((pss->hashAlgorithm = X509_ALGOR_new()) == NULL ||
			    !X509_ALGOR_set0(pss->hashAlgorithm, OBJ_nid2obj(c->md->nid), V_ASN1_NULL,
			        NULL)) {
				goto out;
			}
		}
		if (mgf1->nid != NID_sha1) {
			if ((mgfhash = X509_ALGOR_new()) == NULL ||
			    !X509_ALGOR_set0(mgfhash, OBJ_nid2obj(mgf1->nid), V_ASN1_NULL, NULL) ||
			    ASN1_item_pack(mgfhash, ASN1_ITEM_rptr(X509_ALGOR), &mgfos) == NULL ||
			    (pss->maskGenAlgorithm = X509_ALGOR_new()) == NULL ||
			    !X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1),
			        V_ASN1_SEQUENCE, mgfos)) {
				goto out;
			}
			mgfos = NULL;
		}
		if (salt != 20) {
			if ((pss->saltLength = ASN1_INTEGER_new()) == NULL ||
			    !ASN1_INTEGER_set(pss->saltLength, (long)salt)) {
				goto out;
			}
		}
		if (ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), &os) == NULL ||
		    !X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, os)) {
			goto out;
		}
		os = NULL;
	}
	if ((*derlen = i2d_X509_ALGOR(alg, der)) <= 0) {
		*der = NULL;
		goto out;
	}
	ok = 1;
out:
	ASN1_STRING_free(os);
	ASN1_STRING_free(mgfos);
	X509_ALGOR_free(mgfhash);
	RSA_PSS_PARAMS_free(pss);
	X509_ALGOR_free(alg);
	return ok;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	sigctx *c = vctx;
	OSSL_PARAM *p;

	if (c == NULL) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL) {
		unsigned char *der = NULL;
		int derlen = 0, ok;

		if (!algorithm_id(c, &der, &derlen)) {
			return 0;
		}
		ok = OSSL_PARAM_set_octet_string(p, der, (size_t)derlen);
		OPENSSL_free(der);
		if (!ok) {
			return 0;
		}
	}
	if (!p11s_bridge__get_md(params, OSSL_SIGNATURE_PARAM_DIGEST, c->md, "")) {
		return 0;
	}
	if (c->type != P11S_KEY_RSA) {
		return 1;
	}
	if (!p11s_bridge__get_pad(params, OSSL_SIGNATURE_PARAM_PAD_MODE, c->pad) ||
	    !p11s_bridge__get_md(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
	        c->mgf1 ? c->mgf1 : c->md, "")) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
	    !saltlen_set(p, c->saltlen)) {
		return 0;
	}
	return 1;
}

static const OSSL_PARAM rsa_gettable[] = {
	OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM rsa_settable[] = {
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM ecdsa_gettable[] = {
	OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM ecdsa_settable[] = {
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
	OSSL_PARAM_END,
};

P11S_BRIDGE_PARAM_TABLE(rsa_gettable_ctx_params, rsa_gettable)
P11S_BRIDGE_PARAM_TABLE(rsa_settable_ctx_params, rsa_settable)
P11S_BRIDGE_PARAM_TABLE(ecdsa_gettable_ctx_params, ecdsa_gettable)
P11S_BRIDGE_PARAM_TABLE(ecdsa_settable_ctx_params, ecdsa_settable)

#define FN P11S_BRIDGE_FN

/*
 * RSA and ECDSA differ only in newctx (the key type the context accepts) and the parameter
 * tables; every other function serves both (provider-signature(7) lists them).
 */
#define SIG_DISPATCH(newctx, gettable, settable) \
	{ OSSL_FUNC_SIGNATURE_NEWCTX, FN(newctx) }, \
	{ OSSL_FUNC_SIGNATURE_FREECTX, FN(sig_freectx) }, \
	{ OSSL_FUNC_SIGNATURE_DUPCTX, FN(sig_dupctx) }, \
	{ OSSL_FUNC_SIGNATURE_SIGN_INIT, FN(sig_sign_init) }, \
	{ OSSL_FUNC_SIGNATURE_SIGN, FN(sig_sign) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, FN(sig_digest_sign_init) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, FN(sig_digest_sign_update) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, FN(sig_digest_sign_final) }, \
	{ OSSL_FUNC_SIGNATURE_VERIFY_INIT, FN(sig_verify_init) }, \
	{ OSSL_FUNC_SIGNATURE_VERIFY, FN(sig_verify) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, FN(sig_digest_verify_init) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, FN(sig_digest_sign_update) }, \
	{ OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, FN(sig_digest_verify_final) }, \
	{ OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, FN(sig_get_ctx_params) }, \
	{ OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, FN(gettable) }, \
	{ OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, FN(sig_set_ctx_params) }, \
	{ OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, FN(settable) }, \
	{ 0, NULL }

const OSSL_DISPATCH p11s_bridge__rsa_signature[] = {
	SIG_DISPATCH(rsa_newctx, rsa_gettable_ctx_params, rsa_settable_ctx_params),
};

const OSSL_DISPATCH p11s_bridge__ecdsa_signature[] = {
	SIG_DISPATCH(ecdsa_newctx, ecdsa_gettable_ctx_params, ecdsa_settable_ctx_params),
};

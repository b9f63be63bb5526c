/*
 * Detached CMS signatures over arbitrary bytes (include/p11smime/detached.h): what git's
 * gpg.format=x509 signs (a commit or tag object, RFC 5652 §5 SignedData without eContent, as
 * gpgsm -b makes it) and how such a signature is verified by the message verifier.
 *
 * Signing reuses the SignedData builder of mail signing (src/cms/sign.c), so the signed
 * attributes are the same. Verifying hands p11s_verify_message() an opaque signed-data
 * message (RFC 8551 §3.5.2) carrying the content as eContent: the signature covers the content
 * only through the messageDigest signed attribute (RFC 5652 §5.4), so moving the content into
 * the SignedData changes no signed byte, and every check of the verifier (signature, digest,
 * ESS binding, path, revocation, time-stamp) applies unchanged.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <p11smime/detached.h>
#include <p11smime/error.h>

#include "cms/cms_int.h"
#include "core/error_int.h"
#include "tsa/tsa_int.h"

/* A PEM signature larger than this is not a git signature (a certificate chain is ~10 KiB). */
#define SIG_MAX (4u << 20)

/* RFC 5126 §5.11.1: add the signature-time-stamp to the (only) SignerInfo of `der`. */
static int add_timestamp(p11s_buf **der, const char *url)
{
	const unsigned char *p = (*der)->data;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)(*der)->len);
	STACK_OF(CMS_SignerInfo) *sis;
	unsigned char *enc = NULL;
	p11s_buf *b = NULL;
	int len, rc;

	if (cms == NULL || (sis = CMS_get0_SignerInfos(cms)) == NULL ||
	    sk_CMS_SignerInfo_num(sis) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot re-read the SignedData");
		goto out;
	}
	if ((rc = p11s_tsa__stamp_signer(sk_CMS_SignerInfo_value(sis, 0), url)) < 0) {
		goto out;
	}
	if ((len = i2d_CMS_ContentInfo(cms, &enc)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the SignedData");
		goto out;
	}
	if ((rc = p11s_buf_new(&b, (size_t)len)) < 0) {
		goto out;
	}
	memcpy(b->data, enc, (size_t)len);
	p11s_buf_free(*der);
	*der = b;
out:
	OPENSSL_free(enc);
	CMS_ContentInfo_free(cms);
	return rc;
}

int p11s_sign_detached(p11s_ctx *ctx, p11s_key *key, const p11s_sign_opts *opts, FILE *in,
    p11s_buf **out)
{
	p11s_sign_opts defaults = P11S_SIGN_OPTS_INIT;
	const p11s_sign_opts *o = opts ? opts : &defaults;
	STACK_OF(X509) *cas = NULL, *all = NULL;
	p11s_cms_signer s = { 0 };
	EVP_PKEY *pkey = NULL;
	p11s_buf *der = NULL;
	BIO *bio = NULL;
	X509 *cert;
	int rc;

	if (ctx == NULL || key == NULL || in == NULL || out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_sign_detached: NULL argument");
	}
	*out = NULL;
	if (o->version < 1 || o->version > P11S_SIGN_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "unknown p11s_sign_opts version %u",
		    o->version);
	}
	if (o->opaque || o->receipt_request != 0 || o->security_label != NULL ||
	    o->audit_log != NULL || o->encryption_cert != NULL ||
	    (o->version >= 2 && o->staple != NULL)) {
		return p11s_error__set(P11S_ERR_USAGE, "a detached signature takes no opaque, "
		    "receipt, label, audit, encryption-certificate or staple option");
	}
	cert = o->cert ? o->cert : p11s_key_cert(key);
	if (cert == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "no certificate for %s on the token",
		    p11s_key_uri(key));
	}
	if ((rc = p11s_key_pkey(key, &pkey)) < 0 || (rc = p11s_key_ca_certs(key, &cas)) < 0) {
		goto out;
	}
	if ((all = sk_X509_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_num(o->chain); i++) {
		if (!sk_X509_push(all, sk_X509_value(o->chain, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < sk_X509_num(cas); i++) {
		if (!sk_X509_push(all, sk_X509_value(cas, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if ((bio = BIO_new_fp(in, BIO_NOCLOSE)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	s.libctx = p11s_ctx_libctx(ctx);
	s.pkey = pkey;
	s.cert = cert; /* the builder refuses a certificate whose key is not pkey */
	s.certs = all;
	s.digest = o->digest;
	s.pss = o->pss;
	if ((rc = p11s_cms__sign_detached(&s, bio, &der)) < 0) {
		goto out;
	}
	if (ferror(in)) {
		rc = p11s_error__set(P11S_ERR_IO, "reading the content failed");
		goto out;
	}
	if (o->tsa_url != NULL && (rc = add_timestamp(&der, o->tsa_url)) < 0) {
		goto out;
	}
	*out = der;
	der = NULL;
out:
	p11s_buf_free(der);
	BIO_free(bio);
	sk_X509_free(all);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(pkey);
	return rc;
}

/* The signature as a CMS_ContentInfo: DER, or PEM (RFC 7468 §9 "CMS"; gpgsm's label). */
static CMS_ContentInfo *read_sig(const unsigned char *sig, size_t len)
{
	const unsigned char *p = sig;
	CMS_ContentInfo *cms = NULL;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	BIO *bio;

	if (len > 0 && sig[0] == 0x30) {
		return d2i_CMS_ContentInfo(NULL, &p, (long)len);
	}
	if ((bio = BIO_new_mem_buf(sig, (int)len)) == NULL) {
		return NULL;
	}
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) == 1 &&
	    (strcmp(name, "SIGNED MESSAGE") == 0 || strcmp(name, "CMS") == 0 ||
	        strcmp(name, "PKCS7") == 0)) {
		p = data;
		cms = d2i_CMS_ContentInfo(NULL, &p, dlen);
		if (cms != NULL && p != data + dlen) {
			/* Trailing bytes inside the armour: not one ContentInfo. */
			CMS_ContentInfo_free(cms);
			cms = NULL;
		}
	}
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(bio);
	return cms;
}

int p11s_detached_to_opaque(const unsigned char *sig, size_t sig_len,
    const unsigned char *content, size_t content_len, FILE *out)
{
	static const char head[] =
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=smime.p7m\r\n"
	    "\r\n";
	CMS_ContentInfo *cms = NULL;
	ASN1_OCTET_STRING **pos;
	unsigned char *der = NULL;
	BIO *b64 = NULL, *fb = NULL;
	int len, rc = P11S_OK;

	if (sig == NULL || out == NULL || (content == NULL && content_len > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_detached_to_opaque: NULL argument");
	}
	if (sig_len > SIG_MAX || content_len > (size_t)INT32_MAX) {
		return p11s_error__set(P11S_ERR_MALFORMED, "the signature or content is too large");
	}
	if ((cms = read_sig(sig, sig_len)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED,
		    "the signature is not a CMS ContentInfo (DER, or PEM \"SIGNED MESSAGE\")");
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the signature is not a CMS SignedData");
		goto out;
	}
	/* A signature with its own eContent could show other bytes than those checked here. */
	if (!CMS_is_detached(cms)) {
		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "the SignedData carries content: not a detached signature");
		goto out;
	}
	/* eContent [0] EXPLICIT OCTET STRING (RFC 5652 §5.2), eContentType unchanged. */
	if (CMS_set_detached(cms, 0) != 1 || (pos = CMS_get0_content(cms)) == NULL ||
	    *pos == NULL || ASN1_OCTET_STRING_set(*pos, content, (int)content_len) != 1) {
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "cannot attach the content");
		goto out;
	}
	/* CMS_set_detached() marks the string for streamed output; it is complete here. */
	(*pos)->flags &= ~ASN1_STRING_FLAG_CONT;
	if ((len = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "cannot encode the SignedData");
		goto out;
	}
	if ((b64 = BIO_new(BIO_f_base64())) == NULL ||
	    (fb = BIO_new_fp(out, BIO_NOCLOSE)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	BIO_push(b64, fb);
	fb = NULL;
	if (fwrite(head, 1, sizeof(head) - 1, out) != sizeof(head) - 1 ||
	    BIO_write(b64, der, len) != len || BIO_flush(b64) != 1 || fflush(out) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the message failed");
	}
out:
	BIO_free_all(b64);
	BIO_free(fb);
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return rc;
}

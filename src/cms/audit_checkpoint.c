/*
 * Signed checkpoints of the audit log (audit.h, docs/evidence.md "Checkpoints"): the head
 * hash of the log signed with the token key that signs the messages, as a detached CMS
 * SignedData over a fixed statement, time-stamped (RFC 3161, RFC 5126 §5.11.1) when a TSA is
 * configured. With them the log anchors itself: a cut tail leaves records after the last
 * checkpoint, a rewritten record breaks the signature over every head after it — neither can
 * be repaired without the token key. The log format and its checks live in src/audit/; the
 * signature is made here because signing is this layer's (tests/layers/check_layers.py).
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11smime/audit.h>
#include <p11smime/log.h>

#include "audit/audit_int.h"
#include "cms/cms_int.h"
#include "core/error_int.h"
#include "token/token_int.h"
#include "tsa/tsa_int.h"

/* RFC 5126 §5.11.1: the signature time-stamp on the (only) SignerInfo of `*der`. */
static int stamp(p11s_buf **der, const char *url)
{
	const unsigned char *p = (*der)->data;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)(*der)->len);
	STACK_OF(CMS_SignerInfo) *sis;
	unsigned char *enc = NULL;
	p11s_buf *b = NULL;
	int len, rc;

	if (cms == NULL || (sis = CMS_get0_SignerInfos(cms)) == NULL ||
	    sk_CMS_SignerInfo_num(sis) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot re-read the checkpoint signature");
		goto out;
	}
	if ((rc = p11s_tsa__stamp_signer(sk_CMS_SignerInfo_value(sis, 0), url)) < 0) {
		goto out;
	}
	if ((len = i2d_CMS_ContentInfo(cms, &enc)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the checkpoint signature");
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
	ERR_clear_error();
	return rc;
}

int p11s_cms__audit_checkpoint(const p11s_cms_signer *s, const char *path, const char *key_uri,
    const char *tsa_url, unsigned int every, int final)
{
	unsigned long long covers = 0;
	char head[65], stmt[256];
	unsigned char certfp[32];
	unsigned int l = 0;
	p11s_buf *der = NULL;
	BIO *content = NULL;
	int rc, n;

	if ((rc = p11s_audit__checkpoint_due(path, every ? every : P11S_AUDIT_CHECKPOINT_EVERY, final,
	         &covers, head)) <= 0) {
		return rc;
	}
	if ((n = p11s_audit__statement(stmt, sizeof(stmt), covers, head, final)) < 0 ||
	    (content = BIO_new_mem_buf(stmt, n)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (!X509_digest(s->cert, EVP_sha256(), certfp, &l) || l != 32) {
		BIO_free(content);
		return p11s_error__ossl(P11S_ERR_CRYPTO, "SHA-256 of the certificate failed");
	}
	if ((rc = p11s_cms__sign_detached(s, content, &der)) >= 0) {
		/*
		 * A TSA that fails leaves the checkpoint signed but not time-stamped: an anchor
		 * without a third party's time is better than an unanchored tail (the report says
		 * whether the last checkpoint carries a time-stamp).
		 */
		if (tsa_url != NULL && stamp(&der, tsa_url) < 0) {
			p11s_log(P11S_LOG_WARN, "audit log %s: checkpoint not time-stamped: %s", path,
			    p11s_error_last()->message);
			p11s_error_clear();
		}
		rc = p11s_audit__append_checkpoint(path, covers, head, final, key_uri, certfp, der->data,
		    der->len);
	}
	BIO_free(content);
	p11s_buf_free(der);
	return rc;
}

void p11s_cms__audit_periodic(const p11s_cms_signer *s, const char *path, const char *key_uri,
    const char *tsa_url, unsigned int every)
{
	if (p11s_cms__audit_checkpoint(s, path, key_uri, tsa_url, every, 0) < 0) {
		p11s_log(P11S_LOG_WARN, "audit log %s: checkpoint not written: %s", path,
		    p11s_error_last()->message);
		p11s_error_clear();
	}
}

int p11s_audit_checkpoint(p11s_key *key, const char *path, const char *tsa_url)
{
	p11s_cms_signer s = { 0 };
	EVP_PKEY *pkey = NULL;
	int rc;

	if (key == NULL || path == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_checkpoint: NULL argument");
	}
	if ((s.cert = p11s_key_cert(key)) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "no certificate for %s on the token: an audit "
		                                       "checkpoint needs one", p11s_key_uri(key));
	}
	if ((rc = p11s_key_pkey(key, &pkey)) < 0) {
		return rc;
	}
	s.libctx = p11s_ctx_libctx(key->ctx);
	s.pkey = pkey;
	s.digest = P11S_DIGEST_SHA256;
	rc = p11s_cms__audit_checkpoint(&s, path, p11s_key_uri(key), tsa_url, 0, 1);
	EVP_PKEY_free(pkey);
	return rc;
}

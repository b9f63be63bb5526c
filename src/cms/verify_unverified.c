/*
 * p11s_verify_write_content_unverified(): the signed entity of a signature that did NOT
 * verify, for a reader that peels every layer of a message (issue 23, `unwrap`): a broken
 * outer signature (a list server re-wrapped the message, or someone added one) must not hide
 * an encrypted or signed part inside it. The caller labels what it got as unverified and
 * never publishes it as verified content (RFC 8551 §6: do not release unverified content as
 * if it were verified; docs/envelope.md, "unwrap").
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <p11smime/verify.h>

#include "cms/verify_int.h"
#include "core/error_int.h"
#include "mime/signed.h"

typedef struct uw_ctx {
	FILE *out;
	EVP_MD_CTX *fp;
} uw_ctx;

static int uw_sink(const unsigned char *p, size_t n, void *payload)
{
	uw_ctx *w = payload;

	if (fwrite(p, 1, n, w->out) != n) {
		return p11s_error__set(P11S_ERR_IO, "writing the content: %s", strerror(errno));
	}
	if (!EVP_DigestUpdate(w->fp, p, n)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	return P11S_OK;
}

int p11s_verify_write_content_unverified(const p11s_verify_result *r, FILE *out)
{
	struct p11s_verify_priv *p;
	uw_ctx w = { out, NULL };
	unsigned char fp[EVP_MAX_MD_SIZE];
	unsigned int fp_len = 0;
	int rc;

	if (r == NULL || out == NULL || r->priv == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG,
		    "p11s_verify_write_content_unverified: NULL argument");
	}
	p = r->priv;
	if (p->kind != P11S_MIME_MULTIPART_SIGNED && p->kind != P11S_MIME_OPAQUE) {
		return p11s_error__set(P11S_ERR_VERIFY, "the message is not signed; no content");
	}
	if (p->kind == P11S_MIME_OPAQUE && p->content == NULL && p->cms == NULL) {
		return p11s_error__set(P11S_ERR_VERIFY, "the signed-data was not read; no content");
	}
	if ((w.fp = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(w.fp, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(w.fp);
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	if (p->kind == P11S_MIME_MULTIPART_SIGNED) {
		rc = p11s_mime__stream_canonical(p->in, p->start, p->end, uw_sink, &w);
	} else if (p->content != NULL) {
		rc = p11s_cms__stream_content(p->content, uw_sink, &w);
	} else {
		ASN1_OCTET_STRING **pos = CMS_get0_content(p->cms);

		rc = (pos != NULL && *pos != NULL)
		    ? uw_sink((*pos)->data, (size_t)(*pos)->length, &w) : P11S_OK;
	}
	if (rc >= 0 && !EVP_DigestFinal_ex(w.fp, fp, &fp_len)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	/* Still the bytes the verdict is about (the input could have changed since). */
	if (rc >= 0 && p->fp_len != 0 &&
	    (fp_len != p->fp_len || CRYPTO_memcmp(fp, p->fp, fp_len) != 0)) {
		rc = p11s_error__set(P11S_ERR_VERIFY,
		    "the input changed after verification; the content is not written");
	}
	EVP_MD_CTX_free(w.fp);
	return rc;
}

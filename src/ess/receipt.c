/*
 * ESS signed receipts (RFC 2634 §2): making one for a message that requests it (§2.4) and
 * checking one against the original (§2.6).
 *
 * OpenSSL's CMS_sign_receipt()/CMS_verify_receipt() hash the original's signedAttrs after
 * re-encoding them from the parsed structure; RFC 2634 §2.4 wants the digest of the DER
 * signedAttrs that were received (the bytes the original signature covers), so the
 * msgSigDigest is computed here over the raw bytes (p11s_ess__raw_signed_attrs). The receipt
 * SignedData is built with CMS_sign_ex() in the key's library context, so a token key from
 * the bridge (p11s_ctx_libctx()) signs it like any other key.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include <p11smime/ess.h>

#include "core/encode.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/mime.h"
#include "mime/signed.h"
#include "token/token_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

/* Receipt ::= SEQUENCE { version ESSVersion (1), contentType, signedContentIdentifier,
 *   originatorSignatureValue OCTET STRING }  (RFC 2634 §2.7) */
typedef struct p11s_ess_receipt_st {
	ASN1_INTEGER *version;
	ASN1_OBJECT *content_type;
	ASN1_OCTET_STRING *content_id;
	ASN1_OCTET_STRING *sig_value;
} P11S_ESS_RECEIPT;

ASN1_SEQUENCE(P11S_ESS_RECEIPT) = {
	ASN1_SIMPLE(P11S_ESS_RECEIPT, version, ASN1_INTEGER),
	ASN1_SIMPLE(P11S_ESS_RECEIPT, content_type, ASN1_OBJECT),
	ASN1_SIMPLE(P11S_ESS_RECEIPT, content_id, ASN1_OCTET_STRING),
	ASN1_SIMPLE(P11S_ESS_RECEIPT, sig_value, ASN1_OCTET_STRING),
} ASN1_SEQUENCE_END(P11S_ESS_RECEIPT)

DECLARE_ASN1_FUNCTIONS(P11S_ESS_RECEIPT)
IMPLEMENT_ASN1_FUNCTIONS(P11S_ESS_RECEIPT)

/* Write [start,end) of a file canonicalised into another file. */
static int file_sink(const unsigned char *p, size_t n, void *payload)
{
	if (fwrite(p, 1, n, (FILE *)payload) != n) {
		return p11s_error__set(P11S_ERR_IO, "temporary file: %s", strerror(errno));
	}
	return P11S_OK;
}

/* The original: its SignedData (DER as received) and, for multipart/signed, its content. */
typedef struct original {
	p11s_mime_signed *m;
	CMS_ContentInfo *cms;
	FILE *content; /* detached content, canonical; NULL for opaque */
} original;

static void original_free(original *o)
{
	CMS_ContentInfo_free(o->cms);
	p11s_mime__signed_free(o->m);
	if (o->content != NULL) {
		fclose(o->content);
	}
	memset(o, 0, sizeof(*o));
}

static int original_read(original *o, FILE *in)
{
	const unsigned char *p;
	int rc;

	memset(o, 0, sizeof(*o));
	if ((rc = p11s_mime__read_signed(&o->m, in)) < 0) {
		return rc;
	}
	if (o->m->kind == P11S_MIME_NOT_SIGNED) {
		return p11s_error__set(P11S_ERR_USAGE, "the original is not a signed message");
	}
	p = o->m->der;
	if ((o->cms = d2i_CMS_ContentInfo(NULL, &p, (long)o->m->der_len)) == NULL ||
	    OBJ_obj2nid(CMS_get0_type(o->cms)) != NID_pkcs7_signed) {
		return p11s_error__ossl(P11S_ERR_MALFORMED, "the original does not hold a SignedData");
	}
	if (o->m->kind == P11S_MIME_MULTIPART_SIGNED) {
		if ((o->content = tmpfile()) == NULL) {
			return p11s_error__set(P11S_ERR_IO, "temporary file: %s", strerror(errno));
		}
		if ((rc = p11s_mime__stream_canonical(in, o->m->parts.part1_start, o->m->parts.part1_end,
		         file_sink, o->content)) < 0) {
			return rc;
		}
		if (fflush(o->content) != 0) {
			return p11s_error__set(P11S_ERR_IO, "temporary file: %s", strerror(errno));
		}
		rewind(o->content);
	}
	return P11S_OK;
}

/* RFC 2634 §2.4 step 1: the original's signatures (and content digests) must verify. */
static int original_verify(original *o)
{
	BIO *dc = NULL;
	int ok;

	if (o->content != NULL && (dc = BIO_new_fp(o->content, BIO_NOCLOSE)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	ok = CMS_verify(o->cms, NULL, NULL, dc, NULL, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) == 1;
	BIO_free(dc);
	if (!ok) {
		return p11s_error__ossl(P11S_ERR_VERIFY, "the original message's signature does not "
		                                         "verify; no receipt is made (RFC 2634 2.4)");
	}
	return P11S_OK;
}

/* msgSigDigest: digest (algorithm `md_nid`) of the raw signedAttrs, tag [0] read as SET OF. */
static int msg_sig_digest(const original *o, int idx, int md_nid, unsigned char *out,
    unsigned int *out_len)
{
	const unsigned char *attrs;
	size_t n;
	EVP_MD *md = NULL;
	EVP_MD_CTX *c = NULL;
	static const unsigned char set_tag = 0x31;
	int rc = P11S_OK;

	if (p11s_ess__raw_signed_attrs(o->m->der, o->m->der_len, idx, &attrs, &n) < 0) {
		return p11s_error__set(P11S_ERR_MALFORMED, "cannot locate the signed attributes of "
		                                           "signer %d in the original", idx + 1);
	}
	/* RFC 5652 §5.4: the DER of signedAttrs with the EXPLICIT SET OF tag (0x31). */
	if ((md = EVP_MD_fetch(NULL, OBJ_nid2sn(md_nid), NULL)) == NULL || (c = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(c, md, NULL) || !EVP_DigestUpdate(c, &set_tag, 1) ||
	    !EVP_DigestUpdate(c, attrs + 1, n - 1) || !EVP_DigestFinal_ex(c, out, out_len)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot compute msgSigDigest");
	}
	EVP_MD_CTX_free(c);
	EVP_MD_free(md);
	return rc;
}

/* DER of a signed attribute's value set, for comparing receipt requests (§2.3). */
static int rr_der(CMS_SignerInfo *si, unsigned char **der)
{
	int loc = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_receiptRequest, -1);

	*der = NULL;
	if (loc < 0) {
		return 0;
	}
	return i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, loc), der);
}

/* Am I (the receipt signer) in a receiptList? Compared by the certificate's addresses. */
static int in_receipt_list(STACK_OF(GENERAL_NAMES) *list, X509 *cert)
{
	char **emails = NULL;
	size_t n = 0;
	int found = 0;

	if (p11s_x509__emails(cert, &emails, &n) < 0) {
		return 0;
	}
	for (int i = 0; i < sk_GENERAL_NAMES_num(list) && !found; i++) {
		GENERAL_NAMES *g = sk_GENERAL_NAMES_value(list, i);

		for (int j = 0; j < sk_GENERAL_NAME_num(g) && !found; j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, j);

			for (size_t k = 0; gn->type == GEN_EMAIL && k < n && !found; k++) {
				char a[256];

				snprintf(a, sizeof(a), "%.*s", gn->d.rfc822Name->length,
				    (const char *)gn->d.rfc822Name->data);
				found = p11s_x509__addr_equal(a, emails[k]);
			}
		}
	}
	p11s_x509__strv_free(emails, n);
	return found;
}

/* Write the receipt message: To = receiptsTo rfc822Names, smime-type=signed-receipt. */
static int write_receipt(FILE *out, CMS_ReceiptRequest *rr, const unsigned char *der, size_t len)
{
	ASN1_STRING *cid;
	int aof, rc;
	STACK_OF(GENERAL_NAMES) *list, *to;
	BIO *b64;
	int first = 1;

	CMS_ReceiptRequest_get0_values(rr, &cid, &aof, &list, &to);
	for (int i = 0; i < sk_GENERAL_NAMES_num(to); i++) {
		GENERAL_NAMES *g = sk_GENERAL_NAMES_value(to, i);

		for (int j = 0; j < sk_GENERAL_NAME_num(g); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, j);
			const ASN1_IA5STRING *a = gn->d.rfc822Name;
			int ok = gn->type == GEN_EMAIL;

			/* A header field must not be split by what the sender put in the request. */
			for (int k = 0; ok && k < a->length; k++) {
				ok = a->data[k] > 0x20 && a->data[k] < 0x7f && a->data[k] != ',';
			}
			if (ok) {
				fprintf(out, "%s%.*s", first ? "To: " : ",\r\n ", a->length,
				    (const char *)a->data);
				first = 0;
			}
		}
	}
	if (!first) {
		fputs("\r\n", out);
	}
	fputs("Subject: Signed receipt\r\n"
	      "MIME-Version: 1.0\r\n"
	      "Content-Type: application/pkcs7-mime; smime-type=signed-receipt; name=smime.p7m\r\n"
	      "Content-Transfer-Encoding: base64\r\n"
	      "Content-Disposition: attachment; filename=smime.p7m\r\n\r\n", out);
	if ((b64 = p11s_mime__b64w_new(out)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (BIO_write(b64, der, (int)len) != (int)len) {
		BIO_free(b64);
		return p11s_error__set(P11S_ERR_IO, "writing the receipt failed");
	}
	rc = p11s_mime__b64w_finish(b64);
	BIO_free(b64);
	if (rc >= 0 && (ferror(out) || fflush(out) != 0)) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the receipt failed");
	}
	return rc;
}

int p11s_receipt_create_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey, X509 *cert,
    const p11s_receipt_opts *opts, FILE *in, FILE *out)
{
	original o = { 0 };
	STACK_OF(CMS_SignerInfo) *sis;
	CMS_SignerInfo *osi = NULL, *rsi;
	CMS_ReceiptRequest *rr = NULL;
	CMS_ContentInfo *rcms = NULL;
	P11S_ESS_RECEIPT *rec = NULL;
	unsigned char *first_rr = NULL, *recder = NULL, *cmsder = NULL, dig[EVP_MAX_MD_SIZE];
	unsigned int diglen = 0;
	int first_len = 0, idx = -1, reclen, cmslen, md_nid, rc;
	EVP_MD *md = NULL, *sha256 = NULL;
	ESS_SIGNING_CERT_V2 *scv2 = NULL;
	unsigned char *scder = NULL;
	BIO *rbio = NULL;
	X509_ALGOR *dalg;

	if (pkey == NULL || cert == NULL || in == NULL || out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_receipt_create: NULL argument");
	}
	if (opts != NULL && opts->version != P11S_RECEIPT_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "unknown p11s_receipt_opts version");
	}
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), pkey) != 1) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_USAGE, "the certificate's public key is not the "
		                                       "receipt signing key's");
	}
	if ((rc = original_read(&o, in)) < 0) {
		goto out;
	}
	/* RFC 2634 §2.2: never a receipt for a receipt. */
	if (OBJ_obj2nid(CMS_get0_eContentType(o.cms)) == NID_id_smime_ct_receipt) {
		rc = p11s_error__set(P11S_ERR_USAGE, "the message is itself a signed receipt; receipts "
		                                     "are never acknowledged (RFC 2634 2.2)");
		goto out;
	}
	sis = CMS_get0_SignerInfos(o.cms);
	/* §2.3: every request present must be identical; the first signer that asks is answered. */
	for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
		CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);
		unsigned char *d = NULL;
		int l = rr_der(si, &d);

		if (l <= 0) {
			OPENSSL_free(d);
			continue;
		}
		if (first_rr == NULL) {
			first_rr = d;
			first_len = l;
			idx = i;
			osi = si;
		} else {
			int same = l == first_len && memcmp(d, first_rr, (size_t)l) == 0;

			OPENSSL_free(d);
			if (!same) {
				rc = p11s_error__set(P11S_ERR_USAGE, "the signers request different receipts; "
				                                     "none is returned (RFC 2634 2.3)");
				goto out;
			}
		}
	}
	if (osi == NULL) {
		rc = p11s_error__set(P11S_ERR_USAGE, "the message requests no signed receipt");
		goto out;
	}
	if (CMS_get1_ReceiptRequest(osi, &rr) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the receiptRequest attribute is malformed");
		goto out;
	}
	{
		ASN1_STRING *cid;
		int aof;
		STACK_OF(GENERAL_NAMES) *list, *to;

		CMS_ReceiptRequest_get0_values(rr, &cid, &aof, &list, &to);
		if (list != NULL && !in_receipt_list(list, cert)) {
			rc = p11s_error__set(P11S_ERR_USAGE, "the receipt request names other receipt "
			                                     "senders (receiptList); none is returned");
			goto out;
		}
		/* §2.4: verify the original before acknowledging it. */
		if ((rc = original_verify(&o)) < 0) {
			goto out;
		}
		if ((rec = P11S_ESS_RECEIPT_new()) == NULL || !ASN1_INTEGER_set(rec->version, 1) ||
		    (rec->content_type = OBJ_dup(CMS_get0_eContentType(o.cms))) == NULL ||
		    !ASN1_STRING_copy(rec->content_id, cid) ||
		    !ASN1_STRING_copy(rec->sig_value, CMS_SignerInfo_get0_signature(osi)) ||
		    (reclen = i2d_P11S_ESS_RECEIPT(rec, &recder)) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the Receipt");
			goto out;
		}
	}
	/* The original signer's digest algorithm, for msgSigDigest and the receipt signature. */
	CMS_SignerInfo_get0_algs(osi, NULL, NULL, &dalg, NULL);
	md_nid = OBJ_obj2nid(dalg->algorithm);
	if ((rc = msg_sig_digest(&o, idx, md_nid, dig, &diglen)) < 0) {
		goto out;
	}
	/* Sign the receipt with the same digest when it is one we sign with, else SHA-256. */
	if (md_nid != NID_sha256 && md_nid != NID_sha384 && md_nid != NID_sha512) {
		md_nid = NID_sha256;
	}
	if ((md = EVP_MD_fetch(libctx, OBJ_nid2sn(md_nid), NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest unavailable");
		goto out;
	}
	/* §2.4: eContentType id-ct-receipt, the DER Receipt as eContent. */
	if ((rcms = CMS_sign_ex(NULL, NULL, NULL, NULL,
	         CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP, libctx, NULL)) == NULL ||
	    !CMS_set1_eContentType(rcms, OBJ_nid2obj(NID_id_smime_ct_receipt)) ||
	    (rsi = CMS_add1_signer(rcms, cert, pkey, md, CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP)) ==
	        NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot build the receipt SignedData");
		goto out;
	}
	/* §2.4: msgSigDigest; RFC 5035: signingCertificateV2 (SHA-256, with issuerSerial). */
	if (CMS_signed_add1_attr_by_NID(rsi, NID_id_smime_aa_msgSigDigest, V_ASN1_OCTET_STRING, dig,
	        (int)diglen) <= 0 ||
	    (sha256 = EVP_MD_fetch(libctx, "SHA256", NULL)) == NULL ||
	    (scv2 = OSSL_ESS_signing_cert_v2_new_init(sha256, cert, NULL, 1)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the receipt's signed attributes");
		goto out;
	}
	{
		int l = i2d_ESS_SIGNING_CERT_V2(scv2, &scder);

		if (l <= 0 || CMS_signed_add1_attr_by_NID(rsi, NID_id_smime_aa_signingCertificateV2,
		                  V_ASN1_SEQUENCE, scder, l) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add signingCertificateV2");
			goto out;
		}
	}
	for (int i = 0; opts != NULL && i < sk_X509_num(opts->chain); i++) {
		if (X509_cmp(sk_X509_value(opts->chain, i), cert) != 0 &&
		    CMS_add1_cert(rcms, sk_X509_value(opts->chain, i)) <= 0) {
			ERR_clear_error(); /* a duplicate: already there */
		}
	}
	if ((rbio = BIO_new_mem_buf(recder, reclen)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	p11s_error_clear();
	if (CMS_final(rcms, rbio, NULL, CMS_BINARY) != 1) {
		rc = p11s_error_last()->code != P11S_OK ? p11s_error__prefix("signing the receipt: ")
		                                         : p11s_error__ossl(P11S_ERR_CRYPTO,
		                                               "signing the receipt failed");
		goto out;
	}
	/* DESIGN.md decision 3: the token's signature must verify before it is used. */
	CMS_SignerInfo_set1_signer_cert(rsi, cert);
	if (CMS_SignerInfo_verify(rsi) != 1) {
		rc = p11s_error__ossl(P11S_ERR_TOKEN, "the receipt signature returned by the token "
		                                      "does not verify");
		goto out;
	}
	if ((cmslen = i2d_CMS_ContentInfo(rcms, &cmsder)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the receipt");
		goto out;
	}
	rc = write_receipt(out, rr, cmsder, (size_t)cmslen);
out:
	ERR_clear_error();
	BIO_free(rbio);
	OPENSSL_free(scder);
	ESS_SIGNING_CERT_V2_free(scv2);
	EVP_MD_free(sha256);
	EVP_MD_free(md);
	OPENSSL_free(cmsder);
	OPENSSL_free(recder);
	OPENSSL_free(first_rr);
	P11S_ESS_RECEIPT_free(rec);
	CMS_ContentInfo_free(rcms);
	CMS_ReceiptRequest_free(rr);
	original_free(&o);
	return rc;
}

int p11s_receipt_create(p11s_key *key, const p11s_receipt_opts *opts, FILE *in, FILE *out)
{
	p11s_receipt_opts def = P11S_RECEIPT_OPTS_INIT;
	STACK_OF(X509) *cas = NULL, *all = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert;
	int rc;

	if (key == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_receipt_create: NULL key");
	}
	if (opts == NULL) {
		opts = &def;
	}
	if ((cert = opts->cert ? opts->cert : p11s_key_cert(key)) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "no certificate for %s on the token; give one "
		                                       "with --cert", p11s_key_uri(key));
	}
	if ((rc = p11s_key_pkey(key, &pkey)) < 0 || (rc = p11s_key_ca_certs(key, &cas)) < 0) {
		goto out;
	}
	if ((all = sk_X509_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_num(opts->chain); i++) {
		(void)sk_X509_push(all, sk_X509_value(opts->chain, i));
	}
	for (int i = 0; i < sk_X509_num(cas); i++) {
		(void)sk_X509_push(all, sk_X509_value(cas, i));
	}
	{
		p11s_receipt_opts o = *opts;

		o.chain = all;
		rc = p11s_receipt_create_pkey(p11s_ctx_libctx(key->ctx), pkey, cert, &o, in, out);
	}
out:
	sk_X509_free(all);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---- verification (§2.6) ------------------------------------------------------------- */

struct p11s_receipt_priv {
	p11s_reasons reasons, warnings;
	p11s_verify_reason *reasons_view, *warnings_view; /* the public views (src/verdict/) */
	char *digest, *sigalg;
	char *subject, *signing_time, *cid, *ctype;
	char **chain;
	size_t n_chain;
	const char *key_type;
	int key_bits;
};

void p11s_receipt_result_free(p11s_receipt_result *r)
{
	if (r == NULL) {
		return;
	}
	if (r->priv != NULL) {
		p11s_reasons__clear(&r->priv->reasons);
		free(r->priv->reasons_view);
		p11s_reasons__clear(&r->priv->warnings);
		free(r->priv->warnings_view);
		free(r->priv->digest);
		free(r->priv->sigalg);
		free(r->priv->subject);
		free(r->priv->signing_time);
		free(r->priv->cid);
		free(r->priv->ctype);
		p11s_x509__strv_free(r->priv->chain, r->priv->n_chain);
		free(r->priv);
	}
	free(r);
}

/* The receipt: an S/MIME message (application/pkcs7-mime) or a DER SignedData. */
static CMS_ContentInfo *read_receipt(FILE *f)
{
	BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
	CMS_ContentInfo *cms = NULL;

	if (b == NULL) {
		return NULL;
	}
	rewind(f);
	cms = SMIME_read_CMS(b, NULL);
	if (cms == NULL) {
		rewind(f);
		(void)BIO_reset(b);
		cms = d2i_CMS_bio(b, NULL);
	}
	BIO_free(b);
	return cms;
}

/* Check the receipt; problems go into `r`. */
static int check_receipt(struct p11s_receipt_priv *pv, CMS_ContentInfo *rcms, original *o,
    const p11s_x509_store *store, int allow_weak)
{
	p11s_reasons *r = &pv->reasons;
	STACK_OF(CMS_SignerInfo) *rsis = CMS_get0_SignerInfos(rcms), *osis;
	STACK_OF(X509) *certs = NULL, *signers = NULL, *chain = NULL, *untrusted = NULL;
	STACK_OF(X509_CRL) *crls = NULL;
	CMS_SignerInfo *rsi, *osi = NULL;
	ASN1_OCTET_STRING **pos;
	P11S_ESS_RECEIPT *rec = NULL;
	CMS_ReceiptRequest *rr = NULL;
	const unsigned char *p;
	int rc = P11S_OK, oidx = -1;

	if (OBJ_obj2nid(CMS_get0_type(rcms)) != NID_pkcs7_signed ||
	    OBJ_obj2nid(CMS_get0_eContentType(rcms)) != NID_id_smime_ct_receipt) {
		return p11s_reasons__add(r, "not-a-receipt", "the receipt is not a SignedData with "
		                                             "eContentType id-ct-receipt");
	}
	if (sk_CMS_SignerInfo_num(rsis) != 1) {
		return p11s_reasons__add(r, "bad-attributes", "a signed receipt has exactly one signer");
	}
	rsi = sk_CMS_SignerInfo_value(rsis, 0);
	/* Signature over signedAttrs and messageDigest of the Receipt (RFC 5652 §5.6). */
	certs = CMS_get1_certs(rcms);
	if (CMS_verify(rcms, store->certs, NULL, NULL, NULL, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) !=
	    1) {
		char e[256];

		ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
		ERR_clear_error();
		if ((rc = p11s_reasons__add(r, "bad-signature", "the receipt's signature does not "
		                                                "verify: %s", e)) < 0) {
			goto out;
		}
	}
	signers = CMS_get0_signers(rcms);
	if (signers != NULL && sk_X509_num(signers) == 1) {
		X509 *signer = sk_X509_value(signers, 0);

		pv->subject = p11s_x509__name(X509_get_subject_name(signer));
		if ((untrusted = sk_X509_new_null()) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		for (int i = 0; i < sk_X509_num(certs); i++) {
			(void)sk_X509_push(untrusted, sk_X509_value(certs, i));
		}
		for (int i = 0; i < sk_X509_num(store->certs); i++) {
			(void)sk_X509_push(untrusted, sk_X509_value(store->certs, i));
		}
		crls = CMS_get1_crls(rcms);
		if ((rc = p11s_x509__validate(store, signer, untrusted, crls, r, &chain)) < 0) {
			goto out;
		}
		for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
			char *s = p11s_x509__name(X509_get_subject_name(sk_X509_value(chain, i)));
			char **nv = s ? realloc(pv->chain, (pv->n_chain + 1) * sizeof(*nv)) : NULL;

			if (nv == NULL) {
				free(s);
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			pv->chain = nv;
			nv[pv->n_chain++] = s;
		}
		if ((rc = p11s_x509__check_signer_usage(signer, r)) < 0) {
			goto out;
		}
		/* The weak-algorithm policy (src/verdict/weak.c), as for a signed message. */
		{
			X509_ALGOR *dig, *sig;
			p11s_weak_in w;
			const char *kt;

			CMS_SignerInfo_get0_algs(rsi, NULL, NULL, &dig, &sig);
			w.digest_nid = OBJ_obj2nid(dig->algorithm);
			w.sigalg_nid = OBJ_obj2nid(sig->algorithm);
			w.signer = signer;
			w.chain = chain;
			pv->digest = strdup(w.digest_nid != NID_undef ? OBJ_nid2ln(w.digest_nid)
			                                              : "unknown");
			pv->sigalg = strdup(w.sigalg_nid != NID_undef ? OBJ_nid2sn(w.sigalg_nid)
			                                              : "unknown");
			p11s_verdict__key(signer, &kt, &pv->key_bits);
			pv->key_type = kt;
			if (pv->digest == NULL || pv->sigalg == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			if ((rc = p11s_verdict__weak(&w, allow_weak, "receipt signer", r,
			         &pv->warnings)) < 0) {
				goto out;
			}
		}
	} else if ((rc = p11s_reasons__add(r, "signer-certificate-missing", "no certificate for the "
	                                                                    "receipt signer")) < 0) {
		goto out;
	}
	{
		int loc = CMS_signed_get_attr_by_NID(rsi, NID_pkcs9_signingTime, -1);
		ASN1_TYPE *t = loc >= 0 ? X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(rsi, loc), 0)
		                        : NULL;

		if (t != NULL && (t->type == V_ASN1_UTCTIME || t->type == V_ASN1_GENERALIZEDTIME)) {
			pv->signing_time = p11s_x509__time(t->value.utctime);
		}
	}
	/* The Receipt itself (§2.7). */
	pos = CMS_get0_content(rcms);
	if (pos == NULL || *pos == NULL ||
	    (p = (*pos)->data, rec = d2i_P11S_ESS_RECEIPT(NULL, &p, (*pos)->length)) == NULL ||
	    ASN1_INTEGER_get(rec->version) != 1) {
		ERR_clear_error();
		rc = p11s_reasons__add(r, "not-a-receipt", "the eContent is not a version 1 Receipt");
		goto out;
	}
	pv->cid = p11s_core__hex(rec->content_id->data, (size_t)rec->content_id->length);
	{
		char t[128];

		OBJ_obj2txt(t, sizeof(t), rec->content_type, 0);
		pv->ctype = strdup(t);
	}
	/* §2.6: the original signer whose signature value the Receipt quotes. */
	osis = CMS_get0_SignerInfos(o->cms);
	for (int i = 0; i < sk_CMS_SignerInfo_num(osis); i++) {
		ASN1_OCTET_STRING *s = CMS_SignerInfo_get0_signature(sk_CMS_SignerInfo_value(osis, i));

		if (ASN1_STRING_cmp(s, rec->sig_value) == 0) {
			osi = sk_CMS_SignerInfo_value(osis, i);
			oidx = i;
			break;
		}
	}
	if (osi == NULL) {
		rc = p11s_reasons__add(r, "signature-value-mismatch", "originatorSignatureValue is not "
		                                                      "the signature of any signer of "
		                                                      "the original (RFC 2634 2.6)");
		goto out;
	}
	if (CMS_get1_ReceiptRequest(osi, &rr) <= 0) {
		ERR_clear_error();
		if ((rc = p11s_reasons__add(r, "no-receipt-request", "the original signer did not "
		                                                     "request a receipt")) < 0) {
			goto out;
		}
	} else {
		ASN1_STRING *cid;
		int aof;
		STACK_OF(GENERAL_NAMES) *list, *to;

		CMS_ReceiptRequest_get0_values(rr, &cid, &aof, &list, &to);
		if (ASN1_STRING_cmp(cid, rec->content_id) != 0 &&
		    (rc = p11s_reasons__add(r, "content-identifier-mismatch", "signedContentIdentifier "
		                            "differs from the original's receipt request")) < 0) {
			goto out;
		}
	}
	if (OBJ_cmp(rec->content_type, CMS_get0_eContentType(o->cms)) != 0 &&
	    (rc = p11s_reasons__add(r, "content-type-mismatch", "the Receipt's contentType is not "
	                                                        "the original's")) < 0) {
		goto out;
	}
	/* §2.6: msgSigDigest = digest of the original's signedAttrs as received. */
	{
		int loc = CMS_signed_get_attr_by_NID(rsi, NID_id_smime_aa_msgSigDigest, -1);
		ASN1_TYPE *t = loc >= 0 ? X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(rsi, loc), 0)
		                        : NULL;
		unsigned char dig[EVP_MAX_MD_SIZE];
		unsigned int dl = 0;
		X509_ALGOR *dalg;

		CMS_SignerInfo_get0_algs(osi, NULL, NULL, &dalg, NULL);
		if (t == NULL || t->type != V_ASN1_OCTET_STRING) {
			rc = p11s_reasons__add(r, "msg-sig-digest-mismatch", "the receipt has no "
			                                                     "msgSigDigest attribute");
		} else if ((rc = msg_sig_digest(o, oidx, OBJ_obj2nid(dalg->algorithm), dig, &dl)) < 0) {
			goto out;
		} else if ((unsigned int)t->value.octet_string->length != dl ||
		    memcmp(t->value.octet_string->data, dig, dl) != 0) {
			rc = p11s_reasons__add(r, "msg-sig-digest-mismatch", "msgSigDigest is not the "
			                                                     "digest of the original's "
			                                                     "signed attributes");
		}
	}
out:
	ERR_clear_error();
	CMS_ReceiptRequest_free(rr);
	P11S_ESS_RECEIPT_free(rec);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_free(untrusted);
	sk_X509_free(signers);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	return rc;
}

int p11s_receipt_verify(p11s_receipt_result **out, FILE *receipt, FILE *original_in,
    const p11s_verify_opts *opts)
{
	p11s_verify_opts def = P11S_VERIFY_OPTS_INIT;
	p11s_receipt_result *res = NULL;
	p11s_x509_store *store = NULL;
	CMS_ContentInfo *rcms = NULL;
	original o = { 0 };
	p11s_x509_opts xo;
	int rc;

	if (out == NULL || receipt == NULL || original_in == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_receipt_verify: NULL argument");
	}
	*out = NULL;
	if ((res = calloc(1, sizeof(*res))) == NULL ||
	    (res->priv = calloc(1, sizeof(*res->priv))) == NULL) {
		free(res);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	p11s_verdict__x509_opts(opts ? opts : &def, &xo);
	if ((rc = p11s_x509__store_new(&store, &xo)) < 0 ||
	    (rc = original_read(&o, original_in)) < 0) {
		goto out;
	}
	if ((rcms = read_receipt(receipt)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the receipt is not an S/MIME or DER "
		                                          "SignedData");
		goto out;
	}
	if ((rc = check_receipt(res->priv, rcms, &o, store,
	         opts != NULL && opts->version >= 2 && opts->allow_weak)) < 0) {
		goto out;
	}
	res->valid = res->priv->reasons.n == 0;
	res->subject = res->priv->subject;
	res->signing_time = res->priv->signing_time;
	res->content_identifier = res->priv->cid;
	res->content_type = res->priv->ctype;
	res->chain = (const char *const *)res->priv->chain;
	res->n_chain = res->priv->n_chain;
	if ((rc = p11s_verdict__reasons(&res->priv->reasons, &res->priv->reasons_view)) < 0) {
		goto out;
	}
	res->reasons = res->priv->reasons_view;
	res->n_reasons = res->priv->reasons.n;
	if ((rc = p11s_verdict__reasons(&res->priv->warnings, &res->priv->warnings_view)) < 0) {
		goto out;
	}
	res->warnings = res->priv->warnings_view;
	res->n_warnings = res->priv->warnings.n;
	res->digest = res->priv->digest;
	res->signature_algorithm = res->priv->sigalg;
	res->key_type = res->priv->key_type;
	res->key_bits = res->priv->key_bits;
out:
	CMS_ContentInfo_free(rcms);
	original_free(&o);
	p11s_x509__store_free(store);
	if (rc < 0) {
		p11s_receipt_result_free(res);
		return rc;
	}
	*out = res;
	return P11S_OK;
}

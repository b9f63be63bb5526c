/*
 * `verify`: signed messages (RFC 8551) carrying CMS SignedData (RFC 5652 §5).
 *
 * CMS_verify() is not used: it applies OpenSSL's smimesign purpose (which rejects an EKU of
 * anyExtendedKeyUsage), stops at the first bad signer and reports one reason. Instead each
 * SignerInfo is checked on its own: signer certificate by either SignerIdentifier (trying
 * every match, SKIs can collide: RFC 8551 §2.6), signature over the signedAttrs, messageDigest
 * recomputed over the content we read ourselves (RFC 5652 §5.6), contentType, ESS
 * signingCertificate(V2) (RFC 5035, RFC 8550 §4.2), RSASSA-PSS parameters (RFC 4056 §3), then
 * RFC 5280 path validation and the RFC 8550 checks (src/x509/). Every reason is collected.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/verify.h>

#include "cms/ber_stream.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/signed.h"
#include "tsa/tsa_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

#define MAX_DIGESTS 8
#ifndef P11S_MAX_SIGNERS /* build-time setting (docs/security.md, "Limits") */
#define P11S_MAX_SIGNERS 64
#endif
#define MAX_SIGNERS P11S_MAX_SIGNERS
/*
 * Opaque signed-data is read as a stream; everything but the eContent (certificates, CRLs,
 * SignerInfos) is held in memory, bounded like a multipart/signed p7s (docs/security.md).
 */
#ifndef P11S_MAX_P7S_SIZE /* build-time setting, the same as src/mime/signed.c's */
#define P11S_MAX_P7S_SIZE (64L * 1024 * 1024)
#endif

/* One SignerInfo as reported. */
typedef struct signer_int {
	p11s_reasons reasons;
	char *subject, *issuer, *serial, *signing_time, *digest, *sigalg;
	char **emails;
	size_t n_emails;
	char **chain;
	size_t n_chain;
	p11s_ess_info ess;         /* label, equivalent labels, receipt request */
	char *ts_time, *ts_tsa;    /* signature timestamp: genTime, TSA subject */
	int ts_valid, sc_bound, nonrep;
	p11s_x509_revocation *rev; /* per chain element: the revocation status used */
	size_t n_rev;
	p11s_verify_reason *reasons_view;  /* the public views (publish()) */
	p11s_verify_revocation *rev_view;
} signer_int;

struct p11s_verify_priv {
	FILE *in;
	enum p11s_mime_kind kind;
	off_t start, end;                     /* multipart/signed part 1 */
	unsigned char fp[EVP_MAX_MD_SIZE];    /* SHA-256 of the verified content bytes */
	unsigned int fp_len;
	CMS_ContentInfo *cms;                 /* the SignedData; opaque: without its eContent */
	FILE *content;                        /* opaque: the eContent octets (scratch file) */
	p11s_reasons reasons, warnings;
	p11s_verify_reason *reasons_view, *warnings_view;
	signer_int *si;
	size_t n_si;
	p11s_verify_signer *pub;
	char *nested;
};

/* The digests of the content, one per distinct algorithm, plus our own SHA-256 fingerprint. */
typedef struct digests {
	EVP_MD_CTX *ctx[MAX_DIGESTS];
	EVP_MD *md[MAX_DIGESTS];
	int nid[MAX_DIGESTS];
	unsigned char value[MAX_DIGESTS][EVP_MAX_MD_SIZE];
	unsigned int len[MAX_DIGESTS];
	size_t n;
	EVP_MD_CTX *fp;
} digests;

static void digests_free(digests *d)
{
	for (size_t i = 0; i < d->n; i++) {
		EVP_MD_CTX_free(d->ctx[i]);
		EVP_MD_free(d->md[i]);
	}
	EVP_MD_CTX_free(d->fp);
	memset(d, 0, sizeof(*d));
}

/* Index of `nid` in `d`, adding it; -1 if the digest is unknown (no error raised). */
static int digests_add(digests *d, int nid)
{
	EVP_MD *md;

	for (size_t i = 0; i < d->n; i++) {
		if (d->nid[i] == nid) {
			return (int)i;
		}
	}
	if (d->n == MAX_DIGESTS || nid == NID_undef) {
		return -1;
	}
	if ((md = EVP_MD_fetch(NULL, OBJ_nid2sn(nid), NULL)) == NULL) {
		ERR_clear_error();
		return -1;
	}
	if ((d->ctx[d->n] = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(d->ctx[d->n], md, NULL)) {
		EVP_MD_CTX_free(d->ctx[d->n]);
		d->ctx[d->n] = NULL;
		EVP_MD_free(md);
		ERR_clear_error();
		return -1;
	}
	d->md[d->n] = md;
	d->nid[d->n] = nid;
	return (int)d->n++;
}

static int digests_find(const digests *d, int nid)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->nid[i] == nid) {
			return (int)i;
		}
	}
	return -1;
}

static int digest_sink(const unsigned char *p, size_t n, void *payload)
{
	digests *d = payload;

	for (size_t i = 0; i < d->n; i++) {
		if (!EVP_DigestUpdate(d->ctx[i], p, n)) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "digest update failed");
		}
	}
	if (d->fp != NULL && !EVP_DigestUpdate(d->fp, p, n)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest update failed");
	}
	return P11S_OK;
}

static int digests_final(digests *d, unsigned char *fp, unsigned int *fp_len)
{
	/* Finalise copies: the contexts stay usable for CMS_SignerInfo_verify_content(). */
	for (size_t i = 0; i < d->n; i++) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();

		if (c == NULL || !EVP_MD_CTX_copy_ex(c, d->ctx[i]) ||
		    !EVP_DigestFinal_ex(c, d->value[i], &d->len[i])) {
			EVP_MD_CTX_free(c);
			return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
		}
		EVP_MD_CTX_free(c);
	}
	if (!EVP_DigestFinal_ex(d->fp, fp, fp_len)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	return P11S_OK;
}

/* The micalg token of a digest (RFC 8551 §3.5.3.1; RFC 5751 for the historic ones). */
static const char *micalg_name(int nid)
{
	switch (nid) {
	case NID_md5:
		return "md5";
	case NID_sha1:
		return "sha-1";
	case NID_sha224:
		return "sha-224";
	case NID_sha256:
		return "sha-256";
	case NID_sha384:
		return "sha-384";
	case NID_sha512:
		return "sha-512";
	default:
		return NULL;
	}
}

/* Is `name` one of the comma-separated micalg values (case-insensitive, RFC 1847 §2.1)? */
static int micalg_has(const char *micalg, const char *name)
{
	size_t l = strlen(name);

	for (const char *p = micalg; p != NULL && *p != '\0';) {
		const char *e;

		while (*p == ' ' || *p == '\t' || *p == ',') {
			p++;
		}
		e = p;
		while (*e != '\0' && *e != ',' && *e != ' ' && *e != '\t') {
			e++;
		}
		if ((size_t)(e - p) == l && strncasecmp(p, name, l) == 0) {
			return 1;
		}
		p = e;
	}
	return 0;
}

static char *hex_of(const unsigned char *p, size_t n)
{
	char *s = malloc(n * 2 + 1);

	for (size_t i = 0; s != NULL && i < n; i++) {
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	}
	if (s != NULL) {
		s[n * 2] = '\0';
	}
	return s;
}

static char *serial_hex(const ASN1_INTEGER *sn)
{
	BIGNUM *bn = sn ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
	char *h = bn ? BN_bn2hex(bn) : NULL, *s = NULL;

	if (h != NULL) {
		s = strdup(h);
	}
	OPENSSL_free(h);
	BN_free(bn);
	return s;
}

static const char *ossl_text(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	buf[0] = '\0';
	if (e != 0) {
		ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

/* ---- ESS signingCertificate(V2) (RFC 2634 §5.4, RFC 5035) ------------------------------ */

/* Elements of a DER SEQUENCE as a stack of ASN1_TYPE (generic, no template needed). */
static STACK_OF(ASN1_TYPE) *seq_items(const unsigned char *p, long len)
{
	return d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
}

/*
 * Check the first ESSCertID(v2) against the signer certificate: RFC 5035 / RFC 5126 §5.6.3
 * say the first entry identifies the signer. certHash is over the whole DER certificate;
 * issuerSerial, when present, must name the same certificate.
 * @return 1 match, 0 mismatch (with `why`), -1 malformed.
 */
static int ess_match(const ASN1_STRING *attr_seq, int v2, X509 *cert, char *why, size_t wlen)
{
	STACK_OF(ASN1_TYPE) *outer = NULL, *ids = NULL, *id = NULL;
	const EVP_MD *md_def = v2 ? EVP_sha256() : EVP_sha1();
	EVP_MD *md_alg = NULL;
	X509_ALGOR *alg = NULL;
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	const ASN1_OCTET_STRING *certhash = NULL;
	int ret = -1, k = 0;

	if ((outer = seq_items(attr_seq->data, attr_seq->length)) == NULL ||
	    sk_ASN1_TYPE_num(outer) < 1 || sk_ASN1_TYPE_value(outer, 0)->type != V_ASN1_SEQUENCE) {
		goto out;
	}
	{
		const ASN1_STRING *s = sk_ASN1_TYPE_value(outer, 0)->value.sequence;

		if ((ids = seq_items(s->data, s->length)) == NULL || sk_ASN1_TYPE_num(ids) < 1 ||
		    sk_ASN1_TYPE_value(ids, 0)->type != V_ASN1_SEQUENCE) {
			goto out;
		}
		s = sk_ASN1_TYPE_value(ids, 0)->value.sequence;
		if ((id = seq_items(s->data, s->length)) == NULL || sk_ASN1_TYPE_num(id) < 1) {
			goto out;
		}
	}
	/* ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash, issuerSerial OPT } */
	if (v2 && sk_ASN1_TYPE_value(id, 0)->type == V_ASN1_SEQUENCE) {
		const ASN1_STRING *s = sk_ASN1_TYPE_value(id, 0)->value.sequence;
		const unsigned char *p = s->data;

		if ((alg = d2i_X509_ALGOR(NULL, &p, s->length)) == NULL ||
		    (md_alg = EVP_MD_fetch(NULL, OBJ_nid2sn(OBJ_obj2nid(alg->algorithm)), NULL)) == NULL) {
			snprintf(why, wlen, "signingCertificateV2 uses an unknown hash algorithm");
			ret = 0;
			goto out;
		}
		k = 1;
	}
	if (sk_ASN1_TYPE_num(id) <= k || sk_ASN1_TYPE_value(id, k)->type != V_ASN1_OCTET_STRING) {
		goto out;
	}
	certhash = sk_ASN1_TYPE_value(id, k)->value.octet_string;
	if (!X509_digest(cert, md_alg ? md_alg : md_def, hash, &hlen)) {
		goto out;
	}
	if ((unsigned int)certhash->length != hlen || memcmp(certhash->data, hash, hlen) != 0) {
		snprintf(why, wlen, "the %s attribute identifies another certificate than the signer's",
		    v2 ? "signingCertificateV2" : "signingCertificate");
		ret = 0;
		goto out;
	}
	/* IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber } */
	if (sk_ASN1_TYPE_num(id) > k + 1 && sk_ASN1_TYPE_value(id, k + 1)->type == V_ASN1_SEQUENCE) {
		const ASN1_STRING *s = sk_ASN1_TYPE_value(id, k + 1)->value.sequence;
		STACK_OF(ASN1_TYPE) *is = seq_items(s->data, s->length);
		int ok = 0;

		if (is != NULL && sk_ASN1_TYPE_num(is) == 2 &&
		    sk_ASN1_TYPE_value(is, 1)->type == V_ASN1_INTEGER) {
			const ASN1_STRING *gn = sk_ASN1_TYPE_value(is, 0)->value.sequence;
			const unsigned char *p = gn->data;
			GENERAL_NAMES *names = sk_ASN1_TYPE_value(is, 0)->type == V_ASN1_SEQUENCE
			    ? d2i_GENERAL_NAMES(NULL, &p, gn->length) : NULL;
			int name_ok = 0;

			for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
				const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

				name_ok |= g->type == GEN_DIRNAME &&
				    X509_NAME_cmp(g->d.directoryName, X509_get_issuer_name(cert)) == 0;
			}
			ok = name_ok && ASN1_INTEGER_cmp(sk_ASN1_TYPE_value(is, 1)->value.integer,
			                    X509_get0_serialNumber(cert)) == 0;
			GENERAL_NAMES_free(names);
		}
		sk_ASN1_TYPE_pop_free(is, ASN1_TYPE_free);
		if (!ok) {
			snprintf(why, wlen, "the issuerSerial of the %s attribute does not name the signer "
			    "certificate", v2 ? "signingCertificateV2" : "signingCertificate");
			ret = 0;
			goto out;
		}
	}
	ret = 1;
out:
	sk_ASN1_TYPE_pop_free(outer, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(ids, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(id, ASN1_TYPE_free);
	X509_ALGOR_free(alg);
	EVP_MD_free(md_alg);
	ERR_clear_error();
	return ret;
}

static int check_ess(CMS_SignerInfo *si, X509 *cert, p11s_reasons *r)
{
	static const struct {
		int nid, v2;
	} kinds[] = { { NID_id_smime_aa_signingCertificateV2, 1 },
		{ NID_id_smime_aa_signingCertificate, 0 } };
	char why[256];
	int rc;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int loc = CMS_signed_get_attr_by_NID(si, kinds[i].nid, -1);
		X509_ATTRIBUTE *a;
		ASN1_TYPE *t;
		int m;

		if (loc < 0) {
			continue;
		}
		a = CMS_signed_get_attr(si, loc);
		t = X509_ATTRIBUTE_get0_type(a, 0);
		if (CMS_signed_get_attr_by_NID(si, kinds[i].nid, loc) >= 0 ||
		    X509_ATTRIBUTE_count(a) != 1 || t == NULL || t->type != V_ASN1_SEQUENCE) {
			m = -1;
		} else {
			m = ess_match(t->value.sequence, kinds[i].v2, cert, why, sizeof(why));
		}
		if (m < 0) {
			rc = p11s_reasons__add(r, "signing-certificate-mismatch",
			    "malformed or repeated %s attribute",
			    kinds[i].v2 ? "signingCertificateV2" : "signingCertificate");
		} else if (m == 0) {
			rc = p11s_reasons__add(r, "signing-certificate-mismatch", "%s (RFC 5035)", why);
		} else {
			rc = P11S_OK;
		}
		if (rc < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

/* RFC 4056 §3: PSS parameters present, PSS hash = digestAlgorithm, MGF1 with the same hash. */
static int check_pss(const X509_ALGOR *sigalg, int digest_nid, p11s_reasons *r,
    p11s_reasons *warnings)
{
	RSA_PSS_PARAMS *pss = NULL;
	X509_ALGOR *mgfhash = NULL;
	int hash_nid, rc = P11S_OK;

	if (OBJ_obj2nid(sigalg->algorithm) != NID_rsassaPss) {
		return P11S_OK;
	}
	if (sigalg->parameter == NULL || sigalg->parameter->type != V_ASN1_SEQUENCE ||
	    (pss = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), sigalg->parameter)) ==
	        NULL) {
		rc = p11s_reasons__add(r, "bad-signature-parameters",
		    "RSASSA-PSS parameters absent or malformed (RFC 4056 section 3 requires them)");
		goto out;
	}
	hash_nid = pss->hashAlgorithm ? OBJ_obj2nid(pss->hashAlgorithm->algorithm) : NID_sha1;
	if (hash_nid != digest_nid) {
		rc = p11s_reasons__add(r, "bad-signature-parameters",
		    "RSASSA-PSS hash %s differs from the digest algorithm %s (RFC 4056 section 3)",
		    OBJ_nid2ln(hash_nid), OBJ_nid2ln(digest_nid));
		goto out;
	}
	if (pss->maskGenAlgorithm != NULL) {
		if (OBJ_obj2nid(pss->maskGenAlgorithm->algorithm) == NID_mgf1 &&
		    pss->maskGenAlgorithm->parameter != NULL) {
			mgfhash = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_ALGOR),
			    pss->maskGenAlgorithm->parameter);
		}
		if (mgfhash == NULL || OBJ_obj2nid(mgfhash->algorithm) != digest_nid) {
			rc = p11s_reasons__add(warnings, "pss-mgf",
			    "RSASSA-PSS mask generation is not MGF1 with %s (RFC 4056 section 3 SHOULD)",
			    OBJ_nid2ln(digest_nid));
		}
	} else if (digest_nid != NID_sha1) {
		rc = p11s_reasons__add(warnings, "pss-mgf",
		    "RSASSA-PSS mask generation is the default MGF1-SHA1, not MGF1 with %s",
		    OBJ_nid2ln(digest_nid));
	}
out:
	RSA_PSS_PARAMS_free(pss);
	X509_ALGOR_free(mgfhash);
	ERR_clear_error();
	return rc;
}

/* Signature over the content digest, for a SignerInfo without signedAttrs (RFC 5652 §5.4). */
static int verify_no_attrs(CMS_SignerInfo *si, digests *d, int idx)
{
	BIO *mdbio = BIO_new(BIO_f_md());
	EVP_MD_CTX *mctx = NULL;
	int ok = 0;

	if (mdbio != NULL && BIO_set_md(mdbio, d->md[idx]) > 0 && BIO_get_md_ctx(mdbio, &mctx) > 0 &&
	    EVP_MD_CTX_copy_ex(mctx, d->ctx[idx])) {
		ok = CMS_SignerInfo_verify_content(si, mdbio) == 1;
	}
	BIO_free(mdbio);
	return ok;
}

static int strv_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (nv == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	*v = nv;
	if ((nv[*n] = strdup(s ? s : "")) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	(*n)++;
	return P11S_OK;
}

typedef struct verify_env {
	CMS_ContentInfo *cms;
	STACK_OF(X509) *certs;     /* SignedData certificates + --certs: candidates, untrusted */
	STACK_OF(X509_CRL) *crls;  /* SignedData CRLs */
	const p11s_x509_store *store;
	const p11s_x509_sender *sender; /* NULL: the caller checks the sender itself */
	digests *d;
	p11s_reasons *warnings;
} verify_env;

/* Check one SignerInfo; fills `out`. */
static int verify_signer(const verify_env *env, CMS_SignerInfo *si, signer_int *out)
{
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *sno = NULL;
	X509_ALGOR *dig = NULL, *sigalg = NULL;
	X509 *signer = NULL, *first = NULL;
	STACK_OF(X509) *chain = NULL;
	p11s_reasons *r = &out->reasons;
	int has_attrs = CMS_signed_get_attr_count(si) > 0;
	int dnid, idx, rc = P11S_OK, candidates = 0;
	char err[256];

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sigalg);
	dnid = OBJ_obj2nid(dig->algorithm);
	if ((out->digest = strdup(dnid != NID_undef ? OBJ_nid2ln(dnid) : "unknown")) == NULL ||
	    (out->sigalg = strdup(OBJ_obj2nid(sigalg->algorithm) != NID_undef
	             ? OBJ_nid2sn(OBJ_obj2nid(sigalg->algorithm)) : "unknown")) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (!CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &sno)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot read the SignerIdentifier");
	}
	if (issuer != NULL) {
		out->issuer = p11s_x509__name(issuer);
		out->serial = serial_hex(sno);
	}
	/* RFC 8551 §2.6: SKIs can collide; try every certificate that matches the identifier. */
	for (int i = 0; i < sk_X509_num(env->certs); i++) {
		X509 *x = sk_X509_value(env->certs, i);
		int ok;

		if (CMS_SignerInfo_cert_cmp(si, x) != 0) {
			continue;
		}
		candidates++;
		if (first == NULL) {
			first = x;
		}
		CMS_SignerInfo_set1_signer_cert(si, x);
		if (has_attrs) {
			/* RFC 5652 §5.4: the signature is over the DER signedAttrs as received. */
			ok = CMS_SignerInfo_verify(si) == 1;
		} else {
			idx = digests_find(env->d, dnid);
			ok = idx >= 0 && verify_no_attrs(si, env->d, idx);
		}
		if (ok) {
			signer = x;
			break;
		}
		ossl_text(err, sizeof(err));
	}
	ERR_clear_error();
	if (first == NULL) {
		char *kid = keyid ? hex_of(keyid->data, (size_t)keyid->length) : NULL;

		if (keyid != NULL) {
			rc = p11s_reasons__add(r, "signer-certificate-missing",
			    "no certificate with subjectKeyIdentifier %s in the message or --certs",
			    kid ? kid : "?");
		} else {
			rc = p11s_reasons__add(r, "signer-certificate-missing",
			    "no certificate issued by %s with serial %s in the message or --certs",
			    out->issuer ? out->issuer : "?", out->serial ? out->serial : "?");
		}
		free(kid);
		return rc;
	}
	if (signer == NULL) {
		/* Report the certificate named by the identifier, but it proved nothing. */
		signer = first;
		if ((rc = p11s_reasons__add(r, has_attrs ? "bad-signature" : "content-altered",
		         "%s does not verify with the signer's public key (%d candidate certificate%s)%s%s",
		         has_attrs ? "the signature over the signed attributes"
		                   : "the signature over the content",
		         candidates, candidates == 1 ? "" : "s", err[0] ? ": " : "", err)) < 0) {
			return rc;
		}
	}
	free(out->issuer);
	free(out->serial);
	if ((out->subject = p11s_x509__name(X509_get_subject_name(signer))) == NULL ||
	    (out->issuer = p11s_x509__name(X509_get_issuer_name(signer))) == NULL ||
	    (out->serial = serial_hex(X509_get0_serialNumber(signer))) == NULL ||
	    (rc = p11s_x509__emails(signer, &out->emails, &out->n_emails)) < 0) {
		return rc < 0 ? rc : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	/* Content digest (RFC 5652 §5.6: recomputed, never trusted from the sender). */
	idx = digests_find(env->d, dnid);
	if (idx < 0) {
		rc = p11s_reasons__add(r, "unsupported-algorithm", "unsupported digest algorithm %s",
		    out->digest);
	} else if (dnid == NID_md5) {
		rc = p11s_reasons__add(r, "weak-algorithm", "MD5 digests are not accepted");
	} else if (has_attrs) {
		const ASN1_OCTET_STRING *md = CMS_signed_get0_data_by_OBJ(si,
		    OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING);
		const ASN1_OBJECT *ct = CMS_signed_get0_data_by_OBJ(si,
		    OBJ_nid2obj(NID_pkcs9_contentType), -3, V_ASN1_OBJECT);

		if (md == NULL) {
			rc = p11s_reasons__add(r, "bad-attributes",
			    "messageDigest attribute missing or repeated (RFC 5652 section 5.3)");
		} else if ((unsigned int)md->length != env->d->len[idx] ||
		    CRYPTO_memcmp(md->data, env->d->value[idx], env->d->len[idx]) != 0) {
			rc = p11s_reasons__add(r, "content-altered",
			    "the %s digest of the content differs from the signed messageDigest: the "
			    "content was altered after signing", out->digest);
		}
		if (rc >= 0 && ct == NULL) {
			rc = p11s_reasons__add(r, "bad-attributes",
			    "contentType attribute missing or repeated (RFC 5652 section 5.3)");
		} else if (rc >= 0 && OBJ_cmp(ct, CMS_get0_eContentType(env->cms)) != 0) {
			rc = p11s_reasons__add(r, "content-type-mismatch",
			    "contentType attribute differs from eContentType (RFC 5652 section 11.1)");
		}
		if (rc >= 0) {
			int loc = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
			ASN1_TYPE *t = loc >= 0 ? X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, loc), 0)
			                        : NULL;

			/* RFC 8551 §2.5.1: UTCTime or GeneralizedTime; claimed by the signer. */
			if (t != NULL && (t->type == V_ASN1_UTCTIME || t->type == V_ASN1_GENERALIZEDTIME)) {
				out->signing_time = p11s_x509__time(t->value.utctime);
			}
			size_t before = r->n;

			rc = check_ess(si, signer, r);
			/* Report the ESS binding (RFC 5035): which attribute bound the certificate. */
			if (rc >= 0) {
				out->sc_bound = r->n > before ? -1
				    : CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, -1) >= 0
				    ? 2
				    : CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificate, -1) >= 0
				    ? 1 : 0;
				rc = p11s_ess__read(si, &out->ess);
			}
			if (rc >= 0 && out->ess.label_malformed) {
				rc = p11s_reasons__add(r, "bad-attributes", "the ESSSecurityLabel attribute "
				                                            "is malformed or repeated (RFC 2634 "
				                                            "section 3.2)");
			}
		}
	} else if (OBJ_obj2nid(CMS_get0_eContentType(env->cms)) != NID_pkcs7_data) {
		rc = p11s_reasons__add(r, "bad-attributes",
		    "no signed attributes although eContentType is not id-data (RFC 5652 section 5.3)");
	}
	if (rc < 0 || (rc = check_pss(sigalg, dnid, r, env->warnings)) < 0) {
		return rc;
	}
	/* RFC 8550 §4.2 / RFC 5280 §6: the path from the signer certificate to an anchor. */
	if ((rc = p11s_x509__validate_rev(env->store, signer, env->certs, env->crls, r, &chain,
	         &out->rev, &out->n_rev)) < 0) {
		return rc;
	}
	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		char *s = p11s_x509__name(X509_get_subject_name(sk_X509_value(chain, i)));

		rc = s ? strv_push(&out->chain, &out->n_chain, s)
		       : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		free(s);
		if (rc < 0) {
			break;
		}
	}
	sk_X509_pop_free(chain, X509_free);
	if (rc < 0 || (rc = p11s_x509__check_signer_usage(signer, r)) < 0) {
		return rc;
	}
	out->nonrep = (X509_get_extension_flags(signer) & EXFLAG_KUSAGE) != 0 &&
	    (X509_get_key_usage(signer) & KU_NON_REPUDIATION) != 0;
	/*
	 * RFC 5126 §5.11.1 signature-time-stamp (unsigned): a token over the signature value,
	 * validated against the same trust anchors at its genTime. A bad token fails the signer.
	 */
	{
		int loc = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, -1);

		if (loc >= 0) {
			ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(CMS_unsigned_get_attr(si, loc), 0);
			ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
			size_t before = r->n;

			if (t == NULL || t->type != V_ASN1_SEQUENCE) {
				rc = p11s_reasons__add(r, "timestamp-invalid", "the signature-time-stamp "
				                                               "attribute is malformed");
			} else {
				rc = p11s_tsa__verify(t->value.sequence->data,
				    (size_t)t->value.sequence->length, sig->data, (size_t)sig->length,
				    env->store, env->certs, &out->ts_time, &out->ts_tsa, r);
			}
			if (rc < 0) {
				return rc;
			}
			out->ts_valid = r->n == before;
		}
	}
	if (env->sender == NULL) {
		return p11s_reasons__add(env->warnings, "sender-not-checked",
		    "the From/Sender address was not compared with the signer certificate "
		    "(--no-sender-check)");
	}
	if ((rc = p11s_x509__check_sender(signer, env->sender, r)) < 0) {
		return rc;
	}
	return P11S_OK;
}

/* ---- the result -------------------------------------------------------------------------- */

static void signer_free(signer_int *s)
{
	p11s_reasons__clear(&s->reasons);
	free(s->subject);
	free(s->issuer);
	free(s->serial);
	free(s->signing_time);
	free(s->digest);
	free(s->sigalg);
	p11s_x509__strv_free(s->emails, s->n_emails);
	p11s_x509__strv_free(s->chain, s->n_chain);
	p11s_ess__info_clear(&s->ess);
	free(s->ts_time);
	free(s->ts_tsa);
	p11s_x509__revocation_free(s->rev, s->n_rev);
	free(s->reasons_view);
	free(s->rev_view);
}

void p11s_verify_result_free(p11s_verify_result *r)
{
	if (r == NULL) {
		return;
	}
	if (r->priv != NULL) {
		for (size_t i = 0; i < r->priv->n_si; i++) {
			signer_free(&r->priv->si[i]);
		}
		free(r->priv->si);
		free(r->priv->pub);
		p11s_reasons__clear(&r->priv->reasons);
		p11s_reasons__clear(&r->priv->warnings);
		free(r->priv->reasons_view);
		free(r->priv->warnings_view);
		CMS_ContentInfo_free(r->priv->cms);
		if (r->priv->content != NULL) {
			fclose(r->priv->content);
		}
		free(r->priv->nested);
		free(r->priv);
	}
	free(r);
}

/* Point the public view at the internal data (validation's types mapped by src/verdict/). */
static int publish(p11s_verify_result *res)
{
	struct p11s_verify_priv *p = res->priv;
	int all = p->n_si > 0, rc;

	if (p->n_si > 0 && (p->pub = calloc(p->n_si, sizeof(*p->pub))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rc = p11s_verdict__reasons(&p->reasons, &p->reasons_view)) < 0 ||
	    (rc = p11s_verdict__reasons(&p->warnings, &p->warnings_view)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < p->n_si; i++) {
		signer_int *s = &p->si[i];
		p11s_verify_signer *v = &p->pub[i];

		if ((rc = p11s_verdict__reasons(&s->reasons, &s->reasons_view)) < 0 ||
		    (rc = p11s_verdict__revocation(s->rev, s->n_rev, &s->rev_view)) < 0) {
			return rc;
		}
		v->valid = s->reasons.n == 0;
		all &= v->valid;
		v->subject = s->subject;
		v->issuer = s->issuer;
		v->serial = s->serial;
		v->emails = (const char *const *)s->emails;
		v->n_emails = s->n_emails;
		v->signing_time = s->signing_time;
		v->digest = s->digest;
		v->signature_algorithm = s->sigalg;
		v->chain = (const char *const *)s->chain;
		v->n_chain = s->n_chain;
		v->reasons = s->reasons_view;
		v->n_reasons = s->reasons.n;
		v->security_label = s->ess.label;
		v->equivalent_labels = (const char *const *)s->ess.equivalent;
		v->n_equivalent_labels = s->ess.n_equivalent;
		v->receipt_request = s->ess.receipt_request;
		v->timestamp = s->ts_time;
		v->timestamp_authority = s->ts_tsa;
		v->timestamp_valid = s->ts_valid;
		v->signing_certificate = s->sc_bound;
		v->non_repudiation = s->nonrep;
		v->revocation = s->rev_view;
		v->n_revocation = s->n_rev;
	}
	res->signers = p->pub;
	res->n_signers = p->n_si;
	res->reasons = p->reasons_view;
	res->n_reasons = p->reasons.n;
	res->warnings = p->warnings_view;
	res->n_warnings = p->warnings.n;
	res->signed_part_path = p->nested;
	/* Valid only if the root is signed, there are signers, and every one is valid. */
	res->valid = all && p->reasons.n == 0 && p->kind != P11S_MIME_NOT_SIGNED;
	return P11S_OK;
}

/* ---- opaque signed-data, streamed ----------------------------------------------------- */

/*
 * Streaming verification of application/pkcs7-mime signed-data (DESIGN.md decision 4), the
 * same way as the streaming decryption (src/cms/envelope.c): OpenSSL 3.0's d2i would hold the
 * whole eContent in memory, so the decoded body (already in a scratch file) is walked once as
 * BER by src/cms/ber_stream.c:
 *
 *   - every field except eContent (version, digestAlgorithms, eContentType, certificates,
 *     crls, signerInfos) is copied verbatim into a "skeleton" ContentInfo: the same
 *     SignedData with the OPTIONAL eContent absent (RFC 5652 §5.2), i.e. detached;
 *   - the eContent octets ([0] EXPLICIT OCTET STRING, primitive or constructed from
 *     segments, X.690 §8.7) go to a second scratch file.
 *
 * The skeleton is parsed by OpenSSL and checked exactly as before; the content digests are
 * computed reading the content file in chunks, and `--out` copies the same file. The
 * signatures are over the signedAttrs, or over the digest contexts (verify_no_attrs), so the
 * eContent is never needed inside the CMS structure.
 */

/* DER of id-signedData (RFC 5652 §5.1). */
static const unsigned char oid_signed[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
	0x01, 0x07, 0x02 };

static int sk_write(BIO *sk, const unsigned char *p, size_t n)
{
	if (BIO_write(sk, p, (int)n) != (int)n) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	return P11S_OK;
}

/*
 * Walk the decoded body in `der`. For a SignedData: the skeleton goes to `sk`, the eContent
 * octets to `content`, `*has_content` says whether eContent was present. For any other
 * content type, `*type_nid` is set (NID_undef if unknown) and the rest is only checked to be
 * well-formed BER.
 */
static int split_signed(FILE *der, BIO *sk, FILE *content, int *has_content, int *type_nid)
{
	char too_large[96];
	p11s_cms_ber r = { der, 0, NULL, (uint64_t)P11S_MAX_P7S_SIZE, too_large };
	p11s_cms_ber_hdr ci, ex, sd, h, eci, ec;
	BIO *oid = NULL;
	unsigned char *p;
	long n;
	int rc, more;
	static const unsigned char open_seq[] = { 0x30, 0x80 }, open_ex[] = { 0xa0, 0x80 },
	                           eoc[] = { 0, 0 };

	snprintf(too_large, sizeof(too_large),
	    "certificates, CRLs and signer infos over %lld bytes, P11S_MAX_P7S_SIZE",
	    (long long)P11S_MAX_P7S_SIZE);
	*has_content = 0;
	*type_nid = NID_pkcs7_signed;
	if ((oid = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY } (RFC 5652 §3) */
	if ((rc = p11s_cms__ber_content_type(&r, &ci, oid)) < 0) {
		goto out;
	}
	n = BIO_get_mem_data(oid, (char **)&p);
	if (!((size_t)n == sizeof(oid_signed) && memcmp(p, oid_signed, (size_t)n) == 0)) {
		const unsigned char *cp = p;
		ASN1_OBJECT *o = NULL;

		*type_nid = d2i_ASN1_OBJECT(&o, &cp, n) != NULL ? OBJ_obj2nid(o) : NID_undef;
		ASN1_OBJECT_free(o);
		ERR_clear_error();
		/* Not signed: the rest must still be a well-formed ContentInfo (no truncation). */
		while ((more = p11s_cms__ber_next(&r, &ci, &h)) == 1) {
			if ((rc = p11s_cms__ber_rest(&r, &h, 0)) < 0) {
				goto out;
			}
		}
		rc = more;
		goto out;
	}
	/* The skeleton uses indefinite lengths: no length has to be known in advance. */
	if ((rc = sk_write(sk, open_seq, 2)) < 0 || (rc = sk_write(sk, p, (size_t)n)) < 0 ||
	    (rc = sk_write(sk, open_ex, 2)) < 0 || (rc = sk_write(sk, open_seq, 2)) < 0) {
		goto out;
	}
	/* SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo, ... } */
	if ((rc = p11s_cms__ber_expect(&r, &ci, 0xa0, &ex, "no [0] content")) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &ex, 0x30, &sd, "no SignedData")) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &sd, V_ASN1_INTEGER, &h, "no version")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &sd, 0x31, &h, "no digestAlgorithms")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0) {
		goto out;
	}
	/* EncapsulatedContentInfo ::= SEQUENCE { eContentType,
	 *   eContent [0] EXPLICIT OCTET STRING OPTIONAL } (RFC 5652 §5.2) */
	if ((rc = p11s_cms__ber_expect(&r, &sd, 0x30, &eci, "no EncapsulatedContentInfo")) < 0 ||
	    (rc = sk_write(sk, open_seq, 2)) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &eci, V_ASN1_OBJECT, &h, "no eContentType")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 || (rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
		goto out;
	}
	if (rc == 1) {
		if (h.id != 0xa0) {
			rc = p11s_cms__ber_bad("unexpected field in EncapsulatedContentInfo");
			goto out;
		}
		if ((rc = p11s_cms__ber_next(&r, &h, &ec)) < 0) {
			goto out;
		}
		/* The OCTET STRING may be constructed (0x24): BER, e.g. `openssl cms -stream`. */
		if (rc == 0 || (ec.id & ~0x20) != V_ASN1_OCTET_STRING) {
			rc = p11s_cms__ber_bad("eContent is not an OCTET STRING");
			goto out;
		}
		if ((rc = p11s_cms__ber_octets(&r, &ec, content,
		         "eContent segment is not an OCTET STRING", 0)) < 0 ||
		    (rc = p11s_cms__ber_next(&r, &h, &ec)) < 0) {
			goto out;
		}
		if (rc == 1) {
			rc = p11s_cms__ber_bad("more than one eContent");
			goto out;
		}
		*has_content = 1;
		if ((rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
			goto out;
		}
		if (rc == 1) {
			rc = p11s_cms__ber_bad("unexpected field in EncapsulatedContentInfo");
			goto out;
		}
	}
	if ((rc = sk_write(sk, eoc, 2)) < 0) {
		goto out;
	}
	/* The rest as it is: certificates [0], crls [1], signerInfos SET (RFC 5652 §5.1). */
	if ((rc = p11s_cms__ber_copy_tail(&r, &sd, &ex, &ci, sk)) < 0) {
		goto out;
	}
	if ((rc = sk_write(sk, eoc, 2)) < 0 || (rc = sk_write(sk, eoc, 2)) < 0 ||
	    (rc = sk_write(sk, eoc, 2)) < 0) {
		goto out;
	}
	if (fflush(content) != 0 || fseeko(content, 0, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		goto out;
	}
	rc = P11S_OK;
out:
	BIO_free(oid);
	return rc;
}

/*
 * Read the opaque body of `m` (a scratch file): `*out` is the SignedData skeleton (NULL with
 * `*type_nid` set if the body is another content type), p->content the eContent file.
 */
static int read_opaque(struct p11s_verify_priv *p, p11s_mime_signed *m, CMS_ContentInfo **out,
    int *type_nid, int *has_content)
{
	CMS_ContentInfo *cms = NULL;
	FILE *content = NULL;
	BIO *sk = NULL;
	const unsigned char *der;
	long len;
	int rc;

	*out = NULL;
	if ((content = tmpfile()) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
	}
	if ((sk = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = split_signed(m->body, sk, content, has_content, type_nid)) < 0 ||
	    *type_nid != NID_pkcs7_signed) {
		goto out;
	}
	len = BIO_get_mem_data(sk, (char **)&der);
	if ((cms = d2i_CMS_ContentInfo(NULL, &der, len)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED,
		    "the application/pkcs7-mime body is not a valid CMS SignedData");
		goto out;
	}
	*out = cms;
	p->content = content;
	content = NULL;
out:
	BIO_free(sk);
	if (content != NULL) {
		fclose(content);
	}
	return rc;
}

/* Feed the opaque content file from its start to `sink`, in chunks. */
static int stream_content(FILE *f, p11s_mime_feed sink, void *payload)
{
	unsigned char buf[65536];
	size_t n;
	int rc;

	if (fseeko(f, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "reading a temporary file: %s", strerror(errno));
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if ((rc = sink(buf, n, payload)) < 0) {
			return rc;
		}
	}
	if (ferror(f)) {
		return p11s_error__set(P11S_ERR_IO, "reading a temporary file: %s", strerror(errno));
	}
	return P11S_OK;
}

static int verify_cms(p11s_verify_result *res, p11s_mime_signed *m, const p11s_x509_store *store,
    int no_sender_check)
{
	struct p11s_verify_priv *p = res->priv;
	const unsigned char *der = m->der;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *certs = NULL, *msg_certs = NULL;
	STACK_OF(X509_CRL) *msg_crls = NULL;
	digests d = { 0 };
	verify_env env;
	int rc = P11S_OK, n, type = NID_pkcs7_signed, has_content = 1;

	if (m->kind == P11S_MIME_OPAQUE && m->body != NULL) {
		/* Streamed: a skeleton without eContent, the content in a scratch file. */
		if ((rc = read_opaque(p, m, &cms, &type, &has_content)) < 0) {
			return rc;
		}
	} else if ((cms = d2i_CMS_ContentInfo(NULL, &der, (long)m->der_len)) == NULL) {
		return p11s_error__ossl(P11S_ERR_MALFORMED, "the %s is not a DER CMS ContentInfo",
		    m->kind == P11S_MIME_OPAQUE ? "application/pkcs7-mime body" : "signature part");
	} else {
		type = OBJ_obj2nid(CMS_get0_type(cms));
		has_content = !CMS_is_detached(cms);
	}
	p->cms = cms;
	if (type != NID_pkcs7_signed) {
		if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "the signature part holds %s, not SignedData", OBJ_nid2ln(type));
		}
		/* e.g. an enveloped-data .p7m without smime-type: not a signed message. */
		p->kind = P11S_MIME_NOT_SIGNED;
		res->structure = NULL;
		res->signed_part = "none";
		return p11s_reasons__add(&p->reasons, "not-signed",
		    "the application/pkcs7-mime body is %s, not SignedData",
		    type != NID_undef ? OBJ_nid2ln(type) : "an unknown content type");
	}
	sis = CMS_get0_SignerInfos(cms);
	n = sis ? sk_CMS_SignerInfo_num(sis) : 0;
	if (m->kind == P11S_MIME_MULTIPART_SIGNED && has_content) {
		/* RFC 8551 §3.5.3 (MUST): eContent absent. Johnny C1: never show other bytes. */
		if ((rc = p11s_reasons__add(&p->reasons, "econtent-in-detached",
		         "the application/pkcs7-signature part carries its own content (eContent); "
		         "RFC 8551 section 3.5.3 forbids it and it may differ from what is shown")) < 0) {
			goto out;
		}
	}
	if (m->kind == P11S_MIME_OPAQUE && !has_content && n > 0) {
		if ((rc = p11s_reasons__add(&p->reasons, "no-content",
		         "opaque signed-data without eContent: nothing was signed in this message")) < 0) {
			goto out;
		}
	}
	if (n == 0) {
		/* Johnny C3: zero signers is never "signed". */
		if ((rc = p11s_reasons__add(&p->reasons, "no-signers",
		         "the SignedData has no SignerInfo: nobody signed this message")) < 0) {
			goto out;
		}
	}
	if (n > MAX_SIGNERS) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "more than %d signers", MAX_SIGNERS);
		goto out;
	}
	/* Every digest the signers use, computed in one pass over the content. */
	if ((d.fp = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(d.fp, EVP_sha256(), NULL)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		X509_ALGOR *dig;

		CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
		(void)digests_add(&d, OBJ_obj2nid(dig->algorithm));
	}
	if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		/* Part 1 as sent, canonicalised to CRLF (RFC 8551 §3.1.1, RFC 2046 §5.1.1). */
		rc = p11s_mime__stream_canonical(p->in, p->start, p->end, digest_sink, &d);
	} else if (p->content != NULL) {
		/* The eContent octets as signed, streamed from the scratch file. */
		rc = stream_content(p->content, digest_sink, &d);
	} else {
		ASN1_OCTET_STRING **pos = CMS_get0_content(cms);

		if (pos != NULL && *pos != NULL) {
			rc = digest_sink((*pos)->data, (size_t)(*pos)->length, &d);
		}
	}
	if (rc < 0 || (rc = digests_final(&d, p->fp, &p->fp_len)) < 0) {
		goto out;
	}
	/* Micalg (RFC 8551 §3.5.3): a mismatch is reported, not fatal (tolerate unknown values). */
	if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		for (int i = 0; i < n && rc >= 0; i++) {
			X509_ALGOR *dig;
			const char *name;

			CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
			name = micalg_name(OBJ_obj2nid(dig->algorithm));
			if (m->micalg == NULL) {
				rc = p11s_reasons__add(&p->warnings, "micalg-mismatch",
				    "multipart/signed has no micalg parameter");
				break;
			}
			if (name == NULL || !micalg_has(m->micalg, name)) {
				rc = p11s_reasons__add(&p->warnings, "micalg-mismatch",
				    "micalg \"%s\" does not list signer %d's digest %s", m->micalg, i + 1,
				    name ? name : OBJ_nid2ln(OBJ_obj2nid(dig->algorithm)));
			}
		}
		if (rc < 0) {
			goto out;
		}
	}
	/* Candidates and untrusted intermediates: message certificates (RFC 8550 §2.3), --certs. */
	msg_certs = CMS_get1_certs(cms);
	if ((certs = sk_X509_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; msg_certs != NULL && i < sk_X509_num(msg_certs); i++) {
		if (!sk_X509_push(certs, sk_X509_value(msg_certs, i)) ||
		    !X509_up_ref(sk_X509_value(msg_certs, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < sk_X509_num(store->certs); i++) {
		if (!sk_X509_push(certs, sk_X509_value(store->certs, i)) ||
		    !X509_up_ref(sk_X509_value(store->certs, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (n > 0 && (p->si = calloc((size_t)n, sizeof(*p->si))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	msg_crls = CMS_get1_crls(cms);
	env.cms = cms;
	env.certs = certs;
	env.crls = msg_crls;
	env.store = store;
	env.sender = no_sender_check ? NULL : &m->sender;
	env.d = &d;
	env.warnings = &p->warnings;
	/* Johnny C2: each signer on its own; one valid signer never vouches for another. */
	for (int i = 0; i < n; i++) {
		p->n_si++;
		if ((rc = verify_signer(&env, sk_CMS_SignerInfo_value(sis, i), &p->si[i])) < 0) {
			goto out;
		}
	}
	/* RFC 2634 §3.4.1: if any SignerInfo has a security label, all must have the same one. */
	for (int i = 1; i < n; i++) {
		const char *a = p->si[0].ess.label, *b = p->si[i].ess.label;

		if ((a != NULL || b != NULL) && (a == NULL || b == NULL || strcmp(a, b) != 0)) {
			rc = p11s_reasons__add(&p->reasons, "security-label-mismatch", "the signers carry "
			    "different security labels (RFC 2634 section 3.4.1)");
			break;
		}
	}
out:
	digests_free(&d);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(msg_certs, X509_free);
	sk_X509_CRL_pop_free(msg_crls, X509_CRL_free);
	ERR_clear_error();
	return rc;
}

int p11s_verify_message(p11s_verify_result **out, FILE *in, const p11s_verify_opts *opts)
{
	p11s_verify_opts defaults = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *res = NULL;
	p11s_mime_signed *m = NULL;
	p11s_x509_store *store = NULL;
	p11s_x509_opts xo;
	int rc;

	if (out == NULL || in == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_verify_message: NULL argument");
	}
	*out = NULL;
	if (opts == NULL) {
		opts = &defaults;
	}
	if (opts->version != P11S_VERIFY_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_verify_opts version %u unknown",
		    opts->version);
	}
	if ((res = calloc(1, sizeof(*res))) == NULL ||
	    (res->priv = calloc(1, sizeof(*res->priv))) == NULL) {
		free(res);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	res->priv->in = in;
	/* Option files first: an unreadable --trust is a usage error whatever the message. */
	p11s_verdict__x509_opts(opts, &xo);
	if ((rc = p11s_x509__store_new(&store, &xo)) < 0 ||
	    (rc = p11s_mime__read_signed_ex(&m, in, P11S_MIME_READ_STREAM)) < 0) {
		goto out;
	}
	res->priv->kind = m->kind;
	switch (m->kind) {
	case P11S_MIME_MULTIPART_SIGNED:
		res->structure = "multipart/signed";
		res->signed_part = "whole-message";
		res->priv->start = m->parts.part1_start;
		res->priv->end = m->parts.part1_end;
		break;
	case P11S_MIME_OPAQUE:
		res->structure = "opaque";
		res->signed_part = "whole-message";
		break;
	default:
		res->structure = NULL;
		if (m->nested != NULL) {
			/* STANDARDS.md §12 M1-M4: a signed part inside is not a signed message. */
			res->signed_part = "nested-part";
			res->priv->nested = m->nested;
			m->nested = NULL;
			rc = p11s_reasons__add(&res->priv->reasons, "signed-part-not-root",
			    "only part %s is S/MIME signed, not the message (%s): the rest is unsigned, "
			    "so the message is not reported as signed", res->priv->nested,
			    m->not_signed_why ? m->not_signed_why : "?");
		} else {
			res->signed_part = "none";
			rc = p11s_reasons__add(&res->priv->reasons, "not-signed",
			    "the message (%s) is not S/MIME signed",
			    m->not_signed_why ? m->not_signed_why : "?");
		}
		break;
	}
	if (rc >= 0 && m->kind != P11S_MIME_NOT_SIGNED) {
		rc = verify_cms(res, m, store, opts->no_sender_check);
	}
	if (rc >= 0) {
		rc = publish(res);
	}
out:
	p11s_mime__signed_free(m);
	p11s_x509__store_free(store);
	if (rc < 0) {
		p11s_verify_result_free(res);
		return rc;
	}
	*out = res;
	return P11S_OK;
}

typedef struct write_ctx {
	FILE *out;
	EVP_MD_CTX *fp;
} write_ctx;

static int write_sink(const unsigned char *p, size_t n, void *payload)
{
	write_ctx *w = payload;

	if (fwrite(p, 1, n, w->out) != n) {
		return p11s_error__set(P11S_ERR_IO, "writing the content: %s", strerror(errno));
	}
	if (!EVP_DigestUpdate(w->fp, p, n)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	return P11S_OK;
}

int p11s_verify_write_content(const p11s_verify_result *r, FILE *out)
{
	struct p11s_verify_priv *p;
	write_ctx w = { out, NULL };
	unsigned char fp[EVP_MAX_MD_SIZE];
	unsigned int fp_len = 0;
	int rc;

	if (r == NULL || out == NULL || r->priv == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_verify_write_content: NULL argument");
	}
	p = r->priv;
	if (!r->valid) {
		/* Never release content that is not verified (RFC 8551 §6). */
		return p11s_error__set(P11S_ERR_VERIFY, "the message did not verify; no content written");
	}
	if ((w.fp = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(w.fp, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(w.fp);
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	if (p->kind == P11S_MIME_MULTIPART_SIGNED) {
		rc = p11s_mime__stream_canonical(p->in, p->start, p->end, write_sink, &w);
	} else if (p->content != NULL) {
		rc = stream_content(p->content, write_sink, &w);
	} else {
		ASN1_OCTET_STRING **pos = CMS_get0_content(p->cms);

		rc = (pos != NULL && *pos != NULL)
		    ? write_sink((*pos)->data, (size_t)(*pos)->length, &w) : P11S_OK;
	}
	if (rc >= 0 && !EVP_DigestFinal_ex(w.fp, fp, &fp_len)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	/* The bytes written must be the bytes verified (the input file could have changed). */
	if (rc >= 0 && (fp_len != p->fp_len || CRYPTO_memcmp(fp, p->fp, fp_len) != 0)) {
		rc = p11s_error__set(P11S_ERR_VERIFY,
		    "the input changed after verification; the content is not written");
	}
	EVP_MD_CTX_free(w.fp);
	return rc;
}

int p11s_verify_parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0, sign = 0;
	const char *p;
	time_t t;

	if (s == NULL || sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 19) {
		return p11s_error__set(P11S_ERR_USAGE,
		    "bad time '%s': expected RFC 3339, e.g. 2024-01-31T12:00:00Z", s ? s : "");
	}
	p = s + n;
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			p++;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 &&
	    strlen(p) >= 6) {
		sign = *p == '-' ? -1 : 1;
		p += 6;
	} else {
		p = "x";
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59) {
		return p11s_error__set(P11S_ERR_USAGE,
		    "bad time '%s': expected RFC 3339, e.g. 2024-01-31T12:00:00Z", s);
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec == 60 ? 59 : sec;
	t = timegm(&tm);
	*out = (int64_t)t - sign * (oh * 3600 + om * 60);
	return P11S_OK;
}

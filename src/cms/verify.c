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

#include <p11smime/revocation.h>
#include <p11smime/verify.h>

#include "cms/ber_stream.h"
#include "cms/cms_int.h"
#include "cms/verify_int.h"
#include "core/error_int.h"
#include "core/spool.h"
#include "ess/ess_int.h"
#include "mime/signed.h"
#include "tsa/tsa_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

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

int p11s_cms__digests_find(const digests *d, int nid)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->nid[i] == nid) {
			return (int)i;
		}
	}
	return -1;
}

/*
 * Our fingerprint is SHA-256: when a signer's digest is SHA-256 too, that context serves both
 * (hashing a 100 MiB part twice was half of verifying it, docs/performance.md).
 */
static int fp_shared(const digests *d)
{
	return p11s_cms__digests_find(d, NID_sha256);
}

static int digest_sink(const unsigned char *p, size_t n, void *payload)
{
	digests *d = payload;
	int shared = fp_shared(d) >= 0;

	for (size_t i = 0; i < d->n; i++) {
		if (!EVP_DigestUpdate(d->ctx[i], p, n)) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "digest update failed");
		}
	}
	if (d->fp != NULL && !shared && !EVP_DigestUpdate(d->fp, p, n)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest update failed");
	}
	return P11S_OK;
}

static int digests_final(digests *d, unsigned char *fp, unsigned int *fp_len)
{
	/* Finalise copies: the contexts stay usable for CMS_SignerInfo_verify_content(). */
	for (size_t i = 0; i < d->n; i++) {
		EVP_MD_CTX *c = EVP_MD_CTX_new();

		/* SHAKE256 for Ed448 (RFC 8419 §3): 512 bits of output. */
		int xof = (EVP_MD_get_flags(d->md[i]) & EVP_MD_FLAG_XOF) != 0;

		if (xof) {
			d->len[i] = 64;
		}
		if (c == NULL || !EVP_MD_CTX_copy_ex(c, d->ctx[i]) ||
		    !(xof ? EVP_DigestFinalXOF(c, d->value[i], 64)
		          : EVP_DigestFinal_ex(c, d->value[i], &d->len[i]))) {
			EVP_MD_CTX_free(c);
			return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
		}
		EVP_MD_CTX_free(c);
	}
	if (fp_shared(d) >= 0) {
		int i = fp_shared(d);

		memcpy(fp, d->value[i], d->len[i]);
		*fp_len = d->len[i];
		return P11S_OK;
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

/*
 * Part 1 of multipart/signed hashed during the delimiter scan (p11s_mime_tee), with the
 * digests micalg announces (RFC 8551 §3.5.3) and our fingerprint; a large part on a second
 * thread (core/spool.h). verify_cms() uses it when it covers every signer's digest, and
 * otherwise reads part 1 again.
 */
typedef struct pre_hash {
	digests d;
	p11s_spool *spool;
} pre_hash;

static int pre_begin(const char *micalg, off_t size, void *payload)
{
	static const struct {
		const char *name;
		int nid;
	} known[] = { { "sha-256", NID_sha256 }, { "sha-384", NID_sha384 }, { "sha-512", NID_sha512 },
		{ "sha-224", NID_sha224 }, { "sha-1", NID_sha1 } };
	pre_hash *h = payload;

	if ((h->d.fp = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(h->d.fp, EVP_sha256(), NULL)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
	}
	for (size_t i = 0; micalg != NULL && i < sizeof(known) / sizeof(known[0]); i++) {
		if (micalg_has(micalg, known[i].name)) {
			(void)digests_add(&h->d, known[i].nid);
		}
	}
	if (h->d.n == 0) {
		(void)digests_add(&h->d, NID_sha256); /* no usable micalg: the common digest */
	}
	if ((h->spool = p11s_core__spool_new(digest_sink, &h->d, size >= P11S_SPOOL_THREAD_MIN)) ==
	    NULL) {
		return P11S_ERR_NOMEM;
	}
	return 1;
}

static int pre_feed(const unsigned char *p, size_t n, void *payload)
{
	return p11s_core__spool_put(p, n, ((pre_hash *)payload)->spool);
}

/* Does `pre` hold every digest the signers use? */
static int pre_covers(const digests *pre, STACK_OF(CMS_SignerInfo) *sis, int n)
{
	if (pre->fp == NULL) {
		return 0;
	}
	for (int i = 0; i < n; i++) {
		X509_ALGOR *dig;

		CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
		if (p11s_cms__digests_find(pre, p11s_cms__digest_nid(dig)) < 0) {
			return 0;
		}
	}
	return 1;
}

static int verify_cms(p11s_verify_result *res, p11s_mime_signed *m, const p11s_x509_store *store,
    int no_sender_check, int allow_weak, digests *pre)
{
	struct p11s_verify_priv *p = res->priv;
	const unsigned char *der = m->der;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *certs = NULL, *msg_certs = NULL;
	STACK_OF(X509_CRL) *msg_crls = NULL;
	digests d = { 0 };
	verify_env env = { 0 };
	int rc = P11S_OK, n, type = NID_pkcs7_signed, has_content = 1;

	if (m->kind == P11S_MIME_OPAQUE && m->body != NULL) {
		/* Streamed: a skeleton without eContent, the content in a scratch file. */
		if ((rc = p11s_cms__read_opaque(p, m, &cms, &type, &has_content)) < 0) {
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
	if (m->kind == P11S_MIME_MULTIPART_SIGNED && m->teed && pre != NULL && pre_covers(pre, sis, n)) {
		/* Hashed while the delimiters were scanned: part 1 is not read again. */
		d = *pre;
		memset(pre, 0, sizeof(*pre));
		rc = digests_final(&d, p->fp, &p->fp_len);
		goto hashed;
	}
	/* Every digest the signers use, computed in one pass over the content. */
	if ((d.fp = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(d.fp, EVP_sha256(), NULL)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest failed");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		X509_ALGOR *dig;

		CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
		(void)digests_add(&d, p11s_cms__digest_nid(dig));
	}
	if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		/* Part 1 as sent, canonicalised to CRLF (RFC 8551 §3.1.1, RFC 2046 §5.1.1). */
		rc = p11s_mime__stream_canonical(p->in, p->start, p->end, digest_sink, &d);
	} else if (p->content != NULL) {
		/* The eContent octets as signed, streamed from the scratch file. */
		rc = p11s_cms__stream_content(p->content, digest_sink, &d);
	} else {
		ASN1_OCTET_STRING **pos = CMS_get0_content(cms);

		if (pos != NULL && *pos != NULL) {
			rc = digest_sink((*pos)->data, (size_t)(*pos)->length, &d);
		}
	}
	if (rc >= 0) {
		rc = digests_final(&d, p->fp, &p->fp_len);
	}
hashed:
	if (rc < 0) {
		goto out;
	}
	/* Micalg (RFC 8551 §3.5.3): a mismatch is reported, not fatal (tolerate unknown values). */
	if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		for (int i = 0; i < n && rc >= 0; i++) {
			X509_ALGOR *dig;
			const char *name;

			CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sis, i), NULL, NULL, &dig, NULL);
			name = micalg_name(p11s_cms__digest_nid(dig));
			if (m->micalg == NULL) {
				rc = p11s_reasons__add(&p->warnings, "micalg-mismatch",
				    "multipart/signed has no micalg parameter");
				break;
			}
			if (name == NULL || !micalg_has(m->micalg, name)) {
				rc = p11s_reasons__add(&p->warnings, "micalg-mismatch",
				    "micalg \"%s\" does not list signer %d's digest %s", m->micalg, i + 1,
				    name ? name : OBJ_nid2ln(p11s_cms__digest_nid(dig)));
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
	/* A DSA key may take its domain parameters from its issuer (PKITS 4.1.5). */
	if ((rc = p11s_x509__dsa_inherit(certs, store)) < 0) {
		goto out;
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
	/* RFC 9788: a protected From is the one the address check compares. */
	if ((rc = p11s_cms__protected_headers(p)) < 0) {
		goto out;
	}
	env.sender = no_sender_check  ? NULL
	    : p->has_prot_sender      ? &p->prot_sender
	                              : &m->sender;
	env.d = &d;
	env.warnings = &p->warnings;
	env.allow_weak = allow_weak;
	/* Stapled OCSP answers only a policy that asks OCSP (docs/verify.md "Revocation"). */
	if (store->rev != NULL && (store->rev->methods & P11S_REV_OCSP) != 0 &&
	    (rc = p11s_cms__stapled_ocsp(cms, &env.stapled)) < 0) {
		goto out;
	}
	/* Johnny C2: each signer on its own; one valid signer never vouches for another. */
	for (int i = 0; i < n; i++) {
		p->n_si++;
		if ((rc = p11s_cms__verify_signer(&env, sk_CMS_SignerInfo_value(sis, i), &p->si[i])) < 0) {
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
	p11s_x509__stapled_clear(&env.stapled);
	digests_free(&d);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(msg_certs, X509_free);
	sk_X509_CRL_pop_free(msg_crls, X509_CRL_free);
	ERR_clear_error();
	return rc;
}

/*
 * The date check (src/verdict/dates.c, docs/verify.md "Dates"): the outer Date and a Date
 * inside the signed entity (RFC 9788 §2: protected header fields) against each signer's
 * signingTime and verified time-stamp. A message without a Date (a detached CMS file) is not
 * checked.
 */
static int check_dates(struct p11s_verify_priv *p, p11s_mime_signed *m, int64_t tolerance)
{
	p11s_dates_in d = { 0 };
	int rc;

	if (tolerance == 0) {
		tolerance = P11S_VERIFY_DATE_TOLERANCE;
	}
	if (m->date != NULL) {
		if ((p->date = strdup(m->date)) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		if (p11s_mime__parse_date(m->date, &d.date) == 0) {
			d.has_date = 1;
			d.date_raw = p->date;
		} else if ((rc = p11s_reasons__add(&p->warnings, "date-unreadable",
		                "the Date header \"%s\" is not an RFC 5322 date-time: not compared "
		                "with the signing time", m->date)) < 0) {
			return rc;
		}
	}
	/*
	 * The signed entity: part 1 of a multipart/signed, or the eContent of an opaque one. Its
	 * header fields were read for header protection already (verify_protected.c).
	 */
	if (p->have_entity) {
		const char *pd = p11s_mime__fields_get(&p->entity, "Date");

		rc = pd == NULL ? 0 : (p->protected_date = strdup(pd)) != NULL ? 1
		    : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	} else if (p->kind == P11S_MIME_MULTIPART_SIGNED) {
		rc = p11s_mime__entity_date(p->in, p->start, p->end, &p->protected_date);
	} else if (p->content != NULL) {
		rc = p11s_mime__entity_date(p->content, 0, -1, &p->protected_date);
	} else {
		rc = 0;
	}
	if (rc < 0) {
		return rc;
	}
	if (p->protected_date != NULL && p->protected_date[0] == '\0') {
		free(p->protected_date); /* "Date:" with nothing readable: no protected Date */
		p->protected_date = NULL;
	}
	if (p->protected_date != NULL &&
	    p11s_mime__parse_date(p->protected_date, &d.protected_date) == 0) {
		d.has_protected_date = 1;
		d.protected_date_raw = p->protected_date;
	}
	for (size_t i = 0; i < p->n_si; i++) {
		signer_int *s = &p->si[i];
		p11s_dates_out o;

		d.signing_time = s->signing_time;
		d.timestamp = s->ts_valid ? s->ts_time : NULL;
		if ((rc = p11s_verdict__dates(&d, tolerance, &o, &s->reasons)) < 0) {
			return rc;
		}
		s->has_date_skew = o.has_date_skew;
		s->date_skew = o.date_skew;
		s->has_ts_skew = o.has_timestamp_skew;
		s->ts_skew = o.timestamp_skew;
	}
	return P11S_OK;
}

/* Read the message, hashing part 1 of multipart/signed on the way (pre_hash). */
static int read_signed(p11s_mime_signed **m, FILE *in, pre_hash *pre)
{
	p11s_mime_tee tee = { pre_begin, pre_feed, pre };
	int rc = p11s_mime__read_signed_tee(m, in, P11S_MIME_READ_STREAM, &tee), rc2;

	if (pre->spool != NULL) {
		rc2 = p11s_core__spool_end(pre->spool);
		pre->spool = NULL;
		if (rc >= 0 && rc2 < 0) {
			p11s_mime__signed_free(*m);
			*m = NULL;
			rc = rc2;
		}
	}
	return rc;
}

int p11s_verify_message(p11s_verify_result **out, FILE *in, const p11s_verify_opts *opts)
{
	return p11s_verify_message_rev(out, in, opts, NULL);
}

int p11s_verify_message_rev(p11s_verify_result **out, FILE *in, const p11s_verify_opts *opts,
    const p11s_revocation_opts *rev)
{
	p11s_x509_rev_policy pol;
	p11s_verify_opts defaults = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *res = NULL;
	p11s_mime_signed *m = NULL;
	p11s_x509_store *store = NULL;
	p11s_x509_opts xo;
	pre_hash pre = { 0 };
	int rc;

	if (out == NULL || in == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_verify_message: NULL argument");
	}
	*out = NULL;
	if (opts == NULL) {
		opts = &defaults;
	}
	/* Version 1 callers have no allow_weak field: it is not read for them. */
	if (opts->version != 1 && opts->version != P11S_VERIFY_OPTS_VERSION) {
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
	    (rc = read_signed(&m, in, &pre)) < 0) {
		goto out;
	}
	/* An explicit revocation policy (revocation.h, issue 19) replaces "--crl turns CRLs on". */
	if (rev != NULL) {
		if (rev->version != P11S_REVOCATION_OPTS_VERSION) {
			rc = p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_revocation_opts version %u unknown",
			    rev->version);
			goto out;
		}
		pol = (p11s_x509_rev_policy){ .methods = rev->methods, .fetch = rev->fetch,
			.soft_fail = rev->soft_fail, .ocsp_whole_path = rev->ocsp_whole_path,
			.ocsp_url = rev->ocsp_url, .allow = rev->fetch_allow, .n_allow = rev->n_fetch_allow,
			.deny = rev->fetch_deny, .n_deny = rev->n_fetch_deny, .timeout_s = rev->fetch_timeout };
		store->rev = &pol;
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
		rc = verify_cms(res, m, store, opts->no_sender_check,
		    opts->version >= 2 && opts->allow_weak, &pre.d);
	}
	if (rc >= 0 && m->kind != P11S_MIME_NOT_SIGNED) {
		rc = check_dates(res->priv, m, opts->version >= 2 ? opts->date_tolerance : 0);
	}
	if (rc >= 0) {
		rc = p11s_cms__publish(res);
	}
out:
	digests_free(&pre.d);
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
		rc = p11s_cms__stream_content(p->content, write_sink, &w);
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

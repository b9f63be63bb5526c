/*
 * p11smime-gpg --verify SIGFILE -: verify a detached CMS signature over the payload on stdin
 * and report as gpgsm does (gnupg sm/verify.c, doc/DETAILS): NEWSIG, then one of GOODSIG /
 * EXPKEYSIG / REVKEYSIG / BADSIG / ERRSIG, VALIDSIG and a TRUST_* line, and the human lines on
 * stderr ("Good signature from ..."). git (gpg-interface.c) needs GOODSIG after a newline,
 * reads the key and signer from it, the fingerprint from VALIDSIG, the trust level from
 * TRUST_* (gpg.minTrustLevel) and fails on a non-zero exit.
 *
 * The verdict is the library's (p11s_verify_message over an opaque signed-data message made
 * by p11s_detached_to_opaque()): signature, content digest, ESS signing-certificate binding,
 * path to the configured `trust` anchors, revocation with the configured `crl` files, key
 * usage. Unlike gpgsm, an expired certificate is not good (EXPKEYSIG, exit 1) unless the
 * signer carries a verified RFC 3161 time-stamp at whose genTime the whole path was valid:
 * then the signature is validated at genTime (RFC 5126 §5.11.1, CAdES-T) and is GOODSIG.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11smime/detached.h>
#include <p11smime/error.h>
#include <p11smime/verify.h>

#include "gpg.h"

/* A signature file larger than this is not a git signature. */
#define SIG_MAX (4u << 20)

/* libgpg-error codes gpgsm writes after TRUST_NEVER / TRUST_UNDEFINED (gpg-error.h). */
enum {
	GE_BAD_CERT = 36,
	GE_BAD_CERT_CHAIN = 56,
	GE_CERT_REVOKED = 94,
	GE_NO_CRL_KNOWN = 95,
	GE_CRL_TOO_OLD = 96,
	GE_NOT_TRUSTED = 98,
	GE_CERT_EXPIRED = 101,
};

static int read_all(FILE *f, unsigned char **out, size_t *len, size_t max)
{
	size_t cap = 65536, n = 0, r;
	unsigned char *b = malloc(cap), *nb;

	if (b == NULL) {
		return -1;
	}
	while ((r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n > max) {
			free(b);
			errno = EFBIG;
			return -1;
		}
		if (n == cap) {
			if ((nb = realloc(b, cap * 2)) == NULL) {
				free(b);
				return -1;
			}
			b = nb;
			cap *= 2;
		}
	}
	if (ferror(f)) {
		free(b);
		return -1;
	}
	*out = b;
	*len = n;
	return 0;
}

/* The certificates carried by the signature and its SignerInfos (for fingerprints). */
static CMS_ContentInfo *parse_sig(const unsigned char *sig, size_t len)
{
	const unsigned char *p = sig;
	CMS_ContentInfo *cms = NULL;
	BIO *bio;

	if (len > 0 && sig[0] == 0x30) {
		return d2i_CMS_ContentInfo(NULL, &p, (long)len);
	}
	{
		char *name = NULL, *hdr = NULL;
		unsigned char *data = NULL;
		long dl = 0;

		/* PEM with any label: gpgsm's "SIGNED MESSAGE", RFC 7468's "CMS", "PKCS7". */
		if ((bio = BIO_new_mem_buf(sig, (int)len)) != NULL &&
		    PEM_read_bio(bio, &name, &hdr, &data, &dl) == 1) {
			p = data;
			cms = d2i_CMS_ContentInfo(NULL, &p, dl);
		}
		BIO_free(bio);
		OPENSSL_free(name);
		OPENSSL_free(hdr);
		OPENSSL_free(data);
	}
	ERR_clear_error();
	return cms;
}

/* The signer certificate of SignerInfo `i`, from the signature's certificates. */
static X509 *signer_cert(CMS_ContentInfo *cms, size_t i)
{
	STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
	STACK_OF(X509) *certs = CMS_get1_certs(cms);
	CMS_SignerInfo *si;
	X509 *hit = NULL;

	if (sis != NULL && (int)i < sk_CMS_SignerInfo_num(sis)) {
		si = sk_CMS_SignerInfo_value(sis, (int)i);
		for (int k = 0; hit == NULL && k < sk_X509_num(certs); k++) {
			if (CMS_SignerInfo_cert_cmp(si, sk_X509_value(certs, k)) == 0) {
				hit = sk_X509_value(certs, k);
				X509_up_ref(hit);
			}
		}
	}
	sk_X509_pop_free(certs, X509_free);
	return hit;
}

static int has_reason(const p11s_verify_signer *s, const char *code)
{
	for (size_t i = 0; i < s->n_reasons; i++) {
		if (strcmp(s->reasons[i].code, code) == 0) {
			return 1;
		}
	}
	return 0;
}

/* Every reason is one of `codes` (NULL-terminated). */
static int only_reasons(const p11s_verify_signer *s, const char *const *codes)
{
	for (size_t i = 0; i < s->n_reasons; i++) {
		int known = 0;

		for (size_t k = 0; codes[k] != NULL && !known; k++) {
			known = strcmp(s->reasons[i].code, codes[k]) == 0;
		}
		if (!known) {
			return 0;
		}
	}
	return 1;
}

/* "2024-01-31T12:00:00Z" -> "20240131T120000" (gnupg's ISO time); "0" if absent. */
static void iso_basic(const char *rfc3339, char *out, size_t cap)
{
	int64_t t;
	time_t tt;
	struct tm tm;

	if (rfc3339 == NULL || p11s_verify_parse_time(rfc3339, &t) < 0) {
		snprintf(out, cap, "0");
		return;
	}
	tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(out, cap, "%Y%m%dT%H%M%S", &tm);
}

static int run_verify(FILE *msg, const gpg_opts *o, int has_time, int64_t at,
    p11s_verify_result **r)
{
	p11s_verify_opts vo = P11S_VERIFY_OPTS_INIT;
	const char *trust[64], *crls[64], *certs[64];
	size_t nt = 0, nc = 0, nx = 0;
	const char *v;

	while (nt < 64 && (v = p11s_config_get_nth(o->config, "", "trust", nt)) != NULL) {
		trust[nt++] = v;
	}
	while (nc < 64 && (v = p11s_config_get_nth(o->config, "", "crl", nc)) != NULL) {
		crls[nc++] = v;
	}
	while (nx < 64 && (v = p11s_config_get_nth(o->config, "", "certs", nx)) != NULL) {
		certs[nx++] = v;
	}
	vo.trust_files = trust;
	vo.cert_files = certs;
	vo.n_cert_files = nx;
	vo.n_trust_files = nt;
	vo.crl_files = crls;
	vo.n_crl_files = nc;
	vo.no_sender_check = 1; /* a commit has no From field; the signer is shown instead */
	vo.has_time = has_time;
	vo.time = at;
	/* allow-weak = yes: SHA-1/MD5 and small keys pass with a warning (docs/verify.md). */
	if ((v = p11s_config_get(o->config, "", "allow-weak")) != NULL &&
	    (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)) {
		vo.allow_weak = 1;
	}
	if (fseeko(msg, 0, SEEK_SET) != 0) {
		return -1;
	}
	return p11s_verify_message(r, msg, &vo);
}

/* One signer: status lines, human lines; returns the exit status for it. */
static int report_signer(const gpg_opts *o, FILE *msg, const p11s_verify_result *res, size_t i,
    X509 *cert)
{
	static const char *const crypto_bad[] = { "bad-signature", "content-altered",
		"bad-attributes", "content-type-mismatch", "signing-certificate-mismatch", NULL };
	static const char *const expiry[] = { "expired", NULL };
	const p11s_verify_signer *s = &res->signers[i];
	char fpr[129] = "-", when[32], *name = NULL;
	const char *first = s->n_reasons > 0 ? s->reasons[0].message : "";
	int md = gpg_md_algo(s->digest), status = GPG_EXIT_OK, good_at_ts = 0;

	if (cert != NULL) {
		gpg_cert_fpr(cert, "sha1", fpr);
	}
	iso_basic(s->signing_time, when, sizeof(when));
	gpg_info("Signature made %s using certificate ID 0x%s", s->signing_time ? s->signing_time
	    : "(no signingTime)", fpr);
	if (cert == NULL || s->subject == NULL || has_reason(s, "signer-certificate-missing")) {
		/* DETAILS: ERRSIG <keyid> <pkalgo> <hashalgo> <class> <time> <rc>; 9 = no key. */
		gpg_status(o, "ERRSIG", "%s 0 %d 00 %s 9", fpr, md, when);
		gpg_info("cannot check the signature: %s", first);
		return GPG_EXIT_BAD;
	}
	if (has_reason(s, "unsupported-algorithm") || has_reason(s, "weak-algorithm") ||
	    has_reason(s, "bad-signature-parameters")) {
		/* DETAILS: rc 4 = unsupported algorithm, as gpg reports a rejected weak digest. */
		gpg_status(o, "ERRSIG", "%s %d %d 00 %s 4", fpr, gpg_pk_algo(cert), md, when);
		for (size_t j = 0; j < s->n_reasons; j++) {
			if (strcmp(s->reasons[j].code, "weak-algorithm") == 0) {
				gpg_info("weak-algorithm: %s", s->reasons[j].message);
			}
		}
		gpg_info("cannot check the signature: %s", first);
		return GPG_EXIT_BAD;
	}
	if ((name = gpg_escape(s->subject)) == NULL) {
		return GPG_EXIT_USAGE;
	}
	for (size_t k = 0; crypto_bad[k] != NULL; k++) {
		if (has_reason(s, crypto_bad[k])) {
			gpg_status(o, "BADSIG", "%s %s", fpr, name);
			for (size_t j = 0; j < s->n_reasons; j++) {
				if (strcmp(s->reasons[j].code, crypto_bad[k]) == 0) {
					gpg_info("BAD signature from \"%s\": %s", s->subject,
					    s->reasons[j].message);
				}
			}
			free(name);
			return GPG_EXIT_BAD;
		}
	}
	/*
	 * The signature itself is good. An expired path with a verified time-stamp: validate again
	 * at genTime, when the certificates were in force (docs/evidence.md "--at genTime").
	 */
	if (!s->valid && only_reasons(s, expiry) && s->timestamp_valid && s->timestamp != NULL) {
		p11s_verify_result *at = NULL;
		int64_t t;

		if (p11s_verify_parse_time(s->timestamp, &t) == 0 &&
		    run_verify(msg, o, 1, t, &at) == 0 && at->n_signers == res->n_signers &&
		    at->signers[i].valid) {
			good_at_ts = 1;
			gpg_info("certificate expired since; valid at the RFC 3161 time-stamp %s by %s",
			    s->timestamp, s->timestamp_authority ? s->timestamp_authority : "?");
		}
		p11s_verify_result_free(at);
	}
	if (s->valid || good_at_ts) {
		gpg_status(o, "GOODSIG", "%s %s", fpr, name);
	} else if (has_reason(s, "revoked")) {
		gpg_status(o, "REVKEYSIG", "%s %s", fpr, name);
	} else if (has_reason(s, "expired")) {
		gpg_status(o, "EXPKEYSIG", "%s %s", fpr, name);
	} else {
		gpg_status(o, "GOODSIG", "%s %s", fpr, name);
	}
	/* gpgsm: VALIDSIG <fpr> <date> <sig time> <key expiry> 0 0 <pk-algo> <md-algo> 00. */
	{
		char day[16] = "0", exp[32] = "0";
		const ASN1_TIME *na = X509_get0_notAfter(cert);
		struct tm tm;

		if (strcmp(when, "0") != 0) {
			snprintf(day, sizeof(day), "%.4s-%.2s-%.2s", when, when + 4, when + 6);
		}
		if (na != NULL && ASN1_TIME_to_tm(na, &tm) == 1) {
			strftime(exp, sizeof(exp), "%Y%m%dT%H%M%S", &tm);
		}
		gpg_status(o, "VALIDSIG", "%s %s %s %s 0 0 %d %d 00", fpr, day, when, exp,
		    gpg_pk_algo(cert), md);
	}
	if (s->valid || good_at_ts) {
		/* The X.509 shell model: every certificate valid now (or at genTime). */
		gpg_status(o, "TRUST_FULLY", "0 shell");
		gpg_info("Good signature from \"%s\"", s->subject);
		for (size_t k = 0; k < s->n_emails; k++) {
			gpg_info("                aka \"%s\"", s->emails[k]);
		}
		if (s->timestamp_valid && s->timestamp != NULL) {
			gpg_info("time-stamped %s by %s", s->timestamp,
			    s->timestamp_authority ? s->timestamp_authority : "?");
		}
	} else {
		int code = GE_BAD_CERT;
		const char *level = "TRUST_NEVER";

		if (has_reason(s, "revoked")) {
			code = GE_CERT_REVOKED;
		} else if (has_reason(s, "expired")) {
			code = GE_CERT_EXPIRED, level = "TRUST_UNDEFINED";
		} else if (has_reason(s, "untrusted")) {
			code = GE_NOT_TRUSTED, level = "TRUST_UNDEFINED";
		} else if (has_reason(s, "crl-missing")) {
			code = GE_NO_CRL_KNOWN, level = "TRUST_UNDEFINED";
		} else if (has_reason(s, "crl-expired")) {
			code = GE_CRL_TOO_OLD, level = "TRUST_UNDEFINED";
		} else if (has_reason(s, "key-usage") || has_reason(s, "ext-key-usage")) {
			code = GE_BAD_CERT;
		} else {
			code = GE_BAD_CERT_CHAIN;
		}
		gpg_status(o, level, "%d", code);
		for (size_t j = 0; j < s->n_reasons; j++) {
			gpg_info("invalid certification chain for \"%s\": %s", s->subject,
			    s->reasons[j].message);
		}
		status = GPG_EXIT_BAD;
	}
	free(name);
	return status;
}

int gpg_cmd_verify(const gpg_opts *o, const char *sigfile, const char *datafile)
{
	unsigned char *sig = NULL, *data = NULL;
	size_t sig_len = 0, data_len = 0;
	p11s_verify_result *res = NULL;
	CMS_ContentInfo *cms = NULL;
	FILE *f = NULL, *msg = NULL;
	int status = GPG_EXIT_OK;

	/* DETAILS: NEWSIG before each signature; git needs a line before GOODSIG. */
	gpg_status(o, "NEWSIG", NULL);
	if ((f = fopen(sigfile, "rb")) == NULL || read_all(f, &sig, &sig_len, SIG_MAX) < 0) {
		gpg_info("cannot read the signature %s: %s", sigfile, strerror(errno));
		status = GPG_EXIT_USAGE;
		goto out;
	}
	fclose(f);
	f = NULL;
	if (strcmp(datafile, "-") == 0) {
		f = stdin;
	} else if ((f = fopen(datafile, "rb")) == NULL) {
		gpg_info("cannot read %s: %s", datafile, strerror(errno));
		status = GPG_EXIT_USAGE;
		goto out;
	}
	if (read_all(f, &data, &data_len, (size_t)INT32_MAX) < 0) {
		gpg_info("cannot read the signed data: %s", strerror(errno));
		status = GPG_EXIT_USAGE;
		goto out;
	}
	if ((msg = tmpfile()) == NULL) {
		gpg_info("cannot create a temporary file: %s", strerror(errno));
		status = GPG_EXIT_USAGE;
		goto out;
	}
	if (p11s_detached_to_opaque(sig, sig_len, data, data_len, msg) < 0 ||
	    (cms = parse_sig(sig, sig_len)) == NULL) {
		/* DETAILS: NODATA 3 = invalid packet (no signature could be read). */
		gpg_status(o, "NODATA", "3");
		status = gpg_fail("the signature");
		goto out;
	}
	if (run_verify(msg, o, o->has_time, o->time, &res) < 0) {
		status = gpg_fail("verifying");
		goto out;
	}
	for (size_t i = 0; i < res->n_warnings; i++) {
		if (strcmp(res->warnings[i].code, "weak-algorithm") == 0) {
			gpg_info("warning: weak-algorithm: %s", res->warnings[i].message);
		}
	}
	if (res->n_signers == 0) {
		gpg_status(o, "ERRSIG", "- 0 0 00 0 9");
		gpg_info("the signature has no signer");
		status = GPG_EXIT_BAD;
	}
	for (size_t i = 0; i < res->n_signers; i++) {
		X509 *cert = signer_cert(cms, i);
		int st;

		if (i > 0) {
			gpg_status(o, "NEWSIG", NULL);
		}
		st = report_signer(o, msg, res, i, cert);
		X509_free(cert);
		if (st != GPG_EXIT_OK && status == GPG_EXIT_OK) {
			status = st;
		}
	}
	for (size_t i = 0; status == GPG_EXIT_OK && i < res->n_reasons; i++) {
		gpg_info("%s", res->reasons[i].message);
		status = GPG_EXIT_BAD;
	}
out:
	if (f != NULL && f != stdin) {
		fclose(f);
	}
	if (msg != NULL) {
		p11s_verify_result_free(res);
		fclose(msg);
	}
	CMS_ContentInfo_free(cms);
	free(sig);
	free(data);
	return status;
}

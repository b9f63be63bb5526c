/*
 * Certificate path validation for `verify` (DESIGN.md decision 6): OpenSSL's X509_STORE builds
 * and checks the RFC 5280 path (policy processing, CRLs of every certificate including delta
 * and indirect CRLs); p11smime adds the S/MIME checks of RFC 8550 (key usage, extended key
 * usage, From/Sender address) itself, because OpenSSL's "smimesign" purpose rejects an EKU
 * holding only anyExtendedKeyUsage and never looks at the sender.
 *
 * Every error is collected: the verify callback records it and lets validation continue, so a
 * report names all the reasons, not only the first.
 */
#define _GNU_SOURCE /* asprintf, vasprintf, memmem */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/revocation.h>

#include "core/error_int.h"
#include "x509/revocation_int.h"
#include "x509/x509_int.h"

static int record_cert_crl(X509_STORE_CTX *ctx, X509_CRL *crl, X509 *x);

/*
 * OpenSSL's own check of a certificate against a CRL (static in libcrypto, reachable only
 * through a context initialised from a store without one of its own), taken once for all
 * threads.
 */
static CRYPTO_ONCE default_cert_crl_once = CRYPTO_ONCE_STATIC_INIT;
static X509_STORE_CTX_cert_crl_fn default_cert_crl;

static void default_cert_crl_init(void)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *tmp = X509_STORE_CTX_new();

	if (st != NULL && tmp != NULL && X509_STORE_CTX_init(tmp, st, NULL, NULL)) {
		default_cert_crl = X509_STORE_CTX_get_cert_crl(tmp);
	}
	X509_STORE_CTX_free(tmp);
	X509_STORE_free(st);
}

/* Largest option file we read (certificate bundles and CRLs). */
#define MAX_FILE_SIZE (256L * 1024 * 1024)

int p11s_reasons__add(p11s_reasons *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	int n;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4;
		p11s_x509_reason *v = realloc(r->v, cap * sizeof(*v));

		if (v == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		r->v = v;
		r->cap = cap;
	}
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	r->v[r->n].code = code;
	r->v[r->n].message = msg;
	r->n++;
	return P11S_OK;
}

int p11s_reasons__has(const p11s_reasons *r, const char *code)
{
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->v[i].code, code) == 0) {
			return 1;
		}
	}
	return 0;
}

void p11s_reasons__clear(p11s_reasons *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free((char *)r->v[i].message);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

char *p11s_x509__name(const X509_NAME *name)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *s = NULL, *p;
	long n;

	if (b == NULL) {
		return NULL;
	}
	/* RFC 2253 order and escaping, UTF-8 kept as is. */
	if (name != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		/* The BIO's data is not NUL-terminated: copy exactly n bytes. */
		n = BIO_get_mem_data(b, &p);
		if ((s = malloc((size_t)n + 1)) != NULL) {
			memcpy(s, p, (size_t)n);
			s[n] = '\0';
		}
	} else {
		s = strdup("");
	}
	BIO_free(b);
	return s;
}

char *p11s_x509__time(const ASN1_TIME *t)
{
	struct tm tm;
	char buf[32];

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
		return NULL;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return strdup(buf);
}

/* Read a whole option file (these are small: certificates and CRLs). */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long size;
	int rc = P11S_OK;

	*out = NULL;
	if (f == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot open %s: %s", path, strerror(errno));
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (size == 0 || size > MAX_FILE_SIZE) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "%s: %s", path, size ? "too large" : "empty");
		goto out;
	}
	if ((buf = malloc((size_t)size + 1)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	buf[size] = '\0';
	*out = buf;
	*len = (size_t)size;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return rc;
}

static int is_pem(const unsigned char *p, size_t len)
{
	return memmem(p, len, "-----BEGIN ", 11) != NULL;
}

/*
 * Load certificates and/or CRLs from one file: PEM (any number of blocks, other text ignored)
 * or DER (one or several concatenated structures).
 */
static int load_file(const char *path, STACK_OF(X509) *certs, STACK_OF(X509_CRL) *crls)
{
	unsigned char *data = NULL;
	size_t len = 0;
	int rc, found = 0;

	if ((rc = read_file(path, &data, &len)) < 0) {
		return rc;
	}
	if (is_pem(data, len)) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;

		for (int i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
			X509_INFO *xi = sk_X509_INFO_value(infos, i);

			if (certs != NULL && xi->x509 != NULL) {
				if (!sk_X509_push(certs, xi->x509)) {
					break;
				}
				xi->x509 = NULL;
				found++;
			}
			if (crls != NULL && xi->crl != NULL) {
				if (!sk_X509_CRL_push(crls, xi->crl)) {
					break;
				}
				xi->crl = NULL;
				found++;
			}
		}
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
		BIO_free(b);
		ERR_clear_error();
		if (found == 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "%s: no %s found in PEM", path,
			    certs ? "certificate" : "CRL");
		}
	} else {
		const unsigned char *p = data, *end = data + len;

		while (p < end) {
			const unsigned char *q = p;

			if (certs != NULL) {
				X509 *x = d2i_X509(NULL, &q, end - p);

				if (x == NULL || !sk_X509_push(certs, x)) {
					X509_free(x);
					rc = p11s_error__ossl(P11S_ERR_MALFORMED,
					    "%s: not a PEM or DER certificate (at byte %ld)", path,
					    (long)(p - data));
					break;
				}
			} else {
				X509_CRL *c = d2i_X509_CRL(NULL, &q, end - p);

				if (c == NULL || !sk_X509_CRL_push(crls, c)) {
					X509_CRL_free(c);
					rc = p11s_error__ossl(P11S_ERR_MALFORMED,
					    "%s: not a PEM or DER CRL (at byte %ld)", path, (long)(p - data));
					break;
				}
			}
			p = q;
		}
	}
	free(data);
	return rc;
}

int p11s_x509__load_certs(STACK_OF(X509) *out, const char *path)
{
	return load_file(path, out, NULL);
}

int p11s_x509__load_crls(STACK_OF(X509_CRL) *out, const char *path)
{
	return load_file(path, NULL, out);
}

void p11s_x509__store_free(p11s_x509_store *s)
{
	if (s == NULL) {
		return;
	}
	X509_STORE_free(s->store);
	sk_X509_pop_free(s->certs, X509_free);
	sk_X509_CRL_pop_free(s->crls, X509_CRL_free);
	free(s);
}

int p11s_x509__store_new(p11s_x509_store **out, const p11s_x509_opts *opts)
{
	p11s_x509_store *s;
	STACK_OF(X509) *anchors = NULL;
	STACK_OF(X509_CRL) *crls = NULL;
	int rc = P11S_OK;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->store = X509_STORE_new()) == NULL ||
	    (s->certs = sk_X509_new_null()) == NULL || (anchors = sk_X509_new_null()) == NULL ||
	    (crls = sk_X509_CRL_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < opts->n_trust_files; i++) {
		if ((rc = p11s_x509__load_certs(anchors, opts->trust_files[i])) < 0) {
			goto out;
		}
	}
	for (int i = 0; i < sk_X509_num(anchors); i++) {
		/* A duplicate anchor is harmless: X509_STORE_add_cert ignores it. */
		if (!X509_STORE_add_cert(s->store, sk_X509_value(anchors, i))) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add a trust anchor");
			goto out;
		}
	}
	s->n_anchors = (size_t)sk_X509_num(anchors);
	for (size_t i = 0; i < opts->n_cert_files; i++) {
		if ((rc = p11s_x509__load_certs(s->certs, opts->cert_files[i])) < 0) {
			goto out;
		}
	}
	for (size_t i = 0; i < opts->n_crl_files; i++) {
		if ((rc = p11s_x509__load_crls(crls, opts->crl_files[i])) < 0) {
			goto out;
		}
	}
	for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
		if (!X509_STORE_add_crl(s->store, sk_X509_CRL_value(crls, i))) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add a CRL");
			goto out;
		}
	}
	/*
	 * Which CRL decided each certificate goes into the evidence report (docs/evidence.md).
	 * OpenSSL picks it (issuer, scope, newest, delta) and then checks the certificate against
	 * it; we wrap that check.
	 */
	if (!CRYPTO_THREAD_run_once(&default_cert_crl_once, default_cert_crl_init) ||
	    default_cert_crl == NULL) {
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "cannot set up path validation");
		goto out;
	}
	X509_STORE_set_cert_crl(s->store, record_cert_crl);
	/* CLI.md: --crl turns on revocation checking of every certificate in the path. */
	s->crl_check = opts->n_crl_files > 0;
	s->crls = crls;
	crls = NULL;
	s->has_time = opts->has_time;
	s->time = opts->time;
	*out = s;
	s = NULL;
out:
	sk_X509_pop_free(anchors, X509_free);
	sk_X509_CRL_pop_free(crls, X509_CRL_free);
	p11s_x509__store_free(s);
	ERR_clear_error();
	return rc;
}

const char *p11s_x509__reason_code(int err)
{
	switch (err) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
	case X509_V_ERR_CERT_REJECTED:
	case X509_V_ERR_CERT_CHAIN_TOO_LONG:
		return "untrusted";
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
		return "expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
	case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
		return "not-yet-valid";
	case X509_V_ERR_CERT_REVOKED:
		return "revoked";
	case X509_V_ERR_UNABLE_TO_GET_CRL:
		return "crl-missing";
	case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
		return "crl-issuer-unknown";
	case X509_V_ERR_DIFFERENT_CRL_SCOPE:
		return "crl-scope";
	case X509_V_ERR_CRL_HAS_EXPIRED:
		return "crl-expired";
	case X509_V_ERR_CRL_NOT_YET_VALID:
		return "crl-not-yet-valid";
	case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
	case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
		return "crl-invalid";
	case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
		return "crl-path";
	case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
	case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return "bad-chain-signature";
	case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
		return "bad-crl-signature";
	case X509_V_ERR_INVALID_CA:
	case X509_V_ERR_INVALID_NON_CA:
	case X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED:
		return "invalid-ca";
	case X509_V_ERR_PATH_LENGTH_EXCEEDED:
	case X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED:
		return "path-length";
	case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
		return "ca-key-usage";
	case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
		return "crl-key-usage";
	case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
		return "key-usage";
	case X509_V_ERR_INVALID_PURPOSE:
		return "invalid-purpose";
	case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
	case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
		return "unknown-critical-extension";
	case X509_V_ERR_INVALID_EXTENSION:
	case X509_V_ERR_UNNESTED_RESOURCE:
		return "invalid-extension";
	case X509_V_ERR_UNSUPPORTED_EXTENSION_FEATURE:
		return "unsupported-extension";
	case X509_V_ERR_INVALID_POLICY_EXTENSION:
	case X509_V_ERR_NO_EXPLICIT_POLICY:
		return "policy";
	case X509_V_ERR_PERMITTED_VIOLATION:
	case X509_V_ERR_EXCLUDED_VIOLATION:
	case X509_V_ERR_SUBTREE_MINMAX:
	case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
	case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
	case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
		return "name-constraints";
	default:
		return "path-invalid";
	}
}

/* Per depth of the path: what revocation checking found (for the evidence report). */
typedef struct rev_depth {
	int revoked;              /* X509_V_ERR_CERT_REVOKED at this depth */
	const char *problem;      /* first CRL-related reason code at this depth */
	char *issuer, *this_update, *next_update, *number; /* the CRL found */
	const X509_CRL *crl;      /* that CRL (which source it came from: the report) */
	char *revoked_later;      /* at a proven time: the revocationDate after it (RFC 3339) */
} rev_depth;

#define MAX_REV_DEPTH 32

/* What the verify callback collects. */
typedef struct collect {
	p11s_reasons *reasons;
	int seen[64][2];  /* (error, depth) pairs already recorded */
	size_t n_seen;
	int failed;       /* a reason could not be stored (no memory) */
	rev_depth rev[MAX_REV_DEPTH];
	int defer_crl;    /* explicit revocation policy: CRL problems decided later (live_decide) */
	STACK_OF(X509_CRL) *msg_crls, *fetched; /* where a deciding CRL came from */
	int proven;       /* validating at a time a time-stamp proved (p11s_x509__validate_at) */
	int64_t at;       /* ... that time */
} collect;

static int app_index(void)
{
	/* Index 0 is the application data slot (X509_STORE_CTX_set_app_data). */
	return 0;
}

static void rev_depth_clear(rev_depth *d)
{
	free(d->issuer);
	free(d->this_update);
	free(d->next_update);
	free(d->number);
	free(d->revoked_later);
	memset(d, 0, sizeof(*d));
}

/*
 * OpenSSL's check of the certificate at the current depth against the CRL it chose (RFC 5280
 * §6.3.3: right issuer and scope, the newest), recording that CRL. With a delta CRL this runs
 * for the delta first and then for the complete CRL, which is what we report. Problems with
 * the CRL itself come to verify_cb at the same depth.
 */
static int record_cert_crl(X509_STORE_CTX *ctx, X509_CRL *crl, X509 *x)
{
	collect *c = X509_STORE_CTX_get_ex_data(ctx, app_index());
	int depth = X509_STORE_CTX_get_error_depth(ctx);
	const ASN1_TIME *next;
	ASN1_INTEGER *num;
	rev_depth *d;

	/*
	 * Contexts without our data (OpenSSL's own, for the path of an indirect CRL issuer)
	 * just get the default check.
	 */
	if (c == NULL || crl == NULL || depth < 0 || depth >= MAX_REV_DEPTH) {
		return default_cert_crl(ctx, crl, x);
	}
	d = &c->rev[depth];
	free(d->issuer);
	free(d->this_update);
	free(d->next_update);
	free(d->number);
	d->issuer = d->this_update = d->next_update = d->number = NULL;
	d->issuer = p11s_x509__name(X509_CRL_get_issuer(crl));
	d->crl = crl;
	d->this_update = p11s_x509__time(X509_CRL_get0_lastUpdate(crl));
	if ((next = X509_CRL_get0_nextUpdate(crl)) != NULL) {
		d->next_update = p11s_x509__time(next);
	}
	if ((num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL)) != NULL) {
		BIGNUM *bn = ASN1_INTEGER_to_BN(num, NULL);
		char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

		/* BN_bn2hex is OPENSSL_malloc'ed: keep our own copy so that free() is right. */
		if (hex != NULL && (d->number = strdup(hex)) == NULL) {
			c->failed = 1;
		}
		OPENSSL_free(hex);
		BN_free(bn);
		ASN1_INTEGER_free(num);
	}
	if (d->issuer == NULL) {
		c->failed = 1;
	}
	ERR_clear_error();
	return default_cert_crl(ctx, crl, x);
}

/* Reason codes that say revocation could not be decided (rather than "revoked"). */
static int is_crl_problem(int err)
{
	switch (err) {
	case X509_V_ERR_UNABLE_TO_GET_CRL:
	case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
	case X509_V_ERR_DIFFERENT_CRL_SCOPE:
	case X509_V_ERR_CRL_HAS_EXPIRED:
	case X509_V_ERR_CRL_NOT_YET_VALID:
	case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
	case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
	case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
	case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
	case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
	case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
		return 1;
	default:
		return 0;
	}
}

/*
 * At a time a verified RFC 3161 time-stamp proved (CAdES-T, RFC 5126 §5.11.1): revocation
 * information issued after that time still tells whether the certificate was revoked
 * before it, so a CRL whose thisUpdate is after the proven time (but not in the future) is
 * current enough, and an entry whose revocationDate (RFC 5280 §5.1.2.6) is after the proven
 * time is not a revocation at that time, unless an earlier invalidityDate (§5.3.2: when the
 * key is known or suspected to have been compromised) reaches back before it. Non-zero to
 * accept.
 */
static int proven_time_ok(const X509_CRL *crl, int err, X509 *cert, int64_t at, char **later)
{
	X509_REVOKED *rv = NULL;
	time_t now = time(NULL) + 300, t = (time_t)at;

	if (crl == NULL) {
		return 0;
	}
	if (err == X509_V_ERR_CRL_NOT_YET_VALID) {
		return X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &now) <= 0;
	}
	if (err == X509_V_ERR_CERT_REVOKED && cert != NULL &&
	    /* Not const in OpenSSL 3.0's prototype; it only looks the serial up. */
	    X509_CRL_get0_by_cert((X509_CRL *)crl, &rv, cert) == 1 && rv != NULL) {
		ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(rv, NID_invalidity_date, NULL,
		    NULL);
		int after = X509_cmp_time(X509_REVOKED_get0_revocationDate(rv), &t) > 0 &&
		    (inv == NULL || X509_cmp_time(inv, &t) > 0);

		ASN1_GENERALIZEDTIME_free(inv);
		ERR_clear_error();
		if (after && *later == NULL) {
			*later = p11s_x509__time(X509_REVOKED_get0_revocationDate(rv));
		}
		return after;
	}
	return 0;
}

/*
 * Record each error and continue (return 1), so that every reason is reported. The verdict
 * comes from the recorded list, never from X509_verify_cert()'s return value alone.
 */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
	collect *c = X509_STORE_CTX_get_ex_data(ctx, app_index());
	int err = X509_STORE_CTX_get_error(ctx);
	int depth = X509_STORE_CTX_get_error_depth(ctx);
	X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
	char *subj;

	if (ok) {
		return ok;
	}
	if (c == NULL) {
		/*
		 * OpenSSL's own context for the path of an indirect CRL's issuer (RFC 5280 §6.3.3
		 * (f)). When that CRL also covers its own issuer, OpenSSL refuses to validate the
		 * issuer's CRL path a second time, nested (X509 error 54), although the path is
		 * the one this very context is validating: the CRL's signature is still checked
		 * with the issuer's key and the issuer's entry in it still decides (PKITS 4.14.30).
		 * Only that case is let through; the outer context reports what this one fails.
		 */
		return err == X509_V_ERR_CRL_PATH_VALIDATION_ERROR && cert != NULL &&
		    X509_STORE_CTX_get0_current_issuer(ctx) == cert;
	}
	/*
	 * The CRL being checked: OpenSSL's current one for its own checks, the one our
	 * record_cert_crl() saw for "revoked" (OpenSSL 3.0 has no current CRL set by then).
	 */
	if (c->proven && depth >= 0 && depth < MAX_REV_DEPTH &&
	    proven_time_ok(X509_STORE_CTX_get0_current_crl(ctx) != NULL
	                       ? X509_STORE_CTX_get0_current_crl(ctx)
	                       : c->rev[depth].crl,
	        err, cert, c->at, &c->rev[depth].revoked_later)) {
		return 1;
	}
	if (depth >= 0 && depth < MAX_REV_DEPTH) {
		if (err == X509_V_ERR_CERT_REVOKED) {
			c->rev[depth].revoked = 1;
		} else if (is_crl_problem(err) && c->rev[depth].problem == NULL) {
			c->rev[depth].problem = p11s_x509__reason_code(err);
		}
	}
	/*
	 * With an explicit policy, a CRL that cannot be used is not yet a failure: OCSP may have
	 * answered for that certificate (live_decide() reports what no source decided).
	 */
	if (c->defer_crl && is_crl_problem(err)) {
		return 1;
	}
	for (size_t i = 0; i < c->n_seen; i++) {
		if (c->seen[i][0] == err && c->seen[i][1] == depth) {
			return 1;
		}
	}
	if (c->n_seen < sizeof(c->seen) / sizeof(c->seen[0])) {
		c->seen[c->n_seen][0] = err;
		c->seen[c->n_seen][1] = depth;
		c->n_seen++;
	}
	subj = cert ? p11s_x509__name(X509_get_subject_name(cert)) : NULL;
	if (p11s_reasons__add(c->reasons, p11s_x509__reason_code(err),
	        "%s (X509 error %d at depth %d%s%s)", X509_verify_cert_error_string(err), err, depth,
	        subj && *subj ? ": " : "", subj ? subj : "") < 0) {
		c->failed = 1;
	}
	free(subj);
	return 1;
}

void p11s_x509__revocation_free(p11s_x509_revocation *rev, size_t n)
{
	for (size_t i = 0; rev != NULL && i < n; i++) {
		free(rev[i].subject);
		free(rev[i].crl_issuer);
		free(rev[i].crl_this_update);
		free(rev[i].crl_next_update);
		free(rev[i].crl_number);
		free(rev[i].ocsp_responder);
		free(rev[i].ocsp_produced_at);
		free(rev[i].ocsp_this_update);
		free(rev[i].ocsp_next_update);
		free(rev[i].revocation_time);
	}
	free(rev);
}

/* The evidence entries from what the lookup and the callback saw at each depth. */
static int revocation_report(collect *c, STACK_OF(X509) *chain,
    p11s_x509_revocation **out, size_t *n_out)
{
	int n = chain != NULL ? sk_X509_num(chain) : 0;
	p11s_x509_revocation *v;

	if (n == 0) {
		return P11S_OK;
	}
	if ((v = calloc((size_t)n, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		rev_depth *d = i < MAX_REV_DEPTH ? &c->rev[i] : NULL;

		if ((v[i].subject = p11s_x509__name(X509_get_subject_name(sk_X509_value(chain, i))))
		    == NULL) {
			p11s_x509__revocation_free(v, (size_t)n);
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		if (d != NULL && d->revoked) {
			v[i].status = "revoked";
		} else if (d != NULL && d->problem != NULL) {
			v[i].status = "unknown";
			v[i].problem = d->problem;
		} else if (d != NULL && d->issuer != NULL) {
			v[i].status = "good";
			/* Good at the proven time, revoked after it: the report says when. */
			v[i].revocation_time = d->revoked_later;
			d->revoked_later = NULL;
		} else {
			/* No CRL, no error: OpenSSL did not check it (no --crl; the anchor). */
			v[i].status = "not-checked";
		}
		if (d != NULL && d->issuer != NULL) {
			/* Which source the deciding CRL came from (issue 19: the report says). */
			v[i].source = c->fetched != NULL && sk_X509_CRL_find(c->fetched, (X509_CRL *)d->crl) >= 0
			    ? "fetched-crl"
			    : c->msg_crls != NULL && sk_X509_CRL_find(c->msg_crls, (X509_CRL *)d->crl) >= 0
			    ? "message-crl" : "file-crl";
			v[i].crl_issuer = d->issuer;
			v[i].crl_this_update = d->this_update;
			v[i].crl_next_update = d->next_update;
			v[i].crl_number = d->number;
			d->issuer = d->this_update = d->next_update = d->number = NULL;
		}
	}
	*out = v;
	*n_out = (size_t)n;
	return P11S_OK;
}

/*
 * ---- Live revocation (issue 19, revocation.h) ----
 *
 * With an explicit policy, validation runs in three steps: live_prepare() builds the path
 * once without revocation checking, fetching missing issuers from caIssuers (RFC 5280
 * §4.2.2.1) while the path stops at a certificate whose issuer is unknown, then asks OCSP for
 * the certificates the policy covers and fetches the CDP CRLs of those OCSP did not decide;
 * X509_verify_cert() then validates with every CRL (file, message, fetched), CRL problems
 * deferred; live_decide() gives each covered certificate its status and source, and fails
 * what no source decided ("revocation-unknown") unless the policy soft-fails.
 */

/* Stop only on a missing issuer: everything else is for the real validation to report. */
static int prepass_cb(int ok, X509_STORE_CTX *ctx)
{
	int err = X509_STORE_CTX_get_error(ctx);

	if (ok) {
		return 1;
	}
	return err != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT &&
	    err != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
}

/* The path as far as it can be built from the anchors and `untrusted`; *missing: stopped. */
static int prepass_chain(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    int64_t at, STACK_OF(X509) **chain, int *missing)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	int ret;

	*chain = NULL;
	*missing = 0;
	if (ctx == NULL || !X509_STORE_CTX_init(ctx, s->store, leaf, untrusted)) {
		X509_STORE_CTX_free(ctx);
		return p11s_error__ossl(P11S_ERR_NOMEM, "cannot set up path validation");
	}
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	X509_VERIFY_PARAM_set_time(param, (time_t)at);
	X509_STORE_CTX_set_verify_cb(ctx, prepass_cb);
	ret = X509_verify_cert(ctx);
	if (ret <= 0) {
		int err = X509_STORE_CTX_get_error(ctx);

		*missing = err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
		    err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;
	}
	*chain = X509_STORE_CTX_get1_chain(ctx);
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	if (*chain == NULL && (*chain = sk_X509_new_null()) != NULL) {
		if (!X509_up_ref(leaf) || !sk_X509_push(*chain, leaf)) {
			sk_X509_pop_free(*chain, X509_free);
			*chain = NULL;
		}
	}
	return *chain != NULL ? P11S_OK : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

/* Does the policy ask OCSP about depth `d`? (Never the anchor: the last of a built path.) */
static int ocsp_covers(const p11s_x509_rev_policy *pol, int d)
{
	return (pol->methods & P11S_REV_OCSP) != 0 && (d == 0 || pol->ocsp_whole_path);
}

#define MAX_FETCHED_ISSUERS 4

/*
 * A stapled response (RFC 5940) that decides `x` issued by `issuer` at `at`: 1 with `res`
 * filled, 0 if none does. No nonce: a stapled response was not asked for by us (RFC 6960
 * §4.4.1 makes the nonce optional); signature, authorisation and freshness are checked.
 */
static int stapled_decides(const p11s_x509_stapled *st, X509 *x, X509 *issuer, int64_t at,
    p11s_ocsp_result *res)
{
	/* The stapler chose the CertID's hash (RFC 6960 §4.1.1): SHA-1 as most do, or SHA-256. */
	const EVP_MD *mds[2] = { EVP_sha1(), EVP_sha256() };
	time_t expires;

	for (size_t m = 0; st != NULL && m < 2; m++) {
		OCSP_CERTID *id = OCSP_cert_to_id(mds[m], x, issuer);

		for (size_t i = 0; id != NULL && i < st->n; i++) {
			p11s_ocsp__result_clear(res);
			if (p11s_ocsp__check_response(st->der[i], st->len[i], NULL, id, issuer, at, res,
			        &expires) == P11S_OK &&
			    res->decided) {
				res->stapled = 1;
				/* Named as the responder in the report and the reasons. */
				res->responder = strdup("(stapled in the message)");
				OCSP_CERTID_free(id);
				return 1;
			}
		}
		OCSP_CERTID_free(id);
	}
	p11s_ocsp__result_clear(res);
	ERR_clear_error();
	return 0;
}

void p11s_x509__stapled_clear(p11s_x509_stapled *st)
{
	for (size_t i = 0; st != NULL && i < st->n; i++) {
		free(st->der[i]);
	}
	if (st != NULL) {
		free(st->der);
		free(st->len);
		memset(st, 0, sizeof(*st));
	}
}

static int live_prepare(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    int64_t at, const p11s_x509_stapled *stapled, STACK_OF(X509) **out_untrusted,
    STACK_OF(X509) **out_chain, STACK_OF(X509_CRL) **out_fetched, p11s_ocsp_result *ocsp)
{
	const p11s_x509_rev_policy *pol = s->rev;
	STACK_OF(X509) *u = sk_X509_new_null(), *chain = NULL;
	STACK_OF(X509_CRL) *fetched = sk_X509_CRL_new_null();
	int rc = P11S_OK, missing = 0, n;

	if (u == NULL || fetched == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
		X509 *x = sk_X509_value(untrusted, i);

		if (!X509_up_ref(x) || !sk_X509_push(u, x)) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int round = 0;; round++) {
		sk_X509_pop_free(chain, X509_free);
		if ((rc = prepass_chain(s, leaf, u, at, &chain, &missing)) < 0) {
			goto out;
		}
		/* caIssuers of the certificate whose issuer is missing, a few times at most. */
		if (!missing || !pol->fetch || round >= MAX_FETCHED_ISSUERS) {
			break;
		}
		if ((n = p11s_aia__fetch_issuers(sk_X509_value(chain, sk_X509_num(chain) - 1), pol, u))
		    <= 0) {
			rc = n;
			break;
		}
	}
	if (rc < 0) {
		goto out;
	}
	n = sk_X509_num(chain);
	for (int d = 0; d + 1 < n && d < MAX_REV_DEPTH; d++) {
		X509 *x = sk_X509_value(chain, d);

		/* A response stapled in the message answers first (issue 19; RFC 5940). */
		if (ocsp_covers(pol, d) &&
		    !stapled_decides(stapled, x, sk_X509_value(chain, d + 1), at, &ocsp[d]) &&
		    (rc = p11s_ocsp__check(x, sk_X509_value(chain, d + 1), pol, at, &ocsp[d])) < 0) {
			goto out;
		}
		/* CRLs as the fallback of OCSP (ocsp,crl), or the source (crl). */
		if ((pol->methods & P11S_REV_CRL) != 0 && !ocsp[d].decided && pol->fetch &&
		    (rc = p11s_crl__fetch(x, pol, fetched)) < 0) {
			goto out;
		}
	}
	*out_untrusted = u;
	*out_chain = chain;
	*out_fetched = fetched;
	u = chain = NULL;
	fetched = NULL;
out:
	sk_X509_pop_free(u, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_CRL_pop_free(fetched, X509_CRL_free);
	return rc;
}

static int dup_to(char **dst, const char *src)
{
	free(*dst);
	*dst = NULL;
	if (src != NULL && (*dst = strdup(src)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	return P11S_OK;
}

static int live_decide(const p11s_x509_rev_policy *pol, collect *c, STACK_OF(X509) *chain,
    STACK_OF(X509) *pre_chain, p11s_ocsp_result *ocsp, p11s_x509_revocation *rev,
    size_t n_rev)
{
	int n = chain != NULL ? sk_X509_num(chain) : 0, rc = P11S_OK;

	for (int d = 0; d + 1 < n && d < MAX_REV_DEPTH && rc >= 0; d++) {
		X509 *x = sk_X509_value(chain, d);
		rev_depth *rd = &c->rev[d];
		p11s_ocsp_result *o = &ocsp[d];
		int same = pre_chain != NULL && d < sk_X509_num(pre_chain) &&
		    X509_cmp(sk_X509_value(pre_chain, d), x) == 0;
		int need = (pol->methods & P11S_REV_CRL) != 0 || ocsp_covers(pol, d);
		int crl_decided = rd->revoked || (rd->crl != NULL && rd->problem == NULL &&
		                                     (pol->methods & P11S_REV_CRL) != 0);
		p11s_x509_revocation *v = (size_t)d < n_rev ? &rev[d] : NULL;
		char *subj;

		if (!need) {
			continue;
		}
		if ((subj = p11s_x509__name(X509_get_subject_name(x))) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		if (same && o->decided) {
			if (o->revoked && !rd->revoked) {
				rc = p11s_reasons__add(c->reasons, "revoked", "certificate revoked at %s "
				    "(OCSP %s%s%s, depth %d: %s)", o->revocation_time ? o->revocation_time : "?",
				    o->responder, o->why[0] ? ", reason " : "", o->why, d, subj);
			}
			if (v != NULL && !rd->revoked) {
				/* A CRL that lists it outranks OCSP's good; otherwise OCSP decided. */
				v->status = o->revoked ? "revoked" : "good";
				v->problem = NULL;
				v->source = o->stapled ? "stapled-ocsp" : "ocsp";
			}
		} else if (!crl_decided) {
			const char *crl_why = rd->problem != NULL ? rd->problem
			    : (pol->methods & P11S_REV_CRL) != 0 ? "crl-missing" : NULL;

			if (pol->soft_fail) {
				if (v != NULL) {
					v->soft_failed = 1;
				}
			} else {
				rc = p11s_reasons__add(c->reasons, "revocation-unknown",
				    "revocation status unknown (depth %d: %s)%s%s%s%s", d, subj,
				    ocsp_covers(pol, d) ? "; OCSP: " : "",
				    ocsp_covers(pol, d) ? (o->why[0] ? o->why : "no answer") : "",
				    crl_why ? "; CRL: " : "", crl_why ? crl_why : "");
			}
			if (v != NULL) {
				v->status = "unknown";
				v->problem = "revocation-unknown";
				v->source = NULL;
			}
		}
		if (v != NULL && same && o->responder != NULL && rc >= 0) {
			if ((rc = dup_to(&v->ocsp_responder, o->responder)) >= 0 &&
			    (rc = dup_to(&v->ocsp_produced_at, o->produced_at)) >= 0 &&
			    (rc = dup_to(&v->ocsp_this_update, o->this_update)) >= 0 &&
			    (rc = dup_to(&v->ocsp_next_update, o->next_update)) >= 0) {
				rc = dup_to(&v->revocation_time, o->revocation_time);
			}
		}
		free(subj);
	}
	return rc;
}

int p11s_x509__validate(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    STACK_OF(X509_CRL) *msg_crls, p11s_reasons *reasons, STACK_OF(X509) **chain)
{
	return p11s_x509__validate_rev(s, leaf, untrusted, msg_crls, reasons, chain, NULL, NULL);
}

int p11s_x509__validate_rev(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    STACK_OF(X509_CRL) *msg_crls, p11s_reasons *reasons, STACK_OF(X509) **chain,
    p11s_x509_revocation **rev, size_t *n_rev)
{
	return p11s_x509__validate_at(s, -1, leaf, untrusted, msg_crls, NULL, reasons, chain, rev,
	    n_rev);
}

int p11s_x509__validate_at(const p11s_x509_store *s, int64_t proven, X509 *leaf,
    STACK_OF(X509) *untrusted, STACK_OF(X509_CRL) *msg_crls,
    const p11s_x509_stapled *stapled, p11s_reasons *reasons, STACK_OF(X509) **chain,
    p11s_x509_revocation **rev, size_t *n_rev)
{
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509_CRL) *crls = NULL;
	ASN1_OBJECT *any = NULL;
	X509_VERIFY_PARAM *param;
	collect c = { .reasons = reasons };
	unsigned long flags;
	size_t before = reasons->n;
	int rc = P11S_OK, ret;
	/* Explicit revocation policy (issue 19): see live_prepare() and live_decide(). */
	const p11s_x509_rev_policy *pol = s->rev;
	STACK_OF(X509) *live_untrusted = NULL, *pre_chain = NULL;
	STACK_OF(X509_CRL) *fetched = NULL;
	p11s_ocsp_result ocsp[MAX_REV_DEPTH];
	int64_t at = proven >= 0 ? proven : s->has_time ? s->time : (int64_t)time(NULL);

	memset(ocsp, 0, sizeof(ocsp));
	c.proven = proven >= 0;
	c.at = at;

	*chain = NULL;
	if (rev != NULL) {
		*rev = NULL;
		*n_rev = 0;
	}
	if (pol != NULL) {
		if ((rc = live_prepare(s, leaf, untrusted, at, stapled, &live_untrusted, &pre_chain,
		         &fetched, ocsp)) < 0) {
			goto out;
		}
		untrusted = live_untrusted;
		c.defer_crl = 1;
		c.fetched = fetched;
	}
	c.msg_crls = msg_crls;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, s->store, leaf, untrusted)) {
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "cannot set up path validation");
		goto out;
	}
	param = X509_STORE_CTX_get0_param(ctx);
	/*
	 * RFC 5280 §6.1.1 default inputs: policy processing on, initial-policy-set anyPolicy,
	 * initial-explicit-policy, -policy-mapping-inhibit and -any-policy-inhibit all false (the
	 * OpenSSL defaults once X509_V_FLAG_POLICY_CHECK is set). No purpose: RFC 8550 checks are
	 * ours (OpenSSL's smimesign rejects anyExtendedKeyUsage). X509_V_FLAG_X509_STRICT is not
	 * set: it rejects paths that RFC 5280 and PKITS call valid (docs/verify.md).
	 * PARTIAL_CHAIN: a --trust certificate is an anchor even when not self-signed (RFC 5280
	 * §6.1.1 (d): the anchor is any trusted public key and name).
	 */
	flags = X509_V_FLAG_POLICY_CHECK | X509_V_FLAG_PARTIAL_CHAIN;
	if (pol != NULL ? (pol->methods & P11S_REV_CRL) != 0 : s->crl_check) {
		/* Every certificate of the path, indirect CRLs (§5.2.5), delta CRLs (§5.2.4). */
		flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL |
		    X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS;
	}
	X509_VERIFY_PARAM_set_flags(param, flags);
	/*
	 * initial-policy-set = {anyPolicy} stated explicitly: OpenSSL 3.0 with an empty user
	 * policy set reports "no explicit policy" for valid policy paths (PKITS 4.8.6, 4.8.11,
	 * 4.10.x), although it never requires one.
	 */
	if ((any = OBJ_nid2obj(NID_any_policy)) == NULL || (any = OBJ_dup(any)) == NULL ||
	    !X509_VERIFY_PARAM_add0_policy(param, any)) {
		ASN1_OBJECT_free(any);
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "cannot set up policy processing");
		goto out;
	}
	/*
	 * The store finds CRLs by the certificate's issuer name only; an indirect CRL (RFC 5280
	 * §5.2.5, cRLIssuer) has another issuer and is found only in the context's own list.
	 */
	if ((crls = sk_X509_CRL_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_CRL_num(s->crls); i++) {
		if (!sk_X509_CRL_push(crls, sk_X509_CRL_value(s->crls, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; msg_crls != NULL && i < sk_X509_CRL_num(msg_crls); i++) {
		if (!sk_X509_CRL_push(crls, sk_X509_CRL_value(msg_crls, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; fetched != NULL && i < sk_X509_CRL_num(fetched); i++) {
		if (!sk_X509_CRL_push(crls, sk_X509_CRL_value(fetched, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	X509_STORE_CTX_set0_crls(ctx, crls);
	if (proven >= 0 || s->has_time) {
		X509_VERIFY_PARAM_set_time(param, (time_t)at);
	}
	X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
	X509_STORE_CTX_set_ex_data(ctx, app_index(), &c);
	ret = X509_verify_cert(ctx);
	if (c.failed) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (ret <= 0 && reasons->n == before) {
		/* A failure that did not pass through the callback (internal or memory). */
		int err = X509_STORE_CTX_get_error(ctx);

		if ((rc = p11s_reasons__add(reasons, p11s_x509__reason_code(err),
		         "%s (X509 error %d)", X509_verify_cert_error_string(err), err)) < 0) {
			goto out;
		}
	}
	*chain = X509_STORE_CTX_get1_chain(ctx);
	/* Inherited DSA parameters must be the path's own (dsa_params.c). */
	if (*chain != NULL && !p11s_x509__dsa_path_ok(*chain) &&
	    (rc = p11s_reasons__add(reasons, "bad-signature",
	         "DSA parameters inherited from a certificate that is not the issuer in the path "
	         "(RFC 5280 §6.1.4 (f))")) < 0) {
		sk_X509_pop_free(*chain, X509_free);
		*chain = NULL;
		goto out;
	}
	if (rev != NULL && (rc = revocation_report(&c, *chain, rev, n_rev)) < 0) {
		sk_X509_pop_free(*chain, X509_free);
		*chain = NULL;
	}
	if (rc >= 0 && pol != NULL && (rc = live_decide(pol, &c, *chain, pre_chain, ocsp,
	                                   rev != NULL ? *rev : NULL, rev != NULL ? *n_rev : 0)) < 0) {
		sk_X509_pop_free(*chain, X509_free);
		*chain = NULL;
		if (rev != NULL) {
			p11s_x509__revocation_free(*rev, *n_rev);
			*rev = NULL;
			*n_rev = 0;
		}
	}
out:
	for (size_t i = 0; i < MAX_REV_DEPTH; i++) {
		rev_depth_clear(&c.rev[i]);
		p11s_ocsp__result_clear(&ocsp[i]);
	}
	sk_X509_pop_free(live_untrusted, X509_free);
	sk_X509_pop_free(pre_chain, X509_free);
	sk_X509_CRL_pop_free(fetched, X509_CRL_free);
	X509_STORE_CTX_free(ctx);
	sk_X509_CRL_free(crls); /* borrowed elements */
	ERR_clear_error();
	return rc;
}

int p11s_x509__check_signer_usage(X509 *cert, p11s_reasons *reasons)
{
	uint32_t flags = X509_get_extension_flags(cert); /* also caches the extensions */
	int rc;

	/* RFC 8550 §4.4.2: absent keyUsage means every usage; present needs one of the two. */
	if ((flags & EXFLAG_KUSAGE) != 0 &&
	    (X509_get_key_usage(cert) & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0) {
		if ((rc = p11s_reasons__add(reasons, "key-usage",
		         "signer certificate keyUsage has neither digitalSignature nor "
		         "nonRepudiation (RFC 8550 section 4.4.2)")) < 0) {
			return rc;
		}
	}
	/* §4.4.4: a present extKeyUsage must allow emailProtection or anyExtendedKeyUsage. */
	if ((flags & EXFLAG_XKUSAGE) != 0 &&
	    (X509_get_extended_key_usage(cert) & (XKU_SMIME | XKU_ANYEKU)) == 0) {
		if ((rc = p11s_reasons__add(reasons, "ext-key-usage",
		         "signer certificate extendedKeyUsage has neither emailProtection nor "
		         "anyExtendedKeyUsage (RFC 8550 section 4.4.4)")) < 0) {
			return rc;
		}
	}
	if ((flags & EXFLAG_INVALID) != 0) {
		if ((rc = p11s_reasons__add(reasons, "invalid-extension",
		         "signer certificate has an invalid or duplicated extension")) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

void p11s_x509__strv_free(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i]);
	}
	free(v);
}

int p11s_x509__emails(X509 *cert, char ***out, size_t *n)
{
	/* X509_get1_email: pkcs-9 emailAddress of the subject and SAN rfc822Name, deduplicated. */
	STACK_OF(OPENSSL_STRING) *sk = X509_get1_email(cert);
	char **v = NULL;
	size_t k = 0;
	int rc = P11S_OK;

	*out = NULL;
	*n = 0;
	if (sk == NULL || sk_OPENSSL_STRING_num(sk) == 0) {
		X509_email_free(sk);
		ERR_clear_error();
		return P11S_OK;
	}
	if ((v = calloc((size_t)sk_OPENSSL_STRING_num(sk), sizeof(*v))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_OPENSSL_STRING_num(sk); i++) {
		if ((v[k++] = strdup(sk_OPENSSL_STRING_value(sk, i))) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	*out = v;
	*n = k;
	v = NULL;
out:
	p11s_x509__strv_free(v, k);
	X509_email_free(sk);
	return rc;
}

int p11s_x509__addr_equal(const char *a, const char *b)
{
	const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
	size_t la, lb;

	if (at_a == NULL || at_b == NULL) {
		return at_a == at_b && strcasecmp(a, b) == 0;
	}
	la = (size_t)(at_a - a);
	lb = (size_t)(at_b - b);
	/* RFC 8550 §3: domain case-insensitive (MUST); local part case-insensitive (SHOULD). */
	return la == lb && strncasecmp(a, b, la) == 0 && strcasecmp(at_a + 1, at_b + 1) == 0 &&
	    la > 0 && at_a[1] != '\0';
}

static int in_list(const char *addr, char **v, size_t n)
{
	for (size_t i = 0; addr != NULL && i < n; i++) {
		if (p11s_x509__addr_equal(addr, v[i])) {
			return 1;
		}
	}
	return 0;
}

int p11s_x509__check_sender(X509 *cert, const p11s_x509_sender *who, p11s_reasons *reasons)
{
	char **emails = NULL, *list = NULL;
	size_t n = 0, len = 0;
	int rc;

	if ((rc = p11s_x509__emails(cert, &emails, &n)) < 0 || n == 0) {
		/* RFC 8550 §3: a certificate without addresses is not a mismatch. */
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		len += strlen(emails[i]) + 2;
	}
	if ((list = calloc(1, len + 1)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		strcat(list, i ? ", " : "");
		strcat(list, emails[i]);
	}
	/* STANDARDS.md §2/§12 I1-I3: a missing, repeated or multi-mailbox From is a failure. */
	if (who->n_from_fields == 0) {
		rc = p11s_reasons__add(reasons, "address-mismatch",
		    "the message has no From field; the certificate is for %s", list);
	} else if (who->n_from_fields > 1) {
		rc = p11s_reasons__add(reasons, "address-mismatch",
		    "the message has %zu From fields; the certificate is for %s", who->n_from_fields,
		    list);
	} else if (who->from_has_group || who->n_from != 1) {
		rc = p11s_reasons__add(reasons, "address-mismatch",
		    "the From field holds %zu mailboxes%s, not one; the certificate is for %s",
		    who->n_from, who->from_has_group ? " or a group" : "", list);
	} else if (!in_list(who->from[0], emails, n) &&
	    !(who->n_sender_fields == 1 && in_list(who->sender, emails, n))) {
		if (who->sender != NULL) {
			rc = p11s_reasons__add(reasons, "address-mismatch",
			    "neither From <%s> nor Sender <%s> is an address of the signer certificate "
			    "(%s)", who->from[0], who->sender, list);
		} else {
			rc = p11s_reasons__add(reasons, "address-mismatch",
			    "From <%s> is not an address of the signer certificate (%s)", who->from[0],
			    list);
		}
	}
out:
	free(list);
	p11s_x509__strv_free(emails, n);
	return rc < 0 ? rc : P11S_OK;
}

/*
 * Between path validation (src/x509/, which knows no CMS and no public verify types) and the
 * verifiers that publish results (src/cms/verify.c, src/ess/receipt.c): the public verify
 * options turned into validation options, and public views of validation's reasons and
 * revocation entries (docs/architecture.md).
 */
#ifndef P11S_VERDICT_H
#define P11S_VERDICT_H

#include <p11smime/verify.h>

#include "x509/x509_int.h"

/* The validation options of the public verify options (files and time; no copies made). */
void p11s_verdict__x509_opts(const p11s_verify_opts *in, p11s_x509_opts *out);

/*
 * A public view of `r`: `*out` (malloc'd, NULL when `r` is empty) points at `r`'s strings, so
 * `r` must outlive it; free the view with free().
 */
int p11s_verdict__reasons(const p11s_reasons *r, p11s_verify_reason **out);

/* The same for `n` revocation entries: a view of their strings, freed with free(). */
int p11s_verdict__revocation(const p11s_x509_revocation *rev, size_t n,
    p11s_verify_revocation **out);

/* What the weak-algorithm policy (weak.c, docs/verify.md "Weak algorithms") looks at. */
typedef struct p11s_weak_in {
	int digest_nid;          /* the SignerInfo's digestAlgorithm */
	int sigalg_nid;          /* its signatureAlgorithm (NID_undef: none to check) */
	const X509 *signer;      /* the signer certificate, or NULL */
	STACK_OF(X509) *chain;   /* the path as built, signer first (may be NULL) */
} p11s_weak_in;

/*
 * Apply the policy: SHA-1/MD5 (and MD2/MD4) digests or signature hashes, RSA/DSA keys under
 * 2048 bits and EC keys under 224 bits, in the signature, the signer's key and every
 * certificate of the path below the anchor. Each finding becomes one "weak-algorithm" entry in
 * `reasons`, or in `warnings` when `allow_weak` (then prefixed with `who` when not NULL).
 */
int p11s_verdict__weak(const p11s_weak_in *in, int allow_weak, const char *who,
    p11s_reasons *reasons, p11s_reasons *warnings);

/* What the date check (dates.c, docs/verify.md "Dates") compares. */
typedef struct p11s_dates_in {
	int has_date;                  /* the outer Date field, parsed */
	int64_t date;
	const char *date_raw;
	int has_protected_date;        /* the Date inside the signed entity (RFC 9788) */
	int64_t protected_date;
	const char *protected_date_raw;
	const char *signing_time;      /* the signer's signingTime, RFC 3339, or NULL */
	const char *timestamp;         /* a verified time-stamp's genTime, RFC 3339, or NULL */
} p11s_dates_in;

typedef struct p11s_dates_out {
	int has_date_skew, has_timestamp_skew;
	int64_t date_skew;             /* outer Date - signingTime, seconds */
	int64_t timestamp_skew;        /* outer Date - genTime */
} p11s_dates_out;

/*
 * Each Date (outer, protected) farther than `tolerance` seconds from signingTime or genTime
 * adds one "date-mismatch" to `reasons`, naming both times and the difference. A negative
 * tolerance checks nothing (the differences are still computed).
 */
int p11s_verdict__dates(const p11s_dates_in *in, int64_t tolerance, p11s_dates_out *out,
    p11s_reasons *reasons);

/* A certificate's key type ("RSA", "EC", "DSA", "Ed25519", ...) and size in bits. */
void p11s_verdict__key(const X509 *cert, const char **type, int *bits);

#endif

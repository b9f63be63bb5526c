/*
 * Live revocation sources for path validation (revocation.c): OCSP (RFC 6960), CRLs from
 * crlDistributionPoints and issuer certificates from caIssuers (RFC 5280 §4.2.1.13,
 * §4.2.2.1), all fetched through fetch.c and cached per process.
 */
#ifndef P11S_X509_REVOCATION_INT_H
#define P11S_X509_REVOCATION_INT_H

#include <stdint.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "x509/fetch.h"
#include "x509/x509_int.h"

/* The fetch limits and host lists of a policy. */
void p11s_rev__fetch_policy(const p11s_x509_rev_policy *pol, p11s_fetch_policy *out);

/* What OCSP said about one certificate. */
typedef struct p11s_ocsp_result {
	int decided;        /* 1: `revoked` is the answer; 0: no answer (see `why`) */
	int revoked;
	char *responder;    /* the URL asked (malloc'd), or NULL */
	char *produced_at, *this_update, *next_update, *revocation_time; /* RFC 3339, malloc'd */
	int cached;         /* the response came from the cache */
	int stapled;        /* the response came from the message (RFC 5940) */
	unsigned char *der; /* when decided: the OCSPResponse as received (malloc'd), to staple */
	size_t der_len;
	char why[300];      /* when not decided: one line */
} p11s_ocsp_result;

void p11s_ocsp__result_clear(p11s_ocsp_result *r);

/*
 * Ask OCSP about `cert` issued by `issuer` (RFC 6960): the responder of `pol->ocsp_url` or the
 * certificate's AIA id-ad-ocsp; a request with a nonce; the response signed by `issuer` or by
 * a delegated responder that `issuer` certified with id-kp-OCSPSigning (§4.2.2.2); the nonce
 * echoed if the responder sends one; thisUpdate/nextUpdate honoured at `at` (seconds since the
 * epoch) with a clock-skew allowance; a revocationTime after `at` is not a revocation at `at`.
 * Responses are cached per process until their nextUpdate.
 * @return P11S_OK (look at `res->decided`) or P11S_ERR_NOMEM.
 */
int p11s_ocsp__check(X509 *cert, X509 *issuer, const p11s_x509_rev_policy *pol, int64_t at,
    p11s_ocsp_result *res);

/*
 * The CRLs of `cert`'s crlDistributionPoints (fullName http/https URIs only), fetched or from
 * the per-process cache (refreshed once past their nextUpdate), pushed onto `out` (each with
 * its own reference). A CDP that cannot be fetched is skipped; path validation then reports
 * the missing CRL. @return P11S_OK or P11S_ERR_NOMEM.
 */
int p11s_crl__fetch(X509 *cert, const p11s_x509_rev_policy *pol, STACK_OF(X509_CRL) *out);

/*
 * The certificates at `cert`'s caIssuers URIs (DER certificate, or certs-only PKCS#7 in DER,
 * RFC 5280 §4.2.2.1), pushed onto `out`. @return the number added, or P11S_ERR_NOMEM.
 */
int p11s_aia__fetch_issuers(X509 *cert, const p11s_x509_rev_policy *pol, STACK_OF(X509) *out);

/*
 * The parsers of what a responder or a server sent (each a fuzz target: fuzz_revocation.c).
 *
 * p11s_ocsp__check_response: one DER OCSPResponse for `id` of a certificate issued by
 * `issuer`, at validation time `at`. `req` is NULL for a cached response (its nonce was
 * checked when it arrived). Sets res->decided on an acceptable answer (else res->why), and
 * `*expires` the time until which it may be cached (0: do not cache).
 * @return P11S_OK or P11S_ERR_NOMEM.
 */
int p11s_ocsp__check_response(const unsigned char *der, size_t len, OCSP_REQUEST *req,
    OCSP_CERTID *id, X509 *issuer, int64_t at, p11s_ocsp_result *res, time_t *expires);

/* A CRL in DER or PEM, or NULL. */
X509_CRL *p11s_crl__parse(const unsigned char *der, size_t len);

/*
 * The certificates of a caIssuers answer (a DER certificate, or certs-only PKCS#7 in DER),
 * pushed onto `out`. @return the number added (0: not such an answer), or P11S_ERR_NOMEM.
 */
int p11s_aia__parse_issuers(const unsigned char *der, size_t len, STACK_OF(X509) *out);

#endif

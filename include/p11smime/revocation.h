/*
 * p11smime — live revocation checking for verify: OCSP (RFC 6960), CRLs fetched from
 * crlDistributionPoints, missing intermediates from caIssuers (RFC 5280 §4.2.2.1), with a
 * policy for what happens when no source answers (docs/verify.md, "Revocation").
 */
#ifndef P11SMIME_REVOCATION_H
#define P11SMIME_REVOCATION_H

#include <stdio.h>

#include "common.h"
#include "verify.h"

/** Version of p11s_revocation_opts understood by this library. */
#define P11S_REVOCATION_OPTS_VERSION 1

/** Revocation sources a policy may use (bits of p11s_revocation_opts.methods). */
#define P11S_REV_CRL 1u  /**< CRLs: --crl files, CRLs in the SignedData, fetched from CDPs */
#define P11S_REV_OCSP 2u /**< OCSP: the responder of authorityInfoAccess or `ocsp_url` */

/**
 * An explicit revocation policy. With one, every certificate the policy covers must get a
 * status from a source: OCSP (tried first when asked for), then CRLs; a certificate no source
 * decided is a failure ("revocation-unknown", "revocation status unknown") unless
 * `soft_fail`, which accepts it with a warning. Strings and arrays are borrowed for the call.
 */
typedef struct p11s_revocation_opts {
	unsigned int version;      /**< P11S_REVOCATION_OPTS_VERSION */
	unsigned int methods;      /**< P11S_REV_* bits; 0: no revocation checking at all */
	int fetch;                 /**< non-zero: network access (OCSP, CDP, caIssuers) allowed */
	int soft_fail;             /**< non-zero: an undecided status is a warning, not a failure */
	int ocsp_whole_path;       /**< non-zero: OCSP for every certificate below the anchor;
	                                zero: the signer certificate only (CRLs always cover the
	                                whole path) */
	const char *ocsp_url;      /**< responder to ask instead of the certificate's AIA, or NULL */
	const char *const *fetch_allow; /**< host patterns ("host", ".domain"); none: any host */
	size_t n_fetch_allow;
	const char *const *fetch_deny;  /**< host patterns never contacted (deny wins) */
	size_t n_fetch_deny;
	long fetch_timeout;        /**< seconds per transfer; 0: 10 */
} p11s_revocation_opts;

#define P11S_REVOCATION_OPTS_INIT \
	{ P11S_REVOCATION_OPTS_VERSION, 0, 0, 0, 0, NULL, NULL, 0, NULL, 0, 0 }

/**
 * Parse "none", "crl", "ocsp", "ocsp,crl" (or "crl,ocsp") into P11S_REV_* bits.
 * @return P11S_OK or P11S_ERR_USAGE.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_revocation_parse_methods(const char *s, unsigned int *out);

/**
 * p11s_verify_message() with an explicit revocation policy (`rev` NULL: exactly
 * p11s_verify_message(), where --crl files alone turn CRL checking on). Each revocation entry
 * of the result then says which source decided (`source`) and when.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_message_rev(p11s_verify_result **out, FILE *in,
    const p11s_verify_opts *opts, const p11s_revocation_opts *rev);

/**
 * Fetch again, under `rev`'s fetch limits, the CRLs that verification fetched from
 * crlDistributionPoints in this process and whose nextUpdate is at most `before` seconds away
 * (or past); a newer CRL (later thisUpdate) replaces the cached one. A long-running verifier
 * (the gateway) calls this periodically, so that a message never waits for a CRL download
 * and a CRL the CA reissued is used before the old one expires. Nothing is fetched unless
 * `rev->fetch`. Thread-safe.
 * @return the number of CRLs replaced (>= 0), or P11S_ERR_INVALID_ARG.
 */
P11S_EXTERN int p11s_revocation_refresh_crls(const p11s_revocation_opts *rev, long before);

#endif

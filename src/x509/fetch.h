/*
 * Safe HTTP fetching for revocation data and missing certificates (issue 19): OCSP requests
 * (RFC 6960 App. A.1), CRLs from crlDistributionPoints and certificates from caIssuers
 * (RFC 5280 §4.2.1.13, §4.2.2.1). A certificate names the URLs, so an attacker does: only
 * http and https are ever opened, with time and size limits, no redirects, and the host must
 * pass the configured allow/deny lists.
 */
#ifndef P11S_X509_FETCH_H
#define P11S_X509_FETCH_H

#include <stddef.h>

/* Limits and host lists of one fetch. */
typedef struct p11s_fetch_policy {
	const char *const *allow;  /* host patterns ("host" or ".domain"); empty: any host */
	size_t n_allow;
	const char *const *deny;   /* host patterns that are never contacted (deny wins) */
	size_t n_deny;
	long timeout_s;            /* whole transfer; 0: 10 s */
	size_t max_bytes;          /* response body limit; 0: the caller's default */
} p11s_fetch_policy;

/*
 * Non-zero if `url` may be fetched under `pol`: scheme http or https (case-insensitive), a
 * host, and the host allowed. `why` (may be NULL) receives a short reason when not.
 */
int p11s_fetch__url_allowed(const char *url, const p11s_fetch_policy *pol, char *why,
    size_t why_len);

/*
 * GET `url` (body NULL) or POST `body` with `content_type`. The response body goes to `*out`
 * (malloc'd). P11S_ERR_IO with a one-line message on refusal, network failure, timeout,
 * a body over the limit, or an HTTP status other than 200.
 */
int p11s_fetch__http(const char *url, const p11s_fetch_policy *pol, const unsigned char *body,
    size_t body_len, const char *content_type, size_t max_bytes, unsigned char **out,
    size_t *out_len);

#endif

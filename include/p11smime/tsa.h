/* p11smime — RFC 3161 time-stamping client. */
#ifndef P11SMIME_TSA_H
#define P11SMIME_TSA_H

#include "common.h"
#include "error.h"

/**
 * Ask the time-stamping authority at `url` (http or https, RFC 3161 §3.4: POST
 * application/timestamp-query) for a timestamp over `data`: the request carries the SHA-256
 * messageImprint of `data`, a random 64-bit nonce and certReq TRUE. The response must have
 * status granted (or grantedWithMods), its token must be a SignedData over a TSTInfo whose
 * messageImprint and nonce are those of the request, and the token's signature must verify
 * with the TSA certificate it carries (the TSA's trust is for the verifier to establish).
 *
 * @param out  the TimeStampToken (DER ContentInfo); free with p11s_buf_free().
 * @return P11S_OK; P11S_ERR_IO (HTTP failure, status not 200); P11S_ERR_VERIFY (rejected,
 *         wrong imprint or nonce, bad token signature); P11S_ERR_MALFORMED (not a
 *         TimeStampResp); P11S_ERR_NOMEM; P11S_ERR_CRYPTO. Thread-safe.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_tsa_timestamp(const char *url, const unsigned char *data,
    size_t len, p11s_buf **out);

#endif

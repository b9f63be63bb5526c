/* RFC 3161 timestamp tokens inside the library (verify side). */
#ifndef P11S_TSA_INT_H
#define P11S_TSA_INT_H

#include <openssl/x509.h>

#include "x509/x509_int.h"

/*
 * Check a signature-time-stamp token (RFC 5126 §5.11.1, RFC 3161 §2.4.2) over `data` (the
 * signature value octets of the SignerInfo): the TSA's signature on the TSTInfo, its ESS
 * signing certificate binding, its certificate path to an anchor of `store` at genTime with
 * the critical extendedKeyUsage id-kp-timeStamping only (RFC 3161 §2.3), and the
 * messageImprint = hash of `data` with the token's hash algorithm.
 * Problems are added to `r` ("timestamp-invalid", "timestamp-untrusted",
 * "timestamp-imprint-mismatch"); `*gen_time` (RFC 3339) and `*tsa` (TSA subject) are set when
 * the token can be read (malloc'd; the caller frees them).
 * @return P11S_OK (a verdict was reached), P11S_ERR_NOMEM.
 */
int p11s_tsa__verify(const unsigned char *token, size_t token_len, const unsigned char *data,
    size_t data_len, const p11s_x509_store *store, STACK_OF(X509) *untrusted, char **gen_time,
    char **tsa, p11s_reasons *r);



#include <openssl/cms.h>

/*
 * RFC 5126 §5.11.1 / RFC 3161 App. A: ask `url` for a timestamp over the signature value
 * octets of `si` and add it as the unsigned attribute id-aa-signatureTimeStampToken.
 * @return as p11s_tsa_timestamp(); P11S_ERR_CRYPTO if the attribute cannot be added.
 */
int p11s_tsa__stamp_signer(CMS_SignerInfo *si, const char *url);
#endif

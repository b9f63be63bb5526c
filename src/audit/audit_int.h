/* Audit records for the library's own signing operations. */
#ifndef P11S_AUDIT_INT_H
#define P11S_AUDIT_INT_H

#include <openssl/x509.h>

#include <p11smime/audit.h>

/*
 * Append the record of one signing operation to `path`: key URI (query dropped), SHA-256 of
 * `cert`, the messageDigest and the SHA-256 of the signature value read from `sigder` (the
 * DER SignedData produced; NULL when signing failed), and the result: "ok" when `status` is
 * P11S_OK, else "error: " + `why`. @return as p11s_audit_append().
 */
int p11s_audit__signing(const char *path, const char *operation, const char *key_uri, X509 *cert,
    const unsigned char *sigder, size_t sigder_len, int status, const char *why);

#endif

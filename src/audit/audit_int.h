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


/* The statement a checkpoint signs (audit.h); its length, or -1 if `buf` is too small. */
int p11s_audit__statement(char *buf, size_t len, unsigned long long covers, const char *head,
    int final);

/*
 * Is a checkpoint due? Periodic (`final` 0): `every` records since the last checkpoint;
 * final: any record since, or the log ends at a periodic one. Sets the record to cover (the
 * last line: seq and hash). @return 1 due, 0 not, or an error (P11S_ERR_IO, _VERIFY: the
 * last record is bad, _NOMEM).
 */
int p11s_audit__checkpoint_due(const char *path, unsigned int every, int final,
    unsigned long long *covers, char head[65]);

/* Append a checkpoint record whose signature (DER SignedData) is `der`. As p11s_audit_append. */
int p11s_audit__append_checkpoint(const char *path, unsigned long long covers, const char *head,
    int final, const char *key_uri, const unsigned char cert_sha256[32],
    const unsigned char *der, size_t der_len);

#endif

/* p11smime — tamper-evident audit log of signing operations (hash-chained JSON lines). */
#ifndef P11SMIME_AUDIT_H
#define P11SMIME_AUDIT_H

#include <stddef.h>

#include "common.h"
#include "error.h"

/**
 * One audit record. Strings and bytes are borrowed. The key is named by its pkcs11: URI; any
 * query part (pin-source, pin-value, module-path) is dropped before writing, so a PIN never
 * reaches the log.
 */
typedef struct p11s_audit_record {
	const char *operation;              /**< "sign", "receipt", ... */
	const char *key_uri;                /**< may be NULL */
	const unsigned char *cert_sha256;   /**< 32 bytes: SHA-256 of the DER certificate, or NULL */
	const char *content_digest_alg;     /**< "sha256", ... or NULL */
	const unsigned char *content_digest;/**< the signed content's digest (messageDigest) */
	size_t content_digest_len;
	const unsigned char *signature_sha256; /**< 32 bytes: SHA-256 of the signature value */
	const char *result;                 /**< "ok" or "error: ..." */
} p11s_audit_record;

/**
 * Append a record to the log `path` (created 0600 if missing). Each line is one JSON object
 * {"seq","time","operation","key","cert_sha256","content_digest","signature_sha256","result",
 * "prev","hash"}: `prev` is the `hash` of the previous line (64 zeros for the first), `hash`
 * the SHA-256 of the line up to and excluding `,"hash":`. The file is locked exclusively
 * (flock) while the last record is read and the new one written, and fsync'ed before the
 * lock is released, so concurrent writers (processes or threads) keep the chain intact.
 * @return P11S_OK; P11S_ERR_IO; P11S_ERR_VERIFY (the existing last line is not a record);
 *         P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_audit_append(const char *path, const p11s_audit_record *rec);

/** The outcome of p11s_audit_verify(). */
typedef struct p11s_audit_status {
	size_t n_records;     /**< records read and found good */
	size_t bad_record;    /**< 1-based line number of the first bad record; 0 if none */
	char why[256];        /**< why that record is bad */
	char head[65];        /**< hash of the last good record (hex): keep it elsewhere to
	                           detect the removal of trailing records later */
} p11s_audit_status;

/**
 * Check the hash chain of an audit log: every line must be a well-formed record ending in a
 * newline, its `seq` one more than the previous, its `prev` the previous `hash`, and its
 * `hash` the SHA-256 of its own text. `expect_head` (64 hex, or NULL) is a head hash saved
 * earlier: it must then be the hash of some record (removed trailing records are detected).
 * @return P11S_OK (chain intact), P11S_ERR_VERIFY (see `st->bad_record`, `st->why`),
 *         P11S_ERR_IO (cannot read the file).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_audit_verify(const char *path, const char *expect_head,
    p11s_audit_status *st);

#endif

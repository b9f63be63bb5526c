/* p11smime — tamper-evident audit log of signing operations (hash-chained JSON lines). */
#ifndef P11SMIME_AUDIT_H
#define P11SMIME_AUDIT_H

#include <stddef.h>

#include "common.h"
#include "error.h"
#include "token.h"

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

/*
 * Signed checkpoints (audit log format 2, docs/evidence.md "Checkpoints"). Every record of a
 * format 2 log carries "format":2; a checkpoint is a record {"operation":"checkpoint",
 * "format":2,"covers":SEQ,"head":HASH,"final":BOOL,"key":URI,"cert_sha256":HEX,
 * "signature":BASE64} chained like any other, whose signature is a detached CMS SignedData by
 * the token key over the statement "p11smime-audit-checkpoint\nformat: 2\ncovers: SEQ\n
 * head: HASH\nfinal: yes|no\n" (with an RFC 3161 signature time-stamp when a TSA is set).
 */

/** Default number of records between two periodic checkpoints (p11s_sign_opts). */
#define P11S_AUDIT_CHECKPOINT_EVERY 100

/**
 * Append a final checkpoint (the end of a run: `sign`, a batch, the gateway's shutdown):
 * the hash of the last record signed with `key` (time-stamped by `tsa_url` if not NULL).
 * Nothing is written when the log is empty or already ends at a final checkpoint.
 * @return P11S_OK; P11S_ERR_IO; P11S_ERR_VERIFY (the log's last record is bad: run verify);
 *         token errors of the signature; P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_audit_checkpoint(p11s_key *key, const char *path,
    const char *tsa_url);

#define P11S_AUDIT_VERIFY_OPTS_VERSION 1

/** Options of p11s_audit_verify_ex(). Initialise with P11S_AUDIT_VERIFY_OPTS_INIT. */
typedef struct p11s_audit_verify_opts {
	unsigned int version;          /**< P11S_AUDIT_VERIFY_OPTS_VERSION */
	const char *expect_head;       /**< as p11s_audit_verify(), or NULL */
	const char *signer_cert_file;  /**< pin: every checkpoint must be signed by this
	                                    certificate (PEM or DER); NULL: any, reported */
	int allow_unanchored;          /**< non-zero: records after the last checkpoint (a log
	                                    still being written) are reported, not a failure */
	int require_checkpoint;        /**< non-zero: a log without any checkpoint (format 1)
	                                    fails instead of passing with a warning */
} p11s_audit_verify_opts;

#define P11S_AUDIT_VERIFY_OPTS_INIT { P11S_AUDIT_VERIFY_OPTS_VERSION, NULL, NULL, 0, 0 }

/** The outcome of p11s_audit_verify_ex(). */
typedef struct p11s_audit_report {
	size_t n_records;             /**< good records read (checkpoints included) */
	size_t bad_record;            /**< 1-based line of the first problem; 0 if none */
	char why[256];
	char head[65];                /**< hash of the last good record */
	int format;                   /**< 1: no checkpoint and no format 2 record; 2 */
	size_t n_checkpoints;         /**< valid checkpoints */
	unsigned long long anchored_seq; /**< the record the last checkpoint covers (0: none) */
	size_t n_unanchored;          /**< records not covered by a checkpoint (the tail) */
	size_t last_checkpoint_record;/**< line of the last checkpoint, 0 if none */
	int last_final;               /**< the last checkpoint is the final one of a run */
	char last_checkpoint_time[32];/**< its "time" field (the writer's clock) */
	char last_signer[256];        /**< its signer's subject (OpenSSL one-line form) */
	char last_signer_sha256[65];  /**< SHA-256 of its signer's certificate */
	char last_timestamp[32];      /**< genTime of its RFC 3161 time-stamp, "" if none */
	int last_timestamp_valid;     /**< the time-stamp's signature and imprint verified (the
	                                   TSA's certificate is not validated here) */
	int signer_changed;           /**< checkpoints by more than one certificate */
} p11s_audit_report;

/**
 * p11s_audit_verify() and the checkpoints: each checkpoint's head must be the hash of the
 * record it covers and its signature must verify (and be by opts->signer_cert_file when
 * given); a format 2 log must end at a valid final checkpoint covering every record, else
 * the unanchored records fail (unless opts->allow_unanchored). A format 1 log passes with
 * `format` = 1 (the caller warns) unless opts->require_checkpoint.
 * @return P11S_OK, P11S_ERR_VERIFY (rep->bad_record, rep->why), P11S_ERR_IO, P11S_ERR_USAGE
 *         (bad expect_head), P11S_ERR_MALFORMED (signer_cert_file not a certificate).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_audit_verify_ex(const char *path,
    const p11s_audit_verify_opts *opts, p11s_audit_report *rep);

#endif

/* p11smime — verifying S/MIME signed messages (RFC 8551, RFC 5652, RFC 5280, RFC 8550). */
#ifndef P11SMIME_VERIFY_H
#define P11SMIME_VERIFY_H

#include <stdint.h>
#include <stdio.h>

#include "common.h"

/**
 * Version of p11s_verify_opts understood by this library: 2 adds `allow_weak` and
 * `date_tolerance`; version 1 structures are still accepted (as both 0).
 */
#define P11S_VERIFY_OPTS_VERSION 2

/**
 * Options of p11s_verify_message(). Initialise with P11S_VERIFY_OPTS_INIT, then set fields:
 * `p11s_verify_opts o = P11S_VERIFY_OPTS_INIT; o.trust_files = files; o.n_trust_files = 1;`.
 * The arrays and strings are borrowed for the duration of the call only.
 */
typedef struct p11s_verify_opts {
	unsigned int version;            /**< P11S_VERIFY_OPTS_VERSION */
	const char *const *trust_files;  /**< trust anchors: PEM or DER files, several per file */
	size_t n_trust_files;
	const char *const *cert_files;   /**< untrusted intermediates (PEM or DER) */
	size_t n_cert_files;
	const char *const *crl_files;    /**< CRLs (PEM or DER); any CRL turns on revocation
	                                      checking of every certificate in the path */
	size_t n_crl_files;
	int has_time;                    /**< non-zero: validate at `time`, else now */
	int64_t time;                    /**< seconds since the epoch (UTC) */
	int no_sender_check;             /**< non-zero: skip the RFC 8550 §3 From/Sender check
	                                      (for callers that check it themselves, e.g. a
	                                      mail reader handing over only the signed part);
	                                      reported as warning "sender-not-checked" */
	int allow_weak;                  /**< (version 2) non-zero: signatures with SHA-1 or MD5,
	                                      keys under the minimum size and paths with such
	                                      certificate signatures are not failed for that; each
	                                      finding is a warning "weak-algorithm" instead of a
	                                      reason (docs/verify.md, "Weak algorithms"): for
	                                      archives of old mail */
	int64_t date_tolerance;          /**< (version 2) the date check (docs/verify.md,
	                                      "Dates"): a Date header farther than this many
	                                      seconds from signingTime or the time-stamp's genTime
	                                      fails the signer ("date-mismatch"); 0: the default,
	                                      P11S_VERIFY_DATE_TOLERANCE; negative: not checked */
} p11s_verify_opts;

/** The default date tolerance: one hour (docs/verify.md, "Dates"). */
#define P11S_VERIFY_DATE_TOLERANCE 3600

#define P11S_VERIFY_OPTS_INIT { P11S_VERIFY_OPTS_VERSION, NULL, 0, NULL, 0, NULL, 0, 0, 0, 0, 0, 0 }

/**
 * One reason why something is not valid (or one warning). `code` is a stable token meant for
 * programs (see docs/verify.md for the list: "untrusted", "expired", "revoked",
 * "content-altered", "address-mismatch", ...); `message` is a human-readable line that may
 * include OpenSSL's text. Both are owned by the result.
 */
typedef struct p11s_verify_reason {
	const char *code;
	const char *message;
} p11s_verify_reason;

/**
 * The revocation status used for one certificate of a signer's path (RFC 5280 §6.3), for the
 * evidence report (docs/evidence.md). All strings are owned by the result.
 */
typedef struct p11s_verify_revocation {
	const char *subject;      /**< the certificate (same order as p11s_verify_signer.chain) */
	const char *status;       /**< "good": a CRL covering it was found and does not list it;
	                               "revoked": listed; "unknown": revocation was checked but
	                               failed (no CRL, expired CRL, bad CRL signature: see
	                               `problem`); "not-checked": no CRL was given (--crl), or
	                               the certificate is the trust anchor */
	const char *problem;      /**< for "unknown": the reason code ("crl-missing",
	                               "crl-expired", ...), else NULL */
	const char *crl_issuer;   /**< the CRL that decided it: issuer (RFC 2253), or NULL */
	const char *crl_this_update; /**< its thisUpdate, RFC 3339 UTC, or NULL */
	const char *crl_next_update; /**< its nextUpdate, RFC 3339 UTC, or NULL if absent */
	const char *crl_number;   /**< its cRLNumber (RFC 5280 §5.2.3) in hex, or NULL */
	/* Live revocation (revocation.h); appended. */
	const char *source;       /**< what decided: "file-crl" (--crl), "message-crl" (in the
	                               SignedData), "fetched-crl" (crlDistributionPoints), "ocsp",
	                               "stapled-ocsp" (RFC 5940, in the SignedData), or NULL
	                               (nothing decided) */
	const char *ocsp_responder;   /**< the responder URL asked, or NULL */
	const char *ocsp_produced_at; /**< the OCSP response's producedAt, RFC 3339 UTC, or NULL */
	const char *ocsp_this_update; /**< its thisUpdate, or NULL */
	const char *ocsp_next_update; /**< its nextUpdate, or NULL (absent or no OCSP) */
	const char *revocation_time;  /**< for "revoked" by OCSP: revocationTime; for "good" at
	                                   a time a time-stamp proved: the later revocationDate of
	                                   a CRL entry (docs/verify.md "Validation time"); else
	                                   NULL */
	int soft_failed;          /**< status "unknown" accepted by --soft-fail (a warning) */
} p11s_verify_revocation;

/** What is known about one SignerInfo (RFC 5652 §5.3). All strings are owned by the result. */
typedef struct p11s_verify_signer {
	int valid;                       /**< signature, content, path and RFC 8550 checks passed */
	const char *subject;             /**< signer certificate subject (RFC 2253), NULL if the
	                                      certificate was not found */
	const char *issuer;              /**< issuer from the certificate or the SignerIdentifier */
	const char *serial;              /**< serial number in hex, or NULL (SKI identifier) */
	const char *const *emails;       /**< addresses in the certificate (RFC 8550 §3) */
	size_t n_emails;
	const char *signing_time;        /**< signingTime attribute, RFC 3339 UTC, NULL if absent;
	                                      claimed by the signer, not a trusted time */
	const char *digest;              /**< digest algorithm ("sha256") */
	const char *signature_algorithm; /**< signature algorithm ("rsaEncryption", "RSASSA-PSS",
	                                      "ecdsa-with-SHA256", ...) */
	const char *const *chain;        /**< subjects from the signer up to the trust anchor as
	                                      far as the path could be built */
	size_t n_chain;
	const p11s_verify_reason *reasons; /**< every reason this signer is not valid */
	size_t n_reasons;
	/* Evidence (docs/evidence.md); appended, version 1 results carry them too. */
	const char *security_label;      /**< ESSSecurityLabel (RFC 2634 §3.2) as
	                                      "POLICY-OID:classification(n)", or NULL */
	const char *const *equivalent_labels; /**< equivalentLabels (§3.4), same form */
	size_t n_equivalent_labels;
	const char *receipt_request;     /**< receiptRequest (§2.7): "from=all|first-tier|list;
	                                      to=ADDR,...; id=HEX", or NULL */
	const char *timestamp;           /**< genTime of the signature timestamp (RFC 3161, RFC
	                                      5126 §5.11.1), RFC 3339 UTC; NULL if none */
	const char *timestamp_authority; /**< subject of the TSA certificate, or NULL */
	int timestamp_valid;             /**< the timestamp token verified: TSA signature, chain
	                                      with timeStamping, imprint = hash of the signature */
	int signing_certificate;         /**< ESS binding of the signer certificate (RFC 5035):
	                                      2 signingCertificateV2 matches, 1 signingCertificate
	                                      (v1) matches, 0 absent, -1 does not match */
	int non_repudiation;             /**< the signer certificate's keyUsage asserts
	                                      nonRepudiation (contentCommitment) */
	const p11s_verify_revocation *revocation; /**< per certificate of the path as far as it
	                                               was built (the order of `chain`) */
	size_t n_revocation;
	/* Algorithms (docs/verify.md, "Weak algorithms"); appended. */
	const char *key_type;            /**< signer key: "RSA", "EC", "DSA", "Ed25519", ...;
	                                      NULL if the certificate was not found */
	int key_bits;                    /**< its size in bits (RSA modulus, EC curve order) */
	/* Dates (docs/verify.md, "Dates"); appended. */
	int has_date_skew;               /**< the message has a Date and the signer a signingTime */
	int64_t date_skew;               /**< Date - signingTime, seconds */
	int has_timestamp_skew;          /**< the message has a Date and a verified time-stamp */
	int64_t timestamp_skew;          /**< Date - genTime, seconds */
	/* Validation time (docs/verify.md, "Validation time"); appended. */
	const char *validation_time;     /**< when the path (and revocation) was validated, RFC
	                                      3339 UTC; NULL if the certificate was not found */
	const char *validation_time_source; /**< "timestamp": the genTime of the verified
	                                      signature time-stamp (CAdES-T: a certificate that
	                                      expired or was revoked after it does not fail);
	                                      "given": p11s_verify_opts.time; "now" */
} p11s_verify_signer;

/** A header field (RFC 9788 header protection). */
typedef struct p11s_header_field {
	const char *name;
	const char *value;  /**< unfolded; in header_differs the protected value, NULL when the
	                         field is only on the outer message */
	const char *outer;  /**< header_differs only: the outer value, NULL when the field is only
	                         protected; NULL in protected_headers */
	int exposed;        /**< header_differs only: hp="cipher" and an HP-Outer field names this
	                         outer value: the sender's own obscuring (Subject "[...]"), not a
	                         change in transit (no warning) */
} p11s_header_field;

/**
 * The verdict on a message. `valid` is non-zero only when the whole message (the root entity)
 * is signed, there is at least one signer and every signer is valid.
 */
typedef struct p11s_verify_result {
	int valid;
	const char *structure;   /**< "multipart/signed", "opaque", or NULL if the root entity is
	                              not signed */
	const char *signed_part; /**< "whole-message"; "nested-part" when only a part inside the
	                              message is signed (then the message is NOT valid, STANDARDS
	                              §12 M1-M4); "none" */
	const char *signed_part_path; /**< for "nested-part": MIME part number ("2", "1.2") and
	                                   type, else NULL */
	const p11s_verify_signer *signers;
	size_t n_signers;
	const p11s_verify_reason *reasons;  /**< message-level reasons ("no-signers", ...) */
	size_t n_reasons;
	const p11s_verify_reason *warnings; /**< not failures ("micalg-mismatch", ...) */
	size_t n_warnings;
	struct p11s_verify_priv *priv;      /**< internal; do not touch */
	/* Dates; appended. */
	const char *date;            /**< the Date header field as received, NULL if none */
	const char *protected_date;  /**< a Date field inside the signed entity (RFC 9788 header
	                                  protection), NULL if none */
	/* RFC 9788 header protection (docs/verify.md "Header protection"); appended. */
	const char *hp;              /**< the hp parameter of the signed entity's Content-Type
	                                  ("clear", "cipher"); NULL: no header protection, and
	                                  the fields below are empty */
	const p11s_header_field *protected_headers; /**< the signed entity's header fields but
	                                  MIME-Version and Content-*, in order */
	size_t n_protected_headers;
	const p11s_header_field *header_differs; /**< From, To, Cc, Subject, Date, Reply-To,
	                                  Sender, Message-ID, In-Reply-To, References: where the
	                                  outer value differs from the protected one (or only
	                                  one of them exists) */
	size_t n_header_differs;
} p11s_verify_result;

/**
 * Verify a signed message: multipart/signed (RFC 8551 §3.5.3) or opaque signed-data
 * (application/pkcs7-mime; smime-type=signed-data, or a .p7m file, §3.9). Each signer's
 * signature and content digest are checked, its certificate path is validated to one of the
 * trust anchors (RFC 5280, with CRLs when given), and key usage, extended key usage and the
 * From/Sender address are checked (RFC 8550). Every reason is collected.
 *
 * @param out   the result; free with p11s_verify_result_free(). Set only on P11S_OK.
 * @param in    the message; must be seekable and stay open (and unchanged) until the result
 *              is freed, because p11s_verify_write_content() reads the signed part from it.
 *              A multipart/signed message is streamed, not loaded into memory.
 * @param opts  options, or NULL for the defaults (no trust anchors: nothing is trusted).
 * @return P11S_OK when a verdict was reached (valid or not: see `(*out)->valid`);
 *         P11S_ERR_MALFORMED for input that is not a MIME message, bad base64 or DER, a
 *         missing boundary; P11S_ERR_IO for unreadable option files; P11S_ERR_NOMEM,
 *         P11S_ERR_CRYPTO. Thread-safe (no shared state).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_message(p11s_verify_result **out, FILE *in,
    const p11s_verify_opts *opts);

/**
 * Write the verified inner entity: the signed part 1 of a multipart/signed message in its
 * canonical (CRLF) form, or the eContent of an opaque signed-data. Refuses unless the result
 * is valid, and re-checks that the bytes written are the bytes that were verified.
 * @return P11S_OK, P11S_ERR_VERIFY (result not valid, or the input changed since), P11S_ERR_IO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_write_content(const p11s_verify_result *r,
    FILE *out);

/**
 * Write the signed entity like p11s_verify_write_content(), but whatever the verdict: for a
 * reader that goes on peeling the layers inside a signature that failed (a broken outer
 * signature around an encrypted part, issue 23). The bytes are NOT verified content: label
 * them so, and never publish them as verified (RFC 8551 §6). Still refuses a result of a
 * message that is not signed, and re-checks that the input did not change.
 * @return P11S_OK, P11S_ERR_VERIFY (not signed, or the input changed), P11S_ERR_IO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_write_content_unverified(
    const p11s_verify_result *r, FILE *out);

/** Free a result; NULL is accepted. */
P11S_EXTERN void p11s_verify_result_free(p11s_verify_result *r);

/**
 * Parse an RFC 3339 date-time ("2024-01-31T12:00:00Z", "2024-01-31T13:00:00+01:00",
 * fractional seconds ignored) into seconds since the epoch.
 * @return P11S_OK or P11S_ERR_USAGE.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_parse_time(const char *s, int64_t *out);

#endif

/* p11smime — signing RFC 5322 messages as S/MIME 4.0 (RFC 8551) with a key on a token. */
#ifndef P11SMIME_SIGN_H
#define P11SMIME_SIGN_H

#include <stdio.h>

#include <openssl/types.h>
#include <openssl/x509.h>

#include "common.h"
#include "token.h"

/** Message digests for signing (RFC 8551 §2.1). */
typedef enum p11s_digest {
	P11S_DIGEST_SHA256 = 0, /**< SHA-256, micalg=sha-256 (the default) */
	P11S_DIGEST_SHA384,     /**< SHA-384, micalg=sha-384 */
	P11S_DIGEST_SHA512,     /**< SHA-512, micalg=sha-512 */
} p11s_digest;

/** Options of p11s_sign_message(). Initialise with P11S_SIGN_OPTS_INIT. */
typedef struct p11s_sign_opts {
	unsigned int version;      /**< P11S_SIGN_OPTS_VERSION */
	p11s_digest digest;        /**< default SHA-256 */
	int opaque;                /**< non-zero: application/pkcs7-mime; smime-type=signed-data */
	int pss;                   /**< non-zero: RSASSA-PSS, salt length = digest length (RSA keys) */
	X509 *cert;                /**< signer certificate; NULL: the token's (same CKA_ID).
	                                Borrowed. Refused if its public key is not the key's. */
	STACK_OF(X509) *chain;     /**< extra certificates for the SignedData (intermediates);
	                                the token's CA certificates are added too. Borrowed. */
	X509 *encryption_cert;     /**< the signer's encryption certificate: announced in
	                                SMIMEEncryptionKeyPreference (RFC 8551 §2.5.3) when it
	                                differs from the signing certificate. Borrowed. */
	/* Evidence (docs/evidence.md). Appended to version 1; zero means "off". */
	int receipt_request;       /**< P11S_RECEIPT_REQUEST_* (ess.h): ask for an ESS signed
	                                receipt (RFC 2634 §2.7); 0: none */
	const char *const *receipts_to; /**< NULL-terminated addresses for receiptsTo; NULL: the
	                                     message's From address. Borrowed. */
	const char *security_label; /**< "POLICY-OID:CLASSIFICATION": ESSSecurityLabel (RFC 2634
	                                 §3.2); NULL: none */
	const char *tsa_url;       /**< RFC 3161 TSA: add id-aa-signatureTimeStampToken over the
	                                signature value; NULL: none */
	const char *audit_log;     /**< append a record to this hash-chained audit log (audit.h);
	                                NULL: none. Without its record the signature is not output. */
	unsigned int audit_checkpoint_every; /**< with audit_log: a signed checkpoint (audit.h)
	                                    after this many records; 0: the default
	                                    P11S_AUDIT_CHECKPOINT_EVERY (100). The end of a run
	                                    is the caller's p11s_audit_checkpoint(). */
	/* Version 2. */
	const struct p11s_revocation_opts *staple; /**< non-NULL: ask the signer certificate's
	                                    OCSP responder (its AIA, or staple->ocsp_url, under
	                                    staple's fetch policy) before signing and carry the
	                                    response in the SignedData (RFC 5940); a revoked
	                                    certificate or no answer fails (P11S_ERR_VERIFY),
	                                    nothing signed. The issuer must be in `chain` or on
	                                    the token. Borrowed (revocation.h). */
	int protect_headers;       /**< (version 2) non-zero: RFC 9788 header protection. The
	                                signed entity then also carries copies of the message's
	                                header fields (From, To, Cc, Subject, Date, Message-ID,
	                                ...: all but MIME-Version, Content-* and trace fields) and
	                                its Content-Type hp="clear", so a reader can show header
	                                fields that were signed (docs/sign.md). Zero: the entity
	                                is the Content-* fields and the body (CLI.md) */
	/* Version 3. */
	int out_private;           /**< non-zero: `out` is a file private to the caller, who
	                                discards it unless the call returns P11S_OK (as the
	                                p11smime tool does). A 7-bit multipart/signed message is
	                                then written while it is hashed, so the input is read
	                                once; bytes reach `out` before the token signs. Zero:
	                                nothing is written before the signature is checked. */
} p11s_sign_opts;

/**
 * `protect_headers` for a message that is encrypted next (wrap): the signed entity is then the
 * Cryptographic Payload of an encrypted message (RFC 9788 §2.1.1): hp="cipher", an HP-Outer
 * field for each field left outside, and the outer Subject "[...]" (§3.2.1).
 */
#define P11S_PROTECT_HEADERS_ENCRYPTED 2

/**
 * Version 2 added `staple` and `protect_headers`, version 3 `out_private`; structures of
 * versions 1 and 2 are still accepted.
 */
#define P11S_SIGN_OPTS_VERSION 3
#define P11S_SIGN_OPTS_INIT { P11S_SIGN_OPTS_VERSION, P11S_DIGEST_SHA256, 0, 0, NULL, NULL, NULL, \
	0, NULL, NULL, NULL, NULL, 0, NULL, 0, 0 }

/**
 * Sign an RFC 5322 message with a token key.
 *
 * The outer header fields (everything but Content-* and MIME-Version) stay on the output
 * message, raw and in order; the Content-* fields and the body become the signed entity,
 * canonical (CRLF) and with 7-bit transfer encodings (8bit/binary leaves become
 * quoted-printable or base64 first, RFC 8551 §3.1). Output: multipart/signed with
 * protocol="application/pkcs7-signature" and the micalg of the digest, or with `opaque`
 * application/pkcs7-mime; smime-type=signed-data. Signed attributes: contentType,
 * messageDigest, signingTime, SMIMECapabilities (AES-GCM, AES-CBC and the signature
 * algorithms p11smime verifies), ESS signingCertificateV2 (SHA-256 of the certificate) and,
 * when `opts->encryption_cert` differs from the signer's, SMIMEEncryptionKeyPreference.
 * The signature the token returns is verified with the certificate's public key before any
 * byte is written to `out` (unless `opts->out_private`).
 *
 * Memory does not grow with the message: the entity is prepared in an unlinked temporary
 * file and streamed through the digest, then into the output (for `opaque` as the eContent
 * of a DER SignedData).
 *
 * @param key   the token key (p11s_key_find()); its certificate is used unless opts->cert.
 * @param opts  options, or NULL for the defaults.
 * @param in    the message; must be seekable (read from offset 0).
 * @param out   receives the signed message. An I/O error while writing can leave a partial
 *              message: write to a temporary file and publish it only on P11S_OK, as the
 *              p11smime tool does.
 * @return P11S_OK; P11S_ERR_MALFORMED (not an RFC 5322 message); P11S_ERR_USAGE (no
 *         certificate, --cert not matching the key, PSS with a non-RSA key);
 *         P11S_ERR_VERIFY is never returned: a token signature that does not verify is
 *         P11S_ERR_TOKEN; other TOKEN-class errors from the token; P11S_ERR_IO;
 *         P11S_ERR_CRYPTO; P11S_ERR_NOMEM. Not thread-safe on the same key.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_sign_message(p11s_key *key, const p11s_sign_opts *opts,
    FILE *in, FILE *out);

/**
 * Sign an RFC 5322 message with any EVP_PKEY (a software key, or a token key obtained from
 * p11s_key_pkey()), as p11s_sign_message() does.
 * @param libctx the library context of `pkey` (p11s_ctx_libctx() for token keys; NULL: default).
 * @param pkey   the private key. @param cert its certificate (required).
 * @param opts   options; opts->cert is ignored (use `cert`).
 * @return as p11s_sign_message(); a signature that does not verify is P11S_ERR_TOKEN.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_sign_message_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
    X509 *cert, const p11s_sign_opts *opts, FILE *in, FILE *out);

/** The micalg parameter value of a digest ("sha-256"), or NULL for an unknown one. */
P11S_EXTERN const char *p11s_digest_micalg(p11s_digest digest);

#endif

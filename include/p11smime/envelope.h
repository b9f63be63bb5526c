/*
 * p11smime — encrypting S/MIME messages to certificates and decrypting them with a key that
 * stays on a token (RFC 8551 §3.3, RFC 5652 §6, RFC 5083/5084 AuthEnvelopedData, RFC 5753 ECDH).
 */
#ifndef P11SMIME_ENVELOPE_H
#define P11SMIME_ENVELOPE_H

#include <stdio.h>

#include <openssl/x509.h>

#include "common.h"
#include "token.h"
#include "verify.h"

/** Content encryption algorithms (RFC 8551 §2.7). */
typedef enum p11s_cipher {
	P11S_CIPHER_AES_256_GCM = 0, /**< default: AuthEnvelopedData (RFC 5083/5084) */
	P11S_CIPHER_AES_128_GCM,     /**< AuthEnvelopedData */
	P11S_CIPHER_AES_128_CBC,     /**< EnvelopedData: no integrity protection (EFAIL) */
	P11S_CIPHER_AES_256_CBC,     /**< EnvelopedData: no integrity protection (EFAIL) */
} p11s_cipher;

/** Key derivation for X25519/X448 recipients (RFC 8418 §2.2). */
typedef enum p11s_xdh_kdf {
	P11S_XDH_KDF_HKDF = 0, /**< default: dhSinglePass-stdDH-hkdf-sha256/sha512-scheme
	                            (the RFC 8551 §2.3 MUST) */
	P11S_XDH_KDF_X963,     /**< dhSinglePass-stdDH-sha256/sha512kdf-scheme (ANSI X9.63),
	                            for peers without HKDF (BouncyCastle 1.72) */
} p11s_xdh_kdf;

/**
 * Version of p11s_encrypt_opts understood by this library. Version 1 (without xdh_kdf) is
 * still accepted and means the default KDF.
 */
#define P11S_ENCRYPT_OPTS_VERSION 3

/**
 * Options of p11s_encrypt_message(). Initialise with P11S_ENCRYPT_OPTS_INIT, then set fields.
 * Arrays, strings and certificates are borrowed for the duration of the call only.
 * At least one recipient (file or certificate) is needed.
 */
typedef struct p11s_encrypt_opts {
	unsigned int version;                /**< P11S_ENCRYPT_OPTS_VERSION */
	const char *const *recipient_files;  /**< recipient certificates, PEM or DER, one per file */
	size_t n_recipient_files;
	X509 *const *recipient_certs;        /**< recipient certificates already loaded */
	size_t n_recipient_certs;
	p11s_cipher cipher;                  /**< default P11S_CIPHER_AES_256_GCM */
	int oaep;                            /**< non-zero: RSA recipients get RSAES-OAEP with
	                                          SHA-256 and MGF1-SHA-256 (RFC 8017, RFC 4055)
	                                          instead of PKCS#1 v1.5 */
	int crlf;                            /**< lines the tool writes itself (new headers, base64)
	                                          end in: 0 = as the input's header lines,
	                                          1 = always CRLF, -1 = always LF */
	p11s_xdh_kdf xdh_kdf;                /**< version 2: X25519/X448 recipients' KDF */
	int protect_headers;                 /**< version 3: RFC 9788 header protection. The
	                                          encrypted entity carries the header fields,
	                                          hp="cipher" and an HP-Outer field for each field
	                                          left outside; the outer Subject becomes "[...]",
	                                          Comments and Keywords are removed (§3.2.1,
	                                          hcp_baseline; docs/envelope.md) */
} p11s_encrypt_opts;

#define P11S_ENCRYPT_OPTS_INIT \
	{ P11S_ENCRYPT_OPTS_VERSION, NULL, 0, NULL, 0, P11S_CIPHER_AES_256_GCM, 0, 0, \
	  P11S_XDH_KDF_HKDF, 0 }

/**
 * Check a certificate as an encryption recipient: valid now (notBefore/notAfter), keyUsage (if
 * present) allows keyEncipherment for RSA or keyAgreement for EC (RFC 8550 §4.4.2), extended
 * key usage (if present) holds emailProtection or anyExtendedKeyUsage (§4.4.4), and the key is
 * RSA of 2048 to 16384 bits, EC on P-256, P-384 or P-521, or X25519/X448 (RFC 8410).
 * @param name  how to name the certificate in the error message (a file name), or NULL.
 * @return P11S_OK; P11S_ERR_USAGE with a one-line reason naming `name`. Thread-safe.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_encrypt_check_recipient(X509 *cert, const char *name);

/**
 * Encrypt an RFC 5322 message. The header fields that are not Content-* or MIME-Version stay
 * outside (as read, byte for byte); the Content-* fields and the body, with line ends made
 * CRLF (RFC 8551 §3.1.1), form the inner entity that is encrypted. The output is the outer
 * fields, `MIME-Version: 1.0` and an `application/pkcs7-mime` entity (smime-type
 * authEnveloped-data for GCM, enveloped-data for CBC; name and filename smime.p7m) in base64.
 *
 * RSA recipients: key transport, PKCS#1 v1.5 or RSAES-OAEP (opts->oaep). EC recipients:
 * ephemeral-static ECDH (RFC 5753) with dhSinglePass-stdDH-sha256kdf-scheme and AES key wrap of
 * the content key's size (RFC 8551 §2.3). X25519 and X448 recipients: ephemeral-static
 * key agreement (RFC 8418) with HKDF-SHA-256/SHA-512 (opts->xdh_kdf: or the X9.63 KDF) and
 * the same key wrap. Recipients are identified by issuer and serial number.
 *
 * Every recipient certificate is checked (p11s_encrypt_check_recipient()) before anything is
 * written. The message is streamed: memory does not grow with its size.
 *
 * @param out   where the encrypted message goes; on failure part of it may have been written,
 *              so callers write to a temporary file and rename it on success.
 * @param in    the message, read to its end.
 * @return P11S_OK; P11S_ERR_USAGE (no recipient, unsuitable certificate, bad option);
 *         P11S_ERR_IO (unreadable certificate file, read or write error); P11S_ERR_MALFORMED
 *         (certificate or message header section that cannot be parsed); P11S_ERR_NOMEM,
 *         P11S_ERR_CRYPTO. Thread-safe.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_encrypt_message(FILE *in, FILE *out,
    const p11s_encrypt_opts *opts);

/**
 * Version of p11s_decrypt_opts understood by this library: 2 adds `require_authenticated`,
 * 3 `header_protection`; structures of earlier versions are still accepted.
 */
#define P11S_DECRYPT_OPTS_VERSION 3

/**
 * RFC 9788 header protection of a decrypted message (docs/envelope.md "Header protection"):
 * what the Cryptographic Payload carries against the outer header. Free with
 * p11s_header_protection_free().
 */
typedef struct p11s_header_protection {
	const char *hp;                   /**< the payload's hp parameter ("cipher", "clear") */
	const p11s_header_field *fields;  /**< the protected fields but HP-Outer, in order */
	size_t n_fields;
	const p11s_header_field *differs; /**< user-facing fields (From, To, Cc, Subject, Date,
	                                       ...) whose outer value differs; `exposed` when an
	                                       HP-Outer field names that outer value */
	size_t n_differs;
	int signed_payload;               /**< the payload is part 1 of a signed entity (wrap):
	                                       its signature is not checked by decryption */
} p11s_header_protection;

P11S_EXTERN void p11s_header_protection_free(p11s_header_protection *r);

/** Options of p11s_decrypt_message(). Initialise with P11S_DECRYPT_OPTS_INIT. */
typedef struct p11s_decrypt_opts {
	unsigned int version;   /**< P11S_DECRYPT_OPTS_VERSION */
	const char *token_uri;  /**< without a key: the tokens whose keys are candidates (a
	                             pkcs11: token URI, see p11s_key_list()); NULL: every token */
	int require_authenticated; /**< (version 2) non-zero: refuse EnvelopedData (CBC, no
	                                integrity, EFAIL) before any token operation, with
	                                P11S_ERR_VERIFY "unauthenticated-encryption: ..."; only
	                                AuthEnvelopedData is decrypted (docs/envelope.md) */
	p11s_header_protection **header_protection; /**< (version 3) non-NULL: set on success to
	                                the report of a payload with an hp parameter, or NULL */
} p11s_decrypt_opts;

#define P11S_DECRYPT_OPTS_INIT { P11S_DECRYPT_OPTS_VERSION, NULL, 0, NULL }

/** What p11s_decrypt_message() found; filled on success. */
typedef struct p11s_decrypt_info {
	int authenticated;        /**< 1: AuthEnvelopedData, the GCM tag verified; 0: EnvelopedData
	                               (CBC): no integrity protection, may be spliced (EFAIL) */
	char content_type[24];    /**< "authEnveloped-data" or "enveloped-data" */
	char cipher[24];          /**< content cipher, e.g. "aes-256-gcm" */
	char key_management[48];  /**< "rsaEncryption", "RSAES-OAEP", "ECDH-sha256kdf", ..., or the
	                               dotted OID OpenSSL has no name for (RFC 8418 HKDF) */
	int n_recipients;         /**< RecipientInfos in the message */
	char key_uri[512];        /**< the token key that decrypted */
	char recipient[512];      /**< subject of that key's certificate (RFC 2253) */
} p11s_decrypt_info;

/**
 * Decrypt an enveloped-data or authEnveloped-data message (application/pkcs7-mime or
 * application/x-pkcs7-mime, or a smime.p7m part without smime-type; base64 or binary) with a
 * private key that stays on the token.
 *
 * The key is found by RecipientIdentifier (issuerAndSerialNumber or subjectKeyIdentifier, of
 * key transport and key agreement recipients) among the certificates of `key` (when given: no
 * other key is considered) or of every key on the tokens opts->token_uri selects — never by
 * trying keys. RSA key transport goes to the token as CKM_RSA_PKCS or CKM_RSA_PKCS_OAEP with the
 * message's parameters; ECDH as CKM_ECDH1_DERIVE with the KDF and key unwrap on the host.
 *
 * Nothing is written to `out` unless decryption fully succeeded: AuthEnvelopedData plaintext
 * only after its GCM tag verified (RFC 5083 §2). Every failure that depends on the message's
 * encrypted data (key unwrap, padding, tag, wrong key) is the same P11S_ERR_DECRYPT
 * "decryption failed" (no oracle, RFC 3218). The output is the outer header fields of the
 * enveloped message (less its Content-* fields and MIME-Version), `MIME-Version: 1.0` unless the
 * decrypted entity has one, and the decrypted entity; when the input's lines end in LF, CRLF in
 * the output becomes LF.
 *
 * The CMS structure is read into memory (streaming decryption is not there yet).
 *
 * @param ctx   library context with the token.
 * @param key   the key to use, or NULL to search the tokens.
 * @param in    the message; read to its end.
 * @param out   the decrypted message.
 * @param opts  options or NULL.
 * @param info  receives details on success, or NULL.
 * @return P11S_OK; P11S_ERR_MALFORMED (not an enveloped message, bad base64 or DER);
 *         P11S_ERR_VERIFY (opts->require_authenticated and the message is EnvelopedData);
 *         P11S_ERR_DECRYPT (no recipient for the key or the token's keys, or "decryption
 *         failed"); TOKEN-class errors for failures that do not depend on the data (PIN,
 *         module, a mechanism or its parameters refused: P11S_ERR_MECHANISM/UNSUPPORTED name
 *         them); P11S_ERR_IO, P11S_ERR_NOMEM, P11S_ERR_CRYPTO.
 *         One context is used by one thread at a time.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_decrypt_message(p11s_ctx *ctx, p11s_key *key, FILE *in,
    FILE *out, const p11s_decrypt_opts *opts, p11s_decrypt_info *info);

#endif

/* p11smime — ESS (RFC 2634, RFC 5035): signed receipts and security labels. */
#ifndef P11SMIME_ESS_H
#define P11SMIME_ESS_H

#include <stdio.h>

#include <openssl/types.h>
#include <openssl/x509.h>

#include "common.h"
#include "error.h"
#include "token.h"
#include "verify.h"

/** Who is asked for a signed receipt (RFC 2634 §2.7 ReceiptRequest.receiptsFrom). */
typedef enum p11s_receipt_request {
	P11S_RECEIPT_REQUEST_NONE = 0,       /**< no receiptRequest attribute (the default) */
	P11S_RECEIPT_REQUEST_ALL = 1,        /**< allOrFirstTier = allReceipts (0) */
	P11S_RECEIPT_REQUEST_FIRST_TIER = 2, /**< allOrFirstTier = firstTierRecipients (1) */
} p11s_receipt_request;

/** Options of p11s_receipt_create(). Initialise with P11S_RECEIPT_OPTS_INIT. */
typedef struct p11s_receipt_opts {
	unsigned int version;  /**< P11S_RECEIPT_OPTS_VERSION */
	X509 *cert;            /**< receipt signer certificate; NULL: the token's. Borrowed. */
	STACK_OF(X509) *chain; /**< extra certificates for the receipt's SignedData. Borrowed. */
} p11s_receipt_opts;

#define P11S_RECEIPT_OPTS_VERSION 1
#define P11S_RECEIPT_OPTS_INIT { P11S_RECEIPT_OPTS_VERSION, NULL, NULL }

/**
 * Write the signed receipt (RFC 2634 §2.4) for a signed message that requests one.
 *
 * The original (multipart/signed or opaque signed-data) is read from `in`; every SignerInfo's
 * signature and content digest are checked (with the certificate in the message; path
 * validation is the job of `verify`), and when they carry receiptRequest attributes those must
 * all be identical (§2.3). The receipt is a SignedData whose eContent is the DER Receipt
 * {version 1, the original's contentType, signedContentIdentifier, originatorSignatureValue},
 * eContentType id-ct-receipt, with the signed attributes contentType, messageDigest,
 * signingTime and msgSigDigest — the digest, with the original signer's digest algorithm, of
 * the original's DER signedAttrs exactly as received (tag [0] read as SET OF). Output: an
 * RFC 5322 message `application/pkcs7-mime; smime-type=signed-receipt` addressed (To:) to the
 * receiptsTo addresses. The token's signature is verified before anything is written.
 *
 * @param key  the receipt signer's token key.  @param opts options or NULL.
 * @param in   the original message (seekable).  @param out receives the receipt message.
 * @return P11S_OK; P11S_ERR_USAGE (the message requests no receipt, or the request is on a
 *         receipt, or requests differ); P11S_ERR_VERIFY (the original's signature does not
 *         verify); P11S_ERR_MALFORMED; token errors; P11S_ERR_IO; P11S_ERR_NOMEM;
 *         P11S_ERR_CRYPTO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_receipt_create(p11s_key *key, const p11s_receipt_opts *opts,
    FILE *in, FILE *out);

/**
 * As p11s_receipt_create() with any EVP_PKEY (`libctx`: its library context, NULL default).
 * @param cert the receipt signer's certificate (required); opts->cert is ignored.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_receipt_create_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey,
    X509 *cert, const p11s_receipt_opts *opts, FILE *in, FILE *out);

/** The verdict on a signed receipt. Strings are owned by the result. */
typedef struct p11s_receipt_result {
	int valid;                   /**< every check below passed */
	const char *subject;         /**< receipt signer subject (RFC 2253) or NULL */
	const char *signing_time;    /**< receipt's signingTime (RFC 3339), claimed, or NULL */
	const char *content_identifier; /**< signedContentIdentifier in hex */
	const char *content_type;    /**< the Receipt's contentType (OID text) */
	const char *const *chain;    /**< receipt signer path as far as built */
	size_t n_chain;
	const p11s_verify_reason *reasons; /**< "bad-signature", "untrusted", "msg-sig-digest-
	                                        mismatch", "no-matching-request", ... */
	size_t n_reasons;
	struct p11s_receipt_priv *priv;    /**< internal */
	/* Algorithms and the weak-algorithm policy (docs/verify.md); appended. */
	const p11s_verify_reason *warnings; /**< "weak-algorithm" accepted by allow_weak */
	size_t n_warnings;
	const char *digest;              /**< the receipt's digest algorithm, or NULL */
	const char *signature_algorithm; /**< its signature algorithm, or NULL */
	const char *key_type;            /**< receipt signer key ("RSA", "EC", ...), or NULL */
	int key_bits;
} p11s_receipt_result;

/**
 * Verify a signed receipt against the original signed message (RFC 2634 §2.6): the receipt's
 * signature and content digest, its signer's certificate path to `opts`' trust anchors (RFC
 * 5280) and key usage; that eContentType is id-ct-receipt; that the Receipt's
 * originatorSignatureValue is the signature of a SignerInfo of the original that carries a
 * receiptRequest; that contentType and signedContentIdentifier match that request and
 * signer; and that msgSigDigest equals the digest of that SignerInfo's signedAttrs as received.
 *
 * @param out      the result, set only on P11S_OK; free with p11s_receipt_result_free().
 * @param receipt  the receipt message (application/pkcs7-mime, base64) or DER SignedData.
 * @param original the original signed message.
 * @param opts     trust anchors, intermediates, CRLs, time (p11s_verify_opts).
 * @return P11S_OK when a verdict was reached (see `valid`); P11S_ERR_MALFORMED; P11S_ERR_IO;
 *         P11S_ERR_NOMEM; P11S_ERR_CRYPTO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_receipt_verify(p11s_receipt_result **out, FILE *receipt,
    FILE *original, const p11s_verify_opts *opts);

/** Free a result; NULL is accepted. */
P11S_EXTERN void p11s_receipt_result_free(p11s_receipt_result *r);

/**
 * Check a security label specification "POLICY-OID:CLASSIFICATION" (RFC 2634 §3.2), where
 * CLASSIFICATION is 0..256 or one of unmarked, unclassified, restricted, confidential, secret,
 * top-secret; the classification may be omitted ("POLICY-OID").
 * @return P11S_OK or P11S_ERR_USAGE (with the reason).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_security_label_check(const char *spec);

#endif

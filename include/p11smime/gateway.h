/*
 * p11smime — API for long-running decryptors (the milter gateway): decryption with a key chosen
 * by the caller's own index of RecipientIdentifiers, so that keys are looked up once, not per
 * message (DESIGN.md decision 9).
 */
#ifndef P11SMIME_GATEWAY_H
#define P11SMIME_GATEWAY_H

#include <stdio.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "common.h"
#include "envelope.h"
#include "token.h"

/**
 * One RecipientIdentifier of an encrypted message (RFC 5652 §6.2.1 for key transport,
 * §6.2.2 rid of a key agreement RecipientEncryptedKey). Exactly one form is set:
 * issuerAndSerialNumber (`issuer` and `serial`) or subjectKeyIdentifier (`ski`). Everything
 * is owned by the message being decrypted and valid during the callback only.
 */
typedef struct p11s_recipient_id {
	const X509_NAME *issuer;         /**< issuer of the recipient certificate, or NULL */
	const ASN1_INTEGER *serial;      /**< its serial number, or NULL */
	const ASN1_OCTET_STRING *ski;    /**< subjectKeyIdentifier, or NULL */
	int key_agreement;               /**< non-zero: a KeyAgreeRecipientInfo (ECDH) */
} p11s_recipient_id;

/**
 * Chooses the key for one RecipientIdentifier: return a key of the context (looked up in the
 * caller's index), or NULL when none of the caller's keys is that recipient. Called for the
 * message's RecipientIdentifiers in order until it returns a key. Must not call the library
 * on the same context.
 */
typedef p11s_key *(*p11s_key_select_fn)(const p11s_recipient_id *rid, void *payload);

/**
 * Decrypt an enveloped-data or authEnveloped-data message, as p11s_decrypt_message() does,
 * with the key that `select` names for one of its RecipientIdentifiers. The key's
 * certificate must match that RecipientInfo too (checked again here: an index that is wrong
 * or stale cannot make the library try a key that is not a recipient). No other key is ever
 * tried; no token operation happens before a key is chosen.
 *
 * @param ctx     library context holding the keys `select` returns.
 * @param select  the caller's RecipientIdentifier index.
 * @param payload passed to `select`.
 * @param in      the message; read to its end. @param out the decrypted message, written only
 *                on full success (see p11s_decrypt_message()).
 * @param info    receives details on success, or NULL.
 * @return P11S_OK; P11S_ERR_MALFORMED (not an enveloped message, bad base64 or DER);
 *         P11S_ERR_NOT_FOUND when `select` chose no key (not for us; nothing was tried);
 *         P11S_ERR_DECRYPT "decryption failed", uniform for every data-dependent failure;
 *         TOKEN-class errors that do not depend on the data (PIN, module, device, mechanism);
 *         P11S_ERR_IO, P11S_ERR_NOMEM, P11S_ERR_CRYPTO. One context is used by one thread at
 *         a time.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_decrypt_message_select(p11s_ctx *ctx,
    p11s_key_select_fn select, void *payload, FILE *in, FILE *out, p11s_decrypt_info *info);

/**
 * p11s_decrypt_message_select() with options: only `opts->require_authenticated` (version 2)
 * is used here (token_uri is the caller's business): EnvelopedData is then refused with
 * P11S_ERR_VERIFY "unauthenticated-encryption: ..." before `select` is called.
 * `opts` may be NULL.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_decrypt_message_select_ex(p11s_ctx *ctx,
    p11s_key_select_fn select, void *payload, FILE *in, FILE *out,
    const p11s_decrypt_opts *opts, p11s_decrypt_info *info);

#endif

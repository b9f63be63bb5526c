/*
 * p11smime — key pairs generated on the token (p11smime keygen, docs/keys.md).
 */
#ifndef P11SMIME_KEYGEN_H
#define P11SMIME_KEYGEN_H

#include "common.h"
#include "token.h"

/**
 * Generate a key pair on the one token `token_uri` names (its pin-source/pin-value, else the
 * context's PIN source, log in). `type` is "rsa:2048", "rsa:3072", "rsa:4096", "ec:p256",
 * "ec:p384" or "ed25519". Both halves are token objects labelled `label` with CKA_ID `id`
 * (`id_len` 0: 16 random bytes); the private key is private, sensitive, not extractable.
 * @return P11S_OK and the new key in `*out` (free with p11s_key_free()); P11S_ERR_USAGE for an
 *         unknown type or a label or id already on the token; P11S_ERR_MECHANISM when the
 *         token refuses the type; P11S_ERR_UNSUPPORTED when the backend cannot generate keys.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_generate(p11s_ctx *ctx, const char *token_uri,
    const char *type, const char *label, const unsigned char *id, size_t id_len,
    p11s_key **out);

/**
 * Write `cert` on the token of `key` as its certificate (CKA_ID, CKA_LABEL of the key;
 * CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER of the certificate) and each of `chain` (may be
 * NULL) not already there as an authority certificate (CKA_CERTIFICATE_CATEGORY 2).
 * @return P11S_OK; P11S_ERR_USAGE, with nothing written, when the certificate's public key is
 *         not the key's or the key already has a certificate; P11S_ERR_UNSUPPORTED when the
 *         backend cannot create objects.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_import_cert(p11s_key *key, X509 *cert,
    STACK_OF(X509) *chain);

#endif

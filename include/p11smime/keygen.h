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

#endif

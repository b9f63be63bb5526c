/*
 * The bridge: an in-process OpenSSL 3 provider ("p11s") that makes a token key an EVP_PKEY.
 * DESIGN.md decision 1. Lives in its own OSSL_LIB_CTX next to the default provider, so that a
 * token module linking the same libcrypto (SoftHSM) never sees it.
 */
#ifndef P11S_BRIDGE_H
#define P11S_BRIDGE_H

#include <openssl/types.h>

#include "token/token_int.h"

/*
 * Create a library context with the default provider and the bridge provider loaded.
 * Free with p11s_bridge__libctx_free() (after every EVP_PKEY made in it).
 */
int p11s_bridge__libctx_new(OSSL_LIB_CTX **out);

/*
 * Unload the providers p11s_bridge__libctx_new() loaded and free the context; NULL is
 * accepted. (OpenSSL 3.0 leaks a provider added with OSSL_PROVIDER_add_builtin() when its
 * library context is freed while it is still loaded.)
 */
void p11s_bridge__libctx_free(OSSL_LIB_CTX *libctx);

/*
 * An EVP_PKEY in `libctx` for `key`: public operations use key->pub's parameters, private
 * ones go to p11s_token__sign/decrypt/derive. `key` must outlive the EVP_PKEY.
 * @return P11S_OK, P11S_ERR_UNSUPPORTED (key type), P11S_ERR_CRYPTO.
 */
int p11s_bridge__pkey(OSSL_LIB_CTX *libctx, p11s_key *key, EVP_PKEY **out);

/*
 * 1 if `pkey` is a bridge key: every signature it makes is verified with the key's public key
 * before the provider returns it (signature.c, DESIGN.md decision 3), so callers need not
 * verify it again. 0 for any other key.
 */
int p11s_bridge__is_bridge_key(const EVP_PKEY *pkey);

#endif

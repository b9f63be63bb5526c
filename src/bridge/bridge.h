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
 * Create a library context with the default provider and the bridge provider loaded; the
 * library's context (src/lib/context.c) owns it. Free with p11s_bridge__libctx_free() (after
 * every EVP_PKEY made in it). Token keys become EVP_PKEYs in it through p11s_key_pkey().
 */
int p11s_bridge__libctx_new(OSSL_LIB_CTX **out);

/*
 * Unload the providers p11s_bridge__libctx_new() loaded and free the context; NULL is
 * accepted. (OpenSSL 3.0 leaks a provider added with OSSL_PROVIDER_add_builtin() when its
 * library context is freed while it is still loaded.)
 */
void p11s_bridge__libctx_free(OSSL_LIB_CTX *libctx);

/*
 * 1 if `pkey` is a bridge key: every signature it makes is verified with the key's public key
 * before the provider returns it (signature.c, DESIGN.md decision 3), so callers need not
 * verify it again. 0 for any other key.
 */
int p11s_bridge__is_bridge_key(const EVP_PKEY *pkey);

#endif

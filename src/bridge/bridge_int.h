/*
 * Internals of the bridge provider ("p11s"), shared by its operation files: the provider
 * context, the key object of the keymgmt, and the dispatch tables each file defines.
 */
#ifndef P11S_BRIDGE_INT_H
#define P11S_BRIDGE_INT_H

#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "token/token_int.h"

/* The provider's name and the property query that selects it (DESIGN.md decision 1). */
#define P11S_BRIDGE_NAME "p11s"
#define P11S_BRIDGE_PROPQ "provider=p11s"
/* Where the bridge's own public-key work is done: the default provider, same library context. */
#define P11S_BRIDGE_PUB_PROPQ "provider=default"

/*
 * The import parameter that carries the token key reference (an octet string holding a
 * struct p11s_bridge_keyref). The cookie is random per process, so a stray EVP_PKEY_fromdata()
 * with a made-up pointer is refused instead of dereferenced.
 */
#define P11S_BRIDGE_PARAM_KEYREF "p11s-key-ref"

struct p11s_bridge_keyref {
	uint64_t cookie;
	p11s_key *key;
};

/* The provider context: the library context the provider was loaded into. */
typedef struct p11s_bprov {
	OSSL_LIB_CTX *libctx;
} p11s_bprov;

/*
 * The keymgmt's key object. `pub` is the public half as a default-provider key in the same
 * library context (parameters, export, match and validation are delegated to it); `ref` is
 * the token key, NULL for a plain public key (a peer's, a certificate's).
 */
typedef struct p11s_bkey {
	p11s_bprov *prov;
	int type;          /* P11S_KEY_RSA, P11S_KEY_EC, P11S_KEY_EDDSA (Ed25519) or P11S_KEY_XDH */
	const char *alg;   /* the default provider's key type: "RSA", "EC", "ED25519", "X25519",
	                      "X448" (XDH has two keymgmts, one per curve: RFC 8410 §3) */
	EVP_PKEY *pub;     /* NULL until imported; for EC maybe domain parameters only */
	int has_pub;       /* `pub` holds a public key, not only EC domain parameters */
	p11s_key *ref;
} p11s_bkey;

/* The per-process cookie of struct p11s_bridge_keyref (provider.c). */
uint64_t p11s_bridge__cookie(void);

/*
 * Record a failed private operation in OpenSSL's error queue, keeping the p11s error record
 * (code, CK_RV, message) as the token layer left it for the caller.
 */
void p11s_bridge__raise(int reason, const char *what);

/*
 * A token operation failed with `rc`: name the mechanism in the p11s record when the token
 * refused it ("token refuses CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256): ..."), then raise.
 */
void p11s_bridge__token_failed(int rc, const p11s_mech *mech, int reason, const char *what);

/* The uncompressed point (04||X||Y) of an EC public key; `*out` freed with OPENSSL_free(). */
int p11s_bridge__ec_point(OSSL_LIB_CTX *libctx, const EVP_PKEY *pub, unsigned char **out,
    size_t *outlen);

/* Digest facts the operations need: PKCS#11 numbers and the DER DigestInfo prefix. */
typedef struct p11s_bridge_md {
	const char *name;         /* OpenSSL name, "SHA256" */
	int nid;
	size_t size;
	unsigned long ck_hash;    /* P11S_HASH_* */
	unsigned long ck_mgf;     /* P11S_MGF1_* */
	const unsigned char *prefix; /* RFC 8017 §9.2 note 1 */
	size_t prefix_len;
} p11s_bridge_md;

/* The entry for a digest name or alias ("SHA2-256", "sha256"), or NULL if not supported. */
const p11s_bridge_md *p11s_bridge__md(OSSL_LIB_CTX *libctx, const char *name);

/* ---- common.c: what the operations share ---------------------------------------------- */

/*
 * The head every operation context (signature, asym_cipher, keyexch) starts with, so that a
 * pointer to the context is a pointer to its head (C11 §6.7.2.1p15) and the helpers below
 * take the context as it comes from OpenSSL.
 */
typedef struct p11s_bridge_op {
	p11s_bprov *prov;
	p11s_key *ref;     /* the token key, borrowed from the keymgmt's key object */
	EVP_PKEY *pub;     /* the key's public half (own reference) */
} p11s_bridge_op;

/* newctx: a zeroed context of `size` bytes for the provider context; NULL if out of memory. */
void *p11s_bridge__op_new(void *provctx, size_t size);
/* freectx, after the caller freed what else it owns: drops `pub` and frees the context. */
void p11s_bridge__op_free(void *vctx);
/*
 * dupctx: a byte copy of `size` bytes with its own reference to `pub`; the caller then
 * clears and copies what else the context owns. NULL on failure (nothing to free).
 */
void *p11s_bridge__op_dup(const void *vctx, size_t size);
/* Use key object `k` (checked by the caller): its token reference and its public half. */
int p11s_bridge__op_use_key(void *vctx, const p11s_bkey *k);
/*
 * The init of a private-key-only operation (decrypt, derive): `provkey` must be a token key
 * of `type` with its public half (PROV_R_MISSING_KEY, PROV_R_NOT_A_PRIVATE_KEY otherwise).
 */
int p11s_bridge__op_token_key(void *vctx, void *provkey, int type);
/* A private operation may go to the token: `*size` = EVP_PKEY_get_size() of the key. */
int p11s_bridge__op_size(const void *vctx, int *size);

/*
 * set_ctx_params helpers: each looks `key` up in `params`, succeeds without a change when it
 * is absent, and raises the provider error a bad value deserves.
 */
/* A padding mode, integer or string (OpenSSL 3.0 trap): PKCS#1 v1.5 or `alt`, nothing else. */
int p11s_bridge__set_pad(const OSSL_PARAM params[], const char *key, int alt, int *pad);
/* A digest name this bridge knows (p11s_bridge__md). */
int p11s_bridge__set_md(OSSL_LIB_CTX *libctx, const OSSL_PARAM params[], const char *key,
    const p11s_bridge_md **md);
/* An octet string, copied into `*buf` (old value freed; empty = NULL). */
int p11s_bridge__set_octets(const OSSL_PARAM params[], const char *key, unsigned char **buf,
    size_t *len);

/* get_ctx_params helpers: answer `key` if asked for, in the type the caller asked for. */
int p11s_bridge__get_pad(OSSL_PARAM params[], const char *key, int pad);
/* The digest's short name, or `none` when no digest is set. */
int p11s_bridge__get_md(OSSL_PARAM params[], const char *key, const p11s_bridge_md *md,
    const char *none);
/* A pointer to the context's bytes (valid while the context is). */
int p11s_bridge__get_octets(OSSL_PARAM params[], const char *key, const unsigned char *buf,
    size_t len);

/* `*dst` = a copy of `len` bytes at `src`, NULL for NULL; 0 if out of memory. */
int p11s_bridge__dup_octets(unsigned char **dst, const unsigned char *src, size_t len);

/*
 * gettable_ctx_params / settable_ctx_params: "a constant OSSL_PARAM array" (provider-
 * signature(7), provider-asym_cipher(7), provider-keyexch(7)); OpenSSL calls them with a NULL
 * context too (EVP_SIGNATURE_gettable_ctx_params()), so the answer cannot depend on it.
 */
#define P11S_BRIDGE_PARAM_TABLE(fn, table) \
	static const OSSL_PARAM *fn(void *vctx, void *provctx) \
	{ \
		return (table); \
	}

/* An OSSL_DISPATCH entry (the cast every provider writes). */
#define P11S_BRIDGE_FN(f) ((void (*)(void))(f))

extern const OSSL_DISPATCH p11s_bridge__rsa_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__ec_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__rsa_signature[];
extern const OSSL_DISPATCH p11s_bridge__ecdsa_signature[];
extern const OSSL_DISPATCH p11s_bridge__rsa_asym_cipher[];
extern const OSSL_DISPATCH p11s_bridge__ecdh_keyexch[];
extern const OSSL_DISPATCH p11s_bridge__ed25519_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__ed25519_signature[];
extern const OSSL_DISPATCH p11s_bridge__x25519_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__x448_keymgmt[];
/* X25519 and X448 (RFC 7748 §6) on a token: one exchange, registered under both names. */
extern const OSSL_DISPATCH p11s_bridge__xdh_keyexch[];

#endif

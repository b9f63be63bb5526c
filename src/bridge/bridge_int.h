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
	int type;          /* P11S_KEY_RSA or P11S_KEY_EC */
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

/* RSA padding mode from a parameter given as an integer or as a string (OpenSSL 3.0 trap). */
int p11s_bridge__pad_get(const OSSL_PARAM *p, int *pad);
/* Answer a padding mode in the type the caller asked for. */
int p11s_bridge__pad_set(OSSL_PARAM *p, int pad);

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

extern const OSSL_DISPATCH p11s_bridge__rsa_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__ec_keymgmt[];
extern const OSSL_DISPATCH p11s_bridge__rsa_signature[];
extern const OSSL_DISPATCH p11s_bridge__ecdsa_signature[];
extern const OSSL_DISPATCH p11s_bridge__rsa_asym_cipher[];
extern const OSSL_DISPATCH p11s_bridge__ecdh_keyexch[];

#endif

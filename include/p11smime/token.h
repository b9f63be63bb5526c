/* p11smime — tokens and keys: the library context, token listing, key lookup by RFC 7512 URI. */
#ifndef P11SMIME_TOKEN_H
#define P11SMIME_TOKEN_H

#include <openssl/types.h>
#include <openssl/x509.h>

#include "common.h"

/**
 * The library context: one backend instance (one module load), its PIN source, the OpenSSL
 * library context in which token keys live. One context may be used by one thread at a time,
 * with one exception: the private-key operations of a key already found (signing,
 * decrypting, deriving with its p11s_key_pkey()) may be called from several threads at once.
 * With the pkcs11 backend they then run concurrently, each in a session of the pool; with
 * the others one at a time (`sign --batch --jobs N`, docs/performance.md).
 *
 * Long-running use (a gateway, a bulk signer; docs/performance.md): keep one context for the
 * life of the process. It keeps the module loaded, the token logged in after the first login
 * (the PIN is read once and wiped) and, with the pkcs11 backend, a pool of open sessions that
 * private-key operations reuse; a session the token invalidates is dropped and replaced. Find
 * each key once (p11s_key_find()) and keep it, take its EVP_PKEY (p11s_key_pkey()) and CA
 * certificates once, and sign each message with p11s_sign_message_pkey(): that is what
 * `p11smime sign --batch` does. Keys with CKA_ALWAYS_AUTHENTICATE still get a
 * context-specific login with a fresh PIN for every signature.
 */
typedef struct p11s_ctx p11s_ctx;

/** Options of p11s_ctx_new(). Initialise with P11S_CTX_OPTS_INIT. */
typedef struct p11s_ctx_opts {
	unsigned int version;    /**< P11S_CTX_OPTS_VERSION */
	const char *backend;     /**< "pkcs11" (default), "libp11", "mock" */
	const char *module;      /**< PKCS#11 module path; NULL: P11SMIME_MODULE, then p11-kit proxy */
	const char *pin_source;  /**< pin-source spec (see pin.h); NULL: none (keys need no login) */
	int batch;               /**< non-zero: never prompt on a terminal */
} p11s_ctx_opts;

#define P11S_CTX_OPTS_VERSION 1
#define P11S_CTX_OPTS_INIT { P11S_CTX_OPTS_VERSION, NULL, NULL, NULL, 0 }

/**
 * Create a context: select the backend from the registry and load its module.
 * A `module-path` in a URI passed later wins over opts->module (CLI.md).
 * @return P11S_OK; P11S_ERR_USAGE (unknown backend), P11S_ERR_MODULE (module not loadable),
 *         P11S_ERR_PIN_SOURCE. Free with p11s_ctx_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_ctx_new(p11s_ctx **out, const p11s_ctx_opts *opts);

/**
 * Load one more PKCS#11 module into the context (the configuration file's repeated `module`
 * key, docs/tokens.md): p11s_token_list() then lists the slots of every module, in the order
 * they were added, and p11s_key_list() / p11s_key_find() search them all, so that a selection
 * matching keys in several modules is P11S_ERR_AMBIGUOUS naming candidates of each. Key URIs
 * then carry `module-path` so that each names one module. A URI's `module-name` or
 * `module-path` restricts the search to the modules it names. The modules share the context's
 * backend, PIN source and OpenSSL library context.
 * @return P11S_OK; P11S_ERR_MODULE (not loadable); P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_ctx_add_module(p11s_ctx *ctx, const char *module);

/**
 * Follow smartcard reader events (pcsc-lite) for the rest of the context's life, for a
 * long-running process (sign --batch, the gateway). A card removed from the reader a token's
 * slot is in (the slot description is the reader name, as OpenSC reports it) makes operations
 * with that token's keys fail at once with P11S_ERR_TOKEN_ABSENT naming the reader, without a
 * call to the module; once the card is back the next operation finds the token again and logs
 * in with a PIN read again from its source. Events are logged at level INFO ("card removed
 * from reader ..."). Without pcscd nothing happens; built without pcsc-lite this is a no-op.
 * @return P11S_OK; P11S_ERR_NOMEM or P11S_ERR_GENERIC when the monitor cannot start.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_ctx_watch_readers(p11s_ctx *ctx);

/**
 * The file of the PKCS#11 module that p11-kit's registry (pkcs11.conf(5)) names `name`: what an
 * RFC 7512 `module-name` means when no module is configured. Free `*path` with free().
 * @return P11S_OK; P11S_ERR_MODULE when p11-kit knows no module by that name.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_module_find(const char *name, char **path);

/** Log out, close sessions, unload the module. Keys from this context must be freed first. */
P11S_EXTERN void p11s_ctx_free(p11s_ctx *ctx);

/** The OpenSSL library context whose provider makes token keys usable (CMS_sign_ex(), ...). */
P11S_EXTERN OSSL_LIB_CTX *p11s_ctx_libctx(p11s_ctx *ctx);

/** The backend's name. */
P11S_EXTERN const char *p11s_ctx_backend(const p11s_ctx *ctx);

/** Names of the compiled-in backends, NULL-terminated. */
P11S_EXTERN const char *const *p11s_backend_names(void);

/** Token flags (the subset of CK_TOKEN_INFO/CK_SLOT_INFO flags a user needs). */
enum {
	P11S_TOKEN_PRESENT = 1u << 0,
	P11S_TOKEN_LOGIN_REQUIRED = 1u << 1,
	P11S_TOKEN_PROTECTED_AUTH_PATH = 1u << 2,
	P11S_TOKEN_USER_PIN_COUNT_LOW = 1u << 3,
	P11S_TOKEN_USER_PIN_FINAL_TRY = 1u << 4,
	P11S_TOKEN_USER_PIN_LOCKED = 1u << 5,
	P11S_TOKEN_USER_PIN_INITIALIZED = 1u << 6,
	P11S_TOKEN_INITIALIZED = 1u << 7,
	P11S_TOKEN_WRITE_PROTECTED = 1u << 8,
	P11S_TOKEN_REMOVABLE = 1u << 9,
	P11S_TOKEN_HW_SLOT = 1u << 10,
};

/** One slot and the token in it (strings are trimmed of PKCS#11 space padding). */
typedef struct p11s_token_info {
	unsigned long slot_id;
	char slot_description[65];
	char slot_manufacturer[33];
	char label[33];          /**< empty when no token is present */
	char manufacturer[33];
	char model[17];
	char serial[17];
	unsigned int flags;      /**< P11S_TOKEN_* */
	char uri[512];           /**< pkcs11: URI of the token (token, manufacturer, model, serial) */
	char module[256];        /**< path of the module the slot belongs to (the token layer sets it) */
} p11s_token_info;

/**
 * List every slot of the module, with or without a token.
 * @return P11S_OK or a TOKEN-class error. Free `*out` with free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_token_list(p11s_ctx *ctx, p11s_token_info **out,
    size_t *count);

/** Key types. */
typedef enum p11s_key_type {
	P11S_KEY_UNKNOWN = 0,
	P11S_KEY_RSA,
	P11S_KEY_EC,
	P11S_KEY_EDDSA,
	/**
	 * X25519 or X448 (CKK_EC_MONTGOMERY): key agreement only. PKCS#11 v3.0 §2.3.7–§2.3.8;
	 * CKM_ECDH1_DERIVE with the peer's raw RFC 7748 u-coordinate. Appended last: the values
	 * above are ABI (docs/abi.md).
	 */
	P11S_KEY_XDH,
} p11s_key_type;

/** A private key on a token, with its certificate when the token has one (same CKA_ID). */
typedef struct p11s_key p11s_key;

/**
 * List the private keys on the tokens that `token_uri` selects (NULL: every token present).
 * Logs in where the token requires it to see private objects (PIN from the context's source).
 * @return P11S_OK; P11S_ERR_MALFORMED (bad URI); TOKEN-class errors. Free each key with
 *         p11s_key_free() and the array with free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_list(p11s_ctx *ctx, const char *token_uri,
    p11s_key ***out, size_t *count);

/**
 * Find exactly one private key by RFC 7512 URI (as printed by p11s_key_uri()).
 * @return P11S_OK; P11S_ERR_MALFORMED (bad URI); P11S_ERR_AMBIGUOUS (several keys match, the
 *         error message lists their URIs); P11S_ERR_NOT_FOUND; other TOKEN-class errors.
 *         Free `*out` with p11s_key_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_find(p11s_ctx *ctx, const char *uri, p11s_key **out);

/** The key's canonical pkcs11: URI (token, manufacturer, model, serial, object, id, type). */
P11S_EXTERN const char *p11s_key_uri(const p11s_key *key);
/** CKA_LABEL, may be empty. */
P11S_EXTERN const char *p11s_key_label(const p11s_key *key);
/** CKA_ID bytes; `*len` receives the length. */
P11S_EXTERN const unsigned char *p11s_key_id(const p11s_key *key, size_t *len);
P11S_EXTERN p11s_key_type p11s_key_get_type(const p11s_key *key);
/** Key size in bits (RSA modulus, EC field size; X25519 253, X448 448 as OpenSSL counts them). */
P11S_EXTERN int p11s_key_bits(const p11s_key *key);
/** The curve's name: "P-256", "P-384", "P-521", "Ed25519", "Ed448", "X25519", "X448"; or NULL. */
P11S_EXTERN const char *p11s_key_curve(const p11s_key *key);
/** Non-zero when the key has CKA_ALWAYS_AUTHENTICATE (a PIN before every signature). */
P11S_EXTERN int p11s_key_always_authenticate(const p11s_key *key);
/** The token holding the key. */
P11S_EXTERN const p11s_token_info *p11s_key_token(const p11s_key *key);
/** The certificate with the same CKA_ID on the token, or NULL. Owned by `key`. */
P11S_EXTERN X509 *p11s_key_cert(const p11s_key *key);

/**
 * CA certificates stored on the key's token (basicConstraints CA:TRUE), for inclusion in a
 * SignedData next to the signer's certificate. `*out` may be empty, never NULL on success.
 * @return P11S_OK or P11S_ERR_NOMEM. Free with sk_X509_pop_free(*out, X509_free).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_ca_certs(const p11s_key *key, STACK_OF(X509) **out);

/**
 * An EVP_PKEY, in p11s_ctx_libctx(), whose private operations go to the token through the
 * bridge provider. Usable with CMS_sign_ex(), CMS_decrypt(), EVP_PKEY_sign() in that
 * library context.
 * @return P11S_OK, P11S_ERR_NOT_FOUND (no public key known for it), P11S_ERR_CRYPTO.
 *         Free `*out` with EVP_PKEY_free() before freeing the key.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_key_pkey(p11s_key *key, EVP_PKEY **out);

/** Free; NULL is accepted. */
P11S_EXTERN void p11s_key_free(p11s_key *key);

/**
 * Take one more reference to `key` (for a holder that keeps found keys across operations,
 * as `p11smime agent` does): each reference is released with p11s_key_free(); the key is
 * freed with the last. Returns `key`.
 */
P11S_EXTERN p11s_key *p11s_key_up_ref(p11s_key *key);

#endif

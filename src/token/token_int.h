/*
 * Token layer internals, for the layers above it (the bridge, host-side CMS and ESS code;
 * docs/architecture.md). Backends never include this: they see only sys/provider.h.
 */
#ifndef P11S_TOKEN_INT_H
#define P11S_TOKEN_INT_H

#include <pthread.h>

#include <openssl/types.h>
#include <openssl/x509.h>

#include <p11smime/pin.h>
#include <p11smime/sys/provider.h>
#include <p11smime/token.h>
#include <p11smime/uri.h>

/*
 * The token layer's half of p11s_ctx_new() / p11s_ctx_free(): options, PIN source and the
 * first module, without `libctx` (src/lib/context.c adds the bridge's).
 */
int p11s_token__ctx_new(p11s_ctx **out, const p11s_ctx_opts *opts);
void p11s_token__ctx_free(p11s_ctx *ctx);

/* The backend registry (src/token/registry.c). NULL when `name` is not compiled in. */
const struct p11s_provider_ops *p11s_token__backend(const char *name);

struct p11s_ctx {
	p11s_provider prov;
	char *module_path;
	p11s_pin_source *pins;      /* from opts->pin_source, may be NULL */
	int batch;
	/*
	 * The OpenSSL library context of the bridge, set by the library's context
	 * (src/lib/context.c) and freed there: the token layer only carries it for its keys.
	 */
	OSSL_LIB_CTX *libctx;
	p11s_slot *slots;           /* last enumeration */
	size_t nslots;
	/*
	 * Several modules (p11s_ctx_add_module()): the context the caller holds is the first of a
	 * chain; each further module has a context of its own that shares `pins`, `batch` and
	 * `libctx` with the first (`root`) and is freed with it.
	 */
	struct p11s_ctx *next;
	struct p11s_ctx *root;      /* the first context; itself for the first */
	int module_default;         /* no module was given: the p11-kit proxy */
	char *module_name;          /* p11-kit's name of the module (or RFC 7512's), lazily */
	struct p11s_card_watch *watch; /* p11s_ctx_watch_readers(), first context only */
	/*
	 * First context only: private-key operations of its keys from several threads (sign
	 * --batch --jobs; key.c run_op()). The common case (key current, logged in, card in
	 * place) runs under the read side, so with a P11S_CAP_CONCURRENT backend the token calls
	 * of several threads overlap, each in its own session; finding a key again, logging in
	 * and recovering from a failure run under the write side, as does every operation of
	 * other backends. Writer-preferring: a recovery is not starved by a busy batch.
	 */
	pthread_rwlock_t op_lock;
	int op_lock_ready;
};

struct p11s_key {
	p11s_ctx *ctx;
	p11s_slot slot;             /* copy of the slot (info included) */
	p11s_object obj;            /* the private key; strings owned by `owner` */
	p11s_object *owner;         /* array the object came from (freed with the key) */
	size_t owner_n;
	X509 *cert;                 /* same CKA_ID on the token, may be NULL */
	STACK_OF(X509) *cas;        /* CA certificates on the same token */
	EVP_PKEY *pub;              /* public key (from cert, key attributes or public key object) */
	char *uri;
	char curve[16];
	p11s_pin_source *uri_pins;  /* the URI's pin-value or pin-source, may be NULL */
	int stale;                  /* token removed or session lost: find token, login, handle again */
	unsigned long card_gen;     /* card removals seen (p11s_ctx_watch_readers()) when found */
	int extra_refs;             /* p11s_key_up_ref() references beyond the first */
};

/*
 * The context of each module of `ctx`'s chain that `uri` (may be NULL) can name: its
 * module-path and module-name (RFC 7512 §2.3) select among the loaded modules; with no module
 * configured (the p11-kit proxy) a module-name loads the module p11-kit registers under that
 * name. `*out` (malloc'd, NULL-terminated) may be empty.
 */
int p11s_token__modules(p11s_ctx *ctx, const p11s_uri *uri, p11s_ctx ***out);

/*
 * With p11s_ctx_watch_readers(): P11S_ERR_TOKEN_ABSENT when the card of the key's token is
 * out of its reader; marks the key stale when the card was removed since the key was found,
 * so that it is found and logged in to again. P11S_OK otherwise (and without a watch).
 */
int p11s_token__card_check(p11s_key *key);
/* Non-zero when p11s_token__card_check() has something to do (changes nothing itself). */
int p11s_token__card_changed(const p11s_key *key);

/* The number of card removals seen so far (0 without a watch), for a key being found. */
unsigned long p11s_token__card_gen(const p11s_ctx *ctx);

/* Enumerate slots into ctx->slots, with token URIs filled in. */
int p11s_token__slots(p11s_ctx *ctx);

/*
 * Log in to the token in `slot` if it needs it and is not logged in yet: refuse a locked PIN
 * without trying it, use the PIN pad on a protected authentication path, otherwise read a PIN
 * from `pins` (or the context's source) and report the tries left on failure.
 */
int p11s_token__login(p11s_ctx *ctx, const p11s_slot *slot, p11s_pin_source *pins);

/*
 * Private-key operations used by the bridge: check the backend's capabilities (a missing one
 * is P11S_ERR_UNSUPPORTED naming it), make sure the token is logged in, then call the backend.
 */
int p11s_token__sign(p11s_key *key, const p11s_mech *mech, const unsigned char *in, size_t inlen,
    p11s_buf **out);
int p11s_token__decrypt(p11s_key *key, const p11s_mech *mech, const unsigned char *in,
    size_t inlen, p11s_buf **out);
/* `peer`: the uncompressed EC point, or for an XDH key the raw u-coordinate (sys/provider.h). */
int p11s_token__derive(p11s_key *key, const unsigned char *peer, size_t peer_len, p11s_buf **out);

#endif

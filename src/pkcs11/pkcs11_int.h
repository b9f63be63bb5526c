/*
 * The "pkcs11" backend's own parts, shared by its three files: pkcs11.c (module, session pool,
 * slots, login, the ops table), pkcs11_objects.c (reading objects) and pkcs11_crypto.c (sign,
 * decrypt, derive). Private to the backend.
 */
#ifndef P11S_PKCS11_INT_H
#define P11S_PKCS11_INT_H

#include <pthread.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>

#include <p11smime/sys/provider.h>

/*
 * The key type of X25519 and X448 keys (PKCS#11 v3.0 Current Mechanisms §2.3.7, §2.3.8:
 * Montgomery elliptic curve key objects). The pkcs11.h of p11-kit 0.24 (Debian 12) defines
 * CKK_EC_EDWARDS but not this one.
 */
#ifndef CKK_EC_MONTGOMERY
#define CKK_EC_MONTGOMERY 0x00000041UL
#endif

/* Idle sessions kept per slot; more concurrent users open more and close the surplus. */
#define POOL_MAX 8

struct pool {
	CK_SLOT_ID slot;
	unsigned long gen;   /* bumped on reset: a session of an older generation is not pooled */
	size_t nopen;        /* sessions of this generation that are open, idle or in use */
	size_t nidle;
	CK_SESSION_HANDLE idle[POOL_MAX];
};

struct priv {
	CK_FUNCTION_LIST *f;
	p11s_provider_cfg cfg;  /* copy: get_pin for context-specific logins */
	int initialized;        /* C_Initialize succeeded in this process */
	int finalize;           /* we initialised the module, so we finalise it */
	int serialize;          /* CKR_CANT_LOCK: one operation at a time */
	int locks_ready;
	pthread_mutex_t lock;   /* the pools */
	pthread_mutex_t call;   /* whole operations, when serialize */
	pid_t pid;              /* process that initialised the module */
	struct pool *pools;
	size_t npools;
};

/* A session taken from a pool for one operation. */
typedef struct sess {
	CK_SLOT_ID slot;
	unsigned long gen;
	CK_SESSION_HANDLE h;
	int have;
} sess;

/* Return values after which the session (and, with removal, every session) is gone. */
static inline int p11s_pkcs11__session_dead(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

/*
 * Enter the module for one operation: re-initialise it after fork(), serialise a module that
 * cannot lock, keep the module's OpenSSL errors out of the caller's queue. Pair with leave().
 */
int p11s_pkcs11__enter(struct priv *pv);
void p11s_pkcs11__leave(struct priv *pv);

/* A session of `slot` from its pool (or a new one); give it back with sess_put(). */
int p11s_pkcs11__sess_get(struct priv *pv, CK_SLOT_ID slot, sess *s);
/* Give a session back after an operation that ended with `rv` (a dead one is dropped). */
void p11s_pkcs11__sess_put(struct priv *pv, sess *s, CK_RV rv);
/* Close a session left with an operation active, keeping the slot's login alive. */
void p11s_pkcs11__sess_discard(struct priv *pv, sess *s);

/* The ops of pkcs11_objects.c and pkcs11_crypto.c (sys/provider.h). */
int p11s_pkcs11__objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n);
int p11s_pkcs11__sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out);
int p11s_pkcs11__decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out);
int p11s_pkcs11__derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out);
/* The op of pkcs11_keygen.c. */
int p11s_pkcs11__generate_keypair(p11s_provider *p, const p11s_slot *slot,
    const p11s_keygen_spec *spec);
int p11s_pkcs11__create_certificate(p11s_provider *p, const p11s_slot *slot,
    const p11s_cert_spec *spec);

#endif

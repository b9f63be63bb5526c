/*
 * The default backend "pkcs11": a thin layer on p11-kit (module loading) and the module's
 * CK_FUNCTION_LIST, with a small session pool per slot (DESIGN.md decision 2). It sends
 * CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_ECDSA, CKM_EDDSA and CKM_ECDH1_DERIVE
 * to the token as themselves and never falls back to another mechanism.
 *
 * Threads: the module is initialised with CKF_OS_LOCKING_OK (PKCS#11 v2.40 C_Initialize); a
 * module that answers CKR_CANT_LOCK is initialised without arguments and every operation on it
 * is serialised here. The pool has its own mutex; a session is used by one thread at a time.
 *
 * Object handles stay valid while the pool keeps a session open; after P11S_ERR_DEVICE_REMOVED
 * (every session lost) the caller logs in and lists the objects again, since tokens such as
 * SoftHSM invalidate handles with the last session (STANDARDS.md §11).
 *
 * Memory: objects' strings and byte strings are malloc()ed; p11s_objects_free() (ck.c, shared
 * by every backend) releases them with free().
 *
 * This file: module initialisation, the session pool, slots, login and the ops table; objects
 * are read in pkcs11_objects.c, private-key operations run in pkcs11_crypto.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include <p11smime/secret.h>

#include "core/error_int.h"
#include "pkcs11/backends.h"
#include "pkcs11/ck.h"
#include "pkcs11/pkcs11_int.h"

/* --- module initialisation ------------------------------------------------------------ */

static int module_init(struct priv *pv)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	/* v2.40 C_Initialize: no mutex functions, and the OS primitives may be used. */
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	ERR_set_mark();
	rv = pv->f->C_Initialize(&args);
	if (rv == CKR_CANT_LOCK) {
		/* The module cannot lock: promise single-threaded use and keep that promise. */
		rv = pv->f->C_Initialize(NULL);
		if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			pv->serialize = 1;
		}
	}
	/*
	 * A module such as SoftHSM links the same libcrypto and leaves its errors (ENGINE
	 * loading) in the caller's queue (DESIGN.md "Pitfalls"): drop what it added.
	 */
	ERR_pop_to_mark();
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in the process initialised it: use it, leave finalising to them. */
		pv->finalize = 0;
	} else if (rv == CKR_OK) {
		pv->finalize = 1;
	} else {
		return p11s_error__ckr(P11S_ERR_MODULE, rv, "cannot initialise PKCS#11 module %s: "
		    "C_Initialize: %s", pv->cfg.module_path, p11s_ck__rv_name(rv));
	}
	pv->initialized = 1;
	pv->pid = getpid();
	return P11S_OK;
}

static void pools_forget(struct priv *pv)
{
	free(pv->pools);
	pv->pools = NULL;
	pv->npools = 0;
}

/*
 * PKCS#11 v2.40 §5.5.1: a forked child must call C_Initialize itself; sessions and login
 * state inherited from the parent are undefined. Forget them (closing them could close the
 * parent's sessions on a shared HSM) and initialise again. The child is single-threaded at
 * this point, so the locks are simply re-created.
 */
static int reinit_after_fork(struct priv *pv)
{
	pthread_mutex_init(&pv->lock, NULL);
	pthread_mutex_init(&pv->call, NULL);
	pools_forget(pv);
	pv->initialized = 0;
	return module_init(pv);
}

/*
 * Every operation starts with p11s_pkcs11__enter() and ends with p11s_pkcs11__leave(): re-initialise after fork,
 * serialise a module that cannot lock, and keep the module's OpenSSL errors out of the
 * caller's queue.
 */
int p11s_pkcs11__enter(struct priv *pv)
{
	int rc;

	if (pv == NULL || pv->f == NULL) {
		return p11s_error__set(P11S_ERR_MODULE, "PKCS#11 module is not loaded");
	}
	if (pv->pid != getpid()) {
		if ((rc = reinit_after_fork(pv)) < 0) {
			return rc;
		}
	} else if (!pv->initialized) {
		return p11s_error__set(P11S_ERR_MODULE, "PKCS#11 module %s is not initialised",
		    pv->cfg.module_path);
	}
	if (pv->serialize) {
		pthread_mutex_lock(&pv->call);
	}
	ERR_set_mark();
	return P11S_OK;
}

void p11s_pkcs11__leave(struct priv *pv)
{
	ERR_pop_to_mark();
	if (pv->serialize) {
		pthread_mutex_unlock(&pv->call);
	}
}

/* --- session pool ----------------------------------------------------------------------- */

/* Under pv->lock. */
static struct pool *pool_find(struct priv *pv, CK_SLOT_ID slot, int create)
{
	struct pool *np;

	for (size_t i = 0; i < pv->npools; i++) {
		if (pv->pools[i].slot == slot) {
			return &pv->pools[i];
		}
	}
	if (!create) {
		return NULL;
	}
	if ((np = realloc(pv->pools, (pv->npools + 1) * sizeof(*np))) == NULL) {
		return NULL;
	}
	pv->pools = np;
	np = &pv->pools[pv->npools++];
	memset(np, 0, sizeof(*np));
	np->slot = slot;
	return np;
}

/* Take an idle session of `slot` or open a new serial R/O one (enough for session objects). */
int p11s_pkcs11__sess_get(struct priv *pv, CK_SLOT_ID slot, sess *s)
{
	struct pool *pl;
	CK_RV rv;

	memset(s, 0, sizeof(*s));
	s->slot = slot;
	pthread_mutex_lock(&pv->lock);
	if ((pl = pool_find(pv, slot, 1)) == NULL) {
		pthread_mutex_unlock(&pv->lock);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	s->gen = pl->gen;
	if (pl->nidle > 0) {
		s->h = pl->idle[--pl->nidle];
		s->have = 1;
		pthread_mutex_unlock(&pv->lock);
		return P11S_OK;
	}
	pl->nopen++; /* reserved now, so that a concurrent put never closes the last session */
	pthread_mutex_unlock(&pv->lock);

	rv = pv->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s->h);
	if (rv != CKR_OK) {
		pthread_mutex_lock(&pv->lock);
		if ((pl = pool_find(pv, slot, 0)) != NULL && pl->gen == s->gen && pl->nopen > 0) {
			pl->nopen--;
		}
		pthread_mutex_unlock(&pv->lock);
		return p11s_ck__rv(rv, "C_OpenSession");
	}
	s->have = 1;
	return P11S_OK;
}

/* Under pv->lock: close the idle sessions of a pool whose sessions are gone, start afresh. */
static void pool_reset(struct priv *pv, struct pool *pl)
{
	for (size_t i = 0; i < pl->nidle; i++) {
		(void)pv->f->C_CloseSession(pl->idle[i]);
	}
	pl->nidle = 0;
	pl->nopen = 0;
	pl->gen++;
}

/*
 * Give a session back after an operation that ended with `rv`. The pool keeps up to POOL_MAX
 * idle sessions and so never closes the last one: login is per application per token and
 * ends with its last session (PKCS#11 v2.40 C_Login, C_CloseSession).
 */
void p11s_pkcs11__sess_put(struct priv *pv, sess *s, CK_RV rv)
{
	struct pool *pl;
	int close_it = 0;

	if (!s->have) {
		return;
	}
	s->have = 0;
	pthread_mutex_lock(&pv->lock);
	pl = pool_find(pv, s->slot, 0);
	if (pl == NULL || pl->gen != s->gen) {
		close_it = 1;
	} else if (p11s_pkcs11__session_dead(rv)) {
		/* Removal invalidates every session of the token: reopen on the next use. */
		pool_reset(pv, pl);
		close_it = 1;
	} else if (pl->nidle < POOL_MAX) {
		pl->idle[pl->nidle++] = s->h;
	} else {
		pl->nopen--;
		close_it = 1;
	}
	pthread_mutex_unlock(&pv->lock);
	if (close_it) {
		(void)pv->f->C_CloseSession(s->h);
	}
}

/*
 * A session left with an operation active (we gave up between C_SignInit and C_Sign) cannot
 * be reused: v2.40 has no way to cancel. Close it, opening a replacement first if it is the
 * slot's only session, so that the login state survives.
 */
void p11s_pkcs11__sess_discard(struct priv *pv, sess *s)
{
	struct pool *pl;
	CK_SESSION_HANDLE nh;
	int last;

	if (!s->have) {
		return;
	}
	s->have = 0;
	pthread_mutex_lock(&pv->lock);
	pl = pool_find(pv, s->slot, 0);
	last = pl != NULL && pl->gen == s->gen && pl->nopen == 1;
	pthread_mutex_unlock(&pv->lock);
	if (last && pv->f->C_OpenSession(s->slot, CKF_SERIAL_SESSION, NULL, NULL, &nh) == CKR_OK) {
		pthread_mutex_lock(&pv->lock);
		pl = pool_find(pv, s->slot, 0);
		if (pl != NULL && pl->gen == s->gen && pl->nidle < POOL_MAX) {
			pl->idle[pl->nidle++] = nh;
			pl->nopen++;
			nh = CK_INVALID_HANDLE;
		}
		pthread_mutex_unlock(&pv->lock);
		if (nh != CK_INVALID_HANDLE) {
			(void)pv->f->C_CloseSession(nh);
		}
	}
	pthread_mutex_lock(&pv->lock);
	pl = pool_find(pv, s->slot, 0);
	if (pl != NULL && pl->gen == s->gen && pl->nopen > 0) {
		pl->nopen--;
	}
	pthread_mutex_unlock(&pv->lock);
	(void)pv->f->C_CloseSession(s->h);
}

/* --- open, close, slots ----------------------------------------------------------------- */

static int pk_open(p11s_provider *p, const p11s_provider_cfg *cfg)
{
	struct priv *pv = p->priv;
	const char *msg;

	if (pv == NULL || cfg == NULL || cfg->module_path == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: no module path");
	}
	pv->cfg = *cfg;
	pthread_mutex_init(&pv->lock, NULL);
	pthread_mutex_init(&pv->call, NULL);
	pv->locks_ready = 1;
	/* Managed by p11-kit (flags 0): reference-counted initialisation, fork tracking. */
	ERR_set_mark();
	pv->f = p11_kit_module_load(cfg->module_path, 0);
	ERR_pop_to_mark();
	if (pv->f == NULL) {
		msg = p11_kit_message();
		return p11s_error__set(P11S_ERR_MODULE, "cannot load PKCS#11 module %s: %s",
		    cfg->module_path, msg != NULL && *msg != '\0' ? msg : "unknown error");
	}
	return module_init(pv);
}

static void pk_close(p11s_provider *p)
{
	struct priv *pv = p->priv;

	if (pv == NULL) {
		return;
	}
	if (pv->f != NULL) {
		ERR_set_mark();
		/* In a forked child that never re-initialised, the parent's state is not ours. */
		if (pv->initialized && pv->pid == getpid()) {
			for (size_t i = 0; i < pv->npools; i++) {
				for (size_t j = 0; j < pv->pools[i].nidle; j++) {
					(void)pv->f->C_CloseSession(pv->pools[i].idle[j]);
				}
			}
			if (pv->finalize) {
				(void)pv->f->C_Finalize(NULL);
			}
		}
		p11_kit_module_release(pv->f);
		ERR_pop_to_mark();
		pv->f = NULL;
	}
	pools_forget(pv);
	if (pv->locks_ready) {
		pthread_mutex_destroy(&pv->lock);
		pthread_mutex_destroy(&pv->call);
		pv->locks_ready = 0;
	}
	pv->initialized = 0;
	pv->finalize = 0;
}

static int pk_slots(p11s_provider *p, p11s_slot **out, size_t *n)
{
	struct priv *pv = p->priv;
	int rc;

	if (out == NULL || n == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: slots: NULL argument");
	}
	*out = NULL;
	*n = 0;
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	rc = p11s_ck__slots(pv->f, out, n);
	p11s_pkcs11__leave(pv);
	return rc;
}

/* --- login ------------------------------------------------------------------------------ */

static int pk_login(p11s_provider *p, const p11s_slot *slot, unsigned long user_type,
    const p11s_secret *pin)
{
	struct priv *pv = p->priv;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int rc;

	if (slot == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: login: NULL slot");
	}
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	if ((rc = p11s_pkcs11__sess_get(pv, slot->handle, &s)) < 0) {
		goto out;
	}
	/* v2.40 C_Login: a NULL_PTR PIN on a protected authentication path (PIN pad). */
	rv = pv->f->C_Login(s.h, user_type,
	    pin != NULL ? (CK_UTF8CHAR_PTR)p11s_secret_data(pin) : NULL_PTR,
	    pin != NULL ? (CK_ULONG)p11s_secret_len(pin) : 0);
	if (rv == CKR_USER_ALREADY_LOGGED_IN) {
		rv = CKR_OK; /* login is per application per token: already done */
	}
	rc = p11s_ck__rv(rv, "C_Login");
out:
	p11s_pkcs11__sess_put(pv, &s, rv);
	p11s_pkcs11__leave(pv);
	return rc;
}

static int pk_logged_in(p11s_provider *p, const p11s_slot *slot)
{
	struct priv *pv = p->priv;
	CK_SESSION_INFO si;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int yes = 0;

	if (slot == NULL || p11s_pkcs11__enter(pv) < 0) {
		return 0;
	}
	if (p11s_pkcs11__sess_get(pv, slot->handle, &s) == P11S_OK) {
		rv = pv->f->C_GetSessionInfo(s.h, &si);
		yes = rv == CKR_OK && (si.state == CKS_RO_USER_FUNCTIONS ||
		    si.state == CKS_RW_USER_FUNCTIONS);
		p11s_pkcs11__sess_put(pv, &s, rv);
	}
	p11s_pkcs11__leave(pv);
	return yes;
}

const struct p11s_provider_ops p11s_pkcs11_ops = {
	.abi = P11S_PROVIDER_ABI,
	.name = "pkcs11",
	.caps = P11S_CAP_RSA_PKCS_SIGN | P11S_CAP_RSA_PSS | P11S_CAP_RSA_PKCS_DECRYPT |
	    P11S_CAP_RSA_OAEP | P11S_CAP_ECDSA | P11S_CAP_ECDH | P11S_CAP_EDDSA |
	    P11S_CAP_CONTEXT_LOGIN | P11S_CAP_PROTECTED_AUTH | P11S_CAP_KEYGEN |
	    P11S_CAP_CREATE_CERT | P11S_CAP_CONCURRENT, /* a pooled session per operation */
	.priv_size = sizeof(struct priv),
	.open = pk_open,
	.slots = pk_slots,
	.login = pk_login,
	.logged_in = pk_logged_in,
	.objects = p11s_pkcs11__objects,
	.sign = p11s_pkcs11__sign,
	.decrypt = p11s_pkcs11__decrypt,
	.derive = p11s_pkcs11__derive,
	.close = pk_close,
	.generate_keypair = p11s_pkcs11__generate_keypair,
	.create_certificate = p11s_pkcs11__create_certificate,
};

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
 * Memory: objects' strings and byte strings are malloc()ed; p11s_objects_free() (below, shared
 * by every backend) releases them with free().
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

static const char *mgf_name(unsigned long mgf)
{
	switch (mgf) {
	case CKG_MGF1_SHA1:
		return "CKG_MGF1_SHA1";
	case CKG_MGF1_SHA224:
		return "CKG_MGF1_SHA224";
	case CKG_MGF1_SHA256:
		return "CKG_MGF1_SHA256";
	case CKG_MGF1_SHA384:
		return "CKG_MGF1_SHA384";
	case CKG_MGF1_SHA512:
		return "CKG_MGF1_SHA512";
	default:
		return "CKG_unknown";
	}
}

/* Return values after which the session (and, with removal, every session) is gone. */
static int session_dead(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT;
}

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
 * Every operation starts with enter() and ends with leave(): re-initialise after fork,
 * serialise a module that cannot lock, and keep the module's OpenSSL errors out of the
 * caller's queue.
 */
static int enter(struct priv *pv)
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

static void leave(struct priv *pv)
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
static int sess_get(struct priv *pv, CK_SLOT_ID slot, sess *s)
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
static void sess_put(struct priv *pv, sess *s, CK_RV rv)
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
	} else if (session_dead(rv)) {
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
static void sess_discard(struct priv *pv, sess *s)
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
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	rc = p11s_ck__slots(pv->f, out, n);
	leave(pv);
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
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if ((rc = sess_get(pv, slot->handle, &s)) < 0) {
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
	sess_put(pv, &s, rv);
	leave(pv);
	return rc;
}

static int pk_logged_in(p11s_provider *p, const p11s_slot *slot)
{
	struct priv *pv = p->priv;
	CK_SESSION_INFO si;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int yes = 0;

	if (slot == NULL || enter(pv) < 0) {
		return 0;
	}
	if (sess_get(pv, slot->handle, &s) == P11S_OK) {
		rv = pv->f->C_GetSessionInfo(s.h, &si);
		yes = rv == CKR_OK && (si.state == CKS_RO_USER_FUNCTIONS ||
		    si.state == CKS_RW_USER_FUNCTIONS);
		sess_put(pv, &s, rv);
	}
	leave(pv);
	return yes;
}

/* --- objects ---------------------------------------------------------------------------- */

/* Whether a C_GetAttributeValue failure only means "this attribute is not available". */
static int attr_absent(CK_RV rv)
{
	return rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

/*
 * Read one variable-length attribute in two passes (size, then value). Sensitive, invalid or
 * unavailable attributes leave `out` empty and return CKR_OK: each is read on its own, so one
 * such attribute does not hide the others (v2.40 C_GetAttributeValue).
 */
static CK_RV attr_bytes(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, unsigned char **data, size_t *len, int nul)
{
	CK_ATTRIBUTE a = { type, NULL_PTR, 0 };
	unsigned char *buf;
	CK_ULONG size;
	CK_RV rv;

	*data = NULL;
	*len = 0;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (attr_absent(rv) || (rv == CKR_OK && a.ulValueLen == CK_UNAVAILABLE_INFORMATION)) {
		return CKR_OK;
	}
	if (rv != CKR_OK) {
		return rv;
	}
	size = a.ulValueLen;
	if ((buf = malloc(size + 1)) == NULL) {
		return CKR_HOST_MEMORY;
	}
	a.pValue = buf;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > size) {
		free(buf);
		return attr_absent(rv) || rv == CKR_OK ? CKR_OK : rv;
	}
	buf[a.ulValueLen] = '\0'; /* labels are used as strings */
	if (!nul && a.ulValueLen == 0) {
		free(buf);
		return CKR_OK;
	}
	*data = buf;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV attr_ulong(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	CK_RV rv;

	*v = CK_UNAVAILABLE_INFORMATION;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_OK && a.ulValueLen != sizeof(*v)) {
		*v = CK_UNAVAILABLE_INFORMATION;
	}
	return attr_absent(rv) ? CKR_OK : rv;
}

static CK_RV attr_bool(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
    CK_ATTRIBUTE_TYPE type, int *v)
{
	CK_BBOOL b = CK_FALSE;
	CK_ATTRIBUTE a = { type, &b, sizeof(b) };
	CK_RV rv;

	*v = 0;
	rv = pv->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_OK && a.ulValueLen == sizeof(b)) {
		*v = b == CK_TRUE;
	}
	return attr_absent(rv) ? CKR_OK : rv;
}

/* Every object matching `tmpl`; FindObjectsFinal is always called, so the session stays clean. */
static CK_RV find_all(struct priv *pv, CK_SESSION_HANDLE h, CK_ATTRIBUTE *tmpl, CK_ULONG ntmpl,
    CK_OBJECT_HANDLE **out, size_t *n)
{
	CK_OBJECT_HANDLE batch[64], *all = NULL, *na;
	CK_ULONG got = 0;
	size_t cnt = 0;
	CK_RV rv, frv;

	*out = NULL;
	*n = 0;
	if ((rv = pv->f->C_FindObjectsInit(h, tmpl, ntmpl)) != CKR_OK) {
		return rv;
	}
	for (;;) {
		rv = pv->f->C_FindObjects(h, batch, sizeof(batch) / sizeof(batch[0]), &got);
		if (rv != CKR_OK || got == 0) {
			break;
		}
		if ((na = realloc(all, (cnt + got) * sizeof(*all))) == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		all = na;
		memcpy(all + cnt, batch, got * sizeof(*all));
		cnt += got;
	}
	frv = pv->f->C_FindObjectsFinal(h);
	if (rv == CKR_OK) {
		rv = frv;
	}
	if (rv != CKR_OK) {
		free(all);
		return rv;
	}
	*out = all;
	*n = cnt;
	return CKR_OK;
}

/*
 * Read the attributes of sys/provider.h's p11s_object for one object, each with its own
 * C_GetAttributeValue calls: the fallback for tokens that get multi-attribute templates wrong
 * (read_object_batch below), and the reference for what every field holds when absent.
 */
static CK_RV read_object_single(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    CK_SLOT_ID slot, p11s_object_class cls, p11s_object *o)
{
	unsigned char *label = NULL;
	size_t label_len;
	CK_ULONG kt;
	int b;
	CK_RV rv;

	memset(o, 0, sizeof(*o));
	o->handle = oh;
	o->slot = slot;
	o->cls = cls;
	if ((rv = attr_bytes(pv, h, oh, CKA_LABEL, &label, &label_len, 1)) != CKR_OK) {
		return rv;
	}
	if (label == NULL && (label = calloc(1, 1)) == NULL) {
		return CKR_HOST_MEMORY;
	}
	o->label = (char *)label;
	if ((rv = attr_bytes(pv, h, oh, CKA_ID, &o->id.data, &o->id.len, 0)) != CKR_OK) {
		return rv;
	}
	if (cls == P11S_OBJ_CERTIFICATE) {
		return attr_bytes(pv, h, oh, CKA_VALUE, &o->value.data, &o->value.len, 0);
	}
	if ((rv = attr_ulong(pv, h, oh, CKA_KEY_TYPE, &kt)) != CKR_OK) {
		return rv;
	}
	switch (kt) {
	case CKK_RSA:
		o->key_type = P11S_KEY_RSA;
		if ((rv = attr_bytes(pv, h, oh, CKA_MODULUS, &o->modulus.data, &o->modulus.len,
		    0)) != CKR_OK) {
			return rv;
		}
		if ((rv = attr_bytes(pv, h, oh, CKA_PUBLIC_EXPONENT, &o->public_exponent.data,
		    &o->public_exponent.len, 0)) != CKR_OK) {
			return rv;
		}
		break;
	case CKK_EC:
	case CKK_EC_EDWARDS:
		o->key_type = kt == CKK_EC ? P11S_KEY_EC : P11S_KEY_EDDSA;
		if ((rv = attr_bytes(pv, h, oh, CKA_EC_PARAMS, &o->ec_params.data,
		    &o->ec_params.len, 0)) != CKR_OK) {
			return rv;
		}
		/* Standard on public keys; some tokens also keep it on the private key. */
		if ((rv = attr_bytes(pv, h, oh, CKA_EC_POINT, &o->ec_point.data, &o->ec_point.len,
		    0)) != CKR_OK) {
			return rv;
		}
		break;
	default:
		o->key_type = P11S_KEY_UNKNOWN;
		break;
	}
	if (cls != P11S_OBJ_PRIVATE_KEY) {
		return CKR_OK;
	}
	if ((rv = attr_bool(pv, h, oh, CKA_ALWAYS_AUTHENTICATE, &b)) != CKR_OK) {
		return rv;
	}
	o->always_authenticate = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_SIGN, &b)) != CKR_OK) {
		return rv;
	}
	o->can_sign = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_DECRYPT, &b)) != CKR_OK) {
		return rv;
	}
	o->can_decrypt = b ? 1 : 0;
	if ((rv = attr_bool(pv, h, oh, CKA_DERIVE, &b)) != CKR_OK) {
		return rv;
	}
	o->can_derive = b ? 1 : 0;
	return CKR_OK;
}

/*
 * The attributes read_object_batch asks for, and of which object classes. `core` ones exist on
 * every object of those classes (v2.40 §4.4, §4.6.3, §4.7, §4.9: CKA_LABEL and CKA_ID default
 * to empty, CKA_KEY_TYPE, CKA_SIGN, CKA_DECRYPT, CKA_DERIVE and an X.509 certificate's
 * CKA_VALUE are always there): a token that reports one of them unavailable in a template that
 * also holds invalid attributes has mishandled the template, not the attribute.
 */
enum {
	A_LABEL,
	A_ID,
	A_VALUE,
	A_KEY_TYPE,
	A_MODULUS,
	A_PUBLIC_EXPONENT,
	A_EC_PARAMS,
	A_EC_POINT,
	A_ALWAYS_AUTHENTICATE,
	A_SIGN,
	A_DECRYPT,
	A_DERIVE,
	A_COUNT
};

enum { K_BYTES, K_ULONG, K_BOOL };

#define C_PRIV (1u << P11S_OBJ_PRIVATE_KEY)
#define C_PUB (1u << P11S_OBJ_PUBLIC_KEY)
#define C_CERT (1u << P11S_OBJ_CERTIFICATE)

static const struct {
	CK_ATTRIBUTE_TYPE type;
	unsigned char kind;
	unsigned char core;
	unsigned int classes;
} batch_attrs[A_COUNT] = {
	[A_LABEL] = { CKA_LABEL, K_BYTES, 1, C_PRIV | C_PUB | C_CERT },
	[A_ID] = { CKA_ID, K_BYTES, 1, C_PRIV | C_PUB | C_CERT },
	[A_VALUE] = { CKA_VALUE, K_BYTES, 1, C_CERT },
	[A_KEY_TYPE] = { CKA_KEY_TYPE, K_ULONG, 1, C_PRIV | C_PUB },
	[A_MODULUS] = { CKA_MODULUS, K_BYTES, 0, C_PRIV | C_PUB },
	[A_PUBLIC_EXPONENT] = { CKA_PUBLIC_EXPONENT, K_BYTES, 0, C_PRIV | C_PUB },
	[A_EC_PARAMS] = { CKA_EC_PARAMS, K_BYTES, 0, C_PRIV | C_PUB },
	/* Standard on public keys; some tokens also keep it on the private key. */
	[A_EC_POINT] = { CKA_EC_POINT, K_BYTES, 0, C_PRIV | C_PUB },
	/* v2.20 and later: older tokens do not know it. */
	[A_ALWAYS_AUTHENTICATE] = { CKA_ALWAYS_AUTHENTICATE, K_BOOL, 0, C_PRIV },
	[A_SIGN] = { CKA_SIGN, K_BOOL, 1, C_PRIV },
	[A_DECRYPT] = { CKA_DECRYPT, K_BOOL, 1, C_PRIV },
	[A_DERIVE] = { CKA_DERIVE, K_BOOL, 1, C_PRIV },
};

/*
 * Values put in the template before the first call: a token that answers every entry
 * overwrites them (a length, CK_UNAVAILABLE_INFORMATION, a key type, CK_TRUE/CK_FALSE), so
 * finding one afterwards means the token skipped the entry.
 */
#define LEN_UNSET ((CK_ULONG)-2)
#define KEY_TYPE_UNSET ((CK_KEY_TYPE)-2)
#define BOOL_UNSET ((CK_BBOOL)0xa5)

/* Whether attribute `a` of an object of key type `kt` goes into p11s_object. */
static int batch_needed(int a, CK_KEY_TYPE kt)
{
	switch (a) {
	case A_MODULUS:
	case A_PUBLIC_EXPONENT:
		return kt == CKK_RSA;
	case A_EC_PARAMS:
	case A_EC_POINT:
		return kt == CKK_EC || kt == CKK_EC_EDWARDS;
	default:
		return 1;
	}
}

/* As attr_bool: true only for a one-byte CK_TRUE. */
static unsigned int batch_bool(const CK_ATTRIBUTE *e, CK_BBOOL b)
{
	return e->ulValueLen == sizeof(b) && b == CK_TRUE ? 1 : 0;
}

/*
 * Read every attribute of `o` (handle, slot and class already set) in one template, two
 * calls (PKCS#11 v2.40 base §5.7.5 C_GetAttributeValue): the first learns the lengths of the
 * variable-length attributes (pValue NULL_PTR) and, since the spec treats every entry on its
 * own, already reads the fixed-size ones (CKA_KEY_TYPE, the CK_BBOOLs); the second reads the
 * values of the variable-length attributes that this key type uses. Per the spec, an entry the
 * token does not have (CKR_ATTRIBUTE_TYPE_INVALID) or will not reveal (CKR_ATTRIBUTE_SENSITIVE)
 * comes back as CK_UNAVAILABLE_INFORMATION while the others are answered: it is absent, as in
 * read_object_single. CKR_BUFFER_TOO_SMALL on the second call means an attribute grew between
 * the calls: both are made once more.
 *
 * Anything else (another error, an entry left unanswered, a core attribute reported missing)
 * sets `*fallback`, and the caller reads the object attribute by attribute as before, so a
 * token that mishandles templates costs calls, never results. Returns CKR_OK, or an error that
 * ends the listing (the object is gone, the session is gone, out of memory).
 */
static CK_RV read_object_batch(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    p11s_object *o, int *fallback)
{
	const unsigned int mask = 1u << o->cls;
	CK_ATTRIBUTE t[A_COUNT], v[A_COUNT];
	int at[A_COUNT], va[A_COUNT];
	unsigned char *buf[A_COUNT];
	CK_BBOOL bools[A_COUNT];
	CK_KEY_TYPE kt = KEY_TYPE_UNSET;
	CK_ULONG nt, nv = 0, len;
	CK_RV rv = CKR_OK;

	*fallback = 0;
	memset(buf, 0, sizeof(buf));
	for (int tries = 0;; tries++) {
		nt = 0;
		for (int a = 0; a < A_COUNT; a++) {
			at[a] = -1;
			if (!(batch_attrs[a].classes & mask)) {
				continue;
			}
			at[a] = (int)nt;
			t[nt].type = batch_attrs[a].type;
			switch (batch_attrs[a].kind) {
			case K_ULONG:
				kt = KEY_TYPE_UNSET;
				t[nt].pValue = &kt;
				t[nt].ulValueLen = sizeof(kt);
				break;
			case K_BOOL:
				bools[a] = BOOL_UNSET;
				t[nt].pValue = &bools[a];
				t[nt].ulValueLen = sizeof(bools[a]);
				break;
			default:
				t[nt].pValue = NULL_PTR;
				t[nt].ulValueLen = LEN_UNSET;
				break;
			}
			nt++;
		}
		rv = pv->f->C_GetAttributeValue(h, oh, t, nt);
		if (rv != CKR_OK && !attr_absent(rv)) {
			goto refused;
		}
		for (int a = 0; a < A_COUNT; a++) {
			if (at[a] < 0) {
				continue;
			}
			if (t[at[a]].ulValueLen == CK_UNAVAILABLE_INFORMATION) {
				if (rv != CKR_OK && batch_attrs[a].core) {
					goto fall_back;
				}
				continue;
			}
			if ((batch_attrs[a].kind == K_BYTES && t[at[a]].ulValueLen == LEN_UNSET) ||
			    (batch_attrs[a].kind == K_ULONG && kt == KEY_TYPE_UNSET) ||
			    (batch_attrs[a].kind == K_BOOL && bools[a] == BOOL_UNSET)) {
				goto fall_back;
			}
		}
		/* As attr_ulong: a length other than a CK_ULONG's is no key type. */
		if (at[A_KEY_TYPE] >= 0 && t[at[A_KEY_TYPE]].ulValueLen != sizeof(kt)) {
			kt = CK_UNAVAILABLE_INFORMATION;
		}

		/* Second call: the values this object needs; empty ones need no call. */
		nv = 0;
		for (int a = 0; a < A_COUNT; a++) {
			if (at[a] < 0 || batch_attrs[a].kind != K_BYTES || !batch_needed(a, kt)) {
				continue;
			}
			len = t[at[a]].ulValueLen;
			if (len == CK_UNAVAILABLE_INFORMATION || len == 0) {
				continue;
			}
			if ((buf[a] = malloc(len + 1)) == NULL) {
				rv = CKR_HOST_MEMORY;
				goto out;
			}
			va[nv] = a;
			v[nv].type = batch_attrs[a].type;
			v[nv].pValue = buf[a];
			v[nv].ulValueLen = len;
			nv++;
		}
		if (nv == 0) {
			rv = CKR_OK;
			break;
		}
		rv = pv->f->C_GetAttributeValue(h, oh, v, nv);
		if (rv == CKR_OK) {
			break;
		}
		for (int a = 0; a < A_COUNT; a++) {
			free(buf[a]);
			buf[a] = NULL;
		}
		if (rv != CKR_BUFFER_TOO_SMALL || tries > 0) {
			goto refused;
		}
	}

	/* The same fields, and the same defaults, as read_object_single. */
	for (CK_ULONG i = 0; i < nv; i++) {
		int a = va[i];
		p11s_bytes *dst;

		len = v[i].ulValueLen;
		if (len == CK_UNAVAILABLE_INFORMATION || len > t[at[a]].ulValueLen ||
		    (len == 0 && a != A_LABEL)) {
			continue; /* left in buf[a], freed below: absent */
		}
		buf[a][len] = '\0'; /* labels are used as strings */
		switch (a) {
		case A_LABEL:
			o->label = (char *)buf[a];
			buf[a] = NULL;
			continue;
		case A_ID:
			dst = &o->id;
			break;
		case A_VALUE:
			dst = &o->value;
			break;
		case A_MODULUS:
			dst = &o->modulus;
			break;
		case A_PUBLIC_EXPONENT:
			dst = &o->public_exponent;
			break;
		case A_EC_PARAMS:
			dst = &o->ec_params;
			break;
		default:
			dst = &o->ec_point;
			break;
		}
		dst->data = buf[a];
		dst->len = len;
		buf[a] = NULL;
	}
	if (o->label == NULL && (o->label = calloc(1, 1)) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (o->cls != P11S_OBJ_CERTIFICATE) {
		switch (kt) {
		case CKK_RSA:
			o->key_type = P11S_KEY_RSA;
			break;
		case CKK_EC:
			o->key_type = P11S_KEY_EC;
			break;
		case CKK_EC_EDWARDS:
			o->key_type = P11S_KEY_EDDSA;
			break;
		default:
			o->key_type = P11S_KEY_UNKNOWN;
			break;
		}
	}
	if (o->cls == P11S_OBJ_PRIVATE_KEY) {
		o->always_authenticate = batch_bool(&t[at[A_ALWAYS_AUTHENTICATE]],
		    bools[A_ALWAYS_AUTHENTICATE]);
		o->can_sign = batch_bool(&t[at[A_SIGN]], bools[A_SIGN]);
		o->can_decrypt = batch_bool(&t[at[A_DECRYPT]], bools[A_DECRYPT]);
		o->can_derive = batch_bool(&t[at[A_DERIVE]], bools[A_DERIVE]);
	}
	rv = CKR_OK;
	goto out;

refused:
	/* Errors about the object or the session, not the template: reading singly would too. */
	if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_HOST_MEMORY || session_dead(rv)) {
		goto out;
	}
fall_back:
	*fallback = 1;
	rv = CKR_OK;
out:
	for (int a = 0; a < A_COUNT; a++) {
		free(buf[a]);
	}
	return rv;
}

/* Read the attributes of sys/provider.h's p11s_object for one object. */
static CK_RV read_object(struct priv *pv, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh,
    CK_SLOT_ID slot, p11s_object_class cls, p11s_object *o)
{
	int fallback;
	CK_RV rv;

	memset(o, 0, sizeof(*o));
	o->handle = oh;
	o->slot = slot;
	o->cls = cls;
	rv = read_object_batch(pv, h, oh, o, &fallback);
	if (fallback) {
		p11s_object_clear(o); /* read_object_single starts afresh */
		rv = read_object_single(pv, h, oh, slot, cls, o);
	}
	return rv;
}

static int pk_objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n)
{
	struct priv *pv = p->priv;
	static const struct {
		CK_OBJECT_CLASS ck;
		p11s_object_class cls;
	} classes[] = {
		{ CKO_PRIVATE_KEY, P11S_OBJ_PRIVATE_KEY },
		{ CKO_PUBLIC_KEY, P11S_OBJ_PUBLIC_KEY },
		{ CKO_CERTIFICATE, P11S_OBJ_CERTIFICATE },
	};
	p11s_object *objs = NULL, *nobjs;
	size_t nobj = 0, nh = 0;
	CK_OBJECT_HANDLE *hs = NULL;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int rc;

	if (slot == NULL || out == NULL || n == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: objects: NULL argument");
	}
	*out = NULL;
	*n = 0;
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if ((rc = sess_get(pv, slot->handle, &s)) < 0) {
		goto out;
	}
	for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
		CK_OBJECT_CLASS ck = classes[c].ck;
		CK_CERTIFICATE_TYPE ct = CKC_X_509;
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &ck, sizeof(ck) },
			{ CKA_CERTIFICATE_TYPE, &ct, sizeof(ct) },
		};
		CK_ULONG ntmpl = ck == CKO_CERTIFICATE ? 2 : 1;

		free(hs);
		hs = NULL;
		if ((rv = find_all(pv, s.h, tmpl, ntmpl, &hs, &nh)) != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_FindObjects");
			goto out;
		}
		if (nh == 0) {
			continue;
		}
		if ((nobjs = realloc(objs, (nobj + nh) * sizeof(*objs))) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		objs = nobjs;
		for (size_t i = 0; i < nh; i++) {
			rv = read_object(pv, s.h, hs[i], slot->handle, classes[c].cls, &objs[nobj]);
			nobj++; /* counted even when partly read, so that it is freed */
			if (rv == CKR_OBJECT_HANDLE_INVALID) {
				/* Destroyed by another application since C_FindObjects. */
				p11s_object_clear(&objs[--nobj]);
				rv = CKR_OK;
				continue;
			}
			if (rv != CKR_OK) {
				rc = p11s_ck__rv(rv, "C_GetAttributeValue");
				goto out;
			}
		}
	}
	*out = objs;
	*n = nobj;
	objs = NULL;
	nobj = 0;
	rc = P11S_OK;
out:
	sess_put(pv, &s, rv);
	leave(pv);
	free(hs);
	p11s_objects_free(objs, nobj);
	return rc;
}

/* --- sign, decrypt ---------------------------------------------------------------------- */

union mech_params {
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
};

/* " (hash CKM_SHA256, mgf CKG_MGF1_SHA256)" for messages about a refused mechanism. */
static void describe_params(const p11s_mech *mech, char *buf, size_t len)
{
	buf[0] = '\0';
	if (mech->type == P11S_MECH_RSA_PKCS_PSS) {
		snprintf(buf, len, " (hash %s, mgf %s, salt %lu)",
		    p11s_mech_name(mech->hash), mgf_name(mech->mgf), mech->salt_len);
	} else if (mech->type == P11S_MECH_RSA_PKCS_OAEP) {
		char lbl[40] = "";

		if (mech->label_len > 0) {
			snprintf(lbl, sizeof(lbl), ", label %zu bytes", mech->label_len);
		}
		snprintf(buf, len, " (hash %s, mgf %s%s)", p11s_mech_name(mech->hash),
		    mgf_name(mech->mgf), lbl);
	}
}

/* Build the CK_MECHANISM for `mech`; `decrypt` selects the decryption set. */
static int build_mech(const p11s_mech *mech, int decrypt, CK_MECHANISM *m,
    union mech_params *prm)
{
	memset(m, 0, sizeof(*m));
	memset(prm, 0, sizeof(*prm));
	m->mechanism = mech->type;
	switch (mech->type) {
	case P11S_MECH_RSA_PKCS:
		/* Sign a DigestInfo (STANDARDS.md §11), or decrypt PKCS#1 v1.5. */
		return P11S_OK;
	case P11S_MECH_RSA_PKCS_PSS:
	case P11S_MECH_ECDSA:
	case P11S_MECH_EDDSA:
		if (decrypt) {
			break;
		}
		if (mech->type == P11S_MECH_RSA_PKCS_PSS) {
			/* CK_RSA_PKCS_PSS_PARAMS = the CMS RSASSA-PSS-params (RFC 4055 §3.1). */
			prm->pss.hashAlg = mech->hash;
			prm->pss.mgf = mech->mgf;
			prm->pss.sLen = mech->salt_len;
			m->pParameter = &prm->pss;
			m->ulParameterLen = sizeof(prm->pss);
		}
		return P11S_OK;
	case P11S_MECH_RSA_PKCS_OAEP:
		if (!decrypt) {
			break;
		}
		/* CK_RSA_PKCS_OAEP_PARAMS: the label is OAEP's label L (RFC 8017 §7.1). */
		prm->oaep.hashAlg = mech->hash;
		prm->oaep.mgf = mech->mgf;
		prm->oaep.source = CKZ_DATA_SPECIFIED;
		prm->oaep.pSourceData = mech->label_len ? (void *)mech->label : NULL;
		prm->oaep.ulSourceDataLen = mech->label_len;
		m->pParameter = &prm->oaep;
		m->ulParameterLen = sizeof(prm->oaep);
		return P11S_OK;
	default:
		break;
	}
	/* Raw RSA (CKM_RSA_X_509) among them: no host-side padding, ever (DESIGN.md 1). */
	return p11s_error__set(P11S_ERR_MECHANISM, "pkcs11 backend does not %s with %s",
	    decrypt ? "decrypt" : "sign", p11s_mech_name(mech->type));
}

/* Translate a failed C_SignInit/C_DecryptInit; a refusal names the mechanism and parameters. */
static int init_error(CK_RV rv, const char *what, const p11s_mech *mech)
{
	char params[160];
	int rc = p11s_ck__rv(rv, what);

	if (rc == P11S_ERR_MECHANISM) {
		describe_params(mech, params, sizeof(params));
		rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv, "token refuses %s%s: %s",
		    p11s_mech_name(mech->type), params, p11s_ck__rv_name(rv));
	}
	return rc;
}

/*
 * CKA_ALWAYS_AUTHENTICATE (v2.40 private key objects, C_Login): right after the Init, a
 * context-specific login with a fresh PIN, nothing else on the session in between. The PIN
 * is never cached: wiped and freed as soon as C_Login returns.
 */
static int context_login(struct priv *pv, CK_SESSION_HANDLE h, const p11s_slot *slot,
    CK_RV *rvp)
{
	p11s_secret *pin = NULL;
	CK_RV rv;
	int rc;

	if (pv->cfg.get_pin == NULL) {
		return p11s_error__set(P11S_ERR_LOGIN, "key needs its PIN for every use "
		    "(CKA_ALWAYS_AUTHENTICATE) but no PIN source is available");
	}
	if ((rc = pv->cfg.get_pin(slot, P11S_USER_CONTEXT_SPECIFIC, &pin, pv->cfg.pin_payload)) <
	    0) {
		p11s_secret_free(pin);
		return rc;
	}
	/* No PIN from the source on a PIN pad reader: the reader asks (NULL_PTR). */
	rv = pv->f->C_Login(h, CKU_CONTEXT_SPECIFIC,
	    pin != NULL ? (CK_UTF8CHAR_PTR)p11s_secret_data(pin) : NULL_PTR,
	    pin != NULL ? (CK_ULONG)p11s_secret_len(pin) : 0);
	p11s_secret_free(pin);
	if (rv == CKR_USER_ALREADY_LOGGED_IN) {
		rv = CKR_OK;
	}
	*rvp = rv;
	return p11s_ck__rv(rv, "C_Login(CKU_CONTEXT_SPECIFIC)");
}

typedef CK_RV (*single_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);

/*
 * Output room that covers the signature or plaintext of every key up to RSA-4096 and every
 * ECDSA/EdDSA curve up to P-521 (2 x 66 octets) and Ed448 (114): with it the size query is
 * not needed.
 */
#define SINGLE_OUT_GUESS 512

/*
 * C_Sign or C_Decrypt in one part. v2.40 §5.2: a buffer that is large enough gets the output
 * at once, so the call goes straight out with room for `guess` octets (the key's output size
 * where known, an upper bound otherwise) and the size query (pBuf NULL_PTR) is made only when
 * the token answers CKR_BUFFER_TOO_SMALL without telling how much it needs. `*active` tells
 * whether the operation is still active afterwards (v2.40 §5.2 and C_Sign: only
 * CKR_BUFFER_TOO_SMALL and a successful size query leave it so).
 */
static CK_RV run_single(single_fn fn, CK_SESSION_HANDLE h, const unsigned char *in, size_t inlen,
    size_t guess, p11s_buf **out, int *active, int *rc)
{
	p11s_buf *buf = NULL;
	CK_ULONG len = (CK_ULONG)guess;
	CK_RV rv = CKR_OK;

	*out = NULL;
	if (len == 0) {
		rv = fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, NULL_PTR, &len);
	}
	for (int tries = 0; rv == CKR_OK && tries < 3; tries++) {
		CK_ULONG room = len;

		if ((*rc = p11s_buf_new(&buf, len)) < 0) {
			return CKR_OK; /* still active: the caller discards the session */
		}
		rv = fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, buf->data, &len);
		if (rv == CKR_BUFFER_TOO_SMALL) {
			p11s_buf_free(buf);
			buf = NULL;
			/* len holds the size now needed; a token that left it alone is asked. */
			rv = len > room ? CKR_OK
					: fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, NULL_PTR, &len);
			continue;
		}
		if (rv == CKR_OK) {
			*active = 0;
			if (len < buf->len) {
				OPENSSL_cleanse(buf->data + len, buf->len - len);
				buf->len = len;
			}
			*out = buf;
			*rc = P11S_OK;
			return CKR_OK;
		}
	}
	*active = rv == CKR_OK; /* gave up on repeated CKR_BUFFER_TOO_SMALL */
	p11s_buf_free(buf);
	if (rv == CKR_OK) {
		*rc = p11s_error__set(P11S_ERR_TOKEN, "token keeps changing the output size");
	}
	return rv;
}

static int sign_or_decrypt(p11s_provider *p, int decrypt, const p11s_object *key,
    const p11s_mech *mech, const unsigned char *in, size_t inlen, p11s_buf **out)
{
	struct priv *pv = p->priv;
	const char *init_name = decrypt ? "C_DecryptInit" : "C_SignInit";
	union mech_params prm;
	CK_MECHANISM m;
	p11s_slot slot;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int active = 0, rc;

	if (out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL output");
	}
	*out = NULL;
	if (key == NULL || mech == NULL || (in == NULL && inlen > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL argument");
	}
	if ((rc = build_mech(mech, decrypt, &m, &prm)) < 0) {
		return rc;
	}
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if (key->always_authenticate) {
		/* Token details for the PIN prompt, gathered before the operation starts. */
		if ((rv = p11s_ck__slot(pv->f, key->slot, &slot)) != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_GetTokenInfo");
			goto out;
		}
	}
	if ((rc = sess_get(pv, key->slot, &s)) < 0) {
		goto out;
	}
	rv = decrypt ? pv->f->C_DecryptInit(s.h, &m, key->handle)
		     : pv->f->C_SignInit(s.h, &m, key->handle);
	if (rv != CKR_OK) {
		rc = init_error(rv, init_name, mech); /* never another mechanism instead */
		goto out;
	}
	active = 1;
	if (key->always_authenticate && (rc = context_login(pv, s.h, &slot, &rv)) < 0) {
		goto out;
	}
	rc = P11S_OK;
	/* RSA: the output is at most the modulus long (RFC 8017 §5.2, §7.2.2). */
	rv = run_single(decrypt ? pv->f->C_Decrypt : pv->f->C_Sign, s.h, in, inlen,
	    key->modulus.len > SINGLE_OUT_GUESS ? key->modulus.len : SINGLE_OUT_GUESS, out, &active,
	    &rc);
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, decrypt ? "C_Decrypt" : "C_Sign");
	}
out:
	if (active && !session_dead(rv)) {
		sess_discard(pv, &s);
	} else {
		sess_put(pv, &s, rv);
	}
	leave(pv);
	return rc;
}

static int pk_sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	return sign_or_decrypt(p, 0, key, mech, in, inlen, out);
}

static int pk_decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	return sign_or_decrypt(p, 1, key, mech, in, inlen, out);
}

/* --- derive ----------------------------------------------------------------------------- */

/* Field size in bytes of the named curve in DER `params` (CKA_EC_PARAMS), 0 if unknown. */
static size_t field_size(const p11s_bytes *params)
{
	const unsigned char *pp = params->data;
	ASN1_OBJECT *oid = NULL;
	EC_GROUP *g = NULL;
	size_t bytes = 0;

	if (params->data == NULL || params->len == 0) {
		return 0;
	}
	ERR_set_mark();
	if ((oid = d2i_ASN1_OBJECT(NULL, &pp, (long)params->len)) != NULL &&
	    (g = EC_GROUP_new_by_curve_name(OBJ_obj2nid(oid))) != NULL) {
		bytes = ((size_t)EC_GROUP_get_degree(g) + 7) / 8;
	}
	ERR_pop_to_mark();
	EC_GROUP_free(g);
	ASN1_OBJECT_free(oid);
	return bytes;
}

static int pk_derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out)
{
	struct priv *pv = p->priv;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL f = CK_FALSE, t = CK_TRUE;
	CK_ULONG vlen;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &f, sizeof(f) },
		{ CKA_SENSITIVE, &f, sizeof(f) },
		{ CKA_EXTRACTABLE, &t, sizeof(t) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
	};
	CK_ECDH1_DERIVE_PARAMS prm;
	CK_MECHANISM m = { CKM_ECDH1_DERIVE, &prm, sizeof(prm) };
	CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
	CK_ATTRIBUTE va = { CKA_VALUE, NULL_PTR, 0 };
	unsigned char *der = NULL;
	p11s_buf *z = NULL;
	size_t field, der_len, hdr;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int rc;

	if (out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL output");
	}
	*out = NULL;
	if (key == NULL || peer == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: derive: NULL argument");
	}
	/* SEC 1 §2.3.3: an uncompressed point is 04 || X || Y. */
	if (peer_len < 3 || peer[0] != 0x04 || (peer_len - 1) % 2 != 0 || peer_len > 0xffff) {
		return p11s_error__set(P11S_ERR_INVALID_ARG,
		    "peer public key is not an uncompressed EC point");
	}
	field = field_size(&key->ec_params);
	if (field == 0) {
		field = (peer_len - 1) / 2;
	} else if (field != (peer_len - 1) / 2) {
		return p11s_error__set(P11S_ERR_INVALID_ARG,
		    "peer point does not belong to the key's curve");
	}
	vlen = field;

	/* The DER OCTET STRING form of the point, for tokens that want CKA_EC_POINT's encoding. */
	hdr = peer_len < 0x80 ? 2 : peer_len < 0x100 ? 3 : 4;
	der_len = hdr + peer_len;
	if ((der = malloc(der_len)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	der[0] = 0x04;
	if (hdr == 2) {
		der[1] = (unsigned char)peer_len;
	} else if (hdr == 3) {
		der[1] = 0x81;
		der[2] = (unsigned char)peer_len;
	} else {
		der[1] = 0x82;
		der[2] = (unsigned char)(peer_len >> 8);
		der[3] = (unsigned char)peer_len;
	}
	memcpy(der + hdr, peer, peer_len);

	if ((rc = enter(pv)) < 0) {
		free(der);
		return rc;
	}
	if ((rc = sess_get(pv, key->slot, &s)) < 0) {
		goto out;
	}
	/* RFC 5753 / SEC 1 §3.3.1: CKD_NULL gives Z itself; the CMS KDF runs on the host. */
	for (int form = 0; form < 2; form++) {
		memset(&prm, 0, sizeof(prm));
		prm.kdf = CKD_NULL;
		prm.pPublicData = form == 0 ? (CK_BYTE_PTR)peer : der;
		prm.ulPublicDataLen = form == 0 ? peer_len : der_len;
		rv = pv->f->C_DeriveKey(s.h, &m, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]),
		    &obj);
		/* Tokens differ on raw vs DER public data (STANDARDS.md §11): try both forms. */
		if (form == 0 && (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
		    rv == CKR_DOMAIN_PARAMS_INVALID)) {
			continue;
		}
		break;
	}
	if (rv != CKR_OK) {
		if (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
		    rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_MECHANISM_INVALID) {
			rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv, "token refuses %s (CKD_NULL, "
			    "raw and DER public data): %s", p11s_mech_name(CKM_ECDH1_DERIVE),
			    p11s_ck__rv_name(rv));
		} else {
			rc = p11s_ck__rv(rv, "C_DeriveKey");
		}
		goto out;
	}
	rv = pv->f->C_GetAttributeValue(s.h, obj, &va, 1);
	if (rv == CKR_OK && (va.ulValueLen == CK_UNAVAILABLE_INFORMATION || va.ulValueLen == 0)) {
		rv = CKR_ATTRIBUTE_SENSITIVE;
	}
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_GetAttributeValue(CKA_VALUE)");
		goto out;
	}
	if ((rc = p11s_buf_new(&z, va.ulValueLen)) < 0) {
		goto out;
	}
	va.pValue = z->data;
	if ((rv = pv->f->C_GetAttributeValue(s.h, obj, &va, 1)) != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_GetAttributeValue(CKA_VALUE)");
		goto out;
	}
	if (va.ulValueLen > z->len) {
		rc = p11s_error__set(P11S_ERR_TOKEN, "CKA_VALUE longer than announced");
		goto out;
	}
	z->len = va.ulValueLen;
	*out = z;
	z = NULL;
	rc = P11S_OK;
out:
	if (obj != CK_INVALID_HANDLE) {
		/*
		 * The secret must not outlive the call; should the token refuse, it is a session
		 * object and goes with its session at the latest.
		 */
		(void)pv->f->C_DestroyObject(s.h, obj);
	}
	sess_put(pv, &s, rv);
	leave(pv);
	p11s_buf_free(z);
	free(der);
	return rc;
}

const struct p11s_provider_ops p11s_pkcs11_ops = {
	.abi = P11S_PROVIDER_ABI,
	.name = "pkcs11",
	.caps = P11S_CAP_RSA_PKCS_SIGN | P11S_CAP_RSA_PSS | P11S_CAP_RSA_PKCS_DECRYPT |
	    P11S_CAP_RSA_OAEP | P11S_CAP_ECDSA | P11S_CAP_ECDH | P11S_CAP_EDDSA |
	    P11S_CAP_CONTEXT_LOGIN | P11S_CAP_PROTECTED_AUTH,
	.priv_size = sizeof(struct priv),
	.open = pk_open,
	.slots = pk_slots,
	.login = pk_login,
	.logged_in = pk_logged_in,
	.objects = pk_objects,
	.sign = pk_sign,
	.decrypt = pk_decrypt,
	.derive = pk_derive,
	.close = pk_close,
};

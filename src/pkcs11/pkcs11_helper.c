/*
 * The "pkcs11-helper" backend: libpkcs11-helper-1 (OpenSC/pkcs11-helper 1.29) loads the module
 * as its provider (pkcs11h_addProvider), logs in (pkcs11h_token_login, and its PIN-prompt and
 * key-prompt hooks when it needs a login of its own), and signs and decrypts through
 * certificate objects (pkcs11h_certificate_create, pkcs11h_certificate_signAny_ex and
 * decryptAny_ex with a full CK_MECHANISM, so PSS and OAEP parameters reach the token as they
 * are). Keys are named by serialized certificate ids (pkcs11h_certificate_serializeCertificateId).
 *
 * What pkcs11-helper's API cannot give, and how this backend gets it:
 *  - Slots without a token, token flags (login required, PIN counters, PIN pad): its token ids
 *    carry label, manufacturer, model and serial only. The backend reads C_GetSlotList,
 *    C_GetSlotInfo and C_GetTokenInfo from the same module's function list (dlopen of the
 *    same path gives the same, already initialised module; we never call C_Initialize or
 *    C_Finalize on it), and uses C_GetSessionInfo on a short-lived session of its own to see
 *    whether the application is logged in.
 *  - CKA_LABEL: certificate ids have none; the label of the certificate object is read on a
 *    short-lived read-only session (public objects only).
 *  - Keys without a certificate: pkcs11-helper identifies a key by its certificate only, so
 *    such keys are not listed (docs/backends.md).
 *  - ECDH: no derive call exists in pkcs11-helper (its EVP route cannot derive either); the
 *    backend does not declare P11S_CAP_ECDH.
 *
 * pkcs11-helper is process-global (pkcs11h_initialize); contexts share it, reference-counted.
 * Hooks get the p11s_provider as their user_data, which pkcs11-helper passes through from
 * pkcs11h_certificate_create.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <pkcs11-helper-1.0/pkcs11h-certificate.h>
#include <pkcs11-helper-1.0/pkcs11h-core.h>
#include <pkcs11-helper-1.0/pkcs11h-token.h>

#include <p11smime/log.h>
#include <p11smime/secret.h>

#include "core/error_int.h"
#include "core/lazy.h"
#include "pkcs11/backends.h"
#include "pkcs11/ck.h"

/*
 * pkcs11-helper is loaded on first use, not linked (core/lazy.h, docs/performance.md "Cold start"):
 * the functions below are called through pointers that ph_lazy_ready() fills.
 */
#define PH_LAZY_SYMS(X) \
	X(pkcs11h_addProvider) \
	X(pkcs11h_certificate_create) \
	X(pkcs11h_certificate_decryptAny_ex) \
	X(pkcs11h_certificate_deserializeCertificateId) \
	X(pkcs11h_certificate_ensureKeyAccess) \
	X(pkcs11h_certificate_enumTokenCertificateIds) \
	X(pkcs11h_certificate_freeCertificate) \
	X(pkcs11h_certificate_freeCertificateId) \
	X(pkcs11h_certificate_freeCertificateIdList) \
	X(pkcs11h_certificate_serializeCertificateId) \
	X(pkcs11h_certificate_signAny_ex) \
	X(pkcs11h_forkFixup) \
	X(pkcs11h_getMessage) \
	X(pkcs11h_initialize) \
	X(pkcs11h_removeProvider) \
	X(pkcs11h_setLogHook) \
	X(pkcs11h_setLogLevel) \
	X(pkcs11h_setMaxLoginRetries) \
	X(pkcs11h_setPINCachePeriod) \
	X(pkcs11h_setPINPromptHook) \
	X(pkcs11h_setProperty) \
	X(pkcs11h_setProtectedAuthentication) \
	X(pkcs11h_setTokenPromptHook) \
	X(pkcs11h_terminate) \
	X(pkcs11h_token_duplicateTokenId) \
	X(pkcs11h_token_enumTokenIds) \
	X(pkcs11h_token_freeTokenId) \
	X(pkcs11h_token_freeTokenIdList) \
	X(pkcs11h_token_login)
PH_LAZY_SYMS(P11S_LAZY_PTR)
static const p11s_lazy_sym ph_lazy_syms[] = { PH_LAZY_SYMS(P11S_LAZY_SYM) };
static const char *const ph_lazy_sonames[] = { "libpkcs11-helper.so.1", NULL };
static p11s_lazy_lib ph_lazy_lib = P11S_LAZY_LIB("pkcs11-helper", ph_lazy_sonames, ph_lazy_syms);

#define pkcs11h_addProvider (*lz_pkcs11h_addProvider)
#define pkcs11h_certificate_create (*lz_pkcs11h_certificate_create)
#define pkcs11h_certificate_decryptAny_ex (*lz_pkcs11h_certificate_decryptAny_ex)
#define pkcs11h_certificate_deserializeCertificateId (*lz_pkcs11h_certificate_deserializeCertificateId)
#define pkcs11h_certificate_ensureKeyAccess (*lz_pkcs11h_certificate_ensureKeyAccess)
#define pkcs11h_certificate_enumTokenCertificateIds (*lz_pkcs11h_certificate_enumTokenCertificateIds)
#define pkcs11h_certificate_freeCertificate (*lz_pkcs11h_certificate_freeCertificate)
#define pkcs11h_certificate_freeCertificateId (*lz_pkcs11h_certificate_freeCertificateId)
#define pkcs11h_certificate_freeCertificateIdList (*lz_pkcs11h_certificate_freeCertificateIdList)
#define pkcs11h_certificate_serializeCertificateId (*lz_pkcs11h_certificate_serializeCertificateId)
#define pkcs11h_certificate_signAny_ex (*lz_pkcs11h_certificate_signAny_ex)
#define pkcs11h_forkFixup (*lz_pkcs11h_forkFixup)
#define pkcs11h_getMessage (*lz_pkcs11h_getMessage)
#define pkcs11h_initialize (*lz_pkcs11h_initialize)
#define pkcs11h_removeProvider (*lz_pkcs11h_removeProvider)
#define pkcs11h_setLogHook (*lz_pkcs11h_setLogHook)
#define pkcs11h_setLogLevel (*lz_pkcs11h_setLogLevel)
#define pkcs11h_setMaxLoginRetries (*lz_pkcs11h_setMaxLoginRetries)
#define pkcs11h_setPINCachePeriod (*lz_pkcs11h_setPINCachePeriod)
#define pkcs11h_setPINPromptHook (*lz_pkcs11h_setPINPromptHook)
#define pkcs11h_setProperty (*lz_pkcs11h_setProperty)
#define pkcs11h_setProtectedAuthentication (*lz_pkcs11h_setProtectedAuthentication)
#define pkcs11h_setTokenPromptHook (*lz_pkcs11h_setTokenPromptHook)
#define pkcs11h_terminate (*lz_pkcs11h_terminate)
#define pkcs11h_token_duplicateTokenId (*lz_pkcs11h_token_duplicateTokenId)
#define pkcs11h_token_enumTokenIds (*lz_pkcs11h_token_enumTokenIds)
#define pkcs11h_token_freeTokenId (*lz_pkcs11h_token_freeTokenId)
#define pkcs11h_token_freeTokenIdList (*lz_pkcs11h_token_freeTokenIdList)
#define pkcs11h_token_login (*lz_pkcs11h_token_login)

/* Load pkcs11-helper once. @return P11S_OK, or `code` with the reason. */
static int ph_lazy_ready(int code)
{
	return p11s_core__lazy(&ph_lazy_lib, code);
}

/* Prompts pkcs11-helper may make inside an operation: PIN, context-specific PIN, token. */
#define OP_PROMPTS                                                                            \
	(PKCS11H_PROMPT_MASK_ALLOW_PIN_PROMPT | PKCS11H_PROMPT_MASK_ALLOW_KEY_PROMPT |           \
	    PKCS11H_PROMPT_MASK_ALLOW_TOKEN_PROMPT)

/* A key this backend reported: the serialized certificate id behind an object handle. */
struct entry {
	char *serialized;
	uint64_t slot;
};

struct priv {
	char reference[64];       /* pkcs11-helper provider name */
	int provider_added;
	int global_ref;           /* holds one reference on the global initialisation */
	void *dl;                 /* our own reference to the module, for the info calls */
	CK_FUNCTION_LIST_PTR f;
	p11s_provider_cfg cfg;
	pid_t pid;
	struct entry *entries;    /* object handle = index + 1 */
	size_t nentries;
	int hook_rc;              /* why a hook refused (P11S_ERR_*), 0 if none did */
	int token_prompted;       /* pkcs11-helper asked for a token that is not there */
	int in_op;                /* inside sign/decrypt: pkcs11-helper must not log in again */
	CK_RV op_rv;              /* the first failure of the private-key operation (log hook) */
	int op_init_failed;       /* ... and whether C_SignInit/C_DecryptInit gave it */
};

/* The provider whose operation runs on this thread, for the log hook. */
static _Thread_local struct priv *tls_current;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int g_refs;
static unsigned int g_serial;

/* --- hooks ----------------------------------------------------------------------------- */

/* The slot (with its token info) of pkcs11-helper's token id, for prompts and policy. */
static int slot_of_token(struct priv *pv, const pkcs11h_token_id_t token, p11s_slot *out);

/*
 * Fill pkcs11-helper's PIN buffer from our PIN source. The secret is wiped as soon as it is
 * copied (pkcs11-helper wipes its own buffer right after C_Login); nothing is kept here.
 * `retry` > 0 means the previous PIN was wrong: never retried (STANDARDS.md §11).
 */
static PKCS11H_BOOL fill_pin(p11s_provider *p, const pkcs11h_token_id_t token, unsigned retry,
    unsigned long user_type, char *pin, size_t pin_max)
{
	struct priv *pv = p->priv;
	p11s_secret *s = NULL;
	p11s_slot slot;
	int rc;

	if (retry > 0) {
		pv->hook_rc = p11s_error__set(P11S_ERR_PIN_INCORRECT,
		    "wrong PIN for token '%s'; not retrying", token->label);
		return FALSE;
	}
	if (slot_of_token(pv, token, &slot) < 0) {
		memset(&slot, 0, sizeof(slot));
		snprintf(slot.info.label, sizeof(slot.info.label), "%s", token->label);
	}
	if (slot.info.flags & P11S_TOKEN_USER_PIN_LOCKED) {
		/* A locked PIN is never tried, also when pkcs11-helper wants to log in itself. */
		pv->hook_rc = p11s_error__set(P11S_ERR_PIN_LOCKED,
		    "the user PIN of token '%s' is locked; not trying it", token->label);
		return FALSE;
	}
	if (pv->cfg.get_pin == NULL) {
		pv->hook_rc = p11s_error__set(P11S_ERR_LOGIN, "token '%s' needs a PIN", token->label);
		return FALSE;
	}
	if ((rc = pv->cfg.get_pin(&slot, user_type, &s, pv->cfg.pin_payload)) < 0) {
		p11s_secret_free(s);
		pv->hook_rc = rc;
		return FALSE;
	}
	if (s == NULL || p11s_secret_len(s) + 1 > pin_max) {
		p11s_secret_free(s);
		pv->hook_rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN too long for pkcs11-helper");
		return FALSE;
	}
	memcpy(pin, p11s_secret_data(s), p11s_secret_len(s) + 1);
	p11s_secret_free(s);
	return TRUE;
}

/*
 * After a failed private-key operation pkcs11-helper logs out (C_Logout), asks for the PIN
 * again and repeats the operation once (__pkcs11h_certificate_doPrivateOperation, measured
 * with pkcs11-spy). That would read the PIN source a second time and send the operation
 * twice: refused. The operation fails with its first result, and the token layer logs in
 * afresh before the next one (the login is gone with pkcs11-helper's C_Logout).
 */
static PKCS11H_BOOL pin_prompt_hook(void *const global_data, void *const user_data,
    const pkcs11h_token_id_t token, const unsigned retry, char *const pin, const size_t pin_max)
{
	struct priv *pv;

	if (user_data == NULL) {
		return FALSE; /* a login we did not start: refuse rather than guess */
	}
	pv = ((p11s_provider *)user_data)->priv;
	if (pv->in_op && pv->op_rv != CKR_OK) {
		return FALSE;
	}
	return fill_pin(user_data, token, retry, P11S_USER_NORMAL, pin, pin_max);
}

/*
 * pkcs11-helper reports the CK_RV of a failed private-key operation only in its debug log
 * ("Private key operation failed rv=..."); its return value after the retry above is
 * CKR_CANCEL. The log hook keeps the first one, so that errors name what the token said.
 */
static void log_hook(void *const global_data, const unsigned flags, const char *const format,
    va_list args)
{
	struct priv *pv = tls_current;
	va_list ap;

	if (pv == NULL || !pv->in_op || format == NULL) {
		return;
	}
	if (strstr(format, "doPrivateOperation init rv=") != NULL ||
	    strstr(format, "doPrivateOperation op rv=") != NULL) {
		long rv;

		va_copy(ap, args);
		rv = va_arg(ap, long);
		va_end(ap);
		if (rv != 0 && pv->op_rv == CKR_OK) {
			pv->op_rv = (CK_RV)rv;
			pv->op_init_failed = strstr(format, "init rv=") != NULL;
		}
	}
}

/* CKA_ALWAYS_AUTHENTICATE: pkcs11-helper's key prompt asks for the context-specific PIN. */
static PKCS11H_BOOL key_prompt_hook(void *const global_data, void *const user_data,
    const pkcs11h_token_id_t token, const char *const label, const unsigned retry,
    char *const pin, const size_t pin_max)
{
	if (user_data == NULL) {
		return FALSE;
	}
	return fill_pin(user_data, token, retry, P11S_USER_CONTEXT_SPECIFIC, pin, pin_max);
}

/*
 * pkcs11-helper asks for a token it cannot find (pulled out). We never wait inside an
 * operation: the operation fails as "removed" and the token layer starts afresh next time.
 */
static PKCS11H_BOOL token_prompt_hook(void *const global_data, void *const user_data,
    const pkcs11h_token_id_t token, const unsigned retry)
{
	struct priv *pv = user_data != NULL ? ((p11s_provider *)user_data)->priv : NULL;

	p11s_log(P11S_LOG_WARN, "token '%s' is not present", token->label);
	if (pv != NULL) {
		pv->token_prompted = 1;
	}
	return FALSE;
}

/* --- global initialisation ------------------------------------------------------------- */

static int global_init(void)
{
	PKCS11H_BOOL yes = TRUE;
	pkcs11h_hook_key_prompt_t kh = key_prompt_hook;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&g_lock);
	if (g_refs == 0) {
		if ((rv = pkcs11h_initialize()) == CKR_OK &&
		    (rv = pkcs11h_setPINPromptHook(pin_prompt_hook, NULL)) == CKR_OK &&
		    (rv = pkcs11h_setTokenPromptHook(token_prompt_hook, NULL)) == CKR_OK &&
		    (rv = pkcs11h_setProperty(PKCS11H_PROPERTY_KEY_PROMPT_HOOK, &kh, sizeof(kh))) ==
		        CKR_OK &&
		    /* One attempt per login: a wrong PIN is never retried (default is 3). */
		    (rv = pkcs11h_setMaxLoginRetries(1)) == CKR_OK &&
		    (rv = pkcs11h_setLogHook(log_hook, NULL)) == CKR_OK &&
		    /* PIN pads: C_Login with a NULL PIN where the token has one. */
		    (rv = pkcs11h_setProtectedAuthentication(yes)) == CKR_OK) {
			/*
			 * pkcs11-helper's "PIN cache period" is how long a login stays valid, not a
			 * stored PIN (it keeps none). Infinite: the token layer decides when to log in.
			 */
			rv = pkcs11h_setPINCachePeriod(PKCS11H_PIN_CACHE_INFINITE);
			/* The operation results come as debug messages (log_hook). */
			pkcs11h_setLogLevel(PKCS11H_LOG_DEBUG2);
		}
		if (rv != CKR_OK) {
			pkcs11h_terminate();
		}
	}
	if (rv == CKR_OK) {
		g_refs++;
	}
	pthread_mutex_unlock(&g_lock);
	if (rv != CKR_OK) {
		return p11s_error__ckr(P11S_ERR_MODULE, rv, "pkcs11-helper: initialisation: %s",
		    pkcs11h_getMessage(rv));
	}
	return P11S_OK;
}

static void global_release(void)
{
	pthread_mutex_lock(&g_lock);
	if (g_refs > 0 && --g_refs == 0) {
		pkcs11h_terminate();
	}
	pthread_mutex_unlock(&g_lock);
}

/*
 * PKCS#11 v2.40 §5.5.1: a forked child initialises the module again before any call.
 * pkcs11-helper built with threading does it from its pthread_atfork handler; without
 * threading, pkcs11h_forkFixup() does it. Either way we call it once per new process.
 */
static int enter(struct priv *pv)
{
	CK_RV rv;

	if (pv == NULL || pv->f == NULL || !pv->provider_added) {
		return p11s_error__set(P11S_ERR_MODULE, "pkcs11-helper: module is not loaded");
	}
	if (pv->pid != getpid()) {
		if ((rv = pkcs11h_forkFixup()) != CKR_OK) {
			return p11s_error__ckr(P11S_ERR_MODULE, rv, "pkcs11-helper: after fork: %s",
			    pkcs11h_getMessage(rv));
		}
		pv->pid = getpid();
	}
	pv->hook_rc = 0;
	pv->token_prompted = 0;
	pv->in_op = 0;
	pv->op_rv = CKR_OK;
	pv->op_init_failed = 0;
	tls_current = pv;
	ERR_set_mark();
	return P11S_OK;
}

static void leave(struct priv *pv)
{
	pv->in_op = 0;
	tls_current = NULL;
	ERR_pop_to_mark();
}

/* Translate a pkcs11-helper result: a hook's own reason wins over CKR_CANCEL. */
static int ckr(struct priv *pv, CK_RV rv, const char *what)
{
	if (rv == CKR_OK) {
		return P11S_OK;
	}
	if (pv->op_rv != CKR_OK) {
		/* What the token said first, not pkcs11-helper's CKR_CANCEL after its retry. */
		return p11s_ck__rv(pv->op_rv, what);
	}
	if (pv->hook_rc < 0) {
		return pv->hook_rc;
	}
	if (pv->token_prompted || rv == CKR_CANCEL) {
		if (pv->token_prompted) {
			return p11s_error__ckr(P11S_ERR_DEVICE_REMOVED, rv, "%s: token not present",
			    what);
		}
	}
	return p11s_ck__rv(rv, what);
}

/* --- open, close ----------------------------------------------------------------------- */

static int ph_open(p11s_provider *p, const p11s_provider_cfg *cfg)
{
	struct priv *pv = p->priv;
	CK_C_GetFunctionList gfl;
	CK_RV rv;
	int rc;

	if (pv == NULL || cfg == NULL || cfg->module_path == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11-helper: no module path");
	}
	if ((rc = ph_lazy_ready(P11S_ERR_MODULE)) < 0) {
		return rc;
	}
	pv->cfg = *cfg;
	pv->pid = getpid();
	if ((rc = global_init()) < 0) {
		return rc;
	}
	pv->global_ref = 1;
	pthread_mutex_lock(&g_lock);
	snprintf(pv->reference, sizeof(pv->reference), "p11smime-%u", ++g_serial);
	pthread_mutex_unlock(&g_lock);
	ERR_set_mark();
	rv = pkcs11h_addProvider(pv->reference, cfg->module_path, TRUE,
	    PKCS11H_PRIVATEMODE_MASK_AUTO, PKCS11H_SLOTEVENT_METHOD_AUTO, 0, FALSE);
	ERR_pop_to_mark();
	if (rv != CKR_OK) {
		return p11s_error__ckr(P11S_ERR_MODULE, rv,
		    "cannot load PKCS#11 module %s with pkcs11-helper: %s", cfg->module_path,
		    pkcs11h_getMessage(rv));
	}
	pv->provider_added = 1;
	/* The same module, already initialised by pkcs11-helper: for the info calls only. */
	if ((pv->dl = dlopen(cfg->module_path, RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (gfl = (CK_C_GetFunctionList)dlsym(pv->dl, "C_GetFunctionList")) == NULL ||
	    gfl(&pv->f) != CKR_OK || pv->f == NULL) {
		pv->f = NULL;
		return p11s_error__set(P11S_ERR_MODULE, "cannot load PKCS#11 module %s: %s",
		    cfg->module_path, dlerror() ? dlerror() : "no function list");
	}
	return P11S_OK;
}

static void entries_free(struct priv *pv)
{
	for (size_t i = 0; i < pv->nentries; i++) {
		free(pv->entries[i].serialized);
	}
	free(pv->entries);
	pv->entries = NULL;
	pv->nentries = 0;
}

static void ph_close(p11s_provider *p)
{
	struct priv *pv = p->priv;

	if (pv == NULL) {
		return;
	}
	ERR_set_mark();
	if (pv->provider_added && pv->pid == getpid()) {
		(void)pkcs11h_removeProvider(pv->reference);
	}
	pv->provider_added = 0;
	if (pv->global_ref) {
		global_release();
		pv->global_ref = 0;
	}
	if (pv->dl != NULL) {
		dlclose(pv->dl);
		pv->dl = NULL;
	}
	ERR_pop_to_mark();
	pv->f = NULL;
	entries_free(pv);
}

/* --- slots (module info calls) --------------------------------------------------------- */

static int ph_slots(p11s_provider *p, p11s_slot **out, size_t *n)
{
	struct priv *pv = p->priv;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	rc = p11s_ck__slots(pv->f, out, n);
	leave(pv);
	return rc;
}

static int same_token(const pkcs11h_token_id_t t, const p11s_token_info *info)
{
	return strcmp(t->label, info->label) == 0 && strcmp(t->serialNumber, info->serial) == 0 &&
	    strcmp(t->manufacturerID, info->manufacturer) == 0 && strcmp(t->model, info->model) == 0;
}

static int slot_of_token(struct priv *pv, const pkcs11h_token_id_t token, p11s_slot *out)
{
	p11s_slot *slots = NULL;
	size_t n = 0;
	int rc;

	if ((rc = p11s_ck__slots(pv->f, &slots, &n)) < 0) {
		return rc;
	}
	rc = P11S_ERR_NOT_FOUND;
	for (size_t i = 0; i < n; i++) {
		if ((slots[i].info.flags & P11S_TOKEN_PRESENT) && same_token(token, &slots[i].info)) {
			*out = slots[i];
			rc = P11S_OK;
			break;
		}
	}
	free(slots);
	return rc;
}

/*
 * pkcs11-helper's token id for the token in `slot` (it names tokens by manufacturer, model,
 * serial and label, not by slot). Free with pkcs11h_token_freeTokenId().
 */
static int token_of_slot(struct priv *pv, const p11s_slot *slot, pkcs11h_token_id_t *out)
{
	pkcs11h_token_id_list_t list = NULL;
	CK_RV rv;
	int rc = P11S_OK;

	*out = NULL;
	if ((rv = pkcs11h_token_enumTokenIds(PKCS11H_ENUM_METHOD_RELOAD, &list)) != CKR_OK) {
		return ckr(pv, rv, "pkcs11h_token_enumTokenIds");
	}
	for (pkcs11h_token_id_list_t e = list; e != NULL; e = e->next) {
		if (same_token(e->token_id, &slot->info)) {
			if ((rv = pkcs11h_token_duplicateTokenId(out, e->token_id)) != CKR_OK) {
				rc = ckr(pv, rv, "pkcs11h_token_duplicateTokenId");
			}
			break;
		}
	}
	pkcs11h_token_freeTokenIdList(list);
	if (rc == P11S_OK && *out == NULL) {
		rc = p11s_error__set(P11S_ERR_TOKEN_ABSENT, "pkcs11-helper does not see token '%s'",
		    slot->info.label);
	}
	return rc;
}

/* --- login ----------------------------------------------------------------------------- */

static int ph_login(p11s_provider *p, const p11s_slot *slot, unsigned long user_type,
    const p11s_secret *pin)
{
	struct priv *pv = p->priv;
	pkcs11h_token_id_t token = NULL;
	CK_RV rv;
	int rc;

	if (slot == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11-helper: login: NULL slot");
	}
	if (user_type != P11S_USER_NORMAL) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED,
		    "pkcs11-helper backend logs in as the normal user only");
	}
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if ((rc = token_of_slot(pv, slot, &token)) < 0) {
		goto out;
	}
	/*
	 * One C_Login, no retry (pkcs11h_token_login does not loop). A NULL PIN is the PIN pad
	 * (v2.40 C_Login on CKF_PROTECTED_AUTHENTICATION_PATH). The session stays read-only.
	 */
	rv = pkcs11h_token_login(token, TRUE, pin != NULL ? p11s_secret_data(pin) : NULL);
	rc = ckr(pv, rv, "C_Login");
out:
	if (token != NULL) {
		pkcs11h_token_freeTokenId(token);
	}
	leave(pv);
	return rc;
}

/*
 * The login state of the application on the token (v2.40 C_GetSessionInfo): a session of
 * our own, opened and closed at once. It is never the last session while pkcs11-helper holds
 * its logged-in one, so closing it does not log out.
 */
static int ph_logged_in(p11s_provider *p, const p11s_slot *slot)
{
	struct priv *pv = p->priv;
	CK_SESSION_HANDLE h;
	CK_SESSION_INFO si;
	int yes = 0;

	if (slot == NULL || enter(pv) < 0) {
		return 0;
	}
	if (pv->f->C_OpenSession(slot->handle, CKF_SERIAL_SESSION, NULL, NULL, &h) == CKR_OK) {
		yes = pv->f->C_GetSessionInfo(h, &si) == CKR_OK &&
		    (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
		(void)pv->f->C_CloseSession(h);
	}
	leave(pv);
	return yes;
}

/* --- objects --------------------------------------------------------------------------- */

static int set_bytes(p11s_bytes *b, const unsigned char *data, size_t len)
{
	b->data = NULL;
	b->len = 0;
	if (len == 0) {
		return P11S_OK;
	}
	if ((b->data = malloc(len)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	memcpy(b->data, data, len);
	b->len = len;
	return P11S_OK;
}

/* CKA_LABEL of the certificate with CKA_ID `id` (a public object), or "" if unreadable. */
static char *cert_label(struct priv *pv, CK_SLOT_ID slot, const unsigned char *id, size_t idlen)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, (void *)id, idlen },
	};
	CK_ATTRIBUTE a = { CKA_LABEL, NULL, 0 };
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o;
	CK_ULONG got = 0;
	char *label = NULL;

	if (pv->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK) {
		return strdup("");
	}
	if (pv->f->C_FindObjectsInit(h, tmpl, 2) == CKR_OK) {
		if (pv->f->C_FindObjects(h, &o, 1, &got) != CKR_OK) {
			got = 0;
		}
		(void)pv->f->C_FindObjectsFinal(h);
	}
	if (got == 1 && pv->f->C_GetAttributeValue(h, o, &a, 1) == CKR_OK &&
	    a.ulValueLen != CK_UNAVAILABLE_INFORMATION && (label = malloc(a.ulValueLen + 1)) != NULL) {
		a.pValue = label;
		if (pv->f->C_GetAttributeValue(h, o, &a, 1) == CKR_OK) {
			label[a.ulValueLen] = '\0';
		} else {
			label[0] = '\0';
		}
	}
	(void)pv->f->C_CloseSession(h);
	return label != NULL ? label : strdup("");
}

/* Key attributes taken from the certificate's public key (the token is not asked). */
static int key_from_cert(p11s_object *o, const unsigned char *der, size_t len)
{
	const unsigned char *pp = der;
	X509 *x = d2i_X509(NULL, &pp, (long)len);
	EVP_PKEY *pk = x != NULL ? X509_get0_pubkey(x) : NULL;
	BIGNUM *n = NULL, *e = NULL;
	int rc = P11S_OK;

	if (pk == NULL) {
		o->key_type = P11S_KEY_UNKNOWN;
		goto out;
	}
	if (EVP_PKEY_is_a(pk, "RSA")) {
		o->key_type = P11S_KEY_RSA;
		o->can_sign = o->can_decrypt = 1;
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) &&
		    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e)) {
			unsigned char buf[1024];
			int l;

			if ((l = BN_bn2bin(n, buf)) > 0 && (size_t)l <= sizeof(buf) &&
			    (rc = set_bytes(&o->modulus, buf, (size_t)l)) == P11S_OK &&
			    (l = BN_bn2bin(e, buf)) > 0) {
				rc = set_bytes(&o->public_exponent, buf, (size_t)l);
			}
		}
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		char gname[64];
		unsigned char *oid = NULL;
		ASN1_OBJECT *obj;
		int l;

		o->key_type = P11S_KEY_EC;
		o->can_sign = 1;
		o->can_derive = 1; /* the key can; this backend cannot (no P11S_CAP_ECDH) */
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, gname,
		        sizeof(gname), NULL) &&
		    (obj = OBJ_nid2obj(OBJ_sn2nid(gname))) != NULL &&
		    (l = i2d_ASN1_OBJECT(obj, &oid)) > 0) {
			rc = set_bytes(&o->ec_params, oid, (size_t)l);
		}
		OPENSSL_free(oid);
	} else {
		o->key_type = P11S_KEY_UNKNOWN;
	}
out:
	BN_free(n);
	BN_free(e);
	X509_free(x);
	return rc;
}

/* The object handle for a serialized id: reuse its entry, or add one. */
static int entry_handle(struct priv *pv, const char *serialized, uint64_t slot, uint64_t *out)
{
	struct entry *ne;

	for (size_t i = 0; i < pv->nentries; i++) {
		if (strcmp(pv->entries[i].serialized, serialized) == 0) {
			pv->entries[i].slot = slot;
			*out = i + 1;
			return P11S_OK;
		}
	}
	if ((ne = realloc(pv->entries, (pv->nentries + 1) * sizeof(*ne))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	pv->entries = ne;
	if ((ne[pv->nentries].serialized = strdup(serialized)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	ne[pv->nentries].slot = slot;
	*out = ++pv->nentries;
	return P11S_OK;
}

static int serialize(struct priv *pv, const pkcs11h_certificate_id_t id, char **out)
{
	size_t len = 0;
	CK_RV rv;

	*out = NULL;
	if ((rv = pkcs11h_certificate_serializeCertificateId(NULL, &len, id)) != CKR_OK) {
		return ckr(pv, rv, "pkcs11h_certificate_serializeCertificateId");
	}
	if ((*out = malloc(len + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rv = pkcs11h_certificate_serializeCertificateId(*out, &len, id)) != CKR_OK) {
		free(*out);
		*out = NULL;
		return ckr(pv, rv, "pkcs11h_certificate_serializeCertificateId");
	}
	return P11S_OK;
}

/* Whether pkcs11-helper finds the private key of a certificate, without any prompt. */
static int has_key(p11s_provider *p, pkcs11h_certificate_id_t id)
{
	pkcs11h_certificate_t cert = NULL;
	int yes;

	if (pkcs11h_certificate_create(id, p, 0, PKCS11H_PIN_CACHE_INFINITE, &cert) != CKR_OK) {
		return 0;
	}
	yes = pkcs11h_certificate_ensureKeyAccess(cert) == CKR_OK;
	pkcs11h_certificate_freeCertificate(cert);
	return yes;
}

/*
 * Certificates of the token, and for each end-entity certificate whose private key
 * pkcs11-helper can reach, a private key object with the same CKA_ID (pkcs11-helper names a
 * key by its certificate). Issuer certificates are reported as certificates only.
 */
static int ph_objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n)
{
	struct priv *pv = p->priv;
	pkcs11h_token_id_t token = NULL;
	pkcs11h_certificate_id_list_t issuers = NULL, ends = NULL;
	p11s_object *objs = NULL, *no;
	size_t nobj = 0;
	char *ser = NULL;
	CK_RV rv;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if ((rc = token_of_slot(pv, slot, &token)) < 0) {
		goto out;
	}
	rv = pkcs11h_certificate_enumTokenCertificateIds(token, PKCS11H_ENUM_METHOD_RELOAD, p, 0,
	    &issuers, &ends);
	if (rv != CKR_OK) {
		rc = ckr(pv, rv, "pkcs11h_certificate_enumTokenCertificateIds");
		goto out;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (pkcs11h_certificate_id_list_t e = pass ? issuers : ends; e != NULL; e = e->next) {
			pkcs11h_certificate_id_t id = e->certificate_id;
			int key = pass == 0 && has_key(p, id);
			p11s_object *c, *k;

			if ((no = realloc(objs, (nobj + 2) * sizeof(*objs))) == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			objs = no;
			c = &objs[nobj++];
			memset(c, 0, sizeof(*c));
			c->slot = slot->handle;
			c->cls = P11S_OBJ_CERTIFICATE;
			if ((c->label = cert_label(pv, slot->handle, id->attrCKA_ID,
			         id->attrCKA_ID_size)) == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			if ((rc = set_bytes(&c->id, id->attrCKA_ID, id->attrCKA_ID_size)) < 0 ||
			    (rc = set_bytes(&c->value, id->certificate_blob,
			         id->certificate_blob_size)) < 0) {
				goto out;
			}
			if (!key) {
				continue;
			}
			k = &objs[nobj++];
			memset(k, 0, sizeof(*k));
			k->slot = slot->handle;
			k->cls = P11S_OBJ_PRIVATE_KEY;
			if ((k->label = strdup(c->label)) == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			/*
			 * CKA_ALWAYS_AUTHENTICATE is not exposed: pkcs11-helper reads it itself and
			 * logs in CKU_CONTEXT_SPECIFIC through our key prompt (always_authenticate 0).
			 */
			if ((rc = set_bytes(&k->id, id->attrCKA_ID, id->attrCKA_ID_size)) < 0 ||
			    (rc = key_from_cert(k, id->certificate_blob, id->certificate_blob_size)) < 0 ||
			    (rc = serialize(pv, id, &ser)) < 0 ||
			    (rc = entry_handle(pv, ser, slot->handle, &k->handle)) < 0) {
				goto out;
			}
			free(ser);
			ser = NULL;
		}
	}
	*out = objs;
	*n = nobj;
	objs = NULL;
	nobj = 0;
	rc = P11S_OK;
out:
	free(ser);
	p11s_objects_free(objs, nobj);
	pkcs11h_certificate_freeCertificateIdList(issuers);
	pkcs11h_certificate_freeCertificateIdList(ends);
	if (token != NULL) {
		pkcs11h_token_freeTokenId(token);
	}
	leave(pv);
	return rc;
}

/* --- sign, decrypt --------------------------------------------------------------------- */

/* The certificate object of a key handle, with prompts allowed (it may log in itself). */
static int cert_of(p11s_provider *p, const p11s_object *key, pkcs11h_certificate_t *out)
{
	struct priv *pv = p->priv;
	pkcs11h_certificate_id_t id = NULL;
	CK_RV rv;

	*out = NULL;
	if (key->handle == 0 || key->handle > pv->nentries) {
		return p11s_error__set(P11S_ERR_NOT_FOUND, "pkcs11-helper: unknown key handle");
	}
	if ((rv = pkcs11h_certificate_deserializeCertificateId(&id,
	         pv->entries[key->handle - 1].serialized)) != CKR_OK) {
		return ckr(pv, rv, "pkcs11h_certificate_deserializeCertificateId");
	}
	rv = pkcs11h_certificate_create(id, p, OP_PROMPTS, PKCS11H_PIN_CACHE_INFINITE, out);
	pkcs11h_certificate_freeCertificateId(id);
	return ckr(pv, rv, "pkcs11h_certificate_create");
}

static int op(p11s_provider *p, int decrypt, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	struct priv *pv = p->priv;
	const char *what = decrypt ? "C_Decrypt" : "C_Sign";
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
	CK_MECHANISM m = { mech->type, NULL, 0 };
	pkcs11h_certificate_t cert = NULL;
	p11s_buf *buf = NULL;
	size_t len;
	CK_RV rv;
	int rc;

	*out = NULL;
	switch (mech->type) {
	case P11S_MECH_RSA_PKCS:
		break;
	case P11S_MECH_RSA_PKCS_PSS:
		if (decrypt) {
			goto unsupported;
		}
		/* CK_RSA_PKCS_PSS_PARAMS = RSASSA-PSS-params (RFC 4055 §3.1), sent as they are. */
		pss.hashAlg = mech->hash;
		pss.mgf = mech->mgf;
		pss.sLen = mech->salt_len;
		m.pParameter = &pss;
		m.ulParameterLen = sizeof(pss);
		break;
	case P11S_MECH_RSA_PKCS_OAEP:
		if (!decrypt) {
			goto unsupported;
		}
		oaep.hashAlg = mech->hash;
		oaep.mgf = mech->mgf;
		oaep.source = CKZ_DATA_SPECIFIED;
		oaep.pSourceData = mech->label_len ? (void *)mech->label : NULL;
		oaep.ulSourceDataLen = mech->label_len;
		m.pParameter = &oaep;
		m.ulParameterLen = sizeof(oaep);
		break;
	case P11S_MECH_ECDSA:
		if (decrypt) {
			goto unsupported;
		}
		break;
	default:
		goto unsupported;
	}
	if ((rc = enter(pv)) < 0) {
		return rc;
	}
	if ((rc = cert_of(p, key, &cert)) < 0) {
		goto out;
	}
	pv->in_op = 1;
	/*
	 * One call with a buffer large enough for any RSA key up to 16384 bits and any curve:
	 * a size query first would run the operation twice (and, for a key with
	 * CKA_ALWAYS_AUTHENTICATE, ask for the PIN twice).
	 */
	len = 2048;
	for (int tries = 0; tries < 2; tries++) {
		if ((rc = p11s_buf_new(&buf, len)) < 0) {
			goto out;
		}
		rv = decrypt ? pkcs11h_certificate_decryptAny_ex(cert, &m, in, inlen, buf->data, &len)
			     : pkcs11h_certificate_signAny_ex(cert, &m, in, inlen, buf->data, &len);
		if (rv == CKR_BUFFER_TOO_SMALL && tries == 0) {
			p11s_buf_free(buf);
			buf = NULL;
			continue;
		}
		break;
	}
	/*
	 * With its retry refused, pkcs11-helper 1.29 can return CKR_OK without output (measured):
	 * the first failure seen by the log hook decides.
	 */
	if (rv != CKR_OK || pv->op_rv != CKR_OK) {
		if (rv == CKR_OK) {
			rv = pv->op_rv;
		}
		if (pv->op_rv != CKR_OK && pv->op_init_failed) {
			what = decrypt ? "C_DecryptInit" : "C_SignInit";
		}
		rc = ckr(pv, rv, what);
		if (rc == P11S_ERR_MECHANISM) {
			rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv, "token refuses %s: %s",
			    p11s_mech_name(mech->type), p11s_ck__rv_name(rv));
		}
		goto out;
	}
	if (len < buf->len) {
		OPENSSL_cleanse(buf->data + len, buf->len - len);
		buf->len = len;
	}
	*out = buf;
	buf = NULL;
	rc = P11S_OK;
out:
	p11s_buf_free(buf);
	if (cert != NULL) {
		pkcs11h_certificate_freeCertificate(cert);
	}
	leave(pv);
	return rc;
unsupported:
	/* Raw RSA (CKM_RSA_X_509) among them: never (DESIGN.md decision 2). */
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "pkcs11-helper backend cannot %s with %s",
	    decrypt ? "decrypt" : "sign", p11s_mech_name(mech->type));
}

static int ph_sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	if (out == NULL || key == NULL || mech == NULL || (in == NULL && inlen > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11-helper: NULL argument");
	}
	return op(p, 0, key, mech, in, inlen, out);
}

static int ph_decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	if (out == NULL || key == NULL || mech == NULL || (in == NULL && inlen > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11-helper: NULL argument");
	}
	return op(p, 1, key, mech, in, inlen, out);
}

/* pkcs11-helper has no key derivation: ECDH is a capability this backend lacks. */
static int ph_derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out)
{
	if (out != NULL) {
		*out = NULL;
	}
	return p11s_error__set(P11S_ERR_UNSUPPORTED,
	    "pkcs11-helper backend cannot do CKM_ECDH1_DERIVE (pkcs11-helper has no derive call)");
}

const struct p11s_provider_ops p11s_pkcs11_helper_ops = {
	.abi = P11S_PROVIDER_ABI,
	.name = "pkcs11-helper",
	.caps = P11S_CAP_RSA_PKCS_SIGN | P11S_CAP_RSA_PSS | P11S_CAP_RSA_PKCS_DECRYPT |
	    P11S_CAP_RSA_OAEP | P11S_CAP_ECDSA | P11S_CAP_CONTEXT_LOGIN | P11S_CAP_PROTECTED_AUTH,
	.priv_size = sizeof(struct priv),
	.open = ph_open,
	.slots = ph_slots,
	.login = ph_login,
	.logged_in = ph_logged_in,
	.objects = ph_objects,
	.sign = ph_sign,
	.decrypt = ph_decrypt,
	.derive = ph_derive,
	.close = ph_close,
};

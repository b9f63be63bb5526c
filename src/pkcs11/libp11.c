/*
 * The "libp11" backend: the provider ABI of sys/provider.h on top of libp11 0.4.12
 * (OpenSC's PKCS#11 convenience layer), for sites whose tokens are known to work with it.
 *
 * Only what libp11's public API sends to the token as the mechanism itself is offered
 * (DESIGN.md decision 2, "no silent raw-RSA fallback"), as measured with pkcs11-spy against
 * SoftHSM 2.6.1 (docs/backends.md):
 *   - CKM_RSA_PKCS sign and decrypt: PKCS11_private_encrypt/_decrypt with RSA_PKCS1_PADDING;
 *   - CKM_ECDSA: EVP_PKEY_sign with the key PKCS11_get_private_key returns, whose
 *     EC_KEY_METHOD calls C_Sign(CKM_ECDSA) and hands back r||s re-encoded as DER;
 *   - CKM_ECDH1_DERIVE (CKD_NULL): EVP_PKEY_derive with the same key; libp11 reads CKA_VALUE
 *     of the derived session object and destroys it.
 * Not offered: CKM_RSA_PKCS_PSS and CKM_RSA_PKCS_OAEP (0.4.12 refuses both paddings in
 * PKCS11_private_encrypt/_decrypt; through the EVP_PKEY they would be padded on the host and
 * sent as CKM_RSA_X_509), CKM_EDDSA (0.4.12 has no EdDSA key type).
 *
 * libp11 keeps its own session pool and login state per slot; a slot handle here is the
 * PKCS#11 slot id, an object handle an index into this backend's table of object references
 * (slot, class, CKA_ID, CKA_LABEL) that is resolved again on each use, because libp11 frees
 * and reallocates its PKCS11_KEY arrays whenever it refreshes a token.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/types.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

/*
 * libp11.h declares PKCS11_get_rsa_method() and PKCS11_get_ec_key_method() with the types
 * RSA_METHOD and EC_KEY_METHOD, which OpenSSL 3 hides under OPENSSL_NO_DEPRECATED (the
 * project's setting). We never call those two functions; declaring the two incomplete types
 * (same struct tags as openssl/types.h, so a repeated typedef is harmless in C11) lets the
 * header compile while the rest of the deprecated API stays invisible to this file.
 */
typedef struct rsa_meth_st RSA_METHOD;
typedef struct ec_key_method_st EC_KEY_METHOD;
#include <libp11.h>

#include "core/error_int.h"
#include "core/lazy.h"
#include "pkcs11/backends.h"
#include "pkcs11/ck.h"

/*
 * libp11 is loaded on first use, not linked (core/lazy.h, docs/performance.md "Cold start"):
 * the functions below are called through pointers that lp11_lazy_ready() fills.
 */
#define LP11_LAZY_SYMS(X) \
	X(ERR_get_CKR_code) \
	X(PKCS11_CTX_free) \
	X(PKCS11_CTX_load) \
	X(PKCS11_CTX_new) \
	X(PKCS11_CTX_unload) \
	X(PKCS11_enumerate_certs) \
	X(PKCS11_enumerate_keys) \
	X(PKCS11_enumerate_public_keys) \
	X(PKCS11_enumerate_slots) \
	X(PKCS11_get_key_type) \
	X(PKCS11_get_private_key) \
	X(PKCS11_get_public_key) \
	X(PKCS11_get_slotid_from_slot) \
	X(PKCS11_is_logged_in) \
	X(PKCS11_login) \
	X(PKCS11_open_session) \
	X(PKCS11_private_decrypt) \
	X(PKCS11_private_encrypt) \
	X(PKCS11_release_all_slots) \
	X(PKCS11_set_ui_method)
/* Two of them are marked deprecated (see rsa_pkcs_sign): taking their type is not a use. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
LP11_LAZY_SYMS(P11S_LAZY_PTR)
#pragma GCC diagnostic pop
static const p11s_lazy_sym lp11_lazy_syms[] = { LP11_LAZY_SYMS(P11S_LAZY_SYM) };
static const char *const lp11_lazy_sonames[] = { "libp11.so.3", NULL };
static p11s_lazy_lib lp11_lazy_lib = P11S_LAZY_LIB("libp11", lp11_lazy_sonames, lp11_lazy_syms);

#define ERR_get_CKR_code (*lz_ERR_get_CKR_code)
#define PKCS11_CTX_free (*lz_PKCS11_CTX_free)
#define PKCS11_CTX_load (*lz_PKCS11_CTX_load)
#define PKCS11_CTX_new (*lz_PKCS11_CTX_new)
#define PKCS11_CTX_unload (*lz_PKCS11_CTX_unload)
#define PKCS11_enumerate_certs (*lz_PKCS11_enumerate_certs)
#define PKCS11_enumerate_keys (*lz_PKCS11_enumerate_keys)
#define PKCS11_enumerate_public_keys (*lz_PKCS11_enumerate_public_keys)
#define PKCS11_enumerate_slots (*lz_PKCS11_enumerate_slots)
#define PKCS11_get_key_type (*lz_PKCS11_get_key_type)
#define PKCS11_get_private_key (*lz_PKCS11_get_private_key)
#define PKCS11_get_public_key (*lz_PKCS11_get_public_key)
#define PKCS11_get_slotid_from_slot (*lz_PKCS11_get_slotid_from_slot)
#define PKCS11_is_logged_in (*lz_PKCS11_is_logged_in)
#define PKCS11_login (*lz_PKCS11_login)
#define PKCS11_open_session (*lz_PKCS11_open_session)
#define PKCS11_private_decrypt (*lz_PKCS11_private_decrypt)
#define PKCS11_private_encrypt (*lz_PKCS11_private_encrypt)
#define PKCS11_release_all_slots (*lz_PKCS11_release_all_slots)
#define PKCS11_set_ui_method (*lz_PKCS11_set_ui_method)

/* Load libp11 once. @return P11S_OK, or `code` with the reason. */
static int lp11_lazy_ready(int code)
{
	return p11s_core__lazy(&lp11_lazy_lib, code);
}

/* A private, public key or certificate as this backend refers to it (object handle - 1). */
struct objref {
	unsigned long slot_id;
	p11s_object_class cls;
	int evp_type;            /* EVP_PKEY_RSA, EVP_PKEY_EC; 0 for certificates */
	unsigned char *id;
	size_t id_len;
	char *label;
};

/* What the UI reader needs to answer libp11's CKU_CONTEXT_SPECIFIC PIN request. */
struct ui_payload {
	p11s_provider *p;
	p11s_slot slot;
	int rc;                  /* the pin callback's error, reported instead of libp11's */
};

struct lp11 {
	PKCS11_CTX *ctx;
	int loaded;
	PKCS11_SLOT *slots;
	unsigned int nslots;
	struct objref *refs;
	size_t nrefs;
	UI_METHOD *ui;
	struct ui_payload uip;
};

#define LP(p) ((struct lp11 *)(p)->priv)

/*
 * Translate a libp11 failure. libp11 reports CK_RVs through its own OpenSSL error library
 * (ERR_get_CKR_code(), the CK_RV as the reason) and its own problems through a second one;
 * OpenSSL may push its own errors above or below it (ECDSA through EVP_PKEY_sign), so the
 * oldest and the newest entries are both looked at. A CK_RV goes through the one mapping in
 * src/token/ckr.c; anything else is `fallback` with the drained queue.
 */
static int lp11_error(int fallback, const char *what)
{
	int ckr_lib = ERR_get_CKR_code();
	unsigned long e[2] = { ERR_peek_error(), ERR_peek_last_error() };
	int rc;

	for (size_t i = 0; i < 2 && ckr_lib > 0; i++) {
		if (e[i] != 0 && ERR_GET_LIB(e[i]) == ckr_lib && ERR_GET_REASON(e[i]) != 0) {
			rc = p11s_ck__rv((unsigned long)ERR_GET_REASON(e[i]), what);
			ERR_clear_error();
			return rc;
		}
	}
	return p11s_error__ossl(fallback, "libp11: %s failed", what);
}

static int lp11_nomem(void)
{
	return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

static PKCS11_SLOT *find_slot(struct lp11 *lp, uint64_t handle)
{
	for (unsigned int i = 0; i < lp->nslots; i++) {
		if (PKCS11_get_slotid_from_slot(&lp->slots[i]) == handle) {
			return &lp->slots[i];
		}
	}
	return NULL;
}

/* Like find_slot, and the slot must hold a token. Records the error. */
static int token_slot(struct lp11 *lp, uint64_t handle, PKCS11_SLOT **out)
{
	PKCS11_SLOT *s;

	*out = NULL;
	if ((s = find_slot(lp, handle)) == NULL) {
		return p11s_error__set(P11S_ERR_NOT_FOUND, "libp11: no slot with id %llu",
		    (unsigned long long)handle);
	}
	if (s->token == NULL) {
		return p11s_error__set(P11S_ERR_TOKEN_ABSENT, "libp11: no token in slot %llu",
		    (unsigned long long)handle);
	}
	*out = s;
	return P11S_OK;
}

/*
 * libp11 wants PKCS11_open_session once per slot before logging in or searching (it sets the
 * slot's session pool to read-only sessions; calling it again would reset the pool).
 */
static int open_sessions(struct lp11 *lp)
{
	for (unsigned int i = 0; i < lp->nslots; i++) {
		if (lp->slots[i].token != NULL && PKCS11_open_session(&lp->slots[i], 0) < 0) {
			return lp11_error(P11S_ERR_TOKEN, "C_OpenSession");
		}
	}
	return P11S_OK;
}

/*
 * libp11 asks for the PIN of a CKA_ALWAYS_AUTHENTICATE key through a UI_METHOD, between
 * C_SignInit/C_DecryptInit and C_Login(CKU_CONTEXT_SPECIFIC) (PKCS#11 v2.40 §4.9, the
 * token layer's get_pin never answers it from a cache). UI_set_result_ex copies the PIN into
 * libp11's own buffer; our secret is wiped here.
 */
static int ui_read(UI *ui, UI_STRING *uis)
{
	struct ui_payload *pl = UI_get0_user_data(ui);
	p11s_secret *pin = NULL;
	int ok;

	if (UI_get_string_type(uis) != UIT_PROMPT && UI_get_string_type(uis) != UIT_VERIFY) {
		return 1;
	}
	if (pl == NULL || pl->p == NULL || pl->p->cfg.get_pin == NULL) {
		if (pl != NULL) {
			pl->rc = p11s_error__set(P11S_ERR_LOGIN,
			    "the key needs a context-specific PIN and no PIN source is set");
		}
		return 0;
	}
	if ((pl->rc = pl->p->cfg.get_pin(&pl->slot, P11S_USER_CONTEXT_SPECIFIC, &pin,
		 pl->p->cfg.pin_payload)) < 0) {
		return 0;
	}
	if (p11s_secret_len(pin) > INT_MAX) {
		p11s_secret_free(pin);
		pl->rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN too long");
		return 0;
	}
	ok = UI_set_result_ex(ui, uis, p11s_secret_data(pin), (int)p11s_secret_len(pin)) >= 0;
	p11s_secret_free(pin);
	if (!ok) {
		pl->rc = p11s_error__ossl(P11S_ERR_PIN_SOURCE,
		    "the PIN does not fit the token's length limits");
		return 0;
	}
	return 1;
}

static void fill_token_info(PKCS11_SLOT *s, p11s_slot *out)
{
	p11s_token_info *ti = &out->info;
	const PKCS11_TOKEN *t = s->token;

	memset(out, 0, sizeof(*out));
	out->handle = PKCS11_get_slotid_from_slot(s);
	ti->slot_id = PKCS11_get_slotid_from_slot(s);
	if (s->description != NULL) {
		p11s_ck__trim(ti->slot_description, sizeof(ti->slot_description),
		    (const unsigned char *)s->description, strlen(s->description));
	}
	if (s->manufacturer != NULL) {
		p11s_ck__trim(ti->slot_manufacturer, sizeof(ti->slot_manufacturer),
		    (const unsigned char *)s->manufacturer, strlen(s->manufacturer));
	}
	if (s->removable) {
		ti->flags |= P11S_TOKEN_REMOVABLE;
	}
	/* libp11 does not expose CKF_HW_SLOT; P11S_TOKEN_HW_SLOT stays clear. */
	if (t == NULL) {
		return;
	}
	ti->flags |= P11S_TOKEN_PRESENT;
	if (t->label != NULL) {
		p11s_ck__trim(ti->label, sizeof(ti->label), (const unsigned char *)t->label,
		    strlen(t->label));
	}
	if (t->manufacturer != NULL) {
		p11s_ck__trim(ti->manufacturer, sizeof(ti->manufacturer),
		    (const unsigned char *)t->manufacturer, strlen(t->manufacturer));
	}
	if (t->model != NULL) {
		p11s_ck__trim(ti->model, sizeof(ti->model), (const unsigned char *)t->model,
		    strlen(t->model));
	}
	if (t->serialnr != NULL) {
		p11s_ck__trim(ti->serial, sizeof(ti->serial),
		    (const unsigned char *)t->serialnr, strlen(t->serialnr));
	}
	ti->flags |= t->loginRequired ? P11S_TOKEN_LOGIN_REQUIRED : 0;
	ti->flags |= t->secureLogin ? P11S_TOKEN_PROTECTED_AUTH_PATH : 0;
	ti->flags |= t->userPinCountLow ? P11S_TOKEN_USER_PIN_COUNT_LOW : 0;
	ti->flags |= t->userPinFinalTry ? P11S_TOKEN_USER_PIN_FINAL_TRY : 0;
	ti->flags |= t->userPinLocked ? P11S_TOKEN_USER_PIN_LOCKED : 0;
	ti->flags |= t->userPinSet ? P11S_TOKEN_USER_PIN_INITIALIZED : 0;
	ti->flags |= t->initialized ? P11S_TOKEN_INITIALIZED : 0;
	ti->flags |= t->readOnly ? P11S_TOKEN_WRITE_PROTECTED : 0;
}

static int lp11_open(p11s_provider *p, const p11s_provider_cfg *cfg)
{
	struct lp11 *lp = LP(p);

	int rc;

	if (cfg == NULL || cfg->module_path == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "libp11: no module path");
	}
	if ((rc = lp11_lazy_ready(P11S_ERR_MODULE)) < 0) {
		return rc;
	}
	ERR_clear_error();
	if ((lp->ctx = PKCS11_CTX_new()) == NULL) {
		return p11s_error__ossl(P11S_ERR_NOMEM, "libp11: PKCS11_CTX_new failed");
	}
	if (PKCS11_CTX_load(lp->ctx, cfg->module_path) < 0) {
		unsigned long e = ERR_peek_last_error();

		/* C_Initialize's CK_RV, when that is what failed, is kept in the record. */
		if (e != 0 && ERR_GET_LIB(e) == ERR_get_CKR_code() && ERR_GET_REASON(e) != 0) {
			unsigned long rv = (unsigned long)ERR_GET_REASON(e);

			ERR_clear_error();
			return p11s_error__ckr(P11S_ERR_MODULE, rv,
			    "cannot load PKCS#11 module %s: %s", cfg->module_path,
			    p11s_ck__rv_name(rv));
		}
		return p11s_error__ossl(P11S_ERR_MODULE, "cannot load PKCS#11 module %s",
		    cfg->module_path);
	}
	lp->loaded = 1;
	/* SoftHSM's C_Initialize leaves ENGINE errors in our queue (DESIGN.md, pitfalls). */
	ERR_clear_error();
	if (PKCS11_enumerate_slots(lp->ctx, &lp->slots, &lp->nslots) < 0) {
		lp->slots = NULL;
		lp->nslots = 0;
		return lp11_error(P11S_ERR_MODULE, "C_GetSlotList");
	}
	if ((lp->ui = UI_create_method("p11smime context-specific PIN")) == NULL ||
	    UI_method_set_reader(lp->ui, ui_read) < 0) {
		return p11s_error__ossl(P11S_ERR_NOMEM, "libp11: cannot create the PIN UI method");
	}
	lp->uip.p = p;
	if (PKCS11_set_ui_method(lp->ctx, lp->ui, &lp->uip) < 0) {
		return lp11_error(P11S_ERR_GENERIC, "PKCS11_set_ui_method");
	}
	return open_sessions(lp);
}

/*
 * The slots as enumerated by open. libp11 0.4.12 has no working way to refresh them:
 * PKCS11_update_slots crashes on its first use (NULL dereference, reproduced with SoftHSM
 * 2.6.1), and a fresh PKCS11_enumerate_slots releases the old slots, closing their sessions
 * and so the login. Token flags are therefore those seen at open, and a token inserted later
 * needs a new context (docs/backends.md).
 */
static int lp11_slots(p11s_provider *p, p11s_slot **out, size_t *n)
{
	struct lp11 *lp = LP(p);
	p11s_slot *arr;

	*out = NULL;
	*n = 0;
	if (lp->nslots == 0) {
		return P11S_OK;
	}
	if ((arr = calloc(lp->nslots, sizeof(*arr))) == NULL) {
		return lp11_nomem();
	}
	for (unsigned int i = 0; i < lp->nslots; i++) {
		fill_token_info(&lp->slots[i], &arr[i]);
	}
	*out = arr;
	*n = lp->nslots;
	return P11S_OK;
}

static int lp11_login(p11s_provider *p, const p11s_slot *slot, unsigned long user_type,
    const p11s_secret *pin)
{
	struct lp11 *lp = LP(p);
	PKCS11_SLOT *s;
	int res = 0;
	int rc;

	if (user_type != P11S_USER_NORMAL) {
		/* libp11 logs in CKU_CONTEXT_SPECIFIC itself, inside sign/decrypt (ui_read). */
		return p11s_error__set(P11S_ERR_UNSUPPORTED,
		    "libp11 backend cannot log in as user type %lu", user_type);
	}
	if ((rc = token_slot(lp, slot->handle, &s)) < 0) {
		return rc;
	}
	ERR_clear_error();
	if (PKCS11_is_logged_in(s, 0, &res) == 0 && res) {
		return P11S_OK;
	}
	/* PKCS#11 v2.40 §11.6 (C_Login); STANDARDS.md §11: a locked PIN is never tried. */
	if (s->token->userPinLocked) {
		return p11s_error__set(P11S_ERR_PIN_LOCKED, "token '%s': user PIN locked",
		    s->token->label != NULL ? s->token->label : "");
	}
	if (pin == NULL && !s->token->secureLogin) {
		return p11s_error__set(P11S_ERR_LOGIN,
		    "token '%s' has no protected authentication path and no PIN was given",
		    s->token->label != NULL ? s->token->label : "");
	}
	/*
	 * PIN NULL: C_Login with a NULL pPin on a PIN pad (v2.40 §5.6). libp11 itself keeps a
	 * copy of the PIN in its slot (to log in again after fork) and wipes it on release;
	 * we keep none.
	 */
	if (PKCS11_login(s, 0, pin != NULL ? p11s_secret_data(pin) : NULL) < 0) {
		return lp11_error(P11S_ERR_LOGIN, "C_Login");
	}
	return P11S_OK;
}

static int lp11_logged_in(p11s_provider *p, const p11s_slot *slot)
{
	PKCS11_SLOT *s = find_slot(LP(p), slot->handle);
	int res = 0;

	if (s == NULL || s->token == NULL) {
		return 0;
	}
	if (PKCS11_is_logged_in(s, 0, &res) < 0) {
		ERR_clear_error();
		return 0;
	}
	return res != 0;
}

static int dup_bytes(p11s_bytes *dst, const unsigned char *src, size_t len)
{
	dst->data = NULL;
	dst->len = 0;
	if (len == 0) {
		return P11S_OK;
	}
	if ((dst->data = malloc(len)) == NULL) {
		return lp11_nomem();
	}
	memcpy(dst->data, src, len);
	dst->len = len;
	return P11S_OK;
}

static int bn_bytes(p11s_bytes *dst, const EVP_PKEY *pk, const char *name)
{
	BIGNUM *bn = NULL;
	int rc = P11S_OK;
	int len;

	if (!EVP_PKEY_get_bn_param(pk, name, &bn)) {
		ERR_clear_error();
		return P11S_OK; /* not readable: leave it empty, as the ABI allows */
	}
	len = BN_num_bytes(bn);
	if (len > 0) {
		if ((dst->data = malloc((size_t)len)) == NULL) {
			rc = lp11_nomem();
			goto out;
		}
		dst->len = (size_t)BN_bn2bin(bn, dst->data);
	}
out:
	BN_free(bn);
	return rc;
}

/*
 * Public attributes from the EVP_PKEY libp11 builds from the object (and, for a private key,
 * from its public key or certificate): RSA modulus and exponent, EC curve OID (DER, as
 * CKA_EC_PARAMS) and point (DER OCTET STRING, as CKA_EC_POINT in PKCS#11 v2.40 §2.3.3).
 */
static int pubkey_attrs(p11s_object *o, EVP_PKEY *pk)
{
	char group[64];
	unsigned char *enc = NULL;
	size_t enc_len;
	unsigned char point[1 + 2 * 66 + 8];
	size_t point_len = 0;
	ASN1_OCTET_STRING *os = NULL;
	unsigned char *der = NULL;
	int der_len;
	int nid;
	int rc = P11S_OK;

	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
		if ((rc = bn_bytes(&o->modulus, pk, OSSL_PKEY_PARAM_RSA_N)) < 0) {
			return rc;
		}
		return bn_bytes(&o->public_exponent, pk, OSSL_PKEY_PARAM_RSA_E);
	}
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
		return P11S_OK;
	}
	if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		NULL) &&
	    (nid = OBJ_txt2nid(group)) != NID_undef &&
	    (der_len = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der)) > 0) {
		rc = dup_bytes(&o->ec_params, der, (size_t)der_len);
		OPENSSL_free(der);
		der = NULL;
		if (rc < 0) {
			return rc;
		}
	}
	/*
	 * libp11's EC keys are legacy EC_KEYs: OpenSSL 3.0 translates neither "encoded-pub-key"
	 * for them nor "pub" uncompressed (it answers compressed), while
	 * EVP_PKEY_get1_encoded_public_key gives the uncompressed form CKA_EC_POINT holds.
	 */
	if ((enc_len = EVP_PKEY_get1_encoded_public_key(pk, &enc)) > 0 && enc_len <= sizeof(point)) {
		memcpy(point, enc, enc_len);
		point_len = enc_len;
	} else if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, point,
		       sizeof(point), &point_len)) {
		point_len = 0;
	}
	OPENSSL_free(enc);
	if (point_len > 0) {
		if ((os = ASN1_OCTET_STRING_new()) == NULL ||
		    !ASN1_OCTET_STRING_set(os, point, (int)point_len) ||
		    (der_len = i2d_ASN1_OCTET_STRING(os, &der)) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode an EC point");
			goto out;
		}
		rc = dup_bytes(&o->ec_point, der, (size_t)der_len);
	}
out:
	ERR_clear_error();
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(os);
	return rc;
}

static p11s_key_type key_type_of(int evp_type)
{
	switch (evp_type) {
	case EVP_PKEY_RSA:
		return P11S_KEY_RSA;
	case EVP_PKEY_EC:
		return P11S_KEY_EC;
	default:
		return P11S_KEY_UNKNOWN;
	}
}

/* The handle of an object reference, added when not yet known. */
static int objref_handle(struct lp11 *lp, unsigned long slot_id, p11s_object_class cls,
    int evp_type, const unsigned char *id, size_t id_len, const char *label, uint64_t *out)
{
	struct objref *grown;
	struct objref *r;

	if (label == NULL) {
		label = "";
	}
	for (size_t i = 0; i < lp->nrefs; i++) {
		r = &lp->refs[i];
		if (r->slot_id == slot_id && r->cls == cls && r->evp_type == evp_type &&
		    r->id_len == id_len && (id_len == 0 || memcmp(r->id, id, id_len) == 0) &&
		    strcmp(r->label, label) == 0) {
			*out = i + 1;
			return P11S_OK;
		}
	}
	if ((grown = realloc(lp->refs, (lp->nrefs + 1) * sizeof(*grown))) == NULL) {
		return lp11_nomem();
	}
	lp->refs = grown;
	r = &lp->refs[lp->nrefs];
	memset(r, 0, sizeof(*r));
	if ((r->label = strdup(label)) == NULL ||
	    (id_len > 0 && (r->id = malloc(id_len)) == NULL)) {
		free(r->label);
		return lp11_nomem();
	}
	if (id_len > 0) {
		memcpy(r->id, id, id_len);
	}
	r->id_len = id_len;
	r->slot_id = slot_id;
	r->cls = cls;
	r->evp_type = evp_type;
	lp->nrefs++;
	*out = lp->nrefs;
	return P11S_OK;
}

static int add_key(struct lp11 *lp, unsigned long slot_id, PKCS11_KEY *k, p11s_object_class cls,
    p11s_object *o)
{
	EVP_PKEY *pub = NULL;
	int evp_type = PKCS11_get_key_type(k);
	int rc;

	o->slot = slot_id;
	o->cls = cls;
	o->key_type = key_type_of(evp_type);
	if ((o->label = strdup(k->label != NULL ? k->label : "")) == NULL) {
		return lp11_nomem();
	}
	if ((rc = dup_bytes(&o->id, k->id, k->id_len)) < 0 ||
	    (rc = objref_handle(lp, slot_id, cls, evp_type, k->id, k->id_len, k->label,
		 &o->handle)) < 0) {
		return rc;
	}
	/*
	 * libp11 0.4.12 exposes neither CKA_ALWAYS_AUTHENTICATE nor CKA_SIGN/DECRYPT/DERIVE:
	 * always_authenticate stays 0 (libp11 still does the context-specific login when the
	 * token needs it) and the usage bits say what the key type allows; a token that forbids
	 * the use answers CKR_KEY_FUNCTION_NOT_PERMITTED (P11S_ERR_MECHANISM).
	 */
	if (cls == P11S_OBJ_PRIVATE_KEY) {
		o->can_sign = o->key_type != P11S_KEY_UNKNOWN;
		o->can_decrypt = o->key_type == P11S_KEY_RSA;
		o->can_derive = o->key_type == P11S_KEY_EC;
	}
	/*
	 * For a private key, libp11 builds the EVP_PKEY from the key's own attributes plus its
	 * public key or certificate; PKCS11_get_public_key on a private key would do the same
	 * but leaks an object in 0.4.12 (valgrind), so it is kept for public keys.
	 */
	pub = cls == P11S_OBJ_PRIVATE_KEY ? PKCS11_get_private_key(k) : PKCS11_get_public_key(k);
	if (pub == NULL) {
		ERR_clear_error(); /* no public part known: the attributes stay empty */
		return P11S_OK;
	}
	rc = pubkey_attrs(o, pub);
	EVP_PKEY_free(pub);
	return rc;
}

static int add_cert(struct lp11 *lp, unsigned long slot_id, const PKCS11_CERT *c, p11s_object *o)
{
	unsigned char *der = NULL;
	EVP_PKEY *pk;
	int len;
	int rc;

	o->slot = slot_id;
	o->cls = P11S_OBJ_CERTIFICATE;
	if ((o->label = strdup(c->label != NULL ? c->label : "")) == NULL) {
		return lp11_nomem();
	}
	if ((rc = dup_bytes(&o->id, c->id, c->id_len)) < 0 ||
	    (rc = objref_handle(lp, slot_id, P11S_OBJ_CERTIFICATE, 0, c->id, c->id_len, c->label,
		 &o->handle)) < 0) {
		return rc;
	}
	if (c->x509 == NULL) {
		return P11S_OK;
	}
	if ((pk = X509_get0_pubkey(c->x509)) != NULL) {
		o->key_type = key_type_of(EVP_PKEY_get_base_id(pk));
	}
	if ((len = i2d_X509(c->x509, &der)) <= 0) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode certificate '%s'", o->label);
	}
	rc = dup_bytes(&o->value, der, (size_t)len);
	OPENSSL_free(der);
	return rc;
}

static int lp11_objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n)
{
	struct lp11 *lp = LP(p);
	PKCS11_SLOT *s;
	PKCS11_KEY *priv = NULL, *pub = NULL;
	PKCS11_CERT *certs = NULL;
	unsigned int npriv = 0, npub = 0, ncerts = 0;
	p11s_object *objs = NULL;
	size_t total, k = 0;
	unsigned long slot_id;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = token_slot(lp, slot->handle, &s)) < 0) {
		return rc;
	}
	slot_id = PKCS11_get_slotid_from_slot(s);
	ERR_clear_error();
	/*
	 * The three arrays stay owned by libp11 and are only valid until its next enumeration,
	 * so everything is copied before the next call.
	 */
	if (PKCS11_enumerate_keys(s->token, &priv, &npriv) < 0) {
		return lp11_error(P11S_ERR_TOKEN, "C_FindObjects");
	}
	total = npriv;
	if ((objs = calloc(npriv > 0 ? npriv : 1, sizeof(*objs))) == NULL) {
		return lp11_nomem();
	}
	for (unsigned int i = 0; i < npriv; i++) {
		if ((rc = add_key(lp, slot_id, &priv[i], P11S_OBJ_PRIVATE_KEY, &objs[k++])) < 0) {
			goto out;
		}
	}
	if (PKCS11_enumerate_public_keys(s->token, &pub, &npub) < 0) {
		rc = lp11_error(P11S_ERR_TOKEN, "C_FindObjects");
		goto out;
	}
	if (npub > 0) {
		p11s_object *grown = realloc(objs, (total + npub) * sizeof(*objs));

		if (grown == NULL) {
			rc = lp11_nomem();
			goto out;
		}
		objs = grown;
		memset(objs + total, 0, npub * sizeof(*objs));
		total += npub;
	}
	for (unsigned int i = 0; i < npub; i++) {
		if ((rc = add_key(lp, slot_id, &pub[i], P11S_OBJ_PUBLIC_KEY, &objs[k++])) < 0) {
			goto out;
		}
	}
	if (PKCS11_enumerate_certs(s->token, &certs, &ncerts) < 0) {
		rc = lp11_error(P11S_ERR_TOKEN, "C_FindObjects");
		goto out;
	}
	if (ncerts > 0) {
		p11s_object *grown = realloc(objs, (total + ncerts) * sizeof(*objs));

		if (grown == NULL) {
			rc = lp11_nomem();
			goto out;
		}
		objs = grown;
		memset(objs + total, 0, ncerts * sizeof(*objs));
		total += ncerts;
	}
	for (unsigned int i = 0; i < ncerts; i++) {
		if ((rc = add_cert(lp, slot_id, &certs[i], &objs[k++])) < 0) {
			goto out;
		}
	}
	*out = objs;
	*n = k;
	objs = NULL;
	rc = P11S_OK;
out:
	if (objs != NULL) {
		p11s_objects_free(objs, k);
	}
	return rc;
}

/*
 * Find the libp11 key behind an object handle, in libp11's current key list (which it
 * rebuilds when it refreshes the token), and the slot it is on.
 */
static int resolve_key(struct lp11 *lp, const p11s_object *obj, PKCS11_SLOT **slotp,
    PKCS11_KEY **out)
{
	const struct objref *r;
	PKCS11_SLOT *s;
	PKCS11_KEY *keys = NULL;
	unsigned int n = 0;
	int rc;

	*out = NULL;
	if (obj == NULL || obj->handle == 0 || obj->handle > lp->nrefs) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "libp11: unknown object handle");
	}
	r = &lp->refs[obj->handle - 1];
	if (r->cls != P11S_OBJ_PRIVATE_KEY) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "libp11: object '%s' is not a private key",
		    r->label);
	}
	if ((rc = token_slot(lp, r->slot_id, &s)) < 0) {
		return rc;
	}
	ERR_clear_error();
	if (PKCS11_enumerate_keys(s->token, &keys, &n) < 0) {
		return lp11_error(P11S_ERR_TOKEN, "C_FindObjects");
	}
	for (unsigned int i = 0; i < n; i++) {
		const char *label = keys[i].label != NULL ? keys[i].label : "";

		if (keys[i].id_len == r->id_len &&
		    (r->id_len == 0 || memcmp(keys[i].id, r->id, r->id_len) == 0) &&
		    strcmp(label, r->label) == 0 && PKCS11_get_key_type(&keys[i]) == r->evp_type) {
			*slotp = s;
			*out = &keys[i];
			return P11S_OK;
		}
	}
	/* Gone, or hidden again after a logout: the caller logs in and finds objects again. */
	return p11s_error__set(P11S_ERR_NOT_FOUND, "libp11: private key '%s' is no longer visible",
	    r->label);
}

static int unsupported(unsigned long mech)
{
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "libp11 backend cannot do %s natively",
	    p11s_mech_name(mech));
}

/* Prepare the UI payload for a possible context-specific login on this slot. */
static void arm_ui(struct lp11 *lp, p11s_provider *p, PKCS11_SLOT *s)
{
	fill_token_info(s, &lp->uip.slot);
	lp->uip.p = p;
	lp->uip.rc = P11S_OK;
}

/* An error from a private-key operation: the PIN callback's, else libp11's. */
static int op_error(struct lp11 *lp, int fallback, const char *what)
{
	if (lp->uip.rc < 0) {
		ERR_clear_error();
		return lp->uip.rc;
	}
	return lp11_error(fallback, what);
}

/* The RSA modulus size in bytes, from the modulus libp11 read for the key. */
static int rsa_size(PKCS11_KEY *k, size_t *out)
{
	EVP_PKEY *pub = PKCS11_get_private_key(k);
	int size;

	*out = 0;
	if (pub == NULL) {
		return lp11_error(P11S_ERR_TOKEN, "C_GetAttributeValue(CKA_MODULUS)");
	}
	size = EVP_PKEY_get_size(pub);
	EVP_PKEY_free(pub);
	if (size <= 0) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "libp11: cannot tell the RSA key size");
	}
	*out = (size_t)size;
	return P11S_OK;
}

/*
 * CKM_RSA_PKCS over a DigestInfo the caller built: PKCS11_private_encrypt with
 * RSA_PKCS1_PADDING is C_SignInit(CKM_RSA_PKCS) + C_Sign (measured with pkcs11-spy).
 */
static int rsa_pkcs_sign(struct lp11 *lp, PKCS11_KEY *k, const unsigned char *in, size_t inlen,
    p11s_buf **out)
{
	p11s_buf *sig = NULL;
	size_t size;
	int len;
	int rc;

	if ((rc = rsa_size(k, &size)) < 0) {
		return rc;
	}
	/* PKCS#1 v1.5 (RFC 8017 §9.2): the DigestInfo must leave room for 11 bytes of padding. */
	if (inlen + 11 > size || inlen > INT_MAX) {
		return p11s_error__set(P11S_ERR_INVALID_ARG,
		    "a %zu-byte DigestInfo does not fit a %zu-byte RSA key", inlen, size);
	}
	if ((rc = p11s_buf_new(&sig, size)) < 0) {
		return rc;
	}
	ERR_clear_error();
	/*
	 * libp11 marks its RSA entry points deprecated (0.5.0 replaces them with its own OpenSSL
	 * provider), but they are the only ones in 0.4.12's API that send CKM_RSA_PKCS itself;
	 * the EVP_PKEY route would go through a legacy RSA_METHOD.
	 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	len = PKCS11_private_encrypt((int)inlen, in, sig->data, k, RSA_PKCS1_PADDING);
#pragma GCC diagnostic pop
	if (len <= 0 || (size_t)len > size) {
		rc = op_error(lp, P11S_ERR_TOKEN, "C_SignInit/C_Sign");
		goto out;
	}
	sig->len = (size_t)len;
	*out = sig;
	sig = NULL;
	rc = P11S_OK;
out:
	p11s_buf_free(sig);
	return rc;
}

/*
 * CKM_ECDSA over a hash: libp11's EC_KEY_METHOD sends C_SignInit(CKM_ECDSA) + C_Sign and
 * turns the token's r||s into an ECDSA_SIG that OpenSSL DER-encodes; the ABI wants r||s back,
 * each padded to the order's length (PKCS#11 v2.40 curr. mech. §2.3.1).
 */
static int ecdsa_sign(struct lp11 *lp, PKCS11_KEY *k, const unsigned char *in, size_t inlen,
    p11s_buf **out)
{
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	ECDSA_SIG *esig = NULL;
	unsigned char *der = NULL;
	const unsigned char *q;
	const BIGNUM *r, *s;
	p11s_buf *sig = NULL;
	size_t derlen = 0;
	size_t nlen;
	int rc;

	ERR_clear_error();
	if ((pk = PKCS11_get_private_key(k)) == NULL) {
		rc = lp11_error(P11S_ERR_TOKEN, "C_GetAttributeValue(CKA_EC_PARAMS)");
		goto out;
	}
	if (EVP_PKEY_get_bits(pk) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "libp11: EC key without a known curve");
		goto out;
	}
	nlen = ((size_t)EVP_PKEY_get_bits(pk) + 7) / 8;
	if ((pctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_sign_init(pctx) <= 0 ||
	    EVP_PKEY_sign(pctx, NULL, &derlen, in, inlen) <= 0) {
		rc = op_error(lp, P11S_ERR_CRYPTO, "EVP_PKEY_sign_init");
		goto out;
	}
	if ((der = OPENSSL_malloc(derlen)) == NULL) {
		rc = lp11_nomem();
		goto out;
	}
	if (EVP_PKEY_sign(pctx, der, &derlen, in, inlen) <= 0) {
		rc = op_error(lp, P11S_ERR_TOKEN, "C_SignInit/C_Sign");
		goto out;
	}
	q = der;
	if ((esig = d2i_ECDSA_SIG(NULL, &q, (long)derlen)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "libp11: malformed ECDSA signature");
		goto out;
	}
	ECDSA_SIG_get0(esig, &r, &s);
	if ((rc = p11s_buf_new(&sig, 2 * nlen)) < 0) {
		goto out;
	}
	if (BN_bn2binpad(r, sig->data, (int)nlen) < 0 ||
	    BN_bn2binpad(s, sig->data + nlen, (int)nlen) < 0) {
		rc = p11s_error__set(P11S_ERR_CRYPTO, "libp11: ECDSA signature longer than the order");
		goto out;
	}
	*out = sig;
	sig = NULL;
	rc = P11S_OK;
out:
	p11s_buf_free(sig);
	ECDSA_SIG_free(esig);
	OPENSSL_free(der);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pk);
	return rc;
}

static int lp11_sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	struct lp11 *lp = LP(p);
	PKCS11_SLOT *s = NULL;
	PKCS11_KEY *k = NULL;
	int type;
	int rc;

	*out = NULL;
	if (mech == NULL || in == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "libp11: sign without input");
	}
	if (mech->type != P11S_MECH_RSA_PKCS && mech->type != P11S_MECH_ECDSA) {
		return unsupported(mech->type);
	}
	if ((rc = resolve_key(lp, key, &s, &k)) < 0) {
		return rc;
	}
	type = PKCS11_get_key_type(k);
	arm_ui(lp, p, s);
	if (mech->type == P11S_MECH_RSA_PKCS && type == EVP_PKEY_RSA) {
		return rsa_pkcs_sign(lp, k, in, inlen, out);
	}
	if (mech->type == P11S_MECH_ECDSA && type == EVP_PKEY_EC) {
		return ecdsa_sign(lp, k, in, inlen, out);
	}
	return p11s_error__set(P11S_ERR_MECHANISM, "%s does not fit key '%s'",
	    p11s_mech_name(mech->type), key->label != NULL ? key->label : "");
}

static int lp11_decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	struct lp11 *lp = LP(p);
	PKCS11_SLOT *s = NULL;
	PKCS11_KEY *k = NULL;
	p11s_buf *pt = NULL;
	size_t size;
	int len;
	int rc;

	*out = NULL;
	if (mech == NULL || in == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "libp11: decrypt without input");
	}
	if (mech->type != P11S_MECH_RSA_PKCS) {
		return unsupported(mech->type);
	}
	if ((rc = resolve_key(lp, key, &s, &k)) < 0) {
		return rc;
	}
	if (PKCS11_get_key_type(k) != EVP_PKEY_RSA) {
		return p11s_error__set(P11S_ERR_MECHANISM, "CKM_RSA_PKCS does not fit key '%s'",
		    key->label != NULL ? key->label : "");
	}
	if ((rc = rsa_size(k, &size)) < 0) {
		return rc;
	}
	if (inlen > size) {
		/* RFC 8017 §7.2.2: never longer than k bytes; the error is the uniform one. */
		return p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
	}
	/* libp11 writes up to flen bytes (its doc: "MUST be at least flen bytes long"). */
	if ((rc = p11s_buf_new(&pt, size)) < 0) {
		return rc;
	}
	arm_ui(lp, p, s);
	ERR_clear_error();
	/* Deprecated by libp11 only; see rsa_pkcs_sign. C_DecryptInit(CKM_RSA_PKCS) + C_Decrypt. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	len = PKCS11_private_decrypt((int)inlen, in, pt->data, k, RSA_PKCS1_PADDING);
#pragma GCC diagnostic pop
	if (len < 0 || (size_t)len > size) {
		rc = op_error(lp, P11S_ERR_DECRYPT, "C_DecryptInit/C_Decrypt");
		goto out;
	}
	/* Shrink without realloc: the tail is wiped, p11s_buf_free wipes len bytes only. */
	OPENSSL_cleanse(pt->data + len, size - (size_t)len);
	pt->len = (size_t)len;
	*out = pt;
	pt = NULL;
	rc = P11S_OK;
out:
	p11s_buf_free(pt);
	return rc;
}

/* The peer's public key on our key's curve, checked (RFC 8551 KARI; SP 800-56A §5.6.2.3). */
static int peer_key(EVP_PKEY *ours, const unsigned char *peer, size_t peer_len, EVP_PKEY **out)
{
	char group[64];
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pk = NULL;
	int rc;

	*out = NULL;
	if (!EVP_PKEY_get_utf8_string_param(ours, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		NULL)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "libp11: EC key without a named curve");
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, peer, peer_len) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "peer EC point is not on curve %s", group);
		goto out;
	}
	EVP_PKEY_CTX_free(pctx);
	if ((pctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_public_check(pctx) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "peer EC point is not on curve %s", group);
		goto out;
	}
	*out = pk;
	pk = NULL;
	rc = P11S_OK;
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

/*
 * CKM_ECDH1_DERIVE with CKD_NULL: libp11's EC_KEY_METHOD compute_key derives a session-only
 * generic secret (CKA_TOKEN false, extractable), reads CKA_VALUE and destroys the object
 * (C_DestroyObject seen with pkcs11-spy); OpenSSL returns Z, the x-coordinate.
 */
static int lp11_derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out)
{
	struct lp11 *lp = LP(p);
	PKCS11_SLOT *s = NULL;
	PKCS11_KEY *k = NULL;
	EVP_PKEY *pk = NULL;
	EVP_PKEY *peerk = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	p11s_buf *z = NULL;
	size_t zlen = 0;
	int rc;

	*out = NULL;
	if (peer == NULL || peer_len == 0 || peer[0] != 0x04) {
		return p11s_error__set(P11S_ERR_MALFORMED, "peer EC point is not uncompressed");
	}
	if ((rc = resolve_key(lp, key, &s, &k)) < 0) {
		return rc;
	}
	if (PKCS11_get_key_type(k) != EVP_PKEY_EC) {
		return p11s_error__set(P11S_ERR_MECHANISM, "CKM_ECDH1_DERIVE does not fit key '%s'",
		    key->label != NULL ? key->label : "");
	}
	arm_ui(lp, p, s);
	ERR_clear_error();
	if ((pk = PKCS11_get_private_key(k)) == NULL) {
		rc = lp11_error(P11S_ERR_TOKEN, "C_GetAttributeValue(CKA_EC_PARAMS)");
		goto out;
	}
	if ((rc = peer_key(pk, peer, peer_len, &peerk)) < 0) {
		goto out;
	}
	if ((pctx = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_derive_init(pctx) <= 0 ||
	    EVP_PKEY_derive_set_peer(pctx, peerk) <= 0 ||
	    EVP_PKEY_derive(pctx, NULL, &zlen) <= 0 || zlen == 0) {
		rc = op_error(lp, P11S_ERR_CRYPTO, "EVP_PKEY_derive_init");
		goto out;
	}
	if ((rc = p11s_buf_new(&z, zlen)) < 0) {
		goto out;
	}
	if (EVP_PKEY_derive(pctx, z->data, &zlen) <= 0) {
		rc = op_error(lp, P11S_ERR_TOKEN, "C_DeriveKey");
		goto out;
	}
	z->len = zlen;
	*out = z;
	z = NULL;
	rc = P11S_OK;
out:
	p11s_buf_free(z);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(peerk);
	EVP_PKEY_free(pk);
	return rc;
}

static void lp11_close(p11s_provider *p)
{
	struct lp11 *lp = p->priv != NULL ? LP(p) : NULL;

	if (lp == NULL) {
		return;
	}
	if (lp->ctx != NULL) {
		/* Releasing the slots closes their sessions (C_CloseAllSessions), ending the login. */
		if (lp->slots != NULL) {
			PKCS11_release_all_slots(lp->ctx, lp->slots, lp->nslots);
		}
		if (lp->loaded) {
			PKCS11_CTX_unload(lp->ctx); /* C_Finalize and dlclose */
		}
		PKCS11_CTX_free(lp->ctx);
	}
	if (lp->ui != NULL) {
		UI_destroy_method(lp->ui);
	}
	for (size_t i = 0; i < lp->nrefs; i++) {
		free(lp->refs[i].id);
		free(lp->refs[i].label);
	}
	free(lp->refs);
	memset(lp, 0, sizeof(*lp));
	ERR_clear_error();
}

const struct p11s_provider_ops p11s_libp11_ops = {
	.abi = P11S_PROVIDER_ABI,
	.name = "libp11",
	/*
	 * Only what reaches the token natively (docs/backends.md): no RSA_PSS, RSA_OAEP, EDDSA.
	 * CONTEXT_LOGIN: libp11 logs in CKU_CONTEXT_SPECIFIC right after C_SignInit/C_DecryptInit
	 * with the PIN ui_read gets from cfg->get_pin; PROTECTED_AUTH: C_Login with a NULL PIN.
	 */
	.caps = P11S_CAP_RSA_PKCS_SIGN | P11S_CAP_RSA_PKCS_DECRYPT | P11S_CAP_ECDSA |
	    P11S_CAP_ECDH | P11S_CAP_CONTEXT_LOGIN | P11S_CAP_PROTECTED_AUTH,
	.priv_size = sizeof(struct lp11),
	.open = lp11_open,
	.slots = lp11_slots,
	.login = lp11_login,
	.logged_in = lp11_logged_in,
	.objects = lp11_objects,
	.sign = lp11_sign,
	.decrypt = lp11_decrypt,
	.derive = lp11_derive,
	.close = lp11_close,
};

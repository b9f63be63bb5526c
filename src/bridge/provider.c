/*
 * The bridge provider "p11s" (DESIGN.md decision 1): registration in a library context of its
 * own, the provider entry points, and p11s_key_pkey() (include/p11smime/token.h), which turns a
 * token key into an EVP_PKEY whose private operations go to the token.
 *
 * OpenSSL 3.0 traps handled here: the provider lives in a NEW OSSL_LIB_CTX (a token module
 * such as SoftHSM links the same libcrypto and must never see it); fetches without a property
 * query prefer the default provider, so certificate and peer keys stay ordinary keys.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "bridge/bridge.h"
#include "bridge/bridge_int.h"
#include "core/error_int.h"

/* ---- digests ------------------------------------------------------------------------- */

/* DigestInfo prefixes, RFC 8017 §9.2 note 1 (STANDARDS.md §0). */
static const unsigned char prefix_sha1[] = { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
	0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14 };
static const unsigned char prefix_sha224[] = { 0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c };
static const unsigned char prefix_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const unsigned char prefix_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const unsigned char prefix_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

static const p11s_bridge_md mds[] = {
	{ "SHA1", NID_sha1, 20, P11S_HASH_SHA1, P11S_MGF1_SHA1, prefix_sha1, sizeof(prefix_sha1) },
	{ "SHA2-224", NID_sha224, 28, P11S_HASH_SHA224, P11S_MGF1_SHA224, prefix_sha224,
	    sizeof(prefix_sha224) },
	{ "SHA2-256", NID_sha256, 32, P11S_HASH_SHA256, P11S_MGF1_SHA256, prefix_sha256,
	    sizeof(prefix_sha256) },
	{ "SHA2-384", NID_sha384, 48, P11S_HASH_SHA384, P11S_MGF1_SHA384, prefix_sha384,
	    sizeof(prefix_sha384) },
	{ "SHA2-512", NID_sha512, 64, P11S_HASH_SHA512, P11S_MGF1_SHA512, prefix_sha512,
	    sizeof(prefix_sha512) },
};

const p11s_bridge_md *p11s_bridge__md(OSSL_LIB_CTX *libctx, const char *name)
{
	const p11s_bridge_md *found = NULL;
	EVP_MD *md;

	if (name == NULL) {
		return NULL;
	}
	/* Fetching resolves every alias ("SHA256", "sha-256", the OID) to one implementation. */
	ERR_set_mark();
	md = EVP_MD_fetch(libctx, name, NULL);
	ERR_pop_to_mark();
	if (md == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		if (EVP_MD_is_a(md, mds[i].name)) {
			found = &mds[i];
			break;
		}
	}
	EVP_MD_free(md);
	return found;
}

/* ---- errors and helpers -------------------------------------------------------------- */

void p11s_bridge__raise(int reason, const char *what)
{
	const p11s_error *e = p11s_error_last();

	/*
	 * The p11s record stays as the token layer set it (code, CK_RV, "token refuses ..."), so
	 * the caller reports the token's words; OpenSSL's queue gets a copy for its own callers.
	 */
	ERR_raise_data(ERR_LIB_PROV, reason, "p11s: %s%s%s", what,
	    e->code != P11S_OK ? ": " : "", e->code != P11S_OK ? e->message : "");
}

static CRYPTO_ONCE cookie_once = CRYPTO_ONCE_STATIC_INIT;
static uint64_t cookie;

static void cookie_init(void)
{
	if (RAND_bytes((unsigned char *)&cookie, sizeof(cookie)) <= 0) {
		/* Without randomness the cookie still separates our params from a typo. */
		cookie = 0x7031317342726467ULL ^ (uint64_t)(uintptr_t)&cookie;
	}
	if (cookie == 0) {
		cookie = 1;
	}
}

uint64_t p11s_bridge__cookie(void)
{
	if (!CRYPTO_THREAD_run_once(&cookie_once, cookie_init)) {
		return 0;
	}
	return cookie;
}

int p11s_bridge__ec_point(OSSL_LIB_CTX *libctx, const EVP_PKEY *pub, unsigned char **out,
    size_t *outlen)
{
	char group[64];
	unsigned char *enc = NULL, *raw = NULL;
	size_t enclen = 0, rawlen;
	EC_GROUP *g = NULL;
	EC_POINT *pt = NULL;
	int ok = 0;

	*out = NULL;
	*outlen = 0;
	if (!EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	        NULL) ||
	    !EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, NULL, 0, &enclen) ||
	    (enc = OPENSSL_malloc(enclen)) == NULL ||
	    !EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, enc, enclen, &enclen)) {
		goto out;
	}
	if (enclen > 0 && enc[0] == POINT_CONVERSION_UNCOMPRESSED) {
		*out = enc;
		*outlen = enclen;
		return 1;
	}
	/* A compressed point (a sender may choose it): CKM_ECDH1_DERIVE wants 04||X||Y. */
	if ((g = EC_GROUP_new_by_curve_name_ex(libctx, NULL, OBJ_sn2nid(group))) == NULL ||
	    (pt = EC_POINT_new(g)) == NULL || !EC_POINT_oct2point(g, pt, enc, enclen, NULL) ||
	    (rawlen = EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, NULL, 0, NULL)) == 0 ||
	    (raw = OPENSSL_malloc(rawlen)) == NULL ||
	    EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, raw, rawlen, NULL) != rawlen) {
		OPENSSL_free(raw);
		goto out;
	}
	*out = raw;
	*outlen = rawlen;
	ok = 1;
out:
	OPENSSL_free(enc);
	EC_POINT_free(pt);
	EC_GROUP_free(g);
	return ok;
}

/* ---- the provider -------------------------------------------------------------------- */

/*
 * Names as the default provider spells them, so that EVP_PKEY_is_a(), CMS's key type checks
 * and the legacy NID lookup (EVP_PKEY_get_id) treat a token key like a software key.
 */
#define NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define NAMES_ED25519 "ED25519:1.3.101.112"
/* RFC 8410 §3: id-X25519 1.3.101.110, id-X448 1.3.101.111. */
#define NAMES_X25519 "X25519:1.3.101.110"
#define NAMES_X448 "X448:1.3.101.111"

static const OSSL_ALGORITHM keymgmt_algs[] = {
	{ NAMES_RSA, P11S_BRIDGE_PROPQ, p11s_bridge__rsa_keymgmt, "RSA key on a PKCS#11 token" },
	{ NAMES_EC, P11S_BRIDGE_PROPQ, p11s_bridge__ec_keymgmt, "EC key on a PKCS#11 token" },
	{ NAMES_ED25519, P11S_BRIDGE_PROPQ, p11s_bridge__ed25519_keymgmt,
	    "Ed25519 key on a PKCS#11 token" },
	{ NAMES_X25519, P11S_BRIDGE_PROPQ, p11s_bridge__x25519_keymgmt,
	    "X25519 key on a PKCS#11 token (CKK_EC_MONTGOMERY)" },
	{ NAMES_X448, P11S_BRIDGE_PROPQ, p11s_bridge__x448_keymgmt,
	    "X448 key on a PKCS#11 token (CKK_EC_MONTGOMERY)" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM signature_algs[] = {
	{ NAMES_RSA, P11S_BRIDGE_PROPQ, p11s_bridge__rsa_signature,
	    "RSA PKCS#1 v1.5 and PSS on a token" },
	{ "ECDSA", P11S_BRIDGE_PROPQ, p11s_bridge__ecdsa_signature, "ECDSA on a token" },
	{ NAMES_ED25519, P11S_BRIDGE_PROPQ, p11s_bridge__ed25519_signature,
	    "PureEdDSA Ed25519 on a token (CKM_EDDSA)" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM asym_cipher_algs[] = {
	{ NAMES_RSA, P11S_BRIDGE_PROPQ, p11s_bridge__rsa_asym_cipher,
	    "RSA PKCS#1 v1.5 and OAEP decryption on a token" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM keyexch_algs[] = {
	{ "ECDH", P11S_BRIDGE_PROPQ, p11s_bridge__ecdh_keyexch, "ECDH on a token, X9.63 KDF" },
	/* The names of the default provider's exchanges, which the keymgmts' keys ask for. */
	{ NAMES_X25519, P11S_BRIDGE_PROPQ, p11s_bridge__xdh_keyexch,
	    "X25519 on a token (CKM_ECDH1_DERIVE)" },
	{ NAMES_X448, P11S_BRIDGE_PROPQ, p11s_bridge__xdh_keyexch,
	    "X448 on a token (CKM_ECDH1_DERIVE)" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
	*no_cache = 0;
	switch (operation_id) {
	case OSSL_OP_KEYMGMT:
		return keymgmt_algs;
	case OSSL_OP_SIGNATURE:
		return signature_algs;
	case OSSL_OP_ASYM_CIPHER:
		return asym_cipher_algs;
	case OSSL_OP_KEYEXCH:
		return keyexch_algs;
	default:
		return NULL;
	}
}

static const OSSL_PARAM prov_param_types[] = {
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
	OSSL_PARAM_END,
};

static const OSSL_PARAM *prov_gettable_params(void *provctx)
{
	return prov_param_types;
}

static int prov_get_params(void *provctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "p11smime PKCS#11 bridge")) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, P11S_VERSION)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, P11S_VERSION)) {
		return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
	    !OSSL_PARAM_set_int(p, 1)) {
		return 0;
	}
	return 1;
}

static void prov_teardown(void *provctx)
{
	OPENSSL_free(provctx);
}

static const OSSL_DISPATCH prov_dispatch[] = {
	{ OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
	{ OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_gettable_params },
	{ OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
	{ 0, NULL },
};

static int prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
    const OSSL_DISPATCH **out, void **provctx)
{
	OSSL_FUNC_core_get_libctx_fn *get_libctx = NULL;
	p11s_bprov *bp;

	for (; in->function_id != 0; in++) {
		if (in->function_id == OSSL_FUNC_CORE_GET_LIBCTX) {
			get_libctx = OSSL_FUNC_core_get_libctx(in);
		}
	}
	if (get_libctx == NULL || (bp = OPENSSL_zalloc(sizeof(*bp))) == NULL) {
		return 0;
	}
	/* A built-in provider shares our libcrypto: the core's context is the OSSL_LIB_CTX. */
	bp->libctx = (OSSL_LIB_CTX *)get_libctx(handle);
	*out = prov_dispatch;
	*provctx = bp;
	return 1;
}

int p11s_bridge__is_bridge_key(const EVP_PKEY *pkey)
{
	const OSSL_PROVIDER *prov = pkey != NULL ? EVP_PKEY_get0_provider(pkey) : NULL;

	return prov != NULL && strcmp(OSSL_PROVIDER_get0_name(prov), P11S_BRIDGE_NAME) == 0;
}

int p11s_bridge__libctx_new(OSSL_LIB_CTX **out)
{
	OSSL_LIB_CTX *libctx;
	int rc = P11S_ERR_CRYPTO;

	*out = NULL;
	if ((libctx = OSSL_LIB_CTX_new()) == NULL) {
		return p11s_error__ossl(P11S_ERR_NOMEM, "cannot create an OpenSSL library context");
	}
	if (OSSL_PROVIDER_load(libctx, "default") == NULL ||
	    OSSL_PROVIDER_load(libctx, "base") == NULL) {
		p11s_error__ossl(rc, "cannot load OpenSSL's default provider");
		goto out;
	}
	if (!OSSL_PROVIDER_add_builtin(libctx, P11S_BRIDGE_NAME, prov_init) ||
	    OSSL_PROVIDER_load(libctx, P11S_BRIDGE_NAME) == NULL) {
		p11s_error__ossl(rc, "cannot load the p11s bridge provider");
		goto out;
	}
	/*
	 * Prefer the default provider when nothing is asked for: keys decoded from certificates
	 * and CMS peers then live there, and OpenSSL only reaches our algorithms through a token
	 * key's keymgmt (whose export refuses private parts, so it falls back to our provider).
	 */
	if (!EVP_set_default_properties(libctx, "?provider=default")) {
		p11s_error__ossl(rc, "cannot set the default property query");
		goto out;
	}
	*out = libctx;
	libctx = NULL;
	rc = P11S_OK;
out:
	p11s_bridge__libctx_free(libctx);
	return rc;
}

/* The providers p11s_bridge__libctx_new() loads, each once. */
static const char *const loaded[] = { "default", "base", P11S_BRIDGE_NAME };

struct prov_list {
	OSSL_PROVIDER *v[sizeof(loaded) / sizeof(loaded[0])];
	size_t n;
};

static int collect_loaded(OSSL_PROVIDER *prov, void *arg)
{
	struct prov_list *l = arg;
	const char *name = OSSL_PROVIDER_get0_name(prov);

	for (size_t i = 0; i < sizeof(loaded) / sizeof(loaded[0]); i++) {
		if (name != NULL && strcmp(name, loaded[i]) == 0 &&
		    l->n < sizeof(l->v) / sizeof(l->v[0])) {
			l->v[l->n++] = prov;
			break;
		}
	}
	return 1;
}

void p11s_bridge__libctx_free(OSSL_LIB_CTX *libctx)
{
	struct prov_list l = { { NULL }, 0 };

	if (libctx == NULL) {
		return;
	}
	/* Drop the references OSSL_PROVIDER_load() gave us; the context frees the rest. */
	OSSL_PROVIDER_do_all(libctx, collect_loaded, &l);
	for (size_t i = 0; i < l.n; i++) {
		OSSL_PROVIDER_unload(l.v[i]);
	}
	OSSL_LIB_CTX_free(libctx);
}

/* The bridge is above the token layer: it asks the token for nothing but the key's data. */
int p11s_key_pkey(p11s_key *key, EVP_PKEY **out)
{
	OSSL_LIB_CTX *libctx;
	struct p11s_bridge_keyref ref;
	OSSL_PARAM *pub = NULL, *all = NULL;
	OSSL_PARAM extra[2];
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pkey = NULL;
	const char *type;
	int rc = P11S_OK;

	*out = NULL;
	if (key == NULL || (libctx = key->ctx->libctx) == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_key_pkey: NULL argument");
	}
	if (key->pub == NULL) {
		return p11s_error__set(P11S_ERR_NOT_FOUND,
		    "no public key known for %s (no certificate, public key object or attributes)",
		    key->uri ? key->uri : "the key");
	}
	if (EVP_PKEY_is_a(key->pub, "RSA") || EVP_PKEY_is_a(key->pub, "RSA-PSS")) {
		type = "RSA";
	} else if (EVP_PKEY_is_a(key->pub, "EC")) {
		type = "EC";
	} else if (EVP_PKEY_is_a(key->pub, "ED25519")) {
		type = "ED25519";
	} else if (EVP_PKEY_is_a(key->pub, "X25519")) {
		type = "X25519";
	} else if (EVP_PKEY_is_a(key->pub, "X448")) {
		type = "X448";
	} else {
		return p11s_error__set(P11S_ERR_UNSUPPORTED, "key %s: type %s is not supported",
		    key->uri ? key->uri : "", EVP_PKEY_get0_type_name(key->pub));
	}
	ref.cookie = p11s_bridge__cookie();
	ref.key = key;
	extra[0] = OSSL_PARAM_construct_octet_string(P11S_BRIDGE_PARAM_KEYREF, &ref, sizeof(ref));
	extra[1] = OSSL_PARAM_construct_end();
	/*
	 * The public parameters (n, e / group and point / the raw RFC 8410 key) come from
	 * key->pub, whatever made it.
	 */
	if (EVP_PKEY_todata(key->pub, EVP_PKEY_PUBLIC_KEY, &pub) <= 0 ||
	    (all = OSSL_PARAM_merge(pub, extra)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(libctx, type, P11S_BRIDGE_PROPQ)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, all) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot make an EVP_PKEY for %s",
		    key->uri ? key->uri : "the token key");
		goto out;
	}
	*out = pkey;
out:
	OPENSSL_cleanse(&ref, sizeof(ref));
	OSSL_PARAM_free(all);
	OSSL_PARAM_free(pub);
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

/* ---- naming a refused mechanism ----------------------------------------------------- */

static const char *hash_name(unsigned long ck_hash)
{
	static const char *const names[] = { "SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512" };

	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		if (mds[i].ck_hash == ck_hash) {
			return names[i];
		}
	}
	return "?";
}

static const char *mgf_name(unsigned long ck_mgf)
{
	static const char *const names[] = { "MGF1-SHA-1", "MGF1-SHA-224", "MGF1-SHA-256",
		"MGF1-SHA-384", "MGF1-SHA-512" };

	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		if (mds[i].ck_mgf == ck_mgf) {
			return names[i];
		}
	}
	return "MGF1-?";
}

void p11s_bridge__token_failed(int rc, const p11s_mech *mech, int reason, const char *what)
{
	const char *name = mech ? p11s_mech_name(mech->type) : NULL;

	/* Name the mechanism once: a backend may already have ("token refuses CKM_..."). */
	if (rc == P11S_ERR_MECHANISM && mech != NULL &&
	    strstr(p11s_error_last()->message, name) == NULL) {
		if (mech->type == P11S_MECH_RSA_PKCS_PSS) {
			p11s_error__prefix("token refuses %s (%s, %s, salt %lu): ", name,
			    hash_name(mech->hash), mgf_name(mech->mgf), mech->salt_len);
		} else if (mech->type == P11S_MECH_RSA_PKCS_OAEP) {
			p11s_error__prefix("token refuses %s (%s, %s%s): ", name, hash_name(mech->hash),
			    mgf_name(mech->mgf), mech->label_len ? ", label" : "");
		} else {
			p11s_error__prefix("token refuses %s: ", name);
		}
	} else if (rc == P11S_ERR_MECHANISM && mech != NULL && mech->type == P11S_MECH_RSA_PKCS_OAEP &&
	    strstr(p11s_error_last()->message, "hash") == NULL &&
	    strstr(p11s_error_last()->message, "MGF1") == NULL) {
		/* A backend named the mechanism only (pkcs11-helper): add the OAEP parameters. */
		p11s_error__prefix("OAEP parameters %s, %s%s: ", hash_name(mech->hash),
		    mgf_name(mech->mgf), mech->label_len ? ", label" : "");
	}
	p11s_bridge__raise(reason, what);
}

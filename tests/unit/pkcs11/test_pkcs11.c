/*
 * The "pkcs11" backend (src/pkcs11/pkcs11.c) driven through its ops table against a real
 * SoftHSMv2 token, and the CK_RV mapping of src/token/ckr.c.
 *
 * Environment (set by the CTest harness, tests/CMakeLists.txt P11S_TEST_ENV):
 *   P11S_TEST_MODULE    PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)
 *   SOFTHSM2_CONF       SoftHSM configuration of the throwaway token directory
 *   P11S_TEST_TOKEN     label of the token in it
 *   P11S_TEST_PIN       its user PIN, or
 *   P11S_TEST_PIN_FILE  a file whose first line is the user PIN
 * Without SOFTHSM2_CONF, P11S_TEST_TOKEN and a PIN the token cases skip; the CK_RV mapping
 * cases always run.
 *
 * The token must hold an RSA key pair (sign + decrypt) and an EC P-256 key pair (sign +
 * derive), as tokens/make-token.sh makes them. The test adds nothing to the token: the key
 * with CKA_ALWAYS_AUTHENTICATE it needs is a session object (CKA_TOKEN false), generated
 * through a second handle on the module and gone when the test ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include <p11smime/error.h>
#include <p11smime/secret.h>
#include <p11smime/sys/provider.h>

#include "pkcs11/backends.h"
#include "pkcs11/ck.h"

#define RSA_LABEL "p11s-test-rsa"
#define EC_LABEL "p11s-test-ec"
#define AA_LABEL "p11s-test-rsa-aa"

struct state {
	int ready;
	const char *module;
	const char *token;
	const char *pin;
	p11s_provider prov;
	p11s_slot slot;
	p11s_object *objs;
	size_t nobjs;
	const p11s_object *rsa, *rsa_pub, *ec, *ec_pub, *aa;
	int pin_calls;
	int pin_wrong;
};

static struct state st;

/* --- the always-authenticate key, outside the backend under test ---------------------- */

/*
 * Generate a session RSA key pair with CKA_ALWAYS_AUTHENTICATE through a second p11-kit handle
 * on the same module. Session objects are visible to every session of the application
 * (PKCS#11 v2.40 §4.4), so the backend finds it; it disappears with the helper's session.
 */
static CK_FUNCTION_LIST *aa_f;
static CK_SESSION_HANDLE aa_h;

static int aa_create(CK_SLOT_ID slot)
{
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_ULONG bits = 2048;
	CK_BYTE e[] = { 1, 0, 1 }, id = 0x7a;
	CK_BBOOL t = CK_TRUE, f = CK_FALSE;
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &f, sizeof(f) },
		{ CKA_LABEL, (void *)AA_LABEL, strlen(AA_LABEL) },
		{ CKA_ID, &id, 1 },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
		{ CKA_VERIFY, &t, sizeof(t) },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &f, sizeof(f) },
		{ CKA_PRIVATE, &t, sizeof(t) },
		{ CKA_SENSITIVE, &t, sizeof(t) },
		{ CKA_LABEL, (void *)AA_LABEL, strlen(AA_LABEL) },
		{ CKA_ID, &id, 1 },
		{ CKA_SIGN, &t, sizeof(t) },
		{ CKA_ALWAYS_AUTHENTICATE, &t, sizeof(t) },
	};
	CK_OBJECT_HANDLE a, b;
	CK_RV rv;

	if ((aa_f = p11_kit_module_load(st.module, 0)) == NULL) {
		return 0;
	}
	rv = aa_f->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return 0;
	}
	/* R/O session: session objects need no R/W session (v2.40 §5.6). */
	if (aa_f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &aa_h) != CKR_OK) {
		return 0;
	}
	rv = aa_f->C_GenerateKeyPair(aa_h, &m, pub, sizeof(pub) / sizeof(pub[0]), priv,
	    sizeof(priv) / sizeof(priv[0]), &a, &b);
	if (rv != CKR_OK) {
		fprintf(stderr, "C_GenerateKeyPair: %s\n", p11s_ck__rv_name(rv));
	}
	return rv == CKR_OK;
}

static void aa_destroy(void)
{
	if (aa_f != NULL) {
		(void)aa_f->C_CloseSession(aa_h);
		(void)aa_f->C_Finalize(NULL);
		p11_kit_module_release(aa_f);
		aa_f = NULL;
	}
}

/* --- helpers ------------------------------------------------------------------------- */

static int get_pin(const p11s_slot *slot, unsigned long user_type, p11s_secret **out,
    void *payload)
{
	struct state *s = payload;
	const char *pin = s->pin_wrong ? "0000-wrong" : s->pin;
	p11s_secret *sec = NULL;

	assert_int_equal(user_type, P11S_USER_CONTEXT_SPECIFIC);
	assert_string_equal(slot->info.label, s->token);
	s->pin_calls++;
	if (p11s_secret_new(&sec) < 0 || p11s_secret_set(sec, pin, strlen(pin)) < 0) {
		p11s_secret_free(sec);
		return P11S_ERR_NOMEM;
	}
	*out = sec;
	return P11S_OK;
}

static const p11s_object *find_obj(p11s_object_class cls, const char *label)
{
	for (size_t i = 0; i < st.nobjs; i++) {
		if (st.objs[i].cls == cls && strcmp(st.objs[i].label, label) == 0) {
			return &st.objs[i];
		}
	}
	return NULL;
}

static EVP_PKEY *rsa_pub(const p11s_object *o)
{
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	BIGNUM *n = BN_bin2bn(o->modulus.data, (int)o->modulus.len, NULL);
	BIGNUM *e = BN_bin2bn(o->public_exponent.data, (int)o->public_exponent.len, NULL);
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pk = NULL;

	assert_non_null(b);
	assert_true(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, n));
	assert_true(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, e));
	params = OSSL_PARAM_BLD_to_param(b);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	EVP_PKEY_CTX_free(ctx);
	BN_free(n);
	BN_free(e);
	return pk;
}

/* The raw point inside CKA_EC_POINT (DER OCTET STRING, or raw on some tokens). */
static void ec_raw_point(const p11s_object *o, const unsigned char **pt, size_t *len)
{
	const unsigned char *d = o->ec_point.data;
	size_t l = o->ec_point.len;

	if (l > 2 && d[0] == 0x04 && d[1] < 0x80 && (size_t)d[1] + 2 == l) {
		*pt = d + 2;
		*len = d[1];
	} else if (l > 3 && d[0] == 0x04 && d[1] == 0x81 && (size_t)d[2] + 3 == l) {
		*pt = d + 3;
		*len = d[2];
	} else {
		*pt = d;
		*len = l;
	}
}

static EVP_PKEY *ec_pub(const p11s_object *o)
{
	const unsigned char *pt;
	size_t ptlen;
	char group[] = "prime256v1";
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;

	ec_raw_point(o, &pt, &ptlen);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, ptlen);
	params[2] = OSSL_PARAM_construct_end();
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

/* RFC 8017 §9.2 note 1: DigestInfo prefix for SHA-256. */
static const unsigned char sha256_prefix[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const char msg[] = "p11smime pkcs11 backend test message";

static p11s_buf *sign_rsa_pkcs(const p11s_object *key, int *rc)
{
	unsigned char di[sizeof(sha256_prefix) + 32];
	p11s_mech m = { .type = P11S_MECH_RSA_PKCS };
	p11s_buf *sig = NULL;

	memcpy(di, sha256_prefix, sizeof(sha256_prefix));
	SHA256((const unsigned char *)msg, strlen(msg), di + sizeof(sha256_prefix));
	*rc = st.prov.ops->sign(&st.prov, key, &m, di, sizeof(di), &sig);
	return sig;
}

static void verify_rsa_pkcs(const p11s_object *pub, const p11s_buf *sig)
{
	EVP_PKEY *pk = rsa_pub(pub);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk), 1);
	assert_int_equal(EVP_DigestVerify(md, sig->data, sig->len, (const unsigned char *)msg,
	    strlen(msg)), 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
}

#define NEED_TOKEN()                                                                         \
	do {                                                                                 \
		if (!st.ready) {                                                             \
			skip();                                                              \
		}                                                                            \
	} while (0)

/* --- group setup ----------------------------------------------------------------------- */

static char pin_buf[256];

/* P11S_TEST_PIN, or the first line of P11S_TEST_PIN_FILE. */
static const char *test_pin(void)
{
	const char *pin = getenv("P11S_TEST_PIN"), *file = getenv("P11S_TEST_PIN_FILE");
	FILE *fp;

	if (pin != NULL) {
		return pin;
	}
	if (file == NULL || (fp = fopen(file, "r")) == NULL) {
		return NULL;
	}
	if (fgets(pin_buf, sizeof(pin_buf), fp) == NULL) {
		pin_buf[0] = '\0';
	}
	fclose(fp);
	pin_buf[strcspn(pin_buf, "\r\n")] = '\0';
	return pin_buf[0] != '\0' ? pin_buf : NULL;
}

static int group_setup(void **state)
{
	const char *conf = getenv("SOFTHSM2_CONF");

	(void)state;
	memset(&st, 0, sizeof(st));
	st.module = getenv("P11S_TEST_MODULE");
	if (st.module == NULL || *st.module == '\0') {
		st.module = "/usr/lib/softhsm/libsofthsm2.so";
	}
	st.token = getenv("P11S_TEST_TOKEN");
	st.pin = test_pin();
	st.ready = conf != NULL && st.token != NULL && st.pin != NULL &&
	    access(st.module, R_OK) == 0;
	if (!st.ready) {
		fprintf(stderr, "# SOFTHSM2_CONF, P11S_TEST_TOKEN and P11S_TEST_PIN(_FILE) not all "
		    "set, or no module: token tests skipped\n");
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	p11s_objects_free(st.objs, st.nobjs);
	st.objs = NULL;
	if (st.prov.ops != NULL) {
		st.prov.ops->close(&st.prov);
	}
	free(st.prov.priv);
	aa_destroy();
	return 0;
}

/* --- tests: ckr.c ---------------------------------------------------------------------- */

static void test_pkcs11__ckr_map(void **state)
{
	static const struct {
		unsigned long rv;
		const char *what;
		int code;
	} t[] = {
		{ CKR_OK, "C_Sign", P11S_OK },
		{ CKR_PIN_INCORRECT, "C_Login", P11S_ERR_PIN_INCORRECT },
		{ CKR_PIN_LEN_RANGE, "C_Login", P11S_ERR_PIN_INCORRECT },
		{ CKR_PIN_LOCKED, "C_Login", P11S_ERR_PIN_LOCKED },
		{ CKR_DEVICE_REMOVED, "C_Sign", P11S_ERR_DEVICE_REMOVED },
		{ CKR_SESSION_HANDLE_INVALID, "C_Sign", P11S_ERR_DEVICE_REMOVED },
		{ CKR_SESSION_CLOSED, "C_Sign", P11S_ERR_DEVICE_REMOVED },
		{ CKR_MECHANISM_PARAM_INVALID, "C_SignInit", P11S_ERR_MECHANISM },
		{ CKR_TOKEN_NOT_PRESENT, "C_OpenSession", P11S_ERR_TOKEN_ABSENT },
		{ CKR_MECHANISM_INVALID, "C_SignInit", P11S_ERR_MECHANISM },
		{ CKR_ARGUMENTS_BAD, "C_DecryptInit", P11S_ERR_MECHANISM },
		{ CKR_ARGUMENTS_BAD, "C_Decrypt", P11S_ERR_TOKEN },
		{ CKR_KEY_FUNCTION_NOT_PERMITTED, "C_SignInit", P11S_ERR_MECHANISM },
		{ CKR_USER_NOT_LOGGED_IN, "C_Sign", P11S_ERR_LOGIN },
		{ CKR_HOST_MEMORY, "C_Sign", P11S_ERR_NOMEM },
		{ CKR_ENCRYPTED_DATA_INVALID, "C_Decrypt", P11S_ERR_DECRYPT },
		{ CKR_GENERAL_ERROR, "C_Sign", P11S_ERR_TOKEN },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(p11s_ck__rv(t[i].rv, t[i].what), t[i].code);
		if (t[i].code != P11S_OK) {
			assert_int_equal(p11s_error_last()->code, t[i].code);
			assert_true(p11s_error_last()->has_ck_rv);
			assert_int_equal(p11s_error_last()->ck_rv, t[i].rv);
			assert_non_null(strstr(p11s_error_last()->message, t[i].what));
		}
	}
	assert_string_equal(p11s_error_last()->message, "C_Sign: CKR_GENERAL_ERROR");
}

static void test_pkcs11__ckr_names(void **state)
{
	char out[8];

	(void)state;
	assert_string_equal(p11s_ck__rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	assert_string_equal(p11s_ck__rv_name(0x191), "CKR_CRYPTOKI_ALREADY_INITIALIZED");
	assert_string_equal(p11s_ck__rv_name(0x7777), "CKR_0x7777");
	assert_string_equal(p11s_ck__rv_name(CKR_VENDOR_DEFINED | 5), "CKR_VENDOR_DEFINED+0x5");
	assert_string_equal(p11s_mech_name(P11S_MECH_RSA_PKCS_OAEP), "CKM_RSA_PKCS_OAEP");
	assert_string_equal(p11s_mech_name(P11S_MECH_ECDH1_DERIVE), "CKM_ECDH1_DERIVE");
	assert_string_equal(p11s_mech_name(P11S_HASH_SHA256), "CKM_SHA256");
	assert_string_equal(p11s_mech_name(0x43), "CKM_SHA256_RSA_PKCS_PSS");
	assert_string_equal(p11s_mech_name(0x1044), "CKM_ECDSA_SHA256");
	p11s_ck__trim(out, sizeof(out), (const unsigned char *)"ab  c   ", 8);
	assert_string_equal(out, "ab  c");
	p11s_ck__trim(out, sizeof(out), (const unsigned char *)"abcdefghij", 10);
	assert_string_equal(out, "abcdefg");
	p11s_ck__trim(out, sizeof(out), (const unsigned char *)"        ", 8);
	assert_string_equal(out, "");
}

/* --- tests: the backend ---------------------------------------------------------------- */

static void test_pkcs11__open_bad_module(void **state)
{
	p11s_provider p = { .ops = &p11s_pkcs11_ops };
	p11s_provider_cfg cfg = { .module_path = "/nonexistent/libnothing.so" };

	(void)state;
	p.priv = calloc(1, p11s_pkcs11_ops.priv_size);
	assert_int_equal(p.ops->open(&p, &cfg), P11S_ERR_MODULE);
	assert_non_null(strstr(p11s_error_last()->message, "/nonexistent/libnothing.so"));
	p.ops->close(&p); /* tolerates a failed open */
	free(p.priv);
	assert_int_equal(p11s_pkcs11_ops.abi, P11S_PROVIDER_ABI);
	assert_string_equal(p11s_pkcs11_ops.name, "pkcs11");
	assert_true(p11s_pkcs11_ops.caps & P11S_CAP_RSA_OAEP);
	assert_true(p11s_pkcs11_ops.caps & P11S_CAP_ECDH);
	assert_true(p11s_pkcs11_ops.caps & P11S_CAP_CONTEXT_LOGIN);
}

static void test_pkcs11__open_slots(void **state)
{
	p11s_slot *slots = NULL;
	size_t n = 0;
	int found = 0;

	(void)state;
	NEED_TOKEN();
	st.prov.ops = &p11s_pkcs11_ops;
	st.prov.priv = calloc(1, p11s_pkcs11_ops.priv_size);
	st.prov.cfg.module_path = st.module;
	st.prov.cfg.get_pin = get_pin;
	st.prov.cfg.pin_payload = &st;
	ERR_clear_error();
	assert_int_equal(st.prov.ops->open(&st.prov, &st.prov.cfg), P11S_OK);
	/* SoftHSM's C_Initialize leaves ENGINE errors behind (DESIGN.md): none may reach us. */
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(st.prov.ops->slots(&st.prov, &slots, &n), P11S_OK);
	assert_true(n >= 1);
	for (size_t i = 0; i < n; i++) {
		if (!(slots[i].info.flags & P11S_TOKEN_PRESENT) ||
		    strcmp(slots[i].info.label, st.token) != 0) {
			continue;
		}
		found = 1;
		st.slot = slots[i];
		assert_int_equal(slots[i].handle, slots[i].info.slot_id);
		assert_string_equal(slots[i].info.manufacturer, "SoftHSM project");
		assert_string_equal(slots[i].info.model, "SoftHSM v2");
		assert_true(strlen(slots[i].info.serial) > 0);
		assert_true(slots[i].info.flags & P11S_TOKEN_LOGIN_REQUIRED);
		assert_true(slots[i].info.flags & P11S_TOKEN_INITIALIZED);
		assert_true(slots[i].info.flags & P11S_TOKEN_USER_PIN_INITIALIZED);
		assert_string_equal(slots[i].info.uri, "");
	}
	free(slots);
	assert_true(found);
}

static void test_pkcs11__login(void **state)
{
	p11s_secret *pin = NULL;
	p11s_object *objs = NULL;
	size_t n = 0;

	(void)state;
	NEED_TOKEN();
	/* Before login only public objects are visible. */
	assert_int_equal(st.prov.ops->objects(&st.prov, &st.slot, &objs, &n), P11S_OK);
	for (size_t i = 0; i < n; i++) {
		assert_int_not_equal(objs[i].cls, P11S_OBJ_PRIVATE_KEY);
	}
	p11s_objects_free(objs, n);

	assert_int_equal(p11s_secret_new(&pin), P11S_OK);
	assert_int_equal(p11s_secret_set(pin, "999999", 6), P11S_OK);
	assert_int_equal(st.prov.ops->login(&st.prov, &st.slot, P11S_USER_NORMAL, pin),
	    P11S_ERR_PIN_INCORRECT);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_PIN_INCORRECT);
	assert_false(st.prov.ops->logged_in(&st.prov, &st.slot));
	assert_int_equal(p11s_secret_set(pin, st.pin, strlen(st.pin)), P11S_OK);
	assert_int_equal(st.prov.ops->login(&st.prov, &st.slot, P11S_USER_NORMAL, pin), P11S_OK);
	assert_true(st.prov.ops->logged_in(&st.prov, &st.slot));
	/* CKR_USER_ALREADY_LOGGED_IN is success. */
	assert_int_equal(st.prov.ops->login(&st.prov, &st.slot, P11S_USER_NORMAL, pin), P11S_OK);
	p11s_secret_free(pin);
}

static const p11s_object *find_pub(const p11s_object *key)
{
	for (size_t i = 0; i < st.nobjs; i++) {
		const p11s_object *o = &st.objs[i];

		if (o->cls == P11S_OBJ_PUBLIC_KEY && o->key_type == key->key_type &&
		    o->id.len == key->id.len && memcmp(o->id.data, key->id.data, o->id.len) == 0) {
			return o;
		}
	}
	return NULL;
}

static const unsigned char p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
	0x07 };

static void test_pkcs11__objects(void **state)
{
	(void)state;
	NEED_TOKEN();
	assert_int_equal(st.prov.ops->objects(&st.prov, &st.slot, &st.objs, &st.nobjs), P11S_OK);
	for (size_t i = 0; i < st.nobjs; i++) {
		const p11s_object *o = &st.objs[i];

		assert_non_null(o->label);
		assert_int_equal(o->slot, st.slot.handle);
		if (o->cls != P11S_OBJ_PRIVATE_KEY || o->always_authenticate ||
		    find_pub(o) == NULL) {
			continue;
		}
		if (st.rsa == NULL && o->key_type == P11S_KEY_RSA && o->can_sign &&
		    o->can_decrypt) {
			st.rsa = o;
		}
		if (st.ec == NULL && o->key_type == P11S_KEY_EC && o->can_sign && o->can_derive &&
		    o->ec_params.len == sizeof(p256_oid) &&
		    memcmp(o->ec_params.data, p256_oid, sizeof(p256_oid)) == 0) {
			st.ec = o;
		}
	}
	if (st.rsa == NULL || st.ec == NULL) {
		fail_msg("token '%s' needs an RSA key pair (sign, decrypt) and a P-256 key pair "
		    "(sign, derive)", st.token);
	}
	st.rsa_pub = find_pub(st.rsa);
	st.ec_pub = find_pub(st.ec);

	assert_true(st.rsa->id.len > 0);
	assert_true(st.rsa->modulus.len >= 256); /* SoftHSM: readable on the private key too */
	assert_true(st.rsa_pub->modulus.len >= 256);
	assert_int_equal(st.rsa_pub->public_exponent.len, 3);
	assert_null(st.rsa->value.data); /* private values are never read */
	assert_int_equal(st.ec_pub->key_type, P11S_KEY_EC);
	assert_true(st.ec_pub->ec_point.len == 65 || st.ec_pub->ec_point.len == 67);
	assert_false(st.ec->can_decrypt && !st.ec->can_derive);
}

static void test_pkcs11__sign_rsa_pkcs(void **state)
{
	p11s_buf *sig;
	int rc;

	(void)state;
	NEED_TOKEN();
	sig = sign_rsa_pkcs(st.rsa, &rc);
	assert_int_equal(rc, P11S_OK);
	assert_int_equal(sig->len, st.rsa_pub->modulus.len);
	verify_rsa_pkcs(st.rsa_pub, sig);
	p11s_buf_free(sig);
}

static void test_pkcs11__sign_rsa_pss(void **state)
{
	unsigned char h[32];
	p11s_mech m = { .type = P11S_MECH_RSA_PKCS_PSS, .hash = P11S_HASH_SHA256,
		.mgf = P11S_MGF1_SHA256, .salt_len = 32 };
	p11s_buf *sig = NULL;
	EVP_PKEY *pk;
	EVP_PKEY_CTX *ctx;

	(void)state;
	NEED_TOKEN();
	SHA256((const unsigned char *)msg, strlen(msg), h);
	assert_int_equal(st.prov.ops->sign(&st.prov, st.rsa, &m, h, sizeof(h), &sig), P11S_OK);
	pk = rsa_pub(st.rsa_pub);
	ctx = EVP_PKEY_CTX_new(pk, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0);
	assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) > 0);
	assert_int_equal(EVP_PKEY_verify(ctx, sig->data, sig->len, h, sizeof(h)), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	p11s_buf_free(sig);
}

static void test_pkcs11__sign_ecdsa(void **state)
{
	unsigned char h[32], *der = NULL;
	p11s_mech m = { .type = P11S_MECH_ECDSA };
	p11s_buf *sig = NULL;
	ECDSA_SIG *es;
	EVP_PKEY *pk;
	EVP_PKEY_CTX *ctx;
	int derlen;

	(void)state;
	NEED_TOKEN();
	SHA256((const unsigned char *)msg, strlen(msg), h);
	assert_int_equal(st.prov.ops->sign(&st.prov, st.ec, &m, h, sizeof(h), &sig), P11S_OK);
	assert_int_equal(sig->len, 64); /* r || s, 32 bytes each */
	es = ECDSA_SIG_new();
	assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig->data, 32, NULL),
	    BN_bin2bn(sig->data + 32, 32, NULL)), 1);
	derlen = i2d_ECDSA_SIG(es, &der);
	assert_true(derlen > 0);
	pk = ec_pub(st.ec_pub);
	ctx = EVP_PKEY_CTX_new(pk, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, der, (size_t)derlen, h, sizeof(h)), 1);
	/* A different hash must not verify. */
	h[0] ^= 1;
	assert_int_not_equal(EVP_PKEY_verify(ctx, der, (size_t)derlen, h, sizeof(h)), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	p11s_buf_free(sig);
}

/* Encrypt `pt` to the RSA public key with OpenSSL; OAEP when `oaep_md` is set. */
static size_t rsa_encrypt(const EVP_MD *oaep_md, const unsigned char *pt, size_t ptlen,
    unsigned char *ct)
{
	EVP_PKEY *pk = rsa_pub(st.rsa_pub);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
	size_t ctlen = 512;

	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	if (oaep_md != NULL) {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, oaep_md) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, oaep_md) > 0);
	} else {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
	}
	assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &ctlen, pt, ptlen), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ctlen;
}

static void test_pkcs11__decrypt_rsa(void **state)
{
	static const unsigned char cek[32] = "0123456789abcdef0123456789abcde";
	unsigned char ct[512];
	size_t ctlen;
	p11s_mech v15 = { .type = P11S_MECH_RSA_PKCS };
	p11s_mech oaep1 = { .type = P11S_MECH_RSA_PKCS_OAEP, .hash = P11S_HASH_SHA1,
		.mgf = P11S_MGF1_SHA1 };
	p11s_buf *pt = NULL;

	(void)state;
	NEED_TOKEN();
	ctlen = rsa_encrypt(NULL, cek, sizeof(cek), ct);
	assert_int_equal(st.prov.ops->decrypt(&st.prov, st.rsa, &v15, ct, ctlen, &pt), P11S_OK);
	assert_int_equal(pt->len, sizeof(cek));
	assert_memory_equal(pt->data, cek, sizeof(cek));
	p11s_buf_free(pt);
	pt = NULL;

	ctlen = rsa_encrypt(EVP_sha1(), cek, sizeof(cek), ct);
	assert_int_equal(st.prov.ops->decrypt(&st.prov, st.rsa, &oaep1, ct, ctlen, &pt), P11S_OK);
	assert_int_equal(pt->len, sizeof(cek));
	assert_memory_equal(pt->data, cek, sizeof(cek));
	p11s_buf_free(pt);
}

static void test_pkcs11__decrypt_oaep_sha256_refused(void **state)
{
	static const unsigned char cek[16] = "0123456789abcde";
	unsigned char ct[512];
	size_t ctlen;
	p11s_mech oaep256 = { .type = P11S_MECH_RSA_PKCS_OAEP, .hash = P11S_HASH_SHA256,
		.mgf = P11S_MGF1_SHA256 };
	p11s_buf *pt = NULL, *sig;
	int rc;

	(void)state;
	NEED_TOKEN();
	ctlen = rsa_encrypt(EVP_sha256(), cek, sizeof(cek), ct);
	/* SoftHSM 2.6.1 does OAEP with SHA-1 only (DESIGN.md): a refusal, no fallback. */
	assert_int_equal(st.prov.ops->decrypt(&st.prov, st.rsa, &oaep256, ct, ctlen, &pt),
	    P11S_ERR_MECHANISM);
	assert_null(pt);
	assert_non_null(strstr(p11s_error_last()->message,
	    "token refuses CKM_RSA_PKCS_OAEP (hash CKM_SHA256, mgf CKG_MGF1_SHA256): CKR_"));
	/* Raw RSA is never sent. */
	oaep256.type = P11S_MECH_RSA_X_509;
	assert_int_equal(st.prov.ops->decrypt(&st.prov, st.rsa, &oaep256, ct, ctlen, &pt),
	    P11S_ERR_MECHANISM);
	/* The pooled session is still usable afterwards. */
	sig = sign_rsa_pkcs(st.rsa, &rc);
	assert_int_equal(rc, P11S_OK);
	p11s_buf_free(sig);
}

static void test_pkcs11__derive_ecdh(void **state)
{
	EVP_PKEY *eph = NULL, *tokpub;
	EVP_PKEY_CTX *ctx;
	unsigned char peer[65], z[32];
	size_t peerlen = 0, zlen = sizeof(z);
	p11s_buf *out = NULL;

	(void)state;
	NEED_TOKEN();
	eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(eph);
	assert_int_equal(EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, peer,
	    sizeof(peer), &peerlen), 1);
	assert_int_equal(peerlen, 65);
	assert_int_equal(st.prov.ops->derive(&st.prov, st.ec, peer, peerlen, &out), P11S_OK);

	tokpub = ec_pub(st.ec_pub);
	ctx = EVP_PKEY_CTX_new(eph, NULL);
	assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(ctx, tokpub), 1);
	assert_int_equal(EVP_PKEY_derive(ctx, z, &zlen), 1);
	assert_int_equal(out->len, zlen);
	assert_memory_equal(out->data, z, zlen);
	p11s_buf_free(out);
	out = NULL;

	/* Not an uncompressed point: refused before the token sees it. */
	peer[0] = 0x02;
	assert_int_equal(st.prov.ops->derive(&st.prov, st.ec, peer, 33, &out),
	    P11S_ERR_INVALID_ARG);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(tokpub);
	EVP_PKEY_free(eph);
}

static void test_pkcs11__always_authenticate(void **state)
{
	p11s_buf *sig;
	int rc;

	const p11s_object *pub;

	(void)state;
	NEED_TOKEN();
	assert_true(aa_create(st.slot.handle));
	p11s_objects_free(st.objs, st.nobjs);
	st.objs = NULL;
	st.nobjs = 0;
	st.rsa = st.rsa_pub = st.ec = st.ec_pub = NULL;
	test_pkcs11__objects(state); /* the objects again, AA key included */
	st.aa = find_obj(P11S_OBJ_PRIVATE_KEY, AA_LABEL);
	pub = find_obj(P11S_OBJ_PUBLIC_KEY, AA_LABEL);
	assert_non_null(st.aa);
	assert_non_null(pub);
	assert_true(st.aa->always_authenticate);
	assert_true(st.aa->can_sign);
	st.pin_calls = 0;
	for (int i = 0; i < 2; i++) {
		sig = sign_rsa_pkcs(st.aa, &rc);
		assert_int_equal(rc, P11S_OK);
		verify_rsa_pkcs(pub, sig);
		p11s_buf_free(sig);
	}
	/* A fresh PIN for every signature: never cached. */
	assert_int_equal(st.pin_calls, 2);

	st.pin_wrong = 1;
	sig = sign_rsa_pkcs(st.aa, &rc);
	st.pin_wrong = 0;
	assert_int_equal(rc, P11S_ERR_PIN_INCORRECT);
	assert_null(sig);
	assert_int_equal(st.pin_calls, 3);
	/* The session with the abandoned operation was replaced; login survived. */
	assert_true(st.prov.ops->logged_in(&st.prov, &st.slot));
	sig = sign_rsa_pkcs(st.aa, &rc);
	assert_int_equal(rc, P11S_OK);
	p11s_buf_free(sig);
	sig = sign_rsa_pkcs(st.rsa, &rc);
	assert_int_equal(rc, P11S_OK);
	p11s_buf_free(sig);
}

/* PKCS#11 v2.40 §5.5.1: a forked child re-initialises the module before using it. */
static void test_pkcs11__fork(void **state)
{
	pid_t pid;
	int status = -1;

	(void)state;
	NEED_TOKEN();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		p11s_slot *slots = NULL;
		p11s_secret *pin = NULL;
		p11s_buf *sig;
		size_t n = 0;
		int rc, code = 0;

		if (st.prov.ops->slots(&st.prov, &slots, &n) != P11S_OK || n == 0) {
			_exit(10);
		}
		free(slots);
		if (p11s_secret_new(&pin) < 0 || p11s_secret_set(pin, st.pin, strlen(st.pin)) < 0) {
			_exit(11);
		}
		if (st.prov.ops->login(&st.prov, &st.slot, P11S_USER_NORMAL, pin) != P11S_OK) {
			fprintf(stderr, "child login: %s\n", p11s_error_last()->message);
			_exit(12);
		}
		p11s_secret_free(pin);
		sig = sign_rsa_pkcs(st.rsa, &rc);
		if (rc != P11S_OK) {
			fprintf(stderr, "child sign: %s\n", p11s_error_last()->message);
			code = 13;
		}
		p11s_buf_free(sig);
		st.prov.ops->close(&st.prov);
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent's sessions and login are untouched. */
	assert_true(st.prov.ops->logged_in(&st.prov, &st.slot));
	test_pkcs11__sign_rsa_pkcs(state);
}

static void *sign_worker(void *arg)
{
	unsigned char h[32];
	p11s_mech m = { .type = P11S_MECH_ECDSA };
	intptr_t failures = 0;

	(void)arg;
	SHA256((const unsigned char *)msg, strlen(msg), h);
	for (int i = 0; i < 50; i++) {
		p11s_buf *sig = NULL;

		if (st.prov.ops->sign(&st.prov, st.ec, &m, h, sizeof(h), &sig) != P11S_OK ||
		    sig->len != 64) {
			failures++;
		}
		p11s_buf_free(sig);
	}
	return (void *)failures;
}

/* The session pool under concurrent use: each thread gets a session of its own. */
static void test_pkcs11__threads(void **state)
{
	pthread_t th[4];
	void *ret;

	(void)state;
	NEED_TOKEN();
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_create(&th[i], NULL, sign_worker, NULL), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_int_equal((intptr_t)ret, 0);
	}
	assert_true(st.prov.ops->logged_in(&st.prov, &st.slot));
}

/*
 * Sessions lost under the backend (as after a removal, STANDARDS.md §11): another user of the
 * module closes every session of the slot. The next operation fails with DEVICE_REMOVED, the
 * pool is reset, and after a new login everything works again.
 */
static void test_pkcs11__sessions_lost(void **state)
{
	CK_FUNCTION_LIST *raw;
	p11s_secret *pin = NULL;
	p11s_buf *sig;
	CK_RV rv;
	int rc;

	(void)state;
	NEED_TOKEN();
	raw = p11_kit_module_load(st.module, P11_KIT_MODULE_UNMANAGED);
	assert_non_null(raw);
	rv = raw->C_Initialize(NULL);
	assert_true(rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(raw->C_CloseAllSessions(st.slot.handle), CKR_OK);
	p11_kit_module_release(raw);

	sig = sign_rsa_pkcs(st.rsa, &rc);
	assert_int_equal(rc, P11S_ERR_DEVICE_REMOVED);
	assert_null(sig);
	/* Closing every session logged the application out (v2.40 §5.6). */
	assert_false(st.prov.ops->logged_in(&st.prov, &st.slot));
	assert_int_equal(p11s_secret_new(&pin), P11S_OK);
	assert_int_equal(p11s_secret_set(pin, st.pin, strlen(st.pin)), P11S_OK);
	rc = st.prov.ops->login(&st.prov, &st.slot, P11S_USER_NORMAL, pin);
	p11s_secret_free(pin);
	if (rc != P11S_OK) {
		fail_msg("login after reset: %s", p11s_error_last()->message);
	}
	/* SoftHSM, like many tokens, invalidates object handles with the last session. */
	p11s_objects_free(st.objs, st.nobjs);
	st.objs = NULL;
	st.nobjs = 0;
	st.rsa = st.rsa_pub = st.ec = st.ec_pub = st.aa = NULL;
	test_pkcs11__objects(state);
	sig = sign_rsa_pkcs(st.rsa, &rc);
	if (rc != P11S_OK) {
		fail_msg("sign after reset: %s", p11s_error_last()->message);
	}
	verify_rsa_pkcs(st.rsa_pub, sig);
	p11s_buf_free(sig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkcs11__ckr_map),
		cmocka_unit_test(test_pkcs11__ckr_names),
		cmocka_unit_test(test_pkcs11__open_bad_module),
		cmocka_unit_test(test_pkcs11__open_slots),
		cmocka_unit_test(test_pkcs11__login),
		cmocka_unit_test(test_pkcs11__objects),
		cmocka_unit_test(test_pkcs11__sign_rsa_pkcs),
		cmocka_unit_test(test_pkcs11__sign_rsa_pss),
		cmocka_unit_test(test_pkcs11__sign_ecdsa),
		cmocka_unit_test(test_pkcs11__decrypt_rsa),
		cmocka_unit_test(test_pkcs11__decrypt_oaep_sha256_refused),
		cmocka_unit_test(test_pkcs11__derive_ecdh),
		cmocka_unit_test(test_pkcs11__always_authenticate),
		cmocka_unit_test(test_pkcs11__fork),
		cmocka_unit_test(test_pkcs11__threads),
		cmocka_unit_test(test_pkcs11__sessions_lost),
	};

	return cmocka_run_group_tests_name("pkcs11", tests, group_setup, group_teardown);
}

/*
 * Unit tests of the mock backend (src/pkcs11/mock.c) through its ops table: the simulated
 * token, its objects (the X25519 key among them), PIN handling and flags, the real
 * cryptography of each mechanism, the call log and the fault injection the other suites rely
 * on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/p11smime.h>

#include <p11-kit/pkcs11.h>

#include "pkcs11/backends.h"
#include "pkcs11/mock.h"
#include "token/token_int.h"

static const unsigned char sha256_prefix[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };

typedef struct fixture {
	p11s_provider prov;
	p11s_slot slot;
	p11s_object *objs;
	size_t nobjs;
	int pin_calls;
} fixture;

static int get_pin(const p11s_slot *slot, unsigned long user_type, p11s_secret **out,
    void *payload)
{
	fixture *f = payload;

	f->pin_calls++;
	if (p11s_secret_new(out) != P11S_OK) {
		return P11S_ERR_NOMEM;
	}
	return p11s_secret_set(*out, "1234", 4);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	p11s_slot *slots = NULL;
	size_t n = 0;

	if (f == NULL) {
		return -1;
	}
	p11s_mock__reset();
	f->prov.ops = &p11s_mock_ops;
	f->prov.cfg.module_path = "mock";
	f->prov.cfg.get_pin = get_pin;
	f->prov.cfg.pin_payload = f;
	if (p11s_mock_ops.open(&f->prov, &f->prov.cfg) != P11S_OK ||
	    p11s_mock_ops.slots(&f->prov, &slots, &n) != P11S_OK || n != 1) {
		free(slots);
		free(f);
		return -1;
	}
	f->slot = slots[0];
	free(slots);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	p11s_objects_free(f->objs, f->nobjs);
	p11s_mock_ops.close(&f->prov);
	free(f);
	return 0;
}

static int login(fixture *f, const char *pin)
{
	p11s_secret *s = NULL;
	int rc;

	assert_int_equal(p11s_secret_new(&s), P11S_OK);
	assert_int_equal(p11s_secret_set(s, pin, strlen(pin)), P11S_OK);
	rc = p11s_mock_ops.login(&f->prov, &f->slot, P11S_USER_NORMAL, s);
	p11s_secret_free(s);
	return rc;
}

static void load_objects(fixture *f)
{
	p11s_objects_free(f->objs, f->nobjs);
	f->objs = NULL;
	f->nobjs = 0;
	assert_int_equal(p11s_mock_ops.objects(&f->prov, &f->slot, &f->objs, &f->nobjs), P11S_OK);
}

static const p11s_object *find(const fixture *f, const char *label, p11s_object_class cls)
{
	for (size_t i = 0; i < f->nobjs; i++) {
		if (f->objs[i].cls == cls && strcmp(f->objs[i].label, label) == 0) {
			return &f->objs[i];
		}
	}
	return NULL;
}

static EVP_PKEY *cert_key(const fixture *f, const char *label)
{
	const p11s_object *c = find(f, label, P11S_OBJ_CERTIFICATE);
	const unsigned char *p;
	X509 *x;
	EVP_PKEY *k;

	assert_non_null(c);
	p = c->value.data;
	x = d2i_X509(NULL, &p, (long)c->value.len);
	assert_non_null(x);
	k = X509_get_pubkey(x);
	X509_free(x);
	assert_non_null(k);
	return k;
}

static void test_mock__token(void **state)
{
	fixture *f = *state;

	assert_string_equal(f->slot.info.label, "mock");
	assert_string_equal(f->slot.info.manufacturer, "p11smime");
	assert_string_equal(f->slot.info.model, "mock");
	assert_string_equal(f->slot.info.serial, "0000000000000001");
	assert_true(f->slot.info.flags & P11S_TOKEN_PRESENT);
	assert_true(f->slot.info.flags & P11S_TOKEN_LOGIN_REQUIRED);
	assert_false(f->slot.info.flags & P11S_TOKEN_USER_PIN_LOCKED);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_OPEN), 1);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_SLOTS), 1);
}

/* Private keys only after login (CKA_PRIVATE); certificates and public keys always. */
static void test_mock__objects(void **state)
{
	static const char *const labels[] = { "rsa2048", "ec256", "ec384" };
	fixture *f = *state;
	const p11s_object *o;

	/* Four keys (rsa2048, ec256, ec384, x25519), each with a certificate and a public key. */
	load_objects(f);
	assert_int_equal(f->nobjs, 8);
	assert_null(find(f, "rsa2048", P11S_OBJ_PRIVATE_KEY));
	assert_int_equal(login(f, "1234"), P11S_OK);
	assert_true(p11s_mock_ops.logged_in(&f->prov, &f->slot));
	load_objects(f);
	assert_int_equal(f->nobjs, 12);
	/* The three keys that sign. */
	for (size_t i = 0; i < 3; i++) {
		o = find(f, labels[i], P11S_OBJ_PRIVATE_KEY);
		assert_non_null(o);
		assert_int_equal(o->id.len, 1);
		assert_int_equal(o->id.data[0], i + 1);
		assert_int_equal(find(f, labels[i], P11S_OBJ_CERTIFICATE)->id.data[0], i + 1);
		assert_true(o->can_sign);
	}
	o = find(f, "rsa2048", P11S_OBJ_PRIVATE_KEY);
	assert_int_equal(o->key_type, P11S_KEY_RSA);
	assert_int_equal(o->modulus.len, 256);
	assert_true(o->can_decrypt);
	o = find(f, "ec256", P11S_OBJ_PUBLIC_KEY);
	assert_int_equal(o->key_type, P11S_KEY_EC);
	/* CKA_EC_PARAMS = DER OID 1.2.840.10045.3.1.7, CKA_EC_POINT = DER OCTET STRING(04||X||Y). */
	assert_int_equal(o->ec_params.len, 10);
	assert_int_equal(o->ec_params.data[0], 0x06);
	assert_int_equal(o->ec_point.len, 67);
	assert_int_equal(o->ec_point.data[0], 0x04);
	assert_int_equal(o->ec_point.data[1], 65);
	assert_int_equal(o->ec_point.data[2], 0x04);
	assert_true(find(f, "ec384", P11S_OBJ_PRIVATE_KEY)->can_derive);
}

/* Wrong PINs walk COUNT_LOW, FINAL_TRY, LOCKED; a locked PIN refuses even the right one. */
static void test_mock__pin_counter(void **state)
{
	fixture *f = *state;
	const p11s_mock_call *c;

	assert_int_equal(login(f, "0000"), P11S_ERR_PIN_INCORRECT);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_PIN_INCORRECT);
	assert_true(p11s_mock__token_flags() & P11S_TOKEN_USER_PIN_COUNT_LOW);
	c = p11s_mock__last(P11S_MOCK_OP_LOGIN);
	assert_int_equal(c->pin_len, 4);
	assert_int_equal(c->rv, CKR_PIN_INCORRECT);
	assert_int_equal(login(f, "12345"), P11S_ERR_PIN_INCORRECT);
	assert_true(p11s_mock__token_flags() & P11S_TOKEN_USER_PIN_FINAL_TRY);
	/* A right PIN clears the counter. */
	assert_int_equal(login(f, "1234"), P11S_OK);
	assert_int_equal(p11s_mock__token_flags(), 0);
	p11s_mock_ops.close(&f->prov);
	assert_int_equal(p11s_mock_ops.open(&f->prov, &f->prov.cfg), P11S_OK);
	assert_false(p11s_mock__logged_in());
	for (int i = 0; i < 3; i++) {
		assert_int_equal(login(f, "9"), P11S_ERR_PIN_INCORRECT);
	}
	assert_true(p11s_mock__token_flags() & P11S_TOKEN_USER_PIN_LOCKED);
	assert_int_equal(login(f, "1234"), P11S_ERR_PIN_LOCKED);
	assert_false(p11s_mock__logged_in());
	p11s_mock__set_pin("5678");
	p11s_mock__set_token_flags(0, P11S_TOKEN_USER_PIN_LOCKED);
	assert_int_equal(login(f, "5678"), P11S_OK);
}

static void test_mock__protected_auth(void **state)
{
	fixture *f = *state;

	assert_int_not_equal(p11s_mock_ops.login(&f->prov, &f->slot, P11S_USER_NORMAL, NULL),
	    P11S_OK);
	p11s_mock__set_token_flags(P11S_TOKEN_PROTECTED_AUTH_PATH, 0);
	assert_int_equal(p11s_mock_ops.login(&f->prov, &f->slot, P11S_USER_NORMAL, NULL), P11S_OK);
	assert_true(p11s_mock__last(P11S_MOCK_OP_LOGIN)->pin_null);
}

static void test_mock__inject(void **state)
{
	fixture *f = *state;
	p11s_slot *slots = NULL;
	size_t n;

	/* The 2nd next login fails, the 1st and 3rd do not. */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_LOGIN, 2, CKR_DEVICE_ERROR), 0);
	assert_int_equal(login(f, "1234"), P11S_OK);
	assert_int_equal(login(f, "1234"), P11S_ERR_DEVICE_REMOVED);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_DEVICE_ERROR);
	assert_int_equal(login(f, "1234"), P11S_OK);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SLOTS, 1, CKR_TOKEN_NOT_PRESENT), 0);
	assert_int_equal(p11s_mock_ops.slots(&f->prov, &slots, &n), P11S_ERR_TOKEN_ABSENT);
	assert_null(slots);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_OBJECTS, 1, CKR_SESSION_HANDLE_INVALID), 0);
	assert_int_equal(p11s_mock_ops.objects(&f->prov, &f->slot, &f->objs, &f->nobjs),
	    P11S_ERR_DEVICE_REMOVED);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_OBJECTS)->rv, CKR_SESSION_HANDLE_INVALID);
	/* Removal: the slot reports no token, the login is gone. */
	p11s_mock__set_present(0);
	assert_int_equal(p11s_mock_ops.slots(&f->prov, &slots, &n), P11S_OK);
	assert_false(slots[0].info.flags & P11S_TOKEN_PRESENT);
	assert_string_equal(slots[0].info.label, "");
	free(slots);
	assert_false(p11s_mock_ops.logged_in(&f->prov, &f->slot));
}

static p11s_buf *sign(fixture *f, const char *label, const p11s_mech *m, const unsigned char *in,
    size_t inlen, int expect)
{
	p11s_buf *out = NULL;

	assert_int_equal(p11s_mock_ops.sign(&f->prov, find(f, label, P11S_OBJ_PRIVATE_KEY), m, in,
	                     inlen, &out),
	    expect);
	return out;
}

/* CKM_RSA_PKCS over a DigestInfo and CKM_RSA_PKCS_PSS over a hash, checked by software. */
static void test_mock__sign_rsa(void **state)
{
	fixture *f = *state;
	unsigned char hash[32], di[sizeof(sha256_prefix) + 32];
	p11s_mech pkcs = { P11S_MECH_RSA_PKCS, 0, 0, 0, NULL, 0 };
	p11s_mech pss = { P11S_MECH_RSA_PKCS_PSS, P11S_HASH_SHA256, P11S_MGF1_SHA256, 32, NULL, 0 };
	p11s_mech raw = { P11S_MECH_RSA_X_509, 0, 0, 0, NULL, 0 };
	EVP_PKEY *pub;
	EVP_PKEY_CTX *v;
	p11s_buf *sig;
	const p11s_mock_call *c;

	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	pub = cert_key(f, "rsa2048");
	memset(hash, 0xab, sizeof(hash));
	memcpy(di, sha256_prefix, sizeof(sha256_prefix));
	memcpy(di + sizeof(sha256_prefix), hash, sizeof(hash));

	sig = sign(f, "rsa2048", &pkcs, di, sizeof(di), P11S_OK);
	assert_int_equal(sig->len, 256);
	v = EVP_PKEY_CTX_new(pub, NULL);
	assert_int_equal(EVP_PKEY_verify_init(v), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify(v, sig->data, sig->len, di, sizeof(di)), 1);
	EVP_PKEY_CTX_free(v);
	p11s_buf_free(sig);
	c = p11s_mock__last(P11S_MOCK_OP_SIGN);
	assert_int_equal(c->mech, P11S_MECH_RSA_PKCS);
	assert_int_equal(c->inlen, sizeof(di));
	assert_string_equal(c->key, "rsa2048");

	sig = sign(f, "rsa2048", &pss, hash, sizeof(hash), P11S_OK);
	v = EVP_PKEY_CTX_new(pub, NULL);
	assert_int_equal(EVP_PKEY_verify_init(v), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PSS_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(v, 32), 1);
	assert_int_equal(EVP_PKEY_verify(v, sig->data, sig->len, hash, sizeof(hash)), 1);
	EVP_PKEY_CTX_free(v);
	p11s_buf_free(sig);
	c = p11s_mock__last(P11S_MOCK_OP_SIGN);
	assert_int_equal(c->hash, P11S_HASH_SHA256);
	assert_int_equal(c->mgf, P11S_MGF1_SHA256);
	assert_int_equal(c->salt_len, 32);

	/* No raw RSA on this token, as on many HSMs. */
	assert_null(sign(f, "rsa2048", &raw, di, sizeof(di), P11S_ERR_MECHANISM));
	/* PSS over something that is not a SHA-256 hash. */
	assert_null(sign(f, "rsa2048", &pss, di, sizeof(di), P11S_ERR_TOKEN));
	assert_int_equal(p11s_error_last()->ck_rv, CKR_DATA_LEN_RANGE);
	/* An EC mechanism on an RSA key. */
	pkcs.type = P11S_MECH_ECDSA;
	assert_null(sign(f, "rsa2048", &pkcs, hash, sizeof(hash), P11S_ERR_MECHANISM));
	assert_int_equal(p11s_error_last()->ck_rv, CKR_KEY_TYPE_INCONSISTENT);
	EVP_PKEY_free(pub);
}

static void test_mock__sign_ecdsa(void **state)
{
	fixture *f = *state;
	p11s_mech m = { P11S_MECH_ECDSA, 0, 0, 0, NULL, 0 };
	unsigned char hash[48];
	p11s_buf *sig;

	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	memset(hash, 0x5a, sizeof(hash));
	sig = sign(f, "ec384", &m, hash, sizeof(hash), P11S_OK);
	assert_int_equal(sig->len, 96); /* r||s, 48 bytes each */
	p11s_buf_free(sig);
	sig = sign(f, "ec256", &m, hash, 32, P11S_OK);
	assert_int_equal(sig->len, 64);
	p11s_buf_free(sig);
	/* A short signature on demand. */
	assert_int_equal(p11s_mock__inject_short(1, 5), 0);
	sig = sign(f, "ec256", &m, hash, 32, P11S_OK);
	assert_int_equal(sig->len, 59);
	p11s_buf_free(sig);
	/* Not logged in: the token says so. */
	p11s_mock_ops.close(&f->prov);
	assert_int_equal(p11s_mock_ops.open(&f->prov, &f->prov.cfg), P11S_OK);
	assert_null(sign(f, "ec256", &m, hash, 32, P11S_ERR_LOGIN));
}

/* OAEP with a label, round trip with the certificate's key; a refused parameter set. */
static void test_mock__decrypt_oaep(void **state)
{
	fixture *f = *state;
	static unsigned char label[] = "p11s";
	p11s_mech m = { P11S_MECH_RSA_PKCS_OAEP, P11S_HASH_SHA256, P11S_MGF1_SHA256, 0, label, 4 };
	unsigned char key[32], ct[256];
	size_t ctlen = sizeof(ct);
	EVP_PKEY *pub;
	EVP_PKEY_CTX *e;
	p11s_buf *out = NULL;
	const p11s_object *o;

	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	o = find(f, "rsa2048", P11S_OBJ_PRIVATE_KEY);
	pub = cert_key(f, "rsa2048");
	memset(key, 0x42, sizeof(key));
	e = EVP_PKEY_CTX_new(pub, NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_OAEP_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(e, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(e, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(e, OPENSSL_memdup(label, 4), 4), 1);
	assert_int_equal(EVP_PKEY_encrypt(e, ct, &ctlen, key, sizeof(key)), 1);
	EVP_PKEY_CTX_free(e);

	assert_int_equal(p11s_mock_ops.decrypt(&f->prov, o, &m, ct, ctlen, &out), P11S_OK);
	assert_int_equal(out->len, 32);
	assert_memory_equal(out->data, key, 32);
	p11s_buf_free(out);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DECRYPT)->label_len, 4);
	/* A wrong label is one uniform error (no oracle). */
	m.label_len = 3;
	assert_int_equal(p11s_mock_ops.decrypt(&f->prov, o, &m, ct, ctlen, &out), P11S_ERR_DECRYPT);
	m.label_len = 4;
	/* SoftHSM 2.6.1 style refusal of OAEP with SHA-256. */
	assert_int_equal(p11s_mock__set_refused_mech(P11S_MECH_RSA_PKCS_OAEP, P11S_HASH_SHA256), 0);
	assert_int_equal(p11s_mock_ops.decrypt(&f->prov, o, &m, ct, ctlen, &out),
	    P11S_ERR_MECHANISM);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_MECHANISM_PARAM_INVALID);
	assert_null(out);
	/* Mid-operation removal. */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_DECRYPT, 1, CKR_DEVICE_REMOVED), 0);
	m.hash = P11S_HASH_SHA1;
	assert_int_equal(p11s_mock_ops.decrypt(&f->prov, o, &m, ct, ctlen, &out),
	    P11S_ERR_DEVICE_REMOVED);
	EVP_PKEY_free(pub);
}

static void test_mock__derive(void **state)
{
	fixture *f = *state;
	EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *pub;
	unsigned char pt[65], z[32];
	size_t ptlen = 0, zlen = sizeof(z);
	EVP_PKEY_CTX *c;
	p11s_buf *out = NULL;
	const p11s_object *o;

	assert_non_null(eph);
	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	o = find(f, "ec256", P11S_OBJ_PRIVATE_KEY);
	assert_int_equal(EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, pt,
	                     sizeof(pt), &ptlen),
	    1);
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, pt, ptlen, &out), P11S_OK);
	pub = cert_key(f, "ec256");
	c = EVP_PKEY_CTX_new(eph, NULL);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, pub), 1);
	assert_int_equal(EVP_PKEY_derive(c, z, &zlen), 1);
	assert_int_equal(out->len, zlen);
	assert_memory_equal(out->data, z, zlen);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->mech, P11S_MECH_ECDH1_DERIVE);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->inlen, 65);
	p11s_buf_free(out);
	out = NULL;
	/* A point from the wrong curve. */
	assert_int_not_equal(p11s_mock_ops.derive(&f->prov, find(f, "ec384",
	                         P11S_OBJ_PRIVATE_KEY), pt, ptlen, &out),
	    P11S_OK);
	assert_null(out);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(eph);
}

/* The certificate object of `label`, parsed. */
static X509 *cert_of(const fixture *f, const char *label)
{
	const p11s_object *c = find(f, label, P11S_OBJ_CERTIFICATE);
	const unsigned char *p;
	X509 *x;

	assert_non_null(c);
	p = c->value.data;
	x = d2i_X509(NULL, &p, (long)c->value.len);
	assert_non_null(x);
	return x;
}

/*
 * The X25519 key (PKCS#11 v3.0 §2.3.7, §2.3.8: CKK_EC_MONTGOMERY): CKA_EC_PARAMS id-X25519,
 * CKA_EC_POINT the raw 32-byte u-coordinate, derive only; its certificate (RFC 8410 §5:
 * keyAgreement) issued by rsa2048's, with the same key as the public key object.
 */
static void test_mock__objects_x25519(void **state)
{
	static const unsigned char id_x25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x6e }; /* 1.3.101.110 */
	fixture *f = *state;
	const p11s_object *priv, *pub;
	X509 *x, *issuer;
	EVP_PKEY *ck, *ik;
	unsigned char raw[32];
	size_t rawlen = sizeof(raw), derlen = 0;
	const unsigned char *der;
	const ASN1_OCTET_STRING *aki, *ski;
	int crit = -1;
	ASN1_BIT_STRING *ku;

	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	priv = find(f, "x25519", P11S_OBJ_PRIVATE_KEY);
	pub = find(f, "x25519", P11S_OBJ_PUBLIC_KEY);
	assert_non_null(priv);
	assert_non_null(pub);
	assert_int_equal(priv->key_type, P11S_KEY_XDH);
	assert_int_equal(pub->key_type, P11S_KEY_XDH);
	assert_int_equal(priv->id.len, 1);
	assert_int_equal(priv->id.data[0], 4);
	assert_int_equal(find(f, "x25519", P11S_OBJ_CERTIFICATE)->id.data[0], 4);
	assert_false(priv->can_sign);
	assert_false(priv->can_decrypt);
	assert_true(priv->can_derive);
	assert_int_equal(pub->ec_params.len, sizeof(id_x25519));
	assert_memory_equal(pub->ec_params.data, id_x25519, sizeof(id_x25519));
	assert_int_equal(priv->ec_params.len, sizeof(id_x25519));
	assert_int_equal(pub->ec_point.len, 32);

	x = cert_of(f, "x25519");
	issuer = cert_of(f, "rsa2048");
	ck = X509_get_pubkey(x);
	assert_non_null(ck);
	assert_true(EVP_PKEY_is_a(ck, "X25519"));
	assert_int_equal(EVP_PKEY_get_raw_public_key(ck, raw, &rawlen), 1);
	assert_int_equal(rawlen, 32);
	assert_memory_equal(raw, pub->ec_point.data, 32);
	/* Issued by rsa2048: its name, its signature, its key identifier. */
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(issuer)), 0);
	assert_int_not_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(issuer)),
	    0);
	ik = X509_get0_pubkey(issuer);
	assert_int_equal(X509_verify(x, ik), 1);
	ski = X509_get0_subject_key_id(x);
	aki = X509_get0_authority_key_id(x);
	assert_non_null(ski);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(issuer)), 0);
	/* keyUsage: keyAgreement alone, critical. */
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	assert_non_null(ku);
	assert_int_equal(crit, 1);
	ASN1_BIT_STRING_free(ku);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_AGREEMENT);
	/* p11s_mock__cert_der() hands out the same certificate. */
	der = p11s_mock__cert_der("x25519", &derlen);
	assert_non_null(der);
	assert_int_equal(derlen, find(f, "x25519", P11S_OBJ_CERTIFICATE)->value.len);
	assert_memory_equal(der, find(f, "x25519", P11S_OBJ_CERTIFICATE)->value.data, derlen);
	EVP_PKEY_free(ck);
	X509_free(issuer);
	X509_free(x);
}

/*
 * CKM_ECDH1_DERIVE with the X25519 key: the peer's raw u-coordinate in, K out, as software
 * computes it (RFC 7748 §6.1); a wrong length, a fault, a signature are refused.
 */
static void test_mock__derive_x25519(void **state)
{
	fixture *f = *state;
	EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), *pub;
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	unsigned char u[32], pt[65], z[32], hash[32] = { 7 };
	size_t ulen = sizeof(u), ptlen = 0, zlen = sizeof(z);
	p11s_mech ecdsa = { P11S_MECH_ECDSA, 0, 0, 0, NULL, 0 };
	EVP_PKEY_CTX *c;
	p11s_buf *out = NULL;
	const p11s_object *o;
	const p11s_mock_call *call;

	assert_non_null(eph);
	assert_non_null(p256);
	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	o = find(f, "x25519", P11S_OBJ_PRIVATE_KEY);
	assert_int_equal(EVP_PKEY_get_raw_public_key(eph, u, &ulen), 1);
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, u, ulen, &out), P11S_OK);
	pub = cert_key(f, "x25519");
	c = EVP_PKEY_CTX_new(eph, NULL);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, pub), 1);
	assert_int_equal(EVP_PKEY_derive(c, z, &zlen), 1);
	assert_int_equal(zlen, 32);
	assert_int_equal(out->len, 32);
	assert_memory_equal(out->data, z, 32);
	p11s_buf_free(out);
	out = NULL;
	call = p11s_mock__last(P11S_MOCK_OP_DERIVE);
	assert_int_equal(call->mech, P11S_MECH_ECDH1_DERIVE);
	assert_int_equal(call->inlen, 32);
	assert_int_equal(call->outlen, 32);
	assert_string_equal(call->key, "x25519");
	assert_int_equal(call->rv, CKR_OK);

	/* Not 32 bytes: a shorter key, an EC point. */
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, u, 31, &out), P11S_ERR_MECHANISM);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_MECHANISM_PARAM_INVALID);
	assert_null(out);
	assert_int_equal(EVP_PKEY_get_octet_string_param(p256, OSSL_PKEY_PARAM_PUB_KEY, pt,
	                     sizeof(pt), &ptlen),
	    1);
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, pt, ptlen, &out), P11S_ERR_MECHANISM);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->rv, CKR_MECHANISM_PARAM_INVALID);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->inlen, 65);
	/* ... nor the other way round: a u-coordinate to an EC key. */
	assert_int_not_equal(p11s_mock_ops.derive(&f->prov, find(f, "ec256", P11S_OBJ_PRIVATE_KEY),
	                         u, ulen, &out),
	    P11S_OK);
	assert_null(out);
	/* Mid-operation removal, one-shot. */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_DERIVE, 1, CKR_DEVICE_REMOVED), 0);
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, u, ulen, &out), P11S_ERR_DEVICE_REMOVED);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->rv, CKR_DEVICE_REMOVED);
	assert_string_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->key, "x25519");
	assert_int_equal(p11s_mock_ops.derive(&f->prov, o, u, ulen, &out), P11S_OK);
	p11s_buf_free(out);
	out = NULL;
	/* It cannot sign (RFC 8410 §5). */
	assert_null(sign(f, "x25519", &ecdsa, hash, sizeof(hash), P11S_ERR_MECHANISM));
	assert_int_equal(p11s_error_last()->ck_rv, CKR_KEY_TYPE_INCONSISTENT);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(eph);
}

/* p11s_mock__set_cert_of(): a certificate object that is another key's, then its own again. */
static void test_mock__cert_of(void **state)
{
	fixture *f = *state;
	size_t len = 0;
	const unsigned char *ec256 = p11s_mock__cert_der("ec256", &len);

	assert_int_equal(p11s_mock__set_cert_of("x25519", "ec256"), 0);
	assert_int_equal(p11s_mock__set_cert_of("x25519", "nope"), -1);
	load_objects(f);
	assert_int_equal(find(f, "x25519", P11S_OBJ_CERTIFICATE)->value.len, len);
	assert_memory_equal(find(f, "x25519", P11S_OBJ_CERTIFICATE)->value.data, ec256, len);
	assert_int_equal(p11s_mock__set_cert_of("x25519", NULL), 0);
	load_objects(f);
	ec256 = p11s_mock__cert_der("x25519", &len);
	assert_memory_equal(find(f, "x25519", P11S_OBJ_CERTIFICATE)->value.data, ec256, len);
}

/* CKA_ALWAYS_AUTHENTICATE: sign asks the PIN callback and logs a context-specific login. */
static void test_mock__always_authenticate(void **state)
{
	fixture *f = *state;
	p11s_mech m = { P11S_MECH_ECDSA, 0, 0, 0, NULL, 0 };
	unsigned char hash[32] = { 1 };
	p11s_buf *sig;

	assert_int_equal(p11s_mock__set_always_authenticate("ec256", 1), 0);
	assert_int_equal(login(f, "1234"), P11S_OK);
	load_objects(f);
	assert_true(find(f, "ec256", P11S_OBJ_PRIVATE_KEY)->always_authenticate);
	sig = sign(f, "ec256", &m, hash, sizeof(hash), P11S_OK);
	p11s_buf_free(sig);
	assert_int_equal(f->pin_calls, 1);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_LOGIN)->user_type,
	    P11S_USER_CONTEXT_SPECIFIC);
	/* The wrong PIN for this signature fails it. */
	p11s_mock__set_pin("9999");
	assert_null(sign(f, "ec256", &m, hash, sizeof(hash), P11S_ERR_PIN_INCORRECT));
	assert_int_equal(f->pin_calls, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mock__token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__pin_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__protected_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__inject, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__sign_rsa, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__sign_ecdsa, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__decrypt_oaep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__derive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__objects_x25519, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__derive_x25519, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__cert_of, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mock__always_authenticate, setup, teardown),
	};

	return cmocka_run_group_tests_name("mock", tests, NULL, NULL);
}

/*
 * The libp11 backend's ops table, driven directly against a real SoftHSMv2 token.
 *
 * Environment (set by the CTest harness; the token tests skip without them):
 *   P11S_TEST_MODULE   PKCS#11 module (SoftHSM's libsofthsm2.so, or pkcs11-spy.so in front)
 *   SOFTHSM2_CONF      the throwaway token's configuration (read by SoftHSM itself)
 *   P11S_TEST_TOKEN    token label
 *   P11S_TEST_PIN      user PIN (or P11S_TEST_PIN_FILE: its first line)
 *   P11S_TEST_AA_LABEL optional: label of a private key with CKA_ALWAYS_AUTHENTICATE
 * The token holds at least one RSA and/or one EC P-256 key pair (pkcs11-tool --keypairgen);
 * the cases for a key type the token lacks are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11smime/error.h>
#include <p11smime/secret.h>
#include <p11smime/sys/provider.h>

#include "pkcs11/backends.h"

#define CKR_PIN_INCORRECT 0xA0UL

struct env {
	const char *module;
	const char *token;
	const char *pin;
	const char *aa_label;
};

struct fx {
	struct env env;
	p11s_provider p;
	p11s_slot *slots;
	size_t nslots;
	const p11s_slot *slot;   /* the test token's */
	p11s_object *objs;
	size_t nobjs;
	int pin_calls;
};

static int get_env(struct env *e)
{
	memset(e, 0, sizeof(*e));
	e->module = getenv("P11S_TEST_MODULE");
	e->token = getenv("P11S_TEST_TOKEN");
	e->pin = getenv("P11S_TEST_PIN");
	if (e->pin == NULL && getenv("P11S_TEST_PIN_FILE") != NULL) {
		/* The harness gives the PIN in a file, never in the environment. */
		static char line[256];
		FILE *f = fopen(getenv("P11S_TEST_PIN_FILE"), "r");

		if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			e->pin = line;
		}
		if (f != NULL) {
			fclose(f);
		}
	}
	e->aa_label = getenv("P11S_TEST_AA_LABEL");
	return e->module != NULL && e->token != NULL && e->pin != NULL &&
	    getenv("SOFTHSM2_CONF") != NULL;
}

static int make_secret(const char *s, p11s_secret **out)
{
	int rc;

	if ((rc = p11s_secret_new(out)) < 0) {
		return rc;
	}
	return p11s_secret_set(*out, s, strlen(s));
}

/* The PIN callback for context-specific logins: the test PIN, counted. */
static int pin_cb(const p11s_slot *slot, unsigned long user_type, p11s_secret **out,
    void *payload)
{
	struct fx *f = payload;

	(void)slot;
	assert_int_equal(user_type, P11S_USER_CONTEXT_SPECIFIC);
	f->pin_calls++;
	return make_secret(f->env.pin, out);
}

static void provider_init(p11s_provider *p)
{
	memset(p, 0, sizeof(*p));
	p->ops = &p11s_libp11_ops;
	p->priv = calloc(1, p->ops->priv_size);
	assert_non_null(p->priv);
}

static void provider_free(p11s_provider *p)
{
	if (p->ops != NULL) {
		p->ops->close(p);
	}
	free(p->priv);
	p->priv = NULL;
}

/* Open the module and find the test token; `login` logs in as the user as well. */
static int fx_setup(void **state, int login)
{
	struct fx *f = calloc(1, sizeof(*f));
	p11s_secret *pin = NULL;

	assert_non_null(f);
	*state = f;
	if (!get_env(&f->env)) {
		return 0; /* the test body skips */
	}
	provider_init(&f->p);
	f->p.cfg.module_path = f->env.module;
	f->p.cfg.get_pin = pin_cb;
	f->p.cfg.pin_payload = f;
	assert_int_equal(f->p.ops->open(&f->p, &f->p.cfg), P11S_OK);
	assert_int_equal(f->p.ops->slots(&f->p, &f->slots, &f->nslots), P11S_OK);
	for (size_t i = 0; i < f->nslots; i++) {
		if ((f->slots[i].info.flags & P11S_TOKEN_PRESENT) &&
		    strcmp(f->slots[i].info.label, f->env.token) == 0) {
			f->slot = &f->slots[i];
		}
	}
	assert_non_null(f->slot);
	if (login) {
		assert_int_equal(make_secret(f->env.pin, &pin), P11S_OK);
		assert_int_equal(f->p.ops->login(&f->p, f->slot, P11S_USER_NORMAL, pin), P11S_OK);
		p11s_secret_free(pin);
		assert_int_equal(f->p.ops->objects(&f->p, f->slot, &f->objs, &f->nobjs), P11S_OK);
	}
	return 0;
}

static int setup_open(void **state)
{
	return fx_setup(state, 0);
}

static int setup_login(void **state)
{
	return fx_setup(state, 1);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f == NULL) {
		return 0;
	}
	p11s_objects_free(f->objs, f->nobjs);
	free(f->slots);
	if (f->p.priv != NULL) {
		provider_free(&f->p);
	}
	free(f);
	return 0;
}

static void need_token(struct fx *f)
{
	if (f->p.priv == NULL) {
		skip();
	}
}

/* CKA_EC_PARAMS of P-256: the DER OID 1.2.840.10045.3.1.7. */
static const unsigned char p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
	0x07 };

static const p11s_object *find_obj(struct fx *f, p11s_object_class cls, p11s_key_type type,
    const char *label)
{
	for (size_t i = 0; i < f->nobjs; i++) {
		/* Without a label, the always-authenticate key is left to its own test. */
		if (label == NULL && f->env.aa_label != NULL &&
		    strcmp(f->objs[i].label, f->env.aa_label) == 0) {
			continue;
		}
		/* The EC cases are written for P-256: skip other curves when no label is given. */
		if (label == NULL && type == P11S_KEY_EC &&
		    (f->objs[i].ec_params.len != sizeof(p256_oid) ||
		        memcmp(f->objs[i].ec_params.data, p256_oid, sizeof(p256_oid)) != 0)) {
			continue;
		}
		if (f->objs[i].cls == cls && f->objs[i].key_type == type &&
		    (label == NULL || strcmp(f->objs[i].label, label) == 0)) {
			return &f->objs[i];
		}
	}
	return NULL;
}

/* The public key of a private key object, from the attributes the backend reported. */
static EVP_PKEY *object_pubkey(const p11s_object *o)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pk = NULL;
	BIGNUM *n = NULL, *e = NULL;

	assert_non_null(bld);
	if (o->key_type == P11S_KEY_RSA) {
		assert_non_null(n = BN_bin2bn(o->modulus.data, (int)o->modulus.len, NULL));
		assert_non_null(e = BN_bin2bn(o->public_exponent.data, (int)o->public_exponent.len,
		    NULL));
		assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n));
		assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e));
		pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else {
		const unsigned char *q = o->ec_params.data;
		const unsigned char *pt = o->ec_point.data;
		ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &q, (long)o->ec_params.len);
		ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &pt, (long)o->ec_point.len);

		assert_non_null(oid);
		assert_non_null(os);
		assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		    OBJ_nid2sn(OBJ_obj2nid(oid)), 0));
		assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
		    ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os)));
		params = OSSL_PARAM_BLD_to_param(bld);
		ASN1_OBJECT_free(oid);
		ASN1_OCTET_STRING_free(os);
		pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	}
	if (params == NULL) {
		params = OSSL_PARAM_BLD_to_param(bld);
	}
	assert_non_null(params);
	assert_non_null(pctx);
	assert_int_equal(EVP_PKEY_fromdata_init(pctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(pctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pk;
}

static void test_libp11__caps(void **state)
{
	const struct p11s_provider_ops *ops = &p11s_libp11_ops;

	(void)state;
	assert_int_equal(ops->abi, P11S_PROVIDER_ABI);
	assert_string_equal(ops->name, "libp11");
	/* Only what libp11 0.4.12 sends to the token natively. */
	assert_true(ops->caps & P11S_CAP_RSA_PKCS_SIGN);
	assert_true(ops->caps & P11S_CAP_RSA_PKCS_DECRYPT);
	assert_true(ops->caps & P11S_CAP_ECDSA);
	assert_true(ops->caps & P11S_CAP_ECDH);
	assert_false(ops->caps & P11S_CAP_RSA_PSS);
	assert_false(ops->caps & P11S_CAP_RSA_OAEP);
	assert_false(ops->caps & P11S_CAP_EDDSA);
}

static void test_libp11__missing_module(void **state)
{
	const char *path = "/nonexistent/p11smime-no-such-module.so";
	p11s_provider p;

	(void)state;
	provider_init(&p);
	p.cfg.module_path = path;
	assert_int_equal(p.ops->open(&p, &p.cfg), P11S_ERR_MODULE);
	assert_int_equal(p11s_error_last()->code, P11S_ERR_MODULE);
	assert_non_null(strstr(p11s_error_last()->message, path));
	provider_free(&p); /* close tolerates the failed open */
}

static void test_libp11__slots(void **state)
{
	struct fx *f = *state;

	need_token(f);
	assert_true(f->nslots >= 1);
	assert_true(f->slot->info.flags & P11S_TOKEN_INITIALIZED);
	assert_true(f->slot->info.flags & P11S_TOKEN_LOGIN_REQUIRED);
	assert_true(f->slot->info.flags & P11S_TOKEN_USER_PIN_INITIALIZED);
	assert_int_equal(f->slot->handle, f->slot->info.slot_id);
	assert_string_not_equal(f->slot->info.serial, "");
	assert_false(f->p.ops->logged_in(&f->p, f->slot));
}

static void test_libp11__wrong_pin(void **state)
{
	struct fx *f = *state;
	p11s_secret *pin = NULL;

	need_token(f);
	assert_int_equal(make_secret("not-the-pin-0000", &pin), P11S_OK);
	assert_int_equal(f->p.ops->login(&f->p, f->slot, P11S_USER_NORMAL, pin),
	    P11S_ERR_PIN_INCORRECT);
	p11s_secret_free(pin);
	assert_true(p11s_error_last()->has_ck_rv);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_PIN_INCORRECT);
	assert_false(f->p.ops->logged_in(&f->p, f->slot));
}

static void test_libp11__login(void **state)
{
	struct fx *f = *state;
	p11s_secret *pin = NULL;

	need_token(f);
	assert_true(f->p.ops->logged_in(&f->p, f->slot));
	/* Already logged in is success; a context-specific login is libp11's own business. */
	assert_int_equal(make_secret(f->env.pin, &pin), P11S_OK);
	assert_int_equal(f->p.ops->login(&f->p, f->slot, P11S_USER_NORMAL, pin), P11S_OK);
	assert_int_equal(f->p.ops->login(&f->p, f->slot, P11S_USER_CONTEXT_SPECIFIC, pin),
	    P11S_ERR_UNSUPPORTED);
	p11s_secret_free(pin);
}

static void test_libp11__objects(void **state)
{
	struct fx *f = *state;
	const p11s_object *rsa, *ec, *pub;

	need_token(f);
	assert_true(f->nobjs >= 1);
	for (size_t i = 0; i < f->nobjs; i++) {
		assert_non_null(f->objs[i].label);
		assert_int_not_equal(f->objs[i].handle, 0);
		assert_int_equal(f->objs[i].slot, f->slot->handle);
		if (f->objs[i].cls == P11S_OBJ_CERTIFICATE) {
			const unsigned char *q = f->objs[i].value.data;
			X509 *x = d2i_X509(NULL, &q, (long)f->objs[i].value.len);

			assert_non_null(x);
			assert_ptr_equal(q, f->objs[i].value.data + f->objs[i].value.len);
			X509_free(x);
		}
	}
	if ((rsa = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_RSA, NULL)) != NULL) {
		assert_true(rsa->modulus.len >= 128);
		assert_true(rsa->public_exponent.len >= 1);
		assert_true(rsa->id.len >= 1);
		assert_true(rsa->can_sign && rsa->can_decrypt);
		pub = find_obj(f, P11S_OBJ_PUBLIC_KEY, P11S_KEY_RSA, rsa->label);
		assert_non_null(pub);
		assert_int_equal(pub->modulus.len, rsa->modulus.len);
		assert_memory_equal(pub->modulus.data, rsa->modulus.data, rsa->modulus.len);
		assert_int_not_equal(pub->handle, rsa->handle);
	}
	if ((ec = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_EC, NULL)) != NULL) {
		assert_true(ec->can_sign && ec->can_derive);
		assert_int_equal(ec->ec_params.len, sizeof(p256_oid));
		assert_memory_equal(ec->ec_params.data, p256_oid, sizeof(p256_oid));
		/* DER OCTET STRING around 04 || X || Y. */
		assert_int_equal(ec->ec_point.len, 2 + 65);
		assert_int_equal(ec->ec_point.data[0], 0x04);
		assert_int_equal(ec->ec_point.data[1], 65);
		assert_int_equal(ec->ec_point.data[2], 0x04);
	}
	if (rsa == NULL && ec == NULL) {
		fail_msg("no RSA or EC private key on token %s", f->env.token);
	}
}

/* DigestInfo (RFC 8017 §9.2 note 1) for SHA-256 over `msg`. */
static size_t digest_info_sha256(const char *msg, unsigned char di[51], unsigned char md[32])
{
	static const unsigned char prefix[19] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
		0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	unsigned int mdlen = 0;

	assert_int_equal(EVP_Digest(msg, strlen(msg), md, &mdlen, EVP_sha256(), NULL), 1);
	assert_int_equal(mdlen, 32);
	memcpy(di, prefix, sizeof(prefix));
	memcpy(di + sizeof(prefix), md, 32);
	return sizeof(prefix) + 32;
}

static void test_libp11__rsa_pkcs_sign(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	p11s_mech mech = { .type = P11S_MECH_RSA_PKCS };
	unsigned char di[51], md[32];
	size_t dilen;
	p11s_buf *sig = NULL;
	EVP_PKEY *pub;
	EVP_PKEY_CTX *vctx;

	need_token(f);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_RSA, NULL)) == NULL) {
		skip();
	}
	dilen = digest_info_sha256("p11smime libp11 test", di, md);
	assert_int_equal(f->p.ops->sign(&f->p, key, &mech, di, dilen, &sig), P11S_OK);
	assert_non_null(sig);
	assert_int_equal(sig->len, key->modulus.len);

	/* RSASSA-PKCS1-v1_5 with SHA-256, checked by OpenSSL against the token's public key. */
	pub = object_pubkey(key);
	assert_non_null(vctx = EVP_PKEY_CTX_new(pub, NULL));
	assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_verify(vctx, sig->data, sig->len, md, sizeof(md)), 1);
	EVP_PKEY_CTX_free(vctx);
	EVP_PKEY_free(pub);
	p11s_buf_free(sig);
}

static void test_libp11__rsa_pkcs_decrypt(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	p11s_mech mech = { .type = P11S_MECH_RSA_PKCS };
	unsigned char cek[32], ct[1024];
	size_t ctlen = sizeof(ct);
	p11s_buf *pt = NULL;
	EVP_PKEY *pub;
	EVP_PKEY_CTX *ectx;

	need_token(f);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_RSA, NULL)) == NULL) {
		skip();
	}
	assert_int_equal(RAND_bytes(cek, sizeof(cek)), 1);
	pub = object_pubkey(key);
	assert_non_null(ectx = EVP_PKEY_CTX_new(pub, NULL));
	assert_int_equal(EVP_PKEY_encrypt_init(ectx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ectx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(ectx, ct, &ctlen, cek, sizeof(cek)), 1);
	EVP_PKEY_CTX_free(ectx);
	EVP_PKEY_free(pub);

	assert_int_equal(f->p.ops->decrypt(&f->p, key, &mech, ct, ctlen, &pt), P11S_OK);
	assert_int_equal(pt->len, sizeof(cek));
	assert_memory_equal(pt->data, cek, sizeof(cek));
	p11s_buf_free(pt);

	/* A corrupted ciphertext fails, with the uniform decryption error or a token error. */
	ct[ctlen / 2] ^= 0x5a;
	pt = NULL;
	assert_true(f->p.ops->decrypt(&f->p, key, &mech, ct, ctlen, &pt) < 0);
	assert_null(pt);
}

static void test_libp11__unsupported(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	p11s_mech pss = { .type = P11S_MECH_RSA_PKCS_PSS, .hash = P11S_HASH_SHA256,
		.mgf = P11S_MGF1_SHA256, .salt_len = 32 };
	p11s_mech oaep = { .type = P11S_MECH_RSA_PKCS_OAEP, .hash = P11S_HASH_SHA1,
		.mgf = P11S_MGF1_SHA1 };
	p11s_mech raw = { .type = P11S_MECH_RSA_X_509 };
	p11s_mech eddsa = { .type = P11S_MECH_EDDSA };
	unsigned char in[256] = { 0 };
	p11s_buf *out = NULL;

	need_token(f);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_RSA, NULL)) == NULL &&
	    (key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_EC, NULL)) == NULL) {
		skip();
	}
	/* Never a host-padded fallback: a clear error that names the mechanism. */
	assert_int_equal(f->p.ops->sign(&f->p, key, &pss, in, 32, &out), P11S_ERR_UNSUPPORTED);
	assert_non_null(strstr(p11s_error_last()->message, "CKM_RSA_PKCS_PSS"));
	assert_non_null(strstr(p11s_error_last()->message, "natively"));
	assert_int_equal(f->p.ops->decrypt(&f->p, key, &oaep, in, sizeof(in), &out),
	    P11S_ERR_UNSUPPORTED);
	assert_non_null(strstr(p11s_error_last()->message, "CKM_RSA_PKCS_OAEP"));
	assert_int_equal(f->p.ops->sign(&f->p, key, &raw, in, sizeof(in), &out),
	    P11S_ERR_UNSUPPORTED);
	assert_non_null(strstr(p11s_error_last()->message, "CKM_RSA_X_509"));
	assert_int_equal(f->p.ops->decrypt(&f->p, key, &raw, in, sizeof(in), &out),
	    P11S_ERR_UNSUPPORTED);
	assert_int_equal(f->p.ops->sign(&f->p, key, &eddsa, in, 32, &out), P11S_ERR_UNSUPPORTED);
	assert_non_null(strstr(p11s_error_last()->message, "CKM_EDDSA"));
	assert_null(out);
}

static void test_libp11__ecdsa(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	p11s_mech mech = { .type = P11S_MECH_ECDSA };
	unsigned char md[32];
	unsigned int mdlen = 0;
	unsigned char *der = NULL;
	int derlen;
	p11s_buf *sig = NULL;
	ECDSA_SIG *es;
	EVP_PKEY *pub;
	EVP_PKEY_CTX *vctx;

	need_token(f);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_EC, NULL)) == NULL) {
		skip();
	}
	assert_int_equal(EVP_Digest("ecdsa", 5, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_int_equal(f->p.ops->sign(&f->p, key, &mech, md, mdlen, &sig), P11S_OK);
	/* CKM_ECDSA's r || s, 32 bytes each on P-256. */
	assert_int_equal(sig->len, 64);
	assert_non_null(es = ECDSA_SIG_new());
	assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig->data, 32, NULL),
	    BN_bin2bn(sig->data + 32, 32, NULL)), 1);
	assert_true((derlen = i2d_ECDSA_SIG(es, &der)) > 0);

	pub = object_pubkey(key);
	assert_non_null(vctx = EVP_PKEY_CTX_new(pub, NULL));
	assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
	assert_int_equal(EVP_PKEY_verify(vctx, der, (size_t)derlen, md, mdlen), 1);
	EVP_PKEY_CTX_free(vctx);
	EVP_PKEY_free(pub);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	p11s_buf_free(sig);

	/* An EC key cannot do CKM_RSA_PKCS. */
	mech.type = P11S_MECH_RSA_PKCS;
	assert_int_equal(f->p.ops->sign(&f->p, key, &mech, md, mdlen, &sig), P11S_ERR_MECHANISM);
}

static void test_libp11__ecdh(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	EVP_PKEY *eph = NULL, *pub;
	EVP_PKEY_CTX *dctx;
	unsigned char peer[65], z[32];
	size_t peer_len = 0, zlen = sizeof(z);
	p11s_buf *tz = NULL;

	need_token(f);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_EC, NULL)) == NULL) {
		skip();
	}
	assert_non_null(eph = EVP_EC_gen("P-256"));
	assert_int_equal(EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	    peer, sizeof(peer), &peer_len), 1);
	assert_int_equal(peer_len, 65);
	assert_int_equal(f->p.ops->derive(&f->p, key, peer, peer_len, &tz), P11S_OK);

	/* The host's side of the agreement: same Z. */
	pub = object_pubkey(key);
	assert_non_null(dctx = EVP_PKEY_CTX_new(eph, NULL));
	assert_int_equal(EVP_PKEY_derive_init(dctx), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(dctx, pub), 1);
	assert_int_equal(EVP_PKEY_derive(dctx, z, &zlen), 1);
	assert_int_equal(tz->len, zlen);
	assert_memory_equal(tz->data, z, zlen);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_free(pub);
	p11s_buf_free(tz);
	tz = NULL;

	/* A point off the curve is refused before it reaches the token. */
	peer[64] ^= 0x01;
	assert_true(f->p.ops->derive(&f->p, key, peer, peer_len, &tz) < 0);
	assert_null(tz);
	EVP_PKEY_free(eph);
}

/* Objects and operations survive a refresh of the slot list (libp11 rebuilds its key cache). */
static void test_libp11__refresh(void **state)
{
	struct fx *f = *state;
	const p11s_object *key;
	p11s_slot *slots = NULL;
	size_t n = 0;
	p11s_mech mech;
	unsigned char di[51], md[32];
	size_t dilen;
	p11s_buf *sig = NULL;

	need_token(f);
	assert_int_equal(f->p.ops->slots(&f->p, &slots, &n), P11S_OK);
	assert_int_equal(n, f->nslots);
	free(slots);
	assert_true(f->p.ops->logged_in(&f->p, f->slot));
	dilen = digest_info_sha256("refresh", di, md);
	if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_RSA, NULL)) != NULL) {
		mech = (p11s_mech){ .type = P11S_MECH_RSA_PKCS };
		assert_int_equal(f->p.ops->sign(&f->p, key, &mech, di, dilen, &sig), P11S_OK);
	} else if ((key = find_obj(f, P11S_OBJ_PRIVATE_KEY, P11S_KEY_EC, NULL)) != NULL) {
		mech = (p11s_mech){ .type = P11S_MECH_ECDSA };
		assert_int_equal(f->p.ops->sign(&f->p, key, &mech, md, sizeof(md), &sig), P11S_OK);
	}
	p11s_buf_free(sig);
}

/* CKA_ALWAYS_AUTHENTICATE: libp11 asks our callback for the PIN on every signature. */
static void test_libp11__context_login(void **state)
{
	struct fx *f = *state;
	const p11s_object *key = NULL;
	p11s_mech mech;
	unsigned char di[51], md[32];
	size_t inlen;
	p11s_buf *sig = NULL;

	need_token(f);
	if (f->env.aa_label == NULL) {
		skip();
	}
	for (size_t i = 0; i < f->nobjs && key == NULL; i++) {
		if (f->objs[i].cls == P11S_OBJ_PRIVATE_KEY &&
		    strcmp(f->objs[i].label, f->env.aa_label) == 0) {
			key = &f->objs[i];
		}
	}
	assert_non_null(key);
	inlen = digest_info_sha256("always authenticate", di, md);
	mech = (p11s_mech){ .type = key->key_type == P11S_KEY_RSA ? P11S_MECH_RSA_PKCS
								  : P11S_MECH_ECDSA };
	for (int round = 1; round <= 2; round++) {
		assert_int_equal(f->p.ops->sign(&f->p, key, &mech,
		    key->key_type == P11S_KEY_RSA ? di : md,
		    key->key_type == P11S_KEY_RSA ? inlen : sizeof(md), &sig), P11S_OK);
		assert_int_equal(f->pin_calls, round);
		p11s_buf_free(sig);
		sig = NULL;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_libp11__caps),
		cmocka_unit_test(test_libp11__missing_module),
		cmocka_unit_test_setup_teardown(test_libp11__slots, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__wrong_pin, setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__login, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__objects, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__rsa_pkcs_sign, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__rsa_pkcs_decrypt, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__unsupported, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__ecdsa, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__ecdh, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__refresh, setup_login, teardown),
		cmocka_unit_test_setup_teardown(test_libp11__context_login, setup_login, teardown),
	};

	return cmocka_run_group_tests_name("libp11", tests, NULL, NULL);
}

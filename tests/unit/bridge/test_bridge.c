/*
 * Unit tests of src/bridge (the "p11s" OpenSSL provider), end to end through the public API
 * with the mock backend: CMS signatures (PKCS#1 v1.5, PSS, ECDSA) and decryptions (ktri
 * PKCS#1 v1.5 and OAEP, kari ECDH) whose private operations go to the mock, which records the
 * mechanisms; faults and refusals come back as p11s errors; the keymgmt traps hold. X25519
 * (RFC 7748 §6) on the mock's CKK_EC_MONTGOMERY key through EVP_PKEY_derive().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11smime/p11smime.h>

#include <p11-kit/pkcs11.h>

#include "pkcs11/mock.h"
#include "token/token_int.h"

#define PIN_ENV "P11S_TEST_MOCK_PIN"
#define URI_RSA "pkcs11:token=mock;object=rsa2048;type=private"
#define URI_EC256 "pkcs11:token=mock;object=ec256;type=private"
#define URI_EC384 "pkcs11:token=mock;object=ec384;type=private"
#define URI_X25519 "pkcs11:token=mock;object=x25519;type=private"

static const char message[] = "Content-Type: text/plain\r\n\r\nHello from the token,\r\n"
                              "with a NUL \0 inside, binary safe.\r\n";

typedef struct fixture {
	p11s_ctx *ctx;
	p11s_key *key;
	EVP_PKEY *pkey;
} fixture;

static int setup(void **state)
{
	static const p11s_ctx_opts defaults = P11S_CTX_OPTS_INIT;
	p11s_ctx_opts o = defaults;
	fixture *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	p11s_mock__reset();
	/* An env: source is consumed (unset) once read: set it before every login. */
	setenv(PIN_ENV, "1234", 1);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = "env:" PIN_ENV;
	o.batch = 1;
	if (p11s_ctx_new(&f->ctx, &o) != P11S_OK) {
		print_error("p11s_ctx_new: %s\n", p11s_error_last()->message);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	EVP_PKEY_free(f->pkey);
	p11s_key_free(f->key);
	p11s_ctx_free(f->ctx);
	free(f);
	unsetenv(PIN_ENV);
	return 0;
}

static void load_key(fixture *f, const char *uri)
{
	int rc = p11s_key_find(f->ctx, uri, &f->key);

	if (rc != P11S_OK) {
		print_error("p11s_key_find(%s): %s\n", uri, p11s_error_last()->message);
	}
	assert_int_equal(rc, P11S_OK);
	assert_non_null(p11s_key_cert(f->key));
	rc = p11s_key_pkey(f->key, &f->pkey);
	if (rc != P11S_OK) {
		print_error("p11s_key_pkey: %s | %s\n", p11s_error_last()->message,
		    p11s_error_last()->openssl);
	}
	assert_int_equal(rc, P11S_OK);
	assert_non_null(f->pkey);
}

static void dump_ossl(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		print_error("%s: %s\n", what, buf);
	}
}

/* Verify a detached CMS signature in the default library context, as a recipient would. */
static void verify_detached(const unsigned char *der, size_t derlen, X509 *cert)
{
	BIO *in = BIO_new_mem_buf(der, (int)derlen);
	BIO *data = BIO_new_mem_buf(message, (int)sizeof(message));
	X509_STORE *store = X509_STORE_new();
	CMS_ContentInfo *cms;
	int ok;

	assert_non_null(in);
	assert_non_null(data);
	assert_non_null(store);
	cms = d2i_CMS_bio(in, NULL);
	assert_non_null(cms);
	assert_int_equal(X509_STORE_add_cert(store, cert), 1);
	ok = CMS_verify(cms, NULL, store, data, NULL, CMS_BINARY | CMS_DETACHED);
	if (ok != 1) {
		dump_ossl("CMS_verify");
	}
	assert_int_equal(ok, 1);
	CMS_ContentInfo_free(cms);
	X509_STORE_free(store);
	BIO_free(data);
	BIO_free(in);
}

enum pad { PAD_PKCS1, PAD_PSS, PAD_PSS_STRINGS };

/* CMS_sign_ex() in the bridge's library context with a token key, then verify. */
static void sign_and_verify(fixture *f, const char *uri, const EVP_MD *md, enum pad pad,
    unsigned int extra_flags)
{
	const unsigned int flags = CMS_BINARY | CMS_DETACHED | CMS_PARTIAL | extra_flags;
	OSSL_LIB_CTX *libctx;
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;
	BIO *data, *out;
	unsigned char *der = NULL;
	long derlen;
	int ok;

	load_key(f, uri);
	libctx = p11s_ctx_libctx(f->ctx);
	data = BIO_new_mem_buf(message, (int)sizeof(message));
	assert_non_null(data);
	cms = CMS_sign_ex(NULL, NULL, NULL, NULL, flags, libctx, NULL);
	assert_non_null(cms);
	si = CMS_add1_signer(cms, p11s_key_cert(f->key), f->pkey, md,
	    flags | (pad != PAD_PKCS1 ? CMS_KEY_PARAM : 0));
	if (si == NULL) {
		dump_ossl("CMS_add1_signer");
	}
	assert_non_null(si);
	if (pad == PAD_PSS) {
		EVP_PKEY_CTX *pctx = CMS_SignerInfo_get0_pkey_ctx(si);

		assert_non_null(pctx);
		assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0);
	} else if (pad == PAD_PSS_STRINGS) {
		/* As `openssl cms -keyopt rsa_padding_mode:pss -keyopt rsa_pss_saltlen:digest`. */
		EVP_PKEY_CTX *pctx = CMS_SignerInfo_get0_pkey_ctx(si);

		assert_true(EVP_PKEY_CTX_ctrl_str(pctx, "rsa_padding_mode", "pss") > 0);
		assert_true(EVP_PKEY_CTX_ctrl_str(pctx, "rsa_pss_saltlen", "digest") > 0);
	}
	ok = CMS_final(cms, data, NULL, CMS_BINARY | CMS_DETACHED);
	if (ok != 1) {
		dump_ossl("CMS_final");
		print_error("p11s: %s\n", p11s_error_last()->message);
	}
	assert_int_equal(ok, 1);
	out = BIO_new(BIO_s_mem());
	assert_int_equal(i2d_CMS_bio(out, cms), 1);
	derlen = BIO_get_mem_data(out, (char **)&der);
	assert_true(derlen > 0);
	verify_detached(der, (size_t)derlen, p11s_key_cert(f->key));
	/*
	 * The structure just signed still holds the token key as the signer's key: CMS_verify()
	 * on it goes through the bridge's verification (public half, default provider).
	 */
	BIO_free(data);
	data = BIO_new_mem_buf(message, (int)sizeof(message));
	ok = CMS_verify(cms, NULL, NULL, data, NULL,
	    CMS_BINARY | CMS_DETACHED | CMS_NO_SIGNER_CERT_VERIFY);
	if (ok != 1) {
		dump_ossl("CMS_verify(same structure)");
	}
	assert_int_equal(ok, 1);
	BIO_free(out);
	BIO_free(data);
	CMS_ContentInfo_free(cms);
}

/* No call may have asked the token for raw RSA (DESIGN.md decision 1). */
static void assert_no_raw_rsa(void)
{
	const p11s_mock_call *calls;
	size_t n = p11s_mock__calls(&calls);

	for (size_t i = 0; i < n; i++) {
		assert_int_not_equal(calls[i].mech, P11S_MECH_RSA_X_509);
	}
}

static void test_bridge__sign_rsa_pkcs1(void **state)
{
	static const struct {
		const char *md;
		size_t inlen; /* DigestInfo: prefix + hash */
	} cases[] = { { "SHA256", 19 + 32 }, { "SHA384", 19 + 48 }, { "SHA512", 19 + 64 } };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fixture *f = *state;
		const p11s_mock_call *c;
		EVP_MD *md = EVP_MD_fetch(NULL, cases[i].md, NULL);

		if (i > 0) {
			teardown(state);
			assert_int_equal(setup(state), 0);
			f = *state;
		}
		sign_and_verify(f, URI_RSA, md, PAD_PKCS1, 0);
		c = p11s_mock__last(P11S_MOCK_OP_SIGN);
		assert_non_null(c);
		assert_int_equal(c->mech, P11S_MECH_RSA_PKCS);
		assert_int_equal(c->inlen, cases[i].inlen);
		assert_string_equal(c->key, "rsa2048");
		assert_int_equal(p11s_mock__count(P11S_MOCK_OP_SIGN), 1);
		assert_no_raw_rsa();
		EVP_MD_free(md);
	}
}

/* CMS_sign_ex() with the signer given directly: the keymgmt's default digest (SHA-256). */
static void test_bridge__sign_default_digest(void **state)
{
	fixture *f = *state;
	BIO *data = BIO_new_mem_buf(message, (int)sizeof(message)), *out = BIO_new(BIO_s_mem());
	CMS_ContentInfo *cms;
	unsigned char *der = NULL;
	long derlen;

	load_key(f, URI_EC256);
	cms = CMS_sign_ex(p11s_key_cert(f->key), f->pkey, NULL, data, CMS_BINARY | CMS_DETACHED,
	    p11s_ctx_libctx(f->ctx), NULL);
	if (cms == NULL) {
		dump_ossl("CMS_sign_ex");
	}
	assert_non_null(cms);
	assert_int_equal(i2d_CMS_bio(out, cms), 1);
	derlen = BIO_get_mem_data(out, (char **)&der);
	verify_detached(der, (size_t)derlen, p11s_key_cert(f->key));
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->mech, P11S_MECH_ECDSA);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->inlen, 32);
	CMS_ContentInfo_free(cms);
	BIO_free(out);
	BIO_free(data);
}

/* Without signed attributes CMS signs the content digest with EVP_PKEY_sign(). */
static void test_bridge__sign_noattr(void **state)
{
	sign_and_verify(*state, URI_RSA, EVP_sha256(), PAD_PKCS1, CMS_NOATTR);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->mech, P11S_MECH_RSA_PKCS);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->inlen, 19 + 32);
}

static void check_pss_call(void)
{
	const p11s_mock_call *c = p11s_mock__last(P11S_MOCK_OP_SIGN);

	assert_non_null(c);
	assert_int_equal(c->mech, P11S_MECH_RSA_PKCS_PSS);
	assert_int_equal(c->hash, P11S_HASH_SHA256);
	assert_int_equal(c->mgf, P11S_MGF1_SHA256);
	assert_int_equal(c->salt_len, 32);
	assert_int_equal(c->inlen, 32);
	assert_no_raw_rsa();
}

static void test_bridge__sign_rsa_pss(void **state)
{
	sign_and_verify(*state, URI_RSA, EVP_sha256(), PAD_PSS, 0);
	check_pss_call();
}

/* pad-mode and saltlen as strings (OpenSSL 3.0 trap): the same PSS signature. */
static void test_bridge__sign_rsa_pss_strings(void **state)
{
	sign_and_verify(*state, URI_RSA, EVP_sha256(), PAD_PSS_STRINGS, 0);
	check_pss_call();
}

static void test_bridge__sign_ecdsa_p256(void **state)
{
	sign_and_verify(*state, URI_EC256, EVP_sha256(), PAD_PKCS1, 0);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->mech, P11S_MECH_ECDSA);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->inlen, 32);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->outlen, 64);
}

static void test_bridge__sign_ecdsa_p384(void **state)
{
	sign_and_verify(*state, URI_EC384, EVP_sha384(), PAD_PKCS1, 0);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->mech, P11S_MECH_ECDSA);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->inlen, 48);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_SIGN)->outlen, 96);
}

/* The signature context answers pad-mode, saltlen and algorithm-id (CMS PSS needs the last). */
static void test_bridge__signature_params(void **state)
{
	fixture *f = *state;
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char aid[256], sig[512];
	char saltstr[32];
	int pad = 0, saltlen = 0;
	size_t siglen = sizeof(sig);
	OSSL_PARAM p[2];
	X509_ALGOR *alg;
	const unsigned char *pp = aid;
	const ASN1_OBJECT *obj;

	load_key(f, URI_RSA);
	assert_int_equal(EVP_DigestSignInit_ex(mctx, &pctx, "SHA256", p11s_ctx_libctx(f->ctx), NULL,
	                     f->pkey, NULL),
	    1);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
	assert_true(EVP_PKEY_CTX_get_rsa_padding(pctx, &pad) > 0);
	assert_int_equal(pad, RSA_PKCS1_PSS_PADDING);
	assert_true(EVP_PKEY_CTX_get_rsa_pss_saltlen(pctx, &saltlen) > 0);
	assert_int_equal(saltlen, RSA_PSS_SALTLEN_DIGEST);
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, saltstr,
	    sizeof(saltstr));
	p[1] = OSSL_PARAM_construct_end();
	assert_true(EVP_PKEY_CTX_get_params(pctx, p) > 0);
	assert_string_equal(saltstr, "digest");
	p[0] = OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid,
	    sizeof(aid));
	assert_true(EVP_PKEY_CTX_get_params(pctx, p) > 0);
	alg = d2i_X509_ALGOR(NULL, &pp, (long)p[0].return_size);
	assert_non_null(alg);
	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	assert_int_equal(OBJ_obj2nid(obj), NID_rsassaPss);
	X509_ALGOR_free(alg);
	/* A one-shot EVP_DigestSign through update/final, verified by the default provider. */
	assert_int_equal(EVP_DigestSign(mctx, sig, &siglen, (const unsigned char *)message,
	                     sizeof(message)),
	    1);
	assert_int_equal(siglen, 256);
	check_pss_call();
	EVP_MD_CTX_free(mctx);
}

static CMS_ContentInfo *reparse(CMS_ContentInfo *cms, OSSL_LIB_CTX *libctx)
{
	BIO *b = BIO_new(BIO_s_mem());
	CMS_ContentInfo *in = CMS_ContentInfo_new_ex(libctx, NULL);

	assert_non_null(b);
	assert_non_null(in);
	assert_int_equal(i2d_CMS_bio(b, cms), 1);
	assert_non_null(d2i_CMS_bio(b, &in));
	BIO_free(b);
	return in;
}

enum kt { KT_PKCS1, KT_OAEP, KT_ECDH };

/* CMS_encrypt() to the token's certificate on the host, in the default library context. */
static CMS_ContentInfo *encrypt_to(X509 *cert, enum kt kt)
{
	const unsigned int flags = CMS_BINARY | CMS_PARTIAL;
	BIO *data = BIO_new_mem_buf(message, (int)sizeof(message));
	CMS_ContentInfo *cms = CMS_encrypt(NULL, NULL, EVP_aes_256_cbc(), flags);
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;

	assert_non_null(cms);
	ri = CMS_add1_recipient_cert(cms, cert, flags | (kt != KT_PKCS1 ? CMS_KEY_PARAM : 0));
	assert_non_null(ri);
	if (kt == KT_OAEP) {
		pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
		assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0);
	} else if (kt == KT_ECDH) {
		/* STANDARDS.md §6 trap: OpenSSL 3.0 defaults to the SHA-1 KDF. */
		pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
		assert_true(EVP_PKEY_CTX_ctrl_str(pctx, "ecdh_kdf_md", "sha256") > 0);
	}
	if (CMS_final(cms, data, NULL, CMS_BINARY) != 1) {
		dump_ossl("CMS_final(encrypt)");
		fail();
	}
	BIO_free(data);
	return cms;
}

/* Decrypt with the bridge key in its library context; returns CMS_decrypt's result. */
static int decrypt_with(fixture *f, const char *uri, enum kt kt)
{
	CMS_ContentInfo *sent, *cms;
	BIO *out = BIO_new(BIO_s_mem());
	char *plain = NULL;
	long len;
	int ok;

	load_key(f, uri);
	sent = encrypt_to(p11s_key_cert(f->key), kt);
	cms = reparse(sent, p11s_ctx_libctx(f->ctx));
	/* DESIGN.md pitfalls: always pass the certificate (MMA countermeasure otherwise). */
	ok = CMS_decrypt(cms, f->pkey, p11s_key_cert(f->key), NULL, out, CMS_BINARY);
	/*
	 * Success means the message came back. When the key transport fails, OpenSSL goes on
	 * with a random content key (RFC 3218 §2.3, against Bleichenbacher-style oracles); with
	 * CBC about one try in 256 then ends in valid padding and CMS_decrypt returns 1 with
	 * garbage, which is a failure here.
	 */
	if (ok == 1) {
		len = BIO_get_mem_data(out, &plain);
		ok = len == (long)sizeof(message) && memcmp(plain, message, sizeof(message)) == 0;
	}
	CMS_ContentInfo_free(cms);
	CMS_ContentInfo_free(sent);
	BIO_free(out);
	return ok;
}

static void test_bridge__decrypt_rsa_pkcs1(void **state)
{
	const p11s_mock_call *c;

	assert_int_equal(decrypt_with(*state, URI_RSA, KT_PKCS1), 1);
	c = p11s_mock__last(P11S_MOCK_OP_DECRYPT);
	assert_non_null(c);
	assert_int_equal(c->mech, P11S_MECH_RSA_PKCS);
	assert_int_equal(c->inlen, 256);
	assert_int_equal(c->outlen, 32); /* the AES-256 content key */
	assert_no_raw_rsa();
}

static void test_bridge__decrypt_rsa_oaep(void **state)
{
	const p11s_mock_call *c;

	assert_int_equal(decrypt_with(*state, URI_RSA, KT_OAEP), 1);
	c = p11s_mock__last(P11S_MOCK_OP_DECRYPT);
	assert_non_null(c);
	assert_int_equal(c->mech, P11S_MECH_RSA_PKCS_OAEP);
	assert_int_equal(c->hash, P11S_HASH_SHA256);
	assert_int_equal(c->mgf, P11S_MGF1_SHA256);
	assert_int_equal(c->label_len, 0);
	assert_no_raw_rsa();
}

static void test_bridge__decrypt_ecdh_p256(void **state)
{
	const p11s_mock_call *c;

	assert_int_equal(decrypt_with(*state, URI_EC256, KT_ECDH), 1);
	c = p11s_mock__last(P11S_MOCK_OP_DERIVE);
	assert_non_null(c);
	assert_int_equal(c->mech, P11S_MECH_ECDH1_DERIVE);
	assert_int_equal(c->inlen, 65);  /* 04||X||Y */
	assert_int_equal(c->outlen, 32); /* Z */
}

static void test_bridge__decrypt_ecdh_p384(void **state)
{
	assert_int_equal(decrypt_with(*state, URI_EC384, KT_ECDH), 1);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->inlen, 97);
}

/* Plain ECDH without a KDF gives Z, the same as the software computation. */
static void test_bridge__derive_plain(void **state)
{
	fixture *f = *state;
	EVP_PKEY *eph = NULL;
	EVP_PKEY_CTX *c = NULL, *s = NULL;
	unsigned char z1[64], z2[64];
	size_t z1len = sizeof(z1), z2len = sizeof(z2);
	OSSL_LIB_CTX *libctx;

	load_key(f, URI_EC256);
	libctx = p11s_ctx_libctx(f->ctx);
	eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(eph);
	c = EVP_PKEY_CTX_new_from_pkey(libctx, f->pkey, NULL);
	assert_non_null(c);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, eph), 1);
	assert_int_equal(EVP_PKEY_derive(c, z1, &z1len), 1);
	s = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
	assert_int_equal(EVP_PKEY_derive_init(s), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(s, X509_get0_pubkey(p11s_key_cert(f->key))), 1);
	assert_int_equal(EVP_PKEY_derive(s, z2, &z2len), 1);
	assert_int_equal(z1len, 32);
	assert_int_equal(z2len, 32);
	assert_memory_equal(z1, z2, 32);
	EVP_PKEY_CTX_free(s);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(eph);
}

/* The X25519 token key as the library hands it out (the contract src/cms relies on). */
static void test_bridge__x25519_key(void **state)
{
	fixture *f = *state;
	const unsigned char *der;
	unsigned char *own = NULL;
	size_t derlen = 0;
	int ownlen;
	OSSL_PARAM *params = NULL;

	load_key(f, URI_X25519);
	assert_true(EVP_PKEY_is_a(f->pkey, "X25519"));
	assert_false(EVP_PKEY_is_a(f->pkey, "EC"));
	assert_int_equal(p11s_key_get_type(f->key), P11S_KEY_XDH);
	assert_string_equal(p11s_key_curve(f->key), "X25519");
	assert_string_equal(p11s_key_label(f->key), "x25519");
	assert_int_equal(p11s_key_bits(f->key), 253);
	assert_int_equal(EVP_PKEY_get_bits(f->pkey), 253);
	assert_int_equal(EVP_PKEY_get_size(f->pkey), 32);
	/* The certificate is the mock's, and holds the token key's public key. */
	der = p11s_mock__cert_der("x25519", &derlen);
	assert_non_null(der);
	ownlen = i2d_X509(p11s_key_cert(f->key), &own);
	assert_int_equal((size_t)ownlen, derlen);
	assert_memory_equal(own, der, derlen);
	OPENSSL_free(own);
	assert_true(EVP_PKEY_is_a(X509_get0_pubkey(p11s_key_cert(f->key)), "X25519"));
	assert_int_equal(X509_check_private_key(p11s_key_cert(f->key), f->pkey), 1);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(p11s_key_cert(f->key)), f->pkey), 1);
	/* The public key leaves, the private half does not (the keymgmt trap). */
	assert_int_equal(EVP_PKEY_todata(f->pkey, EVP_PKEY_PUBLIC_KEY, &params), 1);
	assert_non_null(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY));
	assert_null(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY));
	OSSL_PARAM_free(params);
	params = NULL;
	assert_true(EVP_PKEY_todata(f->pkey, EVP_PKEY_KEYPAIR, &params) <= 0);
	/* Nothing but key agreement: no signature through it. */
	{
		OSSL_LIB_CTX *libctx = p11s_ctx_libctx(f->ctx);
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(libctx, f->pkey, NULL);

		assert_non_null(c);
		assert_true(EVP_PKEY_sign_init(c) <= 0);
		EVP_PKEY_CTX_free(c);
	}
	ERR_clear_error();
}

/* The peer as src/cms makes it: a default-provider key from the raw u-coordinate. */
static EVP_PKEY *x25519_peer(EVP_PKEY *eph)
{
	unsigned char pub[32];
	size_t publen = sizeof(pub);
	EVP_PKEY *peer;

	assert_int_equal(EVP_PKEY_get_raw_public_key(eph, pub, &publen), 1);
	assert_int_equal(publen, 32);
	peer = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, pub, 32);
	assert_non_null(peer);
	return peer;
}

/* EVP_PKEY_derive() with the token key; returns its result, the secret in z/zlen. */
static int x25519_derive(fixture *f, EVP_PKEY *peer, unsigned char *z, size_t *zlen)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(f->ctx), f->pkey, NULL);
	int ok;

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, peer), 1);
	ok = EVP_PKEY_derive(c, z, zlen);
	EVP_PKEY_CTX_free(c);
	return ok;
}

/*
 * X25519 on the token equals X25519 in software (RFC 7748 §6.1): the ephemeral private key
 * with the token key's public key from its certificate. One CKM_ECDH1_DERIVE with the 32-byte
 * u-coordinate; no KDF (the CMS one, RFC 8418 §2, is the caller's).
 */
static void test_bridge__derive_x25519(void **state)
{
	fixture *f = *state;
	EVP_PKEY *eph, *peer;
	EVP_PKEY_CTX *c, *s;
	unsigned char z1[64], z2[64], z3[64];
	size_t z1len = sizeof(z1), z2len = sizeof(z2), z3len = sizeof(z3), need = 0;
	const p11s_mock_call *call;

	load_key(f, URI_X25519);
	eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	assert_non_null(eph);
	peer = x25519_peer(eph);
	p11s_mock__clear_log();

	c = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(f->ctx), f->pkey, NULL);
	assert_non_null(c);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, peer), 1);
	/* The size without asking the token. */
	assert_int_equal(EVP_PKEY_derive(c, NULL, &need), 1);
	assert_int_equal(need, 32);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_DERIVE), 0);
	if (EVP_PKEY_derive(c, z1, &z1len) != 1) {
		dump_ossl("EVP_PKEY_derive");
		print_error("p11s: %s\n", p11s_error_last()->message);
		fail();
	}
	assert_int_equal(z1len, 32);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_DERIVE), 1);
	call = p11s_mock__last(P11S_MOCK_OP_DERIVE);
	assert_int_equal(call->mech, P11S_MECH_ECDH1_DERIVE);
	assert_int_equal(call->inlen, 32);
	assert_int_equal(call->outlen, 32);
	assert_string_equal(call->key, "x25519");
	/* A buffer shorter than K gets nothing (as OpenSSL's X25519), the token is not asked. */
	z3len = 31;
	assert_true(EVP_PKEY_derive(c, z3, &z3len) <= 0);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_DERIVE), 1);
	ERR_clear_error();
	EVP_PKEY_CTX_free(c);

	s = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL);
	assert_non_null(s);
	assert_int_equal(EVP_PKEY_derive_init(s), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(s, X509_get0_pubkey(p11s_key_cert(f->key))), 1);
	assert_int_equal(EVP_PKEY_derive(s, z2, &z2len), 1);
	assert_int_equal(z2len, 32);
	assert_memory_equal(z1, z2, 32);
	EVP_PKEY_CTX_free(s);

	/* The ephemeral key pair itself as the peer: only its public half is taken. */
	z3len = sizeof(z3);
	assert_int_equal(x25519_derive(f, eph, z3, &z3len), 1);
	assert_int_equal(z3len, 32);
	assert_memory_equal(z3, z2, 32);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_DERIVE), 2);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(eph);
}

/* A token removed mid-derive: the derive fails with the library's device-removed error. */
static void test_bridge__derive_x25519_device_removed(void **state)
{
	fixture *f = *state;
	EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), *peer;
	unsigned char z[32];
	size_t zlen = sizeof(z);

	assert_non_null(eph);
	load_key(f, URI_X25519);
	peer = x25519_peer(eph);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_DERIVE, 1, CKR_DEVICE_REMOVED), 0);
	assert_true(x25519_derive(f, peer, z, &zlen) <= 0);
	assert_int_equal(p11s_error_last()->code, P11S_ERR_DEVICE_REMOVED);
	assert_true(p11s_error_last()->has_ck_rv);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_DEVICE_REMOVED);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->rv, CKR_DEVICE_REMOVED);
	assert_string_equal(p11s_mock__last(P11S_MOCK_OP_DERIVE)->key, "x25519");
	/* OpenSSL's queue carries the story too. */
	assert_int_not_equal(ERR_peek_error(), 0);
	ERR_clear_error();
	/* The fault was one-shot: the next agreement works. */
	zlen = sizeof(z);
	assert_int_equal(x25519_derive(f, peer, z, &zlen), 1);
	assert_int_equal(zlen, 32);
	EVP_PKEY_free(peer);
	EVP_PKEY_free(eph);
}

/*
 * Refused before the token is asked: a peer of another type (P-256, X448), a KDF (there is
 * none in X25519: RFC 8418 §2 runs its own over K). A small-order peer (u = 0, RFC 7748 §6.1:
 * K all zero) gives no secret.
 */
static void test_bridge__derive_x25519_refused(void **state)
{
	fixture *f = *state;
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *x448 = EVP_PKEY_Q_keygen(NULL, NULL, "X448"), *zero;
	static const unsigned char u0[32] = { 0 };
	unsigned char z[64];
	size_t zlen = sizeof(z);
	OSSL_PARAM p[2];
	EVP_PKEY_CTX *c;

	assert_non_null(p256);
	assert_non_null(x448);
	load_key(f, URI_X25519);
	p11s_mock__clear_log();
	c = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(f->ctx), f->pkey, NULL);
	assert_non_null(c);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_true(EVP_PKEY_derive_set_peer(c, p256) <= 0);
	assert_true(EVP_PKEY_derive_set_peer(c, x448) <= 0);
	/* No peer was taken: nothing to derive from. */
	assert_true(EVP_PKEY_derive(c, z, &zlen) <= 0);
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, "X963KDF", 0);
	p[1] = OSSL_PARAM_construct_end();
	assert_true(EVP_PKEY_CTX_set_params(c, p) <= 0);
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, "", 0);
	assert_int_equal(EVP_PKEY_CTX_set_params(c, p), 1);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_DERIVE), 0);
	EVP_PKEY_CTX_free(c);

	zero = EVP_PKEY_new_raw_public_key_ex(NULL, "X25519", NULL, u0, sizeof(u0));
	assert_non_null(zero);
	zlen = sizeof(z);
	memset(z, 0xee, sizeof(z));
	assert_true(x25519_derive(f, zero, z, &zlen) <= 0);
	for (size_t i = 0; i < 32; i++) {
		assert_int_equal(z[i], 0xee);
	}
	ERR_clear_error();
	EVP_PKEY_free(zero);
	EVP_PKEY_free(x448);
	EVP_PKEY_free(p256);
}

/*
 * The X25519 and X448 keymgmts hold plain public keys too (peers, certificate keys: RFC 8410
 * §4): import, export, has and match against the default provider's key.
 */
static void test_bridge__xdh_keymgmt_public(void **state)
{
	static const struct {
		const char *name;
		size_t len;
	} curves[] = { { "X25519", 32 }, { "X448", 56 } };
	fixture *f = *state;
	OSSL_LIB_CTX *libctx = p11s_ctx_libctx(f->ctx);

	for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		EVP_PKEY *sw = EVP_PKEY_Q_keygen(NULL, NULL, curves[i].name), *ours = NULL, *other;
		OSSL_PARAM *pub = NULL, *back = NULL;
		EVP_PKEY_CTX *pc;
		unsigned char a[64], b[64];
		size_t alen = sizeof(a), blen = sizeof(b);

		assert_non_null(sw);
		assert_int_equal(EVP_PKEY_todata(sw, EVP_PKEY_PUBLIC_KEY, &pub), 1);
		pc = EVP_PKEY_CTX_new_from_name(libctx, curves[i].name, "provider=p11s");
		assert_non_null(pc);
		assert_int_equal(EVP_PKEY_fromdata_init(pc), 1);
		assert_int_equal(EVP_PKEY_fromdata(pc, &ours, EVP_PKEY_PUBLIC_KEY, pub), 1);
		assert_string_equal(OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(ours)), "p11s");
		assert_true(EVP_PKEY_is_a(ours, curves[i].name));
		assert_int_equal(EVP_PKEY_get_size(ours), (int)curves[i].len);
		assert_int_equal(EVP_PKEY_eq(ours, sw), 1);
		/* The public key comes back as it went in; there is no private half to ask for. */
		assert_int_equal(EVP_PKEY_todata(ours, EVP_PKEY_PUBLIC_KEY, &back), 1);
		assert_int_equal(EVP_PKEY_get_raw_public_key(sw, a, &alen), 1);
		assert_int_equal(EVP_PKEY_get_octet_string_param(ours, OSSL_PKEY_PARAM_PUB_KEY, b,
		                     sizeof(b), &blen),
		    1);
		assert_int_equal(alen, curves[i].len);
		assert_int_equal(blen, alen);
		assert_memory_equal(a, b, alen);
		assert_null(OSSL_PARAM_locate(back, OSSL_PKEY_PARAM_PRIV_KEY));
		OSSL_PARAM_free(back);
		/* Another key of the same type is another key; X25519 is not X448. */
		other = EVP_PKEY_Q_keygen(NULL, NULL, curves[i].name);
		assert_int_equal(EVP_PKEY_eq(ours, other), 0);
		EVP_PKEY_free(other);
		other = EVP_PKEY_Q_keygen(NULL, NULL, curves[1 - i].name);
		assert_true(EVP_PKEY_eq(ours, other) != 1);
		EVP_PKEY_free(other);
		EVP_PKEY_CTX_free(pc);
		OSSL_PARAM_free(pub);
		EVP_PKEY_free(ours);
		EVP_PKEY_free(sw);
	}
	ERR_clear_error();
}

/* A token that refuses OAEP with SHA-256 (SoftHSM 2.6.1): MECHANISM, naming it. */
static void test_bridge__decrypt_oaep_refused(void **state)
{
	const p11s_error *e;

	assert_int_equal(p11s_mock__set_refused_mech(P11S_MECH_RSA_PKCS_OAEP, P11S_HASH_SHA256), 0);
	assert_int_not_equal(decrypt_with(*state, URI_RSA, KT_OAEP), 1);
	e = p11s_error_last();
	assert_int_equal(e->code, P11S_ERR_MECHANISM);
	assert_true(e->has_ck_rv);
	assert_int_equal(e->ck_rv, CKR_MECHANISM_PARAM_INVALID);
	assert_non_null(strstr(e->message, "CKM_RSA_PKCS_OAEP"));
	assert_non_null(strstr(e->message, "SHA-256"));
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_DECRYPT)->rv, CKR_MECHANISM_PARAM_INVALID);
	ERR_clear_error();
}

static int sign_once(fixture *f, const char *uri)
{
	BIO *data = BIO_new_mem_buf(message, (int)sizeof(message));
	CMS_ContentInfo *cms;

	if (f->key == NULL) {
		load_key(f, uri);
	}
	cms = CMS_sign_ex(p11s_key_cert(f->key), f->pkey, NULL, data, CMS_BINARY | CMS_DETACHED,
	    p11s_ctx_libctx(f->ctx), NULL);
	BIO_free(data);
	CMS_ContentInfo_free(cms);
	return cms != NULL;
}

static void test_bridge__sign_device_removed(void **state)
{
	fixture *f = *state;

	load_key(f, URI_RSA);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SIGN, 1, CKR_DEVICE_REMOVED), 0);
	assert_false(sign_once(f, URI_RSA));
	assert_int_equal(p11s_error_last()->code, P11S_ERR_DEVICE_REMOVED);
	assert_int_equal(p11s_error_last()->ck_rv, CKR_DEVICE_REMOVED);
	/* OpenSSL's queue carries the story too. */
	assert_int_not_equal(ERR_peek_error(), 0);
	ERR_clear_error();
	/* The fault was one-shot: the next signature works. */
	assert_true(sign_once(f, URI_RSA));
}

/* A short signature from the token never leaves the bridge (verified before release). */
static void test_bridge__sign_short_signature(void **state)
{
	fixture *f = *state;

	load_key(f, URI_EC256);
	assert_int_equal(p11s_mock__inject_short(1, 3), 0);
	assert_false(sign_once(f, URI_EC256));
	assert_int_equal(p11s_error_last()->code, P11S_ERR_TOKEN);
	ERR_clear_error();
	p11s_key_free(f->key);
	EVP_PKEY_free(f->pkey);
	f->key = NULL;
	f->pkey = NULL;
	load_key(f, URI_RSA);
	assert_int_equal(p11s_mock__inject_short(1, 1), 0);
	assert_false(sign_once(f, URI_RSA));
	assert_int_equal(p11s_error_last()->code, P11S_ERR_TOKEN);
	ERR_clear_error();
}

static void test_bridge__pin_locked(void **state)
{
	fixture *f = *state;
	p11s_key *key = NULL;

	p11s_mock__set_token_flags(P11S_TOKEN_USER_PIN_LOCKED, 0);
	p11s_mock__clear_log();
	assert_int_equal(p11s_key_find(f->ctx, URI_RSA, &key), P11S_ERR_PIN_LOCKED);
	assert_null(key);
	assert_int_equal(p11s_error_last()->code, P11S_ERR_PIN_LOCKED);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 0);
}

/*
 * CKA_ALWAYS_AUTHENTICATE: a context-specific login inside every signature, with a fresh PIN
 * read from the source each time (an env: source is one-shot, so a file: source here).
 */
static void test_bridge__sign_always_authenticate(void **state)
{
	static const p11s_ctx_opts defaults = P11S_CTX_OPTS_INIT;
	fixture *f = *state;
	p11s_ctx_opts o = defaults;
	char path[] = "/tmp/p11s-test-pin-XXXXXX", spec[64];
	const p11s_mock_call *c;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "1234\n", 5), 5);
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", path);
	p11s_ctx_free(f->ctx);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = spec;
	o.batch = 1;
	assert_int_equal(p11s_ctx_new(&f->ctx, &o), P11S_OK);
	assert_int_equal(p11s_mock__set_always_authenticate("rsa2048", 1), 0);
	load_key(f, URI_RSA);
	assert_true(p11s_key_always_authenticate(f->key));
	p11s_mock__clear_log();
	if (!sign_once(f, URI_RSA)) {
		print_error("p11s: %s\n", p11s_error_last()->message);
		fail();
	}
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 1);
	c = p11s_mock__last(P11S_MOCK_OP_LOGIN);
	assert_non_null(c);
	assert_int_equal(c->user_type, P11S_USER_CONTEXT_SPECIFIC);
	assert_int_equal(c->pin_len, 4);
	assert_int_equal(c->rv, CKR_OK);
	/* Every signature asks again: never cached (DESIGN.md decision 8). */
	assert_true(sign_once(f, URI_RSA));
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 2);
	unlink(path);
}

/* The trap: the private half never leaves through keymgmt export; the public half does. */
static void test_bridge__export_private_refused(void **state)
{
	fixture *f = *state;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *c;
	EVP_PKEY *copy = NULL;

	load_key(f, URI_RSA);
	assert_true(EVP_PKEY_todata(f->pkey, EVP_PKEY_KEYPAIR, &params) <= 0);
	assert_null(params);
	assert_int_equal(EVP_PKEY_todata(f->pkey, EVP_PKEY_PUBLIC_KEY, &params), 1);
	assert_non_null(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_N));
	assert_null(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_D));
	OSSL_PARAM_free(params);
	/* A software provider cannot get the key to sign with. */
	c = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(f->ctx), f->pkey, "provider=default");
	assert_true(c == NULL || EVP_PKEY_sign_init(c) <= 0);
	EVP_PKEY_CTX_free(c);
	/* The key matches its certificate (what CMS_add1_signer checks). */
	assert_int_equal(X509_check_private_key(p11s_key_cert(f->key), f->pkey), 1);
	assert_int_equal(EVP_PKEY_get_bits(f->pkey), 2048);
	assert_int_equal(EVP_PKEY_get_size(f->pkey), 256);
	assert_true(EVP_PKEY_is_a(f->pkey, "RSA"));
	copy = EVP_PKEY_dup(f->pkey);
	assert_non_null(copy);
	assert_int_equal(EVP_PKEY_eq(copy, f->pkey), 1);
	EVP_PKEY_free(copy);
	ERR_clear_error();
}

/* The EC keymgmt answers what CMS and callers ask of a key (RFC 5480 names and sizes). */
static void test_bridge__keymgmt_params_ec(void **state)
{
	fixture *f = *state;
	char group[32], digest[32];
	unsigned char pt[100];
	size_t ptlen = 0;
	OSSL_PARAM *params = NULL;

	load_key(f, URI_EC384);
	assert_true(EVP_PKEY_is_a(f->pkey, "EC"));
	assert_int_equal(EVP_PKEY_get_id(f->pkey), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_bits(f->pkey), 384);
	assert_int_equal(EVP_PKEY_get_security_bits(f->pkey), 192);
	assert_true(EVP_PKEY_get_size(f->pkey) >= 102); /* DER ECDSA-Sig-Value, P-384 */
	assert_int_equal(EVP_PKEY_get_utf8_string_param(f->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                     sizeof(group), NULL),
	    1);
	assert_string_equal(group, "secp384r1");
	assert_true(EVP_PKEY_get_default_digest_name(f->pkey, digest, sizeof(digest)) > 0);
	assert_string_equal(digest, "SHA256");
	assert_int_equal(EVP_PKEY_get_octet_string_param(f->pkey,
	                     OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt), &ptlen),
	    1);
	assert_int_equal(ptlen, 97);
	assert_int_equal(pt[0], 0x04);
	/* Domain parameters and the public point may leave; the private half may not. */
	assert_int_equal(EVP_PKEY_todata(f->pkey, EVP_PKEY_PUBLIC_KEY, &params), 1);
	assert_null(OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY));
	OSSL_PARAM_free(params);
	params = NULL;
	assert_true(EVP_PKEY_todata(f->pkey, EVP_PKEY_KEYPAIR, &params) <= 0);
	assert_int_equal(X509_check_private_key(p11s_key_cert(f->key), f->pkey), 1);
	ERR_clear_error();
}

/* Raw RSA and X9.31 are not offered, whatever the caller asks for. */
static void test_bridge__no_raw_rsa(void **state)
{
	fixture *f = *state;
	EVP_PKEY_CTX *c;

	load_key(f, URI_RSA);
	c = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(f->ctx), f->pkey, NULL);
	assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) <= 0);
	assert_int_equal(EVP_PKEY_sign_init(c), 1);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) <= 0);
	EVP_PKEY_CTX_free(c);
	ERR_clear_error();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bridge__sign_rsa_pkcs1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_default_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_noattr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_rsa_pss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_rsa_pss_strings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_ecdsa_p256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_ecdsa_p384, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__signature_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__decrypt_rsa_pkcs1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__decrypt_rsa_oaep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__decrypt_ecdh_p256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__decrypt_ecdh_p384, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__derive_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__x25519_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__derive_x25519, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__derive_x25519_device_removed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bridge__derive_x25519_refused, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bridge__xdh_keymgmt_public, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__decrypt_oaep_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_device_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_short_signature, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__pin_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__sign_always_authenticate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__export_private_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__keymgmt_params_ec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bridge__no_raw_rsa, setup, teardown),
	};

	return cmocka_run_group_tests_name("bridge", tests, NULL, NULL);
}

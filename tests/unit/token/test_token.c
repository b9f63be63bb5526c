/*
 * Unit tests of src/token: RFC 7512 URIs, matching, formatting, CK_RV mapping, registry; the
 * keys of the mock token as p11s_key_list() makes them (types, curves, certificates), the
 * X25519 key (CKK_EC_MONTGOMERY) among them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11smime/p11smime.h>

#ifdef P11S_HAVE_MOCK
#include "pkcs11/mock.h"
#endif
#include "token/token_int.h"
#include "token/uri_int.h"

static p11s_slot make_slot(const char *label, const char *serial, unsigned long id)
{
	p11s_slot s;

	memset(&s, 0, sizeof(s));
	s.handle = id;
	s.info.slot_id = id;
	snprintf(s.info.slot_description, sizeof(s.info.slot_description), "SoftHSM slot ID 0x%lx",
	    id);
	snprintf(s.info.slot_manufacturer, sizeof(s.info.slot_manufacturer), "SoftHSM project");
	snprintf(s.info.label, sizeof(s.info.label), "%s", label);
	snprintf(s.info.manufacturer, sizeof(s.info.manufacturer), "SoftHSM project");
	snprintf(s.info.model, sizeof(s.info.model), "SoftHSM v2");
	snprintf(s.info.serial, sizeof(s.info.serial), "%s", serial);
	s.info.flags = P11S_TOKEN_PRESENT | P11S_TOKEN_LOGIN_REQUIRED;
	return s;
}

static p11s_object make_key(char *label, unsigned char *id, size_t idlen)
{
	p11s_object o;

	memset(&o, 0, sizeof(o));
	o.cls = P11S_OBJ_PRIVATE_KEY;
	o.label = label;
	o.id.data = id;
	o.id.len = idlen;
	o.key_type = P11S_KEY_RSA;
	return o;
}

static void test_token__uri_parse_errors(void **state)
{
	static const char *const bad[] = {
		"http://x",
		"pkcs11",
		"pkcs11:token=a%zz",
		"pkcs11:token=a?pin-value=1&pin-source=file:/x", /* RFC 7512 §2.4 */
		"pkcs11:token=a?module-path=lib/softhsm.so",     /* relative module-path */
		"pkcs11:type=secret",                            /* not an RFC 7512 type */
	};
	p11s_uri *u = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(p11s_uri_parse(&u, bad[i]), P11S_ERR_MALFORMED);
		assert_null(u);
	}
}

static void test_token__uri_parse(void **state)
{
	p11s_uri *u = NULL;

	(void)state;
	assert_int_equal(p11s_uri_parse(&u,
	                     "pkcs11:token=My%20Token;object=alice;type=private"
	                     "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin"),
	    P11S_OK);
	assert_string_equal(p11s_uri_module_path(u), "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(p11s_uri_pin_source(u), "file:/run/pin");
	assert_false(p11s_uri_has_pin_value(u));
	assert_false(p11s_uri_has_unknown_attribute(u));
	assert_false(p11s_uri__type_is_not_private(u));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:token=a?pin-value=1234"), P11S_OK);
	assert_true(p11s_uri_has_pin_value(u));
	assert_string_equal(p11s_uri__pin_value(u), "1234");
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:object=x;type=cert"), P11S_OK);
	assert_true(p11s_uri__type_is_not_private(u));
	p11s_uri_free(u);
}

static void test_token__uri_match(void **state)
{
	p11s_slot a = make_slot("alice", "1111", 7), b = make_slot("bob", "2222", 9);
	char lab[] = "sign";
	unsigned char id[] = { 0x01, 0xab };
	p11s_object k = make_key(lab, id, sizeof(id));
	p11s_uri *u = NULL;

	(void)state;
	/* §2.5: an absent attribute matches everything. */
	assert_int_equal(p11s_uri_parse(&u, "pkcs11:"), P11S_OK);
	assert_true(p11s_uri__match_slot(u, &a));
	assert_true(p11s_uri__match_object(u, &k));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:token=alice;id=%01%ab;type=private"), P11S_OK);
	assert_true(p11s_uri__match_slot(u, &a));
	assert_false(p11s_uri__match_slot(u, &b));
	assert_true(p11s_uri__match_object(u, &k));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:serial=2222"), P11S_OK);
	assert_false(p11s_uri__match_slot(u, &a));
	assert_true(p11s_uri__match_slot(u, &b));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:slot-id=9"), P11S_OK);
	assert_false(p11s_uri__match_slot(u, &a));
	assert_true(p11s_uri__match_slot(u, &b));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:object=other"), P11S_OK);
	assert_false(p11s_uri__match_object(u, &k));
	p11s_uri_free(u);

	assert_int_equal(p11s_uri_parse(&u, "pkcs11:type=cert"), P11S_OK);
	assert_false(p11s_uri__match_object(u, &k));
	p11s_uri_free(u);

	/* §2.5: an unknown path attribute matches nothing. */
	assert_int_equal(p11s_uri_parse(&u, "pkcs11:token=alice;x-vendor=1"), P11S_OK);
	assert_true(p11s_uri_has_unknown_attribute(u));
	assert_false(p11s_uri__match_slot(u, &a));
	assert_false(p11s_uri__match_object(u, &k));
	p11s_uri_free(u);
}

/* What `keys` prints must select the same key again (issue: `keys` URIs accepted unchanged). */
static void test_token__uri_roundtrip(void **state)
{
	p11s_slot a = make_slot("my token;/?", "1111", 7), b = make_slot("my token;/?", "3333", 8);
	char lab[] = "alice's key", other[] = "other";
	unsigned char id[] = { 0x00, 0xff, 0x2f };
	p11s_object k = make_key(lab, id, sizeof(id)), k2 = make_key(other, id, sizeof(id));
	p11s_uri *u = NULL;
	char *s = NULL;
	char tok[512];

	(void)state;
	assert_int_equal(p11s_uri__format_key(&a.info, &k, &s), P11S_OK);
	assert_non_null(strstr(s, "type=private"));
	assert_int_equal(p11s_uri_parse(&u, s), P11S_OK);
	assert_true(p11s_uri__match_slot(u, &a));
	assert_false(p11s_uri__match_slot(u, &b)); /* serial differs */
	assert_true(p11s_uri__match_object(u, &k));
	assert_false(p11s_uri__match_object(u, &k2));
	p11s_uri_free(u);
	free(s);

	assert_int_equal(p11s_uri__format_token(&a.info, tok, sizeof(tok)), P11S_OK);
	assert_int_equal(p11s_uri_parse(&u, tok), P11S_OK);
	assert_true(p11s_uri__match_slot(u, &a));
	p11s_uri_free(u);
}

static void test_token__registry(void **state)
{
	const char *const *names = p11s_backend_names();
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	p11s_ctx *ctx = NULL;
	int have_pkcs11 = 0;

	(void)state;
	for (size_t i = 0; names[i] != NULL; i++) {
		have_pkcs11 |= strcmp(names[i], "pkcs11") == 0;
		assert_non_null(p11s_token__backend(names[i]));
	}
	assert_true(have_pkcs11);
	assert_null(p11s_token__backend("nope"));
	o.backend = "nope";
	assert_int_equal(p11s_ctx_new(&ctx, &o), P11S_ERR_USAGE);
	assert_null(ctx);
	o.backend = "pkcs11";
	o.module = "/nonexistent/libnothing.so";
	assert_int_equal(p11s_ctx_new(&ctx, &o), P11S_ERR_MODULE);
	assert_null(ctx);
	assert_non_null(strstr(p11s_error_last()->message, "/nonexistent/libnothing.so"));
	o.module = NULL;
	o.pin_source = "bogus";
	assert_int_equal(p11s_ctx_new(&ctx, &o), P11S_ERR_PIN_SOURCE);
	o.version = 99;
	assert_int_equal(p11s_ctx_new(&ctx, &o), P11S_ERR_INVALID_ARG);
}

#ifdef P11S_HAVE_MOCK
#define PIN_ENV "P11S_TEST_TOKEN_MOCK_PIN"

/* A context on the mock token, logged in (an env: PIN source is read once, then unset). */
static p11s_ctx *mock_ctx(void)
{
	static const p11s_ctx_opts defaults = P11S_CTX_OPTS_INIT;
	p11s_ctx_opts o = defaults;
	p11s_ctx *ctx = NULL;

	setenv(PIN_ENV, "1234", 1);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = "env:" PIN_ENV;
	o.batch = 1;
	if (p11s_ctx_new(&ctx, &o) != P11S_OK) {
		print_error("p11s_ctx_new: %s\n", p11s_error_last()->message);
		fail();
	}
	return ctx;
}

static void free_keys(p11s_key **keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		p11s_key_free(keys[i]);
	}
	free(keys);
}

/* The four keys of the mock, in CKA_ID order, with their types, curves and certificates. */
static void test_token__mock_keys(void **state)
{
	static const struct {
		const char *label;
		p11s_key_type type;
		const char *curve;
		int bits;
	} want[] = {
		{ "rsa2048", P11S_KEY_RSA, NULL, 2048 },
		{ "ec256", P11S_KEY_EC, "P-256", 256 },
		{ "ec384", P11S_KEY_EC, "P-384", 384 },
		{ "x25519", P11S_KEY_XDH, "X25519", 253 },
	};
	p11s_ctx *ctx;
	p11s_key **keys = NULL;
	size_t n = 0, len = 0;
	const unsigned char *der;
	unsigned char *own = NULL;
	int ownlen;

	(void)state;
	p11s_mock__reset();
	ctx = mock_ctx();
	assert_int_equal(p11s_key_list(ctx, NULL, &keys, &n), P11S_OK);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(p11s_key_label(keys[i]), want[i].label);
		assert_int_equal(p11s_key_get_type(keys[i]), want[i].type);
		assert_int_equal(p11s_key_bits(keys[i]), want[i].bits);
		if (want[i].curve == NULL) {
			assert_null(p11s_key_curve(keys[i]));
		} else {
			assert_string_equal(p11s_key_curve(keys[i]), want[i].curve);
		}
		assert_non_null(p11s_key_cert(keys[i]));
	}
	/* The X25519 key: its URI finds it, its certificate is the mock's. */
	assert_non_null(strstr(p11s_key_uri(keys[3]), "object=x25519"));
	assert_non_null(strstr(p11s_key_uri(keys[3]), "id=%04"));
	der = p11s_mock__cert_der("x25519", &len);
	assert_non_null(der);
	ownlen = i2d_X509(p11s_key_cert(keys[3]), &own);
	assert_int_equal((size_t)ownlen, len);
	assert_memory_equal(own, der, len);
	OPENSSL_free(own);
	assert_true(EVP_PKEY_is_a(X509_get0_pubkey(p11s_key_cert(keys[3])), "X25519"));
	free_keys(keys, n);
	p11s_ctx_free(ctx);
	unsetenv(PIN_ENV);
}

/*
 * A certificate with the X25519 key's CKA_ID that holds another key (here ec256's) is not
 * taken as its certificate: nothing would show the mismatch before a key agreement failed.
 * The key keeps its own public key from CKA_EC_POINT and stays usable.
 */
static void test_token__xdh_foreign_cert(void **state)
{
	p11s_ctx *ctx;
	p11s_key *key = NULL;
	EVP_PKEY *pkey = NULL;
	size_t len = 0;
	const unsigned char *der;
	X509 *own;

	(void)state;
	p11s_mock__reset();
	assert_int_equal(p11s_mock__set_cert_of("x25519", "ec256"), 0);
	ctx = mock_ctx();
	assert_int_equal(p11s_key_find(ctx, "pkcs11:token=mock;object=x25519;type=private", &key),
	    P11S_OK);
	assert_int_equal(p11s_key_get_type(key), P11S_KEY_XDH);
	assert_null(p11s_key_cert(key));
	assert_string_equal(p11s_key_curve(key), "X25519");
	assert_int_equal(p11s_key_pkey(key, &pkey), P11S_OK);
	assert_true(EVP_PKEY_is_a(pkey, "X25519"));
	/* ... and it is the key the mock's own certificate holds. */
	der = p11s_mock__cert_der("x25519", &len);
	own = d2i_X509(NULL, &der, (long)len);
	assert_non_null(own);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(own), pkey), 1);
	X509_free(own);
	EVP_PKEY_free(pkey);
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	p11s_mock__reset();
	unsetenv(PIN_ENV);
}
#endif /* P11S_HAVE_MOCK */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token__uri_parse_errors),
		cmocka_unit_test(test_token__uri_parse),
		cmocka_unit_test(test_token__uri_match),
		cmocka_unit_test(test_token__uri_roundtrip),
		cmocka_unit_test(test_token__registry),
#ifdef P11S_HAVE_MOCK
		cmocka_unit_test(test_token__mock_keys),
		cmocka_unit_test(test_token__xdh_foreign_cert),
#endif
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

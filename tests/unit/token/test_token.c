/* Unit tests of src/token: RFC 7512 URIs, matching, formatting, CK_RV mapping, registry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11smime/p11smime.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token__uri_parse_errors),
		cmocka_unit_test(test_token__uri_parse),
		cmocka_unit_test(test_token__uri_match),
		cmocka_unit_test(test_token__uri_roundtrip),
		cmocka_unit_test(test_token__registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

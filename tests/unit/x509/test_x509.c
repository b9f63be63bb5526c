/* Unit tests of the RFC 8550 checks: address comparison and From/Sender binding, usages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "x509/x509_int.h"

/* A bare certificate with the given extensions (no signature needed for these checks). */
static X509 *cert_with(const char *dn_email, const char *san, const char *ku, const char *eku)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_get_subject_name(x);
	X509V3_CTX ctx;

	assert_non_null(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"T", -1, -1, 0);
	if (dn_email != NULL) {
		X509_NAME_add_entry_by_NID(n, NID_pkcs9_emailAddress, MBSTRING_ASC,
		    (const unsigned char *)dn_email, -1, -1, 0);
	}
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (san != NULL) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	if (ku != NULL) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, ku);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	if (eku != NULL) {
		X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, eku);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	return x;
}

static void test_x509__addr_equal(void **state)
{
	(void)state;
	assert_true(p11s_x509__addr_equal("alice@example.org", "alice@example.org"));
	assert_true(p11s_x509__addr_equal("Alice@EXAMPLE.org", "alice@example.ORG"));
	assert_false(p11s_x509__addr_equal("alice@example.org", "alice@example.org.evil"));
	assert_false(p11s_x509__addr_equal("alice@example.org", "alicex@example.org"));
	assert_false(p11s_x509__addr_equal("alice", "alice@example.org"));
	assert_false(p11s_x509__addr_equal("@example.org", "@example.org"));
	/* The last "@" splits (quoted local parts may hold one). */
	assert_true(p11s_x509__addr_equal("\"a@b\"@example.org", "\"A@B\"@Example.org"));
}

static p11s_x509_sender from1(char **v, size_t n)
{
	p11s_x509_sender s = { .n_from_fields = 1, .from = v, .n_from = n };
	return s;
}

static void test_x509__sender(void **state)
{
	X509 *san = cert_with(NULL, "email:alice@example.org", NULL, NULL);
	X509 *dn = cert_with("bob@example.org", NULL, NULL, NULL);
	X509 *none = cert_with(NULL, NULL, NULL, NULL);
	char *alice[] = { "ALICE@example.org" }, *mallory[] = { "mallory@example.org" };
	char *two[] = { "alice@example.org", "mallory@example.org" }, *bob[] = { "bob@Example.org" };
	p11s_reasons r = { 0 };
	p11s_x509_sender s;

	(void)state;
	s = from1(alice, 1);
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	assert_int_equal(r.n, 0);
	s = from1(bob, 1);
	assert_int_equal(p11s_x509__check_sender(dn, &s, &r), 0); /* pkcs-9 emailAddress */
	assert_int_equal(r.n, 0);
	s = from1(mallory, 1);
	assert_int_equal(p11s_x509__check_sender(none, &s, &r), 0); /* no addresses: no mismatch */
	assert_int_equal(r.n, 0);
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.v[0].code, "address-mismatch");
	p11s_reasons__clear(&r);
	/* Sender may carry the certificate's address when From does not (RFC 8550 §3). */
	s.sender = "alice@example.org";
	s.n_sender_fields = 1;
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	assert_int_equal(r.n, 0);
	/* Missing, repeated and multi-mailbox From fail when the cert has addresses. */
	s = from1(two, 2);
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	s = from1(alice, 1);
	s.n_from_fields = 2;
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	s.n_from_fields = 0;
	s.n_from = 0;
	assert_int_equal(p11s_x509__check_sender(san, &s, &r), 0);
	assert_int_equal(r.n, 3);
	p11s_reasons__clear(&r);
	X509_free(san);
	X509_free(dn);
	X509_free(none);
}

static void test_x509__usage(void **state)
{
	X509 *ok = cert_with(NULL, NULL, "critical,digitalSignature", "emailProtection");
	X509 *nr = cert_with(NULL, NULL, "nonRepudiation", NULL);
	X509 *any = cert_with(NULL, NULL, NULL, "anyExtendedKeyUsage");
	X509 *keyenc = cert_with(NULL, NULL, "keyEncipherment", NULL);
	X509 *server = cert_with(NULL, NULL, NULL, "serverAuth");
	p11s_reasons r = { 0 };

	(void)state;
	assert_int_equal(p11s_x509__check_signer_usage(ok, &r), 0);
	assert_int_equal(p11s_x509__check_signer_usage(nr, &r), 0);
	assert_int_equal(p11s_x509__check_signer_usage(any, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(p11s_x509__check_signer_usage(keyenc, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.v[0].code, "key-usage");
	assert_int_equal(p11s_x509__check_signer_usage(server, &r), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.v[1].code, "ext-key-usage");
	p11s_reasons__clear(&r);
	X509_free(ok);
	X509_free(nr);
	X509_free(any);
	X509_free(keyenc);
	X509_free(server);
}

static void test_x509__reason_codes(void **state)
{
	(void)state;
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_CERT_HAS_EXPIRED), "expired");
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_CERT_REVOKED), "revoked");
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_UNABLE_TO_GET_CRL), "crl-missing");
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
	    "untrusted");
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_NO_EXPLICIT_POLICY), "policy");
	assert_string_equal(p11s_x509__reason_code(X509_V_ERR_PERMITTED_VIOLATION), "name-constraints");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x509__addr_equal),
		cmocka_unit_test(test_x509__sender),
		cmocka_unit_test(test_x509__usage),
		cmocka_unit_test(test_x509__reason_codes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

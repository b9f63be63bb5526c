/*
 * Unit tests of the RFC 8550 checks (address comparison and From/Sender binding, usages) and
 * of DSA parameter inheritance (RFC 5280 §6.1.4 (f)) on the PKITS 4.1.5 certificates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/dsa.h>
#include <openssl/evp.h>
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

/* PKITS certificates (Debian's python3-cryptography-vectors; CI installs it). */
#define PKITS_CERTS "/usr/lib/python3/dist-packages/cryptography_vectors/x509/PKITS_data/certs/"

static X509 *pkits(const char *name)
{
	char path[512];
	X509 *x;
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", PKITS_CERTS, name);
	if ((f = fopen(path, "rb")) == NULL) {
		return NULL;
	}
	x = d2i_X509_fp(f, NULL);
	fclose(f);
	return x;
}

static int der_equal_file(X509 *x, const char *name)
{
	unsigned char *der = NULL, buf[8192];
	char path[512];
	size_t n;
	int len = i2d_X509(x, &der), eq;
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", PKITS_CERTS, name);
	assert_non_null(f = fopen(path, "rb"));
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	eq = len > 0 && (size_t)len == n && memcmp(der, buf, n) == 0;
	OPENSSL_free(der);
	return eq;
}

/* A certificate with `real`'s subject, SKI and CA extensions, with a key of other parameters. */
static X509 *impostor(X509 *real)
{
	EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL);
	EVP_PKEY *params = NULL, *key = NULL;
	X509 *x = X509_new();
	const int nids[] = { NID_subject_key_identifier, NID_basic_constraints, NID_key_usage };

	/* The PKITS keys are 1024-bit DSA; so is the impostor's. */
	assert_non_null(kctx);
	assert_int_equal(EVP_PKEY_paramgen_init(kctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_dsa_paramgen_bits(kctx, 1024), 1);
	assert_int_equal(EVP_PKEY_paramgen(kctx, &params), 1);
	EVP_PKEY_CTX_free(kctx);
	assert_non_null(kctx = EVP_PKEY_CTX_new(params, NULL));
	assert_int_equal(EVP_PKEY_keygen_init(kctx), 1);
	assert_int_equal(EVP_PKEY_keygen(kctx, &key), 1);
	EVP_PKEY_CTX_free(kctx);
	EVP_PKEY_free(params);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 99);
	X509_set_subject_name(x, X509_get_subject_name(real));
	X509_set_issuer_name(x, X509_get_subject_name(real));
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
		X509_add_ext(x, X509_get_ext(real, X509_get_ext_by_NID(real, nids[i], -1)), -1);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	EVP_PKEY_free(key);
	return x;
}

static void test_x509__dsa_inherit(void **state)
{
	const char *anchor = PKITS_CERTS "TrustAnchorRootCertificate.crt";
	p11s_x509_opts o = { .trust_files = &anchor, .n_trust_files = 1 };
	X509 *ee = pkits("ValidDSAParameterInheritanceTest5EE.crt");
	X509 *mid = pkits("DSAParametersInheritedCACert.crt"), *ca = pkits("DSACACert.crt");
	STACK_OF(X509) *certs = sk_X509_new_null(), *untrusted = sk_X509_new_null(), *chain = NULL;
	p11s_x509_store *s = NULL;
	p11s_reasons r = { 0 };

	(void)state;
	if (ee == NULL || mid == NULL || ca == NULL) {
		X509_free(ee);
		X509_free(mid);
		X509_free(ca);
		sk_X509_free(certs);
		sk_X509_free(untrusted);
		skip(); /* PKITS vectors not installed */
	}
	assert_int_equal(p11s_x509__store_new(&s, &o), 0);
	/* OpenSSL 3.0 alone: neither key decodes. */
	assert_null(X509_get0_pubkey(ee));
	assert_null(X509_get0_pubkey(mid));
	sk_X509_push(certs, ee);
	sk_X509_push(certs, mid);
	sk_X509_push(certs, ca);
	assert_int_equal(p11s_x509__dsa_inherit(certs, s), 0);
	/* Both inherit, two levels down; the encodings stay as received, signatures hold. */
	assert_non_null(X509_get0_pubkey(ee));
	assert_non_null(X509_get0_pubkey(mid));
	assert_true(der_equal_file(ee, "ValidDSAParameterInheritanceTest5EE.crt"));
	assert_true(der_equal_file(mid, "DSAParametersInheritedCACert.crt"));
	assert_int_equal(X509_verify(ee, X509_get0_pubkey(mid)), 1);
	assert_int_equal(X509_verify(mid, X509_get0_pubkey(ca)), 1);
	sk_X509_push(untrusted, mid);
	sk_X509_push(untrusted, ca);
	assert_int_equal(p11s_x509__validate(s, ee, untrusted, NULL, &r, &chain), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(sk_X509_num(chain), 4);
	assert_true(p11s_x509__dsa_path_ok(chain));
	sk_X509_pop_free(chain, X509_free);
	chain = NULL;
	sk_X509_pop_free(certs, X509_free);
	sk_X509_free(untrusted);

	/*
	 * An impostor with the issuer's name and SKI, seen first, lends other parameters (an
	 * attacker could pick g = y and so know the key): the path through the real issuer
	 * must then fail, whichever issuer OpenSSL picks.
	 */
	ee = pkits("ValidDSAParameterInheritanceTest5EE.crt");
	mid = pkits("DSAParametersInheritedCACert.crt");
	ca = pkits("DSACACert.crt");
	X509 *fake = impostor(mid);
	certs = sk_X509_new_null();
	untrusted = sk_X509_new_null();
	sk_X509_push(certs, ee);
	sk_X509_push(certs, fake);
	sk_X509_push(certs, mid);
	sk_X509_push(certs, ca);
	assert_int_equal(p11s_x509__dsa_inherit(certs, s), 0);
	assert_non_null(X509_get0_pubkey(ee));
	assert_int_equal(X509_verify(ee, X509_get0_pubkey(fake)), 0); /* not what signed it */
	sk_X509_push(untrusted, mid);
	sk_X509_push(untrusted, ca);
	assert_int_equal(p11s_x509__validate(s, ee, untrusted, NULL, &r, &chain), 0);
	assert_true(p11s_reasons__has(&r, "bad-signature"));
	assert_false(p11s_x509__dsa_path_ok(chain));
	p11s_reasons__clear(&r);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_free(untrusted);
	p11s_x509__store_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x509__addr_equal),
		cmocka_unit_test(test_x509__sender),
		cmocka_unit_test(test_x509__usage),
		cmocka_unit_test(test_x509__reason_codes),
		cmocka_unit_test(test_x509__dsa_inherit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

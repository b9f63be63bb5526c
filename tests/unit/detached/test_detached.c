/*
 * Unit tests of src/cms/detached.c (include/p11smime/detached.h) with the mock token: a detached
 * signature over raw bytes carries mail signing's attributes (signingTime, ESS
 * signingCertificateV2) and verifies through p11s_detached_to_opaque() +
 * p11s_verify_message(); altered content is content-altered; PEM labels, attached content,
 * garbage and wrong options are refused; a token failure yields no signature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/pem.h>

#include <p11smime/detached.h>
#include <p11smime/error.h>
#include <p11smime/token.h>
#include <p11smime/verify.h>

#include "pkcs11/mock.h"

#define PIN_ENV "P11S_TEST_DETACHED_PIN"
#define KEY_URI "pkcs11:token=mock;object=rsa2048;type=private"

static const char payload[] = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
                              "author A <a@example.org> 1700000000 +0000\n\nsigned\n";

typedef struct fixture {
	p11s_ctx *ctx;
	p11s_key *key;
	char trust[64]; /* the mock certificate as a PEM trust anchor */
} fixture;

static int setup(void **state)
{
	static const p11s_ctx_opts defaults = P11S_CTX_OPTS_INIT;
	p11s_ctx_opts o = defaults;
	fixture *f = calloc(1, sizeof(*f));
	FILE *t;
	int fd;

	if (f == NULL) {
		return -1;
	}
	p11s_mock__reset();
	setenv(PIN_ENV, "1234", 1);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = "env:" PIN_ENV;
	o.batch = 1;
	if (p11s_ctx_new(&f->ctx, &o) != P11S_OK || p11s_key_find(f->ctx, KEY_URI, &f->key) != 0) {
		print_error("setup: %s\n", p11s_error_last()->message);
		return -1;
	}
	snprintf(f->trust, sizeof(f->trust), "/tmp/p11s-detached-XXXXXX");
	if ((fd = mkstemp(f->trust)) < 0 || (t = fdopen(fd, "w")) == NULL) {
		return -1;
	}
	PEM_write_X509(t, p11s_key_cert(f->key));
	fclose(t);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	unlink(f->trust);
	p11s_key_free(f->key);
	p11s_ctx_free(f->ctx);
	free(f);
	unsetenv(PIN_ENV);
	return 0;
}

static p11s_buf *sign(fixture *f, const p11s_sign_opts *o, int want)
{
	FILE *in = fmemopen((void *)payload, sizeof(payload) - 1, "rb");
	p11s_buf *der = NULL;
	int rc;

	assert_non_null(in);
	rc = p11s_sign_detached(f->ctx, f->key, o, in, &der);
	if (rc != want) {
		print_error("p11s_sign_detached: %d %s\n", rc, p11s_error_last()->message);
	}
	assert_int_equal(rc, want);
	fclose(in);
	return der;
}

/* Convert and verify; returns the result (signer 0) or NULL when the conversion fails. */
static p11s_verify_result *check(fixture *f, const void *sig, size_t len, const char *content,
    int want_conv)
{
	const char *trust[] = { f->trust };
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *r = NULL;
	FILE *msg = tmpfile();

	assert_non_null(msg);
	assert_int_equal(p11s_detached_to_opaque(sig, len, (const unsigned char *)content,
	                     strlen(content), msg), want_conv);
	if (want_conv != P11S_OK) {
		fclose(msg);
		return NULL;
	}
	rewind(msg);
	o.trust_files = trust;
	o.n_trust_files = 1;
	o.no_sender_check = 1;
	assert_int_equal(p11s_verify_message(&r, msg, &o), P11S_OK);
	/* The result reads the message again only for p11s_verify_write_content(). */
	fclose(msg);
	assert_int_equal(r->n_signers, 1);
	return r;
}

static int has_reason(const p11s_verify_signer *s, const char *code)
{
	for (size_t i = 0; i < s->n_reasons; i++) {
		if (strcmp(s->reasons[i].code, code) == 0) {
			return 1;
		}
	}
	return 0;
}

static void test_detached__sign_verify(void **state)
{
	fixture *f = *state;
	p11s_buf *der = sign(f, NULL, P11S_OK);
	const unsigned char *p = der->data;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)der->len);
	p11s_verify_result *r;

	/* RFC 5652 §5.2: no eContent (detached, as gpgsm -b). */
	assert_non_null(cms);
	assert_int_equal(CMS_is_detached(cms), 1);
	CMS_ContentInfo_free(cms);
	r = check(f, der->data, der->len, payload, P11S_OK);
	assert_false(has_reason(&r->signers[0], "content-altered"));
	assert_false(has_reason(&r->signers[0], "bad-signature"));
	assert_false(has_reason(&r->signers[0], "untrusted"));
	/* Mail signing's attributes: signingTime and ESS signingCertificateV2 (RFC 5035). */
	assert_non_null(r->signers[0].signing_time);
	assert_int_equal(r->signers[0].signing_certificate, 2);
	assert_string_equal(r->signers[0].digest, "sha256");
	p11s_verify_result_free(r);

	/* One byte of the content changed. */
	r = check(f, der->data, der->len, "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4905\n",
	    P11S_OK);
	assert_false(r->signers[0].valid);
	assert_true(has_reason(&r->signers[0], "content-altered"));
	p11s_verify_result_free(r);
	p11s_buf_free(der);
}

static void test_detached__pem_labels(void **state)
{
	fixture *f = *state;
	p11s_buf *der = sign(f, NULL, P11S_OK);
	const char *labels[] = { "SIGNED MESSAGE", "CMS", "PKCS7", "CERTIFICATE" };

	for (size_t i = 0; i < 4; i++) {
		BIO *b = BIO_new(BIO_s_mem());
		char *pem;
		long n;
		p11s_verify_result *r;

		assert_true(PEM_write_bio(b, labels[i], "", der->data, (long)der->len) > 0);
		n = BIO_get_mem_data(b, &pem);
		r = check(f, pem, (size_t)n, payload, i < 3 ? P11S_OK : P11S_ERR_MALFORMED);
		if (r != NULL) {
			assert_false(has_reason(&r->signers[0], "content-altered"));
			p11s_verify_result_free(r);
		}
		BIO_free(b);
	}
	p11s_buf_free(der);
}

static void test_detached__refused(void **state)
{
	fixture *f = *state;
	p11s_sign_opts o = P11S_SIGN_OPTS_INIT;
	BIO *in;
	CMS_ContentInfo *att;
	EVP_PKEY *pkey = NULL;
	unsigned char *enc = NULL;
	int len;
	static const unsigned char garbage[] = "\x30\x03\x02\x01";

	/* Options of mail signing that mean nothing for a detached signature. */
	o.opaque = 1;
	assert_null(sign(f, &o, P11S_ERR_USAGE));
	o.opaque = 0;
	o.audit_log = "/nonexistent/audit";
	assert_null(sign(f, &o, P11S_ERR_USAGE));

	/* An attached SignedData: its own eContent could differ from what git checks. */
	assert_int_equal(p11s_key_pkey(f->key, &pkey), P11S_OK);
	in = BIO_new_mem_buf(payload, (int)sizeof(payload) - 1);
	att = CMS_sign_ex(p11s_key_cert(f->key), pkey, NULL, in, CMS_BINARY,
	    p11s_ctx_libctx(f->ctx), NULL);
	assert_non_null(att);
	len = i2d_CMS_ContentInfo(att, &enc);
	assert_true(len > 0);
	assert_null(check(f, enc, (size_t)len, payload, P11S_ERR_MALFORMED));
	OPENSSL_free(enc);
	CMS_ContentInfo_free(att);
	BIO_free(in);
	EVP_PKEY_free(pkey);

	/* Not CMS, truncated DER, empty input. */
	assert_null(check(f, garbage, sizeof(garbage) - 1, payload, P11S_ERR_MALFORMED));
	assert_null(check(f, "", 0, payload, P11S_ERR_MALFORMED));
	{
		static const char bad_pem[] = "-----BEGIN SIGNED MESSAGE-----\nAAAA\n"
		                              "-----END SIGNED MESSAGE-----\n";

		assert_null(check(f, bad_pem, sizeof(bad_pem) - 1, payload, P11S_ERR_MALFORMED));
	}
}

static void test_detached__token_failure(void **state)
{
	fixture *f = *state;

	/* CKR_DEVICE_ERROR (0x30) on the signature (the device is gone): no signature at all. */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SIGN, 1, 0x30), 0);
	assert_null(sign(f, NULL, P11S_ERR_DEVICE_REMOVED));
	assert_int_equal(p11s_error_class(p11s_error_last()->code), P11S_ECLASS_TOKEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_detached__sign_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detached__pem_labels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detached__refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detached__token_failure, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

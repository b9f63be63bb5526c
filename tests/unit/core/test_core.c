/* Unit tests of src/core: error classes, secrets, PIN sources, configuration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include <p11smime/p11smime.h>

#include "core/error_int.h"
#include "core/pin_int.h"

static void test_core__error_classes(void **state)
{
	(void)state;
	assert_int_equal(p11s_error_class(P11S_OK), P11S_ECLASS_NONE);
	assert_int_equal(p11s_error_class(P11S_ERR_VERIFY), P11S_ECLASS_VERIFY);
	assert_int_equal(p11s_error_class(P11S_ERR_DECRYPT), P11S_ECLASS_VERIFY);
	assert_int_equal(p11s_error_class(P11S_ERR_USAGE), P11S_ECLASS_USAGE);
	assert_int_equal(p11s_error_class(P11S_ERR_MALFORMED), P11S_ECLASS_USAGE);
	assert_int_equal(p11s_error_class(P11S_ERR_AMBIGUOUS), P11S_ECLASS_USAGE);
	assert_int_equal(p11s_error_class(P11S_ERR_PIN_INCORRECT), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_class(P11S_ERR_PIN_LOCKED), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_class(P11S_ERR_NOT_FOUND), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_class(P11S_ERR_MODULE), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_class(P11S_ERR_MECHANISM), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_class(P11S_ERR_IO), P11S_ECLASS_SYSTEM);
	/* A code nobody defined is a system failure, never success. */
	assert_int_equal(p11s_error_class(-999), P11S_ECLASS_SYSTEM);
	assert_string_equal(p11s_error_name(P11S_ERR_PIN_LOCKED), "PIN_LOCKED");
}

static void test_core__error_record(void **state)
{
	const p11s_error *e;

	(void)state;
	p11s_error_clear();
	assert_int_equal(p11s_error_last()->code, P11S_OK);
	assert_int_equal(p11s_error__ckr(P11S_ERR_PIN_INCORRECT, 0xA0, "wrong\nPIN %d", 1),
	    P11S_ERR_PIN_INCORRECT);
	e = p11s_error_last();
	assert_int_equal(e->code, P11S_ERR_PIN_INCORRECT);
	assert_true(e->has_ck_rv);
	assert_int_equal(e->ck_rv, 0xA0);
	/* One line, whatever the input held. */
	assert_string_equal(e->message, "wrong PIN 1");
	p11s_error__prefix("token '%s': ", "t");
	assert_string_equal(p11s_error_last()->message, "token 't': wrong PIN 1");
	assert_int_equal(p11s_error_last()->code, P11S_ERR_PIN_INCORRECT);

	ERR_raise_data(ERR_LIB_USER, 1, "first");
	p11s_error__ossl(P11S_ERR_CRYPTO, "openssl failed");
	assert_non_null(strstr(p11s_error_last()->openssl, "first"));
	assert_int_equal(ERR_peek_error(), 0); /* drained */
	assert_false(p11s_error_last()->has_ck_rv);
}

static void test_core__secret(void **state)
{
	p11s_secret *s = NULL;
	char big[P11S_SECRET_MAX + 2];

	(void)state;
	assert_int_equal(p11s_secret_new(&s), P11S_OK);
	assert_int_equal(p11s_secret_len(s), 0);
	assert_int_equal(p11s_secret_set(s, "1234", 4), P11S_OK);
	assert_string_equal(p11s_secret_data(s), "1234");
	p11s_secret_wipe(s);
	assert_int_equal(p11s_secret_len(s), 0);
	assert_int_equal(p11s_secret_data(s)[0], '\0');
	memset(big, 'x', sizeof(big));
	assert_int_equal(p11s_secret_set(s, big, sizeof(big)), P11S_ERR_INVALID_ARG);
	assert_int_equal(p11s_secret_len(s), 0);
	p11s_secret_free(s);
	p11s_secret_free(NULL);
}

static void expect_pin(p11s_pin_source *src, const char *want)
{
	p11s_secret *s = NULL;

	assert_int_equal(p11s_pin_source_read(src, "test", &s), P11S_OK);
	assert_string_equal(p11s_secret_data(s), want);
	p11s_secret_free(s);
}

static void test_core__pin_env(void **state)
{
	p11s_pin_source *src = NULL;
	p11s_secret *s = NULL;

	(void)state;
	setenv("P11S_TEST_ENV_PIN", "4321", 1);
	assert_int_equal(p11s_pin_source_parse(&src, "env:P11S_TEST_ENV_PIN"), P11S_OK);
	assert_string_equal(p11s_pin_source_describe(src), "env:P11S_TEST_ENV_PIN");
	expect_pin(src, "4321");
	/* Unset once read: no child process inherits it. */
	assert_null(getenv("P11S_TEST_ENV_PIN"));
	assert_int_equal(p11s_pin_source_read(src, "test", &s), P11S_ERR_PIN_SOURCE);
	assert_null(s);
	p11s_pin_source_free(src);

	assert_int_equal(p11s_pin_source_parse(&src, "env:P11S_TEST_UNSET_VAR"), P11S_OK);
	assert_int_equal(p11s_pin_source_read(src, "test", &s), P11S_ERR_PIN_SOURCE);
	p11s_pin_source_free(src);
}

static void test_core__pin_file(void **state)
{
	char path[] = "/tmp/p11s-pin-XXXXXX";
	char spec[64], uri[96];
	p11s_pin_source *src = NULL;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "9876\r\nsecond\n", 13), 13);
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", path);
	assert_int_equal(p11s_pin_source_parse(&src, spec), P11S_OK);
	expect_pin(src, "9876");
	expect_pin(src, "9876"); /* a file gives its first line every time */
	p11s_pin_source_free(src);
	/* RFC 7512 §2.4 forms: a file: URI and a bare absolute path. */
	snprintf(uri, sizeof(uri), "file://%s", path);
	assert_int_equal(p11s_pin_source_parse(&src, uri), P11S_OK);
	expect_pin(src, "9876");
	p11s_pin_source_free(src);
	assert_int_equal(p11s_pin_source_parse(&src, path), P11S_OK);
	expect_pin(src, "9876");
	p11s_pin_source_free(src);
	unlink(path);
	assert_int_equal(p11s_pin_source_parse(&src, spec), P11S_OK);
	{
		p11s_secret *s = NULL;

		assert_int_equal(p11s_pin_source_read(src, "test", &s), P11S_ERR_PIN_SOURCE);
		assert_non_null(strstr(p11s_error_last()->message, path));
	}
	p11s_pin_source_free(src);
}

static void test_core__pin_fd(void **state)
{
	int p[2];
	char spec[32];
	p11s_pin_source *src = NULL;
	p11s_secret *s = NULL;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "1111\n2222\n", 10), 10);
	close(p[1]);
	snprintf(spec, sizeof(spec), "fd:%d", p[0]);
	assert_int_equal(p11s_pin_source_parse(&src, spec), P11S_OK);
	/* One PIN per line: a context-specific login reads a fresh one. */
	expect_pin(src, "1111");
	expect_pin(src, "2222");
	assert_int_equal(p11s_pin_source_read(src, "test", &s), P11S_ERR_PIN_SOURCE);
	p11s_pin_source_free(src);
	close(p[0]);
}

static void test_core__pin_bad_specs(void **state)
{
	static const char *const bad[] = { "", "1234", "env:", "env:A=B", "fd:", "fd:x", "fd:-1",
		"file:", "file://host/x", "|/bin/echo", "pin-value:1234", "prompt:x" };
	p11s_pin_source *src = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(p11s_pin_source_parse(&src, bad[i]), P11S_ERR_PIN_SOURCE);
		assert_null(src);
		/* The message never repeats a bare PIN-looking argument as something else. */
		assert_int_equal(p11s_error_class(p11s_error_last()->code), P11S_ECLASS_USAGE);
	}
	assert_int_equal(p11s_pin_source_parse(&src, "prompt"), P11S_OK);
	assert_true(p11s_pin_source__is_prompt(src));
	p11s_pin_source_free(src);
	assert_int_equal(p11s_pin_source__literal(&src, "5555", 4), P11S_OK);
	expect_pin(src, "5555");
	assert_string_equal(p11s_pin_source_describe(src), "pin-value");
	p11s_pin_source_free(src);
}

static const char *const known[] = { ".module", ".backend", "milter.socket", "outbound.sign",
	NULL };

static void test_core__config(void **state)
{
	const char *text = "# comment\n"
	                   "module = /usr/lib/softhsm/libsofthsm2.so   # trailing comment\n"
	                   "backend=pkcs11\n"
	                   "\n"
	                   "[milter]\n"
	                   "socket = inet:8891@127.0.0.1\n"
	                   "[outbound]\n"
	                   "sign = alice@example.org pkcs11:token=gw;object=alice\n"
	                   "sign = bob@example.org pkcs11:token=gw;object=bob\n";
	p11s_config *c = NULL;

	(void)state;
	assert_int_equal(p11s_config_parse(&c, "t", text, strlen(text), known), P11S_OK);
	assert_string_equal(p11s_config_get(c, "", "module"), "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(p11s_config_get(c, "", "backend"), "pkcs11");
	assert_string_equal(p11s_config_get(c, "milter", "socket"), "inet:8891@127.0.0.1");
	/* A ';' inside a value (URIs!) is not a comment. */
	assert_string_equal(p11s_config_get_nth(c, "outbound", "sign", 0),
	    "alice@example.org pkcs11:token=gw;object=alice");
	assert_string_equal(p11s_config_get_nth(c, "outbound", "sign", 1),
	    "bob@example.org pkcs11:token=gw;object=bob");
	assert_null(p11s_config_get_nth(c, "outbound", "sign", 2));
	assert_null(p11s_config_get(c, "milter", "workers"));
	p11s_config_free(c);
}

static void test_core__config_errors(void **state)
{
	static const char *const bad[] = { "modul = x\n", "[milter\nsocket=x\n", "novalue\n",
		"[milter]\nworkers = 8\n", " = x\n", "[]\n" };
	p11s_config *c = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(p11s_config_parse(&c, "f", bad[i], strlen(bad[i]), known),
		    P11S_ERR_CONFIG);
		assert_null(c);
		/* The message names the file and line. */
		assert_non_null(strstr(p11s_error_last()->message, "f:"));
	}
	assert_int_equal(p11s_config_parse(&c, "f", "module = a\0b\n", 12, known), P11S_ERR_CONFIG);
	assert_int_equal(p11s_config_load(&c, "/nonexistent/p11smime.conf", known), P11S_ERR_IO);
}

static void test_core__buf(void **state)
{
	p11s_buf *b = NULL;

	(void)state;
	assert_int_equal(p11s_buf_new(&b, 16), P11S_OK);
	assert_int_equal(b->len, 16);
	for (size_t i = 0; i < b->len; i++) {
		assert_int_equal(b->data[i], 0);
	}
	p11s_buf_free(b);
	assert_int_equal(p11s_buf_new(&b, 0), P11S_OK);
	p11s_buf_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_core__error_classes),
		cmocka_unit_test(test_core__error_record),
		cmocka_unit_test(test_core__secret),
		cmocka_unit_test(test_core__pin_env),
		cmocka_unit_test(test_core__pin_file),
		cmocka_unit_test(test_core__pin_fd),
		cmocka_unit_test(test_core__pin_bad_specs),
		cmocka_unit_test(test_core__config),
		cmocka_unit_test(test_core__config_errors),
		cmocka_unit_test(test_core__buf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Issue 5 item 6 on SoftHSMv2, for one backend (argv[1]): after fork(), a child re-initialises
 * the module before its first token call (PKCS#11 v2.40 §5.5.1) and signs with a key found by
 * the parent; the parent keeps working afterwards. Through the library's own entry points.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11smime/p11smime.h>

#include "token/token_int.h"

static const char *backend;
static char pin_spec[600];

static const unsigned char digest[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const p11s_mech ecdsa = { P11S_MECH_ECDSA, 0, 0, 0, NULL, 0 };

static int sign_ec(p11s_key *key)
{
	p11s_buf *sig = NULL;
	int rc = p11s_token__sign(key, &ecdsa, digest, sizeof(digest), &sig);

	if (rc == P11S_OK && (sig == NULL || sig->len != 64)) {
		rc = P11S_ERR_GENERIC;
	}
	p11s_buf_free(sig);
	return rc;
}

static void test_fork_child_reinitialises(void **state)
{
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	char uri[256];
	int status = -1;
	pid_t pid;

	(void)state;
	o.backend = backend;
	o.module = getenv("P11S_TEST_MODULE");
	o.pin_source = pin_spec;
	o.batch = 1;
	assert_int_equal(p11s_ctx_new(&ctx, &o), P11S_OK);
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ec256;type=private",
	    getenv("P11S_TEST_TOKEN"));
	if (p11s_key_find(ctx, uri, &key) != P11S_OK) {
		fail_msg("p11s_key_find: %s", p11s_error_last()->message);
	}
	assert_int_equal(sign_ec(key), P11S_OK);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child: its first token call must re-initialise, then log in and sign. */
		int rc = sign_ec(key);

		if (rc != P11S_OK) {
			fprintf(stderr, "child: %s\n", p11s_error_last()->message);
		}
		_exit(rc == P11S_OK ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent's sessions and login are untouched by the child. */
	if (sign_ec(key) != P11S_OK) {
		fail_msg("parent after fork: %s", p11s_error_last()->message);
	}
	p11s_key_free(key);
	p11s_ctx_free(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_child_reinitialises),
	};

	if (argc != 2 || getenv("P11S_TEST_PIN_FILE") == NULL || getenv("P11S_TEST_TOKEN") == NULL ||
	    getenv("P11S_TEST_MODULE") == NULL) {
		fprintf(stderr, "usage: %s BACKEND (with the test token's environment)\n", argv[0]);
		return 2;
	}
	backend = argv[1];
	snprintf(pin_spec, sizeof(pin_spec), "file:%s", getenv("P11S_TEST_PIN_FILE"));
	return cmocka_run_group_tests_name(backend, tests, NULL, NULL);
}

/*
 * Issue 5 items 3-6 on the mock backend, through the library context and the token layer
 * (the path every command takes): the order of backend calls in the mock's log, how many PINs
 * were read from the PIN source, and what each failure is reported as.
 *
 * PINs come from an `fd:` source on a pipe: every read consumes one line, so the lines left in
 * the pipe tell exactly how often the PIN source was read.
 */
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

#include <p11smime/p11smime.h>

#include <p11-kit/pkcs11.h>

#include "pkcs11/mock.h"
#include "token/token_int.h"

/* DigestInfo of SHA-256 over 32 zero bytes' stand-in: the mock signs whatever it gets. */
static const unsigned char digest_info[51] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const p11s_mech rsa_pkcs = { P11S_MECH_RSA_PKCS, 0, 0, 0, NULL, 0 };

typedef struct fx {
	int pipe_r, pipe_w;
	p11s_ctx *ctx;
	p11s_key *key;
} fx;

/* A pipe pre-filled with `lines` PIN lines; the read end becomes the `fd:` PIN source. */
static void pins(fx *f, const char *const *lines, size_t n)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	for (size_t i = 0; i < n; i++) {
		assert_true(write(p[1], lines[i], strlen(lines[i])) == (ssize_t)strlen(lines[i]));
		assert_int_equal(write(p[1], "\n", 1), 1);
	}
	f->pipe_r = p[0];
	f->pipe_w = p[1];
}

/* How many PIN lines are still unread in the pipe. */
static size_t lines_left(fx *f)
{
	char buf[256];
	ssize_t got;
	size_t n = 0;

	close(f->pipe_w);
	f->pipe_w = -1;
	fcntl(f->pipe_r, F_SETFL, O_NONBLOCK);
	while ((got = read(f->pipe_r, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < got; i++) {
			n += buf[i] == '\n';
		}
	}
	return n;
}

static void open_ctx(fx *f, int batch)
{
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	char spec[32];

	snprintf(spec, sizeof(spec), "fd:%d", f->pipe_r);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = spec;
	o.batch = batch;
	if (p11s_ctx_new(&f->ctx, &o) != P11S_OK) {
		fail_msg("p11s_ctx_new: %s", p11s_error_last()->message);
	}
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	f->pipe_r = f->pipe_w = -1;
	p11s_mock__reset();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;

	p11s_key_free(f->key);
	p11s_ctx_free(f->ctx);
	if (f->pipe_r >= 0) {
		close(f->pipe_r);
	}
	if (f->pipe_w >= 0) {
		close(f->pipe_w);
	}
	free(f);
	p11s_mock__reset();
	return 0;
}

static int sign_once(fx *f)
{
	p11s_buf *sig = NULL;
	int rc = p11s_token__sign(f->key, &rsa_pkcs, digest_info, sizeof(digest_info), &sig);

	if (rc == P11S_OK) {
		assert_non_null(sig);
		assert_int_equal(sig->len, 256);
	} else {
		assert_null(sig);
	}
	p11s_buf_free(sig);
	return rc;
}

static void find_rsa(fx *f)
{
	if (p11s_key_find(f->ctx, "pkcs11:token=mock;object=rsa2048;type=private", &f->key) !=
	    P11S_OK) {
		fail_msg("p11s_key_find: %s", p11s_error_last()->message);
	}
}

/* Item 3: one C_Login(CKU_CONTEXT_SPECIFIC) per signature, fresh PIN each time, in --batch. */
static void test_context_login_every_signature_batch(void **state)
{
	static const char *const l[] = { "1234", "1234", "1234", "1234", "1234", "1234" };
	fx *f = *state;
	const p11s_mock_call *calls;
	size_t n, ctx_logins = 0;

	pins(f, l, 6);
	assert_int_equal(p11s_mock__set_always_authenticate("rsa2048", 1), 0);
	open_ctx(f, 1);
	find_rsa(f);
	assert_true(p11s_key_always_authenticate(f->key));
	p11s_mock__clear_log();
	for (int i = 0; i < 3; i++) {
		assert_int_equal(sign_once(f), P11S_OK);
	}
	n = p11s_mock__calls(&calls);
	for (size_t i = 0; i < n; i++) {
		if (calls[i].op != P11S_MOCK_OP_SIGN) {
			continue;
		}
		/* The mock logs C_Sign's entry, then the context login it does right after Init. */
		assert_true(i + 1 < n);
		assert_int_equal(calls[i + 1].op, P11S_MOCK_OP_LOGIN);
		assert_int_equal(calls[i + 1].user_type, P11S_USER_CONTEXT_SPECIFIC);
		assert_int_equal(calls[i + 1].pin_len, 4);
		assert_int_equal(calls[i + 1].rv, CKR_OK);
		ctx_logins++;
	}
	assert_int_equal(ctx_logins, 3);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_SIGN), 3);
	/* One normal login, then one fresh PIN per signature: 1 + 3 of 6 lines read. */
	assert_int_equal(lines_left(f), 2);
}

/* Item 3: a wrong context-specific PIN fails that signature, is not retried, no output. */
static void test_context_login_wrong_pin_not_retried(void **state)
{
	static const char *const l[] = { "1234", "9999", "1234" };
	fx *f = *state;

	pins(f, l, 3);
	assert_int_equal(p11s_mock__set_always_authenticate("rsa2048", 1), 0);
	open_ctx(f, 1);
	find_rsa(f);
	p11s_mock__clear_log();
	assert_int_equal(sign_once(f), P11S_ERR_PIN_INCORRECT);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 1);
	assert_int_equal(lines_left(f), 1);
}

/* Item 4: CKF_PROTECTED_AUTHENTICATION_PATH logs in with a NULL PIN; the source is not read. */
static void test_protected_auth_path(void **state)
{
	static const char *const l[] = { "1234" };
	fx *f = *state;
	const p11s_mock_call *c;

	pins(f, l, 1);
	p11s_mock__set_token_flags(P11S_TOKEN_PROTECTED_AUTH_PATH, 0);
	open_ctx(f, 0);
	find_rsa(f);
	c = p11s_mock__last(P11S_MOCK_OP_LOGIN);
	assert_non_null(c);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 1);
	assert_true(c->pin_null);
	assert_int_equal(c->user_type, P11S_USER_NORMAL);
	assert_int_equal(c->rv, CKR_OK);
	assert_int_equal(sign_once(f), P11S_OK);
	assert_int_equal(lines_left(f), 1);
}

static unsigned int token_flags(fx *f)
{
	p11s_token_info *t = NULL;
	size_t n = 0;
	unsigned int flags;

	assert_int_equal(p11s_token_list(f->ctx, &t, &n), P11S_OK);
	assert_int_equal(n, 1);
	flags = t[0].flags;
	free(t);
	return flags;
}

/* Item 5: the tries-left flags are visible before a login and reported after a failed one. */
static void test_pin_state_before_and_after(void **state)
{
	static const char *const l[] = { "0000", "1234" };
	fx *f = *state;

	pins(f, l, 2);
	p11s_mock__set_token_flags(P11S_TOKEN_USER_PIN_COUNT_LOW, 0);
	open_ctx(f, 0);
	assert_true(token_flags(f) & P11S_TOKEN_USER_PIN_COUNT_LOW);
	assert_false(token_flags(f) & P11S_TOKEN_USER_PIN_FINAL_TRY);
	/* A wrong PIN: the message reports the state after the failure, one try left. */
	assert_int_equal(p11s_key_find(f->ctx, "pkcs11:object=rsa2048;type=private", &f->key),
	    P11S_ERR_PIN_INCORRECT);
	assert_non_null(strstr(p11s_error_last()->message, "one try left"));
	assert_true(token_flags(f) & P11S_TOKEN_USER_PIN_FINAL_TRY);
	/* The right PIN clears the counters: the flags after a good login. */
	find_rsa(f);
	assert_false(token_flags(f) & (P11S_TOKEN_USER_PIN_COUNT_LOW |
	                                  P11S_TOKEN_USER_PIN_FINAL_TRY));
	assert_int_equal(lines_left(f), 0);
}

/* Item 5: a locked PIN is exit 3 with that reason and is never tried. */
static void test_locked_pin_never_tried(void **state)
{
	static const char *const l[] = { "1234" };
	fx *f = *state;

	pins(f, l, 1);
	p11s_mock__set_token_flags(P11S_TOKEN_USER_PIN_LOCKED, 0);
	open_ctx(f, 0);
	assert_true(token_flags(f) & P11S_TOKEN_USER_PIN_LOCKED);
	p11s_mock__clear_log();
	assert_int_equal(p11s_key_find(f->ctx, "pkcs11:object=rsa2048;type=private", &f->key),
	    P11S_ERR_PIN_LOCKED);
	assert_int_equal(p11s_error_class(p11s_error_last()->code), P11S_ECLASS_TOKEN);
	assert_non_null(strstr(p11s_error_last()->message, "locked"));
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 0);
	assert_int_equal(lines_left(f), 1);
}

/* Item 5: a wrong PIN is never retried automatically (one C_Login, one PIN read). */
static void test_wrong_pin_never_retried(void **state)
{
	static const char *const l[] = { "0000", "1234", "1234" };
	fx *f = *state;

	pins(f, l, 3);
	open_ctx(f, 1);
	p11s_mock__clear_log();
	assert_int_equal(p11s_key_find(f->ctx, "pkcs11:object=rsa2048;type=private", &f->key),
	    P11S_ERR_PIN_INCORRECT);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 1);
	assert_int_equal(p11s_mock__last(P11S_MOCK_OP_LOGIN)->rv, CKR_PIN_INCORRECT);
	assert_int_equal(lines_left(f), 2);
}

/*
 * Item 6: each way a token or session goes away mid-operation fails that operation cleanly;
 * once the token is back, the next operation enumerates again, logs in with a PIN read again
 * from the source, finds the key's handle again and signs.
 */
static void removal_case(void **state, unsigned long ckr, int expect)
{
	static const char *const l[] = { "1234", "1234", "1234" };
	fx *f = *state;
	const p11s_mock_call *calls;
	size_t n, i, slots_at = 0, login_at = 0, objects_at = 0, sign_at = 0;

	pins(f, l, 3);
	open_ctx(f, 1);
	find_rsa(f);
	assert_int_equal(sign_once(f), P11S_OK);
	/* Pulled out during C_Sign: the token reports it ... */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SIGN, 1, ckr), 0);
	assert_int_equal(sign_once(f), expect);
	/* ... and comes back without the login (removal ends it, v2.40 §5.6). */
	p11s_mock__set_present(0);
	p11s_mock__set_present(1);
	assert_int_equal(p11s_error_class(p11s_error_last()->code), P11S_ECLASS_TOKEN);
	assert_int_equal(p11s_error_last()->ck_rv, ckr);
	p11s_mock__clear_log();
	assert_int_equal(sign_once(f), P11S_OK);
	n = p11s_mock__calls(&calls);
	for (i = 0; i < n; i++) {
		if (calls[i].op == P11S_MOCK_OP_SLOTS && slots_at == 0) {
			slots_at = i + 1;
		} else if (calls[i].op == P11S_MOCK_OP_LOGIN && login_at == 0) {
			login_at = i + 1;
			assert_int_equal(calls[i].user_type, P11S_USER_NORMAL);
			assert_int_equal(calls[i].pin_len, 4);
		} else if (calls[i].op == P11S_MOCK_OP_OBJECTS && objects_at == 0) {
			objects_at = i + 1;
		} else if (calls[i].op == P11S_MOCK_OP_SIGN && sign_at == 0) {
			sign_at = i + 1;
		}
	}
	if (getenv("P11S_TEST_DEBUG") != NULL) {
		for (i = 0; i < n; i++) {
			fprintf(stderr, "call %zu: op %d rv %lu\n", i, (int)calls[i].op, calls[i].rv);
		}
	}
	assert_true(slots_at > 0 && slots_at < login_at);
	assert_true(login_at < objects_at);
	assert_true(objects_at < sign_at);
	/* Three PIN reads: the first login, and the one after the token came back. */
	assert_int_equal(lines_left(f), 1);
}

static void test_removed_device_removed(void **state)
{
	removal_case(state, CKR_DEVICE_REMOVED, P11S_ERR_DEVICE_REMOVED);
}

static void test_removed_token_not_present(void **state)
{
	removal_case(state, CKR_TOKEN_NOT_PRESENT, P11S_ERR_TOKEN_ABSENT);
}

static void test_removed_session_handle_invalid(void **state)
{
	removal_case(state, CKR_SESSION_HANDLE_INVALID, P11S_ERR_DEVICE_REMOVED);
}

static void test_removed_session_closed(void **state)
{
	removal_case(state, CKR_SESSION_CLOSED, P11S_ERR_DEVICE_REMOVED);
}

/* Item 6: while the token stays out, operations fail as absent and read no PIN. */
static void test_absent_until_back(void **state)
{
	static const char *const l[] = { "1234", "1234" };
	fx *f = *state;

	pins(f, l, 2);
	open_ctx(f, 1);
	find_rsa(f);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SIGN, 1, CKR_DEVICE_REMOVED), 0);
	assert_int_equal(sign_once(f), P11S_ERR_DEVICE_REMOVED);
	p11s_mock__set_present(0);
	p11s_mock__clear_log();
	assert_int_equal(sign_once(f), P11S_ERR_TOKEN_ABSENT);
	assert_int_equal(sign_once(f), P11S_ERR_TOKEN_ABSENT);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 0);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_SIGN), 0);
	p11s_mock__set_present(1);
	assert_int_equal(sign_once(f), P11S_OK);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_LOGIN), 1);
	assert_int_equal(lines_left(f), 0);
}

/* Recovery that fails half-way (listing the objects again) is retried by the next operation. */
static void test_key_gone_after_reinsert(void **state)
{
	static const char *const l[] = { "1234", "1234" };
	fx *f = *state;

	pins(f, l, 2);
	open_ctx(f, 1);
	find_rsa(f);
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_SIGN, 1, CKR_DEVICE_REMOVED), 0);
	assert_int_equal(sign_once(f), P11S_ERR_DEVICE_REMOVED);
	/* The object listing after re-login fails: the error is the listing's, not a stale sign. */
	assert_int_equal(p11s_mock__inject(P11S_MOCK_OP_OBJECTS, 1, CKR_DEVICE_ERROR), 0);
	p11s_mock__set_present(0);
	p11s_mock__set_present(1);
	assert_int_equal(sign_once(f), P11S_ERR_DEVICE_REMOVED);
	assert_int_equal(p11s_mock__count(P11S_MOCK_OP_SIGN), 1);
	assert_int_equal(sign_once(f), P11S_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_context_login_every_signature_batch, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_context_login_wrong_pin_not_retried, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_protected_auth_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pin_state_before_and_after, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked_pin_never_tried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_pin_never_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_device_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_token_not_present, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_session_handle_invalid, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_removed_session_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_until_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_gone_after_reinsert, setup, teardown),
	};

	return cmocka_run_group_tests_name("token_reality", tests, NULL, NULL);
}

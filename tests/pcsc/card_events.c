/*
 * Card events in a long-running process (issue 5 item 8), driven by tests/pcsc/wait.sh with a
 * real pcscd and a vpcd reader named like the mock token's slot ("p11smime mock slot"): the
 * context follows the reader (p11s_ctx_watch_readers()); when the card is pulled out, a
 * signature fails at once with P11S_ERR_TOKEN_ABSENT naming the reader and WITHOUT a call to
 * the module; when it is back, the next signature finds the token again and logs in with a PIN
 * read again from its source. The mock stands for the card's PKCS#11 token (SoftHSM is not on
 * a card): the test proves the event handling, not a token on the virtual card.
 *
 * Protocol on stdout/stdin: prints "ready-remove" and waits for a line (the card is out then),
 * prints "ready-insert" and waits for a line (the card is in again). Exit 0 when all held.
 * usage: test_card_events PIN_FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include <p11smime/p11smime.h>

#include "pkcs11/mock.h"

#define KEY_URI "pkcs11:token=mock;object=ec256;type=private"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", what);
	fflush(stdout);
	failures += !ok;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* One ECDSA signature of a fixed digest through the bridge; the library's code. */
static int sign_once(p11s_ctx *ctx, EVP_PKEY *pkey)
{
	unsigned char md[32], sig[128];
	size_t siglen = sizeof(sig);
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(p11s_ctx_libctx(ctx), pkey, NULL);
	int ok;

	memset(md, 0x5a, sizeof(md));
	p11s_error_clear();
	ok = pctx != NULL && EVP_PKEY_sign_init(pctx) > 0 &&
	    EVP_PKEY_sign(pctx, sig, &siglen, md, sizeof(md)) > 0;
	EVP_PKEY_CTX_free(pctx);
	if (ok) {
		return P11S_OK;
	}
	return p11s_error_last()->code != P11S_OK ? p11s_error_last()->code : P11S_ERR_CRYPTO;
}

static void wait_line(const char *prompt)
{
	char line[64];

	printf("%s\n", prompt);
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "card_events: no answer to %s\n", prompt);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	EVP_PKEY *pkey = NULL;
	char spec[512];
	size_t signs, logins;
	int rc = P11S_OK, tries;

	if (argc != 2) {
		fprintf(stderr, "usage: test_card_events PIN_FILE\n");
		return 2;
	}
	p11s_log_set_level(P11S_LOG_INFO);
	snprintf(spec, sizeof(spec), "file:%s", argv[1]);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = spec;
	o.batch = 1;
	if (p11s_ctx_new(&ctx, &o) < 0 || p11s_ctx_watch_readers(ctx) < 0 ||
	    p11s_key_find(ctx, KEY_URI, &key) < 0 || p11s_key_pkey(key, &pkey) < 0) {
		fprintf(stderr, "card_events: %s\n", p11s_error_last()->message);
		return 2;
	}
	check(sign_once(ctx, pkey) == P11S_OK, "signs with the card in");

	/* 1. The card is pulled out: the next signature fails at once, the module is not called. */
	wait_line("ready-remove");
	for (tries = 0; tries < 100; tries++) {
		signs = p11s_mock__count(P11S_MOCK_OP_SIGN);
		if ((rc = sign_once(ctx, pkey)) != P11S_OK) {
			break;
		}
		sleep_ms(100); /* the monitor has not seen the event yet */
	}
	check(rc == P11S_ERR_TOKEN_ABSENT, "after the removal a signature fails as token absent");
	check(strstr(p11s_error_last()->message, "card removed from reader 'p11smime mock slot") !=
	        NULL,
	    "  ... naming the reader");
	printf("#   %s\n", p11s_error_last()->message);
	check(p11s_mock__count(P11S_MOCK_OP_SIGN) == signs, "  ... without calling the module");
	check(sign_once(ctx, pkey) == P11S_ERR_TOKEN_ABSENT, "  ... and so does the next one");
	/* The token went with the card: its login is gone too (as a card's would be). */
	p11s_mock__set_present(0);

	/* 2. The card is back: the next signature finds the token again and logs in again. */
	wait_line("ready-insert");
	p11s_mock__set_present(1);
	logins = p11s_mock__count(P11S_MOCK_OP_LOGIN);
	for (tries = 0; tries < 150; tries++) {
		if ((rc = sign_once(ctx, pkey)) == P11S_OK) {
			break;
		}
		sleep_ms(100);
	}
	check(rc == P11S_OK, "after the insertion a signature succeeds again");
	check(p11s_mock__count(P11S_MOCK_OP_LOGIN) == logins + 1,
	    "  ... after one new login (PIN read again from its source)");
	check(sign_once(ctx, pkey) == P11S_OK && p11s_mock__count(P11S_MOCK_OP_LOGIN) == logins + 1,
	    "  ... and the next signature needs no further login");

	EVP_PKEY_free(pkey);
	p11s_key_free(key);
	p11s_ctx_free(ctx); /* stops the monitor thread */
	check(1, "the monitor stopped with the context");
	return failures ? 1 : 0;
}

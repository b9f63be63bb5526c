/*
 * A program built against the INSTALLED libp11smime-dev (tests/package/installed.sh compiles
 * it with `pkg-config --cflags --libs p11smime`, outside the source tree's include paths): it
 * includes the umbrella header, so every installed public header must compile on its own, and
 * signs a message on a token through the shared library, so the link line and the run-time
 * lookup of libp11smime.so.0 are those of any third-party program.
 * usage: consumer MODULE KEY-URI PIN-FILE IN OUT
 * stdout: "version V" and one "backend NAME" line per compiled-in backend, then "signed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11smime/p11smime.h>

static int fail(const char *what, int rc)
{
	const p11s_error *e = p11s_error_last();
	fprintf(stderr, "consumer: %s: %s (%s)\n", what, p11s_error_name(rc),
		e != NULL ? e->message : "");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: consumer MODULE KEY-URI PIN-FILE IN OUT\n");
		return 2;
	}
	printf("version %s\n", p11s_version());
	for (const char *const *b = p11s_backend_names(); *b != NULL; b++) {
		printf("backend %s\n", *b);
	}

	char pin_source[4096];
	snprintf(pin_source, sizeof(pin_source), "file:%s", argv[3]);
	p11s_ctx_opts opts = P11S_CTX_OPTS_INIT;
	opts.module = argv[1];
	opts.pin_source = pin_source;
	opts.batch = 1;
	p11s_ctx *ctx = NULL;
	int rc = p11s_ctx_new(&ctx, &opts);
	if (rc != P11S_OK) {
		return fail("p11s_ctx_new", rc);
	}
	p11s_key *key = NULL;
	rc = p11s_key_find(ctx, argv[2], &key);
	if (rc != P11S_OK) {
		p11s_ctx_free(ctx);
		return fail("p11s_key_find", rc);
	}
	FILE *in = fopen(argv[4], "rb");
	FILE *out = fopen(argv[5], "wb");
	if (in == NULL || out == NULL) {
		perror("consumer: fopen");
		return 1;
	}
	rc = p11s_sign_message(key, NULL, in, out);
	fclose(in);
	if (fclose(out) != 0 && rc == P11S_OK) {
		perror("consumer: fclose");
		rc = P11S_ERR_IO;
	}
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	if (rc != P11S_OK) {
		remove(argv[5]);
		return fail("p11s_sign_message", rc);
	}
	printf("signed\n");
	return 0;
}

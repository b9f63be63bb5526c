/*
 * Fuzz target: `decrypt` input up to and including the token (p11s_decrypt_message with the
 * mock backend): MIME, CMS EnvelopedData/AuthEnvelopedData parse, RecipientIdentifier matching
 * against the mock token's certificates (rsa2048, ec256, ec384, x25519), the private-key
 * operation on the mock, key unwrap, content decryption. The seeds are encrypted to the mock certificates,
 * whose issuer and serial are fixed; its keys are made afresh in every process, so a seed
 * matches a recipient and then fails uniformly ("decryption failed").
 */
#include <stdlib.h>
#include <unistd.h>

#include <openssl/pem.h>

#include <p11smime/p11smime.h>

#include "pkcs11/mock.h"

#include "fuzz.h"

static p11s_ctx *ctx;
static char pin_file[] = "/tmp/p11s-fuzz-pin.XXXXXX";

static void remove_pin_file(void)
{
	unlink(pin_file);
}

/* make-seeds.sh: P11S_FUZZ_MOCK_CERTS=DIR writes the mock's certificates as DIR/<label>.pem. */
static void dump_certs(const char *dir)
{
	static const char *const labels[] = { "rsa2048", "ec256", "ec384", "x25519" };

	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
		size_t len;
		const unsigned char *der = p11s_mock__cert_der(labels[i], &len);
		X509 *x = der ? d2i_X509(NULL, &der, (long)len) : NULL;
		char path[4096];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s.pem", dir, labels[i]);
		if (x == NULL || (f = fopen(path, "w")) == NULL) {
			abort();
		}
		PEM_write_X509(f, x);
		fclose(f);
		X509_free(x);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const p11s_ctx_opts init = P11S_CTX_OPTS_INIT;
	p11s_ctx_opts o = init;
	char spec[64];
	int fd;

	(void)argc;
	(void)argv;
	/* The mock's PIN ("1234"), from a file removed when the process ends. */
	if ((fd = mkstemp(pin_file)) < 0 || write(fd, "1234\n", 5) != 5) {
		abort();
	}
	close(fd);
	atexit(remove_pin_file);
	snprintf(spec, sizeof(spec), "file:%s", pin_file);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = spec;
	o.batch = 1;
	if (p11s_ctx_new(&ctx, &o) != P11S_OK) {
		fprintf(stderr, "fuzz_decrypt: p11s_ctx_new: %s\n", p11s_error_last()->message);
		abort();
	}
	/* Open the mock and log in once now, not inside the first input. */
	{
		p11s_key *k = NULL;

		if (p11s_key_find(ctx, "pkcs11:token=mock;object=rsa2048;type=private", &k) == P11S_OK) {
			p11s_key_free(k);
		}
	}
	if (getenv("P11S_FUZZ_MOCK_CERTS") != NULL) {
		dump_certs(getenv("P11S_FUZZ_MOCK_CERTS"));
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size);
	p11s_decrypt_info info;

	if (f == NULL) {
		return 0;
	}
	if (p11s_decrypt_message(ctx, NULL, f, p11s_fuzz_null(), NULL, &info) == P11S_OK) {
		/* possible only for a message encrypted to this process's mock keys */
	}
	fclose(f);
	return 0;
}

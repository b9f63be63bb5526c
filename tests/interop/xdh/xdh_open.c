/*
 * Test driver for the decryption of X25519/X448 recipients (RFC 8418; src/cms/kari_xdh_open.c)
 * by messages another implementation wrote (tests/interop/xdh/encrypt.py). Two modes:
 *
 *   xdh_open soft KEY.pem CERT.pem MESSAGE
 *       decrypts MESSAGE with a software key (the library's CMS path, no token);
 *   xdh_open mock [--fault device-removed] PLAINTEXT ENCRYPTOR [OPTIONS...]
 *       opens the mock token (SoftHSM 2.6.1 has no CKK_EC_MONTGOMERY keys), writes the
 *       certificate of its "x25519" key to a scratch file, runs
 *       `ENCRYPTOR OPTIONS... CERT PLAINTEXT MESSAGE` (ENCRYPTOR "-": p11s_encrypt_message()
 *       itself), then decrypts MESSAGE with p11s_decrypt_message() — key selection by
 *       RecipientIdentifier, Z by CKM_ECDH1_DERIVE on the token through the bridge — and
 *       checks the mock's log: exactly one derive, with a 32-octet peer key.
 *
 * The plaintext goes to stdout; a failure prints one line and exits 1 (2: usage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <p11smime/envelope.h>
#include <p11smime/p11smime.h>

#include "cms/envelope_int.h"
#include "mime/enveloped.h"
#include "pkcs11/mock.h"

#define CKR_DEVICE_REMOVED 0x32UL

static int fail(const char *what)
{
	const p11s_error *e = p11s_error_last();

	fprintf(stderr, "xdh_open: %s: %s\n", what, e->code != P11S_OK ? e->message : "failed");
	return 1;
}

static int copy_out(FILE *f)
{
	char buf[16384];
	size_t n;

	rewind(f);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (fwrite(buf, 1, n, stdout) != n) {
			return 1;
		}
	}
	return fflush(stdout) != 0;
}

static int soft(const char *keyf, const char *certf, const char *msgf)
{
	FILE *kf = fopen(keyf, "r"), *cf = fopen(certf, "r"), *in = fopen(msgf, "rb");
	FILE *ct = NULL, *plain = tmpfile(), *out = tmpfile();
	EVP_PKEY *pk = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
	X509 *cert = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
	CMS_ContentInfo *cms = NULL;
	p11s_mime_head h = { 0 };
	int nid, rc = 1;

	if (pk == NULL || cert == NULL || in == NULL || plain == NULL || out == NULL) {
		fprintf(stderr, "xdh_open: cannot read the key, the certificate or the message\n");
		goto out;
	}
	if (p11s_cms__read_enveloped_stream(NULL, in, &h, &cms, &ct, &nid) < 0) {
		rc = fail("read");
		goto out;
	}
	if (p11s_cms__decrypt_stream(cms, pk, cert, NULL, ct, plain) < 0) {
		rc = fail("decrypt");
		goto out;
	}
	if (p11s_mime__write_decrypted(out, &h, plain) < 0) {
		rc = fail("write");
		goto out;
	}
	rc = copy_out(out);
out:
	p11s_mime__head_clear(&h);
	CMS_ContentInfo_free(cms);
	EVP_PKEY_free(pk);
	X509_free(cert);
	{
		FILE *files[] = { kf, cf, in, ct, plain, out };

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			if (files[i] != NULL) {
				fclose(files[i]);
			}
		}
	}
	return rc;
}

/* Run ENCRYPTOR OPTIONS... CERT PLAINTEXT MESSAGE; 0 when it exits 0. */
static int run_encryptor(char **argv, int argc, const char *cert, const char *plain,
    const char *msg)
{
	char **av = calloc((size_t)argc + 5, sizeof(*av));
	int n = 0, st;
	pid_t pid;

	if (av == NULL) {
		return -1;
	}
	av[n++] = "/usr/bin/python3";
	for (int i = 0; i < argc; i++) {
		av[n++] = argv[i];
	}
	av[n++] = (char *)cert;
	av[n++] = (char *)plain;
	av[n++] = (char *)msg;
	av[n] = NULL;
	if ((pid = fork()) == 0) {
		execv(av[0], av);
		_exit(127);
	}
	free(av);
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0
	           ? 0
	           : -1;
}

static int self_encrypt(const char *certf, const char *plainf, const char *msgf, int x963)
{
	p11s_encrypt_opts o = P11S_ENCRYPT_OPTS_INIT;
	FILE *cf = fopen(certf, "r"), *in = fopen(plainf, "rb"), *out = fopen(msgf, "wb");
	X509 *cert = cf ? PEM_read_X509(cf, NULL, NULL, NULL) : NULL;
	int rc = -1;

	if (cert != NULL && in != NULL && out != NULL) {
		o.recipient_certs = &cert;
		o.n_recipient_certs = 1;
		o.xdh_kdf = x963 ? P11S_XDH_KDF_X963 : P11S_XDH_KDF_HKDF;
		rc = p11s_encrypt_message(in, out, &o);
	}
	X509_free(cert);
	if (cf != NULL) {
		fclose(cf);
	}
	if (in != NULL) {
		fclose(in);
	}
	if (out != NULL && fclose(out) != 0) {
		rc = -1;
	}
	return rc;
}

static int mock(int argc, char **argv)
{
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	char dir[] = "/tmp/xdh-open-XXXXXX", cert[64], msg[64], pin[64];
	const unsigned char *der;
	const p11s_mock_call *calls;
	size_t len, ncalls, derives = 0;
	p11s_decrypt_info info;
	p11s_ctx *ctx = NULL;
	FILE *f, *in = NULL, *out = NULL;
	X509 *x = NULL;
	int fault = 0, rc = 1;

	if (argc > 0 && strcmp(argv[0], "--fault") == 0) {
		if (argc < 2 || strcmp(argv[1], "device-removed") != 0) {
			return 2;
		}
		fault = 1;
		argc -= 2;
		argv += 2;
	}
	if (argc < 2 || mkdtemp(dir) == NULL) {
		return 2;
	}
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(msg, sizeof(msg), "%s/msg.eml", dir);
	snprintf(pin, sizeof(pin), "%s/pin", dir);
	if ((f = fopen(pin, "w")) == NULL || fputs("1234\n", f) < 0 || fclose(f) != 0) {
		goto out;
	}
	{
		static char spec[80];

		snprintf(spec, sizeof(spec), "file:%s", pin);
		o.backend = "mock";
		o.module = "mock";
		o.pin_source = spec;
	}
	if (p11s_ctx_new(&ctx, &o) < 0) {
		rc = fail("open the mock");
		goto out;
	}
	/* The mock's keys exist once it is open: its certificate for the encryptor. */
	if ((der = p11s_mock__cert_der("x25519", &len)) == NULL ||
	    (x = d2i_X509(NULL, &der, (long)len)) == NULL || (f = fopen(cert, "w")) == NULL) {
		fprintf(stderr, "xdh_open: the mock has no x25519 certificate\n");
		goto out;
	}
	PEM_write_X509(f, x);
	fclose(f);
	if (strcmp(argv[1], "-") == 0
	        ? self_encrypt(cert, argv[0], msg, argc > 2 && strcmp(argv[2], "x963") == 0) < 0
	        : run_encryptor(argv + 1, argc - 1, cert, argv[0], msg) < 0) {
		fprintf(stderr, "xdh_open: the encryptor failed\n");
		goto out;
	}
	if ((in = fopen(msg, "rb")) == NULL || (out = tmpfile()) == NULL) {
		goto out;
	}
	p11s_mock__clear_log();
	if (fault) {
		p11s_mock__inject(P11S_MOCK_OP_DERIVE, 1, CKR_DEVICE_REMOVED);
	}
	if (p11s_decrypt_message(ctx, NULL, in, out, NULL, &info) < 0) {
		rc = fail("decrypt");
		goto out;
	}
	ncalls = p11s_mock__calls(&calls);
	for (size_t i = 0; i < ncalls; i++) {
		if (calls[i].op == P11S_MOCK_OP_DERIVE) {
			derives++;
			if (calls[i].inlen != 32 || strcmp(calls[i].key, "x25519") != 0) {
				fprintf(stderr, "xdh_open: derive with %zu octets on %s\n", calls[i].inlen,
				    calls[i].key);
				goto out;
			}
		}
	}
	if (derives != 1) {
		fprintf(stderr, "xdh_open: %zu derives on the token, expected 1\n", derives);
		goto out;
	}
	fprintf(stderr, "xdh_open: decrypted on the mock token with %s (%s, %s)\n", info.key_uri,
	    info.key_management, info.cipher);
	rc = copy_out(out);
out:
	if (in != NULL) {
		fclose(in);
	}
	if (out != NULL) {
		fclose(out);
	}
	X509_free(x);
	p11s_ctx_free(ctx);
	unlink(cert);
	unlink(msg);
	unlink(pin);
	rmdir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "soft") == 0) {
		return soft(argv[2], argv[3], argv[4]);
	}
	if (argc >= 4 && strcmp(argv[1], "mock") == 0) {
		int rc = mock(argc - 2, argv + 2);

		if (rc != 2) {
			return rc;
		}
	}
	fprintf(stderr, "usage: xdh_open soft KEY.pem CERT.pem MESSAGE\n"
	                "       xdh_open mock [--fault device-removed] PLAINTEXT ENCRYPTOR|- "
	                "[OPTIONS...]\n");
	return 2;
}

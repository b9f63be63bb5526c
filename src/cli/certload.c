/* Certificates from files given on the command line (PEM with several, or one DER). */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"

/* Read every certificate in a PEM (several) or DER (one) file. Prints its own error. */
int cli_load_certs(const char *path, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	BIO *b = NULL;
	X509 *x;
	int status = EXIT_USAGE;

	*out = NULL;
	if (sk == NULL || (b = BIO_new_file(path, "rb")) == NULL) {
		fprintf(stderr, "p11smime: error: cannot open %s: %s\n", path, strerror(errno));
		goto out;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto out;
		}
	}
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		/* Not PEM: one DER certificate. */
		(void)BIO_reset(b);
		if ((x = d2i_X509_bio(b, NULL)) == NULL || !sk_X509_push(sk, x)) {
			X509_free(x);
			ERR_clear_error();
			fprintf(stderr, "p11smime: error: %s holds no certificate (PEM or DER)\n", path);
			goto out;
		}
	}
	*out = sk;
	sk = NULL;
	status = EXIT_OK;
out:
	BIO_free(b);
	sk_X509_pop_free(sk, X509_free);
	return status;
}

/* Exactly one certificate. */
int cli_load_cert(const char *path, X509 **out)
{
	STACK_OF(X509) *sk;
	int status;

	*out = NULL;
	if ((status = cli_load_certs(path, &sk)) != EXIT_OK) {
		return status;
	}
	if (sk_X509_num(sk) != 1) {
		fprintf(stderr, "p11smime: error: %s holds %d certificates; expected one\n", path,
		    sk_X509_num(sk));
		sk_X509_pop_free(sk, X509_free);
		return EXIT_USAGE;
	}
	*out = sk_X509_shift(sk);
	sk_X509_free(sk);
	return EXIT_OK;
}

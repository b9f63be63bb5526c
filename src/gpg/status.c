/*
 * p11smime-gpg: the status protocol (gnupg doc/DETAILS "Format of the --status-fd output")
 * and what its lines carry: fingerprints, escaped names, libgcrypt algorithm numbers.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11smime/error.h>

#include "gpg.h"

void gpg_status(const gpg_opts *o, const char *keyword, const char *fmt, ...)
{
	va_list ap;

	if (o->status == NULL) {
		return;
	}
	fprintf(o->status, "[GNUPG:] %s", keyword);
	if (fmt != NULL) {
		fputc(' ', o->status);
		va_start(ap, fmt);
		vfprintf(o->status, fmt, ap);
		va_end(ap);
	}
	fputc('\n', o->status);
	/* git reads the status lines as they come; nothing may sit in a buffer at exit. */
	fflush(o->status);
}

void gpg_info(const char *fmt, ...)
{
	va_list ap;

	fputs("p11smime-gpg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int gpg_fail(const char *what)
{
	const p11s_error *e = p11s_error_last();

	gpg_info("%s%s%s", what ? what : "", what ? ": " : "",
	    e->message[0] ? e->message : "failed");
	switch (p11s_error_class(e->code)) {
	case P11S_ECLASS_VERIFY:
		return GPG_EXIT_BAD;
	case P11S_ECLASS_TOKEN:
		return GPG_EXIT_TOKEN;
	default:
		return GPG_EXIT_USAGE;
	}
}

int gpg_cert_fpr(const X509 *cert, const char *md, char *hex)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const EVP_MD *m = strcmp(md, "sha1") == 0 ? EVP_sha1() : EVP_sha256();

	hex[0] = '\0';
	if (X509_digest(cert, m, d, &n) != 1) {
		return -1;
	}
	for (unsigned int i = 0; i < n; i++) {
		sprintf(hex + 2 * i, "%02X", d[i]);
	}
	return 0;
}

char *gpg_escape(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *p = out;

	if (out == NULL) {
		return NULL;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		/* DETAILS: a status line is one line; '%' and control characters are escaped. */
		if (c == '%' || c < 0x20 || c == 0x7f) {
			p += sprintf(p, "%%%02X", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p = '\0';
	return out;
}

int gpg_pk_algo(const X509 *cert)
{
	EVP_PKEY *k = X509_get0_pubkey(cert);

	/* libgcrypt: GCRY_PK_RSA = 1, GCRY_PK_ECC = 18 (what gpgsm reports for EC keys). */
	if (k != NULL && EVP_PKEY_is_a(k, "RSA")) {
		return 1;
	}
	if (k != NULL && (EVP_PKEY_is_a(k, "EC") || EVP_PKEY_is_a(k, "ED25519"))) {
		return 18;
	}
	return 0;
}

int gpg_md_algo(const char *name)
{
	/* libgcrypt (= RFC 4880 §9.4): SHA-256 8, SHA-384 9, SHA-512 10, SHA-1 2. */
	if (name == NULL) {
		return 0;
	}
	if (strcmp(name, "sha256") == 0 || strcmp(name, "SHA256") == 0) {
		return 8;
	}
	if (strcmp(name, "sha384") == 0 || strcmp(name, "SHA384") == 0) {
		return 9;
	}
	if (strcmp(name, "sha512") == 0 || strcmp(name, "SHA512") == 0) {
		return 10;
	}
	if (strcmp(name, "sha1") == 0 || strcmp(name, "SHA1") == 0) {
		return 2;
	}
	return 0;
}

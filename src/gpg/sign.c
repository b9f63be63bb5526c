/*
 * p11smime-gpg -bsau KEY: sign the payload on stdin with a token key and write the detached
 * CMS signature (PEM "SIGNED MESSAGE", as gpgsm writes it) on stdout, with gpgsm's status
 * lines (BEGIN_SIGNING, SIG_CREATED) on the status stream.
 *
 * KEY is git's user.signingkey: a pkcs11: URI (RFC 7512), an e-mail address of the
 * certificate (subject emailAddress or rfc822Name, RFC 8550 §3), its SHA-1 fingerprint (as
 * gpgsm shows it) or SHA-256 fingerprint, a gpgsm key id (the last 8 or 16 hex digits of the
 * SHA-1 fingerprint), or the key's CKA_ID in hex.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <p11smime/detached.h>
#include <p11smime/error.h>
#include <p11smime/token.h>

#include "gpg.h"

/* The context the configuration file describes (docs/tokens.md: module, backend, pin-source). */
static int open_ctx(const gpg_opts *o, p11s_ctx **ctx)
{
	p11s_ctx_opts co = P11S_CTX_OPTS_INIT;
	const char *more;

	co.backend = p11s_config_get(o->config, "", "backend");
	co.module = p11s_config_get_nth(o->config, "", "module", 0);
	co.pin_source = p11s_config_get(o->config, "", "pin-source");
	/* pin-source prompt reads the terminal (not stdin, which is the payload). */
	if (p11s_ctx_new(ctx, &co) < 0) {
		return -1;
	}
	for (size_t i = 1; (more = p11s_config_get_nth(o->config, "", "module", i)) != NULL; i++) {
		if (p11s_ctx_add_module(*ctx, more) < 0) {
			p11s_ctx_free(*ctx);
			*ctx = NULL;
			return -1;
		}
	}
	return 0;
}

/* Hex digits of `s` without "0x", ':' and spaces, upper-cased; 0 if anything else is in it. */
static size_t hex_of_spec(const char *s, char *out, size_t cap)
{
	size_t n = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
	}
	for (; *s; s++) {
		if (*s == ':' || *s == ' ') {
			continue;
		}
		if (!isxdigit((unsigned char)*s) || n + 1 >= cap) {
			return 0;
		}
		out[n++] = (char)toupper((unsigned char)*s);
	}
	out[n] = '\0';
	return n;
}

static int email_matches(X509 *cert, const char *addr, size_t len)
{
	STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(cert);
	int hit = 0;

	for (int i = 0; !hit && i < sk_OPENSSL_STRING_num(emails); i++) {
		const char *e = sk_OPENSSL_STRING_value(emails, i);

		hit = strlen(e) == len && strncasecmp(e, addr, len) == 0;
	}
	X509_email_free(emails);
	return hit;
}

/* Does the key (with certificate `cert`) match the user.signingkey `spec`? */
static int key_matches(p11s_key *key, X509 *cert, const char *spec)
{
	char hex[160], sha1[129], sha256[129], id[129];
	size_t n, idlen;
	const unsigned char *kid = p11s_key_id(key, &idlen);

	if (strchr(spec, '@') != NULL) {
		/* "Alice <alice@example.org>" or "<alice@example.org>": the part in brackets. */
		const char *lt = strrchr(spec, '<'), *gt = lt ? strchr(lt, '>') : NULL;

		return lt && gt ? email_matches(cert, lt + 1, (size_t)(gt - lt - 1))
		                : email_matches(cert, spec, strlen(spec));
	}
	if ((n = hex_of_spec(spec, hex, sizeof(hex))) == 0 || gpg_cert_fpr(cert, "sha1", sha1) < 0 ||
	    gpg_cert_fpr(cert, "sha256", sha256) < 0) {
		return 0;
	}
	if ((n == 40 && strcmp(hex, sha1) == 0) || (n == 64 && strcmp(hex, sha256) == 0) ||
	    ((n == 8 || n == 16) && strcmp(hex, sha1 + 40 - n) == 0)) {
		return 1;
	}
	if (idlen > 0 && 2 * idlen < sizeof(id)) {
		for (size_t i = 0; i < idlen; i++) {
			sprintf(id + 2 * i, "%02X", kid[i]);
		}
		return strcmp(hex, id) == 0;
	}
	return 0;
}

/* Exactly one token key for `spec`; its certificate must be on the token (same CKA_ID). */
static int find_key(p11s_ctx *ctx, const char *spec, p11s_key **out)
{
	p11s_key **keys = NULL, *hit = NULL;
	size_t n = 0, hits = 0;
	char names[600] = "";
	int rc;

	*out = NULL;
	if (strncmp(spec, "pkcs11:", 7) == 0) {
		return p11s_key_find(ctx, spec, out) < 0 ? gpg_fail("user.signingkey") : GPG_EXIT_OK;
	}
	if (p11s_key_list(ctx, NULL, &keys, &n) < 0) {
		return gpg_fail("listing the token keys");
	}
	for (size_t i = 0; i < n; i++) {
		X509 *cert = p11s_key_cert(keys[i]);

		if (cert != NULL && key_matches(keys[i], cert, spec)) {
			hits++;
			if (strlen(names) + strlen(p11s_key_uri(keys[i])) + 3 < sizeof(names)) {
				strcat(names, names[0] ? ", " : "");
				strcat(names, p11s_key_uri(keys[i]));
			}
			if (hit == NULL) {
				hit = keys[i];
				keys[i] = NULL;
			}
		}
		p11s_key_free(keys[i]);
	}
	free(keys);
	if (hits == 1) {
		*out = hit;
		return GPG_EXIT_OK;
	}
	p11s_key_free(hit);
	if (hits == 0) {
		gpg_info("no key with a certificate on the token matches user.signingkey '%s' "
		         "(an e-mail address, SHA-1 or SHA-256 fingerprint, key id or pkcs11: URI)",
		    spec);
		rc = GPG_EXIT_TOKEN;
	} else {
		gpg_info("user.signingkey '%s' matches %zu keys: %s; give a pkcs11: URI", spec, hits,
		    names);
		rc = GPG_EXIT_USAGE;
	}
	return rc;
}

/* The configuration's `certs` files (PEM, several certificates per file). */
static int load_chain(const gpg_opts *o, STACK_OF(X509) **out)
{
	const char *path;

	if ((*out = sk_X509_new_null()) == NULL) {
		gpg_info("out of memory");
		return GPG_EXIT_USAGE;
	}
	for (size_t i = 0; (path = p11s_config_get_nth(o->config, "", "certs", i)) != NULL; i++) {
		FILE *f = fopen(path, "r");
		X509 *x;
		int n = 0;

		if (f == NULL) {
			gpg_info("certs %s: %s", path, strerror(errno));
			return GPG_EXIT_USAGE;
		}
		while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
			if (!sk_X509_push(*out, x)) {
				X509_free(x);
				fclose(f);
				return GPG_EXIT_USAGE;
			}
			n++;
		}
		ERR_clear_error();
		fclose(f);
		if (n == 0) {
			gpg_info("certs %s: no PEM certificate in it", path);
			return GPG_EXIT_USAGE;
		}
	}
	return GPG_EXIT_OK;
}

/*
 * The one place where the token signs. Everything the signature needs comes from here: the
 * DER SignedData and the signer's certificate. Routing signing through `p11smime agent`
 * (PIN once per session) replaces the body of this function with the agent's sign request;
 * the caller and the status lines stay as they are.
 */
static int sign_payload(const gpg_opts *o, const char *spec, FILE *payload, p11s_buf **der,
    X509 **cert)
{
	p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	STACK_OF(X509) *chain = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int status;

	*der = NULL;
	*cert = NULL;
	if (open_ctx(o, &ctx) < 0) {
		return gpg_fail("opening the token");
	}
	if ((status = find_key(ctx, spec, &key)) != GPG_EXIT_OK) {
		goto out;
	}
	if (p11s_key_cert(key) == NULL) {
		gpg_info("%s has no certificate on the token", p11s_key_uri(key));
		status = GPG_EXIT_TOKEN;
		goto out;
	}
	/* Optional RFC 3161 signature time-stamp (docs/evidence.md): config key `tsa`. */
	so.tsa_url = p11s_config_get(o->config, "", "tsa");
	/* Intermediates from the configuration travel in the signature (RFC 5652 §5.1). */
	if ((status = load_chain(o, &chain)) != GPG_EXIT_OK) {
		goto out;
	}
	so.chain = chain;
	if (p11s_sign_detached(ctx, key, &so, payload, der) < 0) {
		status = gpg_fail("signing");
		goto out;
	}
	if ((*cert = X509_dup(p11s_key_cert(key))) == NULL) {
		status = GPG_EXIT_USAGE;
		gpg_info("out of memory");
	}
out:
	sk_X509_pop_free(chain, X509_free);
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	return status;
}

int gpg_cmd_sign(const gpg_opts *o, const char *spec)
{
	p11s_buf *der = NULL;
	X509 *cert = NULL;
	BIO *mem = NULL;
	char fpr[129], when[32];
	const char *pem;
	long pem_len;
	time_t now = time(NULL);
	struct tm tm;
	int status;

	/* DETAILS: BEGIN_SIGNING marks the start; git finds "\n[GNUPG:] SIG_CREATED " after it. */
	gpg_status(o, "BEGIN_SIGNING", "H%d", gpg_md_algo("sha256"));
	if ((status = sign_payload(o, spec, stdin, &der, &cert)) != GPG_EXIT_OK) {
		goto out;
	}
	if ((mem = BIO_new(BIO_s_mem())) == NULL) {
		status = GPG_EXIT_USAGE;
		goto out;
	}
	if (o->armor) {
		if (PEM_write_bio(mem, "SIGNED MESSAGE", "", der->data, (long)der->len) <= 0) {
			gpg_info("cannot encode the signature");
			status = GPG_EXIT_USAGE;
			goto out;
		}
	} else if (BIO_write(mem, der->data, (int)der->len) != (int)der->len) {
		status = GPG_EXIT_USAGE;
		goto out;
	}
	pem_len = BIO_get_mem_data(mem, (char **)&pem);
	/* Nothing reaches stdout before the signature exists and was checked. */
	if (fwrite(pem, 1, (size_t)pem_len, stdout) != (size_t)pem_len || fflush(stdout) != 0) {
		gpg_info("writing the signature failed");
		status = GPG_EXIT_USAGE;
		goto out;
	}
	/* gpgsm: "SIG_CREATED D <pk-algo> <md-algo> 00 <ISO time> <SHA-1 fingerprint>". */
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	gpg_cert_fpr(cert, "sha1", fpr);
	gpg_status(o, "SIG_CREATED", "D %d %d 00 %s %s", gpg_pk_algo(cert), gpg_md_algo("sha256"),
	    when, fpr);
out:
	BIO_free(mem);
	X509_free(cert);
	p11s_buf_free(der);
	return status;
}

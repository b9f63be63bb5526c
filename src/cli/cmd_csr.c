/*
 * `p11smime csr --key URI --subject DN --email ADDRESS [--usage sign|encrypt|both] --out FILE`:
 * a PKCS#10 request (RFC 2986) signed on the token through the bridge's EVP_PKEY, with the
 * extensions an S/MIME certificate needs (RFC 8550 §4.4): subjectAltName rfc822Name, keyUsage,
 * extKeyUsage emailProtection. docs/keys.md.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli.h"

static int add_ext(STACK_OF(X509_EXTENSION) *exts, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

	if (e == NULL || !sk_X509_EXTENSION_push(exts, e)) {
		X509_EXTENSION_free(e);
		return -1;
	}
	return 0;
}

/*
 * keyUsage for the requested use (RFC 8550 §4.4.2): signing is digitalSignature; encryption is
 * keyEncipherment for RSA (RFC 8551 §2.4.2) and keyAgreement for EC (RFC 5753 §7); EdDSA keys
 * sign only (RFC 8410 §5).
 */
static const char *key_usage(p11s_key_type t, const char *usage)
{
	int sign = strcmp(usage, "sign") == 0 || strcmp(usage, "both") == 0;
	int enc = strcmp(usage, "encrypt") == 0 || strcmp(usage, "both") == 0;

	if (!sign && !enc) {
		return NULL;
	}
	switch (t) {
	case P11S_KEY_RSA:
		return sign && enc ? "critical,digitalSignature,keyEncipherment"
		                   : sign ? "critical,digitalSignature" : "critical,keyEncipherment";
	case P11S_KEY_EC:
		return sign && enc ? "critical,digitalSignature,keyAgreement"
		                   : sign ? "critical,digitalSignature" : "critical,keyAgreement";
	case P11S_KEY_EDDSA:
		return enc ? NULL : "critical,digitalSignature";
	default:
		return NULL;
	}
}

static int build(p11s_ctx *ctx, p11s_key *key, const char *subject, const char *email,
    const char *ku, X509_REQ **out)
{
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_REQ *req = X509_REQ_new_ex(p11s_ctx_libctx(ctx), NULL);
	X509_NAME *name = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *mctx = NULL;
	char san[600];
	int ok = 0;

	if (exts == NULL || req == NULL) {
		goto out;
	}
	/* DN as `openssl req -subj` writes it: /CN=Alice/O=Example, UTF-8 values. */
	if ((name = X509_NAME_new()) == NULL) {
		goto out;
	}
	{
		char *dn = strdup(subject), *p = dn, *save = NULL;

		if (dn == NULL || dn[0] != '/') {
			free(dn);
			fprintf(stderr, "p11smime: error: csr: --subject wants /TYPE=value/..., as "
			                "openssl req -subj\n");
			ok = -2;
			goto out;
		}
		for (char *tok = strtok_r(p + 1, "/", &save); tok != NULL;
		     tok = strtok_r(NULL, "/", &save)) {
			char *eq = strchr(tok, '=');

			if (eq == NULL || eq == tok || eq[1] == '\0' ||
			    !X509_NAME_add_entry_by_txt(name, (*eq = '\0', tok), MBSTRING_UTF8,
			        (unsigned char *)eq + 1, -1, -1, 0)) {
				free(dn);
				fprintf(stderr, "p11smime: error: csr: bad --subject component '%s'\n", tok);
				ok = -2;
				goto out;
			}
		}
		free(dn);
	}
	if (strchr(email, '@') == NULL || strchr(email, ',') != NULL ||
	    strlen(email) > sizeof(san) - 7) {
		fprintf(stderr, "p11smime: error: csr: bad --email '%s'\n", email);
		ok = -2;
		goto out;
	}
	snprintf(san, sizeof(san), "email:%s", email);
	if (p11s_key_pkey(key, &pkey) < 0) {
		ok = -3;
		goto out;
	}
	if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_subject_name(req, name) ||
	    !X509_REQ_set_pubkey(req, pkey) || add_ext(exts, NID_subject_alt_name, san) < 0 ||
	    add_ext(exts, NID_key_usage, ku) < 0 ||
	    add_ext(exts, NID_ext_key_usage, "emailProtection") < 0 ||
	    !X509_REQ_add_extensions(req, exts)) {
		goto out;
	}
	/* SHA-256 for RSA and ECDSA; EdDSA signs the message itself (RFC 8410 §6: no digest). */
	if ((mctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit_ex(mctx, NULL,
	        p11s_key_get_type(key) == P11S_KEY_EDDSA ? NULL : "SHA256", p11s_ctx_libctx(ctx),
	        NULL, pkey, NULL) != 1 ||
	    X509_REQ_sign_ctx(req, mctx) <= 0) {
		ok = -3;
		goto out;
	}
	*out = req;
	req = NULL;
	ok = 1;
out:
	EVP_MD_CTX_free(mctx);
	EVP_PKEY_free(pkey);
	X509_NAME_free(name);
	X509_REQ_free(req);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return ok;
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "subject", required_argument, NULL, 's' },
		{ "email", required_argument, NULL, 'e' },
		{ "usage", required_argument, NULL, 'u' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_uri = NULL, *subject = NULL, *email = NULL, *usage = "sign", *path = NULL;
	const char *ku;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	X509_REQ *req = NULL;
	cli_output *o = NULL;
	int c, status, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_uri = optarg;
			break;
		case 's':
			subject = optarg;
			break;
		case 'e':
			email = optarg;
			break;
		case 'u':
			usage = optarg;
			break;
		case 'o':
			path = optarg;
			break;
		default:
			return cli_usage_error("csr: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("csr: unexpected argument '%s'", argv[optind]);
	}
	if (key_uri == NULL || subject == NULL || email == NULL || path == NULL) {
		return cli_usage_error("csr: --key, --subject, --email and --out are required");
	}
	if (strcmp(usage, "sign") != 0 && strcmp(usage, "encrypt") != 0 &&
	    strcmp(usage, "both") != 0) {
		return cli_usage_error("csr: --usage is sign, encrypt or both, not '%s'", usage);
	}
	if ((status = cli_open_key(g, key_uri, &ctx, &key)) != EXIT_OK) {
		goto out;
	}
	if (p11s_key_get_type(key) == P11S_KEY_XDH) {
		/*
		 * A PKCS#10 request is signed by its own key (RFC 2986 §3); an X25519/X448 key cannot
		 * sign (RFC 8410 §1), so its certificate comes from the CA another way.
		 */
		status = cli_usage_error("csr: an X25519/X448 key cannot sign a certificate request "
		                         "(RFC 8410); a CA certifies its public key directly, then "
		                         "import-cert");
		goto out;
	}
	if ((ku = key_usage(p11s_key_get_type(key), usage)) == NULL) {
		status = cli_usage_error("csr: a key of this type cannot be used to %s", usage);
		goto out;
	}
	rc = build(ctx, key, subject, email, ku, &req);
	if (rc == -2) {
		status = EXIT_USAGE;
		goto out;
	}
	if (rc <= 0) {
		unsigned long e = ERR_peek_last_error();

		fprintf(stderr, "p11smime: error: csr: signing the request failed%s%s\n",
		    e ? ": " : "", e ? ERR_reason_error_string(e) : "");
		status = rc == -3 ? EXIT_TOKEN : EXIT_USAGE;
		goto out;
	}
	if (cli_output_open(path, &o) < 0) {
		status = EXIT_USAGE;
		goto out;
	}
	if (!PEM_write_X509_REQ(cli_output_file(o), req)) {
		cli_output_abort(o);
		status = cli_usage_error("csr: cannot write %s", path);
		goto out;
	}
	status = cli_output_commit(o) < 0 ? EXIT_USAGE : EXIT_OK;
out:
	X509_REQ_free(req);
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	return status;
}

const cli_command cmd_csr = {
	"csr",
	"write a PKCS#10 certificate request signed by a token key",
	"csr --key URI --subject /CN=.../ --email ADDRESS [--usage sign|encrypt|both] --out FILE",
	run,
};

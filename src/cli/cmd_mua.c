/*
 * `p11smime mua OP ...`: the commands NeoMutt's and mutt's classic S/MIME backend runs
 * (contrib/neomutt/smime.rc, docs/mail-clients.md). Their contract is OpenSSL's `smime` tool
 * as NeoMutt's ncrypt/smime.c reads it:
 *   sign    %f = the MIME entity; stdout = DER detached SignedData; ANY stderr = failure.
 *   verify  %s = DER signature, %f = the content; good only with exit 0 AND first stderr line
 *           "Verification successful" (compared case-insensitively by NeoMutt).
 *   decrypt %f = the EnvelopedData (DER, or base64 as some versions hand it over); the
 *           passphrase + "\n" arrives on stdin; stdout = the plaintext MIME entity.
 * Input is always a file argument: stdin is reserved for the PIN (--pin-source fd:0).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h> /* before cms.h: it declares PEM_read_bio_CMS only then */
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli.h"

/* One-line error on stderr, as everywhere in the CLI. */
static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p11smime: mua: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

/*
 * NeoMutt builds %k as "$smime_keys/$smime_default_key". The key spec is whatever follows
 * "pkcs11:" (a URI), or else the last path component (an e-mail address).
 */
static const char *key_spec(const char *k)
{
	const char *u = strstr(k, "pkcs11:");
	const char *slash = strrchr(k, '/');

	if (u != NULL) {
		return u;
	}
	return slash ? slash + 1 : k;
}

/* The signing key: a pkcs11: URI, or the one key whose certificate carries address `spec`. */
static int find_key(cli_globals *g, const char *k, p11s_ctx **ctx, p11s_key **key)
{
	const char *spec = key_spec(k);
	p11s_key **keys = NULL;
	size_t n = 0, hits = 0;

	if (strncmp(spec, "pkcs11:", 7) == 0) {
		return cli_open_key(g, spec, ctx, key);
	}
	if (cli_open(g, NULL, ctx) < 0 || p11s_key_list(*ctx, NULL, &keys, &n) < 0) {
		return cli_fail();
	}
	for (size_t i = 0; i < n; i++) {
		X509 *c = p11s_key_cert(keys[i]);
		uint32_t ku;

		if (c == NULL || X509_check_email(c, spec, strlen(spec), 0) != 1) {
			continue;
		}
		/* RFC 8550 §4.4.2: a signing key's certificate allows digitalSignature. */
		ku = X509_get_key_usage(c);
		if ((X509_get_extension_flags(c) & EXFLAG_KUSAGE) && !(ku & KU_DIGITAL_SIGNATURE)) {
			continue;
		}
		if (hits++ == 0) {
			*key = keys[i];
			keys[i] = NULL;
		}
	}
	for (size_t i = 0; i < n; i++) {
		p11s_key_free(keys[i]);
	}
	free(keys);
	if (hits != 1) {
		p11s_key_free(*key);
		*key = NULL;
		if (hits) {
			return fail(EXIT_TOKEN, "several signing keys on the tokens have a certificate "
			                        "for %s; set smime_default_key to a pkcs11: URI", spec);
		}
		return fail(EXIT_TOKEN, "no signing key on the tokens has a certificate for %s", spec);
	}
	return EXIT_OK;
}

/* Read a CMS ContentInfo in DER, PEM, an S/MIME message or bare base64 (NeoMutt uses all). */
static CMS_ContentInfo *read_cms(const char *path)
{
	BIO *b = BIO_new_file(path, "rb");
	CMS_ContentInfo *cms = NULL;
	unsigned char first = 0;

	if (b == NULL || BIO_read(b, &first, 1) != 1 || BIO_reset(b) != 0) {
		BIO_free(b);
		return NULL;
	}
	if (first == 0x30) { /* DER: a SEQUENCE (X.690 §8.9) */
		cms = d2i_CMS_bio(b, NULL);
	} else if (first == '-') {
		cms = PEM_read_bio_CMS(b, NULL, NULL, NULL);
	} else if ((cms = SMIME_read_CMS(b, NULL)) == NULL && BIO_reset(b) == 0) {
		/* Not a MIME message (what get_signer_cert and pk7out get, as `openssl smime
		 * -in` reads it): bare base64 of the DER, as a body copied verbatim. */
		BIO *b64 = BIO_new(BIO_f_base64());

		if (b64 != NULL) {
			BIO_push(b64, b);
			cms = d2i_CMS_bio(b64, NULL);
			BIO_pop(b64);
			BIO_free(b64);
		}
	}
	ERR_clear_error();
	BIO_free(b);
	return cms;
}

static int write_stdout_bio(BIO *mem)
{
	char *p;
	long n = BIO_get_mem_data(mem, &p);

	if (n > 0 && fwrite(p, 1, (size_t)n, stdout) != (size_t)n) {
		return EXIT_USAGE;
	}
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
}

/* sign: a DER detached signature over the entity in canonical (CRLF) form (RFC 8551 §3.1.1). */
static int op_sign(cli_globals *g, const char *k, const char *in, const char *digest,
    const char *chain_path)
{
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	EVP_PKEY *pkey = NULL;
	STACK_OF(X509) *chain = NULL;
	CMS_ContentInfo *cms = NULL;
	BIO *data = NULL, *out = NULL;
	const EVP_MD *md;
	int status;

	if ((data = BIO_new_file(in, "rb")) == NULL) {
		return fail(EXIT_USAGE, "cannot read %s", in);
	}
	if ((status = find_key(g, k, &ctx, &key)) != EXIT_OK) {
		goto out;
	}
	if (p11s_key_cert(key) == NULL) {
		status = fail(EXIT_TOKEN, "the key %s has no certificate on the token",
		    p11s_key_uri(key));
		goto out;
	}
	if (p11s_key_pkey(key, &pkey) < 0) {
		status = cli_fail();
		goto out;
	}
	if (chain_path != NULL) {
		/* --chain: the intermediates travel in the SignedData (RFC 8551 §2.4.1). */
		if ((status = cli_load_certs(chain_path, &chain)) != EXIT_OK) {
			goto out;
		}
	} else if (p11s_key_ca_certs(key, &chain) < 0) {
		chain = NULL; /* CA certificates on the token are optional */
	}
	md = EVP_get_digestbyname(digest);
	if (md == NULL) {
		status = fail(EXIT_USAGE, "unknown digest %s", digest);
		goto out;
	}
	cms = CMS_sign_ex(NULL, NULL, chain, NULL, CMS_DETACHED | CMS_PARTIAL,
	    p11s_ctx_libctx(ctx), NULL);
	if (cms == NULL ||
	    CMS_add1_signer(cms, p11s_key_cert(key), pkey, md, 0) == NULL ||
	    CMS_final(cms, data, NULL, CMS_DETACHED) != 1 ||
	    (out = BIO_new(BIO_s_mem())) == NULL || i2d_CMS_bio(out, cms) != 1) {
		status = fail(EXIT_TOKEN, "signing with %s failed", p11s_key_uri(key));
		goto out;
	}
	status = write_stdout_bio(out);
out:
	BIO_free(out);
	BIO_free(data);
	CMS_ContentInfo_free(cms);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(pkey);
	p11s_key_free(key);
	cli_close(g, ctx); /* inside the agent: its context stays */
	return status;
}

/* Base64 of a file, 76 columns, CRLF (RFC 2045 §6.8). */
static int put_base64(FILE *o, const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char raw[57];
	unsigned char enc[80];
	size_t n;

	if (f == NULL) {
		return -1;
	}
	while ((n = fread(raw, 1, sizeof(raw), f)) > 0) {
		int m = EVP_EncodeBlock(enc, raw, (int)n);

		fwrite(enc, 1, (size_t)m, o);
		fputs("\r\n", o);
	}
	n = (size_t)ferror(f);
	fclose(f);
	return n ? -1 : 0;
}

/*
 * The verdict NeoMutt reads: "Verification successful" as the first stderr line, then the
 * report; exit 0/1. With --json the library's own report goes to stdout.
 */
static int verdict(cli_globals *g, p11s_verify_result *r, int opaque)
{
	int status = r->valid ? EXIT_OK : EXIT_VERIFY;

	fputs(r->valid ? "Verification successful\n" : "Verification failure\n", stderr);
	cli_verify_report_text(stderr, r);
	if (g->json && !opaque) {
		cli_verify_report_json(stdout, r);
	}
	if (opaque && r->valid && p11s_verify_write_content(r, stdout) < 0) {
		status = cli_fail();
	}
	return status;
}

static int verify_opts(p11s_verify_opts *o, const char **trust, size_t n)
{
	o->trust_files = trust;
	o->n_trust_files = n;
	/* The mail client checks From itself; it hands over the signed part only. */
	o->no_sender_check = 1;
	return 0;
}

/*
 * verify: the library verifies a multipart/signed entity (RFC 8551 §3.5.3) made of the
 * content file and the DER signature, so the verdict is p11smime's, the same as `verify`.
 */
static int op_verify(cli_globals *g, const char *sig, const char *in, const char **trust,
    size_t n_trust)
{
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *r = NULL;
	unsigned char rnd[12];
	char boundary[64] = "p11smime-";
	FILE *t = tmpfile(), *c = NULL;
	int status = EXIT_USAGE, ch;

	if (t == NULL || (c = fopen(in, "rb")) == NULL) {
		status = fail(EXIT_USAGE, "cannot read %s", in);
		goto out;
	}
	/* A random boundary: RFC 2046 §5.1.1 forbids it inside the content. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		goto out;
	}
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(boundary + strlen(boundary), 3, "%02x", rnd[i]);
	}
	fprintf(t, "MIME-Version: 1.0\r\nContent-Type: multipart/signed; "
	           "protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
	           "boundary=\"%s\"\r\n\r\n--%s\r\n", boundary, boundary);
	while ((ch = getc(c)) != EOF) {
		putc(ch, t);
	}
	fprintf(t, "\r\n--%s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
	           "Content-Transfer-Encoding: base64\r\n\r\n", boundary);
	if (put_base64(t, sig) < 0) {
		status = fail(EXIT_USAGE, "cannot read %s", sig);
		goto out;
	}
	fprintf(t, "\r\n--%s--\r\n", boundary);
	if (fflush(t) != 0 || fseek(t, 0, SEEK_SET) != 0) {
		goto out;
	}
	verify_opts(&o, trust, n_trust);
	if (p11s_verify_message(&r, t, &o) < 0) {
		fputs("Verification failure\n", stderr);
		status = cli_fail();
		goto out;
	}
	status = verdict(g, r, 0);
out:
	p11s_verify_result_free(r);
	if (c != NULL) {
		fclose(c);
	}
	if (t != NULL) {
		fclose(t);
	}
	return status;
}

/* An application/pkcs7-mime entity around a DER or base64 file (for verify-opaque, decrypt). */
static FILE *wrap_pkcs7(const char *path, const char *smime_type)
{
	CMS_ContentInfo *cms = read_cms(path);
	FILE *t = tmpfile();
	BIO *b = NULL, *b64 = NULL;
	int ok = 0;

	if (cms == NULL || t == NULL) {
		goto out;
	}
	fprintf(t, "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; "
	           "smime-type=%s; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n",
	    smime_type);
	fflush(t);
	b = BIO_new_fp(t, BIO_NOCLOSE);
	b64 = BIO_new(BIO_f_base64());
	if (b == NULL || b64 == NULL) {
		goto out;
	}
	BIO_push(b64, b);
	ok = i2d_CMS_bio(b64, cms) == 1 && BIO_flush(b64) == 1;
out:
	BIO_free(b64);
	BIO_free(b);
	CMS_ContentInfo_free(cms);
	if (!ok || fflush(t) != 0 || fseek(t, 0, SEEK_SET) != 0) {
		if (t != NULL) {
			fclose(t);
		}
		return NULL;
	}
	return t;
}

static int op_verify_opaque(cli_globals *g, const char *in, const char **trust, size_t n)
{
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *r = NULL;
	FILE *t = wrap_pkcs7(in, "signed-data");
	int status;

	if (t == NULL) {
		fputs("Verification failure\n", stderr);
		return fail(EXIT_USAGE, "%s is not a CMS SignedData", in);
	}
	verify_opts(&o, trust, n);
	if (p11s_verify_message(&r, t, &o) < 0) {
		fputs("Verification failure\n", stderr);
		status = cli_fail();
	} else {
		status = verdict(g, r, 1);
	}
	p11s_verify_result_free(r);
	fclose(t);
	return status;
}

/*
 * decrypt: the library's p11s_decrypt_message() over the entity; the key is found by the
 * message's recipient identifiers unless %k is a pkcs11: URI.
 */
static int op_decrypt(cli_globals *g, const char *k, const char *in)
{
	p11s_decrypt_opts o = P11S_DECRYPT_OPTS_INIT;
	p11s_decrypt_info info;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	const char *spec = k ? key_spec(k) : "";
	const char *uri = strncmp(spec, "pkcs11:", 7) == 0 ? spec : NULL;
	FILE *t = wrap_pkcs7(in, "enveloped-data");
	cli_output *out = NULL;
	int status;

	if (t == NULL) {
		return fail(EXIT_USAGE, "%s is not a CMS EnvelopedData", in);
	}
	if (cli_open(g, uri, &ctx) < 0 || (uri != NULL && p11s_key_find(ctx, uri, &key) < 0)) {
		status = cli_fail();
		goto out;
	}
	if ((status = cli_output_open(NULL, &out)) != EXIT_OK) {
		goto out;
	}
	if (p11s_decrypt_message(ctx, key, t, cli_output_file(out), &o, &info) < 0) {
		cli_output_abort(out);
		status = cli_fail();
		goto out;
	}
	status = cli_output_commit(out);
out:
	p11s_key_free(key);
	cli_close(g, ctx);
	fclose(t);
	return status;
}

/* encrypt: DER EnvelopedData of the entity for the certificates given (NeoMutt base64s it). */
static int op_encrypt(const char *in, const char **to, size_t n_to)
{
	p11s_encrypt_opts o = P11S_ENCRYPT_OPTS_INIT;
	FILE *f = fopen(in, "rb"), *t = tmpfile();
	char line[1024];
	BIO *src = NULL, *b64 = NULL, *out = NULL;
	CMS_ContentInfo *cms = NULL;
	int status = EXIT_USAGE;

	if (f == NULL || t == NULL) {
		status = fail(EXIT_USAGE, "cannot read %s", in);
		goto out;
	}
	o.recipient_files = to;
	o.n_recipient_files = n_to;
	/* AES-CBC: NeoMutt's classic backend labels the part smime-type=enveloped-data. */
	o.cipher = P11S_CIPHER_AES_256_CBC;
	if (p11s_encrypt_message(f, t, &o) < 0 || fflush(t) != 0 || fseek(t, 0, SEEK_SET) != 0) {
		status = cli_fail();
		goto out;
	}
	/* Skip the header section of the library's output; the body is the base64 DER. */
	while (fgets(line, sizeof(line), t) != NULL) {
		if (strcmp(line, "\n") == 0 || strcmp(line, "\r\n") == 0) {
			break;
		}
	}
	src = BIO_new_fp(t, BIO_NOCLOSE);
	b64 = BIO_new(BIO_f_base64());
	if (src == NULL || b64 == NULL) {
		goto out;
	}
	BIO_push(b64, src);
	if ((cms = d2i_CMS_bio(b64, NULL)) == NULL || (out = BIO_new(BIO_s_mem())) == NULL ||
	    i2d_CMS_bio(out, cms) != 1) {
		status = fail(EXIT_USAGE, "encrypting %s failed", in);
		goto out;
	}
	status = write_stdout_bio(out);
out:
	BIO_free(out);
	CMS_ContentInfo_free(cms);
	BIO_free(b64);
	BIO_free(src);
	if (f != NULL) {
		fclose(f);
	}
	if (t != NULL) {
		fclose(t);
	}
	return status;
}

/* The certificates of a PKCS#7/CMS file (certs), or only its signers' (signers), as PEM. */
static int op_certs(const char *in, const char *out_path, int signers_only)
{
	CMS_ContentInfo *cms = read_cms(in);
	STACK_OF(X509) *certs = NULL;
	FILE *o = stdout;
	int status = EXIT_OK;

	if (cms == NULL) {
		return fail(EXIT_USAGE, "%s is not a CMS/PKCS#7 structure", in);
	}
	certs = CMS_get1_certs(cms);
	if (signers_only && certs != NULL) {
		/* Keep the certificates that some SignerInfo's sid names (RFC 5652 §5.3). */
		STACK_OF(CMS_SignerInfo) *si = CMS_get0_SignerInfos(cms);

		for (int i = sk_X509_num(certs) - 1; i >= 0; i--) {
			int hit = 0;

			for (int j = 0; j < sk_CMS_SignerInfo_num(si); j++) {
				hit |= CMS_SignerInfo_cert_cmp(sk_CMS_SignerInfo_value(si, j),
				    sk_X509_value(certs, i)) == 0;
			}
			if (!hit) {
				X509_free(sk_X509_delete(certs, i));
			}
		}
	}
	if (certs == NULL || sk_X509_num(certs) == 0) {
		status = fail(EXIT_VERIFY, "%s holds no certificates", in);
		goto out;
	}
	if (out_path != NULL && (o = fopen(out_path, "w")) == NULL) {
		status = fail(EXIT_USAGE, "cannot write %s", out_path);
		goto out;
	}
	for (int i = 0; i < sk_X509_num(certs); i++) {
		PEM_write_X509(o, sk_X509_value(certs, i));
	}
	if ((o == stdout ? fflush(o) : fclose(o)) != 0) {
		status = EXIT_USAGE;
	}
out:
	sk_X509_pop_free(certs, X509_free);
	CMS_ContentInfo_free(cms);
	return status;
}

/* pk7out: the PKCS#7 as PEM (NeoMutt feeds it to get-certs next). */
static int op_pk7out(const char *in)
{
	CMS_ContentInfo *cms = read_cms(in);
	int status = EXIT_OK;

	if (cms == NULL) {
		return fail(EXIT_USAGE, "%s is not a CMS/PKCS#7 structure", in);
	}
	if (PEM_write_CMS(stdout, cms) != 1 || fflush(stdout) != 0) {
		status = EXIT_USAGE;
	}
	CMS_ContentInfo_free(cms);
	return status;
}

/* emails: a certificate's rfc822Name SANs and subject emailAddress, one a line (RFC 8550 §3). */
static int op_emails(const char *in)
{
	X509 *c = NULL;
	STACK_OF(OPENSSL_STRING) *v;
	int status;

	if ((status = cli_load_cert(in, &c)) != EXIT_OK) {
		return status;
	}
	v = X509_get1_email(c);
	for (int i = 0; i < sk_OPENSSL_STRING_num(v); i++) {
		printf("%s\n", sk_OPENSSL_STRING_value(v, i));
	}
	X509_email_free(v);
	X509_free(c);
	return fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
}

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_SIG = CLI_O_OWN, O_CAFILE, O_CAPATH, O_TO, O_DIGEST, O_OUT, O_CHAIN };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		CLI_OPT_IN,
		{ "out", required_argument, NULL, O_OUT },
		{ "sig", required_argument, NULL, O_SIG },
		{ "trust", required_argument, NULL, O_CAFILE },
		/* What NeoMutt's %C expands to ("-CAfile FILE"); getopt takes "-CAfile" as long. */
		{ "CAfile", required_argument, NULL, O_CAFILE },
		{ "CApath", required_argument, NULL, O_CAPATH },
		{ "to", required_argument, NULL, O_TO },
		{ "digest", required_argument, NULL, O_DIGEST },
		{ "chain", required_argument, NULL, O_CHAIN },
		{ NULL, 0, NULL, 0 },
	};
	const char *op, *key = NULL, *in = NULL, *sig = NULL, *out = NULL, *digest = "sha256";
	const char *chain = NULL;
	const char *trust[16], *to[64];
	size_t n_trust = 0, n_to = 0;
	int c;

	if (argc < 2) {
		return cli_usage_error("mua: an operation is required (see p11smime mua --help)");
	}
	op = argv[1];
	/* Logging to stderr would count as failure in NeoMutt's sign and decrypt. */
	if (g->verbosity <= 0) {
		p11s_log_set_level(P11S_LOG_ERROR);
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long_only(argc - 1, argv + 1, "+", opts, NULL)) != -1) {
		switch (c) {
		case CLI_O_KEY: key = optarg; break;
		case CLI_O_IN: in = optarg; break;
		case O_OUT: out = optarg; break;
		case O_SIG: sig = optarg; break;
		case O_DIGEST: digest = optarg; break;
		case O_CHAIN: chain = optarg; break;
		case O_CAFILE:
			if (n_trust == sizeof(trust) / sizeof(trust[0])) {
				return cli_usage_error("mua: too many trust files");
			}
			trust[n_trust++] = optarg;
			break;
		case O_CAPATH:
			return cli_usage_error("mua: -CApath is not supported; set smime_ca_location "
			                       "to a file of PEM certificates");
		case O_TO:
			if (n_to == sizeof(to) / sizeof(to[0])) {
				return cli_usage_error("mua: too many recipients");
			}
			to[n_to++] = optarg;
			break;
		default:
			return cli_usage_error("mua %s: unknown or incomplete option %s", op,
			    argv[optind]);
		}
	}
	/* Remaining operands of encrypt are certificate files (NeoMutt's %c). */
	for (int i = optind + 1; i < argc; i++) {
		if (strcmp(op, "encrypt") != 0 || n_to == sizeof(to) / sizeof(to[0])) {
			return cli_usage_error("mua %s: unexpected operand %s", op, argv[i]);
		}
		to[n_to++] = argv[i];
	}
	/*
	 * The message never comes from stdin: stdin is where NeoMutt writes the passphrase
	 * (--pin-source fd:0), so the two can never be confused.
	 */
	if (in == NULL || strcmp(in, "-") == 0) {
		return cli_usage_error("mua %s: --in FILE is required (stdin carries only the PIN)",
		    op);
	}
	if (strcmp(op, "sign") == 0) {
		if (key == NULL) {
			return cli_usage_error("mua sign: --key URI|ADDRESS is required");
		}
		return op_sign(g, key, in, digest, chain);
	}
	if (strcmp(op, "verify") == 0) {
		if (sig == NULL) {
			return op_verify_opaque(g, in, trust, n_trust);
		}
		return op_verify(g, sig, in, trust, n_trust);
	}
	if (strcmp(op, "decrypt") == 0) {
		return op_decrypt(g, key, in);
	}
	if (strcmp(op, "encrypt") == 0) {
		if (n_to == 0) {
			return cli_usage_error("mua encrypt: at least one recipient certificate");
		}
		return op_encrypt(in, to, n_to);
	}
	if (strcmp(op, "certs") == 0 || strcmp(op, "signers") == 0) {
		return op_certs(in, out, op[1] == 'i');
	}
	if (strcmp(op, "pk7out") == 0) {
		return op_pk7out(in);
	}
	if (strcmp(op, "emails") == 0) {
		return op_emails(in);
	}
	return cli_usage_error("mua: unknown operation '%s'", op);
}

const cli_command cmd_mua = {
	"mua",
	"the S/MIME commands of NeoMutt and mutt (contrib/neomutt/smime.rc)",
	"mua sign --key URI|ADDRESS [--digest D] [--chain FILE] --in ENTITY\n"
	"                                                            DER detached signature on stdout\n"
	"       mua verify --sig SIG --in CONTENT [-CAfile FILE]...  detached (first stderr line:\n"
	"                                                            \"Verification successful\")\n"
	"       mua verify --in SIGNED-DATA [-CAfile FILE]...        opaque: content on stdout\n"
	"       mua decrypt [--key URI] --in ENVELOPED              plaintext entity on stdout\n"
	"       mua encrypt --in ENTITY CERT...                      DER EnvelopedData on stdout\n"
	"       mua certs|signers --in PKCS7 [--out FILE]            certificates as PEM\n"
	"       mua pk7out --in PKCS7                                the PKCS#7 as PEM\n"
	"       mua emails --in CERT                                 e-mail addresses, one a line\n"
	"\n"
	"Input always comes from --in FILE, never stdin: the PIN comes through the global\n"
	"--pin-source fd:0 (NeoMutt writes the passphrase and a newline on stdin).",
	run,
};

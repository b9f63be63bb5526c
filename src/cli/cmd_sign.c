/*
 * `p11smime sign --key URI [--cert FILE] [--chain FILE]... [--opaque] [--digest D] [--pss]
 *  [--encryption-cert FILE] [--in FILE] [--out FILE]` (CLI.md): sign an RFC 5322 message.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_KEY = 1, O_CERT, O_CHAIN, O_OPAQUE, O_DIGEST, O_PSS, O_IN, O_OUT, O_ENC };
	static const struct option opts[] = {
		{ "key", required_argument, NULL, O_KEY },
		{ "cert", required_argument, NULL, O_CERT },
		{ "chain", required_argument, NULL, O_CHAIN },
		{ "opaque", no_argument, NULL, O_OPAQUE },
		{ "digest", required_argument, NULL, O_DIGEST },
		{ "pss", no_argument, NULL, O_PSS },
		{ "in", required_argument, NULL, O_IN },
		{ "out", required_argument, NULL, O_OUT },
		{ "encryption-cert", required_argument, NULL, O_ENC },
		{ NULL, 0, NULL, 0 },
	};
	p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	const char *key_uri = NULL, *cert_path = NULL, *enc_path = NULL, *in_path = NULL,
	           *out_path = NULL;
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL, *enc = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *in = NULL;
	cli_output *o = NULL;
	int c, status;

	if ((chain = sk_X509_new_null()) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case O_KEY:
			key_uri = optarg;
			break;
		case O_CERT:
			cert_path = optarg;
			break;
		case O_CHAIN: {
			STACK_OF(X509) *sk;

			if ((status = cli_load_certs(optarg, &sk)) != EXIT_OK) {
				goto out;
			}
			while (sk_X509_num(sk) > 0) {
				X509 *x = sk_X509_shift(sk);

				if (!sk_X509_push(chain, x)) {
					X509_free(x);
				}
			}
			sk_X509_free(sk);
			break;
		}
		case O_OPAQUE:
			so.opaque = 1;
			break;
		case O_DIGEST:
			if (strcmp(optarg, "sha256") == 0) {
				so.digest = P11S_DIGEST_SHA256;
			} else if (strcmp(optarg, "sha384") == 0) {
				so.digest = P11S_DIGEST_SHA384;
			} else if (strcmp(optarg, "sha512") == 0) {
				so.digest = P11S_DIGEST_SHA512;
			} else {
				status = cli_usage_error("sign: --digest must be sha256, sha384 or sha512, "
				                         "not '%s'", optarg);
				goto out;
			}
			break;
		case O_PSS:
			so.pss = 1;
			break;
		case O_IN:
			in_path = optarg;
			break;
		case O_OUT:
			out_path = optarg;
			break;
		case O_ENC:
			enc_path = optarg;
			break;
		default:
			status = cli_usage_error("sign: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("sign: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (key_uri == NULL) {
		status = cli_usage_error("sign: --key URI is required");
		goto out;
	}
	if ((cert_path != NULL && (status = cli_load_cert(cert_path, &cert)) != EXIT_OK) ||
	    (enc_path != NULL && (status = cli_load_cert(enc_path, &enc)) != EXIT_OK)) {
		goto out;
	}
	so.cert = cert;
	so.chain = chain;
	so.encryption_cert = enc;
	/* Read the input before touching the token: a malformed message costs no PIN. */
	if ((status = cli_input_open(in_path, &in)) != EXIT_OK) {
		goto out;
	}
	if (cli_open(g, key_uri, &ctx) < 0 || p11s_key_find(ctx, key_uri, &key) < 0) {
		status = cli_fail();
		goto out;
	}
	if ((status = cli_output_open(out_path, &o)) != EXIT_OK) {
		goto out;
	}
	if (p11s_sign_message(key, &so, in, cli_output_file(o)) < 0) {
		status = cli_fail();
		cli_output_abort(o); /* no partial output, ever (CLI.md) */
		o = NULL;
		goto out;
	}
	status = cli_output_commit(o);
	o = NULL;
out:
	cli_output_abort(o);
	if (in != NULL) {
		fclose(in);
	}
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	X509_free(cert);
	X509_free(enc);
	sk_X509_pop_free(chain, X509_free);
	return status;
}

const cli_command cmd_sign = {
	"sign",
	"sign an RFC 5322 message (S/MIME multipart/signed, or signed-data with --opaque)",
	"sign --key URI [--cert FILE] [--chain FILE]... [--opaque] [--digest sha256|sha384|sha512]\n"
	"       [--pss] [--encryption-cert FILE] [--in FILE] [--out FILE]",
	run,
};

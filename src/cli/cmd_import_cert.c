/*
 * `p11smime import-cert --key URI --in CERT [--chain FILE]`: write a token key's certificate
 * (and its CA certificates) on the token (docs/keys.md). The certificate must certify the
 * key: a mismatch is exit 2 and nothing is written.
 */
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "in", required_argument, NULL, 'i' },
		{ "chain", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key_uri = NULL, *in = NULL, *chain_path = NULL;
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int c, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_uri = optarg;
			break;
		case 'i':
			in = optarg;
			break;
		case 'c':
			chain_path = optarg;
			break;
		default:
			return cli_usage_error("import-cert: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("import-cert: unexpected argument '%s'", argv[optind]);
	}
	if (key_uri == NULL || in == NULL) {
		return cli_usage_error("import-cert: --key and --in are required");
	}
	if ((status = cli_load_cert(in, &cert)) != EXIT_OK ||
	    (chain_path != NULL && (status = cli_load_certs(chain_path, &chain)) != EXIT_OK) ||
	    (status = cli_open_key(g, key_uri, &ctx, &key)) != EXIT_OK) {
		goto out;
	}
	status = p11s_key_import_cert(key, cert, chain) < 0 ? cli_fail() : EXIT_OK;
out:
	sk_X509_pop_free(chain, X509_free);
	X509_free(cert);
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	return status;
}

const cli_command cmd_import_cert = {
	"import-cert",
	"write a token key's certificate (and CA certificates) on the token",
	"import-cert --key URI --in CERT [--chain FILE]",
	run,
};

/*
 * `p11smime decrypt [--key URI] [--token URI] [--in FILE] [--out FILE]` (CLI.md): decrypt an
 * enveloped or auth-enveloped message with a private key that stays on the token. The output is
 * atomic: nothing appears unless decryption (and, for GCM, authentication) succeeded.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void report_json(FILE *f, const p11s_decrypt_info *info)
{
	fputc('{', f);
	json_key(f, "content_type");
	json_str(f, info->content_type);
	fputc(',', f);
	json_key(f, "authenticated");
	fputs(info->authenticated ? "true," : "false,", f);
	json_key(f, "cipher");
	json_str(f, info->cipher);
	fputc(',', f);
	json_key(f, "key_management");
	json_str(f, info->key_management);
	fputc(',', f);
	json_key(f, "recipients");
	fprintf(f, "%d,", info->n_recipients);
	json_key(f, "key");
	json_str(f, info->key_uri);
	fputc(',', f);
	json_key(f, "certificate_subject");
	json_str(f, info->recipient);
	fputs("}\n", f);
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "token", required_argument, NULL, 't' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	p11s_decrypt_opts o = P11S_DECRYPT_OPTS_INIT;
	p11s_decrypt_info info;
	const char *key_uri = NULL, *token_uri = NULL, *in_path = NULL, *out_path = NULL;
	cli_output *out = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *in = NULL;
	int c, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_uri = optarg;
			break;
		case 't':
			token_uri = optarg;
			break;
		case 'i':
			in_path = optarg;
			break;
		case 'O':
			out_path = optarg;
			break;
		default:
			return cli_usage_error("decrypt: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("decrypt: unexpected argument '%s'", argv[optind]);
	}
	if (key_uri != NULL && token_uri != NULL) {
		return cli_usage_error("decrypt: --key and --token exclude each other");
	}
	if (g->json && (out_path == NULL || strcmp(out_path, "-") == 0)) {
		return cli_usage_error("decrypt: --json reports on stdout, so it needs --out FILE");
	}
	o.token_uri = token_uri;
	if ((status = cli_input_open(in_path, &in)) != EXIT_OK) {
		return status;
	}
	if (cli_open(g, key_uri ? key_uri : token_uri, &ctx) < 0 ||
	    (key_uri != NULL && p11s_key_find(ctx, key_uri, &key) < 0)) {
		status = cli_fail();
		goto out;
	}
	if ((status = cli_output_open(out_path, &out)) != EXIT_OK) {
		goto out;
	}
	if (p11s_decrypt_message(ctx, key, in, cli_output_file(out), &o, &info) < 0) {
		status = cli_fail();
		cli_output_abort(out);
		out = NULL;
		goto out;
	}
	if ((status = cli_output_commit(out)) != EXIT_OK) {
		out = NULL;
		goto out;
	}
	out = NULL;
	if (!info.authenticated) {
		/* STANDARDS.md §12 (EFAIL): CBC content may have been altered or spliced. */
		p11s_log(P11S_LOG_INFO,
		    "warning: %s (%s) is not integrity-protected: the content may have been "
		    "altered or spliced (EFAIL); treat it as unauthenticated",
		    info.content_type, info.cipher);
	} else {
		p11s_log(P11S_LOG_INFO, "decrypted %s (%s, %s); authentication tag verified",
		    info.content_type, info.cipher, info.key_management);
	}
	if (g->json) {
		report_json(stdout, &info);
		if (fflush(stdout) != 0) {
			status = EXIT_USAGE;
		}
	}
out:
	cli_output_abort(out);
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	if (in != NULL) {
		fclose(in);
	}
	return status;
}

const cli_command cmd_decrypt = {
	"decrypt",
	"decrypt an enveloped or auth-enveloped message with a key that stays on the token",
	"decrypt [--key URI | --token URI] [--in FILE] [--out FILE]\n"
	"\n"
	"  --key URI       the private key (pkcs11: URI); only its certificate may match a\n"
	"                  recipient of the message\n"
	"  --token URI     without --key: search the keys of these tokens (default: all)\n"
	"  --in FILE       encrypted message (default stdin)\n"
	"  --out FILE      decrypted message (default stdout); written only on success\n"
	"\n"
	"The key is found by the message's recipient identifiers (issuer and serial number or\n"
	"subject key identifier). Exit 1: no recipient for the key, or \"decryption failed\"\n"
	"(one message for every failure that depends on the encrypted data); exit 3: token\n"
	"failure, including a mechanism or parameters the token refuses.",
	run,
};

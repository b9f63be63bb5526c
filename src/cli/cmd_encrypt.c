/*
 * `p11smime encrypt --to CERTFILE [--to CERTFILE]... [--cipher C] [--oaep] [--in F] [--out F]`
 * (CLI.md): encrypt an RFC 5322 message to one or more certificates. No token is involved.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int parse_cipher(const char *s, p11s_cipher *out)
{
	static const struct {
		const char *name;
		p11s_cipher c;
	} t[] = {
		{ "aes-256-gcm", P11S_CIPHER_AES_256_GCM },
		{ "aes-128-gcm", P11S_CIPHER_AES_128_GCM },
		{ "aes-128-cbc", P11S_CIPHER_AES_128_CBC },
		{ "aes-256-cbc", P11S_CIPHER_AES_256_CBC },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(s, t[i].name) == 0) {
			*out = t[i].c;
			return 0;
		}
	}
	return -1;
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "cipher", required_argument, NULL, 'c' },
		{ "oaep", no_argument, NULL, 'o' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	p11s_encrypt_opts o = P11S_ENCRYPT_OPTS_INIT;
	const char **to = NULL;
	const char *in_path = NULL, *out_path = NULL;
	cli_output *out = NULL;
	FILE *in = NULL;
	size_t nto = 0;
	int c, status;

	if ((to = calloc((size_t)argc, sizeof(*to))) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to[nto++] = optarg;
			break;
		case 'c':
			if (parse_cipher(optarg, &o.cipher) < 0) {
				status = cli_usage_error("encrypt: unknown cipher '%s' (aes-256-gcm, "
				                         "aes-128-gcm, aes-128-cbc, aes-256-cbc)", optarg);
				goto out;
			}
			break;
		case 'o':
			o.oaep = 1;
			break;
		case 'i':
			in_path = optarg;
			break;
		case 'O':
			out_path = optarg;
			break;
		default:
			status = cli_usage_error("encrypt: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("encrypt: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (nto == 0) {
		status = cli_usage_error("encrypt: at least one --to CERTFILE is needed");
		goto out;
	}
	o.recipient_files = to;
	o.n_recipient_files = nto;
	if (o.cipher == P11S_CIPHER_AES_128_CBC || o.cipher == P11S_CIPHER_AES_256_CBC) {
		p11s_log(P11S_LOG_INFO, "CBC gives EnvelopedData without integrity protection "
		                        "(EFAIL); prefer aes-256-gcm");
	}
	/* Recipients are checked inside before any output exists; the output is atomic anyway. */
	if ((status = cli_input_open(in_path, &in)) != EXIT_OK ||
	    (status = cli_output_open(out_path, &out)) != EXIT_OK) {
		goto out;
	}
	if (p11s_encrypt_message(in, cli_output_file(out), &o) < 0) {
		status = cli_fail();
		cli_output_abort(out);
		out = NULL;
		goto out;
	}
	status = cli_output_commit(out);
	out = NULL;
out:
	cli_output_abort(out);
	if (in != NULL) {
		fclose(in);
	}
	free(to);
	return status;
}

const cli_command cmd_encrypt = {
	"encrypt",
	"encrypt a message to one or more recipient certificates (RSA, EC P-256/P-384)",
	"encrypt --to CERTFILE [--to CERTFILE]... [--cipher aes-256-gcm|aes-128-gcm|aes-128-cbc|"
	"aes-256-cbc] [--oaep] [--in FILE] [--out FILE]\n"
	"\n"
	"  --to CERTFILE   recipient certificate (PEM or DER); repeat for more recipients\n"
	"  --cipher C      content cipher (default aes-256-gcm: AuthEnvelopedData; CBC gives\n"
	"                  EnvelopedData, which has no integrity protection)\n"
	"  --oaep          RSA recipients get RSAES-OAEP with SHA-256 (default PKCS#1 v1.5)\n"
	"  --in FILE       message to encrypt (default stdin)\n"
	"  --out FILE      encrypted message (default stdout); written atomically",
	run,
};

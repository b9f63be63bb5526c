/*
 * `p11smime keygen --token URI --type TYPE --label LABEL [--id HEX]`: a key pair generated on
 * the token (docs/keys.md). Prints the new key's pkcs11: URI, as `keys` prints it.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* --id: hex digits, an even number of them, at most 64 bytes (CKA_ID is a byte string). */
static int parse_hex(const char *s, unsigned char *buf, size_t cap, size_t *len)
{
	size_t n = strlen(s);

	if (n == 0 || n % 2 != 0 || n / 2 > cap) {
		return -1;
	}
	for (size_t i = 0; i < n; i += 2) {
		unsigned v = 0;

		for (size_t j = 0; j < 2; j++) {
			char c = s[i + j];

			v <<= 4;
			if (c >= '0' && c <= '9') {
				v |= (unsigned)(c - '0');
			} else if (c >= 'a' && c <= 'f') {
				v |= (unsigned)(c - 'a' + 10);
			} else if (c >= 'A' && c <= 'F') {
				v |= (unsigned)(c - 'A' + 10);
			} else {
				return -1;
			}
		}
		buf[i / 2] = (unsigned char)v;
	}
	*len = n / 2;
	return 0;
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ "type", required_argument, NULL, 'y' },
		{ "label", required_argument, NULL, 'l' },
		{ "id", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *token_uri = NULL, *type = NULL, *label = NULL;
	unsigned char id[64];
	size_t idlen = 0;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int c, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			token_uri = optarg;
			break;
		case 'y':
			type = optarg;
			break;
		case 'l':
			label = optarg;
			break;
		case 'i':
			if (parse_hex(optarg, id, sizeof(id), &idlen) < 0) {
				return cli_usage_error("keygen: --id wants 1 to 64 bytes in hex, not '%s'",
				    optarg);
			}
			break;
		default:
			return cli_usage_error("keygen: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("keygen: unexpected argument '%s'", argv[optind]);
	}
	if (token_uri == NULL || type == NULL || label == NULL || label[0] == '\0') {
		return cli_usage_error("keygen: --token, --type and --label are required");
	}
	if (cli_open(g, token_uri, &ctx) < 0 ||
	    p11s_key_generate(ctx, token_uri, type, label, id, idlen, &key) < 0) {
		status = cli_fail();
		goto out;
	}
	if (g->json) {
		const unsigned char *kid;
		size_t l;

		kid = p11s_key_id(key, &l);
		fputc('{', stdout);
		json_key(stdout, "uri");
		json_str(stdout, p11s_key_uri(key));
		fputc(',', stdout);
		json_key(stdout, "label");
		json_str(stdout, p11s_key_label(key));
		fputc(',', stdout);
		json_key(stdout, "id");
		json_hex(stdout, kid, l);
		fputc(',', stdout);
		json_key(stdout, "type");
		json_str(stdout, type);
		fputs("}\n", stdout);
	} else {
		printf("%s\n", p11s_key_uri(key));
	}
	status = fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
out:
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	return status;
}

const cli_command cmd_keygen = {
	"keygen",
	"generate a key pair on the token (rsa:2048|3072|4096, ec:p256|p384, ed25519)",
	"keygen --token URI --type TYPE --label LABEL [--id HEX]",
	run,
};

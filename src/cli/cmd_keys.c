/* `p11smime keys [--token URI]`: list private keys with their certificates (CLI.md). */
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static const char *type_name(p11s_key_type t)
{
	switch (t) {
	case P11S_KEY_RSA:
		return "RSA";
	case P11S_KEY_EC:
		return "EC";
	case P11S_KEY_EDDSA:
		return "EdDSA";
	case P11S_KEY_XDH:
		return "XDH";
	default:
		return "unknown";
	}
}

static void print_json(FILE *f, p11s_key *const *keys, size_t n)
{
	fprintf(f, "{\"keys\":[");
	for (size_t i = 0; i < n; i++) {
		const p11s_token_info *t = p11s_key_token(keys[i]);
		const unsigned char *id;
		size_t idlen;

		id = p11s_key_id(keys[i], &idlen);
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "uri");
		json_str(f, p11s_key_uri(keys[i]));
		fputc(',', f);
		json_key(f, "token");
		json_str(f, t->label);
		fputc(',', f);
		json_key(f, "module");
		json_str(f, t->module);
		fputc(',', f);
		json_key(f, "label");
		json_str(f, p11s_key_label(keys[i]));
		fputc(',', f);
		json_key(f, "id");
		json_hex(f, id, idlen);
		fputc(',', f);
		json_key(f, "type");
		json_str(f, type_name(p11s_key_get_type(keys[i])));
		fputc(',', f);
		json_key(f, "bits");
		fprintf(f, "%d,", p11s_key_bits(keys[i]));
		json_key(f, "curve");
		if (p11s_key_curve(keys[i]) != NULL) {
			json_str(f, p11s_key_curve(keys[i]));
		} else {
			fputs("null", f);
		}
		fputc(',', f);
		json_key(f, "always_authenticate");
		fputs(p11s_key_always_authenticate(keys[i]) ? "true," : "false,", f);
		json_key(f, "certificate");
		if (p11s_key_cert(keys[i]) != NULL) {
			certinfo_json(f, p11s_key_cert(keys[i]));
		} else {
			fputs("null", f);
		}
		fputc('}', f);
	}
	fprintf(f, "]}\n");
}

static void print_text(FILE *f, p11s_key *const *keys, size_t n)
{
	if (n == 0) {
		fprintf(f, "no private keys\n");
	}
	for (size_t i = 0; i < n; i++) {
		const unsigned char *id;
		size_t idlen;

		id = p11s_key_id(keys[i], &idlen);
		fprintf(f, "%s%s\n", i ? "\n" : "", p11s_key_uri(keys[i]));
		fprintf(f, "  type:     %s", type_name(p11s_key_get_type(keys[i])));
		if (p11s_key_curve(keys[i]) != NULL) {
			fprintf(f, " %s", p11s_key_curve(keys[i]));
		}
		if (p11s_key_bits(keys[i]) > 0) {
			fprintf(f, " (%d bits)", p11s_key_bits(keys[i]));
		}
		fprintf(f, "\n  label:    %s\n  token:    %s\n  module:   %s\n  id:       ",
		    p11s_key_label(keys[i]), p11s_key_token(keys[i])->label,
		    p11s_key_token(keys[i])->module);
		for (size_t j = 0; j < idlen; j++) {
			fprintf(f, "%02x", id[j]);
		}
		fprintf(f, "\n");
		if (p11s_key_always_authenticate(keys[i])) {
			fprintf(f, "  PIN:      asked before every signature (CKA_ALWAYS_AUTHENTICATE)\n");
		}
		if (p11s_key_cert(keys[i]) != NULL) {
			certinfo_text(f, p11s_key_cert(keys[i]), "  ");
		} else {
			fprintf(f, "  certificate: none on the token\n");
		}
	}
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "token", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *token_uri = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key **keys = NULL;
	size_t n = 0;
	int c, status;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 't') {
			token_uri = optarg;
		} else {
			return cli_usage_error("keys: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("keys: unexpected argument '%s'", argv[optind]);
	}
	if (cli_open(g, token_uri, &ctx) < 0 || p11s_key_list(ctx, token_uri, &keys, &n) < 0) {
		status = cli_fail();
		goto out;
	}
	if (g->json) {
		print_json(stdout, keys, n);
	} else {
		print_text(stdout, keys, n);
	}
	status = fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
out:
	for (size_t i = 0; i < n; i++) {
		p11s_key_free(keys[i]);
	}
	free(keys);
	cli_close(g, ctx);
	return status;
}

const cli_command cmd_keys = {
	"keys",
	"list private keys with their pkcs11: URIs, type and size, and their certificates",
	"keys [--token URI]",
	run,
};

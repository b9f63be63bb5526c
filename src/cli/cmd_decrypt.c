/*
 * `p11smime decrypt [--key URI] [--token URI] [--in FILE] [--out FILE]` (CLI.md): decrypt an
 * enveloped or auth-enveloped message with a private key that stays on the token. The output is
 * atomic: nothing appears unless decryption (and, for GCM, authentication) succeeded.
 */
#include <string.h>

#include "cli.h"

static void report_json(FILE *f, const p11s_decrypt_info *info,
    const p11s_header_protection *hp)
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
	fputc(',', f);
	/*
	 * RFC 9788 (docs/envelope.md "Header protection"): what the payload protects, and the
	 * outer fields that differ; null when the payload has no hp parameter. For a payload that
	 * is signed (wrap), "signed_payload": its signature is verify's or unwrap's to check.
	 */
	json_key(f, "header_protection");
	if (hp != NULL) {
		json_header_protection(f, hp->hp, hp->fields, hp->n_fields, hp->differs,
		    hp->n_differs);
		fputc(',', f);
		json_key(f, "header_protection_signed_payload");
		fputs(hp->signed_payload ? "true" : "false", f);
	} else {
		fputs("null", f);
	}
	fputs("}\n", f);
}

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_TOKEN = CLI_O_OWN };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		{ "token", required_argument, NULL, O_TOKEN },
		CLI_OPT_IN,
		CLI_OPT_OUT,
		CLI_OPT_REQUIRE_AUTHENTICATED,
		{ NULL, 0, NULL, 0 },
	};
	p11s_decrypt_opts o = P11S_DECRYPT_OPTS_INIT;
	p11s_decrypt_info info;
	p11s_header_protection *hp = NULL;
	cli_args a;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int c, status;

	cli_args_init(&a, "decrypt");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == O_TOKEN) {
			o.token_uri = optarg;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK ||
	    (status = cli_policy_apply(g, &a)) != EXIT_OK) {
		goto out;
	}
	o.require_authenticated = a.require_authenticated;
	o.header_protection = &hp;
	if (a.key_uri != NULL && o.token_uri != NULL) {
		status = cli_usage_error("decrypt: --key and --token exclude each other");
		goto out;
	}
	if (g->json && (a.out_path == NULL || strcmp(a.out_path, "-") == 0)) {
		status = cli_usage_error("decrypt: --json reports on stdout, so it needs "
		                         "--out FILE");
		goto out;
	}
	if ((status = cli_args_input(&a)) != EXIT_OK) {
		goto out;
	}
	if (cli_open(g, a.key_uri ? a.key_uri : o.token_uri, &ctx) < 0 ||
	    (a.key_uri != NULL && cli_key_find(g, ctx, a.key_uri, &key) < 0)) {
		status = cli_fail();
		goto out;
	}
	if ((status = cli_args_output(&a)) != EXIT_OK) {
		goto out;
	}
	status = cli_args_commit(&a,
	    p11s_decrypt_message(ctx, key, a.in, cli_output_file(a.out), &o, &info));
	if (status != EXIT_OK) {
		goto out;
	}
	if (!info.authenticated) {
		/* STANDARDS.md §12 (EFAIL): CBC content may have been altered or spliced. */
		cli_policy_warn_unauthenticated(&info);
	} else {
		p11s_log(P11S_LOG_INFO, "decrypted %s (%s, %s); authentication tag verified",
		    info.content_type, info.cipher, info.key_management);
	}
	/* Where an outer field differs and the sender did not say so (HP-Outer): a warning. */
	for (size_t i = 0; hp != NULL && i < hp->n_differs; i++) {
		const p11s_header_field *d = &hp->differs[i];

		if (!d->exposed) {
			p11s_log(P11S_LOG_WARN, "protected-header-differs: the outer %s (%s) is not the "
			    "protected one (%s); the output has the protected one (RFC 9788 §4.5)",
			    d->name, d->outer ? d->outer : "absent", d->value ? d->value : "absent");
		}
	}
	if (g->json) {
		report_json(stdout, &info, hp);
		if (fflush(stdout) != 0) {
			status = EXIT_USAGE;
		}
	}
out:
	p11s_header_protection_free(hp);
	p11s_key_free(key);
	cli_close(g, ctx);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_decrypt = {
	"decrypt",
	"decrypt an enveloped or auth-enveloped message with a key that stays on the token",
	"decrypt [--key URI | --token URI] [--in FILE] [--out FILE] [--require-authenticated]\n"
	"\n"
	"  --key URI       the private key (pkcs11: URI); only its certificate may match a\n"
	"                  recipient of the message\n"
	"  --token URI     without --key: search the keys of these tokens (default: all)\n"
	"  --in FILE       encrypted message (default stdin)\n"
	"  --out FILE      decrypted message (default stdout); written only on success\n"
	"  --require-authenticated\n"
	"                  refuse enveloped-data (CBC, no integrity protection) with exit 1;\n"
	"                  without it such content is decrypted with a warning on stderr\n"
	"\n"
	"The key is found by the message's recipient identifiers (issuer and serial number or\n"
	"subject key identifier). Exit 1: no recipient for the key, or \"decryption failed\"\n"
	"(one message for every failure that depends on the encrypted data); exit 3: token\n"
	"failure, including a mechanism or parameters the token refuses.",
	run,
};

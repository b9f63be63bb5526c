/*
 * `p11smime receipt --key URI [--cert FILE] [--chain FILE]... [--in FILE] [--out FILE]` and
 * `p11smime verify-receipt --original FILE [--trust FILE]... [--certs FILE]... [--crl FILE]...
 * [--at TIME] [--in FILE]` (CLI.md): ESS signed receipts (RFC 2634 §2.4, §2.6).
 */

#include "cli.h"

static int run_receipt(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPT_KEY,
		CLI_OPTS_SIGNER,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		{ NULL, 0, NULL, 0 },
	};
	p11s_receipt_opts ro = P11S_RECEIPT_OPTS_INIT;
	cli_args a;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int c, status;

	cli_args_init(&a, "receipt");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (a.key_uri == NULL) {
		status = cli_usage_error("receipt: --key URI is required");
		goto out;
	}
	if ((status = cli_args_signer(&a)) != EXIT_OK) {
		goto out;
	}
	ro.cert = a.sign.cert;
	ro.chain = a.sign.chain;
	if ((status = cli_args_input(&a)) != EXIT_OK ||
	    (status = cli_open_key(g, a.key_uri, &ctx, &key)) != EXIT_OK ||
	    (status = cli_args_output(&a)) != EXIT_OK) {
		goto out;
	}
	/* No receipt requested: P11S_ERR_USAGE, exit 2 (CLI.md). */
	status = cli_args_commit(&a, p11s_receipt_create(key, &ro, a.in, cli_output_file(a.out)));
out:
	p11s_key_free(key);
	cli_close(g, ctx);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_receipt = {
	"receipt",
	"write the ESS signed receipt (RFC 2634) for a signed message that requests one",
	"receipt --key URI [--cert FILE] [--chain FILE]... [--in FILE] [--out FILE]",
	run_receipt,
};

/* A JSON string or null, and a comma. */
static void opt_str(FILE *f, const char *s)
{
	if (s != NULL) {
		json_str(f, s);
	} else {
		fputs("null", f);
	}
	fputc(',', f);
}

static void reasons_json(FILE *f, const p11s_verify_reason *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "code");
		json_str(f, v[i].code);
		fputc(',', f);
		json_key(f, "message");
		json_str(f, v[i].message);
		fputc('}', f);
	}
	fputc(']', f);
}

static void report(FILE *f, int json, const p11s_receipt_result *r)
{
	if (json) {
		fputc('{', f);
		json_key(f, "valid");
		fputs(r->valid ? "true," : "false,", f);
		json_key(f, "subject");
		if (r->subject) {
			json_str(f, r->subject);
		} else {
			fputs("null", f);
		}
		fputc(',', f);
		json_key(f, "signing_time");
		if (r->signing_time) {
			json_str(f, r->signing_time);
		} else {
			fputs("null", f);
		}
		fputc(',', f);
		json_key(f, "content_identifier");
		if (r->content_identifier) {
			json_str(f, r->content_identifier);
		} else {
			fputs("null", f);
		}
		fputc(',', f);
		json_key(f, "chain");
		fputc('[', f);
		for (size_t i = 0; i < r->n_chain; i++) {
			if (i) {
				fputc(',', f);
			}
			json_str(f, r->chain[i]);
		}
		fputs("],", f);
		/* The algorithms, always (docs/verify.md, "Weak algorithms"). */
		json_key(f, "digest");
		opt_str(f, r->digest);
		json_key(f, "signature_algorithm");
		opt_str(f, r->signature_algorithm);
		json_key(f, "key_type");
		opt_str(f, r->key_type);
		json_key(f, "key_bits");
		fprintf(f, "%d,", r->key_bits);
		json_key(f, "reasons");
		reasons_json(f, r->reasons, r->n_reasons);
		fputc(',', f);
		json_key(f, "warnings");
		reasons_json(f, r->warnings, r->n_warnings);
		fputs("}\n", f);
		return;
	}
	fprintf(f, "verdict: %s\n", r->valid ? "VALID RECEIPT" : "INVALID RECEIPT");
	fprintf(f, "receipt signer: %s\n", r->subject ? r->subject : "(certificate not found)");
	fprintf(f, "signing time: %s\n", r->signing_time ? r->signing_time : "(none)");
	fprintf(f, "content identifier: %s\n",
	    r->content_identifier ? r->content_identifier : "(none)");
	fprintf(f, "content type: %s\n", r->content_type ? r->content_type : "?");
	fprintf(f, "chain:%s\n", r->n_chain ? "" : " (not built)");
	for (size_t i = 0; i < r->n_chain; i++) {
		fprintf(f, "  %zu: %s\n", i, r->chain[i]);
	}
	fprintf(f, "digest: %s\n", r->digest ? r->digest : "?");
	fprintf(f, "signature algorithm: %s\n", r->signature_algorithm ? r->signature_algorithm
	                                                               : "?");
	if (r->key_type != NULL) {
		fprintf(f, "key: %s %d bits\n", r->key_type, r->key_bits);
	}
	for (size_t i = 0; i < r->n_reasons; i++) {
		fprintf(f, "reason: %s: %s\n", r->reasons[i].code, r->reasons[i].message);
	}
	for (size_t i = 0; i < r->n_warnings; i++) {
		fprintf(f, "warning: %s: %s\n", r->warnings[i].code, r->warnings[i].message);
	}
}

static int run_verify_receipt(cli_globals *g, int argc, char **argv)
{
	enum { O_ORIG = CLI_O_OWN };
	static const struct option opts[] = {
		{ "original", required_argument, NULL, O_ORIG },
		CLI_OPTS_VERIFY,
		CLI_OPT_IN,
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	const char *orig_path = NULL;
	p11s_receipt_result *res = NULL;
	FILE *orig = NULL;
	int c, status;

	cli_args_init(&a, "verify-receipt");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == O_ORIG) {
			orig_path = optarg;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (orig_path == NULL) {
		status = cli_usage_error("verify-receipt: --original FILE is required");
		goto out;
	}
	if ((status = cli_args_verify_opts(&a)) != EXIT_OK ||
	    (status = cli_policy_apply(g, &a)) != EXIT_OK ||
	    (status = cli_input_open(orig_path, &orig)) != EXIT_OK ||
	    (status = cli_args_input(&a)) != EXIT_OK) {
		goto out;
	}
	if (p11s_receipt_verify(&res, a.in, orig, &a.verify) < 0) {
		status = cli_fail();
		goto out;
	}
	report(stdout, g->json, res);
	for (size_t i = 0; i < res->n_warnings; i++) {
		p11s_log(P11S_LOG_WARN, "%s: %s", res->warnings[i].code, res->warnings[i].message);
	}
	status = res->valid ? EXIT_OK : EXIT_VERIFY;
out:
	p11s_receipt_result_free(res);
	if (orig != NULL) {
		fclose(orig);
	}
	cli_args_free(&a);
	return status;
}

const cli_command cmd_verify_receipt = {
	"verify-receipt",
	"verify an ESS signed receipt against the original signed message",
	"verify-receipt --original FILE [--trust FILE]... [--certs FILE]... [--crl FILE]...\n"
	"       [--at TIME] [--in FILE] [--allow-weak]",
	run_verify_receipt,
};

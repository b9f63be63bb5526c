/*
 * `p11smime receipt --key URI [--cert FILE] [--chain FILE]... [--in FILE] [--out FILE]` and
 * `p11smime verify-receipt --original FILE [--trust FILE]... [--certs FILE]... [--crl FILE]...
 * [--at TIME] [--in FILE]` (CLI.md): ESS signed receipts (RFC 2634 §2.4, §2.6).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run_receipt(cli_globals *g, int argc, char **argv)
{
	enum { O_KEY = 1, O_CERT, O_CHAIN, O_IN, O_OUT };
	static const struct option opts[] = {
		{ "key", required_argument, NULL, O_KEY },
		{ "cert", required_argument, NULL, O_CERT },
		{ "chain", required_argument, NULL, O_CHAIN },
		{ "in", required_argument, NULL, O_IN },
		{ "out", required_argument, NULL, O_OUT },
		{ NULL, 0, NULL, 0 },
	};
	p11s_receipt_opts ro = P11S_RECEIPT_OPTS_INIT;
	const char *key_uri = NULL, *cert_path = NULL, *in_path = NULL, *out_path = NULL;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *cert = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *in = NULL;
	cli_output *o = NULL;
	int c, status = EXIT_USAGE;

	if (chain == NULL) {
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
		case O_IN:
			in_path = optarg;
			break;
		case O_OUT:
			out_path = optarg;
			break;
		default:
			status = cli_usage_error("receipt: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("receipt: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (key_uri == NULL) {
		status = cli_usage_error("receipt: --key URI is required");
		goto out;
	}
	if (cert_path != NULL && (status = cli_load_cert(cert_path, &cert)) != EXIT_OK) {
		goto out;
	}
	ro.cert = cert;
	ro.chain = chain;
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
	/* No receipt requested: P11S_ERR_USAGE, exit 2 (CLI.md). */
	if (p11s_receipt_create(key, &ro, in, cli_output_file(o)) < 0) {
		status = cli_fail();
		cli_output_abort(o);
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
	sk_X509_pop_free(chain, X509_free);
	return status;
}

const cli_command cmd_receipt = {
	"receipt",
	"write the ESS signed receipt (RFC 2634) for a signed message that requests one",
	"receipt --key URI [--cert FILE] [--chain FILE]... [--in FILE] [--out FILE]",
	run_receipt,
};

static int push(const char ***v, size_t *n, const char *s)
{
	const char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (nv == NULL) {
		return -1;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
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
		json_key(f, "reasons");
		fputc('[', f);
		for (size_t i = 0; i < r->n_reasons; i++) {
			fprintf(f, "%s{", i ? "," : "");
			json_key(f, "code");
			json_str(f, r->reasons[i].code);
			fputc(',', f);
			json_key(f, "message");
			json_str(f, r->reasons[i].message);
			fputc('}', f);
		}
		fputs("]}\n", f);
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
	for (size_t i = 0; i < r->n_reasons; i++) {
		fprintf(f, "reason: %s: %s\n", r->reasons[i].code, r->reasons[i].message);
	}
}

static int run_verify_receipt(cli_globals *g, int argc, char **argv)
{
	enum { O_ORIG = 1, O_TRUST, O_CERTS, O_CRL, O_AT, O_IN };
	static const struct option opts[] = {
		{ "original", required_argument, NULL, O_ORIG },
		{ "trust", required_argument, NULL, O_TRUST },
		{ "certs", required_argument, NULL, O_CERTS },
		{ "crl", required_argument, NULL, O_CRL },
		{ "at", required_argument, NULL, O_AT },
		{ "in", required_argument, NULL, O_IN },
		{ NULL, 0, NULL, 0 },
	};
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	const char **trust = NULL, **certs = NULL, **crls = NULL;
	const char *orig_path = NULL, *in_path = NULL, *at = NULL;
	p11s_receipt_result *res = NULL;
	FILE *in = NULL, *orig = NULL;
	int c, status = EXIT_USAGE;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case O_ORIG:
			orig_path = optarg;
			break;
		case O_TRUST:
			bad = push(&trust, &o.n_trust_files, optarg);
			break;
		case O_CERTS:
			bad = push(&certs, &o.n_cert_files, optarg);
			break;
		case O_CRL:
			bad = push(&crls, &o.n_crl_files, optarg);
			break;
		case O_AT:
			at = optarg;
			break;
		case O_IN:
			in_path = optarg;
			break;
		default:
			status = cli_usage_error("verify-receipt: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
		if (bad) {
			fprintf(stderr, "p11smime: error: out of memory\n");
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("verify-receipt: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (orig_path == NULL) {
		status = cli_usage_error("verify-receipt: --original FILE is required");
		goto out;
	}
	o.trust_files = trust;
	o.cert_files = certs;
	o.crl_files = crls;
	if (at != NULL) {
		if (p11s_verify_parse_time(at, &o.time) < 0) {
			status = cli_fail();
			goto out;
		}
		o.has_time = 1;
	}
	if ((status = cli_input_open(orig_path, &orig)) != EXIT_OK ||
	    (status = cli_input_open(in_path, &in)) != EXIT_OK) {
		goto out;
	}
	if (p11s_receipt_verify(&res, in, orig, &o) < 0) {
		status = cli_fail();
		goto out;
	}
	report(stdout, g->json, res);
	status = res->valid ? EXIT_OK : EXIT_VERIFY;
out:
	p11s_receipt_result_free(res);
	if (in != NULL) {
		fclose(in);
	}
	if (orig != NULL) {
		fclose(orig);
	}
	free(trust);
	free(certs);
	free(crls);
	return status;
}

const cli_command cmd_verify_receipt = {
	"verify-receipt",
	"verify an ESS signed receipt against the original signed message",
	"verify-receipt --original FILE [--trust FILE]... [--certs FILE]... [--crl FILE]...\n"
	"       [--at TIME] [--in FILE]",
	run_verify_receipt,
};

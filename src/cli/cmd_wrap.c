/*
 * `p11smime wrap` (sign then encrypt; --triple: sign, encrypt, sign — RFC 2634 §1.1) and
 * `p11smime unwrap` (peel any nesting of signed and enveloped layers, verifying and decrypting
 * each; RFC 8551 §3.6). Both compose the sign, encrypt, verify and decrypt APIs through
 * unlinked temporary files, so memory does not grow with the message.
 */
#include <string.h>

#include "recipients.h"

/* RFC 8551 §3.6: arbitrary nesting "within resource limits". */
#define UNWRAP_MAX_LAYERS 16

/* A fresh unlinked temporary file; prints its error. */
static FILE *spool(void)
{
	FILE *f = tmpfile();

	if (f == NULL) {
		fprintf(stderr, "p11smime: error: cannot create a temporary file\n");
	}
	return f;
}

static int rewind_ok(FILE *f)
{
	return fflush(f) == 0 && fseek(f, 0, SEEK_SET) == 0;
}

static int run_wrap(cli_globals *g, int argc, char **argv)
{
	enum { O_TRIPLE = CLI_O_OWN };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		{ "triple", no_argument, NULL, O_TRIPLE },
		CLI_OPTS_SIGNATURE,
		CLI_OPTS_SIGNER,
		CLI_OPTS_ENCRYPT,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		/* --to ADDRESS (recipients.c, docs/certificates.md) */
		CLI_OPT_STORE,
		CLI_OPT_LDAP,
		{ "trust", required_argument, NULL, CLI_O_TRUST },
		{ "certs", required_argument, NULL, CLI_O_CERTS },
		{ "crl", required_argument, NULL, CLI_O_CRL },
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	cli_recipients rcp = { 0 };
	cli_lookup lk = { 0 };
	int triple = 0, c, rc, status;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *signed1 = NULL, *enveloped = NULL;

	cli_args_init(&a, "wrap");
	a.terse = 1;
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == O_TRIPLE) {
			triple = 1;
		} else if (cli_lookup_option(&lk, c, optarg)) {
			continue;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (a.key_uri == NULL || a.n_to == 0) {
		status = cli_usage_error("wrap needs --key URI and at least one --to CERTFILE");
		goto out;
	}
	cli_args_encrypt_opts(&a);
	/* Addresses resolve (and validate) before the token signs anything. */
	if ((status = cli_recipients_resolve(g, &a, &lk, &rcp)) != EXIT_OK) {
		goto out;
	}
	/* Check every recipient before the token signs anything (a PIN may be asked per use). */
	for (size_t i = 0; i < rcp.n_files; i++) {
		X509 *r = NULL;

		if ((status = cli_load_cert(rcp.files[i], &r)) != EXIT_OK) {
			goto out;
		}
		if (p11s_encrypt_check_recipient(r, rcp.files[i]) < 0) {
			X509_free(r);
			status = cli_fail();
			goto out;
		}
		X509_free(r);
	}
	if ((status = cli_args_signer(&a)) != EXIT_OK ||
	    (status = cli_open_key(g, a.key_uri, &ctx, &key)) != EXIT_OK ||
	    (status = cli_args_input(&a)) != EXIT_OK) {
		goto out;
	}
	status = EXIT_USAGE;
	if ((signed1 = spool()) == NULL || (triple && (enveloped = spool()) == NULL) ||
	    cli_args_output(&a) != EXIT_OK) {
		goto out;
	}
	/* RFC 2634 §1.1: inner signature, then encryption, then (triple) the outer signature. */
	rc = p11s_sign_message(key, &a.sign, a.in, signed1) < 0 || !rewind_ok(signed1) ||
	    p11s_encrypt_message(signed1, triple ? enveloped : cli_output_file(a.out),
	        &a.encrypt) < 0 ||
	    (triple && (!rewind_ok(enveloped) ||
	                   p11s_sign_message(key, &a.sign, enveloped, cli_output_file(a.out)) < 0))
	    ? -1 : 0;
	status = cli_args_commit(&a, rc);
out:
	if (signed1 != NULL) {
		fclose(signed1);
	}
	if (enveloped != NULL) {
		fclose(enveloped);
	}
	p11s_key_free(key);
	cli_close(g, ctx);
	cli_recipients_free(&rcp);
	cli_lookup_free(&lk);
	cli_args_free(&a);
	return status;
}

/* One layer's outcome, for the report. */
typedef struct layer {
	p11s_msg_kind kind;
	int status;                 /* exit status of this layer */
	p11s_verify_result *vr;     /* signed layers */
	p11s_decrypt_info di;       /* enveloped layers that decrypted */
	char error[1024];           /* the reason when the layer failed outside a verify report */
} layer;

static void report_text(FILE *f, const layer *l, size_t n, int status)
{
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "layer %zu: %s\n", i + 1,
		    l[i].kind == P11S_MSG_SIGNED ? "signed" : "enveloped");
		if (l[i].vr != NULL) {
			cli_verify_report_text(f, l[i].vr);
		} else if (l[i].status == EXIT_OK) {
			fprintf(f, "  decrypted: %s, %s%s, key %s\n", l[i].di.content_type,
			    l[i].di.cipher,
			    l[i].di.authenticated ? " (authenticated)"
			                          : " (NOT integrity-protected: CBC, see EFAIL)",
			    l[i].di.key_uri);
		}
		if (l[i].error[0] != '\0') {
			fprintf(f, "  error: %s\n", l[i].error);
		}
	}
	fprintf(f, "unwrap: %s (%zu layer%s)\n", status == EXIT_OK ? "OK" : "FAILED", n,
	    n == 1 ? "" : "s");
}

static void report_json(FILE *f, const layer *l, size_t n, int status)
{
	fprintf(f, "{\"valid\":%s,\"exit_status\":%d,\"layers\":[", status == EXIT_OK ? "true" : "false",
	    status);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{\"layer\":%zu,\"type\":\"%s\",\"ok\":%s", i ? "," : "", i + 1,
		    l[i].kind == P11S_MSG_SIGNED ? "signed" : "enveloped",
		    l[i].status == EXIT_OK ? "true" : "false");
		if (l[i].vr != NULL) {
			fputs(",\"verify\":", f);
			cli_verify_report_json(f, l[i].vr);
		} else if (l[i].status == EXIT_OK) {
			fputs(",\"content_type\":", f);
			json_str(f, l[i].di.content_type);
			fputs(",\"cipher\":", f);
			json_str(f, l[i].di.cipher);
			fprintf(f, ",\"authenticated\":%s,\"key\":", l[i].di.authenticated ? "true" : "false");
			json_str(f, l[i].di.key_uri);
		}
		if (l[i].error[0] != '\0') {
			fputs(",\"error\":", f);
			json_str(f, l[i].error);
		}
		fputc('}', f);
	}
	fputs("]}\n", f);
}

/* The exit status of the last library error, remembering its message for the report. */
static int layer_fail(layer *l)
{
	const p11s_error *e = p11s_error_last();

	snprintf(l->error, sizeof(l->error), "%s", e->message);
	switch (p11s_error_class(e->code)) {
	case P11S_ECLASS_VERIFY:
		return EXIT_VERIFY;
	case P11S_ECLASS_TOKEN:
		return EXIT_TOKEN;
	default:
		return EXIT_USAGE;
	}
}

static int run_unwrap(cli_globals *g, int argc, char **argv)
{
	enum { O_TOKEN = CLI_O_OWN };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		{ "token", required_argument, NULL, O_TOKEN },
		CLI_OPTS_VERIFY,
		CLI_OPT_NO_SENDER_CHECK,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	p11s_decrypt_opts dopts = P11S_DECRYPT_OPTS_INIT;
	layer layers[UNWRAP_MAX_LAYERS];
	size_t nlayers = 0;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *cur = NULL;
	cli_output *out = NULL;
	int c, status, worst = EXIT_OK, done = 0;

	memset(layers, 0, sizeof(layers));
	cli_args_init(&a, "unwrap");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == O_TOKEN) {
			dopts.token_uri = optarg;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (g->json && a.out_path != NULL && strcmp(a.out_path, "-") == 0) {
		status = cli_usage_error("unwrap: --json and --out - both want stdout");
		goto out;
	}
	if ((status = cli_args_verify_opts(&a)) != EXIT_OK) {
		goto out;
	}
	if ((status = cli_input_open(a.in_path, &cur)) != EXIT_OK) {
		goto out;
	}
	while (!done) {
		p11s_msg_kind kind;
		layer *l;
		FILE *next = NULL;

		if (p11s_message_kind(cur, &kind) < 0) {
			worst = cli_fail();
			goto report;
		}
		if (kind == P11S_MSG_PLAIN) {
			break;
		}
		if (nlayers == UNWRAP_MAX_LAYERS) {
			fprintf(stderr, "p11smime: error: more than %d S/MIME layers\n",
			    UNWRAP_MAX_LAYERS);
			worst = EXIT_USAGE;
			goto report;
		}
		l = &layers[nlayers++];
		l->kind = kind;
		if ((next = spool()) == NULL) {
			worst = EXIT_USAGE;
			goto report;
		}
		if (kind == P11S_MSG_SIGNED) {
			FILE *entity = spool();

			if (entity == NULL) {
				fclose(next);
				worst = EXIT_USAGE;
				goto report;
			}
			if (p11s_verify_message(&l->vr, cur, &a.verify) < 0) {
				l->status = layer_fail(l);
			} else if (!l->vr->valid) {
				l->status = EXIT_VERIFY;
			} else if (p11s_verify_write_content(l->vr, entity) < 0 || !rewind_ok(entity) ||
			    p11s_message_join(cur, entity, next) < 0) {
				/* The signed entity joined with the outer header fields is the next layer. */
				l->status = layer_fail(l);
			}
			fclose(entity);
		} else {
			if (ctx == NULL &&
			    (cli_open(g, a.key_uri, &ctx) < 0 ||
			        (a.key_uri != NULL && p11s_key_find(ctx, a.key_uri, &key) < 0))) {
				l->status = layer_fail(l);
			} else if (fseek(cur, 0, SEEK_SET) != 0 ||
			    p11s_decrypt_message(ctx, key, cur, next, &dopts, &l->di) < 0) {
				l->status = layer_fail(l);
			}
		}
		worst = l->status > worst ? l->status : worst;
		if (l->status != EXIT_OK || !rewind_ok(next)) {
			/* A layer that fails ends the peeling: nothing inside it is trustworthy. */
			fclose(next);
			done = 1;
		} else {
			fclose(cur);
			cur = next;
		}
	}
	if (worst == EXIT_OK && nlayers == 0) {
		fprintf(stderr, "p11smime: error: the message has no signed or enveloped layer\n");
		worst = EXIT_VERIFY;
	}
	if (worst == EXIT_OK) {
		/* Every layer verified or decrypted: publish the innermost message, atomically. */
		if ((status = cli_output_open(a.out_path, &out)) != EXIT_OK ||
		    fseek(cur, 0, SEEK_SET) != 0) {
			worst = EXIT_USAGE;
			goto report;
		}
		{
			char buf[65536];
			size_t r;

			while ((r = fread(buf, 1, sizeof(buf), cur)) > 0) {
				if (fwrite(buf, 1, r, cli_output_file(out)) != r) {
					break;
				}
			}
			if (ferror(cur) || ferror(cli_output_file(out))) {
				fprintf(stderr, "p11smime: error: writing the output failed\n");
				cli_output_abort(out);
				out = NULL;
				worst = EXIT_USAGE;
				goto report;
			}
		}
	}
report:
	{
		/* The report goes to stderr when the content goes to stdout. */
		FILE *rep = (a.out_path == NULL || strcmp(a.out_path, "-") == 0) && !g->json
		    ? stderr : stdout;

		if (g->json) {
			report_json(rep, layers, nlayers, worst);
		} else if (p11s_log_get_level() >= P11S_LOG_WARN || worst != EXIT_OK) {
			report_text(rep, layers, nlayers, worst);
		}
		fflush(rep);
	}
	if (out != NULL) {
		status = worst == EXIT_OK ? cli_output_commit(out) : (cli_output_abort(out), worst);
		out = NULL;
	} else {
		status = worst;
	}
out:
	cli_output_abort(out);
	for (size_t i = 0; i < nlayers; i++) {
		p11s_verify_result_free(layers[i].vr);
	}
	if (cur != NULL) {
		fclose(cur);
	}
	p11s_key_free(key);
	cli_close(g, ctx);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_wrap = {
	"wrap",
	"sign, then encrypt (--triple: sign, encrypt, sign again — RFC 2634 triple wrapping)",
	"wrap --key URI --to CERTFILE|ADDRESS [--to ...]... [--triple] [--digest D] [--pss] "
	"[--opaque] [--cert FILE] [--chain FILE]... [--cipher C] [--oaep] [--store DB] [--ldap URL]... "
	"[--trust FILE]... [--certs FILE]... [--crl FILE]... [--in FILE] [--out FILE]",
	run_wrap,
};

const cli_command cmd_unwrap = {
	"unwrap",
	"peel signed and enveloped layers, verifying and decrypting each; report every layer",
	"unwrap [--key URI] [--token URI] [--trust FILE]... [--certs FILE]... [--crl FILE]... "
	"[--at TIME] [--no-sender-check] [--in FILE] [--out FILE]",
	run_unwrap,
};

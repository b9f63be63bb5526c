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
/* S/MIME parts reported inside the innermost content. */
#define UNWRAP_MAX_EMBEDDED 16

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
	p11s_sign_opts inner, outer_sign;
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
	if ((status = cli_args_protect_headers(&a, g->config, &a.sign.protect_headers)) !=
	        EXIT_OK ||
	    (status = cli_args_signer(&a)) != EXIT_OK ||
	    (status = cli_open_key(g, a.key_uri, &ctx, &key)) != EXIT_OK ||
	    (status = cli_args_input(&a)) != EXIT_OK) {
		goto out;
	}
	status = EXIT_USAGE;
	if ((signed1 = spool()) == NULL || (triple && (enveloped = spool()) == NULL) ||
	    cli_args_output(&a) != EXIT_OK) {
		goto out;
	}
	/*
	 * RFC 2634 §1.1: inner signature, then encryption, then (triple) the outer signature.
	 * RFC 9788 (on unless --no-protect-headers): the inner signed entity is the Cryptographic
	 * Payload (hp="cipher", HP-Outer, the outer Subject "[...]"); the layers around add none.
	 */
	inner = a.sign;
	if (inner.protect_headers) {
		inner.protect_headers = P11S_PROTECT_HEADERS_ENCRYPTED;
	}
	outer_sign = a.sign;
	outer_sign.protect_headers = 0;
	/* Both outputs are temporary files, discarded on failure: one read of the input. */
	inner.out_private = outer_sign.out_private = 1;
	rc = p11s_sign_message(key, &inner, a.in, signed1) < 0 || !rewind_ok(signed1) ||
	    p11s_encrypt_message(signed1, triple ? enveloped : cli_output_file(a.out),
	        &a.encrypt) < 0 ||
	    (triple && (!rewind_ok(enveloped) ||
	                   p11s_sign_message(key, &outer_sign, enveloped, cli_output_file(a.out)) < 0))
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

/*
 * One layer's verdict (issue 23 "every layer, always"). Kept as data, not as control flow:
 * each check that judges a layer (signature, decryption; later the algorithm policy) adds a
 * reason, the worst exit status wins, and the peeling goes on whenever the layer's inside can
 * still be read.
 */
#define LAYER_MAX_REASONS 8

typedef struct layer_reason {
	char code[48];              /* stable token: "content-altered", "decryption-failed", ... */
	char message[512];
} layer_reason;

typedef struct layer {
	p11s_msg_kind kind;
	int status;                 /* exit status of this layer (EXIT_OK: good) */
	int decrypted;              /* enveloped: the plaintext was obtained */
	int peeled;                 /* the inside was read (a bad signature may still be peeled) */
	p11s_verify_result *vr;     /* signed layers that reached a verdict */
	p11s_decrypt_info di;       /* enveloped layers that decrypted */
	layer_reason reasons[LAYER_MAX_REASONS];
	size_t n_reasons;
	char error[1024];           /* the reason when the layer failed outside a verify report */
} layer;

/* An S/MIME entity inside the innermost content: content, not protection (RFC 9787 §3). */
typedef struct embedded {
	char path[64];
	char content_type[128];
	p11s_msg_kind kind;
	p11s_verify_result *vr;     /* signed parts: their own verdict */
	FILE *entity;               /* the part (vr reads from it until freed) */
} embedded;

static void layer_reason_add(layer *l, const char *code, const char *message)
{
	if (l->n_reasons < LAYER_MAX_REASONS) {
		snprintf(l->reasons[l->n_reasons].code, sizeof(l->reasons[0].code), "%s", code);
		snprintf(l->reasons[l->n_reasons].message, sizeof(l->reasons[0].message), "%s",
		    message ? message : "");
		l->n_reasons++;
	}
}

/* The verdict word of a layer: it verified/decrypted, it did not, or it could not be read. */
static const char *layer_verdict(const layer *l)
{
	return l->status == EXIT_OK ? "valid" : l->status == EXIT_VERIFY ? "invalid" : "error";
}

/* "signed", "enveloped" or "auth-enveloped" (known only once decrypted). */
static const char *layer_kind_name(const layer *l)
{
	if (l->kind == P11S_MSG_SIGNED) {
		return "signed";
	}
	return l->decrypted && l->di.authenticated ? "auth-enveloped" : "enveloped";
}

/* The reasons of a verify result, message level first, then each signer's (first signer). */
static void layer_reasons_from_verify(layer *l)
{
	const p11s_verify_result *r = l->vr;

	for (size_t i = 0; i < r->n_reasons; i++) {
		layer_reason_add(l, r->reasons[i].code, r->reasons[i].message);
	}
	for (size_t i = 0; i < r->n_signers; i++) {
		for (size_t j = 0; j < r->signers[i].n_reasons; j++) {
			layer_reason_add(l, r->signers[i].reasons[j].code, r->signers[i].reasons[j].message);
		}
	}
}

static const char *first_signer(const p11s_verify_result *r)
{
	return r != NULL && r->n_signers > 0 && r->signers[0].subject != NULL ? r->signers[0].subject
	                                                                      : NULL;
}

static void report_text(FILE *f, const layer *l, size_t n, const embedded *em, size_t nem,
    int status, int verbose)
{
	for (size_t i = 0; i < n; i++) {
		const char *signer = first_signer(l[i].vr);

		fprintf(f, "layer %zu: %s: %s", i + 1, layer_kind_name(&l[i]),
		    l[i].status == EXIT_OK ? "VALID" : l[i].status == EXIT_VERIFY ? "INVALID" : "ERROR");
		if (l[i].n_reasons > 0) {
			fprintf(f, " (%s)", l[i].reasons[0].code);
		}
		if (signer != NULL) {
			fprintf(f, ", signer %s", signer);
		}
		fputc('\n', f);
		if (l[i].vr != NULL && (verbose || l[i].status != EXIT_OK)) {
			cli_verify_report_text(f, l[i].vr);
		} else if (l[i].decrypted) {
			fprintf(f, "  decrypted: %s, %s%s, key %s\n", l[i].di.content_type,
			    l[i].di.cipher,
			    l[i].di.authenticated ? " (authenticated)"
			                          : " (NOT integrity-protected: CBC, see EFAIL)",
			    l[i].di.key_uri);
		}
		if (l[i].error[0] != '\0') {
			fprintf(f, "  error: %s\n", l[i].error);
		}
		if (l[i].status != EXIT_OK && l[i].peeled) {
			fprintf(f, "  (its content was still read; this layer does not vouch for it)\n");
		}
	}
	for (size_t i = 0; i < nem; i++) {
		/* RFC 9787 §3: inside the payload, so content of this message, not its protection. */
		if (em[i].kind == P11S_MSG_SIGNED) {
			const char *who = first_signer(em[i].vr);

			fprintf(f, "content: part %s (%s) is a signed attachment%s%s (%s); it does not "
			           "cover this message\n", em[i].path, em[i].content_type,
			    who ? " by " : "", who ? who : "",
			    em[i].vr == NULL ? "not verified" : em[i].vr->valid ? "its signature is valid"
			                                                        : "its signature is NOT valid");
		} else {
			fprintf(f, "content: part %s (%s) is an encrypted attachment (not opened)\n",
			    em[i].path, em[i].content_type);
		}
	}
	fprintf(f, "unwrap: %s (%zu layer%s)\n", status == EXIT_OK ? "OK" : "FAILED", n,
	    n == 1 ? "" : "s");
}

static void report_json(FILE *f, const layer *l, size_t n, const embedded *em, size_t nem,
    int status, int complete, int written)
{
	fprintf(f, "{\"valid\":%s,\"exit_status\":%d,\"complete\":%s,\"content_written\":%s,"
	           "\"layers\":[", status == EXIT_OK ? "true" : "false", status,
	    complete ? "true" : "false", written ? "true" : "false");
	for (size_t i = 0; i < n; i++) {
		const char *signer = first_signer(l[i].vr);

		/* "type" stays signed|enveloped (CLI contract); "kind" tells auth-enveloped apart. */
		fprintf(f, "%s{\"layer\":%zu,\"type\":\"%s\",\"kind\":\"%s\",\"ok\":%s,\"verdict\":\"%s\","
		           "\"peeled\":%s,\"reason\":", i ? "," : "", i + 1,
		    l[i].kind == P11S_MSG_SIGNED ? "signed" : "enveloped", layer_kind_name(&l[i]),
		    l[i].status == EXIT_OK ? "true" : "false", layer_verdict(&l[i]),
		    l[i].peeled ? "true" : "false");
		json_str(f, l[i].n_reasons > 0 ? l[i].reasons[0].code : NULL);
		fputs(",\"reasons\":[", f);
		for (size_t j = 0; j < l[i].n_reasons; j++) {
			fputs(j ? ",{\"code\":" : "{\"code\":", f);
			json_str(f, l[i].reasons[j].code);
			fputs(",\"message\":", f);
			json_str(f, l[i].reasons[j].message);
			fputc('}', f);
		}
		fputs("],\"signer\":", f);
		json_str(f, signer);
		fputs(",\"algorithms\":", f);
		if (l[i].vr != NULL && l[i].vr->n_signers > 0) {
			fputs("{\"digest\":", f);
			json_str(f, l[i].vr->signers[0].digest);
			fputs(",\"signature\":", f);
			json_str(f, l[i].vr->signers[0].signature_algorithm);
			fputc('}', f);
		} else if (l[i].decrypted) {
			fputs("{\"cipher\":", f);
			json_str(f, l[i].di.cipher);
			fputs(",\"key_management\":", f);
			json_str(f, l[i].di.key_management);
			fputc('}', f);
		} else {
			fputs("null", f);
		}
		if (l[i].vr != NULL) {
			fputs(",\"verify\":", f);
			cli_verify_report_json(f, l[i].vr);
		} else if (l[i].decrypted) {
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
	fputs("],\"embedded\":[", f);
	for (size_t i = 0; i < nem; i++) {
		fprintf(f, "%s{\"path\":", i ? "," : "");
		json_str(f, em[i].path);
		fputs(",\"content_type\":", f);
		json_str(f, em[i].content_type);
		fprintf(f, ",\"type\":\"%s\",\"covers_message\":false",
		    em[i].kind == P11S_MSG_SIGNED ? "signed" : "enveloped");
		if (em[i].kind == P11S_MSG_SIGNED) {
			fputs(",\"signer\":", f);
			json_str(f, first_signer(em[i].vr));
			fprintf(f, ",\"valid\":%s", em[i].vr != NULL && em[i].vr->valid ? "true" : "false");
		}
		fputc('}', f);
	}
	fputs("]}\n", f);
}

/* The exit status of the last library error, remembering its message for the report. */
static int layer_fail(layer *l)
{
	const p11s_error *e = p11s_error_last();
	const char *code;

	snprintf(l->error, sizeof(l->error), "%s", e->message);
	switch (e->code) {
	case P11S_ERR_DECRYPT:
		code = "decryption-failed";
		break;
	case P11S_ERR_NOT_FOUND:
		code = "no-key";
		break;
	case P11S_ERR_MALFORMED:
		code = "malformed";
		break;
	default:
		code = p11s_error_class(e->code) == P11S_ECLASS_TOKEN ? "token-error" : "error";
		break;
	}
	layer_reason_add(l, code, e->message);
	switch (p11s_error_class(e->code)) {
	case P11S_ECLASS_VERIFY:
		return EXIT_VERIFY;
	case P11S_ECLASS_TOKEN:
		return EXIT_TOKEN;
	default:
		return EXIT_USAGE;
	}
}

/* Copy `from` (from its start) to `to`; 0 or -1. */
static int copy_all(FILE *from, FILE *to)
{
	char buf[65536];
	size_t r;

	if (fseek(from, 0, SEEK_SET) != 0) {
		return -1;
	}
	while ((r = fread(buf, 1, sizeof(buf), from)) > 0) {
		if (fwrite(buf, 1, r, to) != r) {
			return -1;
		}
	}
	return ferror(from) || ferror(to) ? -1 : 0;
}

/* The S/MIME parts inside the innermost content (RFC 9787 §3), each signed one verified. */
static size_t find_embedded(FILE *content, const p11s_verify_opts *vo, embedded *em, size_t max)
{
	p11s_message_part *parts = NULL;
	size_t n = 0, k = 0;

	if (p11s_message_smime_parts(content, &parts, &n) < 0) {
		/* Not a MIME message we can walk: there is nothing embedded to report. */
		p11s_error_clear();
		return 0;
	}
	for (size_t i = 0; i < n && k < max; i++, k++) {
		embedded *e = &em[k];

		snprintf(e->path, sizeof(e->path), "%s", parts[i].path);
		snprintf(e->content_type, sizeof(e->content_type), "%s", parts[i].content_type);
		e->kind = parts[i].kind;
		e->vr = NULL;
		e->entity = parts[i].entity;
		parts[i].entity = NULL;
		if (e->kind == P11S_MSG_SIGNED && e->entity != NULL) {
			p11s_verify_opts o = *vo;

			/* The attachment's own From (if any) is not this message's: no sender check. */
			o.no_sender_check = 1;
			if (p11s_verify_message(&e->vr, e->entity, &o) < 0) {
				e->vr = NULL;
				p11s_error_clear();
			}
		}
	}
	p11s_message_parts_free(parts, n);
	return k;
}

static int run_unwrap(cli_globals *g, int argc, char **argv)
{
	enum { O_TOKEN = CLI_O_OWN, O_UNVERIFIED };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		{ "token", required_argument, NULL, O_TOKEN },
		{ "output-unverified", no_argument, NULL, O_UNVERIFIED },
		CLI_OPTS_VERIFY,
		CLI_OPT_NO_SENDER_CHECK,
		CLI_OPT_REQUIRE_AUTHENTICATED,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	p11s_decrypt_opts dopts = P11S_DECRYPT_OPTS_INIT;
	layer layers[UNWRAP_MAX_LAYERS];
	embedded em[UNWRAP_MAX_EMBEDDED];
	size_t nlayers = 0, nem = 0;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *cur = NULL;
	cli_output *out = NULL;
	int c, status, worst = EXIT_OK, done = 0, complete = 0, unverified_ok = 0, written = 0;

	memset(layers, 0, sizeof(layers));
	memset(em, 0, sizeof(em));
	cli_args_init(&a, "unwrap");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == O_TOKEN) {
			dopts.token_uri = optarg;
		} else if (c == O_UNVERIFIED) {
			unverified_ok = 1;
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
	if ((status = cli_args_verify_opts(&a)) != EXIT_OK ||
	    (status = cli_policy_apply(g, &a)) != EXIT_OK) {
		goto out;
	}
	dopts.require_authenticated = a.require_authenticated;
	if ((status = cli_input_open(a.in_path, &cur)) != EXIT_OK) {
		goto out;
	}
	/*
	 * Issue 23: every layer, always. A layer that fails is reported and the peeling goes on
	 * as long as its inside can be read (a signature that does not verify still has its
	 * signed entity; an enveloped layer that does not decrypt ends it). Only the layers that
	 * are the whole body are peeled (RFC 9787 §3, the cryptographic envelope); S/MIME parts
	 * deeper inside are content, reported as "embedded".
	 */
	while (!done) {
		p11s_msg_kind kind;
		layer *l;
		FILE *next = NULL;

		if (p11s_message_kind(cur, &kind) < 0) {
			worst = cli_fail();
			goto report;
		}
		if (kind == P11S_MSG_PLAIN) {
			complete = 1;
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
			} else {
				int rc;

				if (!l->vr->valid) {
					l->status = EXIT_VERIFY;
					layer_reasons_from_verify(l);
					/* Unverified: read on, but nothing inside is vouched for by this layer. */
					rc = p11s_verify_write_content_unverified(l->vr, entity);
				} else {
					rc = p11s_verify_write_content(l->vr, entity);
				}
				/* The signed entity joined with the outer header fields is the next layer. */
				if (rc < 0 || !rewind_ok(entity) || p11s_message_join(cur, entity, next) < 0) {
					int st = layer_fail(l);

					l->status = st > l->status ? st : l->status;
				} else {
					l->peeled = 1;
				}
			}
			cli_policy_warn_weak(l->vr);
			fclose(entity);
		} else {
			if (ctx == NULL &&
			    (cli_open(g, a.key_uri, &ctx) < 0 ||
			        (a.key_uri != NULL && p11s_key_find(ctx, a.key_uri, &key) < 0))) {
				l->status = layer_fail(l);
			} else if (fseek(cur, 0, SEEK_SET) != 0 ||
			    p11s_decrypt_message(ctx, key, cur, next, &dopts, &l->di) < 0) {
				l->status = layer_fail(l);
			} else {
				cli_policy_warn_unauthenticated(&l->di);
				l->decrypted = l->peeled = 1;
			}
		}
		worst = l->status > worst ? l->status : worst;
		if (!l->peeled || !rewind_ok(next)) {
			/* Nothing more can be read: the report says where it stopped. */
			fclose(next);
			done = 1;
		} else {
			fclose(cur);
			cur = next;
		}
	}
	if (nlayers == 0 && worst == EXIT_OK) {
		fprintf(stderr, "p11smime: error: the message has no signed or enveloped layer\n");
		worst = EXIT_VERIFY;
	}
	if (complete && nlayers > 0) {
		nem = find_embedded(cur, &a.verify, em, UNWRAP_MAX_EMBEDDED);
	}
	if (complete && nlayers > 0 && (worst == EXIT_OK || (unverified_ok && worst == EXIT_VERIFY))) {
		/*
		 * Every layer verified or decrypted — or the reader asked for the content of a
		 * message with a bad layer (--output-unverified; the exit status still says so).
		 * Published atomically: never a partial file.
		 */
		if (cli_output_open(a.out_path, &out) != EXIT_OK) {
			worst = EXIT_USAGE;
			goto report;
		}
		if (copy_all(cur, cli_output_file(out)) < 0) {
			fprintf(stderr, "p11smime: error: writing the output failed\n");
			cli_output_abort(out);
			out = NULL;
			worst = EXIT_USAGE;
			goto report;
		}
		written = 1;
	} else if (nlayers > 0 && worst != EXIT_OK) {
		fprintf(stderr, "p11smime: unwrap: content not written: %s\n",
		    complete ? "a layer is not valid (--output-unverified writes it anyway)"
		             : "a layer could not be opened");
	}
report:
	{
		/* The report goes to stderr when the content goes to stdout. */
		FILE *rep = (a.out_path == NULL || strcmp(a.out_path, "-") == 0) && !g->json
		    ? stderr : stdout;

		if (g->json) {
			report_json(rep, layers, nlayers, em, nem, worst, complete, written);
		} else if (p11s_log_get_level() >= P11S_LOG_WARN || worst != EXIT_OK) {
			report_text(rep, layers, nlayers, em, nem, worst,
			    p11s_log_get_level() >= P11S_LOG_INFO);
		}
		fflush(rep);
	}
	if (out != NULL) {
		int cst = cli_output_commit(out);

		status = cst != EXIT_OK ? cst : worst;
		out = NULL;
	} else {
		status = worst;
	}
out:
	cli_output_abort(out);
	for (size_t i = 0; i < nlayers; i++) {
		p11s_verify_result_free(layers[i].vr);
	}
	for (size_t i = 0; i < nem; i++) {
		p11s_verify_result_free(em[i].vr);
		if (em[i].entity != NULL) {
			fclose(em[i].entity);
		}
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
	"[--opaque] [--no-protect-headers] [--cert FILE] [--chain FILE]... [--cipher C] [--oaep] [--xdh-kdf K] "
	"[--store DB] [--ldap URL]... "
	"[--trust FILE]... [--certs FILE]... [--crl FILE]... [--in FILE] [--out FILE]",
	run_wrap,
};

const cli_command cmd_unwrap = {
	"unwrap",
	"peel every signed and enveloped layer, even past a failed one; report each",
	"unwrap [--key URI] [--token URI] [--trust FILE]... [--certs FILE]... [--crl FILE]... "
	"[--at TIME] [--no-sender-check] [--allow-weak] [--require-authenticated] "
	"[--output-unverified] [--in FILE] [--out FILE]",
	run_unwrap,
};

/*
 * `p11smime wrap` (sign then encrypt; --triple: sign, encrypt, sign — RFC 2634 §1.1) and
 * `p11smime unwrap` (peel any nesting of signed and enveloped layers, verifying and decrypting
 * each; RFC 8551 §3.6). Both compose the sign, encrypt, verify and decrypt APIs through
 * unlinked temporary files, so memory does not grow with the message.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* RFC 8551 §3.6: arbitrary nesting "within resource limits". */
#define UNWRAP_MAX_LAYERS 16

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

static int parse_digest(const char *s, p11s_digest *out)
{
	if (strcmp(s, "sha256") == 0) {
		*out = P11S_DIGEST_SHA256;
	} else if (strcmp(s, "sha384") == 0) {
		*out = P11S_DIGEST_SHA384;
	} else if (strcmp(s, "sha512") == 0) {
		*out = P11S_DIGEST_SHA512;
	} else {
		return -1;
	}
	return 0;
}

static int parse_cipher(const char *s, p11s_cipher *out)
{
	static const struct {
		const char *name;
		p11s_cipher c;
	} t[] = {
		{ "aes-256-gcm", P11S_CIPHER_AES_256_GCM },
		{ "aes-128-gcm", P11S_CIPHER_AES_128_GCM },
		{ "aes-256-cbc", P11S_CIPHER_AES_256_CBC },
		{ "aes-128-cbc", P11S_CIPHER_AES_128_CBC },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(s, t[i].name) == 0) {
			*out = t[i].c;
			return 0;
		}
	}
	return -1;
}

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
	enum { O_KEY = 1, O_TO, O_TRIPLE, O_DIGEST, O_PSS, O_OPAQUE, O_CERT, O_CHAIN, O_CIPHER,
		O_OAEP, O_IN, O_OUT };
	static const struct option opts[] = {
		{ "key", required_argument, NULL, O_KEY },
		{ "to", required_argument, NULL, O_TO },
		{ "triple", no_argument, NULL, O_TRIPLE },
		{ "digest", required_argument, NULL, O_DIGEST },
		{ "pss", no_argument, NULL, O_PSS },
		{ "opaque", no_argument, NULL, O_OPAQUE },
		{ "cert", required_argument, NULL, O_CERT },
		{ "chain", required_argument, NULL, O_CHAIN },
		{ "cipher", required_argument, NULL, O_CIPHER },
		{ "oaep", no_argument, NULL, O_OAEP },
		{ "in", required_argument, NULL, O_IN },
		{ "out", required_argument, NULL, O_OUT },
		{ NULL, 0, NULL, 0 },
	};
	p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	p11s_encrypt_opts eo = P11S_ENCRYPT_OPTS_INIT;
	const char *key_uri = NULL, *in_path = NULL, *out_path = NULL, *cert_path = NULL;
	const char **to = NULL;
	size_t nto = 0;
	int triple = 0, c, status = EXIT_USAGE;
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *in = NULL, *signed1 = NULL, *enveloped = NULL;
	cli_output *out = NULL;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case O_KEY:
			key_uri = optarg;
			break;
		case O_TO:
			if (push(&to, &nto, optarg) < 0) {
				fprintf(stderr, "p11smime: error: out of memory\n");
				goto out;
			}
			break;
		case O_TRIPLE:
			triple = 1;
			break;
		case O_DIGEST:
			if (parse_digest(optarg, &so.digest) < 0) {
				status = cli_usage_error("wrap: unknown digest '%s'", optarg);
				goto out;
			}
			break;
		case O_PSS:
			so.pss = 1;
			break;
		case O_OPAQUE:
			so.opaque = 1;
			break;
		case O_CERT:
			cert_path = optarg;
			break;
		case O_CHAIN: {
			STACK_OF(X509) *more = NULL;

			if ((status = cli_load_certs(optarg, &more)) != EXIT_OK) {
				goto out;
			}
			if (chain == NULL) {
				chain = more;
			} else {
				while (sk_X509_num(more) > 0) {
					sk_X509_push(chain, sk_X509_shift(more));
				}
				sk_X509_free(more);
			}
			status = EXIT_USAGE;
			break;
		}
		case O_CIPHER:
			if (parse_cipher(optarg, &eo.cipher) < 0) {
				status = cli_usage_error("wrap: unknown cipher '%s'", optarg);
				goto out;
			}
			break;
		case O_OAEP:
			eo.oaep = 1;
			break;
		case O_IN:
			in_path = optarg;
			break;
		case O_OUT:
			out_path = optarg;
			break;
		default:
			status = cli_usage_error("wrap: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("wrap: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (key_uri == NULL || nto == 0) {
		status = cli_usage_error("wrap needs --key URI and at least one --to CERTFILE");
		goto out;
	}
	eo.recipient_files = to;
	eo.n_recipient_files = nto;
	so.chain = chain;
	/* Check every recipient before the token signs anything (a PIN may be asked per use). */
	for (size_t i = 0; i < nto; i++) {
		X509 *r = NULL;

		if ((status = cli_load_cert(to[i], &r)) != EXIT_OK) {
			goto out;
		}
		if (p11s_encrypt_check_recipient(r, to[i]) < 0) {
			X509_free(r);
			status = cli_fail();
			goto out;
		}
		X509_free(r);
	}
	status = EXIT_USAGE;
	if (cert_path != NULL && (status = cli_load_cert(cert_path, &cert)) != EXIT_OK) {
		goto out;
	}
	so.cert = cert;
	if (cli_open(g, key_uri, &ctx) < 0 || p11s_key_find(ctx, key_uri, &key) < 0) {
		status = cli_fail();
		goto out;
	}
	if ((status = cli_input_open(in_path, &in)) != EXIT_OK) {
		goto out;
	}
	status = EXIT_USAGE;
	if ((signed1 = spool()) == NULL || (triple && (enveloped = spool()) == NULL) ||
	    cli_output_open(out_path, &out) != EXIT_OK) {
		goto out;
	}
	/* RFC 2634 §1.1: inner signature, then encryption, then (triple) the outer signature. */
	if (p11s_sign_message(key, &so, in, signed1) < 0 || !rewind_ok(signed1) ||
	    p11s_encrypt_message(signed1, triple ? enveloped : cli_output_file(out), &eo) < 0 ||
	    (triple && (!rewind_ok(enveloped) ||
	                   p11s_sign_message(key, &so, enveloped, cli_output_file(out)) < 0))) {
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
	if (signed1 != NULL) {
		fclose(signed1);
	}
	if (enveloped != NULL) {
		fclose(enveloped);
	}
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	free(to);
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
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "token", required_argument, NULL, 'T' },
		{ "trust", required_argument, NULL, 't' },
		{ "certs", required_argument, NULL, 'c' },
		{ "crl", required_argument, NULL, 'r' },
		{ "at", required_argument, NULL, 'a' },
		{ "no-sender-check", no_argument, NULL, 'n' },
		{ "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	p11s_verify_opts vo = P11S_VERIFY_OPTS_INIT;
	p11s_decrypt_opts dopts = P11S_DECRYPT_OPTS_INIT;
	const char **trust = NULL, **certs = NULL, **crls = NULL;
	const char *key_uri = NULL, *in_path = NULL, *out_path = NULL, *at = NULL;
	layer layers[UNWRAP_MAX_LAYERS];
	size_t nlayers = 0;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	FILE *cur = NULL;
	cli_output *out = NULL;
	int c, status = EXIT_USAGE, worst = EXIT_OK, done = 0;

	memset(layers, 0, sizeof(layers));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 'k':
			key_uri = optarg;
			break;
		case 'T':
			dopts.token_uri = optarg;
			break;
		case 't':
			bad = push(&trust, &vo.n_trust_files, optarg);
			break;
		case 'c':
			bad = push(&certs, &vo.n_cert_files, optarg);
			break;
		case 'r':
			bad = push(&crls, &vo.n_crl_files, optarg);
			break;
		case 'a':
			at = optarg;
			break;
		case 'n':
			vo.no_sender_check = 1;
			break;
		case 'i':
			in_path = optarg;
			break;
		case 'o':
			out_path = optarg;
			break;
		default:
			status = cli_usage_error("unwrap: unknown option or missing value '%s'",
			    argv[optind - 1]);
			goto out;
		}
		if (bad) {
			fprintf(stderr, "p11smime: error: out of memory\n");
			goto out;
		}
	}
	if (optind < argc) {
		status = cli_usage_error("unwrap: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (g->json && out_path != NULL && strcmp(out_path, "-") == 0) {
		status = cli_usage_error("unwrap: --json and --out - both want stdout");
		goto out;
	}
	vo.trust_files = trust;
	vo.cert_files = certs;
	vo.crl_files = crls;
	if (at != NULL) {
		if (p11s_verify_parse_time(at, &vo.time) < 0) {
			status = cli_fail();
			goto out;
		}
		vo.has_time = 1;
	}
	if ((status = cli_input_open(in_path, &cur)) != EXIT_OK) {
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
			if (p11s_verify_message(&l->vr, cur, &vo) < 0) {
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
			if (ctx == NULL && (cli_open(g, key_uri, &ctx) < 0 ||
			                       (key_uri != NULL && p11s_key_find(ctx, key_uri, &key) < 0))) {
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
		if ((status = cli_output_open(out_path, &out)) != EXIT_OK ||
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
		FILE *rep = (out_path == NULL || strcmp(out_path, "-") == 0) && !g->json ? stderr
		                                                                          : stdout;

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
	p11s_ctx_free(ctx);
	free(trust);
	free(certs);
	free(crls);
	return status;
}

const cli_command cmd_wrap = {
	"wrap",
	"sign, then encrypt (--triple: sign, encrypt, sign again — RFC 2634 triple wrapping)",
	"wrap --key URI --to CERTFILE [--to CERTFILE]... [--triple] [--digest D] [--pss] "
	"[--opaque] [--cert FILE] [--chain FILE]... [--cipher C] [--oaep] [--in FILE] [--out FILE]",
	run_wrap,
};

const cli_command cmd_unwrap = {
	"unwrap",
	"peel signed and enveloped layers, verifying and decrypting each; report every layer",
	"unwrap [--key URI] [--token URI] [--trust FILE]... [--certs FILE]... [--crl FILE]... "
	"[--at TIME] [--no-sender-check] [--in FILE] [--out FILE]",
	run_unwrap,
};

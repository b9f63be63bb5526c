/*
 * Options that several commands share (CLI.md): --in and --out (opened through io.c: seekable
 * input, atomic output), --key, verification (--trust, --certs, --crl, --at,
 * --no-sender-check), the signer (--cert, --chain) and the signature (--digest, --pss,
 * --opaque), encryption (--to, --cipher, --oaep, --xdh-kdf); and what the commands build from them. Each
 * command still lists in its getopt_long table exactly the options it accepts, so the command
 * line of every command is unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Append to a growing argv-like list. */
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

void cli_args_init(cli_args *a, const char *cmd)
{
	static const p11s_verify_opts vo = P11S_VERIFY_OPTS_INIT;
	static const p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	static const p11s_encrypt_opts eo = P11S_ENCRYPT_OPTS_INIT;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->verify = vo;
	a->sign = so;
	a->encrypt = eo;
	a->protect_headers = -1;
}

int cli_args_next(cli_args *a, int argc, char **argv, const struct option *opts)
{
	if (!a->started) {
		/* After main's parsing: start over; errors are reported by the caller. */
		optind = 1;
		opterr = 0;
		a->started = 1;
	}
	return getopt_long(argc, argv, "+", opts, NULL);
}

/* --chain FILE may repeat: every certificate of every file, in order. */
static int add_chain(cli_args *a, const char *path)
{
	STACK_OF(X509) *sk;
	int status;

	if ((status = cli_load_certs(path, &sk)) != EXIT_OK) {
		return status;
	}
	if (a->chain == NULL) {
		a->chain = sk;
		return EXIT_OK;
	}
	while (sk_X509_num(sk) > 0) {
		X509 *x = sk_X509_shift(sk);

		if (!sk_X509_push(a->chain, x)) {
			X509_free(x);
		}
	}
	sk_X509_free(sk);
	return EXIT_OK;
}

int cli_args_option(cli_args *a, int c, char **argv)
{
	int bad = 0;

	switch (c) {
	case CLI_O_IN:
		a->in_path = optarg;
		break;
	case CLI_O_OUT:
		a->out_path = optarg;
		break;
	case CLI_O_KEY:
		a->key_uri = optarg;
		break;
	case CLI_O_TRUST:
		bad = push(&a->trust, &a->verify.n_trust_files, optarg);
		break;
	case CLI_O_CERTS:
		bad = push(&a->certs, &a->verify.n_cert_files, optarg);
		break;
	case CLI_O_CRL:
		bad = push(&a->crls, &a->verify.n_crl_files, optarg);
		break;
	case CLI_O_AT:
		a->at = optarg;
		break;
	case CLI_O_NO_SENDER_CHECK:
		a->verify.no_sender_check = 1;
		break;
	case CLI_O_ALLOW_WEAK:
		a->verify.allow_weak = 1;
		break;
	case CLI_O_DATE_TOLERANCE: {
		/* docs/verify.md "Dates": seconds (1 to 10 years), or off. */
		char *end = NULL;
		long long s = strtoll(optarg, &end, 10);

		if (strcmp(optarg, "off") == 0) {
			a->verify.date_tolerance = -1;
		} else if (end == optarg || *end != '\0' || s < 1 || s > 315360000LL) {
			return cli_usage_error("%s: --date-tolerance must be seconds (1 or more) or "
			                       "off, not '%s'", a->cmd, optarg);
		} else {
			a->verify.date_tolerance = s;
		}
		break;
	}
	case CLI_O_REQUIRE_AUTHENTICATED:
		a->require_authenticated = 1;
		break;
	case CLI_O_CERT:
		a->cert_path = optarg;
		break;
	case CLI_O_CHAIN:
		return add_chain(a, optarg);
	case CLI_O_DIGEST:
		a->digest_given = 1;
		if (parse_digest(optarg, &a->sign.digest) < 0) {
			/* Each command keeps the wording CLI.md and its tests know. */
			if (a->terse) {
				return cli_usage_error("%s: unknown digest '%s'", a->cmd, optarg);
			}
			return cli_usage_error("%s: --digest must be sha256, sha384 or sha512, "
			                       "not '%s'", a->cmd, optarg);
		}
		break;
	case CLI_O_PSS:
		a->sign.pss = 1;
		break;
	case CLI_O_OPAQUE:
		a->sign.opaque = 1;
		break;
	case CLI_O_PROTECT_HEADERS: /* RFC 9788 (docs/sign.md "Header protection") */
	case CLI_O_NO_PROTECT_HEADERS:
		a->protect_headers = c == CLI_O_PROTECT_HEADERS;
		break;
	case CLI_O_TO:
		bad = push(&a->to, &a->n_to, optarg);
		break;
	case CLI_O_CIPHER:
		a->cipher_given = 1;
		if (parse_cipher(optarg, &a->encrypt.cipher) < 0) {
			if (a->terse) {
				return cli_usage_error("%s: unknown cipher '%s'", a->cmd, optarg);
			}
			return cli_usage_error("%s: unknown cipher '%s' (aes-256-gcm, aes-128-gcm, "
			                       "aes-128-cbc, aes-256-cbc)", a->cmd, optarg);
		}
		break;
	case CLI_O_OAEP:
		a->encrypt.oaep = 1;
		break;
	case CLI_O_XDH_KDF:
		/* RFC 8418 §2.2: HKDF (the RFC 8551 MUST) or the X9.63 KDF, for X25519/X448. */
		if (strcmp(optarg, "hkdf") == 0) {
			a->encrypt.xdh_kdf = P11S_XDH_KDF_HKDF;
		} else if (strcmp(optarg, "x963") == 0) {
			a->encrypt.xdh_kdf = P11S_XDH_KDF_X963;
		} else {
			return cli_usage_error("%s: unknown --xdh-kdf '%s' (hkdf, x963)", a->cmd, optarg);
		}
		break;
	default:
		return cli_usage_error("%s: unknown option or missing value '%s'", a->cmd,
		    argv[optind - 1]);
	}
	if (bad) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int cli_args_no_operands(const cli_args *a, int argc, char **argv)
{
	if (optind < argc) {
		return cli_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
	}
	return EXIT_OK;
}

int cli_args_verify_opts(cli_args *a)
{
	a->verify.trust_files = a->trust;
	a->verify.cert_files = a->certs;
	a->verify.crl_files = a->crls;
	if (a->at != NULL) {
		if (p11s_verify_parse_time(a->at, &a->verify.time) < 0) {
			return cli_fail();
		}
		a->verify.has_time = 1;
	}
	return EXIT_OK;
}

int cli_args_protect_headers(const cli_args *a, const p11s_config *cfg, int *on)
{
	const char *v;

	if (a->protect_headers >= 0) {
		*on = a->protect_headers;
		return EXIT_OK;
	}
	v = p11s_config_get(cfg, "", "protect-headers");
	if (v != NULL && strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
		return cli_usage_error("%s: configuration key protect-headers must be yes or no",
		    a->cmd);
	}
	*on = v == NULL || strcmp(v, "yes") == 0;
	return EXIT_OK;
}

int cli_args_signer(cli_args *a)
{
	int status;

	if (a->cert_path != NULL && (status = cli_load_cert(a->cert_path, &a->cert)) != EXIT_OK) {
		return status;
	}
	a->sign.cert = a->cert;
	a->sign.chain = a->chain;
	return EXIT_OK;
}

void cli_args_encrypt_opts(cli_args *a)
{
	a->encrypt.recipient_files = a->to;
	a->encrypt.n_recipient_files = a->n_to;
}

int cli_args_input(cli_args *a)
{
	return cli_input_open(a->in_path, &a->in);
}

int cli_args_output(cli_args *a)
{
	return cli_output_open(a->out_path, &a->out);
}

int cli_args_commit(cli_args *a, int rc)
{
	cli_output *o = a->out;
	int status;

	a->out = NULL;
	if (rc < 0) {
		/* No partial output, ever (CLI.md). */
		status = cli_fail();
		cli_output_abort(o);
		return status;
	}
	return cli_output_commit(o);
}

int cli_key_find(cli_globals *g, p11s_ctx *ctx, const char *uri, p11s_key **key)
{
	if (g->agent_key_find != NULL) {
		return g->agent_key_find(g->agent_key_payload, ctx, uri, key);
	}
	return p11s_key_find(ctx, uri, key);
}

int cli_open_key(cli_globals *g, const char *uri, p11s_ctx **ctx, p11s_key **key)
{
	if (cli_open(g, uri, ctx) < 0 || cli_key_find(g, *ctx, uri, key) < 0) {
		return cli_fail();
	}
	return EXIT_OK;
}

int cli_strv_push(const char ***v, size_t *n, const char *s)
{
	const char **nv = realloc(*v, (*n + 1) * sizeof(*nv));

	if (nv == NULL) {
		return -1;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

int cli_strv_from_config(const p11s_config *cfg, const char *key, const char ***v, size_t *n)
{
	const char *s;

	if (*n > 0) {
		return 0;
	}
	for (size_t i = 0; (s = p11s_config_get_nth(cfg, "", key, i)) != NULL; i++) {
		if (cli_strv_push(v, n, s) < 0) {
			return -1;
		}
	}
	return 0;
}

void cli_args_free(cli_args *a)
{
	cli_output_abort(a->out);
	if (a->in != NULL) {
		fclose(a->in);
	}
	free(a->trust);
	free(a->certs);
	free(a->crls);
	free(a->to);
	X509_free(a->cert);
	sk_X509_pop_free(a->chain, X509_free);
}

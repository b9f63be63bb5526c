/*
 * `p11smime sign --key URI [--cert FILE] [--chain FILE]... [--opaque] [--digest D] [--pss]
 *  [--encryption-cert FILE] [--in FILE] [--out FILE]` (CLI.md): sign an RFC 5322 message;
 * with `--batch --out-dir DIR FILE...` many messages with one module load and one login
 * (batch.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "batch.h"
#include "cli.h"

/*
 * --non-repudiation (docs/evidence.md): the signing certificate must assert nonRepudiation
 * (contentCommitment, RFC 5280 §4.2.1.3). Keys with CKA_ALWAYS_AUTHENTICATE get their
 * context-specific login before every signature from the token layer.
 */
static int check_non_repudiation(X509 *cert, p11s_key *key)
{
	X509 *c = cert ? cert : p11s_key_cert(key);

	if (c == NULL) {
		return cli_usage_error("sign: --non-repudiation needs the signer's certificate");
	}
	if ((X509_get_extension_flags(c) & EXFLAG_KUSAGE) == 0 ||
	    (X509_get_key_usage(c) & KU_NON_REPUDIATION) == 0) {
		return cli_usage_error("sign: --non-repudiation: the certificate of %s does not allow "
		                       "non-repudiation (keyUsage nonRepudiation/contentCommitment)",
		    p11s_key_uri(key));
	}
	return EXIT_OK;
}

/*
 * The end of a run with --audit-log: a final signed checkpoint (docs/evidence.md), so that
 * the log ends anchored. The signatures of the run are already out: a checkpoint that fails
 * is a warning (audit verify then reports the unanchored records), not a changed status.
 */
/*
 * RFC 8419 §3: an Ed25519 SignerInfo uses SHA-512. The library turns the default SHA-256 into
 * SHA-512; a --digest the user typed that is not sha512 is refused rather than ignored.
 */
static int check_eddsa_digest(const cli_args *a, p11s_key *key)
{
	if (a->digest_given && p11s_key_get_type(key) == P11S_KEY_EDDSA &&
	    a->sign.digest != P11S_DIGEST_SHA512) {
		return cli_usage_error("sign: an Ed25519 key signs with SHA-512 (RFC 8419 section 3); "
		                       "--digest %s is refused",
		    a->sign.digest == P11S_DIGEST_SHA256 ? "sha256" : "sha384");
	}
	return EXIT_OK;
}

static void audit_end_of_run(const p11s_sign_opts *so, p11s_key *key)
{
	if (so->audit_log != NULL && key != NULL &&
	    p11s_audit_checkpoint(key, so->audit_log, so->tsa_url) < 0) {
		fprintf(stderr, "p11smime: warning: audit log %s: final checkpoint not written: %s\n",
		    so->audit_log, p11s_error_last()->message);
	}
}

/* sign --staple's fetch policy: host lists from the options, else the configuration. */
typedef struct staple_hosts {
	const char **allow, **deny;
	size_t n_allow, n_deny;
} staple_hosts;

/*
 * The responder and fetch limits for --staple (docs/verify.md "Revocation"): --ocsp-url and
 * --fetch-allow/--fetch-deny, else the configuration keys verify reads (ocsp-url,
 * fetch-allow, fetch-deny). Only the signer's responder is asked; nothing else is fetched.
 */
static int staple_policy(const p11s_config *cfg, p11s_revocation_opts *r, staple_hosts *h)
{
	if (r->ocsp_url == NULL) {
		r->ocsp_url = p11s_config_get(cfg, "", "ocsp-url");
	}
	if (cli_strv_from_config(cfg, "fetch-allow", &h->allow, &h->n_allow) < 0 ||
	    cli_strv_from_config(cfg, "fetch-deny", &h->deny, &h->n_deny) < 0) {
		return cli_usage_error("sign: out of memory");
	}
	r->methods = P11S_REV_OCSP;
	r->fetch = 1;
	r->fetch_allow = h->allow;
	r->n_fetch_allow = h->n_allow;
	r->fetch_deny = h->deny;
	r->n_fetch_deny = h->n_deny;
	return EXIT_OK;
}

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_ENC = CLI_O_OWN, O_BATCH, O_OUT_DIR, O_RR, O_RTO, O_LABEL, O_TSA, O_AUDIT,
		O_NONREP, O_CKPT, O_STAPLE, O_OCSP_URL, O_FETCH_ALLOW, O_FETCH_DENY, O_JOBS };
	static const struct option opts[] = {
		CLI_OPT_KEY,
		CLI_OPTS_SIGNER,
		CLI_OPTS_SIGNATURE,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		{ "encryption-cert", required_argument, NULL, O_ENC },
		{ "batch", no_argument, NULL, O_BATCH },
		{ "out-dir", required_argument, NULL, O_OUT_DIR },
		{ "receipt-request", required_argument, NULL, O_RR },
		{ "receipts-to", required_argument, NULL, O_RTO },
		{ "security-label", required_argument, NULL, O_LABEL },
		{ "tsa", required_argument, NULL, O_TSA },
		{ "audit-log", required_argument, NULL, O_AUDIT },
		{ "audit-checkpoint-every", required_argument, NULL, O_CKPT },
		{ "non-repudiation", no_argument, NULL, O_NONREP },
		{ "staple", no_argument, NULL, O_STAPLE },
		{ "jobs", required_argument, NULL, O_JOBS },
		{ "ocsp-url", required_argument, NULL, O_OCSP_URL },
		{ "fetch-allow", required_argument, NULL, O_FETCH_ALLOW },
		{ "fetch-deny", required_argument, NULL, O_FETCH_DENY },
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	p11s_sign_opts *so = &a.sign;
	const char *enc_path = NULL, *out_dir = NULL;
	X509 *enc = NULL;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	int c, status, batch = 0, nonrep = 0;
	const char **rto = NULL;
	size_t n_rto = 0;
	p11s_revocation_opts staple = P11S_REVOCATION_OPTS_INIT;
	staple_hosts hosts = { 0 };
	int want_staple = 0, jobs = 0;

	cli_args_init(&a, "sign");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		switch (c) {
		case O_ENC:
			enc_path = optarg;
			break;
		case O_BATCH:
			batch = 1;
			break;
		case O_RR:
			if (strcmp(optarg, "all") == 0) {
				so->receipt_request = P11S_RECEIPT_REQUEST_ALL;
			} else if (strcmp(optarg, "first-tier") == 0) {
				so->receipt_request = P11S_RECEIPT_REQUEST_FIRST_TIER;
			} else {
				status = cli_usage_error("sign: --receipt-request must be all or first-tier, "
				                         "not '%s'", optarg);
				goto out;
			}
			break;
		case O_RTO: {
			/* NULL-terminated for p11s_sign_opts.receipts_to. */
			const char **nv = realloc(rto, (n_rto + 2) * sizeof(*nv));

			if (nv == NULL) {
				status = cli_usage_error("sign: out of memory");
				goto out;
			}
			rto = nv;
			rto[n_rto++] = optarg;
			rto[n_rto] = NULL;
			break;
		}
		case O_LABEL:
			if (p11s_security_label_check(optarg) < 0) {
				status = cli_fail();
				goto out;
			}
			so->security_label = optarg;
			break;
		case O_TSA:
			so->tsa_url = optarg;
			break;
		case O_AUDIT:
			so->audit_log = optarg;
			break;
		case O_NONREP:
			nonrep = 1;
			break;
		case O_CKPT: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || v == 0 || v > 1000000) {
				status = cli_usage_error("sign: --audit-checkpoint-every must be 1..1000000, "
				                         "not '%s'", optarg);
				goto out;
			}
			so->audit_checkpoint_every = (unsigned int)v;
			break;
		}
		case O_OUT_DIR:
			out_dir = optarg;
			break;
		case O_STAPLE:
			want_staple = 1;
			break;
		case O_JOBS: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || v < 1 || v > 64) {
				status = cli_usage_error("sign: --jobs must be 1..64, not '%s'", optarg);
				goto out;
			}
			jobs = (int)v;
			break;
		}
		case O_OCSP_URL:
			staple.ocsp_url = optarg;
			break;
		case O_FETCH_ALLOW:
		case O_FETCH_DENY:
			if (cli_strv_push(c == O_FETCH_ALLOW ? &hosts.allow : &hosts.deny,
			        c == O_FETCH_ALLOW ? &hosts.n_allow : &hosts.n_deny, optarg) < 0) {
				status = cli_usage_error("sign: out of memory");
				goto out;
			}
			break;
		default:
			if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
				goto out;
			}
		}
	}
	if (batch) {
		struct stat st;

		if (a.in_path != NULL || a.out_path != NULL) {
			status = cli_usage_error("sign: --batch takes FILE arguments and --out-dir, "
			                         "not --in or --out");
			goto out;
		}
		if (out_dir == NULL || optind >= argc) {
			status = cli_usage_error("sign: --batch needs --out-dir DIR and at least one FILE");
			goto out;
		}
		/* Checked before the token is touched: a bad directory costs no PIN. */
		if (stat(out_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
			status = cli_usage_error("sign: --out-dir %s is not a directory", out_dir);
			goto out;
		}
	} else if (out_dir != NULL || jobs != 0) {
		status = cli_usage_error("sign: %s needs --batch", out_dir != NULL ? "--out-dir" : "--jobs");
		goto out;
	} else if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (a.key_uri == NULL) {
		status = cli_usage_error("sign: --key URI is required");
		goto out;
	}
	if ((status = cli_args_signer(&a)) != EXIT_OK ||
	    (enc_path != NULL && (status = cli_load_cert(enc_path, &enc)) != EXIT_OK)) {
		goto out;
	}
	so->encryption_cert = enc;
	if (rto != NULL && so->receipt_request == P11S_RECEIPT_REQUEST_NONE) {
		status = cli_usage_error("sign: --receipts-to needs --receipt-request");
		goto out;
	}
	so->receipts_to = rto;
	if ((status = cli_args_protect_headers(&a, g->config, &so->protect_headers)) != EXIT_OK) {
		goto out;
	}
	if (!want_staple && (staple.ocsp_url != NULL || hosts.n_allow > 0 || hosts.n_deny > 0)) {
		status = cli_usage_error("sign: --ocsp-url, --fetch-allow and --fetch-deny need --staple");
		goto out;
	}
	if (want_staple) {
		if ((status = staple_policy(g->config, &staple, &hosts)) != EXIT_OK) {
			goto out;
		}
		so->staple = &staple;
	}
	if (batch) {
		/* One module load and one login (p11s_key_find logs in) for every file. */
		if ((status = cli_open_key(g, a.key_uri, &ctx, &key)) != EXIT_OK) {
			goto out;
		}
		if ((nonrep && (status = check_non_repudiation(a.cert, key)) != EXIT_OK) ||
		    (status = check_eddsa_digest(&a, key)) != EXIT_OK) {
			goto out;
		}
		/* Default: one signing thread per CPU (docs/performance.md "Batch signing"). */
		if (jobs == 0) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);

			jobs = n < 1 ? 1 : n > 64 ? 64 : (int)n;
		}
		status = cli_sign_batch(g, ctx, key, so, out_dir, argv + optind, argc - optind, jobs);
		audit_end_of_run(so, key);
		goto out;
	}
	/* Read the input before touching the token: a malformed message costs no PIN. */
	if ((status = cli_args_input(&a)) != EXIT_OK ||
	    (status = cli_open_key(g, a.key_uri, &ctx, &key)) != EXIT_OK) {
		goto out;
	}
	if ((nonrep && (status = check_non_repudiation(a.cert, key)) != EXIT_OK) ||
	    (status = check_eddsa_digest(&a, key)) != EXIT_OK) {
		goto out;
	}
	if ((status = cli_args_output(&a)) != EXIT_OK) {
		goto out;
	}
	/* The output is a temporary file (io.c), published only on success: one read of the input. */
	so->out_private = 1;
	status = cli_args_commit(&a, p11s_sign_message(key, so, a.in, cli_output_file(a.out)));
	audit_end_of_run(so, key);
out:
	p11s_key_free(key);
	cli_close(g, ctx);
	X509_free(enc);
	cli_args_free(&a);
	free(rto);
	free(hosts.allow);
	free(hosts.deny);
	return status;
}

const cli_command cmd_sign = {
	"sign",
	"sign an RFC 5322 message (S/MIME multipart/signed, or signed-data with --opaque)",
	"sign --key URI [--cert FILE] [--chain FILE]... [--opaque] [--digest sha256|sha384|sha512]\n"
	"       [--no-protect-headers]\n"
	"       [--pss] [--encryption-cert FILE] [--in FILE] [--out FILE]\n"
	"       [--receipt-request all|first-tier] [--receipts-to ADDR]...\n"
	"       [--security-label POLICY-OID:CLASSIFICATION] [--tsa URL] [--audit-log FILE]\n"
	"       [--audit-checkpoint-every N]\n"
	"       [--non-repudiation] [--staple [--ocsp-url URL] [--fetch-allow HOST]...\n"
	"       [--fetch-deny HOST]...]\n"
	"       sign --key URI [OPTIONS] --batch --out-dir DIR [--jobs N] FILE...",
	run,
};

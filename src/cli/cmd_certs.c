/*
 * `p11smime certs import|list|show|export|remove` (docs/certificates.md): the recipients'
 * certificate store. No token is involved.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "recipients.h"

enum { O_JSON = CLI_O_OWN };

/* Every certificate of a PEM file (CERTIFICATE or PKCS7 blocks), a DER certificate or a DER
 * PKCS#7 certs-only (RFC 8551 §3.6, application/pkcs7-mime; smime-type=certs-only). */
static int load_any(const char *path, STACK_OF(X509) **out)
{
	STACK_OF(X509) *sk = sk_X509_new_null(), *p7certs = NULL;
	unsigned char *data = NULL;
	const unsigned char *p;
	long len = 0;
	BIO *b = NULL;
	PKCS7 *p7 = NULL;
	X509 *x;
	FILE *f;
	int status = EXIT_USAGE;

	*out = NULL;
	if (sk == NULL || (f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "p11smime: error: cannot open %s\n", path);
		goto out;
	}
	/* Read it all (certificates are small; refuse anything absurd). */
	for (;;) {
		unsigned char *nd;
		size_t got;

		if (len > 16 * 1024 * 1024 || (nd = realloc(data, (size_t)len + 65536)) == NULL) {
			fclose(f);
			fprintf(stderr, "p11smime: error: %s: too large\n", path);
			goto out;
		}
		data = nd;
		got = fread(data + len, 1, 65536, f);
		len += (long)got;
		if (got < 65536) {
			break;
		}
	}
	fclose(f);
	if ((b = BIO_new_mem_buf(data, (int)len)) == NULL) {
		goto nomem;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto nomem;
		}
	}
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		(void)BIO_reset(b);
		p7 = PEM_read_bio_PKCS7(b, NULL, NULL, NULL);
		ERR_clear_error();
		p = data;
		if (p7 == NULL && (x = d2i_X509(NULL, &p, len)) != NULL) {
			if (p != data + len || !sk_X509_push(sk, x)) {
				X509_free(x);
				sk_X509_pop_free(sk, X509_free);
				sk = NULL;
			}
		} else if (p7 == NULL) {
			p = data;
			p7 = d2i_PKCS7(NULL, &p, len);
		}
		ERR_clear_error();
		if (p7 != NULL && PKCS7_type_is_signed(p7) && p7->d.sign != NULL) {
			p7certs = p7->d.sign->cert;
			for (int i = 0; i < sk_X509_num(p7certs); i++) {
				x = sk_X509_value(p7certs, i);
				if (!X509_up_ref(x) || !sk_X509_push(sk, x)) {
					goto nomem;
				}
			}
		}
	}
	if (sk == NULL || sk_X509_num(sk) == 0) {
		fprintf(stderr, "p11smime: error: %s holds no certificate (PEM, DER or PKCS#7 "
		                "certs-only)\n", path);
		goto out;
	}
	*out = sk;
	sk = NULL;
	status = EXIT_OK;
	goto out;
nomem:
	fprintf(stderr, "p11smime: error: out of memory\n");
out:
	PKCS7_free(p7);
	BIO_free(b);
	free(data);
	sk_X509_pop_free(sk, X509_free);
	return status;
}

static void time_text(int64_t t, char *buf, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, n, "?");
	}
}

static void entry_json(FILE *f, const p11s_store_entry *e)
{
	char t[32];

	fputc('{', f);
	json_key(f, "fingerprint");
	json_str(f, e->fingerprint);
	fputc(',', f);
	json_key(f, "subject");
	json_str(f, e->subject);
	fputc(',', f);
	json_key(f, "issuer");
	json_str(f, e->issuer);
	fputc(',', f);
	json_key(f, "serial");
	json_str(f, e->serial);
	fputc(',', f);
	time_text(e->not_before, t, sizeof(t));
	json_key(f, "not_before");
	json_str(f, t);
	fputc(',', f);
	time_text(e->not_after, t, sizeof(t));
	json_key(f, "not_after");
	json_str(f, t);
	fputc(',', f);
	json_key(f, "source");
	json_str(f, e->source);
	fputc(',', f);
	if (e->expires != 0) {
		time_text(e->expires, t, sizeof(t));
		json_key(f, "cache_expires");
		json_str(f, t);
		fputc(',', f);
	}
	json_key(f, "addresses");
	fputc('[', f);
	for (size_t k = 0; k < e->n_addresses; k++) {
		if (k > 0) {
			fputc(',', f);
		}
		json_str(f, e->addresses[k]);
	}
	fputs("]}", f);
}

static void entry_line(FILE *f, const p11s_store_entry *e)
{
	char t[32];

	time_text(e->not_after, t, sizeof(t));
	fprintf(f, "%s  %s  %-9s  ", e->fingerprint, t, e->source);
	for (size_t k = 0; k < e->n_addresses; k++) {
		fprintf(f, "%s%s", k > 0 ? "," : "", e->addresses[k]);
	}
	fprintf(f, "%s  %s\n", e->n_addresses == 0 ? "-" : "", e->subject);
}

static int do_import(p11s_store *s, int argc, char **argv, int first)
{
	int status = EXIT_OK;

	if (first >= argc) {
		return cli_usage_error("certs import: no FILE given");
	}
	for (int i = first; i < argc; i++) {
		STACK_OF(X509) *sk;

		if ((status = load_any(argv[i], &sk)) != EXIT_OK) {
			return status;
		}
		for (int k = 0; k < sk_X509_num(sk); k++) {
			X509 *x = sk_X509_value(sk, k);
			char *subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
			int added;

			if (p11s_store_add(s, x, P11S_STORE_IMPORTED, 0, &added) < 0) {
				OPENSSL_free(subj);
				sk_X509_pop_free(sk, X509_free);
				return cli_fail();
			}
			printf("%s %s\n", added ? "added" : "known", subj != NULL ? subj : "?");
			OPENSSL_free(subj);
		}
		sk_X509_pop_free(sk, X509_free);
	}
	return status;
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPT_STORE,
		CLI_OPT_OUT,
		{ "json", no_argument, NULL, O_JSON },
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	const char *store_path = NULL, *sub;
	p11s_store *s = NULL;
	p11s_store_list *l = NULL;
	int c, status = EXIT_OK, json = g->json;

	cli_args_init(&a, "certs");
	/* Options anywhere after the subcommand: "certs list --json", "certs --store X list". */
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == CLI_O_STORE) {
			store_path = optarg;
		} else if (c == O_JSON) {
			json = 1;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if (optind >= argc) {
		status = cli_usage_error("certs: which subcommand? (import, list, show, export, "
		                         "remove)");
		goto out;
	}
	sub = argv[optind++];
	if (strcmp(sub, "import") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 &&
	    strcmp(sub, "export") != 0 && strcmp(sub, "remove") != 0) {
		status = cli_usage_error("certs: unknown subcommand '%s'", sub);
		goto out;
	}
	if (strcmp(sub, "import") != 0 && strcmp(sub, "list") != 0 && optind + 1 != argc) {
		status = cli_usage_error("certs %s: one ADDRESS or FINGERPRINT is needed", sub);
		goto out;
	}
	if (strcmp(sub, "list") == 0 && optind != argc) {
		status = cli_usage_error("certs list: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if ((status = cli_store_open(g, store_path, &s)) != EXIT_OK) {
		goto out;
	}
	if (strcmp(sub, "import") == 0) {
		status = do_import(s, argc, argv, optind);
		goto out;
	}
	if (strcmp(sub, "remove") == 0) {
		int removed;

		if (p11s_store_remove(s, argv[optind], &removed) < 0) {
			status = cli_fail();
		} else if (!removed) {
			fprintf(stderr, "p11smime: error: no certificate %s in the store\n",
			    argv[optind]);
			status = EXIT_VERIFY;
		}
		goto out;
	}
	if (p11s_store_find(s, strcmp(sub, "list") == 0 ? NULL : argv[optind], &l) < 0) {
		status = cli_fail();
		goto out;
	}
	if (strcmp(sub, "list") != 0 && l->n == 0) {
		fprintf(stderr, "p11smime: error: no certificate for %s in the store\n", argv[optind]);
		status = EXIT_VERIFY;
		goto out;
	}
	if (strcmp(sub, "export") == 0) {
		if ((status = cli_args_output(&a)) != EXIT_OK) {
			goto out;
		}
		for (size_t i = 0; i < l->n; i++) {
			if (!PEM_write_X509(cli_output_file(a.out), l->v[i].cert)) {
				fprintf(stderr, "p11smime: error: cannot write the certificates\n");
				status = EXIT_USAGE;
				goto out;
			}
		}
		status = cli_output_commit(a.out);
		a.out = NULL;
		goto out;
	}
	if (json) {
		fputc('[', stdout);
		for (size_t i = 0; i < l->n; i++) {
			if (i > 0) {
				fputc(',', stdout);
			}
			entry_json(stdout, &l->v[i]);
		}
		fputs("]\n", stdout);
	} else if (strcmp(sub, "list") == 0) {
		for (size_t i = 0; i < l->n; i++) {
			entry_line(stdout, &l->v[i]);
		}
	} else {
		for (size_t i = 0; i < l->n; i++) {
			char t[32];

			printf("%sfingerprint: %s\n", i > 0 ? "\n" : "", l->v[i].fingerprint);
			printf("  source: %s\n", l->v[i].source);
			if (l->v[i].expires != 0) {
				time_text(l->v[i].expires, t, sizeof(t));
				printf("  cache expires: %s\n", t);
			}
			certinfo_text(stdout, l->v[i].cert, "  ");
		}
	}
out:
	p11s_store_list_free(l);
	p11s_store_close(s);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_certs = {
	"certs",
	"the recipients' certificate store: import, list, show, export, remove",
	"certs [--store DB] import FILE...\n"
	"certs [--store DB] list [--json]\n"
	"certs [--store DB] show ADDRESS|FINGERPRINT [--json]\n"
	"certs [--store DB] export ADDRESS|FINGERPRINT [--out FILE]\n"
	"certs [--store DB] remove FINGERPRINT\n"
	"\n"
	"  import FILE...  add certificates: PEM (several), DER, or PKCS#7 certs-only\n"
	"  list            every certificate: SHA-256 fingerprint, notAfter, source, addresses,\n"
	"                  subject\n"
	"  show X          details of the certificates for an address or a fingerprint\n"
	"  export X        their PEM (default stdout; --out is written atomically)\n"
	"  remove FPR      delete one certificate (by its SHA-256 fingerprint)\n"
	"  --store DB      the store (default: the config's store, else\n"
	"                  $XDG_DATA_HOME/p11smime/certs.db or ~/.local/share/p11smime/certs.db)\n"
	"\n"
	"Exit status 1 when show, export or remove find nothing.",
	run,
};

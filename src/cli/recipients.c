/* --to ADDRESS: recipients from the certificate store (docs/certificates.md). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "recipients.h"

const char **cli_config_list(const p11s_config *cfg, const char *key, size_t *n)
{
	const char **v;
	size_t k = 0;

	*n = 0;
	while (p11s_config_get_nth(cfg, "", key, k) != NULL) {
		k++;
	}
	if (k == 0 || (v = calloc(k, sizeof(*v))) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < k; i++) {
		v[i] = p11s_config_get_nth(cfg, "", key, i);
	}
	*n = k;
	return v;
}

int cli_store_open(cli_globals *g, const char *path, p11s_store **out)
{
	if (path == NULL) {
		path = p11s_config_get(g->config, "", "store");
	}
	if (p11s_store_open(out, path) < 0) {
		return cli_fail();
	}
	return EXIT_OK;
}

static int push_cert(cli_recipients *r, X509 *x)
{
	X509 **nv = realloc(r->certs, (r->n_certs + 1) * sizeof(*nv));

	if (nv == NULL) {
		return -1;
	}
	nv[r->n_certs++] = x;
	r->certs = nv;
	return 0;
}

int cli_lookup_option(cli_lookup *l, int c, const char *arg)
{
	const char **nv;

	if (c == CLI_O_STORE) {
		l->store = arg;
		return 1;
	}
	if (c != CLI_O_LDAP) {
		return 0;
	}
	if ((nv = realloc(l->ldap, (l->n_ldap + 1) * sizeof(*nv))) != NULL) {
		nv[l->n_ldap++] = arg;
		l->ldap = nv;
	}
	return 1;
}

void cli_lookup_free(cli_lookup *l)
{
	free(l->ldap);
	memset(l, 0, sizeof(*l));
}

/*
 * The store first (a cache of imports, harvests and earlier directory answers), then the
 * directories: store, ask, store again (docs/certificates.md "Lookup order").
 */
static int lookup(cli_globals *g, p11s_store *s, const cli_lookup *lk, const char *addr,
    const p11s_recipient_opts *ro, X509 **x, int *caps)
{
	const char **cfg = NULL, *const *urls = lk->ldap;
	size_t n = lk->n_ldap, found = 0;
	int rc;

	if ((rc = p11s_store_recipient(s, addr, ro, x, caps)) == P11S_OK ||
	    rc != P11S_ERR_VERIFY) {
		return rc;
	}
	if (n == 0) {
		urls = cfg = cli_config_list(g->config, "ldap", &n);
	}
	if (n == 0) {
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		/* An unreachable directory is reported and the next one asked; a bad URL is fatal. */
		if ((rc = p11s_store_ldap_fetch(s, urls[i], addr, NULL, &k)) == P11S_ERR_USAGE) {
			free(cfg);
			return rc;
		}
		if (rc < 0) {
			fprintf(stderr, "p11smime: warning: %s\n", p11s_error_last()->message);
		}
		found += k;
	}
	free(cfg);
	p11s_log(P11S_LOG_INFO, "%s: %zu certificate(s) from the directories", addr, found);
	return p11s_store_recipient(s, addr, ro, x, caps);
}

int cli_recipients_resolve(cli_globals *g, cli_args *a, const cli_lookup *lk,
    cli_recipients *r)
{
	p11s_recipient_opts ro = P11S_RECIPIENT_OPTS_INIT;
	p11s_store *s = NULL;
	const char *cbc_reason = NULL;
	int status = EXIT_OK, n_addr = 0;
	struct stat st;

	memset(r, 0, sizeof(*r));
	if ((r->files = calloc(a->n_to + 1, sizeof(*r->files))) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	ro.trust_files = a->trust;
	ro.n_trust_files = a->verify.n_trust_files;
	if (ro.n_trust_files == 0) {
		ro.trust_files = r->cfg_trust = cli_config_list(g->config, "trust", &ro.n_trust_files);
	}
	ro.cert_files = a->certs;
	ro.n_cert_files = a->verify.n_cert_files;
	ro.crl_files = a->crls;
	ro.n_crl_files = a->verify.n_crl_files;
	for (size_t i = 0; i < a->n_to; i++) {
		X509 *x = NULL;
		int caps;

		/* A file wins: `--to ./bob@example.org` stays the file it always was (CLI.md). */
		if (stat(a->to[i], &st) == 0 || strchr(a->to[i], '@') == NULL) {
			r->files[r->n_files++] = a->to[i];
			continue;
		}
		if (s == NULL && (status = cli_store_open(g, lk->store, &s)) != EXIT_OK) {
			goto out;
		}
		if (lookup(g, s, lk, a->to[i], &ro, &x, &caps) < 0) {
			status = cli_fail();
			goto out;
		}
		if (push_cert(r, x) < 0) {
			X509_free(x);
			fprintf(stderr, "p11smime: error: out of memory\n");
			status = EXIT_USAGE;
			goto out;
		}
		n_addr++;
		if (caps != P11S_CAPS_GCM && cbc_reason == NULL) {
			cbc_reason = a->to[i];
		}
	}
	a->encrypt.recipient_files = r->files;
	a->encrypt.n_recipient_files = r->n_files;
	a->encrypt.recipient_certs = r->certs;
	a->encrypt.n_recipient_certs = r->n_certs;
	/*
	 * RFC 8551 §2.7: AES-256-GCM only when every recipient is known to support it (it
	 * announced it in SMIMECapabilities), else AES-256-CBC, which every S/MIME 3 agent reads.
	 * Certificate files carry no announcement and keep the default; --cipher overrides.
	 */
	if (n_addr > 0 && !a->cipher_given) {
		if (cbc_reason != NULL) {
			a->encrypt.cipher = P11S_CIPHER_AES_256_CBC;
			p11s_log(P11S_LOG_INFO, "aes-256-cbc: %s has not announced aes-256-gcm "
			                        "(RFC 8551 §2.7)", cbc_reason);
		} else {
			a->encrypt.cipher = P11S_CIPHER_AES_256_GCM;
		}
	}
out:
	p11s_store_close(s);
	return status;
}

void cli_recipients_free(cli_recipients *r)
{
	for (size_t i = 0; i < r->n_certs; i++) {
		X509_free(r->certs[i]);
	}
	free(r->certs);
	free(r->files);
	free(r->cfg_trust);
	memset(r, 0, sizeof(*r));
}

int cli_harvest_configured(cli_globals *g)
{
	const char *v = p11s_config_get(g->config, "", "harvest");

	return v != NULL && (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
	                     strcmp(v, "1") == 0);
}

/* Harvesting (docs/certificates.md): a failure is a warning; verify's verdict stands. */
void cli_harvest(cli_globals *g, const char *store_path, const p11s_verify_result *r)
{
	p11s_store *s = NULL;
	size_t n = 0;

	if (p11s_store_open(&s, store_path != NULL ? store_path
	                                           : p11s_config_get(g->config, "", "store")) < 0 ||
	    p11s_verify_harvest(r, s, &n) < 0) {
		fprintf(stderr, "p11smime: warning: not harvested: %s\n",
		    p11s_error_last()->message);
	} else {
		p11s_log(P11S_LOG_INFO, "harvested %zu signer(s)", n);
	}
	p11s_store_close(s);
}

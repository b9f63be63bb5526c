/*
 * `p11smime sign ... --batch --out-dir DIR FILE...` (CLI.md "More commands"): many messages,
 * one module load, one login, one session pool. Everything that does not depend on the
 * message is done once here, so that per message only the host-side CMS work and one
 * C_Sign remain (docs/performance.md has the measured rates against raw C_Sign).
 *
 * A key with CKA_ALWAYS_AUTHENTICATE still gets a context-specific login with a fresh PIN
 * before every signature: the backend does it inside each C_SignInit/C_Sign pair and never
 * caches the PIN (DESIGN.md decision 8), batch or not.
 */
#define _GNU_SOURCE /* syncfs(2) */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "batch.h"

/* CLI.md exit status of an error code (same classes as main.c's table). */
static int status_of(int code)
{
	switch (p11s_error_class(code)) {
	case P11S_ECLASS_NONE:
		return EXIT_OK;
	case P11S_ECLASS_VERIFY:
		return EXIT_VERIFY;
	case P11S_ECLASS_TOKEN:
		return EXIT_TOKEN;
	default:
		return EXIT_USAGE;
	}
}

/*
 * Failures that would repeat identically for every remaining file. A wrong PIN in
 * particular must not be retried once per file: each try counts against the token's retry
 * counter (PKCS#11 v2.40 C_Login, CKF_USER_PIN_COUNT_LOW / CKF_USER_PIN_LOCKED).
 */
static int fatal_for_batch(int code)
{
	switch (code) {
	case P11S_ERR_PIN_INCORRECT:
	case P11S_ERR_PIN_LOCKED:
	case P11S_ERR_PIN_SOURCE:
	case P11S_ERR_LOGIN:
	case P11S_ERR_MODULE:
	case P11S_ERR_TOKEN_ABSENT:
	case P11S_ERR_DEVICE_REMOVED:
		return 1;
	default:
		return 0;
	}
}

/* One line naming the file, with the library's reason (and OpenSSL's with -v). */
static int report(cli_globals *g, const char *file)
{
	const p11s_error *e = p11s_error_last();

	if (e->code == P11S_OK) {
		fprintf(stderr, "p11smime: error: %s: internal error without a reason\n", file);
		return EXIT_USAGE;
	}
	if (g->verbosity > 0 && e->openssl[0] != '\0') {
		fprintf(stderr, "p11smime: error: %s: %s [%s]\n", file, e->message, e->openssl);
	} else {
		fprintf(stderr, "p11smime: error: %s: %s\n", file, e->message);
	}
	return status_of(e->code);
}

/* DIR/<basename of file>, malloc'd; NULL if `file` has no usable basename. */
static char *out_path(const char *out_dir, const char *file)
{
	char *copy = strdup(file), *base, *path = NULL;
	size_t l;

	if (copy == NULL) {
		return NULL;
	}
	base = basename(copy);
	if (strcmp(base, "/") != 0 && strcmp(base, ".") != 0 && strcmp(base, "..") != 0 &&
	    strcmp(base, "-") != 0) {
		l = strlen(out_dir) + strlen(base) + 2;
		if ((path = malloc(l)) != NULL) {
			snprintf(path, l, "%s/%s", out_dir, base);
		}
	}
	free(copy);
	return path;
}

/*
 * Atomic outputs with a group commit. A single `sign` makes its output durable with one
 * fsync before the rename (io.c); per message that is a journal commit, which on an ordinary
 * disk costs more than the token's signature (docs/performance.md). Here every output is
 * written to its own temporary file beside the destination, and up to GROUP finished ones
 * are made durable together with one syncfs() of the output file system, then renamed into
 * place and the directory synced: each output still appears only complete and durable, or
 * not at all.
 */
#define GROUP 64

typedef struct pending {
	FILE *f;
	char *tmp;
	const char *dest; /* outs[i] */
	const char *file; /* the input, for messages */
} pending;

static void pending_drop(pending *p)
{
	if (p->f != NULL) {
		fclose(p->f);
	}
	if (p->tmp != NULL) {
		unlink(p->tmp);
	}
	free(p->tmp);
	memset(p, 0, sizeof(*p));
}

/* Sync, rename and forget the `n` pending outputs; returns how many were published. */
static int pending_commit(const char *out_dir, pending *p, int n, int *worst)
{
	int dfd, ok = 1, done = 0;

	if (n == 0) {
		return 0;
	}
	if ((dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || syncfs(dfd) != 0) {
		ok = 0;
	}
	for (int i = 0; i < n; i++) {
		if (ok && rename(p[i].tmp, p[i].dest) == 0) {
			free(p[i].tmp);
			p[i].tmp = NULL; /* renamed: nothing to remove */
			done++;
		} else {
			fprintf(stderr, "p11smime: error: %s: cannot write %s: %s\n", p[i].file, p[i].dest,
			    strerror(errno));
			*worst = *worst > EXIT_USAGE ? *worst : EXIT_USAGE;
		}
		pending_drop(&p[i]);
	}
	if (dfd >= 0) {
		(void)fsync(dfd); /* the renames themselves */
		close(dfd);
	}
	return done;
}

/* A temporary output file in `out_dir` (mode 0600 from mkstemp). */
static int pending_open(const char *dest, pending *p)
{
	size_t l = strlen(dest) + 16;
	int fd;

	if ((p->tmp = malloc(l)) == NULL) {
		return -1;
	}
	snprintf(p->tmp, l, "%s.XXXXXX", dest);
	if ((fd = mkstemp(p->tmp)) < 0) {
		free(p->tmp);
		p->tmp = NULL;
		return -1;
	}
	if ((p->f = fdopen(fd, "w+b")) == NULL) {
		close(fd);
		unlink(p->tmp);
		free(p->tmp);
		p->tmp = NULL;
		return -1;
	}
	p->dest = dest;
	return 0;
}

static int worse(int a, int b)
{
	return a > b ? a : b;
}

int cli_sign_batch(cli_globals *g, p11s_ctx *ctx, p11s_key *key, const p11s_sign_opts *so,
    const char *out_dir, char *const *files, int nfiles)
{
	p11s_sign_opts o = *so;
	STACK_OF(X509) *cas = NULL, *all = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert;
	char **outs = NULL;
	pending group[GROUP];
	int ngroup = 0;
	int worst = EXIT_OK, signed_n = 0, i, j, rc;

	/*
	 * Prepared once for the whole batch instead of once per message as p11s_sign_message()
	 * does: the bridge key (a provider key object), the token's CA certificates, the chain.
	 */
	cert = so->cert != NULL ? so->cert : p11s_key_cert(key);
	if (cert == NULL) {
		fprintf(stderr, "p11smime: error: no certificate for %s on the token; give one with "
		                "--cert\n", p11s_key_uri(key));
		return EXIT_USAGE;
	}
	if (p11s_key_pkey(key, &pkey) < 0 || p11s_key_ca_certs(key, &cas) < 0) {
		worst = cli_fail();
		goto out;
	}
	if ((all = sk_X509_new_null()) == NULL || (outs = calloc((size_t)nfiles, sizeof(*outs))) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		worst = EXIT_USAGE;
		goto out;
	}
	for (i = 0; i < sk_X509_num(so->chain) + sk_X509_num(cas); i++) {
		X509 *x = i < sk_X509_num(so->chain) ? sk_X509_value(so->chain, i)
		                                     : sk_X509_value(cas, i - sk_X509_num(so->chain));

		if (!sk_X509_push(all, x)) {
			fprintf(stderr, "p11smime: error: out of memory\n");
			worst = EXIT_USAGE;
			goto out;
		}
	}
	o.chain = all;
	o.cert = NULL; /* p11s_sign_message_pkey() takes the certificate as an argument */
	/*
	 * Card events (pcsc-lite) for the rest of the batch: a card pulled out of the key's reader
	 * fails the next message at once, naming the reader; stopped by p11s_ctx_free().
	 */
	if (p11s_ctx_watch_readers(ctx) < 0) {
		p11s_log(P11S_LOG_WARN, "no card events: %s", p11s_error_last()->message);
		p11s_error_clear();
	}
	for (i = 0; i < nfiles; i++) {
		FILE *in = NULL;
		pending *pd = &group[ngroup];
		int st;

		if ((outs[i] = out_path(out_dir, files[i])) == NULL) {
			fprintf(stderr, "p11smime: error: %s: no file name to write under %s\n", files[i],
			    out_dir);
			worst = worse(worst, EXIT_USAGE);
			continue;
		}
		/* Two inputs with one basename would overwrite each other's output: refuse the later. */
		for (j = 0; j < i; j++) {
			if (outs[j] != NULL && strcmp(outs[j], outs[i]) == 0) {
				break;
			}
		}
		if (j < i) {
			fprintf(stderr, "p11smime: error: %s: output %s already written for %s\n",
			    files[i], outs[i], files[j]);
			worst = worse(worst, EXIT_USAGE);
			free(outs[i]);
			outs[i] = NULL;
			continue;
		}
		if ((st = cli_input_open(files[i], &in)) != EXIT_OK) {
			worst = worse(worst, st);
			continue;
		}
		if (pending_open(outs[i], pd) < 0) {
			fprintf(stderr, "p11smime: error: cannot create output %s: %s\n", outs[i],
			    strerror(errno));
			fclose(in);
			worst = worse(worst, EXIT_USAGE);
			continue;
		}
		pd->file = files[i];
		p11s_error_clear();
		rc = p11s_sign_message_pkey(p11s_ctx_libctx(ctx), pkey, cert, &o, in, pd->f);
		fclose(in);
		if (rc == P11S_OK && fflush(pd->f) != 0) {
			fprintf(stderr, "p11smime: error: %s: writing %s: %s\n", files[i], outs[i],
			    strerror(errno));
			pending_drop(pd);
			worst = worse(worst, EXIT_USAGE);
			continue;
		}
		if (rc < 0) {
			pending_drop(pd); /* no partial output, ever (CLI.md) */
			worst = worse(worst, report(g, files[i]));
			if (fatal_for_batch(rc)) {
				if (i + 1 < nfiles) {
					fprintf(stderr, "p11smime: error: stopping: %d file(s) not signed\n",
					    nfiles - i - 1);
				}
				break;
			}
			continue;
		}
		if (g->verbosity > 0) {
			fprintf(stderr, "p11smime: signed %s -> %s\n", files[i], outs[i]);
		}
		if (++ngroup == GROUP) {
			signed_n += pending_commit(out_dir, group, ngroup, &worst);
			ngroup = 0;
		}
	}
	signed_n += pending_commit(out_dir, group, ngroup, &worst);
	ngroup = 0;
	if (g->verbosity > 0 || (worst != EXIT_OK && g->verbosity == 0)) {
		fprintf(stderr, "p11smime: %d of %d file(s) signed\n", signed_n, nfiles);
	}
out:
	for (i = 0; i < ngroup; i++) {
		pending_drop(&group[i]);
	}
	if (outs != NULL) {
		for (i = 0; i < nfiles; i++) {
			free(outs[i]);
		}
	}
	free(outs);
	sk_X509_free(all);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(pkey);
	return worst;
}

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
#include <pthread.h>
#include <stdio.h>
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

/*
 * The pipeline (--jobs N, issue 21): the main thread prepares each message in input order
 * (output name, input and temporary output opened), hands it to N workers through a ring of
 * 2N slots, and takes the results back in input order: it reports, groups and commits them
 * exactly as a serial batch would, so stderr, output names, atomicity, durability and the
 * stop rule do not depend on N. The workers run p11s_sign_message_pkey() on the one shared
 * bridge key: reading, canonicalising, hashing, CMS assembly, the host check of the token's
 * signature and the output of several messages overlap, while the token calls themselves
 * reach the token one at a time (the context's op_lock, token_int.h).
 */
typedef struct job {
	int i;          /* index of the file */
	FILE *in;
	pending pd;     /* the temporary output; pd.f NULL when preparing failed */
	int prep_status; /* EXIT_OK, or the status of a failure already described in `err` */
	int rc;         /* the signature's result */
	p11s_error err; /* the worker's error record (thread-local there), or the prepare error */
	int done;
} job;

typedef struct pipe_state {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	job *ring;
	int cap;
	long submitted, taken; /* jobs handed over, jobs a worker took */
	int closed;            /* no more jobs: workers exit when the ring is drained */
	int stop;              /* a fatal failure: jobs not yet taken are skipped */
	OSSL_LIB_CTX *libctx;
	EVP_PKEY *pkey;
	X509 *cert;
	const p11s_sign_opts *o;
} pipe_state;

/* Sign one prepared job (a worker, or the main thread with --jobs 1). */
static void sign_job(pipe_state *ps, job *j)
{
	p11s_error_clear();
	j->rc = p11s_sign_message_pkey(ps->libctx, ps->pkey, ps->cert, ps->o, j->in, j->pd.f);
	j->err = *p11s_error_last();
	if (j->rc == P11S_OK && fflush(j->pd.f) != 0) {
		j->rc = j->err.code = P11S_ERR_IO;
		snprintf(j->err.message, sizeof(j->err.message), "writing %s: %s", j->pd.dest,
		    strerror(errno));
		j->err.openssl[0] = '\0';
	}
	fclose(j->in);
	j->in = NULL;
}

static void *worker(void *arg)
{
	pipe_state *ps = arg;

	pthread_mutex_lock(&ps->lock);
	for (;;) {
		job *j;

		while (ps->taken == ps->submitted && !ps->closed) {
			pthread_cond_wait(&ps->cond, &ps->lock);
		}
		if (ps->taken == ps->submitted) {
			break;
		}
		j = &ps->ring[ps->taken++ % ps->cap];
		if (ps->stop || j->prep_status != EXIT_OK) {
			j->rc = ps->stop && j->prep_status == EXIT_OK ? 1 : 0; /* 1: skipped */
			j->done = 1;
			pthread_cond_broadcast(&ps->cond);
			continue;
		}
		pthread_mutex_unlock(&ps->lock);
		sign_job(ps, j);
		pthread_mutex_lock(&ps->lock);
		if (j->rc < 0 && fatal_for_batch(j->rc)) {
			ps->stop = 1;
		}
		j->done = 1;
		pthread_cond_broadcast(&ps->cond);
	}
	pthread_mutex_unlock(&ps->lock);
	return NULL;
}

/* Prepare file i into `j` (main thread): a failure is recorded, reported when collected. */
static void prepare(job *j, int i, char *const *files, char **outs, const char *out_dir)
{
	int k;

	memset(j, 0, sizeof(*j));
	j->i = i;
	if ((outs[i] = out_path(out_dir, files[i])) == NULL) {
		snprintf(j->err.message, sizeof(j->err.message), "%s: no file name to write under %s",
		    files[i], out_dir);
		j->prep_status = EXIT_USAGE;
		return;
	}
	/* Two inputs with one basename would overwrite each other's output: refuse the later. */
	for (k = 0; k < i; k++) {
		if (outs[k] != NULL && strcmp(outs[k], outs[i]) == 0) {
			break;
		}
	}
	if (k < i) {
		snprintf(j->err.message, sizeof(j->err.message), "%s: output %s already written for %s",
		    files[i], outs[i], files[k]);
		j->prep_status = EXIT_USAGE;
		free(outs[i]);
		outs[i] = NULL;
		return;
	}
	if ((j->in = fopen(files[i], "rb")) == NULL) {
		snprintf(j->err.message, sizeof(j->err.message), "cannot open %s: %s", files[i],
		    strerror(errno));
		j->prep_status = EXIT_USAGE;
		return;
	}
	if (pending_open(outs[i], &j->pd) < 0) {
		snprintf(j->err.message, sizeof(j->err.message), "cannot create output %s: %s", outs[i],
		    strerror(errno));
		fclose(j->in);
		j->in = NULL;
		j->prep_status = EXIT_USAGE;
		return;
	}
	j->pd.file = files[i];
}

/* One line naming the file, from a job's error record (and OpenSSL's with -v). */
static int report_job(cli_globals *g, const char *file, const p11s_error *e)
{
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

int cli_sign_batch(cli_globals *g, p11s_ctx *ctx, p11s_key *key, const p11s_sign_opts *so,
    const char *out_dir, char *const *files, int nfiles, int jobs)
{
	p11s_sign_opts o = *so;
	STACK_OF(X509) *cas = NULL, *all = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert;
	char **outs = NULL;
	pending group[GROUP];
	int ngroup = 0, nthreads = 0, stopped = 0;
	int worst = EXIT_OK, signed_n = 0, i;
	pthread_t *threads = NULL;
	pipe_state ps = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	long collected = 0;

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
	/*
	 * One worker (still beside the main thread) when signatures must not overlap: a key that
	 * asks for its PIN per signature (CKA_ALWAYS_AUTHENTICATE: the PIN prompts follow the
	 * files), and an audit log, whose records follow the signatures' order.
	 */
	if (jobs < 1 || p11s_key_always_authenticate(key) || so->audit_log != NULL) {
		jobs = 1;
	}
	/*
	 * The libp11 and pkcs11-helper backends log in per signature themselves and do not tell
	 * us about CKA_ALWAYS_AUTHENTICATE (docs/backends.md), and only the pkcs11 backend runs
	 * token calls concurrently (P11S_CAP_CONCURRENT): elsewhere PINs must follow the files.
	 */
	if (strcmp(p11s_ctx_backend(ctx), "pkcs11") != 0) {
		jobs = 1;
	}
	ps.cap = 2 * jobs;
	if ((all = sk_X509_new_null()) == NULL || (outs = calloc((size_t)nfiles, sizeof(*outs))) == NULL ||
	    (ps.ring = calloc((size_t)ps.cap, sizeof(*ps.ring))) == NULL ||
	    (threads = calloc((size_t)jobs, sizeof(*threads))) == NULL) {
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
	o.out_private = 1; /* each output is a temporary file, renamed only on success */
	/*
	 * Card events (pcsc-lite) for the rest of the batch: a card pulled out of the key's reader
	 * fails the next message at once, naming the reader; stopped by p11s_ctx_free().
	 */
	if (p11s_ctx_watch_readers(ctx) < 0) {
		p11s_log(P11S_LOG_WARN, "no card events: %s", p11s_error_last()->message);
		p11s_error_clear();
	}
	ps.libctx = p11s_ctx_libctx(ctx);
	ps.pkey = pkey;
	ps.cert = cert;
	ps.o = &o;
	/* --jobs 1 signs on this thread: no hand-over costs (futex wake-ups) per message. */
	for (; jobs > 1 && nthreads < jobs; nthreads++) {
		if (pthread_create(&threads[nthreads], NULL, worker, &ps) != 0) {
			break;
		}
	}
	for (i = 0;;) {
		job *j = &ps.ring[collected % ps.cap];

		pthread_mutex_lock(&ps.lock);
		/*
		 * A finished result is taken back first (its report is not held up by preparing the
		 * next file, which may block: a FIFO), then the next file is handed over while the
		 * ring has room, else the oldest result is waited for.
		 */
		if (collected == ps.submitted || !j->done) {
			if (i < nfiles && ps.submitted - collected < ps.cap) {
				pthread_mutex_unlock(&ps.lock);
				j = &ps.ring[ps.submitted % ps.cap];
				prepare(j, i++, files, outs, out_dir);
				if (nthreads == 0) {
					if (j->prep_status == EXIT_OK) {
						sign_job(&ps, j);
					}
					j->done = 1;
				}
				pthread_mutex_lock(&ps.lock);
				ps.submitted++;
				pthread_cond_broadcast(&ps.cond);
				pthread_mutex_unlock(&ps.lock);
				continue;
			}
			if (collected == ps.submitted) {
				pthread_mutex_unlock(&ps.lock);
				break; /* nothing in flight, nothing left to hand over */
			}
			while (!j->done) {
				pthread_cond_wait(&ps.cond, &ps.lock);
			}
		}
		pthread_mutex_unlock(&ps.lock);
		collected++;
		if (j->in != NULL) {
			fclose(j->in);
		}
		if (j->prep_status != EXIT_OK) {
			if (!stopped) {
				fprintf(stderr, "p11smime: error: %s\n", j->err.message);
				worst = worse(worst, j->prep_status);
			}
			pending_drop(&j->pd);
			continue;
		}
		if (stopped || j->rc == 1) {
			/* After a fatal failure: not signed, or signed but not published (order). */
			pending_drop(&j->pd);
			continue;
		}
		if (j->rc < 0) {
			pending_drop(&j->pd); /* no partial output, ever (CLI.md) */
			worst = worse(worst, report_job(g, files[j->i], &j->err));
			if (fatal_for_batch(j->rc)) {
				stopped = 1;
				pthread_mutex_lock(&ps.lock);
				ps.stop = 1;
				pthread_mutex_unlock(&ps.lock);
				if (j->i + 1 < nfiles) {
					fprintf(stderr, "p11smime: error: stopping: %d file(s) not signed\n",
					    nfiles - j->i - 1);
				}
				i = nfiles; /* hand over nothing more */
			}
			continue;
		}
		if (g->verbosity > 0) {
			fprintf(stderr, "p11smime: signed %s -> %s\n", files[j->i], outs[j->i]);
		}
		group[ngroup++] = j->pd;
		memset(&j->pd, 0, sizeof(j->pd));
		if (ngroup == GROUP) {
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
	pthread_mutex_lock(&ps.lock);
	ps.closed = 1;
	pthread_cond_broadcast(&ps.cond);
	pthread_mutex_unlock(&ps.lock);
	for (i = 0; i < nthreads; i++) {
		pthread_join(threads[i], NULL);
	}
	for (i = 0; i < ngroup; i++) {
		pending_drop(&group[i]);
	}
	if (outs != NULL) {
		for (i = 0; i < nfiles; i++) {
			free(outs[i]);
		}
	}
	free(outs);
	free(ps.ring);
	free(threads);
	sk_X509_free(all);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(pkey);
	return worst;
}

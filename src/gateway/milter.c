/*
 * The milter callbacks. A message is spooled to an unlinked temporary file as it arrives
 * (never held in memory); at end of message the whole decision is made under the current
 * state (configuration + token pool):
 *
 *   outbound (trusted or authenticated client, From and MAIL FROM a configured signer):
 *       sign with the signer's token key, optionally encrypt to recipients with certificates;
 *   inbound: an enveloped message for a key in the index is decrypted; a signed message (or
 *       a decrypted one that turns out signed) gets an Authentication-Results header.
 *
 * "Never lose mail" (DESIGN.md decision 9): token unavailable or any internal failure is
 * SMFIS_TEMPFAIL, so the MTA keeps the message and retries. A message we cannot decrypt is
 * passed unchanged with a header saying why, or rejected with one uniform reply
 * (STANDARDS.md §12: no oracle). Over the size limit: passed unchanged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "gateway.h"

#define MARK_HEADER "X-P11smime-Gateway"
#define AR_HEADER "Authentication-Results"

static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static gw_state *g_state;
static pthread_mutex_t g_count_lock = PTHREAD_MUTEX_INITIALIZER;
static gw_counters g_count;
static int g_active;
static pthread_mutex_t g_work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_work_cond = PTHREAD_COND_INITIALIZER;
static int g_work_max = 8, g_work_busy;

typedef struct hdr {
	char *name;
	char *value;   /* kept only for From and Authentication-Results */
} hdr;

typedef struct conn {
	struct sockaddr_storage client;
	int have_client;
	/* the message */
	FILE *spool;
	uint64_t size;
	int oversize;
	int io_error;
	int in_body;
	int authenticated;
	char env_from[320];
	int env_from_ok;
	char **rcpts;
	size_t nrcpts;
	hdr *hdrs;
	size_t nhdrs;
	struct timespec t0;
} conn;

void gw_milter_set_workers(int n)
{
	pthread_mutex_lock(&g_work_lock);
	g_work_max = n > 0 ? n : 1;
	pthread_cond_broadcast(&g_work_cond);
	pthread_mutex_unlock(&g_work_lock);
}

void gw_milter_set_state(gw_state *st)
{
	g_state = st;
}

void gw_milter_lock_exclusive(void)
{
	pthread_rwlock_wrlock(&g_lock);
}

void gw_milter_unlock_exclusive(void)
{
	pthread_rwlock_unlock(&g_lock);
}

void gw_milter_counters(gw_counters *out)
{
	pthread_mutex_lock(&g_count_lock);
	*out = g_count;
	pthread_mutex_unlock(&g_count_lock);
}

int gw_milter_active(void)
{
	int n;

	pthread_mutex_lock(&g_count_lock);
	n = g_active;
	pthread_mutex_unlock(&g_count_lock);
	return n;
}

void gw_state_free(gw_state *st)
{
	if (st == NULL) {
		return;
	}
	gw_pool_free(st->pool);
	gw_config_free(&st->cfg);
	free(st);
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* An unlinked temporary file in the spool directory: nothing is left behind on a crash. */
static FILE *spool_file(const char *dir)
{
	char path[4096];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/p11smime-gw.XXXXXX", dir);
	if ((fd = mkstemp(path)) < 0) {
		p11s_log(P11S_LOG_ERROR, "cannot create a spool file in %s: %s", dir, strerror(errno));
		return NULL;
	}
	(void)unlink(path);
	if ((f = fdopen(fd, "w+")) == NULL) {
		close(fd);
	}
	return f;
}

static void msg_reset(conn *c)
{
	if (c->spool != NULL) {
		fclose(c->spool);
	}
	c->spool = NULL;
	for (size_t i = 0; i < c->nrcpts; i++) {
		free(c->rcpts[i]);
	}
	free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpts = 0;
	for (size_t i = 0; i < c->nhdrs; i++) {
		free(c->hdrs[i].name);
		free(c->hdrs[i].value);
	}
	free(c->hdrs);
	c->hdrs = NULL;
	c->nhdrs = 0;
	c->size = 0;
	c->oversize = 0;
	c->io_error = 0;
	c->in_body = 0;
	c->authenticated = 0;
	c->env_from[0] = '\0';
	c->env_from_ok = 0;
}

static int is_content_header(const char *name)
{
	return strncasecmp(name, "Content-", 8) == 0 || strcasecmp(name, "MIME-Version") == 0;
}

/* 1-based occurrence number of header i among headers of the same name (smfi_chgheader). */
static int occurrence(const conn *c, size_t i)
{
	int n = 0;

	for (size_t j = 0; j <= i; j++) {
		if (strcasecmp(c->hdrs[j].name, c->hdrs[i].name) == 0) {
			n++;
		}
	}
	return n;
}

static void spool_write(conn *c, const void *p, size_t n, uint64_t max)
{
	if (c->io_error) {
		return;
	}
	c->size += n;
	if (c->size > max) {
		/* Over the limit the message passes unchanged: stop spooling, free the space. */
		if (!c->oversize) {
			c->oversize = 1;
			if (c->spool != NULL && (fflush(c->spool) != 0 ||
			        ftruncate(fileno(c->spool), 0) != 0)) {
				c->io_error = 1;
			}
		}
		return;
	}
	if (c->spool != NULL && fwrite(p, 1, n, c->spool) != n) {
		c->io_error = 1;
	}
}

static uint64_t current_max(void)
{
	uint64_t m;

	pthread_rwlock_rdlock(&g_lock);
	m = g_state->cfg.max_size;
	pthread_rwlock_unlock(&g_lock);
	return m;
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	if (sa != NULL) {
		size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		           : sa->sa_family == AF_INET  ? sizeof(struct sockaddr_in) : 0;

		if (len > 0) {
			memcpy(&c->client, sa, len);
			c->have_client = 1;
		}
	}
	smfi_setpriv(ctx, c);
	pthread_mutex_lock(&g_count_lock);
	g_active++;
	pthread_mutex_unlock(&g_count_lock);
	return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	conn *c = smfi_getpriv(ctx);
	const char *auth;
	char dir[4096];

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	msg_reset(c);
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	c->env_from_ok = argv[0] != NULL && gw_addr_spec(argv[0], c->env_from,
	    sizeof(c->env_from)) == 0;
	/* Postfix sends {auth_authen} with MAIL FROM when the client authenticated (SASL). */
	auth = smfi_getsymval(ctx, "{auth_authen}");
	c->authenticated = auth != NULL && *auth != '\0';
	pthread_rwlock_rdlock(&g_lock);
	snprintf(dir, sizeof(dir), "%s", g_state->cfg.spool);
	pthread_rwlock_unlock(&g_lock);
	if ((c->spool = spool_file(dir)) == NULL) {
		return SMFIS_TEMPFAIL;
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	conn *c = smfi_getpriv(ctx);
	char addr[320], **n;

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	if (argv[0] == NULL || gw_addr_spec(argv[0], addr, sizeof(addr)) < 0) {
		addr[0] = '\0';
	}
	if ((n = realloc(c->rcpts, (c->nrcpts + 1) * sizeof(*n))) == NULL) {
		return SMFIS_TEMPFAIL;
	}
	c->rcpts = n;
	if ((n[c->nrcpts] = strdup(addr)) == NULL) {
		return SMFIS_TEMPFAIL;
	}
	c->nrcpts++;
	return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	conn *c = smfi_getpriv(ctx);
	uint64_t max = current_max();
	hdr *n;

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	if ((n = realloc(c->hdrs, (c->nhdrs + 1) * sizeof(*n))) == NULL) {
		return SMFIS_TEMPFAIL;
	}
	c->hdrs = n;
	n[c->nhdrs].name = strdup(name);
	n[c->nhdrs].value = NULL;
	if (strcasecmp(name, "From") == 0 || strcasecmp(name, AR_HEADER) == 0) {
		n[c->nhdrs].value = strdup(value);
		if (n[c->nhdrs].value == NULL) {
			c->io_error = 1;
		}
	}
	if (n[c->nhdrs].name == NULL) {
		return SMFIS_TEMPFAIL;
	}
	c->nhdrs++;
	/* The spooled header: "Name: value" with every line end CRLF (RFC 5322 §2.2.3 folding). */
	spool_write(c, name, strlen(name), max);
	spool_write(c, ": ", 2, max);
	for (const char *p = value; *p; p++) {
		if (*p == '\n' && (p == value || p[-1] != '\r')) {
			spool_write(c, "\r", 1, max);
		}
		spool_write(c, p, 1, max);
	}
	spool_write(c, "\r\n", 2, max);
	return SMFIS_CONTINUE;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	spool_write(c, "\r\n", 2, current_max());
	c->in_body = 1;
	return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	/* libmilter hands over the body with CRLF line ends (the SMTP form), as spooled. */
	spool_write(c, chunk, len, current_max());
	return SMFIS_CONTINUE;
}

/* ---- end of message ----------------------------------------------------------------------- */

typedef enum outcome {
	OUT_PASS = 0,      /* unchanged (plain, not ours, nothing to do) */
	OUT_DECRYPTED,
	OUT_UNDECRYPTABLE, /* passed with a header */
	OUT_REJECTED,
	OUT_SIGNED,
	OUT_SIGNED_ENCRYPTED,
	OUT_VERIFIED,
	OUT_OVERSIZE,
	OUT_TEMPFAIL,
} outcome;

static const char *outcome_name[] = {
	"passed", "decrypted", "undecryptable", "rejected", "signed", "signed+encrypted",
	"verified", "oversize", "tempfail",
};

typedef struct eom {
	SMFICTX *ctx;
	conn *c;
	const gw_config *cfg;
	gw_pool *pool;
	FILE *result;        /* the replacement message, or NULL */
	char mark[600];      /* value of our X-P11smime-Gateway header, or "" */
	char authres[2048];  /* value of our Authentication-Results header, or "" */
	char detail[600];    /* for the log line */
	int verdict;         /* -1 none, 0 fail, 1 pass */
} eom;

/* Read one header field (unfolded) from `f`; 0 at the blank line, -1 on error, 1 on a field. */
static int read_field(FILE *f, char **name, char **value)
{
	char *buf = NULL, *line = NULL;
	size_t cap = 0, len = 0, lcap = 0;
	ssize_t n;
	int c;

	*name = *value = NULL;
	for (;;) {
		if ((n = getline(&line, &lcap, f)) <= 0) {
			free(line);
			free(buf);
			return len == 0 ? -1 : -1;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
			line[--n] = '\0';
		}
		if (len == 0 && n == 0) {
			free(line);
			return 0;
		}
		if (cap < len + (size_t)n + 1) {
			char *nb = realloc(buf, len + (size_t)n + 1);

			if (nb == NULL) {
				free(line);
				free(buf);
				return -1;
			}
			buf = nb;
			cap = len + (size_t)n + 1;
		}
		memcpy(buf + len, line, (size_t)n);
		len += (size_t)n;
		buf[len] = '\0';
		/* A continuation line starts with WSP (RFC 5322 §2.2.3): unfold by dropping CRLF. */
		c = fgetc(f);
		if (c != ' ' && c != '\t') {
			if (c != EOF) {
				ungetc(c, f);
			}
			break;
		}
		ungetc(c, f);
	}
	free(line);
	{
		char *colon = strchr(buf, ':');
		char *v;

		if (colon == NULL) {
			free(buf);
			return -1;
		}
		*colon = '\0';
		v = colon + 1;
		while (*v == ' ' || *v == '\t') {
			v++;
		}
		*name = strdup(buf);
		*value = strdup(v);
		free(buf);
		if (*name == NULL || *value == NULL) {
			free(*name);
			free(*value);
			return -1;
		}
	}
	return 1;
}

/*
 * Replace the message by `e->result`: its outer fields are ours, byte for byte (the library
 * keeps them); the Content-* fields and MIME-Version change, and the body. Old Content-*
 * fields are deleted from the last occurrence down (indices stay valid), new ones added.
 */
static int apply_result(eom *e)
{
	conn *c = e->c;
	size_t nouter = 0, seen = 0;
	char *name, *value, buf[65536];
	size_t n;
	int r;

	for (size_t i = 0; i < c->nhdrs; i++) {
		if (!is_content_header(c->hdrs[i].name)) {
			nouter++;
		}
	}
	for (size_t i = c->nhdrs; i-- > 0;) {
		if (is_content_header(c->hdrs[i].name) &&
		    smfi_chgheader(e->ctx, c->hdrs[i].name, occurrence(c, i), NULL) != MI_SUCCESS) {
			return -1;
		}
	}
	rewind(e->result);
	while ((r = read_field(e->result, &name, &value)) == 1) {
		int skip = 0;

		if (seen < nouter && !is_content_header(name)) {
			/* One of the outer fields, kept in place by the MTA. */
			seen++;
			skip = 1;
		}
		if (!skip && smfi_addheader(e->ctx, name, value) != MI_SUCCESS) {
			free(name);
			free(value);
			return -1;
		}
		free(name);
		free(value);
	}
	if (r < 0 || seen != nouter) {
		p11s_log(P11S_LOG_ERROR, "internal: the rewritten message lost header fields");
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), e->result)) > 0) {
		if (smfi_replacebody(e->ctx, (unsigned char *)buf, (int)n) != MI_SUCCESS) {
			return -1;
		}
	}
	return ferror(e->result) ? -1 : 0;
}

/* Headers that only we may write: RFC 8601 §5 (A-R with our authserv-id) and our marker. */
static int remove_forged(eom *e)
{
	conn *c = e->c;

	for (size_t i = c->nhdrs; i-- > 0;) {
		int forged = strcasecmp(c->hdrs[i].name, MARK_HEADER) == 0 ||
		    (strcasecmp(c->hdrs[i].name, AR_HEADER) == 0 && c->hdrs[i].value != NULL &&
		     gw_authres_is_ours(c->hdrs[i].value, e->cfg->authserv_id));

		if (forged && smfi_chgheader(e->ctx, c->hdrs[i].name, occurrence(c, i), NULL) !=
		        MI_SUCCESS) {
			return -1;
		}
	}
	return 0;
}

static outcome verify_into_header(eom *e, FILE *msg)
{
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *r = NULL;
	int rc;

	o.trust_files = (const char *const *)e->cfg->trust;
	o.n_trust_files = e->cfg->ntrust;
	o.crl_files = (const char *const *)e->cfg->crl;
	o.n_crl_files = e->cfg->ncrl;
	rewind(msg);
	rc = p11s_verify_message(&r, msg, &o);
	if (rc == P11S_ERR_MALFORMED) {
		gw_authres_format(e->authres, sizeof(e->authres), e->cfg->authserv_id, NULL);
		e->verdict = 0;
		snprintf(e->detail + strlen(e->detail), sizeof(e->detail) - strlen(e->detail),
		    " smime=permerror");
		return OUT_VERIFIED;
	}
	if (rc < 0) {
		snprintf(e->detail, sizeof(e->detail), "verify: %s", p11s_error_last()->message);
		return OUT_TEMPFAIL;
	}
	gw_authres_format(e->authres, sizeof(e->authres), e->cfg->authserv_id, r);
	e->verdict = r->valid ? 1 : 0;
	snprintf(e->detail + strlen(e->detail), sizeof(e->detail) - strlen(e->detail),
	    " smime=%s", r->valid ? "pass" : "fail");
	p11s_verify_result_free(r);
	return OUT_VERIFIED;
}

static outcome do_inbound_decrypt(eom *e)
{
	p11s_decrypt_info info;
	p11s_msg_kind kind;
	gw_slot *slot;
	int rc, matched = 0;

	if ((slot = gw_pool_acquire(e->pool)) == NULL) {
		snprintf(e->detail, sizeof(e->detail), "token unavailable");
		return OUT_TEMPFAIL;
	}
	if ((e->result = spool_file(e->cfg->spool)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		return OUT_TEMPFAIL;
	}
	rewind(e->c->spool);
	rc = gw_slot_decrypt(slot, e->c->spool, e->result, &info, &matched);
	gw_pool_release(e->pool, slot, matched || rc != P11S_ERR_NOT_FOUND ? rc : P11S_OK);
	if (rc == P11S_OK) {
		snprintf(e->mark, sizeof(e->mark), "decrypted; content=%s; cipher=%s; "
		    "authenticated=%s; key-management=%s", info.content_type, info.cipher,
		    info.authenticated ? "yes" : "no (CBC: no integrity protection)",
		    info.key_management);
		snprintf(e->detail, sizeof(e->detail), "%s %s", info.cipher, info.key_uri);
		if (e->cfg->verify) {
			rewind(e->result);
			if (p11s_message_kind(e->result, &kind) == P11S_OK && kind == P11S_MSG_SIGNED &&
			    verify_into_header(e, e->result) == OUT_TEMPFAIL) {
				return OUT_TEMPFAIL;
			}
		}
		return OUT_DECRYPTED;
	}
	fclose(e->result);
	e->result = NULL;
	if (!matched && rc == P11S_ERR_NOT_FOUND) {
		snprintf(e->mark, sizeof(e->mark), "not decrypted (no key for any recipient)");
		snprintf(e->detail, sizeof(e->detail), "no key for any recipient");
		return OUT_UNDECRYPTABLE;
	}
	if (rc == P11S_ERR_DECRYPT || rc == P11S_ERR_MALFORMED) {
		/* One reason for every data-dependent failure: no oracle (STANDARDS.md §12). */
		snprintf(e->mark, sizeof(e->mark), "not decrypted (decryption failed)");
		snprintf(e->detail, sizeof(e->detail), "decryption failed");
		return OUT_UNDECRYPTABLE;
	}
	snprintf(e->detail, sizeof(e->detail), "%s: %s", p11s_error_name(rc),
	    p11s_error_last()->message);
	return OUT_TEMPFAIL;
}

/* DIR/<address>.pem for every recipient, or 0 (then the message is not encrypted). */
static int recipient_files(eom *e, char ***out)
{
	char **files = calloc(e->c->nrcpts + 1, sizeof(*files));

	*out = NULL;
	if (files == NULL) {
		return -1;
	}
	for (size_t i = 0; i < e->c->nrcpts; i++) {
		const char *a = e->c->rcpts[i];
		size_t len = strlen(e->cfg->certs) + strlen(a) + 6;

		/* An address with a '/' (or starting with '.') never names a file outside DIR. */
		if (a[0] == '\0' || a[0] == '.' || strchr(a, '/') != NULL ||
		    (files[i] = malloc(len)) == NULL) {
			goto none;
		}
		snprintf(files[i], len, "%s/%s.pem", e->cfg->certs, a);
		if (access(files[i], R_OK) != 0) {
			goto none;
		}
	}
	*out = files;
	return (int)e->c->nrcpts;
none:
	for (size_t i = 0; i < e->c->nrcpts; i++) {
		free(files[i]);
	}
	free(files);
	return 0;
}

static outcome do_outbound_sign(eom *e, const gw_signer *who)
{
	p11s_encrypt_opts eo = P11S_ENCRYPT_OPTS_INIT;
	p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	gw_slot *slot;
	p11s_key *key;
	FILE *enc;
	char **files = NULL;
	int rc, nfiles;

	if ((slot = gw_pool_acquire(e->pool)) == NULL) {
		snprintf(e->detail, sizeof(e->detail), "token unavailable");
		return OUT_TEMPFAIL;
	}
	if ((key = gw_slot_signer_key(e->pool, slot, who)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		snprintf(e->detail, sizeof(e->detail), "no signing key for %s on the token", who->addr);
		return OUT_TEMPFAIL;
	}
	if ((e->result = spool_file(e->cfg->spool)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		return OUT_TEMPFAIL;
	}
	rewind(e->c->spool);
	gw_policy_sign_opts(e->cfg, &so);
	rc = p11s_sign_message(key, &so, e->c->spool, e->result);
	gw_pool_release(e->pool, slot, rc);
	if (rc == P11S_ERR_MALFORMED) {
		fclose(e->result);
		e->result = NULL;
		snprintf(e->mark, sizeof(e->mark), "not signed (not an RFC 5322 message)");
		snprintf(e->detail, sizeof(e->detail), "not signed: %s", p11s_error_last()->message);
		return OUT_PASS;
	}
	if (rc < 0 || fflush(e->result) != 0) {
		snprintf(e->detail, sizeof(e->detail), "sign: %s", p11s_error_last()->message);
		return OUT_TEMPFAIL;
	}
	snprintf(e->detail, sizeof(e->detail), "signer %s", who->addr);
	if (!e->cfg->encrypt || (nfiles = recipient_files(e, &files)) <= 0) {
		return OUT_SIGNED;
	}
	/* Sign, then encrypt (RFC 8551 §3.7): to every recipient's certificate from DIR. */
	if ((enc = spool_file(e->cfg->spool)) == NULL) {
		rc = P11S_ERR_IO;
	} else {
		eo.recipient_files = (const char *const *)files;
		eo.n_recipient_files = (size_t)nfiles;
		eo.crlf = 1;
		rewind(e->result);
		rc = p11s_encrypt_message(e->result, enc, &eo);
		if (rc == P11S_OK && fflush(enc) != 0) {
			rc = P11S_ERR_IO;
		}
	}
	for (int i = 0; i < nfiles; i++) {
		free(files[i]);
	}
	free(files);
	if (rc < 0) {
		/* A recipient certificate that is unusable: better signed than lost; say so. */
		if (enc != NULL) {
			fclose(enc);
		}
		if (rc == P11S_ERR_USAGE || rc == P11S_ERR_MALFORMED) {
			snprintf(e->mark, sizeof(e->mark), "signed, not encrypted (recipient certificate "
			    "unusable)");
			p11s_log(P11S_LOG_WARN, "not encrypted: %s", p11s_error_last()->message);
			return OUT_SIGNED;
		}
		snprintf(e->detail, sizeof(e->detail), "encrypt: %s", p11s_error_last()->message);
		return OUT_TEMPFAIL;
	}
	fclose(e->result);
	e->result = enc;
	return OUT_SIGNED_ENCRYPTED;
}

static const gw_signer *outbound_signer(eom *e)
{
	const gw_signer *who;
	char from[320];
	int nfrom = 0, fromi = -1;

	if (e->cfg->nsigners == 0 || !e->c->env_from_ok) {
		return NULL;
	}
	if (!e->c->authenticated && !(e->c->have_client &&
	        gw_cidr_match(e->cfg->trusted, e->cfg->ntrusted, &e->c->client))) {
		return NULL;
	}
	for (size_t i = 0; i < e->c->nhdrs; i++) {
		if (strcasecmp(e->c->hdrs[i].name, "From") == 0) {
			nfrom++;
			fromi = (int)i;
		}
	}
	/* One From with one mailbox, equal to MAIL FROM, and a configured signer. */
	if (nfrom != 1 || e->c->hdrs[fromi].value == NULL ||
	    gw_addr_spec(e->c->hdrs[fromi].value, from, sizeof(from)) < 0 ||
	    strcmp(from, e->c->env_from) != 0) {
		return NULL;
	}
	who = gw_policy_signer(e->cfg, from);
	return who;
}

static outcome decide(eom *e)
{
	const gw_signer *who;
	p11s_msg_kind kind;
	int rc;

	if (e->c->io_error || e->c->spool == NULL) {
		snprintf(e->detail, sizeof(e->detail), "spool I/O error");
		return OUT_TEMPFAIL;
	}
	if (e->c->oversize) {
		snprintf(e->detail, sizeof(e->detail), "over max-message-size");
		return OUT_OVERSIZE;
	}
	if (fflush(e->c->spool) != 0) {
		return OUT_TEMPFAIL;
	}
	rewind(e->c->spool);
	rc = p11s_message_kind(e->c->spool, &kind);
	if (rc == P11S_ERR_MALFORMED) {
		kind = P11S_MSG_PLAIN;
	} else if (rc < 0) {
		snprintf(e->detail, sizeof(e->detail), "%s", p11s_error_last()->message);
		return OUT_TEMPFAIL;
	}
	if ((who = outbound_signer(e)) != NULL) {
		if (kind != P11S_MSG_PLAIN) {
			snprintf(e->detail, sizeof(e->detail), "already S/MIME, not signed");
			return OUT_PASS;
		}
		return do_outbound_sign(e, who);
	}
	if (kind == P11S_MSG_ENVELOPED && e->cfg->decrypt) {
		return do_inbound_decrypt(e);
	}
	if (kind == P11S_MSG_SIGNED && e->cfg->verify) {
		return verify_into_header(e, e->c->spool);
	}
	return OUT_PASS;
}

static void count(outcome o, uint64_t us, int verdict)
{
	pthread_mutex_lock(&g_count_lock);
	g_count.messages++;
	switch (o) {
	case OUT_DECRYPTED: g_count.decrypted++; break;
	case OUT_UNDECRYPTABLE: g_count.undecryptable++; break;
	case OUT_REJECTED: g_count.undecryptable++; g_count.rejected++; break;
	case OUT_SIGNED: g_count.signed_++; break;
	case OUT_SIGNED_ENCRYPTED: g_count.signed_++; g_count.encrypted++; break;
	case OUT_OVERSIZE: g_count.oversize++; break;
	case OUT_TEMPFAIL: g_count.tempfailed++; break;
	case OUT_PASS: g_count.passed++; break;
	case OUT_VERIFIED: break;
	}
	if (verdict == 1) {
		g_count.verified_pass++;
	} else if (verdict == 0) {
		g_count.verified_fail++;
	}
	g_count.latency_us_total += us;
	if (us > g_count.latency_us_max) {
		g_count.latency_us_max = us;
	}
	pthread_mutex_unlock(&g_count_lock);
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);
	eom e = { 0 };
	outcome o;
	struct timespec t1;
	uint64_t us;
	const char *qid;
	sfsistat ret;

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	e.ctx = ctx;
	e.c = c;
	e.verdict = -1;
	/* At most `workers` messages are processed at once; the others wait their turn. */
	pthread_mutex_lock(&g_work_lock);
	while (g_work_busy >= g_work_max) {
		pthread_cond_wait(&g_work_cond, &g_work_lock);
	}
	g_work_busy++;
	pthread_mutex_unlock(&g_work_lock);

	pthread_rwlock_rdlock(&g_lock);
	e.cfg = &g_state->cfg;
	e.pool = g_state->pool;
	p11s_error_clear();
	o = decide(&e);
	if (o == OUT_UNDECRYPTABLE && e.cfg->reject_undecryptable) {
		o = OUT_REJECTED;
	}
	ret = SMFIS_CONTINUE;
	if (o == OUT_TEMPFAIL) {
		ret = SMFIS_TEMPFAIL;
	} else if (o == OUT_REJECTED) {
		/* The same reply for every reason (STANDARDS.md §12: no distinguishing bounces). */
		(void)smfi_setreply(ctx, "554", "5.7.1", "message cannot be processed");
		ret = SMFIS_REJECT;
	} else if (remove_forged(&e) < 0 ||
	           (e.result != NULL && apply_result(&e) < 0) ||
	           (e.mark[0] != '\0' && smfi_insheader(ctx, 0, MARK_HEADER, e.mark) != MI_SUCCESS) ||
	           (e.authres[0] != '\0' &&
	            smfi_insheader(ctx, 0, AR_HEADER, e.authres) != MI_SUCCESS)) {
		snprintf(e.detail, sizeof(e.detail), "the MTA refused a modification");
		o = OUT_TEMPFAIL;
		ret = SMFIS_TEMPFAIL;
	}
	if (ret == SMFIS_TEMPFAIL) {
		(void)smfi_setreply(ctx, "451", "4.7.1", "temporary failure, try again later");
	}
	pthread_rwlock_unlock(&g_lock);

	pthread_mutex_lock(&g_work_lock);
	g_work_busy--;
	pthread_cond_signal(&g_work_cond);
	pthread_mutex_unlock(&g_work_lock);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	us = (uint64_t)((t1.tv_sec - c->t0.tv_sec) * 1000000 + (t1.tv_nsec - c->t0.tv_nsec) / 1000);
	count(o, us, e.verdict);
	qid = smfi_getsymval(ctx, "i");
	p11s_log(o == OUT_TEMPFAIL ? P11S_LOG_WARN : P11S_LOG_INFO,
	    "%s: from=<%s> size=%llu outcome=%s%s%s time=%.1fms", qid != NULL ? qid : "NOQUEUE",
	    c->env_from, (unsigned long long)c->size, outcome_name[o], e.detail[0] ? " " : "",
	    e.detail, (double)us / 1000.0);
	if (e.result != NULL) {
		fclose(e.result);
	}
	msg_reset(c);
	return ret;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		msg_reset(c);
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		msg_reset(c);
		free(c);
		smfi_setpriv(ctx, NULL);
		pthread_mutex_lock(&g_count_lock);
		g_active--;
		pthread_mutex_unlock(&g_count_lock);
	}
	return SMFIS_CONTINUE;
}

struct smfiDesc gw_milter_desc = {
	.xxfi_name = "p11smime-gateway",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY,
	.xxfi_connect = cb_connect,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
};

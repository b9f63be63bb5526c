/*
 * `p11smime agent` (docs/agent.md): a per-user daemon that keeps one library context, and so
 * the token logins and open sessions, for the life of the process, and runs the CLI's own
 * sign/decrypt/wrap/unwrap/receipt code for clients that pass their file descriptors over a
 * Unix socket. One operation at a time, in this process: PKCS#11 sessions and logins do not
 * survive fork() (PKCS#11 v2.40 §6.7.7), so there is no process per connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <p11smime/pin_callback.h>

#include "agent_client.h"
#include "cli.h"
#include "pinentry.h"
#include "proto.h"

/* PKCS#11 v2.40 §5.1 return values that mean the login (or the token) is gone. */
#define CKR_DEVICE_ERROR_ 0x30UL
#define CKR_DEVICE_REMOVED_ 0x32UL
#define CKR_SESSION_CLOSED_ 0xB0UL
#define CKR_SESSION_HANDLE_INVALID_ 0xB3UL
#define CKR_TOKEN_NOT_PRESENT_ 0xE0UL
#define CKR_USER_NOT_LOGGED_IN_ 0x101UL

#define PIN_CALLBACK "agent"
#define MAX_LABELS 16
#define MAX_KEYS 16

typedef struct agent {
	cli_globals *g;
	char sock_path[108];
	int lfd, wake[2];          /* listening socket; self-pipe (signals, card removal) */
	long cache_ttl, max_ttl;   /* seconds; 0 cache_ttl: log in for every operation */
	const char *pinentry;
	p11s_pin_source *pins;     /* the agent's --pin-source, or NULL: pinentry */
	p11s_ctx *ctx;             /* NULL: logged out, module not loaded */
	time_t login_at, last_use;
	char labels[MAX_LABELS][33]; /* tokens logged in on ctx */
	size_t nlabels;
	char pending[33];          /* a normal login was attempted during this operation */
	char wrong_msg[256];       /* SETERROR for the next pinentry of that token */
	char wrong_label[33];
	unsigned long ops, refused;
	struct {
		char *uri;
		p11s_key *key;
	} keys[MAX_KEYS];          /* keys found on ctx, by --key URI (agent_key_find()) */
	size_t nkeys;
	const agent_req *cur;      /* the request being served */
	FILE *log;                 /* NULL: syslog */
	int stop;
} agent;

static volatile sig_atomic_t wake_fd = -1;

static void alog(agent *A, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void alog(agent *A, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (A->log != NULL) {
		fprintf(A->log, "p11smime agent[%ld]: %s\n", (long)getpid(), line);
		fflush(A->log);
	} else {
		syslog(LOG_INFO, "%s", line);
	}
}

static void on_signal(int sig)
{
	char c = sig == SIGHUP ? 'h' : 't';

	if (wake_fd >= 0) {
		(void)!write(wake_fd, &c, 1);
	}
}

/* Card removal (pcsc-lite, monitor thread): wake the main loop, which drops the login. */
static void on_card(const char *reader, int present, void *payload)
{
	agent *A = payload;
	char c = 'r';

	(void)reader;
	if (!present) {
		(void)!write(A->wake[1], &c, 1);
	}
}

/* Forget the found keys (they belong to ctx; a new context finds them again). */
static void forget_keys(agent *A)
{
	for (size_t i = 0; i < A->nkeys; i++) {
		p11s_key_free(A->keys[i].key);
		free(A->keys[i].uri);
	}
	A->nkeys = 0;
}

/*
 * cli_key_find() inside the agent. Finding a key reads every object of its token and parses
 * every certificate there (the key's own and the CA certificates it is sent with): more than
 * half of the agent's time for one signature (docs/performance.md). A key found by a command
 * that succeeded is kept for the next commands with the same --key URI, as a long-lived
 * library user keeps its key (token.h); the library itself finds the token again after a
 * removal (the key's stale flag). Kept until the login is dropped or any command fails. A
 * URI with a pin-value or pin-source is never kept: no PIN stays in the agent.
 */
static int agent_key_find(void *payload, p11s_ctx *ctx, const char *uri, p11s_key **out)
{
	agent *A = payload;
	char *copy;
	int rc;

	for (size_t i = 0; ctx == A->ctx && i < A->nkeys; i++) {
		if (strcmp(A->keys[i].uri, uri) == 0) {
			*out = p11s_key_up_ref(A->keys[i].key);
			return P11S_OK;
		}
	}
	if ((rc = p11s_key_find(ctx, uri, out)) < 0) {
		return rc;
	}
	if (ctx == A->ctx && A->nkeys < MAX_KEYS && strstr(uri, "pin-") == NULL &&
	    (copy = strdup(uri)) != NULL) {
		A->keys[A->nkeys].uri = copy;
		A->keys[A->nkeys++].key = p11s_key_up_ref(*out);
	}
	return rc;
}

/* Log out everywhere: freeing the context closes the sessions (C_Logout, C_CloseAllSessions). */
static void drop_login(agent *A, const char *why)
{
	if (A->ctx == NULL) {
		return;
	}
	forget_keys(A);
	alog(A, "dropping the login%s (%s)", A->nlabels ? "" : " (none held)", why);
	p11s_ctx_free(A->ctx);
	A->ctx = NULL;
	A->nlabels = 0;
	A->login_at = 0;
}

/* Seconds until the cached login expires (cache-ttl since last use, max-ttl since login). */
static long cache_left(const agent *A, time_t now)
{
	long a, b;

	if (A->ctx == NULL || A->nlabels == 0) {
		return 0;
	}
	a = A->cache_ttl - (long)(now - A->last_use);
	b = A->max_ttl > 0 ? A->max_ttl - (long)(now - A->login_at) : a;
	a = a < b ? a : b;
	return a < 0 ? 0 : a;
}

/* The token label in the library's "token 'LABEL'..." description of a PIN request. */
static void label_of(const char *what, char *out, size_t cap)
{
	const char *p = strstr(what, "token '"), *q;

	out[0] = '\0';
	if (p != NULL && (q = strchr(p + 7, '\'')) != NULL) {
		snprintf(out, cap, "%.*s", (int)(q - p - 7), p + 7);
	}
}

/* The --key URI of the command being served, for the pinentry's description. */
static const char *current_key(const agent *A)
{
	for (int i = 1; A->cur != NULL && i < A->cur->argc; i++) {
		if (strcmp(A->cur->argv[i], "--key") == 0 && i + 1 < A->cur->argc) {
			return A->cur->argv[i + 1];
		}
		if (strncmp(A->cur->argv[i], "--key=", 6) == 0) {
			return A->cur->argv[i] + 6;
		}
	}
	return NULL;
}

/*
 * Every PIN the library needs (pin_callback.h): the normal login once per token while the
 * context lives, and the context-specific login of a CKA_ALWAYS_AUTHENTICATE key for every
 * operation. Neither is kept here: the PIN goes from the source into `out`, and the library
 * wipes it as soon as C_Login returns (DESIGN.md decision 8).
 */
static int agent_pin(const char *what, p11s_secret *out, char *why, size_t whylen, void *payload)
{
	agent *A = payload;
	int per_op = strstr(what, "(this signature)") != NULL;
	char label[33], desc[1024];
	const char *key = current_key(A), *err = NULL;

	label_of(what, label, sizeof(label));
	alog(A, "PIN requested for %s", what);
	if (A->pins != NULL) {
		p11s_secret *s = NULL;

		if (p11s_pin_source_read(A->pins, what, &s) < 0) {
			snprintf(why, whylen, "%s", p11s_error_last()->message);
			return -1;
		}
		if (p11s_secret_set(out, p11s_secret_data(s), p11s_secret_len(s)) < 0) {
			p11s_secret_free(s);
			snprintf(why, whylen, "PIN too long");
			return -1;
		}
		p11s_secret_free(s);
		goto got_pin;
	}
	snprintf(desc, sizeof(desc), "%s of token '%s'%s%s%s",
	    per_op ? "PIN for this operation only (the key asks for it every time; never cached)"
	           : "Please enter the PIN", label, key ? "\nKey: " : "", key ? key : "",
	    per_op ? "" : "\nThe p11smime agent keeps the login, not the PIN.");
	if (A->wrong_msg[0] != '\0' && strcmp(A->wrong_label, label) == 0) {
		err = A->wrong_msg;
	}
	if (agent_pinentry_get(A->pinentry, A->cur ? A->cur->tty : NULL,
	        A->cur ? A->cur->term : NULL, desc, err, out, why, whylen) < 0) {
		return -1;
	}
	if (err != NULL) {
		A->wrong_msg[0] = '\0';
	}
got_pin:
	/*
	 * Only a PIN that was given leads to a login attempt: a cancelled or failed PIN entry
	 * must not mark the token logged in (the command fails with no C_Login at all).
	 */
	if (!per_op) {
		snprintf(A->pending, sizeof(A->pending), "%s", label);
	}
	return 0;
}

/* After a wrong PIN: the tries left as the token's flags tell (public token info). */
static void note_wrong_pin(agent *A, const char *label)
{
	p11s_token_info *t = NULL;
	size_t n = 0;
	const char *state = "the token does not report a low try count";

	if (A->ctx != NULL && p11s_token_list(A->ctx, &t, &n) == P11S_OK) {
		for (size_t i = 0; i < n; i++) {
			if (strcmp(t[i].label, label) != 0) {
				continue;
			}
			if (t[i].flags & P11S_TOKEN_USER_PIN_LOCKED) {
				state = "the PIN is now locked";
			} else if (t[i].flags & P11S_TOKEN_USER_PIN_FINAL_TRY) {
				state = "one try left before the PIN locks";
			} else if (t[i].flags & P11S_TOKEN_USER_PIN_COUNT_LOW) {
				state = "few tries left";
			}
		}
	}
	free(t);
	snprintf(A->wrong_msg, sizeof(A->wrong_msg), "Wrong PIN for token '%s': %s", label, state);
	snprintf(A->wrong_label, sizeof(A->wrong_label), "%s", label);
	alog(A, "%s", A->wrong_msg);
}

static int ensure_ctx(agent *A)
{
	cli_globals g = *A->g;

	if (A->ctx != NULL) {
		return 0;
	}
	g.pin_source = "callback:" PIN_CALLBACK;
	if (cli_open(&g, NULL, &A->ctx) < 0) {
		A->ctx = NULL;
		return -1;
	}
	return 0;
}

static int send_rep(int fd, const agent_rep *r)
{
	char buf[AGENT_MAX_MSG];
	long n = agent_rep_encode(r, buf, sizeof(buf));

	return n < 0 || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n ? -1 : 0;
}

static int send_error(int fd, const char *code, const char *text)
{
	agent_rep r = { .type = AGENT_REP_ERROR, .code = code, .text = text };

	return send_rep(fd, &r);
}

static void json_s(char *buf, size_t cap, size_t *o, const char *s)
{
	*o += (size_t)snprintf(buf + *o, *o < cap ? cap - *o : 0, "\"");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			*o += (size_t)snprintf(buf + *o, *o < cap ? cap - *o : 0, "\\%c", c);
		} else if (c < 0x20) {
			*o += (size_t)snprintf(buf + *o, *o < cap ? cap - *o : 0, "\\u%04x", c);
		} else {
			*o += (size_t)snprintf(buf + *o, *o < cap ? cap - *o : 0, "%c", c);
		}
	}
	*o += (size_t)snprintf(buf + *o, *o < cap ? cap - *o : 0, "\"");
}

static int logged_in(const agent *A, const char *label)
{
	for (size_t i = 0; i < A->nlabels; i++) {
		if (strcmp(A->labels[i], label) == 0) {
			return 1;
		}
	}
	return 0;
}

#define OUT(...) (o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, __VA_ARGS__))

/* STATUS: the tokens, which are logged in, the time left in the cache, operations served. */
static void status_text(agent *A, int json, char *buf, size_t cap)
{
	p11s_token_info *t = NULL;
	size_t n = 0, o = 0;
	time_t now = time(NULL);
	long left = cache_left(A, now);
	int fresh = A->ctx == NULL;

	if (ensure_ctx(A) < 0 || p11s_token_list(A->ctx, &t, &n) < 0) {
		n = 0;
	}
	if (json) {
		OUT("{\"version\":1,\"pid\":%ld,\"socket\":", (long)getpid());
		json_s(buf, cap, &o, A->sock_path);
		OUT(",\"cache_ttl\":%ld,\"max_ttl\":%ld,\"operations\":%lu,\"refused\":%lu,"
		    "\"logged_in\":%s,\"cache_left\":%ld,\"keys_kept\":%zu,\"tokens\":[",
		    A->cache_ttl, A->max_ttl, A->ops, A->refused, A->nlabels ? "true" : "false", left,
		    A->nkeys);
		for (size_t i = 0, k = 0; i < n; i++) {
			if (!(t[i].flags & P11S_TOKEN_PRESENT) || t[i].label[0] == '\0') {
				continue;
			}
			OUT("%s{\"label\":", k++ ? "," : "");
			json_s(buf, cap, &o, t[i].label);
			OUT(",\"serial\":");
			json_s(buf, cap, &o, t[i].serial);
			OUT(",\"uri\":");
			json_s(buf, cap, &o, t[i].uri);
			OUT(",\"logged_in\":%s,\"cache_left\":%ld}",
			    logged_in(A, t[i].label) ? "true" : "false",
			    logged_in(A, t[i].label) ? left : 0);
		}
		OUT("]}\n");
	} else {
		OUT("agent pid %ld on %s\noperations served: %lu (refused connections: %lu)\n"
		    "cache-ttl %lds, max-ttl %lds\n", (long)getpid(), A->sock_path, A->ops,
		    A->refused, A->cache_ttl, A->max_ttl);
		for (size_t i = 0; i < n; i++) {
			if (!(t[i].flags & P11S_TOKEN_PRESENT) || t[i].label[0] == '\0') {
				continue;
			}
			if (logged_in(A, t[i].label)) {
				OUT("token '%s': logged in, %lds left\n", t[i].label, left);
			} else {
				OUT("token '%s': not logged in\n", t[i].label);
			}
		}
	}
	free(t);
	if (o >= cap && cap > 0) {
		buf[cap - 1] = '\0';
	}
	if (fresh && A->ctx != NULL) {
		/*
		 * Made for this status only: not kept, so that the next command loads the module
		 * afresh and sees a token inserted meanwhile (SoftHSM, like some card modules,
		 * lists its tokens at C_Initialize).
		 */
		p11s_ctx_free(A->ctx);
		A->ctx = NULL;
	}
}

static const cli_command *allowed(const char *name)
{
	/* mua: NeoMutt's smime_sign/decrypt_command run here too, so a mail client logs in once. */
	static const cli_command *const cmds[] = { &cmd_sign, &cmd_decrypt, &cmd_wrap, &cmd_unwrap,
		&cmd_receipt, &cmd_mua };

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(cmds[i]->name, name) == 0) {
			return cmds[i];
		}
	}
	return NULL;
}

/* Does a --module/--backend the client gave name what this agent uses? */
static int same_config(const agent *A, const agent_req *r)
{
	const char *m = A->g->module ? A->g->module : getenv("P11SMIME_MODULE");
	const char *b = A->g->backend ? A->g->backend : "pkcs11";

	if (r->module != NULL && (m == NULL || strcmp(m, r->module) != 0)) {
		return 0;
	}
	return r->backend == NULL || strcmp(b, r->backend) == 0;
}

/* Does this error mean the login or the token is gone (docs/agent.md "Dropping the login")? */
static int login_lost(const p11s_error *e)
{
	if (e->code == P11S_ERR_DEVICE_REMOVED || e->code == P11S_ERR_TOKEN_ABSENT ||
	    e->code == P11S_ERR_LOGIN || e->code == P11S_ERR_PIN_INCORRECT ||
	    e->code == P11S_ERR_PIN_LOCKED) {
		return 1;
	}
	return e->has_ck_rv && (e->ck_rv == CKR_DEVICE_REMOVED_ || e->ck_rv == CKR_TOKEN_NOT_PRESENT_ ||
	    e->ck_rv == CKR_USER_NOT_LOGGED_IN_ || e->ck_rv == CKR_DEVICE_ERROR_ ||
	    e->ck_rv == CKR_SESSION_CLOSED_ || e->ck_rv == CKR_SESSION_HANDLE_INVALID_);
}

/* Run one command with the client's cwd and stdio; returns its exit status. */
static int run_command(agent *A, const cli_command *cmd, const agent_req *r, const int *fds)
{
	char *argv[AGENT_MAX_ARGS + 1];
	cli_globals g = *A->g;
	int saved[3], status, root;
	const p11s_error *e;
	p11s_log_level lvl = p11s_log_get_level();

	if ((root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		return EXIT_TOKEN;
	}
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++) {
		saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 3);
		(void)dup2(fds[i + 1], i);
	}
	__fpurge(stdin);
	clearerr(stdin);
	clearerr(stdout);
	if (fchdir(fds[0]) != 0) {
		fprintf(stderr, "p11smime: error: agent: cannot enter the working directory: %s\n",
		    strerror(errno));
		status = EXIT_USAGE;
		goto restore;
	}
	p11s_log_set_level(r->verbosity < 0 ? P11S_LOG_ERROR : r->verbosity == 0 ? P11S_LOG_WARN
	    : r->verbosity == 1 ? P11S_LOG_INFO : P11S_LOG_DEBUG);
	p11s_error_clear();
	if (ensure_ctx(A) < 0) {
		status = cli_fail();
		goto restore;
	}
	argv[0] = "p11smime";
	for (int i = 1; i < r->argc; i++) {
		argv[i] = (char *)r->argv[i];
	}
	argv[r->argc] = NULL;
	g.json = r->json;
	g.verbosity = r->verbosity;
	g.agent_ctx = A->ctx;
	g.agent_key_find = agent_key_find;
	g.agent_key_payload = A;
	g.pin_source = "callback:" PIN_CALLBACK;
	A->cur = r;
	A->pending[0] = '\0';
	status = cmd->run(&g, r->argc, argv);
	A->cur = NULL;
	e = p11s_error_last();
	if (status != EXIT_OK) {
		forget_keys(A); /* whatever failed, find the key afresh next time */
	}
	if (status == EXIT_OK || !login_lost(e)) {
		if (A->pending[0] != '\0' && !logged_in(A, A->pending) && A->nlabels < MAX_LABELS) {
			snprintf(A->labels[A->nlabels++], sizeof(A->labels[0]), "%s", A->pending);
			A->login_at = A->login_at ? A->login_at : time(NULL);
			alog(A, "logged in to token '%s'", A->pending);
		}
		A->last_use = time(NULL);
	} else {
		if (e->code == P11S_ERR_PIN_INCORRECT && A->pending[0] != '\0') {
			note_wrong_pin(A, A->pending);
		}
		drop_login(A, e->message);
	}
	if (status != EXIT_OK && A->ctx != NULL && A->nlabels == 0) {
		/* No login to keep: start afresh next time (a token may come back meanwhile). */
		p11s_ctx_free(A->ctx);
		A->ctx = NULL;
	}
	if (A->cache_ttl == 0) {
		drop_login(A, "cache-ttl 0: one login per operation");
	}
restore:
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++) {
		if (saved[i] >= 0) {
			(void)dup2(saved[i], i);
			close(saved[i]);
		}
	}
	__fpurge(stdin);
	clearerr(stdin);
	clearerr(stdout);
	(void)!fchdir(root);
	close(root);
	p11s_log_set_level(lvl);
	return status;
}

/* One connection: check the peer, read its request and descriptors, serve, reply. */
static void serve(agent *A, int cfd)
{
	struct ucred cr;
	socklen_t crl = sizeof(cr);
	char *buf = NULL, why[256];
	union {
		char b[CMSG_SPACE(sizeof(int) * (AGENT_RUN_FDS + 4))];
		struct cmsghdr align;
	} u;
	struct iovec iov;
	struct msghdr mh = { 0 };
	struct cmsghdr *c;
	int fds[AGENT_RUN_FDS + 4], nfds = 0;
	struct timeval tv = { 5, 0 };
	agent_req *r = NULL;
	ssize_t n;

	/* SO_PEERCRED (unix(7)): the credentials of the process that connected. */
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0 || cr.uid != getuid()) {
		A->refused++;
		alog(A, "refused a connection from uid %ld pid %ld (this agent serves uid %ld only)",
		    (long)cr.uid, (long)cr.pid, (long)getuid());
		/*
		 * Read (and drop) its request first: closing a socket with unread data resets the
		 * connection and the client would not see why. recv() without a control buffer
		 * makes the kernel close any descriptors it sent (unix(7), SCM_RIGHTS).
		 */
		struct pollfd p = { cfd, POLLIN, 0 };
		char junk[512];

		if (poll(&p, 1, 1000) > 0) {
			(void)!recv(cfd, junk, sizeof(junk), MSG_DONTWAIT | MSG_TRUNC);
		}
		(void)send_error(cfd, "REFUSED", "this agent serves another user");
		return;
	}
	(void)setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if ((buf = malloc(AGENT_MAX_MSG + 1)) == NULL || (r = malloc(sizeof(*r))) == NULL) {
		goto out;
	}
	iov.iov_base = buf;
	iov.iov_len = AGENT_MAX_MSG + 1;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.b;
	mh.msg_controllen = sizeof(u.b);
	do {
		n = recvmsg(cfd, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	for (c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && nfds < (int)(sizeof(fds) / sizeof(fds[0])); i++) {
				memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			}
		}
	}
	if (n <= 0) {
		goto out;
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
	    agent_req_parse(buf, (size_t)n, r, why, sizeof(why)) < 0) {
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
			snprintf(why, sizeof(why), "request too large");
		}
		alog(A, "bad request from pid %ld: %s", (long)cr.pid, why);
		(void)send_error(cfd, strstr(why, "version") ? "VERSION" : "MALFORMED", why);
		goto out;
	}
	if (r->type == AGENT_REQ_STATUS) {
		char *text = malloc(AGENT_MAX_MSG - 64);
		agent_rep rep = { .type = AGENT_REP_STATUS };

		if (text != NULL) {
			status_text(A, r->json, text, AGENT_MAX_MSG - 64);
			rep.text = text;
			(void)send_rep(cfd, &rep);
		}
		free(text);
	} else if (r->type == AGENT_REQ_STOP) {
		agent_rep rep = { .type = AGENT_REP_OK };

		alog(A, "stop requested by pid %ld", (long)cr.pid);
		(void)send_rep(cfd, &rep);
		A->stop = 1;
	} else {
		const cli_command *cmd = allowed(r->argv[0]);
		struct stat st;
		agent_rep rep = { .type = AGENT_REP_EXIT };

		if (cmd == NULL) {
			(void)send_error(cfd, "UNSUPPORTED", "the agent runs sign, decrypt, wrap, unwrap, "
			    "receipt and mua only");
		} else if (!same_config(A, r)) {
			(void)send_error(cfd, "MISMATCH", "the agent uses another --module or --backend");
		} else if (nfds != AGENT_RUN_FDS || fstat(fds[0], &st) != 0 || !S_ISDIR(st.st_mode)) {
			(void)send_error(cfd, "FDS", "RUN needs 4 descriptors: cwd, stdin, stdout, stderr");
		} else {
			alog(A, "%s for pid %ld", cmd->name, (long)cr.pid);
			rep.exit_status = run_command(A, cmd, r, fds);
			A->ops++;
			(void)send_rep(cfd, &rep);
		}
	}
out:
	for (int i = 0; i < nfds; i++) {
		close(fds[i]);
	}
	free(r);
	free(buf);
}

/* $XDG_RUNTIME_DIR/p11smime (0700, ours) or the directory of --socket as the user chose it. */
static int make_socket(agent *A, const char *explicit_path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *x = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	mode_t old;
	int fd;

	if (explicit_path != NULL) {
		if (strlen(explicit_path) >= sizeof(A->sock_path)) {
			return cli_usage_error("agent: socket path too long");
		}
		snprintf(A->sock_path, sizeof(A->sock_path), "%s", explicit_path);
	} else {
		char dir[sizeof(A->sock_path)];

		if (x == NULL || *x == '\0') {
			return cli_usage_error("agent: XDG_RUNTIME_DIR is not set; give --socket PATH");
		}
		if ((size_t)snprintf(dir, sizeof(dir), "%s/p11smime", x) >= sizeof(dir) - 12) {
			return cli_usage_error("agent: XDG_RUNTIME_DIR too long for a socket path");
		}
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			fprintf(stderr, "p11smime: error: agent: cannot create %s: %s\n", dir,
			    strerror(errno));
			return EXIT_USAGE;
		}
		/* Another user's or a group-readable directory would expose the socket. */
		if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
		    (st.st_mode & 077) != 0) {
			fprintf(stderr, "p11smime: error: agent: %s must be a directory of ours with "
			    "mode 0700\n", dir);
			return EXIT_USAGE;
		}
		snprintf(A->sock_path, sizeof(A->sock_path), "%s/agent.sock", dir);
	}
	memcpy(sa.sun_path, A->sock_path, strlen(A->sock_path) + 1);
	if (lstat(A->sock_path, &st) == 0) {
		char why[256];

		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "p11smime: error: agent: %s exists and is not a socket\n",
			    A->sock_path);
			return EXIT_USAGE;
		}
		if (agent_client_status(A->sock_path, 0, NULL, 0, why, sizeof(why)) ==
		    AGENT_CLIENT_DONE) {
			fprintf(stderr, "p11smime: error: agent: an agent already answers on %s\n",
			    A->sock_path);
			return EXIT_USAGE;
		}
		unlink(A->sock_path); /* stale: its agent is gone */
	}
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0) {
		fprintf(stderr, "p11smime: error: agent: socket: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	old = umask(0177); /* the socket is born 0600 */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
		umask(old);
		fprintf(stderr, "p11smime: error: agent: cannot listen on %s: %s\n", A->sock_path,
		    strerror(errno));
		close(fd);
		return EXIT_USAGE;
	}
	umask(old);
	(void)chmod(A->sock_path, 0600);
	A->lfd = fd;
	return EXIT_OK;
}

static int parse_secs(const char *s, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 31L * 24 * 3600) {
		return -1;
	}
	*out = v;
	return 0;
}

static int client_mode(cli_globals *g, const char *sock, int stop)
{
	char text[AGENT_MAX_MSG], why[256], pbuf[108];
	int rc;

	if (sock == NULL && (sock = agent_client_socket_path(pbuf, sizeof(pbuf))) == NULL) {
		fprintf(stderr, "p11smime: error: agent: no socket (set P11SMIME_AGENT_SOCK or "
		    "XDG_RUNTIME_DIR, or give --socket)\n");
		return EXIT_TOKEN;
	}
	if (stop) {
		rc = agent_client_stop(sock, why, sizeof(why));
	} else {
		rc = agent_client_status(sock, g->json, text, sizeof(text), why, sizeof(why));
	}
	if (rc != AGENT_CLIENT_DONE) {
		fprintf(stderr, "p11smime: error: agent: %s\n", why);
		return EXIT_TOKEN;
	}
	if (!stop) {
		fputs(text, stdout);
	}
	return EXIT_OK;
}

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_DAEMON = CLI_O_OWN, O_STOP, O_STATUS, O_SOCKET, O_TTL, O_MAXTTL, O_PINENTRY,
		O_LOG };
	static const struct option opts[] = {
		{ "daemon", no_argument, NULL, O_DAEMON },
		{ "stop", no_argument, NULL, O_STOP },
		{ "status", no_argument, NULL, O_STATUS },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "cache-ttl", required_argument, NULL, O_TTL },
		{ "max-ttl", required_argument, NULL, O_MAXTTL },
		{ "pinentry", required_argument, NULL, O_PINENTRY },
		{ "log", required_argument, NULL, O_LOG },
		{ NULL, 0, NULL, 0 },
	};
	agent A;
	cli_args a;
	const char *sock = NULL, *logpath = NULL;
	int c, daemonize = 0, stop = 0, status_q = 0, status = EXIT_OK;
	struct sigaction sa;
	p11s_reader_monitor *mon = NULL;

	memset(&A, 0, sizeof(A));
	A.g = g;
	A.lfd = -1;
	A.wake[0] = A.wake[1] = -1;
	A.cache_ttl = 600;
	A.max_ttl = 0;
	A.pinentry = "pinentry";
	cli_args_init(&a, "agent");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		switch (c) {
		case O_DAEMON:
			daemonize = 1;
			break;
		case O_STOP:
			stop = 1;
			break;
		case O_STATUS:
			status_q = 1;
			break;
		case O_SOCKET:
			sock = optarg;
			break;
		case O_TTL:
		case O_MAXTTL:
			if (parse_secs(optarg, c == O_TTL ? &A.cache_ttl : &A.max_ttl) < 0) {
				return cli_usage_error("agent: --%s takes seconds, not '%s'",
				    c == O_TTL ? "cache-ttl" : "max-ttl", optarg);
			}
			break;
		case O_PINENTRY:
			A.pinentry = optarg;
			break;
		case O_LOG:
			logpath = optarg;
			break;
		default:
			/* Only unknown options reach here: cli_args_option() reports them. */
			status = cli_args_option(&a, c, argv);
			return status == EXIT_OK ? EXIT_USAGE : status;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		return status;
	}
	if (stop + status_q + daemonize > 1) {
		return cli_usage_error("agent: --daemon, --stop and --status exclude each other");
	}
	if (stop || status_q) {
		return client_mode(g, sock, stop);
	}
	if (g->pin_source != NULL && p11s_pin_source_parse(&A.pins, g->pin_source) < 0) {
		return cli_fail();
	}
	if (logpath != NULL && (A.log = fopen(logpath, "ae")) == NULL) {
		fprintf(stderr, "p11smime: error: agent: cannot open %s: %s\n", logpath,
		    strerror(errno));
		p11s_pin_source_free(A.pins);
		return EXIT_USAGE;
	}
	if (A.log == NULL && !daemonize) {
		A.log = fdopen(fcntl(2, F_DUPFD_CLOEXEC, 3), "w");
	}
	if (A.log == NULL) {
		openlog("p11smime-agent", LOG_PID, LOG_USER);
	}
	if ((status = make_socket(&A, sock)) != EXIT_OK) {
		goto out;
	}
	if (daemonize) {
		/* Fork before anything touches PKCS#11: no module is loaded yet. */
		pid_t pid = fork();
		int nul;

		if (pid < 0) {
			fprintf(stderr, "p11smime: error: agent: fork: %s\n", strerror(errno));
			status = EXIT_USAGE;
			goto out;
		}
		if (pid > 0) {
			/* ssh-agent's sh syntax, for eval "$(p11smime agent --daemon)". */
			printf("P11SMIME_AGENT_SOCK=%s; export P11SMIME_AGENT_SOCK;\n", A.sock_path);
			fflush(stdout);
			close(A.lfd);
			if (A.log != NULL) {
				fclose(A.log);
			}
			p11s_pin_source_free(A.pins);
			_exit(EXIT_OK);
		}
		(void)setsid();
		if ((nul = open("/dev/null", O_RDWR)) >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
			if (nul > 2) {
				close(nul);
			}
		}
	}
	if (chdir("/") != 0 || pipe2(A.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		status = EXIT_USAGE;
		goto out;
	}
	wake_fd = A.wake[1];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* Outputs without a name until they are complete: a SIGKILL leaves nothing (io.c). */
	cli_output_anonymous(1);
	if (p11s_pin_callback_register(PIN_CALLBACK, agent_pin, &A) < 0) {
		status = cli_fail();
		goto out;
	}
	/* Card removal drops the login at once (pcsc-lite; nothing happens without pcscd). */
	if (p11s_reader_monitor_start(&mon, on_card, &A) < 0) {
		mon = NULL;
	}
	alog(&A, "listening on %s (cache-ttl %lds, max-ttl %lds, PIN from %s)", A.sock_path,
	    A.cache_ttl, A.max_ttl, A.pins ? p11s_pin_source_describe(A.pins) : A.pinentry);
	while (!A.stop) {
		struct pollfd p[2] = { { A.lfd, POLLIN, 0 }, { A.wake[0], POLLIN, 0 } };
		long left = cache_left(&A, time(NULL));
		int timeout = A.nlabels ? (int)(left * 1000 + 200) : -1;
		int cfd;

		if (poll(p, 2, timeout) < 0 && errno != EINTR) {
			break;
		}
		if (p[1].revents & POLLIN) {
			char ev[16];
			ssize_t k = read(A.wake[0], ev, sizeof(ev));

			for (ssize_t i = 0; i < k; i++) {
				if (ev[i] == 't') {
					alog(&A, "terminating on a signal");
					A.stop = 1;
				} else if (ev[i] == 'r') {
					drop_login(&A, "a card was removed");
				} else if (ev[i] == 'h') {
					drop_login(&A, "SIGHUP");
				}
			}
		}
		if (A.nlabels && cache_left(&A, time(NULL)) <= 0) {
			drop_login(&A, "cache time expired");
		}
		if (A.stop || !(p[0].revents & POLLIN)) {
			continue;
		}
		if ((cfd = accept4(A.lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
			continue;
		}
		serve(&A, cfd);
		close(cfd);
	}
	status = EXIT_OK;
out:
	p11s_reader_monitor_stop(mon);
	drop_login(&A, "agent exiting");
	if (p11s_pin_callback_register(PIN_CALLBACK, NULL, NULL) < 0) {
		p11s_error_clear(); /* removing a registered name cannot fail */
	}
	if (A.lfd >= 0) {
		close(A.lfd);
		unlink(A.sock_path);
	}
	wake_fd = -1;
	for (int i = 0; i < 2; i++) {
		if (A.wake[i] >= 0) {
			close(A.wake[i]);
		}
	}
	if (A.log != NULL) {
		fclose(A.log);
	}
	p11s_pin_source_free(A.pins);
	return status;
}

const cli_command cmd_agent = {
	"agent",
	"keep token logins for other p11smime commands (docs/agent.md)",
	"agent [--daemon] [--socket PATH] [--cache-ttl SECONDS] [--max-ttl SECONDS]\n"
	"       [--pinentry PROGRAM] [--log FILE]\n"
	"       agent --status [--socket PATH]    (global --json for JSON)\n"
	"       agent --stop [--socket PATH]",
	run,
};

/*
 * Client side of the agent protocol (agent_client.h, proto.h). One SOCK_SEQPACKET connection
 * per command: the request record carries the command line and, for RUN, four descriptors
 * (cwd, stdin, stdout, stderr); the reply record carries the exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent_client.h"
#include "proto.h"

const char *agent_client_socket_path(char *buf, unsigned long len)
{
	const char *s = getenv("P11SMIME_AGENT_SOCK"), *x = getenv("XDG_RUNTIME_DIR");
	int n;

	if (s != NULL && *s != '\0') {
		n = snprintf(buf, len, "%s", s);
	} else if (x != NULL && *x != '\0') {
		n = snprintf(buf, len, "%s/p11smime/agent.sock", x);
	} else {
		return NULL;
	}
	return n < 0 || (unsigned long)n >= len ? NULL : buf;
}

static void say(char *why, unsigned long whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *why, unsigned long whylen, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
}

/* Connect; AGENT_CLIENT_NO_AGENT when nothing listens there. */
static int dial(const char *socket_path, int *fd, char *why, unsigned long whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[sizeof(sa.sun_path)];
	const char *p = socket_path ? socket_path : agent_client_socket_path(buf, sizeof(buf));

	*fd = -1;
	if (p == NULL || strlen(p) >= sizeof(sa.sun_path)) {
		say(why, whylen, "%s", "no agent socket (P11SMIME_AGENT_SOCK and XDG_RUNTIME_DIR unset)");
		return AGENT_CLIENT_NO_AGENT;
	}
	memcpy(sa.sun_path, p, strlen(p) + 1);
	if ((*fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0) {
		say(why, whylen, "socket: %s", strerror(errno));
		return AGENT_CLIENT_FAILED;
	}
	if (connect(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		close(*fd);
		*fd = -1;
		say(why, whylen, "no agent answers on %s", p);
		return e == ENOENT || e == ECONNREFUSED || e == ENOTDIR ? AGENT_CLIENT_NO_AGENT
		                                                        : AGENT_CLIENT_FAILED;
	}
	return AGENT_CLIENT_DONE;
}

/* Send one record with `nfds` descriptors, then read the one reply record into `rep`. */
static int exchange(int fd, const char *msg, size_t len, const int *fds, int nfds, char *rbuf,
    agent_rep *rep, char *why, unsigned long whylen)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int) * AGENT_RUN_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	do {
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len) {
		/* The agent may have answered and closed first (a refusal): read that answer. */
		say(why, whylen, "sending to the agent: %s", n < 0 ? strerror(errno) : "short write");
		if (n >= 0 || (errno != EPIPE && errno != ECONNRESET)) {
			return AGENT_CLIENT_FAILED;
		}
	}
	do {
		n = recv(fd, rbuf, AGENT_MAX_MSG, 0);
	} while (n < 0 && errno == EINTR);
	if (n <= 0 && why != NULL && strncmp(why, "sending", 7) == 0) {
		return AGENT_CLIENT_FAILED;
	}
	if (n <= 0) {
		/* EOF before a reply: the agent was stopped or killed while it ran the command. */
		say(why, whylen, "%s", n == 0 ? "the agent closed the connection before it finished "
		    "(stopped or killed?)" : "reading from the agent failed");
		return AGENT_CLIENT_FAILED;
	}
	if (agent_rep_parse(rbuf, (size_t)n, rep) < 0) {
		say(why, whylen, "%s", "malformed reply from the agent");
		return AGENT_CLIENT_FAILED;
	}
	if (rep->type == AGENT_REP_ERROR) {
		say(why, whylen, "agent: %s", rep->text);
		return strcmp(rep->code, "MISMATCH") == 0 ? AGENT_CLIENT_MISMATCH : AGENT_CLIENT_FAILED;
	}
	return AGENT_CLIENT_DONE;
}

/* The terminal a pinentry should use: $GPG_TTY (as gpg-agent), else one of the std fds. */
static const char *client_tty(const agent_call *c)
{
	const char *t = getenv("GPG_TTY");
	int fds[3] = { c->fd_in >= 0 ? c->fd_in : 0, c->fd_err >= 0 ? c->fd_err : 2,
		c->fd_out >= 0 ? c->fd_out : 1 };

	if (t != NULL && *t != '\0') {
		return t;
	}
	for (int i = 0; i < 3; i++) {
		if (isatty(fds[i]) && (t = ttyname(fds[i])) != NULL) {
			return t;
		}
	}
	return NULL;
}

int agent_client_run(const agent_call *call, int *exit_status, char *why, unsigned long whylen)
{
	agent_req r;
	char *msg = NULL, *rbuf = NULL;
	agent_rep rep;
	long len;
	int fd = -1, fds[AGENT_RUN_FDS], rc;

	*exit_status = -1;
	if (call->argc <= 0) {
		say(why, whylen, "%s", "bad command line for the agent");
		return AGENT_CLIENT_FAILED;
	}
	if (call->argc > AGENT_MAX_ARGS) {
		say(why, whylen, "command line too long for the agent (more than %d arguments)",
		    AGENT_MAX_ARGS);
		return AGENT_CLIENT_TOO_LONG;
	}
	memset(&r, 0, sizeof(r));
	r.type = AGENT_REQ_RUN;
	r.verbosity = call->verbosity < -1 ? -1 : call->verbosity > 3 ? 3 : call->verbosity;
	r.json = call->json != 0;
	r.module = call->module;
	r.backend = call->backend;
	r.tty = client_tty(call);
	r.term = getenv("TERM");
	r.argc = call->argc;
	for (int i = 0; i < call->argc; i++) {
		r.argv[i] = call->argv[i];
	}
	if ((msg = malloc(AGENT_MAX_MSG)) == NULL || (rbuf = malloc(AGENT_MAX_MSG)) == NULL) {
		say(why, whylen, "%s", "out of memory");
		rc = AGENT_CLIENT_FAILED;
		goto out;
	}
	if ((len = agent_req_encode(&r, msg, AGENT_MAX_MSG)) < 0) {
		say(why, whylen, "%s", "command line too long for the agent (64 KiB)");
		rc = AGENT_CLIENT_TOO_LONG;
		goto out;
	}
	if ((rc = dial(call->socket, &fd, why, whylen)) != AGENT_CLIENT_DONE) {
		goto out;
	}
	/* O_PATH: the agent may only fchdir() into it, not list or read it through this fd. */
	if ((fds[0] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		say(why, whylen, "cannot open the working directory: %s", strerror(errno));
		rc = AGENT_CLIENT_FAILED;
		goto out;
	}
	fds[1] = call->fd_in >= 0 ? call->fd_in : 0;
	fds[2] = call->fd_out >= 0 ? call->fd_out : 1;
	fds[3] = call->fd_err >= 0 ? call->fd_err : 2;
	rc = exchange(fd, msg, (size_t)len, fds, AGENT_RUN_FDS, rbuf, &rep, why, whylen);
	close(fds[0]);
	if (rc == AGENT_CLIENT_DONE) {
		if (rep.type != AGENT_REP_EXIT) {
			say(why, whylen, "%s", "unexpected reply from the agent");
			rc = AGENT_CLIENT_FAILED;
		} else {
			*exit_status = rep.exit_status;
		}
	}
out:
	if (fd >= 0) {
		close(fd);
	}
	free(msg);
	free(rbuf);
	return rc;
}

static int simple(const char *socket, agent_req_type type, int json, char *out, unsigned long outlen,
    char *why, unsigned long whylen)
{
	agent_req r;
	char msg[64], *rbuf;
	agent_rep rep;
	long len;
	int fd, rc;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.json = json;
	if ((len = agent_req_encode(&r, msg, sizeof(msg))) < 0 || (rbuf = malloc(AGENT_MAX_MSG)) ==
	    NULL) {
		return AGENT_CLIENT_FAILED;
	}
	if ((rc = dial(socket, &fd, why, whylen)) == AGENT_CLIENT_DONE) {
		rc = exchange(fd, msg, (size_t)len, NULL, 0, rbuf, &rep, why, whylen);
		close(fd);
		if (rc == AGENT_CLIENT_DONE && out != NULL && outlen > 0) {
			snprintf(out, outlen, "%s", rep.type == AGENT_REP_STATUS ? rep.text : "");
		}
	}
	free(rbuf);
	return rc;
}

int agent_client_status(const char *socket, int json, char *out, unsigned long outlen,
    char *why, unsigned long whylen)
{
	return simple(socket, AGENT_REQ_STATUS, json, out, outlen, why, whylen);
}

int agent_client_stop(const char *socket, char *why, unsigned long whylen)
{
	return simple(socket, AGENT_REQ_STOP, 0, NULL, 0, why, whylen);
}

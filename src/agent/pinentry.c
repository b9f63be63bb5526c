/*
 * A pinentry client on libassuan, as gpg-agent talks to pinentry-curses/-tty/-gnome3: the
 * Assuan commands OPTION ttyname/ttytype, SETTITLE, SETDESC, SETPROMPT, SETERROR, GETPIN
 * (pinentry's documented protocol; Assuan itself: "Developing with Assuan", percent escaping
 * of CR, LF and '%' in parameters). The PIN arrives in D lines that libassuan unescapes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <assuan.h>
#include <openssl/crypto.h>

#include "pinentry.h"

/* Percent-escape `s` for an Assuan command line (CR, LF, '%' and control characters). */
static void escape(char *dst, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '%' || c < 0x20) {
			o += (size_t)snprintf(dst + o, cap - o, "%%%02X", c);
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
}

/* A program name without '/' is looked up in PATH (assuan_pipe_connect() execs a path). */
static int resolve(const char *program, char *path, size_t cap)
{
	const char *p = getenv("PATH");

	if (strchr(program, '/') != NULL) {
		snprintf(path, cap, "%s", program);
		return access(path, X_OK);
	}
	if (p == NULL) {
		p = "/usr/bin:/bin";
	}
	while (*p != '\0') {
		size_t l = strcspn(p, ":");

		if (l > 0 && (size_t)snprintf(path, cap, "%.*s/%s", (int)l, p, program) < cap &&
		    access(path, X_OK) == 0) {
			return 0;
		}
		p += l;
		if (*p == ':') {
			p++;
		}
	}
	return -1;
}

/*
 * libassuan's memory, wiped when it is given back. The PIN reaches us in a "D <PIN>" line that
 * libassuan reads into the line buffer of its context (inbound.line, with any bytes read past
 * the line end in inbound.attic) and unescapes there in place before our data callback sees
 * it; the next line read ("OK", then the answer to BYE) overwrites only its own length, and
 * assuan_release() frees the context without clearing it. libassuan has no call to clear
 * that buffer, but it takes its allocator from assuan_new_ext(): every block it frees or
 * moves (realloc) is cleansed first, whole (malloc_usable_size(), glibc), so the line buffer
 * is wiped when the context is released, right after GETPIN. docs/security.md.
 */
static void *wipe_malloc(size_t n)
{
	return malloc(n);
}

static void wipe_free(void *p)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, malloc_usable_size(p));
		free(p);
	}
}

static void *wipe_realloc(void *p, size_t n)
{
	size_t old;
	void *q;

	if (p == NULL) {
		return malloc(n);
	}
	if (n == 0) {
		wipe_free(p);
		return NULL;
	}
	/* Never realloc() in place of a copy: the old block would be freed uncleansed. */
	old = malloc_usable_size(p);
	if ((q = malloc(n)) == NULL) {
		return NULL;
	}
	memcpy(q, p, old < n ? old : n);
	wipe_free(p);
	return q;
}

static struct assuan_malloc_hooks wipe_hooks = { wipe_malloc, wipe_realloc, wipe_free };

struct pin_sink {
	p11s_secret *out;
	int too_long;
};

/* D lines of GETPIN; the PIN may come in pieces. */
static gpg_error_t on_data(void *opaque, const void *buf, size_t len)
{
	struct pin_sink *s = opaque;
	size_t have = p11s_secret_len(s->out);
	char tmp[P11S_SECRET_MAX + 1];

	if (have + len > P11S_SECRET_MAX) {
		s->too_long = 1;
		return gpg_error(GPG_ERR_TOO_LARGE);
	}
	memcpy(tmp, p11s_secret_data(s->out), have);
	memcpy(tmp + have, buf, len);
	if (p11s_secret_set(s->out, tmp, have + len) < 0) {
		s->too_long = 1;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return s->too_long ? gpg_error(GPG_ERR_TOO_LARGE) : 0;
}

/* One Assuan command `verb` with its percent-escaped argument. */
static gpg_error_t cmd(assuan_context_t ctx, const char *verb, const char *arg)
{
	char esc[2048], line[ASSUAN_LINELENGTH];

	escape(esc, sizeof(esc), arg ? arg : "");
	snprintf(line, sizeof(line), "%s%s", verb, esc);
	return assuan_transact(ctx, line, NULL, NULL, NULL, NULL, NULL, NULL);
}

int agent_pinentry_get(const char *program, const char *tty, const char *term, const char *desc,
    const char *error, p11s_secret *out, char *why, size_t whylen)
{
	assuan_context_t ctx = NULL;
	char path[4096];
	const char *argv[2];
	assuan_fd_t keep[] = { ASSUAN_INVALID_FD };
	struct pin_sink sink = { out, 0 };
	gpg_error_t err;
	assuan_log_cb_t log_cb = NULL;
	void *log_data = NULL;
	int rc = -1;

	p11s_secret_wipe(out);
	if (resolve(program, path, sizeof(path)) != 0) {
		snprintf(why, whylen, "pinentry program '%s' not found", program);
		return -1;
	}
	argv[0] = path;
	argv[1] = NULL;
	/* assuan_new() with the default logger, and the wiping allocator above. */
	assuan_get_log_cb(&log_cb, &log_data);
	if ((err = assuan_new_ext(&ctx, GPG_ERR_SOURCE_DEFAULT, &wipe_hooks, log_cb, log_data)) != 0) {
		snprintf(why, whylen, "pinentry: %s", gpg_strerror(err));
		return -1;
	}
	/* The child gets only the Assuan pipes (keep[] is empty): no socket, no client fd. */
	if ((err = assuan_pipe_connect(ctx, path, argv, keep, NULL, NULL, 0)) != 0) {
		snprintf(why, whylen, "cannot start %s: %s", path, gpg_strerror(err));
		goto out;
	}
	if ((tty != NULL && (err = cmd(ctx, "OPTION ttyname=", tty)) != 0) ||
	    (term != NULL && (err = cmd(ctx, "OPTION ttytype=", term)) != 0) ||
	    (err = cmd(ctx, "SETTITLE ", "p11smime agent")) != 0 ||
	    (err = cmd(ctx, "SETDESC ", desc)) != 0 ||
	    (err = cmd(ctx, "SETPROMPT ", "PIN:")) != 0 ||
	    (error != NULL && (err = cmd(ctx, "SETERROR ", error)) != 0)) {
		snprintf(why, whylen, "pinentry: %s", gpg_strerror(err));
		goto out;
	}
	/* Keep the PIN out of libassuan's logging. */
	assuan_begin_confidential(ctx);
	err = assuan_transact(ctx, "GETPIN", on_data, &sink, NULL, NULL, NULL, NULL);
	assuan_end_confidential(ctx);
	if (err != 0) {
		snprintf(why, whylen, "%s", gpg_err_code(err) == GPG_ERR_CANCELED
		    ? "PIN entry cancelled" : sink.too_long ? "PIN too long" : gpg_strerror(err));
		p11s_secret_wipe(out);
		goto out;
	}
	if (p11s_secret_len(out) == 0) {
		snprintf(why, whylen, "empty PIN from the pinentry");
		goto out;
	}
	rc = 0;
out:
	assuan_release(ctx);
	return rc;
}

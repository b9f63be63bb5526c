/*
 * PIN sources (CLI.md --pin-source, RFC 7512 §2.4 pin-source/pin-value). A PIN goes straight
 * from its source into a p11s_secret; no intermediate copy outlives the call.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/error_int.h"
#include "core/pin_int.h"

typedef enum { SRC_ENV, SRC_FILE, SRC_FD, SRC_PROMPT, SRC_LITERAL, SRC_CALLBACK } src_kind;

struct p11s_pin_source {
	src_kind kind;
	char *arg;             /* variable name or path */
	int fd;
	int consumed;          /* env: unset after the first read */
	p11s_secret *literal;  /* SRC_LITERAL */
	char describe[PATH_MAX + 16];
};

static int new_source(p11s_pin_source **out, src_kind kind, const char *arg)
{
	p11s_pin_source *s = calloc(1, sizeof(*s));

	if (s == NULL || (arg != NULL && (s->arg = strdup(arg)) == NULL)) {
		free(s);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	s->kind = kind;
	s->fd = -1;
	*out = s;
	return P11S_OK;
}

/* Decode %XX in a file: URI path (RFC 8089 / RFC 3986 §2.1). */
static int uri_path_decode(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	for (size_t i = 0; src[i] != '\0'; i++) {
		unsigned int v;

		if (o + 1 >= dstlen) {
			return -1;
		}
		if (src[i] == '%') {
			if (sscanf(src + i + 1, "%2x", &v) != 1 || src[i + 1] == '\0' ||
			    src[i + 2] == '\0' || v == 0) {
				return -1;
			}
			dst[o++] = (char)v;
			i += 2;
		} else {
			dst[o++] = src[i];
		}
	}
	dst[o] = '\0';
	return 0;
}

int p11s_pin_source_parse(p11s_pin_source **out, const char *spec)
{
	int rc;

	*out = NULL;
	if (spec == NULL || *spec == '\0') {
		return p11s_error__set(P11S_ERR_PIN_SOURCE, "empty PIN source");
	}
	if (strncmp(spec, "env:", 4) == 0) {
		if (spec[4] == '\0' || strchr(spec + 4, '=') != NULL) {
			return p11s_error__set(P11S_ERR_PIN_SOURCE,
			    "PIN source '%s': expected env:VARIABLE", spec);
		}
		if ((rc = new_source(out, SRC_ENV, spec + 4)) < 0) {
			return rc;
		}
	} else if (strncmp(spec, "file://", 7) == 0) {
		/* RFC 8089: file:///path or file://localhost/path. */
		char path[PATH_MAX];
		const char *p = spec + 7;

		if (strncmp(p, "localhost/", 10) == 0) {
			p += 9;
		}
		if (*p != '/' || uri_path_decode(path, sizeof(path), p) < 0) {
			return p11s_error__set(P11S_ERR_PIN_SOURCE,
			    "PIN source '%s': not a local absolute file URI", spec);
		}
		if ((rc = new_source(out, SRC_FILE, path)) < 0) {
			return rc;
		}
	} else if (strncmp(spec, "file:", 5) == 0) {
		if (spec[5] == '\0') {
			return p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN source 'file:': no path");
		}
		if ((rc = new_source(out, SRC_FILE, spec + 5)) < 0) {
			return rc;
		}
	} else if (strncmp(spec, "fd:", 3) == 0) {
		char *end;
		long fd;

		errno = 0;
		fd = strtol(spec + 3, &end, 10);
		if (spec[3] == '\0' || *end != '\0' || errno != 0 || fd < 0 || fd > INT_MAX) {
			return p11s_error__set(P11S_ERR_PIN_SOURCE,
			    "PIN source '%s': expected fd:N with N a file descriptor", spec);
		}
		if ((rc = new_source(out, SRC_FD, NULL)) < 0) {
			return rc;
		}
		(*out)->fd = (int)fd;
	} else if (strncmp(spec, "callback:", 9) == 0 && spec[9] != '\0') {
		/* The application's own callback (pin_callback.h, e.g. the agent's pinentry). */
		if ((rc = new_source(out, SRC_CALLBACK, spec + 9)) < 0) {
			return rc;
		}
	} else if (strcmp(spec, "prompt") == 0) {
		if ((rc = new_source(out, SRC_PROMPT, NULL)) < 0) {
			return rc;
		}
	} else if (spec[0] == '/') {
		/* RFC 7512 §2.4: a pin-source may be a plain absolute path. */
		if ((rc = new_source(out, SRC_FILE, spec)) < 0) {
			return rc;
		}
	} else if (spec[0] == '|') {
		return p11s_error__set(P11S_ERR_PIN_SOURCE,
		    "PIN source '%s': running a command for the PIN is not supported; use fd: or file:",
		    spec);
	} else {
		return p11s_error__set(P11S_ERR_PIN_SOURCE,
		    "unknown PIN source '%s' (use env:VAR, file:PATH, fd:N or prompt)", spec);
	}
	switch ((*out)->kind) {
	case SRC_ENV:
		snprintf((*out)->describe, sizeof((*out)->describe), "env:%s", (*out)->arg);
		break;
	case SRC_FILE:
		snprintf((*out)->describe, sizeof((*out)->describe), "file:%s", (*out)->arg);
		break;
	case SRC_FD:
		snprintf((*out)->describe, sizeof((*out)->describe), "fd:%d", (*out)->fd);
		break;
	case SRC_CALLBACK:
		snprintf((*out)->describe, sizeof((*out)->describe), "callback:%s", (*out)->arg);
		break;
	default:
		snprintf((*out)->describe, sizeof((*out)->describe), "prompt");
		break;
	}
	return P11S_OK;
}

int p11s_pin_source__literal(p11s_pin_source **out, const char *value, size_t len)
{
	int rc;

	if ((rc = new_source(out, SRC_LITERAL, NULL)) < 0) {
		return rc;
	}
	if ((rc = p11s_secret_new(&(*out)->literal)) < 0 ||
	    (rc = p11s_secret_set((*out)->literal, value, len)) < 0) {
		p11s_pin_source_free(*out);
		*out = NULL;
		return rc;
	}
	snprintf((*out)->describe, sizeof((*out)->describe), "pin-value");
	return P11S_OK;
}

int p11s_pin_source__is_prompt(const p11s_pin_source *src)
{
	return src != NULL && src->kind == SRC_PROMPT;
}

/*
 * Read one line from `fd` into `s`, byte by byte so that nothing past the newline is consumed
 * (fd: sources give one PIN per line). A trailing CR is dropped.
 */
static int read_line(int fd, p11s_secret *s, const char *what)
{
	char line[P11S_SECRET_MAX + 1];
	size_t n = 0;
	int rc = P11S_OK;

	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "reading the PIN from %s: %s", what,
			    strerror(errno));
			goto out;
		}
		if (r == 0 || c == '\n') {
			if (r == 0 && n == 0) {
				rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "no PIN in %s", what);
				goto out;
			}
			break;
		}
		if (n >= P11S_SECRET_MAX) {
			rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN from %s is too long", what);
			goto out;
		}
		line[n++] = c;
	}
	if (n > 0 && line[n - 1] == '\r') {
		n--;
	}
	rc = p11s_secret_set(s, line, n);
out:
	OPENSSL_cleanse(line, sizeof(line));
	return rc;
}

static int read_prompt(p11s_secret *s, const char *what)
{
	struct termios old, quiet;
	int fd, rc, restored = 0;
	char prompt[256];

	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		return p11s_error__set(P11S_ERR_PIN_SOURCE,
		    "no terminal to ask for the PIN of %s; use --pin-source", what);
	}
	if (tcgetattr(fd, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		restored = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
	}
	snprintf(prompt, sizeof(prompt), "PIN for %s: ", what);
	if (write(fd, prompt, strlen(prompt)) < 0) {
		/* The prompt is a courtesy; reading still works. */
	}
	rc = read_line(fd, s, "the terminal");
	if (restored) {
		(void)tcsetattr(fd, TCSAFLUSH, &old);
	}
	if (write(fd, "\n", 1) < 0) {
		/* nothing to do */
	}
	close(fd);
	return rc;
}

int p11s_pin_source_read(p11s_pin_source *src, const char *what, p11s_secret **out)
{
	p11s_secret *s = NULL;
	int rc, fd;

	*out = NULL;
	if (src == NULL) {
		return p11s_error__set(P11S_ERR_PIN_SOURCE, "no PIN source for %s", what);
	}
	if ((rc = p11s_secret_new(&s)) < 0) {
		return rc;
	}
	switch (src->kind) {
	case SRC_ENV: {
		const char *v = src->consumed ? NULL : getenv(src->arg);

		if (v == NULL) {
			rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "%s: %s", src->describe,
			    src->consumed ? "already read and removed from the environment"
			                  : "variable not set");
			goto out;
		}
		rc = p11s_secret_set(s, v, strlen(v));
		/* Unset once read, so that no child process inherits the PIN (issue: PIN hygiene). */
		OPENSSL_cleanse((char *)v, strlen(v));
		unsetenv(src->arg);
		src->consumed = 1;
		if (rc < 0) {
			goto out;
		}
		break;
	}
	case SRC_FILE:
		fd = open(src->arg, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = p11s_error__set(P11S_ERR_PIN_SOURCE, "cannot open PIN file %s: %s", src->arg,
			    strerror(errno));
			goto out;
		}
		rc = read_line(fd, s, src->describe);
		close(fd);
		if (rc < 0) {
			goto out;
		}
		break;
	case SRC_FD:
		if ((rc = read_line(src->fd, s, src->describe)) < 0) {
			goto out;
		}
		break;
	case SRC_PROMPT:
		if ((rc = read_prompt(s, what)) < 0) {
			goto out;
		}
		break;
	case SRC_CALLBACK:
		if ((rc = p11s_pin_callback__read(src->arg, what, s)) < 0) {
			goto out;
		}
		break;
	case SRC_LITERAL:
		if ((rc = p11s_secret_set(s, p11s_secret_data(src->literal),
		         p11s_secret_len(src->literal))) < 0) {
			goto out;
		}
		break;
	}
	*out = s;
	s = NULL;
out:
	p11s_secret_free(s);
	return rc;
}

const char *p11s_pin_source_describe(const p11s_pin_source *src)
{
	return src ? src->describe : "none";
}

void p11s_pin_source_free(p11s_pin_source *src)
{
	if (src == NULL) {
		return;
	}
	p11s_secret_free(src->literal);
	free(src->arg);
	free(src);
}

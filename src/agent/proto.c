/*
 * The agent's wire format (proto.h, docs/agent.md "Protocol"). A record is a sequence of
 * NUL-terminated strings: the magic with the version, the request type, then KEY=VALUE
 * fields, "--", and the command line. Strict: an unknown type or key, a missing terminator,
 * a number out of range or an empty command is refused, so that a newer client talking to an
 * older agent gets a clear "version" or "malformed" error instead of a half-understood request.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* The next string at *pos, or NULL at the end of the record or when unterminated. */
static const char *next_str(const char *buf, size_t len, size_t *pos, int *bad)
{
	const char *s, *nul;

	if (*pos >= len) {
		return NULL;
	}
	s = buf + *pos;
	nul = memchr(s, '\0', len - *pos);
	if (nul == NULL) {
		*bad = 1;
		return NULL;
	}
	*pos += (size_t)(nul - s) + 1;
	return s;
}

static int fail(char *why, size_t whylen, const char *msg)
{
	if (why != NULL && whylen > 0) {
		snprintf(why, whylen, "%s", msg);
	}
	return -1;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
		return -1;
	}
	*out = (int)v;
	return 0;
}

int agent_req_parse(const char *buf, size_t len, agent_req *r, char *why, size_t whylen)
{
	size_t pos = 0;
	int bad = 0;
	const char *s;

	memset(r, 0, sizeof(*r));
	if (len == 0 || len > AGENT_MAX_MSG) {
		return fail(why, whylen, "empty or oversized request");
	}
	s = next_str(buf, len, &pos, &bad);
	if (s == NULL) {
		return fail(why, whylen, "request without a header");
	}
	if (strcmp(s, AGENT_MAGIC) != 0) {
		/* Another version of the protocol (or not this protocol at all). */
		return fail(why, whylen, strncmp(s, "P11SMIME-AGENT/", 15) == 0
		    ? "protocol version mismatch (this agent speaks " AGENT_MAGIC ")"
		    : "not a p11smime agent request");
	}
	if ((s = next_str(buf, len, &pos, &bad)) == NULL) {
		return fail(why, whylen, "request without a type");
	}
	if (strcmp(s, "RUN") == 0) {
		r->type = AGENT_REQ_RUN;
	} else if (strcmp(s, "STATUS") == 0) {
		r->type = AGENT_REQ_STATUS;
	} else if (strcmp(s, "STOP") == 0) {
		r->type = AGENT_REQ_STOP;
	} else {
		return fail(why, whylen, "unknown request type");
	}
	/* Fields until "--" (RUN) or the end (STATUS, STOP). */
	while ((s = next_str(buf, len, &pos, &bad)) != NULL) {
		const char *eq;
		size_t kl;

		if (strcmp(s, "--") == 0) {
			break;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			return fail(why, whylen, "field without '='");
		}
		kl = (size_t)(eq - s);
		eq++;
		if (kl == 9 && strncmp(s, "verbosity", kl) == 0) {
			if (parse_int(eq, -1, 3, &r->verbosity) < 0) {
				return fail(why, whylen, "bad verbosity");
			}
		} else if (kl == 4 && strncmp(s, "json", kl) == 0) {
			if (parse_int(eq, 0, 1, &r->json) < 0) {
				return fail(why, whylen, "bad json flag");
			}
		} else if (kl == 6 && strncmp(s, "module", kl) == 0 && *eq != '\0') {
			r->module = eq;
		} else if (kl == 7 && strncmp(s, "backend", kl) == 0 && *eq != '\0') {
			r->backend = eq;
		} else if (kl == 3 && strncmp(s, "tty", kl) == 0 && *eq != '\0') {
			r->tty = eq;
		} else if (kl == 4 && strncmp(s, "term", kl) == 0 && *eq != '\0') {
			r->term = eq;
		} else {
			return fail(why, whylen, "unknown or empty field");
		}
	}
	if (bad) {
		return fail(why, whylen, "unterminated string");
	}
	if (r->type != AGENT_REQ_RUN) {
		if (s != NULL || pos != len) {
			return fail(why, whylen, "STATUS and STOP take no command line");
		}
		return 0;
	}
	if (s == NULL) {
		return fail(why, whylen, "RUN without a command line");
	}
	while ((s = next_str(buf, len, &pos, &bad)) != NULL) {
		if (r->argc >= AGENT_MAX_ARGS) {
			return fail(why, whylen, "too many arguments");
		}
		r->argv[r->argc++] = s;
	}
	if (bad) {
		return fail(why, whylen, "unterminated string");
	}
	if (r->argc == 0 || r->argv[0][0] == '\0') {
		return fail(why, whylen, "RUN without a command");
	}
	return 0;
}

/* Append `s` and its NUL; -1 when it does not fit. */
static int put(char *buf, size_t cap, size_t *pos, const char *s)
{
	size_t l = strlen(s) + 1;

	if (l > cap - *pos) {
		return -1;
	}
	memcpy(buf + *pos, s, l);
	*pos += l;
	return 0;
}

static int put_kv(char *buf, size_t cap, size_t *pos, const char *k, const char *v)
{
	char tmp[8192];

	if (v == NULL) {
		return 0;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s=%s", k, v) >= sizeof(tmp)) {
		return -1;
	}
	return put(buf, cap, pos, tmp);
}

long agent_req_encode(const agent_req *r, char *buf, size_t cap)
{
	static const char *const names[] = { [AGENT_REQ_RUN] = "RUN", [AGENT_REQ_STATUS] = "STATUS",
		[AGENT_REQ_STOP] = "STOP" };
	char num[16];
	size_t pos = 0;

	if (cap > AGENT_MAX_MSG) {
		cap = AGENT_MAX_MSG;
	}
	if (r->type < AGENT_REQ_RUN || r->type > AGENT_REQ_STOP || put(buf, cap, &pos, AGENT_MAGIC) ||
	    put(buf, cap, &pos, names[r->type])) {
		return -1;
	}
	if (r->type == AGENT_REQ_STATUS) {
		return put_kv(buf, cap, &pos, "json", r->json ? "1" : "0") ? -1 : (long)pos;
	}
	if (r->type != AGENT_REQ_RUN) {
		return (long)pos;
	}
	snprintf(num, sizeof(num), "%d", r->verbosity);
	if (put_kv(buf, cap, &pos, "verbosity", num) || put_kv(buf, cap, &pos, "json",
	        r->json ? "1" : "0") ||
	    put_kv(buf, cap, &pos, "module", r->module) ||
	    put_kv(buf, cap, &pos, "backend", r->backend) || put_kv(buf, cap, &pos, "tty", r->tty) ||
	    put_kv(buf, cap, &pos, "term", r->term) || put(buf, cap, &pos, "--")) {
		return -1;
	}
	if (r->argc <= 0 || r->argc > AGENT_MAX_ARGS) {
		return -1;
	}
	for (int i = 0; i < r->argc; i++) {
		if (put(buf, cap, &pos, r->argv[i]) < 0) {
			return -1;
		}
	}
	return (long)pos;
}

int agent_rep_parse(const char *buf, size_t len, agent_rep *r)
{
	size_t pos = 0;
	int bad = 0;
	const char *s, *t, *u;

	memset(r, 0, sizeof(*r));
	if (len == 0 || len > AGENT_MAX_MSG ||
	    (s = next_str(buf, len, &pos, &bad)) == NULL || strcmp(s, AGENT_MAGIC) != 0 ||
	    (t = next_str(buf, len, &pos, &bad)) == NULL) {
		return -1;
	}
	u = next_str(buf, len, &pos, &bad);
	if (strcmp(t, "EXIT") == 0 && u != NULL) {
		r->type = AGENT_REP_EXIT;
		if (parse_int(u, 0, 255, &r->exit_status) < 0) {
			return -1;
		}
	} else if (strcmp(t, "STATUS") == 0 && u != NULL) {
		r->type = AGENT_REP_STATUS;
		r->text = u;
	} else if (strcmp(t, "OK") == 0 && u == NULL) {
		r->type = AGENT_REP_OK;
	} else if (strcmp(t, "ERROR") == 0 && u != NULL) {
		r->type = AGENT_REP_ERROR;
		r->code = u;
		if ((r->text = next_str(buf, len, &pos, &bad)) == NULL) {
			return -1;
		}
	} else {
		return -1;
	}
	return bad || pos != len ? -1 : 0;
}

long agent_rep_encode(const agent_rep *r, char *buf, size_t cap)
{
	char num[16];
	size_t pos = 0;
	int bad = put(buf, cap, &pos, AGENT_MAGIC);

	switch (r->type) {
	case AGENT_REP_EXIT:
		snprintf(num, sizeof(num), "%d", r->exit_status);
		bad = bad || put(buf, cap, &pos, "EXIT") || put(buf, cap, &pos, num);
		break;
	case AGENT_REP_STATUS:
		bad = bad || put(buf, cap, &pos, "STATUS") || put(buf, cap, &pos, r->text);
		break;
	case AGENT_REP_OK:
		bad = bad || put(buf, cap, &pos, "OK");
		break;
	case AGENT_REP_ERROR:
		bad = bad || put(buf, cap, &pos, "ERROR") || put(buf, cap, &pos, r->code) ||
		    put(buf, cap, &pos, r->text);
		break;
	default:
		bad = 1;
	}
	return bad ? -1 : (long)pos;
}

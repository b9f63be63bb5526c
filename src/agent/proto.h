/*
 * The wire format of `p11smime agent` (docs/agent.md "Protocol"), version 1: one request and
 * one reply per connection, each one SOCK_SEQPACKET record made of NUL-terminated strings.
 * Pure functions, no I/O: the agent's parser of untrusted input (tests/fuzz/fuzz_agent.c).
 */
#ifndef P11S_AGENT_PROTO_H
#define P11S_AGENT_PROTO_H

#include <stddef.h>

#define AGENT_MAGIC "P11SMIME-AGENT/1"
#define AGENT_MAX_MSG 65536 /* bytes in one record, request or reply */
#define AGENT_MAX_ARGS 1024
#define AGENT_RUN_FDS 4     /* cwd, stdin, stdout, stderr (SCM_RIGHTS, in this order) */

typedef enum { AGENT_REQ_RUN = 1, AGENT_REQ_STATUS, AGENT_REQ_STOP } agent_req_type;

/* A parsed request. Strings point into the record that was parsed. */
typedef struct agent_req {
	agent_req_type type;
	int verbosity;       /* -1 quiet .. 3 */
	int json;
	const char *module;  /* the client's --module, or NULL */
	const char *backend; /* the client's --backend, or NULL */
	const char *tty;     /* the client's terminal, for the pinentry, or NULL */
	const char *term;    /* its TERM, or NULL */
	int argc;            /* RUN: argv[0] is the command name */
	const char *argv[AGENT_MAX_ARGS];
} agent_req;

/*
 * Parse a request record of `len` bytes. Returns 0, or -1 with a one-line reason in `why`
 * (version mismatch, malformed). Never reads past `len`.
 */
int agent_req_parse(const char *buf, size_t len, agent_req *r, char *why, size_t whylen);

/*
 * Encode a request into `buf` (AGENT_MAX_MSG bytes). Returns the length, or -1 when it does
 * not fit or a string is not representable (contains nothing but NULs are allowed).
 */
long agent_req_encode(const agent_req *r, char *buf, size_t cap);

/* Replies. */
typedef enum { AGENT_REP_EXIT = 1, AGENT_REP_STATUS, AGENT_REP_OK, AGENT_REP_ERROR } agent_rep_type;

typedef struct agent_rep {
	agent_rep_type type;
	int exit_status;     /* EXIT */
	const char *code;    /* ERROR: REFUSED, VERSION, MALFORMED, MISMATCH, UNSUPPORTED, FDS */
	const char *text;    /* STATUS: JSON document; ERROR: one line */
} agent_rep;

int agent_rep_parse(const char *buf, size_t len, agent_rep *r);
long agent_rep_encode(const agent_rep *r, char *buf, size_t cap);

#endif

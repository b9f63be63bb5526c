/*
 * Client side of `p11smime agent` (docs/agent.md): run a p11smime command line in the agent,
 * which holds the token login. For the CLI (--agent auto|require) and for other front ends
 * linked into the p11smime tree (NeoMutt commands, p11smime-gpg): link p11smime_agent_client.
 *
 * The agent never receives a message through the socket: the caller's file descriptors are
 * passed (SCM_RIGHTS) and the agent reads and writes them itself, so memory stays flat at any
 * size. Relative paths in the command line are resolved against the caller's working
 * directory (its descriptor is passed too); absolute paths as the agent sees them (same user,
 * same machine). A PIN is never sent: the agent asks its own --pin-source or pinentry.
 */
#ifndef P11S_AGENT_CLIENT_H
#define P11S_AGENT_CLIENT_H

/* Results of agent_client_run(). */
enum {
	AGENT_CLIENT_DONE = 0,      /* the agent ran the command; *exit_status is its status */
	AGENT_CLIENT_NO_AGENT = 1,  /* nothing answers on the socket: run in-process instead */
	AGENT_CLIENT_MISMATCH = 2,  /* the agent uses another --module/--backend: run in-process */
	AGENT_CLIENT_TOO_LONG = 3,  /* the command line exceeds one record (proto.h): in-process */
	AGENT_CLIENT_FAILED = -1,   /* refused, protocol error, or the agent died mid-run */
};

typedef struct agent_call {
	const char *socket;   /* NULL: agent_client_socket_path() */
	int argc;             /* argv[0] is the command name: "sign", "decrypt", ... */
	char *const *argv;    /* the command's options and operands, exactly as for p11smime */
	int verbosity;        /* -1 quiet, 0, 1 -v, 2 -vv */
	int json;             /* global --json */
	const char *module;   /* global --module / --backend, or NULL (the agent's own) */
	const char *backend;
	int fd_in, fd_out, fd_err; /* the command's stdin/stdout/stderr; -1: 0, 1, 2 */
} agent_call;

/*
 * The socket path: $P11SMIME_AGENT_SOCK, else $XDG_RUNTIME_DIR/p11smime/agent.sock. Writes
 * into `buf`; returns it, or NULL when neither variable is set (or the path is too long).
 */
const char *agent_client_socket_path(char *buf, unsigned long len);

/*
 * Run `call` in the agent and wait for it. On AGENT_CLIENT_FAILED and AGENT_CLIENT_MISMATCH a
 * one-line reason is written to `why` (never printed here). Blocks until the command is done;
 * SIGPIPE from a vanished agent is not raised (MSG_NOSIGNAL).
 */
int agent_client_run(const agent_call *call, int *exit_status, char *why, unsigned long whylen);

/* STATUS (`json` non-zero: the JSON document) or STOP. Same results; STATUS text to `out`. */
int agent_client_status(const char *socket, int json, char *out, unsigned long outlen, char *why,
    unsigned long whylen);
int agent_client_stop(const char *socket, char *why, unsigned long whylen);

#endif

/*
 * p11smime-client (docs/agent.md "The thin client"): the p11smime command line for a session
 * where `p11smime agent` runs. It links libc and the agent's client code only, so that one
 * signature through the agent costs one small process instead of the full tool, which loads
 * some 28 shared libraries (OpenSSL, GMime/GLib, p11-kit, ...) before main() and spends more
 * time in the dynamic loader than the agent spends signing (docs/performance.md).
 *
 * It reads the command line exactly as src/cli/main.c does. When the command is one the agent
 * runs (sign, decrypt, wrap, unwrap, receipt, mua), --agent is not `never`, no --help is asked
 * for and the agent answers, the command runs in the agent and this process exits with its
 * status; the agent runs the tool's own command code on our descriptors, so output, files and
 * exit status are those of `p11smime` by construction. In every other case — another command,
 * --help, --version, a usage error, a configuration file that does not load, no agent, an
 * agent with another module — it execs the full p11smime with the unchanged argv, which
 * prints or does exactly what it always does (and, with --agent require, the same error).
 * Only one case is decided here: the agent accepted the command and then failed (it was
 * killed mid-run): the command may have half-run, so it is not run again; one line, exit 3,
 * as in src/agent/cli_hook.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11smime/config.h>

#include "agent_client.h"

#ifndef P11S_FULL_BINARY
#define P11S_FULL_BINARY "" /* empty: p11smime beside this program */
#endif

#define EXIT_TOKEN_ 3 /* CLI.md "Exit status": token or PKCS#11 failure */

/* The tool's configuration keys (src/cli/main.c config_keys): a file it accepts, we accept. */
static const char *const config_keys[] = { ".module", ".backend", ".pin-source", ".trust",
	".crl", ".certs", ".tsa", NULL };

/*
 * src/core/config.c reports errors through the library's error record; here the only use of
 * an error is "let the full tool say it", so the record is not kept.
 */
int p11s_error__set(int code, const char *fmt, ...)
{
	(void)fmt;
	return code;
}

/* The full tool: P11S_FULL_BINARY if configured, else `p11smime` in our own directory. */
static void exec_full(char **argv) __attribute__((noreturn));
static void exec_full(char **argv)
{
	char self[PATH_MAX], full[PATH_MAX];
	struct stat a, b;
	ssize_t n;

	if (P11S_FULL_BINARY[0] != '\0') {
		snprintf(full, sizeof(full), "%s", P11S_FULL_BINARY);
	} else {
		char *slash;

		if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0) {
			fprintf(stderr, "p11smime: error: cannot find p11smime (/proc/self/exe: %s)\n",
			    strerror(errno));
			exit(2);
		}
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) == NULL) {
			exit(2);
		}
		*slash = '\0';
		if ((size_t)snprintf(full, sizeof(full), "%s/p11smime", self) >= sizeof(full)) {
			exit(2);
		}
	}
	/* Installed as `p11smime` itself with P11S_FULL_BINARY unset: no exec loop. */
	if (stat("/proc/self/exe", &a) == 0 && stat(full, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino) {
		fprintf(stderr, "p11smime: error: %s is p11smime-client itself (build with "
		    "-DP11S_CLIENT_FULL_BINARY=PATH)\n", full);
		exit(2);
	}
	execv(full, argv);
	fprintf(stderr, "p11smime: error: cannot run %s: %s\n", full, strerror(errno));
	exit(2);
}

/* src/cli/main.c opt_value(): "--opt VALUE" or "--opt=VALUE"; NULL if argv[*i] is not it. */
static const char *opt_value(const char *opt, int *i, int argc, char **argv, int *missing)
{
	size_t l = strlen(opt);
	const char *a = argv[*i];

	if (strncmp(a, opt, l) != 0) {
		return NULL;
	}
	if (a[l] == '=') {
		return a + l + 1;
	}
	if (a[l] != '\0') {
		return NULL;
	}
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

static const char *agent_command(const char *name)
{
	static const char *const names[] = { "sign", "decrypt", "wrap", "unwrap", "receipt",
		"mua" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(names[i], name) == 0) {
			return names[i];
		}
	}
	return NULL;
}

/* src/cli/main.c cli_wants_help(). */
static int wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			return 0;
		}
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			return 1;
		}
	}
	return 0;
}

/* src/cli/main.c load_config(): 0 when the file loads (or there is none), -1 otherwise. */
static int config_ok(const char *explicit_path)
{
	char path[4096];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	p11s_config *cfg = NULL;
	int rc;

	if (explicit_path != NULL) {
		snprintf(path, sizeof(path), "%s", explicit_path);
	} else if (xdg != NULL && *xdg != '\0') {
		snprintf(path, sizeof(path), "%s/p11smime/config", xdg);
	} else if (home != NULL && *home != '\0') {
		snprintf(path, sizeof(path), "%s/.config/p11smime/config", home);
	} else {
		return 0;
	}
	if (explicit_path == NULL && access(path, R_OK) != 0) {
		return 0; /* the default file may be absent (main.c probes it with fopen) */
	}
	rc = p11s_config_load(&cfg, path, config_keys);
	p11s_config_free(cfg);
	return rc == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct rlimit rl = { 0, 0 };
	const char *cmd = NULL, *module = NULL, *backend = NULL, *config = NULL, *mode = NULL;
	char **rest, why[512];
	int nrest = 0, json = 0, verbosity = 0, end_of_options = 0, status = -1, rc;
	agent_call call = { 0 };

	/* As the tool (STYLE.md "Secrets"); no PIN ever reaches this process, but be uniform. */
	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if ((rest = calloc((size_t)argc + 1, sizeof(*rest))) == NULL) {
		exec_full(argv);
	}
	rest[nrest++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *v;
		int missing = 0;

		if (end_of_options) {
			rest[nrest++] = argv[i];
			continue;
		}
		if (strcmp(argv[i], "--") == 0) {
			end_of_options = 1;
			rest[nrest++] = argv[i];
		} else if ((v = opt_value("--module", &i, argc, argv, &missing)) != NULL) {
			module = v;
		} else if ((v = opt_value("--backend", &i, argc, argv, &missing)) != NULL) {
			backend = v;
		} else if ((v = opt_value("--pin-source", &i, argc, argv, &missing)) != NULL) {
			/* not used through the agent (docs/agent.md), as in the tool */
		} else if ((v = opt_value("--config", &i, argc, argv, &missing)) != NULL) {
			config = v;
		} else if ((v = opt_value("--agent", &i, argc, argv, &missing)) != NULL) {
			if (strcmp(v, "auto") != 0 && strcmp(v, "never") != 0 &&
			    strcmp(v, "require") != 0) {
				exec_full(argv); /* the tool's usage error */
			}
			mode = v;
		} else if (missing) {
			exec_full(argv);
		} else if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			verbosity++;
		} else if (strcmp(argv[i], "-vv") == 0) {
			verbosity += 2;
		} else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
			verbosity = -1;
		} else if (strcmp(argv[i], "--version") == 0 && cmd == NULL) {
			exec_full(argv);
		} else if (strncmp(argv[i], "--pin", 5) == 0 && strncmp(argv[i], "--pin-source", 12) != 0 &&
		    strncmp(argv[i], "--pinentry", 10) != 0) {
			exec_full(argv); /* "PINs are not accepted on the command line" */
		} else if (cmd == NULL && argv[i][0] != '-') {
			if ((cmd = agent_command(argv[i])) == NULL) {
				exec_full(argv); /* another command, `help`, or an unknown one */
			}
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (cmd == NULL || (mode != NULL && strcmp(mode, "never") == 0) || wants_help(nrest, rest) ||
	    config_ok(config) < 0) {
		exec_full(argv);
	}
	rest[0] = (char *)cmd; /* the agent wants the command's name in argv[0] */
	call.argc = nrest;
	call.argv = rest;
	call.verbosity = verbosity;
	call.json = json;
	call.module = module;
	call.backend = backend;
	call.fd_in = call.fd_out = call.fd_err = -1;
	rc = agent_client_run(&call, &status, why, sizeof(why));
	if (rc == AGENT_CLIENT_DONE) {
		free(rest);
		return status;
	}
	if (rc == AGENT_CLIENT_FAILED) {
		/* Refused, a protocol error, or the agent died while it ran the command. */
		fprintf(stderr, "p11smime: error: %s\n", why);
		free(rest);
		return EXIT_TOKEN_;
	}
	/* No agent, another module, too long for one record: the tool decides, as always. */
	exec_full(argv);
}

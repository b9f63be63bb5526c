/*
 * p11smime: the command-line tool (CLI.md is its contract). Global options may stand before or
 * after the command; each command parses the rest. Exit statuses come from one table keyed by
 * the library's error classes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "cli.h"

static const cli_command *const commands[] = { &cmd_tokens, &cmd_keys, &cmd_sign, &cmd_verify,
	&cmd_encrypt, &cmd_decrypt, &cmd_wrap, &cmd_unwrap, &cmd_receipt,
	&cmd_verify_receipt, &cmd_audit,
	&cmd_keygen, &cmd_csr, &cmd_import_cert, &cmd_agent, &cmd_mua,
	&cmd_certs };

/* Error class -> exit status (CLI.md "Exit status"). SYSTEM has no status of its own: 2. */
static const int class_exit[] = {
	[P11S_ECLASS_NONE] = EXIT_OK,
	[P11S_ECLASS_VERIFY] = EXIT_VERIFY,
	[P11S_ECLASS_USAGE] = EXIT_USAGE,
	[P11S_ECLASS_TOKEN] = EXIT_TOKEN,
	[P11S_ECLASS_SYSTEM] = EXIT_USAGE,
};

/* trust, crl, certs: verify's defaults; tsa: p11smime-gpg's (docs/git.md, shared file). */
static const char *const config_keys[] = { ".module", ".backend", ".pin-source", ".trust",
	".crl", ".certs", ".tsa", ".allow-weak", ".require-authenticated",
	".store", ".harvest", ".ldap", /* docs/certificates.md */
	/* verify's revocation policy (docs/verify.md, "Revocation"). */
	".revocation", ".fetch", ".soft-fail", ".ocsp-url", ".ocsp-scope", ".fetch-allow",
	".fetch-deny",
	".protect-headers", /* sign's RFC 9788 default (docs/sign.md "Header protection") */
	NULL };

int cli_fail(void)
{
	const p11s_error *e = p11s_error_last();
	int status = class_exit[p11s_error_class(e->code)];

	if (e->code == P11S_OK) {
		fprintf(stderr, "p11smime: error: internal error without a reason\n");
		return EXIT_USAGE;
	}
	if (p11s_log_get_level() >= P11S_LOG_INFO && e->openssl[0] != '\0') {
		fprintf(stderr, "p11smime: error: %s [%s]\n", e->message, e->openssl);
	} else {
		fprintf(stderr, "p11smime: error: %s\n", e->message);
	}
	return status == EXIT_OK ? EXIT_USAGE : status;
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("p11smime: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see p11smime --help)\n", stderr);
	return EXIT_USAGE;
}

int cli_wants_help(int argc, char **argv)
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

int cli_open(cli_globals *g, const char *uri, p11s_ctx **out)
{
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	p11s_uri *u = NULL;
	const char *more;
	char *named = NULL;
	int from_config = 0, rc;

	if (g->agent_ctx != NULL) {
		/* Inside the agent: its long-lived, logged-in context (docs/agent.md). */
		*out = g->agent_ctx;
		return P11S_OK;
	}
	o.backend = g->backend ? g->backend : p11s_config_get(g->config, "", "backend");

	o.module = g->module;
	if (o.module == NULL && getenv("P11SMIME_MODULE") == NULL) {
		/* The config file's `module` may repeat: every one is loaded (docs/tokens.md). */
		o.module = p11s_config_get_nth(g->config, "", "module", 0);
		from_config = o.module != NULL;
	}
	o.pin_source = g->pin_source ? g->pin_source : p11s_config_get(g->config, "", "pin-source");
	if (uri != NULL) {
		/* CLI.md: a module-path in the URI wins over --module, the environment and config. */
		if ((rc = p11s_uri_parse(&u, uri)) < 0) {
			return rc;
		}
		if (p11s_uri_module_path(u) != NULL) {
			o.module = p11s_uri_module_path(u);
			from_config = 0;
		} else if (p11s_uri_module_name(u) != NULL && o.module == NULL &&
		    getenv("P11SMIME_MODULE") == NULL) {
			/* No module configured: a module-name is the module p11-kit registers by it. */
			if ((rc = p11s_module_find(p11s_uri_module_name(u), &named)) < 0) {
				p11s_uri_free(u);
				return rc;
			}
			o.module = named;
		}
	}
	rc = p11s_ctx_new(out, &o);
	free(named);
	for (size_t i = 1; rc == P11S_OK && from_config &&
	     (more = p11s_config_get_nth(g->config, "", "module", i)) != NULL; i++) {
		if ((rc = p11s_ctx_add_module(*out, more)) < 0) {
			p11s_ctx_free(*out);
			*out = NULL;
		}
	}
	p11s_uri_free(u);
	return rc;
}

void cli_close(cli_globals *g, p11s_ctx *ctx)
{
	if (ctx != g->agent_ctx) {
		p11s_ctx_free(ctx);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
	    "usage: p11smime [GLOBAL OPTIONS] COMMAND [OPTIONS]\n"
	    "\n"
	    "S/MIME signing and decryption with private keys that stay on a PKCS#11 token.\n"
	    "\n"
	    "Global options (before or after COMMAND):\n"
	    "  --module PATH       PKCS#11 module (default: $P11SMIME_MODULE, the config file,\n"
	    "                      then the p11-kit proxy); a URI's module-path wins\n"
	    "  --backend NAME      token backend:");
	for (const char *const *n = p11s_backend_names(); *n; n++) {
		fprintf(f, " %s", *n);
	}
	fprintf(f,
	    " (default pkcs11)\n"
	    "  --pin-source SRC    env:VAR, file:PATH, fd:N or prompt; never a PIN itself\n"
	    "  --config FILE       configuration file (default $XDG_CONFIG_HOME/p11smime/config)\n"
	    "  --agent MODE        auto (default: use a running agent), never, require\n"
	    "  --json              machine-readable output on stdout\n"
	    "  -v, --verbose       more on stderr (repeat for debug)\n"
	    "  -q, --quiet         errors only on stderr\n"
	    "  -h, --help          this help; `p11smime COMMAND --help` for a command\n"
	    "  --version           print the version\n"
	    "\n"
	    "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
	}
	fprintf(f,
	    "\n"
	    "Exit status: 0 success, 1 verification failed, 2 usage error or malformed input,\n"
	    "3 token or PKCS#11 failure.\n");
}

/* The value of an option given as "--opt VALUE" or "--opt=VALUE"; NULL if `arg` is not it. */
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

/* Load the configuration file: an explicit --config must exist, the default may not. */
static int load_config(cli_globals *g)
{
	char path[4096];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	FILE *probe;

	if (g->config_path != NULL) {
		return p11s_config_load(&g->config, g->config_path, config_keys);
	}
	if (xdg != NULL && *xdg != '\0') {
		snprintf(path, sizeof(path), "%s/p11smime/config", xdg);
	} else if (home != NULL && *home != '\0') {
		snprintf(path, sizeof(path), "%s/.config/p11smime/config", home);
	} else {
		return P11S_OK;
	}
	if ((probe = fopen(path, "r")) == NULL) {
		return P11S_OK;
	}
	fclose(probe);
	return p11s_config_load(&g->config, path, config_keys);
}

/* Keep PINs out of core files (STYLE.md "Secrets"). */
static void harden(void)
{
	struct rlimit rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int main(int argc, char **argv)
{
	cli_globals g = { 0 };
	const cli_command *cmd = NULL;
	char **rest;
	int nrest = 0, status, i, end_of_options = 0;

	harden();
	if ((rest = calloc((size_t)argc + 1, sizeof(*rest))) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	rest[nrest++] = argv[0];
	for (i = 1; i < argc; i++) {
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
			g.module = v;
		} else if ((v = opt_value("--backend", &i, argc, argv, &missing)) != NULL) {
			g.backend = v;
		} else if ((v = opt_value("--pin-source", &i, argc, argv, &missing)) != NULL) {
			g.pin_source = v;
		} else if ((v = opt_value("--config", &i, argc, argv, &missing)) != NULL) {
			g.config_path = v;
		} else if ((v = opt_value("--agent", &i, argc, argv, &missing)) != NULL) {
			if (!cli_agent_mode_valid(v)) {
				status = cli_usage_error("--agent must be auto, never or require, not '%s'", v);
				goto out;
			}
			g.agent_mode = v;
		} else if (missing) {
			status = cli_usage_error("option %s needs a value", argv[i]);
			goto out;
		} else if (strcmp(argv[i], "--json") == 0) {
			g.json = 1;
		} else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			g.verbosity++;
		} else if (strcmp(argv[i], "-vv") == 0) {
			g.verbosity += 2;
		} else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
			g.verbosity = -1;
		} else if (strcmp(argv[i], "--version") == 0 && cmd == NULL) {
			printf("p11smime %s\n", p11s_version());
			status = EXIT_OK;
			goto out;
		} else if (strncmp(argv[i], "--pin", 5) == 0 && strncmp(argv[i], "--pin-source", 12) != 0 &&
		    strncmp(argv[i], "--pinentry", 10) != 0) {
			/* A PIN is never an argument (CLI.md): say so instead of "unknown option". */
			status = cli_usage_error("PINs are not accepted on the command line; use "
			                         "--pin-source env:VAR, file:PATH, fd:N or prompt");
			goto out;
		} else if (cmd == NULL && argv[i][0] != '-') {
			for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
				if (strcmp(commands[c]->name, argv[i]) == 0) {
					cmd = commands[c];
				}
			}
			if (cmd == NULL && strcmp(argv[i], "help") != 0) {
				status = cli_usage_error("unknown command '%s'", argv[i]);
				goto out;
			}
			if (cmd == NULL) {
				usage(stdout);
				status = EXIT_OK;
				goto out;
			}
		} else {
			rest[nrest++] = argv[i];
		}
	}
	p11s_log_set_level(g.verbosity < 0 ? P11S_LOG_ERROR
	    : g.verbosity == 0             ? P11S_LOG_WARN
	    : g.verbosity == 1             ? P11S_LOG_INFO
	                                   : P11S_LOG_DEBUG);
	if (cmd == NULL) {
		if (cli_wants_help(nrest, rest)) {
			usage(stdout);
			status = EXIT_OK;
		} else {
			usage(stderr);
			status = EXIT_USAGE;
		}
		goto out;
	}
	if (cli_wants_help(nrest, rest)) {
		printf("usage: p11smime [GLOBAL OPTIONS] %s\n\n%s\n", cmd->usage, cmd->summary);
		status = EXIT_OK;
		goto out;
	}
	if (load_config(&g) < 0) {
		status = cli_fail();
		goto out;
	}
	if (!cli_agent_try(&g, cmd, nrest, rest, &status)) {
		status = cmd->run(&g, nrest, rest);
	}
out:
	p11s_config_free(g.config);
	free(rest);
	return status;
}

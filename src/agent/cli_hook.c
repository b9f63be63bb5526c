/*
 * The CLI's side of the agent (global --agent auto|never|require, docs/agent.md): sign,
 * decrypt, wrap, unwrap, receipt and mua (the mail clients' commands) run in the agent when
 * its socket answers; with `auto` and no agent they run in-process as before, with `require`
 * they fail with exit status 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_client.h"
#include "cli.h"

static int agent_command(const char *name)
{
	static const char *const names[] = { "sign", "decrypt", "wrap", "unwrap", "receipt",
		"mua" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(names[i], name) == 0) {
			return 1;
		}
	}
	return 0;
}

int cli_agent_mode_valid(const char *mode)
{
	return mode == NULL || strcmp(mode, "auto") == 0 || strcmp(mode, "never") == 0 ||
	    strcmp(mode, "require") == 0;
}

int cli_agent_try(cli_globals *g, const cli_command *cmd, int argc, char **argv, int *status)
{
	int require = g->agent_mode != NULL && strcmp(g->agent_mode, "require") == 0;
	agent_call call = { 0 };
	char why[512], **av;
	int rc;

	if ((g->agent_mode != NULL && strcmp(g->agent_mode, "never") == 0) ||
	    !agent_command(cmd->name)) {
		return 0;
	}
	if ((av = calloc((size_t)argc + 1, sizeof(*av))) == NULL) {
		return 0;
	}
	/* argv[0] of the command line is the program; the agent wants the command's name. */
	av[0] = (char *)cmd->name;
	for (int i = 1; i < argc; i++) {
		av[i] = argv[i];
	}
	call.argc = argc;
	call.argv = av;
	call.verbosity = g->verbosity;
	call.json = g->json;
	call.module = g->module;
	call.backend = g->backend;
	call.fd_in = call.fd_out = call.fd_err = -1;
	fflush(stdout);
	rc = agent_client_run(&call, status, why, sizeof(why));
	free(av);
	switch (rc) {
	case AGENT_CLIENT_DONE:
		return 1;
	case AGENT_CLIENT_NO_AGENT:
	case AGENT_CLIENT_MISMATCH:
	case AGENT_CLIENT_TOO_LONG: /* e.g. sign --batch with thousands of files */
		if (!require) {
			return 0; /* auto: in-process, as without an agent */
		}
		fprintf(stderr, "p11smime: error: --agent require: %s (start one with: eval "
		    "\"$(p11smime agent --daemon)\")\n", why);
		*status = EXIT_TOKEN;
		return 1;
	default:
		fprintf(stderr, "p11smime: error: %s\n", why);
		*status = EXIT_TOKEN;
		return 1;
	}
}

/* `p11smime tokens`: list slots and tokens (CLI.md). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
	unsigned int bit;
	const char *name;
} flag_names[] = {
	{ P11S_TOKEN_PRESENT, "token-present" },
	{ P11S_TOKEN_LOGIN_REQUIRED, "login-required" },
	{ P11S_TOKEN_PROTECTED_AUTH_PATH, "protected-authentication-path" },
	{ P11S_TOKEN_INITIALIZED, "token-initialized" },
	{ P11S_TOKEN_USER_PIN_INITIALIZED, "user-pin-initialized" },
	{ P11S_TOKEN_USER_PIN_COUNT_LOW, "user-pin-count-low" },
	{ P11S_TOKEN_USER_PIN_FINAL_TRY, "user-pin-final-try" },
	{ P11S_TOKEN_USER_PIN_LOCKED, "user-pin-locked" },
	{ P11S_TOKEN_WRITE_PROTECTED, "write-protected" },
	{ P11S_TOKEN_REMOVABLE, "removable-device" },
	{ P11S_TOKEN_HW_SLOT, "hardware-slot" },
};

static void print_flags(FILE *f, unsigned int flags, int json)
{
	int first = 1;

	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++) {
		if (!(flags & flag_names[i].bit)) {
			continue;
		}
		if (json) {
			fputs(first ? "" : ",", f);
			json_str(f, flag_names[i].name);
		} else {
			fprintf(f, "%s%s", first ? "" : ", ", flag_names[i].name);
		}
		first = 0;
	}
}

/*
 * Smartcard readers (pcsc-lite): listed with their card state, also when no PKCS#11 module
 * recognises the card. Without pcscd or pcsc-lite the list is simply absent.
 */
static void print_readers(int json)
{
	p11s_reader_info *r = NULL;
	size_t n = 0;

	if (p11s_reader_list(&r, &n) < 0) {
		if (json) {
			printf(",\"readers\":null");
		}
		p11s_error_clear();
		return;
	}
	if (json) {
		printf(",\"readers\":[");
	}
	for (size_t i = 0; i < n; i++) {
		if (json) {
			printf("%s{", i ? "," : "");
			json_key(stdout, "name");
			json_str(stdout, r[i].name);
			printf(",");
			json_key(stdout, "card_present");
			printf("%s}", r[i].card_present ? "true" : "false");
		} else {
			printf("Reader: %s\n  card:         %s\n", r[i].name,
			    r[i].card_present ? (r[i].card_in_use ? "present (in exclusive use)" : "present")
			                      : "none");
		}
	}
	if (json) {
		printf("]");
	}
	free(r);
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	p11s_ctx *ctx = NULL;
	p11s_token_info *t = NULL;
	size_t n = 0;
	int c, status, wait = 0;
	long timeout_ms = -1;
	char *end;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			wait = 1;
			break;
		case 't':
			errno = 0;
			timeout_ms = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || timeout_ms < 0 ||
			    timeout_ms > 86400L * 365) {
				return cli_usage_error("tokens: --timeout needs whole seconds, not '%s'",
				    optarg);
			}
			timeout_ms *= 1000;
			break;
		default:
			return cli_usage_error("tokens: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return cli_usage_error("tokens: unexpected argument '%s'", argv[optind]);
	}
	if (timeout_ms >= 0 && !wait) {
		return cli_usage_error("tokens: --timeout goes with --wait");
	}
	if (wait) {
		char reader[128];

		/* SCardGetStatusChange events (pcsc-lite); a timeout is exit 3 (a token failure). */
		if (p11s_reader_wait_card(timeout_ms, reader, sizeof(reader)) < 0) {
			return cli_fail();
		}
		if (!g->json) {
			fprintf(stderr, "p11smime: card present in reader '%s'\n", reader);
		}
	}
	if (cli_open(g, NULL, &ctx) < 0 || p11s_token_list(ctx, &t, &n) < 0) {
		status = cli_fail();
		goto out;
	}
	if (g->json) {
		printf("{\"backend\":");
		json_str(stdout, p11s_ctx_backend(ctx));
		printf(",\"tokens\":[");
		for (size_t i = 0; i < n; i++) {
			printf("%s{", i ? "," : "");
			json_key(stdout, "slot_id");
			printf("%lu,", t[i].slot_id);
			json_key(stdout, "slot_description");
			json_str(stdout, t[i].slot_description);
			printf(",");
			json_key(stdout, "slot_manufacturer");
			json_str(stdout, t[i].slot_manufacturer);
			printf(",");
			json_key(stdout, "module");
			json_str(stdout, t[i].module);
			printf(",");
			json_key(stdout, "token_present");
			printf("%s", (t[i].flags & P11S_TOKEN_PRESENT) ? "true" : "false");
			if ((t[i].flags & P11S_TOKEN_PRESENT) && (t[i].flags & P11S_TOKEN_INITIALIZED)) {
				printf(",");
				json_key(stdout, "label");
				json_str(stdout, t[i].label);
				printf(",");
				json_key(stdout, "manufacturer");
				json_str(stdout, t[i].manufacturer);
				printf(",");
				json_key(stdout, "model");
				json_str(stdout, t[i].model);
				printf(",");
				json_key(stdout, "serial");
				json_str(stdout, t[i].serial);
				printf(",");
				json_key(stdout, "uri");
				json_str(stdout, t[i].uri);
			}
			printf(",");
			json_key(stdout, "flags");
			printf("[");
			print_flags(stdout, t[i].flags, 1);
			printf("]}");
		}
		printf("]");
		print_readers(1);
		printf("}\n");
	} else {
		if (n == 0) {
			printf("no slots\n");
		}
		for (size_t i = 0; i < n; i++) {
			printf("Slot %lu: %s (%s)\n", t[i].slot_id, t[i].slot_description,
			    t[i].slot_manufacturer);
			printf("  module:       %s\n", t[i].module);
			if ((t[i].flags & P11S_TOKEN_PRESENT) && !(t[i].flags & P11S_TOKEN_INITIALIZED)) {
				printf("  (token not initialized)\n");
			} else if (t[i].flags & P11S_TOKEN_PRESENT) {
				printf("  token:        %s\n", t[i].label);
				printf("  manufacturer: %s\n", t[i].manufacturer);
				printf("  model:        %s\n", t[i].model);
				printf("  serial:       %s\n", t[i].serial);
				printf("  uri:          %s\n", t[i].uri);
			} else {
				printf("  (no token)\n");
			}
			printf("  flags:        ");
			print_flags(stdout, t[i].flags, 0);
			printf("\n");
		}
		print_readers(0);
	}
	status = fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
out:
	free(t);
	cli_close(g, ctx);
	return status;
}

const cli_command cmd_tokens = {
	"tokens",
	"list slots and tokens: slot id, description, token label, manufacturer, model, serial, "
	"flags; smartcard readers and their cards",
	"tokens [--wait [--timeout SECONDS]]",
	run,
};

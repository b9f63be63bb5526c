/*
 * `p11smime audit verify FILE [--expect-head HASH]` (CLI.md): check the hash chain of an
 * audit log written by `sign --audit-log`. Exit 0 intact, 1 naming the first bad record,
 * 2 usage error or unreadable file.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "expect-head", required_argument, NULL, 'e' },
		{ NULL, 0, NULL, 0 },
	};
	const char *head = NULL, *path;
	p11s_audit_status st;
	int c, rc;

	optind = 1;
	opterr = 0;
	if (argc < 2 || strcmp(argv[1], "verify") != 0) {
		return cli_usage_error("audit: expected 'audit verify FILE'");
	}
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'e') {
			head = optarg;
		} else {
			return cli_usage_error("audit verify: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind != argc - 1) {
		return cli_usage_error("audit verify: exactly one FILE is expected");
	}
	path = argv[optind];
	rc = p11s_audit_verify(path, head, &st);
	if (rc < 0 && st.bad_record == 0) {
		return cli_fail();
	}
	if (g->json) {
		printf("{\"valid\":%s,\"records\":%zu,\"head\":\"%s\",\"bad_record\":", rc == 0 ? "true"
		                                                                             : "false",
		    st.n_records, st.head);
		if (st.bad_record) {
			printf("%zu,\"reason\":", st.bad_record);
			json_str(stdout, st.why);
		} else {
			fputs("null,\"reason\":null", stdout);
		}
		puts("}");
	} else if (rc == 0) {
		printf("audit log OK: %zu record%s, head %s\n", st.n_records,
		    st.n_records == 1 ? "" : "s", st.head);
	} else {
		printf("audit log BROKEN at record %zu: %s (%zu good record%s before it)\n",
		    st.bad_record, st.why, st.n_records, st.n_records == 1 ? "" : "s");
	}
	return rc == 0 ? EXIT_OK : EXIT_VERIFY;
}

const cli_command cmd_audit = {
	"audit",
	"check the hash chain of a signing audit log",
	"audit verify FILE [--expect-head HASH]",
	run,
};

/*
 * `p11smime audit verify FILE [--expect-head HASH] [--signer-cert FILE] [--allow-unanchored]
 * [--require-checkpoint]` (CLI.md, docs/evidence.md): check the hash chain of an audit log
 * written by `sign --audit-log` and its signed checkpoints: a format 2 log must end at a
 * valid final checkpoint. Exit 0 intact, 1 naming the first bad (or first unanchored)
 * record, 2 usage error or unreadable file.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run(cli_globals *g, int argc, char **argv)
{
	enum { O_HEAD = 'e', O_PIN = 0x300, O_ALLOW, O_REQUIRE };
	static const struct option opts[] = {
		{ "expect-head", required_argument, NULL, O_HEAD },
		{ "signer-cert", required_argument, NULL, O_PIN },
		{ "allow-unanchored", no_argument, NULL, O_ALLOW },
		{ "require-checkpoint", no_argument, NULL, O_REQUIRE },
		{ NULL, 0, NULL, 0 },
	};
	p11s_audit_verify_opts o = P11S_AUDIT_VERIFY_OPTS_INIT;
	const char *path;
	p11s_audit_report st;
	int c, rc;

	optind = 1;
	opterr = 0;
	if (argc < 2 || strcmp(argv[1], "verify") != 0) {
		return cli_usage_error("audit: expected 'audit verify FILE'");
	}
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case O_HEAD:
			o.expect_head = optarg;
			break;
		case O_PIN:
			o.signer_cert_file = optarg;
			break;
		case O_ALLOW:
			o.allow_unanchored = 1;
			break;
		case O_REQUIRE:
			o.require_checkpoint = 1;
			break;
		default:
			return cli_usage_error("audit verify: unknown option or missing value '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind != argc - 1) {
		return cli_usage_error("audit verify: exactly one FILE is expected");
	}
	path = argv[optind];
	rc = p11s_audit_verify_ex(path, &o, &st);
	if (rc < 0 && st.bad_record == 0) {
		return cli_fail();
	}
	if (g->json) {
		/* The keys of format 1's report first (CLI contract), then the checkpoint ones. */
		printf("{\"valid\":%s,\"records\":%zu,\"head\":\"%s\",\"bad_record\":",
		    rc == 0 ? "true" : "false", st.n_records, st.head);
		if (st.bad_record) {
			printf("%zu,\"reason\":", st.bad_record);
			json_str(stdout, st.why);
		} else {
			fputs("null,\"reason\":null", stdout);
		}
		printf(",\"format\":%d,\"checkpoints\":%zu,\"anchored\":%s,\"unanchored_records\":%zu,"
		       "\"last_checkpoint\":", st.format, st.n_checkpoints,
		    st.format == 2 && st.n_unanchored == 0 && st.last_final ? "true" : "false",
		    st.n_unanchored);
		if (st.n_checkpoints > 0) {
			printf("{\"record\":%zu,\"covers\":%llu,\"final\":%s,\"time\":",
			    st.last_checkpoint_record, st.anchored_seq, st.last_final ? "true" : "false");
			json_str(stdout, st.last_checkpoint_time);
			fputs(",\"signer\":", stdout);
			json_str(stdout, st.last_signer);
			fputs(",\"signer_cert_sha256\":", stdout);
			json_str(stdout, st.last_signer_sha256);
			fputs(",\"timestamp\":", stdout);
			json_str(stdout, st.last_timestamp[0] ? st.last_timestamp : NULL);
			printf(",\"timestamp_valid\":%s,\"signer_pinned\":%s,\"signer_changed\":%s}",
			    st.last_timestamp_valid ? "true" : "false",
			    o.signer_cert_file != NULL ? "true" : "false",
			    st.signer_changed ? "true" : "false");
		} else {
			fputs("null", stdout);
		}
		puts("}");
	} else if (rc == 0) {
		printf("audit log OK: %zu record%s, head %s\n", st.n_records,
		    st.n_records == 1 ? "" : "s", st.head);
		if (st.n_checkpoints > 0) {
			printf("last checkpoint: record %zu, %s, covers record %llu, %s, signed by %s%s%s%s\n",
			    st.last_checkpoint_record, st.last_final ? "final" : "periodic",
			    st.anchored_seq, st.last_checkpoint_time, st.last_signer,
			    st.last_timestamp[0] ? ", time-stamped " : "", st.last_timestamp,
			    st.last_timestamp[0] && !st.last_timestamp_valid ? " (time-stamp NOT valid)"
			                                                     : "");
		}
	} else {
		printf("audit log BROKEN at record %zu: %s (%zu good record%s before it)\n",
		    st.bad_record, st.why, st.n_records, st.n_records == 1 ? "" : "s");
	}
	/* Warnings on stderr: what a passing verdict does not prove. */
	if (rc == 0 && st.format == 1 && st.n_records > 0) {
		fprintf(stderr, "p11smime: warning: %s has no signed checkpoint (format 1 log): removed "
		                "trailing records are detected only with --expect-head\n", path);
	}
	if (rc == 0 && st.format == 2 && (st.n_unanchored > 0 || !st.last_final)) {
		fprintf(stderr, "p11smime: warning: %zu record%s after the last checkpoint %s not "
		                "anchored%s (--allow-unanchored)\n", st.n_unanchored,
		    st.n_unanchored == 1 ? "" : "s", st.n_unanchored == 1 ? "is" : "are",
		    st.last_final ? "" : " and the last checkpoint is not a final one");
	}
	if (rc == 0 && st.n_checkpoints > 0 && o.signer_cert_file == NULL) {
		fprintf(stderr, "p11smime: warning: checkpoint signer not pinned: pass --signer-cert "
		                "to detect a log rewritten and re-signed with another key\n");
	}
	if (rc == 0 && st.signer_changed) {
		fprintf(stderr, "p11smime: warning: the checkpoints are signed by more than one "
		                "certificate\n");
	}
	return rc == 0 ? EXIT_OK : EXIT_VERIFY;
}

const cli_command cmd_audit = {
	"audit",
	"check the hash chain and the signed checkpoints of a signing audit log",
	"audit verify FILE [--expect-head HASH] [--signer-cert FILE] [--allow-unanchored] "
	"[--require-checkpoint]",
	run,
};

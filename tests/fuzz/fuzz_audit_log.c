/*
 * Fuzz target: `audit verify` (src/audit/audit.c) on an attacker-edited log: the record and
 * checkpoint parsers, base64 and CMS of a checkpoint signature, its RFC 3161 token, and the
 * due-checkpoint scan of the writer's tail (p11s_audit__checkpoint_due()).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11smime/audit.h>

#include "audit/audit_int.h"
#include "core/error_int.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/p11s-fuzz-audit-XXXXXX";
	p11s_audit_verify_opts o = P11S_AUDIT_VERIFY_OPTS_INIT;
	p11s_audit_report rep;
	p11s_audit_status st;
	unsigned long long covers;
	char head[65];
	int fd = mkstemp(path);

	if (fd < 0) {
		return 0;
	}
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return 0;
	}
	close(fd);
	int bad = 0;

	bad += p11s_audit_verify_ex(path, &o, &rep) < 0;
	o.allow_unanchored = 1;
	bad += p11s_audit_verify_ex(path, &o, &rep) < 0;
	bad += p11s_audit_verify(path, NULL, &st) < 0;
	(void)bad; /* a broken log is the expected case */
	(void)p11s_audit__checkpoint_due(path, 2, 0, &covers, head);
	(void)p11s_audit__checkpoint_due(path, 2, 1, &covers, head);
	unlink(path);
	return 0;
}

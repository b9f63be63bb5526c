/*
 * Fuzz target: what `unwrap` does with attacker-chosen layers (issue 23): the S/MIME parts
 * walker of the payload (p11s_message_smime_parts(), src/mime/parts.c, RFC 9787 §3), the
 * verifier on each part found and on the input, and the unverified content writer that peels
 * a signature which failed (p11s_verify_write_content_unverified(), src/cms/).
 */
#include <p11smime/message.h>
#include <p11smime/verify.h>

#include "fuzz.h"

static void verify_and_peel(FILE *f)
{
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *r = NULL;

	o.no_sender_check = 1;
	if (p11s_verify_message(&r, f, &o) == 0) {
		/* Invalid (no trust anchor) or not signed: the unverified writer must cope. */
		if (p11s_verify_write_content_unverified(r, p11s_fuzz_null()) < 0) {
			/* not signed, or malformed: expected */
		}
		p11s_verify_result_free(r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size);
	p11s_message_part *parts = NULL;
	size_t n = 0;

	if (f == NULL) {
		return 0;
	}
	verify_and_peel(f);
	rewind(f);
	if (p11s_message_smime_parts(f, &parts, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (parts[i].entity != NULL && parts[i].kind == P11S_MSG_SIGNED) {
				verify_and_peel(parts[i].entity);
			}
		}
		p11s_message_parts_free(parts, n);
	}
	fclose(f);
	return 0;
}

/*
 * Fuzz target: `verify` end to end (p11s_verify_message): MIME, CMS SignedData, signer
 * lookup, signature and digest checks, RFC 5280 path validation to a fixed test CA
 * (tests/fuzz/pki/ca.pem, so that paths get built), RFC 8550 checks; then the content writer.
 * The validation time is fixed, so that a result does not depend on the day.
 */
#include <stdlib.h>

#include <p11smime/verify.h>

#include "fuzz.h"

#ifndef P11S_FUZZ_PKI
#error "P11S_FUZZ_PKI (the directory of the fuzz test CA) must be defined"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const trust[] = { P11S_FUZZ_PKI "/ca.pem" };
	static const p11s_verify_opts init = P11S_VERIFY_OPTS_INIT;
	p11s_verify_opts o = init;
	p11s_verify_result *r = NULL;
	FILE *f = p11s_fuzz_file(data, size);

	if (f == NULL) {
		return 0;
	}
	o.trust_files = trust;
	o.n_trust_files = 1;
	o.has_time = 1;
	o.time = 1893456000; /* 2030-01-01T00:00:00Z, inside the test CA's validity */
	if (p11s_verify_message(&r, f, &o) == 0) {
		if (r->valid) {
			if (p11s_verify_write_content(r, p11s_fuzz_null()) < 0) {
			abort(); /* a valid result must be writable */
			}
		}
		p11s_verify_result_free(r);
	}
	fclose(f);
	return 0;
}

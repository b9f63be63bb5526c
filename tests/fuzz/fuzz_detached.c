/*
 * Fuzz target: a detached signature file as p11smime-gpg --verify reads it (git's
 * gpg.format=x509, docs/git.md): p11s_detached_to_opaque() (PEM or DER, CMS SignedData,
 * content attached, re-encoded) and then p11s_verify_message() on the message it makes,
 * against the fuzz test CA (tests/fuzz/pki/ca.pem) at a fixed time. The signed content is
 * fixed: the seeds are signatures over it (make-seeds.sh), so that a path reaches a valid
 * verdict and mutations explore the signature around it.
 */
#include <p11smime/detached.h>
#include <p11smime/verify.h>

#include "fuzz.h"

#ifndef P11S_FUZZ_PKI
#error "P11S_FUZZ_PKI (the directory of the fuzz test CA) must be defined"
#endif

/* The content of the seeds (make-seeds.sh writes the same bytes). */
static const char content[] = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
                              "author A <alice@example.org> 1700000000 +0000\n"
                              "committer A <alice@example.org> 1700000000 +0000\n\nfuzz\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const trust[] = { P11S_FUZZ_PKI "/ca.pem" };
	static const p11s_verify_opts init = P11S_VERIFY_OPTS_INIT;
	p11s_verify_opts o = init;
	p11s_verify_result *r = NULL;
	FILE *msg = tmpfile();

	if (msg == NULL) {
		return 0;
	}
	if (p11s_detached_to_opaque(data, size, (const unsigned char *)content,
	        sizeof(content) - 1, msg) == 0) {
		rewind(msg);
		o.trust_files = trust;
		o.n_trust_files = 1;
		o.no_sender_check = 1;
		o.has_time = 1;
		o.time = 1893456000; /* 2030-01-01T00:00:00Z, inside the test CA's validity */
		if (p11s_verify_message(&r, msg, &o) == 0) {
			p11s_verify_result_free(r);
		}
	}
	fclose(msg);
	return 0;
}

/*
 * Fuzz target: harvesting (docs/certificates.md): a signed message through
 * p11s_verify_message(), then every signer's announcement (p11s_verify_signer_announcement():
 * signer certificate lookup, SMIMECapabilities, SMIMEEncryptionKeyPreference re-tagged for
 * OpenSSL's IssuerAndSerialNumber decoder, signingTime), the capabilities' GCM check and, for
 * a valid result, p11s_verify_harvest() into an in-memory store, read back by address.
 */
#include <stdlib.h>

#include <p11smime/harvest.h>

#include "fuzz.h"
#include "store/store_int.h"

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
		for (size_t i = 0; i < r->n_signers; i++) {
			p11s_verify_announcement an;
			int gcm;

			if (p11s_verify_signer_announcement(r, i, &an) != 0) {
				continue;
			}
			if (an.caps != NULL) {
				(void)p11s_store__caps_gcm(an.caps, an.caps_len, &gcm);
			}
			p11s_verify_announcement_clear(&an);
		}
		if (p11s_verify_signer_announcement(r, r->n_signers, &(p11s_verify_announcement){ 0 })
		    == 0) {
			abort(); /* past the last signer must be refused */
		}
		if (r->valid) {
			p11s_store *s;
			size_t n;

			if (p11s_store_open(&s, ":memory:") == 0) {
				if (p11s_verify_harvest(r, s, &n) == 0) {
					for (size_t i = 0; i < r->n_signers; i++) {
						for (size_t k = 0; k < r->signers[i].n_emails; k++) {
							p11s_store_list *l;

							if (p11s_store_find(s, r->signers[i].emails[k], &l) == 0) {
								p11s_store_list_free(l);
							}
						}
					}
				}
				p11s_store_close(s);
			}
		}
		p11s_verify_result_free(r);
	}
	fclose(f);
	return 0;
}

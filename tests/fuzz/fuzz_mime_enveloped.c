/*
 * Fuzz target: the enveloped-message reader of `decrypt` (src/mime/enveloped.c) -- header
 * section, Content-Type check, body decoding (base64 or DER) -- the layer classifier
 * p11s_message_kind() and re-join (src/mime/kind.c), and the decrypted-entity writer, which
 * inspects attacker-chosen plaintext (p11s_mime__write_decrypted()).
 */
#include <stdlib.h>

#include <openssl/bio.h>

#include <p11smime/message.h>

#include "fuzz.h"
#include "mime/enveloped.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size), *g = NULL;
	p11s_mime_head h = { 0 };
	p11s_msg_kind kind;
	BIO *der = NULL;

	if (f == NULL) {
		return 0;
	}
	if (p11s_mime__read_head(f, &h) == 0 && p11s_mime__check_enveloped(&h) == 0 &&
	    (der = BIO_new(BIO_s_mem())) != NULL) {
		(void)p11s_mime__decode_body(f, &h, der);
	}
	BIO_free(der);
	/* The same bytes as a decrypted entity, written under the outer fields just read. */
	if ((g = p11s_fuzz_file(data, size)) != NULL) {
		p11s_header_protection *hp = NULL;

		/* With the RFC 9788 report (hp_read.c), which must be complete or absent. */
		if (p11s_mime__write_decrypted_hp(p11s_fuzz_null(), &h, g, &hp) == 0 && hp != NULL) {
			for (size_t i = 0; i < hp->n_fields; i++) {
				if (hp->fields[i].name == NULL || hp->fields[i].value == NULL) {
					abort();
				}
			}
		}
		p11s_header_protection_free(hp);
		fclose(g);
	}
	p11s_mime__head_clear(&h);
	rewind(f);
	if (p11s_message_kind(f, &kind) < 0) {
		/* malformed input: expected */
	}
	if ((g = p11s_fuzz_file(data, size)) != NULL) {
		rewind(f);
		if (p11s_message_join(f, g, p11s_fuzz_null()) < 0) {
			/* malformed input: expected */
		}
		fclose(g);
	}
	fclose(f);
	return 0;
}

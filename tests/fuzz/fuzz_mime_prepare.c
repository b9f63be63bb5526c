/*
 * Fuzz target: the signing splitter (src/mime/message.c): header split, 7-bit scan, GMime
 * re-encoding of 8bit/binary leaves, canonical entity. `sign` reads messages a user got from
 * elsewhere (forwarded, drafted by another program), so this input is untrusted too.
 */
#include "fuzz.h"
#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size);
	p11s_mime_msg *m = NULL;

	if (f == NULL) {
		return 0;
	}
	if (p11s_mime__prepare(&m, f, NULL, NULL) == 0) {
		(void)p11s_mime__entity_write(m, p11s_mime__file_sink, p11s_fuzz_null());
		(void)p11s_mime__write_pkcs7_head(m, p11s_fuzz_null(), "signed-data");
	}
	p11s_mime__free(m);
	fclose(f);
	return 0;
}

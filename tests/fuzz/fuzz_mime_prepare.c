/*
 * Fuzz target: the signing splitter (src/mime/message.c): header split, 7-bit scan, GMime
 * re-encoding of 8bit/binary leaves, canonical entity. `sign` reads messages a user got from
 * elsewhere (forwarded, drafted by another program), so this input is untrusted too. Each
 * input also goes through RFC 9788 header protection (src/mime/protect.c) for a signed
 * (hp="clear") and a signed-then-encrypted (hp="cipher", HP-Outer) message.
 */
#include "fuzz.h"
#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hp[] = { NULL, "clear", "cipher" };
	FILE *f = p11s_fuzz_file(data, size);

	if (f == NULL) {
		return 0;
	}
	for (size_t i = 0; i < sizeof(hp) / sizeof(hp[0]); i++) {
		p11s_mime_msg *m = NULL;

		if (p11s_mime__prepare_hp(&m, f, NULL, NULL, hp[i]) == 0) {
			(void)p11s_mime__entity_write(m, p11s_mime__file_sink, p11s_fuzz_null());
			(void)p11s_mime__write_pkcs7_head(m, p11s_fuzz_null(), "signed-data");
		}
		p11s_mime__free(m);
	}
	fclose(f);
	return 0;
}

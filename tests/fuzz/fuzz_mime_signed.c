/*
 * Fuzz target: the signed-message reader of `verify` (src/mime/signed.c): GMime's parse of the
 * whole message, our multipart/signed delimiter scanner (RFC 2046 §5.1.1), the p7s part and
 * its base64 check, the opaque body, From/Sender; then part 1 through the CRLF canonicaliser.
 */
#include <stdlib.h>

#include "fuzz.h"
#include "mime/signed.h"

static int sink(const unsigned char *p, size_t n, void *payload)
{
	size_t *total = payload;

	(void)p;
	*total += n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size);
	p11s_mime_signed *m = NULL;
	size_t total = 0;

	if (f == NULL) {
		return 0;
	}
	if (p11s_mime__read_signed(&m, f) == 0 && m->kind == P11S_MIME_MULTIPART_SIGNED) {
		off_t start;

		/* As verify hashes it: part 1, canonical, and its own header block. */
		if (p11s_mime__header_end(f, m->parts.part1_start, &start) == 0) {
			(void)p11s_mime__stream_canonical(f, m->parts.part1_start, m->parts.part1_end,
			    sink, &total);
		}
	}
	p11s_mime__signed_free(m);
	fclose(f);
	return 0;
}

/*
 * Fuzz target: the signed-message reader of `verify` (src/mime/signed.c): GMime's parse of the
 * header section (and of the whole message when it is not multipart/signed), our
 * multipart/signed delimiter scanner (RFC 2046 §5.1.1) with its tee of part 1, the p7s part
 * and its base64 check, the opaque body, From/Sender. Differential: the tee's part 1 must be
 * octet for octet what the CRLF canonicaliser reads afterwards (verify hashes either).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mime/signed.h"

typedef struct acc {
	unsigned char *p;
	size_t len, cap;
} acc;

static int sink(const unsigned char *p, size_t n, void *payload)
{
	acc *a = payload;

	if (a->len + n > a->cap) {
		size_t cap = (a->len + n) * 2;
		unsigned char *q = realloc(a->p, cap);

		if (q == NULL) {
			abort();
		}
		a->p = q;
		a->cap = cap;
	}
	memcpy(a->p + a->len, p, n);
	a->len += n;
	return 0;
}

static int begin(const char *micalg, off_t size, void *payload)
{
	(void)micalg;
	(void)size;
	(void)payload;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = p11s_fuzz_file(data, size);
	p11s_mime_signed *m = NULL;
	acc teed = { 0 }, again = { 0 };
	p11s_mime_tee tee = { begin, sink, &teed };

	if (f == NULL) {
		return 0;
	}
	if (p11s_mime__read_signed_tee(&m, f, 0, &tee) == 0 && m->kind == P11S_MIME_MULTIPART_SIGNED) {
		off_t start;

		/* As verify hashes it: part 1, canonical, and its own header block. */
		(void)p11s_mime__header_end(f, m->parts.part1_start, &start);
		if (p11s_mime__stream_canonical(f, m->parts.part1_start, m->parts.part1_end, sink,
		        &again) == 0 &&
		    (!m->teed || teed.len != again.len ||
		        (teed.len > 0 && memcmp(teed.p, again.p, teed.len) != 0))) {
			abort(); /* the tee and the second read disagree */
		}
	}
	p11s_mime__signed_free(m);
	fclose(f);
	free(teed.p);
	free(again.p);
	return 0;
}

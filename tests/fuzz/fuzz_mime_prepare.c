/*
 * Fuzz target: the signing splitter (src/mime/message.c): header split, 7-bit scan, GMime
 * re-encoding of 8bit/binary leaves, canonical entity. `sign` reads messages a user got from
 * elsewhere (forwarded, drafted by another program), so this input is untrusted too. Each
 * input also goes through RFC 9788 header protection (src/mime/protect.c) for a signed
 * (hp="clear") and a signed-then-encrypted (hp="cipher", HP-Outer) message. Differential: the
 * one-read path (p11s_mime__prepare_signed into a private output) must hash the same entity
 * and write a message of the same size as the two-pass path.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mime/mime.h"

typedef struct acc {
	unsigned char *p;
	size_t len, cap;
} acc;

/* An entity sink that keeps what it gets (p == NULL: start over, mime.h). */
static int keep(void *arg, const void *p, size_t n)
{
	acc *a = arg;

	if (p == NULL) {
		a->len = 0;
		return 0;
	}
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

static long file_size(FILE *f)
{
	fflush(f);
	fseek(f, 0, SEEK_END);
	return ftell(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hp[] = { NULL, "clear", "cipher" };
	static const unsigned char sig[] = "not a signature, but as long as one could be";
	FILE *f = p11s_fuzz_file(data, size);

	if (f == NULL) {
		return 0;
	}
	for (size_t i = 0; i < sizeof(hp) / sizeof(hp[0]); i++) {
		p11s_mime_msg *m = NULL, *m1 = NULL;
		acc two = { 0 }, one = { 0 };
		FILE *o2 = tmpfile(), *o1 = tmpfile();
		int r2, r1;

		if (o2 == NULL || o1 == NULL) {
			abort();
		}
		r2 = p11s_mime__prepare_hp(&m, f, keep, &two, hp[i]);
		if (r2 == 0) {
			(void)p11s_mime__write_pkcs7_head(m, p11s_fuzz_null(), "signed-data");
			r2 = p11s_mime__write_signed(m, o2, "sha-256", sig, sizeof(sig));
		}
		r1 = p11s_mime__prepare_signed(&m1, f, keep, &one, hp[i], o1, "sha-256");
		if (r1 == 0) {
			r1 = p11s_mime__write_signed(m1, o1, "sha-256", sig, sizeof(sig));
		}
		if ((r1 == 0) != (r2 == 0) ||
		    (r1 == 0 && (one.len != two.len || (one.len > 0 && memcmp(one.p, two.p, one.len) != 0) ||
		                    file_size(o1) != file_size(o2)))) {
			abort(); /* the one-read path differs from the two-pass path */
		}
		p11s_mime__free(m);
		p11s_mime__free(m1);
		fclose(o1);
		fclose(o2);
		free(one.p);
		free(two.p);
	}
	fclose(f);
	return 0;
}

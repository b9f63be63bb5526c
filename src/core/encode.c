/* Small encoders the host-side rooms share: hex text, DER headers (encode.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/encode.h"

char *p11s_core__hex(const unsigned char *p, size_t n)
{
	char *s = malloc(2 * n + 1);

	for (size_t i = 0; s != NULL && i < n; i++) {
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	}
	if (s != NULL) {
		s[2 * n] = '\0';
	}
	return s;
}

size_t p11s_core__der_header(unsigned char *p, unsigned char tag, size_t len)
{
	size_t n = 0, bytes = 0;

	p[n++] = tag;
	if (len < 0x80) {
		p[n++] = (unsigned char)len;
		return n;
	}
	for (size_t l = len; l > 0; l >>= 8) {
		bytes++;
	}
	p[n++] = (unsigned char)(0x80 | bytes);
	while (bytes > 0) {
		p[n++] = (unsigned char)(len >> (8 * --bytes));
	}
	return n;
}

int p11s_core__ber_header(const unsigned char *p, const unsigned char *end, int indefinite,
    size_t *hl, size_t *cl)
{
	size_t n = 2, len;

	if (end - p < 2 || (p[0] & 0x1f) == 0x1f) {
		return -1;
	}
	len = p[1];
	if (len == 0x80) {
		if (!indefinite || !(p[0] & 0x20)) {
			return -1;
		}
		*hl = 2;
		*cl = SIZE_MAX;
		return 0;
	}
	if (len & 0x80) {
		size_t bytes = len & 0x7f;

		if (bytes == 0 || bytes > sizeof(size_t) || (size_t)(end - p) < 2 + bytes) {
			return -1;
		}
		len = 0;
		for (size_t i = 0; i < bytes; i++) {
			len = len << 8 | p[2 + i];
		}
		n += bytes;
	}
	if ((size_t)(end - p) - n < len) {
		return -1;
	}
	*hl = n;
	*cl = len;
	return 0;
}

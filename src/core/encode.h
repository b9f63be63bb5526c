/* Small encoders the host-side rooms share (src/core/encode.c). */
#ifndef P11S_CORE_ENCODE_H
#define P11S_CORE_ENCODE_H

#include <stddef.h>

/* Lowercase hex of `n` bytes (malloc'd, NUL-terminated), NULL when out of memory. */
char *p11s_core__hex(const unsigned char *p, size_t n);

/*
 * A DER tag and definite length (X.690 §8.1.3) for `len` content octets, written to `p`, which
 * has room for 10 bytes. Returns the header's length.
 */
size_t p11s_core__der_header(unsigned char *p, unsigned char tag, size_t len);

/*
 * Read one BER/DER header at `p` (within `end`; single-octet tags only): `*hl` its length,
 * `*cl` the content length, SIZE_MAX for the indefinite form, which is accepted only when
 * `indefinite` is non-zero and only for constructed encodings (X.690 §8.1.3.6). Returns 0, or
 * -1 when the header is malformed or the content runs past `end`.
 */
int p11s_core__ber_header(const unsigned char *p, const unsigned char *end, int indefinite,
    size_t *hl, size_t *cl);

#endif

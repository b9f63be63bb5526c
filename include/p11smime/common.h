/* p11smime — common definitions of the public API. */
#ifndef P11SMIME_COMMON_H
#define P11SMIME_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(P11S_BUILDING_LIBRARY)
#define P11S_EXTERN __attribute__((visibility("default")))
#else
#define P11S_EXTERN
#endif

/** Marks a function whose return code must be checked. */
#define P11S_MUST_CHECK __attribute__((warn_unused_result))

/**
 * A byte buffer owned by the library. `data` is wiped before it is freed, so a buffer may hold
 * key material (a shared secret, a decrypted content key).
 */
typedef struct p11s_buf {
	unsigned char *data;
	size_t len;
} p11s_buf;

/**
 * Allocate a buffer of `len` bytes (zeroed).
 * @return P11S_OK or P11S_ERR_NOMEM. Free `*out` with p11s_buf_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_buf_new(p11s_buf **out, size_t len);

/** Wipe and free a buffer; NULL is accepted. */
P11S_EXTERN void p11s_buf_free(p11s_buf *buf);

/** The library version, "MAJOR.MINOR.PATCH". */
P11S_EXTERN const char *p11s_version(void);

#endif

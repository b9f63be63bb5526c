/* p11smime — secret buffers for PINs. */
#ifndef P11SMIME_SECRET_H
#define P11SMIME_SECRET_H

#include "common.h"

/** Largest secret a p11s_secret holds, in bytes (PKCS#11 PINs are far shorter). */
#define P11S_SECRET_MAX 255

/**
 * A PIN in memory: fixed capacity, NUL-terminated, never reallocated, locked in RAM and kept
 * out of core dumps where the system allows, wiped with OPENSSL_cleanse when freed.
 */
typedef struct p11s_secret p11s_secret;

/** Allocate an empty secret. Free with p11s_secret_free(). @return P11S_OK, P11S_ERR_NOMEM. */
P11S_EXTERN P11S_MUST_CHECK int p11s_secret_new(p11s_secret **out);

/**
 * Replace the content with `len` bytes of `data`.
 * @return P11S_OK or P11S_ERR_INVALID_ARG if longer than P11S_SECRET_MAX.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_secret_set(p11s_secret *s, const char *data, size_t len);

/** The NUL-terminated content; owned by `s`. */
P11S_EXTERN const char *p11s_secret_data(const p11s_secret *s);

/** Length in bytes, without the NUL. */
P11S_EXTERN size_t p11s_secret_len(const p11s_secret *s);

/** Wipe the content, keeping the buffer. */
P11S_EXTERN void p11s_secret_wipe(p11s_secret *s);

/** Wipe and free; NULL is accepted. */
P11S_EXTERN void p11s_secret_free(p11s_secret *s);

#endif

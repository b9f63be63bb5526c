/* Internal error helpers: set the calling thread's last-error record. */
#ifndef P11S_CORE_ERROR_INT_H
#define P11S_CORE_ERROR_INT_H

#include <p11smime/error.h>

/*
 * Record `code` with a one-line message and return `code`, so that call sites read
 * `return p11s_error__set(P11S_ERR_IO, "cannot open %s: %s", path, strerror(errno));`.
 * The OpenSSL error queue is left alone (see p11s_error__ossl).
 */
int p11s_error__set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, and drain the OpenSSL error queue into the record. */
int p11s_error__ossl(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, and keep the PKCS#11 return value. */
int p11s_error__ckr(int code, unsigned long ck_rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prefix the current message with context ("key 'alice': ") and return the current code; the
 * lower-level error is kept, never overwritten (STYLE.md "Errors").
 */
int p11s_error__prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Make `e` (a record taken on another thread, e.g. a worker's) the calling thread's last error;
 * returns its code.
 */
int p11s_error__restore(const p11s_error *e);

#endif

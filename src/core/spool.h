/*
 * An asynchronous consumer of a byte stream: the producer's octets are copied into a small
 * ring of blocks that one worker thread hands to `fn` in order. Used to hash a large signed
 * entity on the second CPU while the first reads, scans and writes it (docs/performance.md,
 * "Streams"). Internal to the library.
 */
#ifndef P11S_CORE_SPOOL_H
#define P11S_CORE_SPOOL_H

#include <stddef.h>

/* The consumer: P11S_OK or a negative error (its p11s_error record is carried back). */
typedef int (*p11s_spool_fn)(const unsigned char *p, size_t n, void *arg);

typedef struct p11s_spool p11s_spool;

/*
 * A spool feeding `fn(…, arg)`. With `threaded` zero (small inputs, where a thread costs more
 * than it saves), or when no thread can be started, put() calls `fn` directly. NULL: out of
 * memory (error set).
 */
p11s_spool *p11s_core__spool_new(p11s_spool_fn fn, void *arg, int threaded);

/*
 * Queue `n` octets (copied). @return P11S_OK, or the consumer's first error (later input is
 * then dropped). Matches p11s_spool_fn, so a spool can stand where a consumer is expected.
 */
int p11s_core__spool_put(const unsigned char *p, size_t n, void *spool);

/*
 * Wait until every queued octet is consumed, stop the thread and free the spool.
 * @return P11S_OK, or the consumer's first error, re-set on the calling thread.
 */
int p11s_core__spool_end(p11s_spool *s);

/* Inputs at least this large are worth a thread (measured: docs/performance.md). */
#define P11S_SPOOL_THREAD_MIN (4L * 1024 * 1024)

#endif

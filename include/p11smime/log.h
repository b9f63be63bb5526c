/* p11smime — diagnostics on stderr. */
#ifndef P11SMIME_LOG_H
#define P11SMIME_LOG_H

#include "common.h"

typedef enum p11s_log_level {
	P11S_LOG_ERROR = 0,
	P11S_LOG_WARN = 1,
	P11S_LOG_INFO = 2,
	P11S_LOG_DEBUG = 3,
} p11s_log_level;

/** Set the threshold (default P11S_LOG_WARN; -q: ERROR, -v: INFO, -vv: DEBUG). */
P11S_EXTERN void p11s_log_set_level(p11s_log_level level);
P11S_EXTERN p11s_log_level p11s_log_get_level(void);

/**
 * Set where log lines go (default: stderr, "p11smime: " prefix). `fn` NULL restores the default.
 * The logger never receives a secret: no API takes a p11s_secret.
 */
P11S_EXTERN void p11s_log_set_handler(void (*fn)(p11s_log_level level, const char *line,
    void *payload), void *payload);

/** Log one line at `level`. */
P11S_EXTERN void p11s_log(p11s_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

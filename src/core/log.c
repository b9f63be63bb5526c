/* Diagnostics: one line per call, on stderr unless a handler is set (the gateway's syslog). */
#include <stdarg.h>
#include <stdio.h>

#include <p11smime/log.h>

static p11s_log_level threshold = P11S_LOG_WARN;
static void (*handler)(p11s_log_level, const char *, void *);
static void *handler_payload;

void p11s_log_set_level(p11s_log_level level)
{
	threshold = level;
}

p11s_log_level p11s_log_get_level(void)
{
	return threshold;
}

void p11s_log_set_handler(void (*fn)(p11s_log_level, const char *, void *), void *payload)
{
	handler = fn;
	handler_payload = payload;
}

void p11s_log(p11s_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > threshold) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++) {
		if (*p == '\n' || *p == '\r') {
			*p = ' ';
		}
	}
	if (handler != NULL) {
		handler(level, line, handler_payload);
		return;
	}
	fprintf(stderr, "p11smime: %s%s\n",
	    level == P11S_LOG_ERROR ? "error: " : level == P11S_LOG_WARN ? "warning: " : "", line);
}

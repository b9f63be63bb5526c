/* Error codes, classes and the per-thread last-error record. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "core/error_int.h"

static _Thread_local p11s_error last;

static const struct {
	int code;
	p11s_error_class_t cls;
	const char *name;
} table[] = {
	{ P11S_OK, P11S_ECLASS_NONE, "OK" },
	{ P11S_ERR_GENERIC, P11S_ECLASS_SYSTEM, "GENERIC" },
	{ P11S_ERR_NOMEM, P11S_ECLASS_SYSTEM, "NOMEM" },
	{ P11S_ERR_INVALID_ARG, P11S_ECLASS_USAGE, "INVALID_ARG" },
	{ P11S_ERR_USAGE, P11S_ECLASS_USAGE, "USAGE" },
	{ P11S_ERR_MALFORMED, P11S_ECLASS_USAGE, "MALFORMED" },
	{ P11S_ERR_IO, P11S_ECLASS_SYSTEM, "IO" },
	{ P11S_ERR_AMBIGUOUS, P11S_ECLASS_USAGE, "AMBIGUOUS" },
	{ P11S_ERR_CONFIG, P11S_ECLASS_USAGE, "CONFIG" },
	{ P11S_ERR_PIN_SOURCE, P11S_ECLASS_USAGE, "PIN_SOURCE" },
	{ P11S_ERR_NOT_FOUND, P11S_ECLASS_TOKEN, "NOT_FOUND" },
	{ P11S_ERR_MODULE, P11S_ECLASS_TOKEN, "MODULE" },
	{ P11S_ERR_TOKEN_ABSENT, P11S_ECLASS_TOKEN, "TOKEN_ABSENT" },
	{ P11S_ERR_PIN_INCORRECT, P11S_ECLASS_TOKEN, "PIN_INCORRECT" },
	{ P11S_ERR_PIN_LOCKED, P11S_ECLASS_TOKEN, "PIN_LOCKED" },
	{ P11S_ERR_MECHANISM, P11S_ECLASS_TOKEN, "MECHANISM" },
	{ P11S_ERR_UNSUPPORTED, P11S_ECLASS_TOKEN, "UNSUPPORTED" },
	{ P11S_ERR_DEVICE_REMOVED, P11S_ECLASS_TOKEN, "DEVICE_REMOVED" },
	{ P11S_ERR_TOKEN, P11S_ECLASS_TOKEN, "TOKEN" },
	{ P11S_ERR_LOGIN, P11S_ECLASS_TOKEN, "LOGIN" },
	{ P11S_ERR_VERIFY, P11S_ECLASS_VERIFY, "VERIFY" },
	{ P11S_ERR_DECRYPT, P11S_ECLASS_VERIFY, "DECRYPT" },
	{ P11S_ERR_CRYPTO, P11S_ECLASS_SYSTEM, "CRYPTO" },
};

p11s_error_class_t p11s_error_class(int code)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].code == code) {
			return table[i].cls;
		}
	}
	return code == 0 ? P11S_ECLASS_NONE : P11S_ECLASS_SYSTEM;
}

const char *p11s_error_name(int code)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].code == code) {
			return table[i].name;
		}
	}
	return "UNKNOWN";
}

const p11s_error *p11s_error_last(void)
{
	return &last;
}

void p11s_error_clear(void)
{
	memset(&last, 0, sizeof(last));
}

__attribute__((format(printf, 2, 0))) static void set_message(int code, const char *fmt,
    va_list ap)
{
	last.code = code;
	last.has_ck_rv = 0;
	last.ck_rv = 0;
	last.openssl[0] = '\0';
	vsnprintf(last.message, sizeof(last.message), fmt, ap);
	/* One line: a message never spans lines, whatever a peer put in a subject or label. */
	for (char *p = last.message; *p; p++) {
		if (*p == '\n' || *p == '\r') {
			*p = ' ';
		}
	}
}

int p11s_error__set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_message(code, fmt, ap);
	va_end(ap);
	return code;
}

int p11s_error__ossl(int code, const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	const char *data = NULL;
	int flags = 0;
	size_t off = 0;

	va_start(ap, fmt);
	set_message(code, fmt, ap);
	va_end(ap);
	/* Keep each entry's reason and its additional data (often the most telling part). */
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		char one[256];

		ERR_error_string_n(e, one, sizeof(one));
		if (off < sizeof(last.openssl)) {
			int n = snprintf(last.openssl + off, sizeof(last.openssl) - off, "%s%s%s%s",
			    off ? "; " : "", one, (flags & ERR_TXT_STRING) && *data ? ": " : "",
			    (flags & ERR_TXT_STRING) ? data : "");
			if (n > 0) {
				off += (size_t)n;
			}
		}
	}
	return code;
}

int p11s_error__ckr(int code, unsigned long ck_rv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_message(code, fmt, ap);
	va_end(ap);
	last.has_ck_rv = 1;
	last.ck_rv = ck_rv;
	return code;
}

int p11s_error__prefix(const char *fmt, ...)
{
	char prefix[512];
	char old[sizeof(last.message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, last.message, sizeof(old));
	snprintf(last.message, sizeof(last.message), "%s%s", prefix, old);
	return last.code ? last.code : P11S_ERR_GENERIC;
}

int p11s_error__restore(const p11s_error *e)
{
	last = *e;
	return last.code;
}

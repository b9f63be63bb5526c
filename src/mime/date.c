/*
 * Date header fields for the date check of `verify` (docs/verify.md, "Dates"): the outer
 * message's Date (RFC 5322 §3.6.1) and, when the signed entity carries header fields of its
 * own (RFC 9788 header protection, or a wrapped message), the protected Date inside it.
 * GMime decodes the RFC 5322 date-time (and the obsolete forms of §4.3).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "core/error_int.h"
#include "mime/gmime_lazy.h"
#include "mime/mime.h"
#include "mime/signed.h"

void p11s_mime__field_trim(char *s)
{
	size_t n = strlen(s), k = 0, j = 0;

	/* Unfold (RFC 5322 §2.2.3: CRLF before white space is removed) and trim. */
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\r' && s[i] != '\n') {
			s[j++] = s[i];
		}
	}
	s[j] = '\0';
	while (s[k] == ' ' || s[k] == '\t') {
		k++;
	}
	memmove(s, s + k, j - k + 1);
	j -= k;
	while (j > 0 && (s[j - 1] == ' ' || s[j - 1] == '\t')) {
		s[--j] = '\0';
	}
}

int p11s_mime__parse_date(const char *value, int64_t *out)
{
	GDateTime *dt;

	if (p11s_mime__init() < 0 || value == NULL ||
	    (dt = g_mime_utils_header_decode_date(value)) == NULL) {
		return -1;
	}
	*out = (int64_t)g_date_time_to_unix(dt);
	g_date_time_unref(dt);
	/* GMime answers the epoch for text it cannot read at all. */
	return *out == 0 && strstr(value, "1970") == NULL ? -1 : 0;
}

int p11s_mime__entity_date(FILE *f, off_t start, off_t end, char **raw)
{
	p11s_mime_fields fields;
	const char *v;
	int rc;

	*raw = NULL;
	/* The header section as protect.c reads it (64 KiB at most, unfolded values). */
	if ((rc = p11s_mime__header_fields(f, start, end, &fields)) < 0) {
		return rc;
	}
	if ((v = p11s_mime__fields_get(&fields, "Date")) != NULL && (*raw = strdup(v)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	p11s_mime__fields_free(&fields);
	return rc < 0 ? rc : *raw != NULL;
}

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
#include "mime/mime.h"
#include "mime/signed.h"

/* The header section of an entity is read at most this far (a Date beyond it is ignored). */
#define DATE_SCAN_MAX (64 * 1024)

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

	p11s_mime__init();
	if (value == NULL || (dt = g_mime_utils_header_decode_date(value)) == NULL) {
		return -1;
	}
	*out = (int64_t)g_date_time_to_unix(dt);
	g_date_time_unref(dt);
	/* GMime answers the epoch for text it cannot read at all. */
	return *out == 0 && strstr(value, "1970") == NULL ? -1 : 0;
}

int p11s_mime__entity_date(FILE *f, off_t start, off_t end, char **raw)
{
	char *buf, *p, *line, *val = NULL;
	size_t n, cap = DATE_SCAN_MAX;
	int rc = 0;

	*raw = NULL;
	if (end >= 0 && end - start < (off_t)cap) {
		cap = end > start ? (size_t)(end - start) : 0;
	}
	if ((buf = malloc(cap + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (fseeko(f, start, SEEK_SET) != 0) {
		free(buf);
		return p11s_error__set(P11S_ERR_IO, "cannot seek in the message");
	}
	n = fread(buf, 1, cap, f);
	buf[n] = '\0';
	/*
	 * Header fields up to the first empty line (RFC 5322 §2.2); folded lines (a line that
	 * starts with white space) continue the field before (§2.2.3). A NUL ends the scan: that
	 * is not a header section.
	 */
	for (p = buf; p < buf + n && *p != '\0';) {
		char *eol = strchr(p, '\n');
		size_t len;

		line = p;
		len = eol ? (size_t)(eol - p) : strlen(p);
		p = eol ? eol + 1 : p + len;
		if (len > 0 && line[len - 1] == '\r') {
			len--;
		}
		if (len == 0) {
			break;
		}
		if ((line[0] == ' ' || line[0] == '\t') && val != NULL) {
			size_t vl = strlen(val);
			char *nv = realloc(val, vl + len + 1);

			if (nv == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			val = nv;
			memcpy(val + vl, line, len);
			val[vl + len] = '\0';
			continue;
		}
		if (val != NULL) {
			break; /* the Date field is complete */
		}
		if (len >= 5 && strncasecmp(line, "Date:", 5) == 0) {
			if ((val = strndup(line + 5, len - 5)) == NULL) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
		}
	}
	if (val != NULL) {
		p11s_mime__field_trim(val);
		*raw = val;
		val = NULL;
		rc = 1;
	}
out:
	free(val);
	free(buf);
	return rc;
}

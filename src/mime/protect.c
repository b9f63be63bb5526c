/*
 * RFC 9788 header protection, the composing side (docs/sign.md "Header protection"): the
 * Cryptographic Payload (the entity directly inside the S/MIME layers) carries copies of the
 * message's header fields, and its Content-Type gets hp="clear" (signed only) or hp="cipher"
 * (encrypted, §2.1.1), so that a reader can show header fields that were signed.
 *
 * Which fields: every non-structural field of the message (§1.1: structural are
 * MIME-Version and Content-*), except the trace and transport fields that relays add and
 * that say nothing the author wrote (Received, Return-Path, DKIM and ARC signatures,
 * Authentication-Results, Delivered-To, X-Original-To): a gateway signing outbound mail sees
 * them, a reader must not take them for protected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error_int.h"
#include "mime/mime.h"

static const char *const not_protected[] = {
	"Received", "Return-Path", "DKIM-Signature", "ARC-Seal", "ARC-Message-Signature",
	"ARC-Authentication-Results", "Authentication-Results", "Delivered-To", "X-Original-To",
};

/* The length of the field name at `p` (up to the colon), 0 if the line starts no field. */
static size_t name_len(const char *p, const char *end)
{
	const char *q = p;

	while (q < end && *q != ':' && *q > ' ' && *q < 127) {
		q++;
	}
	return q < end && *q == ':' ? (size_t)(q - p) : 0;
}

static int protected_name(const char *p, size_t n)
{
	for (size_t i = 0; i < sizeof(not_protected) / sizeof(not_protected[0]); i++) {
		if (strlen(not_protected[i]) == n && strncasecmp(p, not_protected[i], n) == 0) {
			return 0;
		}
	}
	return 1;
}

/* The end of the field that starts at `p`: after the CRLF of its last (folded) line. */
static const char *field_end(const char *p, const char *end)
{
	for (;;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL) {
			return end;
		}
		p = nl + 1;
		if (p >= end || (*p != ' ' && *p != '\t')) {
			return p;
		}
	}
}

int p11s_mime__hp_fields(const char *outer, size_t len, char **out, size_t *outlen)
{
	const char *p = outer, *end = outer + len;
	char *buf = malloc(len + 1);
	size_t n = 0;

	*out = NULL;
	*outlen = 0;
	if (buf == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	while (p < end) {
		const char *e = field_end(p, end);
		size_t nl = name_len(p, e);

		if (nl > 0 && protected_name(p, nl)) {
			memcpy(buf + n, p, (size_t)(e - p));
			n += (size_t)(e - p);
		}
		p = e;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return P11S_OK;
}

/* Non-zero when the field value [v, e) already has an hp parameter (RFC 9788 §2.1.1). */
static int has_hp(const char *v, const char *e)
{
	int quoted = 0;

	for (const char *p = v; p < e; p++) {
		if (*p == '"' && (p == v || p[-1] != '\\')) {
			quoted = !quoted;
		} else if (!quoted && *p == ';') {
			const char *q = p + 1;

			while (q < e && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) {
				q++;
			}
			if (e - q >= 2 && strncasecmp(q, "hp", 2) == 0) {
				q += 2;
				while (q < e && (*q == ' ' || *q == '\t')) {
					q++;
				}
				if (q < e && *q == '=') {
					return 1;
				}
			}
		}
	}
	return 0;
}

int p11s_mime__hp_ctype(const char *content, size_t len, const char *hp, char **out,
    size_t *outlen)
{
	const char *p = content, *end = content + len;
	size_t extra = strlen(hp) + 8, n = 0;
	char *buf = malloc(len + extra + 1);
	int seen = 0;

	*out = NULL;
	*outlen = 0;
	if (buf == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	while (p < end) {
		const char *e = field_end(p, end), *last = e;
		size_t nl = name_len(p, e);

		/* The first Content-Type only; one that states hp already is left as it is. */
		if (!seen && nl == 12 && strncasecmp(p, "Content-Type", 12) == 0 && (seen = 1) &&
		    !has_hp(p + 13, e)) {
			/* `; hp="..."` goes before the CRLF that ends the field's last line. */
			while (last > p && (last[-1] == '\r' || last[-1] == '\n')) {
				last--;
			}
			memcpy(buf + n, p, (size_t)(last - p));
			n += (size_t)(last - p);
			n += (size_t)snprintf(buf + n, extra + 1, "; hp=\"%s\"", hp);
			memcpy(buf + n, last, (size_t)(e - last));
			n += (size_t)(e - last);
		} else {
			memcpy(buf + n, p, (size_t)(e - p));
			n += (size_t)(e - p);
		}
		p = e;
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return P11S_OK;
}

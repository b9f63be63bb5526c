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
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error_int.h"
#include "mime/enveloped.h"
#include "mime/mime.h"
#include "mime/signed.h"

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

/* ---- the reading side: the header fields of a signed entity (verify, unwrap) ---- */

/* A header section is read at most this far (fields beyond it are not seen). */
#define FIELDS_SCAN_MAX (64 * 1024)

void p11s_mime__fields_free(p11s_mime_fields *f)
{
	for (size_t i = 0; f != NULL && i < f->n; i++) {
		free(f->name[i]);
		free(f->value[i]);
	}
	if (f != NULL) {
		free(f->name);
		free(f->value);
		memset(f, 0, sizeof(*f));
	}
}

static int fields_push(p11s_mime_fields *f, const char *name, size_t nl, const char *value,
    size_t vl)
{
	char **nn = realloc(f->name, (f->n + 1) * sizeof(*nn)), **nv;

	if (nn == NULL) {
		return -1;
	}
	f->name = nn;
	if ((nv = realloc(f->value, (f->n + 1) * sizeof(*nv))) == NULL) {
		return -1;
	}
	f->value = nv;
	if ((f->name[f->n] = strndup(name, nl)) == NULL) {
		return -1;
	}
	if ((f->value[f->n] = strndup(value, vl)) == NULL) {
		free(f->name[f->n]);
		return -1;
	}
	p11s_mime__field_trim(f->value[f->n]);
	f->n++;
	return 0;
}

int p11s_mime__header_fields(FILE *in, off_t start, off_t end, p11s_mime_fields *out)
{
	size_t cap = FIELDS_SCAN_MAX, n;
	char *buf, *p, *e;

	memset(out, 0, sizeof(*out));
	if (end >= 0 && end - start < (off_t)cap) {
		cap = end > start ? (size_t)(end - start) : 0;
	}
	if ((buf = malloc(cap + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (fseeko(in, start, SEEK_SET) != 0) {
		free(buf);
		return p11s_error__set(P11S_ERR_IO, "cannot seek in the message");
	}
	n = fread(buf, 1, cap, in);
	buf[n] = '\0';
	n = strlen(buf); /* a NUL ends the header section */
	/* The section ends at the first empty line (RFC 5322 §2.2). */
	for (p = buf, e = buf + n; p < e;) {
		const char *fe = field_end(p, e), *colon;
		size_t nl = name_len(p, fe);

		if (*p == '\r' || *p == '\n') {
			break;
		}
		if (nl > 0) {
			colon = p + nl;
			if (fields_push(out, p, nl, colon + 1, (size_t)(fe - colon - 1)) < 0) {
				p11s_mime__fields_free(out);
				free(buf);
				return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			}
		}
		p = (char *)fe;
	}
	free(buf);
	return P11S_OK;
}

const char *p11s_mime__fields_get(const p11s_mime_fields *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++) {
		if (strcasecmp(f->name[i], name) == 0) {
			return f->value[i];
		}
	}
	return NULL;
}

char *p11s_mime__ctype_param(const char *value, const char *param)
{
	size_t pl = strlen(param);
	int quoted = 0;

	for (const char *p = value; p != NULL && *p != '\0'; p++) {
		if (*p == '"' && (p == value || p[-1] != '\\')) {
			quoted = !quoted;
		} else if (!quoted && *p == ';') {
			const char *q = p + 1, *v;

			while (*q == ' ' || *q == '\t') {
				q++;
			}
			if (strncasecmp(q, param, pl) != 0) {
				continue;
			}
			q += pl;
			while (*q == ' ' || *q == '\t') {
				q++;
			}
			if (*q != '=') {
				continue;
			}
			q++;
			while (*q == ' ' || *q == '\t') {
				q++;
			}
			if (*q == '"') {
				v = ++q;
				while (*q != '\0' && *q != '"') {
					q++;
				}
			} else {
				v = q;
				while (*q != '\0' && *q != ';' && *q != ' ' && *q != '\t') {
					q++;
				}
			}
			return strndup(v, (size_t)(q - v));
		}
	}
	return NULL;
}

/* ---- encryption: hp="cipher", HP-Outer, an obscured outer Subject (RFC 9788 §2.2, §3) ---- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	int bad;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->bad) {
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *np = realloc(b->p, cap);

		if (np == NULL) {
			b->bad = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Append with every bare LF made CRLF: the payload is canonical (RFC 8551 §3.1.1). */
static void sb_add_crlf(sbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
			sb_add(b, "\r\n", 2);
		} else {
			sb_add(b, s + i, 1);
		}
	}
}

int p11s_mime__hp_encrypt_head(p11s_mime_head *h)
{
	const char *p = h->outer ? h->outer : "", *end = p + h->outer_len;
	sbuf outer = { 0 }, inner = { 0 };
	char *ct = NULL, *fields = NULL;
	size_t ct_len = 0, fields_len = 0;
	int rc;

	/* The payload: the Content-* fields with hp="cipher", the true header fields. */
	if (h->content_type == NULL) {
		sb_str(&inner, "Content-Type: text/plain; charset=us-ascii; hp=\"cipher\"\r\n");
	}
	if ((rc = p11s_mime__hp_ctype(h->content ? h->content : "", h->content_len, "cipher", &ct,
	         &ct_len)) < 0 ||
	    (rc = p11s_mime__hp_fields(p, h->outer_len, &fields, &fields_len)) < 0) {
		goto out;
	}
	sb_add_crlf(&inner, ct, ct_len);
	sb_add_crlf(&inner, fields, fields_len);
	/*
	 * The outer header (hcp_baseline, §3.2.1): Subject becomes "[...]", Comments and
	 * Keywords go; every field left outside is recorded in an HP-Outer field (§2.2), so
	 * that a reader knows which ones the sender exposed.
	 */
	while (p < end) {
		const char *e = field_end(p, end);
		size_t nl = name_len(p, e);

		if (nl == 0) {
			p = e;
			continue;
		}
		if ((nl == 8 && strncasecmp(p, "Comments", 8) == 0) ||
		    (nl == 8 && strncasecmp(p, "Keywords", 8) == 0)) {
			p = e;
			continue;
		}
		if (nl == 7 && strncasecmp(p, "Subject", 7) == 0) {
			sb_add(&outer, p, nl);
			sb_str(&outer, h->crlf ? ": [...]\r\n" : ": [...]\n");
			sb_str(&inner, "HP-Outer: Subject: [...]\r\n");
		} else {
			/* The field as it is, folding kept (a long References stays under 998). */
			sb_add(&outer, p, (size_t)(e - p));
			sb_str(&inner, "HP-Outer: ");
			sb_add_crlf(&inner, p, (size_t)(e - p));
			if (e > p && e[-1] != '\n') {
				sb_str(&inner, "\r\n");
			}
		}
		p = e;
	}
	if (outer.bad || inner.bad) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	free(h->outer);
	h->outer = outer.p ? outer.p : strdup("");
	h->outer_len = h->outer_cap = outer.len;
	free(h->content);
	h->content = inner.p;
	h->content_len = h->content_cap = inner.len;
	outer.p = inner.p = NULL;
	rc = h->outer != NULL ? P11S_OK : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
out:
	free(outer.p);
	free(inner.p);
	free(ct);
	free(fields);
	return rc;
}

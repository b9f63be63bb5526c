/*
 * Reading signed messages for `verify`. GMime 3 parses header fields (Content-Type parameters
 * with RFC 2231, From/Sender addr-specs) and finds which entity is S/MIME; the bytes that a
 * signature covers are located by our own boundary scanner and read raw from the input, then
 * canonicalised to CRLF (DESIGN.md decision 5): a re-serialised tree could differ from what
 * was signed, and two parsers disagreeing about part boundaries is a spoofing vector.
 */
#define _GNU_SOURCE /* asprintf, vasprintf, memmem */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "core/error_int.h"
#include "mime/gmime_lazy.h"
#include "mime/mime.h"
#include "mime/signed.h"

/* The p7s part and an opaque body are decoded in memory; refuse absurd sizes. */
#ifndef P11S_MAX_P7S_SIZE /* build-time setting (docs/security.md, "Limits") */
#define P11S_MAX_P7S_SIZE (64L * 1024 * 1024)
#endif
#define MAX_P7S_SIZE P11S_MAX_P7S_SIZE
/* Longest line we keep for delimiter matching: "--" boundary(70) "--" + transport padding. */
#define LINE_KEEP 1024
/* Octets of a line read_line() keeps: one more, for the CR of a CRLF after LINE_KEEP. */
#define KEEP (LINE_KEEP + 1)

int p11s_mime__canon_feed(p11s_mime_canon *c, const unsigned char *p, size_t n,
    p11s_mime_feed sink, void *payload)
{
	/*
	 * RFC 8551 §3.1.1: a bare LF (Unix storage) becomes CRLF. The canonical bytes are
	 * assembled in `out` and passed on once per piece of input, not once per line: memchr()
	 * finds the line ends, so this runs at memory speed (the byte loop with a digest update
	 * per line was a quarter of verifying a 100 MiB message, docs/performance.md).
	 */
	unsigned char out[2 * 8192];
	int rc;

	while (n > 0) {
		size_t take = n < 8192 ? n : 8192, o = 0;
		const unsigned char *q = p, *end = p + take;

		while (q < end) {
			const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
			size_t seg = nl != NULL ? (size_t)(nl - q) : (size_t)(end - q);

			memcpy(out + o, q, seg);
			o += seg;
			if (seg > 0) {
				c->prev_cr = q[seg - 1] == '\r';
			}
			if (nl == NULL) {
				break;
			}
			if (!c->prev_cr) {
				out[o++] = '\r';
			}
			out[o++] = '\n';
			c->prev_cr = 0;
			q = nl + 1;
		}
		if (o > 0 && (rc = sink(out, o, payload)) < 0) {
			return rc;
		}
		p += take;
		n -= take;
	}
	return P11S_OK;
}

/*
 * Part 1 of multipart/signed in canonical form, given to a consumer while the delimiters are
 * scanned (p11s_mime_tee), so that a large message is read once. Per line: the pending line
 * break of the line before (always CRLF: RFC 8551 §3.1.1), then the line's content; the line
 * break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1) and is never given.
 */
typedef struct tee_state {
	p11s_mime_feed feed;
	void *payload;
	int on;       /* the line being read is inside part 1 */
	int pending;  /* the previous part-1 line's break is still to be given */
	int held_cr;  /* a long line's segment ended in CR: content, unless LF comes next */
	int spilled;  /* the current line's content is longer than LINE_KEEP: given as read */
	size_t n;     /* octets staged in `stage`: the consumer gets blocks, not lines */
	unsigned char stage[65536];
} tee_state;

/* A buffered line reader: memchr() over a block instead of getc() per byte. */
typedef struct lreader {
	FILE *f;
	size_t pos, len;
	tee_state *tee; /* NULL: no tee */
	unsigned char buf[65536];
} lreader;

static int tee_flush(tee_state *t)
{
	size_t n = t->n;

	t->n = 0;
	return n > 0 ? t->feed(t->stage, n, t->payload) : P11S_OK;
}

static int tee_put(tee_state *t, const unsigned char *p, size_t n)
{
	int rc;

	if (n > sizeof(t->stage) - t->n) {
		if ((rc = tee_flush(t)) < 0) {
			return rc;
		}
		if (n > sizeof(t->stage)) {
			return t->feed(p, n, t->payload);
		}
	}
	memcpy(t->stage + t->n, p, n);
	t->n += n;
	return P11S_OK;
}

static int tee_content(tee_state *t, const unsigned char *p, size_t n)
{
	int rc;

	if (t->pending) {
		t->pending = 0;
		if ((rc = tee_put(t, (const unsigned char *)"\r\n", 2)) < 0) {
			return rc;
		}
	}
	return tee_put(t, p, n);
}

/*
 * A segment of a long line (no LF inside); `ends_line`: an LF follows it. A CR that ends the
 * line is the line break's, so it is held back until the next octet shows what it is.
 */
static int tee_segment(tee_state *t, const unsigned char *p, size_t n, int ends_line)
{
	int rc;

	if (n == 0) {
		if (ends_line) {
			t->held_cr = 0; /* CR LF split across blocks: the CR was the line break's */
		}
		return P11S_OK;
	}
	if (t->held_cr) {
		t->held_cr = 0;
		if ((rc = tee_content(t, (const unsigned char *)"\r", 1)) < 0) {
			return rc;
		}
	}
	if (p[n - 1] == '\r') {
		t->held_cr = !ends_line;
		n--;
	}
	return tee_content(t, p, n);
}

/*
 * Read one line. Keeps at most KEEP octets of it in `buf` (room for KEEP); `*content` is the
 * full length without the line break, `*eol` the length of the line break (2 CRLF, 1 LF, 0 at
 * EOF), `*total` the bytes consumed. With the tee on, a line with more than LINE_KEEP octets of
 * content (never a delimiter) is given to the tee as it is read. @return 1, 0 at EOF, or a
 * negative error.
 */
static int read_line(lreader *r, unsigned char *buf, off_t *content, int *eol, off_t *total)
{
	tee_state *tee = r->tee != NULL && r->tee->on ? r->tee : NULL;
	off_t t = 0;
	int prev_cr = 0, rc;

	*eol = 0;
	if (tee != NULL) {
		tee->spilled = 0;
		tee->held_cr = 0;
	}
	for (;;) {
		const unsigned char *s, *nl;
		size_t seg;

		if (r->pos == r->len) {
			r->pos = 0;
			if ((r->len = fread(r->buf, 1, sizeof(r->buf), r->f)) == 0) {
				if (ferror(r->f)) {
					return p11s_error__set(P11S_ERR_IO, "reading the message: %s",
					    strerror(errno));
				}
				break;
			}
		}
		s = r->buf + r->pos;
		nl = memchr(s, '\n', r->len - r->pos);
		seg = nl != NULL ? (size_t)(nl - s) : r->len - r->pos;
		if (t < KEEP) {
			size_t k = seg < (size_t)(KEEP - t) ? seg : (size_t)(KEEP - t);

			memcpy(buf + t, s, k);
			if (tee != NULL && k < seg) {
				/* Content past LINE_KEEP: not a delimiter; give what was kept, then the rest. */
				tee->spilled = 1;
				if ((rc = tee_content(tee, buf, KEEP)) < 0 ||
				    (rc = tee_segment(tee, s + k, seg - k, nl != NULL)) < 0) {
					return rc;
				}
			}
		} else if (tee != NULL && (rc = tee_segment(tee, s, seg, nl != NULL)) < 0) {
			return rc;
		}
		if (seg > 0) {
			prev_cr = s[seg - 1] == '\r';
		}
		t += (off_t)seg;
		r->pos += seg;
		if (nl != NULL) {
			r->pos++;
			t++;
			*eol = prev_cr ? 2 : 1;
			break;
		}
	}
	*total = t;
	*content = t - *eol;
	return t > 0;
}

/*
 * RFC 2046 §5.1.1: a delimiter line is "--" boundary, optionally "--" (close delimiter), then
 * only transport padding (linear white space).
 */
static int is_delimiter(const unsigned char *line, off_t len, const char *b, size_t blen,
    int *close)
{
	off_t i;

	*close = 0;
	if (len > LINE_KEEP || len < (off_t)blen + 2 || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, b, blen) != 0) {
		return 0;
	}
	i = (off_t)blen + 2;
	if (len - i >= 2 && line[i] == '-' && line[i + 1] == '-') {
		*close = 1;
		i += 2;
	}
	for (; i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t') {
			return 0;
		}
	}
	return 1;
}

static int scan_multipart(lreader *lr, off_t body_start, const char *boundary,
    p11s_mime_parts *out)
{
	unsigned char line[KEEP];
	size_t blen = strlen(boundary);
	off_t pos = body_start, part_start = -1, content, total;
	int eol, prev_eol = 0, closed = 0, r, close;

	memset(out, 0, sizeof(*out));
	if (blen == 0 || blen > 200) {
		return p11s_error__set(P11S_ERR_MALFORMED, "multipart boundary is empty or too long");
	}
	while ((r = read_line(lr, line, &content, &eol, &total)) > 0) {
		off_t line_start = pos;
		tee_state *tee = lr->tee;

		pos += total;
		if (tee != NULL && tee->on && tee->spilled) {
			tee->pending = eol > 0; /* given by read_line; not a delimiter */
		} else if (is_delimiter(line, content, boundary, blen, &close)) {
			if (tee != NULL) {
				/* Part 1 starts after the first delimiter and ends at the second. */
				if (tee->on && (r = tee_flush(tee)) < 0) {
					break;
				}
				tee->on = out->n_parts == 0 && part_start < 0 && !close;
				tee->pending = 0;
			}
			/* The line break before the delimiter belongs to the delimiter. */
			off_t end = line_start - prev_eol;

			if (part_start >= 0) {
				if (end < part_start) {
					end = part_start;
				}
				if (out->n_parts == 0) {
					out->part1_start = part_start;
					out->part1_end = end;
				} else if (out->n_parts == 1) {
					out->part2_start = part_start;
					out->part2_end = end;
				}
				out->n_parts++;
			}
			if (close) {
				closed = 1;
				break;
			}
			part_start = pos;
		} else if (tee != NULL && tee->on) {
			if ((r = tee_content(tee, line, (size_t)content)) < 0) {
				break;
			}
			tee->pending = eol > 0;
		}
		prev_eol = eol;
	}
	if (r < 0) {
		return r;
	}
	if (part_start < 0) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "multipart/signed: boundary \"%s\" not found in the body", boundary);
	}
	if (!closed) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "multipart/signed: close delimiter \"--%s--\" missing (truncated message?)",
		    boundary);
	}
	if (out->n_parts != 2) {
		/* RFC 1847 §2.1: exactly two body parts. */
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "multipart/signed has %zu body parts; RFC 1847 requires exactly 2", out->n_parts);
	}
	return P11S_OK;
}

static int header_end(lreader *lr, off_t start, off_t *out)
{
	unsigned char line[KEEP];
	off_t pos = start, content, total;
	int eol, r;

	while ((r = read_line(lr, line, &content, &eol, &total)) > 0) {
		pos += total;
		if (content == 0 && eol > 0) {
			*out = pos;
			return P11S_OK;
		}
	}
	if (r < 0) {
		return r;
	}
	return p11s_error__set(P11S_ERR_MALFORMED, "no empty line after the header fields");
}

/* A line reader over `f` from `start` (NULL: error set). Free with free(). */
static lreader *lreader_at(FILE *f, off_t start)
{
	lreader *lr;

	if (fseeko(f, start, SEEK_SET) != 0) {
		p11s_error__set(P11S_ERR_IO, "seeking in the message: %s", strerror(errno));
		return NULL;
	}
	if ((lr = calloc(1, sizeof(*lr))) == NULL) {
		p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		return NULL;
	}
	lr->f = f;
	return lr;
}

int p11s_mime__scan_multipart(FILE *f, off_t body_start, const char *boundary,
    p11s_mime_parts *out)
{
	return p11s_mime__scan_multipart_tee(f, body_start, boundary, out, NULL, NULL);
}

int p11s_mime__scan_multipart_tee(FILE *f, off_t body_start, const char *boundary,
    p11s_mime_parts *out, p11s_mime_feed feed, void *payload)
{
	lreader *lr = lreader_at(f, body_start);
	tee_state *ts = NULL;
	int rc;

	if (lr == NULL) {
		return p11s_error_last()->code;
	}
	if (feed != NULL) {
		if ((ts = calloc(1, sizeof(*ts))) == NULL) {
			free(lr);
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		ts->feed = feed;
		ts->payload = payload;
		lr->tee = ts;
	}
	rc = scan_multipart(lr, body_start, boundary, out);
	free(ts);
	free(lr);
	return rc;
}

int p11s_mime__header_end(FILE *f, off_t start, off_t *out)
{
	lreader *lr = lreader_at(f, start);
	int rc;

	if (lr == NULL) {
		return p11s_error_last()->code;
	}
	rc = header_end(lr, start, out);
	free(lr);
	return rc;
}

int p11s_mime__stream_canonical(FILE *f, off_t start, off_t end, p11s_mime_feed sink,
    void *payload)
{
	unsigned char buf[65536];
	p11s_mime_canon c = { 0 };
	off_t left = end - start;
	int rc;

	if (fseeko(f, start, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "seeking in the message: %s", strerror(errno));
	}
	while (left > 0) {
		size_t want = left > (off_t)sizeof(buf) ? sizeof(buf) : (size_t)left;
		size_t n = fread(buf, 1, want, f);

		if (n == 0) {
			return p11s_error__set(P11S_ERR_IO, "reading the message: %s",
			    ferror(f) ? strerror(errno) : "unexpected end of file");
		}
		if ((rc = p11s_mime__canon_feed(&c, buf, n, sink, payload)) < 0) {
			return rc;
		}
		left -= (off_t)n;
	}
	return P11S_OK;
}

/* ---- GMime side ---------------------------------------------------------------------- */

static int ends_with_ci(const char *s, const char *suffix)
{
	size_t ls = s ? strlen(s) : 0, lx = strlen(suffix);

	return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

/* The file name of an entity: Content-Disposition filename, else Content-Type name. */
static const char *entity_filename(GMimeObject *o)
{
	const char *name = NULL;

	if (GMIME_IS_PART(o)) {
		name = g_mime_part_get_filename(GMIME_PART(o));
	}
	if (name == NULL) {
		name = g_mime_content_type_get_parameter(g_mime_object_get_content_type(o), "name");
	}
	return name;
}

/* Which S/MIME signed form an entity is (RFC 8551 §3.2, §3.5.3, §3.9), by media type. */
static enum p11s_mime_kind entity_kind(GMimeObject *o)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	const char *p;

	if (ct == NULL) {
		return P11S_MIME_NOT_SIGNED;
	}
	if (g_mime_content_type_is_type(ct, "multipart", "signed")) {
		p = g_mime_content_type_get_parameter(ct, "protocol");
		if (p != NULL && (strcasecmp(p, "application/pkcs7-signature") == 0 ||
		                     strcasecmp(p, "application/x-pkcs7-signature") == 0)) {
			return P11S_MIME_MULTIPART_SIGNED;
		}
		return P11S_MIME_NOT_SIGNED;
	}
	if (g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
	    g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime")) {
		p = g_mime_content_type_get_parameter(ct, "smime-type");
		if (p != NULL) {
			return strcasecmp(p, "signed-data") == 0 ? P11S_MIME_OPAQUE : P11S_MIME_NOT_SIGNED;
		}
		/* No smime-type: the CMS content type decides (checked by the caller). */
		return ends_with_ci(entity_filename(o), ".p7c") ? P11S_MIME_NOT_SIGNED : P11S_MIME_OPAQUE;
	}
	if (g_mime_content_type_is_type(ct, "application", "octet-stream") &&
	    ends_with_ci(entity_filename(o), ".p7m")) {
		return P11S_MIME_OPAQUE;
	}
	return P11S_MIME_NOT_SIGNED;
}

static char *type_string(GMimeObject *o)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);
	char *s = NULL;

	if (asprintf(&s, "%s/%s", ct && g_mime_content_type_get_media_type(ct)
	                                ? g_mime_content_type_get_media_type(ct) : "text",
	        ct && g_mime_content_type_get_media_subtype(ct)
	            ? g_mime_content_type_get_media_subtype(ct) : "plain") < 0) {
		return NULL;
	}
	return s;
}

/* Depth-first search for a signed entity below the root; `*found` = "PATH (TYPE)". */
static void find_nested(GMimeObject *o, const char *path, char **found, int depth)
{
	if (*found != NULL || depth > 64) {
		return;
	}
	if (path[0] != '\0' && entity_kind(o) != P11S_MIME_NOT_SIGNED) {
		char *t = type_string(o);

		if (asprintf(found, "%s (%s)", path, t ? t : "?") < 0) {
			*found = NULL;
		}
		free(t);
		return;
	}
	if (GMIME_IS_MULTIPART(o)) {
		int n = g_mime_multipart_get_count(GMIME_MULTIPART(o));

		for (int i = 0; i < n; i++) {
			char sub[256];

			snprintf(sub, sizeof(sub), "%s%s%d", path, path[0] ? "." : "", i + 1);
			find_nested(g_mime_multipart_get_part(GMIME_MULTIPART(o), i), sub, found, depth + 1);
		}
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));

		if (m != NULL && g_mime_message_get_mime_part(m) != NULL) {
			char sub[256];

			snprintf(sub, sizeof(sub), "%s%s1", path, path[0] ? "." : "");
			find_nested(g_mime_message_get_mime_part(m), sub, found, depth + 1);
		}
	}
}

/* addr-specs of an address field value (RFC 5322 §3.4). */
static int parse_addresses(const char *value, char ***out, size_t *n, int *has_group)
{
	InternetAddressList *l = internet_address_list_parse(NULL, value);
	int count = l ? internet_address_list_length(l) : 0;
	char **v = NULL;
	size_t k = 0;
	int rc = P11S_OK;

	*out = NULL;
	*n = 0;
	if (l == NULL) {
		*has_group = 1; /* unparsable: treated like a group, never as a match */
		return P11S_OK;
	}
	if (count > 0 && (v = calloc((size_t)count, sizeof(*v))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < count; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			*has_group = 1;
			continue;
		}
		if ((v[k] = strdup(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)))) ==
		    NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		k++;
	}
	*out = v;
	*n = k;
	v = NULL;
out:
	p11s_x509__strv_free(v, k);
	g_object_unref(l);
	return rc;
}

/* One header field for the RFC 8550 check: the first From's mailboxes, the first Sender's. */
static int sender_field(p11s_x509_sender *s, const char *name, const char *value)
{
	int rc;

	if (strcasecmp(name, "From") == 0) {
		if (s->n_from_fields++ == 0 &&
		    (rc = parse_addresses(value, &s->from, &s->n_from, &s->from_has_group)) < 0) {
			return rc;
		}
	} else if (strcasecmp(name, "Sender") == 0 && s->n_sender_fields++ == 0) {
		char **v = NULL;
		size_t k = 0;
		int group = 0;

		if ((rc = parse_addresses(value, &v, &k, &group)) < 0) {
			return rc;
		}
		if (k == 1 && !group) {
			s->sender = v[0];
			v[0] = NULL;
		}
		p11s_x509__strv_free(v, k);
	}
	return P11S_OK;
}

int p11s_mime__sender_of(const p11s_mime_fields *f, p11s_x509_sender *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < f->n; i++) {
		if ((rc = sender_field(s, f->name[i], f->value[i])) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

static int read_sender(GMimeMessage *msg, p11s_x509_sender *s, char **date)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	int n = hl ? g_mime_header_list_get_count(hl) : 0, rc;

	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *name = g_mime_header_get_name(h);
		const char *value = g_mime_header_get_raw_value(h);

		if (strcasecmp(name, "Date") == 0) {
			/* RFC 5322 §3.6: one Date field; the first one is compared (docs/verify.md). */
			if (date != NULL && *date == NULL) {
				if ((*date = strdup(value ? value : "")) == NULL) {
					return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				}
				p11s_mime__field_trim(*date);
			}
		} else if ((rc = sender_field(s, name, value ? value : "")) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

/*
 * RFC 2045 §6.8: a base64 body holds only the alphabet, "=" padding at the end and line
 * breaks. GMime's decoder skips anything else silently; a damaged p7s must be an error.
 */
enum { B64_BAD = 0, B64_SKIP, B64_PAD, B64_ALPHABET };

/* The class of each octet in a base64 body (a table: an opaque body can be a GiB). */
static unsigned char b64_class[256];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_init(void)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (const char *p = alphabet; *p != '\0'; p++) {
		b64_class[(unsigned char)*p] = B64_ALPHABET;
	}
	b64_class['\r'] = b64_class['\n'] = b64_class[' '] = b64_class['\t'] = B64_SKIP;
	b64_class['='] = B64_PAD;
}

/* Counts carried from one piece of a base64 body to the next. */
typedef struct b64_state {
	size_t sig, pad; /* alphabet characters, "=" seen */
} b64_state;

/* Check `n` octets of a base64 body: only the alphabet, "=" at the end, line breaks. */
static int b64_scan(b64_state *st, const char *p, ssize_t n)
{
	for (ssize_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		switch (b64_class[c]) {
		case B64_SKIP:
			continue;
		case B64_PAD:
			st->pad++;
			continue;
		case B64_ALPHABET:
			if (st->pad == 0) {
				st->sig++;
				continue;
			}
			break;
		default:
			break;
		}
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "bad base64 in the S/MIME part (byte 0x%02x)", c);
	}
	return P11S_OK;
}

/* The body's end: whole groups of four, at most two "=". */
static int b64_end(const b64_state *st)
{
	if (st->pad > 2 || (st->sig + st->pad) % 4 != 0) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "bad base64 in the S/MIME part: %zu characters, not a multiple of 4 (truncated?)",
		    st->sig + st->pad);
	}
	return P11S_OK;
}

static int check_base64(GMimePart *part)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part);
	GMimeStream *s = w ? g_mime_data_wrapper_get_stream(w) : NULL;
	/* 64 KiB reads: an opaque body holds the whole signed content (GMime seeks per read). */
	char *b = NULL;
	ssize_t n;
	b64_state st = { 0, 0 };
	int rc = P11S_OK;

	if (s == NULL || g_mime_part_get_content_encoding(part) != GMIME_CONTENT_ENCODING_BASE64) {
		return P11S_OK;
	}
	if (g_mime_stream_reset(s) < 0) {
		return p11s_error__set(P11S_ERR_IO, "cannot read the S/MIME part");
	}
	pthread_once(&b64_once, b64_init);
	if ((b = malloc(65536)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	while ((n = g_mime_stream_read(s, b, 65536)) > 0) {
		if ((rc = b64_scan(&st, b, n)) < 0) {
			goto out;
		}
	}
	rc = b64_end(&st);
out:
	g_mime_stream_reset(s);
	free(b);
	return rc;
}

/* Decode the content of a leaf entity (transfer encoding undone) into memory. */
static int decode_part(GMimeObject *o, unsigned char **out, size_t *len)
{
	GMimeDataWrapper *w;
	GMimeStream *ms = NULL;
	GByteArray *ba;
	int rc = P11S_OK;

	*out = NULL;
	*len = 0;
	if (!GMIME_IS_PART(o) || (w = g_mime_part_get_content(GMIME_PART(o))) == NULL) {
		return p11s_error__set(P11S_ERR_MALFORMED, "the S/MIME part has no content");
	}
	if ((rc = check_base64(GMIME_PART(o))) < 0) {
		return rc;
	}
	if ((ms = g_mime_stream_mem_new()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (g_mime_data_wrapper_write_to_stream(w, ms) < 0) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "cannot decode the S/MIME part");
		goto out;
	}
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(ms));
	if (ba == NULL || ba->len == 0) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the S/MIME part is empty");
		goto out;
	}
	if (ba->len > MAX_P7S_SIZE) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the S/MIME part is too large");
		goto out;
	}
	if ((*out = malloc(ba->len)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(*out, ba->data, ba->len);
	*len = ba->len;
out:
	g_object_unref(ms);
	return rc;
}

/*
 * A base64 body in one pass: checked as check_base64() does, decoded and written to `f` in
 * 64 KiB steps (GMime's data wrapper reads and writes 4 KiB at a time, with a seek per read;
 * an opaque body can be a GiB). `s` is the encoded content stream.
 */
static int decode_base64_file(GMimeStream *s, FILE *f)
{
	enum { CHUNK = 65536 };
	GMimeEncoding dec;
	char *in = NULL, *out = NULL;
	b64_state st = { 0, 0 };
	size_t n_out;
	ssize_t n;
	int rc = P11S_OK;

	pthread_once(&b64_once, b64_init);
	if ((in = malloc(CHUNK)) == NULL || (out = malloc(CHUNK + 16)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (g_mime_stream_reset(s) < 0) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot read the S/MIME part");
		goto out;
	}
	g_mime_encoding_init_decode(&dec, GMIME_CONTENT_ENCODING_BASE64);
	while ((n = g_mime_stream_read(s, in, CHUNK)) > 0) {
		if ((rc = b64_scan(&st, in, n)) < 0) {
			goto out;
		}
		/* At most 3/4 of the input comes out (g_mime_encoding_outlen() bounds it). */
		n_out = g_mime_encoding_step(&dec, in, (size_t)n, out);
		if (n_out > 0 && fwrite(out, 1, n_out, f) != n_out) {
			rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
			goto out;
		}
	}
	/* A bounded GMime stream answers -1 at its end: an error only before the end. */
	if (n < 0 && !g_mime_stream_eos(s)) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot read the S/MIME part");
		goto out;
	}
	if ((rc = b64_end(&st)) < 0) {
		goto out;
	}
	n_out = g_mime_encoding_flush(&dec, in, 0, out);
	if ((n_out > 0 && fwrite(out, 1, n_out, f) != n_out) || fflush(f) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
	}
out:
	g_mime_stream_reset(s);
	free(in);
	free(out);
	return rc;
}

/*
 * Decode the content of a leaf entity into an unlinked scratch file (tmpfile(3)), streaming:
 * an opaque signed-data body carries the whole signed content, so it is not bounded like a
 * p7s (the CMS reader bounds everything but the content: src/cms/verify.c).
 */
static int decode_part_file(GMimeObject *o, FILE **out)
{
	GMimeDataWrapper *w;
	GMimeStream *fs = NULL, *raw;
	FILE *f = NULL;
	int rc = P11S_OK, fd;
	off_t size;

	*out = NULL;
	if (!GMIME_IS_PART(o) || (w = g_mime_part_get_content(GMIME_PART(o))) == NULL ||
	    (raw = g_mime_data_wrapper_get_stream(w)) == NULL) {
		return p11s_error__set(P11S_ERR_MALFORMED, "the S/MIME part has no content");
	}
	if ((f = tmpfile()) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
	}
	if (g_mime_part_get_content_encoding(GMIME_PART(o)) == GMIME_CONTENT_ENCODING_BASE64) {
		if ((rc = decode_base64_file(raw, f)) < 0) {
			goto out;
		}
	} else {
		/*
		 * Other encodings (binary, quoted-printable, ...) through GMime's decoder, written
		 * to a descriptor sharing the file offset with `f`; no g_mime_stream_flush(): on an
		 * fs stream it is an fsync(2), and writes are not buffered there anyway.
		 */
		if ((fd = dup(fileno(f))) < 0) {
			rc = p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
			    strerror(errno));
			goto out;
		}
		fs = g_mime_stream_fs_new(fd); /* owns fd */
		if (g_mime_data_wrapper_write_to_stream(w, fs) < 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "cannot decode the S/MIME part");
			goto out;
		}
	}
	if ((size = lseek(fileno(f), 0, SEEK_END)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		goto out;
	}
	if (size == 0) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the S/MIME part is empty");
		goto out;
	}
	*out = f;
	f = NULL;
out:
	if (fs != NULL) {
		g_object_unref(fs);
	}
	if (f != NULL) {
		fclose(f);
	}
	return rc;
}

/* Part 2 of multipart/signed, from the raw byte range our scanner found. */
static int read_p7s(FILE *f, const p11s_mime_parts *parts, p11s_mime_signed *m)
{
	off_t size = parts->part2_end - parts->part2_start;
	unsigned char *raw = NULL;
	GMimeStream *s = NULL;
	GMimeParser *parser = NULL;
	GMimeObject *part = NULL;
	GMimeContentType *ct;
	int rc = P11S_OK;

	if (size <= 0 || size > MAX_P7S_SIZE) {
		return p11s_error__set(P11S_ERR_MALFORMED, "multipart/signed: signature part is %s",
		    size <= 0 ? "empty" : "too large");
	}
	if ((raw = malloc((size_t)size)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (fseeko(f, parts->part2_start, SEEK_SET) != 0 || fread(raw, 1, (size_t)size, f) != (size_t)size) {
		rc = p11s_error__set(P11S_ERR_IO, "reading the signature part: %s", strerror(errno));
		goto out;
	}
	s = g_mime_stream_mem_new_with_buffer((const char *)raw, (size_t)size);
	parser = g_mime_parser_new_with_stream(s);
	if ((part = g_mime_parser_construct_part(parser, NULL)) == NULL) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "multipart/signed: cannot parse the signature part");
		goto out;
	}
	ct = g_mime_object_get_content_type(part);
	if (ct == NULL || !(g_mime_content_type_is_type(ct, "application", "pkcs7-signature") ||
	                      g_mime_content_type_is_type(ct, "application", "x-pkcs7-signature") ||
	                      (g_mime_content_type_is_type(ct, "application", "octet-stream") &&
	                          ends_with_ci(entity_filename(part), ".p7s")))) {
		char *t = type_string(part);

		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "multipart/signed: second part is %s, not application/pkcs7-signature",
		    t ? t : "?");
		free(t);
		goto out;
	}
	rc = decode_part(part, &m->der, &m->der_len);
out:
	if (part != NULL) {
		g_object_unref(part);
	}
	if (parser != NULL) {
		g_object_unref(parser);
	}
	if (s != NULL) {
		g_object_unref(s);
	}
	free(raw);
	return rc;
}

void p11s_mime__signed_free(p11s_mime_signed *m)
{
	if (m == NULL) {
		return;
	}
	free(m->not_signed_why);
	free(m->nested);
	free(m->micalg);
	free(m->der);
	if (m->body != NULL) {
		fclose(m->body);
	}
	p11s_x509__strv_free(m->sender.from, m->sender.n_from);
	free(m->sender.sender);
	free(m->date);
	free(m);
}

/*
 * GMime's parse of the header section [0, body) of `in` only, from memory. `*msg` is NULL
 * when GMime makes no message of it (the full parse then decides).
 */
static int parse_header_only(FILE *in, off_t body, GMimeStream **stream, GMimeParser **parser,
    GMimeMessage **msg)
{
	char *hdr;

	if ((hdr = malloc((size_t)body + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (fseeko(in, 0, SEEK_SET) != 0 || fread(hdr, 1, (size_t)body, in) != (size_t)body) {
		free(hdr);
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
	*stream = g_mime_stream_mem_new_with_buffer(hdr, (size_t)body); /* copies */
	free(hdr);
	*parser = g_mime_parser_new_with_stream(*stream);
	*msg = g_mime_parser_construct_message(*parser, NULL);
	return P11S_OK;
}

int p11s_mime__read_signed(p11s_mime_signed **out, FILE *in)
{
	return p11s_mime__read_signed_ex(out, in, 0);
}

int p11s_mime__read_signed_ex(p11s_mime_signed **out, FILE *in, unsigned int flags)
{
	return p11s_mime__read_signed_tee(out, in, flags, NULL);
}

/* The delimiter scan of read_signed, with part 1 given to `tee` when it asks for it. */
static int scan_signed(FILE *in, off_t body, const char *boundary, p11s_mime_signed *m,
    const p11s_mime_tee *tee)
{
	struct stat st;
	int rc, want = 0;

	if (tee != NULL) {
		off_t size = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;

		if ((want = tee->begin(m->micalg, size, tee->payload)) < 0) {
			return want;
		}
	}
	rc = p11s_mime__scan_multipart_tee(in, body, boundary, &m->parts, want ? tee->feed : NULL,
	    want ? tee->payload : NULL);
	m->teed = rc == P11S_OK && want;
	return rc;
}

int p11s_mime__read_signed_tee(p11s_mime_signed **out, FILE *in, unsigned int flags,
    const p11s_mime_tee *tee)
{
	p11s_mime_signed *m = NULL;
	GMimeStream *stream = NULL;
	GMimeParser *parser = NULL;
	GMimeMessage *msg = NULL;
	GMimeObject *root;
	GMimeHeaderList *hl;
	char *boundary = NULL;
	off_t body;
	int rc = P11S_OK, fd = -1;

	*out = NULL;
	if ((rc = p11s_mime__gmime()) < 0) {
		return rc;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	/* A message has a header block ended by an empty line (RFC 5322 §2.1). */
	if ((rc = p11s_mime__header_end(in, 0, &body)) < 0) {
		if (rc == P11S_ERR_MALFORMED) {
			p11s_error__set(P11S_ERR_MALFORMED, "not a MIME message: no header block");
		}
		goto out;
	}
	/*
	 * The header section is parsed in memory by GMime: bound it as sign and decrypt do
	 * (docs/security.md, "Limits"); a 10 MB header line is hostile, not mail.
	 */
	if (body > (off_t)P11S_MIME_HEADER_MAX) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "header section larger than %u bytes",
		    (unsigned)P11S_MIME_HEADER_MAX);
		goto out;
	}
	/*
	 * The header section alone first: for multipart/signed it is all GMime has to read (the
	 * parts are found by our own scanner below), so a 100 MiB body is not parsed twice. A
	 * full parse was a third of verifying such a message (docs/performance.md).
	 */
	if ((rc = parse_header_only(in, body, &stream, &parser, &msg)) < 0) {
		goto out;
	}
	if (msg == NULL || (root = g_mime_message_get_mime_part(msg)) == NULL ||
	    entity_kind(root) != P11S_MIME_MULTIPART_SIGNED) {
		if (msg != NULL) {
			g_object_unref(msg);
			msg = NULL;
		}
		g_object_unref(parser);
		parser = NULL;
		g_object_unref(stream);
		stream = NULL;
		/* GMime reads its own descriptor from offset 0; our FILE re-seeks before each use. */
		if ((fd = dup(fileno(in))) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
			rc = p11s_error__set(P11S_ERR_IO, "cannot read the message: %s", strerror(errno));
			goto out;
		}
		stream = g_mime_stream_fs_new(fd); /* owns fd */
		fd = -1;
		parser = g_mime_parser_new_with_stream(stream);
		/* Keep bodies in the file, not in memory (streaming; DESIGN.md decision 4). */
		g_mime_parser_set_persist_stream(parser, TRUE);
		if ((msg = g_mime_parser_construct_message(parser, NULL)) == NULL ||
		    (root = g_mime_message_get_mime_part(msg)) == NULL) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "not a MIME message");
			goto out;
		}
	}
	/*
	 * GMime keeps a message's Content-* fields on its root part, not in the message's list: a
	 * MIME entity without MIME-Version (what `openssl cms -decrypt` gives of an encrypted
	 * signed message) has its Content-Type there.
	 */
	hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	if (hl == NULL || (!g_mime_header_list_contains(hl, "MIME-Version") &&
	                      !g_mime_header_list_contains(hl, "Content-Type") &&
	                      g_mime_object_get_header(root, "Content-Type") == NULL)) {
		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "not a MIME message: neither MIME-Version nor Content-Type");
		goto out;
	}
	if ((rc = read_sender(msg, &m->sender, &m->date)) < 0) {
		goto out;
	}
	m->kind = entity_kind(root);
	if (m->kind == P11S_MIME_NOT_SIGNED) {
		/* STANDARDS.md §12 M1-M4: name a signed part inside, but never call it signed. */
		m->not_signed_why = type_string(root);
		find_nested(root, "", &m->nested, 0);
	} else if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		GMimeContentType *ct = g_mime_object_get_content_type(root);
		const char *b = g_mime_content_type_get_parameter(ct, "boundary");
		const char *mic = g_mime_content_type_get_parameter(ct, "micalg");

		if (b == NULL || *b == '\0') {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "multipart/signed without a boundary parameter");
			goto out;
		}
		if ((boundary = strdup(b)) == NULL || (mic != NULL && (m->micalg = strdup(mic)) == NULL)) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	} else {
		/* Opaque: RFC 8551 §3.2; decoded to a scratch file when streaming (docs/verify.md). */
		rc = (flags & P11S_MIME_READ_STREAM) ? decode_part_file(root, &m->body)
		                                     : decode_part(root, &m->der, &m->der_len);
		if (rc < 0) {
			goto out;
		}
	}
	/* Done with GMime's descriptor before our FILE reads the same file again. */
	g_object_unref(msg);
	msg = NULL;
	g_object_unref(parser);
	parser = NULL;
	g_object_unref(stream);
	stream = NULL;
	if (m->kind == P11S_MIME_MULTIPART_SIGNED) {
		if ((rc = scan_signed(in, body, boundary, m, tee)) < 0 ||
		    (rc = read_p7s(in, &m->parts, m)) < 0) {
			goto out;
		}
	}
	*out = m;
	m = NULL;
out:
	if (msg != NULL) {
		g_object_unref(msg);
	}
	if (parser != NULL) {
		g_object_unref(parser);
	}
	if (stream != NULL) {
		g_object_unref(stream);
	}
	if (fd >= 0) {
		close(fd);
	}
	free(boundary);
	p11s_mime__signed_free(m);
	return rc;
}

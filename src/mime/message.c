/*
 * Preparing an RFC 5322 message for S/MIME signing (RFC 8551 §3.1, §3.2, §3.5.3):
 *
 * - the header section is read with our own strict scanner: non-Content-* fields stay on the
 *   outer message, raw and in order; Content-* fields move into the signed entity;
 *   MIME-Version is replaced by our own;
 * - a 7-bit body is copied byte for byte, only bare LF becoming CRLF (RFC 8551 §3.1.1): the
 *   signed bytes are the sender's bytes (DESIGN.md decision 5);
 * - a body with 8-bit or binary data is parsed with GMime on a persistent, seekable stream
 *   (content stays on disk) and every 8bit/binary leaf gets quoted-printable (text) or base64
 *   (anything else) before signing (RFC 8551 §3.1.2-3.1.3: part 1 of multipart/signed can
 *   never be re-encoded afterwards, RFC 1847 §5);
 * - the canonical entity goes to an unlinked temporary file, so memory does not grow with the
 *   message.
 */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <openssl/rand.h>

#include "core/error_int.h"
#include "mime/enveloped.h"
#include "mime/gmime_lazy.h"
#include "mime/mime.h"

struct p11s_mime_msg {
	char *outer;          /* kept header fields, CRLF line ends */
	size_t outer_len;
	p11s_mime_path path;
	long long entity_size;
	/*
	 * P11S_MIME_RAW: the entity is `head` (its Content-* fields and the blank line) followed
	 * by the body of `src` from `body_off`, bare LF made CRLF on the fly. Nothing is copied:
	 * the body is read once to scan and digest it and once more to write it out; `st` (when
	 * `st_ok`) and the length catch an input that changed in between.
	 */
	char *head;
	size_t head_len;
	FILE *src;            /* borrowed: the caller's input */
	long long body_off;
	struct stat st;
	int st_ok;
	/* P11S_MIME_REENCODED: the whole entity in an unlinked temporary file. */
	FILE *entity;
	const char *hp;       /* RFC 9788 header protection: "clear", "cipher", or NULL */
	/*
	 * p11s_mime__prepare_signed(): the outer fields, the multipart/signed head and part 1
	 * were written to the caller's file while they were hashed; write_signed() adds the rest.
	 */
	int written;
	char boundary[64];
};

/* A growing byte buffer for the header section (bounded by P11S_MIME_HEADER_MAX). */
typedef struct dbuf {
	char *p;
	size_t len, cap;
} dbuf;

static int dbuf_add(dbuf *b, const void *data, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;

		while (cap < b->len + len + 1) {
			cap *= 2;
		}
		if ((np = realloc(b->p, cap)) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return P11S_OK;
}

static int dbuf_str(dbuf *b, const char *s)
{
	return dbuf_add(b, s, strlen(s));
}

int p11s_mime__init(void)
{
	return p11s_mime__gmime();
}

/* ---------------------------------------------------------------- header section -------- */

typedef enum field_kind { FIELD_NONE, FIELD_OUTER, FIELD_CONTENT, FIELD_DROP } field_kind;

/*
 * Read one line (up to and including LF) into `line`. `*len` excludes the line end; `*eol` is
 * 0 at end of file without LF. A line longer than P11S_MIME_LINE_MAX octets is an error
 * (RFC 5322 §2.1.1 "MUST be no more than 998 characters"), so is a NUL or a bare CR.
 */
static int read_header_line(FILE *in, char *line, size_t *len, int *eol, unsigned long lineno)
{
	size_t n = 0;
	int c, prev = -1;

	*eol = 0;
	while ((c = getc(in)) != EOF) {
		if (c == '\n') {
			*eol = 1;
			break;
		}
		if (c == '\0') {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: NUL byte in header line %lu", lineno);
		}
		if (prev == '\r') {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: bare CR in header line %lu", lineno);
		}
		if (n >= P11S_MIME_LINE_MAX + 1) {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: header line %lu is longer than %d octets "
			    "(RFC 5322 §2.1.1)", lineno, P11S_MIME_LINE_MAX);
		}
		line[n++] = (char)c;
		prev = c;
	}
	if (ferror(in)) {
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
	if (n > 0 && line[n - 1] == '\r') {
		if (!*eol) {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: bare CR in header line %lu", lineno);
		}
		n--;
	}
	if (n > P11S_MIME_LINE_MAX) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "not an RFC 5322 message: header line %lu is longer than %d octets "
		    "(RFC 5322 §2.1.1)", lineno, P11S_MIME_LINE_MAX);
	}
	*len = n;
	return P11S_OK;
}

/*
 * The length of the field name if `line` starts a header field (RFC 5322 §3.6.8: printable
 * US-ASCII except ":", then ":"; obs-optional allows blanks before the colon), else 0.
 */
static size_t field_name_len(const char *line, size_t len)
{
	size_t i = 0, name;

	while (i < len && (unsigned char)line[i] >= 33 && (unsigned char)line[i] <= 126 &&
	    line[i] != ':') {
		i++;
	}
	name = i;
	if (name == 0) {
		return 0;
	}
	while (i < len && (line[i] == ' ' || line[i] == '\t')) {
		i++;
	}
	return (i < len && line[i] == ':') ? name : 0;
}

/*
 * Split the header section. On return the stream is at the first body byte. `has_ctype` is
 * set when a Content-Type field moved into the entity.
 */
static int split_headers(FILE *in, dbuf *outer, dbuf *content, int *has_ctype)
{
	char line[P11S_MIME_LINE_MAX + 2];
	field_kind kind = FIELD_NONE;
	unsigned long lineno = 0;
	size_t len = 0, total = 0, nfields = 0;
	int eol, rc;

	*has_ctype = 0;
	for (;;) {
		size_t nl;

		lineno++;
		if ((rc = read_header_line(in, line, &len, &eol, lineno)) < 0) {
			return rc;
		}
		if (len == 0 && !eol) {
			if (lineno == 1) {
				return p11s_error__set(P11S_ERR_MALFORMED,
				    "not an RFC 5322 message: the input is empty");
			}
			/* RFC 5322 §3.5: the body is optional; the message ends after its fields. */
			break;
		}
		if (len == 0) {
			break; /* the empty line between header and body */
		}
		total += len + 2;
		if (total > P11S_MIME_HEADER_MAX) {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: header section larger than %u octets",
			    P11S_MIME_HEADER_MAX);
		}
		if (line[0] == ' ' || line[0] == '\t') {
			/* RFC 5322 §2.2.3: folded continuation of the previous field. */
			if (kind == FIELD_NONE) {
				return p11s_error__set(P11S_ERR_MALFORMED,
				    "not an RFC 5322 message: line 1 is a continuation line");
			}
		} else if ((nl = field_name_len(line, len)) > 0) {
			nfields++;
			if (nl == 12 && strncasecmp(line, "MIME-Version", 12) == 0) {
				kind = FIELD_DROP; /* replaced by our own on the outer message */
			} else if (nl >= 8 && strncasecmp(line, "Content-", 8) == 0) {
				kind = FIELD_CONTENT;
				if (nl == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
					*has_ctype = 1;
				}
			} else {
				kind = FIELD_OUTER;
			}
		} else {
			return p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: line %lu of the header section is not a "
			    "header field%s", lineno,
			    (lineno == 1 && len >= 5 && memcmp(line, "From ", 5) == 0)
			        ? " (an mbox \"From \" line?)" : "");
		}
		if (kind == FIELD_OUTER || kind == FIELD_CONTENT) {
			dbuf *d = kind == FIELD_OUTER ? outer : content;

			if ((rc = dbuf_add(d, line, len)) < 0 || (rc = dbuf_str(d, "\r\n")) < 0) {
				return rc;
			}
		}
		if (!eol) {
			break;
		}
	}
	if (nfields == 0) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "not an RFC 5322 message: no header fields before the body");
	}
	return P11S_OK;
}

/* ---------------------------------------------------------------- body scan ------------- */

/* What the scan of the entity (content fields, then body) found. */
typedef struct scan {
	int has8bit, hasnul, longline, cte8;
	int utf8_ok, utf8_need;      /* UTF-8 validity and pending continuation bytes */
	unsigned char utf8_lo, utf8_hi; /* allowed range of the next continuation byte */
	size_t linelen;
	char prefix[40];             /* lower-cased start of the current line */
	size_t plen;
	int prev;
} scan;

static void scan_init(scan *s)
{
	memset(s, 0, sizeof(*s));
	s->utf8_ok = 1;
	s->prev = -1;
}

/* A line "Content-Transfer-Encoding: 8bit|binary", at any depth of the MIME tree. `prefix`
 * is the lower-cased start of the line. */
static int is_cte8_line(const char *prefix, size_t plen)
{
	static const char f[] = "content-transfer-encoding:";
	size_t i = sizeof(f) - 1;

	if (plen < i || memcmp(prefix, f, i) != 0) {
		return 0;
	}
	while (i < plen && (prefix[i] == ' ' || prefix[i] == '\t')) {
		i++;
	}
	return (plen - i >= 4 && memcmp(prefix + i, "8bit", 4) == 0) ||
	    (plen - i >= 6 && memcmp(prefix + i, "binary", 6) == 0);
}

static int prefix_is_cte8(const scan *s)
{
	return is_cte8_line(s->prefix, s->plen);
}

static void scan_utf8(scan *s, unsigned char c)
{
	if (s->utf8_need > 0) {
		if (c < s->utf8_lo || c > s->utf8_hi) {
			s->utf8_ok = 0;
			s->utf8_need = 0;
			return;
		}
		s->utf8_lo = 0x80;
		s->utf8_hi = 0xbf;
		s->utf8_need--;
		return;
	}
	if (c < 0x80) {
		return;
	}
	/* RFC 3629 §4: well-formed sequences only (no overlongs, surrogates, > U+10FFFF). */
	s->utf8_lo = 0x80;
	s->utf8_hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		s->utf8_need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		s->utf8_need = 2;
		if (c == 0xe0) {
			s->utf8_lo = 0xa0;
		} else if (c == 0xed) {
			s->utf8_hi = 0x9f;
		}
	} else if (c >= 0xf0 && c <= 0xf4) {
		s->utf8_need = 3;
		if (c == 0xf0) {
			s->utf8_lo = 0x90;
		} else if (c == 0xf4) {
			s->utf8_hi = 0x8f;
		}
	} else {
		s->utf8_ok = 0;
	}
}

static void scan_bytes(scan *s, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c == '\n') {
			size_t l = s->linelen - (s->prev == '\r' ? 1 : 0);

			if (l > P11S_MIME_LINE_MAX) {
				s->longline = 1;
			}
			if (prefix_is_cte8(s)) {
				s->cte8 = 1;
			}
			s->linelen = 0;
			s->plen = 0;
		} else {
			s->linelen++;
			if (s->plen < sizeof(s->prefix)) {
				s->prefix[s->plen++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			}
		}
		if (c == 0) {
			s->hasnul = 1;
		} else if (c >= 0x80) {
			s->has8bit = 1;
		}
		scan_utf8(s, c);
		s->prev = c;
	}
}

static void scan_end(scan *s)
{
	if (s->linelen > P11S_MIME_LINE_MAX) {
		s->longline = 1;
	}
	if (prefix_is_cte8(s)) {
		s->cte8 = 1;
	}
	if (s->utf8_need > 0) {
		s->utf8_ok = 0;
	}
}

/* ---------------------------------------------------------------- raw (7-bit) path ------ */

/*
 * Streaming canonicaliser of a 7-bit body (RFC 8551 §3.1.1: bare LF becomes CRLF) that also
 * notes what rules the raw path out: an 8-bit octet, a NUL, a line longer than 998 octets
 * (RFC 5322 §2.1.1) or a nested "Content-Transfer-Encoding: 8bit|binary" line. Lines are
 * found with memchr() and the octet checks run a word at a time, so this runs at memory
 * speed: the byte-wise scan (scan_bytes, kept for the rare 8-bit message) was 55% of the
 * time of signing a 100 MiB message (docs/performance.md).
 */
typedef struct canon {
	int prev;          /* the last octet, '\n' at the start */
	size_t linelen;    /* octets of the current line so far */
	char prefix[40];   /* lower-cased start of the current line, if it starts with 'c' */
	size_t plen;
	int want_prefix;   /* the current line starts with 'c' or 'C' */
	int bad;           /* the body cannot take the raw path */
	long long total;   /* canonical octets produced */
} canon;

static void canon_init(canon *c)
{
	memset(c, 0, sizeof(*c));
	c->prev = '\n';
}

/* Any octet with the high bit set, or a NUL. */
static int high_or_nul(const unsigned char *p, size_t n)
{
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		acc |= w;
	}
	for (; i < n; i++) {
		acc |= p[i];
	}
	return (acc & UINT64_C(0x8080808080808080)) != 0 || memchr(p, 0, n) != NULL;
}

/* Canonicalise `n` octets at `p` into `o` (room for 2n octets); returns the octets written. */
static size_t canon_run(canon *c, const unsigned char *p, size_t n, unsigned char *o)
{
	unsigned char *o0 = o;

	if (high_or_nul(p, n)) {
		c->bad = 1;
	}
	while (n > 0) {
		const unsigned char *nl = memchr(p, '\n', n);
		size_t seg = nl != NULL ? (size_t)(nl - p) : n;

		if (seg > 0) {
			if (c->linelen == 0) {
				c->want_prefix = (p[0] | 0x20) == 'c';
			}
			for (size_t i = 0; c->want_prefix && i < seg && c->plen < sizeof(c->prefix); i++) {
				unsigned char ch = p[i];

				c->prefix[c->plen++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
			}
			memcpy(o, p, seg);
			o += seg;
			c->linelen += seg;
			c->prev = p[seg - 1];
		}
		if (nl == NULL) {
			break;
		}
		if (c->linelen - (c->prev == '\r' ? 1 : 0) > P11S_MIME_LINE_MAX ||
		    (c->want_prefix && is_cte8_line(c->prefix, c->plen))) {
			c->bad = 1;
		}
		if (c->prev != '\r') {
			*o++ = '\r';
		}
		*o++ = '\n';
		c->prev = '\n';
		c->linelen = 0;
		c->plen = 0;
		c->want_prefix = 0;
		p = nl + 1;
		n -= seg + 1;
	}
	c->total += o - o0;
	return (size_t)(o - o0);
}

static void canon_end(canon *c)
{
	if (c->linelen > P11S_MIME_LINE_MAX || (c->want_prefix && is_cte8_line(c->prefix, c->plen))) {
		c->bad = 1;
	}
}

/*
 * Feed the raw-path entity to `sink`: m->head, then the canonical body read from m->src.
 * `*bad` is set (and the feed goes on) when the body turns out not to be raw-path material.
 */
static int raw_feed(p11s_mime_msg *m, p11s_mime_entity_sink sink, void *arg, int *bad)
{
	unsigned char ibuf[65536], obuf[2 * sizeof(ibuf)];
	canon c;
	size_t n;
	int rc;

	canon_init(&c);
	if (fseeko(m->src, m->body_off, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "the message input is not seekable");
	}
	if ((rc = sink(arg, m->head, m->head_len)) < 0) {
		return rc;
	}
	while ((n = fread(ibuf, 1, sizeof(ibuf), m->src)) > 0) {
		size_t o = canon_run(&c, ibuf, n, obuf);

		if ((rc = sink(arg, obuf, o)) < 0) {
			return rc;
		}
	}
	if (ferror(m->src)) {
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
	canon_end(&c);
	*bad = c.bad;
	m->entity_size = (long long)m->head_len + c.total;
	return P11S_OK;
}

/* ---------------------------------------------------------------- GMime path ------------ */

static int is_8bit_cte(const char *v)
{
	while (v != NULL && (*v == ' ' || *v == '\t')) {
		v++;
	}
	return v != NULL && (strncasecmp(v, "8bit", 4) == 0 || strncasecmp(v, "binary", 6) == 0);
}

/* A container whose children are all 7-bit now is itself 7bit (RFC 2045 §6.4). */
static void fix_container_cte(GMimeObject *obj)
{
	if (is_8bit_cte(g_mime_object_get_header(obj, "Content-Transfer-Encoding"))) {
		g_mime_object_set_header(obj, "Content-Transfer-Encoding", "7bit", NULL);
	}
}

/*
 * Give one leaf a 7-bit transfer encoding: decode its content and re-encode it into a
 * temporary file (quoted-printable for text, base64 otherwise). Quoted-printable also
 * protects trailing blanks (RFC 2045 §6.7 rule 3) and "From " at a line start ("=46rom ",
 * RFC 8551 §3.1.3), which transports mangle.
 */
static int reencode_leaf(GMimePart *part)
{
	GMimeContentType *ct = g_mime_object_get_content_type(GMIME_OBJECT(part));
	GMimeDataWrapper *content = g_mime_part_get_content(part), *w;
	GMimeContentEncoding enc = g_mime_part_get_content_encoding(part), best, target;
	GMimeStream *ts, *flt;
	GMimeFilter *f;
	FILE *tf;
	int text;

	if (content == NULL) {
		return P11S_OK;
	}
	if (enc != GMIME_CONTENT_ENCODING_DEFAULT && enc != GMIME_CONTENT_ENCODING_7BIT &&
	    enc != GMIME_CONTENT_ENCODING_8BIT && enc != GMIME_CONTENT_ENCODING_BINARY) {
		return P11S_OK; /* already quoted-printable, base64 or uuencode: 7-bit */
	}
	best = g_mime_part_get_best_content_encoding(part, GMIME_ENCODING_CONSTRAINT_7BIT);
	if (best == GMIME_CONTENT_ENCODING_7BIT || best == GMIME_CONTENT_ENCODING_DEFAULT) {
		if (enc == GMIME_CONTENT_ENCODING_8BIT || enc == GMIME_CONTENT_ENCODING_BINARY) {
			/* 7-bit data labelled 8bit: only the label changes. */
			g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_7BIT);
		}
		return P11S_OK;
	}
	text = ct != NULL && g_mime_content_type_is_type(ct, "text", "*");
	target = text ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE : GMIME_CONTENT_ENCODING_BASE64;

	if ((tf = tmpfile()) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
	}
	ts = g_mime_stream_file_new(tf); /* owns tf */
	flt = g_mime_stream_filter_new(ts);
	if (text) {
		/* Line breaks of text are CRLF on the wire, never "=0D" (RFC 2045 §6.7 rule 4). */
		f = g_mime_filter_dos2unix_new(FALSE);
		g_mime_stream_filter_add(GMIME_STREAM_FILTER(flt), f);
		g_object_unref(f);
	}
	f = g_mime_filter_basic_new(target, TRUE);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(flt), f);
	g_object_unref(f);
	if (text) {
		f = g_mime_filter_from_new(GMIME_FILTER_FROM_MODE_ARMOR);
		g_mime_stream_filter_add(GMIME_STREAM_FILTER(flt), f);
		g_object_unref(f);
	}
	if (g_mime_data_wrapper_write_to_stream(content, flt) < 0 || g_mime_stream_flush(flt) < 0) {
		g_object_unref(flt);
		g_object_unref(ts);
		return p11s_error__set(P11S_ERR_IO, "re-encoding a MIME part failed");
	}
	g_object_unref(flt);
	g_mime_stream_reset(ts);
	w = g_mime_data_wrapper_new_with_stream(ts, target);
	g_object_unref(ts);
	g_mime_part_set_content(part, w);
	g_object_unref(w);
	g_mime_part_set_content_encoding(part, target);
	return P11S_OK;
}

static int encode_tree(GMimeObject *obj, int depth)
{
	int rc;

	if (depth > 64) {
		return p11s_error__set(P11S_ERR_MALFORMED, "MIME structure nested deeper than 64");
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);

		for (int i = 0; i < g_mime_multipart_get_count(mp); i++) {
			if ((rc = encode_tree(g_mime_multipart_get_part(mp, i), depth + 1)) < 0) {
				return rc;
			}
		}
		fix_container_cte(obj);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *msg = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (msg != NULL && g_mime_message_get_mime_part(msg) != NULL) {
			GMimeObject *body = g_mime_message_get_mime_part(msg);

			if ((rc = encode_tree(body, depth + 1)) < 0) {
				return rc;
			}
		}
		fix_container_cte(obj);
	} else if (GMIME_IS_PART(obj)) {
		return reencode_leaf(GMIME_PART(obj));
	}
	return P11S_OK;
}

/*
 * Parse the entity (content fields from `hdr`, body from `in` at `body_off`) with GMime,
 * re-encode its 8-bit leaves and write it, CRLF-canonical, to `out`.
 */
static int write_reencoded(FILE *in, long long body_off, const dbuf *hdr, FILE *out)
{
	GMimeStream *mem = NULL, *body = NULL, *cat = NULL, *fs = NULL, *flt = NULL;
	GMimeParser *parser = NULL;
	GMimeObject *obj = NULL;
	GMimeFormatOptions *fo = NULL;
	GMimeFilter *f;
	int rc;

	if ((rc = p11s_mime__init()) < 0) {
		return rc;
	}
	mem = g_mime_stream_mem_new_with_buffer(hdr->p, hdr->len);
	body = g_mime_stream_file_new_with_bounds(in, body_off, -1);
	g_mime_stream_file_set_owner(GMIME_STREAM_FILE(body), FALSE);
	cat = g_mime_stream_cat_new();
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), mem);
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), body);
	parser = g_mime_parser_new_with_stream(cat);
	/* Keep content as references into the (seekable) input: nothing is loaded in memory. */
	g_mime_parser_set_persist_stream(parser, TRUE);
	if ((obj = g_mime_parser_construct_part(parser, NULL)) == NULL) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the MIME entity cannot be parsed");
		goto out;
	}
	if ((rc = encode_tree(obj, 0)) < 0) {
		goto out;
	}
	fo = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	fs = g_mime_stream_file_new(out);
	g_mime_stream_file_set_owner(GMIME_STREAM_FILE(fs), FALSE);
	flt = g_mime_stream_filter_new(fs);
	/* Whatever GMime copies raw (7-bit leaves, preambles) is made CRLF here too. */
	f = g_mime_filter_unix2dos_new(FALSE);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(flt), f);
	g_object_unref(f);
	if (g_mime_object_write_to_stream(obj, fo, flt) < 0 || g_mime_stream_flush(flt) < 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the signed entity failed");
		goto out;
	}
out:
	if (fo != NULL) {
		g_mime_format_options_free(fo);
	}
	if (flt != NULL) {
		g_object_unref(flt);
	}
	if (fs != NULL) {
		g_object_unref(fs);
	}
	if (obj != NULL) {
		g_object_unref(obj);
	}
	if (parser != NULL) {
		g_object_unref(parser);
	}
	if (cat != NULL) {
		g_object_unref(cat);
	}
	if (body != NULL) {
		g_object_unref(body);
	}
	if (mem != NULL) {
		g_object_unref(mem);
	}
	return rc;
}

/* ---------------------------------------------------------------- prepare --------------- */

static int null_sink(void *arg, const void *p, size_t n)
{
	(void)arg;
	(void)p;
	(void)n;
	return P11S_OK;
}

/*
 * The entity's header section: a Content-Type first when the message had none (RFC 2045
 * §5.2; the charset from the body scan `s`), the Content-* fields, the blank line.
 */
static int entity_head(p11s_mime_msg *m, int has_ctype, const dbuf *content, const dbuf *outer,
    const scan *s)
{
	dbuf hdr = { 0 };
	char *ct_hp = NULL, *fields = NULL;
	size_t ct_hp_len = 0, fields_len = 0;
	int rc;

	if (m->hp != NULL && strcmp(m->hp, "cipher") == 0) {
		/* obscure_for_encryption() made the whole header part already. */
		if ((content->len > 0 && (rc = dbuf_add(&hdr, content->p, content->len)) < 0) ||
		    (rc = dbuf_str(&hdr, "\r\n")) < 0) {
			goto out;
		}
		goto done;
	}
	if (!has_ctype) {
		const char *ct = !s->has8bit && !s->hasnul ? "text/plain; charset=us-ascii"
		    : s->utf8_ok && !s->hasnul             ? "text/plain; charset=utf-8"
		                                           : "text/plain; charset=unknown-8bit";

		if ((rc = dbuf_str(&hdr, "Content-Type: ")) < 0 || (rc = dbuf_str(&hdr, ct)) < 0 ||
		    (m->hp != NULL && ((rc = dbuf_str(&hdr, "; hp=\"")) < 0 ||
		                          (rc = dbuf_str(&hdr, m->hp)) < 0 || (rc = dbuf_str(&hdr, "\"")) < 0)) ||
		    (rc = dbuf_str(&hdr, "\r\n")) < 0) {
			goto out;
		}
	}
	/* RFC 9788 §2: hp on the payload's Content-Type, the header fields beside it. */
	if (m->hp != NULL &&
	    ((rc = p11s_mime__hp_ctype(content->p ? content->p : "", content->len, m->hp, &ct_hp,
	          &ct_hp_len)) < 0 ||
	        (rc = p11s_mime__hp_fields(outer->p ? outer->p : "", outer->len, &fields,
	             &fields_len)) < 0)) {
		goto out;
	}
	if ((m->hp != NULL ? (ct_hp_len > 0 && (rc = dbuf_add(&hdr, ct_hp, ct_hp_len)) < 0) ||
	                         (fields_len > 0 && (rc = dbuf_add(&hdr, fields, fields_len)) < 0)
	                   : (content->len > 0 && (rc = dbuf_add(&hdr, content->p, content->len)) < 0)) ||
	    (rc = dbuf_str(&hdr, "\r\n")) < 0) {
		goto out;
	}
done:
	free(m->head);
	m->head = hdr.p;
	m->head_len = hdr.len;
	hdr.p = NULL;
out:
	free(ct_hp);
	free(fields);
	free(hdr.p);
	return rc;
}

/* The outer fields and the payload's header part of a message that is encrypted next. */
static int obscure_for_encryption(dbuf *outer, dbuf *content, int has_ctype)
{
	p11s_mime_head h = { 0 };
	int rc;

	h.outer = outer->p;
	h.outer_len = outer->len;
	h.content = content->p;
	h.content_len = content->len;
	h.crlf = 1;
	h.content_type = has_ctype ? (char *)"" : NULL; /* only tested against NULL */
	if ((rc = p11s_mime__hp_encrypt_head(&h)) < 0) {
		return rc;
	}
	outer->p = h.outer;
	outer->len = outer->cap = h.outer_len;
	content->p = h.content;
	content->len = content->cap = h.content_len;
	return P11S_OK;
}

/* The input file is still the one scanned (a file changed between the two passes is caught). */
static int input_unchanged(const p11s_mime_msg *m)
{
	struct stat st;

	if (!m->st_ok) {
		return P11S_OK;
	}
	if (fstat(fileno(m->src), &st) != 0 || st.st_dev != m->st.st_dev ||
	    st.st_ino != m->st.st_ino || st.st_size != m->st.st_size ||
	    st.st_mtim.tv_sec != m->st.st_mtim.tv_sec || st.st_mtim.tv_nsec != m->st.st_mtim.tv_nsec) {
		return p11s_error__set(P11S_ERR_IO, "the message changed while it was being signed");
	}
	return P11S_OK;
}

/* The general path: GMime re-encodes the 8-bit leaves into a temporary file. */
static int prepare_reencoded(p11s_mime_msg *m, int has_ctype, const dbuf *content,
    const dbuf *outer, int hdr_cte8)
{
	unsigned char buf[65536];
	size_t n;
	scan s;
	int rc;

	/* The full byte-wise scan: the charset of a missing Content-Type needs UTF-8 validity. */
	if (fseeko(m->src, m->body_off, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "the message input is not seekable");
	}
	scan_init(&s);
	while ((n = fread(buf, 1, sizeof(buf), m->src)) > 0) {
		scan_bytes(&s, buf, n);
	}
	if (ferror(m->src)) {
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
	scan_end(&s);
	s.cte8 |= hdr_cte8;
	if ((rc = entity_head(m, has_ctype, content, outer, &s)) < 0) {
		return rc;
	}
	if ((m->entity = tmpfile()) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
	}
	m->path = P11S_MIME_REENCODED;
	dbuf hdr = { m->head, m->head_len, m->head_len };

	if ((rc = write_reencoded(m->src, m->body_off, &hdr, m->entity)) < 0) {
		return rc;
	}
	if (fflush(m->entity) != 0 || (m->entity_size = ftello(m->entity)) < 0) {
		return p11s_error__set(P11S_ERR_IO, "writing the signed entity: %s", strerror(errno));
	}
	return P11S_OK;
}

int p11s_mime__prepare(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink, void *arg)
{
	return p11s_mime__prepare_hp(out, in, sink, arg, NULL);
}

/* The sink of a one-pass preparation: part 1 into the output file, and to the caller's sink. */
typedef struct tee_sink {
	FILE *dst;
	p11s_mime_entity_sink sink;
	void *arg;
} tee_sink;

static int tee_feed(void *arg, const void *p, size_t n)
{
	tee_sink *t = arg;

	if (fwrite(p, 1, n, t->dst) != n) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	return t->sink(t->arg, p, n);
}

static int write_signed_head(const p11s_mime_msg *m, FILE *out, const char *micalg);
static int new_boundary(char *boundary);

int p11s_mime__prepare_hp(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink, void *arg,
    const char *hp)
{
	return p11s_mime__prepare_signed(out, in, sink, arg, hp, NULL, NULL);
}

int p11s_mime__prepare_signed(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink,
    void *arg, const char *hp, FILE *dst, const char *micalg)
{
	p11s_mime_msg *m = NULL;
	dbuf outer = { 0 }, content = { 0 };
	long long body_off;
	scan s;
	int rc, has_ctype, hdr_cte8, bad = 0;

	*out = NULL;
	if (fseeko(in, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "the message input is not seekable: %s",
		    strerror(errno));
	}
	if ((rc = split_headers(in, &outer, &content, &has_ctype)) < 0) {
		goto out;
	}
	/*
	 * Signed, then encrypted (wrap, RFC 9788 §2.1.1): the Cryptographic Payload is this
	 * entity, so it gets hp="cipher" and the HP-Outer fields, and the outer Subject "[...]".
	 */
	if (hp != NULL && strcmp(hp, "cipher") == 0 &&
	    (rc = obscure_for_encryption(&outer, &content, has_ctype)) < 0) {
		goto out;
	}
	if ((body_off = ftello(in)) < 0) {
		rc = p11s_error__set(P11S_ERR_IO, "the message input is not seekable");
		goto out;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	m->src = in;
	m->body_off = body_off;
	m->hp = hp;
	m->st_ok = fileno(in) >= 0 && fstat(fileno(in), &m->st) == 0 && S_ISREG(m->st.st_mode);

	/*
	 * Of the Content-* fields only a declared 8bit/binary encoding counts: 8-bit header text
	 * (RFC 6532) is not a body encoding that quoted-printable or base64 could fix.
	 */
	scan_init(&s);
	scan_bytes(&s, (const unsigned char *)content.p, content.len);
	scan_end(&s);
	hdr_cte8 = s.cte8;
	if (!hdr_cte8) {
		/*
		 * Most messages are 7-bit: one pass scans, canonicalises and feeds the sink. Should
		 * the body turn out to need re-encoding, the sink is told to start over.
		 */
		off_t dst_off = dst != NULL ? ftello(dst) : -1;
		tee_sink tee = { dst, sink ? sink : null_sink, arg };

		scan_init(&s);
		m->path = P11S_MIME_RAW;
		if ((rc = entity_head(m, has_ctype, &content, &outer, &s)) < 0) {
			goto out;
		}
		if (dst_off >= 0) {
			/* One pass: the signed message's head, then part 1 as it is hashed. */
			m->outer = outer.p;
			m->outer_len = outer.len;
			rc = new_boundary(m->boundary);
			if (rc >= 0) {
				rc = write_signed_head(m, dst, micalg);
			}
			m->outer = NULL;
			if (rc < 0 || (rc = raw_feed(m, tee_feed, &tee, &bad)) < 0) {
				goto out;
			}
			m->written = !bad;
		} else if ((rc = raw_feed(m, sink ? sink : null_sink, arg, &bad)) < 0) {
			goto out;
		}
		if (!bad) {
			goto done;
		}
		/* Not 7-bit after all: what was written goes, the re-encoded entity comes. */
		if (dst_off >= 0 && (fflush(dst) != 0 || ftruncate(fileno(dst), dst_off) != 0 ||
		                        fseeko(dst, dst_off, SEEK_SET) != 0)) {
			rc = p11s_error__set(P11S_ERR_IO, "rewinding the output: %s", strerror(errno));
			goto out;
		}
		if (sink != NULL && (rc = sink(arg, NULL, 0)) < 0) {
			goto out;
		}
	}
	if ((rc = prepare_reencoded(m, has_ctype, &content, &outer, hdr_cte8)) < 0 ||
	    (sink != NULL && (rc = p11s_mime__entity_write(m, sink, arg)) < 0)) {
		goto out;
	}
done:
	m->outer = outer.p;
	m->outer_len = outer.len;
	outer.p = NULL;
	*out = m;
	m = NULL;
out:
	p11s_mime__free(m);
	free(outer.p);
	free(content.p);
	return rc;
}

int p11s_mime__entity_write(p11s_mime_msg *m, p11s_mime_entity_sink sink, void *arg)
{
	unsigned char buf[65536];
	size_t n;
	int rc;

	if (m->path == P11S_MIME_RAW) {
		long long size = m->entity_size;
		int bad = 0;

		if ((rc = input_unchanged(m)) < 0 || (rc = raw_feed(m, sink, arg, &bad)) < 0) {
			return rc;
		}
		if (bad || m->entity_size != size) {
			m->entity_size = size;
			return p11s_error__set(P11S_ERR_IO, "the message changed while it was being signed");
		}
		return input_unchanged(m);
	}
	rewind(m->entity);
	while ((n = fread(buf, 1, sizeof(buf), m->entity)) > 0) {
		if ((rc = sink(arg, buf, n)) < 0) {
			return rc;
		}
	}
	if (ferror(m->entity)) {
		return p11s_error__set(P11S_ERR_IO, "reading the signed entity: %s", strerror(errno));
	}
	return P11S_OK;
}

long long p11s_mime__entity_size(const p11s_mime_msg *m)
{
	return m->entity_size;
}

p11s_mime_path p11s_mime__path(const p11s_mime_msg *m)
{
	return m->path;
}

void p11s_mime__free(p11s_mime_msg *m)
{
	if (m == NULL) {
		return;
	}
	if (m->entity != NULL) {
		fclose(m->entity);
	}
	free(m->head);
	free(m->outer);
	free(m);
}

/* ---------------------------------------------------------------- writers --------------- */

typedef struct b64w {
	FILE *out;
	unsigned char rem[3];
	int nrem;
	int col;
	int err;
	size_t olen;
	char obuf[8192];  /* one fwrite per 8 KiB, not per group */
} b64w;

static const char b64tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_flush(b64w *w)
{
	if (w->olen > 0 && fwrite(w->obuf, 1, w->olen, w->out) != w->olen) {
		w->err = 1;
	}
	w->olen = 0;
}

static void b64_group(b64w *w, const unsigned char *g, int n)
{
	char *o;
	unsigned int v = (unsigned int)g[0] << 16 | (n > 1 ? (unsigned int)g[1] << 8 : 0) |
	    (n > 2 ? g[2] : 0);

	if (w->olen + 6 > sizeof(w->obuf)) {
		b64_flush(w);
	}
	o = w->obuf + w->olen;
	o[0] = b64tab[(v >> 18) & 63];
	o[1] = b64tab[(v >> 12) & 63];
	o[2] = n > 1 ? b64tab[(v >> 6) & 63] : '=';
	o[3] = n > 2 ? b64tab[v & 63] : '=';
	w->olen += 4;
	w->col += 4;
	/* RFC 2045 §6.8: no more than 76 characters per line. */
	if (w->col >= 76) {
		o[4] = '\r';
		o[5] = '\n';
		w->olen += 2;
		w->col = 0;
	}
}

static void b64_update(b64w *w, const unsigned char *p, size_t n)
{
	while (n > 0 && w->nrem > 0) {
		w->rem[w->nrem++] = *p++;
		n--;
		if (w->nrem == 3) {
			b64_group(w, w->rem, 3);
			w->nrem = 0;
		}
	}
	for (; n >= 3; p += 3, n -= 3) {
		b64_group(w, p, 3);
	}
	while (n > 0) {
		w->rem[w->nrem++] = *p++;
		n--;
	}
}

static void b64_final(b64w *w)
{
	if (w->nrem > 0) {
		b64_group(w, w->rem, w->nrem);
		w->nrem = 0;
	}
	if (w->col > 0) {
		if (w->olen + 2 > sizeof(w->obuf)) {
			b64_flush(w);
		}
		w->obuf[w->olen++] = '\r';
		w->obuf[w->olen++] = '\n';
		w->col = 0;
	}
	b64_flush(w);
}

static int put(FILE *out, const char *s)
{
	size_t l = strlen(s);

	return fwrite(s, 1, l, out) == l ? P11S_OK
	                                  : p11s_error__set(P11S_ERR_IO, "writing the output: %s",
	                                        strerror(errno));
}

/* The kept outer fields, then MIME-Version (RFC 2045 §4). */
static int write_outer(const p11s_mime_msg *m, FILE *out)
{
	if (m->outer_len > 0 && fwrite(m->outer, 1, m->outer_len, out) != m->outer_len) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	return put(out, "MIME-Version: 1.0\r\n");
}

int p11s_mime__file_sink(void *arg, const void *p, size_t n)
{
	if (p != NULL && n > 0 && fwrite(p, 1, n, arg) != n) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	return P11S_OK;
}

/* 128 random bits: the boundary cannot occur in the entity (RFC 2046 §5.1.1). */
static int new_boundary(char *boundary)
{
	unsigned char rnd[16];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "no randomness for the MIME boundary");
	}
	strcpy(boundary, "----p11smime-");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(boundary + strlen(boundary), 3, "%02x", rnd[i]);
	}
	return P11S_OK;
}

/* The outer fields, the multipart/signed header and the delimiter before part 1. */
static int write_signed_head(const p11s_mime_msg *m, FILE *out, const char *micalg)
{
	char line[256];
	int rc;

	if ((rc = write_outer(m, out)) < 0) {
		return rc;
	}
	/* RFC 8551 §3.5.3: protocol quoted; micalg names the digest of the SignerInfo. */
	snprintf(line, sizeof(line),
	    "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
	    "\tmicalg=%s; boundary=\"%s\"\r\n"
	    "\r\n"
	    "This is an S/MIME signed message.\r\n"
	    "\r\n"
	    "--%s\r\n", micalg, m->boundary, m->boundary);
	return put(out, line);
}

int p11s_mime__write_signed(p11s_mime_msg *m, FILE *out, const char *micalg,
    const unsigned char *sig, size_t siglen)
{
	char line[256];
	b64w w = { .out = out };
	int rc;

	/* Part 1: the entity exactly as hashed (already there after prepare_signed()). */
	if (!m->written && ((rc = new_boundary(m->boundary)) < 0 ||
	                       (rc = write_signed_head(m, out, micalg)) < 0 ||
	                       (rc = p11s_mime__entity_write(m, p11s_mime__file_sink, out)) < 0)) {
		return rc;
	}
	/* The CRLF before the delimiter belongs to the delimiter (RFC 2046 §5.1.1). */
	snprintf(line, sizeof(line),
	    "\r\n--%s\r\n"
	    "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=smime.p7s\r\n"
	    "\r\n", m->boundary);
	if ((rc = put(out, line)) < 0) {
		return rc;
	}
	b64_update(&w, sig, siglen);
	b64_final(&w);
	if (w.err) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	snprintf(line, sizeof(line), "\r\n--%s--\r\n", m->boundary);
	return put(out, line);
}

int p11s_mime__write_pkcs7_head(const p11s_mime_msg *m, FILE *out, const char *smime_type)
{
	char line[512];
	int rc;

	if ((rc = write_outer(m, out)) < 0) {
		return rc;
	}
	/* RFC 8551 §3.2: smime-type, name and filename with the .p7m extension; base64. */
	snprintf(line, sizeof(line),
	    "Content-Type: application/pkcs7-mime; smime-type=%s; name=smime.p7m\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=smime.p7m\r\n"
	    "\r\n", smime_type);
	return put(out, line);
}

/* ---------------------------------------------------------------- base64 BIO ------------ */

static BIO_METHOD *b64_meth;
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static int b64bio_write(BIO *b, const char *data, int len)
{
	b64w *w = BIO_get_data(b);

	if (w == NULL || len < 0) {
		return -1;
	}
	b64_update(w, (const unsigned char *)data, (size_t)len);
	return w->err ? -1 : len;
}

static long b64bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	b64w *w = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* Whole groups only: the final group is written by p11s_mime__b64w_finish. */
		if (w == NULL) {
			return 0;
		}
		b64_flush(w);
		return !w->err && fflush(w->out) == 0;
	case BIO_CTRL_PENDING:
	case BIO_CTRL_WPENDING:
		return 0;
	default:
		return 0;
	}
}

static int b64bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int b64bio_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

static void b64_meth_init(void)
{
	b64_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "p11s-base64-crlf");
	if (b64_meth != NULL) {
		BIO_meth_set_write(b64_meth, b64bio_write);
		BIO_meth_set_ctrl(b64_meth, b64bio_ctrl);
		BIO_meth_set_create(b64_meth, b64bio_create);
		BIO_meth_set_destroy(b64_meth, b64bio_destroy);
	}
}

BIO *p11s_mime__b64w_new(FILE *out)
{
	BIO *b;
	b64w *w;

	pthread_once(&b64_once, b64_meth_init);
	if (b64_meth == NULL || (w = calloc(1, sizeof(*w))) == NULL) {
		return NULL;
	}
	if ((b = BIO_new(b64_meth)) == NULL) {
		free(w);
		return NULL;
	}
	w->out = out;
	BIO_set_data(b, w);
	return b;
}

int p11s_mime__b64w_finish(BIO *b)
{
	b64w *w = BIO_get_data(b);

	if (w == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "not a base64 BIO");
	}
	b64_final(w);
	if (w->err) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	return P11S_OK;
}

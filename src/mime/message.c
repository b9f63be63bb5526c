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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>
#include <openssl/rand.h>

#include "core/error_int.h"
#include "mime/mime.h"

struct p11s_mime_msg {
	char *outer;          /* kept header fields, CRLF line ends */
	size_t outer_len;
	FILE *entity;         /* canonical signed entity (unlinked temporary file) */
	long long entity_size;
	p11s_mime_path path;
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

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_init_once(void)
{
	g_mime_init();
}

void p11s_mime__init(void)
{
	pthread_once(&gmime_once, gmime_init_once);
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

/* A line "Content-Transfer-Encoding: 8bit|binary", at any depth of the MIME tree. */
static int prefix_is_cte8(const scan *s)
{
	static const char f[] = "content-transfer-encoding:";
	size_t i = sizeof(f) - 1;

	if (s->plen < i || memcmp(s->prefix, f, i) != 0) {
		return 0;
	}
	while (i < s->plen && (s->prefix[i] == ' ' || s->prefix[i] == '\t')) {
		i++;
	}
	return (s->plen - i >= 4 && memcmp(s->prefix + i, "8bit", 4) == 0) ||
	    (s->plen - i >= 6 && memcmp(s->prefix + i, "binary", 6) == 0);
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

/* Copy `in` from its position to `out`, turning bare LF into CRLF (RFC 8551 §3.1.1). */
static int copy_crlf(FILE *in, FILE *out, int prev)
{
	unsigned char ibuf[65536], obuf[2 * sizeof(ibuf)];
	size_t n;

	while ((n = fread(ibuf, 1, sizeof(ibuf), in)) > 0) {
		size_t o = 0;

		for (size_t i = 0; i < n; i++) {
			if (ibuf[i] == '\n' && prev != '\r') {
				obuf[o++] = '\r';
			}
			obuf[o++] = ibuf[i];
			prev = ibuf[i];
		}
		if (fwrite(obuf, 1, o, out) != o) {
			return p11s_error__set(P11S_ERR_IO, "writing the signed entity: %s",
			    strerror(errno));
		}
	}
	if (ferror(in)) {
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
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
	int rc = P11S_OK;

	p11s_mime__init();
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

int p11s_mime__prepare(p11s_mime_msg **out, FILE *in)
{
	p11s_mime_msg *m = NULL;
	dbuf outer = { 0 }, content = { 0 }, hdr = { 0 };
	unsigned char buf[65536];
	long long body_off;
	size_t n;
	scan s;
	int rc, has_ctype, hdr_cte8;

	*out = NULL;
	if (fseeko(in, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "the message input is not seekable: %s",
		    strerror(errno));
	}
	if ((rc = split_headers(in, &outer, &content, &has_ctype)) < 0) {
		goto out;
	}
	if ((body_off = ftello(in)) < 0) {
		rc = p11s_error__set(P11S_ERR_IO, "the message input is not seekable");
		goto out;
	}

	/*
	 * One streaming pass decides between the raw and the re-encoding path. Of the Content-*
	 * fields only a declared 8bit/binary encoding counts: 8-bit header text (RFC 6532) is
	 * not a body encoding that quoted-printable or base64 could fix.
	 */
	scan_init(&s);
	scan_bytes(&s, (const unsigned char *)content.p, content.len);
	scan_end(&s);
	hdr_cte8 = s.cte8;
	scan_init(&s);
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		scan_bytes(&s, buf, n);
	}
	if (ferror(in)) {
		rc = p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
		goto out;
	}
	scan_end(&s);
	s.cte8 |= hdr_cte8;

	/* The entity's header: Content-Type first when the message had none (RFC 2045 §5.2). */
	if (!has_ctype) {
		const char *ct = !s.has8bit && !s.hasnul ? "text/plain; charset=us-ascii"
		    : s.utf8_ok && !s.hasnul             ? "text/plain; charset=utf-8"
		                                         : "text/plain; charset=unknown-8bit";

		if ((rc = dbuf_str(&hdr, "Content-Type: ")) < 0 || (rc = dbuf_str(&hdr, ct)) < 0 ||
		    (rc = dbuf_str(&hdr, "\r\n")) < 0) {
			goto out;
		}
	}
	if ((content.len > 0 && (rc = dbuf_add(&hdr, content.p, content.len)) < 0) ||
	    (rc = dbuf_str(&hdr, "\r\n")) < 0) {
		goto out;
	}

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((m->entity = tmpfile()) == NULL) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
		goto out;
	}
	if (fseeko(in, body_off, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "the message input is not seekable");
		goto out;
	}
	if (!s.has8bit && !s.hasnul && !s.longline && !s.cte8) {
		m->path = P11S_MIME_RAW;
		if (fwrite(hdr.p, 1, hdr.len, m->entity) != hdr.len) {
			rc = p11s_error__set(P11S_ERR_IO, "writing the signed entity: %s",
			    strerror(errno));
			goto out;
		}
		if ((rc = copy_crlf(in, m->entity, '\n')) < 0) {
			goto out;
		}
	} else {
		m->path = P11S_MIME_REENCODED;
		if ((rc = write_reencoded(in, body_off, &hdr, m->entity)) < 0) {
			goto out;
		}
	}
	if (fflush(m->entity) != 0 || (m->entity_size = ftello(m->entity)) < 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the signed entity: %s", strerror(errno));
		goto out;
	}
	m->outer = outer.p;
	m->outer_len = outer.len;
	outer.p = NULL;
	*out = m;
	m = NULL;
out:
	p11s_mime__free(m);
	free(outer.p);
	free(content.p);
	free(hdr.p);
	return rc;
}

FILE *p11s_mime__entity(p11s_mime_msg *m)
{
	rewind(m->entity);
	return m->entity;
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
} b64w;

static const char b64tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_group(b64w *w, const unsigned char *g, int n)
{
	char o[6];
	unsigned int v = (unsigned int)g[0] << 16 | (n > 1 ? (unsigned int)g[1] << 8 : 0) |
	    (n > 2 ? g[2] : 0);
	size_t len = 4;

	o[0] = b64tab[(v >> 18) & 63];
	o[1] = b64tab[(v >> 12) & 63];
	o[2] = n > 1 ? b64tab[(v >> 6) & 63] : '=';
	o[3] = n > 2 ? b64tab[v & 63] : '=';
	w->col += 4;
	/* RFC 2045 §6.8: no more than 76 characters per line. */
	if (w->col >= 76) {
		o[4] = '\r';
		o[5] = '\n';
		len = 6;
		w->col = 0;
	}
	if (fwrite(o, 1, len, w->out) != len) {
		w->err = 1;
	}
}

static void b64_update(b64w *w, const unsigned char *p, size_t n)
{
	while (n > 0) {
		w->rem[w->nrem++] = *p++;
		n--;
		if (w->nrem == 3) {
			b64_group(w, w->rem, 3);
			w->nrem = 0;
		}
	}
}

static void b64_final(b64w *w)
{
	if (w->nrem > 0) {
		b64_group(w, w->rem, w->nrem);
		w->nrem = 0;
	}
	if (w->col > 0) {
		if (fwrite("\r\n", 1, 2, w->out) != 2) {
			w->err = 1;
		}
		w->col = 0;
	}
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

int p11s_mime__write_signed(const p11s_mime_msg *m, FILE *out, const char *micalg,
    const unsigned char *sig, size_t siglen)
{
	unsigned char rnd[16];
	char boundary[64], line[256];
	b64w w = { out, { 0 }, 0, 0, 0 };
	int rc;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "no randomness for the MIME boundary");
	}
	/* 128 random bits: the boundary cannot occur in the entity (RFC 2046 §5.1.1). */
	strcpy(boundary, "----p11smime-");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(boundary + strlen(boundary), 3, "%02x", rnd[i]);
	}
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
	    "--%s\r\n", micalg, boundary, boundary);
	if ((rc = put(out, line)) < 0) {
		return rc;
	}
	/* Part 1: the entity exactly as hashed. */
	{
		FILE *e = m->entity;
		char buf[65536];
		size_t n;

		rewind(e);
		while ((n = fread(buf, 1, sizeof(buf), e)) > 0) {
			if (fwrite(buf, 1, n, out) != n) {
				return p11s_error__set(P11S_ERR_IO, "writing the output: %s",
				    strerror(errno));
			}
		}
		if (ferror(e)) {
			return p11s_error__set(P11S_ERR_IO, "reading the signed entity: %s",
			    strerror(errno));
		}
	}
	/* The CRLF before the delimiter belongs to the delimiter (RFC 2046 §5.1.1). */
	snprintf(line, sizeof(line),
	    "\r\n--%s\r\n"
	    "Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment; filename=smime.p7s\r\n"
	    "\r\n", boundary);
	if ((rc = put(out, line)) < 0) {
		return rc;
	}
	b64_update(&w, sig, siglen);
	b64_final(&w);
	if (w.err) {
		return p11s_error__set(P11S_ERR_IO, "writing the output: %s", strerror(errno));
	}
	snprintf(line, sizeof(line), "\r\n--%s--\r\n", boundary);
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
		/* Only the FILE is flushed: the final group is written by p11s_mime__b64w_finish. */
		return w != NULL && !w->err && fflush(w->out) == 0;
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

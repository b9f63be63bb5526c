/*
 * Reading signed S/MIME messages for `verify`: which entity is signed, where its bytes are
 * (taken raw from the input, never re-serialised: DESIGN.md decision 5), the SignedData, and
 * the From/Sender addresses. Internal to the library.
 */
#ifndef P11S_MIME_SIGNED_H
#define P11S_MIME_SIGNED_H

#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

#include "x509/x509_int.h"

/*
 * CRLF canonicalisation (RFC 8551 §3.1.1): a bare LF becomes CRLF, everything else passes
 * through. Stateful, so it may be fed in chunks of any size.
 */
typedef int (*p11s_mime_feed)(const unsigned char *p, size_t n, void *payload);
typedef struct p11s_mime_canon {
	int prev_cr;
} p11s_mime_canon;
int p11s_mime__canon_feed(p11s_mime_canon *c, const unsigned char *p, size_t n,
    p11s_mime_feed sink, void *payload);

/*
 * Byte ranges of the two body parts of a multipart/signed entity (RFC 1847, RFC 2046 §5.1.1):
 * the line break before each delimiter belongs to the delimiter; transport padding (LWSP)
 * after the boundary is allowed. Offsets are absolute file offsets, [start, end).
 */
typedef struct p11s_mime_parts {
	off_t part1_start, part1_end;
	off_t part2_start, part2_end;
	size_t n_parts;
} p11s_mime_parts;

/*
 * Scan `f` from `body_start` to EOF for the delimiters of `boundary`, streaming (memory does
 * not grow with the message). @return P11S_OK, P11S_ERR_MALFORMED (no delimiter, no close
 * delimiter, not exactly two parts), P11S_ERR_IO.
 */
int p11s_mime__scan_multipart(FILE *f, off_t body_start, const char *boundary,
    p11s_mime_parts *out);

/*
 * The same, giving part 1 to `feed` on the way, canonical: octet for octet what
 * p11s_mime__stream_canonical(f, part1_start, part1_end, ...) gives afterwards. On an error
 * `feed` may have had part of a part.
 */
int p11s_mime__scan_multipart_tee(FILE *f, off_t body_start, const char *boundary,
    p11s_mime_parts *out, p11s_mime_feed feed, void *payload);

/* Offset just past the header block (the empty line) of the entity starting at `start`. */
int p11s_mime__header_end(FILE *f, off_t start, off_t *out);

/* Read [start, end) of `f` through the canonicaliser into `sink`. */
int p11s_mime__stream_canonical(FILE *f, off_t start, off_t end, p11s_mime_feed sink,
    void *payload);

enum p11s_mime_kind {
	P11S_MIME_NOT_SIGNED = 0,
	P11S_MIME_MULTIPART_SIGNED,
	P11S_MIME_OPAQUE,
};

typedef struct p11s_mime_signed {
	enum p11s_mime_kind kind;
	char *not_signed_why;      /* NOT_SIGNED: what the root entity is */
	char *nested;              /* NOT_SIGNED: a signed part inside ("2 (multipart/signed)") */
	char *micalg;              /* multipart/signed micalg parameter, may be NULL */
	p11s_mime_parts parts;     /* multipart/signed: part 1 is the signed entity */
	unsigned char *der;        /* the CMS ContentInfo (p7s, or the opaque body), decoded */
	size_t der_len;
	FILE *body;                /* opaque read with P11S_MIME_READ_STREAM: the decoded body in
	                              an unlinked scratch file at offset 0 (der is then NULL) */
	p11s_x509_sender sender;   /* From / Sender of the outer message */
	char *date;                /* the outer message's (first) Date field, raw; NULL if none */
	int teed;                  /* multipart/signed: part 1 went, whole, through the tee */
} p11s_mime_signed;

/*
 * A consumer of part 1 of multipart/signed in canonical form (what p11s_mime__stream_canonical
 * gives), fed while the delimiters are scanned, so that the message is read once. begin() is
 * called with the micalg parameter (may be NULL) and the message's size in octets before the
 * scan; it returns 1 to be fed, 0 not to be, or a negative error. After a failed read the
 * consumer may have been fed part of a part: discard what it made.
 */
typedef struct p11s_mime_tee {
	int (*begin)(const char *micalg, off_t size, void *payload);
	p11s_mime_feed feed;
	void *payload;
} p11s_mime_tee;

/* Unfold a header field value and trim its white space, in place. */
void p11s_mime__field_trim(char *s);

/* An RFC 5322 date-time (a Date field's value) as seconds since the epoch; -1 if unreadable. */
int p11s_mime__parse_date(const char *value, int64_t *out);

/*
 * The Date field of the header section of the entity at `start` in `f` (read up to `end`, or
 * 64 KiB; `end` < 0: no bound but that): 1 with `*raw` (malloc'd value, unfolded), 0 when
 * there is none, or a negative error. For the protected Date of RFC 9788 §2.
 */
int p11s_mime__entity_date(FILE *f, off_t start, off_t end, char **raw);

/* Header fields of one header section, in order: names and unfolded, trimmed values. */
typedef struct p11s_mime_fields {
	char **name, **value;
	size_t n;
} p11s_mime_fields;

void p11s_mime__fields_free(p11s_mime_fields *f);

/*
 * The header section of the entity at `start` in `f` (read up to `end`, or 64 KiB; `end` < 0:
 * no bound but that; a NUL ends it). @return P11S_OK or P11S_ERR_NOMEM / P11S_ERR_IO.
 */
int p11s_mime__header_fields(FILE *f, off_t start, off_t end, p11s_mime_fields *out);

/* The value of the first field `name` (case-insensitive), or NULL. */
const char *p11s_mime__fields_get(const p11s_mime_fields *f, const char *name);

/*
 * The value of parameter `param` of a Content-Type value ("text/plain; hp=\"clear\""),
 * unquoted, malloc'd; NULL when absent (or out of memory).
 */
char *p11s_mime__ctype_param(const char *value, const char *param);

/* From / Sender of a header section (RFC 8550 §3), as read_signed() builds for the outer one. */
int p11s_mime__sender_of(const p11s_mime_fields *f, p11s_x509_sender *out);

/*
 * Parse the message in `in` (seekable). @return P11S_OK (look at kind), P11S_ERR_MALFORMED
 * (not a MIME message, missing boundary, bad transfer encoding), P11S_ERR_IO, P11S_ERR_NOMEM.
 */
int p11s_mime__read_signed(p11s_mime_signed **out, FILE *in);

/*
 * The same; with P11S_MIME_READ_STREAM an opaque body is decoded into `body`, a scratch file,
 * instead of memory, so that its size is not bounded by memory (DESIGN.md decision 4).
 */
#define P11S_MIME_READ_STREAM 0x1u
int p11s_mime__read_signed_ex(p11s_mime_signed **out, FILE *in, unsigned int flags);
/* The same, feeding part 1 of a multipart/signed message to `tee` (NULL: none) on the way. */
int p11s_mime__read_signed_tee(p11s_mime_signed **out, FILE *in, unsigned int flags,
    const p11s_mime_tee *tee);
void p11s_mime__signed_free(p11s_mime_signed *m);

#endif

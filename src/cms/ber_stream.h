/*
 * A streaming BER reader for CMS messages too large for memory (DESIGN.md decision 4): the
 * decoded body sits in a scratch file and is walked once, element by element (X.690 §8.1:
 * definite and indefinite lengths; OCTET STRINGs primitive or constructed from segments, §8.7).
 * Small fields are copied verbatim into an in-memory "skeleton" for OpenSSL, bounded by
 * `copy_max`; the bulk content goes to a second scratch file. Used by the streaming decryption
 * (envelope.c) and the streaming verification of opaque signed-data (verify.c). Internal.
 */
#ifndef P11S_CMS_BER_STREAM_H
#define P11S_CMS_BER_STREAM_H

#include <stdint.h>
#include <stdio.h>

#include <openssl/bio.h>

/* Bound on nesting: segments of segments, and the indefinite lengths of a skipped element. */
#define P11S_CMS_BER_MAX_DEPTH 64

typedef struct p11s_cms_ber {
	FILE *f;                  /* the BER, read from its current position */
	uint64_t pos;             /* octets consumed */
	BIO *copy;                /* when not NULL, every octet read is appended here */
	uint64_t copy_max;        /* bound on the octets written to a copy BIO (0: none) */
	const char *too_large;    /* the reason given when a copy exceeds copy_max */
} p11s_cms_ber;

/* One BER header: identifier octet (low tag numbers only), length or indefinite. */
typedef struct p11s_cms_ber_hdr {
	int id;                   /* the identifier octet: class, constructed bit, tag number */
	int indef;
	uint64_t len;
	uint64_t end;             /* position after the contents, for definite lengths */
} p11s_cms_ber_hdr;

/* P11S_ERR_MALFORMED "the message is not a valid CMS structure (`what`)". */
int p11s_cms__ber_bad(const char *what);

/* Read one header. P11S_ERR_MALFORMED for a high tag number, a bad length or truncation. */
int p11s_cms__ber_read_hdr(p11s_cms_ber *r, p11s_cms_ber_hdr *h);

/* Non-zero for an end-of-contents marker (X.690 §8.1.5). */
int p11s_cms__ber_is_eoc(const p11s_cms_ber_hdr *h);

/* Skip `n` content octets; copy them to `sink` (if not NULL) and to r->copy (if set). */
int p11s_cms__ber_skip(p11s_cms_ber *r, uint64_t n, FILE *sink);

/* The rest of an element whose header `h` was read (children to their EOC if indefinite). */
int p11s_cms__ber_rest(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, int depth);

/*
 * The next element of a container `ctr` (NULL: top level, never ends): 1 with its header in
 * `h`, 0 at the container's end (its EOC is consumed for an indefinite length), or an error.
 */
int p11s_cms__ber_next(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr, p11s_cms_ber_hdr *h);

/* The next element, which must exist and have identifier `id`; else ber_bad(`what`). */
int p11s_cms__ber_expect(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr, int id,
    p11s_cms_ber_hdr *h, const char *what);

/* Copy one whole element, header `h` already read, verbatim into `sk` (bounded by copy_max). */
int p11s_cms__ber_copy(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, BIO *sk);

/*
 * Read the start of a ContentInfo (RFC 5652 §3: SEQUENCE { contentType OBJECT IDENTIFIER,
 * content [0] EXPLICIT ANY }): its header into `ci`, the contentType's encoding into `oid`.
 */
int p11s_cms__ber_content_type(p11s_cms_ber *r, p11s_cms_ber_hdr *ci, BIO *oid);

/*
 * Copy the remaining fields of the container `ctr` to `sk` as they are, then check that the
 * content [0] `ex` and the ContentInfo `ci` around it end there (nothing trails).
 */
int p11s_cms__ber_copy_tail(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr,
    const p11s_cms_ber_hdr *ex, const p11s_cms_ber_hdr *ci, BIO *sk);

/*
 * The content octets of an OCTET STRING (or an IMPLICIT-tagged one) with header `h` into
 * `sink`: primitive, or constructed from OCTET STRING segments (X.690 §8.7.3), which may be
 * constructed again. `what` is the reason when a segment is not an OCTET STRING.
 */
int p11s_cms__ber_octets(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, FILE *sink,
    const char *what, int depth);

#endif

/*
 * MIME side of encryption: splitting an RFC 5322 message into the header fields that stay
 * outside and the entity that is encrypted (RFC 8551 §3.3), writing and reading
 * application/pkcs7-mime enveloped-data / authEnveloped-data entities (§3.2). Internal.
 */
#ifndef P11S_MIME_ENVELOPED_H
#define P11S_MIME_ENVELOPED_H

#include <stdio.h>

#include <openssl/bio.h>

#include <p11smime/envelope.h>

/* The header section of a message, split for encryption or decryption. */
typedef struct p11s_mime_head {
	char *outer;          /* fields other than Content-* and MIME-Version, raw bytes */
	size_t outer_len, outer_cap;
	char *content;        /* the Content-* fields, line ends made CRLF */
	size_t content_len, content_cap;
	int crlf;             /* the first header line ended in CRLF (else LF) */
	int has_body;         /* an empty line ended the section (else the input ended) */
	int has_mime_version;
	char *content_type;   /* unfolded values, NULL if the field is absent */
	char *cte;
	char *disposition;
} p11s_mime_head;

/*
 * Read the header section of `in` (up to and including the empty line) and leave `in` at the
 * start of the body. A field line without a colon, or a section over 1 MiB, is
 * P11S_ERR_MALFORMED. Free with p11s_mime__head_clear().
 */
int p11s_mime__read_head(FILE *in, p11s_mime_head *h);
void p11s_mime__head_clear(p11s_mime_head *h);

/*
 * Copy the rest of `in` to `out` with bare LF made CRLF (RFC 8551 §3.1.1 canonical form);
 * CRLF and lone CR stay as they are.
 */
int p11s_mime__canon_copy(FILE *in, BIO *out);

/*
 * RFC 9788 header protection for encryption (protect.c): `h->content` becomes the payload's
 * header part (the Content-* fields with hp="cipher", copies of the header fields, an HP-Outer
 * field for each field left outside) and `h->outer` the exposed fields, Subject "[...]",
 * Comments and Keywords removed (hcp_baseline). @return P11S_OK or P11S_ERR_NOMEM.
 */
int p11s_mime__hp_encrypt_head(p11s_mime_head *h);

/* Write the inner entity's header part: the Content-* fields and the empty line, CRLF. */
int p11s_mime__write_inner_head(BIO *out, const p11s_mime_head *h);

/*
 * Write the outer header section of an encrypted message: the outer fields as read, then
 * MIME-Version, Content-Type application/pkcs7-mime with smime-type (authEnveloped-data when
 * `auth`, else enveloped-data) and name, base64 transfer encoding, Content-Disposition, and
 * the empty line. New lines end in CRLF when `crlf`, else LF.
 */
int p11s_mime__write_enveloped_head(FILE *out, const p11s_mime_head *h, int auth, int crlf);

/*
 * A sink BIO that base64-encodes what is written to it into `out`, 64 characters a line,
 * lines ending in CRLF when `crlf` else LF. p11s_mime__b64_finish() writes the last line and
 * reports whether every write to `out` succeeded; then free the BIO with BIO_free().
 */
BIO *p11s_mime__b64_sink(FILE *out, int crlf);
int p11s_mime__b64_finish(BIO *b);

/*
 * Check that `h` describes an encrypted entity: application/pkcs7-mime or
 * application/x-pkcs7-mime with smime-type enveloped-data or authEnveloped-data (or none),
 * or application/octet-stream named *.p7m (RFC 8551 §3.9). P11S_ERR_MALFORMED says why not.
 */
int p11s_mime__check_enveloped(const p11s_mime_head *h);

/* Decode the body of `in` (base64 or binary, by h->cte) into `der`. */
int p11s_mime__decode_body(FILE *in, const p11s_mime_head *h, BIO *der);

/*
 * Write a decrypted message: the outer fields of `h`, MIME-Version unless the entity in
 * `plain` has one, then `plain` from its start. When the input's lines ended in LF (!h->crlf),
 * CRLF in the entity becomes LF.
 */
int p11s_mime__write_decrypted(FILE *out, const p11s_mime_head *h, FILE *plain);
/*
 * The same; with `hpr` non-NULL, *hpr is set to the RFC 9788 report of a protected payload
 * (the decrypted entity, or part 1 of the multipart/signed it is) or NULL.
 */
int p11s_mime__write_decrypted_hp(FILE *out, const p11s_mime_head *h, FILE *plain,
    p11s_header_protection **hpr);

/* The value of parameter `attr` of a structured field value (RFC 2045 §5.1), malloc'd; NULL if absent. */
char *p11s_mime__param(const char *value, const char *attr);

/* The media type of a Content-Type value, lower case, in `buf`. */
void p11s_mime__media_type(const char *value, char *buf, size_t len);

#endif

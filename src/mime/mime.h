/*
 * MIME side of signing (RFC 5322, RFC 2045-2049, RFC 8551 §3): split a message into its outer
 * header fields and the MIME entity to be signed, bring that entity into canonical, 7-bit form
 * (RFC 8551 §3.1.1-3.1.3) and stream it to a sink (a digest, the output), and write the S/MIME
 * wrappers around it. Knows nothing about CMS: the signature arrives as bytes or through a BIO.
 */
#ifndef P11S_MIME_H
#define P11S_MIME_H

#include <stdio.h>

#include <openssl/bio.h>

/* Limits on the input message (documented in docs/sign.md, docs/security.md). */
#define P11S_MIME_LINE_MAX 998           /* RFC 5322 §2.1.1: octets per line, CRLF excluded */
#ifndef P11S_MIME_HEADER_MAX             /* build-time setting: -DP11S_MIME_HEADER_MAX=... */
#define P11S_MIME_HEADER_MAX (1u << 20)  /* total size of the header section */
#endif

/* A message prepared for signing. */
typedef struct p11s_mime_msg p11s_mime_msg;

/* How the signed entity was produced (for tests and diagnostics). */
typedef enum p11s_mime_path {
	P11S_MIME_RAW = 1,       /* 7-bit input: raw bytes, bare LF made CRLF, read from the input */
	P11S_MIME_REENCODED = 2, /* 8bit/binary leaves given quoted-printable or base64 (GMime) */
} p11s_mime_path;

/*
 * A consumer of the canonical entity: gets its octets in order and returns P11S_OK, or a
 * negative error, which stops the feed. A call with p == NULL and n == 0 means "start over":
 * forget everything received so far.
 */
typedef int (*p11s_mime_entity_sink)(void *arg, const void *p, size_t n);

/* A sink writing to the FILE * `arg`. */
int p11s_mime__file_sink(void *arg, const void *p, size_t n);

/*
 * Read the RFC 5322 message in `in` (seekable; read from offset 0), keep its non-Content-*
 * header fields raw and in order for the outer message, and work out the canonical signed
 * entity (Content-* fields + body, CRLF line ends, 7-bit transfer encodings), feeding it to
 * `sink` (NULL: none) — the digest is computed in the same pass that scans the body.
 * A 7-bit body is not copied: the entity is re-read from `in` by p11s_mime__entity_write(),
 * so `in` must stay open and unchanged until `*out` is freed (a change of its size or
 * modification time is an error there). A body that needs re-encoding goes through GMime
 * into an unlinked temporary file. Memory does not grow with the body size.
 * @return P11S_OK; P11S_ERR_MALFORMED (not an RFC 5322 message: the message says why);
 *         P11S_ERR_IO; P11S_ERR_NOMEM; a sink's error. Free `*out` with p11s_mime__free().
 */
int p11s_mime__prepare(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink, void *arg);
/*
 * The same with RFC 9788 header protection when `hp` is "clear" or "cipher" (a literal that
 * outlives `*out`): the entity also carries copies of the message's non-structural header
 * fields (protect.c says which) and its Content-Type the parameter hp="clear"|"cipher".
 */
int p11s_mime__prepare_hp(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink, void *arg,
    const char *hp);
/*
 * The same, for a multipart/signed output in `dst`, a file private to the caller (discarded
 * unless signing succeeds) and positioned where the message goes: a 7-bit entity is written
 * there as it is hashed, after the outer fields and the multipart/signed head naming `micalg`,
 * so the message is read once; p11s_mime__write_signed() then only adds the signature part. A
 * body that needs re-encoding is taken back (`dst` truncated to where it was) and written by
 * p11s_mime__write_signed() as usual. `dst` NULL or not seekable: p11s_mime__prepare_hp().
 */
int p11s_mime__prepare_signed(p11s_mime_msg **out, FILE *in, p11s_mime_entity_sink sink,
    void *arg, const char *hp, FILE *dst, const char *micalg);

/*
 * protect.c. The protected copies of the header fields in `outer` (raw fields, CRLF), and
 * `content` (Content-* fields) with hp="`hp`" added to its Content-Type unless it has an hp
 * parameter already. Both malloc'd, NUL-terminated. @return P11S_OK or P11S_ERR_NOMEM.
 */
int p11s_mime__hp_fields(const char *outer, size_t len, char **out, size_t *outlen);
int p11s_mime__hp_ctype(const char *content, size_t len, const char *hp, char **out,
    size_t *outlen);

/*
 * Feed the canonical entity to `sink` again, byte for byte what p11s_mime__prepare() fed.
 * @return P11S_OK; P11S_ERR_IO (also: the input changed since p11s_mime__prepare()); a
 *         sink's error.
 */
int p11s_mime__entity_write(p11s_mime_msg *m, p11s_mime_entity_sink sink, void *arg);

/* Size in bytes of the canonical entity. */
long long p11s_mime__entity_size(const p11s_mime_msg *m);

/* How the entity was produced. */
p11s_mime_path p11s_mime__path(const p11s_mime_msg *m);

/*
 * Write the outer message of a multipart/signed (RFC 8551 §3.5.3, RFC 1847): the kept header
 * fields, MIME-Version, the multipart/signed Content-Type with `micalg` ("sha-256"), part 1 =
 * the entity byte for byte, part 2 = application/pkcs7-signature holding `sig` (DER SignedData
 * without eContent) in base64. Every line ends CRLF.
 * @return P11S_OK, P11S_ERR_IO, P11S_ERR_CRYPTO (no randomness for the boundary).
 */
int p11s_mime__write_signed(p11s_mime_msg *m, FILE *out, const char *micalg,
    const unsigned char *sig, size_t siglen);

/*
 * Write the header of an application/pkcs7-mime message (RFC 8551 §3.2): the kept header
 * fields, MIME-Version, Content-Type with `smime_type` and name=smime.p7m, base64 transfer
 * encoding, Content-Disposition, and the blank line. The body follows through
 * p11s_mime__b64w_new().
 * @return P11S_OK or P11S_ERR_IO.
 */
int p11s_mime__write_pkcs7_head(const p11s_mime_msg *m, FILE *out, const char *smime_type);

/*
 * A sink BIO that base64-encodes what is written to it onto `out` in lines of 76 characters
 * ending CRLF (RFC 2045 §6.8). BIO_flush() only flushes `out`; p11s_mime__b64w_finish() writes
 * the last group and line end. Free with BIO_free(); `out` stays open.
 * @return the BIO, or NULL (out of memory).
 */
BIO *p11s_mime__b64w_new(FILE *out);

/* Write the last base64 group and line end of a p11s_mime__b64w_new(). P11S_OK or P11S_ERR_IO. */
int p11s_mime__b64w_finish(BIO *b);

/* Free; NULL is accepted. Closes the temporary file. */
void p11s_mime__free(p11s_mime_msg *m);

/*
 * Load and initialise GMime once per process (thread-safe; gmime_lazy.h). @return P11S_OK,
 * or P11S_ERR_GENERIC when it cannot be loaded (error set).
 */
int p11s_mime__init(void);

#endif

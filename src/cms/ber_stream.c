/*
 * Streaming BER reader (ber_stream.h): the walker behind the streaming decryption of
 * (Auth)EnvelopedData and the streaming verification of opaque SignedData. OpenSSL 3.0's d2i
 * needs the whole encoding, and collects a content OCTET STRING into one buffer; this reader
 * needs a few KiB whatever the size of the content (X.690 §8.1, §8.7).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/asn1.h>

#include <p11smime/error.h>

#include "cms/ber_stream.h"
#include "core/error_int.h"

int p11s_cms__ber_bad(const char *what)
{
	return p11s_error__set(P11S_ERR_MALFORMED, "the message is not a valid CMS structure (%s)",
	    what);
}

/*
 * Append to r->copy. The bound is checked before the octets go in, so a hostile length
 * cannot make the skeleton grow beyond it before the check (the failure is the same one a
 * check after the copy would give).
 */
static int copy_out(p11s_cms_ber *r, const unsigned char *p, size_t n)
{
	if (r->copy_max > 0 && BIO_number_written(r->copy) + n > r->copy_max) {
		return p11s_cms__ber_bad(r->too_large ? r->too_large : "too large");
	}
	if (BIO_write(r->copy, p, (int)n) != (int)n) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	return P11S_OK;
}

static int ber_byte(p11s_cms_ber *r, unsigned char *c)
{
	int v = getc(r->f);

	if (v == EOF) {
		return ferror(r->f) ? p11s_error__set(P11S_ERR_IO, "reading the message: %s",
		                          strerror(errno))
		                    : p11s_cms__ber_bad("truncated");
	}
	*c = (unsigned char)v;
	r->pos++;
	if (r->copy != NULL) {
		return copy_out(r, c, 1);
	}
	return P11S_OK;
}

int p11s_cms__ber_read_hdr(p11s_cms_ber *r, p11s_cms_ber_hdr *h)
{
	unsigned char c;
	int rc;

	memset(h, 0, sizeof(*h));
	if ((rc = ber_byte(r, &c)) < 0) {
		return rc;
	}
	h->id = c;
	if ((c & 0x1f) == 0x1f) {
		/* X.690 §8.1.2.4: none in CMS's SignedData or (Auth)EnvelopedData. */
		return p11s_cms__ber_bad("high tag number");
	}
	if ((rc = ber_byte(r, &c)) < 0) {
		return rc;
	}
	if (c == 0x80) {
		/* X.690 §8.1.3.6: indefinite form, constructed encodings only. */
		if (!(h->id & 0x20)) {
			return p11s_cms__ber_bad("indefinite length of a primitive");
		}
		h->indef = 1;
	} else if (c & 0x80) {
		int n = c & 0x7f;

		if (n > 8) {
			return p11s_cms__ber_bad("length too long");
		}
		while (n-- > 0) {
			if ((rc = ber_byte(r, &c)) < 0) {
				return rc;
			}
			if (h->len >> 56) {
				return p11s_cms__ber_bad("length too long");
			}
			h->len = h->len << 8 | c;
		}
	} else {
		h->len = c;
	}
	h->end = r->pos + h->len;
	return P11S_OK;
}

int p11s_cms__ber_is_eoc(const p11s_cms_ber_hdr *h)
{
	return h->id == 0 && !h->indef && h->len == 0;
}

int p11s_cms__ber_skip(p11s_cms_ber *r, uint64_t n, FILE *sink)
{
	unsigned char buf[16384];
	int rc;

	while (n > 0) {
		size_t want = n < sizeof(buf) ? (size_t)n : sizeof(buf), got;

		got = fread(buf, 1, want, r->f);
		if (got == 0) {
			return ferror(r->f) ? p11s_error__set(P11S_ERR_IO, "reading the message: %s",
			                          strerror(errno))
			                    : p11s_cms__ber_bad("truncated");
		}
		r->pos += got;
		n -= got;
		if (r->copy != NULL && (rc = copy_out(r, buf, got)) < 0) {
			return rc;
		}
		if (sink != NULL && fwrite(buf, 1, got, sink) != got) {
			return p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		}
	}
	return P11S_OK;
}

int p11s_cms__ber_rest(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, int depth)
{
	p11s_cms_ber_hdr c;
	int rc;

	if (!h->indef) {
		return p11s_cms__ber_skip(r, h->len, NULL);
	}
	if (depth > P11S_CMS_BER_MAX_DEPTH) {
		return p11s_cms__ber_bad("nested too deeply");
	}
	for (;;) {
		if ((rc = p11s_cms__ber_read_hdr(r, &c)) < 0) {
			return rc;
		}
		if (p11s_cms__ber_is_eoc(&c)) {
			return P11S_OK;
		}
		if ((rc = p11s_cms__ber_rest(r, &c, depth + 1)) < 0) {
			return rc;
		}
	}
}

int p11s_cms__ber_next(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr, p11s_cms_ber_hdr *h)
{
	int rc;

	if (ctr != NULL && !ctr->indef) {
		if (r->pos == ctr->end) {
			return 0;
		}
		if (r->pos > ctr->end) {
			return p11s_cms__ber_bad("element overruns its container");
		}
	}
	if ((rc = p11s_cms__ber_read_hdr(r, h)) < 0) {
		return rc;
	}
	if (p11s_cms__ber_is_eoc(h)) {
		if (ctr == NULL || !ctr->indef) {
			return p11s_cms__ber_bad("unexpected end-of-contents");
		}
		return 0;
	}
	if (ctr != NULL && !ctr->indef && !h->indef && h->end > ctr->end) {
		return p11s_cms__ber_bad("element overruns its container");
	}
	return 1;
}

int p11s_cms__ber_expect(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr, int id,
    p11s_cms_ber_hdr *h, const char *what)
{
	int rc = p11s_cms__ber_next(r, ctr, h);

	if (rc < 0) {
		return rc;
	}
	if (rc == 0 || h->id != id) {
		return p11s_cms__ber_bad(what);
	}
	return P11S_OK;
}

/* Re-encode a header (for copying an element whose header was already consumed). */
static size_t hdr_raw(const p11s_cms_ber_hdr *h, unsigned char *p)
{
	size_t n = 0, bytes = 0;

	p[n++] = (unsigned char)h->id;
	if (h->indef) {
		p[n++] = 0x80;
	} else if (h->len < 0x80) {
		p[n++] = (unsigned char)h->len;
	} else {
		for (uint64_t l = h->len; l > 0; l >>= 8) {
			bytes++;
		}
		p[n++] = (unsigned char)(0x80 | bytes);
		while (bytes > 0) {
			p[n++] = (unsigned char)(h->len >> (8 * --bytes));
		}
	}
	return n;
}

int p11s_cms__ber_copy(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, BIO *sk)
{
	unsigned char raw[12];
	size_t n = hdr_raw(h, raw);
	BIO *saved = r->copy;
	int rc;

	r->copy = sk;
	if ((rc = copy_out(r, raw, n)) == P11S_OK) {
		rc = p11s_cms__ber_rest(r, h, 0);
	}
	r->copy = saved;
	return rc;
}

int p11s_cms__ber_octets(p11s_cms_ber *r, const p11s_cms_ber_hdr *h, FILE *sink,
    const char *what, int depth)
{
	p11s_cms_ber_hdr c;
	int rc;

	if (!(h->id & 0x20)) {
		return p11s_cms__ber_skip(r, h->len, sink);
	}
	if (depth > P11S_CMS_BER_MAX_DEPTH) {
		return p11s_cms__ber_bad("nested too deeply");
	}
	while ((rc = p11s_cms__ber_next(r, h, &c)) == 1) {
		if ((c.id & ~0x20) != 0x04 /* OCTET STRING, X.690 §8.7.3.2 */) {
			return p11s_cms__ber_bad(what);
		}
		if ((rc = p11s_cms__ber_octets(r, &c, sink, what, depth + 1)) < 0) {
			return rc;
		}
	}
	return rc;
}

int p11s_cms__ber_content_type(p11s_cms_ber *r, p11s_cms_ber_hdr *ci, BIO *oid)
{
	p11s_cms_ber_hdr h;
	int rc;

	if ((rc = p11s_cms__ber_read_hdr(r, ci)) < 0) {
		return rc;
	}
	if (ci->id != 0x30) {
		return p11s_cms__ber_bad("not a ContentInfo");
	}
	if ((rc = p11s_cms__ber_expect(r, ci, V_ASN1_OBJECT, &h, "no content type")) < 0) {
		return rc;
	}
	return p11s_cms__ber_copy(r, &h, oid);
}

int p11s_cms__ber_copy_tail(p11s_cms_ber *r, const p11s_cms_ber_hdr *ctr,
    const p11s_cms_ber_hdr *ex, const p11s_cms_ber_hdr *ci, BIO *sk)
{
	p11s_cms_ber_hdr h;
	int more, rc;

	while ((more = p11s_cms__ber_next(r, ctr, &h)) == 1) {
		if ((rc = p11s_cms__ber_copy(r, &h, sk)) < 0) {
			return rc;
		}
	}
	if (more < 0) {
		return more;
	}
	if ((rc = p11s_cms__ber_next(r, ex, &h)) < 0) {
		return rc;
	}
	if (rc == 1 || (rc = p11s_cms__ber_next(r, ci, &h)) != 0) {
		return rc < 0 ? rc : p11s_cms__ber_bad("trailing data in the ContentInfo");
	}
	return P11S_OK;
}

/*
 * application/pkcs7-mime enveloped-data and authEnveloped-data entities (RFC 8551 §3.2, §3.3):
 * the outer header fields stay outside, the Content-* fields and the body are the inner
 * entity, in canonical CRLF form (§3.1.1). Header fields are handled as raw bytes: what stays
 * outside is copied byte for byte, never re-serialised.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "core/error_int.h"
#include "mime/enveloped.h"
#include "mime/hp_read.h"
#include "mime/signed.h"

/* A header section larger than this is not a message we accept (bounded memory). */
#define HEAD_MAX (1024 * 1024)

static int append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t ncap = *cap ? *cap : 256;
		char *nb;

		while (ncap < *len + n + 1) {
			ncap *= 2;
		}
		if ((nb = realloc(*buf, ncap)) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return P11S_OK;
}

void p11s_mime__head_clear(p11s_mime_head *h)
{
	free(h->outer);
	free(h->content);
	free(h->content_type);
	free(h->cte);
	free(h->disposition);
	memset(h, 0, sizeof(*h));
}

/* Length of `line` without its line end (LF or CRLF). */
static size_t strip_eol(const char *line, size_t n)
{
	if (n > 0 && line[n - 1] == '\n') {
		n--;
		if (n > 0 && line[n - 1] == '\r') {
			n--;
		}
	}
	return n;
}

/* RFC 5322 §2.2: field-name = 1*ftext, printable US-ASCII except ":". Length of the name or 0. */
static size_t field_name_len(const char *f, size_t n)
{
	size_t i = 0;

	while (i < n && f[i] != ':' && (unsigned char)f[i] >= 33 && (unsigned char)f[i] <= 126) {
		i++;
	}
	/* obs-optional: WSP before the colon (RFC 5322 §4.5.3). */
	size_t name = i;
	while (i < n && (f[i] == ' ' || f[i] == '\t')) {
		i++;
	}
	return (i < n && f[i] == ':' && name > 0) ? name : 0;
}

/* The unfolded value of a field (RFC 5322 §2.2.3), leading whitespace removed. */
static char *unfold_value(const char *f, size_t n)
{
	const char *colon = memchr(f, ':', n);
	char *v, *q;

	if ((v = malloc(n + 1)) == NULL) {
		return NULL;
	}
	q = v;
	for (const char *p = colon + 1; p < f + n; p++) {
		if (*p != '\r' && *p != '\n') {
			*q++ = *p;
		}
	}
	*q = '\0';
	q = v;
	while (*q == ' ' || *q == '\t') {
		q++;
	}
	memmove(v, q, strlen(q) + 1);
	for (q = v + strlen(v); q > v && (q[-1] == ' ' || q[-1] == '\t'); q--) {
		q[-1] = '\0';
	}
	return v;
}

/* Sort a complete field (raw bytes, folded lines included) into `h`. */
static int take_field(p11s_mime_head *h, const char *f, size_t n)
{
	size_t nl = field_name_len(f, n);
	char **slot = NULL;
	int rc;

	if (nl >= 8 && strncasecmp(f, "Content-", 8) == 0) {
		/* Canonical form inside: every line of the field ends in CRLF. */
		const char *p = f, *end = f + n;

		while (p < end) {
			const char *e = memchr(p, '\n', (size_t)(end - p));
			size_t l = e ? (size_t)(e - p) + 1 : (size_t)(end - p);
			size_t s = strip_eol(p, l);

			if ((rc = append(&h->content, &h->content_len, &h->content_cap, p, s)) < 0 ||
			    (rc = append(&h->content, &h->content_len, &h->content_cap, "\r\n", 2)) < 0) {
				return rc;
			}
			p += l;
		}
		if (nl == 12 && strncasecmp(f, "Content-Type", 12) == 0) {
			slot = &h->content_type;
		} else if (nl == 25 && strncasecmp(f, "Content-Transfer-Encoding", 25) == 0) {
			slot = &h->cte;
		} else if (nl == 19 && strncasecmp(f, "Content-Disposition", 19) == 0) {
			slot = &h->disposition;
		}
		if (slot != NULL) {
			if (*slot != NULL) {
				return p11s_error__set(P11S_ERR_MALFORMED, "repeated header field %.*s",
				    (int)nl, f);
			}
			if ((*slot = unfold_value(f, n)) == NULL) {
				return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			}
		}
		return P11S_OK;
	}
	if (nl == 12 && strncasecmp(f, "MIME-Version", 12) == 0) {
		h->has_mime_version = 1;
		return P11S_OK;
	}
	return append(&h->outer, &h->outer_len, &h->outer_cap, f, n);
}

int p11s_mime__read_head(FILE *in, p11s_mime_head *h)
{
	char *line = NULL, *field = NULL;
	size_t linecap = 0, flen = 0, fcap = 0, total = 0;
	ssize_t n;
	int rc = P11S_OK, first = 1;

	memset(h, 0, sizeof(*h));
	while ((n = getline(&line, &linecap, in)) > 0) {
		size_t s = strip_eol(line, (size_t)n);

		total += (size_t)n;
		if (total > HEAD_MAX) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "header section larger than %d bytes",
			    HEAD_MAX);
			goto out;
		}
		if (first) {
			h->crlf = (size_t)n >= 2 && line[n - 2] == '\r' && line[n - 1] == '\n';
			first = 0;
		}
		if ((line[0] == ' ' || line[0] == '\t') && flen > 0 && s > 0) {
			/* A folded continuation line of the pending field (RFC 5322 §2.2.3). */
			if ((rc = append(&field, &flen, &fcap, line, (size_t)n)) < 0) {
				goto out;
			}
			continue;
		}
		if (flen > 0) {
			if ((rc = take_field(h, field, flen)) < 0) {
				goto out;
			}
			flen = 0;
		}
		if (s == 0) {
			h->has_body = 1;
			goto out;
		}
		if (field_name_len(line, s) == 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED,
			    "not an RFC 5322 message: header line without a field name: \"%.40s\"", line);
			goto out;
		}
		if ((rc = append(&field, &flen, &fcap, line, (size_t)n)) < 0) {
			goto out;
		}
	}
	if (ferror(in)) {
		rc = p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
		goto out;
	}
	if (flen > 0) {
		/* Input ended within the header section: no body. */
		if (field[flen - 1] != '\n' &&
		    (rc = append(&field, &flen, &fcap, h->crlf ? "\r\n" : "\n", h->crlf ? 2 : 1)) < 0) {
			goto out;
		}
		rc = take_field(h, field, flen);
	}
out:
	free(line);
	free(field);
	if (rc < 0) {
		p11s_mime__head_clear(h);
	}
	return rc;
}

int p11s_mime__canon_copy(FILE *in, BIO *out)
{
	unsigned char buf[65536], obuf[2 * 65536];
	size_t n;
	int prev_cr = 0;

	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		size_t o = 0;

		for (size_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !prev_cr) {
				obuf[o++] = '\r';
			}
			obuf[o++] = buf[i];
			prev_cr = buf[i] == '\r';
		}
		if (BIO_write(out, obuf, (int)o) != (int)o) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "encrypting the message failed");
		}
	}
	if (ferror(in)) {
		return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
	}
	return P11S_OK;
}

int p11s_mime__write_inner_head(BIO *out, const p11s_mime_head *h)
{
	if ((h->content_len > 0 && BIO_write(out, h->content, (int)h->content_len) !=
	        (int)h->content_len) ||
	    BIO_write(out, "\r\n", 2) != 2) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "encrypting the message failed");
	}
	return P11S_OK;
}

int p11s_mime__write_enveloped_head(FILE *out, const p11s_mime_head *h, int auth, int crlf)
{
	const char *eol = crlf ? "\r\n" : "\n";

	if (h->outer_len > 0 && fwrite(h->outer, 1, h->outer_len, out) != h->outer_len) {
		goto fail;
	}
	/* RFC 8551 §3.2: smime-type, name and filename "smime.p7m"; base64 for SMTP. */
	if (fprintf(out,
	        "MIME-Version: 1.0%s"
	        "Content-Type: application/pkcs7-mime; smime-type=%s; name=smime.p7m%s"
	        "Content-Transfer-Encoding: base64%s"
	        "Content-Disposition: attachment; filename=smime.p7m%s"
	        "%s",
	        eol, auth ? "authEnveloped-data" : "enveloped-data", eol, eol, eol, eol) < 0) {
		goto fail;
	}
	return P11S_OK;
fail:
	return p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(errno));
}

/* ---- base64 sink ---------------------------------------------------------------------- */

typedef struct b64sink {
	FILE *out;
	int crlf;
	int err;
	unsigned char pend[48]; /* 48 octets = one 64-character line */
	size_t npend;
} b64sink;

static BIO_METHOD *b64_method;
static CRYPTO_ONCE b64_once = CRYPTO_ONCE_STATIC_INIT;

static void b64_line(b64sink *s, const unsigned char *p, size_t n)
{
	unsigned char line[68];
	int l = EVP_EncodeBlock(line, p, (int)n);

	if (fwrite(line, 1, (size_t)l, s->out) != (size_t)l ||
	    fputs(s->crlf ? "\r\n" : "\n", s->out) == EOF) {
		s->err = errno ? errno : EIO;
	}
}

static int b64_write(BIO *b, const char *data, int len)
{
	b64sink *s = BIO_get_data(b);
	const unsigned char *p = (const unsigned char *)data;
	size_t n = len > 0 ? (size_t)len : 0;

	if (s == NULL || s->err) {
		return -1;
	}
	while (n > 0) {
		size_t take = sizeof(s->pend) - s->npend;

		if (take > n) {
			take = n;
		}
		memcpy(s->pend + s->npend, p, take);
		s->npend += take;
		p += take;
		n -= take;
		if (s->npend == sizeof(s->pend)) {
			b64_line(s, s->pend, s->npend);
			s->npend = 0;
		}
	}
	return s->err ? -1 : len;
}

static long b64_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	b64sink *s = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return s != NULL && !s->err;
	case BIO_CTRL_PENDING:
	case BIO_CTRL_WPENDING:
		return 0;
	default:
		return 0;
	}
}

static int b64_destroy(BIO *b)
{
	OPENSSL_free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

static void b64_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "p11s base64 sink");

	if (m != NULL && (!BIO_meth_set_write(m, b64_write) || !BIO_meth_set_ctrl(m, b64_ctrl) ||
	                     !BIO_meth_set_destroy(m, b64_destroy))) {
		BIO_meth_free(m);
		m = NULL;
	}
	b64_method = m;
}

BIO *p11s_mime__b64_sink(FILE *out, int crlf)
{
	b64sink *s;
	BIO *b;

	if (!CRYPTO_THREAD_run_once(&b64_once, b64_method_init) || b64_method == NULL ||
	    (b = BIO_new(b64_method)) == NULL) {
		p11s_error__ossl(P11S_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL) {
		BIO_free(b);
		p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		return NULL;
	}
	s->out = out;
	s->crlf = crlf;
	BIO_set_data(b, s);
	BIO_set_init(b, 1);
	return b;
}

int p11s_mime__b64_finish(BIO *b)
{
	b64sink *s = BIO_get_data(b);

	if (s->npend > 0 && !s->err) {
		b64_line(s, s->pend, s->npend);
		s->npend = 0;
	}
	if (s->err) {
		return p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(s->err));
	}
	return P11S_OK;
}

/* ---- reading ------------------------------------------------------------------------- */

void p11s_mime__media_type(const char *value, char *buf, size_t len)
{
	size_t i = 0;

	if (len == 0) {
		return;
	}
	while (*value == ' ' || *value == '\t') {
		value++;
	}
	for (; *value && *value != ';' && *value != ' ' && *value != '\t' && *value != '(' &&
	       i + 1 < len;
	     value++) {
		buf[i++] = (char)tolower((unsigned char)*value);
	}
	buf[i] = '\0';
}

char *p11s_mime__param(const char *value, const char *attr)
{
	const char *p = strchr(value, ';');
	size_t alen = strlen(attr);

	while (p != NULL) {
		const char *name, *v;
		char *res, *q;

		p++;
		while (*p == ' ' || *p == '\t') {
			p++;
		}
		name = p;
		while (*p && *p != '=' && *p != ';') {
			p++;
		}
		if (*p != '=') {
			if (*p == '\0') {
				break;
			}
			continue; /* at ';': the next parameter */
		}
		v = p + 1;
		{
			size_t nl = (size_t)(p - name);

			while (nl > 0 && (name[nl - 1] == ' ' || name[nl - 1] == '\t')) {
				nl--;
			}
			while (*v == ' ' || *v == '\t') {
				v++;
			}
			if ((res = malloc(strlen(v) + 1)) == NULL) {
				return NULL;
			}
			q = res;
			if (*v == '"') {
				/* quoted-string (RFC 2045 §5.1, RFC 5322 §3.2.4) */
				for (v++; *v && *v != '"'; v++) {
					if (*v == '\\' && v[1]) {
						v++;
					}
					*q++ = *v;
				}
				if (*v == '"') {
					v++;
				}
			} else {
				for (; *v && *v != ';' && *v != ' ' && *v != '\t'; v++) {
					*q++ = *v;
				}
			}
			*q = '\0';
			if (nl == alen && strncasecmp(name, attr, alen) == 0) {
				return res;
			}
			free(res);
			p = strchr(v, ';');
		}
	}
	return NULL;
}

static int ends_with_p7m(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n >= 4 && strcasecmp(s + n - 4, ".p7m") == 0;
}

int p11s_mime__check_enveloped(const p11s_mime_head *h)
{
	char type[128];
	char *st = NULL, *name = NULL, *fname = NULL;
	int rc = P11S_OK;

	if (h->content_type == NULL) {
		return p11s_error__set(P11S_ERR_MALFORMED,
		    "not an S/MIME encrypted message: no Content-Type (expected application/pkcs7-mime)");
	}
	p11s_mime__media_type(h->content_type, type, sizeof(type));
	st = p11s_mime__param(h->content_type, "smime-type");
	name = p11s_mime__param(h->content_type, "name");
	if (h->disposition != NULL) {
		fname = p11s_mime__param(h->disposition, "filename");
	}
	if (strcmp(type, "application/pkcs7-mime") == 0 ||
	    strcmp(type, "application/x-pkcs7-mime") == 0) {
		/* RFC 8551 §3.2.2: receivers go by smime-type; without it the CMS type decides. */
		if (st != NULL && strcasecmp(st, "enveloped-data") != 0 &&
		    strcasecmp(st, "authEnveloped-data") != 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED,
			    "not an encrypted message: smime-type=%s (expected enveloped-data or "
			    "authEnveloped-data)", st);
		}
	} else if (strcmp(type, "application/octet-stream") == 0 &&
	           (ends_with_p7m(name) || ends_with_p7m(fname))) {
		/* RFC 8551 §3.9: S/MIME recognised by a .p7m name on octet-stream. */
	} else {
		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "not an S/MIME encrypted message: Content-Type %s (expected "
		    "application/pkcs7-mime)", type);
	}
	free(st);
	free(name);
	free(fname);
	return rc;
}

int p11s_mime__decode_body(FILE *in, const p11s_mime_head *h, BIO *der)
{
	unsigned char buf[49152], obuf[49152];
	EVP_ENCODE_CTX *ectx = NULL;
	char cte[32] = "";
	size_t n;
	int base64, rc = P11S_OK, outl, c;

	if (h->cte != NULL) {
		p11s_mime__media_type(h->cte, cte, sizeof(cte));
	}
	if (strcmp(cte, "base64") == 0) {
		base64 = 1;
	} else if (strcmp(cte, "binary") == 0) {
		base64 = 0;
	} else {
		/* No or a 7bit/8bit encoding: DER starts with a SEQUENCE tag, base64 never does. */
		while ((c = fgetc(in)) != EOF && isspace(c)) {
		}
		if (c == EOF) {
			return p11s_error__set(P11S_ERR_MALFORMED, "the message has an empty body");
		}
		base64 = c != 0x30;
		if (ungetc(c, in) == EOF) {
			return p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
		}
	}
	if (base64 && (ectx = EVP_ENCODE_CTX_new()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (base64) {
		EVP_DecodeInit(ectx);
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (!base64) {
			if (BIO_write(der, buf, (int)n) != (int)n) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			continue;
		}
		/* 48 KiB of base64 decode to at most 36 KiB: obuf is large enough. */
		if (EVP_DecodeUpdate(ectx, obuf, &outl, buf, (int)n) < 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "the message body is not valid base64");
			goto out;
		}
		if (outl > 0 && BIO_write(der, obuf, outl) != outl) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (ferror(in)) {
		rc = p11s_error__set(P11S_ERR_IO, "reading the message: %s", strerror(errno));
		goto out;
	}
	if (base64) {
		if (EVP_DecodeFinal(ectx, obuf, &outl) < 0) {
			rc = p11s_error__set(P11S_ERR_MALFORMED, "the message body is not valid base64");
			goto out;
		}
		if (outl > 0 && BIO_write(der, obuf, outl) != outl) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
out:
	EVP_ENCODE_CTX_free(ectx);
	return rc;
}

/*
 * Look at the start of the decrypted entity: does it begin with a header section (or an empty
 * line), and does that section hold MIME-Version?
 */
static void inspect_entity(FILE *plain, int *is_entity, int *has_mv)
{
	char *line = NULL;
	size_t cap = 0, total = 0;
	ssize_t n;
	int first = 1;

	*is_entity = 0;
	*has_mv = 0;
	while ((n = getline(&line, &cap, plain)) > 0 && total < HEAD_MAX) {
		size_t s = strip_eol(line, (size_t)n);

		total += (size_t)n;
		if (s == 0) {
			*is_entity = 1;
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			if (first) {
				break;
			}
			continue;
		}
		if (field_name_len(line, s) == 0) {
			break;
		}
		first = 0;
		*is_entity = 1;
		if (s > 12 && strncasecmp(line, "MIME-Version", 12) == 0 &&
		    field_name_len(line, s) == 12) {
			*has_mv = 1;
		}
	}
	if (n <= 0 && !first) {
		*is_entity = 1; /* only header fields */
	}
	free(line);
}

/* Non-zero when field `name` (of length n) is among the entity's non-structural fields. */
static int protected_name(const p11s_mime_fields *f, const char *name, size_t n)
{
	for (size_t i = 0; i < f->n; i++) {
		if (strlen(f->name[i]) == n && strncasecmp(f->name[i], name, n) == 0 &&
		    strncasecmp(name, "Content-", 8) != 0 && strncasecmp(name, "MIME-Version", 12) != 0) {
			return 1;
		}
	}
	return 0;
}

/*
 * Signed, then encrypted (wrap): the Cryptographic Payload is part 1 of the multipart/signed
 * the decryption gave (RFC 9788 §2.1.1). Its header fields, when that part says hp="cipher",
 * in `*prot`; 0 when there is no such part. Only the header of part 1 is read.
 */
static int signed_payload_fields(FILE *plain, const char *ct, p11s_mime_fields *prot)
{
	char *boundary = NULL, *line = NULL, *hp = NULL;
	const char *pct;
	size_t cap = 0, bl;
	ssize_t n;
	int rc = 0;

	memset(prot, 0, sizeof(*prot));
	if (strncasecmp(ct, "multipart/signed", 16) != 0 ||
	    (boundary = p11s_mime__ctype_param(ct, "boundary")) == NULL || fseek(plain, 0, SEEK_SET) != 0) {
		free(boundary);
		return 0;
	}
	bl = strlen(boundary);
	/* RFC 2046 §5.1.1: the first line that is "--" boundary starts part 1. */
	while ((n = getline(&line, &cap, plain)) > 0) {
		size_t s = strip_eol(line, (size_t)n);

		if (s >= bl + 2 && line[0] == '-' && line[1] == '-' && memcmp(line + 2, boundary, bl) == 0) {
			off_t at = ftello(plain);

			if (at >= 0 && (rc = p11s_mime__header_fields(plain, at, -1, prot)) == P11S_OK &&
			    (pct = p11s_mime__fields_get(prot, "Content-Type")) != NULL &&
			    (hp = p11s_mime__ctype_param(pct, "hp")) != NULL && strcmp(hp, "cipher") == 0) {
				rc = 1;
			} else if (rc == P11S_OK) {
				p11s_mime__fields_free(prot);
			}
			break;
		}
	}
	free(hp);
	free(line);
	free(boundary);
	return rc;
}

/* Content-* and MIME-Version: the fields that describe the entity, not the message. */
static int structural(const char *name, size_t n)
{
	return (n >= 8 && strncasecmp(name, "Content-", 8) == 0) ||
	    (n == 12 && strncasecmp(name, "MIME-Version", 12) == 0);
}

/* The end of the field at `p` (its continuation lines included) within `end`. */
static const char *field_stop(const char *p, const char *end)
{
	const char *e = p;

	do {
		const char *nlp = memchr(e, '\n', (size_t)(end - e));

		e = nlp ? nlp + 1 : end;
	} while (e < end && (*e == ' ' || *e == '\t'));
	return e;
}

/*
 * The outer header section with the Payload's fields in place (RFC 9788 §4.5: the protected
 * values are the ones to show): an outer field whose name `prot` carries gives way, at its
 * first occurrence, to every protected field of that name; the outer fields it does not carry
 * (trace fields added in transit) stay where they are; protected fields that were not outside
 * at all (confidential ones, §3.2: Comments, Keywords) follow them. HP-Outer (§2.2, for
 * HP-aware readers only) and structural fields of `prot` are not written. So a message that
 * p11smime encrypted comes back in its original order.
 */
static int write_merged_outer(FILE *out, const p11s_mime_head *h, const p11s_mime_fields *prot,
    const char *eol)
{
	unsigned char *done = prot->n > 0 ? calloc(prot->n, 1) : NULL;
	/* No outer fields at all (a bare S/MIME part, as a mail client hands over): h->outer NULL. */
	const char *p = h->outer, *end = h->outer != NULL ? h->outer + h->outer_len : NULL;
	int rc = -1;

	if (prot->n > 0 && done == NULL) {
		return -1;
	}
	for (; p != NULL && p < end;) {
		const char *e = field_stop(p, end);
		size_t nl = field_name_len(p, (size_t)(e - p));

		if (nl > 0 && protected_name(prot, p, nl)) {
			for (size_t i = 0; i < prot->n; i++) {
				if (!done[i] && strlen(prot->name[i]) == nl &&
				    strncasecmp(prot->name[i], p, nl) == 0) {
					done[i] = 1;
					if (fprintf(out, "%s: %s%s", prot->name[i], prot->value[i], eol) < 0) {
						goto out;
					}
				}
			}
		} else if (fwrite(p, 1, (size_t)(e - p), out) != (size_t)(e - p)) {
			goto out;
		}
		p = e;
	}
	for (size_t i = 0; i < prot->n; i++) {
		if (!done[i] && !structural(prot->name[i], strlen(prot->name[i])) &&
		    strcasecmp(prot->name[i], "HP-Outer") != 0 &&
		    fprintf(out, "%s: %s%s", prot->name[i], prot->value[i], eol) < 0) {
			goto out;
		}
	}
	rc = 0;
out:
	free(done);
	return rc;
}

/*
 * Take the parameter `name` out of a raw Content-Type field of `*n` octets, folded or not:
 * hp and hp-legacy-display (RFC 9788 §2.1.1, §2.1.2), since in the rendered message the
 * entity is no longer a Cryptographic Payload. The other parameters stay as they were
 * written; quoted strings are skipped.
 */
static void drop_param(char *f, size_t *n, const char *name)
{
	size_t i = 0, len = *n, nl = strlen(name);
	int quoted = 0;

	for (; i < len; i++) {
		size_t j, k;

		if (quoted) {
			if (f[i] == '\\' && i + 1 < len) {
				i++;
			} else if (f[i] == '"') {
				quoted = 0;
			}
			continue;
		}
		if (f[i] == '"') {
			quoted = 1;
			continue;
		}
		if (f[i] != ';') {
			continue;
		}
		for (j = i + 1; j < len && strchr(" \t\r\n", f[j]) != NULL; j++) {
		}
		if (len - j < nl + 1 || strncasecmp(f + j, name, nl) != 0) {
			continue;
		}
		for (k = j + nl; k < len && (f[k] == ' ' || f[k] == '\t'); k++) {
		}
		if (k >= len || f[k] != '=') {
			continue;
		}
		for (k++; k < len && (f[k] == ' ' || f[k] == '\t'); k++) {
		}
		if (k < len && f[k] == '"') {
			for (k++; k < len && f[k] != '"'; k++) {
				k += f[k] == '\\' && k + 1 < len;
			}
			k += k < len;
		} else {
			while (k < len && strchr("; \t\r\n", f[k]) == NULL) {
				k++;
			}
		}
		memmove(f + i, f + k, len - k);
		len -= k - i;
		i--; /* look at what now follows */
	}
	*n = len;
}

/*
 * The decrypted entity's own header section, for the rendered message: its Content-* fields
 * only (the others were merged into the outer section), the hp parameter dropped, in the
 * message's line ends. Leaves `plain` at the body.
 */
static int write_entity_content_fields(FILE *out, FILE *plain, const char *eol)
{
	char *line = NULL, *field = NULL;
	size_t cap = 0, flen = 0, fcap = 0;
	ssize_t n;
	int rc = -1, eof = 0;

	while (!eof) {
		size_t s = 0;

		n = getline(&line, &cap, plain);
		if (n > 0) {
			s = strip_eol(line, (size_t)n);
		}
		eof = n <= 0 || s == 0;
		/* A field ends where a line does not continue it (or the section ends). */
		if (flen > 0 && (eof || (line[0] != ' ' && line[0] != '\t'))) {
			size_t nl = field_name_len(field, flen);

			if (nl >= 8 && strncasecmp(field, "Content-", 8) == 0) {
				if (nl == 12 && strncasecmp(field, "Content-Type", 12) == 0) {
					drop_param(field, &flen, "hp");
					drop_param(field, &flen, "hp-legacy-display");
				}
				if (fwrite(field, 1, flen, out) != flen) {
					goto out;
				}
			}
			flen = 0;
		}
		if (eof) {
			break;
		}
		if (flen + s + 2 > fcap) {
			char *nf = realloc(field, fcap = flen + s + 64);

			if (nf == NULL) {
				goto out;
			}
			field = nf;
		}
		memcpy(field + flen, line, s);
		memcpy(field + flen + s, eol, strlen(eol));
		flen += s + strlen(eol);
	}
	rc = ferror(plain) || fputs(eol, out) == EOF ? -1 : 0;
out:
	free(field);
	free(line);
	return rc;
}

/*
 * RFC 9788 §4.5.3.2: a text/plain payload marked hp-legacy-display="1" begins with a Legacy
 * Display Element, copies of the obscured fields ("Subject: ..." lines) and a blank line,
 * for readers that cannot show protected fields. The rendered message shows the fields
 * themselves, so the element goes. Only lines that are header fields are taken, up to the
 * blank line; anything else leaves the body as it was (nothing of the text is lost).
 */
static int skip_legacy_display(FILE *plain)
{
	off_t at = ftello(plain);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int done = 0;

	if (at < 0) {
		return -1;
	}
	while (!done && (n = getline(&line, &cap, plain)) > 0) {
		size_t s = strip_eol(line, (size_t)n);

		if (s == 0) {
			done = 1;
		} else if (line[0] != ' ' && line[0] != '\t' && field_name_len(line, s) == 0) {
			break;
		}
	}
	free(line);
	return done ? 0 : fseeko(plain, at, SEEK_SET);
}

/* The payload shows a Legacy Display Element we can take out: text/plain, not encoded. */
static int has_legacy_display(const p11s_mime_fields *f, const char *ct)
{
	const char *cte = p11s_mime__fields_get(f, "Content-Transfer-Encoding");
	char *v = p11s_mime__ctype_param(ct, "hp-legacy-display");
	int yes = v != NULL && strcmp(v, "1") == 0 && strncasecmp(ct, "text/plain", 10) == 0 &&
	    (ct[10] == '\0' || ct[10] == ';' || ct[10] == ' ' || ct[10] == '\t') &&
	    (cte == NULL || strcasecmp(cte, "7bit") == 0 || strcasecmp(cte, "8bit") == 0 ||
	        strcasecmp(cte, "binary") == 0);

	free(v);
	return yes;
}

/*
 * RFC 9788 §4.5 for a reader that knows nothing of it: with an hp parameter on the decrypted
 * entity, its header fields take the place of the outer ones (write_merged_outer()), then
 * come MIME-Version and the entity's Content-* fields without hp. Writes the header section
 * and leaves `plain` at the body (*done 1). A signed entity whose part 1 is the Payload is
 * written untouched after the merged outer fields (*done 2, `plain` at its start). 0 in
 * *done: not protected, nothing written.
 */
static int write_rendered_head(FILE *out, const p11s_mime_head *h, FILE *plain, int *done,
    p11s_header_protection **hpr)
{
	p11s_mime_fields f = { 0 }, prot;
	const char *ct, *eol = h->crlf ? "\r\n" : "\n";
	char *hp;
	int rc, legacy;

	*done = 0;
	if ((rc = p11s_mime__header_fields(plain, 0, -1, &f)) < 0) {
		return rc;
	}
	if ((ct = p11s_mime__fields_get(&f, "Content-Type")) == NULL ||
	    (hp = p11s_mime__ctype_param(ct, "hp")) == NULL) {
		/*
		 * Not protected itself: maybe signed inside, with the payload in part 1. Then the
		 * outer fields that part carries are replaced by its values and the signed entity
		 * is written untouched (its signature still verifies).
		 */
		if (ct != NULL && (rc = signed_payload_fields(plain, ct, &prot)) == 1) {
			if (hpr != NULL && (rc = p11s_mime__hp_report(&prot, "cipher", h->outer,
			                        h->outer_len, 1, hpr)) < 0) {
				p11s_mime__fields_free(&prot);
				p11s_mime__fields_free(&f);
				return rc;
			}
			rc = write_merged_outer(out, h, &prot, eol);
			p11s_mime__fields_free(&prot);
			if (rc < 0 || (p11s_mime__fields_get(&f, "MIME-Version") == NULL &&
			                  fprintf(out, "MIME-Version: 1.0%s", eol) < 0)) {
				goto wfail;
			}
			p11s_mime__fields_free(&f);
			*done = 2;
			return fseek(plain, 0, SEEK_SET) == 0 ? P11S_OK
			                                      : p11s_error__set(P11S_ERR_IO, "cannot seek");
		}
		p11s_mime__fields_free(&f);
		if (rc < 0) {
			return rc;
		}
		return fseek(plain, 0, SEEK_SET) == 0 ? P11S_OK
		                                      : p11s_error__set(P11S_ERR_IO, "cannot seek");
	}
	if (hpr != NULL && (rc = p11s_mime__hp_report(&f, hp, h->outer, h->outer_len, 0, hpr)) < 0) {
		free(hp);
		p11s_mime__fields_free(&f);
		return rc;
	}
	free(hp);
	legacy = has_legacy_display(&f, ct);
	if (write_merged_outer(out, h, &f, eol) < 0 || fprintf(out, "MIME-Version: 1.0%s", eol) < 0) {
		goto wfail;
	}
	p11s_mime__fields_free(&f);
	if (fseek(plain, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "reading the decrypted content: %s", strerror(errno));
	}
	if (write_entity_content_fields(out, plain, eol) < 0) {
		return p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(errno));
	}
	if (legacy && skip_legacy_display(plain) < 0) {
		return p11s_error__set(P11S_ERR_IO, "reading the decrypted content: %s", strerror(errno));
	}
	*done = 1;
	return P11S_OK;
wfail:
	p11s_mime__fields_free(&f);
	return p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(errno));
}

static int write_decrypted(FILE *out, const p11s_mime_head *h, FILE *plain,
    p11s_header_protection **hpr);

int p11s_mime__write_decrypted(FILE *out, const p11s_mime_head *h, FILE *plain)
{
	return write_decrypted(out, h, plain, NULL);
}

int p11s_mime__write_decrypted_hp(FILE *out, const p11s_mime_head *h, FILE *plain,
    p11s_header_protection **hpr)
{
	int rc;

	*hpr = NULL;
	if ((rc = write_decrypted(out, h, plain, hpr)) < 0) {
		p11s_header_protection_free(*hpr);
		*hpr = NULL;
	}
	return rc;
}

static int write_decrypted(FILE *out, const p11s_mime_head *h, FILE *plain,
    p11s_header_protection **hpr)
{
	unsigned char buf[65536];
	const char *eol = h->crlf ? "\r\n" : "\n";
	size_t n;
	int is_entity, has_mv, pending_cr = 0;

	if (fseek(plain, 0, SEEK_SET) != 0) {
		goto rfail;
	}
	inspect_entity(plain, &is_entity, &has_mv);
	if (fseek(plain, 0, SEEK_SET) != 0) {
		goto rfail;
	}
	if (is_entity) {
		int rendered, rc;

		if ((rc = write_rendered_head(out, h, plain, &rendered, hpr)) < 0) {
			return rc;
		}
		if (rendered) {
			goto body;
		}
	}
	if (h->outer_len > 0 && fwrite(h->outer, 1, h->outer_len, out) != h->outer_len) {
		goto wfail;
	}
	if (is_entity && !has_mv && fprintf(out, "MIME-Version: 1.0%s", eol) < 0) {
		goto wfail;
	}
	if (!is_entity && fputs(eol, out) == EOF) {
		goto wfail;
	}
body:
	while ((n = fread(buf, 1, sizeof(buf), plain)) > 0) {
		if (h->crlf) {
			if (fwrite(buf, 1, n, out) != n) {
				goto wfail;
			}
			continue;
		}
		/* LF convention: CRLF -> LF; a CR at the end of a chunk waits for the next byte. */
		size_t i = 0;

		if (pending_cr) {
			pending_cr = 0;
			if (buf[0] != '\n' && putc('\r', out) == EOF) {
				goto wfail;
			}
		}
		while (i < n) {
			unsigned char *cr = memchr(buf + i, '\r', n - i);
			size_t span = cr ? (size_t)(cr - (buf + i)) : n - i;

			if (span > 0 && fwrite(buf + i, 1, span, out) != span) {
				goto wfail;
			}
			i += span;
			if (cr == NULL) {
				break;
			}
			if (i + 1 == n) {
				pending_cr = 1; /* decided by the next chunk */
				i++;
			} else if (buf[i + 1] == '\n') {
				i++; /* drop the CR of CRLF */
			} else {
				if (putc('\r', out) == EOF) {
					goto wfail;
				}
				i++;
			}
		}
	}
	if (ferror(plain)) {
		goto rfail;
	}
	if (pending_cr && putc('\r', out) == EOF) {
		goto wfail;
	}
	if (fflush(out) != 0) {
		goto wfail;
	}
	return P11S_OK;
rfail:
	return p11s_error__set(P11S_ERR_IO, "reading the decrypted content: %s", strerror(errno));
wfail:
	return p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(errno));
}

/* Unit tests of the signing side of src/mime: header split, canonical entity, re-encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <p11smime/error.h>

#include "mime/mime.h"

/* A seekable FILE holding `len` bytes. */
static FILE *input(const char *data, size_t len)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	rewind(f);
	return f;
}

/* The whole content of `f` from its start, NUL-terminated; `*len` its size. */
static char *slurp(FILE *f, size_t *len)
{
	char *buf;
	long n;

	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* The entity of `m`, as p11s_mime__entity_write() feeds it. */
static char *entity_bytes(p11s_mime_msg *m, size_t *len)
{
	FILE *f = tmpfile();
	char *e;

	assert_non_null(f);
	assert_int_equal(p11s_mime__entity_write(m, p11s_mime__file_sink, f), 0);
	e = slurp(f, len);
	fclose(f);
	return e;
}

/* Prepare `msg`; return the entity bytes. */
static char *entity_of(const char *msg, size_t msglen, p11s_mime_path *path, size_t *len)
{
	FILE *in = input(msg, msglen);
	p11s_mime_msg *m = NULL;
	char *e;

	assert_int_equal(p11s_mime__prepare(&m, in, NULL, NULL), 0);
	e = entity_bytes(m, len);
	assert_int_equal((long long)*len, p11s_mime__entity_size(m));
	if (path != NULL) {
		*path = p11s_mime__path(m);
	}
	p11s_mime__free(m);
	fclose(in);
	return e;
}

/* Every LF is preceded by CR (RFC 8551 §3.1.1). */
static void assert_crlf_only(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n') {
			assert_true(i > 0 && p[i - 1] == '\r');
		}
	}
}

static void assert_7bit(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		assert_true((unsigned char)p[i] < 0x80 && p[i] != '\0');
	}
}

static void test_mime__lf_to_crlf(void **state)
{
	static const char msg[] = "From: a@example.org\nSubject: s\n\nline1\nline2\n";
	p11s_mime_path path;
	size_t len;
	char *e = entity_of(msg, sizeof(msg) - 1, &path, &len);

	assert_int_equal(path, P11S_MIME_RAW);
	assert_string_equal(e, "Content-Type: text/plain; charset=us-ascii\r\n\r\nline1\r\nline2\r\n");
	free(e);
}

static void test_mime__7bit_byte_exact(void **state)
{
	static const char msg[] = "From: a@example.org\r\nContent-Type: text/plain; charset=us-ascii\r\n"
	                          "Content-Transfer-Encoding: 7bit\r\n\r\ntrailing blank \r\n"
	                          "From the start\r\n-- \r\nsig";
	p11s_mime_path path;
	size_t len;
	char *e = entity_of(msg, sizeof(msg) - 1, &path, &len);
	const char *body = strstr(msg, "Content-Type");

	assert_int_equal(path, P11S_MIME_RAW);
	assert_int_equal(len, strlen(body));
	assert_memory_equal(e, body, len);
	free(e);
}

static void test_mime__headers_split(void **state)
{
	static const char msg[] = "Received: by x\n\tfolded\nFrom: a@example.org\nMIME-Version: 1.0\n"
	                          "Content-Type: text/plain;\n charset=us-ascii\nTo: b@example.org\n"
	                          "content-disposition: inline\nSubject: s\n\nbody\n";
	FILE *in = input(msg, sizeof(msg) - 1), *out = tmpfile();
	p11s_mime_msg *m = NULL;
	size_t len;
	char *e, *o;

	assert_int_equal(p11s_mime__prepare(&m, in, NULL, NULL), 0);
	e = entity_bytes(m, &len);
	/* Content-* fields move, raw and in order; MIME-Version and the outer fields stay out. */
	assert_string_equal(e, "Content-Type: text/plain;\r\n charset=us-ascii\r\n"
	                       "content-disposition: inline\r\n\r\nbody\r\n");
	assert_int_equal(p11s_mime__write_pkcs7_head(m, out, "signed-data"), 0);
	o = slurp(out, &len);
	assert_string_equal(o, "Received: by x\r\n\tfolded\r\nFrom: a@example.org\r\nTo: b@example.org\r\n"
	                       "Subject: s\r\nMIME-Version: 1.0\r\n"
	                       "Content-Type: application/pkcs7-mime; smime-type=signed-data; "
	                       "name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n"
	                       "Content-Disposition: attachment; filename=smime.p7m\r\n\r\n");
	free(e);
	free(o);
	fclose(out);
	fclose(in);
	p11s_mime__free(m);
}

static void test_mime__8bit_text_to_qp(void **state)
{
	static const char msg[] = "From: a@example.org\nContent-Type: text/plain; charset=utf-8\n"
	                          "Content-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9f" "e  \n"
	                          "From here\nend\n";
	p11s_mime_path path;
	size_t len;
	char *e = entity_of(msg, sizeof(msg) - 1, &path, &len);

	assert_int_equal(path, P11S_MIME_REENCODED);
	assert_crlf_only(e, len);
	assert_7bit(e, len);
	assert_non_null(strstr(e, "Content-Transfer-Encoding: quoted-printable\r\n"));
	assert_null(strstr(e, "8bit"));
	assert_non_null(strstr(e, "Gr=C3=BC=C3=9Fe =20\r\n")); /* trailing blank protected */
	assert_non_null(strstr(e, "\r\n=46rom here\r\n"));     /* RFC 8551 §3.1.3 */
	free(e);
}

static void test_mime__binary_to_base64(void **state)
{
	static const char msg[] = "From: a@example.org\nContent-Type: multipart/mixed; boundary=XX\n\n"
	                          "--XX\nContent-Type: text/plain\n\nplain ascii\n"
	                          "--XX\nContent-Type: application/octet-stream\n"
	                          "Content-Transfer-Encoding: binary\n\n\x01\x00\x02\xff\n--XX--\n";
	p11s_mime_path path;
	size_t len;
	char *e = entity_of(msg, sizeof(msg) - 1, &path, &len);

	assert_int_equal(path, P11S_MIME_REENCODED);
	assert_crlf_only(e, len);
	assert_7bit(e, len);
	assert_non_null(strstr(e, "Content-Transfer-Encoding: base64\r\n\r\nAQAC/w==\r\n"));
	assert_non_null(strstr(e, "Content-Type: text/plain\r\n\r\nplain ascii\r\n--XX\r\n"));
	free(e);
}

static void test_mime__default_charset(void **state)
{
	static const char utf8[] = "From: a@example.org\n\n\xe2\x82\xac 5\n";
	static const char latin1[] = "From: a@example.org\n\n\xa4 5\n";
	size_t len;
	char *e = entity_of(utf8, sizeof(utf8) - 1, NULL, &len);

	assert_non_null(strstr(e, "Content-Type: text/plain; charset=utf-8\r\n"));
	assert_non_null(strstr(e, "Content-Transfer-Encoding: quoted-printable\r\n"));
	assert_non_null(strstr(e, "=E2=82=AC 5\r\n"));
	free(e);
	e = entity_of(latin1, sizeof(latin1) - 1, NULL, &len);
	assert_non_null(strstr(e, "charset=unknown-8bit"));
	free(e);
}

static void test_mime__headers_only(void **state)
{
	static const char msg[] = "From: a@example.org\nSubject: no body";
	size_t len;
	char *e = entity_of(msg, sizeof(msg) - 1, NULL, &len);

	assert_string_equal(e, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	free(e);
}

static void expect_malformed(const char *msg, size_t len)
{
	FILE *in = input(msg, len);
	p11s_mime_msg *m = NULL;

	assert_int_equal(p11s_mime__prepare(&m, in, NULL, NULL), P11S_ERR_MALFORMED);
	assert_null(m);
	fclose(in);
}

static void test_mime__malformed(void **state)
{
	char longline[1100];

	expect_malformed("", 0);
	expect_malformed("hello world\n\nbody\n", 18);
	expect_malformed(" continuation\nFrom: a\n\nx\n", 25);
	expect_malformed("From: a\nSub\0ject: x\n\nx\n", 22);
	expect_malformed("From sender Mon Jan 1\nFrom: a\n\nx\n", 33);
	expect_malformed("From: a\rTo: b\n\nx\n", 17);
	expect_malformed("\nbody only\n", 11);
	memcpy(longline, "Subject: ", 9);
	memset(longline + 9, 'a', 1000);
	memcpy(longline + 1009, "\n\nx\n", 4);
	expect_malformed(longline, 1013);
}

/* RFC 2045 §6.8: 76 characters per line, CRLF. */
/* A sink collecting into a FILE; p == NULL (start over) truncates it. */
static int collect(void *arg, const void *p, size_t n)
{
	FILE *f = arg;

	if (p == NULL) {
		assert_int_equal(ftruncate(fileno(f), 0), 0);
		rewind(f);
		return P11S_OK;
	}
	assert_int_equal(fwrite(p, 1, n, f), n);
	return P11S_OK;
}

/*
 * The digest pass (the sink given to prepare) sees exactly the bytes written out later, also
 * when the one-pass raw path finds 8-bit data, a long line or a nested 8bit CTE at the very
 * end and the sink must start over with the re-encoded entity.
 */
static void test_mime__sink_matches_output(void **state)
{
	static const char *const msgs[] = {
		"From: a@example.org\n\nline one\nline two\r\n\n",
		"From: a@example.org\nContent-Type: text/plain\n\nascii first\nthen caf\xc3\xa9\n",
		("From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
		 "Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nhi\n--b--\n"),
		"From: a@example.org\n\nshort\nCONTENT-TRANSFER-ENCODING: BINARY",
		"From: a@example.org\n\nno line end at all",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		FILE *in = input(msgs[i], strlen(msgs[i])), *fed = tmpfile();
		p11s_mime_msg *m = NULL;
		size_t flen, elen;
		char *f, *e;

		assert_int_equal(p11s_mime__prepare(&m, in, collect, fed), 0);
		f = slurp(fed, &flen);
		e = entity_bytes(m, &elen);
		assert_int_equal(flen, elen);
		assert_memory_equal(f, e, elen);
		assert_int_equal((long long)elen, p11s_mime__entity_size(m));
		free(f);
		free(e);
		p11s_mime__free(m);
		fclose(fed);
		fclose(in);
	}
}

/* The 7-bit body is read twice (digest, then output): a change in between is an error. */
static void test_mime__input_changed(void **state)
{
	static const char msg[] = "From: a@example.org\n\nbody\n";
	FILE *in = input(msg, sizeof(msg) - 1), *out = tmpfile();
	p11s_mime_msg *m = NULL;

	(void)state;
	assert_int_equal(p11s_mime__prepare(&m, in, NULL, NULL), 0);
	assert_int_equal(p11s_mime__path(m), P11S_MIME_RAW);
	assert_int_equal(fseek(in, 0, SEEK_END), 0);
	assert_int_equal(fputs("appended\n", in) >= 0, 1);
	assert_int_equal(fflush(in), 0);
	assert_int_equal(p11s_mime__entity_write(m, p11s_mime__file_sink, out), P11S_ERR_IO);
	p11s_mime__free(m);
	fclose(out);
	fclose(in);
}

static void test_mime__b64w(void **state)
{
	FILE *out = tmpfile();
	BIO *b = p11s_mime__b64w_new(out);
	unsigned char data[100];
	size_t len;
	char *o;

	for (size_t i = 0; i < sizeof(data); i++) {
		data[i] = (unsigned char)i;
	}
	assert_non_null(b);
	assert_int_equal(BIO_write(b, data, 50), 50);
	assert_int_equal(BIO_write(b, data + 50, 50), 50);
	assert_int_equal(p11s_mime__b64w_finish(b), 0);
	BIO_free(b);
	o = slurp(out, &len);
	assert_string_equal(o, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\r\n"
	                       "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiYw==\r\n");
	free(o);
	fclose(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mime__lf_to_crlf),
		cmocka_unit_test(test_mime__7bit_byte_exact),
		cmocka_unit_test(test_mime__headers_split),
		cmocka_unit_test(test_mime__8bit_text_to_qp),
		cmocka_unit_test(test_mime__binary_to_base64),
		cmocka_unit_test(test_mime__default_charset),
		cmocka_unit_test(test_mime__headers_only),
		cmocka_unit_test(test_mime__malformed),
		cmocka_unit_test(test_mime__b64w),
		cmocka_unit_test(test_mime__sink_matches_output),
		cmocka_unit_test(test_mime__input_changed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

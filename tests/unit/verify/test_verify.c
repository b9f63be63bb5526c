/* Unit tests of the verify path's MIME layer: CRLF canonicalisation, boundary scanning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <p11smime/error.h>
#include <p11smime/verify.h>

#include "mime/signed.h"

typedef struct sinkbuf {
	char data[65536];
	size_t len;
} sinkbuf;

static int sink(const unsigned char *p, size_t n, void *payload)
{
	sinkbuf *b = payload;

	assert_true(b->len + n < sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

/* Feed `in` in chunks of `chunk` bytes and compare with `want`. */
static void canon_case(const char *in, const char *want, size_t chunk)
{
	p11s_mime_canon c = { 0 };
	sinkbuf b = { .len = 0 };
	size_t n = strlen(in);

	for (size_t i = 0; i < n; i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;

		assert_int_equal(p11s_mime__canon_feed(&c, (const unsigned char *)in + i, k, sink, &b), 0);
	}
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data, want, b.len);
}

static void test_verify__canon(void **state)
{
	(void)state;
	for (size_t chunk = 1; chunk <= 8; chunk++) {
		canon_case("a\nb\n", "a\r\nb\r\n", chunk);
		canon_case("a\r\nb\r\n", "a\r\nb\r\n", chunk);
		canon_case("a\r\n\nb", "a\r\n\r\nb", chunk);
		canon_case("\n\n", "\r\n\r\n", chunk);
		canon_case("bare\rcr\n", "bare\rcr\r\n", chunk);
		canon_case("", "", chunk);
	}
	/* CR and LF on both sides of canon_feed's internal 8 KiB pieces, and of the caller's. */
	for (size_t at = 8189; at <= 8193; at++) {
		static char in[20000], want[20100];
		size_t w = 0;

		memset(in, 'x', sizeof(in) - 1);
		in[sizeof(in) - 1] = '\0';
		in[at] = '\r';
		in[at + 1] = '\n';
		in[at + 3] = '\n';
		for (size_t i = 0; in[i] != '\0'; i++) {
			if (in[i] == '\n' && in[i - 1] != '\r') {
				want[w++] = '\r';
			}
			want[w++] = in[i];
		}
		want[w] = '\0';
		canon_case(in, want, sizeof(in));
		canon_case(in, want, 8192);
		canon_case(in, want, 4097);
	}
}

static FILE *file_of(const char *s)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	assert_int_equal(fwrite(s, 1, strlen(s), f), strlen(s));
	fflush(f);
	return f;
}

static void range_is(FILE *f, off_t a, off_t b, const char *want)
{
	char buf[512];

	assert_true(b >= a && (size_t)(b - a) < sizeof(buf));
	fseeko(f, a, SEEK_SET);
	assert_int_equal(fread(buf, 1, (size_t)(b - a), f), (size_t)(b - a));
	assert_int_equal((size_t)(b - a), strlen(want));
	assert_memory_equal(buf, want, (size_t)(b - a));
}

static void test_verify__scan_crlf(void **state)
{
	const char *msg = "preamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
	                  "--B\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--B--\r\nepilogue\r\n";
	FILE *f = file_of(msg);
	p11s_mime_parts p;

	(void)state;
	assert_int_equal(p11s_mime__scan_multipart(f, 0, "B", &p), 0);
	assert_int_equal(p.n_parts, 2);
	/* RFC 2046 §5.1.1: the CRLF before "--B" belongs to the delimiter. */
	range_is(f, p.part1_start, p.part1_end, "Content-Type: text/plain\r\n\r\nbody");
	range_is(f, p.part2_start, p.part2_end, "Content-Type: application/pkcs7-signature\r\n\r\nAAAA");
	fclose(f);
}

static void test_verify__scan_lf_padding(void **state)
{
	/* LF storage, transport padding after the boundary, a look-alike line inside. */
	const char *msg = "--b-1 \t\nA\n--b-1x not a delimiter\n\n--b-1\nS\n--b-1-- \n";
	FILE *f = file_of(msg);
	p11s_mime_parts p;

	(void)state;
	assert_int_equal(p11s_mime__scan_multipart(f, 0, "b-1", &p), 0);
	range_is(f, p.part1_start, p.part1_end, "A\n--b-1x not a delimiter\n");
	range_is(f, p.part2_start, p.part2_end, "S");
	fclose(f);
}

static void test_verify__scan_errors(void **state)
{
	p11s_mime_parts p;
	FILE *f;

	(void)state;
	f = file_of("no delimiters here\n");
	assert_int_equal(p11s_mime__scan_multipart(f, 0, "B", &p), P11S_ERR_MALFORMED);
	fclose(f);
	f = file_of("--B\nA\n--B\nS\n"); /* truncated: no close delimiter */
	assert_int_equal(p11s_mime__scan_multipart(f, 0, "B", &p), P11S_ERR_MALFORMED);
	fclose(f);
	f = file_of("--B\nA\n--B\nS\n--B\nT\n--B--\n"); /* three parts: RFC 1847 wants two */
	assert_int_equal(p11s_mime__scan_multipart(f, 0, "B", &p), P11S_ERR_MALFORMED);
	fclose(f);
}

/* Lines and delimiters across the line reader's 64 KiB blocks. */
static void test_verify__scan_long_lines(void **state)
{
	for (size_t len = 65530; len <= 65540; len += 2) {
		char *msg = malloc(2 * len + 64), *part1 = malloc(len + 1);
		FILE *f;
		p11s_mime_parts p;
		size_t n;

		(void)state;
		memset(part1, 'A', len);
		part1[len] = '\0';
		n = (size_t)sprintf(msg, "--B\r\n%s\r\n--B\r\n", part1);
		memset(msg + n, 'S', len - 10);
		n += len - 10;
		strcpy(msg + n, "\r\n--B--\r\n");
		f = file_of(msg);
		assert_int_equal(p11s_mime__scan_multipart(f, 0, "B", &p), 0);
		/* part 1 starts after "--B\r\n"; the CRLF before a delimiter belongs to it */
		assert_int_equal((int)p.part1_start, 5);
		assert_int_equal((int)(p.part1_end - p.part1_start), (int)len);
		assert_int_equal((int)p.part2_start, (int)(5 + len + 2 + 5));
		assert_int_equal((int)(p.part2_end - p.part2_start), (int)(len - 10));
		fclose(f);
		free(part1);
		free(msg);
	}
}

/* A growable sink for the tee comparison. */
typedef struct dynbuf {
	unsigned char *p;
	size_t len, cap;
} dynbuf;

static int dyn_sink(const unsigned char *p, size_t n, void *payload)
{
	dynbuf *b = payload;

	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* Append a random line to `m` (lengths around LINE_KEEP and the 64 KiB read block). */
static void random_line(dynbuf *m, unsigned *seed)
{
	static const size_t lens[] = { 0, 1, 2, 75, 1022, 1023, 1024, 1025, 1026, 1027, 4000,
		65534, 65535, 65536, 65537 };
	size_t len = lens[(unsigned)rand_r(seed) % (sizeof(lens) / sizeof(lens[0]))];
	unsigned char *l = malloc(len + 4);
	int eol = rand_r(seed) % 3; /* LF, CRLF, CR CRLF */

	assert_non_null(l);
	for (size_t i = 0; i < len; i++) {
		int r = rand_r(seed) % 64;

		l[i] = r == 0 ? '\r' : r == 1 ? '-' : r == 2 ? 'B' : (unsigned char)('a' + r % 26);
	}
	/* Lines that look like the delimiter but are not, or start like it. */
	if (len >= 4 && rand_r(seed) % 4 == 0) {
		memcpy(l, "--B", 3);
		l[3] = rand_r(seed) % 2 ? 'x' : ' ';
	}
	dyn_sink(l, len, m);
	dyn_sink((const unsigned char *)(eol == 0 ? "\n" : eol == 1 ? "\r\n" : "\r\r\n"), eol + 1, m);
	free(l);
}

/*
 * The tee of the delimiter scan gives part 1 exactly as stream_canonical() reads it afterwards
 * (verify hashes with whichever it has: a difference would be a wrong digest, or a spoof).
 */
static void test_verify__scan_tee(void **state)
{
	unsigned seed = 20261207;

	(void)state;
	for (int round = 0; round < 300; round++) {
		dynbuf m = { 0 }, tee = { 0 }, again = { 0 };
		int lines1 = rand_r(&seed) % 12, lines2 = 1 + rand_r(&seed) % 3;
		p11s_mime_parts p;
		FILE *f = tmpfile();

		assert_non_null(f);
		dyn_sink((const unsigned char *)"preamble\n", 9, &m);
		/* The first delimiter, with transport padding of several lengths, LF or CRLF. */
		dyn_sink((const unsigned char *)"--B", 3, &m);
		for (int i = rand_r(&seed) % 3; i > 0; i--) {
			dyn_sink((const unsigned char *)" \t", 2, &m);
		}
		dyn_sink((const unsigned char *)(round % 2 ? "\r\n" : "\n"), round % 2 ? 2 : 1, &m);
		for (int i = 0; i < lines1; i++) {
			random_line(&m, &seed);
		}
		dyn_sink((const unsigned char *)(round % 3 ? "--B\r\n" : "--B \n"), 5, &m);
		for (int i = 0; i < lines2; i++) {
			random_line(&m, &seed);
		}
		dyn_sink((const unsigned char *)"--B--\r\nepilogue\n", 16, &m);
		assert_int_equal(fwrite(m.p, 1, m.len, f), m.len);
		fflush(f);

		int rc = p11s_mime__scan_multipart_tee(f, 0, "B", &p, dyn_sink, &tee);

		assert_int_equal(rc, 0);
		assert_int_equal(p11s_mime__stream_canonical(f, p.part1_start, p.part1_end, dyn_sink,
		                     &again), 0);
		assert_int_equal(tee.len, again.len);
		if (tee.len > 0) {
			assert_memory_equal(tee.p, again.p, tee.len);
		}
		fclose(f);
		free(m.p);
		free(tee.p);
		free(again.p);
	}
}

static void test_verify__header_end(void **state)
{
	FILE *f = file_of("From: a@b\r\nSubject: x\r\n\r\nbody");
	off_t end = 0;

	(void)state;
	assert_int_equal(p11s_mime__header_end(f, 0, &end), 0);
	assert_int_equal((int)end, 25);
	fclose(f);
	f = file_of("just text without a blank line");
	assert_int_equal(p11s_mime__header_end(f, 0, &end), P11S_ERR_MALFORMED);
	fclose(f);
}

static void test_verify__parse_time(void **state)
{
	int64_t t = 0;

	(void)state;
	assert_int_equal(p11s_verify_parse_time("2024-01-31T12:00:00Z", &t), 0);
	assert_int_equal(t, 1706702400);
	assert_int_equal(p11s_verify_parse_time("2024-01-31T13:30:00+01:30", &t), 0);
	assert_int_equal(t, 1706702400);
	assert_int_equal(p11s_verify_parse_time("2024-01-31t12:00:00.123z", &t), 0);
	assert_int_equal(t, 1706702400);
	assert_int_equal(p11s_verify_parse_time("2024-01-31", &t), P11S_ERR_USAGE);
	assert_int_equal(p11s_verify_parse_time("2024-13-31T12:00:00Z", &t), P11S_ERR_USAGE);
	assert_int_equal(p11s_verify_parse_time("2024-01-31T12:00:00", &t), P11S_ERR_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify__canon),
		cmocka_unit_test(test_verify__scan_crlf),
		cmocka_unit_test(test_verify__scan_lf_padding),
		cmocka_unit_test(test_verify__scan_errors),
		cmocka_unit_test(test_verify__scan_long_lines),
		cmocka_unit_test(test_verify__scan_tee),
		cmocka_unit_test(test_verify__header_end),
		cmocka_unit_test(test_verify__parse_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

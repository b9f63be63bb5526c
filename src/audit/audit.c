/*
 * Tamper-evident audit log of signing operations: one JSON object per line, hash-chained.
 *
 * Each line is `{"seq":N,...,"prev":"<hash of line N-1>","hash":"<SHA-256 of this line up to
 * and excluding ,"hash":>"}`. Altering a record breaks its own hash; removing or reordering
 * records breaks `seq` and `prev`; a cut-off last line is not a record. Removing whole
 * records from the end leaves a valid shorter chain: that is caught by comparing with a head
 * hash saved elsewhere (p11s_audit_status.head, `audit verify --expect-head`).
 *
 * Writers take an exclusive flock() on the file, read the last record, append, fsync, unlock:
 * concurrent processes and threads (each with its own open file description) serialise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/evp.h>

#include <p11smime/audit.h>

#include "audit/audit_int.h"
#include "core/error_int.h"

#define HASH_HEX 64
/* ,"prev":"<64>","hash":"<64>"} */
#define SUFFIX_LEN (9 + HASH_HEX + 1 + 9 + HASH_HEX + 2)
#define TAIL_MAX 65536

/* A growing text buffer. */
typedef struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
	if (b->oom) {
		return;
	}
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 512) + n;
		char *np = realloc(b->p, cap);

		if (np == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

/* A JSON string (RFC 8259 §7), or null. */
static void sb_json(sbuf *b, const char *s)
{
	if (s == NULL) {
		sb_puts(b, "null");
		return;
	}
	sb_puts(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		char esc[8];

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			sb_putn(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			sb_puts(b, esc);
		} else {
			sb_putn(b, (const char *)p, 1);
		}
	}
	sb_puts(b, "\"");
}

static void sb_hex(sbuf *b, const char *prefix, const unsigned char *p, size_t n)
{
	if (p == NULL) {
		sb_puts(b, "null");
		return;
	}
	sb_puts(b, "\"");
	if (prefix != NULL) {
		sb_puts(b, prefix);
		sb_puts(b, ":");
	}
	for (size_t i = 0; i < n; i++) {
		char h[3];

		snprintf(h, sizeof(h), "%02x", p[i]);
		sb_putn(b, h, 2);
	}
	sb_puts(b, "\"");
}

static int sha256_hex(const char *p, size_t n, char out[HASH_HEX + 1])
{
	unsigned char md[32];
	unsigned int len = 0;

	if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != 32) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "SHA-256 failed");
	}
	for (unsigned int i = 0; i < len; i++) {
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	}
	return P11S_OK;
}

static int is_hex64(const char *p)
{
	for (int i = 0; i < HASH_HEX; i++) {
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

/*
 * Parse and check one line (without its newline): shape, own hash. Fills seq, prev and hash.
 * @return 1 good, 0 bad (with why).
 */
static int parse_line(const char *line, size_t n, unsigned long long *seq, char prev[65],
    char hash[65], char *why, size_t wlen)
{
	const char *suf;
	char calc[HASH_HEX + 1];
	char *end;

	if (n < SUFFIX_LEN + 10 || strncmp(line, "{\"seq\":", 7) != 0) {
		snprintf(why, wlen, "not an audit record");
		return 0;
	}
	errno = 0;
	*seq = strtoull(line + 7, &end, 10);
	if (errno != 0 || end == line + 7 || *end != ',') {
		snprintf(why, wlen, "bad seq field");
		return 0;
	}
	suf = line + n - SUFFIX_LEN;
	if (strncmp(suf, ",\"prev\":\"", 9) != 0 || !is_hex64(suf + 9) ||
	    strncmp(suf + 9 + HASH_HEX, "\",\"hash\":\"", 10) != 0 || !is_hex64(suf + 19 + HASH_HEX) ||
	    strncmp(suf + 19 + 2 * HASH_HEX, "\"}", 2) != 0) {
		snprintf(why, wlen, "the record does not end with its prev and hash fields");
		return 0;
	}
	memcpy(prev, suf + 9, HASH_HEX);
	prev[HASH_HEX] = '\0';
	memcpy(hash, suf + 19 + HASH_HEX, HASH_HEX);
	hash[HASH_HEX] = '\0';
	/* The hash covers everything before ,"hash": (the prev field included). */
	if (sha256_hex(line, (size_t)(suf + 9 + HASH_HEX + 1 - line), calc) < 0) {
		snprintf(why, wlen, "cannot compute SHA-256");
		return 0;
	}
	if (CRYPTO_memcmp(calc, hash, HASH_HEX) != 0) {
		snprintf(why, wlen, "the record was altered (its hash does not match its content)");
		return 0;
	}
	return 1;
}

static void utc_now(char out[32])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Read the last line of the locked log: its seq and hash (0 and zeros for an empty log). */
static int read_last(int fd, const char *path, unsigned long long *seq, char hash[65])
{
	struct stat st;
	char *buf = NULL, prev[65], why[128];
	size_t want;
	ssize_t got;
	off_t off;
	int rc = P11S_OK;

	*seq = 0;
	memset(hash, '0', HASH_HEX);
	hash[HASH_HEX] = '\0';
	if (fstat(fd, &st) != 0) {
		return p11s_error__set(P11S_ERR_IO, "%s: %s", path, strerror(errno));
	}
	if (st.st_size == 0) {
		return P11S_OK;
	}
	want = st.st_size > TAIL_MAX ? TAIL_MAX : (size_t)st.st_size;
	off = st.st_size - (off_t)want;
	if ((buf = malloc(want + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((got = pread(fd, buf, want, off)) != (ssize_t)want) {
		rc = p11s_error__set(P11S_ERR_IO, "%s: cannot read the last record", path);
		goto out;
	}
	if (buf[want - 1] != '\n') {
		/* A cut-off record: never chain onto it; `audit verify` names it. */
		rc = p11s_error__set(P11S_ERR_VERIFY, "%s: the last record is incomplete; the log "
		                                      "was truncated (run audit verify)", path);
		goto out;
	}
	{
		size_t end = want - 1, start = end;

		while (start > 0 && buf[start - 1] != '\n') {
			start--;
		}
		if (start == 0 && off != 0) {
			rc = p11s_error__set(P11S_ERR_VERIFY, "%s: the last record is too long", path);
			goto out;
		}
		buf[end] = '\0';
		if (!parse_line(buf + start, end - start, seq, prev, hash, why, sizeof(why))) {
			rc = p11s_error__set(P11S_ERR_VERIFY, "%s: the last record is bad (%s); not "
			                                      "appending (run audit verify)", path, why);
		}
	}
out:
	free(buf);
	return rc;
}

int p11s_audit_append(const char *path, const p11s_audit_record *rec)
{
	char now[32], prev[HASH_HEX + 1], hash[HASH_HEX + 1], num[32];
	unsigned long long seq;
	sbuf b = { 0 };
	char *uri = NULL;
	int fd = -1, rc;

	if (path == NULL || rec == NULL || rec->operation == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_append: NULL argument");
	}
	if ((fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		return p11s_error__set(P11S_ERR_IO, "audit log %s: %s", path, strerror(errno));
	}
	if (flock(fd, LOCK_EX) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "audit log %s: lock: %s", path, strerror(errno));
		goto out;
	}
	if ((rc = read_last(fd, path, &seq, prev)) < 0) {
		goto out;
	}
	/* The key URI without its query: pin-value / pin-source never reach the log. */
	if (rec->key_uri != NULL) {
		if ((uri = strdup(rec->key_uri)) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		uri[strcspn(uri, "?")] = '\0';
	}
	utc_now(now);
	snprintf(num, sizeof(num), "%llu", seq + 1);
	sb_puts(&b, "{\"seq\":");
	sb_puts(&b, num);
	sb_puts(&b, ",\"time\":");
	sb_json(&b, now);
	sb_puts(&b, ",\"operation\":");
	sb_json(&b, rec->operation);
	sb_puts(&b, ",\"key\":");
	sb_json(&b, uri);
	sb_puts(&b, ",\"cert_sha256\":");
	sb_hex(&b, NULL, rec->cert_sha256, 32);
	sb_puts(&b, ",\"content_digest\":");
	sb_hex(&b, rec->content_digest_alg ? rec->content_digest_alg : "unknown",
	    rec->content_digest, rec->content_digest_len);
	sb_puts(&b, ",\"signature_sha256\":");
	sb_hex(&b, NULL, rec->signature_sha256, 32);
	sb_puts(&b, ",\"result\":");
	sb_json(&b, rec->result ? rec->result : "ok");
	sb_puts(&b, ",\"prev\":\"");
	sb_puts(&b, prev);
	sb_puts(&b, "\"");
	if (b.oom) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = sha256_hex(b.p, b.n, hash)) < 0) {
		goto out;
	}
	sb_puts(&b, ",\"hash\":\"");
	sb_puts(&b, hash);
	sb_puts(&b, "\"}\n");
	if (b.oom) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t done = 0; done < b.n;) {
		ssize_t w = write(fd, b.p + done, b.n - done);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			rc = p11s_error__set(P11S_ERR_IO, "audit log %s: write: %s", path, strerror(errno));
			goto out;
		}
		done += (size_t)w;
	}
	/* Durable before the lock is released and before the caller publishes the signature. */
	if (fsync(fd) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "audit log %s: fsync: %s", path, strerror(errno));
		goto out;
	}
	rc = P11S_OK;
out:
	if (fd >= 0) {
		close(fd); /* releases the lock */
	}
	free(uri);
	free(b.p);
	return rc;
}

int p11s_audit_verify(const char *path, const char *expect_head, p11s_audit_status *st)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	char prev_hash[HASH_HEX + 1];
	unsigned long long want_seq = 1;
	int head_seen = 0, rc = P11S_OK;

	if (path == NULL || st == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_verify: NULL argument");
	}
	memset(st, 0, sizeof(*st));
	memset(prev_hash, '0', HASH_HEX);
	prev_hash[HASH_HEX] = '\0';
	memcpy(st->head, prev_hash, sizeof(st->head));
	if (expect_head != NULL && (strlen(expect_head) != HASH_HEX || !is_hex64(expect_head))) {
		return p11s_error__set(P11S_ERR_USAGE, "the expected head must be 64 lower-case hex "
		                                       "digits");
	}
	if ((f = fopen(path, "rb")) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "%s: %s", path, strerror(errno));
	}
	/* A shared lock: do not read a record while a writer is appending it. */
	(void)flock(fileno(f), LOCK_SH);
	while ((n = getline(&line, &cap, f)) > 0) {
		unsigned long long seq;
		char prev[65], hash[65];

		lineno++;
		if (line[n - 1] != '\n') {
			snprintf(st->why, sizeof(st->why), "the record is incomplete (the log was "
			                                    "truncated)");
			goto bad;
		}
		line[--n] = '\0';
		if (memchr(line, '\0', (size_t)n) != NULL) {
			snprintf(st->why, sizeof(st->why), "the record contains a NUL byte");
			goto bad;
		}
		if (!parse_line(line, (size_t)n, &seq, prev, hash, st->why, sizeof(st->why))) {
			goto bad;
		}
		if (seq != want_seq) {
			snprintf(st->why, sizeof(st->why), "seq is %llu, expected %llu (a record was "
			    "removed, inserted or reordered)", seq, want_seq);
			goto bad;
		}
		if (strcmp(prev, prev_hash) != 0) {
			snprintf(st->why, sizeof(st->why), "prev does not match the hash of the previous "
			    "record (a record was removed, replaced or reordered)");
			goto bad;
		}
		memcpy(prev_hash, hash, sizeof(prev_hash));
		memcpy(st->head, hash, sizeof(st->head));
		if (expect_head != NULL && strcmp(hash, expect_head) == 0) {
			head_seen = 1;
		}
		st->n_records++;
		want_seq++;
	}
	if (ferror(f)) {
		rc = p11s_error__set(P11S_ERR_IO, "%s: read error", path);
		goto out;
	}
	if (expect_head != NULL && !head_seen) {
		st->bad_record = lineno + 1;
		snprintf(st->why, sizeof(st->why), "the expected head record is missing (records were "
		                                    "removed from the end)");
		rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: record %zu: %s", path,
		    st->bad_record, st->why);
	}
	goto out;
bad:
	st->bad_record = lineno;
	rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: record %zu: %s", path, lineno, st->why);
out:
	free(line);
	fclose(f);
	return rc;
}

int p11s_audit__signing(const char *path, const char *operation, const char *key_uri, X509 *cert,
    const unsigned char *sigder, size_t sigder_len, int status, const char *why)
{
	p11s_audit_record rec = { 0 };
	unsigned char certfp[32], sigfp[32];
	unsigned int l = 0;
	CMS_ContentInfo *cms = NULL;
	char result[200];
	int rc;

	rec.operation = operation;
	rec.key_uri = key_uri;
	if (cert != NULL && X509_digest(cert, EVP_sha256(), certfp, &l) && l == 32) {
		rec.cert_sha256 = certfp;
	}
	if (sigder != NULL) {
		const unsigned char *p = sigder;
		STACK_OF(CMS_SignerInfo) *sis;

		if ((cms = d2i_CMS_ContentInfo(NULL, &p, (long)sigder_len)) != NULL &&
		    (sis = CMS_get0_SignerInfos(cms)) != NULL && sk_CMS_SignerInfo_num(sis) > 0) {
			CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
			ASN1_OCTET_STRING *md = CMS_signed_get0_data_by_OBJ(si,
			    OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING);
			ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
			X509_ALGOR *dig;

			CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
			rec.content_digest_alg = OBJ_nid2ln(OBJ_obj2nid(dig->algorithm));
			if (md != NULL) {
				rec.content_digest = md->data;
				rec.content_digest_len = (size_t)md->length;
			}
			if (sig != NULL && EVP_Digest(sig->data, (size_t)sig->length, sigfp, &l,
			                       EVP_sha256(), NULL) && l == 32) {
				rec.signature_sha256 = sigfp;
			}
		}
		ERR_clear_error();
	}
	if (status == P11S_OK) {
		rec.result = "ok";
	} else {
		snprintf(result, sizeof(result), "error: %s", why ? why : "failed");
		rec.result = result;
	}
	rc = p11s_audit_append(path, &rec);
	CMS_ContentInfo_free(cms);
	return rc;
}

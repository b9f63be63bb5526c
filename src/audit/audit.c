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
#include <openssl/pem.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

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

/*
 * Append one record under the exclusive lock: `{"seq":N,"time":T` + `middle` (the record's
 * own fields, each starting with a comma) + `,"prev":"P"` + `,"hash":"H"}`.
 */
static int append_middle(const char *path, const char *middle)
{
	char now[32], prev[HASH_HEX + 1], hash[HASH_HEX + 1], num[32];
	unsigned long long seq;
	sbuf b = { 0 };
	int fd = -1, rc;

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
	utc_now(now);
	snprintf(num, sizeof(num), "%llu", seq + 1);
	sb_puts(&b, "{\"seq\":");
	sb_puts(&b, num);
	sb_puts(&b, ",\"time\":");
	sb_json(&b, now);
	sb_puts(&b, middle);
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
	free(b.p);
	return rc;
}

/* The key URI without its query: pin-value / pin-source never reach the log. */
static char *uri_no_query(const char *uri)
{
	char *u = uri != NULL ? strdup(uri) : NULL;

	if (u != NULL) {
		u[strcspn(u, "?")] = '\0';
	}
	return u;
}

int p11s_audit_append(const char *path, const p11s_audit_record *rec)
{
	sbuf b = { 0 };
	char *uri = NULL;
	int rc;

	if (path == NULL || rec == NULL || rec->operation == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_append: NULL argument");
	}
	if (rec->key_uri != NULL && (uri = uri_no_query(rec->key_uri)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (strcmp(rec->operation, "checkpoint") == 0) {
		/* The name is reserved for signed checkpoints (p11s_audit_checkpoint()). */
		free(uri);
		return p11s_error__set(P11S_ERR_INVALID_ARG, "operation \"checkpoint\" is reserved");
	}
	/* Format 2 (docs/evidence.md): this log is checkpointed and must end at a checkpoint. */
	sb_puts(&b, ",\"format\":2,\"operation\":");
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
	rc = b.oom ? p11s_error__set(P11S_ERR_NOMEM, "out of memory") : append_middle(path, b.p);
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

/* ---- signed checkpoints (format 2, docs/evidence.md "Checkpoints") ------------------------ */

/* How far back a checkpoint may point (concurrent writers append between read and write). */
#define CKPT_WINDOW 4096
/* The tail read to find the last checkpoint when deciding whether one is due. */
#define CKPT_TAIL_MAX (8L << 20)

int p11s_audit__statement(char *buf, size_t len, unsigned long long covers, const char *head,
    int final)
{
	int n = snprintf(buf, len, "p11smime-audit-checkpoint\nformat: 2\ncovers: %llu\nhead: %s\n"
	                           "final: %s\n", covers, head, final ? "yes" : "no");

	return n > 0 && (size_t)n < len ? n : -1;
}

/* The position just after `,"time":"...."` of a record line, or NULL. */
static const char *after_time(const char *line)
{
	const char *p = strstr(line, ",\"time\":\"");

	if (p == NULL) {
		return NULL;
	}
	p += 9;
	while (*p != '\0' && *p != '"') {
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static int is_checkpoint_line(const char *line)
{
	const char *p = after_time(line);

	return p != NULL && strncmp(p, ",\"operation\":\"checkpoint\"", 25) == 0;
}

/* The fields of a checkpoint line, parsed in their fixed order. Pointers into `line`. */
typedef struct ckpt_fields {
	unsigned long long covers;
	char head[HASH_HEX + 1];
	int final;
	const char *sig;        /* base64, not terminated */
	size_t sig_len;
	char cert_sha256[HASH_HEX + 1];
} ckpt_fields;

static int expect_lit(const char **p, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*p, lit, n) != 0) {
		return 0;
	}
	*p += n;
	return 1;
}

/* Skip a JSON string or null at *p (our writer's escapes only). */
static int skip_json_value(const char **p)
{
	if (strncmp(*p, "null", 4) == 0) {
		*p += 4;
		return 1;
	}
	if (**p != '"') {
		return 0;
	}
	for ((*p)++; **p != '\0' && **p != '"'; (*p)++) {
		if (**p == '\\' && (*p)[1] != '\0') {
			(*p)++;
		}
	}
	if (**p != '"') {
		return 0;
	}
	(*p)++;
	return 1;
}

static int parse_checkpoint(const char *line, ckpt_fields *f)
{
	const char *p = after_time(line);
	char *end;

	memset(f, 0, sizeof(*f));
	if (p == NULL || !expect_lit(&p, ",\"operation\":\"checkpoint\",\"format\":2,\"covers\":")) {
		return 0;
	}
	errno = 0;
	f->covers = strtoull(p, &end, 10);
	if (errno != 0 || end == p) {
		return 0;
	}
	p = end;
	if (!expect_lit(&p, ",\"head\":\"") || !is_hex64(p)) {
		return 0;
	}
	memcpy(f->head, p, HASH_HEX);
	p += HASH_HEX;
	if (!expect_lit(&p, "\",\"final\":")) {
		return 0;
	}
	if (expect_lit(&p, "true")) {
		f->final = 1;
	} else if (!expect_lit(&p, "false")) {
		return 0;
	}
	if (!expect_lit(&p, ",\"key\":") || !skip_json_value(&p) ||
	    !expect_lit(&p, ",\"cert_sha256\":\"") || !is_hex64(p)) {
		return 0;
	}
	memcpy(f->cert_sha256, p, HASH_HEX);
	p += HASH_HEX;
	if (!expect_lit(&p, "\",\"signature\":\"")) {
		return 0;
	}
	f->sig = p;
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
	    *p == '+' || *p == '/' || *p == '=') {
		p++;
	}
	f->sig_len = (size_t)(p - f->sig);
	return *p == '"' && f->sig_len > 0 && f->sig_len % 4 == 0 &&
	    strncmp(p, "\",\"prev\":\"", 10) == 0;
}

/* The seq of a record line (`{"seq":N,...`), or 0 if it does not start so. */
static unsigned long long line_seq(const char *line)
{
	char *end;
	unsigned long long v;

	if (strncmp(line, "{\"seq\":", 7) != 0 || line[7] < '0' || line[7] > '9') {
		return 0;
	}
	errno = 0;
	v = strtoull(line + 7, &end, 10);
	return errno == 0 && *end == ',' ? v : 0;
}

int p11s_audit__checkpoint_due(const char *path, unsigned int every, int final,
    unsigned long long *covers, char head[HASH_HEX + 1])
{
	struct stat st;
	char *buf = NULL, prev[HASH_HEX + 1], why[128];
	size_t want, since = 0, end, start;
	unsigned long long seq, max_cov = 0;
	int fd, rc = 0, seen_last = 0, have_cov = 0, final_at_max = 0;
	off_t off;

	*covers = 0;
	head[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		return p11s_error__set(P11S_ERR_IO, "audit log %s: %s", path, strerror(errno));
	}
	(void)flock(fd, LOCK_SH);
	if (fstat(fd, &st) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "audit log %s: %s", path, strerror(errno));
		goto out;
	}
	if (st.st_size == 0) {
		goto out; /* nothing to anchor */
	}
	want = st.st_size > CKPT_TAIL_MAX ? (size_t)CKPT_TAIL_MAX : (size_t)st.st_size;
	off = st.st_size - (off_t)want;
	if ((buf = malloc(want + 1)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (pread(fd, buf, want, off) != (ssize_t)want) {
		rc = p11s_error__set(P11S_ERR_IO, "audit log %s: cannot read the tail", path);
		goto out;
	}
	if (buf[want - 1] != '\n') {
		rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: the last record is incomplete; "
		                                      "no checkpoint (run audit verify)", path);
		goto out;
	}
	buf[want] = '\0';
	/*
	 * Walk the lines backwards from the head. A checkpoint anchors the records up to the one
	 * it covers, not every line before it: a concurrent writer may append between another
	 * writer's reading of the head and that writer's checkpoint. So the walk keeps the
	 * furthest record any checkpoint seen covers and stops at the first line at or below it
	 * (an older checkpoint covers less than its own seq). `since` counts the records above
	 * it; it is exact because a checkpoint covers less than its own seq, and every line
	 * counted before it is later than it.
	 */
	end = want - 1;
	for (;;) {
		start = end;
		while (start > 0 && buf[start - 1] != '\n') {
			start--;
		}
		if (start == 0 && off != 0) {
			break; /* a partial first line of the window: older than we look */
		}
		buf[end] = '\0';
		if (!seen_last) {
			if (!parse_line(buf + start, end - start, &seq, prev, head, why, sizeof(why))) {
				rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: the last record is bad "
				                                      "(%s); no checkpoint", path, why);
				goto out;
			}
			*covers = seq;
			seen_last = 1;
		} else {
			seq = line_seq(buf + start);
		}
		if (have_cov && seq <= max_cov) {
			break; /* this record and all before it are anchored */
		}
		if (is_checkpoint_line(buf + start)) {
			ckpt_fields f;

			if (parse_checkpoint(buf + start, &f) && f.covers < seq) {
				if (!have_cov || f.covers > max_cov) {
					max_cov = f.covers;
					final_at_max = f.final;
					have_cov = 1;
				} else if (f.covers == max_cov) {
					final_at_max |= f.final;
				}
			}
		} else {
			since++;
		}
		if (start == 0 || (!final && since >= every)) {
			break;
		}
		end = start - 1;
	}
	/* As audit verify judges the end: records above the anchor, or the anchor not final. */
	rc = final ? since > 0 || !have_cov || !final_at_max : since >= every;
out:
	free(buf);
	close(fd);
	return rc;
}

int p11s_audit__append_checkpoint(const char *path, unsigned long long covers, const char *head,
    int final, const char *key_uri, const unsigned char cert_sha256[32],
    const unsigned char *der, size_t der_len)
{
	sbuf b = { 0 };
	char num[32], *uri = NULL, *b64 = NULL;
	int rc;

	if (der_len > (size_t)(1 << 22)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "checkpoint signature too large");
	}
	if ((b64 = malloc(4 * ((der_len + 2) / 3) + 1)) == NULL ||
	    (key_uri != NULL && (uri = uri_no_query(key_uri)) == NULL)) {
		free(b64);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	EVP_EncodeBlock((unsigned char *)b64, der, (int)der_len);
	snprintf(num, sizeof(num), "%llu", covers);
	sb_puts(&b, ",\"operation\":\"checkpoint\",\"format\":2,\"covers\":");
	sb_puts(&b, num);
	sb_puts(&b, ",\"head\":\"");
	sb_puts(&b, head);
	sb_puts(&b, final ? "\",\"final\":true" : "\",\"final\":false");
	sb_puts(&b, ",\"key\":");
	sb_json(&b, uri);
	sb_puts(&b, ",\"cert_sha256\":");
	sb_hex(&b, NULL, cert_sha256, 32);
	sb_puts(&b, ",\"signature\":\"");
	sb_puts(&b, b64);
	sb_puts(&b, "\"");
	rc = b.oom ? p11s_error__set(P11S_ERR_NOMEM, "out of memory") : append_middle(path, b.p);
	free(b.p);
	free(b64);
	free(uri);
	return rc;
}

/* SHA-256 of a certificate's DER, hex. */
static int cert_sha256_hex(X509 *c, char out[HASH_HEX + 1])
{
	unsigned char md[32];
	unsigned int l = 0;

	if (!X509_digest(c, EVP_sha256(), md, &l) || l != 32) {
		return -1;
	}
	for (unsigned int i = 0; i < l; i++) {
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	}
	return 0;
}

/* The pinned certificate (PEM or DER) as its SHA-256 hex. */
static int load_pin(const char *file, char out[HASH_HEX + 1])
{
	BIO *b = BIO_new_file(file, "rb");
	X509 *c = NULL;
	int rc;

	if (b == NULL) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_IO, "cannot read %s", file);
	}
	if ((c = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		ERR_clear_error();
		(void)BIO_reset(b);
		c = d2i_X509_bio(b, NULL);
	}
	BIO_free(b);
	if (c == NULL) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_MALFORMED, "%s is not a certificate", file);
	}
	rc = cert_sha256_hex(c, out) < 0 ? p11s_error__set(P11S_ERR_CRYPTO, "SHA-256 failed") : 0;
	X509_free(c);
	return rc;
}

/* The RFC 3161 token on the signer, if any: its signature and imprint checked, genTime out. */
static void checkpoint_timestamp(CMS_SignerInfo *si, char *gen, size_t glen, int *ok)
{
	int idx = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, -1);
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *t;
	const unsigned char *p;
	CMS_ContentInfo *tok = NULL;
	ASN1_OCTET_STRING **pos;
	TS_TST_INFO *tst = NULL;
	ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);

	gen[0] = '\0';
	*ok = 0;
	if (idx < 0 || (attr = CMS_unsigned_get_attr(si, idx)) == NULL ||
	    (t = X509_ATTRIBUTE_get0_type(attr, 0)) == NULL || t->type != V_ASN1_SEQUENCE) {
		return;
	}
	p = t->value.sequence->data;
	if ((tok = d2i_CMS_ContentInfo(NULL, &p, t->value.sequence->length)) == NULL ||
	    (pos = CMS_get0_content(tok)) == NULL || *pos == NULL) {
		goto out;
	}
	p = (*pos)->data;
	if ((tst = d2i_TS_TST_INFO(NULL, &p, (*pos)->length)) == NULL) {
		goto out;
	}
	{
		const ASN1_GENERALIZEDTIME *gt = TS_TST_INFO_get_time(tst);
		struct tm tm;

		if (gt != NULL && ASN1_TIME_to_tm(gt, &tm)) {
			strftime(gen, glen, "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
	}
	/* RFC 3161 §2.4.2 over the signature value octets (RFC 5126 §5.11.1). */
	{
		TS_MSG_IMPRINT *mi = TS_TST_INFO_get_msg_imprint(tst);
		X509_ALGOR *alg = TS_MSG_IMPRINT_get_algo(mi);
		ASN1_OCTET_STRING *want = TS_MSG_IMPRINT_get_msg(mi);
		const EVP_MD *md = EVP_get_digestbyobj(alg->algorithm);
		unsigned char h[EVP_MAX_MD_SIZE];
		unsigned int hl = 0;

		if (md != NULL && sig != NULL &&
		    EVP_Digest(sig->data, (size_t)sig->length, h, &hl, md, NULL) &&
		    (int)hl == want->length && CRYPTO_memcmp(h, want->data, hl) == 0 &&
		    CMS_verify(tok, NULL, NULL, NULL, NULL, CMS_NO_SIGNER_CERT_VERIFY) == 1) {
			*ok = 1;
		}
	}
out:
	TS_TST_INFO_free(tst);
	CMS_ContentInfo_free(tok);
	ERR_clear_error();
}

/* Check the signature of a checkpoint over its statement. 1 good (signer filled), 0 bad. */
static int checkpoint_signature(const ckpt_fields *f, char *why, size_t wlen,
    p11s_audit_report *rep)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	char stmt[256], certhex[HASH_HEX + 1];
	CMS_ContentInfo *cms = NULL;
	STACK_OF(X509) *signers = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	BIO *content = NULL;
	int n, len, good = 0, pad = 0;

	if ((der = malloc(f->sig_len)) == NULL) {
		snprintf(why, wlen, "out of memory");
		return 0;
	}
	n = EVP_DecodeBlock(der, (const unsigned char *)f->sig, (int)f->sig_len);
	pad = (f->sig[f->sig_len - 1] == '=') + (f->sig[f->sig_len - 2] == '=');
	len = n - pad;
	p = der;
	if (n < 0 || len <= 0 || (cms = d2i_CMS_ContentInfo(NULL, &p, len)) == NULL ||
	    p != der + len) {
		snprintf(why, wlen, "the checkpoint signature is not a DER CMS SignedData");
		goto out;
	}
	if (p11s_audit__statement(stmt, sizeof(stmt), f->covers, f->head, f->final) < 0 ||
	    (content = BIO_new_mem_buf(stmt, (int)strlen(stmt))) == NULL) {
		snprintf(why, wlen, "out of memory");
		goto out;
	}
	/*
	 * The signature and messageDigest with the certificate the checkpoint carries; whose key
	 * that is decides the pin (--signer-cert), not a CA: the log's own key is the anchor.
	 */
	if (CMS_verify(cms, NULL, NULL, content, NULL, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1 ||
	    (signers = CMS_get0_signers(cms)) == NULL || sk_X509_num(signers) != 1 ||
	    (sis = CMS_get0_SignerInfos(cms)) == NULL || sk_CMS_SignerInfo_num(sis) != 1) {
		snprintf(why, wlen, "the checkpoint signature does not verify (the records it covers, "
		                    "or the checkpoint, were changed)");
		goto out;
	}
	if (cert_sha256_hex(sk_X509_value(signers, 0), certhex) < 0 ||
	    strcmp(certhex, f->cert_sha256) != 0) {
		snprintf(why, wlen, "the checkpoint's cert_sha256 is not its signer's certificate");
		goto out;
	}
	if (rep->last_signer_sha256[0] != '\0' && strcmp(rep->last_signer_sha256, certhex) != 0) {
		rep->signer_changed = 1;
	}
	memcpy(rep->last_signer_sha256, certhex, sizeof(rep->last_signer_sha256));
	X509_NAME_oneline(X509_get_subject_name(sk_X509_value(signers, 0)), rep->last_signer,
	    (int)sizeof(rep->last_signer));
	checkpoint_timestamp(sk_CMS_SignerInfo_value(sis, 0), rep->last_timestamp,
	    sizeof(rep->last_timestamp), &rep->last_timestamp_valid);
	good = 1;
out:
	sk_X509_free(signers);
	CMS_ContentInfo_free(cms);
	BIO_free(content);
	free(der);
	ERR_clear_error();
	return good;
}

int p11s_audit_verify_ex(const char *path, const p11s_audit_verify_opts *opts,
    p11s_audit_report *rep)
{
	p11s_audit_verify_opts defaults = P11S_AUDIT_VERIFY_OPTS_INIT;
	const p11s_audit_verify_opts *o = opts ? opts : &defaults;
	struct ring_entry {
		char hash[HASH_HEX + 1];
		char checkpoint;
	} *ring = NULL;
	char pin[HASH_HEX + 1] = "";
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	char prev_hash[HASH_HEX + 1];
	unsigned long long want_seq = 1;
	int head_seen = 0, rc = P11S_OK;

	if (path == NULL || rep == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_verify_ex: NULL argument");
	}
	memset(rep, 0, sizeof(*rep));
	if (o->version != P11S_AUDIT_VERIFY_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_audit_verify_opts version %u unknown",
		    o->version);
	}
	memset(prev_hash, '0', HASH_HEX);
	prev_hash[HASH_HEX] = '\0';
	memcpy(rep->head, prev_hash, sizeof(rep->head));
	rep->format = 1;
	if (o->expect_head != NULL && (strlen(o->expect_head) != HASH_HEX ||
	                                  !is_hex64(o->expect_head))) {
		return p11s_error__set(P11S_ERR_USAGE, "the expected head must be 64 lower-case hex "
		                                       "digits");
	}
	if (o->signer_cert_file != NULL && (rc = load_pin(o->signer_cert_file, pin)) < 0) {
		return rc;
	}
	if ((ring = calloc(CKPT_WINDOW, sizeof(*ring))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((f = fopen(path, "rb")) == NULL) {
		free(ring);
		return p11s_error__set(P11S_ERR_IO, "%s: %s", path, strerror(errno));
	}
	(void)flock(fileno(f), LOCK_SH);
	while ((n = getline(&line, &cap, f)) > 0) {
		unsigned long long seq;
		char prev[65], hash[65];

		lineno++;
		if (line[n - 1] != '\n') {
			snprintf(rep->why, sizeof(rep->why), "the record is incomplete (the log was "
			                                     "truncated)");
			goto bad;
		}
		line[--n] = '\0';
		if (memchr(line, '\0', (size_t)n) != NULL) {
			snprintf(rep->why, sizeof(rep->why), "the record contains a NUL byte");
			goto bad;
		}
		if (!parse_line(line, (size_t)n, &seq, prev, hash, rep->why, sizeof(rep->why))) {
			goto bad;
		}
		if (seq != want_seq) {
			snprintf(rep->why, sizeof(rep->why), "seq is %llu, expected %llu (a record was "
			    "removed, inserted or reordered)", seq, want_seq);
			goto bad;
		}
		if (strcmp(prev, prev_hash) != 0) {
			snprintf(rep->why, sizeof(rep->why), "prev does not match the hash of the previous "
			    "record (a record was removed, replaced or reordered)");
			goto bad;
		}
		if (is_checkpoint_line(line)) {
			ckpt_fields cf;

			if (!parse_checkpoint(line, &cf)) {
				snprintf(rep->why, sizeof(rep->why), "a malformed checkpoint");
				goto bad;
			}
			if (cf.covers >= seq || seq - cf.covers > CKPT_WINDOW ||
			    strcmp(ring[cf.covers % CKPT_WINDOW].hash, cf.head) != 0) {
				snprintf(rep->why, sizeof(rep->why), "the checkpoint's head is not the hash of "
				    "record %llu (records it covers were changed)", cf.covers);
				goto bad;
			}
			if (!checkpoint_signature(&cf, rep->why, sizeof(rep->why), rep)) {
				goto bad;
			}
			if (pin[0] != '\0' && strcmp(pin, rep->last_signer_sha256) != 0) {
				snprintf(rep->why, sizeof(rep->why), "the checkpoint is signed by another "
				    "certificate than --signer-cert (%s)", rep->last_signer);
				goto bad;
			}
			rep->format = 2;
			rep->n_checkpoints++;
			rep->last_checkpoint_record = lineno;
			/*
			 * The anchor is the furthest record any checkpoint covers (a concurrent writer's
			 * checkpoint may cover less than one before it); its final flag says whether a
			 * run ended there.
			 */
			if (cf.covers > rep->anchored_seq) {
				rep->anchored_seq = cf.covers;
				rep->last_final = cf.final;
				rep->n_unanchored = 0;
				for (unsigned long long s = cf.covers + 1; s < seq; s++) {
					if (!ring[s % CKPT_WINDOW].checkpoint) {
						rep->n_unanchored++;
					}
				}
			} else if (cf.covers == rep->anchored_seq) {
				rep->last_final |= cf.final;
			}
			{
				const char *t = strstr(line, ",\"time\":\"");

				snprintf(rep->last_checkpoint_time, sizeof(rep->last_checkpoint_time), "%.20s",
				    t + 9);
			}
		} else {
			/* A record written by a checkpointing writer: its log must end anchored. */
			const char *t = after_time(line);

			if (t != NULL && strncmp(t, ",\"format\":2,", 12) == 0) {
				rep->format = 2;
			}
			rep->n_unanchored++;
		}
		memcpy(ring[seq % CKPT_WINDOW].hash, hash, HASH_HEX + 1);
		ring[seq % CKPT_WINDOW].checkpoint = (char)is_checkpoint_line(line);
		memcpy(prev_hash, hash, sizeof(prev_hash));
		memcpy(rep->head, hash, sizeof(rep->head));
		if (o->expect_head != NULL && strcmp(hash, o->expect_head) == 0) {
			head_seen = 1;
		}
		rep->n_records++;
		want_seq++;
	}
	if (ferror(f)) {
		rc = p11s_error__set(P11S_ERR_IO, "%s: read error", path);
		goto out;
	}
	if (o->expect_head != NULL && !head_seen) {
		rep->bad_record = lineno + 1;
		snprintf(rep->why, sizeof(rep->why), "the expected head record is missing (records "
		                                     "were removed from the end)");
		rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: record %zu: %s", path,
		    rep->bad_record, rep->why);
		goto out;
	}
	if (rep->format == 1) {
		/* A log written before checkpoints (or stripped of them): nothing anchors its end. */
		if (o->require_checkpoint && rep->n_records > 0) {
			rep->bad_record = lineno + 1;
			snprintf(rep->why, sizeof(rep->why), "the log has no signed checkpoint (format 1); "
			                                     "its end is not anchored");
			rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: %s", path, rep->why);
		}
		goto out;
	}
	if ((rep->n_unanchored > 0 || !rep->last_final) && !o->allow_unanchored) {
		rep->bad_record = rep->last_checkpoint_record + 1;
		if (rep->n_unanchored > 0) {
			snprintf(rep->why, sizeof(rep->why), "%zu record%s after the last checkpoint %s "
			    "not anchored (the tail was cut, or a run did not finish)", rep->n_unanchored,
			    rep->n_unanchored == 1 ? "" : "s", rep->n_unanchored == 1 ? "is" : "are");
		} else {
			snprintf(rep->why, sizeof(rep->why), "the log ends at a periodic checkpoint, not at "
			    "the final one of a run (records after it were removed, or a run did not "
			    "finish)");
		}
		rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: %s", path, rep->why);
	}
	goto out;
bad:
	rep->bad_record = lineno;
	rc = p11s_error__set(P11S_ERR_VERIFY, "audit log %s: record %zu: %s", path, lineno,
	    rep->why);
out:
	free(line);
	free(ring);
	fclose(f);
	return rc;
}

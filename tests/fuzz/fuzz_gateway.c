/*
 * Fuzz target: the gateway's per-message handling (src/gateway/message.c), exactly as the
 * milter runs it but without libmilter: the input is a message as an MTA would receive it;
 * it is split into header fields the way the MTA hands them to a milter (name, value with
 * folds as "\n"; the first line that is not a field ends the header), the body gets CRLF line
 * ends (the SMTP form libmilter passes on), and the envelope comes from the message (MAIL FROM
 * = the From field, RCPT TO = the To field, client 127.0.0.1 = a trusted client). Then
 * gw_msg_decide() and gw_msg_apply() run against the mock token (backend "mock": rsa2048,
 * ec256, ec384), with verification against tests/fuzz/pki/ca.pem, outbound signing for
 * alice@example.org (mock ec256) and encryption to bob@example.org (tests/fuzz/pki/bob.pem).
 *
 * What it exercises: spooling, message kind, MIME, CMS RecipientInfo parsing and the
 * RecipientIdentifier index lookup (the mock's keys are made afresh in every process, so an
 * enveloped seed matches a recipient and then fails uniformly), verification into the
 * Authentication-Results header, outbound sign and sign+encrypt, and the header rewriting
 * (read_field, Content-* replacement) applied to a model of the message.
 *
 * What it checks -- the gateway's promise for hostile mail (issue 6 "never lose mail",
 * issue 8 bad-input corpus), on every input, by abort():
 *   - no reject (not configured) and no tempfail caused by the message itself (a tempfail
 *     keeps a poison message in the MTA's queue); a tempfail only for token or system errors;
 *   - passed, undecryptable, verified and oversize messages keep their body and every field
 *     except forged ones of ours (RFC 8601 §5); undecryptable ones carry our header saying
 *     why, verified ones an Authentication-Results header;
 *   - decrypted and signed messages have a replacement, and applying it succeeds;
 *   - every field deletion names a field that exists.
 * At start, a message encrypted to this process's mock rsa2048 key must come out decrypted
 * (the success path, which mutated inputs cannot reach).
 * P11S_FUZZ_GATEWAY_REPORT=1 prints one line per input: outcome and detail.
 */
#define _GNU_SOURCE /* mkdtemp */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>

#include <p11smime/p11smime.h>

#include "gateway/gateway.h"
#include "gateway/message.h"
#include "pkcs11/mock.h"

#include "fuzz.h"

static gw_config cfg;
static gw_pool *pool;
static char dir[] = "/tmp/p11s-fuzz-gw.XXXXXX";
static int report;

static void cleanup(void)
{
	char cmd[128];

	gw_pool_free(pool);
	gw_config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "fuzz_gateway: cannot remove %s\n", dir);
	}
}

__attribute__((noreturn)) static void die(const char *what)
{
	fprintf(stderr, "fuzz_gateway: %s: %s\n", what, p11s_error_last()->message);
	abort();
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		die(path);
	}
}

static void copy_file(const char *from, const char *to)
{
	char buf[16384];
	FILE *f = fopen(from, "rb");
	size_t n;

	if (f == NULL) {
		die(from);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	write_file(to, buf, n);
}

/* ---- a model of the message, for the edit operations ---------------------------------- */

typedef struct model {
	const gw_msg *m;
	unsigned char *deleted;   /* per original field */
	size_t nadded, ninserted;
	int body_replaced;
	int inserted_mark, inserted_ar;
	int changed;              /* a field's value was changed */
} model;

static int op_delheader(void *ctx, const char *name, int idx)
{
	model *md = ctx;
	int n = 0;

	/* Occurrence `idx` among the fields of that name still present (smfi_chgheader). */
	for (size_t i = 0; i < md->m->nhdrs; i++) {
		if (!md->deleted[i] && strcasecmp(md->m->hdrs[i].name, name) == 0 && ++n == idx) {
			md->deleted[i] = 1;
			return 0;
		}
	}
	fprintf(stderr, "fuzz_gateway: deletion of %s #%d, which does not exist\n", name, idx);
	abort();
}

static int op_addheader(void *ctx, const char *name, const char *value)
{
	model *md = ctx;

	if (*name == '\0' || value == NULL) {
		fprintf(stderr, "fuzz_gateway: an empty field added\n");
		abort();
	}
	md->nadded++;
	return 0;
}

static int op_insheader(void *ctx, const char *name, const char *value)
{
	model *md = ctx;

	(void)value;
	md->ninserted++;
	if (strcmp(name, GW_MARK_HEADER) == 0) {
		md->inserted_mark = 1;
	} else if (strcmp(name, GW_AR_HEADER) == 0) {
		md->inserted_ar = 1;
	}
	return 0;
}

static int op_replacebody(void *ctx, const unsigned char *p, size_t n)
{
	model *md = ctx;

	(void)p;
	(void)n;
	md->body_replaced = 1;
	return 0;
}

static int op_chgheader(void *ctx, const char *name, int idx, const char *value)
{
	model *md = ctx;
	int n = 0;

	for (size_t i = 0; value != NULL && i < md->m->nhdrs; i++) {
		if (!md->deleted[i] && strcasecmp(md->m->hdrs[i].name, name) == 0 && ++n == idx) {
			md->changed = 1;
			return 0;
		}
	}
	fprintf(stderr, "fuzz_gateway: change of %s #%d, which does not exist\n", name, idx);
	abort();
}

static const gw_edit_ops model_ops = {
	op_delheader, op_addheader, op_insheader, op_replacebody, op_chgheader,
};

/* ---- feeding a message as the MTA would ----------------------------------------------- */

/* A field name as the MTA recognises one: printable, no blank, no colon (RFC 5322 §2.2). */
static size_t field_name_len(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && line[i] > ' ' && line[i] < 127 && line[i] != ':') {
		i++;
	}
	return i > 0 && i < len && line[i] == ':' ? i : 0;
}

/* The next line of data[*off..size): start and length without the line end. */
static int next_line(const uint8_t *data, size_t size, size_t *off, const char **line,
    size_t *len)
{
	const uint8_t *p, *nl;

	if (*off >= size) {
		return 0;
	}
	p = data + *off;
	nl = memchr(p, '\n', size - *off);
	*line = (const char *)p;
	*len = nl != NULL ? (size_t)(nl - p) : size - *off;
	*off += *len + (nl != NULL);
	if (*len > 0 && (*line)[*len - 1] == '\r') {
		(*len)--;
	}
	return 1;
}

/* A C string of the field value, as libmilter passes it (it ends at a NUL). */
static char *cstr(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL) {
		abort();
	}
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static int feed(gw_msg *m, const uint8_t *data, size_t size)
{
	char *name = NULL, *value = NULL, *from = NULL, *to = NULL;
	const char *line;
	size_t off = 0, len, body_off = size, vlen = 0;
	int rc = P11S_OK;

	/* The envelope first needs From and To: one pass over the header for them. */
	while (next_line(data, size, &off, &line, &len) && len > 0) {
		size_t nl = field_name_len(line, len);

		if (nl == 4 && strncasecmp(line, "From", 4) == 0 && from == NULL) {
			from = cstr(line + 5, len - 5);
		} else if (nl == 2 && strncasecmp(line, "To", 2) == 0 && to == NULL) {
			to = cstr(line + 3, len - 3);
		}
	}
	if (gw_msg_begin(m, cfg.spool, cfg.max_size, from != NULL ? from : "<>", 0) < 0 ||
	    gw_msg_rcpt(m, to != NULL ? to : "<postmaster@example.org>") < 0) {
		rc = -1;
		goto out;
	}
	off = 0;
	for (;;) {
		size_t at = off, nl;

		if (!next_line(data, size, &off, &line, &len)) {
			break;
		}
		if (len > 0 && (line[0] == ' ' || line[0] == '\t') && name != NULL) {
			/* A fold: the MTA passes the value with "\n" between its lines. */
			char *nv = realloc(value, vlen + 1 + len + 1);

			if (nv == NULL) {
				abort();
			}
			value = nv;
			value[vlen++] = '\n';
			memcpy(value + vlen, line, len);
			vlen += len;
			value[vlen] = '\0';
			continue;
		}
		if (name != NULL) {
			if (gw_msg_header(m, name, value) < 0) {
				rc = -1;
				goto out;
			}
			free(name);
			free(value);
			name = value = NULL;
		}
		if (len == 0) {
			body_off = off;
			break;
		}
		if ((nl = field_name_len(line, len)) == 0) {
			/* Not a field: the header ends, this line is the first of the body. */
			body_off = at;
			break;
		}
		name = cstr(line, nl);
		line += nl + 1;
		len -= nl + 1;
		while (len > 0 && (*line == ' ' || *line == '\t')) {
			line++;
			len--;
		}
		value = cstr(line, len);
		vlen = len;
	}
	if (name != NULL && gw_msg_header(m, name, value) < 0) {
		rc = -1;
		goto out;
	}
	gw_msg_eoh(m);
	/* The body in SMTP form: every line end CRLF. */
	off = body_off;
	while (off < size) {
		const uint8_t *nlp = memchr(data + off, '\n', size - off);
		size_t n = nlp != NULL ? (size_t)(nlp - (data + off)) : size - off;

		if (n > 0 && data[off + n - 1] == '\r') {
			n--;
		}
		gw_msg_body(m, data + off, n);
		if (nlp != NULL) {
			gw_msg_body(m, "\r\n", 2);
			off = (size_t)(nlp - data) + 1;
		} else {
			off = size;
		}
	}
out:
	free(name);
	free(value);
	free(from);
	free(to);
	return rc;
}

/* ---- one message ---------------------------------------------------------------------- */

/*
 * One pass of the message through the gateway: inbound (from 192.0.2.1, not a trusted
 * client) or outbound (from 127.0.0.1, a trusted client; only done when MAIL FROM is a
 * configured signer, as otherwise it is the inbound pass again). -1: not run.
 */
static int run(const uint8_t *data, size_t size, int outbound)
{
	gw_msg m;
	gw_result r;
	model md;
	struct sockaddr_in *sin = (struct sockaddr_in *)&m.client;
	gw_outcome o;
	int unchanged, applied;

	memset(&m, 0, sizeof(m));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(outbound ? INADDR_LOOPBACK : 0xc0000201u);
	m.have_client = 1;
	if (feed(&m, data, size) < 0) {
		die("feeding the message");
	}
	if (outbound && (!m.env_from_ok || gw_policy_signer(&cfg, m.env_from) == NULL)) {
		gw_msg_reset(&m);
		return -1;
	}
	o = gw_msg_decide(&m, &cfg, pool, &r);
	if (report) {
		fprintf(stderr, "fuzz_gateway: %s outcome=%s %s%s%s\n",
		    outbound ? "outbound" : "inbound", gw_outcome_name(o), r.detail,
		    r.mark[0] ? " | " : "", r.mark);
	}
	if (o == GW_OUT_REJECTED) {
		fprintf(stderr, "fuzz_gateway: rejected, but reject is not configured\n");
		abort();
	}
	if (o == GW_OUT_TEMPFAIL) {
		int cls = p11s_error_class(r.rc);

		/* A tempfail only for the token or the system, never for the message. */
		if (r.rc == P11S_OK || r.rc == P11S_ERR_MALFORMED || r.rc == P11S_ERR_VERIFY ||
		    r.rc == P11S_ERR_DECRYPT || r.rc == P11S_ERR_CRYPTO ||
		    (cls != P11S_ECLASS_TOKEN && cls != P11S_ECLASS_SYSTEM)) {
			fprintf(stderr, "fuzz_gateway: tempfail caused by the message: %s (%s)\n",
			    r.detail, p11s_error_name(r.rc));
			abort();
		}
		goto out;
	}
	memset(&md, 0, sizeof(md));
	md.m = &m;
	if ((md.deleted = calloc(m.nhdrs + 1, 1)) == NULL) {
		abort();
	}
	applied = gw_msg_apply(&m, &cfg, &r, &model_ops, &md);
	if (applied < 0) {
		fprintf(stderr, "fuzz_gateway: %s: applying the result failed\n", gw_outcome_name(o));
		abort();
	}
	unchanged = o == GW_OUT_PASS || o == GW_OUT_UNDECRYPTABLE || o == GW_OUT_VERIFIED ||
	    o == GW_OUT_OVERSIZE;
	if (unchanged) {
		int other_deleted = 0;

		for (size_t i = 0; i < m.nhdrs; i++) {
			if (md.deleted[i] && strcasecmp(m.hdrs[i].name, GW_MARK_HEADER) != 0 &&
			    strcasecmp(m.hdrs[i].name, GW_AR_HEADER) != 0) {
				other_deleted = 1;
			}
		}
		if (r.result != NULL || md.body_replaced || md.nadded > 0 || other_deleted || md.changed) {
			fprintf(stderr, "fuzz_gateway: %s, but the message was changed\n",
			    gw_outcome_name(o));
			abort();
		}
	} else if (r.result == NULL || !md.body_replaced) {
		fprintf(stderr, "fuzz_gateway: %s without a replacement\n", gw_outcome_name(o));
		abort();
	}
	if ((o == GW_OUT_UNDECRYPTABLE && !md.inserted_mark) ||
	    (o == GW_OUT_VERIFIED && !md.inserted_ar)) {
		fprintf(stderr, "fuzz_gateway: %s without a header saying why\n", gw_outcome_name(o));
		abort();
	}
	free(md.deleted);
out:
	gw_result_free(&r);
	gw_msg_reset(&m);
	return (int)o;
}

/* The success path of inbound decryption: a message encrypted to this process's mock key. */
static void self_test(void)
{
	static const char text[] = "From: carol@example.net\r\nTo: alice@example.org\r\n"
	    "Subject: self-test\r\n\r\nfor the token\r\n";
	p11s_encrypt_opts eo = P11S_ENCRYPT_OPTS_INIT;
	const char *files[1];
	char cert[4200], *buf = NULL;
	size_t len;
	const unsigned char *der = p11s_mock__cert_der("rsa2048", &len);
	X509 *x = der != NULL ? d2i_X509(NULL, &der, (long)len) : NULL;
	FILE *in, *out, *f;
	long n;

	snprintf(cert, sizeof(cert), "%s/mock-rsa2048.pem", dir);
	if (x == NULL || (f = fopen(cert, "w")) == NULL) {
		die("mock certificate");
	}
	PEM_write_X509(f, x);
	fclose(f);
	X509_free(x);
	files[0] = cert;
	eo.recipient_files = files;
	eo.n_recipient_files = 1;
	eo.crlf = 1;
	if ((in = p11s_fuzz_file((const uint8_t *)text, sizeof(text) - 1)) == NULL ||
	    (out = tmpfile()) == NULL || p11s_encrypt_message(in, out, &eo) != P11S_OK) {
		die("encrypting the self-test message");
	}
	fclose(in);
	if ((n = ftell(out)) <= 0 || (buf = malloc((size_t)n)) == NULL ||
	    fseek(out, 0, SEEK_SET) != 0 || fread(buf, 1, (size_t)n, out) != (size_t)n) {
		die("reading the self-test message");
	}
	fclose(out);
	if (run((const uint8_t *)buf, (size_t)n, 0) != GW_OUT_DECRYPTED) {
		fprintf(stderr, "fuzz_gateway: the self-test message was not decrypted\n");
		abort();
	}
	free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[4200], text[8192], err[512];

	(void)argc;
	(void)argv;
	report = getenv("P11S_FUZZ_GATEWAY_REPORT") != NULL;
	/* The per-message log lines of the library stay quiet unless asked for. */
	p11s_log_set_level(report ? P11S_LOG_INFO : P11S_LOG_ERROR);
	if (mkdtemp(dir) == NULL) {
		die("mkdtemp");
	}
	atexit(cleanup);
	snprintf(path, sizeof(path), "%s/pin", dir);
	write_file(path, "1234\n", 5);      /* the mock's PIN */
	snprintf(path, sizeof(path), "%s/certs", dir);
	if (mkdir(path, 0700) != 0) {
		die(path);
	}
	snprintf(path, sizeof(path), "%s/certs/bob@example.org.pem", dir);
	copy_file(P11S_FUZZ_PKI "/bob.pem", path);
	snprintf(text, sizeof(text),
	    "[milter]\nsocket = inet:10025@127.0.0.1\nspool = %s\nlog = stderr\n"
	    "[token]\nbackend = mock\nmodule = mock\nuri = pkcs11:token=mock\n"
	    "pin-source = file:%s/pin\n"
	    "[inbound]\ntrust = " P11S_FUZZ_PKI "/ca.pem\nauthserv-id = fuzz.test\n"
	    "[outbound]\nsign = alice@example.org pkcs11:token=mock;object=ec256;type=private\n"
	    "encrypt = yes\ncerts = %s/certs\n", dir, dir, dir);
	if (gw_config_parse(&cfg, "fuzz_gateway.conf", text, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_gateway: %s\n", err);
		abort();
	}
	if (gw_pool_new(&pool, &cfg) != P11S_OK || gw_pool_nkeys(pool) <= 0) {
		die("the mock token");
	}
	self_test();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size, 0);
	run(data, size, 1);
	return 0;
}

/*
 * The per-message work of the gateway (message.h): a message is spooled to an unlinked
 * temporary file as it arrives (never held in memory); at end of message the whole decision
 * is made under the current state (configuration + token pool):
 *
 *   outbound (trusted or authenticated client, From and MAIL FROM a configured signer):
 *       sign with the signer's token key, optionally encrypt to recipients with certificates;
 *   inbound: an enveloped message for a key in the index is decrypted; a signed message (or
 *       a decrypted one that turns out signed) gets an Authentication-Results header.
 *
 * "Never lose mail" (DESIGN.md decision 9): token unavailable or any internal failure is a
 * tempfail, so the MTA keeps the message and retries. A message we cannot decrypt is passed
 * unchanged with a header saying why, or rejected with one uniform reply (STANDARDS.md §12:
 * no oracle). Over the size limit: passed unchanged. Hostile input is never a tempfail (that
 * would keep a poison message in the queue): it passes with a header saying why.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "message.h"

static const char *const outcome_names[] = {
	"passed", "decrypted", "undecryptable", "rejected", "signed", "signed+encrypted",
	"verified", "oversize", "tempfail",
};

const char *gw_outcome_name(gw_outcome o)
{
	return (unsigned)o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o]
	                                                                        : "?";
}

/* ---- spooling ------------------------------------------------------------------------------ */

/* An unlinked temporary file in the spool directory: nothing is left behind on a crash. */
static FILE *spool_file(const char *dir)
{
	char path[4096];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/p11smime-gw.XXXXXX", dir);
	if ((fd = mkstemp(path)) < 0) {
		p11s_log(P11S_LOG_ERROR, "cannot create a spool file in %s: %s", dir, strerror(errno));
		return NULL;
	}
	(void)unlink(path);
	if ((f = fdopen(fd, "w+")) == NULL) {
		close(fd);
	}
	return f;
}

void gw_msg_reset(gw_msg *m)
{
	if (m->spool != NULL) {
		fclose(m->spool);
	}
	m->spool = NULL;
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i]);
	}
	free(m->rcpts);
	m->rcpts = NULL;
	m->nrcpts = 0;
	for (size_t i = 0; i < m->nhdrs; i++) {
		free(m->hdrs[i].name);
		free(m->hdrs[i].value);
	}
	free(m->hdrs);
	m->hdrs = NULL;
	m->nhdrs = 0;
	m->size = 0;
	m->max = 0;
	m->oversize = 0;
	m->io_error = 0;
	m->in_body = 0;
	m->authenticated = 0;
	m->env_from[0] = '\0';
	m->env_from_ok = 0;
}

int gw_msg_begin(gw_msg *m, const char *spool_dir, uint64_t max, const char *env_from,
    int authenticated)
{
	gw_msg_reset(m);
	m->max = max;
	m->env_from_ok = env_from != NULL && gw_addr_spec(env_from, m->env_from,
	    sizeof(m->env_from)) == 0;
	m->authenticated = authenticated;
	if ((m->spool = spool_file(spool_dir)) == NULL) {
		return P11S_ERR_IO;
	}
	return P11S_OK;
}

int gw_msg_rcpt(gw_msg *m, const char *addr)
{
	char a[320], **n;

	if (addr == NULL || gw_addr_spec(addr, a, sizeof(a)) < 0) {
		a[0] = '\0';
	}
	if ((n = realloc(m->rcpts, (m->nrcpts + 1) * sizeof(*n))) == NULL) {
		return P11S_ERR_NOMEM;
	}
	m->rcpts = n;
	if ((n[m->nrcpts] = strdup(a)) == NULL) {
		return P11S_ERR_NOMEM;
	}
	m->nrcpts++;
	return P11S_OK;
}

static void spool_write(gw_msg *m, const void *p, size_t n)
{
	if (m->io_error) {
		return;
	}
	m->size += n;
	if (m->size > m->max) {
		/* Over the limit the message passes unchanged: stop spooling, free the space. */
		if (!m->oversize) {
			m->oversize = 1;
			if (m->spool != NULL && (fflush(m->spool) != 0 ||
			        ftruncate(fileno(m->spool), 0) != 0)) {
				m->io_error = 1;
			}
		}
		return;
	}
	if (m->spool != NULL && fwrite(p, 1, n, m->spool) != n) {
		m->io_error = 1;
	}
}

int gw_msg_header(gw_msg *m, const char *name, const char *value)
{
	gw_hdr *n;
	const char *run;

	if ((n = realloc(m->hdrs, (m->nhdrs + 1) * sizeof(*n))) == NULL) {
		return P11S_ERR_NOMEM;
	}
	m->hdrs = n;
	n[m->nhdrs].name = strdup(name);
	n[m->nhdrs].value = NULL;
	if (n[m->nhdrs].name == NULL) {
		return P11S_ERR_NOMEM;
	}
	if (strcasecmp(name, "From") == 0 || strcasecmp(name, GW_AR_HEADER) == 0) {
		if ((n[m->nhdrs].value = strdup(value)) == NULL) {
			m->io_error = 1;
		}
	}
	m->nhdrs++;
	/* The spooled header: "Name: value" with every line end CRLF (RFC 5322 §2.2.3 folding). */
	spool_write(m, name, strlen(name));
	spool_write(m, ": ", 2);
	run = value;
	for (const char *p = value; *p; p++) {
		if (*p == '\n' && (p == value || p[-1] != '\r')) {
			spool_write(m, run, (size_t)(p - run));
			spool_write(m, "\r", 1);
			run = p;
		}
	}
	spool_write(m, run, strlen(run));
	spool_write(m, "\r\n", 2);
	return P11S_OK;
}

void gw_msg_eoh(gw_msg *m)
{
	spool_write(m, "\r\n", 2);
	m->in_body = 1;
}

void gw_msg_body(gw_msg *m, const void *p, size_t n)
{
	spool_write(m, p, n);
}

void gw_result_free(gw_result *r)
{
	if (r->result != NULL) {
		fclose(r->result);
	}
	r->result = NULL;
}

/* ---- the decision ------------------------------------------------------------------------- */

typedef struct eom {
	gw_msg *m;
	const gw_config *cfg;
	gw_pool *pool;
	gw_result *r;
} eom;

/*
 * An error caused by the message itself (malformed MIME or CMS, a limit exceeded, a
 * signature or decryption that fails): permanent, never a reason to tempfail.
 */
static int input_error(int rc)
{
	return rc == P11S_ERR_MALFORMED || rc == P11S_ERR_VERIFY || rc == P11S_ERR_DECRYPT;
}

static gw_outcome tempfail(eom *e, int rc, const char *what)
{
	e->r->rc = rc < 0 ? rc : P11S_ERR_GENERIC;
	if (what != NULL) {
		snprintf(e->r->detail, sizeof(e->r->detail), "%s: %s", what,
		    p11s_error_last()->message);
	}
	return GW_OUT_TEMPFAIL;
}

static gw_outcome verify_into_header(eom *e, FILE *msg)
{
	p11s_verify_opts o;
	p11s_verify_result *v = NULL;
	gw_result *r = e->r;
	int rc;

	gw_policy_verify_opts(e->cfg, &o);
	rewind(msg);
	rc = p11s_verify_message_rev(&v, msg, &o, gw_policy_revocation(e->cfg));
	if (input_error(rc)) {
		/*
		 * The message itself is at fault (malformed MIME or CMS, limits exceeded): a
		 * permanent error (RFC 8601 §2.7.1 "permerror"), never a tempfail that would keep
		 * the message in the queue for ever.
		 */
		gw_authres_format(r->authres, sizeof(r->authres), e->cfg->authserv_id, NULL);
		r->verdict = 0;
		snprintf(r->detail + strlen(r->detail), sizeof(r->detail) - strlen(r->detail),
		    " smime=permerror");
		return GW_OUT_VERIFIED;
	}
	if (rc < 0) {
		return tempfail(e, rc, "verify");
	}
	gw_authres_format(r->authres, sizeof(r->authres), e->cfg->authserv_id, v);
	r->verdict = v->valid ? 1 : 0;
	if (v->valid && e->cfg->harvest && e->cfg->store != NULL) {
		gw_store_harvest(e->cfg, v); /* after a successful verification only */
	}
	snprintf(r->detail + strlen(r->detail), sizeof(r->detail) - strlen(r->detail),
	    " smime=%s", v->valid ? "pass" : "fail");
	for (size_t i = 0; i < v->n_warnings; i++) {
		if (strcmp(v->warnings[i].code, "weak-algorithm") == 0) {
			p11s_log(P11S_LOG_WARN, "weak-algorithm: %s", v->warnings[i].message);
		}
	}
	p11s_verify_result_free(v);
	return GW_OUT_VERIFIED;
}

/*
 * Decrypt `in` (the spooled message, or what an outer signed layer held) for the recipient.
 * `layers` ("" or "; layer1=signed:fail(...)") names the outer layers already peeled; it is
 * appended to our marker header so the reader sees which layer failed (issue 23).
 */
static gw_outcome do_inbound_decrypt(eom *e, FILE *in, const char *layers)
{
	p11s_decrypt_info info;
	p11s_decrypt_opts dopts;
	p11s_msg_kind kind;
	gw_result *r = e->r;
	gw_slot *slot;
	int rc, matched = 0;

	if (e->pool == NULL || (slot = gw_pool_acquire(e->pool)) == NULL) {
		snprintf(r->detail, sizeof(r->detail), "token unavailable");
		r->rc = P11S_ERR_TOKEN;
		return GW_OUT_TEMPFAIL;
	}
	if ((r->result = spool_file(e->cfg->spool)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		return tempfail(e, P11S_ERR_IO, NULL);
	}
	rewind(in);
	gw_policy_decrypt_opts(e->cfg, &dopts);
	rc = gw_slot_decrypt_opts(slot, in, r->result, &dopts, &info, &matched);
	gw_pool_release(e->pool, slot, matched || rc != P11S_ERR_NOT_FOUND ? rc : P11S_OK);
	if (rc == P11S_OK && fflush(r->result) != 0) {
		snprintf(r->detail, sizeof(r->detail), "spool: %s", strerror(errno));
		r->rc = P11S_ERR_IO;
		return GW_OUT_TEMPFAIL;
	}
	if (rc == P11S_OK) {
		snprintf(r->mark, sizeof(r->mark), "decrypted; content=%s; cipher=%s; "
		    "authenticated=%s; key-management=%s%s", info.content_type, info.cipher,
		    info.authenticated ? "yes" : "no (CBC: no integrity protection)",
		    info.key_management, layers);
		snprintf(r->detail, sizeof(r->detail), "%s %s", info.cipher, info.key_uri);
		if (!info.authenticated) {
			p11s_log(P11S_LOG_WARN, "unauthenticated-encryption: %s (%s) decrypted without "
			    "integrity protection (EFAIL); [inbound] require-authenticated refuses it",
			    info.content_type, info.cipher);
		}
		if (e->cfg->verify) {
			rewind(r->result);
			if (p11s_message_kind(r->result, &kind) == P11S_OK && kind == P11S_MSG_SIGNED &&
			    verify_into_header(e, r->result) == GW_OUT_TEMPFAIL) {
				return GW_OUT_TEMPFAIL;
			}
		}
		return GW_OUT_DECRYPTED;
	}
	fclose(r->result);
	r->result = NULL;
	if (!matched && rc == P11S_ERR_NOT_FOUND) {
		snprintf(r->mark, sizeof(r->mark), "not decrypted (no key for any recipient)%s", layers);
		snprintf(r->detail, sizeof(r->detail), "no key for any recipient");
		return GW_OUT_UNDECRYPTABLE;
	}
	if (rc == P11S_ERR_VERIFY) {
		/* [inbound] require-authenticated: refused before any token operation. */
		snprintf(r->mark, sizeof(r->mark), "not decrypted (unauthenticated-encryption: "
		    "enveloped-data refused by require-authenticated)");
		snprintf(r->detail, sizeof(r->detail), "unauthenticated-encryption");
		return GW_OUT_UNDECRYPTABLE;
	}
	if (input_error(rc)) {
		/* One reason for every data-dependent failure: no oracle (STANDARDS.md §12). */
		snprintf(r->mark, sizeof(r->mark), "not decrypted (decryption failed)%s", layers);
		snprintf(r->detail, sizeof(r->detail), "decryption failed");
		return GW_OUT_UNDECRYPTABLE;
	}
	r->rc = rc;
	snprintf(r->detail, sizeof(r->detail), "%s: %s", p11s_error_name(rc),
	    p11s_error_last()->message);
	return GW_OUT_TEMPFAIL;
}

/* At most this many signed layers are peeled to reach an encrypted one (RFC 8551 §3.6). */
#define GW_MAX_OUTER_SIGNED 4

/* "; layerN=signed:pass" or "; layerN=signed:fail(code,code)" appended to `buf`. */
static void layer_note(char *buf, size_t len, size_t n, const p11s_verify_result *v)
{
	size_t l = strlen(buf);

	snprintf(buf + l, len - l, "; layer%zu=signed:%s", n, v->valid ? "pass" : "fail");
	if (!v->valid) {
		const char *code = v->n_reasons > 0 ? v->reasons[0].code
		    : v->n_signers > 0 && v->signers[0].n_reasons > 0 ? v->signers[0].reasons[0].code
		                                                      : "invalid";

		l = strlen(buf);
		snprintf(buf + l, len - l, "(%s)", code);
	}
}

/*
 * Inbound signed mail with decryption on: issue 23, every layer. The signed layers on the
 * outside (a list server's signature, a triple wrap's outer one) are verified and peeled —
 * also when the signature fails — until an enveloped layer, which is decrypted for the
 * recipient; the marker header names every outer layer and its verdict, the decrypted message
 * replaces the original and its own signature (if any) gets the Authentication-Results.
 * Anything else (no enveloped layer inside, it cannot be read, it cannot be decrypted) is the
 * unchanged message with the verdict of its outer signature, as before: mail is never dropped.
 * @return the outcome, or GW_OUT_PASS with *handled = 0 when the caller should verify as usual.
 */
static gw_outcome do_inbound_layers(eom *e, int *handled)
{
	p11s_verify_opts o;
	char layers[300] = "";
	FILE *cur = e->m->spool, *next = NULL, *entity = NULL;
	p11s_verify_result *outer = NULL; /* the outermost verdict, reused when nothing is inside */
	gw_outcome out = GW_OUT_PASS;
	size_t n = 0;

	*handled = 0;
	gw_policy_verify_opts(e->cfg, &o); /* trust, CRLs, [inbound] allow-weak */
	for (;;) {
		p11s_verify_result *v = NULL;
		p11s_msg_kind kind;
		int rc;

		rewind(cur);
		if (p11s_message_kind(cur, &kind) < 0) {
			break;
		}
		if (kind == P11S_MSG_ENVELOPED && n > 0) {
			gw_outcome d = do_inbound_decrypt(e, cur, layers);

			if (d == GW_OUT_DECRYPTED || d == GW_OUT_TEMPFAIL) {
				*handled = 1;
				out = d;
			} else {
				/* Undecryptable inside a signature: the original with the layers said. */
				char mark[sizeof(e->r->mark)];

				snprintf(mark, sizeof(mark), "%s", e->r->mark);
				if ((out = verify_into_header(e, e->m->spool)) != GW_OUT_TEMPFAIL) {
					snprintf(e->r->mark, sizeof(e->r->mark), "%s", mark);
				}
				*handled = 1;
			}
			break;
		}
		if (kind != P11S_MSG_SIGNED || n == GW_MAX_OUTER_SIGNED) {
			break;
		}
		rewind(cur);
		if ((rc = p11s_verify_message_rev(&v, cur, &o, gw_policy_revocation(e->cfg))) < 0) {
			if (!input_error(rc)) {
				out = tempfail(e, rc, "verify");
				*handled = 1;
			}
			break;
		}
		if ((entity = spool_file(e->cfg->spool)) == NULL ||
		    (next = spool_file(e->cfg->spool)) == NULL) {
			p11s_verify_result_free(v);
			out = tempfail(e, P11S_ERR_IO, NULL);
			*handled = 1;
			break;
		}
		/* A failed signature is peeled too: it must not hide what is inside (issue 23). */
		rc = v->valid ? p11s_verify_write_content(v, entity)
		              : p11s_verify_write_content_unverified(v, entity);
		if (rc < 0 || fflush(entity) != 0 || fseek(entity, 0, SEEK_SET) != 0 ||
		    p11s_message_join(cur, entity, next) < 0 || fflush(next) != 0) {
			p11s_verify_result_free(v);
			p11s_error_clear();
			break;
		}
		layer_note(layers, sizeof(layers), ++n, v);
		if (outer == NULL) {
			outer = v;
		} else {
			p11s_verify_result_free(v);
		}
		fclose(entity);
		entity = NULL;
		if (cur != e->m->spool) {
			fclose(cur);
		}
		cur = next;
		next = NULL;
	}
	if (entity != NULL) {
		fclose(entity);
	}
	if (next != NULL) {
		fclose(next);
	}
	if (cur != e->m->spool) {
		fclose(cur);
	}
	if (!*handled && outer != NULL) {
		/* No encrypted layer inside: the outer verdict as verify_into_header() gives it. */
		gw_authres_format(e->r->authres, sizeof(e->r->authres), e->cfg->authserv_id, outer);
		e->r->verdict = outer->valid ? 1 : 0;
		snprintf(e->r->detail + strlen(e->r->detail),
		    sizeof(e->r->detail) - strlen(e->r->detail), " smime=%s",
		    outer->valid ? "pass" : "fail");
		if (outer->valid && e->cfg->harvest && e->cfg->store != NULL) {
			gw_store_harvest(e->cfg, outer); /* after a successful verification only */
		}
		out = GW_OUT_VERIFIED;
		*handled = 1;
	}
	p11s_verify_result_free(outer);
	return out;
}

/*
 * Every recipient's certificate: DIR/<address>.pem when [outbound] certs has it, else the
 * store's (gw_store_recipient()); 0 when one has neither (then the message is not encrypted).
 * *cbc: a store recipient has not announced AES-256-GCM (RFC 8551 §2.7).
 */
static int recipient_files(eom *e, char ***out, X509 ***certs, size_t *ncerts, int *cbc)
{
	char **files = calloc(e->m->nrcpts + 1, sizeof(*files));
	X509 **xs = calloc(e->m->nrcpts + 1, sizeof(*xs));
	size_t nf = 0, nx = 0;

	*out = NULL;
	*certs = NULL;
	*ncerts = 0;
	*cbc = 0;
	if (files == NULL || xs == NULL) {
		free(files);
		free(xs);
		return -1;
	}
	for (size_t i = 0; i < e->m->nrcpts; i++) {
		const char *a = e->m->rcpts[i];
		size_t len = (e->cfg->certs != NULL ? strlen(e->cfg->certs) : 0) + strlen(a) + 6;
		int caps;

		/* An address with a '/' (or starting with '.') never names a file outside DIR. */
		if (a[0] == '\0' || a[0] == '.' || strchr(a, '/') != NULL) {
			goto none;
		}
		if (e->cfg->certs != NULL) {
			if ((files[nf] = malloc(len)) == NULL) {
				goto none;
			}
			snprintf(files[nf], len, "%s/%s.pem", e->cfg->certs, a);
			if (access(files[nf], R_OK) == 0) {
				nf++;
				continue;
			}
			free(files[nf]);
			files[nf] = NULL;
		}
		if (e->cfg->store == NULL || gw_store_recipient(e->cfg, a, &xs[nx], &caps) < 0) {
			goto none;
		}
		*cbc |= caps != P11S_CAPS_GCM;
		nx++;
	}
	*out = files;
	*certs = xs;
	*ncerts = nx;
	return (int)nf + (int)nx;
none:
	for (size_t i = 0; i < nf; i++) {
		free(files[i]);
	}
	for (size_t i = 0; i < nx; i++) {
		X509_free(xs[i]);
	}
	free(files);
	free(xs);
	return 0;
}

/* What recipient_files() found, freed. */
static void free_recipients(char **files, int nfiles, X509 **certs, size_t ncerts)
{
	for (int i = 0; i < nfiles - (int)ncerts; i++) {
		free(files[i]);
	}
	free(files);
	for (size_t i = 0; i < ncerts; i++) {
		X509_free(certs[i]);
	}
	free(certs);
}

static gw_outcome do_outbound_sign(eom *e, const gw_signer *who)
{
	p11s_encrypt_opts eo = P11S_ENCRYPT_OPTS_INIT;
	p11s_sign_opts so = P11S_SIGN_OPTS_INIT;
	gw_result *r = e->r;
	gw_slot *slot;
	p11s_key *key;
	FILE *enc = NULL;
	char **files = NULL;
	X509 **certs = NULL;
	size_t ncerts = 0;
	int rc, nfiles = 0, cbc = 0;

	if (e->pool == NULL || (slot = gw_pool_acquire(e->pool)) == NULL) {
		snprintf(r->detail, sizeof(r->detail), "token unavailable");
		r->rc = P11S_ERR_TOKEN;
		return GW_OUT_TEMPFAIL;
	}
	if ((key = gw_slot_signer_key(e->pool, slot, who)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		snprintf(r->detail, sizeof(r->detail), "no signing key for %s on the token", who->addr);
		r->rc = P11S_ERR_NOT_FOUND;
		return GW_OUT_TEMPFAIL;
	}
	if ((r->result = spool_file(e->cfg->spool)) == NULL) {
		gw_pool_release(e->pool, slot, P11S_OK);
		return tempfail(e, P11S_ERR_IO, NULL);
	}
	/*
	 * Whether the message is encrypted too is known before it is signed: with [outbound]
	 * protect-headers the signed entity of a message that is encrypted next is the
	 * Cryptographic Payload (RFC 9788 §2.1.1: hp="cipher", the outer Subject "[...]").
	 */
	if (e->cfg->encrypt) {
		nfiles = recipient_files(e, &files, &certs, &ncerts, &cbc);
	}
	rewind(e->m->spool);
	gw_policy_sign_opts(e->cfg, &so);
	if (e->cfg->protect_headers) {
		so.protect_headers = nfiles > 0 ? P11S_PROTECT_HEADERS_ENCRYPTED : 1;
	}
	so.out_private = 1; /* a spool file, discarded unless the message is signed */
	rc = p11s_sign_message(key, &so, e->m->spool, r->result);
	gw_pool_release(e->pool, slot, rc);
	if (rc == P11S_OK) {
		gw_pool_note_signed(e->pool, who);
	}
	int flush_failed = rc == P11S_OK && fflush(r->result) != 0;

	if (flush_failed) {
		snprintf(r->detail, sizeof(r->detail), "spool: %s", strerror(errno));
		rc = P11S_ERR_IO;
	}
	if (rc < 0 || nfiles <= 0) {
		if (nfiles > 0) {
			free_recipients(files, nfiles, certs, ncerts);
		}
		if (rc == P11S_ERR_MALFORMED) {
			fclose(r->result);
			r->result = NULL;
			snprintf(r->mark, sizeof(r->mark), "not signed (not an RFC 5322 message)");
			snprintf(r->detail, sizeof(r->detail), "not signed: %s",
			    p11s_error_last()->message);
			return GW_OUT_PASS;
		}
		if (flush_failed) {
			r->rc = rc;
			return GW_OUT_TEMPFAIL;
		}
		if (rc < 0) {
			return tempfail(e, rc, "sign");
		}
		snprintf(r->detail, sizeof(r->detail), "signer %s", who->addr);
		return GW_OUT_SIGNED;
	}
	snprintf(r->detail, sizeof(r->detail), "signer %s", who->addr);
	/* Sign, then encrypt (RFC 8551 §3.7): to every recipient's certificate from DIR. */
	if ((enc = spool_file(e->cfg->spool)) == NULL) {
		rc = P11S_ERR_IO;
	} else {
		eo.recipient_files = (const char *const *)files;
		eo.n_recipient_files = (size_t)nfiles - ncerts;
		eo.recipient_certs = certs;
		eo.n_recipient_certs = ncerts;
		if (cbc) {
			eo.cipher = P11S_CIPHER_AES_256_CBC; /* RFC 8551 §2.7: not every one reads GCM */
		}
		eo.crlf = 1;
		rewind(r->result);
		rc = p11s_encrypt_message(r->result, enc, &eo);
		if (rc == P11S_OK && fflush(enc) != 0) {
			rc = P11S_ERR_IO;
		}
	}
	free_recipients(files, nfiles, certs, ncerts);
	if (rc < 0) {
		/* A recipient certificate that is unusable: better signed than lost; say so. */
		if (enc != NULL) {
			fclose(enc);
		}
		if (rc == P11S_ERR_USAGE || rc == P11S_ERR_MALFORMED) {
			snprintf(r->mark, sizeof(r->mark), "signed, not encrypted (recipient certificate "
			    "unusable)");
			p11s_log(P11S_LOG_WARN, "not encrypted: %s", p11s_error_last()->message);
			return GW_OUT_SIGNED;
		}
		return tempfail(e, rc, "encrypt");
	}
	fclose(r->result);
	r->result = enc;
	return GW_OUT_SIGNED_ENCRYPTED;
}

static const gw_signer *outbound_signer(eom *e)
{
	char from[320];
	int nfrom = 0, fromi = -1;

	if (e->cfg->nsigners == 0 || !e->m->env_from_ok) {
		return NULL;
	}
	if (!e->m->authenticated && !(e->m->have_client &&
	        gw_cidr_match(e->cfg->trusted, e->cfg->ntrusted, &e->m->client))) {
		return NULL;
	}
	for (size_t i = 0; i < e->m->nhdrs; i++) {
		if (strcasecmp(e->m->hdrs[i].name, "From") == 0) {
			nfrom++;
			fromi = (int)i;
		}
	}
	/* One From with one mailbox, equal to MAIL FROM, and a configured signer. */
	if (nfrom != 1 || e->m->hdrs[fromi].value == NULL ||
	    gw_addr_spec(e->m->hdrs[fromi].value, from, sizeof(from)) < 0 ||
	    strcmp(from, e->m->env_from) != 0) {
		return NULL;
	}
	return gw_policy_signer(e->cfg, from);
}

static gw_outcome decide(eom *e)
{
	const gw_signer *who;
	p11s_msg_kind kind;
	gw_result *r = e->r;
	int rc;

	if (e->m->io_error || e->m->spool == NULL) {
		snprintf(r->detail, sizeof(r->detail), "spool I/O error");
		r->rc = P11S_ERR_IO;
		return GW_OUT_TEMPFAIL;
	}
	if (e->m->oversize) {
		snprintf(r->detail, sizeof(r->detail), "over max-message-size");
		return GW_OUT_OVERSIZE;
	}
	if (fflush(e->m->spool) != 0) {
		r->rc = P11S_ERR_IO;
		snprintf(r->detail, sizeof(r->detail), "spool: %s", strerror(errno));
		return GW_OUT_TEMPFAIL;
	}
	rewind(e->m->spool);
	rc = p11s_message_kind(e->m->spool, &kind);
	if (input_error(rc)) {
		/* Not a message we can classify (RFC 5322 or MIME broken): we leave it alone. */
		kind = P11S_MSG_PLAIN;
	} else if (rc < 0) {
		return tempfail(e, rc, "message kind");
	}
	if ((who = outbound_signer(e)) != NULL) {
		if (kind != P11S_MSG_PLAIN) {
			snprintf(r->detail, sizeof(r->detail), "already S/MIME, not signed");
			return GW_OUT_PASS;
		}
		return do_outbound_sign(e, who);
	}
	if (kind == P11S_MSG_ENVELOPED && e->cfg->decrypt) {
		return do_inbound_decrypt(e, e->m->spool, "");
	}
	if (kind == P11S_MSG_SIGNED && e->cfg->decrypt && e->cfg->verify) {
		int handled;
		gw_outcome o = do_inbound_layers(e, &handled);

		if (handled) {
			return o;
		}
	}
	if (kind == P11S_MSG_SIGNED && e->cfg->verify) {
		return verify_into_header(e, e->m->spool);
	}
	return GW_OUT_PASS;
}

gw_outcome gw_msg_decide(gw_msg *m, const gw_config *cfg, gw_pool *pool, gw_result *r)
{
	eom e = { m, cfg, pool, r };

	memset(r, 0, sizeof(*r));
	r->verdict = -1;
	p11s_error_clear();
	r->outcome = decide(&e);
	if (r->outcome == GW_OUT_UNDECRYPTABLE && cfg->reject_undecryptable) {
		r->outcome = GW_OUT_REJECTED;
	}
	if (r->outcome != GW_OUT_TEMPFAIL) {
		r->rc = P11S_OK;
	} else if (r->detail[0] == '\0') {
		snprintf(r->detail, sizeof(r->detail), "%s", p11s_error_name(r->rc));
	}
	if (r->outcome == GW_OUT_TEMPFAIL || r->outcome == GW_OUT_REJECTED) {
		gw_result_free(r);
	}
	return r->outcome;
}

/* ---- the modifications -------------------------------------------------------------------- */

static int is_content_header(const char *name)
{
	return strncasecmp(name, "Content-", 8) == 0 || strcasecmp(name, "MIME-Version") == 0;
}

/* 1-based occurrence number of header i among headers of the same name (smfi_chgheader). */
static int occurrence(const gw_msg *m, size_t i)
{
	int n = 0;

	for (size_t j = 0; j <= i; j++) {
		if (strcasecmp(m->hdrs[j].name, m->hdrs[i].name) == 0) {
			n++;
		}
	}
	return n;
}

/* Read one header field (unfolded) from `f`; 0 at the blank line, -1 on error, 1 on a field. */
static int read_field(FILE *f, char **name, char **value)
{
	char *buf = NULL, *line = NULL, *colon, *v;
	size_t cap = 0, len = 0, lcap = 0;
	ssize_t n;
	int c;

	*name = *value = NULL;
	for (;;) {
		if ((n = getline(&line, &lcap, f)) <= 0) {
			free(line);
			free(buf);
			return -1;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
			line[--n] = '\0';
		}
		if (len == 0 && n == 0) {
			free(line);
			return 0;
		}
		if (cap < len + (size_t)n + 1) {
			char *nb = realloc(buf, len + (size_t)n + 1);

			if (nb == NULL) {
				free(line);
				free(buf);
				return -1;
			}
			buf = nb;
			cap = len + (size_t)n + 1;
		}
		memcpy(buf + len, line, (size_t)n);
		len += (size_t)n;
		buf[len] = '\0';
		/* A continuation line starts with WSP (RFC 5322 §2.2.3): unfold by dropping CRLF. */
		c = fgetc(f);
		if (c != ' ' && c != '\t') {
			if (c != EOF) {
				ungetc(c, f);
			}
			break;
		}
		ungetc(c, f);
	}
	free(line);
	/* A field whose name holds a NUL (getline() reads through it) is not one we wrote. */
	if ((colon = memchr(buf, ':', len)) == NULL || memchr(buf, '\0', len) != NULL) {
		free(buf);
		return -1;
	}
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	*name = strdup(buf);
	*value = strdup(v);
	free(buf);
	if (*name == NULL || *value == NULL) {
		free(*name);
		free(*value);
		*name = *value = NULL;
		return -1;
	}
	return 1;
}

/* Field values equal once unfolded (RFC 5322 §2.2.3) and without leading white space. */
static int same_value(const char *a, const char *b)
{
	for (;;) {
		while (*a == '\r' || *a == '\n') {
			a++;
		}
		while (*b == '\r' || *b == '\n') {
			b++;
		}
		if (*a != *b) {
			return 0;
		}
		if (*a == '\0') {
			return 1;
		}
		a++;
		b++;
	}
}

static const char *skip_wsp(const char *v)
{
	while (v != NULL && (*v == ' ' || *v == '\t')) {
		v++;
	}
	return v != NULL ? v : "";
}

/* The header fields of `r->result`, read up to its body. */
typedef struct rfields {
	char **name, **value;
	size_t n, cap;
} rfields;

static void rfields_free(rfields *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->name[i]);
		free(f->value[i]);
	}
	free(f->name);
	free(f->value);
}

static int rfields_read(FILE *in, rfields *f)
{
	char *name, *value;
	int rc;

	while ((rc = read_field(in, &name, &value)) == 1) {
		if (f->n == f->cap) {
			size_t cap = f->cap ? 2 * f->cap : 32;
			char **nn = realloc(f->name, cap * sizeof(*nn)), **nv;

			if (nn != NULL) {
				f->name = nn;
			}
			if (nn == NULL || (nv = realloc(f->value, cap * sizeof(*nv))) == NULL) {
				free(name);
				free(value);
				return -1;
			}
			f->value = nv;
			f->cap = cap;
		}
		f->name[f->n] = name;
		f->value[f->n++] = value;
	}
	return rc;
}

/*
 * Replace the message by `r->result`. Its outer fields are the message's, in order, except
 * where the library changed them: RFC 9788 header protection obscures the Subject ("[...]")
 * and drops Comments and Keywords of a message it encrypts, and a decrypted payload's
 * protected fields replace the outer ones (in the payload's order). So the outer fields are
 * matched by name and occurrence: a field whose value changed is changed in place (the MTA
 * keeps the order), one the result lacks is deleted, one only the result has is added; the Content-* fields and MIME-Version are replaced, and the body.
 * Changes use the original occurrence numbers, so they come before any deletion of a field
 * of the same name; deletions go from the last occurrence down (indices stay valid).
 */
static int apply_result(const gw_msg *m, gw_result *r, const gw_edit_ops *ops, void *ctx)
{
	rfields f = { 0 };
	size_t *match = NULL; /* per original field: 1 + the result field it is, or 0 */
	unsigned char *matched = NULL;
	char buf[65536];
	size_t n;
	int rc = -1;

	rewind(r->result);
	if (rfields_read(r->result, &f) < 0 || (match = calloc(m->nhdrs + 1, sizeof(*match))) == NULL ||
	    (matched = calloc(f.n + 1, 1)) == NULL) {
		p11s_log(P11S_LOG_ERROR, "internal: cannot read the rewritten message's header");
		goto out;
	}
	/* The k-th field of a name in the result is the k-th of that name in the message. */
	for (size_t j = 0; j < f.n; j++) {
		size_t k = 0, seen = 0;

		if (is_content_header(f.name[j])) {
			continue;
		}
		for (size_t jj = 0; jj <= j; jj++) {
			k += strcasecmp(f.name[jj], f.name[j]) == 0;
		}
		for (size_t i = 0; i < m->nhdrs; i++) {
			if (strcasecmp(m->hdrs[i].name, f.name[j]) == 0 && ++seen == k) {
				match[i] = j + 1;
				matched[j] = 1;
				break;
			}
		}
	}
	/* Only what header protection drops may go (RFC 9788 §3.1: hcp_baseline). */
	for (size_t i = 0; i < m->nhdrs; i++) {
		const char *nm = m->hdrs[i].name;

		if (match[i] == 0 && !is_content_header(nm) && strcasecmp(nm, "Comments") != 0 &&
		    strcasecmp(nm, "Keywords") != 0) {
			p11s_log(P11S_LOG_ERROR, "internal: the rewritten message lost header field %s", nm);
			goto out;
		}
	}
	for (size_t i = 0; i < m->nhdrs; i++) {
		if (match[i] != 0 && !same_value(skip_wsp(m->hdrs[i].value), f.value[match[i] - 1]) &&
		    ops->chgheader(ctx, m->hdrs[i].name, occurrence(m, i), f.value[match[i] - 1]) != 0) {
			goto out;
		}
	}
	for (size_t i = m->nhdrs; i-- > 0;) {
		if (match[i] == 0 && ops->delheader(ctx, m->hdrs[i].name, occurrence(m, i)) != 0) {
			goto out;
		}
	}
	for (size_t j = 0; j < f.n; j++) {
		if (!matched[j] && ops->addheader(ctx, f.name[j], f.value[j]) != 0) {
			goto out;
		}
	}
	while ((n = fread(buf, 1, sizeof(buf), r->result)) > 0) {
		if (ops->replacebody(ctx, (unsigned char *)buf, n) != 0) {
			goto out;
		}
	}
	rc = ferror(r->result) ? -1 : 0;
out:
	rfields_free(&f);
	free(match);
	free(matched);
	return rc;
}

/* Headers that only we may write: RFC 8601 §5 (A-R with our authserv-id) and our marker. */
static int remove_forged(const gw_msg *m, const gw_config *cfg, const gw_edit_ops *ops,
    void *ctx)
{
	for (size_t i = m->nhdrs; i-- > 0;) {
		int forged = strcasecmp(m->hdrs[i].name, GW_MARK_HEADER) == 0 ||
		    (strcasecmp(m->hdrs[i].name, GW_AR_HEADER) == 0 && m->hdrs[i].value != NULL &&
		     gw_authres_is_ours(m->hdrs[i].value, cfg->authserv_id));

		if (forged && ops->delheader(ctx, m->hdrs[i].name, occurrence(m, i)) != 0) {
			return -1;
		}
	}
	return 0;
}

int gw_msg_apply(const gw_msg *m, const gw_config *cfg, gw_result *r, const gw_edit_ops *ops,
    void *ctx)
{
	if (r->outcome == GW_OUT_TEMPFAIL || r->outcome == GW_OUT_REJECTED) {
		return -1;
	}
	if (remove_forged(m, cfg, ops, ctx) < 0 ||
	    (r->result != NULL && apply_result(m, r, ops, ctx) < 0) ||
	    (r->mark[0] != '\0' && ops->insheader(ctx, GW_MARK_HEADER, r->mark) != 0) ||
	    (r->authres[0] != '\0' && ops->insheader(ctx, GW_AR_HEADER, r->authres) != 0)) {
		return -1;
	}
	return 0;
}

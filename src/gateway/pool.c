/*
 * The token side of the gateway (DESIGN.md decision 9): a pool of library contexts, each
 * logged in once and used by one thread at a time (token.h), each with an index from
 * RecipientIdentifier (issuer and serial number, subjectKeyIdentifier; RFC 5652 §6.2) to the
 * token's keys, built when the slot opens, and the signers' keys looked up once. A slot whose
 * token fails is reopened by the next user, at most every `retry` seconds; until then the
 * caller answers tempfail and the MTA keeps the mail.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "gateway.h"

typedef struct rid_entry {
	unsigned char *id;  /* 'I' + canonical issuer hash + DER serial, or 'S' + SKI */
	size_t len;
	p11s_key *key;
} rid_entry;

struct gw_slot {
	p11s_ctx *ctx;
	p11s_key **keys;       /* every key of the token (index owners) */
	size_t nkeys;
	rid_entry *index;      /* sorted by (len, id) */
	size_t nindex;
	p11s_key **signer_keys; /* parallel to cfg->signers */
	int open;
	int busy;
	time_t last_try;
};

struct gw_pool {
	const gw_config *cfg;
	gw_slot *slots;
	size_t nslots;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pin_failed;        /* the token refused the PIN: never retried until reload */
};

int gw_token_error(int rc)
{
	return p11s_error_class(rc) == P11S_ECLASS_TOKEN || rc == P11S_ERR_PIN_SOURCE;
}

static int entry_cmp(const void *a_, const void *b_)
{
	const rid_entry *a = a_, *b = b_;

	if (a->len != b->len) {
		return a->len < b->len ? -1 : 1;
	}
	return memcmp(a->id, b->id, a->len);
}

/*
 * The issuer is reduced to OpenSSL's hash of its canonical encoding (the form X509_NAME_cmp
 * compares), so that a sender who re-encodes the name still finds the key; the library checks
 * the full certificate against the RecipientInfo afterwards, so a hash collision costs nothing.
 */
static int issuer_serial_id(const X509_NAME *issuer, const ASN1_INTEGER *serial,
    unsigned char **out, size_t *len)
{
	unsigned long h;
	unsigned char *der = NULL, *p;
	int ok = 0, n;

	h = X509_NAME_hash_ex(issuer, NULL, NULL, &ok);
	if (!ok || (n = i2d_ASN1_INTEGER(serial, &der)) <= 0) {
		return -1;
	}
	if ((p = malloc(5 + (size_t)n)) == NULL) {
		OPENSSL_free(der);
		return -1;
	}
	p[0] = 'I';
	p[1] = (unsigned char)(h >> 24);
	p[2] = (unsigned char)(h >> 16);
	p[3] = (unsigned char)(h >> 8);
	p[4] = (unsigned char)h;
	memcpy(p + 5, der, (size_t)n);
	OPENSSL_free(der);
	*out = p;
	*len = 5 + (size_t)n;
	return 0;
}

static int ski_id(const ASN1_OCTET_STRING *ski, unsigned char **out, size_t *len)
{
	int n = ASN1_STRING_length(ski);
	unsigned char *p;

	if (n <= 0 || (p = malloc(1 + (size_t)n)) == NULL) {
		return -1;
	}
	p[0] = 'S';
	memcpy(p + 1, ASN1_STRING_get0_data(ski), (size_t)n);
	*out = p;
	*len = 1 + (size_t)n;
	return 0;
}

static int index_add(gw_slot *s, unsigned char *id, size_t len, p11s_key *key)
{
	rid_entry *n = realloc(s->index, (s->nindex + 1) * sizeof(*n));

	if (n == NULL) {
		free(id);
		return -1;
	}
	s->index = n;
	n[s->nindex].id = id;
	n[s->nindex].len = len;
	n[s->nindex].key = key;
	s->nindex++;
	return 0;
}

static void slot_close(gw_slot *s, size_t nsigners)
{
	for (size_t i = 0; i < s->nindex; i++) {
		free(s->index[i].id);
	}
	free(s->index);
	s->index = NULL;
	s->nindex = 0;
	if (s->signer_keys != NULL) {
		for (size_t i = 0; i < nsigners; i++) {
			p11s_key_free(s->signer_keys[i]);
		}
		free(s->signer_keys);
		s->signer_keys = NULL;
	}
	for (size_t i = 0; i < s->nkeys; i++) {
		p11s_key_free(s->keys[i]);
	}
	free(s->keys);
	s->keys = NULL;
	s->nkeys = 0;
	p11s_ctx_free(s->ctx);
	s->ctx = NULL;
	s->open = 0;
}

/* Load the module, log in, list the keys once and index them. */
static int slot_open(gw_pool *pool, gw_slot *s)
{
	const gw_config *cfg = pool->cfg;
	p11s_ctx_opts o = P11S_CTX_OPTS_INIT;
	int rc;

	s->last_try = time(NULL);
	o.backend = cfg->backend;
	o.module = cfg->module;
	o.pin_source = cfg->pin_source;
	o.batch = 1;
	if ((rc = p11s_ctx_new(&s->ctx, &o)) < 0) {
		goto out;
	}
	/* Further modules: their keys are indexed and their signers found as well. */
	for (size_t i = 1; i < cfg->nmodules; i++) {
		if ((rc = p11s_ctx_add_module(s->ctx, cfg->modules[i])) < 0) {
			goto out;
		}
	}
	/*
	 * Card events (pcsc-lite): a card pulled out fails this slot's operations at once (the
	 * caller tempfails) and its return makes the next operation log in again.
	 */
	if (p11s_ctx_watch_readers(s->ctx) < 0) {
		p11s_log(P11S_LOG_WARN, "no card events: %s", p11s_error_last()->message);
		p11s_error_clear();
	}
	if ((rc = p11s_key_list(s->ctx, cfg->token_uri, &s->keys, &s->nkeys)) < 0) {
		goto out;
	}
	for (size_t i = 0; i < s->nkeys; i++) {
		X509 *cert = p11s_key_cert(s->keys[i]);
		const ASN1_OCTET_STRING *ski;
		unsigned char *id;
		size_t len;

		if (cert == NULL) {
			p11s_log(P11S_LOG_INFO, "key %s has no certificate: not a decryption recipient",
			    p11s_key_uri(s->keys[i]));
			continue;
		}
		if (issuer_serial_id(X509_get_issuer_name(cert), X509_get0_serialNumber(cert), &id,
		        &len) < 0 || index_add(s, id, len, s->keys[i]) < 0) {
			rc = P11S_ERR_NOMEM;
			goto out;
		}
		if ((ski = X509_get0_subject_key_id(cert)) != NULL &&
		    (ski_id(ski, &id, &len) < 0 || index_add(s, id, len, s->keys[i]) < 0)) {
			rc = P11S_ERR_NOMEM;
			goto out;
		}
	}
	qsort(s->index, s->nindex, sizeof(*s->index), entry_cmp);
	if (cfg->nsigners > 0 &&
	    (s->signer_keys = calloc(cfg->nsigners, sizeof(*s->signer_keys))) == NULL) {
		rc = P11S_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < cfg->nsigners; i++) {
		rc = p11s_key_find(s->ctx, cfg->signers[i].uri, &s->signer_keys[i]);
		if (rc == P11S_ERR_NOT_FOUND || rc == P11S_ERR_AMBIGUOUS || rc == P11S_ERR_MALFORMED) {
			/* A configuration mistake for one sender: their mail is tempfailed, not others'. */
			p11s_log(P11S_LOG_ERROR, "signer %s: %s", cfg->signers[i].addr,
			    p11s_error_last()->message);
			rc = P11S_OK;
		} else if (rc < 0) {
			goto out;
		}
	}
	s->open = 1;
	rc = P11S_OK;
out:
	if (rc < 0) {
		p11s_log(P11S_LOG_ERROR, "token unavailable: %s", p11s_error_last()->message);
		if (rc == P11S_ERR_PIN_INCORRECT || rc == P11S_ERR_PIN_LOCKED) {
			/* Retrying a wrong PIN would lock the token (PKCS#11 v2.40 §5.6). */
			pool->pin_failed = 1;
		}
		slot_close(s, cfg->nsigners);
	}
	return rc;
}

int gw_pool_new(gw_pool **out, const gw_config *cfg)
{
	gw_pool *p;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		return P11S_ERR_NOMEM;
	}
	p->cfg = cfg;
	p->nslots = (size_t)cfg->sessions;
	if ((p->slots = calloc(p->nslots, sizeof(*p->slots))) == NULL) {
		free(p);
		return P11S_ERR_NOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (cfg->module != NULL) {
		for (size_t i = 0; i < p->nslots && !p->pin_failed; i++) {
			if (slot_open(p, &p->slots[i]) < 0) {
				break;
			}
		}
	}
	*out = p;
	return P11S_OK;
}

void gw_pool_free(gw_pool *p)
{
	if (p == NULL) {
		return;
	}
	for (size_t i = 0; i < p->nslots; i++) {
		slot_close(&p->slots[i], p->cfg->nsigners);
	}
	free(p->slots);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

int gw_pool_nkeys(gw_pool *p)
{
	int n = -1;

	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->nslots; i++) {
		if (p->slots[i].open) {
			n = (int)p->slots[i].nkeys;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}

gw_slot *gw_pool_acquire(gw_pool *p)
{
	gw_slot *s = NULL;
	time_t now;

	if (p->cfg->module == NULL) {
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	for (;;) {
		for (size_t i = 0; i < p->nslots; i++) {
			if (!p->slots[i].busy) {
				s = &p->slots[i];
				break;
			}
		}
		if (s != NULL) {
			break;
		}
		pthread_cond_wait(&p->cond, &p->lock);
	}
	s->busy = 1;
	pthread_mutex_unlock(&p->lock);
	if (!s->open) {
		now = time(NULL);
		/* Reopen outside the pool lock (module load and login are slow), rate-limited. */
		if (p->pin_failed || now - s->last_try < p->cfg->retry || slot_open(p, s) < 0) {
			gw_pool_release(p, s, P11S_OK);
			return NULL;
		}
		p11s_log(P11S_LOG_WARN, "token available again: %zu keys, %zu index entries",
		    s->nkeys, s->nindex);
	}
	return s;
}

void gw_pool_release(gw_pool *p, gw_slot *s, int rc)
{
	if (s == NULL) {
		return;
	}
	/*
	 * OpenSSL 3.0 keeps per-thread state (DRBGs, ...) for each library context a thread used
	 * and touches it when the thread exits: libmilter's connection threads outlive a context
	 * that a reload or a token failure frees, so this thread lets go of it now.
	 */
	if (s->ctx != NULL) {
		OPENSSL_thread_stop_ex(p11s_ctx_libctx(s->ctx));
	}
	if (rc < 0 && gw_token_error(rc) && s->open) {
		/* The token or module failed: drop this context; the next user reopens it. */
		p11s_log(P11S_LOG_WARN, "closing the token context after: %s",
		    p11s_error_name(rc));
		slot_close(s, p->cfg->nsigners);
		s->last_try = 0;
	}
	pthread_mutex_lock(&p->lock);
	s->busy = 0;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

typedef struct select_state {
	gw_slot *slot;
	int matched;
} select_state;

/* The index lookup (never a trial of keys): STANDARDS.md §12, DESIGN.md decision 7. */
static p11s_key *select_key(const p11s_recipient_id *rid, void *payload)
{
	select_state *st = payload;
	rid_entry probe, *hit;
	unsigned char *id = NULL;
	size_t len = 0;
	int rc;

	if (rid->ski != NULL) {
		rc = ski_id(rid->ski, &id, &len);
	} else {
		rc = issuer_serial_id(rid->issuer, rid->serial, &id, &len);
	}
	if (rc < 0) {
		return NULL;
	}
	probe.id = id;
	probe.len = len;
	hit = bsearch(&probe, st->slot->index, st->slot->nindex, sizeof(*st->slot->index),
	    entry_cmp);
	free(id);
	if (hit == NULL) {
		return NULL;
	}
	st->matched = 1;
	return hit->key;
}

int gw_slot_decrypt(gw_slot *s, FILE *in, FILE *out, p11s_decrypt_info *info, int *matched)
{
	return gw_slot_decrypt_opts(s, in, out, NULL, info, matched);
}

int gw_slot_decrypt_opts(gw_slot *s, FILE *in, FILE *out, const p11s_decrypt_opts *opts,
    p11s_decrypt_info *info, int *matched)
{
	select_state st = { s, 0 };
	int rc;

	rc = p11s_decrypt_message_select_ex(s->ctx, select_key, &st, in, out, opts, info);
	*matched = st.matched;
	return rc;
}

p11s_key *gw_slot_signer_key(gw_pool *p, gw_slot *s, const gw_signer *who)
{
	size_t i = (size_t)(who - p->cfg->signers);

	if (s->signer_keys == NULL || i >= p->cfg->nsigners) {
		return NULL;
	}
	return s->signer_keys[i];
}

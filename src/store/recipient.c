/*
 * An address to a certificate fit to encrypt to now (docs/certificates.md "Choosing a
 * certificate"): the store's candidates, each validated like a signer's certificate (RFC 5280
 * path to the caller's anchors, CRLs when given) and checked for encryption (RFC 8550 §4.4.2
 * keyUsage, §4.4.4 extendedKeyUsage, §3 the address in the certificate); the correspondent's
 * SMIMEEncryptionKeyPreference (RFC 8551 §2.5.3) picks among the valid ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "core/error_int.h"
#include "store_int.h"
#include "x509/x509_int.h"

/* Intermediates: the store's certificates named as issuers up the chain (harvested chains). */
static int add_issuers(p11s_store *s, X509 *cert, STACK_OF(X509) *out)
{
	sqlite3_stmt *st;
	char *issuer = NULL;
	X509 *cur = cert;
	int rc = P11S_OK;

	if (sqlite3_prepare_v2(s->db, "SELECT der FROM certs WHERE subject = ? AND "
	        "subject != issuer", -1, &st, NULL) != SQLITE_OK) {
		return p11s_store__db_error(s, "looking up issuers");
	}
	/* RFC 5280 leaves the depth open; eight levels is more than any mail PKI uses. */
	for (int depth = 0; depth < 8 && cur != NULL; depth++) {
		X509 *next = NULL;

		free(issuer);
		if ((issuer = p11s_x509__name(X509_get_issuer_name(cur))) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			break;
		}
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, issuer, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			const unsigned char *der = sqlite3_column_blob(st, 0);
			X509 *x = d2i_X509(NULL, &der, sqlite3_column_bytes(st, 0));

			if (x == NULL || !sk_X509_push(out, x)) {
				X509_free(x);
				continue;
			}
			next = x;
		}
		cur = next;
	}
	sqlite3_finalize(st);
	free(issuer);
	return rc;
}

/* RFC 8550 §4.4.2 / §4.4.4 for encryption; the reason code and line, or NULL if fit. */
static const char *encryption_usage(X509 *cert, const char **why)
{
	uint32_t flags = X509_get_extension_flags(cert);

	if ((flags & EXFLAG_KUSAGE) &&
	    !(X509_get_key_usage(cert) & (KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT))) {
		*why = "keyUsage allows neither keyEncipherment nor keyAgreement";
		return "not-for-encryption";
	}
	if ((flags & EXFLAG_XKUSAGE) &&
	    !(X509_get_extended_key_usage(cert) & (XKU_SMIME | XKU_ANYEKU))) {
		*why = "extendedKeyUsage lacks emailProtection and anyExtendedKeyUsage";
		return "not-for-encryption";
	}
	return NULL;
}

static int has_address(X509 *cert, const char *address)
{
	char **emails = NULL;
	size_t n = 0;
	int found = 0;

	if (p11s_x509__emails(cert, &emails, &n) < 0) {
		return 0;
	}
	for (size_t i = 0; i < n && !found; i++) {
		found = p11s_x509__addr_equal(emails[i], address);
	}
	p11s_x509__strv_free(emails, n);
	return found;
}

int p11s_store_recipient(p11s_store *s, const char *address, const p11s_recipient_opts *opts,
    X509 **cert, int *caps)
{
	static const p11s_recipient_opts defaults = P11S_RECIPIENT_OPTS_INIT;
	p11s_x509_opts xo = { 0 };
	p11s_x509_store *xs = NULL;
	p11s_store_list *l = NULL;
	p11s_reasons reasons = { 0 };
	char addr[512], pref[65], why_code[32] = "", why[512] = "", *fpr_why = NULL;
	int rc, announced, chosen = -1;
	int64_t now = (int64_t)time(NULL);

	*cert = NULL;
	if (caps != NULL) {
		*caps = P11S_CAPS_UNKNOWN;
	}
	if (opts == NULL) {
		opts = &defaults;
	}
	if (strlen(address) >= sizeof(addr) || strchr(address, '@') == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "'%s' is not an e-mail address", address);
	}
	snprintf(addr, sizeof(addr), "%s", address);
	p11s_store__lower(addr);
	if ((rc = p11s_store_find(s, addr, &l)) < 0 ||
	    (rc = p11s_store__announced(s, addr, &announced, pref)) < 0) {
		goto out;
	}
	xo.trust_files = opts->trust_files;
	xo.n_trust_files = opts->n_trust_files;
	xo.cert_files = opts->cert_files;
	xo.n_cert_files = opts->n_cert_files;
	xo.crl_files = opts->crl_files;
	xo.n_crl_files = opts->n_crl_files;
	if (l->n > 0 && (rc = p11s_x509__store_new(&xs, &xo)) < 0) {
		goto out;
	}
	for (size_t i = 0; i < l->n; i++) {
		p11s_store_entry *e = &l->v[i];
		STACK_OF(X509) *untrusted = NULL, *chain = NULL;
		const char *code = NULL, *line = NULL;

		if (e->expires != 0 && e->expires < now) {
			continue; /* a directory answer past its cache period: ask again */
		}
		p11s_reasons__clear(&reasons);
		if ((untrusted = sk_X509_new_null()) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		/* --certs intermediates beside the store's (p11s_x509__validate takes one list). */
		for (int k = 0; k < sk_X509_num(xs->certs); k++) {
			X509 *c = sk_X509_value(xs->certs, k);

			if (!X509_up_ref(c) || !sk_X509_push(untrusted, c)) {
				X509_free(c);
				sk_X509_pop_free(untrusted, X509_free);
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
		}
		if ((rc = add_issuers(s, e->cert, untrusted)) < 0 ||
		    (rc = p11s_x509__validate(xs, e->cert, untrusted, NULL, &reasons, &chain)) < 0) {
			sk_X509_pop_free(untrusted, X509_free);
			goto out;
		}
		sk_X509_pop_free(untrusted, X509_free);
		sk_X509_pop_free(chain, X509_free);
		if (reasons.n > 0) {
			/* The reason a user acts on first: the certificate's own state, then trust. */
			static const char *const order[] = { "revoked", "expired", "not-yet-valid",
				"untrusted" };
			size_t k = 0;

			code = reasons.v[0].code;
			line = reasons.v[0].message;
			for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
				if (p11s_reasons__has(&reasons, order[o])) {
					for (k = 0; strcmp(reasons.v[k].code, order[o]) != 0; k++) {
					}
					code = reasons.v[k].code;
					line = reasons.v[k].message;
					break;
				}
			}
		} else if ((code = encryption_usage(e->cert, &line)) == NULL &&
		           !has_address(e->cert, addr)) {
			code = "address-mismatch";
			line = "the address is not in the certificate";
		}
		if (code == NULL) {
			if (chosen < 0 || strcmp(e->fingerprint, pref) == 0) {
				chosen = (int)i;
			}
		} else if (why_code[0] == '\0') {
			snprintf(why_code, sizeof(why_code), "%s", code);
			snprintf(why, sizeof(why), "%s", line != NULL ? line : code);
			fpr_why = e->fingerprint;
		}
	}
	if (chosen < 0) {
		if (why_code[0] == '\0') {
			rc = p11s_error__set(P11S_ERR_VERIFY, "%s: no certificate found (certificate "
			    "store %s)", address, s->path);
		} else {
			rc = p11s_error__set(P11S_ERR_VERIFY, "%s: no usable certificate: %s "
			    "(%.16s...: %s)", address, why_code, fpr_why, why);
		}
		goto out;
	}
	if (!X509_up_ref(l->v[chosen].cert)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "X509_up_ref failed");
		goto out;
	}
	*cert = l->v[chosen].cert;
	if (caps != NULL) {
		*caps = announced;
	}
	rc = P11S_OK;
out:
	p11s_reasons__clear(&reasons);
	free(reasons.v);
	p11s_x509__store_free(xs);
	p11s_store_list_free(l);
	return rc;
}

/*
 * Directory lookups (docs/certificates.md "LDAP"): certificates of an address from an LDAP
 * server through OpenLDAP's libldap, cached in the store with an expiry. The directory is a
 * source of candidates, never of trust: every certificate is validated when it is used.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ldap.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/error_int.h"
#include "store_int.h"
#include "x509/x509_int.h"

/* RFC 4523 §2.1: userCertificate is transferred with the ;binary option (RFC 4522). */
static char ATTR_CERT[] = "userCertificate;binary";
static char ATTR_SMIME[] = "userSMIMECertificate";

/* Cache one certificate when it carries the address; counts it in *n. */
static int cache(p11s_store *s, X509 *x, const char *address, int64_t expires, size_t *n)
{
	char **emails = NULL;
	size_t ne = 0;
	int match = 0, rc;

	if ((rc = p11s_x509__emails(x, &emails, &ne)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < ne && !match; i++) {
		match = p11s_x509__addr_equal(emails[i], address);
	}
	p11s_x509__strv_free(emails, ne);
	if (!match) {
		return P11S_OK; /* the directory's mail attribute is not the certificate's word */
	}
	if ((rc = p11s_store_add(s, x, P11S_STORE_LDAP, expires, NULL)) == P11S_OK) {
		(*n)++;
	}
	return rc;
}

/* One attribute value: a DER certificate, or a PKCS#7 SignedData of certificates. */
static int value(p11s_store *s, const struct berval *bv, int smime, const char *address,
    int64_t expires, size_t *n)
{
	const unsigned char *p = (const unsigned char *)bv->bv_val;
	int rc = P11S_OK;

	if (bv->bv_len > 1024 * 1024) {
		return P11S_OK; /* no certificate is that large; skip it */
	}
	if (!smime) {
		X509 *x = d2i_X509(NULL, &p, (long)bv->bv_len);

		if (x != NULL && p == (const unsigned char *)bv->bv_val + bv->bv_len) {
			rc = cache(s, x, address, expires, n);
		}
		X509_free(x);
	} else {
		PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)bv->bv_len);

		if (p7 != NULL && PKCS7_type_is_signed(p7) && p7->d.sign != NULL) {
			for (int i = 0; rc == P11S_OK && i < sk_X509_num(p7->d.sign->cert); i++) {
				X509 *x = sk_X509_value(p7->d.sign->cert, i);

				/* The entry's chain: its CA certificates help build paths (never trust). */
				rc = X509_check_ca(x) > 0 ? p11s_store_add(s, x, P11S_STORE_LDAP, expires, NULL)
				                          : cache(s, x, address, expires, n);
			}
		}
		PKCS7_free(p7);
	}
	ERR_clear_error();
	return rc;
}

int p11s_store_ldap_fetch(p11s_store *s, const char *url, const char *address,
    const p11s_ldap_opts *opts, size_t *n_found)
{
	static const p11s_ldap_opts defaults = P11S_LDAP_OPTS_INIT;
	LDAPURLDesc *lud = NULL;
	LDAP *ld = NULL;
	LDAPMessage *res = NULL;
	struct berval in, esc = { 0, NULL };
	struct timeval tv;
	char *attrs[] = { ATTR_CERT, ATTR_SMIME, NULL };
	char *host = NULL, *filter = NULL;
	int version = LDAP_VERSION3, lrc, rc = P11S_OK;
	int64_t expires;
	size_t n = 0;

	if (n_found != NULL) {
		*n_found = 0;
	}
	if (opts == NULL) {
		opts = &defaults;
	}
	if (ldap_url_parse(url, &lud) != LDAP_URL_SUCCESS || lud->lud_dn == NULL) {
		rc = p11s_error__set(P11S_ERR_USAGE, "'%s' is not an LDAP URL "
		                                     "(ldap://host[:port]/BASE-DN)", url);
		goto out;
	}
	if (strchr(address, '@') == NULL) {
		rc = p11s_error__set(P11S_ERR_USAGE, "'%s' is not an e-mail address", address);
		goto out;
	}
	/* The server part only: the base DN goes to the search. */
	if ((host = malloc(strlen(url) + 32)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (lud->lud_host != NULL && lud->lud_host[0] != '\0') {
		int v6 = strchr(lud->lud_host, ':') != NULL;
		int len = sprintf(host, "%s://%s%s%s", lud->lud_scheme, v6 ? "[" : "",
		    lud->lud_host, v6 ? "]" : "");

		if (lud->lud_port > 0) {
			sprintf(host + len, ":%d", lud->lud_port);
		}
	} else {
		sprintf(host, "%s://", lud->lud_scheme);
	}
	/* RFC 4515 §3: *, (, ), \ and NUL in an assertion value are escaped as \XX. */
	in.bv_val = (char *)address;
	in.bv_len = strlen(address);
	if (ldap_bv2escaped_filter_value(&in, &esc) != 0 ||
	    (filter = malloc(esc.bv_len + sizeof("(mail=)"))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	sprintf(filter, "(mail=%s)", esc.bv_val);
	if (ldap_initialize(&ld, host) != LDAP_SUCCESS) {
		rc = p11s_error__set(P11S_ERR_USAGE, "cannot use LDAP server %s", host);
		goto out;
	}
	tv.tv_sec = opts->timeout_ms / 1000;
	tv.tv_usec = (opts->timeout_ms % 1000) * 1000;
	ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
	ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	lrc = ldap_search_ext_s(ld, lud->lud_dn, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL,
	    &tv, opts->size_limit, &res);
	/* A size limit reached still returns the entries read so far. */
	if (lrc != LDAP_SUCCESS && lrc != LDAP_SIZELIMIT_EXCEEDED && lrc != LDAP_NO_SUCH_OBJECT) {
		rc = p11s_error__set(P11S_ERR_IO, "LDAP directory %s: %s", url, ldap_err2string(lrc));
		goto out;
	}
	expires = (int64_t)time(NULL) + opts->cache_seconds;
	for (LDAPMessage *e = ldap_first_entry(ld, res); e != NULL && rc == P11S_OK;
	     e = ldap_next_entry(ld, e)) {
		for (int a = 0; a < 2 && rc == P11S_OK; a++) {
			struct berval **vals = ldap_get_values_len(ld, e, attrs[a]);

			for (int i = 0; vals != NULL && vals[i] != NULL && rc == P11S_OK; i++) {
				rc = value(s, vals[i], a == 1, address, expires, &n);
			}
			ldap_value_free_len(vals);
		}
	}
	if (n_found != NULL) {
		*n_found = n;
	}
out:
	ldap_msgfree(res);
	if (ld != NULL) {
		ldap_unbind_ext_s(ld, NULL, NULL);
	}
	ldap_memfree(esc.bv_val);
	ldap_free_urldesc(lud);
	free(host);
	free(filter);
	return rc;
}

/*
 * Directory lookups (docs/certificates.md "LDAP"): certificates of an address from an LDAP
 * server through OpenLDAP's libldap, cached in the store with an expiry. The directory is a
 * source of candidates, never of trust: every certificate is validated when it is used.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
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

/*
 * libldap is loaded on the first lookup (dlopen), as libcurl is (src/x509/fetch.c): linked,
 * it and what it pulls in (liblber, libsasl2, GnuTLS, Nettle, GMP, libtasn1, libunistring,
 * libidn2) were 9 of the 37 shared libraries every p11smime process loaded at start
 * (docs/performance.md "Cold start"), for a feature most commands never use. The header is
 * still OpenLDAP's: types, constants and prototypes are checked at build time.
 */
static struct {
	int (*url_parse)(const char *, LDAPURLDesc **);
	void (*free_urldesc)(LDAPURLDesc *);
	int (*bv2escaped_filter_value)(struct berval *, struct berval *);
	int (*initialize)(LDAP **, const char *);
	int (*set_option)(LDAP *, int, const void *);
	int (*search_ext_s)(LDAP *, const char *, int, const char *, char **, int, LDAPControl **,
	    LDAPControl **, struct timeval *, int, LDAPMessage **);
	char *(*err2string)(int);
	LDAPMessage *(*first_entry)(LDAP *, LDAPMessage *);
	LDAPMessage *(*next_entry)(LDAP *, LDAPMessage *);
	struct berval **(*get_values_len)(LDAP *, LDAPMessage *, const char *);
	void (*value_free_len)(struct berval **);
	int (*msgfree)(LDAPMessage *);
	int (*unbind_ext_s)(LDAP *, LDAPControl **, LDAPControl **);
	void (*memfree)(void *);
	int ok;
	char why[200];
} L;
static pthread_once_t ldap_once = PTHREAD_ONCE_INIT;

static void ldap_load_once(void)
{
	/* OpenLDAP 2.5 (Debian 12); 2.6 renamed it libldap.so.2. */
	void *h = dlopen("libldap-2.5.so.0", RTLD_NOW | RTLD_LOCAL);

	if (h == NULL && (h = dlopen("libldap.so.2", RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(L.why, sizeof(L.why), "%s", dlerror());
		return;
	}
#define SYM(field, name) (*(void **)&L.field = dlsym(h, name)) != NULL
	if (!(SYM(url_parse, "ldap_url_parse") && SYM(free_urldesc, "ldap_free_urldesc") &&
	        SYM(bv2escaped_filter_value, "ldap_bv2escaped_filter_value") &&
	        SYM(initialize, "ldap_initialize") && SYM(set_option, "ldap_set_option") &&
	        SYM(search_ext_s, "ldap_search_ext_s") && SYM(err2string, "ldap_err2string") &&
	        SYM(first_entry, "ldap_first_entry") && SYM(next_entry, "ldap_next_entry") &&
	        SYM(get_values_len, "ldap_get_values_len") &&
	        SYM(value_free_len, "ldap_value_free_len") && SYM(msgfree, "ldap_msgfree") &&
	        SYM(unbind_ext_s, "ldap_unbind_ext_s") && SYM(memfree, "ldap_memfree"))) {
		snprintf(L.why, sizeof(L.why), "libldap lacks a function");
		return;
	}
#undef SYM
	L.ok = 1;
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
	pthread_once(&ldap_once, ldap_load_once);
	if (!L.ok) {
		return p11s_error__set(P11S_ERR_IO, "LDAP lookups need OpenLDAP's libldap "
		                                            "(Debian: libldap-2.5-0): %s", L.why);
	}
	if (L.url_parse(url, &lud) != LDAP_URL_SUCCESS || lud->lud_dn == NULL) {
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
	if (L.bv2escaped_filter_value(&in, &esc) != 0 ||
	    (filter = malloc(esc.bv_len + sizeof("(mail=)"))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	sprintf(filter, "(mail=%s)", esc.bv_val);
	if (L.initialize(&ld, host) != LDAP_SUCCESS) {
		rc = p11s_error__set(P11S_ERR_USAGE, "cannot use LDAP server %s", host);
		goto out;
	}
	tv.tv_sec = opts->timeout_ms / 1000;
	tv.tv_usec = (opts->timeout_ms % 1000) * 1000;
	L.set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	L.set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	L.set_option(ld, LDAP_OPT_TIMEOUT, &tv);
	L.set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	lrc = L.search_ext_s(ld, lud->lud_dn, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL,
	    &tv, opts->size_limit, &res);
	/* A size limit reached still returns the entries read so far. */
	if (lrc != LDAP_SUCCESS && lrc != LDAP_SIZELIMIT_EXCEEDED && lrc != LDAP_NO_SUCH_OBJECT) {
		rc = p11s_error__set(P11S_ERR_IO, "LDAP directory %s: %s", url, L.err2string(lrc));
		goto out;
	}
	expires = (int64_t)time(NULL) + opts->cache_seconds;
	for (LDAPMessage *e = L.first_entry(ld, res); e != NULL && rc == P11S_OK;
	     e = L.next_entry(ld, e)) {
		for (int a = 0; a < 2 && rc == P11S_OK; a++) {
			struct berval **vals = L.get_values_len(ld, e, attrs[a]);

			for (int i = 0; vals != NULL && vals[i] != NULL && rc == P11S_OK; i++) {
				rc = value(s, vals[i], a == 1, address, expires, &n);
			}
			L.value_free_len(vals);
		}
	}
	if (n_found != NULL) {
		*n_found = n;
	}
out:
	L.msgfree(res);
	if (ld != NULL) {
		L.unbind_ext_s(ld, NULL, NULL);
	}
	L.memfree(esc.bv_val);
	L.free_urldesc(lud);
	free(host);
	free(filter);
	return rc;
}

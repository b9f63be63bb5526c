/*
 * Live revocation sources (revocation_int.h): OCSP (RFC 6960) through OpenSSL's OCSP API,
 * CRLs from crlDistributionPoints and issuers from caIssuers (RFC 5280), each fetched with
 * fetch.c's restrictions and cached in memory for the life of the process (a gateway verifies
 * many messages from the same signers; the cache is shared by its threads under a mutex).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/revocation.h>

#include "core/error_int.h"
#include "x509/revocation_int.h"

/* Clock skew allowed on thisUpdate/nextUpdate (RFC 6960 §4.2.2.1 leaves it local): 5 min. */
#define OCSP_SKEW 300
/* A response without nextUpdate (RFC 6960 §2.4: "newer information is always available") is
 * accepted for this long after its thisUpdate, and not cached. */
#define OCSP_MAX_AGE 3600
#define OCSP_MAX_RESP (64u * 1024)  /* a BasicOCSPResponse with its certificates: a few KiB */
#define CRL_MAX (16u * 1024 * 1024) /* large CAs publish CRLs of some MiB */
#define CERT_MAX (256u * 1024)      /* a certificate or a certs-only PKCS#7 bundle */
#define MAX_URLS 4                  /* per extension: more is not a real certificate */

void p11s_rev__fetch_policy(const p11s_x509_rev_policy *pol, p11s_fetch_policy *out)
{
	memset(out, 0, sizeof(*out));
	out->allow = pol->allow;
	out->n_allow = pol->n_allow;
	out->deny = pol->deny;
	out->n_deny = pol->n_deny;
	out->timeout_s = pol->timeout_s;
}

/* ---- the per-process cache: URL (+ key) -> DER and an expiry ---- */

typedef struct cache_entry {
	struct cache_entry *next;
	char *key;
	unsigned char *der;
	size_t len;
	time_t expires;
} cache_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry *cache_head;
static size_t cache_n;
#define CACHE_MAX 256

/* A copy of the cached DER of `key` if it has not expired (caller frees). */
static int cache_get(const char *key, unsigned char **der, size_t *len)
{
	time_t now = time(NULL);
	int found = 0;

	*der = NULL;
	pthread_mutex_lock(&cache_lock);
	for (cache_entry *e = cache_head; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0 && e->expires > now) {
			if ((*der = malloc(e->len)) != NULL) {
				memcpy(*der, e->der, e->len);
				*len = e->len;
				found = 1;
			}
			break;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return found;
}

/* Remember `der` under `key` until `expires` (an older entry for the key is replaced). */
static void cache_put(const char *key, const unsigned char *der, size_t len, time_t expires)
{
	cache_entry *e, **pp;

	if (expires <= time(NULL)) {
		return;
	}
	pthread_mutex_lock(&cache_lock);
	for (pp = &cache_head; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->key, key) == 0) {
			e = *pp;
			*pp = e->next;
			free(e->key);
			free(e->der);
			free(e);
			cache_n--;
			break;
		}
	}
	if (cache_n >= CACHE_MAX && cache_head != NULL) {
		/* Bounded: drop the oldest (the list's tail). */
		for (pp = &cache_head; (*pp)->next != NULL; pp = &(*pp)->next) {
		}
		e = *pp;
		*pp = NULL;
		free(e->key);
		free(e->der);
		free(e);
		cache_n--;
	}
	if ((e = calloc(1, sizeof(*e))) != NULL && (e->key = strdup(key)) != NULL &&
	    (e->der = malloc(len)) != NULL) {
		memcpy(e->der, der, len);
		e->len = len;
		e->expires = expires;
		e->next = cache_head;
		cache_head = e;
		cache_n++;
	} else if (e != NULL) {
		free(e->key);
		free(e);
	}
	pthread_mutex_unlock(&cache_lock);
}

static time_t asn1_to_time_t(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
		return 0;
	}
	return timegm(&tm);
}

/* ---- URIs of the certificate's extensions ---- */

/* The URIs of accessMethod `nid` in authorityInfoAccess (RFC 5280 §4.2.2.1). */
static int aia_uris(X509 *cert, int nid, char **out, int max)
{
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
	int n = 0;

	for (int i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia) && n < max; i++) {
		ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);

		if (OBJ_obj2nid(ad->method) == nid && ad->location->type == GEN_URI) {
			const ASN1_IA5STRING *u = ad->location->d.uniformResourceIdentifier;

			if ((out[n] = strndup((const char *)u->data, (size_t)u->length)) != NULL) {
				n++;
			}
		}
	}
	AUTHORITY_INFO_ACCESS_free(aia);
	ERR_clear_error();
	return n;
}

static void strs_free(char **v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i]);
	}
}

/* ---- OCSP ---- */

void p11s_ocsp__result_clear(p11s_ocsp_result *r)
{
	free(r->responder);
	free(r->produced_at);
	free(r->this_update);
	free(r->next_update);
	free(r->revocation_time);
	free(r->der);
	memset(r, 0, sizeof(*r));
}

/*
 * RFC 6960 §4.2.2.2: the response is signed by the CA that issued the certificate, or by a
 * responder certificate that this CA issued and that carries id-kp-OCSPSigning. (The third
 * case, a locally configured responder, is not offered: `ocsp-url` only says where to ask.)
 * The signature itself was checked by OCSP_basic_verify(); here, who signed.
 */
static int responder_authorised(X509 *signer, X509 *issuer, int64_t now, char *why, size_t wl)
{
	EVP_PKEY *ipk;

	if (X509_cmp(signer, issuer) == 0) {
		return 1;
	}
	if (X509_check_issued(issuer, signer) != X509_V_OK || (ipk = X509_get0_pubkey(issuer)) == NULL ||
	    X509_verify(signer, ipk) != 1) {
		snprintf(why, wl, "the OCSP response is signed by a key the issuing CA did not "
		                  "certify (RFC 6960 section 4.2.2.2)");
		return 0;
	}
	if ((X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) == 0 ||
	    (X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN) == 0) {
		snprintf(why, wl, "the OCSP responder certificate lacks id-kp-OCSPSigning "
		                  "(RFC 6960 section 4.2.2.2)");
		return 0;
	}
	{
		time_t t = (time_t)now;

		if (X509_cmp_time(X509_get0_notBefore(signer), &t) > 0 ||
		    X509_cmp_time(X509_get0_notAfter(signer), &t) < 0) {
			snprintf(why, wl, "the OCSP responder certificate is not valid now");
			return 0;
		}
	}
	return 1;
}

int p11s_ocsp__check_response(const unsigned char *der, size_t len, OCSP_REQUEST *req,
    OCSP_CERTID *id, X509 *issuer, int64_t at, p11s_ocsp_result *res, time_t *expires)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	OCSP_BASICRESP *bs = NULL;
	STACK_OF(X509) *certs = NULL;
	X509_STORE *st = NULL;
	X509 *signer = NULL;
	ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
	int status = -1, reason = -1, n, rc = P11S_OK;
	time_t now = time(NULL), tu, nu = 0;

	*expires = 0;
	if (resp == NULL || p != der + len) {
		snprintf(res->why, sizeof(res->why), "the OCSP response is not DER");
		goto out;
	}
	if ((n = OCSP_response_status(resp)) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		snprintf(res->why, sizeof(res->why), "the OCSP responder answered %s",
		    OCSP_response_status_str(n));
		goto out;
	}
	if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
		snprintf(res->why, sizeof(res->why), "the OCSP response is not a BasicOCSPResponse");
		goto out;
	}
	/*
	 * RFC 8954 / RFC 6960 §4.4.1: a responder may ignore the nonce (pre-produced responses);
	 * one that sends a different nonce answers another request: refused.
	 */
	if (req != NULL && OCSP_check_nonce(req, bs) == 0) {
		snprintf(res->why, sizeof(res->why), "the OCSP response's nonce does not match the "
		                                     "request's (RFC 6960 section 4.4.1)");
		goto out;
	}
	if ((certs = sk_X509_new_null()) == NULL || !sk_X509_push(certs, issuer) ||
	    (st = X509_STORE_new()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/*
	 * The signature with the signer's key (found in the response or among `certs`); chain and
	 * authorisation are ours (OCSP_NOVERIFY): responder_authorised() is §4.2.2.2 exactly.
	 */
	if (OCSP_basic_verify(bs, certs, st, OCSP_NOVERIFY) <= 0 ||
	    !OCSP_resp_get0_signer(bs, &signer, certs) || signer == NULL) {
		snprintf(res->why, sizeof(res->why), "the OCSP response signature does not verify");
		goto out;
	}
	if (!responder_authorised(signer, issuer, (int64_t)now, res->why, sizeof(res->why))) {
		goto out;
	}
	if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd)) {
		snprintf(res->why, sizeof(res->why), "the OCSP response does not cover the certificate");
		goto out;
	}
	/*
	 * Freshness (RFC 6960 §4.2.2.1, §3.2 items 5-6): thisUpdate not in the future; the
	 * status must still be current at the validation time: nextUpdate (or thisUpdate plus a
	 * maximum age when absent) not before `at`, each with the skew allowance.
	 */
	tu = asn1_to_time_t(thisupd);
	if (nextupd != NULL) {
		nu = asn1_to_time_t(nextupd);
	}
	if (tu == 0 || tu > now + OCSP_SKEW) {
		snprintf(res->why, sizeof(res->why), "the OCSP response's thisUpdate is in the future");
		goto out;
	}
	if ((nextupd != NULL && nu + OCSP_SKEW < at) ||
	    (nextupd == NULL && tu + OCSP_MAX_AGE + OCSP_SKEW < at)) {
		snprintf(res->why, sizeof(res->why), "the OCSP response is stale (%s %s)",
		    nextupd != NULL ? "nextUpdate" : "no nextUpdate, thisUpdate",
		    nextupd != NULL ? "before the validation time" : "too old");
		goto out;
	}
	res->this_update = p11s_x509__time(thisupd);
	res->next_update = nextupd != NULL ? p11s_x509__time(nextupd) : NULL;
	res->produced_at = p11s_x509__time(OCSP_resp_get0_produced_at(bs));
	switch (status) {
	case V_OCSP_CERTSTATUS_GOOD:
		res->decided = 1;
		break;
	case V_OCSP_CERTSTATUS_REVOKED:
		res->revocation_time = p11s_x509__time(rev);
		/* Revoked after the validation time: it was not revoked then (RFC 5280 §6.3). */
		res->decided = 1;
		res->revoked = !(asn1_to_time_t(rev) > at);
		if (reason >= 0) {
			snprintf(res->why, sizeof(res->why), "%s", OCSP_crl_reason_str(reason));
		}
		break;
	default:
		snprintf(res->why, sizeof(res->why), "the OCSP responder does not know the "
		                                     "certificate (status unknown)");
		goto out;
	}
	if (nextupd != NULL) {
		*expires = nu;
	}
out:
	sk_X509_free(certs);
	X509_STORE_free(st);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	ERR_clear_error();
	return rc;
}

/* Cache key: the responder URL and the DER CertID (hash of issuer name and key, serial). */
static char *ocsp_cache_key(const char *url, OCSP_CERTID *id)
{
	unsigned char *der = NULL;
	int len = i2d_OCSP_CERTID(id, &der);
	char *key = NULL;
	size_t ul = strlen(url);

	/* "ocsp " URL ' ' hex(DER) NUL */
	if (len > 0 && (key = malloc(5 + ul + 1 + 2 * (size_t)len + 1)) != NULL) {
		memcpy(key, "ocsp ", 5);
		memcpy(key + 5, url, ul);
		key[5 + ul] = ' ';
		for (int i = 0; i < len; i++) {
			sprintf(key + 6 + ul + 2 * i, "%02x", der[i]);
		}
	}
	OPENSSL_free(der);
	return key;
}

int p11s_ocsp__check(X509 *cert, X509 *issuer, const p11s_x509_rev_policy *pol, int64_t at,
    p11s_ocsp_result *res)
{
	char *urls[MAX_URLS];
	int n_urls = 0, rc = P11S_OK;
	p11s_fetch_policy fp;

	memset(res, 0, sizeof(*res));
	if (pol->ocsp_url != NULL) {
		if ((urls[0] = strdup(pol->ocsp_url)) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		n_urls = 1;
	} else {
		n_urls = aia_uris(cert, NID_ad_OCSP, urls, MAX_URLS);
	}
	if (n_urls == 0) {
		snprintf(res->why, sizeof(res->why), "no OCSP responder (no authorityInfoAccess "
		                                     "id-ad-ocsp, no ocsp-url)");
		return P11S_OK;
	}
	p11s_rev__fetch_policy(pol, &fp);
	for (int u = 0; u < n_urls && !res->decided && rc >= 0; u++) {
		OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, issuer);
		OCSP_REQUEST *req = NULL;
		unsigned char *reqder = NULL, *der = NULL;
		size_t len = 0;
		int reqlen;
		time_t expires = 0;
		char *key = NULL;

		free(res->responder);
		res->responder = strdup(urls[u]);
		if (id == NULL || res->responder == NULL || (key = ocsp_cache_key(urls[u], id)) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto next;
		}
		if (cache_get(key, &der, &len)) {
			res->cached = 1;
			rc = p11s_ocsp__check_response(der, len, NULL, id, issuer, at, res, &expires);
			if (res->decided) {
				goto next;
			}
			free(der);
			der = NULL;
			res->cached = 0;
		}
		if (!pol->fetch) {
			snprintf(res->why, sizeof(res->why), "OCSP needs fetching (--no-fetch)");
			goto next;
		}
		/* RFC 6960 §4.1: one Request; a nonce (§4.4.1) ties the response to it. */
		if ((req = OCSP_REQUEST_new()) == NULL ||
		    OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) == NULL ||
		    !OCSP_request_add1_nonce(req, NULL, -1) || (reqlen = i2d_OCSP_REQUEST(req, &reqder)) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_NOMEM, "cannot build the OCSP request");
			goto next;
		}
		/* App. A.1: POST application/ocsp-request. */
		if (p11s_fetch__http(urls[u], &fp, reqder, (size_t)reqlen, "application/ocsp-request",
		        OCSP_MAX_RESP, &der, &len) < 0) {
			snprintf(res->why, sizeof(res->why), "OCSP: %s", p11s_error_last()->message);
			goto next;
		}
		rc = p11s_ocsp__check_response(der, len, req, id, issuer, at, res, &expires);
		if (res->decided && expires != 0) {
			cache_put(key, der, len, expires);
		}
next:
		OPENSSL_free(reqder);
		OCSP_REQUEST_free(req);
		OCSP_CERTID_free(id);
		if (res->decided && der != NULL) {
			free(res->der);
			res->der = der; /* what sign --staple embeds */
			res->der_len = len;
			der = NULL;
		}
		free(der);
		free(key);
		if (!res->decided) {
			/* Nothing of an unusable response is reported, only why. */
			free(res->produced_at);
			free(res->this_update);
			free(res->next_update);
			free(res->revocation_time);
			res->produced_at = res->this_update = res->next_update = res->revocation_time = NULL;
		}
	}
	strs_free(urls, n_urls);
	ERR_clear_error();
	return rc;
}

/* ---- CRLs from crlDistributionPoints ---- */

X509_CRL *p11s_crl__parse(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);

	if (crl == NULL) {
		BIO *b = BIO_new_mem_buf(der, (int)len);

		crl = b != NULL ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
	}
	ERR_clear_error();
	return crl;
}

int p11s_crl__fetch(X509 *cert, const p11s_x509_rev_policy *pol, STACK_OF(X509_CRL) *out)
{
	STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
	p11s_fetch_policy fp;
	int n_urls = 0, rc = P11S_OK;

	p11s_rev__fetch_policy(pol, &fp);
	for (int i = 0; dps != NULL && i < sk_DIST_POINT_num(dps) && rc >= 0; i++) {
		DIST_POINT *dp = sk_DIST_POINT_value(dps, i);

		/* A nameRelativeToCRLIssuer names no URL; only fullName URIs can be fetched. */
		if (dp->distpoint == NULL || dp->distpoint->type != 0) {
			continue;
		}
		for (int j = 0; j < sk_GENERAL_NAME_num(dp->distpoint->name.fullname); j++) {
			GENERAL_NAME *gn = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, j);
			unsigned char *der = NULL;
			size_t len = 0;
			char *url, *key = NULL;
			X509_CRL *crl = NULL;

			if (gn->type != GEN_URI || n_urls >= MAX_URLS) {
				continue;
			}
			n_urls++;
			url = strndup((const char *)gn->d.uniformResourceIdentifier->data,
			    (size_t)gn->d.uniformResourceIdentifier->length);
			if (url == NULL || asprintf(&key, "crl %s", url) < 0) {
				key = NULL;
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			} else if (cache_get(key, &der, &len) ||
			    (pol->fetch && p11s_fetch__http(url, &fp, NULL, 0, NULL, CRL_MAX, &der, &len) == P11S_OK)) {
				if ((crl = p11s_crl__parse(der, len)) != NULL) {
					const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(crl);

					/* Cached until nextUpdate, then fetched again (RFC 5280 §5.1.2.5). */
					if (nu != NULL) {
						cache_put(key, der, len, asn1_to_time_t(nu));
					}
					if (!sk_X509_CRL_push(out, crl)) {
						X509_CRL_free(crl);
						rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
					}
				}
			}
			free(der);
			free(key);
			free(url);
		}
	}
	sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
	ERR_clear_error();
	return rc;
}

/* ---- caIssuers ---- */

int p11s_aia__parse_issuers(const unsigned char *der, size_t len, STACK_OF(X509) *out)
{
	const unsigned char *p = der;
	X509 *x;
	PKCS7 *p7;
	int added = 0;

	/* RFC 5280 §4.2.2.1: a single DER certificate, or a certs-only CMS/PKCS#7 in DER. */
	if ((x = d2i_X509(NULL, &p, (long)len)) != NULL) {
		if (!sk_X509_push(out, x)) {
			X509_free(x);
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		added++;
	} else if ((p = der, p7 = d2i_PKCS7(NULL, &p, (long)len)) != NULL) {
		if (PKCS7_type_is_signed(p7) && p7->d.sign != NULL) {
			STACK_OF(X509) *c = p7->d.sign->cert;

			for (int i = 0; c != NULL && i < sk_X509_num(c); i++) {
				X509 *y = sk_X509_value(c, i);

				if (!X509_up_ref(y)) {
					continue;
				}
				if (!sk_X509_push(out, y)) {
					X509_free(y);
					PKCS7_free(p7);
					return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				}
				added++;
			}
		}
		PKCS7_free(p7);
	}
	ERR_clear_error();
	return added;
}

int p11s_aia__fetch_issuers(X509 *cert, const p11s_x509_rev_policy *pol, STACK_OF(X509) *out)
{
	char *urls[MAX_URLS];
	int n_urls, added = 0;
	p11s_fetch_policy fp;

	if (!pol->fetch) {
		return 0;
	}
	p11s_rev__fetch_policy(pol, &fp);
	n_urls = aia_uris(cert, NID_ad_ca_issuers, urls, MAX_URLS);
	for (int u = 0; u < n_urls; u++) {
		unsigned char *der = NULL;
		size_t len = 0;
		int n;

		if (p11s_fetch__http(urls[u], &fp, NULL, 0, NULL, CERT_MAX, &der, &len) < 0) {
			continue;
		}
		if ((n = p11s_aia__parse_issuers(der, len, out)) < 0) {
			free(der);
			strs_free(urls, n_urls);
			return n;
		}
		added += n;
		free(der);
	}
	strs_free(urls, n_urls);
	ERR_clear_error();
	return added;
}

/* ---- public: refreshing the fetched CRLs before they expire (the gateway) ---- */

/* The thisUpdate of a DER CRL as time_t, 0 if it does not parse. */
static time_t crl_this_update(const unsigned char *der, size_t len)
{
	X509_CRL *crl = p11s_crl__parse(der, len);
	time_t t = crl != NULL ? asn1_to_time_t(X509_CRL_get0_lastUpdate(crl)) : 0;

	X509_CRL_free(crl);
	return t;
}

int p11s_revocation_refresh_crls(const p11s_revocation_opts *rev, long before)
{
	p11s_x509_rev_policy pol = { 0 };
	p11s_fetch_policy fp;
	char *keys[CACHE_MAX];
	time_t olds[CACHE_MAX], now = time(NULL);
	size_t n = 0;
	int refreshed = 0;

	if (rev == NULL || rev->version != P11S_REVOCATION_OPTS_VERSION || before < 0) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_revocation_refresh_crls: bad "
		                                             "arguments");
	}
	if (!rev->fetch) {
		return 0;
	}
	pol = (p11s_x509_rev_policy){ .fetch = 1, .allow = rev->fetch_allow,
		.n_allow = rev->n_fetch_allow, .deny = rev->fetch_deny, .n_deny = rev->n_fetch_deny,
		.timeout_s = rev->fetch_timeout };
	p11s_rev__fetch_policy(&pol, &fp);
	/* Which ones are due, copied out: the downloads run without the lock. */
	pthread_mutex_lock(&cache_lock);
	for (cache_entry *e = cache_head; e != NULL && n < CACHE_MAX; e = e->next) {
		if (strncmp(e->key, "crl ", 4) == 0 && e->expires - now <= before &&
		    (keys[n] = strdup(e->key)) != NULL) {
			olds[n++] = crl_this_update(e->der, e->len);
		}
	}
	pthread_mutex_unlock(&cache_lock);
	for (size_t i = 0; i < n; i++) {
		unsigned char *der = NULL;
		size_t len = 0;
		X509_CRL *crl;

		/* The same URL the CDP named (keys are "crl URL"), under today's fetch policy. */
		if (p11s_fetch__http(keys[i] + 4, &fp, NULL, 0, NULL, CRL_MAX, &der, &len) == P11S_OK &&
		    (crl = p11s_crl__parse(der, len)) != NULL) {
			const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(crl);
			time_t tu = asn1_to_time_t(X509_CRL_get0_lastUpdate(crl));

			/* Only a newer CRL replaces the cached one (RFC 5280 §5.1.2.4: thisUpdate). */
			if (nu != NULL && tu > olds[i]) {
				cache_put(keys[i], der, len, asn1_to_time_t(nu));
				refreshed++;
			}
			X509_CRL_free(crl);
		}
		free(der);
		free(keys[i]);
	}
	ERR_clear_error();
	p11s_error_clear();
	return refreshed;
}

/* ---- public: the --revocation value ---- */

int p11s_revocation_parse_methods(const char *s, unsigned int *out)
{
	static const struct {
		const char *name;
		unsigned int bits;
	} forms[] = {
		{ "none", 0 },
		{ "crl", P11S_REV_CRL },
		{ "ocsp", P11S_REV_OCSP },
		{ "ocsp,crl", P11S_REV_OCSP | P11S_REV_CRL },
		{ "crl,ocsp", P11S_REV_OCSP | P11S_REV_CRL },
	};

	for (size_t i = 0; s != NULL && i < sizeof(forms) / sizeof(forms[0]); i++) {
		if (strcmp(s, forms[i].name) == 0) {
			*out = forms[i].bits;
			return P11S_OK;
		}
	}
	return p11s_error__set(P11S_ERR_USAGE, "revocation must be none, crl, ocsp or ocsp,crl "
	                                       "(not '%s')", s != NULL ? s : "");
}

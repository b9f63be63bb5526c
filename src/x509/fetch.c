/*
 * Safe HTTP fetching (fetch.h). The URLs come from certificates (authorityInfoAccess,
 * crlDistributionPoints), that is from whoever made the certificate: RFC 5280 §4.2.1.13 and
 * §4.2.2.1 allow ldap:, file: and others there, and fetching them would make the verifier an
 * HTTP (or file) client for an attacker. So:
 *  - only http and https, checked on the URL as libcurl itself parses it (curl_url) and again
 *    by libcurl (CURLOPT_PROTOCOLS_STR, libcurl >= 7.85; Debian 12 has 7.88);
 *  - no redirects at all (CURLOPT_FOLLOWLOCATION 0), and should one be followed anyway, only
 *    to http/https (CURLOPT_REDIR_PROTOCOLS_STR);
 *  - the host must pass the allow/deny lists (deny wins);
 *  - a connect and a total time limit, and a body size limit enforced while receiving.
 * libcurl is loaded on first use, as src/tsa/tsa.c does (startup cost, docs/performance.md).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "core/error_int.h"
#include "x509/fetch.h"

static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	const char *(*easy_strerror)(CURLcode);
	void (*easy_cleanup)(CURL *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
	CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
	void (*url_cleanup)(CURLU *);
	void (*free)(void *);
	int ok;
	char why[160];
} curl;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_load_once(void)
{
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	if (h == NULL) {
		snprintf(curl.why, sizeof(curl.why), "%s", dlerror());
		return;
	}
#define SYM(field, name) (*(void **)&curl.field = dlsym(h, name)) != NULL
	if (!(SYM(global_init, "curl_global_init") && SYM(easy_init, "curl_easy_init") &&
	        SYM(easy_setopt, "curl_easy_setopt") && SYM(easy_perform, "curl_easy_perform") &&
	        SYM(easy_getinfo, "curl_easy_getinfo") &&
	        SYM(easy_strerror, "curl_easy_strerror") &&
	        SYM(easy_cleanup, "curl_easy_cleanup") &&
	        SYM(slist_append, "curl_slist_append") &&
	        SYM(slist_free_all, "curl_slist_free_all") && SYM(url, "curl_url") &&
	        SYM(url_set, "curl_url_set") && SYM(url_get, "curl_url_get") &&
	        SYM(url_cleanup, "curl_url_cleanup") && SYM(free, "curl_free"))) {
		snprintf(curl.why, sizeof(curl.why), "libcurl.so.4 lacks a function");
		return;
	}
#undef SYM
	/* Once, before any thread uses curl; curl_global_init is reference-counted (tsa.c too). */
	if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(curl.why, sizeof(curl.why), "curl_global_init failed");
		return;
	}
	curl.ok = 1;
}

/* "host" matches itself; ".domain" matches domain and every name below it. */
static int host_matches(const char *host, const char *pat)
{
	size_t hl = strlen(host), pl = strlen(pat);

	if (pl == 0) {
		return 0;
	}
	if (pat[0] == '.') {
		if (hl == pl - 1 && strcasecmp(host, pat + 1) == 0) {
			return 1;
		}
		return hl > pl && strcasecmp(host + hl - pl, pat) == 0;
	}
	return strcasecmp(host, pat) == 0;
}

/* `why` = a + b (+ c). */
static void set_why(char *why, size_t len, const char *a, const char *b, const char *c)
{
	if (why != NULL && len > 0) {
		snprintf(why, len, "%s%s%s", a, b, c);
	}
}

int p11s_fetch__url_allowed(const char *url, const p11s_fetch_policy *pol, char *why,
    size_t why_len)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL;
	int ok = 0;

	set_why(why, why_len, "", "", "");
	/* Cheap first test, before libcurl is even loaded: file:, ldap:, data: never get further. */
	if (url == NULL || (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
		set_why(why, why_len, "only http and https URLs are fetched", "", "");
		return 0;
	}
	pthread_once(&curl_once, curl_load_once);
	if (!curl.ok) {
		set_why(why, why_len, "fetching needs libcurl: ", curl.why, "");
		return 0;
	}
	if ((u = curl.url()) == NULL) {
		set_why(why, why_len, "out of memory", "", "");
		return 0;
	}
	/* The URL exactly as the transfer will parse it (no guessed scheme, no default scheme). */
	if (curl.url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl.url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl.url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
		set_why(why, why_len, "not a valid http URL", "", "");
		goto out;
	}
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
		set_why(why, why_len, "only http and https URLs are fetched", "", "");
		goto out;
	}
	for (size_t i = 0; pol != NULL && i < pol->n_deny; i++) {
		if (host_matches(host, pol->deny[i])) {
			set_why(why, why_len, "host ", host, " is on the fetch deny list");
			goto out;
		}
	}
	if (pol != NULL && pol->n_allow > 0) {
		size_t i;

		for (i = 0; i < pol->n_allow && !host_matches(host, pol->allow[i]); i++) {
		}
		if (i == pol->n_allow) {
			set_why(why, why_len, "host ", host, " is not on the fetch allow list");
			goto out;
		}
	}
	ok = 1;
out:
	curl.free(scheme);
	curl.free(host);
	curl.url_cleanup(u);
	return ok;
}

typedef struct membuf {
	unsigned char *p;
	size_t n, max;
	int too_big, nomem;
} membuf;

static size_t on_data(char *p, size_t size, size_t nmemb, void *payload)
{
	membuf *b = payload;
	size_t n = size * nmemb;
	unsigned char *np;

	if (n > b->max - b->n) {
		b->too_big = 1;
		return 0; /* aborts the transfer: the limit holds while receiving, not after */
	}
	if ((np = realloc(b->p, b->n + n + 1)) == NULL) {
		b->nomem = 1;
		return 0;
	}
	memcpy(np + b->n, p, n);
	b->p = np;
	b->n += n;
	return n;
}

int p11s_fetch__http(const char *url, const p11s_fetch_policy *pol, const unsigned char *body,
    size_t body_len, const char *content_type, size_t max_bytes, unsigned char **out,
    size_t *out_len)
{
	struct curl_slist *hdrs = NULL;
	char err[CURL_ERROR_SIZE] = "", why[200];
	membuf resp = { .max = max_bytes };
	long status = 0, timeout = pol != NULL && pol->timeout_s > 0 ? pol->timeout_s : 10;
	CURL *c = NULL;
	CURLcode cc;
	int rc = P11S_OK;

	*out = NULL;
	*out_len = 0;
	if (pol != NULL && pol->max_bytes > 0) {
		resp.max = pol->max_bytes;
	}
	if (!p11s_fetch__url_allowed(url, pol, why, sizeof(why))) {
		return p11s_error__set(P11S_ERR_IO, "not fetched: %s", why);
	}
	if ((c = curl.easy_init()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "cannot initialise libcurl");
	}
	if (body != NULL) {
		char h[120];

		snprintf(h, sizeof(h), "Content-Type: %s", content_type);
		if ((hdrs = curl.slist_append(hdrs, h)) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		curl.easy_setopt(c, CURLOPT_POST, 1L);
		curl.easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
		curl.easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	}
	curl.easy_setopt(c, CURLOPT_URL, url);
	if (curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK) {
		/* An older libcurl without these options: refuse rather than fetch unrestricted. */
		rc = p11s_error__set(P11S_ERR_IO, "libcurl cannot restrict protocols (needs 7.85)");
		goto out;
	}
	curl.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	curl.easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout < 5 ? timeout : 5L);
	curl.easy_setopt(c, CURLOPT_TIMEOUT, timeout);
	/* A declared Content-Length over the limit fails before the body is read. */
	curl.easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)resp.max);
	if ((cc = curl.easy_perform(c)) != CURLE_OK) {
		rc = resp.nomem ? p11s_error__set(P11S_ERR_NOMEM, "out of memory")
		    : p11s_error__set(P11S_ERR_IO, "%s: %s", url,
		          resp.too_big || cc == CURLE_FILESIZE_EXCEEDED ? "response too large"
		          : (err[0] ? err : curl.easy_strerror(cc)));
		goto out;
	}
	curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		rc = p11s_error__set(P11S_ERR_IO, "%s: HTTP status %ld", url, status);
		goto out;
	}
	if (resp.n == 0) {
		rc = p11s_error__set(P11S_ERR_IO, "%s: empty response", url);
		goto out;
	}
	*out = resp.p;
	*out_len = resp.n;
	resp.p = NULL;
out:
	free(resp.p);
	curl.slist_free_all(hdrs);
	curl.easy_cleanup(c);
	return rc;
}

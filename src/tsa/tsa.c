/*
 * RFC 3161 time-stamping: the client that asks a TSA over HTTP (libcurl) for a token over a
 * signature value (RFC 5126 §5.11.1 signature-time-stamp), and the verifier of such tokens.
 * The ASN.1 comes from OpenSSL's TS module (no deprecated API).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509.h>

#include <p11smime/tsa.h>

#include "core/error_int.h"
#include "tsa/tsa_int.h"

#define RESP_MAX (1u << 20) /* a TimeStampResp is a few KiB; refuse to buffer megabytes */

typedef struct membuf {
	unsigned char *p;
	size_t n;
	int too_big;
} membuf;

static size_t on_data(char *p, size_t size, size_t nmemb, void *payload)
{
	membuf *b = payload;
	size_t n = size * nmemb;
	unsigned char *np;

	if (b->n + n > RESP_MAX) {
		b->too_big = 1;
		return 0;
	}
	if ((np = realloc(b->p, b->n + n)) == NULL) {
		return 0;
	}
	memcpy(np + b->n, p, n);
	b->p = np;
	b->n += n;
	return n;
}

/*
 * libcurl is loaded on first use, not linked: with its 30-odd dependencies (GnuTLS, Kerberos,
 * LDAP, libssh2, ...) it was 40% of the dynamic loader's work at every start of the tool,
 * about 13 ms of CPU for a signature that needs no time-stamp (docs/performance.md).
 */
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
	        SYM(slist_free_all, "curl_slist_free_all"))) {
		snprintf(curl.why, sizeof(curl.why), "libcurl.so.4 lacks a function");
		return;
	}
#undef SYM
	/* Once, before any thread uses curl (curl_easy_init() alone is not thread-safe). */
	if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(curl.why, sizeof(curl.why), "curl_global_init failed");
		return;
	}
	curl.ok = 1; /* the library stays loaded for the life of the process */
}

/* RFC 3161 §3.4: POST the DER TimeStampReq as application/timestamp-query. */
static int http_post(const char *url, const unsigned char *req, size_t req_len, membuf *resp)
{
	struct curl_slist *hdrs = NULL;
	char err[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURL *c;
	CURLcode cc;
	int rc = P11S_OK;

	pthread_once(&curl_once, curl_load_once);
	if (!curl.ok) {
		return p11s_error__set(P11S_ERR_IO, "time-stamping needs libcurl: %s", curl.why);
	}
	if ((c = curl.easy_init()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "cannot initialise libcurl");
	}
	if ((hdrs = curl.slist_append(hdrs, "Content-Type: application/timestamp-query")) == NULL ||
	    (hdrs = curl.slist_append(hdrs, "Accept: application/timestamp-reply")) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	curl.easy_setopt(c, CURLOPT_URL, url);
	/* Only http and https; never file:, never follow a redirect to another scheme. */
	curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl.easy_setopt(c, CURLOPT_POST, 1L);
	curl.easy_setopt(c, CURLOPT_POSTFIELDS, req);
	curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)req_len);
	curl.easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl.easy_setopt(c, CURLOPT_ERRORBUFFER, err);
	curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl.easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if ((cc = curl.easy_perform(c)) != CURLE_OK) {
		rc = p11s_error__set(P11S_ERR_IO, "time-stamping authority %s: %s", url,
		    resp->too_big ? "response too large" : (err[0] ? err : curl.easy_strerror(cc)));
		goto out;
	}
	curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		rc = p11s_error__set(P11S_ERR_IO, "time-stamping authority %s: HTTP status %ld", url,
		    status);
	}
out:
	curl.slist_free_all(hdrs);
	curl.easy_cleanup(c);
	return rc;
}

/* The TimeStampReq: version 1, SHA-256 messageImprint of `data`, nonce, certReq TRUE. */
static int make_request(const unsigned char *data, size_t len, TS_REQ **out, ASN1_INTEGER **nonce)
{
	unsigned char md[32], rnd[8];
	unsigned int mdlen = 0;
	TS_REQ *req = TS_REQ_new();
	TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
	X509_ALGOR *alg = X509_ALGOR_new();
	BIGNUM *bn = NULL;
	int rc = P11S_OK;

	*out = NULL;
	*nonce = NULL;
	if (req == NULL || mi == NULL || alg == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) ||
	    !X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL) ||
	    !TS_MSG_IMPRINT_set_algo(mi, alg) || !TS_MSG_IMPRINT_set_msg(mi, md, (int)mdlen) ||
	    !TS_REQ_set_version(req, 1) || !TS_REQ_set_msg_imprint(req, mi) ||
	    !TS_REQ_set_cert_req(req, 1)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot build the TimeStampReq");
		goto out;
	}
	/* RFC 3161 §2.4.1: a nonce ties the response to this request (replay protection). */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1 || (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL ||
	    (*nonce = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || !TS_REQ_set_nonce(req, *nonce)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot make the nonce");
		goto out;
	}
	*out = req;
	req = NULL;
out:
	if (rc < 0) {
		ASN1_INTEGER_free(*nonce);
		*nonce = NULL;
	}
	BN_free(bn);
	X509_ALGOR_free(alg);
	TS_MSG_IMPRINT_free(mi);
	TS_REQ_free(req);
	return rc;
}

/* The token's own signature, with the TSA certificate it carries (trust is checked later). */
static int check_token_signature(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
	int ok;

	if (cms == NULL) {
		return p11s_error__ossl(P11S_ERR_MALFORMED, "the timestamp token is not a CMS "
		                                            "ContentInfo");
	}
	ok = CMS_verify(cms, NULL, NULL, NULL, NULL, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) == 1;
	CMS_ContentInfo_free(cms);
	if (!ok) {
		return p11s_error__ossl(P11S_ERR_VERIFY, "the timestamp token's signature does not "
		                                         "verify");
	}
	return P11S_OK;
}

int p11s_tsa_timestamp(const char *url, const unsigned char *data, size_t len, p11s_buf **out)
{
	TS_REQ *req = NULL;
	ASN1_INTEGER *nonce = NULL;
	TS_RESP *resp = NULL;
	TS_VERIFY_CTX *vctx = NULL;
	unsigned char *reqder = NULL, *tokder = NULL;
	const unsigned char *p;
	membuf body = { 0 };
	int reqlen, toklen, rc;
	long status;

	if (out == NULL || url == NULL || data == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_tsa_timestamp: NULL argument");
	}
	*out = NULL;
	if ((rc = make_request(data, len, &req, &nonce)) < 0) {
		goto out;
	}
	if ((reqlen = i2d_TS_REQ(req, &reqder)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the TimeStampReq");
		goto out;
	}
	if ((rc = http_post(url, reqder, (size_t)reqlen, &body)) < 0) {
		goto out;
	}
	p = body.p;
	if (body.n == 0 || (resp = d2i_TS_RESP(NULL, &p, (long)body.n)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the time-stamping authority did not answer "
		                                          "with a TimeStampResp");
		goto out;
	}
	/* RFC 3161 §2.4.2: PKIStatus granted (0) or grantedWithMods (1) carry a token. */
	status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp)));
	if ((status != 0 && status != 1) || TS_RESP_get_token(resp) == NULL) {
		rc = p11s_error__set(P11S_ERR_VERIFY, "the time-stamping authority refused the request "
		                                      "(PKIStatus %ld)", status);
		goto out;
	}
	/* Same request, same answer: version, messageImprint and nonce (RFC 3161 §2.4.2). */
	if ((vctx = TS_REQ_to_TS_VERIFY_CTX(req, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot check the timestamp");
		goto out;
	}
	TS_VERIFY_CTX_set_flags(vctx, TS_VFY_VERSION | TS_VFY_IMPRINT | TS_VFY_NONCE);
	if (TS_RESP_verify_response(vctx, resp) != 1) {
		rc = p11s_error__ossl(P11S_ERR_VERIFY, "the timestamp does not match the request "
		                                       "(messageImprint, nonce or version)");
		goto out;
	}
	if ((toklen = i2d_PKCS7(TS_RESP_get_token(resp), &tokder)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the timestamp token");
		goto out;
	}
	if ((rc = check_token_signature(tokder, (size_t)toklen)) < 0 ||
	    (rc = p11s_buf_new(out, (size_t)toklen)) < 0) {
		goto out;
	}
	memcpy((*out)->data, tokder, (size_t)toklen);
out:
	OPENSSL_free(tokder);
	OPENSSL_free(reqder);
	free(body.p);
	TS_VERIFY_CTX_free(vctx);
	TS_RESP_free(resp);
	ASN1_INTEGER_free(nonce);
	TS_REQ_free(req);
	return rc;
}

static char *dup_time(const ASN1_GENERALIZEDTIME *t)
{
	return t ? p11s_x509__time(t) : NULL;
}

int p11s_tsa__verify(const unsigned char *token, size_t token_len, const unsigned char *data,
    size_t data_len, const p11s_x509_store *store, STACK_OF(X509) *untrusted, char **gen_time,
    char **tsa, p11s_reasons *r)
{
	const unsigned char *p = token;
	PKCS7 *p7 = NULL;
	TS_TST_INFO *tst = NULL;
	TS_VERIFY_CTX *vctx = NULL;
	X509_STORE *xs = NULL;
	STACK_OF(X509) *anchors = NULL, *certs = NULL, *signers = NULL;
	const ASN1_GENERALIZEDTIME *gt;
	char ebuf[256] = "";
	struct tm tm;
	int rc = P11S_OK;

	*gen_time = NULL;
	*tsa = NULL;
	if ((p7 = d2i_PKCS7(NULL, &p, (long)token_len)) == NULL || !PKCS7_type_is_signed(p7) ||
	    (tst = PKCS7_to_TS_TST_INFO(p7)) == NULL) {
		ERR_clear_error();
		rc = p11s_reasons__add(r, "timestamp-invalid", "the signature-time-stamp attribute "
		                                               "does not hold a TimeStampToken");
		goto out;
	}
	gt = TS_TST_INFO_get_time(tst);
	*gen_time = dup_time(gt);
	if ((signers = PKCS7_get0_signers(p7, untrusted, 0)) != NULL && sk_X509_num(signers) > 0) {
		*tsa = p11s_x509__name(X509_get_subject_name(sk_X509_value(signers, 0)));
	}
	ERR_clear_error();
	/* A private store: the anchors of --trust, validated at genTime (RFC 5126 §5.11.1). */
	if ((xs = X509_STORE_new()) == NULL || (vctx = TS_VERIFY_CTX_new()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	anchors = store && store->store ? X509_STORE_get1_all_certs(store->store) : NULL;
	for (int i = 0; anchors != NULL && i < sk_X509_num(anchors); i++) {
		if (!X509_STORE_add_cert(xs, sk_X509_value(anchors, i))) {
			ERR_clear_error();
		}
	}
	if (gt != NULL && ASN1_TIME_to_tm(gt, &tm)) {
		X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(xs), timegm(&tm));
	}
	if (untrusted != NULL && (certs = X509_chain_up_ref(untrusted)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	TS_VERIFY_CTX_set_store(vctx, xs);
	xs = NULL;
	TS_VERIFY_CTX_set_certs(vctx, certs);
	certs = NULL;
	TS_VERIFY_CTX_set_data(vctx, BIO_new_mem_buf(data, (int)data_len));
	/*
	 * TS_VFY_SIGNATURE: the token's signature, its ESS signingCertificate, and the TSA path
	 * with OpenSSL's timestamp-signing purpose (EKU timeStamping only, critical: RFC 3161
	 * §2.3). TS_VFY_DATA: messageImprint = hash of the signature value (RFC 5126 §5.11.1).
	 */
	TS_VERIFY_CTX_set_flags(vctx, TS_VFY_VERSION | TS_VFY_SIGNATURE);
	if (TS_RESP_verify_token(vctx, p7) != 1) {
		unsigned long e = ERR_peek_last_error();

		ERR_error_string_n(e, ebuf, sizeof(ebuf));
		ERR_clear_error();
		if ((rc = p11s_reasons__add(r, "timestamp-untrusted", "the timestamp token's signature "
		         "or its TSA certificate path (timeStamping) is not valid: %s", ebuf)) < 0) {
			goto out;
		}
	}
	TS_VERIFY_CTX_set_flags(vctx, TS_VFY_DATA);
	if (TS_RESP_verify_token(vctx, p7) != 1) {
		ERR_clear_error();
		rc = p11s_reasons__add(r, "timestamp-imprint-mismatch", "the timestamp's messageImprint "
		    "is not the hash of this signature value (RFC 5126 section 5.11.1)");
	}
out:
	ERR_clear_error();
	sk_X509_free(signers);
	sk_X509_pop_free(anchors, X509_free);
	sk_X509_pop_free(certs, X509_free);
	X509_STORE_free(xs);
	TS_VERIFY_CTX_free(vctx);
	TS_TST_INFO_free(tst);
	PKCS7_free(p7);
	return rc;
}

int p11s_tsa__stamp_signer(CMS_SignerInfo *si, const char *url)
{
	ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
	p11s_buf *tok = NULL;
	int rc;

	if (sig == NULL || sig->length <= 0) {
		return p11s_error__set(P11S_ERR_CRYPTO, "no signature value to timestamp");
	}
	/* The imprint covers the signature octets only, without tag and length. */
	if ((rc = p11s_tsa_timestamp(url, sig->data, (size_t)sig->length, &tok)) < 0) {
		return rc;
	}
	/* The TimeStampToken is a ContentInfo SEQUENCE: an ASN1_TYPE SEQUENCE writes it as is. */
	if (CMS_unsigned_add1_attr_by_NID(si, NID_id_smime_aa_timeStampToken, V_ASN1_SEQUENCE,
	        tok->data, (int)tok->len) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the signature-time-stamp attribute");
	}
	p11s_buf_free(tok);
	return rc;
}

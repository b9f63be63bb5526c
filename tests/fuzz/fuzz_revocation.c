/*
 * Fuzz target: what an OCSP responder, a CRL distribution point or a caIssuers server sends,
 * and the URLs an attacker's certificate names (src/x509/revocation.c, fetch.c). The first
 * octet selects the parser, the rest is its input:
 *
 *   0  an OCSPResponse for alice (tests/fuzz/pki) against the request with a fixed nonce
 *   1  the same response as if from the cache (no request: the nonce is not checked)
 *   2  a CRL (DER or PEM)
 *   3  a caIssuers answer (DER certificate or certs-only PKCS#7)
 *   4  a URL from a certificate, against the fetch policy (schemes, hosts, allow/deny lists)
 *   5  a DER ContentInfo whose SignedData may staple OCSP responses (RFC 5940), each then
 *      checked as in 1 (src/cms/verify_stapled.c)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cms/verify_int.h"
#include "fuzz.h"
#include "x509/fetch.h"
#include "x509/revocation_int.h"

static X509 *ca, *alice;
static OCSP_REQUEST *req;
static OCSP_CERTID *id;

static X509 *load(const char *name)
{
	char path[4096];
	FILE *f;
	X509 *x;

	snprintf(path, sizeof(path), "%s/%s", P11S_FUZZ_PKI, name);
	if ((f = fopen(path, "r")) == NULL || (x = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) {
		abort();
	}
	fclose(f);
	return x;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const unsigned char nonce[16] = "p11smime-fuzz-n";
	OCSP_CERTID *rid;

	(void)argc;
	(void)argv;
	ca = load("ca.pem");
	alice = load("alice.pem");
	/* The request the responses answer: alice's CertID (SHA-1, RFC 6960 §4.1.1) and a nonce. */
	if ((id = OCSP_cert_to_id(NULL, alice, ca)) == NULL || (req = OCSP_REQUEST_new()) == NULL ||
	    (rid = OCSP_CERTID_dup(id)) == NULL || OCSP_request_add0_id(req, rid) == NULL ||
	    !OCSP_request_add1_nonce(req, (unsigned char *)nonce, (int)sizeof(nonce))) {
		abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *in = data + 1;
	size_t len = size > 0 ? size - 1 : 0;

	if (size == 0) {
		return 0;
	}
	switch (data[0] % 6) {
	case 0:
	case 1: {
		p11s_ocsp_result res;
		time_t expires;

		memset(&res, 0, sizeof(res));
		/* The validation time: the seeds' responses are current then (2026-12). */
		(void)p11s_ocsp__check_response(in, len, data[0] % 6 == 0 ? req : NULL, id, ca,
		    (int64_t)1796083200, &res, &expires);
		p11s_ocsp__result_clear(&res);
		break;
	}
	case 2:
		X509_CRL_free(p11s_crl__parse(in, len));
		break;
	case 3: {
		STACK_OF(X509) *out = sk_X509_new_null();

		if (out != NULL) {
			(void)p11s_aia__parse_issuers(in, len, out);
		}
		sk_X509_pop_free(out, X509_free);
		break;
	}
	case 5: {
		const unsigned char *p = in;
		CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
		p11s_x509_stapled st;

		if (cms != NULL && p11s_cms__stapled_ocsp(cms, &st) == 0) {
			for (size_t i = 0; i < st.n; i++) {
				p11s_ocsp_result res;
				time_t expires;

				memset(&res, 0, sizeof(res));
				(void)p11s_ocsp__check_response(st.der[i], st.len[i], NULL, id, ca,
				    (int64_t)1796083200, &res, &expires);
				p11s_ocsp__result_clear(&res);
			}
			p11s_x509__stapled_clear(&st);
		}
		CMS_ContentInfo_free(cms);
		break;
	}
	case 4: {
		static const char *const allow[] = { "ocsp.example.org", ".pki.example" };
		static const char *const deny[] = { "evil.pki.example" };
		p11s_fetch_policy pol;
		char *url = p11s_fuzz_str(in, len), why[256];

		memset(&pol, 0, sizeof(pol));
		if (url != NULL) {
			(void)p11s_fetch__url_allowed(url, &pol, why, sizeof(why));
			pol.allow = allow;
			pol.n_allow = 2;
			pol.deny = deny;
			pol.n_deny = 1;
			(void)p11s_fetch__url_allowed(url, &pol, why, sizeof(why));
		}
		free(url);
		break;
	}
	}
	return 0;
}

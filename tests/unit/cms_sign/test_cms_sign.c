/*
 * Unit tests of SignedData building (src/cms/sign.c) with software keys: attributes,
 * SMIMECapabilities, signingCertificateV2, PSS parameters, micalg, signingTime encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cms/cms_int.h"
#include "cms/verify_int.h"
#include <p11smime/error.h>
#include <p11smime/sign.h>

typedef struct keys {
	EVP_PKEY *rsa, *ec256, *ec384;
	X509 *rsa_cert, *ec256_cert, *ec384_cert;
} keys;

static X509 *self_signed(EVP_PKEY *k, const char *cn, long serial)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

static int setup(void **state)
{
	keys *k = calloc(1, sizeof(*k));

	k->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k->ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k->ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (k->rsa == NULL || k->ec256 == NULL || k->ec384 == NULL) {
		return -1;
	}
	k->rsa_cert = self_signed(k->rsa, "rsa", 1);
	k->ec256_cert = self_signed(k->ec256, "ec256", 2);
	k->ec384_cert = self_signed(k->ec384, "ec384", 3);
	*state = k;
	return 0;
}

static int teardown(void **state)
{
	keys *k = *state;

	EVP_PKEY_free(k->rsa);
	EVP_PKEY_free(k->ec256);
	EVP_PKEY_free(k->ec384);
	X509_free(k->rsa_cert);
	X509_free(k->ec256_cert);
	X509_free(k->ec384_cert);
	free(k);
	return 0;
}

static const char content[] = "Content-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n";

/* Sign `content` detached and parse the result back. */
static CMS_ContentInfo *sign(const p11s_cms_signer *s)
{
	BIO *in = BIO_new_mem_buf(content, (int)strlen(content));
	p11s_buf *der = NULL;
	const unsigned char *p;
	CMS_ContentInfo *cms;

	if (p11s_cms__sign_detached(s, in, &der) != 0) {
		fprintf(stderr, "sign: %s\n", p11s_error_last()->message);
		fail();
	}
	p = der->data;
	cms = d2i_CMS_ContentInfo(NULL, &p, (long)der->len);
	assert_non_null(cms);
	p11s_buf_free(der);
	BIO_free(in);
	return cms;
}

static CMS_SignerInfo *only_signer(CMS_ContentInfo *cms)
{
	STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);

	assert_int_equal(sk_CMS_SignerInfo_num(sis), 1);
	return sk_CMS_SignerInfo_value(sis, 0);
}

/* The signature verifies over `content` with the certificate (not its chain). */
static void assert_verifies(CMS_ContentInfo *cms, X509 *cert)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf(content, (int)strlen(content));

	sk_X509_push(certs, cert);
	assert_int_equal(CMS_verify(cms, certs, NULL, in, NULL,
	                     CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN),
	    1);
	sk_X509_free(certs);
	BIO_free(in);
}

static const ASN1_STRING *attr(CMS_SignerInfo *si, int nid, int type)
{
	return CMS_signed_get0_data_by_OBJ(si, OBJ_nid2obj(nid), -3, type);
}

static void test_cms_sign__attributes(void **state)
{
	keys *k = *state;
	p11s_cms_signer s = { NULL, k->ec256, k->ec256_cert, NULL, NULL, P11S_DIGEST_SHA256, 0, 0 };
	static const int want[] = { NID_aes_256_gcm, NID_aes_128_gcm, NID_aes_256_cbc,
		NID_aes_128_cbc, NID_ecdsa_with_SHA256, NID_ecdsa_with_SHA384, NID_ecdsa_with_SHA512,
		NID_rsassaPss, NID_sha256WithRSAEncryption, NID_sha384WithRSAEncryption,
		NID_sha512WithRSAEncryption };
	CMS_ContentInfo *cms = sign(&s);
	CMS_SignerInfo *si = only_signer(cms);
	const ASN1_STRING *caps, *sc2;
	STACK_OF(X509_ALGOR) *algs;
	const unsigned char *p;
	unsigned char *certder = NULL, hash[32];
	unsigned int hlen;
	int certlen;

	assert_verifies(cms, k->ec256_cert);
	assert_int_equal(CMS_is_detached(cms), 1); /* detached: eContent absent (RFC 8551 §3.5.3) */
	assert_non_null(attr(si, NID_pkcs9_contentType, V_ASN1_OBJECT));
	assert_non_null(attr(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING));
	assert_true(CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1) >= 0);
	assert_true(CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref, -1) < 0);

	/* SMIMECapabilities: exactly our list, in order; params only NULL for RSA v1.5. */
	caps = attr(si, NID_SMIMECapabilities, V_ASN1_SEQUENCE);
	assert_non_null(caps);
	p = ASN1_STRING_get0_data(caps);
	algs = d2i_X509_ALGORS(NULL, &p, ASN1_STRING_length(caps));
	assert_non_null(algs);
	assert_int_equal(sk_X509_ALGOR_num(algs), sizeof(want) / sizeof(want[0]));
	for (int i = 0; i < sk_X509_ALGOR_num(algs); i++) {
		const ASN1_OBJECT *oid;
		int ptype;

		X509_ALGOR_get0(&oid, &ptype, NULL, sk_X509_ALGOR_value(algs, i));
		assert_int_equal(OBJ_obj2nid(oid), want[i]);
		assert_int_equal(ptype, i >= 8 ? V_ASN1_NULL : V_ASN1_UNDEF);
	}
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);

	/* signingCertificateV2: SEQ { SEQ { SEQ { OCTET STRING sha256(cert), issuerSerial } } } */
	sc2 = attr(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE);
	assert_non_null(sc2);
	certlen = i2d_X509(k->ec256_cert, &certder);
	assert_true(EVP_Digest(certder, (size_t)certlen, hash, &hlen, EVP_sha256(), NULL));
	OPENSSL_free(certder);
	p = ASN1_STRING_get0_data(sc2);
	assert_int_equal(p[0], 0x30);
	p += 2;
	assert_int_equal(p[0], 0x30);
	p += 2;
	assert_int_equal(p[0], 0x30);
	p += 2;
	/* hashAlgorithm omitted: DEFAULT sha256 (RFC 5035 §4). */
	assert_int_equal(p[0], 0x04);
	assert_int_equal(p[1], 32);
	assert_memory_equal(p + 2, hash, 32);
	CMS_ContentInfo_free(cms);
}

static void test_cms_sign__pss_salt(void **state)
{
	keys *k = *state;
	static const struct {
		p11s_digest d;
		int nid;
		long salt;
	} cases[] = {
		{ P11S_DIGEST_SHA256, NID_sha256, 32 },
		{ P11S_DIGEST_SHA384, NID_sha384, 48 },
		{ P11S_DIGEST_SHA512, NID_sha512, 64 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p11s_cms_signer s = { NULL, k->rsa, k->rsa_cert, NULL, NULL, cases[i].d, 1, 0 };
		CMS_ContentInfo *cms = sign(&s);
		CMS_SignerInfo *si = only_signer(cms);
		X509_ALGOR *dig, *sig;
		const ASN1_OBJECT *oid;
		const void *pval;
		int ptype;
		RSA_PSS_PARAMS *pss;
		const unsigned char *p;
		const ASN1_STRING *seq;

		assert_verifies(cms, k->rsa_cert);
		CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
		X509_ALGOR_get0(&oid, NULL, NULL, dig);
		assert_int_equal(OBJ_obj2nid(oid), cases[i].nid);
		X509_ALGOR_get0(&oid, &ptype, &pval, sig);
		assert_int_equal(OBJ_obj2nid(oid), NID_rsassaPss);
		assert_int_equal(ptype, V_ASN1_SEQUENCE);
		seq = pval;
		p = ASN1_STRING_get0_data(seq);
		pss = d2i_RSA_PSS_PARAMS(NULL, &p, ASN1_STRING_length(seq));
		assert_non_null(pss);
		/* RFC 4055 §3.1 / 8551 §2.2: salt = digest length, hash = MGF1 hash = digest. */
		assert_int_equal(ASN1_INTEGER_get(pss->saltLength), cases[i].salt);
		X509_ALGOR_get0(&oid, NULL, NULL, pss->hashAlgorithm);
		assert_int_equal(OBJ_obj2nid(oid), cases[i].nid);
		X509_ALGOR_get0(&oid, NULL, NULL, pss->maskGenAlgorithm);
		assert_int_equal(OBJ_obj2nid(oid), NID_mgf1);
		RSA_PSS_PARAMS_free(pss);
		CMS_ContentInfo_free(cms);
	}
}

static void test_cms_sign__ecdsa_digests(void **state)
{
	keys *k = *state;
	p11s_cms_signer s = { NULL, k->ec384, k->ec384_cert, NULL, NULL, P11S_DIGEST_SHA384, 0, 0 };
	p11s_digest ds[] = { P11S_DIGEST_SHA256, P11S_DIGEST_SHA384, P11S_DIGEST_SHA512 };
	int sig_nids[] = { NID_ecdsa_with_SHA256, NID_ecdsa_with_SHA384, NID_ecdsa_with_SHA512 };

	for (int i = 0; i < 3; i++) {
		CMS_ContentInfo *cms;
		X509_ALGOR *sig;
		const ASN1_OBJECT *oid;

		s.digest = ds[i];
		cms = sign(&s);
		assert_verifies(cms, k->ec384_cert);
		CMS_SignerInfo_get0_algs(only_signer(cms), NULL, NULL, NULL, &sig);
		X509_ALGOR_get0(&oid, NULL, NULL, sig);
		assert_int_equal(OBJ_obj2nid(oid), sig_nids[i]);
		CMS_ContentInfo_free(cms);
	}
}

/* RFC 8419 with a software key (the token's path is integration.keylife). */
static void test_cms_sign__ed25519(void **state)
{
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	X509 *cert = X509_new();
	X509_NAME *n = X509_NAME_new();
	p11s_cms_signer s = { NULL, ed, NULL, NULL, NULL, P11S_DIGEST_SHA256, 0, 0 };
	unsigned char want[64];
	unsigned int wlen = 0;
	const ASN1_OBJECT *oid;
	const ASN1_STRING *md;
	int ptype;
	const void *pval;
	X509_ALGOR *dig, *sig;
	CMS_SignerInfo *si;
	CMS_ContentInfo *cms;
	ASN1_OCTET_STRING *sv;
	char why[200];
	BIO *in;
	p11s_buf *der = NULL;

	(void)state;
	assert_non_null(ed);
	assert_non_null(ed448);
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 9);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"ed", -1, -1, 0);
	X509_set_subject_name(cert, n);
	X509_set_issuer_name(cert, n);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, ed);
	assert_true(X509_sign(cert, ed, NULL) > 0);
	s.cert = cert;

	/* The default digest becomes SHA-512 (§3), parameters absent on both algorithms. */
	cms = sign(&s);
	si = only_signer(cms);
	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
	X509_ALGOR_get0(&oid, &ptype, &pval, dig);
	assert_int_equal(OBJ_obj2nid(oid), NID_sha512);
	assert_int_equal(ptype, V_ASN1_UNDEF);
	X509_ALGOR_get0(&oid, &ptype, &pval, sig);
	assert_int_equal(OBJ_obj2nid(oid), NID_ED25519);
	assert_int_equal(ptype, V_ASN1_UNDEF);
	md = attr(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING);
	assert_true(EVP_Digest(content, strlen(content), want, &wlen, EVP_sha512(), NULL));
	assert_int_equal(ASN1_STRING_length(md), 64);
	assert_memory_equal(ASN1_STRING_get0_data(md), want, 64);
	assert_non_null(attr(si, NID_pkcs9_signingTime, V_ASN1_UTCTIME));
	assert_true(p11s_cms__is_eddsa_sig(si));
	assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 1);
	/* A flipped signature bit, then a wrong digest algorithm, fail with a reason. */
	sv = CMS_SignerInfo_get0_signature(si);
	sv->data[3] ^= 0x01;
	assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "does not verify"));
	sv->data[3] ^= 0x01;
	X509_ALGOR_set0(dig, OBJ_nid2obj(NID_sha256), V_ASN1_UNDEF, NULL);
	assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 0);
	assert_non_null(strstr(why, "RFC 8419"));
	X509_ALGOR_set0(dig, OBJ_nid2obj(NID_sha512), V_ASN1_UNDEF, NULL);
	assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 1);
	/* Parameters on id-Ed25519 (§4: absent) fail. */
	X509_ALGOR_set0(sig, OBJ_nid2obj(NID_ED25519), V_ASN1_NULL, NULL);
	assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 0);
	X509_ALGOR_set0(sig, OBJ_nid2obj(NID_ED25519), V_ASN1_UNDEF, NULL);
	/* A changed signed attribute (another signingTime) fails. */
	{
		int loc = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
		ASN1_TIME *t = ASN1_TIME_set(NULL, 86400 * 365);

		X509_ATTRIBUTE_free(CMS_signed_delete_attr(si, loc));
		CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, t->type, t, -1);
		ASN1_TIME_free(t);
		assert_int_equal(p11s_cms__eddsa_verify(si, cert, NULL, why, sizeof(why)), 0);
	}
	CMS_ContentInfo_free(cms);

	/* Refusals: SHA-384, PSS, Ed448 signing (usage errors, nothing signed). */
	in = BIO_new_mem_buf(content, (int)strlen(content));
	s.digest = P11S_DIGEST_SHA384;
	assert_int_equal(p11s_cms__sign_detached(&s, in, &der), P11S_ERR_USAGE);
	assert_null(der);
	s.digest = P11S_DIGEST_SHA512;
	s.pss = 1;
	assert_int_equal(p11s_cms__sign_detached(&s, in, &der), P11S_ERR_USAGE);
	s.pss = 0;
	s.pkey = ed448;
	assert_int_equal(p11s_cms__sign_detached(&s, in, &der), P11S_ERR_USAGE);
	assert_null(der);
	BIO_free(in);
	X509_NAME_free(n);
	X509_free(cert);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ed448);
}

static void test_cms_sign__signing_time(void **state)
{
	keys *k = *state;
	/* RFC 8551 §2.5.1: UTCTime through 2049, GeneralizedTime from 2050. */
	p11s_cms_signer s = { NULL, k->ec256, k->ec256_cert, NULL, NULL, P11S_DIGEST_SHA256, 0,
		2524607999 /* 2049-12-31T23:59:59Z */ };
	CMS_ContentInfo *cms = sign(&s);

	assert_non_null(attr(only_signer(cms), NID_pkcs9_signingTime, V_ASN1_UTCTIME));
	CMS_ContentInfo_free(cms);
	s.signing_time = 2524608000; /* 2050-01-01T00:00:00Z */
	cms = sign(&s);
	assert_non_null(attr(only_signer(cms), NID_pkcs9_signingTime, V_ASN1_GENERALIZEDTIME));
	CMS_ContentInfo_free(cms);
}

static void test_cms_sign__enc_key_pref_and_chain(void **state)
{
	keys *k = *state;
	STACK_OF(X509) *chain = sk_X509_new_null(), *got;
	p11s_cms_signer s = { NULL, k->ec256, k->ec256_cert, chain, k->rsa_cert,
		P11S_DIGEST_SHA256, 0, 0 };
	CMS_ContentInfo *cms;
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;
	const unsigned char *p;

	/* Duplicates (the signer's own cert, twice the same CA) appear once. */
	sk_X509_push(chain, k->ec384_cert);
	sk_X509_push(chain, k->ec256_cert);
	sk_X509_push(chain, k->ec384_cert);
	cms = sign(&s);
	got = CMS_get1_certs(cms);
	assert_int_equal(sk_X509_num(got), 2);
	sk_X509_pop_free(got, X509_free);
	a = CMS_signed_get_attr(only_signer(cms),
	    CMS_signed_get_attr_by_NID(only_signer(cms), NID_id_smime_aa_encrypKeyPref, -1));
	assert_non_null(a);
	assert_int_equal(X509_ATTRIBUTE_count(a), 1);
	t = X509_ATTRIBUTE_get0_type(a, 0);
	/* [0] IMPLICIT IssuerAndSerialNumber (RFC 8551 §2.5.3) */
	p = ASN1_STRING_get0_data(t->value.asn1_string);
	assert_int_equal(p[0], 0xa0);
	CMS_ContentInfo_free(cms);

	/* Same certificate for encryption: no attribute. */
	s.encryption_cert = k->ec256_cert;
	cms = sign(&s);
	assert_true(CMS_signed_get_attr_by_NID(only_signer(cms), NID_id_smime_aa_encrypKeyPref,
	                -1) < 0);
	CMS_ContentInfo_free(cms);
	sk_X509_free(chain);
}

static void test_cms_sign__refusals(void **state)
{
	keys *k = *state;
	BIO *in = BIO_new_mem_buf(content, (int)strlen(content));
	p11s_buf *der = NULL;
	p11s_cms_signer wrong = { NULL, k->ec256, k->rsa_cert, NULL, NULL, P11S_DIGEST_SHA256, 0,
		0 };
	p11s_cms_signer pss_ec = { NULL, k->ec256, k->ec256_cert, NULL, NULL, P11S_DIGEST_SHA256, 1,
		0 };

	assert_int_equal(p11s_cms__sign_detached(&wrong, in, &der), P11S_ERR_USAGE);
	assert_int_equal(p11s_cms__sign_detached(&pss_ec, in, &der), P11S_ERR_USAGE);
	assert_null(der);
	BIO_free(in);
}

/* The whole message: micalg matches the digest; opaque output is signed-data. */
static void test_cms_sign__message_micalg(void **state)
{
	keys *k = *state;
	static const char msg[] = "From: a@example.org\nSubject: s\n\nhello\n";
	static const char *micalg[] = { "micalg=sha-256;", "micalg=sha-384;", "micalg=sha-512;" };

	for (int i = 0; i < 3; i++) {
		p11s_sign_opts o = P11S_SIGN_OPTS_INIT;
		FILE *in = tmpfile(), *out = tmpfile();
		char buf[4096];
		size_t n;

		o.digest = (p11s_digest)i;
		fwrite(msg, 1, sizeof(msg) - 1, in);
		assert_int_equal(p11s_sign_message_pkey(NULL, k->rsa, k->rsa_cert, &o, in, out), 0);
		rewind(out);
		n = fread(buf, 1, sizeof(buf) - 1, out);
		buf[n] = '\0';
		assert_non_null(strstr(buf, micalg[i]));
		assert_non_null(strstr(buf, "protocol=\"application/pkcs7-signature\""));
		assert_true(strncmp(buf, "From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n",
		                51) == 0);
		fclose(in);
		fclose(out);
	}
	{
		p11s_sign_opts o = P11S_SIGN_OPTS_INIT;
		FILE *in = tmpfile(), *out = tmpfile();
		char buf[8192];
		size_t n;

		o.opaque = 1;
		fwrite(msg, 1, sizeof(msg) - 1, in);
		assert_int_equal(p11s_sign_message_pkey(NULL, k->ec256, k->ec256_cert, &o, in, out), 0);
		rewind(out);
		n = fread(buf, 1, sizeof(buf) - 1, out);
		buf[n] = '\0';
		assert_non_null(strstr(buf, "Content-Type: application/pkcs7-mime; "
		                            "smime-type=signed-data; name=smime.p7m\r\n"));
		assert_non_null(strstr(buf, "filename=smime.p7m\r\n"));
		fclose(in);
		fclose(out);
	}
}

/*
 * sign --staple's encoding (staple.c): the response lands in crls as RevocationInfoChoice
 * other / id-ri-ocsp-response (RFC 5940 §2), the SignedData becomes version 5, what is
 * signed is untouched, and a second staple keeps the first; the reader finds both.
 */
static void test_cms_sign__staple_encoding(void **state)
{
	keys *k = *state;
	p11s_cms_signer s = { .pkey = k->rsa, .cert = k->rsa_cert, .digest = P11S_DIGEST_SHA256 };
	BIO *in = BIO_new_mem_buf(content, (int)strlen(content));
	/* Stand-ins for OCSPResponse DER (otherRevInfo is ANY: any DER element). */
	static const unsigned char r1[] = { 0x30, 0x03, 0x0a, 0x01, 0x06 };
	static const unsigned char r2[] = { 0x30, 0x03, 0x0a, 0x01, 0x05 };
	p11s_buf *der = NULL, *one = NULL, *two = NULL;
	p11s_x509_stapled st = { 0 };
	CMS_ContentInfo *cms;
	const unsigned char *p;
	long version = -1;

	assert_int_equal(p11s_cms__sign_detached(&s, in, &der), 0);
	assert_int_equal(p11s_cms__staple_add(der, r1, sizeof(r1), &one), 0);
	assert_int_equal(p11s_cms__staple_add(one, r2, sizeof(r2), &two), 0);
	p = two->data;
	assert_non_null(cms = d2i_CMS_ContentInfo(NULL, &p, (long)two->len));
	assert_ptr_equal(p, two->data + two->len);
	assert_verifies(cms, k->rsa_cert);
	assert_int_equal(p11s_cms__stapled_ocsp(cms, &st), 0);
	assert_int_equal(st.n, 2);
	/* In either order: crls is a SET OF, which OpenSSL re-encodes sorted (X.690 §11.6). */
	assert_int_equal(st.len[0], sizeof(r1));
	assert_int_equal(st.len[1], sizeof(r2));
	assert_true((memcmp(st.der[0], r1, sizeof(r1)) == 0 && memcmp(st.der[1], r2, sizeof(r2)) == 0) ||
	    (memcmp(st.der[0], r2, sizeof(r2)) == 0 && memcmp(st.der[1], r1, sizeof(r1)) == 0));
	/* ContentInfo, [0], SignedData, then version INTEGER 5 (RFC 5652 §5.1). */
	p = two->data;
	for (int i = 0; i < 3; i++) {
		long len;
		int tag, cls;

		assert_false(ASN1_get_object(&p, &len, &tag, &cls, (long)two->len) & 0x80);
		if (i == 0) {
			p += 11; /* the contentType OID */
		}
	}
	assert_int_equal(p[0], 0x02);
	assert_int_equal(p[1], 0x01);
	version = p[2];
	assert_int_equal(version, 5);
	/* Not a SignedData: refused, nothing produced. */
	{
		p11s_buf bad = { (unsigned char *)"\x30\x03\x02\x01\x01", 5 };
		p11s_buf *none = NULL;

		assert_int_equal(p11s_cms__staple_add(&bad, r1, sizeof(r1), &none), P11S_ERR_CRYPTO);
		assert_null(none);
	}
	p11s_x509__stapled_clear(&st);
	CMS_ContentInfo_free(cms);
	p11s_buf_free(der);
	p11s_buf_free(one);
	p11s_buf_free(two);
	BIO_free(in);
}

/* A version 1 p11s_sign_opts (before `staple`) is still accepted. */
static void test_cms_sign__opts_version1(void **state)
{
	keys *k = *state;
	static const char msg[] = "From: a@example.org\nSubject: s\n\nhello\n";
	struct {
		p11s_sign_opts o;
	} v1 = { P11S_SIGN_OPTS_INIT };
	FILE *in = tmpfile(), *out = tmpfile();

	v1.o.version = 1;
	v1.o.staple = (const struct p11s_revocation_opts *)1; /* past a v1 structure: not read */
	fwrite(msg, 1, sizeof(msg) - 1, in);
	assert_int_equal(p11s_sign_message_pkey(NULL, k->rsa, k->rsa_cert, &v1.o, in, out), 0);
	/* Version 2 ends before out_private: a value there is not read. */
	v1.o.version = 2;
	v1.o.staple = NULL;
	v1.o.out_private = 1;
	assert_int_equal(p11s_sign_message_pkey(NULL, k->rsa, k->rsa_cert, &v1.o, in, out), 0);
	v1.o.version = 4;
	assert_int_equal(p11s_sign_message_pkey(NULL, k->rsa, k->rsa_cert, &v1.o, in, out),
	    P11S_ERR_INVALID_ARG);
	fclose(in);
	fclose(out);
}

/* The whole of `f` as a NUL-terminated string (malloc'd). */
static char *slurp(FILE *f, size_t *len)
{
	long n;
	char *s;

	fflush(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = malloc((size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = '\0';
	*len = (size_t)n;
	return s;
}

/* What precedes the first delimiter (outer fields, head) and part 1, boundary blanked. */
static void split_signed(char *msg, char **head, char **part1)
{
	char *b = strstr(msg, "boundary=\""), *e, delim[96];

	assert_non_null(b);
	b += 10;
	e = strchr(b, '"');
	assert_non_null(e);
	snprintf(delim, sizeof(delim), "\r\n--%.*s\r\n", (int)(e - b), b);
	*part1 = strstr(msg, delim + 2) + strlen(delim) - 2;
	*(strstr(*part1, delim)) = '\0';
	memset(b, 'x', (size_t)(e - b));
	*(*part1 - (strlen(delim) - 2)) = '\0'; /* the head ends before the first delimiter */
	*head = msg;
}

/*
 * out_private (version 3): one pass writes the same message as two passes, for a 7-bit body
 * and for one whose 8-bit octet comes after 200 KiB were already written (taken back, then
 * re-encoded), and the file holds nothing of the first attempt.
 */
static void test_cms_sign__out_private(void **state)
{
	keys *k = *state;

	for (int eight = 0; eight < 2; eight++) {
		char *got[2], *head[2], *part1[2];
		size_t len[2];

		for (int priv = 0; priv < 2; priv++) {
			p11s_sign_opts o = P11S_SIGN_OPTS_INIT;
			FILE *in = tmpfile(), *out = tmpfile();

			fputs("From: a@example.org\nSubject: s\n\n", in);
			for (int i = 0; i < 4000; i++) {
				fputs("a line of 7-bit text, long enough to make it 200 KiB and more\n", in);
			}
			fputs(eight ? "caf\xc3\xa9\n" : "end\n", in);
			o.out_private = priv;
			assert_int_equal(p11s_sign_message_pkey(NULL, k->rsa, k->rsa_cert, &o, in, out), 0);
			got[priv] = slurp(out, &len[priv]);
			split_signed(got[priv], &head[priv], &part1[priv]);
			fclose(in);
			fclose(out);
		}
		assert_string_equal(head[0], head[1]);
		assert_string_equal(part1[0], part1[1]);
		assert_true(strlen(part1[1]) > 200000);
		assert_true(eight == (strstr(part1[1], "quoted-printable") != NULL));
		/* The signature part is all that follows; nothing of an abandoned first pass. */
		assert_int_equal(len[0], len[1]);
		free(got[0]);
		free(got[1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cms_sign__attributes),
		cmocka_unit_test(test_cms_sign__pss_salt),
		cmocka_unit_test(test_cms_sign__ecdsa_digests),
		cmocka_unit_test(test_cms_sign__signing_time),
		cmocka_unit_test(test_cms_sign__ed25519),
		cmocka_unit_test(test_cms_sign__enc_key_pref_and_chain),
		cmocka_unit_test(test_cms_sign__refusals),
		cmocka_unit_test(test_cms_sign__message_micalg),
		cmocka_unit_test(test_cms_sign__staple_encoding),
		cmocka_unit_test(test_cms_sign__opts_version1),
		cmocka_unit_test(test_cms_sign__out_private),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

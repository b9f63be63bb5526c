/*
 * Unit tests of encryption and decryption (src/cms/envelope.c, src/mime/enveloped.c) with
 * software keys: every cipher and key type round trip, recipient checks, the uniform failure
 * on tampering and wrong keys, header splitting. The token path is in
 * tests/integration/envelope.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/p11smime.h>

#include "cms/envelope_int.h"
#include "mime/enveloped.h"

static const char msg[] =
    "From: Bob <bob@example.org>\n"
    "To: alice@example.org\n"
    "Subject: a test\n"
    " folded\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain;\n"
    "\tcharset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Hello,\n"
    "line with CRLF\r\n"
    "last line without end";

/* A self-signed certificate for `pk`; `ku` NULL: no keyUsage; `days_from`/`days_to` validity. */
/* A certificate for `pk`, signed by `signer` (an X25519/X448 key cannot sign its own). */
static X509 *make_cert_by(EVP_PKEY *pk, EVP_PKEY *signer, const char *ku, const char *eku,
    long from, long to)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *e;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), rand() & 0x7fffffff);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"unit", -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, pk);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	if (ku != NULL) {
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, ku);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	if (eku != NULL) {
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, eku);
		assert_non_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	X509_NAME_free(n);
	return x;
}

static X509 *make_cert(EVP_PKEY *pk, const char *ku, const char *eku, long from, long to)
{
	return make_cert_by(pk, pk, ku, eku, from, to);
}

static EVP_PKEY *rsa_key, *ec_key, *rsa_key2, *x25519_key, *x25519_key2, *x448_key;
static X509 *rsa_cert, *ec_cert, *rsa_cert2, *x25519_cert, *x448_cert;

static int setup(void **state)
{
	rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa_key2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	x25519_key = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	x25519_key2 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	x448_key = EVP_PKEY_Q_keygen(NULL, NULL, "X448");
	if (!rsa_key || !rsa_key2 || !ec_key || !x25519_key || !x25519_key2 || !x448_key) {
		return -1;
	}
	x25519_cert = make_cert_by(x25519_key, rsa_key2, "critical,keyAgreement", NULL, -60, 86400);
	x448_cert = make_cert_by(x448_key, rsa_key2, "critical,keyAgreement", NULL, -60, 86400);
	rsa_cert = make_cert(rsa_key, "critical,keyEncipherment", "emailProtection", -60, 86400);
	rsa_cert2 = make_cert(rsa_key2, NULL, NULL, -60, 86400);
	ec_cert = make_cert(ec_key, "critical,keyAgreement", "emailProtection", -60, 86400);
	return 0;
}

static int teardown(void **state)
{
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(rsa_key2);
	EVP_PKEY_free(ec_key);
	X509_free(rsa_cert);
	X509_free(rsa_cert2);
	X509_free(ec_cert);
	EVP_PKEY_free(x25519_key);
	EVP_PKEY_free(x25519_key2);
	EVP_PKEY_free(x448_key);
	X509_free(x25519_cert);
	X509_free(x448_cert);
	return 0;
}

static FILE *file_with(const char *data, size_t len)
{
	FILE *f = tmpfile();

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	rewind(f);
	return f;
}

static char *slurp(FILE *f, size_t *len)
{
	long n;
	char *p;

	fflush(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	*len = (size_t)n;
	return p;
}

/* Encrypt `msg` to `cert` with `cipher`/`oaep`; returns the encrypted message file. */
static FILE *encrypt_to(X509 *cert, p11s_cipher cipher, int oaep)
{
	p11s_encrypt_opts o = P11S_ENCRYPT_OPTS_INIT;
	X509 *certs[1] = { cert };
	FILE *in = file_with(msg, sizeof(msg) - 1), *out = tmpfile();

	o.recipient_certs = certs;
	o.n_recipient_certs = 1;
	o.cipher = cipher;
	o.oaep = oaep;
	assert_int_equal(p11s_encrypt_message(in, out, &o), P11S_OK);
	fclose(in);
	rewind(out);
	return out;
}

/* Decrypt `enc` with `pk`/`cert`; returns the error code, the output in `*res`. */
static int decrypt_with(FILE *enc, EVP_PKEY *pk, X509 *cert, char **res, int *auth)
{
	p11s_mime_head h;
	CMS_ContentInfo *cms = NULL;
	FILE *plain = tmpfile(), *out = tmpfile();
	int rc, nid, matched = 0;
	size_t len;
	STACK_OF(CMS_RecipientInfo) *ris;

	*res = NULL;
	rewind(enc);
	rc = p11s_cms__read_enveloped(NULL, enc, &h, &cms, &nid);
	assert_int_equal(rc, P11S_OK);
	ris = CMS_get0_RecipientInfos(cms);
	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		matched |= p11s_cms__ri_matches(sk_CMS_RecipientInfo_value(ris, i), cert);
	}
	assert_true(matched);
	if (auth != NULL) {
		*auth = OBJ_obj2nid(CMS_get0_type(cms)) == NID_id_smime_ct_authEnvelopedData;
	}
	if ((rc = p11s_cms__decrypt(cms, pk, cert, NULL, plain)) == P11S_OK) {
		assert_int_equal(p11s_mime__write_decrypted(out, &h, plain), P11S_OK);
		*res = slurp(out, &len);
	} else {
		/* Nothing of the plaintext is left in the scratch file. */
		fseek(plain, 0, SEEK_END);
		assert_int_equal(ftell(plain), 0);
	}
	fclose(plain);
	fclose(out);
	CMS_ContentInfo_free(cms);
	p11s_mime__head_clear(&h);
	return rc;
}

static void test_envelope__round_trip(void **state)
{
	const p11s_cipher ciphers[] = { P11S_CIPHER_AES_256_GCM, P11S_CIPHER_AES_128_GCM,
		P11S_CIPHER_AES_128_CBC, P11S_CIPHER_AES_256_CBC };

	for (size_t c = 0; c < 4; c++) {
		for (int k = 0; k < 3; k++) {
			EVP_PKEY *pk = k == 2 ? ec_key : rsa_key;
			X509 *cert = k == 2 ? ec_cert : rsa_cert;
			FILE *enc = encrypt_to(cert, ciphers[c], k == 1);
			char *res = NULL;
			int auth = -1;

			assert_int_equal(decrypt_with(enc, pk, cert, &res, &auth), P11S_OK);
			/* Outer fields, MIME-Version, then the entity; the LF convention is kept. */
			assert_string_equal(res,
			    "From: Bob <bob@example.org>\nTo: alice@example.org\nSubject: a test\n folded\n"
			    "MIME-Version: 1.0\nContent-Type: text/plain;\n\tcharset=utf-8\n"
			    "Content-Transfer-Encoding: 8bit\n\nHello,\nline with CRLF\n"
			    "last line without end");
			assert_int_equal(auth, c < 2);
			free(res);
			fclose(enc);
		}
	}
}

static void test_envelope__output_format(void **state)
{
	FILE *enc = encrypt_to(ec_cert, P11S_CIPHER_AES_256_GCM, 0);
	size_t len;
	char *s = slurp(enc, &len);

	assert_non_null(strstr(s, "From: Bob <bob@example.org>\nTo: alice@example.org\n"
	                          "Subject: a test\n folded\nMIME-Version: 1.0\n"
	                          "Content-Type: application/pkcs7-mime; "
	                          "smime-type=authEnveloped-data; name=smime.p7m\n"));
	assert_null(strstr(s, "text/plain"));
	assert_non_null(strstr(s, "Content-Disposition: attachment; filename=smime.p7m\n\n"));
	free(s);
	fclose(enc);
	enc = encrypt_to(rsa_cert, P11S_CIPHER_AES_128_CBC, 0);
	s = slurp(enc, &len);
	assert_non_null(strstr(s, "smime-type=enveloped-data;"));
	free(s);
	fclose(enc);
}

static void test_envelope__ecdh_sha256_kdf(void **state)
{
	FILE *enc = encrypt_to(ec_cert, P11S_CIPHER_AES_128_GCM, 0);
	p11s_mime_head h;
	CMS_ContentInfo *cms = NULL;
	CMS_RecipientInfo *ri;
	X509_ALGOR *alg = NULL;
	int nid;

	assert_int_equal(p11s_cms__read_enveloped(NULL, enc, &h, &cms, &nid), P11S_OK);
	assert_int_equal(nid, NID_aes_128_gcm);
	ri = sk_CMS_RecipientInfo_value(CMS_get0_RecipientInfos(cms), 0);
	assert_int_equal(CMS_RecipientInfo_type(ri), CMS_RECIPINFO_AGREE);
	assert_true(CMS_RecipientInfo_kari_get0_alg(ri, &alg, NULL));
	/* RFC 8551 §2.3: the SHA-256 KDF, not OpenSSL's SHA-1 default. */
	assert_int_equal(OBJ_obj2nid(alg->algorithm), NID_dhSinglePass_stdDH_sha256kdf_scheme);
	CMS_ContentInfo_free(cms);
	p11s_mime__head_clear(&h);
	fclose(enc);
}

/* Encrypt `msg` to `certs` (X25519/X448 among them) with `cipher` and `kdf`. */
static FILE *encrypt_xdh(X509 **certs, size_t n, p11s_cipher cipher, p11s_xdh_kdf kdf)
{
	p11s_encrypt_opts o = P11S_ENCRYPT_OPTS_INIT;
	FILE *in = file_with(msg, sizeof(msg) - 1), *out = tmpfile();

	o.recipient_certs = certs;
	o.n_recipient_certs = n;
	o.cipher = cipher;
	o.xdh_kdf = kdf;
	assert_int_equal(p11s_encrypt_message(in, out, &o), P11S_OK);
	fclose(in);
	rewind(out);
	return out;
}

/*
 * RFC 8418 decryption (kari_xdh_open.c) with software X25519/X448 keys: every cipher, both
 * KDFs, a recipient among others. The token path is the same with a bridge key (test_bridge).
 */
static void test_envelope__xdh_round_trip(void **state)
{
	const p11s_cipher ciphers[] = { P11S_CIPHER_AES_256_GCM, P11S_CIPHER_AES_128_GCM,
		P11S_CIPHER_AES_128_CBC, P11S_CIPHER_AES_256_CBC };

	(void)state;
	for (size_t c = 0; c < 4; c++) {
		for (int k = 0; k < 4; k++) {
			X509 *certs[3] = { rsa_cert, k & 1 ? x448_cert : x25519_cert, ec_cert };
			EVP_PKEY *pk = k & 1 ? x448_key : x25519_key;
			FILE *enc = encrypt_xdh(certs, 3, ciphers[c],
			    k & 2 ? P11S_XDH_KDF_X963 : P11S_XDH_KDF_HKDF);
			char *res = NULL;
			int auth = -1;

			assert_int_equal(decrypt_with(enc, pk, certs[1], &res, &auth), P11S_OK);
			assert_non_null(strstr(res, "Hello,\nline with CRLF\nlast line without end"));
			assert_int_equal(auth, c < 2);
			free(res);
			/* The other recipients of the same message still open it. */
			assert_int_equal(decrypt_with(enc, rsa_key, rsa_cert, &res, NULL), P11S_OK);
			free(res);
			assert_int_equal(decrypt_with(enc, ec_key, ec_cert, &res, NULL), P11S_OK);
			free(res);
			fclose(enc);
		}
	}
}

/* Another X25519 key behind the certificate: the uniform failure, no plaintext. */
static void test_envelope__xdh_wrong_key(void **state)
{
	X509 *certs[1] = { x25519_cert };
	FILE *gcm = encrypt_xdh(certs, 1, P11S_CIPHER_AES_256_GCM, P11S_XDH_KDF_HKDF);
	FILE *cbc = encrypt_xdh(certs, 1, P11S_CIPHER_AES_128_CBC, P11S_XDH_KDF_X963);
	char *res = NULL;

	(void)state;
	assert_int_equal(decrypt_with(gcm, x25519_key2, x25519_cert, &res, NULL), P11S_ERR_DECRYPT);
	assert_string_equal(p11s_error_last()->message, "decryption failed");
	assert_null(res);
	assert_int_equal(decrypt_with(cbc, x25519_key2, x25519_cert, &res, NULL), P11S_ERR_DECRYPT);
	assert_string_equal(p11s_error_last()->message, "decryption failed");
	assert_null(res);
	fclose(gcm);
	fclose(cbc);
}

static void test_envelope__wrong_key_is_uniform(void **state)
{
	FILE *gcm = encrypt_to(rsa_cert, P11S_CIPHER_AES_256_GCM, 0);
	FILE *cbc = encrypt_to(rsa_cert, P11S_CIPHER_AES_256_CBC, 0);
	char *res;
	int rc;

	/* The certificate names our recipient, the key is another one: key decryption fails. */
	rc = decrypt_with(gcm, rsa_key2, rsa_cert, &res, NULL);
	assert_int_equal(rc, P11S_ERR_DECRYPT);
	assert_string_equal(p11s_error_last()->message, "decryption failed");
	assert_string_equal(p11s_error_last()->openssl, "");
	rc = decrypt_with(cbc, rsa_key2, rsa_cert, &res, NULL);
	/* CBC with a random key: padding almost always fails (1/256 it "succeeds": RFC 3218). */
	if (rc == P11S_OK) {
		free(res);
	} else {
		assert_int_equal(rc, P11S_ERR_DECRYPT);
		assert_string_equal(p11s_error_last()->message, "decryption failed");
	}
	fclose(gcm);
	fclose(cbc);
}

/* Flip one byte of the base64 body's DER at `from_end` bytes before its end-of-contents. */
static FILE *tamper(FILE *enc, long from_end)
{
	size_t len;
	char *s = slurp(enc, &len), *body = strstr(s, "\n\n") + 2;
	unsigned char *der = malloc(len);
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	int outl, fl, total;
	unsigned char *b64;
	FILE *out = tmpfile();

	EVP_DecodeInit(ctx);
	assert_true(EVP_DecodeUpdate(ctx, der, &outl, (unsigned char *)body, (int)strlen(body)) >= 0);
	assert_true(EVP_DecodeFinal(ctx, der + outl, &fl) >= 0);
	outl += fl;
	total = outl;
	while (outl > 0 && der[outl - 1] == 0) {
		outl--; /* end-of-contents octets */
	}
	der[outl - from_end] ^= 1;
	b64 = malloc((size_t)total * 2 + 8);
	EVP_EncodeBlock(b64, der, total);
	fwrite(s, 1, (size_t)(body - s), out);
	fputs((char *)b64, out);
	rewind(out);
	EVP_ENCODE_CTX_free(ctx);
	free(b64);
	free(der);
	free(s);
	return out;
}

static void test_envelope__tampered(void **state)
{
	FILE *gcm = encrypt_to(ec_cert, P11S_CIPHER_AES_256_GCM, 0);
	FILE *cbc = encrypt_to(rsa_cert, P11S_CIPHER_AES_128_CBC, 0);
	FILE *t;
	char *res;

	/* GCM: the tag (last primitive) and the content; nothing is released. */
	for (long at = 1; at <= 40; at += 39) {
		t = tamper(gcm, at);
		assert_int_equal(decrypt_with(t, ec_key, ec_cert, &res, NULL), P11S_ERR_DECRYPT);
		assert_string_equal(p11s_error_last()->message, "decryption failed");
		assert_null(res);
		fclose(t);
	}
	/* CBC: the last block breaks the padding. */
	t = tamper(cbc, 1);
	assert_int_equal(decrypt_with(t, rsa_key, rsa_cert, &res, NULL), P11S_ERR_DECRYPT);
	assert_string_equal(p11s_error_last()->message, "decryption failed");
	fclose(t);
	fclose(gcm);
	fclose(cbc);
}

static void test_envelope__recipient_checks(void **state)
{
	X509 *expired = make_cert(rsa_key, "keyEncipherment", NULL, -86400 * 3, -86400);
	X509 *future = make_cert(rsa_key, NULL, NULL, 86400, 86400 * 2);
	X509 *sign_only = make_cert(rsa_key, "critical,digitalSignature", NULL, -60, 86400);
	X509 *ec_ke = make_cert(ec_key, "critical,keyEncipherment", NULL, -60, 86400);
	X509 *server = make_cert(rsa_key, NULL, "serverAuth", -60, 86400);
	X509 *any = make_cert(rsa_key, NULL, "anyExtendedKeyUsage", -60, 86400);
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	X509 *weak = make_cert(small, NULL, NULL, -60, 86400);

	assert_int_equal(p11s_encrypt_check_recipient(rsa_cert, "a.pem"), P11S_OK);
	assert_int_equal(p11s_encrypt_check_recipient(ec_cert, "a.pem"), P11S_OK);
	assert_int_equal(p11s_encrypt_check_recipient(rsa_cert2, "a.pem"), P11S_OK);
	assert_int_equal(p11s_encrypt_check_recipient(any, "a.pem"), P11S_OK);
	assert_int_equal(p11s_encrypt_check_recipient(expired, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "x.pem has expired"));
	assert_int_equal(p11s_encrypt_check_recipient(future, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "not valid yet"));
	assert_int_equal(p11s_encrypt_check_recipient(sign_only, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "keyEncipherment"));
	assert_int_equal(p11s_encrypt_check_recipient(ec_ke, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "keyAgreement"));
	assert_int_equal(p11s_encrypt_check_recipient(server, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "emailProtection"));
	assert_int_equal(p11s_encrypt_check_recipient(weak, "x.pem"), P11S_ERR_USAGE);
	assert_non_null(strstr(p11s_error_last()->message, "1024 bits"));
	X509_free(expired);
	X509_free(future);
	X509_free(sign_only);
	X509_free(ec_ke);
	X509_free(server);
	X509_free(any);
	X509_free(weak);
	EVP_PKEY_free(small);
}

static void test_envelope__not_enveloped(void **state)
{
	static const char *bad[] = {
		"Content-Type: text/plain\n\nhello\n",
		"Content-Type: application/pkcs7-mime; smime-type=signed-data\n\nMIIB\n",
		("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n"
		 "Content-Transfer-Encoding: base64\n\n!!!notbase64\n"),
		"Content-Type: application/pkcs7-mime\nContent-Transfer-Encoding: base64\n\nMAMCAQA=\n",
		"no header line\n\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = file_with(bad[i], strlen(bad[i]));
		p11s_mime_head h;
		CMS_ContentInfo *cms = NULL;
		int nid;

		assert_int_equal(p11s_cms__read_enveloped(NULL, f, &h, &cms, &nid), P11S_ERR_MALFORMED);
		assert_null(cms);
		fclose(f);
	}
}

static void test_envelope__head_split(void **state)
{
	static const char m[] = "X-A: 1\r\nContent-Type: multipart/mixed;\r\n boundary=\"b\"\r\n"
	                        "MIME-Version: 1.0\r\nContent-ID: <x@y>\r\nSubject: s\r\n\r\nbody";
	FILE *f = file_with(m, sizeof(m) - 1);
	p11s_mime_head h;
	char *v;
	char type[64];

	assert_int_equal(p11s_mime__read_head(f, &h), P11S_OK);
	assert_true(h.crlf);
	assert_true(h.has_body);
	assert_true(h.has_mime_version);
	assert_string_equal(h.outer, "X-A: 1\r\nSubject: s\r\n");
	assert_string_equal(h.content,
	    "Content-Type: multipart/mixed;\r\n boundary=\"b\"\r\nContent-ID: <x@y>\r\n");
	p11s_mime__media_type(h.content_type, type, sizeof(type));
	assert_string_equal(type, "multipart/mixed");
	v = p11s_mime__param(h.content_type, "boundary");
	assert_string_equal(v, "b");
	free(v);
	assert_null(p11s_mime__param(h.content_type, "charset"));
	v = p11s_mime__param("application/pkcs7-mime; name=\"smime.p7m\"; smime-type=authEnveloped-data",
	    "SMIME-TYPE");
	assert_string_equal(v, "authEnveloped-data");
	free(v);
	p11s_mime__head_clear(&h);
	fclose(f);
}

/*
 * RFC 9788 §4.5 rendering (docs/envelope.md "Header protection"): the protected fields take
 * the outer ones' places, a trace field stays, a field that was not outside (Keywords)
 * follows, HP-Outer goes, the hp parameter leaves a folded Content-Type and the other
 * parameters stay; the report lists the protected fields but HP-Outer and the obscured
 * Subject as exposed by the sender, a changed To as not.
 */
static void test_envelope__render_protected(void **state)
{
	static const char outer[] = "Received: from relay\nFrom: A <a@x>\nSubject: [...]\n"
	    "To: Mallory <m@x>\nMIME-Version: 1.0\nContent-Type: application/pkcs7-mime;"
	    " smime-type=authEnveloped-data\n\n";
	static const char payload[] = "Content-Type: text/plain;\r\n charset=utf-8; hp=\"cipher\";"
	    " format=flowed\r\nContent-Transfer-Encoding: 7bit\r\nFrom: A <a@x>\r\n"
	    "Subject: Real one\r\nTo: B <b@x>\r\nKeywords: k\r\nHP-Outer: From: A <a@x>\r\n"
	    "HP-Outer: Subject: [...]\r\nHP-Outer: To: B <b@x>\r\n\r\nbody\r\n";
	FILE *f = file_with(outer, sizeof(outer) - 1), *plain = file_with(payload, sizeof(payload) - 1);
	FILE *out = tmpfile();
	p11s_header_protection *hp = NULL;
	p11s_mime_head h;
	size_t len;
	char *res;

	(void)state;
	assert_int_equal(p11s_mime__read_head(f, &h), P11S_OK);
	assert_int_equal(p11s_mime__write_decrypted_hp(out, &h, plain, &hp), P11S_OK);
	res = slurp(out, &len);
	assert_string_equal(res, "Received: from relay\nFrom: A <a@x>\nSubject: Real one\n"
	    "To: B <b@x>\nKeywords: k\nMIME-Version: 1.0\nContent-Type: text/plain;\n"
	    " charset=utf-8; format=flowed\nContent-Transfer-Encoding: 7bit\n\nbody\n");
	assert_non_null(hp);
	assert_string_equal(hp->hp, "cipher");
	assert_false(hp->signed_payload);
	assert_int_equal(hp->n_fields, 4);
	assert_string_equal(hp->fields[3].name, "Keywords");
	assert_int_equal(hp->n_differs, 2);
	assert_string_equal(hp->differs[0].name, "To");
	assert_string_equal(hp->differs[0].outer, "Mallory <m@x>");
	assert_false(hp->differs[0].exposed);
	assert_string_equal(hp->differs[1].name, "Subject");
	assert_string_equal(hp->differs[1].value, "Real one");
	assert_true(hp->differs[1].exposed);
	p11s_header_protection_free(hp);
	free(res);
	fclose(out);
	/*
	 * RFC 9788 Appendix E.1's payload (hp-legacy-display="1" on a text/plain part): the Legacy
	 * Display Element and the parameter go (§4.5.3.2), the two lines of text stay.
	 */
	static const char e1[] = "Date: Fri, 21 Jan 2022 20:40:48 -0500\nFrom: Alice <alice@example.net>\n"
	    "To: Bob <bob@example.net>\nSubject: Dinner plans\n"
	    "Message-ID: <text-plain-legacy-display@lhp.example>\nMIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=\"us-ascii\"; hp-legacy-display=\"1\";\n hp=\"cipher\"\n"
	    "HP-Outer: Date: Fri, 21 Jan 2022 20:40:48 -0500\n"
	    "HP-Outer: From: Alice <alice@example.net>\nHP-Outer: To: Bob <bob@example.net>\n"
	    "HP-Outer: Subject: [...]\n"
	    "HP-Outer: Message-ID: <text-plain-legacy-display@lhp.example>\n\n"
	    "Subject: Dinner plans\n\n"
	    "Let's meet at Rama's Roti Shop at 8pm and go to the park\nfrom there.\n";
	static const char e1_outer[] = "Date: Fri, 21 Jan 2022 20:40:48 -0500\n"
	    "From: Alice <alice@example.net>\nTo: Bob <bob@example.net>\nSubject: [...]\n"
	    "Message-ID: <text-plain-legacy-display@lhp.example>\nMIME-Version: 1.0\n"
	    "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\n";
	p11s_mime_head h1;
	FILE *f1 = file_with(e1_outer, sizeof(e1_outer) - 1);

	fclose(plain);
	plain = file_with(e1, sizeof(e1) - 1);
	out = tmpfile();
	assert_int_equal(p11s_mime__read_head(f1, &h1), P11S_OK);
	assert_int_equal(p11s_mime__write_decrypted_hp(out, &h1, plain, &hp), P11S_OK);
	res = slurp(out, &len);
	assert_string_equal(res, "Date: Fri, 21 Jan 2022 20:40:48 -0500\n"
	    "From: Alice <alice@example.net>\nTo: Bob <bob@example.net>\nSubject: Dinner plans\n"
	    "Message-ID: <text-plain-legacy-display@lhp.example>\nMIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=\"us-ascii\"\n\n"
	    "Let's meet at Rama's Roti Shop at 8pm and go to the park\nfrom there.\n");
	assert_non_null(hp);
	assert_int_equal(hp->n_differs, 1);
	assert_true(hp->differs[0].exposed);
	p11s_header_protection_free(hp);
	free(res);
	fclose(out);
	p11s_mime__head_clear(&h1);
	fclose(f1);
	/* A part without outer fields (what a mail client hands to mua decrypt): no outer section. */
	{
		p11s_mime_head none = { 0 };
		FILE *pl = file_with(payload, sizeof(payload) - 1), *o = tmpfile();

		assert_int_equal(p11s_mime__write_decrypted_hp(o, &none, pl, &hp), P11S_OK);
		res = slurp(o, &len);
		assert_non_null(strstr(res, "Subject: Real one\n")); /* h.crlf 0: LF */
		assert_non_null(hp);
		p11s_header_protection_free(hp);
		free(res);
		fclose(o);
		fclose(pl);
	}
	/* Without hp: the outer fields, then the entity as it is; no report. */
	static const char bare[] = "Content-Type: text/plain\r\nSubject: inner\r\n\r\nx\r\n";
	fclose(plain);
	plain = file_with(bare, sizeof(bare) - 1);
	out = tmpfile();
	assert_int_equal(p11s_mime__write_decrypted_hp(out, &h, plain, &hp), P11S_OK);
	assert_null(hp);
	res = slurp(out, &len);
	assert_string_equal(res, "Received: from relay\nFrom: A <a@x>\nSubject: [...]\n"
	    "To: Mallory <m@x>\nMIME-Version: 1.0\nContent-Type: text/plain\nSubject: inner\n\nx\n");
	free(res);
	fclose(out);
	fclose(plain);
	p11s_mime__head_clear(&h);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_envelope__round_trip),
		cmocka_unit_test(test_envelope__output_format),
		cmocka_unit_test(test_envelope__ecdh_sha256_kdf),
		cmocka_unit_test(test_envelope__wrong_key_is_uniform),
		cmocka_unit_test(test_envelope__tampered),
		cmocka_unit_test(test_envelope__recipient_checks),
		cmocka_unit_test(test_envelope__xdh_round_trip),
		cmocka_unit_test(test_envelope__xdh_wrong_key),
		cmocka_unit_test(test_envelope__not_enveloped),
		cmocka_unit_test(test_envelope__head_split),
		cmocka_unit_test(test_envelope__render_protected),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

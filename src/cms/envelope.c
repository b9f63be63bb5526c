/*
 * Encryption and token decryption of S/MIME messages: EnvelopedData (RFC 5652 §6) and
 * AuthEnvelopedData (RFC 5083, AES-GCM RFC 5084) with RSA key transport (PKCS#1 v1.5 or
 * RSAES-OAEP, RFC 8017/4055) and ECDH key agreement (RFC 5753), on OpenSSL 3.0's CMS.
 *
 * Encryption streams: the CMS is written with indefinite lengths through BIO_new_NDEF(), so
 * memory does not grow with the message. Decryption streams too (see "streaming reader"):
 * only the recipient infos and attributes are parsed in memory, the content is decrypted
 * chunk by chunk into a scratch file that is published only after the whole content
 * decrypted and, for GCM, the tag verified.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/envelope.h>
#include <p11smime/error.h>
#include <p11smime/log.h>

#include "cms/ber_stream.h"
#include "cms/envelope_int.h"
#include "cms/kari_xdh.h"
#include "core/error_int.h"
#include "mime/enveloped.h"

#ifndef P11S_MAX_RECIPIENTS /* build-time setting: -DP11S_MAX_RECIPIENTS=... */
#define P11S_MAX_RECIPIENTS 1024
#endif

/* ---- recipients ----------------------------------------------------------------------- */

int p11s_cms__load_cert(const char *path, X509 **out)
{
	BIO *b = NULL;
	X509 *x = NULL;
	int rc = P11S_OK;

	*out = NULL;
	if ((b = BIO_new_file(path, "rb")) == NULL) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_IO, "cannot open certificate %s: %s", path,
		    strerror(errno));
	}
	if ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		ERR_clear_error();
		if (BIO_reset(b) != 0 || (x = d2i_X509_bio(b, NULL)) == NULL) {
			rc = p11s_error__ossl(P11S_ERR_MALFORMED,
			    "%s: not a certificate (PEM or DER)", path);
			goto out;
		}
	}
	*out = x;
out:
	BIO_free(b);
	return rc;
}

/* RFC 3339 text of a certificate time. */
static void time_text(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm) ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		snprintf(buf, len, "(unreadable time)");
	}
}

int p11s_encrypt_check_recipient(X509 *cert, const char *name)
{
	EVP_PKEY *pk;
	char when[32], group[64];
	uint32_t ku, xku;
	int rsa;

	if (name == NULL) {
		name = "recipient certificate";
	}
	if (cert == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "%s: no certificate", name);
	}
	/* Valid now (RFC 5280 §4.1.2.5); no path validation: the sender chose this certificate. */
	if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
		time_text(X509_get0_notBefore(cert), when, sizeof(when));
		return p11s_error__set(P11S_ERR_USAGE,
		    "recipient certificate %s is not valid yet (notBefore %s)", name, when);
	}
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
		time_text(X509_get0_notAfter(cert), when, sizeof(when));
		return p11s_error__set(P11S_ERR_USAGE,
		    "recipient certificate %s has expired (notAfter %s)", name, when);
	}
	if ((pk = X509_get0_pubkey(cert)) == NULL) {
		return p11s_error__ossl(P11S_ERR_MALFORMED,
		    "recipient certificate %s: unreadable public key", name);
	}
	if (EVP_PKEY_is_a(pk, "RSA")) {
		rsa = 1;
		/* RFC 8551 §4: 2048 to 4096 bits MUST work; larger MAY. */
		if (EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_bits(pk) > 16384) {
			return p11s_error__set(P11S_ERR_USAGE,
			    "recipient certificate %s: RSA key of %d bits (2048 to 16384 supported)",
			    name, EVP_PKEY_get_bits(pk));
		}
	} else if (EVP_PKEY_is_a(pk, "EC")) {
		rsa = 0;
		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
		        sizeof(group), NULL)) {
			group[0] = '\0';
		}
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0 &&
		    strcmp(group, "secp521r1") != 0) {
			ERR_clear_error();
			return p11s_error__set(P11S_ERR_USAGE,
			    "recipient certificate %s: EC curve %s not supported (P-256, P-384, P-521)",
			    name, group[0] ? group : "(unnamed)");
		}
	} else if (p11s_cms__is_xdh(pk)) {
		rsa = 0; /* RFC 8410 §5: keyAgreement */
	} else {
		return p11s_error__set(P11S_ERR_USAGE,
		    "recipient certificate %s: key type %s cannot be encrypted to (RSA, EC "
		    "P-256/P-384/P-521, X25519 or X448 needed)", name, EVP_PKEY_get0_type_name(pk) ?
		    EVP_PKEY_get0_type_name(pk) : "unknown");
	}
	/* RFC 8550 §4.4.2: keyEncipherment for key transport, keyAgreement for ECDH. */
	ku = X509_get_key_usage(cert);
	if (ku != UINT32_MAX && !(ku & (rsa ? KU_KEY_ENCIPHERMENT : KU_KEY_AGREEMENT))) {
		return p11s_error__set(P11S_ERR_USAGE,
		    "recipient certificate %s: key usage does not allow %s", name,
		    rsa ? "keyEncipherment" : "keyAgreement");
	}
	/* RFC 8550 §4.4.4: if present, emailProtection or anyExtendedKeyUsage. */
	xku = X509_get_extended_key_usage(cert);
	if (xku != UINT32_MAX && !(xku & (XKU_SMIME | XKU_ANYEKU))) {
		return p11s_error__set(P11S_ERR_USAGE,
		    "recipient certificate %s: extended key usage lacks emailProtection", name);
	}
	return P11S_OK;
}

/* ---- encryption ----------------------------------------------------------------------- */

static const char *cipher_name(p11s_cipher c, int *auth)
{
	switch (c) {
	case P11S_CIPHER_AES_256_GCM:
		*auth = 1;
		return "AES-256-GCM";
	case P11S_CIPHER_AES_128_GCM:
		*auth = 1;
		return "AES-128-GCM";
	case P11S_CIPHER_AES_128_CBC:
		*auth = 0;
		return "AES-128-CBC";
	case P11S_CIPHER_AES_256_CBC:
		*auth = 0;
		return "AES-256-CBC";
	}
	return NULL;
}

/* Add one recipient with the project's parameters (DESIGN.md decision 7). */
static int add_recipient(CMS_ContentInfo *cms, X509 *cert, int oaep, p11s_cms_xdh *xdh,
    const char *name)
{
	EVP_PKEY *pk = X509_get0_pubkey(cert);
	int rsa = EVP_PKEY_is_a(pk, "RSA");
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;

	if (p11s_cms__is_xdh(pk)) {
		/* RFC 8418, which OpenSSL 3.0's CMS lacks: see kari_xdh.c. */
		return p11s_cms__xdh_add(xdh, cms, cert, name);
	}
	/*
	 * CMS_KEY_PARAM: the key transport context is made now, so that OAEP parameters can be
	 * set before the content key is encrypted (OpenSSL writes RSAES-OAEP-params from it).
	 */
	if ((ri = CMS_add1_recipient_cert(cms, cert, rsa && oaep ? CMS_KEY_PARAM : 0)) == NULL) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add recipient %s", name);
	}
	pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
	if (rsa && oaep) {
		/* RFC 8551 §2.3 / RFC 4055 §4.1: RSAES-OAEP with SHA-256 and MGF1-SHA-256. */
		if (pctx == NULL || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot set OAEP for recipient %s", name);
		}
	} else if (!rsa) {
		/*
		 * RFC 8551 §2.3, RFC 5753 §7.1.4: dhSinglePass-stdDH-sha256kdf-scheme. OpenSSL 3.0
		 * defaults to the SHA-1 KDF; the key wrap follows the content key size on its own
		 * (cms_wrap_init: AES-128 wrap for a 128-bit key, AES-256 wrap for 256).
		 */
		if (pctx == NULL || EVP_PKEY_CTX_set_ecdh_kdf_md(pctx, EVP_sha256()) <= 0) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot set the ECDH KDF for recipient %s",
			    name);
		}
	}
	return P11S_OK;
}

/* Stream the inner entity through the CMS encoder into `sink`. */
static int stream_content(CMS_ContentInfo *cms, const p11s_mime_head *h, FILE *in, BIO *sink)
{
	BIO *ndef, *b;
	int rc;

	/*
	 * BIO_new_NDEF() writes the CMS up to the encrypted content (indefinite lengths), returns
	 * the encrypting BIO, and on flush writes the rest: the tag of AuthEnvelopedData is set by
	 * CMS_dataFinal() before the trailing fields are encoded. This is what
	 * i2d_CMS_bio_stream() does, with our own canonicalisation instead of SMIME_crlf_copy().
	 */
	if ((ndef = BIO_new_NDEF(sink, (ASN1_VALUE *)cms, ASN1_ITEM_rptr(CMS_ContentInfo))) == NULL) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot start the CMS encoder");
	}
	if ((rc = p11s_mime__write_inner_head(ndef, h)) == P11S_OK &&
	    (rc = p11s_mime__canon_copy(in, ndef)) == P11S_OK && BIO_flush(ndef) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "encrypting the message failed");
	}
	/* Free the BIOs the encoder pushed in front of the sink, never the sink itself. */
	while (ndef != NULL && ndef != sink) {
		b = BIO_pop(ndef);
		BIO_free(ndef);
		ndef = b;
	}
	return rc;
}

int p11s_encrypt_message(FILE *in, FILE *out, const p11s_encrypt_opts *opts)
{
	STACK_OF(X509) *certs = NULL;
	p11s_mime_head h = { 0 };
	CMS_ContentInfo *cms = NULL;
	EVP_CIPHER *cipher = NULL;
	p11s_cms_xdh *xdh = NULL;
	p11s_xdh_kdf kdf = P11S_XDH_KDF_HKDF;
	const char *cname;
	BIO *sink = NULL, *filter = NULL;
	X509 *x = NULL;
	int rc = P11S_OK, auth = 0, crlf;

	/* Version 1 callers (no xdh_kdf) get the default KDF. */
	if (in == NULL || out == NULL || opts == NULL ||
	    opts->version < 1 || opts->version > P11S_ENCRYPT_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_encrypt_message: bad arguments");
	}
	if (opts->version >= 2) {
		kdf = opts->xdh_kdf;
	}
	if (kdf != P11S_XDH_KDF_HKDF && kdf != P11S_XDH_KDF_X963) {
		return p11s_error__set(P11S_ERR_USAGE, "unknown X25519/X448 KDF %d", (int)kdf);
	}
	if ((cname = cipher_name(opts->cipher, &auth)) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "unknown content cipher %d", (int)opts->cipher);
	}
	if (opts->n_recipient_files + opts->n_recipient_certs == 0) {
		return p11s_error__set(P11S_ERR_USAGE, "no recipient: give at least one certificate");
	}
	if ((certs = sk_X509_new_null()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	/* Every recipient is loaded and checked before anything is written. */
	for (size_t i = 0; i < opts->n_recipient_files; i++) {
		const char *f = opts->recipient_files[i];

		if ((rc = p11s_cms__load_cert(f, &x)) < 0 ||
		    (rc = p11s_encrypt_check_recipient(x, f)) < 0) {
			goto out;
		}
		if (!sk_X509_push(certs, x)) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		x = NULL;
	}
	for (size_t i = 0; i < opts->n_recipient_certs; i++) {
		char name[32];

		snprintf(name, sizeof(name), "#%zu", i + 1);
		if ((rc = p11s_encrypt_check_recipient(opts->recipient_certs[i], name)) < 0) {
			goto out;
		}
		if (!X509_up_ref(opts->recipient_certs[i])) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "X509_up_ref failed");
			goto out;
		}
		if (!sk_X509_push(certs, opts->recipient_certs[i])) {
			X509_free(opts->recipient_certs[i]);
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if ((rc = p11s_mime__read_head(in, &h)) < 0 ||
	    (opts->version >= 3 && opts->protect_headers && (rc = p11s_mime__hp_encrypt_head(&h)) < 0)) {
		goto out;
	}
	if ((cipher = EVP_CIPHER_fetch(NULL, cname, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cipher %s is not available", cname);
		goto out;
	}
	/* RFC 5083: AuthEnvelopedData for AEAD ciphers; RFC 5652 §6: EnvelopedData for CBC. */
	cms = auth ? CMS_AuthEnvelopedData_create_ex(cipher, NULL, NULL)
	           : CMS_EnvelopedData_create_ex(cipher, NULL, NULL);
	if (cms == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot create the CMS structure");
		goto out;
	}
	if ((xdh = p11s_cms__xdh_new(kdf)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_num(certs); i++) {
		const char *name = (size_t)i < opts->n_recipient_files ? opts->recipient_files[i] : "#";

		if ((rc = add_recipient(cms, sk_X509_value(certs, i), opts->oaep, xdh, name)) < 0) {
			goto out;
		}
	}
	crlf = opts->crlf > 0 ? 1 : opts->crlf < 0 ? 0 : h.crlf;
	if ((rc = p11s_mime__write_enveloped_head(out, &h, auth, crlf)) < 0) {
		goto out;
	}
	if ((sink = p11s_mime__b64_sink(out, crlf)) == NULL) {
		rc = p11s_error_last()->code;
		goto out;
	}
	/* With X25519/X448 recipients their placeholders are replaced on the way out. */
	if (p11s_cms__xdh_count(xdh) > 0 && (filter = p11s_cms__xdh_filter(xdh, sink)) == NULL) {
		rc = p11s_error_last()->code;
		goto out;
	}
	rc = stream_content(cms, &h, in, filter != NULL ? filter : sink);
	if (rc == P11S_OK && filter != NULL) {
		rc = p11s_cms__xdh_status(xdh); /* every placeholder was replaced */
	}
	if (rc < 0 || (rc = p11s_mime__b64_finish(sink)) < 0) {
		goto out;
	}
	if (fflush(out) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the message: %s", strerror(errno));
	}
out:
	BIO_free(filter);
	BIO_free(sink);
	CMS_ContentInfo_free(cms);
	p11s_cms__xdh_free(xdh);
	EVP_CIPHER_free(cipher);
	X509_free(x);
	sk_X509_pop_free(certs, X509_free);
	p11s_mime__head_clear(&h);
	return rc;
}

/* ---- reading -------------------------------------------------------------------------- */

/*
 * The contentEncryptionAlgorithm of an (Auth)EnvelopedData in DER: OpenSSL 3.0 has no
 * accessor for it. ContentInfo { OID, [0] { version, [0] originatorInfo OPTIONAL,
 * recipientInfos SET, EncryptedContentInfo { OID, AlgorithmIdentifier { OID, ... } } } }.
 */
static int content_cipher_nid(const unsigned char *der, long len)
{
	const unsigned char *p = der, *end, *q;
	long l;
	int tag, cls, r, step;
	ASN1_OBJECT *oid = NULL;
	int nid = NID_undef;

	/* An empty body leaves the memory BIO without a buffer: NULL + 0 is undefined (C11 6.5.6). */
	if (der == NULL || len <= 0) {
		return NID_undef;
	}
	end = der + len;

	/* 1 = descend into, 0 = skip; [0] originatorInfo is skipped when present. */
	static const struct { int tag; int descend; } path[] = {
		{ V_ASN1_SEQUENCE, 1 }, { V_ASN1_OBJECT, 0 }, { 0, 1 }, { V_ASN1_SEQUENCE, 1 },
		{ V_ASN1_INTEGER, 0 }, { V_ASN1_SET, 0 }, { V_ASN1_SEQUENCE, 1 },
		{ V_ASN1_OBJECT, 0 }, { V_ASN1_SEQUENCE, 1 },
	};

	for (step = 0; step < (int)(sizeof(path) / sizeof(path[0])); step++) {
		q = p;
		r = ASN1_get_object(&q, &l, &tag, &cls, end - p);
		if (r & 0x80) {
			return NID_undef;
		}
		if (step == 5 && cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0) {
			/* originatorInfo [0] present: skip it, then expect the SET again. */
			if (r == 0x21) {
				return NID_undef;
			}
			p = q + l;
			step--;
			continue;
		}
		if (tag != path[step].tag) {
			return NID_undef;
		}
		if (path[step].descend) {
			p = q;
		} else {
			if (r == 0x21) {
				return NID_undef; /* indefinite length of a skipped element */
			}
			p = q + l;
		}
	}
	if (d2i_ASN1_OBJECT(&oid, &p, end - p) != NULL) {
		nid = OBJ_obj2nid(oid);
	}
	ASN1_OBJECT_free(oid);
	return nid;
}

int p11s_cms__read_enveloped(OSSL_LIB_CTX *libctx, FILE *in, p11s_mime_head *h,
    CMS_ContentInfo **out, int *cipher_nid)
{
	CMS_ContentInfo *cms = NULL;
	BIO *der = NULL;
	const unsigned char *p;
	long len;
	int rc, type;

	*out = NULL;
	*cipher_nid = NID_undef;
	if ((rc = p11s_mime__read_head(in, h)) < 0 || (rc = p11s_mime__check_enveloped(h)) < 0) {
		goto out;
	}
	if ((der = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = p11s_mime__decode_body(in, h, der)) < 0) {
		goto out;
	}
	len = BIO_get_mem_data(der, (char **)&p);
	*cipher_nid = content_cipher_nid(p, len);
	/* In the library context of the token keys, so that CMS's key contexts reach the bridge. */
	if ((cms = CMS_ContentInfo_new_ex(libctx, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/*
	 * d2i straight from the decoded buffer (d2i_CMS_bio would copy it once more); it keeps
	 * the library context of `cms` and resolves it into the parsed structure.
	 */
	if (d2i_CMS_ContentInfo(&cms, &p, len) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the message is not a valid CMS structure");
		goto out;
	}
	type = OBJ_obj2nid(CMS_get0_type(cms));
	if (type != NID_pkcs7_enveloped && type != NID_id_smime_ct_authEnvelopedData) {
		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "not an encrypted message: CMS content type %s", OBJ_nid2sn(type));
		goto out;
	}
	*out = cms;
	cms = NULL;
out:
	CMS_ContentInfo_free(cms);
	BIO_free(der);
	if (rc < 0) {
		p11s_mime__head_clear(h);
	}
	return rc;
}

int p11s_cms__ri_matches(CMS_RecipientInfo *ri, X509 *cert)
{
	STACK_OF(CMS_RecipientEncryptedKey) *reks;

	switch (CMS_RecipientInfo_type(ri)) {
	case CMS_RECIPINFO_TRANS:
		/* RFC 5652 §6.2.1: issuerAndSerialNumber or subjectKeyIdentifier. */
		return CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0;
	case CMS_RECIPINFO_AGREE:
		/* §6.2.2: each RecipientEncryptedKey names a recipient. */
		reks = CMS_RecipientInfo_kari_get0_reks(ri);
		for (int i = 0; i < sk_CMS_RecipientEncryptedKey_num(reks); i++) {
			if (CMS_RecipientEncryptedKey_cert_cmp(sk_CMS_RecipientEncryptedKey_value(reks, i),
			        cert) == 0) {
				return 1;
			}
		}
		return 0;
	default:
		return 0;
	}
}

/*
 * Token failures that say nothing about the message's encrypted data: they are reported as
 * they are (exit 3). Anything else during decryption is the uniform "decryption failed"
 * (STANDARDS.md §12: a token's CKR_ENCRYPTED_DATA_INVALID, or a vague CKR_FUNCTION_FAILED
 * some tokens give for bad padding, must not be distinguishable).
 */
static int data_independent(int code)
{
	switch (code) {
	case P11S_ERR_MECHANISM:
	case P11S_ERR_UNSUPPORTED:
	case P11S_ERR_PIN_INCORRECT:
	case P11S_ERR_PIN_LOCKED:
	case P11S_ERR_PIN_SOURCE:
	case P11S_ERR_LOGIN:
	case P11S_ERR_MODULE:
	case P11S_ERR_TOKEN_ABSENT:
	case P11S_ERR_DEVICE_REMOVED:
	case P11S_ERR_NOT_FOUND:
	case P11S_ERR_NOMEM:
		return 1;
	default:
		return 0;
	}
}

/*
 * What CMS_decrypt() does after the key is set, without its buffering: OpenSSL 3.0 collects
 * the whole plaintext of an AuthEnvelopedData in a memory BIO before releasing it (measured:
 * 178 MiB peak for a 100 MiB message). Our `out` is a private scratch file that is published
 * only on success, so the plaintext may go there chunk by chunk: CMS_dataInit() gives the
 * cipher BIO (key from the RecipientInfo, GCM tag already set with EVP_CTRL_AEAD_SET_TAG),
 * each BIO_read() is one EVP_CipherUpdate(), and at the end of the content the cipher BIO
 * runs EVP_CipherFinal_ex(), whose result (tag or CBC padding) BIO_get_cipher_status() gives.
 */
static int copy_decrypted(CMS_ContentInfo *cms, BIO *dcont, BIO *out)
{
	char buf[16384];
	BIO *cont, *b;
	int n, ok = 1;

	if ((cont = CMS_dataInit(cms, dcont)) == NULL) {
		return 0;
	}
	while ((n = BIO_read(cont, buf, sizeof(buf))) > 0) {
		if (BIO_write(out, buf, n) != n) {
			ok = 0;
			break;
		}
	}
	if (ok && (n < 0 || BIO_method_type(cont) != BIO_TYPE_CIPHER ||
	              !BIO_get_cipher_status(cont))) {
		ok = 0;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	/* Free the BIOs CMS pushed in front of `dcont` (all of them when it is NULL). */
	while (cont != NULL && cont != dcont) {
		b = BIO_pop(cont);
		BIO_free(cont);
		cont = b;
	}
	return ok;
}

/* `ciphertext`: the detached encrypted content (streaming reader), or NULL when it is in `cms`. */
static int decrypt_common(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert,
    OSSL_LIB_CTX *libctx, FILE *ciphertext, FILE *plain)
{
	const p11s_error *e;
	CMS_ContentInfo *keyed = NULL;
	BIO *pb, *cb = NULL;
	int ok, code;

	if ((pb = BIO_new_fp(plain, BIO_NOCLOSE)) == NULL ||
	    (ciphertext != NULL && (cb = BIO_new_fp(ciphertext, BIO_NOCLOSE)) == NULL)) {
		BIO_free(pb);
		return p11s_error__ossl(P11S_ERR_NOMEM, "out of memory");
	}
	p11s_error_clear();
	ERR_clear_error();
	/*
	 * Always with the certificate (DESIGN.md): it selects our RecipientInfo, and for key
	 * transport OpenSSL then hides a failed key decryption behind a random content key (the
	 * MMA countermeasure of RFC 3218), which the GCM tag or CBC padding then rejects.
	 * CMS_DEBUG_DECRYPT is never set.
	 */
	if (p11s_cms__is_xdh(pkey)) {
		/* RFC 8418, which OpenSSL 3.0's CMS lacks: a copy of `cms` with the key set. */
		ok = p11s_cms__xdh_open(cms, pkey, cert, libctx, &keyed) == P11S_OK;
	} else {
		ok = CMS_decrypt_set1_pkey_and_peer(cms, pkey, cert, NULL) == 1;
	}
	/*
	 * CMS_decrypt() copies plaintext to `pb` as it decrypts and fails at the end if the GCM
	 * tag (BIO_get_cipher_status) or the CBC padding is wrong: `plain` is only a scratch file.
	 */
	if (ok) {
		/*
		 * With `cb` the content is detached (RFC 5652 §5.2's absent encryptedContent): the
		 * cipher BIO reads it from the file in small chunks (EVP_CipherUpdate per chunk), so
		 * memory does not grow with the message.
		 */
		ok = copy_decrypted(keyed != NULL ? keyed : cms, cb, pb);
	}
	CMS_ContentInfo_free(keyed);
	if (BIO_flush(pb) <= 0 || fflush(plain) != 0) {
		ok = 0;
	}
	BIO_free(pb);
	BIO_free(cb);
	e = p11s_error_last();
	code = e->code;
	if (code != P11S_OK && data_independent(code)) {
		/* The token's own record (mechanism and parameters named), kept as it is. */
		ERR_clear_error();
		ok = 0;
	} else if (!ok || code != P11S_OK) {
		/*
		 * A token error recorded during a "successful" CMS_decrypt means OpenSSL went on
		 * with a random key: fail anyway, never release that output.
		 */
		ERR_clear_error();
		code = p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
		ok = 0;
	}
	if (!ok) {
		/* Do not leave partial plaintext lying around in the scratch file. */
		if (fflush(plain) != 0 || ftruncate(fileno(plain), 0) != 0) {
			(void)0;
		}
		return code;
	}
	return P11S_OK;
}

int p11s_cms__decrypt(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert, OSSL_LIB_CTX *libctx,
    FILE *plain)
{
	return decrypt_common(cms, pkey, cert, libctx, NULL, plain);
}

int p11s_cms__decrypt_stream(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert,
    OSSL_LIB_CTX *libctx, FILE *ciphertext, FILE *plain)
{
	return decrypt_common(cms, pkey, cert, libctx, ciphertext, plain);
}

/* The RFC 2253 subject of `cert` into `buf` (cut to fit; "" when it cannot be printed). */
static void subject_text(X509 *cert, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	buf[0] = '\0';
	if (b == NULL) {
		return;
	}
	if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_get_mem_data(b, &p);
		snprintf(buf, len, "%.*s", (int)n, p);
	}
	BIO_free(b);
}

void p11s_cms__describe(CMS_ContentInfo *cms, int cipher_nid, CMS_RecipientInfo *ri,
    const p11s_key *use, p11s_decrypt_info *info)
{
	X509_ALGOR *alg = NULL;
	int type = OBJ_obj2nid(CMS_get0_type(cms));

	info->authenticated = type == NID_id_smime_ct_authEnvelopedData;
	snprintf(info->content_type, sizeof(info->content_type), "%s",
	    info->authenticated ? "authEnveloped-data" : "enveloped-data");
	snprintf(info->cipher, sizeof(info->cipher), "%s",
	    cipher_nid != NID_undef ? OBJ_nid2ln(cipher_nid) : "unknown");
	info->n_recipients = sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms));
	if (ri != NULL && CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS) {
		(void)CMS_RecipientInfo_ktri_get0_algs(ri, NULL, NULL, &alg);
	} else if (ri != NULL && CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE) {
		(void)CMS_RecipientInfo_kari_get0_alg(ri, &alg, NULL);
	}
	/* The short name, or the dotted OID for one OpenSSL has no name for (RFC 8418's HKDF). */
	info->key_management[0] = '\0';
	if (alg != NULL && OBJ_obj2nid(alg->algorithm) != NID_undef) {
		snprintf(info->key_management, sizeof(info->key_management), "%s",
		    OBJ_nid2sn(OBJ_obj2nid(alg->algorithm)));
	} else if (alg != NULL && OBJ_obj2txt(info->key_management,
	                              (int)sizeof(info->key_management), alg->algorithm, 1) <= 0) {
		info->key_management[0] = '\0';
	}
	snprintf(info->key_uri, sizeof(info->key_uri), "%s", p11s_key_uri(use));
	subject_text(p11s_key_cert(use), info->recipient, sizeof(info->recipient));
}

/* ---- streaming reader ------------------------------------------------------------------ */

/*
 * Streaming decryption (DESIGN.md decision 4). OpenSSL 3.0's d2i collects the whole
 * encrypted content into one buffer; instead the decoded body goes to an unlinked scratch file
 * and is read once as BER (X.690 §8.1: definite and indefinite lengths; the encryptedContent
 * [0] IMPLICIT OCTET STRING may be primitive or constructed, segments nested at any depth):
 *
 *   - every field except encryptedContent (version, originatorInfo, recipientInfos,
 *     contentType, contentEncryptionAlgorithm, unprotectedAttrs / authAttrs, mac,
 *     unauthAttrs) is copied verbatim into a small "skeleton" ContentInfo, which is the same
 *     structure with the OPTIONAL encryptedContent absent (RFC 5652 §6.1, RFC 5083 §2.1);
 *   - the content octets are copied to a second scratch file, the ciphertext.
 *
 * The skeleton is parsed by OpenSSL (d2i of a few KiB) and decrypted as a CMS with detached
 * content: CMS_decrypt() unwraps the content key through the bridge key exactly as before
 * (same RecipientInfo selection, same MMA countermeasure), sets the GCM tag from `mac`, and
 * decrypts the ciphertext read chunk by chunk from the file into the plaintext scratch file;
 * the tag (or CBC padding) is checked at the end, before anything is published.
 * The BER walker is shared with the streaming verification of opaque signed-data
 * (ber_stream.c).
 */

/* Limit on everything but the content: recipient infos, attributes, algorithm parameters. */
#define SKELETON_MAX (4u << 20)

/* DER of the two content type OIDs (RFC 5652 §6.1: id-envelopedData; RFC 5083 §1.1). */
static const unsigned char oid_enveloped[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
	0x01, 0x07, 0x03 };
static const unsigned char oid_auth_enveloped[] = { 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7,
	0x0d, 0x01, 0x09, 0x10, 0x01, 0x17 };

/* Walk the decoded body in `der`, filling the skeleton `sk` and the ciphertext file `ct`. */
static int split_enveloped(FILE *der, BIO *sk, FILE *ct, int *cipher_nid)
{
	p11s_cms_ber r = { der, 0, NULL, SKELETON_MAX,
		"recipient information or attributes too large" };
	p11s_cms_ber_hdr ci, ex, ed, h, eci;
	BIO *oid = NULL, *alg = NULL;
	unsigned char *p;
	const unsigned char *cp;
	long n;
	int rc;
	static const unsigned char open_ci[] = { 0x30, 0x80 }, open_ex[] = { 0xa0, 0x80 },
	                           open_seq[] = { 0x30, 0x80 }, eoc[] = { 0, 0 };

	if ((oid = BIO_new(BIO_s_mem())) == NULL || (alg = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY } (RFC 5652 §3) */
	if ((rc = p11s_cms__ber_content_type(&r, &ci, oid)) < 0) {
		goto out;
	}
	n = BIO_get_mem_data(oid, (char **)&p);
	if (!((size_t)n == sizeof(oid_enveloped) && memcmp(p, oid_enveloped, (size_t)n) == 0) &&
	    !((size_t)n == sizeof(oid_auth_enveloped) &&
	        memcmp(p, oid_auth_enveloped, (size_t)n) == 0)) {
		ASN1_OBJECT *o = NULL;
		int nid;

		cp = p;
		nid = d2i_ASN1_OBJECT(&o, &cp, n) != NULL ? OBJ_obj2nid(o) : NID_undef;
		ASN1_OBJECT_free(o);
		ERR_clear_error();
		rc = p11s_error__set(P11S_ERR_MALFORMED,
		    "not an encrypted message: CMS content type %s",
		    nid != NID_undef ? OBJ_nid2sn(nid) : "(unknown)");
		goto out;
	}
	/* The skeleton uses indefinite lengths: no length has to be known in advance. */
	if (BIO_write(sk, open_ci, 2) != 2 || BIO_write(sk, p, (int)n) != (int)n ||
	    BIO_write(sk, open_ex, 2) != 2 || BIO_write(sk, open_seq, 2) != 2) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = p11s_cms__ber_expect(&r, &ci, 0xa0, &ex, "no [0] content")) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &ex, 0x30, &ed, "no EnvelopedData")) < 0) {
		goto out;
	}
	/* version, [0] originatorInfo OPTIONAL, recipientInfos SET (RFC 5652 §6.1) */
	if ((rc = p11s_cms__ber_expect(&r, &ed, V_ASN1_INTEGER, &h, "no version")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0) {
		goto out;
	}
	if ((rc = p11s_cms__ber_next(&r, &ed, &h)) < 0) {
		goto out;
	}
	if (rc == 1 && h.id == 0xa0) {
		if ((rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 ||
		    (rc = p11s_cms__ber_next(&r, &ed, &h)) < 0) {
			goto out;
		}
	}
	if (rc == 0 || h.id != 0x31) {
		rc = p11s_cms__ber_bad("no recipientInfos");
		goto out;
	}
	if ((rc = p11s_cms__ber_copy(&r, &h, sk)) < 0) {
		goto out;
	}
	/* EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
	 *   encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL } */
	if ((rc = p11s_cms__ber_expect(&r, &ed, 0x30, &eci, "no EncryptedContentInfo")) < 0 ||
	    BIO_write(sk, open_seq, 2) != 2 ||
	    (rc = p11s_cms__ber_expect(&r, &eci, V_ASN1_OBJECT, &h,
	         "no encrypted content type")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &eci, 0x30, &h,
	         "no content encryption algorithm")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, alg)) < 0) {
		if (rc == P11S_OK) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		goto out;
	}
	n = BIO_get_mem_data(alg, (char **)&p);
	if (BIO_write(sk, p, (int)n) != (int)n) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		X509_ALGOR *a = NULL;

		cp = p;
		if (d2i_X509_ALGOR(&a, &cp, n) != NULL) {
			*cipher_nid = OBJ_obj2nid(a->algorithm);
		}
		X509_ALGOR_free(a);
		ERR_clear_error();
	}
	if ((rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
		goto out;
	}
	if (rc == 1) {
		if ((h.id & ~0x20) != 0x80) {
			rc = p11s_cms__ber_bad("unexpected field in EncryptedContentInfo");
			goto out;
		}
		if ((rc = p11s_cms__ber_octets(&r, &h, ct,
		         "encrypted content segment is not an OCTET STRING", 0)) < 0 ||
		    (rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
			goto out;
		}
		if (rc == 1) {
			rc = p11s_cms__ber_bad("unexpected field in EncryptedContentInfo");
			goto out;
		}
	}
	if (BIO_write(sk, eoc, 2) != 2) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* The rest as it is: unprotectedAttrs; or authAttrs, mac, unauthAttrs (RFC 5083 §2.1). */
	if ((rc = p11s_cms__ber_copy_tail(&r, &ed, &ex, &ci, sk)) < 0) {
		goto out;
	}
	if (BIO_write(sk, eoc, 2) != 2 || BIO_write(sk, eoc, 2) != 2 ||
	    BIO_write(sk, eoc, 2) != 2) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (fflush(ct) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		goto out;
	}
	rc = P11S_OK;
out:
	BIO_free(oid);
	BIO_free(alg);
	return rc;
}

int p11s_cms__read_enveloped_stream(OSSL_LIB_CTX *libctx, FILE *in, p11s_mime_head *h,
    CMS_ContentInfo **out, FILE **ciphertext, int *cipher_nid)
{
	CMS_ContentInfo *cms = NULL;
	FILE *der = NULL, *ct = NULL;
	BIO *derb = NULL, *sk = NULL;
	const unsigned char *p;
	long len;
	int rc;

	*out = NULL;
	*ciphertext = NULL;
	*cipher_nid = NID_undef;
	if ((rc = p11s_mime__read_head(in, h)) < 0 || (rc = p11s_mime__check_enveloped(h)) < 0) {
		goto out;
	}
	/* Unlinked scratch files (tmpfile(3)): the DER and the ciphertext never sit in memory. */
	if ((der = tmpfile()) == NULL || (ct = tmpfile()) == NULL) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
		goto out;
	}
	if ((derb = BIO_new_fp(der, BIO_NOCLOSE)) == NULL || (sk = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = p11s_mime__decode_body(in, h, derb)) < 0) {
		goto out;
	}
	if (BIO_flush(derb) <= 0 || fflush(der) != 0 || fseek(der, 0, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		goto out;
	}
	if ((rc = split_enveloped(der, sk, ct, cipher_nid)) < 0) {
		goto out;
	}
	len = BIO_get_mem_data(sk, (char **)&p);
	/* In the library context of the token keys, so that CMS's key contexts reach the bridge. */
	if ((cms = CMS_ContentInfo_new_ex(libctx, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (d2i_CMS_ContentInfo(&cms, &p, len) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the message is not a valid CMS structure");
		goto out;
	}
	rewind(ct);
	*out = cms;
	*ciphertext = ct;
	cms = NULL;
	ct = NULL;
out:
	CMS_ContentInfo_free(cms);
	BIO_free(sk);
	BIO_free(derb);
	if (der != NULL) {
		fclose(der);
	}
	if (ct != NULL) {
		fclose(ct);
	}
	if (rc < 0) {
		p11s_mime__head_clear(h);
	}
	return rc;
}

/* ---- decryption with a token key -------------------------------------------------------- */

int p11s_cms__check_authenticated(CMS_ContentInfo *cms, int cipher_nid,
    const p11s_decrypt_opts *opts)
{
	if (opts != NULL && opts->version >= 2 && opts->require_authenticated &&
	    OBJ_obj2nid(CMS_get0_type(cms)) != NID_id_smime_ct_authEnvelopedData) {
		return p11s_error__set(P11S_ERR_VERIFY, "unauthenticated-encryption: the message is "
		    "enveloped-data (%s) without integrity protection, refused by "
		    "require-authenticated (only authEnveloped-data is accepted)",
		    cipher_nid != NID_undef ? OBJ_nid2sn(cipher_nid) : "CBC");
	}
	return P11S_OK;
}

int p11s_decrypt_message(p11s_ctx *ctx, p11s_key *key, FILE *in, FILE *out,
    const p11s_decrypt_opts *opts, p11s_decrypt_info *info)
{
	p11s_mime_head h = { 0 };
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_RecipientInfo) *ris;
	CMS_RecipientInfo *ri = NULL;
	p11s_key **keys = NULL, *use = NULL;
	EVP_PKEY *pkey = NULL;
	FILE *plain = NULL, *ct = NULL;
	size_t nkeys = 0;
	int rc, cipher_nid = NID_undef;

	/* Version 1 callers have no require_authenticated field: it is not read for them. */
	if (ctx == NULL || in == NULL || out == NULL ||
	    (opts != NULL && (opts->version < 1 || opts->version > P11S_DECRYPT_OPTS_VERSION))) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_decrypt_message: bad arguments");
	}
	if (info != NULL) {
		memset(info, 0, sizeof(*info));
	}
	if ((rc = p11s_cms__read_enveloped_stream(p11s_ctx_libctx(ctx), in, &h, &cms, &ct,
	         &cipher_nid)) < 0) {
		goto out;
	}
	/*
	 * RFC 5083 §1 / RFC 8551 §2.7: only AuthEnvelopedData protects the content's integrity;
	 * CBC EnvelopedData can be altered and spliced (EFAIL). Refused before any token
	 * operation, so no plaintext is ever produced (docs/envelope.md).
	 */
	if ((rc = p11s_cms__check_authenticated(cms, cipher_nid, opts)) < 0) {
		goto out;
	}
	ris = CMS_get0_RecipientInfos(cms);
	/* A bound on the work a hostile message can ask for (docs/security.md, "Limits"). */
	if (sk_CMS_RecipientInfo_num(ris) > P11S_MAX_RECIPIENTS) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "more than %d recipients",
		    P11S_MAX_RECIPIENTS);
		goto out;
	}
	/*
	 * The key is chosen by RecipientIdentifier before any token operation (STANDARDS.md §3,
	 * §12): with `key` only its certificate may match; never is every key tried.
	 */
	if (key == NULL) {
		if ((rc = p11s_key_list(ctx, opts ? opts->token_uri : NULL, &keys, &nkeys)) < 0) {
			goto out;
		}
	}
	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris) && use == NULL; i++) {
		CMS_RecipientInfo *r = sk_CMS_RecipientInfo_value(ris, i);

		if (key != NULL) {
			if (p11s_key_cert(key) != NULL && p11s_cms__ri_matches(r, p11s_key_cert(key))) {
				use = key;
				ri = r;
			}
			continue;
		}
		for (size_t k = 0; k < nkeys && use == NULL; k++) {
			if (p11s_key_cert(keys[k]) != NULL && p11s_cms__ri_matches(r, p11s_key_cert(keys[k]))) {
				use = keys[k];
				ri = r;
			}
		}
	}
	if (use == NULL) {
		int n = sk_CMS_RecipientInfo_num(ris);

		if (key != NULL) {
			rc = p11s_error__set(P11S_ERR_DECRYPT,
			    p11s_key_cert(key) == NULL
			        ? "no recipient for key %s: it has no certificate on the token to match"
			        : "no recipient for key %s among the %d recipients of the message",
			    p11s_key_uri(key), n);
		} else {
			rc = p11s_error__set(P11S_ERR_DECRYPT,
			    "no recipient for any key on the token among the %d recipients of the message",
			    n);
		}
		goto out;
	}
	p11s_log(P11S_LOG_INFO, "decrypting with %s", p11s_key_uri(use));
	if ((rc = p11s_key_pkey(use, &pkey)) < 0) {
		goto out;
	}
	if ((plain = tmpfile()) == NULL) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
		goto out;
	}
	if ((rc = p11s_cms__decrypt_stream(cms, pkey, p11s_key_cert(use), p11s_ctx_libctx(ctx), ct,
	         plain)) < 0) {
		goto out;
	}
	/* Version 3: the RFC 9788 report of a protected payload (docs/envelope.md). */
	if ((rc = opts != NULL && opts->version >= 3 && opts->header_protection != NULL
	              ? p11s_mime__write_decrypted_hp(out, &h, plain, opts->header_protection)
	              : p11s_mime__write_decrypted(out, &h, plain)) < 0) {
		goto out;
	}
	if (info != NULL) {
		p11s_cms__describe(cms, cipher_nid, ri, use, info);
	}
out:
	if (plain != NULL) {
		fclose(plain);
	}
	if (ct != NULL) {
		fclose(ct);
	}
	EVP_PKEY_free(pkey);
	for (size_t k = 0; k < nkeys; k++) {
		p11s_key_free(keys[k]);
	}
	free(keys);
	CMS_ContentInfo_free(cms);
	p11s_mime__head_clear(&h);
	return rc;
}

/*
 * SignedData for S/MIME 4.0 (RFC 5652 §5, RFC 8551 §2.5) and the public signing entry points,
 * which compose src/mime (canonical entity, MIME wrappers) with the CMS built here.
 *
 * Signed attributes: contentType, messageDigest and signingTime (OpenSSL adds them at
 * finalisation; signingTime is UTCTime until 2049, GeneralizedTime from 2050, RFC 8551
 * §2.5.1), our own SMIMECapabilities (CMS_NOSMIMECAP turns off OpenSSL's list with 3DES, RC2
 * and DES), ESS signingCertificateV2 with SHA-256 (RFC 5035) and SMIMEEncryptionKeyPreference
 * (RFC 8551 §2.5.3). Every signature is verified with the certificate before it is used
 * (DESIGN.md decision 3).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include <p11smime/sign.h>

#include "audit/audit_int.h"
#include "bridge/bridge.h"
#include "cms/cms_int.h"
#include "core/encode.h"
#include "core/error_int.h"
#include "core/spool.h"
#include "ess/ess_int.h"
#include "mime/mime.h"
#include "token/token_int.h"
#include "tsa/tsa_int.h"

const char *p11s_digest_micalg(p11s_digest digest)
{
	switch (digest) {
	case P11S_DIGEST_SHA256:
		return "sha-256";
	case P11S_DIGEST_SHA384:
		return "sha-384";
	case P11S_DIGEST_SHA512:
		return "sha-512";
	default:
		return NULL;
	}
}

static const char *digest_name(p11s_digest digest)
{
	switch (digest) {
	case P11S_DIGEST_SHA256:
		return "SHA256";
	case P11S_DIGEST_SHA384:
		return "SHA384";
	case P11S_DIGEST_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

/*
 * RFC 8551 §2.5.2: our capabilities in preference order. Content encryption first (RFC 8551
 * §2.7: AES-GCM MUST, AES-CBC for older peers), then the signature algorithms we verify.
 * Parameters are omitted (never NULL) unless the algorithm's registration defines them: the
 * RSA PKCS#1 v1.5 signature OIDs carry NULL (RFC 4055 §5, RFC 5754 §3.2).
 */
static const struct {
	int nid;
	int null_params;
} smime_caps[] = {
	{ NID_aes_256_gcm, 0 },
	{ NID_aes_128_gcm, 0 },
	{ NID_aes_256_cbc, 0 },
	{ NID_aes_128_cbc, 0 },
	{ NID_ecdsa_with_SHA256, 0 },
	{ NID_ecdsa_with_SHA384, 0 },
	{ NID_ecdsa_with_SHA512, 0 },
	{ NID_rsassaPss, 0 },
	{ NID_sha256WithRSAEncryption, 1 },
	{ NID_sha384WithRSAEncryption, 1 },
	{ NID_sha512WithRSAEncryption, 1 },
};

/*
 * The attribute values that are the same for every message of a signer are encoded once per
 * process, not per message: for batch signing with P-256 the per-message CMS set-up was a
 * tenth of the time (docs/performance.md).
 */
static pthread_once_t caps_once = PTHREAD_ONCE_INIT;
static unsigned char *caps_der; /* SMIMECapabilities value, or NULL (out of memory) */
static int caps_len;

static void caps_init(void)
{
	STACK_OF(X509_ALGOR) *algs = sk_X509_ALGOR_new_null();

	for (size_t i = 0; algs != NULL && i < sizeof(smime_caps) / sizeof(smime_caps[0]); i++) {
		X509_ALGOR *a = X509_ALGOR_new();

		if (a == NULL || !X509_ALGOR_set0(a, OBJ_nid2obj(smime_caps[i].nid),
		                     smime_caps[i].null_params ? V_ASN1_NULL : V_ASN1_UNDEF, NULL) ||
		    !sk_X509_ALGOR_push(algs, a)) {
			X509_ALGOR_free(a);
			goto out;
		}
	}
	if (algs != NULL && (caps_len = i2d_X509_ALGORS(algs, &caps_der)) <= 0) {
		caps_der = NULL;
	}
out:
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
}

static int add_smime_caps(CMS_SignerInfo *si)
{
	pthread_once(&caps_once, caps_init);
	/* As CMS_add_smimecap() does: SMIMECapabilities ::= SEQUENCE OF SMIMECapability. */
	if (caps_der == NULL || CMS_signed_add1_attr_by_NID(si, NID_SMIMECapabilities,
	                            V_ASN1_SEQUENCE, caps_der, caps_len) <= 0) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add SMIMECapabilities");
	}
	return P11S_OK;
}

/* The last signer's signingCertificateV2 value, kept with a reference to its certificate. */
static pthread_mutex_t scv2_lock = PTHREAD_MUTEX_INITIALIZER;
static X509 *scv2_cert;
static unsigned char *scv2_der;
static int scv2_len;

/*
 * ESS signingCertificateV2 (RFC 5035 §3): one ESSCertIDv2 for the signer, certHash = SHA-256
 * of the whole DER certificate (hashAlgorithm omitted: DEFAULT sha256) with issuerSerial.
 * Built here rather than with CMS_CADES, which hashes with the signature's digest.
 */
static int add_signing_cert_v2(CMS_SignerInfo *si, X509 *cert, OSSL_LIB_CTX *libctx)
{
	EVP_MD *sha256 = NULL;
	ESS_SIGNING_CERT_V2 *sc = NULL;
	unsigned char *der = NULL;
	int len = 0, rc = P11S_OK;

	pthread_mutex_lock(&scv2_lock);
	/* The cache holds a reference, so an equal pointer is the same certificate. */
	if (scv2_cert != cert) {
		if ((sha256 = EVP_MD_fetch(libctx, "SHA256", NULL)) == NULL ||
		    (sc = OSSL_ESS_signing_cert_v2_new_init(sha256, cert, NULL, 1)) == NULL ||
		    (len = i2d_ESS_SIGNING_CERT_V2(sc, &der)) <= 0 || !X509_up_ref(cert)) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode signingCertificateV2");
			OPENSSL_free(der);
			goto out;
		}
		X509_free(scv2_cert);
		OPENSSL_free(scv2_der);
		scv2_cert = cert;
		scv2_der = der;
		scv2_len = len;
	}
	if (CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
	        scv2_der, scv2_len) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the signingCertificateV2 attribute");
	}
out:
	pthread_mutex_unlock(&scv2_lock);
	ESS_SIGNING_CERT_V2_free(sc);
	EVP_MD_free(sha256);
	return rc;
}


/*
 * SMIMEEncryptionKeyPreference (RFC 8551 §2.5.3) ::= CHOICE { issuerAndSerialNumber [0]
 * IssuerAndSerialNumber, ... } — implicit tagging (the module's default), so the [0] replaces
 * the SEQUENCE tag: A0 len { issuer Name, serialNumber INTEGER }.
 */
static int add_enc_key_pref(CMS_SignerInfo *si, X509 *enc)
{
	unsigned char *name = NULL, *serial = NULL, *der = NULL;
	int nlen, slen, rc = P11S_OK;
	size_t hl, total;

	nlen = i2d_X509_NAME(X509_get_issuer_name(enc), &name);
	slen = i2d_ASN1_INTEGER(X509_get0_serialNumber(enc), &serial);
	if (nlen <= 0 || slen <= 0 ||
	    (der = OPENSSL_malloc((size_t)nlen + (size_t)slen + 8)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the encryption certificate's "
		                                       "issuer and serial number");
		goto out;
	}
	hl = p11s_core__der_header(der, 0xa0, (size_t)nlen + (size_t)slen);
	memcpy(der + hl, name, (size_t)nlen);
	memcpy(der + hl + nlen, serial, (size_t)slen);
	total = hl + (size_t)nlen + (size_t)slen;
	/*
	 * An ASN1_TYPE of V_ASN1_SEQUENCE holds the complete encoding, tag included, and writes it
	 * as is: the [0] tag survives. (V_ASN1_OTHER would be taken for a multibyte string type.)
	 */
	if (CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_encrypKeyPref, V_ASN1_SEQUENCE, der,
	        (int)total) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO,
		    "cannot add the SMIMEEncryptionKeyPreference attribute");
	}
out:
	OPENSSL_free(name);
	OPENSSL_free(serial);
	OPENSSL_free(der);
	return rc;
}

/* Evidence asked for by the sign options (docs/evidence.md); NULL members: none. */
typedef struct sign_evidence {
	const p11s_sign_opts *o; /* receipt request, security label, TSA URL */
	const char *from;        /* the message's From addr-spec: default receiptsTo */
	const p11s_buf *staple;  /* sign --staple: the signer's OCSP response, or NULL */
} sign_evidence;

/* Build the partial SignedData: signer, attributes, certificates. */
static int build(const p11s_cms_signer *s, const sign_evidence *ev, unsigned int flags,
    CMS_ContentInfo **cms_out, CMS_SignerInfo **si_out)
{
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	EVP_MD *md = NULL;
	const char *mdname;
	EVP_PKEY *certkey;
	p11s_digest digest;
	int rc = P11S_OK;

	*cms_out = NULL;
	*si_out = NULL;
	if ((rc = p11s_cms__signer_digest(s, &digest)) < 0) {
		return rc;
	}
	if ((mdname = digest_name(digest)) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "unknown digest");
	}
	if (s->cert == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "no signer certificate");
	}
	if ((certkey = X509_get0_pubkey(s->cert)) == NULL || EVP_PKEY_eq(certkey, s->pkey) != 1) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_USAGE,
		    "the certificate's public key is not the signing key's");
	}
	if (s->pss && !EVP_PKEY_is_a(s->pkey, "RSA")) {
		return p11s_error__set(P11S_ERR_USAGE, "--pss needs an RSA key");
	}
	if ((md = EVP_MD_fetch(s->libctx, mdname, NULL)) == NULL) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "digest %s unavailable", mdname);
	}
	if ((cms = CMS_sign_ex(NULL, NULL, NULL, NULL, flags, s->libctx, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot create a SignedData");
		goto out;
	}
	/* CMS_KEY_PARAM: the PSS parameters are set below (EdDSA is signed by eddsa.c). */
	if ((si = CMS_add1_signer(cms, s->cert, s->pkey, md,
	         flags | (s->pss ? CMS_KEY_PARAM : 0))) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the signer");
		goto out;
	}
	if (s->pss) {
		EVP_PKEY_CTX *pctx = CMS_SignerInfo_get0_pkey_ctx(si);

		/*
		 * RFC 4056 §3, RFC 8551 §2.2: PSS hash = MGF1 hash = the content digest; the salt
		 * length is the digest length, set explicitly (OpenSSL defaults to the maximum).
		 */
		if (pctx == NULL || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, EVP_MD_get_size(md)) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot set the RSASSA-PSS parameters");
			goto out;
		}
	}
	if ((rc = add_smime_caps(si)) < 0 || (rc = add_signing_cert_v2(si, s->cert, s->libctx)) < 0) {
		goto out;
	}
	/* RFC 2634 §2.7 receiptRequest and §3.2 ESSSecurityLabel, when asked for. */
	if (ev != NULL && ev->o != NULL &&
	    (rc = p11s_ess__add_sign_attrs(si, s->libctx, ev->o, ev->from)) < 0) {
		goto out;
	}
	if (s->encryption_cert != NULL && X509_cmp(s->encryption_cert, s->cert) != 0 &&
	    (rc = add_enc_key_pref(si, s->encryption_cert)) < 0) {
		goto out;
	}
	if (s->signing_time != 0) {
		ASN1_TIME *t = ASN1_TIME_set(NULL, s->signing_time);

		/* ASN1_TIME_set picks UTCTime for 1950-2049, GeneralizedTime otherwise. */
		if (t == NULL || CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, t->type, t,
		                     -1) <= 0) {
			ASN1_TIME_free(t);
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add signingTime");
			goto out;
		}
		ASN1_TIME_free(t);
	}
	/* Intermediates and CA certificates, each once (the signer's is already there). */
	for (int i = 0; i < sk_X509_num(s->certs); i++) {
		X509 *x = sk_X509_value(s->certs, i);
		STACK_OF(X509) *have = CMS_get1_certs(cms);
		int dup = 0;

		for (int j = 0; j < sk_X509_num(have); j++) {
			if (X509_cmp(sk_X509_value(have, j), x) == 0) {
				dup = 1;
			}
		}
		sk_X509_pop_free(have, X509_free);
		if (!dup && CMS_add1_cert(cms, x) <= 0) {
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add a chain certificate");
			goto out;
		}
	}
	*cms_out = cms;
	*si_out = si;
	cms = NULL;
out:
	CMS_ContentInfo_free(cms);
	EVP_MD_free(md);
	return rc;
}

/*
 * DESIGN.md decision 3: the token's signature must verify with the certificate's public key
 * (over the DER signedAttrs, RFC 5652 §5.4) before anything uses it. Replaces the signer's
 * key by the certificate's public key, so this runs after signing.
 */
static int check_signature(CMS_SignerInfo *si, X509 *cert)
{
	ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);

	if (sig == NULL || ASN1_STRING_length(sig) <= 0) {
		return p11s_error__ossl(P11S_ERR_TOKEN, "the token returned no signature");
	}
	CMS_SignerInfo_set1_signer_cert(si, cert);
	if (CMS_SignerInfo_verify(si) != 1) {
		return p11s_error__ossl(P11S_ERR_TOKEN, "the signature returned by the token does not "
		                                        "verify with the signer's certificate");
	}
	return P11S_OK;
}

/*
 * OpenSSL 3.0's CMS_final() puts the RSASSA-PSS parameters (RFC 4055 §3.1: hash, MGF1 hash,
 * salt length) into signatureAlgorithm; CMS_SignerInfo_sign() alone does not. Take the
 * AlgorithmIdentifier the signature implementation reports for its configured context (the
 * bridge's, or the default provider's for a software key), so it names what is signed.
 */
static int set_pss_algor(CMS_SignerInfo *si)
{
	EVP_PKEY_CTX *pctx = CMS_SignerInfo_get0_pkey_ctx(si);
	unsigned char aid[256];
	const unsigned char *p = aid;
	OSSL_PARAM params[2] = {
		OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid, sizeof(aid)),
		OSSL_PARAM_END,
	};
	X509_ALGOR *got = NULL, *sigalg = NULL;
	int rc = P11S_OK;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &sigalg);
	if (pctx == NULL || sigalg == NULL || EVP_PKEY_CTX_get_params(pctx, params) != 1 ||
	    !OSSL_PARAM_modified(&params[0]) ||
	    (got = d2i_X509_ALGOR(NULL, &p, (long)params[0].return_size)) == NULL ||
	    OBJ_obj2nid(got->algorithm) != NID_rsassaPss || X509_ALGOR_copy(sigalg, got) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot set the RSASSA-PSS parameters");
	}
	X509_ALGOR_free(got);
	return rc;
}

/* Keep a token error recorded by the bridge; otherwise report the OpenSSL failure. */
static int sign_failed(void)
{
	const p11s_error *e = p11s_error_last();

	if (e->code != P11S_OK) {
		return p11s_error__prefix("signing: ");
	}
	return p11s_error__ossl(P11S_ERR_CRYPTO, "signing failed");
}

/*
 * Sign a precomputed content digest as a SignedData without eContent (RFC 8551 §3.5.3). This
 * is what CMS_final() does after hashing the content (RFC 5652 §5.4: messageDigest and
 * contentType become signed attributes, then the DER signedAttrs are signed), done here so
 * that the digest can be taken in the same pass that canonicalises the entity.
 */
static int sign_digest(const p11s_cms_signer *s, const sign_evidence *ev,
    const unsigned char *md, unsigned int mdlen, p11s_buf **out)
{
	const unsigned int flags = CMS_PARTIAL | CMS_BINARY | CMS_DETACHED | CMS_NOSMIMECAP;
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	unsigned char *der = NULL;
	p11s_buf *b = NULL;
	int len, rc;

	*out = NULL;
	if ((rc = build(s, ev, flags, &cms, &si)) < 0) {
		return rc;
	}
	if (CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING, md,
	        (int)mdlen) <= 0 ||
	    CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
	        CMS_get0_eContentType(cms), -1) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the messageDigest attribute");
		goto out;
	}
	if (s->pss && (rc = set_pss_algor(si)) < 0) {
		goto out;
	}
	p11s_error_clear();
	if (p11s_cms__is_eddsa(s->pkey)) {
		/* RFC 8419: PureEdDSA over the DER signedAttrs, which OpenSSL 3.0 cannot do. */
		if ((rc = p11s_cms__eddsa_sign(si, s->pkey, s->libctx,
		         p11s_bridge__is_bridge_key(s->pkey) ? NULL : s->cert)) < 0) {
			goto out;
		}
	} else if (CMS_SignerInfo_sign(si) != 1) {
		/* Adds signingTime unless present, then signs the DER signedAttrs on the token. */
		rc = sign_failed();
		goto out;
	} else if (!p11s_bridge__is_bridge_key(s->pkey) && (rc = check_signature(si, s->cert)) < 0) {
		/*
		 * A bridge key's signature was verified with the key's public key inside the
		 * provider, and build() made sure that is the certificate's key: a second
		 * verification here would cost 12% of batch signing with P-256
		 * (docs/performance.md). Other keys are checked.
		 */
		goto out;
	}
	/* RFC 5126 §5.11.1: the signature-time-stamp, over the signature just checked. */
	if (ev != NULL && ev->o != NULL && ev->o->tsa_url != NULL &&
	    (rc = p11s_tsa__stamp_signer(si, ev->o->tsa_url)) < 0) {
		goto out;
	}
	if ((len = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the SignedData");
		goto out;
	}
	if ((rc = p11s_buf_new(&b, (size_t)len)) < 0) {
		goto out;
	}
	memcpy(b->data, der, (size_t)len);
	/* RFC 5940: the OCSP response goes into the unsigned crls field (staple.c). */
	if (ev != NULL && ev->staple != NULL) {
		p11s_buf *stapled = NULL;

		rc = p11s_cms__staple_add(b, ev->staple->data, ev->staple->len, &stapled);
		p11s_buf_free(b);
		if ((b = stapled) == NULL) {
			goto out;
		}
	}
	*out = b;
out:
	OPENSSL_free(der);
	CMS_ContentInfo_free(cms);
	return rc;
}

/* A p11s_mime_entity_sink that hashes (p == NULL: start over). */
typedef struct digest_sink {
	EVP_MD_CTX *ctx;
	const EVP_MD *md;
} digest_sink;

static int digest_feed(void *arg, const void *p, size_t n)
{
	digest_sink *d = arg;

	if (p == NULL ? EVP_DigestInit_ex(d->ctx, d->md, NULL) != 1
	              : EVP_DigestUpdate(d->ctx, p, n) != 1) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "hashing the message failed");
	}
	return P11S_OK;
}

/* Hash what `feed` produces with the signer's digest into `md`. */
static int hash_with(const p11s_cms_signer *s, int (*feed)(void *, digest_sink *), void *farg,
    unsigned char *md, unsigned int *mdlen)
{
	digest_sink d = { EVP_MD_CTX_new(), NULL };
	EVP_MD *fetched = NULL;
	const char *name = NULL;
	p11s_digest digest;
	int rc;

	if ((rc = p11s_cms__signer_digest(s, &digest)) < 0) {
		goto out;
	}
	if ((name = digest_name(digest)) == NULL) {
		rc = p11s_error__set(P11S_ERR_USAGE, "unknown digest");
		goto out;
	}
	if (d.ctx == NULL || (fetched = EVP_MD_fetch(s->libctx, name, NULL)) == NULL ||
	    EVP_DigestInit_ex(d.ctx, fetched, NULL) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "digest %s unavailable", name);
		goto out;
	}
	d.md = fetched;
	if ((rc = feed(farg, &d)) < 0) {
		goto out;
	}
	if (EVP_DigestFinal_ex(d.ctx, md, mdlen) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "hashing the message failed");
	}
out:
	EVP_MD_free(fetched);
	EVP_MD_CTX_free(d.ctx);
	return rc;
}

static int feed_bio(void *arg, digest_sink *d)
{
	unsigned char buf[16384];
	int n;

	while ((n = BIO_read(arg, buf, sizeof(buf))) > 0) {
		if (digest_feed(d, buf, (size_t)n) < 0) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "hashing the message failed");
		}
	}
	return P11S_OK;
}

int p11s_cms__sign_detached(const p11s_cms_signer *s, BIO *content, p11s_buf **out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc;

	*out = NULL;
	if ((rc = hash_with(s, feed_bio, content, md, &mdlen)) < 0) {
		return rc;
	}
	return sign_digest(s, NULL, md, mdlen, out);
}

/*
 * Turn a verified detached SignedData into one that carries the content as eContent (RFC 5652
 * §5.2: [0] EXPLICIT OCTET STRING), streaming the `n` content bytes from `content` into `out`
 * between the re-encoded headers and the unchanged certificates and signerInfos. The
 * signature covers the content through messageDigest, which does not depend on where the
 * content travels; the output is DER with definite lengths, and nothing is written before the
 * signature was checked.
 */
/* A p11s_mime_entity_sink writing to a BIO. */
static int bio_sink(void *arg, const void *p, size_t n)
{
	if (p != NULL && n > 0 && BIO_write(arg, p, (int)n) != (int)n) {
		return p11s_error__set(P11S_ERR_IO, "writing the output failed");
	}
	return P11S_OK;
}

int p11s_cms__signeddata_span(const p11s_buf *ci, const unsigned char **oid, size_t *oid_len,
    const unsigned char **sd, const unsigned char **sd_end)
{
	const unsigned char *p = ci->data, *end = ci->data + ci->len, *q;
	size_t hl, cl;

	/* ContentInfo SEQUENCE { contentType, [0] EXPLICIT SignedData } */
	if (p11s_core__ber_header(p, end, 0, &hl, &cl) < 0 || p[0] != 0x30) {
		return -1;
	}
	q = p + hl;
	*oid = q;
	if (p11s_core__ber_header(q, end, 0, &hl, &cl) < 0 || q[0] != 0x06) {
		return -1;
	}
	*oid_len = hl + cl;
	q += *oid_len;
	if (p11s_core__ber_header(q, end, 0, &hl, &cl) < 0 || q[0] != 0xa0) {
		return -1;
	}
	q += hl;
	/* SignedData SEQUENCE { version, digestAlgorithms, encapContentInfo, ... } */
	if (p11s_core__ber_header(q, end, 0, &hl, &cl) < 0 || q[0] != 0x30) {
		return -1;
	}
	*sd = q + hl;
	*sd_end = *sd + cl;
	return 0;
}

static int embed_content(const p11s_buf *det, p11s_mime_msg *m, BIO *out)
{
	const unsigned char *sd, *sd_end, *q;
	unsigned char h_os[12], h_ex[12], h_encap[12], h_sd[12], h_x[12], h_ci[12];
	size_t hl, cl, l_os, l_ex, l_encap, l_sd, l_x, l_ci, oid_len, pre_len;
	const unsigned char *oid, *encap, *after_encap;
	size_t n = (size_t)p11s_mime__entity_size(m);
	int rc;

	if (p11s_cms__signeddata_span(det, &oid, &oid_len, &sd, &sd_end) < 0) {
		goto bad;
	}
	q = sd;
	for (int i = 0; i < 2; i++) {
		if (p11s_core__ber_header(q, sd_end, 0, &hl, &cl) < 0) {
			goto bad;
		}
		q += hl + cl;
	}
	pre_len = (size_t)(q - sd);
	encap = q;
	if (p11s_core__ber_header(q, sd_end, 0, &hl, &cl) < 0 || q[0] != 0x30) {
		goto bad;
	}
	after_encap = q + hl + cl;
	/* encapContentInfo holds only eContentType (detached): keep that OID. */
	{
		const unsigned char *ect = encap + hl;
		size_t ehl, ecl;

		if (p11s_core__ber_header(ect, after_encap, 0, &ehl, &ecl) < 0 || ect[0] != 0x06 ||
		    ect + ehl + ecl != after_encap) {
			goto bad;
		}
		size_t tail = (size_t)(sd_end - after_encap), sd_total, l_ex0;

		l_os = p11s_core__der_header(h_os, 0x04, n);
		l_ex = p11s_core__der_header(h_ex, 0xa0, l_os + n);
		l_x = ehl + ecl + l_ex + l_os + n; /* content of the new encapContentInfo */
		l_encap = p11s_core__der_header(h_encap, 0x30, l_x);
		l_sd = p11s_core__der_header(h_sd, 0x30, pre_len + l_encap + l_x + tail);
		sd_total = l_sd + pre_len + l_encap + l_x + tail;
		l_ex0 = p11s_core__der_header(h_x, 0xa0, sd_total);
		l_ci = p11s_core__der_header(h_ci, 0x30, oid_len + l_ex0 + sd_total);
		if (BIO_write(out, h_ci, (int)l_ci) <= 0 || BIO_write(out, oid, (int)oid_len) <= 0 ||
		    BIO_write(out, h_x, (int)l_ex0) <= 0 || BIO_write(out, h_sd, (int)l_sd) <= 0 ||
		    BIO_write(out, sd, (int)pre_len) <= 0 || BIO_write(out, h_encap, (int)l_encap) <= 0 ||
		    BIO_write(out, ect, (int)(ehl + ecl)) <= 0 || BIO_write(out, h_ex, (int)l_ex) <= 0 ||
		    BIO_write(out, h_os, (int)l_os) <= 0) {
			return p11s_error__set(P11S_ERR_IO, "writing the output failed");
		}
	}
	if ((rc = p11s_mime__entity_write(m, bio_sink, out)) < 0) {
		return rc;
	}
	if (BIO_write(out, after_encap, (int)(sd_end - after_encap)) <= 0) {
		return p11s_error__set(P11S_ERR_IO, "writing the output failed");
	}
	return P11S_OK;
bad:
	return p11s_error__set(P11S_ERR_CRYPTO, "unexpected SignedData encoding");
}

/* ---------------------------------------------------------------- public API ------------ */

/* Prepare the message in `in`, feeding the canonical entity to the digest. */
typedef struct feed_msg {
	p11s_mime_msg **m;
	FILE *in;
	const char *hp;     /* RFC 9788: "clear", "cipher" (inside an encryption: wrap) or NULL */
	FILE *dst;          /* out_private multipart/signed: written while hashed (one read) */
	const char *micalg; /* ... with this micalg */
} feed_msg;

/*
 * The digest of a large message runs on a second thread (core/spool.h) while this one reads,
 * canonicalises and writes: hashing 100 MiB alone takes as long as all the rest.
 */
typedef struct spooled {
	p11s_spool *spool;
	digest_sink *d;
	int threaded;
} spooled;

static int spool_digest(const unsigned char *p, size_t n, void *arg)
{
	return digest_feed(arg, p, n);
}

static int spooled_feed(void *arg, const void *p, size_t n)
{
	spooled *sp = arg;
	int rc;

	if (p == NULL) {
		/* "Start over" (mime.h) must follow what is queued: drain, reset, go on. */
		rc = p11s_core__spool_end(sp->spool);
		if ((sp->spool = p11s_core__spool_new(spool_digest, sp->d, sp->threaded)) == NULL) {
			return P11S_ERR_NOMEM;
		}
		return rc < 0 ? rc : digest_feed(sp->d, NULL, 0);
	}
	return p11s_core__spool_put(p, n, sp->spool);
}

static int feed_message(void *arg, digest_sink *d)
{
	feed_msg *f = arg;
	struct stat st;
	spooled sp = { NULL, d, 0 };
	int rc, rc2;

	sp.threaded = fstat(fileno(f->in), &st) == 0 && S_ISREG(st.st_mode) &&
	              st.st_size >= P11S_SPOOL_THREAD_MIN;
	if ((sp.spool = p11s_core__spool_new(spool_digest, d, sp.threaded)) == NULL) {
		return P11S_ERR_NOMEM;
	}
	rc = p11s_mime__prepare_signed(f->m, f->in, spooled_feed, &sp, f->hp, f->dst, f->micalg);
	rc2 = sp.spool != NULL ? p11s_core__spool_end(sp.spool) : P11S_OK;
	return rc < 0 ? rc : rc2;
}

static int sign_entity(const p11s_cms_signer *s, const p11s_sign_opts *o, const char *key_uri,
    FILE *in, FILE *out)
{
	sign_evidence ev = { o, NULL, NULL };
	p11s_buf *staple = NULL;
	p11s_mime_msg *m = NULL;
	feed_msg fm = { &m, in, NULL, NULL, NULL };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	p11s_buf *sig = NULL;
	BIO *b64 = NULL;
	char *from = NULL;
	p11s_digest digest;
	int rc;

	/* RFC 8551 §3.5.3.1: micalg names the digest the SignerInfo uses (SHA-512 for Ed25519). */
	if ((rc = p11s_cms__signer_digest(s, &digest)) < 0) {
		goto out;
	}
	/* Evidence (docs/evidence.md): receiptsTo defaults to the From address (RFC 2634 §2.7). */
	if (o->receipt_request != 0 && o->receipts_to == NULL &&
	    (rc = p11s_ess__from_address(in, &from)) < 0) {
		goto out;
	}
	ev.from = from;
	/* RFC 9788 header protection, when asked for (docs/sign.md "Header protection"). */
	if (o->version >= 2 && o->protect_headers) {
		fm.hp = o->protect_headers == P11S_PROTECT_HEADERS_ENCRYPTED ? "cipher" : "clear";
	}
	/*
	 * sign --staple: the signer's status is asked before the token signs, so a revoked
	 * certificate signs nothing; a batch asks once (the response is cached until nextUpdate).
	 */
	if (o->version >= 2 && o->staple != NULL) {
		if ((rc = p11s_cms__staple_fetch(s->cert, s->certs, o->staple, &staple)) < 0) {
			goto out;
		}
		ev.staple = staple;
	}
	/*
	 * Into a private output (the tool's temporary file), a multipart/signed message is
	 * written while it is hashed; otherwise nothing is written before the signature is made
	 * and checked (sign.h).
	 */
	if (o->version >= 3 && o->out_private && !o->opaque) {
		fm.dst = out;
		fm.micalg = p11s_digest_micalg(digest);
	}
	/* One pass over the body: scan, canonicalise and hash (src/mime/message.c). */
	if ((rc = hash_with(s, feed_message, &fm, md, &mdlen)) < 0) {
		goto out;
	}
	/* Sign (and check the signature) first; only then write anything. */
	if ((rc = sign_digest(s, &ev, md, mdlen, &sig)) < 0) {
		goto out;
	}
	if (!o->opaque) {
		if ((rc = p11s_mime__write_signed(m, out, p11s_digest_micalg(digest), sig->data,
		         sig->len)) < 0) {
			goto out;
		}
	} else {
		if ((rc = p11s_mime__write_pkcs7_head(m, out, "signed-data")) < 0) {
			goto out;
		}
		if ((b64 = p11s_mime__b64w_new(out)) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		if ((rc = embed_content(sig, m, b64)) < 0 || (rc = p11s_mime__b64w_finish(b64)) < 0) {
			goto out;
		}
	}
	if (fflush(out) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing the output failed");
	}
out:
	/*
	 * The audit record (audit.h) is durable before the caller publishes the output: if it
	 * cannot be written, signing fails. A failed signing is recorded too, keeping its error.
	 */
	if (o->audit_log != NULL) {
		const p11s_error *e = p11s_error_last();
		char why[200];
		int code = e->code;

		snprintf(why, sizeof(why), "%s", rc < 0 ? e->message : "");
		if (p11s_audit__signing(o->audit_log, "sign", key_uri, s->cert, sig ? sig->data : NULL,
		        sig ? sig->len : 0, rc, why) < 0) {
			if (rc >= 0) {
				rc = p11s_error__prefix("the signature is withheld: ");
			} else {
				rc = p11s_error__set(code, "%s", why);
			}
		} else if (rc >= 0) {
			/* A signed checkpoint every N records (never fails the signature: see there). */
			p11s_cms__audit_periodic(s, o->audit_log, key_uri, o->tsa_url,
			    o->audit_checkpoint_every);
		}
	}
	BIO_free(b64);
	p11s_buf_free(sig);
	p11s_buf_free(staple);
	p11s_mime__free(m);
	free(from);
	return rc;
}

static int sign_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey, X509 *cert, const p11s_sign_opts *opts,
    const char *key_uri, FILE *in, FILE *out)
{
	p11s_sign_opts defaults = P11S_SIGN_OPTS_INIT;
	const p11s_sign_opts *o = opts ? opts : &defaults;
	p11s_cms_signer s = { 0 };

	if (pkey == NULL || cert == NULL || in == NULL || out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_sign_message_pkey: NULL argument");
	}
	if (o->version < 1 || o->version > P11S_SIGN_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "unknown p11s_sign_opts version %u",
		    o->version);
	}
	if (p11s_digest_micalg(o->digest) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "unknown digest");
	}
	s.libctx = libctx;
	s.pkey = pkey;
	s.cert = cert;
	s.certs = o->chain;
	s.encryption_cert = o->encryption_cert;
	s.digest = o->digest;
	s.pss = o->pss;
	return sign_entity(&s, o, key_uri, in, out);
}

int p11s_sign_message_pkey(OSSL_LIB_CTX *libctx, EVP_PKEY *pkey, X509 *cert,
    const p11s_sign_opts *opts, FILE *in, FILE *out)
{
	return sign_pkey(libctx, pkey, cert, opts, NULL, in, out);
}

int p11s_sign_message(p11s_key *key, const p11s_sign_opts *opts, FILE *in, FILE *out)
{
	p11s_sign_opts defaults = P11S_SIGN_OPTS_INIT, o;
	STACK_OF(X509) *cas = NULL, *all = NULL;
	EVP_PKEY *pkey = NULL;
	X509 *cert;
	int rc;

	if (key == NULL || in == NULL || out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_sign_message: NULL argument");
	}
	o = defaults;
	if (opts != NULL) {
		/* A version 1 caller's structure ends before `staple` (which stays NULL). */
		memcpy(&o, opts, opts->version == 1   ? offsetof(p11s_sign_opts, staple)
		               : opts->version == 2 ? offsetof(p11s_sign_opts, out_private)
		                                    : sizeof(o));
		o.version = P11S_SIGN_OPTS_VERSION; /* the fields past version 1 are now defaults */
	}
	cert = o.cert ? o.cert : p11s_key_cert(key);
	if (cert == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "no certificate for %s on the token; give one "
		                                       "with --cert", p11s_key_uri(key));
	}
	if ((rc = p11s_key_pkey(key, &pkey)) < 0) {
		goto out;
	}
	/* --cert must carry the token key's public key (compared with the token's cert or key). */
	if (o.cert != NULL) {
		X509 *tc = p11s_key_cert(key);
		EVP_PKEY *tpub = tc ? X509_get0_pubkey(tc) : pkey;

		if (EVP_PKEY_eq(X509_get0_pubkey(o.cert), tpub) != 1) {
			ERR_clear_error();
			rc = p11s_error__set(P11S_ERR_USAGE, "the certificate given with --cert does not "
			                                     "belong to the key %s", p11s_key_uri(key));
			goto out;
		}
	}
	if ((rc = p11s_key_ca_certs(key, &cas)) < 0) {
		goto out;
	}
	if ((all = sk_X509_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < sk_X509_num(o.chain); i++) {
		if (!sk_X509_push(all, sk_X509_value(o.chain, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < sk_X509_num(cas); i++) {
		if (!sk_X509_push(all, sk_X509_value(cas, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	o.chain = all;
	rc = sign_pkey(p11s_ctx_libctx(key->ctx), pkey, cert, &o, p11s_key_uri(key), in, out);
out:
	sk_X509_free(all);
	sk_X509_pop_free(cas, X509_free);
	EVP_PKEY_free(pkey);
	return rc;
}

/*
 * EdDSA SignerInfos (RFC 8419), which OpenSSL 3.0's CMS can neither make nor check: its
 * CMS_SignerInfo_sign() and CMS_SignerInfo_verify() always hash the signed attributes with
 * the digestAlgorithm first, and Ed25519 refuses a digest ("invalid digest"; measured with
 * openssl cms 3.0 in docs/keys.md). The rules implemented here:
 *   - §3: digestAlgorithm id-sha512 for Ed25519 (messageDigest is SHA-512 of the content),
 *     SHAKE256 with 512 bits of output for Ed448 (id-shake256, or id-shake256-len with
 *     ShakeOutputLen 512 after erratum 5869);
 *   - §2.3 and §4: signatureAlgorithm id-Ed25519 / id-Ed448 with the parameters absent;
 *     PureEdDSA, no context string, over the DER encoding of the signed attributes
 *     (RFC 5652 §5.4: the SET OF with its own tag, not the [0] IMPLICIT of the SignerInfo).
 * Signed attributes are required: without them PureEdDSA would sign the whole content in one
 * piece, which a streaming signer cannot give a token (RFC 8419 §3 allows it; we refuse to
 * make such a SignerInfo and check one only when it has signed attributes).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "cms/cms_int.h"
#include "core/encode.h"
#include "core/error_int.h"

/* id-shake256-len (RFC 8702 §3.1, RFC 8419 erratum 5869): 2.16.840.1.101.3.4.2.18. */
static const unsigned char oid_shake256_len[] = { 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	0x12 };

int p11s_cms__is_eddsa(const EVP_PKEY *pkey)
{
	return pkey != NULL && (EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448"));
}

int p11s_cms__digest_nid(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj;
	const void *pval;
	int ptype;
	const unsigned char *der;
	int len;

	X509_ALGOR_get0(&obj, &ptype, &pval, alg);
	der = OBJ_get0_data(obj);
	len = (int)OBJ_length(obj);
	if (len == (int)sizeof(oid_shake256_len) &&
	    memcmp(der, oid_shake256_len, sizeof(oid_shake256_len)) == 0) {
		/* ShakeOutputLen ::= INTEGER, in bits: 512 is the one RFC 8419 uses. */
		if (ptype == V_ASN1_INTEGER && ASN1_INTEGER_get(pval) == 512) {
			return NID_shake256;
		}
		return NID_undef;
	}
	return OBJ_obj2nid(obj);
}

int p11s_cms__signer_digest(const p11s_cms_signer *s, p11s_digest *out)
{
	*out = s->digest;
	if (!p11s_cms__is_eddsa(s->pkey)) {
		return P11S_OK;
	}
	if (EVP_PKEY_is_a(s->pkey, "ED448")) {
		return p11s_error__set(P11S_ERR_USAGE, "signing with Ed448 is not supported "
		                                       "(verifying is)");
	}
	if (s->pss) {
		return p11s_error__set(P11S_ERR_USAGE, "--pss needs an RSA key");
	}
	/* RFC 8419 §3: SHA-512 with Ed25519. SHA-256 is the options' default, so it means that. */
	if (s->digest == P11S_DIGEST_SHA384) {
		return p11s_error__set(P11S_ERR_USAGE, "an Ed25519 signature uses SHA-512 (RFC 8419 "
		                                       "section 3), not SHA-384");
	}
	*out = P11S_DIGEST_SHA512;
	return P11S_OK;
}

/* Order of DER SET OF elements (X.690 §11.6): as octet strings, a shorter prefix first. */
static int der_cmp(const void *a, const void *b)
{
	const ASN1_STRING *x = *(const ASN1_STRING *const *)a, *y = *(const ASN1_STRING *const *)b;
	int lx = ASN1_STRING_length(x), ly = ASN1_STRING_length(y);
	int c = memcmp(ASN1_STRING_get0_data(x), ASN1_STRING_get0_data(y),
	    (size_t)(lx < ly ? lx : ly));

	return c != 0 ? c : (lx > ly) - (lx < ly);
}

/*
 * The DER SignedAttributes as signed (RFC 5652 §5.4): SET tag, then the attributes in DER
 * order when `sort` (what i2d of the SignerInfo will write when we sign), else as they are
 * held (what was received, when we verify). `*out` freed with free().
 */
static int signed_attrs_der(CMS_SignerInfo *si, int sort, unsigned char **out, size_t *outlen)
{
	int n = CMS_signed_get_attr_count(si);
	ASN1_STRING **enc = NULL;
	unsigned char hdr[12], *buf = NULL;
	size_t total = 0, hl, off;
	int rc = P11S_OK;

	*out = NULL;
	if (n <= 0) {
		return p11s_error__set(P11S_ERR_MALFORMED, "no signed attributes");
	}
	if ((enc = calloc((size_t)n, sizeof(*enc))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		unsigned char *d = NULL;
		int l = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), &d);

		if (l <= 0 || (enc[i] = ASN1_STRING_new()) == NULL) {
			OPENSSL_free(d);
			rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the signed attributes");
			goto out;
		}
		ASN1_STRING_set0(enc[i], d, l);
		total += (size_t)l;
	}
	if (sort) {
		qsort(enc, (size_t)n, sizeof(*enc), der_cmp);
	}
	hl = p11s_core__der_header(hdr, 0x31, total);
	if ((buf = malloc(hl + total)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	memcpy(buf, hdr, hl);
	off = hl;
	for (int i = 0; i < n; i++) {
		memcpy(buf + off, ASN1_STRING_get0_data(enc[i]), (size_t)ASN1_STRING_length(enc[i]));
		off += (size_t)ASN1_STRING_length(enc[i]);
	}
	*out = buf;
	*outlen = off;
out:
	for (int i = 0; enc != NULL && i < n; i++) {
		ASN1_STRING_free(enc[i]);
	}
	free(enc);
	return rc;
}

int p11s_cms__eddsa_sign(CMS_SignerInfo *si, EVP_PKEY *pkey, OSSL_LIB_CTX *libctx,
    X509 *check)
{
	X509_ALGOR *sigalg = NULL;
	EVP_MD_CTX *m = NULL;
	unsigned char *tbs = NULL, *sig = NULL;
	size_t tbslen = 0, siglen = 0;
	int rc = P11S_OK;

	/* What CMS_SignerInfo_sign() adds: signingTime, unless the caller fixed one. */
	if (CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1) < 0) {
		ASN1_TIME *t = X509_gmtime_adj(NULL, 0);

		if (t == NULL ||
		    CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, t->type, t, -1) <= 0) {
			ASN1_TIME_free(t);
			return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add signingTime");
		}
		ASN1_TIME_free(t);
	}
	/* RFC 8419 §4: id-Ed25519 with the parameters absent. */
	CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &sigalg);
	if (sigalg == NULL || !X509_ALGOR_set0(sigalg, OBJ_nid2obj(NID_ED25519), V_ASN1_UNDEF, NULL)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot set the signature algorithm");
	}
	if ((rc = signed_attrs_der(si, 1, &tbs, &tbslen)) < 0) {
		return rc;
	}
	p11s_error_clear();
	/* One-shot PureEdDSA (no digest name): the bridge sends it to the token as CKM_EDDSA. */
	if ((m = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit_ex(m, NULL, NULL, libctx, NULL, pkey, NULL) != 1 ||
	    EVP_DigestSign(m, NULL, &siglen, tbs, tbslen) != 1 ||
	    (sig = OPENSSL_malloc(siglen)) == NULL ||
	    EVP_DigestSign(m, sig, &siglen, tbs, tbslen) != 1) {
		rc = p11s_error_last()->code != P11S_OK
		         ? p11s_error__prefix("signing: ")
		         : p11s_error__ossl(P11S_ERR_CRYPTO, "Ed25519 signing failed");
		goto out;
	}
	/*
	 * DESIGN.md decision 3 for keys the bridge does not already check: the signature must
	 * verify with the certificate over exactly these bytes (the attributes in DER order,
	 * which is not yet the order they are held in).
	 */
	if (check != NULL) {
		EVP_MD_CTX *v = EVP_MD_CTX_new();
		int ok = v != NULL &&
		         EVP_DigestVerifyInit_ex(v, NULL, NULL, libctx, NULL, X509_get0_pubkey(check),
		             NULL) == 1 &&
		         EVP_DigestVerify(v, sig, siglen, tbs, tbslen) == 1;

		EVP_MD_CTX_free(v);
		if (!ok) {
			rc = p11s_error__ossl(P11S_ERR_TOKEN, "the Ed25519 signature does not verify "
			                                      "with the signer's certificate");
			goto out;
		}
	}
	ASN1_STRING_set0(CMS_SignerInfo_get0_signature(si), sig, (int)siglen);
	sig = NULL;
out:
	OPENSSL_free(sig);
	free(tbs);
	EVP_MD_CTX_free(m);
	return rc;
}

int p11s_cms__is_eddsa_sig(CMS_SignerInfo *si)
{
	X509_ALGOR *sigalg = NULL;
	int nid;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &sigalg);
	nid = sigalg ? OBJ_obj2nid(sigalg->algorithm) : NID_undef;
	return nid == NID_ED25519 || nid == NID_ED448;
}

int p11s_cms__eddsa_verify(CMS_SignerInfo *si, X509 *cert, OSSL_LIB_CTX *libctx, char *why,
    size_t wlen)
{
	X509_ALGOR *sigalg = NULL, *dig = NULL;
	const ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
	EVP_PKEY *pub = X509_get0_pubkey(cert);
	int nid, dnid, want, ok = 0;
	unsigned char *tbs = NULL;
	size_t tbslen = 0;
	EVP_MD_CTX *m = NULL;

	why[0] = '\0';
	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sigalg);
	nid = OBJ_obj2nid(sigalg->algorithm);
	dnid = p11s_cms__digest_nid(dig);
	want = nid == NID_ED25519 ? NID_sha512 : NID_shake256;
	if (sigalg->parameter != NULL) {
		snprintf(why, wlen, "%s with parameters (RFC 8419 section 4: absent)", OBJ_nid2sn(nid));
	} else if (pub == NULL || !EVP_PKEY_is_a(pub, OBJ_nid2sn(nid))) {
		snprintf(why, wlen, "the certificate's key is not an %s key", OBJ_nid2sn(nid));
	} else if (dnid != want) {
		snprintf(why, wlen, "%s signatures use %s as digest algorithm, not %s (RFC 8419 "
		    "section 3)", OBJ_nid2sn(nid), OBJ_nid2ln(want),
		    dnid != NID_undef ? OBJ_nid2ln(dnid) : "an unknown one");
	} else if (CMS_signed_get_attr_count(si) <= 0) {
		snprintf(why, wlen, "an EdDSA SignerInfo without signed attributes is not supported");
	} else if (signed_attrs_der(si, 0, &tbs, &tbslen) < 0) {
		snprintf(why, wlen, "%s", p11s_error_last()->message);
		p11s_error_clear();
	} else if ((m = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit_ex(m, NULL, NULL, libctx, NULL, pub, NULL) != 1) {
		snprintf(why, wlen, "cannot set up %s verification", OBJ_nid2sn(nid));
	} else if (EVP_DigestVerify(m, ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig),
	               tbs, tbslen) != 1) {
		snprintf(why, wlen, "the %s signature does not verify", OBJ_nid2sn(nid));
	} else {
		ok = 1;
	}
	ERR_clear_error();
	EVP_MD_CTX_free(m);
	free(tbs);
	return ok;
}

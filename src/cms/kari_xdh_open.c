/*
 * Decryption for an X25519 or X448 key on a token (RFC 8418), which OpenSSL 3.0's CMS cannot
 * do: it has no key agreement for these keys (CMS_RecipientInfo_kari_decrypt() refuses them:
 * "not supported for this key type") and no HKDF for CMS at all.
 *
 * So the KeyAgreeRecipientInfo is opened here, with OpenSSL's parts:
 *
 *   1. OpenSSL's parse picks our RecipientInfo and RecipientEncryptedKey (RFC 5652 §6.2.2:
 *      rid against our certificate) and gives the originator's ephemeral public key;
 *   2. the DER of the message (i2d, without the content when streaming) is read with the
 *      small ASN.1 templates below for what OpenSSL keeps opaque: the encryptedKey, the
 *      keyEncryptionAlgorithm and the ukm of that KeyAgreeRecipientInfo;
 *   3. Z = X25519/X448(token key, ephemeral key) is computed by the token through the bridge
 *      (CKM_ECDH1_DERIVE, the peer's raw key as public data); KEK = HKDF (salt = the ukm if
 *      sent) or X9.63 KDF of Z with the DER ECC-CMS-SharedInfo (entityUInfo = the ukm;
 *      RFC 8418 §2.2, RFC 5753 §7.2); CEK = AES key unwrap
 *      (RFC 3394) of the encryptedKey;
 *   4. the content key is handed to OpenSSL by the one door it has for a known key: a copy of
 *      the message whose recipientInfos are a single KEKRecipientInfo (§6.2.3) wrapping the
 *      CEK under a random one-time key, opened with CMS_decrypt_set1_key(). The content is
 *      then decrypted as for every other recipient (streamed, GCM tag / CBC padding checked
 *      at the end, nothing published before).
 *
 * A failed unwrap is the uniform "decryption failed" (STANDARDS.md §12); a key encryption
 * algorithm we do not implement is said as such (it does not depend on secret data).
 */
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <p11smime/error.h>

#include "cms/kari_xdh.h"
#include "cms/kari_xdh_int.h"
#include "core/error_int.h"

/* ---- RFC 5652 §6.2.2, as far as OpenSSL keeps it opaque ---------------------------------- */

/* OriginatorPublicKey ::= SEQUENCE { algorithm AlgorithmIdentifier, publicKey BIT STRING } */
typedef struct xdh_opk {
	X509_ALGOR *alg;
	ASN1_BIT_STRING *pub;
} XDH_OPK;

ASN1_SEQUENCE(XDH_OPK) = {
	ASN1_SIMPLE(XDH_OPK, alg, X509_ALGOR),
	ASN1_SIMPLE(XDH_OPK, pub, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(XDH_OPK)

/* originatorKey [1] IMPLICIT OriginatorPublicKey (the only originator RFC 8418 §2 allows) */
ASN1_ITEM_TEMPLATE(XDH_ORIGKEY) =
	ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_IMPLICIT, 1, XDH_ORIGKEY, XDH_OPK)
static_ASN1_ITEM_TEMPLATE_END(XDH_ORIGKEY)

/* RecipientEncryptedKey ::= SEQUENCE { rid KeyAgreeRecipientIdentifier, encryptedKey } */
typedef struct xdh_rek {
	ASN1_TYPE *rid; /* matched by OpenSSL's parse, not here */
	ASN1_OCTET_STRING *ek;
} XDH_REK;

ASN1_SEQUENCE(XDH_REK) = {
	ASN1_SIMPLE(XDH_REK, rid, ASN1_ANY),
	ASN1_SIMPLE(XDH_REK, ek, ASN1_OCTET_STRING),
} static_ASN1_SEQUENCE_END(XDH_REK)

/*
 * KeyAgreeRecipientInfo ::= SEQUENCE { version, originator [0] EXPLICIT, ukm [1] EXPLICIT
 * OPTIONAL, keyEncryptionAlgorithm, recipientEncryptedKeys SEQUENCE OF } — read with the
 * universal SEQUENCE tag in place of its [1] IMPLICIT in the RecipientInfo CHOICE.
 */
typedef struct xdh_kari {
	ASN1_INTEGER *version;
	XDH_OPK *orig;
	ASN1_OCTET_STRING *ukm;
	X509_ALGOR *kea;
	OPENSSL_STACK *reks; /* of XDH_REK */
} XDH_KARI;

ASN1_SEQUENCE(XDH_KARI) = {
	ASN1_SIMPLE(XDH_KARI, version, ASN1_INTEGER),
	ASN1_EXP(XDH_KARI, orig, XDH_ORIGKEY, 0),
	ASN1_EXP_OPT(XDH_KARI, ukm, ASN1_OCTET_STRING, 1),
	ASN1_SIMPLE(XDH_KARI, kea, X509_ALGOR),
	ASN1_SEQUENCE_OF(XDH_KARI, reks, XDH_REK),
} static_ASN1_SEQUENCE_END(XDH_KARI)

/* The key encryption schemes (RFC 8418 §2.2 and §7, RFC 5753 §7.1.4). */
static const struct scheme {
	const char *oid;
	int hkdf;
	const char *digest;
} SCHEMES[] = {
	{ "1.2.840.113549.1.9.16.3.19", 1, "SHA256" }, /* dhSinglePass-stdDH-hkdf-sha256 */
	{ "1.2.840.113549.1.9.16.3.20", 1, "SHA384" },
	{ "1.2.840.113549.1.9.16.3.21", 1, "SHA512" },
	{ "1.3.132.1.11.1", 0, "SHA256" },             /* dhSinglePass-stdDH-sha256kdf */
	{ "1.3.132.1.11.2", 0, "SHA384" },
	{ "1.3.132.1.11.3", 0, "SHA512" },
};

#define ONE_TIME_LEN 32
#define ONE_TIME_ID_LEN 16

static const struct scheme *scheme_of(const ASN1_OBJECT *o)
{
	char txt[64];

	if (OBJ_obj2txt(txt, sizeof(txt), o, 1) <= 0) {
		return NULL;
	}
	for (size_t i = 0; i < sizeof(SCHEMES) / sizeof(SCHEMES[0]); i++) {
		if (strcmp(txt, SCHEMES[i].oid) == 0) {
			return &SCHEMES[i];
		}
	}
	return NULL;
}

/* Our RecipientInfo and the index of our RecipientEncryptedKey in it (OpenSSL's parse). */
static CMS_RecipientInfo *our_kari(CMS_ContentInfo *cms, X509 *cert, int *rek_index)
{
	STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);

	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
		STACK_OF(CMS_RecipientEncryptedKey) *reks;

		if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE) {
			continue;
		}
		reks = CMS_RecipientInfo_kari_get0_reks(ri);
		for (int j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks); j++) {
			if (CMS_RecipientEncryptedKey_cert_cmp(sk_CMS_RecipientEncryptedKey_value(reks, j),
			        cert) == 0) {
				*rek_index = j;
				return ri;
			}
		}
	}
	return NULL;
}

/* Where the recipientInfos SET lies in the DER of a ContentInfo, and what is around it. */
typedef struct layout {
	size_t oid, oid_end;    /* contentType */
	size_t ed_c, ed_end;    /* contents of the (Auth)EnvelopedData SEQUENCE */
	size_t set, set_c, set_end;
} layout;

/* Header of a definite element `id` at *pos, within `end`; its end in *el_end. */
static int elem(const unsigned char *b, size_t end, size_t *pos, int id, size_t *el_end)
{
	long long clen;
	int got;

	if (p11s_cms__der_hdr(b, end, pos, &got, &clen) != 1 || got != id || clen < 0 ||
	    (unsigned long long)clen > end - *pos) {
		return 0;
	}
	*el_end = *pos + (size_t)clen;
	return 1;
}

static int find_layout(const unsigned char *b, size_t len, layout *l)
{
	size_t pos = 0, end, skip;

	/* ContentInfo { contentType, [0] EXPLICIT (Auth)EnvelopedData { version,
	 * originatorInfo [0] OPTIONAL, recipientInfos SET, ... } } (RFC 5652 §3, §6.1) */
	if (!elem(b, len, &pos, 0x30, &end)) {
		return 0;
	}
	l->oid = pos;
	if (!elem(b, end, &pos, 0x06, &skip)) {
		return 0;
	}
	pos = l->oid_end = skip;
	if (!elem(b, end, &pos, 0xA0, &end) || !elem(b, end, &pos, 0x30, &l->ed_end)) {
		return 0;
	}
	l->ed_c = pos;
	if (!elem(b, l->ed_end, &pos, 0x02, &skip)) {
		return 0;
	}
	pos = skip;
	if (pos < l->ed_end && b[pos] == 0xA0) {
		if (!elem(b, l->ed_end, &pos, 0xA0, &skip)) {
			return 0;
		}
		pos = skip;
	}
	l->set = pos;
	if (!elem(b, l->ed_end, &pos, 0x31, &l->set_end)) {
		return 0;
	}
	l->set_c = pos;
	return 1;
}

/* The KeyAgreeRecipientInfo in the SET whose ephemeral key is `pub`, or NULL. */
static XDH_KARI *find_kari(const unsigned char *b, const layout *l, const ASN1_BIT_STRING *pub)
{
	size_t pos = l->set_c;

	while (pos < l->set_end) {
		size_t start = pos, end;
		long long clen;
		int id;

		if (p11s_cms__der_hdr(b, l->set_end, &pos, &id, &clen) != 1 || clen < 0 ||
		    (unsigned long long)clen > l->set_end - pos) {
			return NULL;
		}
		end = pos + (size_t)clen;
		if (id == 0xA1) { /* kari [1] IMPLICIT: read as the SEQUENCE it is */
			unsigned char *copy = OPENSSL_memdup(b + start, end - start);
			const unsigned char *p = copy;
			XDH_KARI *k = NULL;

			if (copy == NULL) {
				return NULL;
			}
			copy[0] = 0x30;
			k = (XDH_KARI *)ASN1_item_d2i(NULL, &p, (long)(end - start),
			    ASN1_ITEM_rptr(XDH_KARI));
			OPENSSL_free(copy);
			ERR_clear_error(); /* another kind of originator: not ours */
			if (k != NULL && k->orig != NULL && ASN1_STRING_cmp(k->orig->pub, pub) == 0) {
				return k;
			}
			ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(XDH_KARI));
		}
		pos = end;
	}
	return NULL;
}

/* Z, computed on the token: X25519/X448 of our key with the ephemeral `pub` (RFC 7748 §6). */
static int shared_secret(EVP_PKEY *pkey, OSSL_LIB_CTX *libctx, const ASN1_BIT_STRING *pub,
    unsigned char *z, size_t *zlen)
{
	const char *type = EVP_PKEY_is_a(pkey, "X448") ? "X448" : "X25519";
	EVP_PKEY *peer = NULL;
	EVP_PKEY_CTX *c = NULL;
	int ok;

	/*
	 * A BIT STRING of whole octets holding the raw key (RFC 8410 §3); a default-provider key,
	 * which OpenSSL hands to the bridge's key management when it is set as the peer.
	 */
	ok = ((pub->flags & ASN1_STRING_FLAG_BITS_LEFT) == 0 || (pub->flags & 0x07) == 0) &&
	    (peer = EVP_PKEY_new_raw_public_key_ex(NULL, type, NULL, pub->data,
	         (size_t)pub->length)) != NULL &&
	    (c = EVP_PKEY_CTX_new_from_pkey(libctx, pkey, NULL)) != NULL &&
	    EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, peer) == 1 &&
	    EVP_PKEY_derive(c, z, zlen) == 1;
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(peer);
	return ok;
}

/*
 * The content key of our RecipientEncryptedKey in `k`: KDF per the keyEncryptionAlgorithm,
 * then AES key unwrap. P11S_OK; P11S_ERR_UNSUPPORTED (a scheme or key wrap we lack);
 * P11S_ERR_DECRYPT (the unwrap failed); the token's error.
 */
static int content_key(const XDH_KARI *k, int rek_index, EVP_PKEY *pkey, OSSL_LIB_CTX *libctx,
    unsigned char *cek, size_t *ceklen)
{
	const struct scheme *sc = scheme_of(k->kea->algorithm);
	const XDH_REK *rek = OPENSSL_sk_value(k->reks, rek_index);
	X509_ALGOR *wrap = NULL;
	unsigned char z[64], kek[32], *si = NULL;
	size_t zlen = sizeof(z), keklen = 0;
	int silen = 0, wrap_nid, rc;

	if (sc == NULL) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED, "key encryption algorithm %s is not "
		    "supported for X25519/X448 (RFC 8418 section 2.2)",
		    OBJ_nid2sn(OBJ_obj2nid(k->kea->algorithm)));
	}
	/* KeyWrapAlgorithm in the parameters (RFC 5753 §7.1.1) */
	if (k->kea->parameter == NULL || k->kea->parameter->type != V_ASN1_SEQUENCE ||
	    (wrap = ASN1_item_unpack(k->kea->parameter->value.sequence,
	         ASN1_ITEM_rptr(X509_ALGOR))) == NULL) {
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_MALFORMED, "the X25519/X448 recipient has no key "
		                                           "wrap algorithm");
	}
	wrap_nid = OBJ_obj2nid(wrap->algorithm);
	keklen = wrap_nid == NID_id_aes128_wrap ? 16 : wrap_nid == NID_id_aes192_wrap ? 24
	    : wrap_nid == NID_id_aes256_wrap                                           ? 32
	                                                                               : 0;
	if (keklen == 0) {
		rc = p11s_error__set(P11S_ERR_UNSUPPORTED, "key wrap algorithm %s is not supported",
		    OBJ_nid2sn(wrap_nid));
		goto out;
	}
	if (rek == NULL || rek->ek->length < 24 || rek->ek->length > 40 ||
	    rek->ek->length % 8 != 0) {
		rc = p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
		goto out;
	}
	if (!shared_secret(pkey, libctx, k->orig->pub, z, &zlen)) {
		/* The bridge recorded a token error; else the ephemeral key was unusable. */
		rc = p11s_error_last()->code != P11S_OK ? p11s_error_last()->code
		    : p11s_error__ossl(P11S_ERR_DECRYPT, "decryption failed");
		goto out;
	}
	/* ECC-CMS-SharedInfo { keyInfo = the key wrap as sent, entityUInfo = ukm, suppPubInfo } */
	if ((silen = CMS_SharedInfo_encode(&si, wrap, k->ukm, (int)keklen)) <= 0 ||
	    !p11s_cms__xdh_kdf(sc->hkdf, sc->digest, z, zlen, k->ukm ? k->ukm->data : NULL,
	        k->ukm ? (size_t)k->ukm->length : 0, si, (size_t)silen, kek, keklen)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "the RFC 8418 key derivation failed");
		goto out;
	}
	if (!p11s_cms__aes_wrap(0, kek, keklen, rek->ek->data, (size_t)rek->ek->length, cek,
	        ceklen)) {
		ERR_clear_error();
		rc = p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
		goto out;
	}
	rc = P11S_OK;
out:
	OPENSSL_cleanse(z, sizeof(z));
	OPENSSL_cleanse(kek, sizeof(kek));
	OPENSSL_free(si);
	X509_ALGOR_free(wrap);
	return rc;
}

/*
 * The message `b` (layout `l`) with its recipientInfos replaced by one KEKRecipientInfo
 * { version 4, kekid { id }, id-aes256-wrap, AES-KW(one-time key, cek) } (RFC 5652 §6.2.3),
 * parsed in `libctx`; NULL with the error recorded.
 */
static CMS_ContentInfo *with_kekri(const unsigned char *b, const layout *l, OSSL_LIB_CTX *libctx,
    const unsigned char *one, const unsigned char *id, const unsigned char *cek, size_t ceklen)
{
	p11s_cms_der kekri = { 0 }, inner = { 0 }, set = { 0 }, ed = { 0 }, ex = { 0 }, ci = { 0 },
	             out = { 0 };
	unsigned char wrapped[48];
	size_t wlen = 0;
	CMS_ContentInfo *cms = NULL;
	const unsigned char *p;

	if (!p11s_cms__aes_wrap(1, one, ONE_TIME_LEN, cek, ceklen, wrapped, &wlen)) {
		p11s_error__ossl(P11S_ERR_CRYPTO, "AES key wrap failed");
		return NULL;
	}
	p11s_cms__der_tlv(&kekri, 0x02, "\x04", 1);
	p11s_cms__der_tlv(&inner, 0x04, id, ONE_TIME_ID_LEN);
	p11s_cms__der_wrap(&kekri, 0x30, &inner); /* KEKIdentifier */
	p11s_cms__der_oid(&inner, "2.16.840.1.101.3.4.1.45"); /* id-aes256-wrap, RFC 3565 §2.3.2 */
	p11s_cms__der_wrap(&kekri, 0x30, &inner);
	p11s_cms__der_tlv(&kekri, 0x04, wrapped, wlen);
	p11s_cms__der_wrap(&set, 0xA2, &kekri);
	/* version and originatorInfo as they were, the new SET, the rest as it was */
	p11s_cms__der_put(&ed, b + l->ed_c, l->set - l->ed_c);
	p11s_cms__der_wrap(&ed, 0x31, &set);
	p11s_cms__der_put(&ed, b + l->set_end, l->ed_end - l->set_end);
	p11s_cms__der_wrap(&ex, 0x30, &ed);
	p11s_cms__der_put(&ci, b + l->oid, l->oid_end - l->oid);
	p11s_cms__der_wrap(&ci, 0xA0, &ex);
	p11s_cms__der_wrap(&out, 0x30, &ci);
	OPENSSL_cleanse(wrapped, sizeof(wrapped));
	if (out.oom) {
		p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	} else if ((cms = CMS_ContentInfo_new_ex(libctx, NULL)) == NULL ||
	           (p = out.p, d2i_CMS_ContentInfo(&cms, &p, (long)out.len)) == NULL) {
		CMS_ContentInfo_free(cms);
		cms = NULL;
		p11s_error__ossl(P11S_ERR_CRYPTO, "cannot rebuild the message for its content key");
	}
	OPENSSL_clear_free(out.p, out.cap);
	return cms;
}

int p11s_cms__xdh_open(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert, OSSL_LIB_CTX *libctx,
    CMS_ContentInfo **out)
{
	ASN1_BIT_STRING *pub = NULL;
	X509_ALGOR *oalg = NULL;
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *serial = NULL;
	CMS_RecipientInfo *ri;
	XDH_KARI *k = NULL;
	unsigned char *der = NULL, cek[32], one[ONE_TIME_LEN], id[ONE_TIME_ID_LEN];
	size_t ceklen = 0;
	layout l;
	int n, j = -1, rc;

	*out = NULL;
	if ((ri = our_kari(cms, cert, &j)) == NULL) {
		return p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
	}
	/* RFC 8418 §2: the originator is an ephemeral key of the recipient's type (RFC 8410). */
	if (CMS_RecipientInfo_kari_get0_orig_id(ri, &oalg, &pub, &keyid, &issuer, &serial) != 1 ||
	    pub == NULL || oalg == NULL ||
	    OBJ_obj2nid(oalg->algorithm) != (EVP_PKEY_is_a(pkey, "X448") ? NID_X448 : NID_X25519)) {
		return p11s_error__set(P11S_ERR_MALFORMED, "the X25519/X448 recipient's originator "
		                                           "is not an ephemeral key of its type");
	}
	if ((n = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
		return p11s_error__ossl(P11S_ERR_NOMEM, "cannot encode the message");
	}
	if (!find_layout(der, (size_t)n, &l) || (k = find_kari(der, &l, pub)) == NULL ||
	    j >= OPENSSL_sk_num(k->reks)) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "the X25519/X448 recipient cannot be read");
		goto out;
	}
	if ((rc = content_key(k, j, pkey, libctx, cek, &ceklen)) < 0) {
		goto out;
	}
	if (RAND_priv_bytes(one, sizeof(one)) != 1 || RAND_bytes(id, sizeof(id)) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "no random octets");
		goto out;
	}
	if ((*out = with_kekri(der, &l, libctx, one, id, cek, ceklen)) == NULL) {
		rc = p11s_error_last()->code;
		goto out;
	}
	if (CMS_decrypt_set1_key(*out, one, sizeof(one), id, sizeof(id)) != 1) {
		CMS_ContentInfo_free(*out);
		*out = NULL;
		ERR_clear_error();
		rc = p11s_error__set(P11S_ERR_DECRYPT, "decryption failed");
		goto out;
	}
	rc = P11S_OK;
out:
	OPENSSL_cleanse(cek, sizeof(cek));
	OPENSSL_cleanse(one, sizeof(one));
	ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(XDH_KARI));
	OPENSSL_clear_free(der, n > 0 ? (size_t)n : 0);
	return rc;
}

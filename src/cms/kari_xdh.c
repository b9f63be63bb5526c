/*
 * X25519 and X448 recipients (RFC 8418) for the encryption that OpenSSL 3.0's CMS streams.
 *
 * OpenSSL 3.0 has no key agreement for these keys in CMS (openssl#22388), and its recipient
 * infos are opaque. What it does have: a KEKRecipientInfo (RFC 5652 §6.2.3) with a key of our
 * choosing, encrypted when BIO_new_NDEF() starts the encoder, and encoded only when the first
 * octet of content is written. So each X25519/X448 recipient becomes a placeholder KEKRI with
 * a random 256-bit key and identifier; a filter BIO between the encoder and the output holds
 * the encoding back until the recipientInfos SET is complete, takes the content-encryption
 * key out of the placeholder (AES key unwrap, RFC 3394), and writes in its place the
 * KeyAgreeRecipientInfo of RFC 8418 §2:
 *
 *   [1] IMPLICIT SEQUENCE { version 3, originator [0] { [1] originatorKey { id-X25519,
 *       ephemeral public key } }, keyEncryptionAlgorithm { dhSinglePass-stdDH-hkdf-sha256-
 *       scheme, aes256-wrap }, recipientEncryptedKeys { { issuerAndSerialNumber,
 *       AES-wrap(KEK, CEK) } } }
 *
 * with KEK = HKDF(salt absent, Z, DER(ECC-CMS-SharedInfo)) (§2.2, RFC 5869) or the X9.63 KDF
 * (RFC 5753 §7.2), Z the X25519/X448 shared secret (RFC 7748), the key wrap the size of the
 * content key (RFC 8551 §2.3). No ukm is sent (optional, §2). Only the SET, whose length is
 * definite, changes; the ContentInfo and (Auth)EnvelopedData around it have indefinite lengths
 * in a streamed encoding, and the version (2 for EnvelopedData with a KEKRI or a KARI, 0 for
 * AuthEnvelopedData) is the same for both, so the rest of the encoding stands as written.
 */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <p11smime/error.h>

#include "cms/kari_xdh.h"
#include "cms/kari_xdh_int.h"
#include "core/error_int.h"

#define KEK_LEN 32 /* the placeholder's key: AES-256 key wrap */
#define ID_LEN 16
#define PREFIX_MAX (1024 * 1024) /* recipientInfos of P11S_MAX_RECIPIENTS certificates */

/* RFC 8418 §2.2 and §7: X25519 with SHA-256, X448 with SHA-512. */
typedef struct xdh_alg {
	const char *name;      /* OpenSSL key type */
	const char *oid;       /* id-X25519 / id-X448 (RFC 8410) */
	const char *hkdf_oid;  /* dhSinglePass-stdDH-hkdf-sha256/sha512-scheme */
	const char *x963_oid;  /* dhSinglePass-stdDH-sha256kdf/sha512kdf-scheme */
	const char *digest;
} xdh_alg;

static const xdh_alg ALGS[] = {
	{ "X25519", "1.3.101.110", "1.2.840.113549.1.9.16.3.19", "1.3.132.1.11.1", "SHA256" },
	{ "X448", "1.3.101.111", "1.2.840.113549.1.9.16.3.21", "1.3.132.1.11.3", "SHA512" },
};

typedef struct placeholder {
	unsigned char kek[KEK_LEN];
	unsigned char id[ID_LEN];
	X509 *cert;
	const xdh_alg *alg;
} placeholder;

struct p11s_cms_xdh {
	p11s_xdh_kdf kdf;
	placeholder *ph;
	size_t n;
	BIO *next;
	unsigned char *buf; /* the encoding held back */
	size_t len, cap;
	int done;
	int status;
};

typedef p11s_cms_der der;

void p11s_cms__der_put(der *d, const void *src, size_t n)
{
	if (d->oom) {
		return;
	}
	if (d->len + n > d->cap) {
		size_t cap = (d->len + n) * 2 + 64;
		unsigned char *q = OPENSSL_clear_realloc(d->p, d->cap, cap);

		if (q == NULL) {
			d->oom = 1;
			return;
		}
		d->p = q;
		d->cap = cap;
	}
	memcpy(d->p + d->len, src, n);
	d->len += n;
}

/* Identifier and definite length (X.690 §8.1.2–8.1.3), then the contents. */
void p11s_cms__der_tlv(der *d, int id, const void *content, size_t n)
{
	unsigned char h[10];
	size_t k = 0;

	h[k++] = (unsigned char)id;
	if (n < 0x80) {
		h[k++] = (unsigned char)n;
	} else {
		int bytes = 0;

		for (size_t v = n; v > 0; v >>= 8) {
			bytes++;
		}
		h[k++] = (unsigned char)(0x80 | bytes);
		for (int i = bytes - 1; i >= 0; i--) {
			h[k++] = (unsigned char)(n >> (8 * i));
		}
	}
	p11s_cms__der_put(d, h, k);
	p11s_cms__der_put(d, content, n);
}

/* Wrap all of `inner` as one element `id` appended to `d`; `inner` is freed. */
void p11s_cms__der_wrap(der *d, int id, der *inner)
{
	if (inner->oom) {
		d->oom = 1;
	} else {
		p11s_cms__der_tlv(d, id, inner->p, inner->len);
	}
	OPENSSL_clear_free(inner->p, inner->cap);
	memset(inner, 0, sizeof(*inner));
}

/* The DER of an OBJECT IDENTIFIER given in dotted form. */
void p11s_cms__der_oid(der *d, const char *dotted)
{
	ASN1_OBJECT *o = OBJ_txt2obj(dotted, 1);
	unsigned char *enc = NULL;
	int n;

	if (o == NULL || (n = i2d_ASN1_OBJECT(o, &enc)) <= 0) {
		d->oom = 1;
	} else {
		p11s_cms__der_put(d, enc, (size_t)n);
	}
	OPENSSL_free(enc);
	ASN1_OBJECT_free(o);
}

int p11s_cms__is_xdh(const EVP_PKEY *pk)
{
	return pk != NULL && (EVP_PKEY_is_a(pk, "X25519") || EVP_PKEY_is_a(pk, "X448"));
}

p11s_cms_xdh *p11s_cms__xdh_new(p11s_xdh_kdf kdf)
{
	p11s_cms_xdh *x = OPENSSL_zalloc(sizeof(*x));

	if (x != NULL) {
		x->kdf = kdf;
	}
	return x;
}

void p11s_cms__xdh_free(p11s_cms_xdh *x)
{
	if (x == NULL) {
		return;
	}
	for (size_t i = 0; i < x->n; i++) {
		X509_free(x->ph[i].cert);
	}
	OPENSSL_clear_free(x->ph, x->n * sizeof(*x->ph));
	OPENSSL_clear_free(x->buf, x->cap);
	OPENSSL_free(x);
}

size_t p11s_cms__xdh_count(const p11s_cms_xdh *x)
{
	return x != NULL ? x->n : 0;
}

int p11s_cms__xdh_add(p11s_cms_xdh *x, CMS_ContentInfo *cms, X509 *cert, const char *name)
{
	EVP_PKEY *pk = X509_get0_pubkey(cert);
	unsigned char *kek = NULL, *id = NULL;
	const xdh_alg *alg = NULL;
	placeholder *ph;

	for (size_t i = 0; i < sizeof(ALGS) / sizeof(ALGS[0]); i++) {
		if (pk != NULL && EVP_PKEY_is_a(pk, ALGS[i].name)) {
			alg = &ALGS[i];
		}
	}
	if (alg == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "recipient %s: not an X25519/X448 key", name);
	}
	/* clear_realloc: the old block, which holds keys, is cleansed when it moves. */
	if ((ph = OPENSSL_clear_realloc(x->ph, x->n * sizeof(*ph), (x->n + 1) * sizeof(*ph))) ==
	    NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	x->ph = ph;
	ph = &x->ph[x->n];
	memset(ph, 0, sizeof(*ph));
	if ((kek = OPENSSL_secure_malloc(KEK_LEN)) == NULL || (id = OPENSSL_malloc(ID_LEN)) == NULL ||
	    RAND_priv_bytes(ph->kek, KEK_LEN) != 1 || RAND_bytes(ph->id, ID_LEN) != 1) {
		OPENSSL_secure_clear_free(kek, KEK_LEN);
		OPENSSL_free(id);
		OPENSSL_cleanse(ph, sizeof(*ph));
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot make a key for recipient %s", name);
	}
	memcpy(kek, ph->kek, KEK_LEN);
	memcpy(id, ph->id, ID_LEN);
	/* CMS_add0_recipient_key() takes `kek` and `id`; NID_undef: AES-256 wrap for 32 octets. */
	if (CMS_add0_recipient_key(cms, NID_undef, kek, KEK_LEN, id, ID_LEN, NULL, NULL, NULL) ==
	    NULL) {
		OPENSSL_secure_clear_free(kek, KEK_LEN);
		OPENSSL_free(id);
		OPENSSL_cleanse(ph, sizeof(*ph));
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add recipient %s", name);
	}
	if (!X509_up_ref(cert)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "X509_up_ref failed");
	}
	ph->cert = cert;
	ph->alg = alg;
	x->n++;
	return P11S_OK;
}

/* One AES key wrap or unwrap (RFC 3394, default IV) of `in` under `key` (16/24/32 octets). */
int p11s_cms__aes_wrap(int enc, const unsigned char *key, size_t keylen, const unsigned char *in,
    size_t inlen, unsigned char *out, size_t *outlen)
{
	const char *name = keylen == 16 ? "AES-128-WRAP" : keylen == 24 ? "AES-192-WRAP"
	                                                                 : "AES-256-WRAP";
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, ok;

	ok = c != NULL && ctx != NULL;
	if (ok) {
		EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		ok = EVP_CipherInit_ex2(ctx, c, key, NULL, enc, NULL) == 1 &&
		     EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) == 1 && n > 0;
	}
	*outlen = ok ? (size_t)n : 0;
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(c);
	return ok;
}

int p11s_cms__xdh_kdf(int hkdf, const char *digest, const unsigned char *z, size_t zlen,
    const unsigned char *salt, size_t saltlen, const unsigned char *info, size_t infolen,
    unsigned char *kek, size_t keklen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, hkdf ? "HKDF" : "X963KDF", NULL);
	EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM p[5], *q = p;
	int ok;

	*q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0);
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, zlen);
	/* HKDF's info and X9.63's SharedInfo are both "info" to OpenSSL's KDFs. */
	*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
	/* Without a salt, HKDF keys the HMAC with HashLen zero octets (RFC 5869 §2.2). */
	if (hkdf && salt != NULL) {
		*q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
	}
	*q = OSSL_PARAM_construct_end();
	ok = kctx != NULL && EVP_KDF_derive(kctx, kek, keklen, p) == 1;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok;
}

/* The KeyAgreeRecipientInfo of placeholder `ph` for content key `cek`, appended to `out`. */
static int build_kari(const p11s_cms_xdh *x, const placeholder *ph, const unsigned char *cek,
    size_t ceklen, der *out)
{
	const xdh_alg *alg = ph->alg;
	int wrap_nid = ceklen == 16 ? NID_id_aes128_wrap : ceklen == 24 ? NID_id_aes192_wrap
	                                                                 : NID_id_aes256_wrap;
	EVP_PKEY *eph = NULL;
	EVP_PKEY_CTX *dctx = NULL;
	X509_ALGOR *wrap = NULL;
	unsigned char z[64], kek[32], ekey[48], pub[64], *si = NULL, *enc = NULL;
	size_t zlen = sizeof(z), ekeylen = 0, publen = sizeof(pub);
	der kari = { 0 }, orig = { 0 }, okey = { 0 }, alg_id = { 0 }, kea = { 0 }, reks = { 0 },
	    rek = { 0 }, rid = { 0 };
	int silen, n, rc = P11S_ERR_CRYPTO;

	/* Ephemeral key and shared secret Z (RFC 7748 §6; an all-zero Z fails the derive). */
	if ((eph = EVP_PKEY_Q_keygen(NULL, NULL, alg->name)) == NULL ||
	    (dctx = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL)) == NULL ||
	    EVP_PKEY_derive_init(dctx) != 1 ||
	    EVP_PKEY_derive_set_peer(dctx, X509_get0_pubkey(ph->cert)) != 1 ||
	    EVP_PKEY_derive(dctx, z, &zlen) != 1 ||
	    EVP_PKEY_get_raw_public_key(eph, pub, &publen) != 1) {
		goto out;
	}
	/* ECC-CMS-SharedInfo { keyInfo = the key wrap, suppPubInfo = its key size in bits }. */
	if ((wrap = X509_ALGOR_new()) == NULL ||
	    !X509_ALGOR_set0(wrap, OBJ_nid2obj(wrap_nid), V_ASN1_UNDEF, NULL) ||
	    (silen = CMS_SharedInfo_encode(&si, wrap, NULL, (int)ceklen)) <= 0 ||
	    !p11s_cms__xdh_kdf(x->kdf == P11S_XDH_KDF_HKDF, alg->digest, z, zlen, NULL, 0, si,
	        (size_t)silen, kek, ceklen) ||
	    !p11s_cms__aes_wrap(1, kek, ceklen, cek, ceklen, ekey, &ekeylen)) {
		goto out;
	}
	/* rid: issuerAndSerialNumber (RFC 5652 §6.2.2). */
	if ((n = i2d_X509_NAME(X509_get_issuer_name(ph->cert), &enc)) <= 0) {
		goto out;
	}
	p11s_cms__der_put(&rid, enc, (size_t)n);
	OPENSSL_free(enc);
	enc = NULL;
	if ((n = i2d_ASN1_INTEGER(X509_get0_serialNumber(ph->cert), &enc)) <= 0) {
		goto out;
	}
	p11s_cms__der_put(&rid, enc, (size_t)n);
	OPENSSL_free(enc);
	enc = NULL;
	p11s_cms__der_wrap(&rek, 0x30, &rid);
	p11s_cms__der_tlv(&rek, 0x04, ekey, ekeylen);
	p11s_cms__der_wrap(&reks, 0x30, &rek); /* RecipientEncryptedKey */
	/* keyEncryptionAlgorithm { scheme, KeyWrapAlgorithm } */
	p11s_cms__der_oid(&kea, x->kdf == P11S_XDH_KDF_HKDF ? alg->hkdf_oid : alg->x963_oid);
	if ((n = i2d_X509_ALGOR(wrap, &enc)) <= 0) {
		goto out;
	}
	p11s_cms__der_put(&kea, enc, (size_t)n);
	OPENSSL_free(enc);
	enc = NULL;
	/* originator [0] EXPLICIT originatorKey [1] IMPLICIT { id-X25519 (no parameters), key } */
	p11s_cms__der_oid(&alg_id, alg->oid);
	p11s_cms__der_wrap(&okey, 0x30, &alg_id);
	{
		unsigned char bits[65];

		bits[0] = 0; /* no unused bits */
		memcpy(bits + 1, pub, publen);
		p11s_cms__der_tlv(&okey, 0x03, bits, publen + 1);
	}
	p11s_cms__der_wrap(&orig, 0xA1, &okey);
	p11s_cms__der_tlv(&kari, 0x02, "\x03", 1);
	p11s_cms__der_wrap(&kari, 0xA0, &orig);
	p11s_cms__der_wrap(&kari, 0x30, &kea);
	p11s_cms__der_wrap(&kari, 0x30, &reks); /* recipientEncryptedKeys: SEQUENCE OF, one */
	p11s_cms__der_wrap(out, 0xA1, &kari);
	rc = out->oom ? P11S_ERR_NOMEM : P11S_OK;
out:
	OPENSSL_cleanse(z, sizeof(z));
	OPENSSL_cleanse(kek, sizeof(kek));
	OPENSSL_free(si);
	OPENSSL_free(enc);
	X509_ALGOR_free(wrap);
	EVP_PKEY_CTX_free(dctx);
	EVP_PKEY_free(eph);
	OPENSSL_clear_free(kari.p, kari.cap);
	OPENSSL_clear_free(orig.p, orig.cap);
	OPENSSL_clear_free(okey.p, okey.cap);
	OPENSSL_clear_free(alg_id.p, alg_id.cap);
	OPENSSL_clear_free(kea.p, kea.cap);
	OPENSSL_clear_free(reks.p, reks.cap);
	OPENSSL_clear_free(rek.p, rek.cap);
	OPENSSL_clear_free(rid.p, rid.cap);
	if (rc == P11S_ERR_CRYPTO) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "X25519/X448 key agreement failed");
	}
	return rc == P11S_OK ? P11S_OK : p11s_error__set(rc, "out of memory");
}

/*
 * One header at b[*pos] (low tag numbers, as DER and OpenSSL's streamed BER use): 1 with
 * the identifier, the length (or -1 for indefinite) and *pos after the header; 0 if `len`
 * octets are not enough yet; -1 if malformed.
 */
int p11s_cms__der_hdr(const unsigned char *b, size_t len, size_t *pos, int *id, long long *clen)
{
	size_t p = *pos;
	unsigned long long v = 0;
	int k;

	if (p + 2 > len) {
		return 0;
	}
	*id = b[p++];
	if ((*id & 0x1f) == 0x1f) {
		return -1;
	}
	if (b[p] < 0x80) {
		*clen = b[p++];
	} else if (b[p] == 0x80) {
		*clen = -1;
		p++;
	} else {
		k = b[p++] & 0x7f;
		if (k > 4) {
			return -1;
		}
		if (p + (size_t)k > len) {
			return 0;
		}
		while (k-- > 0) {
			v = (v << 8) | b[p++];
		}
		*clen = (long long)v;
	}
	*pos = p;
	return 1;
}

/* Expect element `id` (indefinite if `indef`); skip it when `skip`. As p11s_cms__der_hdr(). */
static int expect(const unsigned char *b, size_t len, size_t *pos, int id, int indef, int skip)
{
	long long clen;
	int got, r = p11s_cms__der_hdr(b, len, pos, &got, &clen);

	if (r <= 0) {
		return r;
	}
	if (got != id || (indef != (clen < 0))) {
		return -1;
	}
	if (skip) {
		if (*pos + (size_t)clen > len) {
			return 0;
		}
		*pos += (size_t)clen;
	}
	return 1;
}

/*
 * The placeholder's content key, if `el` (one RecipientInfo, definite) is a KEKRI of ours:
 * KEKRecipientInfo { version 4, kekid { keyIdentifier OCTET STRING, ... },
 * keyEncryptionAlgorithm, encryptedKey OCTET STRING } (RFC 5652 §6.2.3). 1 with the
 * placeholder and key, 0 if not ours, -1 if it cannot be read.
 */
static int placeholder_key(const p11s_cms_xdh *x, const unsigned char *el, size_t ellen,
    const placeholder **which, unsigned char *cek, size_t *ceklen)
{
	size_t p = 0, idend;
	long long clen;
	int id;

	if (p11s_cms__der_hdr(el, ellen, &p, &id, &clen) != 1 || id != 0xA2) {
		return 0;
	}
	if (expect(el, ellen, &p, 0x02, 0, 1) != 1 || p11s_cms__der_hdr(el, ellen, &p, &id, &clen) != 1 ||
	    id != 0x30 || clen < 0) {
		return -1;
	}
	idend = p + (size_t)clen;
	if (idend > ellen || p11s_cms__der_hdr(el, idend, &p, &id, &clen) != 1 || id != 0x04 || clen != ID_LEN ||
	    p + ID_LEN > idend) {
		return 0;
	}
	for (size_t i = 0; i < x->n; i++) {
		if (CRYPTO_memcmp(el + p, x->ph[i].id, ID_LEN) == 0) {
			*which = &x->ph[i];
			p = idend;
			if (expect(el, ellen, &p, 0x30, 0, 1) != 1 ||
			    p11s_cms__der_hdr(el, ellen, &p, &id, &clen) != 1 || id != 0x04 || clen < 24 ||
			    clen > 40 || p + (size_t)clen > ellen ||
			    !p11s_cms__aes_wrap(0, x->ph[i].kek, KEK_LEN, el + p, (size_t)clen, cek, ceklen)) {
				return -1;
			}
			return 1;
		}
	}
	return 0;
}

/*
 * Rewrite the held-back encoding if its recipientInfos are complete: 1 when done (the result
 * went to x->next), 0 if more octets are needed, or an error.
 */
static int try_rewrite(p11s_cms_xdh *x)
{
	const unsigned char *b = x->buf;
	size_t pos = 0, set_start, set_end, found = 0;
	long long clen;
	int id, r;
	der set = { 0 }, out = { 0 };

	/* ContentInfo { contentType, [0] { (Auth)EnvelopedData { version, [0] orig? ... */
	if ((r = expect(b, x->len, &pos, 0x30, 1, 0)) != 1 ||
	    (r = expect(b, x->len, &pos, 0x06, 0, 1)) != 1 ||
	    (r = expect(b, x->len, &pos, 0xA0, 1, 0)) != 1 ||
	    (r = expect(b, x->len, &pos, 0x30, 1, 0)) != 1 ||
	    (r = expect(b, x->len, &pos, 0x02, 0, 1)) != 1) {
		goto end;
	}
	if (pos < x->len && b[pos] == 0xA0 && (r = expect(b, x->len, &pos, 0xA0, 0, 1)) != 1) {
		goto end;
	}
	set_start = pos;
	if ((r = p11s_cms__der_hdr(b, x->len, &pos, &id, &clen)) != 1) {
		goto end;
	}
	if (id != 0x31 || clen < 0) {
		r = -1;
		goto end;
	}
	if (pos + (size_t)clen > x->len) {
		r = 0;
		goto end;
	}
	set_end = pos + (size_t)clen;
	while (pos < set_end) {
		size_t el = pos;
		const placeholder *ph = NULL;
		unsigned char cek[32];
		size_t ceklen = 0;

		if (p11s_cms__der_hdr(b, set_end, &pos, &id, &clen) != 1 || clen < 0 ||
		    pos + (size_t)clen > set_end) {
			r = -1;
			goto end;
		}
		pos += (size_t)clen;
		r = placeholder_key(x, b + el, pos - el, &ph, cek, &ceklen);
		if (r < 0 || (r == 1 && ceklen != 16 && ceklen != 24 && ceklen != 32)) {
			OPENSSL_cleanse(cek, sizeof(cek));
			r = -1;
			goto end;
		}
		if (r == 1) {
			r = build_kari(x, ph, cek, ceklen, &set);
			OPENSSL_cleanse(cek, sizeof(cek));
			if (r < 0) {
				goto end_rc;
			}
			found++;
		} else {
			p11s_cms__der_put(&set, b + el, pos - el);
		}
	}
	if (found != x->n) {
		r = -1;
		goto end;
	}
	p11s_cms__der_put(&out, b, set_start);
	p11s_cms__der_wrap(&out, 0x31, &set);
	p11s_cms__der_put(&out, b + set_end, x->len - set_end);
	if (out.oom) {
		r = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto end_rc;
	}
	if (BIO_write(x->next, out.p, (int)out.len) != (int)out.len) {
		r = p11s_error__ossl(P11S_ERR_IO, "writing the message failed");
		goto end_rc;
	}
	r = 1;
	goto end_rc;
end:
	if (r < 0) {
		r = p11s_error__set(P11S_ERR_CRYPTO,
		    "internal: the CMS encoder's recipientInfos could not be rewritten");
	} else if (r == 0 && x->len > PREFIX_MAX) {
		r = p11s_error__set(P11S_ERR_CRYPTO, "internal: recipientInfos too large");
	}
end_rc:
	OPENSSL_clear_free(set.p, set.cap);
	OPENSSL_clear_free(out.p, out.cap);
	return r;
}

static int filter_write(BIO *b, const char *data, int n)
{
	p11s_cms_xdh *x = BIO_get_data(b);
	int r;

	if (x->status < 0 || n < 0) {
		return -1;
	}
	if (x->done) {
		return BIO_write(x->next, data, n);
	}
	if (x->len + (size_t)n > x->cap) {
		size_t cap = (x->len + (size_t)n) * 2;
		unsigned char *q = OPENSSL_clear_realloc(x->buf, x->cap, cap);

		if (q == NULL) {
			x->status = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			return -1;
		}
		x->buf = q;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, (size_t)n);
	x->len += (size_t)n;
	if ((r = try_rewrite(x)) < 0) {
		x->status = r;
		return -1;
	}
	if (r == 1) {
		x->done = 1;
		OPENSSL_clear_free(x->buf, x->cap);
		x->buf = NULL;
		x->len = x->cap = 0;
	}
	return n;
}

static long filter_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	p11s_cms_xdh *x = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_PUSH:
	case BIO_CTRL_POP:
		return 1;
	case BIO_CTRL_FLUSH:
		/* The end of the encoding with the recipientInfos never complete: nothing valid. */
		if (!x->done) {
			if (x->status == P11S_OK) {
				x->status = p11s_error__set(P11S_ERR_CRYPTO,
				    "internal: the CMS encoder wrote no recipientInfos");
			}
			return 0;
		}
		return BIO_flush(x->next);
	default:
		return BIO_ctrl(x->next, cmd, num, ptr);
	}
}

static int filter_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int filter_destroy(BIO *b)
{
	(void)b;
	return 1;
}

static BIO_METHOD *filter_meth;
static CRYPTO_ONCE filter_once = CRYPTO_ONCE_STATIC_INIT;

/* Made once per process and kept (the library is used from several threads). */
static void filter_init(void)
{
	BIO_METHOD *n = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "p11s xdh kari");

	if (n == NULL || !BIO_meth_set_write(n, filter_write) ||
	    !BIO_meth_set_ctrl(n, filter_ctrl) || !BIO_meth_set_create(n, filter_create) ||
	    !BIO_meth_set_destroy(n, filter_destroy)) {
		BIO_meth_free(n);
		return;
	}
	filter_meth = n;
}

static BIO_METHOD *filter_method(void)
{
	return CRYPTO_THREAD_run_once(&filter_once, filter_init) ? filter_meth : NULL;
}

BIO *p11s_cms__xdh_filter(p11s_cms_xdh *x, BIO *next)
{
	BIO_METHOD *m = filter_method();
	BIO *b = m != NULL ? BIO_new(m) : NULL;

	if (b == NULL) {
		p11s_error__ossl(P11S_ERR_NOMEM, "out of memory");
		return NULL;
	}
	x->next = next;
	BIO_set_data(b, x);
	return b;
}

int p11s_cms__xdh_status(const p11s_cms_xdh *x)
{
	if (x->status < 0) {
		return x->status;
	}
	if (!x->done) {
		return p11s_error__set(P11S_ERR_CRYPTO,
		    "internal: the CMS encoder wrote no recipientInfos");
	}
	return P11S_OK;
}

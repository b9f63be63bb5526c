/*
 * What the two halves of the X25519/X448 recipient code share (kari_xdh.c writes the
 * KeyAgreeRecipientInfo, kari_xdh_open.c reads it on decryption): a DER builder, a header
 * reader, AES key wrap and the RFC 8418 KDFs. Internal to src/cms/.
 */
#ifndef P11S_CMS_KARI_XDH_INT_H
#define P11S_CMS_KARI_XDH_INT_H

#include <stddef.h>

/* A growing DER buffer; `oom` once an allocation failed (every later call is a no-op). */
typedef struct p11s_cms_der {
	unsigned char *p;
	size_t len, cap;
	int oom;
} p11s_cms_der;

/* Append `n` octets. The buffer is cleansed when it moves (it may hold keys). */
void p11s_cms__der_put(p11s_cms_der *d, const void *src, size_t n);

/* Append identifier `id`, the definite length of `n` (X.690 §8.1.3) and the contents. */
void p11s_cms__der_tlv(p11s_cms_der *d, int id, const void *content, size_t n);

/* Append all of `inner` as one element `id`; `inner` is cleansed and freed. */
void p11s_cms__der_wrap(p11s_cms_der *d, int id, p11s_cms_der *inner);

/* Append the DER of an OBJECT IDENTIFIER given in dotted form. */
void p11s_cms__der_oid(p11s_cms_der *d, const char *dotted);

/*
 * One header at b[*pos] (low tag numbers): 1 with the identifier, the length (-1 for
 * indefinite) and *pos after the header; 0 if `len` octets are not enough; -1 if malformed.
 */
int p11s_cms__der_hdr(const unsigned char *b, size_t len, size_t *pos, int *id,
    long long *clen);

/* AES key wrap (`enc` 1) or unwrap (0), RFC 3394 with the default IV; 1 on success. */
int p11s_cms__aes_wrap(int enc, const unsigned char *key, size_t keylen,
    const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen);

/*
 * KEK = HKDF (`hkdf` 1, RFC 5869; salt = the ukm when there is one, RFC 8418 §2.2) or the
 * ANSI X9.63 KDF (0) with digest `digest` of the shared secret `z`, with `info` the DER
 * ECC-CMS-SharedInfo (RFC 8418 §2.2, RFC 5753 §7.2). `salt` may be NULL. 1 on success.
 */
int p11s_cms__xdh_kdf(int hkdf, const char *digest, const unsigned char *z, size_t zlen,
    const unsigned char *salt, size_t saltlen, const unsigned char *info, size_t infolen,
    unsigned char *kek, size_t keklen);

#endif

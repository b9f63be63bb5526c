/*
 * X25519 and X448 recipients (RFC 8418): ephemeral-static key agreement with an HKDF or
 * X9.63 KDF, written into the EnvelopedData/AuthEnvelopedData that OpenSSL 3.0's CMS builds.
 * OpenSSL 3.0 cannot add such a recipient (openssl#22388: CMS_add1_recipient_cert() treats an
 * X25519 key as key transport), so each one enters the CMS as a placeholder KEKRecipientInfo
 * whose key encryption key only we know; a filter BIO in front of the output replaces it, in
 * the encoded recipientInfos, by the KeyAgreeRecipientInfo for the certificate. Internal.
 */
#ifndef P11S_CMS_KARI_XDH_H
#define P11S_CMS_KARI_XDH_H

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11smime/envelope.h>

/* Non-zero if `pk` is an X25519 or X448 key. */
int p11s_cms__is_xdh(const EVP_PKEY *pk);

/* The placeholders of one encryption, and the filter that replaces them. */
typedef struct p11s_cms_xdh p11s_cms_xdh;

/* A new, empty set of placeholders; `kdf` is opts->xdh_kdf. NULL when out of memory. */
p11s_cms_xdh *p11s_cms__xdh_new(p11s_xdh_kdf kdf);

/* Forget every key (cleansed) and free `x` (NULL is fine). */
void p11s_cms__xdh_free(p11s_cms_xdh *x);

/* How many placeholders `x` holds. */
size_t p11s_cms__xdh_count(const p11s_cms_xdh *x);

/* Add `cert` (an X25519/X448 certificate) to `cms` as a placeholder recipient. */
int p11s_cms__xdh_add(p11s_cms_xdh *x, CMS_ContentInfo *cms, X509 *cert, const char *name);

/*
 * A filter BIO in front of `next` (not owned) that holds the start of the encoding back until
 * the recipientInfos are complete, replaces each placeholder by its KeyAgreeRecipientInfo
 * (unwrapping the content key with the placeholder's key) and then passes everything on.
 * NULL with the error recorded. Free with BIO_free() after `x` is done with.
 */
BIO *p11s_cms__xdh_filter(p11s_cms_xdh *x, BIO *next);

/* P11S_OK once the filter has written the recipientInfos, else the recorded error. */
int p11s_cms__xdh_status(const p11s_cms_xdh *x);

/*
 * Decryption with an X25519/X448 token key `pkey` (certificate `cert`), which OpenSSL 3.0's
 * CMS cannot do (kari_xdh_open.c): opens our KeyAgreeRecipientInfo in `cms` (Z on the token,
 * the RFC 8418 KDF and key unwrap on the host) and sets `*out` to a copy of `cms` whose
 * content key is set (CMS_decrypt_set1_key()), ready for CMS_dataInit(). `libctx` is the
 * key's. P11S_OK; P11S_ERR_DECRYPT (uniform, data-dependent failures); P11S_ERR_UNSUPPORTED
 * (a KDF or key wrap we lack); P11S_ERR_MALFORMED; the token's error.
 */
int p11s_cms__xdh_open(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert, OSSL_LIB_CTX *libctx,
    CMS_ContentInfo **out);

#endif

/* CMS EnvelopedData / AuthEnvelopedData: building and decrypting (RFC 5652 §6, RFC 5083). Internal. */
#ifndef P11S_CMS_ENVELOPE_INT_H
#define P11S_CMS_ENVELOPE_INT_H

#include <stdio.h>

#include <openssl/cms.h>
#include <openssl/x509.h>

#include <p11smime/envelope.h>

#include "mime/enveloped.h"

/* Load the first certificate of a PEM or DER file. P11S_ERR_IO / P11S_ERR_MALFORMED name it. */
int p11s_cms__load_cert(const char *path, X509 **out);

/*
 * Read an application/pkcs7-mime encrypted message from `in`: header section into `h`, body
 * decoded and parsed as CMS in `libctx` (NULL: default), which must be EnvelopedData or
 * AuthEnvelopedData. `*cipher_nid` gets the content encryption algorithm (NID_undef if
 * unknown). Free `h` with p11s_mime__head_clear() and `*out` with CMS_ContentInfo_free().
 */
int p11s_cms__read_enveloped(OSSL_LIB_CTX *libctx, FILE *in, p11s_mime_head *h,
    CMS_ContentInfo **out, int *cipher_nid);

/*
 * The same, streaming (DESIGN.md decision 4): the body is decoded to a scratch file and read
 * once as BER; `*out` is a skeleton of the message without its encryptedContent (recipient
 * infos, algorithm, attributes, mac), `*ciphertext` an unlinked scratch file with the content
 * octets, positioned at its start (fclose() it). Memory does not grow with the message.
 */
int p11s_cms__read_enveloped_stream(OSSL_LIB_CTX *libctx, FILE *in, p11s_mime_head *h,
    CMS_ContentInfo **out, FILE **ciphertext, int *cipher_nid);

/*
 * Non-zero if `cert` is named by a RecipientIdentifier of `ri`: a key transport rid
 * (issuerAndSerialNumber or subjectKeyIdentifier) or one of a key agreement recipient's
 * recipientEncryptedKeys rids (issuerAndSerialNumber or rKeyId).
 */
int p11s_cms__ri_matches(CMS_RecipientInfo *ri, X509 *cert);

/*
 * Decrypt `cms` with `pkey` (whose certificate `cert` a RecipientInfo names) into `plain`
 * (a scratch file: on failure it holds garbage or partial plaintext and is truncated).
 * Every data-dependent failure is the same P11S_ERR_DECRYPT "decryption failed"; errors the
 * token recorded that do not depend on the data (mechanism refused, PIN, device) are returned
 * as recorded. `libctx` is the key's (an X25519/X448 key's agreement is made there).
 */
int p11s_cms__decrypt(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert, OSSL_LIB_CTX *libctx,
    FILE *plain);

/* p11s_cms__decrypt() of a skeleton from p11s_cms__read_enveloped_stream() and its ciphertext. */
int p11s_cms__decrypt_stream(CMS_ContentInfo *cms, EVP_PKEY *pkey, X509 *cert,
    OSSL_LIB_CTX *libctx, FILE *ciphertext, FILE *plain);

/*
 * Details of a decrypted message for p11s_decrypt_info: content type, cipher, key management,
 * and the key `use` that decrypted it (its URI, its certificate's subject).
 */
void p11s_cms__describe(CMS_ContentInfo *cms, int cipher_nid, CMS_RecipientInfo *ri,
    const p11s_key *use, p11s_decrypt_info *info);

/*
 * opts->require_authenticated (version 2) against the message's content type: P11S_ERR_VERIFY
 * "unauthenticated-encryption: ..." for EnvelopedData (RFC 8551 §2.7, EFAIL), else P11S_OK.
 * Called before any token operation. `opts` may be NULL.
 */
int p11s_cms__check_authenticated(CMS_ContentInfo *cms, int cipher_nid,
    const p11s_decrypt_opts *opts);

#endif

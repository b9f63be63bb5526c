/* CMS internals (RFC 5652): building SignedData for S/MIME signing. */
#ifndef P11S_CMS_INT_H
#define P11S_CMS_INT_H

#include <time.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/x509.h>

#include <p11smime/common.h>
#include <p11smime/sign.h>

/* Who signs and how. Everything is borrowed. */
typedef struct p11s_cms_signer {
	OSSL_LIB_CTX *libctx;       /* of `pkey`; NULL: default */
	EVP_PKEY *pkey;             /* private key (software or bridge) */
	X509 *cert;                 /* its certificate */
	STACK_OF(X509) *certs;      /* more certificates to include (duplicates are skipped) */
	X509 *encryption_cert;      /* SMIMEEncryptionKeyPreference when != cert; may be NULL */
	p11s_digest digest;
	int pss;                    /* RSASSA-PSS, salt length = digest length */
	time_t signing_time;        /* 0: now (tests pin it to check UTCTime/GeneralizedTime) */
} p11s_cms_signer;

/*
 * Sign `content` (already canonical; read to its end, streaming) as a SignedData without
 * eContent (RFC 8551 §3.5.3). The token's signature is verified with the certificate's
 * public key before `*out` is set.
 * @return P11S_OK, P11S_ERR_USAGE (certificate/key mismatch, PSS without RSA),
 *         P11S_ERR_TOKEN (the signature does not verify), token errors, P11S_ERR_CRYPTO.
 *         Free `*out` with p11s_buf_free().
 */
int p11s_cms__sign_detached(const p11s_cms_signer *s, BIO *content, p11s_buf **out);

/*
 * The SignedData of a DER ContentInfo (RFC 5652 §3, §5.1), as sign produced it: the
 * contentType element (`*oid`, `*oid_len` octets) and the SignedData's content octets
 * [`*sd`, `*sd_end`). 0, or -1 when it is not such a structure.
 */
int p11s_cms__signeddata_span(const p11s_buf *ci, const unsigned char **oid, size_t *oid_len,
    const unsigned char **sd, const unsigned char **sd_end);

struct p11s_revocation_opts;
/*
 * sign --staple (staple.c): the OCSP response for `cert` (whose issuer must be in `certs`),
 * asked now with a nonce from its AIA responder or rev->ocsp_url under rev's fetch policy; it
 * must say "good". @return P11S_OK with `*out` (the OCSPResponse DER); P11S_ERR_USAGE (no
 * issuer certificate); P11S_ERR_VERIFY (revoked, or no acceptable answer: why); NOMEM.
 */
int p11s_cms__staple_fetch(X509 *cert, STACK_OF(X509) *certs,
    const struct p11s_revocation_opts *rev, p11s_buf **out);
/*
 * The DER ContentInfo `det` with `ocsp` added to its SignedData's crls as RevocationInfoChoice
 * other / id-ri-ocsp-response (RFC 5940 §2), version 5 (RFC 5652 §5.1); nothing signed changes.
 * @return P11S_OK, P11S_ERR_CRYPTO (not such a SignedData), P11S_ERR_NOMEM.
 */
int p11s_cms__staple_add(const p11s_buf *det, const unsigned char *ocsp, size_t ocsp_len,
    p11s_buf **out);


/* ---- eddsa.c: EdDSA SignerInfos (RFC 8419), which OpenSSL 3.0's CMS cannot make or check */

/* Is `pkey` an Ed25519 or Ed448 key (software or token)? */
int p11s_cms__is_eddsa(const EVP_PKEY *pkey);
/*
 * The digest `s` signs with: its own, SHA-512 for Ed25519 (RFC 8419 §3; the default SHA-256
 * becomes SHA-512). @return P11S_OK, P11S_ERR_USAGE (SHA-384, PSS or Ed448 signing).
 */
int p11s_cms__signer_digest(const p11s_cms_signer *s, p11s_digest *out);
/* The NID of a digestAlgorithm, with id-shake256-len/512 (RFC 8419 erratum 5869) as shake256. */
int p11s_cms__digest_nid(const X509_ALGOR *alg);
/*
 * Sign the SignerInfo's signed attributes (messageDigest and contentType already there) with
 * the Ed25519 key `pkey`: signingTime if absent, signatureAlgorithm id-Ed25519, PureEdDSA over
 * their DER SET; with `check`, the signature must verify with its key (P11S_ERR_TOKEN).
 * @return P11S_OK or the token's / OpenSSL's error.
 */
int p11s_cms__eddsa_sign(CMS_SignerInfo *si, EVP_PKEY *pkey, OSSL_LIB_CTX *libctx,
    X509 *check);
/* Is the SignerInfo's signatureAlgorithm id-Ed25519 or id-Ed448? */
int p11s_cms__is_eddsa_sig(CMS_SignerInfo *si);
/*
 * Check an EdDSA SignerInfo's signature over its signed attributes with `cert`'s key, and the
 * algorithm rules of RFC 8419 §3-4. @return 1 valid, 0 not (the reason in `why`).
 */
int p11s_cms__eddsa_verify(CMS_SignerInfo *si, X509 *cert, OSSL_LIB_CTX *libctx, char *why,
    size_t wlen);

/*
 * Append a signed checkpoint to the audit log `path` if one is due (audit_int.h: periodic
 * every `every` records, 0 = P11S_AUDIT_CHECKPOINT_EVERY; or `final`), signed by `s`,
 * time-stamped by `tsa_url` when not NULL (src/cms/audit_checkpoint.c). @return P11S_OK
 * (written or not due), else the error.
 */
int p11s_cms__audit_checkpoint(const p11s_cms_signer *s, const char *path, const char *key_uri,
    const char *tsa_url, unsigned int every, int final);


/*
 * After a signature's audit record: the periodic checkpoint if due. A failure is logged, not
 * returned: the record is durable, the checkpoint stays due (retried after the next record)
 * and `audit verify` reports the unanchored tail meanwhile.
 */
void p11s_cms__audit_periodic(const p11s_cms_signer *s, const char *path, const char *key_uri,
    const char *tsa_url, unsigned int every);

#endif

/* p11smime — detached CMS signatures over arbitrary bytes (git commit and tag signing). */
#ifndef P11SMIME_DETACHED_H
#define P11SMIME_DETACHED_H

#include <stdio.h>

#include "common.h"
#include "sign.h"
#include "token.h"

/**
 * Sign the bytes of `in` (read to its end, as they are: no MIME, no canonicalisation) with a
 * token key as a SignedData without eContent (RFC 5652 §5, detached as gpgsm -b makes it).
 * Signed attributes as p11s_sign_message(): contentType, messageDigest, signingTime,
 * SMIMECapabilities, ESS signingCertificateV2. Certificates: the signer's, opts->chain and
 * the CA certificates on the key's token. opts->tsa_url adds an RFC 3161 signature
 * time-stamp (RFC 5126 §5.11.1); opts->digest and opts->pss apply; the evidence options
 * other than tsa_url (receipts, labels, audit log) are refused as P11S_ERR_USAGE.
 * The token's signature is verified before `*out` is set.
 * @param ctx the key's context. @param key from p11s_key_find()/p11s_key_list().
 * @param out DER ContentInfo; free with p11s_buf_free().
 * @return as p11s_sign_message().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_sign_detached(p11s_ctx *ctx, p11s_key *key,
    const p11s_sign_opts *opts, FILE *in, p11s_buf **out);

/**
 * Turn a detached signature (`sig`: DER, or PEM labelled SIGNED MESSAGE, CMS or PKCS7) and
 * the content it signs into an opaque S/MIME signed-data message (RFC 8551 §3.5.2) written
 * to `out`, so that p11s_verify_message() verifies it (give it no_sender_check: there is no
 * From). The SignerInfos are not touched: the signature covers the content through the
 * messageDigest attribute, wherever the content travels (RFC 5652 §5.4).
 * @return P11S_OK; P11S_ERR_MALFORMED (not a SignedData, or one that already carries
 *         content); P11S_ERR_IO; P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_detached_to_opaque(const unsigned char *sig,
    size_t sig_len, const unsigned char *content, size_t content_len, FILE *out);

#endif

/*
 * sign --staple: the signer's OCSP response, asked at signing time, carried in the SignedData
 * (RFC 5940 §2: RevocationInfoChoice `other`, otherRevInfoFormat id-ri-ocsp-response, the
 * OCSPResponse as otherRevInfo). The crls field is outside what is signed (RFC 5652 §5.1),
 * so the response is added to the encoded SignedData after the signature: nothing signed
 * changes, and a verifier without network can still decide the signer's status at signing
 * time (towards CAdES B-LT; verify_stapled.c reads it back).
 *
 * OpenSSL 3.0 cannot write a RevocationInfoChoice `other` (its structure is opaque, and
 * CMS_add0_RevocationInfoChoice gives no way to fill it), so the DER is rewritten here, as
 * sign.c's embed_content() does for the eContent.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/revocation.h>

#include "cms/cms_int.h"
#include "core/encode.h"
#include "core/error_int.h"
#include "x509/revocation_int.h"

int p11s_cms__staple_fetch(X509 *cert, STACK_OF(X509) *certs, const p11s_revocation_opts *rev,
    p11s_buf **out)
{
	p11s_x509_rev_policy pol = { .methods = P11S_REV_OCSP, .fetch = 1, .ocsp_url = rev->ocsp_url,
		.allow = rev->fetch_allow, .n_allow = rev->n_fetch_allow, .deny = rev->fetch_deny,
		.n_deny = rev->n_fetch_deny, .timeout_s = rev->fetch_timeout };
	p11s_ocsp_result res = { 0 };
	X509 *issuer = NULL;
	int rc;

	*out = NULL;
	if (rev->version != P11S_REVOCATION_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_revocation_opts version %u unknown",
		    rev->version);
	}
	/* The CertID names the issuer (RFC 6960 §4.1.1): it must be among the chain. */
	for (int i = 0; certs != NULL && i < sk_X509_num(certs) && issuer == NULL; i++) {
		if (X509_check_issued(sk_X509_value(certs, i), cert) == X509_V_OK) {
			issuer = sk_X509_value(certs, i);
		}
	}
	ERR_clear_error();
	if (issuer == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "--staple needs the certificate of the signer's "
		                                       "issuer (--chain, or a CA certificate on the token)");
	}
	if ((rc = p11s_ocsp__check(cert, issuer, &pol, (int64_t)time(NULL), &res)) < 0) {
		return rc;
	}
	if (!res.decided) {
		rc = p11s_error__set(P11S_ERR_VERIFY, "--staple: no OCSP answer for the signer "
		                                      "certificate: %s", res.why);
	} else if (res.revoked) {
		rc = p11s_error__set(P11S_ERR_VERIFY, "--staple: the signer certificate is revoked "
		                                      "(OCSP %s, revocationTime %s): not signed",
		    res.responder ? res.responder : "?", res.revocation_time ? res.revocation_time : "?");
	} else if ((rc = p11s_buf_new(out, res.der_len)) == P11S_OK) {
		memcpy((*out)->data, res.der, res.der_len);
	}
	p11s_ocsp__result_clear(&res);
	return rc;
}

/* One element of `p` (within `end`): its whole length, or 0 when malformed. */
static size_t element(const unsigned char *p, const unsigned char *end, int tag)
{
	size_t hl, cl;

	if (p >= end || (tag >= 0 && p[0] != tag) || p11s_core__ber_header(p, end, 0, &hl, &cl) < 0) {
		return 0;
	}
	return hl + cl;
}

/* id-ri-ocsp-response, 1.3.6.1.5.5.7.16.2 (RFC 5940 §4), as a DER OBJECT IDENTIFIER. */
static const unsigned char id_ri_ocsp_response[] = {
	0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x10, 0x02
};

int p11s_cms__staple_add(const p11s_buf *det, const unsigned char *ocsp, size_t ocsp_len,
    p11s_buf **out)
{
	const unsigned char *oid, *sd, *sd_end, *q;
	const unsigned char *mid, *crls = NULL, *signers;
	unsigned char h_other[12], h_crls[12], h_sd[12], h_ex[12], h_ci[12], *w;
	size_t hl, cl, oid_len, n, mid_len, crls_body = 0, signers_len, l_other, other_len;
	size_t l_crls, l_sd, sd_len, l_ex, l_ci;
	/* RFC 5652 §5.1: any `other` RevocationInfoChoice makes the SignedData version 5. */
	static const unsigned char v5[] = { 0x02, 0x01, 0x05 };

	*out = NULL;
	/* SignedData SEQUENCE { version, digestAlgorithms, encapContentInfo, [0] certificates,
	 * [1] crls, signerInfos } */
	if (p11s_cms__signeddata_span(det, &oid, &oid_len, &sd, &sd_end) < 0) {
		goto bad;
	}
	if ((n = element(sd, sd_end, 0x02)) == 0) {
		goto bad;
	}
	mid = sd + n; /* digestAlgorithms, encapContentInfo and certificates, kept as they are */
	q = mid;
	if ((n = element(q, sd_end, 0x31)) == 0) {
		goto bad;
	}
	q += n;
	if ((n = element(q, sd_end, 0x30)) == 0) {
		goto bad;
	}
	q += n;
	if (q < sd_end && q[0] == 0xa0) {
		if ((n = element(q, sd_end, 0xa0)) == 0) {
			goto bad;
		}
		q += n;
	}
	mid_len = (size_t)(q - mid);
	if (q < sd_end && q[0] == 0xa1) {
		/* CRLs already there: the response goes after them. */
		if (p11s_core__ber_header(q, sd_end, 0, &hl, &cl) < 0) {
			goto bad;
		}
		crls = q + hl;
		crls_body = cl;
		q += hl + cl;
	}
	signers = q;
	if ((signers_len = element(signers, sd_end, 0x31)) == 0 || signers + signers_len != sd_end) {
		goto bad;
	}
	/* [1] IMPLICIT OtherRevocationInfoFormat { id-ri-ocsp-response, OCSPResponse } */
	other_len = sizeof(id_ri_ocsp_response) + ocsp_len;
	l_other = p11s_core__der_header(h_other, 0xa1, other_len);
	l_crls = p11s_core__der_header(h_crls, 0xa1, crls_body + l_other + other_len);
	sd_len = sizeof(v5) + mid_len + l_crls + crls_body + l_other + other_len + signers_len;
	l_sd = p11s_core__der_header(h_sd, 0x30, sd_len);
	l_ex = p11s_core__der_header(h_ex, 0xa0, l_sd + sd_len);
	l_ci = p11s_core__der_header(h_ci, 0x30, oid_len + l_ex + l_sd + sd_len);
	if (p11s_buf_new(out, l_ci + oid_len + l_ex + l_sd + sd_len) < 0) {
		return P11S_ERR_NOMEM;
	}
	w = (*out)->data;
#define PUT(src, len) (memcpy(w, (src), (len)), w += (len))
	PUT(h_ci, l_ci);
	PUT(oid, oid_len);
	PUT(h_ex, l_ex);
	PUT(h_sd, l_sd);
	PUT(v5, sizeof(v5));
	PUT(mid, mid_len);
	PUT(h_crls, l_crls);
	if (crls_body > 0) {
		PUT(crls, crls_body);
	}
	PUT(h_other, l_other);
	PUT(id_ri_ocsp_response, sizeof(id_ri_ocsp_response));
	PUT(ocsp, ocsp_len);
	PUT(signers, signers_len);
#undef PUT
	return P11S_OK;
bad:
	return p11s_error__set(P11S_ERR_CRYPTO, "unexpected SignedData encoding");
}

/* ESS (RFC 2634, RFC 5035) attributes inside the library: building and reading them. */
#ifndef P11S_ESS_INT_H
#define P11S_ESS_INT_H

#include <stdio.h>

#include <openssl/cms.h>

#include <p11smime/ess.h>
#include <p11smime/sign.h>

/*
 * Add the ESS signed attributes that `o` asks for to a SignerInfo being built: receiptRequest
 * (RFC 2634 §2.7; receiptsTo = o->receipts_to, or `from` when that is NULL) and
 * ESSSecurityLabel (§3.2, from o->security_label). Nothing is added when `o` asks for none.
 * @return P11S_OK, P11S_ERR_USAGE (bad label, no receipt address), P11S_ERR_CRYPTO, NOMEM.
 */
int p11s_ess__add_sign_attrs(CMS_SignerInfo *si, OSSL_LIB_CTX *libctx, const p11s_sign_opts *o,
    const char *from);

/*
 * The addr-spec of the first mailbox of the From field of the RFC 5322 message in `in`
 * (seekable; the position is restored to 0). `*out` is NULL when there is none. malloc'd.
 */
int p11s_ess__from_address(FILE *in, char **out);

/* What a SignerInfo says through ESS, as text for the verify report (all malloc'd or NULL). */
typedef struct p11s_ess_info {
	char *label;             /* "POLICY-OID:classification-name(n)" */
	char **equivalent;       /* equivalentLabels, the same form */
	size_t n_equivalent;
	char *receipt_request;   /* "from=all; to=ADDR,...; id=HEX" */
	int label_malformed;     /* a label attribute was present but unreadable or repeated */
} p11s_ess_info;

int p11s_ess__read(CMS_SignerInfo *si, p11s_ess_info *out);
void p11s_ess__info_clear(p11s_ess_info *i);

/*
 * The DER signedAttrs of SignerInfo number `idx` of the ContentInfo `der` exactly as
 * received (BER outer layers with indefinite lengths are walked): `*p` points at the [0]
 * IMPLICIT tag, `*n` is the whole element's length. @return 0, or -1 if not found.
 */
int p11s_ess__raw_signed_attrs(const unsigned char *der, size_t len, int idx,
    const unsigned char **p, size_t *n);

#endif

/*
 * OCSP responses stapled in a SignedData (RFC 5940 §2: RevocationInfoChoice `other` with
 * otherRevInfoFormat id-ri-ocsp-response, otherRevInfo an OCSPResponse). OpenSSL 3.0's CMS
 * keeps such entries but offers no accessor (CMS_get1_crls() returns only CRLs), so the DER
 * of the SignedData is read here with small OpenSSL ASN.1 templates. The responses are
 * checked like fetched ones (src/x509/revocation.c): signature, responder authorisation,
 * CertID, freshness at the validation time; a stapled one answers first (issue 19 item 1).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "cms/verify_int.h"
#include "core/error_int.h"

/* SignedData (RFC 5652 §5.1), every field but the crls opaque. */
typedef struct sd_lite {
	ASN1_INTEGER *version;
	OPENSSL_STACK *digest_algorithms;
	ASN1_TYPE *encap;
	OPENSSL_STACK *certificates;
	OPENSSL_STACK *crls; /* of ASN1_TYPE: a CertificateList, or [1] other */
	OPENSSL_STACK *signer_infos;
} SD_LITE;

ASN1_SEQUENCE(SD_LITE) = {
	ASN1_SIMPLE(SD_LITE, version, ASN1_INTEGER),
	ASN1_SET_OF(SD_LITE, digest_algorithms, ASN1_ANY),
	ASN1_SIMPLE(SD_LITE, encap, ASN1_ANY),
	ASN1_IMP_SET_OF_OPT(SD_LITE, certificates, ASN1_ANY, 0),
	ASN1_IMP_SET_OF_OPT(SD_LITE, crls, ASN1_ANY, 1),
	ASN1_SET_OF(SD_LITE, signer_infos, ASN1_ANY),
} static_ASN1_SEQUENCE_END(SD_LITE)

/* ContentInfo { contentType, content [0] EXPLICIT SignedData } */
typedef struct ci_lite {
	ASN1_OBJECT *type;
	SD_LITE *sd;
} CI_LITE;

ASN1_SEQUENCE(CI_LITE) = {
	ASN1_SIMPLE(CI_LITE, type, ASN1_OBJECT),
	ASN1_EXP(CI_LITE, sd, SD_LITE, 0),
} static_ASN1_SEQUENCE_END(CI_LITE)

/* OtherRevocationInfoFormat { otherRevInfoFormat OID, otherRevInfo ANY } (RFC 5652 §10.2.1) */
typedef struct ori_lite {
	ASN1_OBJECT *format;
	ASN1_TYPE *info;
} ORI_LITE;

ASN1_SEQUENCE(ORI_LITE) = {
	ASN1_SIMPLE(ORI_LITE, format, ASN1_OBJECT),
	ASN1_SIMPLE(ORI_LITE, info, ASN1_ANY),
} static_ASN1_SEQUENCE_END(ORI_LITE)

/* id-ri-ocsp-response (RFC 5940 §2.1) */
#define OID_RI_OCSP "1.3.6.1.5.5.7.16.2"
/* At most this many stapled responses are read (a message staples one per certificate). */
#define MAX_STAPLED 16

static int push(p11s_x509_stapled *st, const unsigned char *der, size_t len)
{
	unsigned char *copy = malloc(len);
	unsigned char **d;
	size_t *l;

	if (copy == NULL || (d = realloc(st->der, (st->n + 1) * sizeof(*d))) == NULL) {
		free(copy);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	st->der = d;
	if ((l = realloc(st->len, (st->n + 1) * sizeof(*l))) == NULL) {
		free(copy);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	st->len = l;
	memcpy(copy, der, len);
	st->der[st->n] = copy;
	st->len[st->n] = len;
	st->n++;
	return P11S_OK;
}

/* The OCSPResponse of one RevocationInfoChoice, if it is a stapled one: its DER, or NULL. */
static const ASN1_STRING *stapled_response(const ASN1_TYPE *choice, ORI_LITE **hold)
{
	ASN1_OBJECT *want;
	unsigned char *copy;
	const unsigned char *p;
	const ASN1_STRING *s;

	*hold = NULL;
	/* other [1] IMPLICIT: ANY keeps the whole element; read it as the SEQUENCE it is. */
	if (choice == NULL || choice->type != V_ASN1_OTHER || (s = choice->value.asn1_string) == NULL ||
	    s->length < 2 || s->data[0] != 0xA1 ||
	    (copy = OPENSSL_memdup(s->data, (size_t)s->length)) == NULL) {
		return NULL;
	}
	copy[0] = 0x30;
	p = copy;
	*hold = (ORI_LITE *)ASN1_item_d2i(NULL, &p, s->length, ASN1_ITEM_rptr(ORI_LITE));
	OPENSSL_free(copy);
	if (*hold == NULL || (want = OBJ_txt2obj(OID_RI_OCSP, 1)) == NULL) {
		return NULL;
	}
	s = OBJ_cmp((*hold)->format, want) == 0 && (*hold)->info != NULL &&
	    (*hold)->info->type == V_ASN1_SEQUENCE ? (*hold)->info->value.sequence : NULL;
	ASN1_OBJECT_free(want);
	return s;
}

int p11s_cms__stapled_ocsp(CMS_ContentInfo *cms, p11s_x509_stapled *out)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	CI_LITE *ci = NULL;
	int n, rc = P11S_OK;

	memset(out, 0, sizeof(*out));
	if ((n = i2d_CMS_ContentInfo(cms, &der)) <= 0) {
		ERR_clear_error();
		return P11S_OK; /* nothing we can read: no stapled response */
	}
	p = der;
	ci = (CI_LITE *)ASN1_item_d2i(NULL, &p, n, ASN1_ITEM_rptr(CI_LITE));
	for (int i = 0; ci != NULL && ci->sd != NULL && i < OPENSSL_sk_num(ci->sd->crls) &&
	     out->n < MAX_STAPLED && rc >= 0;
	     i++) {
		ORI_LITE *ori;
		const ASN1_STRING *resp = stapled_response(OPENSSL_sk_value(ci->sd->crls, i), &ori);

		if (resp != NULL) {
			rc = push(out, resp->data, (size_t)resp->length);
		}
		ASN1_item_free((ASN1_VALUE *)ori, ASN1_ITEM_rptr(ORI_LITE));
	}
	ASN1_item_free((ASN1_VALUE *)ci, ASN1_ITEM_rptr(CI_LITE));
	OPENSSL_free(der);
	ERR_clear_error();
	if (rc < 0) {
		p11s_x509__stapled_clear(out);
	}
	return rc;
}

/*
 * A verified signer's certificate, chain and announcements (RFC 8551 §2.5.2 SMIMECapabilities,
 * §2.5.3 SMIMEEncryptionKeyPreference, RFC 5652 §11.3 signingTime) for the certificate store.
 * Every value is decoded by OpenSSL's ASN.1 templates; nothing here parses DER by hand.
 */
#include <string.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include <p11smime/harvest.h>

#include "core/error_int.h"
#include "verify_int.h"

/* The value of the signed attribute `nid` of `si` (the first), or NULL. */
static ASN1_TYPE *attr_value(CMS_SignerInfo *si, int nid)
{
	int loc = CMS_signed_get_attr_by_NID(si, nid, -1);
	X509_ATTRIBUTE *a;

	if (loc < 0 || (a = CMS_signed_get_attr(si, loc)) == NULL) {
		return NULL;
	}
	return X509_ATTRIBUTE_get0_type(a, 0);
}

/*
 * SMIMEEncryptionKeyPreference ::= CHOICE { issuerAndSerialNumber [0] IssuerAndSerialNumber,
 * receipentKeyId [1], subjectAltKeyIdentifier [2] } with implicit tags: [0] stands for the
 * SEQUENCE tag, so the same bytes with 0x30 first are an IssuerAndSerialNumber for OpenSSL's
 * decoder. The other choices name keys outside the message and are ignored.
 */
static X509 *preferred(ASN1_TYPE *t, STACK_OF(X509) *certs)
{
	PKCS7_ISSUER_AND_SERIAL *ias;
	unsigned char *copy;
	const unsigned char *p;
	ASN1_STRING *s;
	X509 *found = NULL;
	int len;

	if (t == NULL || (t->type != V_ASN1_OTHER && t->type != V_ASN1_SEQUENCE) ||
	    (s = t->value.asn1_string) == NULL || (len = ASN1_STRING_length(s)) < 2 ||
	    ASN1_STRING_get0_data(s)[0] != 0xa0) {
		return NULL;
	}
	if ((copy = OPENSSL_memdup(ASN1_STRING_get0_data(s), (size_t)len)) == NULL) {
		return NULL;
	}
	copy[0] = 0x30;
	p = copy;
	if ((ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, len)) != NULL && p == copy + len) {
		found = X509_find_by_issuer_and_serial(certs, ias->issuer, ias->serial);
	}
	PKCS7_ISSUER_AND_SERIAL_free(ias);
	OPENSSL_free(copy);
	ERR_clear_error();
	return found;
}

int p11s_verify_signer_announcement(const p11s_verify_result *r, size_t i,
    p11s_verify_announcement *out)
{
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *certs = NULL;
	CMS_SignerInfo *si;
	ASN1_TYPE *t;
	X509 *x;
	struct tm tm;
	int rc = P11S_OK;

	memset(out, 0, sizeof(*out));
	if (r == NULL || r->priv == NULL || r->priv->cms == NULL || i >= r->priv->n_si ||
	    (sis = CMS_get0_SignerInfos(r->priv->cms)) == NULL ||
	    (int)i >= sk_CMS_SignerInfo_num(sis)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "no signer %zu in the result", i);
	}
	si = sk_CMS_SignerInfo_value(sis, (int)i);
	if ((out->chain = sk_X509_new_null()) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((certs = CMS_get1_certs(r->priv->cms)) != NULL) {
		for (int k = 0; k < sk_X509_num(certs); k++) {
			x = sk_X509_value(certs, k);
			if (out->cert == NULL && CMS_SignerInfo_cert_cmp(si, x) == 0) {
				if (!X509_up_ref(x)) {
					goto nomem;
				}
				out->cert = x;
			} else if (X509_check_ca(x) > 0) {
				if (!X509_up_ref(x) || !sk_X509_push(out->chain, x)) {
					X509_free(x);
					goto nomem;
				}
			}
		}
	}
	t = attr_value(si, NID_SMIMECapabilities);
	if (t != NULL && t->type == V_ASN1_SEQUENCE && t->value.sequence != NULL) {
		out->caps_len = (size_t)ASN1_STRING_length(t->value.sequence);
		if ((out->caps = OPENSSL_memdup(ASN1_STRING_get0_data(t->value.sequence),
		         out->caps_len)) == NULL) {
			goto nomem;
		}
	}
	if ((x = preferred(attr_value(si, NID_id_smime_aa_encrypKeyPref), certs)) != NULL) {
		if (!X509_up_ref(x)) {
			goto nomem;
		}
		out->pref = x;
	}
	t = attr_value(si, NID_pkcs9_signingTime);
	if (t != NULL && (t->type == V_ASN1_UTCTIME || t->type == V_ASN1_GENERALIZEDTIME) &&
	    ASN1_TIME_to_tm(t->value.utctime, &tm)) {
		out->has_signing_time = 1;
		out->signing_time = (int64_t)timegm(&tm);
	}
	goto out;
nomem:
	rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	p11s_verify_announcement_clear(out);
out:
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return rc;
}

void p11s_verify_announcement_clear(p11s_verify_announcement *a)
{
	X509_free(a->cert);
	sk_X509_pop_free(a->chain, X509_free);
	OPENSSL_free(a->caps);
	X509_free(a->pref);
	memset(a, 0, sizeof(*a));
}

int p11s_verify_harvest(const p11s_verify_result *r, p11s_store *s, size_t *n)
{
	int rc = P11S_OK;

	if (n != NULL) {
		*n = 0;
	}
	/* RFC 8551 §2.5: what an unverified message claims is not recorded. */
	if (r == NULL || !r->valid) {
		return p11s_error__set(P11S_ERR_USAGE, "only a valid signature is harvested");
	}
	for (size_t i = 0; i < r->n_signers && rc == P11S_OK; i++) {
		p11s_verify_announcement an;

		if ((rc = p11s_verify_signer_announcement(r, i, &an)) < 0) {
			break;
		}
		if (an.cert != NULL) {
			rc = p11s_store_add(s, an.cert, P11S_STORE_HARVESTED, 0, NULL);
			for (int k = 0; rc == P11S_OK && k < sk_X509_num(an.chain); k++) {
				rc = p11s_store_add(s, sk_X509_value(an.chain, k), P11S_STORE_HARVESTED, 0,
				    NULL);
			}
			if (rc == P11S_OK && an.pref != NULL) {
				rc = p11s_store_add(s, an.pref, P11S_STORE_HARVESTED, 0, NULL);
			}
			if (rc == P11S_OK && (an.caps != NULL || an.pref != NULL)) {
				rc = p11s_store_announce(s, an.cert, an.caps, an.caps_len, an.pref,
				    an.has_signing_time ? an.signing_time : 0, NULL);
			}
			if (rc == P11S_OK && n != NULL) {
				(*n)++;
			}
		}
		p11s_verify_announcement_clear(&an);
	}
	return rc;
}

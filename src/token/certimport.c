/*
 * p11s_key_import_cert(): `p11smime import-cert` (docs/keys.md). The certificate is checked
 * against the token key's public half before anything is written, so that a wrong certificate
 * never lands on the token under the key's CKA_ID (which would make `sign` pick it).
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/keygen.h>

#include "core/error_int.h"
#include "token/token_int.h"

/* DER encodings of the attributes a certificate object carries (PKCS#11 v2.40 §4.6.3). */
typedef struct cert_der {
	unsigned char *value, *subject, *issuer, *serial;
	int lv, ls, li, lr;
} cert_der;

static void der_free(cert_der *d)
{
	OPENSSL_free(d->value);
	OPENSSL_free(d->subject);
	OPENSSL_free(d->issuer);
	OPENSSL_free(d->serial);
	memset(d, 0, sizeof(*d));
}

static int der_fill(X509 *x, cert_der *d, p11s_cert_spec *spec)
{
	memset(d, 0, sizeof(*d));
	d->lv = i2d_X509(x, &d->value);
	d->ls = i2d_X509_NAME(X509_get_subject_name(x), &d->subject);
	d->li = i2d_X509_NAME(X509_get_issuer_name(x), &d->issuer);
	d->lr = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &d->serial);
	if (d->lv <= 0 || d->ls <= 0 || d->li <= 0 || d->lr <= 0) {
		der_free(d);
		return p11s_error__ossl(P11S_ERR_CRYPTO, "encoding the certificate");
	}
	spec->value = (p11s_bytes){ d->value, (size_t)d->lv };
	spec->subject = (p11s_bytes){ d->subject, (size_t)d->ls };
	spec->issuer = (p11s_bytes){ d->issuer, (size_t)d->li };
	spec->serial = (p11s_bytes){ d->serial, (size_t)d->lr };
	return P11S_OK;
}

static int write_one(p11s_key *key, X509 *x, const char *label, const p11s_bytes *id,
    unsigned long category)
{
	p11s_ctx *ctx = key->ctx;
	p11s_cert_spec spec = { 0 };
	cert_der d;
	int rc;

	if ((rc = der_fill(x, &d, &spec)) < 0) {
		return rc;
	}
	spec.id = *id;
	spec.label = label;
	spec.category = category;
	rc = ctx->prov.ops->create_certificate(&ctx->prov, &key->slot, &spec);
	if (rc < 0) {
		p11s_error__prefix("token '%s': ", key->slot.info.label);
	}
	der_free(&d);
	return rc;
}

/* A CA certificate's CN for CKA_LABEL (empty when it has none). */
static void cn_label(X509 *x, char *buf, size_t len)
{
	buf[0] = '\0';
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)len);
}

int p11s_key_import_cert(p11s_key *key, X509 *cert, STACK_OF(X509) *chain)
{
	const struct p11s_provider_ops *ops;
	p11s_bytes noid = { NULL, 0 };
	int rc;

	if (key == NULL || cert == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "import-cert: no key or certificate");
	}
	ops = key->ctx->prov.ops;
	if (!(ops->caps & P11S_CAP_CREATE_CERT) || ops->create_certificate == NULL) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED, "backend %s cannot write certificates "
		                                             "(use --backend pkcs11)", ops->name);
	}
	if (key->cert != NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "key '%s' already has a certificate on the "
		                                       "token", key->obj.label);
	}
	if (key->pub == NULL) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED, "the token shows no public key for key "
		                                             "'%s' to check the certificate against",
		    key->obj.label);
	}
	/* The whole check, before any write: the certified key must be the token's (RFC 5280 §4.1.2.7). */
	if (EVP_PKEY_eq(key->pub, X509_get0_pubkey(cert)) != 1) {
		return p11s_error__set(P11S_ERR_USAGE, "the certificate's public key is not that of "
		                                       "key '%s'; nothing written", key->obj.label);
	}
	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		if (X509_check_ca(sk_X509_value(chain, i)) <= 0) {
			return p11s_error__set(P11S_ERR_USAGE, "--chain certificate %d is not a CA "
			                                       "certificate; nothing written", i + 1);
		}
	}
	if ((rc = p11s_token__login(key->ctx, &key->slot, key->uri_pins)) < 0 ||
	    (rc = write_one(key, cert, key->obj.label, &key->obj.id, 1)) < 0) {
		return rc;
	}
	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		X509 *ca = sk_X509_value(chain, i);
		char label[65];
		int have = 0;

		for (int j = 0; key->cas != NULL && j < sk_X509_num(key->cas); j++) {
			have |= X509_cmp(ca, sk_X509_value(key->cas, j)) == 0;
		}
		if (have) {
			continue; /* already on the token: a second copy only makes lookups ambiguous */
		}
		cn_label(ca, label, sizeof(label));
		if ((rc = write_one(key, ca, label, &noid, 2)) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

/*
 * The "pkcs11" backend's key pair generation (p11smime keygen, docs/keys.md): one
 * C_GenerateKeyPair in a read/write session of its own, since the pool's sessions are
 * read-only and token objects need a R/W session (PKCS#11 v2.40 §5.6, C_OpenSession).
 */
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "core/error_int.h"
#include "pkcs11/ck.h"
#include "pkcs11/pkcs11_int.h"

#ifndef CKM_EC_EDWARDS_KEY_PAIR_GEN
#define CKM_EC_EDWARDS_KEY_PAIR_GEN 0x00001055UL /* PKCS#11 v3.0 §6.3.5 */
#endif
#ifndef CKK_EC_EDWARDS
#define CKK_EC_EDWARDS 0x00000040UL
#endif
#ifndef CKR_CURVE_NOT_SUPPORTED
#define CKR_CURVE_NOT_SUPPORTED 0x00000140UL
#endif

#define ADD(tpl, n, t, p, l)                                                                 \
	do {                                                                                 \
		(tpl)[(n)].type = (t);                                                       \
		(tpl)[(n)].pValue = (void *)(p);                                             \
		(tpl)[(n)].ulValueLen = (CK_ULONG)(l);                                       \
		(n)++;                                                                       \
	} while (0)

int p11s_pkcs11__generate_keypair(p11s_provider *p, const p11s_slot *slot,
    const p11s_keygen_spec *spec)
{
	struct priv *pv = p->priv;
	static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	static CK_BYTE f4[] = { 0x01, 0x00, 0x01 };
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
	CK_MECHANISM m = { 0, NULL, 0 };
	CK_ATTRIBUTE pub[12], priv[16];
	CK_ULONG np = 0, nq = 0, bits = spec->bits;
	CK_KEY_TYPE kt;
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	size_t lablen = spec->label != NULL ? strlen(spec->label) : 0;
	CK_RV rv;
	int rc;

	switch (spec->type) {
	case P11S_KEY_RSA:
		m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		kt = CKK_RSA;
		break;
	case P11S_KEY_EC:
		m.mechanism = CKM_EC_KEY_PAIR_GEN;
		kt = CKK_EC;
		break;
	case P11S_KEY_EDDSA:
		m.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
		kt = CKK_EC_EDWARDS;
		break;
	default:
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: keygen: unknown key type");
	}
	ADD(pub, np, CKA_CLASS, &pubc, sizeof(pubc));
	ADD(pub, np, CKA_KEY_TYPE, &kt, sizeof(kt));
	ADD(pub, np, CKA_TOKEN, &yes, sizeof(yes));
	ADD(pub, np, CKA_PRIVATE, &no, sizeof(no));
	ADD(pub, np, CKA_VERIFY, &yes, sizeof(yes));
	ADD(priv, nq, CKA_CLASS, &privc, sizeof(privc));
	ADD(priv, nq, CKA_KEY_TYPE, &kt, sizeof(kt));
	ADD(priv, nq, CKA_TOKEN, &yes, sizeof(yes));
	ADD(priv, nq, CKA_PRIVATE, &yes, sizeof(yes));
	ADD(priv, nq, CKA_SENSITIVE, &yes, sizeof(yes));
	ADD(priv, nq, CKA_EXTRACTABLE, &no, sizeof(no));
	ADD(priv, nq, CKA_SIGN, &yes, sizeof(yes));
	ADD(priv, nq, CKA_UNWRAP, &no, sizeof(no));
	if (lablen > 0) {
		ADD(pub, np, CKA_LABEL, spec->label, lablen);
		ADD(priv, nq, CKA_LABEL, spec->label, lablen);
	}
	if (spec->id_len > 0) {
		ADD(pub, np, CKA_ID, spec->id, spec->id_len);
		ADD(priv, nq, CKA_ID, spec->id, spec->id_len);
	}
	if (spec->type == P11S_KEY_RSA) {
		/* RSA: sign and decrypt (RFC 8551 §2.4.2 keys may do both; usage is the cert's). */
		ADD(pub, np, CKA_MODULUS_BITS, &bits, sizeof(bits));
		ADD(pub, np, CKA_PUBLIC_EXPONENT, f4, sizeof(f4));
		ADD(pub, np, CKA_ENCRYPT, &yes, sizeof(yes));
		ADD(priv, nq, CKA_DECRYPT, &yes, sizeof(yes));
		ADD(priv, nq, CKA_DERIVE, &no, sizeof(no));
	} else {
		/* Explicit: SoftHSM 2.6 defaults CKA_DECRYPT of any private key to true. */
		ADD(priv, nq, CKA_DECRYPT, &no, sizeof(no));
		ADD(pub, np, CKA_EC_PARAMS, spec->params, spec->params_len);
		if (spec->type == P11S_KEY_EC) {
			/* EC: ECDSA and ECDH (RFC 5753 key agreement for encryption to P-256/P-384). */
			ADD(priv, nq, CKA_DERIVE, &yes, sizeof(yes));
		} else {
			ADD(priv, nq, CKA_DERIVE, &no, sizeof(no));
		}
	}
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	rv = pv->f->C_OpenSession(slot->handle, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_OpenSession");
		goto out;
	}
	rv = pv->f->C_GenerateKeyPair(h, &m, pub, np, priv, nq, &hpub, &hpriv);
	switch (rv) {
	case CKR_OK:
		rc = P11S_OK;
		break;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_SIZE_RANGE:
	case CKR_CURVE_NOT_SUPPORTED:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_TEMPLATE_INCONSISTENT:
	case CKR_DOMAIN_PARAMS_INVALID:
		/* The token's refusal of this type: exit 3 naming the mechanism (docs/keys.md). */
		rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv,
		    "the token refuses C_GenerateKeyPair with %s: %s", p11s_mech_name(m.mechanism),
		    p11s_ck__rv_name(rv));
		break;
	default:
		rc = p11s_ck__rv(rv, "C_GenerateKeyPair");
		break;
	}
	/* The login lives on while the pool keeps a session of this slot (v2.40 C_CloseSession). */
	pv->f->C_CloseSession(h);
out:
	p11s_pkcs11__leave(pv);
	return rc;
}

/* One certificate object (PKCS#11 v2.40 §4.6.3, X.509 public key certificate objects). */
int p11s_pkcs11__create_certificate(p11s_provider *p, const p11s_slot *slot,
    const p11s_cert_spec *spec)
{
	struct priv *pv = p->priv;
	static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_ULONG cat = spec->category;
	CK_ATTRIBUTE t[12];
	CK_ULONG n = 0;
	CK_OBJECT_HANDLE oh;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_RV rv;
	int rc;

	ADD(t, n, CKA_CLASS, &cls, sizeof(cls));
	ADD(t, n, CKA_CERTIFICATE_TYPE, &ct, sizeof(ct));
	ADD(t, n, CKA_TOKEN, &yes, sizeof(yes));
	ADD(t, n, CKA_PRIVATE, &no, sizeof(no));
	ADD(t, n, CKA_VALUE, spec->value.data, spec->value.len);
	ADD(t, n, CKA_SUBJECT, spec->subject.data, spec->subject.len);
	ADD(t, n, CKA_ISSUER, spec->issuer.data, spec->issuer.len);
	ADD(t, n, CKA_SERIAL_NUMBER, spec->serial.data, spec->serial.len);
	ADD(t, n, CKA_CERTIFICATE_CATEGORY, &cat, sizeof(cat));
	if (spec->id.len > 0) {
		ADD(t, n, CKA_ID, spec->id.data, spec->id.len);
	}
	if (spec->label != NULL && spec->label[0] != '\0') {
		ADD(t, n, CKA_LABEL, spec->label, strlen(spec->label));
	}
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	rv = pv->f->C_OpenSession(slot->handle, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_OpenSession");
		goto out;
	}
	rv = pv->f->C_CreateObject(h, t, n, &oh);
	rc = p11s_ck__rv(rv, "C_CreateObject");
	pv->f->C_CloseSession(h);
out:
	p11s_pkcs11__leave(pv);
	return rc;
}

/*
 * The "pkcs11" backend's private-key operations: C_Sign and C_Decrypt with the mechanism as
 * asked (CKM_RSA_PKCS, _PSS, _OAEP, CKM_ECDSA, CKM_EDDSA; never another one instead), the
 * context-specific login of CKA_ALWAYS_AUTHENTICATE keys, and CKM_ECDH1_DERIVE (EC keys, and
 * X25519/X448 keys: CKK_EC_MONTGOMERY, PKCS#11 v3.0 §2.3.17).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include <p11-kit/pkcs11.h>

#include <p11smime/secret.h>

#include "core/error_int.h"
#include "pkcs11/ck.h"
#include "pkcs11/pkcs11_int.h"

static const char *mgf_name(unsigned long mgf)
{
	switch (mgf) {
	case CKG_MGF1_SHA1:
		return "CKG_MGF1_SHA1";
	case CKG_MGF1_SHA224:
		return "CKG_MGF1_SHA224";
	case CKG_MGF1_SHA256:
		return "CKG_MGF1_SHA256";
	case CKG_MGF1_SHA384:
		return "CKG_MGF1_SHA384";
	case CKG_MGF1_SHA512:
		return "CKG_MGF1_SHA512";
	default:
		return "CKG_unknown";
	}
}

/* --- sign, decrypt ---------------------------------------------------------------------- */

union mech_params {
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
};

/* " (hash CKM_SHA256, mgf CKG_MGF1_SHA256)" for messages about a refused mechanism. */
static void describe_params(const p11s_mech *mech, char *buf, size_t len)
{
	buf[0] = '\0';
	if (mech->type == P11S_MECH_RSA_PKCS_PSS) {
		snprintf(buf, len, " (hash %s, mgf %s, salt %lu)",
		    p11s_mech_name(mech->hash), mgf_name(mech->mgf), mech->salt_len);
	} else if (mech->type == P11S_MECH_RSA_PKCS_OAEP) {
		char lbl[40] = "";

		if (mech->label_len > 0) {
			snprintf(lbl, sizeof(lbl), ", label %zu bytes", mech->label_len);
		}
		snprintf(buf, len, " (hash %s, mgf %s%s)", p11s_mech_name(mech->hash),
		    mgf_name(mech->mgf), lbl);
	}
}

/* Build the CK_MECHANISM for `mech`; `decrypt` selects the decryption set. */
static int build_mech(const p11s_mech *mech, int decrypt, CK_MECHANISM *m,
    union mech_params *prm)
{
	memset(m, 0, sizeof(*m));
	memset(prm, 0, sizeof(*prm));
	m->mechanism = mech->type;
	switch (mech->type) {
	case P11S_MECH_RSA_PKCS:
		/* Sign a DigestInfo (STANDARDS.md §11), or decrypt PKCS#1 v1.5. */
		return P11S_OK;
	case P11S_MECH_RSA_PKCS_PSS:
	case P11S_MECH_ECDSA:
	case P11S_MECH_EDDSA:
		if (decrypt) {
			break;
		}
		if (mech->type == P11S_MECH_RSA_PKCS_PSS) {
			/* CK_RSA_PKCS_PSS_PARAMS = the CMS RSASSA-PSS-params (RFC 4055 §3.1). */
			prm->pss.hashAlg = mech->hash;
			prm->pss.mgf = mech->mgf;
			prm->pss.sLen = mech->salt_len;
			m->pParameter = &prm->pss;
			m->ulParameterLen = sizeof(prm->pss);
		}
		return P11S_OK;
	case P11S_MECH_RSA_PKCS_OAEP:
		if (!decrypt) {
			break;
		}
		/* CK_RSA_PKCS_OAEP_PARAMS: the label is OAEP's label L (RFC 8017 §7.1). */
		prm->oaep.hashAlg = mech->hash;
		prm->oaep.mgf = mech->mgf;
		prm->oaep.source = CKZ_DATA_SPECIFIED;
		prm->oaep.pSourceData = mech->label_len ? (void *)mech->label : NULL;
		prm->oaep.ulSourceDataLen = mech->label_len;
		m->pParameter = &prm->oaep;
		m->ulParameterLen = sizeof(prm->oaep);
		return P11S_OK;
	default:
		break;
	}
	/* Raw RSA (CKM_RSA_X_509) among them: no host-side padding, ever (DESIGN.md 1). */
	return p11s_error__set(P11S_ERR_MECHANISM, "pkcs11 backend does not %s with %s",
	    decrypt ? "decrypt" : "sign", p11s_mech_name(mech->type));
}

/* Translate a failed C_SignInit/C_DecryptInit; a refusal names the mechanism and parameters. */
static int init_error(CK_RV rv, const char *what, const p11s_mech *mech)
{
	char params[160];
	int rc = p11s_ck__rv(rv, what);

	if (rc == P11S_ERR_MECHANISM) {
		describe_params(mech, params, sizeof(params));
		rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv, "token refuses %s%s: %s",
		    p11s_mech_name(mech->type), params, p11s_ck__rv_name(rv));
	}
	return rc;
}

/*
 * CKA_ALWAYS_AUTHENTICATE (v2.40 private key objects, C_Login): right after the Init, a
 * context-specific login with a fresh PIN, nothing else on the session in between. The PIN
 * is never cached: wiped and freed as soon as C_Login returns.
 */
static int context_login(struct priv *pv, CK_SESSION_HANDLE h, const p11s_slot *slot,
    CK_RV *rvp)
{
	p11s_secret *pin = NULL;
	CK_RV rv;
	int rc;

	if (pv->cfg.get_pin == NULL) {
		return p11s_error__set(P11S_ERR_LOGIN, "key needs its PIN for every use "
		    "(CKA_ALWAYS_AUTHENTICATE) but no PIN source is available");
	}
	if ((rc = pv->cfg.get_pin(slot, P11S_USER_CONTEXT_SPECIFIC, &pin, pv->cfg.pin_payload)) <
	    0) {
		p11s_secret_free(pin);
		return rc;
	}
	/* No PIN from the source on a PIN pad reader: the reader asks (NULL_PTR). */
	rv = pv->f->C_Login(h, CKU_CONTEXT_SPECIFIC,
	    pin != NULL ? (CK_UTF8CHAR_PTR)p11s_secret_data(pin) : NULL_PTR,
	    pin != NULL ? (CK_ULONG)p11s_secret_len(pin) : 0);
	p11s_secret_free(pin);
	if (rv == CKR_USER_ALREADY_LOGGED_IN) {
		rv = CKR_OK;
	}
	*rvp = rv;
	return p11s_ck__rv(rv, "C_Login(CKU_CONTEXT_SPECIFIC)");
}

typedef CK_RV (*single_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);

/*
 * Output room that covers the signature or plaintext of every key up to RSA-4096 and every
 * ECDSA/EdDSA curve up to P-521 (2 x 66 octets) and Ed448 (114): with it the size query is
 * not needed.
 */
#define SINGLE_OUT_GUESS 512

/*
 * C_Sign or C_Decrypt in one part. v2.40 §5.2: a buffer that is large enough gets the output
 * at once, so the call goes straight out with room for `guess` octets (the key's output size
 * where known, an upper bound otherwise) and the size query (pBuf NULL_PTR) is made only when
 * the token answers CKR_BUFFER_TOO_SMALL without telling how much it needs. `*active` tells
 * whether the operation is still active afterwards (v2.40 §5.2 and C_Sign: only
 * CKR_BUFFER_TOO_SMALL and a successful size query leave it so).
 */
static CK_RV run_single(single_fn fn, CK_SESSION_HANDLE h, const unsigned char *in, size_t inlen,
    size_t guess, p11s_buf **out, int *active, int *rc)
{
	p11s_buf *buf = NULL;
	CK_ULONG len = (CK_ULONG)guess;
	CK_RV rv = CKR_OK;

	*out = NULL;
	if (len == 0) {
		rv = fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, NULL_PTR, &len);
	}
	for (int tries = 0; rv == CKR_OK && tries < 3; tries++) {
		CK_ULONG room = len;

		if ((*rc = p11s_buf_new(&buf, len)) < 0) {
			return CKR_OK; /* still active: the caller discards the session */
		}
		rv = fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, buf->data, &len);
		if (rv == CKR_BUFFER_TOO_SMALL) {
			p11s_buf_free(buf);
			buf = NULL;
			/* len holds the size now needed; a token that left it alone is asked. */
			rv = len > room ? CKR_OK
					: fn(h, (CK_BYTE_PTR)in, (CK_ULONG)inlen, NULL_PTR, &len);
			continue;
		}
		if (rv == CKR_OK) {
			*active = 0;
			if (len < buf->len) {
				OPENSSL_cleanse(buf->data + len, buf->len - len);
				buf->len = len;
			}
			*out = buf;
			*rc = P11S_OK;
			return CKR_OK;
		}
	}
	*active = rv == CKR_OK; /* gave up on repeated CKR_BUFFER_TOO_SMALL */
	p11s_buf_free(buf);
	if (rv == CKR_OK) {
		*rc = p11s_error__set(P11S_ERR_TOKEN, "token keeps changing the output size");
	}
	return rv;
}

static int sign_or_decrypt(p11s_provider *p, int decrypt, const p11s_object *key,
    const p11s_mech *mech, const unsigned char *in, size_t inlen, p11s_buf **out)
{
	struct priv *pv = p->priv;
	const char *init_name = decrypt ? "C_DecryptInit" : "C_SignInit";
	union mech_params prm;
	CK_MECHANISM m;
	p11s_slot slot;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int active = 0, rc;

	if (out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL output");
	}
	*out = NULL;
	if (key == NULL || mech == NULL || (in == NULL && inlen > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL argument");
	}
	if ((rc = build_mech(mech, decrypt, &m, &prm)) < 0) {
		return rc;
	}
	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		return rc;
	}
	if (key->always_authenticate) {
		/* Token details for the PIN prompt, gathered before the operation starts. */
		if ((rv = p11s_ck__slot(pv->f, key->slot, &slot)) != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_GetTokenInfo");
			goto out;
		}
	}
	if ((rc = p11s_pkcs11__sess_get(pv, key->slot, &s)) < 0) {
		goto out;
	}
	rv = decrypt ? pv->f->C_DecryptInit(s.h, &m, key->handle)
		     : pv->f->C_SignInit(s.h, &m, key->handle);
	if (rv != CKR_OK) {
		rc = init_error(rv, init_name, mech); /* never another mechanism instead */
		goto out;
	}
	active = 1;
	if (key->always_authenticate && (rc = context_login(pv, s.h, &slot, &rv)) < 0) {
		goto out;
	}
	rc = P11S_OK;
	/* RSA: the output is at most the modulus long (RFC 8017 §5.2, §7.2.2). */
	rv = run_single(decrypt ? pv->f->C_Decrypt : pv->f->C_Sign, s.h, in, inlen,
	    key->modulus.len > SINGLE_OUT_GUESS ? key->modulus.len : SINGLE_OUT_GUESS, out, &active,
	    &rc);
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, decrypt ? "C_Decrypt" : "C_Sign");
	}
out:
	if (active && !p11s_pkcs11__session_dead(rv)) {
		p11s_pkcs11__sess_discard(pv, &s);
	} else {
		p11s_pkcs11__sess_put(pv, &s, rv);
	}
	p11s_pkcs11__leave(pv);
	return rc;
}

int p11s_pkcs11__sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	return sign_or_decrypt(p, 0, key, mech, in, inlen, out);
}

int p11s_pkcs11__decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	return sign_or_decrypt(p, 1, key, mech, in, inlen, out);
}

/* --- derive ----------------------------------------------------------------------------- */

/* RFC 7748 §5, §6: X25519 and X448 keys and results are 32 and 56 bytes. */
#define X25519_LEN 32
#define X448_LEN 56

/*
 * The length in bytes of the shared secret a key on the curve of `params` (CKA_EC_PARAMS)
 * gives, 0 if unknown: the field size of a named short Weierstrass curve (SEC 1 §3.3.1: Z is
 * the x-coordinate), or for a Montgomery key 32 (X25519) or 56 (X448), its curve named by an
 * RFC 8410 §3 OID or by the curveName PrintableString "curve25519" or "curve448" (PKCS#11
 * v3.0 §2.3.7, §2.3.8).
 */
static size_t secret_size(const p11s_bytes *params)
{
	const unsigned char *pp = params->data;
	ASN1_OBJECT *oid = NULL;
	ASN1_PRINTABLESTRING *name = NULL;
	EC_GROUP *g = NULL;
	size_t bytes = 0;
	int nid;

	if (params->data == NULL || params->len == 0) {
		return 0;
	}
	ERR_set_mark();
	if ((oid = d2i_ASN1_OBJECT(NULL, &pp, (long)params->len)) != NULL) {
		nid = OBJ_obj2nid(oid);
		if (nid == NID_X25519) {
			bytes = X25519_LEN;
		} else if (nid == NID_X448) {
			bytes = X448_LEN;
		} else if ((g = EC_GROUP_new_by_curve_name(nid)) != NULL) {
			bytes = ((size_t)EC_GROUP_get_degree(g) + 7) / 8;
		}
	} else {
		pp = params->data;
		name = d2i_ASN1_PRINTABLESTRING(NULL, &pp, (long)params->len);
		if (name != NULL && ASN1_STRING_length(name) == 10 &&
		    memcmp(ASN1_STRING_get0_data(name), "curve25519", 10) == 0) {
			bytes = X25519_LEN;
		} else if (name != NULL && ASN1_STRING_length(name) == 8 &&
		    memcmp(ASN1_STRING_get0_data(name), "curve448", 8) == 0) {
			bytes = X448_LEN;
		}
	}
	ERR_pop_to_mark();
	EC_GROUP_free(g);
	ASN1_OBJECT_free(oid);
	ASN1_PRINTABLESTRING_free(name);
	return bytes;
}

int p11s_pkcs11__derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out)
{
	struct priv *pv = p->priv;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL f = CK_FALSE, t = CK_TRUE;
	CK_ULONG vlen;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &f, sizeof(f) },
		{ CKA_SENSITIVE, &f, sizeof(f) },
		{ CKA_EXTRACTABLE, &t, sizeof(t) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
	};
	CK_ECDH1_DERIVE_PARAMS prm;
	CK_MECHANISM m = { CKM_ECDH1_DERIVE, &prm, sizeof(prm) };
	CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
	CK_ATTRIBUTE va = { CKA_VALUE, NULL_PTR, 0 };
	unsigned char *der = NULL;
	p11s_buf *z = NULL;
	size_t field, der_len, hdr;
	sess s = { 0 };
	CK_RV rv = CKR_OK;
	int rc;

	if (out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: NULL output");
	}
	*out = NULL;
	if (key == NULL || peer == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "pkcs11: derive: NULL argument");
	}
	if (key->key_type == P11S_KEY_XDH) {
		/*
		 * A Montgomery key (CKK_EC_MONTGOMERY): pPublicData is the peer's u-coordinate as
		 * RFC 7748 §5 encodes it, little-endian (PKCS#11 v3.0 §2.3.16,
		 * CK_ECDH1_DERIVE_PARAMS), and CKM_ECDH1_DERIVE (§2.3.17) truncates the result to
		 * CKA_VALUE_LEN from the leading end: asking for all of K's length keeps it whole.
		 */
		if (peer_len != X25519_LEN && peer_len != X448_LEN) {
			return p11s_error__set(P11S_ERR_INVALID_ARG,
			    "peer key is not an X25519 or X448 key (RFC 7748 §5: 32, 56 bytes)");
		}
		field = secret_size(&key->ec_params);
		if (field != 0 && field != peer_len) {
			return p11s_error__set(P11S_ERR_INVALID_ARG,
			    "peer key does not belong to the key's curve");
		}
		vlen = peer_len;
	} else {
		/* SEC 1 §2.3.3: an uncompressed point is 04 || X || Y. */
		if (peer_len < 3 || peer[0] != 0x04 || (peer_len - 1) % 2 != 0 ||
		    peer_len > 0xffff) {
			return p11s_error__set(P11S_ERR_INVALID_ARG,
			    "peer public key is not an uncompressed EC point");
		}
		field = secret_size(&key->ec_params);
		if (field == 0) {
			field = (peer_len - 1) / 2;
		} else if (field != (peer_len - 1) / 2) {
			return p11s_error__set(P11S_ERR_INVALID_ARG,
			    "peer point does not belong to the key's curve");
		}
		vlen = field;
	}

	/*
	 * The DER OCTET STRING form of the public data, for tokens that want CKA_EC_POINT's
	 * encoding (SoftHSM, for one, keeps an Edwards CKA_EC_POINT in that form too).
	 */
	hdr = peer_len < 0x80 ? 2 : peer_len < 0x100 ? 3 : 4;
	der_len = hdr + peer_len;
	if ((der = malloc(der_len)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	der[0] = 0x04;
	if (hdr == 2) {
		der[1] = (unsigned char)peer_len;
	} else if (hdr == 3) {
		der[1] = 0x81;
		der[2] = (unsigned char)peer_len;
	} else {
		der[1] = 0x82;
		der[2] = (unsigned char)(peer_len >> 8);
		der[3] = (unsigned char)peer_len;
	}
	memcpy(der + hdr, peer, peer_len);

	if ((rc = p11s_pkcs11__enter(pv)) < 0) {
		free(der);
		return rc;
	}
	if ((rc = p11s_pkcs11__sess_get(pv, key->slot, &s)) < 0) {
		goto out;
	}
	/*
	 * RFC 5753 / SEC 1 §3.3.1 (EC), RFC 7748 §6 (X25519, X448): CKD_NULL gives Z itself; the
	 * CMS KDF (RFC 5753 §3.1, RFC 8418 §2) runs on the host.
	 */
	for (int form = 0; form < 2; form++) {
		memset(&prm, 0, sizeof(prm));
		prm.kdf = CKD_NULL;
		prm.pPublicData = form == 0 ? (CK_BYTE_PTR)peer : der;
		prm.ulPublicDataLen = form == 0 ? peer_len : der_len;
		rv = pv->f->C_DeriveKey(s.h, &m, key->handle, tmpl, sizeof(tmpl) / sizeof(tmpl[0]),
		    &obj);
		/* Tokens differ on raw vs DER public data (STANDARDS.md §11): try both forms. */
		if (form == 0 && (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
		    rv == CKR_DOMAIN_PARAMS_INVALID)) {
			continue;
		}
		break;
	}
	if (rv != CKR_OK) {
		if (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
		    rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_MECHANISM_INVALID) {
			rc = p11s_error__ckr(P11S_ERR_MECHANISM, rv, "token refuses %s (CKD_NULL, "
			    "raw and DER public data): %s", p11s_mech_name(CKM_ECDH1_DERIVE),
			    p11s_ck__rv_name(rv));
		} else {
			rc = p11s_ck__rv(rv, "C_DeriveKey");
		}
		goto out;
	}
	rv = pv->f->C_GetAttributeValue(s.h, obj, &va, 1);
	if (rv == CKR_OK && (va.ulValueLen == CK_UNAVAILABLE_INFORMATION || va.ulValueLen == 0)) {
		rv = CKR_ATTRIBUTE_SENSITIVE;
	}
	if (rv != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_GetAttributeValue(CKA_VALUE)");
		goto out;
	}
	if ((rc = p11s_buf_new(&z, va.ulValueLen)) < 0) {
		goto out;
	}
	va.pValue = z->data;
	if ((rv = pv->f->C_GetAttributeValue(s.h, obj, &va, 1)) != CKR_OK) {
		rc = p11s_ck__rv(rv, "C_GetAttributeValue(CKA_VALUE)");
		goto out;
	}
	if (va.ulValueLen > z->len) {
		rc = p11s_error__set(P11S_ERR_TOKEN, "CKA_VALUE longer than announced");
		goto out;
	}
	z->len = va.ulValueLen;
	*out = z;
	z = NULL;
	rc = P11S_OK;
out:
	if (obj != CK_INVALID_HANDLE) {
		/*
		 * The secret must not outlive the call; should the token refuse, it is a session
		 * object and goes with its session at the latest.
		 */
		(void)pv->f->C_DestroyObject(s.h, obj);
	}
	p11s_pkcs11__sess_put(pv, &s, rv);
	p11s_pkcs11__leave(pv);
	p11s_buf_free(z);
	free(der);
	return rc;
}


/*
 * DSA domain parameter inheritance (RFC 5280 §6.1.4 (f); RFC 3279 §2.3.2).
 *
 * A DSA subjectPublicKeyInfo may omit its domain parameters; the key then uses those of the
 * issuer's key ("working_public_key_parameters" of the path). OpenSSL 3.0 cannot decode such a
 * key at all (X509_PUBKEY_get0: decode error), so neither the certificates it signs nor the
 * message signed with it can be checked (PKITS 4.1.5).
 *
 * p11s_x509__dsa_inherit() fills the parameters into the in-memory SubjectPublicKeyInfo of
 * each such certificate from its issuer among the candidates. The certificate's encoding is
 * left as received: OpenSSL keeps the TBSCertificate's DER (ASN1_AFLG_ENCODING) and signs,
 * hashes and compares that, so only the decoded key changes. Because the issuer is chosen
 * before the path is built, p11s_x509__dsa_path_ok() then requires each inherited parameter
 * set to be the one of the issuer in the validated path: parameters taken from another
 * certificate with the same name (an attacker's, say g = y) would make the key worthless.
 */
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/error_int.h"
#include "x509/x509_int.h"

/* The ex_data index marking a certificate whose DSA parameters were inherited. */
static CRYPTO_ONCE idx_once = CRYPTO_ONCE_STATIC_INIT;
static int inherited_idx = -1;

static void idx_init(void)
{
	inherited_idx = X509_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The DSA parameters of x's key (a SEQUENCE), NULL if x has no DSA key or none are given. */
static const ASN1_STRING *dsa_params(X509 *x, int *is_dsa)
{
	X509_PUBKEY *pub = X509_get_X509_PUBKEY(x);
	ASN1_OBJECT *obj = NULL;
	X509_ALGOR *alg = NULL;
	const void *pval = NULL;
	int ptype = V_ASN1_UNDEF;

	*is_dsa = 0;
	if (pub == NULL || !X509_PUBKEY_get0_param(&obj, NULL, NULL, &alg, pub) ||
	    OBJ_obj2nid(obj) != NID_dsa) {
		return NULL;
	}
	*is_dsa = 1;
	X509_ALGOR_get0(NULL, &ptype, &pval, alg);
	return ptype == V_ASN1_SEQUENCE ? pval : NULL;
}

/*
 * Give x's key the parameters `params`, keeping its public key bits. OpenSSL 3.0 decodes a
 * key only when the certificate is parsed (X509_PUBKEY_get0 never caches a later decode), so
 * the completed SubjectPublicKeyInfo is decoded here and set as x's key; X509_set_pubkey()
 * leaves the TBSCertificate's saved encoding alone (the check in p11s_x509__dsa_inherit).
 */
static int set_params(X509 *x, const ASN1_STRING *params)
{
	X509_PUBKEY *pub = X509_get_X509_PUBKEY(x), *full = NULL;
	const unsigned char *bits = NULL, *q;
	unsigned char *copy = NULL, *der = NULL;
	ASN1_STRING *p = NULL;
	EVP_PKEY *key = NULL;
	int len = 0, dlen, rc = -1;

	if (!X509_PUBKEY_get0_param(NULL, &bits, &len, NULL, pub) || len <= 0) {
		return 0;
	}
	if ((full = X509_PUBKEY_new()) == NULL || (p = ASN1_STRING_dup(params)) == NULL ||
	    (copy = OPENSSL_memdup(bits, (size_t)len)) == NULL) {
		goto out;
	}
	if (!X509_PUBKEY_set0_param(full, OBJ_nid2obj(NID_dsa), V_ASN1_SEQUENCE, p, copy, len)) {
		goto out;
	}
	p = NULL;
	copy = NULL;
	if ((dlen = i2d_X509_PUBKEY(full, &der)) <= 0) {
		goto out;
	}
	q = der;
	if ((key = d2i_PUBKEY(NULL, &q, dlen)) == NULL) {
		rc = 0; /* not a DSA key with these parameters: left as it was */
		goto out;
	}
	rc = X509_set_pubkey(x, key) && X509_set_ex_data(x, inherited_idx, (void *)1) ? 1 : -1;
out:
	EVP_PKEY_free(key);
	OPENSSL_free(der);
	OPENSSL_free(copy);
	ASN1_STRING_free(p);
	X509_PUBKEY_free(full);
	return rc;
}

/* An issuer of x among `pool` whose DSA key has parameters (given or already inherited). */
static const ASN1_STRING *issuer_params(X509 *x, STACK_OF(X509) *pool)
{
	for (int i = 0; pool != NULL && i < sk_X509_num(pool); i++) {
		X509 *y = sk_X509_value(pool, i);
		const ASN1_STRING *p;
		int is_dsa;

		/* Name, AKID/SKI and keyCertSign (RFC 5280 §6.1.3 (a)(4)); not the signature. */
		if (y != x && (p = dsa_params(y, &is_dsa)) != NULL && X509_check_issued(y, x) == X509_V_OK) {
			return p;
		}
	}
	ERR_clear_error();
	return NULL;
}

int p11s_x509__dsa_inherit(STACK_OF(X509) *certs, const p11s_x509_store *s)
{
	STACK_OF(X509) *pool = NULL, *anchors = NULL;
	int changed = 1, rc = P11S_OK;

	if (!CRYPTO_THREAD_run_once(&idx_once, idx_init) || inherited_idx < 0) {
		return p11s_error__set(P11S_ERR_NOMEM, "cannot set up DSA parameter inheritance");
	}
	/* Nothing to do, nothing allocated, in the usual case. */
	for (int i = 0, is_dsa; i < sk_X509_num(certs); i++) {
		if (dsa_params(sk_X509_value(certs, i), &is_dsa) == NULL && is_dsa) {
			goto work;
		}
	}
	return P11S_OK;
work:
	anchors = s != NULL && s->store != NULL ? X509_STORE_get1_all_certs(s->store) : NULL;
	if ((pool = sk_X509_dup(certs)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; anchors != NULL && i < sk_X509_num(anchors); i++) {
		if (!sk_X509_push(pool, sk_X509_value(anchors, i))) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	/* Down the path, one level per round: an issuer may itself inherit (PKITS 4.1.5). */
	while (changed) {
		changed = 0;
		for (int i = 0, is_dsa; i < sk_X509_num(certs); i++) {
			X509 *x = sk_X509_value(certs, i);
			const ASN1_STRING *p;
			int r;

			if (dsa_params(x, &is_dsa) != NULL || !is_dsa ||
			    (p = issuer_params(x, pool)) == NULL) {
				continue;
			}
			if ((r = set_params(x, p)) < 0) {
				rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
				goto out;
			}
			changed |= r;
		}
	}
out:
	sk_X509_free(pool); /* borrowed elements */
	sk_X509_pop_free(anchors, X509_free);
	ERR_clear_error();
	return rc;
}

int p11s_x509__dsa_path_ok(STACK_OF(X509) *chain)
{
	if (!CRYPTO_THREAD_run_once(&idx_once, idx_init) || inherited_idx < 0) {
		return 0;
	}
	for (int i = 0; i + 1 < sk_X509_num(chain); i++) {
		X509 *x = sk_X509_value(chain, i);
		const ASN1_STRING *mine, *theirs;
		int is_dsa;

		if (X509_get_ex_data(x, inherited_idx) == NULL) {
			continue;
		}
		mine = dsa_params(x, &is_dsa);
		theirs = dsa_params(sk_X509_value(chain, i + 1), &is_dsa);
		if (mine == NULL || theirs == NULL || ASN1_STRING_cmp(mine, theirs) != 0) {
			return 0;
		}
	}
	return 1;
}

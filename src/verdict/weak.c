/*
 * The weak-algorithm policy (docs/verify.md, "Weak algorithms"): the one place that decides
 * whether a signature's digest, its signature algorithm, the signer's key or a certificate of
 * its path is too weak for the verdict to be "valid". Every verifier (src/cms/verify_signer.c
 * for verify, unwrap, the gateway and p11smime-gpg; src/ess/receipt.c for verify-receipt)
 * calls p11s_verdict__weak().
 *
 * Sources: RFC 8551 §2.1 (SHA-1 and MD5 are not to be used for signing; receiving agents MAY
 * reject them) and §2.2 (RSA keys of at least 2048 bits; smaller ones SHOULD NOT be accepted),
 * RFC 8550 §4.3 (certificate signatures: the same algorithms as for messages), NIST SP
 * 800-131A Rev. 2 §3 and §9 (SHA-1 disallowed for signature generation; RSA/DSA below 2048
 * bits and curves below 224 bits disallowed) and the CA/Browser Forum S/MIME Baseline
 * Requirements §6.1.5 and §7.1.3 (RSA >= 2048, P-256 or larger; SHA-256 or stronger).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "core/error_int.h"
#include "verdict/verdict.h"

/* Minimum key sizes (bits): RFC 8551 §2.2, NIST SP 800-131A Rev. 2 Table 2. */
#define MIN_RSA_BITS 2048
#define MIN_DSA_BITS 2048
#define MIN_EC_BITS 224

/* Digests whose collision resistance is broken (RFC 8551 §2.1; RFC 6151; SHAttered 2017). */
static const char *weak_digest(int nid)
{
	switch (nid) {
	case NID_md2: return "MD2";
	case NID_md4: return "MD4";
	case NID_md5: return "MD5";
	case NID_sha1: return "SHA-1";
	case NID_md5_sha1: return "MD5+SHA-1";
	default: return NULL;
	}
}

void p11s_verdict__key(const X509 *cert, const char **type, int *bits)
{
	EVP_PKEY *k = cert ? X509_get0_pubkey(cert) : NULL;

	*type = NULL;
	*bits = 0;
	if (k == NULL) {
		return;
	}
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_RSA:
	case EVP_PKEY_RSA_PSS: *type = "RSA"; break;
	case EVP_PKEY_DSA: *type = "DSA"; break;
	case EVP_PKEY_EC: *type = "EC"; break;
	case EVP_PKEY_ED25519: *type = "Ed25519"; break;
	case EVP_PKEY_ED448: *type = "Ed448"; break;
	default: *type = "unknown"; break;
	}
	*bits = EVP_PKEY_get_bits(k);
}

/* The minimum size for a key type, 0 when the type has no size rule (EdDSA: fixed curves). */
static int min_bits(const char *type)
{
	if (strcmp(type, "RSA") == 0) {
		return MIN_RSA_BITS;
	}
	if (strcmp(type, "DSA") == 0) {
		return MIN_DSA_BITS;
	}
	if (strcmp(type, "EC") == 0) {
		return MIN_EC_BITS;
	}
	return 0;
}

/* One finding: a reason by default, a warning with allow_weak (the caller's choice, for archives). */
typedef struct sink {
	int allow_weak;
	const char *who;
	p11s_reasons *reasons, *warnings;
} sink;

static int found(const sink *s, const char *what)
{
	if (s->allow_weak) {
		return p11s_reasons__add(s->warnings, "weak-algorithm", "%s%s%s accepted by --allow-weak",
		    s->who ? s->who : "", s->who ? ": " : "", what);
	}
	return p11s_reasons__add(s->reasons, "weak-algorithm",
	    "%s is not accepted (RFC 8551 section 2.1/2.2; --allow-weak accepts it)", what);
}

static int check_key(const sink *s, const X509 *cert, const char *role)
{
	const char *type;
	int bits, min;
	char what[600];

	p11s_verdict__key(cert, &type, &bits);
	if (type == NULL || (min = min_bits(type)) == 0 || bits >= min) {
		return P11S_OK;
	}
	{
		char *subj = p11s_x509__name(X509_get_subject_name(cert));

		snprintf(what, sizeof(what), "the %d-bit %s key of %s %s (minimum %d)", bits, type,
		    role, subj ? subj : "?", min);
		free(subj);
	}
	return found(s, what);
}

int p11s_verdict__weak(const p11s_weak_in *in, int allow_weak, const char *who,
    p11s_reasons *reasons, p11s_reasons *warnings)
{
	sink s = { allow_weak, who, reasons, warnings };
	const char *w;
	char what[600];
	int rc, n;

	/* The digest of the content and of the signed attributes (RFC 5652 §5.4). */
	if ((w = weak_digest(in->digest_nid)) != NULL) {
		snprintf(what, sizeof(what), "the %s digest algorithm of the signature", w);
		if ((rc = found(&s, what)) < 0) {
			return rc;
		}
	}
	/*
	 * A signature algorithm that names its own hash (sha1WithRSAEncryption, ecdsa-with-SHA1,
	 * dsaWithSHA1) signs with that hash whatever digestAlgorithm says (RFC 5754 §3).
	 */
	if (in->sigalg_nid != NID_undef) {
		int hash = NID_undef, pk = NID_undef;

		if (OBJ_find_sigid_algs(in->sigalg_nid, &hash, &pk) && hash != in->digest_nid &&
		    (w = weak_digest(hash)) != NULL) {
			snprintf(what, sizeof(what), "the signature algorithm %s (%s)",
			    OBJ_nid2ln(in->sigalg_nid), w);
			if ((rc = found(&s, what)) < 0) {
				return rc;
			}
		}
	}
	if (in->signer != NULL && (rc = check_key(&s, in->signer, "the signer certificate")) < 0) {
		return rc;
	}
	/*
	 * The path: every certificate but the trust anchor is checked for the hash of its
	 * signature (the anchor's self-signature is not used, RFC 5280 §6.1.1 (d)); every issuer's
	 * key, the anchor's included, for its size, because it made a signature the path relies on.
	 */
	n = in->chain ? sk_X509_num(in->chain) : 0;
	for (int i = 0; i < n; i++) {
		X509 *x = sk_X509_value(in->chain, i);
		int mdnid = NID_undef, pknid = NID_undef;

		if (i > 0 && (rc = check_key(&s, x, i == n - 1 ? "the trust anchor" : "the CA")) < 0) {
			return rc;
		}
		if (i == n - 1) {
			/* The anchor's own signature; a path of one is the anchor or not built. */
			break;
		}
		if (X509_get_signature_info(x, &mdnid, &pknid, NULL, NULL) &&
		    (w = weak_digest(mdnid)) != NULL) {
			char *subj = p11s_x509__name(X509_get_subject_name(x));

			snprintf(what, sizeof(what), "the %s signature on certificate %s (%s)", w,
			    subj ? subj : "?", OBJ_nid2ln(X509_get_signature_nid(x)));
			free(subj);
			if ((rc = found(&s, what)) < 0) {
				return rc;
			}
		}
	}
	return P11S_OK;
}

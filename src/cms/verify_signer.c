/*
 * `verify`: the checks of one SignerInfo (RFC 5652 §5.6 and RFC 8551 §2.5): signer
 * certificate by either SignerIdentifier, signature, messageDigest, contentType, ESS
 * signingCertificate(V2) (RFC 5035), RSASSA-PSS parameters (RFC 4056 §3), time-stamp token,
 * then path validation and the RFC 8550 checks (src/x509/). Every reason is collected.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/verify.h>

#include "cms/ber_stream.h"
#include "cms/cms_int.h"
#include "cms/verify_int.h"
#include "core/encode.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/signed.h"
#include "tsa/tsa_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

static char *serial_hex(const ASN1_INTEGER *sn)
{
	BIGNUM *bn = sn ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
	char *h = bn ? BN_bn2hex(bn) : NULL, *s = NULL;

	if (h != NULL) {
		s = strdup(h);
	}
	OPENSSL_free(h);
	BN_free(bn);
	return s;
}

static const char *ossl_text(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	buf[0] = '\0';
	if (e != 0) {
		ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

/* ---- ESS signingCertificate(V2) (RFC 2634 §5.4, RFC 5035) ------------------------------ */

/* Elements of a DER SEQUENCE as a stack of ASN1_TYPE (generic, no template needed). */
static STACK_OF(ASN1_TYPE) *seq_items(const unsigned char *p, long len)
{
	return d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
}

/*
 * Check the first ESSCertID(v2) against the signer certificate: RFC 5035 / RFC 5126 §5.6.3
 * say the first entry identifies the signer. certHash is over the whole DER certificate;
 * issuerSerial, when present, must name the same certificate.
 * @return 1 match, 0 mismatch (with `why`), -1 malformed.
 */
static int ess_match(const ASN1_STRING *attr_seq, int v2, X509 *cert, char *why, size_t wlen)
{
	STACK_OF(ASN1_TYPE) *outer = NULL, *ids = NULL, *id = NULL;
	const EVP_MD *md_def = v2 ? EVP_sha256() : EVP_sha1();
	EVP_MD *md_alg = NULL;
	X509_ALGOR *alg = NULL;
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	const ASN1_OCTET_STRING *certhash = NULL;
	int ret = -1, k = 0;

	if ((outer = seq_items(attr_seq->data, attr_seq->length)) == NULL ||
	    sk_ASN1_TYPE_num(outer) < 1 || sk_ASN1_TYPE_value(outer, 0)->type != V_ASN1_SEQUENCE) {
		goto out;
	}
	{
		const ASN1_STRING *s = sk_ASN1_TYPE_value(outer, 0)->value.sequence;

		if ((ids = seq_items(s->data, s->length)) == NULL || sk_ASN1_TYPE_num(ids) < 1 ||
		    sk_ASN1_TYPE_value(ids, 0)->type != V_ASN1_SEQUENCE) {
			goto out;
		}
		s = sk_ASN1_TYPE_value(ids, 0)->value.sequence;
		if ((id = seq_items(s->data, s->length)) == NULL || sk_ASN1_TYPE_num(id) < 1) {
			goto out;
		}
	}
	/* ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash, issuerSerial OPT } */
	if (v2 && sk_ASN1_TYPE_value(id, 0)->type == V_ASN1_SEQUENCE) {
		const ASN1_STRING *s = sk_ASN1_TYPE_value(id, 0)->value.sequence;
		const unsigned char *p = s->data;

		if ((alg = d2i_X509_ALGOR(NULL, &p, s->length)) == NULL ||
		    (md_alg = EVP_MD_fetch(NULL, OBJ_nid2sn(OBJ_obj2nid(alg->algorithm)), NULL)) == NULL) {
			snprintf(why, wlen, "signingCertificateV2 uses an unknown hash algorithm");
			ret = 0;
			goto out;
		}
		k = 1;
	}
	if (sk_ASN1_TYPE_num(id) <= k || sk_ASN1_TYPE_value(id, k)->type != V_ASN1_OCTET_STRING) {
		goto out;
	}
	certhash = sk_ASN1_TYPE_value(id, k)->value.octet_string;
	if (!X509_digest(cert, md_alg ? md_alg : md_def, hash, &hlen)) {
		goto out;
	}
	if ((unsigned int)certhash->length != hlen || memcmp(certhash->data, hash, hlen) != 0) {
		snprintf(why, wlen, "the %s attribute identifies another certificate than the signer's",
		    v2 ? "signingCertificateV2" : "signingCertificate");
		ret = 0;
		goto out;
	}
	/* IssuerSerial ::= SEQUENCE { issuer GeneralNames, serialNumber } */
	if (sk_ASN1_TYPE_num(id) > k + 1 && sk_ASN1_TYPE_value(id, k + 1)->type == V_ASN1_SEQUENCE) {
		const ASN1_STRING *s = sk_ASN1_TYPE_value(id, k + 1)->value.sequence;
		STACK_OF(ASN1_TYPE) *is = seq_items(s->data, s->length);
		int ok = 0;

		if (is != NULL && sk_ASN1_TYPE_num(is) == 2 &&
		    sk_ASN1_TYPE_value(is, 1)->type == V_ASN1_INTEGER) {
			const ASN1_STRING *gn = sk_ASN1_TYPE_value(is, 0)->value.sequence;
			const unsigned char *p = gn->data;
			GENERAL_NAMES *names = sk_ASN1_TYPE_value(is, 0)->type == V_ASN1_SEQUENCE
			    ? d2i_GENERAL_NAMES(NULL, &p, gn->length) : NULL;
			int name_ok = 0;

			for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
				const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

				name_ok |= g->type == GEN_DIRNAME &&
				    X509_NAME_cmp(g->d.directoryName, X509_get_issuer_name(cert)) == 0;
			}
			ok = name_ok && ASN1_INTEGER_cmp(sk_ASN1_TYPE_value(is, 1)->value.integer,
			                    X509_get0_serialNumber(cert)) == 0;
			GENERAL_NAMES_free(names);
		}
		sk_ASN1_TYPE_pop_free(is, ASN1_TYPE_free);
		if (!ok) {
			snprintf(why, wlen, "the issuerSerial of the %s attribute does not name the signer "
			    "certificate", v2 ? "signingCertificateV2" : "signingCertificate");
			ret = 0;
			goto out;
		}
	}
	ret = 1;
out:
	sk_ASN1_TYPE_pop_free(outer, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(ids, ASN1_TYPE_free);
	sk_ASN1_TYPE_pop_free(id, ASN1_TYPE_free);
	X509_ALGOR_free(alg);
	EVP_MD_free(md_alg);
	ERR_clear_error();
	return ret;
}

static int check_ess(CMS_SignerInfo *si, X509 *cert, p11s_reasons *r)
{
	static const struct {
		int nid, v2;
	} kinds[] = { { NID_id_smime_aa_signingCertificateV2, 1 },
		{ NID_id_smime_aa_signingCertificate, 0 } };
	char why[256];
	int rc;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int loc = CMS_signed_get_attr_by_NID(si, kinds[i].nid, -1);
		X509_ATTRIBUTE *a;
		ASN1_TYPE *t;
		int m;

		if (loc < 0) {
			continue;
		}
		a = CMS_signed_get_attr(si, loc);
		t = X509_ATTRIBUTE_get0_type(a, 0);
		if (CMS_signed_get_attr_by_NID(si, kinds[i].nid, loc) >= 0 ||
		    X509_ATTRIBUTE_count(a) != 1 || t == NULL || t->type != V_ASN1_SEQUENCE) {
			m = -1;
		} else {
			m = ess_match(t->value.sequence, kinds[i].v2, cert, why, sizeof(why));
		}
		if (m < 0) {
			rc = p11s_reasons__add(r, "signing-certificate-mismatch",
			    "malformed or repeated %s attribute",
			    kinds[i].v2 ? "signingCertificateV2" : "signingCertificate");
		} else if (m == 0) {
			rc = p11s_reasons__add(r, "signing-certificate-mismatch", "%s (RFC 5035)", why);
		} else {
			rc = P11S_OK;
		}
		if (rc < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

/* RFC 4056 §3: PSS parameters present, PSS hash = digestAlgorithm, MGF1 with the same hash. */
static int check_pss(const X509_ALGOR *sigalg, int digest_nid, p11s_reasons *r,
    p11s_reasons *warnings)
{
	RSA_PSS_PARAMS *pss = NULL;
	X509_ALGOR *mgfhash = NULL;
	int hash_nid, rc = P11S_OK;

	if (OBJ_obj2nid(sigalg->algorithm) != NID_rsassaPss) {
		return P11S_OK;
	}
	if (sigalg->parameter == NULL || sigalg->parameter->type != V_ASN1_SEQUENCE ||
	    (pss = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), sigalg->parameter)) ==
	        NULL) {
		rc = p11s_reasons__add(r, "bad-signature-parameters",
		    "RSASSA-PSS parameters absent or malformed (RFC 4056 section 3 requires them)");
		goto out;
	}
	hash_nid = pss->hashAlgorithm ? OBJ_obj2nid(pss->hashAlgorithm->algorithm) : NID_sha1;
	if (hash_nid != digest_nid) {
		rc = p11s_reasons__add(r, "bad-signature-parameters",
		    "RSASSA-PSS hash %s differs from the digest algorithm %s (RFC 4056 section 3)",
		    OBJ_nid2ln(hash_nid), OBJ_nid2ln(digest_nid));
		goto out;
	}
	if (pss->maskGenAlgorithm != NULL) {
		if (OBJ_obj2nid(pss->maskGenAlgorithm->algorithm) == NID_mgf1 &&
		    pss->maskGenAlgorithm->parameter != NULL) {
			mgfhash = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_ALGOR),
			    pss->maskGenAlgorithm->parameter);
		}
		if (mgfhash == NULL || OBJ_obj2nid(mgfhash->algorithm) != digest_nid) {
			rc = p11s_reasons__add(warnings, "pss-mgf",
			    "RSASSA-PSS mask generation is not MGF1 with %s (RFC 4056 section 3 SHOULD)",
			    OBJ_nid2ln(digest_nid));
		}
	} else if (digest_nid != NID_sha1) {
		rc = p11s_reasons__add(warnings, "pss-mgf",
		    "RSASSA-PSS mask generation is the default MGF1-SHA1, not MGF1 with %s",
		    OBJ_nid2ln(digest_nid));
	}
out:
	RSA_PSS_PARAMS_free(pss);
	X509_ALGOR_free(mgfhash);
	ERR_clear_error();
	return rc;
}

/* Signature over the content digest, for a SignerInfo without signedAttrs (RFC 5652 §5.4). */
static int verify_no_attrs(CMS_SignerInfo *si, digests *d, int idx)
{
	BIO *mdbio = BIO_new(BIO_f_md());
	EVP_MD_CTX *mctx = NULL;
	int ok = 0;

	if (mdbio != NULL && BIO_set_md(mdbio, d->md[idx]) > 0 && BIO_get_md_ctx(mdbio, &mctx) > 0 &&
	    EVP_MD_CTX_copy_ex(mctx, d->ctx[idx])) {
		ok = CMS_SignerInfo_verify_content(si, mdbio) == 1;
	}
	BIO_free(mdbio);
	return ok;
}

static int strv_push(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (nv == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	*v = nv;
	if ((nv[*n] = strdup(s ? s : "")) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	(*n)++;
	return P11S_OK;
}


/* Check one SignerInfo; fills `out`. */
/* Seconds since the epoch of an RFC 3339 UTC time as p11s_x509__time() writes it, or -1. */
static int64_t rfc3339_seconds(const char *t)
{
	struct tm tm;
	char z = 0, extra = 0;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &extra) != 7 || z != 'Z') {
		return -1;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

/* RFC 3339 UTC text of `t` (malloc'd), or NULL. */
static char *seconds_rfc3339(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	if (gmtime_r(&tt, &tm) == NULL) {
		return NULL;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return strdup(buf);
}

int p11s_cms__verify_signer(const verify_env *env, CMS_SignerInfo *si, signer_int *out)
{
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *sno = NULL;
	X509_ALGOR *dig = NULL, *sigalg = NULL;
	X509 *signer = NULL, *first = NULL;
	STACK_OF(X509) *chain = NULL;
	p11s_reasons *r = &out->reasons;
	int has_attrs = CMS_signed_get_attr_count(si) > 0;
	int dnid, idx, rc = P11S_OK, candidates = 0;
	char err[256];

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sigalg);
	dnid = p11s_cms__digest_nid(dig);
	if ((out->digest = strdup(dnid != NID_undef ? OBJ_nid2ln(dnid) : "unknown")) == NULL ||
	    (out->sigalg = strdup(OBJ_obj2nid(sigalg->algorithm) != NID_undef
	             ? OBJ_nid2sn(OBJ_obj2nid(sigalg->algorithm)) : "unknown")) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (!CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &sno)) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot read the SignerIdentifier");
	}
	if (issuer != NULL) {
		out->issuer = p11s_x509__name(issuer);
		out->serial = serial_hex(sno);
	}
	/* RFC 8551 §2.6: SKIs can collide; try every certificate that matches the identifier. */
	for (int i = 0; i < sk_X509_num(env->certs); i++) {
		X509 *x = sk_X509_value(env->certs, i);
		int ok;

		if (CMS_SignerInfo_cert_cmp(si, x) != 0) {
			continue;
		}
		candidates++;
		if (first == NULL) {
			first = x;
		}
		CMS_SignerInfo_set1_signer_cert(si, x);
		if (has_attrs && p11s_cms__is_eddsa_sig(si)) {
			/* RFC 8419: OpenSSL 3.0's CMS cannot check PureEdDSA (eddsa.c). */
			ok = p11s_cms__eddsa_verify(si, x, NULL, err, sizeof(err));
		} else if (has_attrs) {
			/* RFC 5652 §5.4: the signature is over the DER signedAttrs as received. */
			ok = CMS_SignerInfo_verify(si) == 1;
		} else {
			idx = p11s_cms__digests_find(env->d, dnid);
			ok = idx >= 0 && verify_no_attrs(si, env->d, idx);
		}
		if (ok) {
			signer = x;
			break;
		}
		ossl_text(err, sizeof(err));
	}
	ERR_clear_error();
	if (first == NULL) {
		char *kid = keyid ? p11s_core__hex(keyid->data, (size_t)keyid->length) : NULL;

		if (keyid != NULL) {
			rc = p11s_reasons__add(r, "signer-certificate-missing",
			    "no certificate with subjectKeyIdentifier %s in the message or --certs",
			    kid ? kid : "?");
		} else {
			rc = p11s_reasons__add(r, "signer-certificate-missing",
			    "no certificate issued by %s with serial %s in the message or --certs",
			    out->issuer ? out->issuer : "?", out->serial ? out->serial : "?");
		}
		free(kid);
		return rc;
	}
	if (signer == NULL) {
		/* Report the certificate named by the identifier, but it proved nothing. */
		signer = first;
		if ((rc = p11s_reasons__add(r, has_attrs ? "bad-signature" : "content-altered",
		         "%s does not verify with the signer's public key (%d candidate certificate%s)%s%s",
		         has_attrs ? "the signature over the signed attributes"
		                   : "the signature over the content",
		         candidates, candidates == 1 ? "" : "s", err[0] ? ": " : "", err)) < 0) {
			return rc;
		}
	}
	free(out->issuer);
	free(out->serial);
	if ((out->subject = p11s_x509__name(X509_get_subject_name(signer))) == NULL ||
	    (out->issuer = p11s_x509__name(X509_get_issuer_name(signer))) == NULL ||
	    (out->serial = serial_hex(X509_get0_serialNumber(signer))) == NULL ||
	    (rc = p11s_x509__emails(signer, &out->emails, &out->n_emails)) < 0) {
		return rc < 0 ? rc : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	/* Content digest (RFC 5652 §5.6: recomputed, never trusted from the sender). */
	idx = p11s_cms__digests_find(env->d, dnid);
	if (idx < 0) {
		rc = p11s_reasons__add(r, "unsupported-algorithm", "unsupported digest algorithm %s",
		    out->digest);
	} else if (has_attrs) {
		const ASN1_OCTET_STRING *md = CMS_signed_get0_data_by_OBJ(si,
		    OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING);
		const ASN1_OBJECT *ct = CMS_signed_get0_data_by_OBJ(si,
		    OBJ_nid2obj(NID_pkcs9_contentType), -3, V_ASN1_OBJECT);

		if (md == NULL) {
			rc = p11s_reasons__add(r, "bad-attributes",
			    "messageDigest attribute missing or repeated (RFC 5652 section 5.3)");
		} else if ((unsigned int)md->length != env->d->len[idx] ||
		    CRYPTO_memcmp(md->data, env->d->value[idx], env->d->len[idx]) != 0) {
			rc = p11s_reasons__add(r, "content-altered",
			    "the %s digest of the content differs from the signed messageDigest: the "
			    "content was altered after signing", out->digest);
		}
		if (rc >= 0 && ct == NULL) {
			rc = p11s_reasons__add(r, "bad-attributes",
			    "contentType attribute missing or repeated (RFC 5652 section 5.3)");
		} else if (rc >= 0 && OBJ_cmp(ct, CMS_get0_eContentType(env->cms)) != 0) {
			rc = p11s_reasons__add(r, "content-type-mismatch",
			    "contentType attribute differs from eContentType (RFC 5652 section 11.1)");
		}
		if (rc >= 0) {
			int loc = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
			ASN1_TYPE *t = loc >= 0 ? X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, loc), 0)
			                        : NULL;

			/* RFC 8551 §2.5.1: UTCTime or GeneralizedTime; claimed by the signer. */
			if (t != NULL && (t->type == V_ASN1_UTCTIME || t->type == V_ASN1_GENERALIZEDTIME)) {
				out->signing_time = p11s_x509__time(t->value.utctime);
			}
			size_t before = r->n;

			rc = check_ess(si, signer, r);
			/* Report the ESS binding (RFC 5035): which attribute bound the certificate. */
			if (rc >= 0) {
				out->sc_bound = r->n > before ? -1
				    : CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2, -1) >= 0
				    ? 2
				    : CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_signingCertificate, -1) >= 0
				    ? 1 : 0;
				rc = p11s_ess__read(si, &out->ess);
			}
			if (rc >= 0 && out->ess.label_malformed) {
				rc = p11s_reasons__add(r, "bad-attributes", "the ESSSecurityLabel attribute "
				                                            "is malformed or repeated (RFC 2634 "
				                                            "section 3.2)");
			}
		}
	} else if (OBJ_obj2nid(CMS_get0_eContentType(env->cms)) != NID_pkcs7_data) {
		rc = p11s_reasons__add(r, "bad-attributes",
		    "no signed attributes although eContentType is not id-data (RFC 5652 section 5.3)");
	}
	if (rc < 0 || (rc = check_pss(sigalg, dnid, r, env->warnings)) < 0) {
		return rc;
	}
	/*
	 * RFC 5126 §5.11.1 signature-time-stamp (unsigned): a token over the signature value,
	 * validated against the same trust anchors at its genTime. A bad token fails the signer.
	 */
	{
		int loc = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, -1);

		if (loc >= 0) {
			ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(CMS_unsigned_get_attr(si, loc), 0);
			ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
			size_t before = r->n;

			if (t == NULL || t->type != V_ASN1_SEQUENCE) {
				rc = p11s_reasons__add(r, "timestamp-invalid", "the signature-time-stamp "
				                                               "attribute is malformed");
			} else {
				rc = p11s_tsa__verify(t->value.sequence->data,
				    (size_t)t->value.sequence->length, sig->data, (size_t)sig->length,
				    env->store, env->certs, &out->ts_time, &out->ts_tsa, r);
			}
			if (rc < 0) {
				return rc;
			}
			out->ts_valid = r->n == before;
		}
	}
	/*
	 * RFC 8550 §4.2 / RFC 5280 §6: the path from the signer certificate to an anchor, at the
	 * time the time-stamp proved when it verified (CAdES-T, RFC 5126 §5.11.1: a signature
	 * made while the certificate was valid keeps verifying after it expires), else at the
	 * caller's time or now.
	 */
	{
		int64_t proven = -1, at;

		if (out->ts_valid && !env->store->has_time && out->ts_time != NULL &&
		    (proven = rfc3339_seconds(out->ts_time)) >= 0) {
			out->vt_source = "timestamp";
		} else {
			proven = -1;
			out->vt_source = env->store->has_time ? "given" : "now";
		}
		at = proven >= 0 ? proven : env->store->has_time ? env->store->time
		                                                  : (int64_t)time(NULL);
		if ((out->validation_time = seconds_rfc3339(at)) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		if ((rc = p11s_x509__validate_at(env->store, proven, signer, env->certs, env->crls,
		         &env->stapled, r, &chain, &out->rev, &out->n_rev)) < 0) {
			return rc;
		}
	}
	/* --soft-fail (revocation.h): an undecided revocation status is a warning, not a reason. */
	for (size_t i = 0; i < out->n_rev; i++) {
		if (out->rev[i].soft_failed &&
		    (rc = p11s_reasons__add(env->warnings, "revocation-unknown",
		         "revocation status unknown for %s, accepted (--soft-fail)",
		         out->rev[i].subject)) < 0) {
			return rc;
		}
	}
	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		char *s = p11s_x509__name(X509_get_subject_name(sk_X509_value(chain, i)));

		rc = s ? strv_push(&out->chain, &out->n_chain, s)
		       : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		free(s);
		if (rc < 0) {
			break;
		}
	}
	p11s_verdict__key(signer, &out->key_type, &out->key_bits);
	/* The weak-algorithm policy (src/verdict/weak.c): digest, signature, keys, the path. */
	if (rc >= 0) {
		p11s_weak_in w = { dnid, OBJ_obj2nid(sigalg->algorithm), signer, chain };
		char who[256];

		snprintf(who, sizeof(who), "signer %s", out->subject ? out->subject : "?");
		rc = p11s_verdict__weak(&w, env->allow_weak, who, r, env->warnings);
	}
	sk_X509_pop_free(chain, X509_free);
	if (rc < 0 || (rc = p11s_x509__check_signer_usage(signer, r)) < 0) {
		return rc;
	}
	out->nonrep = (X509_get_extension_flags(signer) & EXFLAG_KUSAGE) != 0 &&
	    (X509_get_key_usage(signer) & KU_NON_REPUDIATION) != 0;
	if (env->sender == NULL) {
		return p11s_reasons__add(env->warnings, "sender-not-checked",
		    "the From/Sender address was not compared with the signer certificate "
		    "(--no-sender-check)");
	}
	if ((rc = p11s_x509__check_sender(signer, env->sender, r)) < 0) {
		return rc;
	}
	return P11S_OK;
}

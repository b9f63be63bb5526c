/* `verify`: the result, and its public view (validation's types mapped by src/verdict/). */
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
#include "cms/verify_int.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/signed.h"
#include "tsa/tsa_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

/* ---- the result -------------------------------------------------------------------------- */

static void signer_free(signer_int *s)
{
	p11s_reasons__clear(&s->reasons);
	free(s->subject);
	free(s->issuer);
	free(s->serial);
	free(s->signing_time);
	free(s->digest);
	free(s->sigalg);
	p11s_x509__strv_free(s->emails, s->n_emails);
	p11s_x509__strv_free(s->chain, s->n_chain);
	p11s_ess__info_clear(&s->ess);
	free(s->ts_time);
	free(s->validation_time);
	free(s->ts_tsa);
	p11s_x509__revocation_free(s->rev, s->n_rev);
	free(s->reasons_view);
	free(s->rev_view);
}

void p11s_verify_result_free(p11s_verify_result *r)
{
	if (r == NULL) {
		return;
	}
	if (r->priv != NULL) {
		for (size_t i = 0; i < r->priv->n_si; i++) {
			signer_free(&r->priv->si[i]);
		}
		free(r->priv->si);
		free(r->priv->pub);
		p11s_reasons__clear(&r->priv->reasons);
		p11s_reasons__clear(&r->priv->warnings);
		free(r->priv->reasons_view);
		free(r->priv->warnings_view);
		CMS_ContentInfo_free(r->priv->cms);
		if (r->priv->content != NULL) {
			fclose(r->priv->content);
		}
		free(r->priv->nested);
		free(r->priv->date);
		free(r->priv->protected_date);
		p11s_cms__protected_free(r->priv);
		free(r->priv);
	}
	free(r);
}

/* Point the public view at the internal data (validation's types mapped by src/verdict/). */
int p11s_cms__publish(p11s_verify_result *res)
{
	struct p11s_verify_priv *p = res->priv;
	int all = p->n_si > 0, rc;

	if (p->n_si > 0 && (p->pub = calloc(p->n_si, sizeof(*p->pub))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rc = p11s_verdict__reasons(&p->reasons, &p->reasons_view)) < 0 ||
	    (rc = p11s_verdict__reasons(&p->warnings, &p->warnings_view)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < p->n_si; i++) {
		signer_int *s = &p->si[i];
		p11s_verify_signer *v = &p->pub[i];

		if ((rc = p11s_verdict__reasons(&s->reasons, &s->reasons_view)) < 0 ||
		    (rc = p11s_verdict__revocation(s->rev, s->n_rev, &s->rev_view)) < 0) {
			return rc;
		}
		v->valid = s->reasons.n == 0;
		all &= v->valid;
		v->subject = s->subject;
		v->issuer = s->issuer;
		v->serial = s->serial;
		v->emails = (const char *const *)s->emails;
		v->n_emails = s->n_emails;
		v->signing_time = s->signing_time;
		v->digest = s->digest;
		v->signature_algorithm = s->sigalg;
		v->chain = (const char *const *)s->chain;
		v->n_chain = s->n_chain;
		v->reasons = s->reasons_view;
		v->n_reasons = s->reasons.n;
		v->security_label = s->ess.label;
		v->equivalent_labels = (const char *const *)s->ess.equivalent;
		v->n_equivalent_labels = s->ess.n_equivalent;
		v->receipt_request = s->ess.receipt_request;
		v->timestamp = s->ts_time;
		v->timestamp_authority = s->ts_tsa;
		v->timestamp_valid = s->ts_valid;
		v->signing_certificate = s->sc_bound;
		v->non_repudiation = s->nonrep;
		v->key_type = s->key_type;
		v->key_bits = s->key_bits;
		v->has_date_skew = s->has_date_skew;
		v->date_skew = s->date_skew;
		v->has_timestamp_skew = s->has_ts_skew;
		v->timestamp_skew = s->ts_skew;
		v->validation_time = s->validation_time;
		v->validation_time_source = s->vt_source;
		v->revocation = s->rev_view;
		v->n_revocation = s->n_rev;
	}
	res->signers = p->pub;
	res->n_signers = p->n_si;
	res->reasons = p->reasons_view;
	res->n_reasons = p->reasons.n;
	res->warnings = p->warnings_view;
	res->n_warnings = p->warnings.n;
	res->signed_part_path = p->nested;
	res->date = p->date;
	res->protected_date = p->protected_date;
	res->hp = p->hp;
	res->protected_headers = p->prot_view;
	res->n_protected_headers = p->n_prot;
	res->header_differs = p->diff_view;
	res->n_header_differs = p->n_diff;
	/* Valid only if the root is signed, there are signers, and every one is valid. */
	res->valid = all && p->reasons.n == 0 && p->kind != P11S_MIME_NOT_SIGNED;
	return P11S_OK;
}

/* Validation results in the public verify types (verdict.h): views, never copies of strings. */
#include <stdlib.h>

#include "core/error_int.h"
#include "verdict/verdict.h"

void p11s_verdict__x509_opts(const p11s_verify_opts *in, p11s_x509_opts *out)
{
	out->trust_files = in->trust_files;
	out->n_trust_files = in->n_trust_files;
	out->cert_files = in->cert_files;
	out->n_cert_files = in->n_cert_files;
	out->crl_files = in->crl_files;
	out->n_crl_files = in->n_crl_files;
	out->has_time = in->has_time;
	out->time = in->time;
}

int p11s_verdict__reasons(const p11s_reasons *r, p11s_verify_reason **out)
{
	p11s_verify_reason *v;

	*out = NULL;
	if (r->n == 0) {
		return P11S_OK;
	}
	if ((v = calloc(r->n, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < r->n; i++) {
		v[i].code = r->v[i].code;
		v[i].message = r->v[i].message;
	}
	*out = v;
	return P11S_OK;
}

int p11s_verdict__revocation(const p11s_x509_revocation *rev, size_t n,
    p11s_verify_revocation **out)
{
	p11s_verify_revocation *v;

	*out = NULL;
	if (n == 0) {
		return P11S_OK;
	}
	if ((v = calloc(n, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		v[i].subject = rev[i].subject;
		v[i].status = rev[i].status;
		v[i].problem = rev[i].problem;
		v[i].crl_issuer = rev[i].crl_issuer;
		v[i].crl_this_update = rev[i].crl_this_update;
		v[i].crl_next_update = rev[i].crl_next_update;
		v[i].crl_number = rev[i].crl_number;
		v[i].source = rev[i].source;
		v[i].ocsp_responder = rev[i].ocsp_responder;
		v[i].ocsp_produced_at = rev[i].ocsp_produced_at;
		v[i].ocsp_this_update = rev[i].ocsp_this_update;
		v[i].ocsp_next_update = rev[i].ocsp_next_update;
		v[i].revocation_time = rev[i].revocation_time;
		v[i].soft_failed = rev[i].soft_failed;
	}
	*out = v;
	return P11S_OK;
}

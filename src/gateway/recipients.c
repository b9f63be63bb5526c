/*
 * Outbound recipients from the certificate store (docs/certificates.md, "The gateway"): the
 * same choice as `encrypt --to ADDRESS`, validated to the [inbound] trust anchors and CRLs;
 * when the store has no usable certificate, the [outbound] ldap directories are asked and
 * their answers cached, so each address goes to a directory at most once per cache period
 * while its certificate stays valid. One store handle per call: workers never share one.
 */
#include <stdlib.h>

#include "gateway.h"

int gw_store_recipient(const gw_config *cfg, const char *addr, X509 **cert, int *caps)
{
	p11s_recipient_opts ro = P11S_RECIPIENT_OPTS_INIT;
	p11s_store *s;
	int rc;

	*cert = NULL;
	if (p11s_store_open(&s, cfg->store) < 0) {
		p11s_log(P11S_LOG_WARN, "certificate store: %s", p11s_error_last()->message);
		return -1;
	}
	ro.trust_files = (const char *const *)cfg->trust;
	ro.n_trust_files = cfg->ntrust;
	ro.crl_files = (const char *const *)cfg->crl;
	ro.n_crl_files = cfg->ncrl;
	rc = p11s_store_recipient(s, addr, &ro, cert, caps);
	if (rc == P11S_ERR_VERIFY && cfg->nldap > 0) {
		for (size_t i = 0; i < cfg->nldap; i++) {
			if (p11s_store_ldap_fetch(s, cfg->ldap[i], addr, NULL, NULL) < 0) {
				p11s_log(P11S_LOG_WARN, "%s", p11s_error_last()->message);
			}
		}
		rc = p11s_store_recipient(s, addr, &ro, cert, caps);
	}
	if (rc < 0) {
		p11s_log(P11S_LOG_INFO, "no certificate from the store: %s",
		    p11s_error_last()->message);
	}
	p11s_store_close(s);
	return rc < 0 ? -1 : 0;
}

void gw_store_harvest(const gw_config *cfg, const p11s_verify_result *v)
{
	p11s_store *s = NULL;
	size_t n = 0;

	if (p11s_store_open(&s, cfg->store) < 0 || p11s_verify_harvest(v, s, &n) < 0) {
		p11s_log(P11S_LOG_WARN, "not harvested: %s", p11s_error_last()->message);
	} else {
		p11s_log(P11S_LOG_INFO, "harvested %zu signer(s)", n);
	}
	p11s_store_close(s);
}

/*
 * `p11smime verify [--trust FILE]... [--certs FILE]... [--crl FILE]... [--at TIME] [--in FILE]
 * [--out FILE]` (CLI.md): verify a signed message, report every signer and every reason.
 * Exit 0 only when the whole message is signed and every signer is valid and trusted; 1 for
 * any verification failure; 2 for malformed input or usage errors. The signed entity is
 * written to --out only after a valid verdict, atomically.
 */
#include <stdlib.h>
#include <string.h>

#include "recipients.h"

static void text_reason(FILE *f, const char *indent, const char *what,
    const p11s_verify_reason *r)
{
	fprintf(f, "%s%s: %s: %s\n", indent, what, r->code, r->message);
}

void cli_verify_report_text(FILE *f, const p11s_verify_result *r)
{
	size_t bad = 0;

	for (size_t i = 0; i < r->n_signers; i++) {
		bad += !r->signers[i].valid;
	}
	if (r->valid) {
		fprintf(f, "verdict: VALID (%zu signer%s, all valid and trusted)\n", r->n_signers,
		    r->n_signers == 1 ? "" : "s");
	} else if (r->structure == NULL) {
		fprintf(f, "verdict: NOT SIGNED\n");
	} else {
		fprintf(f, "verdict: INVALID (%zu of %zu signer%s not valid)\n", bad, r->n_signers,
		    r->n_signers == 1 ? "" : "s");
	}
	fprintf(f, "structure: %s\n", r->structure ? r->structure : "not signed");
	fprintf(f, "date: %s\n", r->date ? r->date : "(no Date header: not compared)");
	if (r->protected_date != NULL) {
		fprintf(f, "protected date: %s\n", r->protected_date);
	}
	/* RFC 9788: the header fields the signer signed, and where the outer ones differ. */
	if (r->hp != NULL) {
		fprintf(f, "header protection: hp=%s, %zu protected field%s\n", r->hp,
		    r->n_protected_headers, r->n_protected_headers == 1 ? "" : "s");
		for (size_t i = 0; i < r->n_protected_headers; i++) {
			fprintf(f, "  protected %s: %s\n", r->protected_headers[i].name,
			    r->protected_headers[i].value);
		}
		for (size_t i = 0; i < r->n_header_differs; i++) {
			const p11s_header_field *d = &r->header_differs[i];

			fprintf(f, "  outer %s differs: %s (protected: %s)\n", d->name,
			    d->outer ? d->outer : "(absent)", d->value ? d->value : "(absent)");
		}
	}
	if (strcmp(r->signed_part, "whole-message") == 0) {
		fprintf(f, "signed part: the whole message\n");
	} else if (strcmp(r->signed_part, "nested-part") == 0) {
		fprintf(f, "signed part: only part %s inside the message; the message itself is NOT "
		           "signed\n", r->signed_part_path ? r->signed_part_path : "?");
	} else {
		fprintf(f, "signed part: none\n");
	}
	for (size_t i = 0; i < r->n_reasons; i++) {
		text_reason(f, "", "reason", &r->reasons[i]);
	}
	for (size_t i = 0; i < r->n_warnings; i++) {
		text_reason(f, "", "warning", &r->warnings[i]);
	}
	for (size_t i = 0; i < r->n_signers; i++) {
		const p11s_verify_signer *s = &r->signers[i];

		fprintf(f, "signer %zu: %s\n", i + 1, s->valid ? "VALID" : "INVALID");
		fprintf(f, "  subject: %s\n", s->subject ? s->subject : "(certificate not found)");
		fprintf(f, "  e-mail:");
		for (size_t j = 0; j < s->n_emails; j++) {
			fprintf(f, "%s %s", j ? "," : "", s->emails[j]);
		}
		fprintf(f, "%s\n", s->n_emails ? "" : " (none)");
		fprintf(f, "  issuer: %s\n", s->issuer ? s->issuer : "?");
		fprintf(f, "  serial: %s\n", s->serial ? s->serial : "?");
		if (s->signing_time != NULL) {
			fprintf(f, "  signing time: %s (claimed by the signer, not verified)\n",
			    s->signing_time);
			if (s->has_date_skew) {
				fprintf(f, "  date - signing time: %+lld s\n", (long long)s->date_skew);
			}
		} else {
			fprintf(f, "  signing time: (none)\n");
		}
		fprintf(f, "  digest: %s\n", s->digest ? s->digest : "?");
		fprintf(f, "  signature algorithm: %s\n",
		    s->signature_algorithm ? s->signature_algorithm : "?");
		if (s->key_type != NULL) {
			fprintf(f, "  key: %s %d bits\n", s->key_type, s->key_bits);
		}
		/* Evidence (docs/evidence.md). */
		if (s->timestamp != NULL) {
			fprintf(f, "  timestamp: %s by %s (%s)\n", s->timestamp,
			    s->timestamp_authority ? s->timestamp_authority : "?",
			    s->timestamp_valid ? "verified RFC 3161 token" : "NOT valid");
			if (s->has_timestamp_skew) {
				fprintf(f, "  date - timestamp: %+lld s\n", (long long)s->timestamp_skew);
			}
		}
		/* Only a time other than now is worth a line: the same message verified twice
		 * then reads the same (--json always has validation_time). */
		if (s->validation_time != NULL && s->validation_time_source != NULL &&
		    strcmp(s->validation_time_source, "now") != 0) {
			fprintf(f, "  path validated at: %s (%s)\n", s->validation_time,
			    strcmp(s->validation_time_source, "timestamp") == 0 ? "the time-stamp's genTime"
			                                                       : "the time asked for");
		}
		fprintf(f, "  signing certificate binding: %s\n",
		    s->signing_certificate == 2 ? "signingCertificateV2 matches"
		    : s->signing_certificate == 1 ? "signingCertificate (v1) matches"
		    : s->signing_certificate < 0 ? "DOES NOT MATCH" : "none");
		fprintf(f, "  non-repudiation: %s\n", s->non_repudiation ? "allowed by keyUsage"
		                                                          : "not asserted");
		if (s->security_label != NULL) {
			fprintf(f, "  security label: %s\n", s->security_label);
		}
		for (size_t j = 0; j < s->n_equivalent_labels; j++) {
			fprintf(f, "  equivalent label: %s\n", s->equivalent_labels[j]);
		}
		if (s->receipt_request != NULL) {
			fprintf(f, "  receipt request: %s\n", s->receipt_request);
		}
		fprintf(f, "  chain:%s\n", s->n_chain ? "" : " (not built)");
		for (size_t j = 0; j < s->n_chain; j++) {
			fprintf(f, "    %zu: %s\n", j, s->chain[j]);
		}
		/* Evidence: the revocation status used for each certificate of the path. */
		if (s->n_revocation > 0) {
			fprintf(f, "  revocation:\n");
		}
		for (size_t j = 0; j < s->n_revocation; j++) {
			const p11s_verify_revocation *v = &s->revocation[j];

			fprintf(f, "    %zu: %s%s%s", j, v->status, v->problem ? " " : "",
			    v->problem ? v->problem : "");
			if (v->crl_issuer != NULL) {
				fprintf(f, " (CRL of %s, thisUpdate %s", v->crl_issuer,
				    v->crl_this_update ? v->crl_this_update : "?");
				if (v->crl_next_update != NULL) {
					fprintf(f, ", nextUpdate %s", v->crl_next_update);
				}
				if (v->crl_number != NULL) {
					fprintf(f, ", number %s", v->crl_number);
				}
				fputc(')', f);
			}
			if (v->source != NULL) {
				fprintf(f, " [%s]", v->source);
			}
			if (v->ocsp_responder != NULL && v->ocsp_this_update != NULL) {
				fprintf(f, " (OCSP %s, thisUpdate %s", v->ocsp_responder, v->ocsp_this_update);
				if (v->ocsp_next_update != NULL) {
					fprintf(f, ", nextUpdate %s", v->ocsp_next_update);
				}
				fputc(')', f);
			}
			if (v->soft_failed) {
				fputs(" (accepted: --soft-fail)", f);
			}
			if (strcmp(v->status, "good") == 0 && v->revocation_time != NULL) {
				fprintf(f, " (revoked later, %s: after the validation time)", v->revocation_time);
			}
			fputc('\n', f);
		}
		for (size_t j = 0; j < s->n_reasons; j++) {
			text_reason(f, "  ", "reason", &s->reasons[j]);
		}
	}
}


static void json_reasons(FILE *f, const p11s_verify_reason *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "code");
		json_str(f, v[i].code);
		fputc(',', f);
		json_key(f, "message");
		json_str(f, v[i].message);
		fputc('}', f);
	}
	fputc(']', f);
}

static void json_strv(FILE *f, const char *const *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (i) {
			fputc(',', f);
		}
		json_str(f, v[i]);
	}
	fputc(']', f);
}

/* The revocation entries of a signer (docs/evidence.md, "evidence report"). */
static void json_revocation(FILE *f, const p11s_verify_revocation *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "subject");
		json_opt_str(f, v[i].subject);
		fputc(',', f);
		json_key(f, "checked");
		fputs(strcmp(v[i].status, "not-checked") != 0 ? "true," : "false,", f);
		json_key(f, "status");
		json_str(f, v[i].status);
		fputc(',', f);
		json_key(f, "problem");
		json_opt_str(f, v[i].problem);
		fputc(',', f);
		json_key(f, "crl");
		if (v[i].crl_issuer == NULL) {
			fputs("null", f);
		} else {
			fputc('{', f);
			json_key(f, "issuer");
			json_str(f, v[i].crl_issuer);
			fputc(',', f);
			json_key(f, "this_update");
			json_opt_str(f, v[i].crl_this_update);
			fputc(',', f);
			json_key(f, "next_update");
			json_opt_str(f, v[i].crl_next_update);
			fputc(',', f);
			json_key(f, "number");
			json_opt_str(f, v[i].crl_number);
			fputc('}', f);
		}
		/* Live revocation (issue 19): which source decided, and the OCSP response. */
		fputc(',', f);
		json_key(f, "source");
		json_opt_str(f, v[i].source);
		fputc(',', f);
		json_key(f, "soft_failed");
		fputs(v[i].soft_failed ? "true," : "false,", f);
		json_key(f, "ocsp");
		if (v[i].ocsp_responder == NULL) {
			fputs("null", f);
		} else {
			fputc('{', f);
			json_key(f, "responder");
			json_str(f, v[i].ocsp_responder);
			fputc(',', f);
			json_key(f, "produced_at");
			json_opt_str(f, v[i].ocsp_produced_at);
			fputc(',', f);
			json_key(f, "this_update");
			json_opt_str(f, v[i].ocsp_this_update);
			fputc(',', f);
			json_key(f, "next_update");
			json_opt_str(f, v[i].ocsp_next_update);
			fputc(',', f);
			json_key(f, "revocation_time");
			json_opt_str(f, v[i].revocation_time);
			fputc('}', f);
		}
		fputc('}', f);
	}
	fputc(']', f);
}

void cli_verify_report_json(FILE *f, const p11s_verify_result *r)
{
	fputc('{', f);
	json_key(f, "valid");
	fputs(r->valid ? "true," : "false,", f);
	json_key(f, "structure");
	json_opt_str(f, r->structure);
	fputc(',', f);
	json_key(f, "signed_part");
	json_str(f, r->signed_part);
	fputc(',', f);
	json_key(f, "signed_part_path");
	json_opt_str(f, r->signed_part_path);
	fputc(',', f);
	json_key(f, "date");
	json_opt_str(f, r->date);
	fputc(',', f);
	json_key(f, "protected_date");
	json_opt_str(f, r->protected_date);
	fputc(',', f);
	/* RFC 9788 (docs/verify.md "Header protection"): null without an hp parameter. */
	json_key(f, "header_protection");
	json_header_protection(f, r->hp, r->protected_headers, r->n_protected_headers,
	    r->header_differs, r->n_header_differs);
	fputc(',', f);
	json_key(f, "signers");
	fputc('[', f);
	for (size_t i = 0; i < r->n_signers; i++) {
		const p11s_verify_signer *s = &r->signers[i];

		fprintf(f, "%s{", i ? "," : "");
		json_key(f, "valid");
		fputs(s->valid ? "true," : "false,", f);
		json_key(f, "subject");
		json_opt_str(f, s->subject);
		fputc(',', f);
		json_key(f, "emails");
		json_strv(f, s->emails, s->n_emails);
		fputc(',', f);
		json_key(f, "issuer");
		json_opt_str(f, s->issuer);
		fputc(',', f);
		json_key(f, "serial");
		json_opt_str(f, s->serial);
		fputc(',', f);
		json_key(f, "signing_time");
		json_opt_str(f, s->signing_time);
		fputc(',', f);
		/* Date - signingTime and Date - genTime in seconds (docs/verify.md "Dates"). */
		json_key(f, "date_difference");
		if (s->has_date_skew) {
			fprintf(f, "%lld,", (long long)s->date_skew);
		} else {
			fputs("null,", f);
		}
		json_key(f, "timestamp_date_difference");
		if (s->has_timestamp_skew) {
			fprintf(f, "%lld,", (long long)s->timestamp_skew);
		} else {
			fputs("null,", f);
		}
		json_key(f, "digest");
		json_opt_str(f, s->digest);
		fputc(',', f);
		json_key(f, "signature_algorithm");
		json_opt_str(f, s->signature_algorithm);
		fputc(',', f);
		json_key(f, "key_type");
		json_opt_str(f, s->key_type);
		fputc(',', f);
		json_key(f, "key_bits");
		fprintf(f, "%d,", s->key_bits);
		json_key(f, "chain");
		json_strv(f, s->chain, s->n_chain);
		fputc(',', f);
		json_key(f, "reasons");
		json_reasons(f, s->reasons, s->n_reasons);
		fputc(',', f);
		json_key(f, "timestamp");
		json_opt_str(f, s->timestamp);
		fputc(',', f);
		json_key(f, "timestamp_authority");
		json_opt_str(f, s->timestamp_authority);
		fputc(',', f);
		json_key(f, "timestamp_valid");
		fputs(s->timestamp == NULL ? "null," : s->timestamp_valid ? "true," : "false,", f);
		json_key(f, "validation_time");
		json_opt_str(f, s->validation_time);
		fputc(',', f);
		json_key(f, "validation_time_source");
		json_opt_str(f, s->validation_time_source);
		fputc(',', f);
		json_key(f, "signing_certificate");
		fputs(s->signing_certificate == 2 ? "\"v2\"," : s->signing_certificate == 1 ? "\"v1\","
		    : s->signing_certificate < 0 ? "\"mismatch\"," : "null,", f);
		json_key(f, "non_repudiation");
		fputs(s->non_repudiation ? "true," : "false,", f);
		json_key(f, "security_label");
		json_opt_str(f, s->security_label);
		fputc(',', f);
		json_key(f, "equivalent_labels");
		json_strv(f, s->equivalent_labels, s->n_equivalent_labels);
		fputc(',', f);
		json_key(f, "receipt_request");
		json_opt_str(f, s->receipt_request);
		fputc(',', f);
		json_key(f, "revocation");
		json_revocation(f, s->revocation, s->n_revocation);
		fputc('}', f);
	}
	fputs("],", f);
	json_key(f, "reasons");
	json_reasons(f, r->reasons, r->n_reasons);
	fputc(',', f);
	json_key(f, "warnings");
	json_reasons(f, r->warnings, r->n_warnings);
	fputs("}\n", f);
}

/*
 * The configuration file's repeated `key` (NULL when absent): verify's default trust anchors,
 * CRLs and intermediates when no --trust is given (docs/verify.md, docs/git.md).
 */
static const char **config_list(const p11s_config *cfg, const char *key, size_t *n)
{
	const char **v;
	size_t k = 0;

	while (p11s_config_get_nth(cfg, "", key, k) != NULL) {
		k++;
	}
	if (k == 0 || (v = calloc(k, sizeof(*v))) == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < k; i++) {
		v[i] = p11s_config_get_nth(cfg, "", key, i);
	}
	*n = k;
	return v;
}

/*
 * Live revocation (issue 19, docs/verify.md "Revocation"): --revocation, --fetch/--no-fetch,
 * --soft-fail, --ocsp-url, --ocsp-scope, --fetch-allow/--fetch-deny, and the configuration
 * keys of the same names. Without any of them verify behaves as before (--crl files alone).
 */
enum {
	O_REVOCATION = CLI_O_OWN + 0x40, O_FETCH, O_NO_FETCH, O_SOFT_FAIL, O_OCSP_URL, O_OCSP_SCOPE,
	O_FETCH_ALLOW, O_FETCH_DENY
};

typedef struct rev_cli {
	int given;                       /* a revocation option or config key was used */
	const char *methods, *scope;
	int fetch, soft_fail;            /* -1: not given */
	p11s_revocation_opts o;
	const char **allow, **deny;      /* command line (borrowed argv) */
	size_t n_allow, n_deny;
} rev_cli;

/* 1 yes, 0 no, -1 neither. */
static int rev_bool(const char *s)
{
	if (s == NULL) {
		return -1;
	}
	if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
		return 1;
	}
	if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
		return 0;
	}
	return -2;
}

/* One of our options; -1 if `c` is not one. */
static int rev_option(rev_cli *r, int c, const char *arg)
{
	switch (c) {
	case O_REVOCATION:
		r->methods = arg;
		break;
	case O_FETCH:
	case O_NO_FETCH:
		r->fetch = c == O_FETCH;
		break;
	case O_SOFT_FAIL:
		r->soft_fail = 1;
		break;
	case O_OCSP_URL:
		r->o.ocsp_url = arg;
		break;
	case O_OCSP_SCOPE:
		r->scope = arg;
		break;
	case O_FETCH_ALLOW:
	case O_FETCH_DENY:
		if (c == O_FETCH_ALLOW ? cli_strv_push(&r->allow, &r->n_allow, arg)
		                       : cli_strv_push(&r->deny, &r->n_deny, arg)) {
			return cli_usage_error("verify: out of memory");
		}
		break;
	default:
		return -1;
	}
	r->given = 1;
	return EXIT_OK;
}

/* The policy from the options, then the configuration file's keys for what they left open. */
static int rev_finish(rev_cli *r, const p11s_config *cfg, int have_crl_files)
{
	const char *v;
	int b;

	if (r->methods == NULL && (r->methods = p11s_config_get(cfg, "", "revocation")) != NULL) {
		r->given = 1;
	}
	if (r->fetch < 0 && (v = p11s_config_get(cfg, "", "fetch")) != NULL) {
		if ((b = rev_bool(v)) < 0) {
			return cli_usage_error("verify: configuration key fetch must be yes or no");
		}
		r->fetch = b;
	}
	if (r->soft_fail < 0 && (v = p11s_config_get(cfg, "", "soft-fail")) != NULL) {
		if ((b = rev_bool(v)) < 0) {
			return cli_usage_error("verify: configuration key soft-fail must be yes or no");
		}
		r->soft_fail = b;
	}
	if (r->o.ocsp_url == NULL) {
		r->o.ocsp_url = p11s_config_get(cfg, "", "ocsp-url");
	}
	if (r->scope == NULL) {
		r->scope = p11s_config_get(cfg, "", "ocsp-scope");
	}
	if (!r->given) {
		return EXIT_OK;
	}
	if (r->methods != NULL) {
		if (p11s_revocation_parse_methods(r->methods, &r->o.methods) < 0) {
			return cli_usage_error("verify: %s", p11s_error_last()->message);
		}
	} else {
		/* --fetch alone: the CRLs --crl asked for, plus fetched issuers and CRLs. */
		r->o.methods = have_crl_files ? P11S_REV_CRL : 0;
	}
	if (r->scope != NULL && strcmp(r->scope, "leaf") != 0 && strcmp(r->scope, "path") != 0) {
		return cli_usage_error("verify: --ocsp-scope must be leaf or path");
	}
	r->o.ocsp_whole_path = r->scope != NULL && strcmp(r->scope, "path") == 0;
	/* An explicit policy fetches unless told not to (the gateway's default is off). */
	r->o.fetch = r->fetch != 0;
	r->o.soft_fail = r->soft_fail > 0;
	if (cli_strv_from_config(cfg, "fetch-allow", &r->allow, &r->n_allow) < 0 ||
	    cli_strv_from_config(cfg, "fetch-deny", &r->deny, &r->n_deny) < 0) {
		return cli_usage_error("verify: out of memory");
	}
	r->o.fetch_allow = r->allow;
	r->o.n_fetch_allow = r->n_allow;
	r->o.fetch_deny = r->deny;
	r->o.n_fetch_deny = r->n_deny;
	return EXIT_OK;
}

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTS_VERIFY,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		CLI_OPT_NO_SENDER_CHECK,
		{ "store", optional_argument, NULL, CLI_O_STORE }, /* harvest (docs/certificates.md) */
		{ "revocation", required_argument, NULL, O_REVOCATION },
		{ "fetch", no_argument, NULL, O_FETCH },
		{ "no-fetch", no_argument, NULL, O_NO_FETCH },
		{ "soft-fail", no_argument, NULL, O_SOFT_FAIL },
		{ "ocsp-url", required_argument, NULL, O_OCSP_URL },
		{ "ocsp-scope", required_argument, NULL, O_OCSP_SCOPE },
		{ "fetch-allow", required_argument, NULL, O_FETCH_ALLOW },
		{ "fetch-deny", required_argument, NULL, O_FETCH_DENY },
		{ NULL, 0, NULL, 0 },
	};
	rev_cli rev = { .fetch = -1, .soft_fail = -1, .o = P11S_REVOCATION_OPTS_INIT };
	cli_args a;
	const char *store = NULL;
	int harvest = cli_harvest_configured(g);
	const char **cfg_trust = NULL, **cfg_crl = NULL, **cfg_certs = NULL;
	p11s_verify_result *res = NULL;
	FILE *report;
	int c, status;

	cli_args_init(&a, "verify");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (c == CLI_O_STORE) {
			harvest = 1;
			store = optarg;
			continue;
		}
		if ((status = rev_option(&rev, c, optarg)) >= 0) {
			if (status != EXIT_OK) {
				goto out;
			}
			continue;
		}
		if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK ||
	    (status = cli_args_verify_opts(&a)) != EXIT_OK ||
	    (status = cli_policy_apply(g, &a)) != EXIT_OK ||
	    (status = cli_args_input(&a)) != EXIT_OK) {
		goto out;
	}
	if (a.verify.n_trust_files == 0 &&
	    (cfg_trust = config_list(g->config, "trust", &a.verify.n_trust_files)) != NULL) {
		a.verify.trust_files = cfg_trust;
		if (a.verify.n_crl_files == 0 &&
		    (cfg_crl = config_list(g->config, "crl", &a.verify.n_crl_files)) != NULL) {
			a.verify.crl_files = cfg_crl;
		}
		if (a.verify.n_cert_files == 0 &&
		    (cfg_certs = config_list(g->config, "certs", &a.verify.n_cert_files)) != NULL) {
			a.verify.cert_files = cfg_certs;
		}
	}
	if ((status = rev_finish(&rev, g->config, a.verify.n_crl_files > 0)) != EXIT_OK) {
		goto out;
	}
	if (p11s_verify_message_rev(&res, a.in, &a.verify, rev.given ? &rev.o : NULL) < 0) {
		status = cli_fail();
		goto out;
	}
	/* The report never mixes with content: on stderr when the content goes to stdout. */
	report = a.out_path != NULL && strcmp(a.out_path, "-") == 0 ? stderr : stdout;
	if (g->json) {
		cli_verify_report_json(report, res);
	} else {
		cli_verify_report_text(report, res);
	}
	fflush(report);
	cli_policy_warn_weak(res);
	status = res->valid ? EXIT_OK : EXIT_VERIFY;
	if (res->valid && harvest) {
		cli_harvest(g, store, res); /* after a successful verification only (RFC 8551 §2.5) */
	}
	if (res->valid && a.out_path != NULL) {
		/* CLI.md: atomic output, and only verified content (RFC 8551 §6). */
		if ((status = cli_args_output(&a)) != EXIT_OK) {
			goto out;
		}
		status = cli_args_commit(&a,
		    p11s_verify_write_content(res, cli_output_file(a.out)));
	}
out:
	p11s_verify_result_free(res);
	free(cfg_trust);
	free(cfg_crl);
	free(cfg_certs);
	free(rev.allow);
	free(rev.deny);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_verify = {
	"verify",
	"verify a signed message (multipart/signed or opaque) and its signers' certificates",
	"verify [--trust FILE]... [--certs FILE]... [--crl FILE]... [--at TIME] [--in FILE] "
	"[--out FILE] [--no-sender-check] [--allow-weak] [--date-tolerance SECONDS|off] "
	"[--store[=DB]]\n"
	"       [--revocation none|crl|ocsp|ocsp,crl] [--fetch|--no-fetch] [--soft-fail]\n"
	"       [--ocsp-url URL] [--ocsp-scope leaf|path] [--fetch-allow HOST]... [--fetch-deny HOST]...\n"
	"\n"
	"  --store[=DB]  after a successful verification, record the signers' certificates and\n"
	"                announced capabilities in the certificate store (also: harvest = yes)",
	run,
};

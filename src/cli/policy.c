/*
 * The reader's security policy in the tool (docs/verify.md "Weak algorithms", docs/envelope.md
 * "Unauthenticated encryption"): the config keys `allow-weak` and `require-authenticated`
 * under the options of the same name, and the one-line warnings on stderr. verify, unwrap,
 * verify-receipt and decrypt call these, so every command applies the same rule.
 */
#include <string.h>
#include <strings.h>

#include "cli.h"

/* A yes/no config value: 1, 0, or -1 (bad value: usage error printed). */
static int config_bool(const cli_globals *g, const char *key)
{
	const char *v = p11s_config_get(g->config, "", key);

	if (v == NULL) {
		return 0;
	}
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
		return 1;
	}
	if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
		return 0;
	}
	cli_usage_error("config: %s = %s: expected yes or no", key, v);
	return -1;
}

int cli_policy_apply(const cli_globals *g, cli_args *a)
{
	int w, ra;

	/* An option only ever loosens (--allow-weak) or tightens (--require-authenticated). */
	if ((w = config_bool(g, "allow-weak")) < 0 ||
	    (ra = config_bool(g, "require-authenticated")) < 0) {
		return EXIT_USAGE;
	}
	a->verify.allow_weak |= w;
	a->require_authenticated |= ra;
	return EXIT_OK;
}

void cli_policy_warn_weak(const p11s_verify_result *r)
{
	for (size_t i = 0; r != NULL && i < r->n_warnings; i++) {
		if (strcmp(r->warnings[i].code, "weak-algorithm") == 0) {
			p11s_log(P11S_LOG_WARN, "weak-algorithm: %s", r->warnings[i].message);
		}
	}
}

void cli_policy_warn_unauthenticated(const p11s_decrypt_info *info)
{
	if (!info->authenticated) {
		/* STANDARDS.md §12 (EFAIL), RFC 8551 §2.7: one line, by default. */
		p11s_log(P11S_LOG_WARN, "unauthenticated-encryption: %s (%s) is not "
		    "integrity-protected: the content may have been altered or spliced (EFAIL); "
		    "--require-authenticated refuses it", info->content_type, info->cipher);
	}
}

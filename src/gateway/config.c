/*
 * p11smime-gateway.conf(5): the keys of CLI.md's gateway section and a few more. Unknown keys
 * are errors at start (p11s_config_load() with the list below), and so are values that do not
 * parse: a daemon that guesses at its policy can lose or leak mail.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gateway.h"

const char *const gw_config_keys[] = {
	"milter.socket", "milter.workers", "milter.max-message-size", "milter.spool", "milter.log",
	"milter.drain-timeout",
	"token.module", "token.uri", "token.pin-source", "token.backend", "token.sessions",
	"token.retry",
	"inbound.decrypt", "inbound.verify", "inbound.trust", "inbound.crl", "inbound.undecryptable",
	"inbound.authserv-id", "inbound.allow-weak", "inbound.require-authenticated",
	"inbound.date-tolerance", "outbound.audit-checkpoint-every", /* docs/gateway.md */
	"outbound.sign", "outbound.encrypt", "outbound.certs", "outbound.trusted-clients",
	"outbound.audit-log", "outbound.protect-headers", /* RFC 9788 */
	"outbound.store", "outbound.ldap", /* docs/certificates.md, recipients.c */
	"inbound.harvest",
	/* live revocation (docs/gateway.md "Revocation", docs/verify.md) */
	"inbound.revocation", "inbound.fetch", "inbound.soft-fail", "inbound.ocsp-url",
	"inbound.ocsp-scope", "inbound.fetch-allow", "inbound.fetch-deny", "inbound.fetch-timeout",
	"inbound.crl-refresh-interval", "inbound.crl-refresh-before",
	NULL,
};

int gw_parse_bool(const char *s)
{
	static const char *yes[] = { "yes", "true", "on", "1" }, *no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			return 1;
		}
		if (strcasecmp(s, no[i]) == 0) {
			return 0;
		}
	}
	return -1;
}

int gw_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mul = 1;
	char *end;

	if (!isdigit((unsigned char)*s)) {
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0) {
		return -1;
	}
	if (*end != '\0') {
		switch (toupper((unsigned char)*end)) {
		case 'K': mul = 1024ull; break;
		case 'M': mul = 1024ull * 1024; break;
		case 'G': mul = 1024ull * 1024 * 1024; break;
		default: return -1;
		}
		end++;
		if (*end == 'B' || *end == 'b') {
			end++;
		}
		if (*end != '\0') {
			return -1;
		}
	}
	if (v > UINT64_MAX / mul) {
		return -1;
	}
	*out = v * mul;
	return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	long v;
	char *end;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		return -1;
	}
	*out = (int)v;
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void lower(char *s)
{
	for (; *s; s++) {
		*s = (char)tolower((unsigned char)*s);
	}
}

/* Collect a repeated key (each value may also list several items separated by blanks). */
static int collect(const p11s_config *c, const char *sec, const char *key, char ***out,
    size_t *n)
{
	const char *v;

	for (size_t i = 0; (v = p11s_config_get_nth(c, sec, key, i)) != NULL; i++) {
		char **nv = realloc(*out, (*n + 1) * sizeof(**out));

		if (nv == NULL) {
			return -1;
		}
		*out = nv;
		if (((*out)[*n] = strdup(v)) == NULL) {
			return -1;
		}
		(*n)++;
	}
	return 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
#define BOOL(sec, key, field, def) do { \
		cfg->field = (def); \
		if ((v = p11s_config_get(c, sec, key)) != NULL) { \
			if ((b = gw_parse_bool(v)) < 0) { \
				FAIL("%s: [%s] %s = %s: expected yes or no", cfg->path, sec, key, v); \
			} \
			cfg->field = b; \
		} \
	} while (0)

/*
 * [inbound] live revocation, as verify's options (docs/verify.md "Revocation"): revocation,
 * fetch (off unless configured: a gateway is not an HTTP client for senders' URLs by
 * default), soft-fail, ocsp-url, ocsp-scope, fetch-allow/-deny, fetch-timeout; and the
 * background refresh of fetched CRLs (crl-refresh-interval, crl-refresh-before; main.c).
 */
static int check_revocation(gw_config *cfg, const p11s_config *c, char *err, size_t errlen)
{
	const p11s_revocation_opts init = P11S_REVOCATION_OPTS_INIT;
	const char *v;
	int b, n;

	cfg->rev = init;
	cfg->crl_refresh_interval = 300;
	cfg->crl_refresh_before = 3600;
	if ((v = p11s_config_get(c, "inbound", "revocation")) != NULL) {
		if (p11s_revocation_parse_methods(v, &cfg->rev.methods) < 0) {
			FAIL("%s: [inbound] %s", cfg->path, p11s_error_last()->message);
		}
		cfg->rev_given = 1;
	}
	BOOL("inbound", "fetch", rev.fetch, 0);
	BOOL("inbound", "soft-fail", rev.soft_fail, 0);
	if ((v = p11s_config_get(c, "inbound", "ocsp-scope")) != NULL) {
		if (strcmp(v, "path") != 0 && strcmp(v, "leaf") != 0) {
			FAIL("%s: [inbound] ocsp-scope = %s: expected leaf or path", cfg->path, v);
		}
		cfg->rev.ocsp_whole_path = strcmp(v, "path") == 0;
	}
	if ((v = p11s_config_get(c, "inbound", "ocsp-url")) != NULL) {
		if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
			FAIL("%s: [inbound] ocsp-url = %s: expected an http or https URL", cfg->path, v);
		}
		if ((cfg->ocsp_url = strdup(v)) == NULL) {
			FAIL("out of memory");
		}
		cfg->rev.ocsp_url = cfg->ocsp_url;
	}
	if ((v = p11s_config_get(c, "inbound", "fetch-timeout")) != NULL) {
		if (parse_int(v, 1, 300, &n) < 0) {
			FAIL("%s: [inbound] fetch-timeout = %s: expected 1 to 300 seconds", cfg->path, v);
		}
		cfg->rev.fetch_timeout = n;
	}
	if ((v = p11s_config_get(c, "inbound", "crl-refresh-interval")) != NULL &&
	    parse_int(v, 0, 86400, &cfg->crl_refresh_interval) < 0) {
		FAIL("%s: [inbound] crl-refresh-interval = %s: expected 0 (off) to 86400 seconds",
		    cfg->path, v);
	}
	if ((v = p11s_config_get(c, "inbound", "crl-refresh-before") ) != NULL &&
	    parse_int(v, 0, 31536000, &cfg->crl_refresh_before) < 0) {
		FAIL("%s: [inbound] crl-refresh-before = %s: expected seconds", cfg->path, v);
	}
	if (collect(c, "inbound", "fetch-allow", &cfg->fetch_allow, &cfg->nfetch_allow) < 0 ||
	    collect(c, "inbound", "fetch-deny", &cfg->fetch_deny, &cfg->nfetch_deny) < 0) {
		FAIL("out of memory");
	}
	cfg->rev.fetch_allow = (const char *const *)cfg->fetch_allow;
	cfg->rev.n_fetch_allow = cfg->nfetch_allow;
	cfg->rev.fetch_deny = (const char *const *)cfg->fetch_deny;
	cfg->rev.n_fetch_deny = cfg->nfetch_deny;
	if (!cfg->rev_given && (cfg->rev.fetch || cfg->rev.soft_fail || cfg->ocsp_url != NULL ||
	                           cfg->nfetch_allow > 0 || cfg->nfetch_deny > 0)) {
		FAIL("%s: [inbound] fetch, soft-fail, ocsp-url and fetch-allow/-deny need "
		     "[inbound] revocation", cfg->path);
	}
	return 0;
}

static int check(gw_config *cfg, const p11s_config *c, char *err, size_t errlen)
{
	const char *v;
	int b;


	cfg->socket = dup_or_null(p11s_config_get(c, "milter", "socket"));
	if (cfg->socket == NULL) {
		FAIL("%s: [milter] socket is required (inet:PORT@HOST or unix:PATH)", cfg->path);
	}
	if (strncmp(cfg->socket, "inet:", 5) != 0 && strncmp(cfg->socket, "inet6:", 6) != 0 &&
	    strncmp(cfg->socket, "unix:", 5) != 0 && strncmp(cfg->socket, "local:", 6) != 0) {
		FAIL("%s: [milter] socket = %s: expected inet:PORT@HOST, inet6: or unix:PATH",
		    cfg->path, cfg->socket);
	}
	cfg->workers = 8;
	if ((v = p11s_config_get(c, "milter", "workers")) != NULL &&
	    parse_int(v, 1, 1024, &cfg->workers) < 0) {
		FAIL("%s: [milter] workers = %s: expected 1 to 1024", cfg->path, v);
	}
	cfg->max_size = 50ull * 1024 * 1024;
	if ((v = p11s_config_get(c, "milter", "max-message-size")) != NULL &&
	    (gw_parse_size(v, &cfg->max_size) < 0 || cfg->max_size == 0)) {
		FAIL("%s: [milter] max-message-size = %s: expected a size such as 50M", cfg->path, v);
	}
	v = p11s_config_get(c, "milter", "spool");
	if ((cfg->spool = strdup(v != NULL ? v : "/var/tmp")) == NULL) {
		FAIL("out of memory");
	}
	if (access(cfg->spool, W_OK | X_OK) != 0) {
		FAIL("%s: [milter] spool = %s: not a writable directory: %s", cfg->path, cfg->spool,
		    strerror(errno));
	}
	cfg->log_stderr = 0;
	if ((v = p11s_config_get(c, "milter", "log")) != NULL) {
		if (strcmp(v, "stderr") == 0) {
			cfg->log_stderr = 1;
		} else if (strcmp(v, "syslog") != 0) {
			FAIL("%s: [milter] log = %s: expected syslog or stderr", cfg->path, v);
		}
	}
	cfg->drain_timeout = 60;
	if ((v = p11s_config_get(c, "milter", "drain-timeout")) != NULL &&
	    parse_int(v, 0, 86400, &cfg->drain_timeout) < 0) {
		FAIL("%s: [milter] drain-timeout = %s: expected seconds", cfg->path, v);
	}

	/* `module` may repeat: keys of every module are indexed (docs/tokens.md). */
	if (collect(c, "token", "module", &cfg->modules, &cfg->nmodules) < 0) {
		FAIL("out of memory");
	}
	cfg->module = dup_or_null(cfg->nmodules > 0 ? cfg->modules[0] : NULL);
	cfg->token_uri = dup_or_null(p11s_config_get(c, "token", "uri"));
	cfg->backend = dup_or_null(p11s_config_get(c, "token", "backend"));
	cfg->pin_source = dup_or_null(p11s_config_get(c, "token", "pin-source"));
	/*
	 * A daemon has no terminal, and a PIN in the environment is inherited and readable in
	 * /proc: only file: and fd: (STYLE.md "Secrets"); never a PIN in this file.
	 */
	if (cfg->pin_source != NULL && strncmp(cfg->pin_source, "file:", 5) != 0 &&
	    strncmp(cfg->pin_source, "fd:", 3) != 0) {
		FAIL("%s: [token] pin-source = %s: a daemon takes file:PATH or fd:N", cfg->path,
		    cfg->pin_source);
	}
	if (cfg->token_uri != NULL && strncmp(cfg->token_uri, "pkcs11:", 7) != 0) {
		FAIL("%s: [token] uri = %s: expected a pkcs11: URI", cfg->path, cfg->token_uri);
	}
	if (cfg->token_uri != NULL && strstr(cfg->token_uri, "pin-value") != NULL) {
		FAIL("%s: [token] uri: pin-value is refused; use pin-source", cfg->path);
	}
	cfg->sessions = 1;
	if ((v = p11s_config_get(c, "token", "sessions")) != NULL &&
	    parse_int(v, 1, 64, &cfg->sessions) < 0) {
		FAIL("%s: [token] sessions = %s: expected 1 to 64", cfg->path, v);
	}
	cfg->retry = 5;
	if ((v = p11s_config_get(c, "token", "retry")) != NULL &&
	    parse_int(v, 0, 3600, &cfg->retry) < 0) {
		FAIL("%s: [token] retry = %s: expected seconds", cfg->path, v);
	}

	BOOL("inbound", "decrypt", decrypt, 1);
	BOOL("inbound", "verify", verify, 1);
	BOOL("inbound", "allow-weak", allow_weak, 0);
	BOOL("inbound", "require-authenticated", require_authenticated, 0);
	BOOL("inbound", "harvest", harvest, 0); /* into [outbound] store (docs/certificates.md) */
	cfg->date_tolerance = 0;
	if ((v = p11s_config_get(c, "inbound", "date-tolerance")) != NULL) {
		/* As verify --date-tolerance: seconds (1 s to 10 years) or off (docs/verify.md). */
		int secs;

		if (strcmp(v, "off") == 0) {
			cfg->date_tolerance = -1;
		} else if (parse_int(v, 1, 315360000, &secs) == 0) {
			cfg->date_tolerance = secs;
		} else {
			FAIL("%s: [inbound] date-tolerance = %s: expected seconds or off", cfg->path, v);
		}
	}
	if (collect(c, "inbound", "trust", &cfg->trust, &cfg->ntrust) < 0 ||
	    collect(c, "inbound", "crl", &cfg->crl, &cfg->ncrl) < 0) {
		FAIL("out of memory");
	}
	for (size_t i = 0; i < cfg->ntrust; i++) {
		if (access(cfg->trust[i], R_OK) != 0) {
			FAIL("%s: [inbound] trust = %s: %s", cfg->path, cfg->trust[i], strerror(errno));
		}
	}
	for (size_t i = 0; i < cfg->ncrl; i++) {
		if (access(cfg->crl[i], R_OK) != 0) {
			FAIL("%s: [inbound] crl = %s: %s", cfg->path, cfg->crl[i], strerror(errno));
		}
	}
	if (check_revocation(cfg, c, err, errlen) < 0) {
		return -1;
	}
	cfg->reject_undecryptable = 0;
	if ((v = p11s_config_get(c, "inbound", "undecryptable")) != NULL) {
		if (strcmp(v, "reject") == 0) {
			cfg->reject_undecryptable = 1;
		} else if (strcmp(v, "pass") != 0) {
			FAIL("%s: [inbound] undecryptable = %s: expected pass or reject", cfg->path, v);
		}
	}
	if ((v = p11s_config_get(c, "inbound", "authserv-id")) != NULL) {
		cfg->authserv_id = strdup(v);
	} else {
		char host[256];

		if (gethostname(host, sizeof(host)) != 0) {
			snprintf(host, sizeof(host), "localhost");
		}
		host[sizeof(host) - 1] = '\0';
		cfg->authserv_id = strdup(host);
	}
	if (cfg->authserv_id == NULL) {
		FAIL("out of memory");
	}
	/* RFC 8601 §2.2: authserv-id is a value (token or quoted-string); we allow a token. */
	for (const char *p = cfg->authserv_id; *p; p++) {
		if (*p <= ' ' || *p >= 127 || strchr("()<>@,;:\\\"/[]?=", *p) != NULL) {
			if (*p != '@') {
				FAIL("%s: [inbound] authserv-id = %s: must be a single token (a host name)",
				    cfg->path, cfg->authserv_id);
			}
		}
	}

	for (size_t i = 0; (v = p11s_config_get_nth(c, "outbound", "sign", i)) != NULL; i++) {
		const char *sp = v + strcspn(v, " \t");
		const char *uri = sp + strspn(sp, " \t");
		gw_signer *ns;
		char addr[320];

		if (sp == v || *uri == '\0' || (size_t)(sp - v) >= sizeof(addr) ||
		    strncmp(uri, "pkcs11:", 7) != 0 || strchr(uri, ' ') != NULL) {
			FAIL("%s: [outbound] sign = %s: expected ADDRESS pkcs11:URI", cfg->path, v);
		}
		memcpy(addr, v, (size_t)(sp - v));
		addr[sp - v] = '\0';
		if (strchr(addr, '@') == NULL) {
			FAIL("%s: [outbound] sign = %s: '%s' is not an e-mail address", cfg->path, v,
			    addr);
		}
		lower(addr);
		if (gw_policy_signer(cfg, addr) != NULL) {
			FAIL("%s: [outbound] sign: %s is listed twice", cfg->path, addr);
		}
		if ((ns = realloc(cfg->signers, (cfg->nsigners + 1) * sizeof(*ns))) == NULL) {
			FAIL("out of memory");
		}
		cfg->signers = ns;
		ns[cfg->nsigners].addr = strdup(addr);
		ns[cfg->nsigners].uri = strdup(uri);
		cfg->nsigners++;
		if (ns[cfg->nsigners - 1].addr == NULL || ns[cfg->nsigners - 1].uri == NULL) {
			FAIL("out of memory");
		}
	}
	BOOL("outbound", "encrypt", encrypt, 0);
	/* RFC 9788 header protection of what the gateway signs (on by default, as for sign). */
	BOOL("outbound", "protect-headers", protect_headers, 1);
	cfg->certs = dup_or_null(p11s_config_get(c, "outbound", "certs"));
	cfg->store = dup_or_null(p11s_config_get(c, "outbound", "store"));
	if (collect(c, "outbound", "ldap", &cfg->ldap, &cfg->nldap) < 0) {
		FAIL("out of memory");
	}
	if (cfg->encrypt && cfg->certs == NULL && cfg->store == NULL) {
		FAIL("%s: [outbound] encrypt = yes needs certs = DIRECTORY or store = PATH", cfg->path);
	}
	if (cfg->certs != NULL && access(cfg->certs, R_OK | X_OK) != 0) {
		FAIL("%s: [outbound] certs = %s: %s", cfg->path, cfg->certs, strerror(errno));
	}
	{
		char *list = strdup((v = p11s_config_get(c, "outbound", "trusted-clients")) != NULL
		        ? v : "127.0.0.0/8 ::1");
		char *save = NULL;

		if (list == NULL) {
			FAIL("out of memory");
		}
		for (char *t = strtok_r(list, " \t,", &save); t != NULL;
		     t = strtok_r(NULL, " \t,", &save)) {
			gw_cidr *nt = realloc(cfg->trusted, (cfg->ntrusted + 1) * sizeof(*nt));

			if (nt == NULL) {
				free(list);
				FAIL("out of memory");
			}
			cfg->trusted = nt;
			if (gw_cidr_parse(t, &nt[cfg->ntrusted]) < 0) {
				snprintf(err, errlen, "%s: [outbound] trusted-clients: '%s' is not an "
				    "address or network", cfg->path, t);
				free(list);
				return -1;
			}
			cfg->ntrusted++;
		}
		free(list);
	}
	cfg->audit_log = dup_or_null(p11s_config_get(c, "outbound", "audit-log"));
	cfg->audit_checkpoint_every = 0;
	if ((v = p11s_config_get(c, "outbound", "audit-checkpoint-every")) != NULL &&
	    (cfg->audit_log == NULL || parse_int(v, 1, 1000000, &cfg->audit_checkpoint_every) < 0)) {
		FAIL("%s: [outbound] audit-checkpoint-every = %s: expected 1 to 1000000, with "
		    "audit-log", cfg->path, v);
	}
	if (cfg->audit_log != NULL) {
		/*
		 * Checked at start: with an audit log no signature is released without its record
		 * (docs/evidence.md), so a log the daemon cannot extend would turn every outbound
		 * message into a tempfail. The file itself is created by the first signature.
		 */
		char *dir = strdup(cfg->audit_log), *slash;

		if (dir == NULL) {
			FAIL("out of memory");
		}
		if ((slash = strrchr(dir, '/')) == NULL) {
			strcpy(dir, ".");
		} else if (slash == dir) {
			dir[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (access(cfg->audit_log, F_OK) == 0 ? access(cfg->audit_log, R_OK | W_OK) != 0
		                                      : access(dir, W_OK | X_OK) != 0) {
			int e = errno;

			free(dir);
			FAIL("%s: [outbound] audit-log = %s: not writable: %s", cfg->path, cfg->audit_log,
			    strerror(e));
		}
		free(dir);
	}
	if (cfg->nsigners > 0 && cfg->pin_source == NULL) {
		/* Not an error: a token without login (rare) signs without a PIN. */
		(void)0;
	}
	if ((cfg->decrypt || cfg->nsigners > 0) && cfg->module == NULL) {
		FAIL("%s: [token] module is required for decrypt or sign", cfg->path);
	}
#undef FAIL
#undef BOOL
	return 0;
}

static int finish(gw_config *out, p11s_config *c, int rc, char *err, size_t errlen)
{
	const p11s_error *e = p11s_error_last();

	if (rc < 0) {
		snprintf(err, errlen, "%s", e->message);
		return -1;
	}
	rc = check(out, c, err, errlen);
	p11s_config_free(c);
	if (rc < 0) {
		gw_config_free(out);
	}
	return rc;
}

int gw_config_load(gw_config *out, const char *path, char *err, size_t errlen)
{
	p11s_config *c = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((out->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = p11s_config_load(&c, path, gw_config_keys);
	if (rc < 0) {
		free(out->path);
		out->path = NULL;
	}
	return finish(out, c, rc, err, errlen);
}

int gw_config_parse(gw_config *out, const char *name, const char *text, char *err,
    size_t errlen)
{
	p11s_config *c = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((out->path = strdup(name)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = p11s_config_parse(&c, name, text, strlen(text), gw_config_keys);
	if (rc < 0) {
		free(out->path);
		out->path = NULL;
	}
	return finish(out, c, rc, err, errlen);
}

void gw_config_free(gw_config *cfg)
{
	if (cfg == NULL) {
		return;
	}
	free(cfg->path);
	free(cfg->ocsp_url);
	for (size_t i = 0; i < cfg->nfetch_allow; i++) {
		free(cfg->fetch_allow[i]);
	}
	free(cfg->fetch_allow);
	for (size_t i = 0; i < cfg->nfetch_deny; i++) {
		free(cfg->fetch_deny[i]);
	}
	free(cfg->fetch_deny);
	free(cfg->socket);
	free(cfg->spool);
	free(cfg->module);
	for (size_t i = 0; i < cfg->nmodules; i++) {
		free(cfg->modules[i]);
	}
	free(cfg->modules);
	free(cfg->token_uri);
	free(cfg->pin_source);
	free(cfg->backend);
	for (size_t i = 0; i < cfg->ntrust; i++) {
		free(cfg->trust[i]);
	}
	free(cfg->trust);
	for (size_t i = 0; i < cfg->ncrl; i++) {
		free(cfg->crl[i]);
	}
	free(cfg->crl);
	free(cfg->authserv_id);
	for (size_t i = 0; i < cfg->nsigners; i++) {
		free(cfg->signers[i].addr);
		free(cfg->signers[i].uri);
	}
	free(cfg->signers);
	free(cfg->certs);
	free(cfg->store);
	for (size_t i = 0; i < cfg->nldap; i++) {
		free(cfg->ldap[i]);
	}
	free(cfg->ldap);
	free(cfg->trusted);
	free(cfg->audit_log);
	memset(cfg, 0, sizeof(*cfg));
}

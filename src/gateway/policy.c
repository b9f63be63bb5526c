/*
 * Policy decisions of the gateway as pure functions (unit-tested): which address a message is
 * from, who signs it, whether a client is ours, and the Authentication-Results header
 * (RFC 8601; method "smime" and its properties from RFC 7281).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "gateway.h"

/*
 * RFC 5322 §3.4: mailbox = name-addr / addr-spec. We take the addr-spec inside <> when there
 * is one, otherwise the bare word, skipping quoted strings and comments; a comma outside
 * quotes, comments and angle brackets means a second mailbox (refused: one From, one signer).
 */
int gw_addr_spec(const char *value, char *out, size_t len)
{
	const char *p = value, *start = NULL, *end = NULL, *angle = NULL;
	int depth = 0, quoted = 0, nangles = 0;
	size_t n;

	if (value == NULL || len == 0) {
		return -1;
	}
	for (; *p; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0') {
				p++;
			} else if (*p == '"') {
				quoted = 0;
			}
			continue;
		}
		if (depth > 0) {
			if (*p == '\\' && p[1] != '\0') {
				p++;
			} else if (*p == '(') {
				depth++;
			} else if (*p == ')') {
				depth--;
			}
			continue;
		}
		switch (*p) {
		case '"': quoted = 1; break;
		case '(': depth = 1; break;
		case '<':
			if (angle != NULL || nangles++ > 0) {
				return -1;
			}
			angle = p + 1;
			break;
		case '>':
			if (angle == NULL) {
				return -1;
			}
			start = angle;
			end = p;
			angle = NULL;
			break;
		case ',': return -1;
		default: break;
		}
	}
	if (quoted || depth != 0 || angle != NULL) {
		return -1;
	}
	if (start == NULL) {
		/* A bare addr-spec, possibly with comments around it: the first word with an @. */
		const char *q = value;

		while (*q) {
			const char *w;

			while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') {
				q++;
			}
			if (*q == '(') {
				for (int d = 0; *q; q++) {
					d += *q == '(' ? 1 : *q == ')' ? -1 : 0;
					if (d == 0) {
						q++;
						break;
					}
				}
				continue;
			}
			w = q;
			while (*q && !strchr(" \t\r\n(", *q)) {
				q++;
			}
			if (memchr(w, '@', (size_t)(q - w)) != NULL) {
				if (start != NULL) {
					return -1;
				}
				start = w;
				end = q;
			}
		}
		if (start == NULL) {
			return -1;
		}
	}
	while (start < end && (*start == ' ' || *start == '\t')) {
		start++;
	}
	while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
		end--;
	}
	n = (size_t)(end - start);
	if (n == 0 || n >= len || memchr(start, '@', n) == NULL) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)start[i];

		if (c <= ' ' || c >= 127 || c == '<' || c == '>' || c == ',' || c == ';') {
			return -1;
		}
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	return 0;
}

const gw_signer *gw_policy_signer(const gw_config *cfg, const char *addr)
{
	for (size_t i = 0; i < cfg->nsigners; i++) {
		if (strcmp(cfg->signers[i].addr, addr) == 0) {
			return &cfg->signers[i];
		}
	}
	return NULL;
}

void gw_policy_sign_opts(const gw_config *cfg, p11s_sign_opts *opts)
{
	const p11s_sign_opts init = P11S_SIGN_OPTS_INIT;

	/*
	 * The defaults of `p11smime sign` (multipart/signed, SHA-256). With [outbound] audit-log
	 * each signature appends its hash-chained record exactly as `sign --audit-log` does, and
	 * a signature whose record cannot be written is not released (docs/evidence.md).
	 */
	*opts = init;
	opts->audit_log = cfg->audit_log;
	opts->audit_checkpoint_every = (unsigned int)cfg->audit_checkpoint_every;
}

void gw_policy_verify_opts(const gw_config *cfg, p11s_verify_opts *opts)
{
	const p11s_verify_opts init = P11S_VERIFY_OPTS_INIT;

	*opts = init;
	opts->trust_files = (const char *const *)cfg->trust;
	opts->n_trust_files = cfg->ntrust;
	opts->crl_files = (const char *const *)cfg->crl;
	opts->n_crl_files = cfg->ncrl;
	/* [inbound] allow-weak: SHA-1/MD5 and small keys pass with a warning (docs/verify.md). */
	opts->allow_weak = cfg->allow_weak;
	/* [inbound] date-tolerance: Date vs signingTime / time-stamp (docs/verify.md "Dates"). */
	opts->date_tolerance = cfg->date_tolerance;
}

const p11s_revocation_opts *gw_policy_revocation(const gw_config *cfg)
{
	return cfg->rev_given ? &cfg->rev : NULL;
}

void gw_policy_decrypt_opts(const gw_config *cfg, p11s_decrypt_opts *opts)
{
	const p11s_decrypt_opts init = P11S_DECRYPT_OPTS_INIT;

	*opts = init;
	/* [inbound] require-authenticated: only AuthEnvelopedData is decrypted (RFC 8551 §2.7). */
	opts->require_authenticated = cfg->require_authenticated;
}

int gw_cidr_parse(const char *s, gw_cidr *out)
{
	char buf[64], *slash;
	long bits;
	int max;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL) {
		*slash++ = '\0';
	}
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->bits = max;
	if (slash != NULL) {
		char *end;

		bits = strtol(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || bits < 0 || bits > max) {
			return -1;
		}
		out->bits = (int)bits;
	}
	return 0;
}

static int prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
	int bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)bytes) != 0) {
		return 0;
	}
	if (rest == 0) {
		return 1;
	}
	return ((a[bytes] ^ b[bytes]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int gw_cidr_match(const gw_cidr *nets, size_t n, const void *sa_)
{
	const struct sockaddr *sa = sa_;
	unsigned char a4[4], a6[16];
	int have4 = 0, have6 = 0;

	if (sa == NULL) {
		return 0;
	}
	if (sa->sa_family == AF_INET) {
		memcpy(a4, &((const struct sockaddr_in *)sa_)->sin_addr, 4);
		have4 = 1;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(a6, &((const struct sockaddr_in6 *)sa_)->sin6_addr, 16);
		have6 = 1;
		/* An IPv4-mapped address (::ffff:a.b.c.d) is that IPv4 address. */
		if (memcmp(a6, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			memcpy(a4, a6 + 12, 4);
			have4 = 1;
		}
	} else {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (nets[i].family == AF_INET && have4 && prefix_eq(nets[i].addr, a4, nets[i].bits)) {
			return 1;
		}
		if (nets[i].family == AF_INET6 && have6 && prefix_eq(nets[i].addr, a6, nets[i].bits)) {
			return 1;
		}
	}
	return 0;
}

int gw_authres_is_ours(const char *value, const char *authserv_id)
{
	const char *p = value, *e;

	/* RFC 8601 §2.2: authres-header-field = [CFWS] authserv-id [CFWS authres-version] ... */
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			p++;
		}
		if (*p != '(') {
			break;
		}
		for (int d = 0; *p; p++) {
			d += *p == '(' ? 1 : *p == ')' ? -1 : 0;
			if (d == 0) {
				p++;
				break;
			}
		}
	}
	if (*p == '"') {
		p++;
		e = strchr(p, '"');
		if (e == NULL) {
			return 0;
		}
	} else {
		e = p + strcspn(p, " \t\r\n;(");
	}
	return (size_t)(e - p) == strlen(authserv_id) &&
	       strncasecmp(p, authserv_id, (size_t)(e - p)) == 0;
}

/* Append `s` as an RFC 8601 value: a token when it is one, else a quoted-string. */
static void put_value(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);
	int token = *s != '\0';

	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 ||
		    strchr("()<>,;:\\\"/[]?=", *p) != NULL) {
			token = 0;
		}
	}
	if (token) {
		snprintf(buf + n, len - n, "%s", s);
		return;
	}
	if (n + 1 < len) {
		buf[n++] = '"';
	}
	for (const char *p = s; *p && n + 3 < len; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < ' ' || c >= 127) {
			c = '?'; /* no header injection, no raw 8-bit in a header */
		}
		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
		}
		buf[n++] = (char)c;
	}
	if (n + 1 < len) {
		buf[n++] = '"';
	}
	buf[n] = '\0';
}

static void put(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s", s);
}

int gw_authres_format(char *buf, size_t len, const char *authserv_id,
    const p11s_verify_result *r)
{
	const p11s_verify_signer *sg;

	buf[0] = '\0';
	put(buf, len, authserv_id);
	if (r == NULL) {
		/* RFC 7281 §3.2 permerror: the signed message cannot be processed as it is. */
		put(buf, len, "; smime=permerror (malformed)");
		return 0;
	}
	put(buf, len, r->valid ? "; smime=pass" : "; smime=fail");
	/*
	 * RFC 9788 (docs/gateway.md): a comment (RFC 8601 §2.2 CFWS) saying the header fields
	 * were signed, and which outer ones differ from the signed ones (not those the sender
	 * obscured itself, named by HP-Outer).
	 */
	if (r->hp != NULL) {
		size_t shown = 0;

		put(buf, len, " (protected headers hp=");
		/* The value as a known word only: it comes from the message. */
		put(buf, len, strcmp(r->hp, "cipher") == 0 ? "cipher"
		    : strcmp(r->hp, "clear") == 0          ? "clear"
		                                           : "unknown");
		for (size_t i = 0; i < r->n_header_differs; i++) {
			if (!r->header_differs[i].exposed) {
				put(buf, len, shown++ == 0 ? "; outer differs: " : ",");
				put(buf, len, r->header_differs[i].name);
			}
		}
		put(buf, len, ")");
	}
	/* The reason codes of docs/verify.md, as an RFC 8601 §2.2 reasonspec comment. */
	if (!r->valid) {
		char codes[256] = "";

		for (size_t i = 0; i < r->n_reasons; i++) {
			snprintf(codes + strlen(codes), sizeof(codes) - strlen(codes), "%s%s",
			    codes[0] ? "," : "", r->reasons[i].code);
		}
		for (size_t s = 0; s < r->n_signers; s++) {
			for (size_t i = 0; i < r->signers[s].n_reasons; i++) {
				if (strstr(codes, r->signers[s].reasons[i].code) == NULL) {
					snprintf(codes + strlen(codes), sizeof(codes) - strlen(codes), "%s%s",
					    codes[0] ? "," : "", r->signers[s].reasons[i].code);
				}
			}
		}
		if (codes[0] != '\0') {
			put(buf, len, " reason=");
			put_value(buf, len, codes);
		}
	}
	if (r->n_signers == 0) {
		return 0;
	}
	sg = &r->signers[0];
	/* RFC 7281 §3.3: body.smime-identifier, body.smime-serial, body.smime-issuer. */
	if (sg->n_emails > 0) {
		put(buf, len, " body.smime-identifier=");
		put_value(buf, len, sg->emails[0]);
	} else if (sg->subject != NULL) {
		put(buf, len, " body.smime-identifier=");
		put_value(buf, len, sg->subject);
	}
	if (sg->serial != NULL) {
		put(buf, len, " body.smime-serial=");
		put_value(buf, len, sg->serial);
	}
	if (sg->issuer != NULL) {
		put(buf, len, " body.smime-issuer=");
		put_value(buf, len, sg->issuer);
	}
	return 0;
}

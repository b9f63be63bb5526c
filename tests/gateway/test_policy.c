/* Unit tests of the gateway's configuration parsing and policy functions (no token, no MTA). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "gateway.h"

static const char *base =
	"[milter]\nsocket = inet:8891@127.0.0.1\nspool = /tmp\n"
	"[token]\nmodule = /usr/lib/softhsm/libsofthsm2.so\npin-source = file:/etc/pin\n";

static int parse(const char *extra, gw_config *cfg, char *err)
{
	char text[4096];

	snprintf(text, sizeof(text), "%s%s", base, extra);
	return gw_config_parse(cfg, "test.conf", text, err, 512);
}

static void test_gateway__config_defaults(void **state)
{
	gw_config cfg;
	char err[512];

	(void)state;
	assert_int_equal(parse("", &cfg, err), 0);
	assert_int_equal(cfg.workers, 8);
	assert_true(cfg.max_size == 50ull * 1024 * 1024);
	assert_int_equal(cfg.decrypt, 1);
	assert_int_equal(cfg.verify, 1);
	assert_int_equal(cfg.reject_undecryptable, 0);
	assert_int_equal(cfg.sessions, 1);
	assert_int_equal((int)cfg.ntrusted, 2);
	gw_config_free(&cfg);
}

static void test_gateway__config_keys(void **state)
{
	gw_config cfg;
	char err[512];

	(void)state;
	assert_int_equal(parse("[milter]\nworkers = 3\nmax-message-size = 10M\n"
	    "[inbound]\nundecryptable = reject\nauthserv-id = mx.example.org\n"
	    "[outbound]\nsign = Alice@Example.org pkcs11:token=gw;object=alice\n"
	    "sign = bob@example.org   pkcs11:token=gw;object=bob\n", &cfg, err), 0);
	assert_int_equal(cfg.workers, 3);
	assert_true(cfg.max_size == 10ull * 1024 * 1024);
	assert_int_equal(cfg.reject_undecryptable, 1);
	assert_string_equal(cfg.authserv_id, "mx.example.org");
	assert_int_equal((int)cfg.nsigners, 2);
	assert_string_equal(cfg.signers[0].addr, "alice@example.org");
	assert_string_equal(cfg.signers[1].uri, "pkcs11:token=gw;object=bob");
	assert_non_null(gw_policy_signer(&cfg, "bob@example.org"));
	assert_null(gw_policy_signer(&cfg, "eve@example.org"));
	assert_int_equal((int)cfg.nmodules, 1);
	gw_config_free(&cfg);

	/* `module` may repeat: every one is kept, in order; the first is cfg.module. */
	assert_int_equal(parse("[token]\nmodule = /usr/lib/x86_64-linux-gnu/pkcs11-spy.so\n",
	    &cfg, err), 0);
	assert_int_equal((int)cfg.nmodules, 2);
	assert_string_equal(cfg.module, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(cfg.modules[1], "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so");
	gw_config_free(&cfg);
}

/* [inbound] allow-weak and require-authenticated (docs/verify.md, docs/envelope.md). */
static void test_gateway__reader_policy(void **state)
{
	gw_config cfg;
	p11s_verify_opts vo;
	p11s_decrypt_opts dopts;
	char err[512];

	(void)state;
	assert_int_equal(parse("", &cfg, err), 0);
	gw_policy_verify_opts(&cfg, &vo);
	gw_policy_decrypt_opts(&cfg, &dopts);
	assert_int_equal(vo.version, P11S_VERIFY_OPTS_VERSION);
	assert_int_equal(vo.allow_weak, 0);
	assert_int_equal(dopts.version, P11S_DECRYPT_OPTS_VERSION);
	assert_int_equal(dopts.require_authenticated, 0);
	gw_config_free(&cfg);

	assert_int_equal(parse("[inbound]\nallow-weak = yes\nrequire-authenticated = yes\n",
	    &cfg, err), 0);
	gw_policy_verify_opts(&cfg, &vo);
	gw_policy_decrypt_opts(&cfg, &dopts);
	assert_int_equal(vo.allow_weak, 1);
	assert_int_equal(dopts.require_authenticated, 1);
	gw_config_free(&cfg);

	assert_int_not_equal(parse("[inbound]\nrequire-authenticated = sometimes\n", &cfg, err), 0);
	assert_non_null(strstr(err, "require-authenticated"));
}

/* [inbound] date-tolerance (docs/verify.md "Dates") and [outbound] audit-checkpoint-every. */
static void test_gateway__date_and_audit(void **state)
{
	gw_config cfg;
	p11s_verify_opts vo;
	p11s_sign_opts so;
	char err[512];

	(void)state;
	assert_int_equal(parse("", &cfg, err), 0);
	gw_policy_verify_opts(&cfg, &vo);
	gw_policy_sign_opts(&cfg, &so);
	assert_true(vo.date_tolerance == 0); /* the library's default tolerance */
	assert_int_equal((int)so.audit_checkpoint_every, 0);
	gw_config_free(&cfg);

	assert_int_equal(parse("[inbound]\ndate-tolerance = 7200\n", &cfg, err), 0);
	gw_policy_verify_opts(&cfg, &vo);
	assert_true(vo.date_tolerance == 7200);
	gw_config_free(&cfg);
	assert_int_equal(parse("[inbound]\ndate-tolerance = off\n", &cfg, err), 0);
	gw_policy_verify_opts(&cfg, &vo);
	assert_true(vo.date_tolerance == -1);
	gw_config_free(&cfg);
	assert_int_equal(parse("[inbound]\ndate-tolerance = 0\n", &cfg, err), -1);
	assert_int_equal(parse("[inbound]\ndate-tolerance = 1h\n", &cfg, err), -1);
	assert_non_null(strstr(err, "date-tolerance"));

	assert_int_equal(parse("[outbound]\naudit-log = /tmp/gw-audit.log\n"
	    "audit-checkpoint-every = 50\n", &cfg, err), 0);
	gw_policy_sign_opts(&cfg, &so);
	assert_string_equal(so.audit_log, "/tmp/gw-audit.log");
	assert_int_equal((int)so.audit_checkpoint_every, 50);
	gw_config_free(&cfg);
	/* [outbound] protect-headers: on unless turned off (the signing path reads it). */
	assert_int_equal(parse("[outbound]\nprotect-headers = no\n", &cfg, err), 0);
	assert_int_equal(cfg.protect_headers, 0);
	gw_config_free(&cfg);
	assert_int_equal(parse("[outbound]\ntrusted-clients = 127.0.0.1\n", &cfg, err), 0);
	assert_int_equal(cfg.protect_headers, 1);
	gw_config_free(&cfg);
	assert_int_equal(parse("[outbound]\nprotect-headers = maybe\n", &cfg, err), -1);
	/* Checkpoints without a log, or a count out of range, are configuration errors. */
	assert_int_equal(parse("[outbound]\naudit-checkpoint-every = 50\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\naudit-log = /tmp/gw-audit.log\n"
	    "audit-checkpoint-every = 0\n", &cfg, err), -1);
	assert_non_null(strstr(err, "audit-checkpoint-every"));
}

static void test_gateway__config_errors(void **state)
{
	gw_config cfg;
	char err[512];

	(void)state;
	/* Unknown keys, bad values, PIN sources a daemon must not use. */
	assert_int_equal(parse("[milter]\nwrokers = 3\n", &cfg, err), -1);
	assert_int_equal(parse("[milter]\nworkers = many\n", &cfg, err), -1);
	assert_int_equal(parse("[milter]\nmax-message-size = 10Q\n", &cfg, err), -1);
	assert_int_equal(parse("[token]\npin-source = env:PIN\n", &cfg, err), -1);
	assert_int_equal(parse("[token]\npin-source = prompt\n", &cfg, err), -1);
	assert_int_equal(parse("[token]\nuri = pkcs11:token=gw;pin-value=1234\n", &cfg, err), -1);
	assert_int_equal(parse("[inbound]\nundecryptable = drop\n", &cfg, err), -1);
	assert_int_equal(parse("[inbound]\ndecrypt = maybe\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\nsign = alice@example.org\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\nsign = alice pkcs11:object=a\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\nsign = a@b pkcs11:object=a\nsign = A@B pkcs11:object=b\n",
	    &cfg, err), -1);
	assert_int_equal(parse("[outbound]\nencrypt = yes\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\nprotect-headers = maybe\n", &cfg, err), -1);
	assert_int_equal(parse("[outbound]\ntrusted-clients = 10.0.0.0/33\n", &cfg, err), -1);
	assert_non_null(strstr(err, "10.0.0.0/33"));
}

/* [inbound] live revocation: verify's policy, fetching off unless configured. */
static void test_gateway__revocation(void **state)
{
	const p11s_revocation_opts *r;
	gw_config cfg;
	char err[512];

	(void)state;
	assert_int_equal(parse("", &cfg, err), 0);
	assert_null(gw_policy_revocation(&cfg)); /* none: --crl files alone, as before */
	assert_int_equal(cfg.crl_refresh_interval, 300);
	assert_int_equal(cfg.crl_refresh_before, 3600);
	gw_config_free(&cfg);
	assert_int_equal(parse("[inbound]\nrevocation = ocsp,crl\n", &cfg, err), 0);
	assert_non_null(r = gw_policy_revocation(&cfg));
	assert_int_equal(r->methods, P11S_REV_OCSP | P11S_REV_CRL);
	assert_int_equal(r->fetch, 0); /* the gateway's default: no fetching */
	gw_config_free(&cfg);
	assert_int_equal(parse("[inbound]\nrevocation = ocsp\nfetch = yes\nsoft-fail = yes\n"
	    "ocsp-url = http://ocsp.example.org/\nocsp-scope = path\nfetch-allow = .example.org\n"
	    "fetch-allow = ca.example.net\nfetch-deny = evil.example.org\nfetch-timeout = 5\n"
	    "crl-refresh-interval = 0\ncrl-refresh-before = 7200\n", &cfg, err), 0);
	assert_non_null(r = gw_policy_revocation(&cfg));
	assert_int_equal(r->fetch, 1);
	assert_int_equal(r->soft_fail, 1);
	assert_int_equal(r->ocsp_whole_path, 1);
	assert_string_equal(r->ocsp_url, "http://ocsp.example.org/");
	assert_int_equal((int)r->n_fetch_allow, 2);
	assert_string_equal(r->fetch_allow[1], "ca.example.net");
	assert_int_equal((int)r->n_fetch_deny, 1);
	assert_int_equal(r->fetch_timeout, 5);
	assert_int_equal(cfg.crl_refresh_interval, 0);
	assert_int_equal(cfg.crl_refresh_before, 7200);
	gw_config_free(&cfg);
	/* Refused: unknown methods, scopes, URLs of other schemes, options without a policy. */
	assert_int_equal(parse("[inbound]\nrevocation = sometimes\n", &cfg, err), -1);
	assert_int_equal(parse("[inbound]\nrevocation = ocsp\nocsp-scope = all\n", &cfg, err), -1);
	assert_int_equal(parse("[inbound]\nrevocation = ocsp\nocsp-url = file:///etc/x\n", &cfg, err),
	    -1);
	assert_int_equal(parse("[inbound]\nfetch = yes\n", &cfg, err), -1);
	assert_non_null(strstr(err, "need [inbound] revocation"));
	assert_int_equal(parse("[inbound]\nrevocation = crl\nfetch-timeout = 0\n", &cfg, err), -1);
}

static void test_gateway__size(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(gw_parse_size("4096", &v), 0);
	assert_true(v == 4096);
	assert_int_equal(gw_parse_size("64k", &v), 0);
	assert_true(v == 65536);
	assert_int_equal(gw_parse_size("1GB", &v), 0);
	assert_true(v == 1024ull * 1024 * 1024);
	assert_int_equal(gw_parse_size("-1", &v), -1);
	assert_int_equal(gw_parse_size("1MX", &v), -1);
	assert_int_equal(gw_parse_size("99999999999999999999", &v), -1);
}

static void test_gateway__addr_spec(void **state)
{
	char a[320];

	(void)state;
	assert_int_equal(gw_addr_spec("Alice <Alice@Example.ORG>", a, sizeof(a)), 0);
	assert_string_equal(a, "alice@example.org");
	assert_int_equal(gw_addr_spec("<bob@example.org>", a, sizeof(a)), 0);
	assert_string_equal(a, "bob@example.org");
	assert_int_equal(gw_addr_spec("bob@example.org (Bob)", a, sizeof(a)), 0);
	assert_string_equal(a, "bob@example.org");
	/* A display name that looks like an address does not count (Johnny I1-I3). */
	assert_int_equal(gw_addr_spec("\"alice@example.org\" <eve@evil.example>", a, sizeof(a)), 0);
	assert_string_equal(a, "eve@evil.example");
	assert_int_equal(gw_addr_spec("a@example.org, b@example.org", a, sizeof(a)), -1);
	assert_int_equal(gw_addr_spec("A <a@example.org>, B <b@example.org>", a, sizeof(a)), -1);
	assert_int_equal(gw_addr_spec("no address", a, sizeof(a)), -1);
	assert_int_equal(gw_addr_spec("<>", a, sizeof(a)), -1);
	assert_int_equal(gw_addr_spec("<a@b", a, sizeof(a)), -1);
}

static void test_gateway__cidr(void **state)
{
	gw_cidr nets[2];
	struct sockaddr_in in4 = { 0 };
	struct sockaddr_in6 in6 = { 0 };

	(void)state;
	assert_int_equal(gw_cidr_parse("192.168.0.0/16", &nets[0]), 0);
	assert_int_equal(gw_cidr_parse("2001:db8::/32", &nets[1]), 0);
	in4.sin_family = AF_INET;
	inet_pton(AF_INET, "192.168.7.9", &in4.sin_addr);
	assert_true(gw_cidr_match(nets, 2, &in4));
	inet_pton(AF_INET, "192.169.0.1", &in4.sin_addr);
	assert_false(gw_cidr_match(nets, 2, &in4));
	in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8:1::5", &in6.sin6_addr);
	assert_true(gw_cidr_match(nets, 2, &in6));
	inet_pton(AF_INET6, "::ffff:192.168.1.1", &in6.sin6_addr);
	assert_true(gw_cidr_match(nets, 2, &in6));
	inet_pton(AF_INET6, "2001:db9::1", &in6.sin6_addr);
	assert_false(gw_cidr_match(nets, 2, &in6));
	assert_int_equal(gw_cidr_parse("300.1.1.1", &nets[0]), -1);
	assert_int_equal(gw_cidr_parse("10.0.0.0/", &nets[0]), -1);
}

static void test_gateway__authres(void **state)
{
	p11s_verify_signer sg = { 0 };
	p11s_verify_reason why = { "content-altered", "x" };
	p11s_verify_result r = { 0 };
	const char *emails[] = { "alice@example.org" };
	char buf[1024];

	(void)state;
	assert_true(gw_authres_is_ours("mx.example.org; smime=pass", "MX.example.org"));
	assert_true(gw_authres_is_ours(" (comment) mx.example.org 1; none", "mx.example.org"));
	assert_true(gw_authres_is_ours("\"mx.example.org\"; none", "mx.example.org"));
	assert_false(gw_authres_is_ours("mx.example.org.evil; smime=pass", "mx.example.org"));
	assert_false(gw_authres_is_ours("other; smime=pass", "mx.example.org"));

	sg.valid = 1;
	sg.emails = emails;
	sg.n_emails = 1;
	sg.serial = "1A2B";
	sg.issuer = "CN=Test CA,O=p11smime test";
	r.valid = 1;
	r.signers = &sg;
	r.n_signers = 1;
	gw_authres_format(buf, sizeof(buf), "mx.example.org", &r);
	assert_string_equal(buf, "mx.example.org; smime=pass body.smime-identifier=alice@example.org "
	    "body.smime-serial=1A2B body.smime-issuer=\"CN=Test CA,O=p11smime test\"");
	sg.valid = 0;
	sg.reasons = &why;
	sg.n_reasons = 1;
	r.valid = 0;
	gw_authres_format(buf, sizeof(buf), "mx.example.org", &r);
	assert_non_null(strstr(buf, "; smime=fail reason=content-altered body.smime-identifier="));
	/* No header injection through a certificate field. */
	sg.issuer = "CN=x\r\nBcc: victim@example.org";
	gw_authres_format(buf, sizeof(buf), "mx.example.org", &r);
	assert_null(strchr(buf, '\n'));
	assert_null(strchr(buf, '\r'));
	gw_authres_format(buf, sizeof(buf), "mx.example.org", NULL);
	assert_string_equal(buf, "mx.example.org; smime=permerror (malformed)");
	/* RFC 9788: a comment with the protection and the outer fields changed in transit. */
	{
		p11s_header_field d[2] = { { "Subject", "s", "[...]", 1 }, { "To", "b", "m", 0 } };

		sg.issuer = NULL;
		sg.reasons = NULL;
		sg.n_reasons = 0;
		r.valid = 1;
		r.hp = "cipher";
		r.header_differs = d;
		r.n_header_differs = 2;
		gw_authres_format(buf, sizeof(buf), "mx.example.org", &r);
		assert_non_null(strstr(buf, "; smime=pass (protected headers hp=cipher; outer differs: To) "));
		r.hp = "clear)\r\nX: y";
		r.n_header_differs = 0;
		gw_authres_format(buf, sizeof(buf), "mx.example.org", &r);
		assert_non_null(strstr(buf, "; smime=pass (protected headers hp=unknown) "));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gateway__config_defaults),
		cmocka_unit_test(test_gateway__config_keys),
		cmocka_unit_test(test_gateway__config_errors),
		cmocka_unit_test(test_gateway__reader_policy),
		cmocka_unit_test(test_gateway__date_and_audit),
		cmocka_unit_test(test_gateway__revocation),
		cmocka_unit_test(test_gateway__size),
		cmocka_unit_test(test_gateway__addr_spec),
		cmocka_unit_test(test_gateway__cidr),
		cmocka_unit_test(test_gateway__authres),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

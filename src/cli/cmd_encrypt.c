/*
 * `p11smime encrypt --to CERTFILE [--to CERTFILE]... [--cipher C] [--oaep] [--in F] [--out F]`
 * (CLI.md): encrypt an RFC 5322 message to one or more certificates. No token is involved.
 */
#include "recipients.h"

static int run(cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_OPTS_ENCRYPT,
		CLI_OPT_IN,
		CLI_OPT_OUT,
		/* --to ADDRESS: the store and what validates its certificates (recipients.c). */
		CLI_OPT_STORE,
		CLI_OPT_LDAP,
		{ "trust", required_argument, NULL, CLI_O_TRUST },
		{ "certs", required_argument, NULL, CLI_O_CERTS },
		{ "crl", required_argument, NULL, CLI_O_CRL },
		/* RFC 9788 §2.1.1, §3 (docs/envelope.md "Header protection"). */
		CLI_OPTS_PROTECT_HEADERS,
		{ NULL, 0, NULL, 0 },
	};
	cli_args a;
	cli_recipients r = { 0 };
	cli_lookup lk = { 0 };
	int c, status;

	cli_args_init(&a, "encrypt");
	while ((c = cli_args_next(&a, argc, argv, opts)) != -1) {
		if (cli_lookup_option(&lk, c, optarg)) {
			continue;
		} else if ((status = cli_args_option(&a, c, argv)) != EXIT_OK) {
			goto out;
		}
	}
	if ((status = cli_args_no_operands(&a, argc, argv)) != EXIT_OK) {
		goto out;
	}
	if (a.n_to == 0) {
		status = cli_usage_error("encrypt: at least one --to CERTFILE|ADDRESS is needed");
		goto out;
	}
	cli_args_encrypt_opts(&a);
	if ((status = cli_args_protect_headers(&a, g->config, &a.encrypt.protect_headers)) !=
	    EXIT_OK) {
		goto out;
	}
	if ((status = cli_recipients_resolve(g, &a, &lk, &r)) != EXIT_OK) {
		goto out;
	}
	if (a.encrypt.cipher == P11S_CIPHER_AES_128_CBC ||
	    a.encrypt.cipher == P11S_CIPHER_AES_256_CBC) {
		p11s_log(P11S_LOG_INFO, "CBC gives EnvelopedData without integrity protection "
		                        "(EFAIL); prefer aes-256-gcm");
	}
	/* Recipients are checked inside before any output exists; the output is atomic anyway. */
	if ((status = cli_args_input(&a)) != EXIT_OK || (status = cli_args_output(&a)) != EXIT_OK) {
		goto out;
	}
	status = cli_args_commit(&a,
	    p11s_encrypt_message(a.in, cli_output_file(a.out), &a.encrypt));
out:
	cli_recipients_free(&r);
	cli_lookup_free(&lk);
	cli_args_free(&a);
	return status;
}

const cli_command cmd_encrypt = {
	"encrypt",
	"encrypt a message to one or more recipient certificates (RSA, EC, X25519/X448)",
	"encrypt --to CERTFILE|ADDRESS [--to ...]... [--cipher aes-256-gcm|aes-128-gcm|aes-128-cbc|"
	"aes-256-cbc] [--oaep] [--xdh-kdf hkdf|x963] [--no-protect-headers] [--store DB] [--ldap URL]...\n"
	"        [--trust FILE]..."
	"        [--certs FILE]... [--crl FILE]..."
	" [--in FILE] [--out FILE]\n"
	"\n"
	"  --to CERTFILE   recipient certificate (PEM or DER); repeat for more recipients\n"
	"  --to ADDRESS    (not a file) the certificate for ADDRESS from the store that validates\n"
	"                  now to --trust (or the config's trust); see docs/certificates.md\n"
	"  --store DB      certificate store (default: config's store, else\n"
	"                  $XDG_DATA_HOME/p11smime/certs.db)\n"
	"  --ldap URL      ldap://host[:port]/BASE-DN asked (mail=ADDRESS) when the store has no\n"
	"                  usable certificate (default: the config's ldap keys); answers cached\n"
	"  --cipher C      content cipher (default aes-256-gcm: AuthEnvelopedData; CBC gives\n"
	"                  EnvelopedData, which has no integrity protection); with addresses the\n"
	"                  default is aes-256-gcm only if every one announced it, else aes-256-cbc\n"
	"  --oaep          RSA recipients get RSAES-OAEP with SHA-256 (default PKCS#1 v1.5)\n"
	"  --xdh-kdf K     X25519/X448 recipients' KDF: hkdf (default, RFC 8418) or x963\n"
	"  --in FILE       message to encrypt (default stdin)\n"
	"  --out FILE      encrypted message (default stdout); written atomically",
	run,
};

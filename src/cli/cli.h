/* The p11smime tool: shared declarations of its commands. */
#ifndef P11S_CLI_H
#define P11S_CLI_H

#include <getopt.h>
#include <stdio.h>

#include <p11smime/p11smime.h>

/* Exit statuses of CLI.md "Exit status". */
enum { EXIT_OK = 0, EXIT_VERIFY = 1, EXIT_USAGE = 2, EXIT_TOKEN = 3 };

/* Global options (CLI.md), accepted before or after the command. */
typedef struct cli_globals {
	const char *module;
	const char *backend;
	const char *pin_source;
	const char *config_path;
	int json;
	int verbosity; /* -1 quiet, 0 default, 1.. verbose */
	p11s_config *config;
	const char *agent_mode; /* --agent auto|never|require (docs/agent.md); NULL: auto */
	p11s_ctx *agent_ctx;    /* inside `p11smime agent`: the context every command shares */
	/* inside the agent: its cache of keys found by earlier commands (cli_key_find()) */
	int (*agent_key_find)(void *payload, p11s_ctx *ctx, const char *uri, p11s_key **out);
	void *agent_key_payload;
} cli_globals;

/* A command: its name, one-line summary, usage text and entry point. */
typedef struct cli_command {
	const char *name;
	const char *summary;
	const char *usage;
	int (*run)(cli_globals *g, int argc, char **argv);
} cli_command;

/* Print the library's last error as one line and return the exit status of its class. */
int cli_fail(void);

/* Print a usage error as one line and return EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Open a library context from the global options. `uri` (may be NULL) is a pkcs11: URI the
 * command will use: its module-path wins over --module, the environment and the config file.
 */
int cli_open(cli_globals *g, const char *uri, p11s_ctx **out);

/*
 * p11s_key_find(), or inside the agent its key cache (g->agent_key_find): the library's
 * status; free the key with p11s_key_free() either way.
 */
int cli_key_find(cli_globals *g, p11s_ctx *ctx, const char *uri, p11s_key **key);

/* Free a context from cli_open(); the agent's shared context (g->agent_ctx) stays. */
void cli_close(cli_globals *g, p11s_ctx *ctx);

/*
 * The agent (src/agent/cli_hook.c): run `cmd` in `p11smime agent` per g->agent_mode. Returns
 * 1 when it was handled there (or failed: *status is the exit status), 0 to run in-process.
 */
int cli_agent_try(cli_globals *g, const cli_command *cmd, int argc, char **argv, int *status);
int cli_agent_mode_valid(const char *mode);

/* Non-zero if argv holds -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/*
 * Input (io.c): `path` NULL or "-" means stdin. The FILE is seekable: stdin that is not a
 * regular file is spooled to an unlinked temporary file first. Prints its own error.
 */
int cli_input_open(const char *path, FILE **out);

/*
 * Atomic output (io.c, CLI.md): write to cli_output_file(), then cli_output_commit() renames
 * the temporary file over `path` (or copies the spool to stdout when `path` is NULL or "-").
 * cli_output_abort() removes everything: on failure the destination is untouched and nothing
 * reaches stdout. commit and abort free the handle. Both open and commit print their errors.
 */
typedef struct cli_output cli_output;
int cli_output_open(const char *path, cli_output **out);
FILE *cli_output_file(cli_output *o);
int cli_output_commit(cli_output *o);
void cli_output_abort(cli_output *o);
/* Non-zero: outputs are O_TMPFILE files until commit (set by `p11smime agent`). */
void cli_output_anonymous(int on);

/*
 * Options that several commands share (opts.c). A command's getopt_long table names the
 * shared options it accepts with the CLI_OPT_* entries and its own options with values from
 * CLI_O_OWN up; its switch handles its own options and gives every other value to
 * cli_args_option(), which also reports unknown options.
 */
enum {
	CLI_O_IN = 0x100, CLI_O_OUT, CLI_O_KEY,
	CLI_O_TRUST, CLI_O_CERTS, CLI_O_CRL, CLI_O_AT, CLI_O_NO_SENDER_CHECK,
	CLI_O_CERT, CLI_O_CHAIN, CLI_O_DIGEST, CLI_O_PSS, CLI_O_OPAQUE,
	CLI_O_TO, CLI_O_CIPHER, CLI_O_OAEP, CLI_O_XDH_KDF,
	CLI_O_ALLOW_WEAK, CLI_O_REQUIRE_AUTHENTICATED, CLI_O_DATE_TOLERANCE,
	CLI_O_PROTECT_HEADERS, CLI_O_NO_PROTECT_HEADERS,
	CLI_O_OWN = 0x200
};

#define CLI_OPT_IN { "in", required_argument, NULL, CLI_O_IN }
#define CLI_OPT_OUT { "out", required_argument, NULL, CLI_O_OUT }
#define CLI_OPT_KEY { "key", required_argument, NULL, CLI_O_KEY }
#define CLI_OPT_NO_SENDER_CHECK { "no-sender-check", no_argument, NULL, CLI_O_NO_SENDER_CHECK }
/*
 * Verification: --trust FILE... --certs FILE... --crl FILE... --at TIME --allow-weak
 * --date-tolerance SECONDS|off.
 */
#define CLI_OPTS_VERIFY \
	{ "allow-weak", no_argument, NULL, CLI_O_ALLOW_WEAK }, \
	{ "date-tolerance", required_argument, NULL, CLI_O_DATE_TOLERANCE }, \
	{ "trust", required_argument, NULL, CLI_O_TRUST }, \
	{ "certs", required_argument, NULL, CLI_O_CERTS }, \
	{ "crl", required_argument, NULL, CLI_O_CRL }, \
	{ "at", required_argument, NULL, CLI_O_AT }
/* Decryption: refuse EnvelopedData without integrity (docs/envelope.md). */
#define CLI_OPT_REQUIRE_AUTHENTICATED \
	{ "require-authenticated", no_argument, NULL, CLI_O_REQUIRE_AUTHENTICATED }
/* The signer's certificates: --cert FILE --chain FILE... */
#define CLI_OPTS_SIGNER \
	{ "cert", required_argument, NULL, CLI_O_CERT }, \
	{ "chain", required_argument, NULL, CLI_O_CHAIN }
/* RFC 9788 header protection: on by default (CLI.md), --no-protect-headers turns it off. */
#define CLI_OPTS_PROTECT_HEADERS \
	{ "protect-headers", no_argument, NULL, CLI_O_PROTECT_HEADERS }, \
	{ "no-protect-headers", no_argument, NULL, CLI_O_NO_PROTECT_HEADERS }
/* The signature: --digest D --pss --opaque --[no-]protect-headers. */
#define CLI_OPTS_SIGNATURE \
	{ "digest", required_argument, NULL, CLI_O_DIGEST }, \
	{ "pss", no_argument, NULL, CLI_O_PSS }, \
	{ "opaque", no_argument, NULL, CLI_O_OPAQUE }, \
	CLI_OPTS_PROTECT_HEADERS
/* Encryption: --to CERTFILE... --cipher C --oaep --xdh-kdf K. */
#define CLI_OPTS_ENCRYPT \
	{ "to", required_argument, NULL, CLI_O_TO }, \
	{ "cipher", required_argument, NULL, CLI_O_CIPHER }, \
	{ "oaep", no_argument, NULL, CLI_O_OAEP }, \
	{ "xdh-kdf", required_argument, NULL, CLI_O_XDH_KDF }

typedef struct cli_args {
	const char *cmd;   /* the command's name: the prefix of its usage errors */
	int terse;         /* wrap's shorter messages for a bad --digest or --cipher */
	int started;       /* cli_args_next() has reset getopt */
	const char *in_path, *out_path, *key_uri;
	FILE *in;          /* cli_args_input() */
	cli_output *out;   /* cli_args_output() */
	/* verification */
	p11s_verify_opts verify;
	const char **trust, **certs, **crls;
	const char *at;
	int require_authenticated; /* --require-authenticated (policy.c adds the config key) */
	/* signing */
	p11s_sign_opts sign;
	const char *cert_path;
	X509 *cert;
	STACK_OF(X509) *chain;
	/* encryption */
	p11s_encrypt_opts encrypt;
	const char **to;
	size_t n_to;
	int cipher_given;  /* --cipher was on the command line (recipients.c) */
	int digest_given;  /* --digest was on the command line (Ed25519 takes only sha512) */
	int protect_headers; /* --protect-headers 1, --no-protect-headers 0, neither -1 */
} cli_args;

void cli_args_init(cli_args *a, const char *cmd);
/* getopt_long over the command's argv ("+": options end at the first operand). */
int cli_args_next(cli_args *a, int argc, char **argv, const struct option *opts);
/* A shared option (or an unknown one): EXIT_OK, or the exit status of its error. */
int cli_args_option(cli_args *a, int c, char **argv);
/* EXIT_OK when no operand follows the options, else the usage error. */
int cli_args_no_operands(const cli_args *a, int argc, char **argv);
/* a->verify from the verification options (--at parsed here). Returns an exit status. */
int cli_args_verify_opts(cli_args *a);
/* a->sign.cert (--cert loaded here) and a->sign.chain. Returns an exit status. */
int cli_args_signer(cli_args *a);
/*
 * RFC 9788 header protection for sign, encrypt and wrap: the command line, else the
 * configuration key protect-headers (yes|no), else on (CLI.md). Sets *on to 0 or 1;
 * returns an exit status (a bad configuration value is a usage error).
 */
int cli_args_protect_headers(const cli_args *a, const p11s_config *cfg, int *on);
/* a->encrypt's recipients from --to. */
void cli_args_encrypt_opts(cli_args *a);
/* a->in from --in (cli_input_open()); a->out for --out (cli_output_open()). */
int cli_args_input(cli_args *a);
int cli_args_output(cli_args *a);
/*
 * The end of atomic output: commit a->out when `rc` (a library return value) is not
 * negative; otherwise print the library's error and discard the output. Returns an exit status.
 */
int cli_args_commit(cli_args *a, int rc);
/* Frees everything, closes a->in and discards an output that was not committed. */
void cli_args_free(cli_args *a);

/* Append `s` (borrowed) to the array `*v` of `*n` strings. 0, or -1 when out of memory. */
int cli_strv_push(const char ***v, size_t *n, const char *s);
/*
 * Every value of the configuration key `key` (repeatable; section ""), appended to `*v`,
 * unless the command line gave some already (`*n` > 0). 0, or -1 when out of memory.
 */
int cli_strv_from_config(const p11s_config *cfg, const char *key, const char ***v, size_t *n);

/* cli_open() and p11s_key_find() of the key `uri`; prints the error, returns an exit status. */
int cli_open_key(cli_globals *g, const char *uri, p11s_ctx **ctx, p11s_key **key);

/*
 * Certificates from a file (certload.c): every certificate of a PEM file, or one DER
 * certificate. Print their own error; return an exit status.
 */
int cli_load_certs(const char *path, STACK_OF(X509) **out);
int cli_load_cert(const char *path, X509 **out); /* exactly one */

/*
 * The reader's policy (policy.c): the config keys allow-weak and require-authenticated added
 * to a->verify.allow_weak and a->require_authenticated (call after the options; prints its
 * usage error, returns an exit status); the one-line stderr warnings for weak algorithms
 * accepted by --allow-weak and for decrypted content without integrity protection.
 */
int cli_policy_apply(const cli_globals *g, cli_args *a);
void cli_policy_warn_weak(const p11s_verify_result *r);
void cli_policy_warn_unauthenticated(const p11s_decrypt_info *info);

/* verify's report (cmd_verify.c), also used by unwrap for each signed layer. */
void cli_verify_report_text(FILE *f, const p11s_verify_result *r);
void cli_verify_report_json(FILE *f, const p11s_verify_result *r);

/* JSON output helpers (json.c). */
void json_str(FILE *f, const char *s);
void json_key(FILE *f, const char *key); /* "key": */
void json_opt_str(FILE *f, const char *s); /* null when s is NULL */
void json_hex(FILE *f, const unsigned char *p, size_t len);
/*
 * RFC 9788 header protection as verify and decrypt report it: null without `hp`, else
 * {"hp", "fields": [{name, value}], "differs": [{name, protected, outer, exposed_by_sender}]}.
 */
void json_header_protection(FILE *f, const char *hp, const p11s_header_field *fields,
    size_t n_fields, const p11s_header_field *differs, size_t n_differs);

/* Certificate details for `keys` (certinfo.c). */
void certinfo_text(FILE *f, X509 *cert, const char *indent);
void certinfo_json(FILE *f, X509 *cert);

extern const cli_command cmd_tokens;
extern const cli_command cmd_keys;
extern const cli_command cmd_keygen; /* cmd_keygen.c */
extern const cli_command cmd_csr;    /* cmd_csr.c */
extern const cli_command cmd_import_cert; /* cmd_import_cert.c */
extern const cli_command cmd_sign;
extern const cli_command cmd_verify;
extern const cli_command cmd_encrypt;
extern const cli_command cmd_decrypt;
extern const cli_command cmd_wrap;
extern const cli_command cmd_unwrap;
extern const cli_command cmd_receipt;
extern const cli_command cmd_verify_receipt;
extern const cli_command cmd_audit;
extern const cli_command cmd_agent;
extern const cli_command cmd_mua; /* cmd_mua.c: NeoMutt and mutt */
extern const cli_command cmd_certs; /* cmd_certs.c: the certificate store */

#endif

/* The p11smime tool: shared declarations of its commands. */
#ifndef P11S_CLI_H
#define P11S_CLI_H

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

/*
 * Certificates from a file (certload.c): every certificate of a PEM file, or one DER
 * certificate. Print their own error; return an exit status.
 */
int cli_load_certs(const char *path, STACK_OF(X509) **out);
int cli_load_cert(const char *path, X509 **out); /* exactly one */

/* verify's report (cmd_verify.c), also used by unwrap for each signed layer. */
void cli_verify_report_text(FILE *f, const p11s_verify_result *r);
void cli_verify_report_json(FILE *f, const p11s_verify_result *r);

/* JSON output helpers (json.c). */
void json_str(FILE *f, const char *s);
void json_key(FILE *f, const char *key); /* "key": */
void json_hex(FILE *f, const unsigned char *p, size_t len);

/* Certificate details for `keys` (certinfo.c). */
void certinfo_text(FILE *f, X509 *cert, const char *indent);
void certinfo_json(FILE *f, X509 *cert);

extern const cli_command cmd_tokens;
extern const cli_command cmd_keys;
extern const cli_command cmd_sign;
extern const cli_command cmd_verify;
extern const cli_command cmd_encrypt;
extern const cli_command cmd_decrypt;
extern const cli_command cmd_wrap;
extern const cli_command cmd_unwrap;
extern const cli_command cmd_receipt;
extern const cli_command cmd_verify_receipt;
extern const cli_command cmd_audit;

#endif

/*
 * Recipients of encrypt and wrap (recipients.c, docs/certificates.md): a --to operand that is
 * an existing file is a certificate file, anything else an address looked up in the store.
 */
#ifndef P11S_CLI_RECIPIENTS_H
#define P11S_CLI_RECIPIENTS_H

#include <p11smime/harvest.h>
#include <p11smime/store.h>

#include "cli.h"

/* --store PATH (encrypt, wrap, verify, certs); far above any command's own option values. */
#define CLI_O_STORE (CLI_O_OWN + 0x80)
#define CLI_OPT_STORE { "store", required_argument, NULL, CLI_O_STORE }

/* --ldap URL (encrypt, wrap): a directory asked when the store has no usable certificate. */
#define CLI_O_LDAP (CLI_O_OWN + 0x81)
#define CLI_OPT_LDAP { "ldap", required_argument, NULL, CLI_O_LDAP }

/* Where addresses are looked up: --store and --ldap of a command line. */
typedef struct cli_lookup {
	const char *store;
	const char **ldap;
	size_t n_ldap;
} cli_lookup;
/* 1 when `c` is --store or --ldap (recorded in `l`), else 0. */
int cli_lookup_option(cli_lookup *l, int c, const char *arg);
void cli_lookup_free(cli_lookup *l);

/* The store: `path` (--store), else the config's `store`, else the default. Prints errors. */
int cli_store_open(cli_globals *g, const char *path, p11s_store **out);

/* The config file's repeated `key` as a malloc'd array (NULL, *n 0 when absent). */
const char **cli_config_list(const p11s_config *cfg, const char *key, size_t *n);

typedef struct cli_recipients {
	const char **files;  /* --to operands that are files */
	size_t n_files;
	X509 **certs;        /* certificates chosen for addresses */
	size_t n_certs;
	const char **cfg_trust; /* the config's trust files, when --trust was not given */
} cli_recipients;

/*
 * Split a->to into files and addresses, choose each address's certificate
 * (p11s_store_recipient() with --trust or the config's trust, --certs, --crl; when the store
 * has none usable, each --ldap directory, else each of the config's `ldap`, is asked and the
 * store tried again), set
 * a->encrypt's recipients and, unless --cipher was given, its cipher from the recorded
 * capabilities (RFC 8551 §2.7). Returns an exit status (1 when an address has no usable
 * certificate, naming it and why).
 */
int cli_recipients_resolve(cli_globals *g, cli_args *a, const cli_lookup *lk,
    cli_recipients *r);
void cli_recipients_free(cli_recipients *r);

/* The config's `harvest = yes`. */
int cli_harvest_configured(cli_globals *g);
/* Record a VALID result's signers in the store; a failure is a warning, never the status. */
void cli_harvest(cli_globals *g, const char *store_path, const p11s_verify_result *r);

#endif

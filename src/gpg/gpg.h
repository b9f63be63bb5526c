/* p11smime-gpg: shared declarations (docs/git.md). */
#ifndef P11S_GPG_H
#define P11S_GPG_H

#include <stdint.h>
#include <stdio.h>

#include <openssl/x509.h>

#include <p11smime/common.h>
#include <p11smime/config.h>

/* Exit statuses (CLI.md): gpg's 0/1/2 mean the same for what git looks at. */
enum { GPG_EXIT_OK = 0, GPG_EXIT_BAD = 1, GPG_EXIT_USAGE = 2, GPG_EXIT_TOKEN = 3 };

typedef struct gpg_opts {
	const char *config_path;  /* --config, else $XDG_CONFIG_HOME/p11smime/config */
	p11s_config *config;      /* NULL when the default file does not exist */
	FILE *status;             /* --status-fd, or NULL */
	int has_time;             /* --faked-system-time: validate at `time` */
	int64_t time;
	int armor;                /* -a: PEM output (git always asks; DER otherwise) */
} gpg_opts;

/* "[GNUPG:] KEYWORD ARGS\n" on the status stream, if any (gnupg doc/DETAILS). */
void gpg_status(const gpg_opts *o, const char *keyword, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A human line on stderr, "p11smime-gpg: ...". */
void gpg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The library's last error as one line on stderr; returns the exit status of its class. */
int gpg_fail(const char *what);
/* Upper-case hex of a certificate digest ("sha1", "sha256") into `hex` (>= 129 bytes). */
int gpg_cert_fpr(const X509 *cert, const char *md, char *hex);
/* gnupg's %XX escaping of a status-line argument (DETAILS: user IDs); malloc'd. */
char *gpg_escape(const char *s);
/* libgcrypt's algorithm numbers, as gpgsm writes them in SIG_CREATED and VALIDSIG. */
int gpg_pk_algo(const X509 *cert);
int gpg_md_algo(const char *name);

/* -bsau KEY: sign stdin, signature on stdout. Returns the exit status. */
int gpg_cmd_sign(const gpg_opts *o, const char *keyspec);
/* --verify SIGFILE [DATAFILE|-]. Returns the exit status. */
int gpg_cmd_verify(const gpg_opts *o, const char *sigfile, const char *datafile);

#endif

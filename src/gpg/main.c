/*
 * p11smime-gpg: what git runs as gpg.x509.program (docs/git.md, docs/p11smime-gpg.1). It
 * takes gpgsm's arguments in the forms git uses (gpg-interface.c):
 *   sign:   p11smime-gpg --status-fd=2 -bsau KEY        payload on stdin, signature on stdout
 *   verify: p11smime-gpg --status-fd=1 --verify SIGFILE -
 * Options follow gpg's syntax: long options with "=VALUE" or a separate VALUE, clustered
 * short options ("-bsau KEY", "-uKEY"). gpg's no-op options (--batch, --no-tty, --yes,
 * --keyid-format) are accepted; any other option is an error, as in gpg.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11smime/error.h>
#include <p11smime/verify.h>

#include "gpg.h"

/* The keys of the shared configuration file (docs/tokens.md, docs/git.md). */
static const char *const config_keys[] = { ".module", ".backend", ".pin-source", ".tsa",
	".trust", ".crl", ".certs", ".allow-weak", NULL };

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("p11smime-gpg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (try --help)\n", stderr);
	return GPG_EXIT_USAGE;
}

static void help(void)
{
	fputs("usage: p11smime-gpg [--config FILE] [--status-fd N] -bsau KEY  < payload > sig\n"
	      "       p11smime-gpg [--config FILE] [--status-fd N] --verify SIGFILE [DATAFILE|-]\n"
	      "git: git config gpg.format x509; git config gpg.x509.program p11smime-gpg;\n"
	      "     git config user.signingkey ADDRESS|FINGERPRINT|pkcs11:URI  (docs/git.md)\n",
	    stdout);
}

static int load_config(gpg_opts *o)
{
	char path[4096];
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

	if (o->config_path != NULL) {
		return p11s_config_load(&o->config, o->config_path, config_keys);
	}
	if (xdg != NULL && xdg[0] == '/') {
		snprintf(path, sizeof(path), "%s/p11smime/config", xdg);
	} else if (home != NULL) {
		snprintf(path, sizeof(path), "%s/.config/p11smime/config", home);
	} else {
		return P11S_OK;
	}
	if (access(path, F_OK) != 0 && errno == ENOENT) {
		return P11S_OK;
	}
	return p11s_config_load(&o->config, path, config_keys);
}

/* --faked-system-time: seconds since the epoch, gnupg's 20240131T120000, or RFC 3339. */
static int parse_time(const char *s, int64_t *out)
{
	char *end;
	struct tm tm = { 0 };

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == 0 && end != s && (*end == '\0' || *end == '!')) {
		*out = v;
		return 0;
	}
	if (sscanf(s, "%4d%2d%2dT%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
	        &tm.tm_min, &tm.tm_sec) == 6 && strlen(s) >= 15 &&
	    (s[15] == '\0' || s[15] == '!')) {
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		*out = (int64_t)timegm(&tm);
		return 0;
	}
	return p11s_verify_parse_time(s, out) == 0 ? 0 : -1;
}

/* The value of a long option: "--opt=V" or "--opt V". NULL when `arg` is not `name`. */
static const char *long_value(const char *arg, const char *name, int *i, int argc, char **argv,
    int *missing)
{
	size_t n = strlen(name);

	if (strncmp(arg, name, n) != 0) {
		return NULL;
	}
	if (arg[n] == '=') {
		return arg + n + 1;
	}
	if (arg[n] != '\0') {
		return NULL;
	}
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

int main(int argc, char **argv)
{
	gpg_opts o = { 0 };
	const char *key = NULL, *status_fd = NULL, *faked = NULL, *v;
	int sign = 0, detach = 0, verify = 0, i, status, missing = 0, n_operands = 0;
	char *operands[2] = { NULL, NULL };

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || strcmp(a, "-") == 0) {
			if (n_operands == 2) {
				return usage_error("unexpected argument '%s'", a);
			}
			operands[n_operands++] = argv[i];
			continue;
		}
		if (a[1] != '-') {
			/* Clustered short options; -u takes the rest of the cluster or the next one. */
			int stop = 0;

			for (const char *c = a + 1; *c != '\0' && !stop; c++) {
				switch (*c) {
				case 'b': detach = 1; break;
				case 's': sign = 1; break;
				case 'a': o.armor = 1; break;
				case 'v': break;
				case 'u':
					if (c[1] != '\0') {
						key = c + 1;
					} else if (i + 1 < argc) {
						key = argv[++i];
					} else {
						return usage_error("option -u needs a key%s", "");
					}
					stop = 1; /* the rest of the cluster was the key */
					break;
				default: {
					char opt[3] = { '-', *c, '\0' };

					return usage_error("invalid option '%s'", opt);
				}
				}
			}
			continue;
		}
		missing = 0;
		if ((v = long_value(a, "--status-fd", &i, argc, argv, &missing)) != NULL) {
			status_fd = v;
		} else if ((v = long_value(a, "--local-user", &i, argc, argv, &missing)) != NULL) {
			key = v;
		} else if ((v = long_value(a, "--config", &i, argc, argv, &missing)) != NULL) {
			o.config_path = v;
		} else if ((v = long_value(a, "--faked-system-time", &i, argc, argv, &missing)) !=
		           NULL) {
			faked = v;
		} else if ((v = long_value(a, "--keyid-format", &i, argc, argv, &missing)) != NULL) {
			/* gpg's; an X.509 key is shown by fingerprint whatever the format. */
		} else if (missing) {
			return usage_error("option '%s' needs a value", a);
		} else if (strcmp(a, "--verify") == 0) {
			verify = 1;
		} else if (strcmp(a, "--sign") == 0) {
			sign = 1;
		} else if (strcmp(a, "--detach-sign") == 0) {
			sign = detach = 1;
		} else if (strcmp(a, "--armor") == 0) {
			o.armor = 1;
		} else if (strcmp(a, "--batch") == 0 || strcmp(a, "--no-tty") == 0 ||
		           strcmp(a, "--yes") == 0 || strcmp(a, "--verbose") == 0) {
			/* gpg's no-ops here: nothing is ever asked on stdin. */
		} else if (strcmp(a, "--help") == 0) {
			help();
			return GPG_EXIT_OK;
		} else if (strcmp(a, "--version") == 0) {
			printf("p11smime-gpg (p11smime) %s\n", p11s_version());
			return GPG_EXIT_OK;
		} else if (strncmp(a, "--pin", 5) == 0 || strncmp(a, "--passphrase", 12) == 0) {
			/* A PIN is never an argument (CLI.md): say so instead of "invalid option". */
			return usage_error("'%s': a PIN is never an argument; set pin-source in the "
			                   "configuration file", a);
		} else {
			return usage_error("invalid option '%s'", a);
		}
	}
	for (; i < argc; i++) {
		if (n_operands == 2) {
			return usage_error("unexpected argument '%s'", argv[i]);
		}
		operands[n_operands++] = argv[i];
	}
	if (missing) {
		return usage_error("option '%s' needs a value", argv[argc - 1]);
	}
	if (status_fd != NULL) {
		char *end;
		long fd = strtol(status_fd, &end, 10);

		if (*status_fd == '\0' || *end != '\0' || fd < 0 || fd > 1023) {
			return usage_error("bad --status-fd '%s'", status_fd);
		}
		if (fd == 1) {
			o.status = stdout;
		} else if (fd == 2) {
			o.status = stderr;
		} else if ((o.status = fdopen((int)fd, "w")) == NULL) {
			return usage_error("--status-fd %s is not open for writing", status_fd);
		}
	}
	if (faked != NULL) {
		if (parse_time(faked, &o.time) < 0) {
			return usage_error("bad --faked-system-time '%s'", faked);
		}
		o.has_time = 1;
	}
	if (load_config(&o) < 0) {
		fprintf(stderr, "p11smime-gpg: %s\n", p11s_error_last()->message);
		return GPG_EXIT_USAGE;
	}
	if (verify && (sign || key != NULL)) {
		status = usage_error("--verify does not combine with signing options%s", "");
	} else if (verify) {
		if (n_operands == 0) {
			status = usage_error("--verify needs SIGFILE and the signed data (a file or -)%s",
			    "");
		} else if (n_operands == 1) {
			/* gpgsm would look for content inside SIGFILE; git never signs that way. */
			status = usage_error("'%s': only detached signatures: give the data too (or -)",
			    operands[0]);
		} else {
			status = gpg_cmd_verify(&o, operands[0], operands[1]);
		}
	} else if (sign) {
		if (!detach) {
			status = usage_error("only detached signatures (-b) are made%s", "");
		} else if (key == NULL) {
			status = usage_error("-u KEY (git's user.signingkey) is needed to sign%s", "");
		} else if (n_operands > 0) {
			status = usage_error("unexpected argument '%s' (the payload is read from stdin)",
			    operands[0]);
		} else {
			status = gpg_cmd_sign(&o, key);
		}
	} else {
		status = usage_error("nothing to do: -bsau KEY or --verify SIGFILE -%s", "");
	}
	p11s_config_free(o.config);
	if (o.status != NULL && o.status != stdout && o.status != stderr) {
		fclose(o.status);
	}
	return status;
}

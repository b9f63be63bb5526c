/*
 * PIN hygiene inside the process, with the mock token (tests/integration/pin_hygiene.sh runs
 * it). usage: pin_hygiene env VAR PINFILE | pin_hygiene file PINFILE
 *   env:  VAR holds the PIN in our environment (the script sets it from PINFILE, so the PIN is
 *         never in an argv); after the login, VAR must be gone from the environment, the
 *         string wiped where it was (/proc/self/environ is the kernel's view of the same
 *         bytes), and a child process must not see it.
 *   both: the buffer handed to C_Login (the mock records its address) must be unmapped or
 *         wiped once the login returned.
 * The mock's PIN is set to the one in PINFILE. Prints one line per check; exit 0 when all hold.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <p11smime/p11smime.h>

#include "pkcs11/mock.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", what);
	if (!ok) {
		failures++;
	}
}

/* Does the file (or a child's output) contain `pin`? -1 if it cannot be read. */
static int fd_contains(int fd, const char *pin)
{
	char buf[1 << 16];
	size_t n = 0;
	ssize_t r;

	while (n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n)) > 0) {
		n += (size_t)r;
	}
	if (n == 0) {
		return -1;
	}
	return memmem(buf, n, pin, strlen(pin)) != NULL;
}

static int child_env_contains(const char *pin)
{
	int p[2], status, rc;
	pid_t pid;

	if (pipe(p) != 0 || (pid = fork()) < 0) {
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execl("/usr/bin/env", "env", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	rc = fd_contains(p[0], pin);
	close(p[0]);
	waitpid(pid, &status, 0);
	return rc;
}

/* The page of `p` is mapped (msync fails with ENOMEM on an unmapped range). */
static int mapped(const void *p)
{
	long page = sysconf(_SC_PAGESIZE);
	void *base = (void *)((unsigned long)p & ~(unsigned long)(page - 1));

	return msync(base, (size_t)page, MS_ASYNC) == 0 || errno != ENOMEM;
}

int main(int argc, char **argv)
{
	static const p11s_ctx_opts init = P11S_CTX_OPTS_INIT;
	p11s_ctx_opts o = init;
	p11s_ctx *ctx = NULL;
	p11s_key *key = NULL;
	char pin[64] = "", spec[4200];
	const char *pinfile, *var = NULL;
	const void *buf;
	size_t len;
	FILE *f;
	int env_mode;

	if (argc == 4 && strcmp(argv[1], "env") == 0) {
		env_mode = 1;
		var = argv[2];
		pinfile = argv[3];
		snprintf(spec, sizeof(spec), "env:%s", var);
	} else if (argc == 3 && strcmp(argv[1], "file") == 0) {
		env_mode = 0;
		pinfile = argv[2];
		snprintf(spec, sizeof(spec), "file:%s", pinfile);
	} else {
		fprintf(stderr, "usage: pin_hygiene env VAR PINFILE | file PINFILE\n");
		return 2;
	}
	if ((f = fopen(pinfile, "r")) == NULL || fgets(pin, sizeof(pin), f) == NULL) {
		fprintf(stderr, "pin_hygiene: cannot read %s\n", pinfile);
		return 2;
	}
	fclose(f);
	pin[strcspn(pin, "\r\n")] = '\0';
	if (env_mode) {
		const char *v = getenv(var);

		check(v != NULL && strcmp(v, pin) == 0, "the PIN is in the environment before login");
	}
	p11s_mock__reset();
	p11s_mock__set_pin(pin);
	o.backend = "mock";
	o.module = "mock";
	o.pin_source = spec;
	o.batch = 1;
	if (p11s_ctx_new(&ctx, &o) != P11S_OK) {
		fprintf(stderr, "pin_hygiene: p11s_ctx_new: %s\n", p11s_error_last()->message);
		return 2;
	}
	/* A private key is visible only after C_Login: this logs in. */
	check(p11s_key_find(ctx, "pkcs11:token=mock;object=rsa2048;type=private", &key) == P11S_OK,
	    "login with the PIN and find the private key");
	check(p11s_mock__logged_in(), "the mock token is logged in");

	buf = p11s_mock__login_pin_buffer(&len);
	check(buf != NULL && len == strlen(pin), "the mock saw a PIN buffer of the right length");
	if (buf != NULL && mapped(buf)) {
		/* Still mapped: it must hold no trace of the PIN. */
		int clean = 1;

		for (size_t i = 0; i < len; i++) {
			clean &= ((const unsigned char *)buf)[i] == 0;
		}
		check(clean, "the PIN buffer handed to C_Login is wiped after the login");
	} else {
		check(buf != NULL, "the PIN buffer handed to C_Login is unmapped after the login");
	}
	if (env_mode) {
		int fd;

		check(getenv(var) == NULL, "the env: variable is unset once read");
		fd = open("/proc/self/environ", O_RDONLY);
		check(fd >= 0 && fd_contains(fd, pin) == 0,
		    "the PIN is wiped from the initial environment (/proc/self/environ)");
		if (fd >= 0) {
			close(fd);
		}
	}
	check(child_env_contains(pin) == 0, "a child process does not get the PIN in its environment");
	p11s_key_free(key);
	p11s_ctx_free(ctx);
	OPENSSL_cleanse(pin, sizeof(pin));
	printf("%d failed\n", failures);
	return failures == 0 ? 0 : 1;
}

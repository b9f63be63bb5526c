/*
 * Inputs and atomic outputs (CLI.md: "An output file is written atomically (temporary file +
 * rename): on any failure the destination is left untouched and no partial output appears on
 * stdout").
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

struct cli_output {
	char *dest;       /* NULL: stdout */
	char *device;     /* the destination when it is not a regular file (spooled, like stdout) */
	char *tmp_path;   /* temporary file beside dest, or NULL for an unlinked spool */
	int anonymous;    /* tmp_path is only a name for commit: the file is O_TMPFILE, unlinked */
	FILE *f;
};

/* Copy `in` to `out`, from the start of `in` when `rewind_in` (a pipe cannot seek). */
static int copy_all(FILE *in, FILE *out, int rewind_in)
{
	char buf[65536];
	size_t n;

	if (rewind_in && fseek(in, 0, SEEK_SET) != 0) {
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (fwrite(buf, 1, n, out) != n) {
			return -1;
		}
	}
	return ferror(in) ? -1 : 0;
}

int cli_input_open(const char *path, FILE **out)
{
	FILE *f;
	struct stat st;

	*out = NULL;
	if (path != NULL && strcmp(path, "-") != 0) {
		if ((f = fopen(path, "rb")) == NULL) {
			fprintf(stderr, "p11smime: error: cannot open %s: %s\n", path, strerror(errno));
			return EXIT_USAGE;
		}
		*out = f;
		return EXIT_OK;
	}
	/* stdin: use it as is when it is a regular file, else spool it (parsers need to seek). */
	if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
		int fd = dup(STDIN_FILENO);

		if (fd >= 0 && (f = fdopen(fd, "rb")) != NULL) {
			*out = f;
			return EXIT_OK;
		}
		if (fd >= 0) {
			close(fd);
		}
	}
	if ((f = tmpfile()) == NULL || copy_all(stdin, f, 0) < 0 || fflush(f) != 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "p11smime: error: cannot read standard input: %s\n", strerror(errno));
		if (f != NULL) {
			fclose(f);
		}
		return EXIT_USAGE;
	}
	*out = f;
	return EXIT_OK;
}

/*
 * The agent (docs/agent.md) writes its outputs as O_TMPFILE files: a `p11smime agent` killed
 * mid-run then leaves nothing beside the destination. The in-process tool keeps the named
 * DEST.XXXXXX file that docs/security.md documents (tests/integration/atomic.sh watches for it).
 */
static int anonymous_outputs;

void cli_output_anonymous(int on)
{
	anonymous_outputs = on;
}

/* An unnamed file (O_TMPFILE, mode 0600) in the directory of `path`, or -1. */
static int tmpfile_beside(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];
	int fd;

	if (slash == NULL) {
		snprintf(dir, sizeof(dir), ".");
	} else if ((size_t)(slash - path) >= sizeof(dir)) {
		return -1;
	} else {
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	}
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd;
}

/*
 * Give the O_TMPFILE file a name: link it under a fresh DEST.XXXXXX (linkat through
 * /proc/self/fd, which needs no privilege unlike AT_EMPTY_PATH), for the rename over DEST.
 */
static int link_anonymous(cli_output *o)
{
	char proc[64];
	size_t l = strlen(o->tmp_path);
	static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fileno(o->f));
	for (int tries = 0; tries < 100; tries++) {
		unsigned char r[6];
		FILE *u = fopen("/dev/urandom", "rb");
		int got = u != NULL && fread(r, 1, sizeof(r), u) == sizeof(r);

		if (u != NULL) {
			fclose(u);
		}
		if (!got) {
			return -1;
		}
		for (int i = 0; i < 6; i++) {
			o->tmp_path[l - 6 + (size_t)i] = set[r[i] % (sizeof(set) - 1)];
		}
		if (linkat(AT_FDCWD, proc, AT_FDCWD, o->tmp_path, AT_SYMLINK_FOLLOW) == 0) {
			o->anonymous = 0; /* named now: abort removes it */
			return 0;
		}
		if (errno != EEXIST) {
			return -1;
		}
	}
	return -1;
}

int cli_output_open(const char *path, cli_output **out)
{
	cli_output *o;
	int fd;

	*out = NULL;
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		fprintf(stderr, "p11smime: error: out of memory\n");
		return EXIT_USAGE;
	}
	struct stat st;

	if (path == NULL || strcmp(path, "-") == 0) {
		/* stdout: spool, so that nothing appears unless the command succeeds. */
		o->f = tmpfile();
	} else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "p11smime: error: cannot create output %s: %s\n", path,
		    strerror(EISDIR));
		cli_output_abort(o);
		return EXIT_USAGE;
	} else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/*
		 * A device or a FIFO (/dev/null, /dev/stdout, a named pipe): renaming a temporary
		 * file over it would replace it (run as root, /dev/null itself). Spool as for
		 * stdout, and write it only when the command succeeded.
		 */
		if ((o->device = strdup(path)) == NULL) {
			cli_output_abort(o);
			fprintf(stderr, "p11smime: error: out of memory\n");
			return EXIT_USAGE;
		}
		o->f = tmpfile();
	} else {
		size_t l = strlen(path) + 16;

		if ((o->dest = strdup(path)) == NULL || (o->tmp_path = malloc(l)) == NULL) {
			cli_output_abort(o);
			fprintf(stderr, "p11smime: error: out of memory\n");
			return EXIT_USAGE;
		}
		/* Same directory as the destination, so that rename() is atomic. */
		snprintf(o->tmp_path, l, "%s.XXXXXX", path);
		/*
		 * In the agent, O_TMPFILE (open(2)): a file without a name until commit links it,
		 * so that an agent killed mid-write leaves nothing behind. Elsewhere, and on
		 * filesystems without O_TMPFILE, the named mkstemp() file.
		 */
		if (anonymous_outputs && (fd = tmpfile_beside(path)) >= 0) {
			o->anonymous = 1;
		} else {
			fd = mkstemp(o->tmp_path);
		}
		if (fd >= 0) {
			(void)fchmod(fd, 0600);
			o->f = fdopen(fd, "w+b");
			if (o->f == NULL) {
				close(fd);
			}
		}
	}
	if (o->f == NULL) {
		fprintf(stderr, "p11smime: error: cannot create output %s: %s\n",
		    path ? path : "spool", strerror(errno));
		cli_output_abort(o);
		return EXIT_USAGE;
	}
	*out = o;
	return EXIT_OK;
}

FILE *cli_output_file(cli_output *o)
{
	return o->f;
}

int cli_output_commit(cli_output *o)
{
	int rc = EXIT_OK;

	if (fflush(o->f) != 0) {
		fprintf(stderr, "p11smime: error: writing output: %s\n", strerror(errno));
		cli_output_abort(o);
		return EXIT_USAGE;
	}
	if (o->device != NULL) {
		FILE *d = fopen(o->device, "wb");
		int bad = d == NULL || copy_all(o->f, d, 1) < 0;

		if ((d != NULL && fclose(d) != 0) || bad) {
			fprintf(stderr, "p11smime: error: cannot write %s: %s\n", o->device,
			    strerror(errno));
			rc = EXIT_USAGE;
		}
	} else if (o->dest == NULL) {
		if (copy_all(o->f, stdout, 1) < 0 || fflush(stdout) != 0) {
			fprintf(stderr, "p11smime: error: writing standard output: %s\n", strerror(errno));
			rc = EXIT_USAGE;
		}
	} else if (fsync(fileno(o->f)) != 0 || (o->anonymous && link_anonymous(o) != 0) ||
	    rename(o->tmp_path, o->dest) != 0) {
		fprintf(stderr, "p11smime: error: cannot write %s: %s\n", o->dest, strerror(errno));
		rc = EXIT_USAGE;
	} else {
		free(o->tmp_path);
		o->tmp_path = NULL; /* renamed: nothing to remove */
	}
	cli_output_abort(o);
	return rc;
}

void cli_output_abort(cli_output *o)
{
	if (o == NULL) {
		return;
	}
	if (o->f != NULL) {
		fclose(o->f);
	}
	if (o->tmp_path != NULL && !o->anonymous) {
		unlink(o->tmp_path);
	}
	free(o->tmp_path);
	free(o->dest);
	free(o->device);
	free(o);
}

/* Helpers shared by the fuzz targets: the input as a memfd-backed FILE, a C string, a sink. */
#define _GNU_SOURCE /* memfd_create */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

FILE *p11s_fuzz_file(const uint8_t *data, size_t size)
{
	int fd = memfd_create("p11s-fuzz", MFD_CLOEXEC);
	size_t off = 0;
	FILE *f;

	if (fd < 0) {
		return NULL;
	}
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);

		if (n <= 0) {
			close(fd);
			return NULL;
		}
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) != 0 || (f = fdopen(fd, "r+b")) == NULL) {
		close(fd);
		return NULL;
	}
	return f;
}

char *p11s_fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

FILE *p11s_fuzz_null(void)
{
	static FILE *null;

	if (null == NULL) {
		null = fopen("/dev/null", "wb");
	}
	return null;
}

/*
 * Secret buffers for PINs (STYLE.md "Secrets"): one anonymous page per secret, locked in RAM
 * and excluded from core dumps where the kernel allows, wiped on every change and on free.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <p11smime/secret.h>

#include "core/error_int.h"

struct p11s_secret {
	size_t len;
	size_t map_len;
	char data[P11S_SECRET_MAX + 1];
};

int p11s_secret_new(p11s_secret **out)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t map_len = sizeof(p11s_secret);
	p11s_secret *s;

	*out = NULL;
	if (page > 0) {
		map_len = (map_len + (size_t)page - 1) / (size_t)page * (size_t)page;
	}
	s = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory for a secret buffer");
	}
	/* Best effort: an unprivileged process may exceed RLIMIT_MEMLOCK; the wipe still holds. */
	(void)mlock(s, map_len);
#ifdef MADV_DONTDUMP
	(void)madvise(s, map_len, MADV_DONTDUMP);
#endif
	s->len = 0;
	s->map_len = map_len;
	*out = s;
	return P11S_OK;
}

int p11s_secret_set(p11s_secret *s, const char *data, size_t len)
{
	if (s == NULL || (data == NULL && len > 0)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "secret: invalid argument");
	}
	p11s_secret_wipe(s);
	if (len > P11S_SECRET_MAX) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "secret longer than %d bytes",
		    P11S_SECRET_MAX);
	}
	if (len > 0) {
		memcpy(s->data, data, len);
	}
	s->data[len] = '\0';
	s->len = len;
	return P11S_OK;
}

const char *p11s_secret_data(const p11s_secret *s)
{
	return s->data;
}

size_t p11s_secret_len(const p11s_secret *s)
{
	return s->len;
}

void p11s_secret_wipe(p11s_secret *s)
{
	if (s == NULL) {
		return;
	}
	OPENSSL_cleanse(s->data, sizeof(s->data));
	s->len = 0;
}

void p11s_secret_free(p11s_secret *s)
{
	size_t map_len;

	if (s == NULL) {
		return;
	}
	p11s_secret_wipe(s);
	map_len = s->map_len;
	(void)munlock(s, map_len);
	(void)munmap(s, map_len);
}

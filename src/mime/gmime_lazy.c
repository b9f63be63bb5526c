/*
 * GMime loaded on first use (gmime_lazy.h). dlopen() of libgmime brings GLib and GObject in
 * as its dependencies; RTLD_LOCAL: nothing of it is visible to other modules (a PKCS#11
 * module linked against another GLib, say).
 */
#define P11S_GMIME_LAZY_IMPL
#include <pthread.h>

#include "core/error_int.h"
#include "core/lazy.h"
#include "mime/gmime_lazy.h"

/* Not file-local (gmime_lazy.h is included by several modules): p11s_gm_NAME. */
#define X(name) __typeof__(name) *p11s_gm_##name;
#include "mime/gmime_syms.h"
#undef X

static const p11s_lazy_sym syms[] = {
#define X(name) { #name, (void **)&p11s_gm_##name },
#include "mime/gmime_syms.h"
#undef X
};
static const char *const sonames[] = { "libgmime-3.0.so.0", NULL };
static p11s_lazy_lib lib = P11S_LAZY_LIB("GMime", sonames, syms);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
	/* Counted by GMime: harmless when the application initialised it too. */
	p11s_gm_g_mime_init();
}

int p11s_mime__gmime(void)
{
	int rc = p11s_core__lazy(&lib, P11S_ERR_GENERIC);

	if (rc == P11S_OK) {
		pthread_once(&once, init);
	}
	return rc;
}

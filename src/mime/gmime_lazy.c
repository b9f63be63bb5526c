/*
 * GMime loaded on first use (gmime_lazy.h). dlopen() of libgmime brings GLib and GObject in
 * as its dependencies; dlsym() on its handle finds their functions too. RTLD_LOCAL: nothing
 * of it is visible to other modules (a PKCS#11 module linked against another GLib, say).
 */
#define P11S_GMIME_LAZY_IMPL
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "core/error_int.h"
#include "mime/gmime_lazy.h"

#define X(name) __typeof__(name) *p11s_gm_##name;
#include "mime/gmime_syms.h"
#undef X

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char failure[256]; /* empty: loaded */

static void load(void)
{
	void *h = dlopen("libgmime-3.0.so.0", RTLD_NOW | RTLD_LOCAL);

	if (h == NULL) {
		snprintf(failure, sizeof(failure), "cannot load GMime (libgmime-3.0.so.0): %s",
		    dlerror());
		return;
	}
#define X(name) \
	if ((*(void **)&p11s_gm_##name = dlsym(h, #name)) == NULL) { \
		snprintf(failure, sizeof(failure), "GMime has no %s", #name); \
		return; \
	}
#include "mime/gmime_syms.h"
#undef X
	/* Counted by GMime: harmless when the application initialised it too. */
	p11s_gm_g_mime_init();
}

int p11s_mime__gmime(void)
{
	pthread_once(&once, load);
	if (failure[0] != '\0') {
		return p11s_error__set(P11S_ERR_GENERIC, "%s", failure);
	}
	return P11S_OK;
}

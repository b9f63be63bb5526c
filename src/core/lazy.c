/* Loading a library on first use (lazy.h). */
#include <dlfcn.h>
#include <stdio.h>

#include "core/error_int.h"
#include "core/lazy.h"

static void load(p11s_lazy_lib *lib)
{
	void *h = NULL;

	for (const char *const *s = lib->sonames; h == NULL && *s != NULL; s++) {
		h = dlopen(*s, RTLD_NOW | RTLD_LOCAL);
	}
	if (h == NULL) {
		snprintf(lib->failure, sizeof(lib->failure), "cannot load %s (%s): %s", lib->what,
		    lib->sonames[0], dlerror());
		return;
	}
	/* dlsym() on the handle also searches the library's own dependencies (GLib for GMime). */
	for (size_t i = 0; i < lib->n; i++) {
		if ((*lib->syms[i].ptr = dlsym(h, lib->syms[i].name)) == NULL) {
			snprintf(lib->failure, sizeof(lib->failure), "%s has no %s", lib->what,
			    lib->syms[i].name);
			return;
		}
	}
}

int p11s_core__lazy(p11s_lazy_lib *lib, int code)
{
	pthread_mutex_lock(&lib->mu);
	if (!lib->tried) {
		load(lib);
		lib->tried = 1;
	}
	pthread_mutex_unlock(&lib->mu);
	return lib->failure[0] == '\0' ? P11S_OK : p11s_error__set(code, "%s", lib->failure);
}

/*
 * Shared libraries loaded on first use instead of linked (docs/performance.md, "Cold start").
 * A module lists the functions it calls in an X-macro, declares a pointer for each
 * (P11S_LAZY_PTR), #defines each name as a call through its pointer, and calls
 * p11s_core__lazy() at its entry points before any of them. Internal to the library.
 */
#ifndef P11S_CORE_LAZY_H
#define P11S_CORE_LAZY_H

#include <pthread.h>
#include <stddef.h>

/* One function to resolve: its name and where its address goes. */
typedef struct p11s_lazy_sym {
	const char *name;
	void **ptr;
} p11s_lazy_sym;

/* A library to load: the sonames to try, in order, and its functions. */
typedef struct p11s_lazy_lib {
	const char *what;           /* for messages: "GMime" */
	const char *const *sonames; /* NULL-terminated */
	const p11s_lazy_sym *syms;
	size_t n;
	pthread_mutex_t mu;
	int tried;
	char failure[256];          /* why loading failed; empty: loaded */
} p11s_lazy_lib;

#define P11S_LAZY_LIB(what, sonames, syms) \
	{ what, sonames, syms, sizeof(syms) / sizeof((syms)[0]), PTHREAD_MUTEX_INITIALIZER, 0, "" }
/* For X-macro lists: a file-local pointer `lz_NAME` of NAME's type, and its table entry. */
#define P11S_LAZY_PTR(name) static __typeof__(name) *lz_##name;
#define P11S_LAZY_SYM(name) { #name, (void **)&lz_##name },

/*
 * Load `lib` once (thread-safe): dlopen(RTLD_NOW | RTLD_LOCAL) of the first soname that
 * opens, then every symbol. @return P11S_OK, or `code` with the reason set as the error.
 */
int p11s_core__lazy(p11s_lazy_lib *lib, int code);

#endif

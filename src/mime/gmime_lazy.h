/*
 * GMime on demand (docs/performance.md, "Cold start"): libp11smime does not link GMime, GLib
 * and GObject (with gpgme, libassuan, libmount, libselinux, ...: 14 of the 29 libraries a
 * command used to load at start); they are loaded with dlopen() the first time a message
 * needs a MIME parse or re-encoding. Include this after <gmime/gmime.h>: every GMime call
 * below it goes through a pointer that p11s_mime__gmime() fills. Internal to the library.
 */
#ifndef P11S_MIME_GMIME_LAZY_H
#define P11S_MIME_GMIME_LAZY_H

#include <gmime/gmime.h>

/*
 * Load GMime (once) and call g_mime_init(). Every entry point of a module that uses GMime
 * calls this first. @return P11S_OK, or P11S_ERR_GENERIC (error set: the library is missing).
 */
int p11s_mime__gmime(void);

#define X(name) extern __typeof__(name) *p11s_gm_##name;
#include "mime/gmime_syms.h"
#undef X

#ifndef P11S_GMIME_LAZY_IMPL
/* Each name becomes a call through its pointer. */
#include "mime/gmime_defs.h"
#endif

#endif

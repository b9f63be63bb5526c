/* The certificate store's internals (src/store/), shared by its files. */
#ifndef P11S_STORE_INT_H
#define P11S_STORE_INT_H

#include <sqlite3.h>

/*
 * SQLite is loaded when a store is opened, not linked (core/lazy.h, docs/performance.md
 * "Cold start"): every sqlite3_ call of src/store/ goes through a pointer p11s_sq_NAME that
 * p11s_store_open() fills first.
 */
#define X(name) extern __typeof__(name) *p11s_sq_##name;
#include "store/sqlite_syms.h"
#undef X
#define sqlite3_bind_blob (*p11s_sq_sqlite3_bind_blob)
#define sqlite3_bind_int (*p11s_sq_sqlite3_bind_int)
#define sqlite3_bind_int64 (*p11s_sq_sqlite3_bind_int64)
#define sqlite3_bind_null (*p11s_sq_sqlite3_bind_null)
#define sqlite3_bind_text (*p11s_sq_sqlite3_bind_text)
#define sqlite3_busy_timeout (*p11s_sq_sqlite3_busy_timeout)
#define sqlite3_changes (*p11s_sq_sqlite3_changes)
#define sqlite3_close (*p11s_sq_sqlite3_close)
#define sqlite3_column_blob (*p11s_sq_sqlite3_column_blob)
#define sqlite3_column_bytes (*p11s_sq_sqlite3_column_bytes)
#define sqlite3_column_int (*p11s_sq_sqlite3_column_int)
#define sqlite3_column_int64 (*p11s_sq_sqlite3_column_int64)
#define sqlite3_column_text (*p11s_sq_sqlite3_column_text)
#define sqlite3_errmsg (*p11s_sq_sqlite3_errmsg)
#define sqlite3_exec (*p11s_sq_sqlite3_exec)
#define sqlite3_finalize (*p11s_sq_sqlite3_finalize)
#define sqlite3_open_v2 (*p11s_sq_sqlite3_open_v2)
#define sqlite3_prepare_v2 (*p11s_sq_sqlite3_prepare_v2)
#define sqlite3_reset (*p11s_sq_sqlite3_reset)
#define sqlite3_step (*p11s_sq_sqlite3_step)

#include <p11smime/store.h>

struct p11s_store {
	sqlite3 *db;
	char *path;
};

/* P11S_ERR_IO naming the store, `what` and SQLite's message. */
int p11s_store__db_error(p11s_store *s, const char *what);
/* Run SQL without results. */
int p11s_store__exec(p11s_store *s, const char *sql);
/* SHA-256 of the DER in lower-case hex. */
int p11s_store__fingerprint(X509 *cert, char out[65]);
/* Non-zero if `what` is 64 hex digits (lower-cased into out). */
int p11s_store__is_fingerprint(const char *what, char out[65]);
/* ASCII lower-casing in place. */
void p11s_store__lower(char *s);

/* SMIMECapabilities DER: *gcm 1 if id-aes256-GCM is announced. P11S_ERR_MALFORMED if bad. */
int p11s_store__caps_gcm(const unsigned char *der, size_t len, int *gcm);
/* What `address` (lower-cased) announced: P11S_CAPS_*, preferred fingerprint ("" if none). */
int p11s_store__announced(p11s_store *s, const char *address, int *caps, char pref[65]);

#endif

/* The certificate store's internals (src/store/), shared by its files. */
#ifndef P11S_STORE_INT_H
#define P11S_STORE_INT_H

#include <sqlite3.h>

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

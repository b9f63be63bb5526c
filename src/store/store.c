/*
 * The recipients' certificate store on SQLite (docs/certificates.md "Schema"). One writer at a
 * time and any number of readers across processes: WAL journal (readers never block the
 * writer nor it them) and a busy timeout so a second writer waits instead of failing with
 * SQLITE_BUSY. Writes are single transactions (BEGIN IMMEDIATE: the write lock is taken first,
 * so two writers never deadlock upgrading a read lock).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "core/error_int.h"
#include "core/lazy.h"
#include "store_int.h"
#include "x509/x509_int.h"

/* How long a writer waits for another one (a gateway burst, a batch import). */
#define BUSY_TIMEOUT_MS 10000

/*
 * Migrations: MIGRATIONS[i] takes the schema from user_version i to i + 1. Never edit a
 * released entry; append one. docs/certificates.md documents the resulting schema.
 */
static const char *const MIGRATIONS[] = {
	/* 0 -> 1 */
	"CREATE TABLE certs ("
	" fingerprint TEXT PRIMARY KEY,"   /* SHA-256 of der, lower-case hex */
	" der BLOB NOT NULL,"
	" subject TEXT NOT NULL, issuer TEXT NOT NULL, serial TEXT NOT NULL,"
	" not_before INTEGER NOT NULL, not_after INTEGER NOT NULL,"
	" source TEXT NOT NULL CHECK (source IN ('imported', 'harvested', 'ldap')),"
	" added INTEGER NOT NULL,"
	" expires INTEGER NOT NULL DEFAULT 0);"  /* ldap cache expiry; 0: none */
	"CREATE INDEX certs_subject ON certs(subject);"
	"CREATE TABLE addresses ("
	" address TEXT NOT NULL,"           /* lower-cased addr-spec */
	" fingerprint TEXT NOT NULL REFERENCES certs(fingerprint) ON DELETE CASCADE,"
	" PRIMARY KEY (address, fingerprint)) WITHOUT ROWID;"
	"CREATE INDEX addresses_fingerprint ON addresses(fingerprint);"
	"CREATE TABLE announcements ("
	" address TEXT PRIMARY KEY,"
	" signing_time INTEGER NOT NULL,"   /* of the signature that announced */
	" capabilities BLOB,"               /* DER SMIMECapabilities, NULL: none announced */
	" gcm INTEGER NOT NULL,"            /* 1: id-aes256-GCM among them */
	" preferred TEXT,"                  /* fingerprint named by SMIMEEncryptionKeyPreference */
	" recorded INTEGER NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

int p11s_store__db_error(p11s_store *s, const char *what)
{
	return p11s_error__set(P11S_ERR_IO, "certificate store %s: %s: %s", s->path, what,
	    sqlite3_errmsg(s->db));
}

char *p11s_store_default_path(void)
{
	const char *base = getenv("XDG_DATA_HOME"), *home;
	const char *tail = "/p11smime/certs.db";
	char *p;

	/* XDG Base Directory: a relative XDG_DATA_HOME is invalid and must be ignored. */
	if (base != NULL && base[0] == '/') {
		if ((p = malloc(strlen(base) + strlen(tail) + 1)) != NULL) {
			strcpy(p, base);
			strcat(p, tail);
		}
	} else {
		home = getenv("HOME");
		if (home == NULL || home[0] != '/') {
			p11s_error__set(P11S_ERR_IO, "no certificate store: neither XDG_DATA_HOME nor "
			                             "HOME is set");
			return NULL;
		}
		if ((p = malloc(strlen(home) + strlen("/.local/share") + strlen(tail) + 1)) != NULL) {
			strcpy(p, home);
			strcat(p, "/.local/share");
			strcat(p, tail);
		}
	}
	if (p == NULL) {
		p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	return p;
}

/* mkdir -p of the directories above `path`, mode 0700 (they hold a user's correspondents). */
static int make_parents(const char *path)
{
	char *d = strdup(path), *q;
	int rc = P11S_OK;

	if (d == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (q = d + 1; (q = strchr(q, '/')) != NULL; q++) {
		*q = '\0';
		if (mkdir(d, 0700) != 0 && errno != EEXIST) {
			rc = p11s_error__set(P11S_ERR_IO, "cannot create %s: %s", d, strerror(errno));
			break;
		}
		*q = '/';
	}
	free(d);
	return rc;
}

int p11s_store__exec(p11s_store *s, const char *sql)
{
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		return p11s_store__db_error(s, sql);
	}
	return P11S_OK;
}

static int user_version(p11s_store *s, int *v)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
		return p11s_store__db_error(s, "reading the schema version");
	}
	rc = sqlite3_step(st);
	*v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? P11S_OK : p11s_store__db_error(s, "reading the schema version");
}

/* Bring the schema to SCHEMA_VERSION under the write lock (two processes may race here). */
static int migrate(p11s_store *s)
{
	char sql[64];
	int v, rc;

	if ((rc = user_version(s, &v)) < 0) {
		return rc;
	}
	if (v == SCHEMA_VERSION) {
		return P11S_OK;
	}
	if ((rc = p11s_store__exec(s, "BEGIN IMMEDIATE")) < 0) {
		return rc;
	}
	if ((rc = user_version(s, &v)) < 0) {
		goto fail;
	}
	if (v > SCHEMA_VERSION) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "certificate store %s has schema version %d; "
		    "this p11smime knows up to %d", s->path, v, SCHEMA_VERSION);
		goto fail;
	}
	for (; v < SCHEMA_VERSION; v++) {
		if ((rc = p11s_store__exec(s, MIGRATIONS[v])) < 0) {
			goto fail;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if ((rc = p11s_store__exec(s, sql)) < 0 || (rc = p11s_store__exec(s, "COMMIT")) < 0) {
		goto fail;
	}
	return P11S_OK;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

#define X(name) __typeof__(name) *p11s_sq_##name;
#include "store/sqlite_syms.h"
#undef X
static const p11s_lazy_sym sqlite_syms[] = {
#define X(name) { #name, (void **)&p11s_sq_##name },
#include "store/sqlite_syms.h"
#undef X
};
static const char *const sqlite_sonames[] = { "libsqlite3.so.0", NULL };
static p11s_lazy_lib sqlite_lib = P11S_LAZY_LIB("SQLite", sqlite_sonames, sqlite_syms);

int p11s_store_open(p11s_store **out, const char *path)
{
	p11s_store *s;
	int rc;

	*out = NULL;
	if ((rc = p11s_core__lazy(&sqlite_lib, P11S_ERR_IO)) < 0) {
		return rc;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	s->path = path != NULL ? strdup(path) : p11s_store_default_path();
	if (s->path == NULL) {
		free(s);
		return path != NULL ? p11s_error__set(P11S_ERR_NOMEM, "out of memory") : P11S_ERR_IO;
	}
	if ((rc = make_parents(s->path)) < 0) {
		goto fail;
	}
	if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot open certificate store %s: %s", s->path,
		    s->db != NULL ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	(void)chmod(s->path, 0600);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* A file that is not a database fails here ("file is not a database"). */
	if ((rc = p11s_store__exec(s, "PRAGMA journal_mode = WAL")) < 0) {
		rc = p11s_error__set(P11S_ERR_MALFORMED, "%s is not a certificate store: %s", s->path,
		    sqlite3_errmsg(s->db));
		goto fail;
	}
	if ((rc = p11s_store__exec(s, "PRAGMA foreign_keys = ON")) < 0 ||
	    (rc = p11s_store__exec(s, "PRAGMA synchronous = NORMAL")) < 0 ||
	    (rc = migrate(s)) < 0) {
		goto fail;
	}
	*out = s;
	return P11S_OK;
fail:
	p11s_store_close(s);
	return rc;
}

void p11s_store_close(p11s_store *s)
{
	if (s == NULL) {
		return;
	}
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

void p11s_store__lower(char *s)
{
	for (; *s != '\0'; s++) {
		*s = (char)tolower((unsigned char)*s);
	}
}

int p11s_store__fingerprint(X509 *cert, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (!X509_digest(cert, EVP_sha256(), md, &n) || n != 32) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot hash a certificate");
	}
	for (unsigned int i = 0; i < n; i++) {
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	}
	return P11S_OK;
}

static int64_t asn1_epoch(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
		return 0;
	}
	return (int64_t)timegm(&tm);
}

static const char *const SOURCES[] = { "imported", "harvested", "ldap" };

int p11s_store_add(p11s_store *s, X509 *cert, p11s_store_source source, int64_t expires,
    int *added)
{
	sqlite3_stmt *st = NULL;
	unsigned char *der = NULL;
	char fpr[65], *subject = NULL, *issuer = NULL, *serial = NULL, **emails = NULL;
	size_t n_emails = 0;
	BIGNUM *bn = NULL;
	int len, rc, changed = 0;

	if (added != NULL) {
		*added = 0;
	}
	if ((unsigned)source > P11S_STORE_LDAP) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "unknown certificate source");
	}
	if ((rc = p11s_store__fingerprint(cert, fpr)) < 0) {
		return rc;
	}
	if ((len = i2d_X509(cert, &der)) <= 0) {
		return p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode a certificate");
	}
	subject = p11s_x509__name(X509_get_subject_name(cert));
	issuer = p11s_x509__name(X509_get_issuer_name(cert));
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) != NULL) {
		serial = BN_bn2hex(bn);
	}
	if (subject == NULL || issuer == NULL || serial == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = p11s_x509__emails(cert, &emails, &n_emails)) < 0) {
		goto out;
	}
	if ((rc = p11s_store__exec(s, "BEGIN IMMEDIATE")) < 0) {
		goto out;
	}
	rc = P11S_ERR_IO;
	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO certs (fingerprint, der, subject, "
	        "issuer, serial, not_before, not_after, source, added, expires) "
	        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK) {
		goto db;
	}
	sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, der, len, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, issuer, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, serial, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, asn1_epoch(X509_get0_notBefore(cert)));
	sqlite3_bind_int64(st, 7, asn1_epoch(X509_get0_notAfter(cert)));
	sqlite3_bind_text(st, 8, SOURCES[source], -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, (int64_t)time(NULL));
	sqlite3_bind_int64(st, 10, source == P11S_STORE_LDAP ? expires : 0);
	if (sqlite3_step(st) != SQLITE_DONE) {
		goto db;
	}
	changed = sqlite3_changes(s->db);
	sqlite3_finalize(st);
	st = NULL;
	if (!changed) {
		/*
		 * Already there. A cached directory entry becomes permanent when the user imports it
		 * or a signature shows it; a directory lookup refreshes only a cache entry's expiry.
		 */
		if (sqlite3_prepare_v2(s->db, "UPDATE certs SET source = ?, expires = ? "
		        "WHERE fingerprint = ? AND source = 'ldap'", -1, &st, NULL) != SQLITE_OK) {
			goto db;
		}
		sqlite3_bind_text(st, 1, SOURCES[source], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, source == P11S_STORE_LDAP ? expires : 0);
		sqlite3_bind_text(st, 3, fpr, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			goto db;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO addresses (address, fingerprint) "
	        "VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK) {
		goto db;
	}
	for (size_t i = 0; i < n_emails; i++) {
		p11s_store__lower(emails[i]);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, emails[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, fpr, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			goto db;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = p11s_store__exec(s, "COMMIT")) < 0) {
		goto rollback;
	}
	if (added != NULL) {
		*added = changed;
	}
	rc = P11S_OK;
	goto out;
db:
	rc = p11s_store__db_error(s, "adding a certificate");
rollback:
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
	p11s_x509__strv_free(emails, n_emails);
	OPENSSL_free(der);
	OPENSSL_free(serial);
	BN_free(bn);
	free(subject);
	free(issuer);
	return rc;
}

/* 64 hex digits, lower-cased into `out`. */
int p11s_store__is_fingerprint(const char *what, char out[65])
{
	size_t i;

	for (i = 0; what[i] != '\0' && i < 64; i++) {
		if (!isxdigit((unsigned char)what[i])) {
			return 0;
		}
		out[i] = (char)tolower((unsigned char)what[i]);
	}
	out[i] = '\0';
	return i == 64 && what[i] == '\0';
}

int p11s_store_remove(p11s_store *s, const char *fingerprint, int *removed)
{
	sqlite3_stmt *st;
	char fpr[65];
	int ok;

	*removed = 0;
	if (!p11s_store__is_fingerprint(fingerprint, fpr)) {
		return p11s_error__set(P11S_ERR_USAGE, "'%s' is not a SHA-256 fingerprint "
		                                       "(64 hex digits)", fingerprint);
	}
	if (sqlite3_prepare_v2(s->db, "DELETE FROM certs WHERE fingerprint = ?", -1, &st, NULL) !=
	    SQLITE_OK) {
		return p11s_store__db_error(s, "removing a certificate");
	}
	sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	ok = sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok) {
		return p11s_store__db_error(s, "removing a certificate");
	}
	*removed = sqlite3_changes(s->db) > 0;
	return P11S_OK;
}

/* The list owns every string and certificate through these arrays. */
struct p11s_store_list_priv {
	char ***addresses;
};

static char *dup_col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return strdup(t != NULL ? (const char *)t : "");
}

static int fill_addresses(p11s_store *s, p11s_store_entry *e, char ***owned)
{
	sqlite3_stmt *st;
	char **v = NULL;
	size_t n = 0;
	int rc = P11S_OK, step;

	if (sqlite3_prepare_v2(s->db, "SELECT address FROM addresses WHERE fingerprint = ? "
	        "ORDER BY address", -1, &st, NULL) != SQLITE_OK) {
		return p11s_store__db_error(s, "listing addresses");
	}
	sqlite3_bind_text(st, 1, e->fingerprint, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		char **nv = realloc(v, (n + 2) * sizeof(*v));

		if (nv == NULL || (nv[n] = dup_col(st, 0)) == NULL) {
			v = nv != NULL ? nv : v;
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			break;
		}
		v = nv;
		v[++n] = NULL;
	}
	if (rc == P11S_OK && step != SQLITE_DONE) {
		rc = p11s_store__db_error(s, "listing addresses");
	}
	sqlite3_finalize(st);
	if (v == NULL && (v = calloc(1, sizeof(*v))) == NULL && rc == P11S_OK) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	*owned = v;
	e->addresses = (const char *const *)v;
	e->n_addresses = n;
	return rc;
}

int p11s_store_find(p11s_store *s, const char *what, p11s_store_list **out)
{
	static const char cols[] = "SELECT c.fingerprint, c.der, c.subject, c.issuer, c.serial, "
	    "c.not_before, c.not_after, c.source, c.added, c.expires FROM certs c ";
	char sql[512], key[65], *addr = NULL;
	p11s_store_list *l;
	sqlite3_stmt *st = NULL;
	int rc = P11S_OK, step;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->priv = calloc(1, sizeof(*l->priv))) == NULL) {
		free(l);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if (what == NULL) {
		snprintf(sql, sizeof(sql), "%s ORDER BY (SELECT min(address) FROM addresses a "
		    "WHERE a.fingerprint = c.fingerprint), c.not_after DESC", cols);
	} else if (p11s_store__is_fingerprint(what, key)) {
		snprintf(sql, sizeof(sql), "%s WHERE c.fingerprint = ?1", cols);
	} else {
		/* RFC 8550 §3: domain case-insensitively (MUST), local part too (SHOULD). */
		if ((addr = strdup(what)) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		p11s_store__lower(addr);
		snprintf(sql, sizeof(sql), "%s WHERE c.fingerprint IN (SELECT fingerprint FROM "
		    "addresses WHERE address = ?1) ORDER BY c.not_after DESC", cols);
	}
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		rc = p11s_store__db_error(s, "listing certificates");
		goto out;
	}
	if (what != NULL) {
		sqlite3_bind_text(st, 1, addr != NULL ? addr : key, -1, SQLITE_STATIC);
	}
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		p11s_store_entry *nv = realloc(l->v, (l->n + 1) * sizeof(*l->v));
		char ***na = realloc(l->priv->addresses, (l->n + 1) * sizeof(char **));
		const unsigned char *der;
		p11s_store_entry *e;

		if (nv != NULL) {
			l->v = nv;
		}
		if (na != NULL) {
			l->priv->addresses = na;
		}
		if (nv == NULL || na == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		e = &l->v[l->n];
		memset(e, 0, sizeof(*e));
		na[l->n] = NULL;
		l->n++;
		snprintf(e->fingerprint, sizeof(e->fingerprint), "%s",
		    (const char *)sqlite3_column_text(st, 0));
		der = sqlite3_column_blob(st, 1);
		e->cert = d2i_X509(NULL, &der, sqlite3_column_bytes(st, 1));
		e->subject = dup_col(st, 2);
		e->issuer = dup_col(st, 3);
		e->serial = dup_col(st, 4);
		e->not_before = sqlite3_column_int64(st, 5);
		e->not_after = sqlite3_column_int64(st, 6);
		e->source = dup_col(st, 7);
		e->added = sqlite3_column_int64(st, 8);
		e->expires = sqlite3_column_int64(st, 9);
		if (e->cert == NULL || e->subject == NULL || e->issuer == NULL || e->serial == NULL ||
		    e->source == NULL) {
			rc = e->cert == NULL ? p11s_error__ossl(P11S_ERR_MALFORMED, "certificate store "
			    "%s: unreadable certificate %s", s->path, e->fingerprint)
			    : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (step != SQLITE_DONE) {
		rc = p11s_store__db_error(s, "listing certificates");
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < l->n; i++) {
		if ((rc = fill_addresses(s, &l->v[i], &l->priv->addresses[i])) < 0) {
			goto out;
		}
	}
out:
	sqlite3_finalize(st);
	free(addr);
	if (rc < 0) {
		p11s_store_list_free(l);
		return rc;
	}
	*out = l;
	return P11S_OK;
}

void p11s_store_list_free(p11s_store_list *l)
{
	if (l == NULL) {
		return;
	}
	for (size_t i = 0; i < l->n; i++) {
		p11s_store_entry *e = &l->v[i];

		X509_free(e->cert);
		free((char *)e->subject);
		free((char *)e->issuer);
		free((char *)e->serial);
		free((char *)e->source);
		if (l->priv->addresses[i] != NULL) {
			for (size_t k = 0; k < e->n_addresses; k++) {
				free(l->priv->addresses[i][k]);
			}
			free(l->priv->addresses[i]);
		}
	}
	free(l->priv->addresses);
	free(l->priv);
	free(l->v);
	free(l);
}

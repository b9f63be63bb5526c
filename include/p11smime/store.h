/*
 * p11smime — the recipients' certificate store (docs/certificates.md): an SQLite database of
 * correspondents' certificates, indexed by e-mail address (RFC 8550 §3), with the S/MIME
 * capabilities each correspondent announced (RFC 8551 §2.5.2, §2.5.3), and the lookup that turns
 * an address into a certificate fit to encrypt to now.
 */
#ifndef P11SMIME_STORE_H
#define P11SMIME_STORE_H

#include <stdint.h>

#include <openssl/x509.h>

#include "common.h"

/** An open store. One handle is used by one thread at a time; open one per thread. */
typedef struct p11s_store p11s_store;

/**
 * The default path: `$XDG_DATA_HOME/p11smime/certs.db`, or `~/.local/share/p11smime/certs.db`
 * when XDG_DATA_HOME is unset or not absolute (XDG Base Directory Specification).
 * @return a malloc'd path, or NULL (no HOME, no memory; the error is set).
 */
P11S_EXTERN char *p11s_store_default_path(void);

/**
 * Open (creating it and its directory, mode 0700, when missing) the store at `path` (NULL: the
 * default path). The database is put in WAL mode with a busy timeout, so readers and a writer
 * in other processes (the gateway's workers, the user's CLI) wait for each other instead of
 * failing; the schema is created or migrated to the current `user_version`.
 * @return P11S_OK; P11S_ERR_IO (cannot open or create), P11S_ERR_MALFORMED (not a store, or a
 *         newer schema than this library knows), P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_open(p11s_store **out, const char *path);

/** Close; NULL is accepted. */
P11S_EXTERN void p11s_store_close(p11s_store *s);

/** Where a certificate came from. */
typedef enum p11s_store_source {
	P11S_STORE_IMPORTED = 0, /**< `certs import` */
	P11S_STORE_HARVESTED,    /**< a verified signature (`verify --store`) */
	P11S_STORE_LDAP,         /**< a directory lookup: a cache entry with an expiry */
} p11s_store_source;

/**
 * Add a certificate (a no-op apart from the source's expiry when it is there already).
 * `expires`: for P11S_STORE_LDAP, when the cached entry stops being used (seconds since the
 * epoch), else 0. `*added` (may be NULL) is 1 when the row is new.
 * @return P11S_OK; P11S_ERR_IO (database error), P11S_ERR_NOMEM, P11S_ERR_CRYPTO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_add(p11s_store *s, X509 *cert,
    p11s_store_source source, int64_t expires, int *added);

/**
 * What a correspondent announced in a verified signature (RFC 8551 §2.5): `caps_der` the DER
 * SMIMECapabilities attribute value (NULL if absent), `pref_cert` the certificate named by
 * SMIMEEncryptionKeyPreference (NULL if absent or not in the message), `signing_time` the
 * signingTime (seconds since the epoch). Recorded for every address of `signer`; an
 * announcement older than the one recorded is ignored (*updated 0).
 * @return P11S_OK; P11S_ERR_MALFORMED (caps_der does not parse), P11S_ERR_IO, P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_announce(p11s_store *s, X509 *signer,
    const unsigned char *caps_der, size_t caps_len, X509 *pref_cert, int64_t signing_time,
    int *updated);

/** One certificate of the store, as listed. Strings are owned by the list. */
typedef struct p11s_store_entry {
	char fingerprint[65];      /**< SHA-256 of the DER, lower-case hex */
	const char *subject;       /**< RFC 2253 */
	const char *issuer;
	const char *serial;        /**< hex */
	int64_t not_before, not_after;
	const char *source;        /**< "imported", "harvested", "ldap" */
	int64_t added;             /**< when it entered the store */
	int64_t expires;           /**< ldap cache expiry, 0 for none */
	const char *const *addresses; /**< lower-cased addr-specs (SAN rfc822Name, emailAddress) */
	size_t n_addresses;
	X509 *cert;                /**< owned by the list */
} p11s_store_entry;

typedef struct p11s_store_list {
	p11s_store_entry *v;
	size_t n;
	struct p11s_store_list_priv *priv;
} p11s_store_list;

/**
 * Certificates matching `what` (NULL: all): a fingerprint (64 hex digits, case-insensitive), or
 * an e-mail address (compared case-insensitively, RFC 8550 §3). Sorted by address, then newest
 * notAfter first.
 * @return P11S_OK (possibly empty); P11S_ERR_IO, P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_find(p11s_store *s, const char *what,
    p11s_store_list **out);
P11S_EXTERN void p11s_store_list_free(p11s_store_list *l);

/**
 * Remove the certificate with this fingerprint. `*removed` 1 if it was there.
 * @return P11S_OK; P11S_ERR_USAGE (not a fingerprint), P11S_ERR_IO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_remove(p11s_store *s, const char *fingerprint,
    int *removed);

/** Version of p11s_recipient_opts understood by this library. */
#define P11S_RECIPIENT_OPTS_VERSION 1

/** How p11s_store_recipient() validates (the same inputs as verification). */
typedef struct p11s_recipient_opts {
	unsigned int version;            /**< P11S_RECIPIENT_OPTS_VERSION */
	const char *const *trust_files;  /**< trust anchors (PEM or DER) */
	size_t n_trust_files;
	const char *const *cert_files;   /**< untrusted intermediates */
	size_t n_cert_files;
	const char *const *crl_files;    /**< any CRL turns on revocation checking */
	size_t n_crl_files;
} p11s_recipient_opts;

#define P11S_RECIPIENT_OPTS_INIT { P11S_RECIPIENT_OPTS_VERSION, NULL, 0, NULL, 0, NULL, 0 }

/** The content ciphers a recipient announced (RFC 8551 §2.5.2, §2.7). */
enum {
	P11S_CAPS_UNKNOWN = 0,   /**< nothing recorded */
	P11S_CAPS_GCM = 1,       /**< AES-256-GCM (id-aes256-GCM) announced */
	P11S_CAPS_CBC_ONLY = 2,  /**< capabilities recorded without AES-GCM */
};

/**
 * The certificate to encrypt to `address` now: among the store's certificates for it (the
 * LDAP cache's unexpired ones included), those that validate (RFC 5280 path to the anchors of
 * `opts`, revocation when CRLs are given, valid now), allow key transport or agreement (RFC
 * 8550 §4.4.2), emailProtection or no EKU or anyExtendedKeyUsage (§4.4.4) and carry the address
 * in the subjectAltName (or emailAddress, §3). The certificate the correspondent named in
 * SMIMEEncryptionKeyPreference wins; otherwise the latest notAfter.
 * @param cert  receives the certificate (caller frees).
 * @param caps  receives P11S_CAPS_* of the correspondent (may be NULL).
 * @return P11S_OK; P11S_ERR_VERIFY with a one-line message naming the address and the reason
 *         ("no certificate", "expired", "revoked", "untrusted", "not for encryption");
 *         P11S_ERR_IO (database or option file), P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_recipient(p11s_store *s, const char *address,
    const p11s_recipient_opts *opts, X509 **cert, int *caps);

/** Version of p11s_ldap_opts understood by this library. */
#define P11S_LDAP_OPTS_VERSION 1

/** Limits of a directory lookup. */
typedef struct p11s_ldap_opts {
	unsigned int version;   /**< P11S_LDAP_OPTS_VERSION */
	int timeout_ms;         /**< connect and search time limit; default 5000 */
	int size_limit;         /**< at most this many entries; default 16 */
	int cache_seconds;      /**< how long the store keeps the answers; default 86400 */
} p11s_ldap_opts;

#define P11S_LDAP_OPTS_INIT { P11S_LDAP_OPTS_VERSION, 5000, 16, 86400 }

/**
 * Ask an LDAP directory (OpenLDAP libldap, anonymous, LDAPv3) for `address`: `url` is
 * `ldap://host[:port]/BASE-DN` (or ldaps://), the filter `(mail=ADDRESS)`
 * with the address escaped (RFC 4515 §3), attributes userCertificate;binary (RFC 4523) and
 * userSMIMECertificate (RFC 2798: a PKCS#7 SignedData holding certificates). The certificates
 * that carry the address are cached in the store (source "ldap") until now + cache_seconds;
 * p11s_store_recipient() then validates them like any other.
 * @param n_found  certificates cached (may be NULL).
 * @return P11S_OK (possibly none found); P11S_ERR_USAGE (bad URL or address), P11S_ERR_IO
 *         (the directory is unreachable, timed out or refused the search; the message names
 *         it), P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_store_ldap_fetch(p11s_store *s, const char *url,
    const char *address, const p11s_ldap_opts *opts, size_t *n_found);

#endif

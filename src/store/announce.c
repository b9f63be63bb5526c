/*
 * What correspondents announce in their signatures (RFC 8551 §2.5.2 SMIMECapabilities, §2.5.3
 * SMIMEEncryptionKeyPreference), kept per address so that encryption can follow it (§2.7).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "core/error_int.h"
#include "store_int.h"
#include "x509/x509_int.h"

/*
 * SMIMECapabilities ::= SEQUENCE OF SMIMECapability; SMIMECapability ::= SEQUENCE {
 * capabilityID OBJECT IDENTIFIER, parameters ANY DEFINED BY capabilityID OPTIONAL } (RFC 8551
 * §2.5.2): the same DER as a SEQUENCE OF AlgorithmIdentifier, so OpenSSL's X509_ALGORS decoder
 * reads it (no parser of ours). Returns 1 if id-aes256-GCM (RFC 5084 §3.2) is among them.
 */
int p11s_store__caps_gcm(const unsigned char *der, size_t len, int *gcm)
{
	const unsigned char *p = der;
	X509_ALGORS *algs = NULL;

	*gcm = 0;
	if (len > LONG_MAX || (algs = d2i_X509_ALGORS(NULL, &p, (long)len)) == NULL ||
	    p != der + len) {
		if (algs != NULL) {
			sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
		}
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_MALFORMED, "unreadable SMIMECapabilities");
	}
	for (int i = 0; i < sk_X509_ALGOR_num(algs); i++) {
		const ASN1_OBJECT *oid;

		X509_ALGOR_get0(&oid, NULL, NULL, sk_X509_ALGOR_value(algs, i));
		if (OBJ_obj2nid(oid) == NID_aes_256_gcm) {
			*gcm = 1;
		}
	}
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
	return P11S_OK;
}

int p11s_store_announce(p11s_store *s, X509 *signer, const unsigned char *caps_der,
    size_t caps_len, X509 *pref_cert, int64_t signing_time, int *updated)
{
	sqlite3_stmt *st = NULL;
	char **emails = NULL, pref[65];
	size_t n_emails = 0;
	int gcm = 0, rc, n = 0;

	if (updated != NULL) {
		*updated = 0;
	}
	if (caps_der != NULL && (rc = p11s_store__caps_gcm(caps_der, caps_len, &gcm)) < 0) {
		return rc;
	}
	if (pref_cert != NULL && (rc = p11s_store__fingerprint(pref_cert, pref)) < 0) {
		return rc;
	}
	if ((rc = p11s_x509__emails(signer, &emails, &n_emails)) < 0) {
		return rc;
	}
	if ((rc = p11s_store__exec(s, "BEGIN IMMEDIATE")) < 0) {
		goto out;
	}
	/*
	 * A newer signature replaces what an older one announced; an older one (a message read
	 * late) never overwrites a newer (RFC 8551 §2.5.2: the most recent announcement counts).
	 */
	if (sqlite3_prepare_v2(s->db, "INSERT INTO announcements (address, signing_time, "
	        "capabilities, gcm, preferred, recorded) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
	        "ON CONFLICT(address) DO UPDATE SET signing_time = ?2, capabilities = ?3, gcm = ?4, "
	        "preferred = ?5, recorded = ?6 WHERE signing_time <= ?2", -1, &st, NULL) !=
	    SQLITE_OK) {
		goto db;
	}
	for (size_t i = 0; i < n_emails; i++) {
		p11s_store__lower(emails[i]);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, emails[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, signing_time);
		if (caps_der != NULL) {
			sqlite3_bind_blob(st, 3, caps_der, (int)caps_len, SQLITE_STATIC);
		} else {
			sqlite3_bind_null(st, 3);
		}
		sqlite3_bind_int(st, 4, gcm);
		if (pref_cert != NULL) {
			sqlite3_bind_text(st, 5, pref, -1, SQLITE_STATIC);
		} else {
			sqlite3_bind_null(st, 5);
		}
		sqlite3_bind_int64(st, 6, (int64_t)time(NULL));
		if (sqlite3_step(st) != SQLITE_DONE) {
			goto db;
		}
		n += sqlite3_changes(s->db);
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = p11s_store__exec(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		goto out;
	}
	if (updated != NULL) {
		*updated = n > 0;
	}
	goto out;
db:
	rc = p11s_store__db_error(s, "recording capabilities");
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
	p11s_x509__strv_free(emails, n_emails);
	return rc;
}

/* What was recorded for `address` (lower-cased): P11S_CAPS_*, and the preferred fingerprint. */
int p11s_store__announced(p11s_store *s, const char *address, int *caps, char pref[65])
{
	sqlite3_stmt *st;
	int step;

	*caps = P11S_CAPS_UNKNOWN;
	pref[0] = '\0';
	if (sqlite3_prepare_v2(s->db, "SELECT capabilities IS NOT NULL, gcm, preferred FROM "
	        "announcements WHERE address = ?", -1, &st, NULL) != SQLITE_OK) {
		return p11s_store__db_error(s, "reading capabilities");
	}
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	if ((step = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int(st, 0)) {
			*caps = sqlite3_column_int(st, 1) ? P11S_CAPS_GCM : P11S_CAPS_CBC_ONLY;
		}
		if (sqlite3_column_text(st, 2) != NULL) {
			snprintf(pref, 65, "%s", (const char *)sqlite3_column_text(st, 2));
		}
	}
	sqlite3_finalize(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		return p11s_store__db_error(s, "reading capabilities");
	}
	return P11S_OK;
}

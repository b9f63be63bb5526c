/*
 * p11smime — what a verified signer announced (RFC 8551 §2.5), for harvesting its certificate
 * into the store (docs/certificates.md "Harvesting").
 */
#ifndef P11SMIME_HARVEST_H
#define P11SMIME_HARVEST_H

#include <stdint.h>

#include <openssl/x509.h>

#include "common.h"
#include "store.h"
#include "verify.h"

/** One signer's certificates and announcements; members owned by the struct. */
typedef struct p11s_verify_announcement {
	X509 *cert;                 /**< the signer's certificate (from the message), or NULL */
	STACK_OF(X509) *chain;      /**< the message's CA certificates (its chain) */
	unsigned char *caps;        /**< DER SMIMECapabilities (§2.5.2), or NULL */
	size_t caps_len;
	X509 *pref;                 /**< the certificate SMIMEEncryptionKeyPreference (§2.5.3)
	                                 names by issuerAndSerialNumber, if in the message */
	int has_signing_time;
	int64_t signing_time;       /**< signingTime, seconds since the epoch */
} p11s_verify_announcement;

/**
 * The certificates and announcements of signer `i` of a result of p11s_verify_message().
 * Callers harvest only from a result whose `valid` is set.
 * @return P11S_OK; P11S_ERR_INVALID_ARG (no such signer), P11S_ERR_NOMEM.
 *         Free with p11s_verify_announcement_clear().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_signer_announcement(const p11s_verify_result *r,
    size_t i, p11s_verify_announcement *out);
P11S_EXTERN void p11s_verify_announcement_clear(p11s_verify_announcement *a);

/**
 * Harvest a VALID result (docs/certificates.md "Harvesting"): each signer's certificate and the
 * message's CA certificates (source harvested), and per signer address the announcements with
 * the signing time (p11s_store_announce(): an older signature never overwrites a newer). A
 * signature without signingTime counts as signed at the epoch.
 * @param n  signers recorded (may be NULL).
 * @return P11S_OK; P11S_ERR_USAGE (the result is not valid: nothing recorded), P11S_ERR_IO,
 *         P11S_ERR_NOMEM, P11S_ERR_MALFORMED (unreadable SMIMECapabilities).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_verify_harvest(const p11s_verify_result *r, p11s_store *s,
    size_t *n);

#endif

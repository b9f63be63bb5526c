/*
 * Certificate path validation (RFC 5280) and the S/MIME certificate checks of RFC 8550.
 * Internal to the library. Validation has its own options and result types and knows nothing of
 * CMS: the verifiers above (src/cms/, src/ess/) map them to and from the public verify API
 * through src/verdict/ (docs/architecture.md).
 */
#ifndef P11S_X509_INT_H
#define P11S_X509_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/*
 * One reason why something is not valid (or one warning): `code` a stable token (a string
 * literal: "untrusted", "expired", ...), `message` a human-readable line owned by its list.
 */
typedef struct p11s_x509_reason {
	const char *code;
	const char *message;
} p11s_x509_reason;

/* A growing list of reasons (or warnings); strings are owned by the list. */
typedef struct p11s_reasons {
	p11s_x509_reason *v;
	size_t n, cap;
} p11s_reasons;

/* Append a reason. `code` must be a string literal (stable reason code). */
int p11s_reasons__add(p11s_reasons *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Non-zero if the list holds `code`. */
int p11s_reasons__has(const p11s_reasons *r, const char *code);
void p11s_reasons__clear(p11s_reasons *r);

/* Trust anchors, extra untrusted certificates and CRLs, loaded from the option files. */
typedef struct p11s_x509_store {
	X509_STORE *store;       /* anchors and CRLs */
	STACK_OF(X509) *certs;   /* --certs: untrusted */
	STACK_OF(X509_CRL) *crls; /* --crl: also handed to each validation (indirect CRLs) */
	int crl_check;           /* any --crl given: check every certificate of the path */
	int has_time;
	int64_t time;
	size_t n_anchors;
	const struct p11s_x509_rev_policy *rev; /* explicit revocation policy, or NULL */
} p11s_x509_store;

/*
 * An explicit revocation policy (the public p11s_revocation_opts, revocation.h): with it,
 * validation fetches what it may and decides every covered certificate's status, or fails
 * with "revocation-unknown" (revocation.c). Strings and arrays are borrowed.
 */
typedef struct p11s_x509_rev_policy {
	unsigned int methods;    /* P11S_REV_CRL | P11S_REV_OCSP; 0: none */
	int fetch, soft_fail, ocsp_whole_path;
	const char *ocsp_url;
	const char *const *allow, *const *deny;
	size_t n_allow, n_deny;
	long timeout_s;
} p11s_x509_rev_policy;

/* What validation starts from: files of anchors, untrusted certificates and CRLs; the time. */
typedef struct p11s_x509_opts {
	const char *const *trust_files;  /* trust anchors: PEM or DER, several per file */
	size_t n_trust_files;
	const char *const *cert_files;   /* untrusted intermediates */
	size_t n_cert_files;
	const char *const *crl_files;    /* any CRL turns on checking of every certificate */
	size_t n_crl_files;
	int has_time;                    /* non-zero: validate at `time`, else now */
	int64_t time;                    /* seconds since the epoch (UTC) */
} p11s_x509_opts;

/* Load every file of `opts`. P11S_ERR_IO / P11S_ERR_MALFORMED name the file. */
int p11s_x509__store_new(p11s_x509_store **out, const p11s_x509_opts *opts);
void p11s_x509__store_free(p11s_x509_store *s);

/* Certificates (or CRLs) from a PEM file (several blocks) or DER (one or several concatenated). */
int p11s_x509__load_certs(STACK_OF(X509) *out, const char *path);
int p11s_x509__load_crls(STACK_OF(X509_CRL) *out, const char *path);

/*
 * RFC 5280 path validation of `leaf` with the default inputs (initial policy set anyPolicy,
 * no explicit policy required, mapping and anyPolicy allowed), CRLs of every certificate when
 * the store has them. Every error is recorded in `reasons` (validation continues past each);
 * `msg_crls` (may be NULL): CRLs carried in the SignedData (RFC 5652 §5.1), used like --crl.
 * `*chain` receives the path as far as it was built (caller frees with sk_X509_pop_free).
 * @return P11S_OK (look at reasons), P11S_ERR_NOMEM or P11S_ERR_CRYPTO.
 */
int p11s_x509__validate(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    STACK_OF(X509_CRL) *msg_crls, p11s_reasons *reasons, STACK_OF(X509) **chain);

/*
 * The revocation status used for one certificate of a path (RFC 5280 §6.3): `status` "good"
 * (a CRL covering it does not list it), "revoked", "unknown" (checked, failed: `problem` is the
 * reason code) or "not-checked" (no CRL given, or the trust anchor); the CRL that decided it.
 * Strings other than `status` and `problem` (literals) are owned by the entry.
 */
typedef struct p11s_x509_revocation {
	char *subject;
	const char *status;
	const char *problem;
	char *crl_issuer;        /* RFC 2253 */
	char *crl_this_update;   /* RFC 3339 UTC */
	char *crl_next_update;   /* NULL if absent */
	char *crl_number;        /* cRLNumber in hex, or NULL */
	/* Live revocation (revocation.c): what decided, and the OCSP response used. */
	const char *source;      /* "file-crl", "message-crl", "fetched-crl", "ocsp",
	                            "stapled-ocsp" or NULL */
	char *ocsp_responder, *ocsp_produced_at, *ocsp_this_update, *ocsp_next_update;
	char *revocation_time;
	int soft_failed;         /* "unknown" accepted by the policy's soft_fail */
} p11s_x509_revocation;

/*
 * The same, also reporting the revocation status used for each certificate of the built path
 * (`*rev`, `*n_rev`: one entry per chain element, freed with p11s_x509__revocation_free()).
 */
int p11s_x509__validate_rev(const p11s_x509_store *s, X509 *leaf, STACK_OF(X509) *untrusted,
    STACK_OF(X509_CRL) *msg_crls, p11s_reasons *reasons, STACK_OF(X509) **chain,
    p11s_x509_revocation **rev, size_t *n_rev);

/* OCSP responses stapled in the message (RFC 5940), DER; owned. */
typedef struct p11s_x509_stapled {
	unsigned char **der;
	size_t *len;
	size_t n;
} p11s_x509_stapled;

void p11s_x509__stapled_clear(p11s_x509_stapled *st);

/*
 * p11s_x509__validate_rev() at `proven` (seconds since the epoch), a time that a verified
 * RFC 3161 time-stamp proved, instead of the store's time or now; -1: as validate_rev. At a
 * proven time, a CRL issued after it (not in the future) decides, and a revocation dated
 * after it is not one (CAdES-T, RFC 5126 §5.11.1; docs/verify.md "Validation time").
 * `stapled` (may be NULL): OCSP responses from the message; with an explicit revocation
 * policy that asks OCSP, one that answers for a certificate is used before any responder.
 */
int p11s_x509__validate_at(const p11s_x509_store *s, int64_t proven, X509 *leaf,
    STACK_OF(X509) *untrusted, STACK_OF(X509_CRL) *msg_crls,
    const p11s_x509_stapled *stapled, p11s_reasons *reasons, STACK_OF(X509) **chain,
    p11s_x509_revocation **rev, size_t *n_rev);
void p11s_x509__revocation_free(p11s_x509_revocation *rev, size_t n);

/*
 * DSA parameter inheritance (RFC 5280 §6.1.4 (f), dsa_params.c): a DSA key in `certs` without
 * domain parameters gets those of its issuer among `certs` and the anchors of `s`, in memory
 * (the received encoding stays what is signed and hashed). P11S_OK or P11S_ERR_NOMEM.
 */
int p11s_x509__dsa_inherit(STACK_OF(X509) *certs, const p11s_x509_store *s);
/* Non-zero when every inherited parameter set in `chain` is that of the next certificate. */
int p11s_x509__dsa_path_ok(STACK_OF(X509) *chain);

/* Stable reason code of an X509_V_ERR_* value. */
const char *p11s_x509__reason_code(int err);

/*
 * RFC 8550 §4.4.2 / §4.4.4 on a signer certificate: keyUsage (if present) has
 * digitalSignature or nonRepudiation; extKeyUsage (if present) has emailProtection or
 * anyExtendedKeyUsage. Failures are added to `reasons`.
 */
int p11s_x509__check_signer_usage(X509 *cert, p11s_reasons *reasons);

/* E-mail addresses of a certificate: SAN rfc822Name, then pkcs-9 emailAddress (RFC 8550 §3). */
int p11s_x509__emails(X509 *cert, char ***out, size_t *n);
void p11s_x509__strv_free(char **v, size_t n);

/*
 * addr-spec equality for RFC 8550 §3: domain case-insensitive (MUST), local part
 * case-insensitive (SHOULD). Returns 1 if equal.
 */
int p11s_x509__addr_equal(const char *a, const char *b);

/* The sender as the message states it (filled by the MIME layer). */
typedef struct p11s_x509_sender {
	size_t n_from_fields;    /* number of From header fields */
	char **from;             /* addr-specs of the (first) From field's mailboxes */
	size_t n_from;
	int from_has_group;      /* the From field held a group or could not be parsed */
	size_t n_sender_fields;
	char *sender;            /* addr-spec of Sender, if exactly one mailbox */
} p11s_x509_sender;

/*
 * RFC 8550 §3: when `cert` carries addresses, the From (or Sender) addr-spec must be one of
 * them; a missing, repeated or multi-mailbox From is then a failure. A certificate without
 * addresses is not a mismatch. Failures are added to `reasons` as "address-mismatch".
 */
int p11s_x509__check_sender(X509 *cert, const p11s_x509_sender *who, p11s_reasons *reasons);

/* RFC 2253 text of a name (malloc'd, "" on failure, NULL on no memory). */
char *p11s_x509__name(const X509_NAME *name);
/* RFC 3339 UTC text of an ASN1_TIME (malloc'd), NULL if it cannot be read. */
char *p11s_x509__time(const ASN1_TIME *t);

#endif

/*
 * p11smime-gateway: a milter (Sendmail/Postfix Mail Filter API) that decrypts inbound S/MIME
 * mail with keys on a PKCS#11 token, verifies signatures into an Authentication-Results header
 * (RFC 8601, method smime of RFC 7281), and signs outbound mail of configured senders
 * (DESIGN.md decisions 9-10). Internal declarations; the gateway uses the public API only.
 */
#ifndef P11S_GATEWAY_GATEWAY_H
#define P11S_GATEWAY_GATEWAY_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <p11smime/p11smime.h>

/* ---- configuration (config.c) ----------------------------------------------------------- */

typedef struct gw_signer {
	char *addr;  /* lower-cased addr-spec */
	char *uri;   /* pkcs11: URI of the signing key */
} gw_signer;

typedef struct gw_cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int bits;
} gw_cidr;

typedef struct gw_config {
	char *path;
	/* [milter] */
	char *socket;
	int workers;
	uint64_t max_size;
	char *spool;
	int log_stderr;          /* log = stderr (else syslog) */
	int drain_timeout;       /* seconds SIGTERM waits for connections in flight */
	/* [token] */
	char *module;            /* the first `module` */
	char **modules;          /* every `module` (the key may repeat: one context per module) */
	size_t nmodules;
	char *token_uri;
	char *pin_source;
	char *backend;
	int sessions;            /* contexts (logged-in session sets) in the pool */
	int retry;               /* seconds between attempts to reopen an unavailable token */
	/* [inbound] */
	int decrypt;
	int verify;
	int harvest;             /* [inbound] harvest: valid signers into [outbound] store */
	char **trust;
	size_t ntrust;
	char **crl;
	size_t ncrl;
	int reject_undecryptable;
	char *authserv_id;
	int allow_weak;            /* weak algorithms are warnings, not "fail" (docs/verify.md) */
	int require_authenticated; /* EnvelopedData (CBC) is not decrypted (docs/envelope.md) */
	long long date_tolerance;  /* [inbound] date-tolerance: seconds, -1 off, 0 the default
	                              of docs/verify.md "Dates" */
	int rev_given;             /* [inbound] revocation: an explicit policy (below) */
	p11s_revocation_opts rev;  /* its strings point into this structure */
	char *ocsp_url;
	char **fetch_allow, **fetch_deny;
	size_t nfetch_allow, nfetch_deny;
	int crl_refresh_interval;  /* seconds between background CRL refreshes; 0: off */
	int crl_refresh_before;    /* refresh a fetched CRL this long before its nextUpdate */
	/* [outbound] */
	gw_signer *signers;
	size_t nsigners;
	int encrypt;
	int protect_headers;     /* [outbound] protect-headers: RFC 9788 (docs/gateway.md) */
	char *certs;
	char *store;             /* [outbound] store: the certificate store (docs/certificates.md),
	                            validated to [inbound] trust and crl */
	char **ldap;             /* [outbound] ldap: directories asked through the store */
	size_t nldap;
	gw_cidr *trusted;
	size_t ntrusted;
	char *audit_log;         /* [outbound] audit-log: a record per signature (audit.h) */
	int audit_checkpoint_every; /* [outbound] audit-checkpoint-every: 0 = only at shutdown */
} gw_config;

/*
 * The certificate for `addr` from [outbound] store (recipients.c): 0 and *cert (caller frees),
 * *caps P11S_CAPS_*; -1 when none is usable (logged).
 */
int gw_store_recipient(const gw_config *cfg, const char *addr, X509 **cert, int *caps);

/* Record a valid result's signers in [outbound] store (recipients.c); failures are logged. */
void gw_store_harvest(const gw_config *cfg, const p11s_verify_result *v);

/* Known keys, for p11s_config_load(). */
extern const char *const gw_config_keys[];

/* Load and check a configuration; `err` gets one line on failure. 0 or -1. */
int gw_config_load(gw_config *out, const char *path, char *err, size_t errlen);
/* The same from memory (unit tests). */
int gw_config_parse(gw_config *out, const char *name, const char *text, char *err,
    size_t errlen);
void gw_config_free(gw_config *cfg);

/* "50M", "1G", "4096", "64k": bytes. 0 or -1. */
int gw_parse_size(const char *s, uint64_t *out);
/* yes/no/true/false/on/off/1/0. 1, 0, or -1. */
int gw_parse_bool(const char *s);

/* ---- policy (policy.c): pure functions -------------------------------------------------- */

/*
 * The single addr-spec of a From header value or an envelope address ("<a@b>", "Name <a@b>",
 * "a@b (comment)"), lower-cased. -1 when there is none or more than one mailbox.
 */
int gw_addr_spec(const char *value, char *out, size_t len);

/* The signer configured for an address (already lower-cased), or NULL. */
const gw_signer *gw_policy_signer(const gw_config *cfg, const char *addr);

/* The p11s_sign_message() options of an outbound signature (audit log of the config). */
void gw_policy_sign_opts(const gw_config *cfg, p11s_sign_opts *opts);

/* The p11s_verify_message() options of the inbound verdict: anchors, CRLs, allow-weak. */
void gw_policy_verify_opts(const gw_config *cfg, p11s_verify_opts *opts);

/* The explicit revocation policy of inbound verification ([inbound] revocation), or NULL. */
const p11s_revocation_opts *gw_policy_revocation(const gw_config *cfg);

/* The decryption options of inbound mail: require-authenticated. */
void gw_policy_decrypt_opts(const gw_config *cfg, p11s_decrypt_opts *opts);

int gw_cidr_parse(const char *s, gw_cidr *out);
/* Non-zero when `sa` (a struct sockaddr) is in one of the configured networks. */
int gw_cidr_match(const gw_cidr *nets, size_t n, const void *sa);

/*
 * Non-zero when an Authentication-Results value names `authserv_id` (RFC 8601 §2.2, compared
 * case-insensitively; RFC 8601 §5: such headers arriving from outside must be removed).
 */
int gw_authres_is_ours(const char *value, const char *authserv_id);

/*
 * The value of our Authentication-Results header for a verification result (RFC 8601 §2.2,
 * RFC 7281 method "smime": smime=pass|fail, reason, body.smime-identifier/serial/issuer).
 * `r` NULL means the signed message could not be parsed (smime=permerror).
 */
int gw_authres_format(char *buf, size_t len, const char *authserv_id,
    const p11s_verify_result *r);

/* ---- the token pool (pool.c) ------------------------------------------------------------ */

typedef struct gw_pool gw_pool;
typedef struct gw_slot gw_slot;

/* Create the pool and try to open every slot; a token that is down now is retried later. */
int gw_pool_new(gw_pool **out, const gw_config *cfg);
void gw_pool_free(gw_pool *p);
/* Number of keys in the index of the first open slot, -1 if none is open. */
int gw_pool_nkeys(gw_pool *p);

/* A slot with a usable context, or NULL when the token is unavailable (answer tempfail). */
gw_slot *gw_pool_acquire(gw_pool *p);
/* Give back; `rc` is the result of the last operation, TOKEN-class errors reopen the slot. */
void gw_pool_release(gw_pool *p, gw_slot *s, int rc);

/*
 * Decrypt with the key the RecipientIdentifier index names. `*matched` is set when a key in
 * the index is a recipient (0: not for us).
 */
int gw_slot_decrypt(gw_slot *s, FILE *in, FILE *out, p11s_decrypt_info *info, int *matched);
/* The same with options (gw_policy_decrypt_opts()); a refusal is P11S_ERR_VERIFY. */
int gw_slot_decrypt_opts(gw_slot *s, FILE *in, FILE *out, const p11s_decrypt_opts *opts,
    p11s_decrypt_info *info, int *matched);
/* The signing key looked up at open for a signer, or NULL. */
p11s_key *gw_slot_signer_key(gw_pool *p, gw_slot *s, const gw_signer *who);
/* `who` signed (into [outbound] audit-log): gw_pool_free() writes a final checkpoint. */
void gw_pool_note_signed(gw_pool *p, const gw_signer *who);

/* Non-zero for errors that mean the token/module is unavailable (tempfail and reopen). */
int gw_token_error(int rc);

/* ---- counters (milter.c) ---------------------------------------------------------------- */

typedef struct gw_counters {
	uint64_t messages, decrypted, undecryptable, signed_, encrypted, verified_pass,
	    verified_fail, tempfailed, rejected, oversize, passed;
	uint64_t latency_us_total, latency_us_max;
} gw_counters;

/* The running state shared by the callbacks; replaced as a whole on SIGHUP. */
typedef struct gw_state {
	gw_config cfg;
	gw_pool *pool;
} gw_state;

extern struct smfiDesc gw_milter_desc;
/* Set the state used by new messages; returns the old one (free it once no message uses it). */
void gw_milter_set_state(gw_state *st);
/* Take the write side: waits until no message holds the state. */
void gw_milter_lock_exclusive(void);
void gw_milter_unlock_exclusive(void);
/* The current state, held as a message holds it (read side) until gw_milter_unlock_shared(). */
gw_state *gw_milter_state_shared(void);
void gw_milter_unlock_shared(void);

/* ---- background CRL refresh (refresh.c) ------------------------------------------------- */

/* Start the thread that refreshes fetched CRLs ([inbound] crl-refresh-*). 0 or -1. */
int gw_refresh_start(void);
/* Stop it and wait for it. */
void gw_refresh_stop(void);
void gw_milter_counters(gw_counters *out);
int gw_milter_active(void);
void gw_milter_set_workers(int n);

void gw_state_free(gw_state *st);

#endif

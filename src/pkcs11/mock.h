/*
 * The mock backend's test-control API (STYLE.md "Providers": the mock injects faults a real
 * token can't). The mock simulates one slot with one token ("mock", manufacturer "p11smime",
 * model "mock", serial "0000000000000001") holding software keys made at the first open:
 *
 *   id 01 "rsa2048"  RSA-2048      sign (CKM_RSA_PKCS, CKM_RSA_PKCS_PSS), decrypt (PKCS, OAEP)
 *   id 02 "ec256"    EC P-256      sign (CKM_ECDSA), derive (CKM_ECDH1_DERIVE)
 *   id 03 "ec384"    EC P-384      sign (CKM_ECDSA), derive (CKM_ECDH1_DERIVE)
 *   id 04 "x25519"   X25519        derive only (CKM_ECDH1_DERIVE, the peer's raw 32-byte
 *                                  u-coordinate as public data; another length is
 *                                  CKR_MECHANISM_PARAM_INVALID)
 *
 * each with a public key object and a certificate with the same CKA_ID: self-signed, except
 * x25519's (CN "p11smime mock x25519", keyUsage keyAgreement only, RFC 8410 §5), which
 * rsa2048's certificate issues since an X25519 key cannot sign. x25519 is a PKCS#11 v3.0
 * CKK_EC_MONTGOMERY key (P11S_KEY_XDH): CKA_EC_PARAMS the DER OID id-X25519, CKA_EC_POINT the
 * raw u-coordinate. The user
 * PIN is "1234"; private objects need a login. Every backend call is logged; faults are
 * injected per operation. State is process-global (the backend instance is made inside
 * p11s_ctx_new()) and not thread-safe: tests drive it from one thread.
 */
#ifndef P11S_PKCS11_MOCK_H
#define P11S_PKCS11_MOCK_H

#include <stddef.h>

#include <p11smime/sys/provider.h>

/* The operations the log records and faults target. */
typedef enum p11s_mock_op {
	P11S_MOCK_OP_OPEN = 1,
	P11S_MOCK_OP_SLOTS,
	P11S_MOCK_OP_LOGIN,   /* context-specific logins inside sign/decrypt are logged too */
	P11S_MOCK_OP_OBJECTS,
	P11S_MOCK_OP_SIGN,
	P11S_MOCK_OP_DECRYPT,
	P11S_MOCK_OP_DERIVE,
	P11S_MOCK_OP_CLOSE,
} p11s_mock_op;

/* One logged call. The PIN itself is never recorded, only its length. */
typedef struct p11s_mock_call {
	p11s_mock_op op;
	unsigned long rv;          /* the CK_RV the call ended with (0 = CKR_OK) */
	unsigned long user_type;   /* LOGIN: P11S_USER_* */
	size_t pin_len;            /* LOGIN: length of the PIN handed over */
	int pin_null;              /* LOGIN: NULL PIN (protected authentication path) */
	unsigned long mech;        /* SIGN/DECRYPT/DERIVE: P11S_MECH_* */
	unsigned long hash;        /* PSS/OAEP: P11S_HASH_* */
	unsigned long mgf;         /* PSS/OAEP: P11S_MGF1_* */
	unsigned long salt_len;    /* PSS */
	size_t label_len;          /* OAEP */
	size_t inlen;              /* input length (DERIVE: the peer point's, or u-coordinate's) */
	size_t outlen;             /* output length on success */
	char key[16];              /* CKA_LABEL of the key used */
} p11s_mock_call;

/*
 * Restore the defaults: PIN "1234", token present, flags cleared, no faults, empty log, every
 * key with its own certificate and without CKA_ALWAYS_AUTHENTICATE.
 */
void p11s_mock__reset(void);

/* Change the user PIN (at most 32 bytes). */
void p11s_mock__set_pin(const char *pin);

/*
 * Set and clear token flags (P11S_TOKEN_USER_PIN_COUNT_LOW, _FINAL_TRY, _LOCKED,
 * P11S_TOKEN_PROTECTED_AUTH_PATH). Wrong PINs move through COUNT_LOW, FINAL_TRY and LOCKED
 * by themselves (three tries); a right PIN clears the counters.
 */
void p11s_mock__set_token_flags(unsigned int set, unsigned int clear);

/* The token flags the mock reports now. */
unsigned int p11s_mock__token_flags(void);

/* Simulate removal (0) and insertion (1) of the token; removal also logs out. */
void p11s_mock__set_present(int present);

/*
 * Make the `nth` next call of `op` (1 = the very next) fail with CK_RV `rv`, e.g.
 * CKR_DEVICE_REMOVED mid-operation, CKR_PIN_INCORRECT, CKR_BUFFER_TOO_SMALL.
 * @return 0, or -1 when too many faults are pending.
 */
int p11s_mock__inject(p11s_mock_op op, unsigned int nth, unsigned long rv);

/* Make the `nth` next signature `drop` bytes short (a token returning a truncated result). */
int p11s_mock__inject_short(unsigned int nth, size_t drop);

/*
 * Refuse a mechanism as a token would: with `hash` 0 every use of `mech` fails with
 * CKR_MECHANISM_INVALID; with a P11S_HASH_* only that parameter set fails, with
 * CKR_MECHANISM_PARAM_INVALID (as SoftHSM 2.6.1 refuses OAEP with SHA-256).
 */
int p11s_mock__set_refused_mech(unsigned long mech, unsigned long hash);

/* Give the key labelled `label` CKA_ALWAYS_AUTHENTICATE (a PIN before every operation). */
int p11s_mock__set_always_authenticate(const char *label, int on);

/*
 * Make the certificate object with the CKA_ID of key `label` hold the certificate of key
 * `from` (a token whose certificate does not belong to its key); NULL restores its own.
 */
int p11s_mock__set_cert_of(const char *label, const char *from);

/* Non-zero while the application is logged in. */
int p11s_mock__logged_in(void);

/* The call log, oldest first; valid until the next mock call. */
size_t p11s_mock__calls(const p11s_mock_call **out);

/* How many calls of `op` the log holds. */
size_t p11s_mock__count(p11s_mock_op op);

/* The latest logged call of `op`, or NULL. */
const p11s_mock_call *p11s_mock__last(p11s_mock_op op);

/* Empty the log, keeping everything else. */
void p11s_mock__clear_log(void);

/*
 * The DER certificate of the key labelled `label` ("rsa2048", "ec256", "ec384", "x25519"),
 * creating the keys if no context opened the mock yet. Owned by the mock. NULL if unknown.
 */
const unsigned char *p11s_mock__cert_der(const char *label, size_t *len);

/*
 * Where the PIN buffer handed to the last C_Login was, and its length; NULL if none. The mock
 * keeps only the address: after login the caller must have wiped the buffer (or freed it: a
 * p11s_secret is its own mmap'd page, unmapped when freed). Tests check which, without
 * touching an unmapped page (tests/integration/pin_hygiene.c).
 */
const void *p11s_mock__login_pin_buffer(size_t *len);

#endif

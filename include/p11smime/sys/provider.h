/*
 * p11smime — the token provider ABI: what a backend (pkcs11, libp11, pkcs11-helper, mock)
 * implements. Shaped like curl's struct Curl_ssl: one const ops table per backend, listed in
 * src/token/registry.c, selected by --backend.
 *
 * The layer above (src/token/) owns URI matching, PIN sources and login policy; a backend
 * only talks to its library. Backends translate CK_RV into P11S_ERR_* at their boundary with
 * p11s_token__ckr() (src/token/token_int.h) and keep the CK_RV in the error record.
 */
#ifndef P11SMIME_SYS_PROVIDER_H
#define P11SMIME_SYS_PROVIDER_H

#include "../common.h"
#include "../secret.h"
#include "../token.h"

#define P11S_PROVIDER_ABI 1

/*
 * Mechanism, hash and MGF numbers are the PKCS#11 values (CKM_*, CKG_*), so that no layer
 * above needs pkcs11.h and a backend passes them through unchanged.
 */
#define P11S_MECH_RSA_PKCS 0x00000001UL      /* CKM_RSA_PKCS: sign a DigestInfo, or decrypt */
#define P11S_MECH_RSA_X_509 0x00000003UL     /* CKM_RSA_X_509: raw RSA — never used by us */
#define P11S_MECH_RSA_PKCS_OAEP 0x00000009UL /* CKM_RSA_PKCS_OAEP */
#define P11S_MECH_RSA_PKCS_PSS 0x0000000DUL  /* CKM_RSA_PKCS_PSS: sign a bare hash */
#define P11S_MECH_ECDSA 0x00001041UL         /* CKM_ECDSA: sign a bare hash, out r||s */
#define P11S_MECH_ECDH1_DERIVE 0x00001050UL  /* CKM_ECDH1_DERIVE with CKD_NULL (EC, XDH keys) */
#define P11S_MECH_EDDSA 0x00001057UL         /* CKM_EDDSA */

#define P11S_HASH_SHA1 0x00000220UL   /* CKM_SHA_1 */
#define P11S_HASH_SHA224 0x00000255UL /* CKM_SHA224 */
#define P11S_HASH_SHA256 0x00000250UL /* CKM_SHA256 */
#define P11S_HASH_SHA384 0x00000260UL /* CKM_SHA384 */
#define P11S_HASH_SHA512 0x00000270UL /* CKM_SHA512 */

#define P11S_MGF1_SHA1 0x1UL   /* CKG_MGF1_SHA1 */
#define P11S_MGF1_SHA256 0x2UL /* CKG_MGF1_SHA256 */
#define P11S_MGF1_SHA384 0x3UL /* CKG_MGF1_SHA384 */
#define P11S_MGF1_SHA512 0x4UL /* CKG_MGF1_SHA512 */
#define P11S_MGF1_SHA224 0x5UL /* CKG_MGF1_SHA224 */

/** A mechanism and its parameters (PSS: hash, mgf, salt_len; OAEP: hash, mgf, label). */
typedef struct p11s_mech {
	unsigned long type;
	unsigned long hash;
	unsigned long mgf;
	unsigned long salt_len;
	const unsigned char *label;
	size_t label_len;
} p11s_mech;

/** Capabilities a backend declares; the token layer refuses what is missing (exit 3). */
enum {
	P11S_CAP_RSA_PKCS_SIGN = 1u << 0,
	P11S_CAP_RSA_PSS = 1u << 1,
	P11S_CAP_RSA_PKCS_DECRYPT = 1u << 2,
	P11S_CAP_RSA_OAEP = 1u << 3,
	P11S_CAP_ECDSA = 1u << 4,
	P11S_CAP_ECDH = 1u << 5,           /* CKM_ECDH1_DERIVE, for the EC and XDH keys it reports */
	P11S_CAP_EDDSA = 1u << 6,
	P11S_CAP_CONTEXT_LOGIN = 1u << 7,  /* CKU_CONTEXT_SPECIFIC around each signature */
	P11S_CAP_PROTECTED_AUTH = 1u << 8, /* C_Login with a NULL PIN on a PIN pad */
	P11S_CAP_KEYGEN = 1u << 9,         /* generate_keypair (C_GenerateKeyPair on the token) */
	P11S_CAP_CREATE_CERT = 1u << 10,   /* create_certificate (C_CreateObject, CKO_CERTIFICATE) */
	P11S_CAP_CONCURRENT = 1u << 11,    /* sign/decrypt/derive may run from several threads at
	                                      once (a session per operation, module locking) */
};

/** User types for login (CKU_* values). */
#define P11S_USER_NORMAL 1UL           /* CKU_USER */
#define P11S_USER_CONTEXT_SPECIFIC 2UL /* CKU_CONTEXT_SPECIFIC */

/** A counted byte string owned by the object it sits in. */
typedef struct p11s_bytes {
	unsigned char *data;
	size_t len;
} p11s_bytes;

/** Object classes a backend reports. */
typedef enum p11s_object_class {
	P11S_OBJ_PRIVATE_KEY = 1,
	P11S_OBJ_PUBLIC_KEY,
	P11S_OBJ_CERTIFICATE,
} p11s_object_class;

/**
 * A slot as a backend sees it. `handle` is the backend's own reference (slot id, index,
 * pointer); `info` is filled by the backend, except `info.uri`, which the token layer builds.
 */
typedef struct p11s_slot {
	uint64_t handle;
	p11s_token_info info;
} p11s_slot;

/**
 * An object on a token, with the attributes the layers above need. Strings and byte strings
 * are owned by the array the backend returned; free it with p11s_objects_free().
 */
typedef struct p11s_object {
	uint64_t handle;          /* backend reference, valid until the module is closed */
	uint64_t slot;            /* p11s_slot.handle of its slot */
	p11s_object_class cls;
	char *label;              /* CKA_LABEL, NUL-terminated, "" if absent */
	p11s_bytes id;            /* CKA_ID */
	p11s_key_type key_type;   /* keys: CKA_KEY_TYPE translated: CKK_RSA P11S_KEY_RSA, CKK_EC
	                             P11S_KEY_EC, CKK_EC_EDWARDS P11S_KEY_EDDSA, CKK_EC_MONTGOMERY
	                             P11S_KEY_XDH, anything else P11S_KEY_UNKNOWN */
	p11s_bytes modulus;       /* RSA keys: CKA_MODULUS (private keys where readable, public) */
	p11s_bytes public_exponent;
	p11s_bytes ec_params;     /* EC, EdDSA, XDH keys: CKA_EC_PARAMS (DER OID of the curve, or
	                             for EdDSA and XDH a PrintableString, PKCS#11 v3.0 §2.3.5-8) */
	p11s_bytes ec_point;      /* EC, EdDSA, XDH public keys: CKA_EC_POINT (DER OCTET STRING or
	                             raw; XDH: the RFC 7748 u-coordinate, 32 or 56 bytes) */
	p11s_bytes value;         /* certificates: CKA_VALUE (DER X.509) */
	unsigned int always_authenticate : 1; /* private keys: CKA_ALWAYS_AUTHENTICATE */
	unsigned int can_sign : 1;            /* CKA_SIGN */
	unsigned int can_decrypt : 1;         /* CKA_DECRYPT */
	unsigned int can_derive : 1;          /* CKA_DERIVE */
} p11s_object;

/** Free an array of `n` objects returned by a backend, and everything it owns. */
P11S_EXTERN void p11s_objects_free(p11s_object *objs, size_t n);

/**
 * The PKCS#11 name of a mechanism (P11S_MECH_*, P11S_HASH_*, or any CKM_ value: "CKM_RSA_PKCS_PSS"),
 * or "CKM_0x..." for one it does not know (valid until the next call in the same thread).
 */
P11S_EXTERN const char *p11s_mech_name(unsigned long mech);

/** Free what one object owns (an object moved out of a backend's array) and zero it. */
P11S_EXTERN void p11s_object_clear(p11s_object *o);

typedef struct p11s_provider p11s_provider;

/**
 * A key pair to generate on the token (p11smime keygen, docs/keys.md). Both halves are token
 * objects with the same CKA_LABEL and CKA_ID; the private key is CKA_PRIVATE, CKA_SENSITIVE and
 * not CKA_EXTRACTABLE. Usages: RSA sign+decrypt, EC sign+derive, EdDSA sign.
 */
typedef struct p11s_keygen_spec {
	p11s_key_type type;            /* P11S_KEY_RSA, P11S_KEY_EC or P11S_KEY_EDDSA (not XDH) */
	unsigned long bits;            /* RSA: CKA_MODULUS_BITS (public exponent 65537) */
	const unsigned char *params;   /* EC, EdDSA: CKA_EC_PARAMS, the DER OID of the curve */
	size_t params_len;
	const char *label;             /* CKA_LABEL */
	const unsigned char *id;       /* CKA_ID */
	size_t id_len;
} p11s_keygen_spec;

/** An X.509 certificate object to write (CKC_X_509, a token object, not private). */
typedef struct p11s_cert_spec {
	p11s_bytes value;              /* CKA_VALUE: DER certificate */
	p11s_bytes subject;            /* CKA_SUBJECT: DER Name */
	p11s_bytes issuer;             /* CKA_ISSUER: DER Name */
	p11s_bytes serial;             /* CKA_SERIAL_NUMBER: DER INTEGER */
	p11s_bytes id;                 /* CKA_ID (len 0: none) */
	const char *label;             /* CKA_LABEL */
	unsigned long category;        /* CKA_CERTIFICATE_CATEGORY: 1 token user, 2 authority */
} p11s_cert_spec;

/**
 * Asks for a PIN. The token layer implements it from the context's pin source (and the URI's
 * pin-source/pin-value). `user_type` tells which login it is for; a context-specific request
 * must never be answered from a cache.
 */
typedef int (*p11s_pin_cb)(const p11s_slot *slot, unsigned long user_type, p11s_secret **out,
    void *payload);

/** What a backend is opened with. */
typedef struct p11s_provider_cfg {
	const char *module_path; /* never NULL: the token layer resolves defaults */
	p11s_pin_cb get_pin;     /* for context-specific logins inside sign/decrypt */
	void *pin_payload;
} p11s_provider_cfg;

/** The backend operations. Every function returns P11S_OK or a negative P11S_ERR_*. */
struct p11s_provider_ops {
	unsigned int abi;   /* P11S_PROVIDER_ABI */
	const char *name;   /* "pkcs11", "libp11", "pkcs11-helper", "mock" */
	uint32_t caps;      /* P11S_CAP_* */
	size_t priv_size;   /* the core allocates p->priv (zeroed) */

	/* Load and initialise the module. */
	int (*open)(p11s_provider *p, const p11s_provider_cfg *cfg);

	/* Every slot, with or without a token; `*out` freed by the caller with free(). */
	int (*slots)(p11s_provider *p, p11s_slot **out, size_t *n);

	/*
	 * Log in to the token in `slot` as `user_type` (P11S_USER_NORMAL). `pin` NULL means a
	 * protected authentication path (PIN pad). Already logged in is success. Never retries.
	 */
	int (*login)(p11s_provider *p, const p11s_slot *slot, unsigned long user_type,
	    const p11s_secret *pin);

	/* Non-zero when the application is logged in to the token in `slot`. */
	int (*logged_in)(p11s_provider *p, const p11s_slot *slot);

	/*
	 * Private keys, public keys and certificates on the token in `slot` (private objects only
	 * after login). `*out` freed by the caller with p11s_objects_free().
	 */
	int (*objects)(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n);

	/*
	 * Single-part C_Sign of `in` with `key` (a P11S_OBJ_PRIVATE_KEY). For a key with
	 * always_authenticate, log in CKU_CONTEXT_SPECIFIC right after C_SignInit with a PIN from
	 * cfg->get_pin, calling nothing else on that session in between. `*out` freed with
	 * p11s_buf_free(). A mechanism the token refuses is P11S_ERR_MECHANISM.
	 */
	int (*sign)(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
	    const unsigned char *in, size_t inlen, p11s_buf **out);

	/* Single-part C_Decrypt; same rules as sign. */
	int (*decrypt)(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
	    const unsigned char *in, size_t inlen, p11s_buf **out);

	/*
	 * ECDH: CKM_ECDH1_DERIVE (CKD_NULL) with the peer's public key as pPublicData. For an EC
	 * key `peer` is the uncompressed point (raw 04||X||Y) and `*out` the shared secret Z (the
	 * x-coordinate); for an XDH key (CKK_EC_MONTGOMERY) `peer` is the raw RFC 7748
	 * u-coordinate, 32 bytes for X25519 or 56 for X448 (PKCS#11 v3.0 §2.3.16
	 * CK_ECDH1_DERIVE_PARAMS), and `*out` the X25519/X448 result K of the same length (RFC
	 * 7748 §6.1, §6.2). The derived object is session-only and destroyed before returning.
	 */
	int (*derive)(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
	    size_t peer_len, p11s_buf **out);

	/* Close sessions, finalise, unload. Must tolerate a partly failed open. */
	void (*close)(p11s_provider *p);

	/*
	 * With P11S_CAP_KEYGEN (NULL otherwise; appended last so existing tables stay valid):
	 * C_GenerateKeyPair of `spec` on the token in `slot`, logged in by the caller, in a
	 * read/write session. A mechanism or key size the token refuses is P11S_ERR_MECHANISM.
	 */
	int (*generate_keypair)(p11s_provider *p, const p11s_slot *slot,
	    const p11s_keygen_spec *spec);

	/* With P11S_CAP_CREATE_CERT: C_CreateObject of `spec` in a read/write session. */
	int (*create_certificate)(p11s_provider *p, const p11s_slot *slot,
	    const p11s_cert_spec *spec);
};

/** A backend instance. */
struct p11s_provider {
	const struct p11s_provider_ops *ops;
	void *priv;             /* ops->priv_size bytes, zeroed, freed by the core */
	p11s_provider_cfg cfg;  /* copy made by the core; strings owned by the context */
};

#endif

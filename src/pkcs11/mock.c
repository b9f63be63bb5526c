/*
 * The mock backend: a simulated PKCS#11 module with one slot and one token whose keys are
 * software keys (made once per process, in a library context of their own, as a real module
 * would have its own). It does the real cryptography of each mechanism, so CMS made through
 * it verifies, and it logs every call and injects faults on demand (mock.h).
 *
 * Mechanism semantics follow PKCS#11 v2.40 (Current Mechanisms §2.1.6 CKM_RSA_PKCS,
 * §2.1.8 CKM_RSA_PKCS_OAEP, §2.1.10 CKM_RSA_PKCS_PSS, §2.3.6 CKM_ECDSA, §2.3.16
 * CKM_ECDH1_DERIVE): CKM_RSA_PKCS pads its input with PKCS#1 v1.5 type 1 as is (the caller
 * brings the DigestInfo), CKM_ECDSA returns r||s of nLen bytes each. The X25519 key is a
 * PKCS#11 v3.0 Montgomery key (Current Mechanisms §2.3.7, §2.3.8: CKK_EC_MONTGOMERY), usable
 * only with CKM_ECDH1_DERIVE (§2.3.17), whose public data is then the peer's raw RFC 7748
 * u-coordinate (§2.3.16).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11-kit/pkcs11.h>

#include "core/error_int.h"
#include "pkcs11/backends.h"
#include "pkcs11/mock.h"
#include "pkcs11/ck.h"

#define NKEYS 4
#define MAX_FAULTS 16
#define MAX_REFUSED 8
#define PIN_MAX 32
#define PIN_TRIES 3

#define H_PRIV 0x100u
#define H_PUB 0x200u
#define H_CERT 0x300u

/* PIN state flags the test may set; the rest of the token flags are fixed. */
#define STATE_FLAGS                                                                           \
	(P11S_TOKEN_USER_PIN_COUNT_LOW | P11S_TOKEN_USER_PIN_FINAL_TRY |                        \
	    P11S_TOKEN_USER_PIN_LOCKED | P11S_TOKEN_PROTECTED_AUTH_PATH)

struct mkey {
	const char *label;
	unsigned char id;
	p11s_key_type type;
	const char *curve;     /* EC: group name; XDH: OpenSSL's key type ("X25519") */
	EVP_PKEY *pkey;
	unsigned char *cert;   /* DER */
	size_t cert_len;
	int always_auth;
	const char *issuer;    /* the key whose certificate issues this one's; NULL: self-signed */
	const struct mkey *cert_of; /* p11s_mock__set_cert_of(): whose certificate it shows */
};

struct fault {
	p11s_mock_op op;
	unsigned int countdown;
	unsigned long rv;
	size_t drop;
};

static struct {
	int keys_made;
	OSSL_LIB_CTX *libctx;
	struct mkey keys[NKEYS];
	char pin[PIN_MAX + 1];
	unsigned int flags;    /* STATE_FLAGS subset */
	int present;
	int logged_in;
	int failures;
	struct fault faults[MAX_FAULTS];
	size_t nfaults;
	struct {
		unsigned long mech, hash;
	} refused[MAX_REFUSED];
	size_t nrefused;
	p11s_mock_call *log;
	size_t nlog, caplog;
	int defaults_set;
	const void *login_pin;   /* where the last C_Login's PIN was (never dereferenced here) */
	size_t login_pin_len;
} st = {
	.keys = {
		{ "rsa2048", 0x01, P11S_KEY_RSA, NULL, NULL, NULL, 0, 0, NULL, NULL },
		{ "ec256", 0x02, P11S_KEY_EC, "P-256", NULL, NULL, 0, 0, NULL, NULL },
		{ "ec384", 0x03, P11S_KEY_EC, "P-384", NULL, NULL, 0, 0, NULL, NULL },
		/* Cannot sign (RFC 8410 §5: key agreement only): rsa2048 issues its certificate. */
		{ "x25519", 0x04, P11S_KEY_XDH, "X25519", NULL, NULL, 0, 0, "rsa2048", NULL },
	},
};

/* ---- test control ------------------------------------------------------------------- */

void p11s_mock__reset(void)
{
	snprintf(st.pin, sizeof(st.pin), "%s", "1234");
	st.flags = 0;
	st.present = 1;
	st.logged_in = 0;
	st.failures = 0;
	st.nfaults = 0;
	st.nrefused = 0;
	st.nlog = 0;
	for (size_t i = 0; i < NKEYS; i++) {
		st.keys[i].always_auth = 0;
		st.keys[i].cert_of = NULL;
	}
	st.defaults_set = 1;
}

static void defaults(void)
{
	if (!st.defaults_set) {
		p11s_mock__reset();
	}
}

void p11s_mock__set_pin(const char *pin)
{
	defaults();
	snprintf(st.pin, sizeof(st.pin), "%s", pin ? pin : "");
}

void p11s_mock__set_token_flags(unsigned int set, unsigned int clear)
{
	defaults();
	st.flags = (st.flags | (set & STATE_FLAGS)) & ~(clear & STATE_FLAGS);
	if (!(st.flags & P11S_TOKEN_USER_PIN_LOCKED)) {
		st.failures = (st.flags & P11S_TOKEN_USER_PIN_FINAL_TRY) ? PIN_TRIES - 1
		    : (st.flags & P11S_TOKEN_USER_PIN_COUNT_LOW)          ? 1
		                                                          : 0;
	}
}

unsigned int p11s_mock__token_flags(void)
{
	defaults();
	return st.flags;
}

void p11s_mock__set_present(int present)
{
	defaults();
	st.present = present != 0;
	if (!st.present) {
		st.logged_in = 0;
	}
}

int p11s_mock__inject(p11s_mock_op op, unsigned int nth, unsigned long rv)
{
	defaults();
	if (st.nfaults == MAX_FAULTS || nth == 0) {
		return -1;
	}
	st.faults[st.nfaults++] = (struct fault){ op, nth, rv, 0 };
	return 0;
}

int p11s_mock__inject_short(unsigned int nth, size_t drop)
{
	defaults();
	if (st.nfaults == MAX_FAULTS || nth == 0 || drop == 0) {
		return -1;
	}
	st.faults[st.nfaults++] = (struct fault){ P11S_MOCK_OP_SIGN, nth, CKR_OK, drop };
	return 0;
}

int p11s_mock__set_refused_mech(unsigned long mech, unsigned long hash)
{
	defaults();
	if (st.nrefused == MAX_REFUSED) {
		return -1;
	}
	st.refused[st.nrefused].mech = mech;
	st.refused[st.nrefused].hash = hash;
	st.nrefused++;
	return 0;
}

static struct mkey *key_by_label(const char *label)
{
	for (size_t i = 0; label != NULL && i < NKEYS; i++) {
		if (strcmp(st.keys[i].label, label) == 0) {
			return &st.keys[i];
		}
	}
	return NULL;
}

int p11s_mock__set_always_authenticate(const char *label, int on)
{
	struct mkey *k;

	defaults();
	if ((k = key_by_label(label)) == NULL) {
		return -1;
	}
	k->always_auth = on != 0;
	return 0;
}

int p11s_mock__set_cert_of(const char *label, const char *from)
{
	struct mkey *k, *f = NULL;

	defaults();
	if ((k = key_by_label(label)) == NULL ||
	    (from != NULL && (f = key_by_label(from)) == NULL)) {
		return -1;
	}
	k->cert_of = f;
	return 0;
}

int p11s_mock__logged_in(void)
{
	return st.logged_in;
}

size_t p11s_mock__calls(const p11s_mock_call **out)
{
	*out = st.log;
	return st.nlog;
}

size_t p11s_mock__count(p11s_mock_op op)
{
	size_t n = 0;

	for (size_t i = 0; i < st.nlog; i++) {
		n += st.log[i].op == op;
	}
	return n;
}

const p11s_mock_call *p11s_mock__last(p11s_mock_op op)
{
	for (size_t i = st.nlog; i > 0; i--) {
		if (st.log[i - 1].op == op) {
			return &st.log[i - 1];
		}
	}
	return NULL;
}

void p11s_mock__clear_log(void)
{
	st.nlog = 0;
}

/* ---- internals ---------------------------------------------------------------------- */

/* Append a log entry; returns its index (entries move when the log grows). */
static size_t log_call(p11s_mock_op op)
{
	if (st.nlog == st.caplog) {
		size_t cap = st.caplog ? st.caplog * 2 : 64;
		p11s_mock_call *v = realloc(st.log, cap * sizeof(*v));

		if (v == NULL) {
			/* Out of memory in a test double: overwrite the last entry rather than fail. */
			return st.nlog ? st.nlog - 1 : 0;
		}
		st.log = v;
		st.caplog = cap;
	}
	memset(&st.log[st.nlog], 0, sizeof(st.log[0]));
	st.log[st.nlog].op = op;
	return st.nlog++;
}

/* The injected result for this call of `op`: CKR_OK when none is due. */
static unsigned long take_fault(p11s_mock_op op, size_t *drop)
{
	unsigned long rv = CKR_OK;
	int fired = 0;

	if (drop != NULL) {
		*drop = 0;
	}
	for (size_t i = 0; i < st.nfaults;) {
		if (st.faults[i].op == op && --st.faults[i].countdown == 0) {
			if (!fired) {
				rv = st.faults[i].rv;
				if (drop != NULL) {
					*drop = st.faults[i].drop;
				}
				fired = 1;
			}
			st.faults[i] = st.faults[--st.nfaults];
			continue;
		}
		i++;
	}
	return rv;
}

/* End a logged call: record the CK_RV and translate it (shared mapping, token/ckr.c). */
static int finish(size_t idx, unsigned long rv, const char *what)
{
	st.log[idx].rv = rv;
	return p11s_ck__rv(rv, what);
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ex != NULL && X509_add_ext(cert, ex, -1);

	X509_EXTENSION_free(ex);
	return ok;
}

/* keyUsage (RFC 8550 §4.4.2) by what the key can do. */
static const char *key_usage(const struct mkey *k)
{
	switch (k->type) {
	case P11S_KEY_RSA:
		return "critical,digitalSignature,nonRepudiation,keyEncipherment";
	case P11S_KEY_XDH:
		/* RFC 8410 §5: keyAgreement for id-X25519/id-X448, nothing that signs. */
		return "critical,keyAgreement";
	default:
		return "critical,digitalSignature,nonRepudiation,keyAgreement";
	}
}

/*
 * An end-entity certificate for S/MIME (RFC 8550 §4.4: key usage, email), self-signed, or for
 * a key that cannot sign issued by the key `k->issuer` names (whose certificate must exist):
 * its issuer is then that certificate's subject and its authorityKeyIdentifier that
 * certificate's subjectKeyIdentifier (RFC 5280 §4.2.1.1). The issuing certificate is an end
 * entity itself, so the chain is no valid path (RFC 5280 §6); a decrypting recipient matches
 * the certificate by issuer and serial or SKI only (RFC 5652 §6.2.2).
 */
static int make_cert(struct mkey *k)
{
	const struct mkey *iss = k->issuer != NULL ? key_by_label(k->issuer) : k;
	X509 *x = NULL, *issuer = NULL;
	X509_NAME *name = NULL;
	X509V3_CTX v3;
	char cn[64], san[96];
	unsigned char *der = NULL;
	const unsigned char *p;
	int len, ok = 0;

	if (iss == NULL || iss->pkey == NULL || (iss != k && iss->cert == NULL)) {
		return 0;
	}
	if (iss != k) {
		p = iss->cert;
		if ((issuer = d2i_X509(NULL, &p, (long)iss->cert_len)) == NULL) {
			return 0;
		}
	}
	snprintf(cn, sizeof(cn), "p11smime mock %s", k->label);
	snprintf(san, sizeof(san), "email:%s@mock.p11smime.test", k->label);
	if ((x = X509_new_ex(st.libctx, NULL)) == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1000 + k->id) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -86400L) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) == NULL ||
	    !X509_set_pubkey(x, k->pkey) || (name = X509_NAME_new()) == NULL ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"p11smime",
	        -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
	        -1, 0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name)) {
		goto out;
	}
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if (!add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, &v3, NID_key_usage, key_usage(k)) ||
	    !add_ext(x, &v3, NID_ext_key_usage, "emailProtection") ||
	    !add_ext(x, &v3, NID_subject_key_identifier, "hash") ||
	    (issuer != NULL && !add_ext(x, &v3, NID_authority_key_identifier, "keyid:always")) ||
	    !add_ext(x, &v3, NID_subject_alt_name, san) ||
	    X509_sign(x, iss->pkey, EVP_sha256()) <= 0 || (len = i2d_X509(x, &der)) <= 0) {
		goto out;
	}
	k->cert = der;
	k->cert_len = (size_t)len;
	ok = 1;
out:
	X509_NAME_free(name);
	X509_free(x);
	X509_free(issuer);
	return ok;
}

/* The token's keys, made once per process (RSA-2048 generation is the slow part). */
static int make_keys(void)
{
	if (st.keys_made) {
		return P11S_OK;
	}
	if (st.libctx == NULL) {
		if ((st.libctx = OSSL_LIB_CTX_new()) == NULL ||
		    OSSL_PROVIDER_load(st.libctx, "default") == NULL) {
			return p11s_error__ossl(P11S_ERR_MODULE, "mock: no OpenSSL library context");
		}
	}
	/* In table order: an issuing key's certificate is made before those it issues. */
	for (size_t i = 0; i < NKEYS; i++) {
		struct mkey *k = &st.keys[i];

		if (k->pkey == NULL) {
			if (k->type == P11S_KEY_RSA) {
				k->pkey = EVP_PKEY_Q_keygen(st.libctx, NULL, "RSA", (size_t)2048);
			} else if (k->type == P11S_KEY_XDH) {
				k->pkey = EVP_PKEY_Q_keygen(st.libctx, NULL, k->curve);
			} else {
				k->pkey = EVP_PKEY_Q_keygen(st.libctx, NULL, "EC", k->curve);
			}
			if (k->pkey == NULL) {
				return p11s_error__ossl(P11S_ERR_MODULE, "mock: cannot make key %s",
				    k->label);
			}
		}
		if (k->cert == NULL && !make_cert(k)) {
			return p11s_error__ossl(P11S_ERR_MODULE, "mock: cannot make certificate %s",
			    k->label);
		}
	}
	st.keys_made = 1;
	return P11S_OK;
}

const void *p11s_mock__login_pin_buffer(size_t *len)
{
	*len = st.login_pin_len;
	return st.login_pin;
}

const unsigned char *p11s_mock__cert_der(const char *label, size_t *len)
{
	const struct mkey *k;

	defaults();
	if (make_keys() < 0 || (k = key_by_label(label)) == NULL) {
		return NULL;
	}
	*len = k->cert_len;
	return k->cert;
}

static void fill_slot(p11s_slot *s)
{
	memset(s, 0, sizeof(*s));
	s->handle = 0;
	s->info.slot_id = 0;
	snprintf(s->info.slot_description, sizeof(s->info.slot_description), "p11smime mock slot");
	snprintf(s->info.slot_manufacturer, sizeof(s->info.slot_manufacturer), "p11smime");
	s->info.flags = P11S_TOKEN_REMOVABLE;
	if (!st.present) {
		return;
	}
	snprintf(s->info.label, sizeof(s->info.label), "mock");
	snprintf(s->info.manufacturer, sizeof(s->info.manufacturer), "p11smime");
	snprintf(s->info.model, sizeof(s->info.model), "mock");
	snprintf(s->info.serial, sizeof(s->info.serial), "0000000000000001");
	s->info.flags |= P11S_TOKEN_PRESENT | P11S_TOKEN_LOGIN_REQUIRED |
	    P11S_TOKEN_USER_PIN_INITIALIZED | P11S_TOKEN_INITIALIZED | st.flags;
}

static struct mkey *key_by_handle(uint64_t handle)
{
	if (handle >= H_PRIV && handle < H_PRIV + NKEYS) {
		return &st.keys[handle - H_PRIV];
	}
	return NULL;
}

static const char *md_name(unsigned long ck_hash)
{
	switch (ck_hash) {
	case P11S_HASH_SHA1:
		return "SHA1";
	case P11S_HASH_SHA224:
		return "SHA224";
	case P11S_HASH_SHA256:
		return "SHA256";
	case P11S_HASH_SHA384:
		return "SHA384";
	case P11S_HASH_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

static size_t md_size(unsigned long ck_hash)
{
	switch (ck_hash) {
	case P11S_HASH_SHA1:
		return 20;
	case P11S_HASH_SHA224:
		return 28;
	case P11S_HASH_SHA256:
		return 32;
	case P11S_HASH_SHA384:
		return 48;
	case P11S_HASH_SHA512:
		return 64;
	default:
		return 0;
	}
}

static const char *mgf_md_name(unsigned long ck_mgf)
{
	switch (ck_mgf) {
	case P11S_MGF1_SHA1:
		return "SHA1";
	case P11S_MGF1_SHA224:
		return "SHA224";
	case P11S_MGF1_SHA256:
		return "SHA256";
	case P11S_MGF1_SHA384:
		return "SHA384";
	case P11S_MGF1_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

static unsigned long refused(const p11s_mech *m)
{
	for (size_t i = 0; i < st.nrefused; i++) {
		if (st.refused[i].mech != m->type) {
			continue;
		}
		if (st.refused[i].hash == 0) {
			return CKR_MECHANISM_INVALID;
		}
		if (st.refused[i].hash == m->hash) {
			return CKR_MECHANISM_PARAM_INVALID;
		}
	}
	return CKR_OK;
}

static unsigned long to_buf(const unsigned char *data, size_t len, p11s_buf **out)
{
	if (p11s_buf_new(out, len) < 0) {
		return CKR_HOST_MEMORY;
	}
	memcpy((*out)->data, data, len);
	return CKR_OK;
}

/* C_Login(CKU_CONTEXT_SPECIFIC) right after C_SignInit/C_DecryptInit (v2.40 §5.6). */
static unsigned long context_login(p11s_provider *p)
{
	p11s_secret *pin = NULL;
	p11s_slot slot;
	size_t idx, len;
	unsigned long rv;

	fill_slot(&slot);
	if (p->cfg.get_pin == NULL ||
	    p->cfg.get_pin(&slot, P11S_USER_CONTEXT_SPECIFIC, &pin, p->cfg.pin_payload) < 0) {
		return CKR_FUNCTION_CANCELED;
	}
	idx = log_call(P11S_MOCK_OP_LOGIN);
	st.log[idx].user_type = P11S_USER_CONTEXT_SPECIFIC;
	len = p11s_secret_len(pin);
	st.log[idx].pin_len = len;
	rv = take_fault(P11S_MOCK_OP_LOGIN, NULL);
	if (rv == CKR_OK && (len != strlen(st.pin) ||
	                        CRYPTO_memcmp(p11s_secret_data(pin), st.pin, len) != 0)) {
		rv = CKR_PIN_INCORRECT;
	}
	p11s_secret_free(pin);
	st.log[idx].rv = rv;
	return rv;
}

/* An EVP_PKEY_CTX on the key, with RSA padding and digests set from the mechanism. */
static EVP_PKEY_CTX *op_ctx(struct mkey *k, const p11s_mech *m, int decrypt)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(st.libctx, k->pkey, NULL);
	EVP_MD *md = NULL, *mgf = NULL;
	int ok = 0;

	if (c == NULL || (decrypt ? EVP_PKEY_decrypt_init(c) : EVP_PKEY_sign_init(c)) <= 0) {
		goto out;
	}
	switch (m->type) {
	case P11S_MECH_RSA_PKCS:
		ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0;
		break;
	case P11S_MECH_RSA_PKCS_PSS:
		ok = (md = EVP_MD_fetch(st.libctx, md_name(m->hash), NULL)) != NULL &&
		    (mgf = EVP_MD_fetch(st.libctx, mgf_md_name(m->mgf), NULL)) != NULL &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) > 0 &&
		    EVP_PKEY_CTX_set_signature_md(c, md) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, mgf) > 0 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)m->salt_len) > 0;
		break;
	case P11S_MECH_RSA_PKCS_OAEP: {
		unsigned char *label = NULL;

		ok = (md = EVP_MD_fetch(st.libctx, md_name(m->hash), NULL)) != NULL &&
		    (mgf = EVP_MD_fetch(st.libctx, mgf_md_name(m->mgf), NULL)) != NULL &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) > 0 &&
		    EVP_PKEY_CTX_set_rsa_oaep_md(c, md) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, mgf) > 0;
		if (ok && m->label_len > 0) {
			/* set0 takes ownership of a copy. */
			ok = (label = OPENSSL_memdup(m->label, m->label_len)) != NULL &&
			    EVP_PKEY_CTX_set0_rsa_oaep_label(c, label, (int)m->label_len) > 0;
			if (!ok) {
				OPENSSL_free(label);
			}
		}
		break;
	}
	case P11S_MECH_ECDSA:
		ok = 1;
		break;
	default:
		break;
	}
out:
	EVP_MD_free(md);
	EVP_MD_free(mgf);
	if (!ok) {
		EVP_PKEY_CTX_free(c);
		c = NULL;
	}
	return c;
}

/* DER ECDSA-Sig-Value to r||s, nLen bytes each (PKCS#11 v2.40 Current Mechanisms §2.3.1). */
static unsigned long ecdsa_raw(const struct mkey *k, const unsigned char *der, size_t derlen,
    p11s_buf **out)
{
	const unsigned char *p = der;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	size_t n = ((size_t)EVP_PKEY_get_bits(k->pkey) + 7) / 8;
	unsigned long rv = CKR_FUNCTION_FAILED;

	if (s == NULL || p11s_buf_new(out, 2 * n) < 0) {
		goto out;
	}
	if (BN_bn2binpad(ECDSA_SIG_get0_r(s), (*out)->data, (int)n) != (int)n ||
	    BN_bn2binpad(ECDSA_SIG_get0_s(s), (*out)->data + n, (int)n) != (int)n) {
		p11s_buf_free(*out);
		*out = NULL;
		goto out;
	}
	rv = CKR_OK;
out:
	ECDSA_SIG_free(s);
	return rv;
}

/* Mechanism and key checks done at C_SignInit/C_DecryptInit. */
static unsigned long init_checks(const struct mkey *k, const p11s_mech *m, p11s_mock_op op)
{
	unsigned long rv;

	if ((rv = refused(m)) != CKR_OK) {
		return rv;
	}
	switch (m->type) {
	case P11S_MECH_RSA_PKCS:
		return k->type == P11S_KEY_RSA ? CKR_OK : CKR_KEY_TYPE_INCONSISTENT;
	case P11S_MECH_RSA_PKCS_PSS:
		if (op != P11S_MOCK_OP_SIGN) {
			return CKR_MECHANISM_INVALID;
		}
		if (k->type != P11S_KEY_RSA) {
			return CKR_KEY_TYPE_INCONSISTENT;
		}
		return md_name(m->hash) && mgf_md_name(m->mgf) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
	case P11S_MECH_RSA_PKCS_OAEP:
		if (op != P11S_MOCK_OP_DECRYPT) {
			return CKR_MECHANISM_INVALID;
		}
		if (k->type != P11S_KEY_RSA) {
			return CKR_KEY_TYPE_INCONSISTENT;
		}
		return md_name(m->hash) && mgf_md_name(m->mgf) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
	case P11S_MECH_ECDSA:
		if (op != P11S_MOCK_OP_SIGN) {
			return CKR_MECHANISM_INVALID;
		}
		return k->type == P11S_KEY_EC ? CKR_OK : CKR_KEY_TYPE_INCONSISTENT;
	default:
		/* CKM_RSA_X_509 among them: this token, like many HSMs, offers no raw RSA. */
		return CKR_MECHANISM_INVALID;
	}
}

static void log_mech(size_t idx, const struct mkey *k, const p11s_mech *m, size_t inlen)
{
	st.log[idx].mech = m->type;
	st.log[idx].hash = m->hash;
	st.log[idx].mgf = m->mgf;
	st.log[idx].salt_len = m->salt_len;
	st.log[idx].label_len = m->label_len;
	st.log[idx].inlen = inlen;
	if (k != NULL) {
		snprintf(st.log[idx].key, sizeof(st.log[idx].key), "%s", k->label);
	}
}

/* ---- the ops ------------------------------------------------------------------------ */

static int mock_open(p11s_provider *p, const p11s_provider_cfg *cfg)
{
	size_t idx;
	unsigned long rv;
	int rc;

	defaults();
	idx = log_call(P11S_MOCK_OP_OPEN);
	if ((rv = take_fault(P11S_MOCK_OP_OPEN, NULL)) != CKR_OK) {
		return finish(idx, rv, "C_Initialize");
	}
	if ((rc = make_keys()) < 0) {
		st.log[idx].rv = CKR_GENERAL_ERROR;
		return rc;
	}
	/* A new application: the login state of the previous one is gone. */
	st.logged_in = 0;
	return P11S_OK;
}

static int mock_slots(p11s_provider *p, p11s_slot **out, size_t *n)
{
	size_t idx = log_call(P11S_MOCK_OP_SLOTS);
	unsigned long rv;
	p11s_slot *s;

	*out = NULL;
	*n = 0;
	if ((rv = take_fault(P11S_MOCK_OP_SLOTS, NULL)) != CKR_OK) {
		return finish(idx, rv, "C_GetSlotList");
	}
	if ((s = malloc(sizeof(*s))) == NULL) {
		return finish(idx, CKR_HOST_MEMORY, "C_GetSlotList");
	}
	fill_slot(s);
	*out = s;
	*n = 1;
	return P11S_OK;
}

static int mock_login(p11s_provider *p, const p11s_slot *slot, unsigned long user_type,
    const p11s_secret *pin)
{
	size_t idx = log_call(P11S_MOCK_OP_LOGIN), len;
	unsigned long rv;

	st.log[idx].user_type = user_type;
	st.log[idx].pin_null = pin == NULL;
	st.log[idx].pin_len = pin ? p11s_secret_len(pin) : 0;
	/* Only the address: tests check that the caller wiped or unmapped it after login. */
	st.login_pin = pin ? (const void *)p11s_secret_data(pin) : NULL;
	st.login_pin_len = pin ? p11s_secret_len(pin) : 0;
	if ((rv = take_fault(P11S_MOCK_OP_LOGIN, NULL)) != CKR_OK) {
		return finish(idx, rv, "C_Login");
	}
	if (!st.present) {
		return finish(idx, CKR_TOKEN_NOT_PRESENT, "C_Login");
	}
	if (user_type != P11S_USER_NORMAL && user_type != P11S_USER_CONTEXT_SPECIFIC) {
		return finish(idx, CKR_USER_TYPE_INVALID, "C_Login");
	}
	if (st.flags & P11S_TOKEN_USER_PIN_LOCKED) {
		return finish(idx, CKR_PIN_LOCKED, "C_Login");
	}
	if (pin == NULL) {
		/* v2.40 C_Login: a NULL PIN means the reader's PIN pad, if there is one. */
		if (!(st.flags & P11S_TOKEN_PROTECTED_AUTH_PATH)) {
			return finish(idx, CKR_ARGUMENTS_BAD, "C_Login");
		}
	} else {
		len = p11s_secret_len(pin);
		if (len != strlen(st.pin) || CRYPTO_memcmp(p11s_secret_data(pin), st.pin, len) != 0) {
			/* The token counts the failure (v2.40 §5.6: CKF_USER_PIN_COUNT_LOW ...). */
			st.failures++;
			st.flags &= ~(P11S_TOKEN_USER_PIN_COUNT_LOW | P11S_TOKEN_USER_PIN_FINAL_TRY);
			if (st.failures >= PIN_TRIES) {
				st.flags |= P11S_TOKEN_USER_PIN_LOCKED;
			} else if (st.failures == PIN_TRIES - 1) {
				st.flags |= P11S_TOKEN_USER_PIN_FINAL_TRY | P11S_TOKEN_USER_PIN_COUNT_LOW;
			} else {
				st.flags |= P11S_TOKEN_USER_PIN_COUNT_LOW;
			}
			return finish(idx, CKR_PIN_INCORRECT, "C_Login");
		}
	}
	st.failures = 0;
	st.flags &= ~(P11S_TOKEN_USER_PIN_COUNT_LOW | P11S_TOKEN_USER_PIN_FINAL_TRY);
	if (user_type == P11S_USER_NORMAL) {
		st.logged_in = 1;
	} else if (!st.logged_in) {
		return finish(idx, CKR_USER_NOT_LOGGED_IN, "C_Login");
	}
	return P11S_OK;
}

static int mock_logged_in(p11s_provider *p, const p11s_slot *slot)
{
	return st.present && st.logged_in;
}

static int set_bytes(p11s_bytes *b, const unsigned char *data, size_t len)
{
	if ((b->data = malloc(len ? len : 1)) == NULL) {
		return 0;
	}
	memcpy(b->data, data, len);
	b->len = len;
	return 1;
}

static int set_bn(p11s_bytes *b, const EVP_PKEY *pkey, const char *name)
{
	BIGNUM *bn = NULL;
	int len, ok = 0;

	if (!EVP_PKEY_get_bn_param(pkey, name, &bn) || (len = BN_num_bytes(bn)) <= 0 ||
	    (b->data = malloc((size_t)len)) == NULL) {
		goto out;
	}
	b->len = (size_t)BN_bn2bin(bn, b->data);
	ok = 1;
out:
	BN_free(bn);
	return ok;
}

/*
 * CKA_EC_PARAMS: the DER OID of the named curve (v2.40 §2.3.3, RFC 5480 §2.1.1.1); for the
 * X25519 key id-X25519 (PKCS#11 v3.0 §2.3.7's oId choice, RFC 8410 §3).
 */
static int set_ec_params(p11s_bytes *b, const struct mkey *k)
{
	ASN1_OBJECT *oid = OBJ_nid2obj(k->type == P11S_KEY_XDH ? OBJ_sn2nid(k->curve)
	                                                       : EC_curve_nist2nid(k->curve));
	unsigned char *der = NULL;
	int len = oid ? i2d_ASN1_OBJECT(oid, &der) : -1, ok;

	if (len <= 0) {
		return 0;
	}
	ok = set_bytes(b, der, (size_t)len);
	OPENSSL_free(der);
	return ok;
}

/*
 * CKA_EC_POINT: DER OCTET STRING holding the uncompressed point (v2.40 §2.3.3). For the
 * X25519 key the RFC 7748 §5 u-coordinate as is, 32 bytes (PKCS#11 v3.0 §2.3.7), the form
 * tokens that do not wrap it give.
 */
static int set_ec_point(p11s_bytes *b, const struct mkey *k)
{
	unsigned char pt[256], *der = NULL;
	size_t ptlen = 0;
	ASN1_OCTET_STRING *os = NULL;
	int len = -1, ok = 0;

	if (!EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt),
	        &ptlen)) {
		return 0;
	}
	if (k->type == P11S_KEY_XDH) {
		return set_bytes(b, pt, ptlen);
	}
	if ((os = ASN1_OCTET_STRING_new()) != NULL && ASN1_OCTET_STRING_set(os, pt, (int)ptlen)) {
		len = i2d_ASN1_OCTET_STRING(os, &der);
	}
	if (len > 0) {
		ok = set_bytes(b, der, (size_t)len);
	}
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(os);
	return ok;
}

static int fill_object(p11s_object *o, const struct mkey *k, p11s_object_class cls)
{
	o->slot = 0;
	o->cls = cls;
	o->handle = (cls == P11S_OBJ_PRIVATE_KEY ? H_PRIV : cls == P11S_OBJ_PUBLIC_KEY ? H_PUB
	                                                                                : H_CERT) +
	    (uint64_t)(k - st.keys);
	if ((o->label = strdup(k->label)) == NULL || !set_bytes(&o->id, &k->id, 1)) {
		return 0;
	}
	if (cls == P11S_OBJ_CERTIFICATE) {
		const struct mkey *c = k->cert_of != NULL ? k->cert_of : k;

		return set_bytes(&o->value, c->cert, c->cert_len);
	}
	o->key_type = k->type;
	if (k->type == P11S_KEY_RSA) {
		if (!set_bn(&o->modulus, k->pkey, OSSL_PKEY_PARAM_RSA_N) ||
		    !set_bn(&o->public_exponent, k->pkey, OSSL_PKEY_PARAM_RSA_E)) {
			return 0;
		}
	} else {
		if (!set_ec_params(&o->ec_params, k)) {
			return 0;
		}
		if (cls == P11S_OBJ_PUBLIC_KEY && !set_ec_point(&o->ec_point, k)) {
			return 0;
		}
	}
	if (cls == P11S_OBJ_PRIVATE_KEY) {
		o->always_authenticate = k->always_auth;
		o->can_sign = k->type != P11S_KEY_XDH;
		o->can_decrypt = k->type == P11S_KEY_RSA;
		o->can_derive = k->type == P11S_KEY_EC || k->type == P11S_KEY_XDH;
	}
	return 1;
}

static int mock_objects(p11s_provider *p, const p11s_slot *slot, p11s_object **out, size_t *n)
{
	size_t idx = log_call(P11S_MOCK_OP_OBJECTS), count = 0;
	unsigned long rv;
	p11s_object *v;

	*out = NULL;
	*n = 0;
	if ((rv = take_fault(P11S_MOCK_OP_OBJECTS, NULL)) != CKR_OK) {
		return finish(idx, rv, "C_FindObjects");
	}
	if (!st.present) {
		return finish(idx, CKR_TOKEN_NOT_PRESENT, "C_OpenSession");
	}
	if ((v = calloc(3 * NKEYS, sizeof(*v))) == NULL) {
		return finish(idx, CKR_HOST_MEMORY, "C_FindObjects");
	}
	for (size_t i = 0; i < NKEYS; i++) {
		int ok = fill_object(&v[count++], &st.keys[i], P11S_OBJ_CERTIFICATE) &&
		    fill_object(&v[count++], &st.keys[i], P11S_OBJ_PUBLIC_KEY);

		/* Private objects are visible only after login (v2.40 §4.4 CKA_PRIVATE). */
		if (ok && st.logged_in) {
			ok = fill_object(&v[count++], &st.keys[i], P11S_OBJ_PRIVATE_KEY);
		}
		if (!ok) {
			p11s_objects_free(v, count);
			return finish(idx, CKR_HOST_MEMORY, "C_GetAttributeValue");
		}
	}
	st.log[idx].outlen = count;
	*out = v;
	*n = count;
	return P11S_OK;
}

/* Shared start of sign/decrypt/derive: log, faults, session and key checks, context login. */
static unsigned long begin(p11s_provider *p, size_t idx, p11s_mock_op op, const p11s_object *key,
    const p11s_mech *m, struct mkey **kout, size_t *drop, const char **what)
{
	struct mkey *k = key_by_handle(key->handle);
	unsigned long rv;

	*kout = k;
	log_mech(idx, k, m, st.log[idx].inlen);
	*what = op == P11S_MOCK_OP_SIGN ? "C_Sign" : op == P11S_MOCK_OP_DECRYPT ? "C_Decrypt"
	                                                                        : "C_DeriveKey";
	if ((rv = take_fault(op, drop)) != CKR_OK) {
		return rv;
	}
	if (!st.present) {
		return CKR_DEVICE_REMOVED;
	}
	if (!st.logged_in) {
		return CKR_USER_NOT_LOGGED_IN;
	}
	if (k == NULL) {
		return CKR_KEY_HANDLE_INVALID;
	}
	if (op != P11S_MOCK_OP_DERIVE) {
		*what = op == P11S_MOCK_OP_SIGN ? "C_SignInit" : "C_DecryptInit";
		if ((rv = init_checks(k, m, op)) != CKR_OK) {
			return rv;
		}
		*what = op == P11S_MOCK_OP_SIGN ? "C_Sign" : "C_Decrypt";
	} else if (k->type != P11S_KEY_EC && k->type != P11S_KEY_XDH) {
		/* PKCS#11 v3.0 §2.3.17: CKM_ECDH1_DERIVE takes CKK_EC, CKK_EC_MONTGOMERY keys. */
		return CKR_KEY_TYPE_INCONSISTENT;
	} else if ((rv = refused(m)) != CKR_OK) {
		return rv;
	}
	if (k->always_auth && op != P11S_MOCK_OP_DERIVE) {
		if ((rv = context_login(p)) != CKR_OK) {
			*what = "C_Login";
			return rv;
		}
	}
	return CKR_OK;
}

static int mock_sign(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	size_t idx = log_call(P11S_MOCK_OP_SIGN), drop = 0, siglen = 0;
	const char *what;
	unsigned char *sig = NULL;
	EVP_PKEY_CTX *c = NULL;
	struct mkey *k;
	unsigned long rv;

	*out = NULL;
	/* A module's own OpenSSL errors stay out of the caller's queue. */
	ERR_set_mark();
	st.log[idx].inlen = inlen;
	if ((rv = begin(p, idx, P11S_MOCK_OP_SIGN, key, mech, &k, &drop, &what)) != CKR_OK) {
		goto out;
	}
	if (mech->type == P11S_MECH_RSA_PKCS_PSS &&
	    inlen != md_size(mech->hash)) {
		rv = CKR_DATA_LEN_RANGE;
		goto out;
	}
	if ((c = op_ctx(k, mech, 0)) == NULL) {
		rv = CKR_MECHANISM_PARAM_INVALID;
		what = "C_SignInit";
		goto out;
	}
	if (EVP_PKEY_sign(c, NULL, &siglen, in, inlen) <= 0 ||
	    (sig = OPENSSL_malloc(siglen)) == NULL ||
	    EVP_PKEY_sign(c, sig, &siglen, in, inlen) <= 0) {
		/* Too long for the modulus, mostly. */
		rv = CKR_DATA_LEN_RANGE;
		goto out;
	}
	if (mech->type == P11S_MECH_ECDSA) {
		rv = ecdsa_raw(k, sig, siglen, out);
	} else {
		rv = to_buf(sig, siglen, out);
	}
	if (rv == CKR_OK && drop > 0) {
		/* Injected: a token returning fewer bytes than the signature has. */
		(*out)->len = drop < (*out)->len ? (*out)->len - drop : 0;
	}
out:
	OPENSSL_free(sig);
	EVP_PKEY_CTX_free(c);
	ERR_pop_to_mark();
	if (rv != CKR_OK) {
		p11s_buf_free(*out);
		*out = NULL;
		return finish(idx, rv, what);
	}
	st.log[idx].outlen = (*out)->len;
	return P11S_OK;
}

static int mock_decrypt(p11s_provider *p, const p11s_object *key, const p11s_mech *mech,
    const unsigned char *in, size_t inlen, p11s_buf **out)
{
	size_t idx = log_call(P11S_MOCK_OP_DECRYPT), ptlen = 0;
	const char *what;
	unsigned char *pt = NULL;
	EVP_PKEY_CTX *c = NULL;
	struct mkey *k;
	unsigned long rv;

	*out = NULL;
	/* A module's own OpenSSL errors stay out of the caller's queue. */
	ERR_set_mark();
	st.log[idx].inlen = inlen;
	if ((rv = begin(p, idx, P11S_MOCK_OP_DECRYPT, key, mech, &k, NULL, &what)) != CKR_OK) {
		goto out;
	}
	if (inlen != (size_t)EVP_PKEY_get_size(k->pkey)) {
		rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
		goto out;
	}
	if ((c = op_ctx(k, mech, 1)) == NULL) {
		rv = CKR_MECHANISM_PARAM_INVALID;
		what = "C_DecryptInit";
		goto out;
	}
	if (EVP_PKEY_decrypt(c, NULL, &ptlen, in, inlen) <= 0 ||
	    (pt = OPENSSL_malloc(ptlen)) == NULL ||
	    EVP_PKEY_decrypt(c, pt, &ptlen, in, inlen) <= 0) {
		/* One answer for every padding failure, as tokens give. */
		rv = CKR_ENCRYPTED_DATA_INVALID;
		goto out;
	}
	rv = to_buf(pt, ptlen, out);
out:
	OPENSSL_clear_free(pt, ptlen);
	EVP_PKEY_CTX_free(c);
	ERR_pop_to_mark();
	if (rv != CKR_OK) {
		p11s_buf_free(*out);
		*out = NULL;
		return finish(idx, rv, what);
	}
	st.log[idx].outlen = (*out)->len;
	return P11S_OK;
}

static int mock_derive(p11s_provider *p, const p11s_object *key, const unsigned char *peer,
    size_t peer_len, p11s_buf **out)
{
	static const p11s_mech ecdh = { P11S_MECH_ECDH1_DERIVE, 0, 0, 0, NULL, 0 };
	size_t idx = log_call(P11S_MOCK_OP_DERIVE), zlen = 0;
	const char *what;
	unsigned char *z = NULL;
	EVP_PKEY_CTX *pc = NULL, *c = NULL;
	EVP_PKEY *pk = NULL;
	OSSL_PARAM params[3];
	struct mkey *k;
	unsigned long rv;

	*out = NULL;
	/* A module's own OpenSSL errors stay out of the caller's queue. */
	ERR_set_mark();
	st.log[idx].inlen = peer_len;
	if ((rv = begin(p, idx, P11S_MOCK_OP_DERIVE, key, &ecdh, &k, NULL, &what)) != CKR_OK) {
		goto out;
	}
	if (k->type == P11S_KEY_XDH) {
		size_t want = 0;

		/*
		 * PKCS#11 v3.0 §2.3.16: for a Montgomery key pPublicData is the peer's u-coordinate
		 * as RFC 7748 §5 encodes it, as long as the key's own (32 bytes for X25519).
		 */
		if (!EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, NULL, 0,
		        &want) ||
		    peer_len != want) {
			rv = CKR_MECHANISM_PARAM_INVALID;
			goto out;
		}
		pk = EVP_PKEY_new_raw_public_key_ex(st.libctx, k->curve, NULL, peer, peer_len);
		if (pk == NULL) {
			rv = CKR_MECHANISM_PARAM_INVALID;
			goto out;
		}
	} else {
		/* The ABI passes the raw uncompressed point (04||X||Y). */
		if (peer_len < 3 || peer[0] != POINT_CONVERSION_UNCOMPRESSED) {
			rv = CKR_MECHANISM_PARAM_INVALID;
			goto out;
		}
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
		    (char *)OBJ_nid2sn(EC_curve_nist2nid(k->curve)), 0);
		params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)peer,
		    peer_len);
		params[2] = OSSL_PARAM_construct_end();
		if ((pc = EVP_PKEY_CTX_new_from_name(st.libctx, "EC", NULL)) == NULL ||
		    EVP_PKEY_fromdata_init(pc) <= 0 ||
		    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
			rv = CKR_MECHANISM_PARAM_INVALID;
			goto out;
		}
	}
	if ((c = EVP_PKEY_CTX_new_from_pkey(st.libctx, k->pkey, NULL)) == NULL ||
	    EVP_PKEY_derive_init(c) <= 0 || EVP_PKEY_derive_set_peer(c, pk) <= 0 ||
	    EVP_PKEY_derive(c, NULL, &zlen) <= 0 || (z = OPENSSL_malloc(zlen)) == NULL ||
	    EVP_PKEY_derive(c, z, &zlen) <= 0) {
		rv = CKR_MECHANISM_PARAM_INVALID;
		goto out;
	}
	rv = to_buf(z, zlen, out);
out:
	OPENSSL_clear_free(z, zlen);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(pk);
	ERR_pop_to_mark();
	if (rv != CKR_OK) {
		p11s_buf_free(*out);
		*out = NULL;
		return finish(idx, rv, what);
	}
	st.log[idx].outlen = (*out)->len;
	return P11S_OK;
}

static void mock_close(p11s_provider *p)
{
	log_call(P11S_MOCK_OP_CLOSE);
	/* C_Finalize ends the application's login (v2.40 §5.4). */
	st.logged_in = 0;
}

const struct p11s_provider_ops p11s_mock_ops = {
	.abi = P11S_PROVIDER_ABI,
	.name = "mock",
	.caps = P11S_CAP_RSA_PKCS_SIGN | P11S_CAP_RSA_PSS | P11S_CAP_RSA_PKCS_DECRYPT |
	    P11S_CAP_RSA_OAEP | P11S_CAP_ECDSA | P11S_CAP_ECDH | P11S_CAP_CONTEXT_LOGIN |
	    P11S_CAP_PROTECTED_AUTH,
	.priv_size = 0,
	.open = mock_open,
	.slots = mock_slots,
	.login = mock_login,
	.logged_in = mock_logged_in,
	.objects = mock_objects,
	.sign = mock_sign,
	.decrypt = mock_decrypt,
	.derive = mock_derive,
	.close = mock_close,
};

/*
 * What the bridge's operations (signature.c, asym_cipher.c, keyexch.c) have in common: the
 * context head with the key reference (new, dup, free, init), and the OSSL_PARAM handling
 * they share (padding modes, digest names, copied octet strings).
 *
 * The rules come from provider-signature(7), provider-asym_cipher(7) and provider-keyexch(7),
 * which say the same for the three operations: newctx/dupctx return a new context or NULL,
 * freectx frees what the context holds, the init functions take a keymgmt key object and set
 * the params given "in a manner similar to" set_ctx_params, and set_ctx_params with NULL
 * params succeeds.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/proverr.h>
#include <openssl/rsa.h>

#include "bridge/bridge_int.h"

/* ---- the context head ---------------------------------------------------------------- */

void *p11s_bridge__op_new(void *provctx, size_t size)
{
	p11s_bridge_op *op = OPENSSL_zalloc(size);

	if (op != NULL) {
		op->prov = provctx;
	}
	return op;
}

void p11s_bridge__op_free(void *vctx)
{
	p11s_bridge_op *op = vctx;

	if (op == NULL) {
		return;
	}
	EVP_PKEY_free(op->pub);
	OPENSSL_free(op);
}

void *p11s_bridge__op_dup(const void *vctx, size_t size)
{
	p11s_bridge_op *d;

	/*
	 * A byte copy: the caller clears and copies what else the context owns. The token key
	 * reference is borrowed from the keymgmt's key object, so both copies share it.
	 */
	if ((d = OPENSSL_memdup(vctx, size)) == NULL) {
		return NULL;
	}
	if (d->pub != NULL && !EVP_PKEY_up_ref(d->pub)) {
		OPENSSL_free(d);
		return NULL;
	}
	return d;
}

int p11s_bridge__op_use_key(void *vctx, const p11s_bkey *k)
{
	p11s_bridge_op *op = vctx;

	if (!EVP_PKEY_up_ref(k->pub)) {
		return 0;
	}
	EVP_PKEY_free(op->pub);
	op->pub = k->pub;
	op->ref = k->ref;
	return 1;
}

int p11s_bridge__op_token_key(void *vctx, void *provkey, int type)
{
	p11s_bkey *k = provkey;

	if (vctx == NULL || k == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	if (k->type != type || k->ref == NULL || k->pub == NULL || !k->has_pub) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_NOT_A_PRIVATE_KEY,
		    "p11s: the key has no token reference");
		return 0;
	}
	return p11s_bridge__op_use_key(vctx, k);
}

int p11s_bridge__op_size(const void *vctx, int *size)
{
	const p11s_bridge_op *op = vctx;

	if (op == NULL || op->ref == NULL || op->pub == NULL) {
		ERR_raise(ERR_LIB_PROV, PROV_R_MISSING_KEY);
		return 0;
	}
	return (*size = EVP_PKEY_get_size(op->pub)) > 0;
}

/* ---- parameters ---------------------------------------------------------------------- */

static const struct {
	int pad;
	const char *name;
} pad_names[] = {
	{ RSA_PKCS1_PADDING, OSSL_PKEY_RSA_PAD_MODE_PKCSV15 },
	{ RSA_NO_PADDING, OSSL_PKEY_RSA_PAD_MODE_NONE },
	{ RSA_PKCS1_OAEP_PADDING, OSSL_PKEY_RSA_PAD_MODE_OAEP },
	{ RSA_X931_PADDING, OSSL_PKEY_RSA_PAD_MODE_X931 },
	{ RSA_PKCS1_PSS_PADDING, OSSL_PKEY_RSA_PAD_MODE_PSS },
};

/* OpenSSL 3.0 trap: the pad mode comes as an integer or as a string, and is answered alike. */
static int pad_get(const OSSL_PARAM *p, int *pad)
{
	if (p->data_type == OSSL_PARAM_UTF8_STRING) {
		for (size_t i = 0; i < sizeof(pad_names) / sizeof(pad_names[0]); i++) {
			if (p->data != NULL && OPENSSL_strcasecmp(p->data, pad_names[i].name) == 0) {
				*pad = pad_names[i].pad;
				return 1;
			}
		}
		return 0;
	}
	return OSSL_PARAM_get_int(p, pad);
}

int p11s_bridge__set_pad(const OSSL_PARAM params[], const char *key, int alt, int *pad)
{
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, key);
	int v;

	if (p == NULL) {
		return 1;
	}
	if (!pad_get(p, &v)) {
		ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_PADDING_MODE);
		return 0;
	}
	/*
	 * Never raw RSA (CKM_RSA_X_509) or X9.31: only what the token does as a whole
	 * mechanism, padding included (DESIGN.md decision 1).
	 */
	if (v != RSA_PKCS1_PADDING && v != alt) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_ILLEGAL_OR_UNSUPPORTED_PADDING_MODE,
		    "p11s: padding mode %d is not offered for token keys", v);
		return 0;
	}
	*pad = v;
	return 1;
}

int p11s_bridge__get_pad(OSSL_PARAM params[], const char *key, int pad)
{
	OSSL_PARAM *p = OSSL_PARAM_locate(params, key);

	if (p == NULL) {
		return 1;
	}
	if (p->data_type == OSSL_PARAM_UTF8_STRING) {
		for (size_t i = 0; i < sizeof(pad_names) / sizeof(pad_names[0]); i++) {
			if (pad_names[i].pad == pad) {
				return OSSL_PARAM_set_utf8_string(p, pad_names[i].name);
			}
		}
		return 0;
	}
	return OSSL_PARAM_set_int(p, pad);
}

int p11s_bridge__set_md(OSSL_LIB_CTX *libctx, const OSSL_PARAM params[], const char *key,
    const p11s_bridge_md **md)
{
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, key);
	const char *name = NULL;
	const p11s_bridge_md *found;

	if (p == NULL) {
		return 1;
	}
	if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) ||
	    (found = p11s_bridge__md(libctx, name)) == NULL) {
		ERR_raise_data(ERR_LIB_PROV, PROV_R_INVALID_DIGEST, "p11s: digest %s",
		    name ? name : "?");
		return 0;
	}
	*md = found;
	return 1;
}

int p11s_bridge__get_md(OSSL_PARAM params[], const char *key, const p11s_bridge_md *md,
    const char *none)
{
	OSSL_PARAM *p = OSSL_PARAM_locate(params, key);

	/* The short name ("SHA256"), as the default provider answers. */
	return p == NULL || OSSL_PARAM_set_utf8_string(p, md ? OBJ_nid2sn(md->nid) : none);
}

int p11s_bridge__set_octets(const OSSL_PARAM params[], const char *key, unsigned char **buf,
    size_t *len)
{
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, key);
	void *v = NULL;
	size_t n = 0;

	if (p == NULL) {
		return 1;
	}
	/* Copied: EVP_PKEY_CTX_set0_*() frees the caller's buffer after us. */
	if (!OSSL_PARAM_get_octet_string(p, &v, 0, &n)) {
		return 0;
	}
	OPENSSL_free(*buf);
	*buf = n ? v : NULL;
	*len = n;
	if (n == 0) {
		OPENSSL_free(v);
	}
	return 1;
}

int p11s_bridge__get_octets(OSSL_PARAM params[], const char *key, const unsigned char *buf,
    size_t len)
{
	OSSL_PARAM *p = OSSL_PARAM_locate(params, key);

	return p == NULL || OSSL_PARAM_set_octet_ptr(p, buf, len);
}

int p11s_bridge__dup_octets(unsigned char **dst, const unsigned char *src, size_t len)
{
	*dst = NULL;
	return src == NULL || (*dst = OPENSSL_memdup(src, len)) != NULL;
}

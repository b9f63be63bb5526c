/*
 * Private keys on tokens: lookup by RFC 7512 URI (exactly one match, or an error listing the
 * candidates), the certificate with the same CKA_ID, the public key, and the private
 * operations the bridge forwards (capability check, login, backend call).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <p11-kit/pkcs11.h>

#include <p11smime/log.h>

#include "core/error_int.h"
#include "core/pin_int.h"
#include "token/token_int.h"
#include "token/uri_int.h"

/* At most this many candidates are named in an "ambiguous URI" message. */
#define AMBIGUOUS_LIST_MAX 8

typedef struct key_vec {
	p11s_key **v;
	size_t n, cap;
} key_vec;

static int bytes_dup(p11s_bytes *dst, const p11s_bytes *src)
{
	dst->data = NULL;
	dst->len = 0;
	if (src->len == 0) {
		return P11S_OK;
	}
	if ((dst->data = malloc(src->len)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
	return P11S_OK;
}

/* Copy what a key needs of a backend object (the backend's array is freed afterwards). */
static int obj_copy(p11s_object *dst, const p11s_object *src)
{
	int rc;

	*dst = *src;
	dst->label = NULL;
	dst->id = dst->modulus = dst->public_exponent = dst->ec_params = dst->ec_point =
	    dst->value = (p11s_bytes){ NULL, 0 };
	if ((dst->label = strdup(src->label ? src->label : "")) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rc = bytes_dup(&dst->id, &src->id)) < 0 ||
	    (rc = bytes_dup(&dst->modulus, &src->modulus)) < 0 ||
	    (rc = bytes_dup(&dst->public_exponent, &src->public_exponent)) < 0 ||
	    (rc = bytes_dup(&dst->ec_params, &src->ec_params)) < 0 ||
	    (rc = bytes_dup(&dst->ec_point, &src->ec_point)) < 0) {
		return rc;
	}
	return P11S_OK;
}

static int same_id(const p11s_object *a, const p11s_object *b)
{
	return a->id.len == b->id.len && (a->id.len == 0 || memcmp(a->id.data, b->id.data,
	                                                         a->id.len) == 0);
}

static const char *curve_name(int nid)
{
	switch (nid) {
	case NID_X9_62_prime256v1:
		return "P-256";
	case NID_secp384r1:
		return "P-384";
	case NID_secp521r1:
		return "P-521";
	default:
		return OBJ_nid2sn(nid);
	}
}

/* The curve NID of a DER OID in CKA_EC_PARAMS (named curves only, RFC 5480 §2.1.1). */
static int ec_params_nid(const p11s_bytes *params)
{
	const unsigned char *p = params->data;
	ASN1_OBJECT *oid;
	int nid;

	if (params->len == 0 || (oid = d2i_ASN1_OBJECT(NULL, &p, (long)params->len)) == NULL) {
		return NID_undef;
	}
	nid = OBJ_obj2nid(oid);
	ASN1_OBJECT_free(oid);
	return nid;
}

/*
 * CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 v2.40 §2.3.3); some tokens
 * give the raw point. Unwrap when the bytes parse as exactly one OCTET STRING.
 */
static int ec_point_raw(const p11s_bytes *pt, unsigned char **out, size_t *outlen)
{
	const unsigned char *p = pt->data;
	ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)pt->len);

	if (os != NULL && p == pt->data + pt->len && ASN1_STRING_length(os) > 0) {
		*outlen = (size_t)ASN1_STRING_length(os);
		*out = malloc(*outlen);
		if (*out != NULL) {
			memcpy(*out, ASN1_STRING_get0_data(os), *outlen);
		}
	} else {
		*outlen = pt->len;
		*out = malloc(pt->len ? pt->len : 1);
		if (*out != NULL) {
			memcpy(*out, pt->data, pt->len);
		}
	}
	ASN1_OCTET_STRING_free(os);
	return *out ? P11S_OK : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

/*
 * The two curves of an RFC 8410 key family, as CKA_EC_PARAMS may name them (PKCS#11 v3.0
 * §2.3.5-§2.3.8): the oId choice with the RFC 8410 §3 OID, or the curveName choice, a
 * PrintableString with the curve's name in RFC 8032 (Edwards) or RFC 7748 (Montgomery).
 */
typedef struct rfc8410_curve {
	int nid;
	const char *name;    /* PKCS#11 curveName */
	size_t key_len;      /* the raw public key: RFC 8032 §5.1.5, §5.2.5; RFC 7748 §5 */
	const char *ossl;    /* OpenSSL's key type name */
	const char *display; /* what p11s_key_curve() answers */
} rfc8410_curve;

static const rfc8410_curve edwards[] = {
	{ NID_ED25519, "edwards25519", 32, "ED25519", "Ed25519" },
	{ NID_ED448, "edwards448", 57, "ED448", "Ed448" },
	{ NID_undef, NULL, 0, NULL, NULL },
};

static const rfc8410_curve montgomery[] = {
	{ NID_X25519, "curve25519", 32, "X25519", "X25519" },
	{ NID_X448, "curve448", 56, "X448", "X448" },
	{ NID_undef, NULL, 0, NULL, NULL },
};

/* The entry of `family` that CKA_EC_PARAMS names, or NULL. */
static const rfc8410_curve *rfc8410_params(const p11s_bytes *params, const rfc8410_curve *family)
{
	const unsigned char *p = params->data;
	const rfc8410_curve *found = NULL;
	ASN1_PRINTABLESTRING *ps;
	int nid = ec_params_nid(params);

	for (const rfc8410_curve *c = family; c->name != NULL && found == NULL; c++) {
		if (nid == c->nid) {
			found = c;
		}
	}
	if (found == NULL && params->len > 0 &&
	    (ps = d2i_ASN1_PRINTABLESTRING(NULL, &p, (long)params->len)) != NULL) {
		for (const rfc8410_curve *c = family; c->name != NULL && found == NULL; c++) {
			if ((size_t)ASN1_STRING_length(ps) == strlen(c->name) &&
			    memcmp(ASN1_STRING_get0_data(ps), c->name, strlen(c->name)) == 0) {
				found = c;
			}
		}
		ASN1_PRINTABLESTRING_free(ps);
	}
	ERR_clear_error();
	return found;
}

/*
 * The curve of an Edwards or Montgomery key: the private key's CKA_EC_PARAMS first, then the
 * public object's (SoftHSM 2.6.1 stores an Edwards private key's in a form that does not
 * parse as either choice).
 */
static const rfc8410_curve *rfc8410_key_curve(const p11s_object *key,
    const p11s_object *pubobj, const rfc8410_curve *family)
{
	const rfc8410_curve *c = rfc8410_params(&key->ec_params, family);

	if (c == NULL && pubobj != NULL) {
		c = rfc8410_params(&pubobj->ec_params, family);
	}
	return c;
}

/* The Montgomery curve whose keys are `len` bytes long (RFC 7748 §5), or NULL. */
static const rfc8410_curve *xdh_by_len(size_t len)
{
	for (const rfc8410_curve *c = montgomery; c->name != NULL; c++) {
		if (len == c->key_len) {
			return c;
		}
	}
	return NULL;
}

/*
 * The raw X25519/X448 public key of a Montgomery key's CKA_EC_POINT. PKCS#11 v3.0 §2.3.7
 * gives the RFC 7748 §5 u-coordinate as is (32 or 56 bytes); tokens that store every
 * CKA_EC_POINT as a DER OCTET STRING wrap it, which makes it 34 or 58 bytes: a length of 32
 * or 56 is taken as raw, anything else is unwrapped. `*curve` (NULL when CKA_EC_PARAMS named
 * none) is then the curve of that length, which must agree with CKA_EC_PARAMS. 1 with the key
 * in `*out` (free()), 0 if there is none (or no memory).
 */
static int xdh_point(const p11s_bytes *pt, const rfc8410_curve **curve, unsigned char **out,
    size_t *outlen)
{
	const rfc8410_curve *by_len = xdh_by_len(pt->len);

	*out = NULL;
	*outlen = 0;
	if (by_len != NULL) {
		if ((*out = malloc(pt->len)) == NULL) {
			return 0;
		}
		memcpy(*out, pt->data, pt->len);
		*outlen = pt->len;
	} else if (ec_point_raw(pt, out, outlen) == P11S_OK) {
		by_len = xdh_by_len(*outlen);
	}
	if (by_len == NULL || (*curve != NULL && *curve != by_len)) {
		free(*out);
		*out = NULL;
		*outlen = 0;
		return 0;
	}
	*curve = by_len;
	return 1;
}

/* A public EVP_PKEY from RSA attributes or EC params and point. NULL if there is not enough. */
static EVP_PKEY *pub_from_attrs(const p11s_object *key, const p11s_object *pubobj)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = NULL, *e = NULL;
	unsigned char *point = NULL;
	size_t point_len = 0;
	const char *type = NULL;

	if (bld == NULL) {
		return NULL;
	}
	if (key->key_type == P11S_KEY_RSA) {
		const p11s_object *src = key->modulus.len ? key : pubobj;

		if (src == NULL || src->modulus.len == 0 || src->public_exponent.len == 0) {
			goto out;
		}
		n = BN_bin2bn(src->modulus.data, (int)src->modulus.len, NULL);
		e = BN_bin2bn(src->public_exponent.data, (int)src->public_exponent.len, NULL);
		if (n == NULL || e == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			goto out;
		}
		type = "RSA";
	} else if (key->key_type == P11S_KEY_EC) {
		const p11s_bytes *ecp = key->ec_params.len ? &key->ec_params
		    : pubobj                               ? &pubobj->ec_params
		                                           : NULL;
		int nid = ecp ? ec_params_nid(ecp) : NID_undef;

		if (nid == NID_undef || pubobj == NULL || pubobj->ec_point.len == 0 ||
		    ec_point_raw(&pubobj->ec_point, &point, &point_len) < 0) {
			goto out;
		}
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid),
		        0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, point_len)) {
			goto out;
		}
		type = "EC";
	} else if (key->key_type == P11S_KEY_EDDSA) {
		/*
		 * RFC 8410 §4 / PKCS#11 v3.0 §2.3.6: CKA_EC_POINT holds the 32-byte (Ed25519) or
		 * 57-byte (Ed448) encoded point, as a DER OCTET STRING on most tokens.
		 */
		const rfc8410_curve *c = rfc8410_key_curve(key, pubobj, edwards);

		if (c == NULL || pubobj == NULL || pubobj->ec_point.len == 0 ||
		    ec_point_raw(&pubobj->ec_point, &point, &point_len) < 0 ||
		    point_len != c->key_len ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, point_len)) {
			goto out;
		}
		type = c->ossl;
	} else if (key->key_type == P11S_KEY_XDH) {
		/*
		 * RFC 8410 §4 / PKCS#11 v3.0 §2.3.7: the u-coordinate in CKA_EC_POINT, on the public
		 * object (where the standard puts it) or, failing that, on the private key (some
		 * tokens keep it there too). Without a curve in CKA_EC_PARAMS its length tells.
		 */
		const rfc8410_curve *c = rfc8410_key_curve(key, pubobj, montgomery);
		const p11s_bytes *src = &key->ec_point;

		if (pubobj != NULL && pubobj->ec_point.len > 0) {
			src = &pubobj->ec_point;
		}
		if (src->len == 0 || !xdh_point(src, &c, &point, &point_len) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
		        point_len)) {
			goto out;
		}
		type = c->ossl;
	} else {
		goto out;
	}
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		pkey = NULL;
	}
out:
	free(point);
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	return pkey;
}

/* The entry of `family` whose key type `pkey` is, or NULL. */
static const rfc8410_curve *rfc8410_pkey_curve(const EVP_PKEY *pkey, const rfc8410_curve *family)
{
	for (const rfc8410_curve *c = family; pkey != NULL && c->name != NULL; c++) {
		if (EVP_PKEY_is_a(pkey, c->ossl)) {
			return c;
		}
	}
	return NULL;
}

/*
 * An X25519/X448 key cannot show that a certificate is its own the way a signing key does
 * (each signature is checked with the certificate's key before it is released, DESIGN.md
 * decision 3): an agreement made with another key's certificate only ends in a key unwrap
 * that fails (RFC 8418 §2). So a Montgomery key keeps the certificate with its CKA_ID only
 * when that certificate holds an X25519/X448 key (RFC 8410 §4) equal to the one the token's
 * attributes give, or, where the token gives no public key, one of the curve CKA_EC_PARAMS
 * names. Otherwise the certificate is left out (with a warning) and the attributes' key used.
 */
static void xdh_check_cert(p11s_key *k, const p11s_slot *slot, const p11s_object *priv,
    const p11s_object *pubobj, const p11s_object *cert)
{
	const rfc8410_curve *c;
	EVP_PKEY *attrs;
	const char *why = NULL;

	if (k->cert == NULL) {
		return;
	}
	attrs = pub_from_attrs(priv, pubobj);
	if (rfc8410_pkey_curve(k->pub, montgomery) == NULL) {
		why = "is not an X25519 or X448 key";
	} else if (attrs != NULL && EVP_PKEY_eq(k->pub, attrs) != 1) {
		why = "is not the key's own (CKA_EC_POINT)";
	} else if (attrs == NULL && (c = rfc8410_key_curve(priv, pubobj, montgomery)) != NULL &&
	    !EVP_PKEY_is_a(k->pub, c->ossl)) {
		why = "is not on the key's curve (CKA_EC_PARAMS)";
	}
	if (why == NULL) {
		EVP_PKEY_free(attrs);
		return;
	}
	p11s_log(P11S_LOG_WARN, "token '%s': the public key of certificate '%s' %s; key '%s' is "
	                        "used without it", slot->info.label, cert->label, why, priv->label);
	X509_free(k->cert);
	k->cert = NULL;
	EVP_PKEY_free(k->pub);
	k->pub = attrs;
	ERR_clear_error();
}

p11s_key *p11s_key_up_ref(p11s_key *key)
{
	if (key != NULL) {
		__atomic_add_fetch(&key->extra_refs, 1, __ATOMIC_RELAXED);
	}
	return key;
}

void p11s_key_free(p11s_key *key)
{
	if (key == NULL) {
		return;
	}
	/* Another holder (p11s_key_up_ref()) still uses it. */
	if (__atomic_fetch_sub(&key->extra_refs, 1, __ATOMIC_ACQ_REL) > 0) {
		return;
	}
	p11s_object_clear(&key->obj);
	X509_free(key->cert);
	sk_X509_pop_free(key->cas, X509_free);
	EVP_PKEY_free(key->pub);
	free(key->uri);
	p11s_pin_source_free(key->uri_pins);
	free(key);
}

/* Make a key from the private key objs[i] of a token and its neighbours (cert, public key). */
static int key_new(p11s_ctx *ctx, const p11s_slot *slot, const p11s_object *objs, size_t n,
    size_t i, p11s_key **out)
{
	const p11s_object *priv = &objs[i], *cert = NULL, *pubobj = NULL;
	p11s_key *k;
	int rc;

	*out = NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	k->ctx = ctx;
	k->slot = *slot;
	if ((rc = obj_copy(&k->obj, priv)) < 0) {
		goto out;
	}
	for (size_t j = 0; j < n; j++) {
		if (!same_id(&objs[j], priv) || priv->id.len == 0) {
			continue;
		}
		if (objs[j].cls == P11S_OBJ_CERTIFICATE && cert == NULL) {
			cert = &objs[j];
		} else if (objs[j].cls == P11S_OBJ_PUBLIC_KEY && pubobj == NULL) {
			pubobj = &objs[j];
		}
	}
	if (cert != NULL && cert->value.len > 0) {
		const unsigned char *p = cert->value.data;

		/* An unparsable certificate is reported by `keys`, not fatal for the key itself. */
		k->cert = d2i_X509(NULL, &p, (long)cert->value.len);
		if (k->cert == NULL) {
			p11s_log(P11S_LOG_WARN, "token '%s': certificate '%s' does not parse",
			    slot->info.label, cert->label);
		}
	}
	k->card_gen = p11s_token__card_gen(ctx);
	if ((k->cas = sk_X509_new_null()) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < n; j++) {
		const unsigned char *p = objs[j].value.data;
		X509 *ca;

		if (objs[j].cls != P11S_OBJ_CERTIFICATE || &objs[j] == cert || objs[j].value.len == 0 ||
		    (ca = d2i_X509(NULL, &p, (long)objs[j].value.len)) == NULL) {
			continue;
		}
		if (X509_check_ca(ca) <= 0 || !sk_X509_push(k->cas, ca)) {
			X509_free(ca);
		}
	}
	if (k->cert != NULL && (k->pub = X509_get_pubkey(k->cert)) != NULL) {
		/* The certificate's key is the one that must match the token's private key. */
	} else {
		k->pub = pub_from_attrs(priv, pubobj);
	}
	if (k->obj.key_type == P11S_KEY_XDH) {
		xdh_check_cert(k, slot, priv, pubobj, cert);
	}
	if (k->obj.key_type == P11S_KEY_EC) {
		const p11s_bytes *ecp = priv->ec_params.len ? &priv->ec_params
		    : pubobj                                ? &pubobj->ec_params
		                                            : NULL;
		int nid = ecp ? ec_params_nid(ecp) : NID_undef;

		if (nid == NID_undef && k->pub != NULL) {
			char gname[64];

			if (EVP_PKEY_get_utf8_string_param(k->pub, OSSL_PKEY_PARAM_GROUP_NAME, gname,
			        sizeof(gname), NULL)) {
				nid = OBJ_sn2nid(gname);
			}
		}
		if (nid != NID_undef) {
			snprintf(k->curve, sizeof(k->curve), "%s", curve_name(nid));
		}
	} else if (k->obj.key_type == P11S_KEY_EDDSA || k->obj.key_type == P11S_KEY_XDH) {
		/* RFC 8410 §3's names: "Ed25519", "Ed448", "X25519", "X448". */
		const rfc8410_curve *fam = k->obj.key_type == P11S_KEY_XDH ? montgomery : edwards;
		const rfc8410_curve *c = k->pub != NULL ? rfc8410_pkey_curve(k->pub, fam)
		                                        : rfc8410_key_curve(priv, pubobj, fam);

		if (c != NULL) {
			snprintf(k->curve, sizeof(k->curve), "%s", c->display);
		}
	}
	/* With several modules the same token may be seen through two of them: name the module. */
	if ((rc = p11s_uri__format_key_module(&slot->info, &k->obj,
	         ctx->root->next != NULL ? ctx->module_path : NULL, &k->uri)) < 0) {
		goto out;
	}
	*out = k;
	k = NULL;
out:
	p11s_key_free(k);
	return rc;
}

static int vec_push(key_vec *kv, p11s_key *k)
{
	if (kv->n == kv->cap) {
		size_t cap = kv->cap ? kv->cap * 2 : 8;
		p11s_key **v = realloc(kv->v, cap * sizeof(*v));

		if (v == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		kv->v = v;
		kv->cap = cap;
	}
	kv->v[kv->n++] = k;
	return P11S_OK;
}

static void vec_free(key_vec *kv)
{
	for (size_t i = 0; i < kv->n; i++) {
		p11s_key_free(kv->v[i]);
	}
	free(kv->v);
	kv->v = NULL;
	kv->n = kv->cap = 0;
}

/* The PIN source a URI carries (pin-value or pin-source, RFC 7512 §2.4), or NULL. */
static int uri_pins(const p11s_uri *uri, p11s_pin_source **out)
{
	const char *v = p11s_uri__pin_value(uri);

	*out = NULL;
	if (v != NULL) {
		return p11s_pin_source__literal(out, v, strlen(v));
	}
	if (p11s_uri_pin_source(uri) != NULL) {
		return p11s_pin_source_parse(out, p11s_uri_pin_source(uri));
	}
	return P11S_OK;
}

/*
 * Every private key matching `uri` (NULL: all) on every matching token. `*matched_tokens`
 * counts the present tokens that matched, `*absent` the matching slots without a token.
 */
static int collect_module(p11s_ctx *ctx, const p11s_uri *uri, p11s_pin_source *pins,
    key_vec *kv, size_t *matched_tokens, size_t *absent)
{
	p11s_slot *slots = NULL;
	size_t nslots;
	int rc;

	if ((rc = p11s_token__slots(ctx)) < 0) {
		return rc;
	}
	/* Our own copy: logging in re-enumerates ctx->slots. */
	nslots = ctx->nslots;
	if ((slots = malloc((nslots ? nslots : 1) * sizeof(*slots))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	memcpy(slots, ctx->slots, nslots * sizeof(*slots));
	for (size_t s = 0; s < nslots; s++) {
		p11s_object *objs = NULL;
		size_t n = 0;

		if (uri != NULL && !p11s_uri__match_slot(uri, &slots[s])) {
			continue;
		}
		if (!(slots[s].info.flags & P11S_TOKEN_PRESENT)) {
			(*absent)++;
			continue;
		}
		if (!(slots[s].info.flags & P11S_TOKEN_INITIALIZED)) {
			/* A blank token (SoftHSM's spare slot) holds no keys and cannot log in. */
			continue;
		}
		(*matched_tokens)++;
		if ((rc = p11s_token__login(ctx, &slots[s], pins)) < 0) {
			goto out;
		}
		if ((rc = ctx->prov.ops->objects(&ctx->prov, &slots[s], &objs, &n)) < 0) {
			p11s_error__prefix("token '%s': ", slots[s].info.label);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			p11s_key *k = NULL;

			if (objs[i].cls != P11S_OBJ_PRIVATE_KEY ||
			    (uri != NULL && !p11s_uri__match_object(uri, &objs[i]))) {
				continue;
			}
			if ((rc = key_new(ctx, &slots[s], objs, n, i, &k)) < 0 ||
			    (rc = vec_push(kv, k)) < 0) {
				p11s_key_free(k);
				p11s_objects_free(objs, n);
				goto out;
			}
		}
		p11s_objects_free(objs, n);
	}
	rc = P11S_OK;
out:
	free(slots);
	return rc;
}

/* collect_module() over every module the URI can name (p11s_token__modules()). */
static int collect(p11s_ctx *ctx, const p11s_uri *uri, p11s_pin_source *pins, key_vec *kv,
    size_t *matched_tokens, size_t *absent)
{
	p11s_ctx **mods = NULL;
	int rc;

	*matched_tokens = *absent = 0;
	if ((rc = p11s_token__modules(ctx, uri, &mods)) < 0) {
		return rc;
	}
	for (size_t i = 0; mods[i] != NULL; i++) {
		if ((rc = collect_module(mods[i], uri, pins, kv, matched_tokens, absent)) < 0) {
			if (ctx->root->next != NULL) {
				p11s_error__prefix("module %s: ", mods[i]->module_path);
			}
			break;
		}
	}
	free(mods);
	return rc;
}

/* Stable listing order: token serial, then CKA_ID, then label. */
static int key_cmp(const void *a, const void *b)
{
	const p11s_key *x = *(p11s_key *const *)a, *y = *(p11s_key *const *)b;
	size_t l = x->obj.id.len < y->obj.id.len ? x->obj.id.len : y->obj.id.len;
	int c = strcmp(x->slot.info.serial, y->slot.info.serial);

	if (c == 0 && l > 0) {
		c = memcmp(x->obj.id.data, y->obj.id.data, l);
	}
	if (c == 0) {
		c = (x->obj.id.len > y->obj.id.len) - (x->obj.id.len < y->obj.id.len);
	}
	return c ? c : strcmp(x->obj.label, y->obj.label);
}

int p11s_key_list(p11s_ctx *ctx, const char *token_uri, p11s_key ***out, size_t *count)
{
	p11s_uri *uri = NULL;
	p11s_pin_source *pins = NULL;
	key_vec kv = { 0 };
	size_t matched, absent;
	int rc;

	*out = NULL;
	*count = 0;
	if (token_uri != NULL) {
		if ((rc = p11s_uri_parse(&uri, token_uri)) < 0 || (rc = uri_pins(uri, &pins)) < 0) {
			goto out;
		}
	}
	if ((rc = collect(ctx, uri, pins, &kv, &matched, &absent)) < 0) {
		goto out;
	}
	if (token_uri != NULL && matched == 0) {
		rc = absent ? p11s_error__set(P11S_ERR_TOKEN_ABSENT, "no token present in the slot "
		                                                     "that %s names", token_uri)
		            : p11s_error__set(P11S_ERR_NOT_FOUND, "no token matches %s", token_uri);
		goto out;
	}
	if (kv.n > 1) {
		qsort(kv.v, kv.n, sizeof(*kv.v), key_cmp);
	}
	*out = kv.v;
	*count = kv.n;
	kv.v = NULL;
	kv.n = 0;
out:
	vec_free(&kv);
	p11s_pin_source_free(pins);
	p11s_uri_free(uri);
	return rc;
}

int p11s_key_find(p11s_ctx *ctx, const char *text, p11s_key **out)
{
	p11s_uri *uri = NULL;
	p11s_pin_source *pins = NULL;
	key_vec kv = { 0 };
	size_t matched, absent;
	int rc;

	*out = NULL;
	if ((rc = p11s_uri_parse(&uri, text)) < 0) {
		goto out;
	}
	if (p11s_uri__type_is_not_private(uri)) {
		rc = p11s_error__set(P11S_ERR_USAGE,
		    "%s does not name a private key (use type=private, as `keys` prints)", text);
		goto out;
	}
	if ((rc = uri_pins(uri, &pins)) < 0 ||
	    (rc = collect(ctx, uri, pins, &kv, &matched, &absent)) < 0) {
		goto out;
	}
	if (kv.n == 0) {
		if (matched == 0 && absent > 0) {
			rc = p11s_error__set(P11S_ERR_TOKEN_ABSENT, "no token present in the slot for %s",
			    text);
		} else if (matched == 0) {
			rc = p11s_error__set(P11S_ERR_NOT_FOUND, "no token matches %s", text);
		} else {
			rc = p11s_error__set(P11S_ERR_NOT_FOUND, "no private key matches %s", text);
		}
		goto out;
	}
	if (kv.n > 1) {
		char list[900] = "";
		size_t off = 0;

		for (size_t i = 0; i < kv.n && i < AMBIGUOUS_LIST_MAX && off < sizeof(list); i++) {
			int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? " | " : "",
			    kv.v[i]->uri);
			off += w > 0 ? (size_t)w : 0;
		}
		rc = p11s_error__set(P11S_ERR_AMBIGUOUS, "%zu keys match %s: %s%s", kv.n, text, list,
		    kv.n > AMBIGUOUS_LIST_MAX ? " | ..." : "");
		goto out;
	}
	*out = kv.v[0];
	(*out)->uri_pins = pins;
	pins = NULL;
	kv.n = 0;
out:
	vec_free(&kv);
	p11s_pin_source_free(pins);
	p11s_uri_free(uri);
	return rc;
}

const char *p11s_key_uri(const p11s_key *key)
{
	return key->uri;
}

const char *p11s_key_label(const p11s_key *key)
{
	return key->obj.label;
}

const unsigned char *p11s_key_id(const p11s_key *key, size_t *len)
{
	*len = key->obj.id.len;
	return key->obj.id.data;
}

p11s_key_type p11s_key_get_type(const p11s_key *key)
{
	return key->obj.key_type;
}

int p11s_key_bits(const p11s_key *key)
{
	if (key->pub != NULL) {
		return EVP_PKEY_get_bits(key->pub);
	}
	if (key->obj.key_type == P11S_KEY_RSA && key->obj.modulus.len > 0) {
		return (int)key->obj.modulus.len * 8;
	}
	return 0;
}

const char *p11s_key_curve(const p11s_key *key)
{
	return key->curve[0] ? key->curve : NULL;
}

int p11s_key_always_authenticate(const p11s_key *key)
{
	return key->obj.always_authenticate;
}

const p11s_token_info *p11s_key_token(const p11s_key *key)
{
	return &key->slot.info;
}

X509 *p11s_key_cert(const p11s_key *key)
{
	return key->cert;
}

int p11s_key_ca_certs(const p11s_key *key, STACK_OF(X509) **out)
{
	*out = X509_chain_up_ref(key->cas);
	return *out ? P11S_OK : p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

/* The capability a mechanism needs, for the refusal message and the check. */
static uint32_t cap_for(unsigned long mech, int decrypt)
{
	switch (mech) {
	case P11S_MECH_RSA_PKCS:
		return decrypt ? P11S_CAP_RSA_PKCS_DECRYPT : P11S_CAP_RSA_PKCS_SIGN;
	case P11S_MECH_RSA_PKCS_PSS:
		return P11S_CAP_RSA_PSS;
	case P11S_MECH_RSA_PKCS_OAEP:
		return P11S_CAP_RSA_OAEP;
	case P11S_MECH_ECDSA:
		return P11S_CAP_ECDSA;
	case P11S_MECH_EDDSA:
		return P11S_CAP_EDDSA;
	case P11S_MECH_ECDH1_DERIVE:
		/* The one derive mechanism of EC and Montgomery keys (PKCS#11 v3.0 §2.3.17). */
		return P11S_CAP_ECDH;
	default:
		return 0;
	}
}

static int same_token(const p11s_token_info *a, const p11s_token_info *b)
{
	return strcmp(a->label, b->label) == 0 && strcmp(a->serial, b->serial) == 0 &&
	    strcmp(a->manufacturer, b->manufacturer) == 0 && strcmp(a->model, b->model) == 0;
}

/*
 * After a removal or a lost session (STANDARDS.md §11, PKCS#11 v2.40 §5.6: every session of
 * the token is gone and the login with them): find the token again by its identity (a reader
 * plugged back may have another slot id), log in with a PIN read again from its source (never
 * a cached one: there is none), and look the key up again, since object handles do not
 * outlive the sessions they were found in.
 */
static int refresh(p11s_key *key)
{
	p11s_ctx *ctx = key->ctx;
	const struct p11s_provider_ops *ops = ctx->prov.ops;
	p11s_object *objs = NULL;
	p11s_slot slot;
	size_t n = 0;
	int found = 0, rc;

	if ((rc = p11s_token__slots(ctx)) < 0) {
		/*
		 * The token cannot be found again: absent, for the caller (a batch stops). SoftHSM
		 * 2.6.1: C_GetSlotInfo on the slot of a deleted token is CKR_GENERAL_ERROR.
		 */
		const p11s_error *e = p11s_error_last();
		char msg[sizeof(e->message)];

		snprintf(msg, sizeof(msg), "%s", e->message);
		return p11s_error__ckr(P11S_ERR_TOKEN_ABSENT, e->has_ck_rv ? e->ck_rv : 0,
		    "token '%s' (serial %s) cannot be found again: %s", key->slot.info.label,
		    key->slot.info.serial, msg);
	}
	for (size_t i = 0; i < ctx->nslots && !found; i++) {
		if ((ctx->slots[i].info.flags & P11S_TOKEN_PRESENT) &&
		    same_token(&ctx->slots[i].info, &key->slot.info)) {
			slot = ctx->slots[i];
			found = 1;
		}
	}
	if (!found) {
		return p11s_error__set(P11S_ERR_TOKEN_ABSENT, "token '%s' (serial %s) is not present",
		    key->slot.info.label, key->slot.info.serial);
	}
	if ((rc = p11s_token__login(ctx, &slot, key->uri_pins)) < 0) {
		return rc;
	}
	if ((rc = ops->objects(&ctx->prov, &slot, &objs, &n)) < 0) {
		return p11s_error__prefix("token '%s': ", slot.info.label);
	}
	rc = p11s_error__set(P11S_ERR_NOT_FOUND, "key %s is no longer on its token", key->uri);
	for (size_t i = 0; i < n; i++) {
		if (objs[i].cls == P11S_OBJ_PRIVATE_KEY && same_id(&objs[i], &key->obj) &&
		    objs[i].key_type == key->obj.key_type &&
		    strcmp(objs[i].label ? objs[i].label : "", key->obj.label) == 0) {
			key->obj.handle = objs[i].handle;
			key->obj.slot = objs[i].slot;
			key->obj.always_authenticate = objs[i].always_authenticate;
			key->slot = slot;
			key->stale = 0;
			p11s_log(P11S_LOG_INFO, "token '%s' is back: key %s found again",
			    slot.info.label, key->uri);
			rc = P11S_OK;
			break;
		}
	}
	p11s_objects_free(objs, n);
	return rc;
}

/* Whether the key's token is still in one of the module's slots (by its identity). */
static int token_still_present(p11s_key *key)
{
	p11s_ctx *ctx = key->ctx;

	if (p11s_token__slots(ctx) < 0) {
		/* SoftHSM 2.6.1: C_GetSlotInfo on the slot of a deleted token is CKR_GENERAL_ERROR. */
		return 0;
	}
	for (size_t i = 0; i < ctx->nslots; i++) {
		if ((ctx->slots[i].info.flags & P11S_TOKEN_PRESENT) &&
		    same_token(&ctx->slots[i].info, &key->slot.info)) {
			return 1;
		}
	}
	return 0;
}

/*
 * A result after which the key's session, login and handle cannot be trusted any more. Besides
 * the removal codes, CKR_OBJECT_HANDLE_INVALID and CKR_KEY_HANDLE_INVALID (PKCS#11 v2.40 §5.1)
 * say the handle died: SoftHSM 2.6.1 reports a token deleted under a running process this way.
 * If the token is gone too, that is a removal (P11S_ERR_TOKEN_ABSENT, which also ends a batch);
 * otherwise the key is looked up again next time. The message names the token, since several
 * may be in use.
 */
static int after_op(p11s_key *key, int rc, int from_backend)
{
	const p11s_error *e = p11s_error_last();
	int handle_died = rc < 0 && e->has_ck_rv &&
	    (e->ck_rv == CKR_OBJECT_HANDLE_INVALID || e->ck_rv == CKR_KEY_HANDLE_INVALID);

	/*
	 * A plain token failure may be a token that vanished too: pkcs11-helper reports a token
	 * deleted under it as CKR_FUNCTION_REJECTED from C_Sign. Look before calling it plain.
	 */
	int plain = rc == P11S_ERR_TOKEN && from_backend;

	if (rc != P11S_ERR_DEVICE_REMOVED && rc != P11S_ERR_TOKEN_ABSENT && !handle_died && !plain) {
		return rc;
	}
	if (handle_died || plain) {
		char msg[sizeof(e->message)];
		unsigned long ck_rv = e->ck_rv;
		int has_ck_rv = e->has_ck_rv;

		snprintf(msg, sizeof(msg), "%s", e->message);
		if (!token_still_present(key)) {
			key->stale = 1;
			return has_ck_rv ? p11s_error__ckr(P11S_ERR_TOKEN_ABSENT, ck_rv,
			                       "token '%s' (serial %s) is gone: %s", key->slot.info.label,
			                       key->slot.info.serial, msg)
			                 : p11s_error__set(P11S_ERR_TOKEN_ABSENT,
			                       "token '%s' (serial %s) is gone: %s", key->slot.info.label,
			                       key->slot.info.serial, msg);
		}
		/* token_still_present() may have left its own error: restore the operation's. */
		if (has_ck_rv) {
			p11s_error__ckr(rc, ck_rv, "%s", msg);
		} else {
			p11s_error__set(rc, "%s", msg);
		}
		if (!handle_died) {
			/*
			 * A present token's own failure, reported as it came but naming the token: with
			 * several tokens in use the user must know which one refused. (softhsm2-util
			 * can delete a token's objects and fail to remove its directory: the token
			 * stays listed and each C_Sign is refused.)
			 */
			p11s_error__prefix("token '%s': ", key->slot.info.label);
			return rc;
		}
	}
	key->stale = 1;
	if (from_backend) {
		/* The token layer's own messages (refresh, login) name the token already. */
		p11s_error__prefix("token '%s': ", key->slot.info.label);
	}
	return rc;
}

/* Capability and login checks shared by every private operation. */
static int before_op(p11s_key *key, unsigned long mech, int decrypt)
{
	const struct p11s_provider_ops *ops = key->ctx->prov.ops;
	uint32_t cap = cap_for(mech, decrypt);
	int rc;

	/* DESIGN.md decision 2: a backend that cannot do a mechanism natively says so. */
	if (cap == 0 || !(ops->caps & cap)) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED, "backend %s cannot do %s", ops->name,
		    p11s_mech_name(mech));
	}
	if (key->obj.always_authenticate && !(ops->caps & P11S_CAP_CONTEXT_LOGIN)) {
		return p11s_error__set(P11S_ERR_UNSUPPORTED,
		    "key %s needs a PIN per operation (CKA_ALWAYS_AUTHENTICATE) and backend %s cannot "
		    "log in for it", key->uri, ops->name);
	}
	if ((rc = p11s_token__card_check(key)) < 0) {
		return rc;
	}
	if (key->stale && (rc = refresh(key)) < 0) {
		return rc;
	}
	return p11s_token__login(key->ctx, &key->slot, key->uri_pins);
}

/*
 * Private-key operations and threads (token_int.h, op_lock): with a backend that allows it
 * (P11S_CAP_CONCURRENT) the common case runs under the read side of the context's lock, so
 * the token calls of several threads overlap; whatever changes the key or the login, and
 * every failure, is handled under the write side. A key that needs a PIN per operation
 * (CKA_ALWAYS_AUTHENTICATE) always takes the write side: its context-specific logins follow
 * one another.
 */
typedef struct op_call {
	int kind;                /* 0 sign, 1 decrypt, 2 derive */
	const p11s_mech *mech;
	const unsigned char *in; /* data, ciphertext or the peer's public key */
	size_t inlen;
	p11s_buf **out;
} op_call;

static int op_token(p11s_key *key, const op_call *c)
{
	p11s_provider *p = &key->ctx->prov;

	switch (c->kind) {
	case 0:
		return p->ops->sign(p, &key->obj, c->mech, c->in, c->inlen, c->out);
	case 1:
		return p->ops->decrypt(p, &key->obj, c->mech, c->in, c->inlen, c->out);
	default:
		return p->ops->derive(p, &key->obj, c->in, c->inlen, c->out);
	}
}

/* before_op() with nothing to do: the read side suffices. */
static int op_ready(p11s_key *key, unsigned long mech, int decrypt)
{
	const struct p11s_provider_ops *ops = key->ctx->prov.ops;
	uint32_t cap = cap_for(mech, decrypt);

	return (ops->caps & P11S_CAP_CONCURRENT) && cap != 0 && (ops->caps & cap) &&
	    !key->obj.always_authenticate && !key->stale && !p11s_token__card_changed(key) &&
	    (!(key->slot.info.flags & P11S_TOKEN_LOGIN_REQUIRED) ||
	        ops->logged_in(&key->ctx->prov, &key->slot));
}

static int run_op(p11s_key *key, unsigned long mech, int decrypt, const op_call *c)
{
	pthread_rwlock_t *l = &key->ctx->root->op_lock;
	int rc;

	*c->out = NULL;
	pthread_rwlock_rdlock(l);
	if (op_ready(key, mech, decrypt)) {
		rc = op_token(key, c);
		pthread_rwlock_unlock(l);
		if (rc >= 0) {
			return rc;
		}
		/* A failure: recovery (token gone? find the key again?) is exclusive. */
		pthread_rwlock_wrlock(l);
		rc = after_op(key, rc, 1);
		pthread_rwlock_unlock(l);
		return rc;
	}
	pthread_rwlock_unlock(l);
	pthread_rwlock_wrlock(l);
	if ((rc = before_op(key, mech, decrypt)) < 0) {
		rc = after_op(key, rc, 0);
	} else {
		rc = after_op(key, op_token(key, c), 1);
	}
	pthread_rwlock_unlock(l);
	return rc;
}

int p11s_token__sign(p11s_key *key, const p11s_mech *mech, const unsigned char *in, size_t inlen,
    p11s_buf **out)
{
	const op_call c = { 0, mech, in, inlen, out };

	return run_op(key, mech->type, 0, &c);
}

int p11s_token__decrypt(p11s_key *key, const p11s_mech *mech, const unsigned char *in,
    size_t inlen, p11s_buf **out)
{
	const op_call c = { 1, mech, in, inlen, out };

	return run_op(key, mech->type, 1, &c);
}

int p11s_token__derive(p11s_key *key, const unsigned char *peer, size_t peer_len, p11s_buf **out)
{
	const op_call c = { 2, NULL, peer, peer_len, out };

	return run_op(key, P11S_MECH_ECDH1_DERIVE, 0, &c);
}

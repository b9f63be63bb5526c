/*
 * p11s_key_generate(): the token layer's half of `p11smime keygen` (docs/keys.md). Picks the
 * one token the URI names, logs in, refuses a label or CKA_ID already used by any object there
 * (a second key under one label makes every later URI ambiguous), asks the backend for
 * C_GenerateKeyPair, then finds the new key as `keys` would.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <p11smime/keygen.h>

#include "core/error_int.h"
#include "core/pin_int.h"
#include "token/token_int.h"
#include "token/uri_int.h"

/* DER OIDs for CKA_EC_PARAMS: RFC 5480 §2.1.1.1 (namedCurve), RFC 8410 §3 (id-Ed25519). */
static const unsigned char OID_P256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
	0x07 };
static const unsigned char OID_P384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char OID_ED25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

static int parse_type(const char *type, p11s_keygen_spec *spec)
{
	static const struct {
		const char *name;
		p11s_key_type t;
		unsigned long bits;
		const unsigned char *oid;
		size_t oid_len;
	} types[] = {
		{ "rsa:2048", P11S_KEY_RSA, 2048, NULL, 0 },
		{ "rsa:3072", P11S_KEY_RSA, 3072, NULL, 0 },
		{ "rsa:4096", P11S_KEY_RSA, 4096, NULL, 0 },
		{ "ec:p256", P11S_KEY_EC, 0, OID_P256, sizeof(OID_P256) },
		{ "ec:p384", P11S_KEY_EC, 0, OID_P384, sizeof(OID_P384) },
		{ "ed25519", P11S_KEY_EDDSA, 0, OID_ED25519, sizeof(OID_ED25519) },
	};

	for (size_t i = 0; type != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(type, types[i].name) == 0) {
			spec->type = types[i].t;
			spec->bits = types[i].bits;
			spec->params = types[i].oid;
			spec->params_len = types[i].oid_len;
			return P11S_OK;
		}
	}
	return p11s_error__set(P11S_ERR_USAGE, "unknown key type '%s' (rsa:2048, rsa:3072, "
	                                       "rsa:4096, ec:p256, ec:p384, ed25519)",
	    type != NULL ? type : "");
}

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

/* The one initialised token `uri` names, over every module; its context and slot. */
static int pick_slot(p11s_ctx *ctx, const p11s_uri *uri, const char *text, p11s_ctx **mod,
    p11s_slot *slot)
{
	p11s_ctx **mods = NULL;
	size_t found = 0;
	int rc;

	if ((rc = p11s_token__modules(ctx, uri, &mods)) < 0) {
		return rc;
	}
	for (size_t m = 0; mods[m] != NULL; m++) {
		if ((rc = p11s_token__slots(mods[m])) < 0) {
			goto out;
		}
		for (size_t s = 0; s < mods[m]->nslots; s++) {
			const p11s_slot *sl = &mods[m]->slots[s];

			if (!p11s_uri__match_slot(uri, sl) || !(sl->info.flags & P11S_TOKEN_PRESENT) ||
			    !(sl->info.flags & P11S_TOKEN_INITIALIZED)) {
				continue;
			}
			if (found++ == 0) {
				*mod = mods[m];
				*slot = *sl;
			}
		}
	}
	if (found == 0) {
		rc = p11s_error__set(P11S_ERR_NOT_FOUND, "no initialised token matches %s", text);
	} else if (found > 1) {
		rc = p11s_error__set(P11S_ERR_AMBIGUOUS, "%zu tokens match %s: name one (token=, "
		                                         "serial=)", found, text);
	} else {
		rc = P11S_OK;
	}
out:
	free(mods);
	return rc;
}

/* A label or CKA_ID already on the token is a usage error: nothing is generated. */
static int check_unused(p11s_ctx *mod, const p11s_slot *slot, const p11s_keygen_spec *spec)
{
	p11s_object *objs = NULL;
	size_t n = 0;
	int rc;

	if ((rc = mod->prov.ops->objects(&mod->prov, slot, &objs, &n)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < n && rc == P11S_OK; i++) {
		if (strcmp(objs[i].label, spec->label) == 0) {
			rc = p11s_error__set(P11S_ERR_USAGE, "token '%s' already has an object labelled "
			                                     "'%s'", slot->info.label, spec->label);
		} else if (objs[i].id.len == spec->id_len &&
		    memcmp(objs[i].id.data, spec->id, spec->id_len) == 0) {
			rc = p11s_error__set(P11S_ERR_USAGE, "token '%s' already has an object with "
			                                     "this id", slot->info.label);
		}
	}
	p11s_objects_free(objs, n);
	return rc;
}

int p11s_key_generate(p11s_ctx *ctx, const char *token_uri, const char *type, const char *label,
    const unsigned char *id, size_t id_len, p11s_key **out)
{
	p11s_keygen_spec spec = { 0 };
	unsigned char rid[16];
	p11s_uri *uri = NULL;
	p11s_pin_source *pins = NULL;
	p11s_ctx *mod = NULL;
	p11s_slot slot;
	p11s_key **keys = NULL;
	size_t nkeys = 0;
	int rc;

	*out = NULL;
	if (ctx == NULL || token_uri == NULL || label == NULL || label[0] == '\0') {
		return p11s_error__set(P11S_ERR_USAGE, "keygen needs a token URI and a label");
	}
	if ((rc = parse_type(type, &spec)) < 0) {
		return rc;
	}
	if (id_len == 0) {
		/* 16 random bytes: unique in practice, as pkcs11-tool and p11tool choose. */
		if (RAND_bytes(rid, sizeof(rid)) != 1) {
			return p11s_error__ossl(P11S_ERR_CRYPTO, "RAND_bytes");
		}
		id = rid;
		id_len = sizeof(rid);
	}
	spec.label = label;
	spec.id = id;
	spec.id_len = id_len;
	if ((rc = p11s_uri_parse(&uri, token_uri)) < 0 || (rc = uri_pins(uri, &pins)) < 0 ||
	    (rc = pick_slot(ctx, uri, token_uri, &mod, &slot)) < 0) {
		goto out;
	}
	if (!(mod->prov.ops->caps & P11S_CAP_KEYGEN) || mod->prov.ops->generate_keypair == NULL) {
		rc = p11s_error__set(P11S_ERR_UNSUPPORTED, "backend %s cannot generate keys (use "
		                                           "--backend pkcs11)", mod->prov.ops->name);
		goto out;
	}
	if ((rc = p11s_token__login(mod, &slot, pins)) < 0 ||
	    (rc = check_unused(mod, &slot, &spec)) < 0) {
		goto out;
	}
	if ((rc = mod->prov.ops->generate_keypair(&mod->prov, &slot, &spec)) < 0) {
		p11s_error__prefix("token '%s': ", slot.info.label);
		goto out;
	}
	/* Find it as `keys` does, so that the key (and its URI) is the one everybody else sees. */
	if ((rc = p11s_key_list(ctx, token_uri, &keys, &nkeys)) < 0) {
		goto out;
	}
	for (size_t i = 0; i < nkeys; i++) {
		size_t l;
		const unsigned char *kid = p11s_key_id(keys[i], &l);

		if (*out == NULL && l == id_len && memcmp(kid, id, l) == 0 &&
		    strcmp(p11s_key_label(keys[i]), label) == 0) {
			*out = keys[i];
		} else {
			p11s_key_free(keys[i]);
		}
	}
	free(keys);
	rc = *out != NULL ? P11S_OK
	                  : p11s_error__set(P11S_ERR_TOKEN, "the generated key is not found on "
	                                                    "token '%s'", slot.info.label);
out:
	OPENSSL_cleanse(rid, sizeof(rid));
	p11s_pin_source_free(pins);
	p11s_uri_free(uri);
	return rc;
}

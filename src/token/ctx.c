/*
 * The library context: backend selection, module path resolution, PIN source, the bridge's
 * OpenSSL library context, token listing and the login policy (PKCS#11 v2.40 §5.6 C_Login;
 * STANDARDS.md §11: check the PIN flags before asking, never retry, a locked PIN is final).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "bridge/bridge.h"
#include <p11smime/log.h>

#include "core/error_int.h"
#include "core/pin_int.h"
#include "token/token_int.h"
#include "token/uri_int.h"

/* Context-specific logins read a fresh PIN every time (DESIGN.md decision 8): no cache. */
static int get_pin(const p11s_slot *slot, unsigned long user_type, p11s_secret **out,
    void *payload)
{
	p11s_ctx *ctx = payload;
	char what[128];

	*out = NULL;
	snprintf(what, sizeof(what), "token '%s'%s", slot->info.label,
	    user_type == P11S_USER_CONTEXT_SPECIFIC ? " (this signature)" : "");
	if (ctx->pins == NULL) {
		return p11s_error__set(P11S_ERR_LOGIN, "%s needs a PIN: give --pin-source", what);
	}
	if (ctx->batch && p11s_pin_source__is_prompt(ctx->pins)) {
		return p11s_error__set(P11S_ERR_LOGIN, "%s needs a PIN and --batch forbids prompting",
		    what);
	}
	return p11s_pin_source_read(ctx->pins, what, out);
}

int p11s_ctx_new(p11s_ctx **out, const p11s_ctx_opts *opts)
{
	static const p11s_ctx_opts defaults = P11S_CTX_OPTS_INIT;
	const struct p11s_provider_ops *ops;
	const char *backend, *module;
	p11s_ctx *ctx;
	int rc;

	*out = NULL;
	if (opts == NULL) {
		opts = &defaults;
	}
	if (opts->version != P11S_CTX_OPTS_VERSION) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_ctx_opts version %u unknown",
		    opts->version);
	}
	backend = opts->backend ? opts->backend : "pkcs11";
	if ((ops = p11s_token__backend(backend)) == NULL) {
		return p11s_error__set(P11S_ERR_USAGE, "unknown backend '%s'", backend);
	}
	if (ops->abi != P11S_PROVIDER_ABI) {
		return p11s_error__set(P11S_ERR_GENERIC, "backend '%s' has ABI %u, expected %u",
		    backend, ops->abi, P11S_PROVIDER_ABI);
	}
	module = opts->module;
	if (module == NULL || *module == '\0') {
		module = getenv("P11SMIME_MODULE");
	}
	if (module == NULL || *module == '\0') {
		module = P11S_P11KIT_PROXY;
	}
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	ctx->batch = opts->batch;
	if ((ctx->module_path = strdup(module)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (opts->pin_source != NULL &&
	    (rc = p11s_pin_source_parse(&ctx->pins, opts->pin_source)) < 0) {
		goto out;
	}
	if ((rc = p11s_bridge__libctx_new(&ctx->libctx)) < 0) {
		goto out;
	}
	ctx->prov.ops = ops;
	if (ops->priv_size > 0 && (ctx->prov.priv = calloc(1, ops->priv_size)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	ctx->prov.cfg.module_path = ctx->module_path;
	ctx->prov.cfg.get_pin = get_pin;
	ctx->prov.cfg.pin_payload = ctx;
	if ((rc = ops->open(&ctx->prov, &ctx->prov.cfg)) < 0) {
		ops->close(&ctx->prov);
		free(ctx->prov.priv);
		ctx->prov.priv = NULL;
		ctx->prov.ops = NULL;
		goto out;
	}
	*out = ctx;
	ctx = NULL;
out:
	p11s_ctx_free(ctx);
	return rc;
}

void p11s_ctx_free(p11s_ctx *ctx)
{
	if (ctx == NULL) {
		return;
	}
	if (ctx->prov.ops != NULL) {
		ctx->prov.ops->close(&ctx->prov);
	}
	free(ctx->prov.priv);
	free(ctx->slots);
	p11s_bridge__libctx_free(ctx->libctx);
	p11s_pin_source_free(ctx->pins);
	free(ctx->module_path);
	free(ctx);
}

OSSL_LIB_CTX *p11s_ctx_libctx(p11s_ctx *ctx)
{
	return ctx->libctx;
}

const char *p11s_ctx_backend(const p11s_ctx *ctx)
{
	return ctx->prov.ops->name;
}

/* Enumerate slots again (tokens come and go) and give each its token URI. */
int p11s_token__slots(p11s_ctx *ctx)
{
	p11s_slot *slots = NULL;
	size_t n = 0;
	int rc;

	if ((rc = ctx->prov.ops->slots(&ctx->prov, &slots, &n)) < 0) {
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		if ((slots[i].info.flags & P11S_TOKEN_PRESENT) &&
		    (slots[i].info.flags & P11S_TOKEN_INITIALIZED) &&
		    (rc = p11s_uri__format_token(&slots[i].info, slots[i].info.uri,
		         sizeof(slots[i].info.uri))) < 0) {
			free(slots);
			return rc;
		}
	}
	free(ctx->slots);
	ctx->slots = slots;
	ctx->nslots = n;
	return P11S_OK;
}

int p11s_token_list(p11s_ctx *ctx, p11s_token_info **out, size_t *count)
{
	p11s_token_info *v;
	int rc;

	*out = NULL;
	*count = 0;
	if ((rc = p11s_token__slots(ctx)) < 0) {
		return rc;
	}
	if ((v = calloc(ctx->nslots ? ctx->nslots : 1, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < ctx->nslots; i++) {
		v[i] = ctx->slots[i].info;
	}
	*out = v;
	*count = ctx->nslots;
	return P11S_OK;
}

/* The PIN state the token reports, for messages ("2 tries left" is not in PKCS#11). */
static const char *pin_state(unsigned int flags)
{
	if (flags & P11S_TOKEN_USER_PIN_LOCKED) {
		return "the PIN is now locked";
	}
	if (flags & P11S_TOKEN_USER_PIN_FINAL_TRY) {
		return "one try left before the PIN locks";
	}
	if (flags & P11S_TOKEN_USER_PIN_COUNT_LOW) {
		return "few tries left";
	}
	return "the token does not report a low try count";
}

/*
 * The current flags of the token in `slot` (the PIN counters change with each login). A slot
 * that is gone, or holds another token now, reports no token: 0.
 */
static unsigned int current_flags(p11s_ctx *ctx, const p11s_slot *slot)
{
	if (p11s_token__slots(ctx) != P11S_OK) {
		return slot->info.flags;
	}
	for (size_t i = 0; i < ctx->nslots; i++) {
		const p11s_token_info *t = &ctx->slots[i].info;

		if (ctx->slots[i].handle == slot->handle) {
			return strcmp(t->serial, slot->info.serial) == 0 &&
			        strcmp(t->label, slot->info.label) == 0
			    ? t->flags
			    : t->flags & ~P11S_TOKEN_PRESENT;
		}
	}
	return 0;
}

int p11s_token__login(p11s_ctx *ctx, const p11s_slot *slot_in, p11s_pin_source *pins)
{
	const struct p11s_provider_ops *ops = ctx->prov.ops;
	/* A copy: re-enumerating the slots below frees ctx->slots, which `slot_in` may point into. */
	const p11s_slot copy = *slot_in;
	const p11s_slot *slot = &copy;
	p11s_secret *pin = NULL;
	unsigned int flags;
	char what[96];
	int rc;

	if (!(slot->info.flags & P11S_TOKEN_LOGIN_REQUIRED) || ops->logged_in(&ctx->prov, slot)) {
		return P11S_OK;
	}
	snprintf(what, sizeof(what), "token '%s'", slot->info.label);
	flags = current_flags(ctx, slot);
	if (!(flags & P11S_TOKEN_PRESENT)) {
		/* Pulled out: no PIN is read for a token that is not there (STANDARDS.md §11). */
		return p11s_error__set(P11S_ERR_TOKEN_ABSENT, "%s is not present", what);
	}
	if (flags & P11S_TOKEN_USER_PIN_LOCKED) {
		/* STANDARDS.md §11: CKR_PIN_LOCKED is final; a locked PIN is never tried. */
		return p11s_error__set(P11S_ERR_PIN_LOCKED,
		    "the user PIN of %s is locked; not trying it (unlock it with the SO PIN)", what);
	}
	if (flags & (P11S_TOKEN_USER_PIN_FINAL_TRY | P11S_TOKEN_USER_PIN_COUNT_LOW)) {
		p11s_log(P11S_LOG_WARN, "%s: %s", what, pin_state(flags));
	}
	if (flags & P11S_TOKEN_PROTECTED_AUTH_PATH) {
		if (!(ops->caps & P11S_CAP_PROTECTED_AUTH)) {
			return p11s_error__set(P11S_ERR_UNSUPPORTED,
			    "%s has a PIN pad and backend %s cannot log in through it", what, ops->name);
		}
		p11s_log(P11S_LOG_WARN, "enter the PIN of %s on the reader's PIN pad", what);
		rc = ops->login(&ctx->prov, slot, P11S_USER_NORMAL, NULL);
	} else {
		if (pins == NULL) {
			pins = ctx->pins;
		}
		if (pins == NULL) {
			return p11s_error__set(P11S_ERR_LOGIN, "%s needs a PIN: give --pin-source", what);
		}
		if (ctx->batch && p11s_pin_source__is_prompt(pins)) {
			return p11s_error__set(P11S_ERR_LOGIN,
			    "%s needs a PIN and --batch forbids prompting", what);
		}
		if ((rc = p11s_pin_source_read(pins, what, &pin)) < 0) {
			return rc;
		}
		rc = ops->login(&ctx->prov, slot, P11S_USER_NORMAL, pin);
		/* Wipe as soon as C_Login returns (STYLE.md "Secrets"). */
		p11s_secret_free(pin);
	}
	if (rc == P11S_ERR_PIN_INCORRECT) {
		flags = current_flags(ctx, slot);
		return p11s_error__set(P11S_ERR_PIN_INCORRECT, "wrong PIN for %s (%s)", what,
		    pin_state(flags));
	}
	if (rc == P11S_ERR_PIN_LOCKED) {
		return p11s_error__set(P11S_ERR_PIN_LOCKED, "the user PIN of %s is locked", what);
	}
	if (rc < 0) {
		return p11s_error__prefix("login to %s: ", what);
	}
	p11s_log(P11S_LOG_INFO, "logged in to %s", what);
	return P11S_OK;
}

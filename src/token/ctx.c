/*
 * The token layer's context: backend selection, module path resolution, PIN source, token
 * listing and the login policy (PKCS#11 v2.40 §5.6 C_Login;
 * STANDARDS.md §11: check the PIN flags before asking, never retry, a locked PIN is final).
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <p11-kit/p11-kit.h>

#include <p11smime/log.h>
#include <p11smime/reader.h>

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

/* Load `ctx->module_path` with backend `ops` (the context's other fields are set). */
static int ctx_open_module(p11s_ctx *ctx, const struct p11s_provider_ops *ops)
{
	int rc;

	ctx->prov.ops = ops;
	if (ops->priv_size > 0 && (ctx->prov.priv = calloc(1, ops->priv_size)) == NULL) {
		ctx->prov.ops = NULL;
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	ctx->prov.cfg.module_path = ctx->module_path;
	ctx->prov.cfg.get_pin = get_pin;
	ctx->prov.cfg.pin_payload = ctx;
	if ((rc = ops->open(&ctx->prov, &ctx->prov.cfg)) < 0) {
		ops->close(&ctx->prov);
		free(ctx->prov.priv);
		ctx->prov.priv = NULL;
		ctx->prov.ops = NULL;
	}
	return rc;
}

int p11s_token__ctx_new(p11s_ctx **out, const p11s_ctx_opts *opts)
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
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	ctx->root = ctx;
	{
		pthread_rwlockattr_t a;

		if (pthread_rwlockattr_init(&a) != 0 ||
		    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP) != 0 ||
		    pthread_rwlock_init(&ctx->op_lock, &a) != 0) {
			free(ctx);
			return p11s_error__set(P11S_ERR_NOMEM, "cannot create a lock");
		}
		pthread_rwlockattr_destroy(&a);
		ctx->op_lock_ready = 1;
	}
	if (module == NULL || *module == '\0') {
		module = P11S_P11KIT_PROXY;
		ctx->module_default = 1;
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
	if ((rc = ctx_open_module(ctx, ops)) < 0) {
		goto out;
	}
	*out = ctx;
	ctx = NULL;
out:
	p11s_token__ctx_free(ctx);
	return rc;
}

/*
 * Card events for long-running processes (p11s_ctx_watch_readers()). The monitor thread only
 * records, under `lock`, which readers have a card and a counter of removals; the thread that
 * uses the context reads that before each private-key operation (p11s_token__card_check()).
 */
#define WATCH_MAX 16

struct p11s_card_watch {
	pthread_mutex_t lock;
	p11s_reader_monitor *mon;
	struct {
		char name[128];
		int present;
		unsigned long removed_gen; /* `gen` at this reader's last removal */
	} r[WATCH_MAX];
	size_t n;
	unsigned long gen;             /* removals seen, all readers */
};

static void watch_free(struct p11s_card_watch *w)
{
	if (w == NULL) {
		return;
	}
	p11s_reader_monitor_stop(w->mon);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* Runs on the monitor's thread. */
static void on_card_event(const char *reader, int present, void *payload)
{
	struct p11s_card_watch *w = payload;
	size_t i;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < w->n && strcmp(w->r[i].name, reader) != 0; i++) {
	}
	if (i == w->n && w->n < WATCH_MAX) {
		snprintf(w->r[i].name, sizeof(w->r[i].name), "%s", reader);
		w->n++;
	}
	if (i < w->n) {
		w->r[i].present = present;
		if (!present) {
			w->r[i].removed_gen = ++w->gen;
		}
	}
	pthread_mutex_unlock(&w->lock);
	p11s_log(P11S_LOG_INFO, present ? "card inserted in reader '%s'" : "card removed from reader '%s'",
	    reader);
}

int p11s_ctx_watch_readers(p11s_ctx *ctx)
{
	struct p11s_card_watch *w;
	int rc;

	if (ctx == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_ctx_watch_readers: no context");
	}
	ctx = ctx->root;
	if (ctx->watch != NULL) {
		return P11S_OK;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	pthread_mutex_init(&w->lock, NULL);
	if ((rc = p11s_reader_monitor_start(&w->mon, on_card_event, w)) < 0) {
		pthread_mutex_destroy(&w->lock);
		free(w);
		if (rc == P11S_ERR_UNSUPPORTED) {
			/* Built without pcsc-lite: nothing to follow, and nothing wrong. */
			p11s_log(P11S_LOG_DEBUG, "%s", p11s_error_last()->message);
			p11s_error_clear();
			return P11S_OK;
		}
		return rc;
	}
	ctx->watch = w;
	return P11S_OK;
}

/*
 * Whether `reader` is the reader of a slot described as `desc`: OpenSC and most card modules
 * use the PC/SC reader name as CK_SLOT_INFO.slotDescription (cut to 64 bytes); pcsc-lite
 * appends " NN NN" to a driver's friendly name, which a module may leave out.
 */
static int reader_has_slot(const char *reader, const char *desc)
{
	size_t l = strlen(desc);

	return l > 0 && strncmp(reader, desc, l) == 0 && (reader[l] == '\0' || reader[l] == ' ' ||
	                                                  l == 64);
}

unsigned long p11s_token__card_gen(const p11s_ctx *ctx)
{
	struct p11s_card_watch *w = ctx->root->watch;
	unsigned long gen;

	if (w == NULL) {
		return 0;
	}
	pthread_mutex_lock(&w->lock);
	gen = w->gen;
	pthread_mutex_unlock(&w->lock);
	return gen;
}

int p11s_token__card_changed(const p11s_key *key)
{
	struct p11s_card_watch *w = key->ctx->root->watch;
	const char *desc = key->slot.info.slot_description;
	int changed = 0;

	if (w == NULL) {
		return 0;
	}
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n; i++) {
		if (reader_has_slot(w->r[i].name, desc) &&
		    (!w->r[i].present || w->r[i].removed_gen > key->card_gen)) {
			changed = 1;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return changed;
}

int p11s_token__card_check(p11s_key *key)
{
	struct p11s_card_watch *w = key->ctx->root->watch;
	const char *desc = key->slot.info.slot_description;
	char gone[128] = "";
	int back = 0;

	if (w == NULL) {
		return P11S_OK;
	}
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->n; i++) {
		if (!reader_has_slot(w->r[i].name, desc)) {
			continue;
		}
		if (!w->r[i].present) {
			snprintf(gone, sizeof(gone), "%s", w->r[i].name);
		} else if (w->r[i].removed_gen > key->card_gen) {
			/*
			 * Out and back in since the key was found: its sessions, login and handle went
			 * with the card (PKCS#11 v2.40 §5.6). Find the token again and log in again.
			 */
			key->stale = 1;
			key->card_gen = w->r[i].removed_gen;
			back = 1;
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (gone[0] != '\0') {
		/* Fail at once instead of calling a module that would block or fail obscurely. */
		key->stale = 1;
		return p11s_error__set(P11S_ERR_TOKEN_ABSENT,
		    "card removed from reader '%s': token '%s' is not used until it is back", gone,
		    key->slot.info.label);
	}
	if (back) {
		p11s_log(P11S_LOG_INFO, "card back in the reader of token '%s': finding it again",
		    key->slot.info.label);
	}
	return P11S_OK;
}


void p11s_token__ctx_free(p11s_ctx *ctx)
{
	if (ctx == NULL) {
		return;
	}
	/* The monitor first: its callback writes into the watch. */
	watch_free(ctx->watch);
	/* Further modules; they share the first context's PIN source and library context. */
	while (ctx->next != NULL) {
		p11s_ctx *sub = ctx->next;

		ctx->next = sub->next;
		if (sub->prov.ops != NULL) {
			sub->prov.ops->close(&sub->prov);
		}
		free(sub->prov.priv);
		free(sub->slots);
		free(sub->module_path);
		free(sub->module_name);
		free(sub);
	}
	if (ctx->prov.ops != NULL) {
		ctx->prov.ops->close(&ctx->prov);
	}
	free(ctx->prov.priv);
	free(ctx->slots);
	p11s_pin_source_free(ctx->pins);
	free(ctx->module_path);
	free(ctx->module_name);
	if (ctx->op_lock_ready) {
		pthread_rwlock_destroy(&ctx->op_lock);
	}
	free(ctx);
}

/* A context for one more module, appended to `root`'s chain. */
static int sub_add(p11s_ctx *root, const char *module, p11s_ctx **out)
{
	p11s_ctx *sub, **tail;
	int rc;

	if (out != NULL) {
		*out = NULL;
	}
	if ((sub = calloc(1, sizeof(*sub))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	sub->root = root;
	sub->batch = root->batch;
	sub->pins = root->pins;
	sub->libctx = root->libctx;
	if ((sub->module_path = strdup(module)) == NULL) {
		free(sub);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rc = ctx_open_module(sub, root->prov.ops)) < 0) {
		free(sub->module_path);
		free(sub);
		return rc;
	}
	for (tail = &root->next; *tail != NULL; tail = &(*tail)->next) {
	}
	*tail = sub;
	if (out != NULL) {
		*out = sub;
	}
	return P11S_OK;
}

/* Two module paths name the same file (a symlink such as /usr/lib/softhsm/ counts). */
static int same_module(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	if (strcmp(a, b) == 0) {
		return 1;
	}
	return realpath(a, ra) != NULL && realpath(b, rb) != NULL && strcmp(ra, rb) == 0;
}

int p11s_ctx_add_module(p11s_ctx *ctx, const char *module)
{
	if (ctx == NULL || module == NULL || *module == '\0') {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_ctx_add_module: no module");
	}
	ctx = ctx->root;
	/* Modules are configured now: a module-name selects among them (p11s_token__modules). */
	ctx->module_default = 0;
	for (p11s_ctx *c = ctx; c != NULL; c = c->next) {
		if (same_module(c->module_path, module)) {
			p11s_log(P11S_LOG_INFO, "module %s is configured twice: loaded once", module);
			return P11S_OK;
		}
	}
	return sub_add(ctx, module, NULL);
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
		snprintf(slots[i].info.module, sizeof(slots[i].info.module), "%s", ctx->module_path);
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
	size_t total = 0, k = 0;
	int rc;

	*out = NULL;
	*count = 0;
	/* Every slot of every module, module by module in the order they were configured. */
	for (p11s_ctx *c = ctx; c != NULL; c = c->next) {
		if ((rc = p11s_token__slots(c)) < 0) {
			return c == ctx && ctx->next == NULL ? rc
			                                     : p11s_error__prefix("module %s: ",
			                                           c->module_path);
		}
		total += c->nslots;
	}
	if ((v = calloc(total ? total : 1, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (p11s_ctx *c = ctx; c != NULL; c = c->next) {
		for (size_t i = 0; i < c->nslots; i++) {
			v[k++] = c->slots[i].info;
		}
	}
	*out = v;
	*count = total;
	return P11S_OK;
}

/*
 * RFC 7512 §2.3 module-name: "the name of the PKCS #11 module library ... without the
 * platform-specific prefix and suffix" ("softhsm2" for libsofthsm2.so). p11-kit also names the
 * modules of its registry (the .module file's name); for a module p11-kit knows, that name is
 * the module's name, since a URI printed by p11-kit tools carries it.
 */
static void derived_name(const char *path, char *buf, size_t len)
{
	const char *base = strrchr(path, '/');
	char *dot;

	base = base ? base + 1 : path;
	if (strncmp(base, "lib", 3) == 0 && base[3] != '\0') {
		base += 3;
	}
	snprintf(buf, len, "%s", base);
	if ((dot = strstr(buf, ".so")) != NULL && dot != buf) {
		*dot = '\0';
	}
}

/*
 * Search p11-kit's module registry (pkcs11.conf(5): /usr/share/p11-kit/modules/NAME.module, ...)
 * for the module named `name` (then `*path_out` gets its file) or the module whose file is
 * `path` (then `*name_out` gets its name). The modules are loaded unmanaged and not
 * initialised, only to read their names and files, and released at once.
 * @return 1 found, 0 not found.
 */
static int registry_lookup(const char *name, const char *path, char **name_out, char **path_out)
{
	CK_FUNCTION_LIST **mods;
	int found = 0;

	ERR_set_mark(); /* a module linking libcrypto may leave errors in our queue */
	mods = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
	for (size_t i = 0; mods != NULL && mods[i] != NULL && !found; i++) {
		char *n = p11_kit_module_get_name(mods[i]);
		char *f = p11_kit_module_get_filename(mods[i]);

		if (n != NULL && f != NULL &&
		    ((name != NULL && strcmp(n, name) == 0) || (path != NULL && same_module(f, path)))) {
			found = 1;
			if (name_out != NULL) {
				*name_out = n;
				n = NULL;
			}
			if (path_out != NULL) {
				*path_out = f;
				f = NULL;
			}
		}
		free(n);
		free(f);
	}
	if (mods != NULL) {
		p11_kit_modules_release(mods);
	}
	ERR_pop_to_mark();
	return found;
}

int p11s_module_find(const char *name, char **path)
{
	*path = NULL;
	if (name == NULL || *name == '\0') {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_module_find: no name");
	}
	if (!registry_lookup(name, NULL, NULL, path)) {
		return p11s_error__set(P11S_ERR_MODULE,
		    "no PKCS#11 module named '%s' is registered with p11-kit (pkcs11.conf(5))", name);
	}
	return P11S_OK;
}

/* Whether `want` names the module of `c` (p11-kit's name for it, or RFC 7512's). */
static int module_is_named(p11s_ctx *c, const char *want)
{
	char derived[128];

	if (c->module_name == NULL) {
		char *n = NULL;

		if (registry_lookup(NULL, c->module_path, &n, NULL)) {
			c->module_name = n;
		} else {
			derived_name(c->module_path, derived, sizeof(derived));
			c->module_name = strdup(derived);
		}
		if (c->module_name == NULL) {
			return 0;
		}
	}
	return strcmp(c->module_name, want) == 0;
}

/* Whether a module after the (default proxy) first one is named `name`. */
static int chain_has_name(p11s_ctx *root, const char *name)
{
	for (p11s_ctx *c = root->next; c != NULL; c = c->next) {
		if (module_is_named(c, name)) {
			return 1;
		}
	}
	return 0;
}

int p11s_token__modules(p11s_ctx *ctx, const p11s_uri *uri, p11s_ctx ***out)
{
	const char *mpath = uri ? p11s_uri_module_path(uri) : NULL;
	const char *mname = uri ? p11s_uri_module_name(uri) : NULL;
	p11s_ctx **v;
	size_t n = 0, k = 0;

	*out = NULL;
	ctx = ctx->root;
	if (mname != NULL && ctx->module_default && !chain_has_name(ctx, mname)) {
		/*
		 * No module configured, only the p11-kit proxy: load the module p11-kit registers
		 * under that name, so that the URI names exactly that module's tokens.
		 */
		char *path = NULL;
		int rc;

		if ((rc = p11s_module_find(mname, &path)) < 0) {
			return rc;
		}
		p11s_log(P11S_LOG_INFO, "module-name=%s: loading %s from p11-kit's registry", mname,
		    path);
		rc = sub_add(ctx, path, NULL);
		free(path);
		if (rc < 0) {
			return rc;
		}
		/* The proxy also holds that module's tokens: name it so that only the module matches. */
		if (ctx->module_name == NULL && (ctx->module_name = strdup("p11-kit-proxy")) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
	}
	for (p11s_ctx *c = ctx; c != NULL; c = c->next) {
		n++;
	}
	if ((v = calloc(n + 1, sizeof(*v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (p11s_ctx *c = ctx; c != NULL; c = c->next) {
		if (mpath != NULL && !same_module(c->module_path, mpath)) {
			continue;
		}
		if (mname != NULL && !module_is_named(c, mname)) {
			continue;
		}
		v[k++] = c;
	}
	*out = v;
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

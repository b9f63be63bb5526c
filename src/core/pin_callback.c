/*
 * `callback:NAME` PIN sources (pin_callback.h): the application supplies each PIN when the
 * library asks for it, e.g. `p11smime agent` through a pinentry (docs/agent.md). A small
 * fixed table: an agent registers one name.
 */
#include <string.h>

#include <p11smime/pin_callback.h>

#include "core/error_int.h"
#include "core/pin_int.h"

#define CB_MAX 8

static struct {
	char name[32];
	p11s_pin_callback_fn fn;
	void *payload;
} cbs[CB_MAX];

static int name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n >= sizeof(cbs[0].name)) {
		return 0;
	}
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

int p11s_pin_callback_register(const char *name, p11s_pin_callback_fn fn, void *payload)
{
	int freeslot = -1;

	if (!name_ok(name)) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "bad PIN callback name");
	}
	for (int i = 0; i < CB_MAX; i++) {
		if (cbs[i].fn != NULL && strcmp(cbs[i].name, name) == 0) {
			cbs[i].fn = fn;
			cbs[i].payload = payload;
			return P11S_OK;
		}
		if (cbs[i].fn == NULL && freeslot < 0) {
			freeslot = i;
		}
	}
	if (fn == NULL) {
		return P11S_OK;
	}
	if (freeslot < 0) {
		return p11s_error__set(P11S_ERR_NOMEM, "too many PIN callbacks");
	}
	memcpy(cbs[freeslot].name, name, strlen(name) + 1);
	cbs[freeslot].fn = fn;
	cbs[freeslot].payload = payload;
	return P11S_OK;
}

int p11s_pin_callback__read(const char *name, const char *what, p11s_secret *out)
{
	for (int i = 0; i < CB_MAX; i++) {
		if (cbs[i].fn != NULL && strcmp(cbs[i].name, name) == 0) {
			char why[256] = "";

			if (cbs[i].fn(what, out, why, sizeof(why), cbs[i].payload) < 0) {
				p11s_secret_wipe(out);
				return p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN for %s: %s", what,
				    why[0] != '\0' ? why : "not given");
			}
			return P11S_OK;
		}
	}
	return p11s_error__set(P11S_ERR_PIN_SOURCE, "PIN source 'callback:%s': no such callback "
	    "in this process", name);
}

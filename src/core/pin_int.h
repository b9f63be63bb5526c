/* Internal PIN source helpers. */
#ifndef P11S_CORE_PIN_INT_H
#define P11S_CORE_PIN_INT_H

#include <p11smime/pin.h>

/*
 * A source that yields `value` (a URI's pin-value, RFC 7512 §2.4). The value is copied into a
 * secret buffer at once; the caller wipes its own copy.
 */
int p11s_pin_source__literal(p11s_pin_source **out, const char *value, size_t len);

/* Non-zero if reading the source would need a terminal. */
int p11s_pin_source__is_prompt(const p11s_pin_source *src);

/* Read a PIN through the registered callback `name` (pin_callback.c). */
int p11s_pin_callback__read(const char *name, const char *what, p11s_secret *out);

#endif

/* p11smime — PIN sources that call back into the application (an agent's pinentry). */
#ifndef P11SMIME_PIN_CALLBACK_H
#define P11SMIME_PIN_CALLBACK_H

#include <stddef.h>

#include "common.h"
#include "secret.h"

/**
 * Called when the library needs a PIN from a `callback:NAME` source. `what` names what the PIN
 * unlocks, as for p11s_pin_source_read() ("token 'alice'", or "token 'alice' (this signature)"
 * for the context-specific login of a CKA_ALWAYS_AUTHENTICATE key). Put the PIN into `out`
 * (already allocated, empty) and return P11S_OK, or return -1 with a one-line reason in `why`
 * (`whylen` bytes; e.g. "PIN entry cancelled"): the library then fails with
 * P11S_ERR_PIN_SOURCE naming `what` and the reason. Runs on the thread that uses the context;
 * it must not call back into that context.
 */
typedef int (*p11s_pin_callback_fn)(const char *what, p11s_secret *out, char *why,
    size_t whylen, void *payload);

/**
 * Register (fn non-NULL) or remove (fn NULL) the callback named `name` (letters, digits, '-',
 * '_'; at most 31 bytes). A context created with pin_source "callback:NAME" then reads every
 * PIN through it; the PIN is never kept by the library after C_Login returns. Up to 8 names.
 * Process-wide; not for concurrent registration from several threads.
 * @return P11S_OK; P11S_ERR_INVALID_ARG (bad name); P11S_ERR_NOMEM (table full).
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_pin_callback_register(const char *name,
    p11s_pin_callback_fn fn, void *payload);

#endif

/* p11smime — PIN sources (CLI.md --pin-source; RFC 7512 pin-source/pin-value). */
#ifndef P11SMIME_PIN_H
#define P11SMIME_PIN_H

#include "common.h"
#include "secret.h"

/**
 * Where a PIN comes from. Specs: `env:VAR` (the variable is unset once read), `file:PATH`
 * (first line), `fd:N` (one line per read), `prompt` (the terminal, without echo). A PIN is
 * never taken from the command line.
 */
typedef struct p11s_pin_source p11s_pin_source;

/**
 * Parse a pin-source spec. Also accepts the RFC 7512 §2.4 forms of a URI's pin-source: a
 * `file:` URI (`file:///abs/path`) and an absolute path.
 * @return P11S_OK or P11S_ERR_PIN_SOURCE (unknown scheme, bad fd). Free with
 *         p11s_pin_source_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_pin_source_parse(p11s_pin_source **out, const char *spec);

/**
 * Read one PIN. `what` names what the PIN unlocks for the prompt ("token 'alice'").
 * @return P11S_OK; P11S_ERR_PIN_SOURCE when the source is empty, unreadable, already consumed
 *         (env:) or has no terminal (prompt). Free `*out` with p11s_secret_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_pin_source_read(p11s_pin_source *src, const char *what,
    p11s_secret **out);

/** A description safe to log ("env:PIN", "file:/x", "prompt"); never a PIN. */
P11S_EXTERN const char *p11s_pin_source_describe(const p11s_pin_source *src);

/** Free; NULL is accepted. */
P11S_EXTERN void p11s_pin_source_free(p11s_pin_source *src);

#endif

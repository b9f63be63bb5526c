/* p11smime — the configuration file. */
#ifndef P11SMIME_CONFIG_H
#define P11SMIME_CONFIG_H

#include "common.h"

/**
 * A parsed INI-style configuration: `[section]` lines, `key = value` lines, `#` and `;`
 * comments. Keys before any section belong to section "". A key may repeat.
 */
typedef struct p11s_config p11s_config;

/**
 * Parse a file. `known` (NULL-terminated "section.key" strings) lists the accepted keys; any
 * other key is an error naming file and line.
 * @return P11S_OK, P11S_ERR_IO (cannot read), P11S_ERR_CONFIG. Free with p11s_config_free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_config_load(p11s_config **out, const char *path,
    const char *const *known);

/** Parse from memory (same rules; `name` is used in messages). */
P11S_EXTERN P11S_MUST_CHECK int p11s_config_parse(p11s_config **out, const char *name,
    const char *text, size_t len, const char *const *known);

/** The last value of `section.key`, or NULL. Owned by `cfg`. */
P11S_EXTERN const char *p11s_config_get(const p11s_config *cfg, const char *section,
    const char *key);

/** The `i`-th value (0-based) of a repeated key, or NULL past the last. */
P11S_EXTERN const char *p11s_config_get_nth(const p11s_config *cfg, const char *section,
    const char *key, size_t i);

/** Free; NULL is accepted. */
P11S_EXTERN void p11s_config_free(p11s_config *cfg);

#endif

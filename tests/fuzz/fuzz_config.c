/*
 * Fuzz target: the configuration file (p11s_config_parse, src/core/config.c) with the keys
 * the tool accepts, and a lookup of each of them. The input is not NUL-terminated, as a file
 * read into memory is not.
 */
#include <p11smime/config.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* src/cli/main.c config_keys, plus a sectioned key. */
	static const char *const known[] = { ".module", ".backend", ".pin-source",
		"gateway.listen", NULL };
	p11s_config *cfg = NULL;

	if (p11s_config_parse(&cfg, "fuzz", (const char *)data, size, known) == 0) {
		(void)p11s_config_get(cfg, "", "module");
		(void)p11s_config_get(cfg, "", "backend");
		for (size_t i = 0; p11s_config_get_nth(cfg, "", "pin-source", i) != NULL; i++) {
		}
		(void)p11s_config_get(cfg, "gateway", "listen");
	}
	p11s_config_free(cfg);
	return 0;
}

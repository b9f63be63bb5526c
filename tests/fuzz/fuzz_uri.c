/* Fuzz target: RFC 7512 PKCS#11 URIs (p11s_uri_parse, src/token/uri.c, and p11-kit's parser). */
#include <stdlib.h>

#include <p11smime/uri.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = p11s_fuzz_str(data, size);
	p11s_uri *u = NULL;

	if (s == NULL) {
		return 0;
	}
	if (p11s_uri_parse(&u, s) == 0) {
		(void)p11s_uri_module_path(u);
		(void)p11s_uri_module_name(u);
		(void)p11s_uri_pin_source(u);
		(void)p11s_uri_has_pin_value(u);
		(void)p11s_uri_has_unknown_attribute(u);
	}
	p11s_uri_free(u);
	free(s);
	return 0;
}

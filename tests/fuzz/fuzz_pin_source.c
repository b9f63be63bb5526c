/*
 * Fuzz target: pin-source specs (p11s_pin_source_parse, src/core/pin.c): env:, file:, fd:,
 * prompt, RFC 7512 file: URIs and absolute paths. Only parsed and described: reading a source
 * would open files, descriptors or the terminal named by the input.
 */
#include <stdlib.h>

#include <p11smime/pin.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = p11s_fuzz_str(data, size);
	p11s_pin_source *src = NULL;

	if (s == NULL) {
		return 0;
	}
	if (p11s_pin_source_parse(&src, s) == 0) {
		(void)p11s_pin_source_describe(src);
	}
	p11s_pin_source_free(src);
	free(s);
	return 0;
}

/*
 * Fuzz target: the agent's request parser (src/agent/proto.c, docs/agent.md "Protocol"), the
 * only code that reads what a client sends. A request that parses is re-encoded and parsed
 * again: it must give the same request (the client's encoder and the agent's parser agree).
 * The reply parser (what a client reads) gets the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static agent_req r, r2;
	static char buf[AGENT_MAX_MSG];
	char why[256];
	agent_rep rep;
	char *copy;

	if (size > AGENT_MAX_MSG + 16) {
		return 0;
	}
	/* An exact-size heap copy, so that ASan sees any read past the record. */
	if ((copy = malloc(size ? size : 1)) == NULL) {
		return 0;
	}
	memcpy(copy, data, size);
	(void)agent_rep_parse(copy, size, &rep);
	if (agent_req_parse(copy, size, &r, why, sizeof(why)) == 0) {
		long n = agent_req_encode(&r, buf, sizeof(buf));

		if (r.type == AGENT_REQ_RUN || r.type == AGENT_REQ_STATUS) {
			if (n < 0 || agent_req_parse(buf, (size_t)n, &r2, why, sizeof(why)) != 0 ||
			    r2.type != r.type || r2.argc != r.argc || r2.json != r.json) {
				abort();
			}
			for (int i = 0; i < r.argc; i++) {
				if (strcmp(r.argv[i], r2.argv[i]) != 0) {
					abort();
				}
			}
		}
	}
	free(copy);
	return 0;
}

/* The backend registry: compiled-in backends, selected by --backend. */
#include <string.h>

#include "pkcs11/backends.h"
#include "token/token_int.h"

static const struct p11s_provider_ops *const backends[] = {
	&p11s_pkcs11_ops,
#ifdef P11S_HAVE_LIBP11
	&p11s_libp11_ops,
#endif
#ifdef P11S_HAVE_PKCS11_HELPER
	&p11s_pkcs11_helper_ops,
#endif
#ifdef P11S_HAVE_MOCK
	&p11s_mock_ops,
#endif
};

static const char *names[sizeof(backends) / sizeof(backends[0]) + 1];

const struct p11s_provider_ops *p11s_token__backend(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (strcmp(backends[i]->name, name) == 0) {
			return backends[i];
		}
	}
	return NULL;
}

const char *const *p11s_backend_names(void)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		names[i] = backends[i]->name;
	}
	return names;
}

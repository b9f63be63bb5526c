/* The backends' ops tables, listed by src/token/registry.c. */
#ifndef P11S_PKCS11_BACKENDS_H
#define P11S_PKCS11_BACKENDS_H

#include <p11smime/sys/provider.h>

extern const struct p11s_provider_ops p11s_pkcs11_ops; /* pkcs11.c: p11-kit + CK_FUNCTION_LIST */
#ifdef P11S_HAVE_LIBP11
extern const struct p11s_provider_ops p11s_libp11_ops; /* libp11.c */
#endif
#ifdef P11S_HAVE_PKCS11_HELPER
extern const struct p11s_provider_ops p11s_pkcs11_helper_ops; /* pkcs11_helper.c */
#endif
#ifdef P11S_HAVE_MOCK
extern const struct p11s_provider_ops p11s_mock_ops; /* mock.c: tests and fault injection */
#endif

#endif

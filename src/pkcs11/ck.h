/*
 * What the backends share (src/pkcs11/): the one place where a CK_RV becomes a P11S_ERR_*
 * code, names of return values (mechanism names are the ABI's p11s_mech_name()), PKCS#11 string fields, and slot listing over a
 * CK_FUNCTION_LIST (the pkcs11 and pkcs11-helper backends). Backends see the layer above only
 * through include/p11smime/sys/provider.h; this header is theirs alone (docs/architecture.md).
 */
#ifndef P11S_PKCS11_CK_H
#define P11S_PKCS11_CK_H

#include <stddef.h>

/*
 * p11-kit's pkcs11.h and pkcs11-helper's are the same GNU header (one include guard,
 * struct _CK_FUNCTION_LIST in both), so either may already have been included.
 */
#include <p11-kit/pkcs11.h>

#include <p11smime/sys/provider.h>

/*
 * Translate a PKCS#11 return value into a P11S_ERR_* code, record it with the CK_RV and
 * `what` ("C_Sign"), and return the code. CKR_OK gives P11S_OK. Every backend calls it at its
 * boundary (DESIGN.md "Layers"), so the mapping lives in one place.
 */
int p11s_ck__rv(unsigned long rv, const char *what);

/* The PKCS#11 name of a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x..." (valid until the next call). */
const char *p11s_ck__rv_name(unsigned long rv);

/* Copy a space-padded PKCS#11 string field into a NUL-terminated, right-trimmed string. */
void p11s_ck__trim(char *dst, size_t dstlen, const unsigned char *src, size_t srclen);

/*
 * Every slot of the module behind `f` (C_GetSlotList, then C_GetSlotInfo and, with a token
 * present, C_GetTokenInfo for each), as the provider ABI's slots() returns them. A slot that
 * vanished between the calls is left out; a token pulled out between them shows as absent.
 * The caller serialises calls into the module as its backend requires.
 */
int p11s_ck__slots(CK_FUNCTION_LIST *f, p11s_slot **out, size_t *n);

/*
 * One slot: `out` filled from C_GetSlotInfo and, with a token present, C_GetTokenInfo.
 * Returns the CK_RV of the call that failed (CKR_OK when the token went away meanwhile).
 */
CK_RV p11s_ck__slot(CK_FUNCTION_LIST *f, CK_SLOT_ID id, p11s_slot *out);

#endif

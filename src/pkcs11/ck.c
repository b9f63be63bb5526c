/*
 * What the backends share (ck.h): PKCS#11 return values and mechanisms by name, the one place
 * where a CK_RV becomes a P11S_ERR_* code (DESIGN.md "Layers": backends translate CK_RV at
 * their boundary), string fields and slot listing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "core/error_int.h"
#include "pkcs11/ck.h"

#define NAMED(x) { x, #x }

struct named {
	unsigned long value;
	const char *name;
};

/* The CK_RV values of PKCS#11 v2.40 (pkcs11t.h), plus those p11-kit's header adds from 3.0. */
static const struct named ckr_names[] = {
	NAMED(CKR_OK),
	NAMED(CKR_CANCEL),
	NAMED(CKR_HOST_MEMORY),
	NAMED(CKR_SLOT_ID_INVALID),
	NAMED(CKR_GENERAL_ERROR),
	NAMED(CKR_FUNCTION_FAILED),
	NAMED(CKR_ARGUMENTS_BAD),
	NAMED(CKR_NO_EVENT),
	NAMED(CKR_NEED_TO_CREATE_THREADS),
	NAMED(CKR_CANT_LOCK),
	NAMED(CKR_ATTRIBUTE_READ_ONLY),
	NAMED(CKR_ATTRIBUTE_SENSITIVE),
	NAMED(CKR_ATTRIBUTE_TYPE_INVALID),
	NAMED(CKR_ATTRIBUTE_VALUE_INVALID),
	NAMED(CKR_ACTION_PROHIBITED),
	NAMED(CKR_DATA_INVALID),
	NAMED(CKR_DATA_LEN_RANGE),
	NAMED(CKR_DEVICE_ERROR),
	NAMED(CKR_DEVICE_MEMORY),
	NAMED(CKR_DEVICE_REMOVED),
	NAMED(CKR_ENCRYPTED_DATA_INVALID),
	NAMED(CKR_ENCRYPTED_DATA_LEN_RANGE),
	NAMED(CKR_FUNCTION_CANCELED),
	NAMED(CKR_FUNCTION_NOT_PARALLEL),
	NAMED(CKR_FUNCTION_NOT_SUPPORTED),
	NAMED(CKR_KEY_HANDLE_INVALID),
	NAMED(CKR_KEY_SIZE_RANGE),
	NAMED(CKR_KEY_TYPE_INCONSISTENT),
	NAMED(CKR_KEY_NOT_NEEDED),
	NAMED(CKR_KEY_CHANGED),
	NAMED(CKR_KEY_NEEDED),
	NAMED(CKR_KEY_INDIGESTIBLE),
	NAMED(CKR_KEY_FUNCTION_NOT_PERMITTED),
	NAMED(CKR_KEY_NOT_WRAPPABLE),
	NAMED(CKR_KEY_UNEXTRACTABLE),
	NAMED(CKR_MECHANISM_INVALID),
	NAMED(CKR_MECHANISM_PARAM_INVALID),
	NAMED(CKR_OBJECT_HANDLE_INVALID),
	NAMED(CKR_OPERATION_ACTIVE),
	NAMED(CKR_OPERATION_NOT_INITIALIZED),
	NAMED(CKR_PIN_INCORRECT),
	NAMED(CKR_PIN_INVALID),
	NAMED(CKR_PIN_LEN_RANGE),
	NAMED(CKR_PIN_EXPIRED),
	NAMED(CKR_PIN_LOCKED),
	NAMED(CKR_SESSION_CLOSED),
	NAMED(CKR_SESSION_COUNT),
	NAMED(CKR_SESSION_HANDLE_INVALID),
	NAMED(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
	NAMED(CKR_SESSION_READ_ONLY),
	NAMED(CKR_SESSION_EXISTS),
	NAMED(CKR_SESSION_READ_ONLY_EXISTS),
	NAMED(CKR_SESSION_READ_WRITE_SO_EXISTS),
	NAMED(CKR_SIGNATURE_INVALID),
	NAMED(CKR_SIGNATURE_LEN_RANGE),
	NAMED(CKR_TEMPLATE_INCOMPLETE),
	NAMED(CKR_TEMPLATE_INCONSISTENT),
	NAMED(CKR_TOKEN_NOT_PRESENT),
	NAMED(CKR_TOKEN_NOT_RECOGNIZED),
	NAMED(CKR_TOKEN_WRITE_PROTECTED),
	NAMED(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
	NAMED(CKR_UNWRAPPING_KEY_SIZE_RANGE),
	NAMED(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
	NAMED(CKR_USER_ALREADY_LOGGED_IN),
	NAMED(CKR_USER_NOT_LOGGED_IN),
	NAMED(CKR_USER_PIN_NOT_INITIALIZED),
	NAMED(CKR_USER_TYPE_INVALID),
	NAMED(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	NAMED(CKR_USER_TOO_MANY_TYPES),
	NAMED(CKR_WRAPPED_KEY_INVALID),
	NAMED(CKR_WRAPPED_KEY_LEN_RANGE),
	NAMED(CKR_WRAPPING_KEY_HANDLE_INVALID),
	NAMED(CKR_WRAPPING_KEY_SIZE_RANGE),
	NAMED(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
	NAMED(CKR_RANDOM_SEED_NOT_SUPPORTED),
	NAMED(CKR_RANDOM_NO_RNG),
	NAMED(CKR_DOMAIN_PARAMS_INVALID),
	NAMED(CKR_CURVE_NOT_SUPPORTED),
	NAMED(CKR_BUFFER_TOO_SMALL),
	NAMED(CKR_SAVED_STATE_INVALID),
	NAMED(CKR_INFORMATION_SENSITIVE),
	NAMED(CKR_STATE_UNSAVEABLE),
	NAMED(CKR_CRYPTOKI_NOT_INITIALIZED),
	NAMED(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	NAMED(CKR_MUTEX_BAD),
	NAMED(CKR_MUTEX_NOT_LOCKED),
	NAMED(CKR_NEW_PIN_MODE),
	NAMED(CKR_NEXT_OTP),
	NAMED(CKR_EXCEEDED_MAX_ITERATIONS),
	NAMED(CKR_FIPS_SELF_TEST_FAILED),
	NAMED(CKR_LIBRARY_LOAD_FAILED),
	NAMED(CKR_PIN_TOO_WEAK),
	NAMED(CKR_PUBLIC_KEY_INVALID),
	NAMED(CKR_FUNCTION_REJECTED),
};

/*
 * The mechanisms of sys/provider.h, the hashes used as their parameters, and the combined
 * hash-and-sign mechanisms a user may meet in a token's mechanism list or an error message.
 */
static const struct named ckm_names[] = {
	NAMED(CKM_RSA_PKCS_KEY_PAIR_GEN),
	NAMED(CKM_RSA_PKCS),
	NAMED(CKM_RSA_9796),
	NAMED(CKM_RSA_X_509),
	NAMED(CKM_MD5_RSA_PKCS),
	NAMED(CKM_SHA1_RSA_PKCS),
	NAMED(CKM_RSA_PKCS_OAEP),
	NAMED(CKM_RSA_PKCS_PSS),
	NAMED(CKM_SHA1_RSA_PKCS_PSS),
	NAMED(CKM_SHA224_RSA_PKCS),
	NAMED(CKM_SHA256_RSA_PKCS),
	NAMED(CKM_SHA384_RSA_PKCS),
	NAMED(CKM_SHA512_RSA_PKCS),
	NAMED(CKM_SHA224_RSA_PKCS_PSS),
	NAMED(CKM_SHA256_RSA_PKCS_PSS),
	NAMED(CKM_SHA384_RSA_PKCS_PSS),
	NAMED(CKM_SHA512_RSA_PKCS_PSS),
	NAMED(CKM_MD5),
	NAMED(CKM_SHA_1),
	NAMED(CKM_SHA224),
	NAMED(CKM_SHA256),
	NAMED(CKM_SHA384),
	NAMED(CKM_SHA512),
	NAMED(CKM_GENERIC_SECRET_KEY_GEN),
	NAMED(CKM_EC_KEY_PAIR_GEN),
	NAMED(CKM_ECDSA),
	NAMED(CKM_ECDSA_SHA1),
	NAMED(CKM_ECDSA_SHA224),
	NAMED(CKM_ECDSA_SHA256),
	NAMED(CKM_ECDSA_SHA384),
	NAMED(CKM_ECDSA_SHA512),
	NAMED(CKM_ECDH1_DERIVE),
	NAMED(CKM_ECDH1_COFACTOR_DERIVE),
	NAMED(CKM_EC_EDWARDS_KEY_PAIR_GEN),
	NAMED(CKM_EDDSA),
	NAMED(CKM_AES_KEY_GEN),
	NAMED(CKM_AES_ECB),
	NAMED(CKM_AES_CBC),
	NAMED(CKM_AES_CBC_PAD),
	NAMED(CKM_AES_GCM),
	NAMED(CKM_AES_KEY_WRAP),
	NAMED(CKM_AES_KEY_WRAP_PAD),
};

/* Unknown values are formatted per thread, so the result stays valid until the next call. */
static _Thread_local char unknown[40];

static const char *lookup(const struct named *t, size_t n, unsigned long v, const char *prefix)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].value == v) {
			return t[i].name;
		}
	}
	if (v & CKR_VENDOR_DEFINED) {
		snprintf(unknown, sizeof(unknown), "%s_VENDOR_DEFINED+0x%lx", prefix,
		    v & ~(unsigned long)CKR_VENDOR_DEFINED);
	} else {
		snprintf(unknown, sizeof(unknown), "%s_0x%lx", prefix, v);
	}
	return unknown;
}

const char *p11s_ck__rv_name(unsigned long rv)
{
	return lookup(ckr_names, sizeof(ckr_names) / sizeof(ckr_names[0]), rv, "CKR");
}

const char *p11s_mech_name(unsigned long mech)
{
	return lookup(ckm_names, sizeof(ckm_names) / sizeof(ckm_names[0]), mech, "CKM");
}

int p11s_ck__rv(unsigned long rv, const char *what)
{
	int code;

	if (what == NULL) {
		what = "PKCS#11";
	}
	switch (rv) {
	case CKR_OK:
		return P11S_OK;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		code = P11S_ERR_PIN_INCORRECT;
		break;
	case CKR_PIN_LOCKED:
		/* Final: the token layer never tries a locked PIN again (STANDARDS.md §11). */
		code = P11S_ERR_PIN_LOCKED;
		break;
	case CKR_DEVICE_REMOVED:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_DEVICE_ERROR:
		/*
		 * Removal shows as DEVICE_REMOVED/SESSION_CLOSED in flight, then as an invalid
		 * handle (STANDARDS.md §11): the caller reopens, logs in and finds objects again.
		 */
		code = P11S_ERR_DEVICE_REMOVED;
		break;
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
		code = P11S_ERR_TOKEN_ABSENT;
		break;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		code = P11S_ERR_MECHANISM;
		break;
	case CKR_ARGUMENTS_BAD:
		/*
		 * From C_SignInit/C_DecryptInit it is how tokens refuse mechanism parameters
		 * (SoftHSM 2.6.1 on OAEP with SHA-256); anywhere else it is a plain failure.
		 */
		code = strstr(what, "Init") != NULL ? P11S_ERR_MECHANISM : P11S_ERR_TOKEN;
		break;
	case CKR_USER_NOT_LOGGED_IN:
		code = P11S_ERR_LOGIN;
		break;
	case CKR_HOST_MEMORY:
		code = P11S_ERR_NOMEM;
		break;
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		/* One code on purpose: a distinguishable padding error is an oracle (RFC 3218). */
		code = P11S_ERR_DECRYPT;
		break;
	default:
		code = P11S_ERR_TOKEN;
		break;
	}
	return p11s_error__ckr(code, rv, "%s: %s", what, p11s_ck__rv_name(rv));
}

void p11s_ck__trim(char *dst, size_t dstlen, const unsigned char *src, size_t srclen)
{
	size_t n = 0;

	if (dstlen == 0) {
		return;
	}
	/* CK_SLOT_INFO/CK_TOKEN_INFO strings are blank-padded, not NUL-terminated (v2.40 §3.2). */
	while (n < srclen && n + 1 < dstlen && src[n] != '\0') {
		dst[n] = (char)src[n];
		n++;
	}
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\t')) {
		n--;
	}
	dst[n] = '\0';
}

CK_RV p11s_ck__slot(CK_FUNCTION_LIST *f, CK_SLOT_ID id, p11s_slot *out)
{
	static const struct {
		CK_FLAGS ck;
		unsigned int p11s;
	} map[] = {
		{ CKF_LOGIN_REQUIRED, P11S_TOKEN_LOGIN_REQUIRED },
		{ CKF_PROTECTED_AUTHENTICATION_PATH, P11S_TOKEN_PROTECTED_AUTH_PATH },
		{ CKF_USER_PIN_COUNT_LOW, P11S_TOKEN_USER_PIN_COUNT_LOW },
		{ CKF_USER_PIN_FINAL_TRY, P11S_TOKEN_USER_PIN_FINAL_TRY },
		{ CKF_USER_PIN_LOCKED, P11S_TOKEN_USER_PIN_LOCKED },
		{ CKF_USER_PIN_INITIALIZED, P11S_TOKEN_USER_PIN_INITIALIZED },
		{ CKF_TOKEN_INITIALIZED, P11S_TOKEN_INITIALIZED },
		{ CKF_WRITE_PROTECTED, P11S_TOKEN_WRITE_PROTECTED },
	};
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	p11s_token_info *info = &out->info;
	CK_RV rv;

	memset(out, 0, sizeof(*out));
	out->handle = id;
	info->slot_id = id;
	if ((rv = f->C_GetSlotInfo(id, &si)) != CKR_OK) {
		return rv;
	}
	p11s_ck__trim(info->slot_description, sizeof(info->slot_description),
	    si.slotDescription, sizeof(si.slotDescription));
	p11s_ck__trim(info->slot_manufacturer, sizeof(info->slot_manufacturer),
	    si.manufacturerID, sizeof(si.manufacturerID));
	if (si.flags & CKF_REMOVABLE_DEVICE) {
		info->flags |= P11S_TOKEN_REMOVABLE;
	}
	if (si.flags & CKF_HW_SLOT) {
		info->flags |= P11S_TOKEN_HW_SLOT;
	}
	if (!(si.flags & CKF_TOKEN_PRESENT)) {
		return CKR_OK;
	}
	rv = f->C_GetTokenInfo(id, &ti);
	if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED ||
	    rv == CKR_DEVICE_REMOVED || rv == CKR_DEVICE_ERROR) {
		/* Pulled out between the two calls, or unusable: list the slot as empty. */
		return CKR_OK;
	}
	if (rv != CKR_OK) {
		return rv;
	}
	info->flags |= P11S_TOKEN_PRESENT;
	p11s_ck__trim(info->label, sizeof(info->label), ti.label, sizeof(ti.label));
	p11s_ck__trim(info->manufacturer, sizeof(info->manufacturer), ti.manufacturerID,
	    sizeof(ti.manufacturerID));
	p11s_ck__trim(info->model, sizeof(info->model), ti.model, sizeof(ti.model));
	p11s_ck__trim(info->serial, sizeof(info->serial), ti.serialNumber,
	    sizeof(ti.serialNumber));
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (ti.flags & map[i].ck) {
			info->flags |= map[i].p11s;
		}
	}
	return CKR_OK;
}

int p11s_ck__slots(CK_FUNCTION_LIST *f, p11s_slot **out, size_t *n)
{
	CK_SLOT_ID *ids = NULL, *nids;
	CK_ULONG count = 0;
	p11s_slot *slots = NULL;
	size_t used = 0;
	CK_RV rv;
	int rc;

	*out = NULL;
	*n = 0;
	/* The list may grow between the size query and the call (a reader plugged in). */
	for (int tries = 0;; tries++) {
		if ((rv = f->C_GetSlotList(CK_FALSE, NULL, &count)) != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_GetSlotList");
			goto out;
		}
		if (count == 0) {
			break;
		}
		if ((nids = realloc(ids, count * sizeof(*ids))) == NULL) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		ids = nids;
		rv = f->C_GetSlotList(CK_FALSE, ids, &count);
		if (rv == CKR_BUFFER_TOO_SMALL && tries < 4) {
			continue;
		}
		if (rv != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_GetSlotList");
			goto out;
		}
		break;
	}
	if ((slots = calloc(count ? count : 1, sizeof(*slots))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (CK_ULONG i = 0; i < count; i++) {
		rv = p11s_ck__slot(f, ids[i], &slots[used]);
		if (rv == CKR_SLOT_ID_INVALID) {
			continue; /* a reader that went away since C_GetSlotList */
		}
		if (rv != CKR_OK) {
			rc = p11s_ck__rv(rv, "C_GetSlotInfo");
			goto out;
		}
		used++;
	}
	*out = slots;
	*n = used;
	slots = NULL;
	rc = P11S_OK;
out:
	free(slots);
	free(ids);
	return rc;
}

void p11s_object_clear(p11s_object *o)
{
	free(o->label);
	free(o->id.data);
	free(o->modulus.data);
	free(o->public_exponent.data);
	free(o->ec_params.data);
	free(o->ec_point.data);
	free(o->value.data);
	memset(o, 0, sizeof(*o));
}

void p11s_objects_free(p11s_object *objs, size_t n)
{
	if (objs == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		p11s_object_clear(&objs[i]);
	}
	free(objs);
}

/* p11smime — error codes, classes and the per-thread last-error record. */
#ifndef P11SMIME_ERROR_H
#define P11SMIME_ERROR_H

#include "common.h"

/**
 * Error codes: P11S_OK (0) or negative. Each code belongs to one class (p11s_error_class());
 * the tool maps classes onto exit statuses in one table (CLI.md "Exit status").
 */
typedef enum p11s_error_code {
	P11S_OK = 0,
	P11S_ERR_GENERIC = -1,        /**< internal failure (SYSTEM) */
	P11S_ERR_NOMEM = -2,          /**< out of memory (SYSTEM) */
	P11S_ERR_INVALID_ARG = -3,    /**< API misuse (USAGE) */
	P11S_ERR_USAGE = -4,          /**< bad option or combination (USAGE) */
	P11S_ERR_MALFORMED = -5,      /**< malformed input: message, URI, file (USAGE) */
	P11S_ERR_IO = -6,             /**< reading or writing a file failed (SYSTEM) */
	P11S_ERR_AMBIGUOUS = -7,      /**< a URI matches several keys or tokens (USAGE) */
	P11S_ERR_CONFIG = -8,         /**< bad configuration file (USAGE) */
	P11S_ERR_PIN_SOURCE = -9,     /**< PIN source unusable (USAGE) */
	P11S_ERR_NOT_FOUND = -20,     /**< no key, certificate or token matches (TOKEN) */
	P11S_ERR_MODULE = -21,        /**< PKCS#11 module cannot be loaded or initialised (TOKEN) */
	P11S_ERR_TOKEN_ABSENT = -22,  /**< no token in the slot (TOKEN) */
	P11S_ERR_PIN_INCORRECT = -23, /**< the token rejected the PIN (TOKEN) */
	P11S_ERR_PIN_LOCKED = -24,    /**< the PIN is locked; never tried (TOKEN) */
	P11S_ERR_MECHANISM = -25,     /**< token refuses a mechanism or its parameters (TOKEN) */
	P11S_ERR_UNSUPPORTED = -26,   /**< the backend lacks a capability (TOKEN) */
	P11S_ERR_DEVICE_REMOVED = -27,/**< token or session gone mid-operation (TOKEN) */
	P11S_ERR_TOKEN = -28,         /**< any other PKCS#11 failure (TOKEN) */
	P11S_ERR_LOGIN = -29,         /**< login needed but impossible, e.g. no PIN source (TOKEN) */
	P11S_ERR_VERIFY = -40,        /**< signature or certificate check failed (VERIFY) */
	P11S_ERR_DECRYPT = -41,       /**< decryption failed; deliberately uniform (VERIFY) */
	P11S_ERR_CRYPTO = -60,        /**< OpenSSL failed internally (SYSTEM) */
} p11s_error_code;

/** Error classes. */
typedef enum p11s_error_class {
	P11S_ECLASS_NONE = 0,
	P11S_ECLASS_VERIFY, /**< the input is well-formed but does not verify: exit 1 */
	P11S_ECLASS_USAGE,  /**< usage error or malformed input: exit 2 */
	P11S_ECLASS_TOKEN,  /**< token or PKCS#11 failure: exit 3 */
	P11S_ECLASS_SYSTEM, /**< I/O, memory or library failure: exit 2 (CLI.md has no other) */
} p11s_error_class_t;

/** The class of an error code; P11S_ECLASS_NONE for P11S_OK. Thread-safe. */
P11S_EXTERN p11s_error_class_t p11s_error_class(int code);

/** A short stable name of the code ("PIN_INCORRECT"), for JSON and logs. */
P11S_EXTERN const char *p11s_error_name(int code);

/** The last error raised on the calling thread. */
typedef struct p11s_error {
	int code;             /**< a p11s_error_code */
	unsigned long ck_rv;  /**< the PKCS#11 return value behind it, when has_ck_rv */
	int has_ck_rv;
	char message[1024];   /**< one line, no secrets */
	char openssl[1024];   /**< the drained OpenSSL error queue, "; "-separated, may be empty */
} p11s_error;

/**
 * The calling thread's last error record. Valid until the next library call on the thread.
 * Never NULL; code is P11S_OK if nothing failed since p11s_error_clear().
 */
P11S_EXTERN const p11s_error *p11s_error_last(void);

/** Forget the calling thread's last error. */
P11S_EXTERN void p11s_error_clear(void);

#endif

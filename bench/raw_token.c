/*
 * Raw token rates for docs/performance.md: what the token itself does per second with one
 * session and one login, with nothing of p11smime in the way. PKCS#11 v2.40 through p11-kit's
 * module loader:
 *
 *   - C_Sign CKM_RSA_PKCS on a SHA-256 DigestInfo (RFC 8017 §9.2: the 51-octet DER prefix and
 *     hash, as CMS hands a token for RSA PKCS#1 v1.5);
 *   - C_Sign CKM_ECDSA on a 32-octet digest;
 *   - C_Decrypt CKM_RSA_PKCS of a PKCS#1 v1.5 block made with the certificate's public key.
 *
 * usage: p11s-bench-raw MODULE TOKEN-LABEL PIN-FILE SECONDS RSA-LABEL RSA-CERT EC-LABEL
 * Prints "raw <what> <ops> ops in <s> s = <rate> ops/s", one line each. The PIN is read from
 * PIN-FILE (first line), never taken from the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/p11-kit.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static CK_FUNCTION_LIST *f;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_rv(const char *what, CK_RV rv)
{
	fprintf(stderr, "p11s-bench-raw: %s: CK_RV 0x%lx\n", what, (unsigned long)rv);
	exit(1);
}

/* The private key (or another class) with CKA_LABEL `label`. */
static CK_OBJECT_HANDLE find(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h;
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = f->C_FindObjectsInit(s, t, 2)) != CKR_OK) {
		die_rv("C_FindObjectsInit", rv);
	}
	rv = f->C_FindObjects(s, &h, 1, &n);
	f->C_FindObjectsFinal(s);
	if (rv != CKR_OK || n != 1) {
		fprintf(stderr, "p11s-bench-raw: no object labelled %s\n", label);
		exit(1);
	}
	return h;
}

typedef CK_RV (*init_fn)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
typedef CK_RV (*op_fn)(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);

/* Init + one-part operation, repeated for `secs` seconds; one line of output. */
static void run(const char *name, CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, CK_OBJECT_HANDLE key,
    init_fn init, op_fn op, const unsigned char *in, size_t inlen, double secs)
{
	CK_MECHANISM m = { mt, NULL, 0 };
	unsigned char out[1024];
	double t0 = now(), t;
	long n = 0;
	CK_RV rv;

	do {
		for (int i = 0; i < 16; i++) {
			CK_ULONG outlen = sizeof(out);

			if ((rv = init(s, &m, key)) != CKR_OK) {
				die_rv("init", rv);
			}
			if ((rv = op(s, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, &outlen)) != CKR_OK) {
				die_rv(name, rv);
			}
			n++;
		}
		t = now() - t0;
	} while (t < secs);
	printf("raw %s %ld ops in %.3f s = %.1f ops/s\n", name, n, t, (double)n / t);
}

int main(int argc, char **argv)
{
	/* RFC 8017 §9.2 note 1: DigestInfo prefix of SHA-256. */
	static const unsigned char di_prefix[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
		0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	unsigned char di[sizeof(di_prefix) + 32], digest[32], ct[512];
	char pin[256];
	size_t ctlen = sizeof(ct);
	CK_SLOT_ID slots[64];
	CK_ULONG nslots = 64;
	CK_SESSION_HANDLE s = 0;
	CK_OBJECT_HANDLE rsa, ec;
	CK_RV rv;
	EVP_PKEY_CTX *pc;
	X509 *cert;
	FILE *pf;
	double secs;
	int found = 0;

	if (argc != 8) {
		fprintf(stderr, "usage: %s MODULE TOKEN-LABEL PIN-FILE SECONDS RSA-LABEL RSA-CERT "
		                "EC-LABEL\n", argv[0]);
		return 2;
	}
	secs = atof(argv[4]);
	if ((pf = fopen(argv[3], "r")) == NULL || fgets(pin, sizeof(pin), pf) == NULL) {
		fprintf(stderr, "p11s-bench-raw: cannot read %s\n", argv[3]);
		return 1;
	}
	fclose(pf);
	pin[strcspn(pin, "\r\n")] = '\0';
	if ((f = p11_kit_module_load(argv[1], 0)) == NULL) {
		fprintf(stderr, "p11s-bench-raw: %s: %s\n", argv[1], p11_kit_message());
		return 1;
	}
	if ((rv = p11_kit_module_initialize(f)) != CKR_OK) {
		die_rv("C_Initialize", rv);
	}
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK) {
		die_rv("C_GetSlotList", rv);
	}
	for (CK_ULONG i = 0; i < nslots && !found; i++) {
		CK_TOKEN_INFO ti;
		char label[33];

		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
			continue;
		}
		memcpy(label, ti.label, 32);
		label[32] = '\0';
		for (int j = 31; j >= 0 && label[j] == ' '; j--) {
			label[j] = '\0';
		}
		if (strcmp(label, argv[2]) == 0) {
			if ((rv = f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
			         NULL, &s)) != CKR_OK) {
				die_rv("C_OpenSession", rv);
			}
			found = 1;
		}
	}
	if (!found) {
		fprintf(stderr, "p11s-bench-raw: no token labelled %s\n", argv[2]);
		return 1;
	}
	if ((rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin))) != CKR_OK) {
		die_rv("C_Login", rv);
	}
	memset(pin, 0, sizeof(pin));
	rsa = find(s, CKO_PRIVATE_KEY, argv[5]);
	ec = find(s, CKO_PRIVATE_KEY, argv[7]);
	memset(digest, 0x5a, sizeof(digest));
	memcpy(di, di_prefix, sizeof(di_prefix));
	memcpy(di + sizeof(di_prefix), digest, sizeof(digest));

	/* A PKCS#1 v1.5 encryption of a 32-octet content key with the certificate's key. */
	if ((pf = fopen(argv[6], "r")) == NULL ||
	    (cert = PEM_read_X509(pf, NULL, NULL, NULL)) == NULL) {
		fprintf(stderr, "p11s-bench-raw: cannot read certificate %s\n", argv[6]);
		return 1;
	}
	fclose(pf);
	if ((pc = EVP_PKEY_CTX_new(X509_get0_pubkey(cert), NULL)) == NULL ||
	    EVP_PKEY_encrypt_init(pc) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) <= 0 ||
	    EVP_PKEY_encrypt(pc, ct, &ctlen, digest, sizeof(digest)) <= 0) {
		fprintf(stderr, "p11s-bench-raw: cannot encrypt a test block\n");
		return 1;
	}
	EVP_PKEY_CTX_free(pc);
	X509_free(cert);

	run("C_Sign-CKM_RSA_PKCS-rsa2048", s, CKM_RSA_PKCS, rsa, f->C_SignInit, f->C_Sign, di,
	    sizeof(di), secs);
	run("C_Sign-CKM_ECDSA-p256", s, CKM_ECDSA, ec, f->C_SignInit, f->C_Sign, digest,
	    sizeof(digest), secs);
	run("C_Decrypt-CKM_RSA_PKCS-rsa2048", s, CKM_RSA_PKCS, rsa, f->C_DecryptInit, f->C_Decrypt,
	    ct, ctlen, secs);
	f->C_Logout(s);
	f->C_CloseSession(s);
	p11_kit_module_finalize(f);
	p11_kit_module_release(f);
	return 0;
}

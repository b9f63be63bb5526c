/* Certificate details for `keys`: subject, addresses (RFC 8550 §3), usages, validity. */
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli.h"

#define MAX_EMAILS 16

static void name_str(const X509_NAME *name, char *buf, size_t len)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n;

	buf[0] = '\0';
	if (b == NULL) {
		return;
	}
	/* RFC 2253 order and escaping, UTF-8 kept as is. */
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
	    (n = BIO_read(b, buf, (int)len - 1)) > 0) {
		buf[n] = '\0';
	}
	BIO_free(b);
}

static void time_str(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) {
		snprintf(buf, len, "?");
		return;
	}
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* E-mail addresses: subjectAltName rfc822Name, then pkcs-9 emailAddress (RFC 8550 §3). */
static size_t emails(X509 *cert, char out[][256], size_t max)
{
	GENERAL_NAMES *san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	const X509_NAME *subj = X509_get_subject_name(cert);
	size_t n = 0;
	int idx = -1;

	for (int i = 0; san != NULL && i < sk_GENERAL_NAME_num(san) && n < max; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);

		if (gn->type == GEN_EMAIL) {
			snprintf(out[n++], 256, "%.*s", ASN1_STRING_length(gn->d.rfc822Name),
			    (const char *)ASN1_STRING_get0_data(gn->d.rfc822Name));
		}
	}
	GENERAL_NAMES_free(san);
	while (n < max && (idx = X509_NAME_get_index_by_NID(subj, NID_pkcs9_emailAddress, idx)) >= 0) {
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
		char addr[256];
		int dup = 0;

		snprintf(addr, sizeof(addr), "%.*s", ASN1_STRING_length(s),
		    (const char *)ASN1_STRING_get0_data(s));
		for (size_t j = 0; j < n; j++) {
			dup |= strcasecmp(out[j], addr) == 0;
		}
		if (!dup) {
			memcpy(out[n++], addr, sizeof(addr));
		}
	}
	return n;
}

static const struct {
	uint32_t bit;
	const char *name;
} ku_names[] = {
	{ KU_DIGITAL_SIGNATURE, "digitalSignature" },
	{ KU_NON_REPUDIATION, "nonRepudiation" },
	{ KU_KEY_ENCIPHERMENT, "keyEncipherment" },
	{ KU_DATA_ENCIPHERMENT, "dataEncipherment" },
	{ KU_KEY_AGREEMENT, "keyAgreement" },
	{ KU_KEY_CERT_SIGN, "keyCertSign" },
	{ KU_CRL_SIGN, "cRLSign" },
	{ KU_ENCIPHER_ONLY, "encipherOnly" },
	{ KU_DECIPHER_ONLY, "decipherOnly" },
};

/* Print usages as a list; `json` selects JSON array items. Returns how many were printed. */
static int print_ku(FILE *f, X509 *cert, int json)
{
	uint32_t ku = X509_get_key_usage(cert);
	int n = 0;

	if (ku == UINT32_MAX) {
		return 0; /* no keyUsage extension: every usage allowed (RFC 8550 §4.4.2) */
	}
	for (size_t i = 0; i < sizeof(ku_names) / sizeof(ku_names[0]); i++) {
		if (ku & ku_names[i].bit) {
			if (json) {
				fputs(n ? "," : "", f);
				json_str(f, ku_names[i].name);
			} else {
				fprintf(f, "%s%s", n ? ", " : "", ku_names[i].name);
			}
			n++;
		}
	}
	return n;
}

static int print_eku(FILE *f, X509 *cert, int json)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
	int n = 0;

	for (int i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
		const ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
		char name[128];
		int nid = OBJ_obj2nid(o);

		if (nid != NID_undef) {
			snprintf(name, sizeof(name), "%s", OBJ_nid2ln(nid));
			/* Short names read better for the common ones. */
			if (nid == NID_email_protect) {
				snprintf(name, sizeof(name), "emailProtection");
			} else if (nid == NID_anyExtendedKeyUsage) {
				snprintf(name, sizeof(name), "anyExtendedKeyUsage");
			} else {
				snprintf(name, sizeof(name), "%s", OBJ_nid2sn(nid));
			}
		} else {
			OBJ_obj2txt(name, sizeof(name), o, 1);
		}
		if (json) {
			fputs(n ? "," : "", f);
			json_str(f, name);
		} else {
			fprintf(f, "%s%s", n ? ", " : "", name);
		}
		n++;
	}
	EXTENDED_KEY_USAGE_free(eku);
	return n;
}

static void fingerprint(X509 *cert, char *hex, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	hex[0] = '\0';
	if (X509_digest(cert, EVP_sha256(), md, &mdlen)) {
		for (unsigned int i = 0; i < mdlen && 2 * i + 2 < len; i++) {
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		}
	}
}

static void serial_hex(X509 *cert, char *buf, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *h = bn ? BN_bn2hex(bn) : NULL;

	snprintf(buf, len, "%s", h ? h : "?");
	OPENSSL_free(h);
	BN_free(bn);
}

void certinfo_text(FILE *f, X509 *cert, const char *in)
{
	char buf[1024], nb[64], na[64], addr[MAX_EMAILS][256];
	size_t ne = emails(cert, addr, MAX_EMAILS);

	name_str(X509_get_subject_name(cert), buf, sizeof(buf));
	fprintf(f, "%ssubject:  %s\n", in, buf);
	name_str(X509_get_issuer_name(cert), buf, sizeof(buf));
	fprintf(f, "%sissuer:   %s\n", in, buf);
	serial_hex(cert, buf, sizeof(buf));
	fprintf(f, "%sserial:   %s\n", in, buf);
	fprintf(f, "%semail:    ", in);
	for (size_t i = 0; i < ne; i++) {
		fprintf(f, "%s%s", i ? ", " : "", addr[i]);
	}
	fprintf(f, "%s\n%skey usage: ", ne ? "" : "(none)", in);
	if (print_ku(f, cert, 0) == 0) {
		fprintf(f, "(no extension: any)");
	}
	fprintf(f, "\n%sextended key usage: ", in);
	if (print_eku(f, cert, 0) == 0) {
		fprintf(f, "(no extension: any)");
	}
	time_str(X509_get0_notBefore(cert), nb, sizeof(nb));
	time_str(X509_get0_notAfter(cert), na, sizeof(na));
	fprintf(f, "\n%svalid:    %s to %s\n", in, nb, na);
	fingerprint(cert, buf, sizeof(buf));
	fprintf(f, "%ssha256:   %s\n", in, buf);
}

void certinfo_json(FILE *f, X509 *cert)
{
	char buf[1024], addr[MAX_EMAILS][256];
	size_t ne = emails(cert, addr, MAX_EMAILS);
	int has_ku = X509_get_key_usage(cert) != UINT32_MAX;

	fputc('{', f);
	name_str(X509_get_subject_name(cert), buf, sizeof(buf));
	json_key(f, "subject");
	json_str(f, buf);
	fputc(',', f);
	name_str(X509_get_issuer_name(cert), buf, sizeof(buf));
	json_key(f, "issuer");
	json_str(f, buf);
	fputc(',', f);
	serial_hex(cert, buf, sizeof(buf));
	json_key(f, "serial");
	json_str(f, buf);
	fputc(',', f);
	json_key(f, "emails");
	fputc('[', f);
	for (size_t i = 0; i < ne; i++) {
		fputs(i ? "," : "", f);
		json_str(f, addr[i]);
	}
	fputs("],", f);
	json_key(f, "key_usage");
	if (has_ku) {
		fputc('[', f);
		print_ku(f, cert, 1);
		fputc(']', f);
	} else {
		fputs("null", f);
	}
	fputc(',', f);
	json_key(f, "extended_key_usage");
	if (X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) {
		fputc('[', f);
		print_eku(f, cert, 1);
		fputc(']', f);
	} else {
		fputs("null", f);
	}
	fputc(',', f);
	time_str(X509_get0_notBefore(cert), buf, sizeof(buf));
	json_key(f, "not_before");
	json_str(f, buf);
	fputc(',', f);
	time_str(X509_get0_notAfter(cert), buf, sizeof(buf));
	json_key(f, "not_after");
	json_str(f, buf);
	fputc(',', f);
	fingerprint(cert, buf, sizeof(buf));
	json_key(f, "sha256");
	json_str(f, buf);
	fputc('}', f);
}

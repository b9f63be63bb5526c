/*
 * What the four files of `verify` share (verify.c: the message and the content digests;
 * verify_signer.c: one SignerInfo's checks; verify_opaque.c: the streaming reader of opaque
 * signed-data; verify_report.c: the result). Private to src/cms/.
 */
#ifndef P11S_CMS_VERIFY_INT_H
#define P11S_CMS_VERIFY_INT_H

#include <stdio.h>
#include <sys/types.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <p11smime/verify.h>

#include "ess/ess_int.h"
#include "mime/signed.h"
#include "x509/x509_int.h"

#define MAX_DIGESTS 8
#ifndef P11S_MAX_SIGNERS /* build-time setting (docs/security.md, "Limits") */
#define P11S_MAX_SIGNERS 64
/*
 * The OCSP responses stapled in `cms` (RFC 5940 §2: RevocationInfoChoice other,
 * id-ri-ocsp-response), DER copies in `out` (empty when none). verify_stapled.c.
 * @return P11S_OK or P11S_ERR_NOMEM. Free with p11s_x509__stapled_clear().
 */
int p11s_cms__stapled_ocsp(CMS_ContentInfo *cms, p11s_x509_stapled *out);

#endif
#define MAX_SIGNERS P11S_MAX_SIGNERS
/*
 * Opaque signed-data is read as a stream; everything but the eContent (certificates, CRLs,
 * SignerInfos) is held in memory, bounded like a multipart/signed p7s (docs/security.md).
 */
#ifndef P11S_MAX_P7S_SIZE /* build-time setting, the same as src/mime/signed.c's */
#define P11S_MAX_P7S_SIZE (64L * 1024 * 1024)
#endif

/* One SignerInfo as reported. */
typedef struct signer_int {
	p11s_reasons reasons;
	char *subject, *issuer, *serial, *signing_time, *digest, *sigalg;
	char **emails;
	size_t n_emails;
	char **chain;
	size_t n_chain;
	p11s_ess_info ess;         /* label, equivalent labels, receipt request */
	char *ts_time, *ts_tsa;    /* signature timestamp: genTime, TSA subject */
	char *validation_time;     /* when the path was validated (RFC 3339) */
	const char *vt_source;     /* "now", "given", "timestamp" (a literal) */
	int ts_valid, sc_bound, nonrep;
	const char *key_type;      /* signer key (a literal), bits */
	int key_bits;
	int has_date_skew, has_ts_skew;  /* the date check (src/verdict/dates.c) */
	int64_t date_skew, ts_skew;
	p11s_x509_revocation *rev; /* per chain element: the revocation status used */
	size_t n_rev;
	p11s_verify_reason *reasons_view;  /* the public views (publish()) */
	p11s_verify_revocation *rev_view;
} signer_int;

struct p11s_verify_priv {
	FILE *in;
	enum p11s_mime_kind kind;
	off_t start, end;                     /* multipart/signed part 1 */
	unsigned char fp[EVP_MAX_MD_SIZE];    /* SHA-256 of the verified content bytes */
	unsigned int fp_len;
	CMS_ContentInfo *cms;                 /* the SignedData; opaque: without its eContent */
	FILE *content;                        /* opaque: the eContent octets (scratch file) */
	p11s_reasons reasons, warnings;
	p11s_verify_reason *reasons_view, *warnings_view;
	signer_int *si;
	size_t n_si;
	p11s_verify_signer *pub;
	char *nested;
	char *date, *protected_date;          /* Date fields, raw */
	/* RFC 9788 (verify_protected.c) */
	char *hp;
	p11s_mime_fields entity;              /* the signed entity's header fields */
	int have_entity;                      /* `entity` read from the signed part (date check) */
	p11s_mime_fields prot, outer;         /* protected (borrowed from entity), the message's */
	p11s_header_field *prot_view, *diff_view;
	size_t n_prot, n_diff;
	p11s_x509_sender prot_sender;         /* From / Sender of the signed entity */
	int has_prot_sender;
};

/*
 * RFC 9788 header protection (verify_protected.c): when the signed entity's Content-Type has
 * an hp parameter, its non-structural header fields are the protected ones: recorded, compared
 * with the outer ones (a warning "protected-header-differs" for each difference, unless hp is
 * "cipher" and an HP-Outer field names that outer value), and, when it has a From, the From the
 * RFC 8550 check uses (`p->prot_sender`). Called once the content is readable.
 */
int p11s_cms__protected_headers(struct p11s_verify_priv *p);
void p11s_cms__protected_free(struct p11s_verify_priv *p);

/* The digests of the content, one per distinct algorithm, plus our own SHA-256 fingerprint. */
typedef struct digests {
	EVP_MD_CTX *ctx[MAX_DIGESTS];
	EVP_MD *md[MAX_DIGESTS];
	int nid[MAX_DIGESTS];
	unsigned char value[MAX_DIGESTS][EVP_MAX_MD_SIZE];
	unsigned int len[MAX_DIGESTS];
	size_t n;
	EVP_MD_CTX *fp;
} digests;

typedef struct verify_env {
	CMS_ContentInfo *cms;
	STACK_OF(X509) *certs;     /* SignedData certificates + --certs: candidates, untrusted */
	STACK_OF(X509_CRL) *crls;  /* SignedData CRLs */
	const p11s_x509_store *store;
	const p11s_x509_sender *sender; /* NULL: the caller checks the sender itself */
	digests *d;
	p11s_reasons *warnings;
	int allow_weak;            /* the weak-algorithm policy's findings are warnings */
	p11s_x509_stapled stapled; /* OCSP responses in the SignedData (RFC 5940); read only
	                              when the revocation policy asks OCSP */
} verify_env;

/* The index of the content digest computed with `nid` (verify.c), or -1. */
int p11s_cms__digests_find(const digests *d, int nid);

/* Check one SignerInfo; fills `out`. */
int p11s_cms__verify_signer(const verify_env *env, CMS_SignerInfo *si, signer_int *out);

/* Point the public view at the internal data (validation's types mapped by src/verdict/). */
int p11s_cms__publish(p11s_verify_result *res);

/*
 * Read the opaque body of `m` (a scratch file): `*out` is the SignedData skeleton (NULL with
 * `*type_nid` set if the body is another content type), p->content the eContent file.
 */
int p11s_cms__read_opaque(struct p11s_verify_priv *p, p11s_mime_signed *m, CMS_ContentInfo **out,
    int *type_nid, int *has_content);

/* Feed the opaque content file from its start to `sink`, in chunks. */
int p11s_cms__stream_content(FILE *f, p11s_mime_feed sink, void *payload);

#endif

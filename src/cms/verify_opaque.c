/*
 * `verify`: opaque signed-data (application/pkcs7-mime; smime-type=signed-data) read as a
 * stream: the BER walker shared with decryption (ber_stream.c) splits the SignedData into a
 * small skeleton for OpenSSL and the eContent in a scratch file, hashed in chunks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11smime/verify.h>

#include "cms/ber_stream.h"
#include "cms/verify_int.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/signed.h"
#include "tsa/tsa_int.h"
#include "verdict/verdict.h"
#include "x509/x509_int.h"

/* ---- opaque signed-data, streamed ----------------------------------------------------- */

/*
 * Streaming verification of application/pkcs7-mime signed-data (DESIGN.md decision 4), the
 * same way as the streaming decryption (src/cms/envelope.c): OpenSSL 3.0's d2i would hold the
 * whole eContent in memory, so the decoded body (already in a scratch file) is walked once as
 * BER by src/cms/ber_stream.c:
 *
 *   - every field except eContent (version, digestAlgorithms, eContentType, certificates,
 *     crls, signerInfos) is copied verbatim into a "skeleton" ContentInfo: the same
 *     SignedData with the OPTIONAL eContent absent (RFC 5652 §5.2), i.e. detached;
 *   - the eContent octets ([0] EXPLICIT OCTET STRING, primitive or constructed from
 *     segments, X.690 §8.7) go to a second scratch file.
 *
 * The skeleton is parsed by OpenSSL and checked exactly as before; the content digests are
 * computed reading the content file in chunks, and `--out` copies the same file. The
 * signatures are over the signedAttrs, or over the digest contexts (verify_no_attrs), so the
 * eContent is never needed inside the CMS structure.
 */

/* DER of id-signedData (RFC 5652 §5.1). */
static const unsigned char oid_signed[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
	0x01, 0x07, 0x02 };

static int sk_write(BIO *sk, const unsigned char *p, size_t n)
{
	if (BIO_write(sk, p, (int)n) != (int)n) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	return P11S_OK;
}

/*
 * Walk the decoded body in `der`. For a SignedData: the skeleton goes to `sk`, the eContent
 * octets to `content`, `*has_content` says whether eContent was present. For any other
 * content type, `*type_nid` is set (NID_undef if unknown) and the rest is only checked to be
 * well-formed BER.
 */
static int split_signed(FILE *der, BIO *sk, FILE *content, int *has_content, int *type_nid)
{
	char too_large[96];
	p11s_cms_ber r = { der, 0, NULL, (uint64_t)P11S_MAX_P7S_SIZE, too_large };
	p11s_cms_ber_hdr ci, ex, sd, h, eci, ec;
	BIO *oid = NULL;
	unsigned char *p;
	long n;
	int rc, more;
	static const unsigned char open_seq[] = { 0x30, 0x80 }, open_ex[] = { 0xa0, 0x80 },
	                           eoc[] = { 0, 0 };

	snprintf(too_large, sizeof(too_large),
	    "certificates, CRLs and signer infos over %lld bytes, P11S_MAX_P7S_SIZE",
	    (long long)P11S_MAX_P7S_SIZE);
	*has_content = 0;
	*type_nid = NID_pkcs7_signed;
	if ((oid = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY } (RFC 5652 §3) */
	if ((rc = p11s_cms__ber_content_type(&r, &ci, oid)) < 0) {
		goto out;
	}
	n = BIO_get_mem_data(oid, (char **)&p);
	if (!((size_t)n == sizeof(oid_signed) && memcmp(p, oid_signed, (size_t)n) == 0)) {
		const unsigned char *cp = p;
		ASN1_OBJECT *o = NULL;

		*type_nid = d2i_ASN1_OBJECT(&o, &cp, n) != NULL ? OBJ_obj2nid(o) : NID_undef;
		ASN1_OBJECT_free(o);
		ERR_clear_error();
		/* Not signed: the rest must still be a well-formed ContentInfo (no truncation). */
		while ((more = p11s_cms__ber_next(&r, &ci, &h)) == 1) {
			if ((rc = p11s_cms__ber_rest(&r, &h, 0)) < 0) {
				goto out;
			}
		}
		rc = more;
		goto out;
	}
	/* The skeleton uses indefinite lengths: no length has to be known in advance. */
	if ((rc = sk_write(sk, open_seq, 2)) < 0 || (rc = sk_write(sk, p, (size_t)n)) < 0 ||
	    (rc = sk_write(sk, open_ex, 2)) < 0 || (rc = sk_write(sk, open_seq, 2)) < 0) {
		goto out;
	}
	/* SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo, ... } */
	if ((rc = p11s_cms__ber_expect(&r, &ci, 0xa0, &ex, "no [0] content")) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &ex, 0x30, &sd, "no SignedData")) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &sd, V_ASN1_INTEGER, &h, "no version")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &sd, 0x31, &h, "no digestAlgorithms")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0) {
		goto out;
	}
	/* EncapsulatedContentInfo ::= SEQUENCE { eContentType,
	 *   eContent [0] EXPLICIT OCTET STRING OPTIONAL } (RFC 5652 §5.2) */
	if ((rc = p11s_cms__ber_expect(&r, &sd, 0x30, &eci, "no EncapsulatedContentInfo")) < 0 ||
	    (rc = sk_write(sk, open_seq, 2)) < 0 ||
	    (rc = p11s_cms__ber_expect(&r, &eci, V_ASN1_OBJECT, &h, "no eContentType")) < 0 ||
	    (rc = p11s_cms__ber_copy(&r, &h, sk)) < 0 || (rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
		goto out;
	}
	if (rc == 1) {
		if (h.id != 0xa0) {
			rc = p11s_cms__ber_bad("unexpected field in EncapsulatedContentInfo");
			goto out;
		}
		if ((rc = p11s_cms__ber_next(&r, &h, &ec)) < 0) {
			goto out;
		}
		/* The OCTET STRING may be constructed (0x24): BER, e.g. `openssl cms -stream`. */
		if (rc == 0 || (ec.id & ~0x20) != V_ASN1_OCTET_STRING) {
			rc = p11s_cms__ber_bad("eContent is not an OCTET STRING");
			goto out;
		}
		if ((rc = p11s_cms__ber_octets(&r, &ec, content,
		         "eContent segment is not an OCTET STRING", 0)) < 0 ||
		    (rc = p11s_cms__ber_next(&r, &h, &ec)) < 0) {
			goto out;
		}
		if (rc == 1) {
			rc = p11s_cms__ber_bad("more than one eContent");
			goto out;
		}
		*has_content = 1;
		if ((rc = p11s_cms__ber_next(&r, &eci, &h)) < 0) {
			goto out;
		}
		if (rc == 1) {
			rc = p11s_cms__ber_bad("unexpected field in EncapsulatedContentInfo");
			goto out;
		}
	}
	if ((rc = sk_write(sk, eoc, 2)) < 0) {
		goto out;
	}
	/* The rest as it is: certificates [0], crls [1], signerInfos SET (RFC 5652 §5.1). */
	if ((rc = p11s_cms__ber_copy_tail(&r, &sd, &ex, &ci, sk)) < 0) {
		goto out;
	}
	if ((rc = sk_write(sk, eoc, 2)) < 0 || (rc = sk_write(sk, eoc, 2)) < 0 ||
	    (rc = sk_write(sk, eoc, 2)) < 0) {
		goto out;
	}
	if (fflush(content) != 0 || fseeko(content, 0, SEEK_SET) != 0) {
		rc = p11s_error__set(P11S_ERR_IO, "writing a temporary file: %s", strerror(errno));
		goto out;
	}
	rc = P11S_OK;
out:
	BIO_free(oid);
	return rc;
}

/*
 * Read the opaque body of `m` (a scratch file): `*out` is the SignedData skeleton (NULL with
 * `*type_nid` set if the body is another content type), p->content the eContent file.
 */
int p11s_cms__read_opaque(struct p11s_verify_priv *p, p11s_mime_signed *m, CMS_ContentInfo **out,
    int *type_nid, int *has_content)
{
	CMS_ContentInfo *cms = NULL;
	FILE *content = NULL;
	BIO *sk = NULL;
	const unsigned char *der;
	long len;
	int rc;

	*out = NULL;
	if ((content = tmpfile()) == NULL) {
		return p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s",
		    strerror(errno));
	}
	if ((sk = BIO_new(BIO_s_mem())) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = split_signed(m->body, sk, content, has_content, type_nid)) < 0 ||
	    *type_nid != NID_pkcs7_signed) {
		goto out;
	}
	len = BIO_get_mem_data(sk, (char **)&der);
	if ((cms = d2i_CMS_ContentInfo(NULL, &der, len)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED,
		    "the application/pkcs7-mime body is not a valid CMS SignedData");
		goto out;
	}
	*out = cms;
	p->content = content;
	content = NULL;
out:
	BIO_free(sk);
	if (content != NULL) {
		fclose(content);
	}
	return rc;
}

/* Feed the opaque content file from its start to `sink`, in chunks. */
int p11s_cms__stream_content(FILE *f, p11s_mime_feed sink, void *payload)
{
	unsigned char buf[65536];
	size_t n;
	int rc;

	if (fseeko(f, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "reading a temporary file: %s", strerror(errno));
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if ((rc = sink(buf, n, payload)) < 0) {
			return rc;
		}
	}
	if (ferror(f)) {
		return p11s_error__set(P11S_ERR_IO, "reading a temporary file: %s", strerror(errno));
	}
	return P11S_OK;
}

/*
 * ESS attributes (RFC 2634): receiptRequest (§2.7) and ESSSecurityLabel / equivalentLabels
 * (§3.2, §3.4), built for `sign` and read for `verify`; helpers shared with receipt.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>
#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/encode.h"
#include "core/error_int.h"
#include "ess/ess_int.h"
#include "mime/gmime_lazy.h"
#include "mime/mime.h"

/* RFC 2634 §3.2: ESSSecurityLabel classification values. */
static const char *const class_names[] = { "unmarked", "unclassified", "restricted",
	"confidential", "secret", "top-secret" };

/* Parse "POLICY-OID[:CLASSIFICATION]". `*cls` is -1 when absent. */
static int label_parse(const char *spec, ASN1_OBJECT **oid, long *cls)
{
	char buf[256], *colon;

	*oid = NULL;
	*cls = -1;
	if (spec == NULL || strlen(spec) >= sizeof(buf)) {
		return p11s_error__set(P11S_ERR_USAGE, "bad security label: expected "
		                                       "POLICY-OID:CLASSIFICATION");
	}
	strcpy(buf, spec);
	if ((colon = strchr(buf, ':')) != NULL) {
		char *end;
		size_t i;

		*colon++ = '\0';
		for (i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++) {
			if (strcasecmp(colon, class_names[i]) == 0) {
				*cls = (long)i;
				break;
			}
		}
		if (*cls < 0) {
			errno = 0;
			*cls = strtol(colon, &end, 10);
			/* RFC 2634 §3.2: SecurityClassification ::= INTEGER (0..ub-integer-options(256)) */
			if (errno != 0 || end == colon || *end != '\0' || *cls < 0 || *cls > 256) {
				return p11s_error__set(P11S_ERR_USAGE, "bad security classification '%s': "
				    "0..256 or unmarked, unclassified, restricted, confidential, secret, "
				    "top-secret", colon);
			}
		}
	}
	/* Numeric dotted form only: a policy is identified by its OID. */
	if ((*oid = OBJ_txt2obj(buf, 1)) == NULL || OBJ_length(*oid) == 0) {
		ASN1_OBJECT_free(*oid);
		*oid = NULL;
		ERR_clear_error();
		return p11s_error__set(P11S_ERR_USAGE, "bad security policy identifier '%s': a dotted "
		                                       "OID is expected", buf);
	}
	return P11S_OK;
}

int p11s_security_label_check(const char *spec)
{
	ASN1_OBJECT *oid;
	long cls;
	int rc = label_parse(spec, &oid, &cls);

	ASN1_OBJECT_free(oid);
	return rc;
}

/*
 * ESSSecurityLabel ::= SET { security-policy-identifier OBJECT IDENTIFIER,
 *   security-classification INTEGER OPTIONAL, ... } — DER orders the SET's components by tag
 * (X.690 §10.3): INTEGER (02) before OBJECT IDENTIFIER (06).
 */
static int add_label(CMS_SignerInfo *si, const char *spec)
{
	ASN1_OBJECT *oid = NULL;
	ASN1_INTEGER *ci = NULL;
	unsigned char *o = NULL, *c = NULL, *der = NULL;
	int olen, clen = 0, rc;
	long cls;
	size_t hl;

	if ((rc = label_parse(spec, &oid, &cls)) < 0) {
		return rc;
	}
	if ((olen = i2d_ASN1_OBJECT(oid, &o)) <= 0 ||
	    (cls >= 0 && ((ci = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set(ci, cls) ||
	                     (clen = i2d_ASN1_INTEGER(ci, &c)) <= 0)) ||
	    (der = OPENSSL_malloc((size_t)olen + (size_t)clen + 10)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot encode the security label");
		goto out;
	}
	hl = p11s_core__der_header(der, 0x31, (size_t)olen + (size_t)clen);
	if (clen > 0) {
		memcpy(der + hl, c, (size_t)clen);
	}
	memcpy(der + hl + clen, o, (size_t)olen);
	/* An ASN1_TYPE of V_ASN1_SET holds the complete encoding and writes it as is. */
	if (CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_securityLabel, V_ASN1_SET, der,
	        (int)(hl + (size_t)olen + (size_t)clen)) <= 0) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the ESSSecurityLabel attribute");
	}
out:
	OPENSSL_free(o);
	OPENSSL_free(c);
	OPENSSL_free(der);
	ASN1_INTEGER_free(ci);
	ASN1_OBJECT_free(oid);
	return rc;
}

/* GeneralNames holding one rfc822Name. */
static GENERAL_NAMES *rfc822_names(const char *addr)
{
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

	if (gens == NULL || gen == NULL || ia5 == NULL ||
	    !ASN1_STRING_set(ia5, addr, (int)strlen(addr))) {
		goto err;
	}
	GENERAL_NAME_set0_value(gen, GEN_EMAIL, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen)) {
		goto err;
	}
	return gens;
err:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return NULL;
}

/*
 * ReceiptRequest (RFC 2634 §2.7): signedContentIdentifier = 32 random octets (§2.7 asks for
 * a value unique to this message), receiptsFrom allOrFirstTier, receiptsTo 1..16 addresses.
 */
static int add_receipt_request(CMS_SignerInfo *si, OSSL_LIB_CTX *libctx, int which,
    const char *const *to, const char *from)
{
	STACK_OF(GENERAL_NAMES) *rto = sk_GENERAL_NAMES_new_null();
	CMS_ReceiptRequest *rr = NULL;
	unsigned char *id = NULL;
	int rc = P11S_OK, n = 0;

	if (rto == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; to != NULL && to[i] != NULL; i++) {
		GENERAL_NAMES *g = rfc822_names(to[i]);

		if (g == NULL || !sk_GENERAL_NAMES_push(rto, g)) {
			GENERAL_NAMES_free(g);
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		n++;
	}
	if (n == 0) {
		GENERAL_NAMES *g;

		if (from == NULL) {
			rc = p11s_error__set(P11S_ERR_USAGE, "a receipt request needs an address: the "
			                                     "message has no From; give --receipts-to");
			goto out;
		}
		if ((g = rfc822_names(from)) == NULL || !sk_GENERAL_NAMES_push(rto, g)) {
			GENERAL_NAMES_free(g);
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
		n = 1;
	}
	if (n > 16) {
		rc = p11s_error__set(P11S_ERR_USAGE, "at most 16 --receipts-to addresses (RFC 2634 "
		                                     "section 2.7)");
		goto out;
	}
	if ((id = OPENSSL_malloc(32)) == NULL || RAND_bytes(id, 32) != 1) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "no randomness for the content identifier");
		goto out;
	}
	/* create0: takes id and rto on success. allorfirst: 0 allReceipts, 1 firstTier. */
	if ((rr = CMS_ReceiptRequest_create0_ex(id, 32,
	         which == P11S_RECEIPT_REQUEST_FIRST_TIER ? 1 : 0, NULL, rto, libctx)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot build the receipt request");
		goto out;
	}
	id = NULL;
	rto = NULL;
	if (!CMS_add1_ReceiptRequest(si, rr)) {
		rc = p11s_error__ossl(P11S_ERR_CRYPTO, "cannot add the receipt request");
	}
out:
	CMS_ReceiptRequest_free(rr);
	OPENSSL_free(id);
	sk_GENERAL_NAMES_pop_free(rto, GENERAL_NAMES_free);
	return rc;
}

int p11s_ess__add_sign_attrs(CMS_SignerInfo *si, OSSL_LIB_CTX *libctx, const p11s_sign_opts *o,
    const char *from)
{
	int rc;

	if (o->receipt_request != P11S_RECEIPT_REQUEST_NONE) {
		if (o->receipt_request != P11S_RECEIPT_REQUEST_ALL &&
		    o->receipt_request != P11S_RECEIPT_REQUEST_FIRST_TIER) {
			return p11s_error__set(P11S_ERR_USAGE, "unknown receipt request kind");
		}
		if ((rc = add_receipt_request(si, libctx, o->receipt_request, o->receipts_to, from)) < 0) {
			return rc;
		}
	}
	if (o->security_label != NULL && (rc = add_label(si, o->security_label)) < 0) {
		return rc;
	}
	return P11S_OK;
}

int p11s_ess__from_address(FILE *in, char **out)
{
	char *line = NULL, *field = NULL;
	size_t cap = 0, flen = 0;
	ssize_t n;
	int in_from = 0, rc = P11S_OK;

	*out = NULL;
	rewind(in);
	/* Header section only (RFC 5322 §2.1), with folded continuation lines (§2.2.3). */
	while ((n = getline(&line, &cap, in)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
			line[--n] = '\0';
		}
		if (n == 0) {
			break;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			if (in_from) {
				char *nf = realloc(field, flen + (size_t)n + 1);

				if (nf == NULL) {
					rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
					goto out;
				}
				field = nf;
				memcpy(field + flen, line, (size_t)n + 1);
				flen += (size_t)n;
			}
			continue;
		}
		if (field != NULL) {
			break; /* the From field is complete */
		}
		in_from = strncasecmp(line, "From:", 5) == 0;
		if (in_from && (field = strdup(line + 5)) != NULL) {
			flen = strlen(field);
		} else if (in_from) {
			rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (field != NULL) {
		InternetAddressList *l;

		if ((rc = p11s_mime__init()) < 0) {
			goto out;
		}
		if ((l = internet_address_list_parse(NULL, field)) != NULL) {
			for (int i = 0; i < internet_address_list_length(l); i++) {
				InternetAddress *a = internet_address_list_get_address(l, i);

				if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
					const char *addr =
					    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));

					if (addr != NULL && *addr != '\0' && (*out = strdup(addr)) == NULL) {
						rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
					}
					break;
				}
			}
			g_object_unref(l);
		}
	}
out:
	rewind(in);
	free(line);
	free(field);
	return rc;
}

/* ---- reading -------------------------------------------------------------------------- */

/* "OID:name(n)" of an ESSSecurityLabel (the complete SET encoding); NULL if malformed. */
static char *label_text(const unsigned char *p, long len)
{
	STACK_OF(ASN1_TYPE) *items = d2i_ASN1_SET_ANY(NULL, &p, len);
	const ASN1_OBJECT *oid = NULL;
	long cls = -1;
	char obuf[128], *s = NULL;

	for (int i = 0; items != NULL && i < sk_ASN1_TYPE_num(items); i++) {
		ASN1_TYPE *t = sk_ASN1_TYPE_value(items, i);

		if (t->type == V_ASN1_OBJECT && oid == NULL) {
			oid = t->value.object;
		} else if (t->type == V_ASN1_INTEGER && cls < 0) {
			cls = ASN1_INTEGER_get(t->value.integer);
		}
	}
	if (oid != NULL && OBJ_obj2txt(obuf, sizeof(obuf), oid, 1) > 0) {
		size_t l = strlen(obuf) + 48;

		if ((s = malloc(l)) != NULL) {
			if (cls < 0) {
				snprintf(s, l, "%s", obuf);
			} else if (cls < (long)(sizeof(class_names) / sizeof(class_names[0]))) {
				snprintf(s, l, "%s:%s(%ld)", obuf, class_names[cls], cls);
			} else {
				snprintf(s, l, "%s:%ld", obuf, cls);
			}
		}
	}
	sk_ASN1_TYPE_pop_free(items, ASN1_TYPE_free);
	ERR_clear_error();
	return s;
}

static char *rr_text(CMS_ReceiptRequest *rr)
{
	ASN1_STRING *cid;
	int aof;
	STACK_OF(GENERAL_NAMES) *list, *to;
	char *idhex, *s;
	size_t cap = 256, len;

	CMS_ReceiptRequest_get0_values(rr, &cid, &aof, &list, &to);
	if ((idhex = p11s_core__hex(ASN1_STRING_get0_data(cid), (size_t)ASN1_STRING_length(cid))) == NULL ||
	    (s = malloc(cap + strlen(idhex))) == NULL) {
		free(idhex);
		return NULL;
	}
	snprintf(s, cap, "from=%s; to=", list != NULL ? "list" : aof == 1 ? "first-tier" : "all");
	for (int i = 0; to != NULL && i < sk_GENERAL_NAMES_num(to); i++) {
		GENERAL_NAMES *g = sk_GENERAL_NAMES_value(to, i);

		for (int j = 0; j < sk_GENERAL_NAME_num(g); j++) {
			GENERAL_NAME *n = sk_GENERAL_NAME_value(g, j);

			len = strlen(s);
			if (n->type == GEN_EMAIL && len + (size_t)n->d.rfc822Name->length + 2 < cap) {
				snprintf(s + len, cap - len, "%s%.*s", len > 0 && s[len - 1] != '=' ? "," : "",
				    n->d.rfc822Name->length, (const char *)n->d.rfc822Name->data);
			}
		}
	}
	len = strlen(s);
	snprintf(s + len, cap + strlen(idhex) - len, "; id=%s", idhex);
	free(idhex);
	return s;
}

int p11s_ess__read(CMS_SignerInfo *si, p11s_ess_info *out)
{
	int loc;
	CMS_ReceiptRequest *rr = NULL;

	memset(out, 0, sizeof(*out));
	loc = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_securityLabel, -1);
	if (loc >= 0) {
		X509_ATTRIBUTE *a = CMS_signed_get_attr(si, loc);
		ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(a, 0);

		/* RFC 2634 §3.2: one label per SignerInfo, one value. */
		if (X509_ATTRIBUTE_count(a) != 1 || t == NULL || t->type != V_ASN1_SET ||
		    CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_securityLabel, loc) >= 0 ||
		    (out->label = label_text(t->value.set->data, t->value.set->length)) == NULL) {
			out->label_malformed = 1;
		}
	}
	/* EquivalentLabels ::= SEQUENCE OF ESSSecurityLabel (§3.4). */
	loc = CMS_signed_get_attr_by_NID(si, NID_id_smime_aa_equivalentLabels, -1);
	if (loc >= 0) {
		ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, loc), 0);
		const unsigned char *p;
		STACK_OF(ASN1_TYPE) *seq = NULL;

		if (t != NULL && t->type == V_ASN1_SEQUENCE) {
			p = t->value.sequence->data;
			seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, t->value.sequence->length);
		}
		for (int i = 0; seq != NULL && i < sk_ASN1_TYPE_num(seq); i++) {
			ASN1_TYPE *e = sk_ASN1_TYPE_value(seq, i);
			char *s, **nv;

			if (e->type != V_ASN1_SET ||
			    (s = label_text(e->value.set->data, e->value.set->length)) == NULL) {
				continue;
			}
			if ((nv = realloc(out->equivalent, (out->n_equivalent + 1) * sizeof(*nv))) == NULL) {
				free(s);
				break;
			}
			out->equivalent = nv;
			nv[out->n_equivalent++] = s;
		}
		sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
		ERR_clear_error();
	}
	if (CMS_get1_ReceiptRequest(si, &rr) > 0) {
		out->receipt_request = rr_text(rr);
	}
	CMS_ReceiptRequest_free(rr);
	ERR_clear_error();
	return P11S_OK;
}

void p11s_ess__info_clear(p11s_ess_info *i)
{
	free(i->label);
	for (size_t k = 0; k < i->n_equivalent; k++) {
		free(i->equivalent[k]);
	}
	free(i->equivalent);
	free(i->receipt_request);
	memset(i, 0, sizeof(*i));
}

/* ---- raw DER walking ------------------------------------------------------------------ */

/* Total encoded length of the element at `p` (walking indefinite-length contents). */
static int ber_total(const unsigned char *p, const unsigned char *end, size_t *total, int depth)
{
	size_t hl, cl;
	const unsigned char *q;

	if (depth > 32 || p11s_core__ber_header(p, end, 1, &hl, &cl) < 0) {
		return -1;
	}
	if (cl != (size_t)-1) {
		*total = hl + cl;
		return 0;
	}
	for (q = p + hl;;) {
		size_t t;

		if (end - q >= 2 && q[0] == 0 && q[1] == 0) {
			*total = (size_t)(q + 2 - p);
			return 0;
		}
		if (ber_total(q, end, &t, depth + 1) < 0) {
			return -1;
		}
		q += t;
	}
}

/* Enter the constructed element at `p`: its contents [*c, *cend). */
static int ber_enter(const unsigned char *p, const unsigned char *end, const unsigned char **c,
    const unsigned char **cend)
{
	size_t hl, cl, total;

	if (p11s_core__ber_header(p, end, 1, &hl, &cl) < 0 || ber_total(p, end, &total, 0) < 0) {
		return -1;
	}
	*c = p + hl;
	*cend = cl == (size_t)-1 ? p + total - 2 : p + hl + cl;
	return 0;
}

/* Skip one element. */
static int ber_next(const unsigned char **p, const unsigned char *end)
{
	size_t t;

	if (ber_total(*p, end, &t, 0) < 0) {
		return -1;
	}
	*p += t;
	return 0;
}

int p11s_ess__raw_signed_attrs(const unsigned char *der, size_t len, int idx,
    const unsigned char **out, size_t *n)
{
	const unsigned char *end = der + len, *c, *ce, *sd, *sde, *p;
	size_t total;

	/* ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT SignedData } */
	if (len < 2 || der[0] != 0x30 || ber_enter(der, end, &c, &ce) < 0 || c >= ce || c[0] != 0x06 ||
	    ber_next(&c, ce) < 0 || c >= ce || c[0] != 0xa0 || ber_enter(c, ce, &c, &ce) < 0 ||
	    c >= ce || c[0] != 0x30 || ber_enter(c, ce, &sd, &sde) < 0) {
		return -1;
	}
	/* SignedData ::= SEQUENCE { version, digestAlgorithms, encapContentInfo,
	 *   certificates [0] OPTIONAL, crls [1] OPTIONAL, signerInfos SET } */
	p = sd;
	for (int i = 0; i < 3; i++) {
		if (p >= sde || ber_next(&p, sde) < 0) {
			return -1;
		}
	}
	while (p < sde && (p[0] == 0xa0 || p[0] == 0xa1)) {
		if (ber_next(&p, sde) < 0) {
			return -1;
		}
	}
	if (p >= sde || p[0] != 0x31 || ber_enter(p, sde, &c, &ce) < 0) {
		return -1;
	}
	for (int i = 0; i < idx; i++) {
		if (c >= ce || ber_next(&c, ce) < 0) {
			return -1;
		}
	}
	/* SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, signedAttrs [0] IMPLICIT ... } */
	if (c >= ce || c[0] != 0x30 || ber_enter(c, ce, &p, &ce) < 0) {
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		if (p >= ce || ber_next(&p, ce) < 0) {
			return -1;
		}
	}
	if (p >= ce || p[0] != 0xa0 || ber_total(p, ce, &total, 0) < 0) {
		return -1;
	}
	*out = p;
	*n = total;
	return 0;
}

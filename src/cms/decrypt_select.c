/*
 * Decryption with a key chosen by the caller's RecipientIdentifier index (the gateway keeps
 * one built at start, DESIGN.md decision 9): RFC 5652 §6.2 RecipientIdentifiers are handed to
 * the caller, the key it names is checked against the RecipientInfo, and only then does the
 * token see anything (STANDARDS.md §12: try only the RecipientInfo for our certificate).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/x509.h>

#include <p11smime/gateway.h>
#include <p11smime/log.h>

#include "cms/envelope_int.h"
#include "core/error_int.h"
#include "mime/enveloped.h"

/* Ask `select` about one rid; on a key whose certificate this RecipientInfo names, keep it. */
static p11s_key *ask(p11s_key_select_fn select, void *payload, CMS_RecipientInfo *ri,
    ASN1_OCTET_STRING *keyid, X509_NAME *issuer, ASN1_INTEGER *serial, int kari)
{
	p11s_recipient_id rid = { 0 };
	p11s_key *k;

	if (keyid != NULL) {
		rid.ski = keyid;
	} else if (issuer != NULL && serial != NULL) {
		rid.issuer = issuer;
		rid.serial = serial;
	} else {
		return NULL;
	}
	rid.key_agreement = kari;
	if ((k = select(&rid, payload)) == NULL) {
		return NULL;
	}
	/* The index answered; the certificate itself must be this recipient (RFC 5652 §6.2). */
	if (p11s_key_cert(k) == NULL || !p11s_cms__ri_matches(ri, p11s_key_cert(k))) {
		p11s_log(P11S_LOG_WARN, "key index named %s, whose certificate is not the recipient",
		    p11s_key_uri(k));
		return NULL;
	}
	return k;
}

static p11s_key *choose(CMS_ContentInfo *cms, p11s_key_select_fn select, void *payload,
    CMS_RecipientInfo **ri_out)
{
	STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
	ASN1_OCTET_STRING *keyid;
	X509_NAME *issuer;
	ASN1_INTEGER *serial;
	p11s_key *k = NULL;

	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris) && k == NULL; i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);

		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS) {
			keyid = NULL;
			issuer = NULL;
			serial = NULL;
			if (CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid, &issuer, &serial) == 1) {
				k = ask(select, payload, ri, keyid, issuer, serial, 0);
			}
		} else if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE) {
			STACK_OF(CMS_RecipientEncryptedKey) *reks = CMS_RecipientInfo_kari_get0_reks(ri);

			for (int j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks) && k == NULL; j++) {
				keyid = NULL;
				issuer = NULL;
				serial = NULL;
				/* RFC 5652 §6.2.2 KeyAgreeRecipientIdentifier: rKeyId or issuerAndSerial. */
				if (CMS_RecipientEncryptedKey_get0_id(sk_CMS_RecipientEncryptedKey_value(reks,
				        j), &keyid, NULL, NULL, &issuer, &serial) == 1) {
					k = ask(select, payload, ri, keyid, issuer, serial, 1);
				}
			}
		}
		if (k != NULL) {
			*ri_out = ri;
		}
	}
	return k;
}

int p11s_decrypt_message_select(p11s_ctx *ctx, p11s_key_select_fn select, void *payload,
    FILE *in, FILE *out, p11s_decrypt_info *info)
{
	return p11s_decrypt_message_select_ex(ctx, select, payload, in, out, NULL, info);
}

int p11s_decrypt_message_select_ex(p11s_ctx *ctx, p11s_key_select_fn select, void *payload,
    FILE *in, FILE *out, const p11s_decrypt_opts *opts, p11s_decrypt_info *info)
{
	p11s_mime_head h = { 0 };
	CMS_ContentInfo *cms = NULL;
	CMS_RecipientInfo *ri = NULL;
	EVP_PKEY *pkey = NULL;
	p11s_key *use;
	FILE *plain = NULL;
	int rc, cipher_nid = NID_undef;

	if (ctx == NULL || select == NULL || in == NULL || out == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG,
		    "p11s_decrypt_message_select: bad arguments");
	}
	if (info != NULL) {
		memset(info, 0, sizeof(*info));
	}
	if ((rc = p11s_cms__read_enveloped(p11s_ctx_libctx(ctx), in, &h, &cms, &cipher_nid)) < 0 ||
	    (rc = p11s_cms__check_authenticated(cms, cipher_nid, opts)) < 0) {
		goto out;
	}
	if ((use = choose(cms, select, payload, &ri)) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOT_FOUND,
		    "no key in the index for any of the %d recipients of the message",
		    sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms)));
		goto out;
	}
	if ((rc = p11s_key_pkey(use, &pkey)) < 0) {
		goto out;
	}
	if ((plain = tmpfile()) == NULL) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
		goto out;
	}
	if ((rc = p11s_cms__decrypt(cms, pkey, p11s_key_cert(use), p11s_ctx_libctx(ctx), plain)) < 0) {
		goto out;
	}
	/* Version 3: the RFC 9788 report of a protected payload (docs/envelope.md). */
	if ((rc = opts != NULL && opts->version >= 3 && opts->header_protection != NULL
	              ? p11s_mime__write_decrypted_hp(out, &h, plain, opts->header_protection)
	              : p11s_mime__write_decrypted(out, &h, plain)) < 0) {
		goto out;
	}
	if (info != NULL) {
		p11s_cms__describe(cms, cipher_nid, ri, use, info);
	}
out:
	if (plain != NULL) {
		fclose(plain);
	}
	EVP_PKEY_free(pkey);
	CMS_ContentInfo_free(cms);
	p11s_mime__head_clear(&h);
	return rc;
}

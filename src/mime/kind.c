/* The S/MIME layer at the root of a message, and re-joining a peeled layer with its headers. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/objects.h>

#include <p11smime/message.h>

#include "core/error_int.h"
#include "mime/enveloped.h"

/* Without smime-type, the CMS contentType decides (RFC 8551 §3.9: .p7m names both kinds). */
static int kind_from_body(FILE *in, const p11s_mime_head *h, p11s_msg_kind *out)
{
	BIO *der = BIO_new(BIO_s_mem());
	CMS_ContentInfo *cms = NULL;
	int rc, nid;

	if (der == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((rc = p11s_mime__decode_body(in, h, der)) < 0) {
		goto out;
	}
	if ((cms = d2i_CMS_bio(der, NULL)) == NULL) {
		rc = p11s_error__ossl(P11S_ERR_MALFORMED, "the application/pkcs7-mime body is not CMS");
		goto out;
	}
	nid = OBJ_obj2nid(CMS_get0_type(cms));
	*out = nid == NID_pkcs7_signed                                         ? P11S_MSG_SIGNED
	    : nid == NID_pkcs7_enveloped || nid == NID_id_smime_ct_authEnvelopedData ? P11S_MSG_ENVELOPED
	                                                                         : P11S_MSG_PLAIN;
	rc = P11S_OK;
out:
	CMS_ContentInfo_free(cms);
	BIO_free(der);
	return rc;
}

int p11s_message_kind(FILE *in, p11s_msg_kind *out)
{
	p11s_mime_head h;
	char type[128];
	char *st = NULL, *name = NULL;
	int rc;

	*out = P11S_MSG_PLAIN;
	memset(&h, 0, sizeof(h));
	if (fseek(in, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "cannot rewind the message");
	}
	if ((rc = p11s_mime__read_head(in, &h)) < 0) {
		goto out;
	}
	if (h.content_type == NULL) {
		goto out;
	}
	p11s_mime__media_type(h.content_type, type, sizeof(type));
	if (strcmp(type, "multipart/signed") == 0) {
		*out = P11S_MSG_SIGNED;
		goto out;
	}
	if (strcmp(type, "application/pkcs7-mime") != 0 &&
	    strcmp(type, "application/x-pkcs7-mime") != 0 &&
	    strcmp(type, "application/octet-stream") != 0) {
		goto out;
	}
	st = p11s_mime__param(h.content_type, "smime-type");
	if (st != NULL && strcasecmp(st, "signed-data") == 0) {
		*out = P11S_MSG_SIGNED;
	} else if (st != NULL && (strcasecmp(st, "enveloped-data") == 0 ||
	                             strcasecmp(st, "authEnveloped-data") == 0)) {
		*out = P11S_MSG_ENVELOPED;
	} else if (st == NULL) {
		/* octet-stream counts only with a .p7m name (RFC 8551 §3.9). */
		name = p11s_mime__param(h.content_type, "name");
		if (strcmp(type, "application/octet-stream") != 0 ||
		    (name != NULL && strlen(name) > 4 &&
		        strcasecmp(name + strlen(name) - 4, ".p7m") == 0)) {
			rc = kind_from_body(in, &h, out);
		}
	}
out:
	free(st);
	free(name);
	p11s_mime__head_clear(&h);
	if (fseek(in, 0, SEEK_SET) != 0 && rc == P11S_OK) {
		rc = p11s_error__set(P11S_ERR_IO, "cannot rewind the message");
	}
	return rc;
}

int p11s_message_join(FILE *outer, FILE *entity, FILE *out)
{
	p11s_mime_head h;
	int rc;

	memset(&h, 0, sizeof(h));
	if (fseek(outer, 0, SEEK_SET) != 0) {
		return p11s_error__set(P11S_ERR_IO, "cannot rewind the message");
	}
	if ((rc = p11s_mime__read_head(outer, &h)) == P11S_OK) {
		/* Line ends follow the outer message, as decrypt does (h.crlf). */
		rc = p11s_mime__write_decrypted(out, &h, entity);
	}
	p11s_mime__head_clear(&h);
	return rc;
}

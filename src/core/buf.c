/* Byte buffers that are wiped when freed. */
#include <openssl/crypto.h>

#include <p11smime/common.h>
#include <p11smime/error.h>

#include "core/error_int.h"

int p11s_buf_new(p11s_buf **out, size_t len)
{
	p11s_buf *b;

	*out = NULL;
	if ((b = OPENSSL_zalloc(sizeof(*b))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((b->data = OPENSSL_zalloc(len ? len : 1)) == NULL) {
		OPENSSL_free(b);
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	b->len = len;
	*out = b;
	return P11S_OK;
}

void p11s_buf_free(p11s_buf *buf)
{
	if (buf == NULL) {
		return;
	}
	OPENSSL_clear_free(buf->data, buf->len ? buf->len : 1);
	OPENSSL_free(buf);
}

const char *p11s_version(void)
{
	return P11S_VERSION;
}

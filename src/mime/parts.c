/*
 * The S/MIME parts inside a message's content (RFC 9787 §3): once every layer that is the
 * whole body has been peeled (the cryptographic envelope), what remains is the payload, and
 * S/MIME parts in it — a forwarded message with its own signature, an application/pkcs7-mime
 * attachment — are content of the message, never protection of it. This lists them so that a
 * reader can say "contains a signed attachment by X" instead of showing X's signature as if
 * it covered the mail (STANDARDS.md §12).
 *
 * Each candidate is serialised by GMime into an unlinked temporary file and classified by
 * p11s_message_kind(), so a part counts as S/MIME exactly when `unwrap` would peel it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include <p11smime/message.h>

#include "core/error_int.h"
#include "mime/gmime_lazy.h"
#include "mime/mime.h"

/* Bounds for hostile input (docs/security.md, "Limits"). */
#define PARTS_MAX 16
#define PARTS_DEPTH 32

typedef struct walk {
	p11s_message_part *v;
	size_t n;
	int rc;
} walk;

static int looks_smime(GMimeObject *o)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);

	return ct != NULL && (g_mime_content_type_is_type(ct, "multipart", "signed") ||
	                         g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
	                         g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime") ||
	                         g_mime_content_type_is_type(ct, "application", "octet-stream"));
}

/* `o` serialised to a fresh unlinked file, rewound; NULL on failure (error set). */
static FILE *serialise(GMimeObject *o)
{
	FILE *f = tmpfile();
	GMimeStream *s;
	int fd;

	if (f == NULL) {
		p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
		return NULL;
	}
	if ((fd = dup(fileno(f))) < 0) {
		p11s_error__set(P11S_ERR_IO, "cannot create a temporary file: %s", strerror(errno));
		fclose(f);
		return NULL;
	}
	s = g_mime_stream_fs_new(fd); /* owns fd */
	if (g_mime_object_write_to_stream(o, NULL, s) < 0) {
		g_object_unref(s);
		fclose(f);
		p11s_error__set(P11S_ERR_MALFORMED, "cannot serialise a MIME part");
		return NULL;
	}
	g_object_unref(s);
	if (fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		p11s_error__set(P11S_ERR_IO, "cannot rewind a temporary file");
		return NULL;
	}
	return f;
}

/* Record `o` (serialised) at `path` if it is a layer `unwrap` would peel. 1 taken, 0 not. */
static int consider(walk *w, GMimeObject *o, const char *path, const char *type)
{
	p11s_msg_kind kind = P11S_MSG_PLAIN;
	p11s_message_part *p;
	FILE *f;

	if (w->n == PARTS_MAX) {
		return 0;
	}
	if ((f = serialise(o)) == NULL) {
		p11s_error_clear();
		return 0;
	}
	if (p11s_message_kind(f, &kind) < 0 || kind == P11S_MSG_PLAIN) {
		/* A part that does not parse as S/MIME is just content. */
		p11s_error_clear();
		fclose(f);
		return 0;
	}
	p = &w->v[w->n++];
	snprintf(p->path, sizeof(p->path), "%s", path);
	snprintf(p->content_type, sizeof(p->content_type), "%s", type);
	p->kind = kind;
	p->entity = f;
	return 1;
}

static char *type_of(GMimeObject *o, char *buf, size_t len)
{
	GMimeContentType *ct = g_mime_object_get_content_type(o);

	snprintf(buf, len, "%s/%s",
	    ct && g_mime_content_type_get_media_type(ct) ? g_mime_content_type_get_media_type(ct)
	                                                 : "text",
	    ct && g_mime_content_type_get_media_subtype(ct) ? g_mime_content_type_get_media_subtype(ct)
	                                                    : "plain");
	return buf;
}

static void visit(walk *w, GMimeObject *o, const char *path, int depth)
{
	char type[128];

	if (depth > PARTS_DEPTH || w->n == PARTS_MAX) {
		return;
	}
	type_of(o, type, sizeof(type));
	if (path[0] != '\0' && looks_smime(o) && consider(w, o, path, type)) {
		return; /* an S/MIME part is reported whole, not entered */
	}
	if (GMIME_IS_MULTIPART(o)) {
		int n = g_mime_multipart_get_count(GMIME_MULTIPART(o));

		for (int i = 0; i < n; i++) {
			char sub[64];

			snprintf(sub, sizeof(sub), "%s%s%d", path, path[0] ? "." : "", i + 1);
			visit(w, g_mime_multipart_get_part(GMIME_MULTIPART(o), i), sub, depth + 1);
		}
	} else if (GMIME_IS_MESSAGE_PART(o)) {
		/* A forwarded message: S/MIME if its own root is (then with its own From). */
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		GMimeObject *root = m != NULL ? g_mime_message_get_mime_part(m) : NULL;

		if (root == NULL) {
			return;
		}
		if (looks_smime(root) && consider(w, GMIME_OBJECT(m), path[0] ? path : "1", type)) {
			return;
		}
		{
			char sub[64];

			snprintf(sub, sizeof(sub), "%s%s1", path, path[0] ? "." : "");
			visit(w, root, sub, depth + 1);
		}
	}
}

int p11s_message_smime_parts(FILE *in, p11s_message_part **out, size_t *n)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;
	GMimeObject *root;
	walk w = { NULL, 0, P11S_OK };
	int fd, rc;

	if (in == NULL || out == NULL || n == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_message_smime_parts: NULL argument");
	}
	*out = NULL;
	*n = 0;
	if ((rc = p11s_mime__gmime()) < 0) {
		return rc;
	}
	if ((w.v = calloc(PARTS_MAX, sizeof(*w.v))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	if ((fd = dup(fileno(in))) < 0 || lseek(fd, 0, SEEK_SET) < 0) {
		if (fd >= 0) {
			close(fd);
		}
		free(w.v);
		return p11s_error__set(P11S_ERR_IO, "cannot read the message: %s", strerror(errno));
	}
	stream = g_mime_stream_fs_new(fd); /* owns fd */
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_persist_stream(parser, TRUE);
	msg = g_mime_parser_construct_message(parser, NULL);
	root = msg != NULL ? g_mime_message_get_mime_part(msg) : NULL;
	if (root == NULL) {
		if (msg != NULL) {
			g_object_unref(msg);
		}
		g_object_unref(parser);
		g_object_unref(stream);
		free(w.v);
		return p11s_error__set(P11S_ERR_MALFORMED, "not a MIME message");
	}
	visit(&w, root, "", 0);
	g_object_unref(msg);
	g_object_unref(parser);
	g_object_unref(stream);
	(void)fseek(in, 0, SEEK_SET);
	if (w.n == 0) {
		free(w.v);
		w.v = NULL;
	}
	*out = w.v;
	*n = w.n;
	return P11S_OK;
}

void p11s_message_parts_free(p11s_message_part *parts, size_t n)
{
	for (size_t i = 0; parts != NULL && i < n; i++) {
		if (parts[i].entity != NULL) {
			fclose(parts[i].entity);
		}
	}
	free(parts);
}

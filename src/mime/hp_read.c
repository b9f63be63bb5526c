/*
 * RFC 9788 header protection, the reading side shared by verify and decrypt (docs/verify.md
 * and docs/envelope.md "Header protection"): which user-facing fields a reader compares, how
 * values compare, and when an HP-Outer field (§2.2) says the sender itself exposed an outer
 * value; and the report decrypt gives of a Cryptographic Payload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error_int.h"
#include "mime/hp_read.h"

/* The fields a reader shows (RFC 9788 §1.1.3 user-facing fields, and the threading ones). */
const char *const p11s_mime__hp_compared[] = {
	"From", "To", "Cc", "Subject", "Date", "Reply-To", "Sender", "Message-ID",
	"In-Reply-To", "References",
};
const size_t p11s_mime__hp_n_compared =
    sizeof(p11s_mime__hp_compared) / sizeof(p11s_mime__hp_compared[0]);

int p11s_mime__hp_structural(const char *name)
{
	return strcasecmp(name, "MIME-Version") == 0 || strncasecmp(name, "Content-", 8) == 0;
}

int p11s_mime__hp_same_value(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0') {
		if ((*a == ' ' || *a == '\t') && (*b == ' ' || *b == '\t')) {
			while (*a == ' ' || *a == '\t') {
				a++;
			}
			while (*b == ' ' || *b == '\t') {
				b++;
			}
			continue;
		}
		if (*a++ != *b++) {
			return 0;
		}
	}
	return *a == '\0' && *b == '\0';
}

int p11s_mime__hp_exposed(const p11s_mime_fields *prot, const char *name, const char *outer)
{
	size_t nl = strlen(name);

	for (size_t i = 0; outer != NULL && i < prot->n; i++) {
		const char *v = prot->value[i];

		if (strcasecmp(prot->name[i], "HP-Outer") == 0 && strncasecmp(v, name, nl) == 0 &&
		    v[nl] == ':') {
			v += nl + 1;
			while (*v == ' ' || *v == '\t') {
				v++;
			}
			if (p11s_mime__hp_same_value(v, outer)) {
				return 1;
			}
		}
	}
	return 0;
}

void p11s_header_protection_free(p11s_header_protection *r)
{
	if (r == NULL) {
		return;
	}
	for (size_t i = 0; i < r->n_fields; i++) {
		free((char *)r->fields[i].name);
		free((char *)r->fields[i].value);
	}
	for (size_t i = 0; i < r->n_differs; i++) {
		free((char *)r->differs[i].value);
		free((char *)r->differs[i].outer);
	}
	free((p11s_header_field *)r->fields);
	free((p11s_header_field *)r->differs);
	free((char *)r->hp);
	free(r);
}

static char *dup_or_null(const char *s, int *bad)
{
	char *d = s != NULL ? strdup(s) : NULL;

	*bad |= s != NULL && d == NULL;
	return d;
}

int p11s_mime__hp_report(const p11s_mime_fields *entity, const char *hp, const char *outer,
    size_t outer_len, int signed_payload, p11s_header_protection **out)
{
	p11s_header_protection *r = calloc(1, sizeof(*r));
	p11s_header_field *fields = NULL, *differs = NULL;
	p11s_mime_fields of = { 0 };
	FILE *mem = NULL;
	int bad = 0, rc = P11S_OK;

	*out = NULL;
	if (r == NULL || (entity->n > 0 && (fields = calloc(entity->n, sizeof(*fields))) == NULL) ||
	    (differs = calloc(p11s_mime__hp_n_compared, sizeof(*differs))) == NULL) {
		goto nomem;
	}
	r->fields = fields;
	r->differs = differs;
	r->signed_payload = signed_payload;
	r->hp = dup_or_null(hp, &bad);
	/* The protected fields: the payload's own, but the structural ones and HP-Outer. */
	for (size_t i = 0; i < entity->n; i++) {
		if (!p11s_mime__hp_structural(entity->name[i]) &&
		    strcasecmp(entity->name[i], "HP-Outer") != 0) {
			fields[r->n_fields].name = dup_or_null(entity->name[i], &bad);
			fields[r->n_fields++].value = dup_or_null(entity->value[i], &bad);
		}
	}
	if (outer_len > 0) {
		if ((mem = fmemopen((void *)outer, outer_len, "rb")) == NULL) {
			goto nomem;
		}
		rc = p11s_mime__header_fields(mem, 0, -1, &of);
		fclose(mem);
		if (rc < 0) {
			p11s_header_protection_free(r);
			return rc;
		}
	}
	for (size_t i = 0; i < p11s_mime__hp_n_compared; i++) {
		const char *name = p11s_mime__hp_compared[i];
		const char *in = p11s_mime__fields_get(entity, name);
		const char *o = p11s_mime__fields_get(&of, name);

		if ((in == NULL && o == NULL) || (in != NULL && o != NULL &&
		                                     p11s_mime__hp_same_value(in, o))) {
			continue;
		}
		differs[r->n_differs].name = name;
		differs[r->n_differs].value = dup_or_null(in, &bad);
		differs[r->n_differs].outer = dup_or_null(o, &bad);
		differs[r->n_differs++].exposed =
		    hp != NULL && strcmp(hp, "cipher") == 0 && p11s_mime__hp_exposed(entity, name, o);
	}
	p11s_mime__fields_free(&of);
	if (bad) {
		goto nomem;
	}
	*out = r;
	return P11S_OK;
nomem:
	p11s_mime__fields_free(&of);
	if (r != NULL && r->fields == NULL) {
		free(fields);
	}
	if (r != NULL && r->differs == NULL) {
		free(differs);
	}
	p11s_header_protection_free(r);
	return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

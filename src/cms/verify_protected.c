/*
 * RFC 9788 header protection, the reading side of verify (docs/verify.md "Header
 * protection"). A signer can sign the header fields a reader sees only by putting copies of
 * them into the signed entity, marked by the hp parameter of its Content-Type (§2.1.1). Then:
 *
 * - the entity's non-structural fields are the protected ones, reported in order;
 * - the user-facing fields are compared with the outer message's (§4.5: a reader shows the
 *   protected ones): a difference is a warning (not a failure: lists and relays do rewrite
 *   Subject lines), unless hp="cipher" and an HP-Outer field says the sender exposed exactly
 *   that outer value (§2.2: an obscured Subject "[...]"); hp="cipher" alone proves nothing;
 * - a protected From is what the RFC 8550 address check compares (the signer vouches for it;
 *   the outer From is anyone's to change).
 *
 * Without an hp parameter nothing here applies: header fields inside an entity that does not
 * say it protects them (a forwarded message's, say) are not presented as protected.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cms/verify_int.h"
#include "core/error_int.h"
#include "mime/hp_read.h"

int p11s_cms__protected_headers(struct p11s_verify_priv *p)
{
	p11s_mime_fields mem_fields = { 0 }, *entity = &p->entity;
	const char *ct;
	FILE *mem = NULL;
	int rc;

	/*
	 * The signed entity: part 1 of a multipart/signed, or the eContent of an opaque one. Its
	 * fields are kept for the date check too (check_dates(), the protected Date), so the
	 * entity's header is read once per message.
	 */
	if (p->kind == P11S_MIME_MULTIPART_SIGNED) {
		rc = p11s_mime__header_fields(p->in, p->start, p->end, entity);
		p->have_entity = rc == P11S_OK;
	} else if (p->content != NULL) {
		rc = p11s_mime__header_fields(p->content, 0, -1, entity);
		p->have_entity = rc == P11S_OK;
	} else {
		ASN1_OCTET_STRING **pos = p->cms != NULL ? CMS_get0_content(p->cms) : NULL;

		if (pos == NULL || *pos == NULL || (*pos)->length <= 0) {
			return P11S_OK;
		}
		if ((mem = fmemopen((*pos)->data, (size_t)(*pos)->length, "rb")) == NULL) {
			return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		}
		entity = &mem_fields;
		rc = p11s_mime__header_fields(mem, 0, -1, entity);
		fclose(mem);
	}
	if (rc < 0) {
		return rc;
	}
	if ((ct = p11s_mime__fields_get(entity, "Content-Type")) == NULL ||
	    (p->hp = p11s_mime__ctype_param(ct, "hp")) == NULL) {
		p11s_mime__fields_free(&mem_fields);
		return P11S_OK; /* no header protection */
	}
	/* The protected fields: the entity's own but the structural ones (strings borrowed). */
	if (entity == &mem_fields) {
		p->entity = mem_fields; /* kept for the borrowed strings; not for the date check */
		entity = &p->entity;
	}
	if (entity->n > 0 && ((p->prot.name = calloc(entity->n, sizeof(char *))) == NULL ||
	                         (p->prot.value = calloc(entity->n, sizeof(char *))) == NULL)) {
		goto nomem;
	}
	for (size_t i = 0; i < entity->n; i++) {
		if (!p11s_mime__hp_structural(entity->name[i])) {
			p->prot.name[p->prot.n] = entity->name[i];
			p->prot.value[p->prot.n++] = entity->value[i];
		}
	}
	if (p->prot.n > 0 && (p->prot_view = calloc(p->prot.n, sizeof(*p->prot_view))) == NULL) {
		goto nomem;
	}
	/* Reported: the protected fields but HP-Outer, which says what the sender exposed. */
	p->n_prot = 0;
	for (size_t i = 0; i < p->prot.n; i++) {
		if (strcasecmp(p->prot.name[i], "HP-Outer") != 0) {
			p->prot_view[p->n_prot].name = p->prot.name[i];
			p->prot_view[p->n_prot++].value = p->prot.value[i];
		}
	}
	/* The outer message's header section, from the start of the input. */
	if ((rc = p11s_mime__header_fields(p->in, 0, -1, &p->outer)) < 0) {
		return rc;
	}
	if ((p->diff_view = calloc(p11s_mime__hp_n_compared,
	         sizeof(*p->diff_view))) == NULL) {
		goto nomem;
	}
	for (size_t i = 0; i < p11s_mime__hp_n_compared; i++) {
		const char *in = p11s_mime__fields_get(&p->prot, p11s_mime__hp_compared[i]);
		const char *out = p11s_mime__fields_get(&p->outer, p11s_mime__hp_compared[i]);

		if ((in == NULL && out == NULL) || (in != NULL && out != NULL && p11s_mime__hp_same_value(in, out))) {
			continue;
		}
		int exposed = strcmp(p->hp, "cipher") == 0 && p11s_mime__hp_exposed(&p->prot, p11s_mime__hp_compared[i], out);

		p->diff_view[p->n_diff++] = (p11s_header_field){ p11s_mime__hp_compared[i], in, out, exposed };
		if (!exposed && (rc = p11s_reasons__add(&p->warnings, "protected-header-differs",
		         "the outer %s (%s) is not the signed one (%s): a reader should show the "
		         "signed one (RFC 9788 §4.5)", p11s_mime__hp_compared[i], out ? out : "absent",
		         in ? in : "absent")) < 0) {
			return rc;
		}
	}
	/* RFC 8550 §3 against the From the signer signed. */
	if (p11s_mime__fields_get(&p->prot, "From") != NULL) {
		if ((rc = p11s_mime__sender_of(&p->prot, &p->prot_sender)) < 0) {
			return rc;
		}
		p->has_prot_sender = 1;
	}
	return P11S_OK;
nomem:
	return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
}

void p11s_cms__protected_free(struct p11s_verify_priv *p)
{
	free(p->hp);
	free(p->prot.name); /* borrowed from p->entity */
	free(p->prot.value);
	p11s_mime__fields_free(&p->entity);
	p11s_mime__fields_free(&p->outer);
	free(p->prot_view);
	free(p->diff_view);
	if (p->has_prot_sender) {
		p11s_x509__strv_free(p->prot_sender.from, p->prot_sender.n_from);
		free(p->prot_sender.sender);
	}
}

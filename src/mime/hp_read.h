/* RFC 9788 header protection, the reading side (hp_read.c). */
#ifndef P11S_MIME_HP_READ_H
#define P11S_MIME_HP_READ_H

#include <stddef.h>

#include <p11smime/envelope.h>
#include "mime/signed.h"

/* The user-facing fields a reader compares, protected against outer. */
extern const char *const p11s_mime__hp_compared[];
extern const size_t p11s_mime__hp_n_compared;

/* MIME-Version and Content-*: fields of the entity, never protected copies (§1.1). */
int p11s_mime__hp_structural(const char *name);
/* Values compared as a reader sees them: white space runs are one space. */
int p11s_mime__hp_same_value(const char *a, const char *b);
/*
 * Non-zero when an HP-Outer field of `prot` (§2.2) says the sender exposed `name` with the
 * value `outer`: then an outer value that differs from the protected one is the sender's own
 * choice (an obscured Subject), not a change in transit.
 */
int p11s_mime__hp_exposed(const p11s_mime_fields *prot, const char *name, const char *outer);
/*
 * The report of a Cryptographic Payload whose fields are `entity` (all of them, as read) and
 * whose hp parameter is `hp`, against the outer raw header fields `outer`: the protected
 * fields in order, and the user-facing fields whose outer value differs. P11S_OK (*out set)
 * or P11S_ERR_NOMEM, P11S_ERR_MALFORMED.
 */
int p11s_mime__hp_report(const p11s_mime_fields *entity, const char *hp, const char *outer,
    size_t outer_len, int signed_payload, p11s_header_protection **out);

#endif

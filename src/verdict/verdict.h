/*
 * Between path validation (src/x509/, which knows no CMS and no public verify types) and the
 * verifiers that publish results (src/cms/verify.c, src/ess/receipt.c): the public verify
 * options turned into validation options, and public views of validation's reasons and
 * revocation entries (docs/architecture.md).
 */
#ifndef P11S_VERDICT_H
#define P11S_VERDICT_H

#include <p11smime/verify.h>

#include "x509/x509_int.h"

/* The validation options of the public verify options (files and time; no copies made). */
void p11s_verdict__x509_opts(const p11s_verify_opts *in, p11s_x509_opts *out);

/*
 * A public view of `r`: `*out` (malloc'd, NULL when `r` is empty) points at `r`'s strings, so
 * `r` must outlive it; free the view with free().
 */
int p11s_verdict__reasons(const p11s_reasons *r, p11s_verify_reason **out);

/* The same for `n` revocation entries: a view of their strings, freed with free(). */
int p11s_verdict__revocation(const p11s_x509_revocation *rev, size_t n,
    p11s_verify_revocation **out);

#endif

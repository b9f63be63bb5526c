/* The agent's pinentry client (pinentry.c): one PIN from a real pinentry over Assuan. */
#ifndef P11S_AGENT_PINENTRY_H
#define P11S_AGENT_PINENTRY_H

#include <stddef.h>

#include <p11smime/secret.h>

/*
 * Start `program` (a path, or a name looked up in PATH), tell it the terminal (`tty`, `term`,
 * may be NULL), show `desc` (and `error` above it when non-NULL: the previous PIN was wrong)
 * and read one PIN into `out`. Returns 0; -1 with a one-line reason in `why` (cancelled, no
 * pinentry, protocol error). The PIN is never logged (assuan_begin_confidential()).
 */
int agent_pinentry_get(const char *program, const char *tty, const char *term, const char *desc,
    const char *error, p11s_secret *out, char *why, size_t whylen);

#endif

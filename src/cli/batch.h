/* `p11smime sign --batch --out-dir DIR FILE...` (CLI.md "More commands"): the batch loop. */
#ifndef P11S_CLI_BATCH_H
#define P11S_CLI_BATCH_H

#include "cli.h"

/*
 * Sign every file of `files` with `key` into DIR/<basename>, each output atomic. The module
 * was loaded and the token logged in once by the caller (one p11s_ctx); what every message
 * shares (the bridge EVP_PKEY, the certificate, the chain with the token's CA certificates)
 * is prepared here once. A failure on one file is reported on one line naming it and the
 * others still complete; a failure that would repeat for every file and could cost PIN
 * tries (wrong or locked PIN, token or module gone) stops the batch. `jobs` threads sign
 * (1 for a CKA_ALWAYS_AUTHENTICATE key or an audit log); results are taken back in input
 * order, so what is reported and published does not depend on it. Returns the worst exit
 * status of all files (CLI.md).
 */
int cli_sign_batch(cli_globals *g, p11s_ctx *ctx, p11s_key *key, const p11s_sign_opts *so,
    const char *out_dir, char *const *files, int nfiles, int jobs);

#endif

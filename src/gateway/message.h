/*
 * The per-message work of the gateway, without libmilter (message.c): spooling a message as
 * the MTA hands it over (envelope, header fields, body), the decision at end of message
 * (decrypt, verify, sign, pass, reject, tempfail) and the modifications it implies, expressed
 * through a table of edit operations. The milter (milter.c) maps the operations onto
 * smfi_chgheader()/smfi_addheader()/smfi_insheader()/smfi_replacebody(); the fuzz target
 * (tests/fuzz/fuzz_gateway.c) onto a model of the message, so both run the same code.
 */
#ifndef P11S_GATEWAY_MESSAGE_H
#define P11S_GATEWAY_MESSAGE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "gateway.h"

#define GW_MARK_HEADER "X-P11smime-Gateway"
#define GW_AR_HEADER "Authentication-Results"

typedef enum gw_outcome {
	GW_OUT_PASS = 0,      /* unchanged (plain, not ours, nothing to do) */
	GW_OUT_DECRYPTED,
	GW_OUT_UNDECRYPTABLE, /* passed with a header */
	GW_OUT_REJECTED,      /* undecryptable and [inbound] undecryptable = reject */
	GW_OUT_SIGNED,
	GW_OUT_SIGNED_ENCRYPTED,
	GW_OUT_VERIFIED,
	GW_OUT_OVERSIZE,
	GW_OUT_TEMPFAIL,
} gw_outcome;

/* "passed", "decrypted", ... for the log line. */
const char *gw_outcome_name(gw_outcome o);

typedef struct gw_hdr {
	char *name;
	char *value;   /* kept only for From, To and Authentication-Results */
} gw_hdr;

/* One message as it arrives. Zero-initialise; gw_msg_reset() between messages. */
typedef struct gw_msg {
	struct sockaddr_storage client;
	int have_client;
	int authenticated;     /* the client authenticated (SMTP AUTH) */
	FILE *spool;           /* "Name: value" CRLF ... CRLF body, unlinked temporary file */
	uint64_t size;
	uint64_t max;          /* [milter] max-message-size when the message began */
	int oversize;
	int io_error;
	int in_body;
	char env_from[320];
	int env_from_ok;
	char **rcpts;          /* lower-cased addr-specs ("" for one that did not parse) */
	size_t nrcpts;
	gw_hdr *hdrs;
	size_t nhdrs;
} gw_msg;

/*
 * Start a message (MAIL FROM): forget the previous one, open a spool file in `spool_dir`.
 * P11S_OK, or P11S_ERR_IO (then the milter answers tempfail).
 */
int gw_msg_begin(gw_msg *m, const char *spool_dir, uint64_t max, const char *env_from,
    int authenticated);
/* RCPT TO. P11S_OK or P11S_ERR_NOMEM. */
int gw_msg_rcpt(gw_msg *m, const char *addr);
/* One header field as the MTA passes it (value without the name, folds as "\n" or "\r\n"). */
int gw_msg_header(gw_msg *m, const char *name, const char *value);
/* End of the header. */
void gw_msg_eoh(gw_msg *m);
/* A piece of the body, in SMTP form (CRLF line ends). */
void gw_msg_body(gw_msg *m, const void *p, size_t n);
/* Forget the message (the client address stays). */
void gw_msg_reset(gw_msg *m);

/* The decision at end of message. gw_result_free() after use. */
typedef struct gw_result {
	gw_outcome outcome;
	int rc;              /* the library error behind a tempfail, or P11S_OK */
	FILE *result;        /* the replacement message (header + body), or NULL: body unchanged */
	char mark[600];      /* value of our X-P11smime-Gateway header, or "" */
	char authres[2048];  /* value of our Authentication-Results header, or "" */
	char detail[600];    /* for the log line */
	int verdict;         /* -1 none, 0 fail, 1 pass */
} gw_result;

/*
 * Decide what happens to the spooled message under `cfg` and the token `pool` (which may be
 * NULL when no token is configured: then nothing is decrypted or signed). Fills `r`; the
 * outcome is also returned. Never touches the MTA.
 */
gw_outcome gw_msg_decide(gw_msg *m, const gw_config *cfg, gw_pool *pool, gw_result *r);

/* Modifications of a message, in the milter's terms (libmilter/mfapi.h). 0 or -1. */
typedef struct gw_edit_ops {
	/* Delete occurrence `idx` (1-based, among fields of that name) of field `name`. */
	int (*delheader)(void *ctx, const char *name, int idx);
	/* Append a field at the end of the header. */
	int (*addheader)(void *ctx, const char *name, const char *value);
	/* Insert a field at the top of the header. */
	int (*insheader)(void *ctx, const char *name, const char *value);
	/* Append to the replacement body (called in pieces; the first call replaces). */
	int (*replacebody)(void *ctx, const unsigned char *p, size_t n);
	/* Give occurrence `idx` (1-based) of field `name` the value `value`. */
	int (*chgheader)(void *ctx, const char *name, int idx, const char *value);
} gw_edit_ops;

/*
 * Apply the decision of a message that is delivered (not rejected, not tempfailed): remove
 * forged headers (RFC 8601 §5), replace Content-* fields and body with r->result, insert our
 * headers. 0, or -1 when the result is inconsistent or an operation failed (then tempfail).
 */
int gw_msg_apply(const gw_msg *m, const gw_config *cfg, gw_result *r, const gw_edit_ops *ops,
    void *ctx);

void gw_result_free(gw_result *r);

#endif

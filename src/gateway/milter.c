/*
 * The milter callbacks: libmilter's view of a message mapped onto message.c, which spools it
 * and decides at end of message (the policy is described there). "Never lose mail"
 * (DESIGN.md decision 9): token unavailable or any internal failure is SMFIS_TEMPFAIL, so the
 * MTA keeps the message and retries; a rejected message gets one uniform reply (STANDARDS.md
 * §12: no oracle).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "gateway.h"
#include "message.h"

static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static gw_state *g_state;
static pthread_mutex_t g_count_lock = PTHREAD_MUTEX_INITIALIZER;
static gw_counters g_count;
static int g_active;
static pthread_mutex_t g_work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_work_cond = PTHREAD_COND_INITIALIZER;
static int g_work_max = 8, g_work_busy;

typedef struct conn {
	gw_msg m;
	struct timespec t0;
} conn;

void gw_milter_set_workers(int n)
{
	pthread_mutex_lock(&g_work_lock);
	g_work_max = n > 0 ? n : 1;
	pthread_cond_broadcast(&g_work_cond);
	pthread_mutex_unlock(&g_work_lock);
}

void gw_milter_set_state(gw_state *st)
{
	g_state = st;
}

void gw_milter_lock_exclusive(void)
{
	pthread_rwlock_wrlock(&g_lock);
}

void gw_milter_unlock_exclusive(void)
{
	pthread_rwlock_unlock(&g_lock);
}

gw_state *gw_milter_state_shared(void)
{
	pthread_rwlock_rdlock(&g_lock);
	return g_state;
}

void gw_milter_unlock_shared(void)
{
	pthread_rwlock_unlock(&g_lock);
}

void gw_milter_counters(gw_counters *out)
{
	pthread_mutex_lock(&g_count_lock);
	*out = g_count;
	pthread_mutex_unlock(&g_count_lock);
}

int gw_milter_active(void)
{
	int n;

	pthread_mutex_lock(&g_count_lock);
	n = g_active;
	pthread_mutex_unlock(&g_count_lock);
	return n;
}

void gw_state_free(gw_state *st)
{
	if (st == NULL) {
		return;
	}
	gw_pool_free(st->pool);
	gw_config_free(&st->cfg);
	free(st);
}

/* ---- callbacks ---------------------------------------------------------------------------- */

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	conn *c = calloc(1, sizeof(*c));

	(void)host;
	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	if (sa != NULL) {
		size_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
		           : sa->sa_family == AF_INET  ? sizeof(struct sockaddr_in) : 0;

		if (len > 0) {
			memcpy(&c->m.client, sa, len);
			c->m.have_client = 1;
		}
	}
	smfi_setpriv(ctx, c);
	pthread_mutex_lock(&g_count_lock);
	g_active++;
	pthread_mutex_unlock(&g_count_lock);
	return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
	conn *c = smfi_getpriv(ctx);
	const char *auth;
	char dir[4096];
	uint64_t max;

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	/* Postfix sends {auth_authen} with MAIL FROM when the client authenticated (SASL). */
	auth = smfi_getsymval(ctx, "{auth_authen}");
	pthread_rwlock_rdlock(&g_lock);
	snprintf(dir, sizeof(dir), "%s", g_state->cfg.spool);
	max = g_state->cfg.max_size;
	pthread_rwlock_unlock(&g_lock);
	if (gw_msg_begin(&c->m, dir, max, argv[0], auth != NULL && *auth != '\0') < 0) {
		return SMFIS_TEMPFAIL;
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL || gw_msg_rcpt(&c->m, argv[0]) < 0) {
		return SMFIS_TEMPFAIL;
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL || gw_msg_header(&c->m, name, value) < 0) {
		return SMFIS_TEMPFAIL;
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	gw_msg_eoh(&c->m);
	return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	conn *c = smfi_getpriv(ctx);

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	/* libmilter hands over the body with CRLF line ends (the SMTP form), as spooled. */
	gw_msg_body(&c->m, chunk, len);
	return SMFIS_CONTINUE;
}

/* ---- end of message ----------------------------------------------------------------------- */

/* message.c's edit operations, on the MTA (libmilter/mfapi.h). */
static int op_delheader(void *ctx, const char *name, int idx)
{
	return smfi_chgheader(ctx, (char *)name, idx, NULL) == MI_SUCCESS ? 0 : -1;
}

static int op_addheader(void *ctx, const char *name, const char *value)
{
	return smfi_addheader(ctx, (char *)name, (char *)value) == MI_SUCCESS ? 0 : -1;
}

static int op_insheader(void *ctx, const char *name, const char *value)
{
	return smfi_insheader(ctx, 0, (char *)name, (char *)value) == MI_SUCCESS ? 0 : -1;
}

static int op_replacebody(void *ctx, const unsigned char *p, size_t n)
{
	return smfi_replacebody(ctx, (unsigned char *)p, (int)n) == MI_SUCCESS ? 0 : -1;
}

static int op_chgheader(void *ctx, const char *name, int idx, const char *value)
{
	return smfi_chgheader(ctx, (char *)name, idx, (char *)value) == MI_SUCCESS ? 0 : -1;
}

static const gw_edit_ops milter_ops = {
	op_delheader, op_addheader, op_insheader, op_replacebody, op_chgheader,
};

static void count(gw_outcome o, uint64_t us, int verdict)
{
	pthread_mutex_lock(&g_count_lock);
	g_count.messages++;
	switch (o) {
	case GW_OUT_DECRYPTED: g_count.decrypted++; break;
	case GW_OUT_UNDECRYPTABLE: g_count.undecryptable++; break;
	case GW_OUT_REJECTED: g_count.undecryptable++; g_count.rejected++; break;
	case GW_OUT_SIGNED: g_count.signed_++; break;
	case GW_OUT_SIGNED_ENCRYPTED: g_count.signed_++; g_count.encrypted++; break;
	case GW_OUT_OVERSIZE: g_count.oversize++; break;
	case GW_OUT_TEMPFAIL: g_count.tempfailed++; break;
	case GW_OUT_PASS: g_count.passed++; break;
	case GW_OUT_VERIFIED: break;
	}
	if (verdict == 1) {
		g_count.verified_pass++;
	} else if (verdict == 0) {
		g_count.verified_fail++;
	}
	g_count.latency_us_total += us;
	if (us > g_count.latency_us_max) {
		g_count.latency_us_max = us;
	}
	pthread_mutex_unlock(&g_count_lock);
}

static sfsistat cb_eom(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);
	gw_result r;
	gw_outcome o;
	struct timespec t1;
	uint64_t us;
	const char *qid;
	sfsistat ret;

	if (c == NULL) {
		return SMFIS_TEMPFAIL;
	}
	/* At most `workers` messages are processed at once; the others wait their turn. */
	pthread_mutex_lock(&g_work_lock);
	while (g_work_busy >= g_work_max) {
		pthread_cond_wait(&g_work_cond, &g_work_lock);
	}
	g_work_busy++;
	pthread_mutex_unlock(&g_work_lock);

	pthread_rwlock_rdlock(&g_lock);
	o = gw_msg_decide(&c->m, &g_state->cfg, g_state->pool, &r);
	ret = SMFIS_CONTINUE;
	if (o == GW_OUT_TEMPFAIL) {
		ret = SMFIS_TEMPFAIL;
	} else if (o == GW_OUT_REJECTED) {
		/* The same reply for every reason (STANDARDS.md §12: no distinguishing bounces). */
		(void)smfi_setreply(ctx, "554", "5.7.1", "message cannot be processed");
		ret = SMFIS_REJECT;
	} else if (gw_msg_apply(&c->m, &g_state->cfg, &r, &milter_ops, ctx) < 0) {
		snprintf(r.detail, sizeof(r.detail), "the MTA refused a modification");
		o = GW_OUT_TEMPFAIL;
		ret = SMFIS_TEMPFAIL;
	}
	if (ret == SMFIS_TEMPFAIL) {
		(void)smfi_setreply(ctx, "451", "4.7.1", "temporary failure, try again later");
	}
	pthread_rwlock_unlock(&g_lock);

	pthread_mutex_lock(&g_work_lock);
	g_work_busy--;
	pthread_cond_signal(&g_work_cond);
	pthread_mutex_unlock(&g_work_lock);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	us = (uint64_t)((t1.tv_sec - c->t0.tv_sec) * 1000000 + (t1.tv_nsec - c->t0.tv_nsec) / 1000);
	count(o, us, r.verdict);
	qid = smfi_getsymval(ctx, "i");
	p11s_log(o == GW_OUT_TEMPFAIL ? P11S_LOG_WARN : P11S_LOG_INFO,
	    "%s: from=<%s> size=%llu outcome=%s%s%s time=%.1fms", qid != NULL ? qid : "NOQUEUE",
	    c->m.env_from, (unsigned long long)c->m.size, gw_outcome_name(o),
	    r.detail[0] ? " " : "", r.detail, (double)us / 1000.0);
	gw_result_free(&r);
	gw_msg_reset(&c->m);
	return ret;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		gw_msg_reset(&c->m);
	}
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
	conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		gw_msg_reset(&c->m);
		free(c);
		smfi_setpriv(ctx, NULL);
		pthread_mutex_lock(&g_count_lock);
		g_active--;
		pthread_mutex_unlock(&g_count_lock);
	}
	return SMFIS_CONTINUE;
}

struct smfiDesc gw_milter_desc = {
	.xxfi_name = "p11smime-gateway",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY,
	.xxfi_connect = cb_connect,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
};

/*
 * Smartcard readers and card events through pcsc-lite (PC/SC Workgroup, Interoperability
 * Specification for ICCs and Personal Computer Systems, Part 5: SCardListReaders,
 * SCardGetStatusChange). A card is reported even when no PKCS#11 module recognises it; the
 * token layer stays PKCS#11's business. The special reader name "\\?PnP?\Notification" makes
 * SCardGetStatusChange also return when a reader is plugged in or removed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11smime/reader.h>

#include "core/error_int.h"
#include "core/lazy.h"

#ifdef P11S_HAVE_PCSC

#include <pthread.h>

#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>

#include <p11smime/log.h>

/*
 * pcsc-lite is loaded on first use, not linked (core/lazy.h, docs/performance.md "Cold start"):
 * the functions below are called through pointers that pcsc_lazy_ready() fills.
 */
#define PCSC_LAZY_SYMS(X) \
	X(SCardCancel) \
	X(SCardEstablishContext) \
	X(SCardGetStatusChange) \
	X(SCardListReaders) \
	X(SCardReleaseContext) \
	X(pcsc_stringify_error)
PCSC_LAZY_SYMS(P11S_LAZY_PTR)
static const p11s_lazy_sym pcsc_lazy_syms[] = { PCSC_LAZY_SYMS(P11S_LAZY_SYM) };
static const char *const pcsc_lazy_sonames[] = { "libpcsclite.so.1", NULL };
static p11s_lazy_lib pcsc_lazy_lib = P11S_LAZY_LIB("pcsc-lite", pcsc_lazy_sonames, pcsc_lazy_syms);

#define SCardCancel (*lz_SCardCancel)
#define SCardEstablishContext (*lz_SCardEstablishContext)
#define SCardGetStatusChange (*lz_SCardGetStatusChange)
#define SCardListReaders (*lz_SCardListReaders)
#define SCardReleaseContext (*lz_SCardReleaseContext)
#define pcsc_stringify_error (*lz_pcsc_stringify_error)

/* Load pcsc-lite once. @return P11S_OK, or `code` with the reason. */
static int pcsc_lazy_ready(int code)
{
	return p11s_core__lazy(&pcsc_lazy_lib, code);
}

#define PNP_READER "\\\\?PnP?\\Notification"
#define MAX_READERS 16

static int pcsc_err(LONG rv, const char *what)
{
	return p11s_error__set(P11S_ERR_TOKEN, "%s: %s%s", what, pcsc_stringify_error(rv),
	    rv == (LONG)SCARD_E_NO_SERVICE ? " (is pcscd running?)" : "");
}

/* The reader names, as one multi-string; NULL (and P11S_OK) when there are none. */
static int names(SCARDCONTEXT ctx, char **out)
{
	DWORD len = 0;
	LONG rv;

	*out = NULL;
	rv = SCardListReaders(ctx, NULL, NULL, &len);
	if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE) {
		return P11S_OK;
	}
	if (rv != SCARD_S_SUCCESS) {
		return pcsc_err(rv, "SCardListReaders");
	}
	if ((*out = calloc(1, len + 1)) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	rv = SCardListReaders(ctx, NULL, *out, &len);
	if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE) {
		free(*out);
		*out = NULL;
		return P11S_OK;
	}
	if (rv != SCARD_S_SUCCESS) {
		free(*out);
		*out = NULL;
		return pcsc_err(rv, "SCardListReaders");
	}
	return P11S_OK;
}

/* The states of every reader plus the PnP pseudo-reader; `n` counts them all. */
static int states(SCARDCONTEXT ctx, char **buf, SCARD_READERSTATE *st, size_t *n)
{
	size_t k = 0;
	int rc;

	if ((rc = names(ctx, buf)) < 0) {
		return rc;
	}
	for (char *p = *buf; p != NULL && *p != '\0' && k < MAX_READERS; p += strlen(p) + 1) {
		memset(&st[k], 0, sizeof(st[k]));
		st[k].szReader = p;
		st[k].dwCurrentState = SCARD_STATE_UNAWARE;
		k++;
	}
	memset(&st[k], 0, sizeof(st[k]));
	st[k].szReader = PNP_READER;
	st[k].dwCurrentState = SCARD_STATE_UNAWARE;
	*n = k + 1;
	return P11S_OK;
}

int p11s_reader_list(p11s_reader_info **out, size_t *count)
{
	SCARD_READERSTATE st[MAX_READERS + 1];
	SCARDCONTEXT ctx;
	p11s_reader_info *v = NULL;
	char *buf = NULL;
	size_t n = 0;
	LONG rv;
	int rc;

	*out = NULL;
	*count = 0;
	if ((rc = pcsc_lazy_ready(P11S_ERR_TOKEN)) < 0) {
		return rc;
	}
	if ((rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx)) != SCARD_S_SUCCESS) {
		return pcsc_err(rv, "SCardEstablishContext");
	}
	if ((rc = states(ctx, &buf, st, &n)) < 0) {
		goto out;
	}
	n--; /* the PnP pseudo-reader is not listed */
	if ((v = calloc(n ? n : 1, sizeof(*v))) == NULL) {
		rc = p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (n > 0) {
		/* Timeout 0: the current state of each reader, no waiting. */
		rv = SCardGetStatusChange(ctx, 0, st, (DWORD)n);
		if (rv != SCARD_S_SUCCESS && rv != (LONG)SCARD_E_TIMEOUT) {
			rc = pcsc_err(rv, "SCardGetStatusChange");
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(v[i].name, sizeof(v[i].name), "%s", st[i].szReader);
		v[i].card_present = (st[i].dwEventState & SCARD_STATE_PRESENT) != 0;
		v[i].card_in_use = (st[i].dwEventState & SCARD_STATE_EXCLUSIVE) != 0;
		if (v[i].card_present && st[i].cbAtr <= sizeof(v[i].atr)) {
			memcpy(v[i].atr, st[i].rgbAtr, st[i].cbAtr);
			v[i].atr_len = st[i].cbAtr;
		}
	}
	*out = v;
	*count = n;
	v = NULL;
	rc = P11S_OK;
out:
	free(v);
	free(buf);
	SCardReleaseContext(ctx);
	return rc;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Follow events until `done` says so or the deadline passes. `want_card`: return as soon as a
 * card is present (also at the start); otherwise return on the first change after the start.
 */
static int wait_events(long timeout_ms, int want_card, char *reader, size_t reader_len)
{
	SCARD_READERSTATE st[MAX_READERS + 1];
	SCARDCONTEXT ctx;
	char *buf = NULL;
	size_t n = 0;
	long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int first = 1, rc;
	LONG rv;

	if ((rc = pcsc_lazy_ready(P11S_ERR_TOKEN)) < 0) {
		return rc;
	}
	if ((rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx)) != SCARD_S_SUCCESS) {
		return pcsc_err(rv, "SCardEstablishContext");
	}
	for (;;) {
		long left;
		DWORD wait;

		if (first || buf == NULL) {
			free(buf);
			buf = NULL;
			if ((rc = states(ctx, &buf, st, &n)) < 0) {
				goto out;
			}
			/* The current state of each, without waiting. */
			rv = SCardGetStatusChange(ctx, 0, st, (DWORD)n);
			if (rv != SCARD_S_SUCCESS && rv != (LONG)SCARD_E_TIMEOUT) {
				rc = pcsc_err(rv, "SCardGetStatusChange");
				goto out;
			}
			for (size_t i = 0; i < n; i++) {
				st[i].dwCurrentState = st[i].dwEventState & ~SCARD_STATE_CHANGED;
			}
		}
		for (size_t i = 0; want_card && i + 1 < n; i++) {
			if (st[i].dwCurrentState & SCARD_STATE_PRESENT) {
				if (reader != NULL && reader_len > 0) {
					snprintf(reader, reader_len, "%s", st[i].szReader);
				}
				rc = P11S_OK;
				goto out;
			}
		}
		if (!want_card && !first) {
			rc = P11S_OK;
			goto out;
		}
		first = 0;
		left = deadline < 0 ? -1 : deadline - now_ms();
		if (deadline >= 0 && left <= 0) {
			rc = p11s_error__set(P11S_ERR_TOKEN_ABSENT, "no %s within %ld s",
			    want_card ? "card in any reader" : "reader or card event",
			    (timeout_ms + 999) / 1000);
			goto out;
		}
		wait = left < 0 ? INFINITE : (DWORD)left;
		rv = SCardGetStatusChange(ctx, wait, st, (DWORD)n);
		if (rv == (LONG)SCARD_E_TIMEOUT) {
			continue; /* the deadline check above reports it */
		}
		if (rv != SCARD_S_SUCCESS) {
			rc = pcsc_err(rv, "SCardGetStatusChange");
			goto out;
		}
		/* A reader came or went: the list is read again; otherwise take the new states. */
		if (st[n - 1].dwEventState & SCARD_STATE_CHANGED) {
			free(buf);
			buf = NULL;
			if (!want_card) {
				rc = P11S_OK;
				goto out;
			}
			first = 1;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			st[i].dwCurrentState = st[i].dwEventState & ~SCARD_STATE_CHANGED;
		}
	}
out:
	free(buf);
	SCardReleaseContext(ctx);
	return rc;
}

int p11s_reader_wait_card(long timeout_ms, char *reader, size_t reader_len)
{
	if (reader != NULL && reader_len > 0) {
		reader[0] = '\0';
	}
	return wait_events(timeout_ms, 1, reader, reader_len);
}

int p11s_reader_wait_change(long timeout_ms)
{
	return wait_events(timeout_ms, 0, NULL, 0);
}

/*
 * The reader monitor of long-running processes (batch, gateway). Its thread keeps one PC/SC
 * context and waits in SCardGetStatusChange with a bounded timeout, so that a stop request is
 * seen within MONITOR_POLL_MS even when the SCardCancel() that interrupts the wait comes
 * before the wait starts. Without pcscd it retries every MONITOR_RETRY_MS and reports nothing.
 */
#define MONITOR_POLL_MS 1000
#define MONITOR_RETRY_MS 2000

struct p11s_reader_monitor {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	int have_ctx;           /* `ctx` is established (SCardCancel() may be used on it) */
	SCARDCONTEXT ctx;
	p11s_reader_event_fn fn;
	void *payload;
};

typedef struct seen_reader {
	char name[128];
	int present;
} seen_reader;

static int monitor_stopping(p11s_reader_monitor *m)
{
	int stop;

	pthread_mutex_lock(&m->lock);
	stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/* Sleep `ms`, or less when asked to stop. */
static void monitor_pause(p11s_reader_monitor *m, long ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&m->lock);
	while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &until) == 0) {
	}
	pthread_mutex_unlock(&m->lock);
}

/*
 * Compare the readers' card states now (`st`, `n` real readers) with what was seen before and
 * report each difference; `report` is 0 for the first look, which sets the baseline.
 */
static void monitor_diff(p11s_reader_monitor *m, seen_reader *known, size_t *nknown,
    const SCARD_READERSTATE *st, size_t n, int report)
{
	seen_reader now[MAX_READERS];
	size_t k = 0;

	for (size_t i = 0; i < n && k < MAX_READERS; i++, k++) {
		snprintf(now[k].name, sizeof(now[k].name), "%s", st[i].szReader);
		now[k].present = (st[i].dwEventState & SCARD_STATE_PRESENT) != 0;
	}
	for (size_t i = 0; report && i < *nknown; i++) {
		size_t j;

		for (j = 0; j < k && strcmp(now[j].name, known[i].name) != 0; j++) {
		}
		if (j == k) {
			/* The reader went away: a card in it went with it. */
			if (known[i].present) {
				m->fn(known[i].name, 0, m->payload);
			}
		} else if (now[j].present != known[i].present) {
			m->fn(now[j].name, now[j].present, m->payload);
		}
	}
	for (size_t j = 0; report && j < k; j++) {
		size_t i;

		for (i = 0; i < *nknown && strcmp(now[j].name, known[i].name) != 0; i++) {
		}
		if (i == *nknown && now[j].present) {
			m->fn(now[j].name, 1, m->payload);
		}
	}
	memcpy(known, now, k * sizeof(*now));
	*nknown = k;
}

static void *monitor_main(void *arg)
{
	p11s_reader_monitor *m = arg;
	SCARD_READERSTATE st[MAX_READERS + 1];
	seen_reader known[MAX_READERS];
	size_t nknown = 0, n = 0;
	char *buf = NULL;
	int have_known = 0, reread = 1, said = 0;
	SCARDCONTEXT ctx = 0;
	LONG rv;

	while (!monitor_stopping(m)) {
		if (!m->have_ctx) {
			rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
			if (rv != SCARD_S_SUCCESS) {
				if (!said) {
					p11s_log(P11S_LOG_DEBUG, "reader monitor: %s; no card events until "
					    "pcscd is reachable", pcsc_stringify_error(rv));
					said = 1;
				}
				monitor_pause(m, MONITOR_RETRY_MS);
				continue;
			}
			pthread_mutex_lock(&m->lock);
			m->ctx = ctx;
			m->have_ctx = 1;
			pthread_mutex_unlock(&m->lock);
			said = 0;
			reread = 1;
		}
		if (reread) {
			free(buf);
			buf = NULL;
			if (states(ctx, &buf, st, &n) < 0) {
				goto lost;
			}
			rv = SCardGetStatusChange(ctx, 0, st, (DWORD)n);
			if (rv != SCARD_S_SUCCESS && rv != (LONG)SCARD_E_TIMEOUT) {
				goto lost;
			}
			monitor_diff(m, known, &nknown, st, n - 1, have_known);
			have_known = 1;
			for (size_t i = 0; i < n; i++) {
				st[i].dwCurrentState = st[i].dwEventState & ~SCARD_STATE_CHANGED;
			}
			reread = 0;
		}
		rv = SCardGetStatusChange(ctx, MONITOR_POLL_MS, st, (DWORD)n);
		if (rv == (LONG)SCARD_E_TIMEOUT || rv == (LONG)SCARD_E_CANCELLED) {
			continue;
		}
		if (rv != SCARD_S_SUCCESS) {
			goto lost;
		}
		if (st[n - 1].dwEventState & SCARD_STATE_CHANGED) {
			/* A reader came or went: read the list again and compare. */
			reread = 1;
			continue;
		}
		monitor_diff(m, known, &nknown, st, n - 1, 1);
		for (size_t i = 0; i < n; i++) {
			st[i].dwCurrentState = st[i].dwEventState & ~SCARD_STATE_CHANGED;
		}
		continue;
	lost:
		/* pcscd stopped or restarted: start over; the states seen so far stay the baseline. */
		p11s_log(P11S_LOG_DEBUG, "reader monitor: lost pcscd (%s); retrying",
		    p11s_error_last()->message);
		p11s_error_clear();
		pthread_mutex_lock(&m->lock);
		m->have_ctx = 0;
		pthread_mutex_unlock(&m->lock);
		SCardReleaseContext(ctx);
		monitor_pause(m, MONITOR_RETRY_MS);
	}
	free(buf);
	if (m->have_ctx) {
		pthread_mutex_lock(&m->lock);
		m->have_ctx = 0;
		pthread_mutex_unlock(&m->lock);
		SCardReleaseContext(ctx);
	}
	return NULL;
}

int p11s_reader_monitor_start(p11s_reader_monitor **out, p11s_reader_event_fn fn,
    void *payload)
{
	p11s_reader_monitor *m;
	int err;

	*out = NULL;
	if (fn == NULL) {
		return p11s_error__set(P11S_ERR_INVALID_ARG, "p11s_reader_monitor_start: no callback");
	}
	if ((err = pcsc_lazy_ready(P11S_ERR_TOKEN)) < 0) {
		return err;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		return p11s_error__set(P11S_ERR_NOMEM, "out of memory");
	}
	m->fn = fn;
	m->payload = payload;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	if ((err = pthread_create(&m->thread, NULL, monitor_main, m)) != 0) {
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return p11s_error__set(P11S_ERR_GENERIC, "cannot start the reader monitor: %s",
		    strerror(err));
	}
	*out = m;
	return P11S_OK;
}

void p11s_reader_monitor_stop(p11s_reader_monitor *m)
{
	if (m == NULL) {
		return;
	}
	pthread_mutex_lock(&m->lock);
	m->stop = 1;
	if (m->have_ctx) {
		/* Ends a SCardGetStatusChange() in progress at once (SCARD_E_CANCELLED). */
		SCardCancel(m->ctx);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

#else /* !P11S_HAVE_PCSC */

int p11s_reader_list(p11s_reader_info **out, size_t *count)
{
	*out = NULL;
	*count = 0;
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "built without pcsc-lite: no reader support");
}

int p11s_reader_wait_card(long timeout_ms, char *reader, size_t reader_len)
{
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "built without pcsc-lite: cannot wait for a card");
}

int p11s_reader_wait_change(long timeout_ms)
{
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "built without pcsc-lite: no card events");
}

int p11s_reader_monitor_start(p11s_reader_monitor **out, p11s_reader_event_fn fn,
    void *payload)
{
	(void)fn;
	(void)payload;
	*out = NULL;
	return p11s_error__set(P11S_ERR_UNSUPPORTED, "built without pcsc-lite: no card events");
}

void p11s_reader_monitor_stop(p11s_reader_monitor *mon)
{
	(void)mon;
}

#endif

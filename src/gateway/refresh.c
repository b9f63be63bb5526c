/*
 * Background CRL refresh (issue 19 item 5, docs/gateway.md "Revocation"). With [inbound]
 * revocation asking CRLs and fetch = yes, the CRLs verification fetched from
 * crlDistributionPoints stay in the library's per-process cache until their nextUpdate. This
 * thread fetches each again once its nextUpdate is within crl-refresh-before seconds, every
 * crl-refresh-interval seconds, so that no message waits for a download and a CRL the CA
 * reissued early is picked up before the old one expires. It reads the configuration as a
 * message does (the milter's read lock), so a reload (SIGHUP) changes the next round.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "gateway.h"

static pthread_t g_thread;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_stop, g_running;

/* One round: the number of CRLs replaced, or -1 when nothing is configured. */
static int refresh_round(int *interval)
{
	gw_state *st = gw_milter_state_shared();
	const gw_config *cfg = st != NULL ? &st->cfg : NULL;
	int n = -1;

	*interval = 60; /* without a configuration: look again in a minute (a reload may add it) */
	if (cfg != NULL && cfg->crl_refresh_interval > 0) {
		*interval = cfg->crl_refresh_interval;
		if (cfg->rev_given && (cfg->rev.methods & P11S_REV_CRL) != 0 && cfg->rev.fetch) {
			n = p11s_revocation_refresh_crls(&cfg->rev, cfg->crl_refresh_before);
		}
	}
	gw_milter_unlock_shared();
	return n;
}

static void *refresh_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_lock);
	while (!g_stop) {
		struct timespec until;
		int interval, n;

		pthread_mutex_unlock(&g_lock);
		n = refresh_round(&interval);
		if (n > 0) {
			p11s_log(P11S_LOG_INFO, "revocation: %d CRL%s refreshed before expiry", n,
			    n == 1 ? "" : "s");
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += interval;
		pthread_mutex_lock(&g_lock);
		while (!g_stop && pthread_cond_timedwait(&g_cond, &g_lock, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&g_lock);
	return NULL;
}

int gw_refresh_start(void)
{
	g_stop = 0;
	if (pthread_create(&g_thread, NULL, refresh_thread, NULL) != 0) {
		return -1;
	}
	g_running = 1;
	return 0;
}

void gw_refresh_stop(void)
{
	if (!g_running) {
		return;
	}
	pthread_mutex_lock(&g_lock);
	g_stop = 1;
	pthread_cond_broadcast(&g_cond);
	pthread_mutex_unlock(&g_lock);
	pthread_join(g_thread, NULL);
	g_running = 0;
}

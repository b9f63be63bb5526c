/*
 * p11smime-gateway --config FILE: the milter daemon (p11smime-gateway(8)).
 *
 * Threads: libmilter runs in its own thread (smfi_main) with one thread per MTA connection;
 * the main thread only handles signals. libmilter's own signal thread sigwait()s SIGHUP,
 * SIGTERM and SIGINT and would stop the milter on SIGHUP; the main thread keeps those signals
 * (and SIGUSR1) unblocked with handlers, and Linux delivers a process-directed signal to the
 * thread group leader when it accepts it, so they arrive here: SIGHUP reloads, SIGUSR1 logs
 * the counters, SIGTERM/SIGINT stop accepting and drain the messages in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "gateway.h"

static int g_pipe[2] = { -1, -1 };
static int g_stderr = 1;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int sig)
{
	unsigned char b = (unsigned char)sig;
	int saved = errno;

	if (write(g_pipe[1], &b, 1) < 0) {
		(void)0; /* a full pipe already holds a pending signal */
	}
	errno = saved;
}

static void log_line(p11s_log_level level, const char *line, void *payload)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

	(void)payload;
	if (!g_stderr) {
		syslog(prio[level], "%s", line);
		return;
	}
	pthread_mutex_lock(&g_log_lock);
	fprintf(stderr, "p11smime-gateway[%ld]: %s%s\n", (long)getpid(),
	    level == P11S_LOG_ERROR ? "error: " : level == P11S_LOG_WARN ? "warning: " : "", line);
	fflush(stderr);
	pthread_mutex_unlock(&g_log_lock);
}

static gw_state *state_load(const char *path, char *err, size_t errlen)
{
	gw_state *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (gw_config_load(&st->cfg, path, err, errlen) < 0) {
		free(st);
		return NULL;
	}
	g_stderr = st->cfg.log_stderr;
	if (gw_pool_new(&st->pool, &st->cfg) < 0) {
		snprintf(err, errlen, "out of memory");
		gw_config_free(&st->cfg);
		free(st);
		return NULL;
	}
	return st;
}

static void log_counters(void)
{
	gw_counters k;

	gw_milter_counters(&k);
	p11s_log(P11S_LOG_WARN, "counters: messages=%llu decrypted=%llu undecryptable=%llu "
	    "rejected=%llu signed=%llu encrypted=%llu verified-pass=%llu verified-fail=%llu "
	    "tempfailed=%llu oversize=%llu passed=%llu latency-avg=%.1fms latency-max=%.1fms "
	    "connections=%d",
	    (unsigned long long)k.messages, (unsigned long long)k.decrypted,
	    (unsigned long long)k.undecryptable, (unsigned long long)k.rejected,
	    (unsigned long long)k.signed_, (unsigned long long)k.encrypted,
	    (unsigned long long)k.verified_pass, (unsigned long long)k.verified_fail,
	    (unsigned long long)k.tempfailed, (unsigned long long)k.oversize,
	    (unsigned long long)k.passed,
	    k.messages ? (double)k.latency_us_total / (double)k.messages / 1000.0 : 0.0,
	    (double)k.latency_us_max / 1000.0, gw_milter_active());
}

static void *milter_thread(void *arg)
{
	sigset_t set;
	int *rc = arg;

	/* Everything libmilter starts inherits this mask: signals are the main thread's. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	*rc = smfi_main();
	on_signal(0); /* wake the main thread: smfi_main returned */
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: p11smime-gateway --config FILE [--check]\n"
	           "  --config FILE  the configuration (p11smime-gateway.conf(5))\n"
	           "  --check        load the configuration and the token, report, exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	struct rlimit nocore = { 0, 0 };
	struct sigaction sa;
	pthread_t tid;
	gw_state *st, *old;
	char err[1024];
	int opt, check = 0, milter_rc = 0, stopping = 0;
	time_t stop_at = 0;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'C': check = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("p11smime-gateway %s\n", p11s_version()); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (config == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* No core dump can carry a PIN or plaintext (STYLE.md "Secrets"). */
	(void)setrlimit(RLIMIT_CORE, &nocore);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	openlog("p11smime-gateway", LOG_PID, LOG_MAIL);
	p11s_log_set_handler(log_line, NULL);
	p11s_log_set_level(P11S_LOG_INFO);

	if ((st = state_load(config, err, sizeof(err))) == NULL) {
		fprintf(stderr, "p11smime-gateway: %s\n", err);
		return 2;
	}
	p11s_log(P11S_LOG_INFO, "configuration %s: socket %s, %d workers, %d token contexts, "
	    "%d keys indexed, %zu signers", config, st->cfg.socket, st->cfg.workers,
	    st->cfg.sessions, gw_pool_nkeys(st->pool), st->cfg.nsigners);
	if (check) {
		int ok = st->cfg.module == NULL || gw_pool_nkeys(st->pool) >= 0;

		gw_state_free(st);
		return ok ? 0 : 3;
	}
	gw_milter_set_state(st);
	gw_milter_set_workers(st->cfg.workers);

	if (pipe(g_pipe) != 0 || fcntl(g_pipe[1], F_SETFL, O_NONBLOCK) != 0) {
		fprintf(stderr, "p11smime-gateway: pipe: %s\n", strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (smfi_setconn(st->cfg.socket) != MI_SUCCESS || smfi_register(gw_milter_desc) !=
	        MI_SUCCESS || smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, "p11smime-gateway: cannot listen on %s\n", st->cfg.socket);
		gw_state_free(st);
		return 1;
	}
	if (pthread_create(&tid, NULL, milter_thread, &milter_rc) != 0) {
		fprintf(stderr, "p11smime-gateway: cannot start the milter thread\n");
		return 1;
	}
	p11s_log(P11S_LOG_WARN, "listening on %s", st->cfg.socket);
	if (gw_refresh_start() != 0) {
		p11s_log(P11S_LOG_ERROR, "cannot start the CRL refresh thread: fetched CRLs are "
		    "fetched again when they expire");
	}

	for (;;) {
		struct pollfd pfd = { g_pipe[0], POLLIN, 0 };
		unsigned char sig;

		if (stopping) {
			/* Drain: wait for the connections in flight, up to drain-timeout. */
			if (gw_milter_active() == 0 || time(NULL) >= stop_at) {
				break;
			}
		}
		if (poll(&pfd, 1, stopping ? 100 : -1) <= 0) {
			continue;
		}
		if (read(g_pipe[0], &sig, 1) != 1) {
			continue;
		}
		if (sig == SIGUSR1) {
			log_counters();
		} else if (sig == SIGHUP) {
			gw_state *nst = state_load(config, err, sizeof(err));

			if (nst == NULL) {
				p11s_log(P11S_LOG_ERROR, "reload failed, keeping the running configuration: "
				    "%s", err);
				continue;
			}
			/* Messages in flight keep the old state until they finish (write lock). */
			gw_milter_lock_exclusive();
			old = st;
			st = nst;
			gw_milter_set_state(st);
			gw_milter_unlock_exclusive();
			gw_milter_set_workers(st->cfg.workers);
			gw_state_free(old);
			p11s_log(P11S_LOG_WARN, "reloaded %s: %d keys indexed, %zu signers", config,
			    gw_pool_nkeys(st->pool), st->cfg.nsigners);
		} else if ((sig == SIGTERM || sig == SIGINT || sig == 0) && !stopping) {
			p11s_log(P11S_LOG_WARN, "stopping: draining %d connections", gw_milter_active());
			(void)smfi_stop();
			stopping = 1;
			stop_at = time(NULL) + st->cfg.drain_timeout;
		}
	}
	gw_refresh_stop();
	if (gw_milter_active() > 0) {
		p11s_log(P11S_LOG_ERROR, "drain timeout: %d connections still open (their messages "
		    "were not accepted and the MTA retries them)", gw_milter_active());
	}
	log_counters();
	/* libmilter's threads may still hold connections after a timeout: do not free under them. */
	if (gw_milter_active() == 0) {
		pthread_join(tid, NULL);
		gw_milter_lock_exclusive();
		gw_milter_set_state(NULL);
		gw_milter_unlock_exclusive();
		gw_state_free(st);
	}
	closelog();
	return milter_rc == MI_SUCCESS ? 0 : 1;
}

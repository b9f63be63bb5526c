/*
 * A ring of blocks between one producer and one consumer thread (spool.h). The producer fills
 * the block at `tail` without the lock (the worker only touches blocks marked ready), then
 * hands it over; the worker consumes blocks in order outside the lock. Four blocks of 256 KiB
 * keep both CPUs busy while memory stays at 1 MiB whatever the stream's size.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error_int.h"
#include "core/spool.h"

#define NBLOCK 4
#define BLOCK (256 * 1024)

struct p11s_spool {
	p11s_spool_fn fn;
	void *arg;
	int threaded;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned char *buf[NBLOCK];
	size_t len[NBLOCK];
	int ready[NBLOCK];
	int head, tail; /* next block the worker takes; block the producer fills */
	int done;       /* no more blocks will come */
	int rc;         /* the consumer's first error */
	p11s_error err; /* ... and its record, from the worker's thread */
};

static void *worker(void *arg)
{
	p11s_spool *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->ready[s->head] && !s->done) {
			pthread_cond_wait(&s->cv, &s->mu);
		}
		if (!s->ready[s->head]) {
			break;
		}
		int h = s->head, failed = s->rc < 0;

		pthread_mutex_unlock(&s->mu);
		int rc = failed ? P11S_OK : s->fn(s->buf[h], s->len[h], s->arg);
		pthread_mutex_lock(&s->mu);
		if (rc < 0 && s->rc == 0) {
			s->rc = rc;
			s->err = *p11s_error_last();
		}
		s->ready[h] = 0;
		s->head = (h + 1) % NBLOCK;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

p11s_spool *p11s_core__spool_new(p11s_spool_fn fn, void *arg, int threaded)
{
	p11s_spool *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		p11s_error__set(P11S_ERR_NOMEM, "out of memory");
		return NULL;
	}
	s->fn = fn;
	s->arg = arg;
	if (!threaded) {
		return s;
	}
	for (int i = 0; i < NBLOCK; i++) {
		if ((s->buf[i] = malloc(BLOCK)) == NULL) {
			goto sync;
		}
	}
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		goto sync;
	}
	if (pthread_cond_init(&s->cv, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		goto sync;
	}
	if (pthread_create(&s->thread, NULL, worker, s) != 0) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		goto sync;
	}
	s->threaded = 1;
	return s;
sync:
	/* No thread: the same result, one CPU. */
	for (int i = 0; i < NBLOCK; i++) {
		free(s->buf[i]);
		s->buf[i] = NULL;
	}
	return s;
}

/* Hand the block at `tail` to the worker and wait until the next one is free. */
static int hand_over(p11s_spool *s)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	s->ready[s->tail] = 1;
	s->tail = (s->tail + 1) % NBLOCK;
	pthread_cond_broadcast(&s->cv);
	while (s->ready[s->tail]) {
		pthread_cond_wait(&s->cv, &s->mu);
	}
	s->len[s->tail] = 0;
	rc = s->rc;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int p11s_core__spool_put(const unsigned char *p, size_t n, void *spool)
{
	p11s_spool *s = spool;

	if (!s->threaded) {
		if (s->rc < 0 || n == 0) {
			return s->rc;
		}
		if ((s->rc = s->fn(p, n, s->arg)) < 0) {
			s->err = *p11s_error_last();
		}
		return s->rc;
	}
	while (n > 0) {
		size_t *len = &s->len[s->tail], take = BLOCK - *len < n ? BLOCK - *len : n;
		int rc;

		memcpy(s->buf[s->tail] + *len, p, take);
		*len += take;
		p += take;
		n -= take;
		if (*len == BLOCK && (rc = hand_over(s)) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}

int p11s_core__spool_end(p11s_spool *s)
{
	int rc;

	if (s->threaded) {
		pthread_mutex_lock(&s->mu);
		if (s->len[s->tail] > 0) {
			s->ready[s->tail] = 1;
		}
		s->done = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
	}
	rc = s->rc;
	if (rc < 0) {
		p11s_error__restore(&s->err);
	}
	for (int i = 0; i < NBLOCK; i++) {
		free(s->buf[i]);
	}
	free(s);
	return rc;
}

/*-------------------------------------------------------------------------
 *
 * fetch_waker.c
 *		Waking librdkafka's parked fetchers from a thread of the scan, so
 *		that the scan goes on converting records meanwhile.
 *
 * librdkafka < 2.3 parks a partition's fetcher while the scan's queue is at
 * its limits and looks again only when its broker thread wakes up, up to a
 * second later (see wake_fetchers() in scan.c).  Any request to a broker
 * wakes its thread; the cheapest one the public API offers is a ListOffsets
 * (rd_kafka_offsets_for_times), which however waits for the answer.  A
 * round trip to a real Kafka busy serving the same fetches took 1-25 ms, and
 * a refresh of 1M records woke the fetchers ~45 times: a third of its time
 * was spent waiting for answers it does not use.
 *
 * So the request is sent from this thread: the scan hands it the partition
 * list (kafka_waker_wake, which never blocks on the broker) and returns to
 * its records, which is when the queue, half drained, still holds work; the
 * fetch that the wake-up triggers arrives while the scan is busy.
 *
 * The thread runs only librdkafka calls: no PostgreSQL function, no palloc,
 * no elog.  It blocks all signals (the backend's handlers run in the main
 * thread).  A request asked for while one is in flight replaces any other
 * still waiting: one pending list at most.  kafka_waker_stop() joins the
 * thread, which finishes the request in flight first (at most timeout_ms);
 * it must run before the librdkafka handle is released, and never throws.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "fetch_waker.h"

struct KafkaFetchWaker
{
	pthread_t	thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	rd_kafka_t *rk;
	int			timeout_ms;
	rd_kafka_topic_partition_list_t *pending;	/* the next request, or NULL */
	bool		stop;
};

static void *
waker_main(void *arg)
{
	KafkaFetchWaker *w = (KafkaFetchWaker *) arg;

	pthread_mutex_lock(&w->lock);
	for (;;)
	{
		rd_kafka_topic_partition_list_t *list;

		while (w->pending == NULL && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		list = w->pending;
		w->pending = NULL;
		pthread_mutex_unlock(&w->lock);
		/* the answer is not used: the request is the wake-up */
		(void) rd_kafka_offsets_for_times(w->rk, list, w->timeout_ms);
		rd_kafka_topic_partition_list_destroy(list);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/*
 * Start a waker for the handle rk, whose requests wait at most timeout_ms
 * for their answer.  NULL if no thread could be started (the caller then
 * wakes the fetchers itself).
 */
KafkaFetchWaker *
kafka_waker_start(rd_kafka_t *rk, int timeout_ms)
{
	KafkaFetchWaker *w = malloc(sizeof(KafkaFetchWaker));
	sigset_t	all,
				old;
	int			rc;

	if (w == NULL)
		return NULL;
	w->rk = rk;
	w->timeout_ms = timeout_ms;
	w->pending = NULL;
	w->stop = false;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);

	/* the thread inherits the mask: signals stay with the backend's thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, waker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	return w;
}

/*
 * Have the waker send a ListOffsets for the partitions in list, which it
 * takes over (and destroys).  Returns at once.
 */
void
kafka_waker_wake(KafkaFetchWaker *w, rd_kafka_topic_partition_list_t *list)
{
	rd_kafka_topic_partition_list_t *replaced;

	pthread_mutex_lock(&w->lock);
	replaced = w->pending;
	w->pending = list;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (replaced)
		rd_kafka_topic_partition_list_destroy(replaced);
}

/* Stop the thread (after the request in flight, if any) and free the waker. */
void
kafka_waker_stop(KafkaFetchWaker *w)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	if (w->pending)
		rd_kafka_topic_partition_list_destroy(w->pending);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

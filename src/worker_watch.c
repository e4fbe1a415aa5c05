/*-------------------------------------------------------------------------
 *
 * worker_watch.c
 *		The auto-refresh worker's arrival watch: consumers waiting at the
 *		end of its views' topics, so that a refresh starts when records
 *		arrive instead of at the next poll.
 *
 * Design:
 *
 * - One librdkafka consumer per (server, view owner), made with the owner's
 *   user mapping as the refresh's own handle is, but outside the pool: it
 *   has its own fetch wait and small prefetch limits.  Each watched topic's
 *   partitions are started at the high watermarks read when the watch of
 *   that topic begins, into one queue per handle.  The watch's handle only
 *   ever fetches: a broker serves one connection's requests in order, so a
 *   metadata or offsets request behind a waiting fetch would wait as long.
 *   Partitions and watermarks are asked for through a pooled handle.
 *
 * - A broker holds the watch's fetch for up to kafka_fdw.auto_refresh_wait
 *   while nothing arrives and answers as soon as a record does (Kafka does;
 *   the test broker holds an empty fetch for the whole wait, so there the
 *   wait bounds the latency).  An idle watch thus costs one small request
 *   per wait and broker, and the worker sleeps.
 *
 * - librdkafka writes a byte to a pipe when a queue goes from empty to
 *   non-empty (rd_kafka_queue_io_event_enable); the worker waits on the
 *   pipe beside its latch.  kafka_watch_arrivals() empties the pipe first
 *   and the queues after, so that a record enqueued in between writes the
 *   pipe again and is not slept through.  The records themselves are only
 *   counted and dropped: a refresh reads what it ingests on its own, from
 *   the stored offsets to the watermarks it reads itself.
 *
 * - The watch is a hint and never decides what a refresh ingests (refresh.c
 *   does, from the stored offsets and the watermarks).  What it cannot see
 *   - a record that arrived before its topic's watch began, a partition
 *   added later, a broker it could not reach, a view moved back by
 *   kafka.reset_stream() - waits at most for the worker's periodic check of
 *   every view (kafka_fdw.auto_refresh_interval), as all records did before.
 *
 * - A watch that begins may not see its first records at once.  librdkafka
 *   starts a consumer's partitions one by one, and its broker thread may
 *   send the first fetch before the last partition has started; the broker
 *   holds that fetch for up to kafka_fdw.auto_refresh_wait while nothing
 *   arrives in the partitions it names, and a record in the others waits
 *   with it (seen in librdkafka's debug log: "Fetch 1/1/2 toppar(s)").  So
 *   for one auto_refresh_wait after a topic's watch began, the worker checks
 *   its views every WATCH_YOUNG_CHECK_MS as well (worker.c).
 *
 * - kafka_watch_sync() is called in a transaction with every auto view:
 *   topics and handles no view needs any more are stopped and destroyed, a
 *   new one is started in a subtransaction whose failure leaves the view
 *   unwatched until the next sync.  A change of a server's options or a
 *   user mapping (a syscache invalidation) restarts every watch, so that
 *   new credentials or brokers take effect.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "kafka_fdw.h"
#include "stream.h"

/*
 * The watch's prefetch limits: a full queue parks librdkafka 2.0's fetchers
 * for up to a second (see bench/README.md, "Fetch stalls"), so they are
 * well above what arrives between two drains at 10k records/s, yet small.
 */
#define WATCH_QUEUED_MIN_MESSAGES "100000"
#define WATCH_QUEUED_MAX_KBYTES "4096"
#define WATCH_BATCH 256

int			kafka_auto_refresh_wait_ms = 500;

/* One watched topic of a handle, and the views that read it. */
typedef struct WatchedTopic
{
	char	   *topic;
	rd_kafka_topic_t *rkt;
	int			nparts;
	int32	   *parts;
	List	   *views;			/* OIDs of auto views on it */
	bool		arrived;		/* records since the last kafka_watch_arrivals() */
	bool		began;			/* started by the sync in progress */
	bool		wanted;			/* named by the sync in progress */
} WatchedTopic;

/* One consumer: a (server, owner) pair. */
typedef struct WatchHandle
{
	Oid			serverid;
	Oid			userid;
	KafkaConnection *conn;
	rd_kafka_queue_t *queue;
	List	   *topics;			/* WatchedTopic * */
	bool		wanted;			/* named by the sync in progress */
} WatchHandle;

static List *handles = NIL;		/* WatchHandle *, in TopMemoryContext */
static int	wake_pipe[2] = {-1, -1};
static bool options_changed = false;
static bool callbacks_registered = false;

static void
watch_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	options_changed = true;
}

/* The read end of the pipe librdkafka writes to when records arrive. */
pgsocket
kafka_watch_socket(void)
{
	if (wake_pipe[0] < 0)
	{
		if (pipe(wake_pipe) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create pipe for the auto-refresh watch: %m")));
		for (int i = 0; i < 2; i++)
			if (fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK) != 0 ||
				fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC) != 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not configure pipe for the auto-refresh watch: %m")));
	}
	return wake_pipe[0];
}

static void
stop_topic(WatchedTopic *t)
{
	/* stop every fetcher before the handle may be destroyed */
	for (int i = 0; i < t->nparts; i++)
		rd_kafka_consume_stop(t->rkt, t->parts[i]);
	rd_kafka_topic_destroy(t->rkt);
	list_free(t->views);
	pfree(t->parts);
	pfree(t->topic);
	pfree(t);
}

static void
destroy_handle(WatchHandle *h)
{
	ListCell   *lc;

	foreach(lc, h->topics)
		stop_topic(lfirst(lc));
	list_free(h->topics);
	rd_kafka_queue_destroy(h->queue);
	kafka_connection_destroy(h->conn);
	pfree(h);
}

/*
 * The watch's consumer properties, over the server's and mapping's: a
 * broker answers its fetch on the first byte, or after the wait.
 */
static void
configure_watch(rd_kafka_conf_t *conf, void *arg)
{
	char		errstr[256];
	char		wait[16];

	snprintf(wait, sizeof(wait), "%d", kafka_auto_refresh_wait_ms);
	if (rd_kafka_conf_set(conf, "fetch.wait.max.ms", wait, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "fetch.min.bytes", "1", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "queued.min.messages", WATCH_QUEUED_MIN_MESSAGES,
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "queued.max.messages.kbytes", WATCH_QUEUED_MAX_KBYTES,
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "false",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		/* a truncated or recreated topic: go on watching at its end */
		rd_kafka_conf_set(conf, "auto.offset.reset", "latest",
						  errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not configure the auto-refresh watch: %s", errstr)));
}

static WatchHandle *
find_handle(Oid serverid, Oid userid)
{
	ListCell   *lc;

	foreach(lc, handles)
	{
		WatchHandle *h = lfirst(lc);

		if (h->serverid == serverid && h->userid == userid)
			return h;
	}
	return NULL;
}

static WatchedTopic *
find_topic(WatchHandle *h, const char *topic)
{
	ListCell   *lc;

	foreach(lc, h->topics)
	{
		WatchedTopic *t = lfirst(lc);

		if (strcmp(t->topic, topic) == 0)
			return t;
	}
	return NULL;
}

/*
 * Run fn(arg) in a subtransaction, from which nothing but its effects on
 * the watch's own memory survives; false if it threw (the error logged at
 * DEBUG1 after what).  In a transaction.
 */
bool
kafka_watch_try(const char *what, void (*fn) (void *arg), void *arg)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner_res = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(DEBUG1, (errmsg("kafka_fdw auto refresh %s: %s", what, edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner_res;
	return ok;
}

/*
 * Start watching topic through h: every partition from its high watermark.
 * Throws on failure (no leader, unknown topic, brokers unreachable), with
 * what was started by then stopped again.
 */
static WatchedTopic *
start_topic(WatchHandle *h, const char *topic)
{
	KafkaWatermark *wm;
	int			nparts = kafka_fetch_watermarks(h->serverid, h->userid, topic, false, &wm);
	rd_kafka_topic_t *rkt;
	WatchedTopic *t;

	rkt = rd_kafka_topic_new(h->conn->rk, topic, NULL);
	if (rkt == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not watch Kafka topic \"%s\": %s", topic,
						rd_kafka_err2str(rd_kafka_last_error()))));
	for (int i = 0; i < nparts; i++)
	{
		if (rd_kafka_consume_start_queue(rkt, wm[i].partition, wm[i].high, h->queue) != 0)
		{
			rd_kafka_resp_err_t err = rd_kafka_last_error();

			for (int j = 0; j < i; j++)
				rd_kafka_consume_stop(rkt, wm[j].partition);
			rd_kafka_topic_destroy(rkt);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("could not watch partition %d of Kafka topic \"%s\": %s",
							wm[i].partition, topic, rd_kafka_err2str(err))));
		}
	}

	t = MemoryContextAllocZero(TopMemoryContext, sizeof(WatchedTopic));
	t->topic = MemoryContextStrdup(TopMemoryContext, topic);
	t->rkt = rkt;
	t->nparts = nparts;
	t->parts = MemoryContextAlloc(TopMemoryContext, sizeof(int32) * Max(nparts, 1));
	for (int i = 0; i < nparts; i++)
		t->parts[i] = wm[i].partition;
	t->began = true;
	pfree(wm);
	return t;
}

/*
 * Begin a sync: kafka_watch_view() for every auto view, then
 * kafka_watch_end_sync().  In a transaction.
 */
void
kafka_watch_begin_sync(void)
{
	ListCell   *lc;

	(void) kafka_watch_socket();
	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, watch_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, watch_inval_callback, (Datum) 0);
		callbacks_registered = true;
	}
	if (options_changed)
	{
		/* new options or credentials: start over */
		foreach(lc, handles)
			destroy_handle(lfirst(lc));
		list_free(handles);
		handles = NIL;
		options_changed = false;
	}
	foreach(lc, handles)
	{
		WatchHandle *h = lfirst(lc);
		ListCell   *tc;

		h->wanted = false;
		foreach(tc, h->topics)
		{
			WatchedTopic *t = lfirst(tc);

			t->wanted = false;
			t->began = false;
			list_free(t->views);
			t->views = NIL;
		}
	}
}

/* What start_watch() works on. */
typedef struct StartWatch
{
	Oid			serverid;
	Oid			owner;
	const char *topic;
	WatchHandle *handle;		/* in: the existing consumer, or NULL */
	WatchedTopic *started;		/* out */
} StartWatch;

/* Start watching a topic, making the consumer first if there is none. */
static void
start_watch(void *arg)
{
	StartWatch *sw = arg;
	WatchHandle *h = sw->handle;
	MemoryContext old;

	if (h == NULL)
	{
		KafkaConnection *conn = kafka_connection_create(sw->serverid, sw->owner,
														RD_KAFKA_CONSUMER,
														configure_watch, NULL);

		old = MemoryContextSwitchTo(TopMemoryContext);
		h = palloc0(sizeof(WatchHandle));
		h->serverid = sw->serverid;
		h->userid = sw->owner;
		h->conn = conn;
		h->wanted = true;
		h->queue = rd_kafka_queue_new(conn->rk);
		rd_kafka_queue_io_event_enable(h->queue, wake_pipe[1], "w", 1);
		/* kept even if the topic fails to start: no new consumer each sync */
		handles = lappend(handles, h);
		MemoryContextSwitchTo(old);
	}
	sw->started = start_topic(h, sw->topic);
	old = MemoryContextSwitchTo(TopMemoryContext);
	h->topics = lappend(h->topics, sw->started);
	MemoryContextSwitchTo(old);
}

/*
 * Watch mv_oid's topic through the consumer of (serverid, owner).  False if
 * the watch could not begin (logged at DEBUG1); the view is then only seen
 * by the periodic check.  *began is set when the topic's watch began in this
 * sync (new, or started over with new options or partitions): see
 * kafka_watch_began() for what the caller owes such a view.
 */
bool
kafka_watch_view(Oid mv_oid, Oid serverid, Oid owner, const char *topic,
				 bool *began)
{
	WatchHandle *h = find_handle(serverid, owner);
	WatchedTopic *t = h ? find_topic(h, topic) : NULL;
	MemoryContext old;

	if (h)
		h->wanted = true;
	if (t == NULL)
	{
		StartWatch	sw = {serverid, owner, topic, h, NULL};
		char	   *what = psprintf("cannot watch topic \"%s\" for view %u", topic, mv_oid);

		if (!kafka_watch_try(what, start_watch, &sw))
			return false;
		t = sw.started;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	t->views = lappend_oid(t->views, mv_oid);
	MemoryContextSwitchTo(old);
	t->wanted = true;
	*began = t->began;
	return true;
}

/* End a sync: stop the topics and handles that no auto view needs. */
void
kafka_watch_end_sync(void)
{
	ListCell   *lc;

	foreach(lc, handles)
	{
		WatchHandle *h = lfirst(lc);
		ListCell   *tc;

		foreach(tc, h->topics)
		{
			WatchedTopic *t = lfirst(tc);

			if (!t->wanted)
			{
				stop_topic(t);
				h->topics = foreach_delete_current(h->topics, tc);
			}
		}
		/* kept while a view needs it, also when its topics failed to start */
		if (!h->wanted)
		{
			destroy_handle(h);
			handles = foreach_delete_current(handles, lc);
		}
	}
}

/* What check_partitions() works on. */
typedef struct PartitionCheck
{
	WatchHandle *handle;
	WatchedTopic *topic;
	bool		differs;		/* out */
} PartitionCheck;

/* Have the topic's partitions changed since its watch began? */
static void
check_partitions(void *arg)
{
	PartitionCheck *pc = arg;
	KafkaWatermark *wm;
	int			n = kafka_fetch_watermarks(pc->handle->serverid, pc->handle->userid,
										   pc->topic->topic, false, &wm);

	pc->differs = n != pc->topic->nparts;
	for (int i = 0; i < n && !pc->differs; i++)
		pc->differs = wm[i].partition != pc->topic->parts[i];
}

/*
 * Drop the consumers watching a topic whose partitions changed (one was
 * added), so that the sync that follows starts them again.  A new consumer,
 * not a new start of the partition: the old one would only learn of the
 * partition through a metadata request queued behind its waiting fetch.  A
 * topic whose partitions cannot be read now is kept.  In a transaction.
 */
void
kafka_watch_drop_changed_topics(void)
{
	ListCell   *lc;

	foreach(lc, handles)
	{
		WatchHandle *h = lfirst(lc);
		ListCell   *tc;
		bool		changed = false;

		foreach(tc, h->topics)
		{
			PartitionCheck pc = {h, lfirst(tc), false};

			if (kafka_watch_try("cannot read the partitions of a watched topic",
								check_partitions, &pc) && pc.differs)
			{
				changed = true;
				break;
			}
		}
		if (changed)
		{
			destroy_handle(h);
			handles = foreach_delete_current(handles, lc);
		}
	}
}

/*
 * The views whose topics got records since the last call (each once), in
 * the caller's memory context.  Empties the pipe, then the queues.
 */
List *
kafka_watch_arrivals(void)
{
	List	   *views = NIL;
	char		buf[64];
	ListCell   *lc;

	if (wake_pipe[0] >= 0)
		while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
			;
	foreach(lc, handles)
	{
		WatchHandle *h = lfirst(lc);
		rd_kafka_message_t *msgs[WATCH_BATCH];
		ssize_t		n;
		ListCell   *tc;

		/* serve the error callback (the main queue would grow otherwise) */
		rd_kafka_poll(h->conn->rk, 0);
		while ((n = rd_kafka_consume_batch_queue(h->queue, 0, msgs, WATCH_BATCH)) > 0)
		{
			for (ssize_t i = 0; i < n; i++)
			{
				if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR)
				{
					foreach(tc, h->topics)
					{
						WatchedTopic *t = lfirst(tc);

						if (t->rkt == msgs[i]->rkt ||
							strcmp(t->topic, rd_kafka_topic_name(msgs[i]->rkt)) == 0)
						{
							t->arrived = true;
							break;
						}
					}
				}
				rd_kafka_message_destroy(msgs[i]);
			}
			if (n < WATCH_BATCH)
				break;
		}
		foreach(tc, h->topics)
		{
			WatchedTopic *t = lfirst(tc);

			if (t->arrived)
				views = list_concat_unique_oid(views, t->views);
			t->arrived = false;
		}
	}
	return views;
}

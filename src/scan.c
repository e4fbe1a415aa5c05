/*-------------------------------------------------------------------------
 *
 * scan.c
 *		Executing a kafka_fdw foreign scan: bounded reads of a topic's
 *		partitions up to the watermarks captured when the scan starts.
 *
 * Design and invariants:
 *
 * - When the scan starts (first IterateForeignScan, or after a rescan) the
 *   pushed-down conditions are evaluated, the topic's partitions and their
 *   watermarks are fetched once, and each wanted partition gets a half-open
 *   range [start, end) with end <= the high watermark (the last stable offset
 *   under read_committed) of that moment.  A range is finished when a record
 *   at offset >= end - 1 arrived, or librdkafka reports the end of the
 *   partition; its fetcher is then stopped.  The scan therefore always
 *   terminates, also on a topic being written, and never waits for records
 *   that do not exist.
 *
 * - A parallel scan (parallel.c) captures the ranges once, in the leader,
 *   and cuts them into work items in shared memory.  Each participant then
 *   reads a few items at a time with the same machinery as a serial scan:
 *   its "parts" are slots that are refilled from the work queue whenever a
 *   batch of messages has been used up.  An item may start or end in the
 *   middle of a partition.  Refilling only between batches, after the
 *   finished range's fetcher was stopped, guarantees that no message of a
 *   previous range of the same partition is taken for one of the new range:
 *   librdkafka drops messages queued before a stop (their op version is
 *   outdated), and none is left in our batch.
 *
 * - Records are fetched with librdkafka's legacy per-partition consumer into
 *   a queue owned by this scan, and taken off it in batches.  Messages past a
 *   range's end (prefetched) are dropped.
 *
 * - While waiting, the loop wakes at least every KAFKA_POLL_MS to check for
 *   interrupts.  If nothing arrives for kafka_fdw.connect_timeout although
 *   records are due, the scan fails with the broker's last error.
 *
 * - librdkafka < 2.3 parks a fetcher whose queue reached its limits and may
 *   look again only a second later; the scan wakes the fetchers when a full
 *   queue is half drained, and once after KAFKA_STALL_MS of an empty queue
 *   that was half full since the last wake-up (see wake_fetchers()).
 *
 * - Cleanup (stopping the partition fetchers, destroying messages, the queue
 *   and the topic handle, releasing the pooled connection) is a memory
 *   context reset callback of the scan's per-run context (run_cxt, which
 *   holds the partition arrays it walks), so it also runs when the query
 *   fails or is cancelled, not only from EndForeignScan.
 *
 * - What was read is counted per range; the counts are handed on (to a
 *   streaming refresh's context, or to the shared work item) by range_flush,
 *   in deltas, so that flushing again after more records is harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "scan.h"

#define KAFKA_BATCH_SIZE 1024	/* messages taken off the queue at once */
#define KAFKA_POLL_MS 100		/* longest wait between interrupt checks */
#define KAFKA_STALL_MS 20		/* an empty queue this long: wake the fetchers */

static void scan_start(ForeignScanState *node, KafkaScanState *st);
static void participant_refill(KafkaScanState *st);
static double conf_get_number(rd_kafka_t *rk, const char *name, double dflt);
static void scan_cleanup(void *arg);

void
kafkaBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	Relation	rel = node->ss.ss_currentRelation;
	KafkaScanState *st;
	MemoryContext old;

	st = palloc0(sizeof(KafkaScanState));
	node->fdw_state = st;
	st->scan_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw scan",
										 ALLOCSET_DEFAULT_SIZES);
	st->run_cxt = AllocSetContextCreate(st->scan_cxt, "kafka_fdw scan run",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(st->scan_cxt);

	kafka_get_table_options(RelationGetRelid(rel), &st->opts);
	st->columns = kafka_map_columns(rel);
	st->cond_columns = list_nth(plan->fdw_private, KafkaPrivateCondColumns);
	st->cond_ops = list_nth(plan->fdw_private, KafkaPrivateCondOps);
	st->userid = kafka_scan_user(node);
	kafka_converter_init(&st->conv, RelationGetDescr(rel), st->columns,
						 list_nth(plan->fdw_private, KafkaPrivateRetrievedAttrs),
						 GetCurrentStatementStartTimestamp());
	st->batch = palloc(sizeof(rd_kafka_message_t *) * KAFKA_BATCH_SIZE);
	MemoryContextSwitchTo(old);

	/* expression states live in the executor's context, as usual */
	st->cond_states = ExecInitExprList(plan->fdw_exprs, (PlanState *) node);

	/*
	 * The view's own scan in a streaming refresh evaluates the view's WHERE
	 * and target list itself, record by record (record_eval.c).
	 */
	st->stream_node = list_length(plan->fdw_private) > KafkaPrivateStreamScan &&
		intVal(list_nth(plan->fdw_private, KafkaPrivateStreamScan)) != 0;
	if (st->stream_node)
		kafka_eval_begin(node, st);

	st->cleanup_cb.func = scan_cleanup;
	st->cleanup_cb.arg = st;
	/*
	 * On run_cxt, which holds the partition arrays the cleanup walks: when a
	 * context is deleted its children are freed before its own callbacks
	 * run, so a callback on scan_cxt would read freed memory.
	 */
	MemoryContextRegisterResetCallback(st->run_cxt, &st->cleanup_cb);
}

/* Evaluate the pushed-down conditions into st->bounds. */
void
kafka_scan_evaluate_bounds(ForeignScanState *node, KafkaScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	ListCell   *lc1,
			   *lc2,
			   *lc3;

	kafka_bounds_init(&st->bounds);
	forthree(lc1, st->cond_columns, lc2, st->cond_ops, lc3, st->cond_states)
	{
		ExprState  *es = lfirst(lc3);
		bool		isnull;
		Datum		value = ExecEvalExpr(es, econtext, &isnull);

		kafka_bounds_apply(&st->bounds, lfirst_int(lc1), lfirst_int(lc2),
						   value, isnull, exprType((Node *) es->expr));
	}
	st->have_bounds = true;
}

/* Turn the timestamp bound into a start offset per range. */
static void
apply_timestamp_bound(KafkaScanState *st, KafkaConnection *conn,
					  KafkaPartitionScan *parts, int n)
{
	int32	   *ids = palloc(sizeof(int32) * Max(n, 1));
	int64	   *low = palloc(sizeof(int64) * Max(n, 1));
	int64	   *high = palloc(sizeof(int64) * Max(n, 1));
	int64	   *out = palloc(sizeof(int64) * Max(n, 1));

	for (int i = 0; i < n; i++)
	{
		ids[i] = parts[i].partition;
		low[i] = parts[i].start;
		high[i] = Max(parts[i].start, parts[i].end);
	}
	kafka_resolve_timestamp(conn, st->opts.topic, ids, low, high, n,
							st->bounds.timestamp_lo_ms, out, NULL);
	for (int i = 0; i < n; i++)
		parts[i].start = out[i];
}

/*
 * Decide the range of every wanted partition, for bounds already evaluated
 * (and not empty): from a streaming refresh's context if one is active for
 * this table, else from the watermarks, asked of the brokers through conn.
 * Returns the number of ranges; *ranges is palloc'd in the current context,
 * sorted by partition.  Ranges may be empty (start >= end).
 */
int
kafka_scan_capture(ForeignScanState *node, KafkaScanState *st,
				   KafkaConnection *conn, KafkaPartitionScan **ranges)
{
	KafkaPartitionScan *parts;
	int			n = 0;

	if (kafka_scan_stream_context(node))
	{
		/* a streaming refresh decided the ranges; the conditions narrow them */
		KafkaStreamContext *ctx = kafka_scan_stream_context(node);

		st->stream = ctx;
		ctx->scanned = true;
		parts = palloc0(sizeof(KafkaPartitionScan) * Max(ctx->nparts, 1));
		for (int i = 0; i < ctx->nparts; i++)
		{
			KafkaPartitionScan *ps = &parts[n];

			if (!kafka_bounds_partition_ok(&st->bounds, ctx->parts[i].partition))
				continue;
			ps->partition = ctx->parts[i].partition;
			ps->low = ctx->parts[i].start;
			ps->high = ctx->parts[i].end;
			ps->skip_before_ms = ctx->parts[i].skip_before_ms;
			ps->verify = ctx->parts[i].verify;
			ps->stream_index = i;
			n++;
		}
	}
	else
	{
		int32	   *ids;
		int			nids = kafka_topic_partitions(conn, st->opts.topic, &ids);
		KafkaWatermark *wm;

		parts = palloc0(sizeof(KafkaPartitionScan) * Max(nids, 1));
		for (int i = 0; i < nids; i++)
			if (kafka_bounds_partition_ok(&st->bounds, ids[i]))
				parts[n++].partition = ids[i];
		wm = palloc(sizeof(KafkaWatermark) * Max(n, 1));
		for (int i = 0; i < n; i++)
			wm[i].partition = parts[i].partition;
		kafka_topic_watermarks(conn, st->opts.topic, wm, n);
		for (int i = 0; i < n; i++)
		{
			parts[i].low = wm[i].low;
			parts[i].high = wm[i].high;
			parts[i].skip_before_ms = -1;
			parts[i].verify.offset = -1;
			parts[i].stream_index = -1;
		}
	}
	for (int i = 0; i < n; i++)
	{
		KafkaPartitionScan *ps = &parts[i];

		ps->item = -1;
		ps->last_offset = -1;
		ps->ts_min_ms = ps->ts_max_ms = -1;
		ps->last.offset = -1;
		ps->start = Max(ps->low, st->bounds.offset_lo);
		ps->end = Min(ps->high, st->bounds.offset_hi);
		/* read the record to check too, unless the conditions exclude it */
		if (ps->verify.offset >= 0 && ps->start == ps->low && ps->start < ps->end &&
			ps->verify.offset < ps->start)
			ps->start = ps->verify.offset;
		else
			ps->verify.offset = -1;
	}
	if (st->bounds.has_timestamp)
		apply_timestamp_bound(st, conn, parts, n);
	*ranges = parts;
	return n;
}

/* Create the topic handle and the queue this backend's fetchers feed. */
static void
open_fetch(KafkaScanState *st, int32 max_partition)
{
	rd_kafka_topic_conf_t *tconf;
	char		errstr[256];

	st->part_index_size = max_partition + 1;
	st->part_index = palloc(sizeof(int) * Max(st->part_index_size, 1));
	for (int i = 0; i < st->part_index_size; i++)
		st->part_index[i] = -1;

	tconf = rd_kafka_topic_conf_new();
	if (rd_kafka_topic_conf_set(tconf, "auto.offset.reset", "error",
								errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		elog(ERROR, "could not configure topic: %s", errstr);
	st->rkt = rd_kafka_topic_new(st->conn->rk, st->opts.topic, tconf);
	if (st->rkt == NULL)
		kafka_report_error(st->conn, rd_kafka_last_error(), st->opts.topic);
	st->queue = rd_kafka_queue_new(st->conn->rk);
	st->last_progress = GetCurrentTimestamp();
	st->queue_max_msgs = (size_t) conf_get_number(st->conn->rk, "queued.min.messages", 100000);
	st->queue_max_bytes = conf_get_number(st->conn->rk, "queued.max.messages.kbytes", 65536) * 1024;
}

/* Start fetching the range in slot idx of st->parts (or mark it done if empty). */
static void
start_range(KafkaScanState *st, int idx)
{
	KafkaPartitionScan *ps = &st->parts[idx];

	st->part_index[ps->partition] = idx;
	if (ps->start >= ps->end)
	{
		ps->done = true;
		return;
	}
	if (rd_kafka_consume_start_queue(st->rkt, ps->partition, ps->start,
									 st->queue) == -1)
		kafka_report_error(st->conn, rd_kafka_last_error(), st->opts.topic);
	ps->started = true;
	st->nactive++;
}

/*
 * Start a serial scan: evaluate bounds, capture watermarks, and start a
 * fetcher for every partition that has records in range.
 */
static void
scan_start(ForeignScanState *node, KafkaScanState *st)
{
	MemoryContext old;
	int32		maxid = -1;

	st->started = true;
	kafka_scan_evaluate_bounds(node, st);
	if (st->bounds.empty)
		return;

	old = MemoryContextSwitchTo(st->run_cxt);
	st->conn = kafka_connection_acquire(st->opts.serverid, st->userid);
	st->nparts = kafka_scan_capture(node, st, st->conn, &st->parts);
	for (int i = 0; i < st->nparts; i++)
		maxid = Max(maxid, st->parts[i].partition);
	open_fetch(st, maxid);
	for (int i = 0; i < st->nparts; i++)
		start_range(st, i);
	MemoryContextSwitchTo(old);
}

/* Start this backend's part of a parallel scan: claim the first ranges. */
static void
participant_start(KafkaScanState *st)
{
	MemoryContext old = MemoryContextSwitchTo(st->run_cxt);

	st->started = true;
	st->conn = kafka_connection_acquire(st->opts.serverid, st->userid);
	st->parts = palloc0(sizeof(KafkaPartitionScan) * KAFKA_PARALLEL_WINDOW);
	st->nparts = 0;
	open_fetch(st, kafka_parallel_max_partition(st));
	MemoryContextSwitchTo(old);
	participant_refill(st);
}

/*
 * Hand on what a range read since the last flush: to the shared work item
 * in a parallel scan, to the refresh's context in a serial one.
 */
static void
range_flush(KafkaScanState *st, KafkaPartitionScan *ps)
{
	int64		records = ps->records - ps->flushed_records;
	int64		bytes = ps->bytes - ps->flushed_bytes;
	int64		skipped = ps->skipped - ps->flushed_skipped;

	if (st->par)
		kafka_parallel_range_done(st, ps, records, bytes, skipped);
	else if (st->stream && ps->stream_index >= 0)
	{
		KafkaStreamPartition *sp = &st->stream->parts[ps->stream_index];

		sp->scanned_rows += records;
		sp->skipped_rows += skipped;
		sp->scanned_bytes += bytes;
		st->stream->nskipped += skipped;
		if (ps->ts_min_ms >= 0 && (sp->ts_min_ms < 0 || ps->ts_min_ms < sp->ts_min_ms))
			sp->ts_min_ms = ps->ts_min_ms;
		if (ps->ts_max_ms > sp->ts_max_ms)
			sp->ts_max_ms = ps->ts_max_ms;
		if (ps->last.offset > sp->last.offset)
			sp->last = ps->last;
	}
	ps->flushed_records = ps->records;
	ps->flushed_bytes = ps->bytes;
	ps->flushed_skipped = ps->skipped;
	ps->flushed = ps->done;
}

/* Hand on the counts of every range of this backend (at shutdown, end or rescan). */
void
kafka_scan_flush(KafkaScanState *st)
{
	for (int i = 0; i < st->nparts; i++)
		if (!st->parts[i].flushed)
			range_flush(st, &st->parts[i]);
}

/*
 * Between batches: hand on finished ranges and claim new ones until
 * KAFKA_PARALLEL_WINDOW ranges are being read.  A claimed range of a
 * partition this backend is still reading waits (st->pending) until that
 * one is finished: a partition has one fetcher per handle.
 */
static void
participant_refill(KafkaScanState *st)
{
	while (st->nactive < KAFKA_PARALLEL_WINDOW)
	{
		KafkaPartitionScan range;
		int			slot;

		if (st->has_pending)
		{
			if (st->part_index[st->pending.partition] >= 0)
				break;			/* still reading that partition */
			range = st->pending;
			st->has_pending = false;
		}
		else if (!kafka_parallel_claim(st, &range))
			break;
		else if (range.partition >= st->part_index_size)
			elog(ERROR, "work item for partition %d beyond the announced maximum %d",
				 (int) range.partition, st->part_index_size - 1);
		else if (st->part_index[range.partition] >= 0)
		{
			st->pending = range;
			st->has_pending = true;
			break;
		}

		/* a free slot: never used, or finished (its counts handed on) */
		for (slot = 0; slot < st->nparts; slot++)
			if (st->parts[slot].done)
				break;
		if (slot == st->nparts)
		{
			if (st->nparts == KAFKA_PARALLEL_WINDOW)
				elog(ERROR, "no free slot for a parallel Kafka range");
			st->nparts++;
		}
		else if (!st->parts[slot].flushed)
			range_flush(st, &st->parts[slot]);
		st->parts[slot] = range;
		start_range(st, slot);
	}
}

/* A numeric librdkafka property of the handle, or dflt. */
static double
conf_get_number(rd_kafka_t *rk, const char *name, double dflt)
{
	char		buf[64];
	size_t		size = sizeof(buf);

	if (rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &size) != RD_KAFKA_CONF_OK)
		return dflt;
	return strtod(buf, NULL);
}

/*
 * Wake librdkafka's fetchers after the queue was full.
 *
 * librdkafka stops fetching a partition while the queue it delivers to holds
 * queued.min.messages messages or queued.max.messages.kbytes; all our
 * partitions share one queue, so the limits apply to the scan as a whole.
 * Before librdkafka 2.3 (fetch.queue.backoff.ms) a broker thread looks at
 * the queue again only when something wakes it up, which with no request in
 * flight is after up to a second (librdkafka issue #2879): every time the
 * scan consumes slower than the brokers deliver, the scan would stall for up
 * to a second.  Any request to a broker wakes its thread, which then sees
 * the drained queue and fetches at once.  The cheapest such request through
 * the public API is a ListOffsets; rd_kafka_offsets_for_times() sends one
 * per leader of the given partitions, in parallel.  The answer is not used,
 * and the scan does not wait for it: the request is sent by the scan's
 * waker thread (fetch_waker.c), while the scan converts the records still
 * queued.
 */
static void
wake_fetchers(KafkaScanState *st)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(Max(st->nactive, 1));

	for (int i = 0; i < st->nparts; i++)
		if (st->parts[i].started && !st->parts[i].done)
			rd_kafka_topic_partition_list_add(list, st->opts.topic,
											  st->parts[i].partition)->offset = RD_KAFKA_OFFSET_END;
	if (st->waker == NULL && !st->no_waker && list->cnt > 0)
	{
		st->waker = kafka_waker_start(st->conn->rk, KAFKA_POLL_MS);
		st->no_waker = st->waker == NULL;
	}
	if (list->cnt > 0 && st->waker)
		kafka_waker_wake(st->waker, list);	/* takes the list */
	else
	{
		if (list->cnt > 0)
			(void) rd_kafka_offsets_for_times(st->conn->rk, list, KAFKA_POLL_MS);
		rd_kafka_topic_partition_list_destroy(list);
	}
	st->queue_was_full = false;
	st->queue_was_high = false;
	st->fetcher_wakeups++;
}

/* Would librdkafka stop fetching with this many messages in the queue? */
static bool
queue_at_limit(KafkaScanState *st, double messages)
{
	return messages >= st->queue_max_msgs ||
		messages * st->mean_message_bytes >= 0.75 * st->queue_max_bytes;
}

/*
 * A range is finished: stop its fetcher (messages of it still queued become
 * outdated and are dropped by librdkafka) and stop mapping its partition.
 */
static void
partition_done(KafkaScanState *st, KafkaPartitionScan *ps)
{
	if (ps->done)
		return;
	ps->done = true;
	st->nactive--;
	if (ps->started)
	{
		rd_kafka_consume_stop(st->rkt, ps->partition);
		ps->started = false;
	}
	st->part_index[ps->partition] = -1;
}

/* The Kafka timestamp of a message in ms, -1 if none, and its type letter. */
static int64
message_timestamp(const rd_kafka_message_t *msg, char *type)
{
	rd_kafka_timestamp_type_t tstype;
	int64		ms = rd_kafka_message_timestamp(msg, &tstype);

	*type = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 'C' :
		tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 'L' : 'U';
	return tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ms;
}

/* Count a record returned. */
static void
range_record_read(KafkaScanState *st, KafkaPartitionScan *ps, const rd_kafka_message_t *msg)
{
	ps->records++;
	ps->bytes += msg->len + msg->key_len;
	st->records++;
	st->bytes += msg->len + msg->key_len;
	if (ps->stream_index >= 0)
	{
		char		type;
		int64		ms = message_timestamp(msg, &type);

		if (ms >= 0)
		{
			if (ps->ts_min_ms < 0 || ms < ps->ts_min_ms)
				ps->ts_min_ms = ms;
			if (ms > ps->ts_max_ms)
				ps->ts_max_ms = ms;
		}
	}
}

static bytea *
prefix_bytes(const void *data, size_t len)
{
	if (data == NULL)
		return NULL;
	len = Min(len, KAFKA_ERROR_PREFIX_BYTES);
	{
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), data, len);
		return b;
	}
}

/*
 * Record a skipped record in the refresh's list for the error log (the
 * first KAFKA_MAX_LOGGED_SKIPS of them; the counts are the caller's).
 */
void
kafka_stream_add_skipped(KafkaStreamContext *ctx, int32 partition, int64 offset,
						 char timestamp_type, int64 timestamp_ms, const char *reason,
						 const void *key, size_t keylen, const void *value, size_t valuelen)
{
	MemoryContext old;
	KafkaSkippedRecord *r;

	if (list_length(ctx->skipped) >= KAFKA_MAX_LOGGED_SKIPS)
		return;
	old = MemoryContextSwitchTo(ctx->cxt);
	r = palloc(sizeof(KafkaSkippedRecord));
	r->partition = partition;
	r->offset = offset;
	r->timestamp_type = timestamp_type;
	r->timestamp_ms = timestamp_ms;
	r->reason = pstrdup(reason);
	r->key_prefix = prefix_bytes(key, keylen);
	r->value_prefix = prefix_bytes(value, valuelen);
	ctx->skipped = lappend(ctx->skipped, r);
	MemoryContextSwitchTo(old);
}

/* Record a record skipped during a serial streaming refresh, for the error log. */
static void
stream_record_skip(KafkaScanState *st, const rd_kafka_message_t *msg, const char *reason)
{
	char		ts_type;
	int64		ts = message_timestamp(msg, &ts_type);

	kafka_stream_add_skipped(st->stream, msg->partition, msg->offset, ts_type, ts, reason,
							 msg->key, msg->key_len, msg->payload, msg->len);
}

/*
 * Remember a skipped record for the warning if it is the lowest (partition,
 * offset) so far: partitions arrive interleaved in no fixed order, and the
 * lowest makes the warning reproducible.  'text' is copied.
 */
void
kafka_scan_note_skip(KafkaScanState *st, int32 partition, int64 offset, const char *text,
					 KafkaSkipKind kind)
{
	if (st->first_skip == NULL || partition < st->first_skip_partition ||
		(partition == st->first_skip_partition && offset < st->first_skip_offset))
	{
		if (st->first_skip)
			pfree(st->first_skip);
		st->first_skip = MemoryContextStrdup(st->scan_cxt, text);
		st->first_skip_partition = partition;
		st->first_skip_offset = offset;
		st->first_skip_kind = kind;
	}
}

/*
 * What to do about a record skipped (or failing the scan) for each
 * KafkaSkipKind: [kind][0] under on_error 'fail', [kind][1] in the warning
 * about skipped records.
 */
static const char *const skip_hints[KAFKA_NUM_SKIP_KINDS][2] = {
	[KAFKA_SKIP_VALUE] = {
		"Declare the column as bytea to read the raw bytes, or set the table option on_error to 'skip'.",
		"Declare the columns as bytea to read such records, or set the table option on_error to 'fail'."
	},
	[KAFKA_SKIP_HEADERS] = {
		"Leave the column kafka_headers out of the query to read such records, or set the table option on_error to 'skip'.",
		"Leave the column kafka_headers out of the query to read such records, or set the table option on_error to 'fail'."
	},
	[KAFKA_SKIP_OVERSIZED] = {
		"Raise kafka_fdw.max_record_size to read such records, or set the table option on_error to 'skip'.",
		"Raise kafka_fdw.max_record_size to read such records, or set the table option on_error to 'fail'."
	},
	/* under on_error 'fail' the expression's own error is raised instead */
	[KAFKA_SKIP_EXPRESSION] = {
		"Make the view's expressions accept such records, or set the table option on_error to 'skip'.",
		"The records are in kafka.stream_scan_errors. Make the view's expressions accept them (for example with kafka.can_json_parse() in WHERE), or set the table option on_error to 'fail'."
	},
};

/* Apply on_error to a record that could not be converted. */
static void
record_conversion_failed(KafkaScanState *st, KafkaPartitionScan *ps,
						 const rd_kafka_message_t *msg, const char *reason,
						 KafkaSkipKind kind)
{
	char	   *text;

	if (st->opts.on_error_fail)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("could not convert Kafka record at partition %d, offset " INT64_FORMAT " of topic \"%s\"",
						(int) msg->partition, (int64) msg->offset, st->opts.topic),
				 errdetail("%s", reason),
				 errhint("%s", skip_hints[kind][0])));

	st->skipped++;
	ps->skipped++;
	text = psprintf("partition %d, offset " INT64_FORMAT ". %s",
					(int) msg->partition, (int64) msg->offset, reason);
	if (st->par)
		kafka_parallel_log_skip(st, msg, reason, text, kind);
	else
	{
		if (st->stream)
			stream_record_skip(st, msg, reason);
		kafka_scan_note_skip(st, msg->partition, msg->offset, text, kind);
	}
	pfree(text);
}

/* The fingerprint of a record (see stream.h). */
void
kafka_record_fingerprint(const rd_kafka_message_t *msg, KafkaRecordFingerprint *fp)
{
	char		type;

	fp->offset = msg->offset;
	fp->timestamp_ms = message_timestamp(msg, &type);
	fp->key_len = msg->key ? (int32) msg->key_len : -1;
	fp->value_len = msg->payload ? (int32) msg->len : -1;
}

static const char *
describe_fingerprint(const KafkaRecordFingerprint *fp)
{
	const char *ts = "no timestamp";

	if (fp->timestamp_ms >= 0)
		ts = psprintf("timestamp %s",
					  timestamptz_to_str((TimestampTz) fp->timestamp_ms * 1000 -
										 ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)));
	return psprintf("%s, a %s key and a %s value", ts,
					fp->key_len < 0 ? "null" : psprintf("%d-byte", fp->key_len),
					fp->value_len < 0 ? "null" : psprintf("%d-byte", fp->value_len));
}

/*
 * A streaming refresh's range of a partition starts at the last record the
 * view ingested before (ps->verify): check that the topic still holds that
 * record, then drop it.  Returns true if msg is a record to use after all
 * (the checked one is gone: compaction removed it).  A different record is
 * an error: the offsets belong to another log.
 */
static bool
verify_record(KafkaScanState *st, KafkaPartitionScan *ps, const rd_kafka_message_t *msg)
{
	KafkaRecordFingerprint want = ps->verify;
	KafkaRecordFingerprint got;

	ps->verify.offset = -1;
	if (msg->offset != want.offset)
		return true;
	kafka_record_fingerprint(msg, &got);
	if (got.timestamp_ms != want.timestamp_ms || got.key_len != want.key_len ||
		got.value_len != want.value_len)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %d of topic \"%s\" is not the log the materialized view ingested",
						(int) msg->partition, st->opts.topic),
				 errdetail("The view last ingested offset " INT64_FORMAT ", a record with %s; the topic now holds there a record with %s. The topic may have been deleted and recreated, or the server may point at another cluster.",
						   want.offset, describe_fingerprint(&want), describe_fingerprint(&got)),
				 st->stream ?
				 errhint("Use kafka.reset_stream('%s') to ingest the topic from its start position.",
						 st->stream->mv_name) :
				 errhint("Use kafka.reset_stream() on the view to ingest the topic from its start position.")));
	return false;
}

/*
 * A record that kafka_scan_next() returned was skipped afterwards: the view's
 * expressions failed on it (record_eval.c).  It counts as skipped and not as
 * read, as a record that could not be converted does.  Serial scans only.
 */
void
kafka_scan_record_failed(KafkaScanState *st, const rd_kafka_message_t *msg,
						 const char *reason)
{
	KafkaPartitionScan *ps = NULL;

	for (int i = 0; i < st->nparts && ps == NULL; i++)
		if (st->parts[i].partition == msg->partition &&
			msg->offset >= st->parts[i].start && msg->offset < st->parts[i].end)
			ps = &st->parts[i];
	if (ps == NULL || st->par)
		elog(ERROR, "no range of the scan holds offset " INT64_FORMAT " of partition %d",
			 (int64) msg->offset, (int) msg->partition);
	ps->records--;
	ps->bytes -= msg->len + msg->key_len;
	st->records--;
	st->bytes -= msg->len + msg->key_len;
	record_conversion_failed(st, ps, msg, reason, KAFKA_SKIP_EXPRESSION);
}

/* Are the messages last taken off the queue all handled? */
bool
kafka_scan_batch_used_up(KafkaScanState *st)
{
	return st->batch_pos >= st->batch_len;
}

/*
 * The streaming refresh this scan node feeds, or NULL: only the view's own
 * scan node (marked by refresh.c) in the backend running the refresh.
 */
KafkaStreamContext *
kafka_scan_stream_context(ForeignScanState *node)
{
	KafkaScanState *st = node->fdw_state;

	if (st == NULL || !st->stream_node || kafka_active_stream == NULL ||
		kafka_active_stream->ftable_oid != RelationGetRelid(node->ss.ss_currentRelation))
		return NULL;
	return kafka_active_stream;
}

/*
 * The size of a record as kafka_fdw.max_record_size counts it: key, value,
 * and the names and values of its headers; *hdrs is set to the record's
 * headers, NULL if it has none.
 *
 * librdkafka (2.0) parses a record's headers when they are first asked for
 * and keeps them, but for a record without headers it builds and frees a
 * parse buffer (two allocations) on every call: this is the only call per
 * record, and the converter takes its result.
 */
static inline size_t
record_size(const rd_kafka_message_t *msg, rd_kafka_headers_t **hdrs)
{
	size_t		size = msg->len + msg->key_len;
	const char *name;
	const void *value;
	size_t		value_size;

	if (rd_kafka_message_headers(msg, hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		*hdrs = NULL;
		return size;
	}
	for (size_t i = 0;
		 rd_kafka_header_get_all(*hdrs, i, &name, &value, &value_size) ==
		 RD_KAFKA_RESP_ERR_NO_ERROR;
		 i++)
		size += strlen(name) + value_size;
	return size;
}

/*
 * Handle one message from the queue.  Returns true if it was turned into
 * the slot's tuple.
 */
static bool
handle_message(KafkaScanState *st, rd_kafka_message_t *msg, TupleTableSlot *slot)
{
	KafkaPartitionScan *ps = NULL;
	int			idx;
	rd_kafka_headers_t *hdrs;
	size_t		size;

	if (msg->rkt == st->rkt && msg->partition >= 0 &&
		msg->partition < st->part_index_size &&
		(idx = st->part_index[msg->partition]) >= 0)
		ps = &st->parts[idx];

	if (msg->err)
	{
		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			/* the log ends here: nothing more can come for this range */
			if (ps && msg->offset >= ps->start)
				partition_done(st, ps);
			return false;
		}
		/*
		 * Retention deleted records this scan was to read (its start offset
		 * is below the partition's new low watermark).  Skipping them would
		 * lose them silently; a streaming refresh fails here, and the next
		 * one records the lost range.
		 */
		if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
			msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("records of partition %d of topic \"%s\" were deleted by retention while the scan read them",
							(int) msg->partition, st->opts.topic),
					 errdetail("%s", rd_kafka_message_errstr(msg)),
					 errhint("Run the statement again. A streaming refresh run again records the lost range in kafka.stream_scan_errors.")));
		if (msg->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
			msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
			msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
			msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
			kafka_report_error(st->conn, msg->err, st->opts.topic);
		/* transient: librdkafka retries; the stall timeout covers the rest */
		return false;
	}

	if (ps == NULL || ps->done || msg->offset < ps->start ||
		msg->offset <= ps->last_offset)
		return false;
	if (msg->offset >= ps->end)
	{
		partition_done(st, ps);
		return false;
	}
	if (msg->offset >= ps->end - 1)
		partition_done(st, ps);
	ps->last_offset = msg->offset;
	if (ps->verify.offset >= 0 && !verify_record(st, ps, msg))
		return false;
	/*
	 * Only the checked record may lie below the range's own start (its low
	 * end): records between it and the stored next offset were passed over
	 * by an earlier refresh that did not read the partition to its end.
	 */
	if (msg->offset < ps->low)
		return false;
	if (ps->stream_index >= 0)
		kafka_record_fingerprint(msg, &ps->last);

	/*
	 * A streaming start position by timestamp that the broker could not
	 * resolve: emulate it, starting at the first record that recent.
	 */
	if (ps->skip_before_ms >= 0)
	{
		char		type;
		int64		ms = message_timestamp(msg, &type);

		if (ms < ps->skip_before_ms)
			return false;
		ps->skip_before_ms = -1;
	}

	size = record_size(msg, &hdrs);
	if (size > (size_t) kafka_max_record_size)
	{
		record_conversion_failed(st, ps, msg,
								 psprintf("The record of %zu bytes exceeds kafka_fdw.max_record_size (%d bytes).",
										  size, kafka_max_record_size),
								 KAFKA_SKIP_OVERSIZED);
		return false;
	}

	ExecClearTuple(slot);
	if (!kafka_record_to_datums(&st->conv, msg, hdrs, slot->tts_values, slot->tts_isnull))
	{
		record_conversion_failed(st, ps, msg, st->conv.error, st->conv.error_kind);
		return false;
	}
	ExecStoreVirtualTuple(slot);
	range_record_read(st, ps, msg);
	st->cur_partition = msg->partition;
	st->cur_offset = msg->offset;
	return true;
}

TupleTableSlot *
kafkaIterateForeignScan(ForeignScanState *node)
{
	KafkaScanState *st = node->fdw_state;

	if (st->eval)
		return kafka_eval_next(node, st);
	return kafka_scan_next(node, st);
}

/*
 * The next record of the scan in the scan slot, or an empty slot at the
 * end.  With st->hold_produced, the record's message is left in st->held
 * (for the caller to destroy) instead of being destroyed.
 */
TupleTableSlot *
kafka_scan_next(ForeignScanState *node, KafkaScanState *st)
{
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!st->started)
	{
		if (kafka_parallel_detached(st))
			return ExecClearTuple(slot);	/* the parallel scan was shut down */
		if (kafka_parallel_active(st))
			participant_start(st);
		else
			scan_start(node, st);
	}

	for (;;)
	{
		ssize_t		n;
		int			queued_before;
		int			queued_after;
		int			queued_peak;

		while (st->batch_pos < st->batch_len)
		{
			bool		produced;

			st->current = st->batch[st->batch_pos++];
			produced = handle_message(st, st->current, slot);
			if (produced && st->hold_produced)
				st->held = st->current;
			else
				rd_kafka_message_destroy(st->current);
			st->current = NULL;
			if (produced)
				return slot;
		}
		st->batch_len = st->batch_pos = 0;

		if (st->par && st->conn)
			participant_refill(st);
		if (st->nactive == 0)
			return ExecClearTuple(slot);

		CHECK_FOR_INTERRUPTS();

		/*
		 * Take what is there, and see whether the queue was at librdkafka's
		 * limits (then its fetchers are parked) and is now half drained:
		 * see wake_fetchers().  The length before the take counts too: the
		 * take silently drops outdated messages (of ranges already stopped,
		 * prefetched past their end), which count against the limits until
		 * then.  Bytes are estimated with the mean size of the last batch.
		 */
		queued_before = rd_kafka_queue_length(st->queue);
		n = rd_kafka_consume_batch_queue(st->queue, 0, st->batch, KAFKA_BATCH_SIZE);
		queued_after = rd_kafka_queue_length(st->queue);
		if (n > 0)
		{
			double		bytes = 0;
			int			messages = 0;

			for (ssize_t i = 0; i < n; i++)
				if (!st->batch[i]->err)
				{
					bytes += st->batch[i]->len + st->batch[i]->key_len;
					messages++;
				}
			if (messages > 0)
				st->mean_message_bytes = bytes / messages;
		}
		queued_peak = Max(queued_before, queued_after + (int) Max(n, 0));
		if (queue_at_limit(st, queued_peak))
			st->queue_was_full = true;
		if (queue_at_limit(st, 2.0 * queued_peak))
			st->queue_was_high = true;
		if (st->queue_was_full && !queue_at_limit(st, 2.0 * queued_after))
			wake_fetchers(st);
		if (n == 0)
		{
			rd_kafka_message_t *m;

			/*
			 * The queue is empty although records are due (the ranges end at
			 * or below the watermarks).  If it was at least half full since
			 * the last wake-up, the fetchers may be parked at a limit this
			 * loop did not see (a message taken by the single-message wait
			 * below is not counted): wake them once after a short silence.
			 * Otherwise the wait is a fetch round trip, however long.
			 */
			m = rd_kafka_consume_queue(st->queue, st->queue_was_high ? KAFKA_STALL_MS : KAFKA_POLL_MS);
			if (m == NULL && st->queue_was_high)
				wake_fetchers(st);
			if (m)
			{
				st->batch[0] = m;
				n = 1;
			}
		}
		if (n < 0)
			kafka_report_error(st->conn, rd_kafka_last_error(), st->opts.topic);
		if (n == 0)
		{
			kafka_check_connection_alive(st->conn, st->last_progress, st->opts.topic);
			continue;
		}
		st->batch_len = (int) n;
		st->last_progress = GetCurrentTimestamp();
	}
}

/* Stop the fetchers of the ranges still being read; must not throw. */
static void
stop_fetchers(KafkaScanState *st)
{
	for (int i = 0; i < st->nparts; i++)
	{
		if (st->parts[i].started && st->rkt)
			rd_kafka_consume_stop(st->rkt, st->parts[i].partition);
		st->parts[i].started = false;
	}
}

/*
 * The ranges were flushed (parallel.c has handed their counts on): stop
 * their fetchers, which an early end (a LIMIT above the Gather) leaves
 * running on the pooled handle, and forget them, so that neither a rescan
 * nor the cleanup counts them again.
 */
void
kafka_scan_forget_ranges(KafkaScanState *st)
{
	stop_fetchers(st);
	st->nparts = st->nactive = 0;
	st->has_pending = false;
}

/*
 * Release everything librdkafka-side.  Runs from EndForeignScan, from
 * ReScan, and as the reset callback of the scan's memory context when the
 * query errors out; must not throw, and must not touch shared memory (which
 * may be gone on error).
 */
static void
scan_cleanup(void *arg)
{
	KafkaScanState *st = (KafkaScanState *) arg;

	if (st->current)
	{
		rd_kafka_message_destroy(st->current);
		st->current = NULL;
	}
	if (st->held)
	{
		rd_kafka_message_destroy(st->held);
		st->held = NULL;
	}
	if (st->eval)
		kafka_eval_reset(st);
	while (st->batch_pos < st->batch_len)
		rd_kafka_message_destroy(st->batch[st->batch_pos++]);
	st->batch_pos = st->batch_len = 0;

	stop_fetchers(st);
	/* before the handle goes back to the pool: the thread uses it */
	if (st->waker)
	{
		kafka_waker_stop(st->waker);
		st->waker = NULL;
	}
	if (st->queue)
	{
		rd_kafka_queue_destroy(st->queue);
		st->queue = NULL;
	}
	if (st->rkt)
	{
		rd_kafka_topic_destroy(st->rkt);
		st->rkt = NULL;
	}
	if (st->conn)
	{
		kafka_connection_release(st->conn);
		st->conn = NULL;
	}
}

/*
 * Warn once per scan about records skipped under on_error 'skip'.  A
 * parallel worker does not warn: the leader warns for all participants.
 */
static void
report_skipped(KafkaScanState *st)
{
	if (st->skipped > 0 && !IsParallelWorker())
		ereport(WARNING,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("skipped " INT64_FORMAT " Kafka record(s) of topic \"%s\" that could not be converted",
						st->skipped, st->opts.topic),
				 errdetail("First skipped record: %s", st->first_skip),
				 errhint("%s", skip_hints[st->first_skip_kind][1])));
}

/*
 * End of a scan's run before a rescan or the end: hand on the counts, and in
 * a parallel scan let parallel.c collect what all participants read.
 */
static void
scan_finish(KafkaScanState *st)
{
	kafka_scan_flush(st);
	if (st->par)
		kafka_parallel_finish(st);
}

/*
 * Called in every participant when the plan's execution is complete (and
 * before the parallel query's shared memory goes away).
 */
void
kafkaShutdownForeignScan(ForeignScanState *node)
{
	KafkaScanState *st = node->fdw_state;

	if (st != NULL)
		scan_finish(st);
}

void
kafkaReScanForeignScan(ForeignScanState *node)
{
	KafkaScanState *st = node->fdw_state;

	/*
	 * In a parallel scan, ReInitializeDSMForeignScan has already collected
	 * the previous run and published the new work; only local state is
	 * reset here.
	 */
	if (!st->par)
		kafka_scan_flush(st);
	scan_cleanup(st);
	report_skipped(st);
	MemoryContextReset(st->run_cxt);	/* runs and unregisters the callback */
	MemoryContextRegisterResetCallback(st->run_cxt, &st->cleanup_cb);
	st->parts = NULL;
	st->part_index = NULL;
	st->part_index_size = 0;
	st->started = false;
	if (!st->par)
		st->have_bounds = false;
	st->nparts = st->nactive = 0;
	st->records = st->bytes = st->skipped = 0;
	st->has_pending = false;
	st->fetcher_wakeups = 0;
	st->queue_was_full = false;
	st->queue_was_high = false;
	st->mean_message_bytes = 0;
	if (st->first_skip)
		pfree(st->first_skip);
	st->first_skip = NULL;
}

void
kafkaEndForeignScan(ForeignScanState *node)
{
	KafkaScanState *st = node->fdw_state;

	if (st == NULL)
		return;
	scan_finish(st);
	scan_cleanup(st);
	report_skipped(st);
	MemoryContextDelete(st->scan_cxt);
	node->fdw_state = NULL;
}

/*
 * EXPLAIN: the topic, the partitions and offsets the conditions allow, and
 * with ANALYZE what was read.  Before the scan has run (plain EXPLAIN), only
 * constant conditions are folded; others are shown as decided at run time.
 */
void
kafkaExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	KafkaScanState *st = node->fdw_state;
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	KafkaScanBounds b;
	bool		runtime = false;

	ExplainPropertyText("Kafka Topic", st->opts.topic, es);

	if (st->have_bounds)
		b = st->bounds;
	else
	{
		ListCell   *lc1,
				   *lc2,
				   *lc3;

		kafka_bounds_init(&b);
		forthree(lc1, st->cond_columns, lc2, st->cond_ops, lc3, plan->fdw_exprs)
		{
			Node	   *expr = lfirst(lc3);

			if (IsA(expr, Const))
				kafka_bounds_apply(&b, lfirst_int(lc1), lfirst_int(lc2),
								   ((Const *) expr)->constvalue,
								   ((Const *) expr)->constisnull,
								   ((Const *) expr)->consttype);
			else
				runtime = true;
		}
	}

	ExplainPropertyText("Kafka Partitions", kafka_bounds_describe_partitions(&b), es);
	ExplainPropertyText("Kafka Offsets", kafka_bounds_describe_offsets(&b), es);
	if (b.has_timestamp && !b.empty)
	{
		TimestampTz ts = (TimestampTz) b.timestamp_lo_ms * 1000 -
			((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);

		ExplainPropertyText("Kafka Timestamp",
							psprintf(">= %s", timestamptz_to_str(ts)), es);
	}
	if (runtime)
		ExplainPropertyText("Kafka Run-Time Conditions",
							"evaluated when the scan starts", es);

	if (!es->analyze)
		return;
	if (st->par)
	{
		kafka_parallel_explain(st, es);
		return;
	}
	if (st->started)
	{
		ExplainPropertyInteger("Kafka Records", NULL, st->records, es);
		ExplainPropertyInteger("Kafka Bytes", NULL, st->bytes, es);
		if (es->verbose && st->fetcher_wakeups > 0)
			ExplainPropertyInteger("Kafka Fetcher Wake-ups", NULL, st->fetcher_wakeups, es);
		if (st->skipped > 0)
			ExplainPropertyInteger("Kafka Skipped Records", NULL, st->skipped, es);
		if (es->verbose)
		{
			for (int i = 0; i < st->nparts; i++)
			{
				KafkaPartitionScan *ps = &st->parts[i];

				ExplainPropertyText(psprintf("Kafka Partition %d", ps->partition),
									psprintf("offsets [" INT64_FORMAT ", " INT64_FORMAT
											 ") of [" INT64_FORMAT ", " INT64_FORMAT "): " INT64_FORMAT " records",
											 ps->start, ps->end, ps->low, ps->high,
											 ps->records),
									es);
			}
		}
	}
}

/*-------------------------------------------------------------------------
 *
 * parallel.c
 *		Parallel Foreign Scan of a Kafka topic: the work queue in shared
 *		memory, and the FDW's parallel callbacks.
 *
 * Design and invariants:
 *
 * - Partitions, and ranges of large partitions, are the units of work.  The
 *   LEADER decides all of them, once per run, when the Gather sets up its
 *   workers (InitializeDSMForeignScan; ReInitializeDSMForeignScan before a
 *   rescan): it evaluates the pushed-down conditions (parameters, including
 *   those of init plans, are available there), captures the watermarks, or
 *   in a streaming refresh takes the ranges the refresh decided
 *   (kafka_active_stream, which only the leader has), and publishes an array
 *   of work items before any worker starts.  Every participant therefore
 *   reads the same snapshot, and the rows are those of a serial scan.  Plain
 *   EXPLAIN never gets here: these callbacks run only when a Gather executes.
 *
 * - Participants (the workers and, if it participates, the leader) claim
 *   items with an atomic counter and read them with the serial scan's
 *   machinery (scan.c), each through its own librdkafka handle from its
 *   backend's pool; a worker's handles are destroyed when it exits
 *   (on_shmem_exit in connection.c), on error after the abort has stopped
 *   its fetchers.
 *
 * - A partition with more records than the range size is cut into ranges,
 *   so that one hot partition does not serialise the scan: the size is
 *   kafka_fdw.parallel_range_size, or by default an eighth of a
 *   participant's share of the records, at least KAFKA_MIN_RANGE_RECORDS.
 *   Items are ordered round-robin over the partitions.  A partition whose
 *   start is emulated by timestamp (skip_before_ms) is never cut: the
 *   emulation must read it from its start.
 *
 * - The item array lives in the parallel query's DSA, since its size is
 *   known only after the watermarks and changes on rescans.  The node's
 *   fixed DSM chunk holds the claim counter, the per-participant statistics
 *   and, in a streaming refresh, a bounded log of skipped records.  (Without
 *   a DSA no worker can be launched, and the leader keeps the items.)
 *
 * - A participant writes the counts of an item, under the spinlock, when it
 *   has finished the range and at shutdown.  The leader collects them once
 *   the run is complete: in ShutdownForeignScan (which PostgreSQL calls
 *   after the Gather has read everything, hence after the workers have
 *   finished, and before the DSM is detached), else in EndForeignScan or
 *   before a rescan.  It adds them to the refresh's KafkaStreamContext
 *   (per-partition statistics and skipped records: the refresh logs them
 *   and stores the offsets it decided, exactly once whatever the number of
 *   workers) and keeps them for EXPLAIN ANALYZE and the skip warning, which
 *   only the leader gives.  If the Gather stops early (a LIMIT above it),
 *   the leader collects what had been counted by then.
 *
 * - Nothing here runs on error paths: the scan's cleanup callback (scan.c)
 *   only releases librdkafka resources, never touches shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "commands/explain.h"
#include "foreign/fdwapi.h"
#include "optimizer/optimizer.h"
#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/dsa.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "scan.h"

/*
 * Automatic range size: this many ranges per participant, twice what one
 * reads at once, so that half of the work is still handed out dynamically
 * after every participant has taken its first ranges.
 */
#define KAFKA_RANGES_PER_PARTICIPANT (2 * KAFKA_PARALLEL_WINDOW)
#define KAFKA_MAX_WORK_ITEMS 65536	/* ranges are made bigger beyond this */
#define KAFKA_SKIP_TEXT_LEN 512
#define KAFKA_SKIP_REASON_LEN 256

int			kafka_parallel_range_size = 0;

/* One unit of work: a range [start, end) of one partition. */
typedef struct KafkaWorkItem
{
	int32		partition;
	int32		range;			/* index in the leader's captured ranges */
	int32		stream_index;	/* index in the refresh's parts, or -1 */
	int32		participant;	/* who claimed it; -1 until claimed */
	int64		low;			/* the partition's watermarks, for EXPLAIN */
	int64		high;
	int64		start;
	int64		end;
	int64		skip_before_ms;
	KafkaRecordFingerprint verify;	/* the first item of a refresh's range: see stream.h */
	/* counts, written under the mutex by the participant that read it */
	int64		records;
	int64		bytes;
	int64		skipped;
	int64		ts_min_ms;
	int64		ts_max_ms;
	KafkaRecordFingerprint last;	/* the last record read */
} KafkaWorkItem;

/* What one participant did, for EXPLAIN ANALYZE. */
typedef struct KafkaParticipantStats
{
	bool		attached;		/* started reading */
	int32		ranges;			/* items claimed */
	int64		records;
	int64		bytes;
	int64		skipped;
	int64		wakeups;
} KafkaParticipantStats;

/* A record skipped in a streaming refresh, with fixed-size prefixes. */
typedef struct KafkaSharedSkip
{
	int32		partition;
	int64		offset;
	int64		timestamp_ms;
	char		timestamp_type;
	int16		key_len;		/* -1: null key */
	int16		value_len;		/* -1: null value */
	char		key[KAFKA_ERROR_PREFIX_BYTES];
	char		value[KAFKA_ERROR_PREFIX_BYTES];
	char		reason[KAFKA_SKIP_REASON_LEN];
} KafkaSharedSkip;

/* The node's chunk of the parallel query's DSM. */
typedef struct KafkaParallelShared
{
	slock_t		mutex;			/* protects the counts, skips, participants */
	int			nparticipants;	/* planned workers + the leader (last) */
	int			max_skips;		/* capacity of the skip log; 0 outside refreshes */
	/* the work, published by the leader before it launches workers */
	dsa_pointer items_dp;		/* InvalidDsaPointer: no items, or no DSA */
	int			nitems;
	int32		max_partition;	/* -1 if no items */
	pg_atomic_uint32 next_item;
	/* skipped records */
	int			nskips;			/* entries of the skip log in use */
	bool		has_first_skip;
	int32		first_skip_partition;
	int64		first_skip_offset;
	KafkaSkipKind first_skip_kind;
	char		first_skip[KAFKA_SKIP_TEXT_LEN];
	KafkaParticipantStats participants[FLEXIBLE_ARRAY_MEMBER];
	/* followed by KafkaSharedSkip[max_skips], see shared_skips() */
} KafkaParallelShared;

/* A backend's view of the parallel scan (st->par). */
struct KafkaParallelState
{
	KafkaParallelShared *shared;	/* NULL once the leader has detached */
	KafkaWorkItem *items;
	int			nitems;
	int			participant;	/* index in shared->participants */
	bool		leader;
	bool		exhausted;		/* the counter ran past the items */
	bool		finished;		/* this participant's totals written */
	bool		attached;
	/* leader only */
	MemoryContext cxt;			/* the captured run; reset at each publish */
	KafkaPartitionScan *ranges;	/* captured ranges, before cutting */
	int			nranges;
	bool		collected;
	int			nparticipants;
	KafkaParticipantStats *stats;	/* after collecting */
	int64	   *range_records;	/* per captured range, after collecting */
	int		   *range_items;	/* items per captured range */
};

static Size
participants_end(int nparticipants)
{
	return MAXALIGN(add_size(offsetof(KafkaParallelShared, participants),
							 mul_size(nparticipants, sizeof(KafkaParticipantStats))));
}

static Size
shared_size(int nparticipants, int max_skips)
{
	return add_size(participants_end(nparticipants),
					mul_size(max_skips, sizeof(KafkaSharedSkip)));
}

static KafkaSharedSkip *
shared_skips(KafkaParallelShared *sh)
{
	return (KafkaSharedSkip *) ((char *) sh + participants_end(sh->nparticipants));
}

/* Does this scan feed the streaming refresh now running in this backend? */
static bool
feeds_stream(ForeignScanState *node)
{
	return kafka_scan_stream_context(node) != NULL;
}

bool
kafkaIsForeignScanParallelSafe(PlannerInfo *root, RelOptInfo *rel, RangeTblEntry *rte)
{
	/*
	 * Workers can read a topic: each gets its own handle, and the catalog
	 * lookups of options and user mappings work in workers.  Only partial
	 * paths are actually marked parallel safe (see planner.c).
	 */
	return true;
}

Size
kafkaEstimateDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt)
{
	return shared_size(pcxt->nworkers + 1,
					   feeds_stream(node) ? KAFKA_MAX_LOGGED_SKIPS : 0);
}

/* Clear the counts and skips of the shared state (not the work). */
static void
shared_reset(KafkaParallelShared *sh)
{
	sh->nskips = 0;
	sh->has_first_skip = false;
	sh->first_skip[0] = '\0';
	memset(sh->participants, 0, sizeof(KafkaParticipantStats) * sh->nparticipants);
}

/* Where range [0, len) is cut for piece r of k. */
static int64
cut(int64 len, int64 k, int64 r)
{
	return (len / k) * r + Min(r, len % k);
}

/*
 * Evaluate the conditions and capture the ranges of this run, with a pooled
 * handle released on every path.
 */
static void
capture(ForeignScanState *node, KafkaScanState *st)
{
	KafkaParallelState *par = st->par;
	KafkaConnection *conn;

	kafka_scan_evaluate_bounds(node, st);
	if (st->bounds.empty)
		return;
	conn = kafka_connection_acquire(st->opts.serverid, st->userid);
	PG_TRY();
	{
		par->nranges = kafka_scan_capture(node, st, conn, &par->ranges);
	}
	PG_FINALLY();
	{
		kafka_connection_release(conn);
	}
	PG_END_TRY();
}

/*
 * Capture the ranges of this run and publish them as work items.  Leader
 * only, before workers are launched.
 */
static void
publish_work(ForeignScanState *node, KafkaScanState *st, int nworkers)
{
	KafkaParallelState *par = st->par;
	KafkaParallelShared *sh = par->shared;
	dsa_area   *area = node->ss.ps.state->es_query_dsa;
	MemoryContext old;
	int64		total = 0;
	int64		chunk;
	int			participants = nworkers + (parallel_leader_participation ? 1 : 0);
	int		   *pieces;
	int			nitems;
	int			maxpieces = 0;
	int32		maxpart = -1;
	KafkaWorkItem *items = NULL;

	MemoryContextReset(par->cxt);
	par->ranges = NULL;
	par->nranges = 0;
	par->collected = false;
	par->stats = NULL;
	par->exhausted = par->finished = par->attached = false;
	old = MemoryContextSwitchTo(par->cxt);

	capture(node, st);

	/* how big a range may be */
	for (int i = 0; i < par->nranges; i++)
		if (par->ranges[i].end > par->ranges[i].start)
			total += par->ranges[i].end - par->ranges[i].start;
	if (kafka_parallel_range_size > 0)
		chunk = kafka_parallel_range_size;
	else
		chunk = Max(KAFKA_MIN_RANGE_RECORDS,
					total / (Max(participants, 1) * KAFKA_RANGES_PER_PARTICIPANT) + 1);
	pieces = palloc0(sizeof(int) * Max(par->nranges, 1));
	for (;;)
	{
		nitems = 0;
		for (int i = 0; i < par->nranges; i++)
		{
			KafkaPartitionScan *r = &par->ranges[i];
			int64		len = r->end - r->start;

			pieces[i] = len <= 0 ? 0 :
				r->skip_before_ms >= 0 ? 1 : (int) Min((len + chunk - 1) / chunk, INT_MAX / 2);
			nitems += pieces[i];
			maxpieces = Max(maxpieces, pieces[i]);
			if (nitems > KAFKA_MAX_WORK_ITEMS)
				break;
		}
		if (nitems <= KAFKA_MAX_WORK_ITEMS)
			break;
		chunk *= 2;
		maxpieces = 0;
	}

	/* the items, round-robin over the partitions */
	if (nitems > 0)
	{
		Size		size = mul_size(nitems, sizeof(KafkaWorkItem));
		int			n = 0;

		if (area != NULL)
		{
			sh->items_dp = dsa_allocate_extended(area, size, DSA_ALLOC_HUGE);
			items = dsa_get_address(area, sh->items_dp);
		}
		else
			items = palloc(size);
		for (int round = 0; round < maxpieces; round++)
		{
			for (int i = 0; i < par->nranges; i++)
			{
				KafkaPartitionScan *r = &par->ranges[i];
				KafkaWorkItem *it;
				int64		len = r->end - r->start;

				if (round >= pieces[i])
					continue;
				it = &items[n++];
				memset(it, 0, sizeof(KafkaWorkItem));
				it->partition = r->partition;
				it->range = i;
				it->stream_index = r->stream_index;
				it->participant = -1;
				it->low = r->low;
				it->high = r->high;
				it->start = r->start + cut(len, pieces[i], round);
				it->end = r->start + cut(len, pieces[i], round + 1);
				it->skip_before_ms = r->skip_before_ms;
				it->verify = r->verify;
				if (round > 0)
					it->verify.offset = -1;
				it->last.offset = -1;
				it->ts_min_ms = it->ts_max_ms = -1;
				maxpart = Max(maxpart, r->partition);
			}
		}
		Assert(n == nitems);
	}
	par->items = items;
	par->nitems = nitems;

	shared_reset(sh);
	sh->nitems = nitems;
	sh->max_partition = maxpart;
	pg_atomic_write_u32(&sh->next_item, 0);
	MemoryContextSwitchTo(old);
}

void
kafkaInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt,
							  void *coordinate)
{
	KafkaScanState *st = node->fdw_state;
	KafkaParallelShared *sh = coordinate;

	if (st->par == NULL)
	{
		st->par = MemoryContextAllocZero(st->scan_cxt, sizeof(KafkaParallelState));
		st->par->cxt = AllocSetContextCreate(st->scan_cxt, "kafka_fdw parallel work",
											 ALLOCSET_SMALL_SIZES);
	}
	memset(sh, 0, participants_end(pcxt->nworkers + 1));
	SpinLockInit(&sh->mutex);
	sh->nparticipants = pcxt->nworkers + 1;
	sh->max_skips = feeds_stream(node) ? KAFKA_MAX_LOGGED_SKIPS : 0;
	sh->items_dp = InvalidDsaPointer;
	pg_atomic_init_u32(&sh->next_item, 0);

	st->par->shared = sh;
	st->par->leader = true;
	st->par->participant = pcxt->nworkers;
	publish_work(node, st, pcxt->nworkers);
}

/* The leader's totals: the participants' counts, the items', the skips. */
static void
collect(KafkaScanState *st)
{
	KafkaParallelState *par = st->par;
	KafkaParallelShared *sh = par->shared;
	KafkaStreamContext *ctx = st->stream;
	KafkaWorkItem *items;
	KafkaParticipantStats *stats;
	KafkaSharedSkip *skips = NULL;
	int			nskips;
	bool		has_first;
	int32		first_part = 0;
	int64		first_off = 0;
	KafkaSkipKind first_kind = KAFKA_SKIP_VALUE;
	char		first_text[KAFKA_SKIP_TEXT_LEN];
	MemoryContext old;

	if (sh == NULL || par->collected)
		return;

	old = MemoryContextSwitchTo(par->cxt);
	items = palloc(sizeof(KafkaWorkItem) * Max(par->nitems, 1));
	stats = palloc(sizeof(KafkaParticipantStats) * sh->nparticipants);
	if (sh->max_skips > 0)
		skips = palloc(sizeof(KafkaSharedSkip) * sh->max_skips);

	SpinLockAcquire(&sh->mutex);
	if (par->nitems > 0)
		memcpy(items, par->items, sizeof(KafkaWorkItem) * par->nitems);
	memcpy(stats, sh->participants, sizeof(KafkaParticipantStats) * sh->nparticipants);
	nskips = sh->nskips;
	if (nskips > 0)
		memcpy(skips, shared_skips(sh), sizeof(KafkaSharedSkip) * nskips);
	has_first = sh->has_first_skip;
	if (has_first)
	{
		first_part = sh->first_skip_partition;
		first_off = sh->first_skip_offset;
		first_kind = sh->first_skip_kind;
		memcpy(first_text, sh->first_skip, KAFKA_SKIP_TEXT_LEN);
	}
	SpinLockRelease(&sh->mutex);

	par->nparticipants = sh->nparticipants;
	par->stats = stats;
	par->range_records = palloc0(sizeof(int64) * Max(par->nranges, 1));
	par->range_items = palloc0(sizeof(int) * Max(par->nranges, 1));
	st->records = st->bytes = st->skipped = 0;
	for (int i = 0; i < par->nitems; i++)
	{
		KafkaWorkItem *it = &items[i];

		st->records += it->records;
		st->bytes += it->bytes;
		st->skipped += it->skipped;
		par->range_records[it->range] += it->records;
		par->range_items[it->range]++;
	}
	MemoryContextSwitchTo(old);

	if (has_first)
	{
		first_text[KAFKA_SKIP_TEXT_LEN - 1] = '\0';
		kafka_scan_note_skip(st, first_part, first_off, first_text, first_kind);
	}

	/* a streaming refresh: per-partition statistics and the skipped records */
	if (ctx)
	{
		for (int i = 0; i < par->nitems; i++)
		{
			KafkaWorkItem *it = &items[i];
			KafkaStreamPartition *sp;

			if (it->stream_index < 0)
				continue;
			sp = &ctx->parts[it->stream_index];
			sp->scanned_rows += it->records;
			sp->skipped_rows += it->skipped;
			sp->scanned_bytes += it->bytes;
			ctx->nskipped += it->skipped;
			if (it->ts_min_ms >= 0 && (sp->ts_min_ms < 0 || it->ts_min_ms < sp->ts_min_ms))
				sp->ts_min_ms = it->ts_min_ms;
			if (it->ts_max_ms > sp->ts_max_ms)
				sp->ts_max_ms = it->ts_max_ms;
			if (it->last.offset > sp->last.offset)
				sp->last = it->last;
		}
		old = MemoryContextSwitchTo(ctx->cxt);
		for (int i = 0; i < nskips && list_length(ctx->skipped) < KAFKA_MAX_LOGGED_SKIPS; i++)
		{
			KafkaSharedSkip *e = &skips[i];
			KafkaSkippedRecord *r = palloc(sizeof(KafkaSkippedRecord));

			r->partition = e->partition;
			r->offset = e->offset;
			r->timestamp_type = e->timestamp_type;
			r->timestamp_ms = e->timestamp_ms;
			e->reason[KAFKA_SKIP_REASON_LEN - 1] = '\0';
			r->reason = pstrdup(e->reason);
			r->key_prefix = NULL;
			r->value_prefix = NULL;
			if (e->key_len >= 0)
			{
				r->key_prefix = palloc(VARHDRSZ + e->key_len);
				SET_VARSIZE(r->key_prefix, VARHDRSZ + e->key_len);
				memcpy(VARDATA(r->key_prefix), e->key, e->key_len);
			}
			if (e->value_len >= 0)
			{
				r->value_prefix = palloc(VARHDRSZ + e->value_len);
				SET_VARSIZE(r->value_prefix, VARHDRSZ + e->value_len);
				memcpy(VARDATA(r->value_prefix), e->value, e->value_len);
			}
			ctx->skipped = lappend(ctx->skipped, r);
		}
		MemoryContextSwitchTo(old);
	}
	if (skips)
		pfree(skips);
	pfree(items);
	par->collected = true;
}

/* Write this participant's own totals (once per run). */
static void
participant_finish(KafkaScanState *st)
{
	KafkaParallelState *par = st->par;
	KafkaParallelShared *sh = par->shared;

	if (sh == NULL || par->finished)
		return;
	SpinLockAcquire(&sh->mutex);
	sh->participants[par->participant].wakeups += st->fetcher_wakeups;
	SpinLockRelease(&sh->mutex);
	par->finished = true;
}

void
kafkaReInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt,
								void *coordinate)
{
	KafkaScanState *st = node->fdw_state;
	KafkaParallelShared *sh = coordinate;
	dsa_area   *area = node->ss.ps.state->es_query_dsa;

	/* the previous run is complete (its workers have finished): collect it */
	st->par->shared = sh;
	kafka_scan_flush(st);
	participant_finish(st);
	collect(st);
	kafka_scan_forget_ranges(st);	/* flushed: never merge them into new items */

	if (DsaPointerIsValid(sh->items_dp) && area != NULL)
		dsa_free(area, sh->items_dp);
	sh->items_dp = InvalidDsaPointer;
	st->par->items = NULL;
	publish_work(node, st, pcxt->nworkers);
}

void
kafkaInitializeWorkerForeignScan(ForeignScanState *node, shm_toc *toc,
								 void *coordinate)
{
	KafkaScanState *st = node->fdw_state;
	KafkaParallelShared *sh = coordinate;
	KafkaParallelState *par;

	par = MemoryContextAllocZero(st->scan_cxt, sizeof(KafkaParallelState));
	par->shared = sh;
	par->participant = ParallelWorkerNumber;
	par->nitems = sh->nitems;
	if (sh->nitems > 0)
	{
		if (!DsaPointerIsValid(sh->items_dp) || node->ss.ps.state->es_query_dsa == NULL)
			elog(ERROR, "parallel Kafka scan without shared work items");
		par->items = dsa_get_address(node->ss.ps.state->es_query_dsa, sh->items_dp);
	}
	if (par->participant < 0 || par->participant >= sh->nparticipants - 1)
		elog(ERROR, "parallel worker number %d out of range", par->participant);
	st->par = par;
}

bool
kafka_parallel_active(KafkaScanState *st)
{
	return st->par != NULL && st->par->shared != NULL;
}

bool
kafka_parallel_detached(KafkaScanState *st)
{
	return st->par != NULL && st->par->shared == NULL;
}

int32
kafka_parallel_max_partition(KafkaScanState *st)
{
	return st->par->shared ? st->par->shared->max_partition : -1;
}

/*
 * Claim the next work item, as a range for this participant.  Returns false
 * when there is none left.
 */
bool
kafka_parallel_claim(KafkaScanState *st, KafkaPartitionScan *range)
{
	KafkaParallelState *par = st->par;
	KafkaParallelShared *sh = par->shared;
	uint32		i;
	KafkaWorkItem *it;

	if (sh == NULL || par->exhausted)
		return false;
	if (!par->attached)
	{
		SpinLockAcquire(&sh->mutex);
		sh->participants[par->participant].attached = true;
		SpinLockRelease(&sh->mutex);
		par->attached = true;
	}
	i = pg_atomic_fetch_add_u32(&sh->next_item, 1);
	if (i >= (uint32) par->nitems)
	{
		par->exhausted = true;
		return false;
	}
	it = &par->items[i];
	memset(range, 0, sizeof(KafkaPartitionScan));
	range->partition = it->partition;
	range->low = it->low;
	range->high = it->high;
	range->start = it->start;
	range->end = it->end;
	range->skip_before_ms = it->skip_before_ms;
	range->verify = it->verify;
	range->stream_index = it->stream_index;
	range->item = (int) i;
	range->last_offset = -1;
	range->last.offset = -1;
	range->ts_min_ms = range->ts_max_ms = -1;

	SpinLockAcquire(&sh->mutex);
	it->participant = par->participant;
	sh->participants[par->participant].ranges++;
	SpinLockRelease(&sh->mutex);
	return true;
}

/* Add what a range read since its last flush to its work item. */
void
kafka_parallel_range_done(KafkaScanState *st, KafkaPartitionScan *ps,
						  int64 records, int64 bytes, int64 skipped)
{
	KafkaParallelState *par = st->par;
	KafkaParallelShared *sh = par->shared;
	KafkaWorkItem *it;
	KafkaParticipantStats *me;

	if (sh == NULL || par->items == NULL || ps->item < 0 || ps->item >= par->nitems)
		return;
	it = &par->items[ps->item];
	me = &sh->participants[par->participant];
	SpinLockAcquire(&sh->mutex);
	it->records += records;
	it->bytes += bytes;
	it->skipped += skipped;
	if (ps->ts_min_ms >= 0 && (it->ts_min_ms < 0 || ps->ts_min_ms < it->ts_min_ms))
		it->ts_min_ms = ps->ts_min_ms;
	if (ps->ts_max_ms > it->ts_max_ms)
		it->ts_max_ms = ps->ts_max_ms;
	if (ps->last.offset > it->last.offset)
		it->last = ps->last;
	me->records += records;
	me->bytes += bytes;
	me->skipped += skipped;
	SpinLockRelease(&sh->mutex);
}

/*
 * A record skipped by a participant: keep it if it is the lowest so far
 * (for the leader's warning) and, in a refresh, log it while there is room.
 */
void
kafka_parallel_log_skip(KafkaScanState *st, const rd_kafka_message_t *msg,
						const char *reason, const char *first_skip_text,
						KafkaSkipKind kind)
{
	KafkaParallelShared *sh = st->par->shared;
	KafkaSharedSkip e;
	rd_kafka_timestamp_type_t tstype;

	if (sh == NULL)
		return;
	/* prepared outside the spinlock */
	memset(&e, 0, sizeof(e));
	if (sh->max_skips > 0)
	{
		e.partition = msg->partition;
		e.offset = msg->offset;
		e.timestamp_ms = rd_kafka_message_timestamp(msg, &tstype);
		e.timestamp_type = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 'C' :
			tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 'L' : 'U';
		if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
			e.timestamp_ms = -1;
		e.key_len = msg->key ? (int16) Min(msg->key_len, KAFKA_ERROR_PREFIX_BYTES) : -1;
		e.value_len = msg->payload ? (int16) Min(msg->len, KAFKA_ERROR_PREFIX_BYTES) : -1;
		if (e.key_len > 0)
			memcpy(e.key, msg->key, e.key_len);
		if (e.value_len > 0)
			memcpy(e.value, msg->payload, e.value_len);
		strlcpy(e.reason, reason, sizeof(e.reason));
	}

	SpinLockAcquire(&sh->mutex);
	if (!sh->has_first_skip || msg->partition < sh->first_skip_partition ||
		(msg->partition == sh->first_skip_partition && msg->offset < sh->first_skip_offset))
	{
		sh->has_first_skip = true;
		sh->first_skip_partition = msg->partition;
		sh->first_skip_offset = msg->offset;
		sh->first_skip_kind = kind;
		strlcpy(sh->first_skip, first_skip_text, sizeof(sh->first_skip));
	}
	if (sh->nskips < sh->max_skips)
		shared_skips(sh)[sh->nskips++] = e;
	SpinLockRelease(&sh->mutex);
}

/*
 * The run is complete for this participant (ShutdownForeignScan or
 * EndForeignScan, after scan.c has flushed its ranges).  The leader collects
 * everyone's counts and lets go of the shared memory, which the Gather is
 * about to detach.
 */
void
kafka_parallel_finish(KafkaScanState *st)
{
	KafkaParallelState *par = st->par;

	if (par->shared == NULL)
		return;
	participant_finish(st);
	if (par->leader)
	{
		collect(st);
		par->shared = NULL;
		par->items = NULL;
		kafka_scan_forget_ranges(st);	/* flushed: a rescan must not add them again */
	}
}

/* EXPLAIN ANALYZE of a parallel scan, in the leader, after collecting. */
void
kafka_parallel_explain(KafkaScanState *st, ExplainState *es)
{
	KafkaParallelState *par = st->par;
	int64		wakeups = 0;

	if (!par->leader || !par->collected)
		return;
	for (int i = 0; i < par->nparticipants; i++)
		wakeups += par->stats[i].wakeups;

	ExplainPropertyInteger("Kafka Records", NULL, st->records, es);
	ExplainPropertyInteger("Kafka Bytes", NULL, st->bytes, es);
	if (es->verbose && wakeups > 0)
		ExplainPropertyInteger("Kafka Fetcher Wake-ups", NULL, wakeups, es);
	if (st->skipped > 0)
		ExplainPropertyInteger("Kafka Skipped Records", NULL, st->skipped, es);
	ExplainPropertyInteger("Kafka Ranges", NULL, par->nitems, es);

	/* per participant: workers by number, then the leader */
	if (es->format != EXPLAIN_FORMAT_TEXT)
		ExplainOpenGroup("Kafka Participants", "Kafka Participants", false, es);
	for (int i = 0; i < par->nparticipants; i++)
	{
		KafkaParticipantStats *p = &par->stats[i];
		bool		leader = (i == par->nparticipants - 1);
		char	   *who = leader ? pstrdup("Leader") : psprintf("Worker %d", i);

		if (!p->attached)
			continue;
		if (es->format == EXPLAIN_FORMAT_TEXT)
		{
			ExplainPropertyText(who,
								psprintf("Kafka Records: " INT64_FORMAT "  Kafka Bytes: " INT64_FORMAT
										 "  Kafka Ranges: %d",
										 p->records, p->bytes, p->ranges),
								es);
			continue;
		}
		ExplainOpenGroup("Kafka Participant", NULL, true, es);
		ExplainPropertyText("Participant", who, es);
		ExplainPropertyInteger("Kafka Records", NULL, p->records, es);
		ExplainPropertyInteger("Kafka Bytes", NULL, p->bytes, es);
		ExplainPropertyInteger("Kafka Ranges", NULL, p->ranges, es);
		if (p->skipped > 0)
			ExplainPropertyInteger("Kafka Skipped Records", NULL, p->skipped, es);
		ExplainCloseGroup("Kafka Participant", NULL, true, es);
	}
	if (es->format != EXPLAIN_FORMAT_TEXT)
		ExplainCloseGroup("Kafka Participants", "Kafka Participants", false, es);

	if (es->verbose)
	{
		for (int i = 0; i < par->nranges; i++)
		{
			KafkaPartitionScan *r = &par->ranges[i];

			ExplainPropertyText(psprintf("Kafka Partition %d", r->partition),
								psprintf("offsets [" INT64_FORMAT ", " INT64_FORMAT
										 ") of [" INT64_FORMAT ", " INT64_FORMAT "): " INT64_FORMAT
										 " records in %d range%s",
										 r->start, r->end, r->low, r->high,
										 par->range_records[i], par->range_items[i],
										 par->range_items[i] == 1 ? "" : "s"),
								es);
		}
	}
}

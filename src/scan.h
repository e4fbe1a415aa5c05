/*-------------------------------------------------------------------------
 *
 * scan.h
 *		The state of a kafka_fdw scan, shared by the fetch loop (scan.c) and
 *		the parallel work queue (parallel.c).  Internal to those two files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_SCAN_H
#define KAFKA_SCAN_H

#include "kafka_fdw.h"
#include "fetch_waker.h"
#include "record.h"
#include "scan_bounds.h"
#include "stream.h"

/*
 * One range of one partition: [start, end).  A serial scan has one per
 * partition; a participant of a parallel scan has a few at a time, claimed
 * from the shared work queue.
 */
typedef struct KafkaPartitionScan
{
	int32		partition;
	int64		low;			/* watermarks at scan start */
	int64		high;
	int64		start;			/* first offset to read */
	int64		end;			/* one past the last offset to read */
	int64		skip_before_ms; /* drop records until one is this recent; -1 */
	int			stream_index;	/* index in the refresh's parts, or -1 */
	int			item;			/* parallel: index of the work item, or -1 */
	bool		started;		/* fetcher running */
	bool		done;
	bool		flushed;		/* done, and its counts handed on */
	int64		last_offset;	/* offset of the last record seen, -1 if none */
	/* streaming refreshes: the record to check first, and the last one read */
	KafkaRecordFingerprint verify;
	KafkaRecordFingerprint last;
	/* what was read, counted by the participant that read it */
	int64		records;		/* records returned */
	int64		bytes;
	int64		skipped;
	int64		ts_min_ms;		/* record timestamps, for refreshes; -1 */
	int64		ts_max_ms;
	/* the part of the counts already handed on (see range_flush in scan.c) */
	int64		flushed_records;
	int64		flushed_bytes;
	int64		flushed_skipped;
} KafkaPartitionScan;

/* A participant's view of a parallel scan; see parallel.c. */
typedef struct KafkaParallelState KafkaParallelState;

typedef struct KafkaScanState
{
	/* set up by BeginForeignScan */
	KafkaTableOptions opts;
	KafkaColumn *columns;
	List	   *cond_columns;
	List	   *cond_ops;
	List	   *cond_states;	/* ExprState of each fdw_exprs entry */
	KafkaRecordConverter conv;
	MemoryContext scan_cxt;		/* lives until the scan ends */
	MemoryContext run_cxt;		/* one start of the scan: reset by rescans */
	MemoryContextCallback cleanup_cb;
	Oid			userid;

	/* set when the conditions have been evaluated */
	bool		have_bounds;
	KafkaScanBounds bounds;

	/* set up when this backend starts reading */
	bool		started;
	KafkaConnection *conn;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *queue;
	KafkaPartitionScan *parts;	/* serial: every partition; parallel: slots */
	int			nparts;
	int			nactive;		/* ranges started and not yet done */
	int		   *part_index;		/* partition id -> index in parts, or -1 */
	int			part_index_size;

	/* set when this scan feeds a streaming refresh (see stream.h) */
	KafkaStreamContext *stream;
	/* set on a streaming refresh's own scan node, also in parallel workers */
	bool		stream_node;
	struct KafkaRecordEval *eval;	/* the view's expressions (record_eval.c) */
	bool		hold_produced;	/* keep produced messages in 'held' */
	rd_kafka_message_t *held;	/* the message of the record just returned */
	int32		cur_partition;	/* the record just returned */
	int64		cur_offset;

	/* set when the scan is parallel-aware and has shared state */
	KafkaParallelState *par;
	bool		has_pending;	/* a claimed range waiting for its partition */
	KafkaPartitionScan pending;

	/* messages taken off the queue, not yet returned */
	rd_kafka_message_t **batch;
	int			batch_len;
	int			batch_pos;
	rd_kafka_message_t *current;	/* being converted */
	TimestampTz last_progress;

	/* librdkafka's fetch-queue limits, and whether the queue reached them */
	size_t		queue_max_msgs; /* queued.min.messages */
	double		queue_max_bytes;	/* queued.max.messages.kbytes * 1024 */
	double		mean_message_bytes;	/* in the last batch taken */
	bool		queue_was_full; /* at the limits since the last wake-up */
	bool		queue_was_high; /* at half the limits since the last wake-up */
	int64		fetcher_wakeups;	/* for EXPLAIN ANALYZE */
	KafkaFetchWaker *waker;		/* sends the wake-ups; NULL until the first */
	bool		no_waker;		/* it could not be started: wake synchronously */

	/* statistics for EXPLAIN ANALYZE and the skip warning */
	int64		records;
	int64		bytes;
	int64		skipped;
	char	   *first_skip;		/* the lowest skipped record and why */
	int32		first_skip_partition;
	int64		first_skip_offset;
	KafkaSkipKind first_skip_kind;	/* for the warning's hint */
} KafkaScanState;

/*
 * Ranges a parallel participant reads at once.  A Fetch brings at most
 * max.partition.fetch.bytes (the test broker: one batch) per partition, so
 * the number of partitions in flight bounds what one round trip delivers:
 * with 2, participants of a decode-heavy scan drained their queue and waited
 * on every round trip; 4 keeps it fed.  More would lengthen the tail (what
 * a participant still holds when the work runs out).
 */
#define KAFKA_PARALLEL_WINDOW 4

/* in scan.c */
extern TupleTableSlot *kafka_scan_next(ForeignScanState *node, KafkaScanState *st);
extern bool kafka_scan_batch_used_up(KafkaScanState *st);
extern KafkaStreamContext *kafka_scan_stream_context(ForeignScanState *node);
extern void kafka_scan_record_failed(KafkaScanState *st, const rd_kafka_message_t *msg,
									 const char *reason);
extern void kafka_scan_flush(KafkaScanState *st);
extern void kafka_record_fingerprint(const rd_kafka_message_t *msg, KafkaRecordFingerprint *fp);
extern void kafka_scan_forget_ranges(KafkaScanState *st);
extern void kafka_scan_evaluate_bounds(ForeignScanState *node, KafkaScanState *st);
extern int	kafka_scan_capture(ForeignScanState *node, KafkaScanState *st,
							   KafkaConnection *conn, KafkaPartitionScan **ranges);
extern void kafka_scan_note_skip(KafkaScanState *st, int32 partition, int64 offset,
								 const char *text, KafkaSkipKind kind);

/* in parallel.c: called by scan.c while a participant reads */
extern bool kafka_parallel_active(KafkaScanState *st);
extern bool kafka_parallel_detached(KafkaScanState *st);
extern int32 kafka_parallel_max_partition(KafkaScanState *st);
extern bool kafka_parallel_claim(KafkaScanState *st, KafkaPartitionScan *range);
extern void kafka_parallel_range_done(KafkaScanState *st, KafkaPartitionScan *ps,
									  int64 records, int64 bytes, int64 skipped);
extern void kafka_parallel_log_skip(KafkaScanState *st, const rd_kafka_message_t *msg,
									const char *reason, const char *first_skip_text,
									KafkaSkipKind kind);
extern void kafka_parallel_finish(KafkaScanState *st);
extern void kafka_parallel_explain(KafkaScanState *st, ExplainState *es);

/* in record_eval.c: a streaming refresh's own scan evaluates the view's expressions */
extern void kafka_eval_begin(ForeignScanState *node, KafkaScanState *st);
extern TupleTableSlot *kafka_eval_next(ForeignScanState *node, KafkaScanState *st);
extern void kafka_eval_reset(KafkaScanState *st);

#endif							/* KAFKA_SCAN_H */

/*-------------------------------------------------------------------------
 *
 * stream.h
 *		Streaming materialized views: the contract between the refresh
 *		(refresh.c), the scan (scan.c), the extension's state tables
 *		(stream_catalog.c) and the bulk insert into the view (stream_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_STREAM_H
#define KAFKA_STREAM_H

#include "kafka_fdw.h"
#include "tcop/dest.h"

/*
 * What identifies a record of a partition beyond its offset: its timestamp
 * and the sizes of its key and value.  The last record a view ingested from
 * a partition is stored with the offsets; the next refresh reads that record
 * again and compares, so that a topic deleted and recreated (or a server
 * pointed at another cluster) is noticed instead of being read from offsets
 * that belong to another log.  offset -1: none.
 */
typedef struct KafkaRecordFingerprint
{
	int64		offset;
	int64		timestamp_ms;	/* -1 if the record has none */
	int32		key_len;		/* -1 for a null key */
	int32		value_len;		/* -1 for a null value */
} KafkaRecordFingerprint;

/* One partition's part of a refresh: decided before the scan, counted by it. */
typedef struct KafkaStreamPartition
{
	int32		partition;
	int64		start;			/* first offset to ingest */
	int64		end;			/* high watermark at refresh start */
	int64		skip_before_ms; /* start at the first record this recent; -1 */
	KafkaRecordFingerprint verify;	/* the last record ingested before; -1: none */
	KafkaRecordFingerprint last;	/* filled in by the scan: the last record read */
	/* filled in by the scan */
	int64		scanned_rows;	/* records read and converted */
	int64		skipped_rows;	/* records skipped (on_error 'skip') */
	int64		scanned_bytes;
	int64		ts_min_ms;		/* -1 if none */
	int64		ts_max_ms;
} KafkaStreamPartition;

/* A record skipped by the scan, to be logged in kafka.stream_error_log. */
typedef struct KafkaSkippedRecord
{
	int32		partition;
	int64		offset;
	char		timestamp_type; /* 'C', 'L' or 'U' */
	int64		timestamp_ms;	/* -1 if none */
	char	   *reason;
	bytea	   *key_prefix;		/* NULL for a null key */
	bytea	   *value_prefix;	/* NULL for a null value */
} KafkaSkippedRecord;

#define KAFKA_ERROR_PREFIX_BYTES 64
#define KAFKA_MAX_LOGGED_SKIPS 1000	/* per refresh; the count is always exact */

/*
 * Set while a streaming refresh runs its view's query: the view's own scan
 * node (marked in its plan, KafkaPrivateStreamScan) reads exactly these
 * ranges instead of capturing watermarks.  Other scans of the same table,
 * such as one in a function that the view calls, are ordinary scans.
 * Lives in the refresh's memory context.
 */
typedef struct KafkaStreamContext
{
	Oid			ftable_oid;
	int			nparts;
	KafkaStreamPartition *parts;
	List	   *skipped;		/* KafkaSkippedRecord, at most KAFKA_MAX_LOGGED_SKIPS */
	int64		nskipped;
	bool		scanned;		/* a scan used this context */
	bool		planning;		/* the view's query is being planned */
	const char *mv_name;		/* for messages */
	MemoryContext cxt;
} KafkaStreamContext;

/*
 * The start of the CONTEXT line of errors raised while a streaming refresh
 * evaluates its view's expressions on a record (record_eval.c); refresh.c
 * recognises such errors by it, also when a parallel worker raised them.
 */
#define KAFKA_RECORD_CONTEXT_TAG "Kafka record at"

/* in record_eval.c */
extern bool kafka_error_is_record_error(const ErrorData *edata);
extern bool kafka_error_is_about_record(const ErrorData *edata);
extern char *kafka_error_skip_reason(const ErrorData *edata);
extern bool kafka_plan_node_evaluates(Plan *plan);

/*
 * Where a refresh's query sends its rows: a receiver made anew for every
 * attempt (a parallel attempt that fails on a record is run again serially)
 * and the number of rows it took in.
 */
typedef struct KafkaStreamSink
{
	DestReceiver *(*create) (Relation target, void *arg);
	uint64		(*processed) (DestReceiver *dest);
	void	   *arg;
} KafkaStreamSink;

/* in scan.c */
extern void kafka_stream_add_skipped(KafkaStreamContext *ctx, int32 partition, int64 offset,
									 char timestamp_type, int64 timestamp_ms,
									 const char *reason, const void *key, size_t keylen,
									 const void *value, size_t valuelen);

/* in refresh.c */
extern KafkaStreamContext *kafka_active_stream;
extern uint64 kafka_stream_run_query(Relation target, KafkaStreamContext *ctx, Query *query,
									 const char *queryString, bool on_error_fail,
									 bool allow_parallel, const KafkaStreamSink *sink);
extern void kafka_install_utility_hook(void);
extern uint64 kafka_refresh_stream(Oid mv_oid, const char *queryString, bool may_restore);
extern void kafka_prevent_on_standby(const char *what, Oid mv_oid);
extern bool kafka_may_read_stream(Oid mv_oid, Oid owner);
extern bool kafka_stream_pending(Oid mv_oid);
extern Oid	kafka_relation_owner(Oid relid);
extern bool kafka_is_kafka_table(Oid relid);
extern void kafka_empty_stream_relation(Oid relid);

/*
 * What a refresh does with a stream's new records (kafka.stream_state.kind).
 * Every kind shares the refresh's frame in refresh.c: the lock, the ranges
 * decided once, the offsets saved in the same transaction; only the middle
 * step, what becomes of the records, differs.
 */
typedef enum KafkaStreamKind
{
	KAFKA_STREAM_VIEW = 'v',	/* rows appended to a materialized view */
	KAFKA_STREAM_AGGREGATE = 'a',	/* folded into an aggregating view's groups */
	KAFKA_STREAM_REPLICA = 'r'	/* change events applied to a replica table */
} KafkaStreamKind;

/* in stream_catalog.c */
typedef struct KafkaStreamState
{
	Oid			mv_oid;			/* the view, or the replica table */
	Oid			ftable_oid;
	KafkaStreamKind kind;
	char	   *topic;
	bool		auto_refresh;
	char	   *next_start;		/* NULL: the table's start_offset */
} KafkaStreamState;

/* in refresh.c */
extern void kafka_streaming_view_arg(Oid mv_oid, bool need_owner, KafkaStreamState *st);

extern bool kafka_stream_lookup(Oid mv_oid, KafkaStreamState *state);
extern void kafka_stream_lock_state(Oid mv_oid);
extern void kafka_stream_register(Oid mv_oid, Oid ftable_oid, const char *topic,
								  KafkaStreamKind kind);
extern void kafka_stream_set_next_start(Oid mv_oid, const char *start);
extern int	kafka_stream_load_offsets(Oid mv_oid, int32 **partitions, int64 **offsets);

/* A partition's stored next offset and the last record ingested before it. */
typedef struct KafkaStoredPosition
{
	int32		partition;
	int64		next_offset;
	KafkaRecordFingerprint last;	/* offset -1: unknown */
} KafkaStoredPosition;

extern int	kafka_stream_load_positions(Oid mv_oid, KafkaStoredPosition **positions);
extern void kafka_stream_set_topic(Oid mv_oid, const char *topic);
extern void kafka_stream_forget_offsets(Oid mv_oid);
extern void kafka_stream_save_refresh(Oid mv_oid, KafkaStreamContext *ctx,
									  int64 rows, TimestampTz refresh_time);
extern List *kafka_stream_auto_views(void);
extern List *kafka_stream_all_views(void);
extern void kafka_stream_set_auto_refresh(Oid mv_oid, bool enabled);
extern void kafka_stream_record_failure(Oid mv_oid, const char *message);
extern void kafka_stream_exec_utility(const char *sql, bool as_state_owner);
extern void kafka_stream_log_lost_range(Oid mv_oid, TimestampTz refresh_time,
										int32 partition, int64 from, int64 to);

/* A dump's 'state' line for a view, staged by a restore (stream_dump.c). */
typedef struct KafkaStagedState
{
	char	   *payload;		/* jsonb text: state, offsets, logs, rows */
	char	   *topic;			/* the topic the dumped offsets belong to */
	int64		rows;			/* rows of the view in the dump */
	char	   *owner;			/* the role that owned the dumped view */
	char	   *source;			/* its Kafka table, qualified; NULL: not said */
	int64		state_rows;		/* rows of its avg state table in the dump; -1 */
} KafkaStagedState;

extern Datum kafka_stream_dump_state(Oid mv_oid);
extern bool kafka_stream_staged_state(const char *mv_name, KafkaStagedState *staged);
extern uint64 kafka_stream_staged_rows(const char *mv_name, const char *kind,
									   void (*fn) (const char *payload, void *arg),
									   void *arg);
extern List *kafka_stream_staged_replicas(void);
extern int64 kafka_stream_restore_rows(Oid mv_oid);
extern void kafka_stream_set_restore_rows(Oid mv_oid, int64 rows);
extern void kafka_stream_apply_staged(Oid mv_oid, const char *mv_name, const char *payload);

/* in stream_dump.c */
extern bool kafka_stream_restore_dumped(Relation matview, const KafkaStreamState *st,
										const KafkaTableOptions *opts);
extern void kafka_replica_check_restored(Relation replica);

/* in worker.c */
extern int	kafka_auto_refresh_interval_ms;
extern int	kafka_auto_refresh_max_workers;
extern void kafka_worker_init(void);
extern bool kafka_auto_refresh_wake_at_commit(void);

/* in worker_watch.c */
extern int	kafka_auto_refresh_wait_ms;
extern pgsocket kafka_watch_socket(void);
extern bool kafka_watch_try(const char *what, void (*fn) (void *arg), void *arg);
extern void kafka_watch_begin_sync(void);
extern bool kafka_watch_view(Oid mv_oid, Oid serverid, Oid owner, const char *topic,
							 bool *began);
extern void kafka_watch_end_sync(void);
extern void kafka_watch_drop_changed_topics(void);
extern List *kafka_watch_arrivals(void);

/* in stream_aggregate.c */
extern bool kafka_query_aggregates(Query *query);
extern void kafka_aggregate_validate(Query *query, const char *viewname);
extern void kafka_aggregate_setup(Oid mv_oid, bool restoring);
extern Oid	kafka_aggregate_state_table(Oid mv_oid);
extern uint64 kafka_aggregate_refresh(Relation matview, KafkaStreamContext *ctx,
									  const char *queryString, bool on_error_fail);

/* in stream_insert.c */
extern DestReceiver *kafka_create_stream_dest(Relation matview);
extern uint64 kafka_stream_dest_processed(DestReceiver *self);

#endif							/* KAFKA_STREAM_H */

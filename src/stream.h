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

/* One partition's part of a refresh: decided before the scan, counted by it. */
typedef struct KafkaStreamPartition
{
	int32		partition;
	int64		start;			/* first offset to ingest */
	int64		end;			/* high watermark at refresh start */
	int64		skip_before_ms; /* start at the first record this recent; -1 */
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
 * Set while a streaming refresh runs its view's query: the scan of
 * 'ftable_oid' reads exactly these ranges instead of capturing watermarks.
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
	MemoryContext cxt;
} KafkaStreamContext;

/* in refresh.c */
extern KafkaStreamContext *kafka_active_stream;
extern void kafka_install_utility_hook(void);
extern uint64 kafka_refresh_stream(Oid mv_oid, const char *queryString);
extern bool kafka_stream_pending(Oid mv_oid);
extern Oid	kafka_relation_owner(Oid relid);

/* in stream_catalog.c */
typedef struct KafkaStreamState
{
	Oid			mv_oid;
	Oid			ftable_oid;
	char	   *topic;
	bool		auto_refresh;
	char	   *next_start;		/* NULL: the table's start_offset */
} KafkaStreamState;

/* in refresh.c */
extern void kafka_streaming_view_arg(Oid mv_oid, bool need_owner, KafkaStreamState *st);

extern bool kafka_stream_lookup(Oid mv_oid, KafkaStreamState *state);
extern void kafka_stream_lock_state(Oid mv_oid);
extern void kafka_stream_register(Oid mv_oid, Oid ftable_oid, const char *topic);
extern void kafka_stream_set_next_start(Oid mv_oid, const char *start);
extern int	kafka_stream_load_offsets(Oid mv_oid, int32 **partitions, int64 **offsets);
extern void kafka_stream_forget_offsets(Oid mv_oid);
extern void kafka_stream_save_refresh(Oid mv_oid, KafkaStreamContext *ctx,
									  int64 rows, TimestampTz refresh_time);
extern List *kafka_stream_auto_views(void);
extern List *kafka_stream_all_views(void);
extern void kafka_stream_set_auto_refresh(Oid mv_oid, bool enabled);
extern void kafka_stream_record_failure(Oid mv_oid, const char *message);
extern void kafka_stream_log_lost_range(Oid mv_oid, TimestampTz refresh_time,
										int32 partition, int64 from, int64 to);

/* in worker.c */
extern int	kafka_auto_refresh_interval_ms;
extern int	kafka_auto_refresh_max_workers;
extern void kafka_worker_init(void);

/* in stream_insert.c */
extern DestReceiver *kafka_create_stream_dest(Relation matview);
extern uint64 kafka_stream_dest_processed(DestReceiver *self);

#endif							/* KAFKA_STREAM_H */

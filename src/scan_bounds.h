/*-------------------------------------------------------------------------
 *
 * scan_bounds.h
 *		Pushed-down conditions folded into partition and offset bounds.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_SCAN_BOUNDS_H
#define KAFKA_SCAN_BOUNDS_H

#include "kafka_fdw.h"

/* Operator of a pushed-down condition "column op value". */
typedef enum KafkaCondOp
{
	KAFKA_OP_NONE = 0,
	KAFKA_OP_EQ,
	KAFKA_OP_LT,
	KAFKA_OP_LE,
	KAFKA_OP_GT,
	KAFKA_OP_GE,
	KAFKA_OP_IN					/* column = ANY (array) */
} KafkaCondOp;

/*
 * What the conditions allow.  Partition and offset ranges are half-open
 * [lo, hi).  An explicit partition set (from = or IN) further restricts the
 * range; 'empty' means no record can match.
 */
typedef struct KafkaScanBounds
{
	bool		empty;
	int64		partition_lo;
	int64		partition_hi;
	bool		has_partition_set;
	int			npartition_set;
	int64	   *partition_set;	/* sorted, unique */
	int64		offset_lo;
	int64		offset_hi;
	bool		has_timestamp;
	int64		timestamp_lo_ms;	/* earliest record time wanted, ms since epoch */
} KafkaScanBounds;

extern void kafka_bounds_init(KafkaScanBounds *b);
extern void kafka_bounds_apply(KafkaScanBounds *b, KafkaColumn col, KafkaCondOp op,
							   Datum value, bool isnull, Oid valtype);
extern bool kafka_bounds_partition_ok(const KafkaScanBounds *b, int32 partition);
extern char *kafka_bounds_describe_partitions(const KafkaScanBounds *b);
extern char *kafka_bounds_describe_offsets(const KafkaScanBounds *b);

#endif							/* KAFKA_SCAN_BOUNDS_H */

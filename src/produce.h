/*-------------------------------------------------------------------------
 *
 * produce.h
 *		INSERT into a kafka_fdw table: what produce.c (the Kafka transaction,
 *		delivery, the log of deferred records) and produce_record.c (a row
 *		turned into a Kafka record) share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_PRODUCE_H
#define KAFKA_PRODUCE_H

#include "kafka_fdw.h"
#include "executor/tuptable.h"
#include "utils/rel.h"

/* A record ready to be produced (or logged): pointers into scratch memory. */
typedef struct OutRecord
{
	const char *key;			/* NULL: null key */
	size_t		key_len;
	const char *value;			/* NULL: tombstone */
	size_t		value_len;
	int32		partition;		/* RD_KAFKA_PARTITION_UA: by the key */
	int64		timestamp_ms;	/* 0: now (or the broker's, LogAppendTime) */
	int			nheaders;
	const char **hnames;
	size_t	   *hname_lens;
	const char **hvalues;		/* NULL entry: null value */
	size_t	   *hvalue_lens;
} OutRecord;

/* Per-statement state. */
typedef struct KafkaModifyState
{
	Relation	rel;
	KafkaColumn *columns;		/* per attribute */
	Oid		   *typids;			/* per attribute */
	char	   *topic;
	int			topic_idx;
	char	   *xid_header;		/* header name, or NULL */
	bool		returning;
	bool		explain_only;
	rd_kafka_topic_t *rkt;
	MemoryContext rec_cxt;		/* reset per record */
	int64		produced;		/* records produced directly by this statement */
	/* scratch arrays for headers, grown geometrically */
	int			hcap;
	OutRecord	rec;
	MemoryContextCallback cleanup;
} KafkaModifyState;

/* in produce.c */
extern const char *kafka_produce_xid_value(void);

/* in produce_record.c */
extern void kafka_row_to_record(KafkaModifyState *st, TupleTableSlot *slot);

#endif							/* KAFKA_PRODUCE_H */

/*-------------------------------------------------------------------------
 *
 * record.h
 *		Kafka record to row conversion (record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_RECORD_H
#define KAFKA_RECORD_H

#include "kafka_fdw.h"
#include "access/tupdesc.h"

/*
 * Why a record was skipped (or failed the scan): each calls for its own
 * hint.
 */
typedef enum KafkaSkipKind
{
	KAFKA_SKIP_VALUE,			/* key or value not valid for its column type */
	KAFKA_SKIP_HEADERS,			/* headers not representable as jsonb */
	KAFKA_SKIP_OVERSIZED,		/* larger than kafka_fdw.max_record_size */
	KAFKA_SKIP_EXPRESSION		/* a streaming view's expressions failed on it */
} KafkaSkipKind;

#define KAFKA_NUM_SKIP_KINDS (KAFKA_SKIP_EXPRESSION + 1)

/* Per-scan state of the record converter; see kafka_converter_init(). */
typedef struct KafkaRecordConverter
{
	int			natts;
	const KafkaColumn *columns; /* per attribute */
	Oid		   *typids;			/* per attribute, for wanted ones */
	bool	   *wanted;			/* per attribute: fill it? */
	Datum		refresh_time;
	Datum		ts_type_datum[3];	/* 'C', 'L', 'U' */
	Datum		empty_headers;	/* the jsonb [] */
	MemoryContext scan_cxt;		/* for the scratch arrays below */
	int			header_capacity;
	const char **header_names;
	const void **header_values;
	size_t	   *header_sizes;
	char		error[256];		/* why the last record failed: a sentence */
	KafkaSkipKind error_kind;	/* and what kind of failure it was */
} KafkaRecordConverter;

extern void kafka_converter_init(KafkaRecordConverter *conv, TupleDesc desc,
								 const KafkaColumn *columns, List *retrieved_attrs,
								 TimestampTz refresh_time);
extern bool kafka_record_to_datums(KafkaRecordConverter *conv,
								   const rd_kafka_message_t *msg,
								   rd_kafka_headers_t *hdrs,
								   Datum *values, bool *isnull);

#endif							/* KAFKA_RECORD_H */

/*-------------------------------------------------------------------------
 *
 * cdc.h
 *		Change data capture: Debezium change events applied to replica tables.
 *
 *	cdc_decode.c	a Debezium JSON envelope (with or without schemas) into an
 *					operation and column values of the replica table;
 *	cdc_apply.c		the refresh of a replica (stream kind 'r'): the events
 *					of the new records applied in offset order, in batches
 *					isolated by subtransactions so a bad event is skipped;
 *	cdc_replica.c	the SQL functions: create a replica from a topic (one
 *					table, or every table of a captured database), apply.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_CDC_H
#define KAFKA_CDC_H

#include "fmgr.h"
#include "utils/relcache.h"

#include "stream.h"

/* Debezium's "op" */
typedef enum CdcOp
{
	CDC_OP_NONE = 0,			/* a tombstone: nothing to do */
	CDC_OP_CREATE = 'c',
	CDC_OP_READ = 'r',			/* snapshot */
	CDC_OP_UPDATE = 'u',
	CDC_OP_DELETE = 'd',
	CDC_OP_TRUNCATE = 't'
} CdcOp;

/* How a Debezium value becomes a column value (from the field's schema). */
typedef enum CdcConversion
{
	CDC_CONV_TEXT,				/* the JSON scalar as text, the column's input function */
	CDC_CONV_BYTES,				/* base64 */
	CDC_CONV_DECIMAL,			/* base64 unscaled two's complement, scale known */
	CDC_CONV_VARIABLE_DECIMAL,	/* {"scale": s, "value": base64} */
	CDC_CONV_DATE,				/* days since 1970-01-01 */
	CDC_CONV_TIME_MS,			/* since midnight */
	CDC_CONV_TIME_US,
	CDC_CONV_TIME_NS,
	CDC_CONV_TIMESTAMP_MS,		/* since the epoch, no time zone */
	CDC_CONV_TIMESTAMP_US,
	CDC_CONV_TIMESTAMP_NS,
	CDC_CONV_INTERVAL_US		/* io.debezium.time.MicroDuration */
} CdcConversion;

/* A column of the replica table. */
typedef struct CdcColumn
{
	char	   *name;			/* NULL for a dropped column */
	Oid			typid;
	int32		typmod;
	FmgrInfo	input;
	Oid			ioparam;
	bool		is_key;
	CdcConversion schemaless;	/* the conversion when events carry no schema */
	int32		schemaless_scale;	/* for CDC_CONV_DECIMAL; -1: unknown */
} CdcColumn;

/* The replica table, as the decoder needs it. */
typedef struct CdcTable
{
	const char *name;			/* for messages */
	int			ncols;			/* natts of the table */
	CdcColumn  *cols;			/* [ncols], by attnum - 1 */
	int			nkeys;
	AttrNumber *keys;			/* the primary key's columns */
	int			cache_size;
	int		   *field_cache;	/* the column of the i-th field last seen, or -1 */

	/*
	 * The value schema of the last event with schemas, parsed once for as
	 * long as the events carry the same schema text (cdc_decode.c).
	 */
	MemoryContext schema_cxt;
	char	   *schema_text;
	size_t		schema_len;
	struct CdcFieldInfo *after_fields;
	int			nafter;
	struct CdcFieldInfo *before_fields;
	int			nbefore;
} CdcTable;

/* A column of a replica table to create, from the events' schema. */
typedef struct CdcColumnDef
{
	char	   *name;
	char	   *type_sql;		/* e.g. "numeric(12,2)" */
	bool		not_null;
} CdcColumnDef;

/*
 * One decoded event.  values/isnull are a row image of the table: for c, r
 * and u the "after" row, for d the key.  present[i]: the event has the
 * column; unavailable[i]: PostgreSQL's unchanged-TOAST placeholder (keep the
 * old value).  error: why the event cannot be applied (a bad event).
 */
typedef struct CdcEvent
{
	CdcOp		op;
	Datum	   *values;
	bool	   *isnull;
	bool	   *present;
	bool	   *unavailable;
	bool		has_unavailable;
	List	   *new_columns;	/* CdcColumnDef: fields the table lacks (schemas on) */
} CdcEvent;

/* in cdc_decode.c */
extern void cdc_table_init(CdcTable *t, Relation rel);
extern void cdc_event_init(CdcEvent *ev, const CdcTable *t);
extern void cdc_decode_event(CdcTable *t, const char *key, size_t keylen,
							 const char *value, size_t valuelen, CdcEvent *ev);


extern bool cdc_decode_key(CdcTable *t, const char *key, size_t keylen, CdcEvent *ev);
extern bool cdc_event_columns(const char *key, size_t keylen, const char *value,
							  size_t valuelen, List **columns, List **key_columns);

/* in cdc_apply.c */
extern uint64 kafka_replica_apply(Relation replica, KafkaStreamContext *ctx,
								  const KafkaTableOptions *opts, const char *queryString);
extern bool kafka_replica_evolve(Oid replica);

#endif							/* KAFKA_CDC_H */

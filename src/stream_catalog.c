/*-------------------------------------------------------------------------
 *
 * stream_catalog.c
 *		Reading and writing the extension's state tables (kafka.stream_state,
 *		kafka.stream_offsets, kafka.stream_scan_log, kafka.stream_error_log).
 *
 * Everything here runs through SPI in the caller's transaction, so a
 * refresh's rows, offsets and log entries commit or roll back together.
 * The statements run as the extension's owner: a view's owner needs no
 * rights on these tables, and ordinary users have none.
 *
 * Running as the owner (a superuser) on behalf of any user, these statements
 * must never resolve a name through the caller's search_path: an operator,
 * function or type planted in a schema the caller put first would run with
 * the owner's rights.  spi_begin() therefore pins search_path to
 * "pg_catalog, pg_temp" for the duration (and the statements qualify every
 * operator and function anyway, as defence in depth), and runs them as a
 * security-restricted operation, as PostgreSQL does for maintenance commands.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "stream.h"

/* Microseconds between the Unix and PostgreSQL epochs. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* The search_path of every statement run here. */
#define SAFE_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct SpiSession
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nestlevel;
} SpiSession;

/*
 * kafka.stream_state, or InvalidOid when kafka_fdw is not installed in this
 * database.  A table of that name that is not the extension's (a user's own
 * schema "kafka" in a database without the extension) does not count.
 */
static Oid
state_table(void)
{
	Oid			ext = get_extension_oid("kafka_fdw", true);
	Oid			nsp;
	Oid			relid;

	if (!OidIsValid(ext))
		return InvalidOid;
	nsp = get_namespace_oid("kafka", true);
	relid = OidIsValid(nsp) ? get_relname_relid("stream_state", nsp) : InvalidOid;
	if (!OidIsValid(relid) || getExtensionOfObject(RelationRelationId, relid) != ext)
		return InvalidOid;
	return relid;
}

/*
 * A table of the extension in schema kafka that a later version added, or
 * InvalidOid while the database still has the objects of an earlier one
 * (the library is updated before ALTER EXTENSION ... UPDATE runs).
 */
static Oid
extension_table(const char *name)
{
	Oid			nsp = OidIsValid(state_table()) ? get_namespace_oid("kafka", true) : InvalidOid;

	return OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;
}

/*
 * Does kafka.stream_state have the kind column of 1.1 (section 3)?  Before
 * the update of a 1.0 database every stream is a plain streaming view.
 */
static bool
has_kinds(void)
{
	Oid			relid = extension_table("stream_state");

	return OidIsValid(relid) && get_attnum(relid, "kind") != InvalidAttrNumber;
}

/*
 * Does kafka.stream_offsets have the last-record columns of 1.1 (section 2)?
 * A 1.0 database served by this library before its update has not: its
 * refreshes then go without the topic identity check.
 */
static bool
has_fingerprints(void)
{
	Oid			relid = extension_table("stream_offsets");

	return OidIsValid(relid) && get_attnum(relid, "last_offset") != InvalidAttrNumber;
}

/* The owner of the extension's tables. */
static Oid
state_owner(void)
{
	Oid			relid = state_table();
	HeapTuple	tp;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kafka_fdw's state tables are missing"),
				 errhint("Reinstall the extension with DROP EXTENSION kafka_fdw CASCADE; CREATE EXTENSION kafka_fdw.")));
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

static void
spi_begin(SpiSession *s)
{
	Oid			owner = state_owner();

	GetUserIdAndSecContext(&s->saved_userid, &s->saved_sec_context);
	SetUserIdAndSecContext(owner, s->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	/* undone by spi_end(), or by the (sub)transaction's abort */
	s->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

static void
spi_end(SpiSession *s)
{
	SPI_finish();
	AtEOXact_GUC(true, s->guc_nestlevel);
	SetUserIdAndSecContext(s->saved_userid, s->saved_sec_context);
}

/*
 * Run a utility statement (DDL of an aggregating view) with the pinned
 * search_path, as the extension's owner or as the current user.
 */
void
kafka_stream_exec_utility(const char *sql, bool as_state_owner)
{
	SpiSession	s;

	if (as_state_owner)
		spi_begin(&s);
	else
	{
		GetUserIdAndSecContext(&s.saved_userid, &s.saved_sec_context);
		s.guc_nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
	}
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "kafka_fdw statement failed: %s", sql);
	spi_end(&s);
}

static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		 int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "kafka_fdw state query failed (%d): %s", rc, sql);
}

static int64
current_transaction_id(void)
{
	return (int64) U64FromFullTransactionId(GetTopFullTransactionId());
}

static Datum
timestamp_ms_datum(int64 ms, bool *isnull)
{
	*isnull = ms < 0;
	return TimestampTzGetDatum(ms * 1000 - UNIX_TO_PG_EPOCH_USECS);
}

/*
 * Look up a streaming view.  Returns false if mv_oid is not one.  Strings
 * are allocated in the caller's memory context.
 */
bool
kafka_stream_lookup(Oid mv_oid, KafkaStreamState *state)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};
	bool		found = false;
	MemoryContext caller = CurrentMemoryContext;

	/* not installed in this database: nothing is a streaming view */
	if (!OidIsValid(state_table()))
		return false;

	spi_begin(&s);
	spi_exec(has_kinds() ?
			 "SELECT ftable_oid, topic, auto_refresh, next_start, kind FROM kafka.stream_state WHERE mv_oid OPERATOR(pg_catalog.=) $1" :
			 "SELECT ftable_oid, topic, auto_refresh, next_start, 'v'::pg_catalog.\"char\" FROM kafka.stream_state WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(caller);

		state->mv_oid = mv_oid;
		state->ftable_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		state->topic = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		state->auto_refresh = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		{
			Datum		d = SPI_getbinval(tup, desc, 4, &isnull);

			state->next_start = isnull ? NULL : TextDatumGetCString(d);
		}
		state->kind = (KafkaStreamKind) DatumGetChar(SPI_getbinval(tup, desc, 5, &isnull));
		MemoryContextSwitchTo(old);
		found = true;
	}
	spi_end(&s);
	return found;
}

/*
 * Lock the view's state row for this refresh.  Under READ COMMITTED this
 * only orders refreshes (the view's ExclusiveLock already does); under
 * REPEATABLE READ or SERIALIZABLE, when another refresh committed after this
 * transaction's snapshot was taken, it raises a serialization failure
 * (40001) at once: the snapshot's offsets are stale, and ingesting from them
 * would repeat records (which the transaction could never commit anyway).
 */
void
kafka_stream_lock_state(Oid mv_oid)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};

	spi_begin(&s);
	spi_exec("SELECT 1 FROM kafka.stream_state WHERE mv_oid OPERATOR(pg_catalog.=) $1 FOR UPDATE",
			 1, types, values, NULL, SPI_OK_SELECT);
	spi_end(&s);
}

/* Record that mv_oid is a stream of the given kind over ftable_oid. */
void
kafka_stream_register(Oid mv_oid, Oid ftable_oid, const char *topic, KafkaStreamKind kind)
{
	SpiSession	s;
	Oid			types[4] = {OIDOID, OIDOID, TEXTOID, CHAROID};
	Datum		values[4] = {ObjectIdGetDatum(mv_oid), ObjectIdGetDatum(ftable_oid),
	CStringGetTextDatum(topic), CharGetDatum((char) kind)};

	if (!has_kinds())
	{
		if (kind != KAFKA_STREAM_VIEW)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("this database has version 1.0 of kafka_fdw's SQL objects"),
					 errhint("Run ALTER EXTENSION kafka_fdw UPDATE to use aggregating views and replicas.")));
		spi_begin(&s);
		spi_exec("INSERT INTO kafka.stream_state (mv_oid, ftable_oid, topic) VALUES ($1, $2, $3)",
				 3, types, values, NULL, SPI_OK_INSERT);
		spi_end(&s);
		return;
	}
	spi_begin(&s);
	spi_exec("INSERT INTO kafka.stream_state (mv_oid, ftable_oid, topic, kind) VALUES ($1, $2, $3, $4)",
			 4, types, values, NULL, SPI_OK_INSERT);
	spi_end(&s);
}

/* Where partitions without stored offsets start next time (NULL: start_offset). */
void
kafka_stream_set_next_start(Oid mv_oid, const char *start)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), start ? CStringGetTextDatum(start) : (Datum) 0};

	spi_begin(&s);
	spi_exec("UPDATE kafka.stream_state SET next_start = $2 WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, start ? NULL : " n", SPI_OK_UPDATE);
	spi_end(&s);
}

/* The stored next offsets, sorted by partition; palloc'd in the caller's context. */
int
kafka_stream_load_offsets(Oid mv_oid, int32 **partitions, int64 **offsets)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};
	MemoryContext caller = CurrentMemoryContext;
	int			n;

	spi_begin(&s);
	spi_exec("SELECT partition_id, next_offset FROM kafka.stream_offsets WHERE mv_oid OPERATOR(pg_catalog.=) $1 ORDER BY 1",
			 1, types, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*partitions = MemoryContextAlloc(caller, sizeof(int32) * Max(n, 1));
	*offsets = MemoryContextAlloc(caller, sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*partitions)[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull));
		(*offsets)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 2, &isnull));
	}
	spi_end(&s);
	return n;
}

/*
 * The stored positions with the last record ingested from each partition,
 * sorted by partition; palloc'd in the caller's context.
 */
int
kafka_stream_load_positions(Oid mv_oid, KafkaStoredPosition **positions)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};
	MemoryContext caller = CurrentMemoryContext;
	int			n;

	spi_begin(&s);
	if (has_fingerprints())
		spi_exec("SELECT partition_id, next_offset, "
				 "COALESCE(last_offset, -1), COALESCE(last_timestamp_ms, -1), "
				 "COALESCE(last_key_len, -1), COALESCE(last_value_len, -1) "
				 "FROM kafka.stream_offsets WHERE mv_oid OPERATOR(pg_catalog.=) $1 ORDER BY 1",
				 1, types, values, NULL, SPI_OK_SELECT);
	else
		spi_exec("SELECT partition_id, next_offset, -1::pg_catalog.int8, -1::pg_catalog.int8, "
				 "-1::pg_catalog.int4, -1::pg_catalog.int4 "
				 "FROM kafka.stream_offsets WHERE mv_oid OPERATOR(pg_catalog.=) $1 ORDER BY 1",
				 1, types, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*positions = MemoryContextAlloc(caller, sizeof(KafkaStoredPosition) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		KafkaStoredPosition *p = &(*positions)[i];
		bool		isnull;

		p->partition = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		p->next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		p->last.offset = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		p->last.timestamp_ms = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		p->last.key_len = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		p->last.value_len = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	}
	spi_end(&s);
	return n;
}

/* The topic the view's stored offsets belong to (after a reset). */
void
kafka_stream_set_topic(Oid mv_oid, const char *topic)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), CStringGetTextDatum(topic)};

	spi_begin(&s);
	spi_exec("UPDATE kafka.stream_state SET topic = $2 WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

void
kafka_stream_forget_offsets(Oid mv_oid)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};

	spi_begin(&s);
	spi_exec("DELETE FROM kafka.stream_offsets WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_DELETE);
	/* the view is empty again: kafka.streams.total_rows counts what it holds */
	spi_exec("UPDATE kafka.stream_state SET total_rows = 0 WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

static Datum
int_array(const void *vals, int n, Oid elemtype)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = elemtype == INT4OID ? Int32GetDatum(((const int32 *) vals)[i]) :
			Int64GetDatum(((const int64 *) vals)[i]);
	if (elemtype == INT4OID)
		return PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT));
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Store the outcome of a refresh: the new next offsets (the end of every
 * partition's range), one scan log row per partition, the skipped records,
 * and the view's summary; prune logs older than kafka_fdw.scan_log_retention.
 */
void
kafka_stream_save_refresh(Oid mv_oid, KafkaStreamContext *ctx, int64 rows,
						  TimestampTz refresh_time)
{
	SpiSession	s;
	int			n = ctx->nparts;
	int32	   *parts = palloc(sizeof(int32) * Max(n, 1));
	int64	   *ends = palloc(sizeof(int64) * Max(n, 1));
	int64	   *starts = palloc(sizeof(int64) * Max(n, 1));
	int64	   *scanned = palloc(sizeof(int64) * Max(n, 1));
	int64	   *skipped = palloc(sizeof(int64) * Max(n, 1));
	int64	   *bytes = palloc(sizeof(int64) * Max(n, 1));
	int64	   *tsmin = palloc(sizeof(int64) * Max(n, 1));
	int64	   *tsmax = palloc(sizeof(int64) * Max(n, 1));
	int64	   *last_off = palloc(sizeof(int64) * Max(n, 1));
	int64	   *last_ts = palloc(sizeof(int64) * Max(n, 1));
	int32	   *last_klen = palloc(sizeof(int32) * Max(n, 1));
	int32	   *last_vlen = palloc(sizeof(int32) * Max(n, 1));
	int64		xid = current_transaction_id();
	ListCell   *lc;

	for (int i = 0; i < n; i++)
	{
		KafkaStreamPartition *p = &ctx->parts[i];

		parts[i] = p->partition;
		starts[i] = p->start;
		ends[i] = p->end;
		scanned[i] = p->scanned_rows;
		skipped[i] = p->skipped_rows;
		bytes[i] = p->scanned_bytes;
		tsmin[i] = p->ts_min_ms;
		tsmax[i] = p->ts_max_ms;
		last_off[i] = p->last.offset;
		last_ts[i] = p->last.timestamp_ms;
		last_klen[i] = p->last.key_len;
		last_vlen[i] = p->last.value_len;
	}

	spi_begin(&s);
	{
		/* a partition without records this time keeps its last record */
		Oid			types[7] = {OIDOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		INT4ARRAYOID, INT4ARRAYOID};
		Datum		values[7] = {ObjectIdGetDatum(mv_oid), int_array(parts, n, INT4OID),
			int_array(ends, n, INT8OID), int_array(last_off, n, INT8OID),
			int_array(last_ts, n, INT8OID), int_array(last_klen, n, INT4OID),
		int_array(last_vlen, n, INT4OID)};

		if (!has_fingerprints())	/* 1.0's table, before the update */
			spi_exec("INSERT INTO kafka.stream_offsets (mv_oid, partition_id, next_offset) "
					 "SELECT $1, p, o FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(p, o) "
					 "ON CONFLICT (mv_oid, partition_id) DO UPDATE SET next_offset = EXCLUDED.next_offset",
					 3, types, values, NULL, SPI_OK_INSERT);
		else
		spi_exec("INSERT INTO kafka.stream_offsets AS so (mv_oid, partition_id, next_offset, "
				 "last_offset, last_timestamp_ms, last_key_len, last_value_len) "
				 "SELECT $1, p, o, NULLIF(lo, -1), "
				 "CASE WHEN lo OPERATOR(pg_catalog.>=) 0 THEN lt END, "
				 "CASE WHEN lo OPERATOR(pg_catalog.>=) 0 THEN lk END, "
				 "CASE WHEN lo OPERATOR(pg_catalog.>=) 0 THEN lv END "
				 "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4), "
				 "pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7)) AS u(p, o, lo, lt, lk, lv) "
				 "ON CONFLICT (mv_oid, partition_id) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
				 "last_offset = COALESCE(EXCLUDED.last_offset, so.last_offset), "
				 "last_timestamp_ms = CASE WHEN EXCLUDED.last_offset IS NULL THEN so.last_timestamp_ms ELSE EXCLUDED.last_timestamp_ms END, "
				 "last_key_len = CASE WHEN EXCLUDED.last_offset IS NULL THEN so.last_key_len ELSE EXCLUDED.last_key_len END, "
				 "last_value_len = CASE WHEN EXCLUDED.last_offset IS NULL THEN so.last_value_len ELSE EXCLUDED.last_value_len END",
				 7, types, values, NULL, SPI_OK_INSERT);
	}
	{
		Oid			types[11] = {OIDOID, INT8OID, TIMESTAMPTZOID, INT4ARRAYOID, INT8ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		values[11] = {ObjectIdGetDatum(mv_oid), Int64GetDatum(xid),
			TimestampTzGetDatum(refresh_time), int_array(parts, n, INT4OID),
			int_array(starts, n, INT8OID), int_array(ends, n, INT8OID),
			int_array(scanned, n, INT8OID), int_array(skipped, n, INT8OID),
		int_array(bytes, n, INT8OID), int_array(tsmin, n, INT8OID), int_array(tsmax, n, INT8OID)};

		spi_exec("INSERT INTO kafka.stream_scan_log (mv_oid, transaction_id, record_time, partition_id, "
				 "start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes, "
				 "stream_record_time_min, stream_record_time_max) "
				 "SELECT $1, $2, $3, p, s, e, r, k, b, "
				 "CASE WHEN lo OPERATOR(pg_catalog.>=) 0 "
				 "THEN pg_catalog.to_timestamp(lo OPERATOR(pg_catalog./) 1000.0) END, "
				 "CASE WHEN hi OPERATOR(pg_catalog.>=) 0 "
				 "THEN pg_catalog.to_timestamp(hi OPERATOR(pg_catalog./) 1000.0) END "
				 "FROM ROWS FROM (pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
				 "pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
				 "pg_catalog.unnest($10), pg_catalog.unnest($11)) AS u(p, s, e, r, k, b, lo, hi)",
				 11, types, values, NULL, SPI_OK_INSERT);
	}

	foreach(lc, ctx->skipped)
	{
		KafkaSkippedRecord *r = lfirst(lc);
		Oid			types[10] = {OIDOID, INT8OID, TIMESTAMPTZOID, INT4OID, INT8OID, CHAROID,
		TIMESTAMPTZOID, TEXTOID, BYTEAOID, BYTEAOID};
		Datum		values[10];
		char		nulls[11] = "          ";
		bool		tsnull;

		values[0] = ObjectIdGetDatum(mv_oid);
		values[1] = Int64GetDatum(xid);
		values[2] = TimestampTzGetDatum(refresh_time);
		values[3] = Int32GetDatum(r->partition);
		values[4] = Int64GetDatum(r->offset);
		values[5] = CharGetDatum(r->timestamp_type);
		values[6] = timestamp_ms_datum(r->timestamp_ms, &tsnull);
		if (tsnull)
			nulls[6] = 'n';
		values[7] = CStringGetTextDatum(r->reason);
		values[8] = PointerGetDatum(r->key_prefix);
		if (r->key_prefix == NULL)
			nulls[8] = 'n';
		values[9] = PointerGetDatum(r->value_prefix);
		if (r->value_prefix == NULL)
			nulls[9] = 'n';
		spi_exec("INSERT INTO kafka.stream_error_log (mv_oid, transaction_id, record_time, partition_id, "
				 "position, stream_timestamp_type, stream_timestamp, error_code, error_reason, "
				 "key_prefix, value_prefix) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, 'skipped', $8, $9, $10)",
				 10, types, values, nulls, SPI_OK_INSERT);
	}

	{
		Oid			types[3] = {OIDOID, INT8OID, TIMESTAMPTZOID};
		Datum		values[3] = {ObjectIdGetDatum(mv_oid), Int64GetDatum(rows),
		TimestampTzGetDatum(refresh_time)};

		spi_exec("UPDATE kafka.stream_state SET last_refresh_time = $3, last_refresh_rows = $2, "
				 "last_refresh_status = 'ok', last_success_time = $3, "
				 "total_rows = total_rows OPERATOR(pg_catalog.+) $2, next_start = NULL "
				 "WHERE mv_oid OPERATOR(pg_catalog.=) $1",
				 3, types, values, NULL, SPI_OK_UPDATE);
	}
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(kafka_scan_log_retention_s)};

		spi_exec("DELETE FROM kafka.stream_scan_log "
				 "WHERE record_time OPERATOR(pg_catalog.<) "
				 "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
				 1, types, values, NULL, SPI_OK_DELETE);
		spi_exec("DELETE FROM kafka.stream_error_log "
				 "WHERE record_time OPERATOR(pg_catalog.<) "
				 "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
				 1, types, values, NULL, SPI_OK_DELETE);
	}
	spi_end(&s);
}

/* Record offsets [from, to) of a partition deleted by retention before ingestion. */
void
kafka_stream_log_lost_range(Oid mv_oid, TimestampTz refresh_time, int32 partition,
							int64 from, int64 to)
{
	SpiSession	s;
	Oid			types[6] = {OIDOID, INT8OID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID};
	Datum		values[6] = {ObjectIdGetDatum(mv_oid), Int64GetDatum(current_transaction_id()),
		TimestampTzGetDatum(refresh_time), Int32GetDatum(partition), Int64GetDatum(from),
	Int64GetDatum(to)};

	spi_begin(&s);
	spi_exec("INSERT INTO kafka.stream_error_log (mv_oid, transaction_id, record_time, partition_id, "
			 "position, error_code, error_reason, lost_to, lost_count) "
			 "VALUES ($1, $2, $3, $4, $5, 'lost', "
			 "pg_catalog.format('offsets %s to %s were deleted by retention before they were ingested', "
			 "$5, $6 OPERATOR(pg_catalog.-) 1), "
			 "$6, $6 OPERATOR(pg_catalog.-) $5)",
			 6, types, values, NULL, SPI_OK_INSERT);
	spi_end(&s);
}

/* The OIDs a query of mv_oid returns, as a List. */
static List *
stream_views(const char *sql)
{
	SpiSession	s;
	List	   *views = NIL;
	MemoryContext caller = CurrentMemoryContext;

	spi_begin(&s);
	spi_exec(sql, 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(caller);

		views = lappend_oid(views, oid);
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	return views;
}

/* The streaming views with auto refresh on, as a List of OIDs. */
List *
kafka_stream_auto_views(void)
{
	return stream_views("SELECT mv_oid FROM kafka.stream_state WHERE auto_refresh ORDER BY mv_oid");
}

/* Every streaming view, as a List of OIDs. */
List *
kafka_stream_all_views(void)
{
	return stream_views("SELECT mv_oid FROM kafka.stream_state ORDER BY mv_oid");
}

void
kafka_stream_set_auto_refresh(Oid mv_oid, bool enabled)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, BOOLOID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), BoolGetDatum(enabled)};

	spi_begin(&s);
	spi_exec("UPDATE kafka.stream_state SET auto_refresh = $2 WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

/* Record a failed refresh (by the auto-refresh worker, in a new transaction). */
void
kafka_stream_record_failure(Oid mv_oid, const char *message)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), CStringGetTextDatum(message)};

	spi_begin(&s);
	spi_exec("UPDATE kafka.stream_state SET last_refresh_status = 'error', last_error = $2, "
			 "last_error_time = pg_catalog.now(), last_refresh_time = pg_catalog.now() "
			 "WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

/*----------------------------------------------------------------------
 * Dump and restore (stream_dump.c): a view's state by name instead of OID
 *----------------------------------------------------------------------
 */

/* The state, offsets and logs of a view as one jsonb value, for a dump. */
Datum
kafka_stream_dump_state(Oid mv_oid)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};
	Datum		result = (Datum) 0;
	MemoryContext caller = CurrentMemoryContext;

	spi_begin(&s);
	/*
	 * read_only: in the calling statement's snapshot, the one in which
	 * kafka._dump_contents() reads the view's rows, also under READ
	 * COMMITTED (pg_dump's transactions are REPEATABLE READ anyway).
	 */
	if (SPI_execute_with_args("SELECT pg_catalog.jsonb_build_object("
			 "'owner', (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c "
			 "WHERE c.oid OPERATOR(pg_catalog.=) l.mv_oid), "
			 "'source', (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c "
			 "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
			 "WHERE c.oid OPERATOR(pg_catalog.=) l.ftable_oid), "
			 "'state', pg_catalog.to_jsonb(l) OPERATOR(pg_catalog.-) 'mv_oid'::pg_catalog.text "
			 "OPERATOR(pg_catalog.-) 'ftable_oid'::pg_catalog.text, "
			 "'offsets', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(o) "
			 "OPERATOR(pg_catalog.-) 'mv_oid'::pg_catalog.text ORDER BY o.partition_id) "
			 "FROM kafka.stream_offsets o WHERE o.mv_oid OPERATOR(pg_catalog.=) l.mv_oid), '[]'::pg_catalog.jsonb), "
			 "'scan_log', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(g) "
			 "OPERATOR(pg_catalog.-) 'mv_oid'::pg_catalog.text) "
			 "FROM kafka.stream_scan_log g WHERE g.mv_oid OPERATOR(pg_catalog.=) l.mv_oid), '[]'::pg_catalog.jsonb), "
			 "'error_log', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(e) "
			 "OPERATOR(pg_catalog.-) 'mv_oid'::pg_catalog.text) "
			 "FROM kafka.stream_error_log e WHERE e.mv_oid OPERATOR(pg_catalog.=) l.mv_oid), '[]'::pg_catalog.jsonb)) "
			 "FROM kafka.stream_state l WHERE l.mv_oid OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "kafka_fdw state query failed");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		result = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	if (result == (Datum) 0)
		elog(ERROR, "relation %u is not a streaming materialized view", mv_oid);
	return result;
}

/* The staged rows of dumps, wherever the restore's COPY left them. */
#define STAGED_SQL(cols, cond) \
	"SELECT " cols " FROM kafka.stream_restore WHERE " cond \
	" UNION ALL SELECT " cols " FROM kafka.stream_dump WHERE " cond

/*
 * The 'state' line a restore staged for the view named mv_name (see
 * kafka_stream_dump_state), or false if there is none.  Two of them (two
 * dumps restored) are an error.
 */
bool
kafka_stream_staged_state(const char *mv_name, KafkaStagedState *staged)
{
	SpiSession	s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(mv_name)};
	MemoryContext caller = CurrentMemoryContext;
	bool		found = false;

	if (!OidIsValid(extension_table("stream_restore")))
		return false;
	spi_begin(&s);
	spi_exec("SELECT payload, payload::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'state' "
			 "OPERATOR(pg_catalog.->>) 'topic', "
			 "(payload::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int8, "
			 "payload::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'owner', "
			 "payload::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'source', "
			 "(payload::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'aggregate_state_rows')::pg_catalog.int8 FROM ("
			 STAGED_SQL("payload", "mv_name OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) 'state'")
			 ") s",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("two dumps of materialized view \"%s\" were restored", mv_name),
				 errdetail("kafka.stream_restore holds the rows and offsets of more than one dump of the view."),
				 errhint("Restore one dump into an empty database.")));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(caller);

		staged->payload = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
		{
			Datum		d = SPI_getbinval(tup, desc, 2, &isnull);

			staged->topic = isnull ? NULL : TextDatumGetCString(d);
		}
		{
			Datum		d = SPI_getbinval(tup, desc, 3, &isnull);

			staged->rows = isnull ? -1 : DatumGetInt64(d);
		}
		{
			Datum		d = SPI_getbinval(tup, desc, 4, &isnull);

			staged->owner = isnull ? NULL : TextDatumGetCString(d);
		}
		{
			Datum		d = SPI_getbinval(tup, desc, 5, &isnull);

			staged->source = isnull ? NULL : TextDatumGetCString(d);
		}
		{
			Datum		d = SPI_getbinval(tup, desc, 6, &isnull);

			staged->state_rows = isnull ? -1 : DatumGetInt64(d);
		}
		MemoryContextSwitchTo(old);
		found = true;
	}
	spi_end(&s);
	return found;
}

/*
 * The names of the replicas (kind 'r') whose 'state' lines a restore has
 * staged, as a List of strings.
 */
List *
kafka_stream_staged_replicas(void)
{
	SpiSession	s;
	List	   *names = NIL;
	MemoryContext caller = CurrentMemoryContext;

	if (!OidIsValid(extension_table("stream_restore")))
		return NIL;
	spi_begin(&s);
	spi_exec("SELECT mv_name FROM kafka.stream_restore WHERE kind OPERATOR(pg_catalog.=) 'state' "
			 "AND payload::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'state' "
			 "OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) 'r' ORDER BY mv_name",
			 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		names = lappend(names, TextDatumGetCString(d));
		MemoryContextSwitchTo(old);
	}
	spi_end(&s);
	return names;
}

/*
 * The rows of the dump a restored replica must hold before its first apply
 * (kafka.stream_state.restore_rows), or -1 for none; set it with rows -1 to
 * forget it.
 */
int64
kafka_stream_restore_rows(Oid mv_oid)
{
	SpiSession	s;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(mv_oid)};
	int64		rows = -1;

	if (!has_kinds())
		return -1;
	spi_begin(&s);
	spi_exec("SELECT restore_rows FROM kafka.stream_state WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		rows = isnull ? -1 : DatumGetInt64(d);
	}
	spi_end(&s);
	return rows;
}

void
kafka_stream_set_restore_rows(Oid mv_oid, int64 rows)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, INT8OID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), Int64GetDatum(rows)};

	spi_begin(&s);
	spi_exec("UPDATE kafka.stream_state SET restore_rows = $2 WHERE mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, rows < 0 ? " n" : NULL, SPI_OK_UPDATE);
	spi_end(&s);
}

/*
 * Call fn for every staged line of the given kind ('row', 'aggregate_state')
 * of the view named mv_name, read in batches through a cursor (a view may
 * hold millions of rows).  fn runs in the SPI session, as the extension's
 * owner: it switches to what it needs.  Returns the number of lines.
 */
uint64
kafka_stream_staged_rows(const char *mv_name, const char *kind,
						 void (*fn) (const char *payload, void *arg), void *arg)
{
	SpiSession	s;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(mv_name), CStringGetTextDatum(kind)};
	Portal		portal;
	uint64		n = 0;

	spi_begin(&s);
	portal = SPI_cursor_open_with_args(NULL,
									   STAGED_SQL("payload", "mv_name OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) $2"),
									   2, types, values, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
			char	   *payload = TextDatumGetCString(d);

			CHECK_FOR_INTERRUPTS();
			fn(payload, arg);
			pfree(payload);
			n++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	spi_end(&s);
	return n;
}

/* The per-view tables a dump holds, and their keys in its 'state' line. */
static const char *const dumped_tables[][2] = {
	{"stream_offsets", "offsets"},
	{"stream_scan_log", "scan_log"},
	{"stream_error_log", "error_log"},
};

/*
 * Put back the dumped state of a view (its 'state' line, payload) under its
 * new OID: the state's fields, the offsets with their last records, and the
 * logs; then forget the staged lines.  The topic was checked by the caller.
 */
void
kafka_stream_apply_staged(Oid mv_oid, const char *mv_name, const char *payload)
{
	SpiSession	s;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(mv_oid), CStringGetTextDatum(payload)};
	Oid			ntypes[1] = {TEXTOID};
	Datum		nvalues[1] = {CStringGetTextDatum(mv_name)};

	spi_begin(&s);
	/* a field the dump lacks keeps the value of the view's registration */
	spi_exec("UPDATE kafka.stream_state l SET auto_refresh = COALESCE(x.auto_refresh, l.auto_refresh), "
			 "next_start = x.next_start, "
			 "created_at = COALESCE(x.created_at, l.created_at), last_refresh_time = x.last_refresh_time, "
			 "last_refresh_rows = x.last_refresh_rows, last_refresh_status = x.last_refresh_status, "
			 "last_error = x.last_error, last_error_time = x.last_error_time, "
			 "last_success_time = x.last_success_time, total_rows = COALESCE(x.total_rows, l.total_rows) "
			 "FROM pg_catalog.jsonb_populate_record(NULL::kafka.stream_state, "
			 "$2::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'state') x "
			 "WHERE l.mv_oid OPERATOR(pg_catalog.=) $1",
			 2, types, values, NULL, SPI_OK_UPDATE);
	/* the rows of the per-view tables, each under its key in the state */
	for (int i = 0; i < (int) lengthof(dumped_tables); i++)
		spi_exec(psprintf("INSERT INTO kafka.%s SELECT r.* "
						  "FROM pg_catalog.jsonb_array_elements($2::pg_catalog.jsonb OPERATOR(pg_catalog.->) '%s') e, "
						  "LATERAL pg_catalog.jsonb_populate_record(NULL::kafka.%s, "
						  "e OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('mv_oid', $1)) r",
						  dumped_tables[i][0], dumped_tables[i][1], dumped_tables[i][0]),
				 2, types, values, NULL, SPI_OK_INSERT);
	spi_exec("DELETE FROM kafka.stream_restore WHERE mv_name OPERATOR(pg_catalog.=) $1",
			 1, ntypes, nvalues, NULL, SPI_OK_DELETE);
	spi_exec("DELETE FROM kafka.stream_dump WHERE mv_name OPERATOR(pg_catalog.=) $1",
			 1, ntypes, nvalues, NULL, SPI_OK_DELETE);
	spi_end(&s);
}

/*-------------------------------------------------------------------------
 *
 * stream_dump.c
 *		Logical dump and restore of streams: every row of a streaming view,
 *		the groups and avg state of an aggregating view, the registration
 *		of a replica table, and their offsets survive pg_dump and restore.
 *
 * A streaming view can hold records that Kafka's retention has deleted, so
 * it cannot be rebuilt from its topic.  pg_dump writes a materialized view
 * as CREATE ... WITH NO DATA and a REFRESH in post-data, and never its rows;
 * the extension's state tables are keyed by OIDs that change on restore.
 * The design (SQL objects in sections 5 and 6 of kafka_fdw--1.0--1.1.sql):
 *
 *	1. Dump.  kafka.stream_dump is an extension configuration table whose
 *	   dump condition adds the lines of kafka._dump_contents(): for every
 *	   streaming view the user may read, each row as text and one 'state'
 *	   line (kafka._dump_state(): state, offsets, logs, by the view's
 *	   qualified name), all read in pg_dump's one snapshot, so the rows and
 *	   the offsets belong together.
 *	2. Restore, data section.  A trigger moves what the COPY put into
 *	   kafka.stream_dump to kafka.stream_restore, which only the extension
 *	   reads, before the COPY commits.
 *	3. Restore, post-data.  pg_dump's REFRESH of the (still unpopulated)
 *	   view comes here before anything is read from Kafka: the staged rows
 *	   are inserted (converted as the view's owner, who owns their types),
 *	   their count is checked against the dump's, the offsets, fingerprints,
 *	   state and logs are put back under the view's new OID, and the
 *	   refresh goes on from those offsets: exactly once.
 *	4. A restore REFRESH without staged lines (the dump left kafka_fdw's
 *	   data out: pg_dump --table, --exclude-table-data; or its COPY failed)
 *	   would ingest the topic from start_offset and silently miss what
 *	   retention deleted: it is refused.  A restore is recognised by
 *	   check_function_bodies = off, which every pg_dump script and
 *	   pg_restore set, and which sessions otherwise leave on.
 *
 * The other kinds of streams (section 6):
 *
 *	5. An aggregating view ('a') is dumped and restored as above, its groups
 *	   being its rows; the sums and counts of its avg columns (its state
 *	   table, a member of the extension that pg_dump leaves out) are dumped
 *	   as 'aggregate_state' lines, converted to text as the view's owner,
 *	   and put back by the same REFRESH into the state table that the
 *	   restore's CREATE made.  That CREATE leaves the unique index on the
 *	   group keys to the dump, which creates it before the REFRESH.
 *	6. A replica ('r') is a table: pg_dump's own COPY restores its rows, and
 *	   its 'state' line (offsets, logs, its Kafka table's name, its number
 *	   of rows) has no REFRESH to wait for.  The staging trigger registers
 *	   the replica again at once (kafka._restore_replicas(): the tables of
 *	   pre-data exist by then), whether the table's COPY comes before or
 *	   after kafka.stream_dump's, and records the dumped number of rows.  The
 *	   first apply checks that the table holds them before it goes on from
 *	   the dumped offsets: an apply while the table's COPY is still to come
 *	   (an auto-refresh worker) fails and is retried, and a dump restored
 *	   without the table's rows is refused, not applied on top of nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"

#include "stream.h"

PG_FUNCTION_INFO_V1(kafka_dump_state);
PG_FUNCTION_INFO_V1(kafka_dump_streams);
PG_FUNCTION_INFO_V1(kafka_dump_aggregate_state);
PG_FUNCTION_INFO_V1(kafka_restore_replicas);

/*
 * kafka._dump_streams() -> setof regclass
 *		The streaming views the current user may read (SELECT or the
 *		owner's privileges), which a dump by this user holds.  Not through
 *		the view kafka.streams: pg_dump reads no views
 *		(restrict_nonsystem_relation_kind).
 */
Datum
kafka_dump_streams(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, kafka_stream_all_views())
	{
		Oid			mv_oid = lfirst_oid(lc);
		Oid			owner = kafka_relation_owner(mv_oid);
		Datum		value = ObjectIdGetDatum(mv_oid);
		bool		isnull = false;

		if (OidIsValid(owner) && kafka_may_read_stream(mv_oid, owner))
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

/*
 * kafka._dump_state(view regclass) -> jsonb
 *		The view's state, offsets and logs, for kafka._dump_contents().
 *		Needs SELECT on the view or its owner's privileges, as the
 *		monitoring views do.
 */
Datum
kafka_dump_state(PG_FUNCTION_ARGS)
{
	Oid			mv_oid = PG_GETARG_OID(0);
	KafkaStreamState st;

	kafka_streaming_view_arg(mv_oid, false, &st);
	PG_RETURN_DATUM(kafka_stream_dump_state(mv_oid));
}

/*
 * kafka._dump_aggregate_state(view regclass) -> setof text
 *		The rows of an aggregating view's avg state table as text, for
 *		kafka._dump_contents(), read in the calling statement's snapshot
 *		(pg_dump's, the one its rows and offsets are read in).  The table is
 *		the extension's; the view's readers may have its rows.  Each row is
 *		converted as the view's owner, who owns its key types.
 */
Datum
kafka_dump_aggregate_state(PG_FUNCTION_ARGS)
{
	Oid			mv_oid = PG_GETARG_OID(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	KafkaStreamState st;
	Oid			side;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	FmgrInfo	record_out;
	Oid			owner = kafka_relation_owner(mv_oid);
	MemoryContext row_cxt;

	kafka_streaming_view_arg(mv_oid, false, &st);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	side = st.kind == KAFKA_STREAM_AGGREGATE ? kafka_aggregate_state_table(mv_oid) : InvalidOid;
	if (!OidIsValid(side))
		return (Datum) 0;

	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw dump row",
									ALLOCSET_DEFAULT_SIZES);
	fmgr_info(F_RECORD_OUT, &record_out);
	rel = table_open(side, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(row_cxt);
		Oid			save_userid;
		int			save_sec;
		Datum		row = ExecFetchSlotHeapTupleDatum(slot);
		Datum		text;
		bool		isnull = false;

		CHECK_FOR_INTERRUPTS();
		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(owner, save_sec | SECURITY_RESTRICTED_OPERATION);
		text = CStringGetTextDatum(OutputFunctionCall(&record_out, row));
		SetUserIdAndSecContext(save_userid, save_sec);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &text, &isnull);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	MemoryContextDelete(row_cxt);
	return (Datum) 0;
}

/* Inserting the staged rows of one view. */
typedef struct RestoreRows
{
	Relation	matview;
	DestReceiver *dest;
	TupleTableSlot *slot;
	FmgrInfo	record_in;
	Oid			owner;			/* the view's owner: converts the rows */
	MemoryContext caller;		/* the receiver's context */
	MemoryContext row_cxt;		/* one row's conversion, reset per row */
} RestoreRows;

static void
restore_row(const char *payload, void *arg)
{
	RestoreRows *r = arg;
	MemoryContext old = MemoryContextSwitchTo(r->row_cxt);
	Oid			save_userid;
	int			save_sec;
	Datum		d;
	HeapTupleHeader th;
	HeapTupleData tuple;

	/*
	 * record_in runs the columns' input functions and domain checks: as the
	 * view's owner, as a refresh evaluates the view's query, never as the
	 * extension's owner.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(r->owner, save_sec | SECURITY_RESTRICTED_OPERATION);
	d = InputFunctionCall(&r->record_in, (char *) payload,
						  r->matview->rd_rel->reltype, -1);
	SetUserIdAndSecContext(save_userid, save_sec);

	th = (HeapTupleHeader) PG_DETOAST_DATUM(d);
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	ExecStoreHeapTuple(&tuple, r->slot, false);

	/* the receiver buffers a copy, in its own context */
	MemoryContextSwitchTo(r->caller);
	r->dest->receiveSlot(r->slot, r->dest);
	ExecClearTuple(r->slot);
	MemoryContextReset(r->row_cxt);
	MemoryContextSwitchTo(old);
}

/*
 * Insert the staged lines of the given kind of the view named name into
 * target (the view, or its avg state table), converted as owner; returns
 * how many.
 */
static uint64
insert_staged_rows(Relation target, Oid owner, const char *name, const char *kind)
{
	RestoreRows r;
	uint64		lines;
	uint64		inserted;
	Relation	matview = target;

	r.matview = matview;
	r.owner = owner;
	r.caller = CurrentMemoryContext;
	r.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw restore row",
									  ALLOCSET_DEFAULT_SIZES);
	fmgr_info(F_RECORD_IN, &r.record_in);
	r.slot = MakeSingleTupleTableSlot(RelationGetDescr(matview), &TTSOpsHeapTuple);
	r.dest = kafka_create_stream_dest(matview);
	r.dest->rStartup(r.dest, CMD_INSERT, RelationGetDescr(matview));

	lines = kafka_stream_staged_rows(name, kind, restore_row, &r);

	r.dest->rShutdown(r.dest);
	inserted = kafka_stream_dest_processed(r.dest);
	r.dest->rDestroy(r.dest);
	ExecDropSingleTupleTableSlot(r.slot);
	MemoryContextDelete(r.row_cxt);
	if (inserted != lines)
		elog(ERROR, "restored %llu of %llu staged rows",
			 (unsigned long long) inserted, (unsigned long long) lines);
	return inserted;
}

/* The dump said how many rows (dumped; -1: it does not say), restored were. */
static void
check_restored_count(const char *relname, int64 dumped, uint64 restored, const char *what)
{
	if (dumped >= 0 && restored != (uint64) dumped)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the dump of materialized view \"%s\" holds " INT64_FORMAT " %s, but " UINT64_FORMAT " were restored",
						relname, dumped, what, restored),
				 errdetail("Part of the view's data in kafka.stream_dump was not restored."),
				 errhint("Restore the dump again into an empty database.")));
}

/* A stream restored with auto refresh on gets its worker, if there can be one. */
static void
warn_no_auto_refresh_worker(Oid mv_oid, const char *relname)
{
	KafkaStreamState restored;

	if (kafka_stream_lookup(mv_oid, &restored) && restored.auto_refresh &&
		!kafka_auto_refresh_wake_at_commit())
		ereport(WARNING,
				(errmsg("\"%s\" was restored with auto refresh on, but no worker can run it",
						relname),
				 errhint("Add kafka_fdw to shared_preload_libraries and restart the server.")));
}

/*
 * The staged lines of a dump belong to the dumped stream's owner: only a
 * stream owned by that role (whose role the restore gave it) or a superuser
 * may take them, not whoever created a stream of that name after a restore
 * went wrong.
 */
static void
check_staged_owner(const char *relname, const char *noun, Oid owner,
				   const KafkaStagedState *staged)
{
	if (!superuser() &&
		(staged->owner == NULL ||
		 strcmp(staged->owner, GetUserNameFromId(owner, false)) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the dump of %s \"%s\" belongs to role \"%s\"",
						noun, relname, staged->owner ? staged->owner : "?"),
				 errhint("A superuser, or the %s owned by that role, may restore it.", noun)));
}

/* The dumped offsets are positions in the dumped topic. */
static void
check_staged_topic(const char *relname, const char *noun, const char *topic,
				   const KafkaStagedState *staged)
{
	if (staged->topic == NULL || strcmp(staged->topic, topic) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the dump of %s \"%s\" holds records of topic \"%s\", but its table now reads topic \"%s\"",
						noun, relname, staged->topic ? staged->topic : "?", topic),
				 errhint("Set the foreign table's topic option back to '%s' and restore again.",
						 staged->topic ? staged->topic : "?")));
}

/*
 * Called by the REFRESH of a streaming view that is not populated and has
 * no stored offsets.  If a restore staged the view's rows and state, put
 * them back and return true (the caller's refresh then goes on from the
 * restored offsets).  Otherwise return false, or, in a restore, refuse.
 */
bool
kafka_stream_restore_dumped(Relation matview, const KafkaStreamState *st,
							const KafkaTableOptions *opts)
{
	const char *relname = RelationGetRelationName(matview);
	char	   *name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(matview)),
												  relname);
	KafkaStagedState staged;
	uint64		rows;

	if (!kafka_stream_staged_state(name, &staged))
	{
		if (!check_function_bodies)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the dump being restored holds no rows of streaming materialized view \"%s\"",
							relname),
					 errdetail("The dump left out kafka_fdw's data (as pg_dump --table or --exclude-table-data do), or its restore failed. Loading the view from its topic's start_offset would miss every record that Kafka's retention deleted."),
					 errhint("Restore a dump of the whole database. To load the view from its topic instead, run REFRESH MATERIALIZED VIEW %s in a session with check_function_bodies on.",
							 name)));
		return false;
	}

	check_staged_owner(relname, "materialized view", matview->rd_rel->relowner, &staged);
	check_staged_topic(relname, "materialized view", opts->topic, &staged);

	rows = insert_staged_rows(matview, matview->rd_rel->relowner, name, "row");
	check_restored_count(relname, staged.rows, rows, "rows");
	if (st->kind == KAFKA_STREAM_AGGREGATE)
	{
		Oid			side = kafka_aggregate_state_table(st->mv_oid);

		if (OidIsValid(side))
		{
			Relation	rel = table_open(side, RowExclusiveLock);
			uint64		n = insert_staged_rows(rel, matview->rd_rel->relowner, name,
											   "aggregate_state");

			table_close(rel, NoLock);
			/* groups without their sums and counts could not be merged */
			check_restored_count(relname, staged.state_rows < 0 && rows > 0 ? 0 : staged.state_rows,
								 n, "rows of avg state");
		}
	}
	kafka_stream_apply_staged(st->mv_oid, name, staged.payload);
	CommandCounterIncrement();

	warn_no_auto_refresh_worker(st->mv_oid, relname);
	ereport(NOTICE,
			(errmsg("restored " UINT64_FORMAT " rows and the offsets of streaming materialized view \"%s\" from the dump",
					rows, relname)));
	return true;
}

/*
 * Register the replica named name again from its staged 'state' line, or
 * leave the line staged with a WARNING when the dump's objects are not there.
 */
static void
restore_replica(const char *name)
{
	KafkaStagedState staged;
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	Oid			relid = RangeVarGetRelid(rv, AccessShareLock, true);
	Oid			source = InvalidOid;
	KafkaStreamState st;
	KafkaTableOptions opts;

	if (!kafka_stream_staged_state(name, &staged))
		return;
	if (staged.source)
		source = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(staged.source)),
								  AccessShareLock, true);
	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_RELATION ||
		!OidIsValid(source) || !kafka_is_kafka_table(source))
	{
		ereport(WARNING,
				(errmsg("the dump of replica %s is left staged: %s", name,
						!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_RELATION ?
						"the dump being restored created no such table" :
						"its Kafka table is missing"),
				 errhint("Restore a dump of the whole database.")));
		return;
	}
	if (kafka_stream_lookup(relid, &st))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is a stream already", rv->relname),
				 errhint("Restore one dump into an empty database.")));
	check_staged_owner(rv->relname, "replica table", kafka_relation_owner(relid), &staged);
	kafka_get_table_options(source, &opts);
	check_staged_topic(rv->relname, "replica table", opts.topic, &staged);

	kafka_stream_register(relid, source, opts.topic, KAFKA_STREAM_REPLICA);
	CommandCounterIncrement();
	kafka_stream_apply_staged(relid, name, staged.payload);
	kafka_stream_set_restore_rows(relid, staged.rows < 0 ? 0 : staged.rows);
	CommandCounterIncrement();
	warn_no_auto_refresh_worker(relid, rv->relname);
	ereport(NOTICE,
			(errmsg("restored the offsets of replica table \"%s\" from the dump", rv->relname),
			 errdetail("Its first apply checks that the table holds the dump's " INT64_FORMAT " rows.",
					   staged.rows < 0 ? 0 : staged.rows)));
}

/*
 * kafka._restore_replicas() -> void
 *		Called by the trigger that stages what a restore's COPY put into
 *		kafka.stream_dump: register the staged replicas again.
 */
Datum
kafka_restore_replicas(PG_FUNCTION_ARGS)
{
	ListCell   *lc;

	foreach(lc, kafka_stream_staged_replicas())
		restore_replica((const char *) lfirst(lc));
	PG_RETURN_VOID();
}

/*
 * Called by the apply of a replica (refresh.c), under its ExclusiveLock.  A
 * replica registered by a restore goes on from the dumped offsets only once
 * the table holds the dumped rows: before the restore's COPY of the table
 * (which may come after kafka.stream_dump's) the apply fails and the
 * auto-refresh worker retries it; a restore that lacks the rows is refused.
 * Without stored offsets (reset_stream) the topic is applied from its start
 * and there is nothing to check.
 */
void
kafka_replica_check_restored(Relation replica)
{
	Oid			relid = RelationGetRelid(replica);
	int64		expected = kafka_stream_restore_rows(relid);
	KafkaStoredPosition *positions;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	int64		rows = 0;

	if (expected < 0)
		return;
	if (kafka_stream_load_positions(relid, &positions) > 0)
	{
		/* the latest snapshot: the lock waited for a COPY that may have committed since */
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		slot = table_slot_create(replica, NULL);
		scan = table_beginscan(replica, snapshot, 0, NULL);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			CHECK_FOR_INTERRUPTS();
			rows++;
		}
		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		UnregisterSnapshot(snapshot);
		if (rows != expected)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replica \"%s\" holds " INT64_FORMAT " rows, but the dump it was restored from held " INT64_FORMAT,
							RelationGetRelationName(replica), rows, expected),
					 errdetail("Its offsets are the dump's: applying the events after them to other rows would not give the source's table."),
					 errhint("If the restore is still running, wait for it to finish. Otherwise restore the table's rows from the same dump, or apply the topic again from the start with kafka.reset_stream('%s', 'earliest').",
							 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(replica)),
														RelationGetRelationName(replica)))));
	}
	kafka_stream_set_restore_rows(relid, -1);
	CommandCounterIncrement();
}

/*-------------------------------------------------------------------------
 *
 * stream_dump.c
 *		Logical dump and restore of streaming materialized views: every row
 *		and the offsets survive pg_dump and pg_restore.
 *
 * A streaming view can hold records that Kafka's retention has deleted, so
 * it cannot be rebuilt from its topic.  pg_dump writes a materialized view
 * as CREATE ... WITH NO DATA and a REFRESH in post-data, and never its rows;
 * the extension's state tables are keyed by OIDs that change on restore.
 * The design (SQL objects in section 6 of kafka_fdw--1.0--1.1.sql):
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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
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

#include "stream.h"

PG_FUNCTION_INFO_V1(kafka_dump_state);
PG_FUNCTION_INFO_V1(kafka_dump_streams);

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

/* Insert the staged rows of the view named name; returns how many. */
static uint64
insert_staged_rows(Relation matview, const char *name)
{
	RestoreRows r;
	uint64		lines;
	uint64		inserted;

	r.matview = matview;
	r.owner = matview->rd_rel->relowner;
	r.caller = CurrentMemoryContext;
	r.row_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw restore row",
									  ALLOCSET_DEFAULT_SIZES);
	fmgr_info(F_RECORD_IN, &r.record_in);
	r.slot = MakeSingleTupleTableSlot(RelationGetDescr(matview), &TTSOpsHeapTuple);
	r.dest = kafka_create_stream_dest(matview);
	r.dest->rStartup(r.dest, CMD_INSERT, RelationGetDescr(matview));

	lines = kafka_stream_staged_rows(name, restore_row, &r);

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

	/*
	 * The staged rows are the dumped view's: only its owner (whose role the
	 * restore gave it) or a superuser may take them, not whoever created a
	 * view of that name after a restore went wrong.
	 */
	if (!superuser() &&
		(staged.owner == NULL ||
		 strcmp(staged.owner, GetUserNameFromId(matview->rd_rel->relowner, false)) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the dump of materialized view \"%s\" belongs to role \"%s\"",
						relname, staged.owner ? staged.owner : "?"),
				 errhint("A superuser, or the view owned by that role, may restore it.")));

	/* the dumped offsets are positions in the dumped topic */
	if (staged.topic == NULL || strcmp(staged.topic, opts->topic) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the dump of materialized view \"%s\" holds records of topic \"%s\", but its table now reads topic \"%s\"",
						relname, staged.topic ? staged.topic : "?", opts->topic),
				 errhint("Set the foreign table's topic option back to '%s' and refresh again.",
						 staged.topic ? staged.topic : "?")));

	rows = insert_staged_rows(matview, name);
	if (staged.rows >= 0 && rows != (uint64) staged.rows)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the dump of materialized view \"%s\" holds " INT64_FORMAT " rows, but " UINT64_FORMAT " were restored",
						relname, staged.rows, rows),
				 errdetail("Part of the view's data in kafka.stream_dump was not restored."),
				 errhint("Restore the dump again into an empty database.")));
	kafka_stream_apply_staged(st->mv_oid, name, staged.payload);
	CommandCounterIncrement();

	{
		KafkaStreamState restored;

		if (kafka_stream_lookup(st->mv_oid, &restored) && restored.auto_refresh &&
			!kafka_auto_refresh_wake_at_commit())
			ereport(WARNING,
					(errmsg("materialized view \"%s\" was restored with auto refresh on, but no worker can run it",
							relname),
					 errhint("Add kafka_fdw to shared_preload_libraries and restart the server.")));
	}
	ereport(NOTICE,
			(errmsg("restored " UINT64_FORMAT " rows and the offsets of streaming materialized view \"%s\" from the dump",
					rows, relname)));
	return true;
}

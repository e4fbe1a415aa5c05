/*-------------------------------------------------------------------------
 *
 * refresh.c
 *		Streaming materialized views: CREATE and REFRESH MATERIALIZED VIEW
 *		over a kafka_fdw table, intercepted by a ProcessUtility hook.
 *
 * A materialized view whose query reads one kafka_fdw table, with only
 * projections, filters and function calls, is a streaming view.  PostgreSQL
 * creates it (empty); we record it in kafka.stream_state and load it.  On
 * REFRESH, instead of PostgreSQL's rebuild, we append what arrived since:
 *
 *	1. lock the view with ExclusiveLock: refreshes serialize, readers (ACCESS
 *	   SHARE) are never blocked;
 *	2. capture every partition's watermarks once, and read the stored next
 *	   offsets; each partition gets the range [next, high watermark).  New
 *	   partitions start at their earliest offset (at the table's start_offset
 *	   on the first load); a stored offset below the low watermark resumes
 *	   there with a WARNING and a logged lost range; one above the high
 *	   watermark is an error;
 *	3. run the view's own query, as the view's owner, with those ranges
 *	   handed to the scan (kafka_active_stream), appending the rows through
 *	   the bulk insert receiver (stream_insert.c);
 *	4. store the new offsets (the captured high watermarks) and the scan log
 *	   in the same transaction as the rows.
 *
 * Whatever fails, nothing is half done: rows and offsets commit together or
 * not at all, so the next refresh ingests exactly the missing records.
 *
 * REFRESH ... WITH NO DATA is PostgreSQL's (empty, unpopulated) and also
 * forgets the offsets.  kafka.reset_stream() empties, sets where to start,
 * and refreshes: replay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_inherits.h"
#include "commands/event_trigger.h"
#include "commands/matview.h"
#include "executor/executor.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "cdc.h"
#include "functions.h"
#include "stream.h"

KafkaStreamContext *kafka_active_stream = NULL;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* > 0 while a utility command runs through our hook (see the guard below) */
static int	utility_depth = 0;

PG_FUNCTION_INFO_V1(kafka_reset_stream);
PG_FUNCTION_INFO_V1(kafka_guard_streaming_ddl);
PG_FUNCTION_INFO_V1(kafka_stream_lag);
PG_FUNCTION_INFO_V1(kafka_stream_lag_rows);

/* The owner of a relation, or InvalidOid if it does not exist. */
Oid
kafka_relation_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/* Is relid a foreign table served by kafka_fdw? */
bool
kafka_is_kafka_table(Oid relid)
{
	ForeignTable *ft;
	ForeignServer *server;
	ForeignDataWrapper *fdw;
	char	   *handler;

	if (get_rel_relkind(relid) != RELKIND_FOREIGN_TABLE)
		return false;
	ft = GetForeignTable(relid);
	server = GetForeignServer(ft->serverid);
	fdw = GetForeignDataWrapper(server->fdwid);
	if (!OidIsValid(fdw->fdwhandler))
		return false;
	handler = get_func_name(fdw->fdwhandler);
	return handler && strcmp(handler, "kafka_fdw_handler") == 0;
}

typedef struct KafkaTablesSearch
{
	List	   *found;			/* kafka_fdw tables */
	List	   *views;			/* the views being looked into */
} KafkaTablesSearch;

static bool find_kafka_tables_walker(Node *node, KafkaTablesSearch *search);

/*
 * Look into a plain view's query.  In PostgreSQL 15 its range table starts
 * with the view itself (the rule's OLD and NEW), which is skipped.
 */
static void
find_kafka_tables_in_view(Oid viewid, KafkaTablesSearch *search)
{
	Relation	view;

	if (list_member_oid(search->views, viewid))
		return;
	check_stack_depth();		/* views over views */
	view = table_open(viewid, AccessShareLock);
	search->views = lappend_oid(search->views, viewid);
	find_kafka_tables_walker((Node *) get_view_query(view), search);
	search->views = list_delete_last(search->views);
	table_close(view, AccessShareLock);
}

static bool
find_kafka_tables_walker(Node *node, KafkaTablesSearch *search)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;
		ListCell   *lc;

		foreach(lc, q->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind != RTE_RELATION)
				continue;
			if (rte->relkind == RELKIND_VIEW)
				find_kafka_tables_in_view(rte->relid, search);
			else if (kafka_is_kafka_table(rte->relid))
				search->found = list_append_unique_oid(search->found, rte->relid);
		}
		return query_tree_walker(q, find_kafka_tables_walker, search, 0);
	}
	return expression_tree_walker(node, find_kafka_tables_walker, search);
}

/*
 * kafka_fdw tables a query reads, anywhere in it, also through plain views
 * (which the query names unexpanded: the rewriter has not run yet).
 */
static List *
kafka_tables_in_query(Query *query)
{
	KafkaTablesSearch search = {NIL, NIL};

	find_kafka_tables_walker((Node *) query, &search);
	return search.found;
}

static void
reject_shape(const char *viewname, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("materialized view \"%s\" over a Kafka topic cannot use %s", viewname, what),
			 errdetail("A streaming materialized view reads one kafka_fdw table with projections, filters and function calls only."),
			 errhint("Create the streaming materialized view without it, and build a regular view or materialized view on top of the streaming one.")));
}

/*
 * Check that a materialized view's query has the streaming shape; returns
 * the kafka_fdw table it reads.
 */
static Oid
validate_streaming_query(Query *query, const char *viewname)
{
	RangeTblEntry *rte;
	List	   *tables = kafka_tables_in_query(query);

	if (list_length(tables) > 1)
		reject_shape(viewname, "more than one Kafka table");
	if (query->setOperations)
		reject_shape(viewname, "set operations");
	if (query->cteList)
		reject_shape(viewname, "WITH queries");
	if (query->hasSubLinks)
		reject_shape(viewname, "subqueries");
	if (kafka_query_aggregates(query))
		kafka_aggregate_validate(query, viewname);	/* an aggregating view */
	if (query->hasWindowFuncs)
		reject_shape(viewname, "window functions");
	if (query->distinctClause)
		reject_shape(viewname, "DISTINCT");
	if (query->limitCount || query->limitOffset)
		reject_shape(viewname, "LIMIT or OFFSET");
	if (query->hasTargetSRFs)
		reject_shape(viewname, "set-returning functions");
	if (query->rowMarks)
		reject_shape(viewname, "FOR UPDATE or FOR SHARE");
	if (list_length(query->rtable) != 1 || list_length(query->jointree->fromlist) != 1 ||
		!IsA(linitial(query->jointree->fromlist), RangeTblRef))
		reject_shape(viewname, "joins or more than one relation");
	rte = linitial_node(RangeTblEntry, query->rtable);

	/*
	 * Through a view, PostgreSQL would build a plain materialized view,
	 * rebuilt from the whole topic on every refresh.  Refuse it rather than
	 * look like a streaming view.
	 */
	if (rte->rtekind == RTE_RELATION && rte->relkind == RELKIND_VIEW)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialized view \"%s\" cannot read a Kafka topic through the view \"%s\"",
						viewname, get_rel_name(rte->relid)),
				 errdetail("A streaming materialized view reads its kafka_fdw table directly; over a view it would be a plain materialized view, rebuilt from the whole topic on every refresh."),
				 errhint("Create the materialized view on the kafka_fdw table itself, with the view's projections and filters in its own query.")));
	if (rte->rtekind != RTE_RELATION || !kafka_is_kafka_table(rte->relid))
		reject_shape(viewname, "a Kafka table inside a subquery");
	return rte->relid;
}

/*
 * Stored offsets belong to the topic they were read from: refuse them for
 * another one (the foreign table's topic option was changed).
 */
static void
check_stream_topic(const char *mv_name, const KafkaStreamState *st,
				   const KafkaTableOptions *opts)
{
	if (strcmp(st->topic, opts->topic) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the topic of materialized view \"%s\" changed from \"%s\" to \"%s\"",
						mv_name, st->topic, opts->topic),
				 errdetail("The view's stored offsets are positions in topic \"%s\"; reading topic \"%s\" from them would skip or mix records.",
						   st->topic, opts->topic),
				 errhint("Use kafka.reset_stream('%s') to ingest topic \"%s\" from its start position, or set the foreign table's topic option back to '%s'.",
						 mv_name, opts->topic, st->topic)));
}

/*----------
 * Where partitions without stored offsets start:
 *	the position given to reset_stream, else the table's start_offset on the
 *	first load, else (a partition created later) earliest.
 *----------
 */
static void
initial_positions(Oid owner, const KafkaStreamState *st,
				  const KafkaTableOptions *opts, bool first_load,
				  const KafkaWatermark *wm, int n, int64 *out, int64 *skip_before_ms)
{
	KafkaStartKind kind = KAFKA_START_EARLIEST;
	int64		ts = 0;

	for (int i = 0; i < n; i++)
		skip_before_ms[i] = -1;

	if (st->next_start)
	{
		if (strcmp(st->next_start, "latest") == 0)
			kind = KAFKA_START_LATEST;
		else if (strcmp(st->next_start, "earliest") != 0 &&
				 kafka_parse_timestamp(st->next_start, &ts))
			kind = KAFKA_START_TIMESTAMP;
	}
	else if (first_load)
	{
		kind = opts->start_kind;
		ts = opts->start_timestamp_ms;
	}

	if (kind == KAFKA_START_TIMESTAMP)
	{
		bool	   *unknown = palloc(sizeof(bool) * Max(n, 1));

		kafka_fetch_timestamp_offsets(opts->serverid, owner, opts->topic, wm, n, ts,
									  out, unknown);
		/* brokers without a time index: the scan finds the start itself */
		for (int i = 0; i < n; i++)
			if (unknown[i])
				skip_before_ms[i] = ts;
		return;
	}
	for (int i = 0; i < n; i++)
		out[i] = kind == KAFKA_START_LATEST ? wm[i].high : wm[i].low;
}

/*
 * Decide every partition's range for this refresh.  Talks to the brokers as
 * the view's owner (whose user mapping applies), then lets the handle go:
 * the scan takes its own.
 */
static KafkaStreamContext *
plan_refresh(Relation matview, const KafkaStreamState *st, const KafkaTableOptions *opts,
			 TimestampTz refresh_time)
{
	Oid			mv_oid = RelationGetRelid(matview);
	Oid			owner = matview->rd_rel->relowner;
	KafkaStreamContext *ctx = palloc0(sizeof(KafkaStreamContext));
	int			nids;
	KafkaWatermark *wm;
	KafkaStoredPosition *stored;
	int			nstored;
	int64	   *initial;
	int64	   *skip_before;

	ctx->ftable_oid = st->ftable_oid;
	ctx->cxt = CurrentMemoryContext;
	ctx->mv_name = pstrdup(RelationGetRelationName(matview));
	nstored = kafka_stream_load_positions(mv_oid, &stored);

	if (nstored > 0)
		check_stream_topic(RelationGetRelationName(matview), st, opts);

	nids = kafka_fetch_watermarks(opts->serverid, owner, opts->topic, true, &wm);

	/* partitions are never removed from a topic: one that was is another topic */
	for (int j = 0; j < nstored; j++)
	{
		bool		found = false;

		for (int i = 0; i < nids && !found; i++)
			found = wm[i].partition == stored[j].partition;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partition %d of topic \"%s\" that materialized view \"%s\" ingested no longer exists",
							stored[j].partition, opts->topic, RelationGetRelationName(matview)),
					 errdetail("Kafka never removes partitions from a topic; the topic may have been deleted and recreated, or the server may point at another cluster."),
					 errhint("Use kafka.reset_stream('%s') to ingest the topic from its start position.",
							 RelationGetRelationName(matview))));
	}
	initial = palloc(sizeof(int64) * Max(nids, 1));
	skip_before = palloc(sizeof(int64) * Max(nids, 1));
	initial_positions(owner, st, opts, nstored == 0, wm, nids, initial, skip_before);

	ctx->parts = palloc0(sizeof(KafkaStreamPartition) * Max(nids, 1));
	ctx->nparts = nids;
	for (int i = 0; i < nids; i++)
	{
		KafkaStreamPartition *p = &ctx->parts[i];
		int64		next = -1;
		KafkaRecordFingerprint last = {-1, -1, -1, -1};

		for (int j = 0; j < nstored; j++)
			if (stored[j].partition == wm[i].partition)
			{
				next = stored[j].next_offset;
				last = stored[j].last;
			}

		if (i > 0 && wm[i].partition <= wm[i - 1].partition)
			elog(ERROR, "partitions of topic \"%s\" are not in ascending order", opts->topic);
		p->partition = wm[i].partition;
		p->end = wm[i].high;
		p->ts_min_ms = p->ts_max_ms = -1;
		p->skip_before_ms = -1;
		p->verify.offset = -1;
		p->last.offset = -1;
		if (next < 0)
		{
			p->start = initial[i];
			p->skip_before_ms = skip_before[i];
		}
		else if (next > wm[i].high)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("stored offset " INT64_FORMAT " of materialized view \"%s\" is beyond the end of partition %d of topic \"%s\"",
							next, RelationGetRelationName(matview), p->partition, opts->topic),
					 errdetail("The partition's high watermark is " INT64_FORMAT ".", wm[i].high),
					 errhint("The topic may have been deleted and recreated. Use kafka.reset_stream('%s') to ingest it again.",
							 RelationGetRelationName(matview))));
		else if (next < wm[i].low)
		{
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("records " INT64_FORMAT " to " INT64_FORMAT " of partition %d of topic \"%s\" were deleted by retention before materialized view \"%s\" ingested them",
							next, wm[i].low - 1, p->partition, opts->topic,
							RelationGetRelationName(matview)),
					 errdetail(INT64_FORMAT " records are lost; the range is recorded in kafka.stream_scan_errors.",
							   wm[i].low - next),
					 errhint("Refresh more often, or raise the topic's retention.")));
			kafka_stream_log_lost_range(mv_oid, refresh_time, p->partition, next, wm[i].low);
			p->start = wm[i].low;
		}
		else
		{
			p->start = next;
			/* read the last ingested record again, to check it is the same */
			if (last.offset >= wm[i].low && last.offset < next && next < wm[i].high)
				p->verify = last;
		}
	}
	return ctx;
}

/*
 * Mark the view's own scan of the Kafka table in the plan, so that only it
 * reads the refresh's ranges (and evaluates the view's expressions, see
 * record_eval.c); a scan of the same table in a function that the view
 * calls runs its own plan and stays an ordinary scan.
 */
static void
mark_stream_scan(Plan *plan, List *rtable, Oid ftable_oid)
{
	for (; plan != NULL; plan = plan->lefttree)
	{
		if (IsA(plan, ForeignScan))
		{
			ForeignScan *fs = (ForeignScan *) plan;

			if (fs->scan.scanrelid > 0 &&
				rt_fetch(fs->scan.scanrelid, rtable)->relid == ftable_oid &&
				list_length(fs->fdw_private) > KafkaPrivateStreamScan)
			{
				castNode(Integer, list_nth(fs->fdw_private, KafkaPrivateStreamScan))->ival = 1;
				/* the view's JSON fields without a jsonb per record */
				fs->scan.plan.targetlist = (List *)
					kafka_json_field_fast_path((Node *) fs->scan.plan.targetlist);
				fs->scan.plan.qual = (List *)
					kafka_json_field_fast_path((Node *) fs->scan.plan.qual);
			}
		}
		mark_stream_scan(plan->righttree, rtable, ftable_oid);
		/* an aggregating view's records come from a subquery (stream_aggregate.c) */
		if (IsA(plan, SubqueryScan))
			mark_stream_scan(((SubqueryScan *) plan)->subplan, rtable, ftable_oid);
	}
}

/*
 * Does an aggregate node evaluate expressions of the record?  Not when its
 * aggregates' arguments and FILTERs are columns of its input: the delta
 * query of an aggregating view (stream_aggregate.c) computes them on the
 * scan node, and its Partial and Finalize Aggregates only fold columns.
 * Their transition functions can still fail (an overflow), but so can a
 * serial plan's, whose aggregate also sits above the scan: such an error is
 * not a record's and ends the refresh either way.
 */
static bool
agg_evaluates(Plan *plan)
{
	ListCell   *lc;

	if (plan->qual != NIL)
		return true;
	foreach(lc, plan->targetlist)
	{
		Expr	   *expr = lfirst_node(TargetEntry, lc)->expr;
		Aggref	   *agg;
		ListCell   *arg;

		if (IsA(expr, Var))
			continue;
		if (!IsA(expr, Aggref))
			return true;
		agg = (Aggref *) expr;
		if (agg->aggfilter != NULL && !IsA(agg->aggfilter, Var))
			return true;
		foreach(arg, agg->args)
			if (!IsA(lfirst_node(TargetEntry, arg)->expr, Var))
				return true;
	}
	return false;
}

/*
 * Does a node above the view's scan evaluate expressions of the view (a
 * filter, or a target list that is more than column references)?  Then
 * errors there are not isolated per record; planning serially puts them on
 * the scan node.
 */
static bool
evaluates_above_scan(Plan *plan)
{
	for (; plan != NULL && !IsA(plan, ForeignScan); plan = plan->lefttree)
		if (IsA(plan, Agg) ? agg_evaluates(plan) : kafka_plan_node_evaluates(plan))
			return true;
	return false;
}

static PlannedStmt *
plan_view_query(Query *query, const char *queryString, KafkaStreamContext *ctx,
				int cursorOptions)
{
	PlannedStmt *plan;

	/* an error here ends the refresh, and the context with it */
	ctx->planning = true;
	plan = pg_plan_query(copyObject(query), queryString, cursorOptions, NULL);
	ctx->planning = false;
	mark_stream_scan(plan->planTree, plan->rtable, ctx->ftable_oid);
	return plan;
}

/* Run the plan into a new receiver of the sink; returns the rows it took in. */
static uint64
execute_view_plan(Relation target, PlannedStmt *plan, const char *queryString,
				  const KafkaStreamSink *sink)
{
	DestReceiver *dest = sink->create(target, sink->arg);
	QueryDesc  *queryDesc;
	uint64		processed;

	PushCopiedSnapshot(GetActiveSnapshot());
	UpdateActiveSnapshotCommandId();
	queryDesc = CreateQueryDesc(plan, queryString, GetActiveSnapshot(),
								InvalidSnapshot, dest, NULL, NULL, 0);
	ExecutorStart(queryDesc, 0);
	ExecutorRun(queryDesc, ForwardScanDirection, 0L, true);
	ExecutorFinish(queryDesc);
	ExecutorEnd(queryDesc);
	FreeQueryDesc(queryDesc);
	PopActiveSnapshot();
	processed = sink->processed(dest);
	dest->rDestroy(dest);
	return processed;
}

/* Forget what a failed run of the view's query counted. */
static void
reset_stream_counts(KafkaStreamContext *ctx)
{
	for (int i = 0; i < ctx->nparts; i++)
	{
		KafkaStreamPartition *p = &ctx->parts[i];

		p->scanned_rows = p->skipped_rows = p->scanned_bytes = 0;
		p->ts_min_ms = p->ts_max_ms = -1;
		p->last.offset = -1;
	}
	ctx->skipped = NIL;
	ctx->nskipped = 0;
	ctx->scanned = false;
}

/*
 * Run a parallel plan inside a subtransaction.  PostgreSQL 15 allows no
 * subtransaction in parallel mode, so its participants cannot skip a record
 * on which the view's expressions fail; if that happens, the attempt is
 * rolled back and false returned, for the caller to run the query serially,
 * which skips such records (record_eval.c).  Other errors are re-thrown.
 */
static bool
try_parallel_plan(Relation matview, PlannedStmt *plan, const char *queryString,
				  const KafkaStreamSink *sink, uint64 *processed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	MemoryContext attempt = AllocSetContextCreate(cxt, "kafka_fdw parallel refresh",
												  ALLOCSET_DEFAULT_SIZES);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(attempt);
	PG_TRY();
	{
		/* rows are inserted in parallel mode, which cannot assign an id */
		(void) GetCurrentTransactionId();
		*processed = execute_view_plan(matview, plan, queryString, sink);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* the failed attempt's scans release their Kafka handles here */
		MemoryContextDelete(attempt);
		if (!kafka_error_is_record_error(edata))
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg_internal("parallel refresh of \"%s\" failed on a record, refreshing serially: %s",
								 RelationGetRelationName(matview), edata->message)));
		FreeErrorData(edata);
		return false;
	}
	PG_END_TRY();
	MemoryContextDelete(attempt);
	return true;
}

/* The part of kafka_stream_run_query() that runs with the context active. */
static uint64
plan_and_run(Relation matview, KafkaStreamContext *ctx, Query *query,
			 const char *queryString, bool on_error_fail,
			 bool allow_parallel, const KafkaStreamSink *sink)
{
	List	   *rewritten;
	PlannedStmt *plan;
	uint64		processed;

	/* an Append over children would hide the view's own scan */
	if (find_inheritance_children(ctx->ftable_oid, AccessShareLock) != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialized view \"%s\" reads Kafka table \"%s\", which has inheritance children",
						RelationGetRelationName(matview), get_rel_name(ctx->ftable_oid)),
				 errhint("A streaming materialized view reads one Kafka table; read the children with streaming views of their own.")));
	AcquireRewriteLocks(query, true, false);
	rewritten = QueryRewrite(query);
	if (list_length(rewritten) != 1)
		elog(ERROR, "unexpected rewrite result for streaming materialized view");
	query = linitial_node(Query, rewritten);
	CHECK_FOR_INTERRUPTS();
	plan = plan_view_query(query, queryString, ctx,
						   allow_parallel ? CURSOR_OPT_PARALLEL_OK : 0);
	if (allow_parallel && !on_error_fail && evaluates_above_scan(plan->planTree))
		plan = plan_view_query(query, queryString, ctx, 0);

	if (on_error_fail || !plan->parallelModeNeeded)
		processed = execute_view_plan(matview, plan, queryString, sink);
	else if (!try_parallel_plan(matview, plan, queryString, sink, &processed))
	{
		reset_stream_counts(ctx);
		plan = plan_view_query(query, queryString, ctx, 0);
		processed = execute_view_plan(matview, plan, queryString, sink);
	}
	return processed;
}

/*
 * Run a query over the stream's Kafka table with the stream context active,
 * its rows going to the sink: for a streaming view its own query, appending
 * to it; for other kinds of streams a query of theirs.  As in PostgreSQL's
 * REFRESH, the query runs as the owner of the target (the view, or the
 * replica table) in a security-restricted operation.  Returns the number of
 * rows the sink took in.
 *
 * Under on_error 'skip' a record on which the query's expressions fail is
 * skipped and logged: a serial plan isolates it itself (record_eval.c); a
 * parallel plan that meets one is run again serially.  allow_parallel false
 * keeps the plan serial, for sinks that need each partition's rows in offset
 * order.
 */
uint64
kafka_stream_run_query(Relation matview, KafkaStreamContext *ctx, Query *query,
					   const char *queryString, bool on_error_fail,
					   bool allow_parallel, const KafkaStreamSink *sink)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	uint64		processed = 0;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(matview->rd_rel->relowner,
						   save_sec_context | SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	/*
	 * As PostgreSQL 17's REFRESH does, and as the auto-refresh worker does
	 * (worker.c): functions the view calls are parsed with a safe
	 * search_path whoever runs the refresh, so a refresh by hand and one by
	 * the worker behave the same; functions that need one set their own.
	 */
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	PG_TRY();
	{
		kafka_active_stream = ctx;
		processed = plan_and_run(matview, ctx, query, queryString, on_error_fail,
								 allow_parallel, sink);
	}
	PG_FINALLY();
	{
		kafka_active_stream = NULL;
	}
	PG_END_TRY();

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	/*
	 * The plan may not have scanned at all (a WHERE that is always false);
	 * then nothing was read and the offsets still advance, correctly, since
	 * no record could have matched.
	 */
	return processed;
}

static DestReceiver *
create_view_dest(Relation matview, void *arg)
{
	return kafka_create_stream_dest(matview);
}

/* A streaming view's refresh: its own query, its rows appended to it. */
static uint64
run_view_query(Relation matview, KafkaStreamContext *ctx, const char *queryString,
			   bool on_error_fail)
{
	KafkaStreamSink sink = {create_view_dest, kafka_stream_dest_processed, NULL};

	return kafka_stream_run_query(matview, ctx, copyObject(get_view_query(matview)),
								  queryString, on_error_fail, true, &sink);
}

/*
 * A hot standby cannot refresh: say so plainly (PostgreSQL would only say
 * that the transaction is read-only).
 */
void
kafka_prevent_on_standby(const char *what, Oid mv_oid)
{
	const char *noun;

	if (!RecoveryInProgress())
		return;
	/* mv_oid is invalid when the command makes the stream (create_replica) */
	noun = !OidIsValid(mv_oid) ? NULL :
		get_rel_relkind(mv_oid) == RELKIND_MATVIEW ? "streaming materialized view" : "replica table";
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 noun ? errmsg("cannot execute %s on %s \"%s\" during recovery",
						   what, noun, get_rel_name(mv_oid)) :
			 errmsg("cannot execute %s during recovery", what),
			 errdetail("This server is a hot standby: its streaming views and replicas follow the primary's by replication, rows and offsets together."),
			 errhint("Refresh on the primary. After promotion, this server's auto-refresh workers take over from the replicated offsets by themselves.")));
}

/*
 * Ingest the records that arrived since the last refresh: append them to a
 * streaming view, or hand them to the kind of stream that mv_oid is.  The
 * caller has checked that mv_oid is a stream and that the user may refresh
 * it.  may_restore: the REFRESH statement, which may be a restore's (see
 * stream_dump.c).  Returns the number of rows appended (records applied).
 */
uint64
kafka_refresh_stream(Oid mv_oid, const char *queryString, bool may_restore)
{
	Relation	matview;
	KafkaStreamState st;
	KafkaTableOptions opts;
	KafkaStreamContext *ctx;
	TimestampTz refresh_time = GetCurrentStatementStartTimestamp();
	uint64		rows;

	/* serializes refreshes; readers hold ACCESS SHARE and are not blocked */
	matview = table_open(mv_oid, ExclusiveLock);
	kafka_stream_lock_state(mv_oid);
	if (!kafka_stream_lookup(mv_oid, &st))
		elog(ERROR, "relation %u is not a streaming materialized view", mv_oid);
	kafka_get_table_options(st.ftable_oid, &opts);

	/* a view restored from a dump gets its rows and offsets back first */
	if (may_restore && !RelationIsPopulated(matview))
	{
		int32	   *parts;
		int64	   *offs;

		if (kafka_stream_load_offsets(mv_oid, &parts, &offs) == 0)
			(void) kafka_stream_restore_dumped(matview, &st, &opts);
	}

	ctx = plan_refresh(matview, &st, &opts, refresh_time);
	/* without stored offsets (a first load) the view follows the table's topic */
	if (strcmp(st.topic, opts.topic) != 0)
		kafka_stream_set_topic(mv_oid, opts.topic);

	/*
	 * The view's query may run in parallel, and while parallel mode is on no
	 * transaction id can be assigned: take it now, for the rows the leader
	 * inserts (as PostgreSQL's REFRESH has, having created the new heap).
	 */
	(void) GetCurrentTransactionId();
	switch (st.kind)
	{
		case KAFKA_STREAM_VIEW:
			rows = run_view_query(matview, ctx, queryString, opts.on_error_fail);
			break;
		case KAFKA_STREAM_REPLICA:
			/* restored from a dump: the table must hold the dumped rows */
			kafka_replica_check_restored(matview);
			rows = kafka_replica_apply(matview, ctx, &opts, queryString);
			break;
		case KAFKA_STREAM_AGGREGATE:
			rows = kafka_aggregate_refresh(matview, ctx, queryString, opts.on_error_fail);
			break;
		default:
			elog(ERROR, "stream \"%s\" is of unknown kind '%c'",
				 RelationGetRelationName(matview), (char) st.kind);
	}
	kafka_stream_save_refresh(mv_oid, ctx, (int64) rows, refresh_time);

	if (!RelationIsPopulated(matview))
	{
		SetMatViewPopulatedState(matview, true);
		CommandCounterIncrement();
	}
	table_close(matview, NoLock);
	/* a replica whose events brought new columns: add them, apply the rest */
	if (st.kind == KAFKA_STREAM_REPLICA && kafka_replica_evolve(mv_oid))
		rows += kafka_refresh_stream(mv_oid, queryString, false);
	return rows;
}

/*
 * Would a refresh of the streaming view ingest anything?  True when some
 * partition's high watermark is beyond the stored next offset (or, for a
 * partition never read, beyond its low watermark).  Asks the brokers as the
 * view's owner; used by the auto-refresh worker to refresh only when records
 * arrived, so that idle views log nothing.  False for a view whose auto
 * refresh is off.
 */
bool
kafka_stream_pending(Oid mv_oid)
{
	KafkaStreamState st;
	KafkaTableOptions opts;
	KafkaWatermark *wm;
	int			nids;
	int32	   *stored_parts;
	int64	   *stored_offs;
	int			nstored;
	Oid			owner;

	/* switched off since the worker read its views */
	if (!kafka_stream_lookup(mv_oid, &st) || !st.auto_refresh)
		return false;
	owner = kafka_relation_owner(mv_oid);
	if (!OidIsValid(owner))
		return false;
	kafka_get_table_options(st.ftable_oid, &opts);
	if (strcmp(st.topic, opts.topic) != 0)
		return true;			/* the refresh tells what is wrong */
	nstored = kafka_stream_load_offsets(mv_oid, &stored_parts, &stored_offs);

	/* high watermarks suffice while every partition has a stored offset */
	nids = kafka_fetch_watermarks(opts.serverid, owner, opts.topic, false, &wm);
	for (int i = 0; i < nids; i++)
	{
		bool		stored = false;

		for (int j = 0; j < nstored; j++)
			if (stored_parts[j] == wm[i].partition)
			{
				stored = true;
				if (wm[i].high > stored_offs[j])
					return true;
			}
		if (!stored)
		{
			/* a partition never read: is anything retained in it? */
			nids = kafka_fetch_watermarks(opts.serverid, owner, opts.topic, true, &wm);
			for (int k = 0; k < nids; k++)
			{
				int64		next = wm[k].low;

				for (int j = 0; j < nstored; j++)
					if (stored_parts[j] == wm[k].partition)
						next = stored_offs[j];
				if (wm[k].high > next)
					return true;
			}
			return false;
		}
	}
	return false;
}

/*
 * The offsets are forgotten: the view follows its table's topic again (it
 * may have been changed with ALTER FOREIGN TABLE).
 */
static void
forget_topic(Oid mv_oid, const KafkaStreamState *st)
{
	KafkaTableOptions opts;

	kafka_get_table_options(st->ftable_oid, &opts);
	if (strcmp(st->topic, opts.topic) != 0)
		kafka_stream_set_topic(mv_oid, opts.topic);
}

/* The object type of a stream's relation, for privilege errors. */
static ObjectType
stream_object_type(Oid relid)
{
	return get_rel_relkind(relid) == RELKIND_MATVIEW ? OBJECT_MATVIEW : OBJECT_TABLE;
}

/* Error out unless the current user owns the view (REFRESH's rule). */
static void
check_refresh_permission(Oid mv_oid)
{
	if (!pg_class_ownercheck(mv_oid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, stream_object_type(mv_oid), get_rel_name(mv_oid));
}

/*
 * Is the target of a REFRESH MATERIALIZED VIEW a streaming view?  For any
 * materialized view the ownership is checked first, with PostgreSQL's own
 * error, before the lookup: nothing of the extension runs for a user who
 * may not refresh the view.  Relations that do not exist or are not
 * materialized views are left to PostgreSQL to report.
 */
static bool
refresh_target_is_streaming(RefreshMatViewStmt *stmt, Oid *mv_oid, KafkaStreamState *st)
{
	*mv_oid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(*mv_oid) || get_rel_relkind(*mv_oid) != RELKIND_MATVIEW)
		return false;
	check_refresh_permission(*mv_oid);
	return kafka_stream_lookup(*mv_oid, st);
}

/* CREATE MATERIALIZED VIEW ... AS <query over a kafka_fdw table> */
static void
create_streaming_view(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc, Oid ftable_oid)
{
	CreateTableAsStmt *stmt = (CreateTableAsStmt *) pstmt->utilityStmt;
	bool		skip_data = stmt->into->skipData;
	Oid			existing = RangeVarGetRelid(stmt->into->rel, NoLock, true);
	Oid			mv_oid;
	KafkaTableOptions opts;

	/* let PostgreSQL create the (empty) view, then load it ourselves */
	stmt->into->skipData = true;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		stmt->into->skipData = skip_data;
	}
	PG_END_TRY();

	if (OidIsValid(existing))	/* IF NOT EXISTS, and it did */
		return;

	CommandCounterIncrement();
	mv_oid = RangeVarGetRelid(stmt->into->rel, NoLock, false);
	kafka_get_table_options(ftable_oid, &opts);
	if (kafka_query_aggregates((Query *) stmt->query))
	{
		kafka_stream_register(mv_oid, ftable_oid, opts.topic, KAFKA_STREAM_AGGREGATE);
		/* a restore (see stream_dump.c) creates the view's indexes itself */
		kafka_aggregate_setup(mv_oid, skip_data && !check_function_bodies);
	}
	else
		kafka_stream_register(mv_oid, ftable_oid, opts.topic, KAFKA_STREAM_VIEW);
	CommandCounterIncrement();

	if (!skip_data)
	{
		uint64		rows = kafka_refresh_stream(mv_oid, queryString, false);

		if (qc)
			SetQueryCompletion(qc, CMDTAG_SELECT, rows);
	}
}

static void
process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest,
				QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, CreateTableAsStmt) &&
		((CreateTableAsStmt *) parsetree)->objtype == OBJECT_MATVIEW &&
		IsA(((CreateTableAsStmt *) parsetree)->query, Query))
	{
		CreateTableAsStmt *stmt = (CreateTableAsStmt *) parsetree;
		Query	   *query = (Query *) stmt->query;

		if (kafka_tables_in_query(query) != NIL)
		{
			Oid			ftable = validate_streaming_query(query, stmt->into->rel->relname);

			if (readOnlyTree)
				pstmt = copyObject(pstmt);
			create_streaming_view(pstmt, queryString, false, context, params,
								  queryEnv, dest, qc, ftable);
			return;
		}
	}
	else if (IsA(parsetree, RefreshMatViewStmt))
	{
		RefreshMatViewStmt *stmt = (RefreshMatViewStmt *) parsetree;
		Oid			mv_oid;
		KafkaStreamState st;

		if (refresh_target_is_streaming(stmt, &mv_oid, &st))
		{
			if (stmt->skipData)
			{
				kafka_prevent_on_standby("REFRESH MATERIALIZED VIEW", mv_oid);
				/* PostgreSQL empties it; we forget where it was */
				if (prev_ProcessUtility)
					prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
										params, queryEnv, dest, qc);
				else
					standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
											params, queryEnv, dest, qc);
				kafka_stream_forget_offsets(mv_oid);
				forget_topic(mv_oid, &st);
				return;
			}
			{
				uint64		rows;

				kafka_prevent_on_standby("REFRESH MATERIALIZED VIEW", mv_oid);
				PreventCommandIfReadOnly("REFRESH MATERIALIZED VIEW");
				rows = kafka_refresh_stream(mv_oid, queryString, true);
				if (qc)
					SetQueryCompletion(qc, CMDTAG_REFRESH_MATERIALIZED_VIEW, rows);
			}
			return;
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
kafka_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest,
					  QueryCompletion *qc)
{
	utility_depth++;
	PG_TRY();
	{
		process_utility(pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		utility_depth--;
	}
	PG_END_TRY();
}

/*
 * Event trigger on ddl_command_start for CREATE and REFRESH MATERIALIZED
 * VIEW.  In a session where kafka_fdw was not loaded when the command began,
 * the hook above did not see it, and PostgreSQL would build a plain
 * materialized view, or rebuild a streaming one without its offsets (which
 * would later duplicate records).  Refuse such commands; calling this
 * function has loaded the library, so the user can simply retry.
 */
Datum
kafka_guard_streaming_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;
	bool		streaming = false;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "not fired by event trigger manager");
	if (utility_depth > 0)
		PG_RETURN_VOID();

	trigdata = (EventTriggerData *) fcinfo->context;
	parsetree = trigdata->parsetree;
	if (IsA(parsetree, CreateTableAsStmt) &&
		((CreateTableAsStmt *) parsetree)->objtype == OBJECT_MATVIEW &&
		IsA(((CreateTableAsStmt *) parsetree)->query, Query))
		streaming = kafka_tables_in_query((Query *) ((CreateTableAsStmt *) parsetree)->query) != NIL;
	else if (IsA(parsetree, RefreshMatViewStmt))
	{
		Oid			mv_oid;
		KafkaStreamState st;

		streaming = refresh_target_is_streaming((RefreshMatViewStmt *) parsetree, &mv_oid, &st);
	}

	if (streaming)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kafka_fdw was not loaded when this command started"),
				 errdetail("Streaming materialized views need kafka_fdw's command hook, which is installed when the library is loaded."),
				 errhint("Add kafka_fdw to shared_preload_libraries (or session_preload_libraries). In this session the library is now loaded: run the command again.")));
	PG_RETURN_VOID();
}

void
kafka_install_utility_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = kafka_process_utility;
}

static void not_streaming_error(const char *name) pg_attribute_noreturn();

static void
not_streaming_error(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("\"%s\" is not a streaming materialized view", name ? name : "?"),
			 errhint("Streaming materialized views are materialized views over a kafka_fdw table.")));
}

/*
 * May the current user see a streaming view's state (the monitoring views'
 * rule)?  Yes with SELECT on it or the privileges of its owner; superusers
 * have both.
 */
bool
kafka_may_read_stream(Oid mv_oid, Oid owner)
{
	return pg_class_aclcheck(mv_oid, GetUserId(), ACL_SELECT) == ACLCHECK_OK ||
		has_privs_of_role(GetUserId(), owner);
}

/*
 * The streaming view named by a regclass argument of a kafka.* function, or
 * an error.  The privilege check (ownership, or with need_owner false the
 * right to read the view) comes before the lookup in the extension's state.
 */
void
kafka_streaming_view_arg(Oid mv_oid, bool need_owner, KafkaStreamState *st)
{
	char	   *name = get_rel_name(mv_oid);

	char		relkind = name ? get_rel_relkind(mv_oid) : RELKIND_VIEW;

	/* a replica table (CDC) is a stream too */
	if (relkind != RELKIND_MATVIEW && relkind != RELKIND_RELATION)
		not_streaming_error(name);
	if (need_owner)
		check_refresh_permission(mv_oid);
	else if (!kafka_may_read_stream(mv_oid, kafka_relation_owner(mv_oid)))
		aclcheck_error(ACLCHECK_NO_PRIV, stream_object_type(mv_oid), name);
	if (!kafka_stream_lookup(mv_oid, st))
		not_streaming_error(name);
}

/*
 * Delete every row of a streaming view under the ExclusiveLock a refresh
 * takes: readers keep reading the old rows until the reset commits.
 * (REFRESH ... WITH NO DATA would swap in an empty heap under an ACCESS
 * EXCLUSIVE lock, held until the re-ingest that follows it has committed.)
 * The dead rows are VACUUM's, as after any DELETE.  Also empties the state
 * table of an aggregating view (stream_aggregate.c).
 */
void
kafka_empty_stream_relation(Oid mv_oid)
{
	Relation	rel = table_open(mv_oid, ExclusiveLock);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		simple_table_tuple_delete(rel, &slot->tts_tid, snapshot);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
}

/*
 * kafka.reset_stream(view regclass, start text) -> bigint
 *		Empty the view, forget its offsets, and ingest again from 'earliest',
 *		'latest' or a timestamp.  Returns the rows ingested.
 */
Datum
kafka_reset_stream(PG_FUNCTION_ARGS)
{
	Oid			mv_oid = PG_GETARG_OID(0);
	char	   *start = text_to_cstring(PG_GETARG_TEXT_PP(1));
	KafkaStreamState st;
	int64		ms;

	kafka_streaming_view_arg(mv_oid, true, &st);
	if (strcmp(start, "earliest") != 0 && strcmp(start, "latest") != 0 &&
		!kafka_parse_timestamp(start, &ms))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start position \"%s\"", start),
				 errhint("Use 'earliest', 'latest' or a timestamp such as '2024-01-31 12:00:00+00'.")));
	kafka_prevent_on_standby("kafka.reset_stream()", mv_oid);
	PreventCommandIfReadOnly("kafka.reset_stream()");

	kafka_empty_stream_relation(mv_oid);
	CommandCounterIncrement();

	kafka_stream_forget_offsets(mv_oid);
	forget_topic(mv_oid, &st);
	kafka_stream_set_next_start(mv_oid, start);
	CommandCounterIncrement();

	PG_RETURN_INT64((int64) kafka_refresh_stream(mv_oid, "kafka.reset_stream()", false));
}

/* The partitions of a view's topic with their next offsets (-1: never read). */
typedef struct StreamLag
{
	int			n;
	KafkaWatermark *wm;
	int64	   *next;
} StreamLag;

/* Asks the brokers, as the current user (whose user mapping applies). */
static void
fetch_stream_lag(Oid mv_oid, const KafkaStreamState *st, const KafkaTableOptions *opts,
				 StreamLag *lag)
{
	int32	   *stored_parts;
	int64	   *stored_offs;
	int			nstored = kafka_stream_load_offsets(mv_oid, &stored_parts, &stored_offs);

	/* the offsets of another topic say nothing about this one's lag */
	if (nstored > 0)
		check_stream_topic(get_rel_name(mv_oid), st, opts);

	lag->n = kafka_fetch_watermarks(opts->serverid, GetUserId(), opts->topic, true, &lag->wm);
	lag->next = palloc(sizeof(int64) * Max(lag->n, 1));
	for (int i = 0; i < lag->n; i++)
	{
		lag->next[i] = -1;
		for (int j = 0; j < nstored; j++)
			if (stored_parts[j] == lag->wm[i].partition)
				lag->next[i] = stored_offs[j];
	}
}

/* partition_id, next_offset, high_watermark, lag of partition i, into values[0..3] */
static void
lag_values(const StreamLag *lag, int i, Datum *values, bool *nulls)
{
	int64		next = lag->next[i];

	values[0] = Int32GetDatum(lag->wm[i].partition);
	values[1] = Int64GetDatum(next);
	nulls[1] = next < 0;
	values[2] = Int64GetDatum(lag->wm[i].high);
	/* a partition never read lags by everything it retains */
	values[3] = Int64GetDatum(lag->wm[i].high - Max(next, lag->wm[i].low));
}

/*
 * kafka.stream_lag(view regclass) -> setof (partition_id, next_offset,
 *		high_watermark, lag).  Needs SELECT on the view (or its owner's
 *		privileges).  Asks the brokers, as the current user.
 */
Datum
kafka_stream_lag(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			mv_oid = PG_GETARG_OID(0);
	KafkaStreamState st;
	KafkaTableOptions opts;
	StreamLag	lag;

	InitMaterializedSRF(fcinfo, 0);
	kafka_streaming_view_arg(mv_oid, false, &st);
	kafka_get_table_options(st.ftable_oid, &opts);
	fetch_stream_lag(mv_oid, &st, &opts, &lag);

	for (int i = 0; i < lag.n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		lag_values(&lag, i, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * fetch_stream_lag() in a subtransaction: on failure, returns the error's
 * message and sets *cluster_failed when the error is the cluster's (it could
 * not be reached, or refused our credentials) rather than the topic's.
 * Cancels and shutdowns are not caught.
 */
static char *
try_fetch_stream_lag(Oid mv_oid, const KafkaStreamState *st,
					 const KafkaTableOptions *opts, StreamLag *lag,
					 bool *cluster_failed)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile failure = NULL;

	*cluster_failed = false;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fetch_stream_lag(mv_oid, st, opts, lag);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* cancel, statement_timeout, shutdown: class 57 */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
			ReThrowError(edata);
		failure = edata->message;
		*cluster_failed = edata->sqlerrcode == ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION ||
			edata->sqlerrcode == ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	}
	PG_END_TRY();
	return failure;
}

/*
 * kafka._stream_lag_rows() -> setof (mv_oid, topic, partition_id,
 *		next_offset, high_watermark, lag, error): the rows of the view
 *		kafka.stream_lag, for every streaming view the current user may read.
 *
 * One view's failure does not fail the others: a view whose cluster cannot
 * be reached or whose topic is missing gets one row with NULL numbers and
 * the reason in "error".  A cluster that could not be reached is asked once
 * per call, not once per view, so the call takes at most
 * kafka_fdw.connect_timeout per unreachable cluster.
 */
Datum
kafka_stream_lag_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *views;
	List	   *failed_servers = NIL;
	List	   *failed_reasons = NIL;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	views = kafka_stream_all_views();
	foreach(lc, views)
	{
		Oid			mv_oid = lfirst_oid(lc);
		Oid			owner = kafka_relation_owner(mv_oid);
		KafkaStreamState st;
		KafkaTableOptions opts;
		StreamLag	lag;
		char	   *failure = NULL;
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		ListCell   *fs;
		ListCell   *fr;

		if (!OidIsValid(owner) || !kafka_may_read_stream(mv_oid, owner) ||
			!kafka_stream_lookup(mv_oid, &st))
			continue;
		kafka_get_table_options(st.ftable_oid, &opts);
		forboth(fs, failed_servers, fr, failed_reasons)
			if (lfirst_oid(fs) == opts.serverid)
				failure = lfirst(fr);
		if (failure == NULL)
		{
			bool		cluster_failed;

			failure = try_fetch_stream_lag(mv_oid, &st, &opts, &lag, &cluster_failed);
			if (cluster_failed)
			{
				failed_servers = lappend_oid(failed_servers, opts.serverid);
				failed_reasons = lappend(failed_reasons, failure);
			}
		}

		values[0] = ObjectIdGetDatum(mv_oid);
		values[1] = CStringGetTextDatum(st.topic);
		if (failure)
		{
			for (int k = 2; k < 6; k++)
				nulls[k] = true;
			values[6] = CStringGetTextDatum(failure);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			continue;
		}
		nulls[6] = true;
		for (int i = 0; i < lag.n; i++)
		{
			lag_values(&lag, i, values + 2, nulls + 2);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}

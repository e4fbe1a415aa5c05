/*-------------------------------------------------------------------------
 *
 * stream_aggregate.c
 *		Aggregating streaming views: SELECT <group expressions>, count/sum/
 *		avg/min/max FROM one kafka_fdw table [WHERE ...] [GROUP BY ...],
 *		maintained incrementally by every refresh (kafka.stream_state.kind
 *		'a').
 *
 * A refresh folds only the records since the stored offsets into the view's
 * groups, inside refresh.c's frame (the view's ExclusiveLock, the ranges
 * decided once, the offsets saved in the same transaction), so the merge is
 * exactly once like a plain streaming view's append:
 *
 *	1. the view's query is rewritten into a "delta" query over the new
 *	   records: per group its keys and the partial state of every aggregate
 *	   (count, sum, min and max are their own partial state; avg becomes
 *	   an exact sum and count(x): sum(x) of an int2/int4 (an int8, made
 *	   numeric once per group), of an int8 (an int128 state) or of a
 *	   numeric, float8/interval sums otherwise), plus count(*) of the
 *	   records folded in.  The record's expressions (group keys,
 *	   aggregate arguments, FILTERs) are computed by an OFFSET 0 subquery,
 *	   so that they are evaluated on the view's own scan node, where
 *	   record_eval.c skips a record on which they fail (on_error 'skip');
 *	2. kafka_stream_run_query() runs it as the view's owner with the
 *	   refresh's ranges active; its rows (one per touched group) go to a
 *	   receiver that keeps them in a tuplestore: a parallel plan (Gather
 *	   over Partial Aggregate) may run the query, and heap updates are not
 *	   allowed in parallel mode;
 *	3. at the receiver's shutdown each delta row is merged: the group's row
 *	   of the view is looked up through a unique index on the group key
 *	   columns (NULLS NOT DISTINCT: NULL keys form one group, as in GROUP
 *	   BY), made by CREATE; found, it is updated in place with every
 *	   aggregate merged from the view's own value and the delta, through
 *	   the aggregate's combine function (int8pl for count and sum(int4),
 *	   which raises "bigint out of range" rather than wrapping) or
 *	   numeric_add; not found, the delta row is inserted.  Indexes are
 *	   maintained; the view and side table are made with fillfactor 50 so
 *	   that the updates are HOT (the group keys never change) and add no
 *	   index entries.  The cost is per new
 *	   record and per touched group, never per group already stored.
 *
 * avg cannot be merged from its value: its sum and count per group live in
 * a side table, kafka.aggregate_state_<view oid>, owned by the extension's
 * owner (users have no rights on it and do not see it among their tables),
 * keyed like the view and dropped with it (an automatic dependency).  The
 * view's avg is recomputed from the merged sum and count exactly as
 * PostgreSQL's avg computes it (numeric_div of the numeric sum by the
 * count, so the value and its scale equal a full recomputation's; float8
 * and interval division for float and interval arguments).
 *
 * Readers keep reading: updates and inserts are ordinary MVCC changes under
 * the refresh's ExclusiveLock; they see the old groups until it commits.
 * Records deleted by retention are already folded in and change nothing;
 * kafka.reset_stream() and REFRESH ... WITH NO DATA empty the view, and the
 * first refresh without stored offsets empties the side table too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/matview.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "stream.h"

typedef enum AggKind
{
	AGG_COUNT,
	AGG_SUM,
	AGG_MIN,
	AGG_MAX,
	AGG_AVG
} AggKind;

/* How an avg is finished from its sum and count. */
typedef enum AvgFinal
{
	AVG_NUMERIC,
	AVG_FLOAT8,
	AVG_INTERVAL
} AvgFinal;

/* One aggregate column of the view. */
typedef struct AggColumn
{
	Aggref	   *aggref;			/* in the view's query */
	AttrNumber	attnum;			/* the view's column */
	AggKind		kind;
	Oid			collation;		/* for min and max */
	FmgrInfo	merge;			/* (old, delta) -> merged; for avg, of the sums */
	int			delta_col;		/* first of its columns in the delta rows */
	/* avg */
	AvgFinal	final;
	Oid			sum_type;		/* of the sum in the side table */
	Oid			delta_fn;		/* the delta's sum of the argument */
	Oid			delta_arg;		/* its argument type, and result type: */
	Oid			delta_type;		/* sum_type, or int8 (then made numeric) */
	AttrNumber	side_sum;		/* its columns in the side table */
	AttrNumber	side_count;
} AggColumn;

/* What an aggregating view's query is made of. */
typedef struct AggSpec
{
	int			nkeys;
	TargetEntry **keys;			/* the GROUP BY columns of the view's query */
	int			naggs;
	AggColumn  *aggs;
	int			navg;
	int			delta_records;	/* the delta column of count(*) */
	int			delta_ncols;
} AggSpec;

/*
 * Every refresh updates the groups it touches: with room on their pages the
 * updates are HOT (the group keys, the only indexed columns, never change),
 * so they add no index entries and page pruning reclaims the old versions;
 * at fillfactor 100 every update would add entries to every index.
 */
#define AGGREGATE_FILLFACTOR 50

/* A relation whose rows are found by the group keys. */
typedef struct GroupTable
{
	Relation	rel;
	Relation	index;			/* NULL without GROUP BY: the one row */
	ResultRelInfo *rri;
	AttrNumber *key_att;		/* key j -> rel attnum */
	int		   *index_key;		/* index column i -> key j */
	FmgrInfo   *eq;				/* per index column */
	ScanKeyData *skeys;
	IndexScanDesc scan;			/* begun once, rescanned per group */
	TupleTableSlot *old_slot;
	TupleTableSlot *new_slot;
	ItemPointerData tid;		/* of the row found */
} GroupTable;

/* The receiver of the delta rows. */
typedef struct AggDestReceiver
{
	DestReceiver pub;
	Relation	matview;
	AggSpec    *spec;
	Tuplestorestate *delta;
	TupleDesc	delta_desc;
	uint64		records;		/* records folded in */
} AggDestReceiver;

static void not_supported(const char *viewname, const char *what, const char *hint)
			pg_attribute_noreturn();

static void
not_supported(const char *viewname, const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("aggregating streaming view \"%s\" cannot use %s", viewname, what),
			 errdetail("Each refresh folds only the new records into the stored groups; only count, sum, avg, min and max by GROUP BY expressions of the record can be maintained that way."),
			 errhint("%s", hint)));
}

#define HINT_PLAIN_VIEW "Create a plain streaming view of the records and compute this in a regular view or materialized view over it."

/* The aggregate's name if it is one of pg_catalog's count/sum/avg/min/max. */
static bool
supported_aggregate(Aggref *agg, AggKind *kind)
{
	char	   *name = get_func_name(agg->aggfnoid);

	if (name == NULL || get_func_namespace(agg->aggfnoid) != PG_CATALOG_NAMESPACE)
		return false;
	if (strcmp(name, "count") == 0)
		*kind = AGG_COUNT;
	else if (strcmp(name, "sum") == 0)
		*kind = AGG_SUM;
	else if (strcmp(name, "min") == 0)
		*kind = AGG_MIN;
	else if (strcmp(name, "max") == 0)
		*kind = AGG_MAX;
	else if (strcmp(name, "avg") == 0)
		*kind = AGG_AVG;
	else
		return false;
	return true;
}

/* The function that merges two values of a non-avg aggregate. */
static Oid
merge_function(Aggref *agg, AggKind kind)
{
	HeapTuple	tp = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(agg->aggfnoid));
	Form_pg_aggregate form;
	Oid			fn = InvalidOid;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for aggregate %u", agg->aggfnoid);
	form = (Form_pg_aggregate) GETSTRUCT(tp);
	/* count, min, max, sum(int2/int4/float/money/interval): states are results */
	if (form->aggtranstype == agg->aggtype && OidIsValid(form->aggcombinefn))
		fn = form->aggcombinefn;
	else if (kind == AGG_SUM && agg->aggtype == NUMERICOID)
		fn = F_NUMERIC_ADD;		/* sum(int8), sum(numeric) */
	ReleaseSysCache(tp);
	if (!OidIsValid(fn))
		elog(ERROR, "aggregate %u has no merge function", agg->aggfnoid);
	return fn;
}

/*
 * Analyse an aggregating view's query, rejecting what cannot be maintained
 * incrementally (at CREATE; a refresh finds nothing to reject).
 */
static AggSpec *
analyze_query(Query *query, const char *viewname)
{
	AggSpec    *spec = palloc0(sizeof(AggSpec));
	ListCell   *lc;
	int			ntle = list_length(query->targetList);

	if (query->groupingSets)
		not_supported(viewname, "GROUPING SETS, ROLLUP or CUBE",
					  "Create one aggregating streaming view per grouping.");
	if (query->havingQual)
		not_supported(viewname, "HAVING",
					  "Filter the groups when reading: create a regular view over the aggregating view with a WHERE on its aggregate columns.");
	if (query->hasWindowFuncs)
		not_supported(viewname, "window functions", HINT_PLAIN_VIEW);
	if (query->distinctClause)
		not_supported(viewname, "DISTINCT",
					  "GROUP BY already makes each group one row.");
	if (query->sortClause)
		not_supported(viewname, "ORDER BY",
					  "The groups are updated in place and have no stored order: order when reading the view.");
	if (query->limitCount || query->limitOffset)
		not_supported(viewname, "LIMIT or OFFSET", HINT_PLAIN_VIEW);

	spec->keys = palloc0(sizeof(TargetEntry *) * Max(ntle, 1));
	spec->aggs = palloc0(sizeof(AggColumn) * Max(ntle, 1));

	/* every GROUP BY expression is a column of the view */
	foreach(lc, query->groupClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, query->targetList);

		if (tle->resjunk)
			not_supported(viewname, "a GROUP BY expression that is not in the select list",
						  "Add every GROUP BY expression to the select list: the view keeps one row per group, found by those columns.");
	}

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Expr	   *expr = tle->expr;
		AggColumn  *col;
		Aggref	   *agg;
		AggKind		kind;

		if (tle->resjunk)
			continue;
		if (tle->ressortgroupref != 0 &&
			get_sortgroupref_clause_noerr(tle->ressortgroupref, query->groupClause) != NULL)
		{
			spec->keys[spec->nkeys++] = tle;
			continue;
		}
		if (!IsA(expr, Aggref))
		{
			if (contain_agg_clause((Node *) expr))
				not_supported(viewname, "an expression of aggregates",
							  "Make each aggregate a column of its own, and compute expressions of them in a regular view over the aggregating view.");
			not_supported(viewname, "a column that is neither a GROUP BY expression nor an aggregate",
						  "Name every GROUP BY expression in the select list once, and make every other column an aggregate.");
		}
		agg = (Aggref *) expr;
		if (!supported_aggregate(agg, &kind) || agg->aggkind != AGGKIND_NORMAL)
			not_supported(viewname,
						  psprintf("the aggregate %s()", get_func_name(agg->aggfnoid)),
						  "Use count, sum, avg, min or max; for other aggregates create a plain streaming view of the records and aggregate it in a regular view or materialized view over it.");
		if (agg->aggdistinct)
			not_supported(viewname,
						  psprintf("%s(DISTINCT ...)", get_func_name(agg->aggfnoid)),
						  "Group by the distinct expression in the aggregating view (one row per value) and count its rows in a regular view over it, or aggregate a plain streaming view in a regular materialized view.");
		if (agg->aggorder)
			not_supported(viewname, "ORDER BY inside an aggregate",
						  "count, sum, avg, min and max do not depend on the order: remove the ORDER BY.");
		if (agg->agglevelsup != 0)
			not_supported(viewname, "outer-level aggregates", HINT_PLAIN_VIEW);

		col = &spec->aggs[spec->naggs++];
		col->aggref = agg;
		col->attnum = tle->resno;
		col->kind = kind;
		col->collation = agg->inputcollid;
		if (kind == AGG_AVG)
		{
			Oid			argtype = exprType((Node *) linitial_node(TargetEntry, agg->args)->expr);

			switch (argtype)
			{
				case INT2OID:
				case INT4OID:
				case INT8OID:
				case NUMERICOID:
					/*
					 * Summed exactly, as avg sums them: int2 and int4 into
					 * an int8 (sum(int4) of the delta, converted once per
					 * group), int8 into an int128 (sum(int8)), numeric
					 * itself; never each record made numeric.
					 */
					col->final = AVG_NUMERIC;
					col->sum_type = NUMERICOID;
					col->delta_arg = argtype;
					col->delta_type = argtype == INT8OID ? NUMERICOID :
						argtype == NUMERICOID ? NUMERICOID : INT8OID;
					col->delta_fn = argtype == INT2OID ? F_SUM_INT2 :
						argtype == INT4OID ? F_SUM_INT4 :
						argtype == INT8OID ? F_SUM_INT8 : F_SUM_NUMERIC;
					fmgr_info(F_NUMERIC_ADD, &col->merge);
					break;
				case FLOAT4OID:
				case FLOAT8OID:
					col->final = AVG_FLOAT8;
					col->sum_type = col->delta_arg = col->delta_type = FLOAT8OID;
					col->delta_fn = F_SUM_FLOAT8;
					fmgr_info(F_FLOAT8PL, &col->merge);
					break;
				case INTERVALOID:
					col->final = AVG_INTERVAL;
					col->sum_type = col->delta_arg = col->delta_type = INTERVALOID;
					col->delta_fn = F_SUM_INTERVAL;
					fmgr_info(F_INTERVAL_PL, &col->merge);
					break;
				default:
					not_supported(viewname, psprintf("avg(%s)", format_type_be(argtype)),
								  HINT_PLAIN_VIEW);
			}
			spec->navg++;
		}
		else
			fmgr_info(merge_function(agg, kind), &col->merge);
	}
	if (spec->naggs == 0)
		not_supported(viewname, "GROUP BY without aggregates",
					  "Add count(*) to the select list, or use DISTINCT in a regular view over a plain streaming view.");
	/* delta: keys, each aggregate's state (avg: sum, count), count(*) */
	{
		int			next = spec->nkeys;
		int			side = spec->nkeys + 1;

		for (int i = 0; i < spec->naggs; i++)
		{
			AggColumn  *col = &spec->aggs[i];

			col->delta_col = next;
			next += col->kind == AGG_AVG ? 2 : 1;
			if (col->kind == AGG_AVG)
			{
				col->side_sum = side++;
				col->side_count = side++;
			}
		}
		/* the side table: keys, then each avg's sum and count */
		spec->delta_records = next;
		spec->delta_ncols = next + 1;
	}
	return spec;
}

/* Is this query of a streaming view aggregating? */
bool
kafka_query_aggregates(Query *query)
{
	return query->hasAggs || query->groupClause != NIL || query->groupingSets != NIL ||
		query->havingQual != NULL;
}

/* CREATE: reject an aggregating query that cannot be maintained incrementally. */
void
kafka_aggregate_validate(Query *query, const char *viewname)
{
	(void) analyze_query(query, viewname);
}

/*----------
 * The delta query: over the new records, per group, its keys and the
 * partial state of each aggregate, then count(*):
 *
 *	SELECT k1.., agg1(a1).., count(*)
 *	  FROM (SELECT <key exprs>, <argument and FILTER exprs>
 *			  FROM <kafka table> WHERE <view's WHERE> OFFSET 0) r
 *	 GROUP BY k1..
 *
 * The subquery stays a subquery (OFFSET 0), so that every expression of the
 * record is computed on the scan node, where a record that fails is skipped.
 *----------
 */
typedef struct DeltaBuild
{
	Query	   *inner;
	List	   *colnames;
	int			ncols;
} DeltaBuild;

static Expr *
inner_column(DeltaBuild *b, Expr *expr)
{
	char	   *name = psprintf("c%d", ++b->ncols);

	b->inner->targetList = lappend(b->inner->targetList,
								   makeTargetEntry(expr, b->ncols, name, false));
	b->colnames = lappend(b->colnames, makeString(name));
	return (Expr *) makeVar(1, b->ncols, exprType((Node *) expr), exprTypmod((Node *) expr),
							exprCollation((Node *) expr), 0);
}

/* An aggregate of the delta: agg's with its arguments and FILTER moved inside. */
static Aggref *
delta_aggref(DeltaBuild *b, Aggref *agg, Oid fnoid, Oid type, Oid argtype)
{
	Aggref	   *a = copyObject(agg);
	ListCell   *lc;

	a->aggtranstype = InvalidOid;
	if (OidIsValid(fnoid))
	{
		Expr	   *arg = linitial_node(TargetEntry, agg->args)->expr;

		a->aggfnoid = fnoid;
		a->aggtype = type;
		a->aggcollid = InvalidOid;
		if (argtype != exprType((Node *) arg))
			arg = (Expr *) coerce_to_target_type(NULL, (Node *) copyObject(arg),
												 exprType((Node *) arg), argtype, -1,
												 COERCION_EXPLICIT, COERCE_IMPLICIT_CAST, -1);
		a->inputcollid = exprCollation((Node *) arg);
		a->aggargtypes = list_make1_oid(argtype);
		a->args = list_make1(makeTargetEntry((Expr *) copyObject(arg), 1, NULL, false));
	}
	foreach(lc, a->args)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		tle->expr = inner_column(b, tle->expr);
	}
	if (a->aggfilter)
		a->aggfilter = inner_column(b, a->aggfilter);
	return a;
}

static Query *
build_delta_query(Query *view, AggSpec *spec)
{
	DeltaBuild	b = {NULL, NIL, 0};
	Query	   *outer = makeNode(Query);
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	RangeTblRef *rtr = makeNode(RangeTblRef);
	List	   *tlist = NIL;
	Aggref	   *records = makeNode(Aggref);

	b.inner = copyObject(view);
	b.inner->targetList = NIL;
	b.inner->groupClause = NIL;
	b.inner->hasAggs = false;
	b.inner->sortClause = NIL;
	b.inner->canSetTag = false;
	b.inner->limitOffset = (Node *) makeConst(INT8OID, -1, InvalidOid, sizeof(int64),
											  Int64GetDatum(0), false, FLOAT8PASSBYVAL);

	for (int j = 0; j < spec->nkeys; j++)
	{
		TargetEntry *key = spec->keys[j];
		TargetEntry *tle = makeTargetEntry(inner_column(&b, (Expr *) copyObject(key->expr)),
										   list_length(tlist) + 1, key->resname, false);

		tle->ressortgroupref = key->ressortgroupref;
		tlist = lappend(tlist, tle);
	}
	for (int i = 0; i < spec->naggs; i++)
	{
		AggColumn  *col = &spec->aggs[i];

		if (col->kind == AGG_AVG)
		{
			Oid			argtype = exprType((Node *) linitial_node(TargetEntry, col->aggref->args)->expr);

			tlist = lappend(tlist, makeTargetEntry((Expr *) delta_aggref(&b, col->aggref, col->delta_fn,
																		 col->delta_type, col->delta_arg),
												   list_length(tlist) + 1, NULL, false));
			tlist = lappend(tlist, makeTargetEntry((Expr *) delta_aggref(&b, col->aggref, F_COUNT_ANY,
																		 INT8OID, argtype),
												   list_length(tlist) + 1, NULL, false));
		}
		else
			tlist = lappend(tlist, makeTargetEntry((Expr *) delta_aggref(&b, col->aggref, InvalidOid,
																		 InvalidOid, InvalidOid),
												   list_length(tlist) + 1, NULL, false));
	}
	records->aggfnoid = F_COUNT_;
	records->aggtype = INT8OID;
	records->aggstar = true;
	records->aggkind = AGGKIND_NORMAL;
	records->aggsplit = AGGSPLIT_SIMPLE;
	records->aggno = records->aggtransno = -1;
	records->location = -1;
	tlist = lappend(tlist, makeTargetEntry((Expr *) records, list_length(tlist) + 1, NULL, false));

	rte->rtekind = RTE_SUBQUERY;
	rte->subquery = b.inner;
	rte->eref = makeAlias("kafka_records", b.colnames);
	rte->inFromCl = true;
	rtr->rtindex = 1;

	outer->commandType = CMD_SELECT;
	outer->querySource = QSRC_ORIGINAL;
	outer->canSetTag = true;
	outer->rtable = list_make1(rte);
	outer->jointree = makeFromExpr(list_make1(rtr), NULL);
	outer->targetList = tlist;
	outer->groupClause = copyObject(view->groupClause);
	outer->hasAggs = true;
	return outer;
}

/* "col1, col2" of the view's key columns, quoted. */
static char *
key_column_list(Relation rel, AggSpec *spec)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int j = 0; j < spec->nkeys; j++)
		appendStringInfo(&buf, "%s%s", j > 0 ? ", " : "",
						 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel),
																spec->keys[j]->resno - 1)->attname)));
	return buf.data;
}

static char *
side_table_name(Oid mv_oid)
{
	return psprintf("aggregate_state_%u", mv_oid);
}

/* The side table of avg's sums and counts, or InvalidOid. */
Oid
kafka_aggregate_state_table(Oid mv_oid)
{
	Oid			nsp = get_namespace_oid("kafka", false);

	return get_relname_relid(side_table_name(mv_oid), nsp);
}

/* The collation clause of a key column, schema-qualified, or "". */
static char *
collate_clause(Oid collid, Oid type)
{
	HeapTuple	tp;
	char	   *clause;
	Form_pg_collation form;

	if (!OidIsValid(collid) || collid == get_typcollation(type))
		return "";
	tp = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for collation %u", collid);
	form = (Form_pg_collation) GETSTRUCT(tp);
	clause = psprintf(" COLLATE %s",
					  quote_qualified_identifier(get_namespace_name(form->collnamespace),
												 NameStr(form->collname)));
	ReleaseSysCache(tp);
	return clause;
}

/*
 * CREATE of an aggregating view (registered, still empty): the unique index
 * on its group keys, and the side table if it has an avg.  restoring: the
 * CREATE ... WITH NO DATA of a restore, whose dump creates the view's
 * indexes itself (after its rows, before its REFRESH).
 *
 * The side table is a member of the extension, not a dependent of the view:
 * pg_dump then leaves it out (its name holds the view's OID, which a restore
 * changes; users may not read it, so a dump by the view's owner would fail),
 * and stream_dump.c dumps its rows with the view's.  The drop of the view
 * drops it (kafka._drop_stream_state()).
 */
void
kafka_aggregate_setup(Oid mv_oid, bool restoring)
{
	Relation	matview = table_open(mv_oid, AccessExclusiveLock);
	AggSpec    *spec = analyze_query(get_view_query(matview), RelationGetRelationName(matview));
	char	   *qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(matview)),
													   RelationGetRelationName(matview));
	TupleDesc	desc = RelationGetDescr(matview);
	char	   *view_index = NULL;
	char	   *view_fillfactor;
	StringInfoData side_sql;
	char	   *side_index = NULL;

	if (spec->nkeys > 0 && !restoring)
		view_index = psprintf("CREATE UNIQUE INDEX ON %s (%s)%s", qualified,
							  key_column_list(matview, spec), KAFKA_NULLS_NOT_DISTINCT);
	view_fillfactor = psprintf("ALTER MATERIALIZED VIEW %s SET (fillfactor = %d)", qualified,
							   AGGREGATE_FILLFACTOR);
	initStringInfo(&side_sql);
	if (spec->navg > 0)
	{
		char	   *side = quote_qualified_identifier("kafka", side_table_name(mv_oid));
		int			n = 0;

		appendStringInfo(&side_sql, "CREATE TABLE %s (", side);
		for (int j = 0; j < spec->nkeys; j++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, spec->keys[j]->resno - 1);

			appendStringInfo(&side_sql, "%sk%d %s%s", n++ > 0 ? ", " : "", j + 1,
							 format_type_extended(att->atttypid, att->atttypmod,
												  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY),
							 collate_clause(att->attcollation, att->atttypid));
		}
		for (int i = 0; i < spec->naggs; i++)
		{
			AggColumn  *col = &spec->aggs[i];

			if (col->kind != AGG_AVG)
				continue;
			appendStringInfo(&side_sql, "%ssum%d %s, count%d pg_catalog.int8 NOT NULL",
							 n++ > 0 ? ", " : "", col->attnum,
							 format_type_extended(col->sum_type, -1, FORMAT_TYPE_FORCE_QUALIFY),
							 col->attnum);
		}
		appendStringInfo(&side_sql, ") WITH (fillfactor = %d)", AGGREGATE_FILLFACTOR);
		if (spec->nkeys > 0)
		{
			StringInfoData idx;

			initStringInfo(&idx);
			appendStringInfo(&idx, "CREATE UNIQUE INDEX ON %s (", side);
			for (int j = 0; j < spec->nkeys; j++)
				appendStringInfo(&idx, "%sk%d", j > 0 ? ", " : "", j + 1);
			appendStringInfo(&idx, ")%s", KAFKA_NULLS_NOT_DISTINCT);
			side_index = idx.data;
		}
	}
	/* CREATE INDEX refuses a relation this code holds open; the lock stays */
	table_close(matview, NoLock);

	kafka_stream_exec_utility(view_fillfactor, false);
	if (view_index)
		kafka_stream_exec_utility(view_index, false);
	if (spec->navg > 0)
	{
		ObjectAddress side;
		ObjectAddress extension;

		kafka_stream_exec_utility(side_sql.data, true);
		if (side_index)
			kafka_stream_exec_utility(side_index, true);
		CommandCounterIncrement();
		ObjectAddressSet(side, RelationRelationId, kafka_aggregate_state_table(mv_oid));
		ObjectAddressSet(extension, ExtensionRelationId, get_extension_oid("kafka_fdw", false));
		recordDependencyOn(&side, &extension, DEPENDENCY_EXTENSION);
	}
	CommandCounterIncrement();
}

static bool
index_is_btree(Oid indexoid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	bool		btree;

	if (!HeapTupleIsValid(tp))
		return false;
	btree = ((Form_pg_class) GETSTRUCT(tp))->relam == BTREE_AM_OID;
	ReleaseSysCache(tp);
	return btree;
}

/*
 * The unique index whose columns are exactly the given key columns of rel
 * (any order), NULLS NOT DISTINCT; sets index_key[i] to the key of index
 * column i.  InvalidOid if there is none.
 */
static Oid
find_group_index(Relation rel, int nkeys, const AttrNumber *key_att, int *index_key)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tp = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index form;
		bool		ok;

		if (!HeapTupleIsValid(tp))
			continue;
		form = (Form_pg_index) GETSTRUCT(tp);
		ok = form->indisunique && form->indisvalid && form->indimmediate &&
			kafka_index_nulls_not_distinct(form) &&
			form->indnatts == nkeys && form->indnkeyatts == nkeys &&
			heap_attisnull(tp, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tp, Anum_pg_index_indpred, NULL) &&
			index_is_btree(indexoid);
		for (int i = 0; ok && i < nkeys; i++)
		{
			index_key[i] = -1;
			for (int j = 0; j < nkeys; j++)
				if (form->indkey.values[i] == key_att[j])
					index_key[i] = j;
			ok = index_key[i] >= 0;
		}
		ReleaseSysCache(tp);
		if (ok)
		{
			found = indexoid;
			break;
		}
	}
	list_free(indexes);
	return found;
}

static void
open_group_table(GroupTable *t, Relation rel, int nkeys, AttrNumber *key_att,
				 const char *what, Snapshot snapshot)
{
	memset(t, 0, sizeof(GroupTable));
	t->rel = rel;
	t->key_att = key_att;
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	t->old_slot = table_slot_create(rel, NULL);
	t->new_slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	if (nkeys == 0)
		return;

	t->index_key = palloc(sizeof(int) * nkeys);
	{
		Oid			indexoid = find_group_index(rel, nkeys, key_att, t->index_key);

		if (!OidIsValid(indexoid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("%s \"%s\" has no unique index on its GROUP BY columns",
							what, RelationGetRelationName(rel)),
					 errdetail("A refresh finds the stored group of each new record through a UNIQUE index NULLS NOT DISTINCT on exactly the GROUP BY columns, which CREATE MATERIALIZED VIEW made."),
					 errhint("Create it again with CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT.",
							 RelationGetRelationName(rel), "<the GROUP BY columns>")));
		t->index = index_open(indexoid, RowExclusiveLock);
	}
	t->eq = palloc(sizeof(FmgrInfo) * nkeys);
	t->skeys = palloc(sizeof(ScanKeyData) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		Oid			opcintype = t->index->rd_opcintype[i];
		Oid			op = get_opfamily_member(t->index->rd_opfamily[i], opcintype, opcintype,
											 BTEqualStrategyNumber);

		if (!OidIsValid(op))
			elog(ERROR, "missing equality operator for index column %d of \"%s\"",
				 i + 1, RelationGetRelationName(t->index));
		fmgr_info(get_opcode(op), &t->eq[i]);
	}
	t->scan = index_beginscan(rel, t->index, snapshot, nkeys, 0);
}

static void
close_group_table(GroupTable *t)
{
	if (t->index)
	{
		index_endscan(t->scan);
		index_close(t->index, NoLock);
	}
	ExecCloseIndices(t->rri);
	ExecDropSingleTupleTableSlot(t->old_slot);
	ExecDropSingleTupleTableSlot(t->new_slot);
}

/*
 * Find the row of the group whose keys are keyv/keyn; true if found, its
 * values in t->old_slot (all attributes) and its TID in t->tid.
 */
static bool
find_group(GroupTable *t, int nkeys, Snapshot snapshot, Datum *keyv, bool *keyn)
{
	bool		found;

	if (nkeys == 0)
	{
		TableScanDesc scan = table_beginscan(t->rel, snapshot, 0, NULL);

		found = table_scan_getnextslot(scan, ForwardScanDirection, t->old_slot);
		table_endscan(scan);
	}
	else
	{
		for (int i = 0; i < nkeys; i++)
		{
			int			j = t->index_key[i];

			if (keyn[j])
				ScanKeyEntryInitialize(&t->skeys[i], SK_ISNULL | SK_SEARCHNULL, i + 1,
									   InvalidStrategy, InvalidOid, InvalidOid,
									   InvalidOid, (Datum) 0);
			else
				ScanKeyEntryInitializeWithInfo(&t->skeys[i], 0, i + 1, BTEqualStrategyNumber,
											   InvalidOid, t->index->rd_indcollation[i],
											   &t->eq[i], keyv[j]);
		}
		index_rescan(t->scan, t->skeys, nkeys, NULL, 0);
		found = index_getnext_slot(t->scan, ForwardScanDirection, t->old_slot);
	}
	if (found)
	{
		slot_getallattrs(t->old_slot);
		t->tid = t->old_slot->tts_tid;
	}
	return found;
}

/* Write t->new_slot (filled in): update the row found, or insert. */
static void
write_group(GroupTable *t, bool found, Snapshot snapshot, EState *estate)
{
	TupleTableSlot *slot = t->new_slot;

	ExecStoreVirtualTuple(slot);
	if (found)
	{
		bool		update_indexes;

		simple_table_tuple_update(t->rel, &t->tid, slot, snapshot, &update_indexes);
		/*
		 * Not HOT: new entries, inserted without the "unchanged by update"
		 * hint (which would look for the updated columns in a range table
		 * this executor state does not have).
		 */
		if (update_indexes && t->rri->ri_NumIndices > 0)
			list_free(kafka_insert_index_tuples(t->rri, slot, estate));
	}
	else
	{
		simple_table_tuple_insert(t->rel, slot);
		if (t->rri->ri_NumIndices > 0)
			list_free(kafka_insert_index_tuples(t->rri, slot, estate));
	}
}

/* old merged with delta by fn (NULL is the neutral element), into *result. */
static inline void
merge_values(FmgrInfo *fn, Oid collation, Datum old, bool oldnull, Datum delta, bool deltanull,
			 Datum *result, bool *resultnull)
{
	if (oldnull || deltanull)
	{
		*result = oldnull ? delta : old;
		*resultnull = oldnull && deltanull;
	}
	else
	{
		*result = FunctionCall2Coll(fn, collation, old, delta);
		*resultnull = false;
	}
}

/* avg from its merged sum and count, as PostgreSQL's avg finishes it. */
static Datum
finish_avg(AggColumn *col, Datum sum, int64 count, bool *isnull)
{
	*isnull = count == 0;
	if (count == 0)
		return (Datum) 0;
	switch (col->final)
	{
		case AVG_NUMERIC:
			return DirectFunctionCall2(numeric_div, sum,
									   NumericGetDatum(int64_to_numeric(count)));
		case AVG_FLOAT8:
			return Float8GetDatum(DatumGetFloat8(sum) / (float8) count);
		case AVG_INTERVAL:
			return DirectFunctionCall2(interval_div, sum, Float8GetDatum((float8) count));
	}
	return (Datum) 0;
}

/* CONTEXT line of errors raised while merging (an overflow). */
static void
merge_error_context(void *arg)
{
	errcontext("folding the new records into the groups of materialized view \"%s\"",
			   RelationGetRelationName((Relation) arg));
}

/* Fold the delta rows into the view (and the side table). */
static void
merge_delta(AggDestReceiver *dest)
{
	ErrorContextCallback errcb;
	AggSpec    *spec = dest->spec;
	int			nkeys = spec->nkeys;
	Relation	matview = dest->matview;
	EState	   *estate = CreateExecutorState();
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	MemoryContext per_group = AllocSetContextCreate(CurrentMemoryContext,
													"kafka_fdw aggregate merge",
													ALLOCSET_DEFAULT_SIZES);
	TupleTableSlot *delta = MakeSingleTupleTableSlot(dest->delta_desc, &TTSOpsMinimalTuple);
	AttrNumber *view_keys = palloc(sizeof(AttrNumber) * Max(nkeys, 1));
	AttrNumber *side_keys = palloc(sizeof(AttrNumber) * Max(nkeys, 1));
	GroupTable view;
	GroupTable side;
	Relation	side_rel = NULL;

	for (int j = 0; j < nkeys; j++)
	{
		view_keys[j] = spec->keys[j]->resno;
		side_keys[j] = j + 1;
	}
	estate->es_output_cid = GetCurrentCommandId(true);
	open_group_table(&view, matview, nkeys, view_keys, "materialized view", snapshot);
	if (spec->navg > 0)
	{
		Oid			side_oid = kafka_aggregate_state_table(RelationGetRelid(matview));

		if (!OidIsValid(side_oid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the state table of aggregating view \"%s\" is missing",
							RelationGetRelationName(matview)),
					 errhint("Drop the materialized view and create it again.")));
		side_rel = table_open(side_oid, RowExclusiveLock);
		open_group_table(&side, side_rel, nkeys, side_keys, "state table", snapshot);
	}

	errcb.callback = merge_error_context;
	errcb.arg = matview;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	while (tuplestore_gettupleslot(dest->delta, true, false, delta))
	{
		MemoryContext old = MemoryContextSwitchTo(per_group);
		Datum	   *dv;
		bool	   *dn;
		bool		found;
		bool		side_found = false;
		TupleTableSlot *vs = view.new_slot;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(delta);
		dv = delta->tts_values;
		dn = delta->tts_isnull;
		dest->records += (uint64) DatumGetInt64(dv[spec->delta_records]);

		/*
		 * The index scans live as long as the merge: what they allocate
		 * (btree's killed items) must not go with the per-group memory.
		 */
		MemoryContextSwitchTo(old);
		found = find_group(&view, nkeys, snapshot, dv, dn);
		if (spec->navg > 0)
			side_found = find_group(&side, nkeys, snapshot, dv, dn);
		MemoryContextSwitchTo(per_group);
		if (spec->navg > 0)
		{
			if (side_found != found)
				elog(ERROR, "group of aggregating view \"%s\" is %s its state table",
					 RelationGetRelationName(matview), found ? "missing from" : "only in");
			ExecClearTuple(side.new_slot);
		}

		ExecClearTuple(vs);
		for (int j = 0; j < nkeys; j++)
		{
			AttrNumber	a = view_keys[j] - 1;

			vs->tts_values[a] = found ? view.old_slot->tts_values[a] : dv[j];
			vs->tts_isnull[a] = found ? view.old_slot->tts_isnull[a] : dn[j];
			if (spec->navg > 0)
			{
				side.new_slot->tts_values[j] = found ? side.old_slot->tts_values[j] : dv[j];
				side.new_slot->tts_isnull[j] = found ? side.old_slot->tts_isnull[j] : dn[j];
			}
		}
		for (int i = 0; i < spec->naggs; i++)
		{
			AggColumn  *col = &spec->aggs[i];
			AttrNumber	a = col->attnum - 1;
			int			d = col->delta_col;

			if (col->kind != AGG_AVG)
			{
				merge_values(&col->merge, col->collation,
							 found ? view.old_slot->tts_values[a] : (Datum) 0, !found || view.old_slot->tts_isnull[a],
							 dv[d], dn[d], &vs->tts_values[a], &vs->tts_isnull[a]);
				continue;
			}
			else
			{
				AttrNumber	s = col->side_sum - 1;
				AttrNumber	c = col->side_count - 1;
				TupleTableSlot *ss = side.new_slot;
				int64		count = DatumGetInt64(dv[d + 1]);
				Datum		sum = dv[d];

				if (col->delta_type != col->sum_type && !dn[d])
					sum = NumericGetDatum(int64_to_numeric(DatumGetInt64(sum)));
				merge_values(&col->merge, InvalidOid,
							 found ? side.old_slot->tts_values[s] : (Datum) 0, !found || side.old_slot->tts_isnull[s],
							 sum, dn[d], &ss->tts_values[s], &ss->tts_isnull[s]);
				if (found)
					count = DatumGetInt64(DirectFunctionCall2(int8pl, side.old_slot->tts_values[c],
															  Int64GetDatum(count)));
				ss->tts_values[c] = Int64GetDatum(count);
				ss->tts_isnull[c] = false;
				vs->tts_values[a] = finish_avg(col, ss->tts_values[s], count, &vs->tts_isnull[a]);
			}
		}
		write_group(&view, found, snapshot, estate);
		if (spec->navg > 0)
			write_group(&side, side_found, snapshot, estate);
		ResetPerTupleExprContext(estate);
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_group);
	}

	error_context_stack = errcb.previous;

	ExecDropSingleTupleTableSlot(delta);
	close_group_table(&view);
	if (side_rel)
	{
		close_group_table(&side);
		table_close(side_rel, NoLock);
	}
	UnregisterSnapshot(snapshot);
	MemoryContextDelete(per_group);
	FreeExecutorState(estate);
}

static void
agg_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	AggDestReceiver *dest = (AggDestReceiver *) self;

	if (typeinfo->natts != dest->spec->delta_ncols)
		elog(ERROR, "the delta query of \"%s\" returns %d columns, not %d",
			 RelationGetRelationName(dest->matview), typeinfo->natts, dest->spec->delta_ncols);
	dest->delta_desc = CreateTupleDescCopy(typeinfo);
	dest->delta = tuplestore_begin_heap(false, false, work_mem);
	dest->records = 0;
}

static bool
agg_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	tuplestore_puttupleslot(((AggDestReceiver *) self)->delta, slot);
	return true;
}

/* Out of parallel mode again (ExecutePlan has left it): merge. */
static void
agg_dest_shutdown(DestReceiver *self)
{
	AggDestReceiver *dest = (AggDestReceiver *) self;

	merge_delta(dest);
	tuplestore_end(dest->delta);
	dest->delta = NULL;
}

static void
agg_dest_destroy(DestReceiver *self)
{
	pfree(self);
}

static DestReceiver *
create_agg_dest(Relation matview, void *arg)
{
	AggDestReceiver *dest = palloc0(sizeof(AggDestReceiver));

	dest->pub.receiveSlot = agg_dest_receive;
	dest->pub.rStartup = agg_dest_startup;
	dest->pub.rShutdown = agg_dest_shutdown;
	dest->pub.rDestroy = agg_dest_destroy;
	dest->pub.mydest = DestNone;
	dest->matview = matview;
	dest->spec = (AggSpec *) arg;
	return (DestReceiver *) dest;
}

/* Records folded in by the receiver. */
static uint64
agg_dest_records(DestReceiver *self)
{
	return ((AggDestReceiver *) self)->records;
}

/*
 * The refresh of an aggregating view ('a' in refresh.c's switch): fold the
 * records of the refresh's ranges into the groups.  Returns the number of
 * records folded in (those that passed the view's WHERE).
 */
uint64
kafka_aggregate_refresh(Relation matview, KafkaStreamContext *ctx, const char *queryString,
						bool on_error_fail)
{
	Query	   *view = get_view_query(matview);
	AggSpec    *spec = analyze_query(view, RelationGetRelationName(matview));
	KafkaStreamSink sink = {create_agg_dest, agg_dest_records, spec};
	KafkaStoredPosition *positions;

	/* no stored offsets: a first load, after a reset the side table is stale */
	if (spec->navg > 0 && kafka_stream_load_positions(RelationGetRelid(matview), &positions) == 0)
	{
		Oid			side_oid = kafka_aggregate_state_table(RelationGetRelid(matview));

		if (OidIsValid(side_oid))
		{
			kafka_empty_stream_relation(side_oid);
			CommandCounterIncrement();
		}
	}
	return kafka_stream_run_query(matview, ctx, build_delta_query(view, spec), queryString,
								  on_error_fail, true, &sink);
}

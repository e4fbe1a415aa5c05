/*-------------------------------------------------------------------------
 *
 * planner.c
 *		Planning of kafka_fdw scans: column mapping, pushdown of conditions on
 *		kafka_partition, kafka_offset and kafka_timestamp, and row estimates
 *		from the brokers' watermarks.
 *
 * Pushdown never changes results: every WHERE clause stays in the plan as a
 * local filter, and the pushed-down conditions only narrow the partitions and
 * offset ranges that are fetched.  A condition is pushed down when it has the
 * form "column op expression" (either way round) where the expression
 * contains no Vars of the scanned table and no volatile functions.  The
 * expressions travel in fdw_exprs and are evaluated when the scan starts, so
 * parameters and stable functions such as now() work.
 *
 * fdw_private of the ForeignScan is a List indexed by KafkaPlanPrivate.
 *
 * Paths: a serial scan, and when the relation may be scanned in parallel a
 * partial path (a Parallel Foreign Scan under a Gather, see parallel.c).
 * Both are costed from the records in the pushed-down ranges, without
 * ANALYZE; the partial path divides the per-record cost among the
 * participants as a parallel sequential scan does, so a Gather wins for
 * large topics and expensive targets and loses (parallel_setup_cost,
 * parallel_tuple_cost) for small topics.  The serial path is never
 * parallel safe: a serial scan decides its snapshot (the watermarks, or a
 * refresh's ranges, which only the leader has) in the backend that runs it,
 * so it must not be run by a worker, nor once per worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/planmain.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "kafka_fdw.h"
#include "scan_bounds.h"
#include "stream.h"

/*
 * For the number of parallel workers a topic is treated like a table of
 * records of this size (PostgreSQL sizes parallel scans by pages).
 */
#define KAFKA_EST_RECORD_BYTES 200

/* Per-relation planning state, in baserel->fdw_private. */
typedef struct KafkaPlanState
{
	KafkaTableOptions opts;
	KafkaColumn *columns;		/* per attribute */
	int			natts;
	List	   *cond_columns;	/* KafkaColumn of each pushed-down condition */
	List	   *cond_ops;		/* KafkaCondOp of each condition */
	List	   *cond_exprs;		/* the value expression of each condition */
	double		records;		/* records in the pushed-down ranges */
	double		ranges;			/* at most this many parallel work items */
} KafkaPlanState;

static const char *const kafka_column_names[KAFKA_NUM_COLUMNS] = {
	"kafka_partition", "kafka_offset", "kafka_timestamp_type", "kafka_timestamp",
	"kafka_key", "kafka_value", "kafka_headers", "refresh_time"
};

const char *
kafka_column_name(KafkaColumn col)
{
	return col >= 0 && col < KAFKA_NUM_COLUMNS ? kafka_column_names[col] : "?";
}

static bool
column_type_ok(KafkaColumn col, Oid typid)
{
	switch (col)
	{
		case KAFKA_COL_PARTITION:
			return typid == INT8OID || typid == INT4OID;
		case KAFKA_COL_OFFSET:
			return typid == INT8OID;
		case KAFKA_COL_TIMESTAMP_TYPE:
			return typid == BPCHAROID || typid == TEXTOID ||
				typid == VARCHAROID || typid == CHAROID;
		case KAFKA_COL_TIMESTAMP:
		case KAFKA_COL_REFRESH_TIME:
			return typid == TIMESTAMPTZOID || typid == TIMESTAMPOID;
		case KAFKA_COL_KEY:
		case KAFKA_COL_VALUE:
			return typid == BYTEAOID || typid == TEXTOID || typid == JSONBOID;
		case KAFKA_COL_HEADERS:
			return typid == JSONBOID;
		default:
			return false;
	}
}

static const char *
column_type_hint(KafkaColumn col)
{
	switch (col)
	{
		case KAFKA_COL_PARTITION:
			return "Declare it as bigint.";
		case KAFKA_COL_OFFSET:
			return "Declare it as bigint.";
		case KAFKA_COL_TIMESTAMP_TYPE:
			return "Declare it as char(1).";
		case KAFKA_COL_TIMESTAMP:
		case KAFKA_COL_REFRESH_TIME:
			return "Declare it as timestamp with time zone (or timestamp, in UTC).";
		case KAFKA_COL_KEY:
		case KAFKA_COL_VALUE:
			return "Declare it as bytea, text or jsonb.";
		case KAFKA_COL_HEADERS:
			return "Declare it as jsonb.";
		default:
			return NULL;
	}
}

/*
 * Map the attributes of a kafka_fdw foreign table to Kafka columns by name,
 * checking their types.  Returns a palloc'd array indexed by attno - 1.
 */
KafkaColumn *
kafka_map_columns(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	KafkaColumn *map = palloc(sizeof(KafkaColumn) * Max(desc->natts, 1));

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		int			col;

		map[i] = KAFKA_COL_NONE;
		if (att->attisdropped)
			continue;
		for (col = 0; col < KAFKA_NUM_COLUMNS; col++)
			if (strcmp(name, kafka_column_names[col]) == 0)
				break;
		if (col == KAFKA_NUM_COLUMNS)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
					 errmsg("column \"%s\" of foreign table \"%s\" is not a Kafka column",
							name, RelationGetRelationName(rel)),
					 errhint("Columns of a kafka_fdw table must be named kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key, kafka_value, kafka_headers or refresh_time.")));
		if (!column_type_ok(col, att->atttypid))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("column \"%s\" of foreign table \"%s\" has type %s, which kafka_fdw cannot produce",
							name, RelationGetRelationName(rel),
							format_type_be(att->atttypid)),
					 errhint("%s", column_type_hint(col))));
		map[i] = col;
	}
	return map;
}

/* The btree opfamily that interprets comparisons on a column's type. */
static Oid
column_opfamily(Oid typid)
{
	Oid			opclass = GetDefaultOpClass(typid, BTREE_AM_OID);

	return OidIsValid(opclass) ? get_opclass_family(opclass) : InvalidOid;
}

static bool
is_int_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

/* If expr is a Var of the scanned relation naming a pushable column, say which. */
static KafkaColumn
pushable_column(Node *expr, RelOptInfo *baserel, KafkaPlanState *ps, Oid *coltype)
{
	Var		   *var;
	KafkaColumn col;

	while (expr && IsA(expr, RelabelType))
		expr = (Node *) ((RelabelType *) expr)->arg;
	if (expr == NULL || !IsA(expr, Var))
		return KAFKA_COL_NONE;
	var = (Var *) expr;
	if ((Index) var->varno != baserel->relid || var->varlevelsup != 0 ||
		var->varattno <= 0 || var->varattno > ps->natts)
		return KAFKA_COL_NONE;
	col = ps->columns[var->varattno - 1];
	if (col != KAFKA_COL_PARTITION && col != KAFKA_COL_OFFSET &&
		col != KAFKA_COL_TIMESTAMP)
		return KAFKA_COL_NONE;
	*coltype = var->vartype;
	return col;
}

/* Is the value side acceptable for the column's comparisons? */
static bool
value_type_ok(KafkaColumn col, Oid coltype, Oid valtype)
{
	if (col == KAFKA_COL_TIMESTAMP)
		return valtype == coltype;
	return is_int_type(valtype);
}

/* Map a btree strategy to a condition operator, 0 if not pushable. */
static KafkaCondOp
strategy_to_op(int strategy, bool commuted)
{
	switch (strategy)
	{
		case BTEqualStrategyNumber:
			return KAFKA_OP_EQ;
		case BTLessStrategyNumber:
			return commuted ? KAFKA_OP_GT : KAFKA_OP_LT;
		case BTLessEqualStrategyNumber:
			return commuted ? KAFKA_OP_GE : KAFKA_OP_LE;
		case BTGreaterStrategyNumber:
			return commuted ? KAFKA_OP_LT : KAFKA_OP_GT;
		case BTGreaterEqualStrategyNumber:
			return commuted ? KAFKA_OP_LE : KAFKA_OP_GE;
	}
	return KAFKA_OP_NONE;
}

/* Try to turn one restriction clause into a pushed-down condition. */
static void
extract_condition(Expr *clause, RelOptInfo *baserel, KafkaPlanState *ps)
{
	KafkaColumn col;
	Oid			coltype = InvalidOid;
	Node	   *value;
	KafkaCondOp op;
	Oid			opno;

	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *opexpr = (OpExpr *) clause;
		Node	   *left = linitial(opexpr->args);
		Node	   *right = lsecond(opexpr->args);
		bool		commuted = false;
		int			strategy;

		col = pushable_column(left, baserel, ps, &coltype);
		value = right;
		if (col == KAFKA_COL_NONE)
		{
			col = pushable_column(right, baserel, ps, &coltype);
			value = left;
			commuted = true;
		}
		if (col == KAFKA_COL_NONE || !is_pseudo_constant_clause(value) ||
			!value_type_ok(col, coltype, exprType(value)))
			return;
		opno = opexpr->opno;
		strategy = get_op_opfamily_strategy(opno, column_opfamily(coltype));
		op = strategy_to_op(strategy, commuted);
		if (op == KAFKA_OP_NONE)
			return;
		/* Only lower bounds on the timestamp can narrow the offsets. */
		if (col == KAFKA_COL_TIMESTAMP && op != KAFKA_OP_GE &&
			op != KAFKA_OP_GT && op != KAFKA_OP_EQ)
			return;
	}
	else if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
		Node	   *arr = lsecond(saop->args);

		if (!saop->useOr)
			return;
		col = pushable_column(linitial(saop->args), baserel, ps, &coltype);
		if (col != KAFKA_COL_PARTITION || !is_pseudo_constant_clause(arr) ||
			!is_int_type(get_element_type(exprType(arr))))
			return;
		if (get_op_opfamily_strategy(saop->opno, column_opfamily(coltype)) !=
			BTEqualStrategyNumber)
			return;
		op = KAFKA_OP_IN;
		value = arr;
	}
	else
		return;

	ps->cond_columns = lappend_int(ps->cond_columns, col);
	ps->cond_ops = lappend_int(ps->cond_ops, op);
	ps->cond_exprs = lappend(ps->cond_exprs, value);
}

/*
 * Fold the conditions that can be evaluated at plan time into bounds.
 * Conditions that need run-time values are left out: bounds only ever
 * narrow, so leaving one out just makes the estimate larger.
 */
static void
plan_time_bounds(PlannerInfo *root, KafkaPlanState *ps, KafkaScanBounds *b)
{
	ListCell   *lc1,
			   *lc2,
			   *lc3;

	kafka_bounds_init(b);
	forthree(lc1, ps->cond_columns, lc2, ps->cond_ops, lc3, ps->cond_exprs)
	{
		Node	   *value = estimate_expression_value(root, lfirst(lc3));

		if (IsA(value, Const))
			kafka_bounds_apply(b, lfirst_int(lc1), lfirst_int(lc2),
							   ((Const *) value)->constvalue,
							   ((Const *) value)->constisnull,
							   ((Const *) value)->consttype);
	}
}

/* Add one partition's range [lo, hi) to the estimates. */
static void
count_range(KafkaPlanState *ps, int64 lo, int64 hi, bool cuttable)
{
	int64		range_size = kafka_parallel_range_size > 0 ?
		kafka_parallel_range_size : KAFKA_MIN_RANGE_RECORDS;

	if (hi <= lo)
		return;
	ps->records += (double) (hi - lo);
	ps->ranges += cuttable ? ceil((double) (hi - lo) / range_size) : 1;
}

/*
 * Estimate the number of records in the pushed-down ranges (and the number
 * of ranges a parallel scan could make of them) from the brokers'
 * watermarks, or inside a streaming refresh from the ranges it decided.
 */
static void
estimate_records(KafkaPlanState *ps, const KafkaScanBounds *b, Oid userid, Oid relid)
{
	KafkaWatermark *wm;
	int			n;

	ps->records = ps->ranges = 0;
	if (b->empty)
		return;

	if (kafka_active_stream && kafka_active_stream->planning &&
		kafka_active_stream->ftable_oid == relid)
	{
		KafkaStreamContext *ctx = kafka_active_stream;

		for (int i = 0; i < ctx->nparts; i++)
			if (kafka_bounds_partition_ok(b, ctx->parts[i].partition))
				count_range(ps, Max(ctx->parts[i].start, b->offset_lo),
							Min(ctx->parts[i].end, b->offset_hi),
							ctx->parts[i].skip_before_ms < 0);
		return;
	}

	n = kafka_fetch_watermarks(ps->opts.serverid, userid, ps->opts.topic, true, &wm);
	for (int i = 0; i < n; i++)
		if (kafka_bounds_partition_ok(b, wm[i].partition))
			count_range(ps, Max(wm[i].low, b->offset_lo), Min(wm[i].high, b->offset_hi), true);
}

void
kafkaGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KafkaPlanState *ps = palloc0(sizeof(KafkaPlanState));
	Relation	rel;
	KafkaScanBounds bounds;
	List	   *other_quals = NIL;
	ListCell   *lc;
	Oid			userid;

	kafka_get_table_options(foreigntableid, &ps->opts);
	rel = table_open(foreigntableid, NoLock);
	ps->columns = kafka_map_columns(rel);
	ps->natts = RelationGetDescr(rel)->natts;
	table_close(rel, NoLock);

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		int			before = list_length(ps->cond_exprs);

		extract_condition(ri->clause, baserel, ps);
		if (list_length(ps->cond_exprs) == before ||
			llast_int(ps->cond_columns) == KAFKA_COL_TIMESTAMP)
			other_quals = lappend(other_quals, ri);
	}

	userid = OidIsValid(baserel->userid) ? baserel->userid : GetUserId();
	plan_time_bounds(root, ps, &bounds);
	estimate_records(ps, &bounds, userid, foreigntableid);

	baserel->fdw_private = ps;
	baserel->rows = clamp_row_est(ps->records *
								  clauselist_selectivity(root, other_quals,
														 baserel->relid,
														 JOIN_INNER, NULL));
	baserel->tuples = ps->records;
}

/*
 * Workers for a partial path: as for a table of KAFKA_EST_RECORD_BYTES-byte
 * records (min_parallel_table_scan_size, max_parallel_workers_per_gather),
 * and no more than there are ranges to share.
 */
static int
parallel_workers(RelOptInfo *baserel, KafkaPlanState *ps)
{
	double		pages = ps->records * KAFKA_EST_RECORD_BYTES / BLCKSZ;
	int			workers;

	workers = compute_parallel_worker(baserel, Min(pages, (double) MaxBlockNumber),
									  -1, max_parallel_workers_per_gather);
	if (workers > ps->ranges - (parallel_leader_participation ? 1 : 0))
		workers = (int) Max(ps->ranges - (parallel_leader_participation ? 1 : 0), 0);
	return workers;
}

void
kafkaGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KafkaPlanState *ps = baserel->fdw_private;
	Cost		startup_cost;
	Cost		run_cost;
	ForeignPath *path;

	/*
	 * A round trip to the brokers to start, then the cost of receiving and
	 * forming each record, which is a few times a heap tuple's, of the
	 * conditions checked locally, and of the target list.
	 */
	startup_cost = 100.0 + baserel->reltarget->cost.startup;
	run_cost = ps->records * (cpu_tuple_cost * 4) +
		baserel->baserestrictcost.per_tuple * ps->records +
		baserel->reltarget->cost.per_tuple * baserel->rows;

	path = create_foreignscan_path(root, baserel, NULL, baserel->rows,
								   startup_cost, startup_cost + run_cost,
								   NIL, NULL, NULL, NIL);
	path->path.parallel_safe = false;	/* see the comment at the top */
	add_path(baserel, (Path *) path);

	/*
	 * The partial path: each participant reads its share of the ranges, so
	 * rows and run cost are divided as cost_seqscan() divides them.
	 */
	if (baserel->consider_parallel && ps->records > 0)
	{
		int			workers = parallel_workers(baserel, ps);
		double		divisor = workers;

		if (workers > 0)
		{
			if (parallel_leader_participation && 1.0 - 0.3 * workers > 0)
				divisor += 1.0 - 0.3 * workers;
			path = create_foreignscan_path(root, baserel, NULL,
										   clamp_row_est(baserel->rows / divisor),
										   startup_cost, startup_cost + run_cost / divisor,
										   NIL, NULL, NULL, NIL);
			path->path.parallel_aware = true;
			path->path.parallel_safe = true;
			path->path.parallel_workers = workers;
			add_partial_path(baserel, (Path *) path);
		}
	}
}

/* Attribute numbers the scan must fill: those in the target list and quals. */
static List *
retrieved_attributes(RelOptInfo *baserel, int natts)
{
	Bitmapset  *attrs = NULL;
	List	   *result = NIL;
	ListCell   *lc;
	bool		whole_row;

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	foreach(lc, baserel->baserestrictinfo)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, lc)->clause,
					   baserel->relid, &attrs);

	whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs);
	for (int attno = 1; attno <= natts; attno++)
		if (whole_row ||
			bms_is_member(attno - FirstLowInvalidHeapAttributeNumber, attrs))
			result = lappend_int(result, attno);
	return result;
}

ForeignScan *
kafkaGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
					ForeignPath *best_path, List *tlist, List *scan_clauses,
					Plan *outer_plan)
{
	KafkaPlanState *ps = baserel->fdw_private;
	List	   *fdw_private;

	/* All clauses are checked locally too; pushdown only narrows the fetch. */
	scan_clauses = extract_actual_clauses(scan_clauses, false);

	fdw_private = NIL;
	fdw_private = lappend(fdw_private, retrieved_attributes(baserel, ps->natts));
	fdw_private = lappend(fdw_private, ps->cond_columns);
	fdw_private = lappend(fdw_private, ps->cond_ops);
	/* set by the streaming refresh on its own scan node (refresh.c) */
	fdw_private = lappend(fdw_private, makeInteger(0));

	return make_foreignscan(tlist, scan_clauses, baserel->relid,
							ps->cond_exprs, fdw_private, NIL, NIL, outer_plan);
}

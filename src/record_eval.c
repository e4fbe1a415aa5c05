/*-------------------------------------------------------------------------
 *
 * record_eval.c
 *		A streaming refresh's own scan evaluates the view's expressions (its
 *		WHERE and its target list) itself, so that a record on which they
 *		fail is skipped into kafka.stream_scan_errors instead of failing the
 *		refresh for good ("poison pill"), or, under on_error 'fail', fails it
 *		with an error that names the record.
 *
 * PostgreSQL's ExecScan evaluates a scan node's qual and projection after
 * IterateForeignScan returned the record.  On the view's own scan node
 * (marked by refresh.c) BeginForeignScan takes both off the node, so that
 * ExecScan returns what IterateForeignScan returns, and evaluates them here
 * under an error context callback that names topic, partition and offset.
 *
 * Skipping needs a subtransaction, and a subtransaction per record would
 * cost more than the record.  So records are evaluated in batches (up to
 * KAFKA_EVAL_BATCH_RECORDS records or KAFKA_EVAL_BATCH_BYTES bytes, and no
 * more than the messages last taken off the fetch queue):
 *
 *	1. the scan converts the batch's records (outside any subtransaction:
 *	   its own bookkeeping must not be rolled back), keeping their messages;
 *	2. one subtransaction evaluates the whole batch, the results copied
 *	   into the batch's memory and what each evaluation left behind freed
 *	   at once; it is released, so no rows are written inside it (the
 *	   parent inserts them afterwards, in the refresh's own transaction, and
 *	   no subtransaction id is assigned on the clean path);
 *	3. only if it failed with an error about the data (see
 *	   kafka_error_is_about_record()), the batch is evaluated again record by
 *	   record, each in a subtransaction of its own, and the failing records
 *	   are skipped and logged.  Cancels, resource errors, serialization
 *	   failures and errors of the scan itself are never swallowed.
 *
 * PostgreSQL 15 allows no subtransaction in parallel mode, so a parallel
 * refresh (and on_error 'fail') evaluates record by record with the error
 * context only; refresh.c runs a parallel refresh inside one subtransaction
 * and, when it fails on a record (recognised by that error context), runs it
 * again serially, where this file isolates the record.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "executor/instrument.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "scan.h"

#define KAFKA_EVAL_BATCH_RECORDS 1024
#define KAFKA_EVAL_BATCH_BYTES (8 * 1024 * 1024)

typedef struct KafkaRecordEval
{
	ExprState  *qual;			/* the view's WHERE, taken off the node */
	ProjectionInfo *proj;		/* the view's target list, or NULL */
	TupleTableSlot *out_slot;	/* what the node returns */
	const char *topic;
	Oid			relid;			/* the foreign table, for tableoid */
	bool		replaying;		/* evaluating a failed batch again */
	int32		cur_partition;	/* the record being evaluated */
	int64		cur_offset;

	/* isolating errors: one batch at a time */
	bool		isolate;
	ExprContext *econtext;		/* evaluation; its tuple memory is reset per record */
	MemoryContext batch_cxt;	/* the batch's converted records and results */
	int16	   *out_typlen;		/* per result column, for copying the results */
	bool	   *out_typbyval;
	int			scan_natts;
	int			out_natts;
	Datum	   *scan_values;	/* [KAFKA_EVAL_BATCH_RECORDS][scan_natts] */
	bool	   *scan_nulls;
	Datum	   *out_values;		/* [KAFKA_EVAL_BATCH_RECORDS][out_natts] */
	bool	   *out_nulls;
	bool	   *keep;			/* passed the WHERE and did not fail */
	rd_kafka_message_t **msgs;	/* each record's message, held */
	int			nrecords;
	int			next_out;
	bool		scan_ended;
} KafkaRecordEval;

/* CONTEXT line of every error raised while evaluating a record. */
static void
record_error_context(void *arg)
{
	KafkaRecordEval *ev = (KafkaRecordEval *) arg;

	errcontext("%s partition %d, offset " INT64_FORMAT " of topic \"%s\"",
			   KAFKA_RECORD_CONTEXT_TAG, (int) ev->cur_partition, ev->cur_offset,
			   ev->topic);
}

/*
 * Does the plan node evaluate expressions, a WHERE or a target list that is
 * more than column references?  Only those can fail on a record.
 */
bool
kafka_plan_node_evaluates(Plan *plan)
{
	ListCell   *lc;

	if (plan->qual != NIL)
		return true;
	foreach(lc, plan->targetlist)
		if (!IsA(lfirst_node(TargetEntry, lc)->expr, Var))
			return true;
	return false;
}

/*
 * Take the view's qual and projection off the node.  Called at the end of
 * BeginForeignScan, after ExecInitForeignScan has built both.
 */
void
kafka_eval_begin(ForeignScanState *node, KafkaScanState *st)
{
	KafkaRecordEval *ev = MemoryContextAllocZero(st->scan_cxt, sizeof(KafkaRecordEval));
	TupleTableSlot *scan_slot = node->ss.ss_ScanTupleSlot;

	ev->qual = node->ss.ps.qual;
	ev->proj = node->ss.ps.ps_ProjInfo;
	node->ss.ps.qual = NULL;
	node->ss.ps.ps_ProjInfo = NULL;
	ev->out_slot = ev->proj ? ev->proj->pi_state.resultslot : scan_slot;
	ev->topic = st->opts.topic;
	ev->relid = RelationGetRelid(node->ss.ss_currentRelation);

	/*
	 * Subtransactions: serial plans only (see the top of the file), and only
	 * if the view's expressions can fail at all.
	 */
	ev->isolate = !st->opts.on_error_fail && !IsInParallelMode() &&
		!node->ss.ps.plan->parallel_aware && kafka_plan_node_evaluates(node->ss.ps.plan);
	if (ev->isolate)
	{
		MemoryContext old = MemoryContextSwitchTo(st->scan_cxt);
		int			n = KAFKA_EVAL_BATCH_RECORDS;

		ev->econtext = CreateExprContext(node->ss.ps.state);
		if (ev->proj)
			ev->proj->pi_exprContext = ev->econtext;
		ev->scan_natts = scan_slot->tts_tupleDescriptor->natts;
		ev->out_natts = ev->out_slot->tts_tupleDescriptor->natts;
		ev->scan_values = palloc(sizeof(Datum) * n * Max(ev->scan_natts, 1));
		ev->scan_nulls = palloc(sizeof(bool) * n * Max(ev->scan_natts, 1));
		ev->out_values = palloc(sizeof(Datum) * n * Max(ev->out_natts, 1));
		ev->out_nulls = palloc(sizeof(bool) * n * Max(ev->out_natts, 1));
		ev->keep = palloc(sizeof(bool) * n);
		ev->msgs = palloc0(sizeof(rd_kafka_message_t *) * n);
		ev->out_typlen = palloc(sizeof(int16) * Max(ev->out_natts, 1));
		ev->out_typbyval = palloc(sizeof(bool) * Max(ev->out_natts, 1));
		for (int k = 0; k < ev->out_natts; k++)
		{
			Form_pg_attribute att = TupleDescAttr(ev->out_slot->tts_tupleDescriptor, k);

			ev->out_typlen[k] = att->attlen;
			ev->out_typbyval[k] = att->attbyval;
		}
		/*
		 * Blocks of at most 64 kB: reset once per batch, larger blocks would
		 * be mapped and unmapped (page faults) every time.
		 */
		ev->batch_cxt = AllocSetContextCreate(st->scan_cxt, "kafka_fdw record batch",
											  ALLOCSET_DEFAULT_MINSIZE,
											  64 * 1024, 64 * 1024);
		MemoryContextSwitchTo(old);
		st->hold_produced = true;
	}
	st->eval = ev;
}

/*
 * Forget the batch: destroy its messages.  From the scan's cleanup (also on
 * error) and rescans; must not throw.
 */
void
kafka_eval_reset(KafkaScanState *st)
{
	KafkaRecordEval *ev = st->eval;

	for (int i = 0; i < ev->nrecords; i++)
		if (ev->msgs && ev->msgs[i])
		{
			rd_kafka_message_destroy(ev->msgs[i]);
			ev->msgs[i] = NULL;
		}
	ev->nrecords = ev->next_out = 0;
	ev->scan_ended = false;
}

/*
 * Evaluate the view's WHERE and target list on the record in the scan slot
 * (econtext's scan tuple).  Returns false if the WHERE rejected it.
 */
static inline bool
eval_record(ForeignScanState *node, KafkaRecordEval *ev, ExprContext *econtext)
{
	if (ev->qual && !ExecQual(ev->qual, econtext))
	{
		if (!ev->replaying)
			InstrCountFiltered1(node, 1);
		return false;
	}
	if (ev->proj)
		ExecProject(ev->proj);
	return true;
}

/* Without isolation: evaluate each record as it comes, under the context. */
static TupleTableSlot *
next_unisolated(ForeignScanState *node, KafkaScanState *st, KafkaRecordEval *ev)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;

	for (;;)
	{
		TupleTableSlot *slot = kafka_scan_next(node, st);
		ErrorContextCallback errcb;
		bool		passed;

		if (TupIsNull(slot))
			return ExecClearTuple(ev->out_slot);

		ev->cur_partition = st->cur_partition;
		ev->cur_offset = st->cur_offset;
		errcb.callback = record_error_context;
		errcb.arg = ev;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		econtext->ecxt_scantuple = slot;
		slot->tts_tableOid = ev->relid;	/* as ForeignNext would, for tableoid */
		passed = eval_record(node, ev, econtext);
		error_context_stack = errcb.previous;
		if (passed)
			return ev->out_slot;
		/* ExecScan resets the tuple memory once per call, not per record */
		ResetExprContext(econtext);
	}
}

/*
 * Is this error about the record's contents, so that skipping the record is
 * the right answer?  Data exceptions, integrity violations (domains),
 * program limits (a value too long) and errors raised by functions are;
 * cancels, resource and system errors, serialization failures, errors of
 * the view's definition (privileges, missing objects) and of Kafka are not.
 */
bool
kafka_error_is_about_record(const ErrorData *edata)
{
	switch (ERRCODE_TO_CATEGORY(edata->sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:
		case ERRCODE_SQL_ROUTINE_EXCEPTION:
		case ERRCODE_EXTERNAL_ROUTINE_EXCEPTION:
		case ERRCODE_EXTERNAL_ROUTINE_INVOCATION_EXCEPTION:
		case ERRCODE_PROGRAM_LIMIT_EXCEEDED:
			/* too complex is the expression's fault, not the record's */
			return edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX;
		case ERRCODE_PLPGSQL_ERROR:
			return true;
		default:
			return false;
	}
}

/* Is this error one that record_eval.c would skip, raised on a record? */
bool
kafka_error_is_record_error(const ErrorData *edata)
{
	return edata->context != NULL &&
		strstr(edata->context, KAFKA_RECORD_CONTEXT_TAG) != NULL &&
		kafka_error_is_about_record(edata);
}

/* The error as the reason of a skipped record: message, then detail. */
char *
kafka_error_skip_reason(const ErrorData *edata)
{
	if (edata->detail)
		return psprintf("%s: %s", edata->message, edata->detail);
	return pstrdup(edata->message);
}

/*
 * Copy record i's results out of the slot into the batch's memory (those
 * that point into the record's converted values are copied too: telling
 * them apart would cost more than the copy).
 */
static void
keep_result(KafkaRecordEval *ev, int i)
{
	TupleTableSlot *out = ev->out_slot;
	Datum	   *values = &ev->out_values[i * ev->out_natts];
	bool	   *nulls = &ev->out_nulls[i * ev->out_natts];
	MemoryContext old = MemoryContextSwitchTo(ev->batch_cxt);

	for (int k = 0; k < ev->out_natts; k++)
	{
		nulls[k] = out->tts_isnull[k];
		values[k] = nulls[k] || ev->out_typbyval[k] ? out->tts_values[k] :
			datumCopy(out->tts_values[k], false, ev->out_typlen[k]);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Evaluate records [from, to) of the batch inside one subtransaction.
 * Returns NULL if all went well, else the error (the subtransaction rolled
 * back; errors not about the record are re-thrown).
 */
static ErrorData *
eval_in_subtransaction(ForeignScanState *node, KafkaRecordEval *ev, int from, int to)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	TupleTableSlot *scan_slot = node->ss.ss_ScanTupleSlot;
	ErrorData  *volatile failure = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ErrorContextCallback errcb;

		errcb.callback = record_error_context;
		errcb.arg = ev;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		ev->econtext->ecxt_scantuple = scan_slot;
		for (int i = from; i < to; i++)
		{
			ev->cur_partition = ev->msgs[i]->partition;
			ev->cur_offset = ev->msgs[i]->offset;
			ExecClearTuple(scan_slot);
			memcpy(scan_slot->tts_values, &ev->scan_values[i * ev->scan_natts],
				   sizeof(Datum) * ev->scan_natts);
			memcpy(scan_slot->tts_isnull, &ev->scan_nulls[i * ev->scan_natts],
				   sizeof(bool) * ev->scan_natts);
			ExecStoreVirtualTuple(scan_slot);
			scan_slot->tts_tableOid = ev->relid;
			ev->keep[i] = eval_record(node, ev, ev->econtext);
			if (ev->keep[i])
				keep_result(ev, i);
			/* what the evaluation left behind: only the results are kept */
			ResetExprContext(ev->econtext);
		}
		error_context_stack = errcb.previous;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		failure = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!kafka_error_is_about_record(failure))
			ReThrowError(failure);
	}
	PG_END_TRY();
	return failure;
}

/*
 * Read the next batch of records and evaluate it; records on which the
 * view's expressions fail are skipped and logged.
 */
static void
fill_and_evaluate_batch(ForeignScanState *node, KafkaScanState *st, KafkaRecordEval *ev)
{
	MemoryContext old;
	size_t		bytes = 0;

	kafka_eval_reset(st);
	MemoryContextReset(ev->batch_cxt);
	old = MemoryContextSwitchTo(ev->batch_cxt);
	while (ev->nrecords < KAFKA_EVAL_BATCH_RECORDS)
	{
		TupleTableSlot *slot = kafka_scan_next(node, st);
		int			i;

		if (TupIsNull(slot))
		{
			ev->scan_ended = true;
			break;
		}
		i = ev->nrecords++;
		ev->msgs[i] = st->held;
		st->held = NULL;
		memcpy(&ev->scan_values[i * ev->scan_natts], slot->tts_values,
			   sizeof(Datum) * ev->scan_natts);
		memcpy(&ev->scan_nulls[i * ev->scan_natts], slot->tts_isnull,
			   sizeof(bool) * ev->scan_natts);
		bytes += ev->msgs[i]->len + ev->msgs[i]->key_len;
		/* don't wait for the network with records in hand */
		if (bytes >= KAFKA_EVAL_BATCH_BYTES || kafka_scan_batch_used_up(st))
			break;
	}

	if (ev->nrecords > 0 && eval_in_subtransaction(node, ev, 0, ev->nrecords) != NULL)
	{
		/* something in the batch failed: find it, one record at a time */
		ev->replaying = true;
		for (int i = 0; i < ev->nrecords; i++)
		{
			ErrorData  *failure = eval_in_subtransaction(node, ev, i, i + 1);

			if (failure)
			{
				ev->keep[i] = false;
				kafka_scan_record_failed(st, ev->msgs[i], kafka_error_skip_reason(failure));
				FreeErrorData(failure);
			}
		}
		ev->replaying = false;
	}
	MemoryContextSwitchTo(old);

	for (int i = 0; i < ev->nrecords; i++)
	{
		rd_kafka_message_destroy(ev->msgs[i]);
		ev->msgs[i] = NULL;
	}
}

/* IterateForeignScan of the view's own scan node. */
TupleTableSlot *
kafka_eval_next(ForeignScanState *node, KafkaScanState *st)
{
	KafkaRecordEval *ev = st->eval;

	if (!ev->isolate)
		return next_unisolated(node, st, ev);

	for (;;)
	{
		while (ev->next_out < ev->nrecords)
		{
			int			i = ev->next_out++;
			TupleTableSlot *out = ev->out_slot;

			if (!ev->keep[i])
				continue;
			ExecClearTuple(out);
			memcpy(out->tts_values, &ev->out_values[i * ev->out_natts],
				   sizeof(Datum) * ev->out_natts);
			memcpy(out->tts_isnull, &ev->out_nulls[i * ev->out_natts],
				   sizeof(bool) * ev->out_natts);
			return ExecStoreVirtualTuple(out);
		}
		if (ev->scan_ended)
			return ExecClearTuple(ev->out_slot);
		fill_and_evaluate_batch(node, st, ev);
	}
}

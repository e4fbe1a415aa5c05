/*-------------------------------------------------------------------------
 *
 * cdc_apply.c
 *		The refresh of a replica table (stream kind 'r'): the change events
 *		of the new records applied by primary key, exactly once.
 *
 * refresh.c does what every stream's refresh does (locks the table with
 * ExclusiveLock, so readers go on and writers wait; decides each
 * partition's range once; saves the offsets in the same transaction), and
 * hands the records here: a serial scan of the Kafka table, so that each
 * partition's records arrive in offset order, into a DestReceiver that
 * applies them the way PostgreSQL's logical replication applies changes
 * (execReplication.c: the row found through the primary key index, then
 * inserted, updated or deleted with constraints, indexes and triggers):
 *
 *	c, r	insert, or overwrite the row with that key;
 *	u		overwrite (insert if missing); columns holding PostgreSQL's
 *			unchanged-TOAST placeholder keep their old values;
 *	d		delete by key (from "before", else the message key);
 *	t		delete every row (not TRUNCATE: readers are never blocked);
 *	tombstones are skipped.
 *
 * Every state an event leaves depends only on the event and the row with
 * its key, so events delivered twice (Debezium is at-least-once across a
 * connector restart) leave the same final state.
 *
 * Bad events (not JSON, unknown op, no key, a value that does not fit its
 * column, a constraint the row breaks) are skipped and logged in
 * kafka.stream_scan_errors under on_error 'skip', or fail the apply with an
 * error naming the record under on_error 'fail'.  Skipping needs a
 * subtransaction; one per event would cost more than the event, so events
 * are applied in batches, each in one subtransaction, and only a batch that
 * failed on an event is applied again event by event, each in its own, the
 * failing ones skipped.  Cancels, resource and serialization errors are
 * never swallowed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"
#include "common/hashfn.h"

#include "cdc.h"
#include "functions.h"

#define CDC_BATCH_EVENTS 65536
#define CDC_BATCH_BYTES (32 * 1024 * 1024)


/* The scan query's columns. */
enum
{
	Q_PARTITION,
	Q_OFFSET,
	Q_TIMESTAMP_TYPE,
	Q_TIMESTAMP,
	Q_KEY,
	Q_VALUE,
	Q_HEADERS,
	Q_NCOLS
};

/* A record of the batch, as the scan returned it. */
typedef struct CdcRecord
{
	int32		partition;
	int64		offset;
	char		timestamp_type;
	int64		timestamp_ms;	/* -1: none */
	char	   *key;			/* NULL: null key */
	size_t		keylen;
	char	   *value;			/* NULL: tombstone */
	size_t		valuelen;
	char	   *newkey;			/* header __debezium.newkey: the delete of a move */
	char	   *oldkey;			/* header __debezium.oldkey: the create of a move */
	bool		deferred;		/* a move's delete, applied after its create */
} CdcRecord;

/*
 * The last event of a key in the window (see collect_record()): a delete,
 * or a full row that replaces whatever the key's row was.
 */
typedef struct CdcImage
{
	uint32		hash;
	bool		is_delete;
	Datum	   *values;			/* a row of the table; for a delete its key */
	bool	   *isnull;
	const CdcRecord *record;	/* in the batch, for the error context */
} CdcImage;

typedef struct CdcApply
{
	DestReceiver pub;
	Relation	rel;
	KafkaStreamContext *ctx;
	const char *topic;
	bool		on_error_fail;
	Oid			pk_index;
	Relation	index;			/* the primary key index, opened by ExecOpenIndices */
	ScanKeyData *scankeys;		/* equality on each of its columns */
	CdcTable	table;
	CdcEvent	ev;

	Oid			key_type;		/* of the query's kafka_key and kafka_value */
	Oid			value_type;

	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	TupleTableSlot *search_slot;	/* the key to look for */
	TupleTableSlot *old_slot;	/* the row found */
	TupleTableSlot *new_slot;	/* the row to write */

	MemoryContext batch_cxt;	/* the batch's records */
	MemoryContext event_cxt;	/* one event's decoding, reset per event */
	CdcRecord  *batch;
	int			nbatch;
	size_t		batch_bytes;
	const CdcRecord *current;	/* being applied, for the error context */

	/*
	 * Schema evolution: a partition stops at its first event with a column
	 * the table lacks; its records from there are applied by the next pass,
	 * after kafka_replica_evolve() added the columns.
	 */
	int64	   *stop_offset;	/* per ctx->parts[i]: -1, or where it stopped */
	KafkaRecordFingerprint *last_passed;	/* the last record before it */
	List	   *new_columns;	/* CdcColumnDef, in the receiver's context */
	MemoryContext cxt;

	/*
	 * Primary-key updates: Debezium sends the delete of the old key (header
	 * __debezium.newkey), its tombstone, then the create of the new key
	 * (header __debezium.oldkey), whose unchanged TOASTed columns hold the
	 * placeholder.  The delete waits (per partition) until the create has
	 * taken those values from the old row; one still waiting at the end of
	 * the apply is left for the next, unless the new key's row exists.
	 */
	CdcRecord **pending;		/* per partition: a move's delete, or NULL */
	KafkaRecordFingerprint *pending_passed;	/* last_passed before it */
	CdcRecord **saved_pending;	/* for undoing a failed subtransaction */
	KafkaRecordFingerprint *saved_pending_passed;
	CdcEvent	keyev;			/* the old key of a move */
	text	   *newkey_header;	/* "__debezium.newkey", made once */
	text	   *oldkey_header;

	/*
	 * Collapsing: within a batch, an event that sets the whole row (c, r, u
	 * with every column and no placeholder) or deletes it makes the key's
	 * earlier events of the batch irrelevant, so only each key's last such
	 * event is written (flush_window()), as a hand-written MERGE keeps the
	 * last change per key.  Other events (partial rows, moves, truncates,
	 * new columns) flush the window and are applied one by one.
	 */
	bool		collapse;		/* the key's types have hash and equality */
	FmgrInfo   *key_hash;		/* per key column */
	FmgrInfo   *key_eq;
	Oid		   *key_coll;
	MemoryContext window_cxt;	/* the images, reset by each flush */
	CdcImage   *images;
	int			nimages;
	int			images_cap;
	int		   *slots;			/* open addressing into images, -1 empty */
	int			nslots;
	int64	   *saved_stop;		/* for undoing a failed subtransaction */
	KafkaRecordFingerprint *saved_passed;
	int			saved_ncolumns;

	uint64		applied;
} CdcApply;

/* Columns that the last apply found missing, for kafka_replica_evolve(). */
static Oid	evolve_relid = InvalidOid;
static List *evolve_columns = NIL;

/* The raw bytes of a kafka_key or kafka_value column (bytea, text or jsonb). */
static char *
column_bytes(Datum d, Oid type, size_t *len)
{
	if (type == JSONBOID)
	{
		char	   *s = JsonbToCString(NULL, &DatumGetJsonbP(d)->root, VARSIZE(DatumGetPointer(d)));

		*len = strlen(s);
		return s;
	}
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

		*len = VARSIZE_ANY_EXHDR(v);
		return VARDATA_ANY(v);
	}
}

static void
record_error_context(void *arg)
{
	CdcApply   *a = (CdcApply *) arg;

	if (a->current)
		errcontext(KAFKA_RECORD_CONTEXT_TAG " partition %d, offset " INT64_FORMAT " of topic \"%s\", applied to replica table \"%s\"",
				   a->current->partition, a->current->offset, a->topic,
				   RelationGetRelationName(a->rel));
}

/*
 * Let go of the rows the slots hold, with their buffer pins: a pin taken in
 * a subtransaction must be released before it ends.  The trigger slots are
 * made at startup (cdc_startup), outside any subtransaction, for the same
 * reason: a slot pins its tuple descriptor in the current resource owner.
 */
static void
clear_slots(CdcApply *a)
{
	ExecClearTuple(a->old_slot);
	ExecClearTuple(a->new_slot);
	ExecClearTuple(a->search_slot);
	if (a->rri->ri_TrigOldSlot)
		ExecClearTuple(a->rri->ri_TrigOldSlot);
	if (a->rri->ri_TrigNewSlot)
		ExecClearTuple(a->rri->ri_TrigNewSlot);
}

/* Fill a slot from the event's row image; the other columns from 'old' or NULL. */
static void
fill_slot(CdcApply *a, TupleTableSlot *slot, TupleTableSlot *old, bool keys_only)
{
	CdcTable   *t = &a->table;
	CdcEvent   *ev = &a->ev;

	ExecClearTuple(slot);
	if (old)
		slot_getallattrs(old);
	for (int i = 0; i < t->ncols; i++)
	{
		bool		take = ev->present[i] && !ev->unavailable[i] &&
			(!keys_only || t->cols[i].is_key);

		if (take)
		{
			slot->tts_values[i] = ev->values[i];
			slot->tts_isnull[i] = ev->isnull[i];
		}
		else if (old)
		{
			slot->tts_values[i] = old->tts_values[i];
			slot->tts_isnull[i] = old->tts_isnull[i];
		}
		else
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * Find the row with the event's key through the primary key index.  No
 * tuple lock is taken (unlike RelationFindReplTupleByIndex()): the apply
 * holds an ExclusiveLock on the table, so no one else writes it, and
 * SnapshotSelf shows this transaction's own changes of earlier events.
 */
static bool
find_row_values(CdcApply *a, const Datum *values)
{
	CdcTable   *t = &a->table;
	IndexScanDesc scan;
	bool		found;

	for (int k = 0; k < t->nkeys; k++)
		a->scankeys[k].sk_argument = values[t->keys[k] - 1];
	scan = index_beginscan(a->rel, a->index, SnapshotSelf, t->nkeys, 0);
	index_rescan(scan, a->scankeys, t->nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, a->old_slot);
	index_endscan(scan);
	return found;
}

static bool
find_row(CdcApply *a, const CdcEvent *ev)
{
	return find_row_values(a, ev->values);
}

/* Delete every row: Debezium's truncate event, without TRUNCATE's lock. */
static void
delete_all_rows(CdcApply *a)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TupleTableSlot *slot = table_slot_create(a->rel, NULL);
	TableScanDesc scan = table_beginscan(a->rel, snapshot, 0, NULL);

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		simple_table_tuple_delete(a->rel, &slot->tts_tid, snapshot);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
}

static void
unavailable_without_row(CdcApply *a)
{
	for (int i = 0; i < a->table.ncols; i++)
		if (a->ev.unavailable[i])
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("the update keeps the old value of column \"%s\", but replica table \"%s\" has no row with its key",
							a->table.cols[i].name, RelationGetRelationName(a->rel)),
					 errdetail("Debezium sends \"__debezium_unavailable_value\" for an unchanged TOASTed value.")));
}

static int
partition_index(CdcApply *a, int32 partition)
{
	for (int i = 0; i < a->ctx->nparts; i++)
		if (a->ctx->parts[i].partition == partition)
			return i;
	elog(ERROR, "record of partition %d outside the refresh", partition);
}

/* The record was dealt with (applied or skipped): the partition passed it. */
static void
passed(CdcApply *a, const CdcRecord *r)
{
	KafkaRecordFingerprint *f = &a->last_passed[partition_index(a, r->partition)];

	f->offset = r->offset;
	f->timestamp_ms = r->timestamp_ms;
	f->key_len = r->key ? (int32) r->keylen : -1;
	f->value_len = r->value ? (int32) r->valuelen : -1;
}

/* Keep the new columns an event needs (once each), in the receiver's context. */
static void
want_columns(CdcApply *a, List *columns)
{
	MemoryContext old = MemoryContextSwitchTo(a->cxt);
	ListCell   *lc;

	foreach(lc, columns)
	{
		CdcColumnDef *c = lfirst(lc);
		ListCell   *lc2;
		bool		known = false;

		foreach(lc2, a->new_columns)
			known |= strcmp(((CdcColumnDef *) lfirst(lc2))->name, c->name) == 0;
		if (!known)
		{
			CdcColumnDef *copy = palloc(sizeof(CdcColumnDef));

			copy->name = pstrdup(c->name);
			copy->type_sql = pstrdup(c->type_sql);
			copy->not_null = false;
			a->new_columns = lappend(a->new_columns, copy);
		}
	}
	MemoryContextSwitchTo(old);
}

static char *
copy_bytes(MemoryContext cxt, const char *data, size_t len)
{
	char	   *p = MemoryContextAlloc(cxt, len + 1);

	memcpy(p, data, len);
	p[len] = '\0';
	return p;
}

/* A copy of a record that outlives its batch, in the receiver's context. */
static CdcRecord *
keep_record(CdcApply *a, const CdcRecord *r)
{
	CdcRecord  *c = MemoryContextAlloc(a->cxt, sizeof(CdcRecord));

	*c = *r;
	c->key = r->key ? copy_bytes(a->cxt, r->key, r->keylen) : NULL;
	c->value = r->value ? copy_bytes(a->cxt, r->value, r->valuelen) : NULL;
	c->newkey = r->newkey ? MemoryContextStrdup(a->cxt, r->newkey) : NULL;
	c->oldkey = r->oldkey ? MemoryContextStrdup(a->cxt, r->oldkey) : NULL;
	c->deferred = true;
	return c;
}

/*
 * The create of a moved row (header __debezium.oldkey) whose unchanged
 * TOASTed columns hold the placeholder: the old key's row, still there (its
 * delete waits, or comes later in another partition), into old_slot.
 */
static bool
find_moved_row(CdcApply *a, const CdcRecord *r)
{
	if (r->oldkey == NULL || !cdc_decode_key(&a->table, r->oldkey, strlen(r->oldkey), &a->keyev))
		return false;
	return find_row(a, &a->keyev);
}

/* Decode and apply one record's event.  Returns whether it changed anything. */
static bool
apply_event(CdcApply *a, const CdcRecord *r, int pi)
{
	CdcEvent   *ev = &a->ev;
	MemoryContext old;
	bool		changed = true;

	old = MemoryContextSwitchTo(a->event_cxt);
	a->current = r;
	cdc_decode_event(&a->table, r->key, r->keylen, r->value, r->valuelen, ev);
	if (ev->new_columns != NIL)
	{
		want_columns(a, ev->new_columns);
		a->stop_offset[pi] = r->offset;
		ev->op = CDC_OP_NONE;
		changed = false;
	}
	switch (ev->op)
	{
		case CDC_OP_NONE:
			changed = false;
			break;
		case CDC_OP_TRUNCATE:
			delete_all_rows(a);
			break;
		case CDC_OP_DELETE:
			if (find_row(a, &a->ev))
				ExecSimpleRelationDelete(a->rri, a->estate, &a->epq, a->old_slot);
			break;
		case CDC_OP_CREATE:
		case CDC_OP_READ:
		case CDC_OP_UPDATE:
			if (find_row(a, &a->ev))
			{
				fill_slot(a, a->new_slot, a->old_slot, false);
				ExecSimpleRelationUpdate(a->rri, a->estate, &a->epq, a->old_slot, a->new_slot);
			}
			else if (ev->has_unavailable && find_moved_row(a, r))
			{
				/* the moved row: its unchanged values from the old key's row */
				fill_slot(a, a->new_slot, a->old_slot, false);
				ExecSimpleRelationInsert(a->rri, a->estate, a->new_slot);
			}
			else
			{
				if (ev->has_unavailable)
					unavailable_without_row(a);
				fill_slot(a, a->new_slot, NULL, false);
				ExecSimpleRelationInsert(a->rri, a->estate, a->new_slot);
			}
			break;
	}
	clear_slots(a);
	ResetPerTupleExprContext(a->estate);
	MemoryContextSwitchTo(old);
	MemoryContextReset(a->event_cxt);
	/* the next event of the same key must see this one's row */
	CommandCounterIncrement();
	a->estate->es_output_cid = GetCurrentCommandId(true);
	a->current = NULL;
	return changed;
}

/* Apply one record, deferring the delete of a move.  Returns the events applied. */
static int
apply_record(CdcApply *a, const CdcRecord *r)
{
	int			pi = partition_index(a, r->partition);
	CdcRecord  *pending = a->pending[pi];
	int			applied = 0;

	if (a->stop_offset[pi] >= 0 && r->offset >= a->stop_offset[pi])
		return 0;				/* for the next pass */
	if (r->deferred)
		return apply_event(a, r, pi) ? 1 : 0;
	if (pending != NULL)
	{
		if (r->value == NULL)
		{
			passed(a, r);		/* the tombstone of the waiting delete */
			return 0;
		}
		if (r->oldkey != NULL)
		{
			/* the create of the move: then the old row goes */
			applied += apply_event(a, r, pi) ? 1 : 0;
			applied += apply_event(a, pending, pi) ? 1 : 0;
			a->pending[pi] = NULL;
			passed(a, r);
			return applied;
		}
		/* something else: the move's create is elsewhere; delete now */
		applied += apply_event(a, pending, pi) ? 1 : 0;
		a->pending[pi] = NULL;
	}
	if (r->newkey != NULL && r->value != NULL)
	{
		a->pending_passed[pi] = a->last_passed[pi];
		a->pending[pi] = keep_record(a, r);
		passed(a, r);
		return applied;
	}
	applied += apply_event(a, r, pi) ? 1 : 0;
	if (a->stop_offset[pi] < 0 || r->offset < a->stop_offset[pi])
		passed(a, r);
	return applied;
}

/* What an attempt changes outside the database, to undo when it fails. */
static void
save_pending(CdcApply *a)
{
	int			n = Max(a->ctx->nparts, 1);

	memcpy(a->saved_pending, a->pending, sizeof(CdcRecord *) * n);
	memcpy(a->saved_pending_passed, a->pending_passed, sizeof(KafkaRecordFingerprint) * n);
	memcpy(a->saved_stop, a->stop_offset, sizeof(int64) * n);
	memcpy(a->saved_passed, a->last_passed, sizeof(KafkaRecordFingerprint) * n);
	a->saved_ncolumns = list_length(a->new_columns);
}

static void
restore_pending(CdcApply *a)
{
	int			n = Max(a->ctx->nparts, 1);

	memcpy(a->pending, a->saved_pending, sizeof(CdcRecord *) * n);
	memcpy(a->pending_passed, a->saved_pending_passed, sizeof(KafkaRecordFingerprint) * n);
	memcpy(a->stop_offset, a->saved_stop, sizeof(int64) * n);
	memcpy(a->last_passed, a->saved_passed, sizeof(KafkaRecordFingerprint) * n);
	a->new_columns = list_truncate(a->new_columns, a->saved_ncolumns);
}

static void
reset_window(CdcApply *a)
{
	MemoryContextReset(a->window_cxt);
	a->images = NULL;
	a->slots = NULL;
	a->nimages = a->images_cap = a->nslots = 0;
}

/* Write each key's last event of the window. */
static void
flush_window(CdcApply *a)
{
	CdcTable   *t = &a->table;

	if (a->nimages == 0)
	{
		reset_window(a);
		return;
	}
	/* rows of earlier commands only: each key is written once below */
	CommandCounterIncrement();
	a->estate->es_output_cid = GetCurrentCommandId(true);
	for (int i = 0; i < a->nimages; i++)
	{
		CdcImage   *img = &a->images[i];
		bool		found = find_row_values(a, img->values);

		CHECK_FOR_INTERRUPTS();
		a->current = img->record;
		if (!img->is_delete)
		{
			ExecClearTuple(a->new_slot);
			memcpy(a->new_slot->tts_values, img->values, sizeof(Datum) * t->ncols);
			memcpy(a->new_slot->tts_isnull, img->isnull, sizeof(bool) * t->ncols);
			ExecStoreVirtualTuple(a->new_slot);
		}
		if (found && img->is_delete)
			ExecSimpleRelationDelete(a->rri, a->estate, &a->epq, a->old_slot);
		else if (found)
			ExecSimpleRelationUpdate(a->rri, a->estate, &a->epq, a->old_slot, a->new_slot);
		else if (!img->is_delete)
			ExecSimpleRelationInsert(a->rri, a->estate, a->new_slot);
		clear_slots(a);
		ResetPerTupleExprContext(a->estate);
	}
	a->current = NULL;
	CommandCounterIncrement();
	a->estate->es_output_cid = GetCurrentCommandId(true);
	reset_window(a);
}

static uint32
key_hash(CdcApply *a, const Datum *values)
{
	uint32		h = 0;

	for (int k = 0; k < a->table.nkeys; k++)
		h = hash_combine(h, DatumGetUInt32(FunctionCall1Coll(&a->key_hash[k], a->key_coll[k],
															 values[a->table.keys[k] - 1])));
	return h;
}

static bool
same_key(CdcApply *a, const Datum *x, const Datum *y)
{
	for (int k = 0; k < a->table.nkeys; k++)
	{
		int			c = a->table.keys[k] - 1;

		if (!DatumGetBool(FunctionCall2Coll(&a->key_eq[k], a->key_coll[k], x[c], y[c])))
			return false;
	}
	return true;
}

/* Make image the last event of its key in the window. */
static void
add_image(CdcApply *a, CdcImage *img)
{
	if (a->nimages == a->images_cap)
	{
		MemoryContext old = MemoryContextSwitchTo(a->window_cxt);
		int			cap = Max(1024, a->images_cap * 2);

		a->images = a->images ? repalloc(a->images, sizeof(CdcImage) * cap) :
			palloc(sizeof(CdcImage) * cap);
		a->images_cap = cap;
		/* the slots: twice the images, rehashed */
		a->nslots = cap * 2;
		a->slots = palloc(sizeof(int) * a->nslots);
		memset(a->slots, -1, sizeof(int) * a->nslots);
		for (int i = 0; i < a->nimages; i++)
		{
			int			s = a->images[i].hash & (a->nslots - 1);

			while (a->slots[s] >= 0)
				s = (s + 1) & (a->nslots - 1);
			a->slots[s] = i;
		}
		MemoryContextSwitchTo(old);
	}
	{
		int			s = img->hash & (a->nslots - 1);

		for (; a->slots[s] >= 0; s = (s + 1) & (a->nslots - 1))
		{
			CdcImage   *other = &a->images[a->slots[s]];

			if (other->hash == img->hash && same_key(a, other->values, img->values))
			{
				*other = *img;
				return;
			}
		}
		a->slots[s] = a->nimages;
		a->images[a->nimages++] = *img;
	}
}

/* Does the decoded event set the whole row (or delete it), whatever it was? */
static bool
sets_whole_row(const CdcTable *t, const CdcEvent *ev)
{
	if (ev->new_columns != NIL)
		return false;
	if (ev->op == CDC_OP_DELETE)
		return true;
	if (ev->op != CDC_OP_CREATE && ev->op != CDC_OP_READ && ev->op != CDC_OP_UPDATE)
		return false;
	if (ev->has_unavailable)
		return false;
	for (int i = 0; i < t->ncols; i++)
		if (t->cols[i].name && !ev->present[i])
			return false;
	return true;
}

static int	apply_record(CdcApply *a, const CdcRecord *r);

/*
 * Take a record into the window, or (for events that are not whole rows or
 * deletes) flush the window and apply the record.  Returns events applied.
 */
static int
collect_record(CdcApply *a, const CdcRecord *r)
{
	int			pi = partition_index(a, r->partition);
	CdcEvent   *ev = &a->ev;
	CdcImage	img;
	MemoryContext old;

	if (a->stop_offset[pi] >= 0 && r->offset >= a->stop_offset[pi])
		return 0;
	if (!a->collapse || r->deferred || a->pending[pi] || r->newkey || r->oldkey)
	{
		flush_window(a);
		return apply_record(a, r);
	}
	if (r->value == NULL)
	{
		passed(a, r);			/* a tombstone */
		return 0;
	}
	old = MemoryContextSwitchTo(a->window_cxt);
	a->current = r;
	cdc_decode_event(&a->table, r->key, r->keylen, r->value, r->valuelen, ev);
	a->current = NULL;
	MemoryContextSwitchTo(old);
	if (!sets_whole_row(&a->table, ev))
	{
		flush_window(a);
		return apply_record(a, r);
	}
	img.is_delete = ev->op == CDC_OP_DELETE;
	img.values = MemoryContextAlloc(a->window_cxt, sizeof(Datum) * a->table.ncols);
	img.isnull = MemoryContextAlloc(a->window_cxt, sizeof(bool) * a->table.ncols);
	memcpy(img.values, ev->values, sizeof(Datum) * a->table.ncols);
	memcpy(img.isnull, ev->isnull, sizeof(bool) * a->table.ncols);
	img.hash = key_hash(a, img.values);
	img.record = r;
	add_image(a, &img);
	passed(a, r);
	return 1;
}

static void apply_batch(CdcApply *a);

/*
 * At the end of the apply, a move's delete still waiting: apply it if the
 * new key's row exists (its create was applied, from another partition),
 * else stop its partition there, for the next apply to read the create.
 */
static void
finish_pending(CdcApply *a)
{
	for (int i = 0; i < a->ctx->nparts; i++)
	{
		CdcRecord  *p = a->pending[i];

		if (p == NULL)
			continue;
		a->pending[i] = NULL;
		if (cdc_decode_key(&a->table, p->newkey, strlen(p->newkey), &a->keyev) &&
			find_row(a, &a->keyev))
		{
			ExecClearTuple(a->old_slot);
			if (a->nbatch == CDC_BATCH_EVENTS)
				apply_batch(a);
			a->batch[a->nbatch++] = *p;
			continue;
		}
		ExecClearTuple(a->old_slot);
		a->stop_offset[i] = p->offset;
		a->last_passed[i] = a->pending_passed[i];
	}
}

/* Log a skipped record and count it as skipped instead of scanned. */
static void
skip_record(CdcApply *a, const CdcRecord *r, const char *reason)
{
	KafkaStreamContext *ctx = a->ctx;

	for (int i = 0; i < ctx->nparts; i++)
		if (ctx->parts[i].partition == r->partition)
		{
			ctx->parts[i].scanned_rows--;
			ctx->parts[i].skipped_rows++;
		}
	ctx->nskipped++;
	kafka_stream_add_skipped(ctx, r->partition, r->offset, r->timestamp_type,
							 r->timestamp_ms, reason, r->key, r->keylen,
							 r->value, r->valuelen);
}

/*
 * Apply records [from, to) of the batch in one subtransaction.  Returns
 * NULL if all applied, else the error (the subtransaction rolled back).
 * Errors not about the record are re-thrown.
 */
static ErrorData *
apply_in_subtransaction(CdcApply *a, int from, int to)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;
	volatile uint64 applied = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		save_pending(a);
		for (int i = from; i < to; i++)
			applied += collect_record(a, &a->batch[i]);
		flush_window(a);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		a->applied += applied;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* the slots' buffer pins belong to the subtransaction */
		clear_slots(a);
		a->current = NULL;
		MemoryContextReset(a->event_cxt);
		reset_window(a);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		a->estate->es_output_cid = GetCurrentCommandId(true);
		restore_pending(a);
		if (!kafka_error_is_about_record(edata))
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}

/*
 * Apply records [from, to) in a subtransaction; if one fails, each half
 * again, down to the failing records, which are skipped and logged: a few
 * bad events cost a few subtransactions, not one per event.
 */
static void
apply_range(CdcApply *a, int from, int to)
{
	ErrorData  *edata = apply_in_subtransaction(a, from, to);
	int			mid = from + (to - from) / 2;

	if (edata == NULL)
		return;
	if (to - from == 1)
	{
		skip_record(a, &a->batch[from], kafka_error_skip_reason(edata));
		passed(a, &a->batch[from]);
		FreeErrorData(edata);
		return;
	}
	FreeErrorData(edata);
	apply_range(a, from, mid);
	apply_range(a, mid, to);
}

static void
apply_batch(CdcApply *a)
{
	ErrorContextCallback errcb;

	errcb.callback = record_error_context;
	errcb.arg = a;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (a->on_error_fail)
	{
		for (int i = 0; i < a->nbatch; i++)
			a->applied += collect_record(a, &a->batch[i]);
		flush_window(a);
	}
	else if (a->nbatch > 0)
		apply_range(a, 0, a->nbatch);
	error_context_stack = errcb.previous;
	a->nbatch = 0;
	a->batch_bytes = 0;
	MemoryContextReset(a->batch_cxt);
}

static bool
cdc_receive(TupleTableSlot *slot, DestReceiver *self)
{
	CdcApply   *a = (CdcApply *) self;
	CdcRecord  *r = &a->batch[a->nbatch];

	slot_getallattrs(slot);
	r->partition = DatumGetInt32(slot->tts_values[Q_PARTITION]);
	r->offset = DatumGetInt64(slot->tts_values[Q_OFFSET]);
	r->timestamp_type = slot->tts_isnull[Q_TIMESTAMP_TYPE] ? 'U' :
		DatumGetChar(slot->tts_values[Q_TIMESTAMP_TYPE]);
	r->timestamp_ms = slot->tts_isnull[Q_TIMESTAMP] ? -1 :
		DatumGetTimestampTz(slot->tts_values[Q_TIMESTAMP]) / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	r->key = r->value = NULL;
	r->keylen = r->valuelen = 0;
	if (!slot->tts_isnull[Q_KEY])
	{
		size_t		len;
		char	   *p = column_bytes(slot->tts_values[Q_KEY], a->key_type, &len);

		r->key = copy_bytes(a->batch_cxt, p, len);
		r->keylen = len;
	}
	if (!slot->tts_isnull[Q_VALUE])
	{
		size_t		len;
		char	   *p = column_bytes(slot->tts_values[Q_VALUE], a->value_type, &len);

		r->value = copy_bytes(a->batch_cxt, p, len);
		r->valuelen = len;
	}
	r->newkey = r->oldkey = NULL;
	r->deferred = false;
	if (!slot->tts_isnull[Q_HEADERS])
	{
		/* a move's keys, copied into the batch (nothing else is allocated) */
		MemoryContext old = MemoryContextSwitchTo(a->batch_cxt);
		Jsonb	   *h = DatumGetJsonbP(slot->tts_values[Q_HEADERS]);

		r->newkey = kafka_header_text(h, a->newkey_header);
		r->oldkey = kafka_header_text(h, a->oldkey_header);
		MemoryContextSwitchTo(old);
	}
	a->batch_bytes += r->keylen + r->valuelen;
	if (++a->nbatch == CDC_BATCH_EVENTS || a->batch_bytes >= CDC_BATCH_BYTES)
		apply_batch(a);
	return true;
}

static void
cdc_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	CdcApply   *a = (CdcApply *) self;
	RangeTblEntry *rte;

	a->key_type = TupleDescAttr(typeinfo, Q_KEY)->atttypid;
	a->value_type = TupleDescAttr(typeinfo, Q_VALUE)->atttypid;
	a->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(a->rel);
	rte->relkind = a->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	kafka_init_range_table(a->estate, list_make1(rte));
	a->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(a->rri, a->rel, 1, NULL, 0);
	/* where AFTER triggers look for it (else they open the table again) */
	a->estate->es_opened_result_relations = lappend(a->estate->es_opened_result_relations, a->rri);
	ExecOpenIndices(a->rri, false);
	a->estate->es_output_cid = GetCurrentCommandId(true);
	EvalPlanQualInit(&a->epq, a->estate, NULL, NIL, -1);
	a->search_slot = ExecInitExtraTupleSlot(a->estate, RelationGetDescr(a->rel), &TTSOpsVirtual);
	a->new_slot = ExecInitExtraTupleSlot(a->estate, RelationGetDescr(a->rel), &TTSOpsVirtual);
	a->old_slot = table_slot_create(a->rel, &a->estate->es_tupleTable);
	if (a->rel->trigdesc)
	{
		(void) ExecGetTriggerOldSlot(a->estate, a->rri);
		(void) ExecGetTriggerNewSlot(a->estate, a->rri);
	}
	for (int i = 0; i < a->rri->ri_NumIndices; i++)
		if (RelationGetRelid(a->rri->ri_IndexRelationDescs[i]) == a->pk_index)
			a->index = a->rri->ri_IndexRelationDescs[i];
	if (a->index == NULL)
		elog(ERROR, "primary key index of replica table \"%s\" is not open",
			 RelationGetRelationName(a->rel));
	a->scankeys = palloc0(sizeof(ScanKeyData) * a->table.nkeys);
	for (int k = 0; k < a->table.nkeys; k++)
	{
		Oid			opfamily = a->index->rd_opfamily[k];
		Oid			optype = a->index->rd_opcintype[k];
		Oid			op = get_opfamily_member(opfamily, optype, optype, BTEqualStrategyNumber);

		if (!OidIsValid(op))
			elog(ERROR, "no equality operator for column %d of index \"%s\"",
				 k + 1, RelationGetRelationName(a->index));
		ScanKeyInit(&a->scankeys[k], k + 1, BTEqualStrategyNumber, get_opcode(op), (Datum) 0);
		a->scankeys[k].sk_collation = a->index->rd_indcollation[k];
	}
	AfterTriggerBeginQuery();
}

static void
cdc_shutdown(DestReceiver *self)
{
	CdcApply   *a = (CdcApply *) self;

	apply_batch(a);
	finish_pending(a);
	apply_batch(a);
	/* partitions stopped (new columns, a move's create not there yet) end where they stopped */
	for (int i = 0; i < a->ctx->nparts; i++)
		if (a->stop_offset[i] >= 0)
		{
			a->ctx->parts[i].end = a->stop_offset[i];
			a->ctx->parts[i].last = a->last_passed[i];
		}
	evolve_relid = RelationGetRelid(a->rel);
	evolve_columns = a->new_columns;
	AfterTriggerEndQuery(a->estate);
	EvalPlanQualEnd(&a->epq);
	/* the replica's indexes, and any relation the triggers opened */
	ExecCloseResultRelations(a->estate);
	ExecResetTupleTable(a->estate->es_tupleTable, false);
	FreeExecutorState(a->estate);
	a->estate = NULL;
}

static void
cdc_destroy(DestReceiver *self)
{
	CdcApply   *a = (CdcApply *) self;

	MemoryContextDelete(a->batch_cxt);
	MemoryContextDelete(a->event_cxt);
	MemoryContextDelete(a->window_cxt);
	pfree(a);
}

typedef struct CdcSinkArg
{
	KafkaStreamContext *ctx;
	const KafkaTableOptions *opts;
} CdcSinkArg;

static DestReceiver *
create_apply_dest(Relation replica, void *arg)
{
	CdcSinkArg *sa = (CdcSinkArg *) arg;
	CdcApply   *a = palloc0(sizeof(CdcApply));

	a->pub.receiveSlot = cdc_receive;
	a->pub.rStartup = cdc_startup;
	a->pub.rShutdown = cdc_shutdown;
	a->pub.rDestroy = cdc_destroy;
	a->pub.mydest = DestNone;
	a->rel = replica;
	a->ctx = sa->ctx;
	a->topic = sa->opts->topic;
	a->on_error_fail = sa->opts->on_error_fail;
	a->pk_index = RelationGetPrimaryKeyIndex(replica);
	cdc_table_init(&a->table, replica);
	cdc_event_init(&a->ev, &a->table);
	cdc_event_init(&a->keyev, &a->table);
	a->newkey_header = cstring_to_text("__debezium.newkey");
	a->oldkey_header = cstring_to_text("__debezium.oldkey");
	a->batch = palloc(sizeof(CdcRecord) * CDC_BATCH_EVENTS);
	a->cxt = CurrentMemoryContext;
	a->stop_offset = palloc(sizeof(int64) * Max(a->ctx->nparts, 1));
	a->last_passed = palloc(sizeof(KafkaRecordFingerprint) * Max(a->ctx->nparts, 1));
	a->saved_stop = palloc0(sizeof(int64) * Max(a->ctx->nparts, 1));
	a->saved_passed = palloc0(sizeof(KafkaRecordFingerprint) * Max(a->ctx->nparts, 1));
	a->window_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw replica window",
										  ALLOCSET_DEFAULT_SIZES);
	a->key_hash = palloc0(sizeof(FmgrInfo) * a->table.nkeys);
	a->key_eq = palloc0(sizeof(FmgrInfo) * a->table.nkeys);
	a->key_coll = palloc0(sizeof(Oid) * a->table.nkeys);
	a->collapse = true;
	for (int k = 0; k < a->table.nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(replica), a->table.keys[k] - 1);
		TypeCacheEntry *tc = lookup_type_cache(att->atttypid,
											   TYPECACHE_HASH_PROC_FINFO | TYPECACHE_EQ_OPR_FINFO);

		if (!OidIsValid(tc->hash_proc_finfo.fn_oid) || !OidIsValid(tc->eq_opr_finfo.fn_oid))
		{
			a->collapse = false;
			break;
		}
		fmgr_info_copy(&a->key_hash[k], &tc->hash_proc_finfo, CurrentMemoryContext);
		fmgr_info_copy(&a->key_eq[k], &tc->eq_opr_finfo, CurrentMemoryContext);
		a->key_coll[k] = att->attcollation;
	}
	a->pending = palloc0(sizeof(CdcRecord *) * Max(a->ctx->nparts, 1));
	a->saved_pending = palloc0(sizeof(CdcRecord *) * Max(a->ctx->nparts, 1));
	a->pending_passed = palloc0(sizeof(KafkaRecordFingerprint) * Max(a->ctx->nparts, 1));
	a->saved_pending_passed = palloc0(sizeof(KafkaRecordFingerprint) * Max(a->ctx->nparts, 1));
	for (int i = 0; i < a->ctx->nparts; i++)
	{
		a->stop_offset[i] = -1;
		a->last_passed[i].offset = -1;
	}
	a->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw replica batch",
										 ALLOCSET_DEFAULT_SIZES);
	a->event_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw replica event",
										 ALLOCSET_DEFAULT_SIZES);
	return (DestReceiver *) a;
}

static uint64
apply_dest_processed(DestReceiver *self)
{
	return ((CdcApply *) self)->applied;
}

/* The query that reads the stream's records: a column of each kind, in Q_ order. */
static Query *
records_query(Oid ftable_oid)
{
	static const char *const names[Q_NCOLS] = {
		"kafka_partition", "kafka_offset", "kafka_timestamp_type",
		"kafka_timestamp", "kafka_key", "kafka_value", "kafka_headers"
	};
	static const char *const missing[Q_NCOLS] = {
		NULL, NULL, "NULL::pg_catalog.\"char\"", "NULL::pg_catalog.timestamptz",
		"NULL::pg_catalog.bytea", NULL, "NULL::pg_catalog.jsonb"
	};
	StringInfoData sql;
	List	   *raw;
	char	   *relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(ftable_oid)),
													 get_rel_name(ftable_oid));

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < Q_NCOLS; i++)
	{
		bool		has = get_attnum(ftable_oid, names[i]) != InvalidAttrNumber;

		if (!has && missing[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("Kafka table %s has no column %s", relname, names[i]),
					 errhint("A replica reads kafka_partition, kafka_offset and kafka_value (and kafka_key if the table has it).")));
		appendStringInfo(&sql, "%s%s", i ? ", " : "", has ? quote_identifier(names[i]) : missing[i]);
	}
	appendStringInfo(&sql, " FROM ONLY %s", relname);
	{
		/* every name above is qualified; the path is pinned all the same */
		int			nest = NewGUCNestLevel();
		Query	   *query;

		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		raw = pg_parse_query(sql.data);
		query = kafka_parse_analyze(linitial_node(RawStmt, raw), sql.data);
		AtEOXact_GUC(true, nest);
		return query;
	}
}

/*
 * Apply the events of the refresh's ranges to the replica table; returns the
 * number of events that changed it.  Called by kafka_refresh_stream(), in
 * the refresh's transaction.
 */
uint64
kafka_replica_apply(Relation replica, KafkaStreamContext *ctx,
					const KafkaTableOptions *opts, const char *queryString)
{
	CdcSinkArg	arg = {ctx, opts};
	KafkaStreamSink sink = {create_apply_dest, apply_dest_processed, &arg};

	evolve_relid = InvalidOid;
	evolve_columns = NIL;

	/* in offset order within each partition: a serial plan */
	return kafka_stream_run_query(replica, ctx, records_query(ctx->ftable_oid), queryString,
								  opts->on_error_fail, false, &sink);
}

/*
 * After an apply of the replica: add the columns its events needed (a
 * column added at the source, with schemas on), as the replica's owner.
 * Returns true if it added any: the caller applies the rest of the events,
 * from where each partition stopped.  ALTER TABLE needs the table closed by
 * the apply, and an ACCESS EXCLUSIVE lock for a moment.
 */
bool
kafka_replica_evolve(Oid replica)
{
	Oid			owner = kafka_relation_owner(replica);
	Oid			save_userid;
	int			save_sec_context;
	int			before = 0;
	int			after = 0;
	ListCell   *lc;
	StringInfoData sql;
	char	   *name;

	if (evolve_relid != replica || evolve_columns == NIL)
		return false;
	name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(replica)),
									  get_rel_name(replica));
	initStringInfo(&sql);
	appendStringInfo(&sql, "ALTER TABLE %s", name);
	foreach(lc, evolve_columns)
	{
		CdcColumnDef *c = lfirst(lc);

		appendStringInfo(&sql, "%s ADD COLUMN %s %s", foreach_current_index(lc) ? "," : "",
						 quote_identifier(c->name), c->type_sql);
	}
	evolve_relid = InvalidOid;
	evolve_columns = NIL;

	{
		Relation	rel = table_open(replica, AccessShareLock);

		before = RelationGetNumberOfAttributes(rel);
		table_close(rel, AccessShareLock);
	}
	/* as the replica's owner, search_path pinned */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_RESTRICTED_OPERATION);
	kafka_stream_exec_utility(sql.data, false);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	CommandCounterIncrement();
	{
		Relation	rel = table_open(replica, AccessShareLock);

		after = RelationGetNumberOfAttributes(rel);
		table_close(rel, AccessShareLock);
	}
	ereport(NOTICE,
			(errmsg("replica table %s has new columns from its change events", name),
			 errdetail("%s", sql.data)));
	return after > before;
}

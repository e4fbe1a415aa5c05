/*-------------------------------------------------------------------------
 *
 * stream_insert.c
 *		A DestReceiver that appends the rows of a streaming refresh to the
 *		materialized view, in batches through the table AM's multi-insert
 *		path (as COPY does), maintaining the view's indexes.
 *
 * PostgreSQL's own REFRESH builds a new heap and rebuilds the indexes; a
 * streaming refresh instead appends to the existing heap under an
 * ExclusiveLock, which lets readers (ACCESS SHARE) continue.  Rows become
 * visible when the refresh's transaction commits, together with the new
 * offsets.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/rel.h"

#include "stream.h"

#define STREAM_INSERT_BATCH 1000	/* rows per multi-insert */

typedef struct StreamDestReceiver
{
	DestReceiver pub;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	CommandId	cid;
	TupleTableSlot *slots[STREAM_INSERT_BATCH];
	int			nslots_created;
	int			nbuffered;
	uint64		processed;
} StreamDestReceiver;

static void
stream_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	StreamDestReceiver *dest = (StreamDestReceiver *) self;

	dest->estate = CreateExecutorState();
	dest->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(dest->rri, dest->rel, 1, NULL, 0);
	ExecOpenIndices(dest->rri, false);
	dest->cid = GetCurrentCommandId(true);
	dest->estate->es_output_cid = dest->cid;
	dest->bistate = GetBulkInsertState();
	dest->nbuffered = 0;
}

/* Insert the buffered rows, then their index entries. */
static void
stream_dest_flush(StreamDestReceiver *dest)
{
	if (dest->nbuffered == 0)
		return;

	table_multi_insert(dest->rel, dest->slots, dest->nbuffered, dest->cid, 0,
					   dest->bistate);
	if (dest->rri->ri_NumIndices > 0)
	{
		for (int i = 0; i < dest->nbuffered; i++)
		{
			List	   *recheck;

			recheck = kafka_insert_index_tuples(dest->rri, dest->slots[i], dest->estate);
			list_free(recheck);
			ResetPerTupleExprContext(dest->estate);
		}
	}
	for (int i = 0; i < dest->nbuffered; i++)
		ExecClearTuple(dest->slots[i]);
	dest->processed += dest->nbuffered;
	dest->nbuffered = 0;
}

static bool
stream_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	StreamDestReceiver *dest = (StreamDestReceiver *) self;

	if (dest->nbuffered == dest->nslots_created)
		dest->slots[dest->nslots_created++] = table_slot_create(dest->rel, NULL);
	ExecCopySlot(dest->slots[dest->nbuffered++], slot);
	if (dest->nbuffered == STREAM_INSERT_BATCH)
		stream_dest_flush(dest);
	return true;
}

static void
stream_dest_shutdown(DestReceiver *self)
{
	StreamDestReceiver *dest = (StreamDestReceiver *) self;

	stream_dest_flush(dest);
	FreeBulkInsertState(dest->bistate);
	table_finish_bulk_insert(dest->rel, 0);
	ExecCloseIndices(dest->rri);
	for (int i = 0; i < dest->nslots_created; i++)
		ExecDropSingleTupleTableSlot(dest->slots[i]);
	dest->nslots_created = 0;
	FreeExecutorState(dest->estate);
}

static void
stream_dest_destroy(DestReceiver *self)
{
	pfree(self);
}

/*
 * A receiver appending to 'matview', which the caller has opened and locked
 * and keeps open until the receiver is shut down.
 */
DestReceiver *
kafka_create_stream_dest(Relation matview)
{
	StreamDestReceiver *dest = palloc0(sizeof(StreamDestReceiver));

	dest->pub.receiveSlot = stream_dest_receive;
	dest->pub.rStartup = stream_dest_startup;
	dest->pub.rShutdown = stream_dest_shutdown;
	dest->pub.rDestroy = stream_dest_destroy;
	dest->pub.mydest = DestNone;
	dest->rel = matview;
	return (DestReceiver *) dest;
}

/* Rows appended so far. */
uint64
kafka_stream_dest_processed(DestReceiver *self)
{
	return ((StreamDestReceiver *) self)->processed;
}

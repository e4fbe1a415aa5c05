/*-------------------------------------------------------------------------
 *
 * worker.c
 *		AUTO REFRESH: background workers that keep streaming materialized
 *		views within about a second of their topics.
 *
 * Design:
 *
 * - With kafka_fdw in shared_preload_libraries, a launcher (a static
 *   background worker connected to no database) starts one worker per
 *   database that wants one.  A small table in shared memory has one slot
 *   per such database: its OID, whether a worker is wanted, a generation
 *   number, and the worker's pid.
 *
 * - At start the launcher gives every database a worker once, as slots
 *   allow; each worker looks for auto views in its database and, finding
 *   none (or no extension), clears its slot and exits.  kafka.set_auto_refresh(..., true)
 *   marks its database wanted at commit and wakes the launcher.  The
 *   generation number closes the race of a worker exiting just as a view is
 *   switched on: the worker only clears a slot whose generation it has seen.
 *
 * - Arrival drives a worker.  Its watch (worker_watch.c) waits at the end
 *   of its views' topics; when records arrive the worker wakes (a pipe
 *   beside its latch) and refreshes the views of those topics at once.
 *   Under load the refreshes run back to back, each taking everything that
 *   arrived during the one before, so the number of transactions follows
 *   the refresh time, not the record rate.  Idle, the worker sleeps while
 *   the brokers hold the watch's fetch (kafka_fdw.auto_refresh_wait).
 *
 * - Every kafka_fdw.auto_refresh_interval, and when woken by its latch (a
 *   view switched on or off, a reload), a worker reads its auto views,
 *   brings the watch in line, and checks views against the brokers
 *   (watermarks against the stored offsets): those it cannot watch, those
 *   whose watch just began, failing ones, and every tenth round all of them,
 *   when also a topic whose partitions changed is watched anew.
 *   This catches what the watch cannot see (see worker_watch.c).
 *
 * - A refresh is the very same as REFRESH MATERIALIZED VIEW, in its own
 *   transaction, as the view's owner, with search_path pinned to
 *   pg_catalog, pg_temp, and only when the brokers have records beyond the
 *   stored offsets.  Between refreshes the worker holds no lock, so DDL on
 *   a busy view waits for one refresh at most.  A failing view is retried
 *   with exponential back-off (1 s to 60 s) and its error is recorded in
 *   kafka.streams; the other views go on.
 *
 * - On a hot standby nothing runs: the launcher starts when recovery has
 *   finished (BgWorkerStart_RecoveryFinished), so a standby's views simply
 *   follow the primary's by replication, and a promoted standby starts its
 *   launcher by itself and resumes from the offsets that were replicated,
 *   which committed together with the rows they account for.
 *
 * - SIGTERM ends a worker at once, also in the middle of a refresh (which
 *   then rolls back, as any interrupted refresh does); SIGHUP reloads the
 *   configuration; the workers exit with the postmaster.  A worker also
 *   exits when its database is being dropped, so DROP DATABASE does not
 *   wait for it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "stream.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define WORKER_RESTART_DELAY_MS 5000
/* every this many periodic rounds, watched views are checked too */
#define WATCHED_CHECK_EVERY 10

/*
 * How often the views of a watch that just began are checked, for one
 * kafka_fdw.auto_refresh_wait (worker_watch.c: its first fetch may not name
 * every partition).
 */
#define WATCH_YOUNG_CHECK_MS 100

typedef struct KafkaWorkerSlot
{
	Oid			dboid;			/* InvalidOid: free */
	bool		wanted;			/* a worker should run for this database */
	uint64		generation;		/* bumped whenever wanted is set */
	pid_t		pid;			/* the running worker, 0 if none */
	Latch	   *latch;			/* its latch, NULL if none */
} KafkaWorkerSlot;

typedef struct KafkaWorkerShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	int			nslots;
	KafkaWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} KafkaWorkerShared;

int			kafka_auto_refresh_interval_ms = 1000;
int			kafka_auto_refresh_max_workers = 4;

static bool preloaded = false;
static KafkaWorkerShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static bool nudge_at_commit = false;

PGDLLEXPORT void kafka_launcher_main(Datum arg);
PGDLLEXPORT void kafka_worker_main(Datum arg);

PG_FUNCTION_INFO_V1(kafka_set_auto_refresh);

static Size
shared_size(void)
{
	return add_size(offsetof(KafkaWorkerShared, slots),
					mul_size(kafka_auto_refresh_max_workers, sizeof(KafkaWorkerSlot)));
}

static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
}

static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("kafka_fdw auto refresh", shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		SpinLockInit(&shared->mutex);
		shared->nslots = kafka_auto_refresh_max_workers;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: settings, and with preloading the shared memory and
 * the launcher.
 */
void
kafka_worker_init(void)
{
	BackgroundWorker bgw;

	DefineCustomIntVariable("kafka_fdw.auto_refresh_interval",
							"How often auto-refresh workers check every auto view for new records.",
							"Arriving records wake a worker at once; this check catches what its watch cannot see.",
							&kafka_auto_refresh_interval_ms,
							1000, 10, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kafka_fdw.auto_refresh_wait",
							"How long a broker may hold an auto-refresh worker's fetch while no record arrives.",
							"Kafka answers as soon as a record arrives; the test broker only after the whole wait.",
							&kafka_auto_refresh_wait_ms,
							500, 1, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	/* a PGC_POSTMASTER setting can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("kafka_fdw.auto_refresh_max_workers",
							"Maximum number of databases with an auto-refresh worker.",
							"Each takes one of max_worker_processes.",
							&kafka_auto_refresh_max_workers,
							4, 1, 64,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	preloaded = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "kafka_fdw");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "kafka_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "kafka_fdw auto-refresh launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "kafka_fdw launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Mark a database as wanting a worker and wake the launcher. */
static bool
mark_wanted(Oid dboid)
{
	KafkaWorkerSlot *free_slot = NULL;
	bool		ok = true;
	Latch	   *latch;
	Latch	   *worker_latch = NULL;

	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nslots; i++)
	{
		KafkaWorkerSlot *slot = &shared->slots[i];

		if (slot->dboid == dboid)
		{
			free_slot = slot;
			break;
		}
		/* free, or its worker has left for good */
		if ((!OidIsValid(slot->dboid) || (!slot->wanted && slot->pid == 0)) &&
			free_slot == NULL)
			free_slot = slot;
	}
	if (free_slot)
	{
		free_slot->dboid = dboid;
		free_slot->wanted = true;
		free_slot->generation++;
		worker_latch = free_slot->pid != 0 ? free_slot->latch : NULL;
	}
	else
		ok = false;
	latch = shared->launcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
	/* a running worker looks at its views again at once */
	if (worker_latch)
		SetLatch(worker_latch);
	return ok;
}

/* Set the latch of the database's running worker, if there is one. */
static void
nudge_worker(Oid dboid)
{
	Latch	   *latch = NULL;

	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nslots; i++)
		if (shared->slots[i].dboid == dboid && shared->slots[i].pid != 0)
			latch = shared->slots[i].latch;
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

static void
wake_launcher_at_commit(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_at_commit &&
		!mark_wanted(MyDatabaseId))
		ereport(WARNING,
				(errmsg("no auto-refresh worker slot is free for database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Raise kafka_fdw.auto_refresh_max_workers.")));
	if (event == XACT_EVENT_COMMIT && nudge_at_commit)
		nudge_worker(MyDatabaseId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		wake_at_commit = nudge_at_commit = false;
}

static void
register_commit_callback(void)
{
	static bool callback_registered = false;

	if (!callback_registered)
	{
		RegisterXactCallback(wake_launcher_at_commit, NULL);
		callback_registered = true;
	}
}

/* At commit, have the database's running worker look at its views again. */
static void
nudge_worker_at_commit(void)
{
	if (!preloaded || shared == NULL)
		return;
	register_commit_callback();
	nudge_at_commit = true;
}

/*
 * At commit, make sure this database has a worker (an auto view was switched
 * on, or restored from a dump).  False if there can be no worker: kafka_fdw
 * is not preloaded.
 */
bool
kafka_auto_refresh_wake_at_commit(void)
{
	if (!preloaded || shared == NULL)
		return false;
	register_commit_callback();
	wake_at_commit = true;
	return true;
}

/*
 * kafka.set_auto_refresh(view regclass, enabled boolean)
 *		Switch AUTO REFRESH of a streaming view on or off.
 */
Datum
kafka_set_auto_refresh(PG_FUNCTION_ARGS)
{
	Oid			mv_oid = PG_GETARG_OID(0);
	bool		enabled = PG_GETARG_BOOL(1);
	KafkaStreamState st;

	/* ownership first, then the lookup */
	kafka_streaming_view_arg(mv_oid, true, &st);
	if (enabled && (!preloaded || shared == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("auto refresh needs kafka_fdw in shared_preload_libraries"),
				 errhint("Add kafka_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
	kafka_prevent_on_standby("kafka.set_auto_refresh()", mv_oid);

	kafka_stream_set_auto_refresh(mv_oid, enabled);
	/* on: make sure a worker runs; off: the running one stops watching it */
	if (enabled)
		(void) kafka_auto_refresh_wake_at_commit();
	else
		nudge_worker_at_commit();
	PG_RETURN_VOID();
}

/*----------------------------------------------------------------------
 * The launcher
 *----------------------------------------------------------------------
 */

/*
 * The databases that accept connections: each gets a worker once, which
 * looks for auto views and leaves if there are none.  The launcher hands
 * them out as slots are free.
 */
static List *
all_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbs = NIL;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

/* Does the database still exist?  (It may have been dropped since.) */
static bool
database_exists(Oid dboid)
{
	bool		exists;

	StartTransactionCommand();
	exists = SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid));
	CommitTransactionCommand();
	return exists;
}

static BackgroundWorkerHandle *
start_worker(Oid dboid)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "kafka_fdw");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "kafka_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "kafka_fdw auto refresh for database %u", dboid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "kafka_fdw auto refresh");
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		ereport(LOG,
				(errmsg("kafka_fdw could not start an auto-refresh worker for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}
	return handle;
}

void
kafka_launcher_main(Datum arg)
{
	BackgroundWorkerHandle **handles;
	TimestampTz *not_before;
	List	   *to_probe;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * shared->nslots);
	not_before = MemoryContextAllocZero(TopMemoryContext,
										sizeof(TimestampTz) * shared->nslots);
	SpinLockAcquire(&shared->mutex);
	shared->launcher_latch = MyLatch;
	SpinLockRelease(&shared->mutex);

	MemoryContextSwitchTo(TopMemoryContext);
	to_probe = all_databases();

	while (!ShutdownRequestPending)
	{
		TimestampTz now = GetCurrentTimestamp();

		/* probe the databases not looked at yet, as slots allow */
		while (to_probe != NIL && mark_wanted(linitial_oid(to_probe)))
			to_probe = list_delete_first(to_probe);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		for (int i = 0; i < shared->nslots; i++)
		{
			KafkaWorkerSlot *slot = &shared->slots[i];
			Oid			dboid;
			bool		wanted;
			pid_t		pid;

			if (handles[i] &&
				GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
			{
				pfree(handles[i]);
				handles[i] = NULL;
				/*
				 * A worker leaving normally clears its pid; one that died
				 * (an error, a crash) restarts after a pause.
				 */
				SpinLockAcquire(&shared->mutex);
				if (slot->pid != 0)
					not_before[i] = TimestampTzPlusMilliseconds(now, WORKER_RESTART_DELAY_MS);
				slot->pid = 0;
				slot->latch = NULL;
				SpinLockRelease(&shared->mutex);
			}

			SpinLockAcquire(&shared->mutex);
			dboid = slot->dboid;
			wanted = slot->wanted;
			if (!wanted && handles[i] == NULL)
				slot->dboid = InvalidOid;	/* free the slot */
			SpinLockRelease(&shared->mutex);

			if (wanted && handles[i] == NULL && OidIsValid(dboid) && now >= not_before[i])
			{
				if (database_exists(dboid))
					handles[i] = start_worker(dboid);
				else
				{
					SpinLockAcquire(&shared->mutex);
					slot->wanted = false;
					slot->dboid = InvalidOid;
					SpinLockRelease(&shared->mutex);
				}
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* absorb ProcSignalBarriers, or DROP DATABASE waits for us forever */
		CHECK_FOR_INTERRUPTS();
	}

	SpinLockAcquire(&shared->mutex);
	shared->launcher_latch = NULL;
	SpinLockRelease(&shared->mutex);
	proc_exit(0);
}

/*----------------------------------------------------------------------
 * A database's worker
 *----------------------------------------------------------------------
 */

typedef struct ViewBackoff
{
	Oid			mv_oid;
	int			failures;
	TimestampTz next_attempt;
} ViewBackoff;

static List *backoffs = NIL;	/* in TopMemoryContext */

static pg_noinline ViewBackoff *
view_backoff(Oid mv_oid)
{
	ListCell   *lc;
	ViewBackoff *b;
	MemoryContext old;

	foreach(lc, backoffs)
	{
		b = lfirst(lc);
		if (b->mv_oid == mv_oid)
			return b;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	b = palloc0(sizeof(ViewBackoff));
	b->mv_oid = mv_oid;
	backoffs = lappend(backoffs, b);
	MemoryContextSwitchTo(old);
	return b;
}

static KafkaWorkerSlot *
my_slot(Oid dboid)
{
	KafkaWorkerSlot *found = NULL;

	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nslots; i++)
		if (shared->slots[i].dboid == dboid)
			found = &shared->slots[i];
	SpinLockRelease(&shared->mutex);
	return found;
}

/* Clear our slot and exit, unless a view was switched on meanwhile. */
static void
exit_if_unwanted(KafkaWorkerSlot *slot, uint64 generation)
{
	bool		leave = false;

	SpinLockAcquire(&shared->mutex);
	if (slot->generation == generation)
	{
		slot->wanted = false;
		slot->pid = 0;
		slot->latch = NULL;
		leave = true;
	}
	SpinLockRelease(&shared->mutex);
	if (leave)
		proc_exit(0);
}

/*
 * DROP DATABASE holds an AccessExclusiveLock on the database while it waits
 * for other sessions to leave: if we cannot get a share lock, it is coming.
 * The lock is released at the end of the transaction.
 */
static bool
try_lock_own_database(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	return LockAcquire(&tag, AccessShareLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

typedef struct WatchOne
{
	Oid			mv_oid;
	bool		watched;		/* out */
	bool		began;			/* out: its topic's watch began now */
} WatchOne;

static void
watch_one(void *arg)
{
	WatchOne   *w = arg;
	KafkaStreamState st;
	KafkaTableOptions opts;
	Oid			owner = kafka_relation_owner(w->mv_oid);

	/* an owner who may no longer read the table gets the refresh's error */
	if (OidIsValid(owner) && kafka_stream_lookup(w->mv_oid, &st) &&
		pg_class_aclcheck(st.ftable_oid, owner, ACL_SELECT) == ACLCHECK_OK)
	{
		kafka_get_table_options(st.ftable_oid, &opts);
		w->watched = kafka_watch_view(w->mv_oid, opts.serverid, owner, opts.topic,
									  &w->began);
	}
}

/*
 * Watch the topics of views for arriving records (worker_watch.c); returns
 * the views that are watched, and in *began those whose topic's watch began
 * now, in memory context result_cxt.  A view whose options cannot be read
 * now is left to the periodic check, whose refresh reports what is wrong.
 */
static List *
watch_views(List *views, MemoryContext result_cxt, List **began)
{
	List	   *watched = NIL;
	ListCell   *lc;

	kafka_watch_begin_sync();
	foreach(lc, views)
	{
		WatchOne	w = {lfirst_oid(lc), false, false};

		if (kafka_watch_try("cannot read a view's options", watch_one, &w) && w.watched)
		{
			MemoryContext old = MemoryContextSwitchTo(result_cxt);

			watched = lappend_oid(watched, w.mv_oid);
			if (w.began)
				*began = lappend_oid(*began, w.mv_oid);
			MemoryContextSwitchTo(old);
		}
	}
	kafka_watch_end_sync();
	return watched;
}

/*
 * The auto views of this database, or NIL when there are none, the
 * extension is not installed, or the database is being dropped (*dropping).
 * Their topics' watch is brought in line with them; *watched is set to the
 * views that are watched, *began to those whose watch began now.  The lists
 * are in the caller's memory context.
 */
static List *
auto_views(bool *dropping, List **watched, List **began, bool recheck_partitions)
{
	List	   *views = NIL;
	MemoryContext caller = CurrentMemoryContext;

	*dropping = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!try_lock_own_database())
		*dropping = true;
	else if (OidIsValid(get_extension_oid("kafka_fdw", true)))
	{
		List	   *found = kafka_stream_auto_views();
		MemoryContext old = MemoryContextSwitchTo(caller);

		views = list_copy(found);
		MemoryContextSwitchTo(old);
	}
	*watched = NIL;
	*began = NIL;
	if (!*dropping && recheck_partitions)
		kafka_watch_drop_changed_topics();
	if (!*dropping)
		*watched = watch_views(views, caller, began);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return views;
}

/*
 * Refresh one view if records arrived, in a transaction of its own, as its
 * owner.  On failure, log, record the error in kafka.streams and back off.
 */
static void
refresh_one(Oid mv_oid, MemoryContext work_cxt)
{
	ViewBackoff *backoff = view_backoff(mv_oid);
	char	   *failure = NULL;

	if (GetCurrentTimestamp() < backoff->next_attempt)
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		Oid			owner = kafka_relation_owner(mv_oid);

		if (OidIsValid(owner))
		{
			Oid			save_userid;
			int			save_sec;
			char	   *name = get_rel_name(mv_oid);

			GetUserIdAndSecContext(&save_userid, &save_sec);
			SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
			pgstat_report_activity(STATE_RUNNING,
								   psprintf("auto refresh of %s", name ? name : "?"));
			if (kafka_stream_pending(mv_oid))
				(void) kafka_refresh_stream(mv_oid, "auto refresh", false);
			SetUserIdAndSecContext(save_userid, save_sec);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(work_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		failure = edata->message;
		/* an error on a record (on_error 'fail'): say which */
		if (edata->context && strstr(edata->context, KAFKA_RECORD_CONTEXT_TAG))
		{
			const char *where = strstr(edata->context, KAFKA_RECORD_CONTEXT_TAG);

			failure = psprintf("%s (%.*s)", edata->message,
							   (int) strcspn(where, "\n"), where);
		}
		ereport(LOG,
				(errmsg("kafka_fdw auto refresh of view %u failed: %s", mv_oid, failure),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
	}
	PG_END_TRY();

	if (failure == NULL)
	{
		backoff->failures = 0;
		backoff->next_attempt = 0;
		return;
	}

	/* 1 s, 2 s, 4 s, ... 60 s */
	backoff->failures++;
	backoff->next_attempt =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									Min(BACKOFF_MAX_MS,
										BACKOFF_MIN_MS << Min(backoff->failures - 1, 6)));

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		if (OidIsValid(kafka_relation_owner(mv_oid)))
			kafka_stream_record_failure(mv_oid, failure);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(work_cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/* The views of list that are among found, in the current memory context. */
static List *
still_auto(List *list, List *found)
{
	List	   *kept = NIL;
	ListCell   *lc;

	foreach(lc, list)
		if (list_member_oid(found, lfirst_oid(lc)))
			kept = lappend_oid(kept, lfirst_oid(lc));
	return kept;
}

void
kafka_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	KafkaWorkerSlot *slot;
	MemoryContext work_cxt;
	MemoryContext views_cxt;
	WaitEventSet *wait_set;
	List	   *views = NIL;	/* the auto views, in views_cxt */
	List	   *watched = NIL;	/* those watched, in views_cxt */
	List	   *young = NIL;	/* those whose watch began lately, in views_cxt */
	TimestampTz young_until = 0;
	TimestampTz next_young_check = 0;
	uint64		round = 0;
	bool		check_all = true;
	TimestampTz next_check = 0;

	/* SIGTERM ends the worker at once, also inside a refresh */
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("kafka_fdw auto refresh");

	/*
	 * The worker is a superuser session: never resolve a name through a
	 * search_path someone else set (ALTER DATABASE ... SET search_path).  The
	 * views' queries are stored with resolved names; functions inside them
	 * that need a search_path set their own, as for PostgreSQL 17's REFRESH.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	slot = my_slot(dboid);
	if (slot == NULL)
		proc_exit(0);
	SpinLockAcquire(&shared->mutex);
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	SpinLockRelease(&shared->mutex);

	work_cxt = AllocSetContextCreate(TopMemoryContext, "kafka_fdw auto refresh",
									 ALLOCSET_DEFAULT_SIZES);
	views_cxt = AllocSetContextCreate(TopMemoryContext, "kafka_fdw auto views",
									  ALLOCSET_SMALL_SIZES);
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, kafka_watch_socket(), NULL, NULL);

	for (;;)
	{
		List	   *arrived;
		ListCell   *lc;
		WaitEvent	event;
		TimestampTz now;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			check_all = true;
		}
		MemoryContextReset(work_cxt);
		MemoryContextSwitchTo(work_cxt);

		/*
		 * Every kafka_fdw.auto_refresh_interval, and when woken (a view
		 * switched on or off): read the auto views, bring the watch in line
		 * and check each view's watermarks.
		 */
		now = GetCurrentTimestamp();
		if (check_all || now >= next_check)
		{
			uint64		generation;
			bool		dropping;
			List	   *found;
			List	   *now_watched;
			List	   *began;
			bool		safety_net = round++ % WATCHED_CHECK_EVERY == 0;

			SpinLockAcquire(&shared->mutex);
			generation = slot->generation;
			SpinLockRelease(&shared->mutex);

			found = auto_views(&dropping, &now_watched, &began, safety_net);
			if (dropping)
			{
				/* let DROP DATABASE go ahead; a new set_auto_refresh wakes us */
				SpinLockAcquire(&shared->mutex);
				slot->wanted = false;
				slot->pid = 0;
				slot->latch = NULL;
				SpinLockRelease(&shared->mutex);
				proc_exit(0);
			}
			if (found == NIL)
				exit_if_unwanted(slot, generation);

			/*
			 * A view watched since the last round needs no check: the watch
			 * sees all that arrives.  The others are checked: unwatched
			 * ones, those whose watch just began (records from before it,
			 * also when the watch started over with new server options or
			 * partitions), failing ones (retried without new records), and
			 * every view each WATCHED_CHECK_EVERY rounds (a partition
			 * added).
			 */
			foreach(lc, found)
			{
				Oid			mv_oid = lfirst_oid(lc);

				CHECK_FOR_INTERRUPTS();
				if (safety_net || !list_member_oid(watched, mv_oid) ||
					!list_member_oid(now_watched, mv_oid) ||
					list_member_oid(began, mv_oid) ||
					view_backoff(mv_oid)->failures > 0)
					refresh_one(mv_oid, work_cxt);
				MemoryContextSwitchTo(work_cxt);
			}
			/* a new watch's first fetch may miss partitions: check meanwhile */
			young = still_auto(young, found);
			if (began != NIL)
			{
				young = list_concat_unique_oid(young, began);
				young_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  kafka_auto_refresh_wait_ms);
				next_young_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   WATCH_YOUNG_CHECK_MS);
			}
			MemoryContextReset(views_cxt);
			MemoryContextSwitchTo(views_cxt);
			views = list_copy(found);
			watched = list_copy(now_watched);
			young = list_copy(young);
			MemoryContextSwitchTo(work_cxt);
			check_all = false;
			next_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 kafka_auto_refresh_interval_ms);
		}

		/*
		 * The views whose topics got records: refreshed now.  Records that
		 * arrive meanwhile make the pipe readable again, so a busy stream
		 * is refreshed back to back, each refresh taking all that arrived
		 * during the one before.
		 */
		arrived = kafka_watch_arrivals();
		foreach(lc, arrived)
		{
			Oid			mv_oid = lfirst_oid(lc);

			CHECK_FOR_INTERRUPTS();
			if (list_member_oid(views, mv_oid))
				refresh_one(mv_oid, work_cxt);
			MemoryContextSwitchTo(work_cxt);
		}

		/* views whose watch began lately, every WATCH_YOUNG_CHECK_MS */
		now = GetCurrentTimestamp();
		if (young != NIL && now >= young_until)
			young = NIL;
		if (young != NIL && now >= next_young_check)
		{
			foreach(lc, young)
			{
				CHECK_FOR_INTERRUPTS();
				refresh_one(lfirst_oid(lc), work_cxt);
				MemoryContextSwitchTo(work_cxt);
			}
			next_young_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   WATCH_YOUNG_CHECK_MS);
		}

		now = GetCurrentTimestamp();
		timeout = next_check <= now ? 0 :
			(long) ((next_check - now + 999) / 1000);
		if (young != NIL)
			timeout = Min(timeout, next_young_check <= now ? 0 :
						  (long) ((next_young_check - now + 999) / 1000));
		if (WaitEventSetWait(wait_set, timeout, &event, 1, PG_WAIT_EXTENSION) == 1 &&
			(event.events & WL_LATCH_SET))
		{
			ResetLatch(MyLatch);
			check_all = true;
		}
	}
}

/*-------------------------------------------------------------------------
 *
 * kafka_fdw.h
 *		Shared declarations of kafka_fdw, grouped by the file defining them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FDW_H
#define KAFKA_FDW_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>

#include "compat.h"
#include "access/parallel.h"
#include "foreign/foreign.h"
#include "nodes/execnodes.h"
#include "nodes/pathnodes.h"
#include "commands/explain.h"
#include "utils/jsonb.h"

/* The Kafka columns a foreign table may declare, matched by name. */
typedef enum KafkaColumn
{
	KAFKA_COL_NONE = -1,		/* dropped column */
	KAFKA_COL_PARTITION = 0,
	KAFKA_COL_OFFSET,
	KAFKA_COL_TIMESTAMP_TYPE,
	KAFKA_COL_TIMESTAMP,
	KAFKA_COL_KEY,
	KAFKA_COL_VALUE,
	KAFKA_COL_HEADERS,
	KAFKA_COL_REFRESH_TIME,
	KAFKA_NUM_COLUMNS
} KafkaColumn;

/* What start_offset asks for. */
typedef enum KafkaStartKind
{
	KAFKA_START_EARLIEST,
	KAFKA_START_LATEST,
	KAFKA_START_TIMESTAMP
} KafkaStartKind;

/* Options of one foreign table, merged with its server's. */
typedef struct KafkaTableOptions
{
	Oid			serverid;
	char	   *topic;
	KafkaStartKind start_kind;
	int64		start_timestamp_ms; /* for KAFKA_START_TIMESTAMP */
	bool		on_error_fail;	/* on_error 'fail' (default 'skip') */
	char	   *xid_header;		/* INSERT: header naming the transaction, or NULL */
} KafkaTableOptions;

/* A librdkafka property as kafka_build_conf() set it (secrets redacted). */
typedef struct KafkaConfEntry
{
	char	   *property;
	char	   *value;
} KafkaConfEntry;

/* What kafka_build_conf() found that is not a librdkafka property. */
typedef struct KafkaAuthConfig
{
	bool		iam;			/* authentication 'iam': sign MSK IAM tokens */
	char	   *iam_region;
	char	   *aws_access_key_id;
	char	   *aws_secret_access_key;
	char	   *aws_session_token;	/* NULL when none */
	List	   *secrets;		/* credential values messages must never show */
} KafkaAuthConfig;

/* One partition's offsets as the broker reports them. */
typedef struct KafkaWatermark
{
	int32		partition;
	int64		low;			/* first retained offset */
	int64		high;			/* high watermark (LSO under read_committed) */
} KafkaWatermark;

/*
 * A librdkafka consumer handle for one (server, user), pooled per backend.
 * A handle is used by one scan at a time; a second concurrent scan of the
 * same server gets a second handle.
 */
typedef struct KafkaConnection
{
	Oid			serverid;
	Oid			userid;
	rd_kafka_t *rk;
	char	   *brokers;		/* for messages, in TopMemoryContext */
	bool		in_use;
	bool		invalidated;	/* options changed: destroy when released */
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;

	/*
	 * MSK IAM credentials (malloc'd, read by librdkafka's background thread
	 * when it refreshes the token), or NULL; and the credential values that
	 * error messages must never show (malloc'd, NULL-terminated), or NULL.
	 * Both are wiped and freed after the handle is destroyed.
	 */
	struct MskIamAuth *iam;
	char	  **secrets;

	/* written by librdkafka threads through the error callback */
	pthread_mutex_t error_lock;
	char		last_error[512];
	rd_kafka_resp_err_t last_error_code;

	/*
	 * The first refusal the error callback saw (a failed TLS handshake, a
	 * TLS alert from the broker, a failed SASL authentication), kept when
	 * later errors overwrite last_error: waiting would not change it.
	 */
	char		refusal[512];
	rd_kafka_resp_err_t refusal_code;

	struct KafkaConnection *next;
} KafkaConnection;

/* in kafka_fdw.c */
extern int	kafka_connect_timeout_ms;
extern int	kafka_max_record_size;
extern int	kafka_scan_log_retention_s;

/* in option.c */
extern void kafka_get_table_options(Oid relid, KafkaTableOptions *opts);
extern char *kafka_server_brokers(ForeignServer *server);
extern rd_kafka_conf_t *kafka_build_conf(ForeignServer *server, UserMapping *mapping,
										 Oid userid, KafkaAuthConfig *auth,
										 List **entries);
#define KAFKA_MAX_BROKERS 100	/* entries of a server's option brokers at most */
extern int	kafka_check_brokers(const char *brokers);
extern char *kafka_brokers_for_message(const char *brokers);
extern char *kafka_region_from_brokers(const char *brokers);
extern bool kafka_parse_timestamp(const char *str, int64 *ms);

/* in connection.c */
extern UserMapping *kafka_find_user_mapping(Oid userid, Oid serverid);
extern char *kafka_scrub_secrets(KafkaConnection *conn, const char *text);
extern KafkaConnection *kafka_connection_acquire(Oid serverid, Oid userid);
typedef void (*KafkaConfHook) (rd_kafka_conf_t *conf, void *arg);
extern KafkaConnection *kafka_connection_create(Oid serverid, Oid userid,
												rd_kafka_type_t type,
												KafkaConfHook configure, void *arg);
extern void kafka_connection_destroy(KafkaConnection *conn);
extern void kafka_connection_release(KafkaConnection *conn);
extern int	kafka_topic_partitions(KafkaConnection *conn, const char *topic,
								   int32 **partitions);
extern void kafka_topic_watermarks(KafkaConnection *conn, const char *topic,
								   KafkaWatermark *wm, int nparts);
extern void kafka_resolve_timestamp(KafkaConnection *conn, const char *topic,
									const int32 *partitions, const int64 *low,
									const int64 *high, int nparts,
									int64 timestamp_ms, int64 *out, bool *unknown);
extern List *kafka_list_topics(KafkaConnection *conn);
extern int	kafka_fetch_watermarks(Oid serverid, Oid userid, const char *topic,
								   bool with_low, KafkaWatermark **wm);
extern void kafka_fetch_timestamp_offsets(Oid serverid, Oid userid, const char *topic,
										  const KafkaWatermark *wm, int n,
										  int64 timestamp_ms, int64 *out,
										  bool *unknown);
extern void kafka_check_connection_alive(KafkaConnection *conn,
										 TimestampTz since, const char *topic);
extern void kafka_report_error(KafkaConnection *conn, rd_kafka_resp_err_t err,
							   const char *topic) pg_attribute_noreturn();

/* Indexes of the ForeignScan's fdw_private list (built in planner.c). */
enum KafkaPlanPrivate
{
	KafkaPrivateRetrievedAttrs,	/* List of attnums to fill */
	KafkaPrivateCondColumns,	/* List of KafkaColumn, one per fdw_exprs */
	KafkaPrivateCondOps,		/* List of KafkaCondOp, one per fdw_exprs */
	KafkaPrivateStreamScan		/* Integer: 1 on a streaming refresh's own scan */
};

/* in planner.c */
extern void kafkaGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
								   Oid foreigntableid);
extern void kafkaGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
								 Oid foreigntableid);
extern ForeignScan *kafkaGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
										Oid foreigntableid, ForeignPath *best_path,
										List *tlist, List *scan_clauses,
										Plan *outer_plan);
extern KafkaColumn *kafka_map_columns(Relation rel);
extern const char *kafka_column_name(KafkaColumn col);

/* in scan.c */
extern void kafkaBeginForeignScan(ForeignScanState *node, int eflags);
extern TupleTableSlot *kafkaIterateForeignScan(ForeignScanState *node);
extern void kafkaReScanForeignScan(ForeignScanState *node);
extern void kafkaEndForeignScan(ForeignScanState *node);
extern void kafkaShutdownForeignScan(ForeignScanState *node);
extern void kafkaExplainForeignScan(ForeignScanState *node, ExplainState *es);

/* in parallel.c */
#define KAFKA_MIN_RANGE_RECORDS 10000	/* automatic parallel ranges are at least this big */
extern int	kafka_parallel_range_size;
extern bool kafkaIsForeignScanParallelSafe(PlannerInfo *root, RelOptInfo *rel,
										   RangeTblEntry *rte);
extern Size kafkaEstimateDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt);
extern void kafkaInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt,
										  void *coordinate);
extern void kafkaReInitializeDSMForeignScan(ForeignScanState *node, ParallelContext *pcxt,
											void *coordinate);
extern void kafkaInitializeWorkerForeignScan(ForeignScanState *node, shm_toc *toc,
											 void *coordinate);

/* in produce.c */
extern void kafka_produce_init(void);
extern int	kafkaIsForeignRelUpdatable(Relation rel);
extern List *kafkaPlanForeignModify(PlannerInfo *root, ModifyTable *plan,
									Index resultRelation, int subplan_index);
extern void kafkaBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
									List *fdw_private, int subplan_index, int eflags);
extern void kafkaBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo);
extern TupleTableSlot *kafkaExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
											  TupleTableSlot *slot, TupleTableSlot *planSlot);
extern TupleTableSlot **kafkaExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
													TupleTableSlot **slots,
													TupleTableSlot **planSlots,
													int *numSlots);
extern int	kafkaGetForeignModifyBatchSize(ResultRelInfo *rinfo);
extern void kafkaEndForeignModify(EState *estate, ResultRelInfo *rinfo);
extern void kafkaEndForeignInsert(EState *estate, ResultRelInfo *rinfo);

/* in import.c */
extern List *kafkaImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid);

#endif							/* KAFKA_FDW_H */

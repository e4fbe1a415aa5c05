/*-------------------------------------------------------------------------
 *
 * kafka_fdw.c
 *		Module entry points: the FDW handler, GUCs and _PG_init.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "foreign/fdwapi.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "kafka_fdw.h"
#include "stream.h"

PG_MODULE_MAGIC;

int			kafka_connect_timeout_ms = 10000;
int			kafka_max_record_size = 16 * 1024 * 1024;
int			kafka_scan_log_retention_s = 7 * 24 * 3600;

PG_FUNCTION_INFO_V1(kafka_fdw_handler);

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("kafka_fdw.connect_timeout",
							"Time to wait for unreachable Kafka brokers before failing.",
							"Applies to metadata and offset requests and to a scan that receives nothing from the brokers.",
							&kafka_connect_timeout_ms,
							10000, 100, 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kafka_fdw.max_record_size",
							"Records larger than this (key, value and headers) are skipped or fail the scan.",
							NULL,
							&kafka_max_record_size,
							16 * 1024 * 1024, 1, MaxAllocSize / 2,
							PGC_USERSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kafka_fdw.scan_log_retention",
							"How long refresh logs (kafka.stream_scan_states, kafka.stream_scan_errors) are kept.",
							NULL,
							&kafka_scan_log_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kafka_fdw.parallel_range_size",
							"Records per range when a parallel scan cuts large partitions into ranges.",
							"0 (the default) sizes ranges automatically: an eighth of each participant's share of the records, at least 10000.",
							&kafka_parallel_range_size,
							0, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	kafka_produce_init();
	kafka_install_utility_hook();
	kafka_worker_init();

	/* after every kafka_fdw.* setting is defined, the worker's included */
	MarkGUCPrefixReserved("kafka_fdw");
}

Datum
kafka_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = kafkaGetForeignRelSize;
	routine->GetForeignPaths = kafkaGetForeignPaths;
	routine->GetForeignPlan = kafkaGetForeignPlan;
	routine->BeginForeignScan = kafkaBeginForeignScan;
	routine->IterateForeignScan = kafkaIterateForeignScan;
	routine->ReScanForeignScan = kafkaReScanForeignScan;
	routine->EndForeignScan = kafkaEndForeignScan;
	routine->ExplainForeignScan = kafkaExplainForeignScan;

	routine->IsForeignScanParallelSafe = kafkaIsForeignScanParallelSafe;
	routine->EstimateDSMForeignScan = kafkaEstimateDSMForeignScan;
	routine->InitializeDSMForeignScan = kafkaInitializeDSMForeignScan;
	routine->ReInitializeDSMForeignScan = kafkaReInitializeDSMForeignScan;
	routine->InitializeWorkerForeignScan = kafkaInitializeWorkerForeignScan;
	routine->ShutdownForeignScan = kafkaShutdownForeignScan;
	routine->ImportForeignSchema = kafkaImportForeignSchema;

	/* INSERT and COPY FROM (produce.c) */
	routine->IsForeignRelUpdatable = kafkaIsForeignRelUpdatable;
	routine->PlanForeignModify = kafkaPlanForeignModify;
	routine->BeginForeignModify = kafkaBeginForeignModify;
	routine->ExecForeignInsert = kafkaExecForeignInsert;
	routine->ExecForeignBatchInsert = kafkaExecForeignBatchInsert;
	routine->GetForeignModifyBatchSize = kafkaGetForeignModifyBatchSize;
	routine->EndForeignModify = kafkaEndForeignModify;
	routine->BeginForeignInsert = kafkaBeginForeignInsert;
	routine->EndForeignInsert = kafkaEndForeignInsert;

	PG_RETURN_POINTER(routine);
}

/*-------------------------------------------------------------------------
 *
 * produce.c
 *		INSERT (and COPY FROM) into kafka_fdw foreign tables: the FDW modify
 *		callbacks, the backend's transactional producer and the transaction
 *		callbacks that tie a Kafka transaction to the PostgreSQL one.
 *
 * Design:
 *
 * - One transactional librdkafka producer per backend, made with
 *   connection.c's configuration builder (authentication, user mapping,
 *   connect_timeout) and kept across transactions.  Its transactional.id is
 *   kafka_fdw-<system identifier>-<database oid>-<server oid>-<user oid>-
 *   <backend id>: stable per backend slot, so the next backend in the slot
 *   fences (and thereby aborts) the open Kafka transaction of one that
 *   crashed; distinct per cluster and database.  The user is part of it
 *   because Kafka authorizes transactional ids per principal.
 *
 * - A PostgreSQL transaction produces to one (server, user) at most: two
 *   producers could not commit atomically.  The Kafka transaction is begun
 *   by the first INSERT and committed in XACT_EVENT_PRE_COMMIT, so a Kafka
 *   failure is an ERROR that aborts the PostgreSQL transaction; it is
 *   aborted in XACT_EVENT_ABORT.  PREPARE TRANSACTION is refused.
 *
 * - Records of the top transaction level are produced at once (librdkafka
 *   batches them), and every statement waits at its end for the delivery
 *   reports of its records: an INSERT returns only when the brokers have
 *   acknowledged all of them (inside the still open Kafka transaction).
 *   RETURNING waits for each record's report, to return its partition and
 *   offset.  Nothing is buffered in PostgreSQL; librdkafka's queue is
 *   bounded (KAFKA_QUEUE_KBYTES), a full queue is waited on.
 *
 * - Kafka has no subtransactions.  Records inserted inside a subtransaction
 *   (SAVEPOINT, a PL/pgSQL block with EXCEPTION, psql's ON_ERROR_ROLLBACK)
 *   are therefore not produced but appended to a temporary file (BufFile:
 *   one buffer of memory, temp_file_limit applies).  A rolled-back
 *   subtransaction truncates the file to where its first record starts;
 *   when the outermost subtransaction commits, its records are produced
 *   before anything else the top level produces (at the next INSERT or at
 *   COMMIT).  Records logged while a subtransaction S is open all belong to
 *   S or to subtransactions inside it, so "the first entry whose
 *   subtransaction id is >= S" is where S's records begin; the file keeps
 *   one (subtransaction, position) mark per change of subtransaction, and a
 *   committed subtransaction's marks are merged into its parent's, so the
 *   marks stay few.  RETURNING of a deferred record gives no partition and
 *   offset (they do not exist yet).
 *
 * - librdkafka runs its callbacks (delivery reports) only inside
 *   rd_kafka_poll() in this backend; they count and copy, never touch
 *   PostgreSQL.  Waiting is done in slices with CHECK_FOR_INTERRUPTS; a wait
 *   in which no delivery report arrives for kafka_fdw.connect_timeout fails.
 *   After such a failure the producer is "broken": the abort does not wait
 *   for brokers that did not answer, it destroys the producer, whose
 *   successor's init fences the open transaction (or Kafka aborts it after
 *   transaction.timeout.ms).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "storage/buffile.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "functions.h"
#include "kafka_fdw.h"
#include "produce.h"

/* Microseconds between the Unix and PostgreSQL epochs. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

#define KAFKA_PRODUCE_POLL_MS 100	/* longest wait between interrupt checks */
#define KAFKA_POLL_EVERY 64			/* serve delivery reports every N records */
#define KAFKA_QUEUE_KBYTES 65536	/* librdkafka's queue at most (64 MB) */
#define KAFKA_TXN_TIMEOUT_MS 60000	/* transaction.timeout.ms */

/* What a RETURNING record waits for. */
typedef struct DeliveryResult
{
	bool		done;
	rd_kafka_resp_err_t err;
	int32		partition;
	int64		offset;
	int64		timestamp_ms;
	rd_kafka_timestamp_type_t tstype;
} DeliveryResult;


/* Header of a deferred record in the log file; the bytes follow. */
typedef struct LogEntry
{
	SubTransactionId subid;
	int32		topic_idx;		/* into ProduceXact.topics */
	int32		partition;
	int32		nheaders;
	int64		timestamp_ms;
	int64		key_len;		/* -1: null */
	int64		value_len;		/* -1: null */
} LogEntry;

/* Where the records of a subtransaction begin in the log. */
typedef struct LogMark
{
	SubTransactionId subid;
	int64		count;			/* entries before it */
	int			fileno;
	off_t		offset;
} LogMark;

/* The backend's producer (kept across transactions). */
static KafkaConnection *producer = NULL;
static bool producer_txn_open = false;	/* a Kafka transaction is begun */
static bool producer_broken = false;	/* destroy it, do not wait for it */
static bool producer_invalidated = false;	/* options changed */

/* Delivery report accounting, written by dr_msg_cb. */
static int64 dr_inflight = 0;		/* produced, not yet reported */
static int64 dr_reports = 0;		/* reports received (progress) */
static int64 dr_failed = 0;			/* reports with an error */
static rd_kafka_resp_err_t dr_first_err;
static int32 dr_first_partition;
static char dr_first_errstr[256];

/* State of the current PostgreSQL transaction. */
typedef struct ProduceXact
{
	bool		active;			/* this transaction produced (or deferred) */
	Oid			serverid;
	Oid			userid;
	char	   *xid_value;		/* "<system identifier>:<xid>", once made */
	List	   *topics;			/* names, for LogEntry.topic_idx */
	BufFile    *log;			/* deferred records, or NULL */
	int64		log_count;		/* entries in it */
	LogMark    *marks;
	int			nmarks;
	int			maxmarks;
	StringInfoData readbuf;		/* for draining */
} ProduceXact;

static ProduceXact xact;
static bool callbacks_registered = false;

/* The one RETURNING record in flight (static: a report may come after an error). */
static DeliveryResult returning_result;

/* Headers librdkafka did not take yet (a full queue), freed at the next try. */
static rd_kafka_headers_t *orphan_headers = NULL;

/* kafka_fdw.insert_batch_size */
static int	kafka_insert_batch_size = 1;


static void produce_xact_callback(XactEvent event, void *arg);
static void produce_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);
static void drain_log(void);

/* ------------------------------------------------------------------------
 * The producer
 * ------------------------------------------------------------------------
 */

/* librdkafka delivery report callback, served by rd_kafka_poll(): plain C. */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	DeliveryResult *r = (DeliveryResult *) msg->_private;

	dr_inflight--;
	dr_reports++;
	if (r)
	{
		r->done = true;
		r->err = msg->err;
		r->partition = msg->partition;
		r->offset = msg->offset;
		r->timestamp_ms = rd_kafka_message_timestamp(msg, &r->tstype);
	}
	if (msg->err && dr_failed++ == 0)
	{
		dr_first_err = msg->err;
		dr_first_partition = msg->partition;
		strlcpy(dr_first_errstr, rd_kafka_message_errstr(msg), sizeof(dr_first_errstr));
	}
}

static void
reset_dr_counters(void)
{
	dr_inflight = 0;
	dr_failed = 0;
	dr_first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	dr_first_errstr[0] = '\0';
}

static void
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[256];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not set librdkafka property \"%s\" of the producer", name),
				 errdetail("%s", errstr)));
}

/* The producer's properties on top of connection.c's configuration. */
static void
producer_configure(rd_kafka_conf_t *conf, void *arg)
{
	char		buf[32];

	conf_set(conf, "transactional.id", (const char *) arg);
	conf_set(conf, "enable.idempotence", "true");
	conf_set(conf, "acks", "all");
	/* Java's default partitioner for keyed records: murmur2 of the key */
	conf_set(conf, "partitioner", "murmur2_random");
	conf_set(conf, "linger.ms", "5");
	conf_set(conf, "batch.num.messages", "10000");
	conf_set(conf, "queue.buffering.max.messages", "100000");
	snprintf(buf, sizeof(buf), "%d", KAFKA_QUEUE_KBYTES);
	conf_set(conf, "queue.buffering.max.kbytes", buf);
	snprintf(buf, sizeof(buf), "%d", KAFKA_TXN_TIMEOUT_MS);
	conf_set(conf, "transaction.timeout.ms", buf);
	snprintf(buf, sizeof(buf), "%d", KAFKA_TXN_TIMEOUT_MS - 5000);
	conf_set(conf, "message.timeout.ms", buf);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
}

/* Destroy the producer without waiting for brokers. */
static void
producer_destroy(void)
{
	if (producer == NULL)
		return;
	if (producer->rk)
		rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
					   RD_KAFKA_PURGE_F_NON_BLOCKING);
	kafka_connection_destroy(producer);
	producer = NULL;
	producer_txn_open = false;
	producer_broken = false;
	producer_invalidated = false;
	reset_dr_counters();
}

static void
producer_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (producer &&
		(hashvalue == 0 ||
		 (cacheid == FOREIGNSERVEROID && producer->server_hashvalue == hashvalue) ||
		 (cacheid == USERMAPPINGOID &&
		  (producer->mapping_hashvalue == hashvalue || producer->mapping_hashvalue == 0))))
		producer_invalidated = true;
}

static void
producer_shutdown(int code, Datum arg)
{
	if (producer && producer->rk)
	{
		rd_kafka_purge(producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
					   RD_KAFKA_PURGE_F_NON_BLOCKING);
		rd_kafka_destroy_flags(producer->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		producer->rk = NULL;
	}
}

static const char *
server_name(Oid serverid)
{
	return GetForeignServer(serverid)->servername;
}

/*
 * Report a failed transactional call (init, begin, commit) and destroy the
 * error object.  Timeouts and fatal errors make the producer broken.
 */
static void
report_txn_error(const char *what, rd_kafka_error_t *error)
{
	rd_kafka_resp_err_t code = rd_kafka_error_code(error);
	char	   *detail = kafka_scrub_secrets(producer, rd_kafka_error_string(error));
	bool		fatal = rd_kafka_error_is_fatal(error);
	const char *server = server_name(producer->serverid);

	rd_kafka_error_destroy(error);
	if (fatal || code == RD_KAFKA_RESP_ERR__TIMED_OUT ||
		code == RD_KAFKA_RESP_ERR__TRANSPORT ||
		code == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE ||
		code == RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
		producer_broken = true;

	if (code == RD_KAFKA_RESP_ERR__TIMED_OUT || code == RD_KAFKA_RESP_ERR__TRANSPORT ||
		code == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE ||
		code == RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not %s the Kafka transaction: brokers \"%s\" of server \"%s\" did not answer within %d ms",
						what, producer->brokers, server, kafka_connect_timeout_ms),
				 errdetail("%s", detail),
				 strcmp(what, "commit") == 0 ?
				 errhint("The PostgreSQL transaction is rolled back.  Kafka aborts the open Kafka transaction (at the latest after %d s); if the brokers received the commit request before they stopped answering, its records are visible nevertheless: see \"Producing\" in the README.",
						 KAFKA_TXN_TIMEOUT_MS / 1000) :
				 errhint("Check that the brokers are running and reachable from the database server, or raise kafka_fdw.connect_timeout.")));
	if (code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
		code == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
		code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("Kafka denied the producer of server \"%s\" its transaction", server),
				 errdetail("%s", detail),
				 errhint("The Kafka principal needs WRITE on the topic and DESCRIBE and WRITE on the transactional ids \"kafka_fdw-*\".")));
	if (code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
		code == RD_KAFKA_RESP_ERR__FENCED ||
		code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the Kafka producer of server \"%s\" was fenced by another producer with its transactional id",
						server),
				 errdetail("%s", detail),
				 errhint("Another PostgreSQL cluster with the same system identifier (a promoted copy of this one?) produces to the same Kafka cluster.")));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("could not %s the Kafka transaction on server \"%s\"", what, server),
			 errdetail("%s (%s).", detail, rd_kafka_err2name(code))));
}

/* Run a resumable transactional call in interruptible slices until connect_timeout. */
static void
txn_call(const char *what, rd_kafka_error_t *(*fn) (rd_kafka_t *, int))
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   kafka_connect_timeout_ms);

	for (;;)
	{
		rd_kafka_error_t *error;
		long		ms;

		CHECK_FOR_INTERRUPTS();
		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		error = fn(producer->rk, (int) Max(1, Min(ms, 250)));
		if (error == NULL)
			return;
		if (rd_kafka_error_is_retriable(error) && GetCurrentTimestamp() < deadline)
		{
			rd_kafka_error_destroy(error);
			continue;
		}
		report_txn_error(what, error);
	}
}

/*
 * Make sure the backend's producer serves (server, user) and a Kafka
 * transaction is open.
 */
static void
producer_begin(Oid serverid, Oid userid)
{
	rd_kafka_error_t *error;

	if (!callbacks_registered)
	{
		RegisterXactCallback(produce_xact_callback, NULL);
		RegisterSubXactCallback(produce_subxact_callback, NULL);
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, producer_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, producer_inval_callback, (Datum) 0);
		on_shmem_exit(producer_shutdown, (Datum) 0);
		callbacks_registered = true;
	}

	if (xact.active && (xact.serverid != serverid || xact.userid != userid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a transaction can produce to one Kafka server as one user only"),
				 errdetail("This transaction already produced to server \"%s\"%s.",
						   server_name(xact.serverid),
						   xact.userid != userid ? " as another user" : ""),
				 errhint("Insert into the foreign tables of another server in a transaction of its own: Kafka transactions of two producers cannot commit atomically.")));

	if (producer && !producer_txn_open &&
		(producer_broken || producer_invalidated ||
		 producer->serverid != serverid || producer->userid != userid))
		producer_destroy();

	if (producer == NULL)
	{
		char		txnid[128];

		snprintf(txnid, sizeof(txnid), "kafka_fdw-" UINT64_FORMAT "-%u-%u-%u-%d",
				 GetSystemIdentifier(), MyDatabaseId, serverid, userid, MyBackendId);
		producer = kafka_connection_create(serverid, userid, RD_KAFKA_PRODUCER,
										   producer_configure, txnid);
		reset_dr_counters();
		PG_TRY();
		{
			txn_call("initialize", rd_kafka_init_transactions);
		}
		PG_CATCH();
		{
			producer_destroy();
			PG_RE_THROW();
		}
		PG_END_TRY();
	}

	if (!producer_txn_open)
	{
		reset_dr_counters();
		error = rd_kafka_begin_transaction(producer->rk);
		if (error)
			report_txn_error("begin", error);
		producer_txn_open = true;
	}
	if (!xact.active)
	{
		memset(&xact, 0, sizeof(xact));
		xact.active = true;
		xact.serverid = serverid;
		xact.userid = userid;
	}
}

/* ------------------------------------------------------------------------
 * Producing records
 * ------------------------------------------------------------------------
 */

static void
report_delivery_failure(const char *topic)
{
	rd_kafka_resp_err_t err = dr_first_err;
	int64		n = dr_failed;

	switch (err)
	{
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
					 errmsg("Kafka topic \"%s\" does not exist", topic),
					 errdetail("Brokers: %s.", producer->brokers),
					 errhint("Check the foreign table's option \"topic\".")));
			break;
		case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partition %d of Kafka topic \"%s\" does not exist",
							dr_first_partition, topic),
					 errhint("Give a kafka_partition the topic has, or none to have it chosen from the key.")));
			break;
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a record is too large for Kafka topic \"%s\"", topic),
					 errdetail("%s", dr_first_errstr),
					 errhint("The brokers' message.max.bytes (or the topic's max.message.bytes) limits the size of a record.")));
			break;
		case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("Kafka refused the kafka_timestamp of a record for topic \"%s\"", topic),
					 errdetail("%s", dr_first_errstr),
					 errhint("Brokers refuse create times too far from their clock: see the topic's message.timestamp.before.max.ms and message.timestamp.after.max.ms (1 hour into the future by default).")));
			break;
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("Kafka denied writing to topic \"%s\"", topic),
					 errdetail("%s", dr_first_errstr)));
			break;
		default:
			producer_broken = producer_broken ||
				err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT;
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("Kafka did not accept " INT64_FORMAT " record%s for topic \"%s\"",
							n, n == 1 ? "" : "s", topic),
					 errdetail("%s (%s).", kafka_scrub_secrets(producer, dr_first_errstr),
							   rd_kafka_err2name(err))));
	}
}

/*
 * Serve delivery reports until none is outstanding.  Fails when no report
 * arrives for connect_timeout, or when a record was refused.
 */
static void
wait_deliveries(const char *topic)
{
	TimestampTz last = GetCurrentTimestamp();

	while (dr_inflight > 0)
	{
		int64		before = dr_reports;

		CHECK_FOR_INTERRUPTS();
		rd_kafka_poll(producer->rk, KAFKA_PRODUCE_POLL_MS);
		if (dr_reports != before)
			last = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(last, GetCurrentTimestamp(), kafka_connect_timeout_ms))
		{
			producer_broken = true;
			kafka_report_error(producer, RD_KAFKA_RESP_ERR__TIMED_OUT, topic);
		}
	}
	if (dr_failed > 0)
		report_delivery_failure(topic);
}

/*
 * Wait for room in librdkafka's full queue: serve delivery reports; fail
 * when none arrives for connect_timeout (*since: when the wait began).
 */
static void
wait_for_room(const char *topic, TimestampTz *since)
{
	int64		before = dr_reports;

	if (*since == 0)
		*since = GetCurrentTimestamp();
	CHECK_FOR_INTERRUPTS();
	rd_kafka_poll(producer->rk, KAFKA_PRODUCE_POLL_MS);
	if (dr_reports != before)
		*since = GetCurrentTimestamp();
	else if (TimestampDifferenceExceeds(*since, GetCurrentTimestamp(), kafka_connect_timeout_ms))
	{
		producer_broken = true;
		kafka_report_error(producer, RD_KAFKA_RESP_ERR__TIMED_OUT, topic);
	}
	if (dr_failed > 0)
		report_delivery_failure(topic);
}

/* Produce one record; waits while librdkafka's queue is full. */
static void
send_record(rd_kafka_topic_t *rkt, const char *topic, const OutRecord *r, DeliveryResult *result)
{
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_resp_err_t err;
	TimestampTz since = 0;

	if (orphan_headers)
	{
		rd_kafka_headers_destroy(orphan_headers);
		orphan_headers = NULL;
	}
	if (r->nheaders > 0)
	{
		hdrs = rd_kafka_headers_new(r->nheaders);
		for (int i = 0; i < r->nheaders; i++)
			rd_kafka_header_add(hdrs, r->hnames[i], (ssize_t) r->hname_lens[i],
								r->hvalues[i], r->hvalues[i] ? (ssize_t) r->hvalue_lens[i] : 0);
	}
	for (;;)
	{
		err = rd_kafka_producev(producer->rk,
								RD_KAFKA_V_RKT(rkt),
								RD_KAFKA_V_PARTITION(r->partition),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(r->key, r->key_len),
								RD_KAFKA_V_VALUE(unconstify(char *, r->value), r->value_len),
								RD_KAFKA_V_TIMESTAMP(r->timestamp_ms),
								RD_KAFKA_V_HEADERS(hdrs),
								RD_KAFKA_V_OPAQUE(result),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		orphan_headers = hdrs;	/* freed by the next call if this one throws */
		wait_for_room(topic, &since);
		orphan_headers = NULL;
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (hdrs)
			rd_kafka_headers_destroy(hdrs);
		if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a record is too large for Kafka topic \"%s\"", topic),
					 errdetail("%s", rd_kafka_err2str(err)),
					 errhint("librdkafka's message.max.bytes (1000000 by default) limits the size of a record; set the server option \"rdkafka.message.max.bytes\".")));
		if (err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partition %d of Kafka topic \"%s\" does not exist", r->partition, topic),
					 errhint("Give a kafka_partition the topic has, or none to have it chosen from the key.")));
		if (err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR__STATE)
			producer_broken = true;
		kafka_report_error(producer, err, topic);
	}
	dr_inflight++;
}

/* The xid header's value: "<system identifier>:<full transaction id>". */
const char *
kafka_produce_xid_value(void)
{
	if (xact.xid_value == NULL)
	{
		FullTransactionId fxid = GetTopFullTransactionId();

		xact.xid_value = MemoryContextStrdup(TopTransactionContext,
											 psprintf(UINT64_FORMAT ":" UINT64_FORMAT,
													  GetSystemIdentifier(),
													  U64FromFullTransactionId(fxid)));
	}
	return xact.xid_value;
}

/* ------------------------------------------------------------------------
 * The log of deferred records (inserted inside subtransactions)
 * ------------------------------------------------------------------------
 */

static void
log_write(const void *p, size_t n)
{
	BufFileWrite(xact.log, unconstify(void *, p), n);
}

static void
log_record(KafkaModifyState *st)
{
	const OutRecord *r = &st->rec;
	SubTransactionId subid = GetCurrentSubTransactionId();
	LogEntry	e;

	if (xact.log == NULL)
	{
		ResourceOwner save = CurrentResourceOwner;
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		/* the file lives as long as the top transaction, not this subtransaction */
		CurrentResourceOwner = TopTransactionResourceOwner;
		xact.log = BufFileCreateTemp(false);
		CurrentResourceOwner = save;
		MemoryContextSwitchTo(old);
	}
	if (xact.nmarks == 0 || xact.marks[xact.nmarks - 1].subid != subid)
	{
		LogMark    *m;

		if (xact.nmarks >= xact.maxmarks)
		{
			xact.maxmarks = Max(16, xact.maxmarks * 2);
			xact.marks = xact.marks ?
				repalloc(xact.marks, sizeof(LogMark) * xact.maxmarks) :
				MemoryContextAlloc(TopTransactionContext, sizeof(LogMark) * xact.maxmarks);
		}
		m = &xact.marks[xact.nmarks++];
		m->subid = subid;
		m->count = xact.log_count;
		BufFileTell(xact.log, &m->fileno, &m->offset);
	}

	e.subid = subid;
	e.topic_idx = st->topic_idx;
	e.partition = r->partition;
	e.nheaders = r->nheaders;
	e.timestamp_ms = r->timestamp_ms;
	e.key_len = r->key ? (int64) r->key_len : -1;
	e.value_len = r->value ? (int64) r->value_len : -1;
	log_write(&e, sizeof(e));
	if (r->key)
		log_write(r->key, r->key_len);
	if (r->value)
		log_write(r->value, r->value_len);
	for (int i = 0; i < r->nheaders; i++)
	{
		int64		lens[2];

		lens[0] = r->hname_lens[i];
		lens[1] = r->hvalues[i] ? (int64) r->hvalue_lens[i] : -1;
		log_write(lens, sizeof(lens));
		log_write(r->hnames[i], r->hname_lens[i]);
		if (r->hvalues[i])
			log_write(r->hvalues[i], r->hvalue_lens[i]);
	}
	xact.log_count++;
}

static void
log_read(void *p, size_t n)
{
	if (n > 0 && BufFileRead(xact.log, p, n) != n)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read the temporary file of deferred Kafka records")));
}

/* What drain_log() walks with; its fields outlive an error in drain_records(). */
typedef struct DrainState
{
	OutRecord	r;
	int			cap;
	int			cur_topic;
	rd_kafka_topic_t *rkt;
	const char *topic;
	MemoryContext cxt;
} DrainState;

static void
drain_records(DrainState *ds)
{
	OutRecord  *r = &ds->r;
	StringInfoData *buf = &xact.readbuf;

	if (buf->data == NULL)
	{
		MemoryContext o = MemoryContextSwitchTo(TopTransactionContext);

		initStringInfo(buf);
		MemoryContextSwitchTo(o);
	}
	for (int64 n = 0; n < xact.log_count; n++)
	{
		LogEntry	e;
		size_t		need;
		char	   *p;

		log_read(&e, sizeof(e));
		if (e.topic_idx != ds->cur_topic)
		{
			if (ds->rkt)
				rd_kafka_topic_destroy(ds->rkt);
			ds->rkt = NULL;
			ds->topic = list_nth(xact.topics, e.topic_idx);
			ds->rkt = rd_kafka_topic_new(producer->rk, ds->topic, NULL);
			if (ds->rkt == NULL)
				kafka_report_error(producer, rd_kafka_last_error(), ds->topic);
			ds->cur_topic = e.topic_idx;
		}
		if (e.nheaders > ds->cap)
		{
			ds->cap = Max(e.nheaders, 8);
			r->hnames = palloc(sizeof(char *) * ds->cap);
			r->hname_lens = palloc(sizeof(size_t) * ds->cap);
			r->hvalues = palloc(sizeof(char *) * ds->cap);
			r->hvalue_lens = palloc(sizeof(size_t) * ds->cap);
		}
		/* key and value into the buffer, then each header */
		need = Max(e.key_len, 0) + Max(e.value_len, 0);
		resetStringInfo(buf);
		enlargeStringInfo(buf, (int) need + 1);
		log_read(buf->data, need);
		p = buf->data;
		r->key = e.key_len >= 0 ? p : NULL;
		r->key_len = Max(e.key_len, 0);
		p += r->key_len;
		r->value = e.value_len >= 0 ? p : NULL;
		r->value_len = Max(e.value_len, 0);
		r->partition = e.partition;
		r->timestamp_ms = e.timestamp_ms;
		r->nheaders = e.nheaders;
		for (int i = 0; i < e.nheaders; i++)
		{
			int64		lens[2];
			char	   *h;

			log_read(lens, sizeof(lens));
			h = palloc(lens[0] + Max(lens[1], 0) + 1);
			log_read(h, lens[0] + Max(lens[1], 0));
			r->hnames[i] = h;
			r->hname_lens[i] = lens[0];
			r->hvalues[i] = lens[1] >= 0 ? h + lens[0] : NULL;
			r->hvalue_lens[i] = Max(lens[1], 0);
		}
		send_record(ds->rkt, ds->topic, r, NULL);
		if (n % KAFKA_POLL_EVERY == 0)
		{
			rd_kafka_poll(producer->rk, 0);
			MemoryContextReset(ds->cxt);
			ds->cap = 0;
		}
	}
	wait_deliveries(ds->topic);
}

/*
 * Produce the deferred records (the top level is current again): in order,
 * before anything the top level produces next.  Then empty the log.
 */
static void
drain_log(void)
{
	DrainState	ds;
	MemoryContext old;

	if (xact.log_count == 0)
		return;
	Assert(GetCurrentTransactionNestLevel() == 1);
	memset(&ds, 0, sizeof(ds));
	ds.cur_topic = -1;
	ds.cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw drain",
								   ALLOCSET_DEFAULT_SIZES);
	if (BufFileSeek(xact.log, 0, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek in the temporary file of deferred Kafka records")));
	old = MemoryContextSwitchTo(ds.cxt);
	PG_TRY();
	{
		drain_records(&ds);
	}
	PG_FINALLY();
	{
		if (ds.rkt)
			rd_kafka_topic_destroy(ds.rkt);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(ds.cxt);
	}
	PG_END_TRY();
	xact.log_count = 0;
	xact.nmarks = 0;
	if (BufFileSeek(xact.log, 0, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek in the temporary file of deferred Kafka records")));
}

/* ------------------------------------------------------------------------
 * Transaction callbacks
 * ------------------------------------------------------------------------
 */

static void
xact_reset(void)
{
	if (orphan_headers)
	{
		rd_kafka_headers_destroy(orphan_headers);
		orphan_headers = NULL;
	}
	if (xact.log)
		BufFileClose(xact.log);
	memset(&xact, 0, sizeof(xact));
}

static void
produce_xact_callback(XactEvent event, void *arg)
{
	if (!xact.active && !producer_txn_open)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (producer == NULL || !producer_txn_open)
			{
				/* never commit without records we were given */
				if (xact.log_count > 0)
					elog(ERROR, "the Kafka producer is gone with " INT64_FORMAT " records to produce",
						 xact.log_count);
				break;
			}
			drain_log();
			wait_deliveries(xact.topics ? (const char *) linitial(xact.topics) : "?");
			txn_call("commit", rd_kafka_commit_transaction);
			producer_txn_open = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that inserted into a Kafka foreign table"),
					 errhint("Kafka transactions cannot take part in two-phase commit: commit or roll back instead.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			xact_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (producer && producer_txn_open && !producer_broken)
			{
				rd_kafka_error_t *error;

				error = rd_kafka_abort_transaction(producer->rk, kafka_connect_timeout_ms);
				if (error)
				{
					ereport(WARNING,
							(errcode(ERRCODE_FDW_ERROR),
							 errmsg("could not abort the Kafka transaction on server \"%s\"",
									producer->brokers),
							 errdetail("%s", rd_kafka_error_string(error)),
							 errhint("Kafka aborts it after %d s, or when this backend's successor produces to the server.",
									 KAFKA_TXN_TIMEOUT_MS / 1000)));
					rd_kafka_error_destroy(error);
					producer_broken = true;
				}
				else
				{
					/* serve the reports of the purged records */
					while (rd_kafka_poll(producer->rk, 0) > 0)
						;
					reset_dr_counters();
				}
			}
			producer_txn_open = false;
			if (producer && (producer_broken || producer_invalidated))
				producer_destroy();
			xact_reset();
			break;
		default:
			break;
	}
}

static void
produce_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (!xact.active || xact.nmarks == 0)
		return;
	/* marks of mySubid and the subtransactions inside it are at the end */
	for (i = xact.nmarks; i > 0 && xact.marks[i - 1].subid >= mySubid; i--)
		;
	if (i == xact.nmarks)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* forget its records: the next ones are written over them */
		xact.log_count = xact.marks[i].count;
		if (BufFileSeek(xact.log, xact.marks[i].fileno, xact.marks[i].offset, SEEK_SET) != 0)
			elog(WARNING, "could not seek in the temporary file of deferred Kafka records");
		xact.nmarks = i;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* its records are the parent's now */
		if (i > 0 && xact.marks[i - 1].subid == parentSubid)
			xact.nmarks = i;
		else
		{
			xact.marks[i].subid = parentSubid;
			xact.nmarks = i + 1;
		}
	}
}

/* ------------------------------------------------------------------------
 * FDW callbacks
 * ------------------------------------------------------------------------
 */

int
kafkaIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT);
}

/* Refuse at plan time the columns INSERT cannot set. */
List *
kafkaPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					   int subplan_index)
{
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	Relation	rel;
	KafkaColumn *columns;
	int			attno = -1;

	/* UPDATE and DELETE: the executor says "cannot update foreign table" */
	if (plan->operation != CMD_INSERT)
		return NIL;
	rel = table_open(rte->relid, NoLock);
	columns = kafka_map_columns(rel);
	if (plan->onConflictAction != ONCONFLICT_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("INSERT with ON CONFLICT is not supported on Kafka foreign tables")));
	while ((attno = bms_next_member(rte->insertedCols, attno)) >= 0)
	{
		int			a = attno + FirstLowInvalidHeapAttributeNumber;
		KafkaColumn col;

		if (a <= 0)
			continue;
		col = columns[a - 1];
		if (col == KAFKA_COL_OFFSET || col == KAFKA_COL_TIMESTAMP_TYPE ||
			col == KAFKA_COL_REFRESH_TIME)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of foreign table \"%s\" cannot be inserted into",
							kafka_column_name(col), RelationGetRelationName(rel)),
					 errhint("INSERT sets kafka_key, kafka_value, kafka_headers, kafka_partition and kafka_timestamp; Kafka assigns the offset (RETURNING kafka_partition, kafka_offset returns it).")));
	}
	table_close(rel, NoLock);
	return list_make1(makeInteger(plan->returningLists != NIL ? 1 : 0));
}

static Oid
modify_user(EState *estate, ResultRelInfo *rinfo)
{
	if (rinfo->ri_RangeTableIndex > 0)
	{
		RangeTblEntry *rte = exec_rt_fetch(rinfo->ri_RangeTableIndex, estate);

		if (OidIsValid(rte->checkAsUser))
			return rte->checkAsUser;
	}
	return GetUserId();
}

static void
modify_cleanup(void *arg)
{
	KafkaModifyState *st = (KafkaModifyState *) arg;

	if (st->rkt)
		rd_kafka_topic_destroy(st->rkt);
	st->rkt = NULL;
}

static KafkaModifyState *
modify_begin(EState *estate, ResultRelInfo *rinfo, bool returning, bool explain_only)
{
	Relation	rel = rinfo->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	KafkaModifyState *st = palloc0(sizeof(KafkaModifyState));
	KafkaTableOptions opts;
	MemoryContext old;
	ListCell   *lc;
	int			i;

	st->rel = rel;
	st->returning = returning;
	st->explain_only = explain_only;
	st->columns = kafka_map_columns(rel);
	st->typids = palloc(sizeof(Oid) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
		st->typids[i] = TupleDescAttr(desc, i)->atttypid;
	kafka_get_table_options(RelationGetRelid(rel), &opts);
	st->topic = opts.topic;
	st->xid_header = opts.xid_header;
	st->rec_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw record",
										ALLOCSET_DEFAULT_SIZES);
	if (explain_only)
		return st;

	producer_begin(opts.serverid, modify_user(estate, rinfo));

	/* the topic's index for deferred records */
	i = 0;
	foreach(lc, xact.topics)
	{
		if (strcmp(lfirst(lc), st->topic) == 0)
			break;
		i++;
	}
	if (lc == NULL)
	{
		old = MemoryContextSwitchTo(TopTransactionContext);
		xact.topics = lappend(xact.topics, pstrdup(st->topic));
		MemoryContextSwitchTo(old);
	}
	st->topic_idx = i;

	/*
	 * A topic that does not exist is an error now, not when librdkafka gives
	 * up on its records (topic.metadata.propagation.max.ms later): one
	 * metadata round trip per statement.
	 */
	{
		int32	   *parts;

		(void) kafka_topic_partitions(producer, st->topic, &parts);
		pfree(parts);
	}
	st->rkt = rd_kafka_topic_new(producer->rk, st->topic, NULL);
	if (st->rkt == NULL)
		kafka_report_error(producer, rd_kafka_last_error(), st->topic);
	/* the topic handle goes with the statement, also when it fails */
	st->cleanup.func = modify_cleanup;
	st->cleanup.arg = st;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &st->cleanup);
	return st;
}

static void
modify_end(KafkaModifyState *st)
{
	if (st == NULL || st->explain_only)
		return;
	if (st->produced > 0)
		wait_deliveries(st->topic);
	modify_cleanup(st);
	MemoryContextReset(st->rec_cxt);
}

void
kafkaBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						List *fdw_private, int subplan_index, int eflags)
{
	rinfo->ri_FdwState = modify_begin(mtstate->ps.state, rinfo,
									  intVal(linitial(fdw_private)) != 0,
									  (eflags & EXEC_FLAG_EXPLAIN_ONLY) != 0);
}

void
kafkaBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	rinfo->ri_FdwState = modify_begin(mtstate->ps.state, rinfo,
									  rinfo->ri_projectReturning != NULL, false);
}

/* Put the delivery report's partition, offset and timestamp into the slot. */
static void
fill_returning(KafkaModifyState *st, TupleTableSlot *slot, const DeliveryResult *res)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);

	memcpy(values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(nulls, slot->tts_isnull, sizeof(bool) * natts);
	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, i);

		if (!nulls[i])
			values[i] = datumCopy(values[i], att->attbyval, att->attlen);
		switch (st->columns[i])
		{
			case KAFKA_COL_PARTITION:
				nulls[i] = res == NULL;
				if (res)
					values[i] = st->typids[i] == INT4OID ? Int32GetDatum(res->partition) :
						Int64GetDatum((int64) res->partition);
				break;
			case KAFKA_COL_OFFSET:
				nulls[i] = res == NULL;
				if (res)
					values[i] = Int64GetDatum(res->offset);
				break;
			case KAFKA_COL_TIMESTAMP:
				nulls[i] = res == NULL || res->tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
				if (!nulls[i])
					values[i] = Int64GetDatum(res->timestamp_ms * 1000 - UNIX_TO_PG_EPOCH_USECS);
				break;
			case KAFKA_COL_TIMESTAMP_TYPE:
				nulls[i] = res == NULL;
				if (res)
				{
					char		c = res->tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 'C' :
						res->tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 'L' : 'U';

					values[i] = st->typids[i] == CHAROID ? CharGetDatum(c) :
						PointerGetDatum(cstring_to_text_with_len(&c, 1));
				}
				break;
			default:
				break;
		}
	}
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * natts);
	ExecStoreVirtualTuple(slot);
}

/* Produce (or defer) one row. */
static void
insert_row(EState *estate, KafkaModifyState *st, TupleTableSlot *slot)
{
	bool		top = GetCurrentTransactionNestLevel() == 1;
	DeliveryResult *res = &returning_result;
	MemoryContext old;

	if (top && xact.log_count > 0)
		drain_log();

	MemoryContextReset(st->rec_cxt);
	old = MemoryContextSwitchTo(st->rec_cxt);
	kafka_row_to_record(st, slot);
	if (!top)
	{
		log_record(st);
		MemoryContextSwitchTo(old);
		if (st->returning)
		{
			old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
			fill_returning(st, slot, NULL);
			MemoryContextSwitchTo(old);
		}
		return;
	}
	memset(res, 0, sizeof(*res));
	send_record(st->rkt, st->topic, &st->rec, st->returning ? res : NULL);
	MemoryContextSwitchTo(old);
	st->produced++;
	if (st->returning)
	{
		wait_deliveries(st->topic);
		if (!res->done || res->err)
			elog(ERROR, "no delivery report for a record of topic \"%s\"", st->topic);
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		fill_returning(st, slot, res);
		MemoryContextSwitchTo(old);
	}
	else if (st->produced % KAFKA_POLL_EVERY == 0)
	{
		rd_kafka_poll(producer->rk, 0);
		if (dr_failed > 0)
			report_delivery_failure(st->topic);
	}
}

TupleTableSlot *
kafkaExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
					   TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	insert_row(estate, (KafkaModifyState *) rinfo->ri_FdwState, slot);
	return slot;
}

TupleTableSlot **
kafkaExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
							TupleTableSlot **slots, TupleTableSlot **planSlots,
							int *numSlots)
{
	for (int i = 0; i < *numSlots; i++)
		insert_row(estate, (KafkaModifyState *) rinfo->ri_FdwState, slots[i]);
	return slots;
}

int
kafkaGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	if (rinfo->ri_projectReturning != NULL ||
		(rinfo->ri_TrigDesc &&
		 (rinfo->ri_TrigDesc->trig_insert_before_row ||
		  rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	return kafka_insert_batch_size;
}

void
kafkaEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	modify_end((KafkaModifyState *) rinfo->ri_FdwState);
}

void
kafkaEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	modify_end((KafkaModifyState *) rinfo->ri_FdwState);
}

void
kafka_produce_init(void)
{
	DefineCustomIntVariable("kafka_fdw.insert_batch_size",
							"Rows an INSERT into a Kafka foreign table hands over at once.",
							"1 (the default) hands over each row as it comes, which librdkafka batches anyway; more makes the executor collect (and copy) rows first.",
							&kafka_insert_batch_size,
							1, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
}

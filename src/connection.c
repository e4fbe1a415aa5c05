/*-------------------------------------------------------------------------
 *
 * connection.c
 *		librdkafka handles per (server, user), broker metadata and offsets,
 *		and the mapping of librdkafka errors to PostgreSQL errors.
 *
 * Design:
 *
 * - Handles are pooled per backend in a short list.  A scan acquires a handle
 *   and releases it when it ends (or when its memory context goes away on
 *   error); a second scan running at the same time gets its own handle, so
 *   two scans never share a partition's fetch state.
 *
 * - Syscache callbacks on pg_foreign_server and pg_user_mapping mark handles
 *   invalid; an idle invalid handle is destroyed at the next acquire, a busy
 *   one when it is released.
 *
 * - librdkafka's blocking calls (metadata, offset lookups) are made in
 *   slices of KAFKA_SLICE_MS growing to KAFKA_SLICE_MAX_MS, with
 *   CHECK_FOR_INTERRUPTS between them,
 *   so cancel, statement_timeout and pg_terminate_backend take effect within
 *   a second even while the brokers are unreachable.  The whole call gives up
 *   after kafka_fdw.connect_timeout with the last error librdkafka reported.
 *
 * - librdkafka's threads must never run PostgreSQL's signal handlers, so all
 *   signals are blocked while a handle (and thus its threads) is created.
 *   The error callback is served by rd_kafka_poll() in the backend; it and
 *   the log callback (which may run on librdkafka's threads) only copy text
 *   into the handle under a mutex and never touch PostgreSQL.
 *
 * - A refusal is final: a failed TLS handshake (untrusted CA, host name not
 *   in the certificate), a TLS alert from the broker (no client certificate
 *   where one is required), a failed SASL authentication.  librdkafka keeps
 *   reconnecting after one, and its requests just time out, so the blocking
 *   calls (metadata, offsets: the first requests of every statement) look at
 *   what the error callback recorded (check_refused) after each failed slice
 *   and raise the refusal at once instead of waiting for
 *   kafka_fdw.connect_timeout.  A request that succeeds within its slice is
 *   never aborted, but a refusal by any listed broker can end a statement that
 *   another broker would have served a slice later: brokers of one cluster
 *   that differ in certificates or credentials are a configuration error.  A
 *   scan, which starts after those requests succeeded, waits out
 *   connect_timeout as before and then names the refusal.
 *
 * - Authentication 'iam' (MSK IAM over SASL/OAUTHBEARER): the credentials are
 *   copied into malloc'd memory (msk_iam.c) when the handle is created.  A
 *   first token is signed right away in the backend, so that a signing
 *   problem is an error of this statement; later ones are signed by the
 *   token refresh callback, which librdkafka runs on its background thread
 *   (its SASL queue is forwarded there) at 80% of a token's lifetime, so a
 *   scan that only serves its own fetch queue never outlives its token.
 *   That callback must not and does not touch PostgreSQL.
 *
 * - Secrets: the handle keeps a copy of the credential values it was built
 *   with, and every text from librdkafka that goes into an error message is
 *   scrubbed of them (kafka_scrub_secrets).  librdkafka does not echo
 *   credentials today; this keeps it so if it ever did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "catalog/pg_user_mapping.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "kafka_fdw.h"
#include "msk_iam.h"

/* User-Agent of the MSK IAM token (the AWS signers send their name and version). */
#define KAFKA_FDW_USER_AGENT "kafka_fdw/1.0"

/* Longest time spent in one blocking librdkafka call between interrupt checks. */
#define KAFKA_SLICE_MS 250
#define KAFKA_SLICE_MAX_MS 750		/* slices grow to this for slow links */

static KafkaConnection *connections = NULL;
static bool callbacks_registered = false;

static void kafka_inval_callback(Datum arg, int cacheid, uint32 hashvalue);
static void kafka_connections_shutdown(int code, Datum arg);

/*
 * The error as a refusal that waiting cannot change (see the header):
 * RD_KAFKA_RESP_ERR__SSL or __AUTHENTICATION, or NO_ERROR if it is none.
 * Under TLS 1.3 the broker refuses a client certificate after the handshake,
 * with an alert that librdkafka reports as a transport error; an "unexpected
 * eof" or a reset (a broker going away) is no alert, and not a refusal.
 */
static rd_kafka_resp_err_t
refusal_of(int err, const char *reason)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR__SSL:
		case RD_KAFKA_RESP_ERR__AUTHENTICATION:
			return err;
		case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
			return RD_KAFKA_RESP_ERR__AUTHENTICATION;
		case RD_KAFKA_RESP_ERR__TRANSPORT:
			if (strstr(reason, "SSL routines") != NULL && strstr(reason, " alert ") != NULL)
				return RD_KAFKA_RESP_ERR__SSL;
			return RD_KAFKA_RESP_ERR_NO_ERROR;
		default:
			return RD_KAFKA_RESP_ERR_NO_ERROR;
	}
}

/* librdkafka error callback: remember the text for the next error report. */
static void
kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaConnection *conn = (KafkaConnection *) opaque;

	if (conn == NULL)
		return;
	pthread_mutex_lock(&conn->error_lock);
	strlcpy(conn->last_error, reason, sizeof(conn->last_error));
	conn->last_error_code = err;
	if (conn->refusal_code == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_resp_err_t refusal = refusal_of(err, reason);

		if (refusal != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			strlcpy(conn->refusal, reason, sizeof(conn->refusal));
			conn->refusal_code = refusal;
		}
	}
	pthread_mutex_unlock(&conn->error_lock);
}

/* librdkafka log callback: keep its chatter out of the server log. */
static void
kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

/*
 * librdkafka's SASL/OAUTHBEARER token refresh callback, on its background
 * thread: only msk_iam.c's plain C, never PostgreSQL.
 */
static void
kafka_oauthbearer_refresh_cb(rd_kafka_t *rk, const char *oauthbearer_config, void *opaque)
{
	KafkaConnection *conn = (KafkaConnection *) opaque;

	msk_iam_refresh(rk, conn ? conn->iam : NULL);
}

/*
 * Look up the user mapping for (user, server), falling back to PUBLIC.
 * Unlike GetUserMapping() a missing mapping is not an error: a Kafka cluster
 * without authentication needs none.
 */
UserMapping *
kafka_find_user_mapping(Oid userid, Oid serverid)
{
	HeapTuple	tp;
	UserMapping *um;
	Datum		datum;
	bool		isnull;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		return NULL;

	um = palloc0(sizeof(UserMapping));
	um->umid = ((Form_pg_user_mapping) GETSTRUCT(tp))->oid;
	um->userid = userid;
	um->serverid = serverid;
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
							Anum_pg_user_mapping_umoptions, &isnull);
	um->options = isnull ? NIL : untransformRelOptions(datum);
	ReleaseSysCache(tp);
	return um;
}

/* Overwrite a palloc'd string before freeing it. */
static void
wipe_pfree(char *s)
{
	if (s)
	{
		explicit_bzero(s, strlen(s));
		pfree(s);
	}
}

static void
wipe_auth_config(KafkaAuthConfig *auth)
{
	ListCell   *lc;

	wipe_pfree(auth->aws_access_key_id);
	wipe_pfree(auth->aws_secret_access_key);
	wipe_pfree(auth->aws_session_token);
	foreach(lc, auth->secrets)
		wipe_pfree(lfirst(lc));
	list_free(auth->secrets);
	memset(auth, 0, sizeof(*auth));
}

/* Free what a handle holds outside librdkafka, after rd_kafka_destroy(). */
static void
free_handle_secrets(KafkaConnection *conn)
{
	msk_iam_free(conn->iam);
	conn->iam = NULL;
	if (conn->secrets)
	{
		for (char **p = conn->secrets; *p; p++)
		{
			explicit_bzero(*p, strlen(*p));
			free(*p);
		}
		free(conn->secrets);
		conn->secrets = NULL;
	}
}

/* Copy the secret values into malloc'd memory; false if out of memory. */
static bool
copy_secrets(KafkaConnection *conn, List *secrets)
{
	int			n = 0;
	ListCell   *lc;

	conn->secrets = calloc(list_length(secrets) + 1, sizeof(char *));
	if (conn->secrets == NULL)
		return false;
	foreach(lc, secrets)
	{
		if ((conn->secrets[n] = strdup(lfirst(lc))) == NULL)
			return false;
		n++;
	}
	return true;
}

/*
 * text with every credential value of the handle replaced by [redacted];
 * palloc'd.
 */
char *
kafka_scrub_secrets(KafkaConnection *conn, const char *text)
{
	char	   *result = pstrdup(text);

	if (conn == NULL || conn->secrets == NULL)
		return result;
	for (char **p = conn->secrets; *p; p++)
	{
		size_t		len = strlen(*p);
		StringInfoData buf;
		const char *cur;
		const char *hit;

		if (len == 0 || strstr(result, *p) == NULL)
			continue;
		initStringInfo(&buf);
		cur = result;
		while ((hit = strstr(cur, *p)) != NULL)
		{
			appendBinaryStringInfo(&buf, cur, hit - cur);
			appendStringInfoString(&buf, "[redacted]");
			cur = hit + len;
		}
		appendStringInfoString(&buf, cur);
		pfree(result);
		result = buf.data;
	}
	return result;
}

/*
 * Create a handle of the given type for (server, user), outside the pool.
 * configure, if not NULL, adds properties to the configuration before the
 * handle is made (the producer's, see produce.c).  Destroy it with
 * kafka_connection_destroy().
 */
KafkaConnection *
kafka_connection_create(Oid serverid, Oid userid, rd_kafka_type_t type,
						KafkaConfHook configure, void *arg)
{
	ForeignServer *server = GetForeignServer(serverid);
	UserMapping *mapping = kafka_find_user_mapping(userid, serverid);
	KafkaConnection *conn;
	rd_kafka_conf_t *conf;
	KafkaAuthConfig auth;
	rd_kafka_error_t *bgerr = NULL;
	sigset_t	all,
				saved;
	char		errstr[512];
	bool		ok;

	/* build the configuration first: it may throw, and owns nothing yet */
	conf = kafka_build_conf(server, mapping, userid, &auth, NULL);
	if (configure)
	{
		PG_TRY();
		{
			configure(conf, arg);
		}
		PG_CATCH();
		{
			rd_kafka_conf_destroy(conf);
			wipe_auth_config(&auth);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}

	conn = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaConnection));
	conn->serverid = serverid;
	conn->userid = userid;
	conn->brokers = MemoryContextStrdup(TopMemoryContext,
										kafka_brokers_for_message(kafka_server_brokers(server)));
	conn->server_hashvalue = GetSysCacheHashValue1(FOREIGNSERVEROID,
												   ObjectIdGetDatum(serverid));
	conn->mapping_hashvalue = mapping ?
		GetSysCacheHashValue1(USERMAPPINGOID, ObjectIdGetDatum(mapping->umid)) : 0;
	pthread_mutex_init(&conn->error_lock, NULL);

	ok = copy_secrets(conn, auth.secrets);
	if (ok && auth.iam)
	{
		conn->iam = msk_iam_new(auth.iam_region, auth.aws_access_key_id,
								auth.aws_secret_access_key, auth.aws_session_token,
								KAFKA_FDW_USER_AGENT);
		ok = conn->iam != NULL;
	}
	wipe_auth_config(&auth);
	if (!ok)
	{
		rd_kafka_conf_destroy(conf);
		free_handle_secrets(conn);
		pthread_mutex_destroy(&conn->error_lock);
		pfree(conn->brokers);
		pfree(conn);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}

	rd_kafka_conf_set_opaque(conf, conn);
	rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
	rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
	if (conn->iam)
	{
		rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, kafka_oauthbearer_refresh_cb);
		rd_kafka_conf_enable_sasl_queue(conf, 1);
	}

	/*
	 * librdkafka's threads inherit this mask: keep our signals off them.  The
	 * background thread that serves token refreshes is started here too.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	conn->rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (conn->rk && conn->iam)
		bgerr = rd_kafka_sasl_background_callbacks_enable(conn->rk);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);

	if (conn->rk == NULL)
		rd_kafka_conf_destroy(conf);
	else if (bgerr)
	{
		strlcpy(errstr, rd_kafka_error_string(bgerr), sizeof(errstr));
		rd_kafka_error_destroy(bgerr);
	}
	else if (conn->iam == NULL ||
			 msk_iam_set_token(conn->rk, conn->iam, errstr, sizeof(errstr)) == 0)
		return conn;

	/* failed: rd_kafka_new(), the background thread or the first token */
	{
		char	   *detail = kafka_scrub_secrets(conn, errstr);

		if (conn->rk)
			rd_kafka_destroy_flags(conn->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		free_handle_secrets(conn);
		pthread_mutex_destroy(&conn->error_lock);
		pfree(conn->brokers);
		pfree(conn);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not create Kafka client for server \"%s\"",
						server->servername),
				 errdetail("%s", detail),
				 strncmp(errstr, "ssl.key.location", 16) == 0 ?
				 errhint("Check that the server's option \"ssl_key_file\" names a PEM private key readable by the database server and, if the key is encrypted, that the user mapping's option \"ssl_key_password\" is its passphrase.") : 0));
	}
	pg_unreachable();
}

/*
 * Get an idle handle for (server, user), creating one if needed.  The caller
 * must hand it back with kafka_connection_release(), also on error paths.
 */
KafkaConnection *
kafka_connection_acquire(Oid serverid, Oid userid)
{
	KafkaConnection **prev;
	KafkaConnection *conn;

	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, kafka_inval_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, kafka_inval_callback, (Datum) 0);
		/*
		 * on_shmem_exit, not before_shmem_exit: it must run after the open
		 * transaction is aborted, whose cleanup (scan_cleanup) stops the
		 * fetchers of scans still open; rd_kafka_destroy() with those alive
		 * never returns, and destroying first leaves scan_cleanup freed memory.
		 */
		on_shmem_exit(kafka_connections_shutdown, (Datum) 0);
		callbacks_registered = true;
	}

	/* Pick an idle, valid handle; destroy idle invalidated ones on the way. */
	prev = &connections;
	while ((conn = *prev) != NULL)
	{
		if (!conn->in_use && conn->invalidated)
		{
			*prev = conn->next;
			kafka_connection_destroy(conn);
			continue;
		}
		if (!conn->in_use && conn->serverid == serverid && conn->userid == userid)
		{
			conn->in_use = true;
			pthread_mutex_lock(&conn->error_lock);
			conn->last_error[0] = '\0';
			conn->last_error_code = RD_KAFKA_RESP_ERR_NO_ERROR;
			conn->refusal[0] = '\0';
			conn->refusal_code = RD_KAFKA_RESP_ERR_NO_ERROR;
			pthread_mutex_unlock(&conn->error_lock);
			return conn;
		}
		prev = &conn->next;
	}

	conn = kafka_connection_create(serverid, userid, RD_KAFKA_CONSUMER, NULL, NULL);
	conn->in_use = true;
	conn->next = connections;
	connections = conn;
	return conn;
}

/*
 * Hand a handle back to the pool.  Safe to call from a memory context reset
 * callback during abort: it neither allocates nor throws.
 */
void
kafka_connection_release(KafkaConnection *conn)
{
	KafkaConnection **prev;

	conn->in_use = false;
	if (!conn->invalidated)
		return;
	for (prev = &connections; *prev; prev = &(*prev)->next)
	{
		if (*prev == conn)
		{
			*prev = conn->next;
			kafka_connection_destroy(conn);
			return;
		}
	}
}

/* Destroy a handle that is not (or no longer) in the pool. */
void
kafka_connection_destroy(KafkaConnection *conn)
{
	if (conn->rk)
		rd_kafka_destroy_flags(conn->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	free_handle_secrets(conn);
	pthread_mutex_destroy(&conn->error_lock);
	pfree(conn->brokers);
	pfree(conn);
}

static void
kafka_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	KafkaConnection *conn;

	for (conn = connections; conn; conn = conn->next)
	{
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && conn->server_hashvalue == hashvalue) ||
			(cacheid == USERMAPPINGOID &&
			 (conn->mapping_hashvalue == hashvalue || conn->mapping_hashvalue == 0)))
			conn->invalidated = true;
	}
}

static void
kafka_connections_shutdown(int code, Datum arg)
{
	while (connections)
	{
		KafkaConnection *conn = connections;

		connections = conn->next;
		if (conn->rk)
			rd_kafka_destroy_flags(conn->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		conn->rk = NULL;
		free_handle_secrets(conn);
	}
}

/*----------
 * Report a librdkafka error as a PostgreSQL error with a fitting SQLSTATE.
 * The broker list is named (abbreviated when long: see
 * kafka_brokers_for_message); librdkafka's own words go into the detail.
 *----------
 */
void
kafka_report_error(KafkaConnection *conn, rd_kafka_resp_err_t err,
				   const char *topic)
{
	char		last[512];
	rd_kafka_resp_err_t cause;

	/* error callbacks are served from the handle's main queue */
	rd_kafka_poll(conn->rk, 0);
	pthread_mutex_lock(&conn->error_lock);
	strlcpy(last, conn->last_error, sizeof(last));
	cause = conn->last_error_code;
	if (conn->refusal_code != RD_KAFKA_RESP_ERR_NO_ERROR &&
		(err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		 err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == conn->refusal_code))
	{
		/* the refusal, not "1/1 brokers are down" that librdkafka says after it */
		strlcpy(last, conn->refusal, sizeof(last));
		cause = conn->refusal_code;
	}
	pthread_mutex_unlock(&conn->error_lock);
	if (last[0])
		strlcpy(last, kafka_scrub_secrets(conn, last), sizeof(last));

	/*
	 * A refused TLS handshake or SASL authentication makes librdkafka's
	 * requests time out just like an unreachable broker (it keeps trying);
	 * the error callback knows the real cause.
	 */
	if (err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
	{
		if (cause == RD_KAFKA_RESP_ERR__AUTHENTICATION || cause == RD_KAFKA_RESP_ERR__SSL)
			err = cause;
		/* a TLS error seen only at the deadline, e.g. a handshake cut short */
		else if (strstr(last, "SSL routines") != NULL)
			err = RD_KAFKA_RESP_ERR__SSL;
	}

	switch (err)
	{
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__RESOLVE:
		case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
			/*
			 * Destroy the handle when it is released: its threads (one per
			 * listed broker) would keep reconnecting to brokers no statement
			 * is waiting for, and the next statement starts afresh anyway.
			 */
			conn->invalidated = true;
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not reach Kafka brokers \"%s\" within %d ms",
							conn->brokers, kafka_connect_timeout_ms),
					 errdetail("%s", last[0] ? last : rd_kafka_err2str(err)),
					 errhint("Check that the brokers are running and reachable from the database server, or raise kafka_fdw.connect_timeout.")));
			break;
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
					 errmsg("Kafka topic \"%s\" does not exist", topic ? topic : "?"),
					 errdetail("Brokers: %s.", conn->brokers),
					 errhint("Check the foreign table's option \"topic\".")));
			break;
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("Kafka denied access to topic \"%s\"", topic ? topic : "?"),
					 errdetail("%s", rd_kafka_err2str(err))));
			break;
		case RD_KAFKA_RESP_ERR__AUTHENTICATION:
		case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
			conn->invalidated = true;
			/* librdkafka before 2.6.1 sends a SCRAM nonce Kafka 4 refuses */
			if (strstr(last, "SCRAM") != NULL && rd_kafka_version() < 0x020601ff)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
						 errmsg("could not authenticate to Kafka brokers \"%s\"", conn->brokers),
						 errdetail("%s", last),
						 errhint("If the username and password in the user mapping are right: librdkafka %s cannot authenticate with SCRAM to Apache Kafka 4.0 or later; librdkafka 2.6.1 and later can.",
								 rd_kafka_version_str())));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("could not authenticate to Kafka brokers \"%s\"", conn->brokers),
					 errdetail("%s", last[0] ? last : rd_kafka_err2str(err)),
					 errhint("Check the options \"username\" and \"password\" of the user mapping and the server's option \"authentication\".")));
			break;
		case RD_KAFKA_RESP_ERR__SSL:
			conn->invalidated = true;
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not establish a TLS connection to Kafka brokers \"%s\"", conn->brokers),
					 errdetail("%s", last[0] ? last : rd_kafka_err2str(err)),
					 errhint("Check that the server's option \"ssl_ca_file\" names the CA that signed the brokers' certificates, that the host names in \"brokers\" are those the certificates name, and that a listener requiring client certificates is used with authentication 'mtls'.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("Kafka request for topic \"%s\" failed", topic ? topic : "?"),
					 errdetail("%s (%s).", rd_kafka_err2str(err), rd_kafka_err2name(err))));
	}
	pg_unreachable();
}

/* Errors after which a blocking call is simply tried again until the deadline. */
static bool
is_retriable(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__RESOLVE:
		case RD_KAFKA_RESP_ERR__WAIT_COORD:
		case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
		case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
		case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
		case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
			return true;
		default:
			return false;
	}
}

/*
 * How long the next attempt of a blocking request may take: KAFKA_SLICE_MS,
 * doubling with each attempt up to KAFKA_SLICE_MAX_MS (a request abandoned
 * after its slice is sent anew, so a broker slower than the slice must get a
 * longer one), and never past the deadline.  The cap bounds how long an
 * interrupt waits.
 */
static int
next_slice(TimestampTz deadline, int attempt)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	long		slice = KAFKA_SLICE_MS << Min(attempt, 4);

	return (int) Max(1, Min(ms, Min(slice, KAFKA_SLICE_MAX_MS)));
}

static TimestampTz
deadline_from_now(void)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kafka_connect_timeout_ms);
}

/*
 * After a failed attempt: if the brokers refused the handshake or the
 * credentials (see the header), or the handle hit a fatal error, raise that
 * now rather than retrying until the deadline.
 */
static void
check_refused(KafkaConnection *conn, const char *topic)
{
	rd_kafka_resp_err_t refusal;
	char		fatal[256];

	rd_kafka_poll(conn->rk, 0);
	pthread_mutex_lock(&conn->error_lock);
	refusal = conn->refusal_code;
	pthread_mutex_unlock(&conn->error_lock);
	if (refusal != RD_KAFKA_RESP_ERR_NO_ERROR)
		kafka_report_error(conn, refusal, topic);
	refusal = rd_kafka_fatal_error(conn->rk, fatal, sizeof(fatal));
	if (refusal != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		conn->invalidated = true;
		kafka_report_error(conn, refusal, topic);
	}
}

/*
 * Fetch metadata for one topic (or all topics when topic is NULL), retrying
 * in interruptible slices until kafka_fdw.connect_timeout.  The caller frees
 * the result with rd_kafka_metadata_destroy().
 */
static const struct rd_kafka_metadata *
fetch_metadata(KafkaConnection *conn, const char *topic)
{
	TimestampTz deadline = deadline_from_now();
	volatile int attempt = 0;
	rd_kafka_topic_t *rkt = NULL;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;

	if (topic)
	{
		rkt = rd_kafka_topic_new(conn->rk, topic, NULL);
		if (rkt == NULL)
			kafka_report_error(conn, rd_kafka_last_error(), topic);
	}

	PG_TRY();
	{
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			rd_kafka_poll(conn->rk, 0);
			err = rd_kafka_metadata(conn->rk, topic == NULL, rkt, &md,
									next_slice(deadline, attempt++));
			if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				/* A topic the cluster is still electing leaders for: retry. */
				if (topic && md->topic_cnt == 1 &&
					is_retriable(md->topics[0].err) &&
					GetCurrentTimestamp() < deadline)
				{
					rd_kafka_metadata_destroy(md);
					md = NULL;
					pg_usleep(10 * 1000L);
					continue;
				}
				break;
			}
			if (!is_retriable(err) || GetCurrentTimestamp() >= deadline)
				kafka_report_error(conn, err, topic);
			check_refused(conn, topic);
		}
	}
	PG_CATCH();
	{
		/* also on cancel or statement_timeout in CHECK_FOR_INTERRUPTS() */
		if (rkt)
			rd_kafka_topic_destroy(rkt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	return md;
}

static int
cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * The partition ids of a topic, sorted, palloc'd in the current context.
 * Errors if the topic does not exist.
 */
int
kafka_topic_partitions(KafkaConnection *conn, const char *topic, int32 **partitions)
{
	const struct rd_kafka_metadata *md = fetch_metadata(conn, topic);
	const rd_kafka_metadata_topic_t *mt;
	int			n;
	int32	   *parts;
	rd_kafka_resp_err_t err;

	if (md->topic_cnt != 1 || md->topics[0].err)
	{
		err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
		rd_kafka_metadata_destroy(md);
		kafka_report_error(conn, err, topic);
	}
	mt = &md->topics[0];
	n = mt->partition_cnt;
	parts = palloc(sizeof(int32) * Max(n, 1));
	for (int i = 0; i < n; i++)
		parts[i] = mt->partitions[i].id;
	rd_kafka_metadata_destroy(md);
	qsort(parts, n, sizeof(int32), cmp_int32);
	*partitions = parts;
	return n;
}

static int
cmp_list_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/*
 * Names of all topics of the cluster, as a List of palloc'd strings, sorted.
 */
List *
kafka_list_topics(KafkaConnection *conn)
{
	const struct rd_kafka_metadata *md = fetch_metadata(conn, NULL);
	List	   *names = NIL;

	for (int i = 0; i < md->topic_cnt; i++)
	{
		if (md->topics[i].err)
			continue;
		names = lappend(names, pstrdup(md->topics[i].topic));
	}
	rd_kafka_metadata_destroy(md);
	list_sort(names, cmp_list_strings);
	return names;
}

/*
 * One ListOffsets round trip per leader for all the partitions: the query
 * value of each element is a timestamp, or -2 (earliest) / -1 (latest).
 * On return, offsets[i] holds the answer, -1 meaning "none".
 */
static void
list_offsets(KafkaConnection *conn, const char *topic, const int32 *partitions,
			 int nparts, int64 query, int64 *offsets)
{
	TimestampTz deadline = deadline_from_now();
	int			attempt = 0;
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	if (nparts == 0)
		return;

	for (;;)
	{
		bool		retry = false;

		CHECK_FOR_INTERRUPTS();
		rd_kafka_poll(conn->rk, 0);
		list = rd_kafka_topic_partition_list_new(nparts);
		for (int i = 0; i < nparts; i++)
			rd_kafka_topic_partition_list_add(list, topic, partitions[i])->offset = query;

		err = rd_kafka_offsets_for_times(conn->rk, list, next_slice(deadline, attempt++));
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			for (int i = 0; i < list->cnt && !err; i++)
			{
				if (list->elems[i].err && is_retriable(list->elems[i].err))
					retry = true;
				else if (list->elems[i].err)
					err = list->elems[i].err;
			}
		}
		else if (is_retriable(err))
			retry = true;

		if (!retry && err == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
		rd_kafka_topic_partition_list_destroy(list);
		if (!retry || GetCurrentTimestamp() >= deadline)
			kafka_report_error(conn, err ? err : RD_KAFKA_RESP_ERR__TIMED_OUT, topic);
		check_refused(conn, topic);
		pg_usleep(10 * 1000L);
	}

	/* The answers come back in request order, but match them to be sure. */
	for (int i = 0; i < nparts; i++)
	{
		rd_kafka_topic_partition_t *tp =
			rd_kafka_topic_partition_list_find(list, topic, partitions[i]);

		offsets[i] = tp ? tp->offset : -1;
	}
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Fill the high (and with with_low, the low) watermarks of the given
 * partitions (wm[i].partition set by the caller): one batched ListOffsets
 * request per leader each, not one per partition.
 */
static void
topic_watermarks(KafkaConnection *conn, const char *topic, KafkaWatermark *wm,
				 int nparts, bool with_low)
{
	int32	   *parts = palloc(sizeof(int32) * Max(nparts, 1));
	int64	   *offs = palloc(sizeof(int64) * Max(nparts, 1));

	for (int i = 0; i < nparts; i++)
		parts[i] = wm[i].partition;

	if (with_low)
	{
		list_offsets(conn, topic, parts, nparts, RD_KAFKA_OFFSET_BEGINNING, offs);
		for (int i = 0; i < nparts; i++)
			wm[i].low = Max(offs[i], 0);
	}
	else
		for (int i = 0; i < nparts; i++)
			wm[i].low = 0;
	list_offsets(conn, topic, parts, nparts, RD_KAFKA_OFFSET_END, offs);
	for (int i = 0; i < nparts; i++)
		wm[i].high = Max(offs[i], wm[i].low);

	pfree(parts);
	pfree(offs);
}

/* Low and high watermarks of the given partitions. */
void
kafka_topic_watermarks(KafkaConnection *conn, const char *topic,
					   KafkaWatermark *wm, int nparts)
{
	topic_watermarks(conn, topic, wm, nparts, true);
}

/*
 * For each partition, where records with a timestamp >= timestamp_ms start:
 * out[i] is the earliest such offset, high[i] when no record is that recent,
 * or low[i] when the broker cannot tell (then unknown[i] is set, if given).
 *
 * A broker answers -1 both when no record is that recent and, if it has no
 * time index (librdkafka's mock cluster among them), for every lookup.  We
 * tell the two apart by also asking for time 0: a partition that holds
 * records must answer that with an offset.  Where the broker cannot answer,
 * the caller reads from low and relies on filtering.
 */
void
kafka_resolve_timestamp(KafkaConnection *conn, const char *topic,
						const int32 *partitions, const int64 *low, const int64 *high,
						int nparts, int64 timestamp_ms, int64 *out, bool *unknown)
{
	int64	   *probe = NULL;

	if (nparts == 0)
		return;
	if (unknown)
		memset(unknown, 0, sizeof(bool) * nparts);
	list_offsets(conn, topic, partitions, nparts, Max(timestamp_ms, 0), out);
	for (int i = 0; i < nparts; i++)
	{
		if (out[i] >= 0)
		{
			out[i] = Min(Max(out[i], low[i]), high[i]);
			continue;
		}
		if (probe == NULL)
		{
			probe = palloc(sizeof(int64) * nparts);
			list_offsets(conn, topic, partitions, nparts, 0, probe);
		}
		if (probe[i] >= 0 || low[i] >= high[i])
			out[i] = high[i];
		else
		{
			out[i] = low[i];
			if (unknown)
				unknown[i] = true;
		}
	}
	if (probe)
		pfree(probe);
}

/*
 * Partitions and watermarks of a topic in one call: acquires a handle for
 * (server, user), asks, and releases it on every path.  Returns the number
 * of partitions; *wm is palloc'd, sorted by partition.  Without with_low
 * only the high watermarks are asked for (low is 0): one ListOffsets round
 * less, for the auto-refresh worker's frequent check for new records.
 */
int
kafka_fetch_watermarks(Oid serverid, Oid userid, const char *topic, bool with_low,
					   KafkaWatermark **wm)
{
	KafkaConnection *conn = kafka_connection_acquire(serverid, userid);
	KafkaWatermark *volatile result = NULL;
	volatile int n = 0;

	PG_TRY();
	{
		int32	   *ids;
		KafkaWatermark *w;

		n = kafka_topic_partitions(conn, topic, &ids);
		w = palloc0(sizeof(KafkaWatermark) * Max(n, 1));
		for (int i = 0; i < n; i++)
			w[i].partition = ids[i];
		topic_watermarks(conn, topic, w, n, with_low);
		result = w;
	}
	PG_FINALLY();
	{
		kafka_connection_release(conn);
	}
	PG_END_TRY();
	*wm = result;
	return n;
}

/* kafka_resolve_timestamp() with a handle of its own, for the watermarks wm. */
void
kafka_fetch_timestamp_offsets(Oid serverid, Oid userid, const char *topic,
							  const KafkaWatermark *wm, int n, int64 timestamp_ms,
							  int64 *out, bool *unknown)
{
	KafkaConnection *conn = kafka_connection_acquire(serverid, userid);

	PG_TRY();
	{
		int32	   *ids = palloc(sizeof(int32) * Max(n, 1));
		int64	   *low = palloc(sizeof(int64) * Max(n, 1));
		int64	   *high = palloc(sizeof(int64) * Max(n, 1));

		for (int i = 0; i < n; i++)
		{
			ids[i] = wm[i].partition;
			low[i] = wm[i].low;
			high[i] = wm[i].high;
		}
		kafka_resolve_timestamp(conn, topic, ids, low, high, n, timestamp_ms, out, unknown);
	}
	PG_FINALLY();
	{
		kafka_connection_release(conn);
	}
	PG_END_TRY();
}

/*
 * Called by a scan that has waited since 'since' without receiving anything
 * although records are known to exist: error out once connect_timeout has
 * passed.  librdkafka keeps reconnecting in the background meanwhile.
 */
void
kafka_check_connection_alive(KafkaConnection *conn, TimestampTz since, const char *topic)
{
	if (TimestampDifferenceExceeds(since, GetCurrentTimestamp(), kafka_connect_timeout_ms))
	{
		rd_kafka_resp_err_t err;

		rd_kafka_poll(conn->rk, 0);
		pthread_mutex_lock(&conn->error_lock);
		err = conn->last_error_code;
		pthread_mutex_unlock(&conn->error_lock);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			err = RD_KAFKA_RESP_ERR__TIMED_OUT;
		kafka_report_error(conn, err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
						   err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ?
						   err : RD_KAFKA_RESP_ERR__TIMED_OUT, topic);
	}
}

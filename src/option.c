/*-------------------------------------------------------------------------
 *
 * option.c
 *		Option validation for kafka_fdw, and librdkafka configuration built
 *		from a server's and user mapping's options.
 *
 * Every option is listed once in kafka_options[] with the catalog it belongs
 * to.  The validator rejects anything else, naming the closest valid option
 * (by Levenshtein distance) so a typo like "brokres" gets a useful hint.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "kafka_fdw.h"

typedef struct KafkaOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
} KafkaOption;

static const KafkaOption kafka_options[] = {
	{"brokers", ForeignServerRelationId},
	{"authentication", ForeignServerRelationId},
	{"topic", ForeignTableRelationId},
	{"start_offset", ForeignTableRelationId},
	{"on_error", ForeignTableRelationId},
	{NULL, InvalidOid}
};

/* Authentication modes of SPEC §2.2; only "none" is implemented so far. */
static const char *const kafka_auth_modes[] = {
	"none", "tls", "mtls", "sasl_plain", "sasl_scram_sha_256",
	"sasl_scram_sha_512", "iam", NULL
};

PG_FUNCTION_INFO_V1(kafka_fdw_validator);

static void reject_unknown_option(const char *name, Oid context);
static void validate_option_value(DefElem *def);

/*
 * Validate the options of a CREATE/ALTER of a server, user mapping, foreign
 * table or the wrapper itself.
 */
Datum
kafka_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	bool		have_brokers = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const KafkaOption *opt;
		bool		found = false;

		for (opt = kafka_options; opt->name; opt++)
		{
			if (opt->context == catalog && strcmp(opt->name, def->defname) == 0)
			{
				found = true;
				break;
			}
		}
		if (!found)
			reject_unknown_option(def->defname, catalog);

		validate_option_value(def);
		if (strcmp(def->defname, "brokers") == 0)
			have_brokers = true;
	}

	/*
	 * A server needs a broker list.  ALTER SERVER passes only the changed
	 * options' final list, so this holds for ALTER too.
	 */
	if (catalog == ForeignServerRelationId && !have_brokers)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a kafka_fdw server requires the option \"brokers\""),
				 errhint("Add OPTIONS (brokers 'host1:9092,host2:9092').")));

	PG_RETURN_VOID();
}

static const char *
catalog_description(Oid catalog)
{
	switch (catalog)
	{
		case ForeignServerRelationId:
			return "a kafka_fdw server";
		case ForeignTableRelationId:
			return "a kafka_fdw foreign table";
		case UserMappingRelationId:
			return "a kafka_fdw user mapping";
		case ForeignDataWrapperRelationId:
			return "the kafka_fdw wrapper";
	}
	return "kafka_fdw";
}

/*
 * Error out for an option that is not valid for the catalog, naming the
 * closest option name we know (in any context) as a hint.
 */
static void
reject_unknown_option(const char *name, Oid context)
{
	const KafkaOption *opt;
	const KafkaOption *best = NULL;
	int			best_distance = INT_MAX;
	StringInfoData valid;

	initStringInfo(&valid);
	for (opt = kafka_options; opt->name; opt++)
	{
		int			d = varstr_levenshtein(name, strlen(name),
										   opt->name, strlen(opt->name),
										   1, 1, 1, false);

		if (d < best_distance)
		{
			best_distance = d;
			best = opt;
		}
		if (opt->context == context)
			appendStringInfo(&valid, "%s%s", valid.len ? ", " : "", opt->name);
	}

	/* A suggestion is only useful when it is close to what was typed. */
	if (best && best_distance <= Max(2, (int) strlen(name) / 3))
	{
		if (best->context == context)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", name,
							catalog_description(context)),
					 errhint("Perhaps you meant the option \"%s\".", best->name)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for %s", name,
							catalog_description(context)),
					 errhint("The option \"%s\" belongs to %s.", best->name,
							 catalog_description(best->context))));
	}

	if (valid.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\" for %s", name,
						catalog_description(context)),
				 errhint("Valid options in this context are: %s.", valid.data)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\" for %s", name,
					catalog_description(context)),
			 errhint("No options are valid in this context.")));
}

static void
validate_option_value(DefElem *def)
{
	const char *value = defGetString(def);

	if (strcmp(def->defname, "brokers") == 0 ||
		strcmp(def->defname, "topic") == 0)
	{
		if (value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" must not be empty", def->defname)));
	}
	else if (strcmp(def->defname, "authentication") == 0)
	{
		const char *const *mode;

		for (mode = kafka_auth_modes; *mode; mode++)
			if (strcmp(*mode, value) == 0)
				break;
		if (*mode == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"authentication\": \"%s\"", value),
					 errhint("Valid values are none, tls, mtls, sasl_plain, sasl_scram_sha_256, sasl_scram_sha_512 and iam.")));
		if (strcmp(value, "none") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("authentication \"%s\" is not implemented yet", value),
					 errhint("Use authentication 'none'.")));
	}
	else if (strcmp(def->defname, "start_offset") == 0)
	{
		int64		ms;

		if (strcmp(value, "earliest") != 0 && strcmp(value, "latest") != 0 &&
			!kafka_parse_timestamp(value, &ms))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"start_offset\": \"%s\"", value),
					 errhint("Use 'earliest', 'latest' or a timestamp such as '2024-01-31 12:00:00+00'.")));
	}
	else if (strcmp(def->defname, "on_error") == 0)
	{
		if (strcmp(value, "skip") != 0 && strcmp(value, "fail") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"on_error\": \"%s\"", value),
					 errhint("Valid values are skip and fail.")));
	}
}

/*
 * Parse a timestamp with time zone without throwing; the result is in
 * milliseconds since the Unix epoch.
 */
bool
kafka_parse_timestamp(const char *str, int64 *ms)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			tz;
	fsec_t		fsec;
	struct pg_tm tt;
	TimestampTz result;

	if (strlen(str) >= MAXDATELEN)
		return false;
	if (ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) != 0)
		return false;
	if (DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tz) != 0)
		return false;
	if (dtype != DTK_DATE)
		return false;
	if (tm2timestamp(&tt, fsec, &tz, &result) != 0)
		return false;

	*ms = (result / 1000) +
		((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000);
	return true;
}

/*
 * Read the options of a kafka_fdw foreign table.  The topic defaults to the
 * table's name.
 */
void
kafka_get_table_options(Oid relid, KafkaTableOptions *opts)
{
	ForeignTable *table = GetForeignTable(relid);
	ListCell   *lc;

	memset(opts, 0, sizeof(*opts));
	opts->serverid = table->serverid;
	opts->start_kind = KAFKA_START_EARLIEST;

	foreach(lc, table->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const char *value = defGetString(def);

		if (strcmp(def->defname, "topic") == 0)
			opts->topic = pstrdup(value);
		else if (strcmp(def->defname, "on_error") == 0)
			opts->on_error_fail = (strcmp(value, "fail") == 0);
		else if (strcmp(def->defname, "start_offset") == 0)
		{
			if (strcmp(value, "earliest") == 0)
				opts->start_kind = KAFKA_START_EARLIEST;
			else if (strcmp(value, "latest") == 0)
				opts->start_kind = KAFKA_START_LATEST;
			else if (kafka_parse_timestamp(value, &opts->start_timestamp_ms))
				opts->start_kind = KAFKA_START_TIMESTAMP;
		}
	}
	if (opts->topic == NULL)
		opts->topic = get_rel_name(relid);
}

/* The server's broker list. */
char *
kafka_server_brokers(ForeignServer *server)
{
	ListCell   *lc;

	foreach(lc, server->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "brokers") == 0)
			return defGetString(def);
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
			 errmsg("server \"%s\" has no option \"brokers\"", server->servername)));
	pg_unreachable();
}

static void
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[256];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("could not set librdkafka property \"%s\"", name),
				 errdetail("%s", errstr)));
	}
}

/*
 * Build the librdkafka configuration of a consumer for the server and user
 * mapping (which may be NULL).  The caller owns the result.
 *
 * Prefetching is bounded per partition so that a scan over many partitions
 * keeps the backend's memory small; fetch.wait.max.ms is short because a
 * bounded scan never waits for records past the high watermark.
 */
rd_kafka_conf_t *
kafka_build_conf(ForeignServer *server, UserMapping *mapping)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		buf[32];

	conf_set(conf, "bootstrap.servers", kafka_server_brokers(server));
	conf_set(conf, "client.id", "kafka_fdw");
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "enable.auto.offset.store", "false");
	conf_set(conf, "enable.partition.eof", "true");
	conf_set(conf, "isolation.level", "read_committed");
	conf_set(conf, "auto.offset.reset", "earliest");
	conf_set(conf, "fetch.wait.max.ms", "10");
	conf_set(conf, "queued.max.messages.kbytes", "4096");
	conf_set(conf, "queued.min.messages", "20000");
	conf_set(conf, "reconnect.backoff.ms", "50");
	conf_set(conf, "reconnect.backoff.max.ms", "1000");
	conf_set(conf, "allow.auto.create.topics", "false");
	conf_set(conf, "log.connection.close", "false");
	snprintf(buf, sizeof(buf), "%d", Max(kafka_connect_timeout_ms, 1000));
	conf_set(conf, "socket.connection.setup.timeout.ms", buf);
	return conf;
}

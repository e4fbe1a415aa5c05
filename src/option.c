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
 * Security rules (SPEC §5), enforced here at CREATE/ALTER time:
 *
 * - Credentials (username, password, AWS keys and session token, the key
 *   passphrase) are accepted only in user mappings, whose options PostgreSQL
 *   shows only to the mapping's user, the server owner and superusers.  In
 *   a server or table they are refused with a hint to move them.
 *
 * - Options that make the backend read local files (ssl_ca_file,
 *   ssl_certificate_file, ssl_key_file) and librdkafka properties that read
 *   files or load code need a superuser.  As in postgres_fdw, the validator
 *   sees only the new option list, so once a superuser set such an option,
 *   only a superuser can ALTER that server's options.
 *
 * - rdkafka.<property> passes librdkafka properties through, but only those
 *   on an allow-list (rdkafka_properties[]); the ones kafka_fdw relies on
 *   (group.id, isolation.level, security.protocol, ...) are refused.
 *
 * kafka_build_conf() turns the options into a librdkafka configuration.  It
 * is the only place that does, used both for real handles and for
 * kafka.connection_config(), which shows the result with secrets redacted.
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
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "kafka_fdw.h"
#include "sigv4.h"

/* Option flags */
#define OPT_SECRET		0x01		/* a credential: never shown, only in user mappings */
#define OPT_SUPERUSER	0x02		/* makes the backend read a local file */

typedef struct KafkaOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
	int			flags;
} KafkaOption;

static const KafkaOption kafka_options[] = {
	{"brokers", ForeignServerRelationId, 0},
	{"authentication", ForeignServerRelationId, 0},
	{"region", ForeignServerRelationId, 0},
	{"tls", ForeignServerRelationId, 0},
	{"ssl_ca_file", ForeignServerRelationId, OPT_SUPERUSER},
	{"ssl_certificate_file", ForeignServerRelationId, OPT_SUPERUSER},
	{"ssl_key_file", ForeignServerRelationId, OPT_SUPERUSER},
	{"username", UserMappingRelationId, 0},
	{"password", UserMappingRelationId, OPT_SECRET},
	{"aws_access_key_id", UserMappingRelationId, OPT_SECRET},
	{"aws_secret_access_key", UserMappingRelationId, OPT_SECRET},
	{"aws_session_token", UserMappingRelationId, OPT_SECRET},
	{"ssl_key_password", UserMappingRelationId, OPT_SECRET},
	{"topic", ForeignTableRelationId, 0},
	{"start_offset", ForeignTableRelationId, 0},
	{"on_error", ForeignTableRelationId, 0},
	{"xid_header", ForeignTableRelationId, 0},
	{NULL, InvalidOid, 0}
};

/* Prefix of librdkafka pass-through options on a server. */
#define RDKAFKA_PREFIX "rdkafka."

/* Authentication modes of SPEC §2.2. */
typedef enum KafkaAuthMode
{
	KAFKA_AUTH_NONE,
	KAFKA_AUTH_TLS,
	KAFKA_AUTH_MTLS,
	KAFKA_AUTH_SASL_PLAIN,
	KAFKA_AUTH_SASL_SCRAM_SHA_256,
	KAFKA_AUTH_SASL_SCRAM_SHA_512,
	KAFKA_AUTH_IAM
} KafkaAuthMode;

static const char *const kafka_auth_modes[] = {
	"none", "tls", "mtls", "sasl_plain", "sasl_scram_sha_256",
	"sasl_scram_sha_512", "iam", NULL
};

#define AUTH_IS_SASL(m) ((m) == KAFKA_AUTH_SASL_PLAIN || \
						 (m) == KAFKA_AUTH_SASL_SCRAM_SHA_256 || \
						 (m) == KAFKA_AUTH_SASL_SCRAM_SHA_512)

/*
 * What a librdkafka property given as rdkafka.<property> may be.  Properties
 * not listed are refused.
 */
typedef enum RdkafkaClass
{
	RDK_ALLOWED,				/* tuning: anyone who may create the server */
	RDK_SUPERUSER,				/* reads local files or loads code */
	RDK_MANAGED					/* kafka_fdw sets it; refused */
} RdkafkaClass;

typedef struct RdkafkaProperty
{
	const char *name;			/* exact name, or a prefix ending in '.' or '*' */
	RdkafkaClass cls;
	const char *hint;			/* for RDK_MANAGED */
} RdkafkaProperty;

static const char *const hint_auth =
"Connection security comes from the server option \"authentication\" and the user mapping's credentials.";
static const char *const hint_scan =
"kafka_fdw reads partitions itself at fixed offsets, without a consumer group, committed offsets or automatic resets.";

static const RdkafkaProperty rdkafka_properties[] = {
	/* tuning and diagnostics */
	{"api.version.fallback.ms", RDK_ALLOWED, NULL},
	{"api.version.request", RDK_ALLOWED, NULL},
	{"api.version.request.timeout.ms", RDK_ALLOWED, NULL},
	{"broker.address.family", RDK_ALLOWED, NULL},
	{"broker.address.ttl", RDK_ALLOWED, NULL},
	{"broker.version.fallback", RDK_ALLOWED, NULL},
	{"check.crcs", RDK_ALLOWED, NULL},
	{"client.id", RDK_ALLOWED, NULL},
	{"client.rack", RDK_ALLOWED, NULL},
	{"connections.max.idle.ms", RDK_ALLOWED, NULL},
	{"debug", RDK_ALLOWED, NULL},
	{"enable.ssl.certificate.verification", RDK_ALLOWED, NULL},
	{"fetch.error.backoff.ms", RDK_ALLOWED, NULL},
	{"fetch.max.bytes", RDK_ALLOWED, NULL},
	{"fetch.min.bytes", RDK_ALLOWED, NULL},
	{"fetch.wait.max.ms", RDK_ALLOWED, NULL},
	{"max.partition.fetch.bytes", RDK_ALLOWED, NULL},
	{"message.max.bytes", RDK_ALLOWED, NULL},
	{"metadata.max.age.ms", RDK_ALLOWED, NULL},
	{"queued.max.messages.kbytes", RDK_ALLOWED, NULL},
	{"queued.min.messages", RDK_ALLOWED, NULL},
	{"receive.message.max.bytes", RDK_ALLOWED, NULL},
	{"reconnect.backoff.max.ms", RDK_ALLOWED, NULL},
	{"reconnect.backoff.ms", RDK_ALLOWED, NULL},
	{"retry.backoff.ms", RDK_ALLOWED, NULL},
	{"socket.connection.setup.timeout.ms", RDK_ALLOWED, NULL},
	{"socket.keepalive.enable", RDK_ALLOWED, NULL},
	{"socket.nagle.disable", RDK_ALLOWED, NULL},
	{"socket.receive.buffer.bytes", RDK_ALLOWED, NULL},
	{"socket.send.buffer.bytes", RDK_ALLOWED, NULL},
	{"socket.timeout.ms", RDK_ALLOWED, NULL},
	{"ssl.ca.pem", RDK_ALLOWED, NULL},
	{"ssl.cipher.suites", RDK_ALLOWED, NULL},
	{"ssl.curves.list", RDK_ALLOWED, NULL},
	{"ssl.endpoint.identification.algorithm", RDK_ALLOWED, NULL},
	{"ssl.sigalgs.list", RDK_ALLOWED, NULL},
	{"topic.metadata.propagation.max.ms", RDK_ALLOWED, NULL},
	{"topic.metadata.refresh.fast.interval.ms", RDK_ALLOWED, NULL},
	{"topic.metadata.refresh.interval.ms", RDK_ALLOWED, NULL},
	{"topic.metadata.refresh.sparse", RDK_ALLOWED, NULL},

	/* read local files or load code: superuser only */
	{"plugin.library.paths", RDK_SUPERUSER, NULL},
	{"ssl.ca.location", RDK_SUPERUSER, NULL},
	{"ssl.certificate.location", RDK_SUPERUSER, NULL},
	{"ssl.crl.location", RDK_SUPERUSER, NULL},
	{"ssl.engine.id", RDK_SUPERUSER, NULL},
	{"ssl.engine.location", RDK_SUPERUSER, NULL},
	{"ssl.key.location", RDK_SUPERUSER, NULL},
	{"ssl.keystore.location", RDK_SUPERUSER, NULL},
	{"ssl.providers", RDK_SUPERUSER, NULL},
	{"sasl.kerberos.*", RDK_SUPERUSER, NULL},

	/* set by kafka_fdw */
	{"bootstrap.servers", RDK_MANAGED, "Use the server option \"brokers\"."},
	{"metadata.broker.list", RDK_MANAGED, "Use the server option \"brokers\"."},
	{"security.protocol", RDK_MANAGED, NULL},
	{"sasl.*", RDK_MANAGED, NULL},
	{"enable.sasl.oauthbearer.unsecure.jwt", RDK_MANAGED, NULL},
	{"ssl.key.password", RDK_MANAGED, "Set the user mapping option \"ssl_key_password\"."},
	{"ssl.keystore.password", RDK_MANAGED, "Set the user mapping option \"ssl_key_password\"."},
	{"ssl.key.pem", RDK_MANAGED, "Use the server option \"ssl_key_file\"."},
	{"ssl.certificate.pem", RDK_MANAGED, "Use the server option \"ssl_certificate_file\"."},
	{"ssl_key", RDK_MANAGED, "Use the server option \"ssl_key_file\"."},
	{"ssl_certificate", RDK_MANAGED, "Use the server option \"ssl_certificate_file\"."},
	{"group.id", RDK_MANAGED, NULL},
	{"group.instance.id", RDK_MANAGED, NULL},
	{"enable.auto.commit", RDK_MANAGED, NULL},
	{"enable.auto.offset.store", RDK_MANAGED, NULL},
	{"enable.partition.eof", RDK_MANAGED, NULL},
	{"auto.offset.reset", RDK_MANAGED, NULL},
	{"isolation.level", RDK_MANAGED, "kafka_fdw always reads with isolation.level read_committed, up to the last stable offset."},
	{"allow.auto.create.topics", RDK_MANAGED, "kafka_fdw never creates topics."},
	{NULL, RDK_MANAGED, NULL}
};

PG_FUNCTION_INFO_V1(kafka_fdw_validator);

static void reject_unknown_option(const char *name, Oid context);
static void validate_option_value(DefElem *def);
static void validate_rdkafka_option(DefElem *def);
static void validate_server_options(List *options);
static KafkaAuthMode parse_auth_mode(const char *value);

static const KafkaOption *
find_option(const char *name, Oid context)
{
	for (const KafkaOption *opt = kafka_options; opt->name; opt++)
		if (opt->context == context && strcmp(opt->name, name) == 0)
			return opt;
	return NULL;
}

/*
 * Validate the options of a CREATE/ALTER of a server, user mapping, foreign
 * table or the wrapper itself.  Error messages name options, never values:
 * a value may be a credential typed into the wrong place.
 */
Datum
kafka_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);
		const KafkaOption *opt;

		if (catalog == ForeignServerRelationId &&
			strncmp(def->defname, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) == 0)
		{
			validate_rdkafka_option(def);
			continue;
		}
		opt = find_option(def->defname, catalog);
		if (opt == NULL)
			reject_unknown_option(def->defname, catalog);
		if ((opt->flags & OPT_SUPERUSER) && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only superusers may set the option \"%s\"", def->defname),
					 errdetail("The option makes the database server read a local file."),
					 errhint("Ask a superuser to create or alter the server.")));
		validate_option_value(def);
	}

	if (catalog == ForeignServerRelationId)
		validate_server_options(options);

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

	/* A credential (or user name) outside a user mapping: say where it goes. */
	for (opt = kafka_options; opt->name; opt++)
	{
		if (opt->context == UserMappingRelationId && strcmp(opt->name, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" is accepted only in a user mapping, not in %s",
							name, catalog_description(context)),
					 errdetail("Credentials belong to user mappings, whose options only the mapped user, the server owner and superusers can read."),
					 errhint("Remove it here and use CREATE USER MAPPING FOR ... SERVER ... OPTIONS (%s '...').",
							 name)));
	}
	if (strncmp(name, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\" for %s", name, catalog_description(context)),
				 errhint("librdkafka properties are options of the server.")));

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

	if (context == ForeignServerRelationId)
		appendStringInfoString(&valid, ", rdkafka.<property>");
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

static KafkaAuthMode
parse_auth_mode(const char *value)
{
	for (int i = 0; kafka_auth_modes[i]; i++)
		if (strcmp(kafka_auth_modes[i], value) == 0)
			return (KafkaAuthMode) i;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"authentication\": \"%s\"", value),
			 errhint("Valid values are none, tls, mtls, sasl_plain, sasl_scram_sha_256, sasl_scram_sha_512 and iam.")));
	pg_unreachable();
}

/* An AWS region name such as us-east-1: lower-case letters, digits, '-'. */
static bool
valid_region(const char *r)
{
	size_t		n = strlen(r);

	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
			return false;
	return true;
}

static void
validate_option_value(DefElem *def)
{
	const char *value = defGetString(def);
	const KafkaOption *opt;

	if (strcmp(def->defname, "brokers") == 0)
		(void) kafka_check_brokers(value);
	else if (strcmp(def->defname, "topic") == 0 ||
			 strcmp(def->defname, "xid_header") == 0)
	{
		if (value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"%s\" must not be empty", def->defname)));
	}
	else if (strcmp(def->defname, "authentication") == 0)
		(void) parse_auth_mode(value);
	else if (strcmp(def->defname, "region") == 0)
	{
		if (!valid_region(value))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"region\": \"%s\"", value),
					 errhint("Use the AWS region of the cluster, such as 'us-east-1'.")));
	}
	else if (strcmp(def->defname, "tls") == 0)
	{
		bool		b;

		if (!parse_bool(value, &b))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"tls\": \"%s\"", value),
					 errhint("Use 'true' or 'false'.")));
	}
	else if (strcmp(def->defname, "ssl_ca_file") == 0 ||
			 strcmp(def->defname, "ssl_certificate_file") == 0 ||
			 strcmp(def->defname, "ssl_key_file") == 0)
	{
		if (!is_absolute_path(value))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"%s\" must be an absolute path", def->defname)));
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
	else if ((opt = find_option(def->defname, UserMappingRelationId)) != NULL)
	{
		/* credentials: checked for presence only, never echoed */
		if (value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"%s\" must not be empty", def->defname)));
	}
}

/* The entry of rdkafka_properties[] for a librdkafka property, or NULL. */
static const RdkafkaProperty *
lookup_rdkafka_property(const char *prop)
{
	static const RdkafkaProperty ssl_location = {"ssl.*.location", RDK_SUPERUSER, NULL};
	size_t		len = strlen(prop);

	for (const RdkafkaProperty *p = rdkafka_properties; p->name; p++)
	{
		size_t		n = strlen(p->name);

		if (p->name[n - 1] == '*')
		{
			if (strncmp(prop, p->name, n - 1) == 0)
				return p;
		}
		else if (strcmp(prop, p->name) == 0)
			return p;
	}
	/* any other file location librdkafka may grow */
	if (strncmp(prop, "ssl", 3) == 0 && len > 9 && strcmp(prop + len - 9, ".location") == 0)
		return &ssl_location;
	return NULL;
}

/*
 * Check one rdkafka.<property> server option: allowed, superuser-only,
 * managed by kafka_fdw, or unknown; and its value, with librdkafka.
 */
static void
validate_rdkafka_option(DefElem *def)
{
	const char *prop = def->defname + strlen(RDKAFKA_PREFIX);
	const char *value = defGetString(def);
	const RdkafkaProperty *p = lookup_rdkafka_property(prop);

	if (p == NULL)
	{
		const RdkafkaProperty *best = NULL;
		int			best_distance = INT_MAX;

		for (const RdkafkaProperty *q = rdkafka_properties; q->name; q++)
		{
			int			d;

			if (q->cls == RDK_MANAGED || strchr(q->name, '*'))
				continue;
			d = varstr_levenshtein(prop, strlen(prop), q->name, strlen(q->name),
								   1, 1, 1, false);
			if (d < best_distance)
			{
				best_distance = d;
				best = q;
			}
		}
		if (best && prop[0] && best_distance <= Max(2, (int) strlen(prop) / 4))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("librdkafka property \"%s\" is not allowed", prop),
					 errhint("Perhaps you meant the option \"" RDKAFKA_PREFIX "%s\".", best->name)));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("librdkafka property \"%s\" is not allowed", prop),
				 errdetail("kafka_fdw passes only an allow-list of librdkafka properties through."),
				 errhint("See the README section \"librdkafka properties\" for the properties that may be set.")));
	}

	if (p->cls == RDK_MANAGED)
	{
		const char *hint = p->hint;

		if (hint == NULL)
			hint = (strcmp(prop, "security.protocol") == 0 ||
					strncmp(prop, "sasl.", 5) == 0 ||
					strncmp(prop, "enable.sasl.", 12) == 0) ? hint_auth : hint_scan;
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("librdkafka property \"%s\" is set by kafka_fdw and cannot be changed", prop),
				 errhint("%s", hint)));
	}

	if (p->cls == RDK_SUPERUSER && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may set librdkafka property \"%s\"", prop),
				 errdetail("The property makes the database server read local files or load code."),
				 errhint("Ask a superuser to create or alter the server.")));

	/*
	 * Let librdkafka check the value.  Not for plugin.library.paths: setting
	 * it loads the libraries at once.
	 */
	if (strcmp(prop, "plugin.library.paths") != 0)
	{
		rd_kafka_conf_t *conf = rd_kafka_conf_new();
		char		errstr[256];
		rd_kafka_conf_res_t res;

		res = rd_kafka_conf_set(conf, prop, value, errstr, sizeof(errstr));
		rd_kafka_conf_destroy(conf);
		if (res != RD_KAFKA_CONF_OK)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for librdkafka property \"%s\"", prop),
					 errdetail("%s", errstr)));
	}
}

/*
 * The broker list: entries separated by commas (and spaces, as librdkafka
 * reads it), each a host name or IPv4 address, or an IPv6 address in
 * brackets, with an optional :port.  librdkafka runs a thread and a socket
 * per entry, and skips what it cannot parse without a word (",,,," gave
 * "No brokers configured" only after the whole connect timeout), so the
 * list is checked here, at CREATE/ALTER SERVER and again before a handle is
 * made (for servers created before the check), and bounded to
 * KAFKA_MAX_BROKERS entries.
 */

/* Longest part of a bad entry quoted in an error */
#define KAFKA_BROKER_QUOTED_BYTES 64

/* Broker list entries named in messages; the rest are counted. */
#define KAFKA_BROKERS_NAMED 3

/* Is c a separator of the broker list? */
#define IS_BROKER_SEP(c) ((c) == ',' || (c) == ' ' || (c) == '\t')

/*
 * The next entry of a broker list from *cursor on, or NULL at its end; sets
 * *len and moves *cursor past the entry.
 */
static const char *
next_broker_entry(const char **cursor, size_t *len)
{
	const char *p = *cursor;
	const char *entry;

	while (IS_BROKER_SEP(*p))
		p++;
	if (*p == '\0')
		return NULL;
	entry = p;
	while (*p != '\0' && !IS_BROKER_SEP(*p))
		p++;
	*len = p - entry;
	*cursor = p;
	return entry;
}

/*
 * Why the broker list entry [entry, entry + len) is not valid, as a detail
 * sentence, or NULL if it is valid.
 */
static const char *
broker_entry_error(const char *entry, size_t len)
{
	const char *end = entry + len;
	const char *p = entry;
	const char *host_end;

	if (len >= 3 && memmem(entry, len, "://", 3) != NULL)
		return "A broker address takes no protocol prefix: the protocol follows the server option \"authentication\".";
	if (*p == '[')
	{
		/* [IPv6]: hex digits, colons and dots (an embedded IPv4) */
		for (p++; p < end && *p != ']'; p++)
			if (!(isxdigit((unsigned char) *p) || *p == ':' || *p == '.'))
				return "An IPv6 address in brackets may contain only hex digits, colons and dots.";
		if (p == end)
			return "The closing bracket of the IPv6 address is missing.";
		if (p == entry + 1)
			return "The IPv6 address in brackets is empty.";
		host_end = ++p;
	}
	else
	{
		for (; p < end && *p != ':'; p++)
			if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '.' || *p == '_'))
				return "A host name may contain only letters, digits, hyphens, dots and underscores.";
		host_end = p;
		if (host_end == entry)
			return "The host name is missing.";
		if (host_end - entry > 253)
			return "A host name has at most 253 characters.";
		if (p < end && memchr(p + 1, ':', end - p - 1) != NULL)
			return "An IPv6 address must be written in brackets, such as [::1]:9092.";
	}
	if (p < end)
	{
		long		port = 0;

		if (*p != ':')
			return "Only a port may follow the IPv6 address, after a colon.";
		if (++p == end)
			return "The port is missing after the colon.";
		for (; p < end; p++)
		{
			if (!isdigit((unsigned char) *p))
				return "The port must be a number from 1 to 65535.";
			port = port * 10 + (*p - '0');
			if (port > 65535)
				return "The port must be a number from 1 to 65535.";
		}
		if (port == 0)
			return "The port must be a number from 1 to 65535.";
	}
	return NULL;
}

/*
 * Check the syntax and length of a broker list (see above); returns the
 * number of brokers.  Errors quote at most KAFKA_BROKER_QUOTED_BYTES of the
 * bad entry.
 */
int
kafka_check_brokers(const char *brokers)
{
	const char *cursor = brokers;
	const char *entry;
	size_t		len;
	int			n = 0;

	while ((entry = next_broker_entry(&cursor, &len)) != NULL)
	{
		const char *reason;

		if ((reason = broker_entry_error(entry, len)) != NULL)
		{
			int			shown = pg_mbcliplen(entry, (int) len, KAFKA_BROKER_QUOTED_BYTES);

			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid broker \"%.*s%s\" in option \"brokers\"",
							shown, entry, (size_t) shown < len ? "..." : ""),
					 errdetail("%s", reason),
					 errhint("Give a comma-separated list of host:port pairs, such as 'b-1:9092,b-2:9092'.")));
		}
		if (++n > KAFKA_MAX_BROKERS)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"brokers\" lists more than %d brokers", KAFKA_MAX_BROKERS),
					 errdetail("The client runs a thread and a connection per listed broker."),
					 errhint("List a few brokers of the cluster: the client learns the others from them.")));
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"brokers\" lists no broker"),
				 errhint("Give a comma-separated list of host:port pairs, such as 'b-1:9092,b-2:9092'.")));
	return n;
}

/*
 * The broker list for messages, palloc'd: the list itself if it has at most
 * KAFKA_BROKERS_NAMED entries, else those first entries and the count, so
 * that a long list does not fill every error.
 */
char *
kafka_brokers_for_message(const char *brokers)
{
	StringInfoData buf;
	const char *cursor = brokers;
	const char *entry;
	size_t		len;
	int			n = 0;

	initStringInfo(&buf);
	while ((entry = next_broker_entry(&cursor, &len)) != NULL)
	{
		if (++n <= KAFKA_BROKERS_NAMED)
			appendStringInfo(&buf, "%s%.*s", n > 1 ? "," : "", (int) len, entry);
	}
	if (n <= KAFKA_BROKERS_NAMED)
	{
		pfree(buf.data);
		return pstrdup(brokers);
	}
	appendStringInfo(&buf, ",... (%d brokers)", n);
	return buf.data;
}

/*
 * The AWS region of MSK brokers named like
 * b-1.cluster.abc123.c2.kafka.us-east-1.amazonaws.com:9098 (or
 * ....kafka-serverless.us-east-1.amazonaws.com), from the first broker; NULL
 * if the names do not tell.
 */
char *
kafka_region_from_brokers(const char *brokers)
{
	const char *end = brokers + strcspn(brokers, ",");
	const char *suffix;
	const char *label;
	char	   *host = pnstrdup(brokers, end - brokers);
	char	   *colon = strrchr(host, ':');
	char	   *region;

	if (colon)
		*colon = '\0';
	suffix = strstr(host, ".amazonaws.com");
	if (suffix == NULL || (suffix[14] != '\0' && strcmp(suffix + 14, ".cn") != 0))
		return NULL;
	label = suffix;
	while (label > host && label[-1] != '.')
		label--;
	if (label == host)
		return NULL;
	region = pnstrdup(label, suffix - label);
	/* the label before the region must be kafka or kafka-serverless */
	if (!valid_region(region) ||
		!((label - host >= 7 && strncmp(label - 7, ".kafka.", 7) == 0) ||
		  (label - host >= 18 && strncmp(label - 18, ".kafka-serverless.", 18) == 0)))
		return NULL;
	return region;
}

/* Checks across a server's options: what each authentication mode needs. */
static void
validate_server_options(List *options)
{
	KafkaAuthMode mode = KAFKA_AUTH_NONE;
	const char *brokers = NULL;
	bool		have_region = false;
	bool		have_tls = false;
	bool		tls = true;
	bool		have_ca = false;
	bool		have_cert = false;
	bool		have_key = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "brokers") == 0)
			brokers = defGetString(def);
		else if (strcmp(def->defname, "authentication") == 0)
			mode = parse_auth_mode(defGetString(def));
		else if (strcmp(def->defname, "region") == 0)
			have_region = true;
		else if (strcmp(def->defname, "tls") == 0)
		{
			have_tls = true;
			/* validate_option_value() accepted it with the same parser */
			(void) parse_bool(defGetString(def), &tls);
		}
		else if (strcmp(def->defname, "ssl_ca_file") == 0)
			have_ca = true;
		else if (strcmp(def->defname, "ssl_certificate_file") == 0)
			have_cert = true;
		else if (strcmp(def->defname, "ssl_key_file") == 0)
			have_key = true;
	}

	/*
	 * A server needs a broker list.  ALTER SERVER passes the final option
	 * list, so this holds for ALTER too.
	 */
	if (brokers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a kafka_fdw server requires the option \"brokers\""),
				 errhint("Add OPTIONS (brokers 'host1:9092,host2:9092').")));

	if (have_tls && !AUTH_IS_SASL(mode))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"tls\" applies only to the sasl_* authentication modes"),
				 errhint("Authentication 'none' never uses TLS; 'tls', 'mtls' and 'iam' always do.")));
	if (mode == KAFKA_AUTH_MTLS && (!have_cert || !have_key))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("authentication \"mtls\" requires the options \"ssl_certificate_file\" and \"ssl_key_file\""),
				 errhint("A superuser sets them to the client certificate and key files (PEM); a key passphrase goes in the user mapping option \"ssl_key_password\".")));
	if (mode != KAFKA_AUTH_MTLS && (have_cert || have_key))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"ssl_certificate_file\" and \"ssl_key_file\" are used only with authentication \"mtls\"")));
	if (have_ca && (mode == KAFKA_AUTH_NONE || (AUTH_IS_SASL(mode) && !tls)))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"ssl_ca_file\" needs a TLS connection"),
				 errhint("Use authentication 'tls', 'mtls', 'iam', or a sasl_* mode with TLS.")));
	if (have_region && mode != KAFKA_AUTH_IAM)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"region\" is used only with authentication \"iam\"")));
	if (mode == KAFKA_AUTH_IAM && !have_region && kafka_region_from_brokers(brokers) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("authentication \"iam\" requires the option \"region\""),
				 errdetail("The region cannot be read from the broker names."),
				 errhint("Add OPTIONS (region 'us-east-1') with the AWS region of the MSK cluster.")));
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
		else if (strcmp(def->defname, "xid_header") == 0)
			opts->xid_header = pstrdup(value);
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

/* The value of a server option, or NULL. */
static const char *
server_option(ForeignServer *server, const char *name)
{
	ListCell   *lc;

	foreach(lc, server->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/* The value of a user mapping option, or NULL (also without a mapping). */
static const char *
mapping_option(UserMapping *mapping, const char *name)
{
	ListCell   *lc;

	if (mapping == NULL)
		return NULL;
	foreach(lc, mapping->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/*
 * A librdkafka configuration being built, and optionally the list of what was
 * set (KafkaConfEntry, secrets redacted) for kafka.connection_config().
 */
typedef struct ConfBuilder
{
	rd_kafka_conf_t *conf;
	List	   *entries;
	bool		describe;
	ForeignServer *server;
	UserMapping *mapping;
	Oid			userid;
	KafkaAuthMode mode;
} ConfBuilder;

#define REDACTED "[redacted]"

static void
note_entry(ConfBuilder *b, const char *name, const char *value)
{
	ListCell   *lc;
	KafkaConfEntry *e;

	if (!b->describe)
		return;
	/* a later setting of a property replaces the earlier one */
	foreach(lc, b->entries)
	{
		e = lfirst(lc);
		if (strcmp(e->property, name) == 0)
		{
			e->value = pstrdup(value);
			return;
		}
	}
	e = palloc(sizeof(KafkaConfEntry));
	e->property = pstrdup(name);
	e->value = pstrdup(value);
	b->entries = lappend(b->entries, e);
}

/*
 * Set a librdkafka property.  A secret is recorded as [redacted], and its
 * value is kept out of the error report.
 */
static void
conf_set(ConfBuilder *b, const char *name, const char *value, bool secret)
{
	char		errstr[256];

	if (rd_kafka_conf_set(b->conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(b->conf);
		b->conf = NULL;
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("could not set librdkafka property \"%s\" for server \"%s\"",
						name, b->server->servername),
				 secret ? 0 : errdetail("%s", errstr)));
	}
	note_entry(b, name, secret ? REDACTED : value);
}

/*
 * A credential from the user mapping that the server's authentication mode
 * needs; errors if it is missing.
 */
static const char *
require_credential(ConfBuilder *b, const char *name)
{
	const char *value = mapping_option(b->mapping, name);
	const char *mode = kafka_auth_modes[b->mode];
	char	   *user;

	if (value != NULL)
		return value;

	rd_kafka_conf_destroy(b->conf);
	b->conf = NULL;
	user = GetUserNameFromId(b->userid, true);
	if (user == NULL)
		user = psprintf("%u", b->userid);
	if (b->mapping == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("server \"%s\" uses authentication \"%s\", but there is no user mapping for \"%s\"",
						b->server->servername, mode, user),
				 errhint("Create one with CREATE USER MAPPING FOR %s SERVER %s OPTIONS (%s).",
						 quote_identifier(user), quote_identifier(b->server->servername),
						 b->mode == KAFKA_AUTH_IAM ?
						 "aws_access_key_id '...', aws_secret_access_key '...'" :
						 "username '...', password '...'")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("server \"%s\" uses authentication \"%s\", but the user mapping for \"%s\" has no option \"%s\"",
					b->server->servername, mode, user, name),
			 errhint("Add it with ALTER USER MAPPING FOR %s SERVER %s OPTIONS (ADD %s '...').",
					 quote_identifier(user), quote_identifier(b->server->servername), name)));
	pg_unreachable();
}

/* Remember a credential that error messages must never show. */
static void
add_secret(KafkaAuthConfig *auth, const char *value)
{
	if (auth && value && value[0])
		auth->secrets = lappend(auth->secrets, pstrdup(value));
}

/*
 * Security settings from the server's "authentication" and TLS options and
 * the user mapping's credentials.
 */
static void
build_auth(ConfBuilder *b, KafkaAuthConfig *auth)
{
	const char *tls_opt = server_option(b->server, "tls");
	bool		tls = true;
	const char *ca = server_option(b->server, "ssl_ca_file");
	const char *v;

	/* validated with parse_bool() by the validator */
	if (tls_opt)
		(void) parse_bool(tls_opt, &tls);

	switch (b->mode)
	{
		case KAFKA_AUTH_NONE:
			conf_set(b, "security.protocol", "plaintext", false);
			break;
		case KAFKA_AUTH_TLS:
			conf_set(b, "security.protocol", "ssl", false);
			break;
		case KAFKA_AUTH_MTLS:
			conf_set(b, "security.protocol", "ssl", false);
			conf_set(b, "ssl.certificate.location",
					 server_option(b->server, "ssl_certificate_file"), false);
			conf_set(b, "ssl.key.location", server_option(b->server, "ssl_key_file"), false);
			if ((v = mapping_option(b->mapping, "ssl_key_password")) != NULL)
			{
				add_secret(auth, v);
				conf_set(b, "ssl.key.password", v, true);
			}
			break;
		case KAFKA_AUTH_SASL_PLAIN:
		case KAFKA_AUTH_SASL_SCRAM_SHA_256:
		case KAFKA_AUTH_SASL_SCRAM_SHA_512:
			conf_set(b, "security.protocol", tls ? "sasl_ssl" : "sasl_plaintext", false);
			conf_set(b, "sasl.mechanisms",
					 b->mode == KAFKA_AUTH_SASL_PLAIN ? "PLAIN" :
					 b->mode == KAFKA_AUTH_SASL_SCRAM_SHA_256 ? "SCRAM-SHA-256" :
					 "SCRAM-SHA-512", false);
			conf_set(b, "sasl.username", require_credential(b, "username"), false);
			v = require_credential(b, "password");
			add_secret(auth, v);
			conf_set(b, "sasl.password", v, true);
			break;
		case KAFKA_AUTH_IAM:
			{
				const char *region = server_option(b->server, "region");
				const char *akid;
				const char *secret;
				const char *token;

				if (region == NULL)
					region = kafka_region_from_brokers(kafka_server_brokers(b->server));
				if (region == NULL)
				{
					rd_kafka_conf_destroy(b->conf);
					b->conf = NULL;
					ereport(ERROR,
							(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
							 errmsg("server \"%s\" uses authentication \"iam\" but has no option \"region\"",
									b->server->servername)));
				}
				akid = require_credential(b, "aws_access_key_id");
				secret = require_credential(b, "aws_secret_access_key");
				token = mapping_option(b->mapping, "aws_session_token");
				add_secret(auth, akid);
				add_secret(auth, secret);
				add_secret(auth, token);

				conf_set(b, "security.protocol", "sasl_ssl", false);
				conf_set(b, "sasl.mechanisms", "OAUTHBEARER", false);
				/* the token itself comes from the refresh callback (msk_iam.c) */
				note_entry(b, "kafka_fdw.iam.region", region);
				note_entry(b, "kafka_fdw.iam.aws_access_key_id", REDACTED);
				note_entry(b, "kafka_fdw.iam.aws_secret_access_key", REDACTED);
				if (token)
					note_entry(b, "kafka_fdw.iam.aws_session_token", REDACTED);
				note_entry(b, "kafka_fdw.iam.token_lifetime",
						   psprintf("%d s, refreshed at 80%%", SIGV4_MSK_TOKEN_LIFETIME_S));
				if (auth)
				{
					auth->iam = true;
					auth->iam_region = pstrdup(region);
					auth->aws_access_key_id = pstrdup(akid);
					auth->aws_secret_access_key = pstrdup(secret);
					auth->aws_session_token = token ? pstrdup(token) : NULL;
				}
			}
			break;
	}

	if (ca && b->mode != KAFKA_AUTH_NONE && (!AUTH_IS_SASL(b->mode) || tls))
		conf_set(b, "ssl.ca.location", ca, false);
}

/*
 * Build the librdkafka configuration of a consumer for the server and user
 * mapping (which may be NULL) of user userid.  The caller owns the result.
 *
 * auth (may be NULL) receives what lives outside librdkafka's configuration:
 * the MSK IAM credentials, and the secret values error messages must not
 * show.  With entries non-NULL, *entries gets the properties set, in order,
 * as a List of KafkaConfEntry with secrets shown as [redacted].
 *
 * Prefetching is bounded per partition so that a scan over many partitions
 * keeps the backend's memory small; fetch.wait.max.ms is short because a
 * bounded scan never waits for records past the high watermark.  Server
 * options rdkafka.<property> come next and may override these tuning
 * defaults; security settings come last and cannot be overridden (the
 * validator refuses those properties).
 */
rd_kafka_conf_t *
kafka_build_conf(ForeignServer *server, UserMapping *mapping, Oid userid,
				 KafkaAuthConfig *auth, List **entries)
{
	ConfBuilder b;
	const char *mode = server_option(server, "authentication");
	char		buf[32];
	ListCell   *lc;

	memset(&b, 0, sizeof(b));
	b.server = server;
	b.mapping = mapping;
	b.userid = userid;
	b.describe = (entries != NULL);
	b.mode = mode ? parse_auth_mode(mode) : KAFKA_AUTH_NONE;
	if (auth)
		memset(auth, 0, sizeof(*auth));
	b.conf = rd_kafka_conf_new();

	/* servers created before the list was checked are checked here */
	(void) kafka_check_brokers(kafka_server_brokers(server));
	conf_set(&b, "bootstrap.servers", kafka_server_brokers(server), false);
	conf_set(&b, "client.id", "kafka_fdw", false);
	conf_set(&b, "enable.auto.commit", "false", false);
	conf_set(&b, "enable.auto.offset.store", "false", false);
	conf_set(&b, "enable.partition.eof", "true", false);
	conf_set(&b, "isolation.level", "read_committed", false);
	/* records deleted under a scan are an error, never skipped silently */
	conf_set(&b, "auto.offset.reset", "error", false);
	conf_set(&b, "fetch.wait.max.ms", "10", false);
	conf_set(&b, "queued.max.messages.kbytes", "4096", false);
	conf_set(&b, "queued.min.messages", "20000", false);
	conf_set(&b, "reconnect.backoff.ms", "50", false);
	conf_set(&b, "reconnect.backoff.max.ms", "1000", false);
	conf_set(&b, "allow.auto.create.topics", "false", false);
	conf_set(&b, "log.connection.close", "false", false);
	snprintf(buf, sizeof(buf), "%d", Max(kafka_connect_timeout_ms, 1000));
	conf_set(&b, "socket.connection.setup.timeout.ms", buf, false);

	foreach(lc, server->options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strncmp(def->defname, RDKAFKA_PREFIX, strlen(RDKAFKA_PREFIX)) == 0)
			conf_set(&b, def->defname + strlen(RDKAFKA_PREFIX), defGetString(def), false);
	}

	build_auth(&b, auth);

	if (entries)
		*entries = b.entries;
	return b.conf;
}

PG_FUNCTION_INFO_V1(kafka_connection_config);

/*
 * kafka.connection_config(server name) RETURNS TABLE(property text, value text)
 *
 * The librdkafka configuration a handle of this server would get for the
 * current user, built by kafka_build_conf() exactly as for a real handle,
 * with secrets shown as [redacted].  Superusers only: it shows file paths
 * and the brokers of servers the caller may not otherwise see.
 */
Datum
kafka_connection_config(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *servername = NameStr(*PG_GETARG_NAME(0));
	ForeignServer *server;
	UserMapping *mapping;
	List	   *entries = NIL;
	rd_kafka_conf_t *conf;
	ListCell   *lc;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may call kafka.connection_config()")));

	server = GetForeignServerByName(servername, false);
	if (strcmp(GetForeignDataWrapper(server->fdwid)->fdwname, "kafka_fdw") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" does not use the kafka_fdw wrapper", servername)));
	mapping = kafka_find_user_mapping(GetUserId(), server->serverid);

	conf = kafka_build_conf(server, mapping, GetUserId(), NULL, &entries);
	rd_kafka_conf_destroy(conf);

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, entries)
	{
		KafkaConfEntry *e = lfirst(lc);
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(e->property);
		values[1] = CStringGetTextDatum(e->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

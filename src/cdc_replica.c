/*-------------------------------------------------------------------------
 *
 * cdc_replica.c
 *		The SQL functions of change data capture: make a table the replica
 *		of a Debezium topic, make replicas of every table of a captured
 *		database, and apply the new change events.
 *
 * kafka.create_replica(replica, source) adopts an existing table (it must
 * have a primary key: events are applied by it) or creates one from the
 * schema that Debezium's JSON events carry (columns and types from the
 * "after" struct, the primary key from the message key's schema), registers
 * it as a stream of kind 'r' over the Kafka table, and applies the topic's
 * events.  From then on it is a stream like a streaming view: applied by
 * kafka.apply_replica(), kept current by kafka.set_auto_refresh(), shown in
 * kafka.streams and the other monitoring views, rewound by reset_stream().
 *
 * The caller must own the replica (or create it) and be allowed to read the
 * Kafka table: the apply runs as the replica's owner, as a refresh runs as
 * the view's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "cdc.h"

PG_FUNCTION_INFO_V1(kafka_create_replica);
PG_FUNCTION_INFO_V1(kafka_create_replicas);
PG_FUNCTION_INFO_V1(kafka_apply_replica);

/* Run SQL as the current user with a safe search_path (names are qualified). */
static int
pinned_spi_begin(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return nest;
}

static void
pinned_spi_end(int nest)
{
	SPI_finish();
	AtEOXact_GUC(true, nest);
}

static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* The source argument: a kafka_fdw table the user may read. */
static void
check_source(Oid source)
{
	char	   *name = get_rel_name(source);

	if (name == NULL || !kafka_is_kafka_table(source))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a kafka_fdw foreign table", name ? name : "?"),
				 errhint("The source of a replica is the Kafka table of a Debezium topic, as IMPORT FOREIGN SCHEMA creates it.")));
	if (pg_class_aclcheck(source, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FOREIGN_TABLE, name);
}

/*
 * The first event of the topic that has a value, as the user reads it.
 * Returns false if the topic has none.
 */
static bool
first_event(Oid source, char **key, size_t *keylen, char **value, size_t *valuelen)
{
	bool		has_key = get_attnum(source, "kafka_key") != InvalidAttrNumber;
	char	   *sql = psprintf("SELECT %s::pg_catalog.bytea, kafka_value::pg_catalog.bytea FROM ONLY %s "
							   "WHERE kafka_value IS NOT NULL LIMIT 1",
							   has_key ? "kafka_key" : "NULL", qualified_name(source));
	MemoryContext caller = CurrentMemoryContext;
	int			nest = pinned_spi_begin();
	bool		found = false;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read Kafka table: %s", sql);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		k = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		*key = NULL;
		*keylen = 0;
		if (!isnull)
		{
			bytea	   *b = DatumGetByteaPCopy(k);

			*key = VARDATA(b);
			*keylen = VARSIZE(b) - VARHDRSZ;
		}
		{
			bytea	   *b = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 2, &isnull));

			*value = VARDATA(b);
			*valuelen = VARSIZE(b) - VARHDRSZ;
		}
		MemoryContextSwitchTo(old);
		found = true;
	}
	pinned_spi_end(nest);
	return found;
}

/* CREATE TABLE for the replica from the topic's events; returns its OID. */
static Oid
create_replica_table(RangeVar *rv, Oid source)
{
	char	   *key, *value;
	size_t		keylen, valuelen;
	List	   *columns;
	List	   *keys;
	ListCell   *lc;
	StringInfoData sql;
	Oid			nsp = RangeVarGetCreationNamespace(rv);
	char	   *qname = quote_qualified_identifier(get_namespace_name(nsp), rv->relname);

	if (!first_event(source, &key, &keylen, &value, &valuelen))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("topic of Kafka table \"%s\" has no change events to take the replica's columns from",
						get_rel_name(source)),
				 errhint("Create the table %s with its primary key yourself, then call kafka.create_replica() again.", qname)));
	if (!cdc_event_columns(key, keylen, value, valuelen, &columns, &keys))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the change events of Kafka table \"%s\" carry no schema", get_rel_name(source)),
				 errdetail("Without schemas (value.converter.schemas.enable=false) the events do not say the columns' types."),
				 errhint("Create the table %s with its primary key yourself, then call kafka.create_replica() again.", qname)));
	if (keys == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the change events of Kafka table \"%s\" have no key", get_rel_name(source)),
				 errdetail("Debezium writes the primary key as the message key; the source table may have none."),
				 errhint("Create the table %s with a primary key yourself, then call kafka.create_replica() again.", qname)));

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", qname);
	foreach(lc, columns)
	{
		CdcColumnDef *c = lfirst(lc);

		appendStringInfo(&sql, "%s%s %s%s", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(c->name), c->type_sql, c->not_null ? " NOT NULL" : "");
	}
	appendStringInfoString(&sql, ", PRIMARY KEY (");
	foreach(lc, keys)
		appendStringInfo(&sql, "%s%s", foreach_current_index(lc) ? ", " : "",
						 quote_identifier((char *) lfirst(lc)));
	appendStringInfoString(&sql, "))");

	kafka_stream_exec_utility(sql.data, false);
	CommandCounterIncrement();
	return get_relname_relid(rv->relname, nsp);
}

/* An existing table as a replica: the user's, with a primary key, no stream yet. */
static void
check_existing_replica(Oid relid)
{
	char	   *name = get_rel_name(relid);
	KafkaStreamState st;

	if (get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", name),
				 errhint("A replica is an ordinary table (not partitioned, not a view) with a primary key.")));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, name);
	{
		Relation	rel = table_open(relid, AccessShareLock);
		Oid			pk = RelationGetPrimaryKeyIndex(rel);

		table_close(rel, AccessShareLock);
		if (!OidIsValid(pk))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" has no primary key", name),
					 errhint("Change events are applied by primary key: add one with ALTER TABLE ... ADD PRIMARY KEY.")));
	}
	if (kafka_stream_lookup(relid, &st))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already the replica of Kafka table \"%s\"",
						name, get_rel_name(st.ftable_oid)),
				 errhint("Use kafka.reset_stream() to apply its topic again from the start.")));
}

/* create_replica's work; returns the replica's OID. */
static Oid
make_replica(RangeVar *rv, Oid source, bool with_data)
{
	Oid			relid;
	KafkaTableOptions opts;

	check_source(source);
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(relid))
		check_existing_replica(relid);
	else
		relid = create_replica_table(rv, source);
	kafka_get_table_options(source, &opts);
	kafka_stream_register(relid, source, opts.topic, KAFKA_STREAM_REPLICA);
	CommandCounterIncrement();
	if (with_data)
		(void) kafka_refresh_stream(relid, "kafka.create_replica()", false);
	return relid;
}

/*
 * kafka.create_replica(replica text, source regclass, with_data bool) -> regclass
 */
Datum
kafka_create_replica(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	Oid			source = PG_GETARG_OID(1);
	bool		with_data = PG_GETARG_BOOL(2);
	RangeVar   *rv = makeRangeVarFromNameList(textToQualifiedNameList(name));

	kafka_prevent_on_standby("kafka.create_replica()", InvalidOid);
	PreventCommandIfReadOnly("kafka.create_replica()");
	PG_RETURN_OID(make_replica(rv, source, with_data));
}

/*
 * The table's name in a Debezium table topic <prefix>.<db or schema>.<table>
 * (with the prefix given, the rest must be <db or schema>.<table>), or NULL
 * for other topics (internal ones, the schema-change topic <prefix>, ...).
 */
static const char *
debezium_table_name(const char *topic, const char *prefix)
{
	const char *rest = topic;
	const char *dot;

	if (topic[0] == '_')
		return NULL;
	if (prefix)
	{
		size_t		n = strlen(prefix);

		if (strncmp(topic, prefix, n) != 0 || topic[n] != '.')
			return NULL;
		rest = topic + n + 1;
	}
	else if ((rest = strchr(topic, '.')) == NULL)
		return NULL;
	else
		rest++;
	/* rest is <db or schema>.<table>, each part non-empty */
	dot = strrchr(rest, '.');
	if (dot == NULL || dot == rest || dot[1] == '\0' || (prefix && strchr(rest, '.') != dot))
		return NULL;
	return dot + 1;
}

/*
 * kafka.create_replicas(source_schema name, target_schema name, prefix text)
 *		-> SETOF regclass
 * A replica in target_schema for every Kafka table of source_schema whose
 * topic is a Debezium table topic, <prefix>.<database or schema>.<table>
 * (the table's name is the replica's), skipping those that are replicas
 * already and, with a NOTICE, topics without events yet.
 */
Datum
kafka_create_replicas(PG_FUNCTION_ARGS)
{
	char	   *src_schema = NameStr(*PG_GETARG_NAME(0));
	char	   *dst_schema = NameStr(*PG_GETARG_NAME(1));
	char	   *prefix = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Oid			src_nsp = get_namespace_oid(src_schema, false);
	Oid			dst_nsp = get_namespace_oid(dst_schema, false);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *tables = NIL;
	ListCell   *lc;

	kafka_prevent_on_standby("kafka.create_replicas()", InvalidOid);
	PreventCommandIfReadOnly("kafka.create_replicas()");
	if (pg_namespace_aclcheck(src_nsp, GetUserId(), ACL_USAGE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_SCHEMA, src_schema);
	if (pg_namespace_aclcheck(dst_nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_SCHEMA, dst_schema);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	/* the schema's foreign tables, by name */
	{
		MemoryContext caller = CurrentMemoryContext;
		int			nest = pinned_spi_begin();
		Oid			types[1] = {OIDOID};
		Datum		values[1] = {ObjectIdGetDatum(src_nsp)};

		if (SPI_execute_with_args("SELECT c.oid FROM pg_catalog.pg_class c "
								  "WHERE c.relnamespace OPERATOR(pg_catalog.=) $1 "
								  "AND c.relkind OPERATOR(pg_catalog.=) 'f' ORDER BY c.relname",
								  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not list the tables of schema \"%s\"", src_schema);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 1, &isnull));
			MemoryContext old = MemoryContextSwitchTo(caller);

			tables = lappend_oid(tables, oid);
			MemoryContextSwitchTo(old);
		}
		pinned_spi_end(nest);
	}

	foreach(lc, tables)
	{
		Oid			ft = lfirst_oid(lc);
		KafkaTableOptions opts;
		const char *table;
		char	   *k, *v;
		size_t		kl, vl;
		Oid			existing;
		KafkaStreamState st;
		Datum		result;
		bool		isnull = false;

		if (!kafka_is_kafka_table(ft))
			continue;
		kafka_get_table_options(ft, &opts);
		table = debezium_table_name(opts.topic, prefix);
		if (table == NULL)
			continue;
		existing = get_relname_relid(table, dst_nsp);
		if (OidIsValid(existing) && kafka_stream_lookup(existing, &st) && st.ftable_oid == ft)
			continue;			/* made before */
		if (!OidIsValid(existing) && !first_event(ft, &k, &kl, &v, &vl))
		{
			ereport(NOTICE,
					(errmsg("skipping topic \"%s\": it has no change events yet", opts.topic),
					 errhint("Call kafka.create_replicas() again when it has.")));
			continue;
		}
		result = ObjectIdGetDatum(make_replica(makeRangeVar(dst_schema, pstrdup(table), -1), ft, true));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &result, &isnull);
	}
	return (Datum) 0;
}

/*
 * kafka.apply_replica(replica regclass) -> bigint
 *		Apply the change events that arrived since the last apply; returns
 *		the number of events that changed the table.
 */
Datum
kafka_apply_replica(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	KafkaStreamState st;

	kafka_streaming_view_arg(relid, true, &st);
	if (st.kind != KAFKA_STREAM_REPLICA)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a replica table", get_rel_name(relid)),
				 errhint("Refresh a streaming materialized view with REFRESH MATERIALIZED VIEW.")));
	kafka_prevent_on_standby("kafka.apply_replica()", relid);
	PreventCommandIfReadOnly("kafka.apply_replica()");
	PG_RETURN_INT64((int64) kafka_refresh_stream(relid, "kafka.apply_replica()", false));
}

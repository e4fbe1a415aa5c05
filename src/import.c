/*-------------------------------------------------------------------------
 *
 * import.c
 *		IMPORT FOREIGN SCHEMA: one foreign table per Kafka topic.
 *
 * The remote schema name is ignored (Kafka has none).  Tables are named
 * exactly as their topics, case and punctuation kept, and carry the option
 * topic.  Internal topics (names starting with "__") are skipped unless
 * LIMIT TO names them.
 *
 * PostgreSQL runs the returned statements with the importing user's
 * search_path, so every type in them is qualified with pg_catalog: a type or
 * domain named "jsonb" in a schema first on that path is never picked up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "kafka_fdw.h"

/* Is the topic named in the statement's table list? */
static bool
topic_listed(ImportForeignSchemaStmt *stmt, const char *topic)
{
	ListCell   *lc;

	foreach(lc, stmt->table_list)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);

		if (strcmp(rv->relname, topic) == 0)
			return true;
	}
	return false;
}

List *
kafkaImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	KafkaConnection *conn;
	List	   *topics = NIL;
	List	   *commands = NIL;
	ListCell   *lc;

	conn = kafka_connection_acquire(serverOid, GetUserId());
	PG_TRY();
	{
		topics = kafka_list_topics(conn);
	}
	PG_FINALLY();
	{
		kafka_connection_release(conn);
	}
	PG_END_TRY();

	foreach(lc, topics)
	{
		const char *topic = lfirst(lc);
		bool		listed = topic_listed(stmt, topic);
		StringInfoData sql;

		switch (stmt->list_type)
		{
			case FDW_IMPORT_SCHEMA_ALL:
				if (strncmp(topic, "__", 2) == 0)
					continue;
				break;
			case FDW_IMPORT_SCHEMA_LIMIT_TO:
				if (!listed)
					continue;
				break;
			case FDW_IMPORT_SCHEMA_EXCEPT:
				if (listed || strncmp(topic, "__", 2) == 0)
					continue;
				break;
		}

		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "CREATE FOREIGN TABLE %s (\n"
						 "  kafka_partition pg_catalog.int8 NOT NULL,\n"
						 "  kafka_offset pg_catalog.int8 NOT NULL,\n"
						 "  kafka_timestamp_type pg_catalog.bpchar(1) NOT NULL,\n"
						 "  kafka_timestamp pg_catalog.timestamptz,\n"
						 "  kafka_key pg_catalog.bytea,\n"
						 "  kafka_value pg_catalog.bytea,\n"
						 "  kafka_headers pg_catalog.jsonb NOT NULL,\n"
						 "  refresh_time pg_catalog.timestamptz NOT NULL\n"
						 ") SERVER %s OPTIONS (topic %s)",
						 quote_identifier(topic),
						 quote_identifier(server->servername),
						 quote_literal_cstr(topic));
		commands = lappend(commands, sql.data);
	}
	return commands;
}

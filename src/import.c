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
 * A topic name longer than a PostgreSQL identifier (NAMEDATALEN - 1 = 63
 * bytes; Kafka allows 249) cannot be the table name: truncated, two topics
 * sharing their first 63 bytes would collide.  Such a topic's table is named
 * by the first KAFKA_LONG_NAME_PREFIX bytes of the topic, an underscore and
 * the first 8 hex digits of the MD5 of the whole name, so 63 bytes, the same
 * for the same topic on every import (in SQL:
 * left(topic, 54) || '_' || left(md5(topic), 8)).  The option topic keeps
 * the real name.
 *
 * PostgreSQL filters the tables we return by LIMIT TO and EXCEPT against
 * their table names, so both lists name tables, not topics.  A LIMIT TO
 * entry that is a long topic's name (truncated by the parser to 63 bytes)
 * would import nothing and say nothing: it is an error whose hint names the
 * table to ask for instead.
 *
 * PostgreSQL runs the returned statements with the importing user's
 * search_path, so every type in them is qualified with pg_catalog: a type or
 * domain named "jsonb" in a schema first on that path is never picked up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/md5.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "kafka_fdw.h"

/* Bytes of a long topic's name kept in its table name: 54 + "_" + 8 = 63. */
#define KAFKA_LONG_NAME_PREFIX	(NAMEDATALEN - 1 - 9)

/* Long topics named in an error's detail at most. */
#define KAFKA_IMPORT_MAX_NAMED	3

/* The table name of a topic (see the header comment); palloc'd. */
static char *
topic_table_name(const char *topic)
{
	size_t		len = strlen(topic);
	char		md5[MD5_DIGEST_LENGTH * 2 + 1];
	const char *errstr = NULL;
	int			keep;

	if (len < NAMEDATALEN)
		return pstrdup(topic);
	if (!pg_md5_hash(topic, len, md5, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the MD5 of a topic name: %s", errstr)));
	/* Kafka names are ASCII; a multibyte character is never split anyway */
	keep = pg_mbcliplen(topic, (int) len, KAFKA_LONG_NAME_PREFIX);
	return psprintf("%.*s_%.8s", keep, topic, md5);
}

/* Is the table named in the statement's table list? */
static bool
table_listed(ImportForeignSchemaStmt *stmt, const char *table)
{
	ListCell   *lc;

	foreach(lc, stmt->table_list)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);

		if (strcmp(rv->relname, table) == 0)
			return true;
	}
	return false;
}

/*
 * LIMIT TO names a long topic by its (truncated) name, which matches no
 * table: refuse, naming the tables to ask for.  topics are the broker's,
 * sorted.
 */
static void
check_limit_to_long_names(ImportForeignSchemaStmt *stmt, List *topics)
{
	ListCell   *lc;

	foreach(lc, stmt->table_list)
	{
		RangeVar   *rv = lfirst_node(RangeVar, lc);
		StringInfoData tables;
		ListCell   *lt;
		int			n = 0;

		if (strlen(rv->relname) != NAMEDATALEN - 1)
			continue;
		initStringInfo(&tables);
		foreach(lt, topics)
		{
			const char *topic = lfirst(lt);

			if (strlen(topic) < NAMEDATALEN ||
				strncmp(topic, rv->relname, NAMEDATALEN - 1) != 0)
				continue;
			if (++n <= KAFKA_IMPORT_MAX_NAMED)
				appendStringInfo(&tables, "%s%s", n > 1 ? ", " : "",
								 quote_identifier(topic_table_name(topic)));
		}
		if (n == 0)
			continue;
		if (n > KAFKA_IMPORT_MAX_NAMED)
			appendStringInfo(&tables, " and %d more", n - KAFKA_IMPORT_MAX_NAMED);
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("\"%s\" in LIMIT TO is the truncated name of a Kafka topic longer than %d bytes",
						rv->relname, NAMEDATALEN - 1),
				 errdetail("A topic whose name is longer than an identifier is imported as a table named by the first %d bytes of the name, an underscore and the first 8 hex digits of the name's MD5; its option \"topic\" keeps the whole name.",
						   KAFKA_LONG_NAME_PREFIX),
				 n == 1 ?
				 errhint("Name its table in LIMIT TO instead: %s.", tables.data) :
				 errhint("Name the table in LIMIT TO instead, one of: %s.", tables.data)));
	}
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

	if (stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO)
		check_limit_to_long_names(stmt, topics);

	foreach(lc, topics)
	{
		const char *topic = lfirst(lc);
		char	   *table = topic_table_name(topic);
		bool		listed = table_listed(stmt, table);
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
						 quote_identifier(table),
						 quote_identifier(server->servername),
						 quote_literal_cstr(topic));
		commands = lappend(commands, sql.data);
	}
	return commands;
}

-- IMPORT FOREIGN SCHEMA and the external schema helpers.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SERVER imp FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');

-- All topics except internal ones; names kept exactly (dots, upper case).
CREATE SCHEMA imp_all;
IMPORT FOREIGN SCHEMA anything FROM SERVER imp INTO imp_all;
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'imp_all'::regnamespace ORDER BY 1;
\d imp_all."Sales.Orders-2024"
SELECT kafka_key, kafka.json_parse(kafka_value) FROM imp_all."Sales.Orders-2024";
SELECT kafka_key, kafka.json_parse(kafka_value) FROM imp_all."salesdb.salesdb.CUSTOMER";

-- Topics longer than an identifier (63 bytes), here two sharing their first
-- 63 bytes: each table is named by the first 54 bytes, '_' and 8 hex digits
-- of the name's MD5; the option topic keeps the whole name.
SELECT c.relname, ft.ftoptions[1] AS topic,
       c.relname = left(substr(ft.ftoptions[1], 7), 54) || '_' ||
                   left(md5(substr(ft.ftoptions[1], 7)), 8) AS name_is_prefix_and_hash
  FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'imp_all'::regnamespace AND length(ft.ftoptions[1]) > 6 + 63 ORDER BY 1;
SELECT kafka_key, kafka.json_parse(kafka_value)
  FROM imp_all."a.very.long.kafka.topic.name.that.does.not.fit.in.a.po_45e18388";
-- LIMIT TO and EXCEPT name tables; the truncated topic name is refused with a hint
CREATE SCHEMA imp_long;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("a.very.long.kafka.topic.name.that.does.not.fit.in.a.po_45e18388")
  FROM SERVER imp INTO imp_long;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_long'::regnamespace ORDER BY 1;
IMPORT FOREIGN SCHEMA kafka
  LIMIT TO ("a.very.long.kafka.topic.name.that.does.not.fit.in.a.postgresql.identifier.payments")
  FROM SERVER imp INTO imp_long;
IMPORT FOREIGN SCHEMA kafka EXCEPT ("a.very.long.kafka.topic.name.that.does.not.fit.in.a.po_45e18388")
  FROM SERVER imp INTO imp_long;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_long'::regnamespace AND relkind = 'f'
 ORDER BY 1;

-- LIMIT TO may name internal topics; names that are not topics are ignored.
CREATE SCHEMA imp_limit;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("__internal", kt, "salesdb.salesdb.CUSTOMER", nope)
  FROM SERVER imp INTO imp_limit;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_limit'::regnamespace ORDER BY 1;
SELECT count(*) FROM imp_limit."__internal";

-- EXCEPT
CREATE SCHEMA imp_except;
IMPORT FOREIGN SCHEMA kafka EXCEPT (growing, ranges, "Sales.Orders-2024")
  FROM SERVER imp INTO imp_except;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_except'::regnamespace ORDER BY 1;

-- The Redshift-style shorthand, and refreshing it after topics appear
-- (here: a table dropped, as if its topic had been created since).
SELECT kafka.create_external_schema('msk_external_schema', brokers => :'brokers',
                                    authentication => 'none');
SELECT srvname, srvoptions @> ARRAY['authentication=none', 'brokers=' || :'brokers'] AS options_set
  FROM pg_foreign_server WHERE srvname = 'msk_external_schema';
SELECT count(*) FROM pg_user_mappings WHERE srvname = 'msk_external_schema';
SELECT relname FROM pg_class WHERE relnamespace = 'msk_external_schema'::regnamespace ORDER BY 1;
SELECT kafka_partition, count(*) FROM msk_external_schema."kt" GROUP BY 1 ORDER BY 1;
DROP FOREIGN TABLE msk_external_schema.kt, msk_external_schema."Sales.Orders-2024",
  msk_external_schema."a.very.long.kafka.topic.name.that.does.not.fit.in.a.po_45e18388";
SELECT * FROM kafka.refresh_external_schema('msk_external_schema');
SELECT * FROM kafka.refresh_external_schema('msk_external_schema');
SELECT relname FROM pg_class WHERE relnamespace = 'msk_external_schema'::regnamespace ORDER BY 1;

-- errors
\set VERBOSITY terse
SELECT kafka.create_external_schema('msk_external_schema', brokers => :'brokers');
\set VERBOSITY default
SELECT * FROM kafka.refresh_external_schema('no_such_schema');
CREATE SCHEMA not_kafka;
SELECT * FROM kafka.refresh_external_schema('not_kafka');

-- clean up, so that later tests start from an empty public schema
SET client_min_messages = warning;
DROP SCHEMA imp_all, imp_limit, imp_except, imp_long, not_kafka, msk_external_schema CASCADE;
DROP SERVER imp, msk_external_schema CASCADE;
RESET client_min_messages;

-- search_path attacks (issue 10, item 1): a non-superuser with CREATE on a
-- schema plants operators, functions and types there
-- (test/fixtures/search_path_traps.sql), puts the schema first on the
-- search_path, and drives every entry point of the extension.  The
-- extension's internal queries run as its owner (a superuser): none of them
-- may resolve a name through that search_path.  Every planted object calls
-- evil.trap(), which, when it runs as anyone but the attacker, records
-- current_user and session_user and tries to make the attacker a superuser.
SET timezone = 'UTC';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SCHEMA sp;
SET search_path = sp, public;
CREATE ROLE sp_attacker;
CREATE ROLE sp_victim;
CREATE SCHEMA evil AUTHORIZATION sp_attacker;
CREATE SERVER sp_srv FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE ranges (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER sp_srv OPTIONS (topic 'ranges');
GRANT USAGE ON FOREIGN SERVER sp_srv TO sp_attacker, sp_victim;
GRANT SELECT ON ranges TO sp_attacker, sp_victim;
GRANT USAGE, CREATE ON SCHEMA sp TO sp_attacker, sp_victim;
-- for kafka.create_external_schema (a server, a schema)
GRANT USAGE ON FOREIGN DATA WRAPPER kafka_fdw TO sp_attacker;
DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO sp_attacker', current_database()); END$$;

-- The victim's views: a streaming one and a plain one.
SET ROLE sp_victim;
CREATE MATERIALIZED VIEW victim_mv AS SELECT kafka_partition, kafka_offset FROM ranges;
CREATE MATERIALIZED VIEW victim_plain AS SELECT 1 AS x;
RESET ROLE;

-- The attacker's traps (see the file for what each does).
SET ROLE sp_attacker;
\i test/fixtures/search_path_traps.sql
SET search_path = evil, pg_catalog;

-- The traps work: an unqualified = on oids is the planted one.
SET ROLE sp_victim;
SELECT 1::oid = 1::oid AS planted_operator_used;
RESET ROLE;
SET search_path = sp, public;
SELECT who, sess, what FROM evil.ran;
DELETE FROM evil.ran;
SET ROLE sp_attacker;
SET search_path = evil, pg_catalog;

-- CREATE MATERIALIZED VIEW: streaming (with and without data) and plain.
CREATE MATERIALIZED VIEW sp.mal_mv AS SELECT kafka_partition, kafka_offset FROM sp.ranges;
CREATE UNIQUE INDEX ON sp.mal_mv (kafka_partition, kafka_offset);
CREATE MATERIALIZED VIEW sp.mal_later AS SELECT kafka_offset FROM sp.ranges WITH NO DATA;
CREATE MATERIALIZED VIEW sp.mal_plain AS SELECT 1 AS x;

-- REFRESH of one's own views: streaming, WITH NO DATA, CONCURRENTLY, plain.
REFRESH MATERIALIZED VIEW sp.mal_mv;
REFRESH MATERIALIZED VIEW CONCURRENTLY sp.mal_mv;
REFRESH MATERIALIZED VIEW sp.mal_later;
REFRESH MATERIALIZED VIEW sp.mal_later WITH NO DATA;
REFRESH MATERIALIZED VIEW sp.mal_plain;
SELECT count(*) FROM sp.mal_mv;

-- REFRESH of someone else's: PostgreSQL's ownership error, before any lookup.
REFRESH MATERIALIZED VIEW sp.victim_mv;
REFRESH MATERIALIZED VIEW sp.victim_mv WITH NO DATA;
REFRESH MATERIALIZED VIEW sp.victim_plain;
REFRESH MATERIALIZED VIEW sp.no_such_view;

-- Every kafka.* function.
SELECT kafka.json_parse('{"a": 1}'::bytea), kafka.can_json_parse('x'::bytea),
       kafka.from_varbyte('ab'::bytea, 'hex'),
       kafka.header('[{"key": "k", "value": "v"}]', 'k'),
       kafka.header_bytes('[{"key": "k", "value": "v"}]', 'k');
SELECT kafka.reset_stream('sp.mal_mv', 'latest');
SELECT kafka.reset_stream('sp.mal_mv');
SELECT kafka.reset_stream('sp.victim_mv');
SELECT kafka.reset_stream('sp.victim_plain');
SELECT kafka.set_auto_refresh('sp.mal_mv', false);
SELECT kafka.set_auto_refresh('sp.victim_mv', false);
SELECT partition_id, next_offset, high_watermark, lag FROM kafka.stream_lag('sp.mal_mv') ORDER BY 1;
SELECT * FROM kafka.stream_lag('sp.victim_mv');
SELECT mv_name, partition_id, lag, error FROM kafka.stream_lag ORDER BY 1, 2;
SELECT mv_name, topic, last_refresh_status FROM kafka.streams ORDER BY 1;
SELECT mv_name, count(*) FROM kafka.stream_scan_states GROUP BY 1 ORDER BY 1;
SELECT count(*) FROM kafka.stream_scan_errors;
SELECT * FROM kafka.connection_config('sp_srv');
SELECT kafka.create_external_schema('sp_ext', brokers => :'brokers');
SELECT * FROM kafka.refresh_external_schema('sp_ext');
RESET ROLE;
SET search_path = sp, public;
-- The imported columns have pg_catalog's types, not the planted ones.
SELECT DISTINCT t.typnamespace::regnamespace AS type_schema
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
 WHERE c.relnamespace = 'sp_ext'::regnamespace AND a.attnum > 0;
SET ROLE sp_attacker;
SET search_path = evil, pg_catalog;

-- DROP of a streaming view: the event trigger forgets its state.
DROP MATERIALIZED VIEW sp.mal_later;
RESET ROLE;
SET search_path = sp, public;
SELECT count(*) AS state_of_dropped FROM kafka.stream_state s
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = s.mv_oid);

-- Nothing planted ever ran as another role, and the attacker is no superuser.
SELECT who, sess, what FROM evil.ran;
SELECT rolsuper FROM pg_roles WHERE rolname = 'sp_attacker';
-- The victim's views were left alone.
SELECT count(*) FROM victim_mv;
SELECT last_refresh_rows, total_rows FROM kafka.streams WHERE mv_name = 'victim_mv'::regclass;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA sp_ext CASCADE;
DROP SERVER sp_ext CASCADE;
DROP SCHEMA sp CASCADE;
DROP SCHEMA evil CASCADE;
DROP SERVER sp_srv CASCADE;
DROP OWNED BY sp_attacker, sp_victim;
DROP ROLE sp_attacker, sp_victim;
RESET client_min_messages;
SELECT count(*) AS remaining_streams FROM kafka.stream_state;

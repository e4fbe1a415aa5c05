-- Who sees what (issue 10, items 4, 6 and 7): the monitoring views show only
-- the rows of streaming views the user may read (owner's privileges, SELECT,
-- superuser); kafka.stream_lag(view) needs SELECT; the helpers and views are
-- usable by everyone without a grant; kafka.stream_lag reports a view whose
-- cluster is down or whose topic is missing instead of failing.
SET timezone = 'UTC';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
SELECT current_setting('kafka_test.unreachable') AS unreachable \gset
CREATE ROLE mon_owner;
CREATE ROLE mon_reader;
CREATE ROLE mon_member IN ROLE mon_owner;
CREATE ROLE mon_nobody;
CREATE SCHEMA hr AUTHORIZATION mon_owner;
CREATE SERVER mon_srv FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
GRANT USAGE ON FOREIGN SERVER mon_srv TO mon_owner;
CREATE FOREIGN TABLE hr.kt_json (kafka_partition bigint, kafka_offset bigint, kafka_value jsonb)
  SERVER mon_srv OPTIONS (topic 'kt');
ALTER FOREIGN TABLE hr.kt_json OWNER TO mon_owner;

-- The owner's streaming view skips the records that are not JSON and logs
-- their first bytes.
SET ROLE mon_owner;
CREATE MATERIALIZED VIEW hr.secret_mv AS SELECT * FROM hr.kt_json;
SELECT count(*) AS skipped_logged FROM kafka.stream_scan_errors WHERE mv_name = 'hr.secret_mv';
SELECT count(*) AS scans FROM kafka.stream_scan_states WHERE mv_name = 'hr.secret_mv';
SELECT mv_name, topic, total_rows FROM kafka.streams;
SELECT mv_name, count(*) AS partitions FROM kafka.stream_lag GROUP BY 1;
SELECT count(*) AS partitions FROM kafka.stream_lag('hr.secret_mv');
RESET ROLE;
SELECT 'hr.secret_mv'::regclass::oid AS secret_oid \gset

-- A user with no rights on the view sees none of its rows, and no helper or
-- view needs a grant on schema kafka.
SET ROLE mon_nobody;
SELECT kafka.json_parse('{"ok": true}'), kafka.from_varbyte('\x6869', 'utf8');
SELECT count(*) FROM kafka.stream_scan_errors;
SELECT count(*) FROM kafka.stream_scan_states;
SELECT count(*) FROM kafka.streams;
SELECT count(*) FROM kafka.stream_lag;
SELECT * FROM kafka.stream_lag(:secret_oid);
SELECT kafka.reset_stream(:secret_oid);
SELECT kafka.set_auto_refresh(:secret_oid, false);
-- A leaky function in the WHERE clause sees no filtered row (security_barrier).
CREATE FUNCTION pg_temp.leak(x anyelement) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
  $$BEGIN RAISE NOTICE 'leaked: %', x; RETURN true; END$$;
SELECT count(*) FROM kafka.stream_scan_errors WHERE pg_temp.leak(value_prefix);
SELECT count(*) FROM kafka.stream_scan_states WHERE pg_temp.leak(mv_name);
SELECT count(*) FROM kafka.streams WHERE pg_temp.leak(last_refresh_status);
SELECT count(*) FROM kafka.stream_lag WHERE pg_temp.leak(topic);
-- The state tables stay closed.
SELECT count(*) FROM kafka.stream_error_log;
RESET ROLE;

-- With SELECT on the view, a user sees its rows and its lag; a member of the
-- owner's role sees them too.
GRANT USAGE ON SCHEMA hr TO mon_reader;
GRANT SELECT ON hr.secret_mv TO mon_reader;
SET ROLE mon_reader;
SELECT mv_name, partition_id, position, error_code, value_prefix
  FROM kafka.stream_scan_errors ORDER BY partition_id, position;
SELECT count(*) AS scans FROM kafka.stream_scan_states;
SELECT mv_name, total_rows FROM kafka.streams;
SELECT mv_name, partition_id, next_offset, high_watermark, lag, error FROM kafka.stream_lag ORDER BY 2;
SELECT * FROM kafka.stream_lag('hr.secret_mv') ORDER BY 1;
-- SELECT is not ownership.
SELECT kafka.reset_stream('hr.secret_mv');
RESET ROLE;
SET ROLE mon_member;
SELECT count(*) FROM kafka.stream_scan_errors;
SELECT count(*) FROM kafka.streams;
RESET ROLE;
REVOKE SELECT ON hr.secret_mv FROM mon_reader;
SET ROLE mon_reader;
SELECT count(*) FROM kafka.stream_scan_errors;
SELECT * FROM kafka.stream_lag('hr.secret_mv');
RESET ROLE;
-- Superusers see everything.
SELECT count(*) > 0 AS superuser_sees FROM kafka.stream_scan_errors WHERE mv_name = 'hr.secret_mv';

-- The monitoring views are security barriers.
SELECT c.relname, c.reloptions FROM pg_class c
 WHERE c.relnamespace = 'kafka'::regnamespace AND c.relkind = 'v' ORDER BY 1;

-- kafka.stream_lag: a view whose cluster is down or whose topic is missing
-- gets one row with the reason; the others are reported as usual.  An
-- unreachable cluster is asked once per query, not once per view.
SET kafka_fdw.connect_timeout = '1s';
CREATE SERVER mon_dead FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'unreachable');
CREATE FOREIGN TABLE hr.dead_t (kafka_offset bigint) SERVER mon_dead OPTIONS (topic 'kt');
CREATE FOREIGN TABLE hr.gone_t (kafka_offset bigint) SERVER mon_srv OPTIONS (topic 'mon_no_such_topic');
CREATE MATERIALIZED VIEW hr.dead1_mv AS SELECT * FROM hr.dead_t WITH NO DATA;
CREATE MATERIALIZED VIEW hr.dead2_mv AS SELECT * FROM hr.dead_t WITH NO DATA;
CREATE MATERIALIZED VIEW hr.dead3_mv AS SELECT * FROM hr.dead_t WITH NO DATA;
CREATE MATERIALIZED VIEW hr.gone_mv AS SELECT * FROM hr.gone_t WITH NO DATA;
SELECT clock_timestamp() AS started \gset
SELECT mv_name, topic, partition_id, next_offset, high_watermark, lag, error
  FROM kafka.stream_lag ORDER BY mv_name::text, partition_id;
SELECT clock_timestamp() - :'started'::timestamptz < interval '2.5 s' AS one_timeout_for_three_views;
-- kafka.stream_lag(view) still raises the error.
\set VERBOSITY terse
SELECT * FROM kafka.stream_lag('hr.gone_mv');
\set VERBOSITY default
RESET kafka_fdw.connect_timeout;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA hr CASCADE;
DROP SERVER mon_srv, mon_dead CASCADE;
DROP OWNED BY mon_owner, mon_reader, mon_member, mon_nobody;
DROP ROLE mon_owner, mon_reader, mon_member, mon_nobody;
RESET client_min_messages;
SELECT count(*) AS remaining_streams FROM kafka.stream_state;

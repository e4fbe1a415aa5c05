-- Aggregating streaming views over topic ranges (400 records, 4 partitions
-- of 100; see test/fixtures/regress.txt): count, sum, avg, min, max by group,
-- equal to the same query over the Kafka table.  Incremental refreshes,
-- faults and parallel plans are covered by test/t/049_stream_aggregate.sh.
SET timezone = 'UTC';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SCHEMA aggregating;
SET search_path = aggregating, public;
CREATE SERVER sa FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE ranges (
  kafka_partition int, kafka_offset bigint, kafka_timestamp timestamptz, kafka_value bytea
) SERVER sa OPTIONS (topic 'ranges');

-- By two group expressions (NULL keys included), every supported aggregate.
CREATE MATERIALIZED VIEW per_state AS
SELECT kafka.json_parse(kafka_value)->>'state' AS state,
       CASE WHEN kafka_offset % 10 = 0 THEN NULL ELSE kafka_partition END AS part,
       count(*) AS n, count(NULLIF(kafka_offset % 3, 0)) AS n_not3,
       sum(kafka_offset) AS sum_offset, sum(kafka_partition) AS sum_part,
       sum(kafka_offset::numeric / 7) AS sum_num,
       avg(kafka_offset) AS avg_offset, avg(kafka_partition) AS avg_part,
       avg(kafka_offset::float8) AS avg_float, avg(kafka_offset * interval '1 second') AS avg_iv,
       min(kafka_offset) AS lo, max(kafka.json_parse(kafka_value)->>'id') AS max_id,
       min(kafka_timestamp) AS first_time,
       count(*) FILTER (WHERE kafka_offset < 50) AS n_early
  FROM ranges
 WHERE kafka_offset <> 7
 GROUP BY 1, 2;
\d per_state
SELECT mv_name, topic, last_refresh_rows, total_rows FROM kafka.streams;
-- equal, as text, to the query over the table
CREATE VIEW per_state_q AS
SELECT kafka.json_parse(kafka_value)->>'state' AS state,
       CASE WHEN kafka_offset % 10 = 0 THEN NULL ELSE kafka_partition END AS part,
       count(*) AS n, count(NULLIF(kafka_offset % 3, 0)) AS n_not3,
       sum(kafka_offset) AS sum_offset, sum(kafka_partition) AS sum_part,
       sum(kafka_offset::numeric / 7) AS sum_num,
       avg(kafka_offset) AS avg_offset, avg(kafka_partition) AS avg_part,
       avg(kafka_offset::float8) AS avg_float, avg(kafka_offset * interval '1 second') AS avg_iv,
       min(kafka_offset) AS lo, max(kafka.json_parse(kafka_value)->>'id') AS max_id,
       min(kafka_timestamp) AS first_time,
       count(*) FILTER (WHERE kafka_offset < 50) AS n_early
  FROM ranges
 WHERE kafka_offset <> 7
 GROUP BY 1, 2;
SELECT count(*) AS groups,
       (SELECT count(*) FROM (SELECT t::text FROM per_state t EXCEPT ALL SELECT t::text FROM per_state_q t) d) AS only_view,
       (SELECT count(*) FROM (SELECT t::text FROM per_state_q t EXCEPT ALL SELECT t::text FROM per_state t) d) AS only_query
  FROM per_state;
SELECT * FROM per_state WHERE part IS NULL ORDER BY state NULLS FIRST LIMIT 2;
-- a refresh with nothing new changes nothing; reset_stream recomputes
REFRESH MATERIALIZED VIEW per_state;
SELECT last_refresh_rows, total_rows FROM kafka.streams WHERE mv_name = 'per_state'::regclass;
SELECT kafka.reset_stream('per_state');
SELECT (SELECT count(*) FROM (SELECT t::text FROM per_state t EXCEPT ALL SELECT t::text FROM per_state_q t) d) AS only_view,
       (SELECT count(*) FROM (SELECT t::text FROM per_state_q t EXCEPT ALL SELECT t::text FROM per_state t) d) AS only_query;
REFRESH MATERIALIZED VIEW per_state WITH NO DATA;
REFRESH MATERIALIZED VIEW per_state;
SELECT (SELECT count(*) FROM (SELECT t::text FROM per_state t EXCEPT ALL SELECT t::text FROM per_state_q t) d) AS only_view,
       (SELECT count(*) FROM (SELECT t::text FROM per_state_q t EXCEPT ALL SELECT t::text FROM per_state t) d) AS only_query;

-- Without GROUP BY: one row, also over no record at all.
CREATE MATERIALIZED VIEW totals AS
SELECT count(*) AS n, sum(kafka_offset) AS s, avg(kafka_offset) AS a, max(kafka_timestamp) AS last_time
  FROM ranges WHERE kafka_partition = 2;
SELECT * FROM totals;
CREATE MATERIALIZED VIEW nothing AS SELECT count(*) AS n, sum(kafka_offset) AS s, avg(kafka_offset) AS a FROM ranges WHERE false;
SELECT * FROM nothing;

-- The group index is the view's; without it a refresh says what to do.
SELECT indexrelid::regclass, indisunique, indnullsnotdistinct FROM pg_index WHERE indrelid = 'per_state'::regclass;
DROP INDEX per_state_state_part_idx;
REFRESH MATERIALIZED VIEW per_state;
CREATE UNIQUE INDEX ON per_state (part, state) NULLS NOT DISTINCT;
REFRESH MATERIALIZED VIEW per_state;

-- What cannot be maintained incrementally is rejected, with a hint.
\set VERBOSITY default
CREATE MATERIALIZED VIEW bad AS SELECT string_agg(kafka_offset::text, ',') FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT count(DISTINCT kafka_partition) FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY kafka_offset) FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, count(*) FROM ranges GROUP BY 1 HAVING count(*) > 1;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, count(*), rank() OVER (ORDER BY count(*)) FROM ranges GROUP BY 1;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, count(*) FROM ranges GROUP BY ROLLUP (kafka_partition);
CREATE MATERIALIZED VIEW bad AS SELECT sum(kafka_offset) / count(*) FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT count(*) FROM ranges GROUP BY kafka_partition;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, 1 AS one, count(*) FROM ranges GROUP BY 1;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, count(*) FROM ranges GROUP BY 1 ORDER BY 1;
CREATE MATERIALIZED VIEW bad AS SELECT array_agg(kafka_offset ORDER BY kafka_offset) FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT bool_and(kafka_offset > 0) FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT a.kafka_partition, count(*) FROM ranges a JOIN ranges b USING (kafka_offset) GROUP BY 1;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition FROM ranges GROUP BY 1;
\set VERBOSITY terse

-- DROP removes the state table of avg with the view.
SELECT count(*) FROM pg_class WHERE relname = 'aggregate_state_' || 'totals'::regclass::oid;
DROP MATERIALIZED VIEW totals;
SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE 'aggregate\_state\_%' AND relname NOT IN
  (SELECT 'aggregate_state_' || mv_name::oid FROM kafka.streams);
-- A refresh evaluates json_parse(v)->>'k' through kafka._json_field_text only
-- when the view's owner may execute it, json_parse and jsonb_object_field_text;
-- otherwise the executor checks the functions the view names, as before.  A
-- view that calls nothing from schema kafka needs no USAGE on it.
CREATE ROLE agg_owner;
GRANT USAGE ON SCHEMA aggregating TO agg_owner;
GRANT CREATE ON SCHEMA aggregating TO agg_owner;
GRANT SELECT ON ranges TO agg_owner;
SET ROLE agg_owner;
CREATE MATERIALIZED VIEW owned_states AS
SELECT kafka_offset, kafka.json_parse(kafka_value)->>'state' AS state FROM ranges;
SELECT count(*), count(state), count(DISTINCT state) FROM owned_states;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION kafka._json_field_text(bytea, text) FROM PUBLIC;
SET ROLE agg_owner;
REFRESH MATERIALIZED VIEW owned_states WITH NO DATA;
REFRESH MATERIALIZED VIEW owned_states;
SELECT count(*), count(state), count(DISTINCT state) FROM owned_states;
RESET ROLE;
GRANT EXECUTE ON FUNCTION kafka._json_field_text(bytea, text) TO PUBLIC;
REVOKE EXECUTE ON FUNCTION kafka.json_parse(bytea) FROM PUBLIC;
SET ROLE agg_owner;
REFRESH MATERIALIZED VIEW owned_states WITH NO DATA;
REFRESH MATERIALIZED VIEW owned_states;
RESET ROLE;
GRANT EXECUTE ON FUNCTION kafka.json_parse(bytea) TO PUBLIC;
REVOKE USAGE ON SCHEMA kafka FROM PUBLIC;
SET ROLE agg_owner;
CREATE MATERIALIZED VIEW owned_plain AS SELECT kafka_offset FROM ranges;
REFRESH MATERIALIZED VIEW owned_plain;
SELECT count(*) FROM owned_plain;
RESET ROLE;
GRANT USAGE ON SCHEMA kafka TO PUBLIC;
DROP MATERIALIZED VIEW owned_states, owned_plain;
REVOKE ALL ON SCHEMA aggregating FROM agg_owner;
REVOKE ALL ON ranges FROM agg_owner;
DROP ROLE agg_owner;
DROP SCHEMA aggregating CASCADE;

-- Parallel scans: Gather over a Parallel Foreign Scan when it pays, row for
-- row the results of a serial scan, and streaming refreshes with parallel
-- plans.  Topics ranges (4 partitions of 100 records; record i in partition
-- i % 4 at offset i / 4, timestamp 1700000000000 + i ms) and kt (see
-- test/fixtures/regress.txt).
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SCHEMA par;
SET search_path = par, public;
CREATE SERVER par_srv FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE ranges (
  kafka_partition bigint, kafka_offset bigint, kafka_timestamp_type char(1),
  kafka_timestamp timestamptz, kafka_key bytea, kafka_value bytea,
  kafka_headers jsonb, refresh_time timestamptz
) SERVER par_srv OPTIONS (topic 'ranges');
CREATE FOREIGN TABLE kt (
  kafka_partition bigint, kafka_offset bigint, kafka_key bytea, kafka_value jsonb
) SERVER par_srv OPTIONS (topic 'kt');

-- With the default costs a small topic is scanned serially, also when the
-- target is expensive.
EXPLAIN (COSTS OFF) SELECT count(*) FROM ranges;
EXPLAIN (COSTS OFF) SELECT sum((kafka.json_parse(kafka_value)->>'id')::bigint) FROM ranges;

-- From here on parallel plans are forced (when max_parallel_workers_per_gather
-- allows them).
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;

-- The rows of a query, in its order, with parallel plans allowed or not.
CREATE FUNCTION rows_of(q text, parallel bool) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.set_config('max_parallel_workers_per_gather',
                                CASE WHEN parallel THEN '2' ELSE '0' END, true);
  RETURN QUERY EXECUTE pg_catalog.format('SELECT t::text FROM (%s) t', q);
END $$;
-- Serial and parallel results compared row for row.
CREATE FUNCTION same_rows(q text, OUT nrows int, OUT same boolean) LANGUAGE plpgsql AS $$
DECLARE
  s text[] := ARRAY(SELECT rows_of(q, false));
  p text[] := ARRAY(SELECT rows_of(q, true));
BEGIN
  nrows := cardinality(s);
  same := s IS NOT DISTINCT FROM p;
END $$;
-- The backend that evaluates it: a worker when it runs below a Gather.
-- (PL/pgSQL, so that it is not inlined into the parallel-restricted
-- pg_backend_pid().)
CREATE FUNCTION reader_pid() RETURNS int LANGUAGE plpgsql PARALLEL SAFE
  AS 'BEGIN RETURN pg_catalog.pg_backend_pid(); END';
-- The Parallel Foreign Scan node of EXPLAIN (ANALYZE, FORMAT JSON) q.
CREATE FUNCTION analyzed_scan(q text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE j jsonb;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO j;
  RETURN jsonb_path_query_first(j, '$.** ? (@."Node Type" == "Foreign Scan" && @."Parallel Aware" == true)');
END $$;
-- What the participants of that scan read adds up to the total.
CREATE FUNCTION participants_add_up(q text, OUT records bigint, OUT ranges int,
                                    OUT participants_sum bigint, OUT same boolean)
LANGUAGE plpgsql AS $$
DECLARE n jsonb := analyzed_scan(q);
BEGIN
  records := n->>'Kafka Records';
  ranges := n->>'Kafka Ranges';
  SELECT sum((p->>'Kafka Records')::bigint) INTO participants_sum
    FROM jsonb_array_elements(n->'Kafka Participants') p;
  same := records = participants_sum;
END $$;

-- Plans: Gather over Parallel Foreign Scan, the conditions still pushed down.
EXPLAIN (COSTS OFF) SELECT * FROM ranges;
EXPLAIN (COSTS OFF) SELECT kafka_partition, count(*) FROM ranges GROUP BY 1;
EXPLAIN (COSTS OFF)
SELECT count(*), sum((kafka.json_parse(kafka_value)->>'id')::bigint) FROM ranges;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT kafka_offset FROM ranges WHERE kafka_partition IN (1, 2) AND kafka_offset >= 90;
-- and serial with no workers allowed
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT * FROM ranges;
SET max_parallel_workers_per_gather = 2;

-- Full scans: every column, row for row.
SELECT * FROM same_rows($$SELECT * FROM ranges ORDER BY kafka_partition, kafka_offset$$);
SELECT kafka_partition, count(*), sum(kafka_offset), min(kafka_timestamp), max(kafka_timestamp),
       sum(length(kafka_value)), sum((kafka.json_parse(kafka_value)->>'id')::bigint)
  FROM ranges GROUP BY 1 ORDER BY 1;
SELECT * FROM same_rows($$
  SELECT kafka_partition, count(*), sum(kafka_offset), min(kafka_timestamp), max(kafka_timestamp),
         sum(length(kafka_value)), sum((kafka.json_parse(kafka_value)->>'id')::bigint)
    FROM ranges GROUP BY 1 ORDER BY 1$$);
SELECT * FROM same_rows($$SELECT count(*), sum((kafka.json_parse(kafka_value)->>'id')::bigint) FROM ranges$$);

-- Pushed-down slices.
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset, kafka_key FROM ranges
                          WHERE kafka_partition = 2 ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_partition IN (3, 1) ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_offset >= 95 ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_offset < 5 ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_partition = 0 AND kafka_offset BETWEEN 10 AND 19 ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset, kafka_timestamp FROM ranges
                          WHERE kafka_timestamp >= '2023-11-14 22:13:20.390+00' ORDER BY 1, 2$$);
SELECT * FROM same_rows($$SELECT * FROM ranges WHERE kafka_partition = 1 AND kafka_partition = 2$$);
SELECT * FROM same_rows($$SELECT * FROM ranges WHERE kafka_offset >= 1000$$);
SELECT * FROM same_rows($$SELECT * FROM ranges WHERE kafka_partition = 7$$);

-- Large partitions cut into ranges (here of 7 records: 15 per partition),
-- read by several participants, each range from the middle of a partition.
SET kafka_fdw.parallel_range_size = 7;
SELECT * FROM same_rows($$SELECT * FROM ranges ORDER BY kafka_partition, kafka_offset$$);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_offset >= 20 AND kafka_offset < 61 ORDER BY 1, 2$$);
SELECT * FROM participants_add_up('SELECT count(*) FROM ranges');
SELECT * FROM participants_add_up('SELECT count(*) FROM ranges WHERE kafka_offset >= 20 AND kafka_offset < 61');
-- EXPLAIN ANALYZE shows the records each participant read
SELECT jsonb_path_query(analyzed_scan('SELECT count(*) FROM ranges'),
                        '$."Kafka Participants"[*].keyvalue().key') AS key
 GROUP BY 1 ORDER BY 1;

-- The workers read the records: without the leader's participation every
-- row was formed in a worker.
SET parallel_leader_participation = off;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT count(*), bool_and(pid <> pg_backend_pid()) AS all_in_workers
  FROM (SELECT reader_pid() AS pid FROM ranges) s;
SELECT count(*), bool_and(pid <> pg_backend_pid()) AS all_in_workers
  FROM (SELECT reader_pid() AS pid FROM ranges) s;
SELECT * FROM same_rows($$SELECT * FROM ranges ORDER BY kafka_partition, kafka_offset$$);
SELECT * FROM participants_add_up('SELECT count(*) FROM ranges');
RESET parallel_leader_participation;

-- Run-time values: an init plan's result and a generic plan's parameter.
EXPLAIN (COSTS OFF) SELECT count(*) FROM ranges WHERE kafka_offset >= (SELECT 95);
SELECT * FROM same_rows($$SELECT kafka_partition, kafka_offset FROM ranges
                          WHERE kafka_offset >= (SELECT 95) ORDER BY 1, 2$$);
SET plan_cache_mode = force_generic_plan;
PREPARE by_partition(int) AS SELECT count(*), min(kafka_offset), max(kafka_offset)
  FROM ranges WHERE kafka_partition = $1 AND kafka_offset >= $1 * 10;
EXPLAIN (COSTS OFF) EXECUTE by_partition(2);
EXECUTE by_partition(2);
EXECUTE by_partition(3);
EXECUTE by_partition(9);
DEALLOCATE by_partition;
RESET plan_cache_mode;

-- Rescans: the Gather on the inner side of a nested loop runs once per
-- outer row; each run captures the watermarks and shares the work anew.
CREATE FUNCTION restricted_id(int) RETURNS int LANGUAGE plpgsql PARALLEL RESTRICTED
  AS 'BEGIN RETURN $1; END';
SET enable_material = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF)
SELECT g, r.kafka_partition, r.kafka_offset
  FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 3) g) v
  JOIN ranges r ON r.kafka_offset = v.g + 97;
SELECT * FROM same_rows($$
  SELECT g, r.kafka_partition, r.kafka_offset
    FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 3) g) v
    JOIN ranges r ON r.kafka_offset = v.g + 97 ORDER BY 1, 2, 3$$);
SELECT * FROM same_rows($$
  SELECT g, count(*), sum(r.kafka_offset)
    FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 4) g) v
    JOIN ranges r ON r.kafka_partition = v.g GROUP BY 1 ORDER BY 1$$);
-- Early ends: a semi or anti join stops reading the inner Gather at the
-- first match, with ranges (cut to 7 records) still being read and claimed;
-- the next outer row rescans it.  Then a LIMIT above a Gather, and full
-- scans on the same connection afterwards.
EXPLAIN (COSTS OFF)
SELECT g FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 9) g) v
 WHERE EXISTS (SELECT 1 FROM ranges r WHERE r.kafka_offset >= v.g * 11 AND r.kafka_partition = v.g % 5);
SELECT * FROM same_rows($$
  SELECT g FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 9) g) v
   WHERE EXISTS (SELECT 1 FROM ranges r WHERE r.kafka_offset >= v.g * 11
                                           AND r.kafka_partition = v.g % 5) ORDER BY 1$$);
SELECT * FROM same_rows($$
  SELECT g FROM (SELECT restricted_id(g) AS g FROM generate_series(0, 9) g) v
   WHERE NOT EXISTS (SELECT 1 FROM ranges r WHERE r.kafka_offset >= v.g * 11
                                               AND r.kafka_partition = v.g % 5) ORDER BY 1$$);
SELECT count(*) FROM (SELECT kafka_offset FROM ranges LIMIT 5) s;
SELECT * FROM same_rows($$SELECT * FROM ranges ORDER BY kafka_partition, kafka_offset$$);
SELECT * FROM participants_add_up('SELECT count(*) FROM ranges');
RESET enable_material;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET kafka_fdw.parallel_range_size;

-- Records that cannot be converted: the same rows, and one warning per scan
-- (the leader's, naming the lowest skipped record), not one per worker.
EXPLAIN (COSTS OFF) SELECT * FROM kt;
SELECT * FROM same_rows($$SELECT * FROM kt ORDER BY 1, 2$$);
-- on_error 'fail': an error in a worker fails the query
ALTER FOREIGN TABLE kt OPTIONS (ADD on_error 'fail');
SET parallel_leader_participation = off;
\set VERBOSITY terse
SELECT * FROM kt WHERE kafka_partition = 1 AND kafka_offset >= 2;
SET max_parallel_workers_per_gather = 0;
SELECT * FROM kt WHERE kafka_partition = 1 AND kafka_offset >= 2;
\set VERBOSITY default
SET max_parallel_workers_per_gather = 2;
RESET parallel_leader_participation;
ALTER FOREIGN TABLE kt OPTIONS (DROP on_error);

-- Streaming refreshes with parallel plans: the leader decides the ranges
-- and stores the offsets; the workers read, and what they counted and
-- skipped reaches the scan log.  A twin view refreshed serially must end up
-- identical.
SET parallel_leader_participation = off;
SET kafka_fdw.parallel_range_size = 7;
CREATE MATERIALIZED VIEW mv_par AS
SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
       kafka.json_parse(kafka_value) AS data, kafka_headers, refresh_time, reader_pid() AS pid
  FROM ranges WHERE kafka_offset >= 50;
SET max_parallel_workers_per_gather = 0;
CREATE MATERIALIZED VIEW mv_ser AS
SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
       kafka.json_parse(kafka_value) AS data, kafka_headers, refresh_time, reader_pid() AS pid
  FROM ranges WHERE kafka_offset >= 50;
SET max_parallel_workers_per_gather = 2;
-- the view's query, as the refresh plans it
EXPLAIN (COSTS OFF)
SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
       kafka.json_parse(kafka_value) AS data, kafka_headers, refresh_time, reader_pid() AS pid
  FROM ranges WHERE kafka_offset >= 50;
SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)),
       bool_and(pid <> pg_backend_pid()) AS all_in_workers FROM mv_par;
SELECT bool_and(pid = pg_backend_pid()) AS all_in_leader FROM mv_ser;
CREATE VIEW mv_diff AS
SELECT 'only parallel' AS side, * FROM
  (SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
          data, kafka_headers FROM mv_par
   EXCEPT ALL
   SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
          data, kafka_headers FROM mv_ser) a
UNION ALL
SELECT 'only serial', * FROM
  (SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
          data, kafka_headers FROM mv_ser
   EXCEPT ALL
   SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
          data, kafka_headers FROM mv_par) b;
SELECT count(*) AS differences FROM mv_diff;
-- the scan log and the offsets: the same for both views
CREATE VIEW states AS
SELECT split_part(mv_name, '.', 2) AS mv, partition_id, start_position, latest_position,
       scanned_rows, skipped_rows, scanned_bytes, stream_record_time_min, stream_record_time_max
  FROM kafka.stream_scan_states WHERE mv_name LIKE 'par.%';
SELECT partition_id, start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes,
       stream_record_time_min, stream_record_time_max
  FROM states WHERE mv = 'mv_par' ORDER BY 1;
SELECT count(*) AS differences FROM
  ((SELECT partition_id, start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes,
           stream_record_time_min, stream_record_time_max FROM states WHERE mv = 'mv_par'
    EXCEPT ALL
    SELECT partition_id, start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes,
           stream_record_time_min, stream_record_time_max FROM states WHERE mv = 'mv_ser')
   UNION ALL
   (SELECT partition_id, start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes,
           stream_record_time_min, stream_record_time_max FROM states WHERE mv = 'mv_ser'
    EXCEPT ALL
    SELECT partition_id, start_position, latest_position, scanned_rows, skipped_rows, scanned_bytes,
           stream_record_time_min, stream_record_time_max FROM states WHERE mv = 'mv_par')) d;
SELECT mv_oid::regclass AS mv, partition_id, next_offset FROM kafka.stream_offsets
 WHERE mv_oid IN ('mv_par'::regclass, 'mv_ser'::regclass) ORDER BY 1, 2;
-- nothing new: nothing ingested, whatever the plan
REFRESH MATERIALIZED VIEW mv_par;
SELECT count(*) FROM mv_par;
-- replay from the start, in parallel: exactly the same rows again
SELECT kafka.reset_stream('mv_par', 'earliest');
SELECT count(*) AS differences FROM mv_diff;
-- a first load by REFRESH (no transaction id yet when the plan starts)
CREATE MATERIALIZED VIEW later_par AS SELECT kafka_partition, kafka_offset, reader_pid() AS pid
  FROM ranges WITH NO DATA;
REFRESH MATERIALIZED VIEW later_par;
SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)),
       bool_and(pid <> pg_backend_pid()) AS all_in_workers FROM later_par;

-- Skipped records of a parallel refresh are logged like those of a serial one.
CREATE MATERIALIZED VIEW kt_par AS SELECT kafka_partition, kafka_offset, kafka_value FROM kt;
SET max_parallel_workers_per_gather = 0;
CREATE MATERIALIZED VIEW kt_ser AS SELECT kafka_partition, kafka_offset, kafka_value FROM kt;
SET max_parallel_workers_per_gather = 2;
SELECT * FROM kt_par ORDER BY 1, 2;
SELECT mv, partition_id, scanned_rows, skipped_rows, scanned_bytes FROM states
 WHERE mv LIKE 'kt_%' ORDER BY 2, 1;
SELECT split_part(mv_name, '.', 2) AS mv, partition_id, position, error_reason,
       key_prefix, value_prefix
  FROM kafka.stream_scan_errors WHERE mv_name LIKE 'par.kt_%' ORDER BY 2, 3, 1;

RESET parallel_leader_participation;
RESET kafka_fdw.parallel_range_size;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;
DROP SCHEMA par CASCADE;
DROP SERVER par_srv CASCADE;

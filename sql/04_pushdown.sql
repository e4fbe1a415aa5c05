-- Pushdown of kafka_partition, kafka_offset and kafka_timestamp conditions
-- into per-partition offset ranges, proved with EXPLAIN and with results.
-- Topic ranges: record i in partition i % 4 at offset i / 4, timestamp
-- 1700000000000 + i ms (2023-11-14 22:13:20+00 plus i ms).
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SERVER pd FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE ranges (
  kafka_partition bigint, kafka_offset bigint, kafka_timestamp timestamptz,
  kafka_key bytea, kafka_value bytea
) SERVER pd OPTIONS (topic 'ranges');

-- rows are estimated from the watermarks
CREATE FUNCTION plan_rows(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO j;
  RETURN (j->0->'Plan'->>'Plan Rows')::bigint;
END $$;
SELECT plan_rows('SELECT * FROM ranges');
SELECT plan_rows('SELECT * FROM ranges WHERE kafka_partition = 1');
SELECT plan_rows('SELECT * FROM ranges WHERE kafka_partition IN (1, 2) AND kafka_offset >= 90');

-- Each case: the plan, then the result compared with the same condition
-- hidden from pushdown (+ 0), which reads everything.
EXPLAIN (VERBOSE, COSTS OFF) SELECT kafka_offset FROM ranges WHERE kafka_partition = 2;
SELECT count(*), min(kafka_offset), max(kafka_offset) FROM ranges WHERE kafka_partition = 2;
SELECT count(*), min(kafka_offset), max(kafka_offset) FROM ranges WHERE kafka_partition + 0 = 2;

EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_partition IN (3, 1, 3, 7);
SELECT kafka_partition, count(*) FROM ranges WHERE kafka_partition IN (3, 1, 3, 7) GROUP BY 1 ORDER BY 1;

EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_partition >= 1 AND kafka_partition < 3;
SELECT kafka_partition, count(*) FROM ranges WHERE kafka_partition >= 1 AND kafka_partition < 3 GROUP BY 1 ORDER BY 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_partition BETWEEN 2 AND 3;

EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_offset = 42;
SELECT kafka_partition, kafka_offset, kafka_key FROM ranges WHERE kafka_offset = 42 ORDER BY 1;

EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_offset < 5;
SELECT count(*) FROM ranges WHERE kafka_offset < 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_offset <= 5;
SELECT count(*) FROM ranges WHERE kafka_offset <= 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE 95 < kafka_offset;
SELECT count(*), min(kafka_offset) FROM ranges WHERE 95 < kafka_offset;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_offset >= 95;
SELECT count(*), min(kafka_offset) FROM ranges WHERE kafka_offset >= 95;

EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM ranges WHERE kafka_partition = 0 AND kafka_offset >= 10 AND kafka_offset < 20;
SELECT array_agg(kafka_offset ORDER BY kafka_offset) FROM ranges
 WHERE kafka_partition = 0 AND kafka_offset >= 10 AND kafka_offset < 20;

-- contradictions read nothing, without asking the broker for records
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ranges WHERE kafka_partition = 1 AND kafka_partition = 2;
SELECT count(*) FROM ranges WHERE kafka_partition = 1 AND kafka_partition = 2;
SELECT count(*) FROM ranges WHERE kafka_offset > 10 AND kafka_offset < 5;
SELECT count(*) FROM ranges WHERE kafka_partition = NULL::int;
-- beyond the high watermark, and partitions that do not exist
SELECT count(*) FROM ranges WHERE kafka_offset >= 100;
SELECT count(*) FROM ranges WHERE kafka_partition = 99;

-- timestamp lower bounds (the test broker has no time index, so this is
-- answered by the filter; a real broker narrows the offsets as well)
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM ranges WHERE kafka_timestamp >= '2023-11-14 22:13:20.390+00';
SELECT count(*), min(kafka_timestamp) FROM ranges WHERE kafka_timestamp >= '2023-11-14 22:13:20.390+00';
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM ranges WHERE kafka_timestamp > '2023-11-14 22:13:20.390+00';
SELECT count(*), min(kafka_timestamp) FROM ranges WHERE kafka_timestamp > '2023-11-14 22:13:20.390+00';
SELECT count(*) FROM ranges WHERE kafka_timestamp > '2023-11-14 22:13:20.3995+00';
SELECT count(*) FROM ranges WHERE kafka_timestamp >= now() - interval '1 hour';

-- run-time values: parameters and stable functions
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM ranges WHERE kafka_timestamp >= now() - interval '1 day' AND kafka_partition = 1;
PREPARE q(int, bigint) AS SELECT count(*), min(kafka_offset) FROM ranges
  WHERE kafka_partition = $1 AND kafka_offset >= $2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE q(3, 97);
EXECUTE q(3, 97);
EXECUTE q(0, 0);
RESET plan_cache_mode;
-- a parameter from an outer query (nested loop rescans)
SELECT p, (SELECT count(*) FROM ranges r WHERE r.kafka_partition = p AND r.kafka_offset < p * 10)
  FROM generate_series(0, 4) p;

-- what was read: records and bytes
EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT kafka_offset FROM ranges WHERE kafka_partition IN (0, 2) AND kafka_offset >= 98;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT kafka_offset FROM ranges WHERE kafka_partition = 3;

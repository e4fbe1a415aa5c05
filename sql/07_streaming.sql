-- Streaming materialized views over topics ranges (400 records, 4 partitions
-- of 100) and kt (see test/fixtures/regress.txt).  Growth, faults and
-- concurrency are covered by the scripted tests test/t/04*.sh.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SCHEMA streaming;
SET search_path = streaming, public;
CREATE SERVER sv FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE ranges (
  kafka_partition bigint, kafka_offset bigint, kafka_timestamp_type char(1),
  kafka_timestamp timestamptz, kafka_key bytea, kafka_value bytea,
  kafka_headers jsonb, refresh_time timestamptz
) SERVER sv OPTIONS (topic 'ranges');

-- Create: loads everything from the earliest offset.
CREATE MATERIALIZED VIEW ranges_mv AS
SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
       kafka.json_parse(kafka_value) AS data, kafka_headers, refresh_time
  FROM ranges;
CREATE UNIQUE INDEX ON ranges_mv (kafka_partition, kafka_offset);
SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)), min(kafka_offset), max(kafka_offset)
  FROM ranges_mv;
SELECT data->>'id' AS id, data->>'state' AS state FROM ranges_mv
 WHERE kafka_partition = 1 AND kafka_offset = 2;
SELECT partition_id, next_offset FROM kafka.stream_offsets
 WHERE mv_oid = 'ranges_mv'::regclass ORDER BY 1;
SELECT mv_name, source_table, topic, auto_refresh, last_refresh_rows, last_refresh_status,
       total_rows FROM kafka.streams;

-- Refresh with nothing new: no rows, offsets stay, one log row per partition.
REFRESH MATERIALIZED VIEW ranges_mv;
SELECT count(*) FROM ranges_mv;
SELECT external_schema_name, stream_name, mv_name, partition_id, start_position,
       latest_position, scanned_rows, skipped_rows, scanned_bytes,
       stream_record_time_min, stream_record_time_max
  FROM kafka.stream_scan_states ORDER BY record_time, partition_id;
SELECT count(DISTINCT transaction_id) AS refreshes FROM kafka.stream_scan_states;
SELECT partition_id, next_offset, high_watermark, lag FROM kafka.stream_lag('ranges_mv');
SELECT mv_name, topic, partition_id, lag FROM kafka.stream_lag ORDER BY 1, 3;
-- CONCURRENTLY is accepted and does the same.
REFRESH MATERIALIZED VIEW CONCURRENTLY ranges_mv;
SELECT last_refresh_rows, total_rows FROM kafka.streams;

-- Readers are not blocked by a refresh: it holds ExclusiveLock, not
-- AccessExclusiveLock.
BEGIN;
REFRESH MATERIALIZED VIEW ranges_mv;
SELECT mode FROM pg_locks WHERE relation = 'ranges_mv'::regclass AND granted ORDER BY 1;
COMMIT;

-- Filters: only matching records are ingested; every partition's offset
-- still advances to the high watermark.
CREATE MATERIALIZED VIEW slice_mv AS
SELECT kafka_partition, kafka_offset, kafka_key FROM ranges
 WHERE kafka_partition = 1 AND kafka_offset >= 95;
SELECT kafka_partition, kafka_offset, kafka_key FROM slice_mv ORDER BY 2;
SELECT partition_id, next_offset FROM kafka.stream_offsets
 WHERE mv_oid = 'slice_mv'::regclass ORDER BY 1;

-- start_offset 'latest': nothing old.  A timestamp: from the first record
-- that recent in each partition (the test broker has no time index; the scan
-- then finds the start itself).
CREATE FOREIGN TABLE ranges_latest (kafka_partition bigint, kafka_offset bigint)
  SERVER sv OPTIONS (topic 'ranges', start_offset 'latest');
CREATE MATERIALIZED VIEW latest_mv AS SELECT * FROM ranges_latest;
SELECT count(*) FROM latest_mv;
SELECT partition_id, next_offset FROM kafka.stream_offsets
 WHERE mv_oid = 'latest_mv'::regclass ORDER BY 1;
CREATE FOREIGN TABLE ranges_since (kafka_partition bigint, kafka_offset bigint,
                                   kafka_timestamp timestamptz)
  SERVER sv OPTIONS (topic 'ranges', start_offset '2023-11-14 22:13:20.390+00');
CREATE MATERIALIZED VIEW since_mv AS SELECT * FROM ranges_since;
SELECT kafka_partition, min(kafka_offset), count(*), min(kafka_timestamp)
  FROM since_mv GROUP BY 1 ORDER BY 1;

-- WITH NO DATA: created empty and unpopulated; REFRESH loads it.
CREATE MATERIALIZED VIEW later_mv AS SELECT kafka_partition, kafka_offset FROM ranges
  WITH NO DATA;
SELECT relispopulated FROM pg_class WHERE oid = 'later_mv'::regclass;
REFRESH MATERIALIZED VIEW later_mv;
SELECT relispopulated FROM pg_class WHERE oid = 'later_mv'::regclass;
SELECT count(*) FROM later_mv;
-- REFRESH ... WITH NO DATA empties it and forgets the offsets.
REFRESH MATERIALIZED VIEW later_mv WITH NO DATA;
SELECT count(*) FROM kafka.stream_offsets WHERE mv_oid = 'later_mv'::regclass;
SELECT count(*) FROM later_mv;
REFRESH MATERIALIZED VIEW later_mv;
SELECT count(*) FROM later_mv;

-- reset_stream: replay from earliest, latest or a timestamp.
SELECT kafka.reset_stream('later_mv', 'latest');
SELECT count(*) FROM later_mv;
SELECT kafka.reset_stream('later_mv');
SELECT count(*) FROM later_mv;
SELECT kafka.reset_stream('later_mv', '2023-11-14 22:13:20.398+00');
SELECT * FROM later_mv ORDER BY 1, 2;
SELECT partition_id, next_offset FROM kafka.stream_offsets
 WHERE mv_oid = 'later_mv'::regclass ORDER BY 1;
SELECT kafka.reset_stream('later_mv', 'soon');
SELECT kafka.reset_stream('kafka.stream_state', 'latest');

-- Records that cannot be converted are skipped and recorded; with
-- on_error 'fail' the view is not created at all.
CREATE FOREIGN TABLE kt_json (kafka_partition bigint, kafka_offset bigint, kafka_value jsonb)
  SERVER sv OPTIONS (topic 'kt');
CREATE MATERIALIZED VIEW kt_mv AS SELECT * FROM kt_json;
SELECT * FROM kt_mv ORDER BY 1, 2;
SELECT stream_name, mv_name, partition_id, position, stream_timestamp_type, stream_timestamp,
       error_code, error_reason, key_prefix, value_prefix
  FROM kafka.stream_scan_errors ORDER BY partition_id, position;
SELECT partition_id, scanned_rows, skipped_rows FROM kafka.stream_scan_states
 WHERE mv_name = 'streaming.kt_mv' ORDER BY 1;
ALTER FOREIGN TABLE kt_json OPTIONS (ADD on_error 'fail');
CREATE MATERIALIZED VIEW kt_fail_mv AS SELECT * FROM kt_json WHERE kafka_partition = 1;
SELECT count(*) FROM pg_class WHERE relname = 'kt_fail_mv';
SELECT count(*) FROM kafka.streams WHERE mv_name::text = 'kt_fail_mv';

-- Shapes that are not streaming are rejected with a hint.
CREATE MATERIALIZED VIEW bad AS SELECT kafka_partition, string_agg(kafka_offset::text, ',') FROM ranges GROUP BY 1;
CREATE MATERIALIZED VIEW bad AS SELECT a.kafka_offset FROM ranges a JOIN ranges b USING (kafka_offset);
CREATE MATERIALIZED VIEW bad AS SELECT r.kafka_offset FROM ranges r, pg_class c WHERE c.oid = 1;
CREATE MATERIALIZED VIEW bad AS SELECT DISTINCT kafka_partition FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_offset FROM ranges LIMIT 5;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_offset, row_number() OVER () FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_offset FROM ranges UNION ALL SELECT kafka_offset FROM ranges;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_offset FROM ranges WHERE kafka_offset IN (SELECT 1);
CREATE MATERIALIZED VIEW bad AS SELECT * FROM (SELECT kafka_offset FROM ranges) s;
CREATE MATERIALIZED VIEW bad AS WITH w AS (SELECT kafka_offset FROM ranges) SELECT * FROM w;
CREATE MATERIALIZED VIEW bad AS SELECT generate_series(1, 2), kafka_offset FROM ranges;
-- Through a plain view (or a view of a view) it would be a plain materialized
-- view rebuilt from the whole topic: refused, also inside other shapes.
CREATE VIEW ranges_v AS SELECT kafka_partition, kafka_offset FROM ranges WHERE kafka_offset < 10;
CREATE VIEW ranges_vv AS SELECT * FROM ranges_v;
CREATE MATERIALIZED VIEW bad AS SELECT * FROM ranges_v;
CREATE MATERIALIZED VIEW bad AS SELECT kafka_offset FROM ranges_vv;
CREATE MATERIALIZED VIEW bad AS SELECT count(*) FROM ranges_v;
CREATE MATERIALIZED VIEW bad AS SELECT g FROM generate_series(1, 3) g
  WHERE g IN (SELECT kafka_offset FROM ranges_vv);
SELECT count(*) FROM pg_class WHERE relname = 'bad';
DROP VIEW ranges_vv, ranges_v;

-- Other materialized views are PostgreSQL's, untouched.
CREATE MATERIALIZED VIEW plain_mv AS SELECT g FROM generate_series(1, 3) g;
REFRESH MATERIALIZED VIEW plain_mv;
SELECT count(*) FROM plain_mv;
SELECT count(*) FROM kafka.streams WHERE mv_name::text = 'plain_mv';
-- A regular view on top of a streaming one, for what streaming views cannot do.
CREATE VIEW per_partition AS SELECT kafka_partition, count(*) FROM ranges_mv GROUP BY 1;
SELECT * FROM per_partition ORDER BY 1;

-- Privileges: only the owner refreshes; the owner needs no rights on the
-- extension's tables.
CREATE ROLE stream_owner;
CREATE ROLE stream_other;
GRANT SELECT ON ranges TO stream_owner;
GRANT USAGE, CREATE ON SCHEMA streaming TO stream_owner;
GRANT USAGE ON SCHEMA streaming TO stream_other;
SET ROLE stream_owner;
CREATE MATERIALIZED VIEW owned_mv AS SELECT kafka_partition, kafka_offset, current_user AS who FROM ranges;
SELECT count(*), min(who) FROM owned_mv;
REFRESH MATERIALIZED VIEW owned_mv;
SELECT count(*) FROM kafka.stream_offsets;
RESET ROLE;
SET ROLE stream_other;
REFRESH MATERIALIZED VIEW owned_mv;
SELECT kafka.reset_stream('owned_mv');
RESET ROLE;

-- Dropping a view drops its state.
SELECT count(*) FROM kafka.stream_state;
DROP MATERIALIZED VIEW owned_mv, later_mv;
SELECT count(*) FROM kafka.stream_state;
SELECT count(*) FROM kafka.stream_offsets
 WHERE mv_oid NOT IN (SELECT mv_oid FROM kafka.stream_state);
DROP OWNED BY stream_owner, stream_other;
DROP ROLE stream_owner, stream_other;
SET client_min_messages = warning;
DROP SCHEMA streaming CASCADE;
DROP SERVER sv CASCADE;
RESET client_min_messages;
SELECT count(*) AS remaining_streams FROM kafka.stream_state;

-- The eight columns and their exact semantics, over topic kt
-- (see test/fixtures/regress.txt for what was produced).
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SERVER cols FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');

CREATE FOREIGN TABLE kt (
  kafka_partition bigint, kafka_offset bigint, kafka_timestamp_type char(1),
  kafka_timestamp timestamptz, kafka_key bytea, kafka_value bytea,
  kafka_headers jsonb, refresh_time timestamptz
) SERVER cols OPTIONS (topic 'kt');

SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp,
       kafka_key, kafka_value, kafka_headers
  FROM kt ORDER BY kafka_partition, kafka_offset;

-- null key and tombstone are NULL; empty key and value are not
SELECT kafka_partition, kafka_offset, kafka_key IS NULL AS null_key,
       kafka_value IS NULL AS null_value, length(kafka_key) AS key_len,
       length(kafka_value) AS value_len
  FROM kt WHERE kafka_partition = 0 ORDER BY kafka_offset;

-- refresh_time is the statement's start time, the same for every record
SELECT count(DISTINCT refresh_time) AS distinct_times,
       bool_and(refresh_time = statement_timestamp()) AS is_statement_start
  FROM kt;

-- headers: order and duplicates kept, null and binary values representable
SELECT kafka_offset, jsonb_array_length(kafka_headers) AS n,
       kafka.header(kafka_headers, 'trace') AS first_trace,
       kafka.header(kafka_headers, 'h') AS first_h,
       kafka.header(kafka_headers, 'flag') AS flag,
       kafka.header_bytes(kafka_headers, 'bin') AS bin,
       kafka.header(kafka_headers, 'content-type') AS ctype
  FROM kt ORDER BY kafka_partition, kafka_offset;

-- json helpers on real records
SELECT kafka_partition, kafka_offset, kafka.can_json_parse(kafka_value) AS is_json,
       CASE WHEN kafka.can_json_parse(kafka_value) THEN kafka.json_parse(kafka_value) END AS data
  FROM kt ORDER BY 1, 2;
SELECT kafka.json_parse(kafka_value) FROM kt WHERE kafka_partition = 1 AND kafka_offset = 2;

-- any subset of columns, in any order
CREATE FOREIGN TABLE kt_subset (kafka_value bytea, kafka_offset bigint, kafka_partition integer)
  SERVER cols OPTIONS (topic 'kt');
SELECT * FROM kt_subset ORDER BY kafka_partition, kafka_offset;
SELECT count(*) FROM kt_subset;

-- key and value as text: records that are not valid text are skipped with a
-- warning (on_error 'skip', the default) or fail the scan (on_error 'fail')
CREATE FOREIGN TABLE kt_text (kafka_partition bigint, kafka_offset bigint,
                              kafka_key text, kafka_value text)
  SERVER cols OPTIONS (topic 'kt');
SELECT * FROM kt_text ORDER BY kafka_partition, kafka_offset;
ALTER FOREIGN TABLE kt_text OPTIONS (ADD on_error 'fail');
SELECT * FROM kt_text WHERE kafka_partition = 1 ORDER BY kafka_offset;
-- a slice without bad records is fine under 'fail'
SELECT * FROM kt_text WHERE kafka_partition = 1 AND kafka_offset >= 2 ORDER BY 2;

-- value as jsonb: invalid JSON and invalid UTF-8 are skipped, others parsed
CREATE FOREIGN TABLE kt_json (kafka_partition bigint, kafka_offset bigint,
                              kafka_value jsonb)
  SERVER cols OPTIONS (topic 'kt');
SELECT * FROM kt_json ORDER BY kafka_partition, kafka_offset;
ALTER FOREIGN TABLE kt_json OPTIONS (ADD on_error 'fail');
SELECT * FROM kt_json WHERE kafka_partition = 1;

-- kafka_timestamp as timestamp (UTC), refresh_time as timestamp, type as "char"
CREATE FOREIGN TABLE kt_ts (kafka_offset bigint, kafka_timestamp timestamp,
                            kafka_timestamp_type "char", kafka_partition bigint)
  SERVER cols OPTIONS (topic 'kt');
SET timezone = 'America/New_York';
SELECT kafka_offset, kafka_timestamp, kafka_timestamp_type FROM kt_ts
 WHERE kafka_partition = 0 ORDER BY 1;
SELECT kafka_offset, kafka_timestamp FROM kt WHERE kafka_partition = 0 ORDER BY 1;
SET timezone = 'UTC';

-- records larger than kafka_fdw.max_record_size are skipped (or fail); the
-- size counts key, value and the headers' names and values (partition 0,
-- offset 4 has 8 bytes of key and value and 33 of headers)
SET kafka_fdw.max_record_size = 20;
SELECT kafka_partition, kafka_offset FROM kt ORDER BY 1, 2;
SELECT kafka_partition, kafka_offset FROM kt_text WHERE kafka_partition = 0 ORDER BY 1, 2;
SELECT kafka_partition, kafka_offset FROM kt_text
 WHERE kafka_partition = 0 AND kafka_offset = 4;
SET kafka_fdw.max_record_size = 41;
SELECT kafka_partition, kafka_offset FROM kt_text WHERE kafka_partition = 0 ORDER BY 1, 2;
RESET kafka_fdw.max_record_size;

-- a header name that is not valid UTF-8 cannot be in kafka_headers (jsonb):
-- the hint says to leave that column out, which reads the record
CREATE FOREIGN TABLE badheaders (kafka_offset bigint, kafka_key text, kafka_headers jsonb)
  SERVER cols OPTIONS (topic 'badheaders');
SELECT * FROM badheaders ORDER BY 1;
SELECT kafka_offset, kafka_key FROM badheaders ORDER BY 1;
ALTER FOREIGN TABLE badheaders OPTIONS (ADD on_error 'fail');
SELECT * FROM badheaders ORDER BY 1;

-- whole-row references and joins between two scans of one topic
SELECT count(*) FROM kt a JOIN kt b USING (kafka_partition, kafka_offset);
SELECT (k).kafka_offset FROM kt k WHERE (k).kafka_partition = 1 ORDER BY 1;
-- a cursor that stops early and a rescan
BEGIN;
DECLARE c CURSOR FOR SELECT kafka_partition, kafka_offset FROM kt ORDER BY 1, 2;
FETCH 2 FROM c;
CLOSE c;
COMMIT;
SELECT (SELECT count(*) FROM kt WHERE kafka_partition = p.p) FROM (VALUES (0), (1), (2)) p(p);

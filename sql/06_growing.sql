-- A scan of a topic that is being written (test/fixtures/regress.txt starts
-- a producer on "growing" for the whole run) ends at the high watermarks
-- captured when it started: it terminates, and never waits for new records.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SERVER grow FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE growing (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER grow OPTIONS (topic 'growing');
SET statement_timeout = '20s';

-- Every scan terminates; later scans see at least as much.
CREATE TEMP TABLE counts (n int, c bigint);
INSERT INTO counts SELECT 1, count(*) FROM growing;
SELECT pg_sleep(0.3);
INSERT INTO counts SELECT 2, count(*) FROM growing;
SELECT pg_sleep(0.3);
INSERT INTO counts SELECT 3, count(*) FROM growing;
SELECT bool_and(c > 0) AS all_nonempty,
       (SELECT c FROM counts WHERE n = 1) < (SELECT c FROM counts WHERE n = 3) AS grew
  FROM counts;

-- Within one scan, each partition's offsets are contiguous from the low
-- watermark: nothing skipped, nothing twice, even while records arrive.
SELECT kafka_partition,
       count(*) = max(kafka_offset) - min(kafka_offset) + 1 AS contiguous,
       count(*) = count(DISTINCT kafka_offset) AS no_duplicates
  FROM growing GROUP BY 1 ORDER BY 1;

-- A slice that starts at the end reads nothing new and returns at once.
SELECT max(kafka_offset) + 1 AS next_offset FROM growing WHERE kafka_partition = 0 \gset
SELECT count(*) <= 2000 AS bounded FROM growing
 WHERE kafka_partition = 0 AND kafka_offset >= :next_offset;
RESET statement_timeout;

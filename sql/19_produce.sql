-- INSERT into a Kafka foreign table: the SQL surface (test/t/590 proves the
-- records against a real Kafka with Kafka's own consumer).
SET timezone = 'UTC';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
CREATE SERVER prod FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE pt (
  kafka_partition int, kafka_offset bigint, kafka_timestamp_type char(1),
  kafka_timestamp timestamptz, kafka_key text, kafka_value text,
  kafka_headers jsonb, refresh_time timestamptz
) SERVER prod OPTIONS (topic '__produce_t');

-- columns Kafka assigns cannot be inserted into, at plan time already
INSERT INTO pt (kafka_offset, kafka_value) VALUES (1, 'x');
INSERT INTO pt (kafka_timestamp_type, kafka_value) VALUES ('C', 'x');
EXPLAIN (COSTS OFF) INSERT INTO pt (refresh_time) VALUES (now());
-- ... nor get a value from a default
ALTER FOREIGN TABLE pt ALTER COLUMN kafka_offset SET DEFAULT 0;
INSERT INTO pt (kafka_value) VALUES ('x');
ALTER FOREIGN TABLE pt ALTER COLUMN kafka_offset DROP DEFAULT;

-- INSERT only
UPDATE pt SET kafka_value = 'y';
DELETE FROM pt;
INSERT INTO pt (kafka_value) VALUES ('x') ON CONFLICT DO NOTHING;
EXPLAIN (COSTS OFF) INSERT INTO pt (kafka_key, kafka_value) VALUES ('k', 'v');

-- headers in the scan's shape only
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '{"key": "a", "value": "b"}');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '"a"');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[1]');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[{"value": "b"}]');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[{"key": "a"}]');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[{"key": "a", "value": "b", "extra": 1}]');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[{"key": "a", "value": 1}]');
INSERT INTO pt (kafka_value, kafka_headers) VALUES ('x', '[{"key": "a", "value_base64": "!!"}]');
-- partitions and timestamps Kafka cannot take
INSERT INTO pt (kafka_value, kafka_partition) VALUES ('x', -1);
INSERT INTO pt (kafka_value, kafka_timestamp) VALUES ('x', '1969-12-31 23:59:59+00');
INSERT INTO pt (kafka_value, kafka_timestamp) VALUES ('x', 'infinity');

-- PREPARE TRANSACTION is refused
BEGIN;
INSERT INTO pt (kafka_value, kafka_partition) VALUES ('prepared', 0);
PREPARE TRANSACTION 'kafka';
-- one server per transaction
CREATE SERVER prod2 FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers');
CREATE FOREIGN TABLE pt2 (kafka_value text) SERVER prod2 OPTIONS (topic '__produce_t');
BEGIN;
INSERT INTO pt (kafka_value, kafka_partition) VALUES ('one', 0);
INSERT INTO pt2 (kafka_value) VALUES ('two');
ROLLBACK;

-- a committed INSERT, read back
INSERT INTO pt (kafka_key, kafka_value, kafka_headers, kafka_partition, kafka_timestamp)
VALUES ('k1', 'v1', '[{"key": "h", "value": "1"}, {"key": "b", "value_base64": "AP8="}]', 1, '2024-05-01 12:00:00.5+00')
RETURNING kafka_partition, kafka_offset, kafka_key, kafka_value, kafka_headers;
-- (the test broker ignores Kafka transactions' aborts: rollbacks are proved
-- against a real Kafka in test/t/590; a savepoint's records are never sent)
BEGIN;
SAVEPOINT s;
INSERT INTO pt (kafka_key, kafka_value, kafka_partition) VALUES ('k3', 'in a savepoint', 1)
RETURNING kafka_partition, kafka_offset;
ROLLBACK TO s;
INSERT INTO pt (kafka_key, kafka_value, kafka_partition) VALUES ('k4', 'committed', 1);
COMMIT;
SELECT kafka_partition, kafka_offset, kafka_key, kafka_value, kafka_headers,
       kafka_timestamp = '2024-05-01 12:00:00.5+00' AS explicit_timestamp
  FROM pt WHERE kafka_key IN ('k1', 'k3', 'k4') ORDER BY kafka_partition, kafka_offset;

-- privileges: INSERT on the table
CREATE ROLE produce_user;
CREATE USER MAPPING FOR produce_user SERVER prod;
GRANT USAGE ON SCHEMA kafka TO produce_user;
SET ROLE produce_user;
INSERT INTO pt (kafka_value) VALUES ('denied');
RESET ROLE;
GRANT INSERT ON pt TO produce_user;
SET ROLE produce_user;
INSERT INTO pt (kafka_key, kafka_value, kafka_partition) VALUES ('k5', 'granted', 0);
SELECT count(*) FROM pt;
RESET ROLE;
SELECT kafka_key, kafka_value FROM pt WHERE kafka_key = 'k5';

DROP FOREIGN TABLE pt, pt2;
DROP USER MAPPING FOR produce_user SERVER prod;
DROP SERVER prod, prod2;
REVOKE USAGE ON SCHEMA kafka FROM produce_user;
DROP ROLE produce_user;

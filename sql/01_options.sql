-- Extension objects, server/table/user mapping options and their validation.
CREATE EXTENSION kafka_fdw;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT current_setting('kafka_test.brokers') AS brokers \gset

-- Everything but the wrapper lives in schema kafka.
SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'kafka' ORDER BY 1;
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc FROM pg_foreign_data_wrapper;

-- Servers need brokers; options are checked by name and value.
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw;
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokres 'localhost:9092');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'localhost:9092', topic 'x');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'localhost:9092', compression 'lz4');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'localhost:9092', authentication 'kerberos');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'localhost:9092', authentication 'sasl_plain', password 'x');
-- The broker list: host[:port] or [IPv6][:port], separated by commas (and
-- spaces), at most 100; a bad entry is quoted (at most 64 bytes of it).
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers ',,,,');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'garbage!!@@::');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'b-1:9092,b-2:99999');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'b-1:');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers ':9092');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'SASL_SSL://b-1:9096');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '::1');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '[::1');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '[::g]:9092');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '[::1]9092');
SELECT repeat('x', 100) || '!:9092' AS longbad,
       string_agg('b-' || i || ':9092', ',') AS list101,
       string_agg('b-' || i || ':9092', ',') FILTER (WHERE i <= 100) AS list100
  FROM generate_series(1, 101) i \gset
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'longbad');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'list101');
CREATE SERVER okb FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers ' b-1:9092, b_2.example.com ,[::1]:9092,[fe80::1],10.0.0.1:9092,');
ALTER SERVER okb OPTIONS (SET brokers 'nope!');
ALTER SERVER okb OPTIONS (SET brokers :'list100');
DROP SERVER okb;

CREATE SERVER kafka FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'brokers', authentication 'none');
ALTER SERVER kafka OPTIONS (DROP brokers);
ALTER SERVER kafka OPTIONS (ADD brokres 'x');

-- User mappings take credentials only (see 08_security).
CREATE USER MAPPING FOR CURRENT_USER SERVER kafka OPTIONS (user 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER kafka;

-- Table options.
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER kafka OPTIONS (topik 'kt');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER kafka OPTIONS (brokers 'x');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER kafka OPTIONS (topic '');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER kafka OPTIONS (topic 'kt', start_offset 'yesterday-ish');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER kafka OPTIONS (topic 'kt', on_error 'ignore');
CREATE FOREIGN TABLE ok_ts (kafka_offset bigint) SERVER kafka
  OPTIONS (topic 'kt', start_offset '2024-01-31 12:00:00+00', on_error 'fail');
CREATE FOREIGN TABLE ok_latest (kafka_offset bigint) SERVER kafka
  OPTIONS (topic 'kt', start_offset 'latest', on_error 'skip');
DROP FOREIGN TABLE ok_ts, ok_latest;

-- Columns are matched by name and type when the table is used.
CREATE FOREIGN TABLE badcol (kafka_offset bigint, payload bytea) SERVER kafka OPTIONS (topic 'kt');
SELECT * FROM badcol;
CREATE FOREIGN TABLE badtype (kafka_offset integer) SERVER kafka OPTIONS (topic 'kt');
SELECT * FROM badtype;
CREATE FOREIGN TABLE badtype2 (kafka_headers text) SERVER kafka OPTIONS (topic 'kt');
SELECT * FROM badtype2;
DROP FOREIGN TABLE badcol, badtype, badtype2;

-- A topic that does not exist.
CREATE FOREIGN TABLE nosuch (kafka_offset bigint) SERVER kafka OPTIONS (topic 'no_such_topic');
\set VERBOSITY terse
SELECT * FROM nosuch;
\set VERBOSITY default
DROP FOREIGN TABLE nosuch;

-- The topic defaults to the table name.
CREATE FOREIGN TABLE kt (kafka_partition bigint, kafka_offset bigint) SERVER kafka;
SELECT * FROM kt ORDER BY 1, 2;

-- The backend's cached handle follows ALTER SERVER at once.
SET kafka_fdw.connect_timeout = '500ms';
ALTER SERVER kafka OPTIONS (SET brokers '127.0.0.1:1');
\set VERBOSITY terse
SELECT count(*) FROM kt;
\set VERBOSITY default
ALTER SERVER kafka OPTIONS (SET brokers :'brokers');
SELECT count(*) FROM kt;
RESET kafka_fdw.connect_timeout;
DROP FOREIGN TABLE kt;

-- An unreachable broker fails after kafka_fdw.connect_timeout with a clear error;
-- in it a list of more than 3 brokers is abbreviated.
SELECT current_setting('kafka_test.unreachable') AS unreachable \gset
CREATE SERVER dead FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers :'unreachable');
CREATE FOREIGN TABLE dead_t (kafka_offset bigint) SERVER dead OPTIONS (topic 'kt');
SET kafka_fdw.connect_timeout = '500ms';
\set VERBOSITY terse
SELECT * FROM dead_t;
ALTER SERVER dead OPTIONS (SET brokers '127.0.0.1:1,127.0.0.2:1,127.0.0.3:1,127.0.0.4:1');
SELECT * FROM dead_t;
\set VERBOSITY default
RESET kafka_fdw.connect_timeout;
DROP SERVER dead CASCADE;
SHOW kafka_fdw.connect_timeout;
SHOW kafka_fdw.max_record_size;

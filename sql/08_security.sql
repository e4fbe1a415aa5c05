-- Authentication modes, credentials, the librdkafka allow-list, secrets and
-- privileges (SPEC §2.2, §5).  The test broker speaks neither TLS nor SASL:
-- each mode is checked through the configuration it produces
-- (kafka.connection_config, built by the same code as real handles), and
-- failed connections are checked for leaked secrets.
SET timezone = 'UTC';
SELECT current_setting('kafka_test.brokers') AS brokers \gset
SELECT current_setting('kafka_test.unreachable') AS unreachable \gset
CREATE SCHEMA sec;
SET search_path = sec, public;
CREATE ROLE sec_user;
CREATE ROLE sec_other;
GRANT USAGE ON FOREIGN DATA WRAPPER kafka_fdw TO sec_user;
GRANT USAGE, CREATE ON SCHEMA sec TO sec_user;

-- 1. authentication 'none': the whole effective configuration.
CREATE SERVER sec_none FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'brokers', authentication 'none');
SELECT property, replace(value, :'brokers', '<brokers>') AS value
  FROM kafka.connection_config('sec_none');

-- The other modes: their security properties.  A view for brevity.
CREATE FUNCTION security_config(srv name) RETURNS TABLE (property text, value text)
LANGUAGE sql AS $$
  SELECT property, value FROM kafka.connection_config(srv)
   WHERE property ~ '^(security|sasl|ssl|kafka_fdw)[._]'
$$;

-- tls: server-verified TLS, optionally with a CA file.
CREATE SERVER sec_tls FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'b-1.example.com:9094', authentication 'tls',
           ssl_ca_file '/etc/ssl/certs/ca-certificates.crt');
SELECT * FROM security_config('sec_tls');

-- mtls: client certificate and key files; the key passphrase is a credential.
CREATE SERVER sec_mtls FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'b-1.example.com:9094', authentication 'mtls',
           ssl_certificate_file '/etc/kafka/client.pem', ssl_key_file '/etc/kafka/client.key');
SELECT * FROM security_config('sec_mtls');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_mtls OPTIONS (ssl_key_password 'sec-keypass-Q7');
SELECT * FROM security_config('sec_mtls');

-- sasl_plain (TLS by default), sasl_scram_* (here without TLS): credentials
-- from the user mapping, the password redacted.
CREATE SERVER sec_plain FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'pkc-abc.us-east-1.aws.confluent.cloud:9092', authentication 'sasl_plain');
SELECT * FROM security_config('sec_plain');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_plain OPTIONS (username 'APIKEY123');
SELECT * FROM security_config('sec_plain');
ALTER USER MAPPING FOR CURRENT_USER SERVER sec_plain OPTIONS (ADD password 'sec-Pw-8cX2vL9q');
SELECT * FROM security_config('sec_plain');
CREATE SERVER sec_scram256 FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'redpanda-0:9092', authentication 'sasl_scram_sha_256', tls 'false');
CREATE USER MAPPING FOR PUBLIC SERVER sec_scram256 OPTIONS (username 'alice', password 'sec-scram-pw');
SELECT * FROM security_config('sec_scram256');
CREATE SERVER sec_scram512 FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9096',
           authentication 'sasl_scram_sha_512', ssl_ca_file '/etc/ssl/certs/ca-certificates.crt');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_scram512 OPTIONS (username 'bob', password 'sec-scram-512');
SELECT * FROM security_config('sec_scram512');

-- iam: MSK IAM over SASL/OAUTHBEARER; the region comes from the broker names
-- or the option "region"; keys and session token redacted.
CREATE SERVER sec_iam FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098',
           authentication 'iam');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_iam
  OPTIONS (aws_access_key_id 'AKIASECTESTKEY', aws_secret_access_key 'sec/secret+KEY');
SELECT * FROM security_config('sec_iam');
ALTER USER MAPPING FOR CURRENT_USER SERVER sec_iam OPTIONS (ADD aws_session_token 'sec-session-token');
CREATE SERVER sec_iam2 FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'boot-abc.c1.kafka-serverless.ap-south-1.amazonaws.com:9098', authentication 'iam');
CREATE SERVER sec_iam3 FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'kafka.internal:9098', authentication 'iam', region 'us-west-2');
CREATE USER MAPPING FOR PUBLIC SERVER sec_iam2 OPTIONS (aws_access_key_id 'AKIASECTESTKEY', aws_secret_access_key 'sec/secret+KEY');
CREATE USER MAPPING FOR PUBLIC SERVER sec_iam3 OPTIONS (aws_access_key_id 'AKIASECTESTKEY', aws_secret_access_key 'sec/secret+KEY');
SELECT srv, c.* FROM unnest('{sec_iam,sec_iam2,sec_iam3}'::name[]) srv, security_config(srv) c
 WHERE c.property LIKE 'kafka_fdw.iam.%';

-- Missing credentials are an error naming the option, at connection time.
CREATE SERVER sec_nomap FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9092', authentication 'sasl_scram_sha_512');
SELECT * FROM kafka.connection_config('sec_nomap');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_nomap OPTIONS (password 'sec-nomap-pw');
SELECT * FROM kafka.connection_config('sec_nomap');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_iam3 OPTIONS (aws_access_key_id 'AKIASECTESTKEY');
SELECT * FROM kafka.connection_config('sec_iam3');
SELECT * FROM kafka.connection_config('no_such_server');

-- 2. Credentials are accepted only in user mappings; errors never echo values.
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9092', authentication 'sasl_plain', password 'sec-leak-1');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9092', authentication 'iam', region 'us-east-1', aws_secret_access_key 'sec-leak-2');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9092', username 'u');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER sec_none OPTIONS (ssl_key_password 'sec-leak-3');
ALTER SERVER sec_none OPTIONS (ADD aws_session_token 'sec-leak-4');
CREATE USER MAPPING FOR sec_other SERVER sec_none OPTIONS (password '');
CREATE USER MAPPING FOR sec_other SERVER sec_none OPTIONS (brokers 'x');

-- What each mode needs, and options that do not fit the mode.
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9094', authentication 'mtls');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9094', authentication 'tls', ssl_key_file '/k.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9092', tls 'true');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9092', authentication 'sasl_plain', tls 'maybe');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9092', authentication 'sasl_plain', tls 'off', ssl_ca_file '/ca.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9092', ssl_ca_file '/ca.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9094', authentication 'tls', ssl_ca_file 'relative/ca.pem');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9092', region 'us-east-1');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers 'x:9098', authentication 'iam');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9098', authentication 'iam', region 'us-east-1/../x');
CREATE SERVER bad FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'evil.amazonaws.com.example:9098', authentication 'iam');

-- 3. rdkafka.<property>: an allow-list.
CREATE SERVER sec_tuned FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'brokers', "rdkafka.fetch.wait.max.ms" '50', "rdkafka.client.id" 'reporting',
           "rdkafka.socket.keepalive.enable" 'true', "rdkafka.debug" 'broker');
SELECT property, value FROM kafka.connection_config('sec_tuned')
 WHERE property IN ('fetch.wait.max.ms', 'client.id', 'socket.keepalive.enable', 'debug');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.group.id" 'g');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.isolation.level" 'read_uncommitted');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.enable.auto.commit" 'true');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.bootstrap.servers" 'evil:9092');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.security.protocol" 'plaintext');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.sasl.password" 'sec-leak-5');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.ssl.key.password" 'sec-leak-6');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.enable.sasl.oauthbearer.unsecure.jwt" 'true');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.fetch.max.byte" '1000000');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.statistics.interval.ms" '1000');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.fetch.max.bytes" 'lots');
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka." 'x');
CREATE FOREIGN TABLE bad (kafka_offset bigint) SERVER sec_none OPTIONS ("rdkafka.client.id" 'x');
-- A superuser may point librdkafka at local files.
ALTER SERVER sec_tuned OPTIONS (ADD "rdkafka.ssl.ca.location" '/etc/ssl/certs/ca-certificates.crt');
ALTER SERVER sec_tuned OPTIONS (DROP "rdkafka.ssl.ca.location");

-- A non-superuser with USAGE on the wrapper: tuning yes, files and code no.
SET ROLE sec_user;
CREATE SERVER sec_users_server FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'brokers', "rdkafka.fetch.max.bytes" '1048576', "rdkafka.client.rack" 'use1-az1');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.plugin.library.paths" '/tmp/evil.so');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.ssl.ca.location" '/etc/passwd');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.ssl.keystore.location" '/tmp/ks.p12');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.ssl.engine.location" '/tmp/engine.so');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.ssl.providers" 'legacy');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.sasl.kerberos.kinit.cmd" 'touch /tmp/pwned');
ALTER SERVER sec_users_server OPTIONS (ADD "rdkafka.ssl.crl.location" '/tmp/crl.pem');
CREATE SERVER sec_bad2 FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers 'x:9094', authentication 'tls', ssl_ca_file '/etc/passwd');
SELECT * FROM kafka.connection_config('sec_users_server');
RESET ROLE;
-- The superuser-set file options keep non-superusers from altering a server.
ALTER SERVER sec_tls OWNER TO sec_user;
SET ROLE sec_user;
ALTER SERVER sec_tls OPTIONS (ADD "rdkafka.client.id" 'mine');
RESET ROLE;
SELECT count(*) > 0 AS superuser_may FROM kafka.connection_config('sec_none');

-- 4. Secrets never appear in errors.  A failed connection with a password:
-- to an unreachable broker, and to the test broker, which has no SASL.
CREATE FUNCTION leaks(secret text, msg text) RETURNS boolean LANGUAGE sql AS $$
  SELECT bool_or(position(substr(secret, i, 5) IN msg) > 0)
    FROM generate_series(1, length(secret) - 4) i
$$;
CREATE FUNCTION try_query(q text, secret text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  m text; d text; h text; s text;
BEGIN
  EXECUTE q;
  RETURN 'no error';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT,
                          s = RETURNED_SQLSTATE;
  RETURN s || ' ' || m || ' | leaks password: ' ||
         leaks(secret, concat_ws(' ', m, d, h))::text;
END
$$;
SET kafka_fdw.connect_timeout = '500ms';
CREATE SERVER sec_dead FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'unreachable', authentication 'sasl_plain', tls 'false');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_dead
  OPTIONS (username 'sec-user', password 'Dead-Pw-5zR8kT1m');
CREATE FOREIGN TABLE dead_t (kafka_offset bigint) SERVER sec_dead OPTIONS (topic 'kt');
SELECT try_query('SELECT * FROM sec.dead_t', 'Dead-Pw-5zR8kT1m');
SELECT try_query('EXPLAIN SELECT * FROM sec.dead_t', 'Dead-Pw-5zR8kT1m');
CREATE SERVER sec_nosasl FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'brokers', authentication 'sasl_plain', tls 'false');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_nosasl
  OPTIONS (username 'sec-user', password 'NoSasl-Pw-3vQ9wE2x');
CREATE FOREIGN TABLE nosasl_t (kafka_offset bigint) SERVER sec_nosasl OPTIONS (topic 'kt');
SELECT regexp_replace(try_query('SELECT count(*) FROM sec.nosasl_t', 'NoSasl-Pw-3vQ9wE2x'),
                      'brokers "[^"]*"', 'brokers "<test broker>"') AS result;
CREATE SERVER sec_iam_dead FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers :'unreachable', authentication 'iam', region 'us-east-1');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_iam_dead
  OPTIONS (aws_access_key_id 'AKIADEADKEY0001', aws_secret_access_key 'Iam-Secret-7hJ2kL4p',
           aws_session_token 'Iam-Session-9mN3bV6c');
CREATE FOREIGN TABLE iam_dead_t (kafka_offset bigint) SERVER sec_iam_dead OPTIONS (topic 'kt');
SELECT try_query('SELECT * FROM sec.iam_dead_t', 'Iam-Secret-7hJ2kL4p');
SELECT try_query('SELECT * FROM sec.iam_dead_t', 'Iam-Session-9mN3bV6c') ~ 'leaks password: false' AS no_leak;
RESET kafka_fdw.connect_timeout;

-- 5. Privileges.  pg_user_mappings shows options only to the mapped user, the
-- server owner and superusers, as PostgreSQL does.
CREATE USER MAPPING FOR sec_user SERVER sec_plain OPTIONS (username 'u2', password 'sec-user-pw');
GRANT USAGE ON FOREIGN SERVER sec_plain TO sec_user, sec_other;
SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'sec_plain' ORDER BY 1;
SET ROLE sec_user;
SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'sec_plain' ORDER BY 1;
RESET ROLE;
SET ROLE sec_other;
SELECT usename, umoptions FROM pg_user_mappings WHERE srvname = 'sec_plain' ORDER BY 1;
SELECT umoptions FROM pg_user_mapping;
SELECT kafka.connection_config('sec_plain');
RESET ROLE;

-- The extension's tables cannot be read or changed by ordinary users.
SET ROLE sec_user;
SELECT count(*) FROM kafka.stream_state;
INSERT INTO kafka.stream_offsets VALUES (1, 0, 0);
UPDATE kafka.stream_state SET total_rows = 0;
DELETE FROM kafka.stream_scan_log;
TRUNCATE kafka.stream_error_log;
SELECT kafka._drop_stream_state();
RESET ROLE;

-- Foreign tables need USAGE on the server (checked at CREATE) and SELECT.
CREATE FOREIGN TABLE kt (kafka_partition bigint, kafka_offset bigint) SERVER sec_none;
SET ROLE sec_user;
CREATE FOREIGN TABLE my_kt (kafka_offset bigint) SERVER sec_none OPTIONS (topic 'kt');
SELECT count(*) FROM kt;
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER sec_none TO sec_user;
SET ROLE sec_user;
CREATE FOREIGN TABLE my_kt (kafka_offset bigint) SERVER sec_none OPTIONS (topic 'kt');
SELECT count(*) FROM my_kt;
RESET ROLE;
GRANT SELECT ON kt TO sec_user;
SET ROLE sec_user;
SELECT count(*) FROM kt;
RESET ROLE;

-- Refreshing a streaming view needs its ownership.
CREATE MATERIALIZED VIEW kt_mv AS SELECT kafka_partition, kafka_offset FROM kt;
GRANT SELECT ON kt_mv TO sec_user;
SET ROLE sec_user;
SELECT count(*) FROM kt_mv;
REFRESH MATERIALIZED VIEW kt_mv;
RESET ROLE;

-- The install script pins search_path on every SQL-language function and
-- every SECURITY DEFINER function.
SELECT p.proname, l.lanname, p.prosecdef, p.proconfig
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'kafka'::regnamespace AND (l.lanname <> 'c' OR p.prosecdef)
 ORDER BY 1;
SELECT p.oid::regprocedure AS executable_by_public_but_should_not
  FROM pg_proc p
 WHERE p.pronamespace = 'kafka'::regnamespace
   AND p.proname IN ('connection_config', '_drop_stream_state', '_guard_streaming_ddl',
                     '_stage_dumped_rows')
   AND has_function_privilege('sec_other', p.oid, 'EXECUTE');

-- Clean up.
DROP MATERIALIZED VIEW kt_mv;
DROP OWNED BY sec_user, sec_other;
DROP ROLE sec_user, sec_other;
SET client_min_messages = warning;
DROP SCHEMA sec CASCADE;
DROP SERVER IF EXISTS sec_none, sec_tls, sec_mtls, sec_plain, sec_scram256, sec_scram512, sec_iam,
  sec_iam2, sec_iam3, sec_nomap, sec_tuned, sec_dead, sec_nosasl, sec_iam_dead CASCADE;
RESET client_min_messages;

/* kafka_fdw--1.0.sql: objects of kafka_fdw, all in schema kafka.
 * Everything is schema-qualified so that the script is safe whatever the
 * search_path of the user running CREATE EXTENSION. */

\echo Use "CREATE EXTENSION kafka_fdw" to load this file. \quit

CREATE FUNCTION kafka.kafka_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'kafka_fdw_handler'
LANGUAGE C STRICT;

CREATE FUNCTION kafka.kafka_fdw_validator(pg_catalog.text[], pg_catalog.oid)
RETURNS void
AS 'MODULE_PATHNAME', 'kafka_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER kafka_fdw
  HANDLER kafka.kafka_fdw_handler
  VALIDATOR kafka.kafka_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER kafka_fdw IS 'Apache Kafka topics as foreign tables';

-- Helper functions (src/functions.c); names follow Redshift. kafka_headers is
-- [{"key": "k", "value": "text"}, {"key": "n", "value": null},
--  {"key": "b", "value_base64": "AP8="}] in record order, duplicates kept.

CREATE FUNCTION kafka.json_parse(pg_catalog.bytea)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'kafka_json_parse'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka.json_parse(pg_catalog.bytea) IS
'parse a Kafka message as JSON into jsonb; error on invalid JSON';

CREATE FUNCTION kafka.can_json_parse(pg_catalog.bytea)
RETURNS pg_catalog.bool
AS 'MODULE_PATHNAME', 'kafka_can_json_parse'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka.can_json_parse(pg_catalog.bytea) IS
'true if kafka.json_parse() would succeed on the message';

CREATE FUNCTION kafka.from_varbyte(pg_catalog.bytea, format pg_catalog.text)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'kafka_from_varbyte'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka.from_varbyte(pg_catalog.bytea, pg_catalog.text) IS
'bytes as text in format hex, binary, utf8 or base64';

CREATE FUNCTION kafka.header(pg_catalog.jsonb, name pg_catalog.text)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'kafka_header'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka.header(pg_catalog.jsonb, pg_catalog.text) IS
'text value of the first header with this name in kafka_headers';

CREATE FUNCTION kafka.header_bytes(pg_catalog.jsonb, name pg_catalog.text)
RETURNS pg_catalog.bytea
AS 'MODULE_PATHNAME', 'kafka_header_bytes'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka.header_bytes(pg_catalog.jsonb, pg_catalog.text) IS
'raw bytes of the first header with this name in kafka_headers';

-- Internal, for the regression tests: the kafka_headers builder of the scan.
CREATE FUNCTION kafka._build_headers_for_test(names pg_catalog.text[],
                                              header_values pg_catalog.bytea[])
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'kafka_build_headers_for_test'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka._build_headers_for_test(pg_catalog.text[], pg_catalog.bytea[]) IS
'internal: builds a kafka_headers value as a scan does; for tests only';

-- The analogue of Redshift's CREATE EXTERNAL SCHEMA ... FROM KAFKA: a server,
-- a user mapping for the caller, a schema, and one foreign table per topic.
CREATE FUNCTION kafka.create_external_schema(schema_name pg_catalog.text,
                                             brokers pg_catalog.text,
                                             authentication pg_catalog.text DEFAULT 'none')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers %L, authentication %L)',
                 schema_name, brokers, authentication);
  EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I', schema_name);
  EXECUTE format('CREATE SCHEMA %I', schema_name);
  EXECUTE format('IMPORT FOREIGN SCHEMA kafka FROM SERVER %I INTO %I', schema_name, schema_name);
END
$$;

COMMENT ON FUNCTION kafka.create_external_schema(pg_catalog.text, pg_catalog.text, pg_catalog.text) IS
'create a server, user mapping and schema with one foreign table per Kafka topic';

-- Import the topics created since the schema was made (or last refreshed).
-- The server is the one the schema's foreign tables use, or else the server
-- named like the schema.  Returns the names of the tables created.
CREATE FUNCTION kafka.refresh_external_schema(schema_name pg_catalog.text)
RETURNS SETOF pg_catalog.text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  nsp pg_catalog.oid;
  srv pg_catalog.text;
  existing pg_catalog.text;
  before pg_catalog.text[];
BEGIN
  SELECT n.oid INTO nsp FROM pg_catalog.pg_namespace n WHERE n.nspname = schema_name;
  IF nsp IS NULL THEN
    RAISE EXCEPTION 'schema "%" does not exist', schema_name
      USING ERRCODE = 'invalid_schema_name';
  END IF;

  SELECT s.srvname INTO srv
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid
    JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
    JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
   WHERE c.relnamespace = nsp AND w.fdwname = 'kafka_fdw'
   LIMIT 1;
  IF srv IS NULL THEN
    SELECT s.srvname INTO srv
      FROM pg_catalog.pg_foreign_server s
      JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
     WHERE s.srvname = schema_name AND w.fdwname = 'kafka_fdw';
  END IF;
  IF srv IS NULL THEN
    RAISE EXCEPTION 'schema "%" is not a Kafka external schema', schema_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create it with kafka.create_external_schema().';
  END IF;

  SELECT pg_catalog.array_agg(c.relname::pg_catalog.text),
         pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ')
    INTO before, existing
    FROM pg_catalog.pg_class c WHERE c.relnamespace = nsp;

  IF existing IS NULL THEN
    EXECUTE format('IMPORT FOREIGN SCHEMA kafka FROM SERVER %I INTO %I', srv, schema_name);
  ELSE
    EXECUTE format('IMPORT FOREIGN SCHEMA kafka EXCEPT (%s) FROM SERVER %I INTO %I',
                   existing, srv, schema_name);
  END IF;

  RETURN QUERY
    SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c
     WHERE c.relnamespace = nsp
       AND NOT (c.relname::pg_catalog.text = ANY (COALESCE(before, '{}')))
     ORDER BY 1;
END
$$;

COMMENT ON FUNCTION kafka.refresh_external_schema(pg_catalog.text) IS
'import the Kafka topics created since the external schema was made';

------------------------------------------------------------------------------
-- Streaming materialized views (src/refresh.c).  The extension's own state,
-- keyed by the view's OID.  Only the extension's C code writes these tables
-- (as the extension owner); users read them through the views below.
------------------------------------------------------------------------------

CREATE TABLE kafka.stream_state (
  mv_oid pg_catalog.oid PRIMARY KEY,          -- the streaming materialized view
  ftable_oid pg_catalog.oid NOT NULL,         -- the kafka_fdw table it reads
  topic pg_catalog.text NOT NULL,
  auto_refresh pg_catalog.bool NOT NULL DEFAULT false,
  next_start pg_catalog.text,                 -- start position for partitions without offsets
  created_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
  last_refresh_time pg_catalog.timestamptz,
  last_refresh_rows pg_catalog.int8,
  last_refresh_status pg_catalog.text,
  last_error pg_catalog.text,
  last_error_time pg_catalog.timestamptz,
  last_success_time pg_catalog.timestamptz,
  total_rows pg_catalog.int8 NOT NULL DEFAULT 0
);

-- The next offset to ingest, per view and partition.  Committed in the same
-- transaction as the rows it accounts for.
CREATE TABLE kafka.stream_offsets (
  mv_oid pg_catalog.oid NOT NULL,
  partition_id pg_catalog.int4 NOT NULL,
  next_offset pg_catalog.int8 NOT NULL,
  PRIMARY KEY (mv_oid, partition_id)
);

-- One row per refresh per partition read.
CREATE TABLE kafka.stream_scan_log (
  mv_oid pg_catalog.oid NOT NULL,
  transaction_id pg_catalog.int8 NOT NULL,
  record_time pg_catalog.timestamptz NOT NULL,
  partition_id pg_catalog.int4 NOT NULL,
  start_position pg_catalog.int8 NOT NULL,
  latest_position pg_catalog.int8 NOT NULL,
  scanned_rows pg_catalog.int8 NOT NULL,
  skipped_rows pg_catalog.int8 NOT NULL,
  scanned_bytes pg_catalog.int8 NOT NULL,
  stream_record_time_min pg_catalog.timestamptz,
  stream_record_time_max pg_catalog.timestamptz
);
CREATE INDEX ON kafka.stream_scan_log (record_time);
CREATE INDEX ON kafka.stream_scan_log (mv_oid);

-- Records skipped by a refresh, and ranges lost to retention.
CREATE TABLE kafka.stream_error_log (
  mv_oid pg_catalog.oid NOT NULL,
  transaction_id pg_catalog.int8 NOT NULL,
  record_time pg_catalog.timestamptz NOT NULL,
  partition_id pg_catalog.int4 NOT NULL,
  position pg_catalog.int8 NOT NULL,           -- offset; for a lost range its first offset
  stream_timestamp_type pg_catalog."char",
  stream_timestamp pg_catalog.timestamptz,
  error_code pg_catalog.text NOT NULL,
  error_reason pg_catalog.text NOT NULL,
  key_prefix pg_catalog.bytea,
  value_prefix pg_catalog.bytea,
  lost_to pg_catalog.int8,                     -- for a lost range: one past its last offset
  lost_count pg_catalog.int8
);
CREATE INDEX ON kafka.stream_error_log (record_time);
CREATE INDEX ON kafka.stream_error_log (mv_oid);

REVOKE ALL ON kafka.stream_state, kafka.stream_offsets, kafka.stream_scan_log,
              kafka.stream_error_log FROM PUBLIC;

-- Offsets and state are not data to dump: a restored streaming view is
-- refreshed from its topic (see README, "pg_dump").

-- SYS_STREAM_SCAN_STATES
CREATE VIEW kafka.stream_scan_states AS
SELECT fn.nspname::pg_catalog.text AS external_schema_name,
       l.topic AS stream_name,
       pg_catalog.format('%I.%I', mn.nspname, mc.relname) AS mv_name,
       s.transaction_id, s.record_time, s.partition_id, s.start_position, s.latest_position,
       s.scanned_rows, s.skipped_rows, s.scanned_bytes,
       s.stream_record_time_min, s.stream_record_time_max
  FROM kafka.stream_scan_log s
  JOIN kafka.stream_state l ON l.mv_oid = s.mv_oid
  JOIN pg_catalog.pg_class mc ON mc.oid = s.mv_oid
  JOIN pg_catalog.pg_namespace mn ON mn.oid = mc.relnamespace
  LEFT JOIN pg_catalog.pg_class fc ON fc.oid = l.ftable_oid
  LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace;

-- SYS_STREAM_SCAN_ERRORS
CREATE VIEW kafka.stream_scan_errors AS
SELECT fn.nspname::pg_catalog.text AS external_schema_name,
       l.topic AS stream_name,
       pg_catalog.format('%I.%I', mn.nspname, mc.relname) AS mv_name,
       e.transaction_id, e.stream_timestamp_type, e.stream_timestamp, e.record_time,
       e.partition_id, e.position, e.error_code, e.error_reason,
       e.key_prefix, e.value_prefix, e.lost_to, e.lost_count
  FROM kafka.stream_error_log e
  JOIN kafka.stream_state l ON l.mv_oid = e.mv_oid
  JOIN pg_catalog.pg_class mc ON mc.oid = e.mv_oid
  JOIN pg_catalog.pg_namespace mn ON mn.oid = mc.relnamespace
  LEFT JOIN pg_catalog.pg_class fc ON fc.oid = l.ftable_oid
  LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace;

CREATE VIEW kafka.streams AS
SELECT l.mv_oid::pg_catalog.regclass AS mv_name,
       l.ftable_oid::pg_catalog.regclass AS source_table,
       l.topic, l.auto_refresh,
       l.last_refresh_time, l.last_refresh_rows, l.last_refresh_status,
       l.last_error, l.last_error_time, l.last_success_time,
       l.total_rows, l.created_at
  FROM kafka.stream_state l;

GRANT SELECT ON kafka.stream_scan_states, kafka.stream_scan_errors, kafka.streams TO PUBLIC;

-- Per partition: the next offset the view will ingest, the broker's high
-- watermark, and the lag between them.  Asks the brokers.
CREATE FUNCTION kafka.stream_lag(view pg_catalog.regclass,
                                 OUT partition_id pg_catalog.int4,
                                 OUT next_offset pg_catalog.int8,
                                 OUT high_watermark pg_catalog.int8,
                                 OUT lag pg_catalog.int8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kafka_stream_lag'
LANGUAGE C STRICT;

CREATE VIEW kafka.stream_lag AS
SELECT l.mv_oid::pg_catalog.regclass AS mv_name, l.topic, g.*
  FROM kafka.stream_state l, LATERAL kafka.stream_lag(l.mv_oid::pg_catalog.regclass) g;
GRANT SELECT ON kafka.stream_lag TO PUBLIC;

-- Empty a streaming view and ingest again from 'earliest', 'latest' or a
-- timestamp: replay.
CREATE FUNCTION kafka.reset_stream(view pg_catalog.regclass,
                                   start pg_catalog.text DEFAULT 'earliest')
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'kafka_reset_stream'
LANGUAGE C STRICT;

-- AUTO REFRESH YES/NO: a background worker keeps the view within about a
-- second of its topic (needs kafka_fdw in shared_preload_libraries).
CREATE FUNCTION kafka.set_auto_refresh(view pg_catalog.regclass, enabled pg_catalog.bool)
RETURNS void
AS 'MODULE_PATHNAME', 'kafka_set_auto_refresh'
LANGUAGE C STRICT;

-- Forget the state of dropped streaming views.
CREATE FUNCTION kafka._drop_stream_state()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  dropped pg_catalog.oid[];
BEGIN
  SELECT pg_catalog.array_agg(d.objid) INTO dropped
    FROM pg_catalog.pg_event_trigger_dropped_objects() d
   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0;
  IF dropped IS NULL THEN
    RETURN;
  END IF;
  DELETE FROM kafka.stream_offsets WHERE mv_oid = ANY (dropped);
  DELETE FROM kafka.stream_scan_log WHERE mv_oid = ANY (dropped);
  DELETE FROM kafka.stream_error_log WHERE mv_oid = ANY (dropped);
  DELETE FROM kafka.stream_state WHERE mv_oid = ANY (dropped);
END
$$;
REVOKE ALL ON FUNCTION kafka._drop_stream_state() FROM PUBLIC;

CREATE EVENT TRIGGER kafka_fdw_drop_stream ON sql_drop
  EXECUTE FUNCTION kafka._drop_stream_state();

-- Refuse CREATE/REFRESH of a streaming view in a session where kafka_fdw's
-- command hook was not in place when the command began (not preloaded).
CREATE FUNCTION kafka._guard_streaming_ddl()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'kafka_guard_streaming_ddl'
LANGUAGE C;
REVOKE ALL ON FUNCTION kafka._guard_streaming_ddl() FROM PUBLIC;

CREATE EVENT TRIGGER kafka_fdw_guard_streaming ON ddl_command_start
  WHEN TAG IN ('CREATE MATERIALIZED VIEW', 'REFRESH MATERIALIZED VIEW')
  EXECUTE FUNCTION kafka._guard_streaming_ddl();

-- The librdkafka configuration a handle of the server gets for the current
-- user, secrets redacted: for diagnosing connection problems.  Superusers only
-- (the C function checks too).
CREATE FUNCTION kafka.connection_config(server pg_catalog.name,
                                        OUT property pg_catalog.text,
                                        OUT value pg_catalog.text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kafka_connection_config'
LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION kafka.connection_config(pg_catalog.name) FROM PUBLIC;

COMMENT ON FUNCTION kafka.connection_config(pg_catalog.name) IS
'effective librdkafka configuration of a server for the current user, secrets redacted (superuser)';

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

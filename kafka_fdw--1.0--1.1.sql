/* kafka_fdw--1.0--1.1.sql: update of kafka_fdw from 1.0 to 1.1.
 * CREATE EXTENSION kafka_fdw installs 1.0 and then applies this script (there
 * is no complete 1.1 script), so new installations and updated ones are the
 * same.  As in 1.0, everything is schema-qualified, operators included, so
 * that the script is safe whatever the search_path of the user running it.
 * The script is in sections; each says what it is for. */

\echo Use "ALTER EXTENSION kafka_fdw UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Section 1: privileges and search_path safety (issue 10, items 1, 4, 6, 7).
------------------------------------------------------------------------------

-- 1.1 The privilege model.
--
--   * Schema kafka: USAGE for PUBLIC, so that every user can call the helpers
--     and read the monitoring views.  Nobody but the extension's owner may
--     create objects in it.
--   * Functions: executable by PUBLIC (PostgreSQL's default), except
--     kafka.connection_config (superusers; it also checks in C) and the two
--     event trigger functions (revoked in 1.0).  The functions that act on a
--     streaming view check in C before they do anything: reset_stream and
--     set_auto_refresh need its ownership, stream_lag(view) SELECT on it (or
--     its owner's privileges).  create_external_schema needs what its
--     commands need: USAGE on the wrapper kafka_fdw and CREATE on the database.
--   * The state tables (stream_state, stream_offsets, stream_scan_log,
--     stream_error_log) stay closed: only the extension's code, running as the
--     extension's owner, reads and writes them.
--   * The monitoring views (below) are readable by PUBLIC and show only the
--     rows of streaming views the user may read: those whose owner's
--     privileges the user has (pg_has_role ... USAGE), those the user may
--     SELECT from, and for superusers all.
GRANT USAGE ON SCHEMA kafka TO PUBLIC;
REVOKE ALL ON kafka.stream_state, kafka.stream_offsets, kafka.stream_scan_log,
              kafka.stream_error_log FROM PUBLIC;

-- 1.2 The SQL-language functions of 1.0, with every operator and function
-- qualified as well as the pinned search_path (defence in depth).  Their
-- lines are those of 1.0, so that errors name the same lines.

CREATE OR REPLACE FUNCTION kafka.create_external_schema(schema_name pg_catalog.text,
                                                        brokers pg_catalog.text,
                                                        authentication pg_catalog.text DEFAULT 'none')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE pg_catalog.format('CREATE SERVER %I FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers %L, authentication %L)',
                            schema_name, brokers, authentication);
  EXECUTE pg_catalog.format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I', schema_name);
  EXECUTE pg_catalog.format('CREATE SCHEMA %I', schema_name);
  EXECUTE pg_catalog.format('IMPORT FOREIGN SCHEMA kafka FROM SERVER %I INTO %I', schema_name, schema_name);
END
$$;

CREATE OR REPLACE FUNCTION kafka.refresh_external_schema(schema_name pg_catalog.text)
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
  SELECT n.oid INTO nsp FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) schema_name;
  IF nsp IS NULL THEN
    RAISE EXCEPTION 'schema "%" does not exist', schema_name
      USING ERRCODE = 'invalid_schema_name';
  END IF;

  SELECT s.srvname INTO srv
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid OPERATOR(pg_catalog.=) c.oid
    JOIN pg_catalog.pg_foreign_server s ON s.oid OPERATOR(pg_catalog.=) ft.ftserver
    JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
   WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp AND w.fdwname OPERATOR(pg_catalog.=) 'kafka_fdw'
   LIMIT 1;
  IF srv IS NULL THEN
    SELECT s.srvname INTO srv
      FROM pg_catalog.pg_foreign_server s
      JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
     WHERE s.srvname OPERATOR(pg_catalog.=) schema_name AND w.fdwname OPERATOR(pg_catalog.=) 'kafka_fdw';
  END IF;
  IF srv IS NULL THEN
    RAISE EXCEPTION 'schema "%" is not a Kafka external schema', schema_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create it with kafka.create_external_schema().';
  END IF;

  SELECT pg_catalog.array_agg(c.relname::pg_catalog.text),
         pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ')
    INTO before, existing
    FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp;

  IF existing IS NULL THEN
    EXECUTE pg_catalog.format('IMPORT FOREIGN SCHEMA kafka FROM SERVER %I INTO %I', srv, schema_name);
  ELSE
    EXECUTE pg_catalog.format('IMPORT FOREIGN SCHEMA kafka EXCEPT (%s) FROM SERVER %I INTO %I',
                              existing, srv, schema_name);
  END IF;

  RETURN QUERY
    SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c
     WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp
       AND NOT (c.relname::pg_catalog.text OPERATOR(pg_catalog.=)
                ANY (COALESCE(before, '{}'::pg_catalog.text[])))
     ORDER BY 1;
END
$$;

CREATE OR REPLACE FUNCTION kafka._drop_stream_state()
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
   WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
     AND d.objsubid OPERATOR(pg_catalog.=) 0;
  IF dropped IS NULL THEN
    RETURN;
  END IF;
  DELETE FROM kafka.stream_offsets WHERE mv_oid OPERATOR(pg_catalog.=) ANY (dropped);
  DELETE FROM kafka.stream_scan_log WHERE mv_oid OPERATOR(pg_catalog.=) ANY (dropped);
  DELETE FROM kafka.stream_error_log WHERE mv_oid OPERATOR(pg_catalog.=) ANY (dropped);
  DELETE FROM kafka.stream_state WHERE mv_oid OPERATOR(pg_catalog.=) ANY (dropped);
END
$$;

-- 1.3 The monitoring views: only the rows of streaming views the user may
-- read (see 1.1), the rule written once, in kafka._readable_streams.
-- security_barrier: a function in the user's WHERE clause sees no row the
-- filter removes.  Column lists as in 1.0 (stream_lag gains "error" at the
-- end), so CREATE OR REPLACE keeps the users' views built on them.

-- The streaming views the current user may read, with the names the views
-- below show.  Granted to nobody: the views read it with their owner's
-- rights, as they read the state tables; the functions in its WHERE clause
-- run as the user who queries them.
CREATE VIEW kafka._readable_streams WITH (security_barrier = true) AS
SELECT l.mv_oid, l.topic,
       pg_catalog.format('%I.%I', mn.nspname, mc.relname) AS mv_name,
       fn.nspname::pg_catalog.text AS external_schema_name
  FROM kafka.stream_state l
  JOIN pg_catalog.pg_class mc ON mc.oid OPERATOR(pg_catalog.=) l.mv_oid
  JOIN pg_catalog.pg_namespace mn ON mn.oid OPERATOR(pg_catalog.=) mc.relnamespace
  LEFT JOIN pg_catalog.pg_class fc ON fc.oid OPERATOR(pg_catalog.=) l.ftable_oid
  LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid OPERATOR(pg_catalog.=) fc.relnamespace
 WHERE pg_catalog.pg_has_role(mc.relowner, 'USAGE')
    OR pg_catalog.has_table_privilege(mc.oid, 'SELECT');
REVOKE ALL ON kafka._readable_streams FROM PUBLIC;

CREATE OR REPLACE VIEW kafka.stream_scan_states WITH (security_barrier = true) AS
SELECT r.external_schema_name, r.topic AS stream_name, r.mv_name,
       s.transaction_id, s.record_time, s.partition_id, s.start_position, s.latest_position,
       s.scanned_rows, s.skipped_rows, s.scanned_bytes,
       s.stream_record_time_min, s.stream_record_time_max
  FROM kafka.stream_scan_log s
  JOIN kafka._readable_streams r ON r.mv_oid OPERATOR(pg_catalog.=) s.mv_oid;

CREATE OR REPLACE VIEW kafka.stream_scan_errors WITH (security_barrier = true) AS
SELECT r.external_schema_name, r.topic AS stream_name, r.mv_name,
       e.transaction_id, e.stream_timestamp_type, e.stream_timestamp, e.record_time,
       e.partition_id, e.position, e.error_code, e.error_reason,
       e.key_prefix, e.value_prefix, e.lost_to, e.lost_count
  FROM kafka.stream_error_log e
  JOIN kafka._readable_streams r ON r.mv_oid OPERATOR(pg_catalog.=) e.mv_oid;

CREATE OR REPLACE VIEW kafka.streams WITH (security_barrier = true) AS
SELECT l.mv_oid::pg_catalog.regclass AS mv_name,
       l.ftable_oid::pg_catalog.regclass AS source_table,
       l.topic, l.auto_refresh,
       l.last_refresh_time, l.last_refresh_rows, l.last_refresh_status,
       l.last_error, l.last_error_time, l.last_success_time,
       l.total_rows, l.created_at
  FROM kafka.stream_state l
  JOIN kafka._readable_streams r ON r.mv_oid OPERATOR(pg_catalog.=) l.mv_oid;

-- The rows of kafka.stream_lag: every streaming view the user may read (the
-- C function applies the rule of 1.1), asking the brokers as the user.  A view
-- whose cluster cannot be reached or whose topic is missing gets one row with
-- NULL numbers and the reason in "error" instead of failing the query; an
-- unreachable cluster is asked once per query, however many views use it.
CREATE FUNCTION kafka._stream_lag_rows(OUT mv_oid pg_catalog.oid,
                                       OUT topic pg_catalog.text,
                                       OUT partition_id pg_catalog.int4,
                                       OUT next_offset pg_catalog.int8,
                                       OUT high_watermark pg_catalog.int8,
                                       OUT lag pg_catalog.int8,
                                       OUT error pg_catalog.text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kafka_stream_lag_rows'
LANGUAGE C STRICT;

COMMENT ON FUNCTION kafka._stream_lag_rows() IS
'internal: the rows of the view kafka.stream_lag';

CREATE OR REPLACE VIEW kafka.stream_lag WITH (security_barrier = true) AS
SELECT g.mv_oid::pg_catalog.regclass AS mv_name, g.topic,
       g.partition_id, g.next_offset, g.high_watermark, g.lag, g.error
  FROM kafka._stream_lag_rows() g;

-- End of section 1.

------------------------------------------------------------------------------
-- Section 2: topic identity (issue 10, item 2; src/refresh.c, src/scan.c).
-- The last record a view ingested from each partition, read again by the
-- next refresh to check that the offsets still belong to the same log (a
-- topic deleted and recreated, or a server pointed at another cluster, is
-- refused instead of being read from offsets of another log).  NULL: not
-- known yet (rows written by 1.0, or no record ingested from the partition).
------------------------------------------------------------------------------
ALTER TABLE kafka.stream_offsets
  ADD COLUMN last_offset pg_catalog.int8,
  ADD COLUMN last_timestamp_ms pg_catalog.int8,   -- -1: the record had none
  ADD COLUMN last_key_len pg_catalog.int4,        -- -1: null key
  ADD COLUMN last_value_len pg_catalog.int4;      -- -1: null value

-- End of section 2.

------------------------------------------------------------------------------
-- Section 3: kinds of streams (src/refresh.c dispatches on it).
-- What a refresh does with the new records of a stream:
--   'v'  appends them as rows of a streaming materialized view;
--   'a'  folds them into the groups of an aggregating streaming view;
--   'r'  applies them as change events to a replica table (CDC).
-- Streams of 1.0 are all 'v'.
------------------------------------------------------------------------------
ALTER TABLE kafka.stream_state
  ADD COLUMN kind pg_catalog."char" NOT NULL DEFAULT 'v'
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['v', 'a', 'r']::pg_catalog."char"[]));

-- End of section 3.

------------------------------------------------------------------------------
-- Section 4: change data capture (src/cdc_*.c).
-- A replica table is a stream of kind 'r': the Debezium change events of a
-- topic applied by primary key, exactly once, with the offsets in the same
-- transaction.  Applied by kafka.apply_replica() or auto refresh; shown in
-- kafka.streams (its "kind" column), stream_lag, stream_scan_states/errors.
------------------------------------------------------------------------------
CREATE FUNCTION kafka.create_replica(replica pg_catalog.text,
                                     source pg_catalog.regclass,
                                     with_data pg_catalog.bool DEFAULT true)
RETURNS pg_catalog.regclass
AS 'MODULE_PATHNAME', 'kafka_create_replica'
LANGUAGE C STRICT;

COMMENT ON FUNCTION kafka.create_replica(pg_catalog.text, pg_catalog.regclass, pg_catalog.bool) IS
'make a table the replica of the Debezium topic of a Kafka table (creating it from the events'' schema if it does not exist) and apply the topic''s events';

CREATE FUNCTION kafka.create_replicas(source_schema pg_catalog.name,
                                      target_schema pg_catalog.name,
                                      topic_prefix pg_catalog.text DEFAULT NULL)
RETURNS SETOF pg_catalog.regclass
AS 'MODULE_PATHNAME', 'kafka_create_replicas'
LANGUAGE C;

COMMENT ON FUNCTION kafka.create_replicas(pg_catalog.name, pg_catalog.name, pg_catalog.text) IS
'a replica in target_schema for every Debezium table topic <prefix>.<database>.<table> of the Kafka tables in source_schema';

CREATE FUNCTION kafka.apply_replica(replica pg_catalog.regclass)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'kafka_apply_replica'
LANGUAGE C STRICT;

COMMENT ON FUNCTION kafka.apply_replica(pg_catalog.regclass) IS
'apply the change events that arrived since the last apply; returns the number of events that changed the table';

-- kafka.streams gains the kind of each stream, at the end (CREATE OR
-- REPLACE keeps the users' views built on it).
CREATE OR REPLACE VIEW kafka.streams WITH (security_barrier = true) AS
SELECT l.mv_oid::pg_catalog.regclass AS mv_name,
       l.ftable_oid::pg_catalog.regclass AS source_table,
       l.topic, l.auto_refresh,
       l.last_refresh_time, l.last_refresh_rows, l.last_refresh_status,
       l.last_error, l.last_error_time, l.last_success_time,
       l.total_rows, l.created_at,
       CASE l.kind WHEN 'v' THEN 'view' WHEN 'a' THEN 'aggregate'
                   WHEN 'r' THEN 'replica' END AS kind
  FROM kafka.stream_state l
  JOIN kafka._readable_streams r ON r.mv_oid OPERATOR(pg_catalog.=) l.mv_oid;

-- End of section 4.

------------------------------------------------------------------------------
-- Section 5: operations (issue 15; src/stream_dump.c).  A logical dump
-- (pg_dump) keeps every row and the offsets of every streaming view, so that
-- a restore loses none of the records Kafka's retention has deleted since.
--
-- pg_dump writes a materialized view without its rows (CREATE ... WITH NO
-- DATA, then REFRESH in post-data) and would not dump the state tables,
-- whose rows are keyed by OIDs that change on restore anyway.  So:
--
--   * kafka.stream_dump is an extension configuration table, always empty.
--     Its dump condition adds the rows of kafka._dump_contents(), read in
--     pg_dump's snapshot: per streaming view the caller may read, one 'row'
--     line per row of the view (the row as text) and one 'state' line (its
--     state, offsets and logs as jsonb, with the number of rows), named by
--     the view's qualified name, not its OID.
--   * On restore, the COPY into kafka.stream_dump is moved (by a trigger, in
--     the COPY's transaction) to kafka.stream_restore, which only the extension reads; the REFRESH
--     that pg_dump writes after the view then puts the rows and offsets back
--     instead of ingesting the topic again, and goes on from those offsets.
--   * A REFRESH restored from a dump that lacks the view's rows (pg_dump
--     --table, --exclude-table-data, a failed COPY) is refused (see
--     kafka_stream_restore_dumped()).
------------------------------------------------------------------------------

CREATE TABLE kafka.stream_dump (
  mv_name pg_catalog.text NOT NULL,     -- the view, format('%I.%I', schema, name)
  kind pg_catalog.text NOT NULL,        -- 'row' or 'state'
  payload pg_catalog.text NOT NULL      -- the row as text, or the state as jsonb
);
-- readable so that pg_dump works for any user; it never holds a row
GRANT SELECT ON kafka.stream_dump TO PUBLIC;

CREATE TABLE kafka.stream_restore (
  mv_name pg_catalog.text NOT NULL,
  kind pg_catalog.text NOT NULL,
  payload pg_catalog.text NOT NULL
);
CREATE INDEX ON kafka.stream_restore (mv_name, kind);
REVOKE ALL ON kafka.stream_restore FROM PUBLIC;

-- Moves what the statement (the restore's COPY) inserted, before it commits:
-- no other session ever sees a row in kafka.stream_dump.  Per statement, so
-- that COPY keeps its multi-row inserts.
CREATE FUNCTION kafka._stage_dumped_rows()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  WITH moved AS (DELETE FROM kafka.stream_dump RETURNING mv_name, kind, payload)
  INSERT INTO kafka.stream_restore (mv_name, kind, payload)
  SELECT mv_name, kind, payload FROM moved;
  PERFORM kafka._restore_replicas();
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION kafka._stage_dumped_rows() FROM PUBLIC;

CREATE TRIGGER stage_dumped_rows AFTER INSERT ON kafka.stream_dump
  FOR EACH STATEMENT EXECUTE FUNCTION kafka._stage_dumped_rows();

-- A streaming view's state, offsets and logs as jsonb (needs SELECT on the
-- view or its owner's privileges).
CREATE FUNCTION kafka._dump_state(view pg_catalog.regclass)
RETURNS pg_catalog.jsonb
AS 'MODULE_PATHNAME', 'kafka_dump_state'
LANGUAGE C STRICT STABLE;

-- The streaming views the caller may read.
CREATE FUNCTION kafka._dump_streams()
RETURNS SETOF pg_catalog.regclass
AS 'MODULE_PATHNAME', 'kafka_dump_streams'
LANGUAGE C STRICT STABLE;

-- What a dump holds of the streaming views the caller may read.  STABLE:
-- every query sees the calling statement's snapshot, so a view's rows and
-- its offsets are those of one moment.
CREATE FUNCTION kafka._dump_contents(OUT mv_name pg_catalog.text,
                                     OUT kind pg_catalog.text,
                                     OUT payload pg_catalog.text)
RETURNS SETOF record
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v record;
  st pg_catalog.jsonb;
  n pg_catalog.int8;
  sn pg_catalog.int8;
BEGIN
  FOR v IN
    SELECT c.oid, pg_catalog.format('%I.%I', ns.nspname, c.relname) AS name
      FROM kafka._dump_streams() s(mv)
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.mv::pg_catalog.oid
      JOIN pg_catalog.pg_namespace ns ON ns.oid OPERATOR(pg_catalog.=) c.relnamespace
     ORDER BY c.oid
  LOOP
    st := kafka._dump_state(v.oid::pg_catalog.regclass);
    IF st OPERATOR(pg_catalog.->) 'state' OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) 'r' THEN
      -- a replica is a table: pg_dump dumps its rows
      EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM ONLY %s', v.name) INTO n;
    ELSE
      RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT %L::pg_catalog.text, ''row''::pg_catalog.text, r::pg_catalog.text FROM %s r',
        v.name, v.name);
      GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    st := st OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('rows', n);
    IF st OPERATOR(pg_catalog.->) 'state' OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) 'a' THEN
      RETURN QUERY SELECT v.name, 'aggregate_state'::pg_catalog.text, a.s
                     FROM kafka._dump_aggregate_state(v.oid::pg_catalog.regclass) a(s);
      GET DIAGNOSTICS sn = ROW_COUNT;
      st := st OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('aggregate_state_rows', sn);
    END IF;
    mv_name := v.name;
    kind := 'state';
    payload := st::pg_catalog.text;
    RETURN NEXT;
  END LOOP;
END
$$;

-- pg_dump appends the condition to "SELECT ... FROM kafka.stream_dump".
SELECT pg_catalog.pg_extension_config_dump('kafka.stream_dump',
  'WHERE false UNION ALL SELECT d.mv_name, d.kind, d.payload FROM kafka._dump_contents() d');

-- End of section 5.

------------------------------------------------------------------------------
-- Section 6: dump and restore of every kind of stream (issue 15;
-- src/stream_dump.c).  Section 5 dumps a streaming view's rows and state.
-- The other kinds:
--
--   * 'r', a replica, is an ordinary table: pg_dump dumps its rows itself,
--     so kafka.stream_dump holds only its 'state' line (with the name of its
--     Kafka table and its number of rows, read in pg_dump's snapshot).  The
--     restore's COPY into kafka.stream_dump registers the table as a replica
--     again with the dumped offsets (kafka._restore_replicas(), called by the
--     staging trigger), whether pg_restore restores the table's rows before
--     or after; its first apply checks that the table holds the dumped rows
--     (kafka.stream_state.restore_rows) before it goes on from those offsets.
--   * 'a', an aggregating view: its groups are dumped as a view's rows, and
--     the sums and counts of its avg columns (the table
--     kafka.aggregate_state_<view oid>, a member of the extension, so that
--     pg_dump leaves it and its OID-bound name out) as 'aggregate_state'
--     lines; the restore's REFRESH puts both back with the offsets.
------------------------------------------------------------------------------

-- The number of rows of the dump a replica was restored from, until its
-- first apply has found them in the table; NULL: nothing to check.
ALTER TABLE kafka.stream_state ADD COLUMN restore_rows pg_catalog.int8;

-- The avg state of an aggregating view, one text row per group (needs SELECT
-- on the view or its owner's privileges; converted as the view's owner).
CREATE FUNCTION kafka._dump_aggregate_state(view pg_catalog.regclass)
RETURNS SETOF pg_catalog.text
AS 'MODULE_PATHNAME', 'kafka_dump_aggregate_state'
LANGUAGE C STRICT STABLE;

-- Registers the replicas whose 'state' lines a restore has staged.
CREATE FUNCTION kafka._restore_replicas()
RETURNS void
AS 'MODULE_PATHNAME', 'kafka_restore_replicas'
LANGUAGE C;
REVOKE ALL ON FUNCTION kafka._restore_replicas() FROM PUBLIC;


-- The avg state tables are members of the extension (so that pg_dump leaves
-- them out), and PostgreSQL does not drop a member with the view it belongs
-- to: the drop of an aggregating view drops its state table here.
CREATE FUNCTION kafka._drop_aggregate_state()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  side pg_catalog.regclass;
BEGIN
  FOR side IN
    SELECT c.oid::pg_catalog.regclass
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
      JOIN pg_catalog.pg_class c
        ON c.relname OPERATOR(pg_catalog.=) ('aggregate_state_' OPERATOR(pg_catalog.||) d.objid::pg_catalog.text)
       AND c.relnamespace OPERATOR(pg_catalog.=) 'kafka'::pg_catalog.regnamespace
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
       AND d.objsubid OPERATOR(pg_catalog.=) 0 AND d.object_type OPERATOR(pg_catalog.=) 'materialized view'
  LOOP
    EXECUTE pg_catalog.format('ALTER EXTENSION kafka_fdw DROP TABLE %s', side);
    EXECUTE pg_catalog.format('DROP TABLE %s', side);
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION kafka._drop_aggregate_state() FROM PUBLIC;

CREATE EVENT TRIGGER kafka_fdw_drop_aggregate_state ON sql_drop
  EXECUTE FUNCTION kafka._drop_aggregate_state();

-- End of section 6.

-- Section 7: kafka.json_parse(v) ->> k without the jsonb (issue 14).
--
-- A streaming refresh evaluates its view's kafka.json_parse(v) ->> 'k' as
-- kafka._json_field_text(v, 'k'): the same result, and the same errors, in
-- one parse that builds nothing (src/functions.c).  Callable by anyone, as
-- json_parse is; not meant to be called by hand.

CREATE FUNCTION kafka._json_field_text(pg_catalog.bytea, key pg_catalog.text)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'kafka_json_field_text'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION kafka._json_field_text(pg_catalog.bytea, pg_catalog.text) IS
'kafka.json_parse($1) ->> $2, without building the jsonb (used by streaming refreshes)';

-- End of section 7.

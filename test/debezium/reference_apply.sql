-- test/debezium/reference_apply.sql — a reference CDC apply in PL/pgSQL: a TEST DOUBLE of kafka_fdw's
-- kafka.create_replica / kafka.apply_replica (issue 12), so that the replica parts of the CDC tests
-- (test/t/58N_kafka_debezium_*.sh) can run before, and be checked against, the C implementation.
-- Loaded by those tests only with CDC_REFERENCE_APPLY=1 and only where kafka.apply_replica does not
-- exist (as superuser: it creates functions in schema kafka and its own schema cdc_ref). Slow (one
-- dynamic statement per event, the whole topic scanned per call) and without auto apply.
--
-- kafka.create_replica(replica text, source regclass, with_data boolean DEFAULT true) → regclass: a
--   replica of the Debezium topic read by the foreign table source. An existing table is used as
--   declared (its primary key is the key); else it is created from the first event's Connect schema
--   (JSON with schemas.enable=true). with_data: apply the topic's events at once.
-- kafka.apply_replica(replica regclass) → bigint: applies, in one transaction, the events past the
--   stored offsets (per partition, in offset order): r/c/u upsert by primary key (a column whose value
--   is __debezium_unavailable_value keeps its old value), d deletes by the key, t empties the table,
--   tombstones are skipped; stores the next offsets; returns the number of events applied (not
--   tombstones, not redeliveries). Redelivered events (Kafka Connect restarted: at-least-once) are
--   skipped by Debezium's source.sequence, monotonic within a partition: replaying them is not
--   harmless (a replayed create of a moved row, then a replayed move, would carry stale values).
--   A primary-key update (d of the old key with header __debezium.newkey, c of the new key with
--   __debezium.oldkey) moves the row: the create's unavailable (unchanged TOASTed) columns take the old
--   row's values, whichever of the two events comes first.
CREATE SCHEMA cdc_ref;
CREATE TABLE cdc_ref.replicas (replica regclass PRIMARY KEY, source regclass NOT NULL);
-- per partition: the next offset, and the stream position of the last streamed event applied
-- (Debezium's source.sequence: last commit LSN, LSN; then 0 for a delete, 1 otherwise: the delete and
-- the create of a primary-key update share their LSN); an event at or before it is a redelivery
CREATE TABLE cdc_ref.offsets (replica regclass, kafka_partition bigint, next_offset bigint NOT NULL,
                              commit_lsn numeric, lsn numeric, op_rank int,
                              PRIMARY KEY (replica, kafka_partition));
-- rows moved by a primary-key update whose create event is not applied yet: its unchanged TOASTed
-- columns arrive as __debezium_unavailable_value and are taken from here (or from the old row, when
-- the create comes first: the two events may be in different partitions)
CREATE TABLE cdc_ref.moved (replica regclass, newkey jsonb, oldrow jsonb);
GRANT USAGE ON SCHEMA cdc_ref TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON cdc_ref.replicas, cdc_ref.offsets, cdc_ref.moved TO PUBLIC;

-- the integer of base64 B: big-endian two's complement (Connect's Decimal, VariableScaleDecimal)
CREATE FUNCTION cdc_ref.unscaled(b text) RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE bs bytea := decode(b, 'base64'); n numeric := 0; i int;
BEGIN
  FOR i IN 0 .. length(bs) - 1 LOOP n := n * 256 + get_byte(bs, i); END LOOP;
  IF length(bs) > 0 AND get_byte(bs, 0) >= 128 THEN n := n - 256::numeric ^ length(bs); END IF;
  RETURN n;
END $$;

-- the text form of Debezium's JSON value V for a column of type TYP (typmod MOD)
CREATE FUNCTION cdc_ref.convert(v jsonb, typ regtype, mod int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF v IS NULL OR jsonb_typeof(v) = 'null' THEN RETURN NULL; END IF;
  CASE typ
    WHEN 'numeric'::regtype THEN
      IF jsonb_typeof(v) = 'object' THEN
        RETURN round(cdc_ref.unscaled(v->>'value') * ('1e-' || (v->>'scale'))::numeric, (v->>'scale')::int)::text;
      ELSIF jsonb_typeof(v) = 'string' THEN
        RETURN round(cdc_ref.unscaled(v #>> '{}') * ('1e-' || ((mod - 4) & 65535))::numeric, (mod - 4) & 65535)::text;
      END IF;
    WHEN 'bytea'::regtype THEN RETURN '\x' || encode(decode(v #>> '{}', 'base64'), 'hex');
    WHEN 'date'::regtype THEN RETURN ('1970-01-01'::date + (v #>> '{}')::int)::text;
    WHEN 'time'::regtype THEN RETURN ('00:00'::time + (v #>> '{}')::bigint * interval '1 microsecond')::text;
    WHEN 'timestamp'::regtype THEN
      RETURN ('1970-01-01'::timestamp + (v #>> '{}')::bigint * interval '1 microsecond')::text;
    ELSE NULL;
  END CASE;
  RETURN v #>> '{}';
END $$;

-- the WHERE condition selecting the row of REPLICA whose primary key is the key payload K
CREATE FUNCTION cdc_ref.keycond(replica regclass, k jsonb) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT string_agg(format('%I = %L::%s', a.attname, cdc_ref.convert(k->a.attname::text, a.atttypid::regtype, a.atttypmod),
                           format_type(a.atttypid, a.atttypmod)), ' AND ')
    FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
   WHERE x.indrelid = replica AND x.indisprimary
$$;

-- the payload of a JSON converter's key or value (with schemas: {"schema", "payload"})
CREATE FUNCTION cdc_ref.payload(b bytea) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN j ? 'schema' AND j ? 'payload' THEN j->'payload' ELSE j END
    FROM (SELECT convert_from(b, 'UTF8')::jsonb AS j) s
$$;

-- the column type of a Connect schema field
CREATE FUNCTION cdc_ref.sqltype(f jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE f->>'name'
    WHEN 'io.debezium.time.Date' THEN 'date'
    WHEN 'io.debezium.time.MicroTime' THEN 'time'
    WHEN 'io.debezium.time.MicroTimestamp' THEN 'timestamp'
    WHEN 'io.debezium.time.ZonedTimestamp' THEN 'timestamptz'
    WHEN 'io.debezium.data.Json' THEN 'jsonb'
    WHEN 'io.debezium.data.Uuid' THEN 'uuid'
    WHEN 'io.debezium.data.VariableScaleDecimal' THEN 'numeric'
    WHEN 'org.apache.kafka.connect.data.Decimal' THEN
      format('numeric(%s,%s)', f->'parameters'->>'connect.decimal.precision', f->'parameters'->>'scale')
    ELSE CASE f->>'type' WHEN 'int16' THEN 'smallint' WHEN 'int32' THEN 'integer' WHEN 'int64' THEN 'bigint'
      WHEN 'boolean' THEN 'boolean' WHEN 'bytes' THEN 'bytea' WHEN 'float32' THEN 'real'
      WHEN 'float64' THEN 'double precision' ELSE 'text' END
  END $$;

CREATE FUNCTION kafka.create_replica(replica text, source regclass, with_data boolean DEFAULT true)
    RETURNS regclass LANGUAGE plpgsql AS $$
DECLARE k jsonb; v jsonb; cols text; pk text;
BEGIN
  IF to_regclass(replica) IS NULL THEN
    EXECUTE format('SELECT convert_from(kafka_key, ''UTF8'')::jsonb, convert_from(kafka_value, ''UTF8'')::jsonb
                      FROM %s WHERE kafka_value IS NOT NULL AND kafka_key IS NOT NULL LIMIT 1', source) INTO k, v;
    IF v IS NULL OR NOT v ? 'schema' THEN
      RAISE EXCEPTION 'cannot create replica %: no event with a schema in %', replica, source;
    END IF;
    SELECT string_agg(format('%I %s', f->>'field', cdc_ref.sqltype(f)), ', ') INTO cols
      FROM jsonb_array_elements((SELECT e->'fields' FROM jsonb_array_elements(v->'schema'->'fields') e
                                  WHERE e->>'field' = 'after')) f;
    SELECT string_agg(quote_ident(f->>'field'), ', ') INTO pk FROM jsonb_array_elements(k->'schema'->'fields') f;
    EXECUTE format('CREATE TABLE %s (%s, PRIMARY KEY (%s))', replica, cols, pk);
  END IF;
  INSERT INTO cdc_ref.replicas VALUES (replica::regclass, source);
  IF with_data THEN PERFORM kafka.apply_replica(replica::regclass); END IF;
  RETURN replica::regclass;
END $$;

CREATE FUNCTION kafka.apply_replica(replica regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  src regclass; r record; p jsonb; k jsonb; old jsonb; seq jsonb; val text; n bigint := 0;
  pkcols text[]; cols text[]; types regtype[]; mods int[]; i int;
  ins_cols text; vals text[]; sets text; keycond text;
BEGIN
  SELECT source INTO src FROM cdc_ref.replicas WHERE cdc_ref.replicas.replica = apply_replica.replica;
  IF src IS NULL THEN RAISE EXCEPTION '% is not a replica', replica; END IF;
  SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO pkcols FROM pg_index x
    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
   WHERE x.indrelid = replica AND x.indisprimary;
  SELECT array_agg(attname::text ORDER BY attnum), array_agg(atttypid::regtype ORDER BY attnum),
         array_agg(atttypmod ORDER BY attnum)
    INTO cols, types, mods FROM pg_attribute WHERE attrelid = replica AND attnum > 0 AND NOT attisdropped;
  FOR r IN EXECUTE format('SELECT t.kafka_partition, t.kafka_offset, t.kafka_key, t.kafka_value,
                                  kafka.header(t.kafka_headers, ''__debezium.newkey'') AS newkey,
                                  kafka.header(t.kafka_headers, ''__debezium.oldkey'') AS oldkey FROM %s t
                             LEFT JOIN cdc_ref.offsets o ON o.replica = %L::regclass AND o.kafka_partition = t.kafka_partition
                            WHERE t.kafka_offset >= coalesce(o.next_offset, 0)', src, replica) LOOP
    -- no ORDER BY: a scan returns each partition in offset order, and a sort would read the whole
    -- topic before the first event (t/581 kills the broker in the middle of the apply)
    INSERT INTO cdc_ref.offsets VALUES (replica, r.kafka_partition, r.kafka_offset + 1)
      ON CONFLICT ON CONSTRAINT offsets_pkey DO UPDATE SET next_offset = EXCLUDED.next_offset;
    CONTINUE WHEN r.kafka_value IS NULL;                  -- tombstone
    p := cdc_ref.payload(r.kafka_value);
    -- a streamed event (not a snapshot one) at or before the last applied position: redelivered
    IF coalesce(p->'source'->>'snapshot', 'false') = 'false' AND p->'source' ? 'sequence' THEN
      seq := (p->'source'->>'sequence')::jsonb;
      IF EXISTS (SELECT FROM cdc_ref.offsets o WHERE o.replica = apply_replica.replica AND o.kafka_partition = r.kafka_partition
                    AND (coalesce((seq->>0)::numeric, -1), (seq->>1)::numeric, (p->>'op' <> 'd')::int)
                        <= (coalesce(o.commit_lsn, -1), o.lsn, o.op_rank)) THEN
        CONTINUE;
      END IF;
      UPDATE cdc_ref.offsets o SET commit_lsn = (seq->>0)::numeric, lsn = (seq->>1)::numeric, op_rank = (p->>'op' <> 'd')::int
       WHERE o.replica = apply_replica.replica AND o.kafka_partition = r.kafka_partition;
    END IF;
    n := n + 1;
    IF p->>'op' = 't' THEN
      EXECUTE format('DELETE FROM %s', replica);
      DELETE FROM cdc_ref.moved m WHERE m.replica = apply_replica.replica;
    ELSIF p->>'op' = 'd' THEN
      keycond := cdc_ref.keycond(replica, cdc_ref.payload(r.kafka_key));
      IF r.newkey IS NOT NULL THEN                         -- the old half of a primary-key update
        EXECUTE format('INSERT INTO cdc_ref.moved SELECT %L::regclass, %L::jsonb, to_jsonb(x) FROM %s x WHERE %s',
                       replica, r.newkey, replica, keycond);
      END IF;
      EXECUTE format('DELETE FROM %s WHERE %s', replica, keycond);
    ELSE                                                   -- r, c, u
      old := NULL;
      IF r.oldkey IS NOT NULL AND p->'after' @? '$.* ? (@ == "__debezium_unavailable_value")' THEN
        k := cdc_ref.payload(r.kafka_key);
        DELETE FROM cdc_ref.moved m WHERE m.replica = apply_replica.replica AND m.newkey = k RETURNING oldrow INTO old;
        IF old IS NULL THEN                                -- the create came first: the old row is still here
          EXECUTE format('SELECT to_jsonb(x) FROM %s x WHERE %s', replica, cdc_ref.keycond(replica, r.oldkey::jsonb)) INTO old;
        END IF;
      END IF;
      vals := ARRAY[]::text[]; ins_cols := NULL; sets := NULL;
      FOR i IN 1 .. array_length(cols, 1) LOOP
        IF p->'after'->>cols[i] = '__debezium_unavailable_value' THEN
          CONTINUE WHEN old IS NULL;                       -- keep the replica's value
          val := old->>cols[i];                            -- the moved row's value
        ELSE
          val := cdc_ref.convert(p->'after'->cols[i], types[i], mods[i]);
        END IF;
        ins_cols := concat_ws(', ', ins_cols, quote_ident(cols[i]));
        vals := vals || format('%L::%s', val, format_type(types[i], mods[i]));
        IF NOT cols[i] = ANY (pkcols) THEN
          sets := concat_ws(', ', sets, format('%I = EXCLUDED.%I', cols[i], cols[i]));
        END IF;
      END LOOP;
      EXECUTE format('INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO %s', replica, ins_cols,
                     array_to_string(vals, ', '), (SELECT string_agg(quote_ident(c), ', ') FROM unnest(pkcols) c),
                     CASE WHEN sets IS NULL THEN 'NOTHING' ELSE 'UPDATE SET ' || sets END);
    END IF;
  END LOOP;
  RETURN n;
END $$;

#!/usr/bin/env bash
# ALTER EXTENSION kafka_fdw UPDATE and renames keep every streaming view exactly once.
#   1. CREATE EXTENSION kafka_fdw VERSION '1.0' (the released objects) served by this library: a view
#      loads, refreshes, and an auto view is kept current; ALTER EXTENSION kafka_fdw UPDATE with the
#      worker running; more records; after the update the views hold the topic exactly once (set
#      equality with kcat, unique index), the topic identity of 1.1 is recorded by the next refresh.
#   2. A new installation (CREATE EXTENSION kafka_fdw: 1.0 and the update script) and the updated one
#      have the same objects, definitions and privileges: a section of the update script that one of
#      them lacks shows up here.
#   3. Renaming the view, moving it to another schema, renaming that schema and the foreign table,
#      each between produced records and refreshes (the auto view too, while its worker runs): the
#      views stay exactly the topic.
#   4. In the updated database the kinds of streams of 1.1 (section 3) work: a replica made from
#      Debezium events (fixtures, produced with kcat) equals the source's state and its next apply
#      applies exactly the new events; an aggregating view with avg equals the same query over the
#      records kcat reads, before and after a refresh.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t152
topic="t152_$$"
# the databases go at exit: their auto views would hold auto-refresh worker slots of the shared server
trap 'for d in "$db" "${db}_new"; do
        psql_q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done' EXIT
broker_ctl create "$topic" 3 >/dev/null
for d in "$db" "${db}_new"; do
    psql_q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $d" -c "CREATE DATABASE $d"
done
q() { psql_q -d "${2:-$db}" -c "$1"; }
produce() { broker_ctl fill "$topic" "$1" 100 >/dev/null; }
check_exact() {   # VIEW MSG
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM $1" >"$TEST_TMP/view.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "$2"
}
wait_auto() {     # VIEW: until it holds as many rows as the topic
    local n; n="$(kcat_count "$topic")"
    wait_for "[ \"\$(q 'SELECT count(*) FROM $1')\" = $n ]" 30 || die "$1 has $(q "SELECT count(*) FROM $1") rows, the topic $n"
}

# --- 1. 1.0, ingest, update, ingest -----------------------------------------------------------------
q "CREATE EXTENSION kafka_fdw VERSION '1.0'" >/dev/null
assert_eq 1.0 "$(q "SELECT extversion FROM pg_extension WHERE extname = 'kafka_fdw'")" "kafka_fdw 1.0 is installed"
produce 300
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM src;
CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset);
CREATE MATERIALIZED VIEW mv_auto AS SELECT kafka_partition, kafka_offset FROM src;
CREATE UNIQUE INDEX ON mv_auto (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv_auto', true);
SQL
assert_eq 300 "$(q 'SELECT count(*) FROM mv')" "1.0: the view loads"
produce 300
q 'REFRESH MATERIALIZED VIEW mv'
check_exact mv "1.0: a refresh appends exactly the new records"
wait_auto mv_auto
echo "ok - 1.0: the auto view is kept current"

produce 300
q 'ALTER EXTENSION kafka_fdw UPDATE'
assert_eq 1.1 "$(q "SELECT extversion FROM pg_extension WHERE extname = 'kafka_fdw'")" "ALTER EXTENSION kafka_fdw UPDATE: now 1.1"
produce 300
q 'REFRESH MATERIALIZED VIEW mv'
check_exact mv "1.1: the first refresh after the update ingests exactly what 1.0 had not"
wait_auto mv_auto
check_exact mv_auto "1.1: the auto view, refreshed by the worker across the update, is exactly the topic"
assert_eq 3 "$(q "SELECT count(last_offset) FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass")" \
    "1.1: the refresh recorded the last record of each partition (topic identity)"
produce 300
q 'REFRESH MATERIALIZED VIEW mv'
check_exact mv "1.1: and the next refresh, checking that identity, is exact"

# --- 2. the same objects as a new installation ---------------------------------------------------------
q 'CREATE EXTENSION kafka_fdw' "${db}_new"
catalog() {
    q "WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'kafka_fdw'),
       members AS (SELECT classid, objid, objsubid FROM pg_depend
                    WHERE refclassid = 'pg_extension'::regclass AND refobjid = (SELECT oid FROM ext) AND deptype = 'e')
     SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
     UNION ALL
     SELECT 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '-')
       FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid WHERE p.prokind <> 'a'
     UNION ALL
     SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '-') || ' '
            || coalesce(array_to_string(c.reloptions, ','), '-') || ' ' || coalesce(md5(pg_get_viewdef(c.oid)), '-')
       FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
     UNION ALL
     SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            || ' ' || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-') || ' ' || coalesce(a.attacl::text, '-')
       FROM pg_attribute a JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped
     UNION ALL
     SELECT 'index ' || pg_get_indexdef(i.indexrelid)
       FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
     UNION ALL
     SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(co.oid)
       FROM pg_constraint co JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = co.conrelid
     UNION ALL
     SELECT 'trigger ' || pg_get_triggerdef(t.oid)
       FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
     UNION ALL
     SELECT 'event trigger ' || evtname || ' ' || evtevent::text || ' ' || evtfoid::regproc || ' ' || coalesce(evttags::text, '-')
       FROM pg_event_trigger e JOIN members m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid
     UNION ALL
     SELECT 'namespace ' || n.nspname || ' ' || coalesce(n.nspacl::text, '-')
       FROM pg_namespace n WHERE n.nspname = 'kafka'
     UNION ALL
     SELECT 'config ' || coalesce((SELECT string_agg(c::regclass::text || ' ' || coalesce(w, ''), ', ')
                                    FROM unnest(extconfig, extcondition) AS u(c, w)), '-')
       FROM pg_extension WHERE extname = 'kafka_fdw'" "$1" | LC_ALL=C sort
}
catalog "$db" >"$TEST_TMP/updated.txt"
catalog "${db}_new" >"$TEST_TMP/new.txt"
if ! diff "$TEST_TMP/new.txt" "$TEST_TMP/updated.txt" >"$TEST_TMP/catalog.diff"; then
    echo "not ok - CREATE EXTENSION and 1.0 + ALTER EXTENSION UPDATE give the same catalog"
    sed 's/^/#   /' "$TEST_TMP/catalog.diff" | head -n 40
    exit 1
fi
echo "ok - CREATE EXTENSION and 1.0 + ALTER EXTENSION UPDATE give the same catalog ($(grep -c '^member' "$TEST_TMP/new.txt") objects, $(wc -l <"$TEST_TMP/new.txt") facts compared)"
for fact in 'column kafka.stream_state.kind "char"' 'member function kafka.create_replica(text,regclass,boolean)' \
            'member function kafka._dump_contents()' 'column kafka.stream_state.restore_rows bigint' \
            'member function kafka._restore_replicas()' 'member event trigger kafka_fdw_drop_aggregate_state'; do
    grep -qF "$fact" "$TEST_TMP/new.txt" || die "the compared catalog lacks '$fact' (sections 3-6 of the update script)"
done
echo "ok - the comparison covers the objects of sections 3 to 6 (stream kinds, CDC, dump and restore)"

# --- 3. renames ---------------------------------------------------------------------------------------
step() {          # SQL MSG: run SQL, produce, refresh mv by its new name, check both views
    q "$1"
    produce 200
    q "REFRESH MATERIALIZED VIEW $view"
    check_exact "$view" "after $2: the view is exactly the topic"
    wait_auto "$auto"
    check_exact "$auto" "after $2: the auto view too"
}
view=mv auto=mv_auto
view=mv2 auto=mv_auto2 step 'ALTER MATERIALIZED VIEW mv RENAME TO mv2; ALTER MATERIALIZED VIEW mv_auto RENAME TO mv_auto2' \
    "ALTER MATERIALIZED VIEW ... RENAME"
q 'CREATE SCHEMA ops'
view=ops.mv2 auto=ops.mv_auto2 step 'ALTER MATERIALIZED VIEW mv2 SET SCHEMA ops; ALTER MATERIALIZED VIEW mv_auto2 SET SCHEMA ops' \
    "ALTER MATERIALIZED VIEW ... SET SCHEMA"
view=ops2.mv2 auto=ops2.mv_auto2 step 'ALTER SCHEMA ops RENAME TO ops2' "ALTER SCHEMA ... RENAME"
view=ops2.mv2 auto=ops2.mv_auto2 step 'ALTER FOREIGN TABLE src RENAME TO src2' "ALTER FOREIGN TABLE ... RENAME"
q 'CREATE SCHEMA feeds'
view=ops2.mv2 auto=ops2.mv_auto2 step 'ALTER FOREIGN TABLE src2 SET SCHEMA feeds' "ALTER FOREIGN TABLE ... SET SCHEMA"
assert_eq "ops2.mv2|feeds.src2|ok|t
ops2.mv_auto2|feeds.src2|ok|t" \
    "$(q "SELECT mv_name, source_table, last_refresh_status, total_rows = (SELECT count(*) FROM ops2.mv2) FROM kafka.streams ORDER BY 1")" \
    "kafka.streams shows the new names, status ok, and total_rows is the view's row count"

# --- 4. replicas and aggregating views in the updated database ----------------------------------------
cdc="t152_cdc_$$"
fx="$REPO_ROOT/test/fixtures/debezium"
broker_ctl create "$cdc" 1 >/dev/null
produce_debezium "$fx/pg_schemas.jsonl" "$cdc" 0 17
q "IMPORT FOREIGN SCHEMA kafka LIMIT TO (\"$cdc\") FROM SERVER k INTO public"
q "SELECT kafka.create_replica('rep', '\"$cdc\"')" >/dev/null
q 'CREATE TABLE expected (LIKE rep)'
q "\\copy expected FROM '$fx/pg_state_before_truncate.tsv'"
assert_eq "" "$(q "SET timezone = 'UTC'; (TABLE expected EXCEPT TABLE rep) UNION ALL (TABLE rep EXCEPT TABLE expected)")" \
    "updated: create_replica makes a replica equal to the source's state after events 0-16"
produce_debezium "$fx/pg_schemas.jsonl" "$cdc" 17 19
assert_eq 2 "$(q "SELECT kafka.apply_replica('rep')")" "updated: its next apply applies exactly the 2 new events"
assert_eq "7|replica|19" "$(q "SELECT (SELECT string_agg(id::text, ',') FROM rep), s.kind, o.next_offset
    FROM kafka.streams s JOIN kafka.stream_offsets o ON o.mv_oid = s.mv_name::oid WHERE s.mv_name = 'rep'::regclass")" \
    "updated: the TRUNCATE and the insert leave row 7, kafka.streams says replica, next offset 19"

AGG="SELECT kafka_partition, count(*) AS n, sum(kafka_offset) AS s, avg(kafka_offset) AS m, max(kafka_offset) AS hi FROM %s GROUP BY 1"
check_agg() {     # MSG: agg = its query over the (partition, offset) pairs kcat reads
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p\t%o\n' >"$TEST_TMP/pairs.tsv"
    q 'DROP TABLE IF EXISTS pairs; CREATE TABLE pairs (kafka_partition int, kafka_offset bigint)'
    q "\\copy pairs FROM '$TEST_TMP/pairs.tsv'"
    local query; query="$(printf "$AGG" pairs)"
    assert_eq "" "$(q "(SELECT e::text FROM ($query) e EXCEPT SELECT a::text FROM agg a)
                       UNION ALL (SELECT a::text FROM agg a EXCEPT SELECT e::text FROM ($query) e)")" "$1"
}
q "CREATE MATERIALIZED VIEW agg AS $(printf "$AGG" feeds.src2)" >/dev/null
check_agg "updated: an aggregating view with avg equals its query over the records kcat reads"
produce 300
q 'REFRESH MATERIALIZED VIEW agg'
check_agg "updated: after a refresh too"
assert_eq "aggregate|300" "$(q "SELECT kind, last_refresh_rows FROM kafka.streams WHERE mv_name = 'agg'::regclass")" \
    "updated: kafka.streams says aggregate; the refresh folded in just the 300 new records"

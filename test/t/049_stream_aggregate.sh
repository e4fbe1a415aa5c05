#!/usr/bin/env bash
# Aggregating streaming views (count, sum, avg, min, max by group), maintained
# incrementally: after every refresh each view equals the same query computed
# over all the records read independently (kcat dump loaded into a plain
# table), compared as text (numeric digits and scale included).  As an
# ordinary analyst role:
#
#   1. many refreshes interleaved with produce (records with NULL group keys,
#      NULL arguments, numerics of varying scale, a poison record that is
#      skipped and logged), views with GROUP BY one and two expressions,
#      without GROUP BY, with WHERE and FILTER; a refresh with nothing new;
#   2. parallel plans (Gather over Partial Aggregate, costs forced to 0) give
#      the same groups as serial ones;
#   3. all brokers down in the middle of a refresh, and a cancelled refresh:
#      groups, offsets and kafka.streams unchanged, then the next refresh
#      folds in exactly the missing records;
#   4. reset_stream recomputes from the start; a float4 sum overflowing
#      across refreshes is an error, as in PostgreSQL, not a wrap or infinity;
#   5. DROP removes the view's state table.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t049
role=t049_analyst
topic="t049_orders_$$"
big="t049_big_$$"
locker="t049_locker_$$"
app="t049_refresh_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 3 >/dev/null
broker_ctl create "$big" 3 >/dev/null
make_analyst "$db" "$role"
psql_q -d "$db" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO $role;
CREATE USER MAPPING FOR $role SERVER k;
SQL
q() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" -c "$1"; }
all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" ${2:+"$2"} >/dev/null; done; }

bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name LIKE 't049\\_%\\_$$'" >/dev/null 2>&1 || true
    all_brokers up || true
}
trap cleanup EXIT

# produce N SEED: N JSON orders spread over the partitions (state NULL or missing sometimes,
# amount NULL or of scale 0..3, qty int), one kcat -P call per partition.
produce() {
    python3 - "$1" "$2" >"$TEST_TMP/orders.json" <<'PY'
import json, random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(seed)
for i in range(n):
    o = {"id": seed * 1000000 + i, "qty": r.randint(-5, 50)}
    s = r.choice(["CA", "NY", "TX", "WA", None, "missing"])
    if s != "missing":
        o["state"] = s
    a = r.choice([None, r.randint(0, 10**6), round(r.uniform(0, 1000), r.randint(0, 3))])
    o["amount"] = a if a is None else str(a)
    print(json.dumps(o))
PY
    for p in 0 1 2; do
        awk -v p="$p" 'NR % 3 == p' "$TEST_TMP/orders.json" | kcat -P -b "$KAFKA_BROKERS" -t "$topic" -p "$p"
    done
}

# The views' queries, over the Kafka table (o) or over the independent copy (records).
V_STATE="SELECT kafka.json_parse(kafka_value)->>'state' AS state,
    count(*) AS n, count(kafka.json_parse(kafka_value)->>'amount') AS n_amount,
    sum((kafka.json_parse(kafka_value)->>'amount')::numeric) AS total,
    avg((kafka.json_parse(kafka_value)->>'amount')::numeric) AS mean,
    avg((kafka.json_parse(kafka_value)->>'qty')::int) AS mean_qty,
    sum((kafka.json_parse(kafka_value)->>'qty')::int) AS sum_qty,
    min((kafka.json_parse(kafka_value)->>'amount')::numeric) AS lo,
    max((kafka.json_parse(kafka_value)->>'amount')::numeric) AS hi,
    min(kafka_offset) AS first_offset, max(kafka_timestamp) AS last_time
  FROM @T@ GROUP BY 1"
V_SECOND="SELECT date_trunc('second', kafka_timestamp) AS second, kafka_partition,
    count(*) AS n, sum((kafka.json_parse(kafka_value)->>'qty')::int8) AS qty,
    avg((kafka.json_parse(kafka_value)->>'qty')::int8) AS mean_qty,
    count(*) FILTER (WHERE kafka.json_parse(kafka_value)->>'state' IS NULL) AS no_state
  FROM @T@ GROUP BY date_trunc('second', kafka_timestamp), kafka_partition"
V_ALL="SELECT count(*) AS n, sum((kafka.json_parse(kafka_value)->>'amount')::numeric) AS total,
    avg((kafka.json_parse(kafka_value)->>'amount')::numeric) AS mean, max(kafka_offset) AS mx,
    min(kafka.json_parse(kafka_value)->>'state') AS first_state
  FROM @T@ WHERE (kafka.json_parse(kafka_value)->>'qty')::int > 10"
view_sql() { echo "${1//@T@/$2}"; }
views="agg_state agg_second agg_all"
query_of() { case "$1" in agg_state) echo "$V_STATE" ;; agg_second) echo "$V_SECOND" ;; agg_all) echo "$V_ALL" ;; esac; }

# The independent copy: every record as kcat reads it, with kafka.json_parse's input as text,
# except those skipped by the refresh (logged in kafka.stream_scan_errors).
load_records() {
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p\t%o\t%T\t%s\n' >"$TEST_TMP/dump.tsv"
    psql_q -d "$db" >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS records, records_v;
CREATE TABLE records (kafka_partition int, kafka_offset bigint, ts_ms bigint, value text);
\\copy records FROM '$TEST_TMP/dump.tsv'
CREATE TABLE records_v AS
  SELECT kafka_partition, kafka_offset,
         'epoch'::timestamptz + ts_ms * interval '1 millisecond' AS kafka_timestamp,
         convert_to(value, 'UTF8') AS kafka_value
    FROM records r
   WHERE NOT EXISTS (SELECT FROM kafka.stream_scan_errors e
                      WHERE e.mv_name = 'public.agg_state' AND e.partition_id = r.kafka_partition
                        AND e.position = r.kafka_offset);
GRANT SELECT ON records, records_v TO $role;
SQL
}

# same_as_recomputed MSG: every view equals its query over the independent copy, as text.
same_as_recomputed() {
    local v n
    load_records
    for v in $views; do
        q "SELECT t::text FROM $v t" >"$TEST_TMP/$v.view"
        q "SELECT t::text FROM ($(view_sql "$(query_of "$v")" records_v)) t" >"$TEST_TMP/$v.expected"
        n=$(wc -l <"$TEST_TMP/$v.expected")
        [ "$n" -gt 0 ] || die "$v: the recomputation has no rows"
        assert_same_rows "$TEST_TMP/$v.expected" "$TEST_TMP/$v.view" "$1: $v equals the full recomputation"
    done
}
refresh_all() { for v in $views; do q "REFRESH MATERIALIZED VIEW $v"; done; }

# --- 1. many refreshes interleaved with produce ------------------------------------------------------
produce 3000 1
printf '%s\n' '{"state":"CA","amount":"not a number","qty":"x"}' | kcat -P -b "$KAFKA_BROKERS" -t "$topic" -p 1
q "CREATE FOREIGN TABLE o (kafka_partition int, kafka_offset bigint, kafka_timestamp timestamptz,
                           kafka_value bytea) SERVER k OPTIONS (topic '$topic')"
for v in $views; do q "CREATE MATERIALIZED VIEW $v AS $(view_sql "$(query_of "$v")" o)"; done
assert_eq 1 "$(q "SELECT count(*) FROM kafka.stream_scan_errors WHERE mv_name = 'public.agg_state'
                   AND error_reason LIKE 'invalid input syntax for type numeric%'")" \
    "the poison record is skipped and logged, with its error"
assert_eq 3 "$(q "SELECT count(*) FROM kafka.stream_scan_errors WHERE error_code = 'skipped'")" \
    "... by each of the three views"
assert_eq "agg_all|a agg_second|a agg_state|a" \
    "$(psql_q -d "$db" -c "SELECT string_agg(mv_oid::regclass || '|' || kind::text, ' ' ORDER BY mv_oid::regclass::text) FROM kafka.stream_state")" \
    "the views are streams of kind 'a'"
assert_eq "state|n|n_amount|total|mean|mean_qty|sum_qty|lo|hi|first_offset|last_time" \
    "$(q "SELECT string_agg(attname, '|' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'agg_state'::regclass AND attnum > 0")" \
    "the view has exactly the columns its query names"
assert_eq "3" "$(psql_q -d "$db" -c "SELECT count(*) FROM pg_class WHERE relnamespace = 'kafka'::regnamespace AND relname LIKE 'aggregate\_state\_%' AND relkind = 'r'")" \
    "each view with avg (all three) has a state table in schema kafka"
assert_eq "0" "$(q "SELECT count(*) FROM pg_class WHERE relname LIKE 'aggregate\_state\_%' AND has_table_privilege(oid, 'SELECT')")" \
    "the analyst has no rights on the state tables"
same_as_recomputed "after CREATE"

for round in 2 3 4 5 6; do
    produce $((round * 700)) "$round"
    refresh_all
    [ "$round" != 4 ] || refresh_all    # a refresh with nothing new
    same_as_recomputed "after refresh round $round"
done
assert_eq "$(kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)" \
    "$(( $(q "SELECT total_rows FROM kafka.streams WHERE mv_name = 'agg_state'::regclass") + 1 ))" \
    "kafka.streams.total_rows counts the records folded in (all but the poison record)"
assert_eq 1 "$(q "SELECT count(*) FROM agg_state WHERE state IS NULL")" "NULL group keys form one group"

# a background producer while refreshing
( for i in 1 2 3 4 5; do produce 500 $((100 + i)); sleep 0.2; done ) &
bg_pids+=($!)
for _ in 1 2 3 4 5 6; do refresh_all; sleep 0.2; done
wait "${bg_pids[-1]}"
refresh_all
same_as_recomputed "after refreshes during a background producer"

# --- 2. parallel plans -------------------------------------------------------------------------------
q "CREATE FOREIGN TABLE b (kafka_partition int, kafka_offset bigint, kafka_value bytea)
     SERVER k OPTIONS (topic '$big', on_error 'fail')"
B_QUERY="SELECT kafka_offset % 97 AS bucket, count(*) AS n, sum(kafka_offset) AS s,
    avg(kafka_offset) AS a, avg(length(kafka_value)) AS len, min(kafka_partition) AS p0, max(kafka_offset) AS mx
  FROM @T@ GROUP BY 1"
PAR="SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;"
broker_ctl fill "$big" 30000 10 >/dev/null
q "CREATE MATERIALIZED VIEW agg_par AS $(view_sql "$B_QUERY" b) WITH NO DATA"
q "CREATE MATERIALIZED VIEW agg_ser AS $(view_sql "$B_QUERY" b) WITH NO DATA"
plan="$(psql -X -qAt -U "$role" -d "$db" -c "$PAR" -c "EXPLAIN (COSTS OFF) $(view_sql "$B_QUERY" b)")"
assert_contains "$plan" "Partial HashAggregate" "with forced costs the query plans a partial aggregate"
assert_contains "$plan" "Parallel Foreign Scan" "... over a parallel scan"
# big_same TOPIC QUERY VIEW...: each VIEW equals QUERY over TOPIC's records as kcat reads them.
big_same() {
    local topic="$1" query="$2"; shift 2
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p\t%o\t%S\n' >"$TEST_TMP/big.tsv"
    psql_q -d "$db" >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS big; CREATE TABLE big (kafka_partition int, kafka_offset bigint, len int);
\\copy big FROM '$TEST_TMP/big.tsv'
GRANT SELECT ON big TO $role;
SQL
    q "SELECT t::text FROM ($(view_sql "$query" "(SELECT kafka_partition, kafka_offset, repeat('x', len) AS kafka_value FROM big) r")) t" >"$TEST_TMP/big.expected"
    for v in "$@"; do
        q "SELECT t::text FROM $v t" >"$TEST_TMP/$v.view"
        assert_same_rows "$TEST_TMP/big.expected" "$TEST_TMP/$v.view" "$v equals the full recomputation over kcat's records"
    done
}
for round in 1 2 3; do
    # (as the superuser, for auto_explain; the refresh runs the query as the view's owner)
    out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "$PAR" -c "LOAD 'auto_explain'" \
        -c "SET auto_explain.log_min_duration = 0" -c "SET auto_explain.log_nested_statements = on" \
        -c "SET client_min_messages = log" -c "REFRESH MATERIALIZED VIEW agg_par" 2>&1)"
    assert_contains "$out" "Partial HashAggregate" "round $round: the parallel refresh ran a partial aggregate"
    q "SET max_parallel_workers_per_gather = 0; REFRESH MATERIALIZED VIEW agg_ser"
    big_same "$big" "$B_QUERY" agg_par agg_ser
    broker_ctl fill "$big" 20000 10 >/dev/null
done

# --- 3. broker down mid-refresh, cancelled refresh -------------------------------------------------
q "$(gate_function_sql 49)"
G_QUERY="SELECT kafka_offset % 97 AS bucket, count(*) AS n, sum(kafka_offset) AS s,
    avg(kafka_offset) AS a, avg(length(kafka_value)) AS len, min(kafka_partition) AS p0,
    max(gate(kafka_partition, kafka_offset)) AS mx
  FROM @T@ GROUP BY 1"
big2="t049_gate_$$"
broker_ctl create "$big2" 3 >/dev/null
broker_ctl fill "$big2" 3000 10 >/dev/null
q "CREATE FOREIGN TABLE g (kafka_partition int, kafka_offset bigint, kafka_value bytea)
     SERVER k OPTIONS (topic '$big2')"
q "CREATE MATERIALIZED VIEW agg_gate AS $(view_sql "$G_QUERY" g)"
# (as the superuser: kafka.stream_offsets is the extension's)
sq() { psql_q -d "$db" -c "$1"; }
gstate() { sq "SELECT (SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM agg_gate t) || ' ' ||
              (SELECT string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id)
                 FROM kafka.stream_offsets WHERE mv_oid = 'agg_gate'::regclass) || ' ' ||
              (SELECT total_rows FROM kafka.streams WHERE mv_name = 'agg_gate'::regclass)"; }
gnext() { sq "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'agg_gate'::regclass AND partition_id = 0"; }
lock_gate() {
    PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(49), pg_sleep(300)" >/dev/null 2>&1 &
    bg_pids+=($!)
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 49 AND granted\")\" = 1 ]" 10 \
        || die "could not take the gate lock"
}
open_gate() { psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null; }
start_gated_refresh() {
    PGAPPNAME="$app" psql -X -qAt -U "$role" -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/refresh.out" 2>&1 <<SQL &
SET kafka_fdw.connect_timeout = '2s';
SET test.gate = '$1';
REFRESH MATERIALIZED VIEW agg_gate;
SELECT 'refresh committed';
SQL
    refresh_pid=$!
    bg_pids+=("$refresh_pid")
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND wait_event = 'advisory'\")\" = 1 ]" 30 \
        || { cat "$TEST_TMP/refresh.out"; die "the refresh did not reach the gate at $1 within 30 s"; }
}
wait_refresh_failed() {
    local rc=0 out
    for _ in $(seq 1 300); do kill -0 "$refresh_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$refresh_pid" 2>/dev/null && die "the refresh still runs 30 s after the interruption"
    wait "$refresh_pid" || rc=$?
    out="$(cat "$TEST_TMP/refresh.out")"
    echo "$out" | sed 's/^/#   /'
    [ "$rc" -ne 0 ] && [[ "$out" != *"refresh committed"* ]] || die "the refresh committed although it was interrupted"
    assert_contains "$out" "$1" "the interrupted refresh failed with: $1"
}

broker_ctl fill "$big2" 105000 10 >/dev/null
before="$(gstate)"
lock_gate
start_gated_refresh "0:$(( $(gnext) + 5000 ))"
assert_eq "$before" "$(gstate)" "readers see the groups and offsets as before during the refresh"
all_brokers down
open_gate
wait_refresh_failed "could not reach Kafka brokers"
assert_eq "$before" "$(gstate)" "groups, offsets and total_rows unchanged by the refresh the broker outage failed"
all_brokers up
q "REFRESH MATERIALIZED VIEW agg_gate"
assert_eq 105000 "$(q "SELECT last_refresh_rows FROM kafka.streams WHERE mv_name = 'agg_gate'::regclass")" \
    "after the brokers are back the next refresh folds in exactly the 105000 missing records"
big_same "$big2" "$G_QUERY" agg_gate

broker_ctl fill "$big2" 20000 10 >/dev/null
before="$(gstate)"
lock_gate
start_gated_refresh "1:$(( $(sq "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'agg_gate'::regclass AND partition_id = 1") + 3000 ))"
psql_q -d "$db" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = '$app'" >/dev/null
open_gate
wait_refresh_failed "canceling statement due to user request"
assert_eq "$before" "$(gstate)" "groups, offsets and total_rows unchanged by the cancelled refresh"
q "REFRESH MATERIALIZED VIEW agg_gate"
assert_eq 20000 "$(q "SELECT last_refresh_rows FROM kafka.streams WHERE mv_name = 'agg_gate'::regclass")" \
    "the next refresh folds in exactly the 20000 missing records"
big_same "$big2" "$G_QUERY" agg_gate

# --- 4. reset_stream, overflow -------------------------------------------------------------------------
q "SELECT kafka.reset_stream('agg_state', 'earliest')" >/dev/null
same_as_recomputed "after reset_stream"
t2="t049_float_$$"
broker_ctl create "$t2" 1 >/dev/null
printf '%s\n' 3e38 1 | kcat -P -b "$KAFKA_BROKERS" -t "$t2" -p 0
q "CREATE FOREIGN TABLE f (kafka_value bytea) SERVER k OPTIONS (topic '$t2')"
q "CREATE MATERIALIZED VIEW agg_f AS SELECT count(*) AS n, sum(convert_from(kafka_value, 'UTF8')::float4) AS s FROM f"
assert_eq "2|3e+38" "$(q "SELECT n || '|' || s FROM agg_f")" "float4 sum loaded"
printf '%s\n' 3e38 | kcat -P -b "$KAFKA_BROKERS" -t "$t2" -p 0
out="$(q "REFRESH MATERIALIZED VIEW agg_f" 2>&1)" && die "a float4 sum that overflows was merged: $(q 'SELECT s FROM agg_f')"
assert_contains "$out" "value out of range: overflow" "a float4 sum overflowing across refreshes is PostgreSQL's overflow error"
out="$(q "SELECT sum(convert_from(kafka_value, 'UTF8')::float4) FROM f" 2>&1)" || true
assert_contains "$out" "value out of range: overflow" "... as the full computation over the records raises"
assert_eq "2|3e+38" "$(q "SELECT n || '|' || s FROM agg_f")" "the view is unchanged"

# --- 5. DROP ---------------------------------------------------------------------------------------------
side="$(psql_q -d "$db" -c "SELECT 'kafka.aggregate_state_' || 'agg_state'::regclass::oid")"
assert_eq 1 "$(psql_q -d "$db" -c "SELECT count(*) FROM pg_class WHERE oid = to_regclass('$side')")" "agg_state has its state table"
q "DROP MATERIALIZED VIEW agg_state"
assert_eq 0 "$(psql_q -d "$db" -c "SELECT count(*) FROM pg_class WHERE oid = to_regclass('$side')")" "DROP removes it with the view"

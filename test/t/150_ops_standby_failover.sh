#!/usr/bin/env bash
# Streaming replication: a primary and two hot standbys on loopback (pg_basebackup -R), a producer
# writing steadily and the primary's auto-refresh worker ingesting.
#   1. On the standbys the views are readable and follow the primary; no kafka_fdw worker runs there
#      and their logs get no error while the primary ingests; REFRESH, kafka.reset_stream and
#      kafka.set_auto_refresh fail with a clear "during recovery" error and a hint.
#   2. Logical replication of a streaming view is refused by PostgreSQL, with a clear message.
#   3. pg_ctl promote of standby A (the primary still running): A's own worker starts by itself and
#      ingests from the replicated offsets.
#   4. kill -9 of the primary (postmaster and all its processes at once) in the middle of the
#      ingestion, then pg_ctl promote of standby B: B's worker takes over from the offsets that
#      reached B.
# When the producer stops, each promoted server's view equals the topic read by kcat: set equality of
# (partition, offset), no pair twice, with a unique index on them.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"
lib_trap

topic="t150_$$"
broker_ctl create "$topic" 3 >/dev/null
PG_EXTRA_CONF="wal_level = replica
max_wal_senders = 8
kafka_fdw.auto_refresh_interval = 50" start_postgres "$TEST_TMP/primary" >/dev/null 2>&1 \
    || die "the primary did not start"
primary_port="$PGPORT"
pg_install_extension t150 >/dev/null
qp() { psql_q -p "$primary_port" -d t150 -c "$1"; }
psql_q -p "$primary_port" -d t150 <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM src;
CREATE UNIQUE INDEX mv_pk ON mv (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv', true);
CREATE FOREIGN TABLE cdc_src (kafka_partition int, kafka_offset bigint, kafka_key bytea, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE TABLE rep (id int PRIMARY KEY, v text);
SELECT kafka.create_replica('rep', 'cdc_src', with_data => false);
CREATE MATERIALIZED VIEW agg AS SELECT kafka_partition, count(*) AS n, avg(kafka_offset) AS m FROM src GROUP BY 1
  WITH NO DATA;
SQL

start_standby "$TEST_TMP/standby_a" "$primary_port" 2>/dev/null || die "standby A did not start"
port_a="$STANDBY_PORT"
start_standby "$TEST_TMP/standby_b" "$primary_port" 2>/dev/null || die "standby B did not start"
port_b="$STANDBY_PORT"
qa() { psql_q -p "$port_a" -d t150 -c "$1"; }
qb() { psql_q -p "$port_b" -d t150 -c "$1"; }
qa_out() { psql -X -qAt -p "$port_a" -d t150 -c "$1" 2>&1 || true; }
assert_eq "t|t" "$(qa 'SELECT pg_is_in_recovery()')|$(qb 'SELECT pg_is_in_recovery()')" "A and B are hot standbys"

# the producer: up to 1,000 records/s (less than the broker retains in the test) until $TEST_TMP/stop exists
( while [ ! -e "$TEST_TMP/stop" ]; do broker_ctl fill "$topic" 100 100 >/dev/null; sleep 0.1; done ) &
producer=$!
track_pid "$producer"

# --- 1. standbys follow, idle and quiet ---------------------------------------------------------------
loglines_a="$(wc -l <"$TEST_TMP/standby_a/postgresql.log")"
loglines_b="$(wc -l <"$TEST_TMP/standby_b/postgresql.log")"
n1="$(qp 'SELECT count(*) FROM mv')"
wait_for "[ \"\$(qa 'SELECT count(*) FROM mv')\" -gt $((n1 + 300)) ] && [ \"\$(qb 'SELECT count(*) FROM mv')\" -gt $((n1 + 300)) ]" 30 \
    || die "the standbys' views do not follow the primary's ($n1 rows on the primary)"
echo "ok - the standbys' views are readable and follow the primary's ($(qa 'SELECT count(*) FROM mv') rows on A)"
sleep 2
assert_eq 0 "$(qa "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'kafka_fdw%'")" "no kafka_fdw worker runs on standby A"
assert_eq 0 "$(qb "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'kafka_fdw%'")" "nor on standby B"
for s in a b; do
    n="loglines_$s"
    new="$(tail -n +"$((${!n} + 1))" "$TEST_TMP/standby_$s/postgresql.log" | grep -E 'ERROR|FATAL|WARNING|PANIC' || true)"
    assert_eq "" "$new" "standby $(tr a-z A-Z <<<"$s")'s log got no error, fatal or warning while following the ingestion"
done
out="$(qa_out 'REFRESH MATERIALIZED VIEW mv')"
assert_contains "$out" 'ERROR:  cannot execute REFRESH MATERIALIZED VIEW on streaming materialized view "mv" during recovery' \
    "REFRESH on a standby says that the server is in recovery"
assert_contains "$out" 'HINT:  Refresh on the primary.' "with a hint"
assert_contains "$(qa_out "SELECT kafka.reset_stream('mv')")" 'cannot execute kafka.reset_stream() on streaming materialized view "mv" during recovery' \
    "kafka.reset_stream on a standby says so too"
assert_contains "$(qa_out "SELECT kafka.set_auto_refresh('mv', false)")" 'cannot execute kafka.set_auto_refresh() on streaming materialized view "mv" during recovery' \
    "and kafka.set_auto_refresh"
assert_contains "$(qa_out 'REFRESH MATERIALIZED VIEW mv WITH NO DATA')" 'during recovery' "and REFRESH ... WITH NO DATA"
out="$(qa_out "SELECT kafka.apply_replica('rep')")"
assert_contains "$out" 'ERROR:  cannot execute kafka.apply_replica() on replica table "rep" during recovery' \
    "kafka.apply_replica on a standby says that the server is in recovery"
assert_contains "$out" 'HINT:  Refresh on the primary.' "with the hint"
assert_contains "$(qa_out "SELECT kafka.create_replica('rep2', 'cdc_src')")" 'ERROR:  cannot execute kafka.create_replica() during recovery' \
    "and kafka.create_replica"
assert_contains "$(psql -X -qAt -p "$port_a" -d t150 -c "SELECT kafka.create_replica('rep2', 'cdc_src')" 2>&1 -v VERBOSITY=verbose || true)" \
    'ERROR:  25006:' "with SQLSTATE 25006"
assert_contains "$(qa_out "SELECT kafka.set_auto_refresh('rep', true)")" 'cannot execute kafka.set_auto_refresh() on replica table "rep" during recovery' \
    "and kafka.set_auto_refresh of a replica"
assert_contains "$(qa_out 'REFRESH MATERIALIZED VIEW agg')" 'cannot execute REFRESH MATERIALIZED VIEW on streaming materialized view "agg" during recovery' \
    "and the REFRESH of an aggregating view"
# the other streams go: the checks below are about mv
qp 'DROP MATERIALIZED VIEW agg; DROP TABLE rep; DROP FOREIGN TABLE cdc_src'

# --- 2. logical replication -------------------------------------------------------------------------
out="$(psql -X -qAt -p "$primary_port" -d t150 -c 'CREATE PUBLICATION p FOR TABLE mv' 2>&1 || true)"
assert_contains "$out" 'cannot add relation "mv" to publication' "CREATE PUBLICATION ... FOR TABLE of a streaming view is refused"
assert_contains "$out" 'This operation is not supported for materialized views.' "saying that materialized views cannot be published"

# --- 3. promote A while the primary runs ------------------------------------------------------------
as_pg "$PG_BINDIR/pg_ctl" -D "$TEST_TMP/standby_a/data" -w -t 60 promote >/dev/null
assert_eq f "$(qa 'SELECT pg_is_in_recovery()')" "A is promoted"
wait_for "[ \"\$(qa \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kafka_fdw auto refresh'\")\" = 1 ]" 30 \
    || die "no auto-refresh worker started on A after its promotion"
echo "ok - after promotion A's auto-refresh worker started by itself"
na="$(qa 'SELECT count(*) FROM mv')"
wait_for "[ \"\$(qa 'SELECT count(*) FROM mv')\" -gt $((na + 300)) ]" 30 || die "A does not ingest after its promotion"
echo "ok - A ingests by itself"

# --- 4. kill -9 of the primary, promote B -----------------------------------------------------------
nb="$(qb 'SELECT count(*) FROM mv')"
kill9_postgres "$TEST_TMP/primary/data" || die "the primary did not die"
echo "ok - the primary was killed (kill -9 of all its processes) with B at $nb rows or more"
sleep 1
assert_eq t "$(qb 'SELECT pg_is_in_recovery()')" "B is still a standby, its primary gone"
as_pg "$PG_BINDIR/pg_ctl" -D "$TEST_TMP/standby_b/data" -w -t 60 promote >/dev/null
assert_eq f "$(qb 'SELECT pg_is_in_recovery()')" "B is promoted"
wait_for "[ \"\$(qb \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kafka_fdw auto refresh'\")\" = 1 ]" 30 \
    || die "no auto-refresh worker started on B after its promotion"
echo "ok - after promotion B's auto-refresh worker started by itself"
sleep 2

# --- both promoted servers catch up: exactly the topic -----------------------------------------------
touch "$TEST_TMP/stop"
wait "$producer" 2>/dev/null || true
total="$(kcat_count "$topic")"
for s in a b; do
    qs() { psql_q -p "$1" -d t150 -c "$2"; }
    port="port_$s"
    wait_for "[ \"\$(qs ${!port} 'SELECT count(*) FROM mv')\" = $total ]" 60 \
        || die "server $s has $(qs "${!port}" 'SELECT count(*) FROM mv') rows, the topic $total"
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort >"$TEST_TMP/expect_$s.txt"
    qs "${!port}" "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/view_$s.txt"
    assert_same_rows "$TEST_TMP/expect_$s.txt" "$TEST_TMP/view_$s.txt" \
        "promoted $(tr a-z A-Z <<<"$s"): the view equals the topic (kcat), exactly once"
    assert_eq "mv_pk|ok|$total" "$(qs "${!port}" "SELECT (SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'mv'::regclass AND indisunique),
                                                         last_refresh_status, (SELECT sum(next_offset) FROM kafka.stream_offsets) FROM kafka.streams")" \
        "promoted $(tr a-z A-Z <<<"$s"): unique index in place, status ok, offsets at the end of the topic"
done

#!/usr/bin/env bash
# kafka.reset_stream() must not block readers: it empties the view and
# ingests it again in one transaction, and readers keep seeing the old rows
# (ACCESS SHARE, as during REFRESH) until it commits.  It used to empty the
# view the way REFRESH ... WITH NO DATA does, whose ACCESS EXCLUSIVE lock
# was held for the whole re-ingest.  The reset is held in the middle by a
# gate (an advisory lock the view's function waits on at one record) while a
# reader with lock_timeout 1 s reads the view.
# And kafka.streams.total_rows counts what the view holds: it starts again
# after reset_stream and after REFRESH ... WITH NO DATA.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t048
topic="t048_reset_$$"
role=t048_analyst
locker="t048_gate_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null
broker_ctl fill "$topic" 2000 40 >/dev/null

make_analyst "$db" "$role"
psql_q -d "$db" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO $role;
CREATE USER MAPPING FOR $role SERVER k;
SQL
q() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" -c "$1"; }
total_rows() { q "SELECT total_rows FROM kafka.streams WHERE mv_name = 'mv'::regclass"; }

q "CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$topic')"
# waits on advisory lock 42 at the record named by the setting test.gate ('partition:offset')
q "$(gate_function_sql 42)"
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, gate(kafka_partition, kafka_offset) AS kafka_offset, kafka_value FROM t"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
assert_eq "2000|2000" "$(q 'SELECT count(*) FROM mv')|$(total_rows)" "the view and kafka.streams.total_rows hold the 2000 records"

PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(42), pg_sleep(300)" >/dev/null 2>&1 &
wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted\")\" = 1 ]" 10 \
    || die "could not take the gate lock"
PGAPPNAME=t048_reset psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" \
    -c "SET test.gate = '0:500'" -c "SELECT kafka.reset_stream('mv')" >"$TEST_TMP/reset.out" 2>&1 &
reset_pid=$!
wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 't048_reset' AND wait_event = 'advisory'\")\" = 1 ]" 30 \
    || { cat "$TEST_TMP/reset.out"; die "the reset did not reach the gate"; }
echo "ok - kafka.reset_stream is in the middle of its re-ingest"

start=$(now_ms)
out="$(psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" -c "SET lock_timeout = '1s'" -c 'SELECT count(*) FROM mv' 2>&1)" \
    || die "a reader was blocked by kafka.reset_stream: $out"
assert_eq 2000 "$out" "a reader with lock_timeout 1 s reads the old rows during the reset ($(elapsed_ms "$start") ms)"
assert_eq "" "$(psql_q -d "$db" -c "SELECT mode FROM pg_locks WHERE relation = 'mv'::regclass AND mode = 'AccessExclusiveLock'")" \
    "the reset holds no ACCESS EXCLUSIVE lock on the view"

psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null
wait "$reset_pid" || { cat "$TEST_TMP/reset.out"; die "kafka.reset_stream failed"; }
assert_eq 2000 "$(cat "$TEST_TMP/reset.out")" "kafka.reset_stream re-ingested 2000 rows"
assert_eq "2000|2000|0" "$(q 'SELECT count(*) FROM mv')|$(total_rows)|$(q 'SELECT count(*) - count(DISTINCT (kafka_partition, kafka_offset)) FROM mv')" \
    "after the reset: 2000 rows, no duplicates, and total_rows counts them once"

q "REFRESH MATERIALIZED VIEW mv WITH NO DATA"
assert_eq 0 "$(total_rows)" "REFRESH ... WITH NO DATA sets total_rows back to 0"
broker_ctl fill "$topic" 10 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
assert_eq "2010|2010" "$(q 'SELECT count(*) FROM mv')|$(total_rows)" "the next refresh loads the view and total_rows counts what it holds"

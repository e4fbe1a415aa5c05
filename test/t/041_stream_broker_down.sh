#!/usr/bin/env bash
# Streaming refresh when the brokers go down in the middle of it.
#
# To take the brokers down at a known point of the refresh, the view calls
# gate(partition, offset), which waits on an advisory lock held by the test
# when it meets one chosen record: the REFRESH has then planned its ranges,
# is scanning, and has appended (uncommitted) rows.  The new records
# (105,000 small ones, 35,000 per partition) are far more than librdkafka
# prefetches while the scan waits (queued.min.messages = 20,000), so the rest
# must come from the brokers after the gate opens.
#
# With all brokers down (and kafka_fdw.connect_timeout = 2 s) the refresh must
# fail within a few seconds; view rows, kafka.stream_offsets and
# kafka.streams are exactly as before; after the brokers are back the next
# refresh appends exactly the missing records (set equality on (partition,
# offset) with kcat, UNIQUE index on the view).  The same for the leader of
# one partition only going down, and for all brokers down when the refresh
# starts.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t041
topic="t041_down_$$"
app="t041_refresh_$$"
locker="t041_locker_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 3 >/dev/null

q() { psql_q -d "$db" -c "$1"; }
all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" ${2:+"$2"} >/dev/null; done; }
kcat_pairs() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort; }
view_pairs() { q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | LC_ALL=C sort; }
same_as_kcat() {
    kcat_pairs >"$TEST_TMP/kcat.txt"
    view_pairs >"$TEST_TMP/view.txt"
    local n; n=$(wc -l <"$TEST_TMP/kcat.txt")
    [ "$(uniq -d "$TEST_TMP/view.txt" | wc -l)" -eq 0 ] || { echo "not ok - $1"; echo "#   duplicates in the view"; exit 1; }
    if ! diff "$TEST_TMP/kcat.txt" "$TEST_TMP/view.txt" >"$TEST_TMP/diff.txt"; then
        echo "not ok - $1"
        echo "#   kcat: $n records, view: $(wc -l <"$TEST_TMP/view.txt") rows; diff (< only in kcat, > only in view):"
        head -n 20 "$TEST_TMP/diff.txt" | sed 's/^/#   /'
        exit 1
    fi
    echo "ok - $1 ($n records)"
}
state() {
    q "SELECT (SELECT count(*) FROM mv) || ' rows; offsets ' ||
              (SELECT string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id)
                 FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass) || '; total_rows ' ||
              (SELECT total_rows FROM kafka.streams WHERE mv_name = 'mv'::regclass)"
}
next_offset() { q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass AND partition_id = $1"; }

bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # backends of this test still running (a failure path): end them
    psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name LIKE 't041\\_%\\_$$'" >/dev/null 2>&1 || true
    all_brokers up || true
    all_brokers rtt 0 || true
}
trap cleanup EXIT

# lock_gate / open_gate: hold / release the advisory lock the view's gate() waits on.
lock_gate() {
    PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(41), pg_sleep(300)" >/dev/null 2>&1 &
    bg_pids+=($!)
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 41 AND granted\")\" = 1 ]" 10 \
        || die "could not take the gate lock"
}
open_gate() { q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null; }

# start_gated_refresh GATE: start REFRESH in the background (application_name $app), the gate at
# record GATE ("partition:offset"); return once it waits at the gate.  Sets refresh_pid.
start_gated_refresh() {
    PGAPPNAME="$app" psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/refresh.out" 2>&1 <<SQL &
SET kafka_fdw.connect_timeout = '2s';
SET test.gate = '$1';
\\set VERBOSITY verbose
REFRESH MATERIALIZED VIEW mv;
SELECT 'refresh committed';
SQL
    refresh_pid=$!
    bg_pids+=("$refresh_pid")
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND wait_event = 'advisory'\")\" = 1 ]" 30 \
        || { cat "$TEST_TMP/refresh.out"; die "the refresh did not reach the gate at $1 within 30 s"; }
}

# wait_refresh_failed MSG MAX_MS: the background refresh ends within MAX_MS with an error, uncommitted.
wait_refresh_failed() {
    local t0 rc=0 ms out
    t0=$(now_ms)
    for _ in $(seq 1 300); do kill -0 "$refresh_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$refresh_pid" 2>/dev/null && die "the refresh still runs 30 s after the outage"
    wait "$refresh_pid" || rc=$?
    ms=$(elapsed_ms "$t0")
    out="$(cat "$TEST_TMP/refresh.out")"
    echo "$out" | sed 's/^/#   /'
    [ "$rc" -ne 0 ] && [[ "$out" != *"refresh committed"* ]] || die "the refresh committed although the brokers were down"
    assert_contains "$out" "could not reach Kafka brokers" "$1: the refresh fails with the connection error"
    [ "$ms" -le "$2" ] || die "the refresh failed only ${ms} ms after the gate opened (limit $2 ms)"
    echo "ok - $1: the refresh failed ${ms} ms after the gate opened"
}

broker_ctl fill "$topic" 300 100 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
-- waits on advisory lock 41 at the record named by the setting test.gate ('partition:offset')
CREATE FUNCTION gate(p int, o bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  IF p || ':' || o = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared(41);
    PERFORM pg_advisory_unlock_shared(41);
  END IF;
  RETURN o;
END \$\$;
CREATE MATERIALIZED VIEW mv AS
  SELECT kafka_partition, gate(kafka_partition, kafka_offset) AS kafka_offset, kafka_value FROM t;
CREATE UNIQUE INDEX mv_pk ON mv (kafka_partition, kafka_offset);
SQL
same_as_kcat "initial load"

# --- 1. All brokers down in the middle of the refresh --------------------------------------------
new=105000
broker_ctl fill "$topic" "$new" 10 >/dev/null
before="$(state)"
heap_before="$(q "SELECT pg_relation_size('mv')")"
lock_gate
start_gated_refresh "0:$(( $(next_offset 0) + 5000 ))"
heap_mid="$(q "SELECT pg_relation_size('mv')")"
[ "$heap_mid" -gt "$heap_before" ] || die "the refresh at the gate has written nothing (heap $heap_before -> $heap_mid)"
echo "ok - the refresh is mid-way: scanning, uncommitted rows written (heap $heap_before -> $heap_mid bytes)"
assert_eq "$before" "$(state)" "readers see the view and offsets as before during the refresh"
all_brokers down
open_gate
wait_refresh_failed "all brokers down mid-refresh" 8000
assert_eq "$before" "$(state)" "view rows, kafka.stream_offsets and total_rows unchanged by the failed refresh"

all_brokers up
q 'REFRESH MATERIALIZED VIEW mv'
assert_eq "$new" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "after the brokers are back the next refresh appends exactly the $new missing records"
same_as_kcat "every record exactly once"

# --- 2. Only the leader of partition 1 goes down mid-refresh ---------------------------------------
leader="$(kcat -L -b "$KAFKA_BROKERS" -t "$topic" 2>/dev/null | sed -nE 's/^ *partition 1, leader ([0-9]+),.*/\1/p')"
[[ "$leader" =~ ^[0-9]+$ ]] || die "no leader found for partition 1"
new=75000
broker_ctl fill "$topic" "$new" 10 >/dev/null
before="$(state)"
lock_gate
start_gated_refresh "0:$(( $(next_offset 0) + 1000 ))"
broker_ctl down "$leader" >/dev/null
open_gate
wait_refresh_failed "leader of partition 1 (broker $leader) down mid-refresh" 8000
assert_eq "$before" "$(state)" "view and offsets unchanged after the partial outage"
broker_ctl up "$leader" >/dev/null
q 'REFRESH MATERIALIZED VIEW mv'
assert_eq "$new" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "the next refresh appends exactly the $new missing records"
same_as_kcat "every record exactly once after the partial outage"

# --- 3. All brokers down when the refresh starts -------------------------------------------------
broker_ctl fill "$topic" 3000 100 >/dev/null
before="$(state)"
all_brokers down
t0=$(now_ms)
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "SET kafka_fdw.connect_timeout = '2s'" -c 'REFRESH MATERIALIZED VIEW mv' 2>&1)" \
    && die "REFRESH succeeded with every broker down"
ms=$(elapsed_ms "$t0")
assert_contains "$out" "could not reach Kafka brokers" "refresh with all brokers down fails with the connection error"
[ "$ms" -le 6000 ] || die "it failed after ${ms} ms (connect_timeout 2 s)"
echo "ok - ... after ${ms} ms"
assert_eq "$before" "$(state)" "view and offsets unchanged"
all_brokers up
q 'REFRESH MATERIALIZED VIEW mv'
assert_eq 3000 "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "the next refresh appends the 3000 missing records"
same_as_kcat "every record exactly once at the end"
assert_eq 0 "$(q "SELECT sum(lag) FROM kafka.stream_lag('mv')")" "no lag left"

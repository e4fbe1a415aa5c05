#!/usr/bin/env bash
# A streaming refresh interrupted in the middle: the refreshing backend is
# cancelled (pg_cancel_backend), terminated (pg_terminate_backend), and killed
# with SIGKILL (the postmaster then crash-restarts every backend), and also
# terminated while blocked outside the Kafka wait loop (in a function of the
# view, with the scan open): the backend must exit, not hang.  Each time
# the view's rows, kafka.stream_offsets and kafka.streams are unchanged, and
# the next refresh appends exactly the missing records (set equality on
# (partition, offset) with kcat, UNIQUE index on the view).
#
# Making "in the middle" certain: the view calls gate(partition, offset),
# which waits on an advisory lock held by the test at one chosen record, so
# the REFRESH has planned its ranges, started scanning and appended rows.
# While it waits, every broker gets 3 s of latency; then the gate opens.  The
# new records (105,000, 35,000 per partition) are far more than librdkafka
# prefetches (queued.min.messages = 20,000), so the refresh now spends
# seconds waiting for slow fetches: it is interrupted there, and the test
# checks it was still running (not finished) right before the interrupt.
# Each scenario reads its own topic (the broker keeps ~5 MiB per partition).
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t042
locker="t042_locker_$$"
# a killed backend makes the postmaster reinitialize: make commits durable at once
export PGOPTIONS="-c synchronous_commit=on"
pg_install_extension "$db" >/dev/null

q() { psql_q -d "$db" -c "$1"; }
all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" ${2:+"$2"} >/dev/null; done; }

bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # backends of this test still running (a failure path): end them
    psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name LIKE 't042\\_%\\_$$'" >/dev/null 2>&1 || true
    all_brokers rtt 0 || true
}
trap cleanup EXIT

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
-- waits on advisory lock 42 at the record named by the setting test.gate ('partition:offset')
CREATE FUNCTION gate(p int, o bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  IF p || ':' || o = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared(42);
    PERFORM pg_advisory_unlock_shared(42);
  END IF;
  RETURN o;
END \$\$;
SQL

lock_gate() {
    PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(42), pg_sleep(300)" >/dev/null 2>&1 &
    bg_pids+=($!)
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND granted\")\" = 1 ]" 10 \
        || die "could not take the gate lock"
}
open_gate() { q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null; }

# scenario NAME HOW EXPECTED_MESSAGE [WHERE] — HOW: cancel | terminate | kill; WHERE: scan (waiting
# for slow brokers, the default) or gate (blocked in the view's function, outside the Kafka wait loop)
scenario() {
    local name="$1" how="$2" expect="$3" where="${4:-scan}"
    local topic="t042_${name}_$$" mv="mv_$name" app="t042_${name}_$$"
    local kpairs="$TEST_TMP/$name.kcat" vpairs="$TEST_TMP/$name.view"
    local new=105000 before heap0 heap1 pid rpid rc=0 out t0 ms next0

    broker_ctl create "$topic" 3 >/dev/null
    broker_ctl fill "$topic" 300 100 >/dev/null
    psql_q -d "$db" <<SQL
CREATE FOREIGN TABLE "t_$name" (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW $mv AS
  SELECT kafka_partition, gate(kafka_partition, kafka_offset) AS kafka_offset, kafka_value FROM "t_$name";
CREATE UNIQUE INDEX ON $mv (kafka_partition, kafka_offset);
SQL
    broker_ctl fill "$topic" "$new" 10 >/dev/null
    state() {
        q "SELECT (SELECT count(*) FROM $mv) || ' rows; offsets ' ||
                  (SELECT string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id)
                     FROM kafka.stream_offsets WHERE mv_oid = '$mv'::regclass) || '; total_rows ' ||
                  (SELECT total_rows FROM kafka.streams WHERE mv_name = '$mv'::regclass)"
    }
    before="$(state)"
    heap0="$(q "SELECT pg_relation_size('$mv')")"
    next0="$(q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = '$mv'::regclass AND partition_id = 0")"

    lock_gate
    PGAPPNAME="$app" psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/$name.out" 2>&1 <<SQL &
SET kafka_fdw.connect_timeout = '60s';
SET test.gate = '0:$((next0 + 5000))';
REFRESH MATERIALIZED VIEW $mv;
SELECT 'refresh committed';
SQL
    rpid=$!
    bg_pids+=("$rpid")
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND wait_event = 'advisory'\")\" = 1 ]" 30 \
        || { cat "$TEST_TMP/$name.out"; die "$name: the refresh did not reach the gate"; }
    pid="$(q "SELECT pid FROM pg_stat_activity WHERE application_name = '$app'")"
    if [ "$where" = scan ]; then
        all_brokers rtt 3000
        open_gate
        # past the gate: scanning again, more uncommitted rows written, still running
        wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND state = 'active' AND wait_event IS NULL\")\" = 1 ]" 10 \
            || die "$name: the refresh did not resume after the gate"
        sleep 0.5    # let it drain what was prefetched; the next fetches take 3 s each
    fi
    heap1="$(q "SELECT pg_relation_size('$mv')")"
    [ "$heap1" -gt "$heap0" ] || die "$name: no uncommitted rows in the heap ($heap0 -> $heap1)"
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND state = 'active' AND query LIKE 'REFRESH%'")" = 1 ] \
        || { cat "$TEST_TMP/$name.out"; die "$name: the refresh is no longer running before the interrupt"; }
    kill -0 "$rpid" 2>/dev/null || die "$name: psql already exited before the interrupt"
    echo "ok - $name: refresh mid-way before the interrupt ($where; running, heap $heap0 -> $heap1 bytes, view still '$(q "SELECT count(*) FROM $mv")' rows to readers)"

    t0=$(now_ms)
    case "$how" in
        cancel)    q "SELECT pg_cancel_backend($pid)" >/dev/null ;;
        terminate) q "SELECT pg_terminate_backend($pid)" >/dev/null ;;
        kill)      kill -KILL "$pid" ;;
    esac
    for _ in $(seq 1 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$rpid" 2>/dev/null && die "$name: the refresh still runs 5 s after the interrupt"
    ms=$(elapsed_ms "$t0")
    wait "$rpid" || rc=$?
    out="$(cat "$TEST_TMP/$name.out")"
    echo "$out" | sed 's/^/#   /'
    [ "$rc" -ne 0 ] && [[ "$out" != *"refresh committed"* ]] || die "$name: the refresh committed"
    assert_contains "$out" "$expect" "$name: the refresh ended with '$expect' after ${ms} ms"
    # the backend process itself must go away (not hang in its exit path)
    wait_for "! kill -0 $pid" 10 || die "$name: backend $pid still exists 10 s after the interrupt"
    echo "ok - $name: backend process $pid is gone"
    [ "$where" = scan ] || open_gate

    if [ "$how" = kill ]; then
        # the postmaster kills every backend and reinitializes; wait until it accepts connections
        wait_for "psql_q -d postgres -c 'SELECT 1'" 60 || die "PostgreSQL did not come back after the SIGKILL"
        echo "ok - PostgreSQL accepts connections again after the crash restart ($(elapsed_ms "$t0") ms)"
        local pglog; pglog="$(dirname "$PGDATA")/postgresql.log"
        if [ -r "$pglog" ]; then
            assert_contains "$(tail -n 200 "$pglog")" "(PID $pid) was terminated by signal 9" "postmaster log shows the backend killed by signal 9"
        fi
    fi
    all_brokers rtt 0

    assert_eq "$before" "$(state)" "$name: view rows, kafka.stream_offsets and total_rows unchanged"
    q "REFRESH MATERIALIZED VIEW $mv"
    assert_eq "$new" "$(q "SELECT last_refresh_rows FROM kafka.streams WHERE mv_name = '$mv'::regclass")" \
        "$name: the next refresh appends exactly the $new missing records"
    kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort >"$kpairs"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM $mv" | LC_ALL=C sort >"$vpairs"
    [ "$(uniq -d "$vpairs" | wc -l)" -eq 0 ] || die "$name: duplicates in the view"
    if ! diff "$kpairs" "$vpairs" >"$TEST_TMP/$name.diff"; then
        echo "not ok - $name: view equals the topic"; head -n 20 "$TEST_TMP/$name.diff" | sed 's/^/#   /'; exit 1
    fi
    echo "ok - $name: every record exactly once ($(wc -l <"$kpairs") records, set equality with kcat)"
}

scenario cancel    cancel    "canceling statement due to user request"
scenario terminate terminate "terminating connection due to administrator command"
scenario term_gate terminate "terminating connection due to administrator command" gate
scenario kill      kill      "server closed the connection unexpectedly"

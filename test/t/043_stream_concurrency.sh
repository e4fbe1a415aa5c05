#!/usr/bin/env bash
# Concurrent refreshes of one streaming view, and readers during a refresh.
#
# 1. Deterministic overlap: refresh A is held in the middle of its scan (the
#    view calls gate(partition, offset), which waits on an advisory lock the
#    test holds), records arrive, and refresh B starts: B must wait for A's
#    lock (the two serialize), while a reader with lock_timeout = 100ms
#    counts the view without waiting and sees the state before A.  When A
#    commits, B ingests exactly the records that arrived after A's captured
#    high watermarks: the scan log shows A = the records before, B = the
#    ones after, and the view equals the topic (UNIQUE index, kcat).
# 2. Two sessions refresh the same view in a loop (12 rounds each) while a
#    background producer writes: every refresh succeeds, no duplicates, and
#    after a final refresh the view equals the topic; the scan log accounts
#    every record exactly once.
# 3. A refresh in a REPEATABLE READ transaction that had to wait behind
#    another one: it must not duplicate anything; it either succeeds with a
#    correct view or fails with a serialization failure (SQLSTATE 40001, the
#    error a client retries), and the next refresh completes the view.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t043
topic="t043_conc_$$"
locker="t043_locker_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 3 >/dev/null

q() { psql_q -d "$db" -c "$1"; }
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
total() { kcat_pairs | wc -l; }
app_waits() {   # app_waits APP WAIT_EVENT
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND wait_event = '$2'\")\" = 1 ]" 30
}

bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # backends of this test still running (a failure path): end them
    psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name LIKE 't043\\_%\\_$$'" >/dev/null 2>&1 || true
}
trap cleanup EXIT

lock_gate() {
    PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(43), pg_sleep(300)" >/dev/null 2>&1 &
    bg_pids+=($!)
    wait_for "[ \"\$(q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 43 AND granted\")\" = 1 ]" 10 \
        || die "could not take the gate lock"
}
open_gate() { q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null; }
# finish PID OUTFILE NAME: wait for a background psql; it must have succeeded
finish() {
    local rc=0
    wait "$1" || rc=$?
    [ "$rc" -eq 0 ] || { sed 's/^/#   /' "$2"; die "$3 failed (psql exit $rc)"; }
}

broker_ctl fill "$topic" 300 50 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
-- waits on advisory lock 43 at the record named by the setting test.gate ('partition:offset')
CREATE FUNCTION gate(p int, o bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  IF p || ':' || o = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared(43);
    PERFORM pg_advisory_unlock_shared(43);
  END IF;
  RETURN o;
END \$\$;
CREATE MATERIALIZED VIEW mv AS
  SELECT kafka_partition, gate(kafka_partition, kafka_offset) AS kafka_offset, kafka_value FROM t;
CREATE UNIQUE INDEX mv_pk ON mv (kafka_partition, kafka_offset);
SQL
same_as_kcat "initial load"

# --- 1. Overlapping refreshes, deterministic -------------------------------------------------------
n_a=30000; n_b=777
broker_ctl fill "$topic" "$n_a" 50 >/dev/null
rows_before="$(q 'SELECT count(*) FROM mv')"
next0="$(q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass AND partition_id = 0")"
lock_gate
PGAPPNAME=t043_a_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/a.out" 2>&1 <<SQL &
SET test.gate = '0:$((next0 + 100))';
REFRESH MATERIALIZED VIEW mv;
SQL
pid_a=$!; bg_pids+=("$pid_a")
app_waits t043_a_$$ advisory || { cat "$TEST_TMP/a.out"; die "refresh A did not reach the gate"; }
echo "ok - refresh A is in the middle of its scan (held at the gate)"
assert_eq "t|f" "$(q "SELECT bool_or(mode = 'ExclusiveLock'), bool_or(mode = 'AccessExclusiveLock')
                         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                        WHERE a.application_name = 't043_a_$$' AND l.relation = 'mv'::regclass AND l.granted")" \
    "refresh A holds ExclusiveLock on the view, not AccessExclusiveLock"

broker_ctl fill "$topic" "$n_b" 50 >/dev/null     # after A captured its high watermarks
PGAPPNAME=t043_b_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW mv' >"$TEST_TMP/b.out" 2>&1 &
pid_b=$!; bg_pids+=("$pid_b")
app_waits t043_b_$$ relation || { cat "$TEST_TMP/b.out"; die "refresh B is not waiting for the view's lock"; }
echo "ok - refresh B waits for A's lock on the view (refreshes serialize)"

t0=$(now_ms)
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "SET lock_timeout = '100ms'" -c 'SELECT count(*) FROM mv' 2>&1)" \
    || die "a reader was blocked during the refresh: $out"
assert_eq "$rows_before" "$out" "a reader with lock_timeout 100ms counts the view during the refresh ($(elapsed_ms "$t0") ms) and sees the committed state"

open_gate
finish "$pid_a" "$TEST_TMP/a.out" "refresh A"
finish "$pid_b" "$TEST_TMP/b.out" "refresh B"
scans="$(q "SELECT string_agg(n::text, ',' ORDER BY t) FROM (SELECT min(record_time) t, sum(scanned_rows) n
                 FROM kafka.stream_scan_states WHERE mv_name = 'public.mv' GROUP BY transaction_id) s")"
assert_eq "300,$n_a,$n_b" "$scans" "scan log: CREATE 300, A $n_a (up to its high watermarks), B exactly the $n_b that arrived after"
same_as_kcat "after the two overlapping refreshes: every record exactly once"

# --- 2. Two sessions refreshing in a loop while producing -------------------------------------------
rounds=12
(
    end=$(( $(now_ms) + 5000 ))
    while [ "$(now_ms)" -lt "$end" ]; do broker_ctl fill "$topic" 53 50 >/dev/null || exit 1; sleep 0.03; done
) &
producer=$!; bg_pids+=("$producer")
for s in 1 2; do
    { for _ in $(seq 1 "$rounds"); do echo 'REFRESH MATERIALIZED VIEW mv;'; echo 'SELECT pg_sleep(0.1 * random());'; done; } \
        >"$TEST_TMP/loop$s.sql"
done
PGAPPNAME=t043_loop1_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -f "$TEST_TMP/loop1.sql" >"$TEST_TMP/loop1.out" 2>&1 &
l1=$!; bg_pids+=("$l1")
PGAPPNAME=t043_loop2_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -f "$TEST_TMP/loop2.sql" >"$TEST_TMP/loop2.out" 2>&1 &
l2=$!; bg_pids+=("$l2")
finish "$l1" "$TEST_TMP/loop1.out" "refresh loop 1"
finish "$l2" "$TEST_TMP/loop2.out" "refresh loop 2"
echo "ok - two sessions ran $rounds refreshes each concurrently, all succeeded (the unique index never fired)"
wait "$producer" || die "background producer failed"
q 'REFRESH MATERIALIZED VIEW mv'
same_as_kcat "after concurrent refresh loops while producing: every record exactly once"
n=$(total)
assert_eq "$n" "$(q "SELECT sum(scanned_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv'")" \
    "the scan log accounts every record exactly once"
assert_eq "$n" "$(q 'SELECT total_rows FROM kafka.streams')" "kafka.streams total_rows = $n"

# --- 3. REPEATABLE READ refresh waiting behind another ---------------------------------------------
broker_ctl fill "$topic" 3000 50 >/dev/null
next0="$(q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass AND partition_id = 0")"
lock_gate
PGAPPNAME=t043_a_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/a.out" 2>&1 <<SQL &
SET test.gate = '0:$((next0 + 10))';
REFRESH MATERIALIZED VIEW mv;
SQL
pid_a=$!; bg_pids+=("$pid_a")
app_waits t043_a_$$ advisory || { cat "$TEST_TMP/a.out"; die "refresh A did not reach the gate"; }
broker_ctl fill "$topic" 30 50 >/dev/null
PGAPPNAME=t043_rr_$$ psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/rr.out" 2>&1 <<'SQL' &
\set VERBOSITY verbose
BEGIN ISOLATION LEVEL REPEATABLE READ;
REFRESH MATERIALIZED VIEW mv;
COMMIT;
SQL
pid_rr=$!; bg_pids+=("$pid_rr")
app_waits t043_rr_$$ relation || { cat "$TEST_TMP/rr.out"; die "the REPEATABLE READ refresh is not waiting for the lock"; }
open_gate
finish "$pid_a" "$TEST_TMP/a.out" "refresh A"
rc=0; wait "$pid_rr" || rc=$?
sed 's/^/#   /' "$TEST_TMP/rr.out"
if [ "$rc" -eq 0 ]; then
    echo "ok - the REPEATABLE READ refresh that waited behind another committed"
else
    assert_contains "$(cat "$TEST_TMP/rr.out")" "ERROR:  40001:" \
        "the REPEATABLE READ refresh that waited behind another fails with a serialization failure (SQLSTATE 40001)"
fi
q 'REFRESH MATERIALIZED VIEW mv'
same_as_kcat "after the REPEATABLE READ refresh and one more: every record exactly once"

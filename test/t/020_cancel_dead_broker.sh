#!/usr/bin/env bash
# Interrupts are honoured within a second while the brokers are unreachable
# (kafka_fdw.connect_timeout set far longer): pg_cancel_backend,
# statement_timeout and pg_terminate_backend, during planning/metadata and
# during a fetch that receives nothing.  The backend's handle stays usable.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t020
topic="t020_cancel_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null
broker_ctl fill "$topic" 1000 100 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
SQL
all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" >/dev/null; done; }
trap 'all_brokers up' EXIT

# interrupt_latency APP FUNCTION: start a query that hangs on the dead
# brokers, interrupt it with FUNCTION(pid) after 1.5 s, print how long the
# query took to end after the interrupt, in ms.
interrupt_latency() {
    local app="$1" fn="$2" pid qpid t0 waited=0
    PGAPPNAME="$app" psql -X -qAt -d "$db" >"$TEST_TMP/$app.out" 2>&1 <<'SQL' &
SET kafka_fdw.connect_timeout = '60s';
SELECT count(*) FROM t;
SQL
    qpid=$!
    sleep 1.5
    pid="$(psql_q -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$app' AND state = 'active'")"
    [ -n "$pid" ] || { cat "$TEST_TMP/$app.out" >&2; die "query of $app is not running"; }
    t0=$(now_ms)
    psql_q -d "$db" -c "SELECT $fn($pid)" >/dev/null
    while kill -0 "$qpid" 2>/dev/null; do
        sleep 0.02; waited=$((waited + 1))
        [ "$waited" -lt 500 ] || die "query of $app still running 10 s after $fn"
    done
    wait "$qpid" || true
    elapsed_ms "$t0"
}

all_brokers down

ms="$(interrupt_latency t020_cancel pg_cancel_backend)"
assert_contains "$(cat "$TEST_TMP/t020_cancel.out")" "canceling statement due to user request" "cancel reported"
[ "$ms" -le 1000 ] || die "cancel took ${ms} ms"
echo "ok - pg_cancel_backend with dead brokers returned after ${ms} ms"

ms="$(interrupt_latency t020_terminate pg_terminate_backend)"
assert_contains "$(cat "$TEST_TMP/t020_terminate.out")" "terminating connection due to administrator command" "terminate reported"
[ "$ms" -le 1000 ] || die "terminate took ${ms} ms"
echo "ok - pg_terminate_backend with dead brokers returned after ${ms} ms"

# statement_timeout = 1s: the statement must end by about 1 s (+ < 1 s)
t0=$(now_ms)
out="$(psql -X -qAt -d "$db" 2>&1 <<'SQL'
SET kafka_fdw.connect_timeout = '60s';
SET statement_timeout = '1s';
SELECT count(*) FROM t;
SQL
)" || true
ms=$(elapsed_ms "$t0")
assert_contains "$out" "canceling statement due to statement timeout" "statement_timeout reported"
[ "$ms" -le 2000 ] || die "statement_timeout of 1 s took ${ms} ms"
echo "ok - statement_timeout 1 s with dead brokers ended after ${ms} ms"

# A cancel while the scan waits for records that are due (brokers slow, then
# down while fetching): also within a second.
all_brokers up
assert_eq 1000 "$(psql_q -d "$db" -c 'SELECT count(*) FROM t')" "brokers back: all records"
for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl rtt "$i" 5000 >/dev/null; done
ms="$(interrupt_latency t020_slow pg_cancel_backend)"
for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl rtt "$i" 0 >/dev/null; done
assert_contains "$(cat "$TEST_TMP/t020_slow.out")" "canceling statement due to user request" "cancel of a slow scan reported"
[ "$ms" -le 1000 ] || die "cancel of a slow scan took ${ms} ms"
echo "ok - pg_cancel_backend during a slow fetch returned after ${ms} ms"

# The same session goes on after a timed-out scan: the next query reads
# every record (the handle was released and is reused cleanly).
rtts_up=""; rtts_down=""
for i in $(seq 1 "$BROKER_COUNT"); do
    rtts_up+="$BROKER ctl --state-dir $BROKER_STATE rtt $i 0 >/dev/null; "
    rtts_down+="$BROKER ctl --state-dir $BROKER_STATE rtt $i 3000 >/dev/null; "
done
out="$(psql -X -qAt -d "$db" 2>&1 <<SQL
SET kafka_fdw.connect_timeout = '60s';
\\! $rtts_down
SET statement_timeout = '500ms';
SELECT count(*) FROM t;
RESET statement_timeout;
\\! $rtts_up
SELECT 'after', count(*) FROM t;
SQL
)" || true
assert_contains "$out" "canceling statement due to statement timeout" "the slow scan timed out"
assert_contains "$out" "after|1000" "the next query in the same session reads every record"

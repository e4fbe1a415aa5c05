#!/usr/bin/env bash
# Change data capture under faults, live: source PostgreSQL → Kafka Connect + Debezium (JSON without
# schemas: the replicas are declared tables, their column types decide) → the runner's real Kafka (one
# node; the test kills it, and starts it again, also when it fails) → kafka_fdw replicas.
#   0. The snapshot: create_replica on declared tables, applies until nothing is left: equal to the source.
#   1. The kafka_fdw backend is killed (kill -9) in the middle of kafka.apply_replica: the postmaster
#      reinitializes; the replica and its offsets are as before the apply (nothing half-applied), and
#      the next applies bring it to exactly the source's state.
#   2. The broker is killed (kill -9) in the middle of an apply (read with a small prefetch, so that
#      most events are still on the broker; kafka_fdw.connect_timeout 5 s): the apply either commits or fails
#      with an error and leaves the replica as it was (compared with a copy taken before); after the
#      broker is back, applies bring the replica to exactly the source's state.
# "In the middle" is made certain with a gate: a CHECK constraint on orders_replica whose function waits
# on an advisory lock held by the test when the apply reaches a chosen key (the apply has then read
# events and written rows). At the end, a row trigger on customer_replica must see every change an
# apply makes (the README: row triggers apply). After each scenario a further apply applies nothing.
# Workload: test/debezium/workload.py (CDC_SEED, default 581): 2,000 changes before the first scenario,
# 18,000 more before the second.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"
. "$REPO_ROOT/test/debezium/cdc.sh"
db=t581
role=t581_analyst
locker="t581_locker_$$"
bg_pids=()
broker_killed=0
on_exit() {
    local rc=$? p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # the runner's Kafka serves the tests after this one: never leave it down
    if [ "$broker_killed" = 1 ]; then bash "$REPO_ROOT/test/kafka/kafka.sh" restart "$REAL_KAFKA_STATE" 1 >&2 || true; fi
    cdc_stop "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# the runner's PostgreSQL survives a killed backend by reinitializing: commits durable at once
export PGOPTIONS="-c synchronous_commit=on"

cdc_replica_db "$db"

prefix="t581_$$"
export DEBEZIUM_PREFIX="$prefix" DEBEZIUM_SCHEMAS=false
wl="$TEST_TMP/wl"
# part 1 is file 1 (2,000 changes), part 2 files 2-10 (18,000: more orders events than kafka_fdw
# applies in one batch, 4,096, so that the apply still reads from the broker after the gate)
cdc_workload --seed "${CDC_SEED:-581}" --changes 20000 --parts 10 --initial 200 --out "$wl"
cdc_source_start "$TEST_TMP/dbz"
cdc_src_file "$wl.initial.sql"
initial_max="$(src_q "SELECT max(order_id) FROM orders")"
cdc_connect_start
topics_hold() {   # topics_hold PARTS
    local t want tomb
    for t in customer product orders; do
        read -r want tomb <<<"$(cdc_expected "$wl.summary.json" "$t" "$1")"
        cdc_wait_events "$prefix.public.$t" "$want" 120 >/dev/null || die "topic $t did not get its $want events"
    done
    echo "ok - the topics hold the snapshot and $1 part(s) of the workload"
}
topics_hold 0

# the replicas: declared tables with the source's columns (schemas are off), then create_replica
real_analyst_db "$db" "$role" k
psql_q -d "$db" -c "ALTER DATABASE $db SET kafka_fdw.connect_timeout = '5s'"
q "IMPORT FOREIGN SCHEMA kafka LIMIT TO (\"$prefix.public.customer\", \"$prefix.public.product\", \"$prefix.public.orders\")
   FROM SERVER k INTO public"
sed -n '/^CREATE TABLE/,/^);/p' "$REPO_ROOT/test/debezium/salesdb.sql" \
    | sed -E 's/^CREATE TABLE ([a-z]+) \(/CREATE TABLE \1_replica (/' >"$TEST_TMP/replicas.sql"
psql -X -q -v ON_ERROR_STOP=1 -U "$role" -d "$db" -f "$TEST_TMP/replicas.sql"
for t in customer product orders; do
    q "SELECT kafka.create_replica('${t}_replica', '\"$prefix.public.$t\"'::regclass)" >/dev/null
done
apply_all() {
    local n rounds=0
    while n="$(q "SELECT kafka.apply_replica('$1')")" && [ "$n" -gt 0 ]; do
        rounds=$((rounds + 1)); [ "$rounds" -lt 1000 ] || die "apply_replica('$1') still applies after 1000 calls"
    done
    [ -n "$n" ] || die "apply_replica('$1') failed"
}
for t in customer product orders; do apply_all "${t}_replica"; cdc_compare "$t" "${t}_replica" "$db"; done
# same_as_before TABLE — "0 0" if orders_replica holds exactly the rows of TABLE (a copy taken before)
same_as_before() {
    q "SELECT (SELECT count(*) FROM (TABLE $1 EXCEPT ALL TABLE orders_replica) a) || ' ' ||
              (SELECT count(*) FROM (TABLE orders_replica EXCEPT ALL TABLE $1) b)"
}

# the gate on orders_replica: a CHECK constraint whose function waits at the order named by the
# setting test.gate (a constraint, not a trigger: see the trigger check at the end)
psql_q -d "$db" <<SQL
CREATE FUNCTION gate(k bigint) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
  IF k::text = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared(581);
    PERFORM pg_advisory_unlock_shared(581);
  END IF;
  RETURN true;
END \$\$;
ALTER TABLE orders_replica ADD CONSTRAINT gate CHECK (gate(order_id));
SQL
lock_gate() {
    PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(581), pg_sleep(300)" >/dev/null 2>&1 &
    bg_pids+=($!)
    wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 581 AND granted\")\" = 1 ]" 10 \
        || die "could not take the gate lock"
}
open_gate() { psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null; }
# gated_apply NAME KEY — start apply_replica('orders_replica') in the background (application_name NAME),
# the gate at order KEY; wait until it waits there; set APPLY_PID (psql) and BACKEND (its backend)
gated_apply() {
    lock_gate
    PGAPPNAME="$1" PGOPTIONS="$PGOPTIONS -c test.gate=$2" psql -X -qAt -v ON_ERROR_STOP=1 -U "$role" -d "$db" \
        -c "SELECT kafka.apply_replica('orders_replica')" >"$TEST_TMP/$1.out" 2>&1 &
    APPLY_PID=$!
    bg_pids+=("$APPLY_PID")
    wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND wait_event = 'advisory'\")\" = 1 ]" 60 \
        || { cat "$TEST_TMP/$1.out"; die "$1: the apply did not reach the gate at order $2 (does the apply check the replica's constraints?)"; }
    BACKEND="$(psql_q -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$1'")"
}
# a gate key: an order the part made that still exists at its end, its sixth (early: an apply may
# take a bounded batch of events per call)
gate_key() { src_q "SELECT order_id FROM orders WHERE order_id > $1 ORDER BY order_id OFFSET (SELECT least(5, count(*) / 2) FROM orders WHERE order_id > $1) LIMIT 1"; }

# --- 1. the backend killed mid-apply -------------------------------------------------------------------
cdc_src_file "$wl.1.sql"
topics_hold 1
q "CREATE TABLE orders_before1 AS SELECT * FROM orders_replica"
key="$(gate_key "$initial_max")"
gated_apply t581_kill "$key"
assert_eq "0 0" "$(same_as_before orders_before1)" "kill: while the apply waits at the gate, readers see the replica as before it"
kill -KILL "$BACKEND"
for _ in $(seq 100); do kill -0 "$APPLY_PID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$APPLY_PID" 2>/dev/null || die "kill: psql still runs 10 s after its backend was killed"
wait_for "psql_q -d $db -c 'SELECT 1'" 60 || die "PostgreSQL did not come back after the killed backend"
echo "ok - kill: the backend applying was killed at order $key (psql: $(head -c 120 "$TEST_TMP/t581_kill.out" | tr '\n' ' '))"
assert_eq "0 0" "$(same_as_before orders_before1)" "kill: nothing of the killed apply is in the replica"
apply_all orders_replica
cdc_compare orders orders_replica "$db"
assert_eq 0 "$(q "SELECT kafka.apply_replica('orders_replica')")" "kill: a further apply applies nothing"

# --- 2. the broker down mid-apply ----------------------------------------------------------------------
part1_max="$(src_q "SELECT max(order_id) FROM orders")"
for f in 2 3 4 5 6 7 8 9 10; do cdc_src_file "$wl.$f.sql"; done
topics_hold 10
q "CREATE TABLE orders_before2 AS SELECT * FROM orders_replica"
# a small prefetch (as t/570): past the gate most of the events are still on the broker
q "ALTER SERVER k OPTIONS (ADD \"rdkafka.queued.min.messages\" '10', ADD \"rdkafka.queued.max.messages.kbytes\" '16',
                            ADD \"rdkafka.max.partition.fetch.bytes\" '2048')"
key="$(gate_key "$part1_max")"
gated_apply t581_broker "$key"
broker_killed=1
bash "$REPO_ROOT/test/kafka/kafka.sh" kill "$REAL_KAFKA_STATE" 1
open_gate
rc=0
for _ in $(seq 600); do kill -0 "$APPLY_PID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$APPLY_PID" 2>/dev/null || die "broker: the apply still runs 60 s after the broker was killed"
wait "$APPLY_PID" || rc=$?
if [ "$rc" -eq 0 ]; then
    echo "ok - broker: the apply in progress when the broker died committed ($(cat "$TEST_TMP/t581_broker.out") events)"
else
    echo "ok - broker: the apply in progress when the broker died failed: $(head -c 200 "$TEST_TMP/t581_broker.out" | tr '\n' ' ')"
    assert_eq "0 0" "$(same_as_before orders_before2)" "broker: the failed apply left the replica as it was"
fi
t=$(now_ms)
bash "$REPO_ROOT/test/kafka/kafka.sh" restart "$REAL_KAFKA_STATE" 1
broker_killed=0
log "broker restarted in $(elapsed_ms "$t") ms"
for t in customer product orders; do
    apply_all "${t}_replica"
    cdc_compare "$t" "${t}_replica" "$db"
    assert_eq 0 "$(q "SELECT kafka.apply_replica('${t}_replica')")" "broker: ${t}_replica: a further apply applies nothing"
done

# --- row triggers fire on the replica --------------------------------------------------------------------
psql_q -d "$db" <<SQL
CREATE TABLE audit (cust_id integer, op text);
GRANT INSERT ON audit TO $role;
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO public.audit VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.cust_id ELSE NEW.cust_id END, TG_OP);
  RETURN NULL;
END \$\$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON customer_replica FOR EACH ROW EXECUTE FUNCTION audit();
SQL
src_q "UPDATE customer SET name = name || '!' WHERE cust_id IN (SELECT cust_id FROM customer ORDER BY cust_id LIMIT 10)" >/dev/null
read -r want _ <<<"$(cdc_expected "$wl.summary.json" customer 10)"
cdc_wait_events "$prefix.public.customer" $((want + 10)) 60 >/dev/null || die "topic customer did not get the 10 updates"
out="$(q_out "SELECT kafka.apply_replica('customer_replica')")" || true   # an error is the assertion's actual value
assert_eq 10 "$out" "trigger: the apply of 10 updates into a replica with a row trigger"
assert_eq 10 "$(psql_q -d "$db" -c "SELECT count(*) FROM audit WHERE op = 'UPDATE'")" "trigger: the row trigger saw the 10 updates"
cdc_compare customer customer_replica "$db"

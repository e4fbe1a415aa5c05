#!/usr/bin/env bash
# The broker dies before COMMIT, against a real Apache Kafka of this test's own (it is killed, so not the
# shared one): a transaction inserts 100 records (acknowledged by the broker inside the open Kafka
# transaction), the broker is killed -9, COMMIT fails within connect_timeout with a clear error and the
# PostgreSQL transaction is rolled back. After the broker is back, the same backend produces again: its
# new producer has the same transactional.id, which fences the old producer and aborts its open
# transaction. A read_committed Java consumer then sees the new record and none of the 100 (which
# read_uncommitted shows are in the log: they were sent, and never made visible).
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"
lib_trap

real_kafka_start "$TEST_TMP/kafka" 1 >"$TEST_TMP/kafka-start.log" 2>&1 \
    || { tail -n 20 "$TEST_TMP/kafka-start.log" >&2; die "could not start a Kafka of this test's own"; }
export REAL_KAFKA_STATE="$TEST_TMP/kafka"
db=t591
role=t591_analyst
topic="t591_$$"
real_analyst_db "$db" "$role" k
kafka_tool create "$topic" 2
q "CREATE FOREIGN TABLE ft (kafka_key text, kafka_value text) SERVER k OPTIONS (topic '$topic')"

# one psql session (one backend) for the whole test, driven through a fifo
mkfifo "$TEST_TMP/psql.in"
psql -X -qAt -U "$role" -d "$db" <"$TEST_TMP/psql.in" >"$TEST_TMP/psql.out" 2>&1 &
track_pid $!
exec 3>"$TEST_TMP/psql.in"
n=0
# run SQL — send SQL to the session and wait (60 s at most) until it has been carried out
run() {
    n=$((n + 1))
    printf '%s\n\\echo mark-%s\n' "$1" "$n" >&3
    wait_for "grep -qx 'mark-$n' '$TEST_TMP/psql.out'" 60 || { cat "$TEST_TMP/psql.out" >&2; die "the session did not carry out: $1"; }
}

run "SET kafka_fdw.connect_timeout = '3s';"
run "BEGIN;"
run "INSERT INTO ft SELECT 'killed-' || g, 'v' FROM generate_series(1, 100) g;"
assert_eq 0 "$(grep -c 'ERROR:' "$TEST_TMP/psql.out" || true)" "the 100 records are inserted (acknowledged) in the open transaction"
bash "$REPO_ROOT/test/kafka/kafka.sh" kill "$TEST_TMP/kafka" 1 >>"$TEST_TMP/kafka-ctl.log" 2>&1 </dev/null
t0=$(now_ms)
run "COMMIT;"
ms=$(elapsed_ms "$t0")
out="$(cat "$TEST_TMP/psql.out")"
assert_contains "$out" "could not commit the Kafka transaction" "COMMIT fails with the broker dead"
assert_contains "$out" "The PostgreSQL transaction is rolled back." "... saying what became of the transaction"
[ "$ms" -lt 15000 ] || die "COMMIT took $ms ms with connect_timeout 3s"
echo "ok - COMMIT failed after $ms ms (connect_timeout 3 s)"
run "SELECT 'not-in-an-aborted-transaction';"
assert_contains "$(cat "$TEST_TMP/psql.out")" "not-in-an-aborted-transaction" "the transaction is over (rolled back): the session runs queries"

bash "$REPO_ROOT/test/kafka/kafka.sh" restart "$TEST_TMP/kafka" 1 >>"$TEST_TMP/kafka-ctl.log" 2>&1 </dev/null \
    || { tail -n 20 "$TEST_TMP/kafka-ctl.log" >&2; die "the broker did not come back"; }
run "SET kafka_fdw.connect_timeout = '60s';"
run "INSERT INTO ft VALUES ('after-restart', 'v');"
assert_eq 1 "$(grep -c 'ERROR:' "$TEST_TMP/psql.out" || true)" "the same backend produces again after the restart (COMMIT's is the session's only error)"

kafka_tool consume "$topic" | awk '{print $5}' >"$TEST_TMP/java.txt"
assert_eq "x$(printf after-restart | od -An -tx1 | tr -d ' \n')" "$(cat "$TEST_TMP/java.txt")" \
    "Java read_committed sees the new record only: none of the 100 (the old transaction was fenced and aborted)"
assert_eq 100 "$(real_kcat -C -t "$topic" -o beginning -e -q -X isolation.level=read_uncommitted -f '%k\n' | grep -c '^killed-')" \
    "the 100 records are in the log (read_uncommitted): they were sent, and never became visible"
exec 3>&-

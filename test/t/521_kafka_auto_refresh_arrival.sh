#!/usr/bin/env bash
# Arrival-driven AUTO REFRESH, live against a real Apache Kafka, which answers a consumer's waiting
# fetch as soon as a record arrives (the test broker does not). With the worker's fetch wait at 5 s
# and its periodic check at 60 s, a record could only be visible quickly if the broker answered the
# watch's fetch on arrival. (For one wait after a watch begins the worker also checks its views every
# 100 ms, since the watch's first fetch may not name every partition: the timed records come after
# that.)
#   - 5 plain records, one at a time, each visible within 2 s of Kafka's own Java producer's send;
#   - a Kafka transaction's records are visible within 2 s of its commit (the commit marker moves
#     the last stable offset, and the broker answers the read_committed fetch then), never before;
#   - idle, the worker refreshes nothing (no scan logged in 3 s);
#   - a partition added to the topic (periodic check at 1 s): its first record comes with the worker's
#     every-tenth-round check of all views (within 15 s), which also watches the topic anew, so the
#     next record in the new partition is visible within 2 s again;
#   - ALTER SERVER (new options) makes the worker drop its watch, whose fetch the broker is holding,
#     and start a new one: a record is visible within 2 s of the change's commit.
# The view belongs to an ordinary role; the records are checked against kcat read_committed.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t521
role=t521_analyst
topic="t521_arrival_$$"
real_analyst_db "$db" "$role" k
kafka_tool create "$topic" 2

mkfifo "$TEST_TMP/producer.in"
kafka_tool produce "$topic" <"$TEST_TMP/producer.in" >"$TEST_TMP/producer.out" 2>"$TEST_TMP/producer.err" &
producer=$!
exec 3>"$TEST_TMP/producer.in"
trap 'auto_refresh_settings; q "SELECT kafka.set_auto_refresh('"'"'mv'"'"', false)" >/dev/null 2>&1 || true; exec 3>&-; wait $producer 2>/dev/null || true' EXIT
touch "$TEST_TMP/sent"
# send CMD — one producer command, waited for
send() {
    echo "$1" >>"$TEST_TMP/sent"
    echo "$1" >&3
    wait_for "[ \$(grep -cxF 'done $1' '$TEST_TMP/producer.out') -ge \$(grep -cxF '$1' '$TEST_TMP/sent') ]" 60 \
        || { cat "$TEST_TMP/producer.err" >&2; die "the producer did not carry out: $1"; }
}
view_count() { q "SELECT count(*) FROM mv"; }
# one_record CMD WHAT [T0] — send the producer command CMD (one record) and wait until the view has one
# more row; sets MS to the time since T0 (default: just before the send) and logs it as WHAT
one_record() {
    local before t0="${3:-$(now_ms)}"
    before="$(view_count)"
    send "$1"
    wait_for "[ \"\$(view_count)\" = $((before + 1)) ]" 60 || die "$2 not visible after 60 s"
    MS=$(elapsed_ms "$t0")
    log "$2 visible after $MS ms"
}

auto_refresh_settings 60s 5s
q "CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value text) SERVER k OPTIONS (topic '$topic')"
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM src"
q "SELECT kafka.set_auto_refresh('mv', true)"
wait_for "[ -n \"\$(psql_q -d $db -c \"SELECT 1 FROM pg_stat_activity WHERE application_name = 'kafka_fdw auto refresh' AND datname = '$db'\")\" ]" 10 \
    || die "no auto-refresh worker for $db"
sleep 6   # its first check is done, the watch waits at the end of the topic, its first wait is over

# 1. plain records, one at a time
for i in 1 2 3 4 5; do
    one_record "plain $(( i % 2 )) 1" "plain record $i"
    [ "$MS" -lt 2000 ] || die "plain record $i took $MS ms: Kafka did not answer the watch's fetch on arrival (wait 5 s)"
done

# 2. a transaction: nothing before its commit, all of it within 2 s after
before="$(view_count)"
send begin
send "send 0 3"
send "send 1 2"
sleep 1.5
assert_eq "$(view_count)" "$before" "an open transaction's records are not ingested"
t0=$(now_ms)
send commit
wait_for "[ \"\$(view_count)\" = $((before + 5)) ]" 60 || die "the committed transaction's records not visible after 60 s ($(view_count), was $before)"
ms=$(elapsed_ms "$t0")
log "committed transaction visible after $ms ms"
[ "$ms" -lt 2000 ] || die "a committed transaction took $ms ms: the commit did not answer the read_committed watch"

# the view holds exactly what a read_committed kcat sees
real_pairs "$topic" >"$TEST_TMP/expect.txt"
q "SELECT kafka_partition, kafka_offset FROM mv" | tr '|' ' ' >"$TEST_TMP/got.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/got.txt" "the view equals kcat read_committed"

# 3. idle: no refresh at all
scans="$(psql_q -d "$db" -c "SELECT count(*) FROM kafka.stream_scan_states")"
sleep 3
assert_eq "$(psql_q -d "$db" -c "SELECT count(*) FROM kafka.stream_scan_states")" "$scans" "idle, the worker refreshes nothing"
# 4. a partition added: the tenth-round check finds it and watches it from then on
auto_refresh_settings 1s 5s
sleep 2
kafka_tool partitions "$topic" 3
wait_for "[ \"\$(real_kcat -L -t $topic | grep -c 'partition ')\" = 3 ]" 30 || die "the topic did not get its third partition"
one_record "plain 2 1" "the new partition's first record"
sleep 1
one_record "plain 2 1" "the new partition's second record"
[ "$MS" -lt 2000 ] || die "the new partition's second record took $MS ms: the watch did not start on the new partition"
real_pairs "$topic" >"$TEST_TMP/expect.txt"
q "SELECT kafka_partition, kafka_offset FROM mv" | tr '|' ' ' >"$TEST_TMP/got.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/got.txt" "the view equals kcat read_committed, new partition included"
# 5. new server options while the broker holds the watch's fetch
auto_refresh_settings 60s 5s
sleep 6
t0=$(now_ms)
q "ALTER SERVER k OPTIONS (ADD \"rdkafka.client.id\" 't521')"
q "SELECT kafka.set_auto_refresh('mv', true)"   # wakes the worker (its periodic check is 60 s away)
one_record "plain 0 1" "after ALTER SERVER a record" "$t0"
[ "$MS" -lt 2000 ] || die "after ALTER SERVER a record took $MS ms: replacing the watch waited for its fetch"
send quit
log "ok"

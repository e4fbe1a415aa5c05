#!/usr/bin/env bash
# FETCH STALLS: scans whose ranges end in the middle of partitions (parallel
# work items of split partitions; offset conditions) never sit idle.
#
# librdkafka (before 2.3) parks a partition's fetcher while the scan's queue
# holds queued.min.messages messages, and a parked fetcher looks again only
# when something wakes its broker thread, up to a second later.  Messages
# prefetched past a range's end count against that limit until the scan takes
# them off (and drops them), so the scan cannot see from what it takes that
# the queue was full.  Here the limit is small and every range ends inside a
# partition, which parked fetchers for a full second in about half of such
# scans before the scan learnt to wake them after a short silence.  Each scan
# must return the right answer and take well under a second.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t080
topic="t080_stalls_$$"
partitions=8
per_partition=15000
records=$((partitions * per_partition))
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" "$partitions" >/dev/null
broker_ctl fill "$topic" "$records" 100 >/dev/null
highs="$(broker_ctl watermarks "$topic" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }')"
assert_eq "$records" "$highs" "the topic holds $records records"

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw
  OPTIONS (brokers '$KAFKA_BROKERS', "rdkafka.queued.min.messages" '2000');
CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
SQL

parallel_settings="SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; SET kafka_fdw.parallel_range_size = 2500;"
q="SELECT count(*), sum(kafka_offset) FROM src"
expected="$records|$((partitions * per_partition * (per_partition - 1) / 2))"

plan="$(psql_q -d "$db" -c "$parallel_settings" -c "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF) $q")"
assert_contains "$plan" "Parallel Foreign Scan" "the split scan runs in parallel"
assert_contains "$plan" "Workers Launched: 2" "with both workers"
# the scenario happens: queues reach the limit and fetchers are woken
assert_contains "$plan" "Kafka Fetcher Wake-ups:" "queues reached librdkafka's limit"

# run_timed LABEL SETTINGS QUERY EXPECTED: run 6 times, each within the bound
run_timed() {
    local label="$1" settings="$2" query="$3" want="$4" i start ms got worst=0
    for i in 1 2 3 4 5 6; do
        start=$(now_ms)
        got="$(psql_q -d "$db" -c "$settings" -c "$query")"
        ms=$(elapsed_ms "$start")
        assert_eq "$want" "$got" "$label, run $i: the right answer"
        [ "$ms" -lt 900 ] || die "$label, run $i took $ms ms: a fetcher was left parked"
        [ "$ms" -gt "$worst" ] && worst=$ms
    done
    echo "ok - $label: 6 runs, the slowest $worst ms"
}

run_timed "parallel scan, partitions cut into ranges of 2,500" "$parallel_settings" "$q" "$expected"

# serial: offset conditions end every range in the middle of its partition
half=$((per_partition / 2))
run_timed "serial scan of the first half of each partition" \
    "SET max_parallel_workers_per_gather = 0;" \
    "SELECT count(*), sum(kafka_offset) FROM src WHERE kafka_offset < $half" \
    "$((partitions * half))|$((partitions * half * (half - 1) / 2))"

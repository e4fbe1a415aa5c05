#!/usr/bin/env bash
# bench/produce_bench.sh — INSERT ... SELECT into a Kafka foreign table against `kcat -P` of the same
# records to the same broker, in the same run (SPEC §4.1, issue 13: goal >= 0.8 x kcat's rate), and the
# backend's peak memory.
#
#   bash bench/produce_bench.sh                 # a one-node real Kafka of its own (default KAFKA=real)
#   RECORDS=200000 RUNS=3 bash bench/produce_bench.sh
#
# RECORDS (1,000,000) records with keys key-<i> and ~VALUE_BYTES (150)-byte JSON values are written once
# into a file (for kcat) and a PostgreSQL table (for INSERT ... SELECT). Each of RUNS (3) rounds then
# times, interleaved:
#   kcat -P                  kcat -P -K '\t' -l FILE into a fresh topic (process start to exit: its
#                            final flush waits for every acknowledgement), acks=all, idempotent
#   INSERT ... SELECT        psql -c "INSERT INTO ft (kafka_key, kafka_value) SELECT k, v FROM src":
#                            one statement in its own transaction (Kafka transaction, committed at
#                            commit; psql start and connection included)
#                            (kafka_fdw.insert_batch_size 1, the default: each row handed over as it comes)
#   ... insert_batch_size 1000  the same through the executor's batch insert (kafka_fdw.insert_batch_size)
# Each target topic is checked afterwards: a read_committed kcat reads exactly RECORDS records.
# Beside the wall times: the CPU time of kcat's process and of the INSERT's backend (librdkafka's
# threads included in both), less sensitive to a loaded host than the wall times; and the median of
# each round's kcat / INSERT ratio (the two ran back to back).
# Peak memory: VmHWM and VmRSS of the INSERT's backend (/proc/PID/status, read by the backend itself
# after the INSERT), and the same for INSERTs of RECORDS/10 records: bounded memory is a peak that does
# not grow with the records.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$REPO_ROOT/test/lib.sh"
export KAFKA="${KAFKA:-real}"
. "$REPO_ROOT/bench/lib.sh"

RECORDS="${RECORDS:-1000000}"
VALUE_BYTES="${VALUE_BYTES:-150}"
PARTITIONS="${PARTITIONS:-8}"
RUNS="${RUNS:-5}"
DB=produce_bench

bench_start "$DB"
command -v kcat >/dev/null || die "kcat not found"
sql() { psql_q -d "$DB" "$@"; }
sql -c "CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS')"
sql -c "CREATE USER MAPPING FOR CURRENT_USER SERVER k"

log "writing $RECORDS records (~$VALUE_BYTES-byte values) to a file and to table src"
pad="$(head -c "$((VALUE_BYTES - 40))" /dev/zero | tr '\0' 'x')"
awk -v n="$RECORDS" -v pad="$pad" 'BEGIN { for (i = 1; i <= n; i++) printf "key-%d\t{\"id\":%d,\"state\":\"CA\",\"pad\":\"%s\"}\n", i, i, pad }' \
    >"$WORK_DIR/records.tsv"
sql -c "CREATE TABLE src (k text, v text)" -c "\\copy src FROM '$WORK_DIR/records.tsv'" -c "VACUUM ANALYZE src"
avg="$(sql -c "SELECT round(avg(length(k) + length(v))) FROM src")"
log "records: $RECORDS, average key + value $avg bytes, $PARTITIONS partitions"

new_topic() {   # new_topic NAME — create topic produce_bench_NAME, print its name
    local t="produce_bench_$1"
    bench_create_topic "$t" "$PARTITIONS"
    echo "$t"
}
committed() { kcat -C -b "$KAFKA_BROKERS" -X isolation.level=read_committed -t "$1" -o beginning -e -q -f '\n' | wc -l; }
# ticks of CPU (user + system) of a process so far, from /proc/PID/stat
HZ="$(getconf CLK_TCK)"
# run_kcat TOPIC — kcat -P of the records; prints "WALL_MS CPU_MS" (kcat's own CPU, all its threads)
run_kcat() {
    local TIMEFORMAT='%R %U %S' out
    out="$( { time kcat -P -b "$KAFKA_BROKERS" -t "$1" -K $'\t' -X enable.idempotence=true -X acks=all \
                  -l "$WORK_DIR/records.tsv" >/dev/null; } 2>&1 | tail -n 1)"
    awk '{ printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000 }' <<<"$out"
}
# run_fdw TOPIC BATCH — INSERT ... SELECT in one psql; prints "WALL_MS CPU_MS" (the backend's CPU,
# librdkafka's threads included, read by the backend from /proc/self/stat before and after)
run_fdw() {
    local t0=$EPOCHREALTIME out
    out="$(sql -c "SET kafka_fdw.insert_batch_size = $2" \
               -c "SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint" \
               -c "INSERT INTO ft_$1 (kafka_key, kafka_value) SELECT k, v FROM src" \
               -c "SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint" \
           | paste -sd' ')"
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v hz="$HZ" '{ printf "%d %d\n", (b - a) * 1000, ($2 - $1) * 1000 / hz }' <<<"$out"
}
mem_line() {   # mem_line LIMIT — insert LIMIT records, print the backend's VmHWM and VmRSS (kB)
    local t; t="$(new_topic "mem_$1")"
    sql -c "CREATE FOREIGN TABLE ft_$t (kafka_key text, kafka_value text) SERVER k OPTIONS (topic '$t')" >/dev/null
    sql -c "INSERT INTO ft_$t (kafka_key, kafka_value) SELECT k, v FROM src LIMIT $1" \
        -c "SELECT regexp_replace(pg_read_file('/proc/self/status'), '.*VmHWM:\s*(\d+) kB.*VmRSS:\s*(\d+) kB.*', '\1 \2')" \
        | tail -n 1
}

declare -A walls=() cpus=()
ratios=""
names=("kcat -P (baseline)" "INSERT ... SELECT" "INSERT ... SELECT, insert_batch_size 1000")
for run in $(seq "$RUNS"); do
    for i in 0 1 2; do
        case $i in
            0) t="$(new_topic "kcat_$run")"; read -r ms cpu <<<"$(run_kcat "$t")" ;;
            1|2) t="$(new_topic "fdw${i}_$run")"
                 sql -c "CREATE FOREIGN TABLE ft_$t (kafka_key text, kafka_value text) SERVER k OPTIONS (topic '$t')" >/dev/null
                 read -r ms cpu <<<"$(run_fdw "$t" "$([ $i = 1 ] && echo 1 || echo 1000)")" ;;
        esac
        got="$(committed "$t")"
        [ "$got" = "$RECORDS" ] || die "${names[$i]}: topic $t holds $got committed records, not $RECORDS"
        walls[$i]="${walls[$i]:-} $ms"
        cpus[$i]="${cpus[$i]:-} $cpu"
        [ "$i" != 0 ] || kcat_ms="$ms"
        [ "$i" != 1 ] || ratios="$ratios $(awk -v b="$kcat_ms" -v m="$ms" 'BEGIN { printf "%.2f", b / m }')"
        log "run $run: ${names[$i]}: $ms ms, CPU $cpu ms ($got records checked)"
    done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR] = $1} END { print a[int((NR + 1) / 2)] }'; }
echo
echo "broker: $BENCH_BROKER_DESC; $RECORDS records, key + value $avg bytes on average, $PARTITIONS partitions"
printf '%-40s %9s %11s %7s %8s   %s\n' what "median ms" "records/s" "x kcat" "CPU ms" "runs (ms)"
base="$(median "${walls[0]}")"
for i in 0 1 2; do
    m="$(median "${walls[$i]}")"
    printf '%-40s %9d %11d %7.2f %8d  %s\n' "${names[$i]}" "$m" $((RECORDS * 1000 / m)) \
        "$(awk -v b="$base" -v m="$m" 'BEGIN { print b / m }')" "$(median "${cpus[$i]}")" "${walls[$i]}"
done
ratio="$(median "$ratios")"
echo
echo "INSERT rate / kcat rate, median of the rounds' ratios ($ratios ) = $ratio (goal >= 0.8: $(awk -v r="$ratio" 'BEGIN { print (r >= 0.8) ? "met" : "NOT met" }'))"
echo "CPU ms: kcat's process, or the INSERT's backend (librdkafka's threads included in both)"
read -r hwm rss <<<"$(mem_line "$RECORDS")"
read -r hwm10 rss10 <<<"$(mem_line $((RECORDS / 10)))"
echo "backend memory after INSERT of $RECORDS records: peak (VmHWM) $((hwm / 1024)) MB, now (VmRSS) $((rss / 1024)) MB"
echo "backend memory after INSERT of $((RECORDS / 10)) records: peak (VmHWM) $((hwm10 / 1024)) MB, now (VmRSS) $((rss10 / 1024)) MB"
bench_host_line

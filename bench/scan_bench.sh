#!/usr/bin/env bash
# bench/scan_bench.sh — scan throughput of kafka_fdw against a raw librdkafka consumer, side by side in
# one run (SPEC §6: "scan: SELECT count(*), and a scan that materializes all eight columns, ≤ 1.0 × the
# time of a raw librdkafka consume of the same records (single-threaded), on the mock and on real Kafka").
#
#   bash bench/scan_bench.sh
#
# On a fresh Debian 12 machine (as root) it installs the packages it needs, builds and installs the
# extension, the test broker and bench/raw_consume, starts its own test broker (1 broker) and a throwaway
# PostgreSQL in a temp dir (both stopped and removed at exit), creates a topic of PARTITIONS partitions,
# fills it with RECORDS records of ~VALUE_BYTES-byte JSON values, checks that nothing was lost to the
# mock broker's retention, and then measures, RUNS times each (interleaved, after one uncounted warm-up
# round that also checks every reader's record count), the wall time of:
#   1. bench/raw_consume                       the baseline (plain librdkafka, same bounded semantics)
#   2. kcat -C -o beginning -e -f '%o\n'       a second reference (formats output, so not the baseline)
#   2b. bench/raw_consume -X <kafka_fdw's queue limits, read from src/option.c>, if it sets any: shows
#      what those limits alone cost a plain consumer (see bench/README.md, "fetch stalls")
#   3. psql -c 'SELECT 1'                      psql + backend start-up overhead (included in 4 and 5)
#   4. psql -c 'SELECT count(*) FROM s.topic'
#   5. psql -c 'SELECT <every column formed>'  full-row scan
# and prints a table (median ms, records/s, ratio to raw_consume) and the ratio lines.
# Exits non-zero if any reader returns a wrong record count or byte sum.
#
# KAFKA=real runs it all against a real Apache Kafka instead (bench/lib.sh). Beside each figure: the
# broker process's CPU time during the run.
#
# Environment: RECORDS (1000000), PARTITIONS (64), VALUE_BYTES (150), RUNS (3), TOPIC (scan_bench), KAFKA,
# KEEP_TMP=1 keeps the temp dir (logs), PG_EXTRA_CONF adds postgresql.conf lines (e.g. to disable
# parallel plans: PG_EXTRA_CONF='max_parallel_workers_per_gather = 0').
set -euo pipefail
export LC_ALL=C.UTF-8
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

RECORDS="${RECORDS:-1000000}"
PARTITIONS="${PARTITIONS:-64}"
VALUE_BYTES="${VALUE_BYTES:-150}"
RUNS="${RUNS:-3}"
TOPIC="${TOPIC:-scan_bench}"
DB=scan_bench
SCHEMA=s
RAW="$REPO_ROOT/bench/raw_consume"

for v in RECORDS PARTITIONS VALUE_BYTES RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$TOPIC" =~ ^[a-z_][a-z0-9_]*$ ]] || die "TOPIC must be a plain lower-case identifier (got '$TOPIC')"

# ---------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------
bench_start "$DB"
log "build: make -C bench raw_consume"
make -C "$REPO_ROOT/bench" -s raw_consume >"$WORK_DIR/bench-build.log" 2>&1 \
    || { tail -n 40 "$WORK_DIR/bench-build.log" >&2; die "could not build bench/raw_consume"; }

bench_fill_topic "$TOPIC" "$PARTITIONS" "$RECORDS" "$VALUE_BYTES"

psql_q -d "$DB" -c "SELECT kafka.create_external_schema('$SCHEMA', brokers => '$KAFKA_BROKERS')" >/dev/null
psql_q -d "$DB" -c "SELECT 1 FROM $SCHEMA.$TOPIC LIMIT 0" >/dev/null \
    || die "foreign table $SCHEMA.$TOPIC was not created"

Q_ONE="SELECT 1"
Q_COUNT="SELECT count(*) FROM $SCHEMA.$TOPIC"
# Every column is formed and consumed: key and value copied, headers jsonb built, timestamps converted.
Q_FULL="SELECT count(*), sum(length(kafka_key) + length(kafka_value)), max(kafka_timestamp),
               max(refresh_time), sum(jsonb_array_length(kafka_headers)), max(kafka_timestamp_type),
               max(kafka_partition), max(kafka_offset)
        FROM $SCHEMA.$TOPIC"

log "plan of the count(*) query:"
psql_q -d "$DB" -c "EXPLAIN (COSTS OFF) $Q_COUNT" | sed 's/^/    /' >&2

# ---------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------
run_raw()   { "$RAW" -b "$KAFKA_BROKERS" -t "$TOPIC"; }
run_rawfdw() { "$RAW" -b "$KAFKA_BROKERS" -t "$TOPIC" "${FDW_QUEUE_ARGS[@]}"; }
run_kcat()  { kcat -C -b "$KAFKA_BROKERS" -t "$TOPIC" -o beginning -e -q -f '%o\n'; }
run_psql()  { psql -X -v ON_ERROR_STOP=1 -qAt -F ' ' -d "$DB" -c "$1"; }
run_one()   { run_psql "$Q_ONE"; }
run_count() { run_psql "$Q_COUNT"; }
run_full()  { run_psql "$Q_FULL"; }

OUT="$WORK_DIR/out"
RAW_BYTES=""

# check_output WHAT — validate $OUT of the run just made (exit 1 on a wrong count or byte sum).
check_output() {
    local what="$1" got
    case "$what" in
        raw|rawfdw)
            got="$(sed -n 's/^records=\([0-9]*\) .*/\1/p' "$OUT")"
            [ "$got" = "$RECORDS" ] || die "raw_consume read '$got' records, expected $RECORDS: $(cat "$OUT")"
            [ "$what" = rawfdw ] || RAW_BYTES="$(sed -n 's/.* bytes=\([0-9]*\) .*/\1/p' "$OUT")"
            ;;
        kcat)
            got="$(wc -l <"$OUT")"
            [ "$got" = "$RECORDS" ] || die "kcat read $got records, expected $RECORDS"
            ;;
        one)
            [ "$(cat "$OUT")" = 1 ] || die "SELECT 1 returned '$(cat "$OUT")'"
            ;;
        count)
            got="$(cat "$OUT")"
            [ "$got" = "$RECORDS" ] || die "SELECT count(*) returned '$got', expected $RECORDS"
            ;;
        full)
            read -r got bytes _ <"$OUT"
            [ "$got" = "$RECORDS" ] || die "full-row scan counted '$got' rows, expected $RECORDS: $(cat "$OUT")"
            [ -z "$RAW_BYTES" ] || [ "$bytes" = "$RAW_BYTES" ] \
                || die "full-row scan summed $bytes key+value bytes, raw_consume $RAW_BYTES"
            ;;
    esac
}

# kafka_fdw's prefetch queue limits as src/option.c sets them (none: librdkafka's defaults, as raw_consume).
FDW_QUEUE_ARGS=()
FDW_QUEUE_DESC=""
for prop in queued.min.messages queued.max.messages.kbytes; do
    val="$(sed -n "s/.*conf_set(conf, \"${prop//./\\.}\", \"\([0-9]*\)\");.*/\1/p" src/option.c | head -n 1)"
    if [ -n "$val" ]; then FDW_QUEUE_ARGS+=(-X "$prop=$val"); FDW_QUEUE_DESC+="${FDW_QUEUE_DESC:+ }${prop#queued.}=$val"; fi
done

WHATS=(raw kcat)
[ ${#FDW_QUEUE_ARGS[@]} -eq 0 ] || WHATS+=(rawfdw)
WHATS+=(one count full)
declare -A LABEL=(
    [raw]="raw_consume (librdkafka, baseline)"
    [rawfdw]="raw_consume, kafka_fdw's queue limits"
    [kcat]="kcat -C -e -f '%o\\n' >/dev/null"
    [one]="psql SELECT 1 (connect overhead)"
    [count]="SELECT count(*)"
    [full]="SELECT all columns (full row)"
)
declare -A TIMES=() BCPU=() MCPU=()
RAW_INTERNAL=""

# Round 0 is a warm-up (not counted) that also validates every reader with a full count check.
for round in $(seq 0 "$RUNS"); do
    line=""
    for what in "${WHATS[@]}"; do
        if [ "$what" = kcat ] && [ "$round" -gt 0 ]; then
            read -r t c b <<<"$(time_cmd /dev/null run_kcat)"   # as specified: output to /dev/null
        else
            read -r t c b <<<"$(time_cmd "$OUT" "run_$what")"
            check_output "$what"
        fi
        if [ "$round" -gt 0 ]; then
            TIMES[$what]+="$t "; BCPU[$what]+="$b "; MCPU[$what]+="$c "
            [ "$what" != raw ] || RAW_INTERNAL+="$(sed -n 's/.*elapsed_ms=\([0-9.]*\).*/\1/p' "$OUT") "
        fi
        line+=" $what=${t%.*}ms"
    done
    if [ "$round" -eq 0 ]; then log "warm-up (not counted, all record counts checked):$line"
    else log "round $round/$RUNS:$line"; fi
done


declare -A MED=()
for what in "${WHATS[@]}"; do MED[$what]="$(median "${TIMES[$what]}")"; done
raw_ms="${MED[raw]}"

echo
echo "kafka_fdw scan benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?'), $(postgres --version 2>/dev/null || "$PG_BINDIR/postgres" --version)"
echo "topic: $RECORDS records, $PARTITIONS partitions, ~$VALUE_BYTES-byte JSON values ($RAW_BYTES key+value bytes); $RUNS runs each, median wall time"
echo "broker: $BENCH_BROKER_DESC"
bench_host_line
echo
printf '%-40s %10s %12s %8s %10s %11s   %s\n' "what" "median ms" "records/s" "x raw" "broker CPU" "machine CPU" "runs (ms)"
printf '%-40s %10s %12s %8s %10s %11s   %s\n' "----------------------------------------" "---------" "----------" "------" "----------" "-----------" "---------"
for what in "${WHATS[@]}"; do
    m="${MED[$what]}"
    if [ "$what" = one ]; then rps="-"
    else rps="$(awk -v n="$RECORDS" -v ms="$m" 'BEGIN { printf "%d", n / (ms / 1000) }')"; fi
    ratio="$(awk -v a="$m" -v b="$raw_ms" 'BEGIN { printf "%.2f", a / b }')"
    printf '%-40s %10s %12s %8s %10s %11s   %s\n' "${LABEL[$what]}" "$m" "$rps" "$ratio" \
        "$(ms_or_dash "$(median "${BCPU[$what]}")")" "$(ms_or_dash "$(median "${MCPU[$what]}")")" \
        "$(tr ' ' '\n' <<<"${TIMES[$what]}" | awk 'NF { printf "%s%.0f", s, $1; s = " " }')"
done
echo
echo "raw_consume's own elapsed_ms (handle creation to last record, no process start/exit): median $(median "$RAW_INTERNAL")"
echo "psql rows include psql start, connection and backend start-up (SELECT 1 above): nothing subtracted"
echo "broker CPU: median user+system CPU time of the broker process during a run (/proc/PID/stat); it shares the $(nproc) CPUs"
echo "machine CPU: median busy CPU time of the whole machine during a run (/proc/stat: every process, the broker and other tenants included)"
[ -z "$FDW_QUEUE_DESC" ] || echo "kafka_fdw's queue limits (src/option.c): $FDW_QUEUE_DESC; raw_consume: librdkafka's defaults"
echo
count_ratio="$(awk -v a="${MED[count]}" -v b="$raw_ms" 'BEGIN { printf "%.2f", a / b }')"
full_ratio="$(awk -v a="${MED[full]}" -v b="$raw_ms" 'BEGIN { printf "%.2f", a / b }')"
verdict() { awk -v r="$1" 'BEGIN { print (r <= 1.0 ? "met" : "NOT met") }'; }
echo "count(*) / raw = $count_ratio (target <= 1.0: $(verdict "$count_ratio"))"
echo "full row / raw = $full_ratio (target <= 1.0: $(verdict "$full_ratio"))"

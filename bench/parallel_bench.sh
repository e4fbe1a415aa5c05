#!/usr/bin/env bash
# bench/parallel_bench.sh — a decode-heavy scan with 2 parallel workers against the same scan without
# parallelism, side by side in one run (SPEC §6: "parallel: 2 workers ≥ 1.5 × serial on a decode-heavy
# scan").
#
#   bash bench/parallel_bench.sh
#
# On a fresh Debian 12 machine (as root) it installs the packages it needs, builds and installs the
# extension and the test broker, starts its own test broker (1 broker; KAFKA=real: a real Kafka, see bench/lib.sh) and a throwaway PostgreSQL in a
# temp dir (both stopped and removed at exit), creates a topic of PARTITIONS partitions, fills it with
# RECORDS records of ~VALUE_BYTES-byte JSON values, checks that nothing was lost to the mock broker's
# retention, prints the plans the planner chooses by itself (default costs), and then measures, RUNS
# times each (interleaved, after one uncounted warm-up round), the wall time of
#   psql -c "SET max_parallel_workers_per_gather = W; SELECT count(*), sum((kafka.json_parse(kafka_value)->>'id')::bigint) FROM s.topic"
# for W = 0 (serial: Foreign Scan) and W = WORKERS (Gather over Parallel Foreign Scan), checking every
# run's answer (count = RECORDS, and the same sum in both modes).  It prints both medians and the ratio.
# Exits non-zero on a wrong answer or if a plan is not the one intended.
#
# Environment: RECORDS (1000000), PARTITIONS (64), VALUE_BYTES (150), RUNS (5), WORKERS (2),
# TOPIC (parallel_bench), KEEP_TMP=1 keeps the temp dir (logs), PG_EXTRA_CONF adds postgresql.conf lines,
# PG_BINDIR another PostgreSQL 15 installation, TMPDIR where the temp dir goes.
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
RUNS="${RUNS:-5}"
WORKERS="${WORKERS:-2}"
TOPIC="${TOPIC:-parallel_bench}"
DB=parallel_bench
SCHEMA=s

for v in RECORDS PARTITIONS VALUE_BYTES RUNS WORKERS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$TOPIC" =~ ^[a-z_][a-z0-9_]*$ ]] || die "TOPIC must be a plain lower-case identifier (got '$TOPIC')"

# ---------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------
PG_EXTRA_CONF="max_parallel_workers = $((WORKERS > 8 ? WORKERS : 8))
${PG_EXTRA_CONF:-}"
export PG_EXTRA_CONF
bench_start "$DB"

bench_fill_topic "$TOPIC" "$PARTITIONS" "$RECORDS" "$VALUE_BYTES"

psql_q -d "$DB" -c "SELECT kafka.create_external_schema('$SCHEMA', brokers => '$KAFKA_BROKERS')" >/dev/null
psql_q -d "$DB" -c "SELECT 1 FROM $SCHEMA.$TOPIC LIMIT 0" >/dev/null \
    || die "foreign table $SCHEMA.$TOPIC was not created"

Q="SELECT count(*), sum((kafka.json_parse(kafka_value)->>'id')::bigint) FROM $SCHEMA.$TOPIC"

# The planner's own choice with the default costs, then the two plans measured.
plan() { psql_q -d "$DB" -c "SET max_parallel_workers_per_gather = $1" -c "EXPLAIN (COSTS OFF) $Q"; }
log "plan with the default settings (max_parallel_workers_per_gather = $WORKERS):"
plan "$WORKERS" | sed 's/^/    /' >&2
plan "$WORKERS" | grep -q "Parallel Foreign Scan" || die "the planner did not choose a parallel plan by itself"
plan 0 | grep -q "Parallel" && die "max_parallel_workers_per_gather = 0 still gave a parallel plan"
log "plan with max_parallel_workers_per_gather = 0:"
plan 0 | sed 's/^/    /' >&2
log "EXPLAIN ANALYZE of the parallel plan (records per participant):"
psql_q -d "$DB" -c "SET max_parallel_workers_per_gather = $WORKERS" \
    -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) $Q" | sed 's/^/    /' >&2

# ---------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------
run_with() { psql -X -v ON_ERROR_STOP=1 -qAt -F ' ' -d "$DB" -c "SET max_parallel_workers_per_gather = $1" -c "$Q"; }
run_serial()   { run_with 0; }
run_parallel() { run_with "$WORKERS"; }

OUT="$WORK_DIR/out"
SUM=""
check_output() {
    local got sum
    read -r got sum <"$OUT"
    [ "$got" = "$RECORDS" ] || die "$1 run counted '$got' records, expected $RECORDS"
    [ -n "$SUM" ] || SUM="$sum"
    [ "$sum" = "$SUM" ] || die "$1 run summed $sum, another run $SUM"
}

declare -A TIMES=() CPUS=() BCPU=()
for round in $(seq 0 "$RUNS"); do
    line=""
    for what in serial parallel; do
        read -r t cpu b <<<"$(time_cmd "$OUT" "run_$what")"
        check_output "$what"
        [ "$round" -eq 0 ] || { TIMES[$what]+="$t "; CPUS[$what]+="$cpu "; BCPU[$what]+="$b "; }
        line+=" $what=${t%.*}ms"
    done
    if [ "$round" -eq 0 ]; then log "warm-up (not counted):$line"
    else log "round $round/$RUNS:$line"; fi
done

ser="$(median "${TIMES[serial]}")"
par="$(median "${TIMES[parallel]}")"
ratio="$(awk -v a="$ser" -v b="$par" 'BEGIN { printf "%.2f", a / b }')"
verdict="$(awk -v r="$ratio" 'BEGIN { print (r >= 1.5 ? "met" : "NOT met") }')"

echo
echo "kafka_fdw parallel scan benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?'), $("$PG_BINDIR/postgres" --version)"
echo "topic: $RECORDS records, $PARTITIONS partitions, ~$VALUE_BYTES-byte JSON values; $RUNS runs each, median wall time"
echo "broker: $BENCH_BROKER_DESC"
bench_host_line
echo "query: $Q"
echo
printf '%-44s %10s %12s %8s %10s   %s\n' "what" "median ms" "records/s" "CPU ms" "broker CPU" "runs (ms)"
printf '%-44s %10s %12s %8s %10s   %s\n' "--------------------------------------------" "---------" "----------" "------" "----------" "---------"
for what in serial parallel; do
    m="$ser"; label="serial (max_parallel_workers_per_gather = 0)"
    if [ "$what" = parallel ]; then m="$par"; label="parallel ($WORKERS workers + leader)"; fi
    printf '%-44s %10s %12s %8s %10s   %s\n' "$label" "$m" \
        "$(awk -v n="$RECORDS" -v ms="$m" 'BEGIN { printf "%d", n / (ms / 1000) }')" \
        "$(median "${CPUS[$what]}" | awk '{ printf "%.0f", $1 }')" "$(ms_or_dash "$(median "${BCPU[$what]}")")" \
        "$(tr ' ' '\n' <<<"${TIMES[$what]}" | awk 'NF { printf "%s%.0f", s, $1; s = " " }')"
done
echo
echo "CPU ms: the machine's busy CPU time during a run (median; all processes, the broker included)."
echo "broker CPU: the broker process's user+system CPU time during a run (median; /proc/PID/stat)."
echo "The same work taking much more CPU time in one mode than in the other means a noisy machine."
echo
echo "serial / parallel = $ratio (target >= 1.5: $verdict)"

#!/usr/bin/env bash
# bench/refresh_bench.sh — ingest throughput of a streaming materialized view against COPY of the same
# rows into an equivalent table, side by side in one run (SPEC §6: "refresh: rows/s into a streaming
# view >= 2.0 x COPY of the same rows"), and the refreshing backend's memory (SPEC §6: "backend peak
# RSS flat in the number of records, <= 256 MiB for 1M records").
#
#   bash bench/refresh_bench.sh
#
# Starts its own test broker (1 broker) and throwaway PostgreSQL (removed at exit), fills a topic of
# PARTITIONS partitions with RECORDS records of ~VALUE_BYTES-byte JSON values, then, RUNS times:
#   1. REFRESH MATERIALIZED VIEW of a streaming view of the eight columns (first load of every record,
#      after REFRESH ... WITH NO DATA): Kafka fetch + conversion + bulk insert;
#   2. COPY of the very same rows (exported once from the view, text format) into a table with the
#      same columns, truncated before each run.
# Both targets have no indexes, so both measure the insert path alone; the view's row count is checked.
# Memory: the refreshing backend's RssAnon is sampled every 20 ms during each refresh (peak reported),
# and VmHWM (which also counts touched shared buffers) at the end; the first refresh of RECORDS/4 records
# is measured too, to show that memory does not grow with the number of records.
#
# KAFKA=real runs it all against a real Apache Kafka instead (bench/lib.sh); beside each figure, the
# broker process's CPU time during the refresh (or the COPY). Before the runs, uncounted warm-up
# refreshes: WARMUP of them (one on the test broker, three on real Kafka), and on real Kafka more until
# the JVM's JIT compiler threads use at most JIT_QUIET_MS (50) ms of CPU during one (WARMUP_MAX, 20, at
# most). A JVM that has just started serves the first full reads of a new topic up to twice as slowly
# (1.85 s, 1.40 s, then 0.77-0.84 s in one probe), and its C2 compiler went on using 120-300 ms of the
# two cores in each of the next five refreshes (20 ms in the sixth): that is the broker warming up,
# which a long-running broker has done and which COPY, reading a file, never meets. Each run's JIT
# compiler CPU is printed beside it.
#
# Environment: RECORDS (1000000), PARTITIONS (64), VALUE_BYTES (150), RUNS (3), WARMUP, JIT_QUIET_MS,
# WARMUP_MAX, KAFKA, KEEP_TMP=1, and
# VIEW_COLUMNS, the view's select list (default the eight columns; for example
# "kafka_partition, kafka_offset, kafka.json_parse(kafka_value) AS data" measures a view whose
# expressions a refresh evaluates per record, against COPY of the same rows into jsonb).
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
if [ "$BENCH_KAFKA" = mock ]; then WARMUP="${WARMUP:-1}"; else WARMUP="${WARMUP:-3}"; fi
JIT_QUIET_MS="${JIT_QUIET_MS:-50}"
WARMUP_MAX="${WARMUP_MAX:-20}"
TOPIC=refresh_bench
SMALL_TOPIC=refresh_bench_small
DB=refresh_bench

bench_start_bulk "$DB"
chmod 777 "$WORK_DIR"

bench_fill_topic "$TOPIC" "$PARTITIONS" "$RECORDS" "$VALUE_BYTES"
bench_fill_topic "$SMALL_TOPIC" "$PARTITIONS" $((RECORDS / 4)) "$VALUE_BYTES"

COLUMNS_SQL="${VIEW_COLUMNS:-kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key, kafka_value, kafka_headers, refresh_time}"
psql_q -d "$DB" >/dev/null <<SQL
SELECT kafka.create_external_schema('s', brokers => '$KAFKA_BROKERS');
CREATE MATERIALIZED VIEW mv AS SELECT $COLUMNS_SQL FROM s.$TOPIC WITH NO DATA;
CREATE MATERIALIZED VIEW mv_small AS SELECT $COLUMNS_SQL FROM s.$SMALL_TOPIC WITH NO DATA;
CREATE TABLE copy_target AS SELECT * FROM mv WITH NO DATA;
SQL

# The backend's CPU time, user and system, in clock ticks (its threads included: librdkafka's too),
# from its /proc/self/stat; the fields after the command name start at the third (state).
PROC_CPU_FROM="FROM (SELECT string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) AS stat"
CPU_START_SQL="SELECT f[12] AS user0, f[13] AS sys0 $PROC_CPU_FROM \\gset"
CPU_END_SQL="SELECT 'cpu', f[12]::bigint - :user0, f[13]::bigint - :sys0 $PROC_CPU_FROM;"
TICK_MS=$((1000 / $(getconf CLK_TCK)))

# refresh_once VIEW — empty VIEW, then time its first REFRESH in one session while sampling the
# backend's anonymous memory; prints "ms peak_rss_anon_kb vm_hwm_kb rows user_cpu_ms system_cpu_ms".
refresh_once() {
    local view="$1" fifo="$WORK_DIR/refresh.fifo" pid="" peak out
    rm -f "$fifo"; mkfifo "$fifo"
    psql_q -d "$DB" -c "REFRESH MATERIALIZED VIEW $view WITH NO DATA" >/dev/null
    psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <"$fifo" >"$WORK_DIR/refresh.out" 2>&1 &
    local psql_pid=$!
    exec 7>"$fifo"
    echo "SELECT pg_backend_pid();" >&7
    while [ -z "$pid" ]; do pid="$(head -n 1 "$WORK_DIR/refresh.out" 2>/dev/null || true)"; sleep 0.01; done
    cat >&7 <<SQL
$CPU_START_SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
REFRESH MATERIALIZED VIEW $view;
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
$CPU_END_SQL
SELECT 'hwm', substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s+(\d+)');
SELECT 'rows', count(*) FROM $view;
SQL
    exec 7>&-
    peak="$(peak_rss_anon_while "$pid" "$psql_pid")"
    wait "$psql_pid" || { cat "$WORK_DIR/refresh.out" >&2; die "refresh of $view failed"; }
    out="$(cat "$WORK_DIR/refresh.out")"
    echo "$(grep '^ms|' <<<"$out" | cut -d'|' -f2) $peak $(grep '^hwm|' <<<"$out" | cut -d'|' -f2) $(grep '^rows|' <<<"$out" | cut -d'|' -f2) $(cpu_ms <<<"$out")"
}

# cpu_ms — "user_ms system_ms" from a session's 'cpu|user|system' line (clock ticks).
cpu_ms() { awk -F'|' -v t="$TICK_MS" '$1 == "cpu" { print $2 * t, $3 * t }'; }

# copy_once — time COPY of the exported rows into the truncated copy_target; prints
# "ms user_cpu_ms system_cpu_ms".
copy_once() {
    local out
    out="$(psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <<SQL
TRUNCATE copy_target;
CHECKPOINT;
$CPU_START_SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
COPY copy_target FROM '$WORK_DIR/rows.copy';
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
$CPU_END_SQL
SQL
)" || { echo "$out" >&2; return 1; }
    echo "$(grep '^ms|' <<<"$out" | cut -d'|' -f2) $(cpu_ms <<<"$out")"
}

log "warm-up refreshes ($WARMUP at least; on real Kafka until its JIT compiler is quiet) and export of the same rows for COPY"
warmups=0
while :; do
    j0=$(broker_jit_cpu_ms)
    read -r ms _ _ rows _ _ <<<"$(refresh_once mv)"
    jit="$(cpu_delta "$j0" "$(broker_jit_cpu_ms)")"
    [ "$rows" = "$RECORDS" ] || die "the view holds $rows rows, expected $RECORDS"
    warmups=$((warmups + 1))
    log "warm-up refresh $warmups: $ms ms (broker JIT compiler CPU $(ms_or_dash "$jit"))"
    if [ "$warmups" -ge "$WARMUP" ] && { [ "$jit" = - ] || [ "$jit" -le "$JIT_QUIET_MS" ]; }; then break; fi
    if [ "$warmups" -ge "$WARMUP_MAX" ]; then
        log "the broker's JIT compiler still used $jit ms in warm-up refresh $warmups: measuring anyway"
        break
    fi
done
psql_q -d "$DB" -c "COPY (SELECT * FROM mv) TO '$WORK_DIR/rows.copy'" >/dev/null
copy_once >/dev/null || die "COPY of the exported rows failed"

refresh_ms=(); copy_ms=(); peaks=(); hwms=(); refresh_bcpu=""; copy_bcpu=""; refresh_mcpu=""; copy_mcpu=""; refresh_jit=""
refresh_cpu=""; copy_cpu=""
for run in $(seq 1 "$RUNS"); do
    psql_q -d "$DB" -c "CHECKPOINT" >/dev/null
    b0=$(broker_cpu_ms); m0=$(busy_ms); j0=$(broker_jit_cpu_ms)
    read -r ms peak hwm rows ru rs <<<"$(refresh_once mv)"
    b1=$(broker_cpu_ms); m1=$(busy_ms); jit="$(cpu_delta "$j0" "$(broker_jit_cpu_ms)")"; refresh_jit+="$jit "
    [ "$rows" = "$RECORDS" ] || die "run $run: the view holds $rows rows, expected $RECORDS"
    refresh_ms+=("$ms"); peaks+=("$peak"); hwms+=("$hwm"); refresh_bcpu+="$(cpu_delta "$b0" "$b1") "
    read -r c cu cs <<<"$(copy_once)"; [ -n "$c" ] || die "run $run: COPY failed"; b2=$(broker_cpu_ms); m2=$(busy_ms); copy_ms+=("$c"); copy_bcpu+="$(cpu_delta "$b1" "$b2") "
    refresh_cpu+="$ru/$rs "; copy_cpu+="$cu/$cs "
    refresh_mcpu+="$((m1 - m0)) "; copy_mcpu+="$((m2 - m1)) "
    log "run $run: refresh ${ms} ms (peak RssAnon ${peak} kB, VmHWM ${hwm} kB, broker CPU $(ms_or_dash "$(cpu_delta "$b0" "$b1")"), of it JIT compiler $(ms_or_dash "$jit"); backend CPU user ${ru} ms, system ${rs} ms), COPY ${c} ms (backend CPU user ${cu} ms, system ${cs} ms)"
done
read -r small_ms small_peak small_hwm small_rows _ _ <<<"$(refresh_once mv_small)"

r_med="$(median "${refresh_ms[*]}")"
c_med="$(median "${copy_ms[*]}")"
peak_max="$(printf '%s\n' "${peaks[@]}" | sort -n | tail -n 1)"
hwm_max="$(printf '%s\n' "${hwms[@]}" | sort -n | tail -n 1)"

echo
echo "refresh benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $RECORDS records, $PARTITIONS partitions, ~$VALUE_BYTES-byte values, median of $RUNS runs after $warmups warm-up refresh(es)"
echo "broker: $BENCH_BROKER_DESC"
[ "$BENCH_KAFKA" = mock ] || echo "broker JIT compiler CPU in each counted refresh (ms): $refresh_jit"
bench_host_line
printf '%-44s %10s %12s %12s %12s   %s\n' "what" "median ms" "rows/s" "broker CPU" "machine CPU" "runs (ms)"
calc() { awk "BEGIN { print $1 }"; }
label="REFRESH MATERIALIZED VIEW (streaming, 8 cols)"
[ -z "${VIEW_COLUMNS:-}" ] || label="REFRESH MATERIALIZED VIEW (VIEW_COLUMNS)"
printf '%-44s %10s %12.0f %12s %12s   %s\n' "$label" "$r_med" "$(calc "$RECORDS * 1000 / $r_med")" "$(ms_or_dash "$(median "$refresh_bcpu")")" "$(ms_or_dash "$(median "$refresh_mcpu")")" "${refresh_ms[*]}"
printf '%-44s %10s %12.0f %12s %12s   %s\n' "COPY of the same rows (text)" "$c_med" "$(calc "$RECORDS * 1000 / $c_med")" "$(ms_or_dash "$(median "$copy_bcpu")")" "$(ms_or_dash "$(median "$copy_mcpu")")" "${copy_ms[*]}"
echo "(broker CPU: median user+system CPU time of the broker process meanwhile, /proc/PID/stat; it shares the $(nproc) CPUs;"
echo " machine CPU: median busy CPU time of the whole machine meanwhile, /proc/stat, other tenants included)"
echo "backend CPU of each run, user / system ms (its threads included):"
echo "  refresh: $refresh_cpu"
echo "  COPY:    $copy_cpu"
ratio="$(calc "$c_med / $r_med")"
printf 'refresh rows/s / COPY rows/s = %.2f (target >= 2.0: %s)\n' "$ratio" "$(awk -v r="$ratio" 'BEGIN { print (r >= 2.0 ? "met" : "NOT met") }')"
echo
echo "memory of the refreshing backend (RssAnon sampled every 20 ms; VmHWM includes shared buffers):"
printf '  %9s records: peak RssAnon %7d kB, VmHWM %7d kB\n' "$small_rows" "$small_peak" "$small_hwm"
printf '  %9s records: peak RssAnon %7d kB, VmHWM %7d kB (max of %d runs)\n' "$RECORDS" "$peak_max" "$hwm_max" "$RUNS"
printf 'peak RssAnon for %d records: %.1f MiB (target <= 256 MiB; flat: %.2fx the %d-record refresh)\n' \
    "$RECORDS" "$(calc "$peak_max / 1024")" "$(calc "$peak_max / $small_peak")" "$small_rows"

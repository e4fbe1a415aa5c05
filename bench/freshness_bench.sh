#!/usr/bin/env bash
# bench/freshness_bench.sh — produce-to-visible latency of a streaming view with AUTO REFRESH
# (SPEC §6: "freshness with auto refresh: median <= 50 ms, p99 <= 200 ms produce-to-visible at 10k
# records/s"), and the CPU of the auto-refresh worker, busy and idle with 10 auto views.
#
#   bash bench/freshness_bench.sh
#
# Starts its own test broker (1 broker) and throwaway PostgreSQL (track_commit_timestamp = on), creates
# a streaming view over a topic of PARTITIONS partitions with auto refresh on, then has the test broker
# produce RATE records/s for SECONDS seconds. Each record carries the wall-clock time it was produced
# (produced_at_us, CLOCK_REALTIME of the broker process on the same machine); a row becomes visible when
# the refresh that inserted it commits, which pg_xact_commit_timestamp(xmin) tells exactly. Latency =
# commit time - produce time, over every record. Also checks that every produced record is in the view
# exactly once.
#
# KAFKA=real runs it against a real Apache Kafka instead (bench/lib.sh): the same generator (the test
# broker's, `serve --external`) produces into it. The broker process's CPU time during the run
# (generation and catch-up) is reported too.
#
# Before it, the generator produces at RATE for WARMUP seconds into another topic, read by an auto view
# of its own and a kcat (a JVM broker just started compiles its hot paths meanwhile: without it the
# first seconds of a real Kafka run took 2-3 s per record). The warm-up view's auto refresh is switched
# off before the run. The report gives the p99 of each 5 s of the run too: on real Kafka the first
# seconds of a new topic's stream can lag for kcat as for the view (bench/README.md, "the first seconds").
#
# Beside the view, kcat consumes the topic from its end as an independent reference: each record's
# produce-to-received latency (python timestamps every line kcat prints, unbuffered) is the floor the
# broker, the generator and the machine's load set in the same run; the view's latency above it is
# kafka_fdw's.
#
# After the run, 9 more auto views of the topic are made (positioned at its end), and the worker's CPU
# time (its process, librdkafka's threads included) and the broker's are measured for IDLE (20) s
# while nothing is produced.
#
# Environment: KAFKA, RATE (10000), DURATION (seconds, 30), WARMUP (seconds, 5), PARTITIONS (16),
# INTERVAL (kafka_fdw.auto_refresh_interval, default the server's: 1s), WAIT (kafka_fdw.auto_refresh_wait:
# default 10ms on the test broker, which holds an empty fetch for the whole wait, and the server's
# default, 500ms, on real Kafka, which answers as soon as a record arrives), IDLE (20), KEEP_TMP=1.
set -euo pipefail
export LC_ALL=C.UTF-8
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

RATE="${RATE:-10000}"
SECONDS_TO_RUN="${DURATION:-30}"
PARTITIONS="${PARTITIONS:-16}"
INTERVAL="${INTERVAL:-}"
if [ "$BENCH_KAFKA" = mock ]; then WAIT="${WAIT:-10ms}"; else WAIT="${WAIT:-}"; fi
WARMUP="${WARMUP:-5}"
IDLE="${IDLE:-20}"
TOPIC=freshness
DB=freshness

PG_EXTRA_CONF="${PG_EXTRA_CONF:-}
track_commit_timestamp = on
${INTERVAL:+kafka_fdw.auto_refresh_interval = '$INTERVAL'}
${WAIT:+kafka_fdw.auto_refresh_wait = '$WAIT'}"
export PG_EXTRA_CONF
bench_start "$DB"
bench_create_topic "$TOPIC" "$PARTITIONS"
[ "$WARMUP" = 0 ] || bench_create_topic "${TOPIC}_warmup" "$PARTITIONS"   # before the schema lists the topics

psql_q -d "$DB" >/dev/null <<SQL
SELECT kafka.create_external_schema('s', brokers => '$KAFKA_BROKERS');
CREATE MATERIALIZED VIEW fresh AS
SELECT kafka_partition, kafka_offset,
       (kafka.json_parse(kafka_value)->>'produced_at_us')::bigint AS produced_at_us
  FROM s.$TOPIC;
CREATE UNIQUE INDEX ON fresh (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('fresh', true);
SQL

if [ "$WARMUP" != 0 ]; then
    # the broker's read paths (fetch, ListOffsets, metadata) warm up too: a view of its own with auto
    # refresh and a kcat read the warm-up topic, as the measured run's view and reference do
    log "warm-up: producing $RATE records/s for $WARMUP s into ${TOPIC}_warmup (read by an auto view and kcat)"
    psql_q -d "$DB" >/dev/null <<SQL
CREATE MATERIALIZED VIEW warmup AS SELECT kafka_partition, kafka_offset FROM s.${TOPIC}_warmup;
SELECT kafka.set_auto_refresh('warmup', true);
SQL
    kcat -C -b "$KAFKA_BROKERS" -t "${TOPIC}_warmup" -o end -u -q -X fetch.wait.max.ms=10 -f '%s\n' >/dev/null &
    warm_pid=$!
    track_pid "$warm_pid"
    broker_ctl generate "${TOPIC}_warmup" "$RATE" "$WARMUP" >/dev/null
    broker_ctl generate_wait >/dev/null
    warm_total="$(broker_ctl watermarks "${TOPIC}_warmup" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }')"
    wait_for "[ \"\$(psql_q -d $DB -c 'SELECT count(*) FROM warmup')\" = $warm_total ]" 120 \
        || die "the warm-up view did not catch up"
    psql_q -d "$DB" -c "SELECT kafka.set_auto_refresh('warmup', false)" >/dev/null
    kill "$warm_pid" 2>/dev/null || true
    wait "$warm_pid" 2>/dev/null || true
fi
INTERVAL="$(psql_q -d "$DB" -c "SHOW kafka_fdw.auto_refresh_interval")"
WAIT="$(psql_q -d "$DB" -c "SHOW kafka_fdw.auto_refresh_wait")"
worker_pid="$(psql_q -d "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'kafka_fdw auto refresh' AND datname = '$DB'")"
[ -n "$worker_pid" ] || die "no auto-refresh worker runs for database $DB"
# proc_cpu_ms PID — user + system CPU time of a process, all its threads, in ms
proc_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }
log "producing $RATE records/s for $SECONDS_TO_RUN s into $PARTITIONS partitions (auto_refresh_interval $INTERVAL, auto_refresh_wait $WAIT)"
# the reference consumer, started at the end of the topic before the generator
cat >"$WORK_DIR/stamp.py" <<'PY'
import sys, time
out = open(sys.argv[1], "w", buffering=1)   # line by line: the bench counts the lines
key = '"produced_at_us":'
for line in sys.stdin:
    now = time.time_ns() // 1000
    i = line.find(key)
    if i >= 0:
        out.write("%d\n" % (now - int(line[i + len(key):].split("}", 1)[0].split(",", 1)[0])))
out.close()
PY
( kcat -C -b "$KAFKA_BROKERS" -t "$TOPIC" -o end -u -q -X fetch.wait.max.ms=10 -f '%s\n' | python3 "$WORK_DIR/stamp.py" "$WORK_DIR/kcat_latency_us" ) &
ref_pid=$!
track_pid "$ref_pid"
sleep 2   # kcat has its partitions at their end
gen_start=$(now_ms)
bcpu0=$(broker_cpu_ms)
wcpu0=$(proc_cpu_ms "$worker_pid")
broker_ctl generate "$TOPIC" "$RATE" "$SECONDS_TO_RUN" >/dev/null
reply="$(broker_ctl generate_wait)"
gen_ms=$(elapsed_ms "$gen_start")
read -r _ produced failed <<<"$reply"
[ "$failed" = 0 ] || die "the generator failed to produce $failed records"
[ "${produced:-0}" -gt 0 ] || die "the generator produced nothing: $reply"
total="$(broker_ctl watermarks "$TOPIC" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }')"
wait_for "[ \"\$(psql_q -d $DB -c 'SELECT count(*) FROM fresh')\" = $total ]" 300 \
    || die "the view did not catch up: $(psql_q -d "$DB" -c 'SELECT count(*) FROM fresh') of $total"
bcpu="$(cpu_delta "$bcpu0" "$(broker_cpu_ms)")"
wcpu=$(( $(proc_cpu_ms "$worker_pid") - wcpu0 ))
run_ms=$(elapsed_ms "$gen_start")
wait_for "[ \"\$(wc -l <'$WORK_DIR/kcat_latency_us')\" -ge $total ]" 10 || log "kcat received only $(wc -l <"$WORK_DIR/kcat_latency_us") of $total records"
pkill -P "$ref_pid" 2>/dev/null || true
kill "$ref_pid" 2>/dev/null || true
wait "$ref_pid" 2>/dev/null || true
ref="$(sort -n "$WORK_DIR/kcat_latency_us" | awk '{ v[NR] = $1 } END { if (NR == 0) { print "none"; exit }
    printf "median %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d records)", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.9) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, v[NR] / 1000, NR }')"
lost="$(psql_q -d "$DB" -c "SELECT count(*) FROM kafka.stream_scan_errors")"
[ "$lost" = 0 ] || die "the view lost or skipped records: $lost entries in kafka.stream_scan_errors"

read -r n p50 p90 p99 pmax refreshes <<<"$(psql_q -F ' ' -d "$DB" <<'SQL'
WITH l AS (
  SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000 - produced_at_us) / 1000.0 AS ms
    FROM fresh)
SELECT count(*),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(max(ms)::numeric, 1),
       (SELECT count(DISTINCT transaction_id) FROM kafka.stream_scan_states)
  FROM l;
SQL
)"

# p99 per 5 s of the run (by produce time), the view's and kcat's (its lines are in arrival order)
windows="$(psql_q -F ' ' -d "$DB" <<'SQL' | tr '\n' ' '
WITH l AS (
  SELECT produced_at_us, (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000 - produced_at_us) / 1000.0 AS ms
    FROM fresh),
w AS (SELECT ((produced_at_us - min(produced_at_us) OVER ()) / 5000000)::int AS w, ms FROM l)
SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric) FROM w GROUP BY w ORDER BY w;
SQL
)"
kcat_windows="$(awk -v n="$RATE" '{ print int((NR - 1) / (n * 5)), $1 }' "$WORK_DIR/kcat_latency_us" | sort -k1,1n -k2,2n |
    awk '{ c[$1]++; v[$1, c[$1]] = $2 } END { for (i = 0; i in c; i++) printf "%d ", v[i, int(c[i] * 0.99) + 1] / 1000 }')"

# Idle: 10 auto views (9 more, at the end of the topic), nothing produced.
{ for i in $(seq 2 10); do
      echo "CREATE MATERIALIZED VIEW fresh$i AS SELECT kafka_partition, kafka_offset FROM s.$TOPIC WITH NO DATA;"
      echo "SELECT kafka.reset_stream('fresh$i', 'latest'); SELECT kafka.set_auto_refresh('fresh$i', true);"
  done; } | psql_q -d "$DB" >/dev/null
sleep 3
[ "$(psql_q -d "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'kafka_fdw auto refresh' AND datname = '$DB'")" = "$worker_pid" ] \
    || die "the auto-refresh worker was replaced during the run"
log "idle: 10 auto views, measuring the worker's CPU for $IDLE s"
ibcpu0=$(broker_cpu_ms); iwcpu0=$(proc_cpu_ms "$worker_pid")
sleep "$IDLE"
iwcpu=$(( $(proc_cpu_ms "$worker_pid") - iwcpu0 )); ibcpu="$(cpu_delta "$ibcpu0" "$(broker_cpu_ms)")"

echo
echo "freshness benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $produced records produced at $RATE/s for $SECONDS_TO_RUN s, $PARTITIONS partitions, auto_refresh_interval $INTERVAL, auto_refresh_wait $WAIT"
awk -v n="$produced" -v ms="$gen_ms" 'BEGIN { printf "the generator achieved %.0f records/s (%d records in %.1f s)\n", n * 1000 / ms, n, ms / 1000 }'
echo "broker: $BENCH_BROKER_DESC"
bench_host_line
if [ "$bcpu" = - ]; then echo "broker CPU: unknown (REAL_KAFKA_PID not set)"
else awk -v c="$bcpu" -v ms="$run_ms" 'BEGIN { printf "broker CPU: %d ms in the %.1f s from the first record produced to the last one visible (%.0f%% of a core; /proc/PID/stat)\n", c, ms / 1000, c * 100 / ms }'; fi
echo "rows in the view: $n (every record exactly once: unique index, count = high watermarks = $total)"
awk -v r="$refreshes" -v ms="$run_ms" -v n="$n" 'BEGIN { printf "refreshes: %d (%.0f per second, %.0f records each on average)\n", r, r * 1000 / ms, n / r }'
awk -v c="$wcpu" -v ms="$run_ms" 'BEGIN { printf "auto-refresh worker CPU while busy: %d ms in %.1f s (%.0f%% of a core)\n", c, ms / 1000, c * 100 / ms }'
printf 'produce-to-visible latency: median %s ms, p90 %s ms, p99 %s ms, max %s ms\n' "$p50" "$p90" "$p99" "$pmax"
echo "reference, kcat produce-to-received in the same run: $ref"
echo "p99 of each 5 s of the run (ms): view $windows; kcat $kcat_windows"
awk -v m="$p50" -v p="$p99" 'BEGIN { printf "median %s (target <= 50 ms), p99 %s (target <= 200 ms)\n", (m <= 50 ? "met" : "NOT met"), (p <= 200 ? "met" : "NOT met") }'
awk -v c="$iwcpu" -v b="$ibcpu" -v s="$IDLE" 'BEGIN { printf "idle, 10 auto views: worker CPU %d ms in %d s (%.2f%% of a core; target <= 1%%: %s), broker CPU %s ms\n", c, s, c / (s * 10), (c / (s * 10) <= 1 ? "met" : "NOT met"), b }'

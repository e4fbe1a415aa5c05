#!/usr/bin/env bash
# bench/aggregate_bench.sh — refreshing an aggregating streaming view against INSERT ... SELECT ...
# GROUP BY of the same new records from a table, side by side in one run (SPEC §6: "aggregating
# refresh >= 1.0 x INSERT ... SELECT ... GROUP BY over the new records; independent of history"), and
# the refreshing backend's memory.
#
#   bash bench/aggregate_bench.sh
#
# Starts its own test broker (1 broker) and throwaway PostgreSQL. Two aggregating views over one topic,
# with GROUPS_SMALL (1,000) and GROUPS_LARGE (100,000) groups:
#   SELECT (kafka.json_parse(kafka_value)->>'id')::bigint % G AS g, count(*), sum(kafka_offset),
#          avg(length(kafka_value)), min(kafka_offset), max(kafka_offset) ... GROUP BY 1
# Then ROUNDS (11) times: fill RECORDS (1M) new records, REFRESH each view (timed, with the backend's
# peak RssAnon sampled every 20 ms). Round 1 folds 1M records into empty views (history 0: every group
# inserted); round 11 folds 1M records into views that hold 10M (every group updated): the refresh
# time must not grow with history. The baseline runs in every round from the second on, right after
# the refreshes, over the same round's records: they are copied from the topic into a plain table and
# INSERT INTO a table (with the same unique index as the view, truncated first) SELECT the same query
# over it GROUP BY is timed once per view. The ratio baseline / refresh is taken per round (the host's
# load drifts over a run, so the two figures of one round are compared) and its median over the
# rounds is the result. In round 11 two more views of the same queries, emptied and positioned at the
# end of the topic just before the fill, fold in the same 1M records from history 0, refreshed beside
# the others.
#
# The mock keeps ~5 MiB per partition: PARTITIONS (64) is enough for 1M records of VALUE_BYTES (100)
# (retention removes rounds already folded in, which is what a stream does).
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
VALUE_BYTES="${VALUE_BYTES:-100}"
ROUNDS="${ROUNDS:-11}"
GROUPS_SMALL="${GROUPS_SMALL:-1000}"
GROUPS_LARGE="${GROUPS_LARGE:-100000}"
TOPIC=aggregate_bench
DB=aggregate_bench

bench_start_bulk "$DB"
chmod 777 "$WORK_DIR"
bench_create_topic "$TOPIC" "$PARTITIONS"

query() {   # query G FROM
    echo "SELECT (kafka.json_parse(kafka_value)->>'id')::bigint % $1 AS g, count(*) AS n,
       sum(kafka_offset) AS s, avg(length(kafka_value)) AS len, min(kafka_offset) AS lo, max(kafka_offset) AS hi
  FROM $2 GROUP BY 1"
}
psql_q -d "$DB" >/dev/null <<SQL
SELECT kafka.create_external_schema('s', brokers => '$KAFKA_BROKERS');
CREATE MATERIALIZED VIEW agg_small AS $(query "$GROUPS_SMALL" "s.$TOPIC") WITH NO DATA;
CREATE MATERIALIZED VIEW agg_large AS $(query "$GROUPS_LARGE" "s.$TOPIC") WITH NO DATA;
SQL

# refresh_timed VIEW — REFRESH VIEW in a session whose anonymous memory is sampled; prints "ms peak_kb".
refresh_timed() {
    local view="$1" fifo="$WORK_DIR/refresh.fifo" pid="" peak out psql_pid
    rm -f "$fifo"; mkfifo "$fifo"
    psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <"$fifo" >"$WORK_DIR/refresh.out" 2>&1 &
    psql_pid=$!
    exec 7>"$fifo"
    echo "SELECT pg_backend_pid();" >&7
    while [ -z "$pid" ]; do pid="$(head -n 1 "$WORK_DIR/refresh.out" 2>/dev/null || true)"; sleep 0.01; done
    cat >&7 <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
REFRESH MATERIALIZED VIEW $view;
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
SQL
    exec 7>&-
    peak="$(peak_rss_anon_while "$pid" "$psql_pid")"
    wait "$psql_pid" || { cat "$WORK_DIR/refresh.out" >&2; die "refresh of $view failed"; }
    out="$(cat "$WORK_DIR/refresh.out")"
    echo "$(grep '^ms|' <<<"$out" | cut -d'|' -f2) $peak"
}

psql_q -d "$DB" >/dev/null <<SQL
CREATE TABLE target_small AS SELECT * FROM agg_small WITH NO DATA;
CREATE TABLE target_large AS SELECT * FROM agg_large WITH NO DATA;
CREATE UNIQUE INDEX ON target_small (g) NULLS NOT DISTINCT;
CREATE UNIQUE INDEX ON target_large (g) NULLS NOT DISTINCT;
SQL
insert_timed() {   # insert_timed TARGET G — INSERT INTO TARGET the query over batch; prints ms
    psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <<SQL | grep '^ms|' | cut -d'|' -f2
TRUNCATE $1;
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
INSERT INTO $1 $(query "$2" batch);
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
SQL
}

declare -A ms peak base
views="agg_small agg_large"
for round in $(seq 1 "$ROUNDS"); do
    # where this round's records begin: the baseline's table is made of them
    psql_q -d "$DB" >/dev/null <<SQL
DROP TABLE IF EXISTS before;
CREATE TABLE before AS
  SELECT partition_id AS p, next_offset AS o FROM kafka.stream_offsets WHERE mv_oid = 'agg_large'::regclass;
SQL
    if [ "$round" = "$ROUNDS" ]; then
        # history 0 in the same conditions as history 10M: views emptied and positioned at the end
        # of the topic (reset_stream 'latest'), refreshed right beside the others
        psql_q -d "$DB" >/dev/null <<SQL
CREATE MATERIALIZED VIEW agg_small0 AS $(query "$GROUPS_SMALL" "s.$TOPIC") WITH NO DATA;
CREATE MATERIALIZED VIEW agg_large0 AS $(query "$GROUPS_LARGE" "s.$TOPIC") WITH NO DATA;
SELECT kafka.reset_stream('agg_small0', 'latest'), kafka.reset_stream('agg_large0', 'latest');
SQL
        views="agg_small agg_small0 agg_large agg_large0"
    fi
    broker_ctl fill "$TOPIC" "$RECORDS" "$VALUE_BYTES" >/dev/null
    psql_q -d "$DB" -c "CHECKPOINT" >/dev/null
    for v in $views; do
        read -r m p <<<"$(refresh_timed "$v")"
        ms[$v,$round]=$m; peak[$v,$round]=$p
        got="$(psql_q -d "$DB" -c "SELECT last_refresh_rows FROM kafka.streams WHERE mv_name = '$v'::regclass")"
        [ "$got" = "$RECORDS" ] || die "round $round: $v folded in $got records, not $RECORDS (retention?)"
    done
    line="round $round (history $(( (round - 1) * RECORDS ))): $(for v in $views; do printf '%s %s ms (RssAnon %s kB) ' "$v" "${ms[$v,$round]}" "${peak[$v,$round]}"; done)"
    if [ "$round" -gt 1 ]; then
        # the baseline over the very records this round's refreshes folded in
        psql_q -d "$DB" >/dev/null <<SQL
DROP TABLE IF EXISTS batch;
CREATE TABLE batch AS SELECT t.kafka_partition, t.kafka_offset, t.kafka_value
  FROM s.$TOPIC t JOIN before b ON b.p = t.kafka_partition AND t.kafka_offset >= b.o;
SQL
        psql_q -d "$DB" -c "VACUUM ANALYZE batch" >/dev/null
        [ "$(psql_q -d "$DB" -c "SELECT count(*) FROM batch")" = "$RECORDS" ] \
            || die "round $round: the baseline table does not hold the round's $RECORDS records"
        base[small,$round]="$(insert_timed target_small "$GROUPS_SMALL")"
        base[large,$round]="$(insert_timed target_large "$GROUPS_LARGE")"
        line+="baseline ${base[small,$round]} ms / ${base[large,$round]} ms"
    fi
    log "$line"
done
for v in agg_small agg_large; do
    groups="$(psql_q -d "$DB" -c "SELECT count(*) || ' groups, ' || sum(n) || ' records' FROM $v")"
    log "$v: $groups"
done
# the baseline computed the same groups from the last round's records, all of them
for size in small large; do
    got="$(psql_q -d "$DB" -c "SELECT (SELECT count(*) FROM target_$size) = (SELECT count(*) FROM agg_$size)
                                   AND (SELECT sum(n) FROM target_$size) = $RECORDS")"
    [ "$got" = t ] || die "the baseline's target_$size does not hold agg_$size's groups and $RECORDS records"
done

calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
ratios() {   # ratios SIZE VIEW — baseline / refresh of every round from the second on
    for r in $(seq 2 "$ROUNDS"); do calc "${base[$1,$r]} / ${ms[$2,$r]}"; echo; done
}
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
rs="$(ratios small agg_small)"; rl="$(ratios large agg_large)"
echo
echo "aggregating refresh benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $RECORDS new records per refresh, $PARTITIONS partitions, ~$VALUE_BYTES-byte values"
echo "broker: $BENCH_BROKER_DESC"
bench_host_line
printf '%-58s %12s %12s\n' "what" "1,000 groups" "100,000 groups"
printf '%-58s %9s ms %9s ms\n' "REFRESH, history 0 (round 1, every group inserted)" "${ms[agg_small,1]}" "${ms[agg_large,1]}"
printf '%-58s %9s ms %9s ms\n' "REFRESH, history 0 (round $ROUNDS, beside the next line)" "${ms[agg_small0,$ROUNDS]}" "${ms[agg_large0,$ROUNDS]}"
printf '%-58s %9s ms %9s ms\n' "REFRESH, history $(( (ROUNDS - 1) * RECORDS )) (round $ROUNDS: every group updated)" "${ms[agg_small,$ROUNDS]}" "${ms[agg_large,$ROUNDS]}"
printf '%-58s %9s ms %9s ms\n' "REFRESH, median of rounds 2-$ROUNDS (every group updated)" "$(median "$(for r in $(seq 2 "$ROUNDS"); do echo "${ms[agg_small,$r]}"; done)")" "$(median "$(for r in $(seq 2 "$ROUNDS"); do echo "${ms[agg_large,$r]}"; done)")"
printf '%-58s %9s ms %9s ms\n' "INSERT ... SELECT ... GROUP BY, median of rounds 2-$ROUNDS" "$(median "$(for r in $(seq 2 "$ROUNDS"); do echo "${base[small,$r]}"; done)")" "$(median "$(for r in $(seq 2 "$ROUNDS"); do echo "${base[large,$r]}"; done)")"
printf '%-58s %12s %12s\n' "baseline / refresh, median of the rounds (target >= 1.0)" "$(median "$rs" 2)" "$(median "$rl" 2)"
printf '%-58s %12s %12s\n' "  lowest-highest round" "$(spread <<<"$rs")" "$(spread <<<"$rl")"
printf '%-58s %12s %12s\n' "refresh with history / without (round $ROUNDS)" "$(calc "${ms[agg_small,$ROUNDS]} / ${ms[agg_small0,$ROUNDS]}")" "$(calc "${ms[agg_large,$ROUNDS]} / ${ms[agg_large0,$ROUNDS]}")"
echo "peak RssAnon in round $ROUNDS, history 0 (kB): agg_small0 ${peak[agg_small0,$ROUNDS]}, agg_large0 ${peak[agg_large0,$ROUNDS]}"
echo "every round (ms): agg_small $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${ms[agg_small,$r]}"; done)"
echo "                  agg_large $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${ms[agg_large,$r]}"; done)"
echo "baseline (ms):    small     - $(for r in $(seq 2 "$ROUNDS"); do printf '%s ' "${base[small,$r]}"; done)"
echo "                  large     - $(for r in $(seq 2 "$ROUNDS"); do printf '%s ' "${base[large,$r]}"; done)"
echo "peak RssAnon of the refreshing backend (kB): agg_small $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${peak[agg_small,$r]}"; done)"
echo "                                             agg_large $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${peak[agg_large,$r]}"; done)"

#!/usr/bin/env bash
# Arrival-driven AUTO REFRESH: with the worker's periodic check pushed out to 60 s, only its watch can
# make records visible, and it does within a fraction of a second of their arrival (each of 10
# single records timed, the worst under 2 s); records that were in the topic before auto refresh was
# switched on come in with the first check; under a steady produce the view ends up holding exactly
# kcat's records, while DDL on the busy view (RENAME, CREATE INDEX) waits at most for one refresh
# (lock_timeout 3 s); a change of the server's options restarts the watch and records keep arriving;
# switching auto refresh off stops the ingestion at once although records keep arriving.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t072
topic="t072_arrival_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 4 >/dev/null

trap 'auto_refresh_settings; psql_q -d "$db" -c "SELECT kafka.set_auto_refresh(mv_name, false) FROM kafka.streams" >/dev/null 2>&1 || true' EXIT
# the test broker holds an empty fetch for the whole wait: keep it short
auto_refresh_settings 60s 10ms

kcat_keys() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | sort; }
view_keys() { psql_q -d "$db" -c "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | sort; }
view_count() { psql_q -d "$db" -c "SELECT count(*) FROM mv"; }
high_sum() { broker_ctl watermarks "$topic" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }'; }

broker_ctl fill "$topic" 500 100 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE src (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset FROM src WITH NO DATA;
CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv', true);
SQL

# 1. what was there before: the first check (at the worker's start) ingests it
wait_for '[ "$(view_count)" = 500 ]' 20 || die "the 500 records present before auto refresh were not ingested: $(view_count)"
wait_for "[ -n \"\$(psql_q -d $db -c \"SELECT 1 FROM pg_stat_activity WHERE application_name = 'kafka_fdw auto refresh' AND datname = '$db'\")\" ]" 10 \
    || die "no auto-refresh worker for $db"
sleep 1   # the first check's refresh has committed, the watch runs

# 2. one record at a time: visible long before the 60 s check
worst=0
for i in $(seq 1 10); do
    before="$(view_count)"
    t0=$(now_ms)
    broker_ctl fill "$topic" 1 100 >/dev/null
    wait_for "[ \"\$(view_count)\" = $((before + 1)) ]" 30 || die "record $i not visible after 30 s (count $(view_count), was $before)"
    ms=$(elapsed_ms "$t0")
    [ "$ms" -le "$worst" ] || worst=$ms
done
log "10 single records, the slowest visible after $worst ms (includes psql polling every 0.1 s)"
[ "$worst" -lt 2000 ] || die "a single record took $worst ms to become visible: the watch did not trigger the refresh"

# 3. a steady produce, with DDL on the busy view
( end=$(( $(now_ms) + 6000 )); while [ "$(now_ms)" -lt "$end" ]; do
    broker_ctl fill "$topic" 200 100 >/dev/null; sleep 0.02; done ) &
producer=$!
sleep 1
t0=$(now_ms)
psql_q -d "$db" <<'SQL' || die "DDL on the busy auto view did not get its lock within 3 s"
SET lock_timeout = '3s';
ALTER MATERIALIZED VIEW mv RENAME TO mv_renamed;
ALTER MATERIALIZED VIEW mv_renamed RENAME TO mv;
CREATE INDEX mv_offset ON mv (kafka_offset);
SQL
log "RENAME twice and CREATE INDEX on the busy view took $(elapsed_ms "$t0") ms"
mid="$(view_count)"
sleep 1
[ "$(view_count)" -gt "$mid" ] || die "the view stopped growing after the DDL ($mid rows)"
wait "$producer"
total="$(high_sum)"
wait_for "[ \"\$(view_count)\" = $total ]" 30 || die "the view did not catch up: $(view_count) of $total"
assert_eq "$(view_keys | md5sum)" "$(kcat_keys | md5sum)" "the view holds exactly kcat's records"
assert_eq "$(psql_q -d "$db" -c "SELECT count(*) - count(DISTINCT (kafka_partition, kafka_offset)) FROM mv")" 0 "no duplicates"
assert_eq "$(psql_q -d "$db" -c "SELECT coalesce(last_error, '') FROM kafka.streams WHERE mv_name = 'mv'::regclass")" "" "no refresh failed"

# 4. new server options: the watch starts again (with a nudge, as the check is 60 s away)
psql_q -d "$db" >/dev/null <<'SQL'
ALTER SERVER k OPTIONS (ADD "rdkafka.client.id" 't072');
SELECT kafka.set_auto_refresh('mv', true);
SQL
sleep 1
before="$(view_count)"
t0=$(now_ms)
broker_ctl fill "$topic" 1 100 >/dev/null
wait_for "[ \"\$(view_count)\" = $((before + 1)) ]" 30 || die "no record visible after the server's options changed"
ms=$(elapsed_ms "$t0")
[ "$ms" -lt 2000 ] || die "after ALTER SERVER a record took $ms ms: the watch did not restart"
log "after ALTER SERVER a record was visible after $ms ms"

# 5. switched off: nothing more comes in, records arriving or not
psql_q -d "$db" -c "SELECT kafka.set_auto_refresh('mv', false)" >/dev/null
sleep 0.5
off="$(view_count)"
broker_ctl fill "$topic" 100 100 >/dev/null
sleep 2
assert_eq "$(view_count)" "$off" "switched off, the view takes no more records"
assert_eq "$(psql_q -d "$db" -c "SELECT count(*) FROM mv")" "$off" "still"
log "ok"

#!/usr/bin/env bash
# AUTO REFRESH: records become visible in a streaming view without any manual
# refresh; a broker outage shows up in kafka.streams and, after recovery, the
# view holds every record exactly once; the refresh runs as the view's owner
# (a function returning current_user records that unprivileged role); manual
# refreshes racing the worker leave no duplicates; switching auto refresh off
# stops the ingestion; the server stops cleanly while the worker is busy.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t070
topic="t070_auto_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 4 >/dev/null
all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" >/dev/null; done; }
trap 'all_brokers up' EXIT

# kcat's view of the topic, as "partition offset" lines, sorted
kcat_keys() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | sort; }
view_keys() { psql_q -d "$db" -c "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | sort; }
view_count() { psql_q -d "$db" -c "SELECT count(*) FROM mv"; }
# produce_for SECONDS: about 2,000 records/s in the background (fills, since
# the broker runs one generator at a time); sets PRODUCER
produce_for() {
    ( end=$(( $(now_ms) + $1 * 1000 )); while [ "$(now_ms)" -lt "$end" ]; do
        broker_ctl fill "$topic" 200 100 >/dev/null; sleep 0.05; done ) &
    PRODUCER=$!
}
high_sum() { broker_ctl watermarks "$topic" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }'; }

psql_q -d "$db" <<SQL
CREATE ROLE t070_owner;
GRANT CREATE ON SCHEMA public TO t070_owner;
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO t070_owner;
CREATE FOREIGN TABLE src (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
GRANT SELECT ON src TO t070_owner;
CREATE FUNCTION whoami() RETURNS name LANGUAGE sql STABLE AS 'SELECT current_user';
SET ROLE t070_owner;
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, whoami() AS refreshed_by FROM src;
CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv', true);
RESET ROLE;
SQL
assert_eq "t|" "$(psql_q -d "$db" -c "SELECT auto_refresh, last_error FROM kafka.streams")" "auto refresh is on"

# 1. visible without any manual refresh
broker_ctl fill "$topic" 2000 100 >/dev/null
start=$(now_ms)
wait_for '[ "$(view_count)" = 2000 ]' 10 || die "records not visible after 10 s: $(view_count)"
echo "ok - 2000 records visible without a manual refresh after $(elapsed_ms "$start") ms"
assert_eq "t070_owner" "$(psql_q -d "$db" -c "SELECT DISTINCT refreshed_by FROM mv")" \
    "the worker refreshed as the view's owner, not as a superuser"
pid="$(psql_q -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'kafka_fdw auto refresh' AND datname = current_database()")"
[ -n "$pid" ] || die "no auto-refresh worker for the database"
echo "ok - one auto-refresh worker (pid $pid) serves the database"

# 2. an outage: the error shows in kafka.streams; after recovery, exactly once
psql_q -d postgres -c "ALTER SYSTEM SET kafka_fdw.connect_timeout = '1s'" >/dev/null
psql_q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
all_brokers down
wait_for '[ "$(psql_q -d "$db" -c "SELECT last_refresh_status FROM kafka.streams")" = error ]' 20 \
    || die "no error in kafka.streams during the outage"
err="$(psql_q -d "$db" -c "SELECT last_error FROM kafka.streams")"
assert_contains "$err" "could not reach Kafka brokers" "kafka.streams shows the outage"
all_brokers up
broker_ctl fill "$topic" 1000 100 >/dev/null
wait_for '[ "$(view_count)" = "$(high_sum)" ]' 90 || die "not caught up after the outage: $(view_count) of $(high_sum)"
assert_eq "$(kcat_keys)" "$(view_keys)" "after recovery the view holds every record exactly once (set equality with kcat)"
wait_for '[ "$(psql_q -d "$db" -c "SELECT last_refresh_status FROM kafka.streams")" = ok ]' 10 || true
assert_eq "ok" "$(psql_q -d "$db" -c "SELECT last_refresh_status FROM kafka.streams")" "kafka.streams is back to ok"
psql_q -d postgres -c "ALTER SYSTEM RESET kafka_fdw.connect_timeout" >/dev/null
psql_q -d postgres -c "SELECT pg_reload_conf()" >/dev/null

# 3. manual refreshes racing the worker: no duplicates (the unique index
#    would fail a refresh; set equality proves nothing is missing either)
produce_for 4
for _ in $(seq 1 20); do
    psql_q -d "$db" -c "REFRESH MATERIALIZED VIEW mv" >/dev/null || die "a manual refresh failed"
    sleep 0.1
done
wait "$PRODUCER"
wait_for '[ "$(view_count)" = "$(high_sum)" ]' 30 || die "not caught up after the race: $(view_count) of $(high_sum)"
assert_eq "$(kcat_keys)" "$(view_keys)" "20 manual refreshes racing the worker: every record exactly once"

# 4. auto refresh off: nothing more is ingested
psql_q -d "$db" -c "SET ROLE t070_owner; SELECT kafka.set_auto_refresh('mv', false)" >/dev/null
before="$(view_count)"
broker_ctl fill "$topic" 100 100 >/dev/null
sleep 1.5
assert_eq "$before" "$(view_count)" "with auto refresh off the view does not change"
wait_for '[ -z "$(psql_q -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '"'"'kafka_fdw auto refresh'"'"' AND datname = current_database()")" ]' 10 \
    || die "the worker did not exit after the last auto view was switched off"
echo "ok - the worker exits when no auto view is left"

# 5. the server stops cleanly while the worker is busy
psql_q -d "$db" -c "SET ROLE t070_owner; SELECT kafka.set_auto_refresh('mv', true)" >/dev/null
produce_for 6
wait_for '[ -n "$(psql_q -d "$db" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '"'"'kafka_fdw auto refresh'"'"'")" ]' 10 \
    || die "the worker did not start again"
sleep 2
start=$(now_ms)
stop_postgres || die "pg_ctl stop -m fast failed with the worker busy"
echo "ok - the server stopped cleanly (fast) with the worker busy, in $(elapsed_ms "$start") ms"
wait "$PRODUCER"
restart_postgres >/dev/null 2>&1 || die "the server did not start again"
wait_for '[ "$(view_count)" = "$(high_sum)" ]' 60 || die "not caught up after the restart: $(view_count) of $(high_sum)"
assert_eq "$(kcat_keys)" "$(view_keys)" "after the restart the worker resumes: every record exactly once"
psql_q -d "$db" -c "DROP MATERIALIZED VIEW mv" >/dev/null
psql_q -d "$db" -c "DROP OWNED BY t070_owner; DROP ROLE t070_owner" >/dev/null

# 6. DROP DATABASE is not held up: not by the launcher (it must absorb the
#    drop's ProcSignalBarrier), nor by a database's busy worker (it leaves).
start=$(now_ms)
timeout 20 psql -X -v ON_ERROR_STOP=1 -qAt -d postgres -c "CREATE DATABASE t070_empty" -c "DROP DATABASE t070_empty" \
    || die "CREATE/DROP DATABASE of an unrelated database did not finish"
echo "ok - DROP DATABASE of another database with the launcher running took $(elapsed_ms "$start") ms"
pg_install_extension t070_drop >/dev/null
psql_q -d t070_drop <<SQL >/dev/null
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE src (kafka_partition bigint, kafka_offset bigint) SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv2 AS SELECT * FROM src;
SELECT kafka.set_auto_refresh('mv2', true);
SQL
wait_for '[ -n "$(psql_q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = '"'"'kafka_fdw auto refresh'"'"' AND datname = '"'"'t070_drop'"'"'")" ]' 10 \
    || die "no worker for database t070_drop"
start=$(now_ms)
timeout 20 psql -X -v ON_ERROR_STOP=1 -qAt -d postgres -c "DROP DATABASE t070_drop" || die "DROP DATABASE with its worker running did not finish"
echo "ok - DROP DATABASE of a database with an auto-refresh worker took $(elapsed_ms "$start") ms"

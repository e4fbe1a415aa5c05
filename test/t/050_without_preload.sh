#!/usr/bin/env bash
# Without shared_preload_libraries, the first CREATE/REFRESH of a streaming
# view in a session is refused with a hint (the command hook was not in
# place when it began) instead of silently building a plain view or
# rebuilding without offsets; retried in the same session, it works.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t050
topic="t050_np_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null
broker_ctl fill "$topic" 100 50 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition bigint, kafka_offset bigint) SERVER k OPTIONS (topic '$topic');
SQL

# plpgsql stands in for "no library": an empty list cannot be set with ALTER SYSTEM
restore() {
    psql_q -d postgres -c "ALTER SYSTEM RESET shared_preload_libraries" >/dev/null 2>&1 ||
        as_pg sed -i '/shared_preload_libraries/d' "$PGDATA/postgresql.auto.conf"
    restart_postgres >/dev/null 2>&1 || true
}
trap restore EXIT
psql_q -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'plpgsql'" >/dev/null
restart_postgres >/dev/null 2>&1
assert_eq "plpgsql" "$(psql_q -d postgres -c 'SHOW shared_preload_libraries')" "server runs without preloading kafka_fdw"

out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=0 2>&1 <<'SQL'
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset FROM t;
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset FROM t;
SELECT 'rows', count(*) FROM mv;
SELECT 'streams', count(*) FROM kafka.streams;
SQL
)"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "kafka_fdw was not loaded when this command started" "first CREATE in a fresh session is refused"
assert_contains "$out" "shared_preload_libraries" "the error hints at preloading"
assert_contains "$out" "rows|100" "retried in the same session it loads the view"
assert_contains "$out" "streams|1" "and it is a streaming view"

broker_ctl fill "$topic" 10 50 >/dev/null
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=0 2>&1 <<'SQL'
REFRESH MATERIALIZED VIEW mv;
SELECT 'after refused', count(*) FROM mv;
REFRESH MATERIALIZED VIEW mv;
SELECT 'after retry', count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM mv;
SQL
)"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "kafka_fdw was not loaded when this command started" "first REFRESH in a fresh session is refused"
assert_contains "$out" "after refused|100" "the refused REFRESH changed nothing"
assert_contains "$out" "after retry|110|110" "the retried REFRESH appended exactly the 10 new records"

out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=0 -c "SELECT kafka.set_auto_refresh('mv', true)" 2>&1)" || true
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "auto refresh needs kafka_fdw in shared_preload_libraries" "auto refresh without preloading is refused"
assert_contains "$out" "HINT:  Add kafka_fdw to shared_preload_libraries" "with a hint"

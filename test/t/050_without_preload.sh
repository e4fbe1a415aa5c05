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

# The guard checks ownership before it looks the view up: a non-owner's first
# REFRESH in a fresh session, with an operator = (oid, oid) planted first on
# the search_path, gets PostgreSQL's ownership error and the operator never
# runs (issue 10, item 1).
psql_q -d "$db" <<'SQL'
CREATE ROLE t050_other;
CREATE SCHEMA t050_evil AUTHORIZATION t050_other;
GRANT USAGE ON SCHEMA public TO t050_other;
SET ROLE t050_other;
CREATE TABLE t050_evil.ran (who name);
GRANT INSERT ON t050_evil.ran TO PUBLIC;
GRANT USAGE ON SCHEMA t050_evil TO PUBLIC;
CREATE FUNCTION t050_evil.eq(a oid, b oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_user OPERATOR(pg_catalog.<>) 't050_other'::pg_catalog.name THEN
    INSERT INTO t050_evil.ran VALUES (current_user);
  END IF;
  RETURN a OPERATOR(pg_catalog.=) b;
END$$;
CREATE OPERATOR t050_evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = t050_evil.eq);
SQL
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=0 2>&1 <<'SQL'
SET ROLE t050_other;
SET search_path = t050_evil, pg_catalog;
REFRESH MATERIALIZED VIEW public.mv;
SQL
)"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "must be owner of materialized view mv" "a non-owner's REFRESH in a fresh session: the ownership error"
assert_eq "0" "$(psql_q -d "$db" -c "SELECT count(*) FROM t050_evil.ran")" \
    "the planted operator did not run as another role"
psql_q -d "$db" -c "SET client_min_messages = warning" -c "DROP SCHEMA t050_evil CASCADE" -c "DROP OWNED BY t050_other" -c "DROP ROLE t050_other" >/dev/null

#!/usr/bin/env bash
# The auto-refresh worker (a superuser session) and planted search_path objects
# (issue 10, item 1).  An attacker owns the database and schema evil, plants
# operators and functions there, and puts evil first on the search_path of the
# database (ALTER DATABASE ... SET) and of their own role.  Two auto views are
# refreshed by the worker: the attacker's own, and a victim's whose SQL
# function uses an unqualified || operator.  Nothing planted may run as
# anyone but the attacker (the traps record current_user and session_user
# and try ALTER ROLE ... SUPERUSER), and both views must be refreshed.  A
# manual REFRESH by the victim in a session with the database's search_path
# must not run them either.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t071
topic="t071_planted_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null
broker_ctl fill "$topic" 100 50 >/dev/null

# The test's own superuser sessions never take the attacker's search_path.
export PGOPTIONS="-c search_path=pg_catalog,public"
as_mallory() { PGOPTIONS="" psql_q -U t071_mallory -d "$db" "$@"; }
high_sum() { broker_ctl watermarks "$topic" | tr ' ' '\n' | awk -F: 'NF == 3 { s += $3 } END { print s }'; }
view_count() { psql_q -d "$db" -c "SELECT count(*) FROM $1"; }

psql_q -d "$db" <<SQL
CREATE ROLE t071_mallory LOGIN;
CREATE ROLE t071_victim;
ALTER DATABASE $db OWNER TO t071_mallory;
CREATE SCHEMA evil AUTHORIZATION t071_mallory;
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO t071_mallory, t071_victim;
CREATE FOREIGN TABLE public.src (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
GRANT SELECT ON public.src TO t071_mallory, t071_victim;
GRANT CREATE ON SCHEMA public TO t071_mallory, t071_victim;
SQL

# The traps (test/fixtures/search_path_traps.sql), first on the search_path
# of the database and of the attacker.
as_mallory -f "$REPO_ROOT/test/fixtures/search_path_traps.sql" >/dev/null
as_mallory <<'SQL'
ALTER DATABASE t071 SET search_path = evil, pg_catalog;
ALTER ROLE t071_mallory SET search_path = evil, pg_catalog;
SQL
assert_eq "evil, pg_catalog" "$(as_mallory -c "SHOW search_path")" "the attacker's sessions put evil first"
assert_eq "evil, pg_catalog" "$(PGOPTIONS="" psql_q -d "$db" -c "SHOW search_path")" \
    "so do the database's other sessions"

# The victim's view calls a SQL function with an unqualified ||: run under the
# database's search_path it would pick the planted operator, as the victim.
psql_q -d "$db" >/dev/null <<'SQL'
SET ROLE t071_victim;
CREATE FUNCTION public.t071_label(p bigint) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT 'partition ' || p::text $$;
CREATE MATERIALIZED VIEW public.victim_mv AS
  SELECT kafka_partition, kafka_offset, public.t071_label(kafka_partition) AS label,
         current_user AS refreshed_by FROM public.src;
SELECT kafka.set_auto_refresh('public.victim_mv', true);
SQL
as_mallory >/dev/null <<'SQL'
CREATE MATERIALIZED VIEW public.mal_mv AS
  SELECT kafka_partition, kafka_offset, current_user AS refreshed_by FROM public.src;
SELECT kafka.set_auto_refresh('public.mal_mv', true);
SQL

broker_ctl fill "$topic" 400 50 >/dev/null
total="$(high_sum)"
wait_for '[ "$(view_count public.victim_mv)" = "$total" ] && [ "$(view_count public.mal_mv)" = "$total" ]' 30 \
    || die "the worker did not refresh both views: victim $(view_count public.victim_mv), attacker $(view_count public.mal_mv) of $total"
echo "ok - the worker refreshed both views to $total rows"
# a few more polls of the worker over idle views
sleep 1

assert_eq "" "$(psql_q -d "$db" -c "SELECT who || ' (session ' || sess || '): ' || what FROM evil.ran")" \
    "no planted operator or function ran as another role"
assert_eq "f" "$(psql_q -d "$db" -c "SELECT rolsuper FROM pg_roles WHERE rolname = 't071_mallory'")" \
    "the attacker is not a superuser"
assert_eq "t071_victim|partition 0" \
    "$(psql_q -d "$db" -c "SELECT DISTINCT refreshed_by, label FROM public.victim_mv WHERE kafka_partition = 0")" \
    "the victim's view was refreshed as the victim, with pg_catalog's ||"
assert_eq "t071_mallory" "$(psql_q -d "$db" -c "SELECT DISTINCT refreshed_by FROM public.mal_mv")" \
    "the attacker's view was refreshed as the attacker"
assert_eq "ok|ok" "$(psql_q -d "$db" -c "SELECT string_agg(last_refresh_status, '|') FROM kafka.streams")" \
    "kafka.streams shows both refreshes ok"

psql_q -d "$db" >/dev/null <<'SQL'
SELECT kafka.set_auto_refresh('public.victim_mv', false), kafka.set_auto_refresh('public.mal_mv', false);
SQL

# A REFRESH by hand in a session that took the database's search_path (evil
# first) parses the victim's function as the worker does: with pg_catalog's ||.
broker_ctl fill "$topic" 20 50 >/dev/null
PGOPTIONS="" psql_q -d "$db" -c "SHOW search_path" -c "SET ROLE t071_victim" -c "REFRESH MATERIALIZED VIEW public.victim_mv" \
    >"$TEST_TMP/manual.out" 2>&1 || { cat "$TEST_TMP/manual.out"; die "the manual refresh failed"; }
assert_eq "evil, pg_catalog" "$(head -n 1 "$TEST_TMP/manual.out")" "a manual refresh in a session with evil first on the search_path"
assert_eq "$(high_sum)" "$(view_count public.victim_mv)" "ingests the new records"
assert_eq "" "$(psql_q -d "$db" -c "SELECT who || ' (session ' || sess || '): ' || what FROM evil.ran")" \
    "and runs no planted operator as the victim"
psql_q -d postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
psql_q -d postgres -c "DROP ROLE t071_mallory, t071_victim" >/dev/null

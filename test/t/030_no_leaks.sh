#!/usr/bin/env bash
# Error paths leak nothing: one backend runs hundreds of scans that fail
# mid-fetch (on_error 'fail'), stop early (LIMIT), fail in planning (missing
# topic) or are rescanned, each error caught in a subtransaction.  Its
# thread count (librdkafka handles own threads) must not grow and its RSS
# must stay flat.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t030
topic="t030_leak_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 4 >/dev/null
broker_ctl fill "$topic" 4000 200 >/dev/null
# an undecodable record in the middle of partition 0
broker_ctl produce "$topic" 0 bad %7Bnot-json >/dev/null
broker_ctl fill "$topic" 4000 200 >/dev/null

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition bigint, kafka_offset bigint, kafka_value bytea,
                        kafka_headers jsonb) SERVER k OPTIONS (topic '$topic');
CREATE FOREIGN TABLE t_fail (kafka_partition bigint, kafka_value jsonb)
  SERVER k OPTIONS (topic '$topic', on_error 'fail');
CREATE FOREIGN TABLE nosuch (kafka_offset bigint) SERVER k OPTIONS (topic 'no_such_topic_t030');
CREATE FUNCTION churn(n int) RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE errors int := 0;
BEGIN
  FOR i IN 1..n LOOP
    BEGIN PERFORM count(kafka_value) FROM t_fail; EXCEPTION WHEN others THEN errors := errors + 1; END;
    BEGIN PERFORM count(*) FROM nosuch; EXCEPTION WHEN others THEN errors := errors + 1; END;
    PERFORM * FROM t LIMIT 3;
    PERFORM (SELECT count(*) FROM t WHERE kafka_partition = p) FROM generate_series(0, 3) p;
  END LOOP;
  RETURN errors;
END \$\$;
CREATE FUNCTION proc_status(field text) RETURNS bigint LANGUAGE sql AS
  \$\$ SELECT substring(pg_read_file('/proc/self/status') FROM field || ':\s+(\d+)')::bigint \$\$;
SQL

out="$(psql -X -qAt -d "$db" 2>&1 <<'SQL'
SET kafka_fdw.connect_timeout = '5s';
SELECT 'warm', churn(30);
SELECT 'before', proc_status('Threads'), proc_status('VmRSS');
SELECT 'errors', churn(300);
SELECT 'after', proc_status('Threads'), proc_status('VmRSS');
SELECT 'count', count(*) FROM t;
SQL
)"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "errors|600" "every failing scan failed (300 x 2)"
assert_contains "$out" "count|8001" "the topic still reads completely"
before="$(echo "$out" | grep '^before|')"
after="$(echo "$out" | grep '^after|')"
threads_before="$(echo "$before" | cut -d'|' -f2)"; rss_before="$(echo "$before" | cut -d'|' -f3)"
threads_after="$(echo "$after" | cut -d'|' -f2)";  rss_after="$(echo "$after" | cut -d'|' -f3)"
assert_eq "$threads_before" "$threads_after" "backend thread count unchanged after 1,500 scans (no handle leak)"
growth=$((rss_after - rss_before))
[ "$growth" -le 8192 ] || die "backend RSS grew by ${growth} kB over 1,500 scans"
echo "ok - backend RSS grew by ${growth} kB over 1,500 scans (limit 8192 kB)"

# A backend that exits with a scan still open (a cursor, then the client
# goes away; or terminated by another session) must exit at once: its
# librdkafka handles are destroyed only after the transaction's cleanup has
# stopped the scan's fetchers.
for how in disconnect terminate; do
    app="t030_exit_$how"
    coproc CURSOR_SESSION { PGAPPNAME="$app" psql -X -qAt -d "$db" 2>&1; }
    session_pid=$CURSOR_SESSION_PID   # bash unsets CURSOR_SESSION_* when it ends
    printf 'BEGIN;\nDECLARE c CURSOR FOR SELECT * FROM t;\nFETCH 1 FROM c;\n' >&"${CURSOR_SESSION[1]}"
    wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND state = 'idle in transaction'\")\" = 1 ]" 20 \
        || die "the cursor session did not reach 'idle in transaction'"
    if [ "$how" = disconnect ]; then
        exec {CURSOR_SESSION[1]}>&-       # the client goes away
    else
        psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$app'" >/dev/null
    fi
    wait_for "[ \"\$(psql_q -d $db -c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app'\")\" = 0 ]" 10 \
        || die "the backend with an open Kafka cursor did not exit after $how"
    kill "$session_pid" 2>/dev/null || true
    wait "$session_pid" 2>/dev/null || true
    echo "ok - a backend with an open Kafka cursor exits promptly after $how"
done
assert_eq 8001 "$(psql_q -d "$db" -c 'SELECT count(*) FROM t')" "the server is healthy afterwards"

#!/usr/bin/env bash
# Broker unreachable: with every broker of the cluster set down, a query fails
# with a clear error (SQLSTATE HV00N, the broker list, a hint) after
# kafka_fdw.connect_timeout, not sooner and not much later; once the brokers
# are back, the same session (and its cached handle) works again.  A broker
# going down in the middle of a scan fails the scan the same way.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t010
topic="t010_down_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 3 >/dev/null
broker_ctl fill "$topic" 3000 100 >/dev/null

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition bigint, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
SQL
assert_eq 3000 "$(psql_q -d "$db" -c 'SELECT count(*) FROM t')" "all records readable while the brokers are up"

all_brokers() { for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl "$1" "$i" >/dev/null; done; }

# One session: the handle is warmed while the brokers are up, then all
# brokers go down (from inside the session, with \!), then the query.
downs=""
for i in $(seq 1 "$BROKER_COUNT"); do downs+="$BROKER ctl --state-dir $BROKER_STATE down $i >/dev/null; "; done
out="$(psql -X -qAt -d "$db" 2>&1 <<SQL
SET kafka_fdw.connect_timeout = '2s';
SELECT count(*) FROM t;
\\! $downs
SELECT clock_timestamp() AS t0 \\gset
\\set VERBOSITY verbose
SELECT count(*) FROM t;
SELECT (extract(epoch FROM clock_timestamp() - :'t0') * 1000)::int;
SQL
)" || true
all_brokers up
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "ERROR:  HV00N: could not reach Kafka brokers \"$KAFKA_BROKERS\" within 2000 ms" \
    "unreachable brokers give SQLSTATE HV00N naming the broker list"
assert_contains "$out" "HINT:  Check that the brokers are running" "the error has a hint"
elapsed="$(echo "$out" | tail -n 1)"
[[ "$elapsed" =~ ^[0-9]+$ ]] || die "no elapsed time in output"
[ "$elapsed" -ge 1800 ] && [ "$elapsed" -le 3500 ] || die "error after ${elapsed} ms, expected about 2000 ms"
echo "ok - error after ${elapsed} ms with connect_timeout 2 s"

# After recovery the same query works again.
assert_eq 3000 "$(psql_q -d "$db" -c 'SELECT count(*) FROM t')" "readable again after the brokers are back"

# Down in the middle of a scan: slow the brokers so the scan is in flight,
# then take them down; the scan must fail within connect_timeout, not hang.
for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl rtt "$i" 300 >/dev/null; done
start=$(now_ms)
( sleep 1; all_brokers down ) &
downer=$!
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 2>&1 <<'SQL'
SET kafka_fdw.connect_timeout = '2s';
SELECT count(*) FROM t;
SQL
)" && rc=0 || rc=$?
wait "$downer"
elapsed=$(elapsed_ms "$start")
all_brokers up
for i in $(seq 1 "$BROKER_COUNT"); do broker_ctl rtt "$i" 0 >/dev/null; done
echo "$out" | sed 's/^/#   /'
if [ "$rc" -eq 0 ]; then
    # The scan may legitimately finish before the brokers go down.
    assert_eq 3000 "$out" "scan finished before the outage with every record"
else
    assert_contains "$out" "could not reach Kafka brokers" "a scan whose brokers go down fails with the connection error"
    [ "$elapsed" -le 6000 ] || die "scan failed only after ${elapsed} ms"
    echo "ok - mid-scan outage failed the scan after ${elapsed} ms in total"
fi
assert_eq 3000 "$(psql_q -d "$db" -c 'SELECT count(*) FROM t')" "readable again after the mid-scan outage"

#!/usr/bin/env bash
# A broker list is bounded: librdkafka runs a thread and a socket per listed
# broker, and a 2,000-entry list left 2,006 threads in the backend, hit "Too
# many open files", repeated the whole list (~50 KB) in the error and overran
# connect_timeout.  Now such a list is refused at CREATE/ALTER SERVER at once
# with a short error; a list of the maximum length (100) of unreachable
# brokers fails within connect_timeout with the list abbreviated, and the
# failed handle's threads are gone after the error.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t090
pg_install_extension "$db" >/dev/null

# N distinct unreachable brokers: port 1 of loopback addresses (refused at once).
broker_list() {
    local n="$1" i out=""
    for ((i = 0; i < n; i++)); do out+="${out:+,}127.0.$((i / 250)).$((i % 250 + 1)):1"; done
    printf '%s' "$out"
}
list2000="$(broker_list 2000)"
list100="$(broker_list 100)"
echo "# the 2,000-entry list has ${#list2000} bytes"

# 1. 2,000 entries: refused by CREATE SERVER and ALTER SERVER, at once, briefly.
start=$(now_ms)
out="$(psql -X -qAt -d "$db" 2>&1 <<SQL
\\set VERBOSITY verbose
CREATE SERVER many FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$list2000');
CREATE SERVER one FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '127.0.0.1:1');
ALTER SERVER one OPTIONS (SET brokers '$list2000');
SELECT 'servers', count(*) FROM pg_foreign_server WHERE srvname IN ('many', 'one');
SELECT 'option', length(array_to_string(srvoptions, ',')) FROM pg_foreign_server WHERE srvname = 'one';
SQL
)" || true
elapsed=$(elapsed_ms "$start")
echo "$out" | cut -c1-300 | sed 's/^/#   /'
assert_contains "$out" "ERROR:  HV024: option \"brokers\" lists more than 100 brokers" \
    "a 2,000-entry list is refused with SQLSTATE HV024 naming the maximum"
assert_contains "$out" "HINT:  List a few brokers of the cluster" "the error has a hint"
assert_eq 2 "$(echo "$out" | grep -c 'lists more than 100 brokers')" "refused by CREATE SERVER and by ALTER SERVER"
assert_contains "$out" "servers|1" "only the valid server was created"
assert_contains "$out" "option|19" "ALTER SERVER kept the old list"
[ "${#out}" -le 2000 ] || die "the output of the refused commands has ${#out} bytes"
echo "ok - the output of the refused commands has ${#out} bytes"
[ "$elapsed" -le 3000 ] || die "refusing took ${elapsed} ms"
echo "ok - refused in ${elapsed} ms"

# 2. The maximum, 100 unreachable brokers: a query fails within connect_timeout,
#    the error names 3 brokers and the count, and no thread is left behind.
out="$(psql -X -qAt -d "$db" 2>&1 <<SQL
CREATE SERVER hundred FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$list100');
CREATE FOREIGN TABLE t (kafka_offset bigint) SERVER hundred OPTIONS (topic 'nope');
CREATE FUNCTION threads() RETURNS bigint LANGUAGE sql AS
  \$\$ SELECT substring(pg_read_file('/proc/self/status') FROM 'Threads:\s+(\d+)')::bigint \$\$;
SET kafka_fdw.connect_timeout = '2s';
SELECT 'before', threads();
SELECT clock_timestamp() AS t0 \\gset
\\set VERBOSITY verbose
SELECT count(*) FROM t;
\\set VERBOSITY default
SELECT 'elapsed', (extract(epoch FROM clock_timestamp() - :'t0') * 1000)::int;
SELECT 'after', threads();
SELECT count(*) FROM t;
SELECT 'again', threads();
SQL
)" || true
echo "$out" | cut -c1-300 | sed 's/^/#   /'
assert_contains "$out" "ERROR:  HV00N: could not reach Kafka brokers \"127.0.0.1:1,127.0.0.2:1,127.0.0.3:1,... (100 brokers)\" within 2000 ms" \
    "the error abbreviates the list to 3 brokers and the count"
err="$(echo "$out" | grep -A3 'ERROR:' | head -n 4)"
[ "${#err}" -le 1000 ] || die "the error report has ${#err} bytes"
echo "ok - the error report has ${#err} bytes"
elapsed="$(echo "$out" | grep '^elapsed|' | cut -d'|' -f2)"
[[ "$elapsed" =~ ^[0-9]+$ ]] || die "no elapsed time in output"
[ "$elapsed" -ge 1800 ] && [ "$elapsed" -le 3500 ] || die "error after ${elapsed} ms, expected about 2000 ms"
echo "ok - error after ${elapsed} ms with connect_timeout 2 s"
before="$(echo "$out" | grep '^before|' | cut -d'|' -f2)"
after="$(echo "$out" | grep '^after|' | cut -d'|' -f2)"
again="$(echo "$out" | grep '^again|' | cut -d'|' -f2)"
assert_eq "$before" "$after" "no librdkafka thread left in the backend after the failure"
assert_eq "$before" "$again" "nor after a second failure"
assert_eq 0 "$(grep -c 'Too many open files' "$PGDATA/../postgresql.log" 2>/dev/null || true)" \
    "no \"Too many open files\" in the server log"

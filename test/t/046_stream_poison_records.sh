#!/usr/bin/env bash
# Records on which the view's own expressions fail ("poison pills"), and
# scans of the same table inside functions that the view calls.
#
# The README's view shape, kafka.json_parse(kafka_value) over bytea, and a
# cast in WHERE: a non-JSON record and a record whose "id" is not a number
# must not block the view.  Under on_error 'skip' (the default) each is
# skipped into kafka.stream_scan_errors with partition, offset and the error,
# and everything after it is ingested, by CREATE, by REFRESH, by a refresh
# with a parallel plan (rolled back and run serially when a record fails)
# and by the auto-refresh worker.  Under on_error 'fail' the error names
# topic, partition and offset, and nothing is ingested.  A cancel
# (statement_timeout) inside the view's functions is never taken for a bad
# record.  Everything analyst-facing runs as an ordinary role; the view's
# contents are checked against kcat.
#
# And: a function in the view that itself scans the same foreign table sees
# the whole topic, not the refresh's range; the scan log counts only the
# view's own scan.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t046
topic="t046_poison_$$"
role=t046_analyst
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null

su_q() { psql_q -d "$db" -c "$1"; }
# q SQL: as the analyst
q() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" -c "$1"; }
# q_out SQL...: as the analyst, stdout and stderr, default verbosity (CONTEXT lines)
q_out() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" "$@" 2>&1; }
pct() { od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g'; }   # percent-encode stdin
kcat_pairs() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort; }
# view_is VIEW EXCLUDED MSG: VIEW holds exactly the topic's records except the "p o" lines in EXCLUDED
view_is() { assert_view_holds_topic "$1" "$topic" "$2" "$3"; }
skips() { q "SELECT coalesce(string_agg(partition_id || ' ' || position, ',' ORDER BY partition_id, position), 'none')
               FROM kafka.stream_scan_errors WHERE mv_name = 'public.$1'"; }
offsets() { su_q "SELECT coalesce(string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id), 'none')
                    FROM kafka.stream_offsets WHERE mv_oid = '$1'::regclass"; }

make_analyst "$db" "$role"
psql_q -d "$db" <<SQL
GRANT USAGE ON SCHEMA kafka TO $role;
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO $role;
CREATE USER MAPPING FOR $role SERVER k;
SQL
q "CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value bytea)
     SERVER k OPTIONS (topic '$topic')"
q "CREATE FOREIGN TABLE t_strict (kafka_partition int, kafka_offset bigint, kafka_value bytea)
     SERVER k OPTIONS (topic '$topic', on_error 'fail')"
assert_eq f "$(q 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user')" "the analyst is not a superuser"

# 100 valid records per partition, then a non-JSON record at partition 0 offset 100 and a
# record with a non-numeric id at partition 1 offset 100, then 100 valid records per partition.
broker_ctl fill "$topic" 200 40 >/dev/null
broker_ctl produce "$topic" 0 bad-json "$(printf '%s' 'SSN=123-45-6789, not json' | pct)" >/dev/null
broker_ctl produce "$topic" 1 bad-id "$(printf '%s' '{"id":"abc"}' | pct)" >/dev/null
broker_ctl fill "$topic" 200 40 >/dev/null

# --- on_error 'skip': CREATE and REFRESH ----------------------------------------------------------
out="$(q_out -c "CREATE MATERIALIZED VIEW mv_json AS
                   SELECT kafka_partition, kafka_offset, kafka.json_parse(kafka_value) AS data FROM t")" \
    || die "CREATE of mv_json failed: $out"
q "CREATE UNIQUE INDEX ON mv_json (kafka_partition, kafka_offset)"
view_is mv_json "0 100
" "json_parse view: everything but the non-JSON record ingested at CREATE"
assert_eq "0 100" "$(skips mv_json)" "the non-JSON record is in kafka.stream_scan_errors with its partition and offset"
assert_contains "$(q "SELECT error_code || ': ' || error_reason FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_json'")" \
    "skipped: invalid JSON in Kafka message" "the logged reason is the error of the view's expression"
assert_eq 1 "$(q "SELECT sum(skipped_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_json'")" \
    "kafka.stream_scan_states counts it as skipped"
assert_eq 401 "$(q "SELECT sum(scanned_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_json'")" \
    "and the other 401 records as scanned"

q "CREATE MATERIALIZED VIEW mv_cast AS
     SELECT kafka_partition, kafka_offset, (kafka.json_parse(kafka_value)->>'id')::int AS id FROM t
      WHERE (kafka.json_parse(kafka_value)->>'id')::int >= 0 WITH NO DATA"
q "CREATE UNIQUE INDEX ON mv_cast (kafka_partition, kafka_offset)"
q "REFRESH MATERIALIZED VIEW mv_cast" >/dev/null
view_is mv_cast "0 100
1 100
" "cast in WHERE and target list: REFRESH skips the non-JSON and the non-numeric record"
assert_eq "0 100,1 100" "$(skips mv_cast)" "both are logged"
assert_contains "$(q "SELECT error_reason FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_cast' AND partition_id = 1")" \
    'invalid input syntax for type integer: "abc"' "the cast's error is the reason"

# More records, one of them bad: the next refresh goes on past it.
broker_ctl produce "$topic" 1 bad-2 "$(printf '%s' '{"id": 1' | pct)" >/dev/null   # partition 1, offset 201
broker_ctl fill "$topic" 20 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv_cast" >/dev/null
view_is mv_cast "0 100
1 100
1 201
" "the next REFRESH ingests past a new bad record"
assert_eq "0 100,1 100,1 201" "$(skips mv_cast)" "and logs only the new one in addition"

# tableoid in the view's expressions is the foreign table's, as in any query
q "CREATE MATERIALIZED VIEW mv_oid AS SELECT kafka_partition, kafka_offset, tableoid::regclass::text AS src FROM t
     WHERE tableoid = 'public.t'::regclass AND (kafka.json_parse(kafka_value)->>'id') IS NOT NULL"
assert_eq "public.t|$(( $(kcat_pairs | wc -l) - 2 ))" "$(q "SELECT string_agg(DISTINCT src, ','), count(*) FROM mv_oid")" \
    "tableoid in the view's WHERE and select list is the foreign table's (all but the two non-JSON records)"

# --- a parallel plan: rolled back on the bad record and run serially -------------------------------
out="$(q_out -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
             -c "SET min_parallel_table_scan_size = 0" -c "SET max_parallel_workers_per_gather = 2" \
             -c "SET client_min_messages = debug1" \
             -c "CREATE MATERIALIZED VIEW mv_par AS
                   SELECT kafka_partition, kafka_offset, (kafka.json_parse(kafka_value)->>'id')::int AS id FROM t
                    WHERE (kafka.json_parse(kafka_value)->>'id')::int >= 0")" || die "CREATE of mv_par failed: $out"
assert_contains "$out" "failed on a record, refreshing serially" "the parallel refresh met the bad record and fell back to a serial run"
view_is mv_par "0 100
1 100
1 201
" "parallel plan: the same rows as the serial refresh"
assert_eq "0 100,1 100,1 201" "$(skips mv_par)" "parallel plan: the same skipped records, logged once"
assert_eq "$(q "SELECT sum(scanned_rows) || ' ' || sum(skipped_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_cast'")" \
    "$(q "SELECT sum(scanned_rows) || ' ' || sum(skipped_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_par'")" \
    "parallel plan: scan-log counts of the failed attempt were not kept"
# without bad records in its range, the parallel refresh stays parallel
broker_ctl fill "$topic" 20 40 >/dev/null
out="$(q_out -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
             -c "SET min_parallel_table_scan_size = 0" -c "SET max_parallel_workers_per_gather = 2" \
             -c "SET client_min_messages = debug1" -c "REFRESH MATERIALIZED VIEW mv_par")" || die "REFRESH of mv_par failed: $out"
[[ "$out" != *"refreshing serially"* ]] || die "a clean parallel refresh fell back to a serial run: $out"
view_is mv_par "0 100
1 100
1 201
" "a clean parallel refresh ingests the new records"

# --- on_error 'fail': the error names the record --------------------------------------------------
q "CREATE MATERIALIZED VIEW mv_strict AS SELECT kafka_partition, kafka_offset, kafka.json_parse(kafka_value) AS data
     FROM t_strict WITH NO DATA"
out="$(q_out -c "REFRESH MATERIALIZED VIEW mv_strict")" && die "REFRESH with on_error 'fail' succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "invalid JSON in Kafka message" "on_error 'fail': the refresh fails with the expression's error"
# the first bad record read fails it: 0/100 or 1/201, as the partitions' records arrive interleaved
names_bad() { [[ "$1" == *"Kafka record at partition 0, offset 100 of topic \"$topic\""* ||
                 "$1" == *"Kafka record at partition 1, offset 201 of topic \"$topic\""* ]]; }
names_bad "$out" || die "the error does not name a bad record: $out"
echo "ok - on_error 'fail': the error names topic, partition and offset"
assert_eq "none|0|f" "$(offsets mv_strict)|$(q 'SELECT count(*) FROM mv_strict' 2>/dev/null || echo 0)|$(q "SELECT relispopulated FROM pg_class WHERE oid = 'mv_strict'::regclass")" \
    "on_error 'fail': nothing ingested, no offsets"
out="$(q_out -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
             -c "SET min_parallel_table_scan_size = 0" -c "SET max_parallel_workers_per_gather = 2" \
             -c "REFRESH MATERIALIZED VIEW mv_strict")" && die "parallel REFRESH with on_error 'fail' succeeded"
names_bad "$out" || die "parallel plan: the error does not name a bad record: $out"
echo "ok - on_error 'fail', parallel plan: the error names the record too"

# --- a cancel inside the view's functions is not a bad record ----------------------------------
q "CREATE FUNCTION slow_id(v bytea) RETURNS int LANGUAGE plpgsql AS \$\$
     BEGIN PERFORM pg_sleep(0.01); RETURN 1; END \$\$"
q "CREATE MATERIALIZED VIEW mv_slow AS SELECT kafka_partition, kafka_offset, slow_id(kafka_value) AS one FROM t WITH NO DATA"
start=$(now_ms)
out="$(q_out -c "SET statement_timeout = '700ms'" -c "REFRESH MATERIALIZED VIEW mv_slow")" && die "a 4 s refresh beat a 700 ms statement_timeout"
assert_contains "$out" "canceling statement due to statement timeout" "statement_timeout inside a view's function cancels the refresh"
[ "$(elapsed_ms "$start")" -lt 3000 ] || die "the cancel took $(elapsed_ms "$start") ms"
assert_eq "none|0" "$(offsets mv_slow)|$(skips mv_slow | sed 's/none/0/')" "the cancel skipped nothing and stored no offsets"

# --- a function scanning the same table sees the whole topic --------------------------------------
q "CREATE FUNCTION topic_total() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM public.t'"
q "CREATE MATERIALIZED VIEW mv_nested AS SELECT kafka_partition, kafka_offset, topic_total() AS seen FROM t WITH NO DATA"
q "SELECT kafka.reset_stream('mv_nested', 'latest')" >/dev/null
broker_ctl fill "$topic" 10 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv_nested"
total="$(kcat_pairs | wc -l)"
assert_eq "10|$total" "$(q "SELECT count(*) || '|' || string_agg(DISTINCT seen::text, ',') FROM mv_nested")" \
    "a function in the view that scans the same table sees all $total records, not the refresh's range"
assert_eq "10" "$(q "SELECT sum(scanned_rows) FROM kafka.stream_scan_states
                      WHERE mv_name = 'public.mv_nested'
                        AND transaction_id = (SELECT max(transaction_id) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_nested')")" \
    "the scan log of that refresh counts the view's own 10 records only"

# --- the auto-refresh worker goes on past a bad record ----------------------------------------------
q "SELECT kafka.set_auto_refresh('mv_json', true)" >/dev/null
broker_ctl produce "$topic" 0 bad-3 "$(printf '%s' '<xml/>' | pct)" >/dev/null
broker_ctl produce "$topic" 0 good "$(printf '%s' '{"id": 424242}' | pct)" >/dev/null
wait_for "[ \"\$(q \"SELECT count(*) FROM mv_json WHERE data->>'id' = '424242'\")\" = 1 ]" 20 \
    || die "the auto-refresh worker did not ingest past the bad record: $(q 'SELECT last_refresh_status, last_error FROM kafka.streams')"
bad3="$(kcat -C -b "$KAFKA_BROKERS" -t "$topic" -p 0 -o beginning -e -q -f '%o %s\n' | awk '$2 == "<xml/>" {print $1}')"
assert_contains "$(skips mv_json)" "0 $bad3" "the worker logged the bad record at partition 0, offset $bad3"
assert_eq ok "$(q "SELECT last_refresh_status FROM kafka.streams WHERE mv_name = 'mv_json'::regclass")" "kafka.streams: the worker's refreshes succeed"
q "SELECT kafka.set_auto_refresh('mv_json', false)" >/dev/null
view_is mv_json "0 100
1 201
0 $bad3
" "auto refresh: the view equals the topic minus the three bad records"
# under on_error 'fail' the worker's error in kafka.streams names the record
q "SELECT kafka.set_auto_refresh('mv_strict', true)" >/dev/null
wait_for "[ \"\$(q \"SELECT last_refresh_status FROM kafka.streams WHERE mv_name = 'mv_strict'::regclass\")\" = error ]" 20 \
    || die "the auto-refresh worker did not report the failing record: $(q 'SELECT * FROM kafka.streams')"
err="$(q "SELECT last_error FROM kafka.streams WHERE mv_name = 'mv_strict'::regclass")"
assert_contains "$err" "invalid JSON in Kafka message (Kafka record at partition " "on_error 'fail': kafka.streams.last_error has the error and the record"
names_bad "$err" || die "kafka.streams.last_error names no bad record: $err"
echo "ok - on_error 'fail': kafka.streams.last_error of the worker names the record"
q "SELECT kafka.set_auto_refresh('mv_strict', false)" >/dev/null

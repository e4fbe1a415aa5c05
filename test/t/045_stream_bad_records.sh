#!/usr/bin/env bash
# Records a streaming refresh cannot ingest: an oversized record (larger
# than kafka_fdw.max_record_size, set low in the refreshing session) and an
# undecodable one (invalid JSON for a kafka_value jsonb column).
#
# With on_error 'skip' (the default) they are skipped and recorded in
# kafka.stream_scan_errors (partition, offset, timestamp, error_code
# 'skipped', a reason, the first bytes of key and value), counted in
# kafka.stream_scan_states.skipped_rows, and everything else is ingested:
# the view equals the topic minus exactly the skipped offsets.
# With on_error 'fail' the refresh fails naming the record, and nothing is
# ingested: an unpopulated view stays empty, a populated one keeps its rows,
# and kafka.stream_offsets is unchanged; switching the table to 'skip' then
# lets the next refresh ingest the rest.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t045
topic="t045_bad_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 2 >/dev/null

q() { psql_q -d "$db" -c "$1"; }
pct() { od -An -tx1 -v | tr -d ' \n' | sed 's/../%&/g'; }   # percent-encode stdin
kcat_pairs() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort; }
# view_is VIEW EXCLUDED MSG: VIEW holds exactly the topic's records except the "p o" lines in EXCLUDED
view_is() { assert_view_holds_topic "$1" "$topic" "$2" "$3"; }
offsets() { q "SELECT coalesce(string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id), 'none')
                 FROM kafka.stream_offsets WHERE mv_oid = '$1'::regclass"; }

# Valid JSON records in both partitions (fill), then the bad ones in partition 1:
# a 3000-byte JSON value (oversized for max_record_size = 2000) and invalid JSON.
broker_ctl fill "$topic" 400 40 >/dev/null
big="{\"big\":\"$(head -c 3000 /dev/zero | tr '\0' 'x')\"}"
broker_ctl produce "$topic" 1 big-key "$(printf '%s' "$big" | pct)" 1700000001234 >/dev/null
broker_ctl produce "$topic" 1 bad-key "$(printf '%s' '{"id": 1, oops not json' | pct)" 1700000005678 >/dev/null
broker_ctl fill "$topic" 200 40 >/dev/null
big_off=200; bad_off=201     # partition 1 held 200 records before them

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t_json (kafka_partition int, kafka_offset bigint, kafka_key text, kafka_value jsonb)
  SERVER k OPTIONS (topic '$topic');
CREATE FOREIGN TABLE t_bytes (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE FOREIGN TABLE t_strict (kafka_partition int, kafka_offset bigint, kafka_value jsonb)
  SERVER k OPTIONS (topic '$topic', on_error 'fail');
SQL
assert_eq "1|$big_off" "$(q "SELECT kafka_partition, kafka_offset FROM t_bytes WHERE length(kafka_value) > 3000")" "the oversized record is at partition 1, offset $big_off"

# --- on_error 'skip' (default) --------------------------------------------------------------------
# jsonb view, max_record_size 2000 in the creating session: both bad records are skipped.
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 2>&1 <<'SQL'
SET kafka_fdw.max_record_size = 2000;
CREATE MATERIALIZED VIEW mv_json AS SELECT kafka_partition, kafka_offset, kafka_key, kafka_value FROM t_json;
CREATE UNIQUE INDEX ON mv_json (kafka_partition, kafka_offset);
SQL
)" || die "CREATE of mv_json failed: $out"
echo "$out" | sed 's/^/#   /'
view_is mv_json "1 $big_off
1 $bad_off
" "jsonb view: everything but the oversized and the invalid-JSON record ingested"
errs="$(q "SELECT partition_id, position, error_code, stream_timestamp_type,
                  to_char(stream_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                  convert_from(key_prefix, 'UTF8'), length(value_prefix), error_reason
             FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_json' ORDER BY position")"
echo "$errs" | sed 's/^/#   /'
big_row="$(echo "$errs" | sed -n 1p)"; bad_row="$(echo "$errs" | sed -n 2p)"
assert_eq 2 "$(echo "$errs" | wc -l)" "kafka.stream_scan_errors has exactly the two skipped records"
assert_contains "$big_row" "1|$big_off|skipped|C|2023-11-14 22:13:21.234|big-key|64|" "oversized record logged: partition, offset, timestamp, key prefix, 64-byte value prefix"
assert_contains "$big_row" "max_record_size" "oversized record: the reason names kafka_fdw.max_record_size"
assert_contains "$bad_row" "1|$bad_off|skipped|C|2023-11-14 22:13:25.678|bad-key|23|" "invalid JSON record logged: partition, offset, timestamp, key prefix, value prefix"
assert_contains "$bad_row" "not valid JSON" "invalid JSON record: the reason says why (not valid JSON)"
assert_eq '{"id": 1, oops not json' "$(q "SELECT convert_from(value_prefix, 'UTF8') FROM kafka.stream_scan_errors
                                        WHERE mv_name = 'public.mv_json' AND position = $bad_off")" "the value prefix holds the record's bytes"
assert_eq "0|0 1|2" "$(q "SELECT string_agg(partition_id || '|' || skipped_rows, ' ' ORDER BY partition_id)
                          FROM kafka.stream_scan_states WHERE mv_name = 'public.mv_json'")" "kafka.stream_scan_states counts skipped_rows per partition"
assert_eq "$(kcat_pairs | awk '$1 == 0' | wc -l) $(kcat_pairs | awk '$1 == 1' | wc -l)" \
    "$(q "SELECT string_agg(next_offset::text, ' ' ORDER BY partition_id) FROM kafka.stream_offsets WHERE mv_oid = 'mv_json'::regclass")" \
    "the offsets move past the skipped records"

# bytea view refreshed in a session with max_record_size 2000: only the oversized record is skipped.
q "CREATE MATERIALIZED VIEW mv_bytes AS SELECT kafka_partition, kafka_offset, kafka_value FROM t_bytes WITH NO DATA"
q "CREATE UNIQUE INDEX ON mv_bytes (kafka_partition, kafka_offset)"
psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "SET kafka_fdw.max_record_size = 2000" -c 'REFRESH MATERIALIZED VIEW mv_bytes' >/dev/null 2>&1 \
    || die "refresh of mv_bytes failed"
view_is mv_bytes "1 $big_off
" "bytea view: everything but the oversized record ingested (invalid JSON is fine as bytea)"
assert_eq "1|$big_off|skipped" "$(q "SELECT partition_id, position, error_code FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_bytes'")" \
    "bytea view: only the oversized record logged"
# New records after a skip keep flowing, and the skipped ones are not retried.
broker_ctl fill "$topic" 50 40 >/dev/null
q 'REFRESH MATERIALIZED VIEW mv_bytes'
view_is mv_bytes "1 $big_off
" "bytea view after more records: still everything but the oversized record"

# --- on_error 'fail' ------------------------------------------------------------------------------
# (a) a view created empty: its first refresh fails on the invalid JSON, nothing is ingested.
q "CREATE MATERIALIZED VIEW mv_strict AS SELECT kafka_partition, kafka_offset, kafka_value FROM t_strict WITH NO DATA"
q "CREATE UNIQUE INDEX ON mv_strict (kafka_partition, kafka_offset)"
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW mv_strict' 2>&1)" && die "REFRESH with on_error 'fail' succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "could not convert Kafka record at partition 1, offset $bad_off of topic \"$topic\"" "on_error 'fail': the refresh fails naming the record"
assert_eq "f|none|0" "$(q "SELECT relispopulated FROM pg_class WHERE oid = 'mv_strict'::regclass")|$(offsets mv_strict)|$(q "SELECT count(*) FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_strict'")" \
    "on_error 'fail': nothing ingested (view still unpopulated, no offsets, no error rows)"

# (b) the oversized record with on_error 'fail' on a populated view: refresh fails, view and offsets unchanged.
q "CREATE FOREIGN TABLE t_strict_bytes (kafka_partition int, kafka_offset bigint, kafka_value bytea)
     SERVER k OPTIONS (topic '$topic', on_error 'fail', start_offset 'latest')"
q "CREATE MATERIALIZED VIEW mv_strict_bytes AS SELECT kafka_partition, kafka_offset, kafka_value FROM t_strict_bytes"
q "CREATE UNIQUE INDEX ON mv_strict_bytes (kafka_partition, kafka_offset)"
broker_ctl fill "$topic" 20 40 >/dev/null
q 'REFRESH MATERIALIZED VIEW mv_strict_bytes'
assert_eq 20 "$(q 'SELECT count(*) FROM mv_strict_bytes')" "strict bytea view (from latest) ingested 20 new records"
broker_ctl fill "$topic" 10 40 >/dev/null
broker_ctl produce "$topic" 0 big-key-2 "$(printf '%s' "$big" | pct)" >/dev/null
broker_ctl fill "$topic" 10 40 >/dev/null
before="$(q 'SELECT count(*) FROM mv_strict_bytes')|$(offsets mv_strict_bytes)"
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "SET kafka_fdw.max_record_size = 2000" -c 'REFRESH MATERIALIZED VIEW mv_strict_bytes' 2>&1)" \
    && die "REFRESH of an oversized record with on_error 'fail' succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "exceeds kafka_fdw.max_record_size" "on_error 'fail': an oversized record fails the refresh"
assert_eq "$before" "$(q 'SELECT count(*) FROM mv_strict_bytes')|$(offsets mv_strict_bytes)" "on_error 'fail': view rows and offsets unchanged"

# (c) switching to 'skip' lets the next refresh ingest the rest and log the record.
q "ALTER FOREIGN TABLE t_strict OPTIONS (SET on_error 'skip')"
q 'REFRESH MATERIALIZED VIEW mv_strict' 2>&1 | sed 's/^/#   /'
view_is mv_strict "1 $bad_off
" "after ALTER ... on_error 'skip': the refresh ingests everything but the invalid record"
assert_eq "1|$bad_off|skipped" "$(q "SELECT partition_id, position, error_code FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv_strict'")" \
    "and logs it in kafka.stream_scan_errors"

#!/usr/bin/env bash
# Retention deletes records before a streaming view ingested them: never
# silently.  The test broker keeps about 5 MiB per partition, so producing
# more than that into a 1-partition topic advances its low watermark.
#
# 1. Between refreshes: the view has ingested offsets [0, 1000); 8 MiB more
#    arrive, the low watermark L passes 1000.  The next refresh raises a
#    WARNING naming the lost range (1000 to L-1) and its size, records it in
#    kafka.stream_scan_errors (error_code 'lost', position 1000, lost_to L,
#    lost_count L-1000), and ingests exactly [L, high watermark): the view
#    equals {0..999} + what kcat reads, and ingested + lost = produced = high
#    watermark.
# 2. During a refresh: the refresh is held in the middle of its scan (the
#    view calls gate(), which waits on an advisory lock the test holds) with
#    most of its range not yet fetched (60,000 small records, more than
#    librdkafka prefetches: queued.min.messages = 20,000); meanwhile 8 MiB
#    more arrive and retention deletes the rest of the range.  Whatever the
#    refresh then does (fail, or commit and record the lost range), nothing
#    may be lost silently: every offset below the stored next offset is
#    either in the view or inside a 'lost' range of kafka.stream_scan_errors.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t044
topic="t044_ret_$$"
topic2="t044_race_$$"
locker="t044_locker_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 1 >/dev/null
broker_ctl create "$topic2" 1 >/dev/null

q() { psql_q -d "$db" -c "$1"; }
watermarks() { broker_ctl watermarks "$1" | sed -E 's/^ok 0:([0-9]+):([0-9]+)$/\1 \2/'; }   # "low high"

# --- 1. Records deleted between two refreshes -----------------------------------------------------
broker_ctl fill "$topic" 1000 100 >/dev/null
psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM t;
CREATE UNIQUE INDEX mv_pk ON mv (kafka_partition, kafka_offset);
SQL
assert_eq 1000 "$(q 'SELECT count(*) FROM mv')" "view loaded offsets 0..999"

broker_ctl fill "$topic" 8000 1000 >/dev/null     # ~8 MiB: retention deletes the oldest records
read -r low high <<<"$(watermarks "$topic")"
[ "$low" -gt 1000 ] || die "the broker did not delete records (low watermark $low); the test needs retention"
echo "ok - retention advanced the low watermark past the view's next offset (1000 -> $low, high $high)"

out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW mv' 2>&1)" || die "refresh failed: $out"
echo "$out" | sed 's/^/#   /'
lost=$((low - 1000))
assert_contains "$out" "WARNING:  records 1000 to $((low - 1)) of partition 0 of topic \"$topic\" were deleted by retention" \
    "the refresh warns, naming the lost range 1000 to $((low - 1))"
assert_contains "$out" "$lost records are lost" "the warning gives the number of lost records ($lost)"
assert_eq "1|0|1000|$low|$lost|t" \
    "$(q "SELECT count(*), min(partition_id), min(position), min(lost_to), min(lost_count),
                 bool_and(stream_name = '$topic' AND mv_name = 'public.mv' AND error_reason <> '')
            FROM kafka.stream_scan_errors WHERE error_code = 'lost'")" \
    "kafka.stream_scan_errors has one 'lost' row: partition 0, position 1000, lost_to $low, lost_count $lost"

{ seq 0 999 | sed 's/^/0 /'; kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n'; } | LC_ALL=C sort >"$TEST_TMP/expect.txt"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | LC_ALL=C sort >"$TEST_TMP/view.txt"
if ! diff "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" >"$TEST_TMP/diff.txt"; then
    echo "not ok - view = offsets 0..999 + the records kcat reads"; head -n 20 "$TEST_TMP/diff.txt" | sed 's/^/#   /'; exit 1
fi
echo "ok - view = offsets 0..999 + every record still retained ($(wc -l <"$TEST_TMP/view.txt") rows, set equality with kcat)"
ingested="$(q 'SELECT count(*) FROM mv')"
assert_eq "$high" "$((ingested + lost))" "ingested ($ingested) + lost ($lost) = produced = high watermark ($high)"
assert_eq "$high" "$(q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'mv'::regclass")" "the stored next offset is the high watermark"
assert_eq "$((high - low))" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "the refresh appended the $((high - low)) retained records"

q 'REFRESH MATERIALIZED VIEW mv' 2>"$TEST_TMP/again.err"
[ ! -s "$TEST_TMP/again.err" ] || { cat "$TEST_TMP/again.err"; die "a refresh with nothing lost printed messages"; }
assert_eq 1 "$(q "SELECT count(*) FROM kafka.stream_scan_errors WHERE error_code = 'lost'")" "the next refresh loses nothing and logs nothing more"

# --- 2. Records deleted while the refresh runs ------------------------------------------------------
broker_ctl fill "$topic2" 100 10 >/dev/null
psql_q -d "$db" <<SQL
CREATE FOREIGN TABLE t2 (kafka_partition int, kafka_offset bigint, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic2');
-- waits on advisory lock 44 at the record named by the setting test.gate ('partition:offset')
CREATE FUNCTION gate(p int, o bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  IF p || ':' || o = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared(44);
    PERFORM pg_advisory_unlock_shared(44);
  END IF;
  RETURN o;
END \$\$;
CREATE MATERIALIZED VIEW mv2 AS
  SELECT kafka_partition, gate(kafka_partition, kafka_offset) AS kafka_offset FROM t2;
CREATE UNIQUE INDEX ON mv2 (kafka_partition, kafka_offset);
SQL
broker_ctl fill "$topic2" 60000 10 >/dev/null     # range [100, 60100), ~4 MiB
read -r low2 high2 <<<"$(watermarks "$topic2")"
[ "$low2" -eq 0 ] || die "retention already deleted records of $topic2 (low $low2)"

PGAPPNAME="$locker" psql -X -qAt -d "$db" -c "SELECT pg_advisory_lock(44), pg_sleep(300)" >/dev/null 2>&1 &
lockpid=$!
app="t044_refresh_$$"
PGAPPNAME="$app" psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 >"$TEST_TMP/race.out" 2>&1 <<'SQL' &
SET kafka_fdw.connect_timeout = '30s';
SET test.gate = '0:200';
REFRESH MATERIALIZED VIEW mv2;
SELECT 'refresh committed';
SQL
rpid=$!
cleanup() {
    kill "$lockpid" "$rpid" 2>/dev/null || true
    # backends of this test still running (a failure path): end them
    psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name LIKE 't044\\_%\\_$$'" >/dev/null 2>&1 || true
}
trap cleanup EXIT
wait_for "[ \"\$(q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 44 AND granted\")\" = 1 ]" 10 || die "no gate lock"
wait_for "[ \"\$(q \"SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND wait_event = 'advisory'\")\" = 1 ]" 30 \
    || { cat "$TEST_TMP/race.out"; die "the refresh did not reach the gate"; }
echo "ok - the refresh of [100, $high2) is held in the middle of its scan"
broker_ctl fill "$topic2" 110000 10 >/dev/null     # ~8 MiB more: retention deletes all of [100, $high2)
read -r low2b _ <<<"$(watermarks "$topic2")"
[ "$low2b" -ge "$high2" ] || die "retention did not delete the refresh's range (low $low2b < $high2)"
echo "ok - while it waits, retention deletes the whole range (low watermark now $low2b)"
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '$locker'" >/dev/null
rc=0; wait "$rpid" || rc=$?
sed 's/^/#   /' "$TEST_TMP/race.out"
if [ "$rc" -eq 0 ]; then echo "ok - the refresh committed"; else echo "ok - the refresh failed (nothing committed)"; fi

# Every offset below the stored next offset is in the view or in a recorded lost range.
next="$(q "SELECT coalesce(max(next_offset), 0) FROM kafka.stream_offsets WHERE mv_oid = 'mv2'::regclass")"
in_view="$(q "SELECT count(*) FROM mv2 WHERE kafka_offset < $next")"
lost_logged="$(q "SELECT coalesce(sum(lost_count), 0) FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv2' AND error_code = 'lost'")"
unaccounted="$(q "SELECT count(*) FROM generate_series(0, $next - 1) o
                   WHERE NOT EXISTS (SELECT 1 FROM mv2 WHERE kafka_offset = o)
                     AND NOT EXISTS (SELECT 1 FROM kafka.stream_scan_errors e
                                      WHERE e.mv_name = 'public.mv2' AND e.error_code = 'lost'
                                        AND o >= e.position AND o < e.lost_to)")"
if [ "$unaccounted" -ne 0 ]; then
    echo "not ok - no record lost silently when retention deletes records during the refresh"
    echo "#   stored next offset $next: $in_view offsets in the view, $lost_logged recorded as lost,"
    echo "#   $unaccounted offsets below it are neither ingested nor recorded as lost"
    q "SELECT min(kafka_offset), max(kafka_offset), count(*) FROM mv2" | sed 's/^/#   view min|max|count: /'
    exit 1
fi
echo "ok - no record lost silently: below the next offset $next, $in_view ingested + $lost_logged recorded lost"

# And the view recovers: one more refresh (records the loss if not yet done) and the view is complete.
q 'REFRESH MATERIALIZED VIEW mv2' 2>/dev/null
read -r _ high2c <<<"$(watermarks "$topic2")"
assert_eq "$high2c" "$(q "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'mv2'::regclass")" "after one more refresh the next offset is the high watermark"
total_lost="$(q "SELECT coalesce(sum(lost_count), 0) FROM kafka.stream_scan_errors WHERE mv_name = 'public.mv2' AND error_code = 'lost'")"
assert_eq "$high2c" "$(( $(q 'SELECT count(*) FROM mv2') + total_lost ))" "ingested + lost = produced ($high2c)"

#!/usr/bin/env bash
# Streaming materialized view, exactly once: CREATE loads every record, and a
# sequence of REFRESHes interleaved with production (bulk fills, single
# records into one partition, NULL keys and values, a refresh with nothing
# new, a background producer running while refreshing) ingests every record
# of the topic exactly once.  The ground truth is kcat: after every quiescent
# refresh the set of (partition, offset) in the view equals the set kcat
# reads from the brokers; a UNIQUE index on (kafka_partition, kafka_offset)
# rules out duplicates.  At the end kafka.stream_lag shows lag 0 on every
# partition (next offset = the broker's high watermark), kafka.streams
# total_rows equals the record count, and the scan log accounts for every
# record once.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t040
topic="t040_eo_$$"
parts=3
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" "$parts" >/dev/null

q() { psql_q -d "$db" -c "$1"; }
kcat_pairs() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort; }
view_pairs() { q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | LC_ALL=C sort; }
# same_as_kcat MSG: the view holds exactly the records kcat reads (set equality, no duplicates).
same_as_kcat() {
    kcat_pairs >"$TEST_TMP/kcat.txt"
    view_pairs >"$TEST_TMP/view.txt"
    local n dups
    n=$(wc -l <"$TEST_TMP/kcat.txt")
    dups=$(uniq -d "$TEST_TMP/view.txt" | wc -l)
    [ "$dups" -eq 0 ] || { echo "not ok - $1"; echo "#   $dups duplicate (partition, offset) in the view"; exit 1; }
    if ! diff "$TEST_TMP/kcat.txt" "$TEST_TMP/view.txt" >"$TEST_TMP/diff.txt"; then
        echo "not ok - $1"
        echo "#   kcat: $n records, view: $(wc -l <"$TEST_TMP/view.txt") rows; diff (< only in kcat, > only in view):"
        head -n 20 "$TEST_TMP/diff.txt" | sed 's/^/#   /'
        exit 1
    fi
    echo "ok - $1 ($n records)"
}
refresh() { q 'REFRESH MATERIALIZED VIEW mv'; }
total() { kcat_pairs | wc -l; }

# Round 0: records before the view exists, including NULL key, NULL value and empty value.
broker_ctl fill "$topic" 600 64 >/dev/null
broker_ctl produce "$topic" 0 '~' 'null-key' >/dev/null
broker_ctl produce "$topic" 1 'null-value' '~' >/dev/null
broker_ctl produce "$topic" 2 'empty-value' '""' >/dev/null

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_key bytea, kafka_value bytea)
  SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_key, kafka_value FROM t;
CREATE UNIQUE INDEX mv_pk ON mv (kafka_partition, kafka_offset);
SQL
same_as_kcat "CREATE MATERIALIZED VIEW loads every record"
assert_eq "603" "$(q 'SELECT total_rows FROM kafka.streams')" "kafka.streams total_rows after CREATE"
assert_eq "1|1|1" "$(q "SELECT count(*) FILTER (WHERE kafka_key IS NULL), count(*) FILTER (WHERE kafka_value IS NULL),
                             count(*) FILTER (WHERE kafka_value = '') FROM mv")" \
    "NULL key, NULL value and empty value ingested as such"

# Round 1: a refresh with nothing new appends nothing and keeps the offsets.
offs_before="$(q 'SELECT partition_id, next_offset FROM kafka.stream_offsets ORDER BY 1')"
refresh
assert_eq "0" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "refresh with nothing new appends 0 rows"
assert_eq "$offs_before" "$(q 'SELECT partition_id, next_offset FROM kafka.stream_offsets ORDER BY 1')" \
    "refresh with nothing new keeps the offsets"
same_as_kcat "view unchanged by the empty refresh"

# Round 2: a bulk fill, then refresh.
broker_ctl fill "$topic" 900 64 >/dev/null
refresh
assert_eq "900" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "refresh after 900 new records appends 900"
same_as_kcat "refresh after a bulk fill"

# Round 3: new records in one partition only; the others have nothing new.
for i in $(seq 1 25); do echo "produce $topic 1 k1-$i v$i"; done | broker_ctl - >/dev/null
refresh
assert_eq "25" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "refresh after 25 records in partition 1 appends 25"
same_as_kcat "refresh after records in a single partition"

# Round 4: two productions between refreshes, then two refreshes in a row.
broker_ctl fill "$topic" 301 32 >/dev/null
broker_ctl produce "$topic" 2 k2 v2 >/dev/null
refresh
refresh
assert_eq "0" "$(q 'SELECT last_refresh_rows FROM kafka.streams')" "second refresh in a row appends nothing"
same_as_kcat "two productions, two refreshes"

# Round 5: refreshes while a background producer is running (small fills
# every 50 ms for 4 s; the broker's own `generate` is taken by the preloaded
# "growing" topic).  Each intermediate state must be a duplicate-free subset
# of the topic; once the producer is done, one more refresh makes the view
# equal to the topic.
gen_from=$(total)
(
    end=$(( $(now_ms) + 4000 )); n=0
    while [ "$(now_ms)" -lt "$end" ]; do
        broker_ctl fill "$topic" 37 48 >/dev/null || exit 1
        n=$((n + 37)); sleep 0.05
    done
    echo "$n" >"$TEST_TMP/produced"
) &
producer=$!
trap 'kill $producer 2>/dev/null || true' EXIT
refreshes=0
while kill -0 "$producer" 2>/dev/null; do
    refresh
    refreshes=$((refreshes + 1))
    view_pairs >"$TEST_TMP/view.txt"
    kcat_pairs >"$TEST_TMP/kcat.txt"
    [ "$(uniq -d "$TEST_TMP/view.txt" | wc -l)" -eq 0 ] || die "duplicates in the view during production"
    extra=$(LC_ALL=C comm -13 "$TEST_TMP/kcat.txt" "$TEST_TMP/view.txt" | wc -l)
    [ "$extra" -eq 0 ] || die "$extra rows of the view are not in the topic"
    sleep 0.2
done
wait "$producer" || die "background producer failed"
trap - EXIT
produced=$(cat "$TEST_TMP/produced")
[ "$refreshes" -ge 3 ] || die "only $refreshes refreshes ran while producing"
echo "ok - $refreshes refreshes while producing: every intermediate view a duplicate-free subset of the topic"
refresh
assert_eq "$((gen_from + produced))" "$(total)" "kcat sees every record of the background producer ($produced)"
same_as_kcat "after the background producer: every record exactly once"

# Final accounting.
n=$(total)
assert_eq "$n" "$(q 'SELECT count(*) FROM mv')" "view row count equals the topic's record count"
assert_eq "$n" "$(q 'SELECT total_rows FROM kafka.streams')" "kafka.streams total_rows equals the record count"
assert_eq "$n" "$(q "SELECT sum(scanned_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv'")" \
    "the scan log accounts every record once (sum of scanned_rows)"
wm="$(broker_ctl watermarks "$topic")"    # ok 0:low:high 1:low:high ...
expect=""
for pw in ${wm#ok }; do
    IFS=: read -r p _ hi <<<"$pw"
    expect+="$p|$hi|$hi|0"$'\n'
done
assert_eq "${expect%$'\n'}" "$(q "SELECT partition_id, next_offset, high_watermark, lag FROM kafka.stream_lag WHERE mv_name = 'mv'::regclass ORDER BY 1")" \
    "kafka.stream_lag: next offset = high watermark, lag 0 on every partition"
assert_eq "${expect%$'\n'}" "$(q "SELECT partition_id, next_offset, high_watermark, lag FROM kafka.stream_lag('mv') ORDER BY 1")" \
    "kafka.stream_lag('mv') agrees"

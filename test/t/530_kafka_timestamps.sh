#!/usr/bin/env bash
# Timestamps, live against a real Apache Kafka (the mock has only CreateTime and answers ListOffsets by
# timestamp with -1):
#   - a topic with message.timestamp.type=LogAppendTime: kafka_timestamp_type 'L' and the broker's
#     append times (kcat's), not the create times the producer sent (2001);
#   - a CreateTime topic keeps the producer's times, type 'C';
#   - kafka_timestamp >= t is narrowed with the broker's offsets-for-times: exactly the rows of a full
#     scan filtered on the same condition (not pushed down) and of kcat, and EXPLAIN ANALYZE reads
#     fewer records than the full scan;
#   - start_offset set to a timestamp starts a new streaming view at the first record at or after it,
#     in every partition; its refreshes then go on from there.
# Everything runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t530
role=t530_analyst
topic="t530_lat_$$"; ctopic="t530_ct_$$"
real_analyst_db "$db" "$role" k
cols="kafka_partition int, kafka_offset bigint, kafka_timestamp_type char(1), kafka_timestamp timestamptz, kafka_value bytea"
q "CREATE FOREIGN TABLE ft ($cols) SERVER k OPTIONS (topic '$topic')"
q "CREATE FOREIGN TABLE ct ($cols) SERVER k OPTIONS (topic '$ctopic')"
kafka_tool create "$topic" 2 message.timestamp.type=LogAppendTime
kafka_tool create "$ctopic" 1 retention.ms=-1     # its records are from 2001: past the default 7 days

old_ms=1000000000000        # 2001-09-09 01:46:40 UTC: the create time every record is sent with
# three batches per partition, 1.2 s apart
{ for b in 1 2 3; do echo "plain 0 8 $old_ms"; echo "plain 1 6 $old_ms"; sleep 1.2; done; echo quit; } \
    | kafka_tool produce "$topic" >/dev/null
echo "plain 0 5 $old_ms" | kafka_tool produce "$ctopic" >/dev/null

# --- types and times --------------------------------------------------------------------------------
ts_sql="kafka_partition || ' ' || kafka_offset || ' ' || (extract(epoch FROM kafka_timestamp) * 1000)::bigint"
real_pairs "$topic" '%p %o %T\n' >"$TEST_TMP/expect.txt"
q "SELECT $ts_sql FROM ft" >"$TEST_TMP/got.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/got.txt" "LogAppendTime: kafka_timestamp is the broker's time of each record, to the ms (kcat)"
assert_eq "L" "$(q "SELECT string_agg(DISTINCT kafka_timestamp_type, ',') FROM ft")" "LogAppendTime: kafka_timestamp_type is 'L'"
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_timestamp < now() - interval '1 hour'")" "and no record carries the producer's create time"
assert_eq "C 1 5" "$(q "SELECT string_agg(DISTINCT kafka_timestamp_type, ',') || ' ' || count(DISTINCT kafka_timestamp) || ' ' || count(*)
                        FROM ct WHERE kafka_timestamp = to_timestamp($old_ms / 1000.0)")" \
    "CreateTime: type 'C' and the producer's time"

# --- pushdown of kafka_timestamp >= t --------------------------------------------------------------
# t: the earliest append time of the second batch (the first record of partition 0's second batch or
# partition 1's, whichever came first)
t_ms="$(awk '($1 == 0 && $2 == 8) || ($1 == 1 && $2 == 6) {print $3}' "$TEST_TMP/expect.txt" | sort -n | head -n 1)"
t="$(q "SELECT to_timestamp($t_ms / 1000.0)")"
awk -v t="$t_ms" '$3 >= t {print $1 " " $2}' "$TEST_TMP/expect.txt" >"$TEST_TMP/expect_ge.txt"
n_ge="$(wc -l <"$TEST_TMP/expect_ge.txt")"
[ "$n_ge" -gt 0 ] && [ "$n_ge" -lt 42 ] || die "the batches were not told apart by their times ($n_ge of 42)"
q "SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_timestamp >= '$t'" >"$TEST_TMP/got_ge.txt"
assert_same_rows "$TEST_TMP/expect_ge.txt" "$TEST_TMP/got_ge.txt" "kafka_timestamp >= t returns exactly kcat's records at or after t"
q "SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_timestamp + interval '0 s' >= '$t'" >"$TEST_TMP/got_full.txt"
assert_same_rows "$TEST_TMP/got_full.txt" "$TEST_TMP/got_ge.txt" "and the rows of a full scan filtered on the same condition"
plan="$(q "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM ft WHERE kafka_timestamp >= '$t'")"
echo "$plan" | sed 's/^/#   /'
assert_contains "$plan" "Kafka Timestamp: >=" "EXPLAIN shows the timestamp condition pushed down"
read_n="$(echo "$plan" | sed -n 's/.*Kafka Records: \([0-9]*\).*/\1/p' | head -n 1)"
full_plan="$(q "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM ft WHERE kafka_timestamp + interval '0 s' >= '$t'")"
full_n="$(echo "$full_plan" | sed -n 's/.*Kafka Records: \([0-9]*\).*/\1/p' | head -n 1)"
assert_eq 42 "$full_n" "the full scan reads all 42 records"
assert_eq "$n_ge" "$read_n" "the narrowed scan reads only the $n_ge records at or after t (offsets-for-times)"
# > t and a time past every record
q "SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_timestamp > '$t'" >"$TEST_TMP/got_gt.txt"
awk -v t="$t_ms" '$3 > t {print $1 " " $2}' "$TEST_TMP/expect.txt" >"$TEST_TMP/expect_gt.txt"
assert_same_rows "$TEST_TMP/expect_gt.txt" "$TEST_TMP/got_gt.txt" "kafka_timestamp > t returns exactly kcat's records after t"
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_timestamp >= now() + interval '1 hour'")" "a time after every record returns nothing"

# --- start_offset as a timestamp ---------------------------------------------------------------------
q "CREATE FOREIGN TABLE ft_from ($cols) SERVER k OPTIONS (topic '$topic', start_offset '$t')"
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_timestamp FROM ft_from"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/mv.txt"
assert_same_rows "$TEST_TMP/expect_ge.txt" "$TEST_TMP/mv.txt" "a view with start_offset '$t' starts at the first record at or after it in each partition"
echo "plain 0 3" | kafka_tool produce "$topic" >/dev/null
echo "plain 1 2" | kafka_tool produce "$topic" >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
real_pairs "$topic" '%p %o %T\n' | awk -v t="$t_ms" '$3 >= t {print $1 " " $2}' >"$TEST_TMP/expect_ge2.txt"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/mv2.txt"
assert_same_rows "$TEST_TMP/expect_ge2.txt" "$TEST_TMP/mv2.txt" "its refresh goes on from there, exactly once"

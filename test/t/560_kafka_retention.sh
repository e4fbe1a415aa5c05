#!/usr/bin/env bash
# Retention, live against a real Apache Kafka: records deleted by real segment deletion (retention.ms
# lowered on a topic of small segments, the broker's retention check every second) before a streaming
# view ingested them. The next refresh raises a WARNING naming the lost range, records it in
# kafka.stream_scan_errors ('lost', position, lost_to, lost_count), ingests exactly the records from the
# new low watermark on (kcat), and ingested + lost = produced. Runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t560
role=t560_analyst
topic="t560_ret_$$"
real_analyst_db "$db" "$role" k
q "CREATE FOREIGN TABLE ft (kafka_partition int, kafka_offset bigint) SERVER k OPTIONS (topic '$topic')"
kafka_tool create "$topic" 1 segment.ms=100
low_offset() { real_kcat -Q -t "$topic:0:-2" | awk '{print $NF}'; }

real_produce 10 "$topic" 0
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset FROM ft"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
assert_eq 10 "$(q "SELECT count(*) FROM mv")" "the view ingested the first 10 records"
# 5 segments of 4 records, then retention deletes them
for _ in $(seq 5); do sleep 0.2; real_produce 4 "$topic" 0; done
kafka_tool config "$topic" retention.ms=1
wait_for "[ \$(low_offset) -gt 10 ]" 60 || die "retention did not delete the segments within 60 s (low $(low_offset))"
kafka_tool config "$topic" retention.ms=-1
sleep 1.5      # a deletion already under way finishes
low="$(low_offset)"
echo "ok - segment deletion moved the low watermark to $low"
real_produce 6 "$topic" 0
produced=36
high="$(real_kcat -Q -t "$topic:0:-1" | awk '{print $NF}')"
assert_eq "$produced" "$high" "the high watermark is the number of records produced"

out="$(q_out "REFRESH MATERIALIZED VIEW mv")"
echo "$out" | sed 's/^/#   /'
lost=$((low - 10))
assert_contains "$out" "WARNING:  records 10 to $((low - 1)) of partition 0 of topic \"$topic\" were deleted by retention" \
    "the refresh warns, naming the lost range 10 to $((low - 1))"
assert_contains "$out" "$lost records are lost" "the warning gives the number of lost records ($lost)"
assert_eq "1|10|$low|$lost" "$(q "SELECT count(*), min(position), min(lost_to), min(lost_count) FROM kafka.stream_scan_errors
                                  WHERE mv_name = 'public.mv' AND error_code = 'lost'")" \
    "kafka.stream_scan_errors has the lost range: position 10, lost_to $low, lost_count $lost"
{ seq 0 9 | sed 's/^/0 /'; real_pairs "$topic"; } >"$TEST_TMP/expect.txt"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/view.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "the view holds its first 10 records and exactly the retained ones"
ingested="$(q "SELECT count(*) FROM mv")"
assert_eq "$produced" "$((ingested + lost))" "ingested ($ingested) + lost ($lost) = produced ($produced)"
out="$(q_out "REFRESH MATERIALIZED VIEW mv")"
[ -z "$out" ] || die "a refresh with nothing lost printed: $out"
assert_eq 1 "$(q "SELECT count(*) FROM kafka.stream_scan_errors WHERE error_code = 'lost'")" "the next refresh loses nothing and logs nothing more"

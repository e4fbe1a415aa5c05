#!/usr/bin/env bash
# Transactions, live against a real Apache Kafka: Kafka's own Java producer (test/kafka/KafkaTool.java)
# writes committed and aborted transactions interleaved with plain records, and both partitions end in
# a transaction control record (partition 0 an abort marker, partition 1 a commit marker), an offset
# no consumer is ever given. kafka_fdw reads with isolation.level=read_committed, so:
#   - scans and refreshes return exactly what kcat -X isolation.level=read_committed returns, and no
#     aborted record (the log holds them: kcat read_uncommitted sees them), and end promptly;
#   - a transaction left open bounds scans and refreshes at the last stable offset (plain records
#     written after it on the same partition wait too); after it commits, the next refresh ingests it
#     exactly once (unique index on the view);
#   - kafka.stream_scan_states: each refresh starts where the previous one ended, ends at the end
#     offset the broker reports to a read_committed client (kcat -Q), and counts what it ingested.
# Everything runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t520
role=t520_analyst
topic="t520_txn_$$"
real_analyst_db "$db" "$role" k
q "CREATE FOREIGN TABLE ft (kafka_partition int, kafka_offset bigint, kafka_value text) SERVER k OPTIONS (topic '$topic')"
kafka_tool create "$topic" 2

# the producer runs for the whole test, driven through a fifo
mkfifo "$TEST_TMP/producer.in"
kafka_tool produce "$topic" <"$TEST_TMP/producer.in" >"$TEST_TMP/producer.out" 2>"$TEST_TMP/producer.err" &
producer=$!
exec 3>"$TEST_TMP/producer.in"
trap 'exec 3>&-; wait $producer 2>/dev/null || true' EXIT
# send CMD... — one command at a time, each waited for ("done CMD" printed as often as CMD was sent)
touch "$TEST_TMP/sent"
send() {
    local c
    for c in "$@"; do
        echo "$c" >>"$TEST_TMP/sent"
        echo "$c" >&3
        wait_for "[ \$(grep -cxF 'done $c' '$TEST_TMP/producer.out') -ge \$(grep -cxF '$c' '$TEST_TMP/sent') ]" 60 \
            || { cat "$TEST_TMP/producer.err" >&2; die "the producer did not carry out: $c"; }
    done
}

# same_as_kcat WHAT SQL MSG — the (partition, offset) pairs SQL returns equal kcat's read_committed ones
same_as_kcat() {
    real_pairs "$topic" >"$TEST_TMP/expect.txt"
    q "$1" >"$TEST_TMP/got.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/got.txt" "$2"
}
all_records() { real_kcat -C -t "$topic" -o beginning -e -q -X isolation.level=read_uncommitted -f '%p %o\n' | wc -l; }
# end_offset P — the end offset of partition P for a read_committed client (the last stable offset)
end_offset() { real_kcat -Q -X isolation.level=read_committed -t "$topic:$1:-1" | awk '{print $NF}'; }
# timed_scan MSG — a full scan ends within 3 s
timed_scan() {
    local t0 ms
    t0=$(now_ms)
    q "SELECT count(*) FROM ft" >/dev/null
    ms=$(elapsed_ms "$t0")
    [ "$ms" -lt 3000 ] || die "$1: the scan took $ms ms"
    echo "ok - $1 ($ms ms)"
}

# committed 5+4+3+2+2+4 = 20, aborted 3+2+2 = 7
send "plain 0 5" begin "send 0 4" "send 1 3" commit "plain 1 2" \
     begin "send 0 3" "send 1 2" abort "plain 0 2" begin "send 1 4" commit begin "send 0 2" abort
assert_eq 20 "$(real_pairs "$topic" | wc -l)" "kcat read_committed sees the 20 committed records"
assert_eq 27 "$(all_records)" "kcat read_uncommitted sees 27: the aborted records are in the log"

timed_scan "a scan of partitions that end in an abort and a commit marker ends promptly"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM ft" "a scan returns exactly the committed records"
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_offset >= 0 AND kafka_value IS NULL")" "every record has its value"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_partition = 1 AND kafka_offset >= 3
              UNION ALL SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_partition = 0
              UNION ALL SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_partition = 1 AND kafka_offset < 3" \
    "offset ranges ending at a control record add up to the committed records"

q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM ft"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM mv" "CREATE MATERIALIZED VIEW ingests exactly the committed records"

# --- a transaction left open -------------------------------------------------------------------------
send begin "send 0 3" "plain 0 2" "plain 1 2"
lso0="$(end_offset 0)"
hwm0="$(real_kcat -Q -X isolation.level=read_uncommitted -t "$topic:0:-1" | awk '{print $NF}')"
[ "$lso0" -lt "$hwm0" ] || die "the open transaction does not hold back the last stable offset ($lso0, $hwm0)"
echo "ok - the open transaction holds partition 0's last stable offset at $lso0 (high watermark $hwm0)"
timed_scan "a scan with a transaction open ends promptly"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM ft" "a scan stops at the last stable offset, as kcat read_committed"
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_partition = 0 AND kafka_offset >= $lso0")" "nothing at or past the last stable offset"
q "REFRESH MATERIALIZED VIEW mv"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM mv" "a refresh stops at the last stable offset too"
assert_eq "$lso0" "$(q "SELECT latest_position FROM kafka.stream_scan_states WHERE mv_name = 'public.mv' AND partition_id = 0
                        ORDER BY transaction_id DESC LIMIT 1")" "stream_scan_states ends partition 0 at the last stable offset"

# --- it commits: the next refresh ingests it exactly once ---------------------------------------------
send commit
q "REFRESH MATERIALIZED VIEW mv"
same_as_kcat "SELECT kafka_partition || ' ' || kafka_offset FROM mv" "after the commit the next refresh ingests the transaction and what waited behind it"
assert_eq 27 "$(q "SELECT count(*) FROM mv")" "27 committed records, each once"
assert_eq 0 "$(q "SELECT count(*) FROM mv WHERE kafka_value::jsonb->>'seq' IN (SELECT kafka_value::jsonb->>'seq' FROM mv GROUP BY 1 HAVING count(*) > 1)")" \
    "no producer sequence number twice"
q "REFRESH MATERIALIZED VIEW mv"
assert_eq 27 "$(q "SELECT count(*) FROM mv")" "a refresh with nothing new adds nothing"

# --- stream_scan_states ---------------------------------------------------------------------------------
for part in 0 1; do
    assert_eq "$(end_offset "$part")" "$(q "SELECT latest_position FROM kafka.stream_scan_states WHERE mv_name = 'public.mv'
                  AND partition_id = $part ORDER BY transaction_id DESC LIMIT 1")" \
        "partition $part: the last refresh ends at the broker's end offset (past the trailing control record)"
    assert_eq 0 "$(q "SELECT count(*) FROM (SELECT start_position, lag(latest_position) OVER (ORDER BY transaction_id) AS prev
                        FROM kafka.stream_scan_states WHERE mv_name = 'public.mv' AND partition_id = $part) s
                   WHERE prev IS NOT NULL AND start_position <> prev")" \
        "partition $part: every refresh starts where the previous one ended"
    assert_eq "$(q "SELECT count(*) FROM mv WHERE kafka_partition = $part")" \
        "$(q "SELECT sum(scanned_rows) FROM kafka.stream_scan_states WHERE mv_name = 'public.mv' AND partition_id = $part")" \
        "partition $part: scanned_rows add up to the rows ingested"
done
send quit

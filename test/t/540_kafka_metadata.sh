#!/usr/bin/env bash
# Metadata, live against a real Apache Kafka (the mock has no internal topics and cannot delete one):
#   - IMPORT FOREIGN SCHEMA over the cluster's real metadata imports every topic kcat lists except the
#     internal __consumer_offsets and __transaction_state (made here by a consumer group of Kafka's
#     own console consumer and by a transactional producer); LIMIT TO names one in and gets it;
#   - a topic deleted and recreated (Kafka's Admin API) under a streaming view: the next refresh fails
#     with the hint to reset the stream, both when the new log is shorter than the stored offsets and
#     when it has grown past them, and the view keeps its rows; kafka.reset_stream then ingests the new
#     topic exactly (kcat);
#   - partitions added to a topic are read from their earliest offset by the next refresh.
# Everything but the internal topics' producers runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t540
role=t540_analyst
recreated="t540_recreated_$$"; grown="t540_grown_$$"
real_analyst_db "$db" "$role" k
psql_q -d "$db" -c "GRANT CREATE ON DATABASE $db TO $role"
view_is() {
    real_pairs "$2" >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM $1" >"$TEST_TMP/view.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "$3"
}

# --- IMPORT FOREIGN SCHEMA on real metadata ------------------------------------------------------------
kafka_tool create "$recreated" 2
kafka_tool create "$grown" 1
real_produce 10 "$recreated" 0; real_produce 10 "$recreated" 1; real_produce 5 "$grown" 0
printf 'begin\nsend 0 1\ncommit\nquit\n' | kafka_tool produce "$grown" >/dev/null      # __transaction_state
bash "$REPO_ROOT/test/kafka/kafka.sh" class "$REAL_KAFKA_STATE" org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$REAL_KAFKA_BROKERS" --topic "$grown" --group "t540_group_$$" --from-beginning \
    --max-messages 1 --timeout-ms 30000 >/dev/null                                        # __consumer_offsets
real_kcat -L >"$TEST_TMP/metadata.txt"
for internal in __consumer_offsets __transaction_state; do
    grep -q "topic \"$internal\"" "$TEST_TMP/metadata.txt" || die "the cluster has no $internal"
done
echo "ok - the cluster has its internal topics __consumer_offsets and __transaction_state"
sed -n 's/^ *topic "\([^"]*\)".*/\1/p' "$TEST_TMP/metadata.txt" | grep -v '^__' | LC_ALL=C sort >"$TEST_TMP/topics.txt"
q "CREATE SCHEMA imported"
q "IMPORT FOREIGN SCHEMA kafka FROM SERVER k INTO imported"
q "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'imported' AND c.relkind = 'f'" >"$TEST_TMP/imported.txt"
assert_same_rows "$TEST_TMP/topics.txt" "$TEST_TMP/imported.txt" "IMPORT FOREIGN SCHEMA imports every topic but the internal ones"
q "CREATE SCHEMA internal"
q "IMPORT FOREIGN SCHEMA kafka LIMIT TO (\"__consumer_offsets\") FROM SERVER k INTO internal"
assert_eq "__consumer_offsets" "$(q "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'internal'")" \
    "LIMIT TO imports an internal topic named in it"
view_is "imported.\"$recreated\"" "$recreated" "an imported table scans its topic exactly"

# --- a topic deleted and recreated --------------------------------------------------------------------
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM imported.\"$recreated\""
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
real_produce 3 "$recreated" 1
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$recreated" "the view holds the topic"
q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || md5(kafka_value) FROM mv" | LC_ALL=C sort >"$TEST_TMP/before.txt"
kafka_tool delete "$recreated"
for _ in $(seq 20); do kafka_tool create "$recreated" 2 2>"$TEST_TMP/create.err" && break; sleep 1; done
real_kcat -L -t "$recreated" | grep -q 'partition 1' || { cat "$TEST_TMP/create.err"; die "the topic was not recreated"; }
real_produce 4 "$recreated" 0; real_produce 4 "$recreated" 1
# refused_keeps_rows MSG — the refresh fails with the reset hint and the view is unchanged
refused_keeps_rows() {
    local out
    out="$(q_out "REFRESH MATERIALIZED VIEW mv")" && die "$1: the refresh succeeded"
    echo "$out" | sed 's/^/#   /'
    assert_contains "$out" "kafka.reset_stream('mv')" "$1: the refresh fails with the hint to reset the stream"
    q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || md5(kafka_value) FROM mv" | LC_ALL=C sort >"$TEST_TMP/after.txt"
    assert_same_rows "$TEST_TMP/before.txt" "$TEST_TMP/after.txt" "$1: the view keeps its rows"
}
refused_keeps_rows "recreated, shorter than the stored offsets"
real_produce 20 "$recreated" 0; real_produce 20 "$recreated" 1
refused_keeps_rows "recreated and grown past the stored offsets"
q "SELECT kafka.reset_stream('mv')" >/dev/null
view_is mv "$recreated" "after kafka.reset_stream the view holds exactly the new topic"
real_produce 2 "$recreated" 0
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$recreated" "and refreshes go on from there"

# --- partitions added --------------------------------------------------------------------------------
q "CREATE MATERIALIZED VIEW mv_grown AS SELECT kafka_partition, kafka_offset FROM imported.\"$grown\""
q "CREATE UNIQUE INDEX ON mv_grown (kafka_partition, kafka_offset)"
view_is mv_grown "$grown" "a view over a one-partition topic"
kafka_tool partitions "$grown" 3
real_produce 6 "$grown" 1; real_produce 4 "$grown" 2; real_produce 2 "$grown" 0
q "REFRESH MATERIALIZED VIEW mv_grown"
view_is mv_grown "$grown" "after two partitions are added the refresh reads them from their earliest offset"
assert_eq "0 1 2" "$(q "SELECT string_agg(DISTINCT kafka_partition::text, ' ') FROM mv_grown")" "rows of all three partitions"
assert_eq "0 0" "$(q "SELECT min(kafka_offset) FILTER (WHERE kafka_partition = 1) || ' ' || min(kafka_offset) FILTER (WHERE kafka_partition = 2) FROM mv_grown")" \
    "the new partitions are read from offset 0"

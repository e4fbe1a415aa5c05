#!/usr/bin/env bash
# A streaming view's offsets belong to one log.  Reading another log from
# them loses records silently (offsets below the stored ones are never read,
# the rest are mixed in), so every way the log under a view can change is
# refused with a hint to reset the stream:
#   - ALTER FOREIGN TABLE ... OPTIONS (SET topic ...): the view remembers the
#     topic its offsets were read from;
#   - a topic deleted and recreated, or the server pointed at another
#     cluster: the refresh reads the last ingested record of each partition
#     again and compares its timestamp and key and value sizes; a partition
#     that disappeared is refused too.  (The test broker cannot delete
#     topics: a second test cluster with topics of the same names stands in
#     for the recreated ones.)
# kafka.reset_stream() then ingests the new topic from its start, exactly
# (kcat), and kafka.streams names it.  Everything runs as an ordinary role.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t047
role=t047_analyst
alpha="t047_alpha_$$"; beta="t047_beta_$$"; gamma="t047_gamma_$$"
pg_install_extension "$db" >/dev/null

B1_BROKERS="$KAFKA_BROKERS"; B1_STATE="$BROKER_STATE"
start_broker "$TEST_TMP/cluster2" --brokers 1 2>/dev/null
B2_BROKERS="$KAFKA_BROKERS"; B2_STATE="$BROKER_STATE"
KAFKA_BROKERS="$B1_BROKERS"; BROKER_STATE="$B1_STATE"
trap 'stop_broker "$B2_STATE"' EXIT

# cluster 1: alpha and gamma with 2 partitions (100 records each), beta with 2 (200 each)
broker_ctl create "$alpha" 2 >/dev/null; broker_ctl fill "$alpha" 200 40 >/dev/null
broker_ctl create "$beta" 2 >/dev/null;  broker_ctl fill "$beta" 400 60 >/dev/null
broker_ctl create "$gamma" 2 >/dev/null; broker_ctl fill "$gamma" 200 40 >/dev/null
# cluster 2: "alpha" with other records (more of them, other sizes), "gamma" with one partition
BROKER_STATE="$B2_STATE" broker_ctl create "$alpha" 2 >/dev/null
BROKER_STATE="$B2_STATE" broker_ctl fill "$alpha" 300 50 >/dev/null
BROKER_STATE="$B2_STATE" broker_ctl create "$gamma" 1 >/dev/null
BROKER_STATE="$B2_STATE" broker_ctl fill "$gamma" 300 40 >/dev/null

q() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" -c "$1"; }
q_out() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$role" -d "$db" "$@" 2>&1; }
kcat_pairs() { kcat -C -b "$B1_BROKERS" -t "$1" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort; }
# view_is VIEW TOPIC MSG: VIEW holds exactly TOPIC's records (cluster 1), by (partition, offset) and size
view_is() {
    kcat -C -b "$B1_BROKERS" -t "$2" -o beginning -e -q -f '%p %o %S\n' | LC_ALL=C sort >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || length(kafka_value) FROM $1" | LC_ALL=C sort >"$TEST_TMP/view.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "$3"
}

make_analyst "$db" "$role"
psql_q -d "$db" <<SQL
GRANT USAGE ON SCHEMA kafka TO $role;
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$B1_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO $role;
GRANT USAGE ON FOREIGN DATA WRAPPER kafka_fdw TO $role;
CREATE USER MAPPING FOR $role SERVER k;
ALTER SERVER k OWNER TO $role;
SQL

q "CREATE FOREIGN TABLE ab (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$alpha')"
q "CREATE FOREIGN TABLE ga (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$gamma')"
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM ab"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
q "CREATE MATERIALIZED VIEW mv_g AS SELECT kafka_partition, kafka_offset, kafka_value FROM ga"
broker_ctl fill "$alpha" 20 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$alpha" "the view holds topic alpha"

# --- the foreign table's topic changes ------------------------------------------------------------
q "ALTER FOREIGN TABLE ab OPTIONS (SET topic '$beta')"
out="$(q_out -c "REFRESH MATERIALIZED VIEW mv")" && die "REFRESH after the topic changed succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "the topic of materialized view \"mv\" changed from \"$alpha\" to \"$beta\"" "a changed topic is refused"
assert_contains "$out" "kafka.reset_stream('mv')" "with a hint to reset the stream"
view_is mv "$alpha" "the view still holds exactly topic alpha"
assert_eq "$alpha" "$(q "SELECT topic FROM kafka.streams WHERE mv_name = 'mv'::regclass")" "kafka.streams names the topic of the view's rows"
q "SELECT kafka.reset_stream('mv')" >/dev/null
view_is mv "$beta" "after reset_stream the view holds exactly topic beta"
assert_eq "$beta" "$(q "SELECT topic FROM kafka.streams WHERE mv_name = 'mv'::regclass")" "and kafka.streams names beta"
broker_ctl fill "$beta" 10 60 >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$beta" "the next refresh reads beta on from there"
# the worker refuses too, and says why in kafka.streams
q "ALTER FOREIGN TABLE ab OPTIONS (SET topic '$alpha')"
q "SELECT kafka.set_auto_refresh('mv', true)" >/dev/null
wait_for "[ \"\$(q \"SELECT last_refresh_status FROM kafka.streams WHERE mv_name = 'mv'::regclass\")\" = error ]" 20 \
    || die "the auto-refresh worker did not report the changed topic: $(q 'SELECT * FROM kafka.streams')"
assert_contains "$(q "SELECT last_error FROM kafka.streams WHERE mv_name = 'mv'::regclass")" "changed from \"$beta\" to \"$alpha\"" \
    "the auto-refresh worker refuses the changed topic and kafka.streams shows why"
q "SELECT kafka.set_auto_refresh('mv', false)" >/dev/null
view_is mv "$beta" "the worker ingested nothing from alpha"
q "ALTER FOREIGN TABLE ab OPTIONS (SET topic '$beta')"

# --- the same topic names on another cluster (a recreated topic) ----------------------------------
q "ALTER FOREIGN TABLE ab OPTIONS (SET topic '$alpha')"
q "SELECT kafka.reset_stream('mv')" >/dev/null
view_is mv "$alpha" "reset to alpha again"
q "REFRESH MATERIALIZED VIEW mv_g"
q "ALTER SERVER k OPTIONS (SET brokers '$B2_BROKERS')"
out="$(q_out -c "REFRESH MATERIALIZED VIEW mv")" && die "REFRESH of a different log under the same topic name succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "of topic \"$alpha\" is not the log the materialized view ingested" "another log under the same topic name is refused"
assert_contains "$out" "deleted and recreated" "the detail says what may have happened"
assert_contains "$out" "kafka.reset_stream('mv')" "and the hint names the view"
out="$(q_out -c "REFRESH MATERIALIZED VIEW mv_g")" && die "REFRESH of a topic that lost a partition succeeded"
echo "$out" | sed 's/^/#   /'
assert_contains "$out" "partition 1 of topic \"$gamma\" that materialized view \"mv_g\" ingested no longer exists" "a partition that disappeared is refused"
q "ALTER SERVER k OPTIONS (SET brokers '$B1_BROKERS')"
broker_ctl fill "$alpha" 10 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$alpha" "back on the original cluster, the refresh ingests exactly the missing records"
broker_ctl fill "$gamma" 10 40 >/dev/null
q "REFRESH MATERIALIZED VIEW mv_g"
view_is mv_g "$gamma" "and so does the other view"
assert_eq "0" "$(psql_q -d "$db" -c "SELECT count(*) FROM kafka.stream_offsets WHERE last_offset IS NULL")" \
    "every stored partition has its last record for the check"

# --- the check reads the last ingested record again, and only that one ----------------------------
# A refresh whose WHERE is false as a whole (a one-time filter) advances the offsets without reading:
# the records it passed over stay out when a later refresh reads from the last ingested record again.
q "CREATE FOREIGN TABLE ab2 (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$alpha')"
q_out -c "SET t047.gate = 'on'" -c "CREATE MATERIALIZED VIEW mv_gated AS SELECT kafka_partition, kafka_offset, kafka_value FROM ab2
                                   WHERE current_setting('t047.gate', true) = 'on'" >/dev/null || die "CREATE of mv_gated failed"
before="$(kcat_pairs "$alpha")"
broker_ctl fill "$alpha" 10 40 >/dev/null
passed_over="$(LC_ALL=C comm -13 <(printf '%s\n' "$before") <(kcat_pairs "$alpha"))"
q_out -c "SET t047.gate = 'off'" -c "REFRESH MATERIALIZED VIEW mv_gated" >/dev/null || die "gated REFRESH failed"
broker_ctl fill "$alpha" 10 40 >/dev/null
q_out -c "SET t047.gate = 'on'" -c "REFRESH MATERIALIZED VIEW mv_gated" >/dev/null || die "REFRESH of mv_gated failed"
kcat_pairs "$alpha" | LC_ALL=C comm -23 - <(printf '%s\n' "$passed_over") >"$TEST_TMP/expect.txt"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv_gated" >"$TEST_TMP/view.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" \
    "the records a gated refresh passed over stay out; the check adds nothing but what it checks"

# --- a Kafka table with inheritance children: refused, not read as an Append -----------------------
psql_q -d "$db" -c "CREATE FOREIGN TABLE ab_child () INHERITS (ab) SERVER k OPTIONS (topic '$gamma')" >/dev/null
out="$(q_out -c "REFRESH MATERIALIZED VIEW mv")" && die "REFRESH over a table with inheritance children succeeded"
assert_contains "$out" "which has inheritance children" "a Kafka table with inheritance children is refused"
psql_q -d "$db" -c "DROP FOREIGN TABLE ab_child" >/dev/null
q "REFRESH MATERIALIZED VIEW mv"
view_is mv "$alpha" "without the child, the view refreshes exactly again"

#!/usr/bin/env bash
# pg_dump and restore of the other kinds of streams: replica tables (CDC, kind 'r') and aggregating
# streaming views (kind 'a'), owned by an ordinary role.
#   1. Replicas from Debezium events (test/fixtures/debezium/pg_schemas.jsonl, produced with kcat): one
#      in schema "cdc" and one in schema "zrep", so that pg_restore restores one table's data before
#      kafka.stream_dump's and the other's after it (the listing is checked); the "zrep" one has auto
#      refresh.  An aggregating view with count/sum/avg/min/max by group and one without GROUP BY.
#   2. pg_dump -Fc | pg_restore --exit-on-error and plain pg_dump | psql ON_ERROR_STOP into new
#      databases: each replica equals the original (every column, no row twice), is a replica again
#      (kafka.streams kind 'replica', the auto-refresh flag) with the dumped offsets and fingerprints;
#      each aggregating view has the dumped groups and its avg state table the dumped sums and counts;
#      nothing stays staged; the avg state table itself is not in the dump (it is the extension's, and
#      the owner can pg_dump the database it could not read).
#   3. More events and records: the next apply applies exactly the new events (count, offsets, the
#      same table as the original database's), the restored auto replica is brought there by its
#      worker; the next refresh of each aggregating view folds in exactly the new records: it equals
#      the same query computed over every record read with kcat, digit for digit.
#   4. A dump restored without a replica's rows (--exclude-table-data) does not go on silently: the
#      first apply says the table lacks the dumped rows; reset_stream() applies the topic again.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t154
role=t154_owner
cdc="t154_cdc_$$"
orders="t154_orders_$$"
fx="$REPO_ROOT/test/fixtures/debezium"
# At exit the auto streams are switched off first, so that their workers leave and free their slots
# at once (a worker killed by DROP DATABASE holds its slot for a restart delay, and this test has
# four of them: the default kafka_fdw.auto_refresh_max_workers), then the databases go.
cleanup() {
    local d dbs="'$db', '${db}_custom', '${db}_plain', '${db}_norows'"
    for d in "$db" "${db}_custom" "${db}_plain" "${db}_norows"; do
        psql_q -d "$d" -c "SELECT kafka.set_auto_refresh(mv_name, false) FROM kafka.streams WHERE auto_refresh" >/dev/null 2>&1 || true
    done
    wait_for "[ \"\$(psql_q -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE datname IN ($dbs) AND backend_type = 'kafka_fdw auto refresh'\")\" = 0 ]" 10 || true
    for d in "$db" "${db}_custom" "${db}_plain" "${db}_norows"; do
        psql_q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
pg_install_extension "$db" >/dev/null
make_analyst "$db" "$role"
broker_ctl create "$cdc" 1 >/dev/null
broker_ctl create "$orders" 2 >/dev/null
q() { psql_q -d "${2:-$db}" -c "$1"; }
qo() { psql_q -U "$role" -d "${2:-$db}" -c "$1"; }

produce_cdc() { produce_debezium "$fx/pg_schemas.jsonl" "$cdc" "$1" "$2"; }
# produce_orders N SEED: JSON orders over both partitions (group NULL sometimes, numerics of scale 0..3)
produce_orders() {
    python3 - "$1" "$2" >"$TEST_TMP/orders.json" <<'PY'
import json, random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(seed)
for i in range(n):
    print(json.dumps({"g": r.choice(["a", "b", "c", None]), "qty": r.randint(-5, 50),
                      "amount": str(round(r.uniform(0, 1000), r.randint(0, 3)))}))
PY
    for p in 0 1; do
        awk -v p="$p" 'NR % 2 == p' "$TEST_TMP/orders.json" | kcat -P -b "$KAFKA_BROKERS" -t "$orders" -p "$p"
    done
}
AGG_COLS="count(*) AS n, sum(((kafka_value::jsonb)->>'qty')::int) AS sum_qty,
    avg(((kafka_value::jsonb)->>'amount')::numeric) AS mean,
    avg(((kafka_value::jsonb)->>'qty')::int) AS mean_qty,
    min(((kafka_value::jsonb)->>'amount')::numeric) AS lo,
    max(((kafka_value::jsonb)->>'amount')::numeric) AS hi"
V_BY_G="SELECT (kafka_value::jsonb)->>'g' AS g, $AGG_COLS FROM %s GROUP BY 1"
V_ALL="SELECT $AGG_COLS FROM %s"
# check_aggregates DB MSG: both views = their queries over every record kcat reads, as text
check_aggregates() {
    kcat -C -b "$KAFKA_BROKERS" -t "$orders" -o beginning -e -q -f '%s\n' >"$TEST_TMP/records.txt"
    qo "SET client_min_messages = warning; DROP TABLE IF EXISTS records; CREATE TABLE records (kafka_value text)" "$1" >/dev/null
    qo "\\copy records FROM '$TEST_TMP/records.txt' WITH (FORMAT text)" "$1"
    local view query diff
    for view in agg_by_g agg_all; do
        if [ "$view" = agg_by_g ]; then query="$(printf "$V_BY_G" records)"; else query="$(printf "$V_ALL" records)"; fi
        diff="$(q "SELECT 'missing: ' || e::text FROM (SELECT e::text FROM ($query) e EXCEPT SELECT v::text FROM $view v) e
                   UNION ALL SELECT 'extra: ' || v::text FROM (SELECT v::text FROM $view v EXCEPT SELECT e::text FROM ($query) e) v" "$1")"
        [ -z "$diff" ] || { echo "not ok - $2: $view"; printf '%s\n' "$diff" | head -n 10 | sed 's/^/#   /'; exit 1; }
    done
    echo "ok - $2 ($(wc -l <"$TEST_TMP/records.txt") records, $(q 'SELECT count(*) FROM agg_by_g' "$1") groups)"
}
table_md5() { q "SET timezone = 'UTC'; SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, '|' ORDER BY id), '')) FROM $1 r" "${2:-}"; }
offsets() {       # STREAM DB
    q "SELECT string_agg(partition_id || ':' || next_offset || ':' || coalesce(last_offset, -1) || ':'
                         || coalesce(last_timestamp_ms, -1) || ':' || coalesce(last_value_len, -1), ' ' ORDER BY partition_id)
         FROM kafka.stream_offsets WHERE mv_oid = '$1'::regclass" "${2:-}"
}
streams() { q "SELECT string_agg(mv_name || ' ' || kind || ' ' || auto_refresh || ' ' || total_rows, ', ' ORDER BY mv_name::text)
                 FROM kafka.streams" "$1"; }
side_table() { q "SELECT 'kafka.aggregate_state_' || '$1'::regclass::oid" "${2:-}"; }
side_rows() { q "SELECT string_agg(s::text, '|' ORDER BY s::text) FROM $(side_table "$1" "${2:-}") s" "${2:-}"; }

# --- 1. the streams -------------------------------------------------------------------------------
produce_cdc 0 17
produce_orders 400 1
psql_q -d "$db" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO $role;
CREATE USER MAPPING FOR $role SERVER k;
CREATE SCHEMA src;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("$cdc") FROM SERVER k INTO src;
CREATE FOREIGN TABLE src.orders (kafka_partition int, kafka_offset bigint, kafka_value text)
  SERVER k OPTIONS (topic '$orders');
GRANT USAGE ON SCHEMA src TO $role;
GRANT SELECT ON ALL TABLES IN SCHEMA src TO $role;
CREATE SCHEMA cdc AUTHORIZATION $role;
CREATE SCHEMA zrep AUTHORIZATION $role;
SQL
qo "SELECT kafka.create_replica('cdc.orders', 'src.\"$cdc\"')" >/dev/null
qo "SELECT kafka.create_replica('zrep.orders', 'src.\"$cdc\"')" >/dev/null
qo "SELECT kafka.set_auto_refresh('zrep.orders', true)" >/dev/null
qo "CREATE MATERIALIZED VIEW agg_by_g AS $(printf "$V_BY_G" src.orders)" >/dev/null
qo "CREATE MATERIALIZED VIEW agg_all AS $(printf "$V_ALL" src.orders)" >/dev/null
check_aggregates "$db" "the aggregating views equal their queries over the records"
n="$(wc -l <"$fx/pg_state_before_truncate.tsv")"
assert_eq "$n $n" "$(table_md5 cdc.orders | cut -d' ' -f1) $(table_md5 zrep.orders | cut -d' ' -f1)" \
    "both replicas hold the source's $n rows after events 0-16"
src_streams="$(streams "$db")"
echo "# streams: $src_streams"

# --- 2. dump and restore ----------------------------------------------------------------------------
pg_dump -Fc -d "$db" -f "$TEST_TMP/db.dump"
pg_dump -d "$db" -f "$TEST_TMP/db.sql"
pg_restore -l "$TEST_TMP/db.dump" | grep 'TABLE DATA' >"$TEST_TMP/data_order.txt"
sed 's/^/#   /' "$TEST_TMP/data_order.txt"
order="$(awk '/ cdc orders /{print "cdc"} / kafka stream_dump /{print "kafka"} / zrep orders /{print "zrep"}' "$TEST_TMP/data_order.txt" | tr '\n' ' ')"
assert_eq "cdc kafka zrep " "$order" "pg_restore restores one replica's rows before kafka.stream_dump's and the other's after"
assert_eq 0 "$(grep -c aggregate_state "$TEST_TMP/data_order.txt" || true)" "the avg state tables are not in the dump (the extension's)"
pg_dump -U "$role" -Fc -d "$db" -f "$TEST_TMP/owner.dump" 2>"$TEST_TMP/owner_dump.err" \
    || { cat "$TEST_TMP/owner_dump.err"; die "pg_dump as the streams' owner failed"; }
echo "ok - the streams' owner can pg_dump the database"

for fmt in custom plain; do
    rdb="${db}_$fmt"
    q "CREATE DATABASE $rdb" postgres
    if [ "$fmt" = custom ]; then
        pg_restore -d "$rdb" --exit-on-error "$TEST_TMP/db.dump" >"$TEST_TMP/restore_$fmt.out" 2>&1 \
            || { sed 's/^/#   /' "$TEST_TMP/restore_$fmt.out" | tail -n 20; die "pg_restore failed"; }
    else
        psql -X -q -v ON_ERROR_STOP=1 -d "$rdb" -f "$TEST_TMP/db.sql" >"$TEST_TMP/restore_$fmt.out" 2>&1 \
            || { sed 's/^/#   /' "$TEST_TMP/restore_$fmt.out" | tail -n 20; die "psql restore failed"; }
    fi
    for r in cdc.orders zrep.orders; do
        assert_eq "$(table_md5 $r "$db")" "$(table_md5 $r "$rdb")" "$fmt restore: $r holds the dumped rows, each once"
        assert_eq "$(offsets $r "$db")" "$(offsets $r "$rdb")" "$fmt restore: $r has the dumped offsets and last record"
    done
    assert_eq "$src_streams" "$(streams "$rdb")" "$fmt restore: kafka.streams has every stream with its kind, auto refresh and total"
    for v in agg_by_g agg_all; do
        assert_eq "$(q "SELECT string_agg(v::text, '|' ORDER BY v::text) FROM $v v")" \
            "$(q "SELECT string_agg(v::text, '|' ORDER BY v::text) FROM $v v" "$rdb")" "$fmt restore: $v has the dumped groups"
        assert_eq "$(side_rows $v "$db")" "$(side_rows $v "$rdb")" "$fmt restore: $v's avg state table has the dumped sums and counts"
        assert_eq "$(offsets $v "$db")" "$(offsets $v "$rdb")" "$fmt restore: $v has the dumped offsets"
    done
    assert_eq 0 "$(q 'SELECT count(*) FROM kafka.stream_restore' "$rdb")" "$fmt restore: nothing is left staged"
    assert_eq "$role $role" "$(q "SELECT relowner::regrole FROM pg_class WHERE oid = 'cdc.orders'::regclass") $(q "SELECT relowner::regrole FROM pg_class WHERE oid = 'agg_by_g'::regclass")" \
        "$fmt restore: the streams keep their owner"
done

# --- 3. the next apply and refresh are exact -----------------------------------------------------------
produce_cdc 17 19
produce_orders 300 2
for d in "$db" "${db}_custom" "${db}_plain"; do
    assert_eq 2 "$(qo "SELECT kafka.apply_replica('cdc.orders')" "$d")" "$d: the next apply applies exactly the 2 new events"
    assert_eq "0:19" "$(offsets cdc.orders "$d" | cut -d: -f1,2)" "$d: its next offset is 19"
    wait_for "[ \"\$(offsets zrep.orders $d | cut -d: -f1,2)\" = 0:19 ]" 30 \
        || die "$d: the auto replica's offsets are $(offsets zrep.orders "$d")"
    for r in cdc.orders zrep.orders; do
        assert_eq "$(table_md5 $r "$db")" "$(table_md5 $r "$d")" "$d: $r is the original's after the TRUNCATE and the insert"
        assert_eq 7 "$(q "SELECT string_agg(id::text, ',') FROM $r" "$d")" "$d: $r holds row 7 alone"
    done
    out="$(psql -X -qAt -U "$role" -d "$d" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW agg_by_g' -c 'REFRESH MATERIALIZED VIEW agg_all' 2>&1)"
    assert_eq "" "$out" "$d: the refreshes after the restore say nothing"
    assert_eq "300 300" "$(q "SELECT string_agg(last_refresh_rows::text, ' ') FROM kafka.streams WHERE kind = 'aggregate'" "$d")" \
        "$d: each refresh folded in just the 300 new records"
    check_aggregates "$d" "$d: the aggregating views equal their queries over every record kcat reads"
done

# --- 4. a dump restored without a replica's rows ----------------------------------------------------------
pg_dump -Fc -d "$db" --exclude-table-data=cdc.orders -f "$TEST_TMP/norows.dump"
q "CREATE DATABASE ${db}_norows" postgres
pg_restore -d "${db}_norows" --exit-on-error "$TEST_TMP/norows.dump" >"$TEST_TMP/norows.out" 2>&1 \
    || { sed 's/^/#   /' "$TEST_TMP/norows.out" | tail -n 20; die "pg_restore failed"; }
out="$(psql -X -qAt -U "$role" -d "${db}_norows" -c "SELECT kafka.apply_replica('cdc.orders')" 2>&1 || true)"
printf '%s\n' "$out" | sed 's/^/#   /'
assert_contains "$out" 'replica "orders" holds 0 rows, but the dump it was restored from held 1' \
    "the first apply of a replica restored without its rows refuses to go on from the dumped offsets"
qo "SELECT kafka.reset_stream('cdc.orders', 'earliest')" "${db}_norows" >/dev/null
assert_eq "$(table_md5 cdc.orders "$db")" "$(table_md5 cdc.orders "${db}_norows")" "and the replica is the original's"

#!/usr/bin/env bash
# pg_dump and restore keep every row of a streaming view and its offsets, also the
# rows of records that Kafka's retention has deleted since they were ingested (they
# exist nowhere else).  The test broker keeps about 5 MiB per partition: records are
# produced in chunks smaller than that, each chunk captured with kcat (the
# independent reader) and ingested before the next one, until retention has deleted
# the first records of every partition.  Then:
#   1. pg_dump -Fc | pg_restore and pg_dump (plain) | psql into new databases: the
#      restored views hold exactly what kcat captured, (partition, offset, value),
#      deleted records included; their offsets, fingerprints and auto-refresh flag
#      are the dumped ones;
#   2. the next refresh of a restored view is exact: it ingests just the records
#      produced since (no loss warning, set equality with kcat, unique index), and
#      the restored auto view is kept current by the restored database's worker;
#   3. a dump that leaves kafka_fdw's data out (--exclude-table-data) does not
#      silently re-ingest from start_offset: its restore's REFRESH is refused
#      loudly and the view stays unpopulated;
#   4. staged rows go only to a view owned by the dumped owner (or to a superuser's refresh), not to
#      another role that creates a view of the same name after a restore went wrong.
# The views belong to an ordinary role (their rows are converted back as it).
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t151
topic="t151_$$"
# the databases go at exit: their auto views would hold auto-refresh worker slots of the shared server
trap 'for d in "$db" "${db}_custom" "${db}_plain" "${db}_nodata" "${db}_owner"; do
        psql_q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done' EXIT
pg_install_extension "$db" >/dev/null
make_analyst "$db" t151_owner
broker_ctl create "$topic" 2 >/dev/null
q() { psql_q -d "${2:-$db}" -c "$1"; }
lows() { broker_ctl watermarks "$topic" | tr ' ' '\n' | awk -F: 'NF == 3 { print $2 }'; }
capture() { kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o %s\n' >>"$TEST_TMP/captured.txt"; }
view_rows() { q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || kafka_value FROM ${1:-mv}" "${2:-$db}"; }

psql_q -d "$db" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO t151_owner;
CREATE USER MAPPING FOR t151_owner SERVER k;
CREATE SCHEMA "Sales";
GRANT ALL ON SCHEMA "Sales" TO t151_owner;
CREATE FOREIGN TABLE "Sales".src (kafka_partition int, kafka_offset bigint, kafka_value text,
  kafka_timestamp timestamptz, kafka_headers jsonb)
  SERVER k OPTIONS (topic '$topic');
GRANT SELECT ON "Sales".src TO t151_owner;
SET ROLE t151_owner;
CREATE MATERIALIZED VIEW "Sales"."Mv 1" AS
  SELECT kafka_partition, kafka_offset, kafka_value, kafka_timestamp, kafka_headers,
         length(kafka_value) AS len, kafka_value::jsonb -> 'id' AS id
    FROM "Sales".src;
CREATE UNIQUE INDEX ON "Sales"."Mv 1" (kafka_partition, kafka_offset);
CREATE MATERIALIZED VIEW mv_auto AS SELECT kafka_partition, kafka_offset, kafka_value FROM "Sales".src;
CREATE UNIQUE INDEX ON mv_auto (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv_auto', true);
CREATE VIEW mv AS SELECT * FROM "Sales"."Mv 1";
SQL

# --- chunks until retention has deleted ingested records of every partition -----------------------
: >"$TEST_TMP/captured.txt"
broker_ctl fill "$topic" 2000 200 >/dev/null
capture
q 'REFRESH MATERIALIZED VIEW "Sales"."Mv 1"'
chunks=0
while :; do
    read -r l0 l1 <<<"$(lows | tr '\n' ' ')"
    [ "$l0" -gt 1000 ] && [ "$l1" -gt 1000 ] && break
    [ "$chunks" -lt 30 ] || die "retention deleted nothing after $chunks chunks (low watermarks $l0 $l1)"
    broker_ctl fill "$topic" 2000 1000 >/dev/null      # about 1 MiB per partition
    capture
    out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW "Sales"."Mv 1"' 2>&1)"
    [ -z "$out" ] || die "a refresh between chunks said: $out"
    chunks=$((chunks + 1))
done
LC_ALL=C sort -u "$TEST_TMP/captured.txt" >"$TEST_TMP/expect.txt"
echo "ok - retention deleted offsets below $l0 and $l1 of partitions 0 and 1 after $chunks chunks, all ingested first"
assert_eq "$(wc -l <"$TEST_TMP/expect.txt")" "$(q 'SELECT count(*) FROM mv')" "the view holds every record captured"
deleted="$(q "SELECT count(*) FROM mv WHERE (kafka_partition, kafka_offset) < (0, $l0) OR (kafka_partition = 1 AND kafka_offset < $l1)")"
[ "$deleted" -gt 1000 ] || die "too few deleted records in the view ($deleted)"
echo "ok - $deleted of the view's rows are records that Kafka no longer has"
wait_for "[ \"\$(q 'SELECT count(*) FROM mv_auto')\" = $(wc -l <"$TEST_TMP/expect.txt") ]" 30 \
    || die "the auto view did not catch up: $(q 'SELECT count(*) FROM mv_auto') rows"
offsets() { q "SELECT string_agg(partition_id || ':' || next_offset || ':' || coalesce(last_offset, -1) || ':' || coalesce(last_value_len, -1), ' ' ORDER BY partition_id)
                 FROM kafka.stream_offsets WHERE mv_oid = '\"Sales\".\"Mv 1\"'::regclass" "${1:-$db}"; }
src_offsets="$(offsets)"
scan_log() { q "SELECT count(*) || ' ' || sum(scanned_rows) FROM kafka.stream_scan_states WHERE mv_name = '\"Sales\".\"Mv 1\"'" "${1:-$db}"; }
read -r src_log_rows src_log_scanned <<<"$(scan_log)"

# --- 1. dump and restore ------------------------------------------------------------------------------
# kafka_fdw is stopped from producing into the dump's snapshot: auto refresh off while dumping is not
# needed (one snapshot), but mv_auto's count is compared, so nothing new arrives until the restores.
pg_dump -Fc -d "$db" -f "$TEST_TMP/db.dump"
pg_dump -d "$db" -f "$TEST_TMP/db.sql"
for fmt in custom plain; do
    rdb="${db}_$fmt"
    q "CREATE DATABASE $rdb" postgres
    if [ "$fmt" = custom ]; then
        pg_restore -d "$rdb" --exit-on-error "$TEST_TMP/db.dump" >"$TEST_TMP/restore_$fmt.out" 2>&1 \
            || { cat "$TEST_TMP/restore_$fmt.out"; die "pg_restore failed"; }
    else
        psql -X -q -v ON_ERROR_STOP=1 -d "$rdb" -f "$TEST_TMP/db.sql" >"$TEST_TMP/restore_$fmt.out" 2>&1 \
            || { cat "$TEST_TMP/restore_$fmt.out"; die "psql restore failed"; }
    fi
    view_rows mv "$rdb" >"$TEST_TMP/view_$fmt.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view_$fmt.txt" \
        "$fmt restore: the view holds every captured record, (partition, offset, value), retention-deleted ones included"
    assert_eq "$(q 'SELECT md5(string_agg(mv::text, $$|$$ ORDER BY kafka_partition, kafka_offset)) FROM mv')" \
        "$(q 'SELECT md5(string_agg(mv::text, $$|$$ ORDER BY kafka_partition, kafka_offset)) FROM mv' "$rdb")" \
        "$fmt restore: every column of every row is the dumped one"
    assert_eq "$src_offsets" "$(offsets "$rdb")" "$fmt restore: offsets and last records are the dumped ones ($src_offsets)"
    assert_eq "t|$(q 'SELECT total_rows FROM kafka.streams WHERE mv_name = $$mv_auto$$::regclass')" \
        "$(q 'SELECT auto_refresh, total_rows FROM kafka.streams WHERE mv_name = $$mv_auto$$::regclass' "$rdb")" \
        "$fmt restore: mv_auto has auto refresh on and its row count"
    assert_eq "$((src_log_rows + 2)) $src_log_scanned" "$(scan_log "$rdb")" \
        "$fmt restore: the scan log is the dumped one, plus the restoring refresh's rows (2 partitions, nothing scanned)"
    assert_eq 0 "$(q 'SELECT count(*) FROM kafka.stream_restore' "$rdb")" "$fmt restore: nothing is left staged"
    assert_eq t151_owner "$(q "SELECT relowner::regrole FROM pg_class WHERE oid = '\"Sales\".\"Mv 1\"'::regclass" "$rdb")" \
        "$fmt restore: the view keeps its owner"
done

# --- 2. the next refresh is exact -------------------------------------------------------------------
broker_ctl fill "$topic" 600 200 >/dev/null
capture
LC_ALL=C sort -u "$TEST_TMP/captured.txt" >"$TEST_TMP/expect2.txt"
for rdb in "$db" "${db}_custom" "${db}_plain"; do
    out="$(psql -X -qAt -U t151_owner -d "$rdb" -v ON_ERROR_STOP=1 -c 'REFRESH MATERIALIZED VIEW "Sales"."Mv 1"' 2>&1)"
    assert_eq "" "$out" "$rdb: the refresh after the restore says nothing (no lost records)"
    view_rows mv "$rdb" >"$TEST_TMP/view2_$rdb.txt"
    assert_same_rows "$TEST_TMP/expect2.txt" "$TEST_TMP/view2_$rdb.txt" "$rdb: after one refresh the view = everything captured, exactly once"
    assert_eq 600 "$(q 'SELECT last_refresh_rows FROM kafka.streams WHERE mv_name = $$"Sales"."Mv 1"$$::regclass' "$rdb")" \
        "$rdb: that refresh ingested just the 600 new records"
    n="$(wc -l <"$TEST_TMP/expect2.txt")"
    wait_for "[ \"\$(q 'SELECT count(*) FROM mv_auto' $rdb)\" = $n ]" 30 \
        || die "$rdb: mv_auto has $(q 'SELECT count(*) FROM mv_auto' "$rdb") rows, not $n"
    q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || kafka_value FROM mv_auto" "$rdb" >"$TEST_TMP/auto_$rdb.txt"
    assert_same_rows "$TEST_TMP/expect2.txt" "$TEST_TMP/auto_$rdb.txt" "$rdb: the auto-refresh worker keeps mv_auto exact"
done

# --- 3. a dump without kafka_fdw's data is refused at restore ----------------------------------------
pg_dump -Fc -d "$db" --exclude-table-data=kafka.stream_dump -f "$TEST_TMP/nodata.dump"
q "CREATE DATABASE ${db}_nodata" postgres
rc=0; pg_restore -d "${db}_nodata" "$TEST_TMP/nodata.dump" >"$TEST_TMP/nodata.out" 2>&1 || rc=$?
sed 's/^/#   /' "$TEST_TMP/nodata.out" | head -n 12
[ "$rc" -ne 0 ] || die "pg_restore of a dump without the views' rows succeeded"
assert_contains "$(cat "$TEST_TMP/nodata.out")" 'the dump being restored holds no rows of streaming materialized view "Mv 1"' \
    "the restore refuses to load the view from its topic"
assert_contains "$(cat "$TEST_TMP/nodata.out")" 'HINT:  Restore a dump of the whole database.' "with a hint"
assert_eq f "$(q "SELECT relispopulated FROM pg_class WHERE oid = '\"Sales\".\"Mv 1\"'::regclass" "${db}_nodata")" \
    "the view stays unpopulated: nothing was ingested from start_offset"
assert_eq 0 "$(q "SELECT count(*) FROM kafka.stream_offsets" "${db}_nodata")" "and it has no offsets"

# --- 4. staged rows go only to the dumped owner's view ------------------------------------------------
# A restore that went wrong left the staged lines of public.lost (owner t151_owner); another role that
# creates a view of that name does not get them, the dumped owner's view does.
odb="${db}_owner"
q "CREATE DATABASE $odb" postgres
pg_install_extension "$odb" >/dev/null
make_analyst "$odb" t151_owner
make_analyst "$odb" t151_other
psql_q -d "$odb" <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO t151_owner, t151_other;
CREATE USER MAPPING FOR PUBLIC SERVER k;
CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value text) SERVER k OPTIONS (topic '$topic');
GRANT SELECT ON src TO t151_owner, t151_other;
INSERT INTO kafka.stream_dump VALUES
  ('public.lost', 'row', '(0,0,secret)'),
  ('public.lost', 'state', '{"owner": "t151_owner", "rows": 1, "state": {"topic": "$topic", "total_rows": 1}, "offsets": [{"partition_id": 0, "next_offset": 1}], "scan_log": [], "error_log": []}');
SQL
assert_eq "0|2" "$(q 'SELECT count(*) FROM kafka.stream_dump' "$odb")|$(q 'SELECT count(*) FROM kafka.stream_restore' "$odb")" \
    "lines copied into kafka.stream_dump are staged in kafka.stream_restore"
out="$(psql -X -qAt -U t151_other -d "$odb" -c 'CREATE MATERIALIZED VIEW lost AS SELECT kafka_partition, kafka_offset, kafka_value FROM src WITH NO DATA' \
        -c 'REFRESH MATERIALIZED VIEW lost' 2>&1 || true)"
assert_contains "$out" 'ERROR:  the dump of materialized view "lost" belongs to role "t151_owner"' "another role's view of that name does not get the staged rows"
q 'DROP MATERIALIZED VIEW lost' "$odb"
out="$(psql -X -qAt -U t151_owner -d "$odb" -c 'CREATE MATERIALIZED VIEW lost AS SELECT kafka_partition, kafka_offset, kafka_value FROM src WITH NO DATA' \
        -c 'SET kafka_fdw.connect_timeout = 5000' -c 'REFRESH MATERIALIZED VIEW lost' 2>&1 || true)"
assert_contains "$out" 'restored 1 rows and the offsets of streaming materialized view "lost" from the dump' "the dumped owner's view does"
assert_eq "0 0 secret" "$(q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || kafka_value FROM lost WHERE kafka_offset = 0 AND kafka_partition = 0" "$odb")" \
    "with the dumped row, not the topic's record at that offset"

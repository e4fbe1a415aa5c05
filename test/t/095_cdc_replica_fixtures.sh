#!/usr/bin/env bash
# CDC replicas from real Debezium events (test/fixtures/debezium/, captured from Debezium 3.6.1's
# PostgreSQL connector, with and without schemas), produced to the test broker with kcat:
#  - with schemas, kafka.create_replica() creates the table from the events' schema (types, primary
#    key); without, it adopts a table created by hand with the source's DDL;
#  - after events 0-16 (snapshot, inserts, updates keeping an unchanged TOASTed value, a primary-key
#    update, deletes with tombstones, a transaction) both replicas equal the source's state at that
#    point (pg_state_before_truncate.tsv, COPY of the source table): EXCEPT both ways empty;
#  - the TRUNCATE event (17) and the insert after it (18) leave row 7 alone;
#  - the events delivered again (Debezium is at-least-once after a connector restart), by a reset of
#    the offsets to the start, leave the same final state;
#  - the MySQL connector's envelope (hand-written fixture) is applied the same way;
#  - bad events (not JSON, unknown op, no key, a value that does not fit) are skipped and recorded in
#    kafka.stream_scan_errors, or fail the apply under on_error 'fail' with nothing applied;
#  - an ordinary user does all of this; another ordinary user cannot apply someone else's replica.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t095
fx="$REPO_ROOT/test/fixtures/debezium"
pg_install_extension "$db" >/dev/null
make_analyst "$db" cdc_analyst
make_analyst "$db" cdc_other
q() { psql_q -d "$db" -U cdc_analyst -c "$1"; }

produce() { produce_debezium "$@"; }
# same_as_tsv TABLE TSV MSG: TABLE holds exactly the rows of the COPY text file TSV
same_as_tsv() {
    psql_q -d "$db" -c "DROP TABLE IF EXISTS expected; CREATE TABLE expected (LIKE $1)" >/dev/null
    psql_q -d "$db" -c "\\copy expected FROM '$2'"
    local diff
    diff="$(psql_q -d "$db" -c "SET timezone = 'UTC';
        SELECT 'missing: ' || e::text FROM (TABLE expected EXCEPT TABLE $1) e
        UNION ALL SELECT 'extra: ' || r::text FROM (TABLE $1 EXCEPT TABLE expected) r")"
    [ -z "$diff" ] || { echo "not ok - $3"; printf '%s\n' "$diff" | cut -c1-300 | sed 's/^/#   /'; exit 1; }
    echo "ok - $3 ($(psql_q -d "$db" -c "SELECT count(*) FROM $1") rows)"
}
tsv_of() { psql_q -d "$db" -c "SET timezone = 'UTC'; COPY (SELECT * FROM $1 ORDER BY 1) TO STDOUT"; }

t_s="t095_schemas_$$"; t_n="t095_noschemas_$$"; t_m="t095_mysql_$$"; t_bad="t095_bad_$$"
for t in "$t_s" "$t_n" "$t_m" "$t_bad"; do broker_ctl create "$t" 1 >/dev/null; done
produce "$fx/pg_schemas.jsonl" "$t_s" 0 17
produce "$fx/pg_noschemas.jsonl" "$t_n" 0 17

psql_q -d "$db" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO cdc_analyst, cdc_other;
CREATE USER MAPPING FOR PUBLIC SERVER k;
CREATE SCHEMA src;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("$t_s", "$t_n", "$t_m", "$t_bad") FROM SERVER k INTO src;
GRANT USAGE ON SCHEMA src TO cdc_analyst, cdc_other;
GRANT SELECT ON ALL TABLES IN SCHEMA src TO cdc_analyst, cdc_other;
SQL

# --- with schemas: the table comes from the events ------------------------------------------------
q "SELECT kafka.create_replica('cdc_s', 'src.\"$t_s\"')" >/dev/null
cols="$(q "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
             FROM pg_attribute WHERE attrelid = 'cdc_s'::regclass AND attnum > 0")"
assert_eq "id integer, c_small smallint, c_int integer, c_big bigint, c_bool boolean, c_text text, c_bytea bytea, c_dec numeric(12,2), c_num numeric, c_date date, c_time time without time zone, c_ts timestamp without time zone, c_tstz timestamp with time zone, c_jsonb jsonb, c_uuid uuid, big_text text" \
    "$cols" "create_replica made the table's columns and types from the Debezium schema"
assert_eq "id" "$(q "SELECT string_agg(a.attname, ',') FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                      WHERE i.indrelid = 'cdc_s'::regclass AND i.indisprimary")" "its primary key is the message key's field"
assert_eq "cdc_analyst" "$(q "SELECT relowner::regrole FROM pg_class WHERE oid = 'cdc_s'::regclass")" "the replica belongs to the caller"
same_as_tsv cdc_s "$fx/pg_state_before_truncate.tsv" "with schemas, events 0-16 give the source's state"

# --- without schemas: a table made by hand with the source's DDL ----------------------------------
sed -n '/^CREATE TABLE cdc_types/,/^);/p' "$fx/pg_types.sql" | sed 's/cdc_types/cdc_n/' | psql_q -d "$db" -U cdc_analyst >/dev/null
q "SELECT kafka.create_replica('cdc_n', 'src.\"$t_n\"')" >/dev/null
same_as_tsv cdc_n "$fx/pg_state_before_truncate.tsv" "without schemas, events 0-16 give the source's state"

assert_eq "cdc_s|replica|14|17" "$(psql_q -d "$db" -c "SELECT s.mv_name, s.kind, s.total_rows, o.next_offset
    FROM kafka.streams s JOIN kafka.stream_offsets o ON o.mv_oid = s.mv_name::oid WHERE s.mv_name = 'cdc_s'::regclass")" \
    "kafka.streams shows the replica: 14 events applied (17 records, 3 of them tombstones), next offset 17"

# --- truncate, then an insert -----------------------------------------------------------------------
produce "$fx/pg_schemas.jsonl" "$t_s" 17 19
produce "$fx/pg_noschemas.jsonl" "$t_n" 17 19
assert_eq "2" "$(q "SELECT kafka.apply_replica('cdc_s')")" "apply_replica applies the TRUNCATE and the insert"
q "SELECT kafka.apply_replica('cdc_n')" >/dev/null
for r in cdc_s cdc_n; do
    assert_eq "7" "$(q "SELECT string_agg(id::text, ',') FROM $r")" "$r holds row 7 alone after the TRUNCATE"
done
assert_eq "0" "$(q "SELECT kafka.apply_replica('cdc_s')")" "nothing new: nothing applied"

# --- redelivery: the same events again leave the same state --------------------------------------
before="$(tsv_of cdc_s)"
produce "$fx/pg_schemas.jsonl" "$t_s" 0 19      # the whole stream once more, after itself
q "SELECT kafka.apply_replica('cdc_s')" >/dev/null
assert_eq "$before" "$(tsv_of cdc_s)" "the events delivered twice leave the same final state"
q "SELECT kafka.reset_stream('cdc_n', 'earliest')" >/dev/null
assert_eq "$before" "$(tsv_of cdc_n)" "reset_stream applies the topic again from the start: same state"

# --- the MySQL envelope ---------------------------------------------------------------------------
produce "$fx/mysql_schemas.jsonl" "$t_m" 0 9
q "SELECT kafka.create_replica('cdc_m', 'src.\"$t_m\"')" >/dev/null
assert_eq "123457|123|An extremely wide monitor|-1234567890.12|2|100000|1|2021-08-16|11:12:13|2021-08-16 11:12:13|2021-08-17 00:00:00+00|{\"gift\": true, \"note\": \"日本\"}|\\xff
123459||||||||||||" \
    "$(q "SET timezone = 'UTC'; SELECT * FROM cdc_m ORDER BY 1")" \
    "MySQL envelope: the update (full before image), the primary-key update and the delete applied"
produce "$fx/mysql_schemas.jsonl" "$t_m" 9 11
q "SELECT kafka.apply_replica('cdc_m')" >/dev/null
assert_eq "123460|124|A too sensible microphone|150.00|1|15000|1|2021-08-17|00:00:00|2021-08-17 00:00:00|2021-08-17 00:00:00+00|[]|\\x" \
    "$(q "SET timezone = 'UTC'; SELECT * FROM cdc_m ORDER BY 1")" "MySQL envelope: the TRUNCATE, then the last insert"

# --- bad events -------------------------------------------------------------------------------------
q "CREATE TABLE cdc_bad (id int PRIMARY KEY, n int NOT NULL, d date)"
printf '%s\n' \
    $'{"id":1}\t{"op":"c","after":{"id":1,"n":10,"d":19000}}' \
    $'{"id":2}\tnot json at all' \
    $'{"id":3}\t{"op":"x","after":{"id":3,"n":1}}' \
    $'{"id":4}\t{"op":"c","after":{"n":4}}' \
    $'{"id":5}\t{"op":"c","after":{"id":5,"n":"five"}}' \
    $'{"id":6}\t{"op":"c","after":{"id":6,"n":null}}' \
    $'{"id":7}\t{"op":"c","after":{"id":7,"n":7,"d":1e300}}' \
    $'{"id":8}\t{"op":"c","after":{"id":8,"n":8}}' \
    | kcat -P -b "$KAFKA_BROKERS" -t "$t_bad" -p 0 -K $'\t' -Z
out="$(psql -X -qAt -d "$db" -U cdc_analyst -v ON_ERROR_STOP=1 -c "ALTER FOREIGN TABLE src.\"$t_bad\" OPTIONS (ADD on_error 'fail')" 2>&1)" && {
    echo "not ok - an ordinary user altered a foreign table they do not own"; exit 1; } || true
psql_q -d "$db" -c "ALTER FOREIGN TABLE src.\"$t_bad\" OPTIONS (ADD on_error 'fail')"
out="$(psql -X -qAt -d "$db" -U cdc_analyst -v ON_ERROR_STOP=1 -c "SELECT kafka.create_replica('cdc_bad', 'src.\"$t_bad\"')" 2>&1)" && {
    echo "not ok - on_error 'fail': the apply succeeded over bad events"; exit 1; }
assert_contains "$out" "Kafka record at partition 0, offset 1" "on_error 'fail' names the first bad record"
assert_eq "0" "$(q "SELECT count(*) FROM cdc_bad")" "on_error 'fail': nothing applied"
psql_q -d "$db" -c "ALTER FOREIGN TABLE src.\"$t_bad\" OPTIONS (DROP on_error)"
q "SELECT kafka.create_replica('cdc_bad', 'src.\"$t_bad\"')" >/dev/null
assert_eq "1,8" "$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM cdc_bad")" "on_error 'skip': the good events are applied"
errs="$(q "SELECT position || ': ' || error_reason FROM kafka.stream_scan_errors WHERE mv_name LIKE '%cdc_bad' ORDER BY position")"
printf '%s\n' "$errs" | sed 's/^/#   /'
assert_eq "1 2 3 4 5 6" "$(printf '%s\n' "$errs" | cut -d: -f1 | tr '\n' ' ' | sed 's/ $//')" "each bad event is recorded at its offset"
assert_contains "$errs" "not valid JSON" "the reason of the record that is not JSON"
assert_contains "$errs" 'unknown Debezium operation "x"' "the reason of the unknown op"
assert_contains "$errs" "no value for the primary key" "the reason of the event without a key"
assert_contains "$errs" 'invalid input syntax for type integer: "five"' "the reason of the value that does not fit"
assert_eq "6|2" "$(q "SELECT skipped_rows, scanned_rows FROM kafka.stream_scan_states WHERE mv_name LIKE '%cdc_bad' ORDER BY record_time DESC LIMIT 1")" \
    "stream_scan_states counts 6 skipped and 2 applied"

# --- a column added at the source --------------------------------------------------------------------
# Event 18 (create of row 7) again as rows 8 and 9 with a new field c_added (int64 / numeric Decimal)
evolved() {
    python3 - "$1" "$2" <<'PY'
import json, sys
rec = json.loads(open(sys.argv[1]).read().splitlines()[18])
schemas = sys.argv[2] == "schemas"
for new_id in (8, 9):
    key, value = json.loads(rec["key"]), json.loads(rec["value"])
    if schemas:
        key["payload"]["id"] = new_id
        for f in value["schema"]["fields"]:
            if f["field"] in ("before", "after"):
                f["fields"].append({"type": "int64", "optional": True, "field": "c_added"})
        value["payload"]["after"]["id"] = new_id
        value["payload"]["after"]["c_added"] = new_id * 1000
    else:
        key["id"] = new_id
        value["after"]["id"] = new_id
        value["after"]["c_added"] = new_id * 1000
    print(json.dumps(key, separators=(",", ":")) + "\t" + json.dumps(value, separators=(",", ":")))
PY
}
evolved "$fx/pg_schemas.jsonl" schemas | kcat -P -b "$KAFKA_BROKERS" -t "$t_s" -p 0 -K $'\t' -Z
out="$(psql -X -qAt -d "$db" -U cdc_analyst -v ON_ERROR_STOP=1 -c "SELECT kafka.apply_replica('cdc_s')" 2>&1)" || die "apply with a new column failed: $out"
printf '%s\n' "$out" | sed 's/^/#   /'
assert_contains "$out" "has new columns" "the apply says that the replica got a new column"
assert_eq "c_added bigint" "$(q "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
    WHERE attrelid = 'cdc_s'::regclass AND attnum > 0 ORDER BY attnum DESC LIMIT 1")" "with schemas, the new column is added with its type"
assert_eq "7:|8:8000|9:9000" "$(q "SELECT string_agg(id || ':' || coalesce(c_added::text, ''), '|' ORDER BY id) FROM cdc_s")" \
    "the events with the new column are applied, the old rows have NULL in it"
evolved "$fx/pg_noschemas.jsonl" noschemas | kcat -P -b "$KAFKA_BROKERS" -t "$t_n" -p 0 -K $'\t' -Z
q "SELECT kafka.apply_replica('cdc_n')" >/dev/null
assert_eq "7" "$(q "SELECT string_agg(id::text, ',') FROM cdc_n")" "without schemas, events with an unknown column are not applied"
assert_contains "$(q "SELECT string_agg(error_reason, ' | ') FROM kafka.stream_scan_errors WHERE mv_name LIKE '%cdc_n'")" \
    'the event has column "c_added", which replica table "cdc_n" lacks' "... but skipped and recorded with the reason"

# --- a primary-key update of a row with an unchanged TOASTed value -----------------------------------
# Debezium: d of the old key (header __debezium.newkey), its tombstone, c of the new key (header
# __debezium.oldkey) whose unchanged TOASTed column holds the placeholder: the value is the old row's.
t_mv="t095_move_$$"; broker_ctl create "$t_mv" 1 >/dev/null
kput() { printf '%s\t%s\n' "$1" "$2" | kcat -P -b "$KAFKA_BROKERS" -t "$t_mv" -p 0 -K $'\t' -Z "${@:3}"; }
psql_q -d "$db" >/dev/null <<SQL
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("$t_mv") FROM SERVER k INTO src;
GRANT SELECT ON src."$t_mv" TO cdc_analyst;
SQL
q "CREATE TABLE cdc_mv (id int PRIMARY KEY, big text, n int)"
kput '{"id":1}' '{"op":"c","after":{"id":1,"big":"the big value","n":1}}'
kput '{"id":3}' '{"op":"c","after":{"id":3,"big":"three","n":3}}'
kput '{"id":1}' '{"op":"d","before":{"id":1,"big":null,"n":null},"after":null}' -H '__debezium.newkey={"id":2}'
kput '{"id":1}' '' -H '__debezium.newkey={"id":2}'
q "SELECT kafka.create_replica('cdc_mv', 'src.\"$t_mv\"')" >/dev/null
assert_eq "1:the big value|3:three" "$(q "SELECT string_agg(id || ':' || big, '|' ORDER BY id) FROM cdc_mv")" \
    "the delete of a move waits for its create (the end of the topic came between them)"
assert_eq "2" "$(psql_q -d "$db" -c "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'cdc_mv'::regclass")" \
    "... and the next apply starts at that delete"
kput '{"id":2}' '{"op":"c","after":{"id":2,"big":"__debezium_unavailable_value","n":2}}' -H '__debezium.oldkey={"id":1}'
kput '{"id":3}' '{"op":"d","before":{"id":3,"big":null,"n":null},"after":null}'
q "SELECT kafka.apply_replica('cdc_mv')" >/dev/null
assert_eq "2:the big value:2" "$(q "SELECT string_agg(id || ':' || big || ':' || n, '|' ORDER BY id) FROM cdc_mv")" \
    "the moved row keeps its unchanged TOASTed value; the old key is gone; a plain delete at the end is applied"
assert_eq "6" "$(psql_q -d "$db" -c "SELECT next_offset FROM kafka.stream_offsets WHERE mv_oid = 'cdc_mv'::regclass")" \
    "the replica's offset is past the last event"

# --- auto refresh, as the owner ------------------------------------------------------------------------
q "SELECT kafka.set_auto_refresh('cdc_s', true)" >/dev/null
printf '%s\t%s\n' '{"schema":null,"payload":{"id":10}}' \
    '{"schema":null,"payload":{"op":"c","after":{"id":10,"c_text":"auto"}}}' \
    | kcat -P -b "$KAFKA_BROKERS" -t "$t_s" -p 0 -K $'\t' -Z
wait_for "[ \"\$(q \"SELECT c_text FROM cdc_s WHERE id = 10\")\" = auto ]" 30 ||
    die "auto refresh did not apply the new event within 30 s: $(psql_q -d "$db" -c "SELECT last_refresh_status, last_error FROM kafka.streams WHERE mv_name = 'cdc_s'::regclass")"
echo "ok - auto refresh applies a replica's new events"
q "SELECT kafka.set_auto_refresh('cdc_s', false)" >/dev/null

# --- every table of a captured database -----------------------------------------------------------
pfx="t095db$$"
for t in "$pfx" "$pfx.public.customer" "$pfx.public.product" "$pfx.public.empty"; do broker_ctl create "$t" 1 >/dev/null; done
produce "$fx/pg_schemas.jsonl" "$pfx.public.customer" 0 17
produce "$fx/pg_schemas.jsonl" "$pfx.public.product" 0 17
printf '%s\n' '{"not":"a change event"}' | kcat -P -b "$KAFKA_BROKERS" -t "$pfx" -p 0
psql_q -d "$db" >/dev/null <<SQL
CREATE SCHEMA dbz;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("$pfx", "$pfx.public.customer", "$pfx.public.product", "$pfx.public.empty")
  FROM SERVER k INTO dbz;
GRANT USAGE ON SCHEMA dbz TO cdc_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA dbz TO cdc_analyst;
CREATE SCHEMA replica AUTHORIZATION cdc_analyst;
SQL
out="$(psql -X -qAt -d "$db" -U cdc_analyst -v ON_ERROR_STOP=1 -c "SELECT kafka.create_replicas('dbz', 'replica', '$pfx')" 2>&1)" ||
    die "create_replicas failed: $out"
printf '%s\n' "$out" | sed 's/^/#   /'
assert_eq "replica.customer replica.product" "$(printf '%s\n' "$out" | grep -v NOTICE | grep -v HINT | tr '\n' ' ' | sed 's/ $//')" \
    "create_replicas made a replica for each table topic, none for the schema topic"
assert_contains "$out" "skipping topic \"$pfx.public.empty\": it has no change events yet" "... and said why the empty one was skipped"
same_as_tsv replica.customer "$fx/pg_state_before_truncate.tsv" "create_replicas: replica.customer holds the source's state"
same_as_tsv replica.product "$fx/pg_state_before_truncate.tsv" "create_replicas: replica.product holds the source's state"
assert_eq "" "$(q "SELECT kafka.create_replicas('dbz', 'replica', '$pfx')" 2>/dev/null | grep -v NOTICE)" \
    "create_replicas again makes nothing twice"

# --- privileges -------------------------------------------------------------------------------------
out="$(psql -X -qAt -d "$db" -U cdc_other -c "SELECT kafka.apply_replica('cdc_s')" 2>&1)" && {
    echo "not ok - another user applied cdc_analyst's replica"; exit 1; }
assert_contains "$out" "must be owner of table cdc_s" "another user cannot apply the replica"
out="$(psql -X -qAt -d "$db" -U cdc_other -c "SELECT count(*) FROM kafka.streams WHERE mv_name::text LIKE 'cdc_%'" 2>&1)"
assert_eq "0" "$out" "kafka.streams shows another user nothing of replicas they cannot read"
echo "ok - t/095 done"

#!/usr/bin/env bash
# The CDC entry points against a planted search_path: an attacker (mallory) owns schema evil with an
# operator, function and domain for every type the extension's queries use (test/fixtures/
# search_path_traps.sql), each recording when it runs as anyone else. A victim (an ordinary role) and a
# superuser then run, with evil first on their search_path, kafka.create_replica (the table created
# from the events' schema, and an adopted one), kafka.create_replicas, kafka.apply_replica (with a
# column added at the source: the ALTER TABLE path; with bad events: the skip path), reset_stream and
# set_auto_refresh with the worker applying. Nothing planted may run as them, and mallory stays an
# ordinary role. Monitoring rows of the victim's replicas stay invisible to mallory.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t097
fx="$REPO_ROOT/test/fixtures/debezium"
pg_install_extension "$db" >/dev/null
make_analyst "$db" t097_mallory
make_analyst "$db" t097_victim
t1="t097_a_$$"; t2="t097pfx$$.public.orders"
for t in "$t1" "$t2"; do broker_ctl create "$t" 1 >/dev/null; done
produce_debezium "$fx/pg_schemas.jsonl" "$t1" 0 17
produce_debezium "$fx/pg_schemas.jsonl" "$t2" 0 17
printf '%s\t%s\n' '{"id":99}' 'not json' | kcat -P -b "$KAFKA_BROKERS" -t "$t1" -p 0 -K $'\t'
psql_q -d "$db" >/dev/null <<SQL
CREATE SCHEMA evil AUTHORIZATION t097_mallory;
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER k TO t097_victim;
CREATE USER MAPPING FOR PUBLIC SERVER k;
CREATE SCHEMA src;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("$t1", "$t2") FROM SERVER k INTO src;
GRANT USAGE ON SCHEMA src TO t097_victim;
GRANT SELECT ON ALL TABLES IN SCHEMA src TO t097_victim;
CREATE SCHEMA vrep AUTHORIZATION t097_victim;
SQL
psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" -U t097_mallory -f "$REPO_ROOT/test/fixtures/search_path_traps.sql" >/dev/null
evil() { PGOPTIONS="-c search_path=evil,public,pg_catalog" psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@"; }
assert_eq "evil,public,pg_catalog" "$(evil -U t097_victim -c "SHOW search_path")" "the victim's session puts evil first"

# the victim: a replica created from the schema, one adopted, a whole database, applies
evil -U t097_victim -c "SELECT kafka.create_replica('public.r1', 'src.\"$t1\"')" >/dev/null
sed -n '/^CREATE TABLE cdc_types/,/^);/p' "$fx/pg_types.sql" | sed 's/cdc_types/public.r2/' | psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" -U t097_victim >/dev/null   # (its own DDL, without evil: its types are its own business)
evil -U t097_victim -c "SELECT kafka.create_replica('public.r2', 'src.\"$t1\"', false)" >/dev/null
evil -U t097_victim -c "SELECT kafka.create_replicas('src', 'vrep', 't097pfx$$')" >/dev/null
python3 - "$fx/pg_schemas.jsonl" <<'PY' | kcat -P -b "$KAFKA_BROKERS" -t "$t1" -p 0 -K $'\t'
import json, sys
rec = json.loads(open(sys.argv[1]).read().splitlines()[18])
key, value = json.loads(rec["key"]), json.loads(rec["value"])
key["payload"]["id"] = 8
for f in value["schema"]["fields"]:
    if f["field"] in ("before", "after"):
        f["fields"].append({"type": "int64", "optional": True, "field": "c_added"})
value["payload"]["after"]["id"] = 8
value["payload"]["after"]["c_added"] = 8000
print(json.dumps(key, separators=(",", ":")) + "\t" + json.dumps(value, separators=(",", ":")))
PY
evil -U t097_victim -c "SELECT kafka.apply_replica('public.r1')" >/dev/null 2>&1
evil -U t097_victim -c "SELECT kafka.apply_replica('public.r2')" >/dev/null 2>&1
assert_eq "8000" "$(psql_q -d "$db" -c "SELECT c_added FROM public.r1 WHERE id = 8")" "the column added at the source was added (the ALTER TABLE path ran)"
evil -U t097_victim -c "SELECT kafka.reset_stream('vrep.orders', 'earliest')" >/dev/null
# the superuser too
evil -c "SELECT kafka.apply_replica('public.r1'), kafka.apply_replica('vrep.orders')" >/dev/null
# and the worker, as the owner
evil -U t097_victim -c "SELECT kafka.set_auto_refresh('public.r2', true)" >/dev/null
produce_debezium "$fx/pg_schemas.jsonl" "$t1" 17 19
wait_for "[ \"\$(psql_q -d $db -c 'SELECT count(*) FROM public.r2 WHERE id = 7')\" = 1 ]" 30 \
    || die "auto refresh did not apply the replica: $(psql_q -d "$db" -c "SELECT last_error FROM kafka.streams WHERE mv_name = 'public.r2'::regclass")"
evil -U t097_victim -c "SELECT kafka.set_auto_refresh('public.r2', false)" >/dev/null

assert_eq "" "$(psql_q -d "$db" -c "SELECT string_agg(who || '/' || sess || ': ' || what, '; ') FROM evil.ran")" \
    "no planted object ran as the victim, the superuser or the worker"
assert_eq "f" "$(psql_q -d "$db" -c "SELECT rolsuper FROM pg_roles WHERE rolname = 't097_mallory'")" "mallory is still an ordinary role"
assert_eq "0|0|0" "$(psql -X -qAt -d "$db" -U t097_mallory -c "SELECT (SELECT count(*) FROM kafka.streams), (SELECT count(*) FROM kafka.stream_scan_states), (SELECT count(*) FROM kafka.stream_scan_errors)")" \
    "mallory sees no state, scan or error row of the victim's replicas"
assert_eq "1" "$(psql -X -qAt -d "$db" -U t097_victim -c "SELECT count(*) FROM kafka.stream_scan_errors WHERE mv_name = 'public.r1'")" \
    "the victim sees the bad event of its replica"
echo "ok - t/097 done"

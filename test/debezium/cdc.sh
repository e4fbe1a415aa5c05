# test/debezium/cdc.sh — helpers of the Debezium pipeline tests (test/t/58N_kafka_debezium_*.sh), sourced
# after test/lib.sh. The source, Kafka Connect and the topics are read with independent tools only:
# psql on the source, kcat on the topics (parsed by python3's json), Connect's REST API.
# shellcheck shell=bash
#
#   cdc_source_start STATE [SQL...]  debezium.sh source-start; exports the variables of STATE/source.env
#   cdc_connect_start [K=V...]   debezium.sh connect-start on that state (env DEBEZIUM_*; the orders topic
#                                with CDC_ORDERS_PARTITIONS partitions, see below); exports the variables
#                                of STATE/connect.env. The caller's EXIT trap calls cdc_stop, and its
#                                TERM and INT traps exit (the runner's timeout sends TERM; Connect and
#                                the source run in sessions of their own and would outlive the test).
#   cdc_stop [STATUS]            stop Connect and the source of cdc_source_start; on failure (STATUS, default
#                                $?, neither 0 nor 77) first the tails of the Connect and source logs
#   cdc_src_file FILE [PACE]     psql -f FILE on the source; with PACE (seconds), pg_sleep(PACE) after
#                                each COMMIT (a workload slow enough to restart Connect in its middle)
#   src_q SQL                    psql on the source's salesdb (tuples only, stops on error)
#   cdc_replica_db DB MSG        database DB with kafka_fdw (made if missing); exit 77 (skipped) with "skipped:
#                                kafka.apply_replica does not exist yet MSG" while the CDC apply is missing,
#                                unless CDC_REFERENCE_APPLY=1: then test/debezium/reference_apply.sql (a
#                                PL/pgSQL test double) is loaded and CDC_REFERENCE=1
#   cdc_workload ARGS...         python3 test/debezium/workload.py ARGS...
#   cdc_expected SUMMARY TABLE PARTS  "EVENTS TOMBSTONES" Debezium sends for TABLE's snapshot and the first
#                                PARTS parts of a workload (its PREFIX.summary.json)
#   cdc_topic_stats TOPIC        one JSON line about TOPIC, read from the beginning with kcat:
#                                {"records", "tombstones", "events", "distinct", "duplicates", "ops": {...}}
#                                events = records that are not tombstones; distinct = events told apart by
#                                (key, source.lsn, op) (Debezium redelivers after a restart: at-least-once)
#   cdc_wait_events TOPIC N [S]  wait (S seconds, default 120) until TOPIC holds N distinct events
#   cdc_compare SRC_TABLE REPLICA DB  "ok - ..." if the replica REPLICA in database DB (psql as $PGUSER)
#                                holds exactly the rows of SRC_TABLE on the source: the source is copied
#                                (COPY ... TO STDOUT, source column names) into a scratch table with the
#                                replica's column types, and EXCEPT ALL both ways must be empty; else the
#                                first differing rows, and exit 1
CDC_DBZ="$REPO_ROOT/test/debezium/debezium.sh"
CDC_STATE=""

dbz() { bash "$CDC_DBZ" "$@"; }

cdc_source_start() {
    CDC_STATE="$1"; shift
    dbz source-start "$CDC_STATE" "$@" || return 1
    # shellcheck disable=SC1091
    . "$CDC_STATE/source.env"
}

# The orders topic gets CDC_ORDERS_PARTITIONS (default 2) partitions, the others DEBEZIUM_PARTITIONS
# (default 1): Debezium orders events per key only, and a primary-key update of a row with an unchanged
# TOASTed column sends that column as __debezium_unavailable_value in the new key's create event,
# whose value then exists only in the old row; when the old and new keys are in different partitions
# (and the row moves again) no per-partition apply can find it. orders has no TOASTed column.
CDC_ORDERS_TOPIC_GROUP=(topic.creation.groups=orders 'topic.creation.orders.include=.*\.orders'
                        "topic.creation.orders.partitions=${CDC_ORDERS_PARTITIONS:-2}"
                        topic.creation.orders.replication.factor=-1)

cdc_connect_start() {
    dbz connect-start "$CDC_STATE" "${CDC_ORDERS_TOPIC_GROUP[@]}" "$@" || return 1
    # shellcheck disable=SC1091
    . "$CDC_STATE/connect.env"
}

cdc_stop() {
    local rc="${1:-$?}"
    [ -n "$CDC_STATE" ] || return 0
    # short tails: the runner shows a failed test's last 60 lines, its "not ok" among them
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then dbz logs "$CDC_STATE" 12 || true; fi
    dbz stop-all "$CDC_STATE" --kill >/dev/null 2>&1 || true
    CDC_STATE=""
}

src_q() {
    psql -X -qAt -v ON_ERROR_STOP=1 -h "$DEBEZIUM_SOURCE_HOST" -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb -c "$1"
}

cdc_src_file() {
    if [ -n "${2:-}" ]; then
        sed "s/^COMMIT;\$/COMMIT; SELECT pg_sleep($2);/" "$1"
    else
        cat "$1"
    fi | psql -X -q -v ON_ERROR_STOP=1 -h "$DEBEZIUM_SOURCE_HOST" -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb >/dev/null
}

cdc_replica_db() {
    if [ "$(psql_q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$1'")" = 0 ]; then
        psql_q -d postgres -c "CREATE DATABASE $1"
    fi
    psql_q -d "$1" -c "CREATE EXTENSION IF NOT EXISTS kafka_fdw"
    CDC_REFERENCE=0
    if [ "$(psql_q -d "$1" -c "SELECT to_regproc('kafka.apply_replica') IS NOT NULL")" != t ]; then
        if [ "${CDC_REFERENCE_APPLY:-0}" = 1 ]; then
            psql_q -d "$1" -f "$REPO_ROOT/test/debezium/reference_apply.sql" >/dev/null
            CDC_REFERENCE=1
            log "CDC_REFERENCE_APPLY=1: the replicas are applied by test/debezium/reference_apply.sql (a test double, no auto apply)"
            return 0
        fi
        echo "skipped: kafka.apply_replica does not exist yet${2:+ $2}"
        exit 77
    fi
}

cdc_workload() { python3 "$REPO_ROOT/test/debezium/workload.py" "$@"; }

cdc_topic_stats() {
    kcat -C -b "$REAL_KAFKA_BROKERS" -t "$1" -o beginning -e -q -J | python3 -c '
import json, sys
n = tomb = 0
seen = set(); dup = 0; ops = {}
for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    n += 1
    if r.get("payload") is None:
        tomb += 1
        continue
    v = json.loads(r["payload"])
    v = v.get("payload", v) if "schema" in v else v
    ops[v["op"]] = ops.get(v["op"], 0) + 1
    ident = (r.get("key"), v["source"].get("lsn"), v["op"])
    if ident in seen:
        dup += 1
    seen.add(ident)
print(json.dumps({"records": n, "tombstones": tomb, "events": n - tomb, "distinct": len(seen),
                  "duplicates": dup, "ops": ops}, sort_keys=True))'
}

cdc_expected() {
    python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tables"][sys.argv[2]]
ps = t["parts"][:int(sys.argv[3])]
c = {k: sum(p[k] for p in ps) for k in ("c", "u", "d", "pk")}
print(t["snapshot"] + c["c"] + c["u"] + c["d"] + 2 * c["pk"], c["d"] + c["pk"])' "$@"
}

# cdc_stat JSON FIELD — one field of a cdc_topic_stats line.
cdc_stat() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

cdc_wait_events() {
    local topic="$1" want="$2" deadline=$(( $(date +%s) + ${3:-120} )) s got=0
    while :; do
        s="$(cdc_topic_stats "$topic")"; got="$(cdc_stat "$s" distinct)"
        [ "$got" -lt "$want" ] || break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "topic $topic: $got of $want events after ${3:-120} s: $s"; return 1
        fi
        sleep 1
    done
    echo "$s"
}

cdc_compare() {
    local src="$1" rep="$2" db="$3" cols pk f
    f="$(mktemp "${TEST_TMP:-/tmp}/cdc_compare.XXXXXX")"
    cols="$(src_q "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                   WHERE attrelid = 'public.$src'::regclass AND attnum > 0 AND NOT attisdropped")"
    pk="$(src_q "SELECT string_agg(quote_ident(a.attname), ', ') FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = 'public.$src'::regclass AND i.indisprimary")"
    src_q "COPY (SELECT $cols FROM public.$src ORDER BY $pk) TO STDOUT" >"$f"
    local out
    out="$(psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" <<SQL
CREATE TEMP TABLE cdc_source AS SELECT $cols FROM $rep WHERE false;
\\copy cdc_source FROM '$f'
CREATE TEMP VIEW cdc_missing AS SELECT $cols FROM cdc_source EXCEPT ALL SELECT $cols FROM $rep;
CREATE TEMP VIEW cdc_extra AS SELECT $cols FROM $rep EXCEPT ALL SELECT $cols FROM cdc_source;
SELECT (SELECT count(*) FROM cdc_source) || ' ' || (SELECT count(*) FROM $rep) || ' '
    || (SELECT count(*) FROM cdc_missing) || ' ' || (SELECT count(*) FROM cdc_extra);
SQL
)" || { rm -f "$f"; echo "not ok - $rep equals the source's $src (the comparison failed)"; exit 1; }
    local n_src n_rep n_missing n_extra
    read -r n_src n_rep n_missing n_extra <<<"$out"
    if [ "$n_missing" = 0 ] && [ "$n_extra" = 0 ]; then
        rm -f "$f"
        echo "ok - $rep equals the source's $src ($n_src rows)"
        return 0
    fi
    echo "not ok - $rep equals the source's $src"
    echo "#   source $n_src rows, replica $n_rep; $n_missing source rows missing or different in the replica, $n_extra replica rows not in the source"
    psql -X -qAt -d "$db" <<SQL | cut -c1-300 | sed 's/^/#   /'
CREATE TEMP TABLE cdc_source AS SELECT $cols FROM $rep WHERE false;
\\copy cdc_source FROM '$f'
SELECT 'source only: ' || t::text FROM (SELECT $cols FROM cdc_source EXCEPT ALL SELECT $cols FROM $rep LIMIT 5) t;
SELECT 'replica only: ' || t::text FROM (SELECT $cols FROM $rep EXCEPT ALL SELECT $cols FROM cdc_source LIMIT 5) t;
SQL
    rm -f "$f"
    exit 1
}

#!/usr/bin/env bash
# test/debezium/capture_fixtures.sh — capture real Debezium PostgreSQL change events into
# test/fixtures/debezium/pg_schemas.jsonl and pg_noschemas.jsonl (JSON converter with schemas.enable true,
# and false).
#
#   bash test/debezium/capture_fixtures.sh [OUT_DIR]     (default test/fixtures/debezium)
#
# For each mode: a fresh source (debezium.sh source-start with pg_types.sql), the rows of
# pg_workload_snapshot.sql, Kafka Connect with the connector (its snapshot sends them as "r"), then
# pg_workload_stream.sql while it streams, a COPY of the table (pg_state_before_truncate.tsv: what a
# replica holds after every event before the TRUNCATE), then pg_workload_truncate.sql; when the topic holds every expected event, kcat reads it.
# Each line of the output is one record of the topic in offset order:
#   {"topic": ..., "partition": ..., "offset": ..., "key": KEY, "value": VALUE, "headers": [[NAME, VALUE]...]}
# with KEY and VALUE the record's bytes as JSON strings exactly as Debezium wrote them (null for a
# tombstone's value or the TRUNCATE event's key), and the record's headers in order (Debezium's
# __debezium.context.* ones, and __debezium.newkey / __debezium.oldkey on a primary-key update). Uses a running real Kafka (REAL_KAFKA_STATE, or one it
# starts and stops itself).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$REPO_ROOT/test/lib.sh"
out="${1:-$REPO_ROOT/test/fixtures/debezium}"
fx="$REPO_ROOT/test/fixtures/debezium"
lib_trap
make_workdir
if [ -z "${REAL_KAFKA_STATE:-}" ]; then real_kafka_start "$WORK_DIR/kafka"; else real_kafka_env "$REAL_KAFKA_STATE"; fi
dbz() { bash "$REPO_ROOT/test/debezium/debezium.sh" "$@"; }
EXPECTED=19     # 2 snapshot events and 17 of the stream (counted in pg_workload_stream.sql's comments)
for schemas in true false; do
    st="$WORK_DIR/dbz-$schemas"
    trap 'dbz stop-all "$st" >/dev/null 2>&1 || true; lib_cleanup' EXIT
    prefix="fx_$schemas$$"
    dbz source-start "$st" "$fx/pg_types.sql" "$fx/pg_workload_snapshot.sql"
    DEBEZIUM_SCHEMAS=$schemas DEBEZIUM_PREFIX="$prefix" DEBEZIUM_TABLES=public.cdc_types dbz connect-start "$st" \
        || { dbz logs "$st" 60; exit 1; }
    . "$st/source.env"
    src() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb "$@"; }
    src -f "$fx/pg_workload_stream.sql" >/dev/null
    # the state a replica must have after the events before the TRUNCATE (PostgreSQL's text COPY format,
    # timezone UTC)
    src -c "COPY (SELECT * FROM cdc_types ORDER BY id) TO STDOUT" >"$WORK_DIR/state-$schemas.tsv"
    [ "$schemas" = false ] || cp "$WORK_DIR/state-$schemas.tsv" "$out/pg_state_before_truncate.tsv"
    cmp -s "$WORK_DIR/state-$schemas.tsv" "$out/pg_state_before_truncate.tsv" || die "the source's state differs between the two runs"
    src -f "$fx/pg_workload_truncate.sql" >/dev/null
    topic="$prefix.public.cdc_types"
    wait_for "[ \$(kcat -C -b '$REAL_KAFKA_BROKERS' -t '$topic' -o beginning -e -q -f '%o\n' | wc -l) -ge $EXPECTED ]" 60 \
        || { dbz logs "$st" 60; die "topic $topic: fewer than $EXPECTED events after 60 s"; }
    sleep 2    # nothing more may come: more than expected is an error below
    kcat -C -b "$REAL_KAFKA_BROKERS" -t "$topic" -o beginning -e -q -J >"$WORK_DIR/raw-$schemas.json"
    name=pg_schemas; [ "$schemas" = true ] || name=pg_noschemas
    python3 - "$WORK_DIR/raw-$schemas.json" "$out/$name.jsonl" "$prefix" <<'PY'
import json, sys
src, dst, prefix = sys.argv[1:4]
recs = [json.loads(l) for l in open(src) if l.strip()]
recs.sort(key=lambda r: (r["partition"], r["offset"]))
with open(dst, "w") as f:
    for r in recs:
        # the topic prefix of this run (fx_<mode><pid>) replaced by a stable one
        stable = "fixture"
        def fix(s):
            return None if s is None else s.replace(prefix, stable)
        h = r.get("headers") or []
        headers = [[fix(h[i]), fix(h[i + 1])] for i in range(0, len(h), 2)]
        f.write(json.dumps({"topic": r["topic"].replace(prefix, stable), "partition": r["partition"],
                            "offset": r["offset"], "key": fix(r.get("key")), "value": fix(r.get("payload")),
                            "headers": headers},
                           ensure_ascii=False) + "\n")
print(f"{dst}: {len(recs)} records")
PY
    n="$(wc -l <"$out/$name.jsonl")"
    [ "$n" -eq "$EXPECTED" ] || die "$name: $n records, expected $EXPECTED"
    dbz stop-all "$st"
done

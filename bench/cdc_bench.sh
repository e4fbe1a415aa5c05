#!/usr/bin/env bash
# bench/cdc_bench.sh — CDC apply rate of a replica table against the best hand-written alternative, side
# by side in one run (SPEC §6: "CDC apply >= 1.0 x COPY-to-staging + INSERT ... ON CONFLICT + DELETE of
# the same changes").
#
#   bash bench/cdc_bench.sh                 # KAFKA=real for a real Apache Kafka (bench/lib.sh)
#
# EVENTS (1000000) Debezium change events of an orders table (schemas off, Debezium's JSON shape:
# {"before","after","source","op","ts_ms"}, key {"id":N}; about 45% updates, 40% creates, 15% deletes
# of ids created before; price as a JSON number (decimal.handling.mode=double), updated_at as
# MicroTimestamp; SCHEMAS=1: with schemas, {"schema","payload"}, the JSON converter's default, the
# schema of Debezium's PostgreSQL connector for the table) are produced to a topic of PARTITIONS partitions, keyed, so each key's events stay
# in order in one partition. Then RUNS times, each from an empty target:
#   1. kafka.apply_replica() of a replica adopting an empty table orders(id PRIMARY KEY, ...);
#   2. the hand-written way, as the source material's MERGE procedure: COPY of the same events into a
#      staging table (text format, key and value as jsonb), then one statement that keeps the last
#      event per key and DELETEs the deleted keys and INSERT ... ON CONFLICT DO UPDATEs the others.
# Both end with the same table, checked (EXCEPT both ways empty) after every run. PERF=FILE writes a
# perf profile (cpu-clock samples) of the applying backend to FILE.
set -euo pipefail
export LC_ALL=C.UTF-8
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"

EVENTS="${EVENTS:-1000000}"
PARTITIONS="${PARTITIONS:-64}"
RUNS="${RUNS:-3}"
SCHEMAS="${SCHEMAS:-0}"
PAYLOAD=""; [ "$SCHEMAS" = 1 ] && PAYLOAD="->'payload'"
TOPIC=cdc_bench
DB=cdc_bench

bench_start_bulk "$DB"
chmod 777 "$WORK_DIR"

log "generating $EVENTS change events"
python3 - "$EVENTS" "$WORK_DIR/events.kcat" "$WORK_DIR/events.copy" "$SCHEMAS" <<'PY'
import json, random, sys
n, kcat_path, copy_path, schemas = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
# with schemas: Debezium's JSON converter default, {"schema": ..., "payload": ...} (the schema of its
# PostgreSQL connector for this table: the envelope, before/after structs, source block, op, ts_ms)
def fld(name, typ, optional=True, logical=None):
    f = {"type": typ, "optional": optional}
    if logical: f["name"] = logical; f["version"] = 1
    f["field"] = name
    return f
ROW = [fld("id", "int32", False), fld("customer_id", "int32"), fld("item", "string"),
       fld("price", "double"), fld("qty", "int32"), fld("status", "string"),
       fld("updated_at", "int64", True, "io.debezium.time.MicroTimestamp")]
SRC = [fld("version", "string", False), fld("connector", "string", False), fld("name", "string", False),
       fld("db", "string", False), fld("schema", "string", False), fld("table", "string", False)]
VALUE_SCHEMA = {"type": "struct", "fields": [
    {"type": "struct", "fields": ROW, "optional": True, "name": "bench.public.orders.Value", "field": "before"},
    {"type": "struct", "fields": ROW, "optional": True, "name": "bench.public.orders.Value", "field": "after"},
    {"type": "struct", "fields": SRC, "optional": False, "name": "io.debezium.connector.postgresql.Source", "field": "source"},
    fld("op", "string", False), fld("ts_ms", "int64")],
    "optional": False, "name": "bench.public.orders.Envelope", "version": 2}
KEY_SCHEMA = {"type": "struct", "fields": [fld("id", "int32", False)], "optional": False,
              "name": "bench.public.orders.Key"}
rnd = random.Random(42)
live, next_id = [], 1
items = ["keyboard", "monitor", "microphone", "desk lamp", "chair", "headphones"]
states = ["new", "paid", "shipped", "delivered"]
ts = 1700000000000000
def row(i):
    return {"id": i, "customer_id": rnd.randint(1, 100000), "item": rnd.choice(items),
            "price": round(rnd.uniform(1, 5000), 2), "qty": rnd.randint(1, 9),
            "status": rnd.choice(states), "updated_at": ts + rnd.randint(0, 10**12)}
src = {"version": "3.6.1.Final", "connector": "postgresql", "name": "bench", "db": "salesdb",
       "schema": "public", "table": "orders"}
esc = lambda s: s.replace("\\", "\\\\")
with open(kcat_path, "w") as k, open(copy_path, "w") as c:
    for seq in range(n):
        r = rnd.random()
        if not live or r < 0.40:
            i = next_id; next_id += 1; live.append(i)
            ev = {"before": None, "after": row(i), "source": src, "op": "c", "ts_ms": seq}
        elif r < 0.85:
            i = rnd.choice(live)
            ev = {"before": None, "after": row(i), "source": src, "op": "u", "ts_ms": seq}
        else:
            j = rnd.randrange(len(live)); i = live[j]; live[j] = live[-1]; live.pop()
            ev = {"before": {"id": i}, "after": None, "source": src, "op": "d", "ts_ms": seq}
        key, val = {"id": i}, ev
        if schemas:
            key = {"schema": KEY_SCHEMA, "payload": key}
            val = {"schema": VALUE_SCHEMA, "payload": ev}
        key = json.dumps(key, separators=(",", ":"))
        val = json.dumps(val, separators=(",", ":"))
        k.write(key + "\t" + val + "\n")
        c.write("%d\t%s\t%s\n" % (seq, esc(key), esc(val)))
PY
log "producing them to $TOPIC ($PARTITIONS partitions, keyed)"
bench_create_topic "$TOPIC" "$PARTITIONS"
kcat -P -b "$KAFKA_BROKERS" -t "$TOPIC" -K $'\t' -X queue.buffering.max.messages=1000000 \
    -X linger.ms=50 <"$WORK_DIR/events.kcat"
produced="$(kcat -C -b "$KAFKA_BROKERS" -t "$TOPIC" -o beginning -e -q -f '\n' | wc -l)"
[ "$produced" = "$EVENTS" ] || die "the topic holds $produced records, expected $EVENTS"

TABLE_DDL="id int PRIMARY KEY, customer_id int, item text, price numeric(12,2), qty int, status text, updated_at timestamp"
psql_q -d "$DB" >/dev/null <<SQL
SELECT kafka.create_external_schema('s', brokers => '$KAFKA_BROKERS');
CREATE TABLE orders ($TABLE_DDL);
SELECT kafka.create_replica('orders', 's.$TOPIC', with_data => false);
CREATE TABLE orders_sql ($TABLE_DDL);
CREATE UNLOGGED TABLE staging (seq bigint, k jsonb, v jsonb);
SQL

apply_once() {
    psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <<SQL | grep '^ms|' | cut -d'|' -f2
-- from empty: the superuser forgets the replica's offsets (what reset_stream does, minus the apply)
DELETE FROM kafka.stream_offsets WHERE mv_oid = 'orders'::regclass;
TRUNCATE orders;
CHECKPOINT;
$(perf_start)
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT kafka.apply_replica('orders');
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
$(perf_stop)
SQL
}
# PERF=FILE: a perf profile (cpu-clock samples, call graphs) of the applying backend, reported to FILE.
perf_start() {
    [ -n "${PERF:-}" ] || return 0
    cat <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BACKEND_PID :pid
\! perf record -F 499 -g -p \$BACKEND_PID -o $WORK_DIR/perf.data >/dev/null 2>&1 & echo \$! >$WORK_DIR/perf.pid; sleep 1
SQL
}
perf_stop() {
    [ -n "${PERF:-}" ] || return 0
    echo "\\! kill -INT \$(cat $WORK_DIR/perf.pid); sleep 2; perf report -i $WORK_DIR/perf.data --children --percent-limit 2 --stdio -g none >$PERF 2>/dev/null"
}

merge_once() {
    psql -X -qAt -d "$DB" -v ON_ERROR_STOP=1 <<SQL | grep '^ms|' | cut -d'|' -f2
TRUNCATE orders_sql, staging;
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
COPY staging FROM '$WORK_DIR/events.copy';
WITH last AS (
  SELECT DISTINCT ON ((k$PAYLOAD->>'id')::int) (k$PAYLOAD->>'id')::int AS id, v$PAYLOAD->>'op' AS op,
         v$PAYLOAD->'after' AS a
    FROM staging ORDER BY (k$PAYLOAD->>'id')::int, seq DESC
), gone AS (
  DELETE FROM orders_sql o USING last l WHERE o.id = l.id AND l.op = 'd'
)
INSERT INTO orders_sql
SELECT id, (a->>'customer_id')::int, a->>'item', (a->>'price')::numeric(12,2), (a->>'qty')::int,
       a->>'status', to_timestamp((a->>'updated_at')::bigint / 1e6) AT TIME ZONE 'UTC'
  FROM last WHERE op <> 'd'
ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, item = EXCLUDED.item,
  price = EXCLUDED.price, qty = EXCLUDED.qty, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at;
COMMIT;
SELECT 'ms', round((extract(epoch FROM clock_timestamp()) - :t0) * 1000);
SQL
}

check_same() {
    local d
    d="$(psql_q -d "$DB" -c "SELECT (SELECT count(*) FROM (TABLE orders EXCEPT TABLE orders_sql) a)
                                  + (SELECT count(*) FROM (TABLE orders_sql EXCEPT TABLE orders) b)")"
    [ "$d" = 0 ] || die "run $1: the replica and the hand-written MERGE differ in $d rows"
}

apply_ms=(); merge_ms=(); apply_bcpu=""
for run in $(seq 1 "$RUNS"); do
    b0=$(broker_cpu_ms)
    a="$(apply_once)"; b1=$(broker_cpu_ms)
    m="$(merge_once)"
    check_same "$run"
    apply_ms+=("$a"); merge_ms+=("$m"); apply_bcpu+="$(cpu_delta "$b0" "$b1") "
    log "run $run: apply_replica ${a} ms (broker CPU $(cpu_delta "$b0" "$b1") ms), COPY + MERGE ${m} ms; same table ($(psql_q -d "$DB" -c "SELECT count(*) FROM orders") rows)"
done

a_med="$(median "${apply_ms[*]}")"
m_med="$(median "${merge_ms[*]}")"
calc() { awk "BEGIN { print $1 }"; }
echo
echo "CDC apply benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $EVENTS Debezium events (c/u/d, $( [ "$SCHEMAS" = 1 ] && echo "JSON with schemas" || echo "JSON without schemas")), $PARTITIONS partitions, median of $RUNS runs"
echo "broker: $BENCH_BROKER_DESC"
bench_host_line
printf '%-52s %10s %12s %12s\n' "what" "median ms" "events/s" "broker CPU"
printf '%-52s %10s %12.0f %12s\n' "kafka.apply_replica()" "$a_med" "$(calc "$EVENTS * 1000 / $a_med")" "$(ms_or_dash "$(median "$apply_bcpu")")"
printf '%-52s %10s %12.0f %12s\n' "COPY to staging + DELETE + INSERT ... ON CONFLICT" "$m_med" "$(calc "$EVENTS * 1000 / $m_med")" "-"
printf 'apply events/s / hand-written events/s = %.2f (target >= 1.0)\n' "$(calc "$m_med / $a_med")"

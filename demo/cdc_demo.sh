#!/usr/bin/env bash
# demo/cdc_demo.sh — the zero-ETL pipeline of the source material, on one machine:
#
#   source PostgreSQL (salesdb: customer, product, orders) → Debezium (Kafka Connect) → Apache Kafka
#     → kafka_fdw replica tables in the warehouse PostgreSQL, kept current by auto refresh
#
#   bash demo/cdc_demo.sh
#
# On a fresh Debian 12 machine (as root) it installs what it needs (the packages of demo/run_demo.sh,
# Java and Maven), fetches Apache Kafka 4.1, Kafka Connect and Debezium's PostgreSQL connector from
# Maven Central (cached in ~/.m2), and starts, all on loopback and removed at exit: a one-node Kafka
# (test/kafka/kafka.sh), a source PostgreSQL with wal_level=logical and the salesdb tables, Kafka
# Connect standalone with Debezium (test/debezium/debezium.sh), and the warehouse PostgreSQL. There an
# ordinary role "analyst" makes a replica of every table of salesdb with one call, turns on auto
# refresh, and watches the replicas follow a change generator on the source; a streaming view of the
# raw order events is joined with the customer replica. KEEP=1 waits for Ctrl-C at the end, with the
# connection commands printed; CHANGES (default 300) sets how many changes the generator makes.
set -euo pipefail
export LC_ALL=C.UTF-8
export PGTZ=UTC
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"

CHANGES="${CHANGES:-300}"
DB=warehouse

ensure_packages
lib_trap
make_workdir
DBZ_STATE="$WORK_DIR/debezium"
build_extension
debezium_prepare "$DBZ_STATE"

log "starting Apache Kafka (one node)"
real_kafka_start "$WORK_DIR/kafka" 1 >/dev/null
log "starting the source PostgreSQL (salesdb) and Kafka Connect with Debezium"
bash "$REPO_ROOT/test/debezium/debezium.sh" source-start "$DBZ_STATE" >/dev/null
# shellcheck disable=SC1091
. "$DBZ_STATE/source.env"
src() { psql -X -qAt -v ON_ERROR_STOP=1 -h "$DEBEZIUM_SOURCE_HOST" -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb "$@"; }
src >/dev/null <<'SQL'
INSERT INTO customer (cust_id, name, email, mktseg, country, signup_date, vip, updated_at, notes)
SELECT i, 'Customer ' || i, 'c' || i || '@example.com', (ARRAY['AUTOMOBILE','BUILDING','MACHINERY'])[1 + i % 3],
       (ARRAY['US','DE','JP','BR'])[1 + i % 4], date '2024-01-01' + i, i % 5 = 0, now(), repeat(md5(i::text), 200)
  FROM generate_series(1, 50) i;
INSERT INTO product (prod_id, name, category, price, weight_kg, in_stock, sku, stock, description)
SELECT i, 'Product ' || i, (ARRAY['keyboard','monitor','microphone'])[1 + i % 3], 10 + i * 1.25, i / 3.0,
       true, gen_random_uuid(), 100, repeat(md5(i::text), 200)
  FROM generate_series(1, 20) i;
INSERT INTO orders (order_id, cust_id, prod_id, qty, amount, order_date, order_time, ordered_at, status, details)
SELECT i, 1 + i % 50, 1 + i % 20, 1 + i % 4, (1 + i % 4) * (10 + (1 + i % 20) * 1.25), current_date,
       localtime(0), localtimestamp(3), 'new', jsonb_build_object('gift', i % 7 = 0)
  FROM generate_series(1, 100) i;
SQL
bash "$REPO_ROOT/test/debezium/debezium.sh" connect-start "$DBZ_STATE" >/dev/null

PG_PRELOAD=kafka_fdw start_postgres "$WORK_DIR/pg" >/dev/null
pg_install_extension "$DB" >/dev/null
make_analyst "$DB" analyst
psql_q -d "$DB" >/dev/null <<SQL
CREATE SERVER msk FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$REAL_KAFKA_BROKERS');
GRANT USAGE ON FOREIGN SERVER msk TO analyst;
GRANT CREATE ON DATABASE $DB TO analyst;
SQL

# show SQL: print the statement, then run it as the analyst
show() {
    printf '\n\033[1m%s\033[0m\n' "$1"
    psql -X -v ON_ERROR_STOP=1 -d "$DB" -U analyst -P pager=off -c "$1"
}

log "waiting for Debezium's snapshot to reach Kafka"
wait_for "[ \$(kcat -C -b $REAL_KAFKA_BROKERS -t salesdb.public.orders -o beginning -e -q -f '.\n' 2>/dev/null | wc -l) -ge 100 ]" 120 \
    || die "the snapshot of salesdb.public.orders did not reach Kafka"

show "CREATE USER MAPPING FOR analyst SERVER msk"
show "CREATE SCHEMA dbz"
show "IMPORT FOREIGN SCHEMA kafka LIMIT TO (\"salesdb.public.customer\", \"salesdb.public.product\", \"salesdb.public.orders\") FROM SERVER msk INTO dbz"
show "CREATE SCHEMA salesdb_replica"
show "SELECT kafka.create_replicas('dbz', 'salesdb_replica', topic_prefix => 'salesdb')"
show "SELECT kafka.set_auto_refresh(r, true) FROM unnest(ARRAY['salesdb_replica.customer', 'salesdb_replica.product', 'salesdb_replica.orders']::regclass[]) r"
show "\\d salesdb_replica.orders"

show "CREATE MATERIALIZED VIEW order_events AS
SELECT kafka_offset, kafka_timestamp, kafka.json_parse(kafka_value)->'payload'->>'op' AS op,
       (kafka.json_parse(kafka_value)->'payload'->'after'->>'cust_id')::int AS cust_id
  FROM dbz.\"salesdb.public.orders\""
show "SELECT kafka.set_auto_refresh('order_events', true)"

log "the change generator: $CHANGES inserts, updates (most leave the TOASTed notes alone), primary-key changes and deletes on the source"
src >/dev/null <<SQL
DO \$\$
DECLARE i int;
BEGIN
  FOR i IN 1..$CHANGES LOOP
    CASE i % 6
      WHEN 0 THEN INSERT INTO orders (order_id, cust_id, prod_id, qty, amount, order_date, status, details)
                  VALUES (1000 + i, 1 + i % 50, 1 + i % 20, 1, 42.50, current_date, 'new', '{"gift": false}');
      WHEN 1 THEN UPDATE orders SET status = 'shipped', shipped_at = now() WHERE order_id = 1 + i % 100;
      WHEN 2 THEN UPDATE customer SET vip = NOT vip, updated_at = now() WHERE cust_id = 1 + i % 50;
      WHEN 3 THEN UPDATE product SET price = price * 1.01, stock = stock - 1 WHERE prod_id = 1 + i % 20;
      WHEN 4 THEN DELETE FROM orders WHERE order_id = 1 + (i * 7) % 100;
      ELSE UPDATE customer SET cust_id = cust_id + 1000 WHERE cust_id = 1 + i % 50 AND cust_id < 1000;
    END CASE;
    COMMIT;
  END LOOP;
END \$\$;
SQL
log "waiting until every replica equals its source table"
# same TABLE: the replica holds exactly the source's rows (EXCEPT both ways empty, so values compare
# as the types do: Debezium may send numeric 1.000 as 1)
same() {
    local t="$1"
    src -c "COPY $t TO STDOUT" >"$WORK_DIR/src_$t.copy"
    [ "$(psql_q -d "$DB" <<SQL
CREATE TEMP TABLE src_copy (LIKE salesdb_replica.$t);
\copy src_copy FROM '$WORK_DIR/src_$t.copy'
SELECT (SELECT count(*) FROM (TABLE src_copy EXCEPT ALL TABLE salesdb_replica.$t) a)
     + (SELECT count(*) FROM (TABLE salesdb_replica.$t EXCEPT ALL TABLE src_copy) b);
SQL
)" = 0 ]
}
for t in customer:cust_id product:prod_id orders:order_id; do
    if ! wait_for "same ${t%%:*}" 120; then
        diff <(src -c "COPY (SELECT * FROM ${t%%:*} ORDER BY ${t#*:}) TO STDOUT") \
             <(psql_q -d "$DB" -c "COPY (SELECT * FROM salesdb_replica.${t%%:*} ORDER BY ${t#*:}) TO STDOUT") | cut -c1-300 | head -20 >&2
        psql_q -d "$DB" -c "SELECT mv_name, last_refresh_status, last_error FROM kafka.streams" >&2
        psql_q -d "$DB" -c "SELECT position, error_reason FROM kafka.stream_scan_errors" >&2
        die "replica ${t%%:*} does not equal the source after 120 s"
    fi
    log "salesdb_replica.${t%%:*} equals salesdb.${t%%:*} (EXCEPT ALL both ways empty)"
done

show "SELECT mv_name, kind, auto_refresh, last_refresh_status, total_rows FROM kafka.streams ORDER BY 1"
show "SELECT count(*) AS orders, sum(amount) AS amount, count(*) FILTER (WHERE status = 'shipped') AS shipped FROM salesdb_replica.orders"
show "-- the streaming view of raw change events, joined with the current customers
SELECT c.country, e.op, count(*) AS events
  FROM order_events e JOIN salesdb_replica.customer c USING (cust_id)
 GROUP BY 1, 2 ORDER BY 1, 2"
show "SELECT mv_name, partition_id, lag FROM kafka.stream_lag ORDER BY 1, 2"

if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "warehouse: psql -h $PGHOST -p $PGPORT -U analyst $DB"
    echo "source:    psql -h $DEBEZIUM_SOURCE_HOST -p $DEBEZIUM_SOURCE_PORT -U postgres salesdb"
    echo "Ctrl-C to stop everything."
    while sleep 3600; do :; done
fi

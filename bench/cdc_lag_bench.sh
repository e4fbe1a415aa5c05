#!/usr/bin/env bash
# bench/cdc_lag_bench.sh — end-to-end lag of a CDC replica with auto refresh (SPEC §6: "CDC ... lag median
# <= 1 s at 1,000 changes/s"): source commit → Debezium → Kafka → visible in the replica.
#
#   bash bench/cdc_lag_bench.sh
#
# Starts a one-node Apache Kafka (test/kafka/kafka.sh), a source PostgreSQL with salesdb and Kafka
# Connect with Debezium's PostgreSQL connector (test/debezium/debezium.sh, JSON with schemas), and the
# warehouse PostgreSQL (track_commit_timestamp = on) with a replica of salesdb.public.orders on auto
# refresh. Then a generator on the source makes RATE changes/s for DURATION seconds, each in its own
# transaction: inserts of new orders and updates of earlier ones (UPDATE_PERCENT), every change setting
# shipped_at = clock_timestamp(), the moment before its commit. A replica row becomes visible when the
# apply that wrote it commits, which pg_xact_commit_timestamp(xmin) tells exactly: lag = that commit time
# - shipped_at, for the last change of every row (all on one machine, one clock). Before the figures, the
# replica is checked to equal the source (COPY of both, row for row).
#
# Environment: RATE (1000), DURATION (30), UPDATE_PERCENT (30), DEBEZIUM_PROPS (extra connector
# properties, e.g. "poll.interval.ms=50": Debezium's default 500 ms is most of the lag), KEEP_TMP=1.
set -euo pipefail
export LC_ALL=C.UTF-8
export PGTZ=UTC
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"

RATE="${RATE:-1000}"
DURATION="${DURATION:-30}"
UPDATE_PERCENT="${UPDATE_PERCENT:-30}"
DB=warehouse

ensure_packages
lib_trap
make_workdir
DBZ_STATE="$WORK_DIR/debezium"
build_extension
debezium_prepare "$DBZ_STATE"
real_kafka_start "$WORK_DIR/kafka" 1 >/dev/null
bash "$REPO_ROOT/test/debezium/debezium.sh" source-start "$DBZ_STATE" >/dev/null
# shellcheck disable=SC1091
. "$DBZ_STATE/source.env"
src() { psql -X -qAt -v ON_ERROR_STOP=1 -h "$DEBEZIUM_SOURCE_HOST" -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb "$@"; }
src -c "INSERT INTO orders (order_id, cust_id, status, shipped_at) VALUES (0, 0, 'seed', clock_timestamp())" >/dev/null
# shellcheck disable=SC2086  # DEBEZIUM_PROPS: connector properties K=V, split on spaces
DEBEZIUM_TABLES=public.orders bash "$REPO_ROOT/test/debezium/debezium.sh" connect-start "$DBZ_STATE" ${DEBEZIUM_PROPS:-} >/dev/null

PG_EXTRA_CONF="track_commit_timestamp = on" start_postgres "$WORK_DIR/pg" >/dev/null
pg_install_extension "$DB" >/dev/null
wait_for "[ \$(kcat -C -b $REAL_KAFKA_BROKERS -t salesdb.public.orders -o beginning -e -q -f '.\n' 2>/dev/null | wc -l) -ge 1 ]" 120 \
    || die "the snapshot did not reach Kafka"
psql_q -d "$DB" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$REAL_KAFKA_BROKERS');
CREATE USER MAPPING FOR CURRENT_USER SERVER k;
CREATE SCHEMA dbz;
IMPORT FOREIGN SCHEMA kafka LIMIT TO ("salesdb.public.orders") FROM SERVER k INTO dbz;
SELECT kafka.create_replica('orders', 'dbz."salesdb.public.orders"');
SELECT kafka.set_auto_refresh('orders', true);
SQL

total=$((RATE * DURATION))
log "generator: $total changes at $RATE/s on the source ($UPDATE_PERCENT% updates), each its own transaction"
t0=$(now_ms)
src >/dev/null <<SQL
DO \$\$
DECLARE
  n int := 0;
  started timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1..$total LOOP
    IF random() * 100 < $UPDATE_PERCENT AND i > 10 THEN
      UPDATE orders SET shipped_at = clock_timestamp(), status = 'shipped' WHERE order_id = 1 + floor(random() * (i - 1))::int;
    ELSE
      INSERT INTO orders (order_id, cust_id, qty, amount, status, shipped_at)
      VALUES (i, i % 1000, 1, 9.99, 'new', clock_timestamp());
    END IF;
    COMMIT;
    n := n + 1;
    -- pace: change i is due at started + i / RATE seconds
    IF clock_timestamp() < started + (i * interval '1 second') / $RATE THEN
      PERFORM pg_sleep(extract(epoch FROM started + (i * interval '1 second') / $RATE - clock_timestamp()));
    END IF;
  END LOOP;
END \$\$;
SQL
gen_ms=$(elapsed_ms "$t0")
log "generator done in $gen_ms ms; waiting until the replica equals the source"
same() {
    [ "$(src -c "COPY (SELECT * FROM orders ORDER BY order_id) TO STDOUT" | md5sum)" = \
      "$(psql_q -d "$DB" -c "COPY (SELECT * FROM orders ORDER BY order_id) TO STDOUT" | md5sum)" ]
}
wait_for same 300 || die "the replica does not equal the source 300 s after the generator ended"
log "the replica equals the source ($(psql_q -d "$DB" -c "SELECT count(*) FROM orders") rows)"

echo
echo "CDC lag benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs: $total changes at $RATE/s (generated in $gen_ms ms), $UPDATE_PERCENT% updates"
echo "pipeline: source PostgreSQL → Debezium 3.6.1 (Kafka Connect 4.1.1, JSON with schemas${DEBEZIUM_PROPS:+, $DEBEZIUM_PROPS}) → Apache Kafka 4.1.1 (1 node) → kafka_fdw replica, auto refresh (kafka_fdw.auto_refresh_interval $(psql_q -d "$DB" -c "SHOW kafka_fdw.auto_refresh_interval"))"
echo "host: $(nproc) CPUs; load average (1, 5, 15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
psql -X -d "$DB" -P pager=off <<'SQL'
SELECT count(*) AS rows,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms)::numeric, 0) AS median_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY lag_ms)::numeric, 0) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms)::numeric, 0) AS p99_ms,
       round(max(lag_ms)::numeric, 0) AS max_ms
  FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - shipped_at) * 1000 AS lag_ms
          FROM orders WHERE order_id > 0) l;
SELECT count(DISTINCT transaction_id) AS applies, sum(scanned_rows) AS events_read
  FROM kafka.stream_scan_states WHERE mv_name = 'public.orders';
SQL

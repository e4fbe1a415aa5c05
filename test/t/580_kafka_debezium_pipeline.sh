#!/usr/bin/env bash
# Change data capture end to end, live: a source PostgreSQL 15 (salesdb: customer, product, orders;
# REPLICA IDENTITY DEFAULT) → Kafka Connect standalone + Debezium's PostgreSQL connector (pgoutput,
# JSON with schemas) → the real Kafka → kafka_fdw replicas (kafka.create_replica / apply_replica).
#   - 200 rows per table before the connector starts (its snapshot, op "r"), then a seeded random
#     workload (test/debezium/workload.py: 10,000 single-row INSERT/UPDATE/DELETE in transactions,
#     primary-key updates, NULLs, numeric(12,2), unscaled numeric, timestamptz, date, time, bytea,
#     jsonb, uuid, TOASTed text left unchanged by most updates) in 5 parts; Kafka Connect is stopped and
#     started (TERM) during part 3 and killed (kill -9) and started during part 4 (those two parts paced
#     with pg_sleep(0.05) after each transaction, so that they are still running): Debezium redelivers
#     from its last flushed offset (at-least-once);
#   - every topic holds exactly the events the workload made (kcat, parsed with python3: distinct by
#     key, source LSN and op; "r" = snapshot rows; tombstones after deletes), and the duplicates are
#     reported;
#   - the replica part (skipped with status 77 until kafka.apply_replica exists): one replica per topic,
#     applied by hand until nothing is left, equals its source table (EXCEPT ALL both ways, the source
#     copied with COPY into the replica's column types); a further apply applies nothing; then auto
#     apply (kafka.set_auto_refresh) follows part 5 until the replicas equal the source again.
# Topics: orders in 2 partitions, customer and product in 1 (see test/debezium/cdc.sh). CDC_SEED (default 580) and CDC_CHANGES (default 10000) change the workload; CDC_REFERENCE_APPLY=1 runs
# the replica part with test/debezium/reference_apply.sql (a PL/pgSQL test double) while the C apply is
# missing; the timings of the
# harness are printed ("harness: ...").
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"
. "$REPO_ROOT/test/debezium/cdc.sh"
trap cdc_stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

seed="${CDC_SEED:-580}"
changes="${CDC_CHANGES:-10000}"
prefix="t580_$$"
export DEBEZIUM_PREFIX="$prefix" DEBEZIUM_SCHEMAS=true
wl="$TEST_TMP/wl"
cdc_workload --seed "$seed" --changes "$changes" --parts 5 --initial 200 --out "$wl"

t0=$(now_ms)
cdc_source_start "$TEST_TMP/dbz"
cdc_src_file "$wl.initial.sql"
t1=$(now_ms)
cdc_connect_start
t2=$(now_ms)
log "harness: source PostgreSQL up and loaded in $((t1 - t0)) ms, Kafka Connect streaming (snapshot done) $((t2 - t1)) ms later"

# --- the workload, with Connect restarted twice in the middle ----------------------------------------
cdc_src_file "$wl.1.sql"
cdc_src_file "$wl.2.sql"
restart_during() {   # restart_during PART [--kill]: run PART in the background, restart Connect while it runs
    local part="$1" pid rc=0 t
    cdc_src_file "$wl.$part.sql" 0.05 & pid=$!
    sleep 2
    kill -0 "$pid" 2>/dev/null || die "part $part ended within 2 s, before the restart"
    t=$(now_ms)
    dbz connect-restart "$CDC_STATE" ${2:+"$2"}
    log "harness: Kafka Connect restarted${2:+ ($2)} in $(elapsed_ms "$t") ms"
    kill -0 "$pid" 2>/dev/null || log "warning: part $part ended before Connect was back"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || die "part $part of the workload failed (psql status $rc)"
}
restart_during 3
restart_during 4 --kill
echo "ok - the workload ran (seed $seed, $((changes * 4 / 5)) changes in 4 parts) while Kafka Connect was restarted (TERM, then kill -9)"

# --- the topics hold every change (independent reader: kcat) -----------------------------------------
check_topics() {   # check_topics PARTS — each topic holds the snapshot and the events of PARTS parts
    local t want tomb s
    for t in customer product orders; do
        read -r want tomb <<<"$(cdc_expected "$wl.summary.json" "$t" "$1")"
        s="$(cdc_wait_events "$prefix.public.$t" "$want" 120)" || die "topic $prefix.public.$t did not get its $want events"
        assert_eq "$want" "$(cdc_stat "$s" distinct)" "topic $t: the $want events of the snapshot and parts 1-$1, each at least once ($(cdc_stat "$s" duplicates) redelivered)"
        [ "$(cdc_stat "$s" tombstones)" -ge "$tomb" ] || die "topic $t: $(cdc_stat "$s" tombstones) tombstones, expected at least $tomb: $s"
        assert_eq 200 "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops"].get("r", 0))' "$s")" "topic $t: 200 snapshot events"
    done
}
check_topics 4
# --- the replicas -------------------------------------------------------------------------------------
db=t580
role=t580_analyst
cdc_replica_db "$db" "(the source, Kafka Connect and the topics passed)"
real_analyst_db "$db" "$role" k
q "IMPORT FOREIGN SCHEMA kafka LIMIT TO (\"$prefix.public.customer\", \"$prefix.public.product\", \"$prefix.public.orders\")
   FROM SERVER k INTO public"
for t in customer product orders; do
    q "SELECT kafka.create_replica('${t}_replica', '\"$prefix.public.$t\"'::regclass, with_data => false)" >/dev/null
done
echo "ok - kafka.create_replica made a replica of each topic"

# apply_all REPLICA — kafka.apply_replica until it applies nothing; prints the events applied in all
apply_all() {
    local n total=0 rounds=0
    while :; do
        n="$(q "SELECT kafka.apply_replica('$1')")"
        [ "$n" -gt 0 ] || break
        total=$((total + n)); rounds=$((rounds + 1))
        [ "$rounds" -lt 1000 ] || die "apply_replica('$1') still applies after 1000 calls"
    done
    echo "$total"
}
for t in customer product orders; do
    t3=$(now_ms)
    n="$(apply_all "${t}_replica")"
    log "apply: ${t}_replica applied $n events in $(elapsed_ms "$t3") ms"
    # at least every distinct event, at most every event on the topic (redeliveries included): none
    # applied twice by kafka_fdw (tombstones are not events)
    s="$(cdc_topic_stats "$prefix.public.$t")"
    lo="$(cdc_stat "$s" distinct)" hi="$(cdc_stat "$s" events)"
    [ "$n" -ge "$lo" ] && [ "$n" -le "$hi" ] \
        || die "${t}_replica: $n events applied, expected between $lo (distinct) and $hi (on the topic): $s"
    echo "ok - ${t}_replica: $n events applied ($lo distinct, $hi on the topic with redeliveries)"
    cdc_compare "$t" "${t}_replica" "$db"
    assert_eq 0 "$(q "SELECT kafka.apply_replica('${t}_replica')")" "${t}_replica: a further apply applies nothing"
done

# --- auto apply follows part 5 -----------------------------------------------------------------------
if [ "$CDC_REFERENCE" = 1 ]; then
    echo "ok - # SKIP auto apply: the reference apply (CDC_REFERENCE_APPLY=1) has none"
    exit 0
fi
for t in customer product orders; do q "SELECT kafka.set_auto_refresh('${t}_replica', true)" >/dev/null; done
cdc_src_file "$wl.5.sql"
check_topics 5
for t in customer product orders; do
    assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tables"][sys.argv[2]]["rows"])' "$wl.summary.json" "$t")" \
        "$(src_q "SELECT count(*) FROM $t")" "the source's $t has the rows the workload left"
done
for t in customer product orders; do
    # converged: the replica equals the source (polled; each poll is a full comparison)
    if ! wait_for "( cdc_compare '$t' '${t}_replica' '$db' )" 60; then
        cdc_compare "$t" "${t}_replica" "$db"    # prints the difference and fails
    fi
    cdc_compare "$t" "${t}_replica" "$db"
done
echo "ok - auto apply brought every replica to the source's state after part 5"

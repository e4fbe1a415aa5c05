#!/usr/bin/env bash
# test/debezium/debezium.sh — real change streams for the CDC tests: a source PostgreSQL 15 (wal_level
# logical) and Kafka Connect standalone with Debezium's PostgreSQL connector (pgoutput), writing into a
# real Kafka (test/kafka/kafka.sh). Jars from Maven Central (test/debezium/pom.xml), cached in ~/.m2.
#
#   debezium.sh fetch                          resolve the jars (offline once cached), write the classpath
#   debezium.sh source-start STATE [SQL...]    initdb STATE/source as postgres (wal_level=logical, own port,
#                                              socket in STATE/source/sock), database salesdb from
#                                              test/debezium/salesdb.sql (or the SQL files given);
#                                              writes STATE/source.env
#   debezium.sh source-stop STATE              stop it (fast)
#   debezium.sh connect-start STATE [K=V...]   Kafka Connect standalone on REAL_KAFKA_BROKERS with the
#                                              connector; K=V are extra connector properties (they win);
#                                              waits until the REST status of connector and task is
#                                              RUNNING and Debezium has started streaming (the snapshot
#                                              done, its replication slot active); writes STATE/connect.env
#   debezium.sh connect-restart STATE [--kill] stop Connect (TERM, or kill -9 with --kill: no offset
#                                              flush, Debezium redelivers from the last flushed offset)
#                                              and start it again with the same configuration and offsets
#   debezium.sh connect-stop STATE             stop Connect (TERM, KILL after 30 s)
#   debezium.sh status STATE                   the connector's REST status (JSON)
#   debezium.sh logs STATE [N]                 the last N (40) lines of the Connect and source logs
#   debezium.sh stop-all STATE [--kill]        connect-stop and source-stop (--kill: kill -9 and pg_ctl -m
#                                              immediate, quick enough for a test's exit)
#
# Environment of connect-start (also kept for connect-restart in STATE/connect/settings):
#   REAL_KAFKA_BROKERS       the Kafka bootstrap list (required; or source REAL_KAFKA_STATE/env first)
#   DEBEZIUM_SCHEMAS         true (default) or false: the JSON converters' schemas.enable, key and value
#   DEBEZIUM_PREFIX          topic.prefix (default salesdb): topics PREFIX.public.TABLE
#   DEBEZIUM_TABLES          table.include.list (default public.customer,public.product,public.orders)
#   DEBEZIUM_PARTITIONS      partitions of the topics Connect creates (default 1)
#   DEBEZIUM_HEAP            JVM heap of Connect (default -Xms128m -Xmx512m; at most 1 GiB)
#   DEBEZIUM_START_TIMEOUT   seconds to wait for RUNNING and streaming (default 120)
# The connector: plugin.name=pgoutput, a filtered publication it creates, its own slot, snapshot.mode
# initial, skipped.operations=none (TRUNCATE events, op "t", are skipped by default), tombstones after
# deletes (the default), decimal.handling.mode=precise, time.precision.mode=adaptive,
# binary.handling.mode=bytes (Debezium's defaults, written out). Offsets in STATE/connect/offsets
# (offset.flush.interval.ms 1000).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CP_FILE="${DEBEZIUM_CP_FILE:-$HOME/.m2/kafka_fdw-debezium.classpath}"
# shellcheck source=test/lib.sh
. "$HERE/../lib.sh"     # as_pg, ensure_pg_user, free_port, PG_BINDIR, wait_for
# shellcheck source=test/maven.sh
. "$HERE/../maven.sh"
log() { printf '[%s] debezium: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cmd_fetch() {
    maven_classpath "$HERE/pom.xml" "$CP_FILE" "Kafka Connect and Debezium" connect-runtime debezium-connector-postgres \
        || die "fetching Kafka Connect and Debezium failed"
}

abs_state() {
    [ -n "${1:-}" ] || die "no STATE directory given"
    mkdir -p "$1"; chmod 755 "$1"
    (cd "$1" && pwd)
}

# --- source PostgreSQL ---------------------------------------------------------------------------------
cmd_source_start() {
    local state; state="$(abs_state "${1:-}")"; shift
    local d="$state/source" port f
    [ ! -f "$d/data/postmaster.pid" ] || die "the source at $d is running"
    ensure_pg_user
    rm -rf "$d"; mkdir -p "$d"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$d"
    as_pg "$PG_BINDIR/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1 \
        || { tail -n 30 "$d/initdb.log" >&2; die "initdb of the source failed"; }
    as_pg mkdir -p "$d/sock"
    port="$(free_port)" || die "no free port"
    as_pg tee -a "$d/data/postgresql.conf" >/dev/null <<EOF
# --- added by test/debezium/debezium.sh source-start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$d/sock'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
log_min_messages = warning
lc_messages = 'C'
timezone = 'UTC'
log_timezone = 'UTC'
EOF
    as_pg "$PG_BINDIR/pg_ctl" -D "$d/data" -l "$d/postgresql.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$d/postgresql.log" >&2; die "the source PostgreSQL did not start"; }
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE salesdb" >/dev/null
    [ $# -gt 0 ] || set -- "$HERE/salesdb.sql"
    for f in "$@"; do
        psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d salesdb -f "$f" >/dev/null \
            || die "loading $f into salesdb failed"
    done
    printf 'export %s=%q\n' DEBEZIUM_STATE "$state" DEBEZIUM_SOURCE_HOST 127.0.0.1 DEBEZIUM_SOURCE_PORT "$port" \
        DEBEZIUM_SOURCE_DB salesdb DEBEZIUM_SOURCE_DATA "$d/data" >"$state/source.env"
    chmod 644 "$state/source.env"
    log "source ready: PostgreSQL on 127.0.0.1:$port, database salesdb (log $d/postgresql.log)"
}

cmd_source_stop() {
    local d="$1/source" mode=fast
    [ "${2:-}" != --kill ] || mode=immediate
    [ -f "$d/data/postmaster.pid" ] || return 0
    as_pg "$PG_BINDIR/pg_ctl" -D "$d/data" -m "$mode" -w -t 60 stop >/dev/null 2>&1 \
        || as_pg "$PG_BINDIR/pg_ctl" -D "$d/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
}

src_psql() {  # src_psql STATE ARGS... — psql on the source's salesdb
    # shellcheck disable=SC1091
    . "$1/source.env"; shift
    psql -X -qAt -v ON_ERROR_STOP=1 -h "$DEBEZIUM_SOURCE_HOST" -p "$DEBEZIUM_SOURCE_PORT" -U postgres -d salesdb "$@"
}

# --- Kafka Connect -------------------------------------------------------------------------------------
cmd_connect_start() {
    local state; state="$(abs_state "${1:-}")"; shift
    [ -s "$state/source.env" ] || die "no source at $state (debezium.sh source-start first)"
    # shellcheck disable=SC1091
    . "$state/source.env"
    [ -n "${REAL_KAFKA_BROKERS:-}" ] || die "REAL_KAFKA_BROKERS is not set (source the env of test/kafka/kafka.sh start)"
    cmd_fetch
    local c="$state/connect" schemas="${DEBEZIUM_SCHEMAS:-true}" prefix="${DEBEZIUM_PREFIX:-salesdb}"
    case "$schemas" in true|false) ;; *) die "DEBEZIUM_SCHEMAS must be true or false, not '$schemas'" ;; esac
    [ ! -s "$c/pid" ] || ! kill -0 "$(cat "$c/pid")" 2>/dev/null || die "Kafka Connect of $state is running"
    mkdir -p "$c"
    local rest_port; rest_port="$(free_port)" || die "no free port"
    local slot="dbz_${prefix//[^a-z0-9_]/_}"
    cat >"$c/worker.properties" <<EOF
# written by test/debezium/debezium.sh connect-start
bootstrap.servers=$REAL_KAFKA_BROKERS
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=$schemas
value.converter.schemas.enable=$schemas
offset.storage.file.filename=$c/offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$rest_port
plugin.discovery=service_load
EOF
    {
        cat <<EOF
# written by test/debezium/debezium.sh connect-start
name=$prefix
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
plugin.name=pgoutput
database.hostname=$DEBEZIUM_SOURCE_HOST
database.port=$DEBEZIUM_SOURCE_PORT
database.user=postgres
database.password=unused-trust-auth
database.dbname=salesdb
topic.prefix=$prefix
table.include.list=${DEBEZIUM_TABLES:-public.customer,public.product,public.orders}
slot.name=$slot
publication.name=${slot}_pub
publication.autocreate.mode=filtered
snapshot.mode=initial
skipped.operations=none
tombstones.on.delete=true
decimal.handling.mode=precise
time.precision.mode=adaptive
binary.handling.mode=bytes
topic.creation.default.replication.factor=-1
topic.creation.default.partitions=${DEBEZIUM_PARTITIONS:-1}
EOF
        local kv
        for kv in "$@"; do printf '%s\n' "$kv"; done
    } >"$c/connector.properties"
    printf 'export %s=%q\n' DEBEZIUM_CONNECT_URL "http://127.0.0.1:$rest_port" DEBEZIUM_CONNECTOR "$prefix" \
        DEBEZIUM_TOPIC_PREFIX "$prefix" DEBEZIUM_SLOT "$slot" DEBEZIUM_SCHEMAS "$schemas" \
        DEBEZIUM_CONNECT_LOG "$c/connect.log" >"$state/connect.env"
    chmod 644 "$state/connect.env"
    : >"$c/connect.log"
    start_connect "$state"
}

# start_connect STATE — start the JVM with STATE/connect's configuration, wait until it streams.
start_connect() {
    local state="$1" c="$1/connect" t0
    t0=$(now_ms)
    # shellcheck disable=SC1091
    . "$state/connect.env"
    local mark; mark="$(wc -l <"$c/connect.log")"
    echo "----- started by debezium.sh at $(date +%T)" >>"$c/connect.log"
    # setsid: Connect gets neither the terminal's nor the test runner's signals; connect-stop stops it.
    # shellcheck disable=SC2086
    setsid java ${DEBEZIUM_HEAP:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$(cat "$CP_FILE")" \
        org.apache.kafka.connect.cli.ConnectStandalone "$c/worker.properties" "$c/connector.properties" \
        </dev/null >>"$c/connect.log" 2>&1 &
    echo $! >"$c/pid"
    local pid; pid="$(cat "$c/pid")"
    local deadline=$(( $(date +%s) + ${DEBEZIUM_START_TIMEOUT:-120} )) st=""
    # ready: the connector and its task RUNNING (REST), Debezium has logged the start of streaming after
    # this start, and the connector's replication slot is active (walsender attached).
    until st="$(connect_state "$state")" && [ "$st" = "RUNNING RUNNING" ] \
            && tail -n +"$((mark + 1))" "$c/connect.log" | grep -q 'Starting streaming' \
            && [ "$(src_psql "$state" -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$DEBEZIUM_SLOT'")" = t ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            connect_failure "$state" "$mark"; die "Kafka Connect exited during its start"
        fi
        if [[ "$st" == *FAILED* ]]; then
            connect_failure "$state" "$mark"; cmd_connect_stop "$state"; die "the connector failed: $st"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            connect_failure "$state" "$mark"; cmd_connect_stop "$state"
            die "Kafka Connect did not stream within ${DEBEZIUM_START_TIMEOUT:-120} s (REST status: ${st:-no answer})"
        fi
        sleep 0.5
    done
    log "Kafka Connect streams: connector $DEBEZIUM_CONNECTOR (pid $pid, REST $DEBEZIUM_CONNECT_URL, schemas.enable=$DEBEZIUM_SCHEMAS) $(elapsed_ms "$t0") ms after its start"
}

# connect_state STATE — "CONNECTOR_STATE TASK_STATE" from the REST API, or fail if it does not answer.
connect_state() {
    # shellcheck disable=SC1091
    . "$1/connect.env"
    local j
    j="$(curl -sf --max-time 5 "$DEBEZIUM_CONNECT_URL/connectors/$DEBEZIUM_CONNECTOR/status")" || return 1
    python3 -c 'import json,sys; s=json.load(sys.stdin); t=s.get("tasks") or [{"state":"NONE"}]; print(s["connector"]["state"], t[0]["state"])' <<<"$j"
}

# connect_failure STATE MARK — the error lines and the tail of the Connect log since line MARK, on stderr.
connect_failure() {
    local c="$1/connect"
    {
        echo "----- ERROR lines of $c/connect.log since this start"
        tail -n +"$(($2 + 1))" "$c/connect.log" | grep -E ' (ERROR|FATAL) |Exception' | head -n 20
        echo "----- last 40 lines of $c/connect.log"
        tail -n 40 "$c/connect.log"
        [ ! -s "$1/source/postgresql.log" ] || { echo "----- last 10 lines of $1/source/postgresql.log"; tail -n 10 "$1/source/postgresql.log"; }
    } >&2
}

cmd_connect_stop() {
    local c="$1/connect" pid sig=TERM
    [ "${2:-}" != --kill ] || sig=KILL
    pid="$(cat "$c/pid" 2>/dev/null)" || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "Kafka Connect did not stop in 30 s: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$c/pid"
}

cmd_connect_restart() {
    local state; state="$(abs_state "${1:-}")"
    [ -s "$state/connect.env" ] || die "Kafka Connect was never started at $state"
    if [ "${2:-}" = --kill ]; then
        local pid; pid="$(cat "$state/connect/pid" 2>/dev/null)" || die "Kafka Connect is not running"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$state/connect/pid"
        log "Kafka Connect (pid $pid) killed"
    else
        cmd_connect_stop "$state"
    fi
    # the walsender of the old connection may linger a moment: the slot must be free for the new one
    # shellcheck disable=SC1091
    . "$state/connect.env"
    wait_for "[ \"\$(src_psql '$state' -c \"SELECT active FROM pg_replication_slots WHERE slot_name = '$DEBEZIUM_SLOT'\")\" = f ]" 30 \
        || log "warning: slot $DEBEZIUM_SLOT still active 30 s after Connect stopped"
    start_connect "$state"
}

cmd_status() {
    # shellcheck disable=SC1091
    . "$1/connect.env"
    curl -sf --max-time 5 "$DEBEZIUM_CONNECT_URL/connectors/$DEBEZIUM_CONNECTOR/status"; echo
}

cmd_logs() {
    local n="${2:-40}" f
    for f in "$1/connect/connect.log" "$1/source/postgresql.log"; do
        [ -s "$f" ] && { echo "----- last $n lines of $f"; tail -n "$n" "$f"; }
    done
    return 0
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    source-start) shift; cmd_source_start "$@" ;;
    source-stop) cmd_source_stop "${2:?usage: debezium.sh source-stop STATE}" ;;
    connect-start) shift; cmd_connect_start "$@" ;;
    connect-restart) shift; cmd_connect_restart "$@" ;;
    connect-stop) cmd_connect_stop "${2:?usage: debezium.sh connect-stop STATE}" ;;
    status) cmd_status "${2:?usage: debezium.sh status STATE}" ;;
    logs) cmd_logs "${2:?usage: debezium.sh logs STATE [N]}" "${3:-40}" ;;
    stop-all) cmd_connect_stop "${2:?usage: debezium.sh stop-all STATE [--kill]}" "${3:-}"; cmd_source_stop "$2" "${3:-}" ;;
    *) echo "usage: debezium.sh fetch | source-start STATE [SQL...] | source-stop STATE | connect-start STATE [K=V...] | connect-restart STATE [--kill] | connect-stop STATE | status STATE | logs STATE [N] | stop-all STATE [--kill]" >&2; exit 2 ;;
esac

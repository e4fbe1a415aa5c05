# test/lib.sh — shared bash helpers for the kafka_fdw test harness, demo and bench scripts.
# shellcheck shell=bash
#
# Source it:  . "$REPO_ROOT/test/lib.sh"   (it never changes shell options or traps by itself)
#
# Typical use by a script that owns its own environment (demo, bench):
#   . test/lib.sh
#   ensure_packages; build_extension; build_broker
#   lib_trap                      # cleanup of everything started below on EXIT/INT/TERM
#   make_workdir                  # -> $WORK_DIR (removed at exit unless KEEP_TMP=1)
#   start_broker "$WORK_DIR/broker" --preload file.txt   # -> $KAFKA_BROKERS, $BROKER_STATE
#   start_postgres "$WORK_DIR/pg"                        # -> $PGHOST, $PGPORT, $PGUSER
#   pg_install_extension mydb
#
# A scripted test (test/t/*.sh) is given PGHOST, PGPORT, PGUSER, KAFKA_BROKERS, BROKER_STATE, BROKER,
# REPO_ROOT and TEST_TMP by test/run_tests.sh; it only needs the helpers (psql_q, broker_ctl, assert_*).
# Anything a test starts itself with start_broker/start_postgres/track_pid is cleaned up by lib_cleanup
# if the test calls lib_trap.
#
# Knobs (environment): KEEP_TMP=1 keeps the work dir; PG_PRELOAD (default 'kafka_fdw', empty = none)
# sets shared_preload_libraries; PG_EXTRA_CONF adds postgresql.conf lines; BROKER_COUNT (default 3).

# ---------------------------------------------------------------------------------------------------
# Locations and defaults
# ---------------------------------------------------------------------------------------------------
if [ -z "${REPO_ROOT:-}" ]; then
    REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
export REPO_ROOT
PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
PG_CONFIG="${PG_CONFIG:-$PG_BINDIR/pg_config}"
case ":$PATH:" in *":$PG_BINDIR:"*) ;; *) PATH="$PG_BINDIR:$PATH" ;; esac
export PATH PG_BINDIR PG_CONFIG
BROKER="${BROKER:-$REPO_ROOT/test/broker/kafka_test_broker}"
export BROKER
BROKER_COUNT="${BROKER_COUNT:-3}"
export BROKER_COUNT
PG_PRELOAD="${PG_PRELOAD-kafka_fdw}"
KAFKA_FDW_PACKAGES="${KAFKA_FDW_PACKAGES:-postgresql-15 postgresql-server-dev-15 librdkafka-dev libjansson-dev libssl-dev openssl kcat build-essential pkg-config procps util-linux coreutils}"

# Ownership records of this shell (deliberately not exported: children do not inherit them).
_LIB_PIDS=()          # background processes to kill at cleanup
_LIB_BROKER_DIRS=()   # broker state dirs started here
_LIB_PG_DIRS=()       # postgres dirs started here
_LIB_TMP_DIRS=()      # temp dirs to remove at cleanup (unless KEEP_TMP=1)
_LIB_KAFKA_DIRS=()    # real Kafka state dirs started here (test/kafka/kafka.sh)
_LIB_DEBEZIUM_DIRS=() # Debezium state dirs (source PostgreSQL, Kafka Connect) started here
_LIB_CLEANED=0
LIB_SHOW_LOGS_ON_FAIL="${LIB_SHOW_LOGS_ON_FAIL:-1}"

# ---------------------------------------------------------------------------------------------------
# Messages and assertions
# ---------------------------------------------------------------------------------------------------

# log MSG... — timestamped message on stderr.
log() { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

# die MSG... — print "ERROR: MSG" on stderr and exit 1.
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; exit 1; }

# assert_eq EXPECTED ACTUAL MSG — print "ok - MSG", or "not ok" with both values and exit 1.
assert_eq() {
    if [ "$1" == "$2" ]; then
        echo "ok - $3"
    else
        echo "not ok - $3"; echo "#   expected: '$1'"; echo "#   actual:   '$2'"
        exit 1
    fi
}

# assert_contains HAYSTACK NEEDLE MSG — print "ok - MSG" if NEEDLE occurs in HAYSTACK, else fail (exit 1).
assert_contains() {
    if [[ "$1" == *"$2"* ]]; then
        echo "ok - $3"
    else
        echo "not ok - $3"; echo "#   expected to contain: '$2'"; echo "#   actual: '$1'"
        exit 1
    fi
}

# assert_same_rows EXPECTED_FILE ACTUAL_FILE MSG — "ok - MSG (N rows)" if the two files hold the same
# lines (in any order) and ACTUAL has no line twice; else the duplicates or the diff, and exit 1.
assert_same_rows() {
    local dups
    dups="$(LC_ALL=C sort "$2" | uniq -d | head -n 5)"
    if [ -n "$dups" ]; then
        echo "not ok - $3"; echo "#   duplicate rows:"; printf '%s\n' "$dups" | sed 's/^/#     /'; exit 1
    fi
    if ! diff <(LC_ALL=C sort "$1") <(LC_ALL=C sort "$2") >"$2.diff"; then
        echo "not ok - $3"; head -n 20 "$2.diff" | sed 's/^/#   /'; exit 1
    fi
    echo "ok - $3 ($(wc -l <"$2") rows)"
}

# assert_view_holds_topic VIEW TOPIC EXCLUDED MSG — the (partition, offset) pairs of VIEW, read with the
# caller's function q (one SQL statement), are exactly those of TOPIC read with kcat, minus the "p o" lines
# of EXCLUDED (records skipped on purpose); no pair twice.
assert_view_holds_topic() {
    kcat -C -b "$KAFKA_BROKERS" -t "$2" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort \
        | LC_ALL=C comm -23 - <(printf '%s' "$3" | LC_ALL=C sort) >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM $1" >"$TEST_TMP/view.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "$4"
}

# make_analyst DB ROLE — create the ordinary login role ROLE if missing, with CREATE on schema public
# of DB: the user the analyst-facing tests run as.
make_analyst() {
    psql_q -d "$1" >/dev/null <<SQL
DO \$\$BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$2') THEN CREATE ROLE $2 LOGIN; END IF;
END\$\$;
GRANT CREATE ON SCHEMA public TO $2;
SQL
}

# gate_function_sql KEY — the CREATE FUNCTION statement of gate(p int, o bigint), for holding a refresh
# in the middle (t/042, t/048, t/570): a view calls gate(kafka_partition, kafka_offset), which returns
# the offset and, at the record named by the setting test.gate ('partition:offset'), waits until the
# session holding advisory lock KEY lets it go.
gate_function_sql() {
    cat <<SQL
CREATE FUNCTION gate(p int, o bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  IF p || ':' || o = current_setting('test.gate', true) THEN
    PERFORM pg_advisory_lock_shared($1);
    PERFORM pg_advisory_unlock_shared($1);
  END IF;
  RETURN o;
END \$\$
SQL
}

# now_ms — print the current time in milliseconds since the epoch.
now_ms() { date +%s%3N; }

# elapsed_ms START_MS — print the milliseconds elapsed since START_MS (a value from now_ms).
elapsed_ms() { echo $(( $(date +%s%3N) - $1 )); }

# wait_for 'CMD' TIMEOUT_S — re-run CMD (eval'd, output discarded) every 0.1 s until it succeeds;
# return 1 if TIMEOUT_S seconds pass first.
wait_for() {
    local cmd="$1" deadline=$(( $(date +%s%3N) + ${2:-10} * 1000 ))
    until eval "$cmd" >/dev/null 2>&1; do
        [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------------
# Packages and build
# ---------------------------------------------------------------------------------------------------

# ensure_packages [PKG...] — apt-get install the packages (default $KAFKA_FDW_PACKAGES) that are missing.
ensure_packages() {
    local pkgs=("$@") missing=() p
    [ ${#pkgs[@]} -gt 0 ] || read -r -a pkgs <<<"$KAFKA_FDW_PACKAGES"
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "packages: all ${#pkgs[@]} required packages already installed"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null || return 1
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null || return 1
    # Debian's postgresql-common creates and starts a "main" cluster on install; we never use it.
    if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
    fi
}

# ensure_java — install Java and Maven (Debian's default JDK) if javac or mvn is missing.
ensure_java() {
    if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
        ensure_packages default-jdk-headless maven
    fi
}

# debezium_prepare STATE_DIR — Java and Maven, the jars of Apache Kafka, Kafka Connect and Debezium
# (cached in ~/.m2), and STATE_DIR (test/debezium/debezium.sh's) stopped by lib_cleanup.
debezium_prepare() {
    ensure_java || return 1
    bash "$REPO_ROOT/test/kafka/kafka.sh" fetch || return 1
    bash "$REPO_ROOT/test/debezium/debezium.sh" fetch || return 1
    _LIB_DEBEZIUM_DIRS+=("$1")
}

# build_extension — make and make install kafka_fdw (output in $WORK_DIR/build.log if set).
build_extension() {
    local out="${WORK_DIR:-/tmp}/build.log"
    log "build: make && make install (log: $out)"
    { make -C "$REPO_ROOT" -s PG_CONFIG="$PG_CONFIG" && make -C "$REPO_ROOT" -s PG_CONFIG="$PG_CONFIG" install; } \
        >"$out" 2>&1 || { tail -n 80 "$out" >&2; return 1; }
}

# build_broker — make -C test/broker (builds $BROKER).
build_broker() {
    local out="${WORK_DIR:-/tmp}/broker-build.log"
    log "build: make -C test/broker (log: $out)"
    make -C "$REPO_ROOT/test/broker" -s >"$out" 2>&1 || { tail -n 80 "$out" >&2; return 1; }
    [ -x "$BROKER" ] || { log "test broker not built: $BROKER"; return 1; }
}

# ---------------------------------------------------------------------------------------------------
# Work dir, background processes and cleanup
# ---------------------------------------------------------------------------------------------------

# make_workdir — create a temp dir (mode 755, so postgres can traverse it), export WORK_DIR.
make_workdir() {
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kafka_fdw.XXXXXX")"
    chmod 755 "$WORK_DIR"
    _LIB_TMP_DIRS+=("$WORK_DIR")
    export WORK_DIR
}

# track_pid PID... — remember background processes, killed by lib_cleanup.
track_pid() { _LIB_PIDS+=("$@"); }

# pid_alive PID — succeed if the process exists and is not a zombie.
pid_alive() {
    local s
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    s="${s##*) }"
    [ "${s%% *}" != Z ]
}

# kill_pid PID — TERM the process, wait up to 5 s, then KILL it (and reap it if it is our child).
kill_pid() {
    local pid="$1"
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
        ! pid_alive "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# lib_cleanup — stop postgres servers, brokers and tracked processes started by this shell; remove temp dirs.
lib_cleanup() {
    local rc=$? d p
    local -; set +e
    [ "$_LIB_CLEANED" -eq 0 ] || return 0
    _LIB_CLEANED=1
    if [ "$rc" -ne 0 ] && [ "$LIB_SHOW_LOGS_ON_FAIL" = 1 ]; then show_logs 40 >&2; fi
    for d in "${_LIB_PG_DIRS[@]}"; do
        if [ -f "$d/data/postmaster.pid" ]; then
            as_pg "$PG_BINDIR/pg_ctl" -D "$d/data" -m immediate -w -t 20 stop >/dev/null 2>&1
        fi
    done
    for d in "${_LIB_BROKER_DIRS[@]}"; do stop_broker "$d" >/dev/null 2>&1; done
    for p in "${_LIB_PIDS[@]}"; do kill_pid "$p"; done
    for d in "${_LIB_DEBEZIUM_DIRS[@]}"; do
        bash "$REPO_ROOT/test/debezium/debezium.sh" stop-all "$d" >/dev/null 2>&1
    done
    for d in "${_LIB_KAFKA_DIRS[@]}"; do real_kafka_stop "$d"; done
    for d in "${_LIB_TMP_DIRS[@]}"; do
        if [ "${KEEP_TMP:-0}" = 1 ]; then log "KEEP_TMP=1: kept $d"; else rm -rf "$d"; fi
    done
    return 0
}

# lib_trap — run lib_cleanup on EXIT, and exit (hence clean up) on INT/TERM.
lib_trap() {
    trap lib_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# show_logs [LINES] — print the tail of the postgres and broker logs of this shell.
show_logs() {
    local n="${1:-40}" d
    for d in "${_LIB_PG_DIRS[@]}"; do
        [ -s "$d/postgresql.log" ] && { echo "----- tail of $d/postgresql.log"; tail -n "$n" "$d/postgresql.log"; }
    done
    for d in "${_LIB_BROKER_DIRS[@]}"; do
        [ -s "$d/broker.log" ] && { echo "----- tail of $d/broker.log"; tail -n "$n" "$d/broker.log"; }
    done
    for d in "${_LIB_KAFKA_DIRS[@]}"; do
        for f in "$d"/node*/kafka.log; do
            [ -s "$f" ] && { echo "----- tail of $f"; tail -n "$n" "$f"; }
        done
    done
    return 0
}

# ---------------------------------------------------------------------------------------------------
# Test broker
# ---------------------------------------------------------------------------------------------------

# start_broker STATE_DIR [serve args...] — start kafka_test_broker in the background, wait <= 15 s for it
# to be ready, export KAFKA_BROKERS (bootstrap list) and BROKER_STATE. Log: STATE_DIR/broker.log.
start_broker() {
    local dir="$1"; shift
    [ -x "$BROKER" ] || { log "test broker not found: $BROKER (make -C test/broker)"; return 1; }
    mkdir -p "$dir"
    rm -f "$dir/bootstrap" "$dir/control" "$dir/pid"
    "$BROKER" serve --state-dir "$dir" "$@" </dev/null >"$dir/broker.log" 2>&1 &
    local pid=$!
    _LIB_BROKER_DIRS+=("$dir")
    track_pid "$pid"
    if ! wait_for "[ -s '$dir/bootstrap' ] && [ -e '$dir/control' ] && [ -s '$dir/pid' ]" 15; then
        log "broker did not become ready within 15 s"; tail -n 30 "$dir/broker.log" >&2
        kill_pid "$pid"; return 1
    fi
    KAFKA_BROKERS="$(head -n 1 "$dir/bootstrap")"
    BROKER_STATE="$dir"
    export KAFKA_BROKERS BROKER_STATE
    log "broker ready: $KAFKA_BROKERS (pid $pid, state $dir)"
}

# broker_ctl CMD ARGS... — send one control command to the broker at $BROKER_STATE ("-" reads stdin).
broker_ctl() { "$BROKER" ctl --state-dir "$BROKER_STATE" "$@"; }

# stop_broker [STATE_DIR] — ask the broker to shut down, kill it if still alive after 5 s.
stop_broker() {
    local dir="${1:-$BROKER_STATE}" pid
    pid="$(cat "$dir/pid" 2>/dev/null || true)"
    timeout 5 "$BROKER" ctl --state-dir "$dir" shutdown >/dev/null 2>&1 || true
    [ -n "$pid" ] || return 0
    wait_for "! pid_alive $pid" 5 || true
    kill_pid "$pid"
}

# ---------------------------------------------------------------------------------------------------
# Real Apache Kafka (test/kafka/kafka.sh; the tests test/t/5NN_kafka_*.sh)
# ---------------------------------------------------------------------------------------------------

# real_kafka_start STATE_DIR [NODES] — start a real Kafka cluster (stopped by lib_cleanup) and export its
# REAL_KAFKA_* variables (see test/kafka/kafka.sh).
real_kafka_start() {
    _LIB_KAFKA_DIRS+=("$1")
    bash "$REPO_ROOT/test/kafka/kafka.sh" start "$@" || return 1
    real_kafka_env "$1"
}

# real_kafka_env STATE_DIR — export the REAL_KAFKA_* variables of the cluster at STATE_DIR.
real_kafka_env() {
    # shellcheck disable=SC1091
    . "$1/env"
}

# real_kafka_stop STATE_DIR — stop the real Kafka nodes at STATE_DIR.
real_kafka_stop() { bash "$REPO_ROOT/test/kafka/kafka.sh" stop "$1" >/dev/null 2>&1 || true; }

# kafka_tool ARGS... — test/kafka/KafkaTool.java on the cluster at $REAL_KAFKA_STATE: create TOPIC
# PARTITIONS [CONFIG=VALUE...], delete TOPIC, partitions TOPIC COUNT, config TOPIC CONFIG=VALUE...,
# produce TOPIC (script on stdin).
kafka_tool() { bash "$REPO_ROOT/test/kafka/kafka.sh" tool "$REAL_KAFKA_STATE" "$@"; }

# real_kcat ARGS... — kcat on the PLAINTEXT listener of the real Kafka.
real_kcat() { kcat -b "$REAL_KAFKA_BROKERS" "$@"; }

# real_pairs TOPIC [FORMAT] — the committed records of TOPIC (kcat with isolation.level=read_committed,
# the independent reader of the real-Kafka tests), one "partition offset" line each (or FORMAT), sorted.
real_pairs() {
    kcat -C -b "$REAL_KAFKA_BROKERS" -X isolation.level=read_committed -t "$1" -o beginning -e -q \
        -f "${2:-%p %o\n}" | LC_ALL=C sort
}

# real_produce N TOPIC PARTITION — N JSON records {"n": 1..N} to PARTITION of TOPIC (kcat).
real_produce() { seq "$1" | sed 's/^/{"n": /; s/$/}/' | kcat -P -b "$REAL_KAFKA_BROKERS" -t "$2" -p "$3"; }

# auto_refresh_settings [INTERVAL WAIT] — set kafka_fdw.auto_refresh_interval and kafka_fdw.auto_refresh_wait
# server-wide (ALTER SYSTEM, reload); without arguments reset both (for the test's EXIT trap).
auto_refresh_settings() {
    if [ $# -eq 2 ]; then
        psql_q -d postgres -c "ALTER SYSTEM SET kafka_fdw.auto_refresh_interval = '$1'" \
            -c "ALTER SYSTEM SET kafka_fdw.auto_refresh_wait = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
    else
        psql_q -d postgres -c "ALTER SYSTEM RESET kafka_fdw.auto_refresh_interval" \
            -c "ALTER SYSTEM RESET kafka_fdw.auto_refresh_wait" -c "SELECT pg_reload_conf()" >/dev/null || true
    fi
}

# real_analyst_db DB ROLE [SERVER] — database DB with kafka_fdw and the ordinary role ROLE, which may use
# the FDW and schema kafka; with SERVER, ROLE also creates that server on $REAL_KAFKA_BROKERS (PLAINTEXT)
# and its user mapping. Defines for the calling test: q SQL (psql as ROLE in DB, tuples only, stops on
# error) and q_out SQL (the same, stderr included, for statements expected to fail).
real_analyst_db() {
    REAL_DB="$1" REAL_ROLE="$2"
    pg_install_extension "$1" >/dev/null
    make_analyst "$1" "$2"
    psql_q -d "$1" -c "GRANT USAGE ON FOREIGN DATA WRAPPER kafka_fdw TO $2" -c "GRANT USAGE ON SCHEMA kafka TO $2"
    q() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$REAL_ROLE" -d "$REAL_DB" -c "$1"; }
    q_out() { psql -X -v ON_ERROR_STOP=1 -qAt -U "$REAL_ROLE" -d "$REAL_DB" -c "$1" 2>&1; }
    if [ -n "${3:-}" ]; then
        q "CREATE SERVER $3 FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$REAL_KAFKA_BROKERS')"
        q "CREATE USER MAPPING FOR $2 SERVER $3"
    fi
}

# produce_debezium FIXTURE TOPIC FROM TO — records [FROM, TO) of a test/fixtures/debezium .jsonl file
# (key TAB value, empty = NULL) to partition 0 of TOPIC on the test broker, with kcat.
produce_debezium() {
    python3 - "$1" "$3" "$4" <<'PY' | kcat -P -b "$KAFKA_BROKERS" -t "$2" -p 0 -K $'\t' -Z
import json, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):int(sys.argv[3])]
for l in lines:
    r = json.loads(l)
    k, v = r["key"], r["value"]
    for s in (k, v):
        assert s is None or ("\t" not in s and "\n" not in s), "fixture bytes with a tab or newline"
    print((k or "") + "\t" + (v or ""))
PY
}

# kcat_count TOPIC — print the number of records in TOPIC (all partitions, from the beginning).
kcat_count() {
    kcat -C -b "$KAFKA_BROKERS" -t "$1" -o beginning -e -q -f '%p %o\n' | wc -l
}

# ---------------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------------

# as_pg CMD ARGS... — run a command as the postgres user when root (PostgreSQL refuses root), else as is.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# ensure_pg_user — create the unprivileged system user "postgres" if it does not exist (root only).
ensure_pg_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id postgres >/dev/null 2>&1 && return 0
    log "creating system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

# free_port — print a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    local port
    for _ in $(seq 100); do
        port="$(random_listen_port)"
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}

# shellcheck source=test/ports.sh
. "$REPO_ROOT/test/ports.sh"

# start_postgres DIR — initdb DIR/data as postgres, start it on a free 127.0.0.1 port with the socket in
# DIR/sock and the log in DIR/postgresql.log; export PGHOST PGPORT PGUSER=postgres PGDATA.
start_postgres() {
    local dir="$1" port
    ensure_pg_user
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    as_pg test -w "$dir" || { log "$dir is not writable by postgres (parent dirs need mode 755)"; return 1; }
    as_pg "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { tail -n 30 "$dir/initdb.log" >&2; return 1; }
    as_pg mkdir -p "$dir/sock"
    port="$(free_port)" || { log "no free TCP port found"; return 1; }
    as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
# --- added by test/lib.sh start_postgres
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
shared_preload_libraries = '$PG_PRELOAD'
fsync = off
synchronous_commit = off
full_page_writes = off
max_worker_processes = 16
max_parallel_workers_per_gather = 2
log_min_messages = warning
lc_messages = 'C'
timezone = 'UTC'
log_timezone = 'UTC'
${PG_EXTRA_CONF:-}
EOF
    _LIB_PG_DIRS+=("$dir")
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 start >/dev/null \
        || { log "postgres failed to start"; tail -n 30 "$dir/postgresql.log" >&2; return 1; }
    PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATA="$dir/data"
    export PGHOST PGPORT PGUSER PGDATA
    log "postgres ready: port $port, data $dir/data, log $dir/postgresql.log"
}

# start_standby DIR PRIMARY_PORT — a hot standby of the server on 127.0.0.1:PRIMARY_PORT: pg_basebackup -R
# (streaming replication, user postgres) into DIR/data, started on a free port with its socket in DIR/sock and
# its log in DIR/postgresql.log; sets STANDBY_PORT (PGHOST/PGPORT are left alone). Stopped by lib_cleanup.
start_standby() {
    local dir="$1" primary_port="$2"
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    as_pg "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" -R -X stream -c fast \
        >"$dir/basebackup.log" 2>&1 || { tail -n 30 "$dir/basebackup.log" >&2; return 1; }
    as_pg mkdir -p "$dir/sock"
    STANDBY_PORT="$(free_port)" || { log "no free TCP port found"; return 1; }
    printf "# --- added by test/lib.sh start_standby\nport = %s\nunix_socket_directories = '%s'\nhot_standby = on\n" \
        "$STANDBY_PORT" "$dir/sock" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    _LIB_PG_DIRS+=("$dir")
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 start >/dev/null \
        || { log "standby failed to start"; tail -n 30 "$dir/postgresql.log" >&2; return 1; }
    log "standby ready: port $STANDBY_PORT (primary $primary_port), data $dir/data, log $dir/postgresql.log"
}

# kill9_postgres DATADIR — kill -9 the postmaster of DATADIR and every process it started, at once (a
# machine that dies): nothing is shut down cleanly, nothing more is written.
kill9_postgres() {
    local pm
    pm="$(head -n 1 "$1/postmaster.pid")"
    # shellcheck disable=SC2046
    kill -9 "$pm" $(ps -o pid= --ppid "$pm") 2>/dev/null || true
    wait_for "! pid_alive $pm" 10
}

# stop_postgres — stop the server at $PGDATA (fast mode).
stop_postgres() { as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null; }

# restart_postgres — restart the server at $PGDATA (same port), e.g. after changing postgresql.conf.
restart_postgres() {
    as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$(dirname "$PGDATA")/postgresql.log" -m fast -w -t 60 restart >/dev/null
}

# psql_q ARGS... — psql -X -v ON_ERROR_STOP=1 -qAt (unaligned, tuples only), e.g. psql_q -d db -c 'SELECT 1'.
psql_q() { psql -X -v ON_ERROR_STOP=1 -qAt "$@"; }

# pg_install_extension DB — create database DB if missing, CREATE EXTENSION kafka_fdw in it, and set its
# kafka_test.brokers / kafka_test.unreachable settings (used by tests) from $KAFKA_BROKERS.
pg_install_extension() {
    local db="$1"
    if [ "$(psql_q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
        psql_q -d postgres -c "CREATE DATABASE \"$db\"" || return 1
    fi
    if [ -n "${KAFKA_BROKERS:-}" ]; then
        psql_q -d postgres -c "ALTER DATABASE \"$db\" SET kafka_test.brokers = '$KAFKA_BROKERS'" || return 1
    fi
    psql_q -d postgres -c "ALTER DATABASE \"$db\" SET kafka_test.unreachable = '127.0.0.1:1'" || return 1
    psql_q -d "$db" -c 'CREATE EXTENSION IF NOT EXISTS kafka_fdw'
}

#!/usr/bin/env bash
# test/run_tests.sh — THE test command of kafka_fdw:  bash test/run_tests.sh [SELECTOR...]
#
# On a fresh Debian 12 machine (as root) it installs the packages it needs, builds and installs the
# extension and the test broker, starts the test broker and a throwaway PostgreSQL 15 (run as the
# unprivileged user postgres, in a temp dir), runs the pg_regress tests (sql/*.sql against expected/*.out)
# and then every scripted test test/t/*.sh, and prints a final line "N passed, M failed".
# Exit status: 0 iff every stage worked and no test failed. Everything started is stopped at exit.
#
# Selectors (arguments, or the env var TESTS="..."): "regress" = all pg_regress tests; a regress test
# name ("010_options"); a scripted test ("t/010_foo", "010_foo" or a prefix of it). Default: everything.
#
# Environment knobs:
#   KEEP_TMP=1              keep the temp dir (logs, pg_regress results, data dirs) for inspection
#   TEST_TIMEOUT=300        seconds allowed per scripted test (a test may allow itself more with a
#                           line "# test-timeout: SECONDS" among its first 60 lines)
#   BROKER_COUNT=3          brokers in the test cluster (--brokers)
#   PG_PRELOAD=kafka_fdw    shared_preload_libraries ('' to disable)
#   KAFKA_FDW_SKIP_BUILD=1  developer-only: do not build/install the extension and skip pg_regress
#                           (harness work while src/ does not compile); .ci/run never sets it
#   KAFKA_FDW_FORCE_PARALLEL=1  run the scripted tests with parallel plans forced wherever they are allowed
#                           (parallel_setup_cost = 0, parallel_tuple_cost = 0, min_parallel_table_scan_size = 0,
#                           added to postgresql.conf after pg_regress, whose expected plans are the default ones;
#                           sql/09_parallel forces them itself): scans and streaming refreshes then run as
#                           Gather over Parallel Foreign Scan
#   PG_BINDIR=DIR           the PostgreSQL 15 to build against, install into and run (default
#                           /usr/lib/postgresql/15/bin).  pg_config reports paths relative to its binary, so a
#                           relocated copy (cp -a /usr/lib/postgresql and /usr/share/postgresql to X/usr/lib and
#                           X/usr/share, ln -s /usr/include X/usr/include) keeps test runs out of the system dirs
#   TMPDIR=DIR              where the work dir is made (default /tmp)
#   REAL_KAFKA=0            skip the real-Kafka tests (test/t/5NN_kafka_*.sh), each reported as skipped;
#                           by default (and in CI) they run against a real Apache Kafka that the runner
#                           starts (test/kafka/kafka.sh: Java and Maven installed if missing, jars from
#                           Maven Central cached in ~/.m2, one KRaft node on loopback, stopped at exit)
#   REAL_KAFKA_NODES=1      nodes of that cluster (3: replication factor 3)
#   REAL_KAFKA_BROKERS=H:P  use this existing cluster (PLAINTEXT listener) instead of starting one; the
#                           tests that need listeners or certificates not described by the other
#                           REAL_KAFKA_* variables (see test/kafka/kafka.sh) skip those parts
#
# Scripted tests are run with bash, stdin from /dev/null, cwd = repo root, and get in the environment:
# PGHOST PGPORT PGUSER PGDATA KAFKA_BROKERS BROKER_STATE BROKER REPO_ROOT TEST_TMP (own scratch dir),
# and the real-Kafka tests the REAL_KAFKA_* variables of test/kafka/kafka.sh (REAL_KAFKA_BROKERS, ...).
# They source test/lib.sh for helpers and pass iff they exit 0; exit status 77 means skipped (the last
# line of output says why). After each one the broker faults are
# reset (all brokers up, no added latency).
set -euo pipefail
export LC_ALL=C.UTF-8   # deterministic sort of test names; psql output in UTF-8
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"
# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"

LIB_SHOW_LOGS_ON_FAIL=0          # we print logs ourselves, before the summary line
TEST_TIMEOUT="${TEST_TIMEOUT:-300}"
SKIP_BUILD="${KAFKA_FDW_SKIP_BUILD:-0}"
REGRESS_DB=contrib_regression
read -r -a REQUIRED_PACKAGES <<<"$KAFKA_FDW_PACKAGES"
PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
FINISHED=0
CURRENT_TEST_PID=""
LOGS_SHOWN=0

read -r -a SELECTORS <<<"${*:-${TESTS:-}}"

# ---------------------------------------------------------------------------------------------------
# Exit: clean up, then the summary line (always the last line of output).
# ---------------------------------------------------------------------------------------------------
on_exit() {
    local rc=$?
    set +e
    if [ "$FINISHED" -eq 0 ]; then          # aborted by an unexpected error or a signal
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("harness (aborted, status $rc)")
    fi
    if [ -n "$CURRENT_TEST_PID" ]; then kill -TERM -- "-$CURRENT_TEST_PID" 2>/dev/null; fi
    if [ "$FAILED" -gt 0 ]; then
        [ "$LOGS_SHOWN" = 1 ] || show_logs 40     # a failed stage; failed tests showed theirs already
        echo "FAILED: ${FAILED_NAMES[*]}"
    fi
    lib_cleanup
    if [ "$SKIPPED" -gt 0 ]; then echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; exit $(( FAILED > 0 )); fi
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -gt 0 ]; then exit 1; fi
    exit 0
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fail_stage NAME — a harness stage failed: count one failure and stop here.
fail_stage() {
    log "stage failed: $1"
    FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1")
    FINISHED=1
    exit 1
}

# ---------------------------------------------------------------------------------------------------
# Test selection
# ---------------------------------------------------------------------------------------------------
REGRESS_ALL=()
for f in sql/*.sql; do [ -e "$f" ] && REGRESS_ALL+=("$(basename "$f" .sql)"); done
SCRIPTED_ALL=()
for f in test/t/*.sh; do [ -e "$f" ] && SCRIPTED_ALL+=("$f"); done

REGRESS_SEL=()
SCRIPTED_SEL=()
if [ ${#SELECTORS[@]} -eq 0 ]; then
    REGRESS_SEL=("${REGRESS_ALL[@]}")
    SCRIPTED_SEL=("${SCRIPTED_ALL[@]}")
else
    for sel in "${SELECTORS[@]}"; do
        s="${sel#test/}"; s="${s%.sh}"; s="${s%.sql}"; s="${s#sql/}"
        hit=0
        for r in "${REGRESS_ALL[@]}"; do
            if [ "$s" = regress ] || [[ "$r" == "$s"* ]]; then
                [[ " ${REGRESS_SEL[*]} " == *" $r "* ]] || REGRESS_SEL+=("$r"); hit=1
            fi
        done
        for t in "${SCRIPTED_ALL[@]}"; do
            b="$(basename "$t" .sh)"
            if [[ "t/$b" == "$s"* || "$b" == "$s"* ]]; then
                [[ " ${SCRIPTED_SEL[*]} " == *" $t "* ]] || SCRIPTED_SEL+=("$t"); hit=1
            fi
        done
        [ "$hit" = 1 ] || [ "$s" = regress ] || fail_stage "no test matches selector '$sel'"
    done
fi
# real-Kafka tests among the selected ones
REAL_SEL=0
for t in "${SCRIPTED_SEL[@]}"; do [[ "$(basename "$t")" != 5[0-9][0-9]_kafka_* ]] || REAL_SEL=$((REAL_SEL + 1)); done
if [ "${REAL_KAFKA:-1}" = 0 ] && [ "$REAL_SEL" -gt 0 ]; then
    log "REAL_KAFKA=0: the $REAL_SEL real-Kafka test(s) are skipped"
fi
if [ "$SKIP_BUILD" = 1 ] && [ ${#REGRESS_SEL[@]} -gt 0 ]; then
    log "KAFKA_FDW_SKIP_BUILD=1: skipping ${#REGRESS_SEL[@]} pg_regress test(s)"
    REGRESS_SEL=()
fi

# ---------------------------------------------------------------------------------------------------
# 1-3. Work dir, packages, build
# ---------------------------------------------------------------------------------------------------
make_workdir
log "work dir: $WORK_DIR${KEEP_TMP:+ (KEEP_TMP=$KEEP_TMP)}"

ensure_packages "${REQUIRED_PACKAGES[@]}" || fail_stage "install packages"
ensure_pg_user || fail_stage "create user postgres"
if [ "$REAL_SEL" -gt 0 ] && [ "${REAL_KAFKA:-1}" != 0 ]; then
    ensure_java || fail_stage "install Java and Maven"
    bash test/kafka/kafka.sh fetch || fail_stage "fetch Apache Kafka (mvn, test/kafka/pom.xml)"
    # the CDC tests (test/t/5NN_kafka_debezium_*.sh): Kafka Connect and Debezium, python3 and curl
    if [[ " ${SCRIPTED_SEL[*]} " == *_kafka_debezium_* ]]; then
        ensure_packages python3 curl || fail_stage "install python3 and curl"
        bash test/debezium/debezium.sh fetch || fail_stage "fetch Kafka Connect and Debezium (mvn, test/debezium/pom.xml)"
    fi
fi

if [ "$SKIP_BUILD" = 1 ]; then
    log "KAFKA_FDW_SKIP_BUILD=1: not building the extension, shared_preload_libraries off"
    PG_PRELOAD=""
else
    build_extension || fail_stage "build extension (make && make install)"
fi
build_broker || fail_stage "build test broker (make -C test/broker)"

# ---------------------------------------------------------------------------------------------------
# 4-5. Broker and PostgreSQL
# ---------------------------------------------------------------------------------------------------
BROKER_ARGS=(--brokers "$BROKER_COUNT")
if [ -f test/fixtures/regress.txt ]; then BROKER_ARGS+=(--preload "$REPO_ROOT/test/fixtures/regress.txt"); fi
start_broker "$WORK_DIR/broker" "${BROKER_ARGS[@]}" || fail_stage "start test broker"

start_postgres "$WORK_DIR/pg" || fail_stage "start PostgreSQL"

# The real Kafka starts in the background (about 10 s) while pg_regress and the mock tests run; the first
# real-Kafka test waits for it (real_kafka_ready).
REAL_KAFKA_STARTER=""
REAL_KAFKA_STARTED_MS=0
if [ "$REAL_SEL" -gt 0 ] && [ "${REAL_KAFKA:-1}" != 0 ]; then
    REAL_KAFKA_STARTED_MS=$(now_ms)
    if [ -n "${REAL_KAFKA_BROKERS:-}" ]; then
        log "real Kafka: using the existing cluster at $REAL_KAFKA_BROKERS"
        bash test/kafka/kafka.sh attach "$WORK_DIR/kafka" "$REAL_KAFKA_BROKERS" >"$WORK_DIR/kafka-start.log" 2>&1 &
    else
        _LIB_KAFKA_DIRS+=("$WORK_DIR/kafka")
        bash test/kafka/kafka.sh start "$WORK_DIR/kafka" "${REAL_KAFKA_NODES:-1}" >"$WORK_DIR/kafka-start.log" 2>&1 &
    fi
    REAL_KAFKA_STARTER=$!
    track_pid "$REAL_KAFKA_STARTER"
fi

# real_kafka_ready — wait for the background start of the real Kafka, export its REAL_KAFKA_* variables.
real_kafka_ready() {
    [ -n "$REAL_KAFKA_STARTER" ] || return 0
    local rc=0
    wait "$REAL_KAFKA_STARTER" || rc=$?
    REAL_KAFKA_STARTER=""
    cat "$WORK_DIR/kafka-start.log" >&2
    # A node that fails to start says why above. Start it once more (fresh state), loudly: the start
    # is not what the tests test, and the cause is in the output for whoever reads it.
    if [ "$rc" -ne 0 ] && [ -z "${REAL_KAFKA_BROKERS:-}" ]; then
        log "real Kafka did not start (its output is above): starting it once more"
        rm -rf "$WORK_DIR/kafka"
        rc=0
        bash test/kafka/kafka.sh start "$WORK_DIR/kafka" "${REAL_KAFKA_NODES:-1}" >&2 || rc=$?
    fi
    [ "$rc" -eq 0 ] || return 1
    real_kafka_env "$WORK_DIR/kafka"
    log "real Kafka ready $(elapsed_ms "$REAL_KAFKA_STARTED_MS") ms after its start began"
}

# reset_broker — undo the faults a test may have injected; restart the broker if it died.
reset_broker() {
    if ! timeout 10 "$BROKER" ctl --state-dir "$BROKER_STATE" ping >/dev/null 2>&1; then
        log "broker not answering: restarting it"
        stop_broker "$BROKER_STATE" >/dev/null 2>&1 || true
        start_broker "$WORK_DIR/broker" "${BROKER_ARGS[@]}" || return 1
        return 0
    fi
    local i cmds=""
    for i in $(seq "$BROKER_COUNT"); do cmds+="up $i"$'\n'"rtt $i 0"$'\n'; done
    printf '%s' "$cmds" | timeout 10 "$BROKER" ctl --state-dir "$BROKER_STATE" - >/dev/null 2>&1 \
        || log "warning: resetting broker faults failed"
}

# ensure_postgres_up — start the shared server again if a test left it stopped.
ensure_postgres_up() {
    psql_q -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
    log "PostgreSQL not answering: starting it again"
    as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$WORK_DIR/pg/postgresql.log" -w -t 60 start >/dev/null
}

# ---------------------------------------------------------------------------------------------------
# 6. pg_regress
# ---------------------------------------------------------------------------------------------------
if [ ${#REGRESS_SEL[@]} -gt 0 ]; then
    log "pg_regress: ${#REGRESS_SEL[@]} test(s)"
    psql_q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $REGRESS_DB" -c "CREATE DATABASE $REGRESS_DB" \
        -c "ALTER DATABASE $REGRESS_DB SET kafka_test.brokers = '$KAFKA_BROKERS'" \
        -c "ALTER DATABASE $REGRESS_DB SET kafka_test.unreachable = '127.0.0.1:1'" \
        || fail_stage "create database $REGRESS_DB"
    PG_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
    REGRESS_OUT="$WORK_DIR/regress"
    mkdir -p "$REGRESS_OUT"
    rrc=0
    "$PG_REGRESS" --use-existing --dbname="$REGRESS_DB" --host="$PGHOST" --port="$PGPORT" --user=postgres \
        --bindir="$PG_BINDIR" --inputdir="$REPO_ROOT" --outputdir="$REGRESS_OUT" "${REGRESS_SEL[@]}" \
        </dev/null 2>&1 | tee "$REGRESS_OUT/pg_regress.log" || rrc=$?
    # pg_regress 15 prints one line per test: "test NAME ... ok 12 ms" / "... FAILED 12 ms"
    # (or "     NAME ... ok" inside a parallel group); "failed (ignored)" does not count as a failure.
    rpass=0; rfail=0
    while read -r name result; do
        if [ "$result" = ok ] || [ "$result" = ignored ]; then
            rpass=$((rpass + 1))
        else
            rfail=$((rfail + 1)); FAILED_NAMES+=("regress/$name")
        fi
    done < <(sed -nE 's/^(test +| +)?([^ ]+) +\.\.\. +(ok|FAILED|failed \(ignored\)|failed).*/\2 \3/p' \
                 "$REGRESS_OUT/pg_regress.log" | sed -E 's/ failed \(ignored\)$/ ignored/')
    PASSED=$((PASSED + rpass)); FAILED=$((FAILED + rfail))
    if [ "$rrc" -ne 0 ] && [ "$rfail" -eq 0 ]; then
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("pg_regress (exit status $rrc)")
    fi
    if [ -s "$REGRESS_OUT/regression.diffs" ] && { [ "$rrc" -ne 0 ] || [ "$rfail" -gt 0 ]; }; then
        echo "----- $REGRESS_OUT/regression.diffs (first 300 lines)"
        head -n 300 "$REGRESS_OUT/regression.diffs"
    fi
    log "pg_regress: $rpass passed, $rfail failed"
fi

# ---------------------------------------------------------------------------------------------------
# 7. Scripted tests
# ---------------------------------------------------------------------------------------------------
if [ "${KAFKA_FDW_FORCE_PARALLEL:-0}" = 1 ] && [ ${#SCRIPTED_SEL[@]} -gt 0 ]; then
    log "KAFKA_FDW_FORCE_PARALLEL=1: parallel plans forced for the scripted tests"
    as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<'EOF'
# --- added by test/run_tests.sh (KAFKA_FDW_FORCE_PARALLEL=1)
parallel_setup_cost = 0
parallel_tuple_cost = 0
min_parallel_table_scan_size = 0
EOF
    as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" reload >/dev/null || fail_stage "reload PostgreSQL with parallel plans forced"
fi
# log_lines — "FILE LINES" for each server log, to show what a failed test added to them.
log_lines() {
    local f
    for f in "$WORK_DIR"/pg/postgresql.log "$WORK_DIR"/kafka/node*/kafka.log; do
        [ -f "$f" ] && echo "$f $(wc -l <"$f")"
    done
    return 0
}

# show_new_log_lines "FILE LINES"... — the last 40 lines each log got since log_lines printed LINES.
show_new_log_lines() {
    local f n
    while read -r f n; do
        [ -n "$f" ] || continue
        echo "----- $f: last 40 of the lines added during the test"
        tail -n +"$((n + 1))" "$f" | tail -n 40
    done <<<"$1"
    LOGS_SHOWN=1
}

REAL_MS=0
for t in "${SCRIPTED_SEL[@]}"; do
    name="$(basename "$t" .sh)"
    real=0; [[ "$name" != 5[0-9][0-9]_kafka_* ]] || real=1
    if [ "$real" = 1 ] && [ "${REAL_KAFKA:-1}" = 0 ]; then
        SKIPPED=$((SKIPPED + 1))
        printf 'test %-40s ... skipped (REAL_KAFKA=0)\n' "t/$name"
        continue
    fi
    start=$(now_ms)
    if [ "$real" = 1 ]; then real_kafka_ready || fail_stage "start the real Kafka (test/kafka/kafka.sh)"; fi
    TEST_TMP="$WORK_DIR/t/$name"
    mkdir -p "$TEST_TMP"; chmod 777 "$TEST_TMP"
    tlog="$TEST_TMP.log"
    loglines="$(log_lines)"
    # timeout makes its own process group: whatever the test leaves behind is killed with it.
    ttimeout="$(head -n 60 "$t" | sed -n 's/^# test-timeout: \([0-9][0-9]*\)$/\1/p' | head -n 1)"
    [ -n "$ttimeout" ] && [ "$ttimeout" -gt "$TEST_TIMEOUT" ] || ttimeout="$TEST_TIMEOUT"
    TEST_TMP="$TEST_TMP" timeout -k 10 "$ttimeout" bash "$REPO_ROOT/$t" </dev/null >"$tlog" 2>&1 &
    CURRENT_TEST_PID=$!
    trc=0; wait "$CURRENT_TEST_PID" || trc=$?
    kill -TERM -- "-$CURRENT_TEST_PID" 2>/dev/null || true
    CURRENT_TEST_PID=""
    ms=$(elapsed_ms "$start")
    [ "$real" = 0 ] || REAL_MS=$((REAL_MS + ms))
    if [ "$trc" -eq 77 ]; then            # the test found nothing to test here (automake's convention)
        SKIPPED=$((SKIPPED + 1))
        printf 'test %-40s ... skipped %6d ms (%s)\n' "t/$name" "$ms" "$(tail -n 1 "$tlog")"
    elif [ "$trc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        printf 'test %-40s ... ok      %6d ms\n' "t/$name" "$ms"
    else
        FAILED=$((FAILED + 1)); FAILED_NAMES+=("t/$name")
        why="exit status $trc"; [ "$trc" -ne 124 ] || why="timed out after ${ttimeout}s"
        printf 'test %-40s ... FAILED  %6d ms (%s)\n' "t/$name" "$ms" "$why"
        echo "----- last 60 lines of $tlog"
        tail -n 60 "$tlog"
        show_new_log_lines "$loglines"
        echo "-----"
    fi
    reset_broker || fail_stage "restart test broker after t/$name"
    ensure_postgres_up || fail_stage "restart PostgreSQL after t/$name"
done

if [ "$REAL_SEL" -gt 0 ] && [ "${REAL_KAFKA:-1}" != 0 ]; then
    stop_ms=$(now_ms)
    for d in "${_LIB_KAFKA_DIRS[@]}"; do real_kafka_stop "$d"; done
    log "real Kafka: $REAL_SEL test(s) took $REAL_MS ms (its start ran in the background), stopping it $(elapsed_ms "$stop_ms") ms"
fi

FINISHED=1

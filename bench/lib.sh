# bench/lib.sh — what every benchmark in bench/ does first. Sourced after test/lib.sh.
# shellcheck shell=bash

# KAFKA=mock (default): the project's test broker (librdkafka's mock cluster, 1 broker).
# KAFKA=real: a real Apache Kafka, one node started with test/kafka/kafka.sh (stopped at exit), or the
# existing cluster at REAL_KAFKA_BROKERS (its PLAINTEXT listener; REAL_KAFKA_PID, the broker's pid on
# this machine, if known, for its CPU time). The records are produced by the test broker's own
# producer (`serve --external`), so both brokers get the same records from the same client.
BENCH_KAFKA="${KAFKA:-mock}"
[[ "$BENCH_KAFKA" =~ ^(mock|real)$ ]] || die "KAFKA must be mock or real (got '$BENCH_KAFKA')"
BENCH_BROKER_PID=""    # the broker process whose CPU time time_cmd reports (empty: unknown)
BENCH_BROKER_DESC=""   # what the figures were measured against, for the reports

# bench_start DB — install what is missing, build the extension and the test broker, and start (with
# cleanup at exit) the broker (see KAFKA above) and a throwaway PostgreSQL with database DB and the
# extension. PG_EXTRA_CONF, set by the caller, adds postgresql.conf lines. Exports KAFKA_BROKERS.
bench_start() {
    # shellcheck disable=SC2119  # (no arguments: the default package list)
    ensure_packages
    lib_trap
    make_workdir
    build_extension
    build_broker
    if [ "$BENCH_KAFKA" = mock ]; then
        start_broker "$WORK_DIR/broker" --brokers 1 >/dev/null
        BENCH_BROKER_PID="$(cat "$BROKER_STATE/pid")"
        BENCH_BROKER_DESC="1 test broker (librdkafka mock cluster, pid $BENCH_BROKER_PID)"
    else
        if [ -n "${REAL_KAFKA_BROKERS:-}" ]; then
            bash "$REPO_ROOT/test/kafka/kafka.sh" attach "$WORK_DIR/kafka" "$REAL_KAFKA_BROKERS" >&2 \
                || die "cannot attach to the Kafka cluster at $REAL_KAFKA_BROKERS"
            real_kafka_env "$WORK_DIR/kafka"
            BENCH_BROKER_PID="${REAL_KAFKA_PID:-}"
            BENCH_BROKER_DESC="the existing Kafka cluster at $REAL_KAFKA_BROKERS"
        else
            local attempt kdir
            for attempt in 1 2; do   # a node once exited during start here (cause not kept): try again
                kdir="$WORK_DIR/kafka$attempt"
                log "starting a one-node Apache Kafka (test/kafka/kafka.sh), attempt $attempt"
                real_kafka_start "$kdir" 1 && break
                grep -h -m 5 -E 'ERROR|Exception' "$kdir"/node1/kafka.log >&2 || true
                [ "$attempt" = 1 ] || die "could not start Apache Kafka"
            done
            BENCH_BROKER_PID="$(cat "$kdir/node1/pid")"
            BENCH_BROKER_DESC="1 Apache Kafka $(kafka_version) node (KRaft, JVM pid $BENCH_BROKER_PID, same machine)"
        fi
        # the producer of fill and generate, on the real cluster
        start_broker "$WORK_DIR/broker" --external "$REAL_KAFKA_BROKERS" >/dev/null
    fi
    log "broker: $BENCH_BROKER_DESC, bootstrap $KAFKA_BROKERS"
    start_postgres "$WORK_DIR/pg" >/dev/null
    pg_install_extension "$1" >/dev/null
}

# bench_start_bulk DB — bench_start for benches that write millions of rows: a larger buffer cache and
# no checkpoint in the middle of a timed load (the caller's PG_EXTRA_CONF lines come first).
bench_start_bulk() {
    PG_EXTRA_CONF="${PG_EXTRA_CONF:-}
shared_buffers = '512MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'"
    export PG_EXTRA_CONF
    bench_start "$1"
}

# bench_host_line — the machine's load at the end of a bench, for its report (the host is shared).
bench_host_line() {
    echo "host: $(nproc) CPUs; load average (1, 5, 15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# kafka_version — the Apache Kafka version of the harness's classpath (e.g. 4.1.1).
kafka_version() {
    tr ':' '\n' <<<"$REAL_KAFKA_CLASSPATH" | sed -n 's|.*/kafka_2\.13-\(.*\)\.jar$|\1|p' | head -n 1
}

# bench_create_topic TOPIC PARTITIONS — create TOPIC on the bench's broker. On real Kafka without
# retention by time (the fill's record timestamps start in 2023) or size.
bench_create_topic() {
    if [ "$BENCH_KAFKA" = mock ]; then
        broker_ctl create "$1" "$2" >/dev/null || die "could not create topic $1"
    else
        kafka_tool create "$1" "$2" retention.ms=-1 retention.bytes=-1 >/dev/null \
            || die "could not create topic $1"
        # every partition has a leader that answers (the topic is listed a little earlier)
        wait_for "broker_ctl watermarks '$1' | grep -q '^ok'" 30 || die "topic $1: partitions without a leader"
    fi
}

# bench_fill_topic TOPIC PARTITIONS RECORDS VALUE_BYTES — create TOPIC, fill it (the test broker's `fill`:
# record i has key key-<i>, partition i % PARTITIONS and a JSON value {"id":i,"name":"customer-i",
# "state":"CA","pad":"xx…"} of VALUE_BYTES bytes), and check that retention (the mock keeps the newest
# ~5 MiB per partition) kept every record: all lows 0, highs summing to RECORDS. Too few partitions
# would otherwise silently shrink the data set.
bench_fill_topic() {
    local topic="$1" partitions="$2" records="$3" value_bytes="$4" start wm lows total
    log "topic $topic: $partitions partitions, filling $records records of ~$value_bytes-byte values"
    bench_create_topic "$topic" "$partitions"
    start=$(now_ms)
    broker_ctl fill "$topic" "$records" "$value_bytes" >/dev/null
    log "filled in $(elapsed_ms "$start") ms"
    wm="$(broker_ctl watermarks "$topic")"
    [[ "$wm" == ok* ]] || die "watermarks: $wm"
    read -r lows total <<<"$(tr ' ' '\n' <<<"${wm#ok }" |
        awk -F: 'NF == 3 { if ($2 != 0) nz++; s += $3 } END { printf "%d %d\n", nz, s }')"
    if [ "$lows" -ne 0 ] || [ "$total" -ne "$records" ]; then
        die "retention lost records: $lows partition(s) with low > 0, highs sum to $total, not $records" \
            "(use more partitions: about records * (value bytes + 10) / 5 MiB at least)"
    fi
    log "watermarks ok: all lows 0, highs sum to $total"
}

# busy_ms — CPU time all processes of the machine have used since boot, in ms (from /proc/stat).
busy_ms() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%d\n", ($2 + $3 + $4 + $7 + $8 + $9) * 1000 / hz }' /proc/stat
}
# broker_cpu_ms — CPU time (user + system, all threads) the broker process $BENCH_BROKER_PID has used,
# in ms (from /proc/PID/stat); "-" if unknown.
broker_cpu_ms() {
    local ticks
    if [ -z "$BENCH_BROKER_PID" ] || ! ticks="$(stat_cpu_ticks "/proc/$BENCH_BROKER_PID/stat")"; then echo -; return; fi
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}
# stat_cpu_ticks FILE — user + system CPU time in clock ticks from a /proc/.../stat FILE (of a process
# or a thread), read with the shell's builtins; fails if FILE cannot be read.
stat_cpu_ticks() {
    local line f
    read -r line <"$1" 2>/dev/null || return 1
    read -r -a f <<<"${line##*) }"   # after the command name, which may contain spaces: field 3 first
    echo $((f[11] + f[12]))
}
# peak_rss_anon_while PID WATCHED — the highest RssAnon (kB) of process PID, sampled every 20 ms while
# process WATCHED runs. The loop forks nothing: an awk and a sleep per sample took 7 % of the machine's
# samples during a refresh (perf), on the cores the measured load uses, while a baseline runs with no
# sampler. The pause is a read with a timeout from a FIFO nobody writes to.
peak_rss_anon_while() {
    local pid="$1" watched="$2" peak=0 key kb fifo="$WORK_DIR/pause.$BASHPID.fifo"
    rm -f "$fifo"; mkfifo "$fifo"
    exec 8<>"$fifo"
    while kill -0 "$watched" 2>/dev/null; do
        while read -r key kb _; do
            if [ "$key" = RssAnon: ]; then
                if [ "$kb" -gt "$peak" ]; then peak="$kb"; fi
                break
            fi
        done <"/proc/$pid/status" 2>/dev/null || true
        read -r -t 0.02 -u 8 _ || true
    done
    exec 8>&-
    rm -f "$fifo"
    echo "$peak"
}
# broker_jit_cpu_ms — CPU time (user + system) the JVM broker's JIT compiler threads ("C1 CompilerThre",
# "C2 CompilerThre") have used, in ms; "-" on the test broker or if unknown. A JVM that has just
# started compiles the code a new kind of load runs for many loads after the first: on 2 cores that
# compiler competes with the client being measured.
broker_jit_cpu_ms() {
    local t comm ticks sum=0
    if [ "$BENCH_KAFKA" = mock ] || [ -z "$BENCH_BROKER_PID" ] || [ ! -d "/proc/$BENCH_BROKER_PID/task" ]; then
        echo -; return
    fi
    for t in /proc/"$BENCH_BROKER_PID"/task/*; do
        read -r comm <"$t/comm" 2>/dev/null || continue
        case "$comm" in
            "C1 CompilerThre"*|"C2 CompilerThre"*)
                ticks="$(stat_cpu_ticks "$t/stat")" && sum=$((sum + ticks));;
        esac
    done
    echo $((sum * 1000 / $(getconf CLK_TCK)))
}
# cpu_delta A B — B - A of two broker_cpu_ms readings ("-" if unknown).
cpu_delta() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else echo $(($2 - $1)); fi; }

# time_cmd OUTFILE CMD... — run CMD with stdout to OUTFILE, print the wall time in ms (3 decimals),
# the machine's busy CPU time meanwhile in ms and the broker's CPU time meanwhile in ms ("-" if unknown).
time_cmd() {
    local out="$1" t0 t1 c0 c1 b0 b1; shift
    b0=$(broker_cpu_ms)
    c0=$(busy_ms)
    t0=$EPOCHREALTIME
    "$@" >"$out" 2>>"$WORK_DIR/bench-stderr.log" || { log "failed: $*"; tail -n 20 "$WORK_DIR/bench-stderr.log" >&2; exit 1; }
    t1=$EPOCHREALTIME
    c1=$(busy_ms)
    b1=$(broker_cpu_ms)
    awk -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) -v d="$(cpu_delta "$b0" "$b1")" 'BEGIN { printf "%.3f %d %s\n", (b - a) * 1000, c, d }'
}

# ms_or_dash N — "N ms" rounded, or "-" (unknown).
ms_or_dash() { if [ "$1" = - ]; then echo -; else awk -v n="$1" 'BEGIN { printf "%.0f ms\n", n }'; fi; }

# median LIST [DECIMALS] — median of whitespace-separated numbers, with DECIMALS (1) decimals ("-" if
# LIST holds a "-": unknown).
median() {
    case " $1 " in *" - "*) echo -; return ;; esac
    tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g |
        awk -v f="%.${2:-1}f\n" '{ v[NR] = $1 } END { if (NR % 2) printf f, v[(NR + 1) / 2];
                                                    else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench/lib.sh — what every benchmark in bench/ does first. Sourced after test/lib.sh.
# shellcheck shell=bash

# bench_start DB — install what is missing, build the extension and the test broker, and start (with
# cleanup at exit) a 1-broker test cluster and a throwaway PostgreSQL with database DB and the extension.
# PG_EXTRA_CONF, set by the caller, adds postgresql.conf lines.
bench_start() {
    # shellcheck disable=SC2119  # (no arguments: the default package list)
    ensure_packages
    lib_trap
    make_workdir
    build_extension
    build_broker
    start_broker "$WORK_DIR/broker" --brokers 1 >/dev/null
    start_postgres "$WORK_DIR/pg" >/dev/null
    pg_install_extension "$1" >/dev/null
}

# bench_fill_topic TOPIC PARTITIONS RECORDS VALUE_BYTES — create TOPIC, fill it, and check that the
# mock's retention (the newest ~5 MiB per partition) kept every record: all lows 0, highs summing to
# RECORDS. Too few partitions would otherwise silently shrink the data set.
bench_fill_topic() {
    local topic="$1" partitions="$2" records="$3" value_bytes="$4" start wm lows total
    log "topic $topic: $partitions partitions, filling $records records of ~$value_bytes-byte values"
    broker_ctl create "$topic" "$partitions" >/dev/null
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
# time_cmd OUTFILE CMD... — run CMD with stdout to OUTFILE, print the wall time in ms (3 decimals)
# and the machine's busy CPU time meanwhile in ms.
time_cmd() {
    local out="$1" t0 t1 c0 c1; shift
    c0=$(busy_ms)
    t0=$EPOCHREALTIME
    "$@" >"$out" 2>>"$WORK_DIR/bench-stderr.log" || { log "failed: $*"; tail -n 20 "$WORK_DIR/bench-stderr.log" >&2; exit 1; }
    t1=$EPOCHREALTIME
    c1=$(busy_ms)
    awk -v a="$t0" -v b="$t1" -v c=$((c1 - c0)) 'BEGIN { printf "%.3f %d\n", (b - a) * 1000, c }'
}

# median LIST — median of whitespace-separated numbers.
median() {
    tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.1f\n", v[(NR + 1) / 2];
                                  else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

#!/usr/bin/env bash
# Self test of kafka_test_broker, using kcat as an independent Kafka client.
#   bash test/broker/selftest.sh        (exits non-zero on failure)
# KTB=/path/to/kafka_test_broker overrides the binary (default: build it).
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KTB=${KTB:-$HERE/kafka_test_broker}
if [ -z "${KTB_NO_BUILD:-}" ] && [ "$KTB" = "$HERE/kafka_test_broker" ]; then
    make -s -C "$HERE" >/dev/null || { echo "FAIL: build"; exit 1; }
fi
command -v kcat >/dev/null || { echo "FAIL: kcat not installed"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ktb-selftest.XXXXXX")
DIR=$TMP/state
PIDS=()
FAILS=0

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; FAILS=$((FAILS + 1)); }
die()  { echo "FAIL - $*"; echo "broker log:"; cat "$TMP"/*.log 2>/dev/null; exit 1; }
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then pass "$1"; else
        fail "$1"; echo "     expected: $(printf '%q' "$2")"; echo "     actual:   $(printf '%q' "$3")"
    fi
}
ctl() { "$KTB" ctl --state-dir "$DIR" "$@"; }

wait_ready() { # wait_ready DIR PID
    for _ in $(seq 100); do
        [ -f "$1/control" ] && [ -f "$1/bootstrap" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- start
"$KTB" serve --state-dir "$DIR" 2>"$TMP/broker.log" &
BPID=$!
PIDS+=("$BPID")
wait_ready "$DIR" "$BPID" || die "broker not ready within 10 s"
pass "broker ready ($(cat "$DIR/bootstrap"), control port $(cat "$DIR/control"))"
check "pid file" "$BPID" "$(cat "$DIR/pid")"
BS=$(cat "$DIR/bootstrap")

check "ping" "ok pong" "$(ctl ping)"
check "bootstrap" "ok $BS" "$(ctl bootstrap)"
check "create t1 3" "ok" "$(ctl create t1 3)"
check "create duplicate fails" "error" "$(ctl create t1 3 | cut -d' ' -f1)"

# ---------------------------------------------------------------- produce
# partition 0, offsets 0..5
check "produce null key"     "ok 0" "$(ctl produce t1 0 '~' v-null-key 1700000000001)"
check "produce null value"   "ok 1" "$(ctl produce t1 0 k-null-value '~' 1700000000002 -)"
check "produce binary"       "ok 2" "$(ctl produce t1 0 'bin%00%FF' '%00%FF%20x' 1700000000003 -)"
check "produce headers"      "ok 3" "$(ctl produce t1 0 hk hv 1700000000004 'h1=a,h1=b,h2=~,h%203=x%2Cy')"
check "produce empty k/v"    "ok 4" "$(ctl produce t1 0 '""' '""' 1700000000005)"
check "produce literal ~ %"  "ok 5" "$(ctl produce t1 0 '%7E' '100%25' 0)"
check "produce partition 2"  "ok 0" "$(ctl produce t1 2 k2 v2)"
check "produce bad partition" "error" "$(ctl produce t1 7 k v | cut -d' ' -f1)"
check "produce unknown topic" "error" "$(ctl produce nosuch 0 k v | cut -d' ' -f1)"
check "unknown topic not auto-created" "error" "$(ctl watermarks nosuch | cut -d' ' -f1)"
check "bad escape" "error" "$(ctl produce t1 0 k '%4' | cut -d' ' -f1)"
check "usage error" "error usage: produce TOPIC PARTITION KEY VALUE [TIMESTAMP_MS [HEADERS]]" \
    "$(ctl produce t1 0)"
check "unknown command" "error usage:" "$(ctl frobnicate | cut -d' ' -f1-2)"
ctl frobnicate >/dev/null; check "ctl exit status on error" "1" "$?"

# The brief's kcat command, over all partitions.
OUT=$(kcat -C -b "$BS" -t t1 -o beginning -e -q -f '%p %o %k %s %T %h\n' 2>/dev/null |
      tr -d '\000' | LC_ALL=C sort)
check "kcat sees 7 records" "7" "$(printf '%s\n' "$OUT" | wc -l)"
check "kcat null key record" "0 0  v-null-key 1700000000001 " "$(printf '%s\n' "$OUT" | grep '^0 0 ')"
check "kcat headers record" "0 3 hk hv 1700000000004 h1=a,h1=b,h2=NULL,h 3=x,y" \
    "$(printf '%s\n' "$OUT" | grep '^0 3 ')"
check "kcat partition 2 record" "2 0 k2 v2" "$(printf '%s\n' "$OUT" | grep '^2 0 ' | cut -d' ' -f1-4)"

# NULL vs empty: key/value lengths (-1 = NULL).
LENS=$(kcat -C -b "$BS" -t t1 -p 0 -o beginning -e -q -f '%o:%K:%S ' 2>/dev/null)
check "null/empty lengths" "0:-1:10 1:12:-1 2:5:4 3:2:2 4:0:0 5:1:4 " "$LENS"
# Binary bytes round-trip.
BIN=$(kcat -C -b "$BS" -t t1 -p 0 -o 2 -c 1 -q -f '%k|%s' 2>/dev/null | od -An -tx1 | tr -s ' \n' ' ')
check "binary key/value bytes" " 62 69 6e 00 ff 7c 00 ff 20 78 " "$BIN"
check "literal ~ and %" "~|100%" "$(kcat -C -b "$BS" -t t1 -p 0 -o 5 -c 1 -q -f '%k|%s' 2>/dev/null)"
# Null header value is really null (JSON shows null).
check "null header value" '"h2",null' \
    "$(kcat -C -b "$BS" -t t1 -p 0 -o 3 -c 1 -q -J 2>/dev/null | grep -o '"h2",null')"
check "timestamp type CreateTime" '"tstype":"create","ts":1700000000003' \
    "$(kcat -C -b "$BS" -t t1 -p 0 -o 2 -c 1 -q -J 2>/dev/null | grep -o '"tstype":"create","ts":[0-9]*')"
check "watermarks t1" "ok 0:0:6 1:0:0 2:0:1" "$(ctl watermarks t1)"

# ---------------------------------------------------------------- fill
check "create f8 8" "ok" "$(ctl create f8 8)"
FILL=$(ctl fill f8 100000 150)
check "fill 100000" "ok 100000" "$(echo "$FILL" | cut -d' ' -f1-2)"
echo "     (fill reply: $FILL)"
WM=$(ctl watermarks f8)
SUM=$(echo "$WM" | tr ' ' '\n' | awk -F: 'NR > 1 { s += $3 - $2 } END { print s }')
check "watermarks sum" "100000" "$SUM"
check "kcat counts 100000" "100000" \
    "$(kcat -C -b "$BS" -t f8 -o beginning -e -q -f '%o\n' 2>/dev/null | wc -l)"
check "fill record layout" "5 0 key-5 1700000000005 150" \
    "$(kcat -C -b "$BS" -t f8 -p 5 -o beginning -c 1 -q -f '%p %o %k %T %S' 2>/dev/null)"

# ---------------------------------------------------------------- stdin mode
OUT=$(printf '# comment\n\nping\nbogus\nwatermarks t1\n' | ctl -); RC=$?
check "ctl - replies" "ok pong|error usage:|ok 0:0:6 1:0:0 2:0:1" \
    "$(echo "$OUT" | sed 's/^\(error usage:\).*/\1/' | paste -sd'|')"
check "ctl - exit status" "1" "$RC"

# ---------------------------------------------------------------- faults
check "error injection" "ok" "$(ctl error Produce NOT_LEADER_FOR_PARTITION 2)"
check "produce retries through injected errors" "ok 6" "$(ctl produce t1 0 k v)"
check "clear" "ok" "$(ctl clear Produce)"
check "rtt" "ok" "$(ctl rtt 1 0)"
check "down 1" "ok" "$(ctl down 1)"
if kcat -L -b "$BS" -m 2 >/dev/null 2>&1; then fail "kcat -L must fail while broker 1 is down"
else pass "kcat -L fails while broker 1 is down"; fi
check "watermarks fail fast while down" "error" "$(ctl watermarks t1 | cut -d' ' -f1)"
check "up 1" "ok" "$(ctl up 1)"
if kcat -L -b "$BS" -m 5 >/dev/null 2>&1; then pass "kcat -L works after up 1"
else fail "kcat -L after up 1"; fi
check "bad broker id" "error" "$(ctl down 9 | cut -d' ' -f1)"

# ---------------------------------------------------------------- shutdown
check "shutdown" "ok" "$(ctl shutdown)"
RC=0; wait "$BPID" || RC=$?
check "serve exit status after shutdown" "0" "$RC"
check "state files removed" "" "$(ls "$DIR")"

# ---------------------------------------------------------------- preload + SIGTERM
cat >"$TMP/preload.txt" <<'EOF'
# preload
create p 2

produce p 1 k v 1700000000000 a=b
fill p 10 50
EOF
"$KTB" serve --brokers 2 --state-dir "$TMP/s2" --preload "$TMP/preload.txt" 2>"$TMP/broker2.log" &
B2=$!
PIDS+=("$B2")
wait_ready "$TMP/s2" "$B2" || die "preloaded broker not ready"
check "preloaded watermarks" "ok 0:0:5 1:0:6" "$("$KTB" ctl --state-dir "$TMP/s2" watermarks p)"
check "2 brokers in bootstrap" "2" "$(tr ',' '\n' <"$TMP/s2/bootstrap" | wc -l)"
kill -TERM "$B2"
RC=0; wait "$B2" || RC=$?
check "serve exit status after SIGTERM" "0" "$RC"

echo "create p 2
bogus command" >"$TMP/bad.txt"
RC=0; "$KTB" serve --state-dir "$TMP/s3" --preload "$TMP/bad.txt" 2>"$TMP/broker3.log" || RC=$?
check "failing preload exits non-zero" "1" "$RC"
check "failing preload leaves no ready files" "" "$(ls "$TMP/s3")"

echo
if [ "$FAILS" -ne 0 ]; then
    echo "selftest: $FAILS check(s) FAILED"
    exit 1
fi
echo "selftest: all checks passed"

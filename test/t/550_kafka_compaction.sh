#!/usr/bin/env bash
# Compaction, live against a real Apache Kafka (the mock never compacts): a compacted topic (small
# segments, the cleaner eager) is written in rounds that overwrite the same keys, until the log
# cleaner has removed the older values and the offsets have gaps. Then:
#   - a full scan ends promptly and returns exactly kcat's records (the gaps included);
#   - offset slices (kafka_offset ranges and = on kept and on removed offsets) return exactly kcat's
#     records in them, and a slice that ends in a gap or lies wholly in one ends promptly;
#   - a streaming view created now equals the retained records; one created before the cleaner ran
#     keeps what it ingested and the next refresh adds exactly the records after its offsets.
# Everything runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t550
role=t550_analyst
topic="t550_compact_$$"
real_analyst_db "$db" "$role" k
q "CREATE FOREIGN TABLE ft (kafka_partition int, kafka_offset bigint, kafka_key text, kafka_value text) SERVER k OPTIONS (topic '$topic')"
kafka_tool create "$topic" 1 cleanup.policy=compact segment.ms=100 min.cleanable.dirty.ratio=0.01 \
    min.compaction.lag.ms=0 delete.retention.ms=100
# round R writes keys k0..k9 with value R; each round is a segment of its own (segment.ms=100)
round() { local k; for k in $(seq 0 9); do echo "k$k:{\"round\": $1}"; done | real_kcat -P -t "$topic" -p 0 -K :; }
round 1
q "CREATE MATERIALIZED VIEW mv_early AS SELECT kafka_partition, kafka_offset, kafka_key FROM ft"
q "CREATE UNIQUE INDEX ON mv_early (kafka_partition, kafka_offset)"
produced=10
for r in $(seq 2 8); do sleep 0.2; round "$r"; produced=$((produced + 10)); done
# the cleaner runs on closed segments: keep rolling with one more record until it has removed some
ok=0
for _ in $(seq 60); do
    sleep 1
    echo "roll:{\"round\": 0}" | real_kcat -P -t "$topic" -p 0 -K :; produced=$((produced + 1))
    if [ "$(real_pairs "$topic" | wc -l)" -le $((produced - 20)) ]; then ok=1; break; fi
done
[ "$ok" = 1 ] || die "the log cleaner did not compact the topic within 60 s"
# freeze the log for the checks: no more cleaning of records younger than an hour, and wait until two
# reads 2 s apart (the cleaner's back-off is 1 s) agree
kafka_tool config "$topic" min.compaction.lag.ms=3600000
real_pairs "$topic" >"$TEST_TMP/kept.txt"
for _ in $(seq 30); do
    sleep 2
    real_pairs "$topic" >"$TEST_TMP/kept2.txt"
    if cmp -s "$TEST_TMP/kept.txt" "$TEST_TMP/kept2.txt"; then break; fi
    mv "$TEST_TMP/kept2.txt" "$TEST_TMP/kept.txt"
done
cmp -s "$TEST_TMP/kept.txt" "$TEST_TMP/kept2.txt" || die "the compacted log did not settle"
echo "ok - the cleaner compacted the topic: $(wc -l <"$TEST_TMP/kept.txt") of $produced records kept"
high="$(real_kcat -Q -t "$topic:0:-1" | awk '{print $NF}')"

# --- scans ---------------------------------------------------------------------------------------------
t0=$(now_ms)
q "SELECT kafka_partition || ' ' || kafka_offset FROM ft" >"$TEST_TMP/scan.txt"
ms=$(elapsed_ms "$t0")
assert_same_rows "$TEST_TMP/kept.txt" "$TEST_TMP/scan.txt" "a full scan returns exactly the retained records"
[ "$ms" -lt 3000 ] || die "the full scan took $ms ms"
echo "ok - and ends promptly ($ms ms)"
assert_eq "$(real_pairs "$topic" '%p %o %k %s\n' | md5sum)" \
    "$(q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || kafka_key || ' ' || kafka_value FROM ft" | LC_ALL=C sort | md5sum)" \
    "keys and values are the retained ones"

# slices: every [a, b) with a, b among a few offsets, kept and removed ones, and the end
removed="$(comm -13 "$TEST_TMP/kept.txt" <(seq 0 $((high - 1)) | sed 's/^/0 /' | LC_ALL=C sort) | awk '{print $2}' | sort -n)"
[ -n "$removed" ] || die "no offset was removed"
points="0 $(echo "$removed" | head -n 1) $(echo "$removed" | sed -n '5p') $(echo "$removed" | tail -n 1) $((high - 3)) $high"
slices=0
for a in $points; do
    for b in $points; do
        [ "$a" -lt "$b" ] || continue
        awk -v a="$a" -v b="$b" '$2 >= a && $2 < b' "$TEST_TMP/kept.txt" >"$TEST_TMP/slice_expect.txt"
        t0=$(now_ms)
        q "SELECT kafka_partition || ' ' || kafka_offset FROM ft WHERE kafka_offset >= $a AND kafka_offset < $b" >"$TEST_TMP/slice.txt"
        ms=$(elapsed_ms "$t0")
        [ "$ms" -lt 3000 ] || die "slice [$a, $b) took $ms ms"
        diff <(LC_ALL=C sort "$TEST_TMP/slice_expect.txt") <(LC_ALL=C sort "$TEST_TMP/slice.txt") >/dev/null \
            || die "slice [$a, $b): $(diff <(LC_ALL=C sort "$TEST_TMP/slice_expect.txt") <(LC_ALL=C sort "$TEST_TMP/slice.txt") | head -5)"
        slices=$((slices + 1))
    done
done
echo "ok - $slices offset slices, some ending in gaps, return exactly kcat's records, each promptly"
r1="$(echo "$removed" | head -n 1)"
t0=$(now_ms)
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_offset = $r1")" "kafka_offset = a removed offset returns nothing"
[ "$(elapsed_ms "$t0")" -lt 3000 ] || die "the lookup of a removed offset took $(elapsed_ms "$t0") ms"
k1="$(awk 'NR == 1 {print $2}' "$TEST_TMP/kept.txt")"
assert_eq 1 "$(q "SELECT count(*) FROM ft WHERE kafka_offset = $k1")" "kafka_offset = a kept offset returns its record"

# --- streaming views -----------------------------------------------------------------------------------
q "CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_key FROM ft"
q "CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset)"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/mv.txt"
assert_same_rows "$TEST_TMP/kept.txt" "$TEST_TMP/mv.txt" "a streaming view created after compaction holds exactly the retained records"
q "REFRESH MATERIALIZED VIEW mv_early"
{ seq 0 9 | sed 's/^/0 /'; awk '$2 >= 10' "$TEST_TMP/kept.txt"; } >"$TEST_TMP/early_expect.txt"
q "SELECT kafka_partition || ' ' || kafka_offset FROM mv_early" >"$TEST_TMP/early.txt"
assert_same_rows "$TEST_TMP/early_expect.txt" "$TEST_TMP/early.txt" \
    "a view created before keeps its first 10 records and its refresh adds exactly the retained records after them"

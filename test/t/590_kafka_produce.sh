#!/usr/bin/env bash
# INSERT produces to a real Apache Kafka, checked with Kafka's own Java client (KafkaTool consume:
# isolation.level=read_committed, exact bytes) and kcat:
#   - committed rows arrive with exactly their key, value (bytea: binary, empty, null), headers (text,
#     binary, null, duplicates, in order), partition and timestamp; RETURNING's partitions, offsets and
#     timestamps are the consumer's; a SELECT from the same foreign table returns what Java reads;
#   - text and jsonb columns produce their text; INSERT ... SELECT topic to topic and COPY FROM;
#   - a rolled-back transaction, a rolled-back savepoint and a failed PL/pgSQL block are visible
#     nowhere, while the outer transaction's records are (the savepoint's were never even sent);
#   - partitions chosen from the key are the ones Java's default partitioner picks for the same keys;
#   - the xid header names the transaction, which pg_xact_status() says committed;
#   - privileges (INSERT on the table), an unreachable broker fails within connect_timeout, cancel.
# Everything runs as an ordinary role.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"

db=t590
role=t590_analyst
t="t590_main_$$"; t2="t590_copy_$$"; tj="t590_json_$$"; tk="t590_keys_java_$$"; tf="t590_keys_fdw_$$"
real_analyst_db "$db" "$role" k
kafka_tool create "$t" 3 retention.ms=-1     # records from 2001 and 2024: past the default 7 days
kafka_tool create "$t2" 3 retention.ms=-1
kafka_tool create "$tj" 1
kafka_tool create "$tk" 6
kafka_tool create "$tf" 6
cols="kafka_partition int, kafka_offset bigint, kafka_timestamp_type char(1), kafka_timestamp timestamptz,
      kafka_key bytea, kafka_value bytea, kafka_headers jsonb"
q "CREATE FOREIGN TABLE ft ($cols) SERVER k OPTIONS (topic '$t')"
q "CREATE FOREIGN TABLE ft2 ($cols) SERVER k OPTIONS (topic '$t2')"
q "CREATE FOREIGN TABLE fj (kafka_partition int, kafka_offset bigint, kafka_key text, kafka_value jsonb) SERVER k OPTIONS (topic '$tj')"
q "CREATE FOREIGN TABLE fk (kafka_partition int, kafka_offset bigint, kafka_key text, kafka_value text) SERVER k OPTIONS (topic '$tf')"

# Java's lines (KafkaTool consume): "P O TS_MS TYPE KEY VALUE HEADERS", bytes as x<hex>, ~ for null
java_lines() { kafka_tool consume "$1"; }
q "CREATE FUNCTION hx(b bytea) RETURNS text IMMUTABLE LANGUAGE sql AS \$\$ SELECT coalesce('x' || encode(b, 'hex'), '~') \$\$"
q "CREATE FUNCTION hh(h jsonb) RETURNS text IMMUTABLE LANGUAGE sql AS \$\$
     SELECT coalesce(string_agg(hx(convert_to(e->>'key', 'UTF8')) || '=' ||
                                CASE WHEN e ? 'value_base64' THEN hx(decode(e->>'value_base64', 'base64'))
                                     ELSE hx(convert_to(e->>'value', 'UTF8')) END, ',' ORDER BY n), '-')
       FROM jsonb_array_elements(h) WITH ORDINALITY AS x(e, n) \$\$"
q "CREATE FUNCTION ms(ts timestamptz) RETURNS bigint IMMUTABLE LANGUAGE sql AS \$\$ SELECT (extract(epoch FROM ts) * 1000)::bigint \$\$"
# the scan's lines, in the same format
scan_lines() {
    q "SELECT kafka_partition || ' ' || kafka_offset || ' ' || ms(kafka_timestamp) || ' ' || kafka_timestamp_type || ' ' ||
              hx(kafka_key) || ' ' || hx(kafka_value) || ' ' || hh(kafka_headers) FROM $1 ORDER BY kafka_partition, kafka_offset"
}

# --- exact records and RETURNING ------------------------------------------------------------------
q "CREATE TABLE src (id int PRIMARY KEY, k bytea, v bytea, h jsonb, p int, ts timestamptz)"
q "INSERT INTO src VALUES
   (1, '\\x00ff', '\\x6869', '[{\"key\": \"id\", \"value\": \"1\"}]', NULL, '2024-05-01 12:00:00.123+00'),
   (2, '', '', '[{\"key\": \"id\", \"value\": \"2\"}, {\"key\": \"t\", \"value\": \"text\"}, {\"key\": \"b\", \"value_base64\": \"AP8A\"},
                {\"key\": \"n\", \"value\": null}, {\"key\": \"t\", \"value\": \"dup\"}, {\"key\": \"\", \"value\": \"\"}]', 2, NULL),
   (3, NULL, 'x', '[{\"key\": \"id\", \"value\": \"3\"}]', 1, NULL),
   (4, 'abc', NULL, '[{\"key\": \"id\", \"value\": \"4\"}, {\"key\": \"ü\", \"value\": \"ö\"}]', 0, '2001-09-09 01:46:40+00')"
q "INSERT INTO src SELECT i, convert_to('key-' || i, 'UTF8'), convert_to(repeat('v', i * 10), 'UTF8'),
          jsonb_build_array(jsonb_build_object('key', 'id', 'value', i::text)), NULL, timestamptz '2024-01-01 00:00+00' + i * interval '1 s'
     FROM generate_series(5, 40) i"
q "CREATE TABLE ret (id int, p int, o bigint, ts timestamptz, tt text)"
q "WITH ins AS (INSERT INTO ft (kafka_key, kafka_value, kafka_headers, kafka_partition, kafka_timestamp)
                SELECT k, v, h, p, ts FROM src ORDER BY id
                RETURNING kafka.header(kafka_headers, 'id')::int AS id, kafka_partition, kafka_offset, kafka_timestamp, kafka_timestamp_type)
   INSERT INTO ret SELECT * FROM ins"
assert_eq 40 "$(q "SELECT count(*) FROM ret WHERE p IS NOT NULL AND o IS NOT NULL AND tt = 'C'")" "RETURNING gives a partition, an offset and the type C for each of the 40 rows"
assert_eq 0 "$(q "SELECT count(*) FROM src JOIN ret USING (id) WHERE src.p IS DISTINCT FROM ret.p AND src.p IS NOT NULL")" \
    "explicit partitions are kept"
assert_eq 0 "$(q "SELECT count(*) FROM src JOIN ret USING (id) WHERE src.ts IS DISTINCT FROM ret.ts AND src.ts IS NOT NULL")" \
    "explicit timestamps are kept (RETURNING)"
q "SELECT ret.p || ' ' || ret.o || ' ' || ms(ret.ts) || ' C ' || hx(src.k) || ' ' || hx(src.v) || ' ' || hh(src.h)
     FROM src JOIN ret USING (id)" >"$TEST_TMP/expect.txt"
java_lines "$t" >"$TEST_TMP/java.txt"
assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/java.txt" \
    "Java read_committed reads exactly the inserted keys, values, headers, partitions, timestamps at RETURNING's offsets"
scan_lines ft >"$TEST_TMP/scan.txt"
assert_same_rows "$TEST_TMP/java.txt" "$TEST_TMP/scan.txt" "round trip: SELECT from the same foreign table returns what Java reads"
assert_eq '[{"key": "id", "value": "2"}, {"key": "t", "value": "text"}, {"key": "b", "value_base64": "AP8A"}, {"key": "n", "value": null}, {"key": "t", "value": "dup"}, {"key": "", "value": ""}]' \
    "$(q "SELECT kafka_headers FROM ft WHERE kafka.header(kafka_headers, 'id') = '2'")" "headers round-trip in the scan's shape"

# --- text and jsonb columns --------------------------------------------------------------------------
q "INSERT INTO fj (kafka_key, kafka_value) VALUES ('ключ', '{\"a\": [1, 2.50], \"b\": null}'), ('n', NULL)"
assert_eq "0 0 xd0bad0bbd18ed187 x$(printf '{"a": [1, 2.50], "b": null}' | od -An -tx1 | tr -d ' \n')|0 1 x6e ~" \
    "$(java_lines "$tj" | awk '{print $1, $2, $5, $6}' | paste -sd'|')" "text and jsonb columns produce their text (UTF-8), NULL a tombstone"

# --- INSERT ... SELECT topic to topic, COPY FROM -----------------------------------------------------
q "INSERT INTO ft2 (kafka_key, kafka_value, kafka_headers, kafka_partition) SELECT kafka_key, kafka_value, kafka_headers, kafka_partition FROM ft"
java_lines "$t" | awk '{print $1, $5, $6, $7}' >"$TEST_TMP/a.txt"
java_lines "$t2" | awk '{print $1, $5, $6, $7}' >"$TEST_TMP/b.txt"
assert_same_rows "$TEST_TMP/a.txt" "$TEST_TMP/b.txt" "INSERT ... SELECT from topic to topic copies keys, values, headers, partitions"
printf 'copy-%s\t{"n": %s}\n' 1 1 2 2 3 3 | psql -X -v ON_ERROR_STOP=1 -q -U "$role" -d "$db" \
    -c "\\copy fk (kafka_key, kafka_value) FROM stdin"
assert_eq 'copy-1 {"n": 1}|copy-2 {"n": 2}|copy-3 {"n": 3}' \
    "$(real_kcat -C -t "$tf" -o beginning -e -q -X isolation.level=read_committed -f '%k %s\n' | sort | paste -sd'|')" "COPY FROM produces its rows"

# --- rollback, savepoints ----------------------------------------------------------------------------
before="$(java_lines "$t" | wc -l)"
q "BEGIN; INSERT INTO ft (kafka_key, kafka_value) VALUES ('rb', 'rolled back'); ROLLBACK;" >/dev/null
psql -X -q -U "$role" -d "$db" >/dev/null 2>&1 <<'SQL' || true
BEGIN;
INSERT INTO ft (kafka_key, kafka_value) VALUES ('outer1', 'kept');
SAVEPOINT a;
INSERT INTO ft (kafka_key, kafka_value) SELECT 'sp-' || g, 'savepoint rolled back' FROM generate_series(1, 1000) g;
SAVEPOINT b;
INSERT INTO ft (kafka_key, kafka_value) VALUES ('sp-inner', 'rolled back with a');
RELEASE b;
ROLLBACK TO a;
SAVEPOINT c;
INSERT INTO ft (kafka_key, kafka_value, kafka_partition) VALUES ('released', 'kept', 1);
RELEASE c;
DO $$BEGIN
  INSERT INTO ft (kafka_key, kafka_value) VALUES ('plpgsql', 'rolled back by the exception');
  RAISE EXCEPTION 'boom';
EXCEPTION WHEN raise_exception THEN NULL;
END$$;
INSERT INTO ft (kafka_key, kafka_value, kafka_partition) VALUES ('outer2', 'kept', 1);
COMMIT;
SQL
java_lines "$t" >"$TEST_TMP/java.txt"
assert_eq $((before + 3)) "$(wc -l <"$TEST_TMP/java.txt")" "3 records more: the transaction's outer and released ones"
assert_eq "x6f7574657231 x6f7574657232 x72656c6561736564" \
    "$(grep -E ' x(6f7574657231|72656c6561736564|6f7574657232) ' "$TEST_TMP/java.txt" | awk '{print $5}' | sort | paste -sd' ')" \
    "outer1, released and outer2 are visible"
assert_eq "x72656c6561736564 x6f7574657232" \
    "$(grep -E '^1 .* x(72656c6561736564|6f7574657232) ' "$TEST_TMP/java.txt" | awk '{print $5}' | paste -sd' ')" \
    "the released savepoint's record precedes the later outer one in partition 1"
real_kcat -C -t "$t" -o beginning -e -q -X isolation.level=read_uncommitted -f '%k\n' >"$TEST_TMP/uncommitted.txt"
assert_eq 0 "$(grep -cE '^(sp-|plpgsql)' "$TEST_TMP/uncommitted.txt" || true)" \
    "rolled-back savepoints' and blocks' records were never sent: not even read_uncommitted sees them"
assert_eq 1 "$(grep -cx 'rb' "$TEST_TMP/uncommitted.txt" || true)" "the rolled-back transaction's record is in the log (read_uncommitted) ..."
assert_eq 0 "$(q "SELECT count(*) FROM ft WHERE kafka_key IN ('rb', 'sp-1', 'sp-inner', 'plpgsql')")" "... and visible nowhere (scan, Java)"
assert_eq 0 "$(grep -c ' x7262 ' "$TEST_TMP/java.txt" || true)" "Java read_committed does not see it"

# a large INSERT inside a savepoint goes through the temporary file, then to Kafka at RELEASE
q "BEGIN; SAVEPOINT s; INSERT INTO ft2 (kafka_key, kafka_value) SELECT convert_to('big-' || g, 'UTF8'), convert_to(repeat('b', 200), 'UTF8') FROM generate_series(1, 100000) g; RELEASE s; COMMIT;"
assert_eq 100000 "$(real_kcat -C -t "$t2" -o beginning -e -q -X isolation.level=read_committed -f '%k\n' | grep -c '^big-')" \
    "100,000 records inserted inside a savepoint arrive after RELEASE and COMMIT"

# --- murmur2: the partitions Java's default partitioner picks -----------------------------------------
{ for i in $(seq 1 300); do echo "key-$i"; done; echo "ключ-ü"; echo "a"; echo "ab"; echo "abc"; echo "x y"; } >"$TEST_TMP/keys.txt"
kafka_tool keyed "$tk" <"$TEST_TMP/keys.txt" | sort >"$TEST_TMP/java_parts.txt"
q "CREATE TABLE keys (k text)"
psql -X -q -U "$role" -d "$db" -c "\\copy keys FROM '$TEST_TMP/keys.txt'"
q "WITH ins AS (INSERT INTO fk (kafka_key, kafka_value) SELECT k, k FROM keys RETURNING kafka_key, kafka_partition) SELECT kafka_key || ' ' || kafka_partition FROM ins" \
    | sort >"$TEST_TMP/fdw_parts.txt"
assert_eq "$(wc -l <"$TEST_TMP/keys.txt")" "$(wc -l <"$TEST_TMP/java_parts.txt")" "Java partitioned all keys"
assert_same_rows "$TEST_TMP/java_parts.txt" "$TEST_TMP/fdw_parts.txt" "keyed records land in the partitions Java's default partitioner picks"
assert_eq 6 "$(awk '{print $NF}' "$TEST_TMP/java_parts.txt" | sort -u | wc -l)" "... spread over all 6 partitions"

# --- the xid header -----------------------------------------------------------------------------------
q "ALTER FOREIGN TABLE ft OPTIONS (ADD xid_header 'pg_xid')"
xid="$(q "BEGIN; INSERT INTO ft (kafka_key, kafka_value) VALUES ('with-xid', 'v'); SELECT txid_current(); COMMIT;")"
hdr="$(real_kcat -C -t "$t" -o beginning -e -q -X isolation.level=read_committed -f '%k %h\n' | awk '$1 == "with-xid" {print $2}')"
sysid="$(q "SELECT system_identifier FROM pg_control_system()")"
assert_eq "pg_xid=$sysid:$xid" "$hdr" "the record carries pg_xid=<system identifier>:<transaction id>"
assert_eq committed "$(q "SELECT pg_xact_status('${hdr#*:}'::xid8)")" "pg_xact_status() of the header's transaction id: committed"

# the window: a serialization failure detected at commit, after the Kafka commit (README, Producing).
# Session B's write skew with session A dooms B when A commits first; B's COMMIT then fails after its
# Kafka transaction committed: the record is visible, and its xid header says the transaction aborted.
q "CREATE TABLE acct (id int PRIMARY KEY, bal int); INSERT INTO acct VALUES (1, 10), (2, 10)"
for s_ in a b; do
    mkfifo "$TEST_TMP/$s_.in"
    psql -X -qAt -U "$role" -d "$db" <"$TEST_TMP/$s_.in" >"$TEST_TMP/$s_.out" 2>&1 &
done
exec 4>"$TEST_TMP/a.in" 5>"$TEST_TMP/b.in"
m=0
# sess FD SQL — run SQL in session FD (4: a, 5: b) and wait until it is done
sess() {
    m=$((m + 1))
    printf '%s\n\\echo mark-%s\n' "$2" "$m" >&"$1"
    wait_for "grep -qx 'mark-$m' '$TEST_TMP/a.out' '$TEST_TMP/b.out'" 30 \
        || { cat "$TEST_TMP/a.out" "$TEST_TMP/b.out" >&2; die "session $1 did not carry out: $2"; }
}
sess 4 "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 'a-sum:' || sum(bal) FROM acct;"
sess 5 "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 'b-sum:' || sum(bal) FROM acct;"
sess 4 "UPDATE acct SET bal = bal - 20 WHERE id = 1;"
sess 5 "UPDATE acct SET bal = bal - 20 WHERE id = 2;"
sess 5 "INSERT INTO ft (kafka_key, kafka_value) VALUES ('window', 'v'); SELECT 'b-xid:' || txid_current();"
sess 4 "COMMIT;"
sess 5 "COMMIT;"
exec 4>&- 5>&-
assert_contains "$(cat "$TEST_TMP/b.out")" "could not serialize access" "session b's COMMIT fails with a serialization failure (after pre-commit)"
bxid="$(sed -n 's/^b-xid://p' "$TEST_TMP/b.out")"
assert_eq aborted "$(q "SELECT pg_xact_status('$bxid'::xid8)")" "PostgreSQL rolled b back"
hdr="$(real_kcat -C -t "$t" -o beginning -e -q -X isolation.level=read_committed -f '%k %h\n' | awk '$1 == "window" {print $2}')"
assert_eq "pg_xid=$sysid:$bxid" "$hdr" "the window: b's record is visible to read_committed, with b's transaction id in its header"
assert_eq aborted "$(q "SELECT pg_xact_status('${hdr#*:}'::xid8)")" "a consumer detects it: pg_xact_status() of the header's id says aborted"
q "ALTER FOREIGN TABLE ft OPTIONS (DROP xid_header)"

# --- errors and privileges -----------------------------------------------------------------------------
out="$(q_out "BEGIN; INSERT INTO ft (kafka_value) VALUES ('p'); PREPARE TRANSACTION 'x';" || true)"
assert_contains "$out" "cannot PREPARE a transaction that inserted into a Kafka foreign table" "PREPARE TRANSACTION is refused"
out="$(q_out "INSERT INTO ft (kafka_value, kafka_partition) VALUES ('p', 7)" || true)"
assert_contains "$out" "partition 7 of Kafka topic \"$t\" does not exist" "a partition the topic lacks is an error"
q "CREATE FOREIGN TABLE fnone (kafka_value text) SERVER k OPTIONS (topic 't590_no_such_topic')"
out="$(q_out "INSERT INTO fnone VALUES ('x')" || true)"
assert_contains "$out" 'Kafka topic "t590_no_such_topic" does not exist' "a topic that does not exist is an error (not created)"
assert_eq 0 "$(real_kcat -L 2>/dev/null | grep -c t590_no_such_topic || true)" "... and it was not created"
psql_q -d "$db" -c "CREATE ROLE t590_other LOGIN" -c "CREATE USER MAPPING FOR t590_other SERVER k" -c "GRANT USAGE ON SCHEMA kafka TO t590_other"
out="$(psql -X -qAt -U t590_other -d "$db" -c "INSERT INTO ft (kafka_value) VALUES ('denied')" 2>&1 || true)"
assert_contains "$out" "permission denied for foreign table ft" "INSERT needs the INSERT privilege"
q "GRANT INSERT ON ft TO t590_other"
psql -X -qAt -v ON_ERROR_STOP=1 -U t590_other -d "$db" -c "INSERT INTO ft (kafka_key, kafka_value) VALUES ('granted', 'v')"
assert_eq 1 "$(real_kcat -C -t "$t" -o beginning -e -q -X isolation.level=read_committed -f '%k\n' | grep -cx granted)" "with INSERT granted, another role produces"
out="$(psql -X -qAt -U t590_other -d "$db" -c "SELECT count(*) FROM ft" 2>&1 || true)"
assert_contains "$out" "permission denied for foreign table ft" "INSERT does not give SELECT"

# --- unreachable brokers, cancel ------------------------------------------------------------------------
q "CREATE SERVER dead FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '127.0.0.1:1')"
q "CREATE USER MAPPING FOR $role SERVER dead"
q "CREATE FOREIGN TABLE fdead (kafka_value text) SERVER dead OPTIONS (topic 'x')"
t0=$(now_ms)
out="$(q_out "SET kafka_fdw.connect_timeout = '2s'; INSERT INTO fdead VALUES ('x')" || true)"
ms=$(elapsed_ms "$t0")
assert_contains "$out" "did not answer within 2000 ms" "an unreachable broker fails the INSERT"
[ "$ms" -lt 5000 ] || die "it took $ms ms with connect_timeout 2s"
echo "ok - within connect_timeout ($ms ms)"
t0=$(now_ms)
out="$(q_out "SET kafka_fdw.connect_timeout = '60s'; SET statement_timeout = '700ms'; INSERT INTO fdead VALUES ('x')" || true)"
ms=$(elapsed_ms "$t0")
assert_contains "$out" "canceling statement due to statement timeout" "statement_timeout cancels an INSERT waiting for brokers"
[ "$ms" -lt 2500 ] || die "the cancel took $ms ms"
echo "ok - cancelled within $ms ms"
assert_eq 1 "$(q "INSERT INTO ft (kafka_key, kafka_value) VALUES ('after', 'v') RETURNING 1")" "the session produces again afterwards"

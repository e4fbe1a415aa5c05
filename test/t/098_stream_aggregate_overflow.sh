#!/usr/bin/env bash
# Integer overflow in the merge of an aggregating streaming view is an error, never a wrap: the count
# behind an avg (kafka.aggregate_state_<oid>, bigint) is set by the superuser to bigint's maximum, the
# way 2^63 records would leave it; the next refresh that folds records into that group fails with
# "bigint out of range" and changes neither the view nor its offsets; other groups are not touched.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

db=t098
topic="t098_$$"
pg_install_extension "$db" >/dev/null
broker_ctl create "$topic" 1 >/dev/null
q() { psql_q -d "$db" -c "$1"; }
put() { printf '%s\n' "$@" | kcat -P -b "$KAFKA_BROKERS" -t "$topic" -p 0; }
put '{"g":"a","n":5}' '{"g":"a","n":7}' '{"g":"b","n":1}'
psql_q -d "$db" >/dev/null <<SQL
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE USER MAPPING FOR CURRENT_USER SERVER k;
CREATE FOREIGN TABLE t (kafka_partition int, kafka_offset bigint, kafka_value jsonb) SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW agg AS
SELECT kafka_value->>'g' AS g, count(*) AS c, avg((kafka_value->>'n')::int) AS a
  FROM t GROUP BY kafka_value->>'g';
SQL
assert_eq "a|2|6.0000000000000000
b|1|1.00000000000000000000" "$(q "SELECT * FROM agg ORDER BY g")" "the view after the first refresh"
side="$(q "SELECT c.oid::regclass FROM pg_class c WHERE c.relname = 'aggregate_state_' || 'agg'::regclass::oid")"
[ -n "$side" ] || die "no state table for the view's avg"
cols="$(q "SELECT string_agg(quote_ident(attname) || ' = 9223372036854775807', ', ') FROM pg_attribute
             WHERE attrelid = '$side'::regclass AND attname LIKE 'count%'")"
[ -n "$cols" ] || die "the state table $side has no count column"
q "UPDATE $side SET $cols WHERE k1 = 'a'" >/dev/null
before="$(q "SELECT string_agg(partition_id || ':' || next_offset, ' ') FROM kafka.stream_offsets WHERE mv_oid = 'agg'::regclass")"
put '{"g":"a","n":1}' '{"g":"b","n":3}'
out="$(psql -X -qAt -d "$db" -v ON_ERROR_STOP=1 -c "REFRESH MATERIALIZED VIEW agg" 2>&1)" && {
    echo "not ok - the refresh succeeded past bigint's maximum: $(q "SELECT * FROM agg ORDER BY g")"; exit 1; }
echo "#   $out" | head -3
assert_contains "$out" "bigint out of range" "the merge past bigint's maximum is an error"
assert_eq "a|2|6.0000000000000000
b|1|1.00000000000000000000" "$(q "SELECT * FROM agg ORDER BY g")" "the failed refresh changed no group"
assert_eq "$before" "$(q "SELECT string_agg(partition_id || ':' || next_offset, ' ') FROM kafka.stream_offsets WHERE mv_oid = 'agg'::regclass")" \
    "... and no offset"
echo "ok - t/098 done"

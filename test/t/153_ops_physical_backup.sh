#!/usr/bin/env bash
# Physical backups keep a streaming view's rows and offsets together.  A primary with WAL archiving
# ingests with auto refresh while a producer writes:
#   1. pg_basebackup taken in the middle of the ingestion, started as a server of its own: its view
#      holds, in every partition, exactly the offsets below its stored next offset (rows and offsets
#      of the same commits), and its own worker then brings it to the whole topic, exactly once.
#   2. Point-in-time recovery of that base backup with the archived WAL up to a restore point: the
#      view and its offsets are exactly those of the primary at that point; its next refresh is
#      exact (kcat set equality, unique index).
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"
lib_trap

topic="t153_$$"
broker_ctl create "$topic" 3 >/dev/null
archive="$TEST_TMP/archive"
mkdir -p "$archive"; chmod 777 "$archive"
PG_EXTRA_CONF="wal_level = replica
archive_mode = on
archive_command = 'cp %p $archive/%f'
kafka_fdw.auto_refresh_interval = 50" start_postgres "$TEST_TMP/primary" >/dev/null 2>&1 \
    || die "the primary did not start"
primary_port="$PGPORT"
pg_install_extension t153 >/dev/null
qs() { psql_q -p "$1" -d t153 -c "$2"; }
psql_q -d t153 <<SQL >/dev/null
CREATE SERVER k FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$KAFKA_BROKERS');
CREATE FOREIGN TABLE src (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER k OPTIONS (topic '$topic');
CREATE MATERIALIZED VIEW mv AS SELECT kafka_partition, kafka_offset, kafka_value FROM src;
CREATE UNIQUE INDEX ON mv (kafka_partition, kafka_offset);
SELECT kafka.set_auto_refresh('mv', true);
SQL
( while [ ! -e "$TEST_TMP/stop" ]; do broker_ctl fill "$topic" 100 100 >/dev/null; sleep 0.1; done ) &
producer=$!
track_pid "$producer"
wait_for "[ \"\$(qs $primary_port 'SELECT count(*) FROM mv')\" -gt 500 ]" 30 || die "the primary does not ingest"

# the server a backup directory becomes: own port and socket, archive restore if asked
start_copy() {   # DIR [RECOVERY CONF LINES: then recovery.signal too]
    local dir="$1" port
    port="$(free_port)"
    printf "# --- added by t/153\nport = %s\nunix_socket_directories = '%s'\narchive_mode = off\n%s\n" \
        "$port" "$dir/sock" "${2:-}" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    as_pg mkdir -p "$dir/sock"
    [ -z "${2:-}" ] || as_pg touch "$dir/data/recovery.signal"
    _LIB_PG_DIRS+=("$dir")
    as_pg "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 start >/dev/null \
        || { tail -n 30 "$dir/postgresql.log"; die "$dir did not start"; }
    COPY_PORT="$port"
}
# every partition of the view holds exactly the offsets below its stored next offset
consistent() {   # PORT
    qs "$1" "SELECT count(*) FROM kafka.stream_offsets o
              WHERE (SELECT count(*) FROM mv WHERE kafka_partition = o.partition_id) <> o.next_offset
                 OR (SELECT coalesce(max(kafka_offset), -1) FROM mv WHERE kafka_partition = o.partition_id) <> o.next_offset - 1"
}

# --- 1. a base backup taken during the ingestion ----------------------------------------------------
mkdir -p "$TEST_TMP/backup"; chown postgres: "$TEST_TMP/backup"
as_pg "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$TEST_TMP/backup/data" -X stream -c fast \
    >"$TEST_TMP/basebackup.log" 2>&1 || { cat "$TEST_TMP/basebackup.log"; die "pg_basebackup failed"; }
echo "ok - pg_basebackup taken while the primary ingested ($(qs "$primary_port" 'SELECT count(*) FROM mv') rows by then)"
as_pg cp -a "$TEST_TMP/backup" "$TEST_TMP/pitr"

# --- a restore point: auto refresh off, one manual refresh, the primary's view recorded ------------
qs "$primary_port" "SELECT kafka.set_auto_refresh('mv', false)" >/dev/null
wait_for "[ \"\$(qs $primary_port \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kafka_fdw auto refresh'\")\" = 0 ]" 30 \
    || die "the worker did not leave"
qs "$primary_port" 'REFRESH MATERIALIZED VIEW mv'
qs "$primary_port" "SELECT kafka_partition || ' ' || kafka_offset FROM mv" | LC_ALL=C sort >"$TEST_TMP/at_point.txt"
offsets_at_point="$(qs "$primary_port" "SELECT string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id) FROM kafka.stream_offsets")"
qs "$primary_port" "SELECT pg_create_restore_point('t153')" >/dev/null
qs "$primary_port" 'REFRESH MATERIALIZED VIEW mv'       # the primary moves on past the point
qs "$primary_port" 'SELECT pg_switch_wal()' >/dev/null
wait_for "[ -n \"\$(ls '$archive')\" ] && [ \"\$(qs $primary_port 'SELECT last_archived_wal FROM pg_stat_archiver')\" = \"\$(qs $primary_port 'SELECT pg_walfile_name(pg_current_wal_lsn() - 1)')\" ]" 30 \
    || die "the WAL was not archived"
echo "ok - restore point t153 with the view at $(wc -l <"$TEST_TMP/at_point.txt") rows, offsets $offsets_at_point"

start_copy "$TEST_TMP/backup"
port_backup="$COPY_PORT"
assert_eq f "$(qs "$port_backup" 'SELECT pg_is_in_recovery()')" "the base backup runs as a server of its own"
assert_eq 0 "$(consistent "$port_backup")" "its view holds exactly the offsets below its stored next offsets, in every partition"

start_copy "$TEST_TMP/pitr" "restore_command = 'cp $archive/%f %p'
recovery_target_name = 't153'
recovery_target_action = 'promote'"
port_pitr="$COPY_PORT"
wait_for "[ \"\$(qs $port_pitr 'SELECT pg_is_in_recovery()')\" = f ]" 60 || die "the PITR did not finish"
qs "$port_pitr" "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/pitr.txt"
assert_same_rows "$TEST_TMP/at_point.txt" "$TEST_TMP/pitr.txt" "PITR to the restore point: the view is the primary's at that point"
assert_eq "$offsets_at_point" "$(qs "$port_pitr" "SELECT string_agg(partition_id || ':' || next_offset, ' ' ORDER BY partition_id) FROM kafka.stream_offsets")" \
    "and so are its offsets"

# --- both copies catch up with the whole topic, exactly once ----------------------------------------
touch "$TEST_TMP/stop"
wait "$producer" 2>/dev/null || true
qs "$port_pitr" 'REFRESH MATERIALIZED VIEW mv'
total="$(kcat_count "$topic")"
wait_for "[ \"\$(qs $port_backup 'SELECT count(*) FROM mv')\" = $total ]" 60 \
    || die "the base backup's worker did not catch up: $(qs "$port_backup" 'SELECT count(*) FROM mv') of $total"
kcat -C -b "$KAFKA_BROKERS" -t "$topic" -o beginning -e -q -f '%p %o\n' | LC_ALL=C sort >"$TEST_TMP/expect.txt"
for port in "$port_backup" "$port_pitr"; do
    name=backup; [ "$port" = "$port_backup" ] || name=PITR
    qs "$port" "SELECT kafka_partition || ' ' || kafka_offset FROM mv" >"$TEST_TMP/view_$name.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view_$name.txt" "$name: the view equals the topic (kcat), exactly once"
done

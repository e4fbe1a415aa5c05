#!/usr/bin/env bash
# Smoke test of the harness plumbing: the test broker answers, kcat sees its metadata, psql connects.
set -euo pipefail
. "$REPO_ROOT/test/lib.sh"

broker_ctl ping >/dev/null || die "broker at $BROKER_STATE does not answer ping"
echo "ok - broker answers ping"

meta="$(kcat -L -b "$KAFKA_BROKERS" -m 10 2>&1)" || die "kcat -L failed: $meta"
assert_contains "$meta" "brokers:" "kcat lists cluster metadata"

assert_eq 1 "$(psql_q -d postgres -c 'SELECT 1')" "psql connects and runs SELECT 1"
assert_eq postgres "$(psql_q -d postgres -c 'SELECT current_user')" "connected as postgres"

# shellcheck disable=SC2016
pm_pid="$(psql_q -d postgres -c 'SELECT pid FROM pg_stat_activity WHERE backend_type = $$checkpointer$$')"
assert_eq postgres "$(ps -o user= -p "$pm_pid" | tr -d ' ')" "the server runs as the unprivileged user postgres"

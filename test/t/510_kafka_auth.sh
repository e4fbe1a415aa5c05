#!/usr/bin/env bash
# Every authentication mode, live against a real Apache Kafka (test/kafka/kafka.sh): none, tls, mtls
# (encrypted client key, ssl_key_password), sasl_plain and sasl_scram_sha_256/512 over TLS and over plain
# TCP (tls 'false'). For each: a scan and a streaming refresh, checked against kcat on the PLAINTEXT
# listener by (partition, offset) and a unique index on the view. The analyst is an ordinary role; only
# the servers with file options are made by a superuser (they make the database server read files).
# Then the failures: a wrong password, an untrusted CA, a certificate for another host, a missing client
# certificate: each an error with an SQLSTATE and a hint, and no part of any secret in the message or
# the server log, raised as soon as the handshake or the authentication fails: in less than half of
# kafka_fdw.connect_timeout (6 s here; before kafka_fdw stopped at the first refusal each took the
# whole timeout; now about 0.3 s for TLS and 0.8 s for SASL).
#
# SCRAM: librdkafka before 2.6.1 (Debian 12 has 2.0.2) appends the client's nonce once more in its
# SCRAM client-final message (librdkafka PR 4895, fixed in 2.6.1). Apache Kafka 3.8.1 and 3.9 accept
# that (their check of the final nonce is lenient: endsWith), Kafka 4.0 and later require the exact
# nonce (CVE-2024-56128) and refuse it: the broker logs "Authentication failed during
# authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256", as for a wrong
# password, its SCRAM server (at DEBUG) shows the exchange failing at RECEIVE_CLIENT_FINAL_MESSAGE,
# and librdkafka reports the broker's text. With such a librdkafka the SCRAM modes are checked to
# fail fast with 28000 and a hint naming librdkafka 2.6.1, while Kafka's own Java client proves the
# SCRAM users and passwords are right.
set -euo pipefail
. "$REAL_KAFKA_STATE/env"
. "$REPO_ROOT/test/lib.sh"
[ -n "${REAL_KAFKA_SSL_BROKERS:-}" ] || { echo "no TLS/SASL listeners of $REAL_KAFKA_BROKERS described (REAL_KAFKA_SSL_BROKERS ...)"; exit 77; }

db=t510
role=t510_analyst
topic="t510_auth_$$"
timeout_ms=6000
real_analyst_db "$db" "$role"
psql_q -d "$db" -c "ALTER ROLE $role SET kafka_fdw.connect_timeout = $timeout_ms"
# q_err SQL — run SQL as the analyst, expecting an error; print psql's verbose output (SQLSTATE, hint)
q_err() { psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -qAt -U "$role" -d "$db" -c "$1" 2>&1; }
# assert_fast NAME MS — a refusal is an error at once: in less than half of connect_timeout (the time
# includes psql's start and the handle's creation)
assert_fast() {
    [ "$2" -lt $((timeout_ms / 2)) ] || die "$1: the error took $2 ms, not under half of connect_timeout ($timeout_ms ms)"
    echo "ok - $1: the error came after $2 ms (connect_timeout $timeout_ms ms)"
}

kafka_tool create "$topic" 2
produce() { real_produce "$1" "$topic" "$2"; }
produce 10 0; produce 7 1

# check_mode NAME — scan ft_NAME and refresh mv_NAME (created here) against kcat
check_mode() {
    local m="$1"
    real_pairs "$topic" >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM ft_$m" >"$TEST_TMP/scan.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/scan.txt" "$m: a scan returns exactly the topic's records"
    q "CREATE MATERIALIZED VIEW mv_$m AS SELECT kafka_partition, kafka_offset FROM ft_$m"
    q "CREATE UNIQUE INDEX ON mv_$m (kafka_partition, kafka_offset)"
    produce 3 0; produce 2 1
    q "REFRESH MATERIALIZED VIEW mv_$m"
    real_pairs "$topic" >"$TEST_TMP/expect.txt"
    q "SELECT kafka_partition || ' ' || kafka_offset FROM mv_$m" >"$TEST_TMP/view.txt"
    assert_same_rows "$TEST_TMP/expect.txt" "$TEST_TMP/view.txt" "$m: a streaming refresh ingests exactly the new records"
}

# server NAME AUTH BROKERS [SERVER OPTIONS] — a server made by the superuser, usable by the analyst
server() {
    local name="$1" auth="$2" brokers="$3" extra="${4:-}"
    psql_q -d "$db" -c "CREATE SERVER $name FOREIGN DATA WRAPPER kafka_fdw OPTIONS (brokers '$brokers', authentication '$auth'$extra)" \
        -c "GRANT USAGE ON FOREIGN SERVER $name TO $role"
    q "CREATE FOREIGN TABLE ft_$name (kafka_partition int, kafka_offset bigint, kafka_value bytea) SERVER $name OPTIONS (topic '$topic')"
}
ca=", ssl_ca_file '$REAL_KAFKA_CA'"
client=", ssl_certificate_file '$REAL_KAFKA_CLIENT_CERT', ssl_key_file '$REAL_KAFKA_CLIENT_KEY'"

# --- the modes that work -----------------------------------------------------------------------------
server none none "$REAL_KAFKA_BROKERS"
q "CREATE USER MAPPING FOR $role SERVER none"
check_mode none

server tls tls "$REAL_KAFKA_SSL_BROKERS" "$ca"
q "CREATE USER MAPPING FOR $role SERVER tls"
check_mode tls

server mtls mtls "$REAL_KAFKA_MTLS_BROKERS" "$ca$client"
q "CREATE USER MAPPING FOR $role SERVER mtls OPTIONS (ssl_key_password '$REAL_KAFKA_CLIENT_KEY_PASSWORD')"
check_mode mtls

server plain_tls sasl_plain "$REAL_KAFKA_SASL_SSL_BROKERS" "$ca"
q "CREATE USER MAPPING FOR $role SERVER plain_tls OPTIONS (username '$REAL_KAFKA_PLAIN_USER', password '$REAL_KAFKA_PLAIN_PASSWORD')"
check_mode plain_tls

server plain_tcp sasl_plain "$REAL_KAFKA_SASL_PLAINTEXT_BROKERS" ", tls 'false'"
q "CREATE USER MAPPING FOR $role SERVER plain_tcp OPTIONS (username '$REAL_KAFKA_PLAIN_USER', password '$REAL_KAFKA_PLAIN_PASSWORD')"
check_mode plain_tcp

# SCRAM: the users exist and work with Kafka's own client ...
for bits in 256 512; do
    u="REAL_KAFKA_SCRAM${bits}_USER"; p="REAL_KAFKA_SCRAM${bits}_PASSWORD"
    cat >"$TEST_TMP/scram$bits.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-$bits
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${!u}" password="${!p}";
EOF
    listed="$(bash "$REPO_ROOT/test/kafka/kafka.sh" class "$REAL_KAFKA_STATE" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$REAL_KAFKA_SASL_PLAINTEXT_BROKERS" --command-config "$TEST_TMP/scram$bits.properties" --list)"
    assert_contains "$listed" "$topic" "SCRAM-SHA-$bits: Kafka's Java client authenticates as ${!u} and lists the topic"
done
# ... and kafka_fdw either works with them or, with a librdkafka before 2.6.1, says why it cannot
rdk="$(pkg-config --modversion rdkafka)"
scram_works=0; dpkg --compare-versions "$rdk" ge 2.6.1 && scram_works=1
for bits in 256 512; do
    u="REAL_KAFKA_SCRAM${bits}_USER"; p="REAL_KAFKA_SCRAM${bits}_PASSWORD"
    for via in tls tcp; do
        name="scram${bits}_$via"
        if [ "$via" = tls ]; then server "$name" "sasl_scram_sha_$bits" "$REAL_KAFKA_SASL_SSL_BROKERS" "$ca"
        else server "$name" "sasl_scram_sha_$bits" "$REAL_KAFKA_SASL_PLAINTEXT_BROKERS" ", tls 'false'"; fi
        q "CREATE USER MAPPING FOR $role SERVER $name OPTIONS (username '${!u}', password '${!p}')"
        if [ "$scram_works" = 1 ]; then
            check_mode "$name"
        else
            t0=$(now_ms)
            out="$(q_err "SELECT count(*) FROM ft_$name")" && die "$name: SCRAM succeeded with librdkafka $rdk"
            ms=$(elapsed_ms "$t0")
            echo "$out" | sed 's/^/#   /'
            assert_contains "$out" "ERROR:  28000: could not authenticate to Kafka brokers" "$name: librdkafka $rdk fails SCRAM with Kafka 4 as an authentication error (28000)"
            assert_contains "$out" "invalid credentials with SASL mechanism SCRAM-SHA-$bits" "$name: the detail is the broker's refusal"
            assert_contains "$out" "HINT:  If the username and password in the user mapping are right: librdkafka $rdk cannot authenticate with SCRAM to Apache Kafka 4.0 or later; librdkafka 2.6.1 and later can." \
                "$name: and the hint names the librdkafka version that can"
            assert_fast "$name" "$ms"
        fi
    done
done

# The broker's side of those refusals (its SCRAM server logs its states at DEBUG, see
# test/kafka/log4j2.properties): the user was known and the server-first message sent; the exchange
# failed on the client-final message, which carries the nonce.
klog="${REAL_KAFKA_STATE}/node1/kafka.log"
if [ "$scram_works" = 0 ] && [ -f "$klog" ]; then
    for bits in 256 512; do
        states="$(grep -o "SASL/SCRAM_SHA_$bits server state to [A-Z_]*" "$klog" | awk '{print $NF}' | uniq | paste -sd' ')"
        assert_contains "$states" "RECEIVE_CLIENT_FINAL_MESSAGE FAILED" "SCRAM-SHA-$bits: the broker failed the login at the client-final message"
    done
fi

# --- failures -------------------------------------------------------------------------------------------
# expect_failure NAME SQLSTATE TEXT — a scan of ft_NAME fails with SQLSTATE, a message or detail
# containing TEXT and a hint, in less than half of connect_timeout (assert_fast), naming no secret
secrets=("$REAL_KAFKA_PLAIN_PASSWORD" "$REAL_KAFKA_SCRAM256_PASSWORD" "$REAL_KAFKA_SCRAM512_PASSWORD"
         "$REAL_KAFKA_CLIENT_KEY_PASSWORD" wrong-password-t510)
no_secret_in() {
    local s
    for s in "${secrets[@]}"; do
        if [[ "$1" == *"$s"* ]] || [[ "$1" == *"${s:0:8}"* ]]; then echo "not ok - $2 (contains a secret)"; exit 1; fi
    done
    echo "ok - $2"
}
expect_failure() {
    local name="$1" state="$2" text="$3" t0 ms out
    t0=$(now_ms)
    out="$(q_err "SELECT count(*) FROM ft_$name")" && die "$name: the scan succeeded"
    ms=$(elapsed_ms "$t0")
    echo "$out" | sed 's/^/#   /'
    assert_contains "$out" "ERROR:  $state:" "$name: fails with SQLSTATE $state"
    assert_contains "$out" "$text" "$name: the error says why ($text)"
    assert_contains "$out" "HINT:" "$name: with a hint"
    assert_fast "$name" "$ms"
    no_secret_in "$out" "$name: the error names no secret"
}

server wrongpw sasl_plain "$REAL_KAFKA_SASL_SSL_BROKERS" "$ca"
q "CREATE USER MAPPING FOR $role SERVER wrongpw OPTIONS (username '$REAL_KAFKA_PLAIN_USER', password 'wrong-password-t510')"
expect_failure wrongpw 28000 "Invalid username or password"

server untrusted tls "$REAL_KAFKA_SSL_BROKERS" ", ssl_ca_file '$REAL_KAFKA_UNTRUSTED_CA'"
q "CREATE USER MAPPING FOR $role SERVER untrusted"
expect_failure untrusted HV00N "certificate verify failed"

server wronghost tls "$REAL_KAFKA_WRONGHOST_BROKERS" "$ca"
q "CREATE USER MAPPING FOR $role SERVER wronghost"
expect_failure wronghost HV00N "certificate verify failed"

server nocert tls "$REAL_KAFKA_MTLS_BROKERS" "$ca"
q "CREATE USER MAPPING FOR $role SERVER nocert"
expect_failure nocert HV00N "could not establish a TLS connection"

# the encrypted key without its passphrase, or with a wrong one
server nokeypw mtls "$REAL_KAFKA_MTLS_BROKERS" "$ca$client"
server badkeypw mtls "$REAL_KAFKA_MTLS_BROKERS" "$ca$client"
q "CREATE USER MAPPING FOR $role SERVER nokeypw"
q "CREATE USER MAPPING FOR $role SERVER badkeypw OPTIONS (ssl_key_password 'wrong-password-t510')"
for name in nokeypw badkeypw; do
    out="$(q_err "SELECT count(*) FROM ft_$name")" && die "$name: mtls succeeded"
    echo "$out" | sed 's/^/#   /'
    assert_contains "$out" "HINT:  Check that the server's option \"ssl_key_file\"" "$name: the encrypted key is an error with a hint"
    assert_contains "$out" "ssl_key_password" "$name: the hint names ssl_key_password"
    no_secret_in "$out" "$name: the error names no secret"
done

no_secret_in "$(cat "$(dirname "$PGDATA")/postgresql.log")" "the server log names no secret"

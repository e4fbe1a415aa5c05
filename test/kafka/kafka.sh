#!/usr/bin/env bash
# test/kafka/kafka.sh — a real Apache Kafka (KRaft, from Maven Central) for the tests, on loopback.
#
#   kafka.sh fetch                      resolve the jars into ~/.m2 (offline once cached), write the classpath
#   kafka.sh start STATE_DIR [NODES]    certificates, storage, NODES (1 default, or 3) combined
#                                       broker+controller nodes; wait until every listener serves;
#                                       write STATE_DIR/env (the REAL_KAFKA_* variables, shell syntax)
#   kafka.sh attach STATE_DIR BROKERS   an existing cluster instead: compile the tool, write STATE_DIR/env
#   kafka.sh stop STATE_DIR             stop every node (TERM, KILL after 30 s)
#   kafka.sh kill STATE_DIR N...        kill -9 nodes N... (1-based; a crash, for the broker-failure test)
#   kafka.sh restart STATE_DIR N...     start nodes N... again, wait until the whole cluster serves
#   kafka.sh tool STATE_DIR ARGS...     run test/kafka/KafkaTool.java (create/delete/partitions/produce)
#   kafka.sh class STATE_DIR CLASS ARGS...  run a class of the Kafka classpath (e.g. Kafka's console consumer)
#
# Each node has these listeners, all on 127.0.0.1 (ports in STATE_DIR/env):
#   PLAINTEXT        none
#   SSL              TLS, server certificate only
#   MTLS             TLS with ssl.client.auth=required
#   SASL_PLAINTEXT   PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 over plain TCP
#   SASL_SSL         the same over TLS
#   WRONGHOST        TLS with a certificate from the same CA whose SAN names another host (negative tests)
#   CONTROLLER       KRaft controller (not advertised)
# Certificates (STATE_DIR/certs, made with openssl at each start, world-readable because the database
# server, running as postgres, reads them): ca.pem; broker.pem (SAN DNS:localhost, IP:127.0.0.1, PKCS#8
# key); client.pem + client.key (PKCS#8 encrypted with REAL_KAFKA_CLIENT_KEY_PASSWORD); untrusted-ca.pem,
# a CA that signed nothing here. The SASL users and passwords are random at each start.
# Environment: KAFKA_HEAP (default -Xmx768m), KAFKA_START_TIMEOUT (s, default 90).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CP_FILE="${REAL_KAFKA_CP_FILE:-$HOME/.m2/kafka_fdw-real-kafka.classpath}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx768m}"
LISTENERS=(PLAINTEXT SSL MTLS SASL_PLAINTEXT SASL_SSL WRONGHOST CONTROLLER)

log() { printf '[%s] kafka: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# next_free_port — set FREE_PORT to a TCP port on 127.0.0.1 that nothing listens on and that was not
# handed out before in this run. Not meant for $(...): the record of ports handed out would stay in the
# subshell, and two listeners of a cluster could get the same port (a node then exited at start with
# "Address already in use", as t/570 did once).
declare -A _TAKEN=()
FREE_PORT=""
next_free_port() {
    local port
    for _ in $(seq 200); do
        port="$(random_listen_port)"
        [ -z "${_TAKEN[$port]:-}" ] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then _TAKEN[$port]=1; FREE_PORT="$port"; return 0; fi
    done
    return 1
}

# shellcheck source=test/ports.sh
. "$HERE/../ports.sh"
# shellcheck source=test/maven.sh
. "$HERE/../maven.sh"

# secret — a random 24-character alphanumeric string.
secret() { openssl rand -base64 32 | tr -dc 'A-Za-z0-9' | head -c 24; }

cmd_fetch() { maven_classpath "$HERE/pom.xml" "$CP_FILE" "Apache Kafka" || die "fetching Apache Kafka failed"; }

# make_certs DIR — the CA, broker, wrong-host, client and untrusted-CA certificates (see the header).
make_certs() {
    local d="$1" keypw="$2"
    mkdir -p "$d"
    (
        cd "$d"
        ca() {  # ca NAME CN
            openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 7 -subj "/CN=$2" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        }
        leaf() {  # leaf NAME CN EXTENSIONS: key (PKCS#8, unencrypted) and certificate signed by ca
            openssl req -newkey rsa:2048 -nodes -keyout "$1.raw.key" -out "$1.csr" -subj "/CN=$2"
            openssl pkcs8 -topk8 -nocrypt -in "$1.raw.key" -out "$1.key"
            printf '%s\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 7 -extfile "$1.ext"
            rm -f "$1.raw.key" "$1.csr" "$1.ext"
        }
        ca ca "kafka_fdw test CA"
        ca untrusted-ca "kafka_fdw untrusted test CA"
        leaf broker localhost $'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth'
        leaf wronghost wrong.invalid $'subjectAltName=DNS:wrong.invalid,IP:192.0.2.1\nextendedKeyUsage=serverAuth'
        leaf client kafka_fdw-client 'extendedKeyUsage=clientAuth'
        # Kafka's PEM keystores: the PKCS#8 key followed by the certificate chain.
        cat broker.key broker.pem ca.pem >broker-keystore.pem
        cat wronghost.key wronghost.pem ca.pem >wronghost-keystore.pem
        # the client's key, encrypted (PKCS#8, AES-256): kafka_fdw's ssl_key_password
        openssl pkcs8 -topk8 -v2 aes-256-cbc -passout "pass:$keypw" -in client.key -out client.enc.key
        mv client.enc.key client.key
        rm -f ca.srl untrusted-ca.key
    ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl failed"; }
    chmod 755 "$d"; chmod 644 "$d"/*
}

# jaas MODULE [USERS] — an inline JAAS configuration.
jaas() { printf '%s required%s;' "$1" "${2:-}"; }

cmd_start() {
    local state="$1" nodes="${2:-1}" i l
    [ -n "$state" ] || die "usage: kafka.sh start STATE_DIR [NODES]"
    cmd_fetch
    mkdir -p "$state"; chmod 755 "$state"
    state="$(cd "$state" && pwd)"
    local cp; cp="$(cat "$CP_FILE")"
    # secrets of this run
    local plain_user=fdw_plain plain_pw scram256_user=fdw_scram256 scram256_pw scram512_user=fdw_scram512 scram512_pw keypw
    plain_pw="$(secret)"; scram256_pw="$(secret)"; scram512_pw="$(secret)"; keypw="$(secret)"
    make_certs "$state/certs" "$keypw"
    compile_tool "$state"    # the test helper, on the same client library

    # ports: PORT[node,listener]
    declare -A PORT=()
    local voters=""
    for i in $(seq "$nodes"); do
        for l in "${LISTENERS[@]}"; do next_free_port || die "no free port"; PORT[$i,$l]="$FREE_PORT"; done
        voters+="${voters:+,}$i@127.0.0.1:${PORT[$i,CONTROLLER]}"
    done
    local rf=$(( nodes < 3 ? nodes : 3 )) min_isr=$(( nodes < 3 ? 1 : 2 ))
    local cluster_id
    cluster_id="$(openssl rand 16 | base64 | tr '+/' 'AB' | tr -d '=')"   # 22 characters of a Kafka Uuid, no '-'
    local c="$state/certs"
    for i in $(seq "$nodes"); do
        local nd="$state/node$i" listeners="" advertised="" plain_users=""
        mkdir -p "$nd"
        for l in "${LISTENERS[@]}"; do
            listeners+="${listeners:+,}$l://127.0.0.1:${PORT[$i,$l]}"
            [ "$l" = CONTROLLER ] || advertised+="${advertised:+,}$l://127.0.0.1:${PORT[$i,$l]}"
        done
        plain_users=" user_$plain_user=\"$plain_pw\""
        cat >"$nd/server.properties" <<EOF
# written by test/kafka/kafka.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,WRONGHOST:SSL,CONTROLLER:PLAINTEXT
log.dirs=$nd/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.check.interval.ms=1000
log.cleaner.backoff.ms=1000
log.segment.delete.delay.ms=1000
file.delete.delay.ms=1000
# A broker that has not registered with the controller quorum within this exits (default 60 s). On a
# busy 2-core machine three JVMs starting at once can take that long; the harness's own deadline
# (KAFKA_START_TIMEOUT) decides instead, and says so.
initial.broker.registration.timeout.ms=600000
# TLS: PEM key stores and trust store; the MTLS listener requires a client certificate
ssl.keystore.type=PEM
ssl.keystore.location=$c/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$c/ca.pem
ssl.endpoint.identification.algorithm=
listener.name.mtls.ssl.client.auth=required
listener.name.wronghost.ssl.keystore.location=$c/wronghost-keystore.pem
# SASL: PLAIN users inline, SCRAM users created by StorageTool format
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$(jaas org.apache.kafka.common.security.plain.PlainLoginModule "$plain_users")
listener.name.sasl_ssl.plain.sasl.jaas.config=$(jaas org.apache.kafka.common.security.plain.PlainLoginModule "$plain_users")
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$(jaas org.apache.kafka.common.security.scram.ScramLoginModule)
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=$(jaas org.apache.kafka.common.security.scram.ScramLoginModule)
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$(jaas org.apache.kafka.common.security.scram.ScramLoginModule)
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$(jaas org.apache.kafka.common.security.scram.ScramLoginModule)
EOF
        java -cp "$cp" -Dlog4j2.configurationFile="$HERE/log4j2.properties" kafka.tools.StorageTool format \
            --cluster-id "$cluster_id" --config "$nd/server.properties" --ignore-formatted \
            --add-scram "SCRAM-SHA-256=[name=\"$scram256_user\",password=\"$scram256_pw\"]" \
            --add-scram "SCRAM-SHA-512=[name=\"$scram512_user\",password=\"$scram512_pw\"]" \
            >"$nd/format.log" 2>&1 || { cat "$nd/format.log" >&2; die "StorageTool format of node $i failed"; }
    done
    for i in $(seq "$nodes"); do start_node "$state" "$i" "$cp"; done

    local brokers="" sslb="" mtlsb="" saslp="" sasls="" wrong=""
    for i in $(seq "$nodes"); do
        brokers+="${brokers:+,}127.0.0.1:${PORT[$i,PLAINTEXT]}"
        sslb+="${sslb:+,}localhost:${PORT[$i,SSL]}"
        mtlsb+="${mtlsb:+,}localhost:${PORT[$i,MTLS]}"
        saslp+="${saslp:+,}127.0.0.1:${PORT[$i,SASL_PLAINTEXT]}"
        sasls+="${sasls:+,}localhost:${PORT[$i,SASL_SSL]}"
        wrong+="${wrong:+,}127.0.0.1:${PORT[$i,WRONGHOST]}"
    done
    {
        echo "# written by test/kafka/kafka.sh start; source it"
        printf 'export %s=%q\n' \
            REAL_KAFKA_STATE "$state" REAL_KAFKA_NODES "$nodes" REAL_KAFKA_CLASSPATH "$cp" \
            REAL_KAFKA_BROKERS "$brokers" REAL_KAFKA_SSL_BROKERS "$sslb" REAL_KAFKA_MTLS_BROKERS "$mtlsb" \
            REAL_KAFKA_SASL_PLAINTEXT_BROKERS "$saslp" REAL_KAFKA_SASL_SSL_BROKERS "$sasls" \
            REAL_KAFKA_WRONGHOST_BROKERS "$wrong" \
            REAL_KAFKA_CA "$c/ca.pem" REAL_KAFKA_UNTRUSTED_CA "$c/untrusted-ca.pem" \
            REAL_KAFKA_CLIENT_CERT "$c/client.pem" REAL_KAFKA_CLIENT_KEY "$c/client.key" \
            REAL_KAFKA_CLIENT_KEY_PASSWORD "$keypw" \
            REAL_KAFKA_PLAIN_USER "$plain_user" REAL_KAFKA_PLAIN_PASSWORD "$plain_pw" \
            REAL_KAFKA_SCRAM256_USER "$scram256_user" REAL_KAFKA_SCRAM256_PASSWORD "$scram256_pw" \
            REAL_KAFKA_SCRAM512_USER "$scram512_user" REAL_KAFKA_SCRAM512_PASSWORD "$scram512_pw"
    } >"$state/env"
    chmod 644 "$state/env"

    # ready: every node is in the metadata of every node's PLAINTEXT listener, and the TLS and SASL
    # listeners answer a metadata request too
    local deadline=$(( $(date +%s) + ${KAFKA_START_TIMEOUT:-90} ))
    until ready "$state" "$nodes" "$brokers" "$sslb" "$sasls" "$plain_user" "$plain_pw"; do
        for i in $(seq "$nodes"); do
            kill -0 "$(cat "$state/node$i/pid")" 2>/dev/null \
                || { log "node $i exited during start; its errors, then its last lines:"
                     grep -E ' (ERROR|FATAL) |Exception' "$state/node$i/kafka.log" | head -n 20 >&2
                     tail -n 15 "$state/node$i/kafka.log" >&2
                     cmd_stop "$state"; die "node $i exited during start"; }
        done
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 40 "$state/node1/kafka.log" >&2; cmd_stop "$state"; die "Kafka did not serve within ${KAFKA_START_TIMEOUT:-90} s"
        fi
        sleep 0.3
    done
    log "ready: $nodes node(s), PLAINTEXT $brokers (state $state)"
}

# ready STATE NODES PLAINTEXT SSL SASL_SSL USER PASSWORD — succeed when the cluster serves (SASL checked
# with PLAIN: librdkafka before 2.6.1, kcat's included, cannot do SCRAM with Kafka 4, see README).
ready() {
    local b n
    for b in ${3//,/ }; do
        n="$(kcat -L -b "$b" -m 3 -J 2>/dev/null | grep -o '"id":[0-9]*' | sort -u | wc -l)" || return 1
        [ "$n" -ge "$2" ] || return 1
    done
    kcat -L -b "${4%%,*}" -m 3 -X security.protocol=ssl -X ssl.ca.location="$1/certs/ca.pem" >/dev/null 2>&1 || return 1
    kcat -L -b "${5%%,*}" -m 3 -X security.protocol=sasl_ssl -X ssl.ca.location="$1/certs/ca.pem" \
        -X sasl.mechanisms=PLAIN -X sasl.username="$6" -X sasl.password="$7" >/dev/null 2>&1
}

# cmd_attach STATE_DIR BROKERS — for an existing cluster: compile the test tool, write STATE_DIR/env with
# REAL_KAFKA_BROKERS (its PLAINTEXT listener) and the classpath; the other REAL_KAFKA_* variables come
# from the caller's environment, or are absent (the tests then skip what needs them).
cmd_attach() {
    local state="$1" brokers="$2"
    [ -n "$brokers" ] || die "usage: kafka.sh attach STATE_DIR BROKERS"
    cmd_fetch
    mkdir -p "$state"; chmod 755 "$state"
    state="$(cd "$state" && pwd)"
    compile_tool "$state"
    kcat -L -b "$brokers" -m 10 >/dev/null || die "the cluster at $brokers does not answer a metadata request"
    printf 'export %s=%q\n' REAL_KAFKA_STATE "$state" REAL_KAFKA_CLASSPATH "$(cat "$CP_FILE")" \
        REAL_KAFKA_BROKERS "$brokers" >"$state/env"
    log "attached to the existing cluster at $brokers"
}

# compile_tool STATE_DIR — KafkaTool.java into STATE_DIR/classes.
compile_tool() {
    mkdir -p "$1/classes"
    javac -nowarn -d "$1/classes" -cp "$(cat "$CP_FILE")" "$HERE/KafkaTool.java" 2>"$1/javac.log" \
        || { cat "$1/javac.log" >&2; die "javac KafkaTool.java failed"; }
}

# start_node STATE_DIR N CLASSPATH — start node N of the cluster in the background (its log appended to
# STATE_DIR/nodeN/kafka.log, its pid in STATE_DIR/nodeN/pid).
start_node() {
    local nd="$1/node$2"
    # setsid: the node does not get the terminal's or the test runner's signals; kafka.sh stop stops it.
    # (setsid execs java itself here, not being a process group leader: the pid is the JVM's.)
    setsid java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$3" kafka.Kafka "$nd/server.properties" \
        </dev/null >>"$nd/kafka.log" 2>&1 &
    echo $! >"$nd/pid"
}

# cmd_kill STATE_DIR N... — kill -9 the JVMs of nodes N... (a crash: no controlled shutdown), wait until gone.
cmd_kill() {
    local state="$1" i pid; shift
    for i in "$@"; do
        pid="$(cat "$state/node$i/pid" 2>/dev/null)" || die "node $i is not running"
        kill -KILL "$pid" 2>/dev/null || true
    done
    for i in "$@"; do
        pid="$(cat "$state/node$i/pid")"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        ! kill -0 "$pid" 2>/dev/null || die "node $i (pid $pid) still alive 10 s after SIGKILL"
        rm -f "$state/node$i/pid"
        log "node $i (pid $pid) killed"
    done
}

# node_ports STATE_DIR N — the ports of node N's listeners (from its server.properties), one a line.
node_ports() { sed -n 's/^listeners=//p' "$1/node$2/server.properties" | tr ',' '\n' | sed 's/.*://'; }

# ports_held PORT... — print "PORT STATE" for each socket (TCP, IPv4 or IPv6) whose local end is one of
# the ports and that would make a bind fail: any state but TIME_WAIT (06) and CLOSE (07), which a
# listener with SO_REUSEADDR (Kafka's) binds over.
ports_held() {
    local want="" p
    for p in "$@"; do want+=" $(printf '%04X' "$p")"; done
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v want="$want " '$4 != "06" && $4 != "07" && $4 != "st" {
        n = split($2, a, ":"); if (index(want, " " a[n] " ")) print a[n], $4 }' | sort -u \
        | while read -r p st; do echo "$((16#$p)) $st"; done
}

# cmd_restart STATE_DIR N... — start nodes N... again (same configuration and data), wait until every node
# of the cluster is in the metadata again and the listeners serve. A node is started only once its
# listener ports are free: a socket still bound to one (an outgoing connection whose local end took it,
# or a self-connection of a client reconnecting to it, both possible only for a port in the ephemeral
# range) makes the node exit at once with "Address already in use".
cmd_restart() {
    local state="$1" i held; shift
    # shellcheck disable=SC1091
    . "$state/env"
    for i in "$@"; do
        [ ! -s "$state/node$i/pid" ] || ! kill -0 "$(cat "$state/node$i/pid")" 2>/dev/null || die "node $i is running"
        for _ in $(seq 100); do
            held="$(ports_held $(node_ports "$state" "$i"))"
            [ -n "$held" ] || break
            sleep 0.1
        done
        [ -z "$held" ] || die "node $i: its ports are still in use 10 s after it died (port, TCP state): $(echo $held)"
        echo "----- restarted by kafka.sh restart at $(date +%T)" >>"$state/node$i/kafka.log"
        start_node "$state" "$i" "$REAL_KAFKA_CLASSPATH"
    done
    local deadline=$(( $(date +%s) + ${KAFKA_START_TIMEOUT:-90} )) tries=0
    until ready "$state" "$REAL_KAFKA_NODES" "$REAL_KAFKA_BROKERS" "$REAL_KAFKA_SSL_BROKERS" "$REAL_KAFKA_SASL_SSL_BROKERS" \
            "$REAL_KAFKA_PLAIN_USER" "$REAL_KAFKA_PLAIN_PASSWORD"; do
        for i in "$@"; do
            kill -0 "$(cat "$state/node$i/pid")" 2>/dev/null && continue
            # A node that exits while starting says why in an ERROR line, not in its last lines (its
            # shutdown). Seen once under load after a kill -9: start it again, at most twice.
            log "node $i exited during restart:"
            grep -E ' (ERROR|FATAL) |Exception' "$state/node$i/kafka.log" | tail -n 8 >&2
            tries=$((tries + 1))
            [ "$tries" -le 2 ] || die "node $i exited during restart $tries times"
            sleep 2
            start_node "$state" "$i" "$REAL_KAFKA_CLASSPATH"
        done
        if [ "$(date +%s)" -ge "$deadline" ]; then
            for i in $(seq "$REAL_KAFKA_NODES"); do
                log "node $i: its last ERROR lines, then its last lines:"
                grep -E ' (ERROR|FATAL) ' "$state/node$i/kafka.log" | tail -n 5 >&2
                tail -n 5 "$state/node$i/kafka.log" >&2
            done
            die "the cluster did not serve within ${KAFKA_START_TIMEOUT:-90} s of the restart"
        fi
        sleep 0.3
    done
    log "restarted node(s) $*: all $REAL_KAFKA_NODES serve"
}

cmd_stop() {
    local state="$1" nd pid
    [ -d "$state" ] || return 0
    for nd in "$state"/node*; do
        pid="$(cat "$nd/pid" 2>/dev/null)" || continue
        kill -TERM "$pid" 2>/dev/null || true
    done
    for nd in "$state"/node*; do
        pid="$(cat "$nd/pid" 2>/dev/null)" || continue
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then log "node $nd did not stop in 30 s: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$nd/pid"
    done
}

cmd_class() {
    local state="$1"; shift
    java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$HERE/log4j2-tool.properties" -cp "$state/classes:$(cat "$CP_FILE")" "$@"
}

cmd_tool() {
    local state="$1"; shift
    # shellcheck disable=SC1091
    . "$state/env"
    cmd_class "$state" KafkaTool "$REAL_KAFKA_BROKERS" "$@"
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) shift; cmd_start "$@" ;;
    attach) shift; cmd_attach "$@" ;;
    stop) cmd_stop "${2:?usage: kafka.sh stop STATE_DIR}" ;;
    kill) shift; cmd_kill "$@" ;;
    restart) shift; cmd_restart "$@" ;;
    tool) shift; cmd_tool "$@" ;;
    class) shift; cmd_class "$@" ;;
    *) echo "usage: kafka.sh fetch | start STATE_DIR [NODES] | stop STATE_DIR | kill|restart STATE_DIR N... | tool STATE_DIR ... | class STATE_DIR CLASS ..." >&2; exit 2 ;;
esac

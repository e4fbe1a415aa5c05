# test/ports.sh — sourced by test/lib.sh and test/kafka/kafka.sh.
#
# random_listen_port — a random port below the kernel's ephemeral range (ip_local_port_range), from
# 10000 up. A port in that range can be taken by an outgoing connection's local end (a client of the
# brokers, psql, kcat) between the check that nothing listens on it and the server's bind: a Kafka
# node then exited at start ("Address already in use"), once in a few suite runs.
random_listen_port() {
    local lo=32768
    [ -r /proc/sys/net/ipv4/ip_local_port_range ] && read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    [ "$lo" -gt 12000 ] || lo=61000
    echo $(( 10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000) ))
}

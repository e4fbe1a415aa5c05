#!/usr/bin/env bash
# demo/run_demo.sh — the kafka_fdw demo:  bash demo/run_demo.sh [--brokers LIST] [--topic-prefix PREFIX]
#
# Kafka topics as PostgreSQL foreign tables, the way Amazon Redshift reads Amazon MSK. On a fresh Debian 12 machine (as root) it
# installs the packages it needs, builds and installs kafka_fdw and the test broker, starts a 3-broker
# test Kafka cluster and a throwaway PostgreSQL 15 (in a temp dir), produces sample data like the Amazon
# MSK Data Generator of the AWS walkthrough (topics "customer" and "order"), points an external schema at
# the cluster and runs a few queries, printing each SQL statement before its result. A superuser only
# installs the extension and creates the role "analyst"; everything after that runs as that ordinary
# role, as an analyst would use kafka_fdw.
# Everything it started is stopped and removed at exit.
#
# Options:
#   --brokers LIST        run against a real Kafka cluster (host:port,...) instead of the test broker;
#                         the env var KAFKA_BROKERS does the same. The sample data is produced with kcat
#                         into topics PREFIX"customer" and PREFIX"order" only (never any other topic);
#                         they must exist or the cluster must auto-create topics. If they already hold
#                         records (an earlier run), nothing is produced again.
#   --topic-prefix P      topic name prefix (default: none with the test broker, "kafka_fdw_demo_" with
#                         --brokers)
#   -h, --help            this help
#
# Environment:
#   KEEP=1                keep PostgreSQL (and the test broker) running at the end, print how to connect,
#                         and wait for Ctrl-C
#   KCAT_ARGS="-X k=v"    extra kcat options for --brokers (e.g. -X security.protocol=ssl)
#   KEEP_TMP=1            keep the temp dir (logs, data dirs) after exit
set -euo pipefail
export LC_ALL=C.UTF-8
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT
cd "$REPO_ROOT"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# ---------------------------------------------------------------------------------------------------
# Arguments (read before test/lib.sh, which exports KAFKA_BROKERS for the test broker it starts)
# ---------------------------------------------------------------------------------------------------
EXTERNAL_BROKERS="${KAFKA_BROKERS:-}"
TOPIC_PREFIX=""
TOPIC_PREFIX_SET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --brokers)        [ $# -ge 2 ] || { echo "--brokers needs a value" >&2; exit 2; }
                          EXTERNAL_BROKERS="$2"; shift 2 ;;
        --brokers=*)      EXTERNAL_BROKERS="${1#*=}"; shift ;;
        --topic-prefix)   [ $# -ge 2 ] || { echo "--topic-prefix needs a value" >&2; exit 2; }
                          TOPIC_PREFIX="$2"; TOPIC_PREFIX_SET=1; shift 2 ;;
        --topic-prefix=*) TOPIC_PREFIX="${1#*=}"; TOPIC_PREFIX_SET=1; shift ;;
        -h|--help)        usage; exit 0 ;;
        *)                echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$EXTERNAL_BROKERS" ] && [ "$TOPIC_PREFIX_SET" = 0 ]; then TOPIC_PREFIX="kafka_fdw_demo_"; fi
[[ "$TOPIC_PREFIX" =~ ^[A-Za-z0-9._-]*$ ]] \
    || { echo "--topic-prefix may only contain letters, digits, '.', '_' and '-'" >&2; exit 2; }

# shellcheck source=test/lib.sh
. "$REPO_ROOT/test/lib.sh"

DB=dev                                         # the database of the AWS walkthrough
ANALYST=analyst                                # an ordinary role: runs everything but the install
PROMPT_CHAR='>'                                # psql's prompt: '>' for analyst, '#' for a superuser
SCHEMA=msk_external_schema
CUSTOMER_TOPIC="${TOPIC_PREFIX}customer"
ORDER_TOPIC="${TOPIC_PREFIX}order"
CUSTOMER_TABLE="$SCHEMA.\"$CUSTOMER_TOPIC\""
ORDER_TABLE="$SCHEMA.\"$ORDER_TOPIC\""
N_CUSTOMERS=200
N_ORDERS=1000
PARTITIONS=3
HEADERS_BROKER="source=datagen,content-type=application/json"   # on about half of the records
HEADERS_KCAT=(-H source=datagen -H content-type=application/json)
START_MS="$(now_ms)"
BUILT_MS="$START_MS"
CURRENT_STEP="start"
DEMO_DONE=0

# ---------------------------------------------------------------------------------------------------
# Exit: stop everything we started; on failure say which step failed.
# ---------------------------------------------------------------------------------------------------
_set_status() { return "$1"; }
on_exit() {
    local rc=$?
    set +e
    _set_status "$rc"; lib_cleanup            # lib_cleanup shows the server logs when $? != 0
    if [ "$rc" -ne 0 ] && [ "$DEMO_DONE" = 0 ]; then
        printf '\nERROR: the demo failed during step "%s" (exit status %s); see the messages above.\n' \
            "$CURRENT_STEP" "$rc" >&2
    fi
    exit "$rc"
}
lib_trap                 # INT/TERM -> exit (hence cleanup)
trap on_exit EXIT

# ---------------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------------
STEP_NO=0
# heading TITLE — start a step: print a section heading, remember the step for error messages.
heading() {
    STEP_NO=$((STEP_NO + 1))
    CURRENT_STEP="$1"
    printf '\n=== %d. %s ===\n' "$STEP_NO" "$1"
}

# note TEXT... — one explanatory line.
note() { printf '%s\n' "$*"; }

# print_sql COMMENT SQL — print the comment (each line prefixed "-- ") and the SQL like a psql session.
print_sql() {
    printf '\n'
    printf '%s\n' "$1" | sed 's/^/-- /'
    printf '%s\n' "$2" | sed "1s/^/$DB=$PROMPT_CHAR /; 2,\$s/^/$DB-$PROMPT_CHAR /"
}

# run_sql SQL — run SQL (statements or psql meta-commands) in $DB as $ANALYST and print the result.
run_sql() { printf '%s\n' "$1" | psql -X -q -P pager=off -v ON_ERROR_STOP=1 -U "$ANALYST" -d "$DB"; }

# show_sql COMMENT SQL — print the SQL, then run it.
show_sql() { print_sql "$1" "$2"; run_sql "$2"; }

# ---------------------------------------------------------------------------------------------------
# Sample data, like the Amazon MSK Data Generator configuration of the walkthrough:
#   genkp.customer.with=#{Code.isbn10}            genkp.order.with=#{Code.isbn10}
#   genv.customer.name.with=#{Name.full_name}     genv.order.product_id.with=#{number.number_between '101','109'}
#   genv.customer.gender.with=#{Demographic.sex}  genv.order.quantity.with=#{number.number_between '1','5'}
#   genv.customer.favorite_beer.with=#{Beer.name} genv.order.customer_id.matching=customer.key
#   genv.customer.state.with=#{Address.state}
# Deterministic (srand(42); the same for a given awk, Debian's default is mawk) except the timestamps, which span the hour before the run: customers
# during the first 40 minutes, orders during the last 50, each order for a customer created before it.
# Output, one record a line, tab-separated: TOPIC PARTITION KEY VALUE TIMESTAMP_MS WITH_HEADERS(0/1).
# The partition is a hash of the key (the test broker path); kcat uses its own key-hash partitioner.
# ---------------------------------------------------------------------------------------------------
generate_records() {
    awk -v ncust="$N_CUSTOMERS" -v nord="$N_ORDERS" -v nparts="$PARTITIONS" -v now="$START_MS" \
        -v ctopic="$CUSTOMER_TOPIC" -v otopic="$ORDER_TOPIC" '
    function isbn10(   i, d, s, id) {          # 9 random digits and the ISBN-10 check digit
        do {
            id = ""; s = 0
            for (i = 1; i <= 9; i++) { d = int(rand() * 10); id = id d; s += i * d }
            s = s % 11
            id = id (s == 10 ? "X" : s)
        } while (id in used)
        used[id] = 1
        return id
    }
    function skewed(n) { return 1 + int(n * rand() * rand()) }   # favours the first entries
    function partition_of(key,   i, h) {
        h = 0
        for (i = 1; i <= length(key); i++) h = (h * 31 + index("0123456789X", substr(key, i, 1))) % 1000003
        return h % nparts
    }
    BEGIN {
        srand(42)
        nm = split("James Robert John Michael David William Richard Joseph Thomas Charles Christopher " \
                   "Daniel Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian", male, " ")
        nf = split("Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy " \
                   "Betty Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa", female, " ")
        nl = split("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez " \
                   "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson " \
                   "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright " \
                   "Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell", last, " ")
        nb = split("Pliny The Elder|Founders Kentucky Breakfast|Trappistes Rochefort 10|HopSlam Ale|" \
                   "Stone Imperial Russian Stout|St. Bernardus Abt 12|Founders Breakfast Stout|" \
                   "Weihenstephaner Hefeweissbier|Celebrator Doppelbock|Duvel|Dreadnaught IPA|" \
                   "Nugget Nectar|La Fin Du Monde|Bourbon County Stout|Old Rasputin Russian Imperial Stout|" \
                   "Two Hearted Ale|Ruination IPA|Schneider Aventinus|Double Bastard Ale|90 Minute IPA|" \
                   "Hop Rod Rye|Chimay Grande Reserve|Orval Trappist Ale|Westmalle Trappist Tripel|" \
                   "Yeti Imperial Stout|Arrogant Bastard Ale|Storm King Stout|Alpha King Pale Ale|" \
                   "Racer 5 India Pale Ale|Sierra Nevada Celebration Ale|Edmund Fitzgerald Porter", beer, "|")
        ns = split("California|Texas|Florida|New York|Pennsylvania|Illinois|Ohio|Georgia|North Carolina|" \
                   "Michigan|New Jersey|Virginia|Washington|Arizona|Tennessee|Massachusetts|Indiana|" \
                   "Missouri|Maryland|Wisconsin|Colorado|Minnesota|South Carolina|Alabama|Louisiana|" \
                   "Kentucky|Oregon|Oklahoma|Connecticut|Utah|Iowa|Nevada|Arkansas|Kansas|Mississippi|" \
                   "New Mexico|Nebraska|Idaho|West Virginia|Hawaii|New Hampshire|Maine|Montana|" \
                   "Rhode Island|Delaware|South Dakota|North Dakota|Alaska|Vermont|Wyoming", state, "|")
        t0 = now - 3600000
        cstep = 2400000 / ncust                # customers: first 40 minutes
        ostep = 3000000 / nord                 # orders: last 50 minutes
        for (i = 0; i < ncust; i++) {
            key = isbn10(); cust[i] = key
            if (rand() < 0.5) { gender = "Male";   first = male[1 + int(rand() * nm)] }
            else              { gender = "Female"; first = female[1 + int(rand() * nf)] }
            value = sprintf("{\"name\":\"%s %s\",\"gender\":\"%s\",\"favorite_beer\":\"%s\",\"state\":\"%s\"}",
                            first, last[1 + int(rand() * nl)], gender, beer[skewed(nb)], state[skewed(ns)])
            ts = int(t0 + i * cstep + rand() * cstep)
            printf "%s\t%d\t%s\t%s\t%.0f\t%d\n", ctopic, partition_of(key), key, value, ts, rand() < 0.5
        }
        for (j = 0; j < nord; j++) {
            ts = int(t0 + 600000 + j * ostep + rand() * ostep)
            known = int((ts - t0) / cstep); if (known > ncust) known = ncust; if (known < 1) known = 1
            key = isbn10()
            value = sprintf("{\"product_id\":%d,\"quantity\":%d,\"customer_id\":\"%s\"}",
                            101 + int(rand() * 9), 1 + int(rand() * 5), cust[int(rand() * known)])
            printf "%s\t%d\t%s\t%s\t%.0f\t%d\n", otopic, partition_of(key), key, value, ts, rand() < 0.5
        }
    }'
}

# write_preload FILE — the test broker commands that create the topics and produce every record:
#   create TOPIC PARTITIONS
#   produce TOPIC PARTITION KEY VALUE TIMESTAMP_MS [HEADERS]    (values percent-encoded: %25, %20)
# The broker runs them at start-up (--preload), before it reports ready: 1,200 records take about a second.
write_preload() {
    printf 'create %s %d\ncreate %s %d\n' "$CUSTOMER_TOPIC" "$PARTITIONS" "$ORDER_TOPIC" "$PARTITIONS"
    awk -F '\t' -v hdr="$HEADERS_BROKER" '{
        v = $4; gsub(/%/, "%25", v); gsub(/ /, "%20", v)
        printf "produce %s %s %s %s %s%s\n", $1, $2, $3, v, $5, ($6 ? " " hdr : "")
    }' "$1"
}

# kcat_topic_exists TOPIC — succeed if the cluster has TOPIC (asks without auto-creating it).
kcat_topic_exists() {
    local meta extra=()
    read -r -a extra <<<"${KCAT_ARGS:-}"
    meta="$(kcat -L -b "$EXTERNAL_BROKERS" -t "$1" -m 15 -X allow.auto.create.topics=false \
            "${extra[@]}" 2>&1)" || die "cannot read the metadata of $EXTERNAL_BROKERS: $meta"
    grep -q "topic \"$1\" with [1-9][0-9]* partitions" <<<"$meta"
}

# kcat_topic_has_records TOPIC — succeed if TOPIC holds at least one record.
kcat_topic_has_records() {
    local extra=()
    read -r -a extra <<<"${KCAT_ARGS:-}"
    [ -n "$(kcat -C -b "$EXTERNAL_BROKERS" -t "$1" -o beginning -e -q -c 1 -m 15 -f 'x' \
            "${extra[@]}" 2>/dev/null)" ]
}

# produce_with_kcat FILE — produce the records of both topics with kcat (key|value lines). kcat cannot
# set per-record timestamps, so they are the time of producing; headers are per kcat run, hence two runs
# per topic (with and without headers).
produce_with_kcat() {
    local records="$1" topic existed hdr out hargs extra=()
    read -r -a extra <<<"${KCAT_ARGS:-}"
    for topic in "$CUSTOMER_TOPIC" "$ORDER_TOPIC"; do
        existed=0
        if kcat_topic_exists "$topic"; then
            existed=1
            if kcat_topic_has_records "$topic"; then
                note "Topic $topic already holds records (an earlier run): not producing again."
                note "  (use --topic-prefix for fresh topics)"
                continue
            fi
        else
            note "Topic $topic does not exist yet: producing to it lets a cluster with auto-creation create it."
        fi
        for hdr in 1 0; do
            hargs=()
            if [ "$hdr" = 1 ]; then hargs=("${HEADERS_KCAT[@]}"); fi
            if ! out="$(awk -F '\t' -v t="$topic" -v h="$hdr" '$1 == t && $6 == h { print $3 "|" $4 }' "$records" |
                        kcat -P -b "$EXTERNAL_BROKERS" -t "$topic" -K '|' -m 15 -X message.timeout.ms=15000 \
                             "${hargs[@]}" "${extra[@]}" 2>&1)"; then
                printf '%s\n' "$out" | sort | uniq -c | sort -rn | head -n 5 |
                    awk '{ n = $1; sub(/^ *[0-9]+ /, ""); printf "  kcat: %s%s\n", $0, (n > 1 ? " (" n " times)" : "") }' >&2
                if [ "$existed" = 0 ]; then
                    printf '%s\n' \
                        "Could not produce to topic $topic: it does not exist and the cluster did not create it." \
                        "The demo topics must exist, or the cluster must create topics automatically" \
                        "(auto.create.topics.enable=true). Create them first, for example:" \
                        "  kafka-topics.sh --bootstrap-server ${EXTERNAL_BROKERS%%,*} --create --topic $CUSTOMER_TOPIC --partitions $PARTITIONS" \
                        "  kafka-topics.sh --bootstrap-server ${EXTERNAL_BROKERS%%,*} --create --topic $ORDER_TOPIC --partitions $PARTITIONS" >&2
                    die "topic $topic does not exist"
                fi
                die "could not produce to topic $topic on $EXTERNAL_BROKERS"
            fi
        done
        note "Produced $(awk -F '\t' -v t="$topic" '$1 == t' "$records" | wc -l) records to $topic."
    done
}

# ---------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------
step_build() {
    heading "Install packages and build kafka_fdw"
    make_workdir
    # shellcheck disable=SC2119
    ensure_packages
    build_extension
    if [ -z "$EXTERNAL_BROKERS" ]; then build_broker; fi
    BUILT_MS="$(now_ms)"
}

step_kafka_with_sample_data() {
    local records="$WORK_DIR/records.tsv"
    generate_records >"$records"
    if [ -z "$EXTERNAL_BROKERS" ]; then
        heading "Start a test Kafka cluster (3 brokers) with sample data like the MSK Data Generator"
        write_preload "$records" >"$WORK_DIR/preload.txt"
        start_broker "$WORK_DIR/broker" --brokers 3 --preload "$WORK_DIR/preload.txt"
        note "Topics $CUSTOMER_TOPIC ($N_CUSTOMERS records) and $ORDER_TOPIC ($N_ORDERS records), $PARTITIONS partitions each:"
        note "keys hashed to partitions, timestamps over the last hour, headers on about half of the records."
    else
        heading "Produce sample data like the MSK Data Generator to $EXTERNAL_BROKERS"
        produce_with_kcat "$records"
        KAFKA_BROKERS="$EXTERNAL_BROKERS"; export KAFKA_BROKERS
    fi
    note "The first record of each topic:"
    awk -F '\t' '!seen[$1]++ { printf "  %s: key=%s value=%s\n", $1, $3, $4 }' "$records"
}

step_postgres() {
    heading "Start a throwaway PostgreSQL 15 and CREATE EXTENSION kafka_fdw"
    start_postgres "$WORK_DIR/pg"
    pg_install_extension "$DB" >/dev/null
    note "Database \"$DB\" (the database name of the AWS walkthrough), extension kafka_fdw installed."
    local grants="CREATE ROLE $ANALYST LOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER kafka_fdw TO $ANALYST;   -- to create servers
GRANT CREATE ON DATABASE $DB TO $ANALYST;                     -- to create schemas
GRANT CREATE ON SCHEMA public TO $ANALYST;                    -- for the materialized view"
    PROMPT_CHAR='#'
    print_sql "As the superuser: an ordinary role for the analyst, who creates servers and schemas of their own.
The helpers and monitoring views of schema kafka need no grant." "$grants"
    printf '%s\n' "$grants" | psql -X -q -v ON_ERROR_STOP=1 -d "$DB"
    PROMPT_CHAR='>'
    note "From here on every statement runs as the ordinary role \"$ANALYST\" (psql -U $ANALYST)."
}

step_external_schema() {
    heading "Point an external schema at the Kafka cluster: one foreign table per topic"
    local create="SELECT kafka.create_external_schema('$SCHEMA',
                                    brokers => '$KAFKA_BROKERS',
                                    authentication => 'none');"
    print_sql "The analogue of Redshift's CREATE EXTERNAL SCHEMA msk_external_schema FROM MSK ..." "$create"
    run_sql "$create" >/dev/null
    local pattern="$SCHEMA.*"                  # quoted: a "." in the prefix is not a schema separator
    if [ -n "$TOPIC_PREFIX" ]; then pattern="$SCHEMA.\"$TOPIC_PREFIX\"*"; fi
    show_sql "The foreign tables" "\\det $pattern"
    show_sql "Every topic table has the same columns" "\\d $CUSTOMER_TABLE"
}

step_queries() {
    heading "Query the topics with SQL"
    show_sql "5 customers: the JSON value parsed with kafka.json_parse (Redshift's JSON_PARSE)" \
"SELECT kafka_partition, kafka_offset, kafka_timestamp,
       kafka.from_varbyte(kafka_key, 'utf8') AS customer_id,
       c->>'name' AS name, c->>'gender' AS gender,
       c->>'favorite_beer' AS favorite_beer, c->>'state' AS state
FROM $CUSTOMER_TABLE, kafka.json_parse(kafka_value) AS c
ORDER BY kafka_timestamp
LIMIT 5;"

    show_sql "Orders per partition" \
"SELECT kafka_partition, count(*) AS orders,
       min(kafka_offset) AS first_offset, max(kafka_offset) AS last_offset,
       min(kafka_timestamp) AS oldest, max(kafka_timestamp) AS newest
FROM $ORDER_TABLE
GROUP BY kafka_partition
ORDER BY kafka_partition;"

    show_sql "Top 5 favourite beers" \
"SELECT kafka.json_parse(kafka_value)->>'favorite_beer' AS favorite_beer,
       count(*) AS customers
FROM $CUSTOMER_TABLE
GROUP BY 1
ORDER BY customers DESC, favorite_beer
LIMIT 5;"

    show_sql "Join two topics: orders to customers on the customer key, quantity per state" \
"SELECT c->>'state' AS state,
       count(*) AS orders,
       sum((o->>'quantity')::int) AS total_quantity
FROM (SELECT kafka.json_parse(kafka_value) AS o FROM $ORDER_TABLE) AS orders
JOIN (SELECT kafka.from_varbyte(kafka_key, 'utf8') AS customer_id,
             kafka.json_parse(kafka_value) AS c
      FROM $CUSTOMER_TABLE) AS customers
  ON customers.customer_id = o->>'customer_id'
GROUP BY 1
ORDER BY total_quantity DESC, state
LIMIT 10;"

    local slice="FROM $ORDER_TABLE
WHERE kafka_partition = 0 AND kafka_offset >= 10"
    show_sql "Conditions on kafka_partition and kafka_offset are pushed down to Kafka: only those
partitions and offset ranges are fetched. EXPLAIN shows them:" \
"EXPLAIN (VERBOSE, COSTS OFF)
SELECT kafka_offset, kafka_timestamp, kafka.from_varbyte(kafka_value, 'utf8') AS value
$slice;"
    show_sql "The start of that slice" \
"SELECT kafka_partition, kafka_offset, kafka_timestamp,
       kafka.from_varbyte(kafka_key, 'utf8') AS order_id,
       kafka.from_varbyte(kafka_value, 'utf8') AS value
$slice
ORDER BY kafka_offset
LIMIT 5;"
    show_sql "EXPLAIN ANALYZE shows the records and bytes actually read from Kafka
(here only partition 0 from offset 10 on, not the whole topic)" \
"EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF)
SELECT count(*)
$slice;"

    show_sql "Kafka headers, as jsonb" \
"SELECT kafka_partition, kafka_offset, kafka_headers
FROM $ORDER_TABLE
WHERE kafka_partition = 1 AND kafka_offset < 3;"
    show_sql "One header by name with kafka.header()" \
"SELECT kafka.header(kafka_headers, 'source') AS source, count(*) AS orders
FROM $ORDER_TABLE
GROUP BY 1
ORDER BY 1 NULLS LAST;"
}

# produce_more_customers N — N more customer records, produced with kcat (also against the test broker,
# which speaks the Kafka protocol like any cluster).
produce_more_customers() {
    local extra=()
    read -r -a extra <<<"${KCAT_ARGS:-}"
    awk -v n="$1" 'BEGIN {
        srand(7)
        split("Ava Liam Noah Emma Olivia Mia Lucas Ethan Zoe Chloe", first, " ")
        split("Brooks Reed Hayes Price Bell Ward Cole Grant Foster Gray", last, " ")
        split("Pliny The Elder|Duvel|Two Hearted Ale|Orval Trappist Ale|90 Minute IPA", beer, "|")
        split("Oregon|Texas|Ohio|Maine|Utah", state, "|")
        for (i = 0; i < n; i++)
            printf "new-%04d|{\"name\":\"%s %s\",\"gender\":\"%s\",\"favorite_beer\":\"%s\",\"state\":\"%s\"}\n",
                   i, first[1 + int(rand() * 10)], last[1 + int(rand() * 10)], (rand() < 0.5 ? "Male" : "Female"),
                   beer[1 + int(rand() * 5)], state[1 + int(rand() * 5)]
    }' | kcat -P -b "$KAFKA_BROKERS" -t "$CUSTOMER_TOPIC" -K '|' -m 15 "${extra[@]}" \
        || die "could not produce to $CUSTOMER_TOPIC"
    note "Produced $1 more records to $CUSTOMER_TOPIC."
}

step_streaming_view() {
    heading "A streaming materialized view: each REFRESH appends only what arrived since"
    show_sql "The analogue of Redshift's streaming materialized view over the customer topic" \
"CREATE MATERIALIZED VIEW msk_mview AS
SELECT kafka_partition, kafka_offset, kafka_timestamp_type, kafka_timestamp, kafka_key,
       kafka.json_parse(kafka_value) AS data, kafka_headers, refresh_time
  FROM msk_external_schema.\"$CUSTOMER_TOPIC\";
CREATE UNIQUE INDEX ON msk_mview (kafka_partition, kafka_offset);"
    show_sql "Loaded from the earliest offset" \
        "SELECT count(*) AS customers, count(DISTINCT refresh_time) AS refreshes FROM msk_mview;"
    produce_more_customers 50
    show_sql "REFRESH reads from the stored offsets to the high watermarks, exactly once" \
        "REFRESH MATERIALIZED VIEW msk_mview;
SELECT count(*) AS customers, count(DISTINCT refresh_time) AS refreshes FROM msk_mview;"
    show_sql "The newest customers" \
        "SELECT kafka_partition, kafka_offset, convert_from(kafka_key, 'UTF8') AS key,
       data->>'name' AS name, data->>'favorite_beer' AS favorite_beer
  FROM msk_mview ORDER BY kafka_offset DESC, kafka_partition LIMIT 5;"
}

step_aggregating_view() {
    heading "An aggregating streaming view: each REFRESH folds only the new records into the groups"
    show_sql "Orders per minute and customer, maintained incrementally (count, sum and avg per group)" \
"CREATE MATERIALIZED VIEW orders_per_minute AS
SELECT date_trunc('minute', kafka_timestamp) AS minute,
       kafka.json_parse(kafka_value)->>'customer_id' AS customer_id,
       count(*) AS orders,
       sum((kafka.json_parse(kafka_value)->>'quantity')::int) AS quantity,
       avg((kafka.json_parse(kafka_value)->>'quantity')::int) AS avg_quantity
  FROM $ORDER_TABLE
 GROUP BY 1, 2;"
    show_sql "Orders per state per minute: the state is the customer's, so a regular view joins the
incremental groups to the customers (a join cannot be folded in incrementally)" \
"CREATE VIEW orders_per_state_minute AS
SELECT o.minute, m.data->>'state' AS state,
       sum(o.orders) AS orders, sum(o.quantity) AS quantity
  FROM orders_per_minute o
  JOIN msk_mview m ON convert_from(m.kafka_key, 'UTF8') = o.customer_id
 GROUP BY 1, 2;
SELECT * FROM orders_per_state_minute ORDER BY minute DESC, orders DESC, state LIMIT 8;"
    show_sql "A refresh reads only the records since the stored offsets; the groups equal the full query" \
"REFRESH MATERIALIZED VIEW orders_per_minute;
SELECT (SELECT sum(orders) FROM orders_per_minute) AS orders_folded_in,
       (SELECT count(*) FROM $ORDER_TABLE) AS orders_in_topic;"
}

step_monitoring() {
    heading "Monitoring: what each refresh scanned, what it skipped, and the lag"
    show_sql "kafka.stream_scan_states (Redshift's SYS_STREAM_SCAN_STATES): one row per refresh and partition" \
        "SELECT mv_name, transaction_id, partition_id, start_position, latest_position,
       scanned_rows, skipped_rows, scanned_bytes
  FROM kafka.stream_scan_states ORDER BY record_time, partition_id;"
    show_sql "kafka.stream_scan_errors (SYS_STREAM_SCAN_ERRORS): skipped records and lost ranges, none here" \
        "SELECT mv_name, partition_id, position, error_code, error_reason FROM kafka.stream_scan_errors;"
    show_sql "kafka.streams: one row per streaming view" \
        "SELECT mv_name, topic, auto_refresh, last_refresh_rows, last_refresh_status, total_rows FROM kafka.streams;"
    show_sql "kafka.stream_lag: asks the brokers how far behind each partition is" \
        "SELECT mv_name, partition_id, next_offset, high_watermark, lag FROM kafka.stream_lag;"
}

step_auto_refresh() {
    local producer i
    heading "AUTO REFRESH: the view follows the topic by itself"
    show_sql "Like Redshift's AUTO REFRESH YES: a background worker refreshes the view when records arrive" \
        "SELECT kafka.set_auto_refresh('msk_mview', true);"
    note "A generator now produces 20 customers every 0.3 s for 4 seconds; no REFRESH is run from here on."
    ( for i in $(seq 1 13); do produce_more_customers 20 >/dev/null 2>&1; sleep 0.3; done ) &
    producer=$!
    track_pid "$producer"
    note "  time     | customers in the view"
    for i in 1 2 3 4 5; do
        sleep 1
        run_sql "SELECT now()::time(0) AS at, count(*) AS customers_in_view FROM msk_mview;" | sed -n 3p
    done
    wait "$producer" || true
    sleep 1
    show_sql "kafka.streams: the worker's refreshes" \
        "SELECT mv_name, auto_refresh, last_refresh_status, last_refresh_rows, total_rows FROM kafka.streams;"
}

step_finish() {
    CURRENT_STEP="finish"
    printf '\n=== Done: the demo took %.1f s after the build (%.1f s in all) ===\n' \
        "$(( $(now_ms) - BUILT_MS ))e-3" "$(( $(now_ms) - START_MS ))e-3"
    if [ "${KEEP:-0}" != 1 ]; then
        note "Everything started by the demo is being stopped and removed. (KEEP=1 keeps it running.)"
        DEMO_DONE=1
        return 0
    fi
    note "KEEP=1: PostgreSQL and the Kafka cluster keep running until you press Ctrl-C."
    note "  psql:   psql -h $PGHOST -p $PGPORT -U $ANALYST $DB    (superuser: -U $PGUSER)"
    note "  Kafka:  $KAFKA_BROKERS"
    note "          kcat -b $KAFKA_BROKERS -C -t $CUSTOMER_TOPIC -e"
    if [ -z "$EXTERNAL_BROKERS" ]; then
        note "          $BROKER ctl --state-dir $BROKER_STATE produce $CUSTOMER_TOPIC 0 KEY VALUE"
    fi
    note "  logs:   $WORK_DIR"
    DEMO_DONE=1
    trap 'printf "\nStopping and cleaning up...\n"; exit 0' INT TERM
    sleep infinity &
    track_pid $!
    wait $! || true
}

# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------
printf 'kafka_fdw demo: query Kafka topics with SQL, like an Amazon Redshift external schema over Amazon MSK\n'
step_build
step_kafka_with_sample_data
step_postgres
step_external_schema
step_queries
step_streaming_view
step_aggregating_view
step_monitoring
step_auto_refresh
step_finish

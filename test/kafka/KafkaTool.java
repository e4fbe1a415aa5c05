// test/kafka/KafkaTool.java — the Java side of the real-Kafka tests, on Kafka's own client library
// (kafka-clients), so that what the tests check against comes from the reference implementation and
// not from librdkafka, which kafka_fdw itself uses. Compiled by `test/kafka/kafka.sh start`.
//
//   java KafkaTool BOOTSTRAP create TOPIC PARTITIONS [CONFIG=VALUE ...]   create a topic (RF = brokers, max 3)
//   java KafkaTool BOOTSTRAP create-led TOPIC PARTITIONS NODE [CONFIG=VALUE ...]
//                                                                         the same, every partition's preferred
//                                                                         leader (first replica) node NODE
//   java KafkaTool BOOTSTRAP leaders TOPIC                                "PARTITION LEADER ISR" lines (-1: none)
//   java KafkaTool BOOTSTRAP delete TOPIC                                 delete a topic, wait until it is gone
//   java KafkaTool BOOTSTRAP partitions TOPIC COUNT                       grow a topic to COUNT partitions
//   java KafkaTool BOOTSTRAP config TOPIC CONFIG=VALUE ...                set topic configs
//   java KafkaTool BOOTSTRAP produce TOPIC                                run the script on stdin (below)
//   java KafkaTool BOOTSTRAP consume TOPIC                                every committed record (isolation.level
//                                                                         read_committed), one line each, sorted by
//                                                                         partition and offset: "P O TS_MS TYPE KEY VALUE
//                                                                         HEADERS", KEY and VALUE as x<hex> (~: null),
//                                                                         HEADERS as x<hex name>=x<hex value>,... (- none)
//   java KafkaTool BOOTSTRAP keyed TOPIC                                  send each line of stdin as the key (and value)
//                                                                         of a record with the default partitioner,
//                                                                         print "KEY PARTITION" per line
//
// produce reads one command per line and prints "done LINE" when the command has been carried out
// (records acknowledged by the broker, transactions committed or aborted):
//   plain P N [TS]   N records to partition P from a plain (non-transactional) producer, with the
//                    create time TS (ms since the epoch; default: now)
//   begin            begin a transaction of the transactional producer
//   send P N         N records to partition P in the open transaction (sent and acknowledged)
//   commit | abort   end the open transaction
//   quit             close both producers and exit
// Values are JSON {"kind": "plain|txn", "seq": n} with a sequence number over the run; keys "k<n>".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class KafkaTool {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: KafkaTool BOOTSTRAP create|delete|partitions|produce TOPIC ...");
            System.exit(2);
        }
        String bootstrap = args[0], cmd = args[1], topic = args[2];
        if (cmd.equals("produce")) {
            produce(bootstrap, topic);
            return;
        }
        if (cmd.equals("consume")) {
            consume(bootstrap, topic);
            return;
        }
        if (cmd.equals("keyed")) {
            keyed(bootstrap, topic);
            return;
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            switch (cmd) {
                case "create": {
                    int brokers = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).size();
                    NewTopic t = new NewTopic(topic, Integer.parseInt(args[3]), (short) Math.min(brokers, 3))
                        .configs(configs(args, 4));
                    admin.createTopics(Collections.singleton(t)).all().get(30, TimeUnit.SECONDS);
                    waitFor(admin, topic, true);
                    break;
                }
                case "create-led": {
                    List<Integer> nodes = new ArrayList<>();
                    for (org.apache.kafka.common.Node n : admin.describeCluster().nodes().get(30, TimeUnit.SECONDS))
                        nodes.add(n.id());
                    int leader = Integer.parseInt(args[4]);
                    if (!nodes.remove(Integer.valueOf(leader)))
                        throw new IllegalArgumentException("no node " + leader + " in " + nodes);
                    Collections.sort(nodes);
                    List<Integer> replicas = new ArrayList<>();
                    replicas.add(leader);
                    replicas.addAll(nodes.subList(0, Math.min(nodes.size(), 2)));
                    Map<Integer, List<Integer>> assignment = new HashMap<>();
                    for (int i = 0; i < Integer.parseInt(args[3]); i++)
                        assignment.put(i, replicas);
                    admin.createTopics(Collections.singleton(new NewTopic(topic, assignment).configs(configs(args, 5))))
                         .all().get(30, TimeUnit.SECONDS);
                    waitFor(admin, topic, true);
                    break;
                }
                case "leaders": {
                    org.apache.kafka.clients.admin.TopicDescription d =
                        admin.describeTopics(Collections.singleton(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
                    for (org.apache.kafka.common.TopicPartitionInfo pi : d.partitions()) {
                        StringBuilder isr = new StringBuilder();
                        for (org.apache.kafka.common.Node n : pi.isr())
                            isr.append(isr.length() > 0 ? "," : "").append(n.id());
                        System.out.println(pi.partition() + " " + (pi.leader() == null || pi.leader().isEmpty() ? -1 : pi.leader().id()) + " " + isr);
                    }
                    break;
                }
                case "delete":
                    admin.deleteTopics(Collections.singleton(topic)).all().get(30, TimeUnit.SECONDS);
                    waitFor(admin, topic, false);
                    break;
                case "partitions":
                    admin.createPartitions(Collections.singletonMap(topic, NewPartitions.increaseTo(Integer.parseInt(args[3]))))
                         .all().get(30, TimeUnit.SECONDS);
                    break;
                case "config": {
                    List<AlterConfigOp> ops = new ArrayList<>();
                    for (Map.Entry<String, String> e : configs(args, 3).entrySet())
                        ops.add(new AlterConfigOp(new ConfigEntry(e.getKey(), e.getValue()), AlterConfigOp.OpType.SET));
                    admin.incrementalAlterConfigs(Collections.singletonMap(new ConfigResource(ConfigResource.Type.TOPIC, topic), ops))
                         .all().get(30, TimeUnit.SECONDS);
                    break;
                }
                default:
                    System.err.println("unknown command " + cmd);
                    System.exit(2);
            }
        }
    }

    // configs — the CONFIG=VALUE arguments from index 'from' on.
    private static Map<String, String> configs(String[] args, int from) {
        Map<String, String> configs = new HashMap<>();
        for (String kv : Arrays.copyOfRange(args, Math.min(from, args.length), args.length)) {
            int eq = kv.indexOf('=');
            configs.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        return configs;
    }

    // waitFor — until the topic is listed (present) or not (absent), at most 30 s.
    private static void waitFor(Admin admin, String topic, boolean present) throws Exception {
        long deadline = System.currentTimeMillis() + 30000;
        while (admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic) != present) {
            if (System.currentTimeMillis() > deadline)
                throw new IllegalStateException("topic " + topic + (present ? " did not appear" : " was not deleted"));
            Thread.sleep(100);
        }
    }

    private static KafkaProducer<String, String> producer(String bootstrap, String txnId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        if (txnId != null) {
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
            p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "300000");   // an open transaction outlives the test
        }
        return new KafkaProducer<>(p);
    }

    private static void produce(String bootstrap, String topic) throws Exception {
        KafkaProducer<String, String> plain = producer(bootstrap, null);
        KafkaProducer<String, String> txn = producer(bootstrap, "kafka_fdw-test-" + topic);
        txn.initTransactions();
        long seq = 0;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            switch (w[0]) {
                case "plain":
                case "send": {
                    boolean isPlain = w[0].equals("plain");
                    KafkaProducer<String, String> pr = isPlain ? plain : txn;
                    int part = Integer.parseInt(w[1]), n = Integer.parseInt(w[2]);
                    Long ts = w.length > 3 ? Long.valueOf(w[3]) : null;
                    for (int i = 0; i < n; i++, seq++) {
                        String v = "{\"kind\": \"" + (isPlain ? "plain" : "txn") + "\", \"seq\": " + seq + "}";
                        pr.send(new ProducerRecord<>(topic, part, ts, "k" + seq, v));
                    }
                    pr.flush();
                    break;
                }
                case "begin": txn.beginTransaction(); break;
                case "commit": txn.commitTransaction(); break;
                case "abort": txn.abortTransaction(); break;
                case "quit":
                    plain.close();
                    txn.close();
                    System.out.println("done quit");
                    return;
                case "": break;
                default: throw new IllegalArgumentException("unknown produce command: " + line);
            }
            System.out.println("done " + line.trim());
            System.out.flush();
        }
        plain.close();
        txn.close();
    }

    private static String hex(byte[] b) {
        if (b == null) return "~";
        StringBuilder sb = new StringBuilder("x");
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    // consume — every committed record of TOPIC, as documented above.
    private static void consume(String bootstrap, String topic) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, java.time.Duration.ofSeconds(30)))
                tps.add(new TopicPartition(topic, pi.partition()));
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, java.time.Duration.ofSeconds(30));
            List<String> lines = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 60000;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps)
                    if (c.position(tp, java.time.Duration.ofSeconds(30)) < end.get(tp)) done = false;
                if (done) break;
                if (System.currentTimeMillis() > deadline) throw new IllegalStateException("consume did not reach the end offsets " + end);
                for (ConsumerRecord<byte[], byte[]> r : c.poll(java.time.Duration.ofMillis(200))) {
                    StringBuilder h = new StringBuilder();
                    for (Header hd : r.headers())
                        h.append(h.length() > 0 ? "," : "").append(hex(hd.key().getBytes(StandardCharsets.UTF_8))).append("=").append(hex(hd.value()));
                    lines.add(String.format("%d %d %d %s %s %s %s", r.partition(), r.offset(), r.timestamp(),
                        r.timestampType().id == 0 ? "C" : r.timestampType().id == 1 ? "L" : "U",
                        hex(r.key()), hex(r.value()), h.length() > 0 ? h : "-"));
                }
            }
            Collections.sort(lines, (a, b) -> {
                String[] x = a.split(" ", 3), y = b.split(" ", 3);
                int cmp = Integer.compare(Integer.parseInt(x[0]), Integer.parseInt(y[0]));
                return cmp != 0 ? cmp : Long.compare(Long.parseLong(x[1]), Long.parseLong(y[1]));
            });
            for (String l : lines) System.out.println(l);
        }
    }

    // keyed — records keyed by the lines of stdin through the default partitioner; "KEY PARTITION" each.
    private static void keyed(String bootstrap, String topic) throws Exception {
        try (KafkaProducer<String, String> pr = producer(bootstrap, null)) {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            List<String> keys = new ArrayList<>();
            String line;
            while ((line = in.readLine()) != null) {
                keys.add(line);
                fs.add(pr.send(new ProducerRecord<>(topic, line, line)));
            }
            for (int i = 0; i < keys.size(); i++)
                System.out.println(keys.get(i) + " " + fs.get(i).get(30, TimeUnit.SECONDS).partition());
        }
    }
}

/*
 * raw_consume - the yardstick of bench/scan_bench.sh: a plain librdkafka
 * consumer that reads a whole topic exactly as a kafka_fdw scan does.
 *
 *   raw_consume -b BROKERS -t TOPIC [-X prop=value]... [-v]
 *
 * prints one line:  records=N bytes=B elapsed_ms=T
 *
 * Semantics (the same as a kafka_fdw scan, see src/scan.c):
 *   - fetch the topic's partitions (metadata) and every partition's low and
 *     high watermark once, at start (two batched ListOffsets requests);
 *   - read each partition from low up to the high captured at start, then
 *     stop: a partition is done when the record at high - 1 arrived or the
 *     end of the partition was reported; records past high are dropped;
 *   - touch every record (records++, bytes += key_len + len) so that nothing
 *     is optimized away.
 *
 * It is meant to be a *good* consumer: the legacy per-partition consumer
 * (rd_kafka_consume_start_queue) of all partitions into one queue, drained
 * with rd_kafka_consume_batch_queue in batches of up to 1024 without waiting
 * (blocking in rd_kafka_consume_queue only when the queue is empty) -- the
 * fastest path librdkafka offers to an application, and the loop kafka_fdw
 * runs -- with kafka_fdw's consumer settings (src/option.c kafka_build_conf)
 * where they matter for fairness: isolation.level=read_committed (so the
 * high watermark is the last stable offset, as for the FDW),
 * fetch.wait.max.ms=10, enable.partition.eof=true, no offset commits.
 *
 * One deliberate difference: the prefetch queue limits (queued.min.messages,
 * queued.max.messages.kbytes) are left at librdkafka's defaults (100000
 * messages / 65536 KiB in 2.0.x).  With all partitions forwarded into one
 * queue the limits apply to that queue as a whole, and librdkafka < 2.3
 * parks every fetcher once they are reached, until its broker thread next
 * wakes up: up to 1 s later (librdkafka issue #2879; fetch.queue.backoff.ms
 * only exists from 2.3).  With small limits a plain consumer therefore
 * stalls for whole seconds at random, which a yardstick must not do.
 * bench/scan_bench.sh also runs this program with kafka_fdw's limits (-X) to
 * show their effect.  -X overrides or adds librdkafka properties.
 *
 * elapsed_ms covers everything from creating the handle to the last record
 * (handle, metadata, watermarks, fetch); not the final rd_kafka_destroy.
 * Exit status: 0 on success, 1 on any error (message on stderr).
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define BATCH_SIZE  1024
#define TIMEOUT_MS  30000			/* give up after this long without progress */

typedef struct PartScan
{
	int32_t		partition;
	int64_t		low;
	int64_t		high;
	int			done;
} PartScan;

static int	verbose = 0;

static void
die(const char *fmt, ...)
{
	va_list		ap;

	fprintf(stderr, "raw_consume: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("%s=%s: %s", name, value, errstr);
}

/* One batched ListOffsets round trip: query -2 (earliest) or -1 (latest). */
static void
list_offsets(rd_kafka_t *rk, const char *topic, PartScan *parts, int n,
			 int64_t query, int want_high)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
	rd_kafka_resp_err_t err;

	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(list, topic, parts[i].partition)->offset = query;
	err = rd_kafka_offsets_for_times(rk, list, TIMEOUT_MS);
	if (err)
		die("watermarks of \"%s\": %s", topic, rd_kafka_err2str(err));
	for (int i = 0; i < n; i++)
	{
		rd_kafka_topic_partition_t *tp =
			rd_kafka_topic_partition_list_find(list, topic, parts[i].partition);

		if (tp == NULL || tp->err)
			die("watermark of \"%s\" [%d]: %s", topic, (int) parts[i].partition,
				tp ? rd_kafka_err2str(tp->err) : "missing");
		if (want_high)
			parts[i].high = tp->offset < parts[i].low ? parts[i].low : tp->offset;
		else
			parts[i].low = tp->offset < 0 ? 0 : tp->offset;
	}
	rd_kafka_topic_partition_list_destroy(list);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: raw_consume -b BROKERS -t TOPIC [-X prop=value]... [-v]\n"
			"Reads every partition of TOPIC from its low to its high watermark (captured at\n"
			"start) and prints: records=N bytes=B elapsed_ms=T\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *brokers = NULL;
	const char *topic = NULL;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *queue;
	const struct rd_kafka_metadata *md;
	const rd_kafka_metadata_topic_t *mt;
	rd_kafka_message_t *batch[BATCH_SIZE];
	PartScan   *parts;
	int		   *index;
	int			nparts, maxid = -1, nactive = 0;
	int64_t		records = 0, bytes = 0, t0, t_meta, t_wm, last_progress;
	char		errstr[512];
	int			opt;

	conf = rd_kafka_conf_new();
	/* kafka_fdw's consumer settings (src/option.c kafka_build_conf) */
	conf_set(conf, "client.id", "raw_consume");
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "enable.auto.offset.store", "false");
	conf_set(conf, "enable.partition.eof", "true");
	conf_set(conf, "isolation.level", "read_committed");
	conf_set(conf, "auto.offset.reset", "earliest");
	conf_set(conf, "fetch.wait.max.ms", "10");
	conf_set(conf, "allow.auto.create.topics", "false");
	conf_set(conf, "log.connection.close", "false");

	while ((opt = getopt(argc, argv, "b:t:X:vh")) != -1)
	{
		switch (opt)
		{
			case 'b':
				brokers = optarg;
				break;
			case 't':
				topic = optarg;
				break;
			case 'X':
				{
					char	   *eq = strchr(optarg, '=');

					if (eq == NULL)
						die("-X expects prop=value, got \"%s\"", optarg);
					*eq = '\0';
					conf_set(conf, optarg, eq + 1);
				}
				break;
			case 'v':
				verbose = 1;
				break;
			default:
				usage();
		}
	}
	if (brokers == NULL || topic == NULL || optind != argc)
		usage();
	conf_set(conf, "bootstrap.servers", brokers);

	t0 = now_us();
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		die("rd_kafka_new: %s", errstr);

	/* partitions */
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rkt == NULL)
		die("topic \"%s\": %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
	{
		rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);

		if (err)
			die("metadata of \"%s\": %s", topic, rd_kafka_err2str(err));
	}
	if (md->topic_cnt != 1 || md->topics[0].err)
		die("topic \"%s\": %s", topic,
			md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
	mt = &md->topics[0];
	nparts = mt->partition_cnt;
	parts = calloc(nparts > 0 ? nparts : 1, sizeof(PartScan));
	if (parts == NULL)
		die("out of memory");
	for (int i = 0; i < nparts; i++)
	{
		parts[i].partition = mt->partitions[i].id;
		if (parts[i].partition > maxid)
			maxid = parts[i].partition;
	}
	rd_kafka_metadata_destroy(md);
	t_meta = now_us();

	/* watermarks, captured once */
	list_offsets(rk, topic, parts, nparts, RD_KAFKA_OFFSET_BEGINNING, 0);
	list_offsets(rk, topic, parts, nparts, RD_KAFKA_OFFSET_END, 1);
	t_wm = now_us();

	index = malloc(sizeof(int) * (maxid + 1 > 0 ? maxid + 1 : 1));
	if (index == NULL)
		die("out of memory");
	for (int i = 0; i <= maxid; i++)
		index[i] = -1;
	for (int i = 0; i < nparts; i++)
		index[parts[i].partition] = i;

	/* one fetcher per non-empty partition, all into one queue */
	queue = rd_kafka_queue_new(rk);
	for (int i = 0; i < nparts; i++)
	{
		if (parts[i].low >= parts[i].high)
		{
			parts[i].done = 1;
			continue;
		}
		if (rd_kafka_consume_start_queue(rkt, parts[i].partition, parts[i].low, queue) == -1)
			die("consume_start [%d]: %s", (int) parts[i].partition,
				rd_kafka_err2str(rd_kafka_last_error()));
		nactive++;
	}

	last_progress = now_us();
	while (nactive > 0)
	{
		/*
		 * Take what is queued without waiting: with a timeout,
		 * consume_batch_queue waits until the batch is *full* or the timeout
		 * expires, which would stall the last partial batch.  Only when the
		 * queue is empty, block for a single message.
		 */
		ssize_t		n = rd_kafka_consume_batch_queue(queue, 0, batch, BATCH_SIZE);

		if (n == 0)
		{
			rd_kafka_message_t *m = rd_kafka_consume_queue(queue, 100);

			if (m != NULL)
			{
				batch[0] = m;
				n = 1;
			}
		}
		if (n < 0)
			die("consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
		if (n == 0)
		{
			if (now_us() - last_progress > (int64_t) TIMEOUT_MS * 1000)
				die("no progress for %d ms with %d partition(s) unfinished", TIMEOUT_MS, nactive);
			continue;
		}
		last_progress = now_us();
		for (ssize_t j = 0; j < n; j++)
		{
			rd_kafka_message_t *m = batch[j];
			PartScan   *ps = NULL;

			if (m->partition >= 0 && m->partition <= maxid && index[m->partition] >= 0)
				ps = &parts[index[m->partition]];
			if (m->err)
			{
				if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
				{
					if (ps && !ps->done)
					{
						ps->done = 1;
						nactive--;
					}
				}
				else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
						 m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
						 m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
					die("consume [%d]: %s", (int) m->partition, rd_kafka_message_errstr(m));
				/* else transient: librdkafka retries */
			}
			else if (ps && !ps->done && m->offset >= ps->low)
			{
				if (m->offset >= ps->high)
				{
					ps->done = 1;
					nactive--;
				}
				else
				{
					records++;
					bytes += (int64_t) m->key_len + (int64_t) m->len;
					if (m->offset >= ps->high - 1)
					{
						ps->done = 1;
						nactive--;
					}
				}
			}
			rd_kafka_message_destroy(m);
		}
	}
	{
		int64_t		t_end = now_us();

		printf("records=%" PRId64 " bytes=%" PRId64 " elapsed_ms=%.1f\n",
			   records, bytes, (double) (t_end - t0) / 1000.0);
		if (verbose)
			fprintf(stderr, "raw_consume: %d partitions; handle+metadata %.1f ms, "
					"watermarks %.1f ms, fetch %.1f ms\n", nparts,
					(double) (t_meta - t0) / 1000.0, (double) (t_wm - t_meta) / 1000.0,
					(double) (t_end - t_wm) / 1000.0);
	}
	fflush(stdout);

	for (int i = 0; i < nparts; i++)
		if (!(parts[i].low >= parts[i].high))
			rd_kafka_consume_stop(rkt, parts[i].partition);
	rd_kafka_queue_destroy(queue);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	free(parts);
	free(index);
	return 0;
}

/*
 * ktb_commands.c - the control commands of kafka_test_broker.
 *
 * Every handler gets the tokens after the command name and fills \p out with
 * the reply text that follows "ok" (may stay empty) or "error" (the handler
 * returns -1). ktb_exec() assembles the final reply line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ktb.h"

#define KTB_MAX_ARGS      16
#define KTB_META_TIMEOUT  5000  /* ms */
#define KTB_WMARK_TIMEOUT 5000  /* ms */
#define FILL_TS_BASE      INT64_C(1700000000000)
#define MAX_VALUE_BYTES   (16 * 1024 * 1024)

static void err_reply(strbuf_t *out, const char *what, rd_kafka_resp_err_t err) {
        sb_printf(out, "%s: %s (%s)", what, rd_kafka_err2name(err),
                  rd_kafka_err2str(err));
}

/* Look up the partitions of \p topic through client handle \p rk (this also
 * refreshes \p rk's metadata cache for the topic). If \p leaders is not NULL
 * it receives a malloc'd array of the partition leaders' broker ids. */
static int topic_meta(rd_kafka_t *rk, const char *topic, int *cnt,
                      int32_t **leaders, strbuf_t *out) {
        rd_kafka_topic_t *rkt;
        const struct rd_kafka_metadata *md = NULL;
        const struct rd_kafka_metadata_topic *mt;
        rd_kafka_resp_err_t err;
        int ret = -1, i;

        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (!rkt) {
                err_reply(out, "topic handle", rd_kafka_last_error());
                return -1;
        }
        err = rd_kafka_metadata(rk, 0, rkt, &md, KTB_META_TIMEOUT);
        rd_kafka_topic_destroy(rkt);
        if (err) {
                err_reply(out, "metadata request failed", err);
                return -1;
        }
        mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
        if (!mt || strcmp(mt->topic, topic))
                sb_printf(out, "metadata: topic %s missing from response",
                          topic);
        else if (mt->err)
                err_reply(out, topic, mt->err);
        else if (mt->partition_cnt < 1)
                sb_printf(out, "topic %s has no partitions", topic);
        else if (leaders &&
                 !(*leaders = calloc((size_t)mt->partition_cnt,
                                     sizeof(**leaders))))
                sb_printf(out, "out of memory");
        else {
                *cnt = mt->partition_cnt;
                if (leaders) {
                        for (i = 0; i < mt->partition_cnt; i++)
                                (*leaders)[i] = -1;
                        for (i = 0; i < mt->partition_cnt; i++) {
                                const struct rd_kafka_metadata_partition *mp =
                                    &mt->partitions[i];
                                if (mp->id >= 0 && mp->id < *cnt)
                                        (*leaders)[mp->id] = mp->leader;
                        }
                }
                ret = 0;
        }
        rd_kafka_metadata_destroy(md);
        return ret;
}

static int topic_partition_count(rd_kafka_t *rk, const char *topic, int *cnt,
                                 strbuf_t *out) {
        return topic_meta(rk, topic, cnt, NULL, out);
}

/* Fail if partition \p part (or any partition when -1) of \p topic is led by
 * a broker that we set down. Nothing can bring it up while the control
 * thread waits, and some librdkafka calls (query_watermark_offsets) would
 * block forever, so such commands fail immediately. */
static int check_leaders_up(ktb_t *k, rd_kafka_t *rk, const char *topic,
                            int part, int *pcnt, strbuf_t *out) {
        int32_t *leaders = NULL;
        int i, cnt = 0, ret = 0;

        if (topic_meta(rk, topic, &cnt, &leaders, out))
                return -1;
        for (i = 0; i < cnt && !ret; i++) {
                int32_t l = leaders[i];
                if (part >= 0 && i != part)
                        continue;
                if (l < 0) {
                        sb_printf(out, "partition %d has no leader", i);
                        ret = -1;
                } else if (l <= k->broker_cnt && k->down[l]) {
                        sb_printf(out,
                                  "partition %d: leader broker %d is down "
                                  "(use `up %d` first)",
                                  i, (int)l, (int)l);
                        ret = -1;
                }
        }
        free(leaders);
        if (!ret && pcnt)
                *pcnt = cnt;
        return ret;
}

static int parse_broker_id(ktb_t *k, const char *s, int32_t *id,
                           strbuf_t *out) {
        int v;
        if (parse_int(s, 1, 1 << 30, &v)) {
                sb_printf(out, "bad broker id \"%s\" (brokers are 1..%d)", s,
                          k->broker_cnt);
                return -1;
        }
        *id = v;
        return 0;
}

static int parse_double(const char *s, double *out) {
        char *end;
        errno = 0;
        *out  = strtod(s, &end);
        if (!*s || errno || *end || !isfinite(*out))
                return -1;
        return 0;
}

/* ------------------------------------------------------------------ */
/* create / topic_error / leader                                        */
/* ------------------------------------------------------------------ */

static int cmd_create(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int parts;
        rd_kafka_resp_err_t err;
        (void)argc;

        if (parse_int(argv[1], 1, 1000000, &parts)) {
                sb_printf(out, "bad partition count \"%s\"", argv[1]);
                return -1;
        }
        err = rd_kafka_mock_topic_create(k->mcluster, argv[0], parts, 1);
        if (err) {
                err_reply(out, "create failed", err);
                return -1;
        }
        /* The mock picks a random leader among the replicas (and in 2.0.2
         * ignores the replication factor: every broker is a replica). Make
         * leadership deterministic: partition p is led by broker
         * p % broker_cnt + 1. */
        if (k->broker_cnt > 1) {
                int p;
                for (p = 0; p < parts; p++) {
                        err = rd_kafka_mock_partition_set_leader(
                            k->mcluster, argv[0], p, p % k->broker_cnt + 1);
                        if (err) {
                                sb_printf(out, "partition %d: ", p);
                                err_reply(out, "set leader failed", err);
                                return -1;
                        }
                }
        }
        return 0;
}

static int cmd_topic_error(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        rd_kafka_resp_err_t err;
        (void)argc;

        if (err_code_lookup(argv[1], &err)) {
                sb_printf(out, "unknown error code \"%s\"", argv[1]);
                return -1;
        }
        rd_kafka_mock_topic_set_error(k->mcluster, argv[0], err);
        return 0;
}

static int cmd_leader(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int part, broker;
        rd_kafka_resp_err_t err;
        (void)argc;

        if (parse_int(argv[1], 0, INT32_MAX, &part)) {
                sb_printf(out, "bad partition \"%s\"", argv[1]);
                return -1;
        }
        if (parse_int(argv[2], -1, INT32_MAX, &broker)) {
                sb_printf(out, "bad broker id \"%s\"", argv[2]);
                return -1;
        }
        err = rd_kafka_mock_partition_set_leader(k->mcluster, argv[0], part,
                                                 broker);
        if (err) {
                err_reply(out, "set leader failed", err);
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* produce                                                              */
/* ------------------------------------------------------------------ */

typedef struct {
        int done;
        rd_kafka_resp_err_t err;
        int64_t offset;
        int32_t partition;
} sync_wait_t;

/* dr_msg_cb of the "sync" client: runs inside rd_kafka_poll() in the
 * control thread. */
void ktb_sync_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                       void *opaque) {
        sync_wait_t *w = m->_private;
        (void)rk;
        (void)opaque;
        if (!w)
                return;
        w->err       = m->err;
        w->offset    = m->offset;
        w->partition = m->partition;
        w->done      = 1;
}

/* Parse "n1=v1,n2=v2" into a new headers list. */
static rd_kafka_headers_t *parse_headers(const char *spec, strbuf_t *out) {
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
        const char *p            = spec;

        for (;;) {
                const char *end = strchr(p, ',');
                const char *eq;
                size_t itemlen = end ? (size_t)(end - p) : strlen(p);
                bytes_t name, value;

                eq = memchr(p, '=', itemlen);
                if (!eq) {
                        sb_printf(out,
                                  "bad header \"%.*s\": expected name=value",
                                  (int)itemlen, p);
                        goto fail;
                }
                if (pct_decode(p, (size_t)(eq - p), 0, &name, out))
                        goto fail;
                if (pct_decode(eq + 1, itemlen - (size_t)(eq - p) - 1, 1,
                               &value, out)) {
                        bytes_free(&name);
                        goto fail;
                }
                rd_kafka_header_add(hdrs, name.data, (ssize_t)name.len,
                                    value.is_null ? NULL : value.data,
                                    (ssize_t)value.len);
                bytes_free(&name);
                bytes_free(&value);
                if (!end)
                        break;
                p = end + 1;
        }
        return hdrs;

fail:
        rd_kafka_headers_destroy(hdrs);
        return NULL;
}

static int cmd_produce(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        static char empty[1] = "";
        const char *topic        = argv[0];
        int partition;
        int64_t ts               = 0;
        bytes_t key              = {0}, value = {0};
        rd_kafka_headers_t *hdrs = NULL;
        sync_wait_t w;
        rd_kafka_vu_t vus[9];
        size_t vcnt;
        rd_kafka_error_t *error = NULL;
        int attempt, ret = -1;

        if (parse_int(argv[1], -1, INT32_MAX, &partition)) {
                sb_printf(out, "bad partition \"%s\"", argv[1]);
                return -1;
        }
        if (argc > 4 && strcmp(argv[4], "-") &&
            (parse_i64(argv[4], &ts) || ts < 0)) {
                sb_printf(out, "bad timestamp \"%s\"", argv[4]);
                return -1;
        }
        if (pct_decode(argv[2], strlen(argv[2]), 1, &key, out))
                goto done;
        if (pct_decode(argv[3], strlen(argv[3]), 1, &value, out))
                goto done;
        if (argc > 5 && strcmp(argv[5], "-") &&
            !(hdrs = parse_headers(argv[5], out)))
                goto done;
        if (k->down_cnt > 0 && partition >= 0 &&
            check_leaders_up(k, k->sync_rk, topic, partition, NULL, out))
                goto done;

        for (attempt = 0; attempt < 2; attempt++) {
                rd_kafka_resp_err_t perr;
                int dummy;

                memset(&w, 0, sizeof(w));
                vcnt = 0;
                vus[vcnt].vtype    = RD_KAFKA_VTYPE_TOPIC;
                vus[vcnt++].u.cstr = topic;
                vus[vcnt].vtype    = RD_KAFKA_VTYPE_PARTITION;
                vus[vcnt++].u.i32  = partition;
                vus[vcnt].vtype    = RD_KAFKA_VTYPE_MSGFLAGS;
                vus[vcnt++].u.i    = RD_KAFKA_MSG_F_COPY;
                /* NULL pointer = null key/value on the wire; a non-NULL
                 * pointer with length 0 = empty. */
                vus[vcnt].vtype       = RD_KAFKA_VTYPE_KEY;
                vus[vcnt].u.mem.ptr   = key.is_null ? NULL
                                        : key.len  ? key.data
                                                   : empty;
                vus[vcnt++].u.mem.size = key.len;
                vus[vcnt].vtype        = RD_KAFKA_VTYPE_VALUE;
                vus[vcnt].u.mem.ptr    = value.is_null ? NULL
                                         : value.len  ? value.data
                                                      : empty;
                vus[vcnt++].u.mem.size = value.len;
                vus[vcnt].vtype        = RD_KAFKA_VTYPE_TIMESTAMP;
                vus[vcnt++].u.i64      = ts;
                vus[vcnt].vtype        = RD_KAFKA_VTYPE_OPAQUE;
                vus[vcnt++].u.ptr      = &w;
                if (hdrs) {
                        vus[vcnt].vtype     = RD_KAFKA_VTYPE_HEADERS;
                        vus[vcnt++].u.headers = hdrs;
                }

                error = rd_kafka_produceva(k->sync_rk, vus, vcnt);
                if (!error) {
                        hdrs = NULL; /* now owned by librdkafka */
                        break;
                }
                perr = rd_kafka_error_code(error);
                if (attempt > 0 ||
                    (perr != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC &&
                     perr != RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION))
                        break;
                /* The client's metadata cache may predate a `create`:
                 * refresh it and try once more. */
                rd_kafka_error_destroy(error);
                error = NULL;
                sb_reset(out);
                if (topic_partition_count(k->sync_rk, topic, &dummy, out))
                        goto done;
        }
        if (error) {
                sb_printf(out, "produce failed: %s (%s)",
                          rd_kafka_err2name(rd_kafka_error_code(error)),
                          rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                goto done;
        }

        /* message.timeout.ms bounds this wait; on a termination signal the
         * message is purged (its delivery report then arrives at once). */
        while (!w.done) {
                rd_kafka_poll(k->sync_rk, 50);
                if (KTB_ABORTED() && !w.done)
                        rd_kafka_purge(k->sync_rk, RD_KAFKA_PURGE_F_QUEUE |
                                                       RD_KAFKA_PURGE_F_INFLIGHT);
        }

        if (w.err) {
                err_reply(out, "delivery failed", w.err);
                goto done;
        }
        sb_printf(out, "%" PRId64, w.offset);
        if (partition == RD_KAFKA_PARTITION_UA)
                sb_printf(out, " %" PRId32, w.partition);
        ret = 0;

done:
        if (hdrs)
                rd_kafka_headers_destroy(hdrs);
        bytes_free(&key);
        bytes_free(&value);
        return ret;
}

/* ------------------------------------------------------------------ */
/* fill                                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
        int64_t delivered;
        int64_t failed;
        rd_kafka_resp_err_t first_err;
} bulk_state_t;

/* dr_msg_cb of the "bulk" and "gen" clients. For the generator it runs in
 * the generator thread (which is the only one polling that handle). */
void ktb_bulk_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                       void *opaque) {
        bulk_state_t *st = m->_private;
        (void)rk;
        (void)opaque;
        if (!st)
                return;
        if (m->err) {
                if (!st->failed)
                        st->first_err = m->err;
                st->failed++;
        } else
                st->delivered++;
}

/* Wait until \p rk's queue is drained (bounded by message.timeout.ms plus
 * slack); returns the number of messages still queued afterwards. */
static int drain(rd_kafka_t *rk, int max_ms) {
        int64_t deadline = now_mono_us() + (int64_t)max_ms * 1000;
        while (rd_kafka_outq_len(rk) > 0 && now_mono_us() < deadline)
                rd_kafka_flush(rk, 200);
        rd_kafka_poll(rk, 0);
        return rd_kafka_outq_len(rk);
}

static int cmd_fill(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        const char *topic = argv[0];
        int64_t count, i, vbytes, t0;
        int pcnt, left;
        bulk_state_t st        = {0, 0, RD_KAFKA_RESP_ERR_NO_ERROR};
        rd_kafka_resp_err_t perr = RD_KAFKA_RESP_ERR_NO_ERROR;
        int64_t enqueued       = 0;
        char *vbuf;
        size_t vbufsz;
        char kbuf[32];
        (void)argc;

        if (parse_i64(argv[1], &count) || count < 0) {
                sb_printf(out, "bad count \"%s\"", argv[1]);
                return -1;
        }
        if (parse_i64(argv[2], &vbytes) || vbytes < 0 ||
            vbytes > MAX_VALUE_BYTES) {
                sb_printf(out, "bad value size \"%s\" (0..%d)", argv[2],
                          MAX_VALUE_BYTES);
                return -1;
        }
        if (check_leaders_up(k, k->bulk_rk, topic, -1, &pcnt, out))
                return -1;

        vbufsz = (size_t)vbytes + 160;
        vbuf   = malloc(vbufsz);
        if (!vbuf) {
                sb_printf(out, "out of memory");
                return -1;
        }

        t0 = now_mono_us();
        for (i = 0; i < count && !KTB_ABORTED(); i++) {
                size_t vlen = make_value(vbuf, vbufsz, i, (size_t)vbytes, -1);
                int klen = snprintf(kbuf, sizeof(kbuf), "key-%" PRId64, i);

                for (;;) {
                        perr = rd_kafka_producev(
                            k->bulk_rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_PARTITION((int32_t)(i % pcnt)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(kbuf, (size_t)klen),
                            RD_KAFKA_V_VALUE(vbuf, vlen),
                            RD_KAFKA_V_TIMESTAMP(FILL_TS_BASE + i),
                            RD_KAFKA_V_OPAQUE(&st), RD_KAFKA_V_END);
                        if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
                            KTB_ABORTED())
                                break;
                        rd_kafka_poll(k->bulk_rk, 5);
                }
                if (perr)
                        break;
                enqueued++;
                if ((i & 1023) == 0)
                        rd_kafka_poll(k->bulk_rk, 0);
        }
        free(vbuf);

        left = KTB_ABORTED() ? 1 : drain(k->bulk_rk, 70000);
        if (left > 0) {
                /* Should not happen (message.timeout.ms fires first). */
                rd_kafka_purge(k->bulk_rk, RD_KAFKA_PURGE_F_QUEUE |
                                               RD_KAFKA_PURGE_F_INFLIGHT);
                drain(k->bulk_rk, 5000);
        }

        if (KTB_ABORTED()) {
                sb_printf(out, "interrupted by shutdown");
                return -1;
        }
        if (perr) {
                sb_printf(out,
                          "produce failed after %" PRId64 " of %" PRId64
                          " records: %s (%s)",
                          enqueued, count, rd_kafka_err2name(perr),
                          rd_kafka_err2str(perr));
                return -1;
        }
        if (st.failed || st.delivered != count) {
                sb_printf(out,
                          "%" PRId64 " of %" PRId64
                          " deliveries failed, first error: %s (%s)",
                          count - st.delivered, count,
                          rd_kafka_err2name(st.first_err),
                          rd_kafka_err2str(st.first_err));
                return -1;
        }
        sb_printf(out, "%" PRId64 " %" PRId64, count,
                  (now_mono_us() - t0) / 1000);
        return 0;
}

/* ------------------------------------------------------------------ */
/* generate / generate_wait                                             */
/* ------------------------------------------------------------------ */

struct generator_s {
        pthread_t thr;
        rd_kafka_t *rk;
        char *topic;
        int pcnt;
        double rate;
        double seconds;
        size_t value_bytes;
        int64_t first_id;

        int stop;     /* __atomic: request early stop */
        int finished; /* __atomic: thread done */
        int joined;

        bulk_state_t st;     /* updated by DR callbacks in the thread */
        int64_t enq_failed;  /* producev failures */
};

static void *generator_main(void *arg) {
        generator_t *g = arg;
        int64_t total  = (int64_t)llround(g->rate * g->seconds);
        int64_t t0     = now_mono_us();
        int64_t i      = 0;
        size_t vbufsz  = g->value_bytes + 192;
        char *vbuf     = malloc(vbufsz);
        char kbuf[32];
        int left;

        while (vbuf && i < total && !KTB_ABORTED() &&
               !__atomic_load_n(&g->stop, __ATOMIC_RELAXED)) {
                int64_t now = now_mono_us();
                /* Records due by now (record n is due at t0 + n/rate). */
                int64_t due = (int64_t)((double)(now - t0) * g->rate / 1e6) + 1;
                int64_t next_us;

                if (due > total)
                        due = total;
                while (i < due) {
                        int64_t id    = g->first_id + i;
                        int64_t ts_us = now_real_us();
                        size_t vlen   = make_value(vbuf, vbufsz, id,
                                                   g->value_bytes, ts_us);
                        int klen = snprintf(kbuf, sizeof(kbuf), "key-%" PRId64,
                                            id);
                        rd_kafka_resp_err_t perr = rd_kafka_producev(
                            g->rk, RD_KAFKA_V_TOPIC(g->topic),
                            RD_KAFKA_V_PARTITION((int32_t)(i % g->pcnt)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(kbuf, (size_t)klen),
                            RD_KAFKA_V_VALUE(vbuf, vlen),
                            RD_KAFKA_V_TIMESTAMP(ts_us / 1000),
                            RD_KAFKA_V_OPAQUE(&g->st), RD_KAFKA_V_END);
                        if (perr == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                if (KTB_ABORTED() ||
                                    __atomic_load_n(&g->stop, __ATOMIC_RELAXED))
                                        break;
                                rd_kafka_poll(g->rk, 1);
                                continue;
                        }
                        if (perr)
                                g->enq_failed++;
                        i++;
                }
                rd_kafka_poll(g->rk, 0);
                if (i >= total)
                        break;
                next_us = t0 + (int64_t)((double)i * 1e6 / g->rate);
                now     = now_mono_us();
                if (next_us > now) {
                        int ms = (int)((next_us - now + 999) / 1000);
                        rd_kafka_poll(g->rk, ms > 50 ? 50 : ms);
                }
        }
        if (!vbuf)
                g->enq_failed = total;
        free(vbuf);

        left = (KTB_ABORTED() || __atomic_load_n(&g->stop, __ATOMIC_RELAXED))
                   ? 1
                   : drain(g->rk, 70000);
        if (left > 0) {
                rd_kafka_purge(g->rk, RD_KAFKA_PURGE_F_QUEUE |
                                          RD_KAFKA_PURGE_F_INFLIGHT);
                drain(g->rk, 5000);
        }
        rd_kafka_destroy(g->rk);
        g->rk = NULL;
        __atomic_store_n(&g->finished, 1, __ATOMIC_RELEASE);
        return NULL;
}

static void generator_free(generator_t *g) {
        if (!g)
                return;
        if (!g->joined)
                pthread_join(g->thr, NULL);
        if (g->rk)
                rd_kafka_destroy(g->rk);
        free(g->topic);
        free(g);
}

void ktb_generator_stop(ktb_t *k) {
        if (!k->gen)
                return;
        __atomic_store_n(&k->gen->stop, 1, __ATOMIC_RELAXED);
        generator_free(k->gen);
        k->gen = NULL;
}

static int cmd_generate(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        double rate, seconds;
        int64_t vbytes = 150, first_id = 0;
        generator_t *g;
        int err;

        if (k->gen && !k->gen->joined) {
                if (!__atomic_load_n(&k->gen->finished, __ATOMIC_ACQUIRE)) {
                        sb_printf(out, "a generator is already running "
                                       "(use generate_wait)");
                        return -1;
                }
        }
        if (parse_double(argv[1], &rate) || rate <= 0 || rate > 1e8) {
                sb_printf(out, "bad rate \"%s\"", argv[1]);
                return -1;
        }
        if (parse_double(argv[2], &seconds) || seconds < 0 ||
            seconds > 86400 * 7) {
                sb_printf(out, "bad duration \"%s\"", argv[2]);
                return -1;
        }
        if (argc > 3 && (parse_i64(argv[3], &vbytes) || vbytes < 0 ||
                         vbytes > MAX_VALUE_BYTES)) {
                sb_printf(out, "bad value size \"%s\"", argv[3]);
                return -1;
        }
        if (argc > 4 && (parse_i64(argv[4], &first_id) || first_id < 0)) {
                sb_printf(out, "bad first id \"%s\"", argv[4]);
                return -1;
        }

        g = calloc(1, sizeof(*g));
        if (!g) {
                sb_printf(out, "out of memory");
                return -1;
        }
        g->joined      = 1; /* until the thread exists */
        g->rate        = rate;
        g->seconds     = seconds;
        g->value_bytes = (size_t)vbytes;
        g->first_id    = first_id;
        g->topic       = strdup(argv[0]);
        if (!g->topic) {
                sb_printf(out, "out of memory");
                goto fail;
        }
        if (!(g->rk = ktb_client_new(k, "gen", out)))
                goto fail;
        if (topic_partition_count(g->rk, g->topic, &g->pcnt, out))
                goto fail;
        if ((err = pthread_create(&g->thr, NULL, generator_main, g))) {
                sb_printf(out, "pthread_create: %s", strerror(err));
                goto fail;
        }
        g->joined = 0;

        /* Replace the previous (finished) generator. */
        ktb_generator_stop(k);
        k->gen = g;
        return 0;

fail:
        generator_free(g);
        return -1;
}

static int cmd_generate_wait(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        generator_t *g = k->gen;
        (void)argc;
        (void)argv;

        if (!g) {
                sb_printf(out, "no generator has been started");
                return -1;
        }
        if (!g->joined) {
                pthread_join(g->thr, NULL);
                g->joined = 1;
        }
        sb_printf(out, "%" PRId64 " %" PRId64, g->st.delivered,
                  g->st.failed + g->enq_failed);
        return 0;
}

/* ------------------------------------------------------------------ */
/* broker faults                                                        */
/* ------------------------------------------------------------------ */

static int cmd_down(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int32_t id;
        rd_kafka_resp_err_t err;
        (void)argc;
        if (parse_broker_id(k, argv[0], &id, out))
                return -1;
        if ((err = rd_kafka_mock_broker_set_down(k->mcluster, id))) {
                err_reply(out, "broker down failed", err);
                return -1;
        }
        if (id <= k->broker_cnt && !k->down[id]) {
                k->down[id] = 1;
                k->down_cnt++;
        }
        return 0;
}

static int cmd_up(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int32_t id;
        rd_kafka_resp_err_t err;
        (void)argc;
        if (parse_broker_id(k, argv[0], &id, out))
                return -1;
        if ((err = rd_kafka_mock_broker_set_up(k->mcluster, id))) {
                err_reply(out, "broker up failed", err);
                return -1;
        }
        if (id <= k->broker_cnt && k->down[id]) {
                k->down[id] = 0;
                k->down_cnt--;
        }
        return 0;
}

static int cmd_rtt(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int32_t id;
        int ms;
        rd_kafka_resp_err_t err;
        (void)argc;
        if (parse_broker_id(k, argv[0], &id, out))
                return -1;
        if (parse_int(argv[1], 0, 3600 * 1000, &ms)) {
                sb_printf(out, "bad rtt \"%s\" (milliseconds)", argv[1]);
                return -1;
        }
        if ((err = rd_kafka_mock_broker_set_rtt(k->mcluster, id, ms))) {
                err_reply(out, "set rtt failed", err);
                return -1;
        }
        return 0;
}

static int cmd_error(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int api, cnt, i;
        rd_kafka_resp_err_t err, *errs;
        (void)argc;

        if ((api = api_key_lookup(argv[0])) < 0) {
                sb_printf(out, "unknown API \"%s\"", argv[0]);
                return -1;
        }
        if (err_code_lookup(argv[1], &err)) {
                sb_printf(out, "unknown error code \"%s\"", argv[1]);
                return -1;
        }
        if (parse_int(argv[2], 1, 1000000, &cnt)) {
                sb_printf(out, "bad count \"%s\"", argv[2]);
                return -1;
        }
        errs = malloc(sizeof(*errs) * (size_t)cnt);
        if (!errs) {
                sb_printf(out, "out of memory");
                return -1;
        }
        for (i = 0; i < cnt; i++)
                errs[i] = err;
        rd_kafka_mock_push_request_errors_array(k->mcluster, (int16_t)api,
                                                (size_t)cnt, errs);
        free(errs);
        return 0;
}

static int cmd_clear(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int api;
        (void)argc;
        if ((api = api_key_lookup(argv[0])) < 0) {
                sb_printf(out, "unknown API \"%s\"", argv[0]);
                return -1;
        }
        rd_kafka_mock_clear_request_errors(k->mcluster, (int16_t)api);
        return 0;
}

static int cmd_apiversion(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int api, minv, maxv;
        rd_kafka_resp_err_t err;
        (void)argc;

        if ((api = api_key_lookup(argv[0])) < 0) {
                sb_printf(out, "unknown API \"%s\"", argv[0]);
                return -1;
        }
        if (parse_int(argv[1], -1, 32767, &minv) ||
            parse_int(argv[2], -1, 32767, &maxv)) {
                sb_printf(out, "bad version range \"%s %s\"", argv[1],
                          argv[2]);
                return -1;
        }
        err = rd_kafka_mock_set_apiversion(k->mcluster, (int16_t)api,
                                           (int16_t)minv, (int16_t)maxv);
        if (err) {
                err_reply(out, "set apiversion failed", err);
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* queries                                                              */
/* ------------------------------------------------------------------ */

static int cmd_watermarks(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        int pcnt, p;
        (void)argc;

        if (check_leaders_up(k, k->sync_rk, argv[0], -1, &pcnt, out))
                return -1;
        for (p = 0; p < pcnt; p++) {
                int64_t lo, hi;
                rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
                    k->sync_rk, argv[0], p, &lo, &hi, KTB_WMARK_TIMEOUT);
                if (err) {
                        sb_reset(out);
                        sb_printf(out, "partition %d: ", p);
                        err_reply(out, "watermark query failed", err);
                        return -1;
                }
                sb_printf(out, "%s%d:%" PRId64 ":%" PRId64, p ? " " : "", p,
                          lo, hi);
        }
        return 0;
}

static int cmd_bootstrap(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        (void)argc;
        (void)argv;
        sb_printf(out, "%s", k->bootstrap);
        return 0;
}

static int cmd_ping(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        (void)k;
        (void)argc;
        (void)argv;
        sb_printf(out, "pong");
        return 0;
}

static int cmd_shutdown(ktb_t *k, int argc, char **argv, strbuf_t *out) {
        (void)argc;
        (void)argv;
        if (k->in_preload) {
                sb_printf(out, "shutdown is not allowed in a preload file");
                return -1;
        }
        k->shutdown = 1;
        return 0;
}

/* ------------------------------------------------------------------ */
/* dispatch                                                             */
/* ------------------------------------------------------------------ */

static const struct {
        const char *name;
        int min_args, max_args;
        const char *usage;
        int (*fn)(ktb_t *k, int argc, char **argv, strbuf_t *out);
        int mock_only; /* needs the mock cluster (refused with --external) */
} commands[] = {
    {"create", 2, 2, "create TOPIC PARTITIONS", cmd_create, 1},
    {"produce", 4, 6,
     "produce TOPIC PARTITION KEY VALUE [TIMESTAMP_MS [HEADERS]]",
     cmd_produce, 0},
    {"fill", 3, 3, "fill TOPIC COUNT VALUE_BYTES", cmd_fill, 0},
    {"generate", 3, 5, "generate TOPIC RATE SECONDS [VALUE_BYTES [FIRST_ID]]",
     cmd_generate, 0},
    {"generate_wait", 0, 0, "generate_wait", cmd_generate_wait, 0},
    {"down", 1, 1, "down BROKER_ID", cmd_down, 1},
    {"up", 1, 1, "up BROKER_ID", cmd_up, 1},
    {"rtt", 2, 2, "rtt BROKER_ID MS", cmd_rtt, 1},
    {"error", 3, 3, "error API ERR COUNT", cmd_error, 1},
    {"clear", 1, 1, "clear API", cmd_clear, 1},
    {"topic_error", 2, 2, "topic_error TOPIC ERR", cmd_topic_error, 1},
    {"leader", 3, 3, "leader TOPIC PARTITION BROKER_ID", cmd_leader, 1},
    {"apiversion", 3, 3, "apiversion API MIN MAX", cmd_apiversion, 1},
    {"watermarks", 1, 1, "watermarks TOPIC", cmd_watermarks, 0},
    {"bootstrap", 0, 0, "bootstrap", cmd_bootstrap, 0},
    {"ping", 0, 0, "ping", cmd_ping, 0},
    {"shutdown", 0, 0, "shutdown", cmd_shutdown, 0},
};

int ktb_exec(ktb_t *k, char *line, strbuf_t *reply) {
        char *argv[KTB_MAX_ARGS];
        int argc;
        size_t i;
        strbuf_t out;
        int rc;
        char *p;

        sb_reset(reply);
        argc = tokenize(line, argv, KTB_MAX_ARGS);
        if (argc == 0) {
                sb_printf(reply, "error usage: empty command");
                return 0;
        }

        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[0], commands[i].name))
                        break;
        if (i == sizeof(commands) / sizeof(commands[0])) {
                size_t j;
                sb_printf(reply, "error usage: unknown command \"%s\"; one of:",
                          argv[0]);
                for (j = 0; j < sizeof(commands) / sizeof(commands[0]); j++)
                        sb_printf(reply, " %s", commands[j].name);
                return 0;
        }
        if (argc - 1 < commands[i].min_args ||
            argc - 1 > commands[i].max_args) {
                sb_printf(reply, "error usage: %s", commands[i].usage);
                return 0;
        }

        if (commands[i].mock_only && !k->mcluster) {
                sb_printf(reply, "error %s needs the mock cluster (this broker "
                          "serves --external %s)", argv[0], k->bootstrap);
                return 0;
        }

        sb_init(&out);
        rc = commands[i].fn(k, argc - 1, argv + 1, &out);
        /* Replies are single lines. */
        for (p = out.s; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        if (rc == 0)
                sb_printf(reply, "ok%s%s", out.len ? " " : "", out.s);
        else
                sb_printf(reply, "error %s",
                          out.len ? out.s : "command failed");
        sb_free(&out);
        return 0;
}

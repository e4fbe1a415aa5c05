/*
 * ktb_util.c - string buffers, argument decoding, name tables and value
 * generation for kafka_test_broker.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ktb.h"

/* ------------------------------------------------------------------ */
/* strbuf                                                               */
/* ------------------------------------------------------------------ */

static void sb_reserve(strbuf_t *sb, size_t extra) {
        size_t need = sb->len + extra + 1;
        size_t ncap;
        char *n;

        if (need <= sb->cap)
                return;
        ncap = sb->cap ? sb->cap : 64;
        while (ncap < need)
                ncap *= 2;
        n = realloc(sb->s, ncap);
        if (!n) {
                fprintf(stderr, "kafka_test_broker: out of memory\n");
                abort();
        }
        sb->s   = n;
        sb->cap = ncap;
}

void sb_init(strbuf_t *sb) {
        sb->s   = NULL;
        sb->len = 0;
        sb->cap = 0;
        sb_reserve(sb, 0);
        sb->s[0] = '\0';
}

void sb_free(strbuf_t *sb) {
        free(sb->s);
        sb->s   = NULL;
        sb->len = sb->cap = 0;
}

void sb_reset(strbuf_t *sb) {
        sb->len = 0;
        if (sb->s)
                sb->s[0] = '\0';
}

void sb_append(strbuf_t *sb, const char *data, size_t len) {
        sb_reserve(sb, len);
        memcpy(sb->s + sb->len, data, len);
        sb->len += len;
        sb->s[sb->len] = '\0';
}

void sb_vprintf(strbuf_t *sb, const char *fmt, va_list ap) {
        va_list ap2;
        int n;

        va_copy(ap2, ap);
        n = vsnprintf(NULL, 0, fmt, ap2);
        va_end(ap2);
        if (n < 0)
                return;
        sb_reserve(sb, (size_t)n);
        vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
        sb->len += (size_t)n;
}

void sb_printf(strbuf_t *sb, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        sb_vprintf(sb, fmt, ap);
        va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Argument decoding                                                    */
/* ------------------------------------------------------------------ */

void bytes_free(bytes_t *b) {
        free(b->data);
        b->data    = NULL;
        b->len     = 0;
        b->is_null = 0;
}

static int hexval(int c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int pct_decode(const char *in, size_t len, int allow_null, bytes_t *out,
               strbuf_t *err) {
        size_t i, o = 0;

        out->data    = NULL;
        out->len     = 0;
        out->is_null = 0;

        if (allow_null && len == 1 && in[0] == '~') {
                out->is_null = 1;
                return 0;
        }

        out->data = malloc(len + 1);
        if (!out->data) {
                sb_printf(err, "out of memory");
                return -1;
        }

        /* "" is the empty (non-null) byte string. */
        if (allow_null && len == 2 && in[0] == '"' && in[1] == '"') {
                out->data[0] = '\0';
                return 0;
        }

        for (i = 0; i < len; i++) {
                if (in[i] == '%') {
                        int hi, lo;
                        if (i + 2 >= len) {
                                sb_printf(err,
                                          "bad percent escape at end of "
                                          "\"%.*s\"",
                                          (int)len, in);
                                goto fail;
                        }
                        hi = hexval((unsigned char)in[i + 1]);
                        lo = hexval((unsigned char)in[i + 2]);
                        if (hi < 0 || lo < 0) {
                                sb_printf(err,
                                          "bad percent escape \"%.3s\" in "
                                          "\"%.*s\"",
                                          in + i, (int)len, in);
                                goto fail;
                        }
                        out->data[o++] = (char)(hi * 16 + lo);
                        i += 2;
                } else {
                        out->data[o++] = in[i];
                }
        }
        out->data[o] = '\0';
        out->len     = o;
        return 0;

fail:
        bytes_free(out);
        return -1;
}

int tokenize(char *line, char **argv, int max) {
        int n   = 0;
        char *p = line;

        for (;;) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                if (n < max)
                        argv[n] = p;
                n++;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                if (!*p)
                        break;
                *p++ = '\0';
        }
        return n;
}

int parse_i64(const char *s, int64_t *out) {
        char *end;
        long long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v     = strtoll(s, &end, 10);
        if (errno || *end)
                return -1;
        *out = (int64_t)v;
        return 0;
}

int parse_int(const char *s, int min, int max, int *out) {
        int64_t v;
        if (parse_i64(s, &v) || v < min || v > max)
                return -1;
        *out = (int)v;
        return 0;
}

/* ------------------------------------------------------------------ */
/* Name tables                                                          */
/* ------------------------------------------------------------------ */

static const struct {
        const char *name;
        int key;
} api_names[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Offsets", 2},
    {"Metadata", 3},
    {"LeaderAndIsr", 4},
    {"StopReplica", 5},
    {"UpdateMetadata", 6},
    {"ControlledShutdown", 7},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"GroupCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"ApiVersion", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"WriteTxnMarkers", 27},
    {"TxnOffsetCommit", 28},
    {"DescribeAcls", 29},
    {"CreateAcls", 30},
    {"DeleteAcls", 31},
    {"DescribeConfigs", 32},
    {"AlterConfigs", 33},
    {"AlterReplicaLogDirs", 34},
    {"DescribeLogDirs", 35},
    {"SaslAuthenticate", 36},
    {"CreatePartitions", 37},
    {"CreateDelegationToken", 38},
    {"RenewDelegationToken", 39},
    {"ExpireDelegationToken", 40},
    {"DescribeDelegationToken", 41},
    {"DeleteGroups", 42},
    {"ElectLeaders", 43},
    {"IncrementalAlterConfigs", 44},
    {"AlterPartitionReassignments", 45},
    {"ListPartitionReassignments", 46},
    {"OffsetDelete", 47},
};

int api_key_lookup(const char *s) {
        size_t i;
        int v;

        if (!parse_int(s, 0, 32767, &v))
                return v;
        for (i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++)
                if (!strcasecmp(s, api_names[i].name))
                        return api_names[i].key;
        return -1;
}

int err_code_lookup(const char *s, rd_kafka_resp_err_t *out) {
        static const struct {
                const char *alias;
                rd_kafka_resp_err_t code;
        } aliases[] = {
            {"NOT_LEADER_OR_FOLLOWER", RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION},
            {"UNKNOWN_TOPIC_OR_PARTITION",
             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART},
            {"NONE", RD_KAFKA_RESP_ERR_NO_ERROR},
        };
        const struct rd_kafka_err_desc *descs;
        size_t cnt, i;
        int v;

        if (!parse_int(s, -32768, 32767, &v)) {
                *out = (rd_kafka_resp_err_t)v;
                return 0;
        }
        if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
                s += 18;
        for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
                if (!strcasecmp(s, aliases[i].alias)) {
                        *out = aliases[i].code;
                        return 0;
                }
        }
        rd_kafka_get_err_descs(&descs, &cnt);
        for (i = 0; i < cnt; i++) {
                if (descs[i].name && !strcasecmp(s, descs[i].name)) {
                        *out = descs[i].code;
                        return 0;
                }
        }
        return -1;
}

/* ------------------------------------------------------------------ */
/* Clocks and values                                                    */
/* ------------------------------------------------------------------ */

int64_t now_mono_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t now_real_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t make_value(char *buf, size_t bufsz, int64_t id, size_t target,
                  int64_t produced_at_us) {
        int n;
        size_t pad = 0;
        static const char tail[] = "\"}";

        if (produced_at_us >= 0)
                n = snprintf(buf, bufsz,
                             "{\"id\":%" PRId64 ",\"name\":\"customer-%" PRId64
                             "\",\"state\":\"CA\",\"produced_at_us\":%" PRId64
                             ",\"pad\":\"",
                             id, id, produced_at_us);
        else
                n = snprintf(buf, bufsz,
                             "{\"id\":%" PRId64 ",\"name\":\"customer-%" PRId64
                             "\",\"state\":\"CA\",\"pad\":\"",
                             id, id);
        if (n < 0 || (size_t)n + sizeof(tail) > bufsz)
                return 0; /* cannot happen with bufsz >= target + 128 */
        if ((size_t)n + sizeof(tail) - 1 < target)
                pad = target - ((size_t)n + sizeof(tail) - 1);
        if ((size_t)n + pad + sizeof(tail) > bufsz)
                pad = bufsz - (size_t)n - sizeof(tail);
        memset(buf + n, 'x', pad);
        memcpy(buf + n + pad, tail, sizeof(tail));
        return (size_t)n + pad + sizeof(tail) - 1;
}

/*
 * ktb.h - shared declarations of kafka_test_broker (see kafka_test_broker.c
 * for the design overview).
 */
#ifndef KTB_H
#define KTB_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* ------------------------------------------------------------------ */
/* Growable string buffer (always NUL terminated).                      */
/* ------------------------------------------------------------------ */
typedef struct {
        char *s;
        size_t len;
        size_t cap;
} strbuf_t;

void sb_init(strbuf_t *sb);
void sb_free(strbuf_t *sb);
void sb_reset(strbuf_t *sb);
void sb_append(strbuf_t *sb, const char *data, size_t len);
void sb_printf(strbuf_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_vprintf(strbuf_t *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* ------------------------------------------------------------------ */
/* Argument decoding.                                                   */
/* ------------------------------------------------------------------ */

/* A decoded byte-string argument: `~` decodes to is_null=1. */
typedef struct {
        char *data; /* malloc'd, NUL terminated for convenience; NULL if null */
        size_t len;
        int is_null;
} bytes_t;

void bytes_free(bytes_t *b);

/* Percent-decode \p len bytes of \p in into \p out. If \p allow_null, the
 * single token "~" yields is_null, and the token "\"\"" yields the empty
 * string. Returns 0 or -1 with an error message in \p err. */
int pct_decode(const char *in, size_t len, int allow_null, bytes_t *out,
               strbuf_t *err);

/* Split \p line (modified in place) into whitespace separated tokens.
 * Returns the token count, at most \p max (extra tokens are counted but not
 * stored). */
int tokenize(char *line, char **argv, int max);

/* Strict integer parsing; returns 0 on success. */
int parse_i64(const char *s, int64_t *out);
int parse_int(const char *s, int min, int max, int *out);

/* Kafka API name (case-insensitive) or number -> ApiKey, -1 if unknown. */
int api_key_lookup(const char *s);
/* Error name ("NOT_LEADER_FOR_PARTITION", optionally prefixed with
 * RD_KAFKA_RESP_ERR_, case-insensitive) or number -> code. 0 on success. */
int err_code_lookup(const char *s, rd_kafka_resp_err_t *out);

/* Monotonic / realtime clocks. */
int64_t now_mono_us(void);
int64_t now_real_us(void);

/* Build the deterministic JSON value used by fill/generate into \p buf
 * (size \p bufsz >= target + 128). produced_at_us < 0 means "omit".
 * Returns the length. */
size_t make_value(char *buf, size_t bufsz, int64_t id, size_t target,
                  int64_t produced_at_us);

/* ------------------------------------------------------------------ */
/* Broker state.                                                        */
/* ------------------------------------------------------------------ */
typedef struct generator_s generator_t;

typedef struct {
        rd_kafka_t *mock_rk;              /* owner of the mock cluster */
        rd_kafka_mock_cluster_t *mcluster; /* the mock cluster */
        char *bootstrap;                  /* bootstrap servers string */
        int broker_cnt;
        int verbose;

        rd_kafka_t *sync_rk; /* produce / watermarks (linger 0) */
        rd_kafka_t *bulk_rk; /* fill (linger 5 ms, big batches) */

        generator_t *gen;    /* current or last generator, or NULL */

        int *down;           /* down[id] != 0: broker id set down by us */
        int down_cnt;

        int shutdown;        /* set by the shutdown command */
        int in_preload;      /* commands come from --preload */
} ktb_t;

/* Set (atomically) when SIGINT/SIGTERM arrives: long-running commands
 * (fill, generate, produce) give up as soon as possible. */
extern int ktb_abort;
#define KTB_ABORTED() __atomic_load_n(&ktb_abort, __ATOMIC_RELAXED)

/* Create a client producer handle connected to the mock bootstrap. \p kind
 * selects the tuning ("sync", "bulk" or "gen"). NULL + message on failure. */
rd_kafka_t *ktb_client_new(ktb_t *k, const char *kind, strbuf_t *err);

/* Delivery report callbacks (ktb_commands.c): the per-message opaque points
 * to the waiting sync_wait_t / bulk_state_t. */
void ktb_sync_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
void ktb_bulk_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Common librdkafka configuration (logging). */
void ktb_conf_common(ktb_t *k, rd_kafka_conf_t *conf);

/* Execute one command line (modified in place). Returns 0 and sets \p reply
 * to the full reply line (without newline) starting with "ok" or "error". */
int ktb_exec(ktb_t *k, char *line, strbuf_t *reply);

/* Stop (and join) a running generator; used at shutdown. */
void ktb_generator_stop(ktb_t *k);

#endif /* KTB_H */

/*
 * kafka_test_broker - kafka_fdw's own Kafka test broker.
 *
 * Design
 * ------
 * `serve` creates a librdkafka mock cluster (rd_kafka_mock_cluster_new() on
 * a dedicated, otherwise unused producer handle). The mock cluster runs its
 * own thread and speaks the real Kafka protocol on 127.0.0.1 ephemeral
 * ports, so any client (kafka_fdw, kcat) can use its bootstrap list.
 *
 * The program is driven over a tiny line protocol on a loopback TCP control
 * port: one command per line, one reply line starting "ok" or "error". The
 * main thread serves one control connection at a time (a connection may
 * send any number of commands), and executes each command synchronously:
 *   - cluster manipulation (create, down/up, rtt, error, ...) calls the mock
 *     API directly;
 *   - data commands go through real librdkafka producer clients connected to
 *     the mock bootstrap ("sync" handle: linger 0, used by produce and
 *     watermarks; "bulk" handle: linger 5 ms + big batches, used by fill),
 *     so records are written exactly as a real producer would write them;
 *   - `generate` runs in a background thread with its own producer handle.
 * SIGINT/SIGTERM are blocked in all threads and collected by a small signal
 * thread that sets an abort flag (polled by long commands) and wakes the
 * main loop, so shutdown is orderly: generator, clients, mock cluster, owner
 * handle, state files. A watchdog forces exit(1) if that takes > 15 s.
 *
 * Caveat: while a command runs no other command can be served, so commands
 * whose completion would need another command (e.g. producing to or
 * querying a partition whose leader we set `down`) fail fast instead of
 * waiting.
 *
 * State files in --state-dir: pid (written first), bootstrap, and control
 * (written LAST: its presence means "ready"). All are written atomically
 * (temp file + rename) and removed again on exit.
 *
 * `ctl` is the matching client: it sends one command (or stdin lines) to the
 * control port recorded in the state dir and prints the replies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <syslog.h>
#include <unistd.h>

#include "ktb.h"

#define PROG          "kafka_test_broker"
#define MAX_LINE      (64 * 1024 * 1024)
#define CTL_WAIT_MS   30000
#define WATCHDOG_MS   15000 /* forced exit if a signal is not honoured */

int ktb_abort = 0;

/* Termination handling: SIGINT/SIGTERM are blocked in every thread and
 * collected by signal_thread() with sigwait(). It sets ktb_abort (which long
 * commands poll), wakes the main loop through a pipe, and, if the main
 * thread has not finished its orderly shutdown within WATCHDOG_MS (some
 * librdkafka call wedged), removes the state files and exits with 1. */
static struct {
        sigset_t sigs;
        int wake_pipe[2];
        int main_done;     /* __atomic: orderly shutdown finished */
        const char *state_dir;
} sigctx = {.wake_pipe = {-1, -1}};

static void usage(FILE *fp) {
        fprintf(fp,
                "usage:\n"
                "  " PROG " serve [--brokers N] [--state-dir DIR] "
                "[--preload FILE]\n"
                "        [--auto-create-topics] [--verbose] "
                "[--external BOOTSTRAP]\n"
                "  " PROG " ctl [--state-dir DIR] COMMAND [ARGS...]\n"
                "  " PROG " ctl [--state-dir DIR] -    "
                "(commands from stdin, one per line)\n"
                "See test/broker/README.md for the command reference.\n");
}

/* ------------------------------------------------------------------ */
/* librdkafka handles                                                   */
/* ------------------------------------------------------------------ */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
        const ktb_t *k = rd_kafka_opaque(rk);
        if (!(k && k->verbose) && level > LOG_CRIT)
                return;
        fprintf(stderr, "%%%d|%s|%s| %s\n", level, rd_kafka_name(rk), fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *val,
                    strbuf_t *err) {
        char errstr[512];
        if (rd_kafka_conf_set(conf, name, val, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                if (err)
                        sb_printf(err, "config %s=%s: %s", name, val, errstr);
                else
                        fprintf(stderr, PROG ": config %s=%s: %s\n", name, val,
                                errstr);
                return -1;
        }
        return 0;
}

void ktb_conf_common(ktb_t *k, rd_kafka_conf_t *conf) {
        rd_kafka_conf_set_opaque(conf, k);
        rd_kafka_conf_set_log_cb(conf, log_cb);
        if (k->verbose)
                conf_set(conf, "debug", "mock,broker,topic,msg", NULL);
}

rd_kafka_t *ktb_client_new(ktb_t *k, const char *kind, strbuf_t *err) {
        /* name, value pairs per client kind */
        static const char *common[] = {
            "allow.auto.create.topics", "false",
            "topic.metadata.propagation.max.ms", "1000",
            "enable.idempotence", "false",
            "acks", "all",
            "compression.codec", "none",
            "socket.nagle.disable", "true",
            "retry.backoff.ms", "50",
            NULL};
        static const char *sync_c[] = {
            "linger.ms", "0",
            "message.timeout.ms", "10000",
            NULL};
        static const char *bulk_c[] = {
            "linger.ms", "5",
            "batch.num.messages", "10000",
            "batch.size", "1000000",
            "queue.buffering.max.messages", "1000000",
            "queue.buffering.max.kbytes", "2097151",
            "message.timeout.ms", "60000",
            NULL};
        /* The mock answers a Fetch with at most one batch per partition, so
         * a consumer reads at most (batch size x partitions) per round trip:
         * 1 ms batches of a record or two would cap consumption far below
         * what a real broker serves.  20 ms batches, as a loaded producer
         * builds, keep the mock from being the bottleneck; the latency they
         * add is part of what generate's consumers measure. */
        static const char *gen_c[] = {
            "linger.ms", "20",
            "queue.buffering.max.messages", "1000000",
            "message.timeout.ms", "60000",
            NULL};
        const char **specific;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        char errstr[512];
        char name[64];
        int i;

        if (!strcmp(kind, "sync"))
                specific = sync_c;
        else if (!strcmp(kind, "bulk"))
                specific = bulk_c;
        else
                specific = gen_c;

        ktb_conf_common(k, conf);
        snprintf(name, sizeof(name), "ktb-%s", kind);
        if (conf_set(conf, "client.id", name, err) ||
            conf_set(conf, "bootstrap.servers", k->bootstrap, err))
                goto fail;
        for (i = 0; common[i]; i += 2)
                if (conf_set(conf, common[i], common[i + 1], err))
                        goto fail;
        for (i = 0; specific[i]; i += 2)
                if (conf_set(conf, specific[i], specific[i + 1], err))
                        goto fail;
        rd_kafka_conf_set_dr_msg_cb(conf, !strcmp(kind, "sync")
                                              ? ktb_sync_dr_cb
                                              : ktb_bulk_dr_cb);

        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                sb_printf(err, "rd_kafka_new: %s", errstr);
                goto fail;
        }
        return rk;

fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* ------------------------------------------------------------------ */
/* state files                                                          */
/* ------------------------------------------------------------------ */

static char *state_path(const char *dir, const char *name) {
        char *p;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

/* Write "content\n" to DIR/name via a temp file and rename(). */
static int write_state_file(const char *dir, const char *name,
                            const char *content) {
        char *path = state_path(dir, name);
        char *tmp  = NULL;
        FILE *fp   = NULL;
        int ret    = -1;

        if (!path || asprintf(&tmp, "%s/.%s.tmp.%d", dir, name,
                              (int)getpid()) < 0) {
                tmp = NULL;
                goto done;
        }
        if (!(fp = fopen(tmp, "w")))
                goto done;
        if (fprintf(fp, "%s\n", content) < 0) {
                fclose(fp);
                unlink(tmp);
                goto done;
        }
        if (fclose(fp) != 0) {
                unlink(tmp);
                goto done;
        }
        if (rename(tmp, path) != 0) {
                unlink(tmp);
                goto done;
        }
        ret = 0;
done:
        if (ret)
                fprintf(stderr, PROG ": cannot write %s/%s: %s\n", dir, name,
                        strerror(errno));
        free(path);
        free(tmp);
        return ret;
}

/* Read the first line of DIR/name into a malloc'd string (no newline). */
static char *read_state_file(const char *dir, const char *name) {
        char *path = state_path(dir, name);
        char *line = NULL;
        size_t cap = 0;
        FILE *fp;
        ssize_t n;

        if (!path)
                return NULL;
        fp = fopen(path, "r");
        free(path);
        if (!fp)
                return NULL;
        n = getline(&line, &cap, fp);
        fclose(fp);
        if (n <= 0) {
                free(line);
                return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        return line;
}

static void remove_state_files(const char *dir) {
        static const char *names[] = {"control", "bootstrap", "pid"};
        size_t i;
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *p = state_path(dir, names[i]);
                if (p)
                        unlink(p);
                free(p);
        }
}

/* Remove the state files on exit, unless another instance took them over. */
static void remove_own_state_files(const char *dir) {
        char *pid = read_state_file(dir, "pid");
        if (pid && atoi(pid) == (int)getpid())
                remove_state_files(dir);
        free(pid);
}

/* ------------------------------------------------------------------ */
/* control connections                                                  */
/* ------------------------------------------------------------------ */

static int write_all(int fd, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* One write per line: two small writes (line, then newline) meet Nagle's
 * algorithm and delayed ACKs on loopback and cost ~40-80 ms per command. */
static int send_line(int fd, const char *line) {
        size_t len = strlen(line);
        char *buf  = malloc(len + 1);
        int rc;

        if (!buf)
                return -1;
        memcpy(buf, line, len);
        buf[len] = '\n';
        rc       = write_all(fd, buf, len + 1);
        free(buf);
        return rc ? -1 : 0;
}

static void remove_own_state_files(const char *dir);

static void *signal_thread(void *arg) {
        int sig = 0, waited = 0;
        (void)arg;

        if (sigwait(&sigctx.sigs, &sig) != 0)
                return NULL;
        if (__atomic_load_n(&sigctx.main_done, __ATOMIC_ACQUIRE))
                return NULL; /* woken by the main thread at exit */
        fprintf(stderr, PROG ": received signal %d, shutting down\n", sig);
        __atomic_store_n(&ktb_abort, 1, __ATOMIC_RELAXED);
        if (write(sigctx.wake_pipe[1], "x", 1) < 0) {
                /* main loop will still notice ktb_abort on its next wakeup */
        }
        while (waited < WATCHDOG_MS) {
                if (__atomic_load_n(&sigctx.main_done, __ATOMIC_ACQUIRE))
                        return NULL;
                usleep(100 * 1000);
                waited += 100;
        }
        fprintf(stderr,
                PROG ": shutdown did not complete within %d ms, forcing exit\n",
                WATCHDOG_MS);
        remove_own_state_files(sigctx.state_dir);
        _exit(1);
}

/* Serve one control connection until EOF, shutdown or signal.
 * Returns 1 if the program should exit. */
static int serve_connection(ktb_t *k, int fd) {
        strbuf_t in, reply;
        int quit = 0;
        char chunk[65536];

        sb_init(&in);
        sb_init(&reply);

        while (!quit) {
                struct pollfd pfd[2] = {{fd, POLLIN, 0},
                                        {sigctx.wake_pipe[0], POLLIN, 0}};
                char *nl;
                ssize_t n;

                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (KTB_ABORTED()) {
                        quit = 1;
                        break;
                }
                if (!pfd[0].revents)
                        continue;
                n = recv(fd, chunk, sizeof(chunk), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break; /* client closed (or error) */
                sb_append(&in, chunk, (size_t)n);

                /* Execute every complete line. */
                while ((nl = memchr(in.s, '\n', in.len))) {
                        size_t linelen = (size_t)(nl - in.s);
                        size_t cmdlen  = linelen;
                        *nl            = '\0';
                        if (cmdlen > 0 && in.s[cmdlen - 1] == '\r')
                                in.s[--cmdlen] = '\0';
                        if (strlen(in.s) != cmdlen) {
                                sb_reset(&reply);
                                sb_printf(&reply,
                                          "error usage: NUL byte in command "
                                          "(use %%00)");
                        } else
                                ktb_exec(k, in.s, &reply);
                        if (send_line(fd, reply.s))
                                goto out;
                        memmove(in.s, nl + 1, in.len - linelen - 1);
                        in.len -= linelen + 1;
                        in.s[in.len] = '\0';
                        if (k->shutdown || KTB_ABORTED()) {
                                quit = 1;
                                goto out;
                        }
                }
                if (in.len > MAX_LINE) {
                        send_line(fd, "error usage: command line too long");
                        break;
                }
        }
out:
        sb_free(&in);
        sb_free(&reply);
        return quit;
}

static int listen_loopback(int *port) {
        struct sockaddr_in sin;
        socklen_t slen = sizeof(sin);
        int fd         = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one        = 1;

        if (fd < 0)
                return -1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        memset(&sin, 0, sizeof(sin));
        sin.sin_family      = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port        = 0;
        if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
            listen(fd, 16) ||
            getsockname(fd, (struct sockaddr *)&sin, &slen)) {
                close(fd);
                return -1;
        }
        *port = ntohs(sin.sin_port);
        return fd;
}

/* Run --preload FILE. Returns 0 or -1 (message printed). */
static int run_preload(ktb_t *k, const char *file) {
        FILE *fp = fopen(file, "r");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int lineno = 0, ret = 0;
        strbuf_t reply;

        if (!fp) {
                fprintf(stderr, PROG ": cannot open preload file %s: %s\n",
                        file, strerror(errno));
                return -1;
        }
        sb_init(&reply);
        k->in_preload = 1;
        while ((n = getline(&line, &cap, fp)) >= 0) {
                char *p;
                char *copy;
                lineno++;
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = '\0';
                for (p = line; *p == ' ' || *p == '\t'; p++)
                        ;
                if (!*p || *p == '#')
                        continue;
                copy = strdup(p); /* ktb_exec tokenizes in place */
                if (!copy) {
                        fprintf(stderr, PROG ": out of memory\n");
                        ret = -1;
                        break;
                }
                ktb_exec(k, copy, &reply);
                free(copy);
                if (strncmp(reply.s, "ok", 2)) {
                        fprintf(stderr, PROG ": preload %s:%d: %s: %s\n", file,
                                lineno, p, reply.s);
                        ret = -1;
                        break;
                }
                if (k->verbose)
                        fprintf(stderr, PROG ": preload %s:%d: %s\n", file,
                                lineno, reply.s);
        }
        k->in_preload = 0;
        free(line);
        fclose(fp);
        sb_free(&reply);
        return ret;
}

static int serve_main(int argc, char **argv) {
        const char *state_dir = ".";
        const char *preload   = NULL;
        const char *external  = NULL;
        int auto_create       = 0;
        ktb_t k;
        rd_kafka_conf_t *conf;
        char errstr[512];
        char buf[64];
        pthread_t sigthr;
        int have_sigthr = 0;
        int lfd = -1, port = 0, i, rc = 1;
        strbuf_t err;

        memset(&k, 0, sizeof(k));
        k.broker_cnt = 1;
        sb_init(&err);

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
                        if (parse_int(argv[++i], 1, 64, &k.broker_cnt)) {
                                fprintf(stderr, PROG ": bad --brokers %s\n",
                                        argv[i]);
                                return 2;
                        }
                } else if (!strcmp(argv[i], "--state-dir") && i + 1 < argc)
                        state_dir = argv[++i];
                else if (!strcmp(argv[i], "--preload") && i + 1 < argc)
                        preload = argv[++i];
                else if (!strcmp(argv[i], "--auto-create-topics"))
                        auto_create = 1;
                else if (!strcmp(argv[i], "--external") && i + 1 < argc)
                        external = argv[++i];
                else if (!strcmp(argv[i], "--verbose") ||
                         !strcmp(argv[i], "-v"))
                        k.verbose = 1;
                else {
                        usage(stderr);
                        return 2;
                }
        }

        /* Block the termination signals before any thread is created so
         * that every thread inherits the mask; signal_thread() collects
         * them. */
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&sigctx.sigs);
        sigaddset(&sigctx.sigs, SIGINT);
        sigaddset(&sigctx.sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigctx.sigs, NULL);
        sigctx.state_dir = state_dir;
        if (pipe2(sigctx.wake_pipe, O_CLOEXEC | O_NONBLOCK)) {
                perror(PROG ": pipe");
                return 1;
        }
        if (pthread_create(&sigthr, NULL, signal_thread, NULL)) {
                fprintf(stderr, PROG ": cannot create signal thread\n");
                goto out;
        }
        have_sigthr = 1;

        k.down = calloc((size_t)k.broker_cnt + 1, sizeof(*k.down));
        if (!k.down) {
                fprintf(stderr, PROG ": out of memory\n");
                goto out;
        }

        if (mkdir(state_dir, 0755) && errno != EEXIST) {
                fprintf(stderr, PROG ": cannot create state dir %s: %s\n",
                        state_dir, strerror(errno));
                goto out;
        }
        remove_state_files(state_dir); /* stale files from an older run */
        snprintf(buf, sizeof(buf), "%d", (int)getpid());
        if (write_state_file(state_dir, "pid", buf))
                goto out;

        /* --external: no mock cluster; the data commands' clients connect to
         * an existing cluster (a real Kafka), the mock-only commands refuse. */
        if (external) {
                k.bootstrap = strdup(external);
                if (!k.bootstrap)
                        goto out;
                goto clients;
        }

        /* The handle owning the mock cluster; it never connects anywhere. */
        conf = rd_kafka_conf_new();
        ktb_conf_common(&k, conf);
        conf_set(conf, "client.id", "ktb-mock", NULL);
        k.mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                 sizeof(errstr));
        if (!k.mock_rk) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, PROG ": rd_kafka_new: %s\n", errstr);
                goto out;
        }
        k.mcluster = rd_kafka_mock_cluster_new(k.mock_rk, k.broker_cnt);
        if (!k.mcluster) {
                fprintf(stderr, PROG ": failed to create mock cluster\n");
                goto out;
        }
        /* The 2.0.2 mock advertises Metadata v0..2, which has no
         * AllowAutoTopicCreation field: every Metadata request naming an
         * unknown topic then auto-creates it (4 partitions), even for
         * consumers with allow.auto.create.topics=false. Its handler does
         * parse v4 and honours the flag, so advertise v4 unless the old
         * behaviour is asked for. */
        if (!auto_create &&
            rd_kafka_mock_set_apiversion(k.mcluster, 3 /* Metadata */, 0, 4)) {
                fprintf(stderr, PROG ": cannot set Metadata ApiVersion\n");
                goto out;
        }
        k.bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k.mcluster));
        if (!k.bootstrap)
                goto out;

clients:
        if (!(k.sync_rk = ktb_client_new(&k, "sync", &err)) ||
            !(k.bulk_rk = ktb_client_new(&k, "bulk", &err))) {
                fprintf(stderr, PROG ": %s\n", err.s);
                goto out;
        }

        if ((lfd = listen_loopback(&port)) < 0) {
                fprintf(stderr, PROG ": cannot listen on 127.0.0.1: %s\n",
                        strerror(errno));
                goto out;
        }

        if (preload && run_preload(&k, preload))
                goto out;
        if (KTB_ABORTED())
                goto out;

        snprintf(buf, sizeof(buf), "%d", port);
        if (write_state_file(state_dir, "bootstrap", k.bootstrap) ||
            write_state_file(state_dir, "control", buf))
                goto out;
        if (external)
                fprintf(stderr,
                        PROG ": ready: external cluster at %s, control port "
                        "%d, pid %d\n",
                        k.bootstrap, port, (int)getpid());
        else
                fprintf(stderr,
                        PROG ": ready: %d broker(s) at %s, control port %d, "
                        "pid %d\n",
                        k.broker_cnt, k.bootstrap, port, (int)getpid());

        rc = 0;
        for (;;) {
                struct pollfd pfd[2] = {{lfd, POLLIN, 0},
                                        {sigctx.wake_pipe[0], POLLIN, 0}};
                int cfd;

                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror(PROG ": poll");
                        rc = 1;
                        break;
                }
                if (KTB_ABORTED())
                        break;
                if (!(pfd[0].revents & POLLIN))
                        continue;
                cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (cfd < 0)
                        continue;
                i = serve_connection(&k, cfd);
                close(cfd);
                if (i)
                        break;
        }

out:
        if (lfd >= 0)
                close(lfd);
        ktb_generator_stop(&k);
        if (k.sync_rk) {
                rd_kafka_purge(k.sync_rk,
                               RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_destroy(k.sync_rk);
        }
        if (k.bulk_rk) {
                rd_kafka_purge(k.bulk_rk,
                               RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_destroy(k.bulk_rk);
        }
        if (k.mcluster)
                rd_kafka_mock_cluster_destroy(k.mcluster);
        if (k.mock_rk)
                rd_kafka_destroy(k.mock_rk);
        free(k.bootstrap);
        free(k.down);
        sb_free(&err);
        remove_own_state_files(state_dir);

        /* Stop the signal thread (it ignores this wakeup). */
        __atomic_store_n(&sigctx.main_done, 1, __ATOMIC_RELEASE);
        if (have_sigthr) {
                pthread_kill(sigthr, SIGTERM);
                pthread_join(sigthr, NULL);
        }
        close(sigctx.wake_pipe[0]);
        close(sigctx.wake_pipe[1]);
        if (rc == 0)
                fprintf(stderr, PROG ": stopped\n");
        return rc;
}

/* ------------------------------------------------------------------ */
/* ctl                                                                  */
/* ------------------------------------------------------------------ */

/* Find the control port; waits (up to CTL_WAIT_MS) while the broker whose
 * pid is recorded is alive but not ready yet. */
static int ctl_port(const char *dir) {
        int waited = 0;
        for (;;) {
                char *s = read_state_file(dir, "control");
                char *pid;
                int port, alive;

                if (s) {
                        if (parse_int(s, 1, 65535, &port)) {
                                fprintf(stderr, PROG ": bad %s/control: %s\n",
                                        dir, s);
                                free(s);
                                return -1;
                        }
                        free(s);
                        return port;
                }
                pid   = read_state_file(dir, "pid");
                alive = pid && atoi(pid) > 0 && kill(atoi(pid), 0) == 0;
                free(pid);
                if (!alive || waited >= CTL_WAIT_MS) {
                        fprintf(stderr,
                                PROG ": no broker ready in %s (missing "
                                "%s/control)\n",
                                dir, dir);
                        return -1;
                }
                usleep(50 * 1000);
                waited += 50;
        }
}

static int ctl_connect(int port) {
        struct sockaddr_in sin;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family      = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sin.sin_port        = htons((uint16_t)port);
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Read one reply line from \p fd into \p line (buffered in \p in). */
static int ctl_read_reply(int fd, strbuf_t *in, strbuf_t *line) {
        char chunk[65536];
        for (;;) {
                char *nl = memchr(in->s, '\n', in->len);
                ssize_t n;
                if (nl) {
                        size_t l = (size_t)(nl - in->s);
                        sb_reset(line);
                        sb_append(line, in->s, l);
                        memmove(in->s, nl + 1, in->len - l - 1);
                        in->len -= l + 1;
                        in->s[in->len] = '\0';
                        return 0;
                }
                n = recv(fd, chunk, sizeof(chunk), 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                sb_append(in, chunk, (size_t)n);
        }
}

/* Send \p cmd, print the reply. Returns 0 (ok), 1 (error reply), -1
 * (connection failure). */
static int ctl_roundtrip(int fd, const char *cmd, strbuf_t *in,
                         strbuf_t *line) {
        if (send_line(fd, cmd) || ctl_read_reply(fd, in, line)) {
                printf("error connection to broker lost\n");
                fflush(stdout);
                return -1;
        }
        printf("%s\n", line->s);
        fflush(stdout);
        return strncmp(line->s, "ok", 2) == 0 &&
                       (line->s[2] == '\0' || line->s[2] == ' ')
                   ? 0
                   : 1;
}

static int ctl_main(int argc, char **argv) {
        const char *state_dir = ".";
        int i = 0, port, fd, rc = 0;
        strbuf_t in, line;

        signal(SIGPIPE, SIG_IGN);
        while (i < argc && !strncmp(argv[i], "--", 2)) {
                if (!strcmp(argv[i], "--state-dir") && i + 1 < argc) {
                        state_dir = argv[i + 1];
                        i += 2;
                } else {
                        usage(stderr);
                        return 2;
                }
        }
        if (i >= argc) {
                usage(stderr);
                return 2;
        }

        if ((port = ctl_port(state_dir)) < 0)
                return 1;
        if ((fd = ctl_connect(port)) < 0) {
                fprintf(stderr, PROG ": cannot connect to control port %d: %s\n",
                        port, strerror(errno));
                return 1;
        }
        sb_init(&in);
        sb_init(&line);

        if (!strcmp(argv[i], "-") && i + 1 == argc) {
                char *l  = NULL;
                size_t cap = 0;
                ssize_t n;
                while ((n = getline(&l, &cap, stdin)) >= 0) {
                        char *p;
                        int r;
                        while (n > 0 && (l[n - 1] == '\n' || l[n - 1] == '\r'))
                                l[--n] = '\0';
                        for (p = l; *p == ' ' || *p == '\t'; p++)
                                ;
                        if (!*p || *p == '#')
                                continue;
                        r = ctl_roundtrip(fd, p, &in, &line);
                        if (r)
                                rc = 1;
                        if (r < 0)
                                break;
                }
                free(l);
        } else {
                strbuf_t cmd;
                sb_init(&cmd);
                for (; i < argc; i++) {
                        if (strpbrk(argv[i], "\r\n")) {
                                fprintf(stderr,
                                        PROG ": newline in argument (use "
                                        "%%0A)\n");
                                rc = 2;
                                break;
                        }
                        sb_printf(&cmd, "%s%s", cmd.len ? " " : "", argv[i]);
                }
                if (!rc)
                        rc = ctl_roundtrip(fd, cmd.s, &in, &line) ? 1 : 0;
                sb_free(&cmd);
        }

        close(fd);
        sb_free(&in);
        sb_free(&line);
        return rc;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (!strcmp(argv[1], "serve"))
                return serve_main(argc - 2, argv + 2);
        if (!strcmp(argv[1], "ctl"))
                return ctl_main(argc - 2, argv + 2);
        if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
            !strcmp(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        usage(stderr);
        return 2;
}

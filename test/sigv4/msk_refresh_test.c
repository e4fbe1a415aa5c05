/*
 * msk_refresh_test.c — src/msk_iam.c with a real librdkafka handle, set up
 * as src/connection.c does it: the OAUTHBEARER token refresh callback is
 * served on librdkafka's background thread (SASL queue forwarded there), not
 * on the thread that created the handle, and librdkafka accepts the MSK IAM
 * token msk_iam_set_token() signs.  No broker is needed: librdkafka asks for
 * the first token as soon as the handle exists.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "msk_iam.h"

static MskIamAuth *auth;
static pthread_t main_thread;
static volatile int calls = 0;
static volatile int on_main_thread = 0;
static volatile int set_ok = 0;

static void
refresh_cb(rd_kafka_t *rk, const char *config, void *opaque)
{
	char		errstr[256];

	(void) config;
	(void) opaque;
	if (pthread_equal(pthread_self(), main_thread))
		on_main_thread = 1;
	if (msk_iam_set_token(rk, auth, errstr, sizeof(errstr)) == 0)
		set_ok++;
	else
		fprintf(stderr, "# %s\n", errstr);
	calls++;
}

int
main(void)
{
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_error_t *err;
	int			failures = 0;

	main_thread = pthread_self();
	auth = msk_iam_new("us-east-1", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
					   "session-token", "kafka_fdw/test");
	if (rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "security.protocol", "sasl_ssl", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "sasl.mechanisms", "OAUTHBEARER", errstr, sizeof(errstr)) ||
		rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)))
	{
		printf("not ok 1 - configuration: %s\n", errstr);
		return 1;
	}
	rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, refresh_cb);
	rd_kafka_conf_enable_sasl_queue(conf, 1);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		printf("not ok 1 - rd_kafka_new: %s\n", errstr);
		return 1;
	}
	err = rd_kafka_sasl_background_callbacks_enable(rk);
	if (err)
	{
		printf("not ok 1 - background callbacks: %s\n", rd_kafka_error_string(err));
		return 1;
	}
	/* never rd_kafka_poll(): the background thread must do it all */
	for (int i = 0; i < 100 && calls == 0; i++)
		usleep(20 * 1000);

	if (calls > 0)
		printf("ok 1 - the token refresh callback ran without rd_kafka_poll()\n");
	else
	{
		printf("not ok 1 - the token refresh callback did not run within 2 s\n");
		failures++;
	}
	if (calls > 0 && !on_main_thread)
		printf("ok 2 - it ran on librdkafka's background thread\n");
	else
	{
		printf("not ok 2 - it ran on the thread that created the handle\n");
		failures++;
	}
	if (set_ok > 0)
		printf("ok 3 - librdkafka accepted the MSK IAM token\n");
	else
	{
		printf("not ok 3 - librdkafka refused the MSK IAM token\n");
		failures++;
	}
	rd_kafka_destroy(rk);
	msk_iam_free(auth);
	return failures ? 1 : 0;
}

/*-------------------------------------------------------------------------
 *
 * msk_iam.c
 *		SASL/OAUTHBEARER tokens for Amazon MSK IAM authentication.
 *
 * librdkafka calls the handle's oauthbearer_token_refresh_cb when it needs a
 * token: once when the handle is created and then at 80% of the previous
 * token's lifetime.  kafka_fdw enables librdkafka's SASL queue and forwards
 * it to the background thread (rd_kafka_sasl_background_callbacks_enable),
 * so refreshes happen even while a backend sits in a long scan that serves
 * only its own fetch queue.  The callback therefore runs on a librdkafka
 * thread, and this file must not call PostgreSQL: it only reads the
 * immutable MskIamAuth, signs with sigv4.c and calls librdkafka.
 *
 *-------------------------------------------------------------------------
 */
#include "msk_iam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "sigv4.h"

/* Kafka principal reported to librdkafka (used in its logs only). */
#define MSK_IAM_PRINCIPAL "kafka_fdw"

static char *
dup_or_null(const char *s, int *failed)
{
	char	   *d;

	if (s == NULL || s[0] == '\0')
		return NULL;
	d = strdup(s);
	if (d == NULL)
		*failed = 1;
	return d;
}

static void
free_wiped(char *s)
{
	if (s)
	{
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

MskIamAuth *
msk_iam_new(const char *region, const char *access_key_id,
			const char *secret_access_key, const char *session_token,
			const char *user_agent)
{
	MskIamAuth *a = calloc(1, sizeof(MskIamAuth));
	int			failed = 0;

	if (a == NULL)
		return NULL;
	a->region = dup_or_null(region, &failed);
	a->access_key_id = dup_or_null(access_key_id, &failed);
	a->secret_access_key = dup_or_null(secret_access_key, &failed);
	a->session_token = dup_or_null(session_token, &failed);
	a->user_agent = dup_or_null(user_agent, &failed);
	if (failed)
	{
		msk_iam_free(a);
		return NULL;
	}
	return a;
}

void
msk_iam_free(MskIamAuth *a)
{
	if (a == NULL)
		return;
	free_wiped(a->region);
	free_wiped(a->access_key_id);
	free_wiped(a->secret_access_key);
	free_wiped(a->session_token);
	free_wiped(a->user_agent);
	free(a);
}

int
msk_iam_set_token(rd_kafka_t *rk, const MskIamAuth *a, char *errstr, size_t errstr_size)
{
	SigV4Credentials cred;
	char	   *token = NULL;
	int64_t		expiry_ms;
	char		rkerr[256];
	rd_kafka_resp_err_t err;

	if (a == NULL)
	{
		snprintf(errstr, errstr_size, "no MSK IAM credentials");
		return -1;
	}
	cred.access_key_id = a->access_key_id;
	cred.secret_access_key = a->secret_access_key;
	cred.session_token = a->session_token;
	if (sigv4_msk_token(a->region, &cred, time(NULL), a->user_agent,
						&token, &expiry_ms, NULL) != 0)
	{
		snprintf(errstr, errstr_size, "could not sign an MSK IAM token");
		return -1;
	}
	err = rd_kafka_oauthbearer_set_token(rk, token, expiry_ms, MSK_IAM_PRINCIPAL,
										 NULL, 0, rkerr, sizeof(rkerr));
	free_wiped(token);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* librdkafka's message names the check that failed, not the token */
		snprintf(errstr, errstr_size, "librdkafka refused the MSK IAM token: %s",
				 rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

void
msk_iam_refresh(rd_kafka_t *rk, const MskIamAuth *a)
{
	char		errstr[256];

	if (msk_iam_set_token(rk, a, errstr, sizeof(errstr)) != 0)
		rd_kafka_oauthbearer_set_token_failure(rk, errstr);
}

/*-------------------------------------------------------------------------
 *
 * msk_iam.h
 *		Amazon MSK IAM authentication for a librdkafka handle: the
 *		SASL/OAUTHBEARER token refresh, in plain C.
 *
 * Like sigv4.h, nothing here uses PostgreSQL: msk_iam_refresh() runs on
 * librdkafka's background thread.  The credentials are copied into malloc'd
 * memory when the handle is created and wiped when it is destroyed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FDW_MSK_IAM_H
#define KAFKA_FDW_MSK_IAM_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef struct MskIamAuth
{
	char	   *region;
	char	   *access_key_id;
	char	   *secret_access_key;
	char	   *session_token;	/* NULL when none */
	char	   *user_agent;
} MskIamAuth;

/* Copy the credentials; NULL if out of memory.  session_token may be NULL. */
extern MskIamAuth *msk_iam_new(const char *region, const char *access_key_id,
							   const char *secret_access_key,
							   const char *session_token, const char *user_agent);

/* Wipe and free; NULL is ignored.  Only after the handle is destroyed. */
extern void msk_iam_free(MskIamAuth *auth);

/*
 * Sign a fresh token (valid SIGV4_MSK_TOKEN_LIFETIME_S seconds from now) and
 * hand it to the handle with rd_kafka_oauthbearer_set_token().  librdkafka
 * asks for the next one at 80% of the lifetime.  Returns 0, or -1 with a
 * message (never containing a credential) in errstr.
 */
extern int	msk_iam_set_token(rd_kafka_t *rk, const MskIamAuth *auth,
							  char *errstr, size_t errstr_size);

/*
 * Body of the oauthbearer_token_refresh_cb: msk_iam_set_token(), and on
 * failure rd_kafka_oauthbearer_set_token_failure().  Any thread.
 */
extern void msk_iam_refresh(rd_kafka_t *rk, const MskIamAuth *auth);

#endif							/* KAFKA_FDW_MSK_IAM_H */

/*-------------------------------------------------------------------------
 *
 * sigv4.h
 *		AWS Signature Version 4 and the Amazon MSK IAM authentication token,
 *		in plain C on OpenSSL.
 *
 * Nothing here uses PostgreSQL: the functions may run on any thread
 * (librdkafka's background thread calls sigv4_msk_token() to refresh a
 * token), allocate with malloc() and report failure by return value.  They
 * keep no state and are thread-safe.
 *
 * Strings handed in are not modified and are not retained.  Results are
 * malloc'd and freed with sigv4_result_free() / free().
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FDW_SIGV4_H
#define KAFKA_FDW_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Lifetime of an MSK IAM token, the value of X-Amz-Expires (as AWS's signers). */
#define SIGV4_MSK_TOKEN_LIFETIME_S 900

typedef struct SigV4Credentials
{
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;	/* NULL or "" when none */
} SigV4Credentials;

/* A header or query parameter, name and value raw (not yet URI-encoded). */
typedef struct SigV4Pair
{
	const char *name;
	const char *value;
} SigV4Pair;

typedef struct SigV4Request
{
	const char *method;			/* "GET", "POST", ... */
	const char *path;			/* absolute path, raw, e.g. "/" */
	const SigV4Pair *params;	/* query parameters, any order */
	int			nparams;
	const SigV4Pair *headers;	/* must include Host; any case, any order */
	int			nheaders;
	const char *payload_hash;	/* hex SHA-256 of the body; NULL = empty body */
} SigV4Request;

/* What the signer produced; every string is malloc'd (or NULL). */
typedef struct SigV4Result
{
	char	   *canonical_request;
	char	   *string_to_sign;
	char		signature[65];	/* hex HMAC-SHA256 */
	char	   *authorization;	/* header signing: the Authorization header value */
	char	   *query;			/* presigning: the signed query string, with
								 * X-Amz-Signature last */
} SigV4Result;

/*
 * Sign a request in the Authorization header.  X-Amz-Date (and, with a
 * session token, X-Amz-Security-Token) are added to the signed headers as the
 * caller will send them.  amz_date is "YYYYMMDDTHHMMSSZ".  Returns 0, or -1
 * on bad input or out of memory (then *out holds nothing to free).
 */
extern int	sigv4_sign_headers(const SigV4Request *req, const SigV4Credentials *cred,
							   const char *region, const char *service,
							   const char *amz_date, SigV4Result *out);

/*
 * Presign a request: the authentication goes into the query string
 * (X-Amz-Algorithm, -Credential, -Date, -Expires, -Security-Token,
 * -SignedHeaders, then -Signature), as for a presigned URL.
 */
extern int	sigv4_presign(const SigV4Request *req, const SigV4Credentials *cred,
						  const char *region, const char *service,
						  const char *amz_date, int expires_s, SigV4Result *out);

extern void sigv4_result_free(SigV4Result *res);

/* Hex SHA-256 of data, into out[65]. */
extern void sigv4_sha256_hex(const void *data, size_t len, char *out);

/* "YYYYMMDDTHHMMSSZ" for t (UTC) into out[17]. */
extern void sigv4_amz_date(time_t t, char *out);

/*
 * The Amazon MSK IAM token for SASL/OAUTHBEARER: the URL
 * https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&...
 * presigned with SigV4 (service kafka-cluster, GET /, signed header host,
 * X-Amz-Expires 900) at time now, with a User-Agent parameter appended after
 * signing, encoded as base64url without padding.  *token is malloc'd;
 * *expiry_ms is when it expires (ms since the epoch).  If url is not NULL
 * the unencoded URL is returned there too (malloc'd).  Returns 0 or -1.
 */
extern int	sigv4_msk_token(const char *region, const SigV4Credentials *cred,
							time_t now, const char *user_agent,
							char **token, int64_t *expiry_ms, char **url);

/* base64url without padding of data; malloc'd, NULL if out of memory. */
extern char *sigv4_base64url(const unsigned char *data, size_t len);

#endif							/* KAFKA_FDW_SIGV4_H */

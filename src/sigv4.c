/*-------------------------------------------------------------------------
 *
 * sigv4.c
 *		AWS Signature Version 4 (header signing and presigning) and the
 *		Amazon MSK IAM SASL/OAUTHBEARER token, in plain C on OpenSSL.
 *
 * The algorithm, as AWS documents it:
 *
 *	canonical request = method \n canonical URI \n canonical query \n
 *						canonical headers \n signed headers \n payload hash
 *	string to sign	  = "AWS4-HMAC-SHA256" \n date-time \n scope \n
 *						hex(SHA256(canonical request))
 *	signing key		  = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region),
 *							service), "aws4_request")
 *	signature		  = hex(HMAC(signing key, string to sign))
 *
 * URI encoding keeps only the unreserved characters A-Z a-z 0-9 - _ . ~ and
 * encodes everything else as %XX (upper case), also in the path, where '/'
 * is kept.  Query parameters are sorted by encoded name, then value; header
 * names are lower-cased and sorted, values trimmed with inner runs of
 * spaces collapsed, and repeated headers joined with commas.
 *
 * This file must not use PostgreSQL (see sigv4.h): it runs on librdkafka's
 * background thread when a token is refreshed.  test/sigv4/sigv4_test.c
 * checks it against AWS's published Signature Version 4 test suite.
 *
 *-------------------------------------------------------------------------
 */
#include "sigv4.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* A growable string; on allocation failure it sets oom and stops growing. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		oom;
} Buf;

static void
buf_append(Buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		char	   *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
		{
			b->oom = true;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

static void
buf_putc(Buf *b, char c)
{
	buf_append(b, &c, 1);
}

/* Take the string out of the buffer: NULL if an allocation failed. */
static char *
buf_finish(Buf *b)
{
	if (b->oom)
	{
		free(b->data);
		return NULL;
	}
	if (b->data == NULL)
		return strdup("");
	return b->data;
}

static void
buf_discard(Buf *b)
{
	free(b->data);
	b->data = NULL;
}

static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
}

static void
buf_uri_encode(Buf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (is_unreserved(*p) || (keep_slash && *p == '/'))
			buf_putc(b, (char) *p);
		else
		{
			char		enc[3] = {'%', hex[*p >> 4], hex[*p & 15]};

			buf_append(b, enc, 3);
		}
	}
}

static char *
uri_encode(const char *s)
{
	Buf			b = {0};

	buf_uri_encode(&b, s, false);
	return buf_finish(&b);
}

static void
hex_encode(const unsigned char *in, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++)
	{
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * len] = '\0';
}

void
sigv4_sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		mdlen = 0;
	hex_encode(md, mdlen, out);
}

static bool
hmac_sha256(const void *key, size_t keylen, const char *msg, unsigned char *out)
{
	unsigned int outlen = 0;

	return HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) msg,
				strlen(msg), out, &outlen) != NULL && outlen == 32;
}

void
sigv4_amz_date(time_t t, char *out)
{
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* An encoded query parameter, for sorting. */
typedef struct EncPair
{
	char	   *name;
	char	   *value;
} EncPair;

static int
cmp_encpair(const void *a, const void *b)
{
	const EncPair *x = a;
	const EncPair *y = b;
	int			c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* Canonical query string of the parameters; NULL when out of memory. */
static char *
canonical_query(const SigV4Pair *params, int n)
{
	EncPair    *enc = calloc(n > 0 ? n : 1, sizeof(EncPair));
	Buf			b = {0};
	bool		ok = enc != NULL;

	for (int i = 0; ok && i < n; i++)
	{
		enc[i].name = uri_encode(params[i].name);
		enc[i].value = uri_encode(params[i].value ? params[i].value : "");
		ok = enc[i].name && enc[i].value;
	}
	if (ok)
	{
		qsort(enc, n, sizeof(EncPair), cmp_encpair);
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				buf_putc(&b, '&');
			buf_puts(&b, enc[i].name);
			buf_putc(&b, '=');
			buf_puts(&b, enc[i].value);
		}
	}
	if (enc)
	{
		for (int i = 0; i < n; i++)
		{
			free(enc[i].name);
			free(enc[i].value);
		}
		free(enc);
	}
	if (!ok)
	{
		buf_discard(&b);
		return NULL;
	}
	return buf_finish(&b);
}

/* A header with its name lower-cased and its value trimmed. */
typedef struct CanonHeader
{
	char	   *name;
	char	   *value;
	int			order;			/* position in the input: stable sort */
} CanonHeader;

static int
cmp_header(const void *a, const void *b)
{
	const CanonHeader *x = a;
	const CanonHeader *y = b;
	int			c = strcmp(x->name, y->name);

	return c ? c : x->order - y->order;
}

static char *
lower_dup(const char *s)
{
	char	   *d = strdup(s);

	if (d)
		for (char *p = d; *p; p++)
			*p = (char) tolower((unsigned char) *p);
	return d;
}

/* Trim leading and trailing blanks, collapse inner runs of blanks to one space. */
static char *
trim_value(const char *s)
{
	char	   *d = malloc(strlen(s) + 1);
	char	   *o = d;
	bool		pending_space = false;

	if (d == NULL)
		return NULL;
	while (*s == ' ' || *s == '\t')
		s++;
	for (; *s; s++)
	{
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		{
			pending_space = true;
			continue;
		}
		if (pending_space && o > d)
			*o++ = ' ';
		pending_space = false;
		*o++ = *s;
	}
	*o = '\0';
	return d;
}

/*
 * Canonical headers ("name:value\n" per header) and the signed header list
 * ("a;b;c") of the request's headers plus the extra ones.
 */
static bool
canonical_headers(const SigV4Pair *headers, int n, const SigV4Pair *extra, int nextra,
				  char **canon, char **signed_list)
{
	int			total = n + nextra;
	CanonHeader *h = calloc(total > 0 ? total : 1, sizeof(CanonHeader));
	Buf			cb = {0};
	Buf			sb = {0};
	bool		ok = h != NULL;

	for (int i = 0; ok && i < total; i++)
	{
		const SigV4Pair *p = i < n ? &headers[i] : &extra[i - n];

		h[i].name = lower_dup(p->name);
		h[i].value = trim_value(p->value ? p->value : "");
		h[i].order = i;
		ok = h[i].name && h[i].value;
	}
	if (ok)
	{
		qsort(h, total, sizeof(CanonHeader), cmp_header);
		for (int i = 0; i < total; i++)
		{
			if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0)
			{
				/* a repeated header: its values joined with commas */
				buf_putc(&cb, ',');
				buf_puts(&cb, h[i].value);
				continue;
			}
			if (i > 0)
			{
				buf_putc(&cb, '\n');
				buf_putc(&sb, ';');
			}
			buf_puts(&cb, h[i].name);
			buf_putc(&cb, ':');
			buf_puts(&cb, h[i].value);
			buf_puts(&sb, h[i].name);
		}
		buf_putc(&cb, '\n');
	}
	if (h)
	{
		for (int i = 0; i < total; i++)
		{
			free(h[i].name);
			free(h[i].value);
		}
		free(h);
	}
	if (!ok)
	{
		buf_discard(&cb);
		buf_discard(&sb);
		return false;
	}
	*canon = buf_finish(&cb);
	*signed_list = buf_finish(&sb);
	if (*canon == NULL || *signed_list == NULL)
	{
		free(*canon);
		free(*signed_list);
		return false;
	}
	return true;
}

static bool
valid_amz_date(const char *d)
{
	if (d == NULL || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && !isdigit((unsigned char) d[i]))
			return false;
	return true;
}

/*
 * Build canonical request, string to sign and signature into out, given the
 * canonical query, canonical headers and signed header list.
 */
static bool
finish_signature(const SigV4Request *req, const SigV4Credentials *cred,
				 const char *region, const char *service, const char *amz_date,
				 const char *query, const char *canon_headers,
				 const char *signed_list, SigV4Result *out)
{
	char		empty_hash[65];
	char		creq_hash[65];
	char		date[9];
	unsigned char k1[32],
				k2[32],
				k3[32],
				k4[32],
				sig[32];
	char	   *secret_key;
	size_t		keylen;
	bool		ok;
	Buf			b = {0};

	sigv4_sha256_hex("", 0, empty_hash);
	memcpy(date, amz_date, 8);
	date[8] = '\0';

	buf_puts(&b, req->method);
	buf_putc(&b, '\n');
	buf_uri_encode(&b, req->path && req->path[0] ? req->path : "/", true);
	buf_putc(&b, '\n');
	buf_puts(&b, query);
	buf_putc(&b, '\n');
	buf_puts(&b, canon_headers);
	buf_putc(&b, '\n');
	buf_puts(&b, signed_list);
	buf_putc(&b, '\n');
	buf_puts(&b, req->payload_hash ? req->payload_hash : empty_hash);
	out->canonical_request = buf_finish(&b);
	if (out->canonical_request == NULL)
		return false;

	sigv4_sha256_hex(out->canonical_request, strlen(out->canonical_request), creq_hash);
	memset(&b, 0, sizeof(b));
	buf_puts(&b, "AWS4-HMAC-SHA256\n");
	buf_puts(&b, amz_date);
	buf_putc(&b, '\n');
	buf_puts(&b, date);
	buf_putc(&b, '/');
	buf_puts(&b, region);
	buf_putc(&b, '/');
	buf_puts(&b, service);
	buf_puts(&b, "/aws4_request\n");
	buf_puts(&b, creq_hash);
	out->string_to_sign = buf_finish(&b);
	if (out->string_to_sign == NULL)
		return false;

	keylen = strlen(cred->secret_access_key) + 4;
	secret_key = malloc(keylen + 1);
	if (secret_key == NULL)
		return false;
	memcpy(secret_key, "AWS4", 4);
	memcpy(secret_key + 4, cred->secret_access_key, keylen - 4 + 1);
	ok = hmac_sha256(secret_key, keylen, date, k1) &&
		hmac_sha256(k1, 32, region, k2) &&
		hmac_sha256(k2, 32, service, k3) &&
		hmac_sha256(k3, 32, "aws4_request", k4) &&
		hmac_sha256(k4, 32, out->string_to_sign, sig);
	OPENSSL_cleanse(secret_key, keylen);
	free(secret_key);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	OPENSSL_cleanse(k3, sizeof(k3));
	OPENSSL_cleanse(k4, sizeof(k4));
	if (!ok)
		return false;
	hex_encode(sig, 32, out->signature);
	return true;
}

static bool
valid_input(const SigV4Request *req, const SigV4Credentials *cred,
			const char *region, const char *service, const char *amz_date)
{
	return req && req->method && cred && cred->access_key_id &&
		cred->access_key_id[0] && cred->secret_access_key &&
		cred->secret_access_key[0] && region && region[0] && service &&
		service[0] && valid_amz_date(amz_date) &&
		(req->nparams == 0 || req->params) && (req->nheaders == 0 || req->headers);
}

static char *
credential_scope(const SigV4Credentials *cred, const char *amz_date,
				 const char *region, const char *service)
{
	Buf			b = {0};

	buf_puts(&b, cred->access_key_id);
	buf_putc(&b, '/');
	buf_append(&b, amz_date, 8);
	buf_putc(&b, '/');
	buf_puts(&b, region);
	buf_putc(&b, '/');
	buf_puts(&b, service);
	buf_puts(&b, "/aws4_request");
	return buf_finish(&b);
}

int
sigv4_sign_headers(const SigV4Request *req, const SigV4Credentials *cred,
				   const char *region, const char *service,
				   const char *amz_date, SigV4Result *out)
{
	SigV4Pair	extra[2];
	int			nextra = 0;
	char	   *query = NULL;
	char	   *canon = NULL;
	char	   *signed_list = NULL;
	char	   *scope = NULL;
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (!valid_input(req, cred, region, service, amz_date))
		return -1;

	extra[nextra].name = "X-Amz-Date";
	extra[nextra++].value = amz_date;
	if (cred->session_token && cred->session_token[0])
	{
		extra[nextra].name = "X-Amz-Security-Token";
		extra[nextra++].value = cred->session_token;
	}

	query = canonical_query(req->params, req->nparams);
	ok = query != NULL &&
		canonical_headers(req->headers, req->nheaders, extra, nextra, &canon, &signed_list) &&
		finish_signature(req, cred, region, service, amz_date, query, canon,
						 signed_list, out) &&
		(scope = credential_scope(cred, amz_date, region, service)) != NULL;
	if (ok)
	{
		Buf			b = {0};

		buf_puts(&b, "AWS4-HMAC-SHA256 Credential=");
		buf_puts(&b, scope);
		buf_puts(&b, ", SignedHeaders=");
		buf_puts(&b, signed_list);
		buf_puts(&b, ", Signature=");
		buf_puts(&b, out->signature);
		out->authorization = buf_finish(&b);
		ok = out->authorization != NULL;
	}
	free(query);
	free(canon);
	free(signed_list);
	free(scope);
	if (!ok)
	{
		sigv4_result_free(out);
		return -1;
	}
	return 0;
}

int
sigv4_presign(const SigV4Request *req, const SigV4Credentials *cred,
			  const char *region, const char *service,
			  const char *amz_date, int expires_s, SigV4Result *out)
{
	SigV4Pair  *params = NULL;
	int			n = 0;
	char	   *canon = NULL;
	char	   *signed_list = NULL;
	char	   *scope = NULL;
	char	   *query = NULL;
	char		expires[16];
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (!valid_input(req, cred, region, service, amz_date) || expires_s <= 0)
		return -1;

	ok = canonical_headers(req->headers, req->nheaders, NULL, 0, &canon, &signed_list) &&
		(scope = credential_scope(cred, amz_date, region, service)) != NULL &&
		(params = calloc(req->nparams + 6, sizeof(SigV4Pair))) != NULL;
	if (ok)
	{
		for (int i = 0; i < req->nparams; i++)
			params[n++] = req->params[i];
		snprintf(expires, sizeof(expires), "%d", expires_s);
		params[n].name = "X-Amz-Algorithm";
		params[n++].value = "AWS4-HMAC-SHA256";
		params[n].name = "X-Amz-Credential";
		params[n++].value = scope;
		params[n].name = "X-Amz-Date";
		params[n++].value = amz_date;
		params[n].name = "X-Amz-Expires";
		params[n++].value = expires;
		if (cred->session_token && cred->session_token[0])
		{
			params[n].name = "X-Amz-Security-Token";
			params[n++].value = cred->session_token;
		}
		params[n].name = "X-Amz-SignedHeaders";
		params[n++].value = signed_list;

		query = canonical_query(params, n);
		ok = query != NULL &&
			finish_signature(req, cred, region, service, amz_date, query, canon,
							 signed_list, out);
	}
	if (ok)
	{
		Buf			b = {0};

		buf_puts(&b, query);
		buf_puts(&b, "&X-Amz-Signature=");
		buf_puts(&b, out->signature);
		out->query = buf_finish(&b);
		ok = out->query != NULL;
	}
	free(params);
	free(canon);
	free(signed_list);
	free(scope);
	free(query);
	if (!ok)
	{
		sigv4_result_free(out);
		return -1;
	}
	return 0;
}

/* Free a string that may hold a secret (a session token), wiping it first. */
static void
free_wiped(char *s)
{
	if (s)
	{
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
sigv4_result_free(SigV4Result *res)
{
	free_wiped(res->canonical_request);
	free_wiped(res->string_to_sign);
	free_wiped(res->authorization);
	free_wiped(res->query);
	memset(res, 0, sizeof(*res));
}

char *
sigv4_base64url(const unsigned char *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char	   *out = malloc(((len + 2) / 3) * 4 + 1);
	char	   *o = out;
	size_t		i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3)
	{
		uint32_t	v = ((uint32_t) data[i] << 16) | ((uint32_t) data[i + 1] << 8) | data[i + 2];

		*o++ = alphabet[(v >> 18) & 63];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = alphabet[v & 63];
	}
	if (len - i == 1)
	{
		uint32_t	v = (uint32_t) data[i] << 16;

		*o++ = alphabet[(v >> 18) & 63];
		*o++ = alphabet[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32_t	v = ((uint32_t) data[i] << 16) | ((uint32_t) data[i + 1] << 8);

		*o++ = alphabet[(v >> 18) & 63];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
	}
	*o = '\0';
	return out;
}

/* An AWS region name: lower-case letters, digits and '-', at most 32. */
static bool
valid_region(const char *r)
{
	size_t		n = r ? strlen(r) : 0;

	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
			return false;
	return true;
}

int
sigv4_msk_token(const char *region, const SigV4Credentials *cred, time_t now,
				const char *user_agent, char **token, int64_t *expiry_ms, char **url)
{
	char		host[64];
	char		amz_date[17];
	SigV4Pair	param = {"Action", "kafka-cluster:Connect"};
	SigV4Pair	header;
	SigV4Request req = {0};
	SigV4Result res;
	Buf			b = {0};
	char	   *u;

	*token = NULL;
	if (url)
		*url = NULL;
	if (!valid_region(region))
		return -1;
	snprintf(host, sizeof(host), "kafka.%s.amazonaws.com", region);
	sigv4_amz_date(now, amz_date);

	header.name = "host";
	header.value = host;
	req.method = "GET";
	req.path = "/";
	req.params = &param;
	req.nparams = 1;
	req.headers = &header;
	req.nheaders = 1;
	req.payload_hash = NULL;	/* empty body, as AWS's MSK signers */

	if (sigv4_presign(&req, cred, region, "kafka-cluster", amz_date,
					  SIGV4_MSK_TOKEN_LIFETIME_S, &res) != 0)
		return -1;

	buf_puts(&b, "https://");
	buf_puts(&b, host);
	buf_puts(&b, "/?");
	buf_puts(&b, res.query);
	if (user_agent && user_agent[0])
	{
		buf_puts(&b, "&User-Agent=");
		buf_uri_encode(&b, user_agent, false);
	}
	sigv4_result_free(&res);
	u = buf_finish(&b);
	if (u == NULL)
		return -1;

	*token = sigv4_base64url((const unsigned char *) u, strlen(u));
	if (*token == NULL)
	{
		free_wiped(u);
		return -1;
	}
	*expiry_ms = ((int64_t) now + SIGV4_MSK_TOKEN_LIFETIME_S) * 1000;
	if (url)
		*url = u;
	else
		free_wiped(u);
	return 0;
}

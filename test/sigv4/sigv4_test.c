/*
 * sigv4_test.c — src/sigv4.c against AWS's published Signature Version 4 test
 * suite, and the shape of the Amazon MSK IAM token.
 *
 *   sigv4_test                 run the vectors; "ok N - name" / "not ok N - name"
 *                              per check; exit status 1 on any mismatch
 *   sigv4_test msk REGION EPOCH_SECONDS ACCESS_KEY SECRET [SESSION_TOKEN]
 *                              print the MSK IAM token for these inputs as
 *                              "url=...", "token=...", "expiry_ms=..." lines,
 *                              for test/t/060_sigv4_vectors.sh to check with an
 *                              independent computation (openssl dgst)
 *
 * The vectors are those of the aws-sig-v4-test-suite (AWS General Reference,
 * "Signature Version 4 test suite"; the same files are vendored by botocore
 * under tests/unit/auth/aws4_testsuite/ and by aws-c-auth under
 * tests/aws-signing-test-suite/v4/).  Every case uses the suite's fixed
 * inputs: access key AKIDEXAMPLE, secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 * region us-east-1, service "service", time 20150830T123600Z.  Canonical
 * requests, strings to sign and Authorization headers are compared where the
 * suite publishes them, so a failure says which stage is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigv4.h"

#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SCOPE "20150830/us-east-1/service/aws4_request"
#define STS(hash) "AWS4-HMAC-SHA256\n20150830T123600Z\n" SCOPE "\n" hash
#define AUTHZ(signed_headers, sig) \
	"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SCOPE ", SignedHeaders=" signed_headers ", Signature=" sig

typedef struct Vector
{
	const char *name;
	const char *method;
	const char *path;
	SigV4Pair	params[4];
	int			nparams;
	SigV4Pair	headers[4];
	int			nheaders;
	const char *body;
	const char *session_token;
	int			presign_expires;	/* > 0: presigned (query) signing */
	const char *creq;			/* expected canonical request, or NULL */
	const char *sts;			/* expected string to sign, or NULL */
	const char *authz;			/* expected Authorization header (header signing) */
	const char *signature;		/* expected signature */
} Vector;

static const Vector vectors[] = {
	{
		"get-vanilla", "GET", "/", {{0}}, 0,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 0,
		"GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
		STS("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"),
		AUTHZ("host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
		"5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	},
	{
		"get-vanilla-query-order-key", "GET", "/",
		{{"Param1", "value2"}, {"Param1", "Value1"}}, 2,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 0,
		"GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
		NULL,
		AUTHZ("host;x-amz-date", "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"),
		"eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"
	},
	{
		"get-vanilla-query-order-key-case", "GET", "/",
		{{"Param2", "value2"}, {"Param1", "value1"}}, 2,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 0,
		"GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
		STS("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0"),
		AUTHZ("host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
		"b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
	},
	{
		"get-header-value-trim", "GET", "/", {{0}}, 0,
		{{"Host", "example.amazonaws.com"}, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}, 3,
		NULL, NULL, 0,
		"GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_HASH,
		STS("a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7"),
		AUTHZ("host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
		"acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
	},
	{
		"get-utf8", "GET", "/\xe1\x88\xb4", {{0}}, 0,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 0,
		"GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
		STS("2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102"),
		AUTHZ("host;x-amz-date", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
		"8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
	},
	{
		"post-vanilla", "POST", "/", {{0}}, 0,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 0,
		"POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
		NULL,
		AUTHZ("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
		"5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
	},
	{
		"post-x-www-form-urlencoded", "POST", "/", {{0}}, 0,
		{{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}}, 2,
		"Param1=value1", NULL, 0,
		"POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
		STS("42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"),
		AUTHZ("content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
		"ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
	},
	{
		"get-vanilla-with-session-token", "GET", "/", {{0}}, 0,
		{{"Host", "example.amazonaws.com"}}, 1, NULL,
		"6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267", 0,
		NULL, NULL,
		AUTHZ("host;x-amz-date;x-amz-security-token", "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"),
		"07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
	},
	/* presigned (query) variant of aws-c-auth's suite: X-Amz-Expires 3600 */
	{
		"get-vanilla-query-order-key-case (presigned)", "GET", "/",
		{{"Param2", "value2"}, {"Param1", "value1"}}, 2,
		{{"Host", "example.amazonaws.com"}}, 1, NULL, NULL, 3600,
		"GET\n/\nParam1=value1&Param2=value2&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\nhost:example.amazonaws.com\n\nhost\n" EMPTY_HASH,
		NULL, NULL,
		"86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5"
	},
};

static int	test_no = 0;
static int	failures = 0;

static void
check(const char *name, const char *what, const char *expected, const char *actual)
{
	test_no++;
	if (actual && strcmp(expected, actual) == 0)
		printf("ok %d - %s: %s\n", test_no, name, what);
	else
	{
		failures++;
		printf("not ok %d - %s: %s\n#   expected: %s\n#   actual:   %s\n", test_no, name,
			   what, expected, actual ? actual : "(null)");
	}
}

static void
run_vector(const Vector *v)
{
	SigV4Credentials cred = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	v->session_token};
	SigV4Request req = {0};
	SigV4Result res;
	char		body_hash[65];
	int			rc;

	req.method = v->method;
	req.path = v->path;
	req.params = v->params;
	req.nparams = v->nparams;
	req.headers = v->headers;
	req.nheaders = v->nheaders;
	if (v->body)
	{
		sigv4_sha256_hex(v->body, strlen(v->body), body_hash);
		req.payload_hash = body_hash;
	}
	if (v->presign_expires > 0)
		rc = sigv4_presign(&req, &cred, "us-east-1", "service", "20150830T123600Z",
						   v->presign_expires, &res);
	else
		rc = sigv4_sign_headers(&req, &cred, "us-east-1", "service", "20150830T123600Z", &res);
	if (rc != 0)
	{
		test_no++;
		failures++;
		printf("not ok %d - %s: signer returned an error\n", test_no, v->name);
		return;
	}
	if (v->creq)
		check(v->name, "canonical request", v->creq, res.canonical_request);
	if (v->sts)
		check(v->name, "string to sign", v->sts, res.string_to_sign);
	if (v->authz)
		check(v->name, "Authorization header", v->authz, res.authorization);
	check(v->name, "signature", v->signature, res.signature);
	sigv4_result_free(&res);
}

/* Checks that need no published vector: bad input is refused, encodings. */
static void
run_misc(void)
{
	SigV4Credentials cred = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};
	SigV4Credentials nokey = {"AKIDEXAMPLE", "", NULL};
	char	   *token = NULL;
	char	   *b64;
	int64_t		expiry;
	char		date[17];

	{
		char		h[65];

		sigv4_sha256_hex("", 0, h);
		check("misc", "sha256 of empty input", EMPTY_HASH, h);
		sigv4_sha256_hex("test", 4, h);
		check("misc", "sha256 of \"test\"",
			  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", h);
	}
	sigv4_amz_date((time_t) 1440938160, date);
	check("misc", "X-Amz-Date of 2015-08-30 12:36:00 UTC", "20150830T123600Z", date);

	b64 = sigv4_base64url((const unsigned char *) "\xfb\xff\xfe", 3);
	check("misc", "base64url alphabet", "-__-", b64);
	free(b64);
	b64 = sigv4_base64url((const unsigned char *) "ab", 2);
	check("misc", "base64url without padding", "YWI", b64);
	free(b64);

	test_no++;
	if (sigv4_msk_token("us-east-1/../x", &cred, 1440938160, "t", &token, &expiry, NULL) == 0)
	{
		failures++;
		printf("not ok %d - misc: a region that is not a region name is refused\n", test_no);
		free(token);
	}
	else
		printf("ok %d - misc: a region that is not a region name is refused\n", test_no);

	test_no++;
	if (sigv4_msk_token("us-east-1", &nokey, 1440938160, "t", &token, &expiry, NULL) == 0)
	{
		failures++;
		printf("not ok %d - misc: an empty secret key is refused\n", test_no);
		free(token);
	}
	else
		printf("ok %d - misc: an empty secret key is refused\n", test_no);
}

static int
msk_mode(int argc, char **argv)
{
	SigV4Credentials cred;
	char	   *token;
	char	   *url;
	int64_t		expiry;

	if (argc < 6)
	{
		fprintf(stderr, "usage: sigv4_test msk REGION EPOCH_SECONDS ACCESS_KEY SECRET [SESSION_TOKEN]\n");
		return 2;
	}
	cred.access_key_id = argv[4];
	cred.secret_access_key = argv[5];
	cred.session_token = argc > 6 ? argv[6] : NULL;
	if (sigv4_msk_token(argv[2], &cred, (time_t) strtoll(argv[3], NULL, 10),
						"kafka_fdw/test", &token, &expiry, &url) != 0)
	{
		fprintf(stderr, "sigv4_msk_token failed\n");
		return 1;
	}
	printf("url=%s\ntoken=%s\nexpiry_ms=%lld\n", url, token, (long long) expiry);
	free(url);
	free(token);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "msk") == 0)
		return msk_mode(argc, argv);

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		run_vector(&vectors[i]);
	run_misc();
	printf("%d passed, %d failed\n", test_no - failures, failures);
	return failures ? 1 : 0;
}

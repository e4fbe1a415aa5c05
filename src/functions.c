/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  SQL-callable helpers in schema kafka, named after their Redshift
 *	  counterparts, and the builder of the kafka_headers column.
 *
 *	  kafka.json_parse(bytea) -> jsonb
 *	  kafka.can_json_parse(bytea) -> boolean
 *	  kafka._json_field_text(bytea, key text) -> text   (internal)
 *	  kafka.from_varbyte(bytea, format text) -> text
 *	  kafka.header(jsonb, name text) -> text
 *	  kafka.header_bytes(jsonb, name text) -> bytea
 *	  kafka._build_headers_for_test(text[], bytea[]) -> jsonb   (internal)
 *
 * Kafka payloads are raw bytes: never NUL-terminated, possibly containing
 * NUL, possibly not text at all.  Nothing here reads them as C strings; they
 * are checked for NUL bytes and for validity in the database encoding before
 * anything treats them as text.
 *
 * json_parse and can_json_parse share one parse (PostgreSQL's own JSON
 * lexer and parser, with de-escaping on so that \u0000 is rejected as jsonb
 * rejects it) and one set of representability checks (numbers must fit
 * numeric, strings the jsonb string limit, nesting at most
 * KAFKA_JSON_MAX_DEPTH levels).  json_parse builds the jsonb value directly
 * in the parser callbacks, as jsonb_in does, without a copy of the input;
 * can_json_parse runs the same parse without building and without raising
 * or catching errors.  They agree on every input below 32 MB.  Beyond that
 * jsonb's own size limits (256 MB per container, 1 GB allocations) can make
 * json_parse fail where can_json_parse says true.
 *
 * _json_field_text(v, k) is json_parse(v)->>k without the jsonb: the same
 * checking parse as can_json_parse keeps only the last top-level value of
 * key k (jsonb keeps the last of duplicate keys) and returns its text as
 * ->> would (numbers through numeric, as jsonb stores them).  Whenever that
 * is not the plain answer (the parse fails, the value is an object or an
 * array) it computes json_parse(v)->>k itself, which raises json_parse's
 * errors; so it does for inputs of 32 MB or more and in databases whose
 * encoding is not UTF-8, where building can fail beyond the checks.  A streaming refresh evaluates the view's json_parse(v)->>'k'
 * through it (kafka_json_field_fast_path, called by refresh.c): building
 * the whole jsonb of every record was most of a JSON view's refresh.
 *
 * The kafka_headers format
 * ------------------------
 * A record's headers become a jsonb array of objects, in record order, with
 * duplicates kept:
 *
 *	 [{"key": "trace-id", "value": "abc"},
 *	  {"key": "flag", "value": null},
 *	  {"key": "bin", "value_base64": "AP8="}]
 *
 * "value" is a JSON string when the header bytes are valid text in the
 * database encoding without NUL, JSON null for a null header value; when the
 * bytes are not text the object has "value_base64" (standard base64) instead
 * of "value".  No headers give [].  kafka_build_headers_jsonb() (see
 * functions.h) builds it; kafka.header() and kafka.header_bytes() read it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "compat.h"
#include "functions.h"

PG_FUNCTION_INFO_V1(kafka_json_parse);
PG_FUNCTION_INFO_V1(kafka_can_json_parse);
PG_FUNCTION_INFO_V1(kafka_json_field_text);
PG_FUNCTION_INFO_V1(kafka_from_varbyte);
PG_FUNCTION_INFO_V1(kafka_header);
PG_FUNCTION_INFO_V1(kafka_header_bytes);
PG_FUNCTION_INFO_V1(kafka_build_headers_for_test);

/* Longest token quoted in a JSON error detail, in bytes */
#define MAX_TOKEN_SHOWN			64

/*
 * Deepest nesting of arrays and objects accepted.  PostgreSQL's JSON parser
 * recurses per level and raises "stack depth limit exceeded" at a depth that
 * depends on max_stack_depth (about 10,000 levels at the default 2MB); a
 * fixed limit well below that keeps can_json_parse from raising that error
 * and in agreement with json_parse.  Jackson's default limit is the same.
 */
#define KAFKA_JSON_MAX_DEPTH	1000

/*
 * Inputs this long or longer are left to json_parse by _json_field_text:
 * below it no jsonb size limit can be reached (an array element takes 2
 * bytes of input at least, an object pair 5).
 */
#define KAFKA_JSON_FAST_MAX_BYTES	(32 * 1024 * 1024)

/* numeric's limits (numeric.c): 14-bit display scale, int16 weight */
#define NUMERIC_DSCALE_LIMIT	0x3FFF
#define NUMERIC_DEC_DIGITS		4

/* The keys of a header object */
#define HDR_KEY					"key"
#define HDR_VALUE				"value"
#define HDR_VALUE_BASE64		"value_base64"

/* State of one JSON parse, shared by json_parse and can_json_parse */
typedef struct KafkaJsonState
{
	bool		build;			/* build a jsonb value (else only check) */
	bool		ok;				/* check mode: no unrepresentable value yet */
	int			input_length;	/* length of the whole input */
	JsonbParseState *parse_state;	/* build mode: jsonb under construction */
	JsonbValue *result;			/* build mode: last value pushJsonbValue gave */
	/* _json_field_text: the top-level value of one key */
	const char *key;
	int			key_len;
	int			depth;			/* of the next value: 0 the document, 1 in it */
	bool		at_key;			/* the next value at depth 1 is key's */
	bool		found;			/* key's value seen (the last one counts) */
	JsonTokenType found_type;	/* its scalar type, or JSON_TOKEN_INVALID
								 * for an object or array */
	char	   *found_token;	/* its de-escaped token, if a scalar */
} KafkaJsonState;


/*
 * Text validation
 */

/*
 * Offset of the first byte of data[0..len) that is not part of a valid
 * character of the given encoding, a NUL byte counting as invalid, or -1 if
 * the whole of it is valid text.  Agrees with pg_verify_mbstr().
 */
static int
invalid_text_offset(int encoding, const char *data, int len)
{
	int			valid;

	if (pg_encoding_max_length(encoding) <= 1)
	{
		const char *nul = memchr(data, '\0', len);

		return nul ? (int) (nul - data) : -1;
	}
	valid = pg_encoding_verifymbstr(encoding, data, len);
	return valid == len ? -1 : valid;
}

/*
 * The bytes of the invalid character at data + offset, as "0xc3 0x28", for
 * an error detail (the same rendering as report_invalid_encoding()).
 */
static char *
describe_invalid_bytes(int encoding, const char *data, int len, int offset)
{
	StringInfoData buf;
	int			n;
	int			i;

	n = pg_encoding_mblen(encoding, data + offset);
	n = Min(n, len - offset);
	n = Min(n, 8);
	initStringInfo(&buf);
	for (i = 0; i < n; i++)
		appendStringInfo(&buf, "%s0x%02x", i > 0 ? " " : "",
						 (unsigned char) data[offset + i]);
	return buf.data;
}


/*
 * JSON: representability checks and parser callbacks
 */

/*
 * Does numeric_in() accept this JSON number token without overflowing?
 *
 * The lexer has checked the JSON grammar: -?int[.frac][(e|E)[+-]exp].  This
 * mirrors set_var_from_str() and make_result() of numeric.c: the exponent
 * must satisfy |exp| < INT_MAX / 2, the display scale (fraction digits minus
 * exponent, at least 0) must fit in 14 bits and the base-10000 weight of the
 * first nonzero digit must fit in int16.  So "1e131071" fits and "1e131072"
 * does not, "1e-16383" fits and "1e-16384" does not.
 */
static bool
json_number_fits_numeric(const char *num)
{
	const char *p = num;
	int64		ndigits = 0;	/* digits seen, integer and fraction parts */
	int64		intdigits;
	int64		fracdigits;
	int64		firstnz = -1;	/* index of the first nonzero digit */
	int64		exponent = 0;
	bool		expneg = false;
	int64		dweight;
	int64		dscale;
	int64		power;
	int64		weight;

	if (*p == '-')
		p++;
	for (; *p >= '0' && *p <= '9'; p++, ndigits++)
		if (*p != '0' && firstnz < 0)
			firstnz = ndigits;
	intdigits = ndigits;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, ndigits++)
			if (*p != '0' && firstnz < 0)
				firstnz = ndigits;
	fracdigits = ndigits - intdigits;

	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			expneg = (*p++ == '-');
		for (; *p >= '0' && *p <= '9'; p++)
			if (exponent < PG_INT32_MAX)	/* saturate, like strtol */
				exponent = exponent * 10 + (*p - '0');
		if (exponent >= PG_INT32_MAX / 2)
			return false;
		if (expneg)
			exponent = -exponent;
	}

	dweight = intdigits - 1 + exponent;
	dscale = Max(fracdigits - exponent, 0);
	if (dscale > NUMERIC_DSCALE_LIMIT)
		return false;
	if (firstnz < 0)
		return true;			/* zero: weight 0 */

	/* decimal power of the first nonzero digit, floored to base 10000 */
	power = dweight - firstnz;
	if (power >= 0)
		weight = power / NUMERIC_DEC_DIGITS;
	else
		weight = -((-power - 1) / NUMERIC_DEC_DIGITS + 1);
	return weight >= PG_INT16_MIN && weight <= PG_INT16_MAX;
}

/*
 * Are arrays and objects nested deeper than KAFKA_JSON_MAX_DEPTH?  Exact for
 * valid JSON (brackets inside strings do not count); invalid JSON fails the
 * parse anyway.  Only inputs longer than the limit can be too deep.
 */
static bool
json_too_deep(const char *data, int len)
{
	int			depth = 0;
	int			i = 0;

	if (len <= KAFKA_JSON_MAX_DEPTH)
		return false;

	while (i < len)
	{
		char		c = data[i++];

		if (c == '"')
		{
			/* skip the string, escapes included, and its closing quote */
			while (i < len && data[i] != '"')
				i += data[i] == '\\' ? 2 : 1;
			i++;
		}
		else if (c == '[' || c == '{')
		{
			if (++depth > KAFKA_JSON_MAX_DEPTH)
				return true;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return false;
}

/*
 * Check that a de-escaped JSON string (or object key) fits a jsonb string;
 * its length is returned (in build mode: check mode does not need it).
 * Mirrors checkStringLen() of jsonb.c.
 */
static int
json_string_len(KafkaJsonState *state, const char *str)
{
	size_t		len;

	/* a de-escaped string is never longer than the input */
	if (state->input_length <= JENTRY_OFFLENMASK)
		return state->build ? strlen(str) : 0;

	len = strlen(str);
	if (len > JENTRY_OFFLENMASK)
	{
		if (!state->build)
		{
			state->ok = false;
			return 0;
		}
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("JSON string in Kafka message is too long for type jsonb"),
				 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
						   JENTRY_OFFLENMASK)));
	}
	return (int) len;
}

static void
kjson_object_start(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	state->result = pushJsonbValue(&state->parse_state, WJB_BEGIN_OBJECT, NULL);
}

static void
kjson_object_end(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	state->result = pushJsonbValue(&state->parse_state, WJB_END_OBJECT, NULL);
}

static void
kjson_array_start(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	state->result = pushJsonbValue(&state->parse_state, WJB_BEGIN_ARRAY, NULL);
}

static void
kjson_array_end(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	state->result = pushJsonbValue(&state->parse_state, WJB_END_ARRAY, NULL);
}

static void
kjson_object_field_start(void *arg, char *fname, bool isnull)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.len = json_string_len(state, fname);
	v.val.string.val = fname;
	if (!state->build)
	{
		pfree(fname);
		return;
	}
	state->result = pushJsonbValue(&state->parse_state, WJB_KEY, &v);
}

static void
kjson_scalar(void *arg, char *token, JsonTokenType tokentype)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;
	JsonbValue	v;

	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			v.type = jbvString;
			v.val.string.len = json_string_len(state, token);
			v.val.string.val = token;
			break;
		case JSON_TOKEN_NUMBER:
			if (!json_number_fits_numeric(token))
			{
				if (!state->build)
				{
					state->ok = false;
					break;
				}
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("JSON number in Kafka message is out of range for type jsonb"),
						 errdetail("The number \"%s\" overflows the numeric format.",
								   pnstrdup(token, pg_mbcliplen(token, strlen(token),
																MAX_TOKEN_SHOWN)))));
			}
			if (!state->build)
				break;
			v.type = jbvNumeric;
			v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																CStringGetDatum(token),
																ObjectIdGetDatum(InvalidOid),
																Int32GetDatum(-1)));
			break;
		case JSON_TOKEN_TRUE:
			v.type = jbvBool;
			v.val.boolean = true;
			break;
		case JSON_TOKEN_FALSE:
			v.type = jbvBool;
			v.val.boolean = false;
			break;
		case JSON_TOKEN_NULL:
			v.type = jbvNull;
			break;
		default:
			elog(ERROR, "unexpected JSON token type %d", (int) tokentype);
			return;
	}

	if (!state->build)
	{
		pfree(token);
		return;
	}

	if (state->parse_state == NULL)
	{
		/* a scalar document is stored as a one-element raw scalar array */
		JsonbValue	va;

		va.type = jbvArray;
		va.val.array.rawScalar = true;
		va.val.array.nElems = 1;
		state->result = pushJsonbValue(&state->parse_state, WJB_BEGIN_ARRAY, &va);
		state->result = pushJsonbValue(&state->parse_state, WJB_ELEM, &v);
		state->result = pushJsonbValue(&state->parse_state, WJB_END_ARRAY, NULL);
	}
	else if (state->parse_state->contVal.type == jbvArray)
		state->result = pushJsonbValue(&state->parse_state, WJB_ELEM, &v);
	else
		state->result = pushJsonbValue(&state->parse_state, WJB_VALUE, &v);
}

/*
 * Raise the error for a Kafka message that is not text or not valid JSON.
 * With lex NULL the message failed the text checks; otherwise err is the
 * parser's verdict.
 */
static void
report_invalid_json(const char *data, int len, JsonLexContext *lex,
					JsonParseErrorType err)
{
	int			encoding = GetDatabaseEncoding();

	if (lex == NULL)
	{
		int			offset = invalid_text_offset(encoding, data, len);

		Assert(offset >= 0);
		if (data[offset] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid JSON in Kafka message"),
					 errdetail("The message contains a NUL byte at offset %d.",
							   offset)));
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid JSON in Kafka message"),
				 errdetail("Byte sequence %s at offset %d is not valid in encoding \"%s\".",
						   describe_invalid_bytes(encoding, data, len, offset),
						   offset, GetDatabaseEncodingName())));
	}

	/*
	 * Keep a runaway token (a whole non-JSON payload, say) out of the detail.
	 * JSON_ESCAPING_REQUIRED reports the byte at token_terminator: leave it.
	 * At the end of the input token_start is NULL (the detail then quotes no
	 * token).
	 */
	if (err != JSON_ESCAPING_REQUIRED && lex->token_start != NULL &&
		lex->token_terminator - lex->token_start > MAX_TOKEN_SHOWN)
		lex->token_terminator = lex->token_start +
			pg_mbcliplen(lex->token_start,
						 lex->token_terminator - lex->token_start,
						 MAX_TOKEN_SHOWN);

	ereport(ERROR,
			(errcode(err == JSON_UNICODE_CODE_POINT_ZERO ||
					 err == JSON_UNICODE_HIGH_ESCAPE ?
					 ERRCODE_UNTRANSLATABLE_CHARACTER :
					 ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid JSON in Kafka message"),
			 errdetail("%s", json_errdetail(err, lex))));
}

/*
 * Parse text bytes (already verified to be valid in the database encoding
 * and within the nesting limit) into jsonb, building the value in the
 * parser callbacks.  Raises an error for invalid JSON.
 */
static Jsonb *
build_jsonb(const char *data, int len)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	KafkaJsonState state;
	JsonParseErrorType err;

	memset(&state, 0, sizeof(state));
	state.build = true;
	state.ok = true;
	state.input_length = len;

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.object_start = kjson_object_start;
	sem.object_end = kjson_object_end;
	sem.array_start = kjson_array_start;
	sem.array_end = kjson_array_end;
	sem.object_field_start = kjson_object_field_start;
	sem.scalar = kjson_scalar;

	/* the lexer is length-bounded: no NUL terminator needed */
	lex = kafka_make_json_lex(unconstify(char *, data), len, true);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS)
		report_invalid_json(data, len, lex, err);

	return JsonbValueToJsonb(state.result);
}

/*
 * The check of can_json_parse: would build_jsonb() succeed?  Raises no
 * error; when the answer is no and errbuf is given, says why there.
 */
static bool
json_is_parseable(const char *data, int len, char *errbuf, size_t errbufsize)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	KafkaJsonState state;
	JsonParseErrorType err;

	if (!pg_verifymbstr(data, len, true))
	{
		if (errbuf)
			snprintf(errbuf, errbufsize, "is not valid %s.",
					 GetDatabaseEncodingName());
		return false;
	}
	if (json_too_deep(data, len))
	{
		if (errbuf)
			snprintf(errbuf, errbufsize,
					 "is JSON nested more than %d levels deep.",
					 KAFKA_JSON_MAX_DEPTH);
		return false;
	}

	memset(&state, 0, sizeof(state));
	state.build = false;
	state.ok = true;
	state.input_length = len;

	/* only scalars (numbers) and, in huge inputs, keys need a look */
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.scalar = kjson_scalar;
	if (len > JENTRY_OFFLENMASK)
		sem.object_field_start = kjson_object_field_start;

	lex = kafka_make_json_lex(unconstify(char *, data), len, true);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS)
	{
		if (errbuf)
			snprintf(errbuf, errbufsize, "is not valid JSON: %s",
					 json_errdetail(err, lex));
		return false;
	}
	if (!state.ok)
	{
		if (errbuf)
			snprintf(errbuf, errbufsize,
					 "holds a number or string that jsonb cannot represent.");
		return false;
	}
	return true;
}

/*
 * For the scan (record.c): the bytes of a key or value as jsonb, or false
 * without raising an error when they are not representable; errbuf then
 * completes the sentence "The value ..." (e.g. "is not valid JSON: ...").
 */
bool
kafka_json_bytes_to_jsonb(const char *data, int len, Datum *result,
						  char *errbuf, size_t errbufsize)
{
	if (!json_is_parseable(data, len, errbuf, errbufsize))
		return false;
	*result = JsonbPGetDatum(build_jsonb(data, len));
	return true;
}

/*
 * kafka.json_parse(bytea) -> jsonb
 */
Datum
kafka_json_parse(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	const char *data = VARDATA_ANY(raw);
	int			len = VARSIZE_ANY_EXHDR(raw);

	if (!pg_verifymbstr(data, len, true))
		report_invalid_json(data, len, NULL, JSON_SUCCESS);
	if (json_too_deep(data, len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("JSON in Kafka message is nested too deeply"),
				 errdetail("Arrays and objects can be nested at most %d levels deep.",
						   KAFKA_JSON_MAX_DEPTH)));

	PG_RETURN_JSONB_P(build_jsonb(data, len));
}

/*
 * kafka.can_json_parse(bytea) -> boolean
 *
 * True iff kafka.json_parse() would succeed on the same bytes.  Raises no
 * error for any input (short of running out of memory, or a max_stack_depth
 * too small for KAFKA_JSON_MAX_DEPTH levels of parser recursion).
 */
Datum
kafka_can_json_parse(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_BOOL(json_is_parseable(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw),
									 NULL, 0));
}

/*
 * Callbacks of _json_field_text's parse: the checks of can_json_parse, and
 * the top-level value of state->key kept.
 */
static void
kfield_container_start(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	if (state->depth == 1 && state->at_key)
	{
		state->found = true;
		state->found_type = JSON_TOKEN_INVALID;
		state->at_key = false;
	}
	state->depth++;
}

static void
kfield_container_end(void *arg)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	state->depth--;
}

static void
kfield_object_field_start(void *arg, char *fname, bool isnull)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	(void) json_string_len(state, fname);
	state->at_key = state->depth == 1 && strlen(fname) == (size_t) state->key_len &&
		memcmp(fname, state->key, state->key_len) == 0;
	pfree(fname);
}

static void
kfield_scalar(void *arg, char *token, JsonTokenType tokentype)
{
	KafkaJsonState *state = (KafkaJsonState *) arg;

	if (state->depth == 1 && state->at_key)
	{
		/* the checks of kjson_scalar, keeping the token */
		if (tokentype == JSON_TOKEN_STRING)
			(void) json_string_len(state, token);
		else if (tokentype == JSON_TOKEN_NUMBER && !json_number_fits_numeric(token))
			state->ok = false;
		if (state->found_token)
			pfree(state->found_token);
		state->found = true;
		state->found_type = tokentype;
		state->found_token = token;
		state->at_key = false;
		return;
	}
	kjson_scalar(arg, token, tokentype);
}

/* A JSON number's text as jsonb's ->> gives it: numeric_out of numeric_in. */
static text *
json_number_text(const char *token)
{
	/* an integer without sign or leading zero comes back unchanged */
	if (token[0] >= '1' && token[0] <= '9' && token[strspn(token, "0123456789")] == '\0')
		return cstring_to_text(token);
	return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out,
						   DirectFunctionCall3(numeric_in, CStringGetDatum(token),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)))));
}

/*
 * kafka._json_field_text(bytea, key text) -> text
 *
 * kafka.json_parse(v) ->> key, in one checking parse (see the top).
 */
Datum
kafka_json_field_text(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	const char *data = VARDATA_ANY(raw);
	int			len = VARSIZE_ANY_EXHDR(raw);
	KafkaJsonState state;
	JsonSemAction sem;
	JsonLexContext *lex;
	bool		plain;

	memset(&state, 0, sizeof(state));
	state.ok = true;
	state.input_length = len;
	state.key = VARDATA_ANY(key);
	state.key_len = VARSIZE_ANY_EXHDR(key);

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.object_start = kfield_container_start;
	sem.object_end = kfield_container_end;
	sem.array_start = kfield_container_start;
	sem.array_end = kfield_container_end;
	sem.object_field_start = kfield_object_field_start;
	sem.scalar = kfield_scalar;

	/*
	 * Only where nothing but the checks of the parse can make json_parse
	 * fail: building a jsonb of 32 MB or more can hit jsonb's size limits
	 * (2^23 object pairs, 2^24 array elements, 256 MB per container), and
	 * outside UTF-8 the lexer's conversion of \uXXXX escapes raises errors
	 * of its own, at another point of the parse than json_parse would.
	 */
	plain = len < KAFKA_JSON_FAST_MAX_BYTES && GetDatabaseEncoding() == PG_UTF8 &&
		pg_verifymbstr(data, len, true) && !json_too_deep(data, len);
	if (plain)
	{
		lex = kafka_make_json_lex(unconstify(char *, data), len, true);
		plain = pg_parse_json(lex, &sem) == JSON_SUCCESS && state.ok &&
			(!state.found || state.found_type != JSON_TOKEN_INVALID);
	}
	if (!plain)
	{
		/* an error to raise, or a container to print: as json_parse ->> does */
		Datum		doc = DirectFunctionCall1(kafka_json_parse, PointerGetDatum(raw));
		LOCAL_FCINFO(inner, 2);
		Datum		result;

		InitFunctionCallInfoData(*inner, NULL, 2, PG_GET_COLLATION(), NULL, NULL);
		inner->args[0].value = doc;
		inner->args[0].isnull = false;
		inner->args[1].value = PointerGetDatum(key);
		inner->args[1].isnull = false;
		result = jsonb_object_field_text(inner);
		if (inner->isnull)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}
	if (!state.found)
		PG_RETURN_NULL();
	switch (state.found_type)
	{
		case JSON_TOKEN_STRING:
			PG_RETURN_TEXT_P(cstring_to_text(state.found_token));
		case JSON_TOKEN_NUMBER:
			PG_RETURN_TEXT_P(json_number_text(state.found_token));
		case JSON_TOKEN_TRUE:
			PG_RETURN_TEXT_P(cstring_to_text("true"));
		case JSON_TOKEN_FALSE:
			PG_RETURN_TEXT_P(cstring_to_text("false"));
		default:
			PG_RETURN_NULL();	/* JSON null */
	}
}

/* What json_field_mutator() replaces. */
typedef struct JsonFieldRewrite
{
	Oid			json_parse;		/* kafka.json_parse(bytea) */
	Oid			field_text;		/* kafka._json_field_text(bytea, text) */
} JsonFieldRewrite;

static Node *
json_field_mutator(Node *node, JsonFieldRewrite *rw)
{
	List	   *args = NIL;
	Oid			collid = InvalidOid;
	Oid			inputcollid = InvalidOid;

	if (node == NULL)
		return NULL;
	if (IsA(node, OpExpr))
	{
		OpExpr	   *op = (OpExpr *) node;

		if ((OidIsValid(op->opfuncid) ? op->opfuncid : get_opcode(op->opno)) ==
			F_JSONB_OBJECT_FIELD_TEXT)
		{
			args = op->args;
			collid = op->opcollid;
			inputcollid = op->inputcollid;
		}
	}
	else if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == F_JSONB_OBJECT_FIELD_TEXT)
	{
		args = ((FuncExpr *) node)->args;
		collid = ((FuncExpr *) node)->funccollid;
		inputcollid = ((FuncExpr *) node)->inputcollid;
	}
	if (list_length(args) == 2 && IsA(linitial(args), FuncExpr) &&
		((FuncExpr *) linitial(args))->funcid == rw->json_parse &&
		list_length(((FuncExpr *) linitial(args))->args) == 1)
	{
		Node	   *value = linitial(((FuncExpr *) linitial(args))->args);
		Node	   *key = lsecond(args);

		return (Node *) makeFuncExpr(rw->field_text, TEXTOID,
									 list_make2(json_field_mutator(value, rw),
												json_field_mutator(key, rw)),
									 collid, inputcollid, COERCE_EXPLICIT_CALL);
	}
	return expression_tree_mutator(node, json_field_mutator, (void *) rw);
}

/*
 * The OID of function kafka.<name>(argtypes), or InvalidOid.  Through the
 * catalog, not LookupFuncName(): that checks USAGE on schema kafka for the
 * current user, and a refresh whose view calls nothing from it must not
 * start to need it.
 */
static Oid
kafka_function_oid(const char *name, int nargs, const Oid *argtypes)
{
	Oid			nsp = get_namespace_oid("kafka", true);
	HeapTuple	tup;
	Oid			result;

	if (!OidIsValid(nsp))
		return InvalidOid;
	tup = SearchSysCache3(PROCNAMEARGSNSP, CStringGetDatum(name),
						  PointerGetDatum(buildoidvector(argtypes, nargs)),
						  ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	result = ((Form_pg_proc) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return result;
}

/*
 * An expression (or list) with every kafka.json_parse(v) ->> k in it
 * evaluated by kafka._json_field_text(v, k) instead.  Unchanged where that
 * could change what happens:
 *	- the installed extension has no such function (SQL objects not updated);
 *	- the current user (the view's owner, who runs the plan) may not execute
 *	  all three functions: the executor then checks _json_field_text instead
 *	  of the other two, whose own check must stay the one that counts;
 *	- the database encoding is not UTF-8: the lexer converts \uXXXX escapes
 *	  to it and may raise an error of its own, at another point of the parse
 *	  than json_parse would (_json_field_text itself is json_parse ->> then).
 */
Node *
kafka_json_field_fast_path(Node *expr)
{
	JsonFieldRewrite rw;
	Oid			bytea_arg[1] = {BYTEAOID};
	Oid			field_args[2] = {BYTEAOID, TEXTOID};
	Oid			user = GetUserId();

	if (expr == NULL || GetDatabaseEncoding() != PG_UTF8)
		return expr;
	rw.json_parse = kafka_function_oid("json_parse", 1, bytea_arg);
	rw.field_text = kafka_function_oid("_json_field_text", 2, field_args);
	if (!OidIsValid(rw.json_parse) || !OidIsValid(rw.field_text) ||
		pg_proc_aclcheck(rw.json_parse, user, ACL_EXECUTE) != ACLCHECK_OK ||
		pg_proc_aclcheck(rw.field_text, user, ACL_EXECUTE) != ACLCHECK_OK ||
		pg_proc_aclcheck(F_JSONB_OBJECT_FIELD_TEXT, user, ACL_EXECUTE) != ACLCHECK_OK)
		return expr;
	return json_field_mutator(expr, &rw);
}

/*
 * kafka.from_varbyte(bytea, format text) -> text
 */

/* Fail unless a result of nchars characters fits a text value */
static void
check_text_result_size(uint64 nchars, const char *format)
{
	if (nchars > (uint64) (MaxAllocSize - VARHDRSZ))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("result of from_varbyte is too large"),
				 errdetail("Format \"%s\" would produce %llu characters, but a text value holds at most %d bytes.",
						   format, (unsigned long long) nchars,
						   (int) (MaxAllocSize - VARHDRSZ))));
}

static text *
varbyte_to_hex(const char *data, int len)
{
	text	   *result;

	check_text_result_size((uint64) len * 2, "hex");
	result = (text *) palloc(VARHDRSZ + (Size) len * 2);
	hex_encode(data, len, VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + (Size) len * 2);
	return result;
}

static text *
varbyte_to_binary(const char *data, int len)
{
	text	   *result;
	char	   *out;
	int			i;

	check_text_result_size((uint64) len * 8, "binary");
	result = (text *) palloc(VARHDRSZ + (Size) len * 8);
	out = VARDATA(result);
	for (i = 0; i < len; i++)
	{
		unsigned char b = (unsigned char) data[i];
		int			bit;

		for (bit = 7; bit >= 0; bit--)
			*out++ = (b >> bit) & 1 ? '1' : '0';
	}
	SET_VARSIZE(result, VARHDRSZ + (Size) len * 8);
	return result;
}

static text *
varbyte_to_base64(const char *data, int len)
{
	text	   *result;
	int			enclen;

	check_text_result_size(((uint64) len + 2) / 3 * 4, "base64");
	enclen = pg_b64_enc_len(len);
	result = (text *) palloc(VARHDRSZ + enclen);
	enclen = pg_b64_encode(data, len, VARDATA(result), enclen);
	if (enclen < 0)
		elog(ERROR, "could not encode %d bytes as base64", len);
	SET_VARSIZE(result, VARHDRSZ + enclen);
	return result;
}

/* The bytes read as UTF-8, converted to the database encoding */
static text *
varbyte_to_utf8(const char *data, int len)
{
	int			offset = invalid_text_offset(PG_UTF8, data, len);
	char	   *converted;

	if (offset >= 0)
	{
		if (data[offset] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("value cannot be converted to text"),
					 errdetail("The value contains a NUL byte at offset %d.",
							   offset),
					 errhint("Use format 'hex' or 'base64' for binary data.")));
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("value is not valid UTF-8"),
				 errdetail("Byte sequence %s at offset %d is not valid in encoding \"UTF8\".",
						   describe_invalid_bytes(PG_UTF8, data, len, offset),
						   offset),
				 errhint("Use format 'hex' or 'base64' for binary data.")));
	}

	if (GetDatabaseEncoding() == PG_UTF8)
		return cstring_to_text_with_len(data, len);

	/* returns data itself when no conversion applies (SQL_ASCII) */
	converted = pg_any_to_server(data, len, PG_UTF8);
	if (converted == data)
		return cstring_to_text_with_len(data, len);
	return cstring_to_text(converted);
}

Datum
kafka_from_varbyte(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	char	   *format = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *data = VARDATA_ANY(raw);
	int			len = VARSIZE_ANY_EXHDR(raw);

	if (pg_strcasecmp(format, "hex") == 0)
		PG_RETURN_TEXT_P(varbyte_to_hex(data, len));
	if (pg_strcasecmp(format, "binary") == 0)
		PG_RETURN_TEXT_P(varbyte_to_binary(data, len));
	if (pg_strcasecmp(format, "utf8") == 0 ||
		pg_strcasecmp(format, "utf-8") == 0 ||
		pg_strcasecmp(format, "utf_8") == 0)
		PG_RETURN_TEXT_P(varbyte_to_utf8(data, len));
	if (pg_strcasecmp(format, "base64") == 0)
		PG_RETURN_TEXT_P(varbyte_to_base64(data, len));

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized from_varbyte format \"%s\"", format),
			 errhint("Valid formats are \"hex\", \"binary\", \"utf8\" and \"base64\".")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}


/*
 * Reading the kafka_headers format
 */

/* Look up a key of a header object; NULL if absent (see functions.h) */
JsonbValue *
kafka_header_field(JsonbContainer *object, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = unconstify(char *, key);
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(object, JB_FOBJECT, &k);
}

/*
 * Find the first header named name in a kafka_headers value.  Returns NULL
 * when there is none, else the header's "value" (a string or null) or, for a
 * binary header, its "value_base64" string with *is_base64 set.  Elements are
 * examined in order up to the match; a malformed one is an error.
 */
static JsonbValue *
find_header(Jsonb *headers, text *name, bool *is_base64)
{
	const char *namestr = VARDATA_ANY(name);
	int			namelen = VARSIZE_ANY_EXHDR(name);
	uint32		count;
	uint32		i;

	if (!JB_ROOT_IS_ARRAY(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka headers value"),
				 errdetail("Kafka headers are a JSON array of header objects, but the value is a JSON %s.",
						   JB_ROOT_IS_OBJECT(headers) ? "object" : "scalar"),
				 errhint("Pass the kafka_headers column of a kafka_fdw foreign table.")));

	*is_base64 = false;
	count = JB_ROOT_COUNT(headers);
	for (i = 0; i < count; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&headers->root, i);
		JsonbContainer *object;
		JsonbValue *key;
		JsonbValue *value;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka headers value"),
					 errdetail("Element %u is not a JSON object.", i + 1)));
		object = elem->val.binary.data;

		key = kafka_header_field(object, HDR_KEY);
		if (key == NULL || key->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka headers value"),
					 errdetail("Element %u has no string \"key\".", i + 1)));
		if (key->val.string.len != namelen ||
			memcmp(key->val.string.val, namestr, namelen) != 0)
			continue;

		value = kafka_header_field(object, HDR_VALUE);
		if (value != NULL)
		{
			if (value->type == jbvNull)
				return NULL;
			if (value->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid Kafka headers value"),
						 errdetail("The \"value\" of element %u is neither a string nor null.",
								   i + 1)));
			return value;
		}
		value = kafka_header_field(object, HDR_VALUE_BASE64);
		if (value == NULL || value->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka headers value"),
					 errdetail("Element %u has neither a \"value\" nor a string \"value_base64\".",
							   i + 1)));
		*is_base64 = true;
		return value;
	}
	return NULL;
}

/*
 * The text value of the first header named name in a headers jsonb as
 * scans return it, palloc'd; NULL if there is none, its value is null or
 * binary.  For C callers (cdc_apply.c).
 */
char *
kafka_header_text(Jsonb *headers, text *name)
{
	JsonbValue *value;
	bool		is_base64;

	value = find_header(headers, name, &is_base64);
	if (value == NULL || is_base64)
		return NULL;
	return pnstrdup(value->val.string.val, value->val.string.len);
}

/*
 * kafka.header(jsonb, name text) -> text
 *
 * The value of the first header named name; NULL if there is none or its
 * value is null.  A binary header value is an error (see header_bytes).
 */
Datum
kafka_header(PG_FUNCTION_ARGS)
{
	Jsonb	   *headers = PG_GETARG_JSONB_P(0);
	text	   *name = PG_GETARG_TEXT_PP(1);
	JsonbValue *value;
	bool		is_base64;

	value = find_header(headers, name, &is_base64);
	if (value == NULL)
		PG_RETURN_NULL();
	if (is_base64)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("header \"%s\" is not valid text", text_to_cstring(name)),
				 errdetail("Its value is not valid in encoding \"%s\" or contains a NUL byte.",
						   GetDatabaseEncodingName()),
				 errhint("Use kafka.header_bytes() to read binary header values.")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(value->val.string.val,
											  value->val.string.len));
}

/*
 * kafka.header_bytes(jsonb, name text) -> bytea
 *
 * The raw bytes of the first header named name; NULL if there is none or its
 * value is null.
 */
Datum
kafka_header_bytes(PG_FUNCTION_ARGS)
{
	Jsonb	   *headers = PG_GETARG_JSONB_P(0);
	text	   *name = PG_GETARG_TEXT_PP(1);
	JsonbValue *value;
	bool		is_base64;
	bytea	   *result;
	int			len;

	value = find_header(headers, name, &is_base64);
	if (value == NULL)
		PG_RETURN_NULL();
	if (!is_base64)
	{
		len = value->val.string.len;
		result = (bytea *) palloc(VARHDRSZ + len);
		memcpy(VARDATA(result), value->val.string.val, len);
		SET_VARSIZE(result, VARHDRSZ + len);
		PG_RETURN_BYTEA_P(result);
	}

	len = pg_b64_dec_len(value->val.string.len);
	result = (bytea *) palloc(VARHDRSZ + len);
	len = pg_b64_decode(value->val.string.val, value->val.string.len,
						VARDATA(result), len);
	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka headers value"),
				 errdetail("The \"value_base64\" of header \"%s\" is not valid base64.",
						   text_to_cstring(name))));
	SET_VARSIZE(result, VARHDRSZ + len);
	PG_RETURN_BYTEA_P(result);
}


/*
 * Building the kafka_headers format
 */

static void
push_string(JsonbParseState **state, JsonbIteratorToken seq,
			const char *str, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = unconstify(char *, str);
	v.val.string.len = len;
	(void) pushJsonbValue(state, seq, &v);
}

/* See functions.h for the contract */
Jsonb *
kafka_build_headers_jsonb(int nheaders, const char *const *names,
						  const void *const *values, const size_t *sizes)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			i;

	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < nheaders; i++)
	{
		size_t		namelen = strlen(names[i]);
		const char *value = (const char *) values[i];
		size_t		size = sizes[i];

		if (namelen > JENTRY_OFFLENMASK ||
			!pg_verifymbstr(names[i], (int) namelen, true))
			return NULL;

		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		push_string(&state, WJB_KEY, HDR_KEY, sizeof(HDR_KEY) - 1);
		push_string(&state, WJB_VALUE, names[i], (int) namelen);

		if (value == NULL)
		{
			JsonbValue	null;

			null.type = jbvNull;
			push_string(&state, WJB_KEY, HDR_VALUE, sizeof(HDR_VALUE) - 1);
			(void) pushJsonbValue(&state, WJB_VALUE, &null);
		}
		else if (size <= JENTRY_OFFLENMASK &&
				 pg_verifymbstr(value, (int) size, true))
		{
			push_string(&state, WJB_KEY, HDR_VALUE, sizeof(HDR_VALUE) - 1);
			push_string(&state, WJB_VALUE, value, (int) size);
		}
		else
		{
			char	   *enc;
			int			enclen;

			/* 3 bytes become 4 characters */
			if (size > (size_t) JENTRY_OFFLENMASK / 4 * 3)
				return NULL;
			enclen = pg_b64_enc_len((int) size);
			enc = palloc(enclen + 1);
			enclen = pg_b64_encode(value, (int) size, enc, enclen);
			if (enclen < 0)
				elog(ERROR, "could not encode a header value of %zu bytes as base64",
					 size);
			push_string(&state, WJB_KEY, HDR_VALUE_BASE64,
						sizeof(HDR_VALUE_BASE64) - 1);
			push_string(&state, WJB_VALUE, enc, enclen);
		}
		(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * kafka._build_headers_for_test(names text[], header_values bytea[]) -> jsonb
 *
 * Internal, for the regression tests: runs kafka_build_headers_jsonb() on
 * the given headers (a NULL array element is a null value).  Returns NULL
 * where the builder does.
 */
Datum
kafka_build_headers_for_test(PG_FUNCTION_ARGS)
{
	ArrayType  *name_array = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *value_array = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *name_datums;
	bool	   *name_nulls;
	int			nnames;
	Datum	   *value_datums;
	bool	   *value_nulls;
	int			nvalues;
	const char **names;
	const void **values;
	size_t	   *sizes;
	Jsonb	   *result;
	int			i;

	deconstruct_array(name_array, TEXTOID, -1, false, TYPALIGN_INT,
					  &name_datums, &name_nulls, &nnames);
	deconstruct_array(value_array, BYTEAOID, -1, false, TYPALIGN_INT,
					  &value_datums, &value_nulls, &nvalues);
	if (nnames != nvalues)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("header name and value arrays must have the same length")));

	names = palloc(sizeof(char *) * Max(nnames, 1));
	values = palloc(sizeof(void *) * Max(nnames, 1));
	sizes = palloc(sizeof(size_t) * Max(nnames, 1));
	for (i = 0; i < nnames; i++)
	{
		if (name_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("header names must not be null")));
		names[i] = TextDatumGetCString(name_datums[i]);
		if (value_nulls[i])
		{
			values[i] = NULL;
			sizes[i] = 0;
		}
		else
		{
			bytea	   *v = DatumGetByteaPP(value_datums[i]);

			values[i] = VARDATA_ANY(v);
			sizes[i] = VARSIZE_ANY_EXHDR(v);
		}
	}

	result = kafka_build_headers_jsonb(nnames, names, values, sizes);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(result);
}

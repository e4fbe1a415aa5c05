/*-------------------------------------------------------------------------
 *
 * cdc_decode.c
 *		A Debezium change event (JSON, with or without schemas) into an
 *		operation and a row image of the replica table.
 *
 * The event's value is parsed once with jansson, and each field of the row
 * ("after" for c/r/u; "before", else the message key, for d) is converted
 * straight into the column's Datum: no jsonb is built and read again.
 *
 * With schemas ({"schema": ..., "payload": ...}, the JsonConverter's
 * default) each field's Connect type and logical name say how it is
 * encoded: Decimal as base64 of the unscaled two's-complement integer with
 * the scale in the schema, VariableScaleDecimal as {"scale", "value"},
 * io.debezium.time.* as numbers since the epoch or midnight in ms, µs or ns,
 * bytes as base64, everything else (strings, numbers, ZonedTimestamp, Json,
 * Uuid) as text for the column's input function.  Without schemas the
 * column's type decides: bytea takes base64, numeric a base64 unscaled
 * integer with the column's scale (or a decimal string or number), date,
 * time and timestamp a number in the unit Debezium's default
 * ("adaptive") time precision uses for that precision: ms up to 3
 * fractional digits, µs beyond.
 *
 * PostgreSQL's unchanged-TOAST placeholder "__debezium_unavailable_value"
 * (base64 of it in a bytea column) marks a column whose old value stays.
 *
 * A value that does not fit its column, or an event that cannot be applied
 * (not JSON, an unknown op, no key), raises an ERROR with a data-exception
 * SQLSTATE; cdc_apply.c skips and logs such events, or fails the apply under
 * on_error 'fail'.
 *
 * jansson allocates with palloc in the current memory context: the caller
 * parses each event in a context it resets, so a parse cut short by an error
 * leaks nothing and no json_decref is needed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "access/genam.h"
#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "datatype/timestamp.h"
#include "utils/date.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "common/int.h"

#include "cdc.h"

#define UNAVAILABLE_VALUE "__debezium_unavailable_value"
#define UNAVAILABLE_VALUE_BASE64 "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="

/* Days and microseconds between the Unix and PostgreSQL epochs. */
#define EPOCH_DIFF_DAYS (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define EPOCH_DIFF_USECS ((int64) EPOCH_DIFF_DAYS * USECS_PER_DAY)

/* A field of a struct schema, with how its values become column values. */
typedef struct CdcFieldInfo
{
	const char *name;
	CdcConversion conv;
	int32		scale;
	json_t	   *schema;			/* the field's schema */
} CdcFieldInfo;

static void *
cdc_json_alloc(size_t size)
{
	return palloc(size);
}

static void
cdc_json_free(void *ptr)
{
	if (ptr)
		pfree(ptr);
}

static void
use_palloc_for_jansson(void)
{
	static bool done = false;

	if (!done)
	{
		json_set_alloc_funcs(cdc_json_alloc, cdc_json_free);
		done = true;
	}
}

pg_attribute_noreturn() pg_attribute_printf(2, 3)
static void
bad_event(int sqlstate, const char *fmt,...)
{
	char		buf[512];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	ereport(ERROR, (errcode(sqlstate), errmsg_internal("%s", buf)));
}

/* The scale of a numeric(p, s) typmod, or -1 if it has none. */
static int32
numeric_typmod_scale(int32 typmod)
{
	if (typmod < (int32) VARHDRSZ)
		return -1;
	return ((((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024);
}

/* The fractional digits of a time or timestamp typmod (6 when unset). */
static int32
time_typmod_precision(int32 typmod)
{
	return typmod < 0 ? 6 : typmod;
}

void
cdc_table_init(CdcTable *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);

	use_palloc_for_jansson();
	t->name = pstrdup(RelationGetRelationName(rel));
	t->ncols = desc->natts;
	t->cols = palloc0(sizeof(CdcColumn) * Max(desc->natts, 1));
	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replica table \"%s\" has no primary key", t->name),
				 errhint("Change events are applied by primary key: add one with ALTER TABLE ... ADD PRIMARY KEY.")));
	{
		Relation	idx = index_open(pk, AccessShareLock);

		t->nkeys = idx->rd_index->indnkeyatts;
		t->keys = palloc(sizeof(AttrNumber) * t->nkeys);
		for (int k = 0; k < t->nkeys; k++)
		{
			t->keys[k] = idx->rd_index->indkey.values[k];
			if (t->keys[k] <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("the primary key of replica table \"%s\" has an expression", t->name)));
		}
		index_close(idx, AccessShareLock);
	}
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		CdcColumn  *c = &t->cols[i];
		Oid			infunc;

		if (att->attisdropped)
			continue;
		c->name = pstrdup(NameStr(att->attname));
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		getTypeInputInfo(c->typid, &infunc, &c->ioparam);
		fmgr_info(infunc, &c->input);
		c->schemaless = CDC_CONV_TEXT;
		c->schemaless_scale = -1;
		switch (c->typid)
		{
			case BYTEAOID:
				c->schemaless = CDC_CONV_BYTES;
				break;
			case NUMERICOID:
				c->schemaless = CDC_CONV_DECIMAL;
				c->schemaless_scale = numeric_typmod_scale(c->typmod);
				break;
			case DATEOID:
				c->schemaless = CDC_CONV_DATE;
				break;
			case TIMEOID:
				c->schemaless = time_typmod_precision(c->typmod) <= 3 ?
					CDC_CONV_TIME_MS : CDC_CONV_TIME_US;
				break;
			case TIMESTAMPOID:
				c->schemaless = time_typmod_precision(c->typmod) <= 3 ?
					CDC_CONV_TIMESTAMP_MS : CDC_CONV_TIMESTAMP_US;
				break;
			case INTERVALOID:
				c->schemaless = CDC_CONV_INTERVAL_US;
				break;
			default:
				break;
		}
	}
	for (int k = 0; k < t->nkeys; k++)
		t->cols[t->keys[k] - 1].is_key = true;
	t->schema_cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka_fdw replica schema",
										  ALLOCSET_SMALL_SIZES);
	t->schema_text = NULL;
	t->schema_len = 0;
	t->after_fields = t->before_fields = NULL;
	t->nafter = t->nbefore = 0;
	t->cache_size = desc->natts + 8;
	t->field_cache = palloc(sizeof(int) * t->cache_size);
	for (int i = 0; i < t->cache_size; i++)
		t->field_cache[i] = -1;
}

void
cdc_event_init(CdcEvent *ev, const CdcTable *t)
{
	int			n = Max(t->ncols, 1);

	ev->values = palloc(sizeof(Datum) * n);
	ev->isnull = palloc(sizeof(bool) * n);
	ev->present = palloc(sizeof(bool) * n);
	ev->unavailable = palloc(sizeof(bool) * n);
}

/* The column named by the pos-th field of a row, or -1. */
static int
field_column(CdcTable *t, const char *name, int pos)
{
	int			c = pos < t->cache_size ? t->field_cache[pos] : -1;

	if (c >= 0 && strcmp(t->cols[c].name, name) == 0)
		return c;
	for (c = 0; c < t->ncols; c++)
		if (t->cols[c].name && strcmp(t->cols[c].name, name) == 0)
		{
			if (pos < t->cache_size)
				t->field_cache[pos] = c;
			return c;
		}
	return -1;
}

/*
 * The schema of the pos-th field of a struct schema ("fields": [...]), found
 * by position first (Debezium writes payload fields in schema order), else
 * by name; NULL if none.
 */
static json_t *
field_schema(json_t *fields, const char *name, int pos)
{
	json_t	   *f;
	size_t		i;

	if (fields == NULL)
		return NULL;
	f = json_array_get(fields, pos);
	if (f && json_is_string(json_object_get(f, "field")) &&
		strcmp(json_string_value(json_object_get(f, "field")), name) == 0)
		return f;
	json_array_foreach(fields, i, f)
	{
		json_t	   *n = json_object_get(f, "field");

		if (json_is_string(n) && strcmp(json_string_value(n), name) == 0)
			return f;
	}
	return NULL;
}

/* The "fields" of the struct schema of an envelope field ("after", "before"). */
static json_t *
struct_fields(json_t *schema, const char *name)
{
	json_t	   *f;

	if (schema == NULL)
		return NULL;
	if (name == NULL)
		return json_object_get(schema, "fields");
	f = field_schema(json_object_get(schema, "fields"), name, -1);
	return f ? json_object_get(f, "fields") : NULL;
}

/* How a field encoded as its schema says becomes a value. */
static CdcConversion
schema_conversion(json_t *fs, int32 *scale)
{
	const char *type = json_string_value(json_object_get(fs, "type"));
	const char *name = json_string_value(json_object_get(fs, "name"));

	*scale = -1;
	if (name != NULL)
	{
		if (strcmp(name, "org.apache.kafka.connect.data.Decimal") == 0)
		{
			json_t	   *p = json_object_get(json_object_get(fs, "parameters"), "scale");

			*scale = json_is_string(p) ? atoi(json_string_value(p)) :
				json_is_integer(p) ? (int32) json_integer_value(p) : 0;
			return CDC_CONV_DECIMAL;
		}
		if (strcmp(name, "io.debezium.data.VariableScaleDecimal") == 0)
			return CDC_CONV_VARIABLE_DECIMAL;
		if (strcmp(name, "io.debezium.time.Date") == 0 ||
			strcmp(name, "org.apache.kafka.connect.data.Date") == 0)
			return CDC_CONV_DATE;
		if (strcmp(name, "io.debezium.time.Time") == 0 ||
			strcmp(name, "org.apache.kafka.connect.data.Time") == 0)
			return CDC_CONV_TIME_MS;
		if (strcmp(name, "io.debezium.time.MicroTime") == 0)
			return CDC_CONV_TIME_US;
		if (strcmp(name, "io.debezium.time.NanoTime") == 0)
			return CDC_CONV_TIME_NS;
		if (strcmp(name, "io.debezium.time.Timestamp") == 0 ||
			strcmp(name, "org.apache.kafka.connect.data.Timestamp") == 0)
			return CDC_CONV_TIMESTAMP_MS;
		if (strcmp(name, "io.debezium.time.MicroTimestamp") == 0)
			return CDC_CONV_TIMESTAMP_US;
		if (strcmp(name, "io.debezium.time.NanoTimestamp") == 0)
			return CDC_CONV_TIMESTAMP_NS;
		if (strcmp(name, "io.debezium.time.MicroDuration") == 0)
			return CDC_CONV_INTERVAL_US;
	}
	if (type != NULL && strcmp(type, "bytes") == 0)
		return CDC_CONV_BYTES;
	return CDC_CONV_TEXT;
}

/* A JSON scalar as text (numbers as PostgreSQL would print them). */
static char *
scalar_text(json_t *v, char *buf, size_t buflen)
{
	switch (json_typeof(v))
	{
		case JSON_STRING:
			return (char *) json_string_value(v);
		case JSON_INTEGER:
			snprintf(buf, buflen, "%lld", (long long) json_integer_value(v));
			return buf;
		case JSON_REAL:
			return float8out_internal(json_real_value(v));
		case JSON_TRUE:
			return "true";
		case JSON_FALSE:
			return "false";
		default:
			return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	}
}

static bytea *
decode_base64(const char *col, const char *s)
{
	size_t		len = strlen(s);
	int			max = pg_b64_dec_len((int) len);
	bytea	   *b = palloc(VARHDRSZ + max);
	int			n = pg_b64_decode(s, (int) len, VARDATA(b), max);

	if (n < 0)
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "value of column \"%s\" is not valid base64", col);
	SET_VARSIZE(b, VARHDRSZ + n);
	return b;
}

/*
 * The decimal text of a big-endian two's-complement integer with the given
 * scale: what Kafka Connect's Decimal (BigDecimal's unscaled value) holds.
 */
static char *
unscaled_to_text(const unsigned char *bytes, int len, int32 scale)
{
	unsigned char *mag = palloc(Max(len, 1));
	bool		negative = len > 0 && (bytes[0] & 0x80);
	int			ndigits = 0;
	char	   *digits = palloc(len * 3 + 2);
	StringInfoData out;

	memcpy(mag, bytes, len);
	if (negative)
	{
		/* two's complement: invert and add one */
		int			carry = 1;

		for (int i = len - 1; i >= 0; i--)
		{
			int			v = (unsigned char) ~mag[i] + carry;

			mag[i] = (unsigned char) v;
			carry = v >> 8;
		}
	}
	/* repeated division by 10, least significant digit first */
	for (;;)
	{
		int			rem = 0;
		bool		nonzero = false;

		for (int i = 0; i < len; i++)
		{
			int			cur = (rem << 8) | mag[i];

			mag[i] = (unsigned char) (cur / 10);
			rem = cur % 10;
			nonzero |= mag[i] != 0;
		}
		digits[ndigits++] = (char) ('0' + rem);
		if (!nonzero)
			break;
	}
	initStringInfo(&out);
	if (negative)
		appendStringInfoChar(&out, '-');
	if (scale <= 0)
	{
		for (int i = ndigits - 1; i >= 0; i--)
			appendStringInfoChar(&out, digits[i]);
		for (int i = 0; i < -scale; i++)
			appendStringInfoChar(&out, '0');
		return out.data;
	}
	for (int i = Max(ndigits, scale + 1) - 1; i >= 0; i--)
	{
		appendStringInfoChar(&out, i < ndigits ? digits[i] : '0');
		if (i == scale)
			appendStringInfoChar(&out, '.');
	}
	return out.data;
}

static char *
decimal_text(const char *col, json_t *v, int32 scale)
{
	bytea	   *b;

	if (!json_is_string(v))
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "value of decimal column \"%s\" is not a base64 string", col);
	b = decode_base64(col, json_string_value(v));
	return unscaled_to_text((unsigned char *) VARDATA(b), VARSIZE(b) - VARHDRSZ, scale);
}

/* A value of a natural type into the column's type, through text if they differ. */
static Datum
coerce(const CdcColumn *c, Datum d, Oid natural)
{
	Oid			outfunc;
	bool		varlena;

	if (c->typid == natural)
		return d;
	getTypeOutputInfo(natural, &outfunc, &varlena);
	return InputFunctionCall((FmgrInfo *) &c->input, OidOutputFunctionCall(outfunc, d),
							 c->ioparam, c->typmod);
}

static int64
number_value(const char *col, json_t *v)
{
	if (!json_is_integer(v))
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "value of column \"%s\" is not an integer", col);
	return (int64) json_integer_value(v);
}

/* n units of 1/per_second seconds as microseconds, or an error. */
static int64
to_usecs(const char *col, int64 n, int64 per_second)
{
	int64		us;

	if (per_second == 1000)
	{
		if (pg_mul_s64_overflow(n, 1000, &us))
			bad_event(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE, "value of column \"%s\" is out of range", col);
		return us;
	}
	if (per_second == 1000000000)
		return n / 1000;
	return n;
}

static Datum
convert_value(const CdcColumn *c, json_t *v, CdcConversion conv, int32 scale)
{
	char		buf[64];

	switch (conv)
	{
		case CDC_CONV_BYTES:
			if (!json_is_string(v))
				break;
			return coerce(c, PointerGetDatum(decode_base64(c->name, json_string_value(v))), BYTEAOID);
		case CDC_CONV_DECIMAL:
			if (json_is_object(v))	/* schemaless: a VariableScaleDecimal */
				return convert_value(c, v, CDC_CONV_VARIABLE_DECIMAL, scale);
			if (!json_is_string(v))
				break;			/* decimal.handling.mode double: a number */
			if (scale < 0)
				bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
						  "value of column \"%s\" is base64 of a decimal, but the column's type has no scale",
						  c->name);
			return InputFunctionCall((FmgrInfo *) &c->input, decimal_text(c->name, v, scale),
									 c->ioparam, c->typmod);
		case CDC_CONV_VARIABLE_DECIMAL:
			if (!json_is_object(v))
				break;
			return InputFunctionCall((FmgrInfo *) &c->input,
									 decimal_text(c->name, json_object_get(v, "value"),
												  (int32) number_value(c->name, json_object_get(v, "scale"))),
									 c->ioparam, c->typmod);
		case CDC_CONV_DATE:
			{
				int64		days;

				if (!json_is_integer(v))
					break;
				days = json_integer_value(v) - EPOCH_DIFF_DAYS;
				if (days < PG_INT32_MIN || days > PG_INT32_MAX ||
					!IS_VALID_DATE((DateADT) days))
					bad_event(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE,
							  "value of column \"%s\" is out of the range of date", c->name);
				return coerce(c, DateADTGetDatum((DateADT) days), DATEOID);
			}
		case CDC_CONV_TIME_MS:
		case CDC_CONV_TIME_US:
		case CDC_CONV_TIME_NS:
			{
				int64		us;

				if (!json_is_integer(v))
					break;
				us = to_usecs(c->name, json_integer_value(v),
							  conv == CDC_CONV_TIME_MS ? 1000 : conv == CDC_CONV_TIME_US ? 1000000 : 1000000000);
				if (us < 0 || us > USECS_PER_DAY)
					bad_event(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE,
							  "value of column \"%s\" is out of the range of time", c->name);
				return coerce(c, TimeADTGetDatum(us), TIMEOID);
			}
		case CDC_CONV_TIMESTAMP_MS:
		case CDC_CONV_TIMESTAMP_US:
		case CDC_CONV_TIMESTAMP_NS:
			{
				int64		us;
				Timestamp	ts;

				if (!json_is_integer(v))
					break;
				us = to_usecs(c->name, json_integer_value(v),
							  conv == CDC_CONV_TIMESTAMP_MS ? 1000 : conv == CDC_CONV_TIMESTAMP_US ? 1000000 : 1000000000);
				if (pg_sub_s64_overflow(us, EPOCH_DIFF_USECS, &ts) || !IS_VALID_TIMESTAMP(ts))
					bad_event(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE,
							  "value of column \"%s\" is out of the range of timestamp", c->name);
				return coerce(c, TimestampGetDatum(ts), TIMESTAMPOID);
			}
		case CDC_CONV_INTERVAL_US:
			{
				Interval   *iv;

				if (!json_is_integer(v))
					break;
				iv = palloc0(sizeof(Interval));
				iv->time = json_integer_value(v);
				return coerce(c, IntervalPGetDatum(iv), INTERVALOID);
			}
		case CDC_CONV_TEXT:
			break;
	}
	return InputFunctionCall((FmgrInfo *) &c->input, scalar_text(v, buf, sizeof(buf)),
							 c->ioparam, c->typmod);
}

static char *column_type_sql(json_t *fs);

static bool
is_unavailable(const CdcColumn *c, json_t *v)
{
	const char *s;

	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	return strcmp(s, UNAVAILABLE_VALUE) == 0 ||
		(c->typid == BYTEAOID && strcmp(s, UNAVAILABLE_VALUE_BASE64) == 0);
}

/* The fields of a struct schema ("fields": [...]) with their conversions. */
static CdcFieldInfo *
field_infos(json_t *fields, int *n)
{
	CdcFieldInfo *infos;
	json_t	   *f;
	size_t		i;

	*n = 0;
	if (!json_is_array(fields))
		return NULL;
	infos = palloc0(sizeof(CdcFieldInfo) * Max(json_array_size(fields), 1));
	json_array_foreach(fields, i, f)
	{
		infos[i].name = json_string_value(json_object_get(f, "field"));
		if (infos[i].name == NULL)
			infos[i].name = "";
		infos[i].conv = schema_conversion(f, &infos[i].scale);
		infos[i].schema = f;
	}
	*n = (int) json_array_size(fields);
	return infos;
}

/* The schema of the pos-th field of a row: by position first, else by name. */
static const CdcFieldInfo *
field_info(const CdcFieldInfo *infos, int n, const char *name, int pos)
{
	if (pos < n && strcmp(infos[pos].name, name) == 0)
		return &infos[pos];
	for (int i = 0; i < n; i++)
		if (strcmp(infos[i].name, name) == 0)
			return &infos[i];
	return NULL;
}

/*
 * Fill the event's row image from a JSON object of fields (after, before or
 * the key), with the struct schema's fields (infos, n) if the event has a
 * schema (infos NULL: it has none).  keys_only: take only the primary key's
 * columns (a delete).
 */
static void
fill_row(CdcTable *t, json_t *row, const CdcFieldInfo *infos, int n, bool keys_only,
		 CdcEvent *ev)
{
	const char *name;
	json_t	   *v;
	int			pos = 0;

	json_object_foreach(row, name, v)
	{
		int			c = field_column(t, name, pos);
		const CdcColumn *col;
		const CdcFieldInfo *fi = infos ? field_info(infos, n, name, pos) : NULL;

		pos++;
		if (c < 0)
		{
			if (fi && !keys_only)
			{
				/* a column added at the source: the replica gets it too */
				CdcColumnDef *def = palloc(sizeof(CdcColumnDef));

				def->name = pstrdup(name);
				def->type_sql = column_type_sql(fi->schema);
				def->not_null = false;
				ev->new_columns = lappend(ev->new_columns, def);
			}
			else if (!keys_only)
				bad_event(ERRCODE_INVALID_PARAMETER_VALUE,
						  "the event has column \"%s\", which replica table \"%s\" lacks",
						  name, t->name);
			continue;
		}
		col = &t->cols[c];
		if (keys_only && !col->is_key)
			continue;
		ev->present[c] = true;
		if (json_is_null(v))
		{
			ev->isnull[c] = true;
			continue;
		}
		if (!keys_only && is_unavailable(col, v))
		{
			ev->unavailable[c] = ev->has_unavailable = true;
			continue;
		}
		if (ev->new_columns != NIL)
			continue;			/* the event waits for the new columns */
		if (infos)
			ev->values[c] = convert_value(col, v, fi ? fi->conv : CDC_CONV_TEXT,
										  fi ? fi->scale : -1);
		else
			ev->values[c] = convert_value(col, v, col->schemaless, col->schemaless_scale);
		ev->isnull[c] = false;
	}
}

/* fill_row() with the struct schema given as its JSON "fields" (or NULL). */
static void
fill_row_with_fields(CdcTable *t, json_t *row, json_t *fields, bool keys_only, CdcEvent *ev)
{
	int			n;
	CdcFieldInfo *infos = fields ? field_infos(fields, &n) : NULL;

	fill_row(t, row, infos, infos ? n : 0, keys_only, ev);
}

static bool
has_all_keys(const CdcTable *t, const CdcEvent *ev)
{
	for (int k = 0; k < t->nkeys; k++)
		if (!ev->present[t->keys[k] - 1] || ev->isnull[t->keys[k] - 1])
			return false;
	return true;
}

static void
reset_row(const CdcTable *t, CdcEvent *ev)
{
	for (int i = 0; i < t->ncols; i++)
	{
		ev->present[i] = ev->unavailable[i] = false;
		ev->isnull[i] = true;
		ev->values[i] = (Datum) 0;
	}
	ev->has_unavailable = false;
	ev->new_columns = NIL;
}

/* Parse a JSON document; *schema and *payload split an envelope with schemas. */
static json_t *
parse_document(const char *what, const char *data, size_t len, json_t **schema)
{
	json_error_t err;
	json_t	   *root = json_loadb(data, len, JSON_DECODE_ANY, &err);
	json_t	   *payload;

	*schema = NULL;
	if (root == NULL)
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "the %s is not valid JSON: %s (at position %d)", what, err.text, err.position);
	if (json_is_object(root) && json_object_size(root) == 2 &&
		(payload = json_object_get(root, "payload")) != NULL &&
		json_object_get(root, "schema") != NULL)
	{
		*schema = json_object_get(root, "schema");
		if (json_is_null(*schema))
			*schema = NULL;
		return payload;
	}
	return root;
}

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Past a JSON string starting at p (a quote), or NULL. */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Past the JSON value starting at p, or NULL; only brackets and strings are checked. */
static const char *
skip_value(const char *p, const char *end)
{
	int			depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[')
	{
		while (p < end && strchr(",}] \t\r\n", *p) == NULL)
			p++;
		return p;
	}
	while (p < end)
	{
		if (*p == '"')
		{
			p = skip_string(p, end);
			if (p == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

static const char *
skip_literal(const char *p, const char *end, const char *lit)
{
	size_t		n = strlen(lit);

	p = skip_ws(p, end);
	if ((size_t) (end - p) < n || memcmp(p, lit, n) != 0)
		return NULL;
	return skip_ws(p + n, end);
}

/*
 * Split {"schema": S, "payload": P} (the JSON converter's layout) into the
 * texts of S and P, without parsing them; false for any other layout.
 */
static bool
split_envelope(const char *data, size_t len, const char **s, size_t *slen,
			   const char **pl, size_t *plen)
{
	const char *end = data + len;
	const char *p;
	const char *e;

	if ((p = skip_literal(data, end, "{")) == NULL ||
		(p = skip_literal(p, end, "\"schema\"")) == NULL ||
		(p = skip_literal(p, end, ":")) == NULL ||
		(e = skip_value(p, end)) == NULL)
		return false;
	*s = p;
	*slen = e - p;
	if ((p = skip_literal(e, end, ",")) == NULL ||
		(p = skip_literal(p, end, "\"payload\"")) == NULL ||
		(p = skip_literal(p, end, ":")) == NULL ||
		(e = skip_value(p, end)) == NULL)
		return false;
	*pl = p;
	*plen = e - p;
	return skip_literal(e, end, "}") == end;
}

/*
 * Parse an event's value.  With schemas in the converter's layout, the
 * schema is parsed only when its text differs from the last event's (it is
 * most of the message, and the same for every event of a table version);
 * its fields' conversions are kept in the table.  Sets *with_schema.
 */
static json_t *
parse_value(CdcTable *t, const char *data, size_t len, bool *with_schema)
{
	const char *s;
	const char *pl;
	size_t		slen;
	size_t		plen;
	json_error_t err;
	json_t	   *payload;

	if (!split_envelope(data, len, &s, &slen, &pl, &plen))
	{
		json_t	   *schema;

		payload = parse_document("value", data, len, &schema);
		*with_schema = schema != NULL;
		if (schema)
		{
			/* not the usual layout: the schema of this event only */
			t->schema_len = 0;
			t->after_fields = field_infos(struct_fields(schema, "after"), &t->nafter);
			t->before_fields = field_infos(struct_fields(schema, "before"), &t->nbefore);
		}
		return payload;
	}
	*with_schema = !(slen == 4 && memcmp(s, "null", 4) == 0);
	if (*with_schema && (t->schema_len != slen || memcmp(t->schema_text, s, slen) != 0))
	{
		MemoryContext old;
		json_t	   *schema;

		t->schema_len = 0;
		MemoryContextReset(t->schema_cxt);
		old = MemoryContextSwitchTo(t->schema_cxt);
		schema = json_loadb(s, slen, 0, &err);
		if (schema == NULL)
		{
			MemoryContextSwitchTo(old);
			bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
					  "the value's schema is not valid JSON: %s (at position %d)", err.text, err.position);
		}
		t->after_fields = field_infos(struct_fields(schema, "after"), &t->nafter);
		t->before_fields = field_infos(struct_fields(schema, "before"), &t->nbefore);
		t->schema_text = palloc(slen);
		memcpy(t->schema_text, s, slen);
		MemoryContextSwitchTo(old);
		t->schema_len = slen;
	}
	payload = json_loadb(pl, plen, JSON_DECODE_ANY, &err);
	if (payload == NULL)
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "the value is not valid JSON: %s (at position %d)", err.text,
				  err.position + (int) (pl - data));
	return payload;
}

void
cdc_decode_event(CdcTable *t, const char *key, size_t keylen,
				 const char *value, size_t valuelen, CdcEvent *ev)
{
	bool		with_schema;
	json_t	   *payload;
	json_t	   *opv;
	const char *op;

	reset_row(t, ev);
	ev->op = CDC_OP_NONE;
	if (value == NULL)
		return;					/* a tombstone: the delete before it did the work */
	payload = parse_value(t, value, valuelen, &with_schema);
	if (json_is_null(payload))
		return;
	if (!json_is_object(payload))
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION, "the value is not a Debezium change event");
	opv = json_object_get(payload, "op");
	op = json_string_value(opv);
	if (op == NULL)
		bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
				  "the value is not a Debezium change event: it has no \"op\"");
	if (op[0] == '\0' || op[1] != '\0' || strchr("crudt", op[0]) == NULL)
		bad_event(ERRCODE_INVALID_PARAMETER_VALUE, "unknown Debezium operation \"%s\"", op);
	ev->op = (CdcOp) op[0];
	if (ev->op == CDC_OP_TRUNCATE)
		return;

	if (ev->op == CDC_OP_DELETE)
	{
		json_t	   *before = json_object_get(payload, "before");

		if (json_is_object(before))
			fill_row(t, before, with_schema ? t->before_fields : NULL, t->nbefore, true, ev);
		if (!has_all_keys(t, ev) && key != NULL)
		{
			json_t	   *kschema;
			json_t	   *k = parse_document("key", key, keylen, &kschema);

			reset_row(t, ev);
			if (json_is_object(k))
				fill_row_with_fields(t, k, struct_fields(kschema, NULL), true, ev);
		}
	}
	else
	{
		json_t	   *after = json_object_get(payload, "after");

		if (!json_is_object(after))
			bad_event(ERRCODE_INVALID_TEXT_REPRESENTATION,
					  "the change event (op \"%s\") has no \"after\" row", op);
		fill_row(t, after, with_schema ? t->after_fields : NULL, t->nafter, false, ev);
	}
	if (ev->new_columns == NIL && !has_all_keys(t, ev))
		bad_event(ERRCODE_NOT_NULL_VIOLATION,
				  "the change event (op \"%s\") has no value for the primary key of replica table \"%s\"",
				  op, t->name);
}

/*
 * The primary key values of a key document (the message key's shape, as in
 * Debezium's __debezium.oldkey header) into ev; false if it lacks some.
 */
bool
cdc_decode_key(CdcTable *t, const char *key, size_t keylen, CdcEvent *ev)
{
	json_t	   *kschema;
	json_t	   *k;

	reset_row(t, ev);
	k = parse_document("key", key, keylen, &kschema);
	if (json_is_object(k))
		fill_row_with_fields(t, k, struct_fields(kschema, NULL), true, ev);
	return has_all_keys(t, ev);
}

/*
 * The PostgreSQL type for a field of a Debezium struct schema, for creating
 * a replica table from the events' schema.
 */
static char *
column_type_sql(json_t *fs)
{
	const char *type = json_string_value(json_object_get(fs, "type"));
	const char *name = json_string_value(json_object_get(fs, "name"));
	int32		scale;

	switch (schema_conversion(fs, &scale))
	{
		case CDC_CONV_DECIMAL:
			{
				json_t	   *p = json_object_get(json_object_get(fs, "parameters"),
												"connect.decimal.precision");

				if (json_is_string(p) && scale >= 0)
					return psprintf("numeric(%d,%d)", atoi(json_string_value(p)), scale);
				return pstrdup("numeric");
			}
		case CDC_CONV_VARIABLE_DECIMAL:
			return pstrdup("numeric");
		case CDC_CONV_DATE:
			return pstrdup("date");
		case CDC_CONV_TIME_MS:
			return pstrdup("time(3)");
		case CDC_CONV_TIME_US:
		case CDC_CONV_TIME_NS:
			return pstrdup("time");
		case CDC_CONV_TIMESTAMP_MS:
			return pstrdup("timestamp(3)");
		case CDC_CONV_TIMESTAMP_US:
		case CDC_CONV_TIMESTAMP_NS:
			return pstrdup("timestamp");
		case CDC_CONV_INTERVAL_US:
			return pstrdup("interval");
		case CDC_CONV_BYTES:
			return pstrdup(name && strcmp(name, "io.debezium.data.Bits") == 0 ? "bit varying" : "bytea");
		case CDC_CONV_TEXT:
			break;
	}
	if (name != NULL)
	{
		if (strcmp(name, "io.debezium.time.ZonedTimestamp") == 0)
			return pstrdup("timestamptz");
		if (strcmp(name, "io.debezium.time.ZonedTime") == 0)
			return pstrdup("timetz");
		if (strcmp(name, "io.debezium.data.Json") == 0)
			return pstrdup("jsonb");
		if (strcmp(name, "io.debezium.data.Uuid") == 0)
			return pstrdup("uuid");
		if (strcmp(name, "io.debezium.data.Xml") == 0)
			return pstrdup("xml");
	}
	if (type == NULL)
		return pstrdup("text");
	if (strcmp(type, "int8") == 0 || strcmp(type, "int16") == 0)
		return pstrdup("smallint");
	if (strcmp(type, "int32") == 0)
		return pstrdup("integer");
	if (strcmp(type, "int64") == 0)
		return pstrdup("bigint");
	if (strcmp(type, "float32") == 0)
		return pstrdup("real");
	if (strcmp(type, "float64") == 0)
		return pstrdup("double precision");
	if (strcmp(type, "boolean") == 0)
		return pstrdup("boolean");
	return pstrdup("text");
}

/*
 * The columns of a replica table for the events of a topic, from one event
 * with schemas: the fields of its "after" (else "before") struct, and the
 * primary key from the fields of the message key's schema.  Returns false
 * if the event carries no schema (JSON without schemas: the replica table
 * must then be created by hand).
 */
bool
cdc_event_columns(const char *key, size_t keylen, const char *value, size_t valuelen,
				  List **columns, List **key_columns)
{
	json_t	   *schema;
	json_t	   *kschema = NULL;
	json_t	   *fields;
	json_t	   *f;
	size_t		i;

	use_palloc_for_jansson();
	*columns = *key_columns = NIL;
	(void) parse_document("value", value, valuelen, &schema);
	fields = struct_fields(schema, "after");
	if (fields == NULL)
		fields = struct_fields(schema, "before");
	if (!json_is_array(fields))
		return false;
	json_array_foreach(fields, i, f)
	{
		CdcColumnDef *c;
		json_t	   *opt = json_object_get(f, "optional");
		const char *name = json_string_value(json_object_get(f, "field"));

		if (name == NULL)
			continue;
		c = palloc(sizeof(CdcColumnDef));
		c->name = pstrdup(name);
		c->type_sql = column_type_sql(f);
		c->not_null = json_is_false(opt);
		*columns = lappend(*columns, c);
	}
	if (key != NULL)
		(void) parse_document("key", key, keylen, &kschema);
	fields = struct_fields(kschema, NULL);
	if (json_is_array(fields))
		json_array_foreach(fields, i, f)
		{
			const char *name = json_string_value(json_object_get(f, "field"));

			if (name)
				*key_columns = lappend(*key_columns, pstrdup(name));
		}
	return true;
}

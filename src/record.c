/*-------------------------------------------------------------------------
 *
 * record.c
 *		Conversion of a Kafka record (librdkafka message) into the datums of
 *		a foreign table row.
 *
 * This is the per-record hot path.  Everything that depends only on the
 * table (which columns, their types, the constant refresh_time and
 * timestamp-type datums) is prepared once in kafka_converter_init(); per
 * record we copy the key and value once into their varlena datums and build
 * the headers jsonb only when that column is wanted.
 *
 * A value that cannot be converted to its column's type (text that is not
 * valid in the database encoding, invalid JSON for jsonb, oversized records,
 * undecodable headers) never raises an error here: the function returns
 * false with a reason, and the caller applies the table's on_error policy.
 * All allocations happen in the caller's (per-record) memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "functions.h"
#include "record.h"

/* Microseconds between the Unix and PostgreSQL epochs. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

static Datum
make_timestamp_type_datum(Oid typid, char letter)
{
	if (typid == CHAROID)
		return CharGetDatum(letter);
	return PointerGetDatum(cstring_to_text_with_len(&letter, 1));
}

/*
 * Prepare conversion for a table.  columns[] maps attributes to Kafka
 * columns; retrieved_attrs lists the attribute numbers to fill (the others
 * are returned as NULL).  Allocates in the current memory context, which
 * must live as long as the scan.
 */
void
kafka_converter_init(KafkaRecordConverter *conv, TupleDesc desc,
					 const KafkaColumn *columns, List *retrieved_attrs,
					 TimestampTz refresh_time)
{
	ListCell   *lc;

	memset(conv, 0, sizeof(*conv));
	conv->natts = desc->natts;
	conv->columns = columns;
	conv->typids = palloc0(sizeof(Oid) * Max(desc->natts, 1));
	conv->wanted = palloc0(sizeof(bool) * Max(desc->natts, 1));
	conv->refresh_time = TimestampTzGetDatum(refresh_time);
	conv->scan_cxt = CurrentMemoryContext;

	foreach(lc, retrieved_attrs)
	{
		int			attno = lfirst_int(lc);

		if (columns[attno - 1] == KAFKA_COL_NONE)
			continue;
		conv->wanted[attno - 1] = true;
		conv->typids[attno - 1] = TupleDescAttr(desc, attno - 1)->atttypid;
		if (columns[attno - 1] == KAFKA_COL_TIMESTAMP_TYPE)
		{
			Oid			typid = conv->typids[attno - 1];

			conv->ts_type_datum[0] = make_timestamp_type_datum(typid, 'C');
			conv->ts_type_datum[1] = make_timestamp_type_datum(typid, 'L');
			conv->ts_type_datum[2] = make_timestamp_type_datum(typid, 'U');
		}
		if (columns[attno - 1] == KAFKA_COL_HEADERS)
			conv->empty_headers = PointerGetDatum(
												  kafka_build_headers_jsonb(0, NULL, NULL, NULL));
	}
}

/* The bytes as a bytea datum: one allocation, one copy. */
static Datum
bytes_to_bytea(const void *data, size_t len)
{
	bytea	   *result = (bytea *) palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), data, len);
	return PointerGetDatum(result);
}

/*
 * Convert key or value bytes to the column's type.  Returns false (with
 * conv->error set) if they are not valid for it.
 */
static bool
bytes_to_datum(KafkaRecordConverter *conv, Oid typid, const char *what,
			   const char *data, size_t len, Datum *result)
{
	if (typid == BYTEAOID)
	{
		*result = bytes_to_bytea(data, len);
		return true;
	}

	conv->error_kind = KAFKA_SKIP_VALUE;
	if (len > MaxAllocSize - VARHDRSZ - 1)
	{
		snprintf(conv->error, sizeof(conv->error),
				 "The %s is too large for a text value.", what);
		return false;
	}

	if (typid == JSONBOID)
	{
		char		reason[200];

		if (kafka_json_bytes_to_jsonb(data, (int) len, result, reason, sizeof(reason)))
			return true;
		snprintf(conv->error, sizeof(conv->error), "The %s %s", what, reason);
		return false;
	}

	/* text: pg_verifymbstr rejects NUL bytes too */
	if (!pg_verifymbstr(data, (int) len, true))
	{
		snprintf(conv->error, sizeof(conv->error),
				 "The %s is not valid %s.", what, GetDatabaseEncodingName());
		return false;
	}
	*result = PointerGetDatum(cstring_to_text_with_len(data, (int) len));
	return true;
}

/* The headers (hdrs, NULL if none) as jsonb. */
static Datum
headers_datum(KafkaRecordConverter *conv, rd_kafka_headers_t *hdrs, bool *ok)
{
	const char *name;
	const void *value;
	size_t		size;
	int			n = 0;
	Jsonb	   *jb;

	*ok = true;
	if (hdrs == NULL)
		return conv->empty_headers;

	while (rd_kafka_header_get_all(hdrs, n, &name, &value, &size) ==
		   RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* grow the scratch arrays geometrically; they live for the scan */
		if (n >= conv->header_capacity)
		{
			int			newcap = Max(8, conv->header_capacity * 2);
			MemoryContext old = MemoryContextSwitchTo(conv->scan_cxt);

			if (conv->header_capacity == 0)
			{
				conv->header_names = palloc(sizeof(char *) * newcap);
				conv->header_values = palloc(sizeof(void *) * newcap);
				conv->header_sizes = palloc(sizeof(size_t) * newcap);
			}
			else
			{
				conv->header_names = repalloc(conv->header_names, sizeof(char *) * newcap);
				conv->header_values = repalloc(conv->header_values, sizeof(void *) * newcap);
				conv->header_sizes = repalloc(conv->header_sizes, sizeof(size_t) * newcap);
			}
			conv->header_capacity = newcap;
			MemoryContextSwitchTo(old);
		}
		conv->header_names[n] = name;
		conv->header_values[n] = value;
		conv->header_sizes[n] = size;
		n++;
	}
	if (n == 0)
		return conv->empty_headers;

	jb = kafka_build_headers_jsonb(n, conv->header_names, conv->header_values,
								   conv->header_sizes);
	if (jb == NULL)
	{
		/* say which header, if it is a name that is not text */
		strlcpy(conv->error, "The headers cannot be represented as jsonb.",
				sizeof(conv->error));
		for (int i = 0; i < n; i++)
		{
			if (!pg_verifymbstr(conv->header_names[i], (int) strlen(conv->header_names[i]), true))
			{
				snprintf(conv->error, sizeof(conv->error),
						 "The name of header %d is not valid %s.", i + 1,
						 GetDatabaseEncodingName());
				break;
			}
		}
		conv->error_kind = KAFKA_SKIP_HEADERS;
		*ok = false;
		return (Datum) 0;
	}
	return PointerGetDatum(jb);
}

/*
 * Fill values/isnull (natts long) from a Kafka message, whose headers the
 * caller has looked up (rd_kafka_message_headers; hdrs NULL if none: the
 * lookup is not free, see record_size() in scan.c).  Returns false with
 * conv->error set when the record cannot be converted; the caller decides
 * whether to skip it or fail.
 */
bool
kafka_record_to_datums(KafkaRecordConverter *conv, const rd_kafka_message_t *msg,
					   rd_kafka_headers_t *hdrs, Datum *values, bool *isnull)
{
	for (int i = 0; i < conv->natts; i++)
	{
		Oid			typid = conv->typids[i];

		isnull[i] = true;
		if (!conv->wanted[i])
			continue;

		switch (conv->columns[i])
		{
			case KAFKA_COL_PARTITION:
				values[i] = typid == INT4OID ? Int32GetDatum(msg->partition) :
					Int64GetDatum((int64) msg->partition);
				isnull[i] = false;
				break;
			case KAFKA_COL_OFFSET:
				values[i] = Int64GetDatum(msg->offset);
				isnull[i] = false;
				break;
			case KAFKA_COL_TIMESTAMP_TYPE:
			case KAFKA_COL_TIMESTAMP:
				{
					rd_kafka_timestamp_type_t tstype;
					int64		ms = rd_kafka_message_timestamp(msg, &tstype);

					if (conv->columns[i] == KAFKA_COL_TIMESTAMP_TYPE)
					{
						values[i] = conv->ts_type_datum[tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME ? 0 :
														tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 1 : 2];
						isnull[i] = false;
					}
					else if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0)
					{
						/* timestamp and timestamptz share the representation */
						values[i] = Int64GetDatum(ms * 1000 - UNIX_TO_PG_EPOCH_USECS);
						isnull[i] = false;
					}
				}
				break;
			case KAFKA_COL_KEY:
				if (msg->key != NULL)
				{
					if (!bytes_to_datum(conv, typid, "key", msg->key, msg->key_len, &values[i]))
						return false;
					isnull[i] = false;
				}
				break;
			case KAFKA_COL_VALUE:
				if (msg->payload != NULL)
				{
					if (!bytes_to_datum(conv, typid, "value", msg->payload, msg->len, &values[i]))
						return false;
					isnull[i] = false;
				}
				break;
			case KAFKA_COL_HEADERS:
				{
					bool		ok;

					values[i] = headers_datum(conv, hdrs, &ok);
					if (!ok)
						return false;
					isnull[i] = false;
				}
				break;
			case KAFKA_COL_REFRESH_TIME:
				values[i] = conv->refresh_time;
				isnull[i] = false;
				break;
			default:
				break;
		}
	}
	return true;
}

/*-------------------------------------------------------------------------
 *
 * produce_record.c
 *		A row inserted into a kafka_fdw table turned into the Kafka record
 *		that produce.c sends: key and value from bytea, text or jsonb
 *		columns, headers from the scans' jsonb shape (binary values as
 *		base64), partition, timestamp, and the xid header if the table asks
 *		for one.  Columns Kafka assigns (offset, timestamp type) cannot be
 *		inserted.  Everything points into the statement's record context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "functions.h"
#include "produce.h"

/* Microseconds between the Unix and PostgreSQL epochs. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* ------------------------------------------------------------------------
 * Converting a row into a record
 * ------------------------------------------------------------------------
 */

static void
grow_headers(KafkaModifyState *st, int n)
{
	MemoryContext old;

	if (n <= st->hcap)
		return;
	old = MemoryContextSwitchTo(GetMemoryChunkContext(st));
	st->hcap = Max(n, Max(8, st->hcap * 2));
	if (st->rec.hnames == NULL)
	{
		st->rec.hnames = palloc(sizeof(char *) * st->hcap);
		st->rec.hname_lens = palloc(sizeof(size_t) * st->hcap);
		st->rec.hvalues = palloc(sizeof(char *) * st->hcap);
		st->rec.hvalue_lens = palloc(sizeof(size_t) * st->hcap);
	}
	else
	{
		st->rec.hnames = repalloc(st->rec.hnames, sizeof(char *) * st->hcap);
		st->rec.hname_lens = repalloc(st->rec.hname_lens, sizeof(size_t) * st->hcap);
		st->rec.hvalues = repalloc(st->rec.hvalues, sizeof(char *) * st->hcap);
		st->rec.hvalue_lens = repalloc(st->rec.hvalue_lens, sizeof(size_t) * st->hcap);
	}
	MemoryContextSwitchTo(old);
}

static void
bad_headers(const char *detail, uint32 i)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid Kafka headers value"),
			 i > 0 ? errdetail(detail, i) : errdetail("%s", detail),
			 errhint("Headers are written as a scan returns them: [{\"key\": \"name\", \"value\": \"text\"}, {\"key\": \"name\", \"value\": null}, {\"key\": \"name\", \"value_base64\": \"AP8=\"}].")));
}

/* Fill st->rec's headers from a kafka_headers jsonb (in the record context). */
static void
headers_from_jsonb(KafkaModifyState *st, Jsonb *jb, int extra)
{
	uint32		count;

	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
		bad_headers("Kafka headers are a JSON array of header objects.", 0);
	count = JB_ROOT_COUNT(jb);
	grow_headers(st, (int) count + extra);
	for (uint32 i = 0; i < count; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&jb->root, i);
		JsonbContainer *object;
		JsonbValue *name;
		JsonbValue *value;
		JsonbValue *b64;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			bad_headers("Element %u is not a JSON object.", i + 1);
		object = elem->val.binary.data;
		name = kafka_header_field(object, "key");
		if (name == NULL || name->type != jbvString)
			bad_headers("Element %u has no string \"key\".", i + 1);
		value = kafka_header_field(object, "value");
		b64 = kafka_header_field(object, "value_base64");
		if (JsonContainerSize(object) != 2 || (value == NULL) == (b64 == NULL))
			bad_headers("Element %u must have \"key\" and one of \"value\" and \"value_base64\", nothing else.", i + 1);
		st->rec.hnames[i] = name->val.string.val;
		st->rec.hname_lens[i] = name->val.string.len;
		if (value)
		{
			if (value->type == jbvNull)
			{
				st->rec.hvalues[i] = NULL;
				st->rec.hvalue_lens[i] = 0;
			}
			else if (value->type == jbvString)
			{
				st->rec.hvalues[i] = value->val.string.val;
				st->rec.hvalue_lens[i] = value->val.string.len;
			}
			else
				bad_headers("The \"value\" of element %u is neither a string nor null.", i + 1);
		}
		else
		{
			int			len;
			char	   *buf;

			if (b64->type != jbvString)
				bad_headers("The \"value_base64\" of element %u is not a string.", i + 1);
			len = pg_b64_dec_len(b64->val.string.len);
			buf = palloc(len + 1);
			len = pg_b64_decode(b64->val.string.val, b64->val.string.len, buf, len);
			if (len < 0)
				bad_headers("The \"value_base64\" of element %u is not valid base64.", i + 1);
			st->rec.hvalues[i] = buf;
			st->rec.hvalue_lens[i] = len;
		}
	}
	st->rec.nheaders = (int) count;
}

/* Key or value bytes of a bytea, text or jsonb datum. */
static const char *
datum_bytes(Datum d, Oid typid, size_t *len)
{
	if (typid == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(d);
		char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		*len = strlen(s);
		return s;
	}
	else
	{
		struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d));

		*len = VARSIZE_ANY_EXHDR(v);
		return VARDATA_ANY(v);
	}
}

static void
not_insertable(KafkaModifyState *st, KafkaColumn col)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("column \"%s\" of foreign table \"%s\" cannot be inserted into",
					kafka_column_name(col), RelationGetRelationName(st->rel)),
			 errhint("INSERT sets kafka_key, kafka_value, kafka_headers, kafka_partition and kafka_timestamp; Kafka assigns the offset (RETURNING kafka_partition, kafka_offset returns it).")));
}

/* Turn the slot's row into st->rec (in the record context). */
void
kafka_row_to_record(KafkaModifyState *st, TupleTableSlot *slot)
{
	OutRecord  *r = &st->rec;
	int			natts = RelationGetDescr(st->rel)->natts;

	slot_getallattrs(slot);
	r->key = NULL;
	r->key_len = 0;
	r->value = NULL;
	r->value_len = 0;
	r->partition = RD_KAFKA_PARTITION_UA;
	r->timestamp_ms = 0;
	r->nheaders = 0;

	for (int i = 0; i < natts; i++)
	{
		Datum		d = slot->tts_values[i];

		if (slot->tts_isnull[i])
			continue;
		switch (st->columns[i])
		{
			case KAFKA_COL_KEY:
				r->key = datum_bytes(d, st->typids[i], &r->key_len);
				break;
			case KAFKA_COL_VALUE:
				r->value = datum_bytes(d, st->typids[i], &r->value_len);
				break;
			case KAFKA_COL_HEADERS:
				headers_from_jsonb(st, DatumGetJsonbP(d), st->xid_header ? 1 : 0);
				break;
			case KAFKA_COL_PARTITION:
				{
					int64		p = st->typids[i] == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);

					if (p < 0 || p > PG_INT32_MAX)
						ereport(ERROR,
								(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
								 errmsg("kafka_partition " INT64_FORMAT " is out of range", p),
								 errhint("Give a partition of the topic (0 or more), or NULL to have it chosen from the key.")));
					r->partition = (int32) p;
				}
				break;
			case KAFKA_COL_TIMESTAMP:
				{
					Timestamp	ts = DatumGetTimestamp(d);

					if (TIMESTAMP_NOT_FINITE(ts) || ts < -UNIX_TO_PG_EPOCH_USECS + 1000)
						ereport(ERROR,
								(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
								 errmsg("kafka_timestamp is out of range for Kafka"),
								 errhint("Kafka timestamps are milliseconds after 1970-01-01 00:00:00 UTC; NULL lets the producer (or a LogAppendTime topic's broker) set it.")));
					r->timestamp_ms = (ts + UNIX_TO_PG_EPOCH_USECS) / 1000;
				}
				break;
			case KAFKA_COL_NONE:
				break;
			default:
				not_insertable(st, st->columns[i]);
		}
	}
	if (st->xid_header)
	{
		grow_headers(st, r->nheaders + 1);
		r->hnames[r->nheaders] = st->xid_header;
		r->hname_lens[r->nheaders] = strlen(st->xid_header);
		r->hvalues[r->nheaders] = kafka_produce_xid_value();
		r->hvalue_lens[r->nheaders] = strlen(r->hvalues[r->nheaders]);
		r->nheaders++;
	}
}


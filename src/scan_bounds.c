/*-------------------------------------------------------------------------
 *
 * scan_bounds.c
 *		Fold pushed-down conditions on kafka_partition, kafka_offset and
 *		kafka_timestamp into the bounds a scan fetches, and describe them for
 *		EXPLAIN.  Used at plan time (for estimates, with constants) and at scan
 *		start (with the evaluated expressions).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "scan_bounds.h"

/* Microseconds between the Unix and PostgreSQL epochs. */
#define UNIX_TO_PG_EPOCH_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

void
kafka_bounds_init(KafkaScanBounds *b)
{
	memset(b, 0, sizeof(*b));
	b->partition_lo = 0;
	b->partition_hi = PG_INT32_MAX + (int64) 1;
	b->offset_lo = 0;
	b->offset_hi = PG_INT64_MAX;
}

static int64
int_datum(Datum value, Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return DatumGetInt16(value);
		case INT4OID:
			return DatumGetInt32(value);
		default:
			return DatumGetInt64(value);
	}
}

/* Narrow [*lo, *hi) by "column op v". */
static void
narrow_range(int64 *lo, int64 *hi, KafkaCondOp op, int64 v)
{
	switch (op)
	{
		case KAFKA_OP_EQ:
			*lo = Max(*lo, v);
			*hi = Min(*hi, v == PG_INT64_MAX ? v : v + 1);
			break;
		case KAFKA_OP_LT:
			*hi = Min(*hi, v);
			break;
		case KAFKA_OP_LE:
			*hi = Min(*hi, v == PG_INT64_MAX ? v : v + 1);
			break;
		case KAFKA_OP_GT:
			*lo = Max(*lo, v == PG_INT64_MAX ? v : v + 1);
			break;
		case KAFKA_OP_GE:
			*lo = Max(*lo, v);
			break;
		default:
			break;
	}
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* Intersect the partition set with the values of an IN list. */
static void
apply_partition_in(KafkaScanBounds *b, ArrayType *arr)
{
	Oid			elemtype = ARR_ELEMTYPE(arr);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int64	   *vals;
	int			n = 0;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign,
					  &elems, &nulls, &nelems);
	vals = palloc(sizeof(int64) * Max(nelems, 1));
	for (int i = 0; i < nelems; i++)
		if (!nulls[i])
			vals[n++] = int_datum(elems[i], elemtype);
	qsort(vals, n, sizeof(int64), cmp_int64);

	if (b->has_partition_set)
	{
		/* keep values present in both sorted sets */
		int			m = 0;

		for (int i = 0, j = 0; i < n && j < b->npartition_set;)
		{
			if (vals[i] < b->partition_set[j])
				i++;
			else if (vals[i] > b->partition_set[j])
				j++;
			else
			{
				if (m == 0 || vals[m - 1] != vals[i])
					vals[m++] = vals[i];
				i++, j++;
			}
		}
		n = m;
	}
	else
	{
		int			m = 0;

		for (int i = 0; i < n; i++)
			if (m == 0 || vals[m - 1] != vals[i])
				vals[m++] = vals[i];
		n = m;
	}
	b->has_partition_set = true;
	b->partition_set = vals;
	b->npartition_set = n;
	if (n == 0)
		b->empty = true;
}

/*
 * Fold "col op value" into the bounds.  A NULL value matches nothing, since
 * the comparison operators are strict.
 */
void
kafka_bounds_apply(KafkaScanBounds *b, KafkaColumn col, KafkaCondOp op,
				   Datum value, bool isnull, Oid valtype)
{
	if (isnull)
	{
		b->empty = true;
		return;
	}

	switch (col)
	{
		case KAFKA_COL_PARTITION:
			if (op == KAFKA_OP_IN)
				apply_partition_in(b, DatumGetArrayTypeP(value));
			else
				narrow_range(&b->partition_lo, &b->partition_hi, op,
							 int_datum(value, valtype));
			break;
		case KAFKA_COL_OFFSET:
			narrow_range(&b->offset_lo, &b->offset_hi, op, int_datum(value, valtype));
			break;
		case KAFKA_COL_TIMESTAMP:
			{
				/* timestamp and timestamptz share the representation */
				int64		us = DatumGetInt64(value);
				int64		ms;

				if (TIMESTAMP_NOT_FINITE(us))
				{
					if (TIMESTAMP_IS_NOBEGIN(us))
						return;
					b->empty = true;
					return;
				}
				us += UNIX_TO_PG_EPOCH_USECS;
				/* Kafka times are whole ms: the first ms not below the bound */
				ms = us / 1000;
				if (us % 1000 > 0)
					ms++;
				if (op == KAFKA_OP_GT && us % 1000 == 0)
					ms++;
				if (!b->has_timestamp || ms > b->timestamp_lo_ms)
					b->timestamp_lo_ms = ms;
				b->has_timestamp = true;
			}
			break;
		default:
			break;
	}
	if (b->partition_lo >= b->partition_hi || b->offset_lo >= b->offset_hi)
		b->empty = true;
}

/* May the partition hold matching records? */
bool
kafka_bounds_partition_ok(const KafkaScanBounds *b, int32 partition)
{
	if (b->empty || partition < b->partition_lo || partition >= b->partition_hi)
		return false;
	if (b->has_partition_set)
	{
		int64		key = partition;

		return bsearch(&key, b->partition_set, b->npartition_set,
					   sizeof(int64), cmp_int64) != NULL;
	}
	return true;
}

static void
describe_range(StringInfo buf, int64 lo, int64 hi, int64 min, int64 max)
{
	if (lo + 1 == hi)
		appendStringInfo(buf, "= " INT64_FORMAT, lo);
	else if (lo > min && hi < max)
		appendStringInfo(buf, ">= " INT64_FORMAT " and < " INT64_FORMAT, lo, hi);
	else if (lo > min)
		appendStringInfo(buf, ">= " INT64_FORMAT, lo);
	else if (hi < max)
		appendStringInfo(buf, "< " INT64_FORMAT, hi);
	else
		appendStringInfoString(buf, "all");
}

/* "all", "= 3", ">= 2 and < 5", "0, 2, 7", or "none". */
char *
kafka_bounds_describe_partitions(const KafkaScanBounds *b)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (b->empty)
		appendStringInfoString(&buf, "none");
	else if (b->has_partition_set)
	{
		bool		first = true;

		for (int i = 0; i < b->npartition_set; i++)
		{
			if (!kafka_bounds_partition_ok(b, (int32) b->partition_set[i]))
				continue;
			appendStringInfo(&buf, "%s" INT64_FORMAT, first ? "" : ", ",
							 b->partition_set[i]);
			first = false;
		}
		if (first)
			appendStringInfoString(&buf, "none");
	}
	else
		describe_range(&buf, b->partition_lo, b->partition_hi, 0,
					   PG_INT32_MAX + (int64) 1);
	return buf.data;
}

/* Offsets wanted, in the same notation. */
char *
kafka_bounds_describe_offsets(const KafkaScanBounds *b)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (b->empty)
		appendStringInfoString(&buf, "none");
	else
		describe_range(&buf, b->offset_lo, b->offset_hi, 0, PG_INT64_MAX);
	return buf.data;
}

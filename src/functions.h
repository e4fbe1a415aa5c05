/*-------------------------------------------------------------------------
 *
 * functions.h
 *	  The kafka_headers builder exported by functions.c for the scan code.
 *
 * The SQL-callable helpers of functions.c (kafka.json_parse,
 * kafka.can_json_parse, kafka.from_varbyte, kafka.header,
 * kafka.header_bytes) need no declarations here: the fmgr finds them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FDW_FUNCTIONS_H
#define KAFKA_FDW_FUNCTIONS_H

#include "utils/jsonb.h"

/* in functions.c */

/*
 * kafka_json_field_fast_path
 *		The expression (or list) with kafka.json_parse(v) ->> k evaluated by
 *		kafka._json_field_text(v, k), which gives the same result without
 *		building the jsonb.  For a streaming refresh's scan (refresh.c).
 */
extern Node *kafka_json_field_fast_path(Node *expr);

/*
 * kafka_build_headers_jsonb
 *		Build the value of the kafka_headers column from a record's headers.
 *
 * names[i] is the NUL-terminated name of header i, values[i] points to its
 * sizes[i] value bytes (need not be NUL-terminated), or is NULL for a header
 * with a null value.  The result is a jsonb array with one object per header,
 * in the given order, duplicates kept:
 *
 *	 [{"key": "trace-id", "value": "abc"},		-- value is text
 *	  {"key": "flag", "value": null},			-- null value
 *	  {"key": "bin", "value_base64": "AP8="}]	-- value is not text
 *
 * "value" is used when the bytes are valid in the database encoding and hold
 * no NUL byte, "value_base64" (standard base64, no line breaks) otherwise.
 * Zero headers give [].  Nothing is copied besides the base64 text; the
 * result and any scratch memory are allocated in CurrentMemoryContext (use
 * a per-record context).
 *
 * Returns NULL, without raising an error, when the headers cannot be
 * represented: a name that is not valid in the database encoding, or a name
 * or value too large for a jsonb string (256 MB).  The caller treats that as
 * a conversion error of the record (on_error).  Memory used by a partial
 * build is left to the context.
 */
extern char *kafka_header_text(Jsonb *headers, text *name);
extern Jsonb *kafka_build_headers_jsonb(int nheaders,
										const char *const *names,
										const void *const *values,
										const size_t *sizes);

/*
 * kafka_json_bytes_to_jsonb
 *		Parse a key or value as jsonb for a jsonb-typed column, exactly as
 *		kafka.json_parse() would, but without raising an error: returns false
 *		when the bytes are not valid text, not valid JSON, too deeply nested
 *		or not representable, and writes the end of the sentence "The value
 *		..." into errbuf.
 */
extern bool kafka_json_bytes_to_jsonb(const char *data, int len, Datum *result,
									  char *errbuf, size_t errbufsize);

/*
 * kafka_header_field
 *		The value of key in one object of a kafka_headers array, or NULL
 *		(used by kafka.header() and by INSERT, produce.c).
 */
extern JsonbValue *kafka_header_field(JsonbContainer *object, const char *key);

#endif							/* KAFKA_FDW_FUNCTIONS_H */

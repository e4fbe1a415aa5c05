/*-------------------------------------------------------------------------
 *
 * compat.h
 *		The one place for PostgreSQL version differences.
 *
 * kafka_fdw is built and tested against PostgreSQL 15 only.  Code that must
 * differ between major versions goes here as a macro or inline function, so
 * that porting to 13-17 touches this file and nothing else.
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FDW_COMPAT_H
#define KAFKA_FDW_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 160000
#warning "kafka_fdw has only been tested with PostgreSQL 15"
#endif

/* PostgreSQL 16 renamed the JSON lexer constructor's signature. */
#if PG_VERSION_NUM >= 170000
#define kafka_make_json_lex(json, len, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), GetDatabaseEncoding(), (need_escapes))
#else
#define kafka_make_json_lex(json, len, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), GetDatabaseEncoding(), (need_escapes))
#endif

/*
 * The user whose rights a foreign scan runs with: the view owner for a scan
 * inside a view, else the current user.  PostgreSQL 16 moved checkAsUser
 * from the range table entry to the ForeignScan node.
 */
#if PG_VERSION_NUM >= 160000
#define kafka_scan_user(node) \
	(OidIsValid(((ForeignScan *) (node)->ss.ps.plan)->checkAsUser) ? \
	 ((ForeignScan *) (node)->ss.ps.plan)->checkAsUser : GetUserId())
#else
#define kafka_scan_user(node) \
	(OidIsValid(exec_rt_fetch(((ForeignScan *) (node)->ss.ps.plan)->scan.scanrelid, \
							  (node)->ss.ps.state)->checkAsUser) ? \
	 exec_rt_fetch(((ForeignScan *) (node)->ss.ps.plan)->scan.scanrelid, \
				   (node)->ss.ps.state)->checkAsUser : GetUserId())
#endif

/* PostgreSQL 16 added onlySummarizing to ExecInsertIndexTuples(). */
#if PG_VERSION_NUM >= 160000
#define kafka_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define kafka_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/* PostgreSQL 15 renamed parse_analyze() to parse_analyze_fixedparams(). */
#if PG_VERSION_NUM >= 150000
#define kafka_parse_analyze(raw, sql) parse_analyze_fixedparams((raw), (sql), NULL, 0, NULL)
#else
#define kafka_parse_analyze(raw, sql) parse_analyze((raw), (sql), NULL, 0, NULL)
#endif

/* PostgreSQL 16 added the permission infos to ExecInitRangeTable(). */
#if PG_VERSION_NUM >= 160000
#define kafka_init_range_table(estate, rtable) ExecInitRangeTable((estate), (rtable), NIL)
#else
#define kafka_init_range_table(estate, rtable) ExecInitRangeTable((estate), (rtable))
#endif

/*
 * Unique indexes in which NULLs are equal (NULL group keys are one group)
 * appeared in PostgreSQL 15.
 */
#if PG_VERSION_NUM >= 150000
#define KAFKA_NULLS_NOT_DISTINCT " NULLS NOT DISTINCT"
#define kafka_index_nulls_not_distinct(form) ((form)->indnullsnotdistinct)
#else
#error "aggregating streaming views need UNIQUE NULLS NOT DISTINCT (PostgreSQL 15)"
#endif

#endif							/* KAFKA_FDW_COMPAT_H */

/* kafka_fdw--1.0--1.1.sql: from 1.0 to 1.1.  A new installation runs
 * kafka_fdw--1.0.sql and then this script.  Every name is qualified, so the
 * script is safe whatever the search_path. */

\echo Use "ALTER EXTENSION kafka_fdw UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Topic identity (src/refresh.c, src/scan.c): the last record a view
-- ingested from each partition, read again by the next refresh to check
-- that the offsets still belong to the same log (a topic deleted and
-- recreated, or a server pointed at another cluster, is refused instead of
-- being read from offsets of another log).  NULL: not known yet (rows
-- written by 1.0, or no record ingested from the partition).
------------------------------------------------------------------------------
ALTER TABLE kafka.stream_offsets
  ADD COLUMN last_offset pg_catalog.int8,
  ADD COLUMN last_timestamp_ms pg_catalog.int8,   -- -1: the record had none
  ADD COLUMN last_key_len pg_catalog.int4,        -- -1: null key
  ADD COLUMN last_value_len pg_catalog.int4;      -- -1: null value

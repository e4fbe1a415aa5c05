# kafka_fdw — PGXS build.  `make && make install`, then see README.md.
EXTENSION  = kafka_fdw
MODULE_big = kafka_fdw
OBJS = \
	src/kafka_fdw.o \
	src/option.o \
	src/sigv4.o \
	src/msk_iam.o \
	src/connection.o \
	src/planner.o \
	src/scan_bounds.o \
	src/scan.o \
	src/fetch_waker.o \
	src/parallel.o \
	src/record.o \
	src/record_eval.o \
	src/import.o \
	src/produce.o \
	src/produce_record.o \
	src/refresh.o \
	src/stream_catalog.o \
	src/stream_insert.o \
	src/stream_dump.o \
	src/stream_aggregate.o \
	src/worker.o \
	src/worker_watch.o \
	src/functions.o \
	src/cdc_decode.o \
	src/cdc_apply.o \
	src/cdc_replica.o

DATA = kafka_fdw--1.0.sql kafka_fdw--1.0--1.1.sql
PGFILEDESC = "kafka_fdw - foreign data wrapper for Apache Kafka"

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --use-existing

PG_CPPFLAGS = -Isrc -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lrdkafka -ljansson -lcrypto

# The bitcode for JIT inlining is not worth a clang dependency.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when a header changes.
$(OBJS): $(wildcard src/*.h)

.PHONY: test-broker
test-broker:
	$(MAKE) -C test/broker

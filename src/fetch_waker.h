/*-------------------------------------------------------------------------
 *
 * fetch_waker.h
 *		A thread of a scan that wakes librdkafka's parked fetchers without
 *		making the scan wait for the broker (fetch_waker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef KAFKA_FETCH_WAKER_H
#define KAFKA_FETCH_WAKER_H

#include <librdkafka/rdkafka.h>

typedef struct KafkaFetchWaker KafkaFetchWaker;

extern KafkaFetchWaker *kafka_waker_start(rd_kafka_t *rk, int timeout_ms);
extern void kafka_waker_wake(KafkaFetchWaker *waker, rd_kafka_topic_partition_list_t *list);
extern void kafka_waker_stop(KafkaFetchWaker *waker);

#endif							/* KAFKA_FETCH_WAKER_H */

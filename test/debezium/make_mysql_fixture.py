#!/usr/bin/env python3
"""test/debezium/make_mysql_fixture.py — write test/fixtures/debezium/mysql_schemas.jsonl.

Hand-written, NOT captured: change events in the documented shape of Debezium's MySQL connector
(3.x, JSON converter with schemas.enable=true, decimal.handling.mode=precise,
time.precision.mode=adaptive_time_microseconds, binary.handling.mode=bytes, binlog_row_image=FULL),
for a MySQL table like the source material's orders (salesdb):

  CREATE TABLE orders (
    order_id INT PRIMARY KEY, customer_id VARCHAR(255), item_description VARCHAR(255),
    price DECIMAL(12,2), qty SMALLINT, total_cents BIGINT, paid TINYINT(1), order_date DATE,
    order_time TIME(6), created DATETIME(6), updated_at TIMESTAMP(6) NULL, details JSON, receipt BLOB);

What differs from the PostgreSQL connector's events: the source block (server_id, gtid, file, pos,
row, thread, query instead of lsn, txId, xmin); MySQL type names map to the same Connect types
(TINYINT(1) to int16, DATETIME(6) to MicroTimestamp, TIMESTAMP to ZonedTimestamp); "before" carries
the whole row in updates and deletes (full row images); no TOAST placeholder; db is the database,
there is no schema ("salesdb.orders" topic part).  Events, in offset order: r 1 (snapshot), c 2,
c 3 (NULLs), u 2, primary-key update 3 -> 4 (d 3, tombstone 3, c 4), d 1, tombstone 1, t, c 5.
Run it to regenerate the fixture: python3 test/debezium/make_mysql_fixture.py [OUT]
"""
import base64
import json
import sys
from decimal import Decimal

PREFIX = "fixture"
DB, TABLE = "salesdb", "orders"
TOPIC = f"{PREFIX}.{DB}.{TABLE}"
VERSION = "3.6.1.Final"

COLUMNS = [  # (name, connect type, optional, logical name, parameters)
    ("order_id", "int32", False, None, None),
    ("customer_id", "string", True, None, None),
    ("item_description", "string", True, None, None),
    ("price", "bytes", True, "org.apache.kafka.connect.data.Decimal",
     {"scale": "2", "connect.decimal.precision": "12"}),
    ("qty", "int16", True, None, None),
    ("total_cents", "int64", True, None, None),
    ("paid", "int16", True, None, None),
    ("order_date", "int32", True, "io.debezium.time.Date", None),
    ("order_time", "int64", True, "io.debezium.time.MicroTime", None),
    ("created", "int64", True, "io.debezium.time.MicroTimestamp", None),
    ("updated_at", "string", True, "io.debezium.time.ZonedTimestamp", None),
    ("details", "string", True, "io.debezium.data.Json", None),
    ("receipt", "bytes", True, None, None),
]


def field_schema(name, typ, optional, logical, params):
    f = {"type": typ, "optional": optional}
    if logical:
        f["name"] = logical
        f["version"] = 1
    if params:
        f["parameters"] = params
    f["field"] = name
    return f


ROW_SCHEMA = [field_schema(*c) for c in COLUMNS]
SOURCE_SCHEMA = {
    "type": "struct", "optional": False, "name": "io.debezium.connector.mysql.Source", "version": 1,
    "field": "source",
    "fields": [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {"type": "string", "optional": True, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
         "default": "false", "field": "snapshot"},
        {"type": "string", "optional": False, "field": "db"},
        {"type": "string", "optional": True, "field": "sequence"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
        {"type": "string", "optional": True, "field": "table"},
        {"type": "int64", "optional": False, "field": "server_id"},
        {"type": "string", "optional": True, "field": "gtid"},
        {"type": "string", "optional": False, "field": "file"},
        {"type": "int64", "optional": False, "field": "pos"},
        {"type": "int32", "optional": False, "field": "row"},
        {"type": "int64", "optional": True, "field": "thread"},
        {"type": "string", "optional": True, "field": "query"},
    ],
}
VALUE_SCHEMA = {
    "type": "struct", "optional": False, "name": f"{TOPIC}.Envelope", "version": 2,
    "fields": [
        {"type": "struct", "fields": ROW_SCHEMA, "optional": True, "name": f"{TOPIC}.Value", "field": "before"},
        {"type": "struct", "fields": ROW_SCHEMA, "optional": True, "name": f"{TOPIC}.Value", "field": "after"},
        SOURCE_SCHEMA,
        {"type": "struct", "optional": True, "name": "event.block", "version": 1, "field": "transaction",
         "fields": [{"type": "string", "optional": False, "field": "id"},
                    {"type": "int64", "optional": False, "field": "total_order"},
                    {"type": "int64", "optional": False, "field": "data_collection_order"}]},
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
        {"type": "int64", "optional": True, "field": "ts_us"},
        {"type": "int64", "optional": True, "field": "ts_ns"},
    ],
}
KEY_SCHEMA = {"type": "struct", "fields": [{"type": "int32", "optional": False, "field": "order_id"}],
              "optional": False, "name": f"{TOPIC}.Key"}


def dec(v, scale=2):
    """Connect Decimal: base64 of the unscaled value, big-endian two's complement, fewest bytes."""
    n = int(Decimal(v).scaleb(scale))
    length = max(1, (n.bit_length() + 8) // 8)
    return base64.b64encode(n.to_bytes(length, "big", signed=True)).decode()


def row(order_id, customer_id, item, price, qty, total, paid, date_days, time_us, created_us, updated, details, receipt):
    return {"order_id": order_id, "customer_id": customer_id, "item_description": item,
            "price": None if price is None else dec(price), "qty": qty, "total_cents": total, "paid": paid,
            "order_date": date_days, "order_time": time_us, "created": created_us, "updated_at": updated,
            "details": details,
            "receipt": None if receipt is None else base64.b64encode(receipt).decode()}


# 2021-08-16 = day 18855; 10:11:12.123456 = 36672123456 us; 2021-08-16 10:11:12.123456 = 1629108672123456 us
R1 = row(123456, "123", "A super noisy mechanical keyboard", "50.00", 1, 5000, 1, 18855, 36672123456,
         1629108672123456, "2021-08-16T10:11:12.123456Z", '{"gift": false}', b"\x00\x01")
R2 = row(123457, "123", "An extremely wide monitor", "500.00", 2, 100000, 0, 18855, 40333000000,
         1629112333000000, "2021-08-16T11:12:13.000000Z", '{"gift": true, "note": "\\u65e5\\u672c"}', b"\xff")
R3 = row(123458, None, None, None, None, None, None, None, None, None, None, None, None)
R2u = dict(R2, price=dec("-1234567890.12"), paid=1, updated_at="2021-08-17T00:00:00.000000Z")
R4 = dict(R3, order_id=123459)
R5 = row(123460, "124", "A too sensible microphone", "150.00", 1, 15000, 1, 18856, 0, 1629158400000000,
         "2021-08-17T00:00:00.000000Z", "[]", b"")

TS = 1629202993000  # the binlog event's time (source.ts_ms), seconds precision in MySQL's binlog
events = []  # (key payload or None, value payload or None, headers)
pos = [10002]


def source(snapshot="false", row_in_event=0, ts=TS, thread=7, server_id=223344, gtid=None):
    pos[0] += 321
    return {"version": VERSION, "connector": "mysql", "name": PREFIX, "ts_ms": ts, "snapshot": snapshot,
            "db": DB, "sequence": None, "ts_us": ts * 1000, "ts_ns": ts * 1000000, "table": TABLE,
            "server_id": server_id, "gtid": gtid, "file": "mysql-bin-changelog.000003", "pos": pos[0],
            "row": row_in_event, "thread": thread, "query": None}


def ev(op, before, after, src, ts_ms, key=True, headers=()):
    k = None
    if key:
        k = {"order_id": (after or before)["order_id"]}
    events.append((k, {"before": before, "after": after, "source": src, "transaction": None, "op": op,
                       "ts_ms": ts_ms, "ts_us": ts_ms * 1000, "ts_ns": ts_ms * 1000000}, list(headers)))


def tombstone(order_id, headers=()):
    events.append(({"order_id": order_id}, None, list(headers)))


ev("r", None, R1, source(snapshot="last", ts=TS - 1000, thread=None, server_id=0), TS - 900)
ev("c", None, R2, source(), TS + 614)
ev("c", None, R3, source(), TS + 621)
ev("u", R2, R2u, source(), TS + 630)
# primary-key update 123458 -> 123459: delete of the old key, its tombstone, create of the new key
old, new = (json.dumps({"order_id": k}, separators=(",", ":")) for k in (123458, 123459))
ev("d", R3, None, source(), TS + 640, headers=[["__debezium.newkey", new]])
tombstone(123458, headers=[["__debezium.newkey", new]])
ev("c", None, R4, source(), TS + 641, headers=[["__debezium.oldkey", old]])
ev("d", R1, None, source(), TS + 650)
tombstone(123456)
ev("t", None, None, source(), TS + 660, key=False)
ev("c", None, R5, source(), TS + 670)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/debezium/mysql_schemas.jsonl"
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    with open(out, "w") as f:
        for off, (k, v, h) in enumerate(events):
            key = None if k is None else json.dumps({"schema": KEY_SCHEMA, "payload": k}, **compact)
            val = None if v is None else json.dumps({"schema": VALUE_SCHEMA, "payload": v}, **compact)
            f.write(json.dumps({"topic": TOPIC, "partition": 0, "offset": off, "key": key, "value": val,
                                "headers": h}, ensure_ascii=False) + "\n")
    print(f"{out}: {len(events)} records")


main()

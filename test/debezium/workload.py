#!/usr/bin/env python3
"""test/debezium/workload.py — a random, seeded workload on the salesdb tables (test/debezium/salesdb.sql).

  python3 test/debezium/workload.py --seed S --changes N --parts K --initial M --out PREFIX

writes (standard library only; the same seed gives the same files):
  PREFIX.initial.sql      M rows per table, inserted before the connector starts (its snapshot: "r")
  PREFIX.1.sql ... K.sql  N single-row INSERT / UPDATE / DELETE statements in all, split in K parts,
                          grouped in transactions of 1 to 20 statements (BEGIN ... COMMIT)
  PREFIX.summary.json     what Debezium must send for them, per table and part:
                          {"tables": {T: {"snapshot": r, "parts": [{"c":, "u":, "d":, "pk":}...],
                           "events": E, "tombstones": D}}, "statements": N}
                          events = r + c + u + d + 2 * pk (a primary-key update is a delete and a
                          create), tombstones = d + pk (one after each delete event)

Every statement names one existing row by its primary key (or a new, unused key), so each changes
exactly one row. The mix: 40 % inserts, 40 % updates (one in ten of them changes the primary key),
20 % deletes; NULLs in any nullable column; numeric(12,2) and unscaled numeric with negative and tiny
values; timestamptz with offsets and microseconds; date, time, timestamp; bytea with NUL bytes; jsonb;
uuid; text with quotes, backslashes, tabs, newlines and non-ASCII; the large TOASTed columns
(customer.notes, product.description) are set on insert and left alone by 9 in 10 updates (Debezium
then sends __debezium_unavailable_value; the replica must keep the old value).
"""
import argparse
import json
import random
import uuid

TABLES = ("customer", "product", "orders")
PK = {"customer": "cust_id", "product": "prod_id", "orders": "order_id"}


def q(s):
    """A SQL literal (standard_conforming_strings on)."""
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.keys = {t: [] for t in TABLES}     # existing keys, a list for random choice
        self.keyset = {t: set() for t in TABLES}
        self.next_key = {"customer": 1, "product": 1, "orders": 1000000000}

    # --- values ---------------------------------------------------------------------------------------
    def maybe(self, v, p=0.1):
        return None if self.r.random() < p else v

    def text(self):
        r = self.r
        words = ["alpha", "beta", "Ωmega", "日本", "naïve", "O'Brien", 'say "hi"', "back\\slash", "tab\there",
                 "line\nbreak", "emoji 🙂", "", "percent %", "semi;colon"]
        return " ".join(r.choice(words) for _ in range(r.randint(1, 4)))

    def big(self):
        # ~6-13 kB of hexadecimal: stored out of line (TOAST), so unchanged values are not in the WAL
        return "big(%d, %s)" % (self.r.randint(200, 400), q("s%d" % self.r.getrandbits(32)))

    def dec12_2(self):
        r = self.r
        v = r.choice([0, 1, -1, 10 ** 10 - 1, -(10 ** 10 - 1), r.randint(-10 ** 8, 10 ** 8), r.randint(0, 99)])
        return "%d.%02d" % (v, r.randint(0, 99)) if v >= 0 else "-%d.%02d" % (-v, r.randint(0, 99))

    def num(self):
        r = self.r
        return r.choice(["0", "1", "-1", "3.14159265358979323846", "0.000000000000000000001", "1e30",
                         "-%d.%d" % (r.randint(0, 10 ** 6), r.randint(0, 10 ** 6)), str(r.randint(-10 ** 12, 10 ** 12)),
                         "%d.%0*d" % (r.randint(0, 999), r.randint(1, 12), r.randint(0, 10 ** 6))])

    def date(self):
        r = self.r
        return q("%04d-%02d-%02d" % (r.randint(1900, 2100), r.randint(1, 12), r.randint(1, 28)))

    def time(self):
        r = self.r
        return q("%02d:%02d:%02d.%06d" % (r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), r.randint(0, 999999)))

    def ts(self):
        r = self.r
        return q("%04d-%02d-%02d %02d:%02d:%02d.%06d" % (r.randint(1970, 2100), r.randint(1, 12), r.randint(1, 28),
                                                         r.randint(0, 23), r.randint(0, 59), r.randint(0, 59),
                                                         r.randint(0, 999999)))

    def tstz(self):
        r = self.r
        return q(self.ts()[1:-1] + r.choice(["+00", "+09", "-05:30", "+14", "-12"]))

    def bytea(self):
        return q("\\x" + bytes(self.r.getrandbits(8) for _ in range(self.r.randint(0, 24))).hex())

    def jsonb(self):
        r = self.r
        doc = r.choice([{}, [], {"a": r.randint(-5, 5), "b": [True, None, 1.5, self.text()]},
                        {"nested": {"x": [1, 2, {"y": "z"}]}, "n": r.random()}, [1, "two", None]])
        return q(json.dumps(doc, ensure_ascii=False))

    def uuid(self):
        return q(str(uuid.UUID(int=self.r.getrandbits(128))))

    def boolean(self):
        return self.r.choice(["true", "false"])

    # --- rows -------------------------------------------------------------------------------------------
    def columns(self, t, with_big):
        m = self.maybe
        if t == "customer":
            c = {"name": q(self.text() or "x"), "email": m(q("u%d@example.com" % self.r.getrandbits(20))),
                 "mktseg": m(q(self.r.choice(["AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD"]))),
                 "country": m(q(self.r.choice(["JP", "CN", "US", "DE", "BR"]))), "signup_date": m(self.date()),
                 "vip": m(self.boolean()), "updated_at": m(self.tstz()), "photo": m(self.bytea()),
                 "attrs": m(self.jsonb())}
            if with_big:
                c["notes"] = m(self.big(), 0.05)
        elif t == "product":
            c = {"name": q(self.text() or "p"), "category": m(q(self.r.choice(["kbd", "monitor", "mic", "cable"]))),
                 "price": m(self.dec12_2()), "weight_kg": m(self.num()), "in_stock": m(self.boolean()),
                 "sku": m(self.uuid()), "stock": m(str(self.r.randint(-32768, 32767)))}
            if with_big:
                c["description"] = m(self.big(), 0.05)
        else:
            c = {"cust_id": m(str(self.r.randint(1, 5000))), "prod_id": m(str(self.r.randint(1, 500))),
                 "qty": m(str(self.r.randint(-32768, 32767))), "amount": m(self.dec12_2()), "order_date": m(self.date()),
                 "order_time": m(self.time()), "ordered_at": m(self.ts()), "shipped_at": m(self.tstz()),
                 "status": m(q(self.r.choice(["new", "paid", "shipped", "returned"]))), "details": m(self.jsonb())}
        return {k: ("NULL" if v is None else v) for k, v in c.items()}

    def new_key(self, t):
        k = self.next_key[t]
        self.next_key[t] += self.r.randint(1, 3)
        return k

    def add(self, t, k):
        self.keys[t].append(k)
        self.keyset[t].add(k)

    def remove(self, t, i):
        k = self.keys[t][i]
        self.keys[t][i] = self.keys[t][-1]
        self.keys[t].pop()
        self.keyset[t].discard(k)
        return k

    def insert(self, t):
        k = self.new_key(t)
        c = self.columns(t, True)
        self.add(t, k)
        return "INSERT INTO %s (%s, %s) VALUES (%d, %s);" % (t, PK[t], ", ".join(c), k, ", ".join(c.values()))

    def update(self, t, pk_change):
        i = self.r.randrange(len(self.keys[t]))
        k = self.keys[t][i]
        c = self.columns(t, self.r.random() < 0.1)        # big column left alone by 9 in 10 updates
        chosen = self.r.sample(sorted(c), self.r.randint(1, len(c)))
        sets = ["%s = %s" % (col, c[col]) for col in chosen]
        if pk_change:
            nk = self.new_key(t)
            self.remove(t, i)
            self.add(t, nk)
            sets.insert(0, "%s = %d" % (PK[t], nk))
        return "UPDATE %s SET %s WHERE %s = %d;" % (t, ", ".join(sets), PK[t], k)

    def delete(self, t):
        k = self.remove(t, self.r.randrange(len(self.keys[t])))
        return "DELETE FROM %s WHERE %s = %d;" % (t, PK[t], k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--changes", type=int, default=10000)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--initial", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = Gen(a.seed)
    summary = {"seed": a.seed, "statements": a.changes, "tables": {}}
    for t in TABLES:
        summary["tables"][t] = {"snapshot": a.initial, "parts": []}
    with open(a.out + ".initial.sql", "w") as f:
        f.write("-- written by test/debezium/workload.py --seed %d\n" % a.seed)
        for t in TABLES:
            for _ in range(a.initial):
                f.write(g.insert(t) + "\n")
    per_part = [a.changes // a.parts + (1 if i < a.changes % a.parts else 0) for i in range(a.parts)]
    for p, n in enumerate(per_part, 1):
        counts = {t: {"c": 0, "u": 0, "d": 0, "pk": 0} for t in TABLES}
        with open("%s.%d.sql" % (a.out, p), "w") as f:
            f.write("-- written by test/debezium/workload.py --seed %d, part %d of %d\n" % (a.seed, p, a.parts))
            done = 0
            while done < n:
                size = min(n - done, g.r.randint(1, 20))
                f.write("BEGIN;\n")
                for _ in range(size):
                    t = g.r.choice(TABLES)
                    x = g.r.random()
                    if x < 0.4 or len(g.keys[t]) < 10:
                        f.write(g.insert(t) + "\n"); counts[t]["c"] += 1
                    elif x < 0.8:
                        pk = g.r.random() < 0.1
                        f.write(g.update(t, pk) + "\n"); counts[t]["pk" if pk else "u"] += 1
                    else:
                        f.write(g.delete(t) + "\n"); counts[t]["d"] += 1
                f.write("COMMIT;\n")
                done += size
        for t in TABLES:
            summary["tables"][t]["parts"].append(counts[t])
    for t, s in summary["tables"].items():
        c = {k: sum(p[k] for p in s["parts"]) for k in ("c", "u", "d", "pk")}
        s["events"] = s["snapshot"] + c["c"] + c["u"] + c["d"] + 2 * c["pk"]
        s["tombstones"] = c["d"] + c["pk"]
        s["rows"] = len(g.keys[t])
    with open(a.out + ".summary.json", "w") as f:
        json.dump(summary, f, indent=1)


main()

-- test/debezium/salesdb.sql — the source database of the Debezium tests (database salesdb on the source
-- cluster of test/debezium/debezium.sh source-start). The sales database of the source material
-- (customers, products, orders, captured by Debezium into Kafka and replicated into a warehouse), with
-- the column types the replica must carry: integers, numeric(12,2) (Debezium's Decimal), numeric without
-- scale (VariableScaleDecimal), boolean, text, a large text column that PostgreSQL TOASTs (an UPDATE that
-- leaves it alone sends Debezium's __debezium_unavailable_value placeholder), bytea, date, time,
-- timestamp, timestamptz, jsonb, uuid. REPLICA IDENTITY DEFAULT (the primary key only in "before").
-- No foreign keys: the random workload deletes and re-keys rows freely.
CREATE TABLE customer (
    cust_id     integer PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    mktseg      text,
    country     text,
    signup_date date,
    vip         boolean,
    updated_at  timestamptz,
    photo       bytea,
    attrs       jsonb,
    notes       text        -- large: TOASTed, mostly left alone by updates
);
CREATE TABLE product (
    prod_id     integer PRIMARY KEY,
    name        text NOT NULL,
    category    text,
    price       numeric(12,2),
    weight_kg   numeric,    -- no scale: VariableScaleDecimal
    in_stock    boolean,
    sku         uuid,
    stock       smallint,
    description text        -- large: TOASTed
);
CREATE TABLE orders (
    order_id    bigint PRIMARY KEY,
    cust_id     integer,
    prod_id     integer,
    qty         smallint,
    amount      numeric(12,2),
    order_date  date,
    order_time  time,
    ordered_at  timestamp,
    shipped_at  timestamptz,
    status      text,
    details     jsonb
);
-- big(N, SALT): N*32 hexadecimal digits, hard enough to compress that PostgreSQL stores them out of line
-- (TOAST) from about 100 on. Used by the workload (test/debezium/workload.py).
CREATE FUNCTION big(n int, salt text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT string_agg(md5(salt || i), '') FROM generate_series(1, n) i $$;

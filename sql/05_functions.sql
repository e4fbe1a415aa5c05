--
-- Helper functions: kafka.json_parse, kafka.can_json_parse, kafka.from_varbyte,
-- kafka.header, kafka.header_bytes and the kafka_headers builder.
--
-- Other tests may have created the extension in this database already.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS kafka_fdw;
RESET client_min_messages;
-- The helpers are for everyone (schema kafka is usable by PUBLIC): the rest
-- of this test runs as an ordinary user without any grant.
CREATE ROLE fn_analyst;
SET ROLE fn_analyst;

-- SQLSTATE of a statement, 'ok' if it succeeds
CREATE FUNCTION pg_temp.sqlstate_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- Does kafka.json_parse succeed?
CREATE FUNCTION pg_temp.json_parse_ok(b bytea) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kafka.json_parse(b);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RETURN false;
END $$;

-- Does core jsonb input accept the bytes read as text?
CREATE FUNCTION pg_temp.jsonb_in_ok(b bytea) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM convert_from(b, 'UTF8')::jsonb;
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RETURN false;
END $$;

--
-- json_parse: valid JSON
--
SELECT kafka.json_parse(convert_to('{"a": 1, "b": [true, false, null], "c": {"d": "e"}}', 'UTF8'));
SELECT kafka.json_parse(convert_to('[1, "two", 3.0, [], {}]', 'UTF8'));
SELECT kafka.json_parse(convert_to(' {"a":1}' || E'\n', 'UTF8'));
SELECT kafka.json_parse(convert_to('{"a": 1, "a": 2}', 'UTF8'));
SELECT kafka.json_parse(convert_to('{"name": "Zoë", "esc": "\u00e9\ud83d\ude00\t\"q\""}', 'UTF8'));
-- scalars: a JSON null is a jsonb null, not SQL NULL
SELECT j, jsonb_typeof(j)
FROM (VALUES (kafka.json_parse('42')), (kafka.json_parse('-1.50e3')),
             (kafka.json_parse('"str"')), (kafka.json_parse('true')),
             (kafka.json_parse('null'))) AS t(j);
SELECT kafka.json_parse('null') IS NULL AS is_sql_null;
SELECT kafka.json_parse(NULL) IS NULL AS strict;
-- the result is exactly what jsonb input gives
SELECT kafka.json_parse(convert_to(t, 'UTF8')) = t::jsonb AS same
FROM (VALUES ('{"b": [1, {"x": null}], "a": "é", "c": 1.000}'), ('[]'), ('{}'),
             ('0'), ('-0'), ('1E+2'), ('[[[["deep"]]]]'), ('"\u0041\\"')) AS t(t);

--
-- json_parse: invalid input
--
SELECT kafka.json_parse(convert_to('{"a":}', 'UTF8'));
SELECT kafka.json_parse(convert_to('not json', 'UTF8'));
SELECT kafka.json_parse(convert_to('{"a": 1} extra', 'UTF8'));
SELECT kafka.json_parse(convert_to('{"a": 1', 'UTF8'));
SELECT kafka.json_parse('');
SELECT kafka.json_parse(convert_to('"tab' || E'\t' || 'inside"', 'UTF8'));
-- a long bad token is clipped to 64 bytes in the detail
SELECT kafka.json_parse(convert_to(repeat('x', 100), 'UTF8'));
-- embedded NUL, after the document and inside a string
SELECT kafka.json_parse('\x7b7d00'::bytea);
SELECT kafka.json_parse('\x2261006222'::bytea);
-- not valid UTF-8
SELECT kafka.json_parse('\xc328'::bytea);
SELECT kafka.json_parse('\x5b22c3a922a0ff5d'::bytea);
-- \u0000 cannot be stored in jsonb
SELECT kafka.json_parse(convert_to('{"a": "\u0000"}', 'UTF8'));
-- numbers outside numeric's range
SELECT kafka.json_parse(convert_to('[1e131072]', 'UTF8'));
SELECT kafka.json_parse(convert_to('{"tiny": 1e-16384}', 'UTF8'));
-- SQLSTATEs
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate
FROM (VALUES ($$SELECT kafka.json_parse('{')$$),
             ($$SELECT kafka.json_parse('\x7b7d00'::bytea)$$),
             ($$SELECT kafka.json_parse('\xc328'::bytea)$$),
             ($$SELECT kafka.json_parse(convert_to('"\u0000"', 'UTF8'))$$),
             ($$SELECT kafka.json_parse('1e131072')$$)) AS t(q);

--
-- can_json_parse agrees with json_parse (and with core jsonb input)
--
CREATE TEMP TABLE inputs (label text, b bytea);
INSERT INTO inputs VALUES
    ('object',          convert_to('{"a": 1, "b": [true, false, null]}', 'UTF8')),
    ('array',           convert_to('[1, "two", 3.0, [], {}]', 'UTF8')),
    ('number',          convert_to('42', 'UTF8')),
    ('string',          convert_to('"str"', 'UTF8')),
    ('true',            convert_to('true', 'UTF8')),
    ('null',            convert_to('null', 'UTF8')),
    ('non-ascii',       convert_to('{"name": "Zoë"}', 'UTF8')),
    ('escapes',         convert_to('"\u00e9\ud83d\ude00"', 'UTF8')),
    ('whitespace',      convert_to(E' \n[1]\t', 'UTF8')),
    ('missing value',   convert_to('{"a":}', 'UTF8')),
    ('not json',        convert_to('not json', 'UTF8')),
    ('trailing',        convert_to('{} {}', 'UTF8')),
    ('truncated',       convert_to('{"a": 1', 'UTF8')),
    ('empty',           ''::bytea),
    ('blank',           convert_to('   ', 'UTF8')),
    ('raw tab',         convert_to('"a' || E'\t' || 'b"', 'UTF8')),
    ('leading zero',    convert_to('01', 'UTF8')),
    ('lone surrogate',  convert_to('"\ud83d"', 'UTF8')),
    ('bad escape',      convert_to('"\x"', 'UTF8')),
    ('single quotes',   convert_to($$'a'$$, 'UTF8')),
    ('NUL after',       '\x7b7d00'::bytea),
    ('NUL in string',   '\x2261006222'::bytea),
    ('NUL only',        '\x00'::bytea),
    ('bad UTF-8',       '\xc328'::bytea),
    ('bad UTF-8 in str','\x5b22c3a922a0ff5d'::bytea),
    ('UTF-8 BOM',       '\xefbbbf7b7d'::bytea),
    ('\u0000',          convert_to('{"a": "\u0000"}', 'UTF8')),
    ('\u0000 key',      convert_to('{"\u0000": 1}', 'UTF8')),
    ('big number',      convert_to('[1e131071]', 'UTF8')),
    ('too big number',  convert_to('[1e131072]', 'UTF8')),
    ('small number',    convert_to('[1e-16383]', 'UTF8')),
    ('too small number',convert_to('[1e-16384]', 'UTF8'));
SELECT label, kafka.can_json_parse(b) AS can,
       pg_temp.json_parse_ok(b) AS parses,
       pg_temp.jsonb_in_ok(b) AS jsonb_in
FROM inputs ORDER BY label COLLATE "C";
SELECT count(*) AS inputs,
       count(*) FILTER (WHERE kafka.can_json_parse(b) <> pg_temp.json_parse_ok(b)) AS disagree,
       count(*) FILTER (WHERE pg_temp.json_parse_ok(b) <> pg_temp.jsonb_in_ok(b)) AS disagree_core,
       count(*) FILTER (WHERE pg_temp.json_parse_ok(b)
                        AND kafka.json_parse(b) <> convert_from(b, 'UTF8')::jsonb) AS differ
FROM inputs;
SELECT kafka.can_json_parse(NULL) IS NULL AS strict;

-- nesting is limited to 1000 levels (deeper JSON would exhaust the stack);
-- brackets inside strings do not count
CREATE TEMP TABLE nested (label text, b bytea);
INSERT INTO nested VALUES
    ('arrays 1000',     convert_to(repeat('[', 1000) || repeat(']', 1000), 'UTF8')),
    ('arrays 1001',     convert_to(repeat('[', 1001) || repeat(']', 1001), 'UTF8')),
    ('objects 1000',    convert_to(repeat('{"a":', 1000) || '1' || repeat('}', 1000), 'UTF8')),
    ('objects 1001',    convert_to(repeat('{"a":', 1001) || '1' || repeat('}', 1001), 'UTF8')),
    ('mixed 1001',      convert_to(repeat('[{"a":', 500) || '[1]' || repeat('}]', 500), 'UTF8')),
    ('in a string',     convert_to('["' || repeat('[', 2000) || '"]', 'UTF8')),
    ('after \"',        convert_to('["\"' || repeat('{', 2000) || '"]', 'UTF8')),
    ('100000 unclosed', convert_to(repeat('[', 100000), 'UTF8')),
    ('100000 closed',   convert_to(repeat('[', 100000) || repeat(']', 100000), 'UTF8'));
SELECT label, length(b), kafka.can_json_parse(b) AS can, pg_temp.json_parse_ok(b) AS parses
FROM nested;
SELECT kafka.json_parse(b) FROM nested WHERE label = 'arrays 1001';
SELECT kafka.json_parse(b) = convert_from(b, 'UTF8')::jsonb AS same
FROM nested WHERE label IN ('arrays 1000', 'objects 1000', 'in a string', 'after \"');

-- numbers at the edges of numeric's range: can_json_parse predicts exactly
-- when jsonb input overflows
CREATE TEMP TABLE numbers AS
SELECT m || 'e' || e AS n
FROM unnest(ARRAY['0', '-0', '1', '-1', '9.999', '0.0001', '12345.678', '0.000',
                  '100000', '0.00000000001', '1.00000']) AS m,
     unnest(ARRAY['-1073741823', '-1073741822', '-16392', '-16391', '-16390',
                  '-16389', '-16388', '-16387', '-16386', '-16385', '-16384',
                  '-16383', '-16382', '-16381', '-16380', '-16379', '-16378',
                  '-16376', '131064', '131066', '131067', '131068', '131069',
                  '131070', '131071', '131072', '131073', '131075', '131076',
                  '131077', '131080', '131084', '1073741822', '1073741823',
                  '+0', '00005', '2147483648', '99999999999999999999']) AS e;
INSERT INTO numbers
SELECT '0.' || repeat('0', n) || '1' FROM unnest(ARRAY[16381, 16382, 16383]) AS n;
SELECT count(*) AS numbers,
       count(*) FILTER (WHERE kafka.can_json_parse(convert_to(n, 'UTF8'))) AS accepted,
       count(*) FILTER (WHERE kafka.can_json_parse(convert_to(n, 'UTF8'))
                        <> pg_temp.jsonb_in_ok(convert_to(n, 'UTF8'))) AS disagree_core,
       count(*) FILTER (WHERE kafka.can_json_parse(convert_to(n, 'UTF8'))
                        <> pg_temp.json_parse_ok(convert_to(n, 'UTF8'))) AS disagree
FROM numbers;

--
-- from_varbyte
--
SELECT kafka.from_varbyte(convert_to('ab', 'UTF8'), 'hex') AS hex,
       kafka.from_varbyte('\x4d'::bytea, 'binary') AS binary,
       kafka.from_varbyte(convert_to('Zoë', 'UTF8'), 'utf8') AS utf8,
       kafka.from_varbyte(convert_to('foobar', 'UTF8'), 'base64') AS base64;
SELECT kafka.from_varbyte('\x00ff10ab'::bytea, 'hex') AS hex,
       kafka.from_varbyte('\x00ff10ab'::bytea, 'binary') AS binary,
       kafka.from_varbyte('\x00ff10ab'::bytea, 'base64') AS base64;
-- empty input
SELECT f, kafka.from_varbyte(''::bytea, f) = '' AS empty
FROM unnest(ARRAY['hex', 'binary', 'utf8', 'base64']) AS f;
-- base64 padding
SELECT s, kafka.from_varbyte(convert_to(s, 'UTF8'), 'base64')
FROM unnest(ARRAY['f', 'fo', 'foo', 'foob', 'fooba']) AS s;
-- formats are case-insensitive; utf-8 and utf_8 are accepted too
SELECT f, kafka.from_varbyte(convert_to('hi', 'UTF8'), f)
FROM unnest(ARRAY['HEX', 'Binary', 'UTF8', 'Utf-8', 'utf_8', 'Base64']) AS f;
-- every byte value, against core's encode() and bit(8)
WITH bytes AS (SELECT i, set_byte('\x00'::bytea, 0, i) AS b
               FROM generate_series(0, 255) AS i)
SELECT count(*) AS bytes,
       count(*) FILTER (WHERE kafka.from_varbyte(b, 'hex') = encode(b, 'hex')) AS hex_ok,
       count(*) FILTER (WHERE kafka.from_varbyte(b, 'binary') = i::bit(8)::text) AS binary_ok,
       count(*) FILTER (WHERE kafka.from_varbyte(b, 'base64') = encode(b, 'base64')) AS base64_ok
FROM bytes;
-- longer values of every length up to 200 (core's base64 breaks lines at 76)
WITH v AS (SELECT n, decode(substr(repeat(md5(n::text), 14), 1, 2 * n), 'hex') AS b
           FROM generate_series(0, 200) AS n)
SELECT count(*) AS values,
       count(*) FILTER (WHERE kafka.from_varbyte(b, 'hex') = encode(b, 'hex')) AS hex_ok,
       count(*) FILTER (WHERE kafka.from_varbyte(b, 'base64')
                        = replace(encode(b, 'base64'), E'\n', '')) AS base64_ok,
       count(*) FILTER (WHERE length(kafka.from_varbyte(b, 'binary')) = 8 * n
                        AND kafka.from_varbyte(b, 'binary')
                           = ('x' || encode(b, 'hex'))::varbit::text) AS binary_ok
FROM v;
-- errors
SELECT kafka.from_varbyte('\xc328'::bytea, 'utf8');
SELECT kafka.from_varbyte('\x610062'::bytea, 'utf8');
SELECT kafka.from_varbyte('\x61'::bytea, 'text');
SELECT kafka.from_varbyte('\x61'::bytea, '');
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate
FROM (VALUES ($$SELECT kafka.from_varbyte('\xc328'::bytea, 'utf8')$$),
             ($$SELECT kafka.from_varbyte('\x00'::bytea, 'utf8')$$),
             ($$SELECT kafka.from_varbyte('\x61'::bytea, 'hexadecimal')$$)) AS t(q);
SELECT kafka.from_varbyte(NULL, 'hex') IS NULL AS null_value,
       kafka.from_varbyte('\x61'::bytea, NULL) IS NULL AS null_format;

--
-- header and header_bytes
--
CREATE TEMP TABLE h AS SELECT
'[{"key": "trace-id", "value": "abc"},
  {"key": "flag", "value": null},
  {"key": "bin", "value_base64": "AP8="},
  {"key": "trace-id", "value": "second"},
  {"key": "empty", "value": ""},
  {"key": "Zoë", "value": "café"}]'::jsonb AS h;
SELECT name, kafka.header(h, name) AS header, kafka.header(h, name) IS NULL AS is_null,
       kafka.header_bytes(h, name) AS header_bytes
FROM h, unnest(ARRAY['trace-id', 'flag', 'empty', 'Zoë', 'missing', 'Trace-Id', '']) AS name;
-- a binary value: bytes only
SELECT kafka.header_bytes(h, 'bin') FROM h;
SELECT kafka.header(h, 'bin') FROM h;
-- the first header wins even when its value is null
SELECT kafka.header('[{"key": "a", "value": null}, {"key": "a", "value": "x"}]', 'a') IS NULL AS first_null,
       kafka.header_bytes('[{"key": "a", "value": null}, {"key": "a", "value": "x"}]', 'a') IS NULL AS first_null_bytes,
       kafka.header('[{"key": "a", "value_base64": "eA=="}, {"key": "b", "value": "y"}]', 'b') AS after_binary;
-- no headers
SELECT kafka.header('[]', 'a') IS NULL AS none, kafka.header_bytes('[]', 'a') IS NULL AS none_bytes;
-- elements after the match are not examined
SELECT kafka.header('[{"key": "a", "value": "x"}, 1]', 'a');
-- not a headers array
SELECT kafka.header('{"key": "a", "value": "x"}', 'a');
SELECT kafka.header('"a"', 'a');
SELECT kafka.header_bytes('null', 'a');
-- malformed elements
SELECT kafka.header('[1]', 'a');
SELECT kafka.header('[{"value": "x"}]', 'a');
SELECT kafka.header('[{"key": 1, "value": "x"}]', 'a');
SELECT kafka.header('[{"key": "a", "value": 1}]', 'a');
SELECT kafka.header('[{"key": "a"}]', 'a');
SELECT kafka.header_bytes('[{"key": "a", "value_base64": "!!"}]', 'a');
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate
FROM (VALUES ($$SELECT kafka.header('[{"key": "a", "value_base64": "eA=="}]', 'a')$$),
             ($$SELECT kafka.header('{}', 'a')$$),
             ($$SELECT kafka.header_bytes('[1]', 'a')$$)) AS t(q);
SELECT kafka.header(NULL, 'a') IS NULL AS null_headers,
       kafka.header('[]', NULL) IS NULL AS null_name,
       kafka.header_bytes(NULL, 'a') IS NULL AS null_headers_bytes;

--
-- The kafka_headers builder used by scans (through the internal test wrapper)
--
SELECT kafka._build_headers_for_test('{}', '{}');
SELECT kafka._build_headers_for_test(
    ARRAY['trace-id', 'flag', 'bin', 'trace-id', 'empty', 'Zoë'],
    ARRAY[convert_to('abc', 'UTF8'), NULL, '\x00ff'::bytea, convert_to('second', 'UTF8'),
          ''::bytea, convert_to('café', 'UTF8')]);
-- it builds exactly the format header() reads
SELECT kafka._build_headers_for_test(
    ARRAY['trace-id', 'flag', 'bin', 'trace-id', 'empty', 'Zoë'],
    ARRAY[convert_to('abc', 'UTF8'), NULL, '\x00ff'::bytea, convert_to('second', 'UTF8'),
          ''::bytea, convert_to('café', 'UTF8')]) = h AS same
FROM h;
-- not text: invalid UTF-8, NUL bytes
SELECT kafka._build_headers_for_test(ARRAY['bad', 'nul', 'nul-only', 'ascii'],
    ARRAY['\xc328'::bytea, '\x610062'::bytea, '\x00'::bytea, '\x41'::bytea]);
-- header_bytes gives back every value byte for byte
WITH v AS (SELECT n, decode(substr(repeat(md5(n::text), 8), 1, 2 * n), 'hex') AS b
           FROM generate_series(0, 100) AS n)
SELECT count(*) AS values,
       count(*) FILTER (WHERE kafka.header_bytes(
                                kafka._build_headers_for_test(ARRAY['k'], ARRAY[b]), 'k') = b) AS round_trip,
       count(*) FILTER (WHERE kafka._build_headers_for_test(ARRAY['k'], ARRAY[b]) -> 0 ? 'value_base64')
           AS binary
FROM v;
SELECT kafka._build_headers_for_test(ARRAY['a', 'b'], ARRAY['\x61'::bytea]);
SELECT kafka._build_headers_for_test(ARRAY[NULL, 'b'], ARRAY['\x61'::bytea, '\x62'::bytea]);
--
-- _json_field_text(v, k), which a streaming refresh evaluates for
-- json_parse(v) ->> k: the same value, NULL or error (SQLSTATE and message)
--
CREATE FUNCTION pg_temp.field_both(b bytea, k text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    slow text; fast text; slow_err text; fast_err text;
BEGIN
    BEGIN
        slow := kafka.json_parse(b) ->> k;
    EXCEPTION WHEN OTHERS THEN
        slow_err := SQLSTATE || ' ' || SQLERRM;
    END;
    BEGIN
        fast := kafka._json_field_text(b, k);
    EXCEPTION WHEN OTHERS THEN
        fast_err := SQLSTATE || ' ' || SQLERRM;
    END;
    IF slow IS DISTINCT FROM fast OR slow_err IS DISTINCT FROM fast_err THEN
        RETURN format('DIFFER: json_parse ->> %s / %s, _json_field_text %s / %s',
                      slow, slow_err, fast, fast_err);
    END IF;
    RETURN coalesce(fast_err, fast, '<null>');
END $$;
CREATE TEMP TABLE field_docs (n serial, doc bytea);
INSERT INTO field_docs (doc) SELECT convert_to(d, 'UTF8') FROM (VALUES
    ('{"k": "plain", "a": 1}'), ('{"k": "esc\"aped \\ \u00e9 \n tab\t"}'), ('{"k": 12345}'),
    ('{"k": -0}'), ('{"k": 0}'), ('{"k": -17}'), ('{"k": 1.50}'), ('{"k": 1e2}'), ('{"k": -12.0E-3}'),
    ('{"k": 123456789012345678901234567890}'), ('{"k": true}'), ('{"k": false}'), ('{"k": null}'),
    ('{"k": {"bb": 1, "a": [1, 2]}}'), ('{"k": [3, {"x": null}]}'), ('{"k": 1, "k": "second"}'),
    ('{"k": {"z": 1}, "k": 2}'), ('{"k": 2, "k": {"z": 1}}'), ('{"a": {"k": "nested"}}'),
    ('{"a": [{"k": 1}], "k": "top"}'), ('["k", "v"]'), ('"k"'), ('42'), ('null'), ('{}'),
    ('{"K": 1}'), ('{"\u006b": "escaped key"}'), ('{"": "empty key", "k": ""}'),
    ('{"k\u0000": 1}'), ('{"k": "\u0000"}'), ('{"other": "\u0000", "k": 1}'), ('{"k": "\ud800"}'),
    ('{"k": 1'), ('{"k": 1} x'), ('not json'), (''), ('{"k": 007}'), ('{"k": 1e999999}'),
    ('{"a": 1e999999, "k": 1}')) AS docs(d);
INSERT INTO field_docs (doc) VALUES ('\x7b226b223a2200227d'), ('\x7b226b223a22ff227d');
SELECT n, encode(doc, 'escape') AS doc, keys.k, pg_temp.field_both(doc, keys.k)
FROM field_docs, (VALUES ('k'), ('a'), ('')) AS keys(k)
WHERE keys.k = 'k' OR n IN (1, 19, 20, 28)
ORDER BY n, keys.k;
SELECT count(*) AS differ FROM field_docs, (VALUES ('k'), ('a'), (''), ('K'), ('x')) AS keys(k)
WHERE pg_temp.field_both(doc, keys.k) LIKE 'DIFFER%';
RESET ROLE;
DROP OWNED BY fn_analyst;
DROP ROLE fn_analyst;

#!/usr/bin/env bash
# Regenerates the COPY fixtures of router::copy's PostgreSQL tests: starts a throwaway
# PostgreSQL, writes one table out with COPY TO STDOUT in several formats, and the keys
# PostgreSQL sees (with their hash partition for modulus 3) in expected.tsv.
# Usage: pgdog/src/router/copy/testdata/generate.sh   (needs initdb, pg_ctl and psql in PATH
# or in $(pg_config --bindir)).
set -euo pipefail

out="$(cd "$(dirname "$0")" && pwd)"
bin="$(pg_config --bindir 2>/dev/null || true)"
export PATH="${bin:+$bin:}$PATH"
tmp="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))

# The server refuses to run as root: then it runs as the postgres user.
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env PATH="$PATH" "$@"; else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then chown postgres "$tmp"; fi
as_server initdb -D "$tmp/data" --locale=C -E UTF8 -U postgres >/dev/null
as_server pg_ctl -D "$tmp/data" -o "-p $port -k $tmp -c listen_addresses=''" -l "$tmp/log" -w start >/dev/null
trap 'as_server pg_ctl -D "$tmp/data" -m immediate stop >/dev/null; rm -rf "$tmp"' EXIT

sql() { psql -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U postgres -d postgres "$@"; }

sql <<'SQL'
CREATE TABLE t (id bigint, name text, u uuid, note text, n integer, s smallint);
INSERT INTO t VALUES
  (1, 'plain', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'x', 1, 1),
  (2, E'tab\there', NULL, E'new\nline', -5, -5),
  (3, E'new\nline', '00000000-0000-0000-0000-000000000000', E'back\\slash', NULL, 7),
  (4, E'back\\slash', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'comma,semi;pipe|', 2147483647, 32767),
  (5, 'comma,semi;pipe|', NULL, 'quote"s', -2147483648, -32768),
  (6, 'quote"s', NULL, $$it's$$, 0, 0),
  (7, $$it's$$, NULL, '', 42, NULL),
  (8, '', NULL, NULL, 43, 43),
  (9, NULL, NULL, 'NULL', 44, 44),
  (10, 'NULL', NULL, 'nil', 45, 45),
  (11, 'nil', NULL, '\N', 46, 46),
  (12, '\N', NULL, '\.', 47, 47),
  (13, '\.', NULL, E'cr\rlf\r\n', 48, 48),
  (14, 'żółć', NULL, '日本語', 49, 49),
  (15, '日本語', NULL, '🦀', 50, 50),
  (16, '🦀', NULL, '  spaced  ', 51, 51),
  (17, E'cr\rlf\r\n', NULL, E'\\.\n\\.', 52, 52),
  (18, '  spaced  ', NULL, ',', 53, 53),
  (19, E'\\.\n\\.', NULL, '"', 54, 54),
  (20, ',', NULL, '''', 55, 55),
  (21, '"', NULL, ';', 56, 56),
  (22, '''', NULL, '|', 57, 57),
  (23, ';', NULL, E'\t', 58, 58),
  (24, '|', NULL, E'\\', 59, 59),
  (25, E'\t', NULL, 'end', 60, 60),
  (26, E'\\', NULL, 'end', 61, 61),
  (27, E'\x01\x7f', NULL, 'ctl', 62, 62),
  (-1, 'negative', NULL, 'n', -1, -1),
  (9223372036854775807, 'max', NULL, 'n', 1, 1),
  (-9223372036854775808, 'min', NULL, 'n', 1, 1);
-- Many ordinary rows, with a uuid, mixed special characters and some NULLs.
INSERT INTO t
SELECT 100 + g,
       CASE WHEN g % 17 = 0 THEN NULL
            ELSE md5(g::text) || (ARRAY[E'\t', E'\n', ',', '"', '''', '\', ';', '|', ' ', 'ą'])[1 + g % 10] || g END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE md5('u' || g)::uuid END,
       repeat('x', g % 7),
       CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 7919) % 100000 - 50000 END,
       (g % 200 - 100)::smallint
FROM generate_series(1, 170) g;

CREATE FUNCTION rem(reg regclass, v anyelement) RETURNS text LANGUAGE sql AS $$
  SELECT CASE WHEN v IS NULL THEN 'NULL' ELSE
    (SELECT r::text FROM generate_series(0, 2) r WHERE satisfies_hash_partition(reg::oid, 3, r, v)) END
$$;
CREATE TABLE p_bigint (k bigint) PARTITION BY HASH (k);
CREATE TABLE p_text (k text) PARTITION BY HASH (k);
CREATE TABLE p_uuid (k uuid) PARTITION BY HASH (k);
CREATE TABLE p_int (k integer) PARTITION BY HASH (k);
CREATE TABLE p_small (k smallint) PARTITION BY HASH (k);
SQL

cols="id, name, u, note, n, s"
sel="SELECT $cols FROM t ORDER BY id"
sql -c "COPY ($sel) TO STDOUT" >"$out/text.copy"
sql -c "COPY ($sel) TO STDOUT (FORMAT text, HEADER, DELIMITER '|', NULL '(null)')" >"$out/text_header.copy"
sql -c "COPY ($sel) TO STDOUT (FORMAT csv)" >"$out/csv.copy"
sql -c "COPY ($sel) TO STDOUT (FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NULL', FORCE_QUOTE (name, note))" >"$out/csv_custom.copy"
sql -c "COPY ($sel) TO STDOUT (FORMAT binary)" >"$out/binary.copy"
# What each shard of three would send for a COPY TO STDOUT (for the joiner).
for shard in 0 1 2; do
  where="SELECT $cols FROM t WHERE rem('p_bigint', id) = '$shard' ORDER BY id"
  sql -c "COPY ($where) TO STDOUT (FORMAT binary)" >"$out/binary_shard$shard.copy"
  sql -c "COPY ($where) TO STDOUT (FORMAT csv, HEADER)" >"$out/csv_shard$shard.copy"
done
# Per row: each key column's text (name hex-encoded) and its remainder for modulus 3.
sql -c "COPY (SELECT id, rem('p_bigint', id),
                     coalesce(encode(convert_to(name, 'UTF8'), 'hex'), 'NULL'), rem('p_text', name),
                     coalesce(u::text, 'NULL'), rem('p_uuid', u),
                     coalesce(n::text, 'NULL'), rem('p_int', n),
                     coalesce(s::text, 'NULL'), rem('p_small', s)
              FROM t ORDER BY id) TO STDOUT" >"$out/expected.tsv"
echo "fixtures written to $out"

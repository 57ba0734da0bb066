/**
 * The statements fuzz sequences are made of, against the fuzz schema (fuzz-world.ts): reads and
 * writes of allowed tables, the denied table, masked columns turned into other shapes (case,
 * replace, hex, JSON keys, casts whose error message quotes the value), statements needing
 * approval, errors mid-pipeline (division by zero, constraint violations), transactions and
 * savepoints, SQL PREPARE / EXECUTE / DEALLOCATE under the names protocol messages use too,
 * cursors, DISCARD ALL, session settings that change how the server reads text, results larger
 * than the audit's inline capture. `p` lists the types of `$n` parameters.
 */
export interface PoolSql {
  sql: string;
  p?: Array<"int" | "text">;
}

const s = (sql: string, ...p: Array<"int" | "text">): PoolSql => (p.length ? { sql, p } : { sql });

export const READS: PoolSql[] = [
  s("SELECT 1"),
  s("SELECT id, name, qty FROM items ORDER BY id"),
  s("SELECT count(*) FROM items"),
  s("SELECT generate_series(1, 5) AS n"),
  s("SELECT id, qty FROM items WHERE qty > 1 ORDER BY id"),
  s("SHOW search_path"),
  s("SELECT 1 AS a, 'x' AS b WHERE false"),
  s(""),
  s("SELECT 1/0"),
  s("SELECT 1/(SELECT count(*) - 3 FROM items)"),
  s("SELECT $1::int + 1", "int"),
  s("SELECT $1::text AS v", "text"),
  s("SELECT id, name FROM items WHERE id = $1::int", "int"),
  s("SELECT $1::int / $2::int", "int", "int"),
  s("COPY items TO STDOUT"),
  // more rows than the audit captures per statement, and a capture above the 64 KiB that ride
  // inside statement.completed (recorded as result.rows instead)
  s("SELECT generate_series(1, 150) AS n"),
  s("SELECT g, repeat('r', 1000) AS pad FROM generate_series(1, 80) g"),
];

export const MASKED_READS: PoolSql[] = [
  s("SELECT id, email, card, note FROM customers ORDER BY id"),
  s("SELECT * FROM customers WHERE id = 1"),
  s("SELECT upper(email) AS e FROM customers"),
  s("SELECT replace(email, '@', ' at ') AS e FROM customers"),
  s("SELECT encode(convert_to(card, 'UTF8'), 'hex') AS h FROM customers"),
  s("SELECT row_to_json(c) AS j FROM customers c"),
  s("SELECT json_build_object(email, id) AS j FROM customers"),
  s("SELECT string_agg(card, ',') AS cards FROM customers"),
  s("SELECT email::int FROM customers"),
  s("SELECT replace(email, '@', '#')::int FROM customers"),
  s("SELECT email FROM customers WHERE id = $1::int", "int"),
  s("SELECT count(*) FROM customers WHERE email = $1::text", "text"),
  s("COPY (SELECT email, card FROM customers) TO STDOUT"),
  s("COPY (SELECT email FROM customers) TO STDOUT (FORMAT binary)"),
  s("COPY customers TO STDOUT (FORMAT csv)"),
  s("SELECT c.email, repeat(c.note, 150) AS pad FROM customers c, generate_series(1, 40) g"),
];

export const DENIED_TABLE: PoolSql[] = [
  s("SELECT * FROM secrets"),
  s("SELECT token FROM public.secrets WHERE id = $1::int", "int"),
  s("SELECT (SELECT token FROM secrets LIMIT 1) AS t"),
  s("INSERT INTO secrets VALUES (9, 'x')"),
  s("DELETE FROM secrets WHERE id = 1"),
];

export const WRITES: PoolSql[] = [
  s("INSERT INTO items VALUES (10, 'ten', 1)"),
  s("INSERT INTO items VALUES (1, 'dup', 1)"),
  s("INSERT INTO items VALUES ($1::int, $2::text, 1)", "int", "text"),
  s("UPDATE items SET qty = qty - 5 WHERE id = 1"),
  s("UPDATE items SET qty = qty + 1 WHERE id = $1::int", "int"),
  s("DELETE FROM items WHERE id = 2"),
  s("DELETE FROM items WHERE id = $1::int", "int"),
  s("INSERT INTO items VALUES (11, 'eleven', 2) RETURNING *"),
  s("UPDATE customers SET note = 'n' || id WHERE id = 2 RETURNING email"),
  s("WITH d AS (DELETE FROM items WHERE id = 3 RETURNING id) SELECT count(*) FROM d"),
];

export const NEEDS_APPROVAL: PoolSql[] = [
  s("DELETE FROM items"),
  s("UPDATE items SET qty = 0"),
  s("TRUNCATE items"),
  s("CREATE TABLE fz_tmp (id int)"),
];

export const TRANSACTION: PoolSql[] = [
  s("BEGIN"),
  s("COMMIT"),
  s("ROLLBACK"),
  s("SAVEPOINT sp1"),
  s("ROLLBACK TO SAVEPOINT sp1"),
  s("RELEASE SAVEPOINT sp1"),
  s("BEGIN READ ONLY"),
  s("END"),
];

/** Names shared with protocol Parse (s1, s2, p1): the server has one namespace for both. */
export const PREPARED: PoolSql[] = [
  s("PREPARE p1 AS SELECT id FROM items ORDER BY id"),
  s("PREPARE p1 AS DELETE FROM items WHERE id = 3"),
  s("PREPARE p1(int) AS SELECT $1 + 1"),
  s("PREPARE s1 AS SELECT token FROM secrets"),
  s("PREPARE s2 AS DELETE FROM items"),
  s("PREPARE s2 AS SELECT email FROM customers"),
  s("EXECUTE p1"),
  s("EXECUTE p1(5)"),
  s("EXECUTE s1"),
  s("EXECUTE s2"),
  s("DEALLOCATE p1"),
  s("DEALLOCATE s1"),
  s("DEALLOCATE ALL"),
  s("DISCARD ALL"),
];

export const CURSORS: PoolSql[] = [
  s("DECLARE k1 CURSOR FOR SELECT id FROM items ORDER BY id"),
  s("DECLARE k2 CURSOR FOR SELECT email FROM customers"),
  s("DECLARE k3 CURSOR WITH HOLD FOR SELECT token FROM secrets"),
  s("FETCH 1 FROM k1"),
  s("FETCH ALL FROM k2"),
  s("FETCH ALL FROM k3"),
  s("CLOSE k1"),
];

export const SETTINGS: PoolSql[] = [
  s("SET application_name = 'fz-renamed'"),
  s("SET statement_timeout = 0"),
  s("RESET ALL"),
  s("SET standard_conforming_strings = off"),
  s("SELECT set_config('standard_conforming_strings', 'off', false)"),
  // read by libpg-query (standard strings) as one SELECT of two literals; with
  // standard_conforming_strings off the server reads a SELECT, then a DELETE
  s("SELECT 'a\\', 'b; DELETE FROM items WHERE id = 3; --'"),
  s("SET LOCAL standard_conforming_strings = off"),
  // client-only multibyte encodings whose second byte can be a backslash or a quote
  s("SET client_encoding = 'SJIS'"),
  s("SET client_encoding TO 'BIG5'"),
  s("SET NAMES 'GBK'"),
  s("SELECT set_config('client_encoding', 'SJIS', false)"),
  s("SET backslash_quote = on"),
  s("RESET client_encoding"),
  s("SET client_encoding = 'UTF8'"),
  // an escape string: the same reading under every setting the proxy allows
  s("SELECT E'a\\'', 'b; DELETE FROM items WHERE id = 2; --'"),
];

/** Text and integer parameter values, some that fail their cast, some that look like an email. */
export const TEXT_VALUES = ["a", "x'y", "", "fz.param@example.com", "4111111111111111", "line\nbreak"];
export const INT_VALUES = ["1", "2", "3", "10", "0", "-1", "99999999999", "abc"];

/**
 * Masking has no side channels (issue 11): attacks through the real proxy against real Postgres,
 * with raw protocol frames and with pg, that try to get a masked column's value out through what is
 * not a result column: error fields (a failed cast, DETAIL of unique and check violations, RAISE in
 * DO blocks and functions, CONTEXT), notices, JSON object keys (json_object_agg, jsonb_build_object,
 * json_each), COPY TO STDOUT of JSON and reported settings (ParameterStatus after set_config), in
 * the simple and the extended protocol. Every byte the
 * client received and every event on the audit stream is searched for the values, also transformed
 * (reversed, '@' replaced, hex), the way the differential suite's leak oracle does. Statements that
 * touch no masked column keep the server's messages exactly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionEventType, type StatementCompletedData } from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { loadSqlParser } from "@sluice/shared/sql";
import { snapshotEnforcer } from "../../data-plane/src/session/snapshot-enforcer.js";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { decodeErrorFields } from "../../data-plane/src/wire/decode.js";
import { bind, execute, parse, query, sync } from "../../data-plane/src/wire/encode.js";
import { rawConnect, shown, type RawClient, type RawMessage } from "../lib/raw-pg-client.js";
import { startProxyStack } from "./proxy-stack.js";
import { readStream, recorderOn, sharedAuditStream } from "./audit-recording-support.js";

const LOCAL = "zqxwvutsrpmkjh";
const EMAIL = `${LOCAL}@example.com`;
const CARD = "4111111111111111";
const OTHER_LOCAL = "yhnujmikolpb";

/** windows of the secrets' random parts, reversed too, and their hex: what must be nowhere */
const windows = (s: string, n: number) => Array.from({ length: s.length - n + 1 }, (_, i) => s.slice(i, i + n));
const NEEDLES = [LOCAL, OTHER_LOCAL, CARD].flatMap((s) => {
  const w = [...windows(s, 8), ...windows([...s].reverse().join(""), 8)];
  return [...w, ...w.map((x) => Buffer.from(x).toString("hex"))];
});
function leak(text: string): string | undefined {
  const t = text.toLowerCase();
  return NEEDLES.find((n) => t.includes(n));
}

const SETUP = `
CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE, card text, note text);
INSERT INTO customers VALUES (1, '${EMAIL}', '${CARD}', 'vip'), (2, '${OTHER_LOCAL}@corp.io', NULL, NULL);
CREATE TABLE plain (id int PRIMARY KEY, v text UNIQUE);
INSERT INTO plain VALUES (1, 'abc'), (2, 'carol@example.org');
CREATE TABLE copies (e text UNIQUE);
CREATE TABLE checked (e text CONSTRAINT no_example CHECK (e NOT LIKE '%example%'));
CREATE VIEW contacts AS SELECT id, lower(email) AS contact FROM customers;
CREATE FUNCTION leak() RETURNS int LANGUAGE plpgsql AS $$
DECLARE v text := (SELECT reverse(email) FROM customers WHERE id = 1);
BEGIN
  RAISE NOTICE 'value %', v USING DETAIL = v, HINT = v;
  RAISE EXCEPTION USING MESSAGE = v, DETAIL = v, HINT = v, COLUMN = v, TABLE = v, CONSTRAINT = v, ERRCODE = '22012';
END $$;
CREATE FUNCTION warn_only() RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'w %', (SELECT replace(email, '@', '#') FROM customers WHERE id = 1); RETURN 1; END $$;
`;

test("masking has no side channels: errors, notices, JSON keys and COPY through the proxy", async (t) => {
  await loadSqlParser();
  const { nc, names } = await sharedAuditStream(t);
  let bundle!: Bundle;
  const snaps = { current: () => ({ revision: 1, bundle, hash: "x", appliedBy: "t", appliedAt: new Date(0).toISOString() }), onChange: () => () => {} };
  const publisher = recorderOn(t, nc, names, "ack");
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 100, maxBytesPerStatement: 65536, snapshots: snaps });
  const stack = await startProxyStack(t, {
    bundle: (b) => {
      bundle = {
        ...b,
        policies: [{ name: "ci-rw", groups: ["ci"], resources: ["app"], allow: ["read", "write", "ddl", "utility", "copy"] }],
        masking: [{ name: "pii", resources: ["app"], columns: ["customers.email", "customers.card"], classifiers: ["email", "credit-card"], strategy: "hash" }],
      };
      return bundle;
    },
    dp: { audit, auditFeatures: { decodeParams: true, captureRows: 100 }, enforcer: snapshotEnforcer(snaps), maskingHashKey: Buffer.from("side-channel-key") },
  });
  await stack.direct(SETUP);
  const token = await stack.token();
  const received: RawMessage[] = [];
  const pgMessages: string[] = [];
  const raw = async (): Promise<RawClient> => rawConnect({ port: stack.dp.port, database: "app", user: "ci", password: token, tls: true });
  const c = await raw();
  t.after(() => c.end());
  /** sends frames, returns what came back up to ReadyForQuery; everything is kept for the leak check */
  const run = async (...frames: Buffer[]): Promise<RawMessage[]> => {
    c.send(...frames);
    const ms = await c.untilReady();
    received.push(...ms);
    return ms;
  };
  const simple = (sql: string) => run(query(sql));
  const extended = (sql: string) => run(parse("", sql), bind("", ""), execute(""), sync());
  const fieldsOf = (ms: RawMessage[], type: "E" | "N") => ms.filter((m) => m.type === type).map((m) => decodeErrorFields(m.raw));
  const withheld = /^sluice withheld the text of this (error|notice) \(SQLSTATE [0-9A-Z]{5} [a-z_]+\): /;

  await t.test("a failed cast of a masked value (finding 001), simple and extended: SQLSTATE kept, text withheld", async () => {
    for (const send of [simple, extended]) {
      const ms = await send("SELECT replace(email, '@', '#')::int FROM customers");
      const [e] = fieldsOf(ms, "E");
      assert.equal(e!.C, "22P02");
      assert.match(e!.M!, withheld);
      assert.match(e!.M!, /reads masked columns through customers/);
      assert.equal(shown(ms).at(-1), "Z:I");
    }
    // the same through a view over the masked table, and with the column only in WHERE
    for (const sql of ["SELECT contact::int FROM contacts", "SELECT 1 FROM customers WHERE email::int > 0"]) {
      const [e] = fieldsOf(await simple(sql), "E");
      assert.equal(e!.C, "22P02");
      assert.match(e!.M!, withheld);
    }
  });

  await t.test("unique and check violations: DETAIL (Key (e)=(…), Failing row contains (…)) withheld, constraint and table names kept", async () => {
    assert.deepEqual(shown(await simple("INSERT INTO copies SELECT replace(email, '@', '#') FROM customers WHERE id = 1")), ["C:INSERT 0 1", "Z:I"]);
    const [u] = fieldsOf(await extended("INSERT INTO copies SELECT replace(email, '@', '#') FROM customers WHERE id = 1"), "E");
    assert.deepEqual([u!.C, u!.n, u!.t, u!.s], ["23505", "copies_e_key", "copies", "public"]);
    assert.match(u!.M!, withheld);
    const [k] = fieldsOf(await simple("UPDATE customers SET email = (SELECT email FROM customers WHERE id = 1) WHERE id = 2"), "E");
    assert.deepEqual([k!.C, k!.n, k!.t], ["23505", "customers_email_key", "customers"]);
    const [f] = fieldsOf(await simple("INSERT INTO checked SELECT email FROM customers"), "E");
    assert.deepEqual([f!.C, f!.n, f!.t], ["23514", "no_example", "checked"]);
    assert.match(f!.M!, withheld);
  });

  await t.test("RAISE in DO blocks and functions: notices and errors withheld, names set by user code too", async () => {
    const d = await simple("DO $$ BEGIN RAISE NOTICE '%', (SELECT reverse(email) FROM customers WHERE id = 1); RAISE INFO 'i %', (SELECT card FROM customers WHERE id = 1); END $$");
    assert.deepEqual(shown(d), ["C:DO", "Z:I"]);
    const notices = fieldsOf(d, "N");
    assert.equal(notices.length, 2, "the notices still arrive, in order");
    for (const n of notices) {
      assert.equal(n.C, "00000");
      assert.match(n.M!, /^sluice withheld the text of this notice/);
    }
    const x = await extended("DO $$ BEGIN RAISE EXCEPTION USING MESSAGE = (SELECT replace(email, '@', '#') FROM customers WHERE id = 1), COLUMN = (SELECT reverse(email) FROM customers WHERE id = 1), ERRCODE = '22023'; END $$");
    const [e] = fieldsOf(x, "E");
    assert.equal(e!.C, "22023");
    assert.equal(e!.c, undefined, "a column name set by user code is not passed on");
    assert.equal(e!.W, undefined, "nor the PL/pgSQL context");
    // a user function reads the table itself: the statement names no masked table at all
    for (const send of [simple, extended]) {
      const ms = await send("SELECT leak()");
      const [n] = fieldsOf(ms, "N");
      const [le] = fieldsOf(ms, "E");
      assert.match(n!.M!, /^sluice withheld the text of this notice .*user function leak\(\)/);
      assert.equal(le!.C, "22012");
      assert.deepEqual([le!.c, le!.t, le!.n, le!.D === undefined || !le!.D.includes("moc.")], [undefined, undefined, undefined, true]);
    }
    const w = await simple("SELECT warn_only()");
    assert.deepEqual(shown(w), ["T:warn_only", "D:1", "C:SELECT 1", "Z:I"]);
    assert.equal(fieldsOf(w, "N")[0]!.V, "WARNING");
  });

  await t.test("JSON keys (findings 003, 004): json_object_agg, jsonb_build_object, json_each, simple and extended", async () => {
    for (const sql of [
      "SELECT json_object_agg(email, id) FROM customers",
      "SELECT jsonb_object_agg(replace(email, '@', '#'), card) FROM customers",
      "SELECT jsonb_build_object(reverse(email), 1) FROM customers",
      "SELECT json_build_object('e', email)->>'e' AS e FROM customers",
      "SELECT to_json(json_build_object('e', replace(email, '@', '#'))::text) FROM customers",
      "SELECT e.key, replace(key, '@', '#') FROM customers c, json_each(json_build_object(c.email, 1)) e",
      "SELECT k FROM customers, jsonb_object_keys(jsonb_build_object(card, 1)) k WHERE card IS NOT NULL",
      "SELECT x FROM customers, unnest(ARRAY[reverse(email)]) x",
      "SELECT row_to_json(s) FROM (SELECT * FROM customers) s",
    ]) {
      for (const send of [simple, extended]) {
        const ms = await send(sql);
        assert.ok(ms.some((m) => m.type === "D"), `${sql} returned rows`);
        const hit = leak(Buffer.concat(ms.map((m) => m.raw)).toString("latin1"));
        assert.equal(hit, undefined, `${sql} leaked ${hit}`);
      }
    }
    // a masked key is hashed, so grouping by it still works: two customers, two keys
    const agg = await simple("SELECT json_object_agg(email, id) FROM customers");
    const obj = JSON.parse(shown(agg).find((s) => s.startsWith("D:"))!.slice(2));
    assert.equal(Object.keys(obj).length, 2);
    assert.ok(Object.keys(obj).every((k) => /^h:[A-Za-z0-9_-]{16}$/.test(k)), JSON.stringify(obj));
    // keys that come from no masked column stay as they are
    const kept = await simple("SELECT json_build_object('id', id, 'email', email) FROM customers WHERE id = 1");
    const o = JSON.parse(shown(kept).find((s) => s.startsWith("D:"))!.slice(2));
    assert.deepEqual(Object.keys(o), ["id", "email"]);
    assert.match(o.email, /^h:/);
  });

  await t.test("COPY TO STDOUT of JSON built from masked columns", async () => {
    for (const sql of [
      "COPY (SELECT json_object_agg(email, id) FROM customers) TO STDOUT",
      "COPY (SELECT key FROM customers, json_each(json_build_object(email, 1))) TO STDOUT",
      "COPY (SELECT row_to_json(c) FROM customers c) TO STDOUT",
    ]) {
      const ms = await simple(sql);
      const copied = ms.filter((m) => m.type === "d");
      const [e] = fieldsOf(ms, "E");
      assert.ok(copied.length > 0 || e?.C === "42501", `${sql}: masked rows or a refusal, got ${shown(ms).join(" ")}`);
      assert.equal(leak(Buffer.concat(ms.map((m) => m.raw)).toString("latin1")), undefined, sql);
    }
  });

  await t.test("statements that touch no masked column keep the server's text; classifiers still apply", async () => {
    const [e] = fieldsOf(await simple("SELECT v::int FROM plain WHERE id = 1"), "E");
    assert.equal(e!.M, 'invalid input syntax for type integer: "abc"');
    const [u] = fieldsOf(await extended("INSERT INTO plain VALUES (3, 'abc')"), "E");
    assert.equal(u!.D, "Key (v)=(abc) already exists.");
    const n = fieldsOf(await simple("DO $$ BEGIN RAISE NOTICE 'count %', (SELECT count(*) FROM plain); END $$"), "N");
    assert.equal(n[0]!.M, "count 2");
    // an email in a clean table's message is still an email: the classifier hashes it
    const [m] = fieldsOf(await simple("SELECT v::int FROM plain WHERE id = 2"), "E");
    assert.match(m!.M!, /^invalid input syntax for type integer: "h:[A-Za-z0-9_-]{16}"$/);
    // Parse only analyses: its errors quote the client's own SQL and names, and pass as they are
    const [p] = fieldsOf(await extended("SELECT emial FROM customers"), "E");
    assert.equal(p!.M, 'column "emial" does not exist');
  });

  await t.test("a setting the server reports (ParameterStatus) set from a masked value is withheld, others pass", async () => {
    const reported = (ms: RawMessage[]) => ms.filter((m) => m.type === "S").map((m) => m.raw.toString("utf8", 5, m.raw.length - 1).split("\0"));
    for (const send of [simple, extended]) {
      await simple("SET application_name = 'before'"); // the server reports a setting only when it changes
      const ms = await send("SELECT set_config('application_name', replace(email, '@', '#'), false) FROM customers WHERE id = 1");
      assert.deepEqual(reported(ms), [["application_name", ""]], ms.map((m) => m.type + ":" + m.raw.toString("latin1", 5).replace(/[^ -~]/g, ".")).join(" "));
      assert.equal(leak(Buffer.concat(ms.map((m) => m.raw)).toString("latin1")), undefined);
    }
    assert.deepEqual(reported(await simple("SET application_name = 'orders-ci'")), [["application_name", "orders-ci"]]);
    assert.deepEqual(reported(await extended("SELECT set_config('application_name', 'orders-' || v, false) FROM plain WHERE id = 1")), [["application_name", "orders-abc"]]);
    assert.deepEqual(reported(await simple("SET DateStyle = 'ISO, DMY'")), [["DateStyle", "ISO, DMY"]]);
  });

  await t.test("views of other sessions' SQL and of column statistics are admin: denied to this identity", async () => {
    await stack.direct("ANALYZE customers");
    for (const sql of [
      "SELECT query FROM pg_stat_activity",
      "SELECT pg_stat_get_activity(NULL)",
      // the statistics views sample column values: a masked column's most common values and histogram
      "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'",
      "SELECT most_common_vals::text FROM pg_catalog.pg_stats",
      "SELECT * FROM pg_stats_ext",
      "SELECT * FROM pg_stats_ext_exprs",
    ]) {
      const ms = await simple(sql);
      assert.equal(fieldsOf(ms, "E")[0]?.C, "42501", `${sql}: ${shown(ms).join(" ")}`);
    }
  });

  await t.test("pg: the error object keeps code, constraint and table; the session goes on", async () => {
    const pgc = await stack.pgClient(token);
    await assert.rejects(pgc.query("SELECT replace(email, '@', '#')::int FROM customers WHERE id = $1", [1]), (err: Error & { code?: string }) => {
      assert.equal(err.code, "22P02");
      assert.match(err.message, withheld);
      pgMessages.push(err.message);
      return true;
    });
    await assert.rejects(pgc.query("INSERT INTO copies SELECT replace(email, '@', '#') FROM customers WHERE id = 1"), (err: Error & { code?: string; constraint?: string; table?: string }) => {
      assert.deepEqual([err.code, err.constraint, err.table], ["23505", "copies_e_key", "copies"]);
      pgMessages.push(err.message);
      return true;
    });
    assert.equal((await pgc.query("SELECT count(*)::int AS n FROM customers")).rows[0].n, 2);
    await pgc.end();
  });

  c.end();
  await c.closed;
  await publisher.flush(10_000);
  const stored = await readStream(nc, names.auditStream);
  await t.test("nothing the client got and nothing on the audit stream holds a masked value, and the audit records what the client got", () => {
    const clientBytes = Buffer.concat(received.map((m) => m.raw)).toString("latin1");
    assert.equal(leak(clientBytes), undefined, "client");
    const all = stored.map((s) => s.raw).join("\n");
    assert.equal(leak(all), undefined, `audit: ${leak(all)}`);
    assert.ok(!stack.logs().includes(LOCAL), "logs");
    // the errors on the stream are the texts the client saw
    const clientMessages = new Set([...received.filter((m) => m.type === "E").map((m) => decodeErrorFields(m.raw).M), ...pgMessages]);
    const recorded = stored
      .map((s) => s.ev)
      .filter((e) => e.type === SessionEventType["statement.completed"])
      .map((e) => (e.data as StatementCompletedData).error?.message)
      .filter((m): m is string => m !== undefined && withheld.test(m));
    assert.ok(recorded.length >= 8, `withheld errors recorded (${recorded.length})`);
    for (const m of recorded) assert.ok(clientMessages.has(m), `recorded as the client saw it: ${m}`);
  });
});

/**
 * One reading of every string, against the real PostgreSQL and through the real proxy: the
 * classifier and the server agree on where each literal and each statement ends, for the
 * encodings and settings a client can select, and a client cannot select the others.
 *
 *  - generated statements (fast-check) of standard, E'', dollar-quoted and U&'' literals with
 *    UESCAPE, holding quotes, backslashes, semicolons, comment openers and non-ASCII text, joined by
 *    `;` and comments: the classifier's statement count and literal values equal what the server
 *    returns, directly and through the proxy, on a UTF8, a LATIN1 and an EUC_JP database;
 *  - the positive control: with standard_conforming_strings off the server reads some of them
 *    otherwise (that is the attack the pin prevents);
 *  - a client asking for another encoding or string syntax at connect (StartupMessage parameter,
 *    `options`, PGOPTIONS for psql) is refused 08004 and recorded as session.denied; every SET /
 *    set_config / ALTER … SET of them is denied 42501 `parser-setting` and the server still reports
 *    the pinned values; bytes that are not UTF-8 (an SJIS character whose second byte is `\`) are
 *    refused by the server (22021), never run as another statement.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import pg from "pg";
import fc from "fast-check";
import { classifySql, loadSqlParser, loadedParser } from "@sluice/shared/sql";
import type { Bundle } from "@sluice/shared/policy";
import { noopAudit, type AuditSink } from "@sluice/data-plane";
import { PG_ADMIN, randomId, startStack } from "./harness.js";
import { startProxyStack } from "./proxy-stack.js";
import { firstError, rawConnect, shown } from "../lib/raw-pg-client.js";

/** A literal and the value the server must read from it. */
interface Lit {
  sql: string;
  value: string;
}

/** Text that is confusing to a reader who gets the quoting rules wrong. */
const tricky = (alphabet: string[]) => fc.array(fc.constantFrom(...alphabet), { maxLength: 12 }).map((xs) => xs.join(""));
const ASCII_TRICKS = ["a", "Z", " ", "'", "\\", ";", "--", "/*", "*/", "$", "$$", "\n", "\"", "E'", "U&", "0"];
const LATIN1_TEXT = [...ASCII_TRICKS, "é", "ß", "ñ"];
const EUCJP_TEXT = [...ASCII_TRICKS, "表", "ソ", "能", "日本"];
const UTF8_TEXT = [...LATIN1_TEXT, "表", "ソ", "😀", "Ω"];

function standardLit(v: string): Lit {
  return { sql: `'${v.replace(/'/g, "''")}'`, value: v };
}
function escapeLit(v: string, quoteStyle: boolean): Lit {
  const body = [...v]
    .map((ch) => (ch === "\\" ? "\\\\" : ch === "'" ? (quoteStyle ? "\\'" : "''") : ch === "\n" ? "\\n" : ch))
    .join("");
  return { sql: `E'${body}'`, value: v };
}
function dollarLit(v: string, tag: string): Lit {
  const t = `$${tag}$`;
  // the first closing delimiter the lexer meets must be ours
  const whole = `${t}${v}${t}`;
  return whole.indexOf(t, t.length) !== t.length + v.length ? standardLit(v) : { sql: whole, value: v };
}
/** U&'…' with `\XXXX` escapes (or `!XXXX` with UESCAPE '!') for every non-letter. */
function unicodeLit(v: string, bang: boolean): Lit {
  const esc = bang ? "!" : "\\";
  const body = [...v]
    .map((ch) => {
      if (/[A-Za-z ]/.test(ch)) return ch;
      const cp = ch.codePointAt(0)!;
      return cp > 0xffff ? `${esc}+${cp.toString(16).padStart(6, "0")}` : `${esc}${cp.toString(16).padStart(4, "0")}`;
    })
    .join("");
  return { sql: `U&'${body}'${bang ? " UESCAPE '!'" : ""}`, value: v };
}

const literal = (alphabet: string[]) =>
  fc.oneof(
    tricky(alphabet).map(standardLit),
    fc.tuple(tricky(alphabet), fc.boolean()).map(([v, q]) => escapeLit(v, q)),
    fc.tuple(tricky(alphabet), fc.constantFrom("", "q", "x_1")).map(([v, t]) => dollarLit(v, t)),
    fc.tuple(tricky(alphabet), fc.boolean()).map(([v, b]) => unicodeLit(v, b)),
  );
/** What may stand between two statements: the separator and comments holding quotes and semicolons. */
const gap = fc.constantFrom(";", "; ", ";\n-- it's ; $$ \n", "; /* ' ; /* nested ; */ $$ */ ", ";;", "/* ; */;");

/** One message: statements `SELECT lit, lit …`, and the values each must return. */
const message = (alphabet: string[]) =>
  fc.array(fc.tuple(fc.array(literal(alphabet), { minLength: 1, maxLength: 3 }), gap), { minLength: 1, maxLength: 4 }).map((stmts) => ({
    sql: stmts.map(([lits, g], i) => `SELECT ${lits.map((l) => l.sql).join(", ")}${i < stmts.length - 1 ? g : ""}`).join(""),
    rows: stmts.map(([lits]) => lits.map((l) => l.value)),
  }));

/** What the classifier reads: the statements and, per statement, the string constants of its target list. */
function classifierReading(sql: string): string[][] | string {
  const c = classifySql(sql);
  if (!c.ok) return `denied: ${c.error}`;
  const tree = loadedParser()!.parse(sql);
  return (tree.stmts ?? []).map((s: any) => (s.stmt.SelectStmt?.targetList ?? []).map((t: any) => t.ResTarget.val.A_Const?.sval?.sval ?? "?"));
}

/** What the server returns for a simple-protocol message: one row of text values per statement. */
async function serverReading(c: pg.Client, sql: string): Promise<string[][] | string> {
  try {
    const r = await c.query({ text: sql, rowMode: "array" } as pg.QueryConfig);
    const results = Array.isArray(r) ? r : [r];
    return results.map((x: pg.QueryResult) => (x.rows[0] as unknown[]).map(String));
  } catch (e) {
    return `error: ${(e as { code?: string }).code} ${(e as Error).message}`;
  }
}

async function createDatabase(name: string, encoding: string): Promise<void> {
  const admin = new pg.Client({ ...PG_ADMIN, database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
  } finally {
    await admin.end();
  }
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ ...PG_ADMIN, database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

function runPsql(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

test("the classifier and the server read every string and statement alike; no client can make them differ", { timeout: 300_000 }, async (t) => {
  await loadSqlParser();
  const id = randomId();
  const latin1 = `sluice_t_${id}_latin1`;
  const eucjp = `sluice_t_${id}_eucjp`;
  await createDatabase(latin1, "LATIN1");
  await createDatabase(eucjp, "EUC_JP");
  t.after(() => Promise.all([dropDatabase(latin1), dropDatabase(eucjp)]));
  const upstream = (database: string) => ({ host: PG_ADMIN.host, port: PG_ADMIN.port, database, user: PG_ADMIN.user, auth: "trust" as const, tls: "disable" as const });
  const policy: Bundle = {
    issuers: [],
    resources: [
      { name: "latin1", upstream: upstream(latin1) },
      { name: "eucjp", upstream: upstream(eucjp) },
    ],
    policies: [
      { name: "readers", groups: ["reader"], resources: ["*"], allow: ["read", "utility"] },
      { name: "dba", groups: ["dba"], resources: ["*"], allow: ["read", "write", "ddl", "admin", "utility", "copy"] },
      { name: "guarded", groups: ["guarded"], resources: ["*"], allow: ["read"], tables: { deny: ["vault.*"] } },
    ],
    masking: [],
  };
  const stack = await startStack(t, { policy, setupSql: "CREATE TABLE victim (id int); INSERT INTO victim VALUES (1); CREATE SCHEMA vault; CREATE TABLE vault.keys (k text)" });

  await t.test("generated literals and statement boundaries: classifier = server = proxy, on UTF8, LATIN1 and EUC_JP databases", async () => {
    const cases: Array<{ resource: string; database: string; alphabet: string[] }> = [
      { resource: stack.resource, database: stack.database, alphabet: UTF8_TEXT },
      { resource: "latin1", database: latin1, alphabet: LATIN1_TEXT },
      { resource: "eucjp", database: eucjp, alphabet: EUCJP_TEXT },
    ];
    for (const { resource, database, alphabet } of cases) {
      // the server's reading with the settings every sluice session is started with
      const direct = new pg.Client({ ...PG_ADMIN, database, client_encoding: "UTF8" });
      await direct.connect();
      const proxied = await stack.connect({ sub: `reader-${resource}`, groups: ["reader"], database: resource });
      try {
        const params = await direct.query("SHOW server_encoding");
        assert.ok(["UTF8", "LATIN1", "EUC_JP"].includes(params.rows[0].server_encoding));
        await fc.assert(
          fc.asyncProperty(message(alphabet), async (m) => {
            assert.deepEqual(classifierReading(m.sql), m.rows, `classifier: ${m.sql}`);
            assert.deepEqual(await serverReading(direct, m.sql), m.rows, `server: ${m.sql}`);
            assert.deepEqual(await serverReading(proxied, m.sql), m.rows, `through sluice: ${m.sql}`);
          }),
          { numRuns: 120, seed: 11 },
        );
      } finally {
        await direct.end();
      }
    }
  });

  await t.test("positive control: with standard_conforming_strings off the server reads such text otherwise", async () => {
    const direct = new pg.Client({ ...PG_ADMIN, database: stack.database });
    await direct.connect();
    try {
      const attack = "SELECT '\\'; SELECT 2; --'";
      assert.deepEqual(classifierReading(attack), [["\\"], ["?"]]);
      assert.deepEqual(await serverReading(direct, attack), [["\\"], ["2"]]);
      await direct.query("SET standard_conforming_strings = off");
      assert.deepEqual(await serverReading(direct, attack), [["'; SELECT 2; --"]], "one literal to the server, two statements to a reader that assumes on");
      // and some generated messages differ too: the property above is not vacuous
      let differ = 0;
      await fc.assert(
        fc.asyncProperty(message(ASCII_TRICKS), async (m) => {
          if (JSON.stringify(await serverReading(direct, m.sql)) !== JSON.stringify(m.rows)) differ++;
        }),
        { numRuns: 120, seed: 11 },
      );
      assert.ok(differ > 10, `${differ} of 120 generated messages read otherwise with standard_conforming_strings off`);
    } finally {
      await direct.end();
    }
  });

  await t.test("every session starts with the pinned reading, whatever the database's own encoding", async () => {
    for (const database of [stack.resource, "latin1", "eucjp"]) {
      const c = await stack.connect({ sub: "reader-show", groups: ["reader"], database });
      const text = database === "latin1" ? "é" : "é表";
      const r = await c.query(`SELECT current_setting('client_encoding') AS ce, current_setting('standard_conforming_strings') AS scs, current_setting('backslash_quote') AS bq, '${text}'::text AS s`);
      assert.deepEqual(r.rows[0], { ce: "UTF8", scs: "on", bq: "safe_encoding", s: text }, database);
      await c.end();
    }
    // a LATIN1 database converts UTF-8 both ways: a non-ASCII literal comes back as it was sent
    const g = await stack.connect({ sub: "reader-latin1", groups: ["reader"], database: "latin1" });
    assert.deepEqual((await g.query("SELECT 'ü' AS u, length('ü') AS n")).rows, [{ u: "ü", n: 1 }]);
  });

  await t.test("SET, set_config and ALTER … SET of a pinned setting are denied, and the server keeps the pinned values", async () => {
    const dba = await stack.connect({ sub: "dba", groups: ["dba"] });
    const attempts = [
      ...["SJIS", "BIG5", "GBK", "GB18030", "UHC", "LATIN1", "EUC_JP", "SQL_ASCII"].map((e) => `SET client_encoding = '${e}'`),
      "SET NAMES 'SJIS'",
      "SET standard_conforming_strings = off",
      "SET LOCAL standard_conforming_strings = off",
      "SET backslash_quote = on",
      "SET escape_string_warning = off",
      "SELECT set_config('standard_conforming_strings', 'off', false)",
      "SELECT set_config('client_encoding', 'BIG5', false)",
      "SELECT set_config(lower('CLIENT_ENCODING'), 'GBK', false)",
      "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
      "ALTER ROLE postgres SET standard_conforming_strings = off",
      `ALTER DATABASE ${stack.database} SET client_encoding = 'SJIS'`,
      "CREATE FUNCTION sjis_fn() RETURNS int LANGUAGE sql SET client_encoding = 'SJIS' AS 'select 1'",
      "DO $$ BEGIN SET standard_conforming_strings = off; END $$",
      "SELECT 1; SET standard_conforming_strings = off",
    ];
    for (const sql of attempts) {
      await assert.rejects(dba.query(sql), (e: { code?: string; message?: string }) => e.code === "42501" && /rule "parser-setting"/.test(e.message ?? ""), sql);
    }
    const r = await dba.query("SELECT current_setting('client_encoding') AS ce, current_setting('standard_conforming_strings') AS scs, current_setting('backslash_quote') AS bq, current_setting('escape_string_warning') AS esw");
    assert.deepEqual(r.rows[0], { ce: "UTF8", scs: "on", bq: "safe_encoding", esw: "on" });
    // the pinned values themselves, and RESET to them, are fine
    await dba.query("SET client_encoding = 'UTF8'");
    await dba.query("RESET standard_conforming_strings");
    await dba.query("DISCARD ALL");
    const direct = (await stack.pgAdmin.query("SELECT (SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database())::int AS db, (SELECT count(*) FROM pg_proc WHERE proname = 'sjis_fn')::int AS fn")).rows[0];
    assert.deepEqual(direct, { db: 0, fn: 0 }, "nothing denied reached the server");
  });

  await t.test("bytes that are not UTF-8 never run as another statement: an SJIS character ending in a backslash", async () => {
    const c = await rawConnect({ port: stack.port, database: stack.resource, user: "dba", password: await stack.token({ sub: "dba-raw", groups: ["dba"] }), tls: true });
    // 表 in SJIS is 0x95 0x5c: a UTF-8 reader sees an invalid byte and a backslash
    const sql = Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x95, 0x5c]), Buffer.from("'; DROP TABLE victim; --'")]);
    const body = Buffer.concat([sql, Buffer.from([0])]);
    const frame = Buffer.concat([Buffer.from("Q"), Buffer.alloc(4), body]);
    frame.writeInt32BE(body.length + 4, 1);
    c.send(frame);
    const answer = await c.untilReady();
    assert.equal(firstError(answer)?.C, "22021", shown(answer).join(" "));
    c.end();
    assert.deepEqual((await stack.pgAdmin.query("SELECT count(*)::int AS n FROM victim")).rows, [{ n: 1 }]);
  });

  await t.test("psql with PGOPTIONS or PGCLIENTENCODING asking for another reading is refused at connect", async () => {
    const envs: Array<Record<string, string>> = [{ PGOPTIONS: "-c standard_conforming_strings=off" }, { PGCLIENTENCODING: "SJIS" }, { PGOPTIONS: "-c backslash_quote=on" }];
    for (const env of envs) {
      const r = await runPsql([await stack.connectionString({ sub: "psql", groups: ["reader"] }), "-X", "-c", "SELECT 1"], env);
      assert.equal(r.code, 2, JSON.stringify(env));
      assert.match(r.stderr, /is not allowed through sluice: it reads SQL as the server does only with client_encoding=UTF8/, JSON.stringify(env));
    }
    const ok = await runPsql([await stack.connectionString({ sub: "psql", groups: ["reader"] }), "-X", "-At", "-c", "SHOW client_encoding"], { PGCLIENTENCODING: "UTF8" });
    assert.equal(ok.stdout.trim(), "UTF8");
  });

  await t.test("a startup search_path is refused where table patterns apply", async () => {
    const cfg = await stack.clientConfig({ sub: "guarded", groups: ["guarded"] });
    const c = new pg.Client({ ...cfg, options: "-c search_path=vault" });
    await assert.rejects(c.connect(), (e: { code?: string; message?: string }) => e.code === "42501" && /search_path/.test(e.message ?? ""));
    const r = await stack.connect({ sub: "reader", groups: ["reader"] });
    assert.ok(r, "an identity without table patterns may still choose one");
  });
});

test("a refused startup setting is a FATAL 08004 recorded as session.denied", { timeout: 60_000 }, async (t) => {
  const denied: Array<{ sqlstate: string; reason: string }> = [];
  const audit: AuditSink = { ...noopAudit, sessionDenied: (_c, d) => void denied.push({ sqlstate: d.sqlstate, reason: d.reason }) };
  const s = await startProxyStack(t, { dp: { audit } });
  const raw = async (params: Record<string, string>) => rawConnect({ port: s.dp.port, database: "app", user: "ci", password: await s.token(), tls: true, params });
  // raw StartupMessage parameters (node-postgres never sends client_encoding) and `options` through pg
  const refused: Array<Record<string, string>> = [{ client_encoding: "SJIS" }, { client_encoding: "BIG5" }, { standard_conforming_strings: "off" }];
  for (const params of refused) {
    await assert.rejects(raw(params), /connection refused: E:08004 startup setting .* is not allowed through sluice/, JSON.stringify(params));
  }
  const c = new pg.Client({ ...s.pgConfig(await s.token()), options: "-c standard_conforming_strings=off" });
  c.on("error", () => undefined);
  await assert.rejects(c.connect(), (e: { code?: string; severity?: string }) => e.code === "08004" && e.severity === "FATAL");
  assert.deepEqual(denied.map((d) => d.sqlstate), ["08004", "08004", "08004", "08004"]);
  for (const d of denied) assert.match(d.reason, /is not allowed through sluice: it reads SQL as the server does only with/);
  // SQL_ASCII ("pass the bytes") is taken as UTF-8, and the client is told so
  const ascii = await raw({ client_encoding: "SQL_ASCII" });
  assert.equal(ascii.parameters.client_encoding, "UTF8");
  assert.equal(ascii.parameters.standard_conforming_strings, "on");
  ascii.end();
});

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { createPgCatalog, type PgCatalog } from "./pg-catalog.js";
import { createResultMasker } from "../masking/result-masker.js";
import { decodeDataRow } from "../wire/decode.js";
import { encodeDataRow } from "../wire/encode.js";
import type { MaskPlanData } from "../masking/mask-rules.js";
import type { RowField, ResultContext } from "../session/session-hooks.js";

const PG = { host: "127.0.0.1", port: 5432, user: "postgres" };
const db = `t_mask_cat_${randomBytes(5).toString("hex")}`;
const fixture = readFileSync(new URL("../../../test/fixtures/pii/customers.sql", import.meta.url), "utf8");
let admin: pg.Client;
let client: pg.Client;
let catalog: PgCatalog;
let connects = 0;

before(async () => {
  admin = new pg.Client({ ...PG, database: "postgres" });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  client = new pg.Client({ ...PG, database: db });
  await client.connect();
  await client.query(fixture);
  catalog = createPgCatalog({
    connect: async () => {
      connects++;
      const c = new pg.Client({ ...PG, database: db });
      await c.connect();
      return c;
    },
  });
});

after(async () => {
  await catalog?.close();
  await client?.end();
  await admin?.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin?.end();
});

function rowFields(fields: pg.FieldDef[], format = 0): RowField[] {
  return fields.map((f) => ({ name: f.name, tableOid: f.tableID, columnAttr: f.columnID, typeOid: f.dataTypeID, typeSize: f.dataTypeSize, typeMod: f.dataTypeModifier, format }));
}

test("RowDescription table OID + attnum resolve to schema.table.column, views to their base columns, cached", async () => {
  const r = await client.query("SELECT c.email AS e, v.contact, cc.mail, 1 AS one FROM customers c, customer_view v, customer_contacts cc LIMIT 0");
  const o = await catalog.resolveFields(db, rowFields(r.fields));
  assert.deepEqual(o[0]!.origins, [{ schema: "public", table: "customers", column: "email" }]);
  assert.deepEqual(o[1]!.origins, [{ schema: "public", table: "customer_view", column: "contact" }]);
  assert.ok(o[1]!.uses!.some((u) => u.col.table === "customers" && u.col.column === "email"), JSON.stringify(o[1]));
  assert.ok(o[2]!.uses!.some((u) => u.col.table === "customers" && u.col.column === "email"));
  assert.deepEqual(o[3], { origins: [], unknown: false });
  const before = connects;
  await catalog.resolveFields(db, rowFields(r.fields));
  assert.equal(connects, before, "one side connection, reused");
  assert.deepEqual((await catalog.tableColumns(db, undefined, "orders"))!.map((c) => c.column), ["id", "customer_id", "total"]);
  assert.equal(await catalog.tableColumns(db, undefined, "nope"), null);
});

test("a ResultMasker over the real catalog masks the table, a view, an expression and JSON; other resources stay raw", async () => {
  const masker = createResultMasker({
    masking: () => ({
      revision: 1,
      specs: [
        { name: "pii", resources: [db], columns: ["customers.email", "customers.card_number"], classifiers: ["email", "us-ssn"], strategy: "partial" },
      ],
    }),
    catalog,
    hashKey: Buffer.from("k"),
  });
  const session = { resource: db } as ResultContext["session"];
  const run = async (sql: string) => {
    const r = await client.query({ text: sql, rowMode: "array" });
    const plan = (await masker.planFor(rowFields(r.fields), { session, sql, statements: [] })) as MaskPlanData | null;
    return r.rows.map((row: unknown[]) => {
      const frame = encodeDataRow(row.map((v) => (v === null ? null : Buffer.from(typeof v === "object" ? JSON.stringify(v) : String(v)))));
      return decodeDataRow(plan ? masker.maskDataRow(plan, frame) : frame).map((b) => b?.toString() ?? null);
    });
  };
  assert.deepEqual(await run("SELECT id, email, card_number FROM customers WHERE id = 1"), [["1", "a****@example.com", "4111 11** **** 1111"]]);
  assert.deepEqual(await run("SELECT contact, card_number FROM customer_view WHERE id = 2"), [["b**@corp.io", "5500-00**-****-0004"]]);
  assert.deepEqual(await run("SELECT mail FROM customer_contacts WHERE id = 1"), [["a****@example.com"]]);
  assert.deepEqual(await run("SELECT upper(c.email) || '!' FROM customers c WHERE id = 1"), [["A****@EXAMPLE.COM!"]]);
  assert.deepEqual(await run("SELECT ssn, notes FROM customers WHERE id = 1"), [["***-**-6789", "prefers email a****@example.com"]]);
  const [[j]] = (await run("SELECT json_build_object('e', email, 'n', name) FROM customers WHERE id = 1")) as string[][];
  assert.deepEqual(JSON.parse(j!), { e: "a****@example.com", n: "Alice" });
  const [[rj]] = (await run("SELECT row_to_json(c) FROM customers c WHERE id = 2")) as string[][];
  const parsed = JSON.parse(rj!);
  assert.equal(parsed.email, "b**@corp.io");
  assert.equal(parsed.card_number, "5500-00**-****-0004");
  assert.equal(parsed.name, "Bob");
  assert.deepEqual(await run("SELECT email FROM customers WHERE id = 3"), [[null]]);
  assert.equal(masker.planFor(rowFields((await client.query("SELECT 1")).fields), { session: { resource: "other" } as any, sql: "SELECT 1", statements: [] }), null);
  // COPY of the whole table: its columns come from the catalog
  const copyPlan = await masker.planForCopyOut({ session, sql: "COPY customers TO STDOUT", statements: [] });
  assert.ok(copyPlan && copyPlan !== "deny");
  assert.equal(await masker.planForCopyOut({ session, sql: "COPY customers TO STDOUT (FORMAT csv)", statements: [] }), "deny");
  // the text format's own delimiter and NULL string spelled out (PHP's pg_copy_to): still text
  const spelled = await masker.planForCopyOut({ session, sql: "COPY customers TO STDOUT DELIMITER E'\\t' NULL AS E'\\\\N'", statements: [] });
  assert.ok(spelled && spelled !== "deny");
  assert.equal(await masker.planForCopyOut({ session, sql: "COPY customers TO STDOUT DELIMITER ','", statements: [] }), "deny");
  assert.equal(await masker.planForCopyOut({ session, sql: "COPY customers TO STDOUT NULL AS ''", statements: [] }), "deny");
  assert.equal(await masker.planForCopyOut({ session, sql: "COPY (SELECT * FROM generate_series(1, 3) g) TO STDOUT", statements: [] }), "deny");
  // the same, asked before the statement runs: the reason the session refuses it with (a statement error)
  assert.match((await masker.refusal({ session, sql: "COPY customers TO STDOUT (FORMAT csv)", statements: [] }))!, /not allowed in csv format/);
  assert.match((await masker.refusal({ session, sql: "COPY (SELECT email FROM customers) TO STDOUT WITH (DELIMITER ';')", statements: [] }))!, /own delimiter/);
  assert.match((await masker.refusal({ session, sql: "COPY (SELECT * FROM generate_series(1, 3) g) TO STDOUT", statements: [] }))!, /cannot tell which columns/);
  assert.match((await masker.refusal({ session, sql: "DECLARE c BINARY CURSOR FOR SELECT 1", statements: [] }))!, /BINARY cursor/);
  assert.equal(await masker.refusal({ session, sql: "COPY customers TO STDOUT", statements: [] }), undefined);
  assert.equal(await masker.refusal({ session, sql: "DECLARE c CURSOR FOR SELECT email FROM customers", statements: [] }), undefined);
  assert.equal(masker.refusal({ session: { resource: "other" } as any, sql: "COPY customers TO STDOUT (FORMAT csv)", statements: [] }), undefined, "no masking rules: nothing to refuse");
  // COPY has no column types: with classifiers configured every column of it is scanned, none masked whole
  const orders = await masker.planForCopyOut({ session, sql: "COPY orders TO STDOUT", statements: [] });
  assert.ok(orders && orders !== "deny");
  assert.deepEqual(new Set(masker.describe(orders).map((m) => m.mode)), new Set(["scan"]));
  // events name rule, column and classifiers, never a value
  const r = await client.query({ text: "SELECT email, notes FROM customers", rowMode: "array" });
  const plan = await masker.planFor(rowFields(r.fields), { session, sql: "SELECT email, notes FROM customers", statements: [] });
  assert.deepEqual(masker.describe(plan!), [
    { index: 0, column: "public.customers.email", rule: "pii", mode: "whole", strategy: "partial" },
    { index: 1, column: "public.customers.notes", rule: "pii", mode: "scan", classifiers: ["email", "us-ssn"] },
  ]);
  // the same statement and result shape again: the cached plan comes back synchronously
  const again = masker.planFor(rowFields(r.fields), { session, sql: "SELECT email, notes FROM customers", statements: [] });
  assert.ok(again && !(again instanceof Promise));
  catalog.invalidate(db);
  const replanned = masker.planFor(rowFields(r.fields), { session, sql: "SELECT email, notes FROM customers", statements: [] });
  assert.ok(replanned instanceof Promise, "DDL: planned again");
  assert.deepEqual(masker.describe((await replanned)!), masker.describe(plan!));
  assert.equal(masker.maskLooseText(db, "param alice@example.com and 123-45-6789"), "param a****@example.com and ***-**-6789");
  assert.equal(masker.maskLooseText("other", "alice@example.com"), "alice@example.com");
});

test("exposure facts from the real catalog: user code behind triggers, defaults, domains, operators, views and cascades is found", async () => {
  await client.query(`
    CREATE TABLE x_parent (id int PRIMARY KEY);
    CREATE TABLE x_child (id int REFERENCES x_parent ON DELETE CASCADE, email text);
    CREATE TABLE x_plain (id int REFERENCES x_parent);
    CREATE FUNCTION x_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE FUNCTION x_trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    CREATE TABLE x_trigd (id int);
    CREATE TRIGGER x_t BEFORE INSERT ON x_trigd FOR EACH ROW EXECUTE FUNCTION x_trig();
    CREATE TABLE x_default (id int DEFAULT x_fn());
    CREATE DOMAIN x_dom AS int CHECK (VALUE > x_fn());
    CREATE TABLE x_domcol (v x_dom);
    CREATE VIEW x_fnview AS SELECT x_fn() AS v;
    CREATE VIEW x_custview AS SELECT id, email FROM customers;
    CREATE FUNCTION x_op(int, int) RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE OPERATOR %%% (LEFTARG = int, RIGHTARG = int, FUNCTION = x_op);
    CREATE TABLE x_rls (id int); ALTER TABLE x_rls ENABLE ROW LEVEL SECURITY;
  `);
  catalog.invalidate("db");
  const f = await catalog.exposureFacts!("db");
  const r = (name: string) => f.relations.find((x) => x.name === name && x.schema === "public")!;
  assert.equal(r("x_trigd").writeCode, true, "a user trigger");
  assert.equal(r("x_default").writeCode, true, "a default calling a user function");
  assert.equal(r("x_domcol").writeCode, true, "a column of a domain whose check calls one");
  assert.equal(r("x_plain").writeCode, false, "a foreign key's own triggers are the server's");
  assert.equal(r("x_fnview").readCode, true);
  assert.equal(r("x_rls").readCode, true);
  assert.equal(r("x_custview").kind, "v");
  assert.deepEqual(r("x_custview").reads, [r("customers").oid]);
  assert.ok(r("x_parent").writes.includes(r("x_child").oid), "a cascading foreign key");
  assert.ok(!r("x_parent").writes.includes(r("x_plain").oid), "a plain one only checks");
  assert.deepEqual(r("x_child").columns.map((c) => c[0]), ["id", "email"]);
  assert.equal(f.functions.get("x_fn"), true);
  assert.equal(f.functions.get("public.x_fn"), true);
  assert.equal(f.functions.get("lower"), false);
  assert.equal(f.functions.get("pg_catalog.count"), false);
  assert.ok(f.userOperators.has("%%%"));
  assert.ok(f.userCastTypes.has("x_dom"));
  assert.equal(f.implicitUserCast, false);
  // cached until invalidated
  assert.equal(await catalog.exposureFacts!("db"), f);
  catalog.invalidate("db");
  assert.notEqual(await catalog.exposureFacts!("db"), f);
});

test("functionFacts: user functions by volatility (aggregates by their support functions), volatile operators, relations that run volatile code", async () => {
  await client.query(`
    CREATE FUNCTION ff_purge() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 0; END $$;
    CREATE FUNCTION ff_stable() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
    CREATE SCHEMA ff;
    CREATE FUNCTION ff.ff_stable() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
    CREATE FUNCTION ff_step(int, int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 0; END $$;
    CREATE AGGREGATE ff_agg(int) (SFUNC = ff_step, STYPE = int);
    CREATE FUNCTION ff_istep(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 0';
    CREATE AGGREGATE ff_iagg(int) (SFUNC = ff_istep, STYPE = int);
    CREATE FUNCTION ff_opf(int, int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN RETURN true; END $$;
    CREATE OPERATOR ##> (LEFTARG = int, RIGHTARG = int, FUNCTION = ff_opf);
    CREATE VIEW ff_view AS SELECT ff_purge() AS p;
    CREATE VIEW ff_view2 AS SELECT * FROM ff_view;
    CREATE VIEW ff_opview AS SELECT 1 ##> 2 AS b;
    CREATE FUNCTION ff_only_stable() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
    CREATE VIEW ff_quiet AS SELECT ff_only_stable() AS s;
    CREATE TABLE ff_rls (id int); ALTER TABLE ff_rls ENABLE ROW LEVEL SECURITY;
    CREATE POLICY ff_p ON ff_rls USING (ff_opf(id, id));
    CREATE FUNCTION ff_wrap() RETURNS int LANGUAGE sql STABLE AS 'SELECT ff_purge()';
    CREATE FUNCTION ff_atomic() RETURNS int LANGUAGE sql STABLE BEGIN ATOMIC SELECT ff_wrap(); END;
    CREATE SEQUENCE ff_s;
    CREATE VIEW ff_seqview AS SELECT nextval('ff_s') AS n;
  `);
  catalog.invalidate("db");
  assert.equal(catalog.functionFactsNow("db"), undefined, "nothing read yet");
  const f = await catalog.functionFacts("db");
  assert.equal(catalog.functionFactsNow("db"), f, "then at hand");
  assert.equal(f.user.get("ff_purge"), true);
  assert.equal(f.user.get("public.ff_stable"), false);
  assert.equal(f.user.get("ff.ff_stable"), true);
  assert.equal(f.user.get("ff_stable"), true, "unqualified: one of that name is volatile");
  assert.equal(f.user.get("ff_agg"), true, "an aggregate with a volatile transition function");
  assert.equal(f.user.get("ff_iagg"), false);
  assert.equal(f.user.get("ff_wrap"), true, "a STABLE function whose body calls a volatile one");
  assert.equal(f.user.get("ff_atomic"), true, "… through another, in a BEGIN ATOMIC body");
  assert.ok(f.builtins.has("count") && f.builtins.has("nextval") && !f.builtins.has("ff_purge"));
  assert.ok(f.volatileOperators.has("##>") && f.volatileOperators.has("public.##>"));
  for (const v of ["ff_view", "public.ff_view2", "ff_opview", "ff_rls", "ff_seqview"]) assert.ok(f.volatileReads.has(v), v);
  assert.ok(!f.volatileReads.has("ff_quiet"), "a view calling only a stable function (whose name no volatile one has)");
  assert.equal(f.user.get("ff_only_stable"), false);
  // one read serves concurrent callers; a DDL invalidation forgets it
  assert.equal(await catalog.functionFacts("db"), f);
  catalog.invalidate("db");
  assert.equal(catalog.functionFactsNow("db"), undefined);
  const [a, b] = await Promise.all([catalog.functionFacts("db"), catalog.functionFacts("db")]);
  assert.equal(a, b);
  assert.notEqual(a, f);
  // forced re-read when older than asked
  await new Promise((r) => setTimeout(r, 5));
  assert.notEqual(await catalog.functionFacts("db", 1), a);
});

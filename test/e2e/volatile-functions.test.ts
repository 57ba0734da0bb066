/**
 * Issue 11, "functions with side effects called from a read are not read", as an attacker with a
 * read-only token would try it through the proxy against a real Postgres: a volatile PL/pgSQL
 * function that deletes rows, called from a SELECT in every way a client can (plain, qualified,
 * in FROM, in a CTE, through a view, a view on that view, a row security policy, an operator, a
 * user aggregate, PREPARE/EXECUTE, the extended protocol, a DO block, a function created after the
 * catalog was read), and through coercions (a user cast, a domain CHECK). Each is denied with 42501
 * and the rows stay; a STABLE function stays a read;
 * an identity that may write runs it, recorded as a write.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import type { Bundle } from "@sluice/shared/policy";
import type { AuditSink, StatementRecord } from "@sluice/data-plane";
import { noopAudit } from "@sluice/data-plane";
import { startProxyStack } from "./proxy-stack.js";

const policies = (b: Bundle): Bundle => ({
  ...b,
  policies: [
    { name: "ro", groups: ["ro"], resources: ["app"], allow: ["read"] },
    { name: "rw", groups: ["rw"], resources: ["app"], allow: ["read", "write"] },
  ],
});

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
CREATE FUNCTION purge() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 0; END $$;
CREATE FUNCTION purge_rows() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN; END $$;
CREATE FUNCTION item_count() RETURNS int LANGUAGE sql STABLE AS $$ SELECT count(*)::int FROM items $$;
CREATE FUNCTION sneaky_stable() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;
CREATE FUNCTION stable_wrapper() RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN purge(); END $$;
CREATE FUNCTION stable_sql_wrapper() RETURNS int LANGUAGE sql STABLE AS $$ SELECT stable_wrapper() $$;
CREATE SEQUENCE s;
CREATE VIEW numbered AS SELECT nextval('s') AS n;
CREATE VIEW purging AS SELECT purge() AS p;
CREATE VIEW purging_too AS SELECT * FROM purging;
CREATE FUNCTION purge_op(int, int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN true; END $$;
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_op);
CREATE FUNCTION purge_step(int, int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 0; END $$;
CREATE AGGREGATE purge_agg(int) (SFUNC = purge_step, STYPE = int, INITCOND = '0');
CREATE TABLE guarded (id int);
INSERT INTO guarded VALUES (1);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON guarded USING (purge_op(id, id));
`;

test("a read-only identity cannot run a volatile function that deletes rows, whichever way it calls it", { timeout: 120_000 }, async (t) => {
  const recorded: StatementRecord[] = [];
  const audit: AuditSink = { ...noopAudit, statementAllowed: (_s, r) => void recorded.push(r) };
  const s = await startProxyStack(t, { dp: { enforcer: undefined, audit }, bundle: policies });
  await s.direct(SCHEMA);
  const count = async () => (await s.direct("SELECT count(*)::int AS n FROM items")).rows[0].n as number;
  const ro = await s.pgClient(await s.token({ sub: "reader", groups: ["ro"] }));

  const denied = async (q: string | pg.QueryConfig) => {
    try {
      await assert.rejects(ro.query(q as string), (e: pg.DatabaseError) => {
        assert.equal(e.code, "42501", `${JSON.stringify(q)}: ${e.message}`);
        return true;
      });
    } finally {
      const n = await count();
      // what got through is put back, so the next attempt is judged on its own
      if (n !== 5) await s.direct("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING");
      assert.equal(n, 5, `${JSON.stringify(q)} deleted nothing`);
    }
  };

  await t.test("called from a SELECT, in any position", async () => {
    await denied("SELECT purge()");
    await denied("SELECT public.purge()");
    await denied('SELECT "purge"()');
    await denied("SELECT * FROM purge_rows()");
    await denied("SELECT id FROM items WHERE purge() = 0");
    await denied("WITH x AS (SELECT purge()) SELECT * FROM x");
    await denied("SELECT (SELECT purge()) AS p");
    await denied("SELECT 1; SELECT purge()");
    await denied("COPY (SELECT purge()) TO STDOUT");
  });

  await t.test("a STABLE function is not taken at its word: one whose body calls a volatile one may write (Postgres lets it)", async () => {
    await denied("SELECT stable_wrapper()");
    await denied("SELECT stable_sql_wrapper()");
    await assert.rejects(ro.query("SELECT * FROM numbered"), { code: "42501" }, "a view whose definition advances a sequence");
  });

  await t.test("the denial names the function", async () => {
    await assert.rejects(ro.query("SELECT purge()"), /purge\(\), a function pg_proc marks volatile/);
  });

  await t.test("through code that runs on a read: a view, a view on it, an operator, an aggregate, a row security policy", async () => {
    await denied("SELECT * FROM purging");
    await denied("SELECT * FROM purging_too");
    await denied("SELECT 1 === 1");
    await denied("SELECT purge_agg(id) FROM items");
    await denied("SELECT * FROM guarded");
  });

  await t.test("prepared, extended, or inside a DO block", async () => {
    await denied("PREPARE p AS SELECT purge()");
    await denied({ text: "SELECT purge() WHERE $1::int = 1", values: [1] } as pg.QueryConfig);
    await denied("DO $$ BEGIN PERFORM purge(); END $$");
    await denied("EXPLAIN ANALYZE SELECT purge()");
  });

  await t.test("a function created after the catalog was read is looked up before it could pass", async () => {
    await s.direct("CREATE FUNCTION purge_later() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 0; END $$");
    await denied("SELECT purge_later()");
  });

  await t.test("an unknown function is not a read either", async () => {
    await denied("SELECT no_such_function_anywhere()");
  });

  await t.test("stable and immutable functions, and built-ins, stay reads", async () => {
    assert.equal((await ro.query("SELECT item_count() AS n")).rows[0].n, 5);
    assert.equal((await ro.query("SELECT sneaky_stable() AS n")).rows[0].n, 1);
    assert.equal((await ro.query("SELECT count(*)::int AS n, max(lower(name)) AS m, now() IS NOT NULL AS t FROM items")).rows[0].n, 5);
  });

  await t.test("an identity that may write runs it, and it is recorded as a write", async () => {
    const rw = await s.pgClient(await s.token({ sub: "writer", groups: ["rw"] }));
    await rw.query("SELECT purge()");
    assert.equal(await count(), 0);
    const rec = recorded.find((r) => r.sql === "SELECT purge()");
    assert.ok(rec, "the statement was recorded");
    assert.equal(rec.decision.statements[0]!.class, "write");
    assert.match(rec.decision.reason, /purge\(\)/);
  });
});

const COERCIONS = `
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
CREATE FUNCTION purge_text(x text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN true; END $$;
CREATE DOMAIN purging_text AS text CHECK (purge_text(VALUE));
CREATE DOMAIN purging_too AS purging_text;
CREATE DOMAIN honest_text AS text CHECK (length(VALUE) < 100);
CREATE TYPE pair AS (a int);
CREATE FUNCTION purge_pair(x int) RETURNS pair LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN ROW(x)::pair; END $$;
CREATE CAST (int AS pair) WITH FUNCTION purge_pair(int);
CREATE FUNCTION takes_checked(x purging_text) RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
CREATE FUNCTION stable_assigning() RETURNS int LANGUAGE plpgsql STABLE AS $$ DECLARE v purging_text; BEGIN v := 'x'; RETURN 1; END $$;
CREATE VIEW casting AS SELECT 'x'::purging_text AS v;
`;

test("a read-only identity cannot write through a user cast or a domain's CHECK, whichever way it coerces", { timeout: 120_000 }, async (t) => {
  const recorded: StatementRecord[] = [];
  const audit: AuditSink = { ...noopAudit, statementAllowed: (_s, r) => void recorded.push(r) };
  const s = await startProxyStack(t, { dp: { enforcer: undefined, audit }, bundle: policies });
  await s.direct(COERCIONS);
  const count = async () => (await s.direct("SELECT count(*)::int AS n FROM items")).rows[0].n as number;
  // the server itself: each of these deletes (what the proxy must not let a reader run)
  await s.direct("SELECT 5::pair");
  assert.equal(await count(), 0, "the cast's function deleted the rows on the server");
  await s.direct("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g");
  const ro = await s.pgClient(await s.token({ sub: "reader", groups: ["ro"] }));
  const denied = async (q: string | pg.QueryConfig) => {
    try {
      await assert.rejects(ro.query(q as string), (e: pg.DatabaseError) => {
        assert.equal(e.code, "42501", `${JSON.stringify(q)}: ${e.message}`);
        return true;
      });
    } finally {
      const n = await count();
      if (n !== 5) await s.direct("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING");
      assert.equal(n, 5, `${JSON.stringify(q)} deleted nothing`);
    }
  };

  await t.test("a cast, a typed literal, an array, a domain over the domain, a qualified name", async () => {
    await denied("SELECT 'x'::purging_text");
    await denied("SELECT CAST('x' AS purging_text)");
    await denied("SELECT purging_text 'x'");
    await denied("SELECT ARRAY['x']::purging_text[]");
    await denied("SELECT 'x'::purging_too");
    await denied("SELECT 'x'::public.purging_text");
    await denied("SELECT 5::pair");
    await denied("SELECT id::pair FROM items");
  });

  await t.test("the denial names the type", async () => {
    await assert.rejects(ro.query("SELECT 5::pair"), /names the type pair, whose coercion/);
  });

  await t.test("without naming it: a function taking the domain, a STABLE function assigning to it, a DO block, a view casting to it", async () => {
    await denied("SELECT takes_checked('x')");
    await denied("SELECT stable_assigning()");
    await denied("DO $$ DECLARE v purging_text; BEGIN v := 'x'; END $$");
    await denied("SELECT * FROM casting");
  });

  await t.test("prepared and extended", async () => {
    await denied("PREPARE q AS SELECT 'x'::purging_text");
    await denied({ text: "SELECT $1::purging_text", values: ["x"] } as pg.QueryConfig);
  });

  await t.test("casts to types whose coercion runs nothing that writes stay reads, and so does the name in a string", async () => {
    assert.equal((await ro.query("SELECT 'x'::honest_text AS v")).rows[0].v, "x");
    assert.equal((await ro.query("SELECT 'x'::text AS v, 1::int AS n")).rows[0].n, 1);
    assert.equal((await ro.query("SELECT 'purging_text' AS v")).rows[0].v, "purging_text");
    assert.equal(await count(), 5);
  });

  await t.test("an identity that may write runs it, recorded as a write", async () => {
    const rw = await s.pgClient(await s.token({ sub: "writer", groups: ["rw"] }));
    await rw.query("SELECT 5::pair");
    assert.equal(await count(), 0);
    const rec = recorded.find((r) => r.sql === "SELECT 5::pair");
    assert.equal(rec?.decision.statements[0]!.class, "write");
  });
});

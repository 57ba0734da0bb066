/**
 * The session's hook points against the real PostgreSQL: an `ack` AuditSink that holds forwarding,
 * completions with command tags and row counts, captured result rows, blocked statements, a failing
 * recorder (fail closed, 57P03), and an ApprovalGate that approves or rejects.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import { SluiceError } from "@sluice/shared/errors";
import type { ApprovalGate, AuditSink, Enforcer, StatementCompletion, StatementRecord } from "@sluice/data-plane";
import { startProxyStack, testEnforcer } from "./proxy-stack.js";

test("session hooks: audit ack, completions, capture, fail closed, approvals", { timeout: 60_000 }, async (t) => {
  const events: string[] = [];
  const allowed: StatementRecord[] = [];
  const completed: StatementCompletion[] = [];
  const captured: { seq: number; rows: number; fields: string[] }[] = [];
  let failAudit = false;
  const audit: AuditSink = {
    sessionStarted: () => void events.push("started"),
    sessionAuthenticated: async (s) => {
      await new Promise((r) => setTimeout(r, 5));
      events.push(`authenticated:${s.subject}`);
    },
    sessionDenied: (_c, d) => void events.push(`denied:${d.sqlstate}`),
    statementAllowed: async (_s, rec) => {
      // an `ack` recorder: the statement waits for this
      await new Promise((r) => setTimeout(r, 10));
      if (failAudit && !rec.sql.includes("recovered")) throw new SluiceError("unavailable", "audit stream unavailable: statement refused (fail closed)");
      allowed.push(rec);
    },
    statementBlocked: (_s, rec) => void events.push(`blocked:${rec.decision.rule}`),
    statementCompleted: (_s, done) => void completed.push(done),
    resultRows: (_s, seq, fields, rows) => void captured.push({ seq, rows: rows.length, fields: fields.map((f) => f.name) }),
    sessionEnded: (_i, e) => void events.push(`ended:${e.statements}`),
  };
  const enforcer: Enforcer = {
    decide(sql, protocol, session) {
      if (/needs_approval/.test(sql)) {
        return { action: "approve", rule: "test/approve", reason: "needs a human", statementClass: "write", statementIndex: 0, statements: [], approval: { approvers: ["dba"], timeoutMs: 1000 } };
      }
      return testEnforcer.decide(sql, protocol, session);
    },
  };
  const approvals: ApprovalGate = {
    async request(_s, rec, notice) {
      notice(`approval request for statement ${rec.seq}: run sluice approvals approve`);
      return rec.sql.includes("'yes'") ? "approved" : "rejected";
    },
  };
  const s = await startProxyStack(t, { dp: { audit, auditFeatures: { decodeParams: true, captureRows: 2 }, enforcer, approvals } });
  await s.direct("CREATE TABLE items (id int, name text); INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5) g");
  const token = await s.token({ sub: "hooks-test" });
  const notices: string[] = [];
  const sql = postgres({ host: "127.0.0.1", port: s.dp.port, database: "app", username: "ci", password: token, ssl: { rejectUnauthorized: false }, max: 1, onnotice: (n) => void notices.push(n.message) });
  t.after(() => sql.end({ timeout: 1 }));

  await t.test("pipelined statements are held for the audit ack and stay in order", async () => {
    const r = await Promise.all([sql`SELECT id FROM items WHERE id <= ${2} ORDER BY id`, sql`SELECT count(*)::int AS n FROM items`, sql`UPDATE items SET name = 'x' WHERE id = ${1}`]);
    assert.deepEqual([...r[0]].map((x) => x.id), [1, 2]);
    assert.equal(r[1][0]!.n, 5);
    assert.equal(r[2].count, 1);
    const last3 = allowed.slice(-3);
    assert.deepEqual(last3.map((a) => a.protocol), ["parse", "parse", "parse"]);
    assert.ok(last3[0]!.params && last3[0]!.params[0]!.value!.toString() === "2", "bound parameters are recorded at Execute");
    const tags = completed.slice(-3).map((c) => c.commandTag);
    assert.deepEqual(tags, ["SELECT 2", "SELECT 1", "UPDATE 1"]);
    assert.deepEqual(completed.slice(-3).map((c) => c.rows), [2, 1, 1]);
  });

  await t.test("result rows are captured up to the cap", async () => {
    await sql.unsafe("SELECT id, name FROM items ORDER BY id");
    const last = captured[captured.length - 1]!;
    assert.equal(last.rows, 2);
    assert.deepEqual(last.fields, ["id", "name"]);
  });

  await t.test("a blocked statement is recorded and answered 42501", async () => {
    await assert.rejects(sql`SELECT * FROM forbidden_table`, { code: "42501" });
    assert.ok(events.includes("blocked:test/deny:forbidden_table"));
  });

  await t.test("a failing recorder refuses statements with 57P03 and the session survives", async () => {
    failAudit = true;
    await assert.rejects(sql`SELECT 1`, (e: Error & { code?: string }) => {
      assert.equal(e.code, "57P03");
      assert.match(e.message, /fail closed/);
      return true;
    });
    await assert.rejects(sql.unsafe("SELECT 2"), { code: "57P03" });
    failAudit = false;
    assert.equal((await sql`SELECT 'recovered' AS v`)[0]!.v, "recovered");
  });

  await t.test("approval: approved runs, rejected is 42501, the client gets a notice", async () => {
    const ok = await sql.unsafe("SELECT 'yes' AS needs_approval");
    assert.equal(ok[0]!.needs_approval, "yes");
    await assert.rejects(sql.unsafe("SELECT 'no' AS needs_approval"), { code: "42501" });
    assert.ok(notices.some((n) => /approval request/.test(n)));
    assert.equal((await sql`SELECT 1 AS one`)[0]!.one, 1);
  });

  await t.test("session lifecycle events", async () => {
    await sql.end();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(events.includes("started"));
    assert.ok(events.includes("authenticated:hooks-test"));
    assert.ok(events.some((e) => e.startsWith("ended:")));
  });
});

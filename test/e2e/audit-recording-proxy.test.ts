/**
 * Session recording through the real proxy with real clients (pg): nothing secret is anywhere on the
 * stream, and NATS stopping mid-run (ack and async) makes new statements fail with 57P03 once the
 * buffer is full while every statement a client saw succeed is on the stream, in its client's order,
 * once NATS is back. (PubAcks lost under the proxy: audit-recording-lost-acks.test.ts; a SIGKILLed
 * node: audit-recording-crash.test.ts. The 10,000-statement session is in
 * audit-recording-long-session.test.ts so it runs beside these.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import {
  verifyChain, SessionEventType,
  type CloudEvent, type StatementAllowedData, type StatementCompletedData, type SessionAuthenticatedData,
} from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { loadSqlParser } from "@sluice/shared/sql";
import { snapshotEnforcer } from "../../data-plane/src/session/snapshot-enforcer.js";
import { createAuditObserver } from "../../data-plane/src/recorder/index.js";
import { startProxyStack } from "./proxy-stack.js";
import { readStream, bySession, randomPrefix, recorderOn, restartableAuditStream, sharedAuditStream } from "./audit-recording-support.js";

const T = (n: string) => SessionEventType[n as keyof typeof SessionEventType];

test("nothing secret is on the stream: no JWT, no upstream secret, no unmasked value of a masked column", async (t) => {
  await loadSqlParser();
  const { nc, names } = await sharedAuditStream(t);
  const SECRET = `upstream-s3cret-${randomPrefix()}`;
  const EMAIL = "alice.private@example.com";
  const CARD = "4111111111111111";
  let bundle!: Bundle;
  const snaps = { current: () => ({ revision: 1, bundle, hash: "x", appliedBy: "t", appliedAt: new Date(0).toISOString() }), onChange: () => () => {} };
  const publisher = recorderOn(t, nc, names, "ack");
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 100, maxBytesPerStatement: 65536, snapshots: snaps });
  const ended = new Promise<void>((resolve) => {
    const orig = audit.sessionEnded!.bind(audit);
    audit.sessionEnded = (info, end) => {
      orig(info, end);
      resolve();
    };
  });
  const stack = await startProxyStack(t, {
    bundle: (b) => {
      bundle = {
        ...b,
        policies: [{ name: "ci-rw", groups: ["ci"], resources: ["app"], allow: ["read", "write", "ddl"] }],
        masking: [{ resources: ["app"], columns: ["customers.email", "customers.card"], classifiers: ["email", "credit-card", "jwt"], strategy: "redact" }],
      };
      return bundle;
    },
    dp: { audit, auditFeatures: { decodeParams: true, captureRows: 100 }, enforcer: snapshotEnforcer(snaps), resolveSecret: async () => SECRET },
  });
  await stack.direct(`CREATE TABLE customers (id int, email text, card text, note text); INSERT INTO customers VALUES (1, '${EMAIL}', '${CARD}', 'vip')`);
  const token = await stack.token();
  const client = await stack.pgClient(token);
  const r = await client.query("SELECT id, email, card, note FROM customers");
  assert.notEqual(r.rows[0].email, EMAIL, "the client itself sees the masked value");
  await client.query("SELECT count(*) FROM customers WHERE email = $1", [EMAIL]);
  await client.query(`SELECT count(*) FROM customers WHERE email = '${EMAIL}'`);
  await client.query("SELECT $1::text AS t", [token]);
  await assert.rejects(client.query(`SELECT '${EMAIL}'::int`), { code: "22P02" });
  await client.end();
  await ended;
  await publisher.flush(10_000);
  const stored = await readStream(nc, names.auditStream);
  const all = stored.map((s) => s.raw).join("\n");
  assert.ok(stored.length >= 10, `events recorded (${stored.length})`);
  const [, payload, signature] = token.split(".");
  for (const [what, needle] of [["JWT", token], ["JWT payload", payload!], ["JWT signature", signature!], ["upstream secret", SECRET], ["masked email", EMAIL], ["masked card", CARD]] as const) {
    assert.ok(!all.includes(needle), `${what} must not be on the stream`);
  }
  // but the trail is useful: identity, masked rows, statements
  const evs = stored.map((s) => s.ev);
  const auth = evs.find((e) => e.type === T("session.authenticated"))!.data as SessionAuthenticatedData;
  assert.equal(auth.subject, "repo:acme/orders");
  assert.deepEqual(auth.groups, ["ci"]);
  assert.equal(evs.filter((e) => e.type === T("result.rows")).length, 0, "small captures ride inside statement.completed");
  const rows = evs.filter((e) => e.type === T("statement.completed")).flatMap((e) => (e.data as StatementCompletedData).results ?? []);
  assert.equal(rows[0]!.values[0]![0], "1");
  assert.equal(rows[0]!.values[0]![3], "vip");
  // the event names which rule masked which column and how, never the value
  const cols = rows[0]!.columns;
  // (the rule lists classifiers, so every text column of the resource is scanned by them: `note` too)
  assert.deepEqual(cols.map((c) => c.masked === true), [false, true, true, true]);
  assert.ok(cols[1]!.maskRule && cols[2]!.maskRule, "masked columns name their rule");
  assert.equal(cols[1]!.maskStrategy, "redact");
  assert.ok(cols[3]!.classifiers?.includes("email"), "a scanned column names its classifiers");
  assert.equal(cols[0]!.maskRule, undefined);
  // extended protocol: one logical event with the SQL and its (masked) bound parameters
  const ext = evs.filter((e) => e.type === T("statement.allowed")).map((e) => e.data as StatementAllowedData).find((d) => d.protocol === "extended")!;
  assert.deepEqual([ext.sql, ext.params, ext.class, ext.tables.read], ["SELECT count(*) FROM customers WHERE email = $1", ["[REDACTED]"], "read", ["customers"]]);
  assert.equal(verifyChain(evs), undefined);
});

for (const durability of ["ack", "async"] as const) test(`${durability}: NATS stops during a client load: 57P03 once the buffer is full, then recovery; every statement a client saw succeed is on the stream, in order`, async (t) => {
  const nats = await restartableAuditStream(t, `proxyoutage${durability}`);
  const { nc, names } = nats;
  // async buffers a linger's worth of events while NATS is up: room for that, or it would refuse
  const bufferEvents = durability === "ack" ? 40 : 400;
  const publisher = recorderOn(t, nc, names, durability, { bufferEvents, publishTimeoutMs: 1000, ackWaitMs: 1000 });
  const audit = createAuditObserver({ publisher, maxRowsPerStatement: 0, maxBytesPerStatement: 0 });
  const stack = await startProxyStack(t, { dp: { audit } });
  await stack.direct("CREATE TABLE t (v int PRIMARY KEY)");

  const succeeded: number[] = [];
  /** per client, what it saw succeed, in its order */
  const mine: number[][] = [];
  const failures: Array<{ code: string; message: string; down: boolean }> = [];
  let next = 1, stop = false, down = false;
  const loop = async () => {
    const c = await stack.pgClient();
    const ok: number[] = [];
    mine.push(ok);
    while (!stop) {
      const v = next++;
      try {
        await c.query(`INSERT INTO t VALUES (${v})`);
        succeeded.push(v);
        ok.push(v);
      } catch (e) {
        const err = e as { code: string; message: string };
        failures.push({ code: err.code, message: err.message, down });
        await sleep(10);
      }
    }
  };
  const loops = Array.from({ length: 6 }, () => loop());
  t.after(async () => {
    stop = true;
    await Promise.allSettled(loops);
  });
  for (let i = 0; i < 100 && succeeded.length < 100; i++) await sleep(20);
  assert.ok(succeeded.length >= 100, "statements ran before the outage");

  down = true;
  await nats.stop();
  for (let i = 0; i < 400 && publisher.stats.refused < 5; i++) await sleep(50);
  assert.ok(publisher.stats.refused >= 5, `new statements were refused once the buffer was full (${JSON.stringify(publisher.stats)})`);
  assert.ok(failures.length > 0);
  for (const f of failures) {
    assert.equal(f.code, "57P03", f.message);
    assert.match(f.message, /audit stream unavailable: statement refused \(fail closed\)/);
    assert.ok(f.down, "nothing failed while NATS was up");
  }

  // a new connection is refused at the door too while the buffer is full
  await assert.rejects(stack.pgClient(), (e: { code?: string; message?: string }) => e.code === "57P03" && /fail closed/.test(e.message ?? ""));

  await nats.restart();
  // statements still waiting for an ack from before the restart may time out a moment later
  for (let i = 0; i < 200 && publisher.stats.state !== "up"; i++) await sleep(25);
  await sleep(1500);
  down = false;
  const resumedFrom = succeeded.length;
  for (let i = 0; i < 1000 && succeeded.length < resumedFrom + 100; i++) await sleep(20);
  stop = true;
  await Promise.allSettled(loops);
  assert.ok(failures.every((f) => f.down), "nothing failed once NATS was back");
  assert.ok(succeeded.length >= resumedFrom + 100, "statements succeed again after NATS is back, without a restart of anything");
  await publisher.flush(20_000);

  const stored = await readStream(nc, names.auditStream);
  assert.equal(new Set(stored.map((s) => s.ev.id)).size, stored.length, "no event twice");
  const recorded = new Map<number, number>();
  const sessionOf = new Map<number, number[]>();
  for (const [sessionId, evs] of bySession(stored)) {
    assert.equal(verifyChain(evs), undefined, `chain of ${sessionId}`);
    const values: number[] = [];
    for (const e of evs as CloudEvent<StatementAllowedData>[]) {
      if (e.type !== T("statement.allowed")) continue;
      const v = Number(/VALUES \((\d+)\)/.exec(e.data.sql)![1]);
      recorded.set(v, (recorded.get(v) ?? 0) + 1);
      values.push(v);
      sessionOf.set(v, values);
    }
  }
  for (const v of succeeded) assert.equal(recorded.get(v), 1, `statement ${v} succeeded for the client: exactly once on the stream`);
  // in its client's order: what a client saw succeed is, in order, within its session's statements
  // (which also hold the ones refused after their record was queued: ack timeouts)
  for (const ok of mine) {
    if (ok.length === 0) continue;
    const session = sessionOf.get(ok[0]!)!;
    let at = 0;
    for (const v of ok) {
      at = session.indexOf(v, at);
      assert.ok(at >= 0, `statement ${v} is in its client's session after the ones before it`);
    }
  }
  // the database agrees: every row that exists has its allowed event (refused statements never ran)
  const inDb = (await stack.direct("SELECT v FROM t")).rows.map((r: { v: number }) => r.v);
  assert.deepEqual([...inDb].sort((a, b) => a - b), [...succeeded].sort((a, b) => a - b));
  t.diagnostic(JSON.stringify({ succeeded: succeeded.length, failures: failures.length, stats: publisher.stats }));
});

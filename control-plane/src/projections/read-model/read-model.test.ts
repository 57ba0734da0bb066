import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { jetstreamManager } from "@nats-io/jetstream";
import { decodeBatch } from "@sluice/shared/events";
import { ensureAuditStream } from "@sluice/shared/nats";
import { natsFixture, publishInterleaved, SessionScript } from "../../audit/testing.js";
import { ReadModel, openReadModelDb } from "./read-model.js";
import { ReadModelProjector } from "./read-model-projector.js";

const PG_ADMIN = process.env.SLUICE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function sqliteModel(t: TestContext): Promise<ReadModel> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-rm-"));
  const model = ReadModel.open({ dialect: "sqlite", url: join(dir, "read-model.sqlite") });
  t.after(async () => {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return model;
}

async function postgresModel(t: TestContext): Promise<ReadModel> {
  const name = "sluice_rm_" + randomBytes(5).toString("hex");
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(PG_ADMIN);
  u.pathname = "/" + name;
  const model = ReadModel.open({ dialect: "postgres", url: u.toString() });
  t.after(async () => {
    await model.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return model;
}

const T0 = Date.parse("2026-02-01T09:00:00Z");

function traffic(): SessionScript[] {
  const a = new SessionScript("0190aaaa-0000-7000-8000-00000000000a", T0).start("repo:acme/orders", "orders", ["ci"])
    .allowed("SELECT * FROM orders", 5).blocked("DELETE FROM orders").allowed("SELECT 1", 1).end();
  const b = new SessionScript("0190bbbb-0000-7000-8000-00000000000b", T0 + 60_000, "eu", "node-2").start("deployer", "billing", ["deployers"])
    .approval("DROP TABLE old_orders", "ap-1", "approved").approval("DROP TABLE orders", "ap-2", "rejected")
    // a statement whose text is over the 512 KiB payload cap: recorded in chunks, projected as one
    .allowed(`SELECT '${"x".repeat(600 * 1024)}'`, 0);
  const c = new SessionScript("0190cccc-0000-7000-8000-00000000000c", T0 + 120_000);
  c.emit("session.started", { clientAddress: "10.0.0.9", resource: "orders", node: "node-1", region: "local", tls: { enabled: true } })
    .emit("session.denied", { stage: "authentication", reason: "token_expired", message: "token expired", sqlstate: "28P01" });
  return [a, b, c];
}

for (const [dialect, configure] of [["sqlite", sqliteModel], ["postgres", postgresModel]] as const) {
  test(`read model on ${dialect}: projects sessions, statements, decisions, approvals; rebuild gives the same content`, async (t) => {
    const f = await natsFixture(t);
    const model = await configure(t);
    const projector = new ReadModelProjector({ nc: f.nc, names: f.names, model, batchMax: 7 });
    try {
      await scenario(f, model, projector);
    } finally {
      await projector.stop();
    }
  });
}

async function scenario(f: Awaited<ReturnType<typeof natsFixture>>, model: ReadModel, projector: ReadModelProjector): Promise<void> {
  const sessions = traffic();
  const published = await publishInterleaved(f.nc, f.names, sessions);
  await projector.start();
  assert.equal(await projector.catchUp(), published);

  const all = await model.listSessions();
  assert.deepEqual(all.map((s) => [s.session_id.slice(4, 8), s.status]), [["cccc", "denied"], ["bbbb", "active"], ["aaaa", "ended"]]);
  const a = await model.getSession(sessions[0]!.sessionId);
  assert.equal(a!.session.subject, "repo:acme/orders");
  assert.deepEqual(a!.session.groupsList, ["ci"]);
  assert.deepEqual(a!.statements.map((s) => [s.statement_id, s.decision, s.outcome, s.rows, s.command_tag]),
    [[1, "allow", "completed", 5, "SELECT 5"], [2, "deny", "blocked", null, null], [3, "allow", "completed", 1, "SELECT 1"]]);
  const b = await model.getSession(sessions[1]!.sessionId);
  assert.deepEqual(b!.approvals.map((x) => [x.approval_id, x.status, x.decided_by, x.requester]),
    [["ap-1", "approved", "dba-alice", "deployer"], ["ap-2", "rejected", "dba-alice", "deployer"]]);
  assert.equal(b!.statements[2]!.sql.length, 600 * 1024 + 9, "the chunked statement is reassembled");
  assert.deepEqual(b!.statements.map((s) => s.outcome), ["completed", "rejected", "completed"]);

  // filters: identity, resource, time, decision
  assert.deepEqual((await model.listSessions({ identity: "deployer" })).map((s) => s.resource), ["billing"]);
  assert.deepEqual((await model.listSessions({ resource: "orders" })).length, 2);
  assert.deepEqual((await model.listSessions({ since: new Date(T0 + 30_000).toISOString(), until: new Date(T0 + 90_000).toISOString() })).map((s) => s.subject), ["deployer"]);
  assert.deepEqual((await model.listSessions({ decision: "deny" })).map((s) => s.session_id.slice(4, 8)), ["cccc", "aaaa"]);
  assert.deepEqual((await model.listSessions({ decision: "rejected" })).map((s) => s.subject), ["deployer"]);

  // a redelivered batch changes nothing (the position guard in the transaction)
  const before = await model.dump();
  await model.applyBatch(sessions[0]!.events.slice(0, 5).map((event, i) => ({ seq: i + 1, events: [event] })));
  assert.deepEqual(await model.dump(), before);
  await assert.rejects(model.applyBatch([{ seq: published + 2, events: undefined }]), /does not follow/);

  // the index of where each session's events are: exactly the messages that hold them
  const jsm = await jetstreamManager(f.nc);
  for (const s of sessions) {
    const seqs = await model.sessionMessages(s.sessionId);
    const holding: number[] = [];
    for (let seq = 1; seq <= published; seq++) {
      const m = await jsm.streams.getMessage(f.names.auditStream, { seq });
      if (decodeBatch(m!.data).some((e) => e.subject === s.sessionId)) holding.push(seq);
    }
    assert.deepEqual(seqs, holding, `index of ${s.sessionId}`);
  }

  // more traffic after a restart of the projector continues from the stored position
  await projector.stop();
  const more = new SessionScript("0190dddd-0000-7000-8000-00000000000d", T0 + 180_000).start("late").allowed("SELECT 2").end();
  const n2 = await publishInterleaved(f.nc, f.names, [more]);
  await projector.start();
  assert.equal(await projector.catchUp(), published + n2);
  const built = await model.dump();
  assert.equal(built.sessions!.length, 4);

  const r = await projector.rebuild();
  assert.equal(r.position, published + n2);
  assert.deepEqual(await model.dump(), built);
  assert.equal(r.counts.statements, 7);
}

test("two replicas projecting into one PostgreSQL read model apply every event exactly once", async (t) => {
  const f = await natsFixture(t);
  const name = "sluice_rm_" + randomBytes(5).toString("hex");
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(PG_ADMIN);
  u.pathname = "/" + name;
  const a = ReadModel.open({ dialect: "postgres", url: u.toString() });
  const b = ReadModel.open({ dialect: "postgres", url: u.toString() });
  const pa = new ReadModelProjector({ nc: f.nc, names: f.names, model: a, durable: "rm-a", batchMax: 3 });
  const pb = new ReadModelProjector({ nc: f.nc, names: f.names, model: b, durable: "rm-b", batchMax: 5 });
  t.after(async () => {
    await pa.stop();
    await pb.stop();
    await a.close();
    await b.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  await a.migrate();
  await Promise.all([pa.start(), pb.start()]);
  const sessions = traffic();
  const published = await publishInterleaved(f.nc, f.names, sessions);
  await Promise.all([pa.catchUp(), pb.catchUp()]);
  assert.equal(await a.position(), published);
  const both = await a.dump();
  const s = (both.sessions as Array<{ session_id: string; statements: number; blocked: number }>).find((x) => x.session_id === sessions[0]!.sessionId)!;
  assert.deepEqual([s.statements, s.blocked], [3, 1], "counters incremented once per statement");
  await pb.stop();
  await pa.rebuild();
  assert.deepEqual(await a.dump(), both, "the same content as one projector alone");
});

/** The audit stream deleted and created again under the same name: what a fresh NATS server looks like to the projector. */
async function replaceAuditStream(f: Awaited<ReturnType<typeof natsFixture>>): Promise<void> {
  const jsm = await jetstreamManager(f.nc);
  await jsm.streams.delete(f.names.auditStream);
  await ensureAuditStream(f.nc, f.names, { storage: "memory" });
}

test("read model: a replaced audit stream (a fresh server, same name) is noticed at start and the model rebuilt from it", async (t) => {
  const f = await natsFixture(t);
  const model = await sqliteModel(t);
  const projector = new ReadModelProjector({ nc: f.nc, names: f.names, model, batchMax: 4 });
  t.after(() => projector.stop());
  const old = traffic();
  const n1 = await publishInterleaved(f.nc, f.names, old);
  await projector.start();
  assert.equal(await projector.catchUp(), n1);
  await projector.stop();

  await replaceAuditStream(f);
  const fresh = new SessionScript("0190eeee-0000-7000-8000-00000000000e", T0 + 300_000).start("after-restart").allowed("SELECT 3", 1).end();
  const n2 = await publishInterleaved(f.nc, f.names, [fresh]);
  assert.ok(n2 < n1, "the new stream is shorter than the position the model holds");
  await projector.start();
  assert.equal(await projector.catchUp(), n2);
  assert.deepEqual((await model.listSessions()).map((s) => s.subject), ["after-restart"], "only the new stream's sessions: the old rows described events that are gone");
  assert.deepEqual(await model.sessionMessages(fresh.sessionId), Array.from({ length: n2 }, (_, i) => i + 1));
  const info = await (await jetstreamManager(f.nc)).streams.info(f.names.auditStream);
  assert.deepEqual(await model.source(), { stream: f.names.auditStream, created: info.created });
});

test("read model: a stream replaced while the projector runs is noticed when its consumer goes away", async (t) => {
  const f = await natsFixture(t);
  const model = await sqliteModel(t);
  const projector = new ReadModelProjector({ nc: f.nc, names: f.names, model });
  t.after(() => projector.stop());
  await projector.start();
  // more messages than the new stream will hold, so a stale position would hide the new sessions
  const old = [0, 1, 2, 3, 4].map((i) => new SessionScript(`0190ffff-0000-7000-8000-00000000000${i}`, T0 + i).start(`old-${i}`).allowed("SELECT 1", 1).end());
  const n1 = await publishInterleaved(f.nc, f.names, old, 1);
  assert.equal(await projector.catchUp(), n1);

  await replaceAuditStream(f);
  const fresh = new SessionScript("0190eeee-0000-7000-8000-00000000000f", T0 + 300_000).start("after-replace").allowed("SELECT 3", 1).end();
  await publishInterleaved(f.nc, f.names, [fresh]);
  const until = Date.now() + 30_000;
  while (!(await model.getSessionRow(fresh.sessionId))) {
    assert.ok(Date.now() < until, "the new stream's session appears in the read model");
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual((await model.listSessions()).map((s) => s.subject), ["after-replace"]);
});

test("read model: a model from before stream identities were recorded, positioned beyond the stream's end, is rebuilt", async (t) => {
  const f = await natsFixture(t);
  const model = await sqliteModel(t);
  await model.migrate();
  // what a model of the previous schema holds after its stream was replaced: a position and no source
  await model.db.updateTable("projection_position").set({ stream_seq: 40 }).execute();
  const s = new SessionScript("0190eeee-0000-7000-8000-0000000000aa", T0).start("now").allowed("SELECT 1", 1).end();
  const n = await publishInterleaved(f.nc, f.names, [s]);
  const projector = new ReadModelProjector({ nc: f.nc, names: f.names, model });
  t.after(() => projector.stop());
  await projector.start();
  assert.equal(await projector.catchUp(), n);
  assert.deepEqual((await model.listSessions()).map((x) => x.subject), ["now"]);
});

test("read model on sqlite: the prepared write path writes exactly what the kysely path writes, batch by batch", async (t) => {
  const f = await natsFixture(t);
  const sessions = traffic();
  // completions after their decisions, in later batches: rows are updated, not only inserted
  sessions.push(new SessionScript("0190eeee-0000-7000-8000-00000000000e", T0 + 240_000).start("late").allowed("SELECT 3", 3).allowed("SELECT 4", 4).end());
  const published = await publishInterleaved(f.nc, f.names, sessions);
  const jsm = await jetstreamManager(f.nc);
  const messages: Array<{ seq: number; events: ReturnType<typeof decodeBatch> }> = [];
  for (let seq = 1; seq <= published; seq++) messages.push({ seq, events: decodeBatch((await jsm.streams.getMessage(f.names.auditStream, { seq }))!.data) });

  const prepared = await sqliteModel(t);
  const dir = mkdtempSync(join(tmpdir(), "sluice-rm-kysely-"));
  const cfg = { dialect: "sqlite" as const, url: join(dir, "read-model.sqlite") };
  // no SQLite handle of its own: every batch through kysely, as before the prepared path
  const viaKysely = new ReadModel(openReadModelDb(cfg), "sqlite");
  t.after(async () => {
    await viaKysely.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await prepared.migrate();
  await viaKysely.migrate();
  for (let i = 0, size = 1; i < messages.length; i += size, size = (size % 4) + 1) {
    const batch = messages.slice(i, i + size);
    assert.equal(await prepared.applyBatch(batch), await viaKysely.applyBatch(batch));
    assert.deepEqual(await prepared.dump(), await viaKysely.dump(), `after seq ${batch.at(-1)!.seq}`);
  }
  // a redelivery and a gap: the same answers
  assert.equal(await prepared.applyBatch(messages.slice(0, 3)), published);
  await assert.rejects(prepared.applyBatch([{ seq: published + 2, events: [] }]), /does not follow/);
  await assert.rejects(viaKysely.applyBatch([{ seq: published + 2, events: [] }]), /does not follow/);
  assert.deepEqual(await prepared.dump(), await viaKysely.dump());
  const d = await prepared.dump();
  assert.equal(d.sessions!.length, 4);
  assert.ok((d.statements as Array<{ outcome: string }>).every((x) => x.outcome !== "allowed"), "every allowed statement got its completion");
});

/**
 * A control plane whose read model cannot catch up still answers its command path (issue 17).
 *
 * The catch-up is held, not raced: the test takes the read model's SQLite write lock, then publishes
 * audit events, so every fold of them fails (SQLITE_BUSY) and is tried again until the test lets go —
 * the catch-up cannot finish, however fast the machine. Policy apply, an approval request as a data
 * plane files it, and an approval decision are sent while it is held; each must be answered while the
 * read model is still behind the stream: none of them waits for it. (What this cannot show is the
 * CPU a real catch-up costs; control-plane/src/testing/catch-up-probe.ts measures that.)
 */
import test from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { ApprovalServiceClient, NatsApprovalReply, NatsApprovalRequest, type ApplyPolicyResponse } from "@sluice/proto";
import { uuidv7 } from "@sluice/shared/events";
import { bundleYaml, startTestControlPlane, type TestControlPlane } from "../testing/test-control-plane.js";
import { SessionScript, publishInterleaved, waitFor } from "./testing.js";
import type { AuditApi } from "./audit-component.js";

const RESTARTING = "read model projection restarting";

function decide(h: TestControlPlane, id: string, token: string): Promise<unknown> {
  const client = new ApprovalServiceClient(h.address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.approve({ id, reason: "ok", commandId: randomUUID() }, md, { deadline: Date.now() + 30_000 }, (e: ServiceError | null, r: unknown) => {
      client.close();
      if (e) reject(e);
      else resolve(r);
    });
  });
}

async function ask(h: TestControlPlane): Promise<NatsApprovalReply> {
  const req: NatsApprovalRequest = {
    idempotencyKey: randomUUID(), requester: { subject: "pipeline", issuer: "dev", groups: ["deployers"] },
    binding: { fingerprint: "fp01", paramsHash: "ph01", sessionId: randomUUID(), resource: "orders" }, sql: "CREATE TABLE t (id int)",
    statementClass: "ddl", rule: "deployers/approve:ddl", policy: "deployers", approvers: ["dba"], timeoutMs: 600_000,
    node: "dp-1", region: "local", statementId: 1, nodeStartedAt: "",
  };
  return NatsApprovalReply.decode((await h.nc.request(h.names.approvalRequestSubject, NatsApprovalRequest.encode(req).finish(), { timeout: 30_000 })).data);
}

const restarts = (h: TestControlPlane) => h.logs.filter((l) => l.includes(RESTARTING)).length;

test("while the read model cannot catch up, policy apply, approval requests and decisions are answered (issue 17)", { timeout: 120_000 }, async (t) => {
  const h = await startTestControlPlane(t);
  const audit = h.cp.api<AuditApi>("audit")!;
  const scripts = () => Array.from({ length: 4 }, (_, i) => new SessionScript(randomUUID(), Date.parse("2026-12-01T00:00:00Z") + i, "local", "node-1").start(`repo:acme/s${i}`));
  const first = scripts();
  for (const s of first) for (let k = 0; k < 25; k++) s.allowed(`SELECT ${k}`);
  await publishInterleaved(h.nc, h.names, first, 8);
  await audit.projector.catchUp();

  // the fold's next write waits on this lock until the test lets go
  const lock = new Database(h.config.controlPlane.readModel.url);
  lock.pragma("busy_timeout = 5000");
  lock.prepare("BEGIN IMMEDIATE").run();
  let locked = true;
  t.after(() => {
    if (locked) lock.prepare("ROLLBACK").run();
    lock.close();
  });
  const more = scripts();
  for (const s of more) for (let k = 0; k < 25; k++) s.allowed(`SELECT ${k}`);
  await publishInterleaved(h.nc, h.names, more, 8);
  const lastSeq = (await (await jetstreamManager(h.nc)).streams.info(h.names.auditStream)).state.last_seq;
  // the fold is stuck: its first write was refused (it folds nothing until the lock goes)
  await waitFor("the fold to meet the lock", () => restarts(h) >= 1 || undefined, 30_000);
  const behind = audit.projector.position;
  assert.ok(behind < lastSeq, `the read model is behind the stream (${behind} < ${lastSeq})`);

  const yaml = bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks });
  const answers: Array<{ what: string; restarts: number; position: number; at: number }> = [];
  const answered = (what: string) => () => answers.push({ what, restarts: restarts(h), position: audit.projector.position, at: Date.now() });
  const dba = await h.dev.mint({ sub: "dba-alice", groups: ["dba"] });
  await Promise.all([
    h.call<ApplyPolicyResponse>("apply", { bundleYaml: yaml, sourcePath: "policy.yaml", expectedRevision: 0, commandId: uuidv7() }).then((r) => {
      assert.equal(r.revision, 1);
      answered("policy apply")();
    }),
    (async () => {
      const r = await ask(h);
      assert.equal(r.errorCode, "", r.errorMessage);
      assert.match(r.id, /^apr-/);
      answered("approval request")();
      await decide(h, r.id, dba);
      answered("approval decision")();
    })(),
  ]);
  for (const a of answers) {
    assert.ok(a.restarts > 0, `${a.what}: the fold was held when it was answered`);
    assert.ok(a.position < lastSeq, `${a.what} answered before the catch-up finished (read model at ${a.position} of ${lastSeq})`);
  }
  assert.deepEqual(answers.map((a) => a.what).sort(), ["approval decision", "approval request", "policy apply"]);

  // let go: the fold catches up from where it stood, and the read model holds every event
  lock.prepare("ROLLBACK").run();
  locked = false;
  assert.equal(await audit.projector.catchUp(), lastSeq);
  const counts = await audit.model.counts();
  assert.equal(counts.sessions, 8);
  assert.equal(counts.statements, 200);
});

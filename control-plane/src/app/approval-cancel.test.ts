/**
 * The cancel path of the approval app against real NATS: a data plane cancels the requests it filed
 * over its own cancel subject (the node is read from the subject, never the body), and the reaper
 * cancels the requests of a node whose fleet heartbeat shows it gone (no new beat seen for a window)
 * or restarted. Heartbeats are written into a real fleet bucket as a data plane writes them.
 */
import test, { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { NatsApprovalCancel, NatsApprovalReply, NatsApprovalRequest } from "@sluice/proto";
import { createLogger } from "@sluice/shared/logging";
import { SluiceError } from "@sluice/shared/errors";
import { deleteAll, ensureControlStream, ensureFleetBucket, natsNames } from "@sluice/shared/nats";
import { JetStreamEventStore } from "../infra/jetstream-event-store.js";
import { ApprovalApp, type ApprovalView } from "./approval-app.js";
import { NATS_URL, randomPrefix } from "../testing/test-control-plane.js";

const dba = { subject: "carol", issuer: "dev", groups: ["dba"] };
const GONE_AFTER_MS = 1500;

async function setup(t: TestContext, o: { reapEveryMs?: number } = {}) {
  const prefix = randomPrefix();
  const names = natsNames(prefix);
  const nc = await connect({ servers: NATS_URL });
  await ensureControlStream(nc, names, { storage: "memory" });
  const fleet = await ensureFleetBucket(nc, names, { storage: "memory" });
  const store = new JetStreamEventStore(nc, names);
  const app = new ApprovalApp({ store, nc, names, logger: createLogger({ level: "silent" }), fleet, goneAfterMs: GONE_AFTER_MS, reapEveryMs: o.reapEveryMs ?? 200 });
  await app.start();
  t.after(async () => {
    await app.stop();
    await deleteAll(nc, prefix);
    await nc.close();
  });

  /** files a request as data plane `node` of process start `startedAt` does */
  async function file(node: string, startedAt = ""): Promise<string> {
    const req: NatsApprovalRequest = {
      idempotencyKey: randomUUID(),
      requester: { subject: "repo:acme/deploy", issuer: "dev", groups: ["deployers"] },
      binding: { fingerprint: "fp01", paramsHash: "ph01", sessionId: randomUUID(), resource: "orders" },
      sql: "CREATE TABLE t (id int)",
      statementClass: "ddl",
      rule: "deployers/approve:ddl",
      policy: "deployers",
      approvers: ["dba"],
      timeoutMs: 600_000,
      node,
      region: "local",
      statementId: 1,
      nodeStartedAt: startedAt,
    };
    const r = NatsApprovalReply.decode((await nc.request(names.approvalRequestSubject, NatsApprovalRequest.encode(req).finish(), { timeout: 10_000 })).data);
    assert.equal(r.errorCode, "", r.errorMessage);
    return r.id;
  }
  /** a cancel published on `subjectNode`'s cancel subject */
  async function cancelAs(subjectNode: string, id: string, reason = "client_left", commandId = randomUUID()): Promise<NatsApprovalReply> {
    const body = NatsApprovalCancel.encode({ id, reason, commandId }).finish();
    return NatsApprovalReply.decode((await nc.request(names.approvalCancelSubject(subjectNode), body, { timeout: 10_000 })).data);
  }
  const beat = (node: string, startedAt: string) =>
    fleet.put(node, JSON.stringify({ region: "local", node, version: "test", snapshotRevision: 1, connections: 0, startedAt, lastBeat: new Date().toISOString(), everySeconds: 1 }));
  return { app, store, fleet, file, cancelAs, beat };
}

async function until(what: string, ms: number, f: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function refusal(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SluiceError, String(e));
    return e;
  }
  assert.fail("expected a refusal");
}

test("a data plane cancels its own request over its own subject; the request can no longer be approved", { timeout: 60_000 }, async (t) => {
  const h = await setup(t);
  const id = await h.file("dp-1");
  const cmd = randomUUID();
  const r = await h.cancelAs("dp-1", id, "client_left", cmd);
  assert.equal(r.errorCode, "", r.errorMessage);
  const v = await h.app.get(id);
  assert.equal(v.status, "cancelled");
  assert.deepEqual(v.decidedBy, { subject: "data-plane:dp-1", issuer: "sluice", groups: [] });
  assert.match(v.reason ?? "", /^client_left: the client disconnected/);

  const e = await refusal(h.app.decide(id, "approve", dba, "too late"));
  assert.equal(e.code, "failed_precondition");
  assert.match(e.message, /was cancelled \(client_left: .*\); the held statement will never run/);

  // a retry of the same cancel, and a second cancel (the session's end after the client left), append nothing
  assert.equal((await h.cancelAs("dp-1", id, "client_left", cmd)).errorCode, "");
  assert.equal((await h.cancelAs("dp-1", id, "session_ended")).errorCode, "");
  const stream = await h.store.read("approval", id);
  assert.deepEqual(stream.events.map((x) => x.cloudEvent.type), ["dev.sluice.control.approval.approval_requested.v1", "dev.sluice.control.approval.approval_cancelled.v1"]);
  // the list shows it, with who cancelled and why
  const listed = (await h.app.list({ all: true })).find((x: ApprovalView) => x.id === id);
  assert.equal(listed?.status, "cancelled");
  assert.ok(!(await h.app.list()).some((x) => x.id === id), "no longer among the pending ones");
});

test("a node cannot cancel another node's request, nor cancel with a reason of the control plane's", { timeout: 60_000 }, async (t) => {
  const h = await setup(t);
  const id = await h.file("dp-1");
  const other = await h.cancelAs("dp-2", id);
  assert.equal(other.errorCode, "permission_denied");
  assert.match(other.errorMessage, /only the control plane or the node that filed .* \(dp-1\) may cancel it/);
  const claimed = await h.cancelAs("dp-1", id, "node_gone");
  assert.equal(claimed.errorCode, "invalid_argument");
  const unknown = await h.cancelAs("dp-1", "apr-0000000000");
  assert.equal(unknown.errorCode, "not_found");
  assert.equal((await h.app.get(id)).status, "pending");
  // cancel after a decision is refused: the grant stands
  await h.app.decide(id, "approve", dba, "ok");
  const late = await h.cancelAs("dp-1", id);
  assert.equal(late.errorCode, "failed_precondition");
  assert.equal((await h.app.get(id)).status, "approved");
});

test("an approve of a request whose node restarted is refused at once, before the reaper's next look", { timeout: 60_000 }, async (t) => {
  const h = await setup(t, { reapEveryMs: 3_600_000 });
  const first = new Date(Date.now() - 60_000).toISOString();
  await h.beat("dp-q", first);
  const id = await h.file("dp-q", first);
  await h.beat("dp-q", new Date().toISOString());
  const e = await refusal(h.app.decide(id, "approve", dba, "quick"));
  assert.equal(e.code, "failed_precondition");
  assert.match(e.message, /was cancelled \(node_restarted: dp-q started again at/);
  assert.equal((await h.app.get(id)).status, "cancelled");
  // the same process still beating: an approve goes through
  const now = new Date().toISOString();
  await h.beat("dp-p", now);
  const ok = await h.file("dp-p", now);
  assert.equal((await h.app.decide(ok, "approve", dba, "fine")).view.status, "approved");
});

test("the reaper cancels the request of a node that restarted (another process start in its heartbeat)", { timeout: 60_000 }, async (t) => {
  const h = await setup(t);
  const first = new Date(Date.now() - 60_000).toISOString();
  await h.beat("dp-r", first);
  const id = await h.file("dp-r", first);
  // the same process beating on: several reaps leave it pending
  for (let i = 0; i < 4; i++) {
    await h.beat("dp-r", first);
    await sleep(400);
  }
  assert.equal((await h.app.get(id)).status, "pending");
  const again = new Date().toISOString();
  await h.beat("dp-r", again);
  await until("the restarted node's request cancelled", 20_000, async () => (await h.app.get(id)).status === "cancelled");
  const v = await h.app.get(id);
  assert.deepEqual(v.decidedBy, { subject: "control-plane", issuer: "sluice", groups: [] });
  assert.match(v.reason ?? "", new RegExp(`^node_restarted: dp-r started again at ${again}`));
  assert.equal((await refusal(h.app.decide(id, "approve", dba))).code, "failed_precondition");
});

test("the reaper cancels the requests of a node whose heartbeat expired, not those of a node that beats", { timeout: 60_000 }, async (t) => {
  const h = await setup(t);
  const started = new Date().toISOString();
  await h.beat("dp-dead", started);
  await h.beat("dp-alive", started);
  const dead = await h.file("dp-dead", started);
  const alive = await h.file("dp-alive", started);
  // a node that never beat (or whose key the TTL removed) once the request is older than the window
  const never = await h.file("dp-never");
  const beating = setInterval(() => void h.beat("dp-alive", started).catch(() => undefined), 300);
  t.after(() => clearInterval(beating));
  await until("the silent nodes' requests cancelled", 20_000, async () => (await h.app.get(dead)).status === "cancelled" && (await h.app.get(never)).status === "cancelled");
  assert.match((await h.app.get(dead)).reason ?? "", /^node_gone: no fleet heartbeat from dp-dead for \d+ s/);
  assert.match((await h.app.get(never)).reason ?? "", /^node_gone: dp-never has no fleet heartbeat \(none for \d+ s\)/);
  // the beating node's request waited through the same reaps
  await sleep(GONE_AFTER_MS);
  assert.equal((await h.app.get(alive)).status, "pending");
  clearInterval(beating);
  // and once it stops (a clean stop removes its key), it goes too
  await h.fleet.delete("dp-alive");
  await until("the stopped node's request cancelled", 20_000, async () => (await h.app.get(alive)).status === "cancelled");
});

/**
 * A held statement survives a NATS outage: the gate's watch (an ordered consumer on the request's
 * subject) re-creates itself after the reconnect and still sees the decision. Runs its own
 * nats-server on a free port with a file store, restarted in the middle of the wait.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { NatsApprovalReply, NatsApprovalRequest } from "@sluice/proto";
import { CONTROL_PLANE_SOURCE, encodeEvent, eventType, makeEvent } from "@sluice/shared/events";
import { ensureControlStream, natsNames } from "@sluice/shared/nats";
import { loadSqlParser } from "@sluice/shared/sql";
import type { SessionInfo, StatementRecord } from "../session/session-hooks.js";
import { bindingOf, createNatsApprovalGate } from "./nats-approval-gate.js";

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function startNats(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d) => {
      err += d;
      if (/Server is ready/.test(err)) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`nats-server exited ${code}: ${err.slice(-300)}`)));
  });
}

function stopNats(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

const session: SessionInfo = {
  sessionId: "0190bbbb-0000-7000-8000-000000000002", nodeId: "dp-1", region: "local", resource: "orders", clientUser: "ci",
  clientAddress: "127.0.0.1", subject: "pipeline", issuer: "dev", groups: ["deployers"], claims: {}, policyRevision: 1,
};
const stmt: StatementRecord = {
  seq: 1, protocol: "simple", sql: "CREATE TABLE survived (id int)",
  decision: { action: "approve", rule: "deployers/approve:ddl", reason: "ddl", statementClass: "ddl", statementIndex: 0, statements: [], approval: { approvers: ["dba"], timeoutMs: 60_000 } },
};

test("the gate's watch survives a NATS restart and still sees the decision", { timeout: 60_000 }, async (t) => {
  await loadSqlParser();
  const dir = mkdtempSync(join(tmpdir(), "sluice-gate-nats-"));
  const port = await freePort();
  let server = await startNats(port, dir);
  t.after(async () => {
    await stopNats(server);
    rmSync(dir, { recursive: true, force: true });
  });
  const nc = await connect({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.after(() => nc.close());
  const names = natsNames("gate");
  await ensureControlStream(nc, names);
  const sub = nc.subscribe(names.approvalRequestSubject, {
    callback: (_e, m) => {
      NatsApprovalRequest.decode(m.data);
      m.respond(NatsApprovalReply.encode({ id: "apr-ffffffffff", expiresAt: new Date(Date.now() + 60_000).toISOString(), errorCode: "", errorMessage: "" }).finish());
    },
  });
  t.after(() => sub.unsubscribe());

  const gate = createNatsApprovalGate({ nc, names });
  let held!: () => void;
  const isHeld = new Promise<void>((r) => (held = r));
  const outcome = gate.request(session, stmt, () => held());
  await isHeld;
  // give the watch a moment to be established, then take NATS away and bring it back
  await new Promise((r) => setTimeout(r, 300));
  await stopNats(server);
  await new Promise((r) => setTimeout(r, 500));
  server = await startNats(port, dir);
  // wait for the client to be back (a flush issued while disconnected may be rejected)
  for (let i = 0; ; i++) {
    try {
      await nc.flush();
      break;
    } catch (e) {
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const ce = makeEvent({
    source: CONTROL_PLANE_SOURCE,
    type: eventType("control.approval.approval_granted"),
    subject: "approval/apr-ffffffffff",
    data: { approvalId: "apr-ffffffffff", approver: { subject: "carol", issuer: "dev" }, binding: bindingOf(session, stmt) },
  });
  // JetStream may need a moment after the restart: the publish is retried (msgID keeps it single)
  for (let i = 0; ; i++) {
    try {
      await jetstream(nc).publish(names.controlSubject("approval", "apr-ffffffffff"), encodeEvent(ce), { msgID: ce.id });
      break;
    } catch (e) {
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  assert.equal(await outcome, "approved");
});

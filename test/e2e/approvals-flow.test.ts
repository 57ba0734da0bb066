/**
 * Just-in-time approval end to end: a pipeline's DDL through the real proxy is held, the client gets a
 * notice naming the request, an approver runs the real CLI (`node bin/sluice.js approvals …`, a dev
 * context file for the admin, `--token` for the approver) and the statement completes exactly once.
 * A rejection or a timeout gives 42501 and the connection stays usable; the requester can never
 * approve its own request. The session's audit trail carries approval_requested → approved →
 * allowed(approve), or approval_requested → rejected.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { decodeBatch, type CloudEvent } from "@sluice/shared/events";
import type { SluiceError } from "@sluice/shared/errors";
import { ApprovalServiceClient, type GetApprovalResponse } from "@sluice/proto";
import { connectClient } from "../../bin/lib/grpc-client.js";
import { startStack, type Stack } from "./harness.js";
import { runSluice, type CliResult } from "../lib/run-sluice.js";

const POLICY = `
policies:
  - name: deployers
    groups: [deployers]
    resources: [app]
    allow: [read, write, ddl]
    requireApproval: [ddl]
    approval: { approvers: [dba], timeout: 60s }
  - name: guarded
    groups: [guarded]
    resources: [app]
    allow: [read, write]
    requireApproval: [write]
    approval: { approvers: [dba], timeout: 60s }
  - name: hasty
    groups: [hasty]
    resources: [app]
    allow: [read, ddl]
    requireApproval: [ddl]
    approval: { approvers: [dba], timeout: 2s }
`;


function sluice(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runSluice(args, env);
}

/** Collects the client's notices; `next()` resolves with the approval id of the next approval notice. */
function noticesOf(client: pg.Client) {
  const seen: string[] = [];
  const waiters: Array<(id: string) => void> = [];
  client.on("notice", (n: { message?: string }) => {
    const msg = n.message ?? "";
    seen.push(msg);
    const m = /^approval required: request (apr-[0-9a-z]{10}) for (\S+); approve with: sluice approvals approve (apr-[0-9a-z]{10})$/.exec(msg);
    if (m) waiters.shift()?.(m[1]!);
  });
  return {
    seen,
    next: () =>
      new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no approval notice; notices: ${JSON.stringify(seen)}`)), 20_000);
        waiters.push((id) => {
          clearTimeout(t);
          resolve(id);
        });
      }),
  };
}

/** Every event of one session on the stack's audit stream. */
async function sessionEvents(stack: Stack, sessionFilter: (ce: CloudEvent) => boolean): Promise<CloudEvent[]> {
  const jsm = await jetstreamManager(stack.nc);
  const total = (await jsm.streams.info(stack.names.auditStream)).state.messages;
  const out: CloudEvent[] = [];
  if (total === 0) return out;
  const c = await jetstream(stack.nc).consumers.get(stack.names.auditStream, { deliver_policy: DeliverPolicy.All });
  const it = await c.consume();
  let n = 0;
  for await (const m of it) {
    for (const ce of decodeBatch(m.data)) if (sessionFilter(ce)) out.push(ce);
    if (++n >= total) break;
  }
  it.stop();
  return out;
}

const typeName = (ce: CloudEvent) => ce.type.replace(/^dev\.sluice\./, "").replace(/\.v1$/, "");

test("approvals: held DDL approved via the CLI runs once; rejected and timed-out get 42501; no self-approval", { timeout: 120_000 }, async (t) => {
  const stack = await startStack(t, { policy: POLICY });
  const dir = mkdtempSync(join(tmpdir(), "sluice-approvals-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // the dev context: the control plane and its admin token, as `sluice dev` writes it
  const contextFile = join(dir, "context.json");
  writeFileSync(contextFile, JSON.stringify({ controlPlane: stack.controlPlane.grpcAddress, token: stack.adminToken }), { mode: 0o600 });
  const env = { SLUICE_CONTEXT: contextFile };
  const dbaToken = await stack.token({ sub: "carol", groups: ["dba"] });
  const clients: Array<{ close(): void }> = [];
  t.after(() => clients.forEach((c) => c.close()));
  /** an in-process ApprovalService client (fewer CLI spawns keep the test fast) */
  const grpc = (token: string) => {
    const c = connectClient(ApprovalServiceClient, { server: stack.controlPlane.grpcAddress, token });
    clients.push(c);
    return c;
  };

  // the pipeline is itself in `dba`: still never its own approver
  const pipelineId = { sub: "pipeline", groups: ["deployers", "dba"] };
  const pipelineToken = await stack.token(pipelineId);
  const client = await stack.connect(pipelineId);
  const notices = noticesOf(client);
  const sessionPid = (client as unknown as { processID: number }).processID;
  assert.ok(sessionPid !== undefined);

  await t.test("approved: notice with the id, self-approval refused, approver approves, statement runs once", async () => {
    const idP = notices.next();
    const running = client.query("CREATE TABLE approved_t (id int)");
    const id = await idP;
    assert.ok(notices.seen.some((n) => n.includes("deployers/") || /for \S+;/.test(n)));

    // the admin context lists it; meanwhile the requester tries to approve itself
    const [listed, self] = await Promise.all([
      sluice(["approvals", "list", "--json"], env),
      sluice(["approvals", "approve", id, "--token", pipelineToken], env),
    ]);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; status: string; sql: string; requester: { subject: string } }>;
    const row = rows.find((r) => r.id === id);
    assert.ok(row, `request ${id} listed`);
    assert.equal(row.status, "pending");
    assert.equal(row.sql, "CREATE TABLE approved_t (id int)");
    assert.equal(row.requester.subject, "pipeline");

    assert.equal(self.code, 1);
    assert.match(self.stderr, /the requester cannot approve their own request/);

    const ok = await sluice(["approvals", "approve", id, "--reason", "reviewed"], { ...env, SLUICE_TOKEN: dbaToken });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`${id} approved by .*carol: reviewed`));

    const res = await running;
    assert.equal(res.command, "CREATE");
    const exists = await stack.pgAdmin.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'approved_t'");
    assert.equal(exists.rows[0].n, 1);

    // a second decision is refused
    await assert.rejects(grpc(dbaToken).call("reject", { id, reason: "", commandId: randomUUID() }), (e: SluiceError) => {
      assert.equal(e.code, "failed_precondition");
      assert.match(e.message, /already approved/);
      return true;
    });
  });

  await t.test("rejected: 42501, and the next statement on the same connection works", async () => {
    const idP = notices.next();
    // settle-capture at once: the rejection may arrive while the CLI is still running
    const running = client.query("CREATE TABLE rejected_t (id int)").then(() => undefined, (e: unknown) => e);
    const id = await idP;
    const rej = await sluice(["approvals", "reject", id, "--reason", "not during business hours", "--token", dbaToken], env);
    assert.equal(rej.code, 0, rej.stderr);
    const err = (await running) as { code?: string; message?: string } | undefined;
    assert.equal(err?.code, "42501");
    assert.match(err?.message ?? "", /rejected/);
    const r = await client.query("SELECT 41 + 1 AS n");
    assert.equal(r.rows[0].n, 42);
    const exists = await stack.pgAdmin.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'rejected_t'");
    assert.equal(exists.rows[0].n, 0);
  });

  await t.test("timeout: the policy's 2s pass with no decision → 42501; the connection stays usable", async () => {
    const hasty = await stack.connect({ sub: "hasty-job", groups: ["hasty"] });
    const hn = noticesOf(hasty);
    const idP = hn.next();
    const started = Date.now();
    const running = hasty.query("CREATE TABLE timed_out_t (id int)").then(() => undefined, (e: unknown) => e);
    const id = await idP;
    const err = (await running) as { code?: string; message?: string } | undefined;
    assert.equal(err?.code, "42501");
    assert.match(err?.message ?? "", /timed out/);
    assert.ok(Date.now() - started >= 1500, "not refused before the timeout");
    assert.equal((await hasty.query("SELECT 1 AS one")).rows[0].one, 1);
    const shown = await grpc(dbaToken).call<unknown, GetApprovalResponse>("get", { id });
    assert.equal(shown.approval!.status, "expired");
  });

  await t.test("extended protocol: approval asked at Execute, bound to the parameters, never shown them", async () => {
    await stack.pgAdmin.query("CREATE TABLE IF NOT EXISTS guarded_items (id int, secret text)");
    const writer = await stack.connect({ sub: "writer-job", groups: ["guarded"] });
    const wn = noticesOf(writer);
    const idP = wn.next();
    const running = writer.query({ text: "INSERT INTO guarded_items VALUES ($1, $2)", values: [7, "hunter2-param"] }).then((r) => r, (e: unknown) => e);
    const id = await idP;
    const view = (await grpc(dbaToken).call<unknown, GetApprovalResponse>("get", { id })).approval!;
    assert.equal(view.sql, "INSERT INTO guarded_items VALUES ($1, $2)");
    assert.ok(!JSON.stringify(view).includes("hunter2-param"), "parameter values never reach the control plane");
    assert.equal(view.binding!.paramsHash.length, 64);
    await grpc(dbaToken).call("approve", { id, reason: "", commandId: randomUUID() });
    const res = (await running) as { rowCount?: number };
    assert.equal(res.rowCount, 1);
    const rows = await stack.pgAdmin.query("SELECT id, secret FROM guarded_items");
    assert.deepEqual(rows.rows, [{ id: 7, secret: "hunter2-param" }]);
    // the same prepared text with other values is a new request
    const id2P = wn.next();
    const second = writer.query({ text: "INSERT INTO guarded_items VALUES ($1, $2)", values: [8, "x"] }).then((r) => r, (e: unknown) => e);
    const id2 = await id2P;
    assert.notEqual(id2, id);
    await grpc(dbaToken).call("reject", { id: id2, reason: "", commandId: randomUUID() });
    assert.equal(((await second) as { code?: string }).code, "42501");
    assert.equal((await writer.query("SELECT count(*)::int AS n FROM guarded_items")).rows[0].n, 1);
  });

  await t.test("a client that disconnects while held: the wait ends and the trail says cancelled before session.ended", async () => {
    const leaver = await stack.connect({ sub: "leaver-job", groups: ["deployers"] });
    const ln = noticesOf(leaver);
    const idP = ln.next();
    const held = leaver.query("CREATE TABLE never_made (id int)").then(() => undefined, () => undefined);
    const id = await idP;
    const sessionId = await waitForSessionOf("leaver-job");
    leaver.connection.stream.destroy(); // gone without a Terminate, as a killed pipeline would be
    await held;
    // the session's trail ends ... approval_requested, rejected (cancelled), session.ended
    let trail: CloudEvent[] = [];
    for (let i = 0; i < 100; i++) {
      trail = await sessionEvents(stack, (ce) => ce.subject === sessionId);
      if (trail.some((ce) => typeName(ce) === "session.ended")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const names = trail.map(typeName);
    assert.deepEqual(names.slice(-3), ["statement.approval_requested", "statement.rejected", "session.ended"], JSON.stringify(names));
    const rejected = trail.at(-2)!.data as { approvalId: string; reason: string };
    assert.deepEqual({ approvalId: rejected.approvalId, reason: rejected.reason }, { approvalId: id, reason: "cancelled" });
    // approving it now changes nothing: nobody is waiting and the table never appears
    await grpc(dbaToken).call("approve", { id, reason: "", commandId: randomUUID() }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await stack.pgAdmin.query("SELECT to_regclass('never_made') AS t")).rows[0].t, null);
  });

  /** the session id of the (newest) session whose token subject is `sub`, from its session.authenticated event */
  async function waitForSessionOf(sub: string): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const evs = await sessionEvents(stack, (ce) => typeName(ce) === "session.authenticated" && (ce.data as { subject?: string }).subject === sub);
      if (evs.length) return evs.at(-1)!.subject!;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no session.authenticated for ${sub}`);
  }

  await t.test("the session's audit trail has the approval events in order", async () => {
    const evs = await sessionEvents(stack, (ce) => ce.type.includes("statement."));
    const bySession = new Map<string, string[]>();
    for (const ce of evs) bySession.set(ce.subject ?? "", [...(bySession.get(ce.subject ?? "") ?? []), typeName(ce)]);
    const approvedTrail = [...bySession.values()].find((v) => v.includes("statement.approved"));
    assert.ok(approvedTrail, JSON.stringify([...bySession.values()]));
    const i = approvedTrail.indexOf("statement.approval_requested");
    assert.deepEqual(approvedTrail.slice(i, i + 3), ["statement.approval_requested", "statement.approved", "statement.allowed"]);
    assert.ok(approvedTrail.includes("statement.rejected"));
    const req = evs.find((ce) => typeName(ce) === "statement.approval_requested")!;
    const data = req.data as { approvalId: string; approvers: string[]; fingerprint?: string; decision: string };
    assert.match(data.approvalId, /^apr-/);
    assert.deepEqual(data.approvers, ["dba"]);
    assert.equal(data.decision, "approve");
    assert.ok(data.fingerprint);
    const allowed = evs.find((ce) => typeName(ce) === "statement.allowed" && (ce.data as { decision: string }).decision === "approve");
    assert.ok(allowed, "the forwarded statement is recorded as allowed with decision approve");
  });
});

/**
 * /metrics of both planes, scraped from a running stack after known traffic (issue 16): the
 * figures have the documented names and types and count exactly what the clients did. Three
 * allowed and two denied statements read 3 and 2; a refused connection, a bad token and an
 * established session are counted by outcome; a statement held for approval shows as waiting on
 * the data plane and pending on the control plane until it is rejected; the added-latency
 * histogram counts every allowed statement; the audit batch histograms agree with the stored
 * batches; the sealer and the read model catch up with the stream.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { ApprovalServiceClient } from "@sluice/proto";
import type { AuditApi } from "@sluice/control-plane";
import { connectClient } from "../../bin/lib/grpc-client.js";
import { scrapeMetrics, type Scrape } from "../lib/metrics-scrape.js";
import { startStack } from "./harness.js";

const POLICY = `
policies:
  - name: readers
    groups: [dev]
    resources: [app]
    allow: [read]
  - name: deployers
    groups: [deployers]
    resources: [app]
    allow: [read, ddl]
    requireApproval: [ddl]
    approval: { approvers: [dba], timeout: 60s }
  - name: approvers
    groups: [dba]
    resources: [app]
    allow: [read]
`;

const scrape: (port: number) => Promise<Scrape> = scrapeMetrics;

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function approvalIdOf(client: pg.Client): Promise<string> {
  return new Promise((resolve) =>
    client.on("notice", (n: { message?: string }) => {
      const m = /request (apr-[0-9a-z]+)/.exec(n.message ?? "");
      if (m) resolve(m[1]!);
    }),
  );
}

test("both planes' /metrics count the traffic a stack saw, with the documented names and types", { timeout: 120_000 }, async (t) => {
  const stack = await startStack(t, { policy: POLICY, setupSql: "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2);" });
  const dpPort = stack.dataPlane.httpPort!;
  const cpPort = stack.controlPlane.httpPort;

  // a fresh node: nothing decided yet
  const before = await scrape(dpPort);
  for (const d of ["allowed", "denied", "approved", "rejected", "timeout", "failed"]) {
    assert.equal(before.value("sluice_dp_statements_total", { decision: d }), 0, `decision ${d} starts at 0`);
  }

  // 3 allowed, 2 denied
  const dev = await stack.connect({ groups: ["dev"] });
  for (let i = 0; i < 3; i++) assert.equal((await dev.query("SELECT count(*)::int AS n FROM items")).rows[0].n, 2);
  await assert.rejects(dev.query("DELETE FROM items"), { code: "42501" });
  await assert.rejects(dev.query("CREATE TABLE nope (id int)"), { code: "42501" });

  // connections refused: a group no policy names (denied), a token that does not verify (denied)
  await assert.rejects(stack.connect({ groups: ["nobody"] }), { code: "28000" });
  await assert.rejects(stack.connect({ groups: ["dev"], ttlSec: -60 }), { code: "28P01" });

  let dp = await scrape(dpPort);
  assert.equal(dp.types.get("sluice_dp_statements_total"), "counter");
  assert.equal(dp.value("sluice_dp_statements_total", { decision: "allowed" }), 3);
  assert.equal(dp.value("sluice_dp_statements_total", { decision: "denied" }), 2);
  assert.equal(dp.types.get("sluice_dp_sessions_total"), "counter");
  assert.equal(dp.value("sluice_dp_sessions_total", { outcome: "established" }), 1);
  assert.equal(dp.value("sluice_dp_sessions_total", { outcome: "denied" }), 2);
  assert.equal(dp.value("sluice_dp_sessions_total", { outcome: "failed" }), 0);
  assert.equal(dp.types.get("sluice_dp_sessions"), "gauge");
  assert.equal(dp.value("sluice_dp_sessions"), 1);

  // every allowed statement is in the added-latency histogram; buckets are cumulative
  assert.equal(dp.types.get("sluice_dp_statement_added_seconds"), "histogram");
  assert.equal(dp.value("sluice_dp_statement_added_seconds_count"), 3);
  assert.equal(dp.value("sluice_dp_statement_added_seconds_bucket", { le: "+Inf" }), 3);
  const buckets = dp.samples.filter((s) => s.name === "sluice_dp_statement_added_seconds_bucket").map((s) => s.value);
  assert.ok(buckets.length > 5 && buckets.every((v, i) => i === 0 || v >= buckets[i - 1]!), `cumulative buckets ${buckets}`);
  const sum = dp.value("sluice_dp_statement_added_seconds_sum")!;
  assert.ok(sum > 0 && sum < 3 * 5, `added seconds sum ${sum}`);

  // the upstream side: one session holds one connection
  assert.equal(dp.types.get("sluice_dp_upstream_connections"), "gauge");
  assert.equal(dp.value("sluice_dp_upstream_connections", { state: "in_use" }), 1);
  assert.ok(dp.value("sluice_dp_upstream_connections_opened_total")! >= 1);
  assert.equal(dp.value("sluice_dp_upstream_connections_reused_total"), 0);

  // policy: the revision the control plane folded, applied here from KV
  const cp0 = await scrape(cpPort);
  const rev = cp0.value("sluice_control_policy_revision")!;
  assert.ok(rev >= 1);
  assert.equal(dp.value("sluice_dp_policy_revision"), rev);
  const appliedAt = dp.value("sluice_dp_policy_applied_timestamp_seconds")!;
  assert.ok(Math.abs(appliedAt - Date.now() / 1000) < 120, `applied at ${appliedAt}`);
  assert.ok(dp.value("sluice_dp_policy_apply_seconds")! >= 0);

  // a statement held for approval: waiting on the node, pending on the control plane; then rejected
  const deployer = await stack.connect({ sub: "pipeline", groups: ["deployers"] });
  const id = approvalIdOf(deployer);
  const held = deployer.query("CREATE TABLE later (id int)");
  const approvalId = await id;
  dp = await until("the held statement is waiting", async () => {
    const s = await scrape(dpPort);
    return s.value("sluice_dp_approvals_waiting") === 1 ? s : undefined;
  });
  assert.equal(dp.types.get("sluice_dp_approvals_waiting"), "gauge");
  await until("the control plane counts it pending", async () => ((await scrape(cpPort)).value("sluice_control_approvals_pending") === 1 ? true : undefined));
  const dba = await stack.issuer.mint({ sub: "carol", groups: ["dba"], ttlSec: 600 });
  const grpc = connectClient(ApprovalServiceClient, { server: stack.controlPlane.grpcAddress, token: dba });
  t.after(() => grpc.close());
  await grpc.call("reject", { id: approvalId, reason: "not today", commandId: randomUUID() });
  await assert.rejects(held, { code: "42501" });
  // a call with a token that is not one: refused, and counted by its code
  const anon = connectClient(ApprovalServiceClient, { server: stack.controlPlane.grpcAddress, token: "not-a-token" });
  t.after(() => anon.close());
  await assert.rejects(anon.call("list", { all: false }));

  dp = await scrape(dpPort);
  assert.equal(dp.value("sluice_dp_statements_total", { decision: "rejected" }), 1);
  assert.equal(dp.value("sluice_dp_statements_total", { decision: "approved" }), 0);
  assert.equal(dp.value("sluice_dp_approvals_waiting"), 0);
  assert.equal(dp.value("sluice_dp_sessions_total", { outcome: "established" }), 2);
  assert.equal(dp.value("sluice_dp_statement_added_seconds_count"), 3, "a statement held for approval is not in the added-latency histogram");

  // the audit recorder: batch histograms agree with the stored batches and events
  await dev.end();
  await deployer.end();
  dp = await until("every audit event stored", async () => {
    const s = await scrape(dpPort);
    return s.value("sluice_dp_audit_pending_events") === 0 && s.value("sluice_dp_sessions") === 0 ? s : undefined;
  });
  const messages = dp.value("sluice_dp_audit_messages_total")!;
  const events = dp.value("sluice_dp_audit_events_total")!;
  assert.ok(messages >= 1 && events >= messages, `${events} events in ${messages} batches`);
  assert.equal(dp.types.get("sluice_dp_audit_batch_events"), "histogram");
  assert.equal(dp.value("sluice_dp_audit_batch_events_count"), messages);
  assert.equal(dp.value("sluice_dp_audit_batch_events_sum"), events);
  assert.equal(dp.value("sluice_dp_audit_batch_seconds_count"), messages);
  assert.equal(dp.value("sluice_dp_audit_up"), 1);
  assert.equal(dp.value("sluice_dp_audit_buffer_events"), stack.dataPlane.config.dataPlane.audit.bufferEvents);

  // the control plane: calls by method and code, the approval gone, the read model and the sealer caught up
  await stack.controlPlane.api<AuditApi>("audit")!.sealer.sealNow();
  const cp = await until("read model and sealer caught up", async () => {
    const s = await scrape(cpPort);
    const last = s.value("sluice_audit_stream_last_sequence") ?? 0;
    return last > 0 && s.value("sluice_read_model_lag_messages") === 0 && s.value("sluice_sealer_lag_messages") === 0 ? s : undefined;
  }, 30_000);
  assert.equal(cp.types.get("sluice_control_grpc_calls_total"), "counter");
  assert.equal(cp.value("sluice_control_grpc_calls_total", { method: "ApprovalService/Reject", code: "OK" }), 1);
  assert.equal(cp.value("sluice_control_grpc_calls_total", { method: "ApprovalService/List", code: "UNAUTHENTICATED" }), 1);
  assert.ok(cp.value("sluice_control_grpc_calls_total", { method: "PolicyService/Apply", code: "OK" })! >= 1);
  assert.equal(cp.value("sluice_control_approvals_pending"), 0);
  assert.equal(cp.value("sluice_read_model_position"), cp.value("sluice_audit_stream_last_sequence"));
  assert.equal(cp.value("sluice_sealer_sealed_through"), cp.value("sluice_audit_stream_last_sequence"));
  assert.equal(cp.value("sluice_sealer_leader"), 1);
  const cpAt = cp.value("sluice_sealer_last_checkpoint_timestamp_seconds")!;
  assert.ok(Math.abs(cpAt - Date.now() / 1000) < 120, `last checkpoint at ${cpAt}`);
  for (const [name, type] of [
    ["sluice_control_policy_revision", "gauge"], ["sluice_read_model_lag_messages", "gauge"], ["sluice_sealer_lag_messages", "gauge"],
    ["sluice_approval_webhook_attempts_total", "counter"], ["process_cpu_seconds_total", "counter"],
  ] as const) assert.equal(cp.types.get(name), type, name);
});

/**
 * An approver in a process of its own, for tests where a client tool (a migration tool, a driver)
 * waits on held statements: it polls the control plane's ApprovalService as its own identity and
 * approves every pending request of the requesters it is told to watch, one JSON line per approval
 * on stdout ({ id, sql, requester, rule, heldMs }). It never approves anyone else's request and
 * stops on SIGTERM or when its stdin closes.
 *
 *   node --import tsx test/lib/approver-process.ts
 *   env: SLUICE_CONTROL_PLANE (host:port), SLUICE_TOKEN (the approver's), APPROVE_REQUESTERS (a,b)
 */
import { randomUUID } from "node:crypto";
import { ApprovalServiceClient, type DecideApprovalResponse, type ListApprovalsResponse } from "@sluice/proto";
import { connectClient } from "../../bin/lib/grpc-client.js";

const server = process.env.SLUICE_CONTROL_PLANE ?? "";
const token = process.env.SLUICE_TOKEN ?? "";
const watch = new Set((process.env.APPROVE_REQUESTERS ?? "").split(",").filter(Boolean));
if (!server || !token || watch.size === 0) {
  process.stderr.write("approver-process: SLUICE_CONTROL_PLANE, SLUICE_TOKEN and APPROVE_REQUESTERS are required\n");
  process.exit(2);
}

const client = connectClient(ApprovalServiceClient, { server, token });
let stopping = false;
const stop = () => {
  stopping = true;
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop).on("close", stop).resume();

const decided = new Set<string>();
while (!stopping) {
  try {
    const res = await client.call<unknown, ListApprovalsResponse>("list", { all: false });
    for (const a of res.approvals) {
      if (decided.has(a.id) || a.status !== "pending" || !watch.has(a.requester?.subject ?? "")) continue;
      const r = await client.call<unknown, DecideApprovalResponse>("approve", { id: a.id, reason: "approved by the test's approver process", commandId: randomUUID() });
      decided.add(a.id);
      const heldMs = Date.now() - Date.parse(a.requestedAt);
      process.stdout.write(JSON.stringify({ id: a.id, sql: a.sql, requester: a.requester?.subject, rule: a.rule, status: r.approval?.status, heldMs }) + "\n");
    }
  } catch (e) {
    process.stderr.write(`approver-process: ${(e as Error).message.split("\n")[0]}\n`);
  }
  await new Promise((r) => setTimeout(r, 150));
}
client.close();
// stdin is still open (the parent holds it): leave rather than wait on it
process.exit(0);

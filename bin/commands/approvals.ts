/**
 * `sluice approvals list|show|approve|reject`: a client of the control plane's ApprovalService.
 * Acts as the dev context's admin by default, or as another identity (an approver) with `--token`
 * or SLUICE_TOKEN. Approving needs membership in one of the request's approver groups, and is never
 * possible for the identity that made the request.
 */
import type { ApprovalRequestView, DecideApprovalResponse, GetApprovalResponse, ListApprovalsResponse } from "@sluice/proto";
import { uuidv7 } from "@sluice/shared/events";
import { TARGET_FLAGS, UsageError, fail, parse, printJson } from "../lib/cli-kit.js";
import { loadGrpc } from "../lib/grpc-api.js";

const USAGE = `usage: sluice approvals <command> [flags]
  list [--all] [--json]           pending requests (every request with --all) you may see
  show ID [--json]                one request: the statement, who asked, binding, decision
  approve ID [--reason TEXT]      approve a held statement (approver groups only; never your own request)
  reject ID [--reason TEXT]       reject a held statement; the client gets 42501
common flags: --server HOST:PORT  --token TOKEN (or SLUICE_TOKEN; default: the sluice dev context)`;

const who = (a: { subject: string; issuer: string } | undefined) => (a ? `${a.issuer}:${a.subject}` : "-");

/** The JSON shape of a request (stable for scripts): the view as the API returns it. */
function jsonOf(v: ApprovalRequestView) {
  return {
    id: v.id,
    status: v.status,
    requester: v.requester,
    resource: v.binding?.resource ?? "",
    sessionId: v.binding?.sessionId ?? "",
    statementId: v.statementId,
    sql: v.sql,
    statementClass: v.statementClass,
    rule: v.rule,
    policy: v.policy,
    approvers: v.approvers,
    requestedAt: v.requestedAt,
    expiresAt: v.expiresAt,
    decidedAt: v.decidedAt || undefined,
    decidedBy: v.decidedBy,
    reason: v.reason || undefined,
    binding: v.binding,
    node: v.node,
    region: v.region,
  };
}

function oneLine(s: string, max = 60): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? t.slice(0, max - 1) + "…" : t;
}

async function list(flags: Record<string, unknown>): Promise<number> {
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.ApprovalServiceClient, flags, (c) => c.call<unknown, ListApprovalsResponse>("list", { all: !!flags.all }));
  if (flags.json) {
    printJson(res.approvals.map(jsonOf));
    return 0;
  }
  if (res.approvals.length === 0) {
    process.stdout.write(flags.all ? "no approval requests\n" : "no pending approval requests\n");
    return 0;
  }
  const rows = res.approvals.map((v) => [v.id, v.status, who(v.requester), v.binding?.resource ?? "", v.rule, v.expiresAt, oneLine(v.sql)]);
  const head = ["ID", "STATUS", "REQUESTER", "RESOURCE", "RULE", "EXPIRES", "SQL"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ") + "\n");
  return 0;
}

async function show(id: string, flags: Record<string, unknown>): Promise<number> {
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.ApprovalServiceClient, flags, (c) => c.call<unknown, GetApprovalResponse>("get", { id }));
  const v = res.approval!;
  if (flags.json) {
    printJson(jsonOf(v));
    return 0;
  }
  const lines = [
    `id:          ${v.id}`,
    `status:      ${v.status}`,
    `requester:   ${who(v.requester)} (groups: ${v.requester?.groups.join(", ") || "-"})`,
    `resource:    ${v.binding?.resource ?? ""}`,
    `session:     ${v.binding?.sessionId ?? ""} statement ${v.statementId} on ${v.region}/${v.node}`,
    `rule:        ${v.rule}${v.policy ? ` (policy ${v.policy})` : ""}, class ${v.statementClass}`,
    `approvers:   ${v.approvers.join(", ")}`,
    `requested:   ${v.requestedAt}`,
    `expires:     ${v.expiresAt}`,
    `fingerprint: ${v.binding?.fingerprint ?? ""}`,
  ];
  if (v.decidedAt) lines.push(`decided:     ${v.decidedAt}${v.decidedBy ? ` by ${who(v.decidedBy)}` : ""}${v.reason ? `: ${v.reason}` : ""}`);
  lines.push("sql:", ...v.sql.split("\n").map((l) => `  ${l}`));
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}

async function decide(verdict: "approve" | "reject", id: string, flags: Record<string, unknown>): Promise<number> {
  const reason = typeof flags.reason === "string" ? flags.reason : "";
  const { withClient, proto } = await loadGrpc();
  const res = await withClient(proto.ApprovalServiceClient, flags, (c) =>
    c.call<unknown, DecideApprovalResponse>(verdict, { id, reason, commandId: uuidv7() }),
  );
  const v = res.approval!;
  if (flags.json) printJson({ ...jsonOf(v), duplicate: res.duplicate });
  else process.stdout.write(`${v.id} ${v.status} by ${who(v.decidedBy)}${v.reason ? `: ${v.reason}` : ""}\n`);
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === "--help" || sub === "-h") {
    process.stdout.write(USAGE + "\n");
    return sub ? 0 : 2;
  }
  const { values, positionals } = parse(rest, { ...TARGET_FLAGS, all: { type: "boolean" }, reason: { type: "string" } });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const needId = (verb: string) => {
    if (positionals.length !== 1) throw new UsageError(`usage: sluice approvals ${verb} ID`);
    return positionals[0]!;
  };
  try {
    switch (sub) {
      case "list":
        if (positionals.length) throw new UsageError("usage: sluice approvals list [--all] [--json]");
        return await list(values);
      case "show":
        return await show(needId("show"), values);
      case "approve":
        return await decide("approve", needId("approve"), values);
      case "reject":
        return await decide("reject", needId("reject"), values);
      default:
        throw new UsageError(`unknown approvals command ${JSON.stringify(sub)}\n${USAGE}`);
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    return fail(e);
  }
}

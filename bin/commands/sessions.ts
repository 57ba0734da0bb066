/**
 * `sluice sessions list|show|replay`: sessions from the control plane's read model (SessionService),
 * and a readable transcript replayed from the audit stream itself (AuditService.Read).
 */
import type { GetSessionResponse, ListSessionsRequest, ListSessionsResponse, SessionSummary } from "@sluice/proto";
import { TARGET_FLAGS, UsageError, parse, printJson, resolveTarget } from "../lib/cli-kit.js";
import { loadGrpc } from "../lib/grpc-api.js";
import { parseTimeFlags } from "../lib/time-flag.js";

const USAGE = `usage:
  sluice sessions list [--identity S] [--resource R] [--node N] [--since T] [--until T] [--decision allow|deny|approve|approved|rejected] [--status S] [--limit N] [--json]
  sluice sessions show ID [--json]
  sluice sessions replay ID [--follow] [--json]
T is an ISO time or a duration back from now (30m, 2h, 7d). Common flags: --server ADDR --token JWT`;

const DECISIONS = ["allow", "deny", "approve", "approved", "rejected"];

function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}

function short(iso: string): string {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
}

async function list(values: Record<string, string | boolean | undefined>): Promise<number> {
  const now = new Date();
  if (values.decision && !DECISIONS.includes(values.decision as string)) throw new UsageError(`--decision must be one of ${DECISIONS.join(", ")}`);
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  if (!Number.isInteger(limit) || limit <= 0) throw new UsageError("--limit must be a positive integer");
  const req: ListSessionsRequest = {
    identity: (values.identity as string) ?? "",
    resource: (values.resource as string) ?? "",
    ...(await parseTimeFlags(values, now)),
    decision: (values.decision as string) ?? "",
    status: (values.status as string) ?? "",
    node: (values.node as string) ?? "",
    limit,
  };
  const r = await listSessions(values, req);
  if (values.json) {
    printJson(r.sessions);
    return 0;
  }
  if (r.sessions.length === 0) {
    process.stdout.write("no sessions\n");
    return 0;
  }
  const rows = [["SESSION", "STARTED", "IDENTITY", "RESOURCE", "FROM", "STATUS", "STMTS", "BLOCKED"]];
  for (const s of r.sessions) {
    rows.push([s.sessionId, short(s.startedAt), s.identity || "-", s.resource || "-", s.clientAddress || "-", s.status, String(s.statements), String(s.blocked)]);
  }
  process.stdout.write(columns(rows));
  return 0;
}

/**
 * The list through one HTTP/2 request of its own (grpc-unary.ts, session-list-codec.ts): the
 * command most run against a stack loads neither @grpc/grpc-js nor the generated services (issue
 * 15); an address only grpc-js can dial goes through it.
 */
async function listSessions(values: Record<string, string | boolean | undefined>, req: ListSessionsRequest): Promise<ListSessionsResponse> {
  const target = resolveTarget(values as { server?: string; token?: string });
  const [{ grpcUnary, http2Authority }, codec] = await Promise.all([import("../lib/grpc-unary.js"), import("../lib/session-list-codec.js")]);
  if (http2Authority(target.server)) {
    return codec.decodeListSessionsResponse(await grpcUnary(target, "/sluice.v1.SessionService/List", codec.encodeListSessionsRequest(req)));
  }
  const { withClient, proto } = await loadGrpc();
  return withClient(proto.SessionServiceClient, values, (c) => c.call<ListSessionsRequest, ListSessionsResponse>("list", req));
}

function describe(s: SessionSummary): string {
  const lines = [
    `session      ${s.sessionId}`,
    `identity     ${s.identity || "-"}${s.issuer ? ` (issuer ${s.issuer})` : ""}`,
    `groups       ${s.groups.join(", ") || "-"}`,
    `resource     ${s.resource || "-"}`,
    `client       ${s.clientAddress || "-"}${s.clientUser ? ` as ${s.clientUser}` : ""}${s.applicationName ? ` (${s.applicationName})` : ""}`,
    `node         ${s.region || "-"}/${s.node || "-"}`,
    `status       ${s.status}${s.denyReason ? `: ${s.denyReason}` : ""}${s.endReason ? ` (${s.endReason})` : ""}`,
    `started      ${short(s.startedAt)}`,
    `ended        ${short(s.endedAt)}`,
    `statements   ${s.statements} (${s.blocked} blocked or rejected)`,
    `policy rev   ${s.policyRevision || "-"}`,
  ];
  return lines.join("\n") + "\n";
}

async function show(id: string, values: Record<string, string | boolean | undefined>): Promise<number> {
  const { withClient, proto } = await loadGrpc();
  const r = await withClient(proto.SessionServiceClient, values, (c) => c.call<{ sessionId: string }, GetSessionResponse>("get", { sessionId: id }));
  if (values.json) {
    printJson(r);
    return 0;
  }
  process.stdout.write(describe(r.session!));
  if (r.statements.length) {
    const rows = [["#", "DECISION", "RULE", "OUTCOME", "ROWS", "MS", "SQL"]];
    for (const st of r.statements) {
      rows.push([String(st.statementId), st.decision, st.rule, st.outcome + (st.errorSqlstate ? ` ${st.errorSqlstate}` : ""),
        st.rows === undefined ? "-" : String(st.rows), st.durationMs === undefined ? "-" : String(st.durationMs), st.sql.replace(/\s+/g, " ").slice(0, 80)]);
    }
    process.stdout.write("\n" + columns(rows));
  }
  if (r.approvals.length) {
    const rows = [["APPROVAL", "STATEMENT", "STATUS", "BY", "REQUESTED"]];
    for (const a of r.approvals) rows.push([a.approvalId, String(a.statementId), a.status, a.decidedBy || "-", short(a.requestedAt)]);
    process.stdout.write("\n" + columns(rows));
  }
  return 0;
}

async function replay(id: string, values: Record<string, string | boolean | undefined>): Promise<number> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  const [{ ChunkJoiner, TranscriptRenderer }, { readAudit }] = await Promise.all([import("@sluice/control-plane/audit-client"), import("../lib/audit-read.js")]);
  const joiner = new ChunkJoiner();
  const renderer = new TranscriptRenderer();
  let seen = 0;
  try {
    // the server narrows each stored batch to this session's events (through the read model's index)
    for await (const item of readAudit(values, { sessionId: id, follow: Boolean(values.follow) }, ac.signal)) {
      for (const raw of item.message?.events ?? []) {
        if (raw.subject !== id) continue;
        const ev = joiner.push(raw);
        if (!ev) continue;
        seen++;
        if (values.json) process.stdout.write(JSON.stringify(ev) + "\n");
        else for (const line of renderer.push(ev)) process.stdout.write(line + "\n");
      }
      if (values.follow && renderer.ended) ac.abort();
    }
  } finally {
    process.off("SIGINT", stop);
  }
  if (seen === 0 && !ac.signal.aborted) {
    process.stderr.write(`sluice: no events for session ${id}\n`);
    return 1;
  }
  return 0;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...TARGET_FLAGS,
    identity: { type: "string" },
    resource: { type: "string" },
    node: { type: "string" },
    since: { type: "string" },
    until: { type: "string" },
    decision: { type: "string" },
    status: { type: "string" },
    limit: { type: "string" },
    follow: { type: "boolean", short: "f" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const [sub, id, ...rest] = positionals;
  const v = values as Record<string, string | boolean | undefined>;
  if (rest.length) throw new UsageError(USAGE);
  switch (sub) {
    case "list":
      if (id) throw new UsageError(USAGE);
      return list(v);
    case "show":
      if (!id) throw new UsageError("usage: sluice sessions show ID [--json]");
      return show(id, v);
    case "replay":
      if (!id) throw new UsageError("usage: sluice sessions replay ID [--follow] [--json]");
      return replay(id, v);
    default:
      throw new UsageError(USAGE);
  }
}

/**
 * Runs one fuzz case and gathers the evidence the oracles judge: the case's frames go through the
 * proxy at once (pipelined, exactly as generated) over TLS; approval notices are answered as the
 * case says; then the same frames, with the statements the proxy denied replaced by statements
 * that fail the same way, go straight to the reference database; then the server's statement log,
 * the session's audit events and another session's health check are collected.
 */
import { errorFields, type BackendMessage } from "../lib/pg-frames.js";
import type { PgWireClient } from "../lib/pg-wire-client.js";
import { backendsByApplication, executedPlans, executedStatements, type ExecutedPlan, type ExecutedStatement } from "../lib/statement-log.js";
import type { CloudEvent } from "@sluice/shared/events";
import type { FuzzWorld } from "./fuzz-world.js";
import type { IdentityName } from "./fuzz-policy.js";
import { writeParts, type Op } from "./ops.js";
import { walkResponses, type Walk } from "./response-walk.js";
import { BASE_PATIENCE, type Patience, type Wait } from "./patience.js";

export interface FuzzCase {
  identity: IdentityName;
  ops: Op[];
  /** answers to the approval requests of the case, in the order they come (missing: reject) */
  approvals: boolean[];
}

export interface StreamEvidence {
  ops: Op[];
  messages: BackendMessage[];
  bytes: Buffer;
  walk: Walk;
  /** the stream stopped before every op was answered and the connection stayed open */
  stalled: boolean;
  closed?: string;
  /** the connection could not even be opened */
  connectError?: string;
  /** the silence after which the stream counted as stalled */
  idleMs?: number;
}

export interface ApprovalAnswer {
  id: string;
  approved: boolean;
  sql: string;
  error?: string;
}

export interface Evidence {
  c: FuzzCase;
  appName: string;
  /** the direct run's application_name (each run reports its own after a RESET or a rollback of a SET) */
  refAppName?: string;
  proxy: StreamEvidence;
  /** op indexes the proxy answered with its own denial (42501 naming a sluice rule, or a refusal) */
  denied: number[];
  reference?: StreamEvidence;
  executed: ExecutedStatement[];
  /** the plans the session's backend finished executing, nested ones included */
  plans: ExecutedPlan[];
  /** the backend pid of the proxied session, when the log named one */
  pid?: number;
  sessionId?: string;
  events: CloudEvent[];
  /** the raw JSON of the session's audit events */
  auditRaw: string[];
  /** audit messages (any session's) that came during the case and are not CloudEvents batches */
  auditProblems: string[];
  approvals: ApprovalAnswer[];
  health: { ok: boolean; error?: string };
  /** the waits that ran out during the case (a `W` may run out by design: an answer held back) */
  ranOut: Wait[];
  /** the waits the case ran with */
  patience: Patience;
}

/** how long a stream may stay silent before it counts as stalled, on an idle machine (see patience.ts) */
export const IDLE_MS = BASE_PATIENCE.idleMs;

/** An ErrorResponse the proxy made itself: a policy denial, an approval refusal, or an audit refusal. */
/** the analysis poison of relay-session.ts (`SELECT <token>`), as the server logs it */
const POISON_SELECT = /^SELECT sluice_denied_[0-9a-f]+$/;

export function isSluiceError(m: BackendMessage): boolean {
  if (m.code !== "E") return false;
  const f = errorFields(m);
  if (f.C === "42501") return /^sluice rule: /.test(f.D ?? "") || /sluice|approv/i.test(f.M ?? "");
  return f.C === "57P03" && /audit/i.test(f.M ?? "");
}

export const isApprovalNotice = (m: BackendMessage): boolean => m.code === "N" && /^approval required: request apr-/.test(errorFields(m).M ?? "");

const lastIsTerminal = (c: PgWireClient) => {
  const m = c.messages[c.messages.length - 1];
  return m !== undefined && (m.code === "Z" || m.code === "E");
};

async function drive(client: PgWireClient, ops: Op[], p: Patience, side: "proxy" | "reference", ranOut: Wait[]): Promise<StreamEvidence> {
  for (const part of writeParts(ops)) {
    client.send(part.bytes);
    const last = part.end === ops.length;
    // the answers to the ops so far are there when the walk of the prefix is complete; ops the
    // server skips after an error have none, and messages held back without a Flush never come:
    // a W after them waits its time and goes on
    const prefix = ops.slice(0, part.end);
    const answered = await client.waitFor(() => {
      if (last && !lastIsTerminal(client)) return false;
      return walkResponses(prefix, client.messages).complete;
    }, last ? p.idleMs : p.waitOpMs);
    if (!answered && !client.closed) ranOut.push(`${side}-${last ? "idle" : "wait-op"}`);
  }
  // anything the server or proxy sends after the last answer is a violation too: give it a moment
  await new Promise((r) => setTimeout(r, 20));
  const walk = walkResponses(ops, client.messages);
  const stalled = !walk.complete && !client.closed;
  const ev: StreamEvidence = { ops, messages: [...client.messages], bytes: client.bytes(), walk, stalled, closed: client.closed, idleMs: p.idleMs };
  await client.end();
  return ev;
}

/** The first answer of an op (asynchronous messages and approval notices skipped). */
function firstAnswer(msgs: readonly BackendMessage[]): BackendMessage | undefined {
  return msgs.find((m) => m.code !== "N" && m.code !== "S" && m.code !== "A");
}

export const POISON_SQL = "FZ_POISON (";

/**
 * The reference sequence: each op the proxy denied becomes one that fails at the same point with an
 * error of its own, as the proxy's substitutes do (a Query or Parse that does not parse, keeping an
 * existing named statement; an Execute or Bind of a portal or statement that does not exist).
 */
export function referenceOps(ops: readonly Op[], denied: readonly number[]): Op[] {
  const d = new Set(denied);
  return ops.map((op, k): Op => {
    if (!d.has(k)) return op;
    switch (op.t) {
      case "Q": return { t: "Q", sql: POISON_SQL };
      case "P": return { t: "P", name: op.name === "" ? "" : `fz_poison_${k}`, sql: POISON_SQL };
      case "B": return { t: "B", portal: op.portal, stmt: `fz_poison_${k}`, params: [] };
      case "E": return { t: "E", portal: `fz_poison_${k}`, maxRows: op.maxRows };
      case "D": return { t: "D", kind: op.kind, name: `fz_poison_${k}` };
      case "C": return op;
      default: return op;
    }
  });
}

/** PgWireClient.connect's own words when start-up did not finish in time */
const CONNECT_TIMED_OUT = /^no ReadyForQuery within \d+ ms/;

export async function runCase(world: FuzzWorld, c: FuzzCase, patience: Patience = BASE_PATIENCE): Promise<Evidence> {
  const ranOut: Wait[] = [];
  await world.reset();
  world.log.read();
  world.log.records.length = 0;
  const appName = world.nextAppName("fz");
  const approvals: ApprovalAnswer[] = [];
  const pendingApprovals: Promise<void>[] = [];
  let proxy: StreamEvidence;
  try {
    const client = await world.connectProxy(c.identity, appName, patience.connectMs);
    let asked = 0;
    client.onMessage = (m) => {
      if (!isApprovalNotice(m)) return;
      const id = /request (apr-[0-9a-z]+)/.exec(errorFields(m).M ?? "")?.[1] ?? "";
      const approved = c.approvals[asked++] ?? false;
      pendingApprovals.push((async () => {
        const a: ApprovalAnswer = { id, approved, sql: "" };
        approvals.push(a);
        try {
          a.sql = await world.approvalSql(id);
          await (approved ? world.approve(id) : world.reject(id));
        } catch (e) {
          a.error = (e as Error).message;
        }
      })());
    };
    proxy = await drive(client, c.ops, patience, "proxy", ranOut);
  } catch (e) {
    if (CONNECT_TIMED_OUT.test((e as Error).message)) ranOut.push("proxy-connect");
    const walk = walkResponses(c.ops, []);
    proxy = { ops: c.ops, messages: [], bytes: Buffer.alloc(0), walk, stalled: false, connectError: (e as Error).message };
  }
  await Promise.all(pendingApprovals);
  const denied: number[] = [];
  proxy.walk.perOp.forEach((msgs, k) => {
    const first = firstAnswer(msgs);
    if (first && isSluiceError(first)) denied.push(k);
  });

  let reference: StreamEvidence | undefined;
  let refAppName: string | undefined;
  if (!proxy.connectError) {
    const rops = referenceOps(c.ops, denied);
    try {
      refAppName = world.nextAppName("fz-ref");
      const rc = await world.connectReference(refAppName, patience.connectMs);
      reference = await drive(rc, rops, patience, "reference", ranOut);
    } catch (e) {
      // no reference answers: oracle 4 is inconclusive (never passed), and a re-run for time follows
      if (!CONNECT_TIMED_OUT.test((e as Error).message)) throw e;
      ranOut.push("reference-connect");
    }
  }

  try {
    await world.syncLog(patience.logMs);
  } catch (e) {
    // what the log holds so far is judged; oracles 1 and 2 then miss statements, which a re-run
    // with a longer wait tells apart from a server that did not run them
    if (!/^statement log: marker /.test((e as Error).message)) throw e;
    ranOut.push("statement-log");
  }
  const records = world.log.records;
  let pid: number | undefined;
  for (const [p, app] of backendsByApplication(records)) if (app === appName) pid = p;
  // the proxy's poison for a refusal that emulates a name clash parses (it fails in analysis, so
  // an aborted transaction answers 25P02 first): the server logs it, and it ran nothing
  const executed = pid === undefined ? [] : executedStatements(records, pid).filter((st) => !POISON_SELECT.test(st.text));
  const plans = pid === undefined ? [] : executedPlans(records, pid);

  let sessionId: string | undefined;
  let events: CloudEvent[] = [];
  try {
    const s = await world.audit.sessionEvents(appName, patience.auditMs);
    sessionId = s.sessionId;
    events = s.events;
    if (!s.ended) ranOut.push("audit-session-ended");
  } catch {
    // no session.started: the oracles report what is missing
    ranOut.push("audit-session-ended");
  }
  const auditRaw = events.map((e) => JSON.stringify(e));
  const auditProblems = world.audit.takeProblems();

  let health: Evidence["health"];
  try {
    const probe = Math.floor(Math.random() * 1e9);
    const r = await world.health.query(`SELECT ${probe}::bigint + 1 AS v`);
    health = String(r.rows[0]?.v) === String(probe + 1) ? { ok: true } : { ok: false, error: `answered ${JSON.stringify(r.rows)}` };
  } catch (e) {
    health = { ok: false, error: (e as Error).message };
  }
  return { c, appName, refAppName, proxy, denied, reference, executed, plans, pid, sessionId, events, auditRaw, auditProblems, approvals, health, ranOut, patience };
}

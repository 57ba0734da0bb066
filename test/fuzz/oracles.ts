/**
 * The oracles of the differential suite, pure functions over one case's Evidence:
 *
 *  1 allowed   every statement the server executed (its log) is allowed for the identity: its text
 *              re-decided with the real classifier and evaluate (@sluice/shared), SQL-level EXECUTE
 *              resolved from what the server itself says it ran; one that needs approval must have
 *              been approved by the fuzz approver, once per execution. And, without the classifier
 *              (which would share a misreading with the proxy), from the executor's own plans
 *              (auto_explain, nested statements included): an identity no policy lets write wrote
 *              nothing, and no plan touched a table a policy denies it
 *  2 recorded  every executed statement appears, in order, as statement.allowed in the session's
 *              audit events with the same text and the same bound parameters (masked as the
 *              masking rules say); an allowed event whose completion claims success was executed;
 *              each statement is two events, its decision and one statement.completed, which
 *              carries the captured rows itself up to 64 KiB (result.rows events only for larger
 *              captures), and what a simple Query's completion captured is what the client got;
 *              every audit message is a CloudEvents batch; the session's hash chain verifies
 *  3 no leak   no raw value of a masked column and no value of the denied table reached the client
 *              (every byte it received, error and notice fields included) or the audit stream, in
 *              any of the forms a query can turn it into (case, reversed, hex)
 *  4 protocol  the proxy's response stream answers every op in order (response-walk.ts) and equals
 *              what the server itself answers to the same sequence, where the proxy's denials are
 *              replaced by statements failing at the same point (run-case.ts referenceOps); and no
 *              Query or Parse the policy allows was denied
 *  5 healthy   another session's uncached statement is answered afterwards
 */
import { createHmac } from "node:crypto";
import {
  INLINE_RESULT_BYTES, joinChunks, SessionEventType, verifyChain,
  type CapturedResult, type CloudEvent, type ResultRowsData, type StatementAllowedData, type StatementCompletedData,
} from "@sluice/shared/events";
import { evaluate, tableMatches, type Bundle, type Decision, type DecisionContext, type PreparedLookup } from "@sluice/shared/policy";
import { classifySql, type Classification, type StatementInfo } from "@sluice/shared/sql";
import { commandTag, dataRow, errorFields, parameterStatus, readyStatus, rowDescription, type BackendMessage } from "../lib/pg-frames.js";
import type { ExecutedStatement } from "../lib/statement-log.js";
import type { Secrets } from "./fuzz-world.js";
import { IDLE_MS, isApprovalNotice, isSluiceError, type Evidence } from "./run-case.js";

export type OracleId = 1 | 2 | 3 | 4 | 5;

export interface Failure {
  oracle: OracleId;
  /** a short stable name of the kind of failure (findings are matched by oracle + kind) */
  kind: string;
  message: string;
}

export interface OracleContext {
  bundle: Bundle;
  ctx: DecisionContext;
  secrets: Secrets;
  hashKey: Buffer;
}

export interface Verdicts {
  failures: Failure[];
  /** checks that could not be decided exactly (counted in REPORT.md, never passed silently as checked) */
  inconclusive: string[];
  /** how many individual checks each oracle made */
  checks: Record<OracleId, number>;
  /** the proxy refused the sequence with a protocol-violation FATAL (allowed: it must not guess) */
  refused: boolean;
}

// ---------------------------------------------------------------------------------------------
// 1 allowed
// ---------------------------------------------------------------------------------------------

interface Known {
  info: StatementInfo;
  /** false when a message that (maybe) created or dropped it failed part-way */
  certain: boolean;
}

/** What the server has prepared under each name, as far as its own log tells. */
class ServerPrepared {
  private readonly byName = new Map<string, Known | { gone: true; certain: boolean }>();

  get(name: string): Known | { gone: true; certain: boolean } | undefined {
    return this.byName.get(name);
  }

  /** applies a message's PREPARE / DEALLOCATE / DISCARD ALL; uncertain when the message failed */
  observe(statements: readonly StatementInfo[], failed: boolean): void {
    for (const s of statements) {
      if (s.prepares !== undefined) this.byName.set(s.prepares, { info: s, certain: !failed });
      if (s.deallocates) {
        if (s.deallocates.all) {
          if (failed) for (const [k, v] of this.byName) this.byName.set(k, { ...v, certain: false });
          else this.byName.clear();
        } else {
          this.byName.set(s.deallocates.name, { gone: true, certain: !failed });
        }
      }
    }
  }
}

/** The statement a prepared statement's source text (the server's `prepare:` detail) defines under `name`. */
function preparedFromSource(source: string, name: string): StatementInfo | undefined {
  const c = classifySql(source);
  if (!c.ok) return undefined;
  const named = c.statements.filter((s) => s.prepares === name);
  if (named.length) return named[named.length - 1];
  // a statement made by a protocol Parse: its source is the statement itself
  return c.statements.length === 1 ? c.statements[0] : undefined;
}

/** `fz-read/tables.deny:public.secrets` → `tables.deny`; `default-deny` → itself */
const ruleKind = (rule: string): string => (rule.includes("/") ? rule.slice(rule.indexOf("/") + 1).split(":")[0]! : rule);

const truncated = (c: Classification, n: number): Classification => (c.ok ? { ok: true, statements: c.statements.slice(0, n) } : c);

function allowedOracle(ev: Evidence, o: OracleContext, v: Verdicts): void {
  const server = new ServerPrepared();
  const approvals = ev.approvals.filter((a) => a.approved && !a.error).map((a) => a.sql);
  for (const st of ev.executed) {
    v.checks[1]++;
    const c = classifySql(st.text);
    const executes = c.ok ? [...new Set(c.statements.flatMap((s) => s.executes ?? []))] : [];
    let uncertain = false;
    const lookup: PreparedLookup = {
      resolve(name) {
        // the server's own word first: the source of the first EXECUTE name that existed
        if (st.prepareDetail !== undefined && (executes.length === 1 || executes[0] === name)) {
          const p = preparedFromSource(st.prepareDetail, name);
          if (p) return p;
        }
        if (st.kind === "simple" && st.prepareDetail === undefined && executes.length >= 1) {
          // no detail: none of the message's EXECUTE names existed when it started
          return undefined;
        }
        const k = server.get(name);
        if (k && !k.certain) uncertain = true;
        return k && "info" in k ? k.info : undefined;
      },
    };
    let d: Decision = evaluate(o.bundle, o.ctx, c, lookup);
    if (d.action === "deny" && d.rule === "unknown-prepared-statement") {
      // the server cannot run an EXECUTE of a name it does not have: it failed there, and only the
      // statements before it ran
      if (st.error) d = d.statementIndex === 0 ? { ...d, action: "allow", rule: "nothing-ran" } : evaluate(o.bundle, o.ctx, truncated(c, d.statementIndex), lookup);
      else uncertain = true;
    }
    if (c.ok) server.observe(c.statements, st.error !== undefined);
    const what = `${st.kind === "simple" ? "statement" : st.fetch ? "execute fetch" : "execute"} ${JSON.stringify(st.text)}${st.params?.length ? ` params ${JSON.stringify(st.params)}` : ""}`;
    if (d.action === "allow") continue;
    if (d.action === "approve") {
      const i = approvals.indexOf(st.text);
      if (i >= 0) {
        // one approval covers one execution (a resumed portal is the same execution)
        if (!st.fetch) approvals.splice(i, 1);
        continue;
      }
      if (uncertain) v.inconclusive.push(`1: approval need of ${what} depends on a prepared statement of a failed message`);
      else v.failures.push({ oracle: 1, kind: "executed-without-approval", message: `the server executed ${what}, which needs approval (${d.rule}), without an approval` });
      continue;
    }
    if (uncertain) v.inconclusive.push(`1: ${what} is denied (${d.rule}) as decided with a prepared statement of a failed message`);
    else v.failures.push({ oracle: 1, kind: `executed-denied:${ruleKind(d.rule)}`, message: `the server executed ${what}, which policy denies for ${o.ctx.groups.join(",")}: ${d.rule}: ${d.reason}` });
  }
}

/** What the executor's plans may do for this identity, from the bundle's applicable policies. */
function planLimits(o: OracleContext): { mayWrite: boolean; deniedPatterns: string[] } {
  const applicable = o.bundle.policies.filter((p) =>
    (p.resources ?? []).some((r) => r === o.ctx.resource || r === "*") && (p.groups ?? []).some((g) => g === "*" || o.ctx.groups.includes(g)));
  return {
    mayWrite: applicable.some((p) => p.allow.includes("write") || (p.requireApproval ?? []).includes("write")),
    deniedPatterns: applicable.flatMap((p) => p.tables?.deny ?? []),
  };
}

function executorOracle(ev: Evidence, o: OracleContext, v: Verdicts): void {
  const lim = planLimits(o);
  for (const plan of ev.plans) {
    v.checks[1]++;
    for (const r of plan.relations) {
      const table = r.schema ? `${r.schema}.${r.name}` : r.name;
      if (r.write && !lim.mayWrite) {
        v.failures.push({ oracle: 1, kind: "executor-wrote-read-only", message: `the executor ran ${r.write} on ${table} for an identity no policy lets write, in ${JSON.stringify(plan.queryText)}` });
        return;
      }
      const denied = lim.deniedPatterns.find((p) => tableMatches(p, table, true));
      if (denied) {
        v.failures.push({ oracle: 1, kind: "executor-touched-denied-table", message: `the executor ${r.write ? `ran ${r.write} on` : "read"} ${table} (denied by ${denied}) in ${JSON.stringify(plan.queryText)}` });
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2 recorded
// ---------------------------------------------------------------------------------------------

const hashToken = (s: string, key: Buffer) => "h:" + createHmac("sha256", key).update(s, "utf8").digest("base64url").slice(0, 16);

/** The forms an audit event may give a parameter the server shows as `value`: text, or binary as `\x<hex>` */
function auditForms(value: string): string[] {
  const forms = [value];
  if (/^-?\d+$/.test(value)) {
    const n = BigInt(value);
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      const b = Buffer.alloc(4);
      b.writeInt32BE(Number(n));
      forms.push("\\x" + b.toString("hex"));
    }
    if (n >= -(2n ** 63n) && n < 2n ** 63n) {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(n);
      forms.push("\\x" + b.toString("hex"));
    }
  }
  forms.push("\\x" + Buffer.from(value, "utf8").toString("hex"));
  return forms;
}

function masksParams(bundle: Bundle, resource: string): boolean {
  return (bundle.masking ?? []).some((m) => (m.resources ?? []).some((r) => r === resource || r === "*"));
}

function sameParams(server: ReadonlyArray<string | null> | undefined, audit: ReadonlyArray<string | null> | undefined, masked: boolean, key: Buffer): boolean {
  const s = server ?? [];
  const a = audit ?? [];
  if (s.length !== a.length) return false;
  for (let i = 0; i < s.length; i++) {
    const sv = s[i]!, av = a[i]!;
    if (sv === null || av === null) {
      if (sv !== av) return false;
      continue;
    }
    const forms = auditForms(sv);
    if (!forms.some((f) => (masked ? hashToken(f, key) : f) === av)) return false;
  }
  return true;
}

const T = SessionEventType;

/**
 * The text the audit records for an Execute the server logged. The server logs a protocol Execute
 * of a statement made by SQL PREPARE with that statement's source text, which is the whole Query
 * when the PREPARE was one statement of several; the proxy records the PREPARE's own text, cut from
 * that Query (finding 025).
 */
function recordedText(st: Evidence["executed"][number]): string {
  if (st.kind !== "execute" || !st.statement) return st.text;
  const c = classifySql(st.text);
  if (!c.ok || c.statements.length < 2) return st.text;
  return c.statements.filter((s) => s.prepares === st.statement).at(-1)?.text ?? st.text;
}

/**
 * The statement.allowed events as the messages they record: one event, or the run of events of a
 * multi-statement Query's statements (part 1 … parts, consecutive statementIds), which the server
 * logs as one statement (the whole Query).
 */
interface AllowedMessage {
  first: StatementAllowedData;
  /** a multi-statement Query: its statements' texts, in order */
  texts?: string[];
  statementIds: number[];
}

export function allowedMessages(allowed: readonly StatementAllowedData[]): AllowedMessage[] {
  const out: AllowedMessage[] = [];
  for (let j = 0; j < allowed.length; j++) {
    const d = allowed[j]!;
    const n = d.parts ?? 0;
    if (d.part === 1 && n > 1) {
      const run = allowed.slice(j, j + n);
      if (run.length === n && run.every((x, i) => x.part === i + 1 && x.parts === n && x.statementId === d.statementId + i && x.protocol === "simple")) {
        out.push({ first: d, texts: run.map((x) => x.sql), statementIds: run.map((x) => x.statementId) });
        j += n - 1;
        continue;
      }
    }
    // a part outside a whole run stands alone, and so matches no message the server ran
    out.push({ first: d, texts: d.parts ? [d.sql] : undefined, statementIds: [d.statementId] });
  }
  return out;
}

/** whether the server's text of a simple Query is the message recorded by `m` */
const splits = new Map<string, Classification>();
function sameMessage(text: string, m: AllowedMessage): boolean {
  if (!m.texts) return m.first.sql === text;
  let c = splits.get(text);
  if (c === undefined) {
    if (splits.size > 10_000) splits.clear();
    splits.set(text, (c = classifySql(text)));
  }
  return c.ok && c.statements.length === m.texts.length && c.statements.every((s, i) => s.text === m.texts![i]);
}

function recordedOracle(ev: Evidence, o: OracleContext, v: Verdicts): void {
  const masked = masksParams(o.bundle, o.ctx.resource);
  const messages = allowedMessages((ev.events.filter((e) => e.type === T["statement.allowed"]) as CloudEvent<StatementAllowedData>[]).map((e) => e.data));
  const allowed = messages.map((m) => m.first);
  const completed = new Map<number, StatementCompletedData>();
  for (const e of ev.events) if (e.type === T["statement.completed"]) completed.set((e.data as StatementCompletedData).statementId, e.data as StatementCompletedData);
  const claimsSuccess = messages.map((m) =>
    m.statementIds.some((id) => {
      const done = completed.get(id);
      return done !== undefined && !done.error && done.commandTag !== undefined;
    }),
  );
  // an Execute of a portal that already ran to completion is logged, then refused: nothing ran; so
  // is one in an aborted transaction (25P02), e.g. of the failed portal a simple Query left behind.
  // The log ties a 25P02 to the last logged statement, which may be an Execute that completed before
  // a later message (a Describe) met the aborted block: a 25P02 excuses an Execute only when the
  // client got 25P02 for an Execute
  const execRefused = ev.c.ops.some((op, k) => op.t === "E" && (ev.proxy.walk.perOp[k] ?? []).some((m) => m.code === "E" && errorFields(m).C === "25P02"));
  const ex = ev.executed.filter((st) => !(st.kind === "execute" && ((st.error?.code === "55000" && /cannot be run/.test(st.error.message)) || (st.error?.code === "25P02" && execRefused))));
  const fits = (i: number, j: number): boolean => {
    const st = ex[i]!, d = allowed[j]!;
    const protocol = st.kind === "simple" ? "simple" : "extended";
    if (d.protocol !== protocol) return false;
    return protocol === "simple" ? sameMessage(st.text, messages[j]!) : d.sql === recordedText(st) && sameParams(st.params, d.params, masked, o.hashKey);
  };
  v.checks[2] += ex.length + allowed.length;
  // The embedding of the executed statements into the allowed events (in order, each event used
  // once; a resumed portal may share the event of the execution it continues) that leaves the
  // fewest events unmatched while they claim success: a greedy match could pair an execution with
  // an earlier event of the same text that in fact failed.
  const N = ex.length, A = allowed.length, INF = Number.MAX_SAFE_INTEGER;
  const cost: number[][] = Array.from({ length: N + 1 }, () => new Array<number>(A + 1).fill(INF));
  cost[N]![A] = 0;
  for (let j = A - 1; j >= 0; j--) cost[N]![j] = cost[N]![j + 1]! + (claimsSuccess[j] ? 1 : 0);
  for (let i = N - 1; i >= 0; i--) {
    for (let j = A - 1; j >= 0; j--) {
      let best = cost[i]![j + 1]! === INF ? INF : cost[i]![j + 1]! + (claimsSuccess[j] ? 1 : 0);
      if (fits(i, j)) best = Math.min(best, cost[i + 1]![j + 1]!);
      if (ex[i]!.fetch && j > 0 && fits(i, j - 1)) best = Math.min(best, cost[i + 1]![j]!);
      cost[i]![j] = best;
    }
  }
  if (cost[0]![0] === INF) {
    // name the first execution that no order-preserving match can place (earliest-match order)
    let cursor = 0;
    for (let i = 0; i < N; i++) {
      const st = ex[i]!;
      let found = -1;
      for (let j = cursor; j < A; j++) if (fits(i, j)) { found = j; break; }
      if (found >= 0) { cursor = found + 1; continue; }
      if (st.fetch && cursor > 0 && fits(i, cursor - 1)) continue;
      const near = allowed.slice(cursor).find((d) => d.protocol !== "simple" && d.sql === recordedText(st));
      v.failures.push({
        oracle: 2,
        kind: near ? "recorded-params-differ" : "executed-not-recorded",
        message: `the server executed ${st.kind} ${JSON.stringify(st.text)}${st.params?.length ? ` with ${JSON.stringify(st.params)}` : ""}, ` +
          (near ? `recorded with params ${JSON.stringify(near.params)}` : `which is not in the session's statement.allowed events after #${cursor} (${A} in all)`),
      });
      break;
    }
  } else if (cost[0]![0]! > 0 && ev.pid !== undefined) {
    // an allowed statement the server never ran must not be recorded as having succeeded
    let i = 0, j = 0;
    while (j < A) {
      const skip = cost[i]![j + 1]! === INF ? INF : cost[i]![j + 1]! + (claimsSuccess[j] ? 1 : 0);
      if (i < N && fits(i, j) && cost[i + 1]![j + 1] === cost[i]![j]) { i++; j++; continue; }
      if (i < N && ex[i]!.fetch && j > 0 && fits(i, j - 1) && cost[i + 1]![j] === cost[i]![j]) { i++; continue; }
      if (skip === cost[i]![j] && claimsSuccess[j]) {
        const d = allowed[j]!;
        v.failures.push({ oracle: 2, kind: "recorded-success-not-executed", message: `statement #${d.statementId} ${JSON.stringify(d.sql)} is recorded as completed (${completed.get(d.statementId)?.commandTag}) but the server never executed it` });
      }
      j++;
    }
  }
  capturedRows(ev, lifecycle(ev, v), v);
  for (const p of ev.auditProblems) v.failures.push({ oracle: 2, kind: "audit-message-not-a-batch", message: `an audit message is not a CloudEvents batch: ${p}` });
  const chain = verifyChain(ev.events);
  if (chain) v.failures.push({ oracle: 2, kind: "chain-broken", message: `the session's hash chain does not verify: ${JSON.stringify(chain)}` });
  if (!ev.events.some((e) => e.type === T["session.ended"])) v.failures.push({ oracle: 2, kind: "session-not-ended", message: "no session.ended event for the session" });
}

/** The sets one statement's completion captured: inline, or in the result.rows events before it. */
interface Completion {
  completed: StatementCompletedData;
  sets: CapturedResult[];
}

/**
 * Two events per statement (contract, "Events"): a statement.allowed is followed by exactly one
 * statement.completed of its statementId; captured rows ride inside it when together they are at
 * most INLINE_RESULT_BYTES, else each set is a result.rows event before it; counts add up. Returns
 * the completions by statementId for the row check.
 */
function lifecycle(ev: Evidence, v: Verdicts): Map<number, Completion> {
  const out = new Map<number, Completion>();
  const allowed = new Set<number>();
  const pendingRows = new Map<number, ResultRowsData[]>();
  const fail = (kind: string, message: string) => v.failures.push({ oracle: 2, kind, message });
  for (const e of joinChunks(ev.events)) {
    const id = (e.data as { statementId?: number } | undefined)?.statementId;
    if (id === undefined) continue;
    if (e.type === T["statement.allowed"]) {
      v.checks[2]++;
      if (allowed.has(id)) fail("allowed-twice", `statement #${id} has two statement.allowed events`);
      allowed.add(id);
    } else if (e.type === T["result.rows"]) {
      if (!allowed.has(id)) fail("completion-without-decision", `result.rows of statement #${id} without a statement.allowed before it`);
      else if (out.has(id)) fail("rows-after-completion", `result.rows of statement #${id} after its statement.completed`);
      else pendingRows.set(id, [...(pendingRows.get(id) ?? []), e.data as ResultRowsData]);
    } else if (e.type === T["statement.completed"]) {
      const d = e.data as StatementCompletedData;
      if (!allowed.has(id)) fail("completion-without-decision", `statement.completed of statement #${id} without a statement.allowed before it`);
      else if (out.has(id)) fail("completed-twice", `statement #${id} has two statement.completed events`);
      const rows = pendingRows.get(id) ?? [];
      pendingRows.delete(id);
      const sets = [...(d.results ?? []), ...rows];
      const bytes = sets.reduce((n, r) => n + r.recordedBytes, 0);
      if (d.results?.length && rows.length) fail("rows-inline-contract", `statement #${id} has captured rows both inside statement.completed and in result.rows events`);
      else if (rows.length && bytes <= INLINE_RESULT_BYTES) fail("rows-inline-contract", `statement #${id} has result.rows events for a capture of ${bytes} bytes, which fits inside statement.completed (${INLINE_RESULT_BYTES})`);
      else if (d.results?.length && bytes > INLINE_RESULT_BYTES) fail("rows-inline-contract", `statement #${id} carries ${bytes} bytes of rows inside statement.completed (at most ${INLINE_RESULT_BYTES})`);
      for (const r of sets) {
        if (r.recorded !== r.values.length || r.truncated !== r.rows > r.recorded || r.recorded > r.rows) {
          fail("captured-counts", `statement #${id}: a captured set says rows ${r.rows}, recorded ${r.recorded}, truncated ${r.truncated}, with ${r.values.length} values`);
          break;
        }
      }
      out.set(id, { completed: d, sets });
    }
  }
  for (const id of pendingRows.keys()) fail("rows-after-completion", `result.rows of statement #${id} with no statement.completed after them`);
  if (ev.events.some((e) => e.type === T["session.ended"])) {
    for (const id of allowed) if (!out.has(id)) fail("allowed-never-completed", `statement #${id} has a statement.allowed event and no statement.completed`);
  }
  return out;
}

/** What the client got for each statement of one op, in order: its rows (undefined: no row description) and whether it completed. */
function clientStatements(msgs: readonly BackendMessage[]): Array<{ rows?: Array<Array<string | null>>; completed: boolean }> {
  const out: Array<{ rows?: Array<Array<string | null>>; completed: boolean }> = [];
  let formats: number[] = [];
  let rows: Array<Array<string | null>> | undefined;
  for (const m of msgs) {
    if (m.code === "T") {
      formats = rowDescription(m).map((f) => f.format);
      rows = [];
    } else if (m.code === "D" && rows) {
      rows.push(dataRow(m).map((x, i) => (x === null ? null : formats[i] === 1 ? "\\x" + x.toString("hex") : x.toString("utf8"))));
    } else if (m.code === "C" || m.code === "E" || m.code === "I") {
      out.push({ rows, completed: m.code !== "E" });
      rows = undefined;
    } else if (m.code === "Z") break;
  }
  return out;
}

/**
 * What a simple Query's completions captured is what the client received: each statement (of a
 * multi-statement Query, each its own statement) that completed has one captured set when it
 * returned rows and none otherwise, the set's values the first rows the client got, its `rows` and
 * the completion's `rows` the exact count. Judged only for a Query whose text no other Query of the
 * case has, recorded by exactly one message of statement.allowed events, so an event cannot be
 * paired with the wrong Query.
 */
function capturedRows(ev: Evidence, completions: ReadonlyMap<number, Completion>, v: Verdicts): void {
  const allowed = joinChunks(ev.events).filter((e) => e.type === T["statement.allowed"]).map((e) => e.data as StatementAllowedData).filter((d) => d.protocol === "simple");
  const messages = allowedMessages(allowed);
  const denied = new Set(ev.denied);
  const queries = ev.c.ops.flatMap((op, k) => (op.t === "Q" ? [{ sql: op.sql, k }] : []));
  for (const { sql, k } of queries) {
    if (denied.has(k) || queries.filter((q) => q.sql === sql).length !== 1) continue;
    const ms = messages.filter((m) => sameMessage(sql, m));
    const msgs = ev.proxy.walk.perOp[k];
    if (ms.length !== 1 || !msgs?.length) continue;
    const got = clientStatements(msgs);
    const ids = ms[0]!.statementIds;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const done = completions.get(id);
      const g = got[i];
      if (!done || !g?.completed) continue;
      v.checks[2]++;
      const text = ms[0]!.texts?.[i] ?? sql;
      const fail = (message: string) => v.failures.push({ oracle: 2, kind: "recorded-rows-differ", message: `statement #${id} ${JSON.stringify(text)}: ${message}` });
      const want = g.rows?.length ? 1 : 0;
      if (done.sets.length !== want) {
        fail(`the audit captured ${done.sets.length} result sets, the client got ${want} with rows`);
        continue;
      }
      if (g.rows && done.completed.rows !== g.rows.length) {
        fail(`the completion says ${done.completed.rows} rows, the client got ${g.rows.length}`);
        continue;
      }
      if (!want) continue;
      const c = done.sets[0]!, r = g.rows!;
      if (c.rows !== r.length) {
        fail(`the captured set says ${c.rows} rows, the client got ${r.length}`);
        continue;
      }
      const at = c.values.findIndex((row, x) => JSON.stringify(row) !== JSON.stringify(r[x]));
      if (at >= 0) fail(`row ${at + 1}: the audit captured ${JSON.stringify(c.values[at]).slice(0, 120)}, the client got ${JSON.stringify(r[at] ?? null).slice(0, 120)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3 no leak
// ---------------------------------------------------------------------------------------------

const windows = (s: string, n: number): string[] => Array.from({ length: Math.max(0, s.length - n + 1) }, (_, i) => s.slice(i, i + n));

/** Needles for every secret: windows of its random part, reversed too, and their hex encodings. */
export function leakNeedles(s: Secrets): Array<{ needle: string; what: string }> {
  const out: Array<{ needle: string; what: string }> = [];
  const add = (core: string, n: number, what: string) => {
    for (const w of [...windows(core, n), ...windows([...core].reverse().join(""), n)]) {
      out.push({ needle: w, what }, { needle: Buffer.from(w, "utf8").toString("hex"), what: `${what} (hex)` });
    }
  };
  s.emails.forEach((e, i) => add(e.slice(3, e.indexOf("@")), 8, `customers.email #${i + 1}`));
  s.cards.forEach((c, i) => add(c, 12, `customers.card #${i + 1}`));
  s.tokens.forEach((t, i) => add(t.slice(3), 8, `secrets.token #${i + 1}`));
  return out;
}

const MESSAGE_NAMES: Record<string, string> = { D: "DataRow", E: "ErrorResponse", N: "NoticeResponse", d: "CopyData", T: "RowDescription", C: "CommandComplete", S: "ParameterStatus", A: "NotificationResponse" };

function leakOracle(ev: Evidence, o: OracleContext, v: Verdicts): void {
  const needles = leakNeedles(o.secrets);
  const find = (text: string) => {
    const t = text.toLowerCase();
    for (const n of needles) {
      const at = t.indexOf(n.needle);
      if (at >= 0) return { n, around: t.slice(Math.max(0, at - 60), at + n.needle.length + 20).replace(/[^\x20-\x7e]/g, ".") };
    }
    return undefined;
  };
  // the client: message by message, so the finding names the channel (a row, an error field, …)
  v.checks[3]++;
  for (const m of ev.proxy.messages) {
    const hit = find(m.raw.toString("latin1"));
    if (!hit) continue;
    const channel = MESSAGE_NAMES[m.code] ?? `'${m.code}'`;
    v.failures.push({ oracle: 3, kind: `raw-value-to-client:${channel}`, message: `${hit.n.what} reached the client in a ${channel}: …${hit.around}…` });
    break;
  }
  v.checks[3]++;
  for (const raw of ev.auditRaw) {
    const hit = find(raw);
    if (!hit) continue;
    const type = (JSON.parse(raw) as { type?: string }).type ?? "?";
    v.failures.push({ oracle: 3, kind: `raw-value-in-audit:${type.replace(/^dev\.sluice\.|\.v1$/g, "")}`, message: `${hit.n.what} is in the audit event ${type}: …${hit.around}…` });
    break;
  }
}

// ---------------------------------------------------------------------------------------------
// 4 protocol
// ---------------------------------------------------------------------------------------------

const MASKED_VALUE = /h:[A-Za-z0-9_-]{16}/;

/** a message's code, with its SQLSTATE for an error or notice ("-" for none) */
function shortMsg(m: BackendMessage | undefined): string {
  if (!m) return "-";
  return m.code === "E" || m.code === "N" ? `${m.code}${errorFields(m).C ?? ""}` : m.code;
}

function describeMsg(m: BackendMessage | undefined): string {
  if (!m) return "nothing";
  switch (m.code) {
    case "E":
    case "N": {
      const f = errorFields(m);
      return `${m.code === "E" ? "ErrorResponse" : "NoticeResponse"} ${f.C} ${JSON.stringify(f.M)}`;
    }
    case "C": return `CommandComplete ${JSON.stringify(commandTag(m))}`;
    case "Z": return `ReadyForQuery ${readyStatus(m)}`;
    case "T": return `RowDescription [${rowDescription(m).map((f) => f.name).join(",")}]`;
    case "D": return `DataRow(${dataRow(m).length})`;
    case "S": {
      const [name, value] = parameterStatus(m);
      return `ParameterStatus ${name}=${JSON.stringify(value)}`;
    }
    default: return `'${m.code}'`;
  }
}

/** Why a proxy message differs from the reference's, or undefined when they agree. */
function differs(p: BackendMessage, r: BackendMessage, deniedOp: boolean, apps?: { proxy: string; reference?: string }): string | undefined {
  if (p.code !== r.code) return "different message";
  switch (p.code) {
    case "E": {
      if (deniedOp && isSluiceError(p)) return undefined;
      return errorFields(p).C === errorFields(r).C ? undefined : "different SQLSTATE";
    }
    case "N":
      return errorFields(p).C === errorFields(r).C ? undefined : "different notice";
    case "C":
      return commandTag(p) === commandTag(r) ? undefined : "different command tag";
    case "Z":
      return readyStatus(p) === readyStatus(r) ? undefined : "different transaction status";
    case "T": {
      const a = rowDescription(p), b = rowDescription(r);
      return a.length === b.length && a.every((f, i) => f.name === b[i]!.name && f.typeOid === b[i]!.typeOid && f.format === b[i]!.format) ? undefined : "different row description";
    }
    case "D": {
      const a = dataRow(p), b = dataRow(r);
      if (a.length !== b.length) return "different column count";
      for (let i = 0; i < a.length; i++) {
        const x = a[i], y = b[i];
        if (x === null || y === null) {
          if (x !== y) return `column ${i + 1}: NULL on one side only`;
          continue;
        }
        if (!x.equals(y) && !MASKED_VALUE.test(x.toString("latin1"))) return `column ${i + 1}: different value`;
      }
      return undefined;
    }
    case "d":
      return p.raw.equals(r.raw) || MASKED_VALUE.test(p.raw.toString("latin1")) ? undefined : "different COPY data";
    case "S": {
      // a free-form setting the server reports after statements that may have read masked data is
      // emptied by the masker (result-masker.ts screenParameter: set_config could carry a value, and
      // the server reports changes only before ReadyForQuery, so not tied to one statement); a
      // classified value in it is masked. Oracle 3 searches the value either way.
      const [pn, pv] = parameterStatus(p), [rn, rv] = parameterStatus(r);
      if (pn !== rn) return "a different setting";
      // each run starts with its own application_name, and reports it again when a SET of it is
      // rolled back or RESET
      if (pn === "application_name" && apps && pv === apps.proxy && rv === apps.reference) return undefined;
      return pv === rv || pv === "" || MASKED_VALUE.test(pv) ? undefined : "a different value of the setting";
    }
    default:
      return p.raw.equals(r.raw) ? undefined : "different content";
  }
}

/**
 * Both streams stalled waiting for the answer of the same op, with nothing out of protocol: the
 * server too waits for what the client never sends (a COPY FROM STDIN left open).
 */
export function serverWaitsToo(ev: Pick<Evidence, "proxy" | "reference">): boolean {
  const p = ev.proxy, r = ev.reference;
  return r !== undefined && p.stalled && r.stalled && !p.walk.violation && !p.walk.fatal && !r.walk.violation && !r.walk.fatal && p.walk.waitingFor === r.walk.waitingFor;
}

function protocolOracle(ev: Evidence, v: Verdicts): void {
  const p = ev.proxy;
  v.checks[4]++;
  if (p.connectError) {
    v.failures.push({ oracle: 4, kind: "connect-failed", message: `the proxy refused the connection: ${p.connectError}` });
    return;
  }
  if (p.walk.violation) {
    v.failures.push({ oracle: 4, kind: "response-out-of-protocol", message: `the proxy's response stream does not fit the ops: ${p.walk.violation}` });
    return;
  }
  let upTo = p.walk.perOp.length;
  if (p.walk.fatal) {
    if (p.walk.fatal.code === "08P01") v.refused = true;
    else v.failures.push({ oracle: 4, kind: "fatal", message: `the proxy ended the session at op ${p.walk.fatal.at} with FATAL ${p.walk.fatal.code}: ${p.walk.fatal.message}` });
    upTo = p.walk.fatal.at + 1;
  } else if (!p.walk.complete) {
    const k = p.walk.waitingFor ?? -1;
    upTo = k + 1;
    // the server itself waits at the same op for what the client never sends (a COPY FROM STDIN
    // the case leaves open, as a minimised case can): the proxy does what the server does, and the
    // answers before it are still compared
    if (serverWaitsToo(ev)) v.inconclusive.push(`4: the server itself waits for the client from op ${k} (${ev.c.ops[k]?.t}); the ops after it are not compared`);
    else v.failures.push({ oracle: 4, kind: p.stalled ? "no-answer" : "closed-early", message: `op ${k} (${ev.c.ops[k]?.t}) was never answered: ${p.stalled ? `nothing for ${(p.idleMs ?? IDLE_MS) / 1000} s` : `connection ${p.closed}`}` });
  }
  const r = ev.reference;
  if (!r) return;
  if (!serverWaitsToo(ev) && (r.walk.violation || !r.walk.complete)) {
    v.inconclusive.push(`4: the reference run itself did not complete (${r.walk.violation ?? `waiting for op ${r.walk.waitingFor}`})`);
    return;
  }
  const denied = new Set(ev.denied);
  for (let k = 0; k < upTo; k++) {
    v.checks[4]++;
    const pm = p.walk.perOp[k]!.filter((m) => !isApprovalNotice(m));
    const rm = r.walk.perOp[k]!;
    const fatalHere = p.walk.fatal && k === p.walk.fatal.at;
    const n = fatalHere ? pm.length - 1 : Math.max(pm.length, rm.length);
    for (let i = 0; i < n; i++) {
      const why = pm[i] && rm[i] ? differs(pm[i]!, rm[i]!, denied.has(k), { proxy: ev.appName, reference: ev.refAppName }) : "missing message";
      if (why) {
        // the proxy answered with the error the server gives too, but before what the server
        // ran first (a multi-statement Query refused whole by the proxy's emulation)
        const x = pm[i];
        const earlier = x?.code === "E" && rm[i]?.code !== "E" && rm.slice(i).some((m) => m.code === "E" && errorFields(m).C === errorFields(x).C);
        v.failures.push({
          oracle: 4,
          // the two messages' codes (and SQLSTATEs) are part of the kind, so an open finding
          // tolerates its own difference in a long run, not every difference at that message
          kind: `${earlier ? "fails-earlier-than-server" : "differs-from-server"}@${ev.c.ops[k]!.t}:${shortMsg(pm[i])}/${shortMsg(rm[i])}`,
          message: `op ${k} (${ev.c.ops[k]!.t}) answer ${i + 1}: proxy sent ${describeMsg(pm[i])}, the server answers ${describeMsg(rm[i])} (${why})`,
        });
        return;
      }
    }
  }
}

/**
 * A denial the policy does not call for: a Query or Parse the proxy answered with its own 42501
 * whose text policy allows for the identity. Only texts whose decision needs no session state (no
 * SQL EXECUTE) are judged; a statement needing approval may be refused when the approver rejected.
 */
function overDenialOracle(ev: Evidence, o: OracleContext, v: Verdicts): void {
  const masked = masksParams(o.bundle, o.ctx.resource);
  for (const k of ev.denied) {
    const op = ev.c.ops[k]!;
    if (op.t !== "Q" && op.t !== "P") continue;
    const c = classifySql(op.sql);
    if (c.ok && c.statements.some((s) => s.executes?.length)) continue;
    v.checks[4]++;
    const d = evaluate(o.bundle, o.ctx, c);
    const f = ev.proxy.walk.perOp[k]!.find((m) => m.code === "E");
    // refused because its results could not be masked (design: data path 7), before it ran
    if (f && errorFields(f).D === "sluice rule: masking" && masked && c.ok && c.statements.some(unmaskableResult)) continue;
    if (d.action === "allow") {
      v.failures.push({ oracle: 4, kind: "denied-allowed-statement", message: `op ${k} (${op.t}) ${JSON.stringify(op.sql)} is allowed by policy (${d.rule}) but the proxy denied it: ${f ? errorFields(f).M : "?"}` });
      return;
    }
  }
}

/**
 * A statement whose results the masker cannot mask on a resource with masking rules, so a refusal
 * of it is the contract's (data path 7: "masked or denied, never passed raw"): COPY TO STDOUT in
 * another format than plain text (the fuzz policy's classifiers scan every copied column, so any such
 * COPY has something to mask), a BINARY cursor.
 */
function unmaskableResult(s: StatementInfo): boolean {
  if (s.kind === "CopyStmt") return /\bTO\s+STDOUT\b/i.test(s.text) && /\b(BINARY|CSV|DELIMITER|NULL|QUOTE|ESCAPE|ENCODING|FORCE_QUOTE)\b/i.test(s.text.replace(/^[\s\S]*\bTO\s+STDOUT\b/i, ""));
  return s.kind === "DeclareCursorStmt" && /\bBINARY\b/i.test(s.text.replace(/\bFOR\b[\s\S]*$/i, ""));
}

// ---------------------------------------------------------------------------------------------

export function judge(ev: Evidence, o: OracleContext): Verdicts {
  const v: Verdicts = { failures: [], inconclusive: [], checks: { 1: 0, 2: 0, 3: 0, 4: 0, 5: 0 }, refused: false };
  if (ev.pid === undefined && ev.executed.length === 0 && !ev.proxy.connectError) {
    v.inconclusive.push("1,2: the statement log named no backend for the session");
  }
  allowedOracle(ev, o, v);
  executorOracle(ev, o, v);
  recordedOracle(ev, o, v);
  leakOracle(ev, o, v);
  protocolOracle(ev, v);
  overDenialOracle(ev, o, v);
  v.checks[5]++;
  if (!ev.health.ok) v.failures.push({ oracle: 5, kind: "node-unhealthy", message: `another session's statement failed afterwards: ${ev.health.error}` });
  return v;
}

/**
 * The payloads of the session events, built from what the proxy's hooks hand the observer. Pure
 * functions (the masker is passed in): no clock, no I/O, no state beyond a cache keyed by the
 * decision cache's own objects.
 *
 * Payload members are assigned in canonical (sorted) order, optional ones only when present, so
 * canonicalJson takes its native JSON.stringify path; object spreads read better but cost the hot
 * path (test/bench/audit-cost.bench.ts measures it).
 */
import {
  INLINE_RESULT_BYTES, canonicalJson,
  type CapturedResult, type ResultColumn, type ResultRowsData, type SessionDenyStage, type SessionDeniedData, type SessionStartedData,
  type StatementCompletedData, type StatementData, type StatementPart,
} from "@sluice/shared/events";
import type {
  BoundParam, ColumnMask, ConnectDenial, ConnectionInfo, RowField, SessionInfo, StatementCompletion, StatementRecord,
} from "../session/session-hooks.js";
import { decodeDataRow } from "../wire/decode.js";
import type { InputMasker } from "./input-masker.js";

const JWT_LIKE = /^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}$/;
const SKIP_CLAIMS = new Set(["nonce", "at_hash", "c_hash", "s_hash", "sid", "azp_token", "token"]);

/**
 * Claims worth recording: scalar or string-array values of identity-describing claims. Anything that
 * looks like a token is left out, so no JWT (or embedded one) reaches the stream.
 */
export function selectClaims(claims: Readonly<Record<string, unknown>>): Record<string, string | number | boolean | string[]> {
  const out: Record<string, string | number | boolean | string[]> = {};
  const ok = (s: string) => s.length <= 512 && !JWT_LIKE.test(s);
  for (const [k, v] of Object.entries(claims)) {
    if (SKIP_CLAIMS.has(k.toLowerCase())) continue;
    if (typeof v === "string") { if (ok(v)) out[k] = v; }
    else if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
    else if (typeof v === "boolean") out[k] = v;
    else if (Array.isArray(v) && v.length <= 64 && v.every((x) => typeof x === "string" && ok(x))) out[k] = v as string[];
  }
  return out;
}

/** A value as text: text-format bytes as UTF-8, binary as `\x<hex>` (bytea escape form). */
function renderValue(v: Buffer | null, format: number): string | null {
  if (v === null) return null;
  return format === 1 ? "\\x" + v.toString("hex") : v.toString("utf8");
}

function renderParam(p: BoundParam): string | null {
  return renderValue(p.value, p.format === "binary" ? 1 : 0);
}

/**
 * The decision's part of a statement event. Decisions come from the decision cache, so the same
 * object recurs for every execution of a statement (and of statements of its shape, whose
 * decisions differ only in texts, which the summary leaves out: keyed by `decidedAs`): its summary
 * is built once.
 */
const summaries = new WeakMap<StatementRecord["decision"], { statements: StatementPart[]; tables: StatementData["tables"]; risks: StatementPart["risks"] }>();
function summaryOf(decision: StatementRecord["decision"]) {
  const d = decision.decidedAs ?? decision;
  let sum = summaries.get(d);
  if (!sum) {
    const read = new Set<string>(), write = new Set<string>(), risks = new Set<StatementPart["risks"][number]>();
    const statements: StatementPart[] = d.statements.map((s, i) => {
      s.tables.read.forEach((t) => read.add(t));
      s.tables.write.forEach((t) => write.add(t));
      s.risks.forEach((r) => risks.add(r));
      const part: StatementPart = { class: s.class, functions: [...s.functions], kind: s.kind, risks: [...s.risks], tables: { read: [...s.tables.read], write: [...s.tables.write] } };
      // the statement's own rule (a statement after a denied one was never judged and has none)
      const rule = d.statementRules?.[i];
      if (rule !== undefined) part.rule = rule;
      return part;
    });
    sum = { statements, tables: { read: [...read], write: [...write] }, risks: [...risks] };
    summaries.set(d, sum);
  }
  return sum;
}

/**
 * What the statement events (allowed, blocked, approval_requested) say of a statement, its SQL text
 * and bound parameters through `masker`.
 */
export function statementEventData(masker: InputMasker, session: SessionInfo, stmt: StatementRecord): StatementData {
  const d = stmt.decision;
  const sum = summaryOf(d);
  const data = { class: d.statementClass, decision: d.action } as StatementData;
  if (stmt.params) data.params = masker.params(session, stmt.params.map(renderParam));
  if (stmt.part !== undefined) data.part = stmt.part;
  if (stmt.parts !== undefined) data.parts = stmt.parts;
  if (d.policy !== undefined) data.policy = d.policy;
  if (stmt.portalName) data.portal = stmt.portalName;
  if (stmt.statementName) data.preparedName = stmt.statementName;
  data.protocol = stmt.protocol === "simple" ? "simple" : "extended";
  if (d.reason !== undefined) data.reason = d.reason;
  data.risks = sum.risks;
  data.rule = d.rule;
  data.sql = masker.text(session, stmt.sql);
  data.statementId = stmt.seq;
  data.statements = sum.statements;
  data.tables = sum.tables;
  return data;
}

/** The parts of a statement event's canonical text that depend on its decision only. */
interface DecisionText {
  /** `{"class":…,"decision":…` */
  head: string;
  /** `,"policy":…` or "" */
  policy: string;
  /** `,"reason":…` or "" */
  reason: string;
  /** `,"risks":…,"rule":…` */
  risksRule: string;
  /** `,"statements":…,"tables":…}` */
  tail: string;
}

const decisionTexts = new WeakMap<StatementRecord["decision"], DecisionText>();
function decisionText(decision: StatementRecord["decision"]): DecisionText {
  const d = decision.decidedAs ?? decision;
  let t = decisionTexts.get(d);
  if (!t) {
    const sum = summaryOf(d);
    t = {
      head: `{"class":${canonicalJson(d.statementClass)},"decision":${canonicalJson(d.action)}`,
      policy: d.policy !== undefined ? `,"policy":${canonicalJson(d.policy)}` : "",
      reason: d.reason !== undefined ? `,"reason":${canonicalJson(d.reason)}` : "",
      risksRule: `,"risks":${canonicalJson(sum.risks)},"rule":${canonicalJson(d.rule)}`,
      tail: `,"statements":${canonicalJson(sum.statements)},"tables":${canonicalJson(sum.tables)}}`,
    };
    decisionTexts.set(d, t);
  }
  return t;
}

/**
 * The canonical JSON text (RFC 8785) of `statementEventData(masker, session, stmt)`, written from
 * parts cached per decision: the decision cache hands out the same Decision for every execution of a
 * statement, so its tables, risks and statement parts are serialized once, not per execution. The
 * audit hot path's statement.allowed payload; a property test holds it equal to
 * canonicalJson(statementEventData(…)).
 */
export function statementEventJson(masker: InputMasker, session: SessionInfo, stmt: StatementRecord): string {
  const t = decisionText(stmt.decision);
  let s = t.head;
  // member order is RFC 8785's: class, decision, params, part, parts, policy, portal, preparedName, protocol, reason, risks, rule, sql, statementId, statements, tables
  if (stmt.params) s += `,"params":${JSON.stringify(masker.params(session, stmt.params.map(renderParam)))}`;
  if (stmt.part !== undefined) s += `,"part":${num(stmt.part)}`;
  if (stmt.parts !== undefined) s += `,"parts":${num(stmt.parts)}`;
  s += t.policy;
  if (stmt.portalName) s += `,"portal":${JSON.stringify(stmt.portalName)}`;
  if (stmt.statementName) s += `,"preparedName":${JSON.stringify(stmt.statementName)}`;
  s += stmt.protocol === "simple" ? `,"protocol":"simple"` : `,"protocol":"extended"`;
  return `${s}${t.reason}${t.risksRule},"sql":${JSON.stringify(masker.text(session, stmt.sql))},"statementId":${num(stmt.seq)}${t.tail}`;
}

export function sessionStartedData(conn: ConnectionInfo): SessionStartedData {
  const d = {} as SessionStartedData;
  if (conn.applicationName !== undefined) d.applicationName = conn.applicationName;
  d.clientAddress = conn.clientAddress;
  d.node = conn.nodeId;
  d.region = conn.region;
  d.resource = conn.resource ?? "";
  d.tls = { enabled: conn.tls };
  if (conn.clientUser !== undefined) d.user = conn.clientUser;
  return d;
}

function denyStage(sqlstate: string, reason: string): { stage: SessionDenyStage; code: string } {
  switch (sqlstate) {
    case "28P01": return { stage: "authentication", code: "token_rejected" };
    case "28000": return /TLS/i.test(reason) ? { stage: "startup", code: "tls_required" } : { stage: "authorization", code: "no_policy" };
    case "3D000": return { stage: "authorization", code: "unknown_resource" };
    case "57P03": return /audit/i.test(reason) ? { stage: "audit", code: "audit_unavailable" } : { stage: "startup", code: "not_ready" };
    case "08006": return /timed out/i.test(reason) ? { stage: "startup", code: "timeout" } : { stage: "upstream", code: "upstream_unavailable" };
    case "08P01": return { stage: "startup", code: "protocol_violation" };
    default: return { stage: "startup", code: `sqlstate_${sqlstate}` };
  }
}

export function sessionDeniedData(denial: ConnectDenial): SessionDeniedData {
  // the refusal table's code and stage (net/refusals.ts); read back from the SQLSTATE only for a caller that gives none
  const { stage, code } = denial.code !== undefined && denial.stage !== undefined ? { stage: denial.stage, code: denial.code } : denyStage(denial.sqlstate, denial.reason);
  const d = {} as SessionDeniedData;
  if (denial.issuer !== undefined) d.issuer = denial.issuer;
  d.message = denial.reason;
  d.reason = code;
  d.sqlstate = denial.sqlstate;
  d.stage = stage;
  if (denial.subject !== undefined) d.subject = denial.subject;
  return d;
}

/** A result set being captured: its columns, the rows so far and their field bytes. */
export interface ResultCapture {
  columns: ResultColumn[];
  values: Array<Array<string | null>>;
  recordedBytes: number;
}

/** The columns of a result as the events describe them: masked ones name their rule, never a value. */
export function resultColumns(fields: readonly RowField[], masks: readonly ColumnMask[] | undefined): ResultColumn[] {
  return fields.map((f, i) => {
    const m = masks?.find((x) => x.index === i);
    if (!m) return { name: f.name, typeOid: f.typeOid };
    const col = (m.classifiers?.length ? { classifiers: [...m.classifiers] } : {}) as ResultColumn;
    col.maskRule = m.rule;
    if (m.strategy) col.maskStrategy = m.strategy;
    col.masked = true;
    col.name = f.name;
    col.typeOid = f.typeOid;
    return col;
  });
}

/**
 * Captures (masked) DataRow frames into `into` until the statement's byte budget is spent; returns
 * the bytes still left. Rows past the budget are counted by the completion, not recorded.
 *
 * Each value is read from the frame straight into its text, without decodeDataRow's array of
 * Buffer views per row (garbage on the hot path, a row per statement at least); a frame that does
 * not hold together is handed to decodeDataRow, whose WireError says what is wrong with it.
 */
export function captureRows(into: ResultCapture, fields: readonly RowField[], frames: readonly Buffer[], budgetBytes: number): number {
  let left = budgetBytes;
  for (const frame of frames) {
    const size = dataRowValueBytes(frame);
    if (size < 0) {
      // a frame that does not hold together: decodeDataRow says why (it throws)
      const vals = decodeDataRow(frame);
      throw new Error(`DataRow of ${vals.length} values not read`);
    }
    if (size > left) break;
    left -= size;
    into.recordedBytes += size;
    const n = frame.readInt16BE(5);
    const row = new Array<string | null>(n > 0 ? n : 0);
    let at = 7;
    for (let i = 0; i < n; i++) {
      const len = frame.readInt32BE(at);
      at += 4;
      if (len < 0) { row[i] = null; continue; }
      row[i] = (fields[i]?.format ?? 0) === 1 ? "\\x" + frame.toString("hex", at, at + len) : frame.toString("utf8", at, at + len);
      at += len;
    }
    into.values.push(row);
  }
  return left;
}

/** The bytes of a DataRow frame's values, or -1 when the frame does not hold together (what decodeDataRow checks). */
function dataRowValueBytes(f: Buffer): number {
  if (f.length < 7 || f[0] !== 0x44 || f.readInt32BE(1) + 1 !== f.length) return -1;
  const n = f.readInt16BE(5);
  let at = 7;
  let size = 0;
  for (let i = 0; i < n; i++) {
    if (at + 4 > f.length) return -1;
    const len = f.readInt32BE(at);
    at += 4;
    if (len < 0) continue;
    if (at + len > f.length) return -1;
    size += len;
    at += len;
  }
  return at === f.length ? size : -1;
}

/** The canonical JSON text of a result column (RFC 8785 member order). */
function columnJson(c: ResultColumn): string {
  let s = "{";
  if (c.classifiers !== undefined) s += `"classifiers":${JSON.stringify(c.classifiers)},`;
  if (c.maskRule !== undefined) s += `"maskRule":${JSON.stringify(c.maskRule)},`;
  if (c.maskStrategy !== undefined) s += `"maskStrategy":${JSON.stringify(c.maskStrategy)},`;
  if (c.masked !== undefined) s += `"masked":${c.masked ? "true" : "false"},`;
  return `${s}"name":${JSON.stringify(c.name)},"typeOid":${num(c.typeOid)}}`;
}

/** A finite number as RFC 8785 writes it: ECMAScript's Number-to-String, which JSON.stringify also writes. */
function num(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError("canonicalJson: non-finite number");
  return `${n}`;
}

function capturedJson(r: CapturedResult): string {
  return capturedText(r.columns, r.recorded, r.recordedBytes, r.rows, r.truncated, r.values);
}

function capturedText(columns: readonly ResultColumn[], recorded: number, recordedBytes: number, rows: number, truncated: boolean, values: ResultCapture["values"]): string {
  let cols = "[";
  for (let i = 0; i < columns.length; i++) cols += (i ? "," : "") + columnJson(columns[i]!);
  return `{"columns":${cols}],"recorded":${num(recorded)},"recordedBytes":${num(recordedBytes)},"rows":${num(rows)},"truncated":${truncated ? "true" : "false"},"values":${JSON.stringify(values)}}`;
}

/**
 * The canonical JSON text of a statement.completed payload, written directly: JSON.stringify over
 * its nested rows cost the hot path as much as the rest of the event. A property test holds it equal
 * to canonicalJson(d).
 */
export function completionJson(d: StatementCompletedData): string {
  let s = "{";
  if (d.commandTag !== undefined) s += `"commandTag":${JSON.stringify(d.commandTag)},`;
  s += `"durationMs":${num(d.durationMs)}`;
  if (d.error !== undefined) s += `,"error":{"message":${JSON.stringify(d.error.message)},"sqlstate":${JSON.stringify(d.error.sqlstate)}}`;
  if (d.results !== undefined) {
    s += `,"results":[`;
    for (let i = 0; i < d.results.length; i++) s += (i ? "," : "") + capturedJson(d.results[i]!);
    s += "]";
  }
  return `${s},"rows":${num(d.rows)},"statementId":${num(d.statementId)}}`;
}

/**
 * A statement's completion: statement.completed, carrying its captured result sets when together
 * they fit in INLINE_RESULT_BYTES, else preceded by one result.rows event per set (contract: a
 * statement is two events, result.rows only for larger captures). Counts are exact: a single result
 * set's row count comes from the CommandComplete.
 */
export function completionEvents(
  masker: InputMasker, session: SessionInfo, done: StatementCompletion, sets: readonly ResultCapture[] | undefined,
): { rows: ResultRowsData[]; completed: StatementCompletedData } {
  const seq = done.seq;
  let results: CapturedResult[] | undefined;
  let rows: ResultRowsData[] = [];
  if (sets && sets.length > 0) {
    let bytes = 0;
    for (const rs of sets) bytes += rs.recordedBytes;
    const single = sets.length === 1;
    const captured = sets.map((rs): CapturedResult => {
      const n = single ? Math.max(done.rows, rs.values.length) : rs.values.length;
      return { columns: rs.columns, recorded: rs.values.length, recordedBytes: rs.recordedBytes, rows: n, truncated: n > rs.values.length, values: rs.values };
    });
    if (bytes <= INLINE_RESULT_BYTES) results = captured;
    else rows = captured.map((c) => ({ columns: c.columns, recorded: c.recorded, recordedBytes: c.recordedBytes, rows: c.rows, statementId: seq, truncated: c.truncated, values: c.values }));
  }
  const completed = (done.commandTag !== undefined ? { commandTag: done.commandTag } : {}) as StatementCompletedData;
  completed.durationMs = Math.round(done.durationMs * 1000) / 1000;
  if (done.error) completed.error = { message: masker.text(session, done.error.message), sqlstate: done.error.sqlstate };
  if (results) completed.results = results;
  completed.rows = done.rows;
  completed.statementId = seq;
  return { rows, completed };
}

/**
 * The hot path's statement completion: the result.rows events (only for captures above
 * INLINE_RESULT_BYTES) and the canonical JSON text of the statement.completed payload, exactly
 * completionJson(completionEvents(…).completed), written straight from the captures: no
 * CapturedResult or payload object per statement (they were garbage as soon as written). A
 * property test holds the two equal.
 */
export function completionText(
  masker: InputMasker, session: SessionInfo, done: StatementCompletion, sets: readonly ResultCapture[] | undefined,
): { rows: ResultRowsData[]; json: string } {
  const captured = sets !== undefined && sets.length > 0;
  if (captured) {
    let bytes = 0;
    for (const rs of sets) bytes += rs.recordedBytes;
    if (bytes > INLINE_RESULT_BYTES) {
      const { rows, completed } = completionEvents(masker, session, done, sets);
      return { rows, json: completionJson(completed) };
    }
  }
  let s = "{";
  if (done.commandTag !== undefined) s += `"commandTag":${JSON.stringify(done.commandTag)},`;
  s += `"durationMs":${num(Math.round(done.durationMs * 1000) / 1000)}`;
  if (done.error) s += `,"error":{"message":${JSON.stringify(masker.text(session, done.error.message))},"sqlstate":${JSON.stringify(done.error.sqlstate)}}`;
  if (captured) {
    s += `,"results":[`;
    const single = sets.length === 1;
    for (let i = 0; i < sets.length; i++) {
      const rs = sets[i]!;
      const n = single ? Math.max(done.rows, rs.values.length) : rs.values.length;
      s += (i ? "," : "") + capturedText(rs.columns, rs.values.length, rs.recordedBytes, n, n > rs.values.length, rs.values);
    }
    s += "]";
  }
  return { rows: [], json: `${s},"rows":${num(done.rows)},"statementId":${num(done.seq)}}` };
}

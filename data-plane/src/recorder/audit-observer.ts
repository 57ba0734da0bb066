/**
 * The session's AuditSink (session-hooks.ts) implemented with SessionRecorders on one
 * AuditPublisher: turns the proxy's hook calls into the contract's session events.
 *
 *  - statement.allowed returns the recorder's Promise in `ack` durability, so the session forwards
 *    the statement only after JetStream acknowledged it; if the ack does not come in time the
 *    statement is refused (57P03) and a statement.completed with that error follows it on the stream,
 *    so the trail says the statement never ran.
 *  - A full buffer refuses new work (a rejected Promise for statements, a throw at connect time),
 *    before any event is linked, so nothing a client did not run appears as allowed.
 *  - Bound parameters and SQL text pass the masking function (default: the resource's masking rules)
 *    before they are recorded; result rows arrive already masked by the session's ResultMasker.
 */
import { randomBytes } from "node:crypto";
import { SluiceError } from "@sluice/shared/errors";
import type {
  ResultColumn, SessionDenyStage, StatementData, StatementPart,
} from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import type { MaskStrategy } from "@sluice/shared/policy";
import type {
  AuditSink, BoundParam, ConnectionInfo, RowField, SessionInfo, SnapshotSource, StatementCompletion, StatementRecord,
} from "../session/session-hooks.js";
import { decodeDataRow } from "../wire/decode.js";
import { compileMasking, maskLooseText, type CompiledMasking } from "../masking/mask-rules.js";
import { maskWhole } from "../masking/mask-strategies.js";
import { SessionRecorder } from "./session-recorder.js";
import type { AuditLogger, AuditPublisher } from "./audit-publisher.js";

/** Masks what a client sent (bound parameters, SQL text, error messages) before it is recorded. */
export interface InputMasker {
  params(session: SessionInfo, params: Array<string | null>): Array<string | null>;
  text(session: SessionInfo, text: string): string;
}

export interface AuditObserverOptions {
  publisher: AuditPublisher;
  names: NatsNames;
  /** config dataPlane.audit.maxRowsPerStatement (0 = do not record result rows) */
  maxRowsPerStatement: number;
  /** config dataPlane.audit.maxBytesPerStatement */
  maxBytesPerStatement: number;
  /** default: rulesInputMasker over `snapshots` (and, without snapshots, every parameter redacted) */
  inputMasker?: InputMasker;
  snapshots?: SnapshotSource;
  /** HMAC key of the `hash` strategy (use the result masker's key so hashed values match) */
  hashKey?: Buffer;
  logger?: AuditLogger;
  now?: () => Date;
}

export interface AuditObserver extends AuditSink {
  readonly publisher: AuditPublisher;
  /** the live recorder of a session (for approval events), undefined once it ended */
  recorderFor(sessionId: string): SessionRecorder | undefined;
}

interface ResultSet {
  columns: ResultColumn[];
  values: Array<Array<string | null>>;
  recordedBytes: number;
}

interface SessionState {
  rec: SessionRecorder;
  startedAt: number;
  /** statements with a recorded allowed event and no completion yet */
  open: Set<number>;
  results: Map<number, ResultSet[]>;
}

const REDACTED = "[REDACTED]";
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
 * object recurs for every execution of a statement: its summary is built once.
 */
const summaries = new WeakMap<StatementRecord["decision"], { statements: StatementPart[]; tables: StatementData["tables"]; risks: StatementPart["risks"] }>();
function summaryOf(d: StatementRecord["decision"]) {
  let sum = summaries.get(d);
  if (!sum) {
    const read = new Set<string>(), write = new Set<string>(), risks = new Set<StatementPart["risks"][number]>();
    // members in canonical (sorted) order throughout: canonicalJson then takes its native fast path
    const statements: StatementPart[] = d.statements.map((s) => {
      s.tables.read.forEach((t) => read.add(t));
      s.tables.write.forEach((t) => write.add(t));
      s.risks.forEach((r) => risks.add(r));
      return { class: s.class, functions: [...s.functions], kind: s.kind, risks: [...s.risks], tables: { read: [...s.tables.read], write: [...s.tables.write] } };
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
  // members inserted in canonical (sorted) order, optional ones only when present
  const data = { class: d.statementClass, decision: d.action } as StatementData;
  if (stmt.params) data.params = masker.params(session, stmt.params.map(renderParam));
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

/**
 * The default InputMasker: for a resource with masking rules every bound parameter is masked whole
 * with the rules' strongest strategy (a parameter's target column is not known, so it is treated as
 * masked), and SQL text / error messages are scanned with every classifier and matches masked.
 * Resources without masking rules are recorded as sent.
 */
export function rulesInputMasker(snapshots: SnapshotSource | undefined, hashKey: Buffer): InputMasker {
  let cachedRev = -1;
  const cache = new Map<string, CompiledMasking | null>();
  const compiled = (resource: string): CompiledMasking | null | "unknown" => {
    const snap = snapshots?.current();
    if (!snap) return "unknown";
    if (snap.revision !== cachedRev) {
      cache.clear();
      cachedRev = snap.revision;
    }
    if (!cache.has(resource)) cache.set(resource, compileMasking(snap.bundle.masking ?? [], resource, hashKey));
    return cache.get(resource)!;
  };
  return {
    params(session, params) {
      const c = compiled(session.resource);
      if (c === null) return params;
      const strategy: MaskStrategy = c === "unknown" ? "redact" : c.defaultStrategy;
      return params.map((p) => (p === null ? null : strategy === "redact" ? REDACTED : maskWhole(p, strategy, hashKey)));
    },
    text(session, text) {
      const c = compiled(session.resource);
      if (c === null || c === "unknown") return text;
      // the masker's own loose-text scan: every classifier, each with its entry's strategy
      return maskLooseText(c, text);
    },
  };
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

export function createAuditObserver(o: AuditObserverOptions): AuditObserver {
  // a known key would make hashed parameters guessable: random per process unless shared
  const hashKey = o.hashKey ?? randomBytes(32);
  const masker = o.inputMasker ?? rulesInputMasker(o.snapshots, hashKey);
  const sessions = new Map<string, SessionState>();
  const log = o.logger;
  const now = o.now ?? (() => new Date());
  let lost = 0;

  const state = (c: ConnectionInfo | SessionInfo): SessionState => {
    let s = sessions.get(c.sessionId);
    if (!s) {
      const rec = new SessionRecorder(o.publisher, { sessionId: c.sessionId, region: c.region, node: c.nodeId, names: o.names, now });
      s = { rec, startedAt: now().getTime(), open: new Set(), results: new Map() };
      sessions.set(c.sessionId, s);
    }
    return s;
  };

  /** follow-up events of work that already happened: a refusal here is logged loudly, never thrown into the relay */
  const follow = (sessionId: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      lost++;
      log?.error({ sessionId, err: (e as Error).message, lost }, "audit event could not be queued");
    }
  };


  const policyRevOf = (session: SessionInfo, stmt: StatementRecord): number =>
    (stmt.decision as { revision?: number }).revision ?? session.policyRevision;

  const completion = (s: SessionState, session: SessionInfo, done: StatementCompletion) => {
    const seq = done.seq;
    s.open.delete(seq);
    const sets = s.results.get(seq);
    s.results.delete(seq);
    for (const rs of sets ?? []) {
      const single = sets!.length === 1;
      // counts are exact: the statement's row count comes from its CommandComplete
      const rows = single ? Math.max(done.rows, rs.values.length) : rs.values.length;
      // members in canonical (sorted) order: canonicalJson's native fast path
      follow(s.rec.sessionId, () => s.rec.record("result.rows", {
        columns: rs.columns, recorded: rs.values.length, recordedBytes: rs.recordedBytes, rows, statementId: seq,
        truncated: rows > rs.values.length, values: rs.values,
      }));
    }
    // members assigned in canonical (sorted) order, optional ones only when present; object spreads
    // read better but cost this path 20 -> 33 us per statement (test/bench/audit-cost.bench.ts)
    const data: { commandTag?: string; durationMs: number; error?: { message: string; sqlstate: string }; rows: number; statementId: number } =
      done.commandTag !== undefined ? { commandTag: done.commandTag, durationMs: 0, rows: 0, statementId: 0 } : { durationMs: 0, rows: 0, statementId: 0 };
    data.durationMs = Math.round(done.durationMs * 1000) / 1000;
    if (done.error) data.error = { message: masker.text(session, done.error.message), sqlstate: done.error.sqlstate };
    data.rows = done.rows;
    data.statementId = seq;
    follow(s.rec.sessionId, () => s.rec.record("statement.completed", data));
  };

  const observer: AuditObserver = {
    publisher: o.publisher,

    recorderFor: (sessionId) => sessions.get(sessionId)?.rec,

    sessionStarted(conn) {
      const s = state(conn);
      // refused at connect when the buffer is full (fail closed): the connection gets 57P03
      s.rec.record("session.started", {
        clientAddress: conn.clientAddress, resource: conn.resource ?? "", node: conn.nodeId, region: conn.region,
        tls: { enabled: conn.tls },
        ...(conn.applicationName !== undefined ? { applicationName: conn.applicationName } : {}),
        ...(conn.clientUser !== undefined ? { user: conn.clientUser } : {}),
      });
    },

    sessionAuthenticated(session) {
      const s = state(session);
      s.rec.policyRev = session.policyRevision;
      return s.rec.record("session.authenticated", {
        subject: session.subject, issuer: session.issuer, groups: [...session.groups], claims: selectClaims(session.claims),
      });
    },

    sessionDenied(conn, denial) {
      const s = state(conn);
      const { stage, code } = denyStage(denial.sqlstate, denial.reason);
      follow(conn.sessionId, () => s.rec.record("session.denied", {
        stage, reason: code, message: denial.reason, sqlstate: denial.sqlstate,
        ...(denial.subject !== undefined ? { subject: denial.subject } : {}),
        ...(denial.issuer !== undefined ? { issuer: denial.issuer } : {}),
      }));
    },

    statementAllowed(session, stmt) {
      const s = state(session);
      let p: Promise<void> | undefined;
      try {
        p = s.rec.record("statement.allowed", statementEventData(masker, session, stmt) as StatementData & { decision: "allow" }, { policyRev: policyRevOf(session, stmt) });
      } catch (e) {
        // nothing was recorded: the statement is refused and never ran
        return Promise.reject(SluiceError.from(e, "unavailable"));
      }
      s.open.add(stmt.seq);
      if (!p) return undefined;
      return p.catch((e: unknown) => {
        // the allowed event stays queued (the chain holds it): record that the statement did not run
        const err = SluiceError.from(e, "unavailable");
        if (s.open.has(stmt.seq)) completion(s, session, { seq: stmt.seq, rows: 0, durationMs: 0, error: { sqlstate: "57P03", message: err.message } });
        throw err;
      });
    },

    statementBlocked(session, stmt) {
      const s = state(session);
      const data = { ...statementEventData(masker, session, stmt), decision: "deny" as const, sqlstate: "42501" };
      try {
        s.rec.record("statement.blocked", data, { policyRev: policyRevOf(session, stmt) });
      } catch (e) {
        return Promise.reject(SluiceError.from(e, "unavailable"));
      }
      return undefined;
    },

    statementCompleted(session, done) {
      const s = sessions.get(session.sessionId);
      // only statements whose allowed event is on record (and not already closed) get a completion
      if (!s || !s.open.has(done.seq)) return;
      completion(s, session, done);
    },

    resultRows(session, seq, fields, rows, masks) {
      const s = sessions.get(session.sessionId);
      if (!s || !s.open.has(seq) || o.maxRowsPerStatement <= 0) return;
      // bytes already recorded for this statement: the byte cap spans its result sets
      let used = 0;
      for (const r of s.results.get(seq) ?? []) used += r.recordedBytes;
      const rs: ResultSet = {
        columns: fields.map((f: RowField, i) => {
          const m = masks?.find((x) => x.index === i);
          if (!m) return { name: f.name, typeOid: f.typeOid };
          // members in canonical (sorted) order: canonicalJson's native fast path
          const col = (m.classifiers?.length ? { classifiers: [...m.classifiers] } : {}) as ResultSet["columns"][number];
          col.maskRule = m.rule;
          if (m.strategy) col.maskStrategy = m.strategy;
          col.masked = true;
          col.name = f.name;
          col.typeOid = f.typeOid;
          return col;
        }),
        values: [],
        recordedBytes: 0,
      };
      for (const frame of rows) {
        const vals = decodeDataRow(frame);
        let size = 0;
        for (const v of vals) size += v ? v.length : 0;
        if (used + size > o.maxBytesPerStatement) break;
        used += size;
        rs.recordedBytes += size;
        rs.values.push(vals.map((v, i) => renderValue(v, fields[i]?.format ?? 0)));
      }
      const list = s.results.get(seq) ?? [];
      list.push(rs);
      s.results.set(seq, list);
    },

    sessionEnded(info, end) {
      const s = sessions.get(info.sessionId);
      if (!s) return;
      sessions.delete(info.sessionId);
      follow(info.sessionId, () => s.rec.record("session.ended", {
        reason: end.reason, durationMs: now().getTime() - s.startedAt, statements: end.statements, bytesIn: end.bytesIn, bytesOut: end.bytesOut,
      }));
    },
  };
  return observer;
}

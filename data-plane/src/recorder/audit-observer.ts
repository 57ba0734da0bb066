/**
 * The session's AuditSink (session-hooks.ts) on one AuditPublisher: a map of live sessions to their
 * SessionRecorder and what their open statements have captured. The payloads come from the pure
 * builders in audit-event-data.ts; the chain and the lane from SessionRecorder.
 *
 *  - statement.allowed returns the recorder's Promise in `ack` durability (and in `async` when the
 *    buffer is full while the stream takes batches), so the session forwards the statement only
 *    after JetStream stored it; if that does not happen in time the statement is refused (57P03)
 *    and a statement.completed with that error follows it on the stream, so the trail says the
 *    statement never ran.
 *  - A full buffer refuses new work (a rejected Promise for statements, a throw at connect time),
 *    before any event is linked, so nothing a client did not run appears as allowed.
 *  - Bound parameters and SQL text pass the masking function (default: the resource's masking rules)
 *    before they are recorded; result rows arrive already masked by the session's ResultMasker.
 */
import { randomBytes } from "node:crypto";
import { SluiceError } from "@sluice/shared/errors";
import type { StatementData } from "@sluice/shared/events";
import type { AuditSink, ConnectionInfo, SessionInfo, SnapshotSource, StatementCompletion, StatementRecord } from "../session/session-hooks.js";
import {
  captureRows, completionText, resultColumns, selectClaims, sessionDeniedData, sessionStartedData, statementEventData, statementEventJson,
  type ResultCapture,
} from "./audit-event-data.js";
import { rulesInputMasker, type InputMasker } from "./input-masker.js";
import { SessionRecorder } from "./session-recorder.js";
import type { AuditLogger, AuditPublisher } from "./audit-publisher.js";

export interface AuditObserverOptions {
  publisher: AuditPublisher;
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

interface SessionState {
  rec: SessionRecorder;
  startedAt: number;
  /** statements with a recorded allowed event and no completion yet */
  open: Set<number>;
  /** what each open statement's results captured so far */
  results: Map<number, ResultCapture[]>;
}

export function createAuditObserver(o: AuditObserverOptions): AuditObserver {
  // a known key would make hashed parameters guessable: random per process unless shared
  const hashKey = o.hashKey ?? randomBytes(32);
  const masker = o.inputMasker ?? rulesInputMasker(o.snapshots, hashKey);
  const sessions = new Map<string, SessionState>();
  const log = o.logger;
  const now = o.now ?? (() => new Date());
  // the recorders read the clock per event: Date.now unless a test pins it
  const recorderNow = o.now;
  let lost = 0;

  const state = (c: ConnectionInfo | SessionInfo): SessionState => {
    let s = sessions.get(c.sessionId);
    if (!s) {
      const rec = new SessionRecorder(o.publisher, { sessionId: c.sessionId, region: c.region, node: c.nodeId, now: recorderNow });
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
    s.open.delete(done.seq);
    const sets = s.results.get(done.seq);
    s.results.delete(done.seq);
    const { rows, json } = completionText(masker, session, done, sets);
    for (const r of rows) follow(s.rec.sessionId, () => s.rec.record("result.rows", r));
    follow(s.rec.sessionId, () => s.rec.recordJson("statement.completed", json));
  };

  const observer: AuditObserver = {
    publisher: o.publisher,

    recorderFor: (sessionId) => sessions.get(sessionId)?.rec,

    sessionStarted(conn) {
      // refused at connect when the buffer is full (fail closed): the connection gets 57P03
      state(conn).rec.record("session.started", sessionStartedData(conn));
    },

    sessionAuthenticated(session) {
      const s = state(session);
      s.rec.policyRev = session.policyRevision;
      return s.rec.record("session.authenticated", {
        claims: selectClaims(session.claims), groups: [...session.groups], issuer: session.issuer, subject: session.subject,
      });
    },

    sessionDenied(conn, denial) {
      const s = state(conn);
      follow(conn.sessionId, () => s.rec.record("session.denied", sessionDeniedData(denial)));
    },

    statementAllowed(session, stmt) {
      const s = state(session);
      let p: Promise<void> | undefined;
      try {
        p = s.rec.recordJson("statement.allowed", statementEventJson(masker, session, stmt), { policyRev: policyRevOf(session, stmt) });
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
      const data = statementEventData(masker, session, stmt) as StatementData & { decision: "deny"; sqlstate: string };
      data.decision = "deny";
      data.sqlstate = "42501";
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
      const list = s.results.get(seq);
      // the byte cap spans every result set of the statement
      let used = 0;
      if (list) for (const r of list) used += r.recordedBytes;
      const rs: ResultCapture = { columns: resultColumns(fields, masks), values: [], recordedBytes: 0 };
      captureRows(rs, fields, rows, o.maxBytesPerStatement - used);
      if (list) list.push(rs);
      else s.results.set(seq, [rs]);
    },

    sessionEnded(info, end) {
      const s = sessions.get(info.sessionId);
      if (!s) return;
      sessions.delete(info.sessionId);
      follow(info.sessionId, () => s.rec.record("session.ended", {
        bytesIn: end.bytesIn, bytesOut: end.bytesOut, durationMs: now().getTime() - s.startedAt, reason: end.reason, statements: end.statements,
      }));
    },
  };
  return observer;
}

/**
 * The per-connection relay after authentication: client frames in, upstream frames in, bytes out.
 * This room routes frames between the session's other rooms: the statement gate (forward, poison,
 * hold), the response queue (what the upstream still owes, skip-to-Sync), the result path (row
 * descriptions, rows, masking, capture, COPY out, completions) and the two outboxes.
 * Pure: no sockets and no clock (the composition root passes `io` and `now`).
 *
 * Hot path: both directions run through a FrameScanner; frames that are only forwarded stay raw and
 * contiguous forwarded bytes leave as one write per input chunk. Only Query/Parse (policy),
 * Bind/Execute (the statement record) and ReadyForQuery/ErrorResponse/CommandComplete (bookkeeping)
 * are looked at; DataRow is decoded only when a mask plan or row capture needs it.
 *
 * Denials: instead of answering the client out of band (which would reorder responses in a pipeline
 * and get the transaction state wrong), a denied Query/Parse is replaced by a "poison" statement that
 * fails upstream with a syntax error naming a per-process token. Postgres then does exactly what it
 * would do for a failing statement: skips to Sync, rolls back an implicit transaction, marks an
 * explicit one failed ('E', COMMIT acts as ROLLBACK). The proxy swaps that ErrorResponse, in order,
 * for the 42501 naming the rule.
 */
import { SluiceError, toSqlState } from "@sluice/shared/errors";
import type { Decision } from "@sluice/shared/policy";
import { B, F, type TxStatus } from "../wire/codes.js";
import { FrameScanner, Mode, type ScanSink } from "../wire/frame-scanner.js";
import { decodeBind, decodeErrorFields, decodeExecute, decodeParse, decodeQuery, decodeReadyForQuery, decodeRowDescription, decodeTarget } from "../wire/decode.js";
import { describe as encodeDescribe, errorResponse, execute as encodeExecute, noticeResponse, parse as encodeParse, query as encodeQuery } from "../wire/encode.js";
import { Outbox } from "./outbox.js";
import { BIND, CLOSE, DESCRIBE_P, DESCRIBE_S, K, PARSE, ResponseQueue, SYNC, type Pending } from "./response-queue.js";
import { ResultPath } from "./result-path.js";
import { isPromise, settledDecision, StatementGate, type Verdict } from "./statement-gate.js";
import type {
  ApprovalGate,
  AuditFeatures,
  AuditSink,
  BoundParam,
  CompletionListener,
  Enforcer,
  ResultMasker,
  RowField,
  SessionInfo,
  StatementRecord,
} from "./session-hooks.js";

export interface RelayIo {
  /** one call per flushed batch; returns false when the socket buffer is full */
  writeClient(b: Buffer): void;
  writeUpstream(b: Buffer): void;
  /** hold/release reading from the client while an async hook (audit ack, approval, mask plan) runs */
  holdClient(hold: boolean): void;
  holdUpstream(hold: boolean): void;
  /** end the session: send `finalToClient` (a FATAL ErrorResponse) if given, then close both sides */
  close(reason: string, finalToClient?: Buffer): void;
}

export interface RelaySessionOptions {
  info: SessionInfo;
  enforcer: Enforcer;
  audit: AuditSink;
  /** what is decoded for the audit (set by the composition root) */
  features: AuditFeatures;
  /** told of every completed statement after the audit (e.g. DDL invalidation of the masking catalog) */
  listeners?: readonly CompletionListener[];
  masker?: ResultMasker;
  approvals?: ApprovalGate;
  /**
   * Told, for each statement allowed by policy, how long (seconds, from `now`) it stayed in the proxy
   * between its message being read and being forwarded: the decision and, with ack durability, the
   * audit acknowledgement (a metric; must not allocate). Statements held for approval are not told.
   */
  addedLatency?: { observe(seconds: number): void };
  maxFrameBytes: number;
  /** a per-process random identifier token: the poison statement (see the header comment) */
  poisonToken: string;
  /** monotonic milliseconds */
  now(): number;
  io: RelayIo;
}

interface PreparedStatement {
  sql: string;
  decision: Decision;
  fields?: RowField[];
}

interface Portal {
  statement: string;
  params?: BoundParam[];
  fields?: RowField[];
}

export interface RelayStats {
  statements: number;
  denied: number;
  bytesIn: number;
  bytesOut: number;
  txStatus: TxStatus;
}

/** the statement name of a (F) Bind without decoding the rest */
function bindStatementName(f: Buffer): string {
  const z = f.indexOf(0, 5);
  return f.toString("utf8", z + 1, f.indexOf(0, z + 1));
}

export class RelaySession {
  private readonly o: RelaySessionOptions;
  private readonly toClient: Outbox;
  private readonly toUpstream: Outbox;
  private readonly clientScan: FrameScanner;
  private readonly upstreamScan: FrameScanner;
  private readonly clientSink: ScanSink;
  private readonly upstreamSink: ScanSink;
  private readonly queue = new ResponseQueue();
  private readonly gate: StatementGate;
  private readonly results: ResultPath;
  private statements = new Map<string, PreparedStatement>();
  private portals = new Map<string, Portal>();
  private skipUntilSync = false;
  /** a hook holds client frames (see `hold`); during a short one the upstream outbox is not flushed */
  private holding: "no" | "short" | "long" = "no";
  /** identifies the current hold: a continuation that starts another hold leaves the resume to it */
  private holdId = 0;
  /** the client socket is paused for a hold */
  private clientPaused = false;
  /** the upstream outbox holds a statement a hold released and no flush has sent it yet */
  private released = false;
  private seq = 0;
  private closed = false;
  private readonly needParams: boolean;
  readonly stats: RelayStats = { statements: 0, denied: 0, bytesIn: 0, bytesOut: 0, txStatus: "I" };

  constructor(opts: RelaySessionOptions) {
    this.o = opts;
    this.toClient = new Outbox((b) => {
      this.stats.bytesOut += b.length;
      opts.io.writeClient(b);
    });
    this.toUpstream = new Outbox((b) => opts.io.writeUpstream(b));
    this.clientScan = new FrameScanner(opts.maxFrameBytes);
    // the upstream is trusted not to be hostile, but a runaway frame still must not exhaust memory:
    // only Whole frames are buffered and those are small except a masked DataRow
    this.upstreamScan = new FrameScanner(0x7fffffff);
    this.needParams = opts.features.decodeParams;
    this.gate = new StatementGate({
      info: opts.info,
      audit: opts.audit,
      approvals: opts.approvals,
      notice: (message) => {
        this.toClient.push(noticeResponse({ sqlstate: "01000", message }));
        this.toClient.flush();
      },
    });
    this.results = new ResultPath({
      info: opts.info,
      audit: opts.audit,
      listeners: opts.listeners ?? [],
      masker: opts.masker,
      captureRows: opts.features.captureRows,
      now: opts.now,
      toClient: this.toClient,
      holdUpstream: (p) => this.holdUpstream(p),
    });
    this.clientSink = {
      head: (code) => this.clientHead(code),
      frame: (code, f) => this.clientFrame(code, f),
      pass: (b) => this.toUpstream.push(b),
    };
    this.upstreamSink = {
      head: (code) => this.upstreamHead(code),
      frame: (code, f) => this.upstreamFrame(code, f),
      pass: (b) => this.toClient.push(b),
    };
  }

  /** bytes from the client */
  onClientData(chunk: Buffer): void {
    if (this.closed) return;
    this.stats.bytesIn += chunk.length;
    // data during a short hold: the scanner queues this chunk; stop reading more until the hold ends
    if (this.holding !== "no") this.pauseClient();
    this.guard(() => this.clientScan.feed(chunk, this.clientSink));
  }

  /** bytes from the upstream */
  onUpstreamData(chunk: Buffer): void {
    if (this.closed) return;
    this.guard(() => this.upstreamScan.feed(chunk, this.upstreamSink), true);
  }

  /** the session ends; stop doing anything, and stop waiting for approvals */
  dispose(): void {
    this.closed = true;
    this.gate.dispose();
  }

  private guard(fn: () => unknown, fromUpstream = false): void {
    try {
      fn();
      // during a short hold the frames before the held statement wait for it (one write, see `hold`)
      if (this.holding !== "short") {
        this.toUpstream.flush();
        this.released = false;
      }
      this.toClient.flush();
    } catch (e) {
      this.fail(e, fromUpstream);
    }
  }

  private fail(e: unknown, fromUpstream: boolean): void {
    if (this.closed) return;
    this.toUpstream.flush();
    this.toClient.flush();
    this.closed = true;
    const msg = e instanceof Error ? e.message : String(e);
    const sqlstate = fromUpstream ? "08006" : e instanceof SluiceError ? toSqlState(e.code) : (e as { sqlstate?: string }).sqlstate ?? "08P01";
    const text = fromUpstream ? "upstream protocol error" : msg;
    this.o.io.close(`${fromUpstream ? "upstream" : "client"} protocol error: ${msg}`, errorResponse({ severity: "FATAL", sqlstate, message: text }));
  }

  // ---------------------------------------------------------------- client → upstream

  private clientHead(code: number): Mode {
    if (this.skipUntilSync) {
      // after a denied Parse everything up to Sync is swallowed; Flush still goes through
      if (code === F.Sync) return Mode.Whole;
      if (code === F.Flush) return Mode.Pass;
      if (code === F.Terminate) return Mode.Whole;
      return Mode.Drop;
    }
    switch (code) {
      case F.CopyData:
      case F.CopyDone:
      case F.CopyFail:
      case F.Flush:
        return Mode.Pass;
      default:
        return Mode.Whole;
    }
  }

  private clientFrame(code: number, f: Buffer): boolean {
    switch (code) {
      case F.Query:
        return this.onQuery(f);
      case F.Parse:
        return this.onParse(f);
      case F.Bind:
        return this.onBind(f);
      case F.Execute:
        return this.onExecute(f);
      case F.Describe: {
        const t = decodeTarget(f);
        if (this.results.captureRows > 0) this.queue.push({ kind: t.kind === "S" ? K.DescribeS : K.DescribeP, name: t.name });
        else this.queue.push(t.kind === "S" ? DESCRIBE_S : DESCRIBE_P);
        this.toUpstream.push(f);
        return true;
      }
      case F.Close: {
        const t = decodeTarget(f);
        if (t.kind === "S") this.statements.delete(t.name);
        else this.portals.delete(t.name);
        this.queue.push(CLOSE);
        this.toUpstream.push(f);
        return true;
      }
      case F.Sync:
        this.skipUntilSync = false;
        this.portals.delete("");
        this.queue.push(SYNC);
        this.toUpstream.push(f);
        return true;
      case F.Terminate:
        this.toUpstream.push(f);
        this.toUpstream.flush();
        this.closed = true;
        this.o.io.close("client terminated");
        return false;
      case F.FunctionCall:
        // a function called by OID bypasses SQL policy entirely (lo_import, pg_read_file, …)
        this.poison(K.PoisonQuery, errorResponse({ severity: "ERROR", sqlstate: "42501", message: "the FunctionCall protocol message is not allowed through sluice", detail: "sluice rule: function-call" }));
        return true;
      default:
        // PasswordMessage after authentication or an unknown code: the upstream answers with its error
        this.toUpstream.push(f);
        return true;
    }
  }

  private record(protocol: "simple" | "parse", sql: string, decision: Decision, extra?: Partial<StatementRecord>): StatementRecord {
    return { seq: ++this.seq, protocol, sql, decision, ...extra };
  }

  /**
   * Runs `then` with the enforcer's decision: at once when it is synchronous, otherwise after holding
   * this message (and everything pipelined behind it) until the promise settles. A rejected decision
   * is a deny (see statement-gate.ts).
   */
  private decided(sql: string, protocol: "simple" | "parse", then: (d: Decision) => boolean): boolean {
    const d = settledDecision(this.o.enforcer.decide(sql, protocol, this.o.info));
    if (!isPromise(d)) return then(d);
    return this.hold(d.then((x) => () => then(x)), false);
  }

  private onQuery(f: Buffer): boolean {
    const sql = decodeQuery(f);
    const readAt = this.o.now();
    return this.decided(sql, "simple", (decision) => {
      const rec = this.record("simple", sql, decision);
      return this.apply(this.gate.admit(rec), () => {
        this.stats.statements++;
        this.o.enforcer.observeForwarded?.(decision, this.o.info);
        const at = this.o.now();
        if (decision.action === "allow") this.o.addedLatency?.observe((at - readAt) / 1000);
        this.queue.push({ kind: K.Query, rec, startedAt: at, rows: 0, mask: this.results.maskActive() });
        this.toUpstream.push(f);
      }, K.PoisonQuery);
    });
  }

  private onParse(f: Buffer): boolean {
    const p = decodeParse(f);
    return this.decided(p.sql, "parse", (decision) => {
      if (decision.action === "allow" || (decision.action === "approve" && this.o.approvals)) {
        // approval binds to the parameters too, so it is asked at Execute; the Parse itself goes through
        if (decision.action === "allow") this.o.enforcer.observeForwarded?.(decision, this.o.info);
        this.statements.set(p.name, { sql: p.sql, decision });
        this.queue.push(PARSE);
        this.toUpstream.push(f);
        return true;
      }
      const rec = this.record("parse", p.sql, decision, { statementName: p.name });
      // like a failed Parse in Postgres, a denied unnamed Parse leaves no unnamed statement behind
      if (p.name === "") this.statements.delete("");
      return this.apply(this.gate.deny(rec), () => undefined, K.PoisonParse, p.name);
    });
  }

  private onBind(f: Buffer): boolean {
    // a statement that needs approval is approved with its parameters, whatever the audit decodes
    if (this.needParams || this.statements.get(bindStatementName(f))?.decision.action === "approve") {
      const b = decodeBind(f);
      const params: BoundParam[] = b.params.map((v, i) => ({ format: b.paramFormats[i] === 1 ? "binary" : "text", value: v }));
      this.portals.set(b.portal, { statement: b.statement, params });
    } else {
      // the portal → statement link is all Execute needs
      const z = f.indexOf(0, 5);
      const z2 = f.indexOf(0, z + 1);
      this.portals.set(f.toString("utf8", 5, z), { statement: f.toString("utf8", z + 1, z2) });
    }
    this.queue.push(BIND);
    this.toUpstream.push(f);
    return true;
  }

  private onExecute(f: Buffer): boolean {
    const portalName = this.needParams ? decodeExecute(f).portal : f.toString("utf8", 5, f.indexOf(0, 5));
    const portal = this.portals.get(portalName);
    const st = portal ? this.statements.get(portal.statement) : undefined;
    if (!st) {
      // unknown portal/statement: the upstream reports the error in order
      this.queue.push({ kind: K.Execute, rows: 0, startedAt: this.o.now() });
      this.toUpstream.push(f);
      return true;
    }
    const rec = this.record("parse", st.sql, st.decision, { statementName: portal!.statement, portalName, params: portal!.params });
    const readAt = this.o.now();
    return this.apply(this.gate.admit(rec), () => {
      this.stats.statements++;
      const at = this.o.now();
      if (st.decision.action === "allow") this.o.addedLatency?.observe((at - readAt) / 1000);
      const mask = this.results.maskActive();
      if (mask) {
        // make the upstream describe the portal so the rows can be matched to columns; the answer is swallowed
        this.queue.push({ kind: K.InjectedDescribe, name: portalName });
        this.toUpstream.push(encodeDescribe("P", portalName));
      }
      // the shape of the rows, when a Describe already told it (audit row capture labels columns with it)
      this.queue.push({ kind: K.Execute, rec, startedAt: at, rows: 0, mask, fields: portal!.fields ?? st.fields });
      this.toUpstream.push(f);
    }, K.PoisonParse);
  }

  /**
   * Carries out the gate's verdict: `forward` runs at once, `poison` replaces the statement by its
   * poison of `kind`, `hold` waits and applies what it resolves to. False: scanning paused (a hold).
   */
  private apply(v: Verdict, forward: () => void, kind: K.PoisonQuery | K.PoisonParse, statementName?: string): boolean {
    switch (v.do) {
      case "forward":
        forward();
        return true;
      case "poison":
        this.poison(kind, v.error, statementName);
        return true;
      case "hold":
        return this.hold(v.until.then((next) => () => this.apply(next, forward, kind, statementName)), !v.long);
    }
  }

  /**
   * Query(token) fails with a syntax error naming the token; Parse(name, token) the same (name is
   * the token itself for a named statement, so an existing one is untouched). The denied message is
   * the Parse of `statementName` ("" keeps the unnamed semantics: the previous unnamed statement goes).
   */
  private poison(kind: K.PoisonQuery | K.PoisonParse, replacement: Buffer, statementName?: string): void {
    this.stats.denied++;
    const t = this.o.poisonToken;
    this.queue.push({ kind, replacement });
    if (kind === K.PoisonQuery) {
      this.toUpstream.push(encodeQuery(t));
      return;
    }
    // a denied unnamed Parse is poisoned as unnamed too: Postgres then drops the previous unnamed statement
    this.toUpstream.push(statementName === undefined ? encodeExecute(t) : encodeParse(statementName === "" ? "" : t, t));
    this.skipUntilSync = true;
  }

  /**
   * Stops scanning client frames until `p` settles, then runs the continuation it resolves to and
   * resumes.
   *
   * `short` (an audit ack, about one NATS round trip): the frames already forwarded stay in the
   * upstream outbox and leave with the held statement in one write, and the client socket is paused
   * only if the client actually sends more meanwhile (a pipelining client); a request-response
   * client costs no pause/resume and no extra upstream write per statement. Otherwise (a human
   * approval, which can take minutes) everything before the held statement goes upstream now and the
   * socket is paused at once.
   */
  private hold(p: Promise<() => unknown>, short: boolean): boolean {
    // a statement released by the previous hold goes now: it never waits for the next one's ack
    if (!short || this.released) this.toUpstream.flush();
    this.released = false;
    this.toClient.flush();
    this.holding = short ? "short" : "long";
    if (!short) this.pauseClient();
    const id = ++this.holdId;
    p.then((cont) => {
      if (this.closed) return;
      this.guard(() => {
        cont();
        // the continuation held again (e.g. a decision, then its audit ack): that hold resumes
        if (this.holdId !== id) return;
        this.holding = "no";
        this.released = true;
        if (this.clientPaused) {
          this.clientPaused = false;
          this.o.io.holdClient(false);
        }
        this.clientScan.resume(this.clientSink);
      });
    }).catch((e) => this.fail(e, false));
    return false;
  }

  private pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.o.io.holdClient(true);
  }

  /** the result path waits for a mask plan: no upstream frame is read meanwhile */
  private holdUpstream(p: Promise<void>): void {
    this.o.io.holdUpstream(true);
    p.then(() => {
      if (this.closed) return;
      this.guard(() => {
        this.o.io.holdUpstream(false);
        this.upstreamScan.resume(this.upstreamSink);
      }, true);
    }).catch((e) => this.fail(e, !SluiceError.is(e))); // a masking denial (42501) keeps its message
  }

  // ---------------------------------------------------------------- upstream → client

  private upstreamHead(code: number): Mode {
    switch (code) {
      case B.DataRow:
        return this.results.rowWhole(this.queue.peek()) ? Mode.Whole : Mode.Pass;
      case B.CopyData:
        return this.results.copyWhole ? Mode.Whole : Mode.Pass;
      case B.ParseComplete:
      case B.BindComplete:
      case B.CloseComplete:
      case B.NoData: {
        const p = this.queue.pop();
        return p?.kind === K.InjectedDescribe ? Mode.Drop : Mode.Pass;
      }
      case B.RowDescription: {
        const p = this.queue.peek();
        if (p?.kind === K.InjectedDescribe || this.results.captureRows > 0 || (p?.kind === K.Query && p.mask === true)) return Mode.Whole;
        if (p?.kind === K.DescribeS || p?.kind === K.DescribeP) this.queue.pop();
        return Mode.Pass;
      }
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        return this.queue.peek()?.mask === true ? Mode.Whole : Mode.Pass;
      case B.NoticeResponse:
      case B.ParameterStatus:
        return this.results.maskActive() ? Mode.Whole : Mode.Pass;
      case B.ReadyForQuery:
      case B.ErrorResponse:
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
        return Mode.Whole;
      default:
        return Mode.Pass;
    }
  }

  private upstreamFrame(code: number, f: Buffer): boolean {
    switch (code) {
      case B.ReadyForQuery: {
        this.stats.txStatus = decodeReadyForQuery(f);
        // everything up to the Sync/Query this answers is finished
        for (let p = this.queue.pop(); p !== undefined; p = this.queue.pop()) {
          if (p.kind === K.Query) this.results.completed(p);
          if (p.kind === K.Sync || p.kind === K.Query || p.kind === K.PoisonQuery) break;
          if (p.kind === K.Execute && p.rec) this.results.completed(p);
        }
        this.results.ready();
        this.toClient.push(f);
        return true;
      }
      case B.ErrorResponse:
        return this.onUpstreamError(f);
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
        if (this.results.complete(this.queue.peek(), code, f)) this.queue.pop();
        return true;
      case B.RowDescription:
        return this.onRowDescription(f);
      case B.DataRow:
        this.results.dataRow(this.queue.peek(), f);
        return true;
      case B.CopyData:
        this.results.copyData(f);
        return true;
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        return this.results.copyOut(this.queue.peek(), f);
      case B.NoticeResponse:
        return this.results.screen(this.queue.peek(), f, (g) => this.results.notice(this.queue.peek(), g));
      case B.ParameterStatus:
        return this.results.screenParameter(this.queue.peek(), f, (g) => this.toClient.push(g));
      default:
        this.toClient.push(f);
        return true;
    }
  }

  private onUpstreamError(f: Buffer): boolean {
    const fields = decodeErrorFields(f);
    const p = this.queue.peek();
    if (p !== undefined && (p.kind === K.PoisonParse || p.kind === K.PoisonQuery) && (fields.M ?? "").includes(this.o.poisonToken)) {
      if (p.kind === K.PoisonParse) this.queue.pop();
      this.toClient.push(p.replacement!);
      return true;
    }
    // masked before anything reads it: the client and the audit get the same text (ResultPath.screen)
    return this.results.screen(p, f, (g) => this.upstreamError(p, g));
  }

  private upstreamError(p: Pending | undefined, f: Buffer): void {
    const fields = decodeErrorFields(f);
    const err = { sqlstate: fields.C ?? "XX000", message: fields.M ?? "" };
    if (p !== undefined && p.kind !== K.Query && p.kind !== K.Sync && p.kind !== K.PoisonQuery) {
      // extended protocol: the upstream skips everything up to Sync
      this.queue.discardUntilSync((q) => {
        if (q.kind === K.Execute && q.rec) {
          q.error = err;
          this.results.completed(q);
        }
      });
    }
    this.results.error(p, err);
    this.results.notice(p, f);
  }

  private onRowDescription(f: Buffer): boolean {
    const p = this.queue.peek();
    const fields = decodeRowDescription(f) as RowField[];
    if (p?.kind === K.InjectedDescribe || p?.kind === K.DescribeP || p?.kind === K.DescribeS) {
      this.queue.pop();
      if (p.kind === K.DescribeS) {
        const st = this.statements.get(p.name ?? "");
        if (st) st.fields = fields;
      } else {
        const portal = this.portals.get(p.name ?? "");
        if (portal) portal.fields = fields;
        // the Execute that follows the injected Describe takes these fields
        const next = this.queue.peek();
        if (next?.kind === K.Execute) next.fields = fields;
      }
      if (p.kind === K.InjectedDescribe) return this.results.planFor(this.queue.peek(), fields, null);
      this.toClient.push(f);
      return true;
    }
    // simple query: the rows of the statement that follows
    if (p !== undefined && p.kind === K.Query) {
      p.fields = fields;
      return this.results.planFor(p, fields, f);
    }
    this.toClient.push(f);
    return true;
  }
}

/**
 * The per-connection relay after authentication: client frames in, upstream frames in, bytes out.
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
import {
  decodeBind,
  decodeCommandComplete,
  decodeErrorFields,
  decodeExecute,
  decodeParse,
  decodeQuery,
  decodeReadyForQuery,
  decodeRowDescription,
  decodeTarget,
  rowsFromTag,
} from "../wire/decode.js";
import {
  describe as encodeDescribe,
  errorResponse,
  execute as encodeExecute,
  noticeResponse,
  parse as encodeParse,
  query as encodeQuery,
} from "../wire/encode.js";
import type {
  ApprovalGate,
  AuditFeatures,
  AuditSink,
  BoundParam,
  CompletionListener,
  Enforcer,
  EnforcerDecision,
  MaskPlan,
  ResultMasker,
  RowField,
  SessionInfo,
  StatementCompletion,
  StatementRecord,
} from "./session-hooks.js";

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === "function";

/** the rule of a decision the enforcer could not make (its promise rejected) */
const ENFORCER_FAILED = "enforcer-failed";
type FailedDecision = Decision & { sqlstate?: string };

/** A rejected decision is a deny: 57P03 when the enforcer was unavailable (e.g. a worker timed out), else 42501. */
function failedDecision(e: unknown): FailedDecision {
  const err = SluiceError.from(e, "internal");
  return {
    action: "deny",
    rule: ENFORCER_FAILED,
    reason: err.code === "unavailable" ? err.message : `the statement could not be decided: ${err.message}`,
    statementClass: "unknown",
    statementIndex: 0,
    statements: [],
    sqlstate: err.code === "unavailable" ? "57P03" : "42501",
  };
}

/** the statement name of a (F) Bind without decoding the rest */
function bindStatementName(f: Buffer): string {
  const z = f.indexOf(0, 5);
  return f.toString("utf8", z + 1, f.indexOf(0, z + 1));
}

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
  maxFrameBytes: number;
  /** a per-process random identifier token: the poison statement (see the header comment) */
  poisonToken: string;
  /** monotonic milliseconds */
  now(): number;
  io: RelayIo;
}

/** What a pending upstream response belongs to (in the order the upstream will answer). */
const enum K {
  Parse = 1,
  Bind,
  DescribeS,
  DescribeP,
  Execute,
  Close,
  Sync,
  Query,
  PoisonParse,
  PoisonQuery,
  /** an injected Describe(P) whose answer the client must not see */
  InjectedDescribe,
  /** only as an argument: an Execute-time denial (pending as PoisonParse) */
  PoisonExecute,
}

type PoisonKind = K.PoisonQuery | K.PoisonParse | K.PoisonExecute;

// payload-free pending entries are shared: no allocation per forwarded frame
const PARSE: Pending = { kind: K.Parse };
const BIND: Pending = { kind: K.Bind };
const CLOSE: Pending = { kind: K.Close };
const SYNC: Pending = { kind: K.Sync };
const DESCRIBE_S: Pending = { kind: K.DescribeS };
const DESCRIBE_P: Pending = { kind: K.DescribeP };

interface Pending {
  kind: K;
  /** Query/Execute: the statement */
  rec?: StatementRecord;
  startedAt?: number;
  rows?: number;
  tag?: string;
  error?: { sqlstate: string; message: string };
  /** poison: the ErrorResponse to show instead of the upstream's */
  replacement?: Buffer;
  /** Describe / Execute: names for field bookkeeping */
  name?: string;
  fields?: RowField[];
  /** undefined: not computed yet; null: raw */
  plan?: MaskPlan | null;
  captured?: Buffer[];
  /** Query/Execute: masking applies to this statement's results (decided when it was forwarded) */
  mask?: boolean;
  /** simple query: how many of its statements have completed (the index of the one running) */
  stmtIndex?: number;
  /** simple query: rows summed over the command tags of its statements */
  tagRows?: number;
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

/**
 * Collects outgoing pieces of one direction. Adjacent slices of the same input chunk extend one
 * open range (plain numbers, no Buffer view per frame); a flush writes one Buffer.
 */
class Outbox {
  private pieces: Buffer[] = [];
  private size = 0;
  /** the open range: a slice of `runBuf` from runStart to runEnd (absolute offsets in its ArrayBuffer) */
  private runBuf: ArrayBufferLike | null = null;
  private runStart = 0;
  private runEnd = 0;
  private runSrc: Buffer | null = null;
  constructor(private readonly write: (b: Buffer) => void) {}

  push(b: Buffer): void {
    const n = b.length;
    if (n === 0) return;
    if (this.runBuf === b.buffer && this.runEnd === b.byteOffset) {
      this.runEnd += n;
      this.size += n;
      return;
    }
    this.closeRun();
    this.runBuf = b.buffer;
    this.runStart = b.byteOffset;
    this.runEnd = b.byteOffset + n;
    this.runSrc = b;
    this.size += n;
  }

  private closeRun(): void {
    if (this.runBuf === null) return;
    const src = this.runSrc!;
    // the common case: the run is exactly the buffer that opened it
    this.pieces.push(
      this.runStart === src.byteOffset && this.runEnd === src.byteOffset + src.length
        ? src
        : Buffer.from(this.runBuf, this.runStart, this.runEnd - this.runStart),
    );
    this.runBuf = null;
    this.runSrc = null;
  }

  flush(): void {
    this.closeRun();
    const n = this.pieces.length;
    if (n === 0) return;
    const out = n === 1 ? this.pieces[0]! : Buffer.concat(this.pieces, this.size);
    this.pieces = [];
    this.size = 0;
    this.write(out);
  }
}

export interface RelayStats {
  statements: number;
  denied: number;
  bytesIn: number;
  bytesOut: number;
  txStatus: TxStatus;
}

export class RelaySession {
  private readonly o: RelaySessionOptions;
  private readonly toClient: Outbox;
  private readonly toUpstream: Outbox;
  private readonly clientScan: FrameScanner;
  private readonly upstreamScan: FrameScanner;
  private readonly clientSink: ScanSink;
  private readonly upstreamSink: ScanSink;
  /** pending upstream answers, oldest first (a head index instead of shift() keeps it O(1)) */
  private pending: Pending[] = [];
  private head = 0;
  private statements = new Map<string, PreparedStatement>();
  private portals = new Map<string, Portal>();
  private skipUntilSync = false;
  /** held approvals still waiting (aborted by dispose) */
  private readonly approvalAborts = new Set<AbortController>();
  /** a hook holds client frames (see `hold`); during a short one the upstream outbox is not flushed */
  private holding: "no" | "short" | "long" = "no";
  /** the client socket is paused for a hold */
  private clientPaused = false;
  /** the upstream outbox holds a statement a hold released and no flush has sent it yet */
  private released = false;
  private seq = 0;
  private closed = false;
  /** set while a copy-out is streaming through a mask plan */
  private copyOutPlan: MaskPlan | null = null;
  private readonly needParams: boolean;
  private readonly captureCap: number;
  private readonly listeners: readonly CompletionListener[];
  /** identifies the current hold: a continuation that starts another hold leaves the resume to it */
  private holdId = 0;
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
    this.captureCap = Math.max(0, opts.features.captureRows);
    this.listeners = opts.listeners ?? [];
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
    for (const a of this.approvalAborts) a.abort();
    this.approvalAborts.clear();
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

  // ---------------------------------------------------------------- pending queue

  private push(p: Pending): void {
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
    this.pending.push(p);
  }

  private peek(): Pending | undefined {
    return this.pending[this.head];
  }

  private pop(): Pending | undefined {
    const p = this.pending[this.head];
    if (p !== undefined) {
      this.pending[this.head] = undefined as unknown as Pending;
      this.head++;
      if (this.head === this.pending.length) {
        this.pending.length = 0;
        this.head = 0;
      }
    }
    return p;
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
      case F.Bind: {
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
        this.push(BIND);
        this.toUpstream.push(f);
        return true;
      }
      case F.Execute:
        return this.onExecute(f);
      case F.Describe: {
        const t = decodeTarget(f);
        if (this.captureCap > 0) this.push({ kind: t.kind === "S" ? K.DescribeS : K.DescribeP, name: t.name });
        else this.push(t.kind === "S" ? DESCRIBE_S : DESCRIBE_P);
        this.toUpstream.push(f);
        return true;
      }
      case F.Close: {
        const t = decodeTarget(f);
        if (t.kind === "S") this.statements.delete(t.name);
        else this.portals.delete(t.name);
        this.push(CLOSE);
        this.toUpstream.push(f);
        return true;
      }
      case F.Sync:
        this.skipUntilSync = false;
        this.portals.delete("");
        this.push(SYNC);
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
        this.stats.denied++;
        this.poison(K.PoisonQuery, "the FunctionCall protocol message is not allowed through sluice", "function-call");
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
   * is a deny: 57P03 when the enforcer was unavailable, 42501 otherwise.
   */
  private decided(d: EnforcerDecision, then: (d: Decision) => boolean): boolean {
    if (!isPromise(d)) return then(d);
    let denial: Decision | undefined;
    return this.hold(
      d.then((x) => void (denial = x), (e: unknown) => void (denial = failedDecision(e))),
      () => void then(denial!),
      (e) => this.fail(e, false),
    );
  }

  private onQuery(f: Buffer): boolean {
    const sql = decodeQuery(f);
    return this.decided(this.o.enforcer.decide(sql, "simple", this.o.info), (decision) => this.onQueryDecided(f, sql, decision));
  }

  private onQueryDecided(f: Buffer, sql: string, decision: Decision): boolean {
    const rec = this.record("simple", sql, decision);
    const forward = () => {
      this.stats.statements++;
      this.o.enforcer.observeForwarded?.(decision, this.o.info);
      this.push({ kind: K.Query, rec, startedAt: this.o.now(), rows: 0, mask: this.maskActive() });
      this.toUpstream.push(f);
    };
    return this.gate(rec, forward, () => this.deny(K.PoisonQuery, rec));
  }

  private onParse(f: Buffer): boolean {
    const p = decodeParse(f);
    return this.decided(this.o.enforcer.decide(p.sql, "parse", this.o.info), (decision) => this.onParseDecided(f, p, decision));
  }

  private onParseDecided(f: Buffer, p: { name: string; sql: string }, decision: Decision): boolean {
    if (decision.action === "allow") {
      this.o.enforcer.observeForwarded?.(decision, this.o.info);
      this.statements.set(p.name, { sql: p.sql, decision });
      this.push(PARSE);
      this.toUpstream.push(f);
      return true;
    }
    if (decision.action === "approve" && this.o.approvals) {
      // approval binds to the parameters too, so it is asked at Execute; the Parse itself goes through
      this.statements.set(p.name, { sql: p.sql, decision });
      this.push(PARSE);
      this.toUpstream.push(f);
      return true;
    }
    const rec = this.record("parse", p.sql, decision, { statementName: p.name });
    // like a failed Parse in Postgres, a denied unnamed Parse leaves no unnamed statement behind
    if (p.name === "") this.statements.delete("");
    return this.deny(K.PoisonParse, rec);
  }

  private onExecute(f: Buffer): boolean {
    const portalName = this.needParams ? decodeExecute(f).portal : f.toString("utf8", 5, f.indexOf(0, 5));
    const portal = this.portals.get(portalName);
    const st = portal ? this.statements.get(portal.statement) : undefined;
    if (!st) {
      // unknown portal/statement: the upstream reports the error in order
      this.push({ kind: K.Execute, rows: 0, startedAt: this.o.now() });
      this.toUpstream.push(f);
      return true;
    }
    const rec = this.record("parse", st.sql, st.decision, {
      statementName: portal!.statement,
      portalName,
      params: portal!.params,
    });
    const forward = () => {
      this.stats.statements++;
      const mask = this.maskActive();
      if (mask) {
        // make the upstream describe the portal so the rows can be matched to columns; the answer is swallowed
        const d = encodeDescribe("P", portalName);
        this.push({ kind: K.InjectedDescribe, name: portalName });
        this.toUpstream.push(d);
      }
      // the shape of the rows, when a Describe already told it (audit row capture labels columns with it)
      this.push({ kind: K.Execute, rec, startedAt: this.o.now(), rows: 0, mask, fields: portal!.fields ?? st.fields });
      this.toUpstream.push(f);
    };
    return this.gate(rec, forward, () => this.deny(K.PoisonExecute, rec));
  }

  /**
   * Runs the audit/approval hooks for an allowed (or approval-required) statement. Synchronous when
   * the hooks return nothing; otherwise pauses the client side until they settle.
   */
  private gate(rec: StatementRecord, forward: () => void, denied: () => boolean): boolean {
    const action = rec.decision.action;
    if (action === "deny" || (action === "approve" && !this.o.approvals)) return denied();
    const audit = this.o.audit;
    if (action === "approve") {
      const gate = this.o.approvals!;
      const notice = (message: string) => {
        this.toClient.push(noticeResponse({ sqlstate: "01000", message }));
        this.toClient.flush();
      };
      // a held approval ends with the session: dispose() aborts it (the gate records it cancelled)
      const abort = new AbortController();
      this.approvalAborts.add(abort);
      return this.hold(
        gate.request(this.o.info, rec, notice, abort.signal).finally(() => this.approvalAborts.delete(abort)).then(async (r) => {
          if (r !== "approved") throw new SluiceError("permission_denied", `statement ${r === "timeout" ? "approval timed out" : "was rejected by an approver"}`);
          await audit.statementAllowed(this.o.info, rec);
        }),
        forward,
        (err) => this.refuse(rec, err),
      );
    }
    const p = audit.statementAllowed(this.o.info, rec);
    if (p === undefined || p === null || typeof (p as Promise<void>).then !== "function") {
      forward();
      return true;
    }
    // an audit ack takes about a NATS round trip: hold lightly (see `hold`)
    return this.hold(p as Promise<void>, forward, (err) => this.refuse(rec, err), true);
  }

  private deny(kind: PoisonKind, rec: StatementRecord): boolean {
    this.stats.denied++;
    const d = rec.decision;
    const p = this.o.audit.statementBlocked(this.o.info, rec);
    const why = d.action === "approve" ? "requires approval and no approval service is configured" : d.reason;
    const message = d.rule === ENFORCER_FAILED ? d.reason : `permission denied by sluice policy: rule "${d.rule}" (${d.statementClass}): ${why}`;
    const sqlstate = (d as FailedDecision).sqlstate ?? "42501";
    if (p && typeof (p as Promise<void>).then === "function") {
      // blocked is recorded first; a failing recorder still denies
      const act = () => this.poison(kind, message, d.rule, rec.statementName, sqlstate);
      return this.hold(p as Promise<void>, act, act);
    }
    this.poison(kind, message, d.rule, rec.statementName, sqlstate);
    return true;
  }

  /** audit (ack) or approval failed: refuse the statement with the error's SQLSTATE */
  private refuse(rec: StatementRecord, err: unknown): void {
    const e = SluiceError.from(err, "unavailable");
    this.stats.denied++;
    this.poisonWith(rec.protocol === "simple" ? K.PoisonQuery : K.PoisonExecute, errorResponse({ severity: "ERROR", sqlstate: toSqlState(e.code), message: e.message }));
  }

  private poison(kind: PoisonKind, message: string, rule: string, statementName?: string, sqlstate = "42501"): void {
    this.poisonWith(kind, errorResponse({ severity: "ERROR", sqlstate, message, detail: `sluice rule: ${rule}` }), statementName);
  }

  /**
   * Query(token) fails with a syntax error naming the token; Parse(name, token) the same (name is
   * the token itself for a named statement, so an existing one is untouched); Execute(token) fails
   * with `portal "token" does not exist`.
   */
  private poisonWith(kind: PoisonKind, replacement: Buffer, statementName?: string): void {
    const t = this.o.poisonToken;
    if (kind === K.PoisonQuery) {
      this.push({ kind, replacement });
      this.toUpstream.push(encodeQuery(t));
      return;
    }
    this.push({ kind: K.PoisonParse, replacement });
    // a denied unnamed Parse is poisoned as unnamed too: Postgres then drops the previous unnamed statement
    this.toUpstream.push(kind === K.PoisonParse ? encodeParse(statementName === "" ? "" : t, t) : encodeExecute(t));
    this.skipUntilSync = true;
  }

  /**
   * Stops scanning client frames until `p` settles, then runs the continuation and resumes.
   *
   * `short` (an audit ack, about one NATS round trip): the frames already forwarded stay in the
   * upstream outbox and leave with the held statement in one write, and the client socket is paused
   * only if the client actually sends more meanwhile (a pipelining client); a request-response
   * client costs no pause/resume and no extra upstream write per statement. Otherwise (a human
   * approval, which can take minutes) everything before the held statement goes upstream now and the
   * socket is paused at once.
   */
  private hold(p: Promise<void>, ok: () => void, failed: (e: unknown) => void, short = false): boolean {
    // a statement released by the previous hold goes now: it never waits for the next one's ack
    if (!short || this.released) this.toUpstream.flush();
    this.released = false;
    this.toClient.flush();
    this.holding = short ? "short" : "long";
    if (!short) this.pauseClient();
    const id = ++this.holdId;
    p.then(ok, failed)
      .then(() => {
        if (this.closed) return;
        // the continuation held again (e.g. a decision, then its audit ack): that hold resumes
        if (this.holdId !== id) return;
        this.guard(() => {
          this.holding = "no";
          this.released = true;
          if (this.clientPaused) {
            this.clientPaused = false;
            this.o.io.holdClient(false);
          }
          this.clientScan.resume(this.clientSink);
        });
      })
      .catch((e) => this.fail(e, false));
    return false;
  }

  private pauseClient(): void {
    if (this.clientPaused) return;
    this.clientPaused = true;
    this.o.io.holdClient(true);
  }

  /** whether results of this session's resource go through the masker (re-read per statement: a new snapshot may add rules) */
  private maskActive(): boolean {
    const m = this.o.masker;
    return m !== undefined && (m.masks ? m.masks(this.o.info.resource) : true);
  }

  // ---------------------------------------------------------------- upstream → client

  private upstreamHead(code: number): Mode {
    switch (code) {
      case B.DataRow: {
        const p = this.peek();
        if (p !== undefined && (p.kind === K.Execute || p.kind === K.Query)) {
          p.rows = (p.rows ?? 0) + 1;
          if (p.mask === true && p.plan !== null) return Mode.Whole;
          if (this.captureCap > 0 && (p.captured?.length ?? 0) < this.captureCap) return Mode.Whole;
        }
        return Mode.Pass;
      }
      case B.CopyData:
        return this.copyOutPlan !== null ? Mode.Whole : Mode.Pass;
      case B.ReadyForQuery:
      case B.ErrorResponse:
        return Mode.Whole;
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
        return Mode.Whole;
      case B.ParseComplete:
      case B.BindComplete:
      case B.CloseComplete:
      case B.NoData: {
        const p = this.peek();
        if (p?.kind === K.InjectedDescribe) {
          this.pop();
          return Mode.Drop;
        }
        this.pop();
        return Mode.Pass;
      }
      case B.RowDescription: {
        const p = this.peek();
        if (p?.kind === K.InjectedDescribe || this.captureCap > 0 || (p?.kind === K.Query && p.mask === true)) return Mode.Whole;
        if (p?.kind === K.DescribeS || p?.kind === K.DescribeP) this.pop();
        return Mode.Pass;
      }
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        return this.peek()?.mask === true ? Mode.Whole : Mode.Pass;
      default:
        return Mode.Pass;
    }
  }

  private upstreamFrame(code: number, f: Buffer): boolean {
    switch (code) {
      case B.ReadyForQuery: {
        this.stats.txStatus = decodeReadyForQuery(f);
        // everything up to the Sync/Query this answers is finished
        for (let p = this.pop(); p !== undefined; p = this.pop()) {
          if (p.kind === K.Query) this.completed(p);
          if (p.kind === K.Sync || p.kind === K.Query || p.kind === K.PoisonQuery) break;
          if (p.kind === K.Execute && p.rec) this.completed(p);
        }
        this.toClient.push(f);
        return true;
      }
      case B.ErrorResponse:
        return this.onUpstreamError(f);
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended: {
        const p = this.peek();
        const tag = code === B.CommandComplete ? decodeCommandComplete(f) : undefined;
        if (p?.kind === K.Execute) {
          this.pop();
          p.tag = tag;
          if (tag) p.rows = rowsFromTag(tag);
          this.flushCapture(p);
          this.completed(p);
        } else if (p?.kind === K.Query) {
          // one of possibly several statements of a simple query: keep the last tag, sum the rows
          p.tag = tag;
          if (tag) p.tagRows = (p.tagRows ?? 0) + rowsFromTag(tag);
          p.stmtIndex = (p.stmtIndex ?? 0) + 1;
          this.flushCapture(p);
          p.plan = undefined;
          p.fields = undefined;
        }
        this.copyOutPlan = null;
        this.toClient.push(f);
        return true;
      }
      case B.RowDescription:
        return this.onRowDescription(f);
      case B.DataRow:
        return this.onDataRow(f);
      case B.CopyData:
        this.toClient.push(this.o.masker?.maskCopyData && this.copyOutPlan !== null ? this.o.masker.maskCopyData(this.copyOutPlan, f) : f);
        return true;
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        return this.onCopyOut(f);
      default:
        this.toClient.push(f);
        return true;
    }
  }

  private onUpstreamError(f: Buffer): boolean {
    const fields = decodeErrorFields(f);
    const p = this.peek();
    if (p !== undefined && (p.kind === K.PoisonParse || p.kind === K.PoisonQuery) && (fields.M ?? "").includes(this.o.poisonToken)) {
      if (p.kind === K.PoisonParse) this.pop();
      this.toClient.push(p.replacement!);
      return true;
    }
    const err = { sqlstate: fields.C ?? "XX000", message: fields.M ?? "" };
    if (p?.kind === K.Query) {
      p.error = err;
    } else if (p !== undefined && p.kind !== K.Sync && p.kind !== K.PoisonQuery) {
      // extended protocol: the upstream skips everything up to Sync
      while (this.peek() !== undefined && this.peek()!.kind !== K.Sync) {
        const q = this.pop()!;
        if (q.kind === K.Execute && q.rec) {
          q.error = err;
          this.completed(q);
        }
      }
    }
    this.copyOutPlan = null;
    this.toClient.push(f);
    return true;
  }

  private completed(p: Pending): void {
    if (!p.rec) return;
    const done: StatementCompletion = {
      seq: p.rec.seq,
      commandTag: p.error ? undefined : p.tag,
      rows: p.kind === K.Query ? p.tagRows ?? 0 : p.rows ?? 0,
      durationMs: this.o.now() - (p.startedAt ?? 0),
      error: p.error,
    };
    this.o.audit.statementCompleted(this.o.info, done);
    for (const l of this.listeners) l(this.o.info, done);
    p.rec = undefined;
  }

  private flushCapture(p: Pending): void {
    if (p.captured && p.captured.length && p.rec) {
      const masks = p.plan ? this.o.masker?.describe?.(p.plan) : undefined;
      this.o.audit.resultRows(this.o.info, p.rec.seq, p.fields ?? [], p.captured, masks);
    }
    p.captured = undefined;
  }

  private onRowDescription(f: Buffer): boolean {
    const p = this.peek();
    const fields = decodeRowDescription(f) as RowField[];
    if (p?.kind === K.InjectedDescribe || p?.kind === K.DescribeP || p?.kind === K.DescribeS) {
      this.pop();
      if (p.kind === K.DescribeS) {
        const st = this.statements.get(p.name ?? "");
        if (st) st.fields = fields;
      } else {
        const portal = this.portals.get(p.name ?? "");
        if (portal) portal.fields = fields;
        // the Execute that follows the injected Describe takes these fields
        const next = this.peek();
        if (next?.kind === K.Execute) next.fields = fields;
      }
      if (p.kind === K.InjectedDescribe) return this.planFor(this.peek(), fields, null);
      this.toClient.push(f);
      return true;
    }
    // simple query: the rows of the statement that follows
    if (p !== undefined && p.kind === K.Query) {
      p.fields = fields;
      return this.planFor(p, fields, f);
    }
    this.toClient.push(f);
    return true;
  }

  /** decide the mask plan for a result; `f` is forwarded after (null: swallowed) */
  private planFor(p: Pending | undefined, fields: RowField[], f: Buffer | null): boolean {
    if (p === undefined || !this.o.masker || p.mask !== true) {
      if (p) p.plan = null;
      if (f) this.toClient.push(f);
      return true;
    }
    if (p.kind === K.Execute) p.fields = fields;
    const ctx = { session: this.o.info, sql: p.rec?.sql ?? "", statements: p.rec?.decision.statements ?? [], statementIndex: p.kind === K.Query ? p.stmtIndex ?? 0 : 0 };
    const plan = this.o.masker.planFor(fields, ctx);
    if (plan && typeof (plan as Promise<unknown>).then === "function") {
      this.toClient.flush();
      this.o.io.holdUpstream(true);
      (plan as Promise<MaskPlan | null>)
        .then((resolved) => {
          p.plan = resolved ?? null;
          if (f) this.toClient.push(f);
        })
        .then(() => {
          if (this.closed) return;
          this.guard(() => {
            this.o.io.holdUpstream(false);
            this.upstreamScan.resume(this.upstreamSink);
          }, true);
        })
        .catch((e) => this.fail(e, !SluiceError.is(e))); // a masking denial (42501) keeps its message
      return false;
    }
    p.plan = (plan as MaskPlan | null) ?? null;
    if (f) this.toClient.push(f);
    return true;
  }

  private onDataRow(f: Buffer): boolean {
    const p = this.peek();
    let out = f;
    if (p !== undefined && this.o.masker && p.mask === true) {
      if (p.plan === undefined) {
        // rows without a known shape cannot be matched to masking rules: fail closed
        throw new SluiceError("internal", "result rows arrived without a row description while masking is configured");
      }
      if (p.plan !== null) out = this.o.masker.maskDataRow(p.plan, f);
    }
    if (p !== undefined && this.captureCap > 0) {
      const c = (p.captured ??= []);
      if (c.length < this.captureCap) c.push(Buffer.from(out));
    }
    this.toClient.push(out);
    return true;
  }

  private onCopyOut(f: Buffer): boolean {
    const p = this.peek();
    const m = this.o.masker;
    if (m && p && p.mask === true) {
      const ctx = { session: this.o.info, sql: p.rec?.sql ?? "", statements: p.rec?.decision.statements ?? [], statementIndex: p.kind === K.Query ? p.stmtIndex ?? 0 : 0 };
      const plan = m.planForCopyOut ? m.planForCopyOut(ctx) : "deny";
      if (plan && typeof (plan as Promise<unknown>).then === "function") {
        // the masker asks the catalog (a whole-table COPY needs its column list): hold the upstream
        this.toClient.flush();
        this.o.io.holdUpstream(true);
        (plan as Promise<MaskPlan | null | "deny">)
          .then((resolved) => {
            if (resolved === "deny") throw new SluiceError("permission_denied", "COPY TO STDOUT of a result with masking rules is not allowed");
            this.copyOutPlan = resolved ?? null;
            this.toClient.push(f);
          })
          .then(() => {
            if (this.closed) return;
            this.guard(() => {
              this.o.io.holdUpstream(false);
              this.upstreamScan.resume(this.upstreamSink);
            }, true);
          })
          .catch((e) => this.fail(e, !SluiceError.is(e)));
        return false;
      }
      if (plan === "deny") throw new SluiceError("permission_denied", "COPY TO STDOUT of a result with masking rules is not allowed");
      this.copyOutPlan = (plan as MaskPlan | null) ?? null;
    }
    this.toClient.push(f);
    return true;
  }
}

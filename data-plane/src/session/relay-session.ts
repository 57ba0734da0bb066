/**
 * The per-connection relay after authentication: client frames in, upstream frames in, bytes out.
 * This room routes frames between the session's other rooms: the statement namespace (the names
 * the proxy owns), the statement gate (forward, poison, hold), the response queue (what the upstream
 * still owes, skip-to-Sync), the result path (row descriptions, rows, masking, capture, COPY out,
 * completions) and the two outboxes. Pure: no sockets and no clock (the composition root passes
 * `io` and `now`).
 *
 * Hot path: both directions run through a FrameScanner; frames that are only forwarded stay raw and
 * contiguous forwarded bytes leave as one write per input chunk. Unnamed statements and portals are
 * forwarded as they are; a named one costs one re-encoded frame (its name replaced by the proxy's).
 *
 * Denials: instead of answering the client out of band (which would reorder responses in a pipeline
 * and get the transaction state wrong), a denied Query/Parse/Bind/Execute is replaced by a "poison"
 * statement that fails upstream with a syntax error naming a per-process token. Postgres then does
 * exactly what it would do for a failing statement: skips to Sync, rolls back an implicit
 * transaction, marks an explicit one failed ('E', COMMIT acts as ROLLBACK). The proxy swaps that
 * ErrorResponse, in order, for the 42501 naming the rule (or the server's own error, e.g. 26000 for
 * a statement name the client never prepared).
 *
 * Every backend message must be what the server owes the oldest pending entry (or one of the
 * asynchronous ones: NoticeResponse, ParameterStatus, NotificationResponse). Anything else means the
 * proxy's picture of the session is not the server's: the session is closed (FATAL) rather than a
 * result forwarded unchecked or recorded against the wrong statement.
 */
import { SluiceError, toSqlState } from "@sluice/shared/errors";
import type { Decision } from "@sluice/shared/policy";
import { B, F, type TxStatus } from "../wire/codes.js";
import { FrameScanner, Mode, WireError, type ScanSink } from "../wire/frame-scanner.js";
import { bindAsksBinary, decodeBind, decodeErrorFields, decodeParameterStatus, decodeQuery, decodeReadyForQuery, decodeRowDescription } from "../wire/decode.js";
import { describe as encodeDescribe, encodeErrorFields, errorResponse, flush as encodeFlush, noticeResponse, parse as encodeParse, query as encodeQuery, withNames, type ErrorFields } from "../wire/encode.js";
import { Outbox } from "./outbox.js";
import { pinnedSettingViolation } from "./pinned-settings.js";
import { ReservedNames } from "./reserved-names.js";
import { BIND, CLOSE, DESCRIBE_P, DESCRIBE_S, K, opOf, PARSE, ResponseQueue, SYNC, type Described, type Pending } from "./response-queue.js";
import { ResultPath } from "./result-path.js";
import { statementParts } from "./statement-parts.js";
import { isPromise, settledDecision, StatementGate, type Verdict } from "./statement-gate.js";
import { nameKey, StatementNamespace, type Portal, type ProtocolNames, type QueryEnd, type Slot, type SqlEffect, type Statement } from "./statement-namespace.js";
import { renamedNames, type Renamed } from "./clash-rename.js";
import type { ApprovalGate, AuditFeatures, AuditSink, BoundParam, CompletionListener, Enforcer, ResultMasker, RowField, SessionInfo, StatementRecord } from "./session-hooks.js";

export interface RelayIo {
  /** one call per flushed batch; returns false when the socket buffer is full */
  writeClient(b: Buffer): void;
  writeUpstream(b: Buffer): void;
  /** hold/release reading from the client while an async hook (audit ack, approval, mask plan) runs */
  holdClient(hold: boolean): void;
  holdUpstream(hold: boolean): void;
  /** end the session: send `finalToClient` (a FATAL ErrorResponse) if given, then close both sides */
  close(reason: string, finalToClient?: Buffer): void;
  /**
   * The client sent Terminate and the session is provably clean (see `reusable`): may the upstream
   * connection serve another session once reset? true keeps it (Terminate is not forwarded; `close`
   * follows); false or absent: the server is told to end too.
   */
  release?(): boolean;
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

export interface RelayStats {
  statements: number;
  denied: number;
  bytesIn: number;
  bytesOut: number;
  txStatus: TxStatus;
}

/** A reason to end the session that the client is told as it is (FATAL with this SQLSTATE), whichever side caused it. */
class EndSession extends Error {
  constructor(message: string, readonly sqlstate: string, readonly kind: string) {
    super(message);
  }
}

/** The proxy lost track of the server: the session ends, nothing more is forwarded. */
const desync = (what: string) =>
  new EndSession(`sluice lost track of the server's answers (${what}); the session is closed rather than forward an unchecked result`, "08P01", "session desynchronised");

/** A message sequence the proxy cannot model: refused (08P01), the session ends. */
const unmodelled = (what: string) => new EndSession(`${what} is not supported through sluice`, "08P01", "unsupported protocol sequence");

const BACKEND_NAMES: Record<number, string> = {
  [B.ParseComplete]: "ParseComplete", [B.BindComplete]: "BindComplete", [B.CloseComplete]: "CloseComplete", [B.NoData]: "NoData",
  [B.ParameterDescription]: "ParameterDescription", [B.RowDescription]: "RowDescription", [B.DataRow]: "DataRow",
  [B.CommandComplete]: "CommandComplete", [B.EmptyQueryResponse]: "EmptyQueryResponse", [B.PortalSuspended]: "PortalSuspended",
  [B.ReadyForQuery]: "ReadyForQuery", [B.CopyInResponse]: "CopyInResponse", [B.CopyOutResponse]: "CopyOutResponse",
  [B.CopyBothResponse]: "CopyBothResponse", [B.CopyData]: "CopyData", [B.CopyDone]: "CopyDone",
};
const KIND_NAMES: Record<number, string> = {
  [K.Parse]: "Parse", [K.Bind]: "Bind", [K.DescribeS]: "Describe", [K.DescribeP]: "Describe", [K.Execute]: "Execute", [K.Close]: "Close",
  [K.Sync]: "Sync", [K.Query]: "Query", [K.PoisonParse]: "a refused message", [K.PoisonQuery]: "a refused Query", [K.InjectedDescribe]: "Describe",
};

/** the end of the C string that starts at `i` (the index of its NUL) */
function cstrEnd(f: Buffer, i: number): number {
  const z = f.indexOf(0, i);
  if (z < 0) throw new WireError("unterminated string in message");
  return z;
}

/** the completion of a statement the server skipped */
const NOT_RUN = { sqlstate: "08P01", message: "not run: an earlier message of its pipeline failed" } as const;

/** the server's message for a name it does not have */
const missingStatement = (name: string) => (name === "" ? "unnamed prepared statement does not exist" : `prepared statement "${name}" does not exist`);

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
  private readonly ns: StatementNamespace;
  /** SQL text that names the proxy's own statements and portals (or could) is denied */
  private readonly reserved: ReservedNames;
  /**
   * The server skips every message up to the next Sync (after a poison, or after an error of the
   * extended protocol that arrived before the client sent that Sync): the client's frames up to
   * Sync are dropped here, so the server owes nothing for them. Flush still goes through.
   */
  private skipUntilSync = false;
  /** the server is in COPY FROM STDIN and the client has not ended it (CopyDone/CopyFail) yet */
  private copyIn = false;
  /** absolute queue positions at which the client ended a COPY (CopyDone/CopyFail), oldest first */
  private copyEnds: number[] = [];
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
  /** waiting until the server has answered every extended-protocol message of the current Sync batch */
  private batchWaiters: Array<() => void> = [];
  /** the server reported an error to the client: its connection is not handed to another session */
  private serverError = false;
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
    // a valid identifier prefix, random per process (from the token's random tail): `_<12 hex>_`
    const prefix = `_${Buffer.from(opts.poisonToken).toString("hex").slice(-12)}_`;
    this.ns = new StatementNamespace(prefix);
    this.reserved = new ReservedNames(prefix);
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
    // what the server still owed answers for: recorded with an unknown outcome, before session.ended
    for (let i = 0; i < this.queue.length; i++) {
      const p = this.queue.at(i);
      if (p?.rec) this.results.abandoned(p);
    }
  }

  /**
   * Nothing pending in either direction, no transaction, no COPY, no hold and no server error this
   * session: the only state left on the server is what a reset (DISCARD ALL) clears.
   */
  private reusable(): boolean {
    return (
      this.stats.txStatus === "I" && !this.serverError && this.queue.peek() === undefined && !this.copyIn && this.copyEnds.length === 0 &&
      !this.skipUntilSync && this.holding === "no" && this.upstreamScan.atBoundary
    );
  }

  private guard(fn: () => unknown, fromUpstream = false): void {
    try {
      fn();
      // answers are read here, and where a held upstream resumes (a mask plan, a screened message)
      if (this.batchWaiters.length && this.batchAnswered()) for (const w of this.batchWaiters.splice(0)) w();
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
    let sqlstate: string;
    let text: string;
    if (e instanceof EndSession) [sqlstate, text] = [e.sqlstate, msg];
    else if (fromUpstream) [sqlstate, text] = ["08006", "upstream protocol error"];
    else [sqlstate, text] = [e instanceof SluiceError ? toSqlState(e.code) : (e as { sqlstate?: string }).sqlstate ?? "08P01", msg];
    const side = e instanceof EndSession ? e.kind : fromUpstream ? "upstream protocol error" : "client protocol error";
    this.o.io.close(`${side}: ${msg}`, errorResponse({ severity: "FATAL", sqlstate, message: text }));
  }

  // ---------------------------------------------------------------- client → upstream

  private clientHead(code: number): Mode {
    if (this.copyIn) {
      // only the COPY's own messages; Flush and Sync are swallowed by the server during COPY
      if (code === F.CopyData || code === F.Flush) return Mode.Pass;
      return Mode.Whole;
    }
    if (this.skipUntilSync) {
      // after a poison everything up to Sync is swallowed; Flush still goes through
      if (code === F.Sync) return Mode.Whole;
      if (code === F.Flush) return Mode.Pass;
      if (code === F.Terminate) return Mode.Whole;
      return Mode.Drop;
    }
    switch (code) {
      case F.CopyData:
      case F.Flush:
        return Mode.Pass;
      default:
        return Mode.Whole;
    }
  }

  private clientFrame(code: number, f: Buffer): boolean {
    if (this.copyIn) return this.copyInFrame(code, f);
    // a frame read before the server began skipping and re-read after a hold (see `hold`)
    if (this.skipUntilSync && code !== F.Sync && code !== F.Terminate) return true;
    switch (code) {
      case F.Query:
        return this.onQuery(f);
      case F.Parse:
        return this.onParse(f);
      case F.Bind:
        return this.onBind(f);
      case F.Execute:
        return this.onExecute(f);
      case F.Describe:
        return this.onDescribe(f);
      case F.Close:
        return this.onClose(f);
      case F.Sync:
        this.skipUntilSync = false;
        this.queue.push(SYNC);
        this.ns.sync();
        this.toUpstream.push(f);
        return true;
      case F.CopyDone:
      case F.CopyFail:
        // not in a COPY the proxy knows of: the server ignores it, or it ends a COPY whose
        // CopyInResponse has not arrived yet (see onCopyIn)
        this.copyEnds.push(this.queue.pushed);
        this.toUpstream.push(f);
        if (code === F.CopyFail) this.copyFailed();
        return true;
      case F.Terminate:
        if (!(this.reusable() && this.o.io.release?.() === true)) this.toUpstream.push(f);
        this.toUpstream.flush();
        this.closed = true;
        this.o.io.close("client terminated");
        return false;
      case F.FunctionCall:
        // a function called by OID bypasses SQL policy entirely (lo_import, pg_read_file, …)
        this.stats.denied++;
        this.poisonQuery(errorResponse({ severity: "ERROR", sqlstate: "42501", message: "the FunctionCall protocol message is not allowed through sluice", detail: "sluice rule: function-call" }));
        return true;
      default:
        // PasswordMessage after authentication or an unknown code: the server answers with a FATAL error
        this.toUpstream.push(f);
        return true;
    }
  }

  /** a client frame while the server is in COPY FROM STDIN */
  private copyInFrame(code: number, f: Buffer): boolean {
    switch (code) {
      case F.CopyDone:
      case F.CopyFail:
        this.copyIn = false;
        this.copyEnds.push(this.queue.pushed);
        this.toUpstream.push(f);
        if (code === F.CopyFail) this.copyFailed();
        return true;
      case F.Sync:
        // ignored by the server during COPY, so it owes no ReadyForQuery for it
        this.toUpstream.push(f);
        return true;
      case F.Terminate:
        this.copyIn = false;
        return this.clientFrame(code, f);
      default:
        throw unmodelled(`a message of type '${String.fromCharCode(code)}' during COPY FROM STDIN`);
    }
  }

  /**
   * CopyFail right behind an extended-protocol Execute of COPY FROM STDIN: the COPY fails (or the
   * Execute already did), and either way the server skips everything up to Sync, so the client's
   * messages until then are not decided, recorded or put before an approver (finding 026). Behind
   * a simple Query's COPY the server goes on after its ReadyForQuery; elsewhere it ignores CopyFail.
   */
  private copyFailed(): void {
    const last = this.queue.at(this.queue.length - 1);
    if (last?.kind === K.Execute && last.rec?.decision.statements.some((s) => s.kind === "CopyStmt" && /\bFROM\s+STDIN\b/i.test(s.text))) this.skipUntilSync = true;
  }

  private record(protocol: "simple" | "parse", sql: string, decision: Decision, extra?: Partial<StatementRecord>): StatementRecord {
    return { seq: ++this.seq, protocol, sql, decision, ...extra };
  }

  /**
   * Runs `then` with the decision for `sql`, made with the SQL-level prepared statements as the
   * server will have them: at once when that is certain and the enforcer answers synchronously,
   * otherwise after holding this message (and everything pipelined behind it) until it is. Text that
   * names the proxy's own statements or portals (or could: a Unicode-escaped identifier) is denied.
   */
  private decided(sql: string, protocol: "simple" | "parse", then: (d: Decision) => boolean): boolean {
    const d = settledDecision(this.o.enforcer.decide(sql, protocol, this.o.info, this.ns));
    const go = (x: Decision): boolean => {
      // the server began skipping to Sync while this message waited: it will never see it
      if (this.skipUntilSync) return true;
      // what policy denies keeps its own rule; what it would let through must not reach the proxy's names
      if (x.action !== "deny") {
        const reserved = this.reserved.check(sql);
        if (reserved !== undefined) return then(reserved);
      }
      const names = executedNames(x);
      if (names === undefined || this.ns.sqlCertain(names)) return then(x);
      // EXECUTE of a name whose PREPARE/DEALLOCATE the server has not answered yet: decide once it has
      return this.hold(this.serverAnswers(() => this.ns.sqlCertain(names)).then(() => () => this.decided(sql, protocol, then)), false);
    };
    if (!isPromise(d)) return go(d);
    return this.hold(d.then((x) => () => go(x)), false);
  }

  /** re-reads `f` once the server has answered what the name in it depends on */
  private waitFor(ready: () => boolean, code: number, f: Buffer): boolean {
    return this.hold(this.serverAnswers(ready).then(() => () => this.clientFrame(code, f)), false);
  }

  /**
   * Whether the server has answered every extended-protocol message of the current Sync batch: a
   * message sent now cannot be skipped any more because of an error of one of them (a simple
   * Query's error makes the server skip nothing).
   */
  private batchAnswered(): boolean {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const k = this.queue.at(i)!.kind;
      if (k === K.Sync) return true;
      if (k !== K.Query && k !== K.PoisonQuery) return false;
    }
    return true;
  }

  /**
   * Resolves once `batchAnswered()`. A statement that needs approval waits for it before the request
   * is filed: the server skips what follows an error until Sync, and a statement it will skip must
   * not be put before an approver (finding 026). A Flush goes first, or the server would answer
   * only at the Sync that waits behind the statement.
   */
  private whenBatchAnswered(): Promise<void> {
    if (this.batchAnswered()) return Promise.resolve();
    this.toUpstream.push(encodeFlush());
    return new Promise((resolve) => this.batchWaiters.push(resolve));
  }

  /**
   * Resolves once `ready()` holds, which takes the server's answers to messages already forwarded.
   * The server sends its answers only at a Sync or a Flush, and the client's Sync is behind the
   * message that waits: a Flush goes upstream with what was forwarded (it has no answer of its own),
   * or the server and the proxy would wait for each other (e.g. DEALLOCATE ALL executed in a
   * pipeline, then a Describe of a named portal).
   */
  private serverAnswers(ready: () => boolean): Promise<void> {
    if (!ready()) {
      // the server flushes at a Sync and at the end of a simple Query by itself
      const last = this.queue.at(this.queue.length - 1)?.kind;
      if (last !== K.Sync && last !== K.Query && last !== K.PoisonQuery) this.toUpstream.push(encodeFlush());
    }
    return this.ns.whenReady(ready);
  }

  private onQuery(f: Buffer): boolean {
    const sql = decodeQuery(f);
    const readAt = this.o.now();
    return this.decided(sql, "simple", (decision) => this.queryDecided(f, sql, decision, readAt));
  }

  /**
   * A Query with its decision. `checked`: the masker was asked whether its results can be masked
   * (COPY TO STDOUT in CSV/binary, a BINARY cursor) and said why not, or undefined.
   */
  private queryDecided(f: Buffer, sql: string, decision: Decision, readAt: number, checked?: { refused: string | undefined }): boolean {
    let text = sql;
    if (checked === undefined && decision.action !== "deny") {
      // a result that cannot be masked is refused before the statement runs: a statement error, the session goes on
      const why = this.results.refusal(text, decision);
      if (isPromise(why)) return this.hold(why.then((w) => () => this.skipUntilSync || this.queryDecided(f, sql, decision, readAt, { refused: w })), false);
      checked = { refused: why };
    }
    if (checked?.refused !== undefined) return this.apply(this.gate.deny(this.record("simple", text, maskingRefusal(decision, checked.refused))), K.PoisonQuery, () => undefined);
    // SQL PREPARE and DEALLOCATE of names the client made with Parse: the server knows those
    // statements under the proxy's names, so those are the names they are sent under. A DEALLOCATE
    // (as psycopg and Rails evict their caches) is the server's to run or skip (finding 030); a
    // PREPARE is the server's to refuse where it gets there (finding 023). What policy denies never
    // reaches the server, so it keeps its denial.
    let names: ProtocolNames | undefined;
    let renamed: Renamed | undefined;
    if (decision.action !== "deny") {
      names = this.ns.protocolNames(decision.statements);
      if (names !== undefined) {
        // sent under the Parse's server name, which the server must have when it gets there
        const slots = names.clash ? [...names.deallocates, names.clash] : names.deallocates;
        const certain = () => slots.every((x) => this.ns.certain(x.slot, true));
        if (!certain()) return this.hold(this.serverAnswers(certain).then(() => () => this.skipUntilSync || this.queryDecided(f, sql, decision, readAt, checked)), false);
        renamed = renamedNames(sql, decision.statements, slots.map((x) => ({ index: x.index, server: x.slot.server })).sort((a, b) => a.index - b.index));
        if (renamed === undefined) {
          // a text the proxy cannot rewrite exactly is refused whole: as the server refuses the PREPARE, or as a policy denial
          if (names.deallocates.length === 0) return this.refuse(K.PoisonQuery, { sqlstate: "42P05", message: `prepared statement "${decision.statements[names.clash!.index]!.prepares}" already exists` }, true);
          return this.apply(this.gate.deny(this.record("simple", sql, MIXED_DEALLOCATE)), K.PoisonQuery, () => undefined);
        }
        text = renamed.text;
      }
    }
    if (decision.action === "approve" && this.o.approvals && !this.batchAnswered()) {
      return this.hold(this.whenBatchAnswered().then(() => () => this.skipUntilSync || this.queryDecided(f, sql, decision, readAt, checked)), false);
    }
    // recorded as the server runs it (with the proxy's names where it runs them)
    const rec = this.record("simple", text, decision);
    // each statement of a multi-statement Query is recorded as a statement of its own
    let parts: readonly StatementRecord[] | undefined;
    const split = () => (parts ??= renamedParts(statementParts(rec, () => ++this.seq), renamed));
    return this.apply(this.gate.admit(rec, split), K.PoisonQuery, () => {
      this.stats.statements += split().length;
      const at = this.forwardedAt(decision, readAt);
      this.ns.query();
      const effects = this.ns.sqlEffects(decision.statements, false, names);
      this.queue.push({ kind: K.Query, rec, parts: decision.statements.length ? split() : undefined, startedAt: at, rows: 0, mask: this.results.maskActive(), effects });
      this.toUpstream.push(text === sql ? f : encodeQuery(text));
    }, false, rec, split);
  }

  private onParse(f: Buffer): boolean {
    const nameEnd = cstrEnd(f, 5);
    const sqlEnd = cstrEnd(f, nameEnd + 1);
    const key = nameKey(f, 5, nameEnd);
    const name = f.toString("utf8", 5, nameEnd);
    const sql = f.toString("utf8", nameEnd + 1, sqlEnd);
    return this.decided(sql, "parse", (decision) => {
      if (key !== "") {
        // a name taken by SQL PREPARE: the server would refuse this Parse
        const sqlSlot = this.ns.sqlSlot(name);
        if (!this.ns.certain(sqlSlot, true)) return this.waitFor(() => this.ns.certain(sqlSlot, true), F.Parse, f);
        if (this.ns.projected(sqlSlot) !== null) return this.refuse(K.PoisonParse, { sqlstate: "42P05", message: `prepared statement "${name}" already exists` }, true);
      }
      // DEALLOCATE of a statement the client made with Parse (as the Query path sends it): the
      // server knows that statement under the proxy's name, so the Parse is of that name, and its
      // Execute deallocates it if the name still means that statement then (see execute)
      // Among other statements it goes as it came: the server refuses a Parse of more than one
      // statement (42601, before anything else), whatever they name.
      const found = this.protocolDeallocate(decision);
      const target = found === "mixed" ? undefined : found;
      if (target !== undefined && !this.ns.certain(target, true)) return this.waitFor(() => this.ns.certain(target, true), F.Parse, f);
      if (decision.action === "allow" || (decision.action === "approve" && this.o.approvals)) {
        // approval binds to the parameters too, so it is asked at Execute; until then the statement
        // exists only under a name of the proxy's, which nothing but the approved Execute can run
        const text = target ? `DEALLOCATE "${target.server}"` : sql;
        // the target keeps its server name, so this DEALLOCATE reaches whatever the name means at its Execute
        if (target) this.ns.pin(target);
        const st = this.ns.parse(key, (server) => (target ? { sql: text, decision, name, server, deallocates: target.server } : { sql, decision, name, server }));
        this.queue.push(PARSE);
        if (target) this.toUpstream.push(withNames(f, 5, 2, [st.server, text]));
        else this.toUpstream.push(key === "" ? f : withNames(f, 5, 1, [st.server]));
        return true;
      }
      const rec = this.record("parse", sql, decision, { statementName: name });
      return this.apply(this.gate.deny(rec), K.PoisonParse, () => undefined, key === "");
    });
  }

  private onBind(f: Buffer): boolean {
    const portalEnd = cstrEnd(f, 5);
    const stmtEnd = cstrEnd(f, portalEnd + 1);
    const portalKey = nameKey(f, 5, portalEnd);
    const stmtKey = nameKey(f, portalEnd + 1, stmtEnd);
    const stmtName = f.toString("utf8", portalEnd + 1, stmtEnd);
    const slot = this.ns.statementSlot(stmtKey);
    if (!this.ns.certain(slot, stmtKey !== "")) return this.waitFor(() => this.ns.certain(slot, stmtKey !== ""), F.Bind, f);
    let st = this.ns.projected(slot);
    if (st === null && stmtKey !== "") {
      // a statement made by SQL PREPARE: decided as what it prepares, under its own name
      const sqlSlot = this.ns.sqlSlot(stmtName);
      if (!this.ns.certain(sqlSlot, true)) return this.waitFor(() => this.ns.certain(sqlSlot, true), F.Bind, f);
      const prepared = this.ns.projected(sqlSlot);
      if (prepared !== null) {
        return this.decided(prepared.text, "parse", (decision) =>
          this.bindTo(f, portalKey, portalEnd, stmtEnd, { sql: prepared.text, decision, name: stmtName, server: stmtName, sqlLevel: true }),
        );
      }
    }
    if (st === null) return this.serverRefuses(withNames(f, 5, 2, [this.unallocated("p"), this.unallocated("s")]), { server: this.unallocated("s"), client: stmtName, statement: true });
    return this.bindTo(f, portalKey, portalEnd, stmtEnd, st);
  }

  private bindTo(f: Buffer, portalKey: string, portalEnd: number, stmtEnd: number, st: Statement): boolean {
    let params: BoundParam[] | undefined;
    let binary: boolean;
    // a statement that needs approval is approved with its parameters, whatever the audit decodes
    if (this.needParams || st.decision.action === "approve") {
      const b = decodeBind(f);
      params = b.params.map((v, i) => ({ format: b.paramFormats[i] === 1 ? "binary" : "text", value: v }));
      binary = b.resultFormats.some((x) => x !== 0);
    } else binary = bindAsksBinary(f);
    const portalName = f.toString("utf8", 5, portalEnd);
    const portal = this.ns.bind(portalKey, (server) => ({ statement: st, name: portalName, server, params, binary }));
    this.queue.push(BIND);
    // the unnamed portal of the unnamed statement goes as it came
    const renamed = portalKey !== "" || st.server !== "";
    this.toUpstream.push(renamed ? withNames(f, 5, 2, [portal.server, st.server === st.name ? f.subarray(portalEnd + 1, stmtEnd) : st.server]) : f);
    return true;
  }

  private onExecute(f: Buffer): boolean {
    const portalEnd = cstrEnd(f, 5);
    const key = nameKey(f, 5, portalEnd);
    const slot = this.ns.portalSlot(key);
    if (!this.ns.certain(slot, key !== "")) return this.waitFor(() => this.ns.certain(slot, key !== ""), F.Execute, f);
    const portal = this.ns.projected(slot);
    if (portal === null) return this.serverRefuses(withNames(f, 5, 1, [this.unallocated("p")]), { server: this.unallocated("p"), client: f.toString("utf8", 5, portalEnd), statement: false });
    // what a failed simple Query left (or nothing): it cannot run, and the server says why (25P02, 34000, 55000)
    if (portal.leftover) return this.serverRefuses(f);
    const st = portal.statement;
    // a PREPARE's name clash is decided on what the server has: wait for its answers to a Close (or Parse) of that name
    if (!st.sqlLevel && !this.ns.preparesCertain(st.decision.statements)) return this.waitFor(() => this.ns.preparesCertain(st.decision.statements), F.Execute, f);
    const readAt = this.o.now();
    // a statement that EXECUTEs a SQL-level name means what that name means now
    if (executedNames(st.decision) !== undefined) return this.decided(st.sql, "parse", (decision) => this.execute(f, portal, decision, readAt));
    return this.execute(f, portal, st.decision, readAt);
  }

  /**
   * Execute of `portal`, decided from the statement bound into it. With masking, what cannot be
   * masked is refused before it runs (a statement error; the session goes on): first what the
   * masker says of the statement itself (COPY TO STDOUT in CSV/binary, a BINARY cursor), then, for
   * a Bind that asked for binary results, the portal's row description (`pre.described`, asked
   * ahead, see describeAhead). Otherwise the Describe goes in the same write as the Execute.
   */
  private execute(f: Buffer, portal: Portal, decision: Decision, readAt: number, pre: { checked?: boolean; described?: Described } = {}): boolean {
    const st = portal.statement;
    // a Parse of `DEALLOCATE name` whose name is (by now) a Parse's statement: sent to the server
    // under that name's server name, which the name keeps once such a Parse named it (ns.pin), even
    // when made again since; else (the name was no Parse's at the Parse) the server would fail it
    // where the client's server would succeed, so it is refused (MIXED_DEALLOCATE)
    const dealloc = st.sqlLevel ? undefined : this.protocolDeallocate(decision);
    const deallocates = dealloc !== undefined && dealloc !== "mixed" && st.deallocates === dealloc.server && this.ns.certain(dealloc, true) ? dealloc : undefined;
    if (dealloc !== undefined && deallocates === undefined) decision = MIXED_DEALLOCATE;
    // a Parse of `PREPARE name …` runs a SQL PREPARE at Execute: the server refuses one whose name
    // a Parse took (what policy denies keeps its denial: the server never sees it)
    const clash = st.sqlLevel || decision.action === "deny" ? undefined : this.ns.prepareClash(decision.statements);
    if (clash !== undefined) return this.refuse(K.PoisonParse, { sqlstate: "42P05", message: `prepared statement "${decision.statements[clash.index]!.prepares}" already exists` }, true);
    const mask = this.results.maskActive();
    if (mask && decision.action !== "deny") {
      if (!pre.checked) {
        const why = this.results.refusal(st.sql, decision);
        const next = (w: string | undefined) => ({ checked: true, described: w !== undefined ? { refused: w } : undefined });
        if (isPromise(why)) return this.hold(why.then((w) => () => this.skipUntilSync || this.execute(f, portal, decision, readAt, next(w))), false);
        pre = next(why);
      }
      if (pre.described === undefined && portal.binary) return this.describeAhead(f, portal, decision, readAt);
    }
    const d = pre.described;
    // the server began skipping to Sync before it described the portal: it never sees this Execute
    if (d === "skipped") return true;
    const extra = { statementName: st.name, portalName: portal.name, params: portal.params };
    if (d !== undefined && "refused" in d) return this.apply(this.gate.deny(this.record("parse", st.sql, maskingRefusal(decision, d.refused), extra)), K.PoisonParse, () => undefined);
    if (decision.action === "approve" && this.o.approvals && !this.batchAnswered()) {
      return this.hold(this.whenBatchAnswered().then(() => () => this.skipUntilSync || this.execute(f, portal, decision, readAt, pre)), false);
    }
    const rec = this.record("parse", st.sql, decision, extra);
    return this.apply(this.gate.admit(rec), K.PoisonParse, () => {
      this.stats.statements++;
      const at = this.forwardedAt(decision, readAt);
      if (mask && d === undefined) {
        // make the upstream describe the portal so the rows can be matched to columns; the answer is swallowed
        this.queue.push({ kind: K.InjectedDescribe });
        this.toUpstream.push(encodeDescribe("P", portal.server));
      }
      const effects = st.sqlLevel ? undefined : deallocates ? [this.ns.deallocateProtocol(deallocates, true)] : this.ns.sqlEffects(decision.statements, true);
      // the shape of the rows, when a Describe already told it (audit row capture labels columns with it), and their plan when made ahead
      const e: Pending = { kind: K.Execute, rec, startedAt: at, rows: 0, mask, fields: d?.fields ?? portal.fields ?? st.fields, effects };
      if (d !== undefined) e.plan = d.plan;
      this.queue.push(e);
      this.toUpstream.push(portal.server === "" ? f : withNames(f, 5, 1, [portal.server]));
    }, false, rec);
  }

  /**
   * A Bind asked for binary results, and a binary column of some types cannot be masked: the
   * portal is described first (Describe + Flush, the answer swallowed) and the Execute waits here,
   * unforwarded, until its rows' mask plan is made, so a result that cannot be masked is refused
   * before the statement runs. One round trip more per Execute, only for binary results under
   * masking rules.
   */
  private describeAhead(f: Buffer, portal: Portal, decision: Decision, readAt: number): boolean {
    const st = portal.statement;
    let tell!: (d: Described | Promise<Described>) => void;
    const told = new Promise<Described>((resolve) => (tell = resolve));
    this.queue.push({ kind: K.InjectedDescribe, described: (fields) => tell(fields === "skipped" ? "skipped" : this.results.described(fields, st.sql, decision)) });
    this.toUpstream.push(encodeDescribe("P", portal.server));
    this.toUpstream.push(encodeFlush());
    return this.hold(told.then((d) => () => this.skipUntilSync || this.execute(f, portal, decision, readAt, { checked: true, described: d })), false);
  }

  /** now, when a statement read at `readAt` is forwarded; an allowed one tells the added-latency metric */
  private forwardedAt(decision: Decision, readAt: number): number {
    const at = this.o.now();
    if (decision.action === "allow") this.o.addedLatency?.observe((at - readAt) / 1000);
    return at;
  }

  /** the slot, certain or not, and the server's name for a Describe / Close target (null: not known) */
  private target(f: Buffer): { statement: boolean; name: string; slot: Slot<Statement> | Slot<Portal> | undefined; server: string | Buffer | null; ready: () => boolean } {
    if (f.length < 7) throw new WireError("message is shorter than its contents");
    const statement = f[5] === 0x53; /* S */
    if (!statement && f[5] !== 0x50 /* P */) throw new WireError(`invalid describe/close target '${String.fromCharCode(f[5]!)}'`);
    const end = cstrEnd(f, 6);
    const key = nameKey(f, 6, end);
    const name = f.toString("utf8", 6, end);
    const slot = statement ? this.ns.statementSlot(key) : this.ns.portalSlot(key);
    const sqlSlot = statement && key !== "" ? this.ns.sqlSlot(name) : undefined;
    const ready = () => this.ns.certain(slot, key !== "") && this.ns.certain(sqlSlot, true);
    let server: string | Buffer | null = null;
    if (this.ns.projected<Statement | Portal>(slot) !== null) server = slot!.server;
    else if (this.ns.projected(sqlSlot) !== null) server = f.subarray(6, end); // SQL PREPARE's name, as the client spelled it
    return { statement, name, slot: server === null || typeof server !== "string" ? undefined : slot, server, ready };
  }

  private onDescribe(f: Buffer): boolean {
    const t = this.target(f);
    if (!t.ready()) return this.waitFor(t.ready, F.Describe, f);
    if (t.server === null && !t.statement && t.name !== "" && this.reserved.check(t.name) === undefined) {
      // a portal name no Bind of this client made: on the server only an SQL cursor can have it
      // (DECLARE, judged as its query), since every client Bind is renamed. libpq's
      // PQdescribePortal asks for its columns so (psycopg's named cursors): a Describe reads only
      // column names and types, so it goes to the server as the client spelled it, and the server
      // answers for the cursor or says there is none. A name that could be the proxy's own is not.
      if (this.results.captureRows > 0) this.queue.push({ kind: K.DescribeP, slot: undefined });
      else this.queue.push(DESCRIBE_P);
      this.toUpstream.push(f);
      return true;
    }
    if (t.server === null) {
      const server = this.unallocated(t.statement ? "s" : "p");
      return this.serverRefuses(withNames(f, 6, 1, [server]), { server, client: t.name, statement: t.statement });
    }
    if (this.results.captureRows > 0) this.queue.push({ kind: t.statement ? K.DescribeS : K.DescribeP, slot: t.slot });
    else this.queue.push(t.statement ? DESCRIBE_S : DESCRIBE_P);
    this.toUpstream.push(t.server === "" ? f : withNames(f, 6, 1, [t.server]));
    return true;
  }

  private onClose(f: Buffer): boolean {
    const t = this.target(f);
    if (!t.ready()) return this.waitFor(t.ready, F.Close, f);
    // closing a name the server does not have is not an error: it answers CloseComplete
    const slot = t.server === null ? null : typeof t.server === "string" ? t.slot! : this.ns.sqlSlot(t.name)!;
    this.ns.close(slot);
    this.queue.push(CLOSE);
    this.toUpstream.push(t.server === "" ? f : withNames(f, 6, 1, [t.server ?? this.unallocated(t.statement ? "s" : "p")]));
    return true;
  }

  /** a server name of this session's that is never allocated (the counter starts at 1): the server has nothing under it */
  private unallocated(space: "s" | "p"): string {
    return `${this.ns.prefix}${space}0`;
  }

  /**
   * A message naming a statement or portal that the server does not have (as the proxy knows), or
   * the unnamed portal a failed Query left, which cannot run: sent under a name the server cannot
   * have (`unallocated`), or as it is for that portal, so the server answers it with its own error,
   * in its own order of checks (in an aborted transaction 25P02 may come first: finding 028), and
   * skips to Sync. Nothing it could run is named; anything but an error means the proxy lost track
   * (the entry is a poison's). `names`: the server name in the answer is the client's.
   */
  private serverRefuses(frame: Buffer, names?: { server: string; client: string; statement: boolean }): boolean {
    this.ns.poison(false);
    this.queue.push({ kind: K.PoisonParse, rename: names });
    this.toUpstream.push(frame);
    this.skipUntilSync = true;
    return true;
  }

  /**
   * A Parse's DEALLOCATE of a statement the client made with Parse: its slot, when it is the
   * message's only statement (sent under the server's name); "mixed" when other statements come
   * with it (refused); undefined when the message deallocates no such statement. (A simple Query
   * renames each such DEALLOCATE among its statements: see queryDecided.)
   */
  private protocolDeallocate(decision: Decision): Slot<Statement> | "mixed" | undefined {
    let found: Slot<Statement> | undefined;
    for (const s of decision.statements) {
      if (!s.deallocates || s.deallocates.all) continue;
      const name = s.deallocates.name;
      if (this.ns.projected(this.ns.sqlSlot(name)) !== null) continue;
      const slot = this.ns.statementSlot(nameKey(Buffer.from(name, "utf8"), 0, Buffer.byteLength(name, "utf8")));
      if (slot !== undefined && this.ns.projected(slot) !== null) found = slot;
    }
    if (found === undefined) return undefined;
    return decision.statements.length === 1 ? found : "mixed";
  }

  /**
   * Carries out the gate's verdict: `forward` runs at once, `poison` replaces the message by its
   * poison of `kind`, `hold` waits and applies what it resolves to. False: scanning paused (a hold).
   */
  private apply(v: Verdict, kind: K.PoisonQuery | K.PoisonParse, forward: () => void, unnamedParse = false, rec?: StatementRecord, parts?: () => readonly StatementRecord[]): boolean {
    if (this.skipUntilSync && v.do !== "hold") {
      // the server began skipping to Sync while this message was held: it never runs
      if (v.do === "forward" && rec) for (const r of parts?.() ?? [rec]) this.results.completed({ kind: K.Execute, rec: r, startedAt: this.o.now(), error: NOT_RUN });
      return true;
    }
    switch (v.do) {
      case "forward":
        forward();
        return true;
      case "poison":
        this.stats.denied++;
        if (kind === K.PoisonQuery) this.poisonQuery(v.error);
        else this.poisonExtended(v.error, unnamedParse);
        return true;
      case "hold":
        return this.hold(v.until.then((next) => () => this.apply(next, kind, forward, unnamedParse, rec, parts)), !v.long);
    }
  }

  /**
   * Answers a message in order with the server's own error for it (not a policy decision: nothing
   * is recorded). `afterAbortCheck`: an error the server gives only once it has checked that the
   * transaction is not aborted (a name clash found by a Parse or by the PREPARE it runs): the poison
   * then fails in analysis, not in parsing, so in an aborted transaction the server's 25P02 comes
   * first, as it would for the message itself, and the client gets that.
   */
  private refuse(kind: K.PoisonQuery | K.PoisonParse, e: Omit<ErrorFields, "severity"> & { severity?: ErrorFields["severity"] }, afterAbortCheck = false): boolean {
    const err = errorResponse({ severity: "ERROR", ...e });
    if (kind === K.PoisonQuery) this.poisonQuery(err, afterAbortCheck);
    else this.poisonExtended(err, false, afterAbortCheck);
    return true;
  }

  /** the poison's SQL: the token alone (a syntax error), or a SELECT of it (an unknown column, found in analysis) */
  private poisonSql(analysis: boolean): string {
    return analysis ? `SELECT ${this.o.poisonToken}` : this.o.poisonToken;
  }

  /** Query(token) fails with a syntax error naming the token; the client gets `replacement` instead */
  private poisonQuery(replacement: Buffer, analysis = false): void {
    this.ns.query();
    this.queue.push({ kind: K.PoisonQuery, replacement });
    this.toUpstream.push(encodeQuery(this.poisonSql(analysis)));
  }

  /**
   * Parse(token, token) fails with a syntax error naming the token, and the server skips to Sync as
   * for any failed extended-protocol message. For a denied unnamed Parse the poison is unnamed too:
   * the server then drops the previous unnamed statement, as a failed Parse does.
   */
  private poisonExtended(replacement: Buffer, unnamedParse: boolean, analysis = false): void {
    const t = this.o.poisonToken;
    this.ns.poison(unnamedParse);
    this.queue.push({ kind: K.PoisonParse, replacement });
    this.toUpstream.push(encodeParse(unnamedParse ? "" : t, this.poisonSql(analysis)));
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
   * approval, a decision in a worker, the server's answer to an earlier message) everything before
   * the held message goes upstream now and the socket is paused at once.
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

  /** the head entry, which must be of one of `kinds` for backend message `code` */
  private expect(code: number, ok: boolean, p: Pending | undefined): Pending {
    if (!ok || p === undefined) throw desync(`${BACKEND_NAMES[code] ?? `message '${String.fromCharCode(code)}'`} while ${p ? `answering ${KIND_NAMES[p.kind]}` : "nothing was asked"}`);
    return p;
  }

  /** the oldest pending entry is answered: pop it and resolve its namespace change */
  private answered(outcome: "ok" | "failed"): Pending {
    const p = this.queue.pop()!;
    const op = opOf(p.kind);
    if (op !== undefined) this.ns.answer(outcome, op);
    return p;
  }

  /**
   * The oldest entry, a simple Query or its poison, is answered (its ReadyForQuery): how it ended
   * tells what became of the unnamed portal (see statement-namespace.ts).
   */
  private queryAnswered(): Pending {
    const p = this.queue.pop()!;
    let end: QueryEnd;
    if (p.kind === K.PoisonQuery) end = "failed-first";
    else if (p.error !== undefined) end = (p.stmtIndex ?? 0) === 0 ? "failed-first" : "failed-later";
    else end = p.empty ? "empty" : "completed";
    this.ns.answerQuery(end);
    return p;
  }

  private upstreamHead(code: number): Mode {
    const p = this.queue.peek();
    const k = p?.kind;
    switch (code) {
      case B.DataRow: {
        this.expect(code, (k === K.Execute || k === K.Query) && !p!.copy, p);
        return this.results.rowWhole(p) ? Mode.Whole : Mode.Pass;
      }
      case B.CopyData:
      case B.CopyDone:
        this.expect(code, p?.copy === 2, p);
        return code === B.CopyData && this.results.copyWhole ? Mode.Whole : Mode.Pass;
      case B.ParseComplete:
        this.expect(code, k === K.Parse, p);
        this.answered("ok");
        return Mode.Pass;
      case B.BindComplete:
        this.expect(code, k === K.Bind, p);
        this.answered("ok");
        return Mode.Pass;
      case B.CloseComplete:
        this.expect(code, k === K.Close, p);
        this.answered("ok");
        return Mode.Pass;
      case B.ParameterDescription:
        this.expect(code, k === K.DescribeS, p);
        return Mode.Pass;
      case B.NoData:
        this.expect(code, k === K.DescribeS || k === K.DescribeP || k === K.InjectedDescribe, p);
        this.queue.pop();
        p!.described?.(undefined);
        return k === K.InjectedDescribe ? Mode.Drop : Mode.Pass;
      case B.RowDescription:
        this.expect(code, k === K.DescribeS || k === K.DescribeP || k === K.InjectedDescribe || (k === K.Query && !p!.copy), p);
        if (k === K.InjectedDescribe || this.results.captureRows > 0 || (k === K.Query && p!.mask === true)) return Mode.Whole;
        if (k !== K.Query) this.queue.pop();
        return Mode.Pass;
      case B.NotificationResponse:
        return Mode.Pass;
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended:
      case B.ReadyForQuery:
      case B.ErrorResponse:
      case B.NoticeResponse:
      case B.ParameterStatus:
      case B.CopyInResponse:
      case B.CopyOutResponse:
      case B.CopyBothResponse:
        return Mode.Whole;
      default:
        // FunctionCallResponse (FunctionCall is never forwarded), Authentication, BackendKeyData, …
        throw desync(`an unexpected ${BACKEND_NAMES[code] ?? `message '${String.fromCharCode(code)}'`}`);
    }
  }

  private upstreamFrame(code: number, f: Buffer): boolean {
    const p = this.queue.peek();
    switch (code) {
      case B.ReadyForQuery: {
        const k = p?.kind;
        this.expect(code, k === K.Sync || k === K.Query || k === K.PoisonQuery, p);
        this.stats.txStatus = decodeReadyForQuery(f);
        const q = k === K.Sync ? this.answered("ok") : this.queryAnswered();
        if (this.stats.txStatus === "I") this.ns.transactionEnded();
        while (this.copyEnds.length && this.copyEnds[0]! <= this.queue.popped) this.copyEnds.shift();
        if (q.kind === K.Query) {
          this.settleEffects(q, false);
          this.results.completed(q);
        }
        this.results.ready();
        this.toClient.push(f);
        return true;
      }
      case B.ErrorResponse:
        return this.onUpstreamError(p, f);
      case B.CommandComplete:
      case B.EmptyQueryResponse:
      case B.PortalSuspended: {
        const k = p?.kind;
        this.expect(code, k === K.Execute || (k === K.Query && code !== B.PortalSuspended), p);
        // the server and the classifier split the Query differently: what ran is not what was decided
        if (k === K.Query && p!.parts && (p!.stmtIndex ?? 0) >= p!.parts.length) throw desync(`a completion of statement ${(p!.stmtIndex ?? 0) + 1} of a Query of ${p!.parts.length}`);
        if (code === B.CommandComplete && p!.effects?.length) this.statementRan(p!, f);
        // an empty Query: nothing ran, the unnamed portal stays
        if (code === B.EmptyQueryResponse && k === K.Query) p!.empty = true;
        p!.copy = 0;
        if (this.results.complete(p, code, f)) {
          this.queue.pop();
          this.settleEffects(p!, false);
        }
        return true;
      }
      case B.RowDescription:
        return this.onRowDescription(p!, f);
      case B.DataRow:
        this.results.dataRow(p, f);
        return true;
      case B.CopyData:
        this.results.copyData(f);
        return true;
      case B.CopyInResponse:
        return this.onCopyIn(p, f);
      case B.CopyOutResponse: {
        const k = p?.kind;
        this.expect(code, (k === K.Execute || k === K.Query) && !p!.copy, p);
        p!.copy = 2;
        return this.results.copyOut(p, f);
      }
      case B.CopyBothResponse:
        throw unmodelled("COPY BOTH (replication)");
      case B.NoticeResponse:
        return this.results.screen(p, this.clientNames(f), (g) => this.results.notice(p, g));
      case B.ParameterStatus: {
        const { name, value } = decodeParameterStatus(f);
        const why = pinnedSettingViolation(name, value);
        if (why !== undefined) throw new EndSession(why, "0A000", "pinned setting changed");
        return this.results.screenParameter(p, f, (g) => this.toClient.push(g));
      }
      default:
        this.toClient.push(f);
        return true;
    }
  }

  /**
   * CopyInResponse: the server now reads COPY data from the client and ignores every Sync and
   * Flush until CopyDone/CopyFail. The Syncs the client sent after this COPY and before ending it
   * get no ReadyForQuery, so their entries go; any other message there would make the server fail
   * the COPY in a way the proxy does not follow, so the session is refused.
   */
  private onCopyIn(p: Pending | undefined, f: Buffer): boolean {
    const k = p?.kind;
    this.expect(B.CopyInResponse, (k === K.Execute || k === K.Query) && !p!.copy, p);
    p!.copy = 1;
    const head = this.queue.popped;
    while (this.copyEnds.length && this.copyEnds[0]! <= head) this.copyEnds.shift();
    const end = this.copyEnds.length ? this.copyEnds[0]! : this.queue.pushed;
    // entries at positions head+1 .. end-1 were sent inside the COPY
    const inside = end - head - 1;
    for (let i = 1; i <= inside; i++) {
      if (this.queue.at(i)!.kind !== K.Sync) throw unmodelled("a message pipelined behind COPY FROM STDIN");
    }
    this.queue.removeBehindHead(inside);
    for (let i = 0; i < this.copyEnds.length; i++) this.copyEnds[i]! -= inside;
    // the client has not ended the COPY yet: its next messages are the COPY's
    if (this.copyEnds.length === 0) this.copyIn = true;
    else this.copyEnds.shift();
    this.toClient.push(f);
    return true;
  }

  private onUpstreamError(p: Pending | undefined, raw: Buffer): boolean {
    let f = this.clientNames(raw);
    if (p?.rename) f = renamedBack(f, p.rename);
    const fields = decodeErrorFields(f);
    if (p?.replacement !== undefined && (p.kind === K.PoisonParse || p.kind === K.PoisonQuery) && (fields.M ?? "").includes(this.o.poisonToken)) {
      // the poison failed as it should: the client gets the error meant for its message, in order
      if (p.kind === K.PoisonParse) {
        this.answered("failed");
        this.skipped();
      }
      this.toClient.push(p.replacement!);
      return true;
    }
    // masked before anything reads it: the client and the audit get the same text (ResultPath.screen)
    return this.results.screen(p, f, (g) => this.upstreamError(p, g));
  }

  private upstreamError(p: Pending | undefined, f: Buffer): void {
    this.serverError = true;
    const fields = decodeErrorFields(f);
    const err = { sqlstate: fields.C ?? "XX000", message: fields.M ?? "" };
    if (p !== undefined && p.copy === 1) this.copyIn = false;
    if (p !== undefined && p.kind !== K.Query && p.kind !== K.PoisonQuery && p.kind !== K.Sync) {
      // extended protocol: the message failed and the server skips everything up to Sync
      const q = this.answered("failed");
      this.failed(q, err);
      this.skipped(err);
    }
    this.results.error(p, err);
    this.results.notice(p, f);
  }

  /**
   * After an extended-protocol error: the server skips every message up to Sync. When the client
   * has not sent that Sync yet, what it sends until then is skipped too (a simple Query as well).
   */
  private skipped(err?: { sqlstate: string; message: string }): void {
    this.queue.discardUntilSync((q) => {
      const op = opOf(q.kind);
      if (op !== undefined) this.ns.answer("skipped", op);
      this.failed(q, err);
    });
    if (this.queue.peek() === undefined) this.skipUntilSync = true;
  }

  /** a statement that failed or never ran: recorded with the error, its SQL-level effects undone */
  private failed(q: Pending, err?: { sqlstate: string; message: string }): void {
    // a Describe asked ahead of an Execute: that Execute is never forwarded
    q.described?.("skipped");
    this.settleEffects(q, false);
    if ((q.kind === K.Execute || q.kind === K.Query) && q.rec) {
      q.error = err ?? NOT_RUN;
      this.results.completed(q);
    }
  }

  /** a statement of `p` completed: its SQL-level effect (PREPARE, DEALLOCATE, DISCARD ALL) holds now */
  private statementRan(p: Pending, f: Buffer): void {
    const index = p.kind === K.Query ? p.stmtIndex ?? 0 : 0;
    const e = p.effects![0]!;
    if (e.index !== index) return;
    const tag = f.toString("utf8", 5, f.length - 1);
    if (tag !== e.tag) throw desync(`${tag} where the statement ${e.tag} completes`);
    // sent under a name the server has, so that it fails: the server does not hold what the proxy thinks
    if (e.clash) throw desync("a PREPARE sent under a name the server has completed");
    p.effects!.shift();
    this.ns.settle(e, true);
  }

  private settleEffects(q: Pending, ran: boolean): void {
    if (!q.effects) return;
    for (const e of q.effects) this.ns.settle(e, ran);
    q.effects = undefined;
  }

  private onRowDescription(p: Pending, f: Buffer): boolean {
    const fields = decodeRowDescription(f) as RowField[];
    if (p.kind === K.Query) {
      // simple query: the rows of the statement that follows
      p.fields = fields;
      return this.results.planFor(p, fields, f);
    }
    this.queue.pop();
    if (p.described) {
      // described ahead of its Execute, which waits for the plan (describeAhead)
      p.described(fields);
      return true;
    }
    if (p.kind === K.InjectedDescribe) {
      // the Execute that follows takes these fields and their mask plan
      const next = this.queue.peek();
      if (next?.kind !== K.Execute) throw desync("a row description of an Execute that is not pending");
      next.fields = fields;
      return this.results.planFor(next, fields, null);
    }
    // what the server holds under that name now (its answers come in order) gets the fields
    const described = p.slot?.confirmed;
    if (described) described.fields = fields;
    this.toClient.push(f);
    return true;
  }

  /** a server message with the proxy's names put back to the client's (a message only the client reads) */
  private clientNames(f: Buffer): Buffer {
    if (f.indexOf(this.ns.prefix, 5, "latin1") < 0) return f;
    const fields = decodeErrorFields(f);
    for (const k of Object.keys(fields)) fields[k] = fields[k]!.replace(this.ns.serverNamePattern, (n) => this.ns.clientName(n) ?? n);
    return encodeErrorFields(f[0]!, fields);
  }
}

/** DEALLOCATE of a Parse's statement that the proxy cannot send under the server's name (a Query's text it cannot rewrite exactly, a Parse's made before the name was a Parse's) */
const MIXED_DEALLOCATE: Decision = {
  action: "deny",
  rule: "deallocate-protocol-statement",
  reason: "DEALLOCATE of a statement prepared with the protocol's Parse must be a simple query of its own through sluice (or use Close)",
  statementClass: "utility",
  statementIndex: 0,
  statements: [],
};

/** A decision refused by masking: its results could not be masked (`why`), so the statement never runs. */
function maskingRefusal(d: Decision, why: string): Decision {
  return { action: "deny", rule: "masking", reason: why, statementClass: d.statementClass, statementIndex: d.statementIndex, statements: d.statements };
}

/**
 * An error the server gave for a name the proxy sent in place of the client's (`unallocated`), as
 * the client's server gives it: the client's name, and the unnamed statement's own wording.
 */
function renamedBack(f: Buffer, names: { server: string; client: string; statement: boolean }): Buffer {
  if (f.indexOf(names.server, 5, "utf8") < 0) return f;
  const fields = decodeErrorFields(f);
  const quoted = `"${names.server}"`;
  for (const k of Object.keys(fields)) {
    const v = fields[k]!;
    if (names.statement && names.client === "" && v === `prepared statement ${quoted} does not exist`) fields[k] = missingStatement("");
    else fields[k] = v.split(quoted).join(`"${names.client}"`);
  }
  return encodeErrorFields(f[0]!, fields);
}

/** A Query's statement records, each renamed PREPARE / DEALLOCATE as the server runs it (under a Parse's server name). */
function renamedParts(parts: readonly StatementRecord[], renamed: Renamed | undefined): readonly StatementRecord[] {
  if (renamed === undefined || parts.length < 2) return parts;
  return parts.map((p, i) => (p.sql === renamed.statements[i] ? p : { ...p, sql: renamed.statements[i]! }));
}

/** The names a decision's statements EXECUTE (SQL level), or undefined when none. */
function executedNames(d: Decision): string[] | undefined {
  let out: string[] | undefined;
  for (const s of d.statements) if (s.executes) (out ??= []).push(...s.executes);
  return out;
}

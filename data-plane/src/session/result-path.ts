/**
 * What a statement's results go through on their way to the client: the row description selects a
 * mask plan, data rows are masked and (up to the cap) captured for the audit, COPY TO STDOUT data is
 * masked or refused, and the statement's completion (command tag, rows, error) is recorded and told
 * to the listeners. One entry of the response queue at a time, the head's. Pure: the masker, the
 * audit and the outbox are its doors.
 *
 * Errors and notices of a statement pass `screen()` before anything reads them: a message can quote
 * a masked value (a failed cast, DETAIL "Key (email)=(…)", RAISE output), so the masker rewrites
 * their fields, and the client, the audit (statement.completed's error) and the listeners all get
 * the same, masked text. Settings the server reports meanwhile (ParameterStatus: `set_config(
 * 'application_name', email, false)`) pass `screenParameter()` the same way. Only these frames are
 * decoded, and only for a resource with masking rules.
 */
import { SluiceError } from "@sluice/shared/errors";
import { decodeCommandComplete, decodeErrorFields, decodeParameterStatus, rowsFromTag } from "../wire/decode.js";
import { encodeErrorFields, parameterStatus } from "../wire/encode.js";
import { K, type Described, type Pending } from "./response-queue.js";
import type { Outbox } from "./outbox.js";
import { REFUSED_BEFORE_RUN, type AuditSink, type CompletionListener, type MaskPlan, type MessageContext, type ResultContext, type ResultMasker, type RowField, type SessionInfo, type StatementCompletion } from "./session-hooks.js";
import { isPromise } from "./statement-gate.js";
import type { StatementInfo } from "@sluice/shared/sql";
import type { Decision } from "@sluice/shared/policy";

const RECENT_MAX = 64;

export interface ResultPathOptions {
  info: SessionInfo;
  audit: AuditSink;
  listeners: readonly CompletionListener[];
  masker?: ResultMasker;
  /** rows per statement copied to `audit.resultRows` */
  captureRows: number;
  now(): number;
  toClient: Outbox;
  /**
   * Stop reading the upstream until `p` settles (a mask plan that asks the catalog), then go on;
   * a rejection ends the session (a masking denial keeps its 42501).
   */
  holdUpstream(p: Promise<void>): void;
}

const COPY_OUT_MASKED = "COPY TO STDOUT of a result with masking rules is not allowed";

/** the completion of a Query's statement after the one that failed: the server never ran it */
const NOT_RUN_IN_QUERY = { sqlstate: "08P01", message: "not run: an earlier statement of its Query failed" } as const;
/** the completion of a Query's statement the server said nothing of (it completed fewer than the Query has) */
const NO_COMPLETION = { sqlstate: "08P01", message: "not run: the server completed no such statement of the Query" } as const;
/** a statement the server had not answered when the session ended: its outcome is unknown to the proxy */
const SESSION_ENDED = { sqlstate: "08006", message: "unknown outcome: the session ended before the server answered" } as const;

/**
 * The exact rows of a statement: the rows the client got (`dataRows`, counted as they passed), or
 * for a command the rows its tag says it affected; a tag's count never exceeds the rows it
 * returned, and a statement that returns rows without counting them in its tag (EXPLAIN, SHOW) has
 * them counted here.
 */
function exactRows(dataRows: number | undefined, tag: string | undefined): number {
  return Math.max(dataRows ?? 0, tag ? rowsFromTag(tag) : 0);
}

/** a masker's failure as the reason a statement is refused: its own message when it refused (42501) */
function unplannable(e: unknown): string {
  const err = SluiceError.from(e, "internal");
  return err.code === "permission_denied" ? err.message : `the result could not be checked against the masking rules: ${err.message}`;
}

export class ResultPath {
  /**
   * Statements of the Executes completed since the last ReadyForQuery (by text, at most RECENT_MAX),
   * for messages that arrive at a Sync: the server reports changed settings (ParameterStatus) and
   * deferred constraint failures there, just before ReadyForQuery. Past the bound nothing is attributed.
   */
  private executed = new Map<string, StatementInfo>();
  private executedOverflow = false;
  /** set while a copy-out is streaming through a mask plan */
  private copyOutPlan: MaskPlan | null = null;
  readonly captureRows: number;

  constructor(private readonly o: ResultPathOptions) {
    this.captureRows = Math.max(0, o.captureRows);
  }

  /** whether results of this session's resource go through the masker (re-read per statement: a new snapshot may add rules) */
  maskActive(): boolean {
    const m = this.o.masker;
    return m !== undefined && (m.masks ? m.masks(this.o.info.resource) : true);
  }

  /** a DataRow of `p` must be whole (masked or captured), or may pass raw */
  rowWhole(p: Pending | undefined): boolean {
    if (p === undefined || (p.kind !== K.Execute && p.kind !== K.Query)) return false;
    p.rows = (p.rows ?? 0) + 1;
    if (p.mask === true && p.plan !== null) return true;
    return this.captureRows > 0 && (p.captured?.length ?? 0) < this.captureRows;
  }

  /** a (B) CopyData must be whole: a copy-out is being masked */
  get copyWhole(): boolean {
    return this.copyOutPlan !== null;
  }

  /** the rows of `p` will have this shape; `f` (the RowDescription, or null when it is swallowed) goes to the client after the plan. False: the upstream is held. */
  planFor(p: Pending | undefined, fields: RowField[], f: Buffer | null): boolean {
    if (p === undefined || !this.o.masker || p.mask !== true) {
      if (p) p.plan = null;
      if (f) this.o.toClient.push(f);
      return true;
    }
    if (p.kind === K.Execute) p.fields = fields;
    const plan = this.o.masker.planFor(fields, this.context(p));
    if (isPromise(plan)) {
      this.o.toClient.flush();
      this.o.holdUpstream(
        plan.then((resolved) => {
          p.plan = resolved ?? null;
          if (f) this.o.toClient.push(f);
        }),
      );
      return false;
    }
    p.plan = plan ?? null;
    if (f) this.o.toClient.push(f);
    return true;
  }

  /**
   * Why the results of `decision`'s statements could not be masked, decided before they run (see
   * ResultMasker.refusal): the reason, undefined when they can be, or a promise of either (the
   * masker asks the catalog). A masker that fails is a refusal too (fail closed, as a statement error).
   */
  refusal(sql: string, decision: Decision): string | undefined | Promise<string | undefined> {
    const m = this.o.masker;
    if (!m?.refusal || !this.maskActive()) return undefined;
    const statements = decision.statements;
    const one = (statementIndex?: number): string | undefined | Promise<string | undefined> => {
      try {
        const why = m.refusal!({ session: this.o.info, sql, statements, statementIndex });
        return isPromise(why) ? why.catch(unplannable) : why;
      } catch (e) {
        return unplannable(e);
      }
    };
    // a decision that does not say what its statements are: the masker reads the text itself
    if (statements.length === 0) return one();
    const ask = (from: number): string | undefined | Promise<string | undefined> => {
      for (let i = from; i < statements.length; i++) {
        if (!REFUSED_BEFORE_RUN.has(statements[i]!.kind)) continue;
        const why = one(i);
        if (isPromise(why)) return why.then((w) => (w !== undefined ? w : ask(i + 1)));
        if (why !== undefined) return why;
      }
      return undefined;
    };
    return ask(0);
  }

  /**
   * The mask plan of an Execute's rows from its portal's row description (`fields`; undefined:
   * NoData), made before the Execute is forwarded: a result the masker cannot mask (a binary-format
   * column of a type it cannot rewrite) is then refused as a statement error instead of ending the
   * session mid-result.
   */
  described(fields: RowField[] | undefined, sql: string, decision: Decision): Described | Promise<Described> {
    const m = this.o.masker;
    if (fields === undefined || !m) return { fields, plan: null };
    let plan: MaskPlan | null | Promise<MaskPlan | null>;
    try {
      plan = m.planFor(fields, { session: this.o.info, sql, statements: decision.statements, statementIndex: 0 });
    } catch (e) {
      return { refused: unplannable(e) };
    }
    if (isPromise(plan)) return plan.then((x): Described => ({ fields, plan: x ?? null }), (e): Described => ({ refused: unplannable(e) }));
    return { fields, plan: plan ?? null };
  }

  dataRow(p: Pending | undefined, f: Buffer): void {
    let out = f;
    if (p !== undefined && this.o.masker && p.mask === true) {
      if (p.plan === undefined) {
        // rows without a known shape cannot be matched to masking rules: fail closed
        throw new SluiceError("internal", "result rows arrived without a row description while masking is configured");
      }
      if (p.plan !== null) out = this.o.masker.maskDataRow(p.plan, f);
    }
    if (p !== undefined && this.captureRows > 0) {
      const c = (p.captured ??= []);
      if (c.length < this.captureRows) c.push(Buffer.from(out));
    }
    this.o.toClient.push(out);
  }

  /** (B) CommandComplete / EmptyQueryResponse / PortalSuspended of `p` (an Execute or Query); true when `p` is finished */
  complete(p: Pending | undefined, code: number, f: Buffer): boolean {
    const tag = code === 0x43 /* C */ ? decodeCommandComplete(f) : undefined;
    let done = false;
    if (p?.kind === K.Execute) {
      p.tag = tag;
      p.rows = exactRows(p.rows, tag);
      this.flushCapture(p);
      this.completed(p);
      done = true;
    } else if (p?.kind === K.Query) {
      const i = p.stmtIndex ?? 0;
      const part = p.parts?.[i];
      if (part !== undefined) {
        // one statement of the Query: its own completion, tag and rows, now
        this.flushCapture(p, part.seq);
        const now = this.o.now();
        this.finish({ seq: part.seq, commandTag: tag, rows: exactRows(p.rows, tag), durationMs: now - (p.startedAt ?? 0) });
        p.startedAt = now;
      } else {
        // the decision did not say what the statements are: one completion at ReadyForQuery, rows summed
        p.tag = tag;
        if (tag) p.tagRows = (p.tagRows ?? 0) + rowsFromTag(tag);
        this.flushCapture(p);
      }
      p.stmtIndex = i + 1;
      p.rows = 0;
      p.plan = undefined;
      p.fields = undefined;
    }
    this.copyOutPlan = null;
    this.o.toClient.push(f);
    return done;
  }

  /** an ErrorResponse (not a poison's) ends what `p` was streaming */
  error(p: Pending | undefined, err: { sqlstate: string; message: string }): void {
    if (p?.kind === K.Query) p.error = err;
    this.copyOutPlan = null;
  }

  /**
   * (B) ErrorResponse / NoticeResponse `f` of `p` as the masker has it seen: `then` gets the frame to
   * use, at once, or once the masker has asked the catalog (the upstream is held meanwhile: false).
   */
  screen(p: Pending | undefined, f: Buffer, then: (f: Buffer) => void): boolean {
    const m = this.o.masker;
    if (!m?.screenMessage || !this.maskActive()) {
      then(f);
      return true;
    }
    const fields = decodeErrorFields(f);
    const kind = f[0] === 0x45 /* E */ ? "error" : "notice";
    const encoded = (r: Record<string, string> | null) => (r === null ? f : encodeErrorFields(f[0]!, r));
    const r = m.screenMessage(fields, kind, this.messageContext(p));
    if (!isPromise(r)) {
      then(encoded(r));
      return true;
    }
    this.o.toClient.flush();
    this.o.holdUpstream(r.then((x) => then(encoded(x))));
    return false;
  }

  /** (B) ParameterStatus `f` of `p` as the masker has it seen (a reported setting can carry a value): as `screen` */
  screenParameter(p: Pending | undefined, f: Buffer, then: (f: Buffer) => void): boolean {
    const m = this.o.masker;
    if (!m?.screenParameter || !this.maskActive()) {
      then(f);
      return true;
    }
    const { name, value } = decodeParameterStatus(f);
    const encoded = (v: string | null) => (v === null ? f : parameterStatus(name, v));
    const r = m.screenParameter(name, value, this.messageContext(p));
    if (!isPromise(r)) {
      then(encoded(r));
      return true;
    }
    this.o.toClient.flush();
    this.o.holdUpstream(r.then((x) => then(encoded(x))));
    return false;
  }

  /** what the masker knows of where a message comes from (see MessageContext) */
  private messageContext(p: Pending | undefined): MessageContext {
    const session = this.o.info;
    if (p === undefined) return { session, source: "none" };
    switch (p.kind) {
      case K.Parse:
      case K.DescribeS:
      case K.DescribeP:
      case K.InjectedDescribe:
      case K.Close:
      // a poison's error never gets here (it is swapped); one without a replacement is a message the
      // server refuses itself (relay-session.ts `serverRefuses`): a name it does not have, a failed portal — nothing runs
      case K.PoisonParse:
        return { session, source: "analysis" };
      case K.Sync:
        if (this.executedOverflow || this.executed.size === 0) break;
        return { session, source: "statement", statements: [...this.executed.values()] };
      case K.Query:
      case K.Execute: {
        if (!p.rec) break;
        const all = p.rec.decision.statements;
        // a simple query's message belongs to the statement running (the ones before it completed)
        const one = p.kind === K.Query ? all[p.stmtIndex ?? 0] : undefined;
        return { session, source: "statement", statements: one ? [one] : all };
      }
    }
    return { session, source: "unattributed" };
  }

  /** (B) NoticeResponse / ErrorResponse on its way to the client, in order */
  notice(_p: Pending | undefined, f: Buffer): void {
    this.o.toClient.push(f);
  }

  /** (B) ReadyForQuery: what ran before it is answered */
  ready(): void {
    if (this.executed.size) this.executed.clear();
    this.executedOverflow = false;
  }

  /**
   * Records the statement of `p` as finished (once). A Query's statements that have no completion
   * yet get theirs: the running one with the Query's error (or, the server having said nothing of
   * it, as not run), the ones after it as not run.
   */
  completed(p: Pending): void {
    if (!p.rec) return;
    if (p.kind === K.Query && p.parts) {
      const now = this.o.now();
      // after a failed statement the server runs none of the Query's others; a Query the server
      // skipped whole ran none; with no error the server completed fewer statements than it had
      const later = p.error === undefined ? NO_COMPLETION : p.error.message.startsWith("not run") ? p.error : NOT_RUN_IN_QUERY;
      for (let i = p.stmtIndex ?? 0; i < p.parts.length; i++) {
        const part = p.parts[i]!;
        const running = i === (p.stmtIndex ?? 0) && p.error !== undefined;
        this.finish({ seq: part.seq, rows: running ? p.rows ?? 0 : 0, durationMs: running ? now - (p.startedAt ?? 0) : 0, error: running ? p.error : later });
      }
      p.stmtIndex = p.parts.length;
      p.rec = undefined;
      return;
    }
    if (p.kind === K.Execute && this.maskActive()) {
      for (const st of p.rec.decision.statements) {
        if (this.executed.size >= RECENT_MAX && !this.executed.has(st.text)) this.executedOverflow = true;
        else this.executed.set(st.text, st);
      }
    }
    this.finish({
      seq: p.rec.seq,
      commandTag: p.error ? undefined : p.tag,
      rows: p.kind === K.Query ? p.tagRows ?? 0 : p.rows ?? 0,
      durationMs: this.o.now() - (p.startedAt ?? 0),
      error: p.error,
    });
    p.rec = undefined;
  }

  /**
   * The session ended with `p` still unanswered (the client left mid-COPY or mid-statement, the
   * proxy closed it): the proxy never learns how it ended, since the server may have run it, or part
   * of its Query, before it saw the connection go. Each of its statements without a completion gets
   * one saying so, so no allowed statement is left in the record without an outcome (finding 031).
   */
  abandoned(p: Pending): void {
    if (!p.rec) return;
    const now = this.o.now();
    if (p.kind === K.Query && p.parts) {
      const running = p.stmtIndex ?? 0;
      this.flushCapture(p, p.parts[running]?.seq);
      for (let i = running; i < p.parts.length; i++) {
        this.finish({ seq: p.parts[i]!.seq, rows: i === running ? p.rows ?? 0 : 0, durationMs: i === running ? now - (p.startedAt ?? now) : 0, error: SESSION_ENDED });
      }
      p.stmtIndex = p.parts.length;
    } else {
      this.flushCapture(p);
      this.finish({ seq: p.rec.seq, rows: p.rows ?? 0, durationMs: p.startedAt === undefined ? 0 : now - p.startedAt, error: SESSION_ENDED });
    }
    p.rec = undefined;
  }

  /** the completion of one statement of `p` goes to the audit and the listeners */
  private finish(done: StatementCompletion): void {
    this.o.audit.statementCompleted(this.o.info, done);
    for (const l of this.o.listeners) l(this.o.info, done);
  }

  /** the rows captured for the statement running in `p` (`seq`: a Query's statement) go to the audit */
  private flushCapture(p: Pending, seq = p.rec?.seq): void {
    if (p.captured && p.captured.length && p.rec && seq !== undefined) {
      const masks = p.plan ? this.o.masker?.describe?.(p.plan) : undefined;
      this.o.audit.resultRows(this.o.info, seq, p.fields ?? [], p.captured, masks);
    }
    p.captured = undefined;
  }

  /** (B) CopyOutResponse / CopyBothResponse of `p`; false: the upstream is held */
  copyOut(p: Pending | undefined, f: Buffer): boolean {
    const m = this.o.masker;
    if (m && p && p.mask === true) {
      // normally refused before it ran (refusal()); here only what that could not foresee (the
      // columns changed by DDL earlier in its Query, a masker that cannot tell): the session ends.
      // Whatever the statement text says, binary CopyData (format byte 1) is never masked.
      const refused = (x: MaskPlan | null | "deny" | undefined) => x === "deny" || (x != null && f[5] === 1);
      const plan = m.planForCopyOut ? m.planForCopyOut(this.context(p)) : "deny";
      if (isPromise(plan)) {
        // the masker asks the catalog (a whole-table COPY needs its column list): hold the upstream
        this.o.toClient.flush();
        this.o.holdUpstream(
          plan.then((resolved) => {
            if (refused(resolved)) throw new SluiceError("permission_denied", COPY_OUT_MASKED);
            this.copyOutPlan = resolved ?? null;
            this.o.toClient.push(f);
          }),
        );
        return false;
      }
      if (refused(plan)) throw new SluiceError("permission_denied", COPY_OUT_MASKED);
      this.copyOutPlan = plan ?? null;
    }
    this.o.toClient.push(f);
    return true;
  }

  /** (B) CopyData of a copy-out */
  copyData(f: Buffer): void {
    const m = this.o.masker;
    this.o.toClient.push(m?.maskCopyData && this.copyOutPlan !== null ? m.maskCopyData(this.copyOutPlan, f) : f);
  }

  private context(p: Pending): ResultContext {
    return { session: this.o.info, sql: p.rec?.sql ?? "", statements: p.rec?.decision.statements ?? [], statementIndex: p.kind === K.Query ? p.stmtIndex ?? 0 : 0 };
  }
}

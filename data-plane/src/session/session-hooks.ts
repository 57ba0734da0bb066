/**
 * The seams of a proxied session: policy (Enforcer), recording (AuditSink), masking (ResultMasker),
 * approval (ApprovalGate) and cross-node cancel routing (CancelRouter). Pure types plus the no-op /
 * deny defaults; the session (relay-session.ts) calls them, `startDataPlane` options plug them in.
 *
 * Hot-path rules every implementation must respect:
 *  - `Enforcer.decide` should hit a cache for repeated statement text and answer synchronously;
 *    it may return a Promise (a classification moved to a worker with a time bound): the session
 *    then holds that message, and every message pipelined behind it, until it settles, exactly like
 *    an audit ack. A rejected decision denies the statement (fail closed: 57P03 for `unavailable`,
 *    42501 otherwise).
 *  - The statement-audit calls may return a Promise; the session then holds forwarding until it
 *    settles (audit.durability `ack`). Returning `void` keeps the per-message path synchronous
 *    (`async`). A rejected promise refuses the statement (fail closed, SQLSTATE from the
 *    SluiceError, 57P03 for `unavailable`).
 *  - What the session decodes for the audit (bound parameters, captured rows) is decided by the
 *    composition root with `AuditFeatures`, never by which methods an implementation happens to have.
 *  - Nothing handed to these hooks contains the JWT or the upstream credential.
 */
import type { Decision, PolicySnapshot } from "@sluice/shared/policy";
import type { SessionDenyStage } from "@sluice/shared/events";
import type { StatementInfo } from "@sluice/shared/sql";

/** Who is connected to what. Built once the client is authenticated; immutable for the session. */
export interface SessionInfo {
  /** UUIDv7, also the audit subject */
  readonly sessionId: string;
  readonly nodeId: string;
  readonly region: string;
  /** the resource (the StartupMessage `database`) */
  readonly resource: string;
  /** the StartupMessage `user`: informational only */
  readonly clientUser: string;
  readonly applicationName?: string;
  readonly clientAddress: string;
  /** verified identity (JWT `sub`, `iss`) and the groups its claims map to */
  readonly subject: string;
  readonly issuer: string;
  readonly groups: readonly string[];
  /** verified claims (never the token itself) */
  readonly claims: Readonly<Record<string, unknown>>;
  /** the snapshot the session authenticated against; the Enforcer may use a newer one */
  readonly policyRevision: number;
}

/** A session before authentication (for session.started / session.denied). */
export interface ConnectionInfo {
  readonly sessionId: string;
  readonly nodeId: string;
  readonly region: string;
  readonly clientAddress: string;
  /** set once the StartupMessage arrived */
  readonly resource?: string;
  readonly clientUser?: string;
  readonly applicationName?: string;
  readonly tls: boolean;
}

export type QueryProtocol = "simple" | "parse";

/**
 * What `Enforcer.decide` returns: a decision, or a promise of one (see the header comment). A
 * rejected promise is a deny.
 */
export type EnforcerDecision = Decision | Promise<Decision>;

/** What the session knows of its SQL-level prepared statements (SQL PREPARE), by name. */
export interface PreparedStatements {
  /** what `EXECUTE name` runs when the server gets to the message being decided (undefined: no such statement) */
  resolve(name: string): StatementInfo | undefined;
}

/**
 * Decides one client message: a simple Query string (all its statements) or one Parse. `prepared`
 * resolves the SQL-level EXECUTE names of `sql`: the session owns that namespace (it follows what
 * the server confirmed), so the enforcer keeps no per-session state of its own.
 */
export interface Enforcer {
  decide(sql: string, protocol: QueryProtocol, session: SessionInfo, prepared?: PreparedStatements): EnforcerDecision;
}

/** A bound parameter as sent in (F) Bind: raw bytes (null = SQL NULL) and its format. */
export interface BoundParam {
  readonly format: "text" | "binary";
  readonly value: Buffer | null;
}

/** One logical statement execution: a simple Query, or Parse+Bind+Execute in the extended protocol. */
export interface StatementRecord {
  /** per-session sequence of statements, from 1 */
  readonly seq: number;
  readonly protocol: QueryProtocol;
  readonly sql: string;
  /** extended protocol: prepared statement and portal names ("" = unnamed) */
  readonly statementName?: string;
  readonly portalName?: string;
  /** extended protocol: the parameters bound at Execute (raw; the recorder masks them) */
  readonly params?: readonly BoundParam[];
  /**
   * A statement of a multi-statement simple Query: its position from 1 and how many the Query has.
   * Each such statement is recorded as a statement of its own (its text, its rule, its completion),
   * with consecutive `seq`s; the message was decided (and approved) as a whole.
   */
  readonly part?: number;
  readonly parts?: number;
  readonly decision: Decision;
}

/** What happened when the upstream finished a statement. */
export interface StatementCompletion {
  readonly seq: number;
  /** CommandComplete tag, e.g. `SELECT 5`, `INSERT 0 1`; undefined on error */
  readonly commandTag?: string;
  readonly rows: number;
  /** milliseconds, from the session's monotonic clock */
  readonly durationMs: number;
  /** SQLSTATE and message of the ErrorResponse, when the statement failed */
  readonly error?: { readonly sqlstate: string; readonly message: string };
}

/** A column as announced by (B) RowDescription. */
export interface RowField {
  readonly name: string;
  readonly tableOid: number;
  readonly columnAttr: number;
  readonly typeOid: number;
  readonly typeSize: number;
  readonly typeMod: number;
  /** 0 text, 1 binary */
  readonly format: number;
}

/**
 * A connection refused before it relayed: `reason` the client-safe message, and from the refusal
 * table (net/refusals.ts) its `code` (the event's reason code), `stage`, and whose doing it was.
 */
export interface ConnectDenial {
  sqlstate: string;
  reason: string;
  subject?: string;
  issuer?: string;
  code?: string;
  stage?: SessionDenyStage;
  outcome?: "denied" | "failed";
}

/** The session lifecycle events (session.started, authenticated, denied, ended). */
export interface SessionAudit {
  sessionStarted(conn: ConnectionInfo): void;
  /** the JWT verified and the identity may connect to the resource; await = `ack` durability */
  sessionAuthenticated(session: SessionInfo): void | Promise<void>;
  /** connection refused (auth or policy at connect); `sqlstate` is what the client got */
  sessionDenied(conn: ConnectionInfo, denial: ConnectDenial): void;
  sessionEnded(info: ConnectionInfo | SessionInfo, end: { reason: string; statements: number; bytesIn: number; bytesOut: number }): void;
}

/**
 * The statement events. Every statement the session decides gets exactly one of statementAllowed /
 * statementBlocked, and every allowed one a statementCompleted (with the error when it did not run);
 * resultRows only when `AuditFeatures.captureRows` asks for rows. A returned Promise is awaited by
 * the session before it continues (see the header comment).
 */
export interface StatementAudit {
  /** called before the statement is forwarded; await = `ack` durability */
  statementAllowed(session: SessionInfo, stmt: StatementRecord): void | Promise<void>;
  /** called before the client receives the 42501 */
  statementBlocked(session: SessionInfo, stmt: StatementRecord): void | Promise<void>;
  statementCompleted(session: SessionInfo, done: StatementCompletion): void;
  /**
   * Result rows of a statement, after masking: the (B) DataRow frames exactly as sent to the client,
   * at most `AuditFeatures.captureRows` per statement (the session stops copying after that),
   * batched (called at CommandComplete / PortalSuspended, or at an error).
   */
  resultRows(session: SessionInfo, seq: number, fields: readonly RowField[], rows: readonly Buffer[], masks?: readonly ColumnMask[]): void;
}

/** The audit observer: every method is required (a recorder that records nothing says so with `noopAudit`). */
export interface AuditSink extends SessionAudit, StatementAudit {}

/**
 * What the session decodes for the statement audit, set by the composition root. Decoding costs the
 * hot path, so it is explicit: no feature depends on which methods a sink implements.
 *  - `decodeParams`: decode the bound parameters of every Bind into StatementRecord.params. A
 *    statement that needs approval always has its parameters decoded (approval binds to them).
 *  - `captureRows`: copy at most this many result rows per statement to `resultRows` (0: none).
 */
export interface AuditFeatures {
  readonly decodeParams: boolean;
  readonly captureRows: number;
}

/** Parameters recorded, no row capture: what a node records unless its config asks for rows. */
export const defaultAuditFeatures: AuditFeatures = { decodeParams: true, captureRows: 0 };

/**
 * Told of every statement the upstream finished, after the audit (e.g. the masking catalog flushing
 * a resource when a DDL command tag goes by). Must not throw and must not block.
 */
export type CompletionListener = (session: SessionInfo, done: StatementCompletion) => void;

/** Opaque to the session; produced and consumed by the masker. */
export type MaskPlan = unknown;

/**
 * Which rule masked a result column, and how: what the audit events say about masking (design: the
 * events name the rule, column and classifier, never the raw value).
 */
export interface ColumnMask {
  /** column position in the RowDescription */
  index: number;
  rule: string;
  strategy?: string;
  classifiers?: readonly string[];
}

/** What a statement produced a RowDescription for, to select masking rules. */
export interface ResultContext {
  readonly session: SessionInfo;
  readonly sql: string;
  readonly statements: readonly StatementInfo[];
  /** which of `statements` produced this result, when the session knows it (multi-statement Query) */
  readonly statementIndex?: number;
}

/**
 * Where an ErrorResponse / NoticeResponse came from, for masking its fields: a statement the
 * session decided (`statement`, with its classification), a message the server only parses and
 * analyses (`analysis`: Parse, Describe, Close, and a message sent for the server to refuse, naming
 * what it does not have or a failed portal), no statement at all (`none`: the queue is empty), or
 * something the session cannot tie to a decided statement (`unattributed`: a Bind, which may plan
 * and so run functions; a Sync, which commits).
 */
export interface MessageContext {
  readonly session: SessionInfo;
  readonly source: "statement" | "analysis" | "none" | "unattributed";
  readonly statements?: readonly StatementInfo[];
}

/**
 * Rewrites (B) DataRow frames. `planFor` returning null selects the raw fast path for that result.
 * `maskDataRow` gets the whole frame (code byte + length + body) and returns a whole frame with the
 * length recomputed (it may return the same Buffer when nothing changed).
 */
export interface ResultMasker {
  /**
   * Whether the resource has masking rules at all. False selects the raw fast path for every result
   * of the statement (no RowDescription/DataRow decoding). Asked once per statement; absent = true.
   */
  masks?(resource: string): boolean;
  planFor(fields: readonly RowField[], ctx: ResultContext): MaskPlan | null | Promise<MaskPlan | null>;
  maskDataRow(plan: MaskPlan, frame: Buffer): Buffer;
  /** the plan's columns, rules, strategies and classifiers (never values), for the audit events */
  describe?(plan: MaskPlan): readonly ColumnMask[];
  /**
   * COPY TO STDOUT: raw CopyData cannot be matched to columns safely. Return "deny" to refuse the
   * COPY (42501), a plan to have `maskCopyData` rewrite each (B) CopyData frame, or null for raw.
   */
  planForCopyOut?(ctx: ResultContext): MaskPlan | null | "deny" | Promise<MaskPlan | null | "deny">;
  /**
   * Why the results of statement `ctx.statementIndex` could not be masked, asked before it runs for
   * the statements whose results the session cannot plan from a row description
   * (`REFUSED_BEFORE_RUN`: a COPY TO STDOUT in CSV or binary format of masked columns, a BINARY
   * cursor); undefined: they can be. The session refuses such a statement with 42501 (a statement
   * error: the session goes on) and records it as blocked. Absent: COPY TO STDOUT of a masked result
   * is refused when its CopyOutResponse arrives, which ends the session.
   */
  refusal?(ctx: ResultContext): string | undefined | Promise<string | undefined>;
  maskCopyData?(plan: MaskPlan, frame: Buffer): Buffer;
  /**
   * The fields of an ErrorResponse (`error`) or NoticeResponse (`notice`) as the client and the audit
   * are to see them (a message can quote a masked value); null = unchanged. A promise: the masker
   * asks the catalog first, and the session holds the upstream until it settles. Absent: messages
   * pass as the server sent them.
   */
  screenMessage?(
    fields: Readonly<Record<string, string>>,
    kind: "error" | "notice",
    ctx: MessageContext,
  ): Record<string, string> | null | Promise<Record<string, string> | null>;
  /**
   * The value of a (B) ParameterStatus the server sends while `ctx`'s statement runs (a setting it
   * changed, e.g. with set_config), as the client is to see it; null = unchanged. A promise: as above.
   */
  screenParameter?(name: string, value: string, ctx: MessageContext): string | null | Promise<string | null>;
}

/** The statement kinds (StatementInfo.kind) the session asks `ResultMasker.refusal` about before they run. */
export const REFUSED_BEFORE_RUN: ReadonlySet<string> = new Set(["CopyStmt", "DeclareCursorStmt"]);

/** Holds a statement whose decision is `approve` until a human decides (design: data path 6). */
export interface ApprovalGate {
  /**
   * Resolves "approved" to forward the statement, or "rejected"/"timeout" to answer 42501.
   * `notice` sends a NoticeResponse to the client (request id, how to approve). `signal` aborts
   * when the client has gone: the gate stops waiting and records the request as cancelled at once
   * (before the session's end is recorded), and the promise rejects.
   */
  request(session: SessionInfo, stmt: StatementRecord, notice: (message: string) => void, signal?: AbortSignal): Promise<"approved" | "rejected" | "timeout">;
}

/** Sends a cancel for a key handed out by another data-plane node (B2: over NATS). */
export interface CancelRouter {
  routeCancel(nodeId: number, localKey: { pid: number; secret: number }): void | Promise<void>;
}

/** Where the session gets its current policy (B2 passes the KV watcher; tests a static one). */
export interface SnapshotSource {
  current(): PolicySnapshot | undefined;
  /** called with each new snapshot; returns an unsubscribe function */
  onChange(cb: (snap: PolicySnapshot) => void): () => void;
}

/** A SnapshotSource that never changes (tests, single-file config). */
export function staticSnapshots(snap: PolicySnapshot): SnapshotSource {
  return { current: () => snap, onChange: () => () => {} };
}

/** The production default when no policy engine is wired: deny everything, say why. */
export const denyAllEnforcer: Enforcer = {
  decide: () => ({
    action: "deny",
    rule: "no-enforcer",
    reason: "no policy engine is configured on this data plane",
    statementClass: "unknown",
    statementIndex: 0,
    statements: [],
  }),
};

/** Allow everything. ONLY for the proxy's own protocol tests; never a production default. */
export const allowAllEnforcerForTests: Enforcer = {
  decide: () => ({
    action: "allow",
    rule: "test-allow-all",
    reason: "test enforcer",
    statementClass: "unknown",
    statementIndex: 0,
    statements: [],
  }),
};

/** Records nothing (tests, and composers that record elsewhere). */
export const noopAudit: AuditSink = {
  sessionStarted: () => undefined,
  sessionAuthenticated: () => undefined,
  sessionDenied: () => undefined,
  sessionEnded: () => undefined,
  statementAllowed: () => undefined,
  statementBlocked: () => undefined,
  statementCompleted: () => undefined,
  resultRows: () => undefined,
};

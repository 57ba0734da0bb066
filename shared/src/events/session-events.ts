/**
 * Session events on SLUICE_AUDIT (contract: "Events"): the type names, the payload shapes and pure
 * builders. This file is the seam between the data plane's recorder (producer) and the control
 * plane's sealer, read model, verify, export and replay (consumers). Pure: no clock (time comes in
 * as an argument), no I/O.
 *
 * Envelope: CloudEvents 1.0 with `subject` = session id, `source` = `sluice://<region>/<node>`,
 * `sluicepolicyrev` = the snapshot revision in force (the one that decided, for statement events),
 * and the per-session hash chain (`sluicesessionseq`, `sluiceprevhash`, `sluicehash`) stamped by the
 * recorder's HashChain. Payload (`data`) field names are lowerCamelCase, as in the proto3 JSON mapping
 * of proto/sluice/v1/events.proto.
 *
 * Secrets: no payload ever carries a JWT, an upstream credential or an unmasked value of a masked
 * column. Parameters and result values are masked before they reach a builder.
 */
import type { Risk, StatementClass } from "../policy/bundle.js";
import { MAX_EVENT_DATA_BYTES, chunkString, dataPlaneSource, eventType, makeEvent } from "./cloud-event.js";
import type { CloudEvent } from "./cloud-event.js";
import { canonicalJson } from "./canonical-json.js";

/** Names of the session events; the CloudEvents type is `dev.sluice.<name>.v1` (see eventType). */
export const SESSION_EVENT_NAMES = [
  "session.started",
  "session.authenticated",
  "session.denied",
  "statement.allowed",
  "statement.blocked",
  "statement.approval_requested",
  "statement.approved",
  "statement.rejected",
  "statement.completed",
  "result.rows",
  "session.ended",
] as const;
export type SessionEventName = (typeof SESSION_EVENT_NAMES)[number];

/** CloudEvents `type` of each session event, e.g. SessionEventType["statement.allowed"] = "dev.sluice.statement.allowed.v1". */
export const SessionEventType: { readonly [N in SessionEventName]: string } = Object.freeze(
  Object.fromEntries(SESSION_EVENT_NAMES.map((n) => [n, eventType(n)])) as { [N in SessionEventName]: string },
);

const NAME_BY_TYPE = new Map<string, SessionEventName>(SESSION_EVENT_NAMES.map((n) => [eventType(n), n]));

/** The session event name of a CloudEvents type, or undefined when it is not a session event. */
export function sessionEventName(type: string): SessionEventName | undefined {
  return NAME_BY_TYPE.get(type);
}

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/**
 * `session.started`: a client connection, recorded with the outcome of its handshake: just before
 * session.authenticated, or session.denied. A source out of failed handshakes is refused without
 * any event (data-plane/src/net/handshake-limiter.ts), and failed handshakes are recorded within a
 * node-wide budget, so unauthenticated connections cannot fill the audit buffer.
 */
export interface SessionStartedData {
  /** remote address of the client, as seen by the listener */
  clientAddress: string;
  clientPort?: number;
  /** the StartupMessage `database`, which names a resource */
  resource: string;
  node: string;
  region: string;
  /** TLS on the client connection; `protocol`/`cipher` as negotiated when enabled */
  tls: { enabled: boolean; protocol?: string; cipher?: string };
  /** StartupMessage `application_name`, when given */
  applicationName?: string;
  /** StartupMessage `user` as given by the client: informational only, never an identity */
  user?: string;
}

/** `session.authenticated`: the client's token verified. NEVER carries the token itself. */
export interface SessionAuthenticatedData {
  /** the token's `sub` */
  subject: string;
  /** the configured issuer's name (bundle `issuers[].name`) */
  issuer: string;
  /** the issuer URL (`iss`) */
  issuerUrl?: string;
  /** groups mapped from claims by the issuer's rules */
  groups: string[];
  /** selected, non-secret claims (e.g. repository, ref, workflow, environment) */
  claims: Record<string, string | number | boolean | string[]>;
  /** token expiry, ISO 8601 */
  expiresAt?: string;
  /** the upstream database/user the proxy connects as (names, never the credential) */
  upstream?: { database: string; user: string };
}

/** Why a connection was refused at connect time. */
export type SessionDenyStage = "startup" | "authentication" | "authorization" | "upstream" | "audit";

/** `session.denied`: authentication or connect-time policy refused the session. */
export interface SessionDeniedData {
  stage: SessionDenyStage;
  /** machine-readable reason code from the data plane's refusal table (data-plane/src/net/refusals.ts), e.g. `token_rejected`, `no_policy`, `unknown_resource`, `tls_required` */
  reason: string;
  /** human-readable, secret-free message as sent to the client */
  message: string;
  /** SQLSTATE sent to the client, e.g. 28P01, 28000, 3D000, 57P03 */
  sqlstate: string;
  /** identity, when the token verified but policy refused */
  subject?: string;
  issuer?: string;
  groups?: string[];
}

export type StatementProtocol = "simple" | "extended";
export type StatementDecisionAction = "allow" | "deny" | "approve";

/** What the classifier found for one statement of a (possibly multi-statement) message. */
export interface StatementPart {
  /** AST node name, e.g. `SelectStmt` */
  kind: string;
  class: StatementClass;
  tables: { read: string[]; write: string[] };
  functions: string[];
  risks: Risk[];
  /**
   * this statement's own matched rule (e.g. `implicit:transaction-control` for the BEGIN of
   * `BEGIN; SELECT …`); absent for a statement after the denied one, which was never judged
   */
  rule?: string;
}

/**
 * Common to statement.allowed / blocked / approval_requested: one logical statement (a simple Query
 * message, or one extended-protocol execution: Parse SQL + Bind parameters, recorded at Execute).
 */
export interface StatementData {
  /**
   * Per-session statement number, 1-based, in the order the client sent them. The key that joins a
   * statement's allowed/blocked/approval events with its statement.completed and result.rows.
   */
  statementId: number;
  /**
   * the SQL text as sent: the Query string, or the Parse text; for a statement of a multi-statement
   * Query, that statement's own text (each statement of such a Query is a statement of its own,
   * with consecutive statementIds, `part` and `parts`)
   */
  sql: string;
  /** a statement of a multi-statement simple Query: its position in the Query, from 1 */
  part?: number;
  /** a statement of a multi-statement simple Query: how many statements the Query has */
  parts?: number;
  /** bound parameters (extended protocol), MASKED by the same rules as result values; text form, binary as `\x<hex>` */
  params?: Array<string | null>;
  protocol: StatementProtocol;
  /** prepared statement / portal names (extended protocol), when not the unnamed ones */
  preparedName?: string;
  portal?: string;
  /** class of the deciding statement (the denied one, or the first) */
  class: StatementClass | "unknown";
  /** union over every statement of the message */
  tables: { read: string[]; write: string[] };
  risks: Risk[];
  /** one entry per statement in the message (empty on a parse failure) */
  statements: StatementPart[];
  decision: StatementDecisionAction;
  /** the matched rule, e.g. `ci-read/allow:read`, `deployers/deny:drop-database`, `default-deny`, `parse-error` */
  rule: string;
  /** the policy the rule belongs to */
  policy?: string;
  /** human-readable, secret-free reason */
  reason?: string;
}

/**
 * `statement.allowed`: the statement is forwarded upstream after this event (ack durability).
 * `decision` is `allow` when policy allowed it, `approve` when policy required approval and an
 * approver approved it (then a statement.approval_requested / statement.approved pair may precede it).
 */
export type StatementAllowedData = StatementData & { decision: "allow" | "approve" };

/** `statement.blocked`: policy denied it; the client got 42501 (or parse-error deny). */
export interface StatementBlockedData extends StatementData {
  decision: "deny";
  /** SQLSTATE sent to the client */
  sqlstate: string;
}

/** `statement.approval_requested`: the statement is held for a human approver. */
export interface StatementApprovalRequestedData extends StatementData {
  decision: "approve";
  approvalId: string;
  approvers: string[];
  timeoutMs: number;
  /** the fingerprint the approval binds to (statement + parameters + session) */
  fingerprint?: string;
}

/** `statement.approved`: the held statement was approved; it is forwarded after this event. */
export interface StatementApprovedData {
  statementId: number;
  approvalId: string;
  /** who approved (subject) */
  approver: string;
}

/** `statement.rejected`: rejected by an approver or timed out; the client got 42501. */
export interface StatementRejectedData {
  statementId: number;
  approvalId: string;
  reason: "rejected" | "timeout" | "cancelled";
  /** who rejected, when a person did */
  approver?: string;
  sqlstate: string;
}


export interface ResultColumn {
  name: string;
  /** Postgres type OID */
  typeOid: number;
  /** true when a masking rule or classifier applies to this column */
  masked?: boolean;
  /** the masking rule that applies (bundle entry name or `masking[i]`), never the value */
  maskRule?: string;
  /** partial | redact | hash, when the whole column is masked by one strategy */
  maskStrategy?: string;
  /** value classifiers scanning this column */
  classifiers?: string[];
}

/**
 * One result set of a statement as captured: the (masked) rows, capped per statement by
 * `dataPlane.audit.maxRowsPerStatement` / `maxBytesPerStatement`. Counts are always exact.
 */
export interface CapturedResult {
  columns: ResultColumn[];
  /** the recorded rows (masked), text form; binary values as `\x<hex>` */
  values: Array<Array<string | null>>;
  /** exact number of rows the statement returned to the client */
  rows: number;
  /** number of rows in `values` */
  recorded: number;
  /** true when rows > recorded (the cap was hit) */
  truncated: boolean;
  /** bytes of field data in `values` (before text rendering) */
  recordedBytes: number;
}

/**
 * Captured result sets up to this many bytes of field data ride inside statement.completed
 * (`results`); a larger capture is recorded as result.rows events just before it (contract: "a
 * statement is two events").
 */
export const INLINE_RESULT_BYTES = 64 * 1024;

/** `statement.completed`: the upstream finished the statement (CommandComplete or ErrorResponse). */
export interface StatementCompletedData {
  statementId: number;
  /** CommandComplete tag, e.g. `SELECT 5`, `INSERT 0 1` (each statement of a multi-statement Query has its own completion) */
  commandTag?: string;
  /** rows returned or affected, exact */
  rows: number;
  durationMs: number;
  /** the upstream error: SQLSTATE and message (never its DETAIL, which can hold row values) */
  error?: { sqlstate: string; message: string };
  /** the captured result sets when together they fit in INLINE_RESULT_BYTES (else result.rows events) */
  results?: CapturedResult[];
}

/**
 * `result.rows`: one captured result set too large to ride inside statement.completed (above
 * INLINE_RESULT_BYTES), recorded just before the statement's statement.completed; above 512 KiB it
 * is split into chunk events like any payload.
 */
export interface ResultRowsData extends CapturedResult {
  statementId: number;
}

export type SessionEndReason =
  | "client_terminate"
  | "client_disconnect"
  | "upstream_closed"
  | "protocol_error"
  | "audit_unavailable"
  | "shutdown"
  | "error";

/** `session.ended`: the connection closed. */
export interface SessionEndedData {
  /** one of SessionEndReason, or a session-specific secret-free code */
  reason: SessionEndReason | (string & {});
  durationMs: number;
  /** statements recorded in this session (= the highest statementId) */
  statements: number;
  /** bytes received from / sent to the client */
  bytesIn: number;
  bytesOut: number;
  /** secret-free error message when reason is an error */
  error?: string;
}

/** Payload type of each session event name. */
export interface SessionEventPayloads {
  "session.started": SessionStartedData;
  "session.authenticated": SessionAuthenticatedData;
  "session.denied": SessionDeniedData;
  "statement.allowed": StatementAllowedData;
  "statement.blocked": StatementBlockedData;
  "statement.approval_requested": StatementApprovalRequestedData;
  "statement.approved": StatementApprovedData;
  "statement.rejected": StatementRejectedData;
  "statement.completed": StatementCompletedData;
  "result.rows": ResultRowsData;
  "session.ended": SessionEndedData;
}

/**
 * A chunk of a payload whose canonical JSON exceeds the cap. Every chunk is its own event with the
 * original `type`, consecutive session sequence numbers and the same chain; `part` is the i-th slice
 * of the canonical JSON text of the original payload. Concatenating `part` for chunk 1..chunks and
 * parsing gives the original payload back (see reassembleChunks).
 */
export interface ChunkData {
  /** 1-based */
  chunk: number;
  chunks: number;
  part: string;
  /** copied from the original payload so consumers can index chunks without reassembly */
  statementId?: number;
}

export type SessionEvent<N extends SessionEventName = SessionEventName> = CloudEvent<SessionEventPayloads[N] | ChunkData>;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/** Where a session's events come from. */
export interface SessionEventContext {
  sessionId: string;
  region: string;
  node: string;
}

export interface SessionEventOptions {
  /** event time; required because this module is pure */
  time: Date;
  /** the policy snapshot revision in force / that decided */
  policyRev?: number;
  /** event id (default a fresh UUIDv7 from `time`) */
  id?: string;
}

/**
 * Builds one (unchained) session event. The recorder links it into the session's HashChain, which
 * stamps `sluicesessionseq`, `sluiceprevhash` and `sluicehash`.
 */
export function buildSessionEvent<N extends SessionEventName>(
  ctx: SessionEventContext,
  name: N,
  data: SessionEventPayloads[N],
  opts: SessionEventOptions,
): CloudEvent<SessionEventPayloads[N]> {
  return makeEvent({
    source: dataPlaneSource(ctx.region, ctx.node),
    type: eventType(name),
    subject: ctx.sessionId,
    data,
    time: opts.time,
    id: opts.id,
    policyRev: opts.policyRev,
  });
}

/** Cap for one chunk's `part` in UTF-8 bytes: JSON escaping of the part can at most double it, so two parts fit below 512 KiB with room for the envelope. */
export const CHUNK_PART_BYTES = Math.floor((MAX_EVENT_DATA_BYTES - 16 * 1024) / 2);

export function isChunkData(data: unknown): data is ChunkData {
  return (
    typeof data === "object" && data !== null &&
    typeof (data as ChunkData).chunk === "number" &&
    typeof (data as ChunkData).chunks === "number" &&
    typeof (data as ChunkData).part === "string"
  );
}

/** UTF-8 byte size of the event's `data` as published (JSON). */
export function dataBytes(data: unknown): number {
  return Buffer.byteLength(JSON.stringify(data) ?? "", "utf8");
}

/**
 * The canonical JSON texts (RFC 8785) of the chunk payloads a payload of canonical text `dataText`
 * splits into: equal, text for text, to canonicalJson of chunkSessionEvent's chunk data (a property
 * test holds it). The recorder's path for a payload above the cap (a 1 MiB statement): the text is
 * encoded once and each part escaped once, instead of the payload being parsed back, serialized
 * again and each chunk event canonicalized as an object on the relay's thread.
 */
export function chunkDataTexts(dataText: string, statementId?: number): string[] {
  const parts = chunkString(dataText, CHUNK_PART_BYTES);
  // members in RFC 8785 order: chunk, chunks, part, statementId
  const tail = statementId === undefined ? "}" : `,"statementId":${canonicalJson(statementId)}}`;
  return parts.map((part, i) => `{"chunk":${i + 1},"chunks":${parts.length},"part":${JSON.stringify(part)}${tail}`);
}

/**
 * Splits an event whose payload exceeds MAX_EVENT_DATA_BYTES into chunk events (same type, subject,
 * source, time and policy revision; fresh ids). Returns `[ev]` unchanged when it fits. `newId` makes
 * the ids (pure: the caller brings the id source).
 */
export function chunkSessionEvent<D>(ev: CloudEvent<D>, newId: () => string): CloudEvent<D | ChunkData>[] {
  if (dataBytes(ev.data) <= MAX_EVENT_DATA_BYTES - 1024) return [ev];
  const parts = chunkString(canonicalJson(ev.data), CHUNK_PART_BYTES);
  const statementId = (ev.data as { statementId?: unknown }).statementId;
  return parts.map((part, i) => {
    const data: ChunkData = { chunk: i + 1, chunks: parts.length, part };
    if (typeof statementId === "number") data.statementId = statementId;
    const c: CloudEvent<ChunkData> = { ...(ev as unknown as CloudEvent<ChunkData>), id: i === 0 ? ev.id : newId(), data };
    delete c.sluicesessionseq;
    delete c.sluiceprevhash;
    delete c.sluicehash;
    return c;
  });
}

/**
 * Reassembles the payload of chunk events (in order, all of one chunked payload). Throws when a
 * chunk is missing, duplicated or out of order.
 */
export function reassembleChunks(events: ReadonlyArray<CloudEvent>): unknown {
  const first = events[0];
  if (!first || !isChunkData(first.data)) throw new Error("reassembleChunks: not a chunk event");
  const n = first.data.chunks;
  if (events.length !== n) throw new Error(`reassembleChunks: expected ${n} chunks, got ${events.length}`);
  let text = "";
  events.forEach((ev, i) => {
    const d = ev.data;
    if (!isChunkData(d) || d.chunk !== i + 1 || d.chunks !== n || ev.type !== first.type) {
      throw new Error(`reassembleChunks: chunk ${i + 1} of ${n} missing or out of order`);
    }
    text += d.part;
  });
  return JSON.parse(text) as unknown;
}

/**
 * Folds a session's events (in sequence order) into logical events: chunk runs become one event
 * carrying the reassembled payload (with the first chunk's envelope). Consumers (replay, read model,
 * export) use this so they never see chunks.
 */
export function joinChunks(events: ReadonlyArray<CloudEvent>): CloudEvent[] {
  const out: CloudEvent[] = [];
  for (let i = 0; i < events.length; i++) {
    const ev = events[i]!;
    if (!isChunkData(ev.data)) {
      out.push(ev);
      continue;
    }
    const run = events.slice(i, i + ev.data.chunks);
    out.push({ ...ev, data: reassembleChunks(run) });
    i += run.length - 1;
  }
  return out;
}

/**
 * One session's recorder: builds its events, splits payloads above 512 KiB into numbered chunk
 * events, links them into the session's hash chain and hands them to the node's AuditPublisher on
 * the session's audit subject. A refused event (fail closed) never takes a sequence number, so the
 * chain on the stream stays contiguous.
 */
import { HashChain, uuidv7, buildSessionEvent, chunkSessionEvent } from "@sluice/shared/events";
import type { CloudEvent, SessionEventName, SessionEventPayloads } from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import type { AdmitMode, AuditPublisher } from "./audit-publisher.js";

/** Events after which a statement is forwarded upstream: `ack` durability waits for them. */
const GATING: ReadonlySet<SessionEventName> = new Set(["statement.allowed", "statement.approved"]);
/** Events that open new work: refused first when the buffer is full. */
const OPENING: ReadonlySet<SessionEventName> = new Set([
  "session.started",
  "session.authenticated",
  "statement.blocked",
  "statement.approval_requested",
]);

export function admitModeOf(name: SessionEventName): AdmitMode {
  return GATING.has(name) ? "gate" : OPENING.has(name) ? "admit" : "follow";
}

export interface SessionRecorderOptions {
  sessionId: string;
  region: string;
  node: string;
  names: NatsNames;
  /** default policy revision stamped on events (`sluicepolicyrev`) */
  policyRev?: number;
  /** clock; the recorder is an I/O room but tests pin time */
  now?: () => Date;
}

export interface RecordOptions {
  /** the revision that decided this event, when it differs from the session's */
  policyRev?: number;
  time?: Date;
}

export class SessionRecorder {
  readonly sessionId: string;
  readonly subject: string;
  private readonly chain = new HashChain();
  private readonly ctx: { sessionId: string; region: string; node: string };
  private readonly now: () => Date;
  policyRev: number | undefined;

  constructor(private readonly publisher: AuditPublisher, o: SessionRecorderOptions) {
    this.sessionId = o.sessionId;
    this.ctx = { sessionId: o.sessionId, region: o.region, node: o.node };
    this.subject = o.names.auditSubject(o.region, o.node, o.sessionId);
    this.policyRev = o.policyRev;
    this.now = o.now ?? (() => new Date());
  }

  /**
   * Records one event. Throws SluiceError("unavailable") when the audit buffer is full (fail closed;
   * nothing was recorded). In `ack` durability, statement.allowed / statement.approved return a
   * Promise that resolves once JetStream acknowledged the event (and the session's earlier events):
   * forward the statement only then; it rejects with SluiceError("unavailable") if no ack came in
   * time. Every other event, and every event in `async` durability, returns undefined.
   */
  record<N extends SessionEventName>(name: N, data: SessionEventPayloads[N], o: RecordOptions = {}): Promise<void> | undefined {
    const time = o.time ?? this.now();
    const ev = buildSessionEvent(this.ctx, name, data, { time, policyRev: o.policyRev ?? this.policyRev });
    const events: CloudEvent[] = chunkSessionEvent(ev, () => uuidv7(time.getTime()));
    const mode = admitModeOf(name);
    // check before linking: a refused event must not consume a sequence number
    this.publisher.assertCapacity(events.length, mode);
    const encoded = events.map((e) => this.chain.linkEncoded(e));
    return this.publisher.enqueue(this.subject, events, mode, encoded);
  }

  /** sequence number of the last recorded event (0 before the first) */
  get lastSeq(): number {
    return this.chain.lastSeq;
  }

  get lastHash(): string {
    return this.chain.lastHash;
  }
}

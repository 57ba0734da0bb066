/**
 * One session's recorder: builds its events, splits payloads above 512 KiB into numbered chunk
 * events, links them into the session's hash chain and hands them to the node's AuditPublisher on
 * the session's audit subject. A refused event (fail closed) never takes a sequence number, so the
 * chain on the stream stays contiguous.
 */
import {
  HashChain, MAX_EVENT_DATA_BYTES, SessionEventType, buildSessionEvent, canonicalJson, chunkSessionEvent, dataPlaneSource, uuidv7,
} from "@sluice/shared/events";
import type { CloudEvent, SessionEventName, SessionEventPayloads } from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import type { AdmitMode, AuditPublisher } from "./audit-publisher.js";

/** CloudEvents `type` of each session event as a JSON string literal, escaped once. */
const TYPE_JSON = Object.fromEntries(Object.entries(SessionEventType).map(([n, t]) => [n, JSON.stringify(t)])) as Record<SessionEventName, string>;
/** a payload whose canonical text is at most this long certainly fits (UTF-8 takes ≤ 3 bytes per UTF-16 unit) */
const SURELY_FITS_CHARS = Math.floor((MAX_EVENT_DATA_BYTES - 1024) / 3);

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
  private readonly sourceJson: string;
  private readonly subjectJson: string;
  policyRev: number | undefined;

  constructor(private readonly publisher: AuditPublisher, o: SessionRecorderOptions) {
    this.sessionId = o.sessionId;
    this.ctx = { sessionId: o.sessionId, region: o.region, node: o.node };
    this.subject = o.names.auditSubject(o.region, o.node, o.sessionId);
    this.policyRev = o.policyRev;
    this.now = o.now ?? (() => new Date());
    this.sourceJson = JSON.stringify(dataPlaneSource(o.region, o.node));
    this.subjectJson = JSON.stringify(o.sessionId);
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
    const mode = admitModeOf(name);
    const policyRev = o.policyRev ?? this.policyRev;
    // the payload is serialized once: that text is measured, hashed and sent (HashChain.linkCanonical)
    const dataText = canonicalJson(data);
    if (dataText.length <= SURELY_FITS_CHARS || Buffer.byteLength(dataText, "utf8") <= MAX_EVENT_DATA_BYTES - 1024) {
      this.publisher.assertCapacity(1, mode); // before linking: a refused event takes no sequence number
      const id = uuidv7(time.getTime());
      const linked = this.chain.linkCanonical(
        { id, time: time.toISOString(), policyRev, sourceJson: this.sourceJson, subjectJson: this.subjectJson, typeJson: TYPE_JSON[name] },
        dataText,
      );
      return this.publisher.enqueueEncoded(this.subject, [{ id, bytes: linked.bytes }], mode);
    }
    // above the cap: numbered chunk events (rare; the generic path)
    const ev = buildSessionEvent(this.ctx, name, data, { time, policyRev });
    const events: CloudEvent[] = chunkSessionEvent(ev, () => uuidv7(time.getTime()));
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

/**
 * One session's recorder: serializes its events (payloads above 512 KiB as numbered chunk events),
 * links them into the session's hash chain and queues them on the session's lane of the node's
 * AuditPublisher. A refused event (fail closed) never takes a sequence number, so the chain on the
 * stream stays contiguous.
 */
import {
  HashChain, MAX_EVENT_DATA_BYTES, SessionEventType, canonicalJson, chunkDataTexts, dataPlaneSource, uuidv7,
} from "@sluice/shared/events";
import type { SessionEventName, SessionEventPayloads } from "@sluice/shared/events";
import type { AdmitMode, AuditPublisher, LaneEvent } from "./audit-publisher.js";

/** CloudEvents `type` of each session event as a JSON string literal, escaped once. */
const TYPE_JSON = Object.fromEntries(Object.entries(SessionEventType).map(([n, t]) => [n, JSON.stringify(t)])) as Record<SessionEventName, string>;
/** a payload whose canonical text is at most this long certainly fits (UTF-8 takes ≤ 3 bytes per UTF-16 unit) */
const SURELY_FITS_CHARS = Math.floor((MAX_EVENT_DATA_BYTES - 1024) / 3);

/**
 * Date.toISOString, remembered for the last millisecond: events come in bursts (a statement's
 * completion and the next statement's decision, many sessions in one turn), and the conversion
 * cost the hot path about a tenth of an event.
 */
let isoMs = Number.NaN;
let isoText = "";
function isoTime(ms: number): string {
  if (ms !== isoMs) {
    isoText = new Date(ms).toISOString();
    isoMs = ms;
  }
  return isoText;
}

/**
 * Events `ack` durability waits for: those after which a statement is forwarded upstream, and the
 * approval request, after which the client is told its statement is held (a node that died right
 * after that notice left an approvable request on the control plane and nothing in the session's
 * chain; found by test/reliability/data-plane-crash.test.ts).
 */
const GATING: ReadonlySet<SessionEventName> = new Set(["statement.allowed", "statement.approved", "statement.approval_requested"]);
/** Events that open new work: refused first when the buffer is full. */
const OPENING: ReadonlySet<SessionEventName> = new Set([
  "session.started",
  "session.authenticated",
  "statement.blocked",
]);

export function admitModeOf(name: SessionEventName): AdmitMode {
  return GATING.has(name) ? "gate" : OPENING.has(name) ? "admit" : "follow";
}

export interface SessionRecorderOptions {
  sessionId: string;
  region: string;
  node: string;
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
  /** the publisher lane every event of this session goes through */
  readonly lane: number;
  private readonly chain = new HashChain();
  /** the clock in ms: Date.now unless a test pins `now` (no Date object per event on the hot path) */
  private readonly nowMs: () => number;
  private readonly sourceJson: string;
  private readonly subjectJson: string;
  policyRev: number | undefined;

  constructor(private readonly publisher: AuditPublisher, o: SessionRecorderOptions) {
    this.sessionId = o.sessionId;
    this.lane = publisher.laneFor(o.sessionId);
    this.policyRev = o.policyRev;
    const now = o.now;
    this.nowMs = now ? () => now().getTime() : Date.now;
    this.sourceJson = JSON.stringify(dataPlaneSource(o.region, o.node));
    this.subjectJson = JSON.stringify(o.sessionId);
  }

  /** The lane's subject on the stream. */
  get subject(): string {
    return this.publisher.laneSubject(this.lane);
  }

  /**
   * Records one event. Throws SluiceError("unavailable") when the audit buffer is full (fail closed;
   * nothing was recorded). In `ack` durability, statement.allowed / statement.approved return a
   * Promise that resolves once JetStream stored the event (and the lane's earlier events): forward
   * the statement only then; it rejects with SluiceError("unavailable") if that did not happen in
   * time. In `async` durability they do so only beyond the buffer's bound while the stream takes
   * batches (AuditLanes: admission); otherwise, and for every other event, returns undefined.
   */
  record<N extends SessionEventName>(name: N, data: SessionEventPayloads[N], o: RecordOptions = {}): Promise<void> | undefined {
    // the payload is serialized once: that text is measured, hashed and sent (HashChain.linkCanonical)
    return this.recordJson(name, canonicalJson(data), o, data);
  }

  /**
   * `record` for a payload already written as its canonical JSON text (RFC 8785), e.g. by
   * statementEventJson on the hot path. `data`, when the caller has it, saves parsing the text back
   * in the rare case it must be split into chunks.
   */
  recordJson<N extends SessionEventName>(name: N, dataText: string, o: RecordOptions = {}, data?: SessionEventPayloads[N]): Promise<void> | undefined {
    const ms = o.time !== undefined ? o.time.getTime() : this.nowMs();
    const mode = admitModeOf(name);
    const policyRev = o.policyRev ?? this.policyRev;
    if (dataText.length <= SURELY_FITS_CHARS || Buffer.byteLength(dataText, "utf8") <= MAX_EVENT_DATA_BYTES - 1024) {
      this.publisher.assertCapacity(1, mode); // before linking: a refused event takes no sequence number
      const linked = this.chain.linkCanonical(
        { id: uuidv7(ms), time: isoTime(ms), policyRev, sourceJson: this.sourceJson, subjectJson: this.subjectJson, typeJson: TYPE_JSON[name] },
        dataText,
      );
      return this.publisher.enqueue(this.lane, [{ json: linked.json, bytes: linked.bytes }], mode);
    }
    // above the cap: numbered chunk events cut from this one text (a hostile 1 MiB statement comes
    // here; it used to be parsed back, serialized twice more and canonicalized chunk by chunk as
    // objects on the relay's thread: ~0.1 s that every other session of the node waited for)
    const statementId = ((data ?? JSON.parse(dataText)) as { statementId?: unknown }).statementId;
    const parts = chunkDataTexts(dataText, typeof statementId === "number" ? statementId : undefined);
    // check before linking: a refused event must not consume a sequence number
    this.publisher.assertCapacity(parts.length, mode);
    const iso = isoTime(ms);
    const encoded = parts.map((part): LaneEvent => {
      const linked = this.chain.linkCanonical(
        { id: uuidv7(ms), time: iso, policyRev, sourceJson: this.sourceJson, subjectJson: this.subjectJson, typeJson: TYPE_JSON[name] },
        part,
      );
      return { json: linked.json, bytes: linked.bytes };
    });
    return this.publisher.enqueue(this.lane, encoded, mode);
  }

  /** sequence number of the last recorded event (0 before the first) */
  get lastSeq(): number {
    return this.chain.lastSeq;
  }

  get lastHash(): string {
    return this.chain.lastHash;
  }
}

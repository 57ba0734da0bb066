import { decodeBatch, isCloudEvent, type CloudEvent } from "@sluice/shared/events";

/**
 * One stored message of the audit stream: where it is, and what it holds. On SLUICE_AUDIT a message
 * is a CloudEvents JSON batch (contract: batches), so it holds one or more events in order.
 */
export interface AuditMessage {
  /** stream sequence */
  seq: number;
  subject: string;
  /** the events of the batch, in order, when the message is a CloudEvents JSON batch */
  events?: CloudEvent[];
  /** the message text when it is not (verify reports it) */
  raw?: string;
  /** when JetStream stored it */
  storedAt?: string;
  /**
   * only the events of one session out of the stored batch (a session read): each event verifies,
   * the message as a whole is not what the stream chain covers
   */
  filtered?: boolean;
}

/** What AuditService.Read sends for a stored message (proto AuditEvent). */
export interface WireAuditMessage {
  streamSeq: number;
  subject: string;
  messageJson: string;
  storedAt: string;
  filtered: boolean;
}

/**
 * A message as AuditService.Read delivered it, read back: the events of a batch (SLUICE_AUDIT), or
 * the one event of a SLUICE_CONTROL message, or the text verbatim when it is neither.
 */
export function messageFromWire(e: WireAuditMessage): AuditMessage {
  const m: AuditMessage = { seq: Number(e.streamSeq), subject: e.subject, storedAt: e.storedAt };
  try {
    if (e.messageJson.trimStart().startsWith("[")) m.events = decodeBatch(e.messageJson);
    else {
      const v: unknown = JSON.parse(e.messageJson);
      if (!isCloudEvent(v)) throw new Error("not a CloudEvent");
      m.events = [v];
    }
  } catch {
    m.raw = e.messageJson;
  }
  if (e.filtered) m.filtered = true;
  return m;
}

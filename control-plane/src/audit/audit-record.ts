import type { CloudEvent } from "@sluice/shared/events";

/** One stored message of the audit stream: where it is, and what it holds. */
export interface AuditRecord {
  /** stream sequence */
  seq: number;
  subject: string;
  /** the event, when the message is a CloudEvents JSON object */
  event?: CloudEvent;
  /** the message text when it is not (verify reports it) */
  raw?: string;
  /** when JetStream stored it */
  storedAt?: string;
}

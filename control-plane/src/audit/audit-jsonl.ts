import { CONTROL_PLANE_SOURCE, eventType, isCloudEvent, type CloudEvent } from "@sluice/shared/events";
import { parseCheckpoint, type Checkpoint } from "../sealer/checkpoint.js";
import type { AuditMessage } from "./audit-record.js";

/**
 * The JSON-lines copy of the audit stream (`sluice audit export --format cloudevents`), one event a
 * line, which `sluice audit verify --file` checks offline:
 *  - each event of each stored batch exactly as stored, in order, plus the extension
 *    `sluicestreamseq` (the stream sequence of its message; a transport annotation, removed again
 *    before any hash is computed). Consecutive lines with the same sequence are one message;
 *  - a message that is not a batch as `{"sluicestreamseq": n, "sluiceraw": "<its text>"}`;
 *  - after the message that ends a checkpoint's range, the checkpoint as a CloudEvent of type
 *    `dev.sluice.audit.checkpoint.v1` whose data is the signed checkpoint.
 */
export const CHECKPOINT_EVENT_TYPE = eventType("audit.checkpoint");
export const STREAM_SEQ_EXTENSION = "sluicestreamseq";

export type ExportedEvent = CloudEvent & { sluicestreamseq: number };

/** The lines of one stored message (objects to JSON.stringify). */
export function exportMessage(m: AuditMessage): Array<Record<string, unknown>> {
  if (m.events) return m.events.map((ev) => ({ ...ev, [STREAM_SEQ_EXTENSION]: m.seq }));
  // a malformed message is kept, verbatim, so the copy stays complete
  return [{ [STREAM_SEQ_EXTENSION]: m.seq, sluiceraw: m.raw ?? "" }];
}

export function checkpointEvent(cp: Checkpoint): CloudEvent<Checkpoint> {
  return {
    specversion: "1.0",
    id: `${cp.stream}:${cp.firstSeq}-${cp.lastSeq}`,
    source: `${CONTROL_PLANE_SOURCE}/sealer`,
    type: CHECKPOINT_EVENT_TYPE,
    subject: cp.stream,
    time: cp.at,
    datacontenttype: "application/json",
    data: cp,
  };
}

export interface ParsedCopy {
  messages: AuditMessage[];
  checkpoints: Checkpoint[];
  /** lines that claim to be checkpoints but are not (1-based line numbers) */
  badCheckpointLines: number[];
}

/**
 * Parses a JSON-lines copy back into messages. A line that is not JSON, or an event without a
 * stream sequence, becomes a malformed message of its own at the next position (verify reports it).
 */
export function parseAuditJsonl(text: string): ParsedCopy {
  const messages: AuditMessage[] = [];
  const checkpoints: Checkpoint[] = [];
  const badCheckpointLines: number[] = [];
  let lastSeq = 0;
  let open: AuditMessage | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    } catch {
      open = undefined;
      messages.push({ seq: ++lastSeq, subject: "", raw: line });
      continue;
    }
    if (v.type === CHECKPOINT_EVENT_TYPE) {
      open = undefined;
      try {
        checkpoints.push(parseCheckpoint(JSON.stringify(v.data)));
      } catch {
        badCheckpointLines.push(i + 1);
      }
      continue;
    }
    const seq = v[STREAM_SEQ_EXTENSION];
    const { [STREAM_SEQ_EXTENSION]: _s, ...rest } = v;
    if (!Number.isInteger(seq)) {
      open = undefined;
      messages.push({ seq: ++lastSeq, subject: "", raw: line });
      continue;
    }
    const streamSeq = seq as number;
    if (typeof rest.sluiceraw === "string" && rest.specversion === undefined) {
      open = undefined;
      messages.push({ seq: streamSeq, subject: "", raw: rest.sluiceraw });
    } else if (isCloudEvent(rest)) {
      if (open && open.seq === streamSeq && open.events) open.events.push(rest);
      else {
        open = { seq: streamSeq, subject: "", events: [rest] };
        messages.push(open);
      }
    } else {
      open = undefined;
      messages.push({ seq: streamSeq, subject: "", raw: line });
    }
    lastSeq = streamSeq;
  }
  return { messages, checkpoints, badCheckpointLines };
}

import { CONTROL_PLANE_SOURCE, eventType, type CloudEvent } from "@sluice/shared/events";
import { parseCheckpoint, type Checkpoint } from "../sealer/checkpoint.js";
import type { AuditRecord } from "./audit-record.js";

/**
 * The JSON-lines copy of the audit stream (`sluice audit export --format cloudevents`), which
 * `sluice audit verify --file` checks offline:
 *  - each audit event exactly as stored, plus the extension `sluicestreamseq` (its stream sequence; a
 *    transport annotation, removed again before any hash is computed);
 *  - after the event that ends a checkpoint's range, the checkpoint as a CloudEvent of type
 *    `dev.sluice.audit.checkpoint.v1` whose data is the signed checkpoint.
 */
export const CHECKPOINT_EVENT_TYPE = eventType("audit.checkpoint");
export const STREAM_SEQ_EXTENSION = "sluicestreamseq";

export type ExportedEvent = CloudEvent & { sluicestreamseq: number };

export function exportEvent(r: AuditRecord): Record<string, unknown> {
  if (r.event) return { ...r.event, [STREAM_SEQ_EXTENSION]: r.seq };
  // a malformed message is kept, verbatim, so the copy stays complete
  return { [STREAM_SEQ_EXTENSION]: r.seq, sluiceraw: r.raw ?? "" };
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
  records: AuditRecord[];
  checkpoints: Checkpoint[];
  /** lines that claim to be checkpoints but are not (1-based line numbers) */
  badCheckpointLines: number[];
}

/** Parses a JSON-lines copy. A line that is not JSON becomes a malformed record at the next position. */
export function parseAuditJsonl(text: string): ParsedCopy {
  const records: AuditRecord[] = [];
  const checkpoints: Checkpoint[] = [];
  const badCheckpointLines: number[] = [];
  let lastSeq = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(line) as Record<string, unknown>;
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    } catch {
      records.push({ seq: ++lastSeq, subject: "", raw: line });
      continue;
    }
    if (v.type === CHECKPOINT_EVENT_TYPE) {
      try {
        checkpoints.push(parseCheckpoint(JSON.stringify(v.data)));
      } catch {
        badCheckpointLines.push(i + 1);
      }
      continue;
    }
    const seq = v[STREAM_SEQ_EXTENSION];
    const { [STREAM_SEQ_EXTENSION]: _s, ...rest } = v;
    const streamSeq = Number.isInteger(seq) ? (seq as number) : lastSeq + 1;
    lastSeq = streamSeq;
    if (typeof rest.sluiceraw === "string" && rest.specversion === undefined) {
      records.push({ seq: streamSeq, subject: "", raw: rest.sluiceraw });
    } else if (rest.specversion === "1.0" && typeof rest.id === "string" && typeof rest.type === "string") {
      records.push({ seq: streamSeq, subject: String(rest.subject ?? ""), event: rest as unknown as CloudEvent });
    } else {
      records.push({ seq: streamSeq, subject: "", raw: line });
    }
  }
  return { records, checkpoints, badCheckpointLines };
}

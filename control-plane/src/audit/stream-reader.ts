import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { decodeEvent } from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import { parseCheckpoint, type Checkpoint } from "../sealer/checkpoint.js";
import { SEALED_STREAM } from "../sealer/sealer.js";
import type { AuditRecord } from "./audit-record.js";

export interface ReadOptions {
  /** first stream sequence (default 1) */
  fromSeq?: number;
  /** start at the first message stored at or after this time (ISO) */
  fromTime?: string;
  /** a subject filter inside the stream (e.g. one session) */
  filterSubject?: string;
  /** keep reading new messages until the signal aborts */
  follow?: boolean;
  signal?: AbortSignal;
}

export function toAuditRecord(m: { seq: number; subject: string; data: Uint8Array; time?: Date }): AuditRecord {
  const storedAt = m.time?.toISOString();
  try {
    return { seq: m.seq, subject: m.subject, event: decodeEvent(m.data), storedAt };
  } catch {
    return { seq: m.seq, subject: m.subject, raw: Buffer.from(m.data).toString("utf8"), storedAt };
  }
}

/**
 * Reads a stream in stream order with an ordered consumer (ephemeral, gap-free: the client library
 * recreates it at the right sequence if a message is missed). Without `follow` it stops at the messages
 * pending when it started.
 */
export async function* readStreamMessages(nc: NatsConnection, stream: string, o: ReadOptions = {}): AsyncGenerator<JsMsg> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  if (!o.follow && info.state.messages === 0) return;
  const consumer = await js.consumers.get(stream, {
    ...(o.fromTime
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: o.fromTime }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, o.fromSeq ?? 1) }),
    ...(o.filterSubject ? { filter_subjects: o.filterSubject } : {}),
  });
  if (!o.follow) {
    const ci = await consumer.info(true);
    if (ci.num_pending === 0) return;
  }
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 1024 });
  const stop = () => messages.stop();
  o.signal?.addEventListener("abort", stop, { once: true });
  try {
    if (o.signal?.aborted) return;
    for await (const m of messages) {
      yield m;
      // a busy stream never shows 0 pending: stop at what was stored when the read began
      if (!o.follow && (m.info.pending === 0 || m.seq >= info.state.last_seq)) break;
    }
  } finally {
    o.signal?.removeEventListener("abort", stop);
    messages.stop();
  }
}

/** The audit stream as records (stream seq, subject, parsed event or the raw text of a malformed one). */
export async function* readAuditRecords(nc: NatsConnection, names: NatsNames, o: ReadOptions = {}): AsyncGenerator<AuditRecord> {
  for await (const m of readStreamMessages(nc, names.auditStream, o)) yield toAuditRecord(m);
}

/** Every checkpoint of the audit stream, in order. */
export async function readCheckpoints(nc: NatsConnection, names: NatsNames, o: { signal?: AbortSignal } = {}): Promise<Checkpoint[]> {
  const out: Checkpoint[] = [];
  for await (const m of readStreamMessages(nc, names.checkpointStream, { filterSubject: names.checkpointSubject(SEALED_STREAM), signal: o.signal })) {
    out.push(parseCheckpoint(m.data));
  }
  return out;
}

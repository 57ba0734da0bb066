import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { decodeBatch } from "@sluice/shared/events";
import type { NatsNames } from "@sluice/shared/nats";
import { parseCheckpoint, type Checkpoint } from "../sealer/checkpoint.js";
import { SEALED_STREAM } from "../sealer/sealer.js";
import type { AuditMessage } from "./audit-record.js";

export interface ReadOptions {
  /** first stream sequence (default 1) */
  fromSeq?: number;
  /** start at the first message stored at or after this time (ISO) */
  fromTime?: string;
  /** a subject filter inside the stream (e.g. one session) */
  filterSubject?: string;
  /** keep reading new messages until the signal aborts */
  follow?: boolean;
  /** without follow: stop after this stream sequence (default: the last one stored when the read began) */
  toSeq?: number;
  signal?: AbortSignal;
}

/** A stored audit message as its events (a CloudEvents batch), or its text when it is not one. */
export function toAuditMessage(m: { seq: number; subject: string; data: Uint8Array; time?: Date }): AuditMessage {
  const storedAt = m.time?.toISOString();
  try {
    return { seq: m.seq, subject: m.subject, events: decodeBatch(m.data), storedAt };
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
  const last = o.follow ? Infinity : Math.min(info.state.last_seq, o.toSeq || Infinity);
  if (last < Math.max(1, o.fromSeq ?? 1) && !o.fromTime) return;
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
      if (m.seq > last) break;
      yield m;
      // a busy stream never shows 0 pending: stop at what was stored when the read began
      if (!o.follow && (m.info.pending === 0 || m.seq >= last)) break;
    }
  } finally {
    o.signal?.removeEventListener("abort", stop);
    messages.stop();
  }
}

/** The audit stream as messages (stream seq, subject, the batch's events or the raw text of a malformed one). */
export async function* readAuditMessages(nc: NatsConnection, names: NatsNames, o: ReadOptions = {}): AsyncGenerator<AuditMessage> {
  for await (const m of readStreamMessages(nc, names.auditStream, o)) yield toAuditMessage(m);
}

/** Every checkpoint of the audit stream, in order. */
export async function readCheckpoints(nc: NatsConnection, names: NatsNames, o: { signal?: AbortSignal } = {}): Promise<Checkpoint[]> {
  const out: Checkpoint[] = [];
  for await (const m of readStreamMessages(nc, names.checkpointStream, { filterSubject: names.checkpointSubject(SEALED_STREAM), signal: o.signal })) {
    out.push(parseCheckpoint(m.data));
  }
  return out;
}

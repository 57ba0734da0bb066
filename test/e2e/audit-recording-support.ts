/**
 * Test support for the audit-recording e2e tests: read back what landed on an audit stream, in
 * stream order, and group it by session.
 */
import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, type CloudEvent } from "@sluice/shared/events";

export const randomPrefix = (): string => `t${randomBytes(5).toString("hex")}`;

export interface StoredEvent {
  streamSeq: number;
  subject: string;
  raw: string;
  ev: CloudEvent;
}

/** Every message of the stream (optionally one subject), in stream order. */
export async function readStream(nc: NatsConnection, stream: string, subject?: string): Promise<StoredEvent[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream, subject ? { subjects_filter: subject } : undefined);
  const total = subject ? Number((info.state.subjects as Record<string, number> | undefined)?.[subject] ?? 0) : info.state.messages;
  const out: StoredEvent[] = [];
  if (total === 0) return out;
  const js = jetstream(nc);
  const c = await js.consumers.get(stream, subject ? { filter_subjects: subject } : {});
  const it = await c.consume({ max_messages: 1000 });
  for await (const m of it) {
    const raw = m.string();
    out.push({ streamSeq: m.seq, subject: m.subject, raw, ev: decodeEvent(m.data) });
    if (out.length >= total) break;
  }
  await it.close();
  await c.delete().catch(() => false);
  return out;
}

/** Groups stored events by session (subject of the event), keeping stream order. */
export function bySession(events: readonly StoredEvent[]): Map<string, CloudEvent[]> {
  const m = new Map<string, CloudEvent[]>();
  for (const s of events) {
    const list = m.get(s.ev.subject) ?? [];
    list.push(s.ev);
    m.set(s.ev.subject, list);
  }
  return m;
}

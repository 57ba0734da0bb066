/**
 * Test support for the audit-recording e2e tests: an audit stream under a private prefix on the
 * machine's NATS, or on a private nats-server that a test can stop and start again; a publisher on
 * it; and what landed on the stream read back in stream order (each batch's events, with the
 * message they came in) and grouped by session.
 */
import type { TestContext } from "node:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeBatch, type CloudEvent } from "@sluice/shared/events";
import { deleteAll, ensureAuditStream, natsNames, type NatsNames } from "@sluice/shared/nats";
import { startNatsServer } from "../../bin/lib/dev-nats-server.js";
import { AuditPublisher, type AuditDurability } from "../../data-plane/src/recorder/index.js";

const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

export const randomPrefix = (): string => `t${randomBytes(5).toString("hex")}`;

export interface StoredEvent {
  /** the stream sequence of the message (batch) the event came in */
  streamSeq: number;
  /** the lane subject */
  subject: string;
  /** the whole message's text */
  raw: string;
  ev: CloudEvent;
}

/** Every event of the stream (optionally of one lane subject), in stream order. */
export async function readStream(nc: NatsConnection, stream: string, subject?: string): Promise<StoredEvent[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream, subject ? { subjects_filter: subject } : undefined);
  const total = subject ? Number((info.state.subjects as Record<string, number> | undefined)?.[subject] ?? 0) : info.state.messages;
  const out: StoredEvent[] = [];
  if (total === 0) return out;
  const js = jetstream(nc);
  const c = await js.consumers.get(stream, subject ? { filter_subjects: subject } : {});
  const it = await c.consume({ max_messages: 1000 });
  let read = 0;
  for await (const m of it) {
    const raw = m.string();
    for (const ev of decodeBatch(m.data)) out.push({ streamSeq: m.seq, subject: m.subject, raw, ev });
    if (++read >= total) break;
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

/** A memory audit stream under a fresh prefix on the machine's NATS; deleted after the test. */
export async function sharedAuditStream(t: TestContext): Promise<{ nc: NatsConnection; names: NatsNames }> {
  const nc = await connect({ servers: NATS_URL, maxReconnectAttempts: -1 });
  const names = natsNames(randomPrefix());
  await ensureAuditStream(nc, names, { storage: "memory" });
  t.after(async () => {
    await deleteAll(nc, names);
    await nc.close();
  });
  return { nc, names };
}

/**
 * A private nats-server with a file-stored audit stream (it survives a restart), and a connection
 * that reconnects forever: `stop()` and `restart()` (same port, same store) make an outage.
 */
export async function restartableAuditStream(t: TestContext, prefix: string): Promise<{ nc: NatsConnection; names: NatsNames; stop(): Promise<void>; restart(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
  let server = await startNatsServer({ storeDir: dir });
  const port = server.port;
  t.after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.after(() => nc.close());
  const names = natsNames(prefix);
  await ensureAuditStream(nc, names);
  return {
    nc,
    names,
    stop: () => server.stop(),
    async restart() {
      server = await startNatsServer({ storeDir: dir, port });
    },
  };
}

export interface RecorderExtra {
  bufferEvents?: number;
  publishTimeoutMs?: number;
  ackWaitMs?: number;
  /** the node the lanes belong to (default region "test", node "node-1") */
  region?: string;
  node?: string;
}

/** An AuditPublisher on `nc`, closed after the test. */
export function recorderOn(t: TestContext, nc: NatsConnection, names: NatsNames, durability: AuditDurability, extra: RecorderExtra = {}): AuditPublisher {
  const publisher = new AuditPublisher(nc, {
    durability, names, region: extra.region ?? "test", node: extra.node ?? "node-1", bufferEvents: extra.bufferEvents ?? 10_000,
    publishTimeoutMs: extra.publishTimeoutMs, ackWaitMs: extra.ackWaitMs, retryMaxMs: 300,
  });
  t.after(() => publisher.close(5000).catch(() => undefined));
  return publisher;
}

/**
 * Test support for the audit pieces: a private NATS prefix with the contract's streams, and hash-chained
 * session events published to it. Not part of the public entry.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { HashChain, encodeEvent, eventType, makeEvent, dataPlaneSource, type CloudEvent } from "@sluice/shared/events";
import { natsNames, ensureAll, deleteAll, type NatsNames, type JetStreamResources } from "@sluice/shared/nats";

export const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "127.0.0.1:4222";

export interface NatsFixture extends JetStreamResources {
  nc: NatsConnection;
  names: NatsNames;
}

/** Own prefix, memory streams, short lease TTL; everything deleted after the test. */
export async function natsFixture(t: TestContext, o: { leaseTtlMs?: number } = {}): Promise<NatsFixture> {
  const prefix = "t" + randomBytes(5).toString("hex");
  const nc = await connect({ servers: NATS_URL, name: `test-${prefix}` });
  t.after(async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  const res = await ensureAll(nc, prefix, { storage: "memory", leaseTtlMs: o.leaseTtlMs ?? 1500 });
  return { nc, ...res };
}

/** A session's events, linked into its hash chain, as a data plane would publish them. */
export class SessionWriter {
  readonly chain = new HashChain();
  constructor(
    readonly sessionId: string,
    readonly region = "local",
    readonly node = "node-1",
    private clockMs = Date.parse("2026-01-01T00:00:00Z"),
  ) {}
  event<D>(name: string, data: D, policyRev?: number): CloudEvent<D> {
    this.clockMs += 7;
    return this.chain.link(
      makeEvent({ source: dataPlaneSource(this.region, this.node), type: eventType(name), subject: this.sessionId, data, time: new Date(this.clockMs), policyRev }),
    );
  }
  subject(names: NatsNames): string {
    return names.auditSubject(this.region, this.node, this.sessionId);
  }
}

export async function publishEvents(nc: NatsConnection, names: NatsNames, evs: Array<{ w: SessionWriter; ev: CloudEvent }>): Promise<void> {
  const js = jetstream(nc);
  for (const { w, ev } of evs) await js.publish(w.subject(names), encodeEvent(ev), { msgID: ev.id });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The live consumer (shared/src/nats/live-consumer.ts) on a real 3-node JetStream cluster: SIGKILL
 * of the NATS server holding it, both when the reader's own connection is on that server (it moves to
 * another one; the CI failure of issue 16's fleet test: the client library cancelled its heartbeat
 * check on the disconnect and never restarted it while the consumer's server was down) and when the
 * connection stays on a live server (the consumer just stops delivering). Every message stored
 * before and after the kill is handled exactly once, in stream order, and a bounded read finishes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { readToEnd, startLiveConsumer, type LiveConsumer } from "@sluice/shared/nats";
import { startNatsCluster, type NatsCluster } from "../lib/nats-cluster.js";

/** a loaded 2-core machine: waits, not performance claims */
const WAIT_MS = 60_000;

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = WAIT_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ""}`);
}

/** publishes one message, again and again while the cluster fails over */
async function publish(nc: NatsConnection, subject: string, body: string): Promise<number> {
  const js = jetstream(nc);
  return until(`publish ${body}`, async () => (await js.publish(subject, body, { msgID: `${subject}:${body}` })).seq);
}

const silentLog = { warn: () => undefined, error: () => undefined };

for (const where of ["on the server the reader is connected to", "on another server than the reader's"] as const) {
  test(`a live consumer whose NATS server is killed ${where}: every message is handled once, in order`, { timeout: 240_000 }, async (t) => {
    const nats: NatsCluster = await startNatsCluster(t, { clusters: [{ name: "eu" }] });
    await nats.waitForJetStream("eu");
    const id = Math.random().toString(36).slice(2, 8);
    const stream = `LIVE_${id}`;
    const subject = `live.${id}.events`;
    const pub = await connect({ servers: nats.urls().split(",") });
    t.after(() => pub.close());
    const jsm = await jetstreamManager(pub);
    await jsm.streams.add({ name: stream, subjects: [`live.${id}.>`], num_replicas: 3 });
    for (let i = 1; i <= 20; i++) await publish(pub, subject, `m${i}`);

    // place consumers until one sits where this case wants it (R1 consumers go to any stream peer)
    const handled: string[] = [];
    let reader: NatsConnection | undefined;
    let live: LiveConsumer | undefined;
    let holder = "";
    for (let attempt = 0; attempt < 30 && !live; attempt++) {
      const server = nats.servers[attempt % nats.servers.length]!;
      const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      handled.length = 0;
      const lc = await startLiveConsumer({ nc, stream, filter: subject, what: "test", logger: silentLog, heartbeatMs: 500, onMessage: (m) => void handled.push(m.string()) });
      await until("the first 20 messages", () => (handled.length >= 20 ? true : undefined));
      const info = await jsm.consumers.info(stream, lc.name()!);
      holder = info.cluster?.leader ?? "";
      const same = holder === nc.info?.server_name;
      if (same === (where === "on the server the reader is connected to")) {
        reader = nc;
        live = lc;
      } else {
        await lc.stop();
        await nc.close();
      }
    }
    assert.ok(live && reader, "a consumer placed as this case needs");
    t.after(() => reader!.close());
    t.after(() => live!.stop());
    assert.deepEqual(handled, Array.from({ length: 20 }, (_, i) => `m${i + 1}`));

    await nats.server(holder).kill();
    for (let i = 21; i <= 40; i++) await publish(pub, subject, `m${i}`);
    await until("every message after the kill", () => (handled.length >= 40 ? true : undefined)).catch((e: Error) => {
      throw new Error(`${e.message}: ${handled.length} handled, consumer ${live!.name()} (${live!.lastError() ?? "no error"})`);
    });
    // exactly once, in order: a replacement resumes after the last message handled
    assert.deepEqual(handled, Array.from({ length: 40 }, (_, i) => `m${i + 1}`));
    assert.ok(live.replaced() >= 1, "the silent consumer was replaced");
    assert.notEqual((await jsm.consumers.info(stream, live.name()!)).cluster?.leader, holder);

    // a bounded read to a known end works with the server still down
    const read: string[] = [];
    // (placing its consumer can meet the cluster still electing after the kill: unavailable says retry, so retry)
    const untilSeq = (await jsm.streams.info(stream)).state.last_seq;
    for (let attempt = 1; ; attempt++) {
      read.length = 0;
      try {
        await readToEnd({ nc: reader, stream, filter: subject, untilSeq, what: "the test stream", onMessage: (m) => void read.push(m.string()) });
        break;
      } catch (e) {
        if (attempt >= 10 || (e as { code?: string }).code !== "unavailable") throw e;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    assert.deepEqual(read, handled);

    await nats.server(holder).start();
    await live.stop();
  });
}

/**
 * What one audit message costs nats-server when messages come at the pace of `ack` group commit
 * (issue 12: scenario 1 measured ~170 µs of nats-server CPU per message at a few hundred messages a
 * second, against ~100 µs when they come back to back). Starts a private nats-server (file storage,
 * as the contract asks) on a free port with its own store, and sends batch-sized messages (default
 * 13 KB, what a batch of 8 pgbench statements weighs) at a fixed rate, one in flight as a lane does,
 * in variants that take one piece away at a time: the headers the lanes send, the PubAck, JetStream
 * itself, file storage. Reports nats-server CPU µs per message (from /proc, its pid only) and the
 * load average, which inflates every figure on a shared machine (read the variants against each
 * other, measured in turns, not against another run).
 *
 * Not a test: `node --import tsx test/bench/nats-paced.bench.ts [--rate 250] [--seconds 5] [--bytes 13000] [--rounds 2]`.
 * Prints one JSON object.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect, createInbox, headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { ensureAuditStream, natsNames } from "@sluice/shared/nats";
import { startNatsServer } from "../../bin/lib/dev-nats-server.js";
import { cpuSeconds, descendantsNamed } from "./lib/cpu.js";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "250" },
    seconds: { type: "string", default: "5" },
    bytes: { type: "string", default: "13000" },
    rounds: { type: "string", default: "2" },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const size = Number(values.bytes);
const rounds = Number(values.rounds);

const dir = mkdtempSync(join(tmpdir(), "sluice-nats-paced-"));
const server = await startNatsServer({ storeDir: dir, timeoutMs: 30_000 });
const [pid] = descendantsNamed(server.child.pid!, "nats-server");
if (!pid) throw new Error("no nats-server process under the guard");
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);

const file = natsNames("pacedfile");
await ensureAuditStream(nc, file);
const mem = natsNames("pacedmem");
await ensureAuditStream(nc, mem);
await jsm.streams.update(mem.auditStream, { storage: StorageType.Memory } as never).catch(async () => {
  // storage cannot change on an existing stream: make it memory from the start
  await jsm.streams.delete(mem.auditStream);
  await jsm.streams.add({ name: mem.auditStream, subjects: [mem.auditAll], storage: StorageType.Memory, duplicate_window: 120e9, allow_direct: true });
});

const payload = new Uint8Array(size).fill(0x61);
const inbox = createInbox();
let answered: (() => void) | undefined;
const sub = nc.subscribe(`${inbox}.*`, { callback: () => answered?.() });

type Variant = { subject: string; ack: boolean; headers: boolean };
const variants: Record<string, Variant> = {
  // what an ack lane sends: Nats-Msg-Id (de-duplication) and Content-Type, PubAck to a shared inbox
  "jetstream file, PubAck, msg id + content type (as the lanes)": { subject: file.auditSubject("b", "n", "lane-a"), ack: true, headers: true },
  "jetstream file, PubAck, no headers": { subject: file.auditSubject("b", "n", "lane-b"), ack: true, headers: false },
  "jetstream file, no PubAck (no reply subject)": { subject: file.auditSubject("b", "n", "lane-c"), ack: false, headers: true },
  "jetstream memory, PubAck, msg id + content type": { subject: mem.auditSubject("b", "n", "lane-a"), ack: true, headers: true },
  // core NATS only: a subject no stream and no one listens on
  "core nats, nobody listening": { subject: "paced.nowhere", ack: false, headers: false },
};

let n = 0;
function hdrs(): MsgHdrs {
  const h = natsHeaders();
  h.set("Nats-Msg-Id", `paced:${++n}`);
  h.set("Content-Type", "application/cloudevents-batch+json");
  return h;
}

async function run(v: Variant): Promise<{ natsUsPerMsg: number; load1: number; msgs: number }> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const load1 = loadavg()[0]!;
  const c0 = cpuSeconds(pid!);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const opts = { ...(v.headers ? { headers: hdrs() } : {}), ...(v.ack ? { reply: `${inbox}.${i}` } : {}) };
    if (v.ack) {
      const acked = new Promise<void>((r) => (answered = r));
      nc.publish(v.subject, payload, opts);
      await acked;
    } else {
      nc.publish(v.subject, payload, opts);
    }
    const wait = t0 + (i + 1) * interval - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await nc.flush();
  // the file store writes behind (a flush a few ms later): let it finish inside the window
  await new Promise((r) => setTimeout(r, 50));
  return { natsUsPerMsg: ((cpuSeconds(pid!) - c0) * 1e6) / total, load1, msgs: total };
}

const results: Record<string, Array<{ natsUsPerMsg: number; load1: number }>> = {};
try {
  // in turns, so a change of load hits every variant alike
  for (let r = 0; r < rounds; r++) {
    for (const [name, v] of Object.entries(variants)) {
      const x = await run(v);
      (results[name] ??= []).push({ natsUsPerMsg: Math.round(x.natsUsPerMsg), load1: Math.round(x.load1 * 10) / 10 });
    }
  }
  process.stdout.write(JSON.stringify({ rate, seconds, bytes: size, results }) + "\n");
} finally {
  sub.unsubscribe();
  await nc.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}

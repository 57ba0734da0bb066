/**
 * What storing audit events costs nats-server (issue 7: where the time goes; issue 12: batches).
 * Starts a private nats-server with JetStream (file storage, as the contract asks) on a free port,
 * creates the audit stream as sluice does, and records pgbench-sized statement.allowed events
 * (~700 bytes) of 8 concurrent sessions through the real AuditPublisher in `async` and `ack` style
 * (batches on one lane); then, for reference, the same bytes one event per plain publish without a
 * PubAck. Reports CPU µs per event of nats-server and of this process (from /proc), and events per
 * message. Not a test: `node --import tsx test/bench/nats-cost.bench.ts [--events N]`. Prints one
 * JSON object.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { ensureAuditStream, natsNames } from "@sluice/shared/nats";
import { AuditPublisher, SessionRecorder } from "@sluice/data-plane";
import { freePort, waitForPort } from "../lib/free-port.js";
import { cpuSeconds } from "./lib/cpu.js";

const { values } = parseArgs({ options: { events: { type: "string", default: "30000" } } });
const total = Math.max(1000, Number(values.events));

const dir = mkdtempSync(join(tmpdir(), "sluice-nats-cost-"));
const port = await freePort();
const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore" });
// wait until the server listens: a refused nats.js connect surfaces as an unhandled rejection
await waitForPort(port, 10_000);
const nc = await connect({ servers: `nats://127.0.0.1:${port}` });

const results: Record<string, { natsUsPerEvent: number; clientUsPerEvent: number; eventsPerSec: number; eventsPerMessage?: number }> = {};
async function measure(name: string, run: () => Promise<void>, messages?: () => number): Promise<void> {
  const s0 = cpuSeconds(server.pid!);
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await run();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  results[name] = {
    natsUsPerEvent: ((cpuSeconds(server.pid!) - s0) * 1e6) / total,
    clientUsPerEvent: (c.user + c.system) / total,
    eventsPerSec: total / secs,
    ...(messages ? { eventsPerMessage: total / messages() } : {}),
  };
}

const part = { kind: "SelectStmt", class: "read" as const, tables: { read: ["public.pgbench_accounts"], write: [] }, functions: [], risks: [] };
const payload = (id: number) => ({
  statementId: id, sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", params: [String(id * 7919 % 1_000_000)], protocol: "extended" as const,
  class: "read" as const, tables: part.tables, risks: [], statements: [part], decision: "allow" as const, rule: "bench-read/allow:read", policy: "bench-read",
});

try {
  for (const durability of ["async", "ack"] as const) {
    const names = natsNames(`cost${durability}`);
    await ensureAuditStream(nc, names);
    const publisher = new AuditPublisher(nc, { durability, bufferEvents: 100_000, names, region: "bench", node: "n1" });
    const recs = Array.from({ length: 8 }, (_, i) => new SessionRecorder(publisher, { sessionId: `s${i}`, region: "bench", node: "n1" }));
    const run = async (n: number) => {
      if (durability === "async") {
        for (let i = 0; i < n; i++) recs[i % 8]!.record("statement.allowed", payload(i));
        await publisher.flush(120_000);
      } else {
        // 8 sessions, each waiting for its statement's ack before the next (what a client sees)
        await Promise.all(recs.map(async (r, k) => {
          for (let i = k; i < n; i += 8) await r.record("statement.allowed", payload(i));
        }));
      }
    };
    await run(Math.min(total, 5000)); // warm-up: JIT
    const before = publisher.stats.messages;
    await measure(durability, () => run(total), () => publisher.stats.messages - before);
    await publisher.close();
  }
  // reference: the same bytes, no Msg-Id and no PubAck (what JetStream storage alone costs)
  const names = natsNames("costraw");
  await ensureAuditStream(nc, names);
  const bytes = new TextEncoder().encode(JSON.stringify({ ...payload(1), pad: "x".repeat(300) }));
  await measure("plain-no-ack", async () => {
    for (let i = 0; i < total; i++) nc.publish(names.auditSubject("bench", "n1", `raw-${i % 8}`), bytes);
    await nc.flush();
    // wait until the stream holds them all
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(nc);
    while ((await jsm.streams.info(names.auditStream)).state.messages < total) await new Promise((r) => setTimeout(r, 20));
  });
  process.stdout.write(JSON.stringify({ events: total, results }) + "\n");
} finally {
  await nc.close();
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  rmSync(dir, { recursive: true, force: true });
}

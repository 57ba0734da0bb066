/**
 * Starts one sluice data-plane node as a child process for the benchmark (see sluice-bench-node.ts),
 * so its CPU and RSS are its own and measurable, in front of the bench's Postgres with a policy that
 * is decided on every statement and, when `masked`, two masked columns of pgbench_accounts.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import type { Target } from "./clients.js";

const here = dirname(fileURLToPath(import.meta.url));

export interface SluiceNode {
  pid: number;
  /** its NATS prefix (its streams and buckets) and its HTTP port (/metrics) */
  prefix: string;
  natsUrl: string;
  httpPort: number;
  target(name: string): Target;
  /** the node's /metrics as name → value */
  metrics(): Promise<Record<string, number>>;
  /** SIGTERM (a clean stop deletes the prefix's streams), SIGKILL after 15 s */
  stop(): Promise<void>;
}

export interface SluiceNodeOptions {
  name: string;
  upstreamPort: number;
  database: string;
  cert: { certFile: string; keyFile: string };
  durability: "ack" | "async";
  masked: boolean;
  /** default a fresh bench prefix */
  prefix?: string;
  /** the NATS server (default SLUICE_NATS_URL, else 127.0.0.1:4222); the bench gives its private one */
  natsUrl?: string;
  /** dataPlane.audit.bufferEvents (default the config's): the audit crash test makes its bound tight */
  bufferEvents?: number;
  /** dataPlane.upstreamPool.reuse (default the config's: on) */
  reuse?: boolean;
}

export async function startSluiceNode(o: SluiceNodeOptions): Promise<SluiceNode> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-node-"));
  const readyFile = join(dir, "ready.json");
  const prefix = o.prefix ?? `bench${randomBytes(4).toString("hex")}`;
  const natsUrl = o.natsUrl ?? process.env.SLUICE_NATS_URL ?? "nats://127.0.0.1:4222";
  let stderr = "";
  // SLUICE_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the node (issue 7: profile the hot path)
  const extra = (process.env.SLUICE_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...extra, "--import", "tsx", join(here, "sluice-bench-node.ts")], {
    env: { ...process.env, SLUICE_BENCH_NODE: JSON.stringify({ ...o, prefix, readyFile, natsUrl }) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const until = Date.now() + 60_000;
  while (!existsSync(readyFile)) {
    if (child.exitCode !== null) throw new Error(`sluice node exited (${child.exitCode}): ${stderr.trim().split("\n").slice(-2).join(" | ")}`);
    if (Date.now() > until) {
      child.kill("SIGKILL");
      throw new Error("sluice node did not become ready within 60 s");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 50));
  const { port, token, httpPort } = JSON.parse(readFileSync(readyFile, "utf8")) as { port: number; token: string; httpPort: number };
  return {
    pid: child.pid!,
    prefix,
    natsUrl,
    httpPort,
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const line of text.split("\n")) {
        const m = /^([a-z_]+)(\{[^}]*\})? ([\d.eE+-]+)$/.exec(line.trim());
        if (!m) continue;
        // by name (the last series of a labelled metric) and by name with its labels
        out[m[1]!] = Number(m[3]);
        if (m[2]) out[`${m[1]}${m[2]}`] = Number(m[3]);
      }
      return out;
    },
    target: (name) => ({
      name,
      pid: () => child.pid,
      env: { PGHOST: "127.0.0.1", PGPORT: String(port), PGUSER: "bench-pipeline", PGDATABASE: o.database, PGPASSWORD: token, PGSSLMODE: "require" },
    }),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

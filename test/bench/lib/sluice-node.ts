/**
 * Starts one sluice data-plane node as a child process for the benchmark, so its CPU and RSS are its
 * own and measurable: the real `sluice data-plane --config FILE` (bin/sluice.js, which runs the
 * compiled dist/ when it is current — `npm run bench` builds first — as an install does; the sources
 * through tsx otherwise), in front of the bench's Postgres with a policy that is decided on every
 * statement and, when `masked`, two masked columns of pgbench_accounts. Its policy snapshot is
 * written straight into the KV bucket under a private NATS prefix, as the control plane's projection
 * would, with a bench-only dev issuer whose token the targets use; stop() deletes the prefix.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash, randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { canonicalJson } from "@sluice/shared/events";
import { deleteAll, ensureSnapshotBucket, natsNames } from "@sluice/shared/nats";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import { freePort } from "../../lib/free-port.js";
import type { Target } from "./clients.js";

const sluiceBin = fileURLToPath(new URL("../../../bin/sluice.js", import.meta.url));

export interface SluiceNode {
  pid: number;
  /** its NATS prefix (its streams and buckets) and its HTTP port (/metrics) */
  prefix: string;
  natsUrl: string;
  httpPort: number;
  target(name: string): Target;
  /** the node's /metrics as name → value */
  metrics(): Promise<Record<string, number>>;
  /** SIGTERM, SIGKILL after 15 s; then the prefix's streams and buckets are deleted */
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

/** The bench's bundle: every statement decided (read, utility), masking when asked. */
function benchBundle(o: SluiceNodeOptions, issuer: Bundle["issuers"][number]): Bundle {
  return {
    issuers: [issuer],
    groups: ["bench"],
    resources: [{ name: o.database, upstream: { host: "127.0.0.1", port: o.upstreamPort, database: o.database, user: "postgres", auth: "trust", tls: "disable" } }],
    policies: [{ name: "bench-read", groups: ["bench"], resources: [o.database], allow: ["read", "utility"] }],
    masking: o.masked
      ? [{ name: "bench-mask", resources: [o.database], columns: ["pgbench_accounts.filler", "pgbench_accounts.abalance"], strategy: "partial" }]
      : [],
  };
}

export async function startSluiceNode(o: SluiceNodeOptions): Promise<SluiceNode> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-node-"));
  const prefix = o.prefix ?? `bench${randomBytes(4).toString("hex")}`;
  const natsUrl = o.natsUrl ?? process.env.SLUICE_NATS_URL ?? "nats://127.0.0.1:4222";
  const dev = await createDevIssuer({ issuer: "http://127.0.0.1/sluice-bench", audience: "sluice" });
  const token = await dev.mint({ sub: "bench-pipeline", groups: ["bench"], ttlSec: 6 * 3600 });
  const bundle = benchBundle(o, devIssuerSpec(dev));
  const snapshot: PolicySnapshot = {
    revision: 1,
    bundle,
    hash: createHash("sha256").update(canonicalJson(bundle)).digest("hex"),
    appliedBy: "bench",
    appliedAt: new Date().toISOString(),
  };
  const nc = await connect({ servers: natsUrl });
  const names = natsNames(prefix);
  await (await ensureSnapshotBucket(nc, names)).put(names.snapshotKey, JSON.stringify(snapshot));

  const [port, httpPort] = [await freePort(), await freePort()];
  const config = join(dir, "data-plane.yaml");
  writeFileSync(config, [
    "region: bench",
    `node: ${JSON.stringify(o.name)}`,
    "logLevel: warn",
    `nats: { url: ${JSON.stringify(natsUrl)}, prefix: ${JSON.stringify(prefix)} }`,
    "dataPlane:",
    `  listen: 127.0.0.1:${port}`,
    `  httpListen: 127.0.0.1:${httpPort}`,
    `  tls: { mode: required, certFile: ${JSON.stringify(o.cert.certFile)}, keyFile: ${JSON.stringify(o.cert.keyFile)} }`,
    `  audit: { durability: ${o.durability}${o.bufferEvents !== undefined ? `, bufferEvents: ${o.bufferEvents}` : ""} }`,
    ...(o.reuse !== undefined ? [`  upstreamPool: { reuse: ${o.reuse} }`] : []),
    "",
  ].join("\n"));
  // the file is the whole configuration: no SLUICE_* setting of the bench's environment overrides it
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLUICE_")));
  let stderr = "";
  // SLUICE_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the node (issue 7: profile the hot path)
  const extra = (process.env.SLUICE_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...extra, sluiceBin, "data-plane", "--config", config, "--grace", "0"], {
    env: { ...env, STATE_DIRECTORY: dir },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const cleanUp = async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  // ready: /readyz answers 200 once the node has applied the snapshot and serves sessions
  const until = Date.now() + 60_000;
  for (;;) {
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`).then((r) => (void r.text(), r.status === 200), () => false);
    if (ready) break;
    if (child.exitCode !== null || Date.now() > until) {
      const why = child.exitCode !== null ? `sluice node exited (${child.exitCode})` : "sluice node did not become ready within 60 s";
      child.kill("SIGKILL");
      await cleanUp();
      throw new Error(`${why}: ${stderr.trim().split("\n").slice(-2).join(" | ")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
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
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      }
      await cleanUp();
    },
  };
}

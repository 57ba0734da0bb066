/**
 * The load generators: pgbench (C, the same tool for every target) and psql for the large result,
 * plus a connect-latency loop with the `pg` client. Each target is described only by libpq env vars.
 */
import { spawn } from "node:child_process";
import pg from "pg";
import { readFileSync } from "node:fs";

export interface Target {
  name: string;
  /** libpq environment: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD?, PGSSLMODE */
  env: Record<string, string>;
  /** the proxy's own process, when there is one (pgbouncer, a sluice node), for its CPU per transaction */
  pid?: () => number | undefined;
}

function run(cmd: string, args: string[], env: Record<string, string>, sink?: (chunk: Buffer) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (sink ? sink(c) : (stdout += c.toString())));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

export interface PgbenchResult {
  tps: number;
  /** transactions actually processed */
  transactions: number;
  latencyMs: number;
  failed: number;
}

/** pgbench select-only for `seconds`; parses TPS (without initial connection time) and average latency. */
export async function pgbench(t: Target, o: { mode: "simple" | "extended" | "prepared"; clients: number; seconds: number; connectPerTx?: boolean }): Promise<PgbenchResult> {
  const args = ["-n", "-S", "-M", o.mode, "-c", String(o.clients), "-j", String(Math.min(o.clients, 2)), "-T", String(o.seconds)];
  if (o.connectPerTx) args.push("-C");
  const r = await run("pgbench", args, t.env);
  if (r.code !== 0) throw new Error(`pgbench against ${t.name} failed: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const tps = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(r.stdout)
    ?? /tps = ([\d.]+)/.exec(r.stdout);
  const lat = /latency average = ([\d.]+) ms/.exec(r.stdout);
  const failed = /number of failed transactions: (\d+)/.exec(r.stdout);
  const done = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  if (!tps) throw new Error(`pgbench against ${t.name} printed no TPS: ${r.stdout.trim().split("\n").slice(-2).join(" | ")}`);
  return { tps: Number(tps[1]), transactions: Number(done?.[1] ?? NaN), latencyMs: Number(lat?.[1] ?? NaN), failed: Number(failed?.[1] ?? 0) };
}

/**
 * pgbench, run once more when a run fails outright (a client aborted on a loaded machine, say): the
 * failure is reported through `note` so the results say it happened, and a second failure throws.
 */
export async function pgbenchWithRetry(t: Target, o: Parameters<typeof pgbench>[1], note: (s: string) => void): Promise<PgbenchResult> {
  try {
    return await pgbench(t, o);
  } catch (e) {
    note(`${(e as Error).message.split("\n")[0]} (ran again)`);
    return await pgbench(t, o);
  }
}

/** Runs one query through psql, discarding the output but counting its bytes; returns MB/s of result text. */
export async function bigResult(t: Target, sql: string): Promise<{ seconds: number; bytes: number; mbPerSec: number }> {
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  const r = await run("psql", ["-X", "-q", "-A", "-t", "-c", sql], t.env, (c) => (bytes += c.length));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.code !== 0) throw new Error(`psql against ${t.name} failed: ${r.stderr.trim().split("\n")[0]}`);
  return { seconds, bytes, mbPerSec: bytes / 1e6 / seconds };
}

/**
 * Sequential connect + first query latency with the pg client (TLS as the target's PGSSLMODE says).
 * `resume`: each connection offers the TLS session of the one before (a client that caches sessions;
 * libpq, and so pgbench, never does).
 */
export async function connectLatencies(t: Target, n: number, o: { resume?: boolean } = {}): Promise<number[]> {
  const out: number[] = [];
  let session: Buffer | undefined;
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const c = new pg.Client({
      host: t.env.PGHOST,
      port: Number(t.env.PGPORT),
      user: t.env.PGUSER,
      database: t.env.PGDATABASE,
      password: t.env.PGPASSWORD,
      ssl: t.env.PGSSLMODE === "require" ? { rejectUnauthorized: false, ...(session ? { session } : {}) } : false,
    });
    await c.connect();
    await c.query("SELECT 1");
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (o.resume) session = (c as unknown as { connection: { stream: { getSession?(): Buffer | undefined } } }).connection.stream.getSession?.();
    await c.end();
  }
  return out;
}

/** Opens n idle connections; returns a closer. */
export async function openIdle(t: Target, n: number, parallel = 50): Promise<() => Promise<void>> {
  const clients: pg.Client[] = [];
  let next = 0;
  async function worker() {
    while (next < n) {
      next++;
      const c = new pg.Client({
        host: t.env.PGHOST, port: Number(t.env.PGPORT), user: t.env.PGUSER, database: t.env.PGDATABASE,
        password: t.env.PGPASSWORD, ssl: t.env.PGSSLMODE === "require" ? { rejectUnauthorized: false } : false,
      });
      c.on("error", () => {});
      await c.connect();
      clients.push(c);
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker));
  return async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  };
}

/** Resident set size of a process in MB, from /proc. */
export function rssMb(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

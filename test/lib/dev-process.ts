/**
 * `sluice dev` as a child process for tests: its own state dir, context file and ephemeral ports, a
 * database of its own, and every process it started killed in t.after (also when the test fails).
 */
import type { TestContext } from "node:test";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import type { CliContext } from "../../bin/lib/cli-kit.js";

const run = promisify(execFile);
export const sluiceBin = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));

/** A fresh database on the local PostgreSQL, dropped (FORCE) after the test. */
export async function testDatabase(t: TestContext, tag = "dev"): Promise<string> {
  const db = `sluice_t_${tag}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  t.after(async () => {
    const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await c.end();
  });
  return db;
}

/** Children of a pid (e.g. the nats-server `sluice dev` started). */
export async function childrenOf(pid: number): Promise<Array<{ pid: number; cmd: string }>> {
  const { stdout } = await run("ps", ["-o", "pid=,ppid=,args=", "-e"]);
  return stdout
    .split("\n")
    .map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && Number(m[2]) === pid)
    .map((m) => ({ pid: Number(m[1]), cmd: m[3]! }));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface Dev {
  child: ChildProcess;
  /** the environment other `sluice` commands need (SLUICE_CONTEXT of this stack) */
  env: NodeJS.ProcessEnv;
  dir: string;
  out: () => string;
  err: () => string;
  ctx: () => CliContext;
  exited: Promise<number | null>;
}

/** Starts `sluice dev ARGS` (stdout a pipe: non-interactive) and waits for its ready line. */
export async function startDev(t: TestContext, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Dev> {
  const dev = spawnDev(t, args, extraEnv);
  await waitForOutput(dev, "sluice dev ready", 60_000);
  return dev;
}

/**
 * Spawns `sluice dev ARGS` without waiting for anything (a start that is meant to fail). Its own
 * context file; its state under its own directory unless ARGS name a `--state-dir`; ports 0 unless named.
 */
export function spawnDev(t: TestContext, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Dev {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(dir, "context.json"), SLUICE_LOG_LEVEL: "warn", SLUICE_NATS_URL: "", ...extraEnv };
  delete env.SLUICE_TOKEN;
  delete env.SLUICE_CONTROL_PLANE;
  const defaults: string[] = [];
  if (!args.includes("--state-dir")) defaults.push("--state-dir", join(dir, "state"));
  for (const flag of ["--port", "--http-port", "--grpc-port", "--cp-http-port"]) if (!args.includes(flag)) defaults.push(flag, "0");
  const child = spawn(process.execPath, [sluiceBin, "dev", ...defaults, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const kids = await childrenOf(child.pid!);
      child.kill("SIGKILL");
      for (const k of kids) if (alive(k.pid)) process.kill(k.pid, "SIGKILL");
    }
  });
  return { child, env, dir, out: () => out, err: () => err, ctx: () => JSON.parse(readFileSync(env.SLUICE_CONTEXT!, "utf8")) as CliContext, exited };
}

export async function waitForOutput(dev: Dev, text: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!dev.out().includes(text)) {
    if (dev.child.exitCode !== null) throw new Error(`sluice dev exited ${dev.child.exitCode}: ${dev.out()}${dev.err()}`);
    if (Date.now() > end) throw new Error(`no ${JSON.stringify(text)} in: ${dev.out()}${dev.err()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

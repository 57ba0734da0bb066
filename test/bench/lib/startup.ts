/**
 * Startup as users meet it (issue 15): the `sluice` command (bin/sluice.js, which runs the compiled
 * dist/ when it is current — the bench builds first), `sluice sessions list` against a running
 * `sluice dev` stack, and a `sluice data-plane` node from spawn to serving (listening, then ready
 * with a policy snapshot) and its idle RSS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../lib/free-port.js";
import { rssMb } from "./clients.js";

export const sluiceBin = fileURLToPath(new URL("../../../bin/sluice.js", import.meta.url));

/** clock ticks per second of /proc/<pid>/stat times (sysconf CLK_TCK: 100 on Linux) */
const TICKS = 100;

/**
 * `node ARGS` from spawn to exit, `n` times: wall milliseconds, and CPU milliseconds (user + system,
 * 10 ms resolution), which a loaded machine inflates far less than wall time. The CPU figure is read
 * from the wrapping shell's /proc stat, whose children's times hold the command's once it has
 * waited for it. A failing run throws with its stderr.
 */
export async function timeNode(args: string[], env: NodeJS.ProcessEnv, n: number): Promise<{ wallMs: number[]; cpuMs: number[] }> {
  const wallMs: number[] = [];
  const cpuMs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = await new Promise<{ code: number | null; stderr: string; stat: string }>((resolve, reject) => {
      const c = spawn("sh", ["-c", '"$@" 2>&2 >/dev/null; code=$?; cat /proc/$$/stat >&3; exit $code', "sh", process.execPath, ...args], {
        env,
        stdio: ["ignore", "ignore", "pipe", "pipe"],
      });
      let stderr = "";
      let stat = "";
      c.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      (c.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => (stat += d.toString()));
      c.on("error", reject);
      c.on("close", (code) => resolve({ code, stderr, stat }));
    });
    if (r.code !== 0) throw new Error(`node ${args.join(" ")} exited ${r.code}: ${r.stderr.trim().split("\n").slice(-1)[0]}`);
    wallMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    // fields after the command name's closing parenthesis: state is field 3, cutime and cstime 16 and 17
    const f = r.stat.slice(r.stat.lastIndexOf(")") + 2).split(" ");
    cpuMs.push(((Number(f[13]) + Number(f[14])) * 1000) / TICKS);
  }
  return { wallMs, cpuMs };
}

/** `sluice ARGS` (bin/sluice.js) timed as timeNode does */
export function timeCommand(args: string[], env: NodeJS.ProcessEnv, n: number): Promise<{ wallMs: number[]; cpuMs: number[] }> {
  return timeNode([sluiceBin, ...args], env, n);
}

async function until<T>(f: () => Promise<T | undefined>, ms: number, what: string, child: ChildProcess, err: () => string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (child.exitCode !== null) throw new Error(`${what}: the process exited ${child.exitCode}: ${err().trim().split("\n").slice(-1)[0]}`);
    if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

export interface NodeStartup {
  /** spawn → /healthz answers (the listeners are up) */
  listeningMs: number;
  /** spawn → /readyz 200 (a policy snapshot applied: it serves sessions) */
  readyMs: number;
  /** RSS a second after it was ready, no session yet */
  idleRssMb: number;
}

/** `sluice data-plane --config FILE` on NATS `natsUrl` under `prefix` (whose snapshot bucket holds a policy). */
export async function dataPlaneStartup(o: { natsUrl: string; prefix: string; cert: { certFile: string; keyFile: string } }): Promise<NodeStartup> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-startup-"));
  const [port, httpPort] = [await freePort(), await freePort()];
  const config = join(dir, "data-plane.yaml");
  writeFileSync(config, [
    "region: bench",
    "node: startup-probe",
    "logLevel: warn",
    `nats: { url: "${o.natsUrl}", prefix: "${o.prefix}" }`,
    "dataPlane:",
    `  listen: 127.0.0.1:${port}`,
    `  httpListen: 127.0.0.1:${httpPort}`,
    `  tls: { mode: required, certFile: "${o.cert.certFile}", keyFile: "${o.cert.keyFile}" }`,
    "",
  ].join("\n"));
  let stderr = "";
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [sluiceBin, "data-plane", "--config", config], {
    env: { ...process.env, STATE_DIRECTORY: dir },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const since = () => Number(process.hrtime.bigint() - t0) / 1e6;
  try {
    const get = async (path: string, ok: (status: number) => boolean) => {
      const r = await fetch(`http://127.0.0.1:${httpPort}${path}`);
      await r.text();
      return ok(r.status) ? since() : undefined;
    };
    const listeningMs = await until(() => get("/healthz", (s) => s === 200), 60_000, "the node's /healthz", child, () => stderr);
    const readyMs = await until(() => get("/readyz", (s) => s === 200), 60_000, "the node's /readyz", child, () => stderr);
    await new Promise((r) => setTimeout(r, 1000));
    return { listeningMs, readyMs, idleRssMb: rssMb(child.pid!) };
  } finally {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface DevStack {
  env: NodeJS.ProcessEnv;
  /** spawn → its `sluice dev ready` line */
  readyMs: number;
  stop(): Promise<void>;
}

/** `sluice dev` with its own NATS child, state and context, in front of `upstream`. */
export async function startDevStack(upstream: string): Promise<DevStack> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-dev-"));
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(dir, "context.json"), SLUICE_LOG_LEVEL: "warn", SLUICE_NATS_URL: "" };
  delete env.SLUICE_TOKEN;
  delete env.SLUICE_CONTROL_PLANE;
  const args = ["dev", "--upstream", upstream, "--state-dir", join(dir, "state"), "--port", "0", "--http-port", "0", "--grpc-port", "0", "--cp-http-port", "0"];
  let out = "";
  let err = "";
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [sluiceBin, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  try {
    const readyMs = await until(async () => (out.includes("sluice dev ready") ? Number(process.hrtime.bigint() - t0) / 1e6 : undefined), 120_000, "sluice dev ready", child, () => err);
    return {
      env,
      readyMs,
      async stop() {
        await stop(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

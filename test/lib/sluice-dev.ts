/**
 * `sluice dev` as a child process for end-to-end tests: its own state directory and context file,
 * free ports, its own nats-server child; killed (with that child) in `t.after`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TestContext } from "node:test";
import type { CliContext } from "../../bin/lib/cli-kit.js";
import { repoRoot } from "./run-sluice.js";

const run = promisify(execFile);

export interface SluiceDev {
  child: ChildProcess;
  /** the environment other `sluice` commands need to talk to this stack */
  env: NodeJS.ProcessEnv;
  out: () => string;
  ctx: () => CliContext;
  /** the control plane's HTTP origin (console, dev issuer) */
  httpBase: string;
  exited: Promise<number | null>;
}

/** Children of a pid (e.g. the nats-server guard `sluice dev` started). */
export async function childrenOf(pid: number): Promise<Array<{ pid: number; cmd: string }>> {
  const { stdout } = await run("ps", ["-o", "pid=,ppid=,args=", "-e"]);
  return stdout
    .split("\n")
    .map((l) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && Number(m[2]) === pid)
    .map((m) => ({ pid: Number(m[1]), cmd: m[3]! }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startSluiceDev(t: TestContext, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<SluiceDev> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-dev-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(dir, "context.json"), SLUICE_LOG_LEVEL: "warn", SLUICE_NATS_URL: "", ...extraEnv };
  delete env.SLUICE_TOKEN;
  delete env.SLUICE_CONTROL_PLANE;
  const child = spawn(process.execPath, [join(repoRoot, "bin/sluice.js"), "dev", "--state-dir", join(dir, "state"), "--port", "0", "--http-port", "0", "--grpc-port", "0", "--cp-http-port", "0", ...args], {
    cwd: repoRoot,
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
      const grandkids = (await Promise.all(kids.map((k) => childrenOf(k.pid)))).flat();
      child.kill("SIGKILL");
      for (const k of [...kids, ...grandkids]) if (alive(k.pid)) process.kill(k.pid, "SIGKILL");
    }
  });
  const end = Date.now() + 60_000;
  while (!out.includes("sluice dev ready") || !/console: (\S+)\/console\//.test(out)) {
    if (child.exitCode !== null) throw new Error(`sluice dev exited ${child.exitCode}: ${err}`);
    if (Date.now() > end) throw new Error(`sluice dev not ready in 60 s: ${out}${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const httpBase = /console: (\S+)\/console\//.exec(out)![1]!;
  return { child, env, out: () => out, ctx: () => JSON.parse(readFileSync(env.SLUICE_CONTEXT!, "utf8")) as CliContext, httpBase, exited };
}

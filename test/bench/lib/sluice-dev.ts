/**
 * `sluice dev` as a benchmark target: the whole development stack (its own nats-server, the control
 * plane with its projector and sealer, the data plane) in front of the bench's Postgres, with its
 * default settings (audit durability ack, the permissive dev bundle), so scenario 1 compares a
 * newcomer's first benchmark with a standalone node of the same durability (issue 14: through
 * `sluice dev` ≥ 0.9× a standalone node). Its CPU is the dev process's (every thread), not the
 * nats-server child's.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Target } from "./clients.js";

const sluiceBin = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bin", "sluice.js");

export interface SluiceDev {
  pid: number;
  target(name: string): Target;
  /** SIGTERM (the stack stops within its grace period plus 5 s), SIGKILL after 15 s */
  stop(): Promise<void>;
}

export async function startSluiceDev(o: { upstreamPort: number; database: string }): Promise<SluiceDev> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-dev-"));
  const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(dir, "context.json"), SLUICE_LOG_LEVEL: "warn", SLUICE_NATS_URL: "" };
  delete env.SLUICE_TOKEN;
  const ports = ["--port", "--http-port", "--grpc-port", "--cp-http-port"].flatMap((f) => [f, "0"]);
  const child = spawn(process.execPath, [sluiceBin, "dev", "--state-dir", join(dir, "state"), ...ports, "--upstream", `postgres://postgres@127.0.0.1:${o.upstreamPort}/${o.database}`], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const until = Date.now() + 90_000;
  while (!out.includes("sluice dev ready")) {
    if (child.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`sluice dev did not become ready: ${err.trim().split("\n").slice(-2).join(" | ")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const port = /data plane 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
  // a token from the stack's dev issuer, as `sluice token` prints it for a newcomer's psql
  const token = execFileSync(process.execPath, [sluiceBin, "token", "--sub", "bench", "--groups", "dev", "--ttl", "6h"], { env, encoding: "utf8" }).trim();
  return {
    pid: child.pid!,
    target: (name) => ({
      name,
      pid: () => child.pid,
      env: { PGHOST: "127.0.0.1", PGPORT: port!, PGUSER: "bench", PGDATABASE: o.database, PGPASSWORD: token, PGSSLMODE: "require" },
    }),
    stop,
  };
}

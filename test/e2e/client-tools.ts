/**
 * What the real-client tests share (issue 13): the contract's example bundle on a stack of its own,
 * the tools themselves (installed by scripts/ensure-client-tools.sh; missing in CI is a failure,
 * never a silent skip), libpq's environment for an identity, and an approver in another process.
 */
import type { TestContext } from "node:test";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { startStack, type Stack } from "./harness.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("../fixtures/clients/", import.meta.url));

/** The contract's example bundle (ci-read: [read]; deployers: [read, write, ddl], ddl held for dba); its `orders` is the test database. */
export function contractPolicy(): string {
  const raw = parseYaml(readFileSync(new URL("../fixtures/policies/valid-contract.yaml", import.meta.url), "utf8")) as Record<string, unknown>;
  return JSON.stringify({ ...raw, resources: [] });
}

export function contractStack(t: TestContext, setupSql: string): Promise<Stack> {
  return startStack(t, { policy: contractPolicy(), resource: "orders", setupSql });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to its end (never throws on a non-zero exit), with a generous deadline. */
export function run(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, timeout: o.timeoutMs ?? 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) + (err && code === 1 && !stderr ? String(err.message) : ""), ms: Date.now() - started });
    });
  });
}

export type ToolName = "psycopg" | "ruby-pg" | "php-pgsql" | "pgjdbc" | "sqitch" | "knex";

const CHECKS: Record<ToolName, () => Promise<boolean>> = {
  psycopg: async () => (await run("/usr/bin/python3", ["-c", "import psycopg"])).code === 0,
  "ruby-pg": async () => (await run("ruby", ["-e", "require 'pg'"])).code === 0,
  "php-pgsql": async () => (await run("php", ["-r", 'exit(function_exists("pg_connect") ? 0 : 1);'])).code === 0,
  pgjdbc: async () => existsSync("/usr/share/java/postgresql.jar") && (await run("java", ["-version"])).code === 0,
  sqitch: async () => (await run("sqitch", ["--version"])).code === 0 && (await run("perl", ["-MDBD::Pg", "-e", "1"])).code === 0,
  knex: async () => {
    try {
      createRequire(import.meta.url).resolve("knex");
      return true;
    } catch {
      return false;
    }
  },
};

let installing: Promise<RunResult> | undefined;
/** scripts/ensure-client-tools.sh once per test process: waits for the background install, then fills gaps. */
function ensureInstalled(): Promise<RunResult> {
  installing ??= run("bash", [`${root}scripts/ensure-client-tools.sh`], { timeoutMs: 15 * 60_000 });
  return installing;
}

/**
 * Whether `name` can run here. Missing in CI (CI=true) throws: a client test must never pass by not
 * running. Elsewhere it skips the test, saying why.
 */
export async function tool(t: TestContext, name: ToolName): Promise<boolean> {
  const install = await ensureInstalled();
  if (await CHECKS[name]()) return true;
  const why = `${name} is not installed (scripts/ensure-client-tools.sh exit ${install.code}: ${install.stderr.trim().split("\n").slice(-3).join(" | ")})`;
  if (process.env.CI) throw new Error(`${why}; CI must run every client test`);
  t.skip(why);
  return false;
}

export interface Identity {
  sub: string;
  groups: string[];
}

/** libpq's environment for an identity: every libpq client (psql, psycopg, ruby-pg, PHP, DBD::Pg) reads it. */
export async function libpqEnv(stack: Stack, id: Identity): Promise<NodeJS.ProcessEnv> {
  return {
    ...process.env,
    PGHOST: stack.host,
    PGPORT: String(stack.port),
    PGDATABASE: stack.resource,
    PGUSER: id.sub,
    PGPASSWORD: await stack.token({ sub: id.sub, groups: id.groups, ttlSec: 1800 }),
    PGSSLMODE: "require",
    PGCONNECT_TIMEOUT: "30",
  };
}

export interface Approval {
  id: string;
  sql: string;
  requester: string;
  rule: string;
  status: string;
  heldMs: number;
}

export interface Approver {
  approvals(): Approval[];
  process: ChildProcess;
}

/** Starts test/lib/approver-process.ts as `dba` member `sub`, approving the requests of `requesters`; stopped after the test. */
export async function startApprover(t: TestContext, stack: Stack, requesters: string[], sub = "dba-on-call"): Promise<Approver> {
  const token = await stack.token({ sub, groups: ["dba"], ttlSec: 3600 });
  const child = spawn(process.execPath, ["--import", "tsx", `${root}test/lib/approver-process.ts`], {
    cwd: root,
    env: { ...process.env, SLUICE_CONTROL_PLANE: stack.controlPlane.grpcAddress, SLUICE_TOKEN: token, APPROVE_REQUESTERS: requesters.join(",") },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const seen: Approval[] = [];
  let buf = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) seen.push(JSON.parse(line) as Approval);
    }
  });
  let errors = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (errors += d));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const late = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(late);
    }
    if (errors.trim()) t.diagnostic(`approver-process: ${errors.trim().slice(-500)}`);
  });
  return { approvals: () => [...seen], process: child };
}

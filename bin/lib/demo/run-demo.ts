/**
 * `sluice dev --demo`: a CI pipeline's session through the running dev stack, step by step, one
 * line per step (details indented below it) and a progress indicator while something is awaited.
 *
 *  1 a token minted for the CI identity (claims like a GitHub Actions token; no token is printed)
 *  2 an allowed read            3 a masked result
 *  4 a blocked DROP TABLE, and the same session still answering
 *  5 a migration held for approval: pending, approved by a DBA identity (not the requester) with
 *    the real CLI, then completed in the same session
 *  6 the session replayed from the audit stream (`sluice sessions replay`)
 *  7 `sluice audit verify` against the pinned sealer key, once a checkpoint covers the session
 *  8 one OCSF line (`sluice audit export --format ocsf`)
 *
 * The admin commands are the real CLI run as child processes against the dev context, exactly what
 * a person would type in another shell. The demo's own policy is applied first (demo-policy.ts).
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { ApprovalServiceClient, AuditServiceClient, type GetApprovalResponse, type GetSealerResponse } from "@sluice/proto";
import type { DevIssuer } from "@sluice/shared/auth";
import { sessionEventName } from "@sluice/shared/events";
import type { Bundle } from "@sluice/shared/policy";
import { readAudit } from "../audit-read.js";
import type { DevUpstream } from "../dev-bundle.js";
import { withClient } from "../grpc-client.js";
import { DEMO_APPROVER, DEMO_CI, demoBundle } from "./demo-policy.js";
import { Progress, type ProgressSink } from "./progress.js";

export interface DemoOptions {
  host: string;
  port: number;
  resource: string;
  upstream: DevUpstream;
  caFile: string;
  issuer: DevIssuer;
  devIssuerName: string;
  /** the bundle in force; the demo applies it plus its own pipeline policy and masking */
  bundle: Bundle;
  apply(bundle: Bundle): Promise<number>;
  /** where the demo's lines go (stdout); `isTTY` turns on the in-place spinner */
  sink: ProgressSink;
  /** the dev context file the CLI children use */
  contextFile: string;
  stateDir: string;
  /** stops the demo between steps (Ctrl-C) */
  signal?: AbortSignal;
  /** on a terminal, how long the held statement is left pending so a person can see it (default 2 s) */
  pendingPauseMs?: number;
}

export const DEMO_STEPS = 8;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS customers (
  id int PRIMARY KEY, name text NOT NULL, email text NOT NULL, card_number text NOT NULL, note text
);
CREATE TABLE IF NOT EXISTS orders (
  id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), total numeric(10,2) NOT NULL,
  placed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '4111 1111 1111 1111', 'prefers email'),
  (2, 'Grace Hopper', 'grace@example.org', '5500 0000 0000 0004', NULL),
  (3, 'Alan Turing', 'alan@example.net', '3400 0000 0000 009', 'card on file: 4012888888881881')
ON CONFLICT (id) DO NOTHING;
INSERT INTO orders (id, customer_id, total)
  SELECT g, 1 + g % 3, (g * 7.5)::numeric(10,2) FROM generate_series(1, 20) g
ON CONFLICT (id) DO NOTHING;
`;

export const DEMO_SQL = {
  read: "SELECT count(*)::int AS orders, sum(total)::text AS revenue FROM orders",
  masked: "SELECT name, email, card_number FROM customers ORDER BY id",
  drop: "DROP TABLE customers",
  still: "SELECT count(*)::int AS n FROM customers",
  // IF NOT EXISTS: the demo can run again on the same database
  migration: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz",
} as const;

// the launcher beside the sources; the compiled dispatcher itself beside the compiled output (dist/bin)
const SLUICE_BIN = fileURLToPath(new URL(import.meta.url.endsWith(".ts") ? "../../sluice.js" : "../../cli.js", import.meta.url));
const NOTICE = /approval required: request (apr-[0-9a-z]{10})/;

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

class Aborted extends Error {}

export async function runDemo(o: DemoOptions): Promise<{ sessionId: string; approvalId: string }> {
  // after Ctrl-C the stack is stopping under the demo: nothing more is printed
  const write = (s: string) => {
    if (!o.signal?.aborted) o.sink.write(s);
  };
  const progress = new Progress({ write, isTTY: o.sink.isTTY }, undefined, "          ");
  const step = (n: number, label: string, text: string) => {
    if (o.signal?.aborted) throw new Aborted("stopped");
    write(`[${n}/${DEMO_STEPS}] ${label.padEnd(10)}${text}\n`);
  };
  const detail = (text: string) => {
    for (const line of text.replace(/\n+$/, "").split("\n")) write(`          ${line}\n`);
  };
  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliRun> =>
    new Promise((resolve, reject) => {
      if (o.signal?.aborted) return reject(new Aborted("stopped"));
      const child = spawn(process.execPath, [SLUICE_BIN, ...args], {
        env: { ...process.env, SLUICE_CONTEXT: o.contextFile, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  const mustCli = async (args: string[], env?: Record<string, string>) => {
    const r = await cli(args, env);
    if (r.code !== 0) throw new Error(`sluice ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  };

  write(`sluice demo: a CI pipeline's session through sluice, step by step (resource ${o.resource})\n`);

  // set-up, outside the story: the demo tables go straight into the upstream database
  const admin = new pg.Client({ ...o.upstream, ssl: false, application_name: "sluice-demo-setup" });
  await admin.connect();
  try {
    await admin.query(SCHEMA);
  } finally {
    await admin.end();
  }
  const rev = await o.apply(demoBundle(o.bundle, o.resource, o.devIssuerName));
  write(
    `policy revision ${rev}: pipelines of acme/shop on main may read and write; schema changes wait for group ` +
      `${DEMO_APPROVER.groups[0]}; drop and truncate never; customers.email and card numbers masked\n`,
  );

  // 1. the CI identity's token
  const token = await o.issuer.mint({ sub: DEMO_CI.sub, claims: { ...DEMO_CI.claims }, ttlSec: 600 });
  step(1, "token", `minted for CI identity ${DEMO_CI.sub} (10 min; the pipeline's password)`);
  detail(`claims: ${Object.entries(DEMO_CI.claims).map(([k, v]) => `${k}=${v}`).join(" ")}`);

  const ci = new pg.Client({
    host: o.host,
    port: o.port,
    database: o.resource,
    user: "ci",
    password: token,
    ssl: { ca: readFileSync(o.caFile), servername: "localhost" },
    application_name: "sluice-demo-pipeline",
  });
  ci.on("error", () => undefined);
  const notices: string[] = [];
  let noticed: ((id: string) => void) | undefined;
  ci.on("notice", (n: { message?: string }) => {
    const msg = n.message ?? "";
    notices.push(msg);
    const m = NOTICE.exec(msg);
    if (m) noticed?.(m[1]!);
  });
  await ci.connect();
  let sessionId = "";
  let approvalId = "";
  try {
    // 2. allowed read
    const r = await ci.query(DEMO_SQL.read);
    step(2, "read", `ALLOWED  ${DEMO_SQL.read}`);
    detail(`→ ${r.rows[0].orders} orders, revenue ${r.rows[0].revenue}`);

    // 3. masked result
    const m = await ci.query(DEMO_SQL.masked);
    step(3, "masked", `ALLOWED  ${DEMO_SQL.masked}`);
    for (const row of m.rows as Array<Record<string, string>>) detail(`→ ${row.name} | ${row.email} | ${row.card_number}`);

    // 4. blocked DROP, then the same session goes on
    const blocked = await ci.query(DEMO_SQL.drop).then(
      () => "UNEXPECTED: it ran",
      (e: { code?: string; message: string }) => `${e.code} ${e.message}`,
    );
    step(4, "blocked", `BLOCKED  ${DEMO_SQL.drop}`);
    detail(`→ ${blocked}`);
    const still = await ci.query(DEMO_SQL.still);
    detail(`the session is still usable: ${DEMO_SQL.still} → ${still.rows[0].n}`);

    // 5. the migration, held until a DBA approves it
    const idP = new Promise<string>((resolve) => (noticed = resolve));
    const migration = ci.query(DEMO_SQL.migration);
    migration.catch(() => undefined);
    approvalId = await Promise.race([idP, migration.then(() => "")]);
    const heldAt = Date.now();
    step(5, "approval", `HELD     ${DEMO_SQL.migration}`);
    if (!approvalId) throw new Error("the migration ran without being held for approval");
    detail(`the pipeline's connection got: "${notices.find((n) => NOTICE.test(n))}"`);
    const listed = await mustCli(["approvals", "list"]);
    detail(`$ sluice approvals list`);
    detail(listed.stdout.split("\n").filter((l) => l.startsWith("ID") || l.includes(approvalId)).join("\n"));
    if (o.sink.isTTY) await progress.while("pending: the pipeline waits for a DBA", pause(o.pendingPauseMs ?? 2000, o.signal));
    const approverToken = await o.issuer.mint({ sub: DEMO_APPROVER.sub, groups: [...DEMO_APPROVER.groups], ttlSec: 600 });
    detail(`$ sluice approvals approve ${approvalId} --reason "additive column, reviewed" --token "$(sluice token --sub ${DEMO_APPROVER.sub} --groups ${DEMO_APPROVER.groups.join(",")})"`);
    const approved = await mustCli(["approvals", "approve", approvalId, "--reason", "additive column, reviewed"], { SLUICE_TOKEN: approverToken });
    detail(approved.stdout);
    const done = await progress.while("waiting for the held statement to complete", migration);
    detail(`→ ${done.value.command} done in the same session (held ${((Date.now() - heldAt) / 1000).toFixed(1)} s in all)`);

    // the approval is bound to the session that asked: that is the session to replay
    sessionId = (await withClient(ApprovalServiceClient, {}, (c) => c.call<{ id: string }, GetApprovalResponse>("get", { id: approvalId }))).approval?.binding?.sessionId ?? "";
    if (!sessionId) throw new Error(`approval ${approvalId} names no session`);
  } finally {
    await ci.end().catch(() => undefined);
  }

  // 6. the transcript, from the audit stream
  const endSeq = (await progress.while("waiting for the session's end to be recorded", lastEventSeq(o, sessionId))).value;
  step(6, "replay", `$ sluice sessions replay ${sessionId}`);
  detail((await mustCli(["sessions", "replay", sessionId])).stdout);

  // 7. the evidence verifies against the pinned key
  const keyFile = join(o.stateDir, "audit-key.pem");
  writeFileSync(keyFile, (await mustCli(["audit", "key"])).stdout);
  await progress.while("waiting for a signed checkpoint to cover the session", sealedThrough(o, endSeq));
  step(7, "verify", `$ sluice audit key > ${keyFile} && sluice audit verify --public-key ${keyFile}`);
  const verified = await cli(["audit", "verify", "--public-key", keyFile]);
  detail(verified.stdout + (verified.code === 0 ? "" : verified.stderr));

  // 8. one OCSF line: the blocked DROP as Datastore Activity
  const ocsf = await mustCli(["audit", "export", "--format", "ocsf"]);
  const line = ocsf.stdout
    .split("\n")
    .find((l) => l.includes(sessionId) && l.includes('"class_uid":6005') && l.includes("DROP TABLE customers"));
  step(8, "ocsf", `$ sluice audit export --format ocsf   (the blocked DROP as OCSF Datastore Activity 6005)`);
  detail(line ?? "(no OCSF line for the blocked statement)");
  return { sessionId, approvalId };
}

/** Follows one session's events until session.ended; resolves with the stream sequence holding it. */
async function lastEventSeq(o: DemoOptions, sessionId: string): Promise<number> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  o.signal?.addEventListener("abort", stop, { once: true });
  try {
    for await (const item of readAudit({}, { sessionId, follow: true }, ac.signal)) {
      const m = item.message;
      if (m?.events?.some((ev) => ev.subject === sessionId && sessionEventName(ev.type) === "session.ended")) return m.seq;
    }
    throw new Aborted("stopped");
  } finally {
    o.signal?.removeEventListener("abort", stop);
    ac.abort();
  }
}

/** Resolves once the sealer's checkpoints cover stream sequence `seq`. */
async function sealedThrough(o: DemoOptions, seq: number): Promise<void> {
  for (;;) {
    const s = await withClient(AuditServiceClient, {}, (c) => c.call<object, GetSealerResponse>("getSealer", {}));
    if (s.sealedThrough >= seq) return;
    if (o.signal?.aborted) throw new Aborted("stopped");
    await new Promise((r) => setTimeout(r, 250));
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), reject(new Aborted("stopped"))), { once: true });
  });
}

export function isAborted(e: unknown): boolean {
  return e instanceof Aborted;
}

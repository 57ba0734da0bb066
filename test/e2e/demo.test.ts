/**
 * The README's first command, `sluice dev --demo`, run non-interactively (stdout a pipe), and every
 * step of its story checked from the evidence it left — the audit stream as `sluice audit export`
 * gives it, the signed checkpoints, OCSF — never from what the demo printed. Then the stack is still
 * serving, and Ctrl-C stops it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { createDevIssuer } from "@sluice/shared/auth";
import { sessionEventName, type CloudEvent } from "@sluice/shared/events";
import { DEMO_APPROVER, DEMO_CI, DEMO_POLICY } from "../../bin/lib/demo/demo-policy.js";
import { DEMO_SQL } from "../../bin/lib/demo/run-demo.js";
import { runSluice } from "../lib/run-sluice.js";
import { startDev, testDatabase, waitForOutput } from "../lib/dev-process.js";

type Ev = CloudEvent<Record<string, unknown>> & { sluicestreamseq?: number };

const nameOf = (e: Ev) => sessionEventName(e.type);

/** The rows a statement's capture recorded: in result.rows events, or inside statement.completed (`results`, batched streams). */
function capturedRows(events: Ev[], statementId: number): Array<Array<string | null>> {
  const rows: Array<Array<string | null>> = [];
  for (const e of events.filter((x) => x.data?.statementId === statementId)) {
    if (nameOf(e) === "result.rows") rows.push(...(e.data.values as Array<Array<string | null>>));
    if (nameOf(e) === "statement.completed") for (const r of (e.data.results as Array<{ values: Array<Array<string | null>> }> | undefined) ?? []) rows.push(...r.values);
  }
  return rows;
}

test("sluice dev --demo: each step of the pipeline's story is in the audit evidence; the stack keeps serving until Ctrl-C", { timeout: 180_000 }, async (t) => {
  const db = await testDatabase(t, "demo");
  const dev = await startDev(t, ["--upstream", `postgres://postgres@127.0.0.1:5432/${db}`, "--demo"]);
  await waitForOutput(dev, "demo finished", 120_000);
  const env = { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! };
  const cli = async (args: string[], extra: Record<string, string> = {}) => {
    const r = await runSluice(args, { ...env, ...extra });
    assert.equal(r.code, 0, `sluice ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };

  // a non-interactive log: no carriage returns or escape codes from the progress indicator, no token
  assert.doesNotMatch(dev.out(), /[\r\x1b]/);
  assert.doesNotMatch(dev.out() + dev.err(), /eyJ[\w-]{10,}\.[\w-]{10,}\./, "no JWT in the demo's output");
  assert.doesNotMatch(dev.out(), /demo failed/);

  // the audit stream, one event a line, with the checkpoints
  const exported = await cli(["audit", "export", "--format", "cloudevents"]);
  const lines = exported.trim().split("\n").map((l) => JSON.parse(l) as Ev);
  const auth = lines.find((e) => nameOf(e) === "session.authenticated" && e.data.subject === DEMO_CI.sub);
  assert.ok(auth, "the CI identity's session is on the stream");
  const sessionId = auth.subject;
  const events = lines.filter((e) => e.subject === sessionId && nameOf(e));

  // 1. the token: a CI identity, mapped to the pipeline group by its repository/ref/environment claims
  assert.deepEqual(auth.data.groups, ["pipeline"]);
  const claims = auth.data.claims as Record<string, unknown>;
  assert.equal(claims.repository ?? DEMO_CI.claims.repository, DEMO_CI.claims.repository);

  const decision = (sql: string) => events.find((e) => e.data.sql === sql && /^statement\.(allowed|blocked|approval_requested)$/.test(nameOf(e) ?? ""));
  const completed = (id: unknown) => events.find((e) => nameOf(e) === "statement.completed" && e.data.statementId === id);

  // 2. an allowed read that ran
  const read = decision(DEMO_SQL.read);
  assert.equal(read && nameOf(read), "statement.allowed");
  assert.equal(read!.data.rule, `${DEMO_POLICY}/allow:read`);
  assert.equal(completed(read!.data.statementId)?.data.rows, 1);

  // 3. a masked result: the recorded rows hold no address or card number in the clear
  const masked = decision(DEMO_SQL.masked);
  assert.equal(masked && nameOf(masked), "statement.allowed");
  const rows = capturedRows(events, masked!.data.statementId as number);
  assert.equal(rows.length, 3);
  const flat = rows.flat().join(" ");
  assert.match(flat, /Ada Lovelace/);
  for (const secret of ["ada@example.com", "grace@example.org", "4111 1111 1111 1111", "5500 0000 0000 0004"]) assert.ok(!flat.includes(secret), `${secret} is masked`);
  assert.match(flat, /@example\.com/);

  // 4. the DROP was blocked with 42501 and the session went on
  const drop = decision(DEMO_SQL.drop);
  assert.equal(drop && nameOf(drop), "statement.blocked");
  assert.equal(drop!.data.sqlstate, "42501");
  assert.equal(drop!.data.rule, `${DEMO_POLICY}/deny:drop`);
  const after = decision(DEMO_SQL.still);
  assert.ok(after && (after.data.statementId as number) > (drop!.data.statementId as number));
  assert.equal(completed(after.data.statementId)?.data.rows, 1);

  // 5. the migration: held, approved by the DBA (not the requester), then run in the same session
  const held = decision(DEMO_SQL.migration);
  assert.equal(held && nameOf(held), "statement.approval_requested");
  const sid = held!.data.statementId;
  const approved = events.find((e) => nameOf(e) === "statement.approved" && e.data.statementId === sid);
  assert.ok(approved, "statement.approved");
  assert.equal(approved.data.approvalId, held!.data.approvalId);
  assert.match(String(approved.data.approver), new RegExp(`${DEMO_APPROVER.sub}$`));
  assert.notEqual(approved.data.approver, DEMO_CI.sub);
  const ran = events.find((e) => nameOf(e) === "statement.allowed" && e.data.statementId === sid);
  assert.equal(ran?.data.decision, "approve");
  const done = completed(sid);
  assert.ok(done && !done.data.error, "the approved migration completed without error");
  assert.match(String(done.data.commandTag), /^ALTER TABLE/);
  assert.equal((await cli(["approvals", "show", String(held!.data.approvalId), "--json"])).includes('"status": "approved"'), true);
  const ended = events.find((e) => nameOf(e) === "session.ended");
  assert.ok(ended, "the session ended");
  assert.ok(ended.sluicestreamseq! > approved.sluicestreamseq!, "one session from token to the end");

  // 6. the replay of that session from the stream has every statement
  const replay = await cli(["sessions", "replay", sessionId]);
  for (const sql of Object.values(DEMO_SQL)) assert.ok(replay.includes(sql), `replay shows ${sql}`);
  assert.match(replay, /BLOCKED by demo-pipeline\/deny:drop/);

  // 7. a signed checkpoint covers the session, and the copy verifies offline against the pinned key
  const checkpoints = lines.filter((e) => e.type === "dev.sluice.audit.checkpoint.v1").map((e) => e.data as { lastSeq: number });
  assert.ok(checkpoints.some((c) => c.lastSeq >= ended.sluicestreamseq!), "a checkpoint covers the session's end");
  const keyFile = join(dev.dir, "key.pem");
  const copy = join(dev.dir, "audit.jsonl");
  writeFileSync(keyFile, await cli(["audit", "key"]));
  writeFileSync(copy, exported);
  assert.match(await cli(["audit", "verify", "--file", copy, "--public-key", keyFile]), /^ok: .*signatures verified against the pinned key/);
  assert.ok(readFileSync(join(dev.dir, "state", "audit-key.pem"), "utf8").includes("BEGIN PUBLIC KEY"), "the demo pinned the sealer's key");

  // 8. OCSF: the blocked DROP is a failed Datastore Activity of the CI identity
  const ocsf = (await cli(["audit", "export", "--format", "ocsf"])).trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>);
  const o = ocsf.find((x) => x.class_uid === 6005 && x.metadata?.correlation_uid === sessionId && x.query_info?.query_string === DEMO_SQL.drop);
  assert.ok(o, "an OCSF Datastore Activity line for the DROP");
  assert.equal(o.status_id, 2);
  assert.equal(o.actor.user.name, DEMO_CI.sub);

  // the stack is still there: a pipeline token connects; then Ctrl-C stops it cleanly
  const ctx = dev.ctx();
  const issuer = await createDevIssuer({ issuer: ctx.devIssuer!, audience: ctx.devAudience!, keyFile: ctx.devIssuerKeyFile!, create: false });
  const c = new pg.Client({
    host: "127.0.0.1",
    port: Number(ctx.dataPlane!.split(":")[1]),
    database: db,
    user: "me",
    password: await issuer.mint({ sub: "me", groups: ["pipeline"] }),
    ssl: { ca: readFileSync(ctx.caFile!), servername: "localhost" },
  });
  await c.connect();
  await assert.rejects(c.query("TRUNCATE orders"), { code: "42501" });
  assert.equal((await c.query("SELECT count(*)::int AS n FROM orders")).rows[0].n, 20);
  await c.end();
  assert.match(dev.out(), /Try, from another shell/);

  dev.child.kill("SIGINT");
  assert.equal(await dev.exited, 0);
});

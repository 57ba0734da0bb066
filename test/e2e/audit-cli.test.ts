/**
 * The audit trail end to end: real sessions through the proxy (B2's harness, the data plane's own
 * recorder), then the admin CLI against the control plane: sessions list/show/replay, audit
 * key/verify/export (OCSF and CloudEvents), a tampered copy and a forged checkpoint pinpointed,
 * projections rebuild giving the same read model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { generateSigningKey, lastCheckpoint, signCheckpoint, checkpointHash, SEALED_STREAM, type AuditApi } from "@sluice/control-plane";
import { startStack, type Stack } from "./harness.js";
import { runSluice, type CliResult } from "../lib/run-sluice.js";
import { SessionEventType, type StatementAllowedData, type StatementCompletedData } from "@sluice/shared/events";
import { readStream } from "./audit-recording-support.js";

function sluice(stack: Stack, args: string[]): Promise<CliResult> {
  return runSluice(args, {
    SLUICE_CONTEXT: join(tmpdir(), "sluice-no-context.json"),
    SLUICE_CONTROL_PLANE: stack.controlPlane.grpcAddress,
    SLUICE_TOKEN: stack.adminToken,
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("sessions and audit CLI over real recorded sessions: list, show, replay, verify, export, tamper, forge, rebuild", async (t) => {
  const stack = await startStack(t, { setupSql: "CREATE TABLE customers (id int PRIMARY KEY, email text); INSERT INTO customers VALUES (1, 'ann@example.com'), (2, 'bob@example.com')" });
  const dir = mkdtempSync(join(tmpdir(), "sluice-audit-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const audit = stack.controlPlane.api<AuditApi>("audit")!;

  const token = await stack.token({ sub: "repo:acme/orders", groups: ["dev"] });
  const client = await stack.connect({ sub: "repo:acme/orders", groups: ["dev"] });
  await client.query("SELECT id, email FROM customers ORDER BY id");
  await client.query("INSERT INTO customers VALUES ($1, $2)", [3, "cy@example.com"]);
  await assert.rejects(client.query("SELEC 1"), { code: "42501" }); // a parse failure is a deny
  await client.query("SELECT count(*) FROM customers");
  await client.end();

  // the read model sees the whole session once the proxy has recorded its end
  await until("the ended session in the read model", async () => {
    await audit.projector.catchUp();
    const [row] = await audit.model.listSessions({ identity: "repo:acme/orders" });
    return row?.status === "ended" ? row : undefined;
  });
  const listed = await sluice(stack, ["sessions", "list", "--json", "--identity", "repo:acme/orders"]);
  assert.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as Array<{ sessionId: string; status: string; statements: string | number; blocked: string | number }>;
  assert.equal(rows.length, 1);
  const session = rows[0]!;
  assert.equal(session.status, "ended");
  assert.equal(Number(session.statements), 4);
  assert.equal(Number(session.blocked), 1);

  // seal everything recorded so far (without waiting for N events or T seconds)
  const jsm = await jetstreamManager(stack.nc);
  const last = (await jsm.streams.info(stack.names.auditStream)).state.last_seq;
  await until("the sealer to read the stream", async () => ((await audit.sealer.sealNow()) >= last ? true : undefined));

  // few rounds of CLI processes, each round in parallel: spawning is the slow part of this test
  const [show, replay, denyList, key, ce, ocsf] = await Promise.all([
    sluice(stack, ["sessions", "show", session.sessionId]),
    sluice(stack, ["sessions", "replay", session.sessionId]),
    sluice(stack, ["sessions", "list", "--decision", "deny"]),
    sluice(stack, ["audit", "key"]),
    sluice(stack, ["audit", "export", "--format", "cloudevents"]),
    sluice(stack, ["audit", "export", "--format", "ocsf"]),
  ]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /identity\s+repo:acme\/orders/);
  assert.match(show.stdout, /3\s+deny\s+parse-error\s+blocked 42501/);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /authenticated repo:acme\/orders/);
  assert.match(replay.stdout, /SELECT id, email FROM customers ORDER BY id\n\s+allowed by dev-all/);
  assert.match(replay.stdout, /ann@example.com/, "recorded result rows (no masking rule in this bundle)");
  assert.match(replay.stdout, /BLOCKED by parse-error/);
  assert.match(replay.stdout, /ended: /);
  assert.match(denyList.stdout, new RegExp(session.sessionId));
  assert.equal(key.code, 0, key.stderr);
  assert.match(key.stdout, /-----BEGIN PUBLIC KEY-----/);
  const keyFile = join(dir, "sealer.pub.pem");
  writeFileSync(keyFile, key.stdout);

  // OCSF: statements as Datastore Activity, the logon as Authentication, the bundle apply as Entity Management
  assert.equal(ocsf.code, 0, ocsf.stderr);
  const ocsfEvents = ocsf.stdout.trim().split("\n").map((l) => JSON.parse(l) as { class_uid: number; type_uid: number; activity_id: number });
  const classes = new Set(ocsfEvents.map((o) => o.class_uid));
  for (const c of [6005, 3002, 3004]) assert.ok(classes.has(c), `OCSF class ${c} exported`);
  for (const o of ocsfEvents) assert.equal(o.type_uid, o.class_uid * 100 + o.activity_id);
  assert.equal(ocsfEvents.filter((o) => o.class_uid === 6005).length, 4);

  // the live stream verifies against the pinned key; so does the exported copy; an altered event in a copy is pinpointed
  assert.equal(ce.code, 0, ce.stderr);
  const copy = join(dir, "events.jsonl");
  const altered = join(dir, "altered.jsonl");
  writeFileSync(copy, ce.stdout);
  const lines = ce.stdout.trim().split("\n").map((l) => JSON.parse(l) as { type: string; id: string; sluicestreamseq: number; data: { sql?: string } });
  const target = lines.find((l) => l.data?.sql === "SELECT count(*) FROM customers")!;
  writeFileSync(altered, ce.stdout.replace("SELECT count(*) FROM customers", "SELECT 42"));
  const before = await audit.model.dump();
  const [verify, offline, tampered, rebuild] = await Promise.all([
    sluice(stack, ["audit", "verify", "--public-key", keyFile]),
    sluice(stack, ["audit", "verify", "--file", copy, "--public-key", keyFile]),
    sluice(stack, ["audit", "verify", "--file", altered, "--public-key", keyFile]),
    sluice(stack, ["projections", "rebuild", "--json"]),
  ]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, new RegExp(`^ok: ${last} messages, \\d+ events, 1 sessions, \\d+ checkpoints; sealed through seq ${last}; everything sealed; signatures verified against the pinned key`));
  assert.equal(offline.code, 0, offline.stdout + offline.stderr);
  assert.equal(tampered.code, 1);
  assert.match(tampered.stdout, new RegExp(`FAILED: stream seq ${target.sluicestreamseq}, session ${session.sessionId}, event ${target.id}: hash does not match the event content \\(altered\\)`));

  // nothing secret anywhere in what the CLI printed
  const secret = token.split(".")[2]!;
  for (const text of [show.stdout, replay.stdout, ce.stdout, ocsf.stdout]) assert.ok(!text.includes(secret), "no token in CLI output");

  // projections rebuild: same read model afterwards
  assert.equal(rebuild.code, 0, rebuild.stderr);
  assert.equal(Number((JSON.parse(rebuild.stdout) as { position: number }).position), last);
  assert.deepEqual(await audit.model.dump(), before);

  // a forged checkpoint (another key, continuing the chain) is caught against the pinned key
  await audit.sealer.stop(); // the real sealer would refuse to continue after it anyway
  const prev = (await lastCheckpoint(stack.nc, stack.names))!;
  const mallory = generateSigningKey();
  const forged = signCheckpoint({ ...prev.cp, firstSeq: prev.cp.lastSeq + 1, lastSeq: prev.cp.lastSeq + 1, count: 1, prevCheckpointHash: checkpointHash(prev.cp), keyId: mallory.keyId, at: new Date().toISOString() }, mallory.privateKey);
  await jetstream(stack.nc).publish(stack.names.checkpointSubject(SEALED_STREAM), JSON.stringify(forged));
  const forgedRun = await sluice(stack, ["audit", "verify", "--public-key", keyFile]);
  assert.equal(forgedRun.code, 1);
  assert.match(forgedRun.stdout, /FAILED: checkpoint \[\d+\.\.\d+\]: signed by key ed25519:[0-9a-f]{16}, not the pinned key/);
  assert.match(forgedRun.stderr, /audit verification failed at stream seq \d+ \(checkpoint-key\)/);
});

test("a multi-statement Query is recorded and replayed statement by statement: its own decision, completion, tag and exact rows (issue 13, finding 020)", async (t) => {
  const stack = await startStack(t, { setupSql: "CREATE TABLE customers (id int PRIMARY KEY, email text); INSERT INTO customers VALUES (1, 'ann@example.com')" });
  const audit = stack.controlPlane.api<AuditApi>("audit")!;
  const client = await stack.connect({ sub: "repo:acme/multi", groups: ["dev"] });
  // three statements: one row, 150 rows (more than the 100 captured), a write
  const sql = "SELECT 1 AS a; SELECT g FROM generate_series(1, 150) g; INSERT INTO customers VALUES (2, 'bo@example.com')";
  const results = (await client.query(sql)) as unknown as Array<{ rowCount: number }>;
  assert.deepEqual(results.map((r) => r.rowCount), [1, 150, 1]);
  // a failing statement in the middle: the one after it never runs
  await assert.rejects(client.query("SELECT 2 AS b; SELECT 1/0; SELECT 3 AS c"), { code: "22012" });
  await client.end();
  const session = await until("the ended session in the read model", async () => {
    await audit.projector.catchUp();
    const [row] = await audit.model.listSessions({ identity: "repo:acme/multi" });
    return row?.status === "ended" ? row : undefined;
  });
  const detail = (await audit.model.getSession(session.session_id))!;
  assert.deepEqual(
    detail.statements.map((s) => [s.statement_id, s.sql, s.outcome, s.command_tag, s.rows]),
    [
      [1, "SELECT 1 AS a", "completed", "SELECT 1", 1],
      [2, "SELECT g FROM generate_series(1, 150) g", "completed", "SELECT 150", 150],
      [3, "INSERT INTO customers VALUES (2, 'bo@example.com')", "completed", "INSERT 0 1", 1],
      [4, "SELECT 2 AS b", "completed", "SELECT 1", 1],
      [5, "SELECT 1/0", "failed", null, 0],
      [6, "SELECT 3 AS c", "failed", null, 0],
    ],
  );
  // on the stream: two events per statement, the capped capture says how many rows there were
  const evs = (await readStream(stack.nc, stack.names.auditStream)).map((s) => s.ev).filter((e) => e.subject === session.session_id);
  const ofType = (n: string) => evs.filter((e) => e.type === SessionEventType[n as keyof typeof SessionEventType]);
  assert.deepEqual(ofType("statement.allowed").map((e) => [(e.data as StatementAllowedData).statementId, (e.data as StatementAllowedData).part, (e.data as StatementAllowedData).parts]), [[1, 1, 3], [2, 2, 3], [3, 3, 3], [4, 1, 3], [5, 2, 3], [6, 3, 3]]);
  const done = ofType("statement.completed").map((e) => e.data as StatementCompletedData);
  assert.deepEqual(done.map((d) => d.statementId), [1, 2, 3, 4, 5, 6]);
  const big = done[1]!.results![0]!;
  assert.deepEqual([big.rows, big.recorded, big.truncated], [150, 100, true]);
  assert.match(done[5]!.error!.message, /an earlier statement of its Query failed/);
  // the replay shows each statement with its own completion
  const replay = await sluice(stack, ["sessions", "replay", session.session_id]);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /#2 \[simple, read, statement 2 of 3 of one Query\]\n\s+SELECT g FROM generate_series\(1, 150\) g/);
  assert.match(replay.stdout, /#1 SELECT 1: 1 row in/);
  assert.match(replay.stdout, /#2 SELECT 150: 150 rows in/);
  assert.match(replay.stdout, /#3 INSERT 0 1: 1 row in/);
});

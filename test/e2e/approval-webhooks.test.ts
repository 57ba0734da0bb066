/**
 * Approval webhooks end to end: statements held by the real proxy, decided through the approval
 * service, notified by the control plane to a local HTTP receiver that checks every signature on
 * its own (HMAC-SHA256 over id.timestamp.body, computed here, not with sluice's code).
 *  - two control-plane replicas: each event reaches each webhook once, not once per replica;
 *  - a receiver failing twice sees the same delivery again, later each time, and then takes it;
 *  - a receiver that never answers holds up neither the session nor the approval;
 *  - the signing secret and the secret URL are in no event and no log line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type pg from "pg";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { NOTIFIER_DURABLE, startControlPlane, type ApprovalNotifier } from "@sluice/control-plane";
import { devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import type { ApprovalApp } from "../../control-plane/src/app/approval-app.js";
import { ADMIN_GROUP, startStack } from "./harness.js";

interface Hit {
  path: string;
  id: string;
  timestamp: number;
  body: string;
  signatureOk: boolean;
  at: number;
  status?: number;
}

/** A local webhook receiver: records every attempt; `answer` picks the status (or "hang": never answers). */
async function receiver(secret: string) {
  const hits: Hit[] = [];
  const waiting: Array<() => void> = [];
  let answer: (h: Hit, attempt: number) => number | "hang" = () => 200;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString("utf8")));
    req.on("end", () => {
      const id = String(req.headers["webhook-id"] ?? "");
      const timestamp = Number(req.headers["webhook-timestamp"]);
      const expected = "v1," + createHmac("sha256", secret).update(`${id}.${timestamp}.${body}`).digest("base64");
      const signatureOk = String(req.headers["webhook-signature"] ?? "").split(" ").includes(expected) && Math.abs(Date.now() / 1000 - timestamp) < 300;
      const h: Hit = { path: req.url ?? "", id, timestamp, body, signatureOk, at: Date.now() };
      hits.push(h);
      const a = answer(h, hits.filter((x) => x.id === id).length);
      if (a !== "hang") {
        h.status = a;
        res.writeHead(a).end();
      }
      for (const w of waiting.splice(0)) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    hits,
    answer: (f: typeof answer) => (answer = f),
    /** waits until `pred` holds over the hits (every hit re-checks) */
    async until(pred: (hits: Hit[]) => boolean, what: string, ms = 30_000) {
      const end = Date.now() + ms;
      while (!pred(hits)) {
        if (Date.now() > end) throw new Error(`receiver: ${what} not seen; hits: ${JSON.stringify(hits.map((h) => [h.path, h.id, h.status]))}`);
        await new Promise<void>((r) => {
          waiting.push(r);
          setTimeout(r, 200);
        });
      }
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Resolves with the approval id of the next approval notice on `client`. */
function nextApproval(client: pg.Client): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no approval notice")), 20_000);
    const on = (n: { message?: string }) => {
      const m = /approval required: request (apr-[0-9a-z]{10})/.exec(n.message ?? "");
      if (!m) return;
      clearTimeout(t);
      client.off("notice", on);
      resolve(m[1]!);
    };
    client.on("notice", on);
  });
}

test("approval webhooks: once per event across replicas, signed, retried with back-off, never blocking; secrets nowhere", { timeout: 180_000 }, async (t) => {
  const tag = randomBytes(4).toString("hex").toUpperCase();
  const secret = `whk-${randomBytes(12).toString("hex")}`;
  const hook = await receiver(secret);
  t.after(() => hook.close());
  // the Slack-style URL carries its own secret token, so the bundle names it by reference only
  const slackUrl = hook.url(`/slack/T000/B000/${randomBytes(8).toString("hex")}`);
  const dir = mkdtempSync(join(tmpdir(), "sluice-webhooks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const secretFile = join(dir, "hook-secret");
  writeFileSync(secretFile, secret + "\n", { mode: 0o600 });
  process.env[`SLUICE_T_SLACK_URL_${tag}`] = slackUrl;
  process.env[`SLUICE_T_HOOK_SECRET_${tag}`] = secret;
  t.after(() => {
    delete process.env[`SLUICE_T_SLACK_URL_${tag}`];
    delete process.env[`SLUICE_T_HOOK_SECRET_${tag}`];
  });

  const stack = await startStack(t, {
    policy: `
policies:
  - name: deployers
    groups: [deployers]
    resources: [app]
    allow: [read, write, ddl]
    requireApproval: [ddl]
    approval: { approvers: [dba], timeout: 10m, notify: [dba-slack] }
notifications:
  approvals: [audit-sink]
  webhooks:
    - name: audit-sink
      url: ${hook.url("/json")}
      secret: env:SLUICE_T_HOOK_SECRET_${tag}
    - name: dba-slack
      url: env:SLUICE_T_SLACK_URL_${tag}
      format: slack
      secret: file:${secretFile}
`,
  });

  // a second control-plane replica on the same streams, logging everything it does into `logs`
  let logs = "";
  const sink = new Writable({ write: (chunk, _e, cb) => ((logs += chunk.toString()), cb()) });
  const cfg = defaultConfig();
  cfg.node = `cp2-${tag}`;
  cfg.nats = { ...cfg.nats, url: "nats://127.0.0.1:4222", prefix: stack.natsPrefix };
  cfg.controlPlane.grpcListen = "127.0.0.1:0";
  cfg.controlPlane.httpListen = "127.0.0.1:0";
  cfg.controlPlane.adminGroups = [ADMIN_GROUP];
  cfg.controlPlane.issuers = [devIssuerSpec(stack.issuer)];
  cfg.controlPlane.readModel = { dialect: "sqlite", url: join(dir, "rm2.sqlite") };
  const replica2 = await startControlPlane(cfg, { logger: createLogger({ level: "debug", destination: sink }), jetstream: { storage: "memory" } });
  t.after(() => replica2.stop());

  const approvals = stack.controlPlane.api<ApprovalApp>("approvals")!;
  const dba = { subject: "carol", issuer: "dev", groups: ["dba"] };
  const client = await stack.connect({ sub: "pipeline", groups: ["deployers"] });
  const jsm = await jetstreamManager(stack.nc);
  const settled = async () => {
    const end = Date.now() + 30_000;
    for (;;) {
      const i = await jsm.consumers.info(stack.names.controlStream, NOTIFIER_DURABLE);
      if (i.num_pending === 0 && i.num_ack_pending === 0) return i;
      if (Date.now() > end) throw new Error(`notifier not settled: ${JSON.stringify({ pending: i.num_pending, ackPending: i.num_ack_pending })}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** holds a DDL, approves it as the DBA, and returns the id once the statement has run */
  const heldAndApproved = async (sql: string) => {
    const idP = nextApproval(client);
    const running = client.query(sql);
    const id = await idP;
    await approvals.decide(id, "approve", dba, "reviewed");
    await running;
    return id;
  };

  await t.test("two replicas: every event reaches each of its webhooks exactly once, signed, with the right body", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await heldAndApproved(`CREATE TABLE once_${i} (id int)`));
    // 3 requests and 3 decisions; each to the global sink and to the policy's Slack hook
    await hook.until((h) => new Set(h.map((x) => x.id)).size >= 12, "12 deliveries");
    const consumer = await settled();
    assert.equal(consumer.delivered.consumer_seq >= 6, true);
    const byId = new Map<string, Hit[]>();
    for (const h of hook.hits) byId.set(h.id, [...(byId.get(h.id) ?? []), h]);
    assert.equal(byId.size, 12);
    for (const [id, hs] of byId) assert.equal(hs.length, 1, `delivery ${id} sent once, not once per replica`);
    assert.ok(hook.hits.every((h) => h.signatureOk), "every signature verifies against the shared secret");

    const json = hook.hits.filter((h) => h.path === "/json").map((h) => JSON.parse(h.body));
    const req0 = json.find((b) => b.type === "approval.requested" && b.approval.id === ids[0]);
    assert.ok(req0, "the request notice");
    assert.equal(req0.approval.statement, "CREATE TABLE once_0 (id int)");
    assert.equal(req0.approval.requester.subject, "pipeline");
    assert.equal(req0.approval.rule, "deployers/requireApproval:ddl");
    assert.ok(Date.parse(req0.approval.expiresAt) > Date.parse(req0.approval.requestedAt));
    assert.equal(req0.commands.approve, `sluice approvals approve ${ids[0]}`);
    const dec0 = json.find((b) => b.type === "approval.decided" && b.approval.id === ids[0]);
    assert.equal(dec0.approval.status, "approved");
    assert.equal(dec0.approval.decidedBy.subject, "carol");

    const slack = hook.hits.filter((h) => h.path.startsWith("/slack/")).map((h) => JSON.parse(h.body));
    assert.equal(slack.length, 6);
    const s0 = slack.find((b) => b.text.includes(ids[0]) && b.text.startsWith("Approval needed"));
    assert.match(s0.text, new RegExp(`Approve with: sluice approvals approve ${ids[0]}`));
    assert.ok(JSON.stringify(s0.blocks).includes("CREATE TABLE once_0 (id int)"));
  });

  await t.test("a receiver failing twice gets the same delivery again, later each time, and then takes it", async () => {
    // only replica 2 notifies from here on, so its log shows every attempt
    await stack.controlPlane.api<ApprovalNotifier>("notifications")!.stop();
    const before = hook.hits.length;
    hook.answer((h, attempt) => (h.path === "/json" && attempt <= 2 ? 503 : 200));
    const id = await heldAndApproved("CREATE TABLE retried (id int)");
    await hook.until((h) => h.slice(before).some((x) => x.path === "/json" && x.status === 200 && x.body.includes(`"approval.requested"`)), "the request delivered after retries");
    const attempts = hook.hits.slice(before).filter((h) => h.path === "/json" && h.body.includes(`"approval.requested"`) && h.body.includes(id));
    assert.deepEqual(attempts.map((a) => a.status), [503, 503, 200]);
    assert.equal(new Set(attempts.map((a) => a.id)).size, 1, "one webhook-id for every attempt");
    assert.ok(attempts.every((a) => a.signatureOk), "each attempt signed afresh");
    const gap1 = attempts[1]!.at - attempts[0]!.at;
    const gap2 = attempts[2]!.at - attempts[1]!.at;
    assert.ok(gap1 >= 700 && gap2 >= 1500, `back-off between attempts (${gap1} ms, ${gap2} ms)`);
    assert.match(logs, /webhook attempt failed; retrying/);
    await settled();
  });

  await t.test("a receiver that never answers holds up neither the session nor the approval", async () => {
    hook.answer(() => "hang");
    const before = hook.hits.length;
    const idP = nextApproval(client);
    const running = client.query("CREATE TABLE unblocked (id int)");
    const id = await idP;
    await approvals.decide(id, "approve", dba, "go");
    const r = await running;
    assert.equal(r.command, "CREATE");
    // the statement is done while its request notice still waits on the silent receiver
    await hook.until((h) => h.slice(before).some((x) => x.body.includes(id)), "the notice reaching the silent receiver");
    assert.ok(hook.hits.slice(before).filter((x) => x.body.includes(id)).every((x) => x.status === undefined), "no attempt answered yet");
    assert.equal((await client.query("SELECT 1 AS one")).rows[0].one, 1);
  });

  await t.test("the signing secret and the secret URL are in no event and no log line", async () => {
    const token = slackUrl.split("/").at(-1)!;
    assert.ok(logs.length > 0 && /webhook delivered/.test(logs), "the replica logged its deliveries");
    assert.ok(!logs.includes(secret), "no secret in the log");
    assert.ok(!logs.includes(token), "no secret URL in the log");
    for (const stream of [stack.names.controlStream, stack.names.auditStream]) {
      const total = (await jsm.streams.info(stream)).state.messages;
      const c = await jetstream(stack.nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
      const it = await c.consume();
      let n = 0;
      for await (const m of it) {
        const text = new TextDecoder().decode(m.data);
        assert.ok(!text.includes(secret) && !text.includes(token), `${stream} seq ${m.seq} holds no secret`);
        if (++n >= total) break;
      }
      it.stop();
    }
  });
});

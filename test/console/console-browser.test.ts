/**
 * The approver's console end to end, in headless Chromium against `sluice dev`: people sign in
 * through the dev issuer (authorization code + PKCE), a real psql session's DDL is held until an
 * approver approves it on the page (and psql completes), or rejects it (psql gets 42501); the
 * requester sees their own request without buttons and the server refuses a forged decision; a
 * session's replay shows masked rows only; the other pages render. Every page is audited with
 * axe-core and kept as a screenshot in test/console/screenshots/.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import pg from "pg";
import { connect } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createDevIssuer } from "@sluice/shared/auth";
import { decodeEvent, type CloudEvent } from "@sluice/shared/events";
import { natsNames } from "@sluice/shared/nats";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSluice } from "../lib/run-sluice.js";
import { startDev, testDatabase, waitForOutput } from "../lib/dev-process.js";
import { axeAudit, launchChromium, screenshot, signIn, type Person } from "./browser-kit.js";

const EMAILS = ["alice.wonder@example.com", "bob.builder@example.org"];

/** A database of its own with two customers whose e-mails the policy masks. */
async function customersDatabase(t: TestContext): Promise<string> {
  const db = await testDatabase(t, "console");
  const c = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: db });
  await c.connect();
  await c.query(`CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL); INSERT INTO customers VALUES (1, '${EMAILS[0]}'), (2, '${EMAILS[1]}')`);
  await c.end();
  return db;
}

interface Psql {
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  stderr: () => string;
  kill: () => void;
}

/** The real psql through the proxy, the token as password (as a pipeline would run it). */
function psql(port: number, db: string, user: string, token: string, caFile: string, sql: string): Psql {
  const child = spawn("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, `host=127.0.0.1 port=${port} dbname=${db} user=${user} sslmode=require`], {
    env: { PATH: process.env.PATH ?? "", PGPASSWORD: token, PGCONNECT_TIMEOUT: "10" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    done: new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr }))),
    stderr: () => stderr,
    kill: () => child.kill("SIGTERM"),
  };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every approval event on SLUICE_CONTROL, oldest first. */
async function approvalEvents(natsUrl: string): Promise<CloudEvent[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const names = natsNames("");
    const filter = names.controlAggregateFilter("approval");
    const info = await (await jetstreamManager(nc)).streams.info(names.controlStream, { subjects_filter: filter });
    const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const out: CloudEvent[] = [];
    if (!total) return out;
    const it = await (await jetstream(nc).consumers.get(names.controlStream, { filter_subjects: filter, deliver_policy: DeliverPolicy.All })).consume();
    for await (const m of it) {
      out.push(decodeEvent(m.data));
      if (out.length >= total) break;
    }
    it.stop();
    return out;
  } finally {
    await nc.close();
  }
}

async function auditedScreenshot(who: Person, name: string): Promise<void> {
  await screenshot(who.page, name);
  const violations = await axeAudit(who.page);
  assert.deepEqual(violations, [], `axe on ${name}: ${JSON.stringify(violations, null, 2)}`);
}

test("console: sign in, approve and reject what psql waits on, no self-approval, masked replay, every page audited", { timeout: 240_000 }, async (t) => {
  const db = await customersDatabase(t);
  const policyDir = mkdtempSync(join(tmpdir(), "sluice-console-policy-"));
  const policyFile = join(policyDir, "policy.yaml");
  writeFileSync(policyFile, `
policies:
  - name: deployers
    groups: [deployers]
    resources: [${db}]
    allow: [read, write, ddl]
    requireApproval: [ddl]
    approval: { approvers: [dba], timeout: 120s }
masking:
  - resources: [${db}]
    columns: [customers.email]
    strategy: partial
`);
  const dev = await startDev(t, ["--upstream", `postgres://postgres@127.0.0.1:5432/${db}`, "--policy", policyFile]);
  await waitForOutput(dev, "/console/\n");
  const ctx = dev.ctx();
  const base = /console: (\S+)\/console\//.exec(dev.out())![1]!;
  const port = Number(ctx.dataPlane!.split(":")[1]);
  const issuer = await createDevIssuer({ issuer: ctx.devIssuer!, audience: ctx.devAudience!, keyFile: ctx.devIssuerKeyFile!, create: false });
  const pipelineToken = await issuer.mint({ sub: "pipeline", groups: ["deployers"] });
  const run = (sql: string, token = pipelineToken, user = "pipeline") => psql(port, db, user, token, ctx.caFile!, sql);

  const browser = await launchChromium();
  t.after(() => browser.close());
  const carol = await signIn(browser, base, "carol", ["dba", "sluice-admins"]);

  await t.test("the session cookie is sealed, HttpOnly and SameSite=Strict; the page runs under a strict CSP", async () => {
    const cookies = await carol.context.cookies();
    const session = cookies.find((c) => c.name === "sluice-console");
    assert.ok(session, `a session cookie: ${cookies.map((c) => c.name).join(", ")}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    assert.ok(!session.value.includes("carol") && !/eyJ/.test(session.value), "the cookie holds no readable identity or token");
    assert.equal(await carol.page.evaluate("document.cookie"), "", "script cannot read it");
    const res = await fetch(`${base}/console/`);
    const csp = res.headers.get("content-security-policy") ?? "";
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
    await auditedScreenshot(carol, "approvals-empty");
  });

  await t.test("sign-in refuses a callback it did not start, a mismatched state and a code the issuer never gave", async () => {
    let r = await fetch(`${base}/console/auth/callback?code=c&state=s`, { redirect: "manual" });
    assert.equal(r.status, 400, "no sign-in transaction cookie");
    assert.equal(r.headers.get("set-cookie")?.includes("sluice-console="), false);
    const login = await fetch(`${base}/console/auth/login?issuer=dev&return=//evil.example/`, { redirect: "manual" });
    assert.equal(login.status, 302);
    const to = new URL(login.headers.get("location")!);
    assert.equal(to.searchParams.get("code_challenge_method"), "S256");
    assert.ok(!/verifier/.test(to.search), "the PKCE verifier stays in the sealed cookie");
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    assert.match(login.headers.get("set-cookie")!, /HttpOnly; SameSite=Lax/);
    r = await fetch(`${base}/console/auth/callback?code=c&state=not-the-state`, { headers: { cookie }, redirect: "manual" });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /does not match/);
    // the right state with a code the issuer never gave: the issuer refuses it, no session
    r = await fetch(`${base}/console/auth/callback?code=forged&state=${to.searchParams.get("state")}`, { headers: { cookie }, redirect: "manual" });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get("set-cookie")?.includes("sluice-console="), false);
    assert.equal((await fetch(`${base}/console/api/approvals/events`)).status, 401, "the live feed needs a session too");
  });

  await t.test("approve: the held statement appears live, is approved with a reason, and psql completes", async () => {
    const held = run("CREATE TABLE approved_by_console (id int)");
    const card = carol.page.locator("article.approval", { hasText: "approved_by_console" });
    await within(card.waitFor(), 20_000, `the held statement on the page (psql: ${held.stderr()})`);
    // everything needed to decide is on the page
    const text = await card.innerText();
    for (const want of ["pipeline", "deployers", "deployers/requireApproval:ddl", "dba", db, "Expires in"]) assert.ok(text.includes(want), `card shows ${want}: ${text}`);
    assert.equal(await card.locator(".sql .tok-keyword").first().innerText(), "CREATE", "SQL is highlighted");
    await auditedScreenshot(carol, "approvals-pending");
    // a decision needs a reason
    await card.getByRole("button", { name: "Approve" }).click();
    await card.getByRole("alert").filter({ hasText: "reason" }).waitFor();
    await card.getByLabel("Reason (required)").fill("change ticket CHG-1042");
    await card.getByRole("button", { name: "Approve" }).click();
    const r = await within(held.done, 20_000, "psql after approval");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /approval required: request apr-/);
    await carol.page.getByText(/^Approved apr-/).waitFor();
    await card.waitFor({ state: "detached" });
  });

  await t.test("reject, by keyboard alone: psql gets 42501 and the connection's statement never runs", async () => {
    const held = run("DROP TABLE approved_by_console");
    const card = carol.page.locator("article.approval", { hasText: "DROP TABLE approved_by_console" });
    await within(card.waitFor(), 20_000, "the held DROP on the page");
    const reasonId = await card.getByLabel("Reason (required)").getAttribute("id");
    const focused = () => carol.page.evaluate("document.activeElement && document.activeElement.id");
    for (let i = 0; i < 80 && (await focused()) !== reasonId; i++) await carol.page.keyboard.press("Tab");
    assert.equal(await focused(), reasonId, "the reason field is reachable with Tab");
    await carol.page.keyboard.type("not during the freeze");
    await carol.page.keyboard.press("Tab");
    await carol.page.keyboard.press("Tab");
    assert.equal(await carol.page.evaluate("document.activeElement.textContent"), "Reject");
    await carol.page.keyboard.press("Enter");
    const r = await within(held.done, 20_000, "psql after rejection");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /rejected/i);
    const still = await new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: db });
    await still.connect();
    assert.equal((await still.query("SELECT to_regclass('approved_by_console') IS NOT NULL AS present")).rows[0].present, true);
    await still.end();
  });

  await t.test("decisions on the page are in the audit stream exactly like one taken with the CLI", async () => {
    const held = run("CREATE TABLE approved_by_cli (id int)");
    const card = carol.page.locator("article.approval", { hasText: "approved_by_cli" });
    await within(card.waitFor(), 20_000, "the held statement");
    const id = (await card.locator("h3 code").innerText()).trim();
    const dbaToken = await issuer.mint({ sub: "dave", groups: ["dba"] });
    const cli = await runSluice(["approvals", "approve", id, "--reason", "via the CLI", "--token", dbaToken], { SLUICE_CONTEXT: dev.env.SLUICE_CONTEXT! });
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal((await within(held.done, 20_000, "psql after CLI approval")).code, 0);
    const events = await approvalEvents(ctx.nats!);
    const decided = events.filter((e) => /\.approval\.approval_(granted|rejected)\.v1$/.test(e.type));
    const byPage = decided.filter((e) => (e.data as { approver: { subject: string } }).approver.subject === "carol");
    const byCli = decided.find((e) => (e.data as { approver: { subject: string } }).approver.subject === "dave")!;
    assert.equal(byPage.length, 2);
    const granted = byPage.find((e) => e.type === byCli.type)!;
    assert.deepEqual(Object.keys(granted).sort(), Object.keys(byCli).sort(), "same envelope");
    assert.deepEqual(Object.keys(granted.data as object).sort(), Object.keys(byCli.data as object).sort(), "same payload fields");
    assert.equal(granted.source, byCli.source);
    assert.deepEqual((granted.data as { approver: unknown }).approver, { subject: "carol", issuer: "dev", groups: ["dba", "sluice-admins"] });
    assert.equal((granted.data as { reason: string }).reason, "change ticket CHG-1042");
    const rejected = byPage.find((e) => /rejected/.test(e.type))!;
    assert.equal((rejected.data as { reason: string }).reason, "not during the freeze");
  });

  await t.test("the requester's own request shows no approve button, and the server refuses a forged decision", async () => {
    // the pipeline's identity is itself an approver: still never its own
    const selfToken = await issuer.mint({ sub: "pipeline", groups: ["deployers", "dba"] });
    const held = run("CREATE TABLE self_approved (id int)", selfToken);
    t.after(() => held.kill());
    const requester = await signIn(browser, base, "pipeline", ["dba"]);
    t.after(() => requester.context.close());
    const card = requester.page.locator("article.approval", { hasText: "self_approved" });
    await within(card.waitFor(), 20_000, "the requester's own request on the page");
    assert.equal(await card.getByRole("button", { name: "Approve" }).count(), 0);
    assert.equal(await card.getByRole("button", { name: "Reject" }).count(), 0);
    assert.match(await card.innerText(), /You cannot decide this request: the requester cannot approve their own request/);
    await auditedScreenshot(requester, "approvals-own-request");
    const id = (await card.locator("h3 code").innerText()).trim();

    // forged: the page's own CSRF token, straight to the API
    const forged = (await requester.page.evaluate(async (approvalId) => {
      const me = (await (await fetch("/console/api/me")).json()) as { csrfToken: string };
      const r = await fetch(`/console/api/approvals/${approvalId}/approve`, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": me.csrfToken }, body: JSON.stringify({ reason: "forged", commandId: crypto.randomUUID() }) });
      return { status: r.status, body: await r.json() };
    }, id)) as { status: number; body: { error: { code: string; message: string } } };
    assert.equal(forged.status, 403);
    assert.equal(forged.body.error.code, "permission_denied");
    assert.match(forged.body.error.message, /the requester cannot approve their own request/);

    // carol's session without the CSRF token, with a foreign Origin, or without a session at all
    const post = (headers: Record<string, string>) => carol.context.request.post(`${base}/console/api/approvals/${id}/approve`, { headers: { "content-type": "application/json", ...headers }, data: { reason: "x" }, failOnStatusCode: false });
    const me = (await (await carol.context.request.get(`${base}/console/api/me`)).json()) as { csrfToken: string };
    let r = await post({ origin: base });
    assert.equal(r.status(), 403);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /CSRF/);
    r = await post({ origin: "http://evil.example", "x-csrf-token": me.csrfToken });
    assert.equal(r.status(), 403);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /cross-site/);
    r = await post({ origin: base, "x-csrf-token": me.csrfToken, "content-type": "text/plain" });
    assert.equal(r.status(), 400, "a form-like body is refused");
    const anon = await fetch(`${base}/console/api/approvals/${id}/approve`, { method: "POST", headers: { "content-type": "application/json", origin: base, cookie: "sluice-console=forged" }, body: "{}" });
    assert.equal(anon.status, 401);
    // nothing of the above decided it
    const still = (await (await carol.context.request.get(`${base}/console/api/approvals/${id}`)).json()) as { approval: { status: string } };
    assert.equal(still.approval.status, "pending");
  });

  await t.test("a session's replay renders masked rows only; sessions, fleet, policy and evidence render", async () => {
    const r = await within(run("SELECT id, email FROM customers ORDER BY id").done, 20_000, "masked select");
    assert.equal(r.code, 0, r.stderr);
    for (const e of EMAILS) assert.ok(!r.stdout.includes(e), "psql itself gets masked values");
    const page = carol.page;
    await page.goto(`${base}/console/#/sessions?identity=pipeline`);
    const rows = page.locator("table.list tbody tr");
    await within(rows.first().waitFor(), 20_000, "sessions listed");
    await auditedScreenshot(carol, "sessions");
    // the session that ran the SELECT: the newest one that has finished
    const sessions = (await (await carol.context.request.get(`${base}/console/api/sessions?identity=pipeline`)).json()) as { sessions: Array<{ sessionId: string; statements: number; status: string }> };
    let target: string | undefined;
    for (const s of sessions.sessions) {
      const d = (await (await carol.context.request.get(`${base}/console/api/sessions/${s.sessionId}`)).json()) as { replay: { statements: Array<{ sql: string }> } };
      if (d.replay.statements.some((st) => st.sql.includes("FROM customers"))) target = s.sessionId;
    }
    assert.ok(target, "the SELECT's session is in the read model");
    await page.goto(`${base}/console/#/sessions/${target}`);
    const table = page.locator("table.rows");
    await within(table.waitFor(), 20_000, "result rows rendered");
    const shown = await table.innerText();
    assert.match(shown, /masked/);
    for (const e of EMAILS) assert.ok(!shown.includes(e), `no raw e-mail on the page: ${shown}`);
    assert.equal(await table.locator("tbody tr").count(), 2);
    await auditedScreenshot(carol, "session-replay");

    await page.goto(`${base}/console/#/fleet`);
    await page.locator("table.list tbody tr", { hasText: "dev-data-plane" }).waitFor();
    await auditedScreenshot(carol, "fleet");

    await page.goto(`${base}/console/#/policy`);
    await page.getByRole("heading", { name: /Current bundle: revision/ }).waitFor();
    await page.getByLabel("Resource").fill(db);
    await page.getByLabel("SQL").fill("DROP TABLE customers");
    await page.getByLabel("Groups (comma-separated)").fill("deployers");
    await page.getByRole("button", { name: "Simulate" }).click();
    await page.locator(".sim-result", { hasText: "deployers/requireApproval:ddl" }).waitFor();
    await page.getByRole("button", { name: /^Revision 1$/ }).click();
    await page.locator("pre.diff").waitFor();
    await auditedScreenshot(carol, "policy");

    await page.goto(`${base}/console/#/evidence`);
    await page.getByRole("button", { name: "Verify now" }).click();
    await within(page.locator(".report", { hasText: "verified" }).waitFor(), 30_000, "verification");
    await auditedScreenshot(carol, "evidence");
  });

  await t.test("a running session is followed live: a new statement appears without a reload", async () => {
    const client = new pg.Client({ host: "127.0.0.1", port, database: db, user: "pipeline", password: pipelineToken, ssl: { ca: readFileSync(ctx.caFile!, "utf8") } });
    client.on("error", () => undefined); // the stack's teardown may end it first
    await client.connect();
    try {
      await followed(client);
    } finally {
      await client.end();
    }
  });

  async function followed(client: pg.Client): Promise<void> {
    await client.query("SELECT 1 AS first_statement");
    // this client's session, by its address: an earlier test's session of the same identity may still be open
    // (the self-approval one waits on its request until the stack stops), and picking it failed this test
    const local = (client as unknown as { connection: { stream: { localPort?: number; socket?: { localPort?: number } } } }).connection.stream;
    const address = `127.0.0.1:${local.localPort ?? local.socket?.localPort}`;
    let sessionId: string | undefined;
    for (let i = 0; i < 100 && !sessionId; i++) {
      const r = (await (await carol.context.request.get(`${base}/console/api/sessions?identity=pipeline&status=active`)).json()) as { sessions: Array<{ sessionId: string; statements: number; clientAddress: string }> };
      sessionId = r.sessions.find((s) => s.statements >= 1 && s.clientAddress === address)?.sessionId;
      if (!sessionId) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(sessionId, "the open session is in the read model");
    const page = carol.page;
    await page.goto(`${base}/console/#/sessions/${sessionId}`);
    await page.locator("li.stmt", { hasText: "first_statement" }).waitFor();
    assert.equal(await page.getByLabel("Follow live").isChecked(), true);
    await page.evaluate("window.__stillTheSamePage = true");
    await client.query("SELECT $1::text AS second_statement", ["followed"]);
    await within(page.locator("li.stmt", { hasText: "second_statement" }).waitFor(), 20_000, "the new statement on the open page");
    assert.equal(await page.evaluate("window.__stillTheSamePage"), true, "no reload");
    // bound parameters as the data plane recorded them: masked under this resource's masking rules
    assert.match(await page.locator("li.stmt", { hasText: "second_statement" }).getByText(/^Parameters/).innerText(), /Parameters \(masked\): \$1 = \*+$/);
    await auditedScreenshot(carol, "session-live");
  }

  await t.test("an approver outside the admin groups sees approvals but not sessions; nothing secret ever reached a browser", async () => {
    const dave = await signIn(browser, base, "dave", ["dba"]);
    t.after(() => dave.context.close());
    await dave.page.goto(`${base}/console/#/sessions`);
    await dave.page.getByRole("alert").filter({ hasText: /needs membership in one of: sluice-admins/ }).waitFor();
    await screenshot(dave.page, "sessions-not-admin");
    for (const who of [carol, dave]) {
      assert.deepEqual(who.problems, [], "no CSP violation or page error");
      assert.ok(who.received.length >= 2, "API answers were watched");
      for (const body of who.received) {
        assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\./.test(body), `no JWT in ${body.slice(0, 200)}`);
        for (const e of EMAILS) assert.ok(!body.includes(e), `no unmasked value in ${body.slice(0, 200)}`);
      }
    }
  });
});

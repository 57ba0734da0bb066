/**
 * Migration tools a pipeline would run, through the real proxy under the contract's example bundle
 * (issue 13): sqitch (Debian's package: psql for the scripts, DBD::Pg for its registry) and knex
 * (npm). Each runs a real migration end to end as a deployer ([read, write, ddl]): every DDL it
 * sends (its own registry tables included) is held until an approver in another process approves
 * it while the tool waits, and its writes go through. The read-only `ci` identity (allow: [read])
 * then reads the migration state with the same tool, and is refused when it tries to migrate.
 * In CI a missing tool fails the test (scripts/ensure-client-tools.sh installs them).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXTURES, contractStack, libpqEnv, run, startApprover, tool } from "./client-tools.js";

const SCHEMA = `CREATE TABLE secrets (id int, value text); INSERT INTO secrets VALUES (1, 'x');`;
const SQITCH_ID = { SQITCH_FULLNAME: "Sluice Tests", SQITCH_EMAIL: "tests@sluice.invalid", SQITCH_USER_CONFIG: "/dev/null" };

test("migration tools with the contract's example policy: a deployer migrates (DDL approved from another process), a read-only identity reads the state", { timeout: 900_000 }, async (t) => {
  const stack = await contractStack(t, SCHEMA);
  const approver = await startApprover(t, stack, ["deployer-sqitch", "deployer-knex"]);
  const dir = mkdtempSync(join(tmpdir(), "sluice-migrations-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  await t.test("sqitch: deploy --verify as a deployer, status and verify as read-only, revert refused to read-only", async (tt: TestContext) => {
    if (!(await tool(tt, "sqitch"))) return;
    // a copy of the project: sqitch writes nothing there, but a run must not depend on the checkout
    const project = join(dir, "sqitch");
    cpSync(`${FIXTURES}sqitch`, project, { recursive: true });
    const target = `db:pg://${stack.host}:${stack.port}/${stack.resource}`;
    const deployerEnv = { ...(await libpqEnv(stack, { sub: "deployer-sqitch", groups: ["deployers"] })), ...SQITCH_ID };
    const deploy = await run("sqitch", ["deploy", "--verify", target], { env: deployerEnv, cwd: project, timeoutMs: 600_000 });
    assert.equal(deploy.code, 0, `sqitch deploy: ${deploy.stdout}\n${deploy.stderr}`);
    assert.match(deploy.stdout, /\+ widgets \.+ ok/);
    assert.match(deploy.stdout, /\+ widget_colour \.+ ok/);
    const rows = await stack.pgAdmin.query("SELECT id, name, colour FROM widgets ORDER BY id");
    assert.deepEqual(rows.rows, [{ id: 1, name: "sprocket", colour: "blue" }, { id: 2, name: "gear", colour: null }]);
    const changes = await stack.pgAdmin.query("SELECT change FROM sqitch.changes ORDER BY committed_at");
    assert.deepEqual(changes.rows.map((r) => r.change), ["widgets", "widget_colour"]);

    // every DDL (the registry's own and the project's) waited for the approver, none was refused
    const held = approver.approvals().filter((a) => a.requester === "deployer-sqitch");
    assert.ok(held.some((a) => /^CREATE TABLE widgets/.test(a.sql)), "the project's CREATE TABLE was held and approved");
    assert.ok(held.some((a) => /^ALTER TABLE widgets ADD COLUMN colour/.test(a.sql)));
    assert.ok(held.some((a) => /^CREATE SCHEMA IF NOT EXISTS "sqitch"/.test(a.sql)), "so was the registry's");
    for (const a of held) assert.equal(a.status, "approved");
    tt.diagnostic(`sqitch deploy: ${deploy.ms} ms, ${held.length} statements held and approved`);

    const readerEnv = { ...(await libpqEnv(stack, { sub: "ci-sqitch", groups: ["ci"] })), ...SQITCH_ID };
    const status = await run("sqitch", ["status", target], { env: readerEnv, cwd: project });
    assert.equal(status.code, 0, `sqitch status as read-only: ${status.stdout}\n${status.stderr}`);
    assert.match(status.stdout, /Change: +[0-9a-f]{40}\n# Name: +widget_colour/);
    assert.match(status.stdout, /Nothing to deploy \(up-to-date\)/);
    const verify = await run("sqitch", ["verify", target], { env: readerEnv, cwd: project });
    assert.equal(verify.code, 0, `sqitch verify as read-only: ${verify.stdout}\n${verify.stderr}`);
    assert.match(verify.stdout, /Verify successful/);
    const revert = await run("sqitch", ["revert", "-y", target], { env: readerEnv, cwd: project });
    assert.notEqual(revert.code, 0, "a read-only identity cannot revert");
    assert.match(revert.stdout + revert.stderr, /permission denied by sluice policy/);
    assert.equal((await stack.pgAdmin.query("SELECT count(*)::int AS n FROM widgets")).rows[0].n, 2, "nothing was reverted");
  });

  await t.test("knex: migrate:latest as a deployer, migrate:list as read-only, rollback refused to read-only", async (tt: TestContext) => {
    if (!(await tool(tt, "knex"))) return;
    const cli = createRequire(import.meta.url).resolve("knex/bin/cli.js");
    const knexfile = `${FIXTURES}knex/knexfile.cjs`;
    const knex = async (sub: string, groups: string[], args: string[]) =>
      run(process.execPath, [cli, "--knexfile", knexfile, ...args], { env: await libpqEnv(stack, { sub, groups }), timeoutMs: 600_000 });

    const latest = await knex("deployer-knex", ["deployers"], ["migrate:latest"]);
    assert.equal(latest.code, 0, `knex migrate:latest: ${latest.stdout}\n${latest.stderr}`);
    assert.match(latest.stdout, /Batch 1 run: 2 migrations/);
    const rows = await stack.pgAdmin.query("SELECT id, name, colour FROM gadgets ORDER BY id");
    assert.deepEqual(rows.rows, [{ id: 1, name: "sprocket", colour: "blue" }, { id: 2, name: "gear", colour: null }]);
    const held = approver.approvals().filter((a) => a.requester === "deployer-knex");
    assert.ok(held.some((a) => /^create table "gadgets"/i.test(a.sql)), JSON.stringify(held.map((a) => a.sql)));
    assert.ok(held.some((a) => /^alter table "gadgets" add column "colour"/i.test(a.sql)));
    assert.ok(held.some((a) => /knex_migrations/.test(a.sql)), "knex's own bookkeeping tables were held too");
    for (const a of held) assert.equal(a.status, "approved");
    tt.diagnostic(`knex migrate:latest: ${latest.ms} ms, ${held.length} statements held and approved`);

    const list = await knex("ci-knex", ["ci"], ["migrate:list"]);
    assert.equal(list.code, 0, `knex migrate:list as read-only: ${list.stdout}\n${list.stderr}`);
    assert.match(list.stdout, /Found 2 Completed Migration file\/files\./);
    assert.match(list.stdout, /No Pending Migration files Found\./);
    const rollback = await knex("ci-knex", ["ci"], ["migrate:rollback"]);
    assert.notEqual(rollback.code, 0, "a read-only identity cannot roll back");
    assert.match(rollback.stdout + rollback.stderr, /permission denied by sluice policy/);
    assert.equal((await stack.pgAdmin.query("SELECT count(*)::int AS n FROM gadgets")).rows[0].n, 2, "nothing was rolled back");
  });
});

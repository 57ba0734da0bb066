import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runSimulate } from "./policy-simulate.js";

const sluice = fileURLToPath(new URL("../sluice.js", import.meta.url));
const contractBundle = fileURLToPath(new URL("../../test/fixtures/policies/valid-contract.yaml", import.meta.url));

/** In process: the decision logic, output and exit codes. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const saved = { cp: process.env.SLUICE_CONTROL_PLANE, ctx: process.env.SLUICE_CONTEXT, tok: process.env.SLUICE_TOKEN };
  // no control plane in reach unless --policy is given
  process.env.SLUICE_CONTEXT = "/nonexistent/context.json";
  delete process.env.SLUICE_CONTROL_PLANE;
  delete process.env.SLUICE_TOKEN;
  try {
    const code = await runSimulate(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) });
    return { code, stdout, stderr };
  } finally {
    for (const [k, v] of [["SLUICE_CONTROL_PLANE", saved.cp], ["SLUICE_CONTEXT", saved.ctx], ["SLUICE_TOKEN", saved.tok]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Through the real `sluice` binary: the subcommand is wired and exit code 3 survives the dispatcher. */
function spawnCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // no control plane in reach: every case passes --policy (SLUICE_CONTEXT points nowhere)
    const env = { ...process.env, SLUICE_CONTEXT: "/nonexistent/context.json", SLUICE_CONTROL_PLANE: "", SLUICE_TOKEN: "" };
    execFile(process.execPath, [sluice, "policy", "simulate", ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test("policy simulate maps claims to groups with the issuer's rules and exits by decision", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-simulate-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ci = join(dir, "ci.json");
  writeFileSync(ci, JSON.stringify({ iss: "https://token.actions.githubusercontent.com", repository_owner: "acme", repository: "acme/web" }));
  const deployer = join(dir, "deployer.json");
  writeFileSync(deployer, JSON.stringify({ iss: "https://token.actions.githubusercontent.com", repository: "acme/orders", repository_owner: "acme", ref: "refs/heads/main" }));
  const common = ["--resource", "orders", "--policy", contractBundle];

  const allow = await run([...common, "--claims", ci, "--sql", "select * from orders"]);
  assert.equal(allow.code, 0, allow.stderr);
  assert.match(allow.stdout, /decision: +allow/);
  assert.match(allow.stdout, /rule: +ci-read\/allow:read/);
  assert.match(allow.stdout, /groups \[ci\] \(issuer github\)/);

  const deny = await run([...common, "--claims", ci, "--sql", "select 1; /* x */ DELETE FROM orders"]);
  assert.equal(deny.code, 1);
  assert.match(deny.stdout, /decision: +deny/);
  assert.match(deny.stdout, /rule: +default-deny/);
  assert.match(deny.stdout, /statement 2\/2 \(decides\): DELETE FROM orders/);

  const approve = await spawnCli([...common, "--claims", deployer, "--sql", "truncate orders", "--json"]);
  assert.equal(approve.code, 3, approve.stderr);
  const j = JSON.parse(approve.stdout);
  assert.equal(j.decision, "approve");
  assert.equal(j.rule, "deployers/requireApproval:truncate");
  assert.deepEqual(j.groups, ["deployers", "ci"]);
  assert.deepEqual(j.approval, { approvers: ["dba"], timeoutMs: 600_000 });
  assert.deepEqual(j.statements[0].risks, ["truncate"]);

  const file = join(dir, "q.sql");
  writeFileSync(file, "select * from public.secrets");
  const denied = await run([...common, "--groups", "deployers", "--file", file, "--json"]);
  assert.equal(denied.code, 1);
  assert.equal(JSON.parse(denied.stdout).rule, "deployers/tables.deny:public.secrets");

  const garbage = await run([...common, "--groups", "ci", "--sql", "selec 1", "--json"]);
  assert.equal(garbage.code, 1);
  assert.equal(JSON.parse(garbage.stdout).rule, "parse-error");
});

test("policy simulate usage errors exit 2; a bad bundle or missing control plane exits 1 with one line", async () => {
  assert.equal((await run(["--sql", "select 1", "--groups", "ci"])).code, 2);
  assert.equal((await run(["--resource", "orders", "--groups", "ci"])).code, 2);
  assert.equal((await run(["--resource", "orders", "--sql", "select 1"])).code, 2);
  const noCp = await run(["--resource", "orders", "--groups", "ci", "--sql", "select 1"]);
  assert.equal(noCp.code, 1);
  assert.equal(noCp.stderr.trim().split("\n").length, 1);
  const bad = await run(["--resource", "orders", "--groups", "ci", "--sql", "select 1", "--policy", "/nonexistent.yaml"]);
  assert.equal(bad.code, 1);
});

test("policy simulate scopes policies by the chosen issuer, as the data plane does", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-simulate-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const policy = join(dir, "scoped.yaml");
  writeFileSync(policy, [
    "issuers:",
    "  - name: github",
    "    issuer: https://token.actions.githubusercontent.com",
    "    audience: sluice",
    "    jwksUrl: https://token.actions.githubusercontent.com/.well-known/jwks",
    "    groups: [{ group: deployers, when: { repository: acme/orders } }]",
    "  - name: dev",
    "    issuer: http://127.0.0.1:8900",
    "    audience: sluice",
    "    jwksUrl: http://127.0.0.1:8900/jwks",
    "    groups: [{ claim: groups }]",
    "resources:",
    "  - name: orders",
    "    upstream: { host: 127.0.0.1, port: 5432, database: orders, user: svc, password: env:PW }",
    "policies:",
    "  - name: deployers",
    "    groups: [deployers]",
    "    resources: [orders]",
    "    issuers: [github]",
    "    allow: [read, write, ddl]",
    "",
  ].join("\n"));
  const gh = join(dir, "gh.json");
  writeFileSync(gh, JSON.stringify({ iss: "https://token.actions.githubusercontent.com", repository: "acme/orders" }));
  const dev = join(dir, "dev.json");
  // the dev issuer maps a `groups` claim: it can name any group, `deployers` included
  writeFileSync(dev, JSON.stringify({ iss: "http://127.0.0.1:8900", groups: ["deployers"] }));
  const common = ["--resource", "orders", "--policy", policy, "--sql", "create table t (id int)", "--json"];

  const fromGithub = await run([...common, "--claims", gh]);
  assert.equal(fromGithub.code, 0, fromGithub.stderr);
  assert.deepEqual([JSON.parse(fromGithub.stdout).rule, JSON.parse(fromGithub.stdout).issuer], ["deployers/allow:ddl", "github"]);

  const fromDev = await run([...common, "--claims", dev]);
  assert.equal(fromDev.code, 1, fromDev.stderr);
  const j = JSON.parse(fromDev.stdout);
  assert.deepEqual([j.rule, j.issuer, j.groups], ["default-deny", "dev", ["deployers"]]);

  // --groups: no issuer unless named, so the scoped policy does not apply
  assert.equal((await run([...common, "--groups", "deployers"])).code, 1);
  assert.equal((await run([...common, "--groups", "deployers", "--issuer", "github"])).code, 0);
  const unknown = await run([...common, "--groups", "deployers", "--issuer", "gitlab"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no issuer named "gitlab"/);
});

test("policy simulate shows the built-in allowance that allowed each statement, and warns about utility listed for nothing", async (t) => {
  const common = ["--resource", "orders", "--policy", contractBundle, "--groups", "ci"];
  const jdbc = await run([...common, "--sql", "SET extra_float_digits = 3"]);
  assert.equal(jdbc.code, 0, jdbc.stderr);
  assert.match(jdbc.stdout, /rule: +implicit:session-setting/);
  assert.match(jdbc.stdout, /allow by implicit:session-setting \(built in: every connected identity may, whatever classes its policies list\)/);

  const txn = await run([...common, "--json", "--sql", "BEGIN; DECLARE c CURSOR FOR SELECT * FROM orders; FETCH 10 FROM c; CLOSE c; COMMIT"]);
  assert.equal(txn.code, 0, txn.stderr);
  const out = JSON.parse(txn.stdout) as { rule: string; statements: Array<{ rule: string; baseline: string | null }>; warnings: unknown[] };
  assert.equal(out.rule, "ci-read/allow:read");
  assert.deepEqual(out.statements.map((s) => s.rule), [
    "implicit:transaction-control", "ci-read/allow:read", "implicit:cursor", "implicit:cursor", "implicit:transaction-control",
  ]);
  assert.deepEqual(out.statements.map((s) => s.baseline), ["transaction-control", null, "cursor", "cursor", "transaction-control"]);
  assert.deepEqual(out.warnings, []);

  const dir = mkdtempSync(join(tmpdir(), "sluice-simulate-utility-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const withUtility = join(dir, "utility.yaml");
  const { readFileSync } = await import("node:fs");
  writeFileSync(withUtility, readFileSync(contractBundle, "utf8").replace("allow: [read]\n", "allow: [read, utility]\n"));
  const warned = await run(["--resource", "orders", "--policy", withUtility, "--groups", "ci", "--sql", "LISTEN jobs"]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(warned.stdout, /rule: +ci-read\/allow:utility/);
  assert.match(warned.stdout, /^warning: \/policies\/0\/allow\/1: policy ci-read allows utility: transaction control, SHOW/m);
});

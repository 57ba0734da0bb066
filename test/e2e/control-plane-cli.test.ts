/**
 * `sluice policy …` end to end: the real CLI (node bin/sluice.js) against an in-process control plane
 * on its own NATS prefix. Bad documents are refused locally with path:line:col and a one-line reason,
 * exit 1, and nothing is appended.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { startTestControlPlane, bundleYaml, type TestControlPlane } from "../../control-plane/src/testing/test-control-plane.js";
import { runSluice, type CliResult } from "../lib/run-sluice.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

function sluice(h: TestControlPlane, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runSluice(args, {
    SLUICE_CONTEXT: join(tmpdir(), "sluice-no-context.json"),
    SLUICE_CONTROL_PLANE: h.address,
    SLUICE_TOKEN: h.adminToken,
    ...env,
  });
}

async function controlMessages(h: TestControlPlane): Promise<number> {
  return (await (await jetstreamManager(h.nc)).streams.info(h.names.controlStream)).state.messages;
}

test("sluice policy apply refuses each kind of bad document with path:line:col, exit 1, nothing appended", async (t) => {
  const h = await startTestControlPlane(t);
  const dir = mkdtempSync(join(tmpdir(), "sluice-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks });
  const lineOf = (text: string, needle: string) => text.split("\n").findIndex((l) => l.includes(needle)) + 1;
  const cases: Array<{ name: string; text: string; line: (t: string) => number; reason: RegExp }> = [
    { name: "yaml-error", text: good.replace("groups: [ci, dba]", "groups: [ci, dba"), line: () => 0, reason: /YAML/i },
    { name: "unknown-class", text: good.replace("allow: [read]", "allow: [read, reed]"), line: (x) => lineOf(x, "reed"), reason: /reed/ },
    {
      name: "duplicate-resource",
      text: good.replace("policies:", "  - name: orders\n    upstream: { host: 127.0.0.1, port: 5432, database: o2, user: u, password: env:X }\npolicies:"),
      line: (x) => x.split("\n").findIndex((l, i) => i > lineOf(x, "resources:") && l.includes("name: orders") && x.split("\n")[i + 1]?.includes("o2")) + 1,
      reason: /duplicate|orders/i,
    },
    { name: "unknown-group", text: good.replace("groups: [ci]\n", "groups: [nobody]\n"), line: (x) => lineOf(x, "[nobody]"), reason: /unknown group "nobody"/ },
    { name: "unknown-resource", text: good.replace("resources: [orders]", "resources: [billing]"), line: (x) => lineOf(x, "[billing]"), reason: /unknown resource "billing"/ },
    {
      name: "unknown-issuer",
      text: good.replace("    allow: [read]", "    issuers: [gitlab]\n    allow: [read]"),
      line: (x) => lineOf(x, "[gitlab]"),
      // a policy scoped to an issuer the bundle does not define: located at the reference
      reason: /^unknown issuer "gitlab" in policies\[0\]\.issuers \(known: dev\)$/,
    },
    {
      name: "missing-credential",
      text: good.replace(", password: env:ORDERS_DB_PASSWORD", ""),
      line: (x) => lineOf(x, "upstream:"),
      reason: /credential reference/,
    },
  ];
  const results = await Promise.all(
    cases.map(async (c) => {
      const file = join(dir, `${c.name}.yaml`);
      writeFileSync(file, c.text);
      return { c, file, r: await sluice(h, ["policy", "apply", file]) };
    }),
  );
  for (const { c, file, r } of results) {
    assert.equal(r.code, 1, `${c.name}: exit code (stderr: ${r.stderr})`);
    assert.equal(r.stdout, "", c.name);
    const lines = r.stderr.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, `${c.name}: one line on stderr, got ${JSON.stringify(r.stderr)}`);
    const m = new RegExp(`^sluice: ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:(\\d+):(\\d+): (.+)$`).exec(lines[0]!);
    assert.ok(m, `${c.name}: path:line:col in ${JSON.stringify(lines[0])}`);
    assert.match(m[3]!, c.reason, c.name);
    const want = c.line(c.text);
    if (want > 0) assert.equal(Number(m[1]), want, `${c.name}: line of ${JSON.stringify(lines[0])}`);
    else assert.ok(Number(m[1]) >= 1);
  }
  assert.equal(await controlMessages(h), 0, "nothing appended");
});

test("sluice policy apply/get/history/diff against the control plane", async (t) => {
  const h = await startTestControlPlane(t);
  const dir = mkdtempSync(join(tmpdir(), "sluice-cli-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const v1 = join(dir, "v1.yaml");
  const v2 = join(dir, "v2.yaml");
  writeFileSync(v1, bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks }));
  writeFileSync(v2, bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks, extraPolicy: "  - name: dba-read\n    groups: [dba]\n    resources: [orders]\n    allow: [read]\n" }));

  const a1 = await sluice(h, ["policy", "apply", v1]);
  assert.equal(a1.code, 0, a1.stderr);
  assert.match(a1.stdout, /^applied revision 1 \([0-9a-f]{12}\): \+issuer dev, \+resource orders, \+policy ci-read\n$/);
  const a2 = await sluice(h, ["policy", "apply", v2, "--expected-revision", "1", "--json"]);
  assert.equal(a2.code, 0, a2.stderr);
  assert.equal(JSON.parse(a2.stdout).revision, 2);

  const [stale, get, getJson, hist, histJson, diff, usage] = await Promise.all([
    sluice(h, ["policy", "apply", v1, "--expected-revision", "1"]),
    sluice(h, ["policy", "get"]),
    sluice(h, ["policy", "get", "--json"]),
    sluice(h, ["policy", "history"]),
    sluice(h, ["policy", "history", "--json"]),
    sluice(h, ["policy", "diff", "1", "2"]),
    sluice(h, ["policy", "apply"]),
  ]);
  assert.equal(stale.code, 1);
  assert.equal(stale.stderr, "sluice: policy changed since revision 1 (now 2); re-run with the current revision\n");

  assert.equal(get.code, 0, get.stderr);
  assert.match(get.stdout, /^# revision 2 \([0-9a-f]{12}\) applied by dev:alice at \S+ from .*v2\.yaml\n/);
  assert.match(get.stdout, /name: dba-read/);
  const g = JSON.parse(getJson.stdout);
  assert.equal(g.revision, 2);
  assert.deepEqual(g.bundle.policies.map((p: { name: string }) => p.name), ["ci-read", "dba-read"]);

  assert.equal(hist.code, 0, hist.stderr);
  assert.match(hist.stdout, /^revision 1  \S+  by dev:alice  from .*v1\.yaml  \+issuer dev, \+resource orders, \+policy ci-read$/m);
  assert.match(hist.stdout, /^revision 2  \S+  by dev:alice  from .*v2\.yaml  \+policy dba-read$/m);
  assert.match(hist.stdout, /^ {4}\+ {2}- name: dba-read$/m);
  const hj = JSON.parse(histJson.stdout);
  assert.deepEqual(hj.map((r: { revision: number; appliedBy: string }) => [r.revision, r.appliedBy]), [[1, "dev:alice"], [2, "dev:alice"]]);

  assert.equal(diff.code, 0, diff.stderr);
  assert.match(diff.stdout, /^--- revision 1\n\+\+\+ revision 2\n@@ /);
  assert.match(diff.stdout, /^\+ {2}- name: dba-read$/m);
  assert.equal(usage.code, 2);

  const noAuth = await sluice(h, ["policy", "get"], { SLUICE_TOKEN: "garbage" });
  assert.equal(noAuth.code, 1);
  assert.match(noAuth.stderr, /^sluice: token rejected/);
  assert.equal(await controlMessages(h), 2);
});

test("sluice control-plane runs in the foreground from a config file and stops cleanly on SIGTERM", async (t) => {
  const { connect } = await import("@nats-io/transport-node");
  const { createDevIssuer, devIssuerSpec } = await import("@sluice/shared/auth");
  const { deleteAll } = await import("@sluice/shared/nats");
  const { randomPrefix, NATS_URL } = await import("../../control-plane/src/testing/test-control-plane.js");
  const { PolicyServiceClient } = await import("@sluice/proto");
  const { credentials, Metadata } = await import("@grpc/grpc-js");
  const prefix = randomPrefix();
  const nc = await connect({ servers: NATS_URL });
  const dir = mkdtempSync(join(tmpdir(), "sluice-cp-"));
  t.after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  const dev = await createDevIssuer({ issuer: `http://127.0.0.1/${prefix}`, audience: "sluice-control-plane" });
  const cfg = join(dir, "control-plane.yaml");
  writeFileSync(
    cfg,
    JSON.stringify({
      nats: { url: NATS_URL, prefix },
      logLevel: "info",
      controlPlane: {
        grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", adminGroups: ["ops"], issuers: [devIssuerSpec(dev)],
        // the audit component's read model (and its dev sealer key beside it) in this test's folder
        readModel: { dialect: "sqlite", url: join(dir, "read-model.sqlite") },
      },
    }),
  );
  const child = spawn(process.execPath, [join(root, "bin/sluice.js"), "control-plane", "--config", cfg], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => child.kill("SIGKILL"));
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d) => {
      stdout += d;
      const m = /sluice control-plane ready grpc=(\S+) http=(\d+)/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  const token = await dev.mint({ sub: "ops-person", groups: ["ops"] });
  const client = new PolicyServiceClient(address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  const got = await new Promise<unknown>((resolve, reject) =>
    client.get({}, md, (e, r) => (e ? reject(e) : resolve(r))),
  );
  client.close();
  assert.deepEqual(got, { snapshot: undefined });
  child.kill("SIGTERM");
  assert.equal(await exited, 0, stderr);
  assert.match(stderr, /control plane stopped/);
  assert.ok(!stderr.includes(token));
});

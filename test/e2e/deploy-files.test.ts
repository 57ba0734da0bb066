/**
 * Every deployment file is checked offline with the tools that would reject it in production:
 * each NATS server config of deploy/nats with `nats-server -t` (it opens the TLS files and the
 * included operator/account block, so those are made for real: a CA-signed pair and
 * `sluice nats-auth init`), and each Kubernetes manifest against the Kubernetes OpenAPI schema
 * (kubernetes-models, no cluster needed). The systemd units name the command they run once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { createNatsAuth, natsNames } from "@sluice/shared/nats";
import { loadConfig } from "@sluice/shared/config";
import { ensureDevCertificate } from "../../bin/lib/dev-tls.js";

const deploy = fileURLToPath(new URL("../../deploy/", import.meta.url));

test("every NATS server config (3 servers x 2 regions, gateways, TLS, operator mode) passes nats-server -t", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-deploy-nats-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(deploy, "nats"), dir, { recursive: true });
  const cert = await ensureDevCertificate(join(dir, "tls-src"));
  cpSync(cert.certFile, join(dir, "tls", "server.pem"));
  cpSync(cert.keyFile, join(dir, "tls", "server-key.pem"));
  cpSync(cert.certFile, join(dir, "tls", "ca.pem"));
  writeFileSync(join(dir, "auth.conf"), (await createNatsAuth(natsNames(""))).serverConfig());
  const servers = readdirSync(dir).filter((f) => /^nats-(eu|us)-\d\.conf$/.test(f)).sort();
  assert.deepEqual(servers, ["nats-eu-1.conf", "nats-eu-2.conf", "nats-eu-3.conf", "nats-us-1.conf", "nats-us-2.conf", "nats-us-3.conf"]);
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".conf"))) {
    const p = join(dir, f);
    writeFileSync(p, readFileSync(p, "utf8").replaceAll("/etc/nats/", `${dir}/`).replaceAll("/var/lib/nats/", `${dir}/var/`));
  }
  for (const f of servers) {
    const r = spawnSync("nats-server", ["-t", "-c", join(dir, f)], { encoding: "utf8" });
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    assert.match(r.stdout + r.stderr, /is valid/, f);
  }
  // the check is real: a config with an unknown key is refused
  writeFileSync(join(dir, "bad.conf"), "include ./nats-eu-1.conf\nbogus_key: 1\n");
  assert.notEqual(spawnSync("nats-server", ["-t", "-c", join(dir, "bad.conf")]).status, 0);
});

type K8sObject = { apiVersion: string; kind: string; metadata?: { name?: string } };

/** The kubernetes-models class of an object, by apiVersion and kind. */
async function modelOf(o: K8sObject): Promise<new (data: unknown) => { validate(): void }> {
  const [group, version] = o.apiVersion.includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  const path = group ? `kubernetes-models/${group === "policy" ? "policy" : group}/${version}/${o.kind}` : `kubernetes-models/${version}/${o.kind}`;
  const mod = (await import(path)) as Record<string, new (data: unknown) => { validate(): void }>;
  const M = mod[o.kind];
  if (!M) throw new Error(`no model for ${o.apiVersion} ${o.kind}`);
  return M;
}

test("every Kubernetes manifest validates against the Kubernetes schema; the shape the fleet needs is there", async () => {
  const files = readdirSync(join(deploy, "kubernetes")).filter((f) => f.endsWith(".yaml") && f !== "nats-values.yaml");
  const objects: Array<K8sObject & Record<string, unknown>> = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(readFileSync(join(deploy, "kubernetes", f), "utf8"))) {
      assert.equal(doc.errors.length, 0, `${f}: ${doc.errors[0]?.message}`);
      const o = doc.toJS() as K8sObject & Record<string, unknown>;
      const M = await modelOf(o);
      assert.doesNotThrow(() => new M(o).validate(), `${f}: ${o.kind}/${o.metadata?.name}`);
      objects.push(o);
    }
  }
  // the check is real: a wrong type is refused
  const bad = structuredClone(objects.find((o) => o.kind === "Deployment")!) as Record<string, any>;
  bad.spec.replicas = "two";
  const M = await modelOf(bad as K8sObject);
  assert.throws(() => new M(bad).validate());
  const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name) as Record<string, any> | undefined;
  const cp = find("Deployment", "sluice-control-plane");
  assert.ok(cp && cp.spec.replicas >= 2, "control plane: a Deployment with at least 2 replicas");
  for (const region of ["eu", "us"]) {
    const dp = find("Deployment", `sluice-data-plane-${region}`);
    assert.ok(dp, `a data-plane Deployment in ${region}`);
    assert.ok(find("Service", `sluice-data-plane-${region}`), `a data-plane Service in ${region}`);
    assert.ok(find("PodDisruptionBudget", `sluice-data-plane-${region}`));
    const c = dp.spec.template.spec.containers[0];
    assert.equal(c.readinessProbe.httpGet.path, "/readyz");
    assert.equal(c.livenessProbe.httpGet.path, "/healthz");
    // its config: least privilege, replicas 3, and it loads
    const cm = find("ConfigMap", `sluice-data-plane-${region}`)!;
    const tmp = join(mkdtempSync(join(tmpdir(), "sluice-cm-")), "dp.yaml");
    writeFileSync(tmp, cm.data["data-plane.yaml"]);
    const cfg = loadConfig(tmp, {});
    assert.equal(cfg.nats.manageStreams, false);
    assert.equal(cfg.nats.replicas, 3);
  }
  assert.ok(find("PodDisruptionBudget", "sluice-control-plane"));
  assert.ok(objects.some((o) => o.kind === "NetworkPolicy" && o.metadata?.name === "default-deny"));
  // no secret material inline: every secret comes from a Secret object
  for (const o of objects) assert.notEqual(o.kind, "Secret", "secrets are created out of band, never committed");
  assert.equal(cp.spec.template.spec.containers[0].readinessProbe.httpGet.path, "/readyz");
});

// what `npm run build` writes for bin/cli.ts (bin/tsconfig.build.json: outDir ../dist/bin)
const COMPILED_ENTRY = "dist/bin/cli.js";

test("the systemd units run the compiled sluice command from one ExecStart line each", () => {
  const outDir = (JSON.parse(readFileSync(join(deploy, "..", "bin", "tsconfig.build.json"), "utf8")) as { compilerOptions: { outDir: string } }).compilerOptions.outDir;
  assert.equal(`${outDir.replace(/^\.\.\//, "")}/cli.js`, COMPILED_ENTRY);
  for (const unit of ["sluice-control-plane.service", "sluice-data-plane.service"]) {
    const text = readFileSync(join(deploy, "systemd", unit), "utf8");
    const exec = text.split("\n").filter((l) => l.startsWith("ExecStart="));
    assert.equal(exec.length, 1, unit);
    assert.match(exec[0]!, /^ExecStart=\/usr\/bin\/node \$\{SLUICE_ENTRY\} (control-plane|data-plane) --config \/etc\/sluice\//);
    assert.match(text, new RegExp(`^Environment=SLUICE_ENTRY=/opt/sluice/${COMPILED_ENTRY}$`, "m"), `${unit} runs the compiled output`);
    assert.match(text, /npm run build/, `${unit} says how the install is built`);
  }
});

test("the image runs the compiled sluice command, built by npm run build", () => {
  const text = readFileSync(join(deploy, "Dockerfile"), "utf8");
  assert.match(text, /^RUN npm ci .*&& npm run build && npm prune --omit=dev/m);
  assert.match(text, new RegExp(`^ENTRYPOINT \\["node", "/opt/sluice/${COMPILED_ENTRY}"\\]$`, "m"));
  assert.doesNotMatch(text, /tsx/);
});

import test from "node:test";
import assert from "node:assert/strict";
import { jetstreamManager, jetstream, DeliverPolicy } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { status, type ServiceError } from "@grpc/grpc-js";
import { PolicyProblems, type ApplyPolicyResponse, type GetPolicyResponse, type PolicyDiffResponse, type PolicyHistoryResponse } from "@sluice/proto";
import { uuidv7, verifyChain, decodeEvent, type CloudEvent } from "@sluice/shared/events";
import type { PolicySnapshot } from "@sluice/shared/policy";
import { startTestControlPlane, bundleYaml, ADMIN_GROUP, type TestControlPlane } from "./testing/test-control-plane.js";

function yamlFor(h: TestControlPlane, extraPolicy = "", password?: string): string {
  return bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks, extraPolicy, ...(password ? { password } : {}) });
}
const writers = `  - name: ci-write
    groups: [ci]
    resources: [orders]
    allow: [read, write]
`;
const dbaRead = `  - name: dba-read
    groups: [dba]
    resources: [orders]
    allow: [read]
`;

async function controlEvents(h: TestControlPlane): Promise<CloudEvent[]> {
  const jsm = await jetstreamManager(h.nc);
  const info = await jsm.streams.info(h.names.controlStream);
  if (info.state.messages === 0) return [];
  const c = await jetstream(h.nc).consumers.get(h.names.controlStream, { deliver_policy: DeliverPolicy.All });
  const out: CloudEvent[] = [];
  const it = await c.consume();
  for await (const m of it) {
    out.push(decodeEvent(m.data));
    if (m.info.pending === 0) break;
  }
  it.stop();
  return out;
}

async function kvSnapshot(h: TestControlPlane): Promise<{ snap: PolicySnapshot; kvRevision: number } | undefined> {
  const kv = await new Kvm(h.nc).open(h.names.snapshotBucket);
  const e = await kv.get("policy");
  return e && e.operation === "PUT" ? { snap: e.json<PolicySnapshot>(), kvRevision: e.revision } : undefined;
}

const apply = (h: TestControlPlane, text: string, expectedRevision = 0, commandId = uuidv7()) =>
  h.call<ApplyPolicyResponse>("apply", { bundleYaml: text, sourcePath: "policy.yaml", expectedRevision, commandId });

test("apply, get, history and diff; the KV snapshot follows every apply", async (t) => {
  const h = await startTestControlPlane(t);
  assert.deepEqual(await h.call<GetPolicyResponse>("get", {}), { snapshot: undefined });

  const r1 = await apply(h, yamlFor(h));
  assert.equal(r1.revision, 1);
  assert.equal(r1.unchanged, false);
  assert.deepEqual(r1.changes.map((c) => `${c.op} ${c.kind} ${c.name}`), ["added issuer dev", "added resource orders", "added policy ci-read"]);
  let kv = await kvSnapshot(h);
  assert.equal(kv?.snap.revision, 1);
  assert.equal(kv?.snap.hash, r1.hash);
  assert.equal(kv?.snap.appliedBy, "dev:alice");
  assert.equal(kv?.snap.bundle.resources[0]?.upstream.password, "env:ORDERS_DB_PASSWORD");
  const kvRev1 = kv!.kvRevision;

  const r2 = await apply(h, yamlFor(h, writers), 1);
  assert.equal(r2.revision, 2);
  assert.deepEqual(r2.changes, [{ kind: "policy", name: "ci-write", op: "added" }]);
  assert.match(r2.diff, /^\+  - name: ci-write$/m);
  kv = await kvSnapshot(h);
  assert.equal(kv?.snap.revision, 2);
  assert.equal(kv?.snap.hash, r2.hash);
  assert.deepEqual(kv?.snap.bundle.policies.map((p) => p.name), ["ci-read", "ci-write"]);
  assert.ok(kv!.kvRevision > kvRev1);

  const got = await h.call<GetPolicyResponse>("get", {});
  assert.equal(got.snapshot?.revision, 2);
  assert.equal(got.snapshot?.hash, r2.hash);
  assert.equal(got.snapshot?.appliedBy, "dev:alice");
  assert.equal(got.snapshot?.sourcePath, "policy.yaml");
  assert.deepEqual(JSON.parse(got.snapshot!.bundleJson), kv!.snap.bundle);
  assert.match(got.snapshot!.bundleYaml, /name: ci-write/);

  const hist = await h.call<PolicyHistoryResponse>("history", { limit: 0 });
  assert.deepEqual(hist.revisions.map((r) => [r.revision, r.appliedBy, r.hash]), [[1, "dev:alice", r1.hash], [2, "dev:alice", r2.hash]]);
  assert.match(hist.revisions[0]!.diff, /^--- revision 0\n\+\+\+ revision 1\n/);
  assert.match(hist.revisions[1]!.diff, /^\+    groups: \[ ci \]$|^\+  - name: ci-write$/m);

  const d = await h.call<PolicyDiffResponse>("diff", { fromRevision: 1, toRevision: 2 });
  assert.equal(d.diff, r2.diff);
  await assert.rejects(h.call("diff", { fromRevision: 1, toRevision: 9 }), (e: ServiceError) => e.code === status.NOT_FOUND);

  // the same document again appends nothing
  const r3 = await apply(h, yamlFor(h, writers));
  assert.equal(r3.unchanged, true);
  assert.equal(r3.revision, 2);

  // events: CloudEvents with the per-aggregate hash chain, one per applied revision
  const evs = await controlEvents(h);
  assert.deepEqual(evs.map((e) => e.type), ["dev.sluice.control.policy.bundle_applied.v1", "dev.sluice.control.policy.bundle_applied.v1"]);
  assert.deepEqual(evs.map((e) => e.sluicesessionseq), [1, 2]);
  assert.equal(evs[0]!.source, "sluice://control-plane");
  assert.equal(verifyChain(evs), undefined);
});

test("two concurrent applies from the same revision: exactly one wins, the other is ABORTED", async (t) => {
  const h = await startTestControlPlane(t);
  await apply(h, yamlFor(h));
  for (let round = 0; round < 3; round++) {
    const base = (await h.call<GetPolicyResponse>("get", {})).snapshot!.revision;
    const results = await Promise.allSettled([
      apply(h, yamlFor(h, writers + `  - name: a${round}\n    groups: [ci]\n    resources: [orders]\n    allow: [read]\n`), base),
      apply(h, yamlFor(h, dbaRead + `  - name: b${round}\n    groups: [ci]\n    resources: [orders]\n    allow: [read]\n`), base),
    ]);
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(ok.length, 1, `round ${round}: exactly one wins`);
    assert.equal((ok[0] as PromiseFulfilledResult<ApplyPolicyResponse>).value.revision, base + 1);
    assert.equal(failed.length, 1);
    const err = failed[0]!.reason as ServiceError;
    assert.equal(err.code, status.ABORTED);
    assert.match(err.details, new RegExp(`policy changed since revision ${base} \\(now ${base + 1}\\); re-run with the current revision`));
  }
  const evs = await controlEvents(h);
  assert.equal(evs.length, 4);
});

test("concurrent applies on top of whatever is current are retried and all land", async (t) => {
  const h = await startTestControlPlane(t);
  await apply(h, yamlFor(h));
  const n = 4;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => apply(h, yamlFor(h, `  - name: p${i}\n    groups: [ci]\n    resources: [orders]\n    allow: [read]\n`), 0)),
  );
  assert.deepEqual(results.map((r) => r.revision).sort(), [2, 3, 4, 5]);
  const evs = await controlEvents(h);
  assert.equal(evs.length, n + 1);
  assert.equal(verifyChain(evs), undefined);
  assert.equal((await kvSnapshot(h))?.snap.revision, 5);
});

test("a re-sent command with the same id appends nothing", async (t) => {
  const h = await startTestControlPlane(t);
  const id = uuidv7();
  const first = await apply(h, yamlFor(h), 0, id);
  const again = await apply(h, yamlFor(h), 0, id);
  assert.equal(again.revision, first.revision);
  assert.equal(again.duplicate, true);
  // even with a different document and a stale expectation: the command already happened
  const third = await apply(h, yamlFor(h, writers), 0, id);
  assert.equal(third.duplicate, true);
  assert.equal(third.revision, 1);
  // two copies racing each other: still one event
  const id2 = uuidv7();
  const race = await Promise.all([apply(h, yamlFor(h, writers), 1, id2), apply(h, yamlFor(h, writers), 1, id2)]);
  assert.deepEqual(race.map((r) => r.revision), [2, 2]);
  assert.equal((await controlEvents(h)).length, 2);
  assert.equal(race.filter((r) => r.duplicate).length, 1);
});

test("restarting the control plane rebuilds the same state and snapshot from the stream", async (t) => {
  const h = await startTestControlPlane(t);
  await apply(h, yamlFor(h));
  const r2 = await apply(h, yamlFor(h, writers));
  const before = await h.call<GetPolicyResponse>("get", {});
  const histBefore = await h.call<PolicyHistoryResponse>("history", { limit: 0 });
  const kvBefore = await kvSnapshot(h);
  // lose the snapshot bucket entirely: the projection must rebuild it from SLUICE_CONTROL
  await h.cp.stop();
  await (await new Kvm(h.nc).open(h.names.snapshotBucket)).destroy();
  await h.restart();
  const after = await h.call<GetPolicyResponse>("get", {});
  assert.deepEqual(after, before);
  assert.deepEqual(await h.call<PolicyHistoryResponse>("history", { limit: 0 }), histBefore);
  const kvAfter = await kvSnapshot(h);
  assert.deepEqual(kvAfter?.snap, kvBefore?.snap);
  assert.equal(kvAfter?.snap.revision, r2.revision);
  // and it keeps going from there
  const r3 = await apply(h, yamlFor(h, writers + dbaRead), r2.revision);
  assert.equal(r3.revision, 3);
  assert.equal((await kvSnapshot(h))?.snap.revision, 3);
});

test("an older replica never overwrites a newer snapshot", async (t) => {
  const h = await startTestControlPlane(t);
  await apply(h, yamlFor(h));
  await apply(h, yamlFor(h, writers));
  const { writeSnapshotCas } = await import("./projections/snapshot-kv-writer.js");
  const kv = await new Kvm(h.nc).open(h.names.snapshotBucket);
  const current = (await kvSnapshot(h))!;
  const stale: PolicySnapshot = { ...current.snap, revision: 1 };
  assert.equal(await writeSnapshotCas(kv, "policy", stale), "newer-present");
  assert.deepEqual((await kvSnapshot(h))?.snap, current.snap);
});

test("callers need a valid token from a trusted issuer and an admin group", async (t) => {
  const h = await startTestControlPlane(t);
  await assert.rejects(h.call("get", {}, null), (e: ServiceError) => e.code === status.UNAUTHENTICATED && /bearer token/.test(e.details));
  await assert.rejects(h.call("get", {}, "not-a-jwt"), (e: ServiceError) => e.code === status.UNAUTHENTICATED);
  const expired = await h.dev.mint({ sub: "alice", groups: [ADMIN_GROUP], now: new Date(Date.now() - 3_600_000), ttlSec: 60 });
  await assert.rejects(h.call("get", {}, expired), (e: ServiceError) => e.code === status.UNAUTHENTICATED);
  const ci = await h.dev.mint({ sub: "pipeline", groups: ["ci"] });
  await assert.rejects(apply(h, yamlFor(h)).then(() => h.call("apply", { bundleYaml: yamlFor(h, writers), sourcePath: "x", expectedRevision: 0, commandId: uuidv7() }, ci)),
    (e: ServiceError) => e.code === status.PERMISSION_DENIED && /sluice-admins/.test(e.details));
  assert.equal((await controlEvents(h)).length, 1);
});

test("bad input is rejected with located problems in the trailer, and nothing is appended", async (t) => {
  const h = await startTestControlPlane(t);
  const bad = yamlFor(h).replace("allow: [read]", "allow: [read, reed]");
  await assert.rejects(apply(h, bad), (e: ServiceError) => {
    assert.equal(e.code, status.INVALID_ARGUMENT);
    assert.match(e.details, /^policy\.yaml:\d+:\d+: .*reed/);
    const raw = e.metadata.get("sluice-problems-bin")[0] as Buffer;
    const problems = PolicyProblems.decode(raw).problems;
    assert.ok(problems.length >= 1);
    assert.equal(problems[0]!.path, "policy.yaml");
    assert.equal(problems[0]!.line, bad.split("\n").findIndex((l) => l.includes("reed")) + 1);
    assert.equal(problems[0]!.pointer, "/policies/0/allow/1");
    return true;
  });
  await assert.rejects(apply(h, "issuers: [\n"), (e: ServiceError) => e.code === status.INVALID_ARGUMENT);
  assert.equal((await controlEvents(h)).length, 0);
});

test("no token and no credential value appears in any log line, event, snapshot or error", async (t) => {
  const secret = "S3cr3t-" + uuidv7();
  process.env.SLUICE_TEST_ORDERS_PW = secret;
  t.after(() => delete process.env.SLUICE_TEST_ORDERS_PW);
  const h = await startTestControlPlane(t);
  const ok = bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks, password: "env:SLUICE_TEST_ORDERS_PW" });
  await apply(h, ok);
  // a value typed where a reference belongs is refused without being echoed
  const leaked = bundleYaml({ issuerUrl: h.dev.issuer, jwks: h.dev.jwks, password: secret });
  let refusal = "";
  await assert.rejects(apply(h, leaked), (e: ServiceError) => {
    refusal = e.details + PolicyProblems.decode(e.metadata.get("sluice-problems-bin")[0] as Buffer).problems.map((p) => p.message).join();
    return e.code === status.INVALID_ARGUMENT;
  });
  // a refused caller's token must not be logged either
  const ci = await h.dev.mint({ sub: "pipeline", groups: ["ci"] });
  await assert.rejects(h.call("get", {}, ci));
  await h.call("history", { limit: 0 });
  await h.call("get", {});

  const events = JSON.stringify(await controlEvents(h));
  const snapshot = JSON.stringify(await kvSnapshot(h));
  const logs = h.logs.join("");
  assert.ok(h.logs.length > 3, "the run logged something");
  assert.match(logs, /policy bundle applied/);
  assert.match(events, /env:SLUICE_TEST_ORDERS_PW/);
  for (const [where, text] of [["logs", logs], ["events", events], ["snapshot", snapshot], ["refusal", refusal]] as const) {
    assert.ok(!text.includes(secret), `credential value in ${where}`);
    assert.ok(!text.includes(h.adminToken), `admin token in ${where}`);
    assert.ok(!text.includes(ci), `caller token in ${where}`);
    // no fragment of a token either (its signature part is the secret-bearing bit)
    assert.ok(!text.includes(h.adminToken.split(".")[2]!), `token signature in ${where}`);
  }
});

test("/healthz and /metrics answer on the HTTP listener; extra routes can be mounted", async (t) => {
  const h = await startTestControlPlane(t, {
    extraHttpRoutes: {
      "/.well-known/jwks.json": (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ keys: [] }));
      },
    },
  });
  await apply(h, yamlFor(h));
  const base = `http://127.0.0.1:${h.cp.httpPort}`;
  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: "ok", nats: "connected", policyRevision: 1 });
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^sluice_control_policy_revision 1$/m);
  assert.match(metrics, /^sluice_control_grpc_calls_total\{method="PolicyService\/Apply",code="OK"\} 1$/m);
  assert.deepEqual(await (await fetch(`${base}/.well-known/jwks.json`)).json(), { keys: [] });
  assert.equal((await fetch(`${base}/nope`)).status, 404);
});

test("two replicas on the same streams agree: applies through either, one history, one snapshot", async (t) => {
  const h = await startTestControlPlane(t);
  const { startControlPlane } = await import("./control-plane.js");
  const { createLogger } = await import("@sluice/shared/logging");
  const replica = await startControlPlane(h.config, { logger: createLogger({ level: "silent" }), jetstream: { storage: "memory" } });
  t.after(() => replica.stop());
  const viaReplica = { ...h, address: replica.grpcAddress } as TestControlPlane;
  viaReplica.call = (m, req, token) => {
    const saved = h.address;
    h.address = replica.grpcAddress;
    const p = h.call(m, req, token);
    h.address = saved;
    return p as never;
  };
  const r1 = await apply(h, yamlFor(h));
  const r2 = await apply(viaReplica, yamlFor(h, writers), r1.revision);
  const r3 = await apply(h, yamlFor(h, writers + dbaRead), r2.revision);
  assert.deepEqual([r1.revision, r2.revision, r3.revision], [1, 2, 3]);
  const a = await h.call<PolicyHistoryResponse>("history", { limit: 0 });
  const b = await viaReplica.call<PolicyHistoryResponse>("history", { limit: 0 });
  assert.deepEqual(a, b);
  // both projections folded revision 3; the KV holds it exactly once per revision written, never older after newer
  const kv = await new Kvm(h.nc).open(h.names.snapshotBucket);
  const seen: number[] = [];
  const it = await kv.history({ key: "policy" });
  for await (const e of it) if (e.operation === "PUT") seen.push(e.json<PolicySnapshot>().revision);
  assert.deepEqual(seen, [...seen].sort((x, y) => x - y), "snapshot revisions never go backwards in KV");
  assert.equal(seen.at(-1), 3);
  assert.equal(new Set(seen).size, seen.length, "no revision written twice");
});

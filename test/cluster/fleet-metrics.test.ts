/**
 * The fleet's /metrics on a real 3-node JetStream cluster (issue 16): two control-plane replicas,
 * three data planes in two regions, scraped over HTTP like Prometheus would.
 *  - a policy change shows as the new revision on every node's /metrics and on both replicas';
 *  - each node's apply time moves with it and is what NATS says: the node's apply timestamp minus
 *    the KV entry's store time, the figure `fleet status` shows too;
 *  - each replica's projection time moves with it and lies between what the stream and the bucket
 *    say; the projection lag returns to 0;
 *  - every metric the operator guide lists exists on its plane with its type, every `sluice_`
 *    metric a plane declares is listed there, and each figure issue 16 names is one of them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { credsAuthenticator, connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { natsNames } from "@sluice/shared/nats";
import type { Bundle } from "@sluice/shared/policy";
import { scrapeMetrics, type Scrape } from "../lib/metrics-scrape.js";
import { repoRoot } from "../lib/run-sluice.js";
import { ADMIN_GROUP, startFleet, type Fleet } from "./fleet-stack.js";

const names = natsNames("");

const policy = (rev: string): Bundle => ({
  groups: ["dev", ADMIN_GROUP],
  issuers: [],
  resources: [],
  policies: [{ name: `dev-${rev}`, groups: ["dev", ADMIN_GROUP], resources: ["app"], allow: ["read", "write", "ddl", "admin", "utility", "copy"] }],
  masking: [],
});

/** a loaded 2-core machine: waits, not performance claims (test/bench measures propagation) */
const WAIT_MS = 60_000;

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = WAIT_MS): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ""}`);
}

/** every data plane's and every replica's scrape once all of them report `rev` */
async function scrapesAt(fleet: Fleet, rev: number): Promise<{ nodes: Map<string, Scrape>; cps: Scrape[] }> {
  return until(`every /metrics at revision ${rev}`, async () => {
    const nodes = new Map<string, Scrape>();
    for (const [n, dp] of fleet.dataPlanes) nodes.set(n, await scrapeMetrics(dp.httpPort!));
    const cps = await Promise.all(fleet.controlPlanes.map((cp) => scrapeMetrics(cp.httpPort)));
    const ok =
      [...nodes.values()].every((s) => s.value("sluice_dp_policy_revision") === rev) &&
      cps.every((s) => s.value("sluice_control_policy_revision") === rev && s.value("sluice_control_policy_projection_lag_revisions") === 0);
    return ok ? { nodes, cps } : undefined;
  });
}

/** the operator guide's metrics table: name → plane and type */
function documentedMetrics(): Map<string, { plane: "data" | "control"; type: string }> {
  const guide = readFileSync(join(repoRoot, "docs/operator-guide.md"), "utf8");
  const out = new Map<string, { plane: "data" | "control"; type: string }>();
  for (const line of guide.split("\n")) {
    const m = /^\| ((?:`sluice_\w+`(?:, )?)+) \| (data|control) \| (\w+) \|/.exec(line);
    if (!m) continue;
    for (const n of m[1]!.matchAll(/`(sluice_\w+)`/g)) out.set(n[1]!, { plane: m[2] as "data" | "control", type: m[3]! });
  }
  return out;
}

test("fleet /metrics: a policy change moves every node's revision and apply time and every replica's projection figures; the metrics are the documented ones", { timeout: 400_000 }, async (t) => {
  const fleet = await startFleet(t, {
    clusters: [{ name: "eu" }],
    controlPlanes: ["eu", "eu"],
    dataPlanes: [
      { node: "dp-eu-1", region: "eu-west" },
      { node: "dp-eu-2", region: "eu-west" },
      { node: "dp-us-1", region: "us-east" },
    ],
    policy: policy("r1"),
  });
  const nc = await connect({ servers: fleet.nats.urls().split(","), authenticator: credsAuthenticator(readFileSync(fleet.credsFile("control-plane"))), inboxPrefix: names.controlPlaneInbox("test") });
  t.after(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const kv = await new Kvm(nc).open(names.snapshotBucket);
  const policySubject = names.controlSubject("policy", "bundle");

  const rev1 = fleet.dataPlanes.get("dp-eu-1")!.snapshots.revision();
  const before = await scrapesAt(fleet, rev1);

  await t.test("a policy change: the new revision on every node's /metrics, apply time and projection time move and agree with NATS", async (st) => {
    const t0 = Date.now();
    const rev2 = await fleet.apply(policy("r2"), fleet.controlPlanes[1]);
    assert.equal(rev2, rev1 + 1);
    const after = await scrapesAt(fleet, rev2);
    const scrapedAt = Date.now();

    // what NATS recorded: the event's store time on the control stream, the snapshot's in the bucket
    const event = await jsm.streams.getMessage(names.controlStream, { last_by_subj: policySubject });
    const storedAt = event!.time.getTime();
    const entry = (await kv.get(names.snapshotKey))!;
    assert.equal(entry.json<{ revision: number }>().revision, rev2);
    const inKvAt = entry.created.getTime();
    assert.ok(storedAt >= t0 - 1000 && inKvAt >= storedAt, `event at ${storedAt}, snapshot at ${inKvAt}, apply from ${t0}`);

    for (const [n, s] of after.nodes) {
      const appliedAt = s.value("sluice_dp_policy_applied_timestamp_seconds")! * 1000;
      const applySeconds = s.value("sluice_dp_policy_apply_seconds")!;
      const was = before.nodes.get(n)!.value("sluice_dp_policy_applied_timestamp_seconds")! * 1000;
      assert.ok(appliedAt > was, `${n}: applied-at moved (${was} → ${appliedAt})`);
      assert.ok(appliedAt >= inKvAt - 5 && appliedAt <= scrapedAt, `${n}: applied at ${appliedAt}, the snapshot was stored at ${inKvAt}`);
      // the apply time is the node's apply instant less the entry's store time (ms resolution)
      assert.ok(Math.abs(applySeconds * 1000 - (appliedAt - inKvAt)) <= 2, `${n}: apply ${applySeconds * 1000} ms vs ${appliedAt - inKvAt} ms`);
      st.diagnostic(`${n}: applied ${applySeconds * 1000} ms after the snapshot was stored, ${appliedAt - t0} ms after the apply call`);
    }
    // `fleet status` reports the same apply time as each node's /metrics
    const rows = await until("fleet status at the new revision", async () => {
      const r = await fleet.cli(["fleet", "status", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as Array<{ node: string; snapshotRevision: number; applyMs?: number }>;
      return rows.length === 3 && rows.every((m) => m.snapshotRevision === rev2) ? rows : undefined;
    });
    for (const row of rows) {
      const s = after.nodes.get(row.node)!;
      assert.ok(Math.abs(row.applyMs! - s.value("sluice_dp_policy_apply_seconds")! * 1000) <= 1, `${row.node}: fleet status ${row.applyMs} ms`);
    }

    for (const [i, s] of after.cps.entries()) {
      assert.equal(s.value("sluice_control_policy_projection_lag_revisions"), 0, `cp-${i + 1} lag`);
      const projected = s.value("sluice_control_policy_projection_seconds")! * 1000;
      const was = before.cps[i]!.value("sluice_control_policy_projection_seconds")! * 1000;
      // written by this replica or found there: not before the bucket had it, not after the scrape
      assert.ok(projected >= inKvAt - storedAt - 2 && projected <= scrapedAt - storedAt, `cp-${i + 1}: projection ${projected} ms (event ${storedAt}, in KV ${inKvAt})`);
      assert.notEqual(projected, 0, `cp-${i + 1}: projection time measured`);
      st.diagnostic(`cp-${i + 1}: projection ${projected} ms`);
      assert.ok(projected !== was || before.cps[i]!.value("sluice_control_policy_revision") !== rev2, `cp-${i + 1}: projection time is the new revision's`);
    }
  });

  await t.test("every documented metric exists on its plane with its type; every sluice_ metric is documented; issue 16's figures are among them", async () => {
    const documented = documentedMetrics();
    assert.ok(documented.size > 30, `${documented.size} metrics in the guide`);
    const planes: Array<["data" | "control", Scrape]> = [];
    for (const dp of fleet.dataPlanes.values()) planes.push(["data", await scrapeMetrics(dp.httpPort!)]);
    for (const cp of fleet.controlPlanes) planes.push(["control", await scrapeMetrics(cp.httpPort)]);
    for (const [plane, s] of planes) {
      for (const [n, d] of documented) if (d.plane === plane) assert.equal(s.types.get(n), d.type, `${n} on the ${plane} plane`);
      for (const [n, type] of s.types) {
        if (!n.startsWith("sluice_")) continue;
        assert.deepEqual(documented.get(n), { plane, type }, `${n} (${type}) on the ${plane} plane is in docs/operator-guide.md`);
      }
    }
    // the figures issue 16 names, as metrics: sessions, statements by decision, proxy-added latency,
    // audit batch size and latency, buffer depth, snapshot revision and apply time, approvals waiting, pool use
    const named: Array<[string, string, string?]> = [
      ["sluice_dp_sessions", "gauge"],
      ["sluice_dp_sessions_total", "counter", "outcome"],
      ["sluice_dp_statements_total", "counter", "decision"],
      ["sluice_dp_statement_added_seconds", "histogram"],
      ["sluice_dp_audit_batch_events", "histogram"],
      ["sluice_dp_audit_batch_seconds", "histogram"],
      ["sluice_dp_audit_pending_events", "gauge"],
      ["sluice_dp_policy_revision", "gauge"],
      ["sluice_dp_policy_apply_seconds", "gauge"],
      ["sluice_dp_approvals_waiting", "gauge"],
      ["sluice_dp_upstream_connections", "gauge", "state"],
    ];
    const node = planes[0]![1];
    for (const [n, type, label] of named) {
      assert.equal(node.types.get(n), type, n);
      assert.equal(documented.get(n)?.plane, "data", `${n} documented`);
      if (label) assert.ok(node.samples.some((x) => x.name === n && label in x.labels), `${n} has its ${label} label`);
    }
  });
});

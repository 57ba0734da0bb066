/**
 * The fleet on a real 3-node NATS JetStream cluster (fleet-stack.ts: operator mode, least-privilege
 * users, replicas 3): two control-plane replicas as processes, three data planes in two regions.
 *  - `sluice fleet status` lists all three with the current revision; a policy change reaches all.
 *  - SIGKILL of the NATS server leading SLUICE_AUDIT under load: no statement a client saw succeed
 *    is missing from the stream, and every node serves again.
 *  - SIGKILL of a control-plane replica: clients and approvals carry on through the other.
 *  - SIGKILL of the NATS server holding the surviving replica's policy consumer: policy still flows.
 *  - a data plane that crashes is stale within its TTL; `connect-info` then picks a live node.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { credsAuthenticator, connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { natsNames, kvStreamName } from "@sluice/shared/nats";
import type { Bundle } from "@sluice/shared/policy";
import type pg from "pg";
import { ADMIN_GROUP, startFleet, type Fleet } from "./fleet-stack.js";

const names = natsNames("");
/**
 * How long a node may take to enforce a new revision. Idle it is well under a second; the bound is
 * for a loaded 2-core machine right after a NATS server or a control plane died (a replica's
 * projection places a new consumer within seconds, a node's watch is re-created or its poll reads
 * the key): a wait, not a performance claim (test/bench measures propagation).
 */
const PROPAGATION_MS = 60_000;

const policy = (rev: string): Bundle => ({
  groups: ["dev", "deployers", "dba", ADMIN_GROUP],
  issuers: [],
  resources: [],
  policies: [
    { name: `dev-all-${rev}`, groups: ["dev", ADMIN_GROUP], resources: ["app"], allow: ["read", "write", "ddl", "admin", "utility", "copy"] },
    { name: "deployers", groups: ["deployers"], resources: ["app"], allow: ["read", "write", "ddl"], requireApproval: ["ddl"], approval: { approvers: ["dba"], timeout: "60s" } },
  ],
  masking: [],
});

type FleetRow = { node: string; region: string; snapshotRevision: number; behind: number; stale: boolean; applyMs?: number; publicAddress?: string };

async function fleetStatus(fleet: Fleet): Promise<FleetRow[]> {
  const r = await fleet.cli(["fleet", "status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as FleetRow[];
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
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

/** A DDL statement held for approval on `node`, approved by a DBA through `cp`, then runs. */
async function approveHeld(fleet: Fleet, node: string, cp: Fleet["controlPlanes"][number], table: string): Promise<void> {
  const pipeline = await fleet.connect(node, { sub: "pipeline", groups: ["deployers"] });
  const id = new Promise<string>((resolve) =>
    pipeline.on("notice", (n: { message?: string }) => {
      const m = /request (apr-[0-9a-z]+)/.exec(n.message ?? "");
      if (m) resolve(m[1]!);
    }),
  );
  const held = pipeline.query(`CREATE TABLE ${table} (id int)`);
  const dba = await fleet.issuer.mint({ sub: "carol", groups: ["dba"], ttlSec: 600 });
  await fleet.approvals(cp, dba).call("approve", { id: await id, reason: "", commandId: randomUUID() });
  await held;
  assert.equal((await pipeline.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 0);
  await pipeline.end();
}

/** Runs statements with unique text on one client until `stop`; records the ones that succeeded. */
function load(client: pg.Client, tag: string, acked: string[], failures: string[], stop: { now: boolean }): Promise<void> {
  return (async () => {
    for (let i = 0; !stop.now; i++) {
      const sql = `SELECT '${tag}-${i}'::text AS k`;
      try {
        await client.query(sql);
        acked.push(sql);
      } catch (e) {
        failures.push((e as { code?: string }).code ?? (e as Error).message);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  })();
}

test("a fleet on a 3-node JetStream cluster: status, propagation, a NATS server and a control plane killed, a data plane crashed", { timeout: 400_000 }, async (t) => {
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
  const nodes = [...fleet.dataPlanes.keys()];

  // every stream and bucket has three replicas, and the data planes created none of them
  const cpNc = await connect({ servers: fleet.nats.urls().split(","), authenticator: credsAuthenticator(readFileSync(fleet.credsFile("control-plane"))), inboxPrefix: names.controlPlaneInbox("test") });
  t.after(() => cpNc.close());
  const jsm = await jetstreamManager(cpNc);
  for (const s of [names.controlStream, names.auditStream, names.checkpointStream, kvStreamName(names.snapshotBucket), kvStreamName(names.fleetBucket), kvStreamName(names.leaseBucket)]) {
    const info = await jsm.streams.info(s);
    assert.equal(info.config.num_replicas, 3, s);
    assert.equal(info.cluster?.replicas?.length, 2, `${s} has two followers`);
  }

  await t.test("fleet status lists all three nodes with the current revision", async () => {
    const rev = fleet.dataPlanes.get("dp-eu-1")!.snapshots.revision();
    const rows = await until("three fresh nodes", async () => {
      const r = await fleetStatus(fleet);
      return r.length === 3 && r.every((m) => m.snapshotRevision === rev && !m.stale) ? r : undefined;
    });
    assert.deepEqual(rows.map((m) => [m.node, m.region, m.behind]), [
      ["dp-eu-1", "eu-west", 0],
      ["dp-eu-2", "eu-west", 0],
      ["dp-us-1", "us-east", 0],
    ]);
    assert.ok(rows.every((m) => typeof m.applyMs === "number" && /^127\.0\.0\.1:\d+$/.test(m.publicAddress ?? "")));
  });

  await t.test("a policy change reaches every node, and fleet status shows it", async () => {
    const rev = await fleet.apply(policy("r2"));
    await Promise.all(nodes.map((n) => fleet.dataPlanes.get(n)!.snapshots.waitForRevision(rev, PROPAGATION_MS)));
    await until("fleet status at the new revision", async () => {
      const r = await fleetStatus(fleet);
      return r.every((m) => m.snapshotRevision === rev && m.behind === 0) ? r : undefined;
    });
  });

  await t.test("killing the NATS server that leads SLUICE_AUDIT under load loses no acknowledged statement; every node serves on", async () => {
    const clients = await Promise.all(nodes.flatMap((n) => [fleet.connect(n), fleet.connect(n)]));
    const acked: string[] = [];
    const failures: string[] = [];
    const stop = { now: false };
    const running = clients.map((c, i) => load(c, `L${i}`, acked, failures, stop));
    await until("load running", async () => (acked.length >= 60 ? true : undefined));
    const leader = (await jsm.streams.info(names.auditStream)).cluster?.leader;
    assert.ok(leader, "the audit stream has a leader");
    const before = acked.length;
    await fleet.nats.server(leader).kill();
    // every client (so every node) gets statements through again after the failover
    const counts = clients.map(() => 0);
    await until("every client served after the kill", async () => {
      for (const [i, c] of clients.entries()) {
        try {
          await c.query("SELECT 1");
          counts[i]!++;
        } catch {
          // still failing over
        }
      }
      return counts.every((n) => n > 0) ? true : undefined;
    }, 90_000);
    await until("more statements after the kill", async () => (acked.length > before + 30 ? true : undefined));
    stop.now = true;
    await Promise.all(running);
    // failures during the failover are refusals (fail closed), never a broken session
    assert.ok(failures.every((f) => f === "57P03"), `only fail-closed refusals: ${[...new Set(failures)].join(",")}`);
    await fleet.nats.server(leader).start();

    // the evidence: every statement a client saw succeed is on the stream (read by the auditor)
    let missing: string[] = [];
    const events = await until("every acknowledged statement on the stream", async () => {
      const ev = await fleet.auditEvents();
      const seen = new Set(ev.filter((e) => e.type.includes(".statement.allowed.")).map((e) => String((e.data as { sql?: string }).sql)));
      missing = acked.filter((s) => !seen.has(s));
      return missing.length === 0 ? ev : undefined;
    }).catch((e: Error) => {
      throw new Error(`${e.message}: ${missing.length} of ${acked.length} acknowledged statements missing, e.g. ${missing.slice(0, 3).join(" | ")}`);
    });
    assert.ok(events.length > acked.length, "sessions, statements and completions");
    for (const c of clients) await c.end();
  });

  await t.test("killing a control-plane replica changes nothing for clients and approvals", async () => {
    const [cpA, cpB] = fleet.controlPlanes;
    await cpA!.kill();
    // clients of every node keep working
    for (const n of nodes) {
      const c = await fleet.connect(n);
      assert.equal((await c.query("SELECT 41 + 1 AS x")).rows[0].x, 42);
      await c.end();
    }
    // a held statement is filed with, and approved through, the surviving replica
    await approveHeld(fleet, "dp-us-1", cpB!, "approved_after_failover");
    // and policy changes still propagate
    const rev = await fleet.apply(policy("r3"), cpB);
    await Promise.all(nodes.map((n) => fleet.dataPlanes.get(n)!.snapshots.waitForRevision(rev, PROPAGATION_MS)));
  });

  await t.test("the NATS server holding the surviving replica's policy consumer dies: the next policy still reaches every node", async () => {
    // A projection reads through an ordered consumer, which lives on one server (the CI failure:
    // the survivor's lived on the server subtest 3 killed). The killed replica pulls no more, so the
    // one consumer on the policy subject with a pull request waiting is the survivor's.
    const policySubject = names.controlSubject("policy", "bundle");
    let seen = "";
    const holder = await until("the survivor's policy consumer", async () => {
      const held: string[] = [];
      const all: string[] = [];
      for await (const c of jsm.consumers.list(names.controlStream)) {
        const f = c.config.filter_subjects ?? (c.config.filter_subject ? [c.config.filter_subject] : []);
        if (!f.includes(policySubject)) continue;
        all.push(`${c.name}@${c.cluster?.leader}:${c.num_waiting}`);
        if (c.num_waiting > 0 && c.cluster?.leader) held.push(c.cluster.leader);
      }
      seen = all.join(" ");
      return held.length === 1 ? held[0] : undefined;
    }).catch((e: Error) => {
      throw new Error(`${e.message}: ${seen}`);
    });
    const [, cpB] = fleet.controlPlanes;
    await fleet.nats.server(holder).kill();
    // the apply itself may be refused while the cluster elects new leaders: an operator retries
    let rev = 0;
    await until("a policy applied with one NATS server down", async () => {
      rev = await fleet.apply(policy("r4"), cpB);
      return rev;
    });
    await Promise.all(nodes.map((n) => fleet.dataPlanes.get(n)!.snapshots.waitForRevision(rev, PROPAGATION_MS)));
    await fleet.nats.server(holder).start();
  });

  await t.test("a crashed data plane is stale within its TTL; connect-info then picks a live node", async () => {
    await fleet.crashDataPlane("dp-us-1");
    const rows = await until("dp-us-1 stale", async () => {
      const r = await fleetStatus(fleet);
      return r.find((m) => m.node === "dp-us-1")?.stale ? r : undefined;
    }, 30_000);
    assert.deepEqual(rows.filter((m) => !m.stale).map((m) => m.node), ["dp-eu-1", "dp-eu-2"]);
    const info = await fleet.cli(["connect-info", "--resource", "app", "--region", "us-east", "--format", "json"]);
    assert.equal(info.code, 0, info.stderr);
    const j = JSON.parse(info.stdout) as { node: string; region: string; fellBack: boolean };
    assert.equal(j.region, "eu-west");
    assert.equal(j.fellBack, true);
    assert.match(info.stderr, /no healthy data plane in region us-east/);
  });
});

test("a supercluster of two 3-node clusters joined by gateways: the evidence stays in its home region, the fleet works across both", { timeout: 400_000 }, async (t) => {
  const fleet = await startFleet(t, {
    clusters: [{ name: "eu" }, { name: "us" }],
    home: "eu",
    controlPlanes: ["eu", "us"],
    dataPlanes: [
      { node: "dp-eu-1", region: "eu-west", cluster: "eu" },
      { node: "dp-eu-2", region: "eu-west", cluster: "eu" },
      { node: "dp-us-1", region: "us-east", cluster: "us" },
    ],
    policy: policy("r1"),
  });
  const nodes = [...fleet.dataPlanes.keys()];
  const cpNc = await connect({ servers: fleet.nats.urls("us").split(","), authenticator: credsAuthenticator(readFileSync(fleet.credsFile("control-plane"))), inboxPrefix: names.controlPlaneInbox("test") });
  t.after(() => cpNc.close());
  const jsm = await jetstreamManager(cpNc);
  // placed where the operator chose, whichever region asks
  for (const s of [names.auditStream, names.controlStream, kvStreamName(names.snapshotBucket)]) {
    assert.equal((await jsm.streams.info(s)).cluster?.name, "eu", s);
  }

  // fleet status read through the us cluster; a policy change applied through the us replica
  const rev = await fleet.apply(policy("r2"), fleet.controlPlanes[1]);
  await Promise.all(nodes.map((n) => fleet.dataPlanes.get(n)!.snapshots.waitForRevision(rev, PROPAGATION_MS)));
  const r = await fleet.cli(["fleet", "status", "--json"], "us");
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as FleetRow[];
  // sorted by region, then node
  assert.deepEqual(rows.map((m) => [m.node, m.snapshotRevision, m.behind]), ["dp-eu-1", "dp-eu-2", "dp-us-1"].map((n) => [n, rev, 0]));

  // the us node's statements cross the gateway into the eu audit stream; losing its own NATS server
  // moves it to another us server and it serves on
  const us = fleet.dataPlanes.get("dp-us-1")!;
  const client = await fleet.connect("dp-us-1");
  await client.query("SELECT 'us-before'::text");
  const serverName = us.nc.info?.server_name ?? "";
  assert.ok(serverName?.startsWith("us-"), `dp-us-1 talks to a us server (${serverName})`);
  await fleet.nats.server(serverName).kill();
  await until("dp-us-1 serves after its server died", async () => {
    try {
      await client.query("SELECT 'us-after'::text");
      return true;
    } catch {
      return undefined;
    }
  }, 90_000);
  assert.notEqual(us.nc.info?.server_name, serverName);
  const events = await until("both statements in the eu stream", async () => {
    const ev = await fleet.auditEvents();
    const sqls = ev.filter((e) => e.type.includes(".statement.allowed.") && e.source.includes("dp-us-1")).map((e) => (e.data as { sql?: string }).sql);
    return sqls.includes("SELECT 'us-before'::text") && sqls.includes("SELECT 'us-after'::text") ? ev : undefined;
  });
  assert.ok(events.some((e) => e.source === "sluice://us-east/dp-us-1"));
  await client.end();
  // approvals across the gateway: filed by the us node, decided through the us replica, watched on the eu stream
  await approveHeld(fleet, "dp-us-1", fleet.controlPlanes[1]!, "approved_in_us");
});

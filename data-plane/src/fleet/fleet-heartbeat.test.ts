import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { natsNames } from "@sluice/shared/nats";
import { readFleet, startFleetHeartbeat } from "./fleet-heartbeat.js";

test("heartbeats land in the fleet bucket, age out as stale, and leave on stop", async (t) => {
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  const names = natsNames("t" + Math.random().toString(36).slice(2, 8));
  const kv = await new Kvm(nc).create(names.fleetBucket, { history: 1, ttl: 30_000 });
  t.after(async () => {
    await kv.destroy();
    await nc.close();
  });
  let conns = 3;
  const a = startFleetHeartbeat({
    nc, prefix: names.prefix, region: "eu", node: "dp-a", everySeconds: 1,
    snapshotRevision: () => 7, connections: () => conns, listen: "127.0.0.1:7432",
  });
  const b = startFleetHeartbeat({
    nc, prefix: names.prefix, region: "eu", node: "dp-b", everySeconds: 1,
    snapshotRevision: () => 6, connections: () => 0,
  });
  t.after(() => Promise.all([a.stop(), b.stop()]));
  await a.beat();
  await b.beat();

  let fleet = await readFleet(nc, names.prefix);
  assert.deepEqual(fleet.map((m) => [m.node, m.region, m.snapshotRevision, m.connections, m.stale]), [
    ["dp-a", "eu", 7, 3, false],
    ["dp-b", "eu", 6, 0, false],
  ]);
  assert.match(fleet[0]!.version, /^\d+\.\d+\.\d+/);
  assert.equal(fleet[0]!.listen, "127.0.0.1:7432");

  // the periodic beat picks up new numbers
  conns = 5;
  const first = fleet[0]!.lastBeat;
  for (let i = 0; i < 150; i++) {
    fleet = await readFleet(nc, names.prefix);
    if (fleet[0]!.lastBeat !== first) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(fleet[0]!.connections, 5);

  // seen from 10 s in the future, a node beating every second is stale
  const later = await readFleet(nc, names.prefix, new Date(Date.now() + 10_000));
  assert.ok(later.every((m) => m.stale && m.ageMs >= 9000));

  await b.stop();
  fleet = await readFleet(nc, names.prefix);
  assert.deepEqual(fleet.map((m) => m.node), ["dp-a"]);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { natsNames } from "@sluice/shared/nats";
import { startFleetHeartbeat } from "../../data-plane/src/fleet/index.js";

const run = promisify(execFile);
const sluice = fileURLToPath(new URL("../../bin/sluice.js", import.meta.url));

test("sluice fleet status lists heartbeating nodes (table and --json); an unreachable NATS is a one-line failure", async (t) => {
  const nc = await connect({ servers: "nats://127.0.0.1:4222" });
  const names = natsNames("t" + Math.random().toString(36).slice(2, 8));
  const kv = await new Kvm(nc).create(names.fleetBucket, { history: 1, ttl: 30_000 });
  t.after(async () => {
    await kv.destroy();
    await nc.close();
  });
  const hb = startFleetHeartbeat({
    nc, prefix: names.prefix, region: "local", node: "dp-cli", everySeconds: 5,
    snapshotRevision: () => 12, connections: () => 2, listen: "127.0.0.1:7432",
  });
  t.after(() => hb.stop());
  await hb.beat();
  // a node that stopped beating a minute ago
  await kv.put("dp-old", JSON.stringify({
    region: "local", node: "dp-old", version: "0.0.1", snapshotRevision: 3, connections: 0,
    startedAt: new Date(Date.now() - 3_600_000).toISOString(), lastBeat: new Date(Date.now() - 60_000).toISOString(), everySeconds: 5,
  }));
  const env = { ...process.env, SLUICE_CONTEXT: "/nonexistent/context.json", SLUICE_NATS_URL: "nats://127.0.0.1:4222" };

  const json = await run(process.execPath, [sluice, "fleet", "status", "--json", "--prefix", names.prefix], { env });
  const fleet = JSON.parse(json.stdout) as Array<{ node: string; snapshotRevision: number; connections: number; stale: boolean; behind: number }>;
  // no snapshot bucket under this prefix: "behind" counts from the fleet's highest revision
  assert.deepEqual(fleet.map((m) => [m.node, m.snapshotRevision, m.connections, m.stale, m.behind]), [
    ["dp-cli", 12, 2, false, 0],
    ["dp-old", 3, 0, true, 9],
  ]);

  const text = await run(process.execPath, [sluice, "fleet", "status", "--prefix", names.prefix], { env });
  const lines = text.stdout.trim().split("\n");
  assert.match(lines[0]!, /^NODE\s+REGION\s+VERSION\s+REVISION\s+BEHIND\s+APPLIED IN\s+CONNS\s+ADDRESS/);
  assert.match(lines[1]!, /^dp-cli\s+local\s+\S+\s+12\s+0\s+-\s+2\s+127\.0\.0\.1:7432\s+.*ok$/);
  assert.match(lines[2]!, /^dp-old\s+.*STALE$/);

  await assert.rejects(run(process.execPath, [sluice, "fleet", "status", "--nats", "nats://127.0.0.1:1"], { env }), (e: { code: number; stderr: string }) => {
    assert.equal(e.code, 1);
    assert.match(e.stderr, /^sluice: cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
    assert.equal(e.stderr.trim().split("\n").length, 1);
    return true;
  });
});

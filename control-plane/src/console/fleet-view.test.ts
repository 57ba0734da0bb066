import { test } from "node:test";
import assert from "node:assert/strict";
import { fleetNodeOf } from "./fleet-view.js";

const now = new Date("2026-12-01T10:00:00Z");

test("fleet view: a heartbeat as the page shows it; late beats are stale; a malformed value is flagged, not trusted", () => {
  const beat = { region: "eu", node: "dp-1", version: "0.1.0", snapshotRevision: 4, connections: 2, listen: "10.0.0.1:7432", startedAt: "2026-12-01T09:00:00Z", lastBeat: "2026-12-01T09:59:58Z", everySeconds: 5 };
  const { everySeconds: _e, ...shown } = beat;
  assert.deepEqual(fleetNodeOf("dp-1", beat, now), { ...shown, ageMs: 2000, stale: false });
  const v = fleetNodeOf("dp-1", beat, now);
  assert.equal(v.ageMs, 2000);
  assert.equal(v.stale, false);
  assert.equal(v.malformed, undefined);
  assert.equal(fleetNodeOf("dp-1", { ...beat, lastBeat: "2026-12-01T09:59:44Z" }, now).stale, true, "more than three 5 s periods");
  for (const bad of [undefined, "x", { region: 3 }, { ...beat, lastBeat: "yesterday" }, { ...beat, snapshotRevision: "4" }]) {
    const m = fleetNodeOf("dp-x", bad, now);
    assert.equal(m.malformed, true, JSON.stringify(bad));
    assert.equal(m.node, typeof bad === "object" && bad && "node" in bad ? "dp-1" : "dp-x");
  }
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { natsNames } from "./nats-names.js";

test("names follow the contract without a prefix", () => {
  const n = natsNames();
  assert.equal(n.controlStream, "SLUICE_CONTROL");
  assert.equal(n.auditStream, "SLUICE_AUDIT");
  assert.equal(n.checkpointStream, "SLUICE_CHECKPOINTS");
  assert.equal(n.snapshotBucket, "sluice_snapshots");
  assert.equal(n.fleetBucket, "sluice_fleet");
  assert.equal(n.controlSubject("policy", "bundle"), "sluice.control.policy.bundle");
  assert.equal(n.auditSubject("eu", "n1", "0190f3a2c1d4e5f6a7b8-0"), "sluice.audit.eu.n1.0190f3a2c1d4e5f6a7b8-0");
  assert.equal(n.auditNodeFilter("eu", "n1"), "sluice.audit.eu.n1.>");
});

test("a prefix isolates streams, buckets and subjects, and subjects round-trip", () => {
  const n = natsNames("t42");
  assert.equal(n.controlStream, "T42_SLUICE_CONTROL");
  assert.equal(n.snapshotBucket, "t42_sluice_snapshots");
  const s = n.controlSubject("resource", "orders.db");
  assert.equal(s.split(".").length, 5);
  assert.deepEqual(n.parseControlSubject(s), { aggregate: "resource", id: "orders.db" });
  assert.deepEqual(n.parseAuditSubject(n.auditSubject("eu west", "n1", "b1-0")), { region: "eu west", node: "n1", lane: "b1-0" });
  // every lane of a node is inside the node's filter (its publish permission)
  const filter = n.auditNodeFilter("eu west", "n1");
  assert.ok(n.auditSubject("eu west", "n1", "b2-3").startsWith(filter.slice(0, -1)));
  assert.throws(() => natsNames("bad.prefix"));
});

test("inboxes are per role and per node; a value can never become a wildcard, only a pattern can", () => {
  const n = natsNames();
  assert.equal(n.dataPlaneInbox("eu", "dp-1"), "_INBOX.sluice.dp.eu.dp-1");
  assert.equal(n.controlPlaneInbox("cp-1"), "_INBOX.sluice.cp.cp-1");
  assert.equal(natsNames("t1").auditorInbox("acme"), "_INBOX.t1.auditor.acme");
  // a node id of "*" or ">" is a name, encoded; the permission patterns keep raw tokens
  assert.doesNotMatch(n.dataPlaneInbox("eu", "*"), /\*|>/);
  assert.doesNotMatch(n.cancelSubject(">"), /\*|>/);
  assert.equal(n.patterns.auditLanes("{{tag(region)}}", "{{tag(node)}}"), "sluice.audit.{{tag(region)}}.{{tag(node)}}.>");
  assert.equal(n.patterns.cancel("*"), "sluice.cancel.*");
});

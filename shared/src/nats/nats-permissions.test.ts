import { test } from "node:test";
import assert from "node:assert/strict";
import { natsNames } from "./nats-names.js";
import { NATS_ROLES, rolePermissions, roleTags, TEMPLATE } from "./nats-permissions.js";

const names = natsNames();

test("a data plane may publish to its own audit lanes and fleet key only, through templates", () => {
  const p = rolePermissions(names, "data-plane");
  assert.ok(p.pub.allow.includes(`sluice.audit.${TEMPLATE.region}.${TEMPLATE.node}.>`));
  assert.ok(p.pub.allow.includes(`$KV.sluice_fleet.${TEMPLATE.node}`));
  // no wildcard over other nodes' lanes, the control or checkpoint subjects, or any bucket write
  for (const s of p.pub.allow) {
    assert.ok(!s.startsWith("sluice.audit.") || s.includes(TEMPLATE.node), s);
    assert.ok(!s.startsWith("sluice.control.") && !s.startsWith("sluice.checkpoint."), s);
    assert.ok(!s.startsWith("$KV.") || s === `$KV.sluice_fleet.${TEMPLATE.node}`, s);
    assert.ok(!/\.(DELETE|PURGE|UPDATE)\b/.test(s) && !s.startsWith("$JS.API.STREAM.CREATE"), s);
  }
  // its consumers on the control stream are pinned to the approval subjects
  assert.deepEqual(p.pub.allow.filter((s) => s.includes("CONSUMER.CREATE.SLUICE_CONTROL")), ["$JS.API.CONSUMER.CREATE.SLUICE_CONTROL.*.sluice.control.approval.*"]);
  assert.deepEqual(p.sub.allow, [`_INBOX.sluice.dp.${TEMPLATE.region}.${TEMPLATE.node}.>`, `sluice.cancel.${TEMPLATE.cancel}`]);
  assert.equal(p.allowResponses, false);
  // approval cancels only on its own subject: the subject is how the control plane knows which node sent one
  assert.deepEqual(p.pub.allow.filter((s) => s.startsWith("sluice.approvals.cancel.")), [`sluice.approvals.cancel.${TEMPLATE.node}`]);
  assert.ok(rolePermissions(names, "control-plane").sub.allow.includes("sluice.approvals.cancel.*"));
});

test("an auditor publishes only read-only JetStream requests about the audit and checkpoint streams", () => {
  const p = rolePermissions(names, "auditor");
  for (const s of p.pub.allow) {
    assert.ok(s === "$JS.API.INFO" || /SLUICE_AUDIT|SLUICE_CHECKPOINTS/.test(s), s);
    assert.ok(s.startsWith("$JS."), s);
  }
});

test("every role denies deleting and purging; only the control plane answers requests", () => {
  for (const r of NATS_ROLES) {
    const p = rolePermissions(names, r);
    for (const d of ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"]) assert.ok(p.pub.deny.includes(d), `${r}: ${d}`);
    assert.equal(p.allowResponses, r === "control-plane");
  }
  assert.ok(rolePermissions(names, "control-plane").pub.deny.includes("sluice.audit.>"));
  assert.deepEqual(roleTags("data-plane", { region: "eu", node: "dp-1", cancel: 7 }), ["role:data-plane", "region:eu", "node:dp-1", "cancel:7"]);
  assert.deepEqual(roleTags("auditor", {}), ["role:auditor"]);
  assert.throws(() => roleTags("data-plane", { region: "eu" }));
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadConfig } from "@sluice/shared/config";

const deploy = fileURLToPath(new URL("../../deploy/", import.meta.url));

test("the example deployment configs load without problems", () => {
  const dp = loadConfig(`${deploy}config/data-plane.yaml`, {});
  assert.equal(dp.dataPlane.tls.mode, "required");
  assert.equal(dp.dataPlane.audit.durability, "ack");
  assert.equal(dp.node, "dp-eu-west-1-a");
  const cp = loadConfig(`${deploy}config/control-plane.yaml`, {});
  assert.deepEqual(cp.controlPlane.adminGroups, ["sluice-admins"]);
  assert.equal(cp.controlPlane.issuers[0]?.name, "corp-sso");
});


import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
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

test("the example nats-server config is accepted by nats-server", () => {
  // -t: test the configuration file and exit
  const out = execFileSync("nats-server", ["-t", "-c", `${deploy}nats/nats-server.conf`], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  assert.match(out + "", /valid|^$/);
});

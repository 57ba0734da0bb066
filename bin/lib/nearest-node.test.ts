import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseNearest, libpqUri, pgEnv, splitAddress, type NodeCandidate } from "./nearest-node.js";

const c = (node: string, region: string, rttMs?: number, stale = false): NodeCandidate => ({ node, region, address: `${node}:7432`, rttMs, stale });

test("the hinted region's fastest healthy node wins; unreachable and stale nodes never do", () => {
  const fleet = [c("eu-1", "eu", 9), c("eu-2", "eu", 3), c("us-1", "us", 1), c("eu-3", "eu", 0.5, true), c("eu-4", "eu", undefined)];
  assert.equal(chooseNearest(fleet, "eu").chosen?.node, "eu-2");
  assert.deepEqual(chooseNearest(fleet, "eu").ranked.map((n) => n.node), ["eu-2", "eu-1", "us-1"]);
  // no hint: nearest anywhere
  assert.equal(chooseNearest(fleet).chosen?.node, "us-1");
});

test("a region with no healthy node falls back to the nearest elsewhere, and says so; nothing healthy chooses nothing", () => {
  const fleet = [c("eu-1", "eu", undefined), c("us-1", "us", 20), c("ap-1", "ap", 5)];
  const r = chooseNearest(fleet, "eu");
  assert.equal(r.chosen?.node, "ap-1");
  assert.equal(r.fellBack, true);
  assert.equal(chooseNearest([c("eu-1", "eu", undefined, false), c("us-1", "us", 2, true)], "eu").chosen, undefined);
});

test("URI and PG variables quote what a shell or a URI would misread", () => {
  const p = { host: "db.eu.example.com", port: 7432, database: "orders db", user: "ci's", sslmode: "verify-full" };
  assert.equal(libpqUri(p), "postgresql://ci's@db.eu.example.com:7432/orders%20db?sslmode=verify-full");
  assert.equal(libpqUri({ ...p, host: "::1", user: undefined }), "postgresql://[::1]:7432/orders%20db?sslmode=verify-full");
  assert.equal(pgEnv(p), "export PGHOST='db.eu.example.com'\nexport PGPORT='7432'\nexport PGDATABASE='orders db'\nexport PGSSLMODE='verify-full'\nexport PGUSER='ci'\\''s'\n");
  assert.deepEqual(splitAddress("[::1]:7432"), { host: "::1", port: 7432 });
  assert.throws(() => splitAddress("nohost"));
});

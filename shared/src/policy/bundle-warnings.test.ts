import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { bundleWarnings, formatWarning } from "./bundle-warnings.js";
import { parseBundle } from "./parse-bundle.js";
import type { Bundle } from "./bundle.js";

const contract = (): Bundle => {
  const file = fileURLToPath(new URL("../../../test/fixtures/policies/valid-contract.yaml", import.meta.url));
  return parseBundle(readFileSync(file, "utf8"), file).bundle!;
};

test("given the contract's example bundle, then nothing is worth a warning", () => {
  assert.deepEqual(bundleWarnings(contract()), []);
});

test("given a policy that lists utility for its driver's start-up statements, then it is told utility is not needed for them", () => {
  const b = contract();
  b.policies[0]!.allow = ["read", "utility"];
  const w = bundleWarnings(b);
  assert.equal(w.length, 1);
  assert.equal(w[0]!.pointer, "/policies/0/allow/1");
  assert.match(w[0]!.message, /^policy ci-read allows utility: transaction control, SHOW, settings that change no privilege, FETCH\/MOVE\/CLOSE, DEALLOCATE and DISCARD are allowed to every connected identity without it; utility now allows only LISTEN/);
  assert.match(formatWarning(w[0]!), /^warning: \/policies\/0\/allow\/1: policy ci-read allows utility/);
});

test("given utility under requireApproval or deny, then the warning says what it still reaches", () => {
  const b = contract();
  b.policies[1]!.requireApproval = ["utility"];
  b.policies[1]!.deny = ["drop-database", "utility"];
  const w = bundleWarnings(b);
  assert.deepEqual(w.map((x) => x.pointer), ["/policies/1/requireApproval/0", "/policies/1/deny/1"]);
  assert.match(w[1]!.message, /deny a named risk \(role-change, search-path, session-replication-role\)/);
});

test("given a policy that allows every class (a development bundle), then listing utility is no news", () => {
  const b = contract();
  b.policies[0]!.allow = ["read", "write", "ddl", "admin", "utility", "copy"];
  assert.deepEqual(bundleWarnings(b), []);
});

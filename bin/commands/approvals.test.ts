import test from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { UsageError } from "../lib/cli-kit.js";
import { run } from "./approvals.js";

test("sluice approvals: usage errors are exit 2 (UsageError), a missing target is a one-line refusal (exit 1)", async () => {
  await assert.rejects(run(["approve"]), UsageError);
  await assert.rejects(run(["show", "a", "b"]), UsageError);
  await assert.rejects(run(["list", "extra"]), UsageError);
  await assert.rejects(run(["frobnicate"]), UsageError);
  await assert.rejects(run(["list", "--no-such-flag"]), UsageError);
  assert.equal(await run([]), 2);

  const saved = { ...process.env };
  const write = process.stderr.write.bind(process.stderr);
  let err = "";
  process.env.SLUICE_CONTEXT = join(tmpdir(), "sluice-no-such-context.json");
  delete process.env.SLUICE_CONTROL_PLANE;
  delete process.env.SLUICE_TOKEN;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    assert.equal(await run(["approve", "apr-0123456789"]), 1);
  } finally {
    process.stderr.write = write;
    process.env = saved;
  }
  assert.match(err, /^sluice: no control plane/);
  assert.equal(err.trim().split("\n").length, 1);
});

/**
 * Replays every finding of the differential suite (findings/NNN-*.json) through a real stack and
 * asserts that all five oracles hold for it. An open finding's replay is a todo ("open finding NNN"):
 * it runs and reports, without failing the suite; once its fix lands the finding is marked fixed
 * and its replay becomes a normal regression test.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { startFuzzWorld, type FuzzWorld } from "./fuzz-world.js";
import { checker, type Checker } from "./fuzz-check.js";
import { findingCase, loadFindings } from "./findings.js";

const findings = loadFindings();

test("findings of the differential suite replay clean", { timeout: 300_000 }, async (t) => {
  let world: FuzzWorld | undefined;
  let ck: Checker | undefined;
  for (const f of findings) {
    await t.test(`finding ${f.id} ${f.name} (oracle ${f.oracle}, ${f.kind})`, f.status === "open" ? { todo: `open finding ${f.id}` } : {}, async () => {
      world ??= await startFuzzWorld(t);
      ck ??= checker(world);
      await world.usePolicy(f.policy);
      const { v } = await ck.check(findingCase(f));
      assert.deepEqual(v.failures.map((x) => `${x.oracle}:${x.kind}: ${x.message}`), [], `${f.summary}`);
    });
  }
});

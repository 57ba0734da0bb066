/**
 * The findings files are data the replay and the fuzz budget trust: each is well-formed (its
 * number and name are its file's, its ops can be sent and end with Sync, its policy is the bundle
 * YAML, a fixed one names the commit that fixed it), numbers are never reused, and the signatures
 * tolerated while a finding is open are exactly those of the open ones.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { splitBackend } from "../lib/pg-frames.js";
import { findingCase, loadFindings, openSignatures, writeFinding, type Finding } from "./findings.js";
import { IDENTITIES } from "./fuzz-policy.js";
import { encodeOps } from "./ops.js";

const findings = loadFindings();

test("findings: every file is a well-formed finding the replay can run", () => {
  assert.ok(findings.length > 0);
  const ids = new Set<string>();
  for (const f of findings) {
    const where = f.file;
    assert.match(f.file, /^\d{3}-[a-z0-9-]+\.json$/, where);
    assert.equal(f.file, `${f.id}-${f.name}.json`, `${where}: id and name are the file's`);
    assert.ok(!ids.has(f.id), `${where}: number ${f.id} used twice`);
    ids.add(f.id);
    assert.ok([1, 2, 3, 4, 5].includes(f.oracle), `${where}: oracle ${f.oracle}`);
    assert.ok(f.kind.length > 0 && f.summary.length > 20 && f.summary !== "(to be written)", `${where}: a kind and a summary`);
    assert.ok(f.identity in IDENTITIES, `${where}: identity ${f.identity}`);
    assert.ok(Array.isArray((parseYaml(f.policy) as { policies?: unknown }).policies), `${where}: the policy is a bundle`);
    for (const sig of f.alsoFails ?? []) assert.match(sig, /^[1-5]:\S+$/, `${where}: alsoFails ${sig}`);
    assert.match(f.found.commit, /^[0-9a-f]{7,40}$/, `${where}: found.commit`);
    if (f.status === "fixed") {
      assert.match(f.fixed?.commit ?? "", /^[0-9a-f]{7,40}$/, `${where}: a fixed finding names the commit that fixed it`);
      assert.match(f.fixed?.date ?? "", /^\d{4}-\d{2}-\d{2}/, `${where}: and when`);
    } else {
      assert.equal(f.status, "open", where);
      assert.equal(f.fixed, undefined, `${where}: an open finding has no fix`);
    }
    const c = findingCase(f);
    // ReadyForQuery bounds the last answer: the case ends with a Sync or a simple Query
    assert.ok(["S", "Q"].includes(c.ops[c.ops.length - 1]?.t ?? ""), `${where}: the case ends with Sync or a Query`);
    const { messages, rest } = splitBackend(encodeOps(c.ops));
    assert.equal(rest.length, 0, where);
    assert.equal(messages.length, c.ops.filter((o) => o.t !== "W").length, where);
    assert.ok(c.approvals.every((a) => typeof a === "boolean"), where);
  }
  // numbers are consecutive: a finding is never deleted, only fixed
  assert.deepEqual([...ids].map(Number), findings.map((_, i) => i + 1));
});

test("findings: the budget tolerates exactly the signatures of open findings, each named by the finding it is the signature of", () => {
  const base = findings[0]!;
  const f = (id: string, status: Finding["status"], oracle: Finding["oracle"], kind: string, alsoFails?: string[]): Finding => ({ ...base, id, status, oracle, kind, ...(alsoFails ? { alsoFails } : {}) });
  const m = openSignatures([f("001", "open", 3, "a", ["1:d"]), f("002", "fixed", 4, "b"), f("003", "open", 3, "a", ["4:c"]), f("004", "open", 1, "d", ["4:c"])]);
  assert.deepEqual([...m], [["3:a", "001"], ["1:d", "004"], ["4:c", "003"]]);
  assert.deepEqual([...openSignatures(findings)].every(([, id]) => findings.find((x) => x.id === id)?.status === "open"), true);
});

test("findings: a new one takes the next number after the highest, files of other names are ignored", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-findings-"));
  try {
    assert.deepEqual(loadFindings(join(dir, "missing")), []);
    writeFileSync(join(dir, "README.md"), "not a finding");
    const { id: _id, file: _file, ...rest } = findings[0]!;
    assert.equal(writeFinding({ ...rest, name: "first" }, dir), "001-first.json");
    writeFileSync(join(dir, "007-later.json"), JSON.stringify({ ...rest, id: "007", name: "later" }));
    assert.equal(writeFinding({ ...rest, name: "next" }, dir), "008-next.json");
    const back = loadFindings(dir);
    assert.deepEqual(back.map((x) => [x.id, x.file]), [["001", "001-first.json"], ["007", "007-later.json"], ["008", "008-next.json"]]);
    assert.deepEqual(back[0]!.ops, rest.ops);
    assert.equal(readdirSync(dir).length, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

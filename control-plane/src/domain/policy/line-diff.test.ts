import test from "node:test";
import assert from "node:assert/strict";
import { unifiedDiff } from "./line-diff.js";

test("equal texts have no diff", () => {
  assert.equal(unifiedDiff("a\nb\n", "a\nb\n"), "");
});

test("a changed line shows as - and + with context and a hunk header", () => {
  const a = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"].join("\n") + "\n";
  const b = a.replace("5\n", "five\n");
  assert.equal(unifiedDiff(a, b, { fromLabel: "r1", toLabel: "r2" }), ["--- r1", "+++ r2", "@@ -2,7 +2,7 @@", " 2", " 3", " 4", "-5", "+five", " 6", " 7", " 8", ""].join("\n"));
});

test("an empty start is all additions", () => {
  assert.equal(unifiedDiff("", "x\ny\n"), ["--- a", "+++ b", "@@ -0,0 +1,2 @@", "+x", "+y", ""].join("\n"));
});

test("far-apart changes make separate hunks", () => {
  const lines = Array.from({ length: 30 }, (_, i) => `l${i}`);
  const b = [...lines];
  b[2] = "X";
  b[25] = "Y";
  const d = unifiedDiff(lines.join("\n"), b.join("\n"));
  assert.equal(d.match(/^@@/gm)?.length, 2);
});

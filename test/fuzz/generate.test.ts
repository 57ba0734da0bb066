/**
 * The generator, without a server: every case is a sequence the suite can send and bound (it ends
 * with Sync; a wait follows a Flush, so what it waits for is not held back; COPY data only inside a
 * COPY FROM STDIN; a simple Query never carries a statement that needs parameters), and over a
 * fixed seed it reaches every statement of the pool, every kind of message and every option, with
 * writes weighted to the identity that may make them. A weight set to 0 or a pool entry that no
 * arbitrary draws from would otherwise only show as a quieter fuzz run.
 */
import test from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { splitBackend } from "../lib/pg-frames.js";
import { fuzzCase } from "./generate.js";
import { encodeOps, type Op } from "./ops.js";
import type { FuzzCase } from "./run-case.js";
import { CURSORS, DENIED_TABLE, MASKED_READS, NEEDS_APPROVAL, PREPARED, READS, SETTINGS, TRANSACTION, WRITES } from "./sql-pool.js";

const SEED = 11;
const sample: FuzzCase[] = fc.sample(fuzzCase, { seed: SEED, numRuns: 3000 });

const isCopyIn = (sql: string) => /^COPY \w+ FROM STDIN$/.test(sql);
const COPY_OPS = new Set(["d", "c", "f"]);

test("generator: every case can be sent as it is and ends with Sync", () => {
  fc.assert(
    fc.property(fuzzCase, (c) => {
      assert.ok(c.identity === "reader" || c.identity === "writer");
      assert.deepEqual(c.ops[c.ops.length - 1], { t: "S" });
      assert.ok(c.approvals.length <= 3);
      const sent = c.ops.filter((o) => o.t !== "W");
      const { messages, rest } = splitBackend(encodeOps(c.ops));
      assert.equal(rest.length, 0);
      assert.deepEqual(messages.map((m) => m.code), sent.map((o) => o.t));
    }),
    { seed: SEED, numRuns: 300 },
  );
});

test("generator: a wait follows a Flush, COPY data follows a COPY FROM STDIN, a Query has no $n", () => {
  fc.assert(
    fc.property(fuzzCase, (c) => {
      c.ops.forEach((op, i) => {
        const prev = c.ops[i - 1];
        if (op.t === "W") assert.equal(prev?.t, "H", `op ${i}: a W after ${prev?.t}`);
        if (COPY_OPS.has(op.t)) {
          // the data follows its COPY directly: the Query, or the Parse/Bind/Execute round
          let j = i - 1;
          while (j >= 0 && c.ops[j]!.t === "d") j--;
          const start = c.ops[j]!;
          const ok = (start.t === "Q" && isCopyIn(start.sql)) || (start.t === "E" && c.ops[j - 2]?.t === "P" && isCopyIn((c.ops[j - 2] as Extract<Op, { t: "P" }>).sql));
          assert.ok(ok, `op ${i} (${op.t}) does not follow a COPY FROM STDIN`);
        }
        if (op.t === "Q") assert.doesNotMatch(op.sql, /\$\d::/, `op ${i}: a Query with a parameter`);
      });
    }),
    { seed: SEED, numRuns: 300 },
  );
});

test("generator: over a fixed seed it reaches every statement of the pool and every kind of message", () => {
  const texts = new Set<string>();
  const kinds = new Set<string>();
  for (const c of sample) {
    for (const op of c.ops) {
      kinds.add(op.t === "D" || op.t === "C" ? `${op.t}${op.kind}` : op.t);
      if (op.t === "P") texts.add(op.sql);
      if (op.t === "Q") for (const part of op.sql.split("; ")) texts.add(part);
      if (op.t === "Q") texts.add(op.sql);
      if (op.t === "E" && op.maxRows > 0) kinds.add("E with a row limit");
      if (op.t === "B" && op.results?.length) kinds.add("B with binary results");
      if (op.t === "B" && op.params.some((p) => p !== null && typeof p === "object")) kinds.add("B with a binary parameter");
      if (op.t === "B" && op.params.some((p) => p === null)) kinds.add("B with a NULL");
    }
  }
  for (const s of [...READS, ...MASKED_READS, ...DENIED_TABLE, ...WRITES, ...NEEDS_APPROVAL, ...TRANSACTION, ...PREPARED, ...CURSORS, ...SETTINGS]) {
    assert.ok(texts.has(s.sql), `never generated: ${JSON.stringify(s.sql)}`);
  }
  for (const k of ["Q", "P", "B", "DS", "DP", "E", "CS", "CP", "S", "H", "W", "d", "c", "f", "E with a row limit", "B with binary results", "B with a binary parameter", "B with a NULL"]) {
    assert.ok(kinds.has(k), `never generated: ${k}`);
  }
  assert.ok(sample.some((c) => c.identity === "reader") && sample.some((c) => c.identity === "writer"));
  assert.ok(sample.some((c) => c.approvals.includes(true)) && sample.some((c) => c.approvals.includes(false)));
  assert.ok(sample.some((c) => c.ops.some((o) => o.t === "Q" && o.sql.includes("; "))), "a multi-statement Query");
  // the shapes issue 11 names, which the unit mix alone draws too rarely (coverage.ts counts them in a run)
  const somewhere = (what: string, p: (ops: Op[], i: number) => boolean) =>
    assert.ok(sample.some((c) => c.ops.some((_, i) => p(c.ops, i))), `never generated: ${what}`);
  somewhere("a portal bound in a transaction block, executed after a Sync", (ops, i) => {
    const b = ops[i]!;
    return b.t === "B" && ops.slice(0, i).some((o) => o.t === "Q" && o.sql === "BEGIN") && ops.slice(i + 1).some((o, j, rest) => o.t === "E" && o.portal === b.portal && rest.slice(0, j).some((x) => x.t === "S"));
  });
  somewhere("a SQL PREPAREd name bound with the protocol", (ops, i) => {
    const q = ops[i]!;
    const name = q.t === "Q" ? /^PREPARE (\w+)/.exec(q.sql)?.[1] : undefined;
    return !!name && ops.slice(i + 1).some((o) => o.t === "B" && o.stmt === name);
  });
  somewhere("a Parse's name used by SQL EXECUTE and by DEALLOCATE among other statements", (ops, i) => {
    const p = ops[i]!;
    return p.t === "P" && !!p.name && ops.slice(i + 1).some((o) => o.t === "Q" && new RegExp(`(^|; )DEALLOCATE ${p.name}(;|$)`).test(o.sql) && o.sql.includes("; "));
  });
  somewhere("a Parse's name executed by SQL EXECUTE", (ops, i) => {
    const p = ops[i]!;
    return p.t === "P" && !!p.name && ops.slice(i + 1).some((o) => o.t === "Q" && o.sql.includes(`EXECUTE ${p.name}`));
  });
  somewhere("a suspended portal resumed after a Flush and a wait", (ops, i) => {
    const e = ops[i]!;
    return e.t === "E" && e.maxRows > 0 && ops[i + 1]?.t === "H" && ops[i + 2]?.t === "W" && ops[i + 3]?.t === "E";
  });
});

test("generator: a read-only identity meets writes, but less often than the deployer", () => {
  const writes = new Set(WRITES.map((s) => s.sql));
  const share = (identity: string) => {
    let n = 0, w = 0;
    for (const c of sample.filter((x) => x.identity === identity)) {
      for (const op of c.ops) {
        if (op.t !== "P" && op.t !== "Q") continue;
        n++;
        if (writes.has(op.sql)) w++;
      }
    }
    return w / n;
  };
  const reader = share("reader"), writer = share("writer");
  assert.ok(reader > 0.02, `the reader meets writes (${reader.toFixed(3)})`);
  assert.ok(writer > reader * 1.5, `the writer meets more writes (${writer.toFixed(3)}) than the reader (${reader.toFixed(3)})`);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { Progress, type ProgressClock } from "./progress.js";

/** A clock the test moves by hand; `every` ticks are fired with advance(). */
function manualClock() {
  let now = 0;
  const ticks = new Set<() => void>();
  const clock: ProgressClock = {
    now: () => now,
    every(_ms, tick) {
      ticks.add(tick);
      return () => ticks.delete(tick);
    },
  };
  return {
    clock,
    advance(ms: number) {
      now += ms;
      for (const t of ticks) t();
    },
    get active() {
      return ticks.size;
    },
  };
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test("not a terminal: one plain line per wait, no carriage return or escape code, whatever the wait's length", async () => {
  let out = "";
  const c = manualClock();
  const p = new Progress({ write: (s) => (out += s), isTTY: false }, c.clock, "  ");
  const d = deferred<number>();
  const w = p.while("waiting for a checkpoint", d.promise);
  for (let i = 0; i < 50; i++) c.advance(100);
  d.resolve(7);
  const r = await w;
  assert.equal(out, "  … waiting for a checkpoint\n");
  assert.deepEqual(r, { value: 7, ms: 5000 });
  assert.equal(c.active, 0);
});

test("a terminal: the spinner redraws one line with the elapsed time and erases it when the wait ends", async () => {
  const writes: string[] = [];
  const c = manualClock();
  const p = new Progress({ write: (s) => writes.push(s), isTTY: true }, c.clock);
  const d = deferred<string>();
  const w = p.while("pending", d.promise);
  c.advance(100);
  c.advance(1400);
  d.resolve("ok");
  assert.equal((await w).value, "ok");
  assert.ok(writes.slice(0, -1).every((s) => s.startsWith("\r\x1b[2K") && !s.includes("\n")), "redrawn in place, never a new line");
  assert.match(writes[0]!, /pending 0\.0s$/);
  assert.match(writes[2]!, /pending 1\.5s$/);
  assert.notEqual(writes[0]!.slice(5, 6), writes[1]!.slice(5, 6), "the frame moves");
  assert.equal(writes.at(-1), "\r\x1b[2K");
  assert.equal(c.active, 0);
});

test("a failed wait stops the indicator and passes the error on", async () => {
  let out = "";
  const c = manualClock();
  const p = new Progress({ write: (s) => (out += s), isTTY: true }, c.clock);
  await assert.rejects(p.while("x", () => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(c.active, 0);
  assert.ok(out.endsWith("\r\x1b[2K"));
});

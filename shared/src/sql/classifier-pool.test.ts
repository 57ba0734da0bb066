import { test } from "node:test";
import assert from "node:assert/strict";
import { SluiceError } from "../errors/sluice-error.js";
import { classifySql } from "./classify-sql.js";
import { BODY_INLINE_MAX_BYTES, ClassifierPool, INLINE_MAX_BYTES } from "./classifier-pool.js";

/** about `bytes` of one INSERT … VALUES: a parse of hundreds of milliseconds even on an idle machine */
const bulkInsert = (bytes: number) => "INSERT INTO t VALUES " + Array(Math.floor(bytes / 10)).fill("(1,'abc')").join(",");
const longSelect = (pad: number) => `SELECT a, b FROM orders WHERE id = 1 /* ${"x".repeat(pad)} */`;

test("short statements are classified inline (synchronously); long ones in a worker, with the same result", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1 });
  t.after(() => pool.close());
  const short = pool.classify("SELECT 1");
  assert.ok(!(short instanceof Promise));
  assert.deepEqual(short, classifySql("SELECT 1"));
  assert.equal(pool.workers, 0, "no worker is started for short statements");

  const sql = longSelect(INLINE_MAX_BYTES);
  const long = pool.classify(sql);
  assert.ok(long instanceof Promise);
  assert.deepEqual(await long, classifySql(sql));
  // multibyte text is measured in UTF-8 bytes
  const multibyte = pool.classify(`SELECT '${"é".repeat(INLINE_MAX_BYTES / 2)}'`);
  assert.ok(multibyte instanceof Promise);
  assert.equal((await multibyte).ok, true);
  assert.equal(pool.stats.offloaded, 2);
  assert.equal(pool.stats.inline, 1);
});

test("a statement that may carry a PL/pgSQL body goes to a worker above BODY_INLINE_MAX_BYTES, a plain one of the same length stays inline", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1 });
  t.after(() => pool.close());
  const block = (bytes: number) => {
    const head = "DO $$ BEGIN ", tail = " END $$";
    return head + "PERFORM 1; ".repeat(Math.floor((bytes - head.length - tail.length) / 11)) + tail;
  };
  const small = block(BODY_INLINE_MAX_BYTES);
  assert.ok(Buffer.byteLength(small) <= BODY_INLINE_MAX_BYTES);
  assert.ok(!(pool.classify(small) instanceof Promise), "a short DO block stays inline");
  const cases = [
    block(2 * BODY_INLINE_MAX_BYTES),
    `CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ${"PERFORM 1; ".repeat(150)} END $$`,
    `create procedure p() language plpgsql as $b$ begin ${"perform 1; ".repeat(150)} end $b$`,
    // a DO after another statement of the message
    `SELECT 1; DO $$ BEGIN ${"PERFORM 1; ".repeat(150)} END $$`,
  ];
  for (const sql of cases) {
    assert.ok(Buffer.byteLength(sql) > BODY_INLINE_MAX_BYTES && Buffer.byteLength(sql) <= INLINE_MAX_BYTES);
    const c = pool.classify(sql);
    assert.ok(c instanceof Promise, `offloaded: ${sql.slice(0, 30)}`);
    assert.deepEqual(await c, classifySql(sql));
  }
  const plain = longSelect(2 * BODY_INLINE_MAX_BYTES);
  assert.ok(!(pool.classify(plain) instanceof Promise), "a plain statement of that length stays inline");
  assert.equal(pool.stats.offloaded, cases.length);
});

test("a long chain of operators or casts goes to a worker above BODY_INLINE_MAX_BYTES; a statement of that length with a few stays inline", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1 });
  t.after(() => pool.close());
  const chains = [
    "SELECT " + Array(1500).fill("1").join("+"),
    "SELECT " + Array(600).fill("'a'").join("||"),
    "SELECT 1" + "::int".repeat(500),
  ];
  for (const sql of chains) {
    assert.ok(Buffer.byteLength(sql) > BODY_INLINE_MAX_BYTES && Buffer.byteLength(sql) <= INLINE_MAX_BYTES);
    const c = pool.classify(sql);
    assert.ok(c instanceof Promise, `offloaded: ${sql.slice(0, 20)}`);
    assert.deepEqual(await c, classifySql(sql));
  }
  const columns = `SELECT ${Array.from({ length: 200 }, (_, i) => `c${i} + 1 AS x${i}`).join(", ")} FROM t WHERE a = 1`;
  assert.ok(Buffer.byteLength(columns) > BODY_INLINE_MAX_BYTES);
  assert.ok(!(pool.classify(columns) instanceof Promise), "200 operators in a 3 KiB select list stay inline");
  assert.ok(!(pool.classify("SELECT 1+1+1+1 -- " + "x".repeat(2000)) instanceof Promise));
});

test("a statement that overruns the deadline is denied (deadline_exceeded), the thread stays free meanwhile, and the next statement gets a new worker", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1, deadlineMs: 40 });
  t.after(() => pool.close());
  // a worker is running before the hostile statement arrives (its start-up is not what is timed);
  // on a loaded machine a cold worker's first statements may overrun 40 ms themselves
  await warm(pool);
  const started = pool.stats.started;

  const slow = Promise.resolve(pool.classify(bulkInsert(1024 * 1024))).then(() => undefined, (e: unknown) => e);
  let settled = false;
  void slow.then(() => (settled = true));
  let turns = 0;
  while (!settled) {
    await new Promise((r) => setImmediate(r));
    if (!settled) turns++;
  }
  assert.ok(turns > 0, "the event loop turned while the worker parsed");
  const outcome = await slow;
  assert.ok(SluiceError.is(outcome, "deadline_exceeded"), `denied for its time: ${String(outcome)}`);
  assert.match(outcome.message, /within 40 ms/);
  assert.ok(pool.stats.timedOut >= 1);

  await warm(pool);
  assert.ok(pool.stats.started > started, "the overrun worker was replaced");
});

/** a long statement through the pool until one succeeds in time */
async function warm(pool: ClassifierPool): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      if ((await pool.classify(longSelect(INLINE_MAX_BYTES))).ok) return;
    } catch (e) {
      if (i > 50 || !SluiceError.is(e, "deadline_exceeded")) throw e;
    }
  }
}

test("statements wait for a busy worker, at most maxQueued of them; beyond that they are refused (resource_exhausted)", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1, deadlineMs: 60_000, maxQueued: 1 });
  t.after(() => pool.close());
  await pool.classify(longSelect(INLINE_MAX_BYTES));
  const a = pool.classify(bulkInsert(256 * 1024)); // running
  const b = pool.classify(longSelect(INLINE_MAX_BYTES + 1)); // waiting
  await assert.rejects(Promise.resolve(pool.classify(longSelect(INLINE_MAX_BYTES + 2))), (e: unknown) => SluiceError.is(e, "resource_exhausted"));
  assert.equal((await a).ok, true);
  assert.equal((await b).ok, true);
  assert.equal(pool.stats.refused, 1);
});

test("a statement waits for a busy worker at most the deadline (deadline_exceeded)", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1, deadlineMs: 100 });
  t.after(() => pool.close());
  await warm(pool);
  const hostile = pool.classify(bulkInsert(1024 * 1024));
  const waiting = pool.classify(longSelect(INLINE_MAX_BYTES + 1));
  const [h, w] = await Promise.allSettled([hostile, waiting]);
  assert.equal(h.status, "rejected");
  // the waiting statement either ran on the replacement or gave up waiting: never a silent pass
  if (w.status === "rejected") assert.ok(SluiceError.is(w.reason, "deadline_exceeded"));
  else assert.equal(w.value.ok, true);
});

test("a worker that runs out of memory denies only the statement it died on", async (t) => {
  const pool = await ClassifierPool.create({ workers: 1, workerHeapMb: 48, deadlineMs: 120_000 });
  t.after(() => pool.close());
  await pool.classify(longSelect(INLINE_MAX_BYTES));
  // a tree of a million nodes is far beyond 48 MiB of JavaScript heap
  const r = await pool.classify("SELECT " + Array(400_000).fill("(1)").join(","));
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.error, /SQL classifier failed on this statement|out of memory/);
  assert.equal((await pool.classify(longSelect(INLINE_MAX_BYTES))).ok, true);
});

test("close refuses what still waits and ends the workers", async () => {
  const pool = await ClassifierPool.create({ workers: 1 });
  const refused = assert.rejects(Promise.resolve(pool.classify(bulkInsert(512 * 1024))), (e: unknown) => SluiceError.is(e, "unavailable"));
  await pool.close();
  await refused;
  await assert.rejects(Promise.resolve(pool.classify(longSelect(INLINE_MAX_BYTES))), (e: unknown) => SluiceError.is(e, "unavailable"));
  assert.equal(pool.workers, 0);
});

/**
 * What a classification costs where it runs: the measurements behind ClassifierPool's inline bound
 * (shared/src/sql/classifier-pool.ts, INLINE_MAX_BYTES).
 *   - shapes: classifySql on the calling thread for the most expensive statement shapes found
 *     (left-deep operator chains, nested subqueries and brackets, long IN lists, UNION chains, casts,
 *     DO blocks, nested EXECUTE strings), each at 1, 2, 4, 8 and 16 KiB: the stall one such statement
 *     costs every session of the node when it is classified inline.
 *   - handoff: the same pgbench statement classified inline and through a worker (wall time per
 *     statement, and CPU of the calling thread, which is what every other session waits for).
 *   - enforcer: the data plane's decision per pgbench SELECT (a new literal each time, and the same
 *     text again) through snapshotEnforcer alone and with what the node puts around it (the
 *     classifier pool and the volatile-function check with the catalog's facts at hand).
 * Prints one JSON object. Not a test (no thresholds):
 * `node --import tsx test/bench/classify-cost.bench.ts [--rounds N]`.
 */
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { classifySql, loadSqlParser, loadedParser, ClassifierPool } from "@sluice/shared/sql";
import type { PolicySnapshot } from "@sluice/shared/policy";
import { snapshotEnforcer } from "../../data-plane/src/session/snapshot-enforcer.js";
import { staticSnapshots, type Enforcer, type SessionInfo } from "../../data-plane/src/session/session-hooks.js";
import { volatilityEnforcer } from "../../data-plane/src/catalog/volatility-enforcer.js";
import { functionFactsFrom } from "../../data-plane/src/catalog/volatile-calls.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "7" } } });
const rounds = Math.max(1, Number(values.rounds));

/** a statement of about `bytes` bytes of each shape */
const SHAPES: Record<string, (bytes: number) => string> = {
  "plus-chain": (b) => "SELECT " + Array(Math.floor(b / 2)).fill("1").join("+"),
  "concat-chain": (b) => "SELECT " + Array(Math.floor(b / 5)).fill("'a'").join("||"),
  "cast-chain": (b) => "SELECT 1" + "::int".repeat(Math.floor(b / 5)),
  "not-chain": (b) => "SELECT " + "NOT ".repeat(Math.floor(b / 4)) + "true",
  "nested-subquery": (b) => { const k = Math.floor(b / 9); return "SELECT " + "(SELECT ".repeat(k) + "1" + ")".repeat(k); },
  "nested-brackets": (b) => { const k = Math.min(900, Math.floor(b / 2)); return "SELECT " + "(".repeat(k) + "1" + ")".repeat(k) + " + 1".repeat(Math.max(0, Math.floor((b - 2 * k) / 4))); },
  "union-chain": (b) => Array(Math.floor(b / 15)).fill("SELECT 1 UNION").join(" ") + " SELECT 1",
  "join-chain": (b) => "SELECT 1 FROM t0" + Array.from({ length: Math.floor(b / 22) }, (_, i) => ` JOIN t${i + 1} ON true`).join(""),
  "in-list": (b) => "SELECT * FROM t WHERE a IN (" + Array(Math.floor(b / 4)).fill("123").join(",") + ")",
  "values-rows": (b) => "INSERT INTO t VALUES " + Array(Math.floor(b / 10)).fill("(1,'abc')").join(","),
  "statements": (b) => "SELECT 1;".repeat(Math.floor(b / 9)),
  "do-block": (b) => "DO $$ BEGIN " + Array(Math.floor(b / 12)).fill("PERFORM 1+1;").join(" ") + " END $$",
  "do-plus-chain": (b) => "DO $$ BEGIN PERFORM " + Array(Math.floor(b / 2)).fill("1").join("+") + "; END $$",
  "nested-execute": (b) => {
    let s = "SELECT " + Array(Math.floor(b / 4)).fill("1").join("+");
    for (let i = 0; i < 3; i++) s = `DO $x${i}$ BEGIN EXECUTE '${s.replace(/'/g, "''")}'; END $x${i}$`;
    return s;
  },
};
const SIZES = [1024, 2048, 4096, 8192, 16384];

function timeOnce(fn: () => unknown): number {
  const a = performance.now();
  fn();
  return performance.now() - a;
}

/** the least of `rounds` timings (ms): on a shared machine the minimum is the statement's own cost */
async function best(fn: () => unknown): Promise<number> {
  let m = Infinity;
  for (let i = 0; i <= rounds; i++) {
    await loadedParser()!.ensureSpare();
    const t = timeOnce(fn);
    if (i > 0) m = Math.min(m, t);
  }
  return m;
}

async function main(): Promise<void> {
  await loadSqlParser();
  const shapes: Record<string, Record<string, { bytes: number; ms: number; ok: boolean }>> = {};
  const worstAt: Record<string, { shape: string; ms: number }> = {};
  for (const [name, make] of Object.entries(SHAPES)) {
    shapes[name] = {};
    for (const size of SIZES) {
      // a statement that overflowed the parser retired its instance: measure the next on the spare
      await loadedParser()!.ensureSpare();
      const sql = make(size);
      const bytes = Buffer.byteLength(sql);
      let ok = false;
      const ms = await best(() => (ok = classifySql(sql).ok));
      shapes[name][String(size)] = { bytes, ms: Number(ms.toFixed(3)), ok };
      const w = worstAt[String(size)];
      if (!w || ms > w.ms) worstAt[String(size)] = { shape: name, ms: Number(ms.toFixed(3)) };
    }
  }

  // the hand-off: pgbench's SELECT, with a new comment each time (nothing caches it)
  const n = 2000 * rounds;
  const sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 61212;";
  const inlineStart = performance.now();
  const inlineCpu = process.cpuUsage();
  for (let i = 0; i < n; i++) classifySql(`${sql} -- ${i}`);
  const inline = { wallUs: ((performance.now() - inlineStart) * 1000) / n, callingThreadBusyUs: cpuUs(process.cpuUsage(inlineCpu)) / n };

  const pool = await ClassifierPool.create({ inlineMaxBytes: 0, workers: 1 });
  const startAt = performance.now();
  await pool.classify(sql);
  const workerStartMs = performance.now() - startAt;
  for (let i = 0; i < 500; i++) await pool.classify(`${sql} -- warm ${i}`);
  // the calling thread's busy time (its event loop's active time): what other sessions wait for
  const elu = performance.eventLoopUtilization();
  const wallStart = performance.now();
  for (let i = 0; i < n; i++) await pool.classify(`${sql} -- ${i}`);
  const handoff = { wallUs: ((performance.now() - wallStart) * 1000) / n, callingThreadBusyUs: (performance.eventLoopUtilization(elu).active * 1000) / n };
  await pool.close();

  const enforcer = await enforcerCost();

  process.stdout.write(
    JSON.stringify(
      {
        benchmark: "classify-cost",
        unit: "ms per statement (least of rounds) for shapes; µs per statement for the hand-off",
        rounds,
        node: process.version,
        worstInlineShapeBySize: worstAt,
        shapes,
        pgbenchSelect: { inline, worker: handoff, workerStartMs: Number(workerStartMs.toFixed(1)) },
        enforcer,
      },
      null,
      2,
    ) + "\n",
  );
}

/** CPU ns per decision of pgbench's SELECT through the bare enforcer and the node's composition */
async function enforcerCost(): Promise<Record<string, { newLiteralNs: number; sameTextNs: number }>> {
  const snap: PolicySnapshot = {
    revision: 1, hash: "h", appliedBy: "bench", appliedAt: new Date(0).toISOString(),
    bundle: { issuers: [], groups: ["app"], resources: [], masking: [], policies: [{ name: "app", groups: ["app"], resources: ["bench"], allow: ["read", "write"] }] },
  };
  const session: SessionInfo = {
    sessionId: "s", nodeId: "n", region: "r", resource: "bench", clientUser: "u", clientAddress: "127.0.0.1:1",
    subject: "s", issuer: "dev", groups: ["app"], claims: {}, policyRevision: 1,
  };
  const facts = await functionFactsFrom({ builtins: ["count", "now"], functions: [], operators: [], views: [], policies: [] }, classifySql);
  const pool = await ClassifierPool.create({ workers: 1 });
  const variants: Record<string, Enforcer> = {
    bare: snapshotEnforcer(staticSnapshots(snap)),
    node: volatilityEnforcer(snapshotEnforcer(staticSnapshots(snap), undefined, { classify: (sql) => pool.classify(sql) }), {
      snapshots: staticSnapshots(snap),
      catalog: { functionFactsNow: () => facts, functionFacts: async () => facts },
    }),
  };
  const out: Record<string, { newLiteralNs: number; sameTextNs: number }> = {};
  for (const name of Object.keys(variants)) out[name] = { newLiteralNs: Infinity, sameTextNs: Infinity };
  const n = 20_000;
  let k = 0;
  // the variants take turns, the least of the rounds counts (warm-up and neighbours weigh on one round, not on the result)
  for (let r = 0; r < 3 * rounds; r++) {
    for (const [name, e] of Object.entries(variants)) {
      // CPU time, not wall time: on a shared machine the wall clock measures the neighbours too
      let at = process.cpuUsage();
      for (let i = 0; i < n; i++) e.decide(`SELECT abalance FROM pgbench_accounts WHERE aid = ${k++}`, "simple", session);
      const fresh = (cpuUs(process.cpuUsage(at)) * 1000) / n;
      at = process.cpuUsage();
      for (let i = 0; i < n; i++) e.decide("SELECT abalance FROM pgbench_accounts WHERE aid = 7", "simple", session);
      const same = (cpuUs(process.cpuUsage(at)) * 1000) / n;
      out[name] = { newLiteralNs: Math.round(Math.min(out[name]!.newLiteralNs, fresh)), sameTextNs: Math.round(Math.min(out[name]!.sameTextNs, same)) };
    }
  }
  await pool.close();
  return out;
}

function cpuUs(u: NodeJS.CpuUsage): number {
  return u.user + u.system;
}

main().catch((e) => {
  process.stderr.write(`classify-cost: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});

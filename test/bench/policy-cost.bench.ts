/**
 * Micro-benchmark of the per-statement decision path the data-plane session runs on every
 * Query/Parse, over the guardrails corpus (test/fixtures/corpus):
 *   - uncached: classifySql (libpg-query parse + AST walk) + evaluate
 *   - cached:   decideSql hitting the DecisionCache (key build + LRU refresh)
 *   - parse:    libpg-query alone, for reference (the floor of the uncached path)
 *   - pgbench:  uncached classifySql + evaluate of pgbench's five TPC-B-like statements (simple
 *               protocol, literal values), the statement mix the proxy benchmark runs
 *   - pgbenchNewLiterals: the same five through decideSql with new values every time, as
 *               `pgbench -M simple` sends them: never the same text twice, so each is decided by
 *               its shape (shared/src/sql/literal-shape.ts: a normalize instead of a parse)
 * Prints one JSON object on stdout: p50/p99/mean ns per decision for each. Not a test (no
 * thresholds): `node --import tsx test/bench/policy-cost.bench.ts [--rounds N]`.
 *
 * p50/p99 come from timing each call (process.hrtime.bigint; its own cost, measured and reported as
 * `timerOverheadNs`, is subtracted); `meanNs` from timing whole passes, which has no timer noise.
 */
import { parseArgs } from "node:util";
import { parseSync } from "libpg-query";
import { classifySql, decideSql, evaluate, loadSqlParser, DecisionCache, SqlPrepared } from "@sluice/shared/sql";
import type { Bundle } from "@sluice/shared/policy";
import { loadCorpus, loadCorpusPolicy, corpusResource, type CorpusEntry } from "../fixtures/corpus/load-corpus.js";

/** pgbench's built-in tpcb-like script as `-M simple` sends it (the values are literals). */
const PGBENCH = [
  "UPDATE pgbench_accounts SET abalance = abalance + -2735 WHERE aid = 61212;",
  "SELECT abalance FROM pgbench_accounts WHERE aid = 61212;",
  "UPDATE pgbench_tellers SET tbalance = tbalance + -2735 WHERE tid = 7;",
  "UPDATE pgbench_branches SET bbalance = bbalance + -2735 WHERE bid = 1;",
  "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 61212, -2735, CURRENT_TIMESTAMP);",
];

const { values } = parseArgs({ options: { rounds: { type: "string", default: "20" } } });
const rounds = Math.max(1, Number(values.rounds));

interface Stats {
  samples: number;
  p50Ns: number;
  p99Ns: number;
  meanNs: number;
}

function percentile(sorted: Float64Array, p: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function timerOverhead(): number {
  const n = 100_000;
  const xs = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const a = process.hrtime.bigint();
    const b = process.hrtime.bigint();
    xs[i] = Number(b - a);
  }
  xs.sort();
  return percentile(xs, 50);
}

function measure(entries: CorpusEntry[], fn: (e: CorpusEntry) => unknown, overhead: number): Stats {
  // warm-up: JIT and caches
  for (let r = 0; r < 3; r++) for (const e of entries) fn(e);
  const xs = new Float64Array(entries.length * rounds);
  let k = 0;
  for (let r = 0; r < rounds; r++) {
    for (const e of entries) {
      const a = process.hrtime.bigint();
      fn(e);
      const b = process.hrtime.bigint();
      xs[k++] = Math.max(0, Number(b - a) - overhead);
    }
  }
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) for (const e of entries) fn(e);
  const mean = Number(process.hrtime.bigint() - t0) / (rounds * entries.length);
  xs.sort();
  return { samples: xs.length, p50Ns: Math.round(percentile(xs, 50)), p99Ns: Math.round(percentile(xs, 99)), meanNs: Math.round(mean) };
}

async function main(): Promise<void> {
  await loadSqlParser();
  const bundle: Bundle = loadCorpusPolicy();
  const entries = loadCorpus().filter((e) => e.sql.trim() !== "");
  const overhead = timerOverhead();
  const keys = new Map<CorpusEntry, string>();
  for (const e of entries) keys.set(e, DecisionCache.contextKey(corpusResource, e.groups, undefined));

  const parse = measure(entries, (e) => {
    try {
      parseSync(e.sql);
    } catch {
      /* garbage entries fail to parse: that cost counts too */
    }
  }, overhead);

  const uncached = measure(entries, (e) =>
    evaluate(bundle, { resource: corpusResource, groups: e.groups }, classifySql(e.sql), new SqlPrepared()), overhead);

  // the corpus policy's `app` identity may read and write every table but public.secrets
  const bench: CorpusEntry[] = Array.from({ length: 50 }, () => PGBENCH.map((sql): CorpusEntry => ({ sql, groups: ["app"], expect: "allow" }))).flat();
  const pgbench = measure(bench, (e) =>
    evaluate(bundle, { resource: corpusResource, groups: e.groups }, classifySql(e.sql), new SqlPrepared()), overhead);

  // new values every call (the text cache never answers): the statement's shape does
  const shapes = new DecisionCache(10_000);
  const appKey = DecisionCache.contextKey(corpusResource, ["app"], undefined);
  let n = 0;
  const fresh = [
    (v: number) => `UPDATE pgbench_accounts SET abalance = abalance + -${v % 5000} WHERE aid = ${v};`,
    (v: number) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${v};`,
    (v: number) => `UPDATE pgbench_tellers SET tbalance = tbalance + -${v % 5000} WHERE tid = ${v % 100};`,
    (v: number) => `UPDATE pgbench_branches SET bbalance = bbalance + -${v % 5000} WHERE bid = ${v % 10};`,
    (v: number) => `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${v % 100}, ${v % 10}, ${v}, -${v % 5000}, CURRENT_TIMESTAMP);`,
  ];
  const pgbenchNewLiterals = measure(bench, () =>
    decideSql(shapes, 1, bundle, { resource: corpusResource, groups: ["app"] }, appKey, fresh[n % 5]!(++n)), overhead);

  const cache = new DecisionCache(10_000);
  const cached = measure(entries, (e) =>
    decideSql(cache, 1, bundle, { resource: corpusResource, groups: e.groups }, keys.get(e)!, e.sql), overhead);

  process.stdout.write(
    JSON.stringify(
      {
        benchmark: "policy-cost",
        unit: "ns per decision (one client message)",
        corpusStatements: entries.length,
        rounds,
        timerOverheadNs: overhead,
        node: process.version,
        parse,
        uncached,
        cached,
        pgbench,
        pgbenchNewLiterals,
        pgbenchShapeHitRatio: Number((shapes.shapeHits / Math.max(1, shapes.hits + shapes.misses)).toFixed(4)),
        cacheHitRatio: Number((cache.hits / Math.max(1, cache.hits + cache.misses)).toFixed(4)),
      },
      null,
      2,
    ) + "\n",
  );
}

main().catch((e) => {
  process.stderr.write(`policy-cost: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});

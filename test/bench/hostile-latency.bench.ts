/**
 * Issue 11's must-hold "after any hostile input the node still serves an uncached statement for
 * another session within 100 ms", measured: a real data-plane node (child process, the composition
 * of `sluice data-plane`: policy on every statement, the classifier pool, the volatile-function
 * check, masking of two columns, audit to JetStream) in front of the shared Postgres; one session
 * sends each hostile input of test/e2e/hostile-input.test.ts (and a few shapes just under the
 * inline bound, and large statements the policy allows, whose results go through the masker),
 * (each round a new text: no cache knows it) while a second session sends statements no cache knows, one after another with a short pause,
 * from before the hostile statement is sent until a while after it was answered. Each victim
 * statement reads the masked table (a new column alias each time: a new text, a new plan).
 *
 * Prints and writes (--out) p50/p99/max of the victim's latency per input and over all of them, the
 * victim's latency with no hostile input, the node's longest event-loop delay in each round (its
 * /metrics), and the load average. Not a test: no thresholds.
 * `node --import tsx test/bench/hostile-latency.bench.ts [--rounds N] [--burn N] [--only a,b] [--out FILE]`
 * (--burn N runs N busy-looping processes meanwhile, for a loaded machine on demand).
 */
import { parseArgs } from "node:util";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { selfSignedCert } from "../lib/self-signed.js";
import { startSluiceNode } from "./lib/sluice-node.js";
import { percentile } from "./lib/stats.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    burn: { type: "string", default: "0" },
    only: { type: "string" },
    out: { type: "string" },
    idle: { type: "string", default: "40" },
  },
});
const rounds = Math.max(1, Number(flags.rounds));
const burn = Math.max(0, Number(flags.burn));
const only = flags.only ? new Set(flags.only.split(",")) : undefined;
const log = (s: string) => process.stderr.write(`[hostile] ${s}\n`);

const MIB = 1024 * 1024;
/** the inputs, by name: the e2e test's, then shapes near the inline bound and large allowed reads */
const INPUTS: Record<string, () => string> = {
  "values-1MiB": () => "INSERT INTO pgbench_accounts VALUES " + Array(Math.floor(MIB / 12)).fill("(1, 'abc')").join(","),
  "statements-1MiB": () => "SELECT 1;".repeat(Math.floor(MIB / 9) - 4) + "DELETE FROM pgbench_accounts",
  "plpgsql-1MiB": () => "DO $$ BEGIN " + Array(Math.floor(MIB / 11) - 10).fill("PERFORM 1;").join(" ") + " DELETE FROM pgbench_accounts; END $$",
  "brackets-5000": () => "SELECT " + "(".repeat(5000) + "1" + ")".repeat(5000),
  "subqueries-990": () => "SELECT " + "(SELECT ".repeat(990) + "1" + ")".repeat(990),
  overflow: () => "SELECT " + "(SELECT ".repeat(990) + "1 + 1".repeat(1000) + ")".repeat(990) + " + " + Array(20_000).fill("1").join("+"),
  "ifs-3000": () => "DO $$ BEGIN " + "IF true THEN ".repeat(3000) + "NULL;" + " END IF;".repeat(3000) + " END $$",
  // just under the 4 KiB inline bound: the most a statement costs the relay's own thread
  "do-perform-4KiB": () => "DO $$ BEGIN " + Array(Math.floor(4000 / 11)).fill("PERFORM 1;").join(" ") + " END $$",
  "do-plus-4KiB": () => "DO $$ BEGIN PERFORM " + Array(1990).fill("1").join("+") + "; END $$",
  "plus-chain-4KiB": () => "SELECT " + Array(2030).fill("1").join("+"),
  // allowed, and read from the masked table: the result's plan is made for a large statement
  "masked-in-list-256KiB": () => "SELECT aid, abalance, filler FROM pgbench_accounts WHERE aid IN (" + Array.from({ length: 256 * 1024 / 7 }, (_, i) => 100000 + i).join(",") + ")",
  "masked-union-64KiB": () => Array.from({ length: 64 * 1024 / 70 }, (_, i) => `SELECT aid, abalance, filler FROM pgbench_accounts WHERE aid = ${i}`).join(" UNION ALL "),
};

interface Sample {
  input: string;
  ms: number;
}

async function main() {
  const admin = new pg.Client({ connectionString: process.env.SLUICE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" });
  await admin.connect();
  const db = `bench_hostile_${randomBytes(4).toString("hex")}`;
  await admin.query(`CREATE DATABASE ${db}`);
  const burners: ChildProcess[] = [];
  let node: Awaited<ReturnType<typeof startSluiceNode>> | undefined;
  try {
    const setup = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` });
    await setup.connect();
    await setup.query(
      "CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84)); " +
        "INSERT INTO pgbench_accounts SELECT g, 1, g * 7, 'filler ' || g FROM generate_series(1, 1000) g",
    );
    await setup.end();
    node = await startSluiceNode({ name: "hostile", upstreamPort: 5432, database: db, cert: selfSignedCert(), durability: "ack", masked: true });
    const env = node.target("hostile").env;
    const client = async () => {
      const c = new pg.Client({ host: env.PGHOST, port: Number(env.PGPORT), user: env.PGUSER, database: env.PGDATABASE, password: env.PGPASSWORD, ssl: { rejectUnauthorized: false } });
      c.on("error", () => undefined);
      await c.connect();
      return c;
    };
    const victim = await client();
    const attacker = await client();
    let seq = 0;
    const victimErrors: Record<string, number> = {};
    const uncached = async (): Promise<number> => {
      const n = ++seq;
      const at = performance.now();
      try {
        const r = await victim.query(`SELECT aid, abalance AS b_${n}, filler FROM pgbench_accounts WHERE aid = ${(n % 1000) + 1}`);
        if (r.rows.length !== 1 || String(r.rows[0][`b_${n}`]) === String(((n % 1000) + 1) * 7)) throw new Error("the victim's statement was not answered masked");
      } catch (e) {
        // a finding, not a crash of the bench: counted and shown
        const why = `${(e as pg.DatabaseError).code ?? ""} ${(e as Error).message}`.trim();
        victimErrors[why] = (victimErrors[why] ?? 0) + 1;
      }
      return performance.now() - at;
    };
    // warm: the catalog's facts, the first plans, the classifier's workers
    for (let i = 0; i < 20; i++) await uncached();
    await attacker.query(INPUTS["values-1MiB"]!()).catch(() => undefined);
    for (let i = 0; i < 5; i++) await uncached();

    for (let i = 0; i < burn; i++) burners.push(spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }));
    if (burn) await sleep(2000);
    const loadBefore = loadavg()[0]!;

    const lagMs = async () => ((await node!.metrics()).nodejs_eventloop_lag_max_seconds ?? Number.NaN) * 1000;
    await lagMs();
    const idle: number[] = [];
    for (let i = 0; i < Number(flags.idle); i++) {
      idle.push(await uncached());
      await sleep(5);
    }
    const idleLoopMax = await lagMs();
    log(`no hostile input: victim p50 ${percentile(idle, 50).toFixed(1)} max ${Math.max(...idle).toFixed(1)} ms; node loop delay max ${idleLoopMax.toFixed(0)} ms`);
    const samples: Sample[] = [];
    const outcomes: Record<string, string[]> = {};
    // the node's own longest event-loop delay per round (prom-client's monitorEventLoopDelay, reset
    // at each scrape): how long its one thread was held, apart from the victim client's own waits
    const loopMax: Record<string, number[]> = {};

    for (const [name, make] of Object.entries(INPUTS)) {
      if (only && !only.has(name)) continue;
      const sql = make();
      outcomes[name] = [];
      loopMax[name] = [];
      for (let r = 0; r < rounds; r++) {
        await lagMs();
        // a new text each round: no decision cache knows the attacker's statement either
        const text = `${sql} -- round ${r}`;
        let done = false;
        const victimLoop = (async () => {
          let after = 0;
          while (!done || after < 8) {
            samples.push({ input: name, ms: await uncached() });
            if (done) after++;
            await sleep(5);
          }
        })();
        await sleep(10);
        const outcome = await attacker.query(text).then(
          () => "ok",
          (e: pg.DatabaseError) => e.code ?? `error: ${e.message}`,
        );
        done = true;
        await victimLoop;
        outcomes[name]!.push(outcome);
        loopMax[name]!.push(await lagMs());
      }
      const mine = samples.filter((s) => s.input === name).map((s) => s.ms);
      log(`${name} (${Buffer.byteLength(sql)} B, ${[...new Set(outcomes[name])].join("/")}): victim p50 ${percentile(mine, 50).toFixed(1)} p99 ${percentile(mine, 99).toFixed(1)} max ${Math.max(...mine).toFixed(1)} ms (n ${mine.length}); node loop delay max per round ${loopMax[name]!.map((x) => x.toFixed(0)).join("/")} ms`);
    }
    const loadAfter = loadavg()[0]!;
    const all = samples.map((s) => s.ms);
    const row = (xs: number[]) => ({ n: xs.length, p50: round(percentile(xs, 50)), p99: round(percentile(xs, 99)), max: round(Math.max(...xs)) });
    const perInput: Record<string, ReturnType<typeof row> & { outcome: string; loopDelayMaxMs: number[] }> = {};
    for (const name of Object.keys(outcomes)) perInput[name] = { ...row(samples.filter((s) => s.input === name).map((s) => s.ms)), outcome: [...new Set(outcomes[name])].join("/"), loopDelayMaxMs: loopMax[name]!.map(round) };
    const result = {
      at: new Date().toISOString(),
      load: { before: round(loadBefore), after: round(loadAfter), burners: burn },
      rounds,
      noHostile: { ...row(idle), loopDelayMaxMs: round(idleLoopMax) },
      allHostile: row(all),
      over100ms: all.filter((x) => x > 100).length,
      victimErrors,
      perInput,
    };
    const text = JSON.stringify(result, null, 2);
    process.stdout.write(text + "\n");
    if (flags.out) writeFileSync(flags.out, text + "\n");
    await victim.end();
    await attacker.end();
  } finally {
    for (const b of burners) b.kill("SIGKILL");
    await node?.stop();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

const round = (x: number) => Math.round(x * 10) / 10;

await main();

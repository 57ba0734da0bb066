/**
 * A 1,000,000-row result with two masked columns streams through the proxy with bounded memory:
 * the proxy runs in this process, psql (a separate process) reads the result, and this process's
 * RSS is sampled throughout. No speed assertion; the throughput is reported as a diagnostic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { startProxyStack } from "./proxy-stack.js";

const ROWS = 1_000_000;
const CEILING_MB = 200;

test("1,000,000 rows with two masked columns stream with bounded memory", { timeout: 300_000 }, async (t) => {
  const s = await startProxyStack(t, {
    bundle: (b) => ({ ...b, masking: [{ name: "bulk", resources: ["app"], columns: ["big.email", "big.card"], strategy: "partial" }] }),
  });
  await s.direct(
    `CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.com' AS email, '4111 1111 1111 1111'::text AS card, 'note ' || g AS note
       FROM generate_series(1, ${ROWS}) g`,
  );
  const token = await s.token();
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  t.after(() => clearInterval(sampler));
  const started = performance.now();
  const psql = spawn(
    "psql",
    ["-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-X", "-At", "-v", "FETCH_COUNT=0", "-c", "SELECT id, email, card, note FROM big"],
    { env: { ...process.env, PGPASSWORD: token, PGSSLMODE: "require" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  psql.stderr.on("data", (b) => (stderr += b));
  let rows = 0;
  let bad = 0;
  for await (const line of createInterface({ input: psql.stdout })) {
    rows++;
    const [id, email, card, note] = line.split("|");
    // user<id>@example.com → u****@example.com with as many stars as the rest of the local part
    if (email !== "u" + "*".repeat(3 + id!.length) + "@example.com" || card !== "4111 11** **** 1111" || note !== `note ${id}`) bad++;
  }
  const code = await new Promise<number | null>((r) => (psql.exitCode !== null ? r(psql.exitCode) : psql.once("exit", r)));
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(code, 0, stderr);
  assert.equal(rows, ROWS);
  assert.equal(bad, 0, "every row masked, unmasked columns intact");
  const deltaMb = (peak - baseline) / 2 ** 20;
  t.diagnostic(`masked ${ROWS} rows in ${seconds.toFixed(1)} s (${Math.round(ROWS / seconds)} rows/s); peak RSS +${deltaMb.toFixed(0)} MB`);
  assert.ok(deltaMb < CEILING_MB, `peak RSS grew by ${deltaMb.toFixed(0)} MB (ceiling ${CEILING_MB} MB)`);
});

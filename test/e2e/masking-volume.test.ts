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
  // psql reads the result and awk checks every line, both outside this process: its RSS and CPU
  // are the proxy's
  const check =
    `psql -h 127.0.0.1 -p ${s.dp.port} -U ci -d app -X -At -c "SELECT id, email, card, note FROM big" | ` +
    `awk -F'|' '{ want = "u"; for (i = 0; i < 3 + length($1); i++) want = want "*"; want = want "@example.com"; ` +
    `if ($2 != want || $3 != "4111 11** **** 1111" || $4 != "note " $1) bad++ } END { print NR, bad + 0 }'`;
  const sh = spawn("bash", ["-c", `set -o pipefail; ${check}`], {
    env: { ...process.env, PGPASSWORD: token, PGSSLMODE: "require" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => {
    if (sh.exitCode === null) sh.kill();
  });
  let out = "";
  let stderr = "";
  sh.stdout.on("data", (b) => (out += b));
  sh.stderr.on("data", (b) => (stderr += b));
  const code = await new Promise<number | null>((r) => (sh.exitCode !== null ? r(sh.exitCode) : sh.once("exit", r)));
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(code, 0, stderr);
  const [rows, bad] = out.trim().split(" ").map(Number);
  assert.equal(rows, ROWS);
  assert.equal(bad, 0, "every row masked, unmasked columns intact");
  const deltaMb = (peak - baseline) / 2 ** 20;
  t.diagnostic(`masked ${ROWS} rows in ${seconds.toFixed(1)} s (${Math.round(ROWS / seconds)} rows/s); peak RSS +${deltaMb.toFixed(0)} MB`);
  assert.ok(deltaMb < CEILING_MB, `peak RSS grew by ${deltaMb.toFixed(0)} MB (ceiling ${CEILING_MB} MB)`);
});

test("COPY TO STDOUT with masked columns: a client that stops reading stops the proxy (backpressure), then every row arrives masked", { timeout: 300_000 }, async (t) => {
  const n = 200_000;
  const s = await startProxyStack(t, {
    bundle: (b) => ({ ...b, masking: [{ name: "bulk", resources: ["app"], columns: ["big.email", "big.card"], strategy: "partial" }] }),
  });
  // ~300 bytes a row: the result (~60 MB) is far larger than every socket and pipe buffer on the way
  await s.direct(
    `CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.com' AS email, '4111 1111 1111 1111'::text AS card, repeat('x', 250) AS pad
       FROM generate_series(1, ${n}) g`,
  );
  const psql = spawn(
    "psql",
    ["-h", "127.0.0.1", "-p", String(s.dp.port), "-U", "ci", "-d", "app", "-X", "-At", "-c", "COPY (SELECT id, email, card, pad FROM big ORDER BY id) TO STDOUT"],
    { env: { ...process.env, PGPASSWORD: await s.token(), PGSSLMODE: "require" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  t.after(() => {
    if (psql.exitCode === null) psql.kill();
  });
  let stderr = "";
  psql.stderr.on("data", (b) => (stderr += b));
  // read nothing for a while: psql blocks on its stdout, stops reading its socket, and the proxy
  // must stop reading the upstream instead of buffering the rest of the result
  psql.stdout.pause();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let last = -1;
  let sent = 0;
  for (let i = 0; i < 100; i++) {
    await sleep(400);
    sent = s.dp.stats().bytesOut;
    if (sent > 0 && sent === last) break;
    last = sent;
  }
  const total = n * 300;
  assert.equal(sent, last, "the proxy stopped sending while the client was not reading");
  assert.ok(sent > 0 && sent < total / 2, `only a window of the result was in flight while paused (${sent} of ~${total} bytes)`);
  let rows = 0;
  let bad = 0;
  psql.stdout.resume(); // readline does not undo an explicit pause()
  for await (const line of createInterface({ input: psql.stdout })) {
    rows++;
    const [id, email, card] = line.split("\t");
    if (email !== "u" + "*".repeat(3 + id!.length) + "@example.com" || card !== "4111 11** **** 1111") bad++;
  }
  const code = await new Promise<number | null>((r) => (psql.exitCode !== null ? r(psql.exitCode) : psql.once("exit", r)));
  assert.equal(code, 0, stderr);
  assert.equal(rows, n);
  assert.equal(bad, 0);
});

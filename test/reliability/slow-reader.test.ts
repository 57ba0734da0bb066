/**
 * Reliability: a client asks for a 1 GB result (short budget: 200 MB) and stops reading it. The
 * node must hold the upstream back (its backend waits on ClientWrite) instead of buffering the
 * result: its memory stays within a bound far below the result's size, the other sessions run on
 * undisturbed, and when the client reads again it gets every row. A control window first (the same
 * load for as long, no stalled reader) tells the stall's cost from the load's.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { budget } from "./lib/budget.js";
import { LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";
import { startSlowReader } from "./lib/slow-reader.js";

/**
 * Growth of the node's RSS while the client does not read (from the end of the control window),
 * beyond which it is buffering the result. It is not the other sessions' load: the control (the
 * same load for as long, no stalled reader) grew 5 MiB at load ~16 on 2026-12-01. It is native
 * memory of the big result's path, not V8's heap, Buffers or worker threads (those stayed flat):
 * ~50 MiB while the first 4 MB went through and ~50 more in the stall, and none after while the
 * whole 1 GB streamed (79–109 MiB over that day's runs), while the stalled session was sent ~1 MB more
 * and its backend waited on ClientWrite (checked below: the proxy had stopped reading it).
 * Buffering the short budget's 200 MB result (or the full 1 GB) would pass this bound by far.
 */
const BOUND_MB = 128;

test("a client that stops reading a 1 GB result (short budget: 200 MB)", async (t) => {
  const rowsWanted = budget(200_000, 1_000_000);
  const r = new ScenarioReport(t, "slow-reader", `A client stops reading a ${rowsWanted / 1000} MB result`);
  try {
    const workers = budget(4, 16);
    const s = await startReliabilityStack(t, { label: "slowread" });
    await s.direct(LEDGER_DDL);
    const load = new Load(s, { workers, pauseMs: budget(10, 5) }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 1000), 60_000), `${load.total} acknowledged`);
    await sleep(1000);
    const stallMs = budget(6000, 30_000);
    // the node's memory by part: RSS (anonymous: V8's heap, workers', OpenSSL's and the allocator's;
    // file-backed: code), V8's heap of the main thread and its external memory (Buffers), threads
    const memory = async () => {
      const m = s.dp.memory();
      const x = await s.metrics().catch(() => ({}) as Record<string, number>);
      const mb = (k: string) => (x[k] ?? NaN) / 2 ** 20;
      return { ...m, heapUsedMb: mb("nodejs_heap_size_used_bytes"), heapTotalMb: mb("nodejs_heap_size_total_bytes"), externalMb: mb("nodejs_external_memory_bytes") };
    };
    const shown = (m: Awaited<ReturnType<typeof memory>>) =>
      `RSS ${m.rssMb.toFixed(1)} (anon ${m.anonMb.toFixed(1)}, file ${m.fileMb.toFixed(1)}), heap ${m.heapUsedMb.toFixed(1)} used / ${m.heapTotalMb.toFixed(1)}, external ${m.externalMb.toFixed(1)}, ${m.threads} threads`;
    /** the RSS peak over `ms`, sampled every 200 ms, and the backend's wait half-way when asked */
    const watch = async (ms: number, askWait: boolean) => {
      const at = Date.now();
      let peak = 0;
      let wait = "";
      while (Date.now() - at < ms) {
        peak = Math.max(peak, s.dp.memory().rssMb);
        if (askWait && Date.now() - at > ms / 2 && !wait) {
          const w = await s.direct("SELECT coalesce(wait_event, state) AS w FROM pg_stat_activity WHERE query LIKE '%generate_series%' AND pid <> pg_backend_pid()");
          wait = w.rows.map((x: { w: string }) => x.w).join(",");
        }
        await sleep(200);
      }
      return { peak, wait };
    };

    // the control: the same node under the same load for as long, with no stalled reader — what the
    // load alone adds (V8's heap and TLS buffers growing toward their steady state), so the stall's
    // own cost can be told from it
    const base = await memory();
    r.figure("data plane memory before (MiB)", shown(base));
    const ackedBeforeControl = load.total;
    const control = await watch(stallMs, false);
    const afterControl = await memory();
    r.figure(`control: RSS growth over ${stallMs / 1000} s of the same load with no stalled reader (MiB)`, control.peak - base.rssMb);
    r.figure("control: statements the other sessions ran", load.total - ackedBeforeControl);
    r.figure("data plane memory after the control (MiB)", shown(afterControl));

    const sql = `SELECT g, repeat('x', 1000) AS filler FROM generate_series(1, ${rowsWanted}) AS g`;
    const token = await s.token({ sub: "repo:acme/report-job" });
    const ca = (s.pgConfig(token).ssl as { ca: Buffer }).ca;
    const reader = await startSlowReader({ port: s.dpPort, ca, database: "app", user: "ci", password: token, sql });
    t.after(() => reader.destroy());
    // it reads the first megabytes, then stops
    while (reader.bytes < 4 << 20) await sleep(20);
    r.inject(`a client sent \`${sql}\` (about ${rowsWanted / 1000} MB), read 4 MB and then stopped reading for ${stallMs / 1000} s, under a load of ${workers} sessions (after ${stallMs / 1000} s of the same load without it, the control)`);
    reader.pause();
    const stallStart = await memory();
    const ackedBefore = load.total;
    const stall = await watch(stallMs, true);
    const stallEnd = await memory();
    const waitEvent = stall.wait;
    const readDuringStall = reader.bytes;
    const growth = stall.peak - afterControl.rssMb;
    r.figure("bytes the client had received when it stopped, and by the end of the stall", `${4 << 20} / ${readDuringStall}`);
    r.figure("data plane RSS peak during the stall (MiB)", stall.peak);
    r.figure("data plane RSS growth during the stall, from the end of the control (MiB)", growth);
    r.figure("data plane RSS growth from before the control to the stall's peak (MiB)", stall.peak - base.rssMb);
    r.figure("data plane memory when the client stopped reading (MiB)", shown(stallStart));
    r.figure("data plane memory at the end of the stall (MiB)", shown(stallEnd));
    r.figure("the upstream backend of the stalled query was waiting on", waitEvent || "(not found)");
    r.figure("statements the other sessions ran during the stall", load.total - ackedBefore);
    r.check(`the node's memory stays bounded: growth under ${BOUND_MB} MiB while a ${rowsWanted / 1000} MB result waits`, growth < BOUND_MB, `${growth.toFixed(1)} MiB`);
    r.check("backpressure reaches the upstream (its backend waits on ClientWrite)", waitEvent.split(",").includes("ClientWrite"), waitEvent);
    r.check("the other sessions run on during the stall", load.total - ackedBefore > 0);

    reader.resume();
    const resumeAt = Date.now();
    const res = await Promise.race([reader.done, sleep(budget(180_000, 900_000), undefined, { ref: false })]);
    r.check("the client gets every row once it reads again", res?.rows === rowsWanted && res.tag === `SELECT ${rowsWanted}`, res ? `${res.rows} rows, ${res.tag ?? res.error}` : "not finished in time");
    if (res) {
      const secs = (Date.now() - resumeAt) / 1000;
      r.figure("result after the client resumed: bytes, seconds, MB/s", `${res.bytes} B, ${secs.toFixed(1)} s, ${(res.bytes / 1e6 / secs).toFixed(1)} MB/s`);
    }
    r.figure("data plane peak RSS over the whole run (MiB)", s.dp.memory().peakMb);
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    await load.stop();
    onlyErrors(r, load, [], "the other sessions saw no error");
    await s.dp.stop(30_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});

/**
 * Reliability: 1,000 concurrent sessions running statements for a minute through one node (short
 * budget: 40 sessions for a few seconds), with connection attempts carrying bad tokens at 200 a
 * second alongside (short: 20), made by a process of their own (lib/bad-logins.ts) so that the rate
 * is the one offered to the node. No good session sees an error; every bad attempt is refused with
 * 28P01 or 28000 (or, once the address's failed-handshake budget is used up, 53300 / closed) and
 * none gets in; the node's RSS and the statements' p99 are reported.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startPgCluster } from "../lib/pg-cluster.js";
import { startBadLogins } from "./lib/bad-logins.js";
import { budget } from "./lib/budget.js";
import { LEDGER_DDL, Load, percentile } from "./lib/load.js";
import { startReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";

test("1,000 concurrent sessions for a minute with 200 bad-token connection attempts a second (short budget: far fewer)", async (t) => {
  const sessions = budget(40, 1000);
  const badPerSecond = budget(20, 200);
  const windowMs = budget(6000, 60_000);
  const r = new ScenarioReport(t, "many-sessions", `${sessions} concurrent sessions with ${badPerSecond} bad-token connection attempts a second`);
  try {
    // every session holds an upstream backend: a private cluster with room for them all
    const pgc = await startPgCluster({ maxConnections: sessions + 100, conf: ["shared_buffers = 64MB"] });
    t.after(() => pgc.stop());
    const s = await startReliabilityStack(t, { label: "many", upstream: { host: pgc.host, port: pgc.port } });
    await s.direct(LEDGER_DDL);
    // each session a statement about every second: the load of many mostly idle pipelines, not a benchmark
    const pauseMs = budget(200, 1000);
    const rampMs = budget(2000, 60_000);
    const idleRss = s.dp.memory().rssMb;
    r.figure("data plane RSS with no session (MiB)", idleRss);
    const load = new Load(s, { workers: sessions, pauseMs, rampMs }).start();
    t.after(() => load.stop(120_000));
    const rampAt = Date.now();
    while (load.connected < sessions && Date.now() - rampAt < rampMs + 120_000) await sleep(200);
    r.check(`all ${sessions} sessions connected`, load.connected === sessions, `${load.connected} connected`);
    r.figure("ramp: first connection → all sessions connected (ms)", load.connected === sessions ? Date.now() - rampAt : `${load.connected} connected after ${Date.now() - rampAt}`);
    r.figure("ramp: errors the connecting sessions saw", JSON.stringify(Object.fromEntries(load.errorCounts)));
    // a node too busy to answer /metrics in 5 s leaves its figures out, not the scenario's
    const metrics = () => s.metrics().catch(() => ({}) as Record<string, number>);
    const m0 = await metrics();
    r.figure("node sessions after the ramp", m0.sluice_dp_sessions ?? "n/a");

    r.inject(`${sessions} sessions each running a statement every ${pauseMs} ms for ${windowMs / 1000} s, with ${badPerSecond} connection attempts a second carrying bad tokens (another issuer's key, expired, not a JWT)`);
    const m1 = await metrics();
    // the window begins once the storm runs (its generator is a process of its own, started first)
    const bad = await startBadLogins(s, { perSecond: badPerSecond });
    load.latenciesMs.length = 0;
    const errorsAtStart = load.errors.length;
    const windowAt = Date.now();
    const ackedAt0 = load.total;
    let peakRss = 0;
    while (Date.now() - windowAt < windowMs) {
      peakRss = Math.max(peakRss, s.dp.memory().rssMb);
      await sleep(500);
    }
    const tally = await bad.stop();
    const m2 = await metrics();
    const rate = tally.attempts / tally.seconds;
    const inWindow = load.total - ackedAt0;
    const secs = (Date.now() - windowAt) / 1000;
    r.figure("statements in the window", inWindow);
    r.figure("statements per second in the window", inWindow / secs);
    r.figure("statement latency p50 in the window (ms)", percentile(load.latenciesMs, 50));
    r.figure("statement latency p99 in the window (ms)", percentile(load.latenciesMs, 99));
    r.figure("statement latency max in the window (ms)", percentile(load.latenciesMs, 100));
    r.figure("data plane RSS peak in the window (MiB)", peakRss);
    r.figure("data plane RSS per session (MiB, (peak − idle) / sessions)", (peakRss - idleRss) / sessions);
    r.figure("bad-token attempts offered (per second)", `${tally.attempts} in ${tally.seconds.toFixed(1)} s (${rate.toFixed(1)}/s), from a process of their own`);
    r.figure(
      "bad-token generator: its CPU, its ticks' lateness p99, attempts not started (the node held every allowed one open / the generator over a second late)",
      `${((100 * tally.cpuMs) / 1000 / tally.seconds).toFixed(0)}% of a core, ${tally.lateP99Ms.toFixed(1)} ms, ${tally.skippedFull} / ${tally.skippedLate}`,
    );
    r.figure("bad-token attempts: TLS handshakes completed (resumed)", `${tally.tlsCompleted} (${tally.tlsResumed})`);
    r.figure("bad-token attempt: start → outcome p50 / p99 / max (ms)", `${tally.answerMs.p50.toFixed(0)} / ${tally.answerMs.p99.toFixed(0)} / ${tally.answerMs.max.toFixed(0)}`);
    const outcomes = tally.outcomes;
    r.figure("bad-token attempts: outcomes", JSON.stringify(outcomes));
    const limiter = (k: string) => (m2[`sluice_dp_failed_handshakes_total{kind="${k}"}`] ?? NaN) - (m1[`sluice_dp_failed_handshakes_total{kind="${k}"}`] ?? NaN);
    r.figure(
      "the node's failed-handshake limiter in the window (failed / limited 53300 / dropped at accept / failed, not recorded)",
      `${limiter("failed")} / ${limiter("limited")} / ${limiter("dropped")} / ${limiter("unrecorded")}`,
    );
    r.check("no bad-token attempt got in", !outcomes.accepted, `${outcomes.accepted ?? 0} accepted`);
    // all attempts come from 127.0.0.1: once that address has used up its failed-handshake budget
    // (dataPlane.failedHandshakes, cf87fe2) the limiter refuses it with 53300 before any token is
    // verified, and after ten such refusals closes its connections at accept — refused attempts too
    const byToken = (outcomes["28P01"] ?? 0) + (outcomes["28000"] ?? 0);
    let byLimiter = outcomes["53300"] ?? 0;
    for (const [k, n] of Object.entries(outcomes)) if (k.startsWith("connection: ")) byLimiter += n;
    r.check(
      "every bad-token attempt is refused: by its token (28P01, 28000), or by the per-address limiter (53300, then closed at accept)",
      byToken > 0 && byToken + byLimiter === tally.attempts,
      JSON.stringify(outcomes),
    );
    // offered, not answered: the generator starts attempts by its clock whatever the node does; only
    // attempts the node still holds open (maxInFlight of them) stop it
    r.check(
      `bad-token attempts were offered at ${badPerSecond}/s or more than 90% of it`,
      rate >= 0.9 * badPerSecond,
      `${rate.toFixed(1)}/s${tally.skippedFull ? `; ${tally.skippedFull} not started: the node held every allowed attempt open` : ""}${tally.skippedLate ? `; ${tally.skippedLate} not started: the generator woke over a second late` : ""}`,
    );
    const windowErrors = load.errors.slice(errorsAtStart);
    r.check("no good session saw an error during the window", windowErrors.length === 0, windowErrors.slice(0, 3).map((e) => `${e.code}: ${e.message}`).join("; "));
    r.check("every session kept running statements", load.firstAckAfter(windowAt + windowMs / 2).every((x) => x !== undefined));
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    r.figure("data plane peak RSS over the run (MiB)", s.dp.memory().peakMb);
    await load.stop(120_000);
    onlyErrors(r, load, [], "no good session saw any error");
    await s.dp.stop(60_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});

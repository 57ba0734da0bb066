/**
 * Reliability: the audit stream's NATS server fails under load, with both durabilities.
 *  - restarted (a clean stop and start on the same store): the node carries on by itself, clients
 *    see at most 57P03 while it is away, nothing acknowledged is missing afterwards;
 *  - down for a minute (short budget: seconds): statements are refused with 57P03 once the buffer
 *    is full (ack: each waits for its acknowledgement first), a new connection is refused with 57P03
 *    too, and when NATS is back the same node serves again without a restart; every statement a
 *    client saw succeed, async ones buffered during the outage included, is on the stream.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { budget } from "./lib/budget.js";
import { codeOf, LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack, type ReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";

const DURABILITIES = ["ack", "async"] as const;

/** waits until every worker saw a statement succeed after `since`; the time that took (ms), or undefined */
async function recovered(load: Load, since: number, ms: number): Promise<number | undefined> {
  const until = Date.now() + ms;
  for (;;) {
    const firsts = load.firstAckAfter(since);
    if (firsts.every((x) => x !== undefined)) return Math.max(...(firsts as number[])) - since;
    if (Date.now() > until) return undefined;
    await sleep(100);
  }
}

/** the planes are the processes they were at the start (no crash, no restart) */
function planesUp(r: ScenarioReport, s: ReliabilityStack): void {
  r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1, s.dp.running ? `${s.dp.starts} starts` : `ended ${s.dp.ended}`);
  if (s.cp) r.check("the control plane never exited or restarted", s.cp.running && s.cp.starts === 1, s.cp.running ? undefined : `ended ${s.cp.ended}`);
}

/** a clean stop of the node flushes what it holds; it must exit 0 */
async function stopNode(r: ScenarioReport, s: ReliabilityStack): Promise<void> {
  await s.dp.stop(30_000);
  r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
}

for (const durability of DURABILITIES) {
  test(`NATS restarted under load (${durability})`, async (t) => {
    const r = new ScenarioReport(t, `nats-restart-${durability}`, `NATS restarted under load (${durability})`);
    try {
      const workers = budget(4, 16);
      const s = await startReliabilityStack(t, { label: `natsrestart-${durability}`, durability });
      await s.direct(LEDGER_DDL);
      const load = new Load(s, { workers, pauseMs: budget(5, 1) }).start();
      t.after(() => load.stop());
      r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);

      r.inject(`nats-server stopped (SIGTERM) and started again on the same port and store, under a load of ${workers} sessions`);
      const down = Date.now();
      await s.nats.stop();
      await s.nats.start();
      const up = Date.now();
      r.figure("NATS away (ms)", up - down);
      const rec = await recovered(load, up, 60_000);
      r.check("every session runs statements again after the restart, without restarting the node", rec !== undefined);
      r.figure("recovery: NATS back → every session succeeded again (ms)", rec ?? "never");
      r.check("statements succeed after the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
      planesUp(r, s);
      r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
      await load.stop();
      onlyErrors(r, load, ["57P03"], "the only error clients saw is 57P03 (audit stream unavailable)");
      await stopNode(r, s);
      await recordEvidence(r, s, load, { wholeChains: true });
    } catch (e) {
      r.broke(e);
    }
    r.finish();
  });
}

for (const durability of DURABILITIES) {
  test(`NATS down for a minute (${durability}; short budget: seconds)`, async (t) => {
    const outageMs = budget(durability === "ack" ? 12_000 : 6_000, 60_000);
    const r = new ScenarioReport(t, `nats-down-${durability}`, `NATS down for ${outageMs / 1000} s (${durability})`);
    try {
      const workers = budget(4, 16);
      // ack: a statement waits 5 s for its acknowledgement, leaving its two events queued; a buffer of a
      // few rounds of that fills within the outage. async: every statement queues two events at once.
      const bufferEvents = durability === "ack" ? budget(3 * workers, 200) : budget(200, 2000);
      const s = await startReliabilityStack(t, { label: `natsdown-${durability}`, durability, bufferEvents });
      await s.direct(LEDGER_DDL);
      r.figure("dataPlane.audit.bufferEvents", bufferEvents);
      const load = new Load(s, { workers, pauseMs: budget(5, 1) }).start();
      t.after(() => load.stop());
      r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);

      r.inject(`nats-server stopped (SIGTERM) for ${outageMs / 1000} s under a load of ${workers} sessions, then started again on the same store`);
      const errorsBefore = load.errors.length;
      await s.nats.stop();
      // statements acknowledged while the server was shutting down were stored: count from its exit
      const down = Date.now();
      // a new session once the buffer must be full: refused at connect, with the reason
      await sleep(outageMs - 2000);
      let probe = "connected";
      let probeMessage = "";
      try {
        const c = await s.client();
        await c.query("SELECT 1").finally(() => c.end().catch(() => undefined));
      } catch (e) {
        probe = codeOf(e);
        probeMessage = (e as Error).message;
      }
      const readyz = await s.readyz();
      await sleep(Math.max(0, down + outageMs - Date.now()));
      const ackedDown = load.ackedSince(down);
      // (a statement whose batch was stored just before the exit may reach its client just after it)
      const ackedLate = load.ackedSince(down + 1000);
      const outageErrors = load.errors.slice(errorsBefore);
      const refused = outageErrors.filter((e) => e.code === "57P03");
      r.figure("statements acknowledged while NATS was down", ackedDown);
      r.figure("57P03 refusals while NATS was down", refused.length);
      r.figure("first refusal after the outage began (ms)", refused.length ? refused[0]!.at - down : "none");
      r.figure("a new connection near the end of the outage", probe === "connected" ? "accepted" : `${probe}: ${probeMessage}`);
      r.figure("/readyz during the outage", readyz);
      if (durability === "ack") {
        r.check("ack: no statement succeeds while the audit stream is away (from 1 s after the server's exit)", ackedLate === 0, `${ackedLate} acknowledged`);
      } else {
        r.check("async: statements are buffered (acknowledged) until the buffer is full", ackedDown > 0);
      }
      r.check("statements are refused with 57P03 once the buffer is full", refused.length > 0 && refused.every((e) => /audit stream unavailable/.test(e.message)), refused[0]?.message);
      r.check("a new connection during the outage is refused with 57P03 naming the audit stream", probe === "57P03" && /audit stream unavailable/.test(probeMessage), `${probe}: ${probeMessage}`);

      await s.nats.start();
      const up = Date.now();
      const rec = await recovered(load, up, 90_000);
      r.check("every session runs statements again after NATS is back, without restarting the node", rec !== undefined);
      r.figure("recovery: NATS back → every session succeeded again (ms)", rec ?? "never");
      r.check("statements succeed after the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
      planesUp(r, s);
      r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
      await load.stop();
      onlyErrors(r, load, ["57P03"], "the only error clients saw is 57P03 (audit stream unavailable)");
      await stopNode(r, s);
      await recordEvidence(r, s, load, { wholeChains: true });
    } catch (e) {
      r.broke(e);
    }
    r.finish();
  });
}

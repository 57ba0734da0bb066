/**
 * Reliability: the upstream PostgreSQL fails under load.
 *  - restarted (a private cluster, `pg_ctl stop -m fast`, down a while, started again): clients in
 *    flight get a clean error (a SQLSTATE or a closed connection, never a hang or XX000), sessions
 *    begun once it is back all work at their first statement (no warm spare from before the
 *    restart is handed out), nothing acknowledged is missing from the stream or the database;
 *  - stops answering (a relay that holds every byte, then delivers them): clients in flight give up
 *    on their own (the proxy cannot tell a slow statement from a stalled server), the node is not
 *    hurt, and every session works again when the upstream answers.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startPgCluster } from "../lib/pg-cluster.js";
import { budget } from "./lib/budget.js";
import { codeOf, endClient, LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack, type ReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";
import { startTcpInterposer } from "./lib/tcp-interposer.js";

async function recovered(load: Load, since: number, ms: number): Promise<number | undefined> {
  const until = Date.now() + ms;
  for (;;) {
    const firsts = load.firstAckAfter(since);
    if (firsts.every((x) => x !== undefined)) return Math.max(...(firsts as number[])) - since;
    if (Date.now() > until) return undefined;
    await sleep(100);
  }
}

/** `n` new sessions one after another, each running one statement: the errors they got */
async function freshSessions(s: ReliabilityStack, n: number): Promise<string[]> {
  const errors: string[] = [];
  for (let i = 0; i < n; i++) {
    try {
      const c = await s.client({ sub: `repo:acme/fresh-${i}` });
      try {
        await c.query("SELECT count(*) FROM ledger");
      } finally {
        await endClient(c);
      }
    } catch (e) {
      errors.push(`${codeOf(e)}: ${(e as Error).message}`);
    }
  }
  return errors;
}

/** clean errors: a SQLSTATE the proxy or the server chose, or a closed connection; never XX000 or a hang */
const CLEAN = ["57P01", "57P02", "57P03", "08006", "08001", "08003", "connection: closed", "connection: query timeout"];

test("the upstream PostgreSQL restarted under load", async (t) => {
  const r = new ScenarioReport(t, "upstream-restart", "Upstream PostgreSQL restarted under load");
  try {
    const workers = budget(4, 16);
    const pgc = await startPgCluster({ maxConnections: 200 });
    t.after(() => pgc.stop());
    const s = await startReliabilityStack(t, { label: "pgrestart", upstream: { host: pgc.host, port: pgc.port } });
    await s.direct(LEDGER_DDL);
    const load = new Load(s, { workers, pauseMs: budget(5, 1), reconnectPauseMs: 100 }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    const before = await s.metrics();
    r.figure("warm spare upstream connections before the restart", before['sluice_dp_upstream_connections{state="idle"}'] ?? "n/a");

    const downMs = budget(2000, 10_000);
    r.inject(`pg_ctl stop -m fast of the upstream under a load of ${workers} sessions, ${downMs / 1000} s down, then pg_ctl start on the same data`);
    const downAt = Date.now();
    pgc.stopServer("fast");
    await sleep(downMs);
    pgc.startServer();
    const upAt = Date.now();
    r.figure("upstream down (ms)", upAt - downAt);
    const rec = await recovered(load, upAt, 60_000);
    r.check("every session runs statements again after the upstream is back, without restarting the node", rec !== undefined);
    r.figure("recovery: upstream back → every session succeeded again (ms)", rec ?? "never");

    const fresh = await freshSessions(s, budget(6, 24));
    r.check("new sessions after the restart work at their first statement (no dead pooled connection handed out)", fresh.length === 0, fresh.slice(0, 3).join("; "));
    const late = load.errors.filter((e) => e.startedAt > upAt + 1000);
    r.check("no statement or connection begun after the upstream was back failed", late.length === 0, late.slice(0, 3).map((e) => `${e.code}: ${e.message}`).join("; "));
    r.check("statements succeed after the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    const during = load.errors.filter((e) => e.startedAt <= upAt + 1000);
    r.figure("errors during the restart: first examples", during.slice(0, 3).map((e) => `${e.code} ${e.message}`).join(" | ") || "none");
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
    await load.stop();
    onlyErrors(r, load, CLEAN, "clients saw only clean errors (57P01/57P03/08006 or a closed connection)");
    r.check("some session saw the restart (the fault was real)", load.affected.size > 0);
    await s.dp.stop(30_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});

test("an upstream that stops answering under load, then answers again", async (t) => {
  const r = new ScenarioReport(t, "upstream-stall", "Upstream stops answering under load");
  try {
    const workers = budget(4, 16);
    const relay = await startTcpInterposer(5432);
    t.after(() => relay.close());
    // the harness reaches the database directly; only the node's upstream goes through the relay
    const s = await startReliabilityStack(t, { label: "pgstall", upstream: { host: "127.0.0.1", port: relay.port }, adminServer: { host: "127.0.0.1", port: 5432 } });
    await s.direct(LEDGER_DDL);
    const queryTimeoutMs = budget(3000, 10_000);
    const load = new Load(s, { workers, pauseMs: budget(5, 1), reconnectPauseMs: 200, queryTimeoutMs }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);

    const stallMs = budget(6000, 60_000);
    r.inject(`the relay in front of the upstream holds every byte for ${stallMs / 1000} s (new connections too) under a load of ${workers} sessions whose clients give up after ${queryTimeoutMs / 1000} s`);
    const stallAt = Date.now();
    relay.pause();
    await sleep(stallMs / 2);
    const mid = await s.metrics();
    const readyz = await s.readyz();
    r.figure("/readyz during the stall", readyz);
    r.figure("node sessions + connecting during the stall", (mid.sluice_dp_sessions ?? 0) + (mid.sluice_dp_connections_connecting ?? 0));
    await sleep(stallMs / 2);
    const ackedDuring = load.ackedSince(stallAt + 500);
    relay.resume();
    const upAt = Date.now();
    r.figure("statements acknowledged during the stall", ackedDuring);
    r.check("nothing completes while the upstream is silent", ackedDuring === 0, `${ackedDuring}`);
    const rec = await recovered(load, upAt, 90_000);
    r.check("every session runs statements again once the upstream answers, without restarting the node", rec !== undefined);
    r.figure("recovery: upstream answers → every session succeeded again (ms)", rec ?? "never");
    const fresh = await freshSessions(s, budget(4, 16));
    r.check("new sessions after the stall work", fresh.length === 0, fresh.slice(0, 3).join("; "));
    r.check("statements succeed after the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
    await load.stop();
    let after = await s.metrics();
    for (let i = 0; i < 100 && (after.sluice_dp_sessions ?? 0) > 0; i++) {
      await sleep(100);
      after = await s.metrics();
    }
    r.figure("node sessions after the load stopped", after.sluice_dp_sessions ?? "n/a");
    r.figure("connections open through the relay after the load stopped (warm spares included)", relay.open);
    r.check("sessions abandoned during the stall do not linger on the node", (after.sluice_dp_sessions ?? 0) === 0, `${after.sluice_dp_sessions} sessions`);
    onlyErrors(r, load, CLEAN, "clients saw only clean errors (their own time-out, 57P03/08006 or a closed connection)");
    r.check("some session saw the stall (the fault was real)", load.affected.size > 0);
    await s.dp.stop(30_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});

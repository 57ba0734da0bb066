/**
 * Reliability: the planes on a 3-server NATS cluster (every stream and bucket with 3 replicas) and
 * the server leading the audit stream killed with SIGKILL under load (ack durability), then started
 * again. The stream elects another leader; the node's publisher carries on through the surviving
 * servers (at most 57P03 while no leader answers), nothing acknowledged is missing, and the killed
 * server rejoins.
 */
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { budget } from "./lib/budget.js";
import { LEDGER_DDL, Load } from "./lib/load.js";
import { startReliabilityStack } from "./lib/reliability-stack.js";
import { onlyErrors, recordEvidence } from "./lib/scenario-evidence.js";
import { ScenarioReport } from "./lib/scenario-report.js";

/** the longest time any worker went without an acknowledgement between `from` and `to` */
function longestGap(load: Load, from: number, to: number): number {
  let worst = 0;
  for (const at of load.ackedAt) {
    let prev = from;
    for (const x of at) {
      if (x < from) continue;
      if (x > to) break;
      worst = Math.max(worst, x - prev);
      prev = x;
    }
    worst = Math.max(worst, to - prev);
  }
  return worst;
}

test("a 3-server NATS cluster: the audit stream's leader killed under load (ack), then back", async (t) => {
  const r = new ScenarioReport(t, "nats-cluster-leader-kill", "3-server NATS cluster: audit stream leader killed under load (ack)");
  try {
    const workers = budget(4, 16);
    const s = await startReliabilityStack(t, { label: "cluster", natsCluster: true, durability: "ack" });
    const cluster = s.cluster!;
    await s.direct(LEDGER_DDL);
    const load = new Load(s, { workers, pauseMs: budget(5, 1) }).start();
    t.after(() => load.stop());
    r.check("statements succeed before the fault", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    const jsm = await jetstreamManager(s.nc);
    const info = await jsm.streams.info(s.names.auditStream);
    const leader = info.cluster?.leader ?? "";
    r.figure("audit stream replicas", info.config.num_replicas);
    r.figure("audit stream leader before", leader || "unknown");
    r.check("the audit stream has 3 replicas", info.config.num_replicas === 3);

    r.inject(`SIGKILL of nats-server ${leader} (the audit stream's leader) under a load of ${workers} sessions`);
    const killAt = Date.now();
    await cluster.server(leader).kill();
    let newLeader = "";
    for (let i = 0; i < 300 && !newLeader; i++) {
      newLeader = await jsm.streams.info(s.names.auditStream).then((x) => (x.cluster?.leader && x.cluster.leader !== leader ? x.cluster.leader : ""), () => "");
      if (!newLeader) await sleep(100);
    }
    r.figure("new audit stream leader (ms after the kill)", newLeader ? `${newLeader} (${Date.now() - killAt})` : "none");
    r.check("another server leads the audit stream", !!newLeader);
    const until = Date.now() + 60_000;
    while (load.firstAckAfter(killAt + 500).some((x) => x === undefined) && Date.now() < until) await sleep(100);
    const firsts = load.firstAckAfter(killAt + 500);
    r.check("every session runs statements again while the server is down", firsts.every((x) => x !== undefined));
    r.check("statements succeed with one server down", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    const downFor = budget(3000, 30_000);
    await sleep(Math.max(0, killAt + downFor - Date.now()));
    r.figure("longest pause of any session around the kill (ms)", longestGap(load, killAt - 1000, Date.now()));

    r.inject(`nats-server ${leader} started again on its store after ${downFor / 1000} s`);
    const backAt = Date.now();
    await cluster.server(leader).start();
    await cluster.waitForJetStream();
    let current = false;
    for (let i = 0; i < 600 && !current; i++) {
      const x = await jsm.streams.info(s.names.auditStream).catch(() => undefined);
      current = !!x?.cluster?.replicas?.find((p) => p.name === leader && p.current);
      if (!current) await sleep(100);
    }
    r.figure("killed server caught up with the audit stream (ms after its start)", current ? Date.now() - backAt : "not yet");
    r.check("the killed server rejoins the audit stream as a current replica", current);
    r.check("statements succeed after the server is back", await load.waitForAcks(budget(40, 2000), 60_000), `${load.total} acknowledged`);
    r.check("the data plane never exited or restarted", s.dp.running && s.dp.starts === 1);
    r.check("the control plane never exited or restarted", !!s.cp?.running && s.cp.starts === 1);
    r.figure("data plane peak RSS (MiB)", s.dp.memory().peakMb);
    await load.stop();
    onlyErrors(r, load, ["57P03"], "the only error clients saw is 57P03 (audit stream unavailable)");
    await s.dp.stop(30_000);
    r.check("the data plane stopped cleanly at the end (exit 0)", s.dp.ended === 0, `ended ${s.dp.ended}`);
    await recordEvidence(r, s, load, { wholeChains: true });
  } catch (e) {
    r.broke(e);
  }
  r.finish();
});

/**
 * `npm run bench`: sluice side by side with direct PostgreSQL and pgbouncer, in the same run.
 *
 * Starts its own PostgreSQL cluster (max_connections high enough for 1,000 idle sessions), a pgbench
 * database, pgbouncer in session mode with client TLS (as sluice does) and once more without TLS, and
 * sluice data-plane nodes as child processes (audit `ack` and `async`, unmasked and masked) on a
 * nats-server of the bench's own (free port, own store: its pid's CPU is the nats-server figure), and for
 * scenario 1 a whole `sluice dev` stack with its default settings (target sluice-dev). Each
 * scenario runs against every target in alternation, repeated, and the medians go to
 * test/bench/results/latest.json and latest.md. Never part of the pass/fail of the suite (a smoke run
 * of this same harness is: `--smoke`).
 *
 * Scenario 7 (policy propagation across a NATS supercluster, propagation.bench.ts) also writes
 * propagation.json/.md; it is left out of --smoke unless named in --only.
 *
 * Flags: --smoke (tiny scale, 1 s runs, 1 repetition), --out DIR, --only 1,2,3,4,5,6,7, --repeat N, --seconds S,
 * --targets a,b (run only these targets, e.g. `sluice-async`: for profiling one of them; no ratio is complete then)
 */
import { parseArgs } from "node:util";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { startPgCluster } from "../lib/pg-cluster.js";
import { selfSignedCert } from "../lib/self-signed.js";
import { startPgBouncer, type PgBouncer } from "./lib/pgbouncer.js";
import { pgbenchWithRetry, bigResult, connectLatencies, openIdle, rssMb, type Target } from "./lib/clients.js";
import { summarize, ratio, percentile, type Summary } from "./lib/stats.js";
import { startSluiceNode, type SluiceNode } from "./lib/sluice-node.js";
import { startSluiceDev } from "./lib/sluice-dev.js";
import { descendantsNamed, totalCpuSeconds } from "./lib/cpu.js";
import { startNatsServer } from "../../bin/lib/dev-nats-server.js";
import { startTlsPipe } from "./lib/tls-pipe.js";
import { renderMarkdown } from "./lib/report.js";
import { dataPlaneStartup, startDevStack, timeCommand, timeNode } from "./lib/startup.js";
import { CONNECT_PHASES } from "../../data-plane/src/metrics/connect-phases.js";
import { staleReason } from "../../scripts/build-state.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: flags } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    out: { type: "string" },
    only: { type: "string" },
    repeat: { type: "string" },
    seconds: { type: "string" },
    targets: { type: "string" },
  },
});
const smoke = flags.smoke!;
const outDir = flags.out ?? join(here, "results");
const only = new Set((flags.only ?? (smoke ? "1,2,3,4,5,6" : "1,2,3,4,5,6,7")).split(",").map((s) => s.trim()));
const repeat = Number(flags.repeat ?? (smoke ? 1 : 3));
const seconds = Number(flags.seconds ?? (smoke ? 1 : 10));
const scale = smoke ? 1 : 10;
const rowsForBig = smoke ? 20_000 : 1_000_000;
const idleSessions = smoke ? 20 : 1000;
const onlyTargets = flags.targets ? new Set(flags.targets.split(",").map((s) => s.trim())) : undefined;
const wanted = <T extends { name: string }>(ts: T[]): T[] => (onlyTargets ? ts.filter((t) => onlyTargets.has(t.name)) : ts);

export interface ScenarioResult {
  id: string;
  title: string;
  unit: string;
  /** target name → summary of samples */
  results: Record<string, Summary & { extra?: Record<string, number> }>;
  ratios: Record<string, number>;
  notes: string[];
}

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

async function main() {
  const started = new Date();
  log(`scale ${scale}, ${repeat} repetition(s) of ${seconds}s${smoke ? " (smoke)" : ""}`);
  const cert = selfSignedCert();
  // TLS on too, for the direct-tls reference of scenario 3 (direct stays plaintext)
  const cluster = await startPgCluster({ maxConnections: idleSessions + 200, conf: ["shared_buffers = 256MB"], tls: cert });
  const cleanup: Array<() => Promise<void> | void> = [() => cluster.stop()];
  const results: ScenarioResult[] = [];
  const notes: string[] = [];
  try {
    const db = "bench";
    execFileSync("psql", ["-X", "-q", cluster.url(), "-c", `CREATE DATABASE ${db}`]);
    log("pgbench -i");
    execFileSync("pgbench", ["-i", "-q", "-s", String(scale), "-h", "127.0.0.1", "-p", String(cluster.port), "-U", "postgres", db], { stdio: "ignore" });

    const direct: Target = { name: "direct", env: { PGHOST: "127.0.0.1", PGPORT: String(cluster.port), PGUSER: "postgres", PGDATABASE: db, PGSSLMODE: "disable" } };
    const pgbTls: PgBouncer = await startPgBouncer({ upstreamPort: cluster.port, database: db, tls: cert });
    cleanup.push(() => pgbTls.stop());
    const pgbPlain: PgBouncer = await startPgBouncer({ upstreamPort: cluster.port, database: db });
    cleanup.push(() => pgbPlain.stop());
    const directTls: Target = { name: "direct-tls", env: { ...direct.env, PGSSLMODE: "require" } };
    const bouncerTls: Target = { name: "pgbouncer-tls", env: { ...direct.env, PGPORT: String(pgbTls.port), PGSSLMODE: "require" }, pid: () => pgbTls.pid() };
    const bouncerPlain: Target = { name: "pgbouncer-plain", env: { ...direct.env, PGPORT: String(pgbPlain.port) }, pid: () => pgbPlain.pid() };

    // reference for scenario 1: a Node.js TLS pipe that parses nothing (the floor of any Node proxy here)
    const pipe = smoke ? undefined : await startTlsPipe({ upstreamPort: cluster.port, database: db, cert });
    if (pipe) cleanup.push(() => pipe.stop());

    // the sluice nodes' own nats-server (free port, own store): the nats-server CPU figures are its
    // pid's alone, not those of every nats-server on a machine where other test runs start theirs
    const natsDir = mkdtempSync(join(tmpdir(), "sluice-bench-nats-"));
    const nats = await startNatsServer({ storeDir: natsDir, timeoutMs: 30_000 });
    cleanup.push(async () => {
      await nats.stop();
      rmSync(natsDir, { recursive: true, force: true });
    });
    const natsPids = descendantsNamed(nats.child.pid!, "nats-server");
    if (natsPids.length !== 1) throw new Error(`the bench's nats-server: expected one process under pid ${nats.child.pid}, found ${natsPids.length}`);
    log(`private nats-server ${nats.url} (pid ${natsPids[0]})`);

    const sluiceNodes: Record<string, SluiceNode | undefined> = {};
    for (const [name, o] of [
      ["sluice-ack", { durability: "ack" as const, masked: false }],
      ["sluice-async", { durability: "async" as const, masked: false }],
      ["sluice-masked", { durability: "async" as const, masked: true }],
      // scenario 3's reference: every session on a backend of its own (the pool's reuse off, warm spares on)
      ["sluice-noreuse", { durability: "async" as const, masked: false, reuse: false }],
    ] as const) {
      // the smoke run keeps one node per code path (default ack durability; masking) to stay quick
      if (smoke && (name === "sluice-async" || name === "sluice-noreuse")) continue;
      if (name === "sluice-noreuse" && !only.has("3")) continue;
      try {
        const node = await startSluiceNode({ name, upstreamPort: cluster.port, database: db, cert, natsUrl: nats.url, ...o });
        sluiceNodes[name] = node;
        cleanup.push(() => node.stop());
      } catch (e) {
        notes.push(`${name}: could not start (${(e as Error).message.split("\n")[0]}); its columns are empty`);
        log(`${name} unavailable: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    const sluice = (n: string): Target[] => (sluiceNodes[n] ? [sluiceNodes[n]!.target(n)] : []);
    // scenario 1 also runs through `sluice dev` with its default settings (ack), against sluice-ack
    let devTarget: Target | undefined;
    let devPid: number | undefined;
    if (!smoke && only.has("1") && (!onlyTargets || onlyTargets.has("sluice-dev"))) {
      try {
        const dev = await startSluiceDev({ upstreamPort: cluster.port, database: db });
        cleanup.push(() => dev.stop());
        devTarget = dev.target("sluice-dev");
        devPid = dev.pid;
      } catch (e) {
        notes.push(`sluice-dev: could not start (${(e as Error).message.split("\n")[0]}); its column is empty`);
      }
    }
    // unmasked reference node for scenarios 2, 3 and 5: async when present (full run), else ack (smoke)
    const plainName = sluiceNodes["sluice-async"] ? "sluice-async" : "sluice-ack";

    // 1. pgbench -S, 8 clients, extended and simple protocol
    if (only.has("1")) {
      for (const mode of ["extended", "simple"] as const) {
        const targets = wanted([direct, bouncerTls, bouncerPlain, ...(pipe ? [pipe.target] : []), ...sluice("sluice-ack"), ...sluice("sluice-async"), ...(devTarget ? [devTarget] : [])]);
        const tps: Record<string, number[]> = {};
        const lat: Record<string, number[]> = {};
        // CPU per transaction of the proxy process and of nats-server (the audit stream's cost shows there)
        const proxyCpu: Record<string, number[]> = {};
        const natsCpu: Record<string, number[]> = {};
        // the audit stream per statement (sluice targets): messages, events (session events included), bytes
        const audit: Record<string, { messages: number[]; events: number[]; bytes: number[] }> = {};
        const natsPerMsg: Record<string, number[]> = {};
        const batchMs: Record<string, number[]> = {};
        // the 1-minute load average as each sample starts: the machine is shared, read figures with it
        const load: Record<string, number[]> = {};
        // sluice-dev stores its audit on the nats-server of its own stack; every other target's is the bench's
        const natsOf = (t: Target): number[] => (t.name === "sluice-dev" && devPid ? descendantsNamed(devPid, "nats-server") : natsPids);
        for (let r = 0; r < repeat; r++) {
          for (const t of targets) {
            log(`1/${mode} rep ${r + 1}: ${t.name}`);
            try {
              const proxyPid = t.pid?.();
              const node = sluiceNodes[t.name];
              const m0 = node ? await node.metrics() : undefined;
              const np = natsOf(t);
              (load[t.name] ??= []).push(loadavg()[0]!);
              const cpu0 = [proxyPid ? totalCpuSeconds([proxyPid]) : NaN, np.length ? totalCpuSeconds(np) : NaN];
              const res = await pgbenchWithRetry(t, { mode, clients: 8, seconds }, (n) => notes.push(`1/${mode} ${n}`));
              const cpu1 = [proxyPid ? totalCpuSeconds([proxyPid]) : NaN, np.length ? totalCpuSeconds(np) : NaN];
              if (node && m0) {
                // the last follow-up events (completions, session ends) linger a few ms before they are stored
                await new Promise((r) => setTimeout(r, 200));
                const m1 = await node.metrics();
                const per = (k: string) => ((m1[k] ?? NaN) - (m0[k] ?? NaN)) / res.transactions;
                const a = (audit[t.name] ??= { messages: [], events: [], bytes: [] });
                a.messages.push(per("sluice_dp_audit_messages_total"));
                a.events.push(per("sluice_dp_audit_events_total"));
                a.bytes.push(per("sluice_dp_audit_bytes_total"));
                // nats-server CPU per stored message: what one round trip costs the server at this pace
                // from a batch forming to its PubAck: the round trip every ack statement waits for (plus the group wait)
                (batchMs[t.name] ??= []).push((1000 * (m1.sluice_dp_audit_batch_seconds_sum! - m0.sluice_dp_audit_batch_seconds_sum!)) / (m1.sluice_dp_audit_batch_seconds_count! - m0.sluice_dp_audit_batch_seconds_count!));
                (natsPerMsg[t.name] ??= []).push(((cpu1[1]! - cpu0[1]!) * 1e6) / (m1.sluice_dp_audit_messages_total! - m0.sluice_dp_audit_messages_total!));
              }
              (tps[t.name] ??= []).push(res.tps);
              (lat[t.name] ??= []).push(res.latencyMs);
              (proxyCpu[t.name] ??= []).push(((cpu1[0]! - cpu0[0]!) * 1e6) / res.transactions);
              (natsCpu[t.name] ??= []).push(((cpu1[1]! - cpu0[1]!) * 1e6) / res.transactions);
            } catch (e) {
              notes.push(`1/${mode} ${t.name}: ${(e as Error).message.split("\n")[0]}`);
            }
          }
        }
        const s: ScenarioResult = { id: `1-${mode}`, title: `pgbench -S -M ${mode}, 8 clients: TPS`, unit: "tps", results: {}, ratios: {}, notes: [] };
        for (const [k, v] of Object.entries(tps)) {
          s.results[k] = {
            ...summarize(v),
            extra: {
              latencyMsMedian: percentile(lat[k]!, 50), proxyCpuUsPerTx: percentile(proxyCpu[k]!, 50), natsCpuUsPerTx: percentile(natsCpu[k]!, 50),
              load1Min: Math.min(...load[k]!), load1Max: Math.max(...load[k]!),
              ...(audit[k] ? {
                auditMsgsPerStmt: percentile(audit[k]!.messages, 50), auditEventsPerStmt: percentile(audit[k]!.events, 50), auditBytesPerStmt: percentile(audit[k]!.bytes, 50), natsCpuUsPerMsg: percentile(natsPerMsg[k]!, 50), auditBatchMs: percentile(batchMs[k]!, 50),
              } : {}),
            },
          };
        }
        for (const sl of ["sluice-ack", "sluice-async"]) {
          if (!s.results[sl]) continue;
          s.ratios[`${sl}/direct`] = ratio(s.results[sl]!.median, s.results.direct?.median ?? NaN);
          s.ratios[`${sl}/pgbouncer-tls`] = ratio(s.results[sl]!.median, s.results["pgbouncer-tls"]?.median ?? NaN);
        }
        if (s.results["sluice-dev"] && s.results["sluice-ack"]) s.ratios["sluice-dev/sluice-ack"] = ratio(s.results["sluice-dev"].median, s.results["sluice-ack"].median);
        results.push(s);
      }
    }

    // 2. A large result: SELECT * FROM pgbench_accounts, MB/s; RSS of the sluice node sampled meanwhile (scenario 5b)
    const rssDuringBig: Record<string, number> = {};
    if (only.has("2")) {
      const sql = `SELECT * FROM pgbench_accounts${smoke ? ` LIMIT ${rowsForBig}` : ""}`;
      const targets = wanted([direct, bouncerTls, ...sluice(plainName), ...sluice("sluice-masked")]);
      const mbps: Record<string, number[]> = {};
      for (let r = 0; r < repeat; r++) {
        for (const t of targets) {
          log(`2 rep ${r + 1}: ${t.name}`);
          const node = sluiceNodes[t.name];
          let peak = 0;
          const timer = node ? setInterval(() => (peak = Math.max(peak, rssMb(node.pid))), 50) : undefined;
          try {
            const res = await bigResult(t, sql);
            (mbps[t.name] ??= []).push(res.mbPerSec);
          } catch (e) {
            notes.push(`2 ${t.name}: ${(e as Error).message.split("\n")[0]}`);
          } finally {
            if (timer) clearInterval(timer);
            if (node) rssDuringBig[t.name] = Math.max(rssDuringBig[t.name] ?? 0, peak);
          }
        }
      }
      const s: ScenarioResult = { id: "2", title: `${rowsForBig.toLocaleString("en")}-row result (SELECT * FROM pgbench_accounts): MB/s of result text`, unit: "MB/s", results: {}, ratios: {}, notes: [] };
      for (const [k, v] of Object.entries(mbps)) s.results[k] = summarize(v);
      if (s.results[plainName]) s.ratios["sluice-unmasked/direct"] = ratio(s.results[plainName]!.median, s.results.direct?.median ?? NaN);
      if (s.results["sluice-masked"]) s.ratios["sluice-masked/direct"] = ratio(s.results["sluice-masked"].median, s.results.direct?.median ?? NaN);
      results.push(s);
    }

    // 3. Connection set-up: connections/s (pgbench -C) and per-connection latency p50/p99
    if (only.has("3")) {
      const targets = wanted([direct, directTls, bouncerTls, ...sluice(plainName), ...(plainName === "sluice-ack" ? [] : sluice("sluice-ack")), ...sluice("sluice-noreuse")]);
      const cps: Record<string, number[]> = {};
      const lats: Record<string, number[]> = {};
      const resumedLats: Record<string, number[]> = {};
      // where a sluice node's connection set-up spends its time: its connect-phase histograms' sums and counts
      const phaseSums: Record<string, Record<string, number>> = {};
      const phaseCounts: Record<string, number> = {};
      const reused: Record<string, { reused: number; opened: number }> = {};
      // CPU of the proxy process (pgbouncer, a sluice node) per connection of the pgbench -C run
      const cpuPerConn: Record<string, number[]> = {};
      for (let r = 0; r < repeat; r++) {
        for (const t of targets) {
          log(`3 rep ${r + 1}: ${t.name}`);
          const node = sluiceNodes[t.name];
          try {
            const m0 = node ? await node.metrics() : undefined;
            const proxyPid = t.pid?.();
            const cpu0 = proxyPid ? totalCpuSeconds([proxyPid]) : NaN;
            const res = await pgbenchWithRetry(t, { mode: "simple", clients: 4, seconds, connectPerTx: true }, (n) => notes.push(`3 ${n}`));
            if (proxyPid) (cpuPerConn[t.name] ??= []).push(((totalCpuSeconds([proxyPid]) - cpu0) * 1000) / res.transactions);
            (cps[t.name] ??= []).push(res.tps);
            (lats[t.name] ??= []).push(...(await connectLatencies(t, smoke ? 10 : 100)));
            // TLS targets: the same with a client that offers its last session ticket (pgbouncer and sluice resume)
            if (t.env.PGSSLMODE === "require") (resumedLats[t.name] ??= []).push(...(await connectLatencies(t, smoke ? 10 : 100, { resume: true })));
            if (node && m0) {
              const m1 = await node.metrics();
              const d = (k: string) => (m1[k] ?? 0) - (m0[k] ?? 0);
              const sums = (phaseSums[t.name] ??= {});
              for (const p of CONNECT_PHASES) sums[p] = (sums[p] ?? 0) + d(`sluice_dp_connect_phase_seconds_sum{phase="${p}"}`);
              phaseCounts[t.name] = (phaseCounts[t.name] ?? 0) + d(`sluice_dp_connect_phase_seconds_count{phase="total"}`);
              const u = (reused[t.name] ??= { reused: 0, opened: 0 });
              u.reused += d("sluice_dp_upstream_connections_reused_total");
              u.opened += d("sluice_dp_upstream_connections_opened_total");
            }
          } catch (e) {
            notes.push(`3 ${t.name}: ${(e as Error).message.split("\n")[0]}`);
          }
        }
      }
      const s: ScenarioResult = { id: "3", title: "Connection set-up (TLS, token verification, upstream auth): connections/s with pgbench -C", unit: "conn/s", results: {}, ratios: {}, notes: [] };
      for (const [k, v] of Object.entries(cps)) {
        const extra: Record<string, number> = { connectP50Ms: percentile(lats[k] ?? [], 50), connectP99Ms: percentile(lats[k] ?? [], 99) };
        if (resumedLats[k]) extra.resumedP50Ms = percentile(resumedLats[k]!, 50);
        if (cpuPerConn[k]) extra.proxyCpuMsPerConn = percentile(cpuPerConn[k]!, 50);
        // mean milliseconds per connection in each phase, inside the node (the client's own work and the network are outside)
        if (phaseSums[k] && phaseCounts[k]) for (const p of CONNECT_PHASES) extra[`${p}Ms`] = (phaseSums[k]![p]! * 1000) / phaseCounts[k]!;
        if (reused[k]) extra.reusedShare = reused[k]!.reused / Math.max(1, phaseCounts[k] ?? 0);
        s.results[k] = { ...summarize(v), extra };
      }
      const sl = s.results[plainName];
      if (sl && s.results.direct) {
        s.ratios["sluice/direct"] = ratio(sl.median, s.results.direct.median);
        s.ratios["added p50 ms vs direct"] = (sl.extra!.connectP50Ms ?? NaN) - (s.results.direct.extra!.connectP50Ms ?? NaN);
        s.ratios["added p99 ms vs direct"] = (sl.extra!.connectP99Ms ?? NaN) - (s.results.direct.extra!.connectP99Ms ?? NaN);
        // the same with TLS on both sides: what sluice adds beyond the handshake itself
        if (s.results["direct-tls"]) s.ratios["added p50 ms vs direct-tls"] = (sl.extra!.connectP50Ms ?? NaN) - (s.results["direct-tls"].extra!.connectP50Ms ?? NaN);
      }
      // issue 15: sluice ≥ 0.5× pgbouncer-tls connections/s and p50 ≤ 2× pgbouncer-tls's; with reuse off no worse than before
      const pgb = s.results["pgbouncer-tls"];
      if (sl && pgb) {
        s.ratios["sluice/pgbouncer-tls conn/s"] = ratio(sl.median, pgb.median);
        s.ratios["sluice/pgbouncer-tls p50"] = ratio(sl.extra!.connectP50Ms ?? NaN, pgb.extra!.connectP50Ms ?? NaN);
      }
      const off = s.results["sluice-noreuse"];
      if (sl && off) s.ratios["reuse on/off conn/s"] = ratio(sl.median, off.median);
      results.push(s);
    }

    // 4. Per-statement policy cost: the decision micro-benchmark (cached and uncached), in its own process
    if (only.has("4")) {
      const script = join(here, "policy-cost.bench.ts");
      const s: ScenarioResult = { id: "4", title: "Per-statement policy decision cost", unit: "µs/decision", results: {}, ratios: {}, notes: [] };
      if (existsSync(script)) {
        const r = spawnSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8" });
        if (r.status === 0) {
          try {
            const j = JSON.parse(r.stdout) as Record<string, { p50Ns?: number; p99Ns?: number; medianNs?: number }>;
            for (const [k, v] of Object.entries(j)) {
              if (typeof v !== "object" || v === null) continue;
              const p50 = (v.p50Ns ?? v.medianNs ?? NaN) / 1000;
              s.results[k] = { median: p50, min: p50, max: p50, n: 1, extra: { p99Us: (v.p99Ns ?? NaN) / 1000 } };
            }
          } catch (e) {
            s.notes.push(`could not read its output: ${(e as Error).message}`);
          }
        } else s.notes.push(`policy-cost.bench.ts failed: ${r.stderr.trim().split("\n").slice(-1)[0]}`);
      } else s.notes.push("policy-cost.bench.ts not present");
      results.push(s);

      // 4b. what recording a statement costs: building its events, and storing them in JetStream batches
      const a: ScenarioResult = { id: "4b", title: "Per-statement audit cost (CPU)", unit: "µs", results: {}, ratios: {}, notes: [] };
      const microArgs = smoke ? { audit: ["--statements", "5000"], nats: ["--events", "2000"] } : { audit: ["--statements", "100000", "--rounds", "9"], nats: [] };
      const audit = spawnSync(process.execPath, ["--import", "tsx", join(here, "audit-cost.bench.ts"), ...microArgs.audit], { encoding: "utf8" });
      try {
        if (audit.status !== 0) throw new Error(audit.stderr.trim().split("\n").slice(-1)[0]);
        const j = JSON.parse(audit.stdout) as { usPerStatement: number; usPerEvent: number; usPerEventMin: number; eventsPerStatement: number; bytesPerStatement: number };
        a.results["build + hash-chain + encode the events of a pgbench statement (in batches)"] = {
          ...summarize([j.usPerStatement]), extra: { usPerEvent: j.usPerEvent, usPerEventMin: j.usPerEventMin, events: j.eventsPerStatement, bytes: j.bytesPerStatement },
        };
      } catch (e) {
        a.notes.push(`audit-cost.bench.ts failed: ${(e as Error).message}`);
      }
      const nats = spawnSync(process.execPath, ["--import", "tsx", join(here, "nats-cost.bench.ts"), ...microArgs.nats], { encoding: "utf8" });
      try {
        if (nats.status !== 0) throw new Error(nats.stderr.trim().split("\n").slice(-1)[0]);
        const j = JSON.parse(nats.stdout) as { results: Record<string, { natsUsPerEvent: number; clientUsPerEvent: number }> };
        for (const [k, v] of Object.entries(j.results)) {
          const batched = "eventsPerMessage" in v ? { extra: { eventsPerMessage: (v as { eventsPerMessage: number }).eventsPerMessage } } : {};
          a.results[`one event stored, ${k}: nats-server`] = { ...summarize([v.natsUsPerEvent]), ...batched };
          a.results[`one event stored, ${k}: publishing process`] = summarize([v.clientUsPerEvent]);
        }
        a.notes.push("nats-server and the publisher alone on a private server, messages back to back; at scenario 1's pace a message costs nats-server more (its wake-ups from idle: see the paced rows and natsCpuUsPerMsg there)");
      } catch (e) {
        a.notes.push(`nats-cost.bench.ts failed: ${(e as Error).message}`);
      }
      // what one message at the lanes' pace (250/s, 13 KB, one in flight) costs nats-server, one piece taken away at a time
      if (!smoke) {
        const paced = spawnSync(process.execPath, ["--import", "tsx", join(here, "nats-paced.bench.ts"), "--rounds", "1", "--seconds", "3"], { encoding: "utf8", timeout: 180_000 });
        try {
          if (paced.status !== 0) throw new Error((paced.stderr || "").trim().split("\n").slice(-1)[0]);
          const j = JSON.parse(paced.stdout) as { results: Record<string, Array<{ natsUsPerMsg: number; load1: number }>> };
          for (const [k, xs] of Object.entries(j.results)) {
            a.results[`one 13 KB message at 250/s, ${k}: nats-server µs/message`] = { ...summarize(xs.map((x) => x.natsUsPerMsg)), extra: { load1: xs[0]!.load1 } };
          }
        } catch (e) {
          a.notes.push(`nats-paced.bench.ts failed: ${(e as Error).message}`);
        }
      }
      results.push(a);
    }

    // 5. RSS: 1,000 idle sessions, and the peak during scenario 2
    if (only.has("5")) {
      const s: ScenarioResult = { id: "5", title: `Data-plane RSS (MB): idle, ${idleSessions} idle sessions, peak during scenario 2`, unit: "MB", results: {}, ratios: {}, notes: [] };
      const node = sluiceNodes[plainName];
      if (node) {
        const before = rssMb(node.pid);
        const close = await openIdle(node.target(plainName), idleSessions);
        await new Promise((r) => setTimeout(r, 1000));
        const during = rssMb(node.pid);
        await close();
        s.results["sluice idle node"] = summarize([before]);
        s.results[`sluice with ${idleSessions} idle sessions`] = summarize([during]);
        s.ratios["MB per idle session"] = (during - before) / idleSessions;
      } else s.notes.push("no sluice node");
      // what a deployed node runs (issue 15): the compiled output, not the sources through tsx
      const stale = staleReason(join(here, "..", ".."));
      s.notes.push(`the nodes run \`sluice data-plane\` from ${stale === null ? "the compiled dist/" : `the TypeScript sources through tsx (dist/: ${stale}; npm run bench builds first)`}`);
      for (const [k, v] of Object.entries(rssDuringBig)) s.results[`${k} peak during scenario 2`] = summarize([v]);
      results.push(s);
    }

    // 6. Startup: a CLI command, a command against a running stack, a data-plane node (issue 15)
    if (only.has("6")) {
      const s: ScenarioResult = { id: "6", title: "Startup: the sluice command (compiled dist/), and a data-plane node", unit: "ms", results: {}, ratios: {}, notes: [] };
      const n = smoke ? 3 : 10;
      const cliEnv: NodeJS.ProcessEnv = { ...process.env, SLUICE_CONTEXT: join(outDir, "no-such-context.json") };
      /** wall time as the result, CPU time beside it (a loaded machine inflates wall time far more) */
      const timed = (r: { wallMs: number[]; cpuMs: number[] }) => ({ ...summarize(r.wallMs), extra: { cpuMs: percentile(r.cpuMs, 50) } });
      try {
        log("6: node -e '' (the floor: Node's own start-up), sluice --help");
        s.results["node -e '' (Node's own start-up)"] = timed(await timeNode(["-e", ""], cliEnv, n));
        s.results["sluice --help"] = timed(await timeCommand(["--help"], cliEnv, n));
        // what an install runs (deploy/systemd, deploy/Dockerfile): no check of dist/ against the sources
        s.results["node dist/bin/cli.js --help (installed)"] = timed(await timeNode([join(here, "..", "..", "dist", "bin", "cli.js"), "--help"], cliEnv, n));
      } catch (e) {
        s.notes.push(`sluice --help: ${(e as Error).message}`);
      }
      const node = sluiceNodes[plainName];
      if (node) {
        const starts: Record<string, number[]> = {};
        try {
          for (let r = 0; r < (smoke ? 1 : 3); r++) {
            log(`6: sluice data-plane start ${r + 1}`);
            const st = await dataPlaneStartup({ natsUrl: node.natsUrl, prefix: node.prefix, cert });
            (starts["sluice data-plane: listening"] ??= []).push(st.listeningMs);
            (starts["sluice data-plane: ready (snapshot applied)"] ??= []).push(st.readyMs);
            (starts["sluice data-plane: idle RSS (MB)"] ??= []).push(st.idleRssMb);
          }
        } catch (e) {
          s.notes.push(`sluice data-plane: ${(e as Error).message}`);
        }
        for (const [k, v] of Object.entries(starts)) s.results[k] = summarize(v);
      }
      try {
        log("6: sluice dev, then sluice sessions list");
        const dev = await startDevStack(`postgres://postgres@127.0.0.1:${cluster.port}/${db}`);
        try {
          s.results["sluice dev: ready"] = summarize([dev.readyMs]);
          s.results["sluice sessions list --json (against sluice dev)"] = timed(await timeCommand(["sessions", "list", "--json"], dev.env, n));
        } finally {
          await dev.stop();
        }
      } catch (e) {
        s.notes.push(`sluice dev / sessions list: ${(e as Error).message}`);
      }
      results.push(s);
    }

    // 7. Policy propagation: `policy apply` to each node enforcing, on a supercluster (its own process)
    if (only.has("7")) {
      const s: ScenarioResult = { id: "7", title: "Policy propagation: from the `policy apply` call to each node enforcing the revision (supercluster of two 3-node clusters, a replica and two nodes per region)", unit: "ms", results: {}, ratios: {}, notes: [] };
      const rounds = smoke ? 5 : 60;
      const r = spawnSync(process.execPath, ["--import", "tsx", join(here, "propagation.bench.ts"), "--rounds", String(rounds), "--write", outDir], { encoding: "utf8", timeout: 600_000, env: { ...process.env, SLUICE_LOG_LEVEL: "error" } });
      try {
        if (r.status !== 0) throw new Error((r.stderr || "").trim().split("\n").slice(-3).join(" | "));
        const f = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { enforceMs: Record<string, number[]>; loadAverageAtStart: number };
        for (const [k, xs] of Object.entries(f.enforceMs)) {
          s.results[k] = { ...summarize(xs), extra: { p50Ms: percentile(xs, 50), p99Ms: percentile(xs, 99) } };
        }
        const all = Object.values(f.enforceMs).flat();
        s.results["every node"] = { ...summarize(all), extra: { p50Ms: percentile(all, 50), p99Ms: percentile(all, 99) } };
        s.notes.push(`${rounds} rounds, load average ${f.loadAverageAtStart.toFixed(1)} at start; details in propagation.md`);
      } catch (e) {
        s.notes.push(`propagation.bench.ts failed: ${(e as Error).message}`);
      }
      results.push(s);
    }
  } finally {
    for (const c of cleanup.reverse()) {
      try { await c(); } catch { /* keep cleaning */ }
    }
  }
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    config: { smoke, scale, repeat, seconds, rowsForBig, idleSessions },
    scenarios: results,
    notes,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "latest.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(outDir, "latest.md"), renderMarkdown(report));
  log(`wrote ${join(outDir, "latest.json")} and latest.md`);
}

main().catch((e) => {
  process.stderr.write(`[bench] failed: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

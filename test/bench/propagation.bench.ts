/**
 * Policy propagation across the fleet (issue 16: p50/p99, target p99 ≤ 250 ms): the time from a
 * `policy apply` call to each data plane enforcing the new revision, per region. Starts the fleet
 * the cluster tests use (test/cluster/fleet-stack.ts): a supercluster of two 3-node JetStream
 * clusters joined by gateways (streams and buckets in `eu`, replicas 3), one control-plane replica
 * per region, two data planes per region, each dialling its own region's servers; and, with
 * `--topology cluster`, one 3-node cluster with both replicas and all four nodes.
 *
 * Each round applies a changed bundle through one replica (alternating eu and us) and times, on this
 * process's monotonic clock, the call's start to the moment each node's snapshot watcher applied the
 * revision (from then on every new statement is decided by it). Also recorded: how long the call
 * took (it returns once its replica has the snapshot in KV) and the part from the KV entry's store
 * time to the node applying it (wall clock, ms resolution). The gRPC call is made in this process:
 * the CLI's own start-up (a Node process) is not included.
 *
 * Not a test: `node --import tsx test/bench/propagation.bench.ts [--rounds N] [--topology supercluster|cluster]
 * [--write DIR]` prints one JSON object; with --write it also writes DIR/propagation.json and .md.
 * `npm run bench -- --only 7` runs it as scenario 7.
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg, totalmem } from "node:os";
import { parseArgs } from "node:util";
import type { TestContext } from "node:test";
import type { Bundle } from "@sluice/shared/policy";
import { ADMIN_GROUP, startFleet, type Fleet, type FleetOptions } from "../cluster/fleet-stack.js";
import { percentile } from "./lib/stats.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "60" },
    topology: { type: "string", default: "supercluster" },
    write: { type: "string" },
    "gap-ms": { type: "string", default: "200" },
  },
});
const rounds = Math.max(1, Number(values.rounds));
const gapMs = Math.max(0, Number(values["gap-ms"]));
const topology = values.topology === "cluster" ? "cluster" : "supercluster";
const log = (s: string) => process.stderr.write(`[propagation] ${s}\n`);

const policy = (n: number): Bundle => ({
  groups: ["dev", ADMIN_GROUP],
  issuers: [],
  resources: [],
  policies: [{ name: `dev-round-${n}`, groups: ["dev", ADMIN_GROUP], resources: ["app"], allow: ["read"] }],
  masking: [],
});

const layouts: Record<typeof topology, FleetOptions> = {
  supercluster: {
    clusters: [{ name: "eu" }, { name: "us" }],
    home: "eu",
    controlPlanes: ["eu", "us"],
    dataPlanes: [
      { node: "dp-eu-1", region: "eu-west", cluster: "eu" },
      { node: "dp-eu-2", region: "eu-west", cluster: "eu" },
      { node: "dp-us-1", region: "us-east", cluster: "us" },
      { node: "dp-us-2", region: "us-east", cluster: "us" },
    ],
  },
  cluster: {
    clusters: [{ name: "eu" }],
    controlPlanes: ["eu", "eu"],
    dataPlanes: [
      { node: "dp-eu-1", region: "eu-west" },
      { node: "dp-eu-2", region: "eu-west" },
      { node: "dp-us-1", region: "us-east" },
      { node: "dp-us-2", region: "us-east" },
    ],
  },
};

export interface PropagationFigures {
  topology: string;
  rounds: number;
  loadAverageAtStart: number;
  /** "<node region> via <replica region or index>" → ms samples, one per round */
  enforceMs: Record<string, number[]>;
  /** KV store time → node applied (wall clock, ms), by node region */
  kvToNodeMs: Record<string, number[]>;
  /** the apply call itself, by replica */
  applyCallMs: Record<string, number[]>;
}

const ms = (t0: bigint, t1: bigint) => Number(t1 - t0) / 1e6;

async function measure(fleet: Fleet, layout: FleetOptions): Promise<PropagationFigures> {
  const regionOf = new Map(layout.dataPlanes.map((d) => [d.node, d.region]));
  const arrived = new Map<string, { rev: number; at: bigint }>();
  const waiting = new Map<string, () => void>();
  for (const [node, dp] of fleet.dataPlanes) {
    dp.snapshots.onChange((s) => {
      arrived.set(node, { rev: s.revision, at: process.hrtime.bigint() });
      waiting.get(node)?.();
    });
  }
  const until = (node: string, rev: number) =>
    new Promise<void>((resolve, reject) => {
      if ((arrived.get(node)?.rev ?? 0) >= rev) return resolve();
      const timer = setTimeout(() => reject(new Error(`${node} did not apply revision ${rev} within 60 s`)), 60_000);
      waiting.set(node, () => {
        if ((arrived.get(node)?.rev ?? 0) < rev) return;
        clearTimeout(timer);
        waiting.delete(node);
        resolve();
      });
    });
  const figures: PropagationFigures = { topology, rounds, loadAverageAtStart: loadavg()[0]!, enforceMs: {}, kvToNodeMs: {}, applyCallMs: {} };
  const push = (m: Record<string, number[]>, k: string, v: number) => (m[k] ??= []).push(v);
  const cps = fleet.controlPlanes.map((cp, i) => ({ cp, label: topology === "supercluster" ? cp.region : `replica ${i + 1}` }));
  for (let r = 0; r < rounds; r++) {
    const { cp, label } = cps[r % cps.length]!;
    const t0 = process.hrtime.bigint();
    const rev = await fleet.apply(policy(r), cp);
    const t1 = process.hrtime.bigint();
    push(figures.applyCallMs, label, ms(t0, t1));
    await Promise.all([...fleet.dataPlanes.keys()].map((n) => until(n, rev)));
    for (const [node, dp] of fleet.dataPlanes) {
      const region = regionOf.get(node)!;
      push(figures.enforceMs, `${region} via ${label}`, ms(t0, arrived.get(node)!.at));
      const st = dp.snapshots.status();
      if (st.appliedAt && st.publishedAt) push(figures.kvToNodeMs, region, Date.parse(st.appliedAt) - Date.parse(st.publishedAt));
    }
    if ((r + 1) % 10 === 0) log(`${r + 1}/${rounds} rounds`);
    await new Promise((res) => setTimeout(res, gapMs));
  }
  return figures;
}

export function summary(xs: number[]): { p50: number; p99: number; max: number; n: number } {
  return { p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs), n: xs.length };
}

function markdown(f: PropagationFigures, machine: string): string {
  const row = (k: string, xs: number[]) => {
    const s = summary(xs);
    return `| ${k} | ${s.p50.toFixed(1)} | ${s.p99.toFixed(1)} | ${s.max.toFixed(1)} | ${s.n} |`;
  };
  const all = Object.values(f.enforceMs).flat();
  return [
    `# Policy propagation (${f.topology})`,
    "",
    `${machine}; load average ${f.loadAverageAtStart.toFixed(1)} at start; ${f.rounds} rounds.`,
    "Milliseconds from the `policy apply` call's start to each node applying the revision. Target (issue 16): p99 ≤ 250 ms.",
    "",
    "| node region via replica | p50 ms | p99 ms | max ms | n |",
    "|---|---|---|---|---|",
    ...Object.entries(f.enforceMs).map(([k, xs]) => row(k, xs)),
    row("**every node**", all),
    "",
    "The apply call (returns once its replica has the snapshot in KV):",
    "",
    "| replica | p50 ms | p99 ms | max ms | n |",
    "|---|---|---|---|---|",
    ...Object.entries(f.applyCallMs).map(([k, xs]) => row(k, xs)),
    "",
    "From the KV entry's store time to the node applying it (wall clock, ms resolution):",
    "",
    "| node region | p50 ms | p99 ms | max ms | n |",
    "|---|---|---|---|---|",
    ...Object.entries(f.kvToNodeMs).map(([k, xs]) => row(k, xs)),
    "",
    "Where the time goes: the call reads the policy aggregate (one stream-message request per event,",
    "next_by_subj, no consumer; what was read before is kept for the next read:",
    "control-plane/src/infra/jetstream-event-store.ts), appends the event, and its replica's projection",
    "(on a live consumer that is replaced when it goes silent: shared/src/nats/live-consumer.ts) writes",
    "the snapshot into KV, which every node's watch receives.",
    "",
  ].join("\n");
}

async function main(): Promise<void> {
  const layout = { ...layouts[topology], policy: policy(-1) };
  const cleanups: Array<() => Promise<unknown>> = [];
  // startFleet registers its teardown on a test context; here it is called explicitly
  const t = { after: (fn: () => Promise<unknown>) => cleanups.push(fn) } as unknown as TestContext;
  log(`starting the ${topology} fleet`);
  const fleet = await startFleet(t, layout);
  let figures: PropagationFigures;
  try {
    figures = await measure(fleet, layout);
  } finally {
    await fleet.stop();
    for (const c of cleanups) await c().catch(() => undefined);
  }
  process.stdout.write(JSON.stringify(figures) + "\n");
  if (values.write) {
    const machine = `${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString()}`;
    mkdirSync(values.write, { recursive: true });
    const file = topology === "supercluster" ? "propagation" : "propagation-cluster";
    writeFileSync(join(values.write, `${file}.json`), JSON.stringify({ machine, ...figures, summary: Object.fromEntries(Object.entries(figures.enforceMs).map(([k, xs]) => [k, summary(xs)])) }, null, 2) + "\n");
    writeFileSync(join(values.write, `${file}.md`), markdown(figures, machine));
    log(`wrote ${join(values.write, file)}.json and .md`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`[propagation] failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

/**
 * Micro-benchmark of the relay's own CPU per pgbench transaction (issue 14): one RelaySession, in
 * process, fed the bytes `pgbench -S` sends and the server answers, with the production enforcer
 * (snapshotEnforcer with its decision cache, behind volatilityEnforcer with function facts at hand),
 * the node's masker for a resource without masking rules, the metrics and listeners the composition
 * root adds, parameter decoding and row capture on as a node has them, and no audit (a no-op sink: the recorder has benchmarks of its own, audit-cost.bench.ts). No sockets,
 * no TLS, no kernel: what is left is the framing, the decision path, the statement namespace, the
 * response queue and the result path — the part of a node's CPU per transaction that scenario 1
 * cannot tell from the noise of a shared machine.
 *
 *   - extended: Parse/Bind/Describe/Execute/Sync of the unnamed statement, a new `aid` each time
 *   - simple:   Query with a new literal each time (decided by its shape, literal-shape.ts)
 *
 * Prints one JSON object on stdout: ns of CPU per transaction (median of the rounds, and min).
 * Not a test (no thresholds): `node --import tsx test/bench/relay-cost.bench.ts [--rounds N] [--tx N] [--mode extended|simple]`
 * (`--cpu-prof` on that command profiles the relay alone).
 */
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Bundle, PolicySnapshot } from "@sluice/shared/policy";
import type { RelayIo } from "../../data-plane/src/session/relay-session.js";
import type { FunctionFacts } from "../../data-plane/src/catalog/volatile-calls.js";
import type { ResultMasker, SessionInfo } from "../../data-plane/src/session/session-hooks.js";
import { staleReason } from "../../scripts/build-state.mjs";

// what a node runs: the compiled dist/ when it is current (npm run build), else the sources (tsx
// adds a helper call to every closure it creates, so those figures are higher)
const root = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");
const compiled = staleReason(root) === null;
const load = async <T>(rel: string): Promise<T> =>
  (await import(compiled ? pathToFileURL(join(root, "dist", "node_modules", "@sluice", rel.replace(/\.ts$/, ".js"))).href : pathToFileURL(join(root, rel)).href)) as T;
const { RelaySession } = await load<typeof import("../../data-plane/src/session/relay-session.js")>("data-plane/src/session/relay-session.ts");
const { snapshotEnforcer } = await load<typeof import("../../data-plane/src/session/snapshot-enforcer.js")>("data-plane/src/session/snapshot-enforcer.ts");
const { volatilityEnforcer } = await load<typeof import("../../data-plane/src/catalog/volatility-enforcer.js")>("data-plane/src/catalog/volatility-enforcer.ts");
const { staticSnapshotSource } = await load<typeof import("../../data-plane/src/snapshot/snapshot-source.js")>("data-plane/src/snapshot/snapshot-source.ts");
const { noopAudit } = await load<typeof import("../../data-plane/src/session/session-hooks.js")>("data-plane/src/session/session-hooks.ts");
const { bind, describe, encodeDataRow, execute, parse, query, readyForQuery, sync } = await load<typeof import("../../data-plane/src/wire/encode.js")>("data-plane/src/wire/encode.ts");
const { loadSqlParser, DecisionCache } = await load<typeof import("@sluice/shared/sql")>("shared/src/sql/index.ts");
const { canonicalJson } = await load<typeof import("@sluice/shared/events")>("shared/src/events/index.ts");
const { FixedHistogram, LATENCY_SECONDS_BUCKETS } = await load<typeof import("@sluice/shared/metrics")>("shared/src/metrics/index.ts");
const { createResultMasker } = await load<typeof import("../../data-plane/src/masking/result-masker.js")>("data-plane/src/masking/result-masker.ts");
const { countingAudit, ProxyCounters } = await load<typeof import("../../data-plane/src/metrics/proxy-counters.js")>("data-plane/src/metrics/proxy-counters.ts");
const { ddlInvalidationListener } = await load<typeof import("../../data-plane/src/catalog/ddl-invalidation.js")>("data-plane/src/catalog/ddl-invalidation.ts");

const { values } = parseArgs({ options: { rounds: { type: "string", default: "7" }, tx: { type: "string", default: "100000" }, mode: { type: "string" } } });
const rounds = Math.max(1, Number(values.rounds));
const txPerRound = Math.max(1000, Number(values.tx));

await loadSqlParser();

const bundle: Bundle = {
  issuers: [{ name: "dev", issuer: "http://127.0.0.1/bench", audience: "sluice", jwks: { keys: [] } }],
  groups: ["bench"],
  resources: [{ name: "bench", upstream: { host: "127.0.0.1", port: 5432, database: "bench", user: "postgres", auth: "trust", tls: "disable" } }],
  policies: [{ name: "bench-read", groups: ["bench"], resources: ["bench"], allow: ["read", "utility"] }],
  masking: [],
} as unknown as Bundle;
const snapshot: PolicySnapshot = { revision: 1, bundle, hash: createHash("sha256").update(canonicalJson(bundle)).digest("hex"), appliedBy: "bench", appliedAt: new Date(0).toISOString() };
const snapshots = staticSnapshotSource(snapshot);
// the function catalog as a node has it between refreshes: facts at hand, nothing volatile
const facts: FunctionFacts = { builtins: new Set(["abs"]), user: new Map(), volatileOperators: new Set(), volatileReads: new Set() };
const enforcer = volatilityEnforcer(snapshotEnforcer(snapshots, new DecisionCache()), {
  snapshots,
  catalog: { functionFacts: async () => facts, functionFactsNow: () => facts },
});
// the node's masker, for a resource without masking rules: asked per statement, it says no (its
// catalog is never reached then)
const masker: ResultMasker = createResultMasker({
  masking: () => ({ revision: snapshot.revision, specs: bundle.masking ?? [] }),
  catalog: {} as Parameters<typeof createResultMasker>[0]["catalog"],
  hashKey: Buffer.alloc(32),
});
// what the composition root puts around every session (data-plane.ts): counted audit, the DDL
// listener of the catalogs, the added-latency histogram
const audit = countingAudit(noopAudit, new ProxyCounters());
const listeners = [ddlInvalidationListener(() => undefined)];
const addedLatency = new FixedHistogram(LATENCY_SECONDS_BUCKETS);

const info: SessionInfo = {
  sessionId: "0190e0e0-0000-7000-8000-000000000000", nodeId: "bench", region: "bench", resource: "bench", clientUser: "bench-pipeline",
  clientAddress: "127.0.0.1:1", subject: "bench-pipeline", issuer: "http://127.0.0.1/bench", groups: ["bench"], claims: {}, policyRevision: 1,
};

function session(): { s: InstanceType<typeof RelaySession>; out: { client: number; upstream: number } } {
  const out = { client: 0, upstream: 0 };
  const io: RelayIo = {
    writeClient: (b) => void (out.client += b.length),
    writeUpstream: (b) => void (out.upstream += b.length),
    holdClient: () => undefined,
    holdUpstream: () => undefined,
    close: (reason) => {
      throw new Error(`the bench session closed: ${reason}`);
    },
  };
  const s = new RelaySession({
    info, enforcer, audit, listeners, addedLatency, features: { decodeParams: true, captureRows: 100 }, masker,
    maxFrameBytes: 64 * 1024 * 1024, poisonToken: "sluice_denied_0123456789abcdef01234567", now: () => performance.now(), io,
  });
  return { s, out };
}

// the server's answers: one int4 column (abalance), one row
const rowDescription = (() => {
  const name = Buffer.from("abalance\0");
  const body = Buffer.alloc(2 + name.length + 18);
  body.writeInt16BE(1, 0);
  name.copy(body, 2);
  let o = 2 + name.length;
  body.writeUInt32BE(16397, o); // table oid
  body.writeInt16BE(3, o + 4); // column
  body.writeUInt32BE(23, o + 6); // int4
  body.writeInt16BE(4, o + 10);
  body.writeInt32BE(-1, o + 12);
  body.writeInt16BE(0, o + 16);
  o += 18;
  const f = Buffer.alloc(5 + body.length);
  f[0] = 0x54;
  f.writeInt32BE(4 + body.length, 1);
  body.copy(f, 5);
  return f;
})();
const commandComplete = (() => {
  const tag = Buffer.from("SELECT 1\0");
  const f = Buffer.alloc(5 + tag.length);
  f[0] = 0x43;
  f.writeInt32BE(4 + tag.length, 1);
  tag.copy(f, 5);
  return f;
})();
const frame1 = (code: number) => Buffer.from([code, 0, 0, 0, 4]);
const extendedAnswer = Buffer.concat([frame1(0x31), frame1(0x32), rowDescription, encodeDataRow([Buffer.from("-1234")]), commandComplete, readyForQuery("I")]);
const simpleAnswer = Buffer.concat([rowDescription, encodeDataRow([Buffer.from("-1234")]), commandComplete, readyForQuery("I")]);

const SQL_EXT = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";
/** pgbench's requests, a new aid each (built ahead: building them is not the relay's cost) */
function requests(mode: "extended" | "simple", n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const aid = String(1 + ((i * 7919) % 1_000_000));
    out.push(
      mode === "extended"
        ? Buffer.concat([parse("", SQL_EXT), bind("", "", [aid]), describe("P", ""), execute(""), sync()])
        : query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`),
    );
  }
  return out;
}

function run(mode: "extended" | "simple", reqs: Buffer[]): number {
  const { s, out } = session();
  const answer = mode === "extended" ? extendedAnswer : simpleAnswer;
  // each chunk a fresh copy, as a socket read hands the relay a new buffer every time
  const answers = reqs.map(() => Buffer.from(answer));
  const t0 = process.cpuUsage();
  for (let i = 0; i < reqs.length; i++) {
    s.onClientData(reqs[i]!);
    s.onUpstreamData(answers[i]!);
  }
  const t = process.cpuUsage(t0);
  if (out.client !== answer.length * reqs.length) throw new Error(`the client got ${out.client} bytes, not ${answer.length * reqs.length}`);
  if (s.stats.statements !== reqs.length) throw new Error(`${s.stats.statements} statements relayed, not ${reqs.length}`);
  return ((t.user + t.system) * 1000) / reqs.length;
}

const result: Record<string, { medianNs: number; minNs: number; rounds: number[] }> = {};
for (const mode of (values.mode ? [values.mode] : ["extended", "simple"]) as Array<"extended" | "simple">) {
  const reqs = requests(mode, txPerRound);
  run(mode, reqs.slice(0, Math.min(20_000, reqs.length))); // warm up (JIT, caches)
  const xs: number[] = [];
  for (let r = 0; r < rounds; r++) xs.push(run(mode, reqs));
  const sorted = [...xs].sort((a, b) => a - b);
  result[mode] = { medianNs: Math.round(sorted[Math.floor(sorted.length / 2)]!), minNs: Math.round(sorted[0]!), rounds: xs.map(Math.round) };
}
process.stdout.write(JSON.stringify({ txPerRound, compiled, ...result }) + "\n");

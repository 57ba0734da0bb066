/**
 * Micro-benchmark of what recording one statement costs the data plane's thread before anything is
 * sent: building, hash-chaining and encoding the three events a pgbench -S statement produces
 * (statement.allowed, result.rows, statement.completed) with the SessionRecorder, whose publisher is
 * replaced by a sink that keeps only the bytes. In process and CPU-bound, so it is steady on a shared
 * machine where end-to-end TPS is not. Not a test (no thresholds):
 * `node --import tsx test/bench/audit-cost.bench.ts [--statements N]`. Prints one JSON object.
 */
import { parseArgs } from "node:util";
import { natsNames } from "@sluice/shared/nats";
import { SessionRecorder, type AuditPublisher } from "@sluice/data-plane";

const { values } = parseArgs({ options: { statements: { type: "string", default: "200000" } } });
const n = Math.max(1000, Number(values.statements));

let bytes = 0;
let events = 0;
const sink = {
  assertCapacity() {},
  enqueue(_subject: string, evs: readonly { id: string }[], _mode: string, encoded?: readonly Uint8Array[]) {
    events += evs.length;
    for (const b of encoded ?? []) bytes += b.length;
    return undefined;
  },
  enqueueEncoded(_subject: string, evs: ReadonlyArray<{ id: string; bytes: Uint8Array }>) {
    events += evs.length;
    for (const e of evs) bytes += e.bytes.length;
    return undefined;
  },
} as unknown as AuditPublisher;

const rec = new SessionRecorder(sink, { sessionId: "01970000-0000-7000-8000-000000000000", region: "bench", node: "node-1", names: natsNames("bench"), policyRev: 7 });
const part = { kind: "SelectStmt", class: "read" as const, tables: { read: ["public.pgbench_accounts"], write: [] }, functions: [], risks: [] };

function statement(id: number): void {
  rec.record("statement.allowed", {
    statementId: id,
    sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
    params: [String((id * 7919) % 1_000_000)],
    protocol: "extended",
    class: "read",
    tables: part.tables,
    risks: [],
    statements: [part],
    decision: "allow",
    rule: "bench-read/allow:read",
    policy: "bench-read",
  });
  rec.record("result.rows", {
    statementId: id,
    columns: [{ name: "abalance", typeOid: 23 }],
    values: [[String(id % 5000)]],
    rows: 1,
    recorded: 1,
    truncated: false,
    recordedBytes: 4,
  });
  rec.record("statement.completed", { statementId: id, commandTag: "SELECT 1", rows: 1, durationMs: 0.21 });
}

for (let i = 1; i <= 20_000; i++) statement(i); // warm-up: JIT
bytes = events = 0;
const t0 = process.hrtime.bigint();
for (let i = 1; i <= n; i++) statement(20_000 + i);
const ns = Number(process.hrtime.bigint() - t0);
process.stdout.write(JSON.stringify({ statements: n, usPerStatement: ns / n / 1000, eventsPerStatement: events / n, bytesPerStatement: bytes / n }) + "\n");

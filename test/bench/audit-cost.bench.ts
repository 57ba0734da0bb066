/**
 * Micro-benchmark of what recording one statement costs the data plane's thread before anything is
 * sent: the three hook calls the relay makes for a pgbench -S statement (statement allowed, its result
 * row, its completion) through the real audit observer and SessionRecorder, which build, hash-chain
 * and serialize statement.allowed and statement.completed (which carries the row), and the batch
 * encoding (the events joined into a CloudEvents JSON batch, as the publisher does per message). The
 * publisher is replaced by a sink that keeps the texts and encodes a batch every `--batch` events.
 * In process and CPU-bound, so it is steady on a shared machine where end-to-end TPS is not. Not a
 * test (no thresholds): `node --import tsx test/bench/audit-cost.bench.ts [--statements N] [--batch N] [--rounds N]`.
 * Prints one JSON object (the target: ≤ 4 µs per event): the min and median over `--rounds`
 * rounds of `--statements` each, since one round on a machine at load 15–20 varies by a fifth.
 */
import { parseArgs } from "node:util";
import { batchBytes, encodeBatch } from "@sluice/shared/events";
import type { Decision } from "@sluice/shared/policy";
import { createAuditObserver, type AuditPublisher } from "@sluice/data-plane";
import type { RowField, SessionInfo, StatementRecord } from "../../data-plane/src/session/session-hooks.js";

const { values } = parseArgs({ options: { statements: { type: "string", default: "200000" }, batch: { type: "string", default: "64" }, rounds: { type: "string", default: "1" } } });
const n = Math.max(1000, Number(values.statements));
const perBatch = Math.max(1, Number(values.batch));
const rounds = Math.max(1, Number(values.rounds));

let bytes = 0;
let events = 0;
let batches = 0;
let pending: string[] = [];
let pendingBytes = 0;
const sink = {
  laneFor: () => 0,
  laneSubject: () => "sluice.audit.bench.node-1.b-0",
  assertCapacity() {},
  enqueue(_lane: number, evs: ReadonlyArray<{ json: string; bytes: number }>) {
    events += evs.length;
    for (const e of evs) {
      pending.push(e.json);
      pendingBytes += e.bytes;
    }
    if (pending.length >= perBatch) {
      // as the publisher does: the lanes know the batch's size
      bytes += encodeBatch(pending, batchBytes(pendingBytes, pending.length)).length;
      batches++;
      pending = [];
      pendingBytes = 0;
    }
    return undefined;
  },
} as unknown as AuditPublisher;

const observer = createAuditObserver({ publisher: sink, maxRowsPerStatement: 100, maxBytesPerStatement: 64 * 1024 });
const session: SessionInfo = {
  sessionId: "01970000-0000-7000-8000-000000000000", nodeId: "node-1", region: "bench", resource: "bench", clientUser: "bench-pipeline",
  clientAddress: "127.0.0.1:50000", subject: "bench-pipeline", issuer: "dev", groups: ["bench"], claims: {}, policyRevision: 7,
};
// one Decision object for every execution, as the decision cache hands out
const decision: Decision = {
  action: "allow", rule: "bench-read/allow:read", policy: "bench-read", reason: "allowed by bench-read", statementClass: "read", statementIndex: 0,
  statements: [{ kind: "SelectStmt", class: "read", tables: { read: ["public.pgbench_accounts"], write: [] }, functions: [], risks: [] }] as unknown as Decision["statements"],
};
const fields: RowField[] = [{ name: "abalance", tableOid: 16390, columnAttr: 3, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 }];
const dataRow = (v: string) => {
  const b = Buffer.alloc(11 + v.length);
  b[0] = 0x44; // 'D' DataRow (B)
  b.writeInt32BE(10 + v.length, 1);
  b.writeInt16BE(1, 5);
  b.writeInt32BE(v.length, 7);
  b.write(v, 11);
  return b;
};

function statement(seq: number): void {
  const stmt: StatementRecord = {
    seq, protocol: "parse", sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", statementName: "", portalName: "",
    params: [{ format: "text", value: Buffer.from(String((seq * 7919) % 1_000_000)) }], decision,
  };
  observer.statementAllowed!(session, stmt);
  observer.resultRows!(session, seq, fields, [dataRow(String(seq % 5000))]);
  observer.statementCompleted!(session, { seq, commandTag: "SELECT 1", rows: 1, durationMs: 0.21 });
}

observer.sessionStarted!({ sessionId: session.sessionId, nodeId: "node-1", region: "bench", clientAddress: "127.0.0.1:50000", tls: true, resource: "bench" } as never);
let seq = 0;
for (let i = 0; i < 20_000; i++) statement(++seq); // warm-up: JIT
const perEvent: number[] = [];
const perStatement: number[] = [];
let bytesPerStatement = 0;
let eventsPerStatement = 0;
for (let r = 0; r < rounds; r++) {
  bytes = events = batches = 0;
  pending = [];
  pendingBytes = 0;
  // CPU time, not wall time: on a shared 2-core machine the wall clock also counts other processes' turns
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) statement(++seq);
  const c = process.cpuUsage(c0);
  const us = c.user + c.system;
  perEvent.push(us / events);
  perStatement.push(us / n);
  eventsPerStatement = events / n;
  bytesPerStatement = (bytes / (batches * perBatch)) * (events / n);
}
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
const median = (a: number[]) => sorted(a)[Math.floor(a.length / 2)]!;
const round2 = (x: number) => Math.round(x * 100) / 100;
process.stdout.write(JSON.stringify({
  statements: n, rounds, usPerStatement: round2(median(perStatement)), usPerEvent: round2(median(perEvent)), usPerEventMin: round2(sorted(perEvent)[0]!), usPerEventMedian: round2(median(perEvent)),
  usPerStatementMin: round2(sorted(perStatement)[0]!), usPerStatementMedian: round2(median(perStatement)),
  eventsPerStatement, bytesPerStatement: round2(bytesPerStatement), eventsPerBatch: perBatch, perEvent: perEvent.map(round2),
}) + "\n");

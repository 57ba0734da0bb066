/**
 * Where one pgbench statement's audit CPU goes, stage by stage, through the recorder's real
 * functions on audit-cost.bench.ts's inputs: the statement.allowed payload text, the result capture,
 * the completion payload text, the envelope (clock, UUIDv7, ISO time), linking (canonical envelope +
 * SHA-256), the UTF-8 size and the batch. Stages are timed in interleaved rounds (CPU time, min and
 * median), so a change of load hits them alike. Not a test: `node --import tsx
 * test/bench/audit-stages.bench.ts [--rounds N] [--statements N]`; prints one JSON object, µs per
 * statement (two events) for each stage.
 */
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";
import { HashChain, batchBytes, encodeBatch, uuidv7 } from "@sluice/shared/events";
import type { Decision } from "@sluice/shared/policy";
import {
  captureRows, completionEvents, completionJson, resultColumns, statementEventJson, type ResultCapture,
} from "../../data-plane/src/recorder/audit-event-data.js";
import { rulesInputMasker } from "../../data-plane/src/recorder/input-masker.js";
import type { RowField, SessionInfo, StatementRecord } from "../../data-plane/src/session/session-hooks.js";

const { values } = parseArgs({ options: { statements: { type: "string", default: "20000" }, rounds: { type: "string", default: "15" } } });
const n = Math.max(1000, Number(values.statements));
const rounds = Math.max(1, Number(values.rounds));

const masker = rulesInputMasker(undefined, randomBytes(32));
const session: SessionInfo = {
  sessionId: "01970000-0000-7000-8000-000000000000", nodeId: "node-1", region: "bench", resource: "bench", clientUser: "bench-pipeline",
  clientAddress: "127.0.0.1:50000", subject: "bench-pipeline", issuer: "dev", groups: ["bench"], claims: {}, policyRevision: 7,
};
const decision: Decision = {
  action: "allow", rule: "bench-read/allow:read", policy: "bench-read", reason: "allowed by bench-read", statementClass: "read", statementIndex: 0,
  statements: [{ kind: "SelectStmt", class: "read", tables: { read: ["public.pgbench_accounts"], write: [] }, functions: [], risks: [] }] as unknown as Decision["statements"],
};
const fields: RowField[] = [{ name: "abalance", tableOid: 16390, columnAttr: 3, typeOid: 23, typeSize: 4, typeMod: -1, format: 0 }];
const dataRow = (v: string) => {
  const b = Buffer.alloc(11 + v.length);
  b[0] = 0x44;
  b.writeInt32BE(10 + v.length, 1);
  b.writeInt16BE(1, 5);
  b.writeInt32BE(v.length, 7);
  b.write(v, 11);
  return b;
};
// inputs made once: the proxy gets its frames and parameters from the socket
const frames = Array.from({ length: 5000 }, (_, i) => dataRow(String(i)));
const params = Array.from({ length: 5000 }, (_, i) => Buffer.from(String((i * 7919) % 1_000_000)));
const stmtOf = (seq: number): StatementRecord => ({
  seq, protocol: "parse", sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", statementName: "", portalName: "",
  params: [{ format: "text", value: params[seq % 5000]! }], decision,
});
const source = JSON.stringify("sluice://bench/node-1");
const subject = JSON.stringify(session.sessionId);
const typeA = JSON.stringify("dev.sluice.statement.allowed.v1");
const typeC = JSON.stringify("dev.sluice.statement.completed.v1");

let sink: unknown;
const allowedText = statementEventJson(masker, session, stmtOf(1));
const capture = (seq: number): ResultCapture => {
  const rs: ResultCapture = { columns: resultColumns(fields, undefined), values: [], recordedBytes: 0 };
  captureRows(rs, fields, [frames[seq % 5000]!], 64 * 1024);
  return rs;
};
const completedText = completionJson(completionEvents(masker, session, { seq: 1, commandTag: "SELECT 1", rows: 1, durationMs: 0.21 }, [capture(1)]).completed);
const chain = new HashChain();
const env = { id: uuidv7(), time: new Date().toISOString(), policyRev: 7, sourceJson: source, subjectJson: subject, typeJson: typeA };
const linkedA = chain.linkCanonical(env, allowedText).json;
const linkedC = chain.linkCanonical({ ...env, typeJson: typeC }, completedText).json;
const texts = Array.from({ length: 64 }, (_, i) => (i % 2 ? linkedC : linkedA));
const textsBytes = texts.reduce((s, t) => s + Buffer.byteLength(t), 0);

const stages: Record<string, (seq: number) => void> = {
  "statement.allowed payload (statementEventJson)": (seq) => { sink = statementEventJson(masker, session, stmtOf(seq)); },
  "result capture (resultColumns + captureRows)": (seq) => { sink = capture(seq); },
  "statement.completed payload (completionEvents + completionJson)": (seq) => {
    sink = completionJson(completionEvents(masker, session, { seq, commandTag: "SELECT 1", rows: 1, durationMs: 0.21 }, [capture(seq)]).completed);
  },
  "envelope ×2 (new Date, uuidv7, toISOString)": () => { for (let k = 0; k < 2; k++) { const t = new Date(); sink = uuidv7(t.getTime()); sink = t.toISOString(); } },
  "link ×2 (canonical envelope + SHA-256, HashChain.linkCanonical)": () => {
    sink = chain.linkCanonical({ id: env.id, time: env.time, policyRev: 7, sourceJson: source, subjectJson: subject, typeJson: typeA }, allowedText);
    sink = chain.linkCanonical({ id: env.id, time: env.time, policyRev: 7, sourceJson: source, subjectJson: subject, typeJson: typeC }, completedText);
  },
  "UTF-8 size ×2 (Buffer.byteLength)": () => { sink = Buffer.byteLength(linkedA, "utf8") + Buffer.byteLength(linkedC, "utf8"); },
  "batch share ×2 (encodeBatch of 64, per 2 events)": (seq) => { if (seq % 32 === 0) sink = encodeBatch(texts, batchBytes(textsBytes, texts.length)); },
};
const per: Record<string, number[]> = {};
for (const k of Object.keys(stages)) per[k] = [];
let seq = 0;
for (let r = -2; r < rounds; r++) {
  for (const [k, f] of Object.entries(stages)) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) f(++seq);
    const c = process.cpuUsage(c0);
    if (r >= 0) per[k]!.push((c.user + c.system) / n); // two rounds of warm-up
  }
}
void sink;
const out: Record<string, { min: number; median: number }> = {};
let sumMin = 0;
let sumMed = 0;
for (const [k, v] of Object.entries(per)) {
  v.sort((a, b) => a - b);
  out[k] = { min: Math.round(v[0]! * 1000) / 1000, median: Math.round(v[Math.floor(v.length / 2)]! * 1000) / 1000 };
  sumMin += v[0]!;
  sumMed += v[Math.floor(v.length / 2)]!;
}
process.stdout.write(JSON.stringify({ usPerStatement: out, sumMin: Math.round(sumMin * 100) / 100, sumMedian: Math.round(sumMed * 100) / 100, rounds, statements: n }, null, 1) + "\n");

import { test } from "node:test";
import assert from "node:assert/strict";
import type { CloudEvent } from "@sluice/shared/events";
import { hashEvent } from "@sluice/shared/events";
import { signCheckpoint, type Checkpoint } from "../sealer/checkpoint.js";
import { SealerCore, START_OF_STREAM } from "../sealer/sealer-core.js";
import { generateSigningKey } from "../sealer/signing-key.js";
import { eventDigest } from "../sealer/stream-chain.js";
import type { AuditRecord } from "./audit-record.js";
import { checkpointEvent, exportEvent, parseAuditJsonl } from "./audit-jsonl.js";
import { SessionWriter } from "./testing.js";
import { summarizeReport, verifyAudit } from "./verify.js";

const key = generateSigningKey();

/** Interleaved sessions as they would sit in the stream; `order` lets a test publish out of order. */
function sessionsEvents(n: number, sessions = 3): Array<CloudEvent> {
  const ws = Array.from({ length: sessions }, (_, i) => new SessionWriter(`s-${i + 1}`));
  return Array.from({ length: n }, (_, i) => ws[i % sessions]!.event("session.statement.allowed", { sql: `select ${i}` }));
}

function stored(events: CloudEvent[]): AuditRecord[] {
  return events.map((ev, i) => ({ seq: i + 1, subject: `sluice.audit.local.node-1.${ev.subject}`, event: ev }));
}

function seal(records: AuditRecord[], every = 10, k = key): Checkpoint[] {
  const core = new SealerCore({ stream: "SLUICE_AUDIT", keyId: k.keyId, sign: (u) => signCheckpoint(u, k.privateKey), everyEvents: every, everyMs: 1e9 }, START_OF_STREAM, 0);
  const out: Checkpoint[] = [];
  for (const r of records) {
    core.add(r.seq, eventDigest(r.event));
    if (core.due(0)) out.push(core.cut(new Date(0))!);
  }
  return out;
}

function toJsonl(records: AuditRecord[], cps: Checkpoint[]): string {
  const byLast = new Map(cps.map((c) => [c.lastSeq, c]));
  const lines: string[] = [];
  for (const r of records) {
    lines.push(JSON.stringify(exportEvent(r)));
    const cp = byLast.get(r.seq);
    if (cp) lines.push(JSON.stringify(checkpointEvent(cp)));
  }
  return lines.join("\n") + "\n";
}

test("an honest stream verifies, live and through its JSON-lines copy", () => {
  const recs = stored(sessionsEvents(45));
  const cps = seal(recs);
  const live = verifyAudit(recs, cps, { publicKey: key.publicKey });
  assert.equal(live.ok, true, summarizeReport(live));
  assert.deepEqual([live.records, live.sessions, live.checkpoints, live.sealedThrough, live.unsealed], [45, 3, 4, 40, 5]);
  const copy = parseAuditJsonl(toJsonl(recs, cps));
  assert.equal(copy.checkpoints.length, 4);
  const offline = verifyAudit(copy.records, copy.checkpoints, { publicKey: key.publicKey });
  assert.equal(offline.ok, true, summarizeReport(offline));
  assert.match(summarizeReport(offline), /^ok: 45 events, 3 sessions, 4 checkpoints; sealed through seq 40/);
});

test("an altered event in a copy is pinpointed: stream seq, session, event id", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const target = recs[16]!.event!;
  const text = toJsonl(recs, cps).replace(`"sql":"select 16"`, `"sql":"select 61"`);
  const copy = parseAuditJsonl(text);
  const r = verifyAudit(copy.records, copy.checkpoints, { publicKey: key.publicKey });
  assert.equal(r.ok, false);
  assert.deepEqual(
    { kind: r.firstProblem!.kind, seq: r.firstProblem!.streamSeq, session: r.firstProblem!.sessionId, id: r.firstProblem!.eventId },
    { kind: "altered", seq: 17, session: target.subject, id: target.id },
  );
  assert.match(summarizeReport(r), /FAILED: stream seq 17, session s-2, event .*altered/);
});

test("an altered and re-hashed event is caught by the next session link and by the checkpoint", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const ev = recs[12]!.event! as CloudEvent<{ sql: string }>;
  ev.data = { sql: "select 'forged'" };
  ev.sluicehash = hashEvent(ev);
  const r = verifyAudit(recs, cps, { publicKey: key.publicKey });
  // s-1's next event (stream seq 16) no longer links to it; the checkpoint over 11..20 no longer matches
  assert.deepEqual([r.firstProblem!.kind, r.firstProblem!.streamSeq, r.firstProblem!.sessionId], ["chain-broken", 16, ev.subject]);
  const mismatch = r.problems.find((p) => p.kind === "checkpoint-mismatch");
  assert.deepEqual(mismatch?.checkpoint, { firstSeq: 11, lastSeq: 20 });
});

test("a record removed from a copy is a stream gap at its sequence", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const copy = parseAuditJsonl(toJsonl(recs.filter((r) => r.seq !== 23), cps));
  const r = verifyAudit(copy.records, copy.checkpoints, { publicKey: key.publicKey });
  assert.equal(r.firstProblem!.kind, "stream-gap");
  assert.equal(r.firstProblem!.streamSeq, 23);
  assert.match(r.firstProblem!.reason, /stream seq 23 missing/);
  assert.ok(r.problems.some((p) => p.kind === "missing" && p.sessionId === recs[22]!.event!.subject));
  assert.equal(r.sealedThrough, 20, "the checkpoint over the gap is not counted as matched");
});

test("a session sequence number that never reached the stream is reported as missing", () => {
  const w = new SessionWriter("s-gap");
  const evs = Array.from({ length: 8 }, (_, i) => w.event("session.statement.allowed", { i }));
  evs.splice(4, 1); // seq 5 was linked but never stored
  const recs = stored(evs);
  const r = verifyAudit(recs, seal(recs, 3), { publicKey: key.publicKey });
  assert.deepEqual(
    { kind: r.firstProblem!.kind, seq: r.firstProblem!.streamSeq, sessionSeq: r.firstProblem!.sessionSeq, id: r.firstProblem!.eventId },
    { kind: "missing", seq: 5, sessionSeq: 6, id: evs[4]!.id },
  );
  assert.match(r.firstProblem!.reason, /session sequence 5 missing \(the session jumps from 4 to 6\)/);
});

test("a reordered session is told apart from a missing event", () => {
  const evs = sessionsEvents(12, 2);
  [evs[5], evs[7]] = [evs[7]!, evs[5]!]; // s-2's events 3 and 4 swap places
  const recs = stored(evs);
  const r = verifyAudit(recs, seal(recs, 4), { publicKey: key.publicKey });
  assert.equal(r.firstProblem!.kind, "reordered");
  assert.equal(r.firstProblem!.streamSeq, 6);
  assert.equal(r.firstProblem!.sessionId, "s-2");
  assert.match(r.firstProblem!.reason, /session sequence 4 arrives before 3, which comes later at stream seq 8/);
  assert.equal(r.problems.length, 1, "no checkpoint problem: the sealer sealed what was stored");
});

test("a forged checkpoint is caught against the pinned key; without a key the report says so", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const mallory = generateSigningKey();
  const forged = [cps[0]!, signCheckpoint({ ...cps[1]!, keyId: mallory.keyId }, mallory.privateKey), cps[2]!];
  const r = verifyAudit(recs, forged, { publicKey: key.publicKey });
  assert.equal(r.firstProblem!.kind, "checkpoint-key");
  assert.deepEqual(r.firstProblem!.checkpoint, { firstSeq: 11, lastSeq: 20 });

  const tampered = [cps[0]!, { ...cps[1]!, chainHash: "ab".repeat(32) }, cps[2]!];
  const r2 = verifyAudit(recs, tampered, { publicKey: key.publicKey });
  assert.equal(r2.firstProblem!.kind, "checkpoint-signature");
  assert.ok(r2.problems.some((p) => p.kind === "checkpoint-link" && p.checkpoint!.lastSeq === 30));

  const unpinned = verifyAudit(recs, cps);
  assert.equal(unpinned.ok, true);
  assert.match(summarizeReport(unpinned), /signatures NOT checked/);
});

test("events cut from the end of a copy are caught by the checkpoint that sealed them", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const r = verifyAudit(recs.slice(0, 27), cps, { publicKey: key.publicKey });
  assert.equal(r.firstProblem!.kind, "checkpoint-beyond-stream");
  assert.equal(r.firstProblem!.streamSeq, 28);
});

test("a partial copy starting at a checkpoint boundary verifies from there", () => {
  const recs = stored(sessionsEvents(30));
  const cps = seal(recs);
  const r = verifyAudit(recs.slice(10), cps.slice(0), { publicKey: key.publicKey });
  assert.equal(r.ok, true, summarizeReport(r));
  assert.equal(r.streamChainFrom, 11);
  assert.equal(r.sealedThrough, 30);
});

test("checkpoints interleaved after their last event (as AuditService.Read delivers them) verify the same", async () => {
  const { AuditVerifier } = await import("./verify.js");
  const recs = stored(sessionsEvents(35));
  const cps = seal(recs);
  const run = (list: Checkpoint[]) => {
    const v = new AuditVerifier([], { publicKey: key.publicKey });
    const byLast = new Map(list.map((c) => [c.lastSeq, c]));
    for (const r of recs) {
      v.add(r);
      const cp = byLast.get(r.seq);
      if (cp) v.addCheckpoint(cp);
    }
    return v.finish();
  };
  const honest = run(cps);
  assert.equal(honest.ok, true, summarizeReport(honest));
  assert.equal(honest.sealedThrough, 30);
  const forged = run([cps[0]!, { ...cps[1]!, chainHash: "cd".repeat(32) }, cps[2]!]);
  assert.equal(forged.firstProblem!.kind, "checkpoint-signature");
  assert.ok(forged.problems.some((p) => p.kind === "checkpoint-mismatch" && p.streamSeq === 20));
});

test("a session of 10,000 statements checks out, and one altered statement in it is found", async () => {
  const { SessionScript } = await import("./testing.js");
  const s = new SessionScript("0190abcd-0000-7000-8000-000000010000", Date.parse("2026-02-01T09:00:00Z")).start("bulk");
  for (let i = 1; i <= 10_000; i++) s.allowed(`SELECT ${i}`, 0);
  s.end();
  const recs = stored(s.events);
  const cps = seal(recs, 1000);
  const t0 = performance.now();
  const r = verifyAudit(recs, cps, { publicKey: key.publicKey });
  const ms = performance.now() - t0;
  assert.equal(r.ok, true, summarizeReport(r));
  assert.equal(r.records, 20_003);
  assert.equal(r.sealedThrough, 20_000);
  (recs[12_345]!.event!.data as { sql?: string; rows?: number }).rows = 1e6;
  const bad = verifyAudit(recs, cps, { publicKey: key.publicKey });
  assert.deepEqual([bad.firstProblem!.kind, bad.firstProblem!.streamSeq], ["altered", 12_346]);
  // not an assertion on speed (the machine may be busy): recorded for the report
  console.error(`verify: ${recs.length} events in ${ms.toFixed(0)} ms`);
});

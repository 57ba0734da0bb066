import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestControlPlane } from "../../control-plane/src/testing/test-control-plane.js";
import { publishInterleaved, SessionScript } from "../../control-plane/src/audit/testing.js";
import { publishBatches } from "../../control-plane/src/audit/testing.js";
import { readAudit } from "./audit-read.js";
import { parseTimeFlag } from "./time-flag.js";

test("readAudit follows new records from the end (audit tail) and one session's (replay --follow); needs an admin token", async (t) => {
  const h = await startTestControlPlane(t);
  const dir = mkdtempSync(join(tmpdir(), "sluice-audit-read-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  process.env.SLUICE_CONTEXT = join(dir, "none.json");
  const flags = { server: h.address, token: h.adminToken };
  const before = new SessionScript("0190ffff-0000-7000-8000-00000000000f", Date.parse("2026-02-01T09:00:00Z")).start("early").end();
  await publishInterleaved(h.nc, h.names, [before]);

  const ac = new AbortController();
  const tail: string[] = [];
  const tailing = (async () => {
    for await (const item of readAudit(flags, { fromEnd: true, follow: true }, ac.signal)) {
      for (const ev of item.message?.events ?? []) tail.push(ev.type);
      if (tail.length === 4) ac.abort();
    }
  })();
  const ac2 = new AbortController();
  const later = new SessionScript("0190f1f1-0000-7000-8000-000000000001", Date.parse("2026-02-01T10:00:00Z")).start("late").allowed("SELECT 1", 0).end();
  // one event a message here, so the tail sees the first four before the session ends
  const publish = (evs: typeof later.events) => publishBatches(h.nc, h.names, evs, 1);
  const replayed: string[] = [];
  const replaying = (async () => {
    for await (const item of readAudit(flags, { sessionId: later.sessionId, follow: true }, ac2.signal)) {
      for (const ev of item.message?.events ?? []) replayed.push(ev.type);
      if (replayed.at(-1)?.endsWith("session.ended.v1")) ac2.abort();
    }
  })();
  await new Promise((r) => setTimeout(r, 500)); // let both calls reach the server before publishing
  await publish(later.events.slice(0, 4));
  await new Promise((r) => setTimeout(r, 200)); // the session is live for a moment, then ends
  await publish(later.events.slice(4));
  // unref'd: a pending 20 s timer kept the file's process alive 20 s after its tests had passed
  await Promise.race([Promise.all([tailing, replaying]), new Promise((_, rej) => setTimeout(() => rej(new Error("follow timed out")), 20_000).unref())]);
  assert.deepEqual(tail, ["dev.sluice.session.started.v1", "dev.sluice.session.authenticated.v1", "dev.sluice.statement.allowed.v1", "dev.sluice.statement.completed.v1"]);
  assert.equal(replayed.length, 5);
  assert.equal(replayed.at(-1), "dev.sluice.session.ended.v1");

  // without an admin group: refused with a one-line reason
  const outsider = await h.dev.mint({ sub: "mallory", groups: ["ci"] });
  await assert.rejects(async () => {
    for await (const _ of readAudit({ server: h.address, token: outsider }, {})) void _;
  }, { code: "permission_denied" });
});

test("time flags take ISO times or durations back from now", () => {
  const now = new Date("2026-03-01T12:00:00Z");
  const dur = (s: string) => ({ "2h": 7_200_000, "30m": 1_800_000 })[s]!;
  assert.equal(parseTimeFlag("2h", now, dur), "2026-03-01T10:00:00.000Z");
  assert.equal(parseTimeFlag("2026-02-01T00:00:00+01:00", now, dur), "2026-01-31T23:00:00.000Z");
  assert.equal(parseTimeFlag(undefined, now, dur), undefined);
  assert.throws(() => parseTimeFlag("yesterday", now, dur), /not a time/);
});

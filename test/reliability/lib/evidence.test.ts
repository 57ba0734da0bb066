import test from "node:test";
import assert from "node:assert/strict";
import { GENESIS_HASH, hashEvent, makeEvent, SessionEventType, type CloudEvent } from "@sluice/shared/events";
import { EvidenceFold } from "./evidence.js";

/** a session's chain as a data plane links it */
function chain(session: string, sqls: string[], end = true): CloudEvent[] {
  const out: CloudEvent[] = [];
  let prev = GENESIS_HASH;
  const types = [...sqls.map(() => SessionEventType["statement.allowed"]), ...(end ? [SessionEventType["session.ended"]] : [])];
  types.forEach((type, i) => {
    const ev = makeEvent({ source: "sluice://rel/dp-1", type, subject: session, data: { sql: sqls[i] ?? "" } }) as CloudEvent;
    ev.sluicesessionseq = i + 1;
    ev.sluiceprevhash = prev;
    ev.sluicehash = hashEvent(ev);
    prev = ev.sluicehash;
    out.push(ev);
  });
  return out;
}

test("the fold checks each session's chain as it goes, in stream order, sessions interleaved", () => {
  const a = chain("a", ["INSERT INTO ledger VALUES ('w0-1')", "INSERT INTO ledger VALUES ('w0-2')"]);
  const b = chain("b", ["INSERT INTO ledger VALUES ('w1-1')"], false);
  const fold = new EvidenceFold();
  for (const ev of [a[0]!, b[0]!, a[1]!, a[2]!]) fold.add(ev);
  const r = fold.result();
  assert.equal(r.events, 4);
  assert.equal(r.sessions, 2);
  assert.deepEqual([...r.markers.keys()].sort(), ["w0-1", "w0-2", "w1-1"]);
  assert.equal(r.brokenChains.size, 0);
  assert.equal(r.unended, 1, "b has no session.ended");
  assert.equal(r.duplicateIds, 0);
});

test("an event stored twice, a gap, an altered event and a chain that does not start at 1 are found", () => {
  const a = chain("a", ["SELECT 1", "SELECT 2", "SELECT 3"]);
  const dup = new EvidenceFold();
  for (const ev of [a[0]!, a[1]!, a[1]!, a[2]!]) dup.add(ev);
  assert.equal(dup.result().duplicateIds, 1);
  assert.match(dup.result().brokenChains.get("a") ?? "", /out of order/);

  const gap = new EvidenceFold();
  for (const ev of [a[0]!, a[2]!]) gap.add(ev);
  assert.match(gap.result().brokenChains.get("a") ?? "", /sequence gap/);

  const altered = new EvidenceFold();
  altered.add(a[0]!);
  altered.add({ ...a[1]!, data: { sql: "DROP TABLE ledger" } });
  assert.match(altered.result().brokenChains.get("a") ?? "", /altered/);

  const late = new EvidenceFold();
  late.add(a[1]!);
  assert.match(late.result().brokenChains.get("a") ?? "", /gap/);
});

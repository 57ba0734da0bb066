import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SluiceError } from "@sluice/shared/errors";
import { AuditLanes, type AuditLanesOptions, type LaneEffect, type LaneEvent, type LookupOutcome, type PublishOutcome } from "./audit-lanes.js";

type W = string;
type Publish = Extract<LaneEffect<W>, { do: "publish" }>;
type Lookup = Extract<LaneEffect<W>, { do: "lookup" }>;

const ev = (s: string): LaneEvent => ({ json: JSON.stringify({ s }), bytes: JSON.stringify({ s }).length });

function lanes(o: Partial<AuditLanesOptions> = {}) {
  const core = new AuditLanes<W>({
    durability: "ack", lanes: [{ subject: "sluice.audit.r.n.b1-0", id: "b1-0" }], bufferEvents: 100, publishTimeoutMs: 1000, ackWaitMs: 5000,
    lingerMs: 2, groupWaitMs: 0, maxBatchEvents: 4096, maxBatchBytes: 1 << 20, retryMinMs: 50, retryMaxMs: 400, ...o,
  });
  const settled: Array<{ waiter: W; error?: SluiceError }> = [];
  let effects: Array<Publish | Lookup> = [];
  const drain = () => {
    for (const e of core.take()) {
      if (e.do === "settle") settled.push({ waiter: e.waiter, ...(e.error ? { error: e.error } : {}) });
      else if (e.do !== "log") effects.push(e);
    }
  };
  const step = (f: () => void) => {
    f();
    drain();
  };
  const sent = (): Array<Publish | Lookup> => {
    drain();
    const out = effects;
    effects = [];
    return out;
  };
  return {
    core, settled, step,
    /** the publishes and look-ups so far, and forget them */
    sent,
    /** a gate `name` enqueued at `now` and its lane dispatched: the publish that went out */
    gate(name: string, now = 0): Publish {
      step(() => {
        core.enqueue(0, [ev(name)], "gate", now, name);
        core.tick(now);
      });
      return publishes(sent())[0]!;
    },
  };
}

const publishes = (effects: Array<Publish | Lookup>) => effects.filter((e): e is Publish => e.do === "publish");
const stored = (seq: number, duplicate = false): PublishOutcome => ({ kind: "stored", seq, duplicate });

test("ack: the gates of one turn share one batch, which expects the lane's last message; the next expects this one", () => {
  const l = lanes();
  l.step(() => {
    l.core.enqueue(0, [ev("a1")], "gate", 0, "a");
    l.core.enqueue(0, [ev("b1")], "gate", 0, "b");
  });
  assert.equal(l.core.wakeAt(), 0, "a gate is due at once (the end of the turn)");
  l.step(() => l.core.tick(0));
  const [p] = publishes(l.sent());
  assert.deepEqual([p!.msgId, p!.expectedLastSeq, p!.events], ["b1-0:1", 0, [ev("a1").json, ev("b1").json]]);
  assert.equal(p!.bytes, ev("a1").bytes + ev("b1").bytes + 3, "the JSON array: brackets and a comma");
  l.step(() => l.core.published(p!.token, stored(17), 1));
  assert.deepEqual(l.settled.map((s) => [s.waiter, s.error]), [["a", undefined], ["b", undefined]]);
  const q = l.gate("a2", 2);
  assert.deepEqual([q!.msgId, q!.expectedLastSeq], ["b1-0:2", 17]);
  assert.equal(l.core.stats.messages, 1);
  assert.equal(l.core.stats.published, 2);
});

test("one batch in flight per lane: what queues meanwhile goes next, follow-ups ride with the next gate", () => {
  const l = lanes();
  const first = l.gate("s1");
  l.step(() => {
    l.core.enqueue(0, [ev("c1")], "follow", 0);
    l.core.enqueue(0, [ev("s2")], "gate", 0, "s2");
    l.core.tick(0);
  });
  assert.equal(publishes(l.sent()).length, 0, "nothing new while a batch is in flight");
  l.step(() => l.core.published(first!.token, stored(3), 1));
  assert.ok(l.core.wakeAt() <= 1, "a waiting gate makes the lane due now");
  l.step(() => l.core.tick(1));
  const [second] = publishes(l.sent());
  assert.deepEqual(second!.events, [ev("c1").json, ev("s2").json]);
  assert.equal(second!.expectedLastSeq, 3);
});

test("group commit: after a batch is stored its sessions' next gates wait for each other, at most groupWaitMs", () => {
  const l = lanes({ groupWaitMs: 1 });
  l.step(() => {
    for (const s of ["a", "b", "c"]) l.core.enqueue(0, [ev(s)], "gate", 0, s);
    l.core.tick(0);
  });
  const [p] = publishes(l.sent());
  l.step(() => l.core.published(p!.token, stored(1), 10));
  // two of the three released sessions are back: the lane waits for the third…
  l.step(() => {
    l.core.enqueue(0, [ev("a2")], "gate", 10, "a2");
    l.core.enqueue(0, [ev("b2")], "gate", 10, "b2");
  });
  assert.equal(l.core.wakeAt(), 11);
  // …which comes: due at once, and all three share the batch
  l.step(() => l.core.enqueue(0, [ev("c2")], "gate", 10, "c2"));
  assert.equal(l.core.wakeAt(), 10);
  l.step(() => l.core.tick(10));
  const [q] = publishes(l.sent());
  assert.equal(q!.events.length, 3);
  // a session that does not come back costs the others groupWaitMs at the most
  l.step(() => l.core.published(q!.token, stored(2), 20));
  l.step(() => l.core.enqueue(0, [ev("a3")], "gate", 20, "a3"));
  assert.equal(l.core.wakeAt(), 21);
  l.step(() => l.core.tick(21));
  assert.equal(publishes(l.sent())[0]!.events.length, 1);
  // one busy session alone never waits: its own gate is the one expected
  const solo = lanes({ groupWaitMs: 1 });
  const s1 = solo.gate("s1");
  solo.step(() => solo.core.published(s1.token, stored(1), 5));
  solo.step(() => solo.core.enqueue(0, [ev("s2")], "gate", 5, "s2"));
  assert.equal(solo.core.wakeAt(), 5);
});

test("async: events linger lingerMs for company, then go as one batch", () => {
  const l = lanes({ durability: "async", lingerMs: 5 });
  l.step(() => l.core.enqueue(0, [ev("e1")], "gate", 100, "ignored in async"));
  l.step(() => l.core.enqueue(0, [ev("e2")], "follow", 103));
  assert.equal(l.core.wakeAt(), 105);
  l.step(() => l.core.tick(104));
  assert.equal(publishes(l.sent()).length, 0);
  l.step(() => l.core.tick(105));
  const [p] = publishes(l.sent());
  assert.equal(p!.events.length, 2);
  assert.equal(l.settled.length, 0, "async has no waiters");
});

test("a lost PubAck: the look-up finds the batch stored, so it is done, once, and the lane goes on after it", () => {
  const l = lanes();
  const p = l.gate("x");
  assert.equal(l.core.wakeAt(), 1000, "the publish times out at publishTimeoutMs");
  l.step(() => l.core.tick(1000));
  const [look] = l.sent();
  assert.equal(look!.do, "lookup");
  l.step(() => l.core.looked(look!.token, { kind: "found", seq: 9, msgId: p!.msgId }, 1001));
  assert.deepEqual(l.settled.map((s) => s.waiter), ["x"]);
  assert.equal(l.core.stats.recovered, 1);
  assert.equal(l.core.pending, 0);
  // the ack arrives after all: it belongs to a superseded attempt and changes nothing
  l.step(() => l.core.published(p!.token, stored(9), 1002));
  assert.equal(l.core.stats.messages, 1);
  l.step(() => {
    l.core.enqueue(0, [ev("y")], "gate", 1003, "y");
    l.core.tick(1003);
  });
  assert.equal(publishes(l.sent())[0]!.expectedLastSeq, 9);
});

test("a publish that never reached the stream: the look-up finds the previous message, the same batch goes again", () => {
  const l = lanes();
  const p = l.gate("x");
  l.step(() => l.core.published(p!.token, stored(5), 1));
  const q = l.gate("y", 2);
  l.step(() => l.core.tick(1002));
  const [look] = l.sent();
  l.step(() => l.core.looked(look!.token, { kind: "found", seq: 5, msgId: p!.msgId }, 1003));
  const [again] = publishes(l.sent());
  assert.deepEqual([again!.msgId, again!.expectedLastSeq, again!.events], [q!.msgId, 5, q!.events]);
  assert.notEqual(again!.token, q!.token);
});

test("'wrong last sequence' and a duplicate ack are answers too: the batch was stored by an earlier attempt", () => {
  const l = lanes();
  const p = l.gate("x");
  l.step(() => l.core.published(p!.token, { kind: "wrong_last_sequence" }, 1));
  const [look] = l.sent();
  assert.equal(look!.do, "lookup");
  assert.equal(l.core.stats.state, "up", "not an outage");
  l.step(() => l.core.looked(look!.token, { kind: "found", seq: 4, msgId: p!.msgId }, 2));
  assert.equal(l.settled.length, 1);

  const q = l.gate("y", 3);
  l.step(() => l.core.published(q!.token, stored(6, true), 4));
  assert.equal(l.settled.length, 2);
  assert.equal(l.core.stats.recovered, 2);
});

test("a refused batch backs off, doubling to retryMaxMs, and the same batch goes again; success resets it", () => {
  const l = lanes({ retryMinMs: 50, retryMaxMs: 150 });
  let p = l.gate("x");
  const at: number[] = [];
  let now = 0;
  for (let i = 0; i < 4; i++) {
    l.step(() => l.core.published(p!.token, i % 2 ? { kind: "no_responders" } : { kind: "rejected", code: 10077, description: "maximum messages exceeded" }, now));
    assert.equal(l.core.stats.state, "down");
    now = l.core.wakeAt();
    at.push(now);
    l.step(() => l.core.tick(now));
    [p] = publishes(l.sent());
    assert.equal(p!.msgId, "b1-0:1");
  }
  assert.deepEqual(at, [50, 150, 300, 450]);
  l.step(() => l.core.published(p!.token, stored(1), now));
  assert.equal(l.core.stats.state, "up");
  assert.equal(l.settled.length, 1);
});

test("disconnected: nothing is sent, a batch in flight is looked up first once the connection is back", () => {
  const l = lanes();
  const p = l.gate("x");
  l.step(() => l.core.disconnected(1));
  l.step(() => l.core.enqueue(0, [ev("y")], "follow", 2));
  assert.equal(l.core.wakeAt(), 5000, "only the gate's ack wait is left to time");
  assert.equal(l.core.stats.state, "down");
  l.step(() => l.core.tick(3000));
  assert.equal(l.sent().length, 0);
  l.step(() => l.core.reconnected(3001));
  l.step(() => l.core.tick(3001));
  const [look] = l.sent();
  assert.equal(look!.do, "lookup");
  l.step(() => l.core.looked(look!.token, { kind: "none" }, 3002));
  const [again] = publishes(l.sent());
  assert.deepEqual([again!.msgId, again!.events], [p!.msgId, p!.events]);
});

test("a gate not stored within ackWaitMs is refused; its event stays queued and is stored later", () => {
  const l = lanes({ ackWaitMs: 300 });
  l.step(() => l.core.disconnected(0));
  l.step(() => l.core.enqueue(0, [ev("x")], "gate", 0, "x"));
  l.step(() => l.core.tick(300));
  assert.equal(l.settled.length, 1);
  assert.ok(SluiceError.is(l.settled[0]!.error, "unavailable"));
  assert.match(l.settled[0]!.error!.message, /fail closed/);
  assert.equal(l.core.stats.ackTimeouts, 1);
  assert.equal(l.core.pending, 1);
  l.step(() => {
    l.core.reconnected(400);
    l.core.expedite(400);
    l.core.tick(400);
  });
  const [p] = publishes(l.sent());
  l.step(() => l.core.published(p!.token, stored(1), 401));
  assert.equal(l.settled.length, 1, "a refused gate is not settled a second time");
  assert.equal(l.core.pending, 0);
});

test("admission: new work is refused at bufferEvents, follow-ups have room up to twice that, a closed publisher refuses all", () => {
  const l = lanes({ bufferEvents: 3, durability: "async" });
  for (let i = 0; i < 3; i++) l.core.enqueue(0, [ev(`e${i}`)], "admit", 0);
  assert.throws(() => l.core.enqueue(0, [ev("more")], "admit", 0), (e: unknown) => SluiceError.is(e, "unavailable"));
  assert.throws(() => l.core.assertCapacity(1, "gate"), (e: unknown) => SluiceError.is(e, "unavailable"));
  l.core.enqueue(0, [ev("f1"), ev("f2"), ev("f3")], "follow", 0);
  assert.throws(() => l.core.enqueue(0, [ev("f4")], "follow", 0));
  assert.equal(l.core.stats.refused, 3);
  assert.equal(l.core.pending, 6);
  l.step(() => l.core.close());
  assert.throws(() => l.core.assertCapacity(0, "follow"), /fail closed/);
});

test("a batch stops at maxBatchEvents and at maxBatchBytes; an event larger than the cap still goes alone", () => {
  const l = lanes({ maxBatchEvents: 3, maxBatchBytes: 40, durability: "async" });
  const big: LaneEvent = { json: "x".repeat(60), bytes: 60 };
  l.core.enqueue(0, [ev("1"), ev("2"), ev("3"), ev("4"), big, ev("5")], "follow", 0);
  const sizes: number[] = [];
  for (let seq = 1, now = 10; l.core.pending > 0; seq++, now += 10) {
    l.step(() => l.core.tick(now));
    const [p] = publishes(l.sent());
    sizes.push(p!.events.length);
    assert.ok(p!.events.length === 1 || p!.bytes <= 40);
    l.step(() => l.core.published(p!.token, stored(seq), now));
  }
  assert.deepEqual(sizes, [3, 1, 1, 1]);
});

test("a lane whose last message is not this publisher's is reported and continued after it", () => {
  const l = lanes();
  const p = l.gate("x");
  l.step(() => l.core.published(p!.token, { kind: "wrong_last_sequence" }, 1));
  const [look] = l.sent();
  l.step(() => l.core.looked(look!.token, { kind: "found", seq: 44, msgId: "someone-else:1" }, 2));
  const [again] = publishes(l.sent());
  assert.equal(again!.expectedLastSeq, 44);
  assert.equal(l.core.stats.anomalies, 1);
});

test("lanes are independent: one stalled lane does not hold another", () => {
  const l = lanes({ lanes: [{ subject: "s.0", id: "b-0" }, { subject: "s.1", id: "b-1" }] });
  l.step(() => {
    l.core.enqueue(0, [ev("a")], "gate", 0, "a");
    l.core.enqueue(1, [ev("b")], "gate", 0, "b");
    l.core.tick(0);
  });
  const [pa, pb] = publishes(l.sent());
  assert.deepEqual([pa!.subject, pb!.subject], ["s.0", "s.1"]);
  l.step(() => l.core.published(pb!.token, stored(2), 1));
  l.step(() => {
    l.core.enqueue(1, [ev("b2")], "gate", 2, "b2");
    l.core.tick(2);
  });
  assert.deepEqual(publishes(l.sent()).map((p) => [p.subject, p.expectedLastSeq]), [["s.1", 2]]);
  assert.deepEqual(l.settled.map((s) => s.waiter), ["b"]);
});

/**
 * The stream as JetStream 2.9 keeps it, for the property test: per-subject expected last sequence,
 * msg-id de-duplication within a window that the test can let expire at any moment.
 */
class ModelStream {
  readonly stored: Array<{ seq: number; subject: string; msgId: string; events: readonly string[] }> = [];
  private dedupe = new Map<string, number>();
  publish(p: Publish): PublishOutcome {
    const dup = this.dedupe.get(p.msgId);
    if (dup !== undefined) return { kind: "stored", seq: dup, duplicate: true };
    const last = this.last(p.subject);
    if ((last?.seq ?? 0) !== p.expectedLastSeq) return { kind: "wrong_last_sequence" };
    const seq = this.stored.length + 1;
    this.stored.push({ seq, subject: p.subject, msgId: p.msgId, events: p.events });
    this.dedupe.set(p.msgId, seq);
    return { kind: "stored", seq, duplicate: false };
  }
  /** `stale`: as a replica that has not seen the newest message yet answers (direct get may read any replica) */
  lookup(subject: string, stale = false): LookupOutcome {
    const last = this.last(subject, stale ? this.stored.length - 1 : this.stored.length);
    return last ? { kind: "found", seq: last.seq, msgId: last.msgId } : { kind: "none" };
  }
  expireDedupe(): void {
    this.dedupe = new Map();
  }
  private last(subject: string, upTo = this.stored.length) {
    for (let i = upTo - 1; i >= 0; i--) if (this.stored[i]!.subject === subject) return this.stored[i];
    return undefined;
  }
}

type Fate = "deliver" | "lose-ack" | "lose-request" | "delay" | "fail-lookup" | "stale-lookup";

test("whatever happens to requests and answers, the lane on the stream holds every event once, in order", () => {
  const seen = { recovered: 0, lookups: 0 };
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom<Fate>("deliver", "deliver", "deliver", "lose-ack", "lose-request", "delay", "fail-lookup", "stale-lookup"), { minLength: 1, maxLength: 60 }),
      fc.array(fc.constantFrom("event", "gate", "disconnect", "reconnect", "expire-dedupe", "time"), { minLength: 5, maxLength: 80 }),
      (fates, script) => {
        const l = lanes({ bufferEvents: 10_000, ackWaitMs: 1e12, groupWaitMs: 1 });
        const stream = new ModelStream();
        let now = 0;
        let n = 0;
        let fi = 0;
        const fate = (): Fate => fates[fi++ % fates.length]!;
        const delayed: Array<() => void> = [];
        const enqueued: string[] = [];
        const run = () => {
          for (const e of l.sent()) {
            const f = fate();
            const answer = e.do === "publish"
              ? () => {
                if (f === "lose-request") return;
                const o = stream.publish(e);
                if (f !== "lose-ack") l.step(() => l.core.published(e.token, o, now));
              }
              : () => {
                if (f === "lose-request" || f === "lose-ack") return;
                l.step(() => l.core.looked(e.token, f === "fail-lookup" ? { kind: "failed", reason: "timeout" } : stream.lookup(e.subject, f === "stale-lookup"), now));
              };
            if (f === "delay") delayed.push(answer);
            else answer();
          }
        };
        for (const op of script) {
          switch (op) {
            case "event":
            case "gate": {
              const json = JSON.stringify({ n: ++n });
              enqueued.push(json);
              l.step(() => l.core.enqueue(0, [{ json, bytes: json.length }], op === "gate" ? "gate" : "follow", now, `w${n}`));
              break;
            }
            case "disconnect": l.step(() => l.core.disconnected(now)); break;
            case "reconnect": l.step(() => l.core.reconnected(now)); break;
            case "expire-dedupe": stream.expireDedupe(); break;
            case "time": {
              for (const d of delayed.splice(0)) d();
              now = Math.max(now, Math.min(l.core.wakeAt(), now + 10_000));
              l.step(() => l.core.tick(now));
            }
          }
          run();
        }
        // then the network heals: everything is answered, until nothing is pending
        l.step(() => l.core.reconnected(now));
        for (let i = 0; i < 10_000 && l.core.pending > 0; i++) {
          for (const d of delayed.splice(0)) d();
          now = Math.max(now + 1, Math.min(l.core.wakeAt(), now + 10_000));
          l.step(() => l.core.tick(now));
          for (const e of l.sent()) {
            if (e.do === "publish") { const o = stream.publish(e); l.step(() => l.core.published(e.token, o, now)); }
            else l.step(() => l.core.looked(e.token, stream.lookup(e.subject), now));
          }
        }
        assert.equal(l.core.pending, 0, "everything got stored");
        seen.recovered += l.core.stats.recovered;
        seen.lookups += l.core.stats.lookups;
        assert.deepEqual(stream.stored.flatMap((m) => m.events), enqueued, "every event once, in order, no gap");
        assert.ok(l.settled.every((s) => !s.error), "no gate was refused (the ack wait is long)");
        assert.equal(l.settled.length, enqueued.filter((_, i) => script.filter((o) => o === "event" || o === "gate")[i] === "gate").length);
      },
    ),
    { numRuns: 400 },
  );
  // the runs did go through the hard cases: lost acks found stored by a look-up
  assert.ok(seen.recovered > 50 && seen.lookups > 100, JSON.stringify(seen));
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { HandshakeLimiter, isClientFailure, sourceKey } from "./handshake-limiter.js";

function limiter(o: ConstructorParameters<typeof HandshakeLimiter>[0]) {
  let now = 0;
  const l = new HandshakeLimiter(o, () => now);
  return { l, advance: (ms: number) => void (now += ms) };
}

test("a source that used up its failed handshakes is refused with when to try again, and regains them over time", () => {
  const { l, advance } = limiter({ burst: 3, perSecond: 0.5 });
  for (let i = 0; i < 3; i++) {
    assert.equal(l.admit("10.0.0.1"), undefined);
    l.release("10.0.0.1"); // as the connection does when it refuses
    assert.equal(l.failed("10.0.0.1", "28P01", "token rejected"), true);
  }
  assert.equal(l.admit("10.0.0.1"), "too many failed connection attempts from this address; try again in 2 s");
  assert.equal(l.admit("10.0.0.2"), undefined, "another source is not affected");
  advance(1000);
  assert.match(l.admit("10.0.0.1")!, /in 1 s/);
  advance(1000);
  assert.equal(l.admit("10.0.0.1"), undefined, "one failure regained after 2 s");
  assert.equal(l.stats.limited, 2);
  assert.equal(l.stats.failed, 3);
});

test("successes and the node's own failures take no token", () => {
  const { l } = limiter({ burst: 1 });
  for (const [sqlstate, reason] of [["57P03", "the data plane has no policy snapshot yet"], ["08006", "cannot connect to the upstream of \"app\""], ["XX000", "internal"], ["0A000", "pinned"]] as const) {
    assert.equal(l.failed("10.0.0.1", sqlstate, reason), true, "recorded");
  }
  assert.equal(l.admit("10.0.0.1"), undefined);
  assert.equal(l.stats.failed, 0);
  assert.equal(isClientFailure("08006", "authentication timed out"), true);
  assert.equal(isClientFailure("28000", "no policy allows \"x\" to connect to \"app\""), true);
  assert.equal(isClientFailure("3D000", "database \"x\" does not exist"), true);
});

test("node-wide, only so many failures are recorded; the rest are still refused, and counted", () => {
  const { l, advance } = limiter({ burst: 1000, recordBurst: 5, recordPerSecond: 2 });
  const recorded = Array.from({ length: 20 }, (_, i) => l.failed(`10.0.${i}.1`, "28P01", "token rejected")).filter(Boolean).length;
  assert.equal(recorded, 5);
  assert.equal(l.stats.unrecorded, 15);
  advance(1000);
  assert.equal([l.failed("10.9.9.9", "28P01", "x"), l.failed("10.9.9.9", "28P01", "x"), l.failed("10.9.9.9", "28P01", "x")].filter(Boolean).length, 2);
});

test("sources: IPv4 as is (also IPv4-mapped), IPv6 by /64; the table stays bounded", () => {
  assert.equal(sourceKey("192.0.2.7"), "192.0.2.7");
  assert.equal(sourceKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(sourceKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:0DB8:0001:0002:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(sourceKey("::1"), "0:0:0:0::/64");
  const { l } = limiter({ burst: 2, maxSources: 100 });
  for (let i = 0; i < 1000; i++) l.failed(`10.1.${i >> 8}.${i & 255}`, "28P01", "x");
  assert.ok(l.size <= 100, `${l.size} sources remembered`);
  // an address shares its /64 with its neighbours
  const { l: six } = limiter({ burst: 1 });
  six.failed("2001:db8:1:2::1", "28P01", "x");
  assert.ok(six.admit("2001:db8:1:2::99"));
});

test("a source told 53300 quietAfter times is closed at accept until it regains a token", () => {
  const { l, advance } = limiter({ burst: 1, perSecond: 1, quietAfter: 2 });
  assert.equal(l.drop("10.0.0.1"), false, "unknown sources are never dropped");
  l.failed("10.0.0.1", "28P01", "x");
  assert.equal(l.drop("10.0.0.1"), false);
  assert.ok(l.admit("10.0.0.1"));
  assert.equal(l.drop("10.0.0.1"), false);
  assert.ok(l.admit("10.0.0.1"));
  assert.equal(l.drop("10.0.0.1"), true, "told twice: now closed unanswered");
  assert.equal(l.drop("10.0.0.2"), false);
  advance(1000);
  assert.equal(l.drop("10.0.0.1"), false, "a regained token: it may try (and is told again if it fails)");
  assert.equal(l.admit("10.0.0.1"), undefined);
  assert.equal(l.stats.dropped, 1);
});

test("a failing source's handshakes in flight hold its tokens: parallel attempts cannot pass the budget", () => {
  const { l, advance } = limiter({ burst: 3, perSecond: 1 });
  const a = "10.0.0.1";
  // a first wave from a source with no failures is not counted against it (a host opening many connections at once)
  for (let i = 0; i < 10; i++) assert.equal(l.admit(a), undefined);
  for (let i = 0; i < 10; i++) {
    l.release(a);
    l.failed(a, "28P01", "token rejected");
  }
  // from now on it has been failing: one regained token lets one handshake in at a time, not every one in flight
  advance(1000);
  assert.equal(l.admit(a), undefined, "the regained token");
  for (let i = 0; i < 5; i++) assert.match(l.admit(a)!, /^too many failed connection attempts from this address; try again in 1 s$/);
  l.release(a);
  l.failed(a, "28P01", "token rejected");
  assert.ok(l.admit(a), "spent");
  // with two tokens back, two at once, and a success returns its reservation without giving a token back
  advance(2000);
  assert.equal(l.admit(a), undefined);
  assert.equal(l.admit(a), undefined);
  assert.ok(l.admit(a), "both tokens are held by the two in flight");
  l.release(a); // authenticated
  assert.equal(l.admit(a), undefined, "its reservation is free again");
  assert.equal(l.stats.failed, 11);
});

test("a source with a full bucket is never refused for its parallelism", () => {
  const { l, advance } = limiter({ burst: 2, perSecond: 1 });
  const a = "10.0.0.2";
  l.failed(a, "28P01", "x");
  advance(1000); // full again
  for (let i = 0; i < 50; i++) assert.equal(l.admit(a), undefined);
  for (let i = 0; i < 50; i++) l.release(a);
  assert.equal(l.stats.limited, 0);
});

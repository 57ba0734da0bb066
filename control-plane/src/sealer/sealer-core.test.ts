import { test } from "node:test";
import assert from "node:assert/strict";
import { HashChain, makeEvent } from "@sluice/shared/events";
import { CHECKPOINT_GENESIS, checkpointHash, checkpointSignatureValid, signCheckpoint } from "./checkpoint.js";
import { SealerCore, START_OF_STREAM, positionAfter } from "./sealer-core.js";
import { generateSigningKey } from "./signing-key.js";
import { STREAM_GENESIS, eventDigest, streamChainStep } from "./stream-chain.js";
import { decideLease, leaseStillHeld } from "./lease.js";

const key = generateSigningKey();
const opts = (everyEvents: number, everyMs = 60_000) => ({
  stream: "SLUICE_AUDIT",
  keyId: key.keyId,
  sign: (u: Parameters<typeof signCheckpoint>[0]) => signCheckpoint(u, key.privateKey),
  everyEvents,
  everyMs,
});

function digests(n: number): string[] {
  const chain = new HashChain();
  return Array.from({ length: n }, (_, i) =>
    eventDigest(chain.link(makeEvent({ source: "sluice://r/n", type: "dev.sluice.test.v1", subject: "s", data: { i }, time: new Date(0) }))),
  );
}

test("checkpoints cover contiguous ranges, link to each other and carry the chain head", () => {
  const ds = digests(25);
  const core = new SealerCore(opts(10), START_OF_STREAM, 0);
  const cps = [];
  for (let i = 0; i < ds.length; i++) {
    core.add(i + 1, ds[i]!);
    if (core.due(0)) cps.push(core.cut(new Date(0))!);
  }
  assert.equal(cps.length, 2);
  assert.deepEqual(cps.map((c) => [c.firstSeq, c.lastSeq, c.count]), [[1, 10, 10], [11, 20, 10]]);
  assert.equal(cps[0]!.prevCheckpointHash, CHECKPOINT_GENESIS);
  assert.equal(cps[1]!.prevCheckpointHash, checkpointHash(cps[0]!));
  let h = STREAM_GENESIS;
  for (let i = 0; i < 20; i++) h = streamChainStep(h, i + 1, ds[i]!);
  assert.equal(cps[1]!.chainHash, h);
  for (const c of cps) assert.ok(checkpointSignatureValid(c, key.publicKey));
  assert.equal(core.pending, 5);
});

test("time cuts a checkpoint for a partial batch, never an empty one", () => {
  const core = new SealerCore(opts(1000, 5_000), START_OF_STREAM, 0);
  assert.equal(core.due(10_000), false);
  core.add(1, digests(1)[0]!);
  assert.equal(core.due(4_000), false);
  assert.equal(core.due(5_000), true);
  assert.equal(core.cut(new Date(5_000))!.count, 1);
  assert.equal(core.cut(new Date(6_000)), undefined);
});

test("resuming from a checkpoint yields the same chain as sealing straight through", () => {
  const ds = digests(30);
  const straight = new SealerCore(opts(10), START_OF_STREAM, 0);
  const cps = [];
  for (let i = 0; i < 30; i++) {
    straight.add(i + 1, ds[i]!);
    if (straight.due(0)) cps.push(straight.cut(new Date(0))!);
  }
  const resumed = new SealerCore(opts(10), positionAfter(cps[1]!), 0);
  assert.equal(resumed.nextSeq, 21);
  for (let i = 20; i < 30; i++) resumed.add(i + 1, ds[i]!);
  assert.deepEqual(resumed.cut(new Date(0)), cps[2]);
});

test("a gap in stream sequences stops the core", () => {
  const core = new SealerCore(opts(10), START_OF_STREAM, 0);
  core.add(1, digests(1)[0]!);
  assert.throws(() => core.add(3, digests(1)[0]!), /does not follow 1/);
});

test("a checkpoint altered after signing, or signed by another key, does not verify", () => {
  const core = new SealerCore(opts(1), START_OF_STREAM, 0);
  core.add(1, digests(1)[0]!);
  const cp = core.cut(new Date(0))!;
  assert.ok(checkpointSignatureValid(cp, key.publicKey));
  assert.equal(checkpointSignatureValid({ ...cp, lastSeq: 2 }, key.publicKey), false);
  assert.equal(checkpointSignatureValid(cp, generateSigningKey().publicKey), false);
  assert.equal(checkpointSignatureValid({ ...cp, signature: "garbage" }, key.publicKey), false);
});

test("lease: create when absent, renew own, take over an expired one, wait for a live one", () => {
  assert.deepEqual(decideLease(undefined, "a", 1000, 300), { do: "create", record: { holder: "a", expiresAt: 1300 } });
  assert.equal(decideLease({ record: undefined, revision: 7 }, "a", 1000, 300).do, "update");
  assert.deepEqual(decideLease({ record: { holder: "a", expiresAt: 1100 }, revision: 4 }, "a", 1000, 300),
    { do: "update", revision: 4, record: { holder: "a", expiresAt: 1300 } });
  assert.deepEqual(decideLease({ record: { holder: "b", expiresAt: 900 }, revision: 5 }, "a", 1000, 300),
    { do: "update", revision: 5, record: { holder: "a", expiresAt: 1300 } });
  const w = decideLease({ record: { holder: "b", expiresAt: 1200 }, revision: 5 }, "a", 1000, 300);
  assert.equal(w.do, "wait");
  assert.ok(w.do === "wait" && w.retryInMs <= 200 && w.holder === "b");
  assert.equal(leaseStillHeld(1000, 1100, 300), true);
  assert.equal(leaseStillHeld(1000, 1260, 300), false);
});

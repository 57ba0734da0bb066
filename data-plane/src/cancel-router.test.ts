import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { decodeCancelKey, encodeCancelKey, startNatsCancelRouter, type LocalCancelKey } from "./cancel-router.js";

test("a cancel for another node's key reaches that node over NATS, and only that node", async (t) => {
  const prefix = "t" + Math.random().toString(36).slice(2, 8);
  const nc1 = await connect({ servers: "nats://127.0.0.1:4222" });
  const nc2 = await connect({ servers: "nats://127.0.0.1:4222" });
  t.after(() => Promise.all([nc1.close(), nc2.close()]));
  const got1: LocalCancelKey[] = [];
  const got2: LocalCancelKey[] = [];
  let resolve2!: () => void;
  const arrived2 = new Promise<void>((r) => (resolve2 = r));
  const r1 = startNatsCancelRouter({ nc: nc1, prefix, nodeId: 1, cancelLocal: (k) => void got1.push(k) });
  const r2 = startNatsCancelRouter({
    nc: nc2, prefix, nodeId: 2,
    cancelLocal: (k) => {
      got2.push(k);
      resolve2();
    },
  });
  t.after(() => Promise.all([r1.stop(), r2.stop()]));
  await Promise.all([r1.ready(), r2.ready()]);

  await r1.routeCancel(2, { pid: 4242, secret: -123456789 });
  await arrived2;
  assert.deepEqual(got2, [{ pid: 4242, secret: -123456789 }]);
  assert.deepEqual(got1, []);

  // a key of the node itself is handled locally, without a round trip
  await r1.routeCancel(1, { pid: 7, secret: 8 });
  assert.deepEqual(got1, [{ pid: 7, secret: 8 }]);
});

test("cancel keys round-trip through their 8-byte encoding; other sizes are refused", () => {
  const k = { pid: 2147483647, secret: -2147483648 };
  assert.deepEqual(decodeCancelKey(encodeCancelKey(k)), k);
  assert.equal(decodeCancelKey(new Uint8Array(7)), undefined);
});

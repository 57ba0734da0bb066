/**
 * The event store's aggregate read against real JetStream (its own prefix): events are read one
 * stream-message request each and kept between reads; a read after appends fetches the new ones;
 * a stream that was deleted and made again (same sequences, other events) is read whole, never
 * answered from what was kept; an aggregate's history is never mixed with another's.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { deleteAll, ensureControlStream, natsNames } from "@sluice/shared/nats";
import { uuidv7, type CloudEvent } from "@sluice/shared/events";
import { JetStreamEventStore, type StoredEvent } from "./jetstream-event-store.js";
import { NATS_URL, randomPrefix } from "../testing/test-control-plane.js";

type Noted = { type: "Noted"; n: number };

async function appendAll(store: JetStreamEventStore, id: string, ns: number[]): Promise<void> {
  for (const n of ns) {
    const { events, lastStreamSeq } = await store.read<Noted>("thing", id);
    await store.append<Noted>("thing", id, { type: "Noted", n }, { expectedLastStreamSeq: lastStreamSeq, id: uuidv7(), time: new Date(), previous: events.at(-1)?.cloudEvent as CloudEvent | undefined });
  }
}

const ns = (events: StoredEvent<Noted>[]) => events.map((e) => e.event.n);

test("aggregate reads: kept between reads, extended by new events, read whole after the stream was made again", async (t) => {
  const prefix = randomPrefix();
  const names = natsNames(prefix);
  const nc = await connect({ servers: NATS_URL });
  t.after(async () => {
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
  });
  await ensureControlStream(nc, names, { storage: "memory" });
  const store = new JetStreamEventStore(nc, names);

  assert.deepEqual(await store.read("thing", "a"), { events: [], lastStreamSeq: 0 });
  await appendAll(store, "a", [1, 2]);
  await appendAll(store, "b", [10]);
  await appendAll(store, "a", [3]);
  const a = await store.read<Noted>("thing", "a");
  assert.deepEqual(ns(a.events), [1, 2, 3]);
  assert.deepEqual(a.events.map((e) => e.streamSeq), [1, 2, 4]);
  assert.equal(a.lastStreamSeq, 4);
  assert.deepEqual(ns((await store.read<Noted>("thing", "b")).events), [10]);
  // the same read again (from what was kept) is equal, and a caller's changes to it stay its own
  a.events.pop();
  assert.deepEqual(ns((await store.read<Noted>("thing", "a")).events), [1, 2, 3]);

  // another store appends: this one's next read fetches only what is new, and has all of it
  await appendAll(new JetStreamEventStore(nc, names), "a", [4]);
  assert.deepEqual(ns((await store.read<Noted>("thing", "a")).events), [1, 2, 3, 4]);

  // the stream is deleted and made again: the same sequences now hold other events
  await deleteAll(nc, prefix);
  await ensureControlStream(nc, names, { storage: "memory" });
  const other = new JetStreamEventStore(nc, names);
  await appendAll(other, "x", [0, 0, 0]);
  await appendAll(other, "a", [7, 8]); // sequences 4 and 5: 5 was "a"'s last before, another event then
  assert.deepEqual(ns((await store.read<Noted>("thing", "a")).events), [7, 8]);
  await deleteAll(nc, prefix);
  await ensureControlStream(nc, names, { storage: "memory" });
  await appendAll(other, "x", [0, 0, 0, 0, 0]);
  await appendAll(other, "a", [9]); // sequence 6, after where "a" ended: its hash chain does not lead on from 8
  assert.deepEqual(ns((await store.read<Noted>("thing", "a")).events), [9]);
});

/**
 * The load → decide → append loop against real JetStream, with a competing writer injected exactly
 * between a command's load and its append, so the conflict path is exercised deterministically.
 */
import test, { type TestContext } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { parseBundle } from "@sluice/shared/policy";
import { createLogger } from "@sluice/shared/logging";
import { SluiceError } from "@sluice/shared/errors";
import { deleteAll, ensureControlStream, natsNames } from "@sluice/shared/nats";
import { uuidv7 } from "@sluice/shared/events";
import { JetStreamEventStore } from "../infra/jetstream-event-store.js";
import { PolicyApp } from "./policy-app.js";
import { NATS_URL, randomPrefix } from "../testing/test-control-plane.js";

const actor = { subject: "alice", issuer: "dev", groups: ["sluice-admins"] };
const doc = (policy: string) => `issuers:
  - name: dev
    issuer: http://127.0.0.1/dev
    audience: sluice
    jwksUrl: http://127.0.0.1/dev/jwks
    algorithms: [ES256]
    groups: [{ claim: groups }]
groups: [ci]
resources:
  - name: orders
    upstream: { host: 127.0.0.1, port: 5432, database: orders, user: svc, password: env:PW }
policies:
  - name: ${policy}
    groups: [ci]
    resources: [orders]
    allow: [read]
`;

async function setup(t: TestContext) {
  const prefix = randomPrefix();
  const names = natsNames(prefix);
  const nc = await connect({ servers: NATS_URL });
  t.after(async () => {
    await deleteAll(nc, prefix);
    await nc.close();
  });
  await ensureControlStream(nc, names, { storage: "memory" });
  const logger = createLogger({ level: "silent" });
  const store = new JetStreamEventStore(nc, names);
  const other = new PolicyApp({ store, parse: parseBundle, logger });
  /** a store whose next `append` is preceded by a competing apply from `other` */
  let competeTimes = 0;
  let n = 0;
  const racy = Object.create(store) as JetStreamEventStore;
  racy.append = async (...args: Parameters<JetStreamEventStore["append"]>) => {
    if (competeTimes > 0) {
      competeTimes--;
      await other.apply({ text: doc(`competitor${n++}`), sourcePath: "other.yaml", expectedRevision: 0, actor });
    }
    return store.append(...args);
  };
  const app = new PolicyApp({ store: racy, parse: parseBundle, logger, maxAttempts: 3 });
  return { app, store, compete: (k: number) => (competeTimes = k) };
}

test("a conflict is retried: with revision 0 the command lands on top of the competitor", async (t) => {
  const { app, compete } = await setup(t);
  await app.apply({ text: doc("first"), sourcePath: "p.yaml", expectedRevision: 0, actor });
  compete(1);
  const r = await app.apply({ text: doc("mine"), sourcePath: "p.yaml", expectedRevision: 0, actor });
  assert.equal(r.revision, 3, "revision 2 went to the competitor, the retry made 3");
  const hist = await app.history();
  assert.deepEqual(hist.map((h) => h.bundle.policies[0]!.name), ["first", "competitor0", "mine"]);
});

test("a conflict with a named revision ends ABORTED with a clear message after reloading", async (t) => {
  const { app, compete } = await setup(t);
  await app.apply({ text: doc("first"), sourcePath: "p.yaml", expectedRevision: 0, actor });
  compete(1);
  await assert.rejects(app.apply({ text: doc("mine"), sourcePath: "p.yaml", expectedRevision: 1, actor }), (e: unknown) => {
    assert.ok(SluiceError.is(e, "aborted"));
    assert.equal(e.message, "policy changed since revision 1 (now 2); re-run with the current revision");
    return true;
  });
  assert.equal((await app.history()).length, 2);
});

test("endless conflicts give up after maxAttempts with ABORTED", async (t) => {
  const { app, compete } = await setup(t);
  compete(10);
  await assert.rejects(app.apply({ text: doc("mine"), sourcePath: "p.yaml", expectedRevision: 0, actor, commandId: uuidv7() }), (e: unknown) => {
    assert.ok(SluiceError.is(e, "aborted"));
    assert.match(e.message, /changed concurrently 3 times/);
    return true;
  });
});

test("a command id must be a UUID; a named revision on an empty aggregate is ABORTED", async (t) => {
  const { app } = await setup(t);
  // parses fine, but the command id is not a UUID
  await assert.rejects(app.apply({ text: doc("x"), sourcePath: "p.yaml", expectedRevision: 0, actor, commandId: "nope" }), /command id must be a UUID/);
  // a stale revision on an empty aggregate
  await assert.rejects(app.apply({ text: doc("x"), sourcePath: "p.yaml", expectedRevision: 4, actor }), /policy changed since revision 4 \(now 0\)/);
});

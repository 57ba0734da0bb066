/**
 * The least-privilege permission model (contract: NATS layout), proven with real connections to a
 * real nats-server in operator mode with the sluice account (nats-auth.ts): every role user is
 * issued from its role's scoped signing key, so these users get exactly what the server templates.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createNatsAuth, credsIdentity, ensureAll, issueWithRoleSigner, kvStreamName, natsNames, type NatsAuth, type NatsRole } from "@sluice/shared/nats";
import { nodeNumberFromId } from "@sluice/data-plane";
import { startNatsCluster } from "../lib/nats-cluster.js";

const names = natsNames("");

interface Who {
  role: NatsRole;
  name: string;
  region?: string;
  node?: string;
}

async function connectAs(auth: NatsAuth, url: string, who: Who): Promise<{ nc: NatsConnection; errors: string[] }> {
  const creds = await auth.issueUser({ ...who, cancel: who.node ? nodeNumberFromId(who.node) : undefined });
  const inboxPrefix =
    who.role === "data-plane" ? names.dataPlaneInbox(who.region!, who.node!)
    : who.role === "control-plane" ? names.controlPlaneInbox(who.name)
    : who.role === "auditor" ? names.auditorInbox(who.name)
    : names.fleetReaderInbox(who.name);
  const nc = await connect({ servers: url, authenticator: credsAuthenticator(new TextEncoder().encode(creds)), inboxPrefix, name: who.name });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message ?? s));
  })();
  return { nc, errors };
}

/** A publish (plain, no reply) the server refuses shows up as an async permissions error. */
async function deniedPublish(c: { nc: NatsConnection; errors: string[] }, subject: string): Promise<boolean> {
  const before = c.errors.length;
  c.nc.publish(subject, "x");
  await c.nc.flush();
  for (let i = 0; i < 40 && c.errors.length === before; i++) await new Promise((r) => setTimeout(r, 25));
  return c.errors.slice(before).some((e) => /permissions violation/i.test(e) && e.includes(subject));
}

test("least privilege: data plane, control plane and auditor users get exactly their roles", { timeout: 60_000 }, async (t) => {
  const auth = await createNatsAuth(names);
  const cluster = await startNatsCluster(t, { clusters: [{ name: "eu", size: 1 }], authConfig: auth.serverConfig() });
  const url = cluster.urls();

  const cp = await connectAs(auth, url, { role: "control-plane", name: "cp-1" });
  await cluster.waitForJetStream(undefined, { authenticator: credsAuthenticator(new TextEncoder().encode(await auth.issueUser({ role: "control-plane", name: "cp-0" }))), inboxPrefix: names.controlPlaneInbox("cp-0") });
  t.after(() => cp.nc.close());
  const res = await ensureAll(cp.nc, names, { storage: "memory" });
  await res.snapshots.put("policy", JSON.stringify({ revision: 1 }));
  const cpJs = jetstream(cp.nc);
  await cpJs.publish(names.controlSubject("approval", "a1"), "{}");

  const dp = await connectAs(auth, url, { role: "data-plane", name: "dp-1", region: "eu", node: "dp-1" });
  t.after(() => dp.nc.close());
  const js = jetstream(dp.nc);

  // its own audit lanes: stored, and their last message can be looked up (after an uncertain publish)
  const ack = await js.publish(names.auditSubject("eu", "dp-1", "lane-1"), "[]");
  assert.equal(ack.stream, names.auditStream);
  const djsm = await jetstreamManager(dp.nc, { checkAPI: false });
  assert.equal((await djsm.direct.getMessage(names.auditStream, { last_by_subj: names.auditSubject("eu", "dp-1", "lane-1") }))?.seq, ack.seq);
  // ...but not another node's
  await assert.rejects(djsm.direct.getMessage(names.auditStream, { last_by_subj: names.auditSubject("eu", "dp-2", "lane-1") }));
  // another node's lanes, another region, the control stream, the checkpoints: refused
  for (const subject of [
    names.auditSubject("eu", "dp-2", "lane-1"),
    names.auditSubject("us", "dp-1", "lane-1"),
    names.controlSubject("policy", "bundle"),
    names.checkpointSubject(names.auditStream),
    `$KV.${names.snapshotBucket}.policy`,
    `$KV.${names.fleetBucket}.dp-2`,
  ]) {
    assert.ok(await deniedPublish(dp, subject), `data plane must not publish to ${subject}`);
    await assert.rejects(js.publish(subject, "x", { timeout: 1500 }), `js.publish to ${subject} must fail`);
  }
  // its own fleet key
  const fleet = await new Kvm(dp.nc).open(names.fleetBucket);
  await fleet.put("dp-1", "{}");
  // the snapshot bucket: read and watch
  const snaps = await new Kvm(dp.nc).open(names.snapshotBucket);
  assert.equal((await snaps.get("policy"))?.json<{ revision: number }>().revision, 1);
  const w = await snaps.watch({ key: "policy" });
  for await (const e of w) {
    assert.equal(e.key, "policy");
    break;
  }
  // approval decisions: an ordered consumer filtered to one approval subject
  const oc = await js.consumers.get(names.controlStream, { filter_subjects: names.controlSubject("approval", "a1"), deliver_policy: DeliverPolicy.All });
  const first = await oc.next({ expires: 5000 });
  assert.equal(first?.subject, names.controlSubject("approval", "a1"));
  // ...but not a consumer over the policy events
  await assert.rejects(js.consumers.get(names.controlStream, { filter_subjects: names.controlSubject("policy", "bundle") }).then((c) => c.next({ expires: 1000 })));

  // nothing destructive, no management
  const jsm = await jetstreamManager(dp.nc, { checkAPI: false });
  await assert.rejects(jsm.streams.delete(names.auditStream));
  await assert.rejects(jsm.streams.purge(names.auditStream));
  await assert.rejects(jsm.streams.deleteMessage(names.auditStream, ack.seq));
  await assert.rejects(jsm.streams.add({ name: "EVIL", subjects: ["evil.>"] }));
  await assert.rejects(jsm.streams.update(names.auditStream, { max_msgs: 1 }));
  await assert.rejects(jsm.consumers.add(names.auditStream, { durable_name: "steal", ack_policy: AckPolicy.Explicit }));
  const projector = await cpJs.jetstreamManager().then((m) => m.consumers.add(names.controlStream, { durable_name: "projector", ack_policy: AckPolicy.Explicit }));
  await assert.rejects(jsm.consumers.delete(names.controlStream, projector.name));
  await assert.rejects(jsm.consumers.info(names.auditStream, "anything"));
  // no eavesdropping on other inboxes or streams
  const before = dp.errors.length;
  dp.nc.subscribe("_INBOX.>");
  dp.nc.subscribe(names.auditAll);
  dp.nc.subscribe(names.cancelSubject(String(nodeNumberFromId("dp-2"))));
  await dp.nc.flush();
  for (let i = 0; i < 40 && dp.errors.length < before + 3; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(dp.errors.slice(before).filter((e) => /permissions violation for subscription/i.test(e)).length, 3, dp.errors.slice(before).join("; "));

  // auditor: reads the evidence, publishes nothing
  const au = await connectAs(auth, url, { role: "auditor", name: "acme-audit" });
  t.after(() => au.nc.close());
  const ajs = jetstream(au.nc);
  const ac = await ajs.consumers.get(names.auditStream, { deliver_policy: DeliverPolicy.All });
  assert.equal((await ac.next({ expires: 5000 }))?.subject, names.auditSubject("eu", "dp-1", "lane-1"));
  for (const subject of [names.auditSubject("eu", "dp-1", "lane-1"), names.controlSubject("policy", "bundle"), names.checkpointSubject(names.auditStream), "anything.at.all"]) {
    assert.ok(await deniedPublish(au, subject), `auditor must not publish to ${subject}`);
  }
  const ajsm = await jetstreamManager(au.nc, { checkAPI: false });
  await assert.rejects(ajsm.streams.purge(names.auditStream));
  await assert.rejects(ajsm.streams.info(names.controlStream));
  await assert.rejects(ajs.consumers.get(names.controlStream).then((c) => c.next({ expires: 1000 })));
  await assert.rejects(new Kvm(au.nc).open(names.snapshotBucket).then((kv) => kv.get("policy")));

  // control plane: owns its streams, but cannot forge audit evidence or destroy anything
  assert.ok(await deniedPublish(cp, names.auditSubject("eu", "dp-1", "lane-1")));
  const cjsm = await jetstreamManager(cp.nc);
  await assert.rejects(cjsm.streams.delete(names.auditStream));
  await assert.rejects(cjsm.streams.purge(kvStreamName(names.snapshotBucket)));

  // a node that minted its own user from the data-plane role key alone gets the same template
  const selfMinted = await issueWithRoleSigner(auth.roleSigner("data-plane"), { name: "dp-3", region: "eu", node: "dp-3", cancel: nodeNumberFromId("dp-3") });
  const dp3 = await connect({ servers: url, authenticator: credsAuthenticator(new TextEncoder().encode(selfMinted)), inboxPrefix: names.dataPlaneInbox("eu", "dp-3") });
  t.after(() => dp3.close());
  assert.equal((await jetstream(dp3).publish(names.auditSubject("eu", "dp-3", "lane-1"), "[]")).stream, names.auditStream);
  await assert.rejects(jetstream(dp3).publish(names.auditSubject("eu", "dp-1", "lane-1"), "[]", { timeout: 1500 }));
  assert.deepEqual(credsIdentity(selfMinted), { name: "dp-3", role: "data-plane", region: "eu", node: "dp-3" });

  // fleet reader: the fleet bucket only
  const fr = await connectAs(auth, url, { role: "fleet-reader", name: "pipeline" });
  t.after(() => fr.nc.close());
  const ffleet = await new Kvm(fr.nc).open(names.fleetBucket);
  assert.equal((await ffleet.get("dp-1"))?.string(), "{}");
  assert.ok(await deniedPublish(fr, `$KV.${names.fleetBucket}.dp-1`));
});

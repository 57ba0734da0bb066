/**
 * A control-plane replica and a NATS cluster that is forming or has lost its quorum (issue 16), on a
 * real 3-node JetStream cluster with two of its servers SIGKILLed:
 *  - a start waits for JetStream for a bounded time and then fails with one line naming the step;
 *    given longer, it starts once the servers are back;
 *  - a policy apply meanwhile is refused as UNAVAILABLE (not INTERNAL) with a reason that says to
 *    retry, within the caller's deadline, and goes through once the cluster has a quorum again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { PolicyServiceClient, type ApplyPolicyResponse } from "@sluice/proto";
import { createDevIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { SluiceError } from "@sluice/shared/errors";
import { createLogger } from "@sluice/shared/logging";
import { startControlPlane, type RunningControlPlane } from "@sluice/control-plane";
import { devBundle, devResource } from "../../bin/lib/dev-bundle.js";
import { startNatsCluster } from "../lib/nats-cluster.js";

const ADMIN = "sluice-admins";

function apply(address: string, token: string, text: string): Promise<ApplyPolicyResponse> {
  const client = new PolicyServiceClient(address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return new Promise<ApplyPolicyResponse>((resolve, reject) => {
    client.apply({ bundleYaml: text, sourcePath: "<test>", expectedRevision: 0, commandId: "" }, md, { deadline: Date.now() + 30_000 }, (e: ServiceError | null, r: ApplyPolicyResponse) => {
      client.close();
      if (e) reject(e);
      else resolve(r);
    });
  });
}

test("a control plane and a NATS cluster without a quorum: a bounded wait at start, UNAVAILABLE for an apply", { timeout: 400_000 }, async (t) => {
  const nats = await startNatsCluster(t, { clusters: [{ name: "eu" }] });
  await nats.waitForJetStream("eu");
  const dir = mkdtempSync(join(tmpdir(), "sluice-cp-start-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const logger = createLogger({ level: "info", name: "control-plane", destination: new Writable({ write: (c, _e, cb) => (logs.push(String(c)), cb()) }) });
  const dev = await createDevIssuer({ issuer: "https://dev.sluice.test/cp-start", audience: "sluice" });
  const token = await dev.mint({ sub: "admin", groups: [ADMIN], ttlSec: 3600 });
  const [survivor, ...others] = nats.servers;
  const config = (n: number) => {
    const c = defaultConfig();
    c.node = `cp-${n}`;
    c.nats = { ...c.nats, url: survivor!.url, replicas: 3, manageStreams: true };
    c.controlPlane.grpcListen = "127.0.0.1:0";
    c.controlPlane.httpListen = "127.0.0.1:0";
    c.controlPlane.adminGroups = [ADMIN];
    c.controlPlane.issuers = [devIssuerSpec(dev)];
    c.controlPlane.readModel = { dialect: "sqlite", url: join(dir, `read-model-${n}.sqlite`) };
    return c;
  };
  const bundle = (db: string) => JSON.stringify(devBundle(devIssuerSpec(dev), devResource("app", { host: "127.0.0.1", port: 5432, database: db, user: "postgres" }), ADMIN));
  const running: RunningControlPlane[] = [];
  t.after(async () => {
    for (const cp of running) await cp.stop().catch(() => undefined);
  });

  // no quorum: one server of three
  for (const s of others) await s!.kill();

  await t.test("a start that waits longer than its bound fails as one line naming what it waited for", async () => {
    const e = await startControlPlane(config(1), { logger, natsStartupMs: 12_000 }).then(
      (cp) => {
        running.push(cp);
        return undefined;
      },
      (err: unknown) => err,
    );
    assert.ok(SluiceError.is(e, "unavailable"), `refused as unavailable: ${String(e)}`);
    assert.match(e.message, /^NATS JetStream not ready within 12 s \(ensuring the streams and buckets: .+\)$/);
    assert.ok(!e.message.includes("\n"));
    assert.ok(logs.some((l) => l.includes("NATS JetStream not ready (cluster forming?); trying again")), "it waited, saying so");
  });

  await t.test("a start while the cluster forms waits for it, then serves", async () => {
    const starting = startControlPlane(config(2), { logger, natsStartupMs: 180_000 });
    await new Promise((r) => setTimeout(r, 3_000));
    for (const s of others) await s!.start();
    const cp = await starting;
    running.push(cp);
    const r = await apply(cp.grpcAddress, token, bundle("one"));
    assert.equal(r.revision, 1);
  });

  await t.test("an apply while the cluster has no quorum is UNAVAILABLE, saying to retry; after it, it goes through", async () => {
    const cp = running.at(-1)!;
    await nats.waitForJetStream("eu");
    for (const s of others) await s!.kill();
    const e = (await apply(cp.grpcAddress, token, bundle("two")).then(() => undefined, (err: ServiceError) => err))!;
    assert.ok(e, "refused");
    assert.equal(e.code, status.UNAVAILABLE, `${status[e.code]}: ${e.details}`);
    assert.match(e.details, /NATS JetStream did not answer .*retry/);
    for (const s of others) await s!.start();
    await nats.waitForJetStream("eu");
    const end = Date.now() + 120_000;
    let last: unknown;
    for (;;) {
      try {
        const r = await apply(cp.grpcAddress, token, bundle("two"));
        assert.equal(r.revision, 2);
        break;
      } catch (err) {
        last = err;
        if (Date.now() > end) throw new Error(`no apply after the quorum came back: ${(last as ServiceError).details ?? String(last)}`);
        assert.equal((err as ServiceError).code, status.UNAVAILABLE, (err as ServiceError).details);
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  });
});

/**
 * Test harness: an in-process control plane on its own NATS prefix and free ports, a development
 * issuer, an admin token, a gRPC PolicyService client, and every log line captured. Cleans up
 * (stops, deletes the prefix's streams and buckets) in `t.after`, even on failure.
 */
import type { TestContext } from "node:test";
import { Writable } from "node:stream";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { PolicyServiceClient } from "@sluice/proto";
import { createDevIssuer, devIssuerSpec, type DevIssuer } from "@sluice/shared/auth";
import { defaultConfig, type SluiceConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import { deleteAll, natsNames, type NatsNames } from "@sluice/shared/nats";
import { startControlPlane, type ControlPlaneOptions, type RunningControlPlane } from "../control-plane.js";

export const NATS_URL = process.env.SLUICE_TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const ADMIN_GROUP = "sluice-admins";

export interface TestControlPlane {
  prefix: string;
  names: NatsNames;
  nc: NatsConnection;
  config: SluiceConfig;
  dev: DevIssuer;
  adminToken: string;
  cp: RunningControlPlane;
  address: string;
  /** every log line written so far (JSON text) */
  logs: string[];
  /** unary call on PolicyService with a token (default: the admin token) */
  call<Res>(method: "apply" | "get" | "history" | "diff", req: unknown, token?: string | null): Promise<Res>;
  /** stops the running control plane and starts a new one on the same prefix */
  restart(): Promise<void>;
}

export function randomPrefix(): string {
  return "t" + randomBytes(5).toString("hex");
}

export async function startTestControlPlane(t: TestContext, o: Partial<ControlPlaneOptions> = {}): Promise<TestControlPlane> {
  const prefix = randomPrefix();
  const names = natsNames(prefix);
  const nc = await connect({ servers: NATS_URL });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger({ level: "debug", name: "control-plane", destination: sink });
  const dev = await createDevIssuer({ issuer: `http://127.0.0.1/${prefix}`, audience: "sluice-control-plane" });
  const config = defaultConfig();
  config.nats = { ...config.nats, url: NATS_URL, prefix };
  config.controlPlane.grpcListen = "127.0.0.1:0";
  config.controlPlane.httpListen = "127.0.0.1:0";
  config.controlPlane.adminGroups = [ADMIN_GROUP];
  config.controlPlane.issuers = [devIssuerSpec(dev)];
  // the audit component's read model and sealer key live in a folder of this test's own
  const stateDir = mkdtempSync(join(tmpdir(), "sluice-cp-test-"));
  config.controlPlane.readModel = { dialect: "sqlite", url: join(stateDir, "read-model.sqlite") };
  const adminToken = await dev.mint({ sub: "alice", groups: [ADMIN_GROUP] });
  const clients: PolicyServiceClient[] = [];
  const start = () => startControlPlane(config, { logger, jetstream: { storage: "memory" }, ...o });

  const h: TestControlPlane = {
    prefix,
    names,
    nc,
    config,
    dev,
    adminToken,
    cp: await start(),
    address: "",
    logs,
    call<Res>(method: string, req: unknown, token: string | null = adminToken) {
      const client = new PolicyServiceClient(h.address, credentials.createInsecure());
      clients.push(client);
      const md = new Metadata();
      if (token !== null) md.set("authorization", `Bearer ${token}`);
      const fn = (client as unknown as Record<string, Function>)[method]!;
      return new Promise<Res>((resolve, reject) => {
        fn.call(client, req, md, { deadline: Date.now() + 20_000 }, (e: ServiceError | null, r: Res) => {
          client.close();
          if (e) reject(e);
          else resolve(r);
        });
      });
    },
    async restart() {
      await h.cp.stop();
      h.cp = await start();
      h.address = h.cp.grpcAddress;
    },
  };
  h.address = h.cp.grpcAddress;
  t.after(async () => {
    for (const c of clients) c.close();
    await h.cp.stop().catch(() => undefined);
    await deleteAll(nc, prefix).catch(() => undefined);
    await nc.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  return h;
}

/** A valid bundle (YAML) whose groups come from the dev issuer's `groups` claim. */
export function bundleYaml(o: { issuerUrl: string; jwks: unknown; extraPolicy?: string; password?: string } ): string {
  return `issuers:
  - name: dev
    issuer: ${o.issuerUrl}
    audience: sluice
    jwks: ${JSON.stringify(o.jwks)}
    groups:
      - claim: groups
groups: [ci, dba]
resources:
  - name: orders
    upstream: { host: 127.0.0.1, port: 5432, database: orders, user: sluice_svc, password: ${o.password ?? "env:ORDERS_DB_PASSWORD"}, tls: disable }
policies:
  - name: ci-read
    groups: [ci]
    resources: [orders]
    allow: [read]
${o.extraPolicy ?? ""}masking: []
`;
}

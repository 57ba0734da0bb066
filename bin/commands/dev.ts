/**
 * `sluice dev`: the whole development stack in the foreground (contract: "Development stack").
 *
 * nats-server as a child process (unless --nats / SLUICE_NATS_URL), the control plane and one data
 * plane in this process, a dev OIDC issuer `dev` whose JWKS the control plane serves over HTTP, and a
 * resource for the upstream (default: the local PostgreSQL, database `sluice_demo`, created if absent).
 * The upstream password reaches the data plane only through its environment (env:SLUICE_DEV_UPSTREAM_PASSWORD).
 * Writes the dev context (control plane address, admin token, dev issuer key file, …) so other shells'
 * `sluice …` commands work with no flags. Ctrl-C / SIGTERM stops everything it started.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parse as parseYaml } from "yaml";
import { startControlPlane, type RunningControlPlane } from "@sluice/control-plane";
import { createDevIssuer, createDevOidcProvider, devConsoleIssuer, devIssuerSpec } from "@sluice/shared/auth";
import { defaultConfig } from "@sluice/shared/config";
import { createLogger } from "@sluice/shared/logging";
import type { Bundle } from "@sluice/shared/policy";
import { UsageError, fail, parse, writeContext } from "../lib/cli-kit.js";
import { DEV_PASSWORD_ENV, devBundle, devResource, parseUpstreamUrl, withDevParts } from "../lib/dev-bundle.js";
import { freePort, startNatsServer, type NatsServerProcess } from "../lib/dev-nats-server.js";
import { applyBundleText } from "../lib/dev-policy-client.js";
import { ensureDevCertificate } from "../lib/dev-tls.js";
import { ensureUpstreamDatabase } from "../lib/dev-upstream.js";
import { afterDemo } from "../lib/demo/after-demo.js";
import { isAborted, runDemo } from "../lib/demo/run-demo.js";
import { startDataPlaneNode, type DataPlaneNode } from "@sluice/data-plane";

const USAGE = `usage: sluice dev [--upstream postgres://USER:PASS@HOST:PORT/DB] [--resource NAME] [--policy FILE]
                  [--nats URL] [--demo] [--state-dir DIR] [--port N] [--http-port N] [--grpc-port N] [--cp-http-port N]

Starts NATS (a child process unless --nats or SLUICE_NATS_URL), the control plane, one data plane with
TLS on a self-signed certificate, and a development OIDC issuer named "dev", then prints "sluice dev ready".
  --upstream      the database behind the resource (default postgres://postgres@127.0.0.1:5432/sluice_demo,
                  created if absent)
  --resource      the name clients connect to (default: the upstream database name)
  --policy FILE   a bundle applied at start (the dev issuer and the resource are added); default: every
                  statement class allowed to group "dev"
  --demo          after start, play a CI pipeline's session step by step (allowed read, masked result, blocked
                  DROP, a migration held for approval and approved, replay, audit verify, OCSF), then keep running
  --state-dir     certificate, issuer key, NATS store, read model (default .sluice; env SLUICE_DEV_DIR)
  ports           data plane --port 7432 (SLUICE_DEV_PORT), --http-port 7480 (SLUICE_DEV_HTTP_PORT),
                  control plane --grpc-port 7400 (SLUICE_DEV_GRPC_PORT), --cp-http-port 7481 (SLUICE_DEV_CP_HTTP_PORT);
                  0 picks a free port`;

export const DEV_ADMIN_GROUP = "sluice-admins";
export const DEV_AUDIENCE = "sluice";
/** the console's OIDC client at the dev issuer */
export const DEV_CONSOLE_CLIENT = "sluice-console";
const DEFAULT_UPSTREAM = "postgres://postgres@127.0.0.1:5432/sluice_demo";

async function port(flag: string | undefined, env: string, dflt: number): Promise<number> {
  const raw = flag ?? process.env[env];
  const n = raw === undefined || raw === "" ? dflt : Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`port must be 0..65535, got ${JSON.stringify(raw)}`);
  return n === 0 ? freePort() : n;
}

/** The user's bundle read loosely: every group a policy names is declared (the dev issuer's `groups` claim may carry it). */
function userBundle(text: string, file: string): Bundle {
  let raw: Partial<Bundle>;
  try {
    raw = (parseYaml(text) ?? {}) as Partial<Bundle>;
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message.split("\n")[0]}`);
  }
  if (typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${file}: a policy bundle must be a mapping`);
  const b: Bundle = { ...raw, issuers: raw.issuers ?? [], resources: raw.resources ?? [], policies: raw.policies ?? [], masking: raw.masking ?? [] };
  const groups = new Set(b.groups ?? []);
  for (const p of b.policies) for (const g of [...(p.groups ?? []), ...(p.approval?.approvers ?? [])]) groups.add(g);
  groups.add(DEV_ADMIN_GROUP);
  b.groups = [...groups];
  return b;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      upstream: { type: "string" },
      resource: { type: "string" },
      policy: { type: "string" },
      nats: { type: "string" },
      demo: { type: "boolean" },
      "state-dir": { type: "string" },
      port: { type: "string" },
      "http-port": { type: "string" },
      "grpc-port": { type: "string" },
      "cp-http-port": { type: "string" },
    },
    true,
  );
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (positionals.length) throw new UsageError(USAGE);

  const log = createLogger({ level: process.env.SLUICE_LOG_LEVEL ?? "warn", name: "dev" });
  const stateDir = resolve(values["state-dir"] ?? process.env.SLUICE_DEV_DIR ?? ".sluice");
  const stops: Array<{ what: string; stop: () => Promise<unknown> }> = [];
  const stopAll = async () => {
    for (const s of stops.reverse()) {
      try {
        await s.stop();
      } catch (e) {
        process.stderr.write(`sluice dev: stopping ${s.what}: ${(e as Error).message}\n`);
      }
    }
    stops.length = 0;
  };
  // a signal during start-up still stops what was started
  let interrupted: (() => void) | undefined;
  const signalled = new Promise<NodeJS.Signals>((res) => {
    const on = (s: NodeJS.Signals) => {
      res(s);
      interrupted?.();
    };
    process.once("SIGINT", () => on("SIGINT"));
    process.once("SIGTERM", () => on("SIGTERM"));
    // the terminal closed: stop like Ctrl-C rather than die and leave children behind
    process.once("SIGHUP", () => on("SIGHUP"));
  });

  try {
    const pgPort = await port(values.port, "SLUICE_DEV_PORT", 7432);
    const dpHttpPort = await port(values["http-port"], "SLUICE_DEV_HTTP_PORT", 7480);
    const grpcPort = await port(values["grpc-port"], "SLUICE_DEV_GRPC_PORT", 7400);
    const cpHttpPort = await port(values["cp-http-port"], "SLUICE_DEV_CP_HTTP_PORT", 7481);
    const up = parseUpstreamUrl(values.upstream ?? DEFAULT_UPSTREAM);
    const resourceName = values.resource ?? up.database;
    const prefix = process.env.SLUICE_NATS_PREFIX ?? "";

    // the upstream first: the most likely thing to be missing
    await ensureUpstreamDatabase(up, values.upstream === undefined);

    // NATS
    let natsUrl = values.nats ?? process.env.SLUICE_NATS_URL;
    let natsChild: NatsServerProcess | undefined;
    if (!natsUrl) {
      natsChild = await startNatsServer({ storeDir: join(stateDir, "nats") });
      stops.push({ what: "nats-server", stop: () => natsChild!.stop() });
      natsUrl = natsChild.url;
    }
    const nc: NatsConnection = await connect({ servers: natsUrl, name: "sluice-dev", maxReconnectAttempts: -1, reconnectTimeWait: 1000 });
    stops.push({ what: "NATS connection", stop: () => nc.drain() });

    // the dev issuer: key kept in the state dir (0600) so tokens survive a restart of `sluice dev`
    const cert = await ensureDevCertificate(join(stateDir, "tls"));
    const devIssuerKeyFile = join(stateDir, "dev-issuer.jwk.json");
    const cpHttp = `http://127.0.0.1:${cpHttpPort}`;
    const issuer = await createDevIssuer({ issuer: `${cpHttp}/dev`, audience: DEV_AUDIENCE, keyFile: devIssuerKeyFile });
    const issuerSpec = devIssuerSpec(issuer, { jwksUrl: `${cpHttp}/.well-known/jwks.json` });

    // control plane
    const cpConfig = defaultConfig();
    cpConfig.node = "dev-control-plane";
    cpConfig.nats = { ...cpConfig.nats, url: natsUrl, prefix };
    cpConfig.controlPlane.grpcListen = `127.0.0.1:${grpcPort}`;
    cpConfig.controlPlane.httpListen = `127.0.0.1:${cpHttpPort}`;
    cpConfig.controlPlane.adminGroups = [DEV_ADMIN_GROUP];
    cpConfig.controlPlane.readModel = { dialect: "sqlite", url: join(stateDir, "read-model.sqlite") };
    // a checkpoint every 2 s rather than 10: on a laptop one wants to verify what just happened
    cpConfig.controlPlane.sealer.everySeconds = 2;
    // the console: people sign in at the dev issuer's login page (authorization code + PKCE)
    cpConfig.controlPlane.console = { ...cpConfig.controlPlane.console, publicUrl: cpHttp, issuers: [devConsoleIssuer(issuer, DEV_CONSOLE_CLIENT)] };
    const signIn = createDevOidcProvider({
      issuer,
      clients: [{ clientId: DEV_CONSOLE_CLIENT, redirectUris: [`${cpHttp}/console/auth/callback`] }],
      suggestions: [{ sub: "dev-admin", groups: [DEV_ADMIN_GROUP, "dev"] }, { sub: "me", groups: ["dev"] }],
    });
    const jwksBody = JSON.stringify(issuer.jwks);
    const controlPlane: RunningControlPlane = await startControlPlane(cpConfig, {
      logger: log,
      nc,
      // inline keys for the control plane itself: it must not depend on its own HTTP listener to start
      issuers: [devIssuerSpec(issuer)],
      extraHttpMounts: [{ prefix: signIn.prefix, handle: signIn.handle }],
      extraHttpRoutes: {
        "/.well-known/jwks.json": (_req, res) => {
          res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60" }).end(jwksBody);
        },
      },
    });
    stops.push({ what: "control plane", stop: () => controlPlane.stop() });
    const adminToken = await issuer.mint({ sub: "dev-admin", groups: [DEV_ADMIN_GROUP, "dev"], ttlSec: 30 * 86_400 });

    // the start bundle, through the control plane's API like any `sluice policy apply`
    const resource = devResource(resourceName, up);
    let bundle: Bundle;
    let source = "<sluice dev>";
    if (values.policy) {
      source = values.policy;
      bundle = withDevParts(userBundle(readFileSync(values.policy, "utf8"), values.policy), issuerSpec, resource);
    } else {
      bundle = devBundle(issuerSpec, resource, DEV_ADMIN_GROUP);
    }
    const applied = await applyBundleText(controlPlane.grpcAddress, adminToken, JSON.stringify(bundle), source);

    // data plane: the upstream secret only in this process's environment
    if (up.password !== undefined) process.env[DEV_PASSWORD_ENV] = up.password;
    const dpConfig = defaultConfig();
    dpConfig.node = "dev-data-plane";
    dpConfig.nats = { ...dpConfig.nats, url: natsUrl, prefix };
    dpConfig.dataPlane.listen = `127.0.0.1:${pgPort}`;
    dpConfig.dataPlane.httpListen = `127.0.0.1:${dpHttpPort}`;
    dpConfig.dataPlane.tls = { mode: "required", certFile: cert.certFile, keyFile: cert.keyFile };
    dpConfig.dataPlane.controlPlaneUrl = controlPlane.grpcAddress;
    const dataPlane: DataPlaneNode = await startDataPlaneNode({
      config: dpConfig,
      nc,
      logger: log,
      snapshotCacheFile: join(stateDir, "snapshot.json"),
    });
    stops.push({ what: "data plane", stop: () => dataPlane.stop(2000) });
    await dataPlane.snapshots.waitForRevision(applied.revision, 15_000);

    const contextFile = writeContext({
      controlPlane: controlPlane.grpcAddress,
      token: adminToken,
      dataPlane: `127.0.0.1:${dataPlane.port}`,
      nats: natsUrl,
      natsPrefix: prefix,
      caFile: cert.certFile,
      devIssuerKeyFile,
      devIssuer: issuer.issuer,
      devAudience: DEV_AUDIENCE,
      pid: process.pid,
    });
    const psql =
      `PGPASSWORD=$(sluice token --sub me --groups dev) psql ` +
      `"host=127.0.0.1 port=${dataPlane.port} dbname=${resourceName} user=me sslmode=require"`;
    process.stdout.write(
      `sluice dev ready (policy revision ${applied.revision}; control plane ${controlPlane.grpcAddress}; data plane 127.0.0.1:${dataPlane.port}; ` +
        `NATS ${natsUrl}) — connect: ${psql}\n`,
    );
    process.stdout.write(`  context: ${contextFile}   state: ${stateDir}   stop: Ctrl-C\n`);
    process.stdout.write(`  console: ${cpHttp}/console/\n`);

    if (values.demo) {
      const ac = new AbortController();
      interrupted = () => ac.abort();
      const sink = { write: (t: string) => void process.stdout.write(t), isTTY: process.stdout.isTTY === true };
      const aborted = new Promise<undefined>((r) => ac.signal.addEventListener("abort", () => r(undefined), { once: true }));
      const playing = runDemo({
        host: "127.0.0.1",
        port: dataPlane.port,
        resource: resourceName,
        upstream: up,
        caFile: cert.certFile,
        issuer,
        devIssuerName: issuerSpec.name,
        bundle,
        apply: async (b) => {
          const r = await applyBundleText(controlPlane.grpcAddress, adminToken, JSON.stringify(b), "<sluice dev --demo>");
          await dataPlane.snapshots.waitForRevision(r.revision, 15_000);
          return r.revision;
        },
        sink,
        contextFile,
        stateDir,
        signal: ac.signal,
      }).then(
        (r) => r,
        (e: unknown) => {
          if (!isAborted(e) && !ac.signal.aborted) process.stdout.write(`demo failed: ${(e as Error).message}\n`);
          return undefined;
        },
      );
      // Ctrl-C mid-demo stops the stack at once; the demo's pending steps fail quietly under it
      const demo = await Promise.race([playing, aborted]);
      if (!ac.signal.aborted) process.stdout.write(afterDemo({ port: dataPlane.port, resource: resourceName, caFile: cert.certFile, grpc: controlPlane.grpcAddress, sessionId: demo?.sessionId }));
    }

    const sig = await signalled;
    process.stderr.write(`sluice dev: ${sig}, stopping\n`);
    await stopAll();
    // anything a library left open must not keep a stopped stack's process alive
    setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
    return 0;
  } catch (e) {
    await stopAll();
    return fail(e);
  }
}

/**
 * `sluice dev`: the whole development stack in the foreground (contract: "Development stack").
 *
 * nats-server as a child process (unless --nats / SLUICE_NATS_URL), the control plane in this process,
 * one data plane on a thread of its own (bin/lib/dev-data-plane.ts: the two do not share an event
 * loop), a dev OIDC issuer `dev` whose JWKS the control plane serves over HTTP, and a resource for
 * the upstream (default: the local PostgreSQL, database `sluice_demo`, created if absent).
 * The upstream password reaches the data plane only through its environment (env:SLUICE_DEV_UPSTREAM_PASSWORD).
 * Writes the dev context (control plane address, admin token, dev issuer key file, …) so other shells'
 * `sluice …` commands work with no flags. Ctrl-C / SIGTERM stops everything it started.
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { parse as parseYaml } from "yaml";
import type { RunningControlPlane } from "@sluice/control-plane";
import { defaultConfig, probeListen } from "@sluice/shared/config";
import { formatProblem, locateProblems, validateBundle, type Bundle } from "@sluice/shared/policy";
import { SluiceError } from "@sluice/shared/errors";
import { UsageError, fail, parse, writeContext } from "../lib/cli-kit.js";
import { DEV_PASSWORD_ENV, devBundle, devResource, keepDevParts, parseUpstreamUrl, withDevParts } from "../lib/dev-bundle.js";
import { freePort, startNatsServer } from "../lib/dev-nats-server.js";
import { Teardown, startStep, within } from "../lib/dev-lifecycle.js";
import { DevDataPlane } from "../lib/dev-data-plane.js";
import { ensureDevCertificate } from "../lib/dev-tls.js";

/**
 * The stack's heavy modules (~0.8 s of CPU, seconds on a loaded machine) load in two steps, each when
 * it is needed: what reaches the upstream and NATS once the flags, the --policy file and the ports
 * have been checked, the control plane and its gRPC client once those answered. A bad start says why
 * before most of it is loaded (contract: within 10 s), and --help loads none of it.
 */
async function loadClients() {
  const [nats, auth, logging, upstream] = await Promise.all([
    import("@nats-io/transport-node"), import("@sluice/shared/auth"), import("@sluice/shared/logging"), import("../lib/dev-upstream.js"),
  ]);
  return { connect: nats.connect, ...auth, createLogger: logging.createLogger, ensureUpstreamDatabase: upstream.ensureUpstreamDatabase };
}

async function loadControlPlane() {
  const [cp, policyClient] = await Promise.all([import("@sluice/control-plane"), import("../lib/dev-policy-client.js")]);
  return { startControlPlane: cp.startControlPlane, applyBundleText: policyClient.applyBundleText };
}

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
/** sessions' time to finish when the stack is stopped */
const STOP_GRACE_MS = 2000;
/** everything else a stop does (contract: stopping completes within the grace period plus 5 s) */
const STOP_MARGIN_MS = 5000;
/** kept from the audit flush for the clean-up after it: the data plane's (bounded to 1 s), the control plane's, NATS' */
const AFTER_FLUSH_MS = 3000;
/** taking down a half-started stack: a failed start exits within 10 s */
const FAILED_START_STOP_MS = 3000;
const NATS_CONNECT_MS = 3000;
const NATS_START_MS = 8000;
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

  // the log goes to stderr until a start-up failure: then the one line saying why is all that is printed
  let muted = false;
  const stateDir = resolve(values["state-dir"] ?? process.env.SLUICE_DEV_DIR ?? ".sluice");
  const parts = new Teardown();
  let dataPlane: DevDataPlane | undefined;
  let nc: NatsConnection | undefined;
  let natsUrl: string | undefined;

  // a signal during start-up stops what was started; afterwards it stops the running stack
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

  /** Leaves within `ms` whatever a library still holds open (a socket to a server that never answered). */
  const exitWithin = (code: number, ms: number) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), Math.max(0, ms)).unref();
  };

  const starting = (async () => {
    // configuration first: nothing is started for a bad flag, file or taken port
    const pgPort = await port(values.port, "SLUICE_DEV_PORT", 7432);
    const dpHttpPort = await port(values["http-port"], "SLUICE_DEV_HTTP_PORT", 7480);
    const grpcPort = await port(values["grpc-port"], "SLUICE_DEV_GRPC_PORT", 7400);
    const cpHttpPort = await port(values["cp-http-port"], "SLUICE_DEV_CP_HTTP_PORT", 7481);
    const up = parseUpstreamUrl(values.upstream ?? DEFAULT_UPSTREAM);
    const resourceName = values.resource ?? up.database;
    const prefix = process.env.SLUICE_NATS_PREFIX ?? "";
    let policyText: string | undefined;
    if (values.policy) {
      const file = values.policy;
      policyText = await startStep(`--policy ${file}`, async () => readFileSync(file, "utf8"));
    }
    await probeListen("data plane Postgres listener (--port)", "127.0.0.1", pgPort);
    await probeListen("data plane HTTP listener (--http-port)", "127.0.0.1", dpHttpPort);
    await probeListen("control plane gRPC listener (--grpc-port)", "127.0.0.1", grpcPort);
    await probeListen("control plane HTTP listener (--cp-http-port)", "127.0.0.1", cpHttpPort);

    const { connect, createDevIssuer, createDevOidcProvider, devConsoleIssuer, devIssuerSpec, createLogger, ensureUpstreamDatabase } = await loadClients();
    const log = createLogger({
      level: process.env.SLUICE_LOG_LEVEL ?? "warn",
      name: "dev",
      destination: { write: (chunk: string) => (muted ? true : process.stderr.write(chunk)) } as unknown as NodeJS.WritableStream,
    });

    // the upstream next: the most likely thing to be missing
    await ensureUpstreamDatabase(up, values.upstream === undefined);

    // NATS
    natsUrl = values.nats ?? process.env.SLUICE_NATS_URL;
    if (!natsUrl) {
      const child = await startStep("nats-server", () => startNatsServer({ storeDir: join(stateDir, "nats"), timeoutMs: NATS_START_MS }));
      parts.add("nats-server", () => child.stop());
      natsUrl = child.url;
    }
    const url = natsUrl;
    nc = await startStep(`NATS ${url}`, () =>
      connect({ servers: url, name: "sluice-dev", maxReconnectAttempts: -1, reconnectTimeWait: 1000, timeout: NATS_CONNECT_MS }),
    );
    const conn = nc;
    // drained on a clean stop; closed at once when NATS is gone (a drain would wait for it)
    parts.add("NATS connection", () => (conn.isClosed() ? Promise.resolve() : conn.drain()));

    // the dev issuer: key kept in the state dir (0600) so tokens survive a restart of `sluice dev`
    const cert = await startStep(`TLS certificate in ${join(stateDir, "tls")}`, () => ensureDevCertificate(join(stateDir, "tls")));
    const devIssuerKeyFile = join(stateDir, "dev-issuer.jwk.json");
    const cpHttp = `http://127.0.0.1:${cpHttpPort}`;
    const issuer = await startStep(`dev issuer key ${devIssuerKeyFile}`, () => createDevIssuer({ issuer: `${cpHttp}/dev`, audience: DEV_AUDIENCE, keyFile: devIssuerKeyFile }));
    const issuerSpec = devIssuerSpec(issuer, { jwksUrl: `${cpHttp}/.well-known/jwks.json` });
    const resource = devResource(resourceName, up);
    // the start bundle is checked here, its problems located in the file, before anything else starts
    let bundle: Bundle;
    let source = "<sluice dev>";
    if (values.policy && policyText !== undefined) {
      source = values.policy;
      bundle = withDevParts(userBundle(policyText, values.policy), issuerSpec, resource);
      const problems = locateProblems(validateBundle(bundle), policyText, values.policy);
      if (problems.length) {
        const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
        throw new SluiceError("invalid_argument", formatProblem(problems[0]!) + more);
      }
    } else {
      bundle = devBundle(issuerSpec, resource, DEV_ADMIN_GROUP);
    }

    // control plane
    const { startControlPlane, applyBundleText } = await loadControlPlane();
    const cpConfig = defaultConfig();
    cpConfig.node = "dev-control-plane";
    cpConfig.nats = { ...cpConfig.nats, url, prefix };
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
    const controlPlane: RunningControlPlane = await startStep("control plane", () =>
      startControlPlane(cpConfig, {
        logger: log,
        nc: conn,
        // inline keys for the control plane itself: it must not depend on its own HTTP listener to start
        issuers: [devIssuerSpec(issuer)],
        extraHttpMounts: [{ prefix: signIn.prefix, handle: signIn.handle }],
        extraHttpRoutes: {
          "/.well-known/jwks.json": (_req, res) => {
            res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60" }).end(jwksBody);
          },
        },
        // `sluice policy apply FILE` from another shell keeps the dev issuer and resource (contract)
        amendBundle: (b) => keepDevParts(b, issuerSpec, resource),
      }),
    );
    parts.add("control plane", () => controlPlane.stop());
    const adminToken = await issuer.mint({ sub: "dev-admin", groups: [DEV_ADMIN_GROUP, "dev"], ttlSec: 30 * 86_400 });

    // the start bundle, through the control plane's API like any `sluice policy apply`
    const applied = await applyBundleText(controlPlane.grpcAddress, adminToken, JSON.stringify(bundle), source);

    // data plane: the upstream secret only in this process's environment
    if (up.password !== undefined) process.env[DEV_PASSWORD_ENV] = up.password;
    const dpConfig = defaultConfig();
    dpConfig.node = "dev-data-plane";
    dpConfig.nats = { ...dpConfig.nats, url, prefix };
    dpConfig.dataPlane.listen = `127.0.0.1:${pgPort}`;
    dpConfig.dataPlane.httpListen = `127.0.0.1:${dpHttpPort}`;
    dpConfig.dataPlane.tls = { mode: "required", certFile: cert.certFile, keyFile: cert.keyFile };
    dpConfig.dataPlane.controlPlaneUrl = controlPlane.grpcAddress;
    // on a thread of its own: the control plane's projector and sealer do not hold up its relay
    const dp = new DevDataPlane({
      config: dpConfig,
      logLevel: process.env.SLUICE_LOG_LEVEL ?? "warn",
      snapshotCacheFile: join(stateDir, "snapshot.json"),
      log: (chunk) => void (muted || process.stderr.write(chunk)),
    });
    dataPlane = dp;
    // sessions get the grace period; their last audit events what is left of the stop's budget
    parts.add("data plane", async (budget) => {
      const r = await dp.stop(STOP_GRACE_MS, { flushMs: Math.max(0, budget - STOP_GRACE_MS - AFTER_FLUSH_MS) });
      undelivered = r.undeliveredAuditEvents;
      if (undelivered > 0 || !(await natsAnswers(conn))) {
        // NATS is gone: every clean-up round trip after this would wait for its time-out
        natsGone = true;
        await conn.close().catch(() => undefined);
      }
    });
    await startStep("data plane", () => dp.ready);
    await startStep("data plane policy", () => dp.waitForRevision(applied.revision, 15_000));

    const contextFile = writeContext({
      controlPlane: controlPlane.grpcAddress,
      token: adminToken,
      dataPlane: `127.0.0.1:${dp.port}`,
      nats: url,
      natsPrefix: prefix,
      caFile: cert.certFile,
      devIssuerKeyFile,
      devIssuer: issuer.issuer,
      devAudience: DEV_AUDIENCE,
      devParts: { issuer: issuerSpec, resource },
      pid: process.pid,
    });
    return { controlPlane, dp, cert, issuer, issuerSpec, bundle, adminToken, resourceName, up, contextFile, applied, applyBundleText };
  })();

  let undelivered = 0;
  let natsGone = false;
  /** Stops everything within the budget; says what could not be stopped and which audit events were not delivered. */
  const stopStack = async (budgetMs: number): Promise<void> => {
    const problems = await parts.run(budgetMs);
    if (dataPlane && problems.some((p) => p.includes("data plane"))) undelivered = dataPlane.auditPending();
    for (const p of problems) process.stderr.write(`sluice dev: ${p}\n`);
    if (undelivered > 0) process.stderr.write(`sluice dev: ${undelivered} audit event(s) could not be delivered to NATS ${natsUrl} before stopping\n`);
    else if (natsGone) process.stderr.write(`sluice dev: NATS ${natsUrl} was unreachable at stop; every audit event had been delivered\n`);
  };

  let started: Awaited<typeof starting>;
  try {
    const sig = await Promise.race([starting, signalled]);
    if (typeof sig === "string") {
      // stopped before it was ready: what started is stopped, what is still starting is abandoned
      starting.catch(() => undefined);
      process.stderr.write(`sluice dev: ${sig} during start-up, stopping\n`);
      await stopStack(STOP_GRACE_MS + STOP_MARGIN_MS);
      exitWithin(1, 500);
      return 1;
    }
    started = sig;
  } catch (e) {
    // one line says what failed and where; taking down what had started is not news
    muted = true;
    const problems = await parts.run(FAILED_START_STOP_MS);
    void problems;
    exitWithin(1, 500);
    return fail(e);
  }

  const { controlPlane, dp, cert, issuer, issuerSpec, bundle, adminToken, resourceName, up, contextFile, applied, applyBundleText } = started;
  const psql =
    `PGPASSWORD=$(sluice token --sub me --groups dev) psql ` +
    `"host=127.0.0.1 port=${dp.port} dbname=${resourceName} user=me sslmode=require"`;
  process.stdout.write(
    `sluice dev ready (policy revision ${applied.revision}; control plane ${controlPlane.grpcAddress}; data plane 127.0.0.1:${dp.port}; ` +
      `NATS ${natsUrl}) — connect: ${psql}\n`,
  );
  process.stdout.write(`  context: ${contextFile}   state: ${stateDir}   stop: Ctrl-C\n`);
  process.stdout.write(`  console: http://127.0.0.1:${controlPlane.httpPort}/console/\n`);

  if (values.demo) {
    const [{ afterDemo }, { isAborted, runDemo }] = await Promise.all([import("../lib/demo/after-demo.js"), import("../lib/demo/run-demo.js")]);
    const ac = new AbortController();
    interrupted = () => ac.abort();
    const sink = { write: (t: string) => void process.stdout.write(t), isTTY: process.stdout.isTTY === true };
    const aborted = new Promise<undefined>((r) => ac.signal.addEventListener("abort", () => r(undefined), { once: true }));
    const playing = runDemo({
      host: "127.0.0.1",
      port: dp.port,
      resource: resourceName,
      upstream: up,
      caFile: cert.certFile,
      issuer,
      devIssuerName: issuerSpec.name,
      bundle,
      apply: async (b) => {
        const r = await applyBundleText(controlPlane.grpcAddress, adminToken, JSON.stringify(b), "<sluice dev --demo>");
        await dp.waitForRevision(r.revision, 15_000);
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
    if (!ac.signal.aborted) process.stdout.write(afterDemo({ port: dp.port, resource: resourceName, caFile: cert.certFile, grpc: controlPlane.grpcAddress, sessionId: demo?.sessionId }));
  }

  // a signal stops the stack; so does its data plane thread ending on its own (the stack is no use without it)
  const end = await Promise.race([signalled, dp.lost.then((why) => ({ lost: why }))]);
  const t0 = Date.now();
  const code = typeof end === "string" ? 0 : 1;
  process.stderr.write(typeof end === "string" ? `sluice dev: ${end}, stopping\n` : `sluice dev: the data plane stopped (${end.lost}), stopping\n`);
  await stopStack(STOP_GRACE_MS + STOP_MARGIN_MS);
  // anything a library left open must not keep a stopped stack's process alive past the budget
  exitWithin(code, STOP_GRACE_MS + STOP_MARGIN_MS - (Date.now() - t0));
  return code;
}

/** True when NATS answers a PING soon (a flush waits for a reconnect otherwise). */
async function natsAnswers(nc: NatsConnection): Promise<boolean> {
  if (nc.isClosed()) return false;
  return within("NATS", 500, nc.flush()).then(
    () => true,
    () => false,
  );
}

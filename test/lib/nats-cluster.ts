/**
 * Real NATS JetStream clusters for tests: `nats-server` child processes on free loopback ports, each
 * with its own store directory, joined by routes into a cluster per region and, with more than one
 * region, by gateways into a supercluster. Optionally in operator mode with the sluice accounts
 * (nats-auth.ts) and with TLS on the client port. Torn down with `stop()` (also registered on the
 * test context when one is given).
 *
 *   const sc = await startNatsCluster(t, { clusters: [{ name: "eu" }, { name: "us" }] });  // 2 x 3
 *   sc.urls("eu")                 // seed URLs of one region
 *   await sc.server("eu-2").kill() // SIGKILL one server; .start() brings it back on its ports/store
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer, type NatsServerProcess } from "../../bin/lib/dev-nats-server.js";
import { freePort } from "./free-port.js";

export interface ClusterSpec {
  /** cluster (region) name: also the JetStream placement cluster */
  name: string;
  /** servers in this cluster (default 3) */
  size?: number;
}

export interface NatsClusterOptions {
  clusters: ClusterSpec[];
  /** operator-mode block (createNatsAuth(...).serverConfig()); default: no authentication */
  authConfig?: string;
  /** TLS on the client listener (PEM files) */
  tls?: { certFile: string; keyFile: string; caFile?: string };
  /** ms to wait for every server and the JetStream meta leader (default 30 s) */
  timeoutMs?: number;
}

export interface ClusterServer {
  readonly name: string;
  readonly cluster: string;
  readonly port: number;
  readonly url: string;
  readonly storeDir: string;
  readonly running: boolean;
  /** SIGKILL: a crash, no clean shutdown */
  kill(): Promise<void>;
  /** SIGTERM (lame duck, clean) */
  stop(): Promise<void>;
  /** start again on the same ports and store */
  start(): Promise<void>;
}

export interface NatsCluster {
  readonly servers: readonly ClusterServer[];
  server(name: string): ClusterServer;
  /** comma-separated client URLs of a region's servers (all servers without a name) */
  urls(cluster?: string): string;
  /** waits until JetStream answers through a server of `cluster` (a meta leader exists, the account works) */
  waitForJetStream(cluster?: string, connectOptions?: Partial<ConnectionOptions>): Promise<void>;
  stop(): Promise<void>;
}

function serverConf(o: {
  name: string;
  cluster: string;
  port: number;
  monitorPort: number;
  routePort: number;
  routes: number[];
  gatewayPort?: number;
  gateways?: Array<{ name: string; ports: number[] }>;
  storeDir: string;
  authConfig?: string;
  tls?: NatsClusterOptions["tls"];
  /** a lone server: no cluster block (JetStream then runs without a meta group) */
  alone: boolean;
}): string {
  const lines = [
    `server_name: ${o.name}`,
    `listen: 127.0.0.1:${o.port}`,
    // monitoring (/jsz): the helper waits until the JetStream meta group knows every server
    `http: 127.0.0.1:${o.monitorPort}`,
    `server_tags: ["region:${o.cluster}", "server:${o.name}"]`,
    // small limits: many servers share one test machine
    `jetstream { store_dir: "${o.storeDir}", max_memory_store: 64MB, max_file_store: 1GB }`,
  ];
  if (!o.alone) {
    lines.push(
      `cluster {`,
      `  name: ${o.cluster}`,
      `  listen: 127.0.0.1:${o.routePort}`,
      `  routes: [${o.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(", ")}]`,
      // a killed server comes back quickly in tests
      `  connect_retries: 120`,
      `}`,
    );
  }
  if (o.gatewayPort !== undefined) {
    lines.push(
      `gateway {`,
      `  name: ${o.cluster}`,
      `  listen: 127.0.0.1:${o.gatewayPort}`,
      `  gateways: [`,
      ...o.gateways!.map((g) => `    { name: ${g.name}, urls: [${g.ports.map((p) => `nats://127.0.0.1:${p}`).join(", ")}] }`),
      `  ]`,
      `}`,
    );
  }
  if (o.tls) {
    lines.push(`tls { cert_file: "${o.tls.certFile}", key_file: "${o.tls.keyFile}"${o.tls.caFile ? `, ca_file: "${o.tls.caFile}"` : ""}, timeout: 5 }`);
  }
  if (o.authConfig) lines.push(o.authConfig);
  return lines.join("\n") + "\n";
}

async function startOnce(o: NatsClusterOptions): Promise<NatsCluster> {
  const base = mkdtempSync(join(tmpdir(), "sluice-nats-cluster-"));
  const multi = o.clusters.length > 1;
  type Plan = { name: string; cluster: string; port: number; monitorPort: number; routePort: number; gatewayPort?: number; storeDir: string; conf: string };
  const plans: Plan[] = [];
  for (const c of o.clusters) {
    for (let i = 1; i <= (c.size ?? 3); i++) {
      const name = `${c.name}-${i}`;
      plans.push({
        name,
        cluster: c.name,
        port: await freePort(),
        monitorPort: await freePort(),
        routePort: await freePort(),
        gatewayPort: multi ? await freePort() : undefined,
        storeDir: join(base, name),
        conf: join(base, `${name}.conf`),
      });
    }
  }
  for (const p of plans) {
    const peers = plans.filter((q) => q.cluster === p.cluster);
    writeFileSync(
      p.conf,
      serverConf({
        ...p,
        routes: peers.map((q) => q.routePort),
        gateways: multi ? o.clusters.map((c) => ({ name: c.name, ports: plans.filter((q) => q.cluster === c.name).map((q) => q.gatewayPort!) })) : undefined,
        authConfig: o.authConfig,
        tls: o.tls,
        alone: plans.length === 1,
      }),
    );
  }

  const procs = new Map<string, NatsServerProcess | undefined>();
  const servers: ClusterServer[] = plans.map((p) => ({
    name: p.name,
    cluster: p.cluster,
    port: p.port,
    url: `${o.tls ? "tls" : "nats"}://127.0.0.1:${p.port}`,
    storeDir: p.storeDir,
    get running() {
      const proc = procs.get(p.name);
      return !!proc && proc.child.exitCode === null && proc.child.signalCode === null;
    },
    async kill() {
      await procs.get(p.name)?.kill();
      procs.set(p.name, undefined);
    },
    async stop() {
      await procs.get(p.name)?.stop();
      procs.set(p.name, undefined);
    },
    async start() {
      if (this.running) return;
      procs.set(p.name, await startNatsServer({ storeDir: p.storeDir, port: p.port, configFile: p.conf, timeoutMs: o.timeoutMs ?? 30_000 }));
    },
  }));

  const cluster: NatsCluster = {
    servers,
    server(name) {
      const s = servers.find((x) => x.name === name);
      if (!s) throw new Error(`no server ${name}`);
      return s;
    },
    urls(c) {
      const list = servers.filter((s) => !c || s.cluster === c);
      if (!list.length) throw new Error(`no cluster ${c}`);
      return list.map((s) => s.url).join(",");
    },
    async waitForJetStream(c, connectOptions = {}) {
      const until = Date.now() + (o.timeoutMs ?? 30_000);
      let last: unknown;
      // first the meta group: a leader that counts every running server as a current peer, else an
      // R3 stream create fails with "no suitable peers for placement" while the cluster forms
      const running = plans.filter((p) => servers.find((s) => s.name === p.name)!.running);
      while (plans.length > 1 && Date.now() < until) {
        const ok = await Promise.all(
          running.map(async (p) => {
            try {
              const r = await fetch(`http://127.0.0.1:${p.monitorPort}/jsz`);
              const j = (await r.json()) as { meta_cluster?: { leader?: string; replicas?: Array<{ current?: boolean }> } };
              const peers = (j.meta_cluster?.replicas ?? []).filter((x) => x.current).length + 1;
              return !!j.meta_cluster?.leader && peers >= running.length;
            } catch (e) {
              last = e;
              return false;
            }
          }),
        );
        if (ok.some(Boolean)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      while (Date.now() < until) {
        let nc: NatsConnection | undefined;
        try {
          nc = await connect({ servers: cluster.urls(c).split(","), timeout: 2000, ...connectOptions });
          const jsm = await jetstreamManager(nc, { timeout: 2000 });
          await jsm.getAccountInfo();
          return;
        } catch (e) {
          last = e;
          await new Promise((r) => setTimeout(r, 250));
        } finally {
          await nc?.close().catch(() => undefined);
        }
      }
      throw new Error(`JetStream not ready in cluster ${c ?? "(all)"}: ${(last as Error)?.message}`);
    },
    async stop() {
      await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
      rmSync(base, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(servers.map((s) => s.start()));
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/**
 * Starts the cluster (stopped after `t`). The ports are found free, then bound by the servers a
 * moment later: on a busy machine another process (or an outgoing connection's ephemeral port) can
 * take one in between, so a start that fails binding is made again on fresh ports.
 */
export async function startNatsCluster(t: TestContext | undefined, o: NatsClusterOptions): Promise<NatsCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      const cluster = await startOnce(o);
      t?.after(() => cluster.stop());
      return cluster;
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test(String((e as Error)?.message ?? e))) throw e;
    }
  }
}

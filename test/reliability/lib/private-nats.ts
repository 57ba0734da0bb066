/**
 * A nats-server of the scenario's own (bin/lib/dev-nats-server.ts under a config file), on a fixed
 * port and store so it can be stopped, killed and started again exactly where the planes expect it.
 * `jetstream` lines go inside the server's jetstream block (e.g. `max_file_store: 4MB`); the store
 * directory may be a small file system of the scenario's own (disk full).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startNatsServer, type NatsServerProcess } from "../../../bin/lib/dev-nats-server.js";
import { stablePort } from "./stable-port.js";

export interface PrivateNats {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly running: boolean;
  /** SIGTERM (a clean shutdown), resolves once the server is gone */
  stop(): Promise<void>;
  /** SIGKILL: a crash */
  kill(): Promise<void>;
  /** starts it again on the same port and store */
  start(): Promise<void>;
}

export async function startPrivateNats(dir: string, o: { storeDir?: string; jetstream?: string[] } = {}): Promise<PrivateNats> {
  mkdirSync(dir, { recursive: true });
  const port = await stablePort();
  const storeDir = o.storeDir ?? join(dir, "store");
  const conf = join(dir, "nats-server.conf");
  writeFileSync(
    conf,
    [
      `listen: 127.0.0.1:${port}`,
      `jetstream {`,
      `  store_dir: "${storeDir}"`,
      `  max_memory_store: 64MB`,
      ...(o.jetstream ?? ["max_file_store: 1GB"]).map((l) => `  ${l}`),
      `}`,
      "",
    ].join("\n"),
  );
  let proc: NatsServerProcess | undefined;
  const api: PrivateNats = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get running() {
      return !!proc && proc.child.exitCode === null && proc.child.signalCode === null;
    },
    async stop() {
      await proc?.stop();
      proc = undefined;
    },
    async kill() {
      await proc?.kill();
      proc = undefined;
    },
    async start() {
      if (api.running) return;
      proc = await startNatsServer({ storeDir, port, configFile: conf, timeoutMs: 30_000 });
    },
  };
  await api.start();
  return api;
}

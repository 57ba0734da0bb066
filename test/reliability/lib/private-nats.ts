/**
 * A nats-server of the scenario's own (bin/lib/dev-nats-server.ts under a config file), on a fixed
 * port and store so it can be stopped, killed and started again exactly where the planes expect it.
 * `jetstream` lines go inside the server's jetstream block (e.g. `max_file_store: 4MB`); the store
 * directory may be a small file system of the scenario's own (disk full).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startNatsServer, type NatsServerProcess } from "../../../bin/lib/dev-nats-server.js";
import { stablePort } from "./stable-port.js";

export interface PrivateNats {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly running: boolean;
  /**
   * SIGTERM (a clean shutdown), resolves once the server is gone; a server still there 3 s after its guard
   * (nats-server 2.9 can hang in its shutdown with a full store) is killed, and `forcedStops` counts it
   */
  stop(): Promise<void>;
  readonly forcedStops: number;
  /** SIGKILL: a crash */
  kill(): Promise<void>;
  /** starts it again on the same port and store */
  start(): Promise<void>;
  /** rewrites the jetstream lines of its config (effective at the next start) */
  setJetstream(lines: string[]): void;
}

export async function startPrivateNats(dir: string, o: { storeDir?: string; jetstream?: string[] } = {}): Promise<PrivateNats> {
  mkdirSync(dir, { recursive: true });
  const port = await stablePort();
  const storeDir = o.storeDir ?? join(dir, "store");
  const conf = join(dir, "nats-server.conf");
  const write = (lines: string[]) =>
    writeFileSync(
      conf,
      [`listen: 127.0.0.1:${port}`, `jetstream {`, `  store_dir: "${storeDir}"`, `  max_memory_store: 64MB`, ...lines.map((l) => `  ${l}`), `}`, ""].join("\n"),
    );
  write(o.jetstream ?? ["max_file_store: 1GB"]);
  let proc: NatsServerProcess | undefined;
  let serverPid: number | undefined;
  let forcedStops = 0;
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const api: PrivateNats = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get running() {
      return !!proc && proc.child.exitCode === null && proc.child.signalCode === null;
    },
    get forcedStops() {
      return forcedStops;
    },
    async stop() {
      if (!proc) return;
      const pid = serverPid;
      // the guard is SIGKILLed after 5 s by dev-nats-server; the server itself may outlive it
      await proc.stop();
      proc = undefined;
      for (let i = 0; pid && alive(pid) && i < 30; i++) await new Promise((r) => setTimeout(r, 100));
      if (pid && alive(pid)) {
        forcedStops++;
        process.kill(pid, "SIGKILL");
        for (let i = 0; alive(pid) && i < 100; i++) await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill() {
      await proc?.kill();
      proc = undefined;
    },
    setJetstream: write,
    async start() {
      if (api.running) return;
      proc = await startNatsServer({ storeDir, port, configFile: conf, timeoutMs: 30_000 });
      // the server is the guard shell's child (see dev-nats-server.ts)
      try {
        const kids = readFileSync(`/proc/${proc.child.pid}/task/${proc.child.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
        serverPid = kids.find((k) => readFileSync(`/proc/${k}/cmdline`, "utf8").startsWith("nats-server"));
      } catch {
        serverPid = undefined;
      }
    },
  };
  await api.start();
  return api;
}

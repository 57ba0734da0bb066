import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { freePort } from "./free-port.js";

export { freePort };

const GUARD = [
  'exec 3<&0',
  '"$@" <&- &',
  "pid=$!",
  "trap 'kill -TERM $pid 2>/dev/null' TERM INT HUP",
  "( while read -r _; do :; done <&3; kill -TERM $pid 2>/dev/null ) &",
  "watcher=$!",
  "wait $pid",
  "status=$?",
  // a trapped signal interrupts the first wait: wait again for the server's own exit
  "while kill -0 $pid 2>/dev/null; do wait $pid; status=$?; done",
  "kill $watcher 2>/dev/null",
  "exit $status",
].join("\n");

export interface NatsServerProcess {
  url: string;
  port: number;
  storeDir: string;
  /** the guard shell; the server is its child */
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited */
  stop(): Promise<void>;
  /** SIGKILL the server itself (a crash, no clean shutdown); resolves when the guard has exited */
  kill(): Promise<void>;
}

/**
 * Starts `nats-server` with JetStream on loopback as a child process, its store in `storeDir`
 * (kept on stop so a restart on the same dir finds its streams again). Resolves once the server
 * logs that it is ready for connections.
 */
export async function startNatsServer(opts: {
  storeDir: string;
  port?: number;
  bin?: string;
  timeoutMs?: number;
  /** a full nats-server.conf instead of the command-line defaults (it must set the port and store dir given here) */
  configFile?: string;
}): Promise<NatsServerProcess> {
  mkdirSync(opts.storeDir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = opts.configFile ? ["-c", opts.configFile] : ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", opts.storeDir];
  // The server runs under a small sh guard holding a pipe from us on stdin: if this process dies
  // without stopping it (SIGKILL, a crash), the pipe closes and the guard stops the server, so no
  // orphan keeps the port and the store. SIGTERM/SIGINT to the guard stop the server too.
  // Its own process group: Ctrl-C in the terminal signals only `sluice dev`, which then stops the
  // stack in order (data plane, control plane, NATS connection) while the server is still there.
  const child = spawn("sh", ["-c", GUARD, "sluice-nats-guard", opts.bin ?? "nats-server", ...args], {
    stdio: ["pipe", "ignore", "pipe"],
    detached: true,
  });
  let log = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nats-server did not start within ${opts.timeoutMs ?? 10_000} ms: ${log.slice(-500)}`));
    }, opts.timeoutMs ?? 10_000);
    child.once("error", (e) => {
      clearTimeout(t);
      reject(new Error(`cannot start nats-server: ${e.message}`));
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`nats-server exited with ${code}: ${log.slice(-500)}`));
    });
    child.stderr!.on("data", (d: Buffer) => {
      if (log.length < 20_000) log += d.toString();
      if (log.includes("Server is ready")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  // Keep draining stderr so the child never blocks on a full pipe.
  child.stderr!.resume();
  const done = () => child.exitCode !== null || child.signalCode !== null;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: opts.storeDir,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // closing the guard's pipe stops the server even if the guard itself is killed below
      child.stdin?.end();
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
    async kill() {
      if (done()) return;
      // the server is the guard's only child but the pipe watcher: kill every child, then the guard
      let children: string[] = [];
      try {
        children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      } catch {
        // not Linux, or already gone: the guard's own SIGKILL below still closes the pipe
      }
      for (const pid of children) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already exited
        }
      }
      child.stdin?.end();
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/**
 * Reference target for scenario 1: the cheapest possible Node.js proxy, a TLS-terminating pipe that
 * parses nothing (issue 7: "a bare Node.js TLS-terminating pipe that parses nothing reaches about
 * 0.88× pgbouncer with client TLS"). It answers SSLRequest with 'S', terminates TLS and copies bytes
 * both ways to the upstream. Its CPU per transaction is the floor any Node proxy pays on this machine
 * for sockets and TLS alone, so sluice's own cost is what it spends above it.
 *
 * `startTlsPipe` runs this file as a child process (its CPU is then its own and measurable); as the
 * child it reads env TLS_PIPE = JSON { upstreamPort, certFile, keyFile, readyFile } and writes
 * { port } to readyFile.
 */
import { createServer, connect, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Target } from "./clients.js";

const SSL_REQUEST = 80877103;

export async function startTlsPipe(o: { upstreamPort: number; database: string; cert: { certFile: string; keyFile: string } }): Promise<{ target: Target; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-tls-pipe-"));
  const readyFile = join(dir, "ready.json");
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url)], {
    env: { ...process.env, TLS_PIPE: JSON.stringify({ upstreamPort: o.upstreamPort, ...o.cert, readyFile }) },
    stdio: "ignore",
  });
  for (let i = 0; !existsSync(readyFile); i++) {
    if (child.exitCode !== null || i > 600) throw new Error("the TLS pipe did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 50));
  const { port } = JSON.parse(readFileSync(readyFile, "utf8")) as { port: number };
  return {
    target: {
      name: "node-tls-pipe",
      env: { PGHOST: "127.0.0.1", PGPORT: String(port), PGUSER: "postgres", PGDATABASE: o.database, PGSSLMODE: "require" },
      pid: () => child.pid,
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (process.env.TLS_PIPE) runPipe(JSON.parse(process.env.TLS_PIPE) as { upstreamPort: number; certFile: string; keyFile: string; readyFile: string });

function runPipe(o: { upstreamPort: number; certFile: string; keyFile: string; readyFile: string }): void {
  const cert = readFileSync(o.certFile);
  const key = readFileSync(o.keyFile);
  const server = createServer({ noDelay: true }, (raw: Socket) => {
    raw.once("data", (first: Buffer) => {
      if (first.length !== 8 || first.readInt32BE(4) !== SSL_REQUEST) return raw.destroy();
      raw.write("S");
      const tls = new TLSSocket(raw, { isServer: true, cert, key });
      const up = connect({ host: "127.0.0.1", port: o.upstreamPort, noDelay: true });
      tls.pipe(up);
      up.pipe(tls);
      const end = () => { tls.destroy(); up.destroy(); };
      tls.on("error", end).on("close", end);
      up.on("error", end).on("close", end);
    });
  });
  server.listen(0, "127.0.0.1", () => {
    const addr = server.address();
    writeFileSync(o.readyFile, JSON.stringify({ port: typeof addr === "object" && addr ? addr.port : 0 }));
  });
  process.on("SIGTERM", () => process.exit(0));
}

/**
 * A private pgbouncer (Debian's package) in session mode on a free port, with or without client TLS,
 * in front of a given Postgres. pgbouncer refuses to run as root, so it runs as `postgres` then.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { chownSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, chmodSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "../../lib/free-port.js";

export interface PgBouncer {
  port: number;
  /** pgbouncer's own pid (from its pidfile: under runuser the child is runuser) */
  pid(): number | undefined;
  stop(): Promise<void>;
}

export function pgbouncerBinary(): string {
  for (const p of ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]) {
    try {
      execFileSync(p, ["--version"], { stdio: "ignore" });
      return p;
    } catch { /* next */ }
  }
  throw new Error("pgbouncer is not installed (apt-get install pgbouncer)");
}

export async function startPgBouncer(opts: {
  upstreamPort: number;
  database: string;
  tls?: { certFile: string; keyFile: string };
  maxClientConn?: number;
  poolSize?: number;
}): Promise<PgBouncer> {
  const bin = pgbouncerBinary();
  const dir = mkdtempSync(join(tmpdir(), "sluice-pgb-"));
  const port = await freePort();
  const lines = [
    "[databases]",
    `${opts.database} = host=127.0.0.1 port=${opts.upstreamPort} dbname=${opts.database}`,
    "[pgbouncer]",
    `listen_addr = 127.0.0.1`,
    `listen_port = ${port}`,
    `unix_socket_dir =`,
    `auth_type = trust`,
    `auth_file = ${join(dir, "users.txt")}`,
    `pool_mode = session`,
    `max_client_conn = ${opts.maxClientConn ?? 2000}`,
    `default_pool_size = ${opts.poolSize ?? 100}`,
    `logfile = ${join(dir, "pgbouncer.log")}`,
    `pidfile = ${join(dir, "pgbouncer.pid")}`,
    `ignore_startup_parameters = extra_float_digits,options`,
    // plaintext to Postgres, as the sluice nodes (upstream tls: disable): only the client side differs
    `server_tls_sslmode = disable`,
  ];
  if (opts.tls) {
    copyFileSync(opts.tls.certFile, join(dir, "cert.pem"));
    copyFileSync(opts.tls.keyFile, join(dir, "key.pem"));
    chmodSync(join(dir, "key.pem"), 0o600);
    lines.push(`client_tls_sslmode = require`, `client_tls_cert_file = ${join(dir, "cert.pem")}`, `client_tls_key_file = ${join(dir, "key.pem")}`);
  }
  writeFileSync(join(dir, "pgbouncer.ini"), lines.join("\n") + "\n");
  writeFileSync(join(dir, "users.txt"), `"postgres" ""\n`);
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    for (const f of ["", "pgbouncer.ini", "users.txt", ...(opts.tls ? ["cert.pem", "key.pem"] : [])]) chownSync(join(dir, f), uid, gid);
  }
  const child: ChildProcess = isRoot
    ? spawn("runuser", ["-u", "postgres", "--", bin, join(dir, "pgbouncer.ini")], { stdio: "ignore" })
    : spawn(bin, [join(dir, "pgbouncer.ini")], { stdio: "ignore" });
  await waitForPort(port, 10_000);
  return {
    port,
    pid() {
      try {
        return Number(readFileSync(join(dir, "pgbouncer.pid"), "utf8").trim()) || undefined;
      } catch {
        return undefined;
      }
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        // runuser forwards SIGTERM to pgbouncer
        child.kill("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

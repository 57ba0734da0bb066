/**
 * A private PostgreSQL cluster on a free loopback port, for tests and benchmarks that need settings
 * the shared server does not have (max_connections above 100, pg_hba entries for md5/scram users).
 * initdb refuses to run as root, so the cluster runs as the `postgres` OS user when we are root.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdtempSync, rmSync, writeFileSync, appendFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./free-port.js";

export interface PgCluster {
  host: string;
  port: number;
  dataDir: string;
  /** connection string for the superuser `postgres` (trust on loopback unless hba says otherwise) */
  url(database?: string): string;
  /** stops the server, keeping its data (`fast`: clients get 57P01; `immediate`: a crash) */
  stopServer(mode?: "fast" | "immediate"): void;
  /** starts it again on the same data and port after stopServer */
  startServer(): void;
  /** the postmaster's pid (SIGSTOP it and new connections go unanswered) */
  postmasterPid(): number;
  /** stops the server and removes its data */
  stop(): void;
}

export interface PgClusterOptions {
  maxConnections?: number;
  /** extra postgresql.conf lines */
  conf?: string[];
  /** pg_hba.conf lines, placed before the trust defaults */
  hba?: string[];
  /** serve TLS too (clients choose: sslmode=require or disable) with this certificate and key */
  tls?: { certFile: string; keyFile: string };
  /**
   * log every statement the server runs, with its bound parameters, every error with its statement
   * and every connection, as JSON lines (PG 15's jsonlog) that `statementLog` reads back
   */
  logStatements?: boolean;
  /**
   * with logStatements: also log the plan of every statement the executor finished in any backend,
   * nested ones (inside functions) included, as JSON (auto_explain), so a reader sees what ran
   * without parsing SQL itself
   */
  logPlans?: boolean;
}

/** Where a cluster started with `logStatements` writes its JSON log (one object per line). */
export const STATEMENT_LOG_FILE = "log/statements.json";

/**
 * The settings behind `logStatements`. jsonlog needs the logging collector; one file, never
 * rotated, so a reader can follow it by offset. `log_parameter_max_length = -1` logs bound
 * parameters whole (the default cuts nothing either, but says so explicitly);
 * `log_min_error_statement = error` puts the failing statement beside each error;
 * `log_connections` logs the startup application_name of each backend, which is how a reader tells
 * a proxied session's backend from the proxy's own side connections.
 */
function statementLogConf(plans: boolean): string[] {
  const planConf = [
    "shared_preload_libraries = 'auto_explain'",
    "auto_explain.log_min_duration = 0",
    "auto_explain.log_nested_statements = on",
    "auto_explain.log_format = 'json'",
    "auto_explain.log_verbose = on",
    "auto_explain.log_level = 'log'",
  ];
  return [
    ...(plans ? planConf : []),
    "logging_collector = on",
    "log_destination = 'jsonlog'",
    "log_directory = 'log'",
    "log_filename = 'statements'",
    "log_rotation_age = 0",
    "log_rotation_size = 0",
    "log_truncate_on_rotation = off",
    "log_statement = 'all'",
    "log_parameter_max_length = -1",
    "log_parameter_max_length_on_error = -1",
    "log_min_error_statement = error",
    "log_min_messages = warning",
    "log_connections = on",
    "log_disconnections = off",
    "log_error_verbosity = default",
  ];
}

function pgBinDir(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(base, v, "bin", "initdb"))) return join(base, v, "bin");
  throw new Error("initdb not found under /usr/lib/postgresql/*/bin");
}

function asPostgres(cmd: string, args: string[]): string {
  const isRoot = process.getuid?.() === 0;
  const [file, argv] = isRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return execFileSync(file, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export async function startPgCluster(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = pgBinDir();
  const dataDir = mkdtempSync(join(tmpdir(), "sluice-pg-"));
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    chownSync(dataDir, uid, gid);
  }
  asPostgres(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
  const port = await freePort();
  const tlsConf: string[] = [];
  if (opts.tls) {
    // the server reads its key only when the postgres user owns it and nobody else may read it
    copyFileSync(opts.tls.certFile, join(dataDir, "server.crt"));
    copyFileSync(opts.tls.keyFile, join(dataDir, "server.key"));
    chmodSync(join(dataDir, "server.key"), 0o600);
    if (isRoot) {
      const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
      for (const f of ["server.crt", "server.key"]) chownSync(join(dataDir, f), uid, gid);
    }
    tlsConf.push("ssl = on", `ssl_cert_file = '${join(dataDir, "server.crt")}'`, `ssl_key_file = '${join(dataDir, "server.key")}'`);
  }
  appendFileSync(
    join(dataDir, "postgresql.conf"),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dataDir}'`,
      `max_connections = ${opts.maxConnections ?? 300}`,
      `fsync = off`,
      `synchronous_commit = off`,
      `full_page_writes = off`,
      ...tlsConf,
      ...(opts.logStatements ? statementLogConf(opts.logPlans === true) : []),
      ...(opts.conf ?? []),
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(dataDir, "pg_hba.conf"),
    [...(opts.hba ?? []), "local all all trust", "host all all 127.0.0.1/32 trust", ""].join("\n"),
  );
  asPostgres(join(bin, "pg_ctl"), ["-D", dataDir, "-l", join(dataDir, "server.log"), "-w", "-t", "60", "start"]);
  let stopped = false;
  const ctl = (args: string[]) => asPostgres(join(bin, "pg_ctl"), ["-D", dataDir, ...args]);
  return {
    host: "127.0.0.1",
    port,
    dataDir,
    url: (db = "postgres") => `postgres://postgres@127.0.0.1:${port}/${db}`,
    stopServer(mode = "fast") {
      ctl(["-m", mode, "-w", "-t", "60", "stop"]);
    },
    startServer() {
      ctl(["-l", join(dataDir, "server.log"), "-w", "-t", "60", "start"]);
    },
    postmasterPid() {
      return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      spawnSync(isRoot ? "runuser" : join(bin, "pg_ctl"), isRoot
        ? ["-u", "postgres", "--", join(bin, "pg_ctl"), "-D", dataDir, "-m", "immediate", "-w", "stop"]
        : ["-D", dataDir, "-m", "immediate", "-w", "stop"], { stdio: "ignore" });
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec } from "../policy/bundle.js";

/**
 * Process configuration (file + environment). Environment wins over the file so a container can
 * override single settings. Every problem is reported with the file path and the key.
 */
export interface SluiceConfig {
  region: string;
  node: string;
  logLevel: string;
  nats: NatsSettings;
  controlPlane: {
    /** host:port of the gRPC listener */
    grpcListen: string;
    httpListen: string;
    /** identities allowed to administer (apply policy, …) */
    adminGroups: string[];
    /** issuers trusted for control-plane callers (admins, approvers) */
    issuers: IssuerSpec[];
    readModel: { dialect: "sqlite" | "postgres"; url: string };
    /**
     * a checkpoint every `everyEvents` stream messages (each a batch of events) or `everySeconds`,
     * whichever comes first: what is after the last checkpoint is not proven yet, so seal often
     */
    sealer: { everyEvents: number; everySeconds: number; signingKeyFile?: string };
    /** the web console for people (approvers, auditors, SREs), served on httpListen under /console/ */
    console: ConsoleConfig;
  };
  dataPlane: {
    listen: string;
    httpListen: string;
    /** `disabled` only for loopback development */
    tls: { mode: "required" | "disabled"; certFile?: string; keyFile?: string };
    maxFrameBytes: number;
    /** statements larger than this (UTF-8 bytes) are denied without being parsed (rule statement-too-large) */
    maxStatementBytes: number;
    /**
     * statements longer than 4 KiB are classified in worker threads (at most `workers`); one that
     * takes longer than `timeoutMs` is denied (57014) and its worker replaced
     */
    classifier: { workers: number; timeoutMs: number };
    /**
     * failed handshakes (a rejected token, no policy, …) a source address may have in a row and
     * regains per second; with none left its connections are refused with 53300 and not recorded
     */
    failedHandshakes: { burst: number; perSecond: number };
    /** the upstream connection pool (data-plane/src/upstream/upstream-pool.ts) */
    upstreamPool: UpstreamPoolConfig;
    audit: {
      durability: "ack" | "async";
      bufferEvents: number;
      maxRowsPerStatement: number;
      maxBytesPerStatement: number;
    };
    /** control-plane gRPC address the data plane uses to file approval requests */
    controlPlaneUrl: string;
    heartbeatSeconds: number;
    /**
     * `host:port` pipelines should dial to reach this node (its load balancer or public name), put in
     * its heartbeat for `sluice connect-info`; unset: the listen address
     */
    publicAddress?: string;
  };
}

/**
 * Upstream connections of a data plane. A session that ends cleanly (Terminate with no transaction,
 * COPY, error, cancel or unanswered message) hands its connection, reset with DISCARD ALL (or the
 * resource's `resetQuery`), to the next session of the same resource and startup settings; any
 * other is closed. Warm spares are opened ahead after authenticated sessions.
 */
export interface UpstreamPoolConfig {
  /** hand cleanly ended sessions' connections to the next session (false: one backend per session, as before) */
  reuse: boolean;
  /** most warm spares per (resource, startup settings); 0: none */
  spares: number;
  /** idle connections (spares included) kept per resource and per node */
  maxIdlePerResource: number;
  maxIdle: number;
  /** an idle connection unused this long is closed */
  idleSeconds: number;
  /** a connection this old is not handed out again */
  maxLifetimeSeconds: number;
  /** an idle connection at least this old answers an empty query before it is handed out (0: always) */
  healthCheckAfterSeconds: number;
}

/** Where JetStream puts a stream or bucket in a cluster or supercluster (empty: anywhere). */
export interface NatsPlacement {
  /** the cluster (region) name, e.g. `eu`; "" lets the server choose */
  cluster: string;
  /** server tags the replicas must carry (e.g. `az:eu-west-1a`) */
  tags: string[];
}

export interface NatsSettings {
  /** one URL or a comma-separated list of seed servers (the client learns the rest of the cluster) */
  url: string;
  prefix: string;
  /** JetStream replicas of every stream and bucket: 1 on a single server, 3 (or 5) in a cluster */
  replicas: number;
  /** credentials file (user JWT + seed, from `sluice nats-auth user`); unset: no NATS authentication */
  credsFile?: string;
  /** TLS to NATS: the CA that signed the servers' certificates, and a client pair if they ask for one */
  tls: { caFile?: string; certFile?: string; keyFile?: string };
  /** placement of the control/checkpoint streams and the buckets */
  placement: NatsPlacement;
  /** placement of SLUICE_AUDIT (the evidence): the region of the operator's choice; "" = as `placement` */
  auditPlacement: NatsPlacement;
  /**
   * create or update the streams and buckets at start. The control plane owns them; a data plane
   * running with least-privilege credentials cannot and must not (deploy/config sets it false there).
   */
  manageStreams: boolean;
}

/**
 * An OIDC issuer people sign in to the console with (authorization code flow with PKCE). Its token
 * checks and claim → group rules are those of a bundle issuer; `audience` defaults to `clientId`.
 * Use the same `name` as the bundle issuer of the same identity provider: the no-self-approval rule
 * compares subject and issuer name.
 */
export interface ConsoleIssuer extends Omit<IssuerSpec, "audience"> {
  audience?: string | string[];
  clientId: string;
  /** a reference (`env:NAME` or `file:/path`) for a confidential client; public clients rely on PKCE alone */
  clientSecret?: string;
  /** default: from `<issuer>/.well-known/openid-configuration` */
  authorizationEndpoint?: string;
  tokenEndpoint?: string;
  /** default "openid profile email groups" */
  scopes?: string;
}

export interface ConsoleConfig {
  enabled: boolean;
  /**
   * the console's origin as browsers reach it (e.g. https://sluice.example.com); redirect URIs and the
   * Origin check of every decision use it. Default: http://<httpListen>. https marks cookies Secure.
   */
  publicUrl: string;
  /** HMAC key of the session cookies as `env:NAME` or `file:/path`, shared by replicas; default a random key per process */
  sessionKey?: string;
  /** how long a sign-in lasts, e.g. 8h */
  sessionTtl: string;
  issuers: ConsoleIssuer[];
}

export function defaultConfig(): SluiceConfig {
  return {
    region: "local",
    node: "node-1",
    logLevel: "info",
    nats: {
      url: "nats://127.0.0.1:4222",
      prefix: "",
      replicas: 1,
      credsFile: undefined,
      tls: { caFile: undefined, certFile: undefined, keyFile: undefined },
      placement: { cluster: "", tags: [] },
      auditPlacement: { cluster: "", tags: [] },
      manageStreams: true,
    },
    controlPlane: {
      grpcListen: "127.0.0.1:7400",
      httpListen: "127.0.0.1:7481",
      adminGroups: ["sluice-admins"],
      issuers: [],
      readModel: { dialect: "sqlite", url: ".sluice/read-model.sqlite" },
      // optional keys are present (undefined) so a config file may set them
      sealer: { everyEvents: 1000, everySeconds: 2, signingKeyFile: undefined },
      console: { enabled: true, publicUrl: "", sessionKey: undefined, sessionTtl: "8h", issuers: [] },
    },
    dataPlane: {
      listen: "0.0.0.0:7432",
      httpListen: "127.0.0.1:7480",
      tls: { mode: "required", certFile: undefined, keyFile: undefined },
      maxFrameBytes: 64 * 1024 * 1024,
      maxStatementBytes: 1024 * 1024,
      classifier: { workers: 2, timeoutMs: 5000 },
      failedHandshakes: { burst: 20, perSecond: 1 },
      upstreamPool: { reuse: true, spares: 4, maxIdlePerResource: 20, maxIdle: 100, idleSeconds: 30, maxLifetimeSeconds: 3600, healthCheckAfterSeconds: 5 },
      audit: { durability: "ack", bufferEvents: 10_000, maxRowsPerStatement: 100, maxBytesPerStatement: 64 * 1024 },
      controlPlaneUrl: "127.0.0.1:7400",
      heartbeatSeconds: 5,
      publicAddress: undefined,
    },
  };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function deepMerge(base: Obj, over: Obj, path: string, file: string, problems: string[]): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const p = path ? `${path}.${k}` : k;
    if (!(k in base)) {
      problems.push(`${file}: unknown key ${p}`);
      continue;
    }
    const b = base[k];
    if (isObj(b) && isObj(v)) out[k] = deepMerge(b, v, p, file, problems);
    else if (b !== undefined && b !== null && v !== null && typeof b !== typeof v && !(Array.isArray(b) && Array.isArray(v))) {
      problems.push(`${file}: ${p} must be ${Array.isArray(b) ? "a list" : typeof b}, got ${Array.isArray(v) ? "a list" : typeof v}`);
    } else out[k] = v;
  }
  return out;
}

const ENV: Array<[string, (c: SluiceConfig, v: string) => void]> = [
  ["SLUICE_NATS_URL", (c, v) => (c.nats.url = v)],
  ["SLUICE_NATS_PREFIX", (c, v) => (c.nats.prefix = v)],
  ["SLUICE_NATS_REPLICAS", (c, v) => (c.nats.replicas = replicasFrom(v, "SLUICE_NATS_REPLICAS"))],
  ["SLUICE_NATS_CREDS", (c, v) => (c.nats.credsFile = v)],
  ["SLUICE_REGION", (c, v) => (c.region = v)],
  ["SLUICE_NODE", (c, v) => (c.node = v)],
  ["SLUICE_LOG_LEVEL", (c, v) => (c.logLevel = v)],
  ["SLUICE_GRPC_LISTEN", (c, v) => (c.controlPlane.grpcListen = v)],
  ["SLUICE_CONTROL_PLANE_URL", (c, v) => (c.dataPlane.controlPlaneUrl = v)],
  ["SLUICE_LISTEN", (c, v) => (c.dataPlane.listen = v)],
  ["SLUICE_PUBLIC_ADDRESS", (c, v) => (c.dataPlane.publicAddress = v)],
  ["SLUICE_AUDIT_DURABILITY", (c, v) => {
    if (v !== "ack" && v !== "async") throw new SluiceError("invalid_argument", `SLUICE_AUDIT_DURABILITY must be ack or async, got ${JSON.stringify(v)}`);
    c.dataPlane.audit.durability = v;
  }],
];

function replicasFrom(v: unknown, where: string): number {
  const n = typeof v === "string" ? Number(v) : v;
  // JetStream accepts 1..5; an even count gains nothing over the odd one below it (RAFT majority)
  if (n !== 1 && n !== 3 && n !== 5) throw new SluiceError("invalid_argument", `${where} must be 1, 3 or 5, got ${JSON.stringify(v)}`);
  return n;
}

/** Loads defaults ← file (optional) ← environment. Throws SluiceError(invalid_argument) listing every problem. */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): SluiceConfig {
  let cfg = defaultConfig();
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new SluiceError("invalid_argument", `${file}: cannot read config: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    const doc = parseDocument(text);
    if (doc.errors.length) {
      const e = doc.errors[0]!;
      const pos = e.linePos?.[0];
      throw new SluiceError("invalid_argument", `${file}${pos ? `:${pos.line}:${pos.col}` : ""}: ${e.message.split("\n")[0]}`);
    }
    const raw = doc.toJS() as unknown;
    if (raw !== null && raw !== undefined) {
      if (!isObj(raw)) throw new SluiceError("invalid_argument", `${file}: config must be a mapping`);
      const problems: string[] = [];
      cfg = deepMerge(cfg as unknown as Obj, raw, "", file, problems) as unknown as SluiceConfig;
      if (problems.length) throw new SluiceError("invalid_argument", problems[0]!, { problems });
    }
  }
  for (const [name, set] of ENV) {
    const v = env[name];
    if (v !== undefined && v !== "") set(cfg, v);
  }
  replicasFrom(cfg.nats.replicas, `${file ?? "config"}: nats.replicas`);
  const pool = cfg.dataPlane.upstreamPool;
  for (const k of ["spares", "maxIdlePerResource", "maxIdle", "idleSeconds", "maxLifetimeSeconds", "healthCheckAfterSeconds"] as const) {
    if (!Number.isFinite(pool[k]) || pool[k] < 0) throw new SluiceError("invalid_argument", `${file ?? "config"}: dataPlane.upstreamPool.${k} must be a number ≥ 0, got ${JSON.stringify(pool[k])}`);
  }
  if (pool.idleSeconds === 0 || pool.maxLifetimeSeconds === 0) throw new SluiceError("invalid_argument", `${file ?? "config"}: dataPlane.upstreamPool.${pool.idleSeconds === 0 ? "idleSeconds" : "maxLifetimeSeconds"} must be > 0 (reuse: false turns reuse off)`);
  return cfg;
}

/** Parses `host:port` (or `:port`, or a bare port) for listeners. */
export function parseHostPort(s: string, defaultHost = "127.0.0.1"): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d+)$/.exec(s.trim());
  if (!m) throw new SluiceError("invalid_argument", `not a host:port: ${JSON.stringify(s)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new SluiceError("invalid_argument", `port out of range: ${port}`);
  return { host: m[1] || defaultHost, port };
}

/** Parses durations like `500ms`, `30s`, `10m`, `1h` into milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
  if (!m) throw new SluiceError("invalid_argument", `not a duration (e.g. 30s, 10m, 1h): ${JSON.stringify(s)}`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
  return n * unit;
}

/**
 * `sluice connect-info`'s choice, pure: among the fleet's data planes, the healthy one nearest to
 * the caller. Healthy = heartbeating (not stale) AND answering a TCP connect on its public address
 * now (a node that died seconds ago is still in the fleet bucket until its TTL). Nearest = lowest
 * measured round-trip time, within the hinted region when it has a healthy node, else anywhere.
 */
export interface NodeCandidate {
  node: string;
  region: string;
  /** `host:port` */
  address: string;
  stale: boolean;
  /** connect round-trip time measured now; undefined = unreachable */
  rttMs?: number;
}

export interface NodeChoice {
  chosen?: NodeCandidate;
  /** healthy candidates in the order they were ranked */
  ranked: NodeCandidate[];
  /** true when the hinted region had no healthy node and another region's was chosen */
  fellBack: boolean;
}

export function chooseNearest(candidates: readonly NodeCandidate[], regionHint?: string): NodeChoice {
  const healthy = candidates
    .filter((c) => !c.stale && c.rttMs !== undefined)
    .sort((a, b) => a.rttMs! - b.rttMs! || a.node.localeCompare(b.node));
  const local = regionHint ? healthy.filter((c) => c.region === regionHint) : healthy;
  const ranked = local.length ? [...local, ...healthy.filter((c) => !local.includes(c))] : healthy;
  return { chosen: ranked[0], ranked, fellBack: !!regionHint && local.length === 0 && healthy.length > 0 };
}

export function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address.trim());
  if (!m) throw new Error(`not a host:port address: ${JSON.stringify(address)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

export interface ConnectParams {
  host: string;
  port: number;
  database: string;
  user?: string;
  sslmode: string;
}

/** A libpq connection URI (the password, the pipeline's token, is never part of it: PGPASSWORD). */
export function libpqUri(p: ConnectParams): string {
  const host = p.host.includes(":") ? `[${p.host}]` : p.host;
  const user = p.user ? `${encodeURIComponent(p.user)}@` : "";
  return `postgresql://${user}${host}:${p.port}/${encodeURIComponent(p.database)}?sslmode=${encodeURIComponent(p.sslmode)}`;
}

const shellQuote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;

/** `export PG…=…` lines a pipeline can `eval`. */
export function pgEnv(p: ConnectParams): string {
  const vars: Array<[string, string]> = [
    ["PGHOST", p.host],
    ["PGPORT", String(p.port)],
    ["PGDATABASE", p.database],
    ["PGSSLMODE", p.sslmode],
  ];
  if (p.user) vars.push(["PGUSER", p.user]);
  return vars.map(([k, v]) => `export ${k}=${shellQuote(v)}`).join("\n") + "\n";
}

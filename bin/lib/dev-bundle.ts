import type { Bundle, IssuerSpec, ResourceSpec } from "@sluice/shared/policy";
import { STATEMENT_CLASSES } from "@sluice/shared/policy";

/** The environment variable the dev data plane resolves the upstream password from. */
export const DEV_PASSWORD_ENV = "SLUICE_DEV_UPSTREAM_PASSWORD";

export interface DevUpstream {
  host: string;
  port: number;
  database: string;
  user: string;
  /** the secret itself; only ever placed in the data plane's environment, never in the bundle */
  password?: string;
}

/** Parses `postgres://USER:PASS@HOST:PORT/DB` (postgresql:// too); defaults like libpq. */
export function parseUpstreamUrl(url: string): DevUpstream {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error("--upstream must be a URL like postgres://USER:PASS@HOST:PORT/DB");
  }
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") {
    throw new Error("--upstream must start with postgres:// or postgresql://");
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ""));
  const user = decodeURIComponent(u.username) || "postgres";
  return {
    host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
    port: u.port ? Number(u.port) : 5432,
    database: database || user,
    user,
    password: u.password ? decodeURIComponent(u.password) : undefined,
  };
}

/** The resource entry for the dev upstream: the password is an `env:` reference, never the value. */
export function devResource(name: string, up: DevUpstream): ResourceSpec {
  return {
    name,
    upstream: {
      host: up.host,
      port: up.port,
      database: up.database,
      user: up.user,
      // no password: say so explicitly (validateBundle rejects a resource with no credential reference)
      ...(up.password !== undefined ? { password: `env:${DEV_PASSWORD_ENV}` } : { auth: "trust" as const }),
      tls: "disable",
    },
  };
}

/**
 * The permissive development bundle: the dev issuer, the resource, every statement class allowed to
 * group `dev` and to the admin group.
 */
export function devBundle(issuer: IssuerSpec, resource: ResourceSpec, adminGroup: string): Bundle {
  return {
    issuers: [issuer],
    resources: [resource],
    policies: [
      { name: "dev-all", groups: ["dev", adminGroup], resources: [resource.name], allow: [...STATEMENT_CLASSES] },
    ],
    masking: [],
    groups: ["dev", adminGroup],
  };
}

/**
 * A user's bundle (`--policy FILE`) made to work with the dev stack: the dev issuer replaces any
 * issuer named `dev`, and the dev resource is added when the bundle does not define one by that name.
 * Both go in place or at the end, so a problem in the file keeps its position in the file.
 */
export function withDevParts(bundle: Bundle, issuer: IssuerSpec, resource: ResourceSpec): Bundle {
  const issuers = bundle.issuers.some((i) => i.name === issuer.name) ? bundle.issuers.map((i) => (i.name === issuer.name ? issuer : i)) : [...bundle.issuers, issuer];
  const resources = bundle.resources.some((r) => r.name === resource.name) ? bundle.resources : [...bundle.resources, resource];
  return { ...bundle, issuers, resources };
}

/** The names of a document's list entries (items that are not named mappings are left to validation). */
function namesIn(list: unknown): string[] {
  return Array.isArray(list) ? list.flatMap((x) => (x && typeof x === "object" && typeof (x as { name?: unknown }).name === "string" ? [(x as { name: string }).name] : [])) : [];
}

/**
 * What `sluice dev` does to every document applied to it later (`sluice policy apply FILE` from
 * another shell), before validation: its issuer and its resource stay unless the file defines an
 * issuer or a resource of that name (then the file's replace them), so dev tokens keep working. They
 * go after the file's own entries; a list that is not a list is left for validation to report.
 */
export function keepDevParts(raw: Record<string, unknown>, issuer: IssuerSpec, resource: ResourceSpec): { bundle: Record<string, unknown>; notes: string[] } {
  const notes: string[] = [];
  const out = { ...raw };
  const add = (key: "issuers" | "resources", kind: string, item: IssuerSpec | ResourceSpec) => {
    const list = raw[key];
    if (list !== undefined && list !== null && !Array.isArray(list)) return;
    if (namesIn(list).includes(item.name)) return;
    out[key] = [...((list as unknown[] | null | undefined) ?? []), item];
    notes.push(`sluice dev kept its ${kind} "${item.name}" (the file defines no ${kind} of that name)`);
  };
  add("issuers", "issuer", issuer);
  add("resources", "resource", resource);
  return { bundle: out, notes };
}

/**
 * Validation of a policy bundle (pure). Used on both sides of `sluice policy apply`: the CLI checks a
 * YAML file with positions (parse-bundle.ts supplies a locator), the control plane re-checks the
 * bundle it receives, without positions. Every problem is one line and never echoes a value that may
 * be a secret (a literal password, private key material).
 */
import {
  CLASSIFIERS,
  MASK_STRATEGIES,
  RISKS,
  STATEMENT_CLASSES,
  UPSTREAM_TLS_MODES,
  WEBHOOK_EVENTS,
  WEBHOOK_FORMATS,
  type Bundle,
} from "./bundle.js";

/** A problem in user input; same shape as sluice.v1.Problem (proto/sluice/v1/common.proto). */
export interface Problem {
  /** file path, or `<stdin>` / `<bundle>` when there is none */
  path: string;
  /** 1-based; 0 when the position is unknown (a bundle received without its document) */
  line: number;
  column: number;
  /** JSON pointer into the document, e.g. /policies/1/allow/0 */
  pointer: string;
  message: string;
}

/** Maps a JSON pointer to a position in the source. `key`: point at the mapping key, not its value. */
export type Locator = (pointer: string, key: boolean) => { line: number; column: number } | undefined;

export interface ValidateOptions {
  /** the file path reported in problems (default `<bundle>`) */
  source?: string;
  locate?: Locator;
}

/** `file.yaml:12:7: message` (or `file.yaml: message` without a position). */
export function formatProblem(p: Problem): string {
  return p.line > 0 ? `${p.path}:${p.line}:${p.column}: ${p.message}` : `${p.path}: ${p.pointer ? `${p.pointer}: ` : ""}${p.message}`;
}

/** Algorithms an issuer may list; symmetric (HS*) and `none` are rejected with their own message. */
export const SUPPORTED_ALGORITHMS = [
  "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
] as const;

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$/;
const ENV_REF = /^env:[A-Za-z_][A-Za-z0-9_]*$/;
const FILE_REF = /^file:\/[^\0]*[^/\0]$/;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const TABLE_PATTERN = /^(?:[A-Za-z0-9_$*]+\.)?[A-Za-z0-9_$*]+$/;
const COLUMN_PATTERN = /^(?:[A-Za-z0-9_$*]+\.){0,2}[A-Za-z0-9_$*]+$/;

type Seg = string | number;

/** JSON pointer (RFC 6901) from path segments. */
export function toPointer(segs: readonly Seg[]): string {
  return segs.map((s) => "/" + String(s).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

/** `policies[1].allow` for messages. */
function human(segs: readonly Seg[]): string {
  if (segs.length === 0) return "the bundle";
  let out = "";
  for (const s of segs) {
    if (typeof s === "number") out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += (out ? "." : "") + s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return isMap(v) ? "a mapping" : "a tagged value";
  if (typeof v === "number") return "a number";
  if (typeof v === "boolean") return "a boolean";
  return "a string";
}

/** A plain mapping (not a list, nor a Date/Uint8Array a YAML tag like !!binary may produce). */
function isMap(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const q = (s: string) => JSON.stringify(s);

/** Edit distance, for "did you mean" on typos of keys. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function closest(word: string, options: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const d = distance(word, o);
    if (d < bestD) [best, bestD] = [o, d];
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** Parses `30s`, `10m`, `1h`, `500ms`, `2d` to milliseconds; undefined when malformed. Pure. */
export function parseDurationMs(s: string): number | undefined {
  const m = DURATION_RE.exec(s.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

interface RawProblem {
  segs: Seg[];
  message: string;
  key: boolean;
}

class Checker {
  readonly out: RawProblem[] = [];

  add(segs: Seg[], message: string, key = false): void {
    this.out.push({ segs, message, key });
  }

  keys(obj: Record<string, unknown>, allowed: readonly string[], segs: Seg[]): void {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) {
        const where = segs.length ? `in ${human(segs)}` : "at the top level";
        const near = closest(k, allowed);
        const hint = near ? `did you mean ${q(near)}? ` : "";
        this.add([...segs, k], `unknown key ${q(k)} ${where} (${hint}expected one of ${allowed.join(", ")})`, true);
      }
    }
  }

  map(v: unknown, segs: Seg[]): v is Record<string, unknown> {
    if (isMap(v)) return true;
    this.add(segs, `${human(segs)} must be a mapping, got ${kindOf(v)}`);
    return false;
  }

  str(obj: Record<string, unknown>, k: string, segs: Seg[], required: boolean): string | undefined {
    const v = obj[k];
    if (v === undefined || v === null) {
      if (required) this.add(segs, `${human(segs)} is missing ${q(k)}`);
      return undefined;
    }
    if (typeof v !== "string" || v.length === 0) {
      this.add([...segs, k], `${human([...segs, k])} must be a non-empty string, got ${typeof v === "string" ? "an empty string" : kindOf(v)}`);
      return undefined;
    }
    return v;
  }

  name(obj: Record<string, unknown>, segs: Seg[], what: string): string | undefined {
    const n = this.str(obj, "name", segs, true);
    if (n !== undefined && !NAME_RE.test(n)) {
      this.add([...segs, "name"], `${what} name ${q(n)} is not valid (letters, digits, _ . -; at most 63 characters)`);
      return undefined;
    }
    return n;
  }

  /** A list of non-empty strings; `present` reports whether the key was there at all. */
  strList(obj: Record<string, unknown>, k: string, segs: Seg[], opts: { required?: boolean; nonEmpty?: boolean } = {}): string[] | undefined {
    const v = obj[k];
    const at = [...segs, k];
    if (v === undefined || v === null) {
      if (opts.required) this.add(segs, `${human(segs)} is missing ${q(k)}`);
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.add(at, `${human(at)} must be a list of strings, got ${kindOf(v)}`);
      return undefined;
    }
    if (opts.nonEmpty && v.length === 0) this.add(at, `${human(at)} must not be empty`);
    const out: string[] = [];
    v.forEach((x, i) => {
      if (typeof x !== "string" || x.length === 0) this.add([...at, i], `${human(at)}[${i}] must be a non-empty string, got ${typeof x === "string" ? "an empty string" : kindOf(x)}`);
      else out.push(x);
    });
    return out;
  }

  /** The list under `k` ([] when absent); `broken` is set when it is there but not a list. */
  list(obj: Record<string, unknown>, k: string, segs: Seg[], broken?: { value: boolean }): unknown[] {
    const v = obj[k];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.add([...segs, k], `${human([...segs, k])} must be a list, got ${kindOf(v)}`);
      if (broken) broken.value = true;
      return [];
    }
    return v;
  }

  /** Reports a second use of a name, pointing at the later one. */
  unique(seen: Map<string, Seg[]>, name: string | undefined, segs: Seg[], what: string): void {
    if (name === undefined) return;
    const first = seen.get(name);
    if (first) this.add([...segs, "name"], `duplicate ${what} name ${q(name)} (also ${human(first)})`);
    else seen.set(name, segs);
  }
}

function isLoopback(u: URL): boolean {
  return ["127.0.0.1", "localhost", "[::1]", "::1"].includes(u.hostname);
}

/** An http(s) URL; plain http only to a loopback host (a JWKS over http could be swapped in transit). */
function checkUrl(c: Checker, v: string, segs: Seg[]): void {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    c.add(segs, `${human(segs)} must be an https URL`);
    return;
  }
  if (u.protocol === "https:") return;
  if (u.protocol === "http:" && isLoopback(u)) return;
  c.add(segs, `${human(segs)} must be an https URL (plain http only on loopback)`);
}

const TOP_KEYS = ["issuers", "resources", "policies", "masking", "groups", "notifications"] as const;
const ISSUER_KEYS = ["name", "issuer", "audience", "jwksUrl", "jwks", "discovery", "algorithms", "groups"] as const;
const RESOURCE_KEYS = ["name", "upstream"] as const;
const UPSTREAM_KEYS = ["host", "port", "database", "user", "password", "auth", "tls", "ca", "resetQuery"] as const;
const POLICY_KEYS = ["name", "groups", "resources", "issuers", "allow", "requireApproval", "deny", "tables", "approval"] as const;
const MASKING_KEYS = ["name", "resources", "columns", "types", "classifiers", "custom", "strategy"] as const;

interface Names {
  resources: Set<string>;
  /** issuer names, for policies scoped with `issuers:` */
  issuers: Set<string>;
  issuersBroken: { value: boolean };
  groups: Set<string>;
  /** issuers with a `claim:` rule, for the unknown-group hint */
  claimIssuers: string[];
  /** a defining section could not be read completely: skip "unknown X" checks rather than cascade */
  resourcesBroken: { value: boolean };
  groupsBroken: { value: boolean };
}

function checkIssuer(c: Checker, v: unknown, segs: Seg[], names: Names): string | undefined {
  if (!c.map(v, segs)) {
    names.groupsBroken.value = true;
    return undefined;
  }
  c.keys(v, ISSUER_KEYS, segs);
  const name = c.name(v, segs, "issuer");
  const iss = c.str(v, "issuer", segs, true);
  if (iss !== undefined) checkUrl(c, iss, [...segs, "issuer"]);

  const aud = v.audience;
  if (aud === undefined || aud === null) c.add(segs, `${human(segs)} is missing "audience" (the aud its tokens must carry)`);
  else if (Array.isArray(aud)) c.strList(v, "audience", segs, { nonEmpty: true });
  else c.str(v, "audience", segs, true);

  const hasUrl = v.jwksUrl !== undefined && v.jwksUrl !== null;
  const hasJwks = v.jwks !== undefined && v.jwks !== null;
  // the keys: jwksUrl, inline jwks, or OIDC discovery at the issuer URL (`discovery: true`, or
  // neither of the others, as a relying party would)
  const disc = v.discovery;
  if (disc !== undefined && disc !== null && typeof disc !== "boolean") {
    c.add([...segs, "discovery"], `${human([...segs, "discovery"])} must be true or false, got ${kindOf(disc)}`);
  } else if (disc === true && (hasUrl || hasJwks)) {
    c.add([...segs, "discovery"], `${human(segs)} has discovery: true and ${hasUrl ? "jwksUrl" : "jwks"}: give one (discovery finds the JWKS URL itself)`, true);
  } else if (disc === false && !hasUrl && !hasJwks) {
    c.add(segs, `${human(segs)} needs jwksUrl or jwks when discovery is false (where its signing keys are published)`);
  }
  if (hasUrl && hasJwks) c.add([...segs, "jwks"], `${human(segs)} has both jwksUrl and jwks: give one`, true);
  if (hasUrl) {
    const u = c.str(v, "jwksUrl", segs, true);
    if (u !== undefined) checkUrl(c, u, [...segs, "jwksUrl"]);
  }
  if (hasJwks) {
    const at = [...segs, "jwks"];
    if (c.map(v.jwks, at)) {
      c.keys(v.jwks, ["keys"], at);
      const keys = v.jwks.keys;
      if (!Array.isArray(keys) || keys.length === 0) c.add(at, `${human(at)} must have a non-empty "keys" list`);
      else
        keys.forEach((k, i) => {
          const kat = [...at, "keys", i];
          if (!c.map(k, kat)) return;
          if (typeof k.kty !== "string") c.add(kat, `${human(kat)} is not a JWK (missing "kty")`);
          else if (k.kty === "oct") c.add(kat, `${human(kat)} is a symmetric key: issuers must publish public keys`);
          // never echo the value: it is a private key
          if ("d" in k || "p" in k || "k" in k) c.add(kat, `${human(kat)} contains private key material: publish only the public key`);
        });
    }
  }

  const algs = c.strList(v, "algorithms", segs, { nonEmpty: true });
  algs?.forEach((a, i) => {
    const at = [...segs, "algorithms", i];
    if (a.toLowerCase() === "none") c.add(at, `algorithm "none" in ${human([...segs, "algorithms"])} is never accepted (unsigned tokens)`);
    else if (/^HS\d+$/i.test(a))
      c.add(at, `algorithm ${q(a)} in ${human([...segs, "algorithms"])} is never accepted (symmetric: anyone holding the issuer's public key could sign)`);
    else if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(a))
      c.add(at, `unknown algorithm ${q(a)} in ${human([...segs, "algorithms"])} (expected one of ${SUPPORTED_ALGORITHMS.join(", ")})`);
  });

  c.list(v, "groups", segs, names.groupsBroken).forEach((r, i) => {
    const at = [...segs, "groups", i];
    if (!c.map(r, at)) {
      names.groupsBroken.value = true;
      return;
    }
    if ("group" in r) {
      c.keys(r, ["group", "when"], at);
      const g = c.str(r, "group", at, true);
      if (g !== undefined) names.groups.add(g);
      else names.groupsBroken.value = true;
      if (r.when === undefined || r.when === null) c.add(at, `${human(at)} is missing "when" (the claims that grant ${q(g ?? "the group")})`);
      else if (c.map(r.when, [...at, "when"])) {
        const conds = Object.entries(r.when);
        if (conds.length === 0) c.add([...at, "when"], `${human([...at, "when"])} is empty: it would grant the group to every token of the issuer`);
        for (const [claim, val] of conds) {
          const cat = [...at, "when", claim];
          const ok = typeof val === "string" || (Array.isArray(val) && val.length > 0 && val.every((x) => typeof x === "string"));
          if (!ok) c.add(cat, `${human(cat)} must be a string or a non-empty list of strings, got ${kindOf(val)} (quote numbers and booleans)`);
        }
      }
    } else if ("claim" in r) {
      c.keys(r, ["claim", "prefix"], at);
      c.str(r, "claim", at, true);
      if (r.prefix !== undefined) c.str(r, "prefix", at, false);
      if (name !== undefined) names.claimIssuers.push(name);
    } else {
      c.add(at, `${human(at)} must be either {group, when} or {claim, prefix?}`);
      names.groupsBroken.value = true;
    }
  });
  return name;
}

function checkCredentialRef(c: Checker, up: Record<string, unknown>, segs: Seg[]): void {
  const at = [...segs, "password"];
  const pw = up.password;
  const trust = up.auth === "trust";
  if (pw === undefined || pw === null) {
    if (!trust)
      c.add(segs, `${human(segs)} is missing the credential reference "password" (env:NAME or file:/absolute/path; or auth: trust for an upstream that needs none)`);
    return;
  }
  if (trust) {
    c.add(at, `${human(at)} must be absent with auth: trust`);
    return;
  }
  if (typeof pw !== "string") {
    c.add(at, `${human(at)} must be a credential reference (env:NAME or file:/absolute/path), got ${kindOf(pw)}`);
    return;
  }
  if (ENV_REF.test(pw) || FILE_REF.test(pw)) return;
  // Never echo the value: it may be the password itself.
  if (pw.startsWith("env:")) c.add(at, `malformed credential reference in ${human(at)}: env: needs a variable name (letters, digits, _)`);
  else if (pw.startsWith("file:")) c.add(at, `malformed credential reference in ${human(at)}: file: needs an absolute file path`);
  else c.add(at, `${human(at)} looks like a literal password: use a reference (env:NAME or file:/absolute/path) so the secret stays out of the bundle`);
}

function checkResource(c: Checker, v: unknown, segs: Seg[]): string | undefined {
  if (!c.map(v, segs)) return undefined;
  c.keys(v, RESOURCE_KEYS, segs);
  const name = c.name(v, segs, "resource");
  const at = [...segs, "upstream"];
  if (v.upstream === undefined || v.upstream === null) {
    c.add(segs, `${human(segs)} is missing "upstream"`);
    return name;
  }
  if (!c.map(v.upstream, at)) return name;
  const up = v.upstream;
  c.keys(up, UPSTREAM_KEYS, at);
  c.str(up, "host", at, true);
  if (up.port !== undefined && up.port !== null && !(Number.isInteger(up.port) && (up.port as number) >= 1 && (up.port as number) <= 65535))
    c.add([...at, "port"], `${human([...at, "port"])} must be a port number (1-65535), got ${kindOf(up.port)}`);
  c.str(up, "database", at, true);
  c.str(up, "user", at, true);
  if (up.auth !== undefined && up.auth !== "trust" && up.auth !== "password")
    c.add([...at, "auth"], `unknown upstream auth ${q(String(up.auth))} in ${human([...at, "auth"])} (expected one of password, trust)`);
  checkCredentialRef(c, up, at);
  const tls = c.str(up, "tls", at, false);
  if (tls !== undefined && !(UPSTREAM_TLS_MODES as readonly string[]).includes(tls))
    c.add([...at, "tls"], `unknown upstream tls mode ${q(tls)} in ${human([...at, "tls"])} (expected one of ${UPSTREAM_TLS_MODES.join(", ")})`);
  const ca = c.str(up, "ca", at, false);
  if (ca !== undefined && !FILE_REF.test(ca)) c.add([...at, "ca"], `${human([...at, "ca"])} must be a file reference (file:/absolute/path)`);
  const reset = c.str(up, "resetQuery", at, false);
  if (reset !== undefined && (reset.trim() === "" || reset.length > 4096))
    c.add([...at, "resetQuery"], `${human([...at, "resetQuery"])} must be SQL of 1 to 4096 characters (leave it out for DISCARD ALL)`);
  return name;
}

type RefKind = "group" | "resource" | "issuer" | "webhook";

function checkPolicy(c: Checker, v: unknown, segs: Seg[]): { name?: string; refs: Array<{ kind: RefKind; name: string; segs: Seg[] }> } {
  const refs: Array<{ kind: RefKind; name: string; segs: Seg[] }> = [];
  if (!c.map(v, segs)) return { refs };
  c.keys(v, POLICY_KEYS, segs);
  const name = c.name(v, segs, "policy");
  const ref = (kind: RefKind, key: string, list: string[] | undefined, base = segs) =>
    list?.forEach((n, i) => refs.push({ kind, name: n, segs: [...base, key, i] }));
  ref("group", "groups", c.strList(v, "groups", segs, { required: true, nonEmpty: true }));
  ref("resource", "resources", c.strList(v, "resources", segs, { required: true, nonEmpty: true }));
  // optional; an empty list would silently make the policy apply to nobody
  ref("issuer", "issuers", c.strList(v, "issuers", segs, { nonEmpty: true }));

  const classes = STATEMENT_CLASSES as readonly string[];
  const classesAndRisks = [...STATEMENT_CLASSES, ...RISKS] as readonly string[];
  c.strList(v, "allow", segs, { required: true })?.forEach((x, i) => {
    if (!classes.includes(x))
      c.add([...segs, "allow", i], `unknown statement class ${q(x)} in ${human([...segs, "allow"])} (expected one of ${classes.join(", ")})`);
  });
  for (const k of ["requireApproval", "deny"] as const) {
    c.strList(v, k, segs)?.forEach((x, i) => {
      if (!classesAndRisks.includes(x))
        c.add(
          [...segs, k, i],
          `unknown statement class or risk ${q(x)} in ${human([...segs, k])} (expected a class: ${classes.join(", ")}; or a risk: ${RISKS.join(", ")})`,
        );
    });
  }

  if (v.tables !== undefined && v.tables !== null && c.map(v.tables, [...segs, "tables"])) {
    const at = [...segs, "tables"];
    c.keys(v.tables, ["allow", "deny"], at);
    for (const k of ["allow", "deny"] as const)
      c.strList(v.tables, k, at)?.forEach((p, i) => {
        if (!TABLE_PATTERN.test(p)) c.add([...at, k, i], `table pattern ${q(p)} in ${human([...at, k])} must be table, schema.table, or a glob with * (e.g. public.*)`);
      });
  }

  const needsApproval = Array.isArray(v.requireApproval) && v.requireApproval.length > 0;
  if (v.approval !== undefined && v.approval !== null) {
    const at = [...segs, "approval"];
    if (c.map(v.approval, at)) {
      c.keys(v.approval, ["approvers", "timeout", "notify"], at);
      ref("group", "approvers", c.strList(v.approval, "approvers", at, { required: true, nonEmpty: true }), at);
      ref("webhook", "notify", c.strList(v.approval, "notify", at), at);
      const t = v.approval.timeout;
      if (t === undefined || t === null) c.add(at, `${human(at)} is missing "timeout" (e.g. 10m)`);
      else if (typeof t !== "string") c.add([...at, "timeout"], `${human([...at, "timeout"])} must be a duration like 30s, 10m or 1h, got ${kindOf(t)}`);
      else {
        const ms = parseDurationMs(t);
        if (ms === undefined) c.add([...at, "timeout"], `bad duration ${q(t)} in ${human([...at, "timeout"])} (expected e.g. 30s, 10m, 1h)`);
        else if (ms <= 0) c.add([...at, "timeout"], `${human([...at, "timeout"])} must be longer than zero`);
      }
    }
  } else if (needsApproval) {
    c.add(segs, `${human(segs)} has requireApproval but no approval: {approvers, timeout}: nobody could approve`);
  }
  return { name, refs };
}

function checkMasking(c: Checker, v: unknown, segs: Seg[]): { name?: string; refs: Array<{ name: string; segs: Seg[] }> } {
  const refs: Array<{ name: string; segs: Seg[] }> = [];
  if (!c.map(v, segs)) return { refs };
  c.keys(v, MASKING_KEYS, segs);
  let name: string | undefined;
  if (v.name !== undefined) name = c.name(v, segs, "masking rule");
  c.strList(v, "resources", segs, { required: true, nonEmpty: true })?.forEach((n, i) => refs.push({ name: n, segs: [...segs, "resources", i] }));
  const columns = c.strList(v, "columns", segs);
  columns?.forEach((p, i) => {
    if (!COLUMN_PATTERN.test(p)) c.add([...segs, "columns", i], `column ${q(p)} in ${human([...segs, "columns"])} must be column, table.column or schema.table.column`);
  });
  const types = c.strList(v, "types", segs);

  const customNames = new Map<string, Seg[]>();
  const custom = c.list(v, "custom", segs);
  custom.forEach((x, i) => {
    const at = [...segs, "custom", i];
    if (!c.map(x, at)) return;
    c.keys(x, ["name", "pattern"], at);
    const n = c.name(x, at, "classifier");
    if (n !== undefined && (CLASSIFIERS as readonly string[]).includes(n)) c.add([...at, "name"], `custom classifier ${q(n)} shadows a built-in classifier`);
    c.unique(customNames, n, at, "custom classifier");
    const pat = c.str(x, "pattern", at, true);
    if (pat !== undefined) {
      try {
        new RegExp(pat, "u");
      } catch (e) {
        const why = (e as Error).message.replace(/^Invalid regular expression: /, "").replace(/^\/.*\/\w*: /, "");
        c.add([...at, "pattern"], `bad regular expression in ${human([...at, "pattern"])}: ${why}`);
      }
    }
  });

  const classifiers = c.strList(v, "classifiers", segs);
  classifiers?.forEach((x, i) => {
    if (!(CLASSIFIERS as readonly string[]).includes(x) && !customNames.has(x))
      c.add(
        [...segs, "classifiers", i],
        `unknown classifier ${q(x)} in ${human([...segs, "classifiers"])} (expected one of ${[...CLASSIFIERS, ...customNames.keys()].join(", ")})`,
      );
  });
  if (!columns?.length && !types?.length && !classifiers?.length && custom.length === 0)
    c.add(segs, `${human(segs)} selects nothing to mask: give columns, types, classifiers or custom`);

  const strategy = v.strategy;
  if (strategy === undefined || strategy === null) c.add(segs, `${human(segs)} is missing "strategy" (one of ${MASK_STRATEGIES.join(", ")})`);
  else if (typeof strategy !== "string" || !(MASK_STRATEGIES as readonly string[]).includes(strategy))
    c.add([...segs, "strategy"], `unknown masking strategy ${q(String(strategy))} in ${human([...segs, "strategy"])} (expected one of ${MASK_STRATEGIES.join(", ")})`);
  return { name, refs };
}

const WEBHOOK_KEYS = ["name", "url", "format", "secret", "on"] as const;

/** A reference, never the secret itself; the message never echoes the value (it may be the secret). */
function checkSecretRef(c: Checker, v: Record<string, unknown>, k: string, segs: Seg[], what: string): void {
  const at = [...segs, k];
  const ref = v[k];
  if (ref === undefined || ref === null) {
    c.add(segs, `${human(segs)} is missing ${q(k)}: a reference to the ${what} (env:NAME or file:/absolute/path)`);
    return;
  }
  if (typeof ref === "string" && (ENV_REF.test(ref) || FILE_REF.test(ref))) return;
  if (typeof ref !== "string") c.add(at, `${human(at)} must be a reference to the ${what} (env:NAME or file:/absolute/path), got ${kindOf(ref)}`);
  else if (ref.startsWith("env:")) c.add(at, `malformed reference in ${human(at)}: env: needs a variable name (letters, digits, _)`);
  else if (ref.startsWith("file:")) c.add(at, `malformed reference in ${human(at)}: file: needs an absolute file path`);
  else c.add(at, `${human(at)} looks like a literal ${what}: use a reference (env:NAME or file:/absolute/path) so the secret stays out of the bundle and its events`);
}

/** `notifications`: the webhooks and the global list; returns the webhook names (undefined when they could not all be read). */
function checkNotifications(c: Checker, v: unknown): Set<string> | undefined {
  const names = new Set<string>();
  if (v === undefined || v === null) return names;
  const segs: Seg[] = ["notifications"];
  if (!c.map(v, segs)) return undefined;
  c.keys(v, ["webhooks", "approvals"], segs);
  let complete = true;
  const seen = new Map<string, Seg[]>();
  const broken = { value: false };
  c.list(v, "webhooks", segs, broken).forEach((w, i) => {
    const at = [...segs, "webhooks", i];
    if (!c.map(w, at)) {
      complete = false;
      return;
    }
    c.keys(w, WEBHOOK_KEYS, at);
    const n = c.name(w, at, "webhook");
    if (n === undefined) complete = false;
    c.unique(seen, n, at, "webhook");
    if (n !== undefined) names.add(n);
    const url = w.url;
    if (typeof url === "string" && (url.startsWith("env:") || url.startsWith("file:"))) checkSecretRef(c, w, "url", at, "webhook URL");
    else {
      const u = c.str(w, "url", at, true);
      if (u !== undefined) checkUrl(c, u, [...at, "url"]);
    }
    checkSecretRef(c, w, "secret", at, "signing secret");
    const format = c.str(w, "format", at, false);
    if (format !== undefined && !(WEBHOOK_FORMATS as readonly string[]).includes(format))
      c.add([...at, "format"], `unknown webhook format ${q(format)} in ${human([...at, "format"])} (expected one of ${WEBHOOK_FORMATS.join(", ")})`);
    c.strList(w, "on", at, { nonEmpty: true })?.forEach((e, j) => {
      if (!(WEBHOOK_EVENTS as readonly string[]).includes(e))
        c.add([...at, "on", j], `unknown webhook event ${q(e)} in ${human([...at, "on"])} (expected one of ${WEBHOOK_EVENTS.join(", ")})`);
    });
  });
  if (broken.value) complete = false;
  c.strList(v, "approvals", segs)?.forEach((n, i) => {
    if (complete && !names.has(n)) c.add([...segs, "approvals", i], `unknown webhook ${q(n)} in notifications.approvals (no entry in notifications.webhooks has that name)`);
  });
  return complete ? names : undefined;
}

/**
 * Checks a bundle (as parsed from YAML, or as received as JSON) and returns every problem found, in
 * document order per section. An empty list means the bundle is valid. Pure.
 */
export function validateBundle(bundle: unknown, opts: ValidateOptions = {}): Problem[] {
  const c = new Checker();
  if (isMap(bundle)) {
    c.keys(bundle, TOP_KEYS, []);
    const names: Names = {
      resources: new Set(),
      issuers: new Set(),
      issuersBroken: { value: false },
      groups: new Set(),
      claimIssuers: [],
      resourcesBroken: { value: false },
      groupsBroken: { value: false },
    };

    const before = c.out.length;
    const declared = c.strList(bundle, "groups", []);
    declared?.forEach((g) => names.groups.add(g));
    if (c.out.length > before) names.groupsBroken.value = true;

    const seenIssuers = new Map<string, Seg[]>();
    const issuers = c.list(bundle, "issuers", [], names.groupsBroken);
    if (names.groupsBroken.value) names.issuersBroken.value = true;
    issuers.forEach((v, i) => {
      const n = checkIssuer(c, v, ["issuers", i], names);
      c.unique(seenIssuers, n, ["issuers", i], "issuer");
      if (n === undefined) names.issuersBroken.value = true;
      else names.issuers.add(n);
    });
    const seenResources = new Map<string, Seg[]>();
    c.list(bundle, "resources", [], names.resourcesBroken).forEach((v, i) => {
      const n = checkResource(c, v, ["resources", i]);
      if (n === undefined) names.resourcesBroken.value = true;
      c.unique(seenResources, n, ["resources", i], "resource");
      if (n !== undefined) names.resources.add(n);
    });
    const webhooks = checkNotifications(c, bundle.notifications);
    const seenPolicies = new Map<string, Seg[]>();
    c.list(bundle, "policies", []).forEach((v, i) => {
      const { name, refs } = checkPolicy(c, v, ["policies", i]);
      c.unique(seenPolicies, name, ["policies", i], "policy");
      for (const r of refs) {
        const where = human(r.segs.slice(0, -1));
        // `*` in a policy's groups or resources means "any" (evaluate.ts); approvers must be real groups
        const wildcard = r.name === "*" && !r.segs.includes("approvers");
        if (r.kind === "webhook") {
          if (webhooks && !webhooks.has(r.name)) c.add(r.segs, `unknown webhook ${q(r.name)} in ${where} (no entry in notifications.webhooks has that name)`);
          continue;
        }
        if (r.kind === "issuer") {
          // no wildcard here: an unscoped policy simply omits `issuers`
          if (!names.issuers.has(r.name) && !names.issuersBroken.value) {
            const known = names.issuers.size ? `known: ${[...names.issuers].join(", ")}` : "the bundle has no issuers";
            c.add(r.segs, `unknown issuer ${q(r.name)} in ${where} (${known})`);
          }
          continue;
        }
        if (wildcard) continue;
        if (r.kind === "resource") {
          if (!names.resources.has(r.name) && !names.resourcesBroken.value)
            c.add(r.segs, `unknown resource ${q(r.name)} in ${where} (no entry in resources has that name)`);
        } else if (!names.groups.has(r.name) && !names.groupsBroken.value) {
          const hint = names.claimIssuers.length
            ? `; issuer ${names.claimIssuers.map(q).join(", ")} takes groups from a claim, so declare the names it may carry in the top-level "groups:" list`
            : `; add a "group:" rule to an issuer or list it under the top-level "groups:"`;
          c.add(r.segs, `unknown group ${q(r.name)} in ${where}: no issuer rule produces it${hint}`);
        }
      }
    });
    const seenMasking = new Map<string, Seg[]>();
    c.list(bundle, "masking", []).forEach((v, i) => {
      const { name, refs } = checkMasking(c, v, ["masking", i]);
      c.unique(seenMasking, name, ["masking", i], "masking rule");
      for (const r of refs)
        if (r.name !== "*" && !names.resources.has(r.name) && !names.resourcesBroken.value) c.add(r.segs, `unknown resource ${q(r.name)} in ${human(r.segs.slice(0, -1))} (no entry in resources has that name)`);
    });
  } else if (bundle === null || bundle === undefined) {
    c.add([], "the bundle is empty (expected a mapping with issuers, resources, policies, masking)");
  } else {
    c.add([], `the bundle must be a mapping with issuers, resources, policies, masking; got ${kindOf(bundle)}`);
  }

  const path = opts.source ?? "<bundle>";
  const problems = c.out.map((r) => {
    const pointer = toPointer(r.segs);
    const pos = opts.locate?.(pointer, r.key);
    return { path, line: pos?.line ?? 0, column: pos?.column ?? 0, pointer, message: r.message };
  });
  // document order when positions are known (Array.prototype.sort is stable: same spot keeps check order)
  return opts.locate ? problems.sort((a, b) => a.line - b.line || a.column - b.column) : problems;
}

/**
 * Fills defaults in a VALID bundle so consumers see every list: missing sections become [], issuer
 * `groups` [], an issuer with neither jwksUrl nor jwks `discovery: true`, upstream `port` 5432 (tls is left to the data plane's default). Returns a new object; the input is not changed.
 */
export function normalizeBundle(raw: Record<string, unknown>): Bundle {
  const b = structuredClone(raw) as unknown as Bundle & Record<string, unknown>;
  b.issuers = (b.issuers ?? []).map((s) => {
    const out = { ...s, groups: s.groups ?? [] };
    // an issuer given by its URL alone is found by OIDC discovery: said explicitly for every consumer
    if (!s.jwksUrl && !s.jwks) out.discovery = true;
    else if (s.discovery === null || s.discovery === false) delete out.discovery;
    return out;
  });
  b.resources = (b.resources ?? []).map((r) => ({
    ...r,
    upstream: { ...r.upstream, port: r.upstream.port ?? 5432 },
  }));
  // `issuers: null` in YAML means "not scoped", like leaving the key out
  b.policies = (b.policies ?? []).map((p) => {
    if (p.issuers !== null) return p;
    const { issuers: _none, ...rest } = p;
    return rest;
  });
  b.masking = b.masking ?? [];
  if (b.groups === null) delete b.groups;
  if (b.notifications === null) delete b.notifications;
  else if (b.notifications) b.notifications = { ...b.notifications, webhooks: b.notifications.webhooks ?? [] };
  return b;
}

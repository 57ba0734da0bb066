/**
 * A development OIDC issuer (`sluice dev`, tests): one ES256 signing key, its public JWKS, and a
 * `mint` for tokens. The private key can be persisted to a 0600 file so `sluice token` in another
 * shell mints with the same key the running stack trusts. Never for production identities.
 */
import { readFile, writeFile, chmod, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import {
  SignJWT,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
} from "jose";
import { SluiceError } from "../errors/index.js";
import type { IssuerSpec, Jwks } from "../policy/bundle.js";

export const DEV_ISSUER_NAME = "dev";
const DEV_ALG = "ES256";

export interface DevIssuerOptions {
  /** the `iss` URL (e.g. http://127.0.0.1:7481/dev) */
  issuer: string;
  audience: string;
  /** load the private key from this file, or generate one and write it there (mode 0600) */
  keyFile?: string;
  /** with keyFile: generate a key when the file is missing (default true); false → error instead */
  create?: boolean;
}

export interface MintOptions {
  sub: string;
  groups?: string[];
  /** extra claims; cannot override iss/aud/iat/exp */
  claims?: Record<string, unknown>;
  /** lifetime in seconds (default 600) */
  ttlSec?: number;
  /** override the audience (tests of wrong-audience handling) */
  audience?: string | string[];
  /** issue time (default now) */
  now?: Date;
  /** not-before as seconds since epoch */
  nbf?: number;
}

export interface DevIssuer {
  issuer: string;
  audience: string;
  kid: string;
  /** public keys only */
  jwks: Jwks;
  mint(opts: MintOptions): Promise<string>;
  /** the private JWK (with kid and alg) — the content of the key file */
  exportPrivate(): Promise<JWK>;
}

async function loadKeyFile(path: string): Promise<JWK | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new SluiceError("failed_precondition", `cannot read dev issuer key file ${path}: ${(e as Error).message}`);
  }
  try {
    const jwk = JSON.parse(text) as JWK;
    if (typeof jwk.d !== "string" || !jwk.kty) throw new Error("not a private JWK");
    return jwk;
  } catch (e) {
    throw new SluiceError("failed_precondition", `dev issuer key file ${path} is not a private JWK: ${(e as Error).message}`);
  }
}

export async function writeDevKeyFile(path: string, jwk: JWK): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(jwk) + "\n", { mode: 0o600 });
  await chmod(path, 0o600);
}

export async function createDevIssuer(opts: DevIssuerOptions): Promise<DevIssuer> {
  let privateJwk = opts.keyFile ? await loadKeyFile(opts.keyFile) : undefined;
  if (!privateJwk) {
    if (opts.keyFile && opts.create === false) {
      throw new SluiceError("failed_precondition", `no dev issuer key at ${opts.keyFile}`);
    }
    const { privateKey } = await generateKeyPair(DEV_ALG, { extractable: true });
    const jwk = await exportJWK(privateKey);
    privateJwk = { ...jwk, alg: DEV_ALG, use: "sig", kid: await calculateJwkThumbprint(jwk) };
    if (opts.keyFile) await writeDevKeyFile(opts.keyFile, privateJwk);
  }
  const alg = privateJwk.alg ?? DEV_ALG;
  const kid = privateJwk.kid ?? (await calculateJwkThumbprint(privateJwk));
  const key = (await importJWK({ ...privateJwk, alg }, alg)) as CryptoKey;
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, key_ops: _ops, ext: _ext, ...pub } = privateJwk;
  const publicJwk = { ...pub, alg, use: "sig", kid };
  const exported: JWK = { ...privateJwk, alg, kid };

  return {
    issuer: opts.issuer,
    audience: opts.audience,
    kid,
    jwks: { keys: [publicJwk] },
    async mint(m: MintOptions): Promise<string> {
      const iat = Math.floor((m.now ?? new Date()).getTime() / 1000);
      const extra: Record<string, unknown> = { ...(m.claims ?? {}) };
      for (const reserved of ["iss", "aud", "iat", "exp", "sub"]) delete extra[reserved];
      if (m.groups) extra.groups = m.groups;
      if (m.nbf !== undefined) extra.nbf = m.nbf;
      return new SignJWT(extra)
        .setProtectedHeader({ alg, kid, typ: "JWT" })
        .setIssuer(opts.issuer)
        .setAudience(m.audience ?? opts.audience)
        .setSubject(m.sub)
        .setIssuedAt(iat)
        .setExpirationTime(iat + (m.ttlSec ?? 600))
        .sign(key);
    },
    async exportPrivate(): Promise<JWK> {
      return { ...exported };
    },
  };
}

/**
 * The bundle issuer entry for a dev issuer: name `dev`, groups from the `groups` claim, keys inline
 * (default) or, with `jwksUrl`, fetched from where `sluice dev` serves `dev.jwks` over HTTP.
 */
export function devIssuerSpec(dev: Pick<DevIssuer, "issuer" | "audience" | "jwks">, opts: { jwksUrl?: string } = {}): IssuerSpec {
  return {
    name: DEV_ISSUER_NAME,
    issuer: dev.issuer,
    audience: dev.audience,
    ...(opts.jwksUrl ? { jwksUrl: opts.jwksUrl } : { jwks: dev.jwks }),
    algorithms: [...new Set(dev.jwks.keys.map((k) => (typeof k.alg === "string" ? k.alg : DEV_ALG)))],
    groups: [{ claim: "groups" }],
  };
}

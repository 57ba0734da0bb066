import { parseArgs, type ParseArgsConfig } from "node:util";
import { mkdirSync, readFileSync, writeFileSync, chmodSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
// every command imports this file: nothing heavy here (the errors' scrubbing, not the logger's pino)
import { SluiceError, scrubSecrets } from "@sluice/shared/errors";
import type { IssuerSpec, ResourceSpec } from "@sluice/shared/policy";

export interface CommandModule {
  run(args: string[]): Promise<number>;
}

/** A usage error: exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Prints a one-line reason for a refused or failed operation and returns exit code 1. */
export function fail(err: unknown): number {
  const msg = err instanceof SluiceError ? err.message : err instanceof Error ? err.message : String(err);
  process.stderr.write(`sluice: ${scrubSecrets(msg.split("\n")[0] ?? msg)}\n`);
  return 1;
}

/** node:util parseArgs, turning its errors into usage errors (exit 2). */
export function parse<T extends ParseArgsConfig["options"]>(args: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args, options: { help: { type: "boolean", short: "h" }, ...options }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The development context written by `sluice dev` and read by every other command by default. */
export interface CliContext {
  controlPlane: string;
  token: string;
  /** data plane Postgres address, for printing connection strings */
  dataPlane?: string;
  nats?: string;
  natsPrefix?: string;
  /** path of the dev CA/cert clients may pin */
  caFile?: string;
  /** JWKS signing key file of the dev issuer (private; file mode 0600) for `sluice token` */
  devIssuerKeyFile?: string;
  devIssuer?: string;
  devAudience?: string;
  /**
   * what the dev stack keeps in every applied bundle (its issuer, with public keys only, and its
   * resource, with a credential reference only), so `policy apply` checks a file locally as the
   * stack will see it
   */
  devParts?: { issuer: IssuerSpec; resource: ResourceSpec };
  pid?: number;
}

export function contextPath(): string {
  if (process.env.SLUICE_CONTEXT) return process.env.SLUICE_CONTEXT;
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "sluice", "context.json");
}

export function readContext(): CliContext | undefined {
  try {
    return JSON.parse(readFileSync(contextPath(), "utf8")) as CliContext;
  } catch {
    return undefined;
  }
}

export function writeContext(ctx: CliContext): string {
  const p = contextPath();
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, JSON.stringify(ctx, null, 2) + "\n", { mode: 0o600 });
  chmodSync(p, 0o600);
  return p;
}

/** Resolves the control-plane address and bearer token: flags, then env, then the dev context. */
export function resolveTarget(flags: { server?: string; token?: string }): { server: string; token: string } {
  const ctx = readContext();
  const server = flags.server ?? process.env.SLUICE_CONTROL_PLANE ?? ctx?.controlPlane;
  const token = flags.token ?? process.env.SLUICE_TOKEN ?? ctx?.token;
  if (!server) throw new SluiceError("failed_precondition", "no control plane: pass --server, set SLUICE_CONTROL_PLANE, or start `sluice dev`");
  if (!token) throw new SluiceError("unauthenticated", "no token: pass --token, set SLUICE_TOKEN, or start `sluice dev`");
  return { server, token };
}

/** Common flags for commands that talk to the control plane. */
export const TARGET_FLAGS = {
  server: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean" },
} as const;

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + "\n");
}

/**
 * `sluice token --sub SUB [--groups a,b] [--claim k=v]... [--ttl 10m] [--aud X]`: mints a development
 * token with the dev issuer key that `sluice dev` wrote into the context, and prints ONLY the token on
 * stdout (so `PGPASSWORD=$(sluice token --sub ci --groups ci) psql …` works).
 */
import { UsageError, fail, parse, readContext } from "../lib/cli-kit.js";

const USAGE = `usage: sluice token --sub SUB [--groups a,b] [--claim k=v]... [--ttl 10m] [--aud AUDIENCE]

Mints a development token signed by the running \`sluice dev\` issuer; prints only the token.
  --sub      subject (the identity's name)
  --groups   comma-separated groups (the dev issuer maps the \`groups\` claim to groups)
  --claim    extra claim k=v (repeat; a repeated key becomes a list), e.g. --claim repository=acme/orders
  --ttl      lifetime (default 10m; e.g. 30s, 1h)
  --aud      audience (default: the dev issuer's)`;

const RESERVED = new Set(["iss", "sub", "aud", "exp", "iat", "nbf", "groups"]);

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      sub: { type: "string" },
      groups: { type: "string" },
      claim: { type: "string", multiple: true },
      ttl: { type: "string" },
      aud: { type: "string" },
    },
    false,
  );
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(USAGE);
  if (!values.sub) throw new UsageError(`--sub is required\n${USAGE}`);

  let ttlSec = 600;
  if (values.ttl !== undefined) {
    // the duration parser comes with the configuration module (and YAML): only for --ttl
    const { parseDuration } = await import("@sluice/shared/config");
    try {
      ttlSec = Math.round(parseDuration(values.ttl) / 1000);
    } catch {
      throw new UsageError(`--ttl: not a duration (e.g. 30s, 10m, 1h): ${JSON.stringify(values.ttl)}`);
    }
    if (ttlSec <= 0) throw new UsageError("--ttl must be at least 1s");
  }

  const claims: Record<string, string | string[]> = {};
  for (const kv of values.claim ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new UsageError(`--claim takes k=v, got ${JSON.stringify(kv)}`);
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (RESERVED.has(k)) throw new UsageError(`--claim cannot set ${k} (use ${k === "groups" ? "--groups" : k === "sub" ? "--sub" : k === "aud" ? "--aud" : "the flags"})`);
    const prev = claims[k];
    claims[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  const groups = values.groups?.split(",").map((g) => g.trim()).filter((g) => g.length > 0);

  const ctx = readContext();
  if (!ctx?.devIssuerKeyFile || !ctx.devIssuer || !ctx.devAudience) return fail(new Error("no dev issuer: start `sluice dev` first"));
  const { createDevIssuer } = await import("@sluice/shared/auth");
  let dev;
  try {
    dev = await createDevIssuer({ issuer: ctx.devIssuer, audience: ctx.devAudience, keyFile: ctx.devIssuerKeyFile, create: false });
  } catch (e) {
    return fail(new Error(`no dev issuer key (${(e as Error).message}): start \`sluice dev\` first`));
  }
  const token = await dev.mint({ sub: values.sub, ...(groups ? { groups } : {}), claims, ttlSec, ...(values.aud ? { audience: values.aud } : {}) });
  process.stdout.write(token + "\n");
  return 0;
}

/**
 * `sluice nats-auth`: the NATS operator, accounts and per-role signing keys of a sluice deployment,
 * and credentials for each process (shared/src/nats/nats-auth.ts has the model).
 *
 *   sluice nats-auth init --dir D [--prefix P]        keys (D/seeds.json, 0600) and D/auth.conf for every server
 *   sluice nats-auth server-config --dir D             print the server block again (after a role template changed)
 *   sluice nats-auth user --dir D --role R --name N [--region R --node N] [--expires 90d] [--out F]
 *   sluice nats-auth signer --dir D --role R --out F    one role's issuing key alone (a pod mints its own node user)
 *   sluice nats-auth user --signer F --name N [--region R --node N] [--out F]
 *
 * A data-plane node's user carries its region, node and cancel number as tags; the server fills the
 * data-plane role's template with them. No server configuration changes when a node is added.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
// the data plane's cancel-key numbering alone, not its whole entry point
import { nodeNumberFromId } from "@sluice/data-plane/cancel-keys";
import { SluiceError } from "@sluice/shared/errors";
import { createNatsAuth, issueWithRoleSigner, natsNames, NATS_ROLES, type NatsAuthSeeds, type NatsRole, type RoleSigner } from "@sluice/shared/nats";
import { UsageError, fail, parse } from "../lib/cli-kit.js";

const USAGE = `usage: sluice nats-auth init --dir DIR [--prefix PREFIX]
       sluice nats-auth server-config --dir DIR
       sluice nats-auth user --dir DIR --role ${NATS_ROLES.join("|")} --name NAME [--region R --node N] [--expires 90d] [--out FILE]
       sluice nats-auth signer --dir DIR --role ROLE --out FILE
       sluice nats-auth user --signer FILE --name NAME [--region R --node N] [--expires 90d] [--out FILE]`;

interface SeedFile {
  prefix: string;
  seeds: NatsAuthSeeds;
}

function readSeeds(dir: string): SeedFile {
  const p = join(dir, "seeds.json");
  try {
    return JSON.parse(readFileSync(p, "utf8")) as SeedFile;
  } catch (e) {
    throw new SluiceError("failed_precondition", `cannot read ${p} (run \`sluice nats-auth init --dir ${dir}\` first): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    dir: { type: "string" },
    prefix: { type: "string" },
    role: { type: "string" },
    name: { type: "string" },
    region: { type: "string" },
    node: { type: "string" },
    expires: { type: "string" },
    out: { type: "string" },
    signer: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const sub = positionals[0];
  if (positionals.length !== 1 || !["init", "server-config", "user", "signer"].includes(sub ?? "") || (!values.dir && !(sub === "user" && values.signer))) throw new UsageError(USAGE);
  const dir = values.dir ?? "";
  // the duration parser comes with the configuration module (and YAML): only for --expires
  const parseDuration = values.expires ? (await import("@sluice/shared/config")).parseDuration : undefined;
  /** the user the flags describe (its role comes from --role or the signer file) */
  const userOf = (name: string) => ({
    name,
    region: values.region,
    node: values.node,
    cancel: values.node ? nodeNumberFromId(values.node) : undefined,
    expiresInSec: values.expires && parseDuration ? Math.round(parseDuration(values.expires) / 1000) : undefined,
  });
  const emit = (creds: string) => {
    if (values.out) writeSecret(values.out, creds);
    else process.stdout.write(creds);
    return 0;
  };
  try {
    if (sub === "user" && values.signer) {
      if (!values.name) throw new UsageError(USAGE);
      const signer = JSON.parse(readFileSync(values.signer, "utf8")) as RoleSigner;
      return emit(await issueWithRoleSigner(signer, userOf(values.name)));
    }
    if (sub === "init") {
      if (existsSync(join(dir, "seeds.json"))) throw new SluiceError("already_exists", `${join(dir, "seeds.json")} exists: keys are never overwritten`);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const prefix = values.prefix ?? "";
      const auth = await createNatsAuth(natsNames(prefix));
      writeSecret(join(dir, "seeds.json"), JSON.stringify({ prefix, seeds: auth.seeds } satisfies SeedFile, null, 2) + "\n");
      writeFileSync(join(dir, "auth.conf"), auth.serverConfig());
      process.stdout.write(`wrote ${join(dir, "seeds.json")} (secret: keep it off the servers) and ${join(dir, "auth.conf")} (include it in every nats-server.conf)\n`);
      return 0;
    }
    const { prefix, seeds } = readSeeds(dir);
    const auth = await createNatsAuth(natsNames(prefix), seeds);
    if (sub === "server-config") {
      process.stdout.write(auth.serverConfig());
      return 0;
    }
    const role = values.role as NatsRole | undefined;
    if (sub === "signer") {
      if (!role || !NATS_ROLES.includes(role) || !values.out) throw new UsageError(USAGE);
      writeSecret(values.out, JSON.stringify(auth.roleSigner(role)) + "\n");
      return 0;
    }
    if (!role || !NATS_ROLES.includes(role) || !values.name) throw new UsageError(USAGE);
    if (role === "data-plane" && (!values.region || !values.node)) throw new UsageError("a data-plane user needs --region and --node (the node's config `region` and `node`)");
    return emit(await auth.issueUser({ ...userOf(values.name), role }));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    return fail(e);
  }
}

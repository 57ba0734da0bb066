/**
 * How CLI commands that read NATS directly (`fleet status`, `connect-info`) reach it: URL, prefix and
 * credentials from flags, then SLUICE_NATS_URL / SLUICE_NATS_PREFIX / SLUICE_NATS_CREDS /
 * SLUICE_NATS_CA, then the dev context. With credentials, the connection uses the inbox space its
 * user's role may subscribe to (read from the credentials' role tag).
 */
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/transport-node";
import { SluiceError } from "@sluice/shared/errors";
import { readContext } from "./cli-kit.js";

export const NATS_FLAGS = {
  nats: { type: "string" },
  prefix: { type: "string" },
  creds: { type: "string" },
  "nats-ca": { type: "string" },
} as const;

export interface CliNats {
  nc: NatsConnection;
  url: string;
  prefix: string;
}

export async function connectCliNats(values: { nats?: string; prefix?: string; creds?: string; "nats-ca"?: string }, name: string): Promise<CliNats> {
  // the NATS client only once a command connects (its flags and --help parse without it)
  const [{ connect }, { credsIdentity, inboxFor, natsConnectOptions, natsNames }] = await Promise.all([import("@nats-io/transport-node"), import("@sluice/shared/nats")]);
  const ctx = readContext();
  const url = values.nats ?? (process.env.SLUICE_NATS_URL || ctx?.nats || "nats://127.0.0.1:4222");
  const prefix = values.prefix ?? (process.env.SLUICE_NATS_PREFIX || ctx?.natsPrefix || "");
  const credsFile = values.creds ?? (process.env.SLUICE_NATS_CREDS || undefined);
  const caFile = values["nats-ca"] ?? (process.env.SLUICE_NATS_CA || undefined);
  let inboxPrefix: string | undefined;
  if (credsFile) {
    let who;
    try {
      who = credsIdentity(readFileSync(credsFile, "utf8"));
    } catch (e) {
      throw new SluiceError("invalid_argument", `${credsFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (who.role) inboxPrefix = inboxFor(natsNames(prefix), who.role, who);
  }
  const opts = natsConnectOptions({ url, credsFile, tls: { caFile } }, { name, inboxPrefix });
  try {
    return { nc: await connect({ ...opts, timeout: 5000 }), url, prefix };
  } catch (e) {
    throw new SluiceError("unavailable", `cannot reach NATS at ${url}: ${(e as Error).message}`);
  }
}

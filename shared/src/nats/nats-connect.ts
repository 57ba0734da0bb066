/**
 * Connection options from config `nats.*`: the seed servers (a comma-separated list: the client
 * learns the rest of the cluster from them), credentials (user JWT + seed from `sluice nats-auth
 * user`), TLS, and the role's own inbox prefix (nats-names.ts), without which a least-privilege
 * user could not receive a single reply.
 */
import { readFileSync } from "node:fs";
import { credsAuthenticator, type ConnectionOptions } from "@nats-io/transport-node";
import { SluiceError } from "../errors/index.js";

export interface NatsClientSettings {
  url: string;
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export function natsServers(url: string): string[] {
  return url.split(",").map((s) => s.trim()).filter(Boolean);
}

export function natsConnectOptions(nats: NatsClientSettings, o: { name: string; inboxPrefix?: string }): ConnectionOptions {
  const opts: ConnectionOptions = { servers: natsServers(nats.url), name: o.name };
  if (o.inboxPrefix) opts.inboxPrefix = o.inboxPrefix;
  if (nats.credsFile) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(nats.credsFile);
    } catch (e) {
      throw new SluiceError("invalid_argument", `nats.credsFile: cannot read ${nats.credsFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    opts.authenticator = credsAuthenticator(creds);
  }
  const t = nats.tls;
  if (t && (t.caFile || t.certFile || t.keyFile)) {
    if (!!t.certFile !== !!t.keyFile) throw new SluiceError("invalid_argument", "nats.tls.certFile and nats.tls.keyFile go together");
    opts.tls = { ...(t.caFile ? { caFile: t.caFile } : {}), ...(t.certFile ? { certFile: t.certFile, keyFile: t.keyFile } : {}) };
  }
  return opts;
}

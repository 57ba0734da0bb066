/**
 * `sluice connect-info --resource R [--region HINT] [--format uri|env|json] [--user U] [--sslmode M]`:
 * where a pipeline should connect. Reads the fleet from NATS (a `fleet-reader` user is enough:
 * bin/lib/cli-nats.ts), measures the TCP round-trip time to every heartbeating node's public address,
 * and prints the nearest healthy node (bin/lib/nearest-node.ts) as a libpq URI, as `export PG…` lines
 * to `eval`, or as JSON with the ranking. The token stays out of it: the pipeline sets PGPASSWORD.
 */
import { connect as tcpConnect } from "node:net";
import { performance } from "node:perf_hooks";
import { SluiceError } from "@sluice/shared/errors";
import { UsageError, fail, parse, printJson } from "../lib/cli-kit.js";
import { NATS_FLAGS, connectCliNats } from "../lib/cli-nats.js";
import { chooseNearest, libpqUri, pgEnv, splitAddress, type NodeCandidate } from "../lib/nearest-node.js";

const USAGE = `usage: sluice connect-info --resource NAME [--region HINT] [--format uri|env|json] [--user USER] [--sslmode MODE]
                           [--nats URL] [--prefix PREFIX] [--creds FILE] [--nats-ca FILE] [--probe-timeout MS]
  eval "$(sluice connect-info --resource orders --region eu-west-1 --format env)"; PGPASSWORD=$TOKEN psql`;

/** TCP connect time to `address` (best of `tries`), or undefined when it does not answer within `timeoutMs`. */
async function probe(address: string, timeoutMs: number, tries = 2): Promise<number | undefined> {
  let best: number | undefined;
  let host: string, port: number;
  try {
    ({ host, port } = splitAddress(address));
  } catch {
    return undefined;
  }
  for (let i = 0; i < tries; i++) {
    const t0 = performance.now();
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        s.destroy();
        resolve(true);
      });
      s.once("error", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ok) return best;
    const ms = performance.now() - t0;
    best = best === undefined ? ms : Math.min(best, ms);
  }
  return best;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    resource: { type: "string" },
    region: { type: "string" },
    format: { type: "string" },
    user: { type: "string" },
    sslmode: { type: "string" },
    "probe-timeout": { type: "string" },
    ...NATS_FLAGS,
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const format = values.format ?? "uri";
  if (positionals.length || !values.resource || !["uri", "env", "json"].includes(format)) throw new UsageError(USAGE);
  const timeoutMs = values["probe-timeout"] === undefined ? 1000 : Number(values["probe-timeout"]);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError("--probe-timeout must be a positive number of milliseconds");
  let conn;
  try {
    conn = await connectCliNats(values, "sluice-connect-info");
  } catch (e) {
    return fail(e);
  }
  try {
    // the fleet's reader alone, not the data plane's whole entry point (its proxy, parser, masking)
    const { readFleet } = await import("@sluice/data-plane/fleet");
    const fleet = await readFleet(conn.nc, conn.prefix);
    await conn.nc.close();
    const candidates: NodeCandidate[] = await Promise.all(
      fleet.map(async (m) => {
        const address = m.publicAddress ?? m.listen ?? "";
        return { node: m.node, region: m.region, address, stale: m.stale, rttMs: m.stale || !address ? undefined : await probe(address, timeoutMs) };
      }),
    );
    const choice = chooseNearest(candidates, values.region);
    if (!choice.chosen) {
      throw new SluiceError("unavailable", fleet.length ? `no healthy data plane answers (${fleet.length} in the fleet)` : "no data planes are heartbeating");
    }
    const { host, port } = splitAddress(choice.chosen.address);
    const params = { host, port, database: values.resource, user: values.user, sslmode: values.sslmode ?? "require" };
    if (choice.fellBack) process.stderr.write(`sluice: no healthy data plane in region ${values.region}; using ${choice.chosen.node} in ${choice.chosen.region}\n`);
    if (format === "uri") process.stdout.write(libpqUri(params) + "\n");
    else if (format === "env") process.stdout.write(pgEnv(params));
    else {
      printJson({
        node: choice.chosen.node,
        region: choice.chosen.region,
        host,
        port,
        rttMs: choice.chosen.rttMs,
        uri: libpqUri(params),
        fellBack: choice.fellBack,
        candidates: candidates.map((c) => ({ ...c, healthy: choice.ranked.includes(c) })),
      });
    }
    return 0;
  } catch (e) {
    return fail(e);
  } finally {
    if (!conn.nc.isClosed()) await conn.nc.close();
  }
}

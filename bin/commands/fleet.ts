/**
 * `sluice fleet status [--json] [--nats URL] [--prefix P]`: the data planes heartbeating into the
 * `sluice_fleet` bucket, read straight from NATS (URL/prefix: flags, then SLUICE_NATS_URL /
 * SLUICE_NATS_PREFIX, then the dev context). Nodes silent for more than three heartbeat periods are
 * flagged stale.
 */
import { connect } from "@nats-io/transport-node";
import { readFleet } from "@sluice/data-plane";
import { UsageError, fail, parse, printJson, readContext } from "../lib/cli-kit.js";

const USAGE = "usage: sluice fleet status [--json] [--nats URL] [--prefix PREFIX]";

function age(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    nats: { type: "string" },
    prefix: { type: "string" },
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (positionals[0] !== "status" || positionals.length > 1) throw new UsageError(USAGE);
  const ctx = readContext();
  const url = values.nats ?? (process.env.SLUICE_NATS_URL || ctx?.nats || "nats://127.0.0.1:4222");
  const prefix = values.prefix ?? (process.env.SLUICE_NATS_PREFIX || ctx?.natsPrefix || "");
  let nc;
  try {
    nc = await connect({ servers: url, timeout: 5000 });
  } catch (e) {
    return fail(new Error(`cannot reach NATS at ${url}: ${(e as Error).message}`));
  }
  try {
    const fleet = await readFleet(nc, prefix);
    if (values.json) {
      printJson(fleet);
      return 0;
    }
    if (fleet.length === 0) {
      process.stdout.write("no data planes are heartbeating\n");
      return 0;
    }
    const rows = [["NODE", "REGION", "VERSION", "REVISION", "CONNS", "LISTEN", "LAST BEAT", "STATUS"]];
    for (const m of fleet) {
      rows.push([m.node, m.region, m.version, String(m.snapshotRevision), String(m.connections), m.listen ?? "-", `${age(m.ageMs)} ago`, m.stale ? "STALE" : "ok"]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
    return 0;
  } catch (e) {
    return fail(new Error(`cannot read the fleet bucket (prefix ${JSON.stringify(prefix)}): ${(e as Error).message}`));
  } finally {
    await nc.close();
  }
}

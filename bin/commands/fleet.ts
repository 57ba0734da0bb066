/**
 * `sluice fleet status [--json] [--nats URL] [--prefix P] [--creds FILE]`: the data planes
 * heartbeating into the `sluice_fleet` bucket, read straight from NATS (bin/lib/cli-nats.ts says
 * where the URL, prefix and credentials come from). For each node: the policy revision it applied,
 * how many revisions it is behind the current one (the snapshot bucket's, when these credentials may
 * read it, else the fleet's highest), how long it took to apply it, and whether it is stale (silent
 * for more than three heartbeat periods).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { UsageError, fail, parse, printJson } from "../lib/cli-kit.js";
import { NATS_FLAGS, connectCliNats } from "../lib/cli-nats.js";

const USAGE = `usage: sluice fleet status [--json] [--nats URL] [--prefix PREFIX] [--creds FILE] [--nats-ca FILE]

Lists the data-plane nodes from their heartbeats (read from NATS; a fleet-reader user is enough):
region, version, the policy revision each applied, connections, last heartbeat, stale nodes.`;

function age(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

/** The snapshot bucket's revision, or undefined when it cannot be read (no bucket, or no permission). */
async function currentRevision(nc: NatsConnection, prefix: string): Promise<number | undefined> {
  const [{ Kvm }, { natsNames }] = await Promise.all([import("@nats-io/kv"), import("@sluice/shared/nats")]);
  const names = natsNames(prefix);
  try {
    const kv = await new Kvm(nc).open(names.snapshotBucket);
    const e = await kv.get(names.snapshotKey);
    const rev = e ? (e.json<{ revision?: unknown }>().revision as number | undefined) : undefined;
    return typeof rev === "number" ? rev : undefined;
  } catch {
    return undefined;
  }
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: "boolean" }, ...NATS_FLAGS });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (positionals[0] !== "status" || positionals.length > 1) throw new UsageError(USAGE);
  let conn;
  try {
    conn = await connectCliNats(values, "sluice-fleet-status");
  } catch (e) {
    return fail(e);
  }
  const { nc, prefix } = conn;
  try {
    // the fleet's reader alone, not the data plane's whole entry point (its proxy, parser, masking)
    const { readFleet } = await import("@sluice/data-plane/fleet");
    const fleet = await readFleet(nc, prefix, new Date(), await currentRevision(nc, prefix));
    if (values.json) {
      printJson(fleet);
      return 0;
    }
    if (fleet.length === 0) {
      process.stdout.write("no data planes are heartbeating\n");
      return 0;
    }
    const rows = [["NODE", "REGION", "VERSION", "REVISION", "BEHIND", "APPLIED IN", "CONNS", "ADDRESS", "LAST BEAT", "STATUS"]];
    for (const m of fleet) {
      rows.push([
        m.node,
        m.region,
        m.version,
        String(m.snapshotRevision),
        String(m.behind),
        m.applyMs === undefined ? "-" : `${m.applyMs}ms`,
        String(m.connections),
        m.publicAddress ?? m.listen ?? "-",
        `${age(m.ageMs)} ago`,
        m.stale ? "STALE" : m.behind > 0 ? "BEHIND" : "ok",
      ]);
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

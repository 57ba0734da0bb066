/**
 * `sluice data-plane [--config FILE]`: one data-plane node in the foreground (the composition is
 * `startDataPlaneNode` in @sluice/data-plane). SIGINT/SIGTERM: leave the fleet, let open sessions
 * finish (up to the grace period), then stop.
 */
import { join } from "node:path";
import type { DataPlaneNode } from "@sluice/data-plane";
import type { Logger } from "@sluice/shared/logging";
import { fail, parse } from "../lib/cli-kit.js";

const USAGE = `usage: sluice data-plane [--config FILE] [--grace SECONDS]

Runs one data-plane node (config: defaults <- FILE <- SLUICE_* environment).
  --grace SECONDS   on SIGINT/SIGTERM, let open sessions finish for up to this long (default 30)
Environment: SLUICE_MASKING_HASH_KEY (the same secret on every node, for the \`hash\` masking strategy),
upstream credentials referenced by the policy bundle (env:NAME).`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: "string", short: "c" }, grace: { type: "string" } }, false);
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const graceSec = values.grace === undefined ? 30 : Number(values.grace);
  if (!Number.isFinite(graceSec) || graceSec < 0) return fail(new Error("--grace must be a number of seconds"));
  let node: DataPlaneNode;
  let log: Logger;
  try {
    // the node's modules after the flags: --help and a usage error load none of them
    const [{ startDataPlaneNode }, { loadConfig }, { createLogger }] = await Promise.all([
      import("@sluice/data-plane"), import("@sluice/shared/config"), import("@sluice/shared/logging"),
    ]);
    const cfg = loadConfig(values.config);
    log = createLogger({ level: cfg.logLevel, name: "data-plane" });
    // the `hash` masking strategy must give the same output on every node: share the key
    const hashKey = process.env.SLUICE_MASKING_HASH_KEY;
    node = await startDataPlaneNode({
      config: cfg,
      logger: log,
      hooks: hashKey ? { maskingHashKey: Buffer.from(hashKey, "utf8") } : undefined,
      snapshotCacheFile: join(process.env.STATE_DIRECTORY ?? ".sluice", `snapshot-${cfg.nats.prefix || "default"}.json`),
    });
  } catch (e) {
    return fail(e);
  }
  log.info({ node: node.config.node, port: node.port, httpPort: node.httpPort }, "data plane started");
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  log.info({ signal, graceSeconds: graceSec }, "stopping: draining sessions");
  // a second signal stops at once
  const hard = () => process.exit(1);
  process.once("SIGINT", hard);
  process.once("SIGTERM", hard);
  await node.stop(graceSec * 1000);
  log.info("data plane stopped");
  return 0;
}

/**
 * `sluice control-plane [--config FILE]`: runs the control plane in the foreground until SIGINT or
 * SIGTERM. Config: defaults ← FILE ← environment (SLUICE_*). Prints one `sluice control-plane ready`
 * line on stdout once it serves.
 */
import { parse } from "../lib/cli-kit.js";

const USAGE = `usage: sluice control-plane [--config FILE]

Runs one control-plane replica in the foreground until SIGINT/SIGTERM: the gRPC API (policy,
approvals, sessions, audit) on controlPlane.grpcListen (7400), health and metrics on
controlPlane.httpListen (7481), the projections, the sealer (one leader among replicas), the approval
expirer and the approval webhooks. Several replicas may run at once.
Config: defaults <- FILE (or SLUICE_CONFIG) <- SLUICE_* environment; see docs/operator-guide.md.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: "string", short: "c" } }, false);
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  // the control plane's modules after the flags: --help and a usage error load none of them
  const [{ loadConfig }, { createLogger }, { startControlPlane }] = await Promise.all([
    import("@sluice/shared/config"), import("@sluice/shared/logging"), import("@sluice/control-plane"),
  ]);
  const config = loadConfig(values.config ?? process.env.SLUICE_CONFIG);
  const logger = createLogger({ level: config.logLevel, name: "control-plane" });
  const cp = await startControlPlane(config, { logger });
  process.stdout.write(`sluice control-plane ready grpc=${cp.grpcAddress} http=${cp.httpPort}\n`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig }, "stopping");
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve();
    };
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
  });
  await cp.stop();
  logger.flush();
  return 0;
}

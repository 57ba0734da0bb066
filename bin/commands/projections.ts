/**
 * `sluice projections rebuild [--json]`: drops the control plane's read model and rebuilds it from the
 * audit stream (SessionService.RebuildReadModel); answers once it has caught up.
 */
import type { RebuildReadModelResponse } from "@sluice/proto";
import { TARGET_FLAGS, UsageError, parse, printJson } from "../lib/cli-kit.js";
import { loadGrpc } from "../lib/grpc-api.js";

const USAGE = `usage: sluice projections rebuild [--json] [--server ADDR] [--token JWT]

Rebuilds the control plane's read model (sessions, statements, decisions, approvals) from the
streams, and prints the stream position reached and the counts.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, TARGET_FLAGS);
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== "rebuild") throw new UsageError(USAGE);
  const { withClient, proto } = await loadGrpc();
  const r = await withClient(proto.SessionServiceClient, values, (c) =>
    c.call<object, RebuildReadModelResponse>("rebuildReadModel", {}, { timeoutMs: 15 * 60_000 }));
  if (values.json) printJson(r);
  else {
    process.stdout.write(
      `read model rebuilt to stream seq ${r.position} in ${r.durationMs} ms: ${r.sessions} sessions, ${r.statements} statements, ${r.decisions} decisions, ${r.approvals} approvals\n`,
    );
  }
  return 0;
}

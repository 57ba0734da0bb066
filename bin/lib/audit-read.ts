/**
 * The streaming side of the audit API for the CLI: AuditService.Read as an async iterator of
 * messages (the events of each stored batch with its stream sequence, and checkpoints), cancelled
 * when the consumer stops.
 */
import { credentials } from "@grpc/grpc-js";
import { AuditServiceClient, type AuditRecord as AuditRecordMsg, type ReadAuditRequest } from "@sluice/proto";
import { messageFromWire, parseCheckpoint, type AuditMessage, type Checkpoint } from "@sluice/control-plane/audit-client";
import { bearerMetadata, fromServiceError } from "./grpc-client.js";
import { resolveTarget } from "./cli-kit.js";

export type ReadItem = { message: AuditMessage; checkpoint?: undefined } | { checkpoint: Checkpoint; message?: undefined };

export function toItem(msg: AuditRecordMsg): ReadItem | undefined {
  if (msg.event) return { message: messageFromWire(msg.event) };
  if (msg.checkpoint) return { checkpoint: parseCheckpoint(msg.checkpoint.checkpointJson) };
  return undefined;
}

/** Streams AuditService.Read; stops the call when the loop ends early or `signal` aborts. */
export async function* readAudit(
  flags: { server?: string; token?: string },
  req: Partial<ReadAuditRequest>,
  signal?: AbortSignal,
): AsyncGenerator<ReadItem> {
  const target = resolveTarget(flags);
  const client = new AuditServiceClient(target.server, credentials.createInsecure());
  const call = client.read(
    { fromSeq: 0, sessionId: "", follow: false, fromEnd: false, includeCheckpoints: false, control: false, toSeq: 0, ...req },
    bearerMetadata(target.token),
  );
  let cancelled = false;
  const cancel = () => {
    cancelled = true;
    call.cancel();
  };
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    for await (const msg of call as AsyncIterable<AuditRecordMsg>) {
      const item = toItem(msg);
      if (item) yield item;
    }
  } catch (e) {
    if (!cancelled) throw fromServiceError(e, target.server);
  } finally {
    signal?.removeEventListener("abort", cancel);
    if (!cancelled) call.cancel();
    client.close();
  }
}

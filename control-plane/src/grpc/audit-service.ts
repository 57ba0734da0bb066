/**
 * AuditService: raw audit records in stream order (events verbatim with their stream sequence, and the
 * sealer's checkpoints when asked), and the sealer's public key. Clients verify, export and replay on
 * their side, so nothing here has to be trusted for the evidence to hold. Admin groups only.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { AuditRecord as AuditRecordMsg, AuditServiceServer, ReadAuditRequest } from "@sluice/proto";
import type { NatsNames } from "@sluice/shared/nats";
import type { Logger } from "@sluice/shared/logging";
import type { Checkpoint } from "../sealer/checkpoint.js";
import { lastCheckpoint } from "../sealer/sealer.js";
import type { SigningKey } from "../sealer/signing-key.js";
import type { SealerStatus } from "../sealer/sealer.js";
import { readCheckpoints, readStreamMessages } from "../audit/stream-reader.js";
import { requireAnyGroup, type Authenticator } from "./authenticate.js";
import { toServiceError, unary } from "./service-error.js";

export interface AuditServiceDeps {
  nc: NatsConnection;
  names: NatsNames;
  auth: Authenticator;
  adminGroups: () => readonly string[];
  logger: Logger;
  key: SigningKey;
  sealerStatus: () => SealerStatus;
}

async function write(call: ServerWritableStream<ReadAuditRequest, AuditRecordMsg>, msg: AuditRecordMsg, signal: AbortSignal): Promise<void> {
  if (call.write(msg)) return;
  // respect the client's flow control instead of buffering a whole stream in memory
  await new Promise<void>((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

export function auditService(d: AuditServiceDeps): AuditServiceServer {
  const authorize = (what: string) => (a: Parameters<typeof requireAnyGroup>[0]) => requireAnyGroup(a, d.adminGroups(), what);
  return {
    read: (call) => {
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      call.on("close", () => ac.abort());
      (async () => {
        const actor = await d.auth(call.metadata);
        authorize("AuditService/Read")(actor);
        const req = call.request;
        const stream = req.control ? d.names.controlStream : d.names.auditStream;
        let fromSeq = Math.max(1, Number(req.fromSeq) || 1);
        if (req.fromEnd) {
          const jsm = await jetstreamManager(d.nc);
          fromSeq = (await jsm.streams.info(stream)).state.last_seq + 1;
        }
        const cps = new Map<number, Checkpoint>();
        if (req.includeCheckpoints && !req.control) for (const cp of await readCheckpoints(d.nc, d.names, { signal: ac.signal })) cps.set(cp.lastSeq, cp);
        const filterSubject = req.sessionId && !req.control ? d.names.auditSessionFilter(req.sessionId) : undefined;
        for await (const m of readStreamMessages(d.nc, stream, { fromSeq, filterSubject, follow: req.follow || req.fromEnd, signal: ac.signal })) {
          if (ac.signal.aborted) break;
          await write(call, {
            event: { streamSeq: m.seq, subject: m.subject, eventJson: Buffer.from(m.data).toString("utf8"), storedAt: m.time.toISOString() },
          }, ac.signal);
          const cp = cps.get(m.seq);
          if (cp) {
            cps.delete(m.seq);
            await write(call, { checkpoint: { checkpointJson: JSON.stringify(cp) } }, ac.signal);
          }
        }
        // checkpoints past the last record seal events that are not there (or were never stored): the
        // verifier must see them, so they come last rather than not at all
        if (!req.fromEnd && !filterSubject) {
          for (const cp of [...cps.values()].sort((a, b) => a.lastSeq - b.lastSeq)) {
            if (ac.signal.aborted) break;
            if (cp.lastSeq >= fromSeq) await write(call, { checkpoint: { checkpointJson: JSON.stringify(cp) } }, ac.signal);
          }
        }
        if (!ac.signal.aborted) call.end();
      })().catch((err: unknown) => {
        if (ac.signal.aborted) return;
        const se = toServiceError(err);
        d.logger.info({ method: "AuditService/Read", reason: se.details }, "call refused");
        call.emit("error", se);
      });
    },
    getSealer: unary({ auth: d.auth, logger: d.logger, method: "AuditService/GetSealer", authorize: authorize("AuditService/GetSealer") }, async () => {
      const st = d.sealerStatus();
      const last = await lastCheckpoint(d.nc, d.names);
      return {
        keyId: d.key.keyId,
        publicKeyPem: d.key.publicKeyPem,
        leader: st.leader,
        sealedThrough: Math.max(st.sealedThrough, last?.cp.lastSeq ?? 0),
        lastCheckpointJson: last ? JSON.stringify(last.cp) : "",
      };
    }),
  };
}

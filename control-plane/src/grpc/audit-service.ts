/**
 * AuditService: raw audit messages in stream order (each stored batch verbatim with its stream
 * sequence, and the sealer's checkpoints when asked), and the sealer's public key. Clients verify,
 * export and replay on their side, so nothing here has to be trusted for the evidence to hold.
 * One session's events are found through the read model's index of the messages that hold them,
 * then the messages not yet projected. Admin groups only.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { AuditRecord as AuditRecordMsg, AuditServiceServer, ReadAuditRequest } from "@sluice/proto";
import { decodeBatch } from "@sluice/shared/events";
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
  /**
   * Where a session's events are: the messages the read model indexed for it (in order), the stream
   * position the index is complete up to, and the session's node when known.
   */
  sessionIndex?: (sessionId: string) => Promise<SessionIndex>;
}

export interface SessionIndex {
  seqs: number[];
  through: number;
  region?: string;
  node?: string;
}

/** Only `sessionId`'s events of a stored batch, as the batch text; undefined when it holds none. */
function sessionPart(data: Uint8Array, sessionId: string): string | undefined {
  let events;
  try {
    events = decodeBatch(data);
  } catch {
    return undefined; // not a batch: no session's events (verify reports the message)
  }
  const mine = events.filter((e) => e.subject === sessionId);
  return mine.length ? JSON.stringify(mine) : undefined;
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
  let jsm: Promise<JetStreamManager> | undefined;

  /**
   * One session's events: the messages the index names (fetched one by one), then the messages
   * stored after the index's position (on the session's node's lanes when known), each narrowed to
   * the session's events; with `follow`, new ones as they are stored.
   */
  async function readSession(call: ServerWritableStream<ReadAuditRequest, AuditRecordMsg>, req: ReadAuditRequest, signal: AbortSignal): Promise<void> {
    const sid = req.sessionId;
    const idx = d.sessionIndex ? await d.sessionIndex(sid) : { seqs: [], through: 0 };
    jsm ??= jetstreamManager(d.nc);
    const m = await jsm;
    for (const seq of idx.seqs) {
      if (signal.aborted) return;
      const sm = await m.streams.getMessage(d.names.auditStream, { seq });
      const part = sm && sessionPart(sm.data, sid);
      if (!sm || !part) continue;
      await write(call, { event: { streamSeq: sm.seq, subject: sm.subject, messageJson: part, storedAt: sm.time.toISOString(), filtered: true } }, signal);
    }
    const filterSubject = idx.region !== undefined && idx.node !== undefined ? d.names.auditNodeFilter(idx.region, idx.node) : undefined;
    for await (const jm of readStreamMessages(d.nc, d.names.auditStream, { fromSeq: idx.through + 1, filterSubject, follow: req.follow, signal })) {
      if (signal.aborted) break;
      const part = sessionPart(jm.data, sid);
      if (part) await write(call, { event: { streamSeq: jm.seq, subject: jm.subject, messageJson: part, storedAt: jm.time.toISOString(), filtered: true } }, signal);
    }
    if (!signal.aborted) call.end();
  }

  return {
    read: (call) => {
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      call.on("close", () => ac.abort());
      (async () => {
        const actor = await d.auth(call.metadata);
        authorize("AuditService/Read")(actor);
        const req = call.request;
        if (req.sessionId && !req.control) return await readSession(call, req, ac.signal);
        const stream = req.control ? d.names.controlStream : d.names.auditStream;
        let fromSeq = Math.max(1, Number(req.fromSeq) || 1);
        if (req.fromEnd) {
          const jsm = await jetstreamManager(d.nc);
          fromSeq = (await jsm.streams.info(stream)).state.last_seq + 1;
        }
        const toSeq = req.follow || req.fromEnd ? 0 : Number(req.toSeq) || 0;
        const cps = new Map<number, Checkpoint>();
        if (req.includeCheckpoints && !req.control) {
          for (const cp of await readCheckpoints(d.nc, d.names, { signal: ac.signal })) if (!toSeq || cp.lastSeq <= toSeq) cps.set(cp.lastSeq, cp);
        }
        for await (const m of readStreamMessages(d.nc, stream, { fromSeq, toSeq, follow: req.follow || req.fromEnd, signal: ac.signal })) {
          if (ac.signal.aborted) break;
          await write(call, {
            event: { streamSeq: m.seq, subject: m.subject, messageJson: Buffer.from(m.data).toString("utf8"), storedAt: m.time.toISOString(), filtered: false },
          }, ac.signal);
          const cp = cps.get(m.seq);
          if (cp) {
            cps.delete(m.seq);
            await write(call, { checkpoint: { checkpointJson: JSON.stringify(cp) } }, ac.signal);
          }
        }
        // checkpoints past the last record seal events that are not there (or were never stored): the
        // verifier must see them, so they come last rather than not at all
        if (!req.fromEnd) {
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
      jsm ??= jetstreamManager(d.nc);
      const info = await (await jsm).streams.info(d.names.auditStream);
      return {
        auditLastSeq: info.state.last_seq,
        keyId: d.key.keyId,
        publicKeyPem: d.key.publicKeyPem,
        leader: st.leader,
        sealedThrough: Math.max(st.sealedThrough, last?.cp.lastSeq ?? 0),
        lastCheckpointJson: last ? JSON.stringify(last.cp) : "",
      };
    }),
  };
}

/**
 * Reads the audit stream in bounded fetches: an ordered consumer asked for at most `batch` messages
 * at a time, each event handed to `visit` and dropped, up to the last message stored when the read
 * began. A scenario's stream holds up to millions of events (1,000 sessions for a minute); one
 * unbounded read kept them all in memory, with every batch's raw text, and let the server push as
 * fast as it could into a loaded test process. What a scenario needs from the stream it folds as it
 * goes (evidence.ts), so the memory is per session and per acknowledged statement, not per event.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { decodeBatch, type CloudEvent } from "@sluice/shared/events";

export interface ScanFigures {
  /** JetStream messages (batches) read */
  messages: number;
  events: number;
  /** fetches it took */
  fetches: number;
}

export async function scanAudit(
  nc: NatsConnection,
  stream: string,
  visit: (ev: CloudEvent, at: { streamSeq: number; subject: string }) => void,
  o: { batch?: number; stallMs?: number } = {},
): Promise<ScanFigures> {
  const batch = o.batch ?? 256;
  const figures: ScanFigures = { messages: 0, events: 0, fetches: 0 };
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const last = info.state.last_seq;
  if (info.state.messages === 0 || last === 0) return figures;
  const consumer = await jetstream(nc).consumers.get(stream);
  // a fetch that brings nothing is the server being slow (load) or the stream being shorter than
  // its info said; nothing for `stallMs` in a row is an error, not an endless wait
  const stallMs = o.stallMs ?? 60_000;
  let quietSince = Date.now();
  let seq = 0;
  while (seq < last) {
    figures.fetches++;
    const it = await consumer.fetch({ max_messages: batch, expires: 5000 });
    let got = 0;
    for await (const m of it) {
      got++;
      seq = m.seq;
      figures.messages++;
      for (const ev of decodeBatch(m.data)) {
        figures.events++;
        visit(ev, { streamSeq: m.seq, subject: m.subject });
      }
      if (seq >= last) break;
    }
    if (seq >= last) {
      it.stop();
      break;
    }
    if (got > 0) quietSince = Date.now();
    else if (Date.now() - quietSince > stallMs) throw new Error(`audit scan stalled at stream sequence ${seq} of ${last} (no message for ${stallMs} ms)`);
  }
  return figures;
}

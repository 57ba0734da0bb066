import { isChunkData, reassembleChunks, type CloudEvent } from "@sluice/shared/events";

/**
 * Streaming counterpart of joinChunks (shared/events/session-events): events of many sessions
 * interleave in the stream, so chunk runs are collected per session and a logical event comes out
 * when the last chunk arrives. Pure.
 */
export class ChunkJoiner {
  private readonly open = new Map<string, CloudEvent[]>();

  /** Returns the logical event this one completes (itself when it is not a chunk), or undefined. */
  push(ev: CloudEvent): CloudEvent | undefined {
    if (!isChunkData(ev.data)) return ev;
    const key = ev.subject;
    const run = this.open.get(key) ?? [];
    if (ev.data.chunk === 1) run.length = 0;
    run.push(ev);
    if (run.length < ev.data.chunks) {
      this.open.set(key, run);
      return undefined;
    }
    this.open.delete(key);
    try {
      return { ...run[0]!, data: reassembleChunks(run) };
    } catch {
      return undefined; // a broken run: verify reports the chain; consumers skip it
    }
  }

  /** Sessions with an unfinished chunk run (e.g. cut off by a time range). */
  get pending(): number {
    return this.open.size;
  }
}
